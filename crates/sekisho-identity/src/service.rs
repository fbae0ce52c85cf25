//! [`IdentityService`]: the few calls the gateway makes, on `http` types.
//!
//! | gateway path / step                 | call                                        |
//! |-------------------------------------|---------------------------------------------|
//! | step 3, every request               | [`IdentityService::authenticate`]           |
//! | policy says "login required"/step-up| [`IdentityService::start_login`]            |
//! | `GET /.sekisho/callback`            | [`IdentityService::finish_login`]           |
//! | `/.sekisho/logout`                  | [`IdentityService::logout`]                 |
//! | 401 for API clients                 | [`IdentityService::www_authenticate`]       |
//! | step 7, forward                     | [`crate::upstream`] functions               |

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Uri};
use jiff::Timestamp;

use crate::bearer::{BearerVerifier, bearer_token};
use crate::claims::VerifiedIdentity;
use crate::config::IdentityConfig;
use crate::error::{IdentityError, TokenError};
use crate::keys::CookieKeyRing;
use crate::login::{UsedStates, clear_login_cookie, login_cookie, open_login};
use crate::metrics::IdentityMetrics;
use crate::oidc::{OidcProvider, RefreshError};
use crate::return_target::safe_return_target;
use crate::session::{Decoded, Session, SessionManager, SessionMemo, SessionRejection};

pub use crate::oidc::StepUp;

/// `Debug` for `Set-Cookie` lists: how many, never the values (sealed sessions, login state).
struct RedactedCookies<'a>(&'a [HeaderValue]);
impl std::fmt::Debug for RedactedCookies<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} Set-Cookie values, redacted]", self.0.len())
    }
}

/// `Debug` for URLs that carry state, nonce or hints: scheme, host and path only.
fn redacted_url(u: &str) -> String {
    u.split(['?', '#']).next().unwrap_or("").to_owned() + "?[redacted]"
}

impl std::fmt::Debug for LoginRedirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRedirect")
            .field("location", &redacted_url(&self.location))
            .field("set_cookies", &RedactedCookies(&self.set_cookies))
            .finish()
    }
}

impl std::fmt::Debug for LoginComplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginComplete")
            .field("identity", &self.identity)
            .field("return_to", &self.return_to)
            .field("set_cookies", &RedactedCookies(&self.set_cookies))
            .finish()
    }
}

impl std::fmt::Debug for LogoutResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutResponse")
            .field("location", &redacted_url(&self.location))
            .field("set_cookies", &RedactedCookies(&self.set_cookies))
            .field("had_session", &self.had_session)
            .finish()
    }
}

impl std::fmt::Debug for SessionOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionOutcome::Authenticated {
                identity,
                set_cookies,
            } => f
                .debug_struct("Authenticated")
                .field("identity", identity)
                .field("set_cookies", &RedactedCookies(set_cookies))
                .finish(),
            SessionOutcome::Anonymous => f.write_str("Anonymous"),
            SessionOutcome::SessionRejected {
                reason,
                set_cookies,
            } => f
                .debug_struct("SessionRejected")
                .field("reason", reason)
                .field("set_cookies", &RedactedCookies(set_cookies))
                .finish(),
            SessionOutcome::BearerRejected(e) => f.debug_tuple("BearerRejected").field(e).finish(),
        }
    }
}

/// Send the browser to the IdP.
pub struct LoginRedirect {
    /// The IdP authorization URL (`302 Location`).
    pub location: String,
    /// The login cookie, and removals of older pending login cookies when there are too many
    /// (`Set-Cookie`, in order).
    pub set_cookies: Vec<HeaderValue>,
}

/// At most this many logins may be pending in one browser; beyond it the older login cookies
/// are removed, so a page that triggers many logins cannot grow the browser's cookies to 431.
pub const MAX_PENDING_LOGINS: usize = 3;

/// Concurrent requests of one session share one refresh for this long (by `now`), so a
/// rotating refresh token is never used twice.
const REFRESH_SHARE_SECS: i64 = 30;

