//! Listeners, the admin endpoint, reload and graceful shutdown.
//!
//! [`start`] loads and validates everything first, then binds: nothing is served until
//! configuration and TLS material are loaded. Each connection reads the current snapshot
//! per request, so a reload reaches keep-alive connections on their next request while
//! in-flight requests finish on the snapshot they started with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Limits, LoadError};
use crate::h1guard::{H1Guard, OnReject};
use crate::metrics::{ListenerLabels, Metrics, ResultLabels};
use crate::pipeline::{ConnInfo, Gateway, handle};
use crate::respond::{self, Body};
use crate::snapshot::Snapshot;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] LoadError),
    #[error("the audit trail cannot be opened: {0}")]
    Audit(#[from] sekisho_audit::AuditError),
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Running {
    pub gateway: Arc<Gateway>,
    /// Bound address of every listener, by name (useful when the configuration says port 0).
    pub listeners: BTreeMap<String, SocketAddr>,
    pub admin: SocketAddr,
    config_path: PathBuf,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// What may not change on reload without a restart.
fn listener_shape(s: &Snapshot) -> Vec<(String, String, SocketAddr, bool)> {
    let mut v: Vec<_> = s
        .config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.zone.clone(), l.listen, l.tls.is_some()))
        .collect();
    v.sort();
    v
}

/// Test hooks for [`start_with`]. Never set in production.
#[doc(hidden)]
#[derive(Default)]
pub struct StartOptions {
    /// Makes the audit writer's writes or fsyncs fail (a full or broken disk).
    pub audit_faults: Option<sekisho_audit::fault::FaultInjector>,
}

/// Loads the configuration, binds every listener and the admin endpoint, and serves.
pub async fn start(config_path: &Path) -> Result<Running, StartError> {
    start_with(config_path, StartOptions::default()).await
}

