//! Per-request costs of the identity step: opening a session cookie, stripping identity
//! headers, checking a return target and signing an upstream assertion.
//! Run with `cargo bench -p sekisho-identity` (release profile; not part of CI).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::header::COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue};
use jiff::Timestamp;
use sekisho_identity::session::{Decoded, SessionManager};
use sekisho_identity::{
    AssertionSigner, AuthMethod, CookieKey, CookieKeyRing, IdentityMetrics, SessionConfig,
    VerifiedIdentity, safe_return_target, strip_identity_headers,
};

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let ring =
        CookieKeyRing::new(vec![CookieKey::generate("new"), CookieKey::generate("old")]).unwrap();
    let sessions = SessionManager::new(
        SessionConfig::default(),
        ring,
        "https://idp.example",
        Arc::new(IdentityMetrics::default()),
    )
    .unwrap();
    // Valid sessions are only made by a login (see tests/real_idp.rs); here the cost of
    // refusing a forged 2 KB cookie (one AES-GCM open per key in the ring) is measured.
    let mut garbage = HeaderMap::new();
    garbage.insert(
        COOKIE,
        HeaderValue::from_str(&format!("a=1; __Host-sekisho=1~{}", "A".repeat(2000))).unwrap(),
    );
    c.bench_function("session_decode_refused", |b| {
        b.iter(|| {
            matches!(
                sessions.decode(black_box(&garbage), now),
                Decoded::Rejected(_)
            )
        })
    });

    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("accept", "text/html"),
        ("x-forwarded-email", "evil@example"),
        ("x_forwarded_user", "root"),
        ("x-request-id", "abc"),
        ("cookie", "a=1; __Host-sekisho=xyz"),
        ("user-agent", "bench"),
    ] {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_static(v),
        );
    }
    c.bench_function("strip_identity_headers", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            strip_identity_headers(&mut h, &["x-city-user"]);
            sekisho_identity::strip_sekisho_cookies(&mut h, "__Host-sekisho");
            h
        })
    });

    // What every session request carries: one sealed session cookie of ≈ 1.3 KB, which the
    // gateway removes before forwarding.
    let mut session_request = HeaderMap::new();
    session_request.insert(
        COOKIE,
        HeaderValue::from_str(&format!("__Host-sekisho=1~{}", "A".repeat(1300))).unwrap(),
    );
    c.bench_function("strip_sekisho_cookies_session", |b| {
        b.iter(|| {
            let mut h = session_request.clone();
            sekisho_identity::strip_sekisho_cookies(&mut h, "__Host-sekisho");
            h
        })
    });

    c.bench_function("safe_return_target", |b| {
        b.iter(|| {
            safe_return_target(
                "portal.city.example.jp",
                black_box("/app/reports/2026?q=%E5%B8%82&page=2"),
                |_, p| p.starts_with("/app/"),
            )
        })
    });

    let (signer, _) =
        AssertionSigner::generate("https://sekisho.city.example.jp", Duration::from_secs(60))
            .unwrap();
    let id = VerifiedIdentity::dangerous_unverified(
        "iss",
        "alice",
        vec!["staff".into(), "finance".into()],
        vec!["pwd".into(), "otp".into()],
        AuthMethod::Session,
    );
    c.bench_function("assertion_sign_es256", |b| {
        b.iter(|| {
            signer
                .sign(&id, "payroll", Some("dev-42"), "pv-1", "req-1", now)
                .unwrap()
        })
    });
    // What a request pays once the assertion for its user, device and route is signed.
    let reuse = Duration::from_secs(30);
    c.bench_function("assertion_reused", |b| {
        b.iter(|| {
            signer
                .assertion(
                    None,
                    &id,
                    "payroll",
                    Some("dev-42"),
                    "pv-1",
                    "req-1",
                    now,
                    reuse,
                )
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
