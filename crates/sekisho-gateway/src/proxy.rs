//! Forwarding to upstreams: one pool per route, round robin over its upstreams, zone-checked
//! connections, timeouts, streaming bodies.
//!
//! HTTP/1.1 upstream connections are kept by Sekisho itself ([`H1Conns`]): a stack of idle
//! connections per upstream, taken for a request and given back when its response body has
//! ended — unless the upstream answered before the request body was sent whole, in which case
//! the connection is closed (as nginx does; see [`H1Conns::give_back`]). hyper-util's
//! general-purpose pool (kept for HTTP/2 upstreams) hashes a pool key, races a lazy connect
//! against the checkout and spawns a task per request to watch the connection become idle
//! again; measured on the benchmark's bare proxy that cost ≈ 2 µs per request, ≈ 10 % of its
//! throughput.
//!
//! A failed upstream (connection refused, connect timeout, egress refused) is skipped for
//! [`RETRY_AFTER`] and the request goes to the next one. Only failures *before* the request
//! was sent are retried, so a non-idempotent request is never sent twice; the request
//! body is handed to the client in a slot it can be taken back from if the connection was
//! never made.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{Route, Zone};
use crate::egress::{EgressError, ZoneConnector};
use crate::respond::{Body, BoxError};

/// How long a failed upstream is skipped before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why forwarding failed.
#[derive(Debug)]
pub enum ForwardError {
    /// No upstream could be connected to (kind from [`EgressError::kind`]).
    Connect(&'static str, String),
    /// The upstream did not send a response head in time.
    Timeout,
    /// The connection broke or the upstream spoke invalid HTTP.
    Protocol(String),
    /// The client's request body failed (malformed, truncated, too slow).
    ClientBody(String),
}

impl ForwardError {
    pub fn kind(&self) -> &'static str {
        match self {
            ForwardError::Connect(kind, _) => kind,
            ForwardError::Timeout => "timeout",
            ForwardError::Protocol(_) => "protocol",
            ForwardError::ClientBody(_) => "client_body",
        }
    }
}

/// How long an HTTP/1.1 upstream connection may stay idle before it is closed (at most twice
/// this: idle connections are swept every `IDLE_SWEEP`).
const IDLE_SWEEP: Duration = Duration::from_secs(30);
/// Idle HTTP/1.1 connections kept per upstream; more are closed when their response ends.
const MAX_IDLE: usize = 256;

/// Why sending to one upstream failed.
enum SendError {
    /// No connection was made (kind from [`EgressError::kind`]); the request was not sent.
    Connect(&'static str, String),
    /// The connection was made; the exchange failed.
    Exchange(Box<dyn std::error::Error + Send + Sync>),
}

/// One HTTP/1.1 connection to an upstream: the handle that sends on it and its driving task.
struct Conn {
    tx: http1::SendRequest<Reclaim>,
    task: tokio::task::AbortHandle,
}

/// Idle connections to one upstream, most recently given back last, each with the sweep round
/// in which it was given back.
type IdleStack = Vec<(Conn, u64)>;

/// Idle HTTP/1.1 connections to the upstreams of one route.
struct H1Conns {
    connector: ZoneConnector,
    /// Per upstream.
    idle: Vec<Mutex<IdleStack>>,
    /// Sweep rounds so far; a connection idle for a whole round is closed.
    round: AtomicU64,
    sweeper: std::sync::Once,
}

impl H1Conns {
    fn new(connector: ZoneConnector, upstreams: usize) -> H1Conns {
        H1Conns {
            connector,
            idle: (0..upstreams).map(|_| Mutex::new(Vec::new())).collect(),
            round: AtomicU64::new(0),
            sweeper: std::sync::Once::new(),
        }
    }

