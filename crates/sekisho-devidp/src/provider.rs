//! The OpenID provider: discovery, authorization (login form, IdP session), token, JWKS,
//! userinfo and RP-initiated logout.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::config::{DevClient, DevIdpConfig};
use crate::error::Result;
use crate::html::{self, LoginForm};
use crate::keys::{SigningKey, random_token, sha256_b64url};
use crate::serve::{self, Handler, Listening, Resp};
use crate::users::{ACR_MFA, ACR_PWD, DemoUser};

/// Name of the IdP's own session cookie (host-only, `HttpOnly`, `SameSite=Lax`).
pub const SESSION_COOKIE: &str = "sekisho_devidp_session";

const CODE_TTL: i64 = 60;
const PENDING_TTL: i64 = 600;
const MAX_BODY: usize = 64 * 1024;
const MAX_PENDING: usize = 10_000;

/// The development OpenID provider. See the crate documentation.
pub struct DevIdp;

impl DevIdp {
    /// Generates a signing key, binds `cfg.bind` (loopback only) and serves until
    /// [`RunningIdp::shutdown`] or drop. The issuer is `http://<bound address>`.
    pub async fn start(cfg: DevIdpConfig) -> Result<RunningIdp> {
        cfg.validate()?;
        let key = SigningKey::generate()?;
        // Bound before the provider exists, so the issuer carries the real port (port 0 works).
        let (listener, addr) = serve::bind(cfg.bind).await?;
        let provider = Arc::new(Provider {
            issuer: format!("http://{addr}"),
            state: Mutex::new(State {
                users: cfg.users.clone(),
                ..State::default()
            }),
            cfg,
            key,
            clock_offset: AtomicI64::new(0),
        });
        let server = serve::serve(listener, addr, provider.clone());
        tracing::info!(issuer = %provider.issuer, "development OpenID provider listening (DEVELOPMENT ONLY)");
        Ok(RunningIdp { provider, server })
    }
}

/// A running development IdP.
pub struct RunningIdp {
    provider: Arc<Provider>,
    server: Listening,
}

impl std::fmt::Debug for RunningIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningIdp")
            .field("issuer", &self.provider.issuer())
            .finish_non_exhaustive()
    }
}

impl RunningIdp {
    /// `http://127.0.0.1:<port>` (no trailing slash); discovery is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        self.provider.issuer().to_owned()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The users as they are now (groups may have been changed).
    pub fn users(&self) -> Vec<DemoUser> {
        self.provider.lock().users.clone()
    }

    /// Replaces a user's groups; later tokens (refresh, userinfo, new logins) carry the new
    /// groups. Returns false for an unknown user.
    pub fn set_groups(&self, username: &str, groups: Vec<String>) -> bool {
        let mut st = self.provider.lock();
        match st.users.iter_mut().find(|u| u.username == username) {
            Some(u) => {
                u.groups = groups;
                true
            }
            None => false,
        }
    }

    /// Signs tokens for `username` without a browser, as a sign-in at this moment would —
    /// for demo scripts (`curl -H "Authorization: Bearer …"`) and tests. `mfa` yields
    /// `amr: [pwd, otp]` only for users with MFA. `None` for an unknown user or client.
    /// No refresh token and no IdP session are created.
    pub fn mint_tokens(&self, client_id: &str, username: &str, mfa: bool) -> Option<MintedTokens> {
        let p = &self.provider;
        let client = p.client(client_id)?;
        let user = p.lock().user(username).cloned()?;
        let now = p.now();
        let mfa = mfa && user.mfa;
        let auth = AuthInfo {
            username: user.username.clone(),
            auth_time: now,
            amr: if mfa { vec!["pwd", "otp"] } else { vec!["pwd"] },
            acr: if mfa { ACR_MFA } else { ACR_PWD },
            sid: random_token(16),
        };
        let grant = Grant {
            user: &user,
            client_id: &client.client_id,
            scope: "openid email profile",
            auth: &auth,
            nonce: None,
        };
        let (id_token, access_token) = p.sign_tokens(&grant, now);
        Some(MintedTokens {
            id_token,
            access_token,
        })
    }

