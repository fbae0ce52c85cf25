//! What the gateway's `tests/smuggling.rs` and `tests/paths.rs` do not cover yet: chunk-size
//! and chunk-extension tricks, more Transfer-Encoding obfuscations, request-line oddities,
//! trailers, HTTP/2 → HTTP/1.1 translation (length mismatches, :authority vs Host, CR/LF in
//! header values, upper-case names), early data on upgrade and h2c upgrade smuggling, and
//! Unicode look-alikes of path characters.
//!
//! Routes on one host: `/admin` (policy admins-only, own upstream), `/pub` (public) and a
//! public catch-all. Refusals before routing are counted in `sekisho_rejected_requests_total`
//! (they are logged, not audited); routed requests are on the audit trail.

use crate::common;
use crate::support;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Site {
    gw: Gw,
    audit: std::path::PathBuf,
    catchall: Echo,
    public: Echo,
    admin: Echo,
}

async fn site(extra_routes: &str) -> Site {
    let catchall = echo("catchall", "127.0.10.180:0").await;
    let public = echo("public", "127.0.10.181:0").await;
    let admin = echo("admin", "127.0.10.182:0").await;
    let routes = format!(
        r#"routes:
  catchall:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
  public:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /pub
    upstreams: [http://{}]
    access: public
  admin:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /admin
    upstreams: [http://{}]
    policy: admins-only
{extra_routes}"#,
        catchall.addr, public.addr, admin.addr
    );
    let (gw, audit) = audited("", &routes).await;
    Site {
        gw,
        audit,
        catchall,
        public,
        admin,
    }
}

impl Site {
    fn seen(&self) -> Vec<Seen> {
        let mut v = self.catchall.requests();
        v.extend(self.public.requests());
        v.extend(self.admin.requests());
        v
    }
}

#[derive(Debug, Clone, Copy)]
enum Want {
    /// 400 before routing; counted as a rejected request; nothing upstream.
    Refused,
    /// Answered with this status; exactly `n` requests reached the upstreams.
    Forwarded(u16, usize),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_te_and_request_line_tricks() {
    use Want::*;
    let s = site("").await;
    let post = |extra: &str, body: &str| {
        format!("POST /pub/u HTTP/1.1\r\nHost: {SITE}\r\n{extra}Connection: close\r\n\r\n{body}")
    };
    let smuggled = format!("GET /admin HTTP/1.1\r\nHost: {SITE}\r\n\r\n");
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "chunk size overflow",
            post(
                "Transfer-Encoding: chunked\r\n",
                "ffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "chunk size with 0x prefix",
            post(
                "Transfer-Encoding: chunked\r\n",
                "0x5\r\nhello\r\n0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "negative chunk size",
            post("Transfer-Encoding: chunked\r\n", "-5\r\nhello\r\n0\r\n\r\n"),
            Refused,
        ),
        (
            "chunk size with a space before it",
            post("Transfer-Encoding: chunked\r\n", " 5\r\nhello\r\n0\r\n\r\n"),
            Refused,
        ),
        (
            "chunk data longer than its size",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("3\r\nhello\r\n0\r\n\r\n{smuggled}"),
            ),
            Refused,
        ),
        (
            "chunk size line ended by a bare LF",
            post("Transfer-Encoding: chunked\r\n", "5\nhello\r\n0\r\n\r\n"),
            Refused,
        ),
        (
            "chunk extension with a bare LF",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5;a=b\nc\r\nhello\r\n0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "chunk extension with a quoted CR LF",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5;a=\"\r\n\"\r\nhello\r\n0\r\n\r\n",
            ),
            Refused,
        ),
        (
            "a well-formed chunk extension is read, not passed on",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5;name=value\r\nhello\r\n0\r\n\r\n",
            ),
            Forwarded(200, 1),
        ),
        (
            "last chunk followed by a smuggled request is a second request, decided alone",
            post(
                "Transfer-Encoding: chunked\r\n",
                &format!("0\r\n\r\n{smuggled}"),
            )
            .replace("Connection: close\r\n", ""),
            Forwarded(200, 1),
        ),
        (
            "trailer naming Content-Length and Host",
            post(
                "Transfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\nContent-Length: 50\r\nHost: evil.example\r\nX-Sekisho-User: root\r\n\r\n",
            ),
            Refused,
        ),
        (
            "TE quoted",
            post("Transfer-Encoding: \"chunked\"\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "TE identity",
            post("Transfer-Encoding: identity\r\n", ""),
            Refused,
        ),
        (
            "TE chunked twice in a list",
            post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "TE with vertical tab",
            post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "TE with a NUL",
            post("Transfer-Encoding: chunked\0\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "TE on a continuation line",
            post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"),
            Refused,
        ),
        (
            "Content-Length with a sign",
            post("Content-Length: +5\r\n", "hello"),
            Refused,
        ),
        (
            "Content-Length in hex",
            post("Content-Length: 0x5\r\n", "hello"),
            Refused,
        ),
        (
            "Content-Length with a space inside",
            post("Content-Length: 1 0\r\n", "helloworld"),
            Refused,
        ),
        (
            "Content-Length overflowing u64",
            post("Content-Length: 99999999999999999999\r\n", ""),
            Refused,
        ),
        (
            "Content-Length and an underscore Transfer_Encoding",
            post(
                "Content-Length: 5\r\nTransfer_Encoding: chunked\r\n",
                "hello",
            ),
            Forwarded(200, 1),
        ),
        (
            "space before the colon in Content-Length",
            post("Content-Length : 5\r\n", "hello"),
            Refused,
        ),
        (
            "header line starting with a space",
            format!("GET /pub HTTP/1.1\r\n Host: {SITE}\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        ("HTTP/0.9 request", "GET /admin\r\n\r\n".into(), Refused),
        (
            "HTTP/1.2",
            format!("GET /admin HTTP/1.2\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "HTTP/2.0 as text",
            format!("GET /admin HTTP/2.0\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "two spaces in the request line",
            format!("GET  /admin HTTP/1.1\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "tab in the request line",
            format!("GET\t/admin HTTP/1.1\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "absolute-form with userinfo",
            format!("GET https://user@{SITE}/pub HTTP/1.1\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "absolute-form http on TLS",
            format!("GET http://{SITE}/admin HTTP/1.1\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "authority-form for GET",
            format!("GET {SITE}:443 HTTP/1.1\r\nHost: {SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "CONNECT",
            "CONNECT 127.0.30.5:80 HTTP/1.1\r\nHost: 127.0.30.5:80\r\n\r\n".to_string(),
            Refused,
        ),
        (
            "Host with a trailing dot and another port: the same site",
            format!("GET /pub HTTP/1.1\r\nHost: {SITE}.:1\r\nConnection: close\r\n\r\n"),
            Forwarded(200, 1),
        ),
        (
            "Host with userinfo",
            format!("GET /pub HTTP/1.1\r\nHost: evil@{SITE}\r\n\r\n"),
            Refused,
        ),
        (
            "Host with a path",
            format!("GET /pub HTTP/1.1\r\nHost: {SITE}/admin\r\n\r\n"),
            Refused,
        ),
        (
            "two Hosts, one empty",
            format!("GET /pub HTTP/1.1\r\nHost: {SITE}\r\nHost:\r\n\r\n"),
            Refused,
        ),
        (
            "CR LF in the query",
            format!("GET /pub?a=%0d%0a HTTP/1.1\r\nHost: {SITE}\r\nX: a\rb\r\n\r\n"),
            Refused,
        ),
    ];
    let rejected_before = metric(&s.gw.metrics().await, "sekisho_rejected_requests", &[]);
    let mut refused = 0.0;
    for (case, req, want) in &cases {
        let before = s.seen().len();
        let raw = raw(&s.gw.pki, s.gw.addr("lgwan-https"), req).await;
        let status = status_of(&raw);
        let after = s.seen();
        match want {
            Refused => {
                assert!(
                    status == 400 || (status == 0 && raw.is_empty()),
                    "{case}: {raw:?}"
                );
                assert_eq!(
                    after.len(),
                    before,
                    "{case}: reached an upstream: {:?}",
                    after.last()
                );
                refused += 1.0;
            }
            Forwarded(st, n) => {
                assert_eq!(status, *st, "{case}: {raw:?}");
                assert_eq!(after.len(), before + n, "{case}");
                let last = after.iter().max_by_key(|x| x.body_len).unwrap();
                let _ = last;
                // Whatever went upstream carries none of the trailer's or smuggled claims.
                for seen in &after[before..] {
                    assert!(!seen.headers.contains_key("x-sekisho-user"), "{case}");
                    assert!(
                        seen.headers.get("host").is_none_or(|h| h != "evil.example"),
                        "{case}"
                    );
                }
                let rid = rid_of(&raw).unwrap();
                assert_allowed_on_record(&s.audit, &rid, case).await;
            }
        }
    }
    // The request pipelined after the last chunk was decided on its own: the admin route.
    assert_eq!(
        s.admin.count(),
        0,
        "the smuggled /admin request reached its upstream"
    );
    let recs = records(&s.audit);
    assert!(
        recs.iter()
            .any(|r| r["kind"] == "access" && r["path"] == "/admin" && r["decision"] == "deny"),
        "the pipelined /admin request is on record as denied"
    );
    let rejected_after = metric(&s.gw.metrics().await, "sekisho_rejected_requests", &[]);
    // Connections refused by hyper itself (malformed request lines) are not all counted by
    // reason; the guard's and the pipeline's refusals are.
    assert!(
        rejected_after - rejected_before >= refused / 2.0,
        "rejected_requests grew by {} for {refused} refusals",
        rejected_after - rejected_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_headers_with_underscores_never_go_upstream() {
    let s = site("").await;
    for (case, extra) in [
        ("Transfer_Encoding", "Transfer_Encoding: chunked\r\n"),
        ("Content_Length", "Content_Length: 0\r\n"),
        (
            "transfer_encoding lower case",
            "transfer_encoding: chunked\r\n",
        ),
    ] {
        let req = format!(
            "POST /pub/u HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 5\r\n{extra}Connection: close\r\n\r\nhello"
        );
        let raw = raw(&s.gw.pki, s.gw.addr("lgwan-https"), &req).await;
        let forwarded = s.seen().into_iter().any(|x| {
            x.headers.contains_key("transfer_encoding") || x.headers.contains_key("content_length")
        });
        assert!(
            !forwarded,
            "{case}: went upstream ({}), where a server that maps `_` to `-` reads two framings",
            status_of(&raw)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_http1_translation_cannot_be_abused() {
    let s = site("").await;
    let addr = s.gw.addr("lgwan-https");
    let authority = format!("{SITE}:{}", addr.port());
    let mut client = h2_client(&s.gw.pki, addr).await;

    // Content-Length that the DATA frames contradict: a stream error, never a request upstream.
    for (case, cl, body) in [
        ("content-length larger than the body", "10", &b"hello"[..]),
        ("content-length smaller than the body", "2", &b"hello"[..]),
    ] {
        let before = s.seen().len();
        let req = http::Request::post(format!("https://{authority}/pub/len"))
            .header("content-length", cl)
            .body(())
            .unwrap();
        let res = h2_send(&mut client, req, Some(body)).await;
        if let Ok((status, _)) = &res {
            assert_eq!(*status, 400, "{case}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(s.seen().len(), before, "{case}: {res:?}");
        client = h2_client(&s.gw.pki, addr).await;
    }

    // :authority and Host disagree: 400; agree up to case and a trailing dot: routed.
    let req = http::Request::get(format!("https://{authority}/admin"))
        .header("host", "other.test.localhost")
        .body(())
        .unwrap();
    let (status, _) = h2_send(&mut client, req, None).await.unwrap();
    assert_eq!(status, 400, ":authority vs Host");
    let req = http::Request::get(format!("https://{authority}/pub/x"))
        .header("host", format!("APP.test.localhost.:{}", addr.port()))
        .body(())
        .unwrap();
    let (status, rid) = h2_send(&mut client, req, None).await.unwrap();
    assert_eq!(status, 200, "same host spelled differently");
    assert_allowed_on_record(&s.audit, &rid.unwrap(), "h2 host spelling").await;
    // :authority for another host than the TLS server name.
    let req = http::Request::get(format!("https://other.test.localhost:{}/pub", addr.port()))
        .body(())
        .unwrap();
    let (status, _) = h2_send(&mut client, req, None).await.unwrap();
    assert_eq!(status, 421, "misdirected :authority");
    // OPTIONS * and CONNECT.
    let req = http::Request::connect(format!("127.0.30.5:{}", addr.port()))
        .body(())
        .unwrap();
    if let Ok((status, _)) = h2_send(&mut client, req, None).await {
        assert!(status == 400 || status == 405, "CONNECT over h2: {status}");
    }
    client = h2_client(&s.gw.pki, addr).await;
    let _ = &mut client;

    // Raw frames: CR LF in a header value (h1 header injection on the way out), an
    // upper-case header name, a Transfer-Encoding header, a connection-specific header.
    let fields = |extra: (&'static [u8], &'static [u8])| {
        vec![
            (&b":method"[..], &b"GET"[..]),
            (b":scheme", b"https"),
            (b":path", b"/pub/raw"),
            extra,
        ]
    };
    type Field<'a> = (&'a [u8], &'a [u8]);
    let cases: Vec<(&str, Field)> = vec![
        (
            "CR LF in a value",
            (b"x-note", b"a\r\nX-Sekisho-User: root"),
        ),
        ("LF in a value", (b"x-note", b"a\nX-Sekisho-User: root")),
        ("NUL in a value", (b"x-note", b"a\0b")),
        ("upper-case name", (b"X-Sekisho-User", b"root")),
        ("transfer-encoding", (b"transfer-encoding", b"chunked")),
        ("connection header", (b"connection", b"x-sekisho-user")),
        ("space in a name", (b"x sekisho", b"root")),
    ];
    for (case, extra) in cases {
        let before = s.seen().len();
        let tls = tls_connect(&s.gw.pki, addr, &[b"h2"]).await;
        let mut f = fields(extra);
        let auth = authority.clone().into_bytes();
        f.push((b":authority", &auth));
        let chunks = vec![h2raw::start(), h2raw::headers(1, true, &f)];
        let ans = h2raw::converse(tls, chunks, Duration::from_millis(800)).await;
        assert!(
            !ans.resets.is_empty() || ans.goaway.is_some() || ans.closed,
            "{case}: the malformed stream was not refused: {ans:?}"
        );
        for seen in &s.seen()[before..] {
            assert!(
                !seen.headers.contains_key("x-sekisho-user"),
                "{case}: injected header upstream"
            );
        }
    }
    assert_eq!(s.admin.count(), 0);
}

/// An upstream that answers 101 to any upgrade and then records every byte it receives.
async fn switching_upstream(
    bind: &str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let g = got.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut tmp = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&tmp[..n]),
                    }
                }
                let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                g.lock().unwrap().extend_from_slice(&buf[end..]);
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let proto = head
                    .lines()
                    .find_map(|l| l.strip_prefix("upgrade:").map(|v| v.trim().to_owned()))
                    .unwrap_or_default();
                let _ = sock
                    .write_all(
                        format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\nSec-WebSocket-Accept: x\r\n\r\n")
                            .as_bytes(),
                    )
                    .await;
                loop {
                    match sock.read(&mut tmp).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => g.lock().unwrap().extend_from_slice(&tmp[..n]),
                    }
                }
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_on_upgrade_is_never_routed_around_policy() {
    let s = site("").await;
    let addr = s.gw.addr("lgwan-https");
    let smuggled = format!("GET /admin/secret HTTP/1.1\r\nHost: {SITE}\r\n\r\n");

    // 1. The upstream declines the upgrade (answers 200): bytes sent after the upgrade request
    //    are the next request on the connection, routed and decided on their own.
    let req = format!(
        "GET /pub/ws HTTP/1.1\r\nHost: {SITE}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n{smuggled}"
    );
    let raw = raw(&s.gw.pki, addr, &req).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(
        raw.contains("HTTP/1.1 401"),
        "the early request was decided: {raw}"
    );
    assert_eq!(
        s.admin.count(),
        0,
        "the early /admin request reached the admin upstream"
    );
    assert!(
        !s.seen().iter().any(|x| x.uri.contains("admin")),
        "an /admin request reached another upstream"
    );
    let recs = records(&s.audit);
    assert!(
        recs.iter()
            .any(|r| r["path"] == "/admin/secret" && r["decision"] == "deny")
    );

    // 2. The upstream accepts a websocket: early bytes travel inside that tunnel to that
    //    upstream only — never parsed as a request, never routed elsewhere.
    let (ws, got) = switching_upstream("127.0.10.183:0").await;
    let s2 = site(&format!(
        "  ws:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /ws\n    upstreams: [http://{ws}]\n    access: public\n"
    ))
    .await;
    let addr2 = s2.gw.addr("lgwan-https");
    let mut tls = tls_connect(&s2.gw.pki, addr2, &[b"http/1.1"]).await;
    tls.write_all(
        format!(
            "GET /ws/live HTTP/1.1\r\nHost: {SITE}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n{smuggled}"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let answer = read_for(&mut tls, Duration::from_millis(1500)).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(
        !answer.contains("HTTP/1.1 401"),
        "early tunnel bytes were parsed as a request"
    );
    assert_eq!(s2.admin.count(), 0);
    let access: Vec<serde_json::Value> = records(&s2.audit)
        .into_iter()
        .filter(|r| r["kind"] == "access")
        .collect();
    assert_eq!(
        access.len(),
        1,
        "one decision for the one request: {access:?}"
    );
    let tunnelled = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        tunnelled.is_empty() || tunnelled.contains("/admin/secret"),
        "tunnel bytes: {tunnelled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_cannot_smuggle_requests_past_policy() {
    // One upstream serves a public path and a protected path through two routes.
    let (up, got) = switching_upstream("127.0.10.184:0").await;
    let s = site(&format!(
        "  shared-public:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /open\n    upstreams: [http://{up}]\n    access: public\n  shared-private:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /private\n    upstreams: [http://{up}]\n    policy: admins-only\n"
    ))
    .await;
    let addr = s.gw.addr("lgwan-https");
    let mut tls = tls_connect(&s.gw.pki, addr, &[b"http/1.1"]).await;
    tls.write_all(
        format!("GET /open/x HTTP/1.1\r\nHost: {SITE}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), tls.read(&mut head))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    if head.starts_with("HTTP/1.1 101") {
        // Now speak HTTP/2 through the tunnel, to a path the policy protects.
        let _ = tls.write_all(h2raw::PREFACE).await;
        let _ = tls
            .write_all(&h2raw::get(1, SITE, "/private/payroll"))
            .await;
        let _ = read_for(&mut tls, Duration::from_millis(800)).await;
    }
    let tunnelled = String::from_utf8_lossy(&got.lock().unwrap()).into_owned();
    assert!(
        !head.starts_with("HTTP/1.1 101"),
        "the gateway switched to h2c on behalf of the client; the upstream received: {tunnelled:?}"
    );
    let _ = Bytes::new();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_look_alikes_of_path_characters_do_not_reach_another_route() {
    let s = site("").await;
    // Percent-encoded code points that NFKC normalisation, "best fit" mappings or Unicode
    // case mapping turn into `/`, `.`, `\` or the letters of `admin` on some upstreams.
    let cases = [
        ("fullwidth solidus", "/pub%EF%BC%8F..%EF%BC%8Fadmin"),
        ("fullwidth full stops", "/pub/%EF%BC%8E%EF%BC%8E/admin"),
        ("fullwidth reverse solidus", "/pub%EF%BC%BC..%EF%BC%BCadmin"),
        ("division slash", "/pub%E2%88%95..%E2%88%95admin"),
        ("fraction slash", "/pub%E2%81%84..%E2%81%84admin"),
        ("one dot leader", "/pub/%E2%80%A4%E2%80%A4/admin"),
        ("small full stop", "/pub/%EF%B9%92%EF%B9%92/admin"),
        ("dotless i (uppercases to I)", "/adm%C4%B1n"),
        (
            "fullwidth letters",
            "/%EF%BD%81%EF%BD%84%EF%BD%8D%EF%BD%89%EF%BD%8E",
        ),
        (
            "mathematical letters",
            "/%F0%9D%90%9A%F0%9D%90%9D%F0%9D%90%A6%F0%9D%90%A2%F0%9D%90%A7",
        ),
    ];
    let mut leaked = Vec::new();
    for (case, path) in cases {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
        let before = s.catchall.count() + s.public.count();
        let raw = raw(&s.gw.pki, s.gw.addr("lgwan-https"), &req).await;
        let status = status_of(&raw);
        assert_eq!(s.admin.count(), 0, "{case}");
        if status == 200 && s.catchall.count() + s.public.count() > before {
            leaked.push(case);
        }
    }
    assert!(
        leaked.is_empty(),
        "forwarded to a non-admin route (read as /admin by an NFKC or case-folding upstream): {leaked:?}"
    );
}
