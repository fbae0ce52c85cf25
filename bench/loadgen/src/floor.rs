//! `floor`: the smallest reverse proxy that can be built from the crates Sekisho is made of
//! (tokio, tokio-rustls/rustls with aws-lc-rs, hyper 1 with hyper-util's auto server and
//! pooled client), with none of Sekisho's own work: no routing, identity, device, policy,
//! header stripping, metrics or audit. It answers one question for issue 8: how much of the
//! gap to nginx is the stack, and how much is Sekisho.
//!
//! Two ways to reach the upstream, so the client side of the stack can be measured too:
//! - `pool`: hyper-util's pooled client, as Sekisho uses it;
//! - `conn`: each downstream connection owns one upstream HTTP/1.1 connection
//!   (`hyper::client::conn::http1`), no pool (enough for one request in flight per
//!   connection, which is what `loadgen run` sends).
//!
//! Loopback only, like the rest of this tool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Pool,
    Conn,
}

type Body = BoxBody<Bytes, hyper::Error>;

pub async fn serve(
    listen: SocketAddr,
    cert: PathBuf,
    key: PathBuf,
    upstream: SocketAddr,
    mode: Upstream,
) -> Result<()> {
    if !listen.ip().is_loopback() || !upstream.ip().is_loopback() {
        bail!("floor: loopback addresses only");
    }
    let certs = CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key =
        PrivateKeyDer::from_pem_file(&key).with_context(|| format!("reading {}", key.display()))?;
    let mut tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(256)
        .build(http);
    let base = Arc::new(format!("http://{upstream}"));
    let listener = TcpListener::bind(listen).await?;
    eprintln!("floor proxy on {listen} -> {upstream}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let client = client.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            // `conn` mode: this connection's own upstream connection, made on first use.
            let own: Arc<Mutex<Option<hyper::client::conn::http1::SendRequest<Incoming>>>> =
                Arc::new(Mutex::new(None));
            let svc = service_fn(move |req: Request<Incoming>| {
                let client = client.clone();
                let base = base.clone();
                let own = own.clone();
                async move {
                    let (mut parts, body) = req.into_parts();
                    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    let res = match mode {
                        Upstream::Pool => {
                            parts.uri = format!("{base}{pq}").parse().expect("uri");
                            parts.version = hyper::Version::HTTP_11;
                            client
                                .request(Request::from_parts(parts, body))
                                .await
                                .map_err(|e| e.to_string())
                        }
                        Upstream::Conn => {
                            parts.uri = pq.parse().expect("path");
                            parts.version = hyper::Version::HTTP_11;
                            if !parts.headers.contains_key(hyper::header::HOST) {
                                parts.headers.insert(
                                    hyper::header::HOST,
                                    hyper::header::HeaderValue::from_static("upstream"),
                                );
                            }
                            let mut slot = own.lock().await;
                            if slot.as_ref().is_none_or(|s| s.is_closed()) {
                                match connect(upstream).await {
                                    Ok(s) => *slot = Some(s),
                                    Err(e) => return Ok::<_, hyper::Error>(bad_gateway(e)),
                                }
                            }
                            let sender = slot.as_mut().expect("connected");
                            match sender.ready().await {
                                Ok(()) => sender
                                    .send_request(Request::from_parts(parts, body))
                                    .await
                                    .map_err(|e| e.to_string()),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                    };
                    Ok(match res {
                        Ok(r) => r.map(|b| b.boxed()),
                        Err(e) => bad_gateway(e),
                    })
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).keep_alive(true);
            builder.http2().timer(TokioTimer::new());
            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}

async fn connect(
    addr: SocketAddr,
) -> Result<hyper::client::conn::http1::SendRequest<Incoming>, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(send)
}

fn bad_gateway(e: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(e))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    r
}