type RefreshResult = Result<(crate::claims::MappedClaims, Option<String>), RefreshError>;

/// A finished login.
pub struct LoginComplete {
    pub identity: Arc<VerifiedIdentity>,
    /// Safe same-origin path to redirect to (`302 Location`).
    pub return_to: String,
    /// Session cookies and removal of the login cookie (`Set-Cookie`, in order).
    pub set_cookies: Vec<HeaderValue>,
}

/// A logout.
pub struct LogoutResponse {
    /// The IdP's end-session URL, or the local logged-out page.
    pub location: String,
    /// Removal of every session chunk.
    pub set_cookies: Vec<HeaderValue>,
    /// A session was present (and is now revoked).
    pub had_session: bool,
}

/// Outcome of the identity step for a request.
pub enum SessionOutcome {
    /// Identified; send `set_cookies` with the response (may be empty).
    Authenticated {
        /// Shared: a session's identity is made once per connection and cookie.
        identity: Arc<VerifiedIdentity>,
        set_cookies: Vec<HeaderValue>,
    },
    /// Nobody: no session cookie and no bearer token.
    Anonymous,
    /// A session cookie was present but refused; send `set_cookies` (they clear it) and treat
    /// the request as anonymous (browsers: login).
    SessionRejected {
        reason: SessionRejection,
        set_cookies: Vec<HeaderValue>,
    },
    /// A bearer token was present but refused: 401 (or 503 when keys are unavailable) with
    /// [`IdentityService::www_authenticate`].
    BearerRejected(TokenError),
}

/// Sessions, logins and bearer tokens for one gateway.
#[derive(Debug)]
pub struct IdentityService {
    sessions: SessionManager,
    used_states: UsedStatesDebug,
    oidc: Option<OidcProvider>,
    bearer: Option<BearerVerifier>,
    metrics: Arc<IdentityMetrics>,
    refreshes: RefreshShare,
}

/// Recent refresh outcomes by session id, each with the `now` it was made at.
struct RefreshShare(moka::future::Cache<String, Arc<(i64, RefreshResult)>>);
impl std::fmt::Debug for RefreshShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshShare")
    }
}

struct UsedStatesDebug(UsedStates);
impl std::fmt::Debug for UsedStatesDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UsedStates")
    }
}

fn query_param(uri: &Uri, name: &str) -> Result<Option<String>, IdentityError> {
    let Some(q) = uri.query() else {
        return Ok(None);
    };
    let mut found = None;
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if k == name {
            if found.is_some() {
                return Err(IdentityError::BadCallback("repeated parameter"));
            }
            found = Some(v.into_owned());
        }
    }
    Ok(found)
}

impl IdentityService {
    /// Builds everything; no I/O (discovery and JWKS are fetched lazily).
    pub fn new(cfg: IdentityConfig, keys: CookieKeyRing) -> Result<Self, IdentityError> {
        let metrics = Arc::new(IdentityMetrics::default());
        let oidc = cfg
            .oidc
            .map(|c| OidcProvider::new(c, metrics.clone()))
            .transpose()?;
        let issuer = oidc
            .as_ref()
            .map(|o| o.issuer().to_owned())
            .unwrap_or_default();
        let sessions = SessionManager::new(cfg.session.clone(), keys, issuer, metrics.clone())?;
        let bearer = match cfg.bearer {
            None => None,
            Some(b) => Some(match &oidc {
                // Same issuer and no explicit JWKS URI: share the provider's key cache.
                Some(o) if o.issuer() == b.issuer && b.jwks_uri.is_none() => {
                    BearerVerifier::with_jwks(b, o.jwks().clone(), metrics.clone())?
                }
                _ => BearerVerifier::new(b, metrics.clone())?,
            }),
        };
        Ok(IdentityService {
            used_states: UsedStatesDebug(UsedStates::new(&cfg.session)),
            sessions,
            oidc,
            bearer,
            metrics,
            refreshes: RefreshShare(
                moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(std::time::Duration::from_secs(
                        REFRESH_SHARE_SECS as u64 * 2,
                    ))
                    .build(),
            ),
        })
    }

