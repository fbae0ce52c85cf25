//! The request pipeline (DESIGN.md): parse & normalise → route → identity → device →
//! decide → audit → forward → observe. Every request passes every step in this order,
//! and the path routed and decided on is exactly the path forwarded.
//!
//! `handle` is the single completion point: whatever happens, it returns one response and
//! records metrics and the access log line exactly once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::canon;
use crate::config::{Access, Route, RouteKind};
use crate::host::canonical_host;
use crate::metrics::{Metrics, RejectLabels, UpstreamErrorLabels};
use crate::proxy::{ForwardError, IdleTimeout};
use crate::respond::{self, Body, Refusal};
use crate::snapshot::Snapshot;
use sekisho_audit::{Event, Frozen};

/// The gateway's clock: every time-dependent decision reads it, so tests can set it.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// Shared state of a running gateway.
pub struct Gateway {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    /// The audit trail's writer (absent only when no `audit:` is configured).
    pub audit: Option<sekisho_audit::AuditHandle>,
    /// Configuration and TLS loaded and listeners bound.
    pub ready: AtomicBool,
    pub clock: Clock,
    /// Bumped on every configuration swap: long-lived connections re-check their access.
    pub generation: tokio::sync::watch::Sender<u64>,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        metrics: Arc<Metrics>,
        audit: Option<sekisho_audit::AuditHandle>,
    ) -> Arc<Gateway> {
        metrics.set_config_version(
            &snapshot.config.version,
            snapshot
                .config
                .policies
                .as_deref()
                .map_or("none", |p| p.version()),
        );
        Arc::new(Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            audit,
            ready: AtomicBool::new(false),
            clock: Arc::new(jiff::Timestamp::now),
            generation: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Ready: configuration and TLS loaded, listeners bound, and the audit trail writable.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.audit.as_ref().is_none_or(|a| a.is_healthy())
    }
}

/// What the gateway knows about the client connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: String,
    pub zone: String,
    pub peer: SocketAddr,
    /// `peer`'s address as text, formatted once per connection: the access log, the audit
    /// record and `X-Forwarded-For` each need it for every request.
    pub peer_ip: String,
    pub tls: bool,
    /// The TLS server name the client asked for, in canonical host form (made once per
    /// connection for the per-request Host check); empty when the name is not a valid host,
    /// so it matches no request's host.
    pub sni_host: Option<String>,
    /// The device certificate presented at the handshake, if any.
    pub device: crate::device::ConnDevice,
    /// The session cookie this connection sent last, opened (see `SessionMemo`).
    pub session: sekisho_identity::SessionMemo,
    /// The upstream assertion this connection was given last (see `AssertionMemo`).
    pub assertion: sekisho_identity::AssertionMemo,
    /// The repeating parts of this connection's access records, kept serialised.
    pub audit: RecordMemo,
    /// The policy's view of the identity this connection proved last (see `PolicyMemo`).
    pub policy: PolicyMemo,
}

/// The policy's view ([`sekisho_policy::Identity`]) of the identity a connection's requests
/// proved last. A session's identity is one shared value per connection and cookie (see
/// `sekisho_identity::SessionMemo`), so the copy the policy reads is made once for it rather
/// than for every request (≈ 10 allocations: its strings, groups and claims). Compared by
/// address: the memo holds the identity, so its address cannot be reused by another while
/// kept. A bearer token's identity is new on every request and simply misses.
#[derive(Default)]
pub struct PolicyMemo(
    Mutex<
        Option<(
            Arc<sekisho_identity::VerifiedIdentity>,
            Arc<sekisho_policy::Identity>,
        )>,
    >,
);

impl std::fmt::Debug for PolicyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyMemo(..)")
    }
}

impl PolicyMemo {
    fn get(&self, id: &Arc<sekisho_identity::VerifiedIdentity>) -> Arc<sekisho_policy::Identity> {
        let mut memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((k, v)) = memo.as_ref()
            && Arc::ptr_eq(k, id)
        {
            return v.clone();
        }
        let v = Arc::new(crate::auth::policy_identity(id));
        *memo = Some((id.clone(), v.clone()));
        v
    }

    /// Drops what is kept: a request without an identity (signed out, or its session
    /// refused) leaves nothing of the last one behind.
    fn clear(&self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// The request after step 1: canonical host and path, and the query as received.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    /// The port the client named in Host/:authority, kept for the forwarded Host header.
    pub port: Option<u16>,
    pub path: String,
    pub query: Option<String>,
}

/// The outcome of step 5, with the reason recorded for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    fn label(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// Headers a client may never set: forwarding and identity headers the gateway owns, and
/// request-override headers some frameworks honour (`X-Original-URL`, method overrides).
/// Compared after lower-casing and mapping `_` to `-`, because CGI-style upstreams read
/// `X_Forwarded_For` and `X-Forwarded-For` as the same variable.
const RESERVED_EXACT: &[&str] = &[
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-request-id",
    "x-correlation-id",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-original-host",
    "x-original-method",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-remote-user",
    "remote-user",
    "x-user",
    "x-email",
    "x-groups",
    "x-webauth-user",
    "x-authenticated-user",
    "x-authenticated-groups",
    "proxy-authorization",
];
const RESERVED_PREFIXES: &[&str] = &[
    "x-forwarded-",
    "x-sekisho-",
    "sekisho-",
    "x-auth-request-",
    "x-remote-",
    "x-ms-client-principal",
    "x-goog-authenticated-user-",
    "x-amzn-oidc-",
    "x-pomerium-",
    "x-vouch-",
];

/// Whether a client-sent header must be removed before forwarding.
pub fn is_reserved_header(name: &HeaderName) -> bool {
    let s = name.as_str();
    let owned;
    let norm: &str = if s.contains('_') {
        owned = s.replace('_', "-");
        &owned
    } else {
        s
    };
    RESERVED_EXACT.contains(&norm)
        || RESERVED_PREFIXES.iter().any(|p| norm.starts_with(p))
        // `Transfer_Encoding`, `Content_Length`, `Connection_` …: servers that map `_` to `-`
        // would read a second framing next to the real one.
        || (s.contains('_') && (FRAMING.contains(&norm) || HOP_BY_HOP.contains(&norm)))
}

/// Headers that frame the message or name the host.
const FRAMING: &[&str] = &["content-length", "transfer-encoding", "host", "expect"];
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "http2-settings",
];

pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    name.as_str() == "transfer-encoding" || HOP_BY_HOP.contains(&name.as_str())
}

/// Header names listed in `Connection` (they are hop-by-hop for this connection only).
/// `keep-alive` and `close`, in nearly every HTTP/1.1 request, are left out: the first names
/// a header that is hop-by-hop anyway and the second names none, so the usual answer is an
/// empty list, made without allocating. (`HeaderName::from_bytes` folds case itself.)
fn connection_nominated(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close"))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// A websocket upgrade — the only protocol switch the gateway tunnels. Any other `Upgrade`
/// (notably `h2c`, which would let a client speak HTTP/2 straight to the upstream, past
/// per-request routing and policy) is dropped as a hop-by-hop header and the request is
/// forwarded as a plain request.
fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().get_all(header::UPGRADE).iter().count() == 1
        && req
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && connection_nominated(req.headers())
            .iter()
            .any(|n| n == "upgrade")
}

