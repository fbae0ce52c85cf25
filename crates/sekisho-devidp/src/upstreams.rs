//! Demo upstreams: an LGWAN-side 庁内ポータル (internal portal) and an internet-side
//! グループウェア (groupware). **Development and demos only.**
//!
//! Each serves, on the loopback address the caller chooses:
//!
//! - any path: an accessible Japanese/English page listing the headers Sekisho passed on
//!   (`X-Forwarded-*`, `X-Request-Id`, every `X-Sekisho-*` identity header, whether an
//!   `X-Sekisho-Assertion` JWT was present, its claims, and — once
//!   [`RunningUpstream::set_assertion_check`] gave it the gateway's JWKS — whether its
//!   signature, issuer, audience and expiry verify), the names (never values) of cookies that
//!   reached the upstream;
//! - `/headers.json`: the same facts as JSON, for scripts and tests;
//! - `/download`: a small CSV attachment (UTF-8 with BOM, so Excel opens it), for zone
//!   response-control demos (downloads blocked for unmanaged devices);
//! - `/ws`: a websocket echo;
//! - `/healthz`: `ok`.
//!
//! They set no `Cache-Control`, so that the gateway's zone response controls are visible.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::error::{DevIdpError, Result};
use crate::html::{esc, page};
use crate::serve::{self, Handler, Listening, Resp};

/// Which demo back-end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamKind {
    /// 庁内ポータル — LGWAN side (LGWAN接続系).
    Portal,
    /// グループウェア — internet side (インターネット接続系).
    Groupware,
}

impl UpstreamKind {
    /// Short stable name: `portal` or `groupware`.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamKind::Portal => "portal",
            UpstreamKind::Groupware => "groupware",
        }
    }

    fn title_ja(self) -> &'static str {
        match self {
            UpstreamKind::Portal => "庁内ポータル",
            UpstreamKind::Groupware => "グループウェア",
        }
    }

    fn title_en(self) -> &'static str {
        match self {
            UpstreamKind::Portal => "Internal portal",
            UpstreamKind::Groupware => "Groupware",
        }
    }

    fn zone_ja(self) -> &'static str {
        match self {
            UpstreamKind::Portal => "LGWAN接続系",
            UpstreamKind::Groupware => "インターネット接続系",
        }
    }

    fn zone_en(self) -> &'static str {
        match self {
            UpstreamKind::Portal => "LGWAN side",
            UpstreamKind::Groupware => "internet side",
        }
    }
}

/// A running demo upstream.
pub struct RunningUpstream {
    kind: UpstreamKind,
    upstream: Arc<Upstream>,
    server: Listening,
}

impl std::fmt::Debug for RunningUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningUpstream")
            .field("kind", &self.kind)
            .field("addr", &self.server.addr)
            .finish()
    }
}

