//! Zone egress: the only way the gateway opens connections to upstreams.
//!
//! Every address a name resolves to is checked against the route's zone **at connect
//! time** (`egress.allow` / `egress.deny`), not only when the configuration loads, so a DNS
//! answer that points into another side (DNS rebinding, a stale record) is refused instead
//! of followed. Connections leave from the zone's `egress.bind` address when one is set.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};

use crate::config::{Zone, canonical_ip};

/// Why an upstream connection was not made. Kinds map to the `kind` label of
/// `sekisho_upstream_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("{host} resolves only to addresses outside zone `{zone}`: {addrs:?}")]
    Denied {
        host: String,
        zone: String,
        addrs: Vec<IpAddr>,
    },
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("connecting to {host} timed out")]
    Timeout { host: String },
    #[error("TLS with {host} failed: {source}")]
    Tls { host: String, source: io::Error },
    #[error("bad upstream URI")]
    BadUri,
}

impl EgressError {
    pub fn kind(&self) -> &'static str {
        match self {
            EgressError::Denied { .. } => "egress_denied",
            EgressError::Resolve { .. } => "resolve",
            EgressError::Connect { .. } => "connect",
            EgressError::Timeout { .. } => "connect_timeout",
            EgressError::Tls { .. } => "tls",
            EgressError::BadUri => "bad_uri",
        }
    }
}

/// Connects to upstreams of one route: zone-checked, bound, optionally TLS.
#[derive(Clone)]
pub struct ZoneConnector {
    pub zone: Arc<Zone>,
    pub tls: Option<(Arc<ClientConfig>, Option<String>)>,
    pub connect_timeout: Duration,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A connection to an upstream, plain or TLS.
pub struct UpstreamIo {
    inner: TokioIo<Pin<Box<dyn Io>>>,
    h2: bool,
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl ZoneConnector {
    /// Resolves `host`, keeping only addresses the zone permits.
    pub async fn permitted_addrs(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, EgressError> {
        let resolved: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|source| EgressError::Resolve {
                    host: host.to_owned(),
                    source,
                })?
                .collect(),
        };
        let permitted: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|a| self.zone.egress_permits(a.ip()))
            .map(|a| SocketAddr::new(canonical_ip(a.ip()), a.port()))
            .collect();
        if permitted.is_empty() {
            return Err(EgressError::Denied {
                host: host.to_owned(),
                zone: self.zone.name.clone(),
                addrs: resolved.iter().map(SocketAddr::ip).collect(),
            });
        }
        Ok(permitted)
    }

    async fn connect_tcp(&self, addr: SocketAddr) -> Result<TcpStream, EgressError> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|source| EgressError::Connect { addr, source })?;
        if let Some(bind) = self.zone.bind
            && bind.is_ipv4() == addr.is_ipv4()
        {
            socket
                .bind(SocketAddr::new(bind, 0))
                .map_err(|source| EgressError::Connect { addr, source })?;
        }
        let stream = socket
            .connect(addr)
            .await
            .map_err(|source| EgressError::Connect { addr, source })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    pub async fn connect(&self, host: String, port: u16) -> Result<UpstreamIo, EgressError> {
        let deadline = self.connect_timeout;
        let work = async {
            let addrs = self.permitted_addrs(&host, port).await?;
            let mut last = None;
            for addr in addrs {
                match self.connect_tcp(addr).await {
                    Ok(tcp) => return self.wrap(tcp, &host).await,
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or(EgressError::BadUri))
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(EgressError::Timeout { host }),
        }
    }

    async fn wrap(&self, tcp: TcpStream, host: &str) -> Result<UpstreamIo, EgressError> {
        let Some((cfg, name_override)) = &self.tls else {
            return Ok(UpstreamIo {
                inner: TokioIo::new(Box::pin(tcp)),
                h2: false,
            });
        };
        let name = name_override.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| EgressError::Tls {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidInput, e),
        })?;
        let tls = tokio_rustls::TlsConnector::from(cfg.clone())
            .connect(server_name, tcp)
            .await
            .map_err(|source| EgressError::Tls {
                host: host.to_owned(),
                source,
            })?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok(UpstreamIo {
            inner: TokioIo::new(Box::pin(tls)),
            h2,
        })
    }
}

impl tower_service::Service<http::Uri> for ZoneConnector {
    type Response = UpstreamIo;
    type Error = EgressError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, EgressError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or(EgressError::BadUri)?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                443
            } else {
                80
            };
            let port = uri.port_u16().unwrap_or(default_port);
            this.connect(host, port).await
        })
    }
}
