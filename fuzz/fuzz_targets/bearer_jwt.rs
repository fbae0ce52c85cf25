//! The bearer JWT path with a fixed key set (served once on loopback, then cached): arbitrary
//! tokens never verify; tokens signed by the issuer's key over arbitrary header and claims
//! JSON verify only when every rule holds (ES256, iss, aud, exp, nbf, iat); a genuine token
//! with any byte changed never verifies.
#![no_main]
use std::io::{Read, Write};
use std::sync::OnceLock;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use libfuzzer_sys::fuzz_target;
use sekisho_identity::bearer::BearerVerifier;
use sekisho_identity::{BearerConfig, IdentityMetrics};
use serde_json::{Value, json};

const ISS: &str = "https://idp.city.example.jp";
const AUD: &str = "https://api.city.example.jp";
const NOW: i64 = 1_795_000_000;

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: BearerVerifier,
    key: EcdsaKeyPair,
    genuine: String,
}

fn sign(key: &EcdsaKeyPair, header: &[u8], claims: &[u8]) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(sig.as_ref()))
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let kp = rcgen::KeyPair::generate().unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &kp.serialize_der()).unwrap();
        let raw = key.public_key().as_ref().to_vec();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "alg": "ES256", "x": B64.encode(&raw[1..33]), "y": B64.encode(&raw[33..65])}]})
        .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                    jwks.len()
                );
            }
        });
        let mut cfg = BearerConfig::new(ISS, vec![AUD.to_owned()]);
        cfg.jwks_uri = Some(url::Url::parse(&format!("http://{addr}/jwks")).unwrap());
        let verifier =
            BearerVerifier::new(cfg, std::sync::Arc::new(IdentityMetrics::default())).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let now = jiff::Timestamp::from_second(NOW).unwrap();
        rt.block_on(verifier.prefetch(now));
        let genuine = sign(
            &key,
            json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}).to_string().as_bytes(),
            json!({"iss": ISS, "aud": AUD, "sub": "svc", "exp": NOW + 600, "iat": NOW - 5})
                .to_string()
                .as_bytes(),
        );
        let f = Fixture { rt, verifier, key, genuine };
        assert!(f.rt.block_on(f.verifier.verify(&f.genuine, now)).is_ok(), "fixture token");
        f
    })
}

fn verify(f: &Fixture, token: &str) -> bool {
    let now = jiff::Timestamp::from_second(NOW).unwrap();
    f.rt.block_on(f.verifier.verify(token, now)).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(token) = std::str::from_utf8(rest) {
                assert!(!verify(f, token), "an unsigned input verified: {token:?}");
            }
        }
        1 => {
            // Header JSON and claims JSON separated by the first 0xff, signed with the key.
            let split = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
            let (header, claims) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
            let token = sign(&f.key, header, claims);
            if verify(f, &token) {
                let h: Value = serde_json::from_slice(header).expect("verified header is JSON");
                let c: Value = serde_json::from_slice(claims).expect("verified claims are JSON");
                assert_eq!(h["alg"], "ES256", "{h}");
                assert!(h.get("crit").is_none(), "{h}");
                assert_eq!(c["iss"], ISS, "{c}");
                let aud_ok = c["aud"] == AUD
                    || c["aud"].as_array().is_some_and(|a| a.iter().any(|x| x == AUD));
                assert!(aud_ok, "{c}");
                let leeway = 60;
                let exp = c["exp"].as_i64().expect("exp is an integer");
                assert!(NOW <= exp + leeway, "expired token verified: {c}");
                if let Some(nbf) = c.get("nbf") {
                    assert!(nbf.as_i64().is_some_and(|n| n <= NOW + leeway), "{c}");
                }
                if let Some(iat) = c.get("iat") {
                    assert!(iat.as_i64().is_some_and(|n| n <= NOW + leeway), "{c}");
                }
            }
        }
        _ => {
            let mut t = f.genuine.clone().into_bytes();
            for pair in rest.chunks(2) {
                if let [pos, byte] = pair {
                    let i = usize::from(*pos) * t.len() / 256;
                    t[i] = *byte;
                }
            }
            if let Ok(t) = String::from_utf8(t) {
                assert_eq!(verify(f, &t), t == f.genuine, "a changed token verified: {t:?}");
            }
        }
    }
});