    fn take(self: &Arc<Self>, i: usize) -> Option<Conn> {
        // Started on first use, inside the runtime; it ends when the route's pool is dropped
        // (a reload builds new pools).
        self.sweeper.call_once(|| {
            let conns = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(IDLE_SWEEP);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(c) = conns.upgrade() else { break };
                    c.sweep();
                }
            });
        });
        let mut idle = self.idle[i].lock().unwrap_or_else(|p| p.into_inner());
        while let Some((conn, _)) = idle.pop() {
            if !conn.tx.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    /// Stacks a connection whose response has ended, or closes it.
    fn give_back(&self, i: usize, conn: Conn, request_sent: bool) {
        if conn.tx.is_closed() {
            return;
        }
        if !request_sent {
            // The upstream answered before the request body was all sent. An upstream that
            // then neither reads the rest nor closes would take the remaining body bytes for
            // the next request on this connection (a "CL.0" desync), and until the upload
            // ends the connection can take no other request anyway. nginx's keep-alive pool
            // refuses such connections too: closed, with what is left of the upload.
            conn.task.abort();
            return;
        }
        // Not `is_ready()` yet is fine: the request has been handed over whole and the
        // connection becomes ready once it is flushed; `send` waits for that.
        let round = self.round.load(Ordering::Relaxed);
        let mut idle = self.idle[i].lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push((conn, round));
        }
    }

    /// Closes connections that stayed idle through a whole sweep round, and closed ones.
    fn sweep(&self) {
        let round = self.round.fetch_add(1, Ordering::Relaxed);
        for idle in &self.idle {
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|(conn, r)| *r >= round && !conn.tx.is_closed());
        }
    }

    async fn connect(&self, up: &crate::config::Upstream) -> Result<Conn, SendError> {
        let host = up.host.trim_start_matches('[').trim_end_matches(']');
        let io = self
            .connector
            .connect(host.to_owned(), up.port)
            .await
            .map_err(|e| SendError::Connect(e.kind(), format!("{up}: {e}")))?;
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect("connect", format!("{up}: {}", error_chain(&e))))?;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %error_chain(&e), "upstream connection ended with an error");
            }
        })
        .abort_handle();
        Ok(Conn { tx, task })
    }

    /// Sends on an idle connection, or a new one. A request that an idle connection closed
    /// before it was written (the upstream's keep-alive ran out) goes on another; one that
    /// was written is never sent again.
    async fn send(
        self: &Arc<Self>,
        i: usize,
        up: &crate::config::Upstream,
        mut req: Request<Reclaim>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let sent = req.body().sent.clone();
        loop {
            let (mut conn, reused) = match self.take(i) {
                Some(conn) => (conn, true),
                None => (self.connect(up).await?, false),
            };
            if conn.tx.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(SendError::Connect(
                    "connect",
                    format!("{up}: connection closed"),
                ));
            }
            match conn.tx.try_send_request(req).await {
                Ok(resp) => {
                    // After `101 Switching Protocols` the connection belongs to the tunnel.
                    let back =
                        (resp.status() != http::StatusCode::SWITCHING_PROTOCOLS).then(|| Kept {
                            conns: self.clone(),
                            i,
                            conn,
                            sent: sent.clone(),
                        });
                    return Ok(resp.map(|body| UpstreamBody {
                        inner: body,
                        back,
                        ended: false,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Exchange(Box::new(e.into_error()))),
                },
            }
        }
    }
}

/// A kept HTTP/1.1 connection while its response is read, and whether its request body has
/// been handed over whole (see [`Reclaim`]'s `sent`).
struct Kept {
    conns: Arc<H1Conns>,
    i: usize,
    conn: Conn,
    sent: Option<Arc<AtomicBool>>,
}

/// A response body from an upstream; for a kept HTTP/1.1 connection, the connection goes back
/// to the idle stack when the body has ended (not before: the next request would wait behind
/// it), and is closed if the body was dropped before its end.
pub struct UpstreamBody {
    inner: Incoming,
    back: Option<Kept>,
    ended: bool,
}

