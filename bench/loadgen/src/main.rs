//! sekisho-loadgen — a small closed-loop HTTP load generator for the Sekisho benchmarks.
//!
//! Why not wrk/h2load: the device-certificate cases need a TLS client certificate, and every
//! target in the comparison table must go through the same client so the figures compare.
//!
//! - `run`: `-c` connections, each with `--streams` requests in flight (HTTP/1.1: always 1),
//!   for `--duration` after a `--warmup`; HTTP/1.1 or HTTP/2 (ALPN), optional client
//!   certificate, extra headers (bearer token, cookie). Reports requests/s, latency
//!   percentiles and errors, as text and as JSON.
//! - `idle`: opens `-n` keep-alive connections, sends one request on each, holds them open for
//!   `--hold`, then exits (for "RSS with 10,000 idle connections").
//!
//! - `floor`: the smallest TLS reverse proxy made of the same crates as Sekisho (see
//!   `floor.rs`), to tell the stack's own cost from Sekisho's.
//!
//! Loopback only: it refuses to connect to anything but 127.0.0.0/8 or ::1.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

mod floor;

#[derive(Parser)]
#[command(name = "sekisho-loadgen", about = "HTTP/1.1 + HTTP/2 load generator with TLS client certificates")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Target {
    /// Request URL, e.g. https://status.localhost:9443/ (the host is sent as SNI and Host).
    #[arg(long)]
    url: String,
    /// Connect to this address instead of resolving the URL host (must be loopback).
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// CA certificate(s) (PEM) that the server certificate must chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate chain (PEM) presented in the TLS handshake.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long)]
    key: Option<PathBuf>,
    /// Speak HTTP/2 (ALPN h2; prior knowledge for http:// URLs).
    #[arg(long)]
    h2: bool,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Tokio worker threads (default: the CPUs this process may run on, see taskset).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop load for a fixed duration.
    Run {
        #[command(flatten)]
        target: Target,
        /// Connections.
        #[arg(short = 'c', long, default_value_t = 32)]
        connections: usize,
        /// Requests in flight per HTTP/2 connection (HTTP/1.1: always 1).
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// Measured duration in seconds.
        #[arg(short = 'd', long, default_value_t = 10.0)]
        duration: f64,
        /// Warm-up seconds (requests sent, not counted).
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Paced load: total requests/s spread evenly over the connections (0: closed loop,
        /// as fast as answers come). For latency at a load the server can carry; a server
        /// that cannot keep up shows req/s below the target.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// A label written into the JSON.
        #[arg(long, default_value = "")]
        label: String,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Open idle keep-alive connections and hold them.
    Idle {
        #[command(flatten)]
        target: Target,
        /// Connections to open.
        #[arg(short = 'n', long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them once all are open.
        #[arg(long, default_value_t = 15.0)]
        hold: f64,
        /// Handshakes in flight while opening.
        #[arg(long, default_value_t = 64)]
        parallel: usize,
        /// File written (with the count) once all connections are open.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// A minimal TLS reverse proxy on Sekisho's stack, with none of Sekisho's checks; runs on
    /// tokio's current-thread scheduler, as Sekisho does on one CPU.
    Floor {
        /// Listen address (loopback).
        #[arg(long)]
        listen: SocketAddr,
        /// Server certificate chain (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// Plain-HTTP upstream address (loopback).
        #[arg(long)]
        upstream: SocketAddr,
        /// `pool`: hyper-util's pooled client, as Sekisho; `conn`: one upstream connection
        /// owned by each downstream connection.
        #[arg(long, value_enum, default_value = "pool")]
        mode: floor::Upstream,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match cli.cmd {
        Cmd::Run { ref target, .. } | Cmd::Idle { ref target, .. } => target.threads,
        Cmd::Floor { listen, cert, key, upstream, mode } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            return rt.block_on(floor::serve(listen, cert, key, upstream, mode));
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t);
    }
    let rt = rt.build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run { target, connections, streams, duration, warmup, rate, label, json } => {
                let ep = Endpoint::new(&target)?;
                let r = run(Arc::new(ep), connections, streams, duration, warmup, rate).await;
                let mut out = r.to_json(&label, &target, connections, streams);
                out["rate_target"] = serde_json::json!(rate);
                println!(
                    "{label}: {:.0} req/s  p50 {:.3} ms  p99 {:.3} ms  ok {}  non-2xx {}  errors {}  conns {}",
                    r.rps(),
                    r.pct(0.50),
                    r.pct(0.99),
                    r.ok,
                    r.non2xx,
                    r.errors,
                    r.connects
                );
                if let Some(p) = json {
                    std::fs::write(&p, serde_json::to_string_pretty(&out)?)
                        .with_context(|| format!("writing {}", p.display()))?;
                }
                if r.ok == 0 {
                    bail!("no successful responses (non-2xx {}, errors {}): {}", r.non2xx, r.errors, r.first_error);
                }
                Ok(())
            }
            Cmd::Idle { target, connections, hold, parallel, ready_file } => {
                let ep = Arc::new(Endpoint::new(&target)?);
                idle(ep, connections, hold, parallel, ready_file).await
            }
            Cmd::Floor { .. } => unreachable!("served above"),
        }
    })
}

