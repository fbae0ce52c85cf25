//! Optional real-time copy of every record to syslog: RFC 5424 messages over TCP with
//! octet-counting framing (RFC 6587 §3.4.1), TLS optional (RFC 5425).
//!
//! The forwarder runs in its own task behind a bounded buffer. The writer only offers
//! lines after they are fsynced locally, with `try_send`: a slow or dead syslog server
//! never blocks appends and never costs the local record; what does not fit is counted
//! in `syslog_dropped`.
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::AuditError;
use crate::writer::AuditMetrics;

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// `host:port` of the syslog server (TCP).
    pub address: String,
    /// TLS to the server; `None` for plain TCP.
    pub tls: Option<SyslogTls>,
    /// HOSTNAME field (default `-`).
    pub hostname: Option<String>,
    /// APP-NAME field (default `sekisho`).
    pub app_name: String,
    /// Facility (default 13, "log audit").
    pub facility: u8,
    /// Records buffered while the server is slow or away (default 10 000).
    pub buffer: usize,
    /// Wait between reconnection attempts (default 2 s).
    pub reconnect: Duration,
}

impl SyslogConfig {
    /// Defaults for `address`.
    pub fn new(address: impl Into<String>) -> Self {
        SyslogConfig {
            address: address.into(),
            tls: None,
            hostname: None,
            app_name: "sekisho".into(),
            facility: 13,
            buffer: 10_000,
            reconnect: Duration::from_secs(2),
        }
    }
}

/// TLS settings for syslog.
#[derive(Debug, Clone)]
pub struct SyslogTls {
    /// PEM file with the CA certificate(s) that issued the server's certificate.
    pub ca_file: PathBuf,
    /// Name expected in the server's certificate.
    pub server_name: String,
}

/// The writer's end of the forwarder.
pub(crate) struct SyslogSender {
    tx: mpsc::Sender<Vec<u8>>,
    metrics: Arc<AuditMetrics>,
    task: tokio::task::JoinHandle<()>,
}

/// How long closing the trail waits for the forwarder to send what is queued (the stop
/// record, the last checkpoint). A forwarder that cannot reach its server gives up then; the
/// local trail has everything anyway.
pub(crate) const FINISH_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

impl SyslogSender {
    /// Close the queue and let the forwarder send what is in it, for at most [`FINISH_WITHIN`].
    /// Called from the writer's thread (not a runtime thread) when the trail closes: the
    /// runtime may be dropped right after, which would cancel the forwarder mid-queue.
    pub(crate) fn finish(self, rt: &tokio::runtime::Handle) {
        let SyslogSender { tx, task, .. } = self;
        drop(tx);
        rt.block_on(async {
            let _ = tokio::time::timeout(FINISH_WITHIN, task).await;
        });
    }

    pub(crate) fn offer(&self, line: &[u8]) {
        if self.tx.try_send(line.to_vec()).is_err() {
            self.metrics.syslog_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Format one RFC 5424 message with octet-counting framing. Severity: informational.
pub fn frame(cfg: &SyslogConfig, time: &str, line: &[u8]) -> Vec<u8> {
    let pri = u32::from(cfg.facility) * 8 + 6;
    let host = cfg.hostname.as_deref().unwrap_or("-");
    let mut msg = format!(
        "<{pri}>1 {time} {host} {} {} audit - \u{feff}",
        cfg.app_name,
        std::process::id()
    )
    .into_bytes();
    msg.extend_from_slice(line);
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(&msg);
    out
}

/// The record's own `time` (the envelope's third field), used as the syslog TIMESTAMP.
fn record_time(line: &[u8]) -> Option<&str> {
    let head = &line[..120.min(line.len())];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
    };
    let start = text.find("\"time\":\"")? + 8;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

pub(crate) fn start(
    cfg: SyslogConfig,
    metrics: Arc<AuditMetrics>,
) -> Result<SyslogSender, AuditError> {
    let tls = match &cfg.tls {
        Some(t) => Some(tls_connector(t)?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(cfg.buffer.max(1));
    let task = tokio::spawn(forward(cfg, tls, rx, metrics.clone()));
    Ok(SyslogSender { tx, metrics, task })
}

type Tls = (tokio_rustls::TlsConnector, ServerName<'static>);

fn tls_connector(t: &SyslogTls) -> Result<Tls, AuditError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&t.ca_file)
        .map_err(|e| AuditError::Config(format!("syslog CA {}: {e}", t.ca_file.display())))?;
    for c in certs {
        let c =
            c.map_err(|e| AuditError::Config(format!("syslog CA {}: {e}", t.ca_file.display())))?;
        roots
            .add(c)
            .map_err(|e| AuditError::Config(format!("syslog CA: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AuditError::Config(format!("syslog TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(t.server_name.clone())
        .map_err(|e| AuditError::Config(format!("syslog server name: {e}")))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

async fn connect(
    cfg: &SyslogConfig,
    tls: &Option<Tls>,
) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    let tcp = TcpStream::connect(&cfg.address).await?;
    tcp.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some((connector, name)) => Ok(Box::new(connector.connect(name.clone(), tcp).await?)),
    }
}

async fn forward(
    cfg: SyslogConfig,
    tls: Option<Tls>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    metrics: Arc<AuditMetrics>,
) {
    let mut conn: Option<Box<dyn AsyncWrite + Send + Unpin>> = None;
    while let Some(line) = rx.recv().await {
        let time = record_time(&line).map_or_else(
            || {
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string()
            },
            str::to_string,
        );
        let framed = frame(&cfg, &time, &line);
        // Keep this message until it is sent (or the forwarder stops).
        loop {
            if conn.is_none() {
                match connect(&cfg, &tls).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        metrics.syslog_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, address = %cfg.address, "syslog: cannot connect");
                        tokio::time::sleep(cfg.reconnect).await;
                        continue;
                    }
                }
            }
            let Some(c) = conn.as_mut() else { continue };
            let res = async {
                c.write_all(&framed).await?;
                // Flush as soon as the queue is empty so the copy is prompt.
                if rx.is_empty() {
                    c.flush().await?;
                }
                Ok::<_, std::io::Error>(())
            }
            .await;
            match res {
                Ok(()) => {
                    metrics.syslog_sent.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    metrics.syslog_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "syslog: write failed; reconnecting");
                    conn = None;
                    tokio::time::sleep(cfg.reconnect).await;
                }
            }
        }
    }
    if let Some(mut c) = conn {
        let _ = c.flush().await;
        let _ = c.shutdown().await;
    }
}