/// Step 1: refuse ambiguous requests and compute the canonical target.
fn normalise(req: &Request<Incoming>, conn: &ConnInfo) -> Result<Target, Refusal> {
    let headers = req.headers();
    if req.method() == Method::CONNECT {
        return Err(Refusal::BadRequest("connect_method"));
    }
    // Framing: hyper has chosen one reading already; refuse requests where another
    // parser could choose a different one (request smuggling).
    let cl = headers.get_all(header::CONTENT_LENGTH).iter().count();
    if cl > 1 {
        return Err(Refusal::BadRequest("duplicate_content_length"));
    }
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    if let Some(first) = te.next() {
        if cl > 0 {
            return Err(Refusal::BadRequest("content_length_and_transfer_encoding"));
        }
        let only_chunked = te.next().is_none() && first.as_bytes().eq_ignore_ascii_case(b"chunked");
        if !only_chunked || req.version() != Version::HTTP_11 {
            return Err(Refusal::BadRequest("transfer_encoding"));
        }
    }
    // Host: exactly one, and equal to the request target's authority if it has one.
    let mut hosts = headers.get_all(header::HOST).iter();
    let first_host = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::BadRequest("duplicate_host"));
    }
    let header_host = first_host.map(|h| h.to_str().map_err(|_| Refusal::BadRequest("bad_host")));
    let header_host = header_host.transpose()?;
    let uri_authority = req.uri().authority().map(|a| a.as_str());
    let authority = match (uri_authority, header_host) {
        (Some(a), Some(h)) => {
            if canonical_host(a) != canonical_host(h) || port_of(a) != port_of(h) {
                return Err(Refusal::BadRequest("host_authority_mismatch"));
            }
            a
        }
        (Some(a), None) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(Refusal::BadRequest("missing_host")),
    };
    if let Some(scheme) = req.uri().scheme_str() {
        let expected = if conn.tls { "https" } else { "http" };
        if !scheme.eq_ignore_ascii_case(expected) {
            return Err(Refusal::BadRequest("scheme_mismatch"));
        }
    }
    let host = canonical_host(authority).ok_or(Refusal::BadRequest("bad_host"))?;
    // On TLS listeners the Host must name the site the connection was made for.
    if let Some(sni) = &conn.sni_host
        && *sni != host
    {
        return Err(Refusal::Misdirected);
    }
    let path = canon::canonicalize(req.uri().path()).map_err(|e| Refusal::BadRequest(e.code()))?;
    let query = req.uri().query().map(str::to_owned);
    if let Some(q) = &query
        && q.bytes().any(|b| b.is_ascii_control())
    {
        return Err(Refusal::BadRequest("bad_query"));
    }
    Ok(Target {
        host,
        port: port_of(authority),
        path,
        query,
    })
}

fn port_of(authority: &str) -> Option<u16> {
    let after = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    after.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

fn request_id(headers: &HeaderMap, trusted: bool) -> String {
    if trusted
        && let Some(v) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return v.to_owned();
    }
    // Encoded straight into a buffer rather than through `Display` (≈ 55 instructions per
    // request less; most of the ≈ 800 a request ID costs is reading the clock and the
    // random bits of a version 7 UUID).
    let mut buf = uuid::Uuid::encode_buffer();
    uuid::Uuid::now_v7()
        .hyphenated()
        .encode_lower(&mut buf)
        .to_owned()
}