impl UpstreamBody {
    fn plain(inner: Incoming) -> UpstreamBody {
        UpstreamBody {
            inner,
            back: None,
            ended: false,
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &mut frame
            && let Some(trailers) = f.trailers_mut()
        {
            clean_trailers(trailers);
        }
        match &frame {
            Poll::Ready(None) => self.ended = true,
            // Trailers are always the last frame of a body.
            Poll::Ready(Some(Ok(f))) if f.is_trailers() || self.inner.is_end_stream() => {
                self.ended = true
            }
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Fields an upstream may not send as trailers (RFC 9110 §6.5.1: framing, routing,
/// authentication, cookies), removed before a response's trailers reach the client. A client
/// that merged them into the head would let the upstream do late what the head's filtering
/// refuses: a `Set-Cookie` for Sekisho's own cookies, a hop-by-hop field.
fn clean_trailers(trailers: &mut http::HeaderMap) {
    const BARRED: &[&str] = &[
        "set-cookie",
        "content-length",
        "content-encoding",
        "content-type",
        "content-range",
        "host",
        "location",
        "authorization",
        "www-authenticate",
        "cache-control",
        "expect",
    ];
    let barred: Vec<http::HeaderName> = trailers
        .keys()
        .filter(|n| crate::pipeline::is_hop_by_hop(n) || BARRED.contains(&n.as_str()))
        .cloned()
        .collect();
    for name in &barred {
        trailers.remove(name);
    }
    if !barred.is_empty() {
        tracing::debug!(removed = barred.len(), "upstream trailer fields removed");
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(k) = self.back.take()
            && (self.ended || self.inner.is_end_stream())
        {
            let sent = k.sent.as_ref().is_none_or(|s| s.load(Ordering::Acquire));
            k.conns.give_back(k.i, k.conn, sent);
        }
    }
}

/// The upstreams of one route and the client that reaches them.
pub struct UpstreamPool {
    pub route: Arc<Route>,
    /// Scheme and authority of each upstream, parsed once: every forwarded request's URI is
    /// built from them and its path, without formatting and parsing a URI per request.
    bases: Vec<(http::uri::Scheme, http::uri::Authority)>,
    /// Each upstream as written in the audit record (`https://host:port`), formatted once.
    names: Vec<Arc<str>>,
    /// HTTP/2 upstreams (`upstream_http2`): hyper-util's pool, which multiplexes.
    client: Client<ZoneConnector, Reclaim>,
    /// HTTP/1.1 upstreams: Sekisho's own idle stacks.
    h1: Option<Arc<H1Conns>>,
    next: AtomicUsize,
    /// Per upstream: milliseconds since `epoch` until which it is skipped.
    down_until: Vec<AtomicU64>,
    epoch: Instant,
}

impl UpstreamPool {
    pub fn new(route: Arc<Route>, zone: Arc<Zone>) -> Result<UpstreamPool, String> {
        let tls = match &route.upstream_tls {
            Some(t) => Some((
                crate::tls::upstream_client_config(&t.ca, route.upstream_http2)?,
                t.server_name.clone(),
            )),
            None => None,
        };
        let connector = ZoneConnector {
            zone,
            tls,
            connect_timeout: route.timeouts.connect,
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .http2_only(route.upstream_http2);
        let h1 = (!route.upstream_http2)
            .then(|| Arc::new(H1Conns::new(connector.clone(), route.upstreams.len())));
        let client = builder.build(connector);
        let bases = route
            .upstreams
            .iter()
            .map(|up| {
                http::uri::Authority::try_from(up.authority())
                    .map(|a| (up.scheme.clone(), a))
                    .map_err(|e| format!("upstream {up}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UpstreamPool {
            bases,
            names: route
                .upstreams
                .iter()
                .map(|up| Arc::from(up.to_string()))
                .collect(),
            down_until: route.upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            route,
            client,
            h1,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Upstream `i` as the audit record names it.
    pub fn name(&self, i: usize) -> Option<Arc<str>> {
        self.names.get(i).cloned()
    }

    /// Upstream indices in the order to try: round robin, healthy ones first.
    fn order(&self) -> Vec<usize> {
        let n = self.route.upstreams.len();
        if n == 1 {
            // Nothing to choose: no counter, no clock.
            return vec![0];
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = self.now_ms();
        let mut healthy = Vec::with_capacity(n);
        let mut down = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            if self.down_until[i].load(Ordering::Relaxed) > now {
                down.push(i);
            } else {
                healthy.push(i);
            }
        }
        healthy.extend(down);
        healthy
    }

    /// Sends the request (whose URI carries only path and query) to an upstream.
    /// Returns the response and the upstream that answered.
    pub async fn forward(
        &self,
        req: Request<Body>,
    ) -> Result<(Response<UpstreamBody>, usize), ForwardError> {
        let (parts, body) = req.into_parts();
        let slot = Arc::new(Mutex::new(Some(body)));
        let mut last_err = None;
        let order = self.order();
        let tries = order.len();
        let mut parts = Some(parts);
        for (n, i) in order.into_iter().enumerate() {
            let up = &self.route.upstreams[i];
            let (scheme, authority) = &self.bases[i];
            // The request head is copied only while another upstream may still be tried.
            let head = if n + 1 == tries {
                parts.take()
            } else {
                parts.clone()
            };
            let Some(mut p) = head else { break };
            let send = async {
                match &self.h1 {
                    // The request already carries its origin-form target and Host.
                    Some(h1) => {
                        let req = Request::from_parts(p, Reclaim::new(slot.clone()));
                        h1.send(i, up, req).await
                    }
                    None => {
                        let pq = p
                            .uri
                            .path_and_query()
                            .cloned()
                            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
                        p.uri = http::Uri::builder()
                            .scheme(scheme.clone())
                            .authority(authority.clone())
                            .path_and_query(pq)
                            .build()
                            .map_err(|e| SendError::Exchange(Box::new(e)))?;
                        let req = Request::from_parts(p, Reclaim::new(slot.clone()));
                        match self.client.request(req).await {
                            Ok(resp) => Ok(resp.map(UpstreamBody::plain)),
                            Err(e) if e.is_connect() => Err(SendError::Connect(
                                find_in_chain::<EgressError>(&e)
                                    .map(EgressError::kind)
                                    .unwrap_or("connect"),
                                format!("{up}: {}", error_chain(&e)),
                            )),
                            Err(e) => Err(SendError::Exchange(Box::new(e))),
                        }
                    }
                }
            };
            // Boxed: the exchange's future is several KiB (the pooled client's above all), and
            // inline it was copied into the timeout and again into this function's own state
            // for every request; one allocation costs less than those copies.
            let sent =
                tokio::time::timeout(self.route.timeouts.response_header, Box::pin(send)).await;
            match sent {
                Err(_) => return Err(ForwardError::Timeout),
                Ok(Ok(resp)) => return Ok((resp, i)),
                Ok(Err(SendError::Connect(kind, message))) => {
                    self.down_until[i].store(
                        self.now_ms() + RETRY_AFTER.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                    last_err = Some(ForwardError::Connect(kind, message));
                    // The body can be retried only if it was never handed to a connection.
                    if slot.lock().map(|s| s.is_none()).unwrap_or(true) {
                        break;
                    }
                }
                Ok(Err(SendError::Exchange(e))) => {
                    let e: &(dyn std::error::Error + 'static) = &*e;
                    let chain = error_chain(e);
                    if find_in_chain::<crate::pipeline::ClientBodyError>(e).is_some() {
                        return Err(ForwardError::ClientBody(chain));
                    }
                    return Err(ForwardError::Protocol(format!("{up}: {chain}")));
                }
            }
        }
        Err(last_err.unwrap_or(ForwardError::Connect("connect", "no upstream".into())))
    }
}

fn find_in_chain<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        cur = err.source();
    }
    None
}

/// An error and its causes on one line, for logs.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}

/// A request body the client takes from a shared slot on first poll, so that a request
/// that never reached a connection can be retried with its body intact.
pub struct Reclaim {
    slot: Arc<Mutex<Option<Body>>>,
    body: Option<Body>,
    hint: SizeHint,
    end: bool,
    /// Set once the whole body has been handed to the connection; `None` for a request
    /// without a body, which is sent whole with its head (no allocation for the usual GET).
    sent: Option<Arc<AtomicBool>>,
}

impl Reclaim {
    fn mark_sent(&self) {
        if let Some(s) = &self.sent {
            s.store(true, Ordering::Release);
        }
    }

    fn new(slot: Arc<Mutex<Option<Body>>>) -> Reclaim {
        let (hint, end) = match slot.lock().ok().as_ref().and_then(|s| s.as_ref()) {
            Some(b) => (b.size_hint(), b.is_end_stream()),
            None => (SizeHint::with_exact(0), true),
        };
        Reclaim {
            slot,
            body: None,
            hint,
            end,
            sent: (!end).then(|| Arc::new(AtomicBool::new(false))),
        }
    }
}

impl HttpBody for Reclaim {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().ok().and_then(|mut s| s.take());
            match taken {
                Some(b) => self.body = Some(b),
                None => {
                    self.mark_sent();
                    return Poll::Ready(None);
                }
            }
        }
        let Some(b) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(&mut *b).poll_frame(cx);
        let done = match &frame {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => b.is_end_stream(),
            _ => false,
        };
        if done {
            self.mark_sent();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(b) => b.is_end_stream(),
            None => self.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(b) => b.size_hint(),
            None => self.hint,
        }
    }
}

pin_project_lite::pin_project! {
    /// Ends a body with an error when the gateway has waited `idle` for its next frame, so a
    /// stalled upstream or client cannot hold a request open for longer than that at a time.
    /// (A peer that sends a little within every `idle` is not stopped here.) The clock runs
    /// only while the gateway waits: time the other side took to read does not count.
    ///
    /// The timer is made the first time the body makes the gateway wait (`Pending`), then
    /// re-armed for each later wait. Most bodies on the hot path never wait — a GET's empty
    /// request body, a small response that arrives with its head — and a timer made up front
    /// cost each of them a clock read, the runtime handle and a timer-wheel entry. Kept rather
    /// than dropped after a frame, so a streaming body re-arms one timer (usually an atomic
    /// update) instead of adding and removing a wheel entry per frame.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        // The timer runs for the current wait (false after a frame: its deadline is stale).
        armed: bool,
        idle: Duration,
    }
}

impl<B> IdleTimeout<B> {
    pub fn new(inner: B, idle: Duration) -> IdleTimeout<B> {
        IdleTimeout {
            inner,
            sleep: None,
            armed: false,
            idle,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?}: idle timeout")]
pub struct IdleTimeoutError(Duration);

impl<B> HttpBody for IdleTimeout<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                // The wait is over: the next one starts its own clock.
                *this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !*this.armed {
                    match this.sleep.as_mut().as_pin_mut() {
                        Some(sleep) => sleep.reset(tokio::time::Instant::now() + *this.idle),
                        None => this.sleep.set(Some(tokio::time::sleep(*this.idle))),
                    }
                    *this.armed = true;
                }
                // Polled now, so the timer holds this task's waker from the start.
                match this.sleep.as_pin_mut().map(|s| s.poll(cx)) {
                    Some(Poll::Ready(())) => {
                        Poll::Ready(Some(Err(Box::new(IdleTimeoutError(*this.idle)))))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::time::{Instant, sleep, timeout};

    /// A body fed by hand: each message on the channel is one data frame.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    const IDLE: Duration = Duration::from_secs(30);

    /// The next frame, or a test failure (not a hang) if the body neither gives one nor
    /// times out within twice the idle time.
    async fn next<B: HttpBody<Data = Bytes, Error = BoxError> + Unpin>(
        body: &mut B,
    ) -> Option<Result<Frame<Bytes>, BoxError>> {
        timeout(IDLE * 2, body.frame())
            .await
            .expect("the idle timer never fired")
    }

    /// The next wait ends with the idle error, exactly `IDLE` after it began.
    async fn assert_ends_after_the_idle_time<B>(body: &mut B)
    where
        B: HttpBody<Data = Bytes, Error = BoxError> + Unpin,
    {
        let started = Instant::now();
        let r = next(body).await;
        assert!(
            matches!(&r, Some(Err(e)) if e.is::<IdleTimeoutError>()),
            "not the idle error: {r:?}"
        );
        assert_eq!(started.elapsed(), IDLE);
    }

    fn data(r: Option<Result<Frame<Bytes>, BoxError>>) -> Bytes {
        match r {
            Some(Ok(f)) => f.into_data().expect("a data frame"),
            Some(Err(e)) => panic!("an error where a frame was due: {e}"),
            None => panic!("the end where a frame was due"),
        }
    }

    /// Sends `text` on `tx` after `after` (virtual time).
    fn send_later(
        tx: tokio::sync::mpsc::Sender<Bytes>,
        after: Duration,
        text: &'static str,
    ) -> tokio::task::JoinHandle<tokio::sync::mpsc::Sender<Bytes>> {
        tokio::spawn(async move {
            sleep(after).await;
            tx.send(Bytes::from_static(text.as_bytes())).await.unwrap();
            tx
        })
    }

    /// A body that sends nothing is ended with the idle error exactly `idle` after the
    /// gateway began to wait (the runtime's clock is paused and jumps to the timer).
    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_after_the_idle_time() {
        let (_tx, rx) = tokio::sync::mpsc::channel(1);
        let mut body = std::pin::pin!(IdleTimeout::new(Fed(rx), IDLE));
        assert_ends_after_the_idle_time(&mut body).await;
    }

    /// The clock starts when the gateway begins to wait, not when the body is made: a body
    /// first read long after it was made still gets the whole idle time.
    #[tokio::test(start_paused = true)]
    async fn the_idle_clock_starts_at_the_first_wait() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut body = std::pin::pin!(IdleTimeout::new(Fed(rx), IDLE));
        sleep(IDLE * 3).await;
        let _tx = send_later(tx, IDLE - Duration::from_secs(1), "late");
        assert_eq!(data(next(&mut body).await), "late");
    }

    /// Time the other side took to read does not count against this side: after a frame,
    /// the next wait gets the whole idle time again from when it starts, and then ends.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_does_not_shorten_the_next_wait() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut body = std::pin::pin!(IdleTimeout::new(Fed(rx), IDLE));
        let fed = send_later(tx, Duration::from_secs(1), "first");
        assert_eq!(data(next(&mut body).await), "first");
        let tx = fed.await.unwrap();
        // The reader (the client, the upstream) takes 20 s before it asks for more.
        sleep(Duration::from_secs(20)).await;
        let fed = send_later(tx, IDLE - Duration::from_secs(1), "second");
        assert_eq!(data(next(&mut body).await), "second");
        let _tx = fed.await.unwrap();

        assert_ends_after_the_idle_time(&mut body).await;
    }

    /// A frame that is ready makes no timer; the end of a body is passed on.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_waits_makes_no_timer() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut body = std::pin::pin!(IdleTimeout::new(Fed(rx), IDLE));
        tx.send(Bytes::from_static(b"ready")).await.unwrap();
        drop(tx);
        assert_eq!(data(next(&mut body).await), "ready");
        assert!(next(&mut body).await.is_none());
        assert!(
            body.sleep.is_none(),
            "a timer was made for a body that never waited"
        );
    }
}