    /// Moves the IdP's clock forward (for `max_age`, expiry and session tests; no sleeping).
    pub fn advance_clock(&self, by: Duration) {
        self.provider
            .clock_offset
            .fetch_add(by.as_secs() as i64, Ordering::Relaxed);
    }

    /// Stops accepting and waits (at most 5 s) for open connections.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Tokens from [`RunningIdp::mint_tokens`]. `Debug` prints them redacted.
#[derive(Clone)]
pub struct MintedTokens {
    /// ES256 JWT, header `typ: JWT`, `aud` = the client.
    pub id_token: String,
    /// ES256 JWT, header `typ: at+jwt`, `aud` = [`DevIdpConfig::access_token_audience`].
    pub access_token: String,
}

impl std::fmt::Debug for MintedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MintedTokens([redacted])")
    }
}

struct Provider {
    issuer: String,
    cfg: DevIdpConfig,
    key: SigningKey,
    clock_offset: AtomicI64,
    state: Mutex<State>,
}

/// How and when the user authenticated; carried from the session into codes and refresh
/// tokens.
#[derive(Clone, Debug)]
struct AuthInfo {
    username: String,
    auth_time: i64,
    amr: Vec<&'static str>,
    acr: &'static str,
    sid: String,
}

/// A validated authorization request waiting for the login form.
#[derive(Clone)]
struct Pending {
    req: AuthRequest,
    created: i64,
}

#[derive(Clone)]
struct AuthRequest {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    scope: String,
    mfa_requested: bool,
    login_hint: Option<String>,
}

struct Session {
    auth: AuthInfo,
    expires: i64,
}

struct CodeGrant {
    req: AuthRequest,
    auth: AuthInfo,
    expires: i64,
    used: bool,
    grant_id: String,
}

/// What a token response is made from.
struct Grant<'a> {
    user: &'a DemoUser,
    client_id: &'a str,
    scope: &'a str,
    auth: &'a AuthInfo,
    nonce: Option<&'a str>,
}

struct RefreshGrant {
    client_id: String,
    scope: String,
    auth: AuthInfo,
    expires: i64,
    grant_id: String,
}

#[derive(Default)]
struct State {
    users: Vec<DemoUser>,
    pending: HashMap<String, Pending>,
    sessions: HashMap<String, Session>,
    codes: HashMap<String, CodeGrant>,
    refresh: HashMap<String, RefreshGrant>,
}

impl State {
    fn purge(&mut self, now: i64) {
        self.pending.retain(|_, p| now - p.created <= PENDING_TTL);
        self.sessions.retain(|_, s| s.expires > now);
        self.codes.retain(|_, c| c.expires > now);
        self.refresh.retain(|_, r| r.expires > now);
    }

    fn user(&self, username: &str) -> Option<&DemoUser> {
        self.users.iter().find(|u| u.username == username)
    }
}

/// Parsed form or query parameters; OAuth parameters must not repeat (RFC 6749 §3.1).
struct Params {
    map: HashMap<String, String>,
    repeated: Option<String>,
}

