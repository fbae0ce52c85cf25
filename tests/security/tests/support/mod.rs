//! Helpers on top of the gateway's own test harness (`crates/sekisho-gateway/tests/common`):
//! gateways with an audit trail, reading audit records and metrics, upstreams that hold,
//! redirect or merely count connections, and process memory.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

/// `audit:` with strict durability: each record is on disk before the response is sent.
pub const AUDIT: &str = "audit:\n  dir: audit\n  durability: strict\n";

/// A gateway with an audit trail in `<tmp>/audit`, started from `extra` top-level sections
/// (besides `audit:`) and `routes`.
pub async fn audited(extra: &str, routes: &str) -> (Gw, PathBuf) {
    let pki = Pki::new(&[SITE, "other.test.localhost", "127.0.0.1"]);
    audited_with(pki, extra, routes).await
}

pub async fn audited_with(pki: Pki, extra: &str, routes: &str) -> (Gw, PathBuf) {
    let dir = pki.path("audit");
    let config_path = pki.path("sekisho.yaml");
    let yaml = full_yaml_with(&pki, &format!("{AUDIT}{extra}"), routes);
    std::fs::write(&config_path, yaml).unwrap();
    let running = sekisho_gateway::server::start(&config_path)
        .await
        .unwrap_or_else(|e| panic!("gateway did not start:\n{e}"));
    (
        Gw {
            running,
            config_path,
            pki,
        },
        dir,
    )
}

/// The records of request `rid`, waiting (bounded, 5 s) until at least one is on disk.
pub async fn records_of(dir: &Path, rid: &str) -> Vec<serde_json::Value> {
    for _ in 0..100 {
        let found: Vec<serde_json::Value> = records(dir)
            .into_iter()
            .filter(|r| r["request_id"] == rid)
            .collect();
        if !found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Vec::new()
}

/// Asserts the audit trail holds a `deny` access record for `rid`; returns it.
pub async fn assert_denied_on_record(dir: &Path, rid: &str, case: &str) -> serde_json::Value {
    let recs = records_of(dir, rid).await;
    let access = recs
        .iter()
        .find(|r| r["kind"] == "access")
        .unwrap_or_else(|| panic!("{case}: no access record for {rid}: {recs:?}"));
    assert_eq!(access["decision"], "deny", "{case}: {access}");
    access.clone()
}

/// Asserts the audit trail holds an `allow` access record for `rid`; returns it.
pub async fn assert_allowed_on_record(dir: &Path, rid: &str, case: &str) -> serde_json::Value {
    let recs = records_of(dir, rid).await;
    let access = recs
        .iter()
        .find(|r| r["kind"] == "access")
        .unwrap_or_else(|| panic!("{case}: no access record for {rid}: {recs:?}"));
    assert_eq!(access["decision"], "allow", "{case}: {access}");
    access.clone()
}

/// The `X-Request-ID` of a raw HTTP/1.1 answer.
pub fn rid_of(raw: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("x-request-id")
            .then(|| v.trim().to_owned())
    })
}

