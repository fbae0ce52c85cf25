//! Pipeline step 3 (identity) and the gateway's own endpoints under `/.sekisho/` on every
//! route host: login, callback, logout, logged-out, the assertion JWKS and whoami.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use jiff::Timestamp;
use sekisho_identity::{SessionOutcome, VerifiedIdentity};

use crate::host::canonical_host;
use crate::pipeline::{ConnInfo, Target};
use crate::respond::{self, Body, Refusal};
use crate::snapshot::{IdentityRuntime, Snapshot};

/// The result of the identity step.
pub enum IdentityStep {
    /// Signed in (or anonymous with `None`); `set_cookies` go on the response.
    Known(Option<Arc<VerifiedIdentity>>, Vec<HeaderValue>),
    /// A bearer token was presented and refused: answer this.
    Refused(Response<Body>, &'static str),
}

/// Runs the identity step: bearer token first, then the session cookie.
pub async fn identify(
    rt: &IdentityRuntime,
    headers: &HeaderMap,
    rid: &str,
    now: Timestamp,
    memo: Option<&sekisho_identity::SessionMemo>,
) -> IdentityStep {
    match rt.service.authenticate_in(headers, now, memo).await {
        SessionOutcome::Authenticated {
            identity,
            set_cookies,
        } => IdentityStep::Known(Some(identity), set_cookies),
        SessionOutcome::Anonymous => IdentityStep::Known(None, Vec::new()),
        SessionOutcome::SessionRejected {
            reason,
            set_cookies,
        } => {
            tracing::info!(request_id = %rid, reason = ?reason, "session refused; treated as signed out");
            IdentityStep::Known(None, set_cookies)
        }
        SessionOutcome::BearerRejected(err) => {
            // `temporarily_unavailable`: the token may be fine but its key could not be fetched.
            let refusal = if err.rfc6750_code() == "temporarily_unavailable" {
                Refusal::Unavailable
            } else {
                Refusal::LoginRequired
            };
            let mut resp = respond::refusal(&refusal, headers, rid, false);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                rt.service.www_authenticate(Some(&err)),
            );
            IdentityStep::Refused(resp, "bearer.rejected")
        }
    }
}

/// The policy's view of a verified identity.
pub fn policy_identity(id: &VerifiedIdentity) -> sekisho_policy::Identity {
    sekisho_policy::Identity {
        sub: id.sub().to_owned(),
        email: id.email().map(str::to_owned),
        name: id.name().map(str::to_owned),
        groups: id.groups().to_vec(),
        amr: id.amr().to_vec(),
        acr: id.acr().map(str::to_owned),
        auth_time: id.auth_time(),
        claims: id.claims().clone(),
    }
}

/// The host as the browser addressed it (with a non-default port), for redirect URIs.
pub fn public_host(target: &Target) -> String {
    match target.port {
        Some(p) if p != 443 => format!("{}:{p}", target.host),
        _ => target.host.clone(),
    }
}

fn redirect(location: &str, cookies: Vec<HeaderValue>, rid: &str) -> Response<Body> {
    let mut resp = Response::new(respond::empty());
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-request-id", v);
    }
    for c in cookies {
        h.append(header::SET_COOKIE, c);
    }
    resp
}

/// Starts a login (or a step-up) for a browser; `None` when the request is not a
/// browser's navigation, in which case the caller answers 401.
#[expect(
    clippy::too_many_arguments,
    reason = "the request's parts, passed as borrowed pieces"
)]
pub async fn start_login(
    rt: &IdentityRuntime,
    snap: &Snapshot,
    conn: &ConnInfo,
    target: &Target,
    method: &Method,
    headers: &HeaderMap,
    step_up: Option<&sekisho_policy::StepUp>,
    rid: &str,
    now: Timestamp,
) -> Option<Response<Body>> {
    if rt.service.oidc().is_none()
        || !(method == Method::GET || method == Method::HEAD)
        || !sekisho_identity::paths::is_browser(headers)
    {
        return None;
    }
    let return_to = match &target.query {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path.clone(),
    };
    let step = step_up.map(|s| sekisho_identity::StepUp {
        prompt_login: true,
        max_age: s.max_auth_age,
        acr_values: s.acr.as_deref().map(<[String]>::to_vec).unwrap_or_default(),
    });
    let listener = conn.listener.clone();
    let allowed = |h: &str, p: &str| {
        canonical_host(h).is_some_and(|h| snap.routes.lookup(&listener, &h, p).is_some())
    };
    match rt
        .service
        .start_login(
            &public_host(target),
            &return_to,
            allowed,
            step.as_ref(),
            headers,
            now,
        )
        .await
    {
        Ok(r) => Some(redirect(&r.location, r.set_cookies, rid)),
        Err(e) => {
            tracing::warn!(request_id = %rid, error.kind = e.kind(), error = %e, "login could not start");
            Some(respond::refusal(&Refusal::Unavailable, headers, rid, false))
        }
    }
}