/// Where and how to connect; built once, shared by every connection.
struct Endpoint {
    addr: SocketAddr,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    h2: bool,
    /// Absolute URI (HTTP/2) and origin-form path (HTTP/1.1).
    uri: hyper::Uri,
    path: hyper::Uri,
    authority: String,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl Endpoint {
    fn new(t: &Target) -> Result<Endpoint> {
        let uri: hyper::Uri = t.url.parse().context("--url")?;
        let scheme = uri.scheme_str().unwrap_or("https");
        let authority = uri.authority().ok_or_else(|| anyhow!("--url needs a host"))?.clone();
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = authority.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        let addr = match t.connect {
            Some(a) => a,
            None => (host.as_str(), port)
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| anyhow!("cannot resolve {host}"))?,
        };
        if !is_loopback(addr.ip()) {
            bail!("{addr} is not a loopback address; this tool only talks to loopback");
        }
        let tls = if scheme == "https" {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            if let Some(ca) = &t.ca {
                for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("{}", ca.display()))? {
                    roots.add(c?)?;
                }
            }
            let b = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots);
            let mut cfg = match (&t.cert, &t.key) {
                (Some(c), Some(k)) => {
                    let chain = CertificateDer::pem_file_iter(c)
                        .with_context(|| format!("{}", c.display()))?
                        .collect::<Result<Vec<_>, _>>()?;
                    let key = PrivateKeyDer::from_pem_file(k).with_context(|| format!("{}", k.display()))?;
                    b.with_client_auth_cert(chain, key)?
                }
                (None, None) => b.with_no_client_auth(),
                _ => bail!("--cert and --key go together"),
            };
            cfg.alpn_protocols = if t.h2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
            let name = ServerName::try_from(host.clone())?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
        let full: hyper::Uri = format!("{scheme}://{authority}{pq}").parse()?;
        let mut headers = Vec::new();
        for h in &t.headers {
            let (n, v) = h.split_once(':').ok_or_else(|| anyhow!("header `{h}`: want Name: value"))?;
            headers.push((n.trim().parse()?, v.trim().parse()?));
        }
        Ok(Endpoint {
            addr,
            tls,
            h2: t.h2,
            uri: full,
            path: pq.parse()?,
            authority: authority.to_string(),
            headers,
        })
    }

    fn request(&self) -> Request<Empty<Bytes>> {
        let mut b = Request::get(if self.h2 { self.uri.clone() } else { self.path.clone() });
        if !self.h2 {
            b = b.header(hyper::header::HOST, self.authority.as_str());
        }
        for (n, v) in &self.headers {
            b = b.header(n, v);
        }
        b.body(Empty::new()).expect("request")
    }

    async fn connect(&self) -> Result<Sender> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        match &self.tls {
            Some((conn, name)) => {
                let tls = conn.connect(name.clone(), tcp).await?;
                let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
                if self.h2 && alpn.as_deref() != Some(b"h2") {
                    bail!("server did not agree to h2 (ALPN {:?})", alpn.map(|p| String::from_utf8_lossy(&p).into_owned()));
                }
                self.handshake(TokioIo::new(tls)).await
            }
            None => self.handshake(TokioIo::new(tcp)).await,
        }
    }

    async fn handshake<T>(&self, io: TokioIo<T>) -> Result<Sender>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if self.h2 {
            let (s, c) = http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(c);
            Ok(Sender::H2(s))
        } else {
            let (s, c) = http1::handshake(io).await?;
            tokio::spawn(c);
            // http1::SendRequest is not Clone; the mutex is never contended (one loop per
            // HTTP/1.1 connection).
            Ok(Sender::H1(Arc::new(tokio::sync::Mutex::new(s))))
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v| v.is_loopback()),
    }
}

