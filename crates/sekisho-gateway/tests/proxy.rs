//! End-to-end proxying through a real gateway with real TLS to real upstreams on loopback.

use crate::common;

use std::time::Duration;

use common::*;

/// One route `portal` on the test site to `upstream`, with its remaining lines (access,
/// timeouts, …) given as YAML indented by four spaces.
fn portal_route(upstream: impl std::fmt::Display, rest: &str) -> String {
    format!(
        "routes:\n  portal:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [http://{upstream}]\n{rest}"
    )
}

fn public_route(upstreams: &[std::net::SocketAddr]) -> String {
    let ups: Vec<String> = upstreams.iter().map(|a| format!("http://{a}")).collect();
    format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [{}]
    access: public
"#,
        ups.join(", ")
    )
}

#[tokio::test]
async fn http1_request_reaches_upstream_with_gateway_headers_only() {
    let up = echo("portal", "127.0.10.2:0").await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let resp = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/a//b/./c?q=1"))
        .header("X-Forwarded-For", "10.9.9.9")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "http")
        .header("X_Forwarded_Email", "boss@example.lg.jp")
        .header("X-Sekisho-User", "admin")
        .header("X-Original-URL", "/admin")
        .header("Oidc-Claim-Email", "boss@example.lg.jp")
        .header("X-Amzn-Oidc-Identity", "boss")
        .header("Forwarded", "for=10.9.9.9")
        .header("X-Request-Id", "spoofed-id")
        .header("Connection", "x-secret")
        .header("X-Secret", "hop")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["cache-control"],
        "no-store",
        "LGWAN zone response control"
    );
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(rid, "spoofed-id");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(
        s.uri, "/a/b/c?q=1",
        "the canonical path is what is forwarded"
    );
    assert_eq!(s.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "https");
    assert_eq!(s.headers["x-request-id"].to_str().unwrap(), rid);
    assert!(
        s.headers["x-forwarded-host"]
            .to_str()
            .unwrap()
            .starts_with(SITE)
    );
    assert!(s.headers["host"].to_str().unwrap().starts_with(SITE));
    for spoofed in [
        "oidc-claim-email",
        "x-amzn-oidc-identity",
        "x_forwarded_email",
        "x-sekisho-user",
        "x-original-url",
        "forwarded",
        "x-secret",
    ] {
        assert!(
            !s.headers.contains_key(spoofed),
            "{spoofed} must not reach the upstream"
        );
    }
    assert_eq!(s.headers.get_all("x-forwarded-for").iter().count(), 1);
    // The LGWAN zone binds its egress to 127.0.10.1.
    assert_eq!(s.peer.ip().to_string(), "127.0.10.1");
}

#[tokio::test]
async fn http2_client_reaches_http1_upstream() {
    let up = echo("portal", "127.0.10.3:0").await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let resp = gw
        .client_h2("lgwan-https")
        .get(gw.url("lgwan-https", "/h2"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].version, http::Version::HTTP_11);
    assert_eq!(up.requests()[0].uri, "/h2");
}

#[tokio::test]
async fn http2_upstream_with_prior_knowledge() {
    let up = echo("h2", "127.0.10.4:0").await;
    let gw = gateway(&portal_route(
        up.addr,
        "    upstream_http2: true\n    access: public\n",
    ))
    .await;
    let resp = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].version, http::Version::HTTP_2);
}