/// The header names this gateway sets as identity (unset ones empty): a client's header by
/// any of these names, or by a built-in identity name, never reaches an upstream
/// ([`sekisho_identity::is_identity_header`], applied as the request's headers are copied).
pub fn identity_header_names(snap: &Snapshot) -> [&str; 4] {
    match &snap.config.identity {
        Some(s) => [
            &s.user_header,
            &s.email_header,
            &s.groups_header,
            &s.assertion.header,
        ]
        .map(|h| h.as_ref().map_or("", |h| h.as_str())),
        None => [""; 4],
    }
}

/// Sets Sekisho's identity headers and the signed assertion on the upstream request. The
/// client's identity-looking headers were not copied into `headers`
/// ([`identity_header_names`]); Sekisho's own cookies are removed here.
#[allow(clippy::too_many_arguments)]
pub fn upstream_identity(
    snap: &Snapshot,
    memo: &sekisho_identity::AssertionMemo,
    headers: &mut HeaderMap,
    identity: Option<&VerifiedIdentity>,
    route: &str,
    device_id: Option<&str>,
    rid: &str,
    now: Timestamp,
) {
    let Some(settings) = &snap.config.identity else {
        return;
    };
    sekisho_identity::strip_sekisho_cookies(headers, &settings.config.session.cookie_name);
    let Some(id) = identity else { return };
    // A token issued to Sekisho is for Sekisho: the upstream gets the assertion instead.
    if id.method() == sekisho_identity::AuthMethod::Bearer {
        headers.remove(header::AUTHORIZATION);
    }
    sekisho_identity::upstream::set_identity_headers(
        headers,
        id,
        settings.user_header.as_ref(),
        settings.email_header.as_ref(),
        settings.groups_header.as_ref(),
    );
    if let (Some(h), Some(signer)) = (&settings.assertion.header, &snap.signer) {
        let version = snap
            .config
            .policies
            .as_deref()
            .map(|p| p.version())
            .unwrap_or("none");
        match signer.assertion(
            Some(memo),
            id,
            route,
            device_id,
            version,
            rid,
            now,
            settings.assertion.reuse,
        ) {
            Ok(v) => {
                headers.insert(h.clone(), v);
            }
            Err(e) => {
                tracing::warn!(request_id = %rid, error = %e, "could not sign the upstream assertion")
            }
        }
    }
}

