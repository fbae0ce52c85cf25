//! The path canonicaliser: never panics; its output is origin-form, idempotent, and holds no
//! `//`, no `.`/`..` segment, no `\`, `;`, control or non-ASCII byte, and no `%2F`/`%5C`/`%25`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sekisho_gateway::canon::{canonicalize, prefix_matches};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(c) = canonicalize(raw) else { return };
    assert!(c.starts_with('/'), "{raw:?} -> {c:?}");
    assert!(!c.contains("//"), "{raw:?} -> {c:?}");
    assert!(
        !c.split('/').any(|s| s == "." || s == ".."),
        "{raw:?} -> {c:?}"
    );
    assert!(
        c.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b';'),
        "{raw:?} -> {c:?}"
    );
    let upper = c.to_ascii_uppercase();
    assert!(
        !upper.contains("%2F") && !upper.contains("%5C") && !upper.contains("%25"),
        "{raw:?} -> {c:?}"
    );
    assert_eq!(canonicalize(&c).as_deref(), Ok(c.as_str()), "not idempotent: {raw:?}");
    // Route matching on the canonical path never panics and is reflexive.
    assert!(prefix_matches(&c, &c));
});