#[doc(hidden)]
pub async fn start_with(config_path: &Path, options: StartOptions) -> Result<Running, StartError> {
    let mut snapshot = Snapshot::load(config_path)?;
    if let (Some(faults), Some(cfg)) = (options.audit_faults, &snapshot.config.audit) {
        let mut cfg = cfg.clone();
        cfg.fault_injection = Some(faults);
        if let Some(c) = std::sync::Arc::get_mut(&mut snapshot.config) {
            c.audit = Some(cfg);
        }
    }
    for w in &snapshot.config.warnings {
        tracing::warn!("{w}");
    }
    // The audit trail opens before anything is served: a trail that cannot be continued
    // (corrupt, cut short of its last checkpoint, locked by another writer) stops the start.
    let audit = match &snapshot.config.audit {
        Some(cfg) => {
            let (handle, _task) = sekisho_audit::AuditWriter::start(
                cfg.clone(),
                Arc::new(sekisho_audit::SystemClock),
            )?;
            Some(handle)
        }
        None => None,
    };
    let mut metrics = Metrics::new();
    if let Some(h) = &audit {
        metrics
            .registry_mut()
            .register_collector(Box::new(crate::audit::AuditCollector(h.clone())));
    }
    if let Some(rt) = &snapshot.identity {
        metrics
            .registry_mut()
            .register_collector(Box::new(crate::auth::IdentityCollector(rt.clone())));
    }
    let metrics = Arc::new(metrics);
    let limits = snapshot.config.limits.clone();
    let mut bound = Vec::new();
    for l in &snapshot.config.listeners {
        let tcp = TcpListener::bind(l.listen)
            .await
            .map_err(|source| StartError::Bind {
                name: l.name.clone(),
                addr: l.listen,
                source,
            })?;
        bound.push((l.name.clone(), l.zone.clone(), l.tls.is_some(), tcp));
    }
    let admin_addr = snapshot.config.admin.listen;
    let admin = TcpListener::bind(admin_addr)
        .await
        .map_err(|source| StartError::Bind {
            name: "admin".into(),
            addr: admin_addr,
            source,
        })?;
    let start_event = sekisho_audit::Event::Start(sekisho_audit::record::StartEvent {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_version: snapshot.config.version.clone(),
        policy_version: snapshot
            .config
            .policies
            .as_deref()
            .map(|p| p.version().to_owned())
            .unwrap_or_default(),
    });
    let gateway = Gateway::new(snapshot, metrics, audit);
    if !crate::audit::record(gateway.audit.as_ref(), start_event, "start").await {
        tracing::error!(
            "the audit trail refused the start record; the gateway reports not ready until it recovers"
        );
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut listeners = BTreeMap::new();
    for (name, zone, tls, tcp) in bound {
        let local = tcp.local_addr().map_err(|source| StartError::Bind {
            name: name.clone(),
            addr: admin_addr,
            source,
        })?;
        tracing::info!(listener = %name, zone = %zone, addr = %local, tls, "listening");
        listeners.insert(name.clone(), local);
        tasks.spawn(accept_loop(
            gateway.clone(),
            name,
            zone,
            tls,
            tcp,
            limits.clone(),
            shutdown_rx.clone(),
        ));
    }
    let admin_local = admin.local_addr().map_err(|source| StartError::Bind {
        name: "admin".into(),
        addr: admin_addr,
        source,
    })?;
    tracing::info!(addr = %admin_local, "admin endpoint listening (/healthz, /readyz, /metrics)");
    tasks.spawn(admin_loop(gateway.clone(), admin, shutdown_rx.clone()));
    // Both series exist from the start, so a dashboard shows 0 failures rather than nothing.
    for result in ["success", "failure"] {
        gateway
            .metrics
            .reloads
            .get_or_create(&ResultLabels { result })
            .inc_by(0);
    }
    gateway.ready.store(true, Ordering::Release);
    Ok(Running {
        gateway,
        listeners,
        admin: admin_local,
        config_path: config_path.to_owned(),
        shutdown,
        tasks,
    })
}

impl Running {
    /// Re-reads the configuration; swaps it in only if it is entirely valid. Returns the
    /// new configuration version. A failed reload leaves the old configuration serving.
    pub fn reload(&self) -> Result<String, LoadError> {
        let old = self.gateway.snapshot.load_full();
        let result = Snapshot::load_after(&self.config_path, Some(&old)).and_then(|new| {
            if old.config.audit_fingerprint != new.config.audit_fingerprint {
                return Err(LoadError {
                    diagnostics: vec![sekisho_yaml::Diagnostic::file_error(
                        &self.config_path.display().to_string(),
                        "the `audit` section changed: this needs a restart",
                        None,
                    )],
                });
            }
            if listener_shape(&old) != listener_shape(&new) {
                return Err(LoadError {
                    diagnostics: vec![sekisho_yaml::Diagnostic::file_error(
                        &self.config_path.display().to_string(),
                        "listeners changed (name, zone, address or TLS): this needs a restart",
                        Some("routes, zones, upstreams, certificates and limits reload; listeners do not".into()),
                    )],
                });
            }
            Ok(new)
        });
        let m = &self.gateway.metrics;
        let old_policy = old
            .config
            .policies
            .as_deref()
            .map(|p| p.version().to_owned());
        let event =
            |outcome: &str, config_version: String, policy_version: String, errors: Vec<String>| {
                sekisho_audit::Event::ConfigReload(sekisho_audit::record::ConfigReloadEvent {
                    outcome: outcome.to_owned(),
                    config_version,
                    policy_version,
                    previous_policy_version: old_policy.clone(),
                    errors,
                    ..Default::default()
                })
            };
        match result {
            Ok(new) => {
                let version = new.config.version.clone();
                let policy_version = new
                    .config
                    .policies
                    .as_deref()
                    .map(|p| p.version().to_owned())
                    .unwrap_or_default();
                crate::audit::record_later(
                    self.gateway.audit.as_ref(),
                    event(
                        "applied",
                        version.clone(),
                        policy_version.clone(),
                        Vec::new(),
                    ),
                );
                for w in &new.config.warnings {
                    tracing::warn!("{w}");
                }
                self.gateway.snapshot.store(Arc::new(new));
                self.gateway.generation.send_modify(|g| *g += 1);
                m.set_config_version(
                    &version,
                    if policy_version.is_empty() {
                        "none"
                    } else {
                        &policy_version
                    },
                );
                m.reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                tracing::info!(config.version = %version, "configuration reloaded");
                Ok(version)
            }
            Err(e) => {
                m.reloads
                    .get_or_create(&ResultLabels { result: "failure" })
                    .inc();
                tracing::error!(
                    "configuration reload refused; the previous configuration keeps serving:\n{e}"
                );
                Err(e)
            }
        }
    }

    /// Files whose change should trigger a reload: the configuration and what it names.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let snap = self.gateway.snapshot.load();
        let mut files = vec![self.config_path.clone()];
        for l in &snap.config.listeners {
            if let Some(tls) = &l.tls {
                for c in &tls.certificates {
                    files.push(c.cert.clone());
                    files.push(c.key.clone());
                }
            }
        }
        for r in &snap.config.routes {
            if let Some(t) = &r.upstream_tls {
                files.push(t.ca.clone());
            }
        }
        files.extend(snap.config.policy_files.iter().cloned());
        if let Some(d) = &snap.devices {
            files.extend(d.watched_files());
        }
        if let Some(i) = &snap.config.identity {
            files.extend(i.files.iter().cloned());
        }
        files
    }

    /// Stops accepting, lets in-flight requests finish (up to the configured drain
    /// timeout), then closes what remains.
    pub async fn shutdown(mut self) {
        self.gateway.ready.store(false, Ordering::Release);
        let drain = self.gateway.snapshot.load().config.limits.drain_timeout;
        let _ = self.shutdown.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(drain + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tracing::warn!("drain timeout reached; closing remaining connections");
            self.tasks.abort_all();
        }
        // Everything accepted is written, then the stop record, fsynced and checkpointed.
        if let Some(a) = &self.gateway.audit {
            let stop = sekisho_audit::Event::Stop(sekisho_audit::record::StopEvent {
                reason: "shutdown".into(),
            });
            if let Err(e) = a.shutdown_within(Some(stop), AUDIT_CLOSE_WITHIN).await {
                tracing::error!(error = %e, "the audit trail did not close cleanly");
            }
        }
        tracing::info!("gateway stopped");
    }
}

