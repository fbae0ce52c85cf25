//! `sekisho-session-mint KEYS_FILE ISSUER [SUB] [GROUP,GROUP…]` prints a `Cookie:` value
//! (`__Host-sekisho=1~…`) holding a fresh session: created and last seen now, claims fetched
//! now, absolute end in 10 h, amr pwd+otp. For benchmarks only: it needs the gateway's cookie
//! key file, which is the gateway's secret.
//!
//! The session layout mirrors `sekisho_identity::session::SessionData` (serde names v, i, o,
//! u, c, x, l, r); if that layout changes, the gateway refuses the cookie and bench/run.sh
//! reports the probe failure instead of a number.
use base64::Engine;
use sekisho_identity::{CookieKey, CookieKeyRing};
use std::io::Read;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: sekisho-session-mint KEYS_FILE ISSUER [SUB] [GROUPS]");
        std::process::exit(2);
    }
    let text = std::fs::read_to_string(&args[1]).expect("key file");
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (id, b64) = line.split_once(':').expect("id:base64key");
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64");
        keys.push(CookieKey::new(id.trim(), &bytes).expect("key"));
    }
    let ring = CookieKeyRing::new(keys).expect("ring");
    let sub = args.get(3).cloned().unwrap_or_else(|| "bench-user-1".into());
    let groups: Vec<String> = args.get(4).map(|g| g.split(',').map(str::to_owned).collect()).unwrap_or_else(|| vec!["staff".into()]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut sid = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut sid)).expect("urandom");
    let sid: String = sid.iter().map(|b| format!("{b:02x}")).collect();
    let data = serde_json::json!({
        "v": 1, "i": sid, "o": args[2],
        "u": { "s": sub, "e": "bench@city.sekisho.lg.jp", "n": "Bench User", "g": groups, "m": ["pwd", "otp"], "t": now },
        "c": now, "x": now + 36_000, "l": now, "r": now,
    });
    let name = "__Host-sekisho";
    let sealed = ring.seal(name, &data.to_string());
    println!("{name}=1~{sealed}");
}
