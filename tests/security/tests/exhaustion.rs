//! Resource exhaustion: huge header sections, too many headers, slow clients (cut off by
//! `header_read_timeout`, configured short here), stalled TLS handshakes, stalled request
//! bodies (the route's idle timeout), HTTP/2 stream floods beyond `max_concurrent_streams`,
//! and rapid reset (CVE-2023-44487). Memory of this process (gateway included) stays bounded:
//! RSS is measured before and after bounded attack loops.
//!
//! One test function per binary would make the RSS numbers cleaner; the cases that measure
//! memory run inside one function, in sequence.

use crate::common;
use crate::support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use support::*;
use tokio::io::AsyncWriteExt;

const LIMITS: &str = "limits:\n  header_read_timeout: 1s\n  max_concurrent_streams: 8\n  max_header_bytes: 16384\n  max_headers: 50\n";

async fn setup() -> (
    Gw,
    std::path::PathBuf,
    Echo,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let up = echo("portal", "127.0.10.170:0").await;
    let (hold, held) = holder("127.0.10.171:0").await;
    let routes = format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
    timeouts: {{ idle: 1s }}
  hold:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /hold
    upstreams: [http://{hold}]
    access: public
    timeouts: {{ response_header: 30s }}
"#,
        up.addr
    );
    let (gw, audit) = audited(LIMITS, &routes).await;
    (gw, audit, up, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests_are_cut_off() {
    let (gw, _audit, up, _) = setup().await;
    let addr = gw.addr("lgwan-https");
    let head = |extra: &str| {
        format!("GET /x HTTP/1.1\r\nHost: {SITE}\r\n{extra}Connection: close\r\n\r\n")
    };

    // Header sections over the configured limits.
    let many: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, &[u16])> = vec![
        (
            "one 20 KiB header",
            head(&format!("X-Big: {}\r\n", "a".repeat(20 * 1024))),
            &[431],
        ),
        (
            "a 20 KiB cookie",
            head(&format!("Cookie: a={}\r\n", "b".repeat(20 * 1024))),
            &[431],
        ),
        ("60 headers (limit 50)", head(&many), &[431]),
        (
            "18 KiB of small headers",
            head(
                &(0..45)
                    .map(|i| format!("X-F{i}: {}\r\n", "c".repeat(400)))
                    .collect::<String>(),
            ),
            &[431],
        ),
        (
            "a 20 KiB request target",
            format!(
                "GET /{} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n",
                "p".repeat(20 * 1024)
            ),
            &[400, 414, 431],
        ),
    ];
    for (case, req, want) in &cases {
        let raw = raw(&gw.pki, addr, req).await;
        assert!(
            want.contains(&status_of(&raw)),
            "{case}: {}",
            &raw[..raw.len().min(200)]
        );
    }
    // HTTP/2: a header list over the limit never reaches the upstream.
    let r = gw
        .client_h2("lgwan-https")
        .get(gw.url("lgwan-https", "/h2big"))
        .header("x-big", "a".repeat(20 * 1024))
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 431, "h2 oversized header list");
    }
    assert_eq!(up.count(), 0, "no oversized request was forwarded");

    // Slowloris: a head trickled in, line by line, never finished → cut off after ~1 s.
    let mut tls = tls_connect(&gw.pki, addr, &[b"http/1.1"]).await;
    let started = Instant::now();
    tls.write_all(format!("GET /slow HTTP/1.1\r\nHost: {SITE}\r\n").as_bytes())
        .await
        .unwrap();
    let mut closed_after = None;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if tls
            .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
            .await
            .is_err()
        {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(
            Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(&mut tls, &mut probe),
        )
        .await
        {
            // Either an 408 answer or EOF: the gateway gave up on us.
            let _ = n;
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slow client was never cut off (5 s)");
    assert!(
        closed_after < Duration::from_secs(4),
        "cut off after {closed_after:?}"
    );

    // A TLS handshake that never starts, and one that stops half-way.
    for partial in [
        &b""[..],
        &b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03"[..],
    ] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(partial).await.unwrap();
        let started = Instant::now();
        let _ = read_for(&mut tcp, Duration::from_secs(5)).await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "stalled handshake held {:?}",
            started.elapsed()
        );
    }

    // A request body that stalls: the route's idle timeout (1 s) ends it; the upstream never
    // sees a complete request.
    let mut tls = tls_connect(&gw.pki, addr, &[b"http/1.1"]).await;
    tls.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: {SITE}\r\nContent-Length: 1000\r\n\r\nonly a little"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let answer = read_for(&mut tls, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stalled body held {:?}",
        started.elapsed()
    );
    assert!(
        answer.is_empty() || [400, 408, 502, 504].contains(&status_of(&answer)),
        "{answer}"
    );
    assert_eq!(up.count(), 0, "no incomplete request was acted on upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_floods_and_rapid_reset_stay_bounded() {
    let (gw, _audit, up, held) = setup().await;
    let addr = gw.addr("lgwan-https");
    let authority = format!("{SITE}:{}", addr.port());

    // Warm up (allocator, TLS, pools) so the RSS baseline is not the first connection's cost.
    for _ in 0..5 {
        let c = gw.client_h2("lgwan-https");
        assert_eq!(
            c.get(gw.url("lgwan-https", "/warm"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let rss_before = rss_kib();

    // 1. Streams beyond max_concurrent_streams (8), ignoring the server's limit, all held by
    //    the upstream: the excess is refused, at most 8 reach the upstream per connection.
    let mut refused = 0;
    for round in 0..3 {
        let tls = tls_connect(&gw.pki, addr, &[b"h2"]).await;
        let mut chunks = vec![h2raw::start()];
        for k in 0..40u32 {
            chunks.push(h2raw::get(
                2 * k + 1,
                &authority,
                &format!("/hold/{round}/{k}"),
            ));
        }
        let held_before = held.load(Ordering::SeqCst);
        let ans = h2raw::converse(tls, chunks, Duration::from_millis(1500)).await;
        let reached = held.load(Ordering::SeqCst) - held_before;
        assert!(
            reached <= 8,
            "round {round}: {reached} streams reached the upstream at once"
        );
        refused += ans
            .resets
            .iter()
            .filter(|(_, code)| *code == 0x7 || *code == 0xb)
            .count()
            + usize::from(ans.goaway.is_some());
    }
    assert!(
        refused > 0,
        "the excess streams were refused (REFUSED_STREAM or GOAWAY)"
    );

    // 2. Rapid reset: open and cancel streams as fast as the socket takes them, then
    // 3. connections that open the maximum of held streams and go away. Run twice: the
    //    second round must not grow memory much beyond the first (bounded, not leaking).
    let resets_per_conn = 1000u32;
    let mut rss = vec![rss_before];
    let mut goaways = 0;
    for round in 0..2 {
        for _ in 0..10 {
            let tls = tls_connect(&gw.pki, addr, &[b"h2"]).await;
            let mut batch = h2raw::start();
            for k in 0..resets_per_conn {
                let id = 2 * k + 1;
                batch.extend(h2raw::get(id, &authority, &format!("/rapid/{round}")));
                batch.extend(h2raw::rst(id, 0x8));
            }
            let ans = h2raw::converse(tls, vec![batch], Duration::from_millis(1000)).await;
            if ans.goaway.is_some() || ans.closed {
                goaways += 1;
            }
        }
        for _ in 0..10 {
            let tls = tls_connect(&gw.pki, addr, &[b"h2"]).await;
            let mut chunks = vec![h2raw::start()];
            for k in 0..8u32 {
                chunks.push(h2raw::get(2 * k + 1, &authority, "/hold/many"));
            }
            let _ = h2raw::converse(tls, chunks, Duration::from_millis(100)).await;
        }
        rss.push(rss_kib());
    }
    assert!(
        goaways > 0,
        "rapid reset never made the gateway close a connection"
    );
    let forwarded = up
        .requests()
        .iter()
        .filter(|s| s.uri.starts_with("/rapid"))
        .count();
    assert!(
        forwarded < 20 * resets_per_conn as usize / 4,
        "{forwarded} of {} reset streams were forwarded",
        20 * resets_per_conn
    );
    let first = rss[1].saturating_sub(rss[0]);
    let second = rss[2].saturating_sub(rss[1]);
    eprintln!(
        "RSS KiB: before {} after round 1 {} after round 2 {} (forwarded {forwarded}, goaway/closed {goaways}/20)",
        rss[0], rss[1], rss[2]
    );
    assert!(
        first < 256 * 1024,
        "the first round grew memory by {first} KiB"
    );
    assert!(
        second < 48 * 1024,
        "memory kept growing: {second} KiB in the second round"
    );

    // The gateway still serves.
    let c = gw.client_h2("lgwan-https");
    assert_eq!(
        c.get(gw.url("lgwan-https", "/after"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
