//! Session cookie decoding: `SessionManager::decode` over arbitrary `Cookie` headers never
//! panics, and never yields a valid session unless the genuine sealed value is in the input.
//! `CookieKeyRing::open` over arbitrary text opens nothing but what the ring sealed.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sekisho_identity::session::{Decoded, SessionManager};
use sekisho_identity::{CookieKey, CookieKeyRing, IdentityMetrics, SessionConfig};

const ISSUER: &str = "https://idp.city.example.jp";
const NOW: i64 = 1_795_000_000;

struct Fixture {
    sessions: SessionManager,
    ring: CookieKeyRing,
    genuine: String,
}

fn ring() -> CookieKeyRing {
    CookieKeyRing::new(vec![
        CookieKey::new("k2", &[2u8; 32]).unwrap(),
        CookieKey::new("k1", &[1u8; 32]).unwrap(),
    ])
    .unwrap()
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let data = serde_json::json!({
            "v": 1, "i": "0123456789abcdef0123456789abcdef", "o": ISSUER,
            "u": {"s": "alice", "g": ["staff"], "m": ["pwd", "otp"], "t": NOW - 60},
            "c": NOW - 60, "x": NOW + 3600, "l": NOW - 60, "r": NOW - 60,
        });
        let genuine = ring().seal("__Host-sekisho", &data.to_string());
        Fixture {
            sessions: SessionManager::new(
                SessionConfig::default(),
                ring(),
                ISSUER,
                Arc::new(IdentityMetrics::default()),
            )
            .unwrap(),
            ring: ring(),
            genuine,
        }
    })
}

fn decode(f: &Fixture, header: &str) -> bool {
    let Ok(v) = http::HeaderValue::from_str(header) else {
        return false;
    };
    let mut h = http::HeaderMap::new();
    h.insert(http::header::COOKIE, v);
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    match f.sessions.decode(&h, now) {
        Decoded::Valid(s) => {
            assert_eq!(f.sessions.identity(&s).sub(), "alice");
            true
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Arbitrary text: as a sealed value, as a cookie value, as a whole Cookie header.
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        if f.ring.open("__Host-sekisho", text).is_some() {
            assert_eq!(text, f.genuine, "a value the ring never sealed opened");
        }
        for header in [format!("__Host-sekisho=1~{text}"), text.to_owned()] {
            if decode(f, &header) {
                assert!(header.contains(&f.genuine), "a forged session was accepted: {header:?}");
            }
        }
    } else {
        // The genuine sealed value with bytes changed: (position, new byte) pairs.
        let mut sealed = f.genuine.clone().into_bytes();
        for pair in rest.chunks(2) {
            if let [pos, byte] = pair {
                let i = usize::from(*pos) * sealed.len() / 256;
                sealed[i] = *byte;
            }
        }
        let Ok(sealed) = String::from_utf8(sealed) else {
            return;
        };
        let header = format!("__Host-sekisho=1~{sealed}");
        let valid = decode(f, &header);
        assert_eq!(valid, sealed == f.genuine, "tampered cookie accepted: {sealed:?}");
    }
});