#[tokio::test]
async fn requests_without_a_route_get_404_and_reach_nobody() {
    let up = echo("portal", "127.0.10.5:0").await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let resp = gw
        .client("lgwan-https")
        .get(gw.url_at("other.test.localhost", "lgwan-https", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // The route is on the LGWAN listener only; the internet listener does not serve it.
    let resp = gw
        .client("internet-https")
        .get(gw.url("internet-https", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn anonymous_requests_to_policy_routes_are_told_to_sign_in() {
    let up = echo("portal", "127.0.10.6:0").await;
    let gw = gateway(&portal_route(up.addr, "    policy: lgwan-staff\n")).await;
    let resp = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let page = resp.text().await.unwrap();
    assert!(page.contains("lang=\"ja\""), "{page}");
    assert!(page.contains("サインインが必要です"), "{page}");
    assert!(page.contains("リクエスト ID"), "{page}");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn upstream_down_gives_502_and_slow_upstream_gives_504() {
    let down = closed_port("127.0.10.7:0").await;
    let slow = silent("127.0.10.8:0").await;
    let gw = gateway(&format!(
        r#"routes:
  down:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /down
    upstreams: [http://{down}]
    access: public
  slow:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /slow
    upstreams: [http://{slow}]
    access: public
    timeouts: {{ response_header: 300ms }}
"#
    ))
    .await;
    let c = gw.client("lgwan-https");
    assert_eq!(
        c.get(gw.url("lgwan-https", "/down"))
            .send()
            .await
            .unwrap()
            .status(),
        502
    );
    assert_eq!(
        c.get(gw.url("lgwan-https", "/slow"))
            .send()
            .await
            .unwrap()
            .status(),
        504
    );
    let m = gw.metrics().await;
    assert!(
        m.contains(r#"sekisho_upstream_errors_total{route="down",kind="connect"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"sekisho_upstream_errors_total{route="slow",kind="timeout"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn round_robin_skips_a_failed_upstream() {
    let a = echo("a", "127.0.10.9:0").await;
    let b = echo("b", "127.0.10.10:0").await;
    let dead = closed_port("127.0.10.11:0").await;
    let gw = gateway(&public_route(&[a.addr, dead, b.addr])).await;
    let c = gw.client("lgwan-https");
    for i in 0..12 {
        let r = c
            .post(gw.url("lgwan-https", &format!("/rr/{i}")))
            .body("payload")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    assert_eq!(
        a.count() + b.count(),
        12,
        "every request answered, none lost to the dead upstream"
    );
    assert!(
        a.count() >= 4 && b.count() >= 4,
        "a={} b={}",
        a.count(),
        b.count()
    );
    // The POST body survived the retry after the dead upstream refused the connection.
    assert!(
        a.requests()
            .iter()
            .chain(b.requests().iter())
            .all(|s| s.body_len == 7)
    );
}

#[tokio::test]
async fn egress_is_checked_on_every_resolved_address() {
    // `localhost` resolves to 127.0.0.1 / ::1: outside the LGWAN zone's 127.0.10.0/24.
    // The name cannot be checked at load; the connect-time check must refuse it.
    let up = echo("outside", "127.0.0.1:0").await;
    let gw = gateway(&format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://localhost:{}]
    access: public
"#,
        up.addr.port()
    ))
    .await;
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(
        up.count(),
        0,
        "the upstream outside the zone was never contacted"
    );
    let m = gw.metrics().await;
    assert!(m.contains(r#"kind="egress_denied"} 1"#), "{m}");
}

#[tokio::test]
async fn tls_upstream_verified_against_configured_ca() {
    let up_pki = Pki::new(&["portal.internal", "127.0.10.12"]);
    let listener = tokio::net::TcpListener::bind("127.0.10.12:0")
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let certs = sekisho_gateway::tls::ListenerCerts::load(&sekisho_gateway::config::ListenerTls {
        certificates: vec![sekisho_gateway::config::CertPair {
            cert: up_pki.path("server.pem"),
            key: up_pki.path("server-key.pem"),
        }],
    })
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config().unwrap());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(format!(
                            "tls upstream saw {}",
                            req.uri()
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    let gw = gateway(&format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [https://{addr}]
    upstream_tls: {{ ca: {ca}, server_name: portal.internal }}
    access: public
"#,
        ca = up_pki.path("ca.pem").display()
    ))
    .await;
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/secure"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "tls upstream saw /secure");

    // The same upstream with the wrong CA (the gateway's own) is refused: 502.
    gw.rewrite_config(&format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [https://{addr}]
    upstream_tls: {{ ca: {ca}, server_name: portal.internal }}
    access: public
"#,
        ca = gw.pki.path("ca.pem").display()
    ));
    gw.running.reload().unwrap();
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/secure"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
}

#[tokio::test]
async fn websocket_upgrade_is_proxied() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.10.13:0")
        .await
        .unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(s).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        let _ = ws
                            .send(Message::text(format!("echo: {}", msg.to_text().unwrap())))
                            .await;
                    }
                }
            });
        }
    });
    let gw = gateway(&public_route(&[up])).await;
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&gw.pki, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(gw.addr("lgwan-https"))
        .await
        .unwrap();
    let tls = connector
        .connect(rustls_pki_types::ServerName::try_from(SITE).unwrap(), tcp)
        .await
        .unwrap();
    let url = format!("wss://{SITE}:{}/ws", gw.addr("lgwan-https").port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("こんにちは")).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply.to_text().unwrap(), "echo: こんにちは");
}

#[tokio::test]
async fn admin_endpoints_live_on_the_admin_listener_only() {
    let up = echo("portal", "127.0.10.14:0").await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let ready = reqwest::get(format!("http://{}/readyz", gw.running.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let health = reqwest::get(format!("http://{}/healthz", gw.running.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let c = gw.client("lgwan-https");
    c.get(gw.url("lgwan-https", "/x")).send().await.unwrap();
    let m = gw.metrics().await;
    assert!(m.contains(r#"sekisho_requests_total{route="portal",zone="lgwan",status_class="2xx",decision="allow"} 1"#), "{m}");
    assert!(m.contains("sekisho_request_duration_seconds_bucket"), "{m}");
    assert!(
        m.contains("sekisho_upstream_duration_seconds_bucket"),
        "{m}"
    );
    assert!(
        m.contains(r#"sekisho_open_connections{listener="lgwan-https"}"#),
        "{m}"
    );
    assert!(m.contains("sekisho_build_info{config_version="), "{m}");
    // The public listener forwards /metrics to the upstream like any path: the gateway's
    // own metrics never appear there.
    let body = c
        .get(gw.url("lgwan-https", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("upstream portal saw /metrics"), "{body}");
    assert!(!body.contains("sekisho_requests_total"));
}

#[tokio::test]
async fn a_trusted_proxy_may_vouch_for_the_client_and_request_id() {
    let up = echo("portal", "127.0.10.15:0").await;
    let pki = Pki::new(&[SITE, "other.test.localhost", "127.0.0.1"]);
    let gw = gateway_extra(
        pki,
        "trusted_proxies: [127.0.0.1/32]\n",
        &public_route(&[up.addr]),
    )
    .await;
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/"))
        .header("X-Forwarded-For", "127.0.0.99")
        .header("X-Forwarded-Proto", "https")
        .header("X-Request-Id", "lb-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "lb-1234");
    let seen = &up.requests()[0];
    assert_eq!(
        seen.headers["x-forwarded-for"], "127.0.0.99, 127.0.0.1",
        "the chain is extended, not replaced"
    );
    assert_eq!(seen.headers["x-request-id"], "lb-1234");
}

#[tokio::test]
async fn upstream_connections_are_kept_between_requests() {
    let up = echo("kept", "127.0.10.12:0").await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let c = gw.client("lgwan-https");
    for i in 0..8 {
        let r = c
            .get(gw.url("lgwan-https", &format!("/kept/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert!(r.text().await.unwrap().contains(&format!("/kept/{i}")));
    }
    let peers: std::collections::HashSet<_> = up.requests().iter().map(|s| s.peer).collect();
    assert_eq!(peers.len(), 1, "one upstream connection, reused: {peers:?}");
}

/// What a raw test upstream does after answering a request.
#[derive(Clone, Copy)]
enum Then {
    /// Keeps the connection for the next request.
    Keep,
    /// Closes it without saying so (no `Connection: close`), like a server whose keep-alive
    /// timeout is shorter than the gateway's.
    Close,
    /// Reads (and drops) whatever else arrives on it - an upload it answered early - until
    /// the gateway closes it.
    DrainUntilClosed,
}

/// A raw upstream and what it saw.
struct RawUpstream {
    addr: std::net::SocketAddr,
    /// Connections accepted so far.
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// One message per connection ended after [`Then::Close`] or [`Then::DrainUntilClosed`].
    ended: tokio::sync::mpsc::UnboundedReceiver<()>,
}

/// An HTTP/1.1 upstream that parses no bodies: for each request head it reads, it writes the
/// bytes `answer` gives for that head and goes on as it says. For wire behaviour a real server
/// does not offer on demand (answering early, closing silently, exact trailers).
async fn raw_upstream(
    bind: &str,
    answer: impl Fn(&[u8]) -> (&'static [u8], Then) + Send + Sync + 'static,
) -> RawUpstream {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (ended_tx, ended) = tokio::sync::mpsc::unbounded_channel();
    let answer = std::sync::Arc::new(answer);
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (answer, ended) = (answer.clone(), ended_tx.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    let mut head = Vec::new();
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (response, then) = answer(&head);
                    if s.write_all(response).await.is_err() {
                        return;
                    }
                    match then {
                        Then::Keep => continue,
                        Then::Close => {
                            let _ = s.shutdown().await;
                        }
                        Then::DrainUntilClosed => {
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                    }
                    drop(s);
                    let _ = ended.send(());
                    return;
                }
            });
        }
    });
    RawUpstream {
        addr,
        accepted,
        ended,
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    let mut up = raw_upstream("127.0.10.13:0", |_| (OK, Then::Close)).await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let c = gw.client("lgwan-https");
    for i in 0..6 {
        let r = c
            .get(gw.url("lgwan-https", &format!("/once/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
        // The upstream has closed the connection this request used.
        up.ended.recv().await.unwrap();
    }
}

#[tokio::test]
async fn an_upstream_cannot_set_the_gateways_cookies() {
    let up = raw_upstream("127.0.10.14:0", |_| {
        (
            b"HTTP/1.1 200 OK\r\nSet-Cookie: app=1; Path=/\r\nSet-Cookie: __Host-sekisho=; Max-Age=0; Path=/; Secure\r\nSet-Cookie: __Host-sekisho-login-x=planted; Path=/; Secure\r\nContent-Length: 2\r\n\r\nok",
            Then::Close,
        )
    })
    .await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let r = gw
        .client("lgwan-https")
        .get(gw.url("lgwan-https", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set: Vec<_> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        set,
        vec!["app=1; Path=/".to_owned()],
        "only the application's cookie"
    );
}

#[tokio::test]
async fn a_connection_still_sending_an_upload_is_closed_not_reused() {
    // An upstream may answer before it has read the request body (refusing an upload by its
    // headers, say) while the client is still uploading. Handed to the next request, that
    // connection would hold it until the upload ends - and an upstream that neither reads the
    // rest nor closes would take the upload's bytes for the next request. The gateway closes it.
    let mut up = raw_upstream("127.0.10.16:0", |head| {
        let then = if head.starts_with(b"POST") {
            Then::DrainUntilClosed
        } else {
            Then::Keep
        };
        (OK, then)
    })
    .await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let c = gw.client("lgwan-https");
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let upload = futures_util::stream::unfold((true, Some(held)), |(first, held)| async move {
        if first {
            let part = hyper::body::Frame::data(bytes::Bytes::from_static(b"first part"));
            return Some((Ok::<_, std::convert::Infallible>(part), (false, held)));
        }
        let _ = held?.await;
        None
    });
    let r = c
        .post(gw.url("lgwan-https", "/upload"))
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(upload)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");

    // The upload is still going; the next request must not wait behind it.
    let next = tokio::time::timeout(
        Duration::from_secs(20),
        c.get(gw.url("lgwan-https", "/next")).send(),
    )
    .await
    .expect("the next request waited behind the unfinished upload")
    .unwrap();
    assert_eq!(next.status(), 200);
    assert_eq!(next.text().await.unwrap(), "ok");
    // The uploading connection was closed by the gateway while the client still held its upload.
    tokio::time::timeout(Duration::from_secs(20), up.ended.recv())
        .await
        .expect("the gateway kept the connection of the unfinished upload open");
    drop(release);
}

#[tokio::test]
async fn a_connection_whose_response_ended_with_trailers_is_kept() {
    // A keep-alive upstream whose chunked responses end with a trailer section.
    let up = raw_upstream("127.0.10.17:0", |_| {
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-check\r\n\r\n2\r\nok\r\n0\r\nx-check: 1\r\n\r\n",
            Then::Keep,
        )
    })
    .await;
    let gw = gateway(&public_route(&[up.addr])).await;
    let c = gw.client("lgwan-https");
    for i in 0..4 {
        let r = c
            .get(gw.url("lgwan-https", &format!("/t/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i}");
        assert_eq!(r.text().await.unwrap(), "ok");
    }
    assert_eq!(
        up.accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one upstream connection, reused"
    );
}

#[tokio::test]
async fn trailers_reach_the_client_without_fields_barred_from_trailers() {
    // The upstream's chunked response ends with a trailer section that, next to an ordinary
    // field, tries to set Sekisho's session cookie and a hop-by-hop field.
    let up = raw_upstream("127.0.10.18:0", |_| {
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n2\r\nok\r\n0\r\nx-checksum: abc123\r\nset-cookie: __Host-sekisho=planted; Path=/; Secure\r\nkeep-alive: timeout=999\r\n\r\n",
            Then::Keep,
        )
    })
    .await;
    let gw = gateway(&public_route(&[up.addr])).await;
    // HTTP/2: trailers reach an HTTP/1.1 client only when the response declares them in
    // `Trailer`, a hop-by-hop field the gateway drops, so they are never sent there.
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(&gw.pki, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(gw.addr("lgwan-https"))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from(SITE.to_owned()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{SITE}/t"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap();
    let trailers = body.trailers().cloned().expect("the response has trailers");
    assert_eq!(body.to_bytes(), "ok");
    assert_eq!(
        trailers["x-checksum"], "abc123",
        "the ordinary trailer arrives"
    );
    assert!(
        trailers.get("set-cookie").is_none(),
        "no cookie through a trailer: {trailers:?}"
    );
    assert!(
        trailers.get("keep-alive").is_none(),
        "no hop-by-hop trailer: {trailers:?}"
    );
}