fn page(
    status: StatusCode,
    headers: &HeaderMap,
    rid: &str,
    ja: (&str, &str),
    en: (&str, &str),
    extra_html: &str,
) -> Response<Body> {
    let english = respond::prefers_english(headers);
    let (lang, (title, text)) = if english { ("en", en) } else { ("ja", ja) };
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — Sekisho</title><style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.6}}\
         button{{font-size:1rem;padding:.5rem 1rem}}code{{background:#f0f0f0;padding:.1rem .3rem}}</style></head>\
         <body><main><h1>{title}</h1><p>{text}</p>{extra_html}<p><small>{label}: <code>{rid}</code></small></p></main></body></html>\n",
        label = if english {
            "Request ID"
        } else {
            "リクエスト ID"
        },
    );
    let mut resp = Response::new(respond::full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(rid) {
        h.insert("x-request-id", v);
    }
    resp
}

/// What a reserved-path request did, for logs, metrics and audit.
pub struct ReservedOutcome {
    pub response: Response<Body>,
    /// `login`, `login_failed`, `logout`, or `page`.
    pub event: &'static str,
    pub identity: Option<Arc<VerifiedIdentity>>,
    pub detail: &'static str,
}

/// Handles `/.sekisho/*`.
pub async fn reserved(
    snap: &Arc<Snapshot>,
    conn: &ConnInfo,
    req: Request<Incoming>,
    target: &Target,
    device: &crate::device::DeviceView,
    rid: &str,
    now: Timestamp,
) -> ReservedOutcome {
    let headers = req.headers().clone();
    let plain = |response, detail| ReservedOutcome {
        response,
        event: "page",
        identity: None,
        detail,
    };
    let Some(rt) = snap.identity.as_deref() else {
        return plain(
            respond::refusal(&Refusal::NotFound, &headers, rid, false),
            "no_identity",
        );
    };
    let host = public_host(target);
    match (req.method().clone(), target.path.as_str()) {
        (Method::GET, sekisho_identity::paths::CALLBACK) => match rt
            .service
            .finish_login(&host, req.uri(), &headers, now)
            .await
        {
            Ok(done) => {
                let location = done.return_to.clone();
                ReservedOutcome {
                    response: redirect(&location, done.set_cookies, rid),
                    event: "login",
                    identity: Some(done.identity),
                    detail: "ok",
                }
            }
            Err(e) => {
                let status = e.status();
                tracing::info!(request_id = %rid, error.kind = e.kind(), "login failed");
                let response = if status == StatusCode::SERVICE_UNAVAILABLE {
                    respond::refusal(&Refusal::Unavailable, &headers, rid, false)
                } else {
                    page(
                        StatusCode::BAD_REQUEST,
                        &headers,
                        rid,
                        (
                            "サインインできませんでした",
                            "サインインの手続きが完了しませんでした。元のページからもう一度お試しください。",
                        ),
                        (
                            "Sign-in did not complete",
                            "The sign-in could not be completed. Go back to the page you wanted and try again.",
                        ),
                        "",
                    )
                };
                ReservedOutcome {
                    response,
                    event: "login_failed",
                    identity: None,
                    detail: e.kind(),
                }
            }
        },
        (Method::GET, sekisho_identity::paths::LOGIN) => {
            let rd = req
                .uri()
                .query()
                .and_then(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "rd")
                        .map(|(_, v)| v.into_owned())
                })
                .unwrap_or_else(|| "/".into());
            let listener = conn.listener.clone();
            let allowed = |h: &str, p: &str| {
                canonical_host(h).is_some_and(|h| snap.routes.lookup(&listener, &h, p).is_some())
            };
            let response = match rt
                .service
                .start_login(&host, &rd, allowed, None, &headers, now)
                .await
            {
                Ok(r) => redirect(&r.location, r.set_cookies, rid),
                Err(_) => respond::refusal(&Refusal::Unavailable, &headers, rid, false),
            };
            plain(response, "login_start")
        }
        (Method::GET, sekisho_identity::paths::LOGOUT) => {
            let mut response = page(
                StatusCode::OK,
                &headers,
                rid,
                (
                    "サインアウト",
                    "この端末のブラウザーからサインアウトします。",
                ),
                ("Sign out", "Sign out of this browser."),
                "<form method=\"post\" action=\"/.sekisho/logout\"><button type=\"submit\">サインアウト / Sign out</button></form>",
            );
            // The POST answers with a redirect to the IdP's end-session endpoint, and browsers
            // apply CSP `form-action` to redirects after a submission too: with `'self'` the
            // sign-out stopped here (found by the demo's browser test). The page holds only
            // static text and the escaped request ID.
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            );
            plain(response, "logout_confirm")
        }
        (Method::POST, sekisho_identity::paths::LOGOUT) => {
            let out = rt.service.logout(&host, &headers);
            let mut response = redirect(&out.location, out.set_cookies, rid);
            *response.status_mut() = StatusCode::SEE_OTHER;
            ReservedOutcome {
                response,
                event: "logout",
                identity: None,
                detail: if out.had_session { "ok" } else { "no_session" },
            }
        }
        (Method::GET, sekisho_identity::paths::LOGGED_OUT) => plain(
            page(
                StatusCode::OK,
                &headers,
                rid,
                ("サインアウトしました", "ブラウザーを閉じても構いません。"),
                ("You are signed out", "You may close the browser."),
                "",
            ),
            "logged_out",
        ),
        (Method::GET, sekisho_identity::paths::JWKS) => {
            let body = snap
                .signer
                .as_ref()
                .map(|s| s.jwks_json())
                .unwrap_or_else(|| "{\"keys\":[]}".into());
            let mut r = Response::new(respond::full(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=300"),
            );
            plain(r, "jwks")
        }
        (Method::GET, "/.sekisho/whoami") => {
            let (identity, cookies) = match identify(rt, &headers, rid, now, None).await {
                IdentityStep::Known(i, c) => (i, c),
                IdentityStep::Refused(r, _) => return plain(r, "whoami_refused"),
            };
            let mut r = whoami(identity.as_deref(), device, &headers, rid);
            for c in cookies {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            ReservedOutcome {
                response: r,
                event: "page",
                identity,
                detail: "whoami",
            }
        }
        _ => plain(
            respond::refusal(&Refusal::NotFound, &headers, rid, false),
            "unknown_reserved_path",
        ),
    }
}