/// Handles one request. Never fails: every outcome is a response.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let snap = gw.snapshot.load_full();
    let trusted = snap
        .config
        .trusted_proxies
        .iter()
        .any(|n| n.contains(&crate::config::canonical_ip(conn.peer.ip())));
    let rid = request_id(req.headers(), trusted);

    // 1. parse & normalise
    let target = match normalise(&req, &conn) {
        Ok(t) => t,
        Err(refusal) => {
            let reason = match &refusal {
                Refusal::BadRequest(r) => r,
                Refusal::Misdirected => "misdirected",
                _ => "other",
            };
            gw.metrics
                .rejected
                .get_or_create(&RejectLabels {
                    listener: conn.listener.clone(),
                    reason,
                })
                .inc();
            tracing::info!(
                target: "sekisho::access",
                request_id = %rid,
                listener = %conn.listener,
                client.ip = %conn.peer_ip,
                status = refusal.status().as_u16(),
                reason,
                "request refused before routing"
            );
            let close = matches!(refusal, Refusal::BadRequest(_));
            return Ok(respond::refusal(&refusal, req.headers(), &rid, close));
        }
    };

    let now = (gw.clock)();
    // 4 (early). device: checked again on every request; whoami shows it too.
    let device = match &snap.devices {
        Some(p) => {
            let assertion = p
                .assertion_header()
                .and_then(|h| req.headers().get(h))
                .and_then(|v| v.to_str().ok());
            crate::device::evaluate(p, snap.generation, &conn.device, assertion, now)
        }
        None => crate::device::DeviceView::none(),
    };

    if !matches!(device.status, "none" | "verified") {
        crate::audit::record_later(
            gw.audit.as_ref(),
            Event::DeviceCertFailure(sekisho_audit::record::DeviceCertFailureEvent {
                request_id: Some(rid.clone()),
                listener: conn.listener.clone(),
                client_ip: conn.peer_ip.clone(),
                fingerprint: device.fingerprint.clone(),
                device_id: None,
                reason: device.status.to_owned(),
            }),
        );
    }

    // The gateway's own endpoints under /.sekisho/ on every route host.
    if target.path.starts_with("/.sekisho/") && snap.routes.has_host(&conn.listener, &target.host) {
        // Boxed: login, callback and logout make a future of ≈ 14 KB, and inline it would set
        // the size of every request's future (see `handle_future_stays_small`).
        let out = Box::pin(crate::auth::reserved(
            &snap, &conn, req, &target, &device, &rid, now,
        ))
        .await;
        tracing::info!(
            target: "sekisho::access",
            request_id = %rid,
            listener = %conn.listener,
            client.ip = %conn.peer_ip,
            event = out.event,
            detail = out.detail,
            status = out.response.status().as_u16(),
            "gateway endpoint"
        );
        let mut response = out.response;
        if let Some(event) = auth_event(
            &snap,
            &conn,
            &rid,
            out.event,
            out.detail,
            out.identity.as_deref(),
            &device,
        ) && !crate::audit::record(gw.audit.as_ref(), event, &rid).await
        {
            response =
                respond::refusal(&Refusal::Unavailable, &http::HeaderMap::new(), &rid, false);
        }
        return Ok(response);
    }

    let mut rec = AccessRecord::new(&snap, &conn, &target, req.method(), &rid, &device, now);

    // 2. route
    let Some(route) = snap
        .routes
        .lookup(&conn.listener, &target.host, &target.path)
        .cloned()
    else {
        let resp = respond::refusal(&Refusal::NotFound, req.headers(), &rid, false);
        return Ok(conclude(
            &gw,
            &conn,
            None,
            &rid,
            rec.denied(None, "no_route", &[], resp),
            start,
            "no_route",
        )
        .await);
    };
    rec.route(&route, snap.config.policies.as_deref());

    // 3. identity: only where a policy will look at it.
    let (identity, set_cookies) = match (&route.access, snap.identity.as_deref()) {
        (Access::Policy(_), Some(rt)) => {
            match crate::auth::identify(rt, req.headers(), &rid, now, Some(&conn.session)).await {
                crate::auth::IdentityStep::Known(i, c) => (i, c),
                crate::auth::IdentityStep::Refused(resp, why) => {
                    return Ok(conclude(
                        &gw,
                        &conn,
                        Some(&route),
                        &rid,
                        rec.denied(None, why, &[], resp),
                        start,
                        why,
                    )
                    .await);
                }
            }
        }
        _ => (None, Vec::new()),
    };
    rec.user(identity.as_deref());

    // 5. decide.
    let policy_identity = match &identity {
        Some(id) => Some(conn.policy.get(id)),
        None => {
            conn.policy.clear();
            None
        }
    };
    let d = decide(
        &snap,
        &route,
        &target,
        &conn,
        req.method(),
        policy_identity.as_deref(),
        &device,
        now,
    );
    if let Some(refusal) = &d.refusal {
        // A browser that needs to sign in (or sign in again) is sent to the identity provider.
        let login = match (refusal, snap.identity.as_deref()) {
            (Refusal::LoginRequired | Refusal::StepUp(_), Some(rt)) => {
                crate::auth::start_login(
                    rt,
                    &snap,
                    &conn,
                    &target,
                    req.method(),
                    req.headers(),
                    d.step_up.as_ref(),
                    &rid,
                    now,
                )
                .await
            }
            _ => None,
        };
        let mut resp =
            login.unwrap_or_else(|| respond::refusal(refusal, req.headers(), &rid, false));
        for c in set_cookies {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        let why = d.why;
        return Ok(conclude(
            &gw,
            &conn,
            Some(&route),
            &rid,
            rec.denied(d.rule.clone(), why, &d.reasons, resp),
            start,
            why,
        )
        .await);
    }
    if route.kind == RouteKind::ScreenTransfer && carries_file(req.headers()) {
        let resp = respond::refusal(&Refusal::Forbidden(vec![]), req.headers(), &rid, false);
        let why = "screen_transfer.file";
        return Ok(conclude(
            &gw,
            &conn,
            Some(&route),
            &rid,
            rec.denied(None, why, &[], resp),
            start,
            why,
        )
        .await);
    }

    // 6. audit: the allow is on record before anything is forwarded.
    let Ok(outcome) = crate::audit::record_allowed(
        gw.audit.as_ref(),
        rec.event(Decision::Allow, d.rule.clone(), d.why, &d.reasons, None),
        &rid,
    )
    .await
    else {
        let resp = respond::refusal(&Refusal::Unavailable, req.headers(), &rid, false);
        finish(
            &gw,
            &conn,
            Some(&route),
            &rid,
            Decision::Deny,
            resp.status(),
            start,
            "audit_unavailable",
        );
        return Ok(resp);
    };

    // 7. forward
    let tunnel_check = is_upgrade(&req).then(|| {
        let user = identity.as_ref().map(|id| conn.audit.user(id));
        tunnel_check(
            &gw,
            &conn,
            &target,
            req.method(),
            &rid,
            (policy_identity.clone(), user),
        )
    });
    let who = UpstreamIdentity {
        identity: identity.as_deref(),
        device_id: device.id.as_deref(),
        now,
        tunnel_check,
    };
    let bytes_in = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut resp = forward(
        &gw,
        &snap,
        &conn,
        &route,
        &target,
        &rid,
        trusted,
        &who,
        bytes_in.clone(),
        req,
    )
    .await;
    for c in set_cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    finish(
        &gw,
        &conn,
        Some(&route),
        &rid,
        Decision::Allow,
        resp.status(),
        start,
        d.why,
    );
    // The outcome (status, bytes, duration) is recorded when the response body ends: in the
    // access record itself if that is not written yet, else as a record of its own.
    let status = resp.status().as_u16();
    let audit = gw.audit.clone();
    let request_id = rid.clone();
    // The upstream that answered; when none did (502/504), the route's first, where the
    // request was headed.
    let upstream = match resp.extensions().get::<AnsweredBy>() {
        Some(a) => Some(a.0.to_string()),
        None => route.upstreams.first().map(|u| u.to_string()),
    };
    let done: Box<dyn FnOnce(u64) + Send + Sync> = Box::new(move |bytes_out| {
        let result = sekisho_audit::AccessResultEvent {
            request_id,
            upstream,
            upstream_status: (status != 502 && status != 504).then_some(status),
            status,
            bytes_in: bytes_in.load(std::sync::atomic::Ordering::Relaxed),
            bytes_out,
            duration_us: start.elapsed().as_micros() as u64,
            error: None,
        };
        crate::audit::finish_access(audit.as_ref(), outcome, result);
    });
    let (parts, body) = resp.into_parts();
    let body = crate::audit::Counted::new(
        body,
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
        Some(done),
    )
    .boxed();
    Ok(Response::from_parts(parts, body))
}

/// The single completion point for requests that are not forwarded: record, measure, log.
/// If the trail cannot take the record, the answer becomes 503 (fail closed).
async fn conclude(
    gw: &Gateway,
    conn: &ConnInfo,
    route: Option<&Route>,
    rid: &str,
    (event, resp): (Event, Response<Body>),
    start: Instant,
    why: &'static str,
) -> Response<Body> {
    let resp = if crate::audit::record(gw.audit.as_ref(), event, rid).await {
        resp
    } else {
        respond::refusal(&Refusal::Unavailable, &http::HeaderMap::new(), rid, false)
    };
    finish(
        gw,
        conn,
        route,
        rid,
        Decision::Deny,
        resp.status(),
        start,
        why,
    );
    resp
}

/// Builds the access record as the pipeline learns more about the request.
struct AccessRecord<'c> {
    event: sekisho_audit::AccessEvent,
    memo: &'c RecordMemo,
    /// The device block is made last, when the route (and so the facts its policy tests)
    /// is known.
    device: &'c crate::device::DeviceView,
    now: jiff::Timestamp,
    posture: sekisho_policy::PostureFacts,
}