/// How long a stopping gateway waits for the audit trail to write and fsync what it holds and
/// the stop record: far longer than a healthy disk needs (milliseconds). With the default
/// drain (30 s) and the runtime's 5 s for blocking threads this stays under the 60 s that the
/// shipped systemd unit and Kubernetes manifest allow, so the error is logged before the
/// service manager kills the process.
pub const AUDIT_CLOSE_WITHIN: Duration = Duration::from_secs(15);

async fn accept_loop(
    gw: Arc<Gateway>,
    name: String,
    zone: String,
    tls: bool,
    tcp: TcpListener,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let gauge = gw
        .metrics
        .open_connections
        .get_or_create_owned(&ListenerLabels {
            listener: name.clone(),
        });
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(listener = %name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let conn = Box::new(ConnInfo { listener: name.clone(), zone: zone.clone(), peer, peer_ip: peer.ip().to_string(), tls, sni_host: None, device: Default::default(), session: Default::default(), assertion: Default::default(), audit: Default::default(), policy: Default::default() });
                let limits = limits.clone();
                let shutdown = shutdown.clone();
                let gauge = gauge.clone();
                conns.spawn(async move {
                    gauge.inc();
                    serve_connection(gw, conn, stream, limits, shutdown).await;
                    gauge.dec();
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(tcp);
    while conns.join_next().await.is_some() {}
}

/// One client connection: the TLS handshake (on TLS listeners), then HTTP until either side
/// closes it.
///
/// Why the boxes: a task's future is allocated once, at the size of its largest state, and
/// keeps that size for the connection's lifetime. Inline, the handshake's state (rustls'
/// acceptor and the half-made connection), copies of `ConnInfo` and of the I/O, and hyper's
/// connection made one ≈ 12 KiB task, although an idle keep-alive connection needs only
/// hyper's connection. Boxed, the handshake's memory goes back when it is done, and an idle
/// connection holds a small task plus hyper's connection at its own size: 6.7 KiB less
/// resident per idle connection (docs/performance.md, "Memory per idle connection"). It costs
/// three allocations per connection, none per request.
async fn serve_connection(
    gw: Arc<Gateway>,
    mut conn: Box<ConnInfo>,
    stream: TcpStream,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    if conn.tls {
        let Some(tls) = Box::pin(tls_handshake(&gw, &mut conn, stream, &limits)).await else {
            return;
        };
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            serve_http(gw, conn, TokioIo::new(tls), &limits, shutdown).await;
        } else {
            let guard = H1Guard::new(tls, false, reject_counter(&gw, &conn));
            serve_http(gw, conn, TokioIo::new(guard), &limits, shutdown).await;
        }
    } else {
        let guard = H1Guard::new(stream, true, reject_counter(&gw, &conn));
        serve_http(gw, conn, TokioIo::new(guard), &limits, shutdown).await;
    }
}

/// The TLS handshake, with the server name and device certificate noted in `conn`; `None`
/// when it fails or times out (logged at debug: scanners and dropped clients are routine).
async fn tls_handshake(
    gw: &Gateway,
    conn: &mut ConnInfo,
    stream: TcpStream,
    limits: &Limits,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
    let start = match tokio::time::timeout(limits.header_read_timeout, acceptor).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(listener = %conn.listener, error = %e, "TLS client hello failed");
            return None;
        }
        Err(_) => return None,
    };
    let sni = start
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    conn.sni_host = sni
        .as_deref()
        .map(|s| crate::host::canonical_host(s).unwrap_or_default());
    let (cfg, _asks_for_device) = gw
        .snapshot
        .load()
        .server_tls
        .get(&conn.listener)
        .map(|t| t.for_sni(sni.as_deref()))?;
    let tls = match tokio::time::timeout(limits.header_read_timeout, start.into_stream(cfg)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(listener = %conn.listener, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => return None,
    };
    conn.device.chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.clone().into_owned()).collect());
    Some(tls)
}