/// A header of a raw HTTP/1.1 answer.
pub fn header_of(raw: &str, name: &str) -> Option<String> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The sum of a metric's samples whose label set contains every `labels` fragment.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.split(['{', ' '])
                .next()
                .is_some_and(|n| n == name || n == format!("{name}_total"))
        })
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Resident memory of this test process in KiB (Linux `/proc/self/status`).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Counts TCP connections accepted on an address (a trap: nothing may connect to it).
#[derive(Clone)]
pub struct Trap {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl Trap {
    pub fn count(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

pub async fn trap(bind: &str) -> Trap {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    Trap { addr, accepted }
}

/// An upstream that answers every request with `status` and `Location: location`.
pub async fn redirector(
    bind: &str,
    status: u16,
    location: String,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let location = location.clone();
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let mut r = Response::new(Full::new(Bytes::from_static(b"moved")));
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    r.headers_mut()
                        .insert(http::header::LOCATION, location.parse().unwrap());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// An upstream that accepts requests and holds them (never answers); counts requests.
pub async fn holder(bind: &str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let h = h.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async move {
                        std::future::pending::<()>().await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A TLS connection to a gateway listener with the given ALPN, kept open.
pub async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(pki, alpn));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from(SITE.to_owned()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads whatever arrives within `wait` (or until the peer closes).
pub async fn read_for<S: tokio::io::AsyncRead + Unpin>(s: &mut S, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one raw HTTP/1.1 request on a new TLS connection; like `raw_tls` but returns
/// after `wait` at most.
pub async fn raw(pki: &Pki, addr: SocketAddr, req: &str) -> String {
    let mut tls = tls_connect(pki, addr, &[b"http/1.1"]).await;
    // The gateway may answer and close before it has read everything (431, 400).
    let _ = tls.write_all(req.as_bytes()).await;
    read_for(&mut tls, Duration::from_secs(3)).await
}

/// An HTTP/2 client (the `h2` crate) over TLS to the gateway.
pub async fn h2_client(pki: &Pki, addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tls = tls_connect(pki, addr, &[b"h2"]).await;
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Response status and the `x-request-id` of an h2 request.
pub async fn h2_send(
    client: &mut h2::client::SendRequest<Bytes>,
    req: Request<()>,
    body: Option<&[u8]>,
) -> Result<(u16, Option<String>), h2::Error> {
    let mut c = client.clone().ready().await?;
    let (resp, mut stream) = c.send_request(req, body.is_none())?;
    if let Some(b) = body {
        stream.send_data(Bytes::copy_from_slice(b), true)?;
    }
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .expect("an h2 answer within 5 s")?;
    let rid = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((resp.status().as_u16(), rid))
}

/// A body-less upstream answer, for ad-hoc upstreams.
pub fn empty() -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Full::new(Bytes::new()).map_err(|n| match n {}).boxed()
}

/// Raw HTTP/2 frames (no HPACK compression: literal fields only) for the cases the `h2`
/// client refuses to produce: ignoring the peer's stream limit, rapid resets, header values
/// with CR/LF, upper-case names.
pub mod h2raw {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
        f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn int7(out: &mut Vec<u8>, n: usize) {
        if n < 127 {
            out.push(n as u8);
            return;
        }
        out.push(127);
        let mut n = n - 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }

    /// HEADERS (END_HEADERS, and END_STREAM if `end`) with literal, never-indexed fields.
    pub fn headers(stream: u32, end: bool, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        for (n, v) in fields {
            block.push(0x10);
            int7(&mut block, n.len());
            block.extend_from_slice(n);
            int7(&mut block, v.len());
            block.extend_from_slice(v);
        }
        frame(1, 0x4 | if end { 0x1 } else { 0 }, stream, &block)
    }

    pub fn get(stream: u32, authority: &str, path: &str) -> Vec<u8> {
        headers(
            stream,
            true,
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority.as_bytes()),
                (b":path", path.as_bytes()),
            ],
        )
    }

    pub fn rst(stream: u32, code: u32) -> Vec<u8> {
        frame(3, 0, stream, &code.to_be_bytes())
    }

    /// Client preface, empty SETTINGS, and an ACK of the server's SETTINGS (which the server
    /// sends first, before it reads ours).
    pub fn start() -> Vec<u8> {
        let mut v = PREFACE.to_vec();
        v.extend(frame(4, 0, 0, &[]));
        v.extend(frame(4, 1, 0, &[]));
        v
    }

    /// What the server sent on one connection.
    #[derive(Debug, Default)]
    pub struct Answer {
        /// (stream, error code) of RST_STREAM frames.
        pub resets: Vec<(u32, u32)>,
        /// Error code of a GOAWAY, if one came.
        pub goaway: Option<u32>,
        /// Streams that got a response HEADERS frame.
        pub responses: Vec<u32>,
        /// The server closed the connection.
        pub closed: bool,
    }

    /// Writes `chunks` (in order) and reads frames until the server closes or `wait` passes.
    pub async fn converse<S>(mut io: S, chunks: Vec<Vec<u8>>, wait: Duration) -> Answer
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut ans = Answer::default();
        let mut buf = Vec::new();
        for c in chunks {
            if io.write_all(&c).await.is_err() {
                break;
            }
        }
        let _ = io.flush().await;
        let deadline = tokio::time::Instant::now() + wait;
        let mut tmp = vec![0u8; 65536];
        loop {
            let n = match tokio::time::timeout_at(deadline, io.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    ans.closed = true;
                    break;
                }
                Ok(Ok(n)) => n,
                Err(_) => break,
            };
            buf.extend_from_slice(&tmp[..n]);
            while buf.len() >= 9 {
                let len =
                    (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
                if buf.len() < 9 + len {
                    break;
                }
                let ty = buf[3];
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                let payload = &buf[9..9 + len];
                match ty {
                    1 => ans.responses.push(stream),
                    3 if len >= 4 => ans.resets.push((
                        stream,
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
                    )),
                    7 if len >= 8 => {
                        ans.goaway = Some(u32::from_be_bytes([
                            payload[4], payload[5], payload[6], payload[7],
                        ]))
                    }
                    _ => {}
                }
                buf.drain(..9 + len);
            }
        }
        ans
    }
}

/// The records of request `rid` once `done` holds for them (bounded wait, 5 s).
pub async fn records_until(
    dir: &Path,
    rid: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for _ in 0..100 {
        found = records(dir)
            .into_iter()
            .filter(|r| r["request_id"] == rid)
            .collect();
        if done(&found) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    found
}