impl<'c> AccessRecord<'c> {
    fn new(
        snap: &Snapshot,
        conn: &'c ConnInfo,
        target: &Target,
        method: &Method,
        rid: &str,
        device: &'c crate::device::DeviceView,
        now: jiff::Timestamp,
    ) -> AccessRecord<'c> {
        AccessRecord {
            event: sekisho_audit::AccessEvent {
                request_id: rid.to_owned(),
                zone: conn.zone.clone(),
                listener: conn.listener.clone(),
                method: method_text(method),
                host: target.host.clone(),
                path: target.path.clone(),
                // The query may carry personal data or tokens: never recorded.
                query: None,
                client_ip: conn.peer_ip.clone(),
                policy_version: snap
                    .config
                    .policies
                    .as_deref()
                    .map(|p| p.version().to_owned())
                    .unwrap_or_default(),
                ..Default::default()
            },
            memo: &conn.audit,
            device,
            now,
            posture: sekisho_policy::PostureFacts::NONE,
        }
    }

    fn route(&mut self, route: &Route, policies: Option<&sekisho_policy::PolicySet>) {
        self.event.route = Some(route.name.clone());
        self.event.zone = route.zone.clone();
        if let (Some(set), Some(target)) = (policies, route.target) {
            self.posture = set.posture_facts(target);
        }
    }

    fn user(&mut self, id: Option<&sekisho_identity::VerifiedIdentity>) {
        self.event.user = id.map(|id| self.memo.user(id));
    }

    /// The finished record. By value: each request makes exactly one decision record, so the
    /// event is moved out rather than cloned.
    fn event(
        self,
        decision: Decision,
        rule: Option<String>,
        why: &'static str,
        reasons: &[&'static sekisho_policy::Reason],
        status: Option<u16>,
    ) -> Event {
        let mut e = self.event;
        e.decision = match decision {
            Decision::Allow => sekisho_audit::Decision::Allow,
            Decision::Deny => sekisho_audit::Decision::Deny,
        };
        e.rule = rule;
        e.device = self.memo.device(self.device, self.now, self.posture);
        e.reasons = self.memo.reasons(why, reasons);
        e.status = status;
        Event::Access(Box::new(e))
    }

    fn denied(
        self,
        rule: Option<String>,
        why: &'static str,
        reasons: &[&'static sekisho_policy::Reason],
        resp: Response<Body>,
    ) -> (Event, Response<Body>) {
        (
            self.event(
                Decision::Deny,
                rule,
                why,
                reasons,
                Some(resp.status().as_u16()),
            ),
            resp,
        )
    }
}

/// The method for the record, without a copy for the standard ones.
fn method_text(m: &Method) -> sekisho_audit::Text {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    match STANDARD.into_iter().find(|s| *s == m.as_str()) {
        Some(s) => s.into(),
        None => m.as_str().to_owned().into(),
    }
}

/// The parts of a connection's access records that repeat from request to request — the
/// user of its session, its device, the reasons of the rule that decided — each kept with
/// its JSON made once ([`sekisho_audit::Frozen`]) and used again while what it was made
/// from is the same. Serialising them for every request was most of what the audit trail
/// cost the request path.
#[derive(Debug, Default)]
pub struct RecordMemo {
    /// Keyed also by `auth_time` as a time: the block holds it as text.
    user: MemoSlot<Option<jiff::Timestamp>, sekisho_audit::UserInfo>,
    /// Keyed by the device step's whole view, the second the fact ages count to and the
    /// facts the route's policy tests.
    device: MemoSlot<
        (crate::device::DeviceView, i64, sekisho_policy::PostureFacts),
        sekisho_audit::DeviceInfo,
    >,
    /// Keyed by the rule's reasons (compared by identity: they live as long as the program)
    /// or, when it gave none, the gateway's reason code.
    reasons:
        MemoSlot<(&'static str, Vec<&'static sekisho_policy::Reason>), Vec<sekisho_audit::Reason>>,
}

/// One remembered block and what it was made from.
type MemoSlot<K, T> = Mutex<Option<(K, Frozen<T>)>>;

/// The block in `slot` when `same` says it was made from what this request has, else the
/// one `make` gives (which is remembered).
fn memoised<K, T>(
    slot: &MemoSlot<K, T>,
    same: impl FnOnce(&K, &T) -> bool,
    make: impl FnOnce() -> (K, T),
) -> Frozen<T> {
    let mut memo = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((k, v)) = memo.as_ref()
        && same(k, v)
    {
        return v.clone();
    }
    let (k, v) = make();
    let v = Frozen::new(v);
    *memo = Some((k, v.clone()));
    v
}

impl RecordMemo {
    fn user(&self, id: &sekisho_identity::VerifiedIdentity) -> Frozen<sekisho_audit::UserInfo> {
        memoised(
            &self.user,
            |auth_time, u| {
                *auth_time == id.auth_time()
                    && u.sub == id.sub()
                    && u.email.as_deref() == id.email()
                    && u.groups == id.groups()
                    && u.amr == id.amr()
                    && u.acr.as_deref() == id.acr()
            },
            || (id.auth_time(), user_info(id)),
        )
    }

    /// The device block (see [`device_info`]). `None` when no certificate was presented.
    fn device(
        &self,
        device: &crate::device::DeviceView,
        now: jiff::Timestamp,
        used: sekisho_policy::PostureFacts,
    ) -> Option<Frozen<sekisho_audit::DeviceInfo>> {
        (device.status != "none").then(|| {
            memoised(
                &self.device,
                |(view, second, u), _| *second == now.as_second() && *u == used && view == device,
                || {
                    (
                        (device.clone(), now.as_second(), used),
                        device_info(device, now, used),
                    )
                },
            )
        })
    }

    fn reasons(
        &self,
        why: &'static str,
        reasons: &[&'static sekisho_policy::Reason],
    ) -> Frozen<Vec<sekisho_audit::Reason>> {
        memoised(
            &self.reasons,
            |(w, rs), _| {
                rs.len() == reasons.len()
                    && rs.iter().zip(reasons).all(|(a, b)| std::ptr::eq(*a, *b))
                    && (!reasons.is_empty() || *w == why)
            },
            || {
                let block = if reasons.is_empty() {
                    vec![sekisho_audit::Reason {
                        code: why.into(),
                        ja: None,
                        en: None,
                    }]
                } else {
                    reasons
                        .iter()
                        .map(|r| sekisho_audit::Reason {
                            code: r.code.into(),
                            ja: Some(r.ja.into()),
                            en: Some(r.en.into()),
                        })
                        .collect()
                };
                ((why, reasons.to_vec()), block)
            },
        )
    }
}

/// The device block of an access record. A presented certificate is on record whether or
/// not it verified: its state is the first fact. Then the posture facts the route's policy
/// tests (`used`: "the posture facts used"), each that is known with its age in seconds at
/// `now` (how old the MDM's or the assertion's observation was when the decision was made)
/// — and, when the policy tests any, when the device last checked in: a tested fact that is
/// unknown (not reported, or too old to trust) is listed as `unknown` without an age, and the
/// check-in says why. Facts the policy does not
/// test are not the decision's evidence and stay out (each is bytes to hash, write and
/// keep for a year on every request).
fn device_info(
    device: &crate::device::DeviceView,
    now: jiff::Timestamp,
    used: sekisho_policy::PostureFacts,
) -> sekisho_audit::DeviceInfo {
    use sekisho_audit::{PostureFact, Text};
    use sekisho_policy::{Fact, PostureFacts as F};
    // The check-in explains a fact missing for staleness, so it comes with any other.
    let used = if used.is_empty() {
        used
    } else {
        used.union(F::LAST_CHECK_IN)
    };
    // What a fact looks like on record, if the policy tests it: its value and age, or
    // `unknown` with no age (not reported, or too old to trust) — listed all the same, so
    // that "unknown" is never confused with "not tested".
    let fact = |which: F, name: &'static str, f: &dyn Fn() -> Option<(Text, jiff::Timestamp)>| {
        if !used.contains(which) {
            return None;
        }
        let (value, age_secs) = match f() {
            Some((value, observed_at)) => (
                value,
                Some(
                    now.as_second()
                        .saturating_sub(observed_at.as_second())
                        .max(0) as u64,
                ),
            ),
            None => (Text::from("unknown"), None),
        };
        Some(PostureFact {
            name: name.into(),
            value,
            source: None,
            age_secs,
        })
    };
    fn known<T>(f: &Fact<T>, text: impl FnOnce(&T) -> Text) -> Option<(Text, jiff::Timestamp)> {
        match f {
            Fact::Known { value, observed_at } => Some((text(value), *observed_at)),
            Fact::Unknown => None,
        }
    }
    let flag = |v: &bool| Text::from(if *v { "true" } else { "false" });
    let d = &device.input;
    let posture = std::iter::once(Some(PostureFact {
        name: "certificate".into(),
        value: device.status.into(),
        source: None,
        age_secs: None,
    }))
    .chain([
        fact(F::MANAGED, "managed", &|| known(&d.managed, flag)),
        fact(F::OWNERSHIP, "ownership", &|| {
            known(&d.ownership, |o| {
                match o {
                    sekisho_policy::Ownership::Corporate => "corporate",
                    sekisho_policy::Ownership::Byod => "byod",
                }
                .into()
            })
        }),
        fact(F::COMPLIANT, "compliant", &|| known(&d.compliant, flag)),
        fact(F::OS, "os", &|| known(&d.os, |v| v.clone().into())),
        fact(F::OS_VERSION, "os_version", &|| {
            known(&d.os_version, |v| v.clone().into())
        }),
        fact(F::DISK_ENCRYPTION, "disk_encryption", &|| {
            known(&d.disk_encryption, flag)
        }),
        fact(F::SCREEN_LOCK, "screen_lock", &|| {
            known(&d.screen_lock, flag)
        }),
        fact(F::FIREWALL, "firewall", &|| known(&d.firewall, flag)),
        fact(F::ANTIVIRUS, "antivirus", &|| known(&d.antivirus, flag)),
        fact(F::EDR, "edr", &|| known(&d.edr, flag)),
        fact(F::LAST_CHECK_IN, "last_check_in", &|| {
            known(&d.last_check_in, |t| t.to_string().into())
        }),
        fact(F::TAGS, "tags", &|| known(&d.tags, |t| t.join(",").into())),
    ])
    .flatten()
    .collect();
    sekisho_audit::DeviceInfo {
        id: device.id.clone().unwrap_or_default(),
        fingerprint: device.fingerprint.clone(),
        posture,
    }
}

fn user_info(id: &sekisho_identity::VerifiedIdentity) -> sekisho_audit::UserInfo {
    sekisho_audit::UserInfo {
        sub: id.sub().to_owned(),
        email: id.email().map(str::to_owned),
        groups: id.groups().to_vec(),
        amr: id.amr().to_vec(),
        acr: id.acr().map(str::to_owned),
        auth_time: id.auth_time().map(|t| t.to_string()),
    }
}

/// The audit event for a sign-in, sign-in failure or sign-out at a gateway endpoint.
fn auth_event(
    snap: &Snapshot,
    conn: &ConnInfo,
    rid: &str,
    event: &str,
    detail: &str,
    identity: Option<&sekisho_identity::VerifiedIdentity>,
    device: &crate::device::DeviceView,
) -> Option<Event> {
    let issuer = snap
        .config
        .identity
        .as_ref()
        .and_then(|i| i.config.oidc.as_ref())
        .map(|o| o.issuer.to_string())
        .unwrap_or_default();
    let client_ip = conn.peer_ip.clone();
    match (event, identity) {
        ("login", Some(id)) => Some(Event::LoginSuccess(sekisho_audit::LoginEvent {
            request_id: rid.to_owned(),
            issuer,
            user: user_info(id),
            client_ip,
            device_id: device.id.clone(),
        })),
        ("login_failed", _) => Some(Event::LoginFailure(sekisho_audit::LoginFailureEvent {
            request_id: rid.to_owned(),
            issuer,
            user_hint: None,
            client_ip,
            reason: detail.to_owned(),
        })),
        ("logout", _) => Some(Event::Logout(sekisho_audit::SessionEvent {
            request_id: rid.to_owned(),
            sub: String::new(),
            client_ip,
            outcome: detail.to_owned(),
        })),
        _ => None,
    }
}

/// What step 5 decided.
struct Decided {
    why: &'static str,
    refusal: Option<Refusal>,
    step_up: Option<sekisho_policy::StepUp>,
    rule: Option<String>,
    reasons: Vec<&'static sekisho_policy::Reason>,
}

/// Step 5: the zone floor AND the route policy decide; public routes are allowed.
/// Returns the decision, its reason code, and the refusal to answer with (if any).
#[expect(
    clippy::too_many_arguments,
    reason = "one step of the pipeline, given the pieces it reads"
)]
fn decide(
    snap: &Snapshot,
    route: &Route,
    target: &Target,
    conn: &ConnInfo,
    method: &Method,
    identity: Option<&sekisho_policy::Identity>,
    device: &crate::device::DeviceView,
    now: jiff::Timestamp,
) -> Decided {
    let Access::Policy(_) = &route.access else {
        return Decided {
            why: "public",
            refusal: None,
            step_up: None,
            rule: None,
            reasons: Vec::new(),
        };
    };
    let (Some(set), Some(policy_target)) = (snap.config.policies.as_deref(), route.target) else {
        // Cannot happen with a configuration that loaded; fail closed all the same.
        return Decided {
            why: "policy_unavailable",
            refusal: Some(Refusal::Forbidden(vec![])),
            step_up: None,
            rule: None,
            reasons: Vec::new(),
        };
    };
    let request = sekisho_policy::Request {
        method: method.as_str().into(),
        host: target.host.as_str().into(),
        path: target.path.as_str().into(),
        zone: route.zone.as_str().into(),
        route: route.name.as_str().into(),
        source_ip: crate::config::canonical_ip(conn.peer.ip()),
    };
    let input = sekisho_policy::Input {
        identity,
        device: Some(&device.input),
        request: &request,
        now,
    };
    let d = set.evaluate(policy_target, &input);
    let reasons: Vec<&'static sekisho_policy::Reason> = d.reasons.iter().collect();
    let rule = Some(d.rule.path.to_string());
    let why = d.reason_code();
    use sekisho_policy::Outcome;
    let (refusal, step_up) = match d.outcome {
        Outcome::Allow => (None, None),
        Outcome::Deny => (Some(Refusal::Forbidden(reasons.clone())), None),
        Outcome::LoginRequired => (Some(Refusal::LoginRequired), None),
        Outcome::DeviceCertificateRequired => {
            (Some(Refusal::DeviceRequired(reasons.clone())), None)
        }
        Outcome::StepUp(s) => (Some(Refusal::StepUp(reasons.clone())), Some(s)),
    };
    Decided {
        why,
        refusal,
        step_up,
        rule,
        reasons,
    }
}