impl Params {
    fn parse(s: &[u8]) -> Params {
        let mut map = HashMap::new();
        let mut repeated = None;
        for (k, v) in url::form_urlencoded::parse(s) {
            if map.insert(k.to_string(), v.into_owned()).is_some() {
                repeated.get_or_insert_with(|| k.into_owned());
            }
        }
        Params { map, repeated }
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.map
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

fn json_response(status: StatusCode, v: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Resp {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

fn redirect(status: StatusCode, location: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        // Registered URIs were checked at start-up.
        Err(_) => base.to_owned(),
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// RFC 7636 §4.1: 43..=128 characters of `[A-Za-z0-9-._~]`.
fn valid_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn percent_decode(s: &str) -> Option<String> {
    // application/x-www-form-urlencoded, as RFC 6749 §2.3.1 asks clients to encode.
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

async fn read_body(body: Incoming) -> Option<Bytes> {
    Limited::new(body, MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

impl Handler for Provider {
    async fn handle(self: Arc<Self>, req: Request<Incoming>, _peer: SocketAddr) -> Resp {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("").as_bytes();
        let m = &parts.method;
        let get = m == Method::GET || m == Method::HEAD;
        let post = m == Method::POST;
        match path {
            "/.well-known/openid-configuration" if get => self.discovery(),
            "/jwks" if get => {
                let mut r = json_response(StatusCode::OK, &self.key.jwks());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/jwk-set+json"),
                );
                r
            }
            "/authorize" if get => self.authorize(&Params::parse(query), &parts.headers),
            "/authorize" if post => match read_body(body).await {
                Some(b) => self.login(&Params::parse(&b), &parts.headers),
                None => html::error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "送信内容が大きすぎます。",
                    "The form is too large.",
                ),
            },
            "/token" if post => match read_body(body).await {
                Some(b) => self.token(&Params::parse(&b), &parts.headers),
                None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "body too large"),
            },
            "/userinfo" if get || post => self.userinfo(&parts.headers),
            "/end_session" if get => self.end_session(&Params::parse(query), &parts.headers),
            "/end_session" if post => match read_body(body).await {
                Some(b) => self.end_session(&Params::parse(&b), &parts.headers),
                None => html::error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "送信内容が大きすぎます。",
                    "The form is too large.",
                ),
            },
            "/" if get => html::respond(
                StatusCode::OK,
                html::page(
                    "Sekisho DevIdP",
                    Some(html::DEV_BANNER),
                    "<h1>Sekisho 開発用 OpenID プロバイダー <span lang=\"en\" class=\"en\">Sekisho development OpenID provider</span></h1>\
<p>設定: <a href=\"/.well-known/openid-configuration\">/.well-known/openid-configuration</a></p>",
                ),
            ),
            "/.well-known/openid-configuration"
            | "/jwks"
            | "/authorize"
            | "/token"
            | "/userinfo"
            | "/end_session"
            | "/" => {
                let mut r = oauth_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request",
                    "method not allowed",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                r
            }
            _ => html::error_page(
                StatusCode::NOT_FOUND,
                "ページが見つかりません。",
                "Page not found.",
            ),
        }
    }
}

impl Provider {
    fn issuer(&self) -> &str {
        &self.issuer
    }

    fn now(&self) -> i64 {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        t + self.clock_offset.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves maps that are still consistent enough for a
        // development server.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, id: &str) -> Option<&DevClient> {
        self.cfg.clients.iter().find(|c| c.client_id == id)
    }

    fn discovery(&self) -> Resp {
        let i = self.issuer();
        json_response(
            StatusCode::OK,
            &json!({
                "issuer": i,
                "authorization_endpoint": format!("{i}/authorize"),
                "token_endpoint": format!("{i}/token"),
                "jwks_uri": format!("{i}/jwks"),
                "userinfo_endpoint": format!("{i}/userinfo"),
                "end_session_endpoint": format!("{i}/end_session"),
                "scopes_supported": ["openid", "email", "profile", "groups", "offline_access"],
                "response_types_supported": ["code"],
                "response_modes_supported": ["query"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "userinfo_signing_alg_values_supported": ["none"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": true,
                "acr_values_supported": [ACR_PWD, ACR_MFA],
                "prompt_values_supported": ["none", "login", "consent", "select_account"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
                    "acr", "amr", "azp", "sid", "name", "preferred_username", "email",
                    "email_verified", "groups"],
                "claims_parameter_supported": false,
                "request_parameter_supported": false,
                "request_uri_parameter_supported": false,
            }),
        )
    }

    /// The session behind the request's cookie, if live and its user still exists.
    fn session_auth(&self, st: &State, headers: &HeaderMap, now: i64) -> Option<AuthInfo> {
        let id = cookie_value(headers, SESSION_COOKIE)?;
        let s = st.sessions.get(id)?;
        (s.expires > now && st.user(&s.auth.username).is_some()).then(|| s.auth.clone())
    }

    /// GET /authorize. Errors about the client or the redirect URI are shown here and never
    /// redirected (the URI is not trusted); the rest go back to the client (RFC 6749 §4.1.2.1).
    fn authorize(&self, p: &Params, headers: &HeaderMap) -> Resp {
        let Some(client_id) = p.get("client_id") else {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "client_id がありません。",
                "The request has no client_id.",
            );
        };
        let Some(client) = self.client(client_id) else {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "登録されていないクライアントです。",
                "Unknown client.",
            );
        };
        let Some(redirect_uri) = p
            .get("redirect_uri")
            .filter(|r| client.redirect_uris.iter().any(|u| u == r))
        else {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "redirect_uri がこのクライアントに登録されていません。",
                "The redirect_uri is not registered for this client.",
            );
        };
        if matches!(p.repeated.as_deref(), Some("client_id" | "redirect_uri")) {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "パラメーターが重複しています。",
                "A parameter is repeated.",
            );
        }
        let state = p.get("state").unwrap_or("");
        let fail = |error: &str, description: &str| {
            let mut q = vec![("error", error), ("error_description", description)];
            if !state.is_empty() {
                q.push(("state", state));
            }
            q.push(("iss", self.issuer()));
            redirect(StatusCode::FOUND, &with_query(redirect_uri, &q))
        };
        if let Some(r) = &p.repeated {
            return fail("invalid_request", &format!("parameter {r} is repeated"));
        }
        if p.get("request").is_some() {
            return fail("request_not_supported", "request objects are not supported");
        }
        if p.get("request_uri").is_some() {
            return fail("request_uri_not_supported", "request_uri is not supported");
        }
        if p.get("response_type") != Some("code") {
            return fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            );
        }
        if p.get("response_mode").is_some_and(|m| m != "query") {
            return fail("invalid_request", "only response_mode=query is supported");
        }
        let scope = p.get("scope").unwrap_or("");
        if !scope.split(' ').any(|s| s == "openid") {
            return fail("invalid_scope", "scope must include openid");
        }
        if state.is_empty() {
            return fail("invalid_request", "state is required");
        }
        let Some(nonce) = p.get("nonce") else {
            return fail("invalid_request", "nonce is required");
        };
        if p.get("code_challenge_method") != Some("S256") {
            return fail(
                "invalid_request",
                "PKCE is required with code_challenge_method=S256",
            );
        }
        let Some(challenge) = p
            .get("code_challenge")
            .filter(|c| c.len() == 43 && valid_pkce_string(c))
        else {
            return fail("invalid_request", "code_challenge is missing or malformed");
        };
        let prompts: Vec<&str> = p.get("prompt").unwrap_or("").split(' ').collect();
        if prompts.contains(&"none") && prompts.len() > 1 {
            return fail("invalid_request", "prompt=none cannot be combined");
        }
        if let Some(bad) = prompts
            .iter()
            .find(|x| !matches!(**x, "" | "none" | "login" | "consent" | "select_account"))
        {
            return fail("invalid_request", &format!("unsupported prompt {bad}"));
        }
        let max_age = match p.get("max_age").map(str::parse::<u64>) {
            None => None,
            Some(Ok(m)) => Some(m.min(i64::MAX as u64) as i64),
            Some(Err(_)) => return fail("invalid_request", "max_age must be a number"),
        };
        let mfa_requested = p
            .get("acr_values")
            .is_some_and(|a| a.split(' ').any(|v| v == ACR_MFA));
        let req = AuthRequest {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.to_owned(),
            nonce: nonce.to_owned(),
            code_challenge: challenge.to_owned(),
            scope: scope.to_owned(),
            mfa_requested,
            login_hint: p.get("login_hint").map(str::to_owned),
        };

        let now = self.now();
        let mut st = self.lock();
        st.purge(now);
        let session = self.session_auth(&st, headers, now);
        let force_login = prompts.contains(&"login") || prompts.contains(&"select_account");
        let silent = session.as_ref().filter(|s| {
            !force_login
                // max_age=0 always re-authenticates (OIDC Core §3.1.2.1).
                && max_age.is_none_or(|m| m > 0 && now - s.auth_time <= m)
                && (!mfa_requested || s.acr == ACR_MFA)
        });
        if let Some(auth) = silent {
            let location = self.issue_code(&mut st, req, auth.clone(), now);
            return redirect(StatusCode::FOUND, &location);
        }
        if prompts.contains(&"none") {
            drop(st);
            return fail("login_required", "the user must sign in");
        }
        if st.pending.len() >= MAX_PENDING {
            // Unfinished logins expire after 10 minutes; this bounds memory until then.
            return html::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "サインイン要求が多すぎます。しばらくしてからやり直してください。",
                "Too many sign-in requests. Try again in a few minutes.",
            );
        }
        let id = random_token(24);
        st.pending.insert(
            id.clone(),
            Pending {
                req: req.clone(),
                created: now,
            },
        );
        let users = st.users.clone();
        drop(st);
        let selected = req
            .login_hint
            .as_deref()
            .or(session.as_ref().map(|s| s.username.as_str()));
        html::respond(
            StatusCode::OK,
            html::login_page(&LoginForm {
                request_id: &id,
                client_id,
                users: &users,
                selected,
                mfa_requested,
                reauth: session.is_some(),
                error: None,
                show_password_hints: self.cfg.show_password_hints,
            }),
        )
    }