#[derive(Clone)]
enum Sender {
    H1(Arc<tokio::sync::Mutex<http1::SendRequest<Empty<Bytes>>>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}


enum Outcome {
    Ok,
    Status(u16),
}

impl Sender {
    async fn send(&mut self, req: Request<Empty<Bytes>>) -> Result<Outcome> {
        let res = match self {
            Sender::H1(s) => {
                let mut s = s.lock().await;
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = res.status();
        res.into_body().collect().await?;
        if status.is_success() { Ok(Outcome::Ok) } else { Ok(Outcome::Status(status.as_u16())) }
    }
}

#[derive(Default)]
struct Result_ {
    ok: u64,
    non2xx: u64,
    errors: u64,
    connects: u64,
    seconds: f64,
    lat_us: Vec<u32>,
    first_error: String,
    statuses: std::collections::BTreeMap<u16, u64>,
}

impl Result_ {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
    /// Percentile in milliseconds (latencies are sorted).
    fn pct(&self, q: f64) -> f64 {
        if self.lat_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat_us.len() as f64 * q).ceil() as usize).clamp(1, self.lat_us.len()) - 1;
        self.lat_us[i] as f64 / 1000.0
    }
    fn to_json(&self, label: &str, t: &Target, c: usize, streams: usize) -> serde_json::Value {
        let mean = if self.lat_us.is_empty() {
            f64::NAN
        } else {
            self.lat_us.iter().map(|&x| x as f64).sum::<f64>() / self.lat_us.len() as f64 / 1000.0
        };
        serde_json::json!({
            "label": label,
            "url": t.url,
            "protocol": if t.h2 { "h2" } else { "http/1.1" },
            "client_cert": t.cert.is_some(),
            "connections": c,
            "streams_per_connection": if t.h2 { streams } else { 1 },
            "seconds": self.seconds,
            "requests_ok": self.ok,
            "non_2xx": self.non2xx,
            "statuses": self.statuses.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            "errors": self.errors,
            "first_error": self.first_error,
            "connects": self.connects,
            "rps": self.rps(),
            "latency_ms": {
                "mean": mean,
                "p50": self.pct(0.50),
                "p90": self.pct(0.90),
                "p99": self.pct(0.99),
                "p999": self.pct(0.999),
                "max": self.pct(1.0),
            }
        })
    }
}

async fn run(ep: Arc<Endpoint>, conns: usize, streams: usize, duration: f64, warmup: f64, rate: f64) -> Result_ {
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let deadline = measure_from + Duration::from_secs_f64(duration);
    let streams = if ep.h2 { streams.max(1) } else { 1 };
    let connects = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    // Open loop: every request loop sends every `interval`, loops staggered evenly.
    let loops = conns * streams;
    let pace = (rate > 0.0).then(|| Duration::from_secs_f64(loops as f64 / rate));
    for i in 0..conns {
        let ep = ep.clone();
        let connects = connects.clone();
        let pacing = pace.map(|iv| (iv, start + iv.mul_f64((i * streams) as f64 / loops as f64), iv.mul_f64(1.0 / loops as f64)));
        tasks.push(tokio::spawn(async move { connection(ep, streams, measure_from, deadline, connects, pacing).await }));
    }
    let mut total = Result_::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.ok += r.ok;
            total.non2xx += r.non2xx;
            total.errors += r.errors;
            if total.first_error.is_empty() {
                total.first_error = r.first_error;
            }
            for (k, v) in r.statuses {
                *total.statuses.entry(k).or_default() += v;
            }
            total.lat_us.extend(r.lat_us);
        }
    }
    total.connects = connects.load(Ordering::Relaxed);
    total.seconds = duration;
    total.lat_us.sort_unstable();
    total
}