/// Counts and logs requests the HTTP/1 guard refused (they never reach the pipeline).
fn reject_counter(gw: &Arc<Gateway>, conn: &ConnInfo) -> OnReject {
    let metrics = gw.metrics.clone();
    let listener = conn.listener.clone();
    let peer = conn.peer;
    Arc::new(move |reason: &'static str| {
        metrics
            .rejected
            .get_or_create(&crate::metrics::RejectLabels {
                listener: listener.clone(),
                reason,
            })
            .inc();
        tracing::info!(
            target: "sekisho::access",
            listener = %listener,
            client.ip = %peer.ip(),
            status = 400,
            reason,
            "ambiguous HTTP/1 request refused"
        );
    })
}

/// HTTP on an established connection until it closes, its device certificate is withdrawn
/// or the gateway shuts down (then in-flight requests get up to `drain_timeout`).
///
/// A plain function that returns the future, so that hyper's connection (which holds the
/// I/O and its buffers) is built here and boxed at its own size, and the returned future
/// captures only the box: an `async fn` would keep its arguments (the I/O once more) and the
/// connection side by side in its state (see `serve_connection`).
fn serve_http<I>(
    gw: Arc<Gateway>,
    conn: Box<ConnInfo>,
    io: I,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let conn: Arc<ConnInfo> = Arc::from(conn);
    let device_gone = device_withdrawn(gw.clone(), conn.clone());
    let svc = service_fn(move |req: Request<Incoming>| handle(gw.clone(), conn.clone(), req));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(64))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let mut served = Box::pin(builder.serve_connection_with_upgrades(io, svc).into_owned());
    let drain = limits.drain_timeout;
    async move {
        tokio::select! {
            res = served.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            () = device_gone => {
                tracing::info!("connection closed: its device certificate is no longer valid");
            }
            _ = shutdown.changed() => {
                served.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(drain, served).await;
            }
        }
    }
}

/// Resolves when the device certificate a connection presented stops being valid after a
/// reload (revoked, CA removed). Never resolves for connections without a certificate.
async fn device_withdrawn(gw: Arc<Gateway>, conn: Arc<ConnInfo>) {
    if conn.device.chain.is_none() {
        return std::future::pending().await;
    }
    let mut generation = gw.generation.subscribe();
    loop {
        if generation.changed().await.is_err() {
            return std::future::pending().await;
        }
        let snap = gw.snapshot.load_full();
        let Some(p) = &snap.devices else { return };
        let view = crate::device::evaluate(p, snap.generation, &conn.device, None, (gw.clock)());
        if view.status != "verified" {
            return;
        }
    }
}