    pub fn metrics(&self) -> &IdentityMetrics {
        &self.metrics
    }
    pub fn sessions(&self) -> &SessionManager {
        &self.sessions
    }
    pub fn oidc(&self) -> Option<&OidcProvider> {
        self.oidc.as_ref()
    }
    pub fn bearer(&self) -> Option<&BearerVerifier> {
        self.bearer.as_ref()
    }
    /// Rotates the cookie keys (configuration reload).
    pub fn set_cookie_keys(&self, keys: CookieKeyRing) {
        self.sessions.set_keys(keys);
    }

    /// Starts a login on `host` that returns to `return_to` (the original request's path and
    /// query) if `allowed(host, path)`, else to `/`. `headers` are the request's (to bound the
    /// pending login cookies). Fails with `IdpUnavailable` when the IdP cannot be reached, so
    /// the user sees a clear 503 page instead of a browser error.
    pub async fn start_login(
        &self,
        host: &str,
        return_to: &str,
        allowed: impl Fn(&str, &str) -> bool,
        step_up: Option<&StepUp>,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<LoginRedirect, IdentityError> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or_else(|| IdentityError::Config("no OIDC provider configured".into()))?;
        let target = safe_return_target(host, return_to, allowed).unwrap_or_else(|| "/".to_owned());
        let (url, login) = oidc.authorization_url(host, target, step_up, now).await?;
        IdentityMetrics::inc(&self.metrics.logins_started);
        let cfg = self.sessions.config();
        let mut set_cookies = vec![login_cookie(cfg, &self.sessions.keys(), &login)];
        let prefix = format!("{}-login-", cfg.cookie_name);
        let mut pending: Vec<&str> = crate::session::all_cookie_pairs(headers)
            .map(|(name, _)| name)
            .filter(|name| name.starts_with(&prefix))
            .collect();
        pending.sort_unstable();
        pending.dedup();
        if pending.len() >= MAX_PENDING_LOGINS {
            for name in pending {
                set_cookies.push(crate::session::set_cookie(name, "", 0));
            }
        }
        Ok(LoginRedirect {
            location: url.to_string(),
            set_cookies,
        })
    }