fn whoami(
    id: Option<&VerifiedIdentity>,
    device: &crate::device::DeviceView,
    headers: &HeaderMap,
    rid: &str,
) -> Response<Body> {
    let fact = |f: &sekisho_policy::Fact<bool>| match f {
        sekisho_policy::Fact::Known { value, .. } => serde_json::json!(value),
        sekisho_policy::Fact::Unknown => serde_json::json!("unknown"),
    };
    let dev = &device.input;
    let json = serde_json::json!({
        "signed_in": id.is_some(),
        "user": id.map(|i| serde_json::json!({
            "sub": i.sub(), "email": i.email(), "name": i.name(), "groups": i.groups(),
            "amr": i.amr(), "acr": i.acr(),
            "auth_time": i.auth_time().map(|t| t.to_string()),
            "session_expires": i.expires().map(|t| t.to_string()),
            "method": format!("{:?}", i.method()).to_lowercase(),
        })),
        "device": {
            "certificate": device.status,
            "id": device.id,
            "fingerprint": device.fingerprint,
            "managed": fact(&dev.managed),
            "compliant": fact(&dev.compliant),
            "disk_encryption": fact(&dev.disk_encryption),
            "screen_lock": fact(&dev.screen_lock),
            "ownership": dev.ownership.value().map(|o| o.as_str()),
            "os": dev.os.value(),
            "os_version": dev.os_version.value(),
        },
        "request_id": rid,
    });
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    if wants_json {
        let mut r = Response::new(respond::full(
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        ));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let pretty = esc(&serde_json::to_string_pretty(&json).unwrap_or_default());
    page(
        StatusCode::OK,
        headers,
        rid,
        (
            "あなたの接続情報",
            "Sekisho から見た、あなたのアカウントと端末の情報です。",
        ),
        (
            "Who you are to Sekisho",
            "Your account and device as Sekisho sees them.",
        ),
        &format!("<pre>{pretty}</pre>"),
    )
}

/// Exports the identity step's counters (`sekisho_identity_<name>_total`) at scrape time.
/// The identity runtime lives for the whole process (reloads keep it), so holding it is safe.
#[derive(Debug)]
pub struct IdentityCollector(pub Arc<IdentityRuntime>);

impl std::fmt::Debug for IdentityRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityRuntime")
    }
}

impl prometheus_client::collector::Collector for IdentityCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        for (name, value) in self.0.service.metrics().snapshot() {
            let c = prometheus_client::metrics::counter::ConstCounter::new(value);
            let metric = format!("identity_{name}");
            c.encode(encoder.encode_descriptor(
                &metric,
                "Identity step counter (see docs/identity.md)",
                None,
                c.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