/// Whether a request or response carries a file (refused on screen-transfer crossings,
/// where only the picture of a screen may cross, never data).
fn carries_file(headers: &HeaderMap) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    ct.starts_with("multipart/")
        || ct.starts_with("application/octet-stream")
        || headers
            .get(header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("attachment"))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one step of the pipeline, given the pieces it reads"
)]
fn finish(
    gw: &Gateway,
    conn: &ConnInfo,
    route: Option<&Route>,
    rid: &str,
    decision: Decision,
    status: http::StatusCode,
    start: Instant,
    why: &'static str,
) {
    let (route_name, zone) = match route {
        Some(r) => (r.name.as_str(), r.zone.as_str()),
        None => ("none", conn.zone.as_str()),
    };
    let elapsed = start.elapsed();
    gw.metrics.count_request(
        route.map(|r| &r.series),
        route_name,
        zone,
        status,
        decision == Decision::Allow,
        elapsed.as_secs_f64(),
    );
    tracing::info!(
        target: "sekisho::access",
        request_id = %rid,
        listener = %conn.listener,
        route = %route_name,
        zone = %zone,
        client.ip = %conn.peer_ip,
        decision = decision.label(),
        reason = why,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
}

/// Who the upstream is told about (step 7).
pub struct UpstreamIdentity<'a> {
    pub identity: Option<&'a sekisho_identity::VerifiedIdentity>,
    pub device_id: Option<&'a str>,
    pub now: jiff::Timestamp,
    /// For an upgrade: decides again, on the current configuration, whether the tunnel
    /// may stay open. `Some` exactly when the request is a websocket upgrade (`is_upgrade`):
    /// `forward` tunnels only then, so `None` here means no tunnel.
    pub tunnel_check: Option<TunnelCheck>,
}