/// One connection (reconnected after an error) with `streams` request loops on it.
/// `pacing`: (interval per loop, first send time of this connection's first loop, stagger
/// between loops).
async fn connection(
    ep: Arc<Endpoint>,
    streams: usize,
    measure_from: Instant,
    deadline: Instant,
    connects: Arc<AtomicU64>,
    pacing: Option<(Duration, Instant, Duration)>,
) -> Result_ {
    let mut next_send: Vec<Option<Instant>> =
        (0..streams).map(|k| pacing.map(|(_, first, step)| first + step * k as u32)).collect();
    let mut r = Result_::default();
    while Instant::now() < deadline {
        let sender = match tokio::time::timeout_at(deadline.into(), ep.connect()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                r.errors += 1;
                if r.first_error.is_empty() {
                    r.first_error = format!("connect: {e:#}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => break,
        };
        connects.fetch_add(1, Ordering::Relaxed);
        let mut loops = Vec::new();
        for k in 0..streams {
            let ep = ep.clone();
            let mut s = sender.clone();
            let mut next = next_send[k];
            let interval = pacing.map(|p| p.0);
            loops.push(tokio::spawn(async move {
                let mut r = Result_::default();
                loop {
                    let t0 = match (next, interval) {
                        (Some(at), Some(iv)) => {
                            if at >= deadline {
                                break;
                            }
                            tokio::time::sleep_until(at.into()).await;
                            next = Some(at + iv);
                            // Measured from the actual send: tokio's timer wakes up to 1 ms
                            // late, which would otherwise be counted as server latency. If
                            // the server falls behind, sends lag their schedule (shown by
                            // req/s below the target rate).
                            Instant::now()
                        }
                        _ => Instant::now(),
                    };
                    if t0 >= deadline {
                        break;
                    }
                    let out = tokio::time::timeout_at(deadline.into(), s.send(ep.request())).await;
                    let t1 = Instant::now();
                    let counted = t0 >= measure_from && t1 <= deadline;
                    match out {
                        Err(_) => break, // the run ended while this request was in flight
                        Ok(Ok(Outcome::Ok)) => {
                            if counted {
                                r.ok += 1;
                                r.lat_us.push((t1 - t0).as_micros().min(u32::MAX as u128) as u32);
                            }
                        }
                        Ok(Ok(Outcome::Status(code))) => {
                            if counted {
                                r.non2xx += 1;
                                *r.statuses.entry(code).or_default() += 1;
                            }
                        }
                        Ok(Err(e)) => {
                            r.errors += 1;
                            if r.first_error.is_empty() {
                                r.first_error = format!("request: {e:#}");
                            }
                            return (r, true, next);
                        }
                    }
                }
                (r, false, next)
            }));
        }
        let mut any_broken = false;
        for (k, l) in loops.into_iter().enumerate() {
            if let Ok((x, broken, next)) = l.await {
                any_broken |= broken;
                next_send[k] = next;
                r.ok += x.ok;
                r.non2xx += x.non2xx;
                r.errors += x.errors;
                if r.first_error.is_empty() {
                    r.first_error = x.first_error;
                }
                for (k, v) in x.statuses {
                    *r.statuses.entry(k).or_default() += v;
                }
                r.lat_us.extend(x.lat_us);
            }
        }
        // Loops end without an error only when the run is over.
        if !any_broken {
            break;
        }
    }
    r
}

async fn idle(ep: Arc<Endpoint>, n: usize, hold: f64, parallel: usize, ready: Option<PathBuf>) -> Result<()> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(n);
    let t0 = Instant::now();
    for _ in 0..n {
        let ep = ep.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore");
            let mut s = tokio::time::timeout(Duration::from_secs(30), ep.connect()).await??;
            match s.send(ep.request()).await? {
                Outcome::Ok => Ok::<_, anyhow::Error>(s),
                Outcome::Status(c) => bail!("status {c}"),
            }
        }));
    }
    let mut held = Vec::with_capacity(n);
    let mut errors = 0usize;
    let mut first = String::new();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => {
                errors += 1;
                if first.is_empty() {
                    first = format!("{e:#}");
                }
            }
            Err(e) => {
                errors += 1;
                if first.is_empty() {
                    first = format!("{e}");
                }
            }
        }
    }
    println!("idle: {} connections open ({} failed{}{}) in {:.1} s; holding {hold} s",
        held.len(), errors, if first.is_empty() { "" } else { ": " }, first, t0.elapsed().as_secs_f64());
    if let Some(p) = ready {
        std::fs::write(p, format!("{}\n", held.len()))?;
    }
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    drop(held);
    Ok(())
}