async fn admin_loop(gw: Arc<Gateway>, tcp: TcpListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = tcp.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let gw = gw.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| admin(gw.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

async fn admin(
    gw: Arc<Gateway>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let text = |status: StatusCode, body: String, ct: &'static str| {
        let mut r = Response::new(respond::full(body));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        r
    };
    let resp = match (req.method(), req.uri().path()) {
        (&http::Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        (&http::Method::GET, "/readyz") => {
            if gw.is_ready() {
                text(StatusCode::OK, "ready\n".into(), "text/plain")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready\n".into(),
                    "text/plain",
                )
            }
        }
        (&http::Method::GET, "/metrics") => text(
            StatusCode::OK,
            gw.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    };
    Ok(resp)
}

/// A running file watcher (watching stops when it is dropped) and what it watches.
pub struct FileWatch {
    _debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    paths: Vec<PathBuf>,
}

/// Device, inode, size, modification and change time of each watched path (`None`: absent).
pub type FileState = Vec<Option<(u64, u64, u64, i64, i64, i64, i64)>>;

impl FileWatch {
    /// The watched paths as they are now: every symlink on the way to a configured file and
    /// the file behind it. A file moved into place keeps its modification time but gets a new
    /// inode or change time, so comparing two states sees `mv`, `cp -p` and Kubernetes'
    /// `..data` swaps as well as edits — what a watcher being replaced may have missed.
    pub fn state(&self) -> FileState {
        use std::os::unix::fs::MetadataExt;
        self.paths
            .iter()
            .map(|p| {
                std::fs::symlink_metadata(p).ok().map(|m| {
                    (
                        m.dev(),
                        m.ino(),
                        m.size(),
                        m.mtime(),
                        m.mtime_nsec(),
                        m.ctime(),
                        m.ctime_nsec(),
                    )
                })
            })
            .collect()
    }
}

/// Watches the configuration and the files it names; calls `on_change` when one changes
/// (debounced).
pub fn watch_files(
    running: &Running,
    on_change: impl Fn() + Send + 'static,
) -> Result<FileWatch, String> {
    use notify_debouncer_full::notify::RecursiveMode;
    // Each file, every symlink on the way to it and the real file behind them (a CRL behind
    // `ln -sfn`, a Kubernetes `..data` swap), and the folders that hold them.
    let listed = running.watched_files();
    let (watched, dirs) = sekisho_posture::watch::watch_set(listed.iter().map(|p| p.as_path()));
    let paths: Vec<PathBuf> = watched.iter().cloned().collect();
    let mut debouncer = notify_debouncer_full::new_debouncer(
        Duration::from_millis(300),
        None,
        move |res: notify_debouncer_full::DebounceEventResult| {
            // Opens and reads are reported too, and a reload reads these files itself:
            // only content changes (or lost events) count.
            if let Ok(events) = res
                && sekisho_posture::watch::needs_reload(&events, &watched)
            {
                on_change();
            }
        },
    )
    .map_err(|e| e.to_string())?;
    // A folder that does not exist holds no file the configuration could read (a link that
    // leads nowhere yet); the links leading to it are watched in the folders that do.
    let mut watching = 0;
    for d in dirs.iter().filter(|d| d.is_dir()) {
        // Watch directories, not files: editors replace files by renaming. One folder that
        // cannot be watched (gone in the meantime, the inotify watch limit) must not stop the
        // others from being watched.
        match debouncer.watch(d, RecursiveMode::NonRecursive) {
            Ok(()) => watching += 1,
            Err(e) => {
                tracing::warn!(folder = %d.display(), error = %e, "cannot watch this folder; changes in it need SIGHUP")
            }
        }
    }
    if watching == 0 {
        return Err("no folder of the configuration's files could be watched".into());
    }
    Ok(FileWatch {
        _debouncer: debouncer,
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle keep-alive connection keeps its task's future for as long as it stays open, at
    /// the size of the future's largest state. The handshake and hyper's connection are boxed
    /// so that this stays small (see `serve_connection`); inline they made it ≈ 12 KiB in a
    /// release build, most of it for states an idle connection is no longer in.
    #[test]
    fn an_idle_connection_holds_a_small_task() {
        fn size<A, B, C, D, E, F: Future>(_: fn(A, B, C, D, E) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        type Tls = tokio_rustls::server::TlsStream<TcpStream>;
        // In the debug build tests run in: 2,000 and 568 bytes when this was written; with
        // the handshake and hyper's connection inline the task was 10,728 bytes.
        let task = size(serve_connection);
        assert!(
            task <= 3 * 1024,
            "the connection's task future is {task} bytes"
        );
        for (what, bytes) in [
            ("HTTP/1.1", size(serve_http::<TokioIo<H1Guard<Tls>>>)),
            ("HTTP/2", size(serve_http::<TokioIo<Tls>>)),
        ] {
            assert!(
                bytes <= 1024,
                "the {what} connection's future is {bytes} bytes"
            );
        }
    }
}
