//! Bodies stream both ways: a large upload and download pass through the gateway with
//! bounded memory. In a test binary of its own, so the process's peak RSS belongs to this
//! test alone.

use crate::common;

use common::*;

/// Peak resident set size of this process, from /proc (kB).
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

const SIZE: u64 = 1024 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_each_way_with_bounded_memory() {
    let up = echo("files", "127.0.10.70:0").await;
    let gw = gateway(&format!(
        r#"routes:
  files:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
"#,
        up.addr
    ))
    .await;
    let c = gw.client("lgwan-https");
    // Warm up (TLS, pools, allocator arenas) before taking the baseline.
    c.get(gw.url("lgwan-https", "/warm?size=1048576"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let base = peak_rss_kb();

    // Upload: the client streams SIZE bytes; the upstream counts them.
    let body = reqwest::Body::wrap(stream_body(SIZE));
    let r = c
        .put(gw.url("lgwan-https", "/upload"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.requests().last().unwrap().body_len, SIZE);

    // Download: the upstream streams SIZE bytes; the client counts them.
    let r = c
        .get(gw.url("lgwan-https", &format!("/download?size={SIZE}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = 0u64;
    let mut r = r;
    while let Some(chunk) = r.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, SIZE);

    let grew_mb = (peak_rss_kb() - base) / 1024;
    println!(
        "peak RSS grew by {grew_mb} MiB moving {} MiB each way",
        SIZE >> 20
    );
    assert!(
        grew_mb < 64,
        "peak RSS grew by {grew_mb} MiB while moving {} MiB each way",
        SIZE >> 20
    );
}