    /// POST /authorize: the login form.
    fn login(&self, p: &Params, headers: &HeaderMap) -> Resp {
        let now = self.now();
        let mut st = self.lock();
        st.purge(now);
        let Some(pending) = p.get("request").and_then(|id| st.pending.get(id)).cloned() else {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "このサインイン要求は期限切れか無効です。サービスからやり直してください。",
                "This sign-in request has expired or is invalid. Start again from the service.",
            );
        };
        let username = p.get("username").unwrap_or("");
        let password = p.get("password").unwrap_or("");
        let wants_mfa = p.get("mfa").is_some();
        let user = st.user(username).cloned();
        let result = match &user {
            Some(u) if ct_eq(&u.password, password) => {
                if wants_mfa && !u.mfa {
                    Err((
                        StatusCode::BAD_REQUEST,
                        "このユーザーは MFA（ワンタイムパスワード）が登録されていません。チェックを外すか、別のユーザーを選んでください。",
                        "This user has no MFA (one-time password). Untick it or choose another user.",
                    ))
                } else {
                    Ok(u.clone())
                }
            }
            _ => Err((
                StatusCode::UNAUTHORIZED,
                "ユーザーまたはパスワードが違います。",
                "Wrong user or password.",
            )),
        };
        let user = match result {
            Ok(u) => u,
            Err((status, ja, en)) => {
                // The typed user name is not logged: people type passwords into the wrong field.
                tracing::info!(
                    known_user = user.is_some(),
                    "development IdP: sign-in refused"
                );
                let users = st.users.clone();
                drop(st);
                return html::respond(
                    status,
                    html::login_page(&LoginForm {
                        request_id: p.get("request").unwrap_or(""),
                        client_id: &pending.req.client_id,
                        users: &users,
                        selected: Some(username),
                        mfa_requested: pending.req.mfa_requested || wants_mfa,
                        reauth: false,
                        error: Some((ja, en)),
                        show_password_hints: self.cfg.show_password_hints,
                    }),
                );
            }
        };
        if let Some(id) = p.get("request") {
            st.pending.remove(id);
        }
        let mfa = wants_mfa && user.mfa;
        let auth = AuthInfo {
            username: user.username.clone(),
            auth_time: now,
            amr: if mfa { vec!["pwd", "otp"] } else { vec!["pwd"] },
            acr: if mfa { ACR_MFA } else { ACR_PWD },
            sid: random_token(16),
        };
        // A new login replaces the browser's previous IdP session.
        if let Some(old) = cookie_value(headers, SESSION_COOKIE) {
            st.sessions.remove(old);
        }
        let session_id = random_token(32);
        st.sessions.insert(
            session_id.clone(),
            Session {
                auth: auth.clone(),
                expires: now + self.cfg.session_ttl.as_secs() as i64,
            },
        );
        tracing::info!(user = %user.username, mfa, "development IdP: signed in");
        let location = self.issue_code(&mut st, pending.req, auth, now);
        drop(st);
        let mut r = redirect(StatusCode::SEE_OTHER, &location);
        let cookie = format!(
            "{SESSION_COOKIE}={session_id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            self.cfg.session_ttl.as_secs()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    /// Stores a single-use code and returns the redirect with `code`, `state` and `iss`.
    fn issue_code(&self, st: &mut State, req: AuthRequest, auth: AuthInfo, now: i64) -> String {
        let code = random_token(32);
        let location = with_query(
            &req.redirect_uri,
            &[
                ("code", code.as_str()),
                ("state", req.state.as_str()),
                ("iss", self.issuer()),
            ],
        );
        st.codes.insert(
            code,
            CodeGrant {
                req,
                auth,
                expires: now + CODE_TTL,
                used: false,
                grant_id: random_token(16),
            },
        );
        location
    }

    /// client_secret_basic or client_secret_post, never both.
    fn authenticate_client(
        &self,
        p: &Params,
        headers: &HeaderMap,
    ) -> std::result::Result<&DevClient, Box<Resp>> {
        let invalid = |d: &str| {
            let mut r = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", d);
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sekisho-devidp\""),
            );
            r
        };
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.get(..6)
                    .filter(|s| s.eq_ignore_ascii_case("basic "))
                    .map(|_| v[6..].trim().to_owned())
            });
        let (id, secret) = match basic {
            Some(b) => {
                if p.get("client_secret").is_some() {
                    return Err(Box::new(oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "use one client authentication method",
                    )));
                }
                let decoded = STANDARD
                    .decode(b.as_bytes())
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok());
                let Some((id, secret)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                    return Err(Box::new(invalid("malformed Basic credentials")));
                };
                let (Some(id), Some(secret)) = (percent_decode(id), percent_decode(secret)) else {
                    return Err(Box::new(invalid("malformed Basic credentials")));
                };
                if p.get("client_id").is_some_and(|c| c != id) {
                    return Err(Box::new(invalid(
                        "client_id differs from the authenticated client",
                    )));
                }
                (id, secret)
            }
            None => match (p.get("client_id"), p.get("client_secret")) {
                (Some(i), Some(s)) => (i.to_owned(), s.to_owned()),
                _ => return Err(Box::new(invalid("client authentication required"))),
            },
        };
        match self.client(&id) {
            Some(c) if ct_eq(&c.client_secret, &secret) => Ok(c),
            _ => Err(Box::new(invalid("client authentication failed"))),
        }
    }

    fn token(&self, p: &Params, headers: &HeaderMap) -> Resp {
        let client = match self.authenticate_client(p, headers) {
            Ok(c) => c,
            Err(r) => return *r,
        };
        if let Some(r) = &p.repeated {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("parameter {r} is repeated"),
            );
        }
        let grant = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d);
        let now = self.now();
        let mut st = self.lock();
        st.purge(now);
        match p.get("grant_type") {
            Some("authorization_code") => {
                let Some(code) = p.get("code") else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "code is required",
                    );
                };
                let Some(g) = st.codes.get_mut(code) else {
                    return grant("unknown or expired code");
                };
                if g.used {
                    // RFC 6749 §4.1.2: a reused code revokes what it produced.
                    let gid = g.grant_id.clone();
                    st.codes.remove(code);
                    st.refresh.retain(|_, r| r.grant_id != gid);
                    tracing::warn!("development IdP: authorization code reused; grant revoked");
                    return grant("code already used");
                }
                if g.req.client_id != client.client_id {
                    return grant("code was issued to another client");
                }
                if p.get("redirect_uri") != Some(g.req.redirect_uri.as_str()) {
                    return grant("redirect_uri does not match the authorization request");
                }
                let verified = p.get("code_verifier").is_some_and(|v| {
                    valid_pkce_string(v)
                        && ct_eq(&sha256_b64url(v.as_bytes()), &g.req.code_challenge)
                });
                if !verified {
                    // Not consumed: the legitimate client can still redeem it.
                    return grant("PKCE verification failed");
                }
                g.used = true;
                let (req, auth, gid) = (g.req.clone(), g.auth.clone(), g.grant_id.clone());
                let Some(user) = st.user(&auth.username).cloned() else {
                    return grant("user no longer exists");
                };
                let rt = random_token(32);
                st.refresh.insert(
                    rt.clone(),
                    RefreshGrant {
                        client_id: client.client_id.clone(),
                        scope: req.scope.clone(),
                        auth: auth.clone(),
                        expires: now + self.cfg.refresh_token_ttl.as_secs() as i64,
                        grant_id: gid,
                    },
                );
                drop(st);
                let grant = Grant {
                    user: &user,
                    client_id: &client.client_id,
                    scope: &req.scope,
                    auth: &auth,
                    nonce: Some(&req.nonce),
                };
                self.token_response(&grant, rt, now)
            }
            Some("refresh_token") => {
                let Some(rt) = p.get("refresh_token") else {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        "refresh_token is required",
                    );
                };
                match st.refresh.get(rt) {
                    Some(g) if g.client_id == client.client_id => {}
                    _ => return grant("unknown, expired or revoked refresh token"),
                }
                let Some(old) = st.refresh.remove(rt) else {
                    return grant("unknown refresh token");
                };
                let Some(user) = st.user(&old.auth.username).cloned() else {
                    return grant("user no longer exists");
                };
                // Rotation: the old refresh token stops working now.
                let new_rt = random_token(32);
                let (scope, auth) = (old.scope.clone(), old.auth.clone());
                st.refresh.insert(
                    new_rt.clone(),
                    RefreshGrant {
                        expires: now + self.cfg.refresh_token_ttl.as_secs() as i64,
                        ..old
                    },
                );
                drop(st);
                let grant = Grant {
                    user: &user,
                    client_id: &client.client_id,
                    scope: &scope,
                    auth: &auth,
                    nonce: None,
                };
                self.token_response(&grant, new_rt, now)
            }
            Some(_) => oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "supported: authorization_code, refresh_token",
            ),
            None => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            ),
        }
    }

    fn user_claims(user: &DemoUser) -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("sub".into(), json!(user.username));
        c.insert("preferred_username".into(), json!(user.username));
        c.insert("name".into(), json!(user.name));
        c.insert("email".into(), json!(user.email));
        c.insert("email_verified".into(), json!(true));
        c.insert("groups".into(), json!(user.groups));
        c
    }

    /// Signs an ID token and an access token: `(id_token, access_token)`.
    fn sign_tokens(&self, grant: &Grant<'_>, now: i64) -> (String, String) {
        let ttl = self.cfg.token_ttl.as_secs() as i64;
        let mut common = Self::user_claims(grant.user);
        common.insert("iss".into(), json!(self.issuer()));
        common.insert("iat".into(), json!(now));
        common.insert("exp".into(), json!(now + ttl));
        common.insert("auth_time".into(), json!(grant.auth.auth_time));
        common.insert("amr".into(), json!(grant.auth.amr));
        common.insert("acr".into(), json!(grant.auth.acr));

        let mut id = common.clone();
        id.insert("aud".into(), json!(grant.client_id));
        id.insert("azp".into(), json!(grant.client_id));
        id.insert("sid".into(), json!(grant.auth.sid));
        if let Some(n) = grant.nonce {
            id.insert("nonce".into(), json!(n));
        }
        let mut at = common;
        at.insert("aud".into(), json!(self.cfg.access_token_audience));
        at.insert("client_id".into(), json!(grant.client_id));
        at.insert("scope".into(), json!(grant.scope));
        at.insert("jti".into(), json!(random_token(16)));
        (
            self.key.sign("JWT", &Value::Object(id)),
            self.key.sign("at+jwt", &Value::Object(at)),
        )
    }

    fn token_response(&self, grant: &Grant<'_>, refresh_token: String, now: i64) -> Resp {
        let (id_token, access_token) = self.sign_tokens(grant, now);
        json_response(
            StatusCode::OK,
            &json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": self.cfg.token_ttl.as_secs(),
                "id_token": id_token,
                "refresh_token": refresh_token,
                "scope": grant.scope,
            }),
        )
    }

    fn userinfo(&self, headers: &HeaderMap) -> Resp {
        let invalid = || {
            let mut r = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "a valid Bearer access token is required",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            r
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.get(..7)
                    .filter(|s| s.eq_ignore_ascii_case("bearer "))
                    .map(|_| v[7..].trim())
            });
        let Some(claims) = token.and_then(|t| self.key.verify(t, "at+jwt", self.issuer())) else {
            return invalid();
        };
        let now = self.now();
        let live = claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|e| e > now);
        let aud_ok =
            claims.get("aud").and_then(Value::as_str) == Some(&self.cfg.access_token_audience);
        let st = self.lock();
        let user = claims
            .get("sub")
            .and_then(Value::as_str)
            .and_then(|s| st.user(s))
            .filter(|_| live && aud_ok);
        match user {
            Some(u) => json_response(StatusCode::OK, &Value::Object(Self::user_claims(u))),
            None => invalid(),
        }
    }

    /// RP-initiated logout 1.0. Redirects only to a URI registered for the client that the
    /// `id_token_hint` (or `client_id`) names; otherwise an error page, never a redirect.
    fn end_session(&self, p: &Params, headers: &HeaderMap) -> Resp {
        let hint = p
            .get("id_token_hint")
            .and_then(|t| self.key.verify(t, "JWT", self.issuer()));
        if p.get("id_token_hint").is_some() && hint.is_none() {
            return html::error_page(
                StatusCode::BAD_REQUEST,
                "id_token_hint を検証できません。",
                "The id_token_hint cannot be verified.",
            );
        }
        let hint_aud = hint.as_ref().and_then(|c| match c.get("aud") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        });
        let client_id = match (p.get("client_id"), hint_aud.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return html::error_page(
                    StatusCode::BAD_REQUEST,
                    "client_id と id_token_hint が一致しません。",
                    "client_id and id_token_hint disagree.",
                );
            }
            (a, b) => a.or(b),
        };
        let target = match p.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let registered = client_id
                    .and_then(|c| self.client(c))
                    .is_some_and(|c| c.post_logout_redirect_uris.iter().any(|u| u == uri));
                if !registered {
                    return html::error_page(
                        StatusCode::BAD_REQUEST,
                        "post_logout_redirect_uri がこのクライアントに登録されていません。",
                        "The post_logout_redirect_uri is not registered for this client.",
                    );
                }
                Some(uri)
            }
        };
        {
            let mut st = self.lock();
            let mut sids = Vec::new();
            if let Some(id) = cookie_value(headers, SESSION_COOKIE)
                && let Some(s) = st.sessions.remove(id)
            {
                sids.push(s.auth.sid);
            }
            if let Some(sid) = hint
                .as_ref()
                .and_then(|c| c.get("sid"))
                .and_then(Value::as_str)
            {
                sids.push(sid.to_owned());
                st.sessions.retain(|_, s| s.auth.sid != sid);
            }
            // Signing out ends the refresh tokens of that sign-in too.
            st.refresh.retain(|_, r| !sids.contains(&r.auth.sid));
        }
        let mut r = match target {
            Some(uri) => {
                let loc = match p.get("state") {
                    Some(s) => with_query(uri, &[("state", s)]),
                    None => uri.to_owned(),
                };
                redirect(StatusCode::FOUND, &loc)
            }
            None => html::respond(StatusCode::OK, html::signed_out_page()),
        };
        r.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "sekisho_devidp_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
            ),
        );
        r
    }
}