impl RunningUpstream {
    pub fn kind(&self) -> UpstreamKind {
        self.kind
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Verify `X-Sekisho-Assertion` from now on (or, with `None`, only decode it). Can be
    /// called after the gateway has started, so the start order does not matter.
    pub fn set_assertion_check(&self, check: Option<AssertionCheck>) {
        *self
            .upstream
            .check
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = check.map(Arc::new);
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Stops accepting and waits (at most 5 s) for open connections.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Starts a demo upstream on `bind` (loopback only, e.g. `127.0.10.11:8080`; port 0 allowed).
pub async fn start(kind: UpstreamKind, bind: SocketAddr) -> Result<RunningUpstream> {
    let (listener, addr) = serve::bind(bind).await?;
    let upstream = Arc::new(Upstream {
        kind,
        check: Mutex::new(None),
    });
    let server = serve::serve(listener, addr, upstream.clone());
    tracing::info!(upstream = kind.name(), addr = %server.addr, "demo upstream listening");
    Ok(RunningUpstream {
        kind,
        upstream,
        server,
    })
}

struct Upstream {
    kind: UpstreamKind,
    check: Mutex<Option<Arc<AssertionCheck>>>,
}

/// How a demo upstream verifies `X-Sekisho-Assertion`, as a real upstream would: ES256
/// against the gateway's JWKS (the body of its `/.sekisho/jwks.json`), exact `iss`, `aud` =
/// the route name, `exp`/`nbf` with 30 s leeway.
#[derive(Clone, Debug)]
pub struct AssertionCheck {
    keys: JwkSet,
    issuer: String,
    audience: String,
}

impl AssertionCheck {
    pub fn new(
        jwks_json: &str,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self> {
        let keys: JwkSet = serde_json::from_str(jwks_json)
            .map_err(|e| DevIdpError::Config(vec![format!("assertion JWKS: {e}")]))?;
        Ok(AssertionCheck {
            keys,
            issuer: issuer.into(),
            audience: audience.into(),
        })
    }

    fn verify(&self, token: &str) -> std::result::Result<(), String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        // Never trust the token's own alg: ES256 only.
        if header.alg != Algorithm::ES256 {
            return Err(format!("algorithm {:?} is not accepted", header.alg));
        }
        let kid = header.kid.ok_or("no kid")?;
        let jwk = self.keys.find(&kid).ok_or("unknown kid")?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 30;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Value>(token, &key, &v)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Headers always listed (absent ones too), in this order.
const SHOWN: &[&str] = &[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "x-request-id",
    "x-sekisho-user",
    "x-sekisho-email",
    "x-sekisho-groups",
];
const ASSERTION: &str = "x-sekisho-assertion";

/// What the upstream saw: listed headers (absent as `None`), extra `x-sekisho-*` /
/// `x-forwarded-*` headers, cookie names, assertion claims.
struct Seen {
    headers: Vec<(String, Option<String>)>,
    cookie_names: Vec<String>,
    assertion: Option<Value>,
    /// `None`: no assertion or no check configured.
    verified: Option<std::result::Result<(), String>>,
}

fn seen(h: &HeaderMap, check: Option<&AssertionCheck>) -> Seen {
    let value = |n: &str| {
        let vals: Vec<String> = h
            .get_all(n)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!vals.is_empty()).then(|| vals.join(", "))
    };
    let mut headers: Vec<(String, Option<String>)> =
        SHOWN.iter().map(|n| ((*n).to_owned(), value(n))).collect();
    let mut extra: Vec<&str> = h
        .keys()
        .map(|k| k.as_str())
        .filter(|k| {
            (k.starts_with("x-sekisho-") || k.starts_with("x-forwarded-"))
                && *k != ASSERTION
                && !SHOWN.contains(k)
        })
        .collect();
    extra.sort_unstable();
    extra.dedup();
    headers.extend(extra.into_iter().map(|k| (k.to_owned(), value(k))));
    let cookie_names = h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim().to_owned()))
        .collect();
    let assertion = h.get(ASSERTION).map(|v| {
        // Decoded for display only; upstreams that rely on it verify it against the
        // gateway's JWKS.
        v.to_str()
            .ok()
            .and_then(|t| t.split('.').nth(1))
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null)
    });
    let verified = match (h.get(ASSERTION), check) {
        (Some(v), Some(c)) => Some(
            v.to_str()
                .map_err(|_| "not a JWT".to_owned())
                .and_then(|t| c.verify(t)),
        ),
        _ => None,
    };
    Seen {
        headers,
        cookie_names,
        assertion,
        verified,
    }
}

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

impl Handler for Upstream {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>, peer: SocketAddr) -> Resp {
        let path = req.uri().path().to_owned();
        match path.as_str() {
            "/healthz" => response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
            "/download" => self.download(),
            "/ws" => websocket(&mut req),
            _ => {
                let method = req.method().clone();
                let query = req.uri().query().map(str::to_owned);
                let check = self.check.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let s = seen(req.headers(), check.as_deref());
                let body_len = Limited::new(req.into_body(), 16 << 20)
                    .collect()
                    .await
                    .map(|c| c.to_bytes().len())
                    .ok();
                let facts = Facts {
                    method: method.as_str(),
                    path: &path,
                    query: query.as_deref(),
                    peer,
                    body_len,
                    seen: &s,
                };
                if path == "/headers.json" {
                    let mut r = response(
                        StatusCode::OK,
                        "application/json",
                        self.json(&facts).to_string(),
                    );
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    r
                } else {
                    response(
                        StatusCode::OK,
                        "text/html; charset=utf-8",
                        self.html(&facts),
                    )
                }
            }
        }
    }
}