    /// Handles `GET /.sekisho/callback?code&state&iss` on `host`: the login cookie for this
    /// state must be present in this browser, unused, fresh and from this host; the issuer
    /// (RFC 9207), code, PKCE verifier and nonce must all check out.
    pub async fn finish_login(
        &self,
        host: &str,
        uri: &Uri,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<LoginComplete, IdentityError> {
        let res = self.finish_login_inner(host, uri, headers, now).await;
        match &res {
            Ok(_) => IdentityMetrics::inc(&self.metrics.logins_completed),
            Err(IdentityError::IdpUnavailable(_)) => {}
            Err(_) => IdentityMetrics::inc(&self.metrics.logins_failed),
        }
        res
    }

    async fn finish_login_inner(
        &self,
        host: &str,
        uri: &Uri,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<LoginComplete, IdentityError> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or_else(|| IdentityError::Config("no OIDC provider configured".into()))?;
        let state = query_param(uri, "state")?.ok_or(IdentityError::BadCallback("no state"))?;
        let cfg = self.sessions.config();
        let login = open_login(cfg, &self.sessions.keys(), headers, &state, now)?;
        if login.host != host {
            return Err(IdentityError::LoginHostMismatch);
        }
        if !self.used_states.0.first_use(&state) {
            return Err(IdentityError::LoginStateReplayed);
        }
        oidc.check_response_issuer(query_param(uri, "iss")?.as_deref(), now)
            .await?;
        if let Some(error) = query_param(uri, "error")? {
            return Err(IdentityError::AuthorizationDenied {
                error,
                description: query_param(uri, "error_description")?,
            });
        }
        let code = query_param(uri, "code")?.ok_or(IdentityError::BadCallback("no code"))?;
        let (claims, refresh_token) = oidc.exchange(&login, &code, now).await?;
        let session = self.sessions.create(claims, refresh_token, now);
        let mut set_cookies = self.sessions.encode(&session, now)?;
        set_cookies.push(clear_login_cookie(cfg, &state));
        Ok(LoginComplete {
            identity: self.sessions.identity(session),
            return_to: login.return_to,
            set_cookies,
        })
    }

    /// The identity step: a bearer token if the request has one (then the session cookie is
    /// ignored), else the session cookie — refreshed through the refresh token when its claims
    /// are older than `claims_max_age`. While the IdP is down, sessions keep their claims.
    pub async fn authenticate(&self, headers: &HeaderMap, now: Timestamp) -> SessionOutcome {
        self.authenticate_in(headers, now, None).await
    }

    /// [`IdentityService::authenticate`] for a request on a connection that keeps a
    /// [`SessionMemo`] of the session cookie it sent last.
    pub async fn authenticate_in(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
        memo: Option<&SessionMemo>,
    ) -> SessionOutcome {
        match bearer_token(headers) {
            Err(e) => return SessionOutcome::BearerRejected(e),
            Ok(Some(token)) => {
                let Some(b) = &self.bearer else {
                    return SessionOutcome::BearerRejected(TokenError::NotAccepted);
                };
                return match b.verify(token, now).await {
                    Ok(identity) => SessionOutcome::Authenticated {
                        identity: Arc::new(identity),
                        set_cookies: Vec::new(),
                    },
                    Err(e) => SessionOutcome::BearerRejected(e),
                };
            }
            Ok(None) => {}
        }
        self.authenticate_session(headers, now, memo).await
    }

    /// Session cookies only (see [`IdentityService::authenticate`]).
    pub async fn authenticate_session(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
        memo: Option<&SessionMemo>,
    ) -> SessionOutcome {
        let mut session = match self.sessions.decode_in(headers, now, memo) {
            Decoded::Absent => return SessionOutcome::Anonymous,
            Decoded::Rejected(reason) => {
                return SessionOutcome::SessionRejected {
                    reason,
                    set_cookies: self.sessions.clear_cookies(),
                };
            }
            Decoded::Valid(s) => s,
        };
        let mut dirty = false;
        if self.sessions.needs_refresh(&session, now) {
            let (Some(oidc), Some(rt)) = (&self.oidc, session.data.refresh_token.clone()) else {
                self.sessions.revoke(&session);
                return SessionOutcome::SessionRejected {
                    reason: SessionRejection::ClaimsStale,
                    set_cookies: self.sessions.clear_cookies(),
                };
            };
            if oidc.in_outage(now) {
                IdentityMetrics::inc(&self.metrics.refresh_deferred);
            } else {
                // Boxed: the refresh (an IdP round trip behind a shared cache entry) makes a
                // future of ≈ 12 KB, and every request's future is as large as the largest
                // step it may take. Inline, each request of every route copied those bytes
                // several times (into its task, into hyper's dispatcher) although a refresh
                // happens once per session every `claims_max_age`.
                match Box::pin(self.refresh_claims(&mut session, oidc, rt, now)).await {
                    Ok(refreshed) => dirty |= refreshed,
                    Err(rejected) => return rejected,
                }
            }
        }
        if dirty || self.sessions.needs_touch(&session, now) {
            self.sessions.touch(&mut session, now);
            dirty = true;
        }
        let set_cookies = if dirty {
            match self.sessions.encode(&session, now) {
                Ok(v) => v,
                Err(e) => {
                    // Refreshed claims no longer fit: end the session with a clear reason.
                    tracing::warn!(error = %e, "refreshed session does not fit in cookies");
                    self.sessions.revoke(&session);
                    return SessionOutcome::SessionRejected {
                        reason: SessionRejection::Invalid,
                        set_cookies: self.sessions.clear_cookies(),
                    };
                }
            }
        } else {
            Vec::new()
        };
        IdentityMetrics::inc(&self.metrics.sessions_valid);
        SessionOutcome::Authenticated {
            identity: self.sessions.identity(session),
            set_cookies,
        }
    }

    /// The claim refresh of [`IdentityService::authenticate_session`]: `Ok(true)` when the
    /// session got fresh claims, `Ok(false)` when it keeps its own (IdP unavailable), `Err`
    /// with the answer when the IdP refused and the session ends. One refresh per session
    /// at a time: concurrent requests share the first one's result.
    async fn refresh_claims(
        &self,
        session: &mut Session,
        oidc: &OidcProvider,
        rt: String,
        now: Timestamp,
    ) -> Result<bool, SessionOutcome> {
        let sid = session.data.sid.clone();
        let now_s = now.as_second();
        if let Some(prev) = self.refreshes.0.get(&sid).await
            && (now_s - prev.0).abs() > REFRESH_SHARE_SECS
        {
            self.refreshes.0.invalidate(&sid).await;
        }
        let shared = self
            .refreshes
            .0
            .get_with(sid, async {
                let sub = &session.data.claims.sub;
                let auth_time = session.data.claims.auth_time;
                Arc::new((now_s, oidc.refresh(&rt, sub, auth_time, now).await))
            })
            .await;
        match &shared.1 {
            Ok((claims, new_rt)) => {
                let (claims, new_rt) = (claims.clone(), new_rt.clone());
                IdentityMetrics::inc(&self.metrics.refresh_ok);
                let data = session.data_mut();
                data.claims = claims;
                data.claims_at = now_s;
                if new_rt.is_some() {
                    data.refresh_token = new_rt;
                }
                Ok(true)
            }
            Err(RefreshError::Unavailable) => {
                IdentityMetrics::inc(&self.metrics.refresh_deferred);
                tracing::warn!(
                    "IdP unavailable during claim refresh; keeping the session's claims"
                );
                Ok(false)
            }
            Err(RefreshError::Rejected(why)) => {
                IdentityMetrics::inc(&self.metrics.refresh_rejected);
                tracing::info!(reason = %why, "claim refresh refused; ending the session");
                self.sessions.revoke(session);
                Err(SessionOutcome::SessionRejected {
                    reason: SessionRejection::RefreshRejected,
                    set_cookies: self.sessions.clear_cookies(),
                })
            }
        }
    }

    /// Logout on `host`: revokes the session id (a replayed cookie is refused), clears the
    /// cookies and returns where to send the browser: the IdP's end-session endpoint
    /// (RP-initiated logout) or the local logged-out page.
    pub fn logout(&self, host: &str, headers: &HeaderMap) -> LogoutResponse {
        let had_session = self.sessions.revoke_from_headers(headers);
        IdentityMetrics::inc(&self.metrics.logouts);
        let location = self
            .oidc
            .as_ref()
            .and_then(|o| o.logout_url(host))
            .map(|u| u.to_string())
            .unwrap_or_else(|| {
                self.oidc
                    .as_ref()
                    .map(|o| o.config().post_logout_path.clone())
                    .unwrap_or_else(|| "/".into())
            });
        LogoutResponse {
            location,
            set_cookies: self.sessions.clear_cookies(),
            had_session,
        }
    }

    /// `WWW-Authenticate` for a 401 (RFC 6750): `Bearer realm="sekisho"` plus the error code
    /// when a token was refused. The description is fixed text, never token content.
    pub fn www_authenticate(&self, err: Option<&TokenError>) -> HeaderValue {
        let s = match err {
            Some(e) if !e.rfc6750_code().is_empty() => {
                // Only visible ASCII without quotes or backslashes inside the quoted string.
                let text = match e {
                    TokenError::KeysUnavailable(_) => "signing keys are unavailable".to_owned(),
                    e => e.to_string(),
                };
                let description: String = text
                    .chars()
                    .map(|c| {
                        if c.is_ascii_graphic() && c != '"' && c != '\\' {
                            c
                        } else {
                            ' '
                        }
                    })
                    .collect();
                format!(
                    "Bearer realm=\"sekisho\", error=\"{}\", error_description=\"{description}\"",
                    e.rfc6750_code()
                )
            }
            _ => "Bearer realm=\"sekisho\"".to_owned(),
        };
        HeaderValue::from_str(&s)
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"sekisho\""))
    }
}