/// Re-runs routing, the device step and the decision for an upgraded connection: `Some`
/// (the access record of the withdrawal) when it may no longer stay open.
pub type TunnelCheck = (
    Arc<Gateway>,
    Arc<dyn Fn(&Snapshot, jiff::Timestamp) -> Option<Event> + Send + Sync>,
);

fn tunnel_check(
    gw: &Arc<Gateway>,
    conn: &Arc<ConnInfo>,
    target: &Target,
    method: &Method,
    rid: &str,
    (identity, user): (
        Option<Arc<sekisho_policy::Identity>>,
        Option<sekisho_audit::Frozen<sekisho_audit::UserInfo>>,
    ),
) -> TunnelCheck {
    let conn = conn.clone();
    let target = target.clone();
    let method = method.clone();
    let rid = rid.to_owned();
    // The request is decided again as it would be now; a refusal is the access record of
    // the withdrawal: the same request ID, decision deny, the rule and reasons of now. The
    // record is made only then (every open tunnel is checked on every reload).
    let check = move |snap: &Snapshot, now: jiff::Timestamp| -> Option<Event> {
        let route = snap
            .routes
            .lookup(&conn.listener, &target.host, &target.path);
        let device = match (&snap.devices, route) {
            (Some(p), Some(_)) => {
                crate::device::evaluate(p, snap.generation, &conn.device, None, now)
            }
            _ => crate::device::DeviceView::none(),
        };
        // Still allowed: nothing to record. A route that is gone is a `no_route` refusal.
        let decided = match route {
            Some(route) => {
                let d = decide(
                    snap,
                    route,
                    &target,
                    &conn,
                    &method,
                    identity.as_deref(),
                    &device,
                    now,
                );
                d.refusal.as_ref()?;
                Some((route, d))
            }
            None => None,
        };
        let mut rec = AccessRecord::new(snap, &conn, &target, &method, &rid, &device, now);
        rec.event.user = user.clone();
        Some(match decided {
            Some((route, d)) => {
                rec.route(route, snap.config.policies.as_deref());
                rec.event(Decision::Deny, d.rule.clone(), d.why, &d.reasons, None)
            }
            None => rec.event(Decision::Deny, None, "no_route", &[], None),
        })
    };
    (gw.clone(), Arc::new(check))
}

/// Resolves when a tunnel's access is withdrawn by a configuration, CRL or inventory change,
/// once the withdrawal is on record (an auditor sees the allow, then the deny that closed
/// it). The tunnel closes even when the trail cannot take the record: closing is the safe
/// side, and the failing trail is reported where it fails.
async fn access_withdrawn((gw, check): TunnelCheck) {
    let mut generation = gw.generation.subscribe();
    loop {
        if generation.changed().await.is_err() {
            return std::future::pending().await;
        }
        let snap = gw.snapshot.load_full();
        if let Some(withdrawal) = check(&snap, (gw.clock)()) {
            if let Some(h) = gw.audit.as_ref()
                && let Err(e) = h.append(withdrawal).await
            {
                tracing::error!(error = %e, "the withdrawal of an upgraded connection could not be recorded");
            }
            return;
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one step of the pipeline, given the pieces it reads"
)]
async fn forward(
    gw: &Gateway,
    snap: &Snapshot,
    conn: &ConnInfo,
    route: &Arc<Route>,
    target: &Target,
    rid: &str,
    trusted: bool,
    who: &UpstreamIdentity<'_>,
    bytes_in: Arc<std::sync::atomic::AtomicU64>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let Some(pool) = snap.pools.get(&route.name) else {
        return respond::refusal(&Refusal::UpstreamUnavailable, req.headers(), rid, false);
    };
    // `handle` made the tunnel check exactly when the request is an upgrade: asked once.
    let upgrade = who.tunnel_check.is_some();
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    // Path: the canonical path, minus the prefix when the route strips it.
    let mut path = target.path.clone();
    if route.strip_prefix && route.path_prefix != "/" {
        let cut = route.path_prefix.trim_end_matches('/').len();
        path = path[cut.min(path.len())..].to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
    }
    let pq = match &target.query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };

    // The forwarding headers first, from the client's request as received.
    let peer_ip = &conn.peer_ip;
    let mut xff = std::borrow::Cow::Borrowed(peer_ip.as_str());
    let mut proto = if conn.tls { "https" } else { "http" };
    // The client's own value is passed on as it is (shared, not copied) when it is text.
    let mut fwd_host = parts
        .headers
        .get(header::HOST)
        .filter(|v| v.to_str().is_ok())
        .cloned()
        .or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        })
        .or_else(|| HeaderValue::from_str(&target.host).ok());
    if trusted {
        if let Some(prev) = joined(&parts.headers, "x-forwarded-for") {
            xff = format!("{prev}, {peer_ip}").into();
        }
        match parts
            .headers
            .get("x-forwarded-proto")
            .map(HeaderValue::as_bytes)
        {
            Some(b"https") => proto = "https",
            Some(b"http") => proto = "http",
            _ => {}
        }
        if let Some(h) = parts.headers.get("x-forwarded-host")
            && h.to_str().ok().and_then(canonical_host).is_some()
        {
            fwd_host = Some(h.clone());
        }
    }
    let upgrade_value = if upgrade {
        parts.headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    // A refusal from here on still answers in the language and format the client asked for.
    let asked = respond::Asked::of(&parts.headers);

    // The upstream request carries the client's headers minus those it may not pass on:
    // removed from the map hyper parsed rather than copied into a new one (usually only
    // `Host` goes, which the gateway sets itself). A removal may change the order of
    // differently named fields (`HeaderMap::remove` swaps the last entry into the gap); the
    // values of one name keep theirs, which is the order that has meaning (RFC 9110 §5.3).
    let mut headers = std::mem::take(&mut parts.headers);
    headers.remove(header::HOST);
    let nominated = connection_nominated(&headers);
    // Every identity-looking header from the client goes, whether or not this gateway signs
    // anyone in: an upstream behind a public route may still trust such headers. Removed
    // before the gateway's own are set below.
    let identity_names = crate::auth::identity_header_names(snap);
    let unwanted = |name: &HeaderName| {
        is_hop_by_hop(name)
            || nominated.contains(name)
            || is_reserved_header(name)
            || sekisho_identity::is_identity_header(name.as_str(), &identity_names)
    };
    // Only the names to drop are collected: usually none, so nothing is allocated.
    let names: Vec<HeaderName> = headers.keys().filter(|n| unwanted(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
    // An HTTP/2 upstream is addressed by `:authority`, made from the pool's base URI.
    if !route.upstream_http2 {
        let host = match target.port {
            Some(p) => HeaderValue::from_str(&format!("{}:{p}", target.host)),
            None => HeaderValue::from_str(&target.host),
        };
        if let Ok(v) = host {
            headers.insert(header::HOST, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    if let Some(v) = fwd_host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), v);
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        headers.insert(HeaderName::from_static("x-request-id"), v);
    }
    crate::auth::upstream_identity(
        snap,
        &conn.assertion,
        &mut headers,
        who.identity,
        &route.name,
        who.device_id,
        rid,
        who.now,
    );
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = upgrade_value {
            headers.insert(header::UPGRADE, u);
        }
    }

    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(pq)
        .version(if route.upstream_http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        });
    if let Some(h) = up.headers_mut() {
        *h = headers;
    }
    let idle = route.timeouts.idle;
    // Errors from the client's side of the body are marked, so a malformed or truncated
    // upload is answered 400 (the client's fault), not 502.
    let body: Body = IdleTimeout::new(body, idle)
        .map_err(|e| -> crate::respond::BoxError { Box::new(ClientBodyError(e)) })
        .boxed();
    let body: Body = crate::audit::Counted::new(body, bytes_in, None).boxed();
    let up = match up.body(body) {
        Ok(r) => r,
        Err(_) => {
            return respond::refusal(
                &Refusal::BadRequest("unforwardable"),
                &asked.headers(),
                rid,
                true,
            );
        }
    };

    let started = Instant::now();
    let result = pool.forward(up).await;
    gw.metrics.observe_upstream(
        &route.series,
        &route.name,
        &route.zone,
        started.elapsed().as_secs_f64(),
    );
    let (mut resp, answered) = match result {
        Ok(r) => r,
        Err(e) => {
            gw.metrics
                .upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    route: route.name.clone(),
                    kind: e.kind(),
                })
                .inc();
            tracing::warn!(request_id = %rid, route = %route.name, error.kind = e.kind(), error = ?e, "upstream failed");
            let (refusal, close) = match e {
                ForwardError::Timeout => (Refusal::UpstreamTimeout, false),
                ForwardError::ClientBody(_) => (Refusal::BadRequest("bad_request_body"), true),
                _ => (Refusal::UpstreamUnavailable, false),
            };
            return respond::refusal(&refusal, &asked.headers(), rid, close);
        }
    };

    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let (Some(client_upgrade), Some(check)) = (client_upgrade, who.tunnel_check.clone()) {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            let rid = rid.to_owned();
            tokio::spawn(async move {
                match (client_upgrade.await, upstream_upgrade.await) {
                    (Ok(c), Ok(u)) => {
                        let mut c = hyper_util::rt::TokioIo::new(c);
                        let mut u = hyper_util::rt::TokioIo::new(u);
                        let withdrawn = access_withdrawn(check);
                        tokio::select! {
                            r = tokio::io::copy_bidirectional(&mut c, &mut u) => {
                                if let Err(e) = r {
                                    tracing::debug!(request_id = %rid, error = %e, "upgraded connection ended");
                                }
                            }
                            () = withdrawn => {
                                tracing::info!(request_id = %rid, "upgraded connection closed: access withdrawn");
                            }
                        }
                    }
                    _ => tracing::debug!(request_id = %rid, "upgrade did not complete"),
                }
            });
        } else {
            // An upstream that switches protocols without being asked is broken.
            return respond::refusal(&Refusal::UpstreamUnavailable, &asked.headers(), rid, false);
        }
    }

    if route.kind == RouteKind::ScreenTransfer && carries_file(resp.headers()) {
        return respond::refusal(&Refusal::Forbidden(vec![]), &asked.headers(), rid, false);
    }

    let (mut rparts, rbody) = resp.into_parts();
    let nominated = connection_nominated(&rparts.headers);
    let keep_upgrade = rparts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    // Only the names to drop are collected: usually none, so nothing is allocated.
    let drop: Vec<HeaderName> = rparts
        .headers
        .keys()
        .filter(|name| {
            let hop = is_hop_by_hop(name) || nominated.contains(name);
            let upgrade_hdr =
                keep_upgrade && (*name == header::CONNECTION || *name == header::UPGRADE);
            hop && !upgrade_hdr
        })
        .cloned()
        .collect();
    for name in drop {
        rparts.headers.remove(&name);
    }
    // Sekisho's cookies are Sekisho's: an upstream may not set, replace or delete them, even
    // on a route that does not sign anyone in (the same browser holds the session).
    let cookie_name = snap
        .config
        .identity
        .as_ref()
        .map_or("__Host-sekisho", |s| s.config.session.cookie_name.as_str());
    let planted = sekisho_identity::strip_sekisho_set_cookies(&mut rparts.headers, cookie_name);
    if planted > 0 {
        tracing::warn!(request_id = %rid, route = %route.name, count = planted, "upstream tried to set the gateway's own cookies; removed");
    }
    if let Some(zone) = snap.config.zones.get(&route.zone)
        && let Some(cc) = &zone.response.cache_control
        && let Ok(v) = HeaderValue::from_str(cc)
    {
        rparts.headers.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(rid) {
        rparts
            .headers
            .insert(HeaderName::from_static("x-request-id"), v);
    }
    // Which upstream answered, for the audit record's outcome.
    if let Some(name) = pool.name(answered) {
        rparts.extensions.insert(AnsweredBy(name));
    }
    Response::from_parts(rparts, IdleTimeout::new(rbody, idle).boxed())
}