struct Facts<'a> {
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    peer: SocketAddr,
    body_len: Option<usize>,
    seen: &'a Seen,
}

impl Upstream {
    fn json(&self, f: &Facts<'_>) -> Value {
        let headers: Map<String, Value> = f
            .seen
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map_or(Value::Null, Value::String)))
            .collect();
        json!({
            "upstream": self.kind.name(),
            "zone": self.kind.zone_en(),
            "method": f.method,
            "path": f.path,
            "query": f.query,
            "peer": f.peer.to_string(),
            "body_bytes": f.body_len,
            "headers": headers,
            "cookie_names": f.seen.cookie_names,
            "assertion_present": f.seen.assertion.is_some(),
            "assertion_verified": f.seen.verified.as_ref().map(|r| r.is_ok()),
            "assertion_error": f.seen.verified.as_ref().and_then(|r| r.as_ref().err()),
            "assertion_claims": f.seen.assertion.clone().unwrap_or(Value::Null),
        })
    }

    fn html(&self, f: &Facts<'_>) -> String {
        let k = self.kind;
        let absent = "<em>（なし） <span lang=\"en\">(absent)</span></em>";
        let mut rows = String::new();
        for (name, v) in &f.seen.headers {
            let v = v
                .as_deref()
                .map_or_else(|| absent.to_owned(), |v| format!("<code>{}</code>", esc(v)));
            rows.push_str(&format!(
                "<tr><th scope=\"row\"><code>{}</code></th><td>{v}</td></tr>",
                esc(name)
            ));
        }
        let assertion = match &f.seen.assertion {
            None => format!("<p>{absent}</p>"),
            Some(Value::Null) => "<p>あり（JWT として読めません） <span lang=\"en\">present (not a readable JWT)</span></p>".to_owned(),
            Some(c) => format!(
                "<p>あり <span lang=\"en\">present</span> — 内容 <span lang=\"en\">claims</span>:</p><pre>{}</pre>",
                esc(&serde_json::to_string_pretty(c).unwrap_or_default())
            ),
        };
        let verdict = match &f.seen.verified {
            None if f.seen.assertion.is_some() => "<p>署名検証: 未設定（内容を表示するだけです） \
<span lang=\"en\">Signature check: not configured (claims are only decoded)</span></p>"
                .to_owned(),
            None => String::new(),
            Some(Ok(())) => "<p class=\"note\"><strong>署名検証: 成功</strong>（発行者・宛先・有効期限も確認済み） \
<span lang=\"en\"><strong>Signature verified</strong> (issuer, audience and expiry checked)</span></p>"
                .to_owned(),
            Some(Err(e)) => format!(
                "<p class=\"alert\" role=\"alert\"><strong>署名検証: 失敗</strong> \
<span lang=\"en\"><strong>Verification failed</strong></span>: <code>{}</code></p>",
                esc(e)
            ),
        };
        let assertion = format!("{verdict}{assertion}");
        let cookies = if f.seen.cookie_names.is_empty() {
            absent.to_owned()
        } else {
            f.seen
                .cookie_names
                .iter()
                .map(|c| format!("<code>{}</code>", esc(c)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let user = f
            .seen
            .headers
            .iter()
            .find(|(n, _)| n == "x-sekisho-user")
            .and_then(|(_, v)| v.as_deref());
        let welcome = match user {
            Some(u) => format!(
                "<p>ようこそ、<strong>{}</strong> さん。<span lang=\"en\">Welcome, <strong>{}</strong>.</span></p>",
                esc(u),
                esc(u)
            ),
            None => "<p>利用者の情報は届いていません。<span lang=\"en\">No user identity reached this page.</span></p>".to_owned(),
        };
        let zone_class = match k {
            UpstreamKind::Portal => "zone zone-lgwan",
            UpstreamKind::Groupware => "zone zone-inet",
        };
        let body = format!(
            "<div class=\"{zone_class}\">{zja} <span lang=\"en\">{zen}</span> — Sekisho デモ <span lang=\"en\">demo</span></div>\
<h1>{tja}（{zja}） <span lang=\"en\" class=\"en\">{ten} ({zen})</span></h1>\
{welcome}\
<p>これは Sekisho のデモ用アップストリームです。Sekisho が転送したヘッダーを表示します。<br>\
<span lang=\"en\" class=\"en\">This is a Sekisho demo upstream. It shows the headers Sekisho passed on.</span></p>\
<h2>リクエスト <span lang=\"en\" class=\"en\">Request</span></h2>\
<p><code>{method} {path}{q}</code> — 接続元 <span lang=\"en\">from</span> <code>{peer}</code></p>\
<h2>転送されたヘッダー <span lang=\"en\" class=\"en\">Forwarded headers</span></h2>\
<table><thead><tr><th scope=\"col\">ヘッダー <span lang=\"en\">Header</span></th>\
<th scope=\"col\">値 <span lang=\"en\">Value</span></th></tr></thead><tbody>{rows}</tbody></table>\
<h2>署名付きアサーション <span lang=\"en\" class=\"en\">Signed assertion</span> (<code>X-Sekisho-Assertion</code>)</h2>{assertion}\
<h2>届いた Cookie（名前のみ） <span lang=\"en\" class=\"en\">Cookies received (names only)</span></h2><p>{cookies}</p>\
<h2>試す <span lang=\"en\" class=\"en\">Try</span></h2>\
<ul><li><a href=\"download\">CSV をダウンロード <span lang=\"en\">Download a CSV</span></a></li>\
<li><a href=\"headers.json\">JSON で見る <span lang=\"en\">View as JSON</span></a></li></ul>",
            tja = k.title_ja(),
            zja = k.zone_ja(),
            ten = k.title_en(),
            zen = k.zone_en(),
            method = esc(f.method),
            path = esc(f.path),
            q = f.query.map(|q| format!("?{}", esc(q))).unwrap_or_default(),
            peer = f.peer,
        );
        page(
            &format!("{} — Sekisho デモ / Sekisho demo", k.title_ja()),
            None,
            &body,
        )
    }

    fn download(&self) -> Resp {
        let (file, csv) = match self.kind {
            UpstreamKind::Portal => (
                "portal-report.csv",
                "課,件数,備考\n住民課,12,デモデータ\n税務課,7,デモデータ\n",
            ),
            UpstreamKind::Groupware => (
                "groupware-schedule.csv",
                "日付,予定,場所\n2026-04-01,庁議,本庁舎 3階\n2026-04-02,研修,オンライン\n",
            ),
        };
        let mut body = "\u{feff}".to_owned();
        body.push_str(csv);
        let mut r = response(StatusCode::OK, "text/csv; charset=utf-8", body);
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        r
    }
}

/// Answers a websocket upgrade and echoes text and binary messages.
fn websocket(req: &mut Request<Incoming>) -> Resp {
    let h = req.headers();
    let is_ws = h
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let (true, Some(accept)) = (is_ws, key) else {
        return response(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "websocket upgrade expected\n",
        );
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() {
                break;
            }
            let echo = msg.is_text() || msg.is_binary();
            if echo && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}
