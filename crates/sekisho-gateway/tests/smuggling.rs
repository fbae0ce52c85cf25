//! Ambiguous and malformed requests are refused with 400 (or 431), the connection is
//! closed, and nothing reaches the upstream. Sent as raw bytes over real TLS.

use crate::common;

use common::*;

async fn setup() -> (Gw, Echo) {
    let up = echo("portal", "127.0.10.40:0").await;
    let gw = gateway(&format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
"#,
        up.addr
    ))
    .await;
    (gw, up)
}

/// Sends `req` and checks: refused with `want`, connection closed, upstream untouched.
async fn refused(gw: &Gw, up: &Echo, name: &str, req: &[u8], want: u16) {
    let raw = raw_tls(&gw.pki, gw.addr("lgwan-https"), SITE, req).await;
    let status = status_of(&raw);
    assert_eq!(status, want, "{name}: got {raw:?}");
    // Exactly one response: the connection was closed, a smuggled second request was not
    // answered.
    assert_eq!(raw.matches("HTTP/1.1 ").count(), 1, "{name}: {raw:?}");
    assert_eq!(
        up.count(),
        0,
        "{name}: the upstream saw {:?}",
        up.requests()
    );
}

fn h(s: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {SITE}\r\n{s}")
}

#[tokio::test]
async fn request_smuggling_forms_are_refused() {
    let (gw, up) = setup().await;
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "CL.TE",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: {SITE}\r\n\r\n"
            ),
            400,
        ),
        (
            "TE.CL",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "duplicate Content-Length (different)",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc"
            ),
            400,
        ),
        (
            "duplicate Content-Length (same)",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
            ),
            400,
        ),
        (
            "Content-Length list",
            format!("POST / HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 3, 3\r\n\r\nabc"),
            400,
        ),
        (
            "invalid Content-Length",
            format!("POST / HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: +3\r\n\r\nabc"),
            400,
        ),
        (
            "negative Content-Length",
            format!("POST / HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: -1\r\n\r\n"),
            400,
        ),
        (
            "TE obfuscated (xchunked)",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "TE list (gzip, chunked)",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "TE duplicated",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "TE with space before colon",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "TE on HTTP/1.0",
            format!(
                "POST / HTTP/1.0\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
            400,
        ),
        ("obsolete line folding", h("X-Folded: a\r\n b\r\n\r\n"), 400),
        (
            "bare LF in headers",
            format!("GET / HTTP/1.1\nHost: {SITE}\nX-A: b\n\n"),
            400,
        ),
        ("bare LF after a header", h("X-A: b\n\r\n"), 400),
        ("NUL in a header value", h("X-A: a\0b\r\n\r\n"), 400),
        ("NUL in a header name", h("X-\0A: b\r\n\r\n"), 400),
        ("CR alone in a header value", h("X-A: a\rb\r\n\r\n"), 400),
        ("duplicate Host", h(&format!("Host: {SITE}\r\n\r\n")), 400),
        (
            "missing Host",
            "GET / HTTP/1.1\r\nX-A: b\r\n\r\n".into(),
            400,
        ),
        (
            "bad chunk size",
            format!(
                "POST / HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            ),
            400,
        ),
        (
            "oversized header section",
            h(&format!("X-Big: {}\r\n\r\n", "a".repeat(70 * 1024))),
            431,
        ),
    ];
    for (name, req, want) in &cases {
        refused(&gw, &up, name, req.as_bytes(), *want).await;
    }
    let m = gw.metrics().await;
    assert!(m.contains("sekisho_rejected_requests_total"), "{m}");
}

#[tokio::test]
async fn a_well_formed_chunked_request_still_works() {
    let (gw, up) = setup().await;
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: {SITE}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    let raw = raw_tls(&gw.pki, gw.addr("lgwan-https"), SITE, req.as_bytes()).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert_eq!(up.requests()[0].body_len, 5);
}