/// Response extension: the upstream that answered (round robin and failover may pick any of
/// the route's upstreams).
#[derive(Clone)]
struct AnsweredBy(Arc<str>);

/// An error reading the client's request body (malformed chunking, a client that went
/// away, an idle timeout on the upload).
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(pub crate::respond::BoxError);

fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what an async function returns, without calling it.
    fn future_size<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn request_ids_are_fresh_v7_uuids_unless_a_trusted_proxy_gave_one() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("front-42"));
        let mine = request_id(&h, false);
        let id = uuid::Uuid::parse_str(&mine).expect("a UUID");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(mine, id.hyphenated().to_string(), "lower-case, hyphenated");
        assert_ne!(request_id(&h, false), mine, "a new one per request");
        assert_eq!(request_id(&h, true), "front-42");
    }

    /// Every request's future is as large as the largest step it may take, and its bytes
    /// are copied several times per request (into an HTTP/2 stream's task, into hyper's
    /// HTTP/1 dispatcher). The login flow and the session refresh made it 16 KB and cost
    /// HTTP/2 requests ≈ 6 % of their throughput (docs/performance.md, 2026-12-05 evening);
    /// they are boxed where they are awaited. If this fails, box the new large step too.
    #[test]
    fn handle_future_stays_small() {
        let size = future_size(handle);
        assert!(size <= 6 * 1024, "the request future is {size} bytes");
    }

    fn facts(d: &sekisho_audit::DeviceInfo) -> Vec<(&str, &str, Option<u64>)> {
        d.posture
            .iter()
            .map(|f| (&*f.name, &*f.value, f.age_secs))
            .collect()
    }

    /// The record carries the posture facts the route's policy tests, with their ages, and
    /// when the device last checked in — not the rest of what the inventory knows. A policy
    /// that tests none gets the certificate's state alone.
    #[test]
    fn a_record_carries_the_posture_facts_its_policy_tests() {
        use sekisho_policy::{Fact, PostureFacts as F};
        let now: jiff::Timestamp = "2026-12-04T09:00:00Z".parse().unwrap();
        let seen = now - jiff::SignedDuration::from_mins(30);
        let view = crate::device::DeviceView {
            input: sekisho_policy::Device {
                managed: Fact::known(true, seen),
                compliant: Fact::known(false, seen),
                os: Fact::known("windows".into(), seen),
                os_version: Fact::known("11.24H2".into(), seen),
                disk_encryption: Fact::known(true, seen),
                last_check_in: Fact::known(seen, seen),
                tags: Fact::known(Vec::new(), seen),
                ..sekisho_policy::Device::UNKNOWN
            },
            status: "verified",
            id: Some("PC-0042".into()),
            fingerprint: Some("ab".repeat(32)),
        };
        let d = device_info(&view, now, F::COMPLIANT.union(F::TAGS));
        assert_eq!(
            facts(&d),
            [
                ("certificate", "verified", None),
                ("compliant", "false", Some(1800)),
                ("last_check_in", "2026-12-04T08:30:00Z", Some(1800)),
                ("tags", "", Some(1800)),
            ]
        );
        assert_eq!(
            facts(&device_info(&view, now, F::NONE)),
            [("certificate", "verified", None)]
        );
        assert_eq!(d.id, "PC-0042");
        // Every fact, when the policy tests every one; those the inventory does not know
        // (ownership, screen lock, firewall, antivirus, EDR) are listed as unknown, no age.
        let all = device_info(&view, now, F::ALL);
        assert_eq!(facts(&all).len(), 13);
        assert!(facts(&all).contains(&("ownership", "unknown", None)));
        assert!(facts(&all).contains(&("edr", "unknown", None)));

        // The connection's memo keys the block by the facts too: another route's policy on
        // the same connection gets its own.
        let memo = RecordMemo::default();
        let a = memo.device(&view, now, F::COMPLIANT).unwrap();
        let b = memo.device(&view, now, F::OS).unwrap();
        assert_eq!(facts(&a)[1].0, "compliant");
        assert_eq!(facts(&b)[1].0, "os");
    }

    /// A device whose inventory entry is too old to trust has no known posture facts left:
    /// the fact its policy tests is on record as unknown, and the record still says when it
    /// last checked in (why it is unknown; a policy may deny on that) and how long ago.
    #[test]
    fn a_stale_devices_record_keeps_its_last_check_in() {
        let now: jiff::Timestamp = "2026-12-04T09:00:00Z".parse().unwrap();
        let seen = now - jiff::SignedDuration::from_hours(240);
        let view = crate::device::DeviceView {
            input: sekisho_policy::Device {
                last_check_in: sekisho_policy::Fact::known(seen, seen),
                ..sekisho_policy::Device::UNKNOWN
            },
            status: "verified",
            id: Some("PC-0042".into()),
            fingerprint: Some("ab".repeat(32)),
        };
        let d = device_info(&view, now, sekisho_policy::PostureFacts::MANAGED);
        assert_eq!(
            facts(&d),
            [
                ("certificate", "verified", None),
                ("managed", "unknown", None),
                ("last_check_in", "2026-11-24T09:00:00Z", Some(240 * 3600)),
            ]
        );
    }

    /// The policy's view is made once per identity value (a session's, shared by its
    /// connection's requests) and never given for another.
    #[test]
    fn the_policy_memo_gives_each_identity_its_own_view() {
        use sekisho_identity::{AuthMethod, VerifiedIdentity};
        let id = |sub: &str, groups: &[&str]| {
            Arc::new(VerifiedIdentity::dangerous_unverified(
                "https://idp.test",
                sub,
                groups.iter().map(|g| g.to_string()).collect(),
                vec!["pwd".into()],
                AuthMethod::Session,
            ))
        };
        let memo = PolicyMemo::default();
        let alice = id("alice", &["staff"]);
        let a = memo.get(&alice);
        assert_eq!(
            (a.sub.as_str(), a.groups.as_slice()),
            ("alice", &["staff".to_string()][..])
        );
        assert!(Arc::ptr_eq(&a, &memo.get(&alice)), "made once per identity");
        // Another identity, even one that reads the same, is looked at afresh: the memo
        // compares the value it was made from, not its contents.
        let alice_twin = id("alice", &["staff"]);
        let twin = memo.get(&alice_twin);
        assert!(!Arc::ptr_eq(&a, &twin));
        assert_eq!(*twin, *a);
        let bob = id("bob", &["finance"]);
        let b = memo.get(&bob);
        assert_eq!(
            (b.sub.as_str(), b.groups.as_slice()),
            ("bob", &["finance".to_string()][..])
        );
        let alice_again = id("alice", &["staff", "admins"]);
        assert_eq!(memo.get(&alice_again).groups, ["staff", "admins"]);
    }

    /// A connection's memo gives the block made before only while what it was made from is
    /// the same: another user, other groups, another rule's reasons each get their own.
    #[test]
    fn the_record_memo_never_gives_another_users_or_rules_block() {
        use sekisho_identity::{AuthMethod, VerifiedIdentity};
        let memo = RecordMemo::default();
        let id = |sub: &str, groups: &[&str]| {
            VerifiedIdentity::dangerous_unverified(
                "https://idp.test",
                sub,
                groups.iter().map(|g| g.to_string()).collect(),
                vec!["pwd".into()],
                AuthMethod::Session,
            )
        };
        let a = memo.user(&id("alice", &["staff"]));
        assert_eq!(a.sub, "alice");
        let again = memo.user(&id("alice", &["staff"]));
        assert_eq!(*again, *a);
        let b = memo.user(&id("bob", &["staff"]));
        assert_eq!(b.sub, "bob");
        let a2 = memo.user(&id("alice", &["staff", "finance"]));
        assert_eq!(a2.groups, ["staff", "finance"]);

        static ALLOWED: sekisho_policy::Reason = sekisho_policy::Reason {
            code: "policy.allowed",
            ja: "許可",
            en: "allowed",
        };
        static DENIED: sekisho_policy::Reason = sekisho_policy::Reason {
            code: "policy.denied",
            ja: "拒否",
            en: "denied",
        };
        assert_eq!(memo.reasons("x", &[&ALLOWED])[0].code, "policy.allowed");
        assert_eq!(memo.reasons("x", &[&DENIED])[0].code, "policy.denied");
        assert_eq!(memo.reasons("no_route", &[])[0].code, "no_route");
        assert_eq!(
            memo.reasons("unauthenticated", &[])[0].code,
            "unauthenticated"
        );
        assert_eq!(memo.reasons("x", &[&DENIED, &ALLOWED]).len(), 2);
    }

    #[test]
    fn connection_nominates_header_names_in_any_case() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-Secret ,Upgrade"),
        );
        h.append(
            header::CONNECTION,
            HeaderValue::from_static("close, x-other"),
        );
        let names: Vec<String> = connection_nominated(&h)
            .iter()
            .map(|n| n.as_str().to_owned())
            .collect();
        assert_eq!(names, ["x-secret", "upgrade", "x-other"]);
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(connection_nominated(&h).is_empty());
    }

    #[test]
    fn reserved_headers_in_all_spellings() {
        for n in [
            "x-forwarded-for",
            "X_Forwarded_For",
            "x-forwarded_email",
            "x-sekisho-user",
            "x_sekisho_user",
            "forwarded",
            "x-original-url",
            "x_rewrite_url",
            "x-http-method-override",
            "x-auth-request-email",
            "remote_user",
            "x-ms-client-principal-name",
        ] {
            let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert!(is_reserved_header(&name), "{n}");
        }
        for n in [
            "accept",
            "cookie",
            "authorization",
            "x-csrf-token",
            "content-type",
        ] {
            let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
            assert!(!is_reserved_header(&name), "{n}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(port_of("a.example:8443"), Some(8443));
        assert_eq!(port_of("a.example"), None);
        assert_eq!(port_of("[::1]:443"), Some(443));
        assert_eq!(port_of("[::1]"), None);
    }
}
