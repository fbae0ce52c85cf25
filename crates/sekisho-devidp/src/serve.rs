//! A small loopback HTTP/1.1 + HTTP/2 server (hyper 1, hyper-util) shared by the IdP and the
//! demo upstreams, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{DevIdpError, Result};

pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) trait Handler: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Resp> + Send;
}

/// A running server. Dropping it stops accepting; [`Listening::shutdown`] also waits (at
/// most 5 s) for open connections to finish.
pub(crate) struct Listening {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Listening {
    pub(crate) async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Binds a loopback address (port 0 allowed); [`serve`] then answers on it. Two steps so that
/// a handler can know its own address (the IdP's issuer) before the first request.
pub(crate) async fn bind(bind: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    if !bind.ip().is_loopback() {
        return Err(DevIdpError::NotLoopback(bind));
    }
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| DevIdpError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| DevIdpError::Bind { addr: bind, source })?;
    Ok((listener, addr))
}

pub(crate) fn serve<H: Handler>(
    listener: TcpListener,
    addr: SocketAddr,
    handler: Arc<H>,
) -> Listening {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let h = handler.clone();
                    let svc = service_fn(move |req| {
                        let h = h.clone();
                        async move { Ok::<_, Infallible>(h.handle(req, peer).await) }
                    });
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut stopped => break,
            }
        }
        drop(listener);
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    });
    Listening {
        addr,
        stop: Some(stop),
        task: Some(task),
    }
}
