//! The OpenID Connect relying party, built on `openidconnect` 4.
//!
//! `openidconnect` builds the authorization request (PKCE S256, `state`, `nonce`), performs the
//! code and refresh-token grants and types the IdP's errors. ID tokens are verified by this
//! crate's [`crate::jwks`] routine, the same one bearer tokens use: one JWKS cache with one
//! rate-limited refresh on unknown `kid`, one algorithm policy tied to key types, and one
//! injected clock for `exp`/`iat` (openidconnect's verifier reads the system clock).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwapOption;
use jiff::Timestamp;
use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreProviderMetadata,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardErrorResponse,
    TokenResponse,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;
use url::Url;

use crate::claims::MappedClaims;
use crate::config::OidcConfig;
use crate::error::{IdentityError, TokenError};
use crate::http_client::{HttpClientError, IdpHttpClient};
use crate::jwks::{JwksCache, JwksSource, JwtRules, discovery_url, issuer_str, verify_jwt};
use crate::login::LoginState;
use crate::metrics::IdentityMetrics;

type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Fields of the discovery document that `CoreProviderMetadata` does not carry.
#[derive(Deserialize)]
struct ExtraMetadata {
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
    #[serde(default)]
    end_session_endpoint: Option<Url>,
    #[serde(default)]
    userinfo_endpoint: Option<Url>,
}

/// What discovery found; swapped as a whole.
pub struct Discovered {
    client: DiscoveredClient,
    iss_param_supported: bool,
    end_session: Option<Url>,
    userinfo: Option<Url>,
}

/// A step-up request: re-authentication with `prompt=login`, `max_age` and `acr_values`.
#[derive(Debug, Clone, Default)]
pub struct StepUp {
    pub prompt_login: bool,
    pub max_age: Option<std::time::Duration>,
    pub acr_values: Vec<String>,
}

/// Why a refresh did not produce fresh claims.
#[derive(Debug)]
pub(crate) enum RefreshError {
    /// IdP unreachable: keep the session, try later.
    Unavailable,
    /// IdP refused the grant or the answer is unusable: end the session.
    Rejected(String),
}

/// The relying party for one issuer.
pub struct OidcProvider {
    cfg: OidcConfig,
    issuer: String,
    http: IdpHttpClient,
    discovered: ArcSwapOption<Discovered>,
    jwks: Arc<JwksCache>,
    outage_until: AtomicI64,
    metrics: Arc<IdentityMetrics>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .field("client_id", &self.cfg.client_id)
            .finish_non_exhaustive()
    }
}

fn map_grant_error(
    e: RequestTokenError<HttpClientError, StandardErrorResponse<CoreErrorResponseType>>,
) -> IdentityError {
    match e {
        RequestTokenError::ServerResponse(r) => IdentityError::GrantRejected(r.error().to_string()),
        RequestTokenError::Request(e) => IdentityError::IdpUnavailable(e.to_string()),
        // oauth2 reports a non-JSON error page (a 502/503 from a proxy in front of the IdP)
        // as a parse error: the IdP is not answering properly.
        RequestTokenError::Parse(_, _) => {
            IdentityError::IdpUnavailable("unparsable token endpoint answer".into())
        }
        RequestTokenError::Other(s) => IdentityError::IdpUnavailable(s),
    }
}

impl OidcProvider {
    /// No I/O: discovery happens at the first login (or [`OidcProvider::discover`]), so a
    /// gateway that restarts during an IdP outage still serves existing sessions.
    pub fn new(cfg: OidcConfig, metrics: Arc<IdentityMetrics>) -> Result<Self, IdentityError> {
        if !cfg.scopes.iter().any(|s| s == "openid") {
            return Err(IdentityError::Config(
                "oidc.scopes must include openid".into(),
            ));
        }
        let http = IdpHttpClient::new(cfg.http_timeout)
            .map_err(|e| IdentityError::Config(e.to_string()))?;
        let jwks = Arc::new(JwksCache::new(
            http.clone(),
            JwksSource::Discover(cfg.issuer.clone()),
            cfg.id_token_algs.clone(),
            cfg.jwks_min_refresh_interval,
            metrics.clone(),
        ));
        Ok(OidcProvider {
            issuer: issuer_str(&cfg.issuer),
            cfg,
            http,
            discovered: ArcSwapOption::empty(),
            jwks,
            outage_until: AtomicI64::new(i64::MIN),
            metrics,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// The JWKS cache (shareable with a bearer verifier for the same issuer).
    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    pub(crate) fn note_outage(&self, now: Timestamp) {
        IdentityMetrics::inc(&self.metrics.idp_unavailable);
        self.outage_until.store(
            now.as_second() + self.cfg.outage_backoff.as_secs() as i64,
            Ordering::Relaxed,
        );
    }

    /// True while refreshes pause after an outage.
    pub fn in_outage(&self, now: Timestamp) -> bool {
        now.as_second() < self.outage_until.load(Ordering::Relaxed)
    }

    /// Fetches the discovery document, checks its issuer and swaps it in.
    pub async fn discover(&self, now: Timestamp) -> Result<(), IdentityError> {
        let res = self.discover_inner().await;
        match &res {
            Ok(d) => {
                IdentityMetrics::inc(&self.metrics.discovery_ok);
                self.discovered.store(Some(d.clone()));
            }
            Err(IdentityError::IdpUnavailable(_)) => {
                IdentityMetrics::inc(&self.metrics.discovery_failed);
                self.note_outage(now);
            }
            Err(_) => IdentityMetrics::inc(&self.metrics.discovery_failed),
        }
        res.map(|_| ())
    }

    async fn discover_inner(&self) -> Result<Arc<Discovered>, IdentityError> {
        let resp = self
            .http
            .get(&discovery_url(&self.cfg.issuer), "application/json", None)
            .await
            .map_err(|e| IdentityError::IdpUnavailable(e.to_string()))?;
        if resp.status().is_server_error() {
            return Err(IdentityError::IdpUnavailable(format!(
                "discovery answered {}",
                resp.status()
            )));
        }
        if !resp.status().is_success() {
            return Err(IdentityError::Protocol(format!(
                "discovery answered {}",
                resp.status()
            )));
        }
        let meta: CoreProviderMetadata = serde_json::from_slice(resp.body())
            .map_err(|e| IdentityError::Protocol(format!("discovery document: {e}")))?;
        if meta.issuer().as_str() != self.issuer {
            return Err(IdentityError::Protocol(
                "discovered issuer differs from the configured issuer".into(),
            ));
        }
        let extra: ExtraMetadata = serde_json::from_slice(resp.body())
            .map_err(|e| IdentityError::Protocol(format!("discovery document: {e}")))?;
        self.jwks.set_uri(meta.jwks_uri().url().as_str());
        let client = CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.cfg.client_id.clone()),
            self.cfg
                .client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.expose().to_owned())),
        );
        Ok(Arc::new(Discovered {
            client,
            iss_param_supported: extra.authorization_response_iss_parameter_supported,
            end_session: extra.end_session_endpoint,
            userinfo: extra.userinfo_endpoint,
        }))
    }

    async fn discovered(
        &self,
        now: Timestamp,
        probe: bool,
    ) -> Result<Arc<Discovered>, IdentityError> {
        if probe || self.discovered.load().is_none() {
            self.discover(now).await?;
        }
        self.discovered
            .load_full()
            .ok_or_else(|| IdentityError::IdpUnavailable("not discovered".into()))
    }

    /// `https://<host>/.sekisho/callback`.
    pub fn redirect_uri(&self, host: &str) -> Result<RedirectUrl, IdentityError> {
        RedirectUrl::new(format!(
            "{}://{host}{}",
            self.cfg.redirect_scheme, self.cfg.callback_path
        ))
        .map_err(|_| IdentityError::Config(format!("bad redirect URI for host {host:?}")))
    }

    /// Builds the authorization URL and the state to remember.
    pub(crate) async fn authorization_url(
        &self,
        host: &str,
        return_to: String,
        step_up: Option<&StepUp>,
        now: Timestamp,
    ) -> Result<(Url, LoginState), IdentityError> {
        let d = self.discovered(now, self.cfg.probe_on_login).await?;
        let redirect = self.redirect_uri(host)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect));
        for s in self.cfg.scopes.iter().filter(|s| s.as_str() != "openid") {
            req = req.add_scope(Scope::new(s.clone()));
        }
        for (k, v) in &self.cfg.extra_auth_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let mut max_age = None;
        if let Some(step) = step_up {
            if step.prompt_login {
                req = req.add_prompt(CoreAuthPrompt::Login);
            }
            if let Some(m) = step.max_age {
                req = req.set_max_age(m);
                max_age = Some(m.as_secs());
            }
            for a in &step.acr_values {
                req = req.add_auth_context_value(AuthenticationContextClass::new(a.clone()));
            }
        }
        let (url, csrf, nonce) = req.url();
        Ok((
            url,
            LoginState {
                state: csrf.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
                return_to,
                host: host.to_owned(),
                started: now.as_second(),
                max_age,
            },
        ))
    }

    /// RFC 9207: the authorization response's `iss` must be this issuer; it is required when
    /// the IdP advertises `authorization_response_iss_parameter_supported`.
    /// Discovers first if needed (a gateway restarted between login start and callback).
    pub(crate) async fn check_response_issuer(
        &self,
        iss: Option<&str>,
        now: Timestamp,
    ) -> Result<(), IdentityError> {
        let required = self.discovered(now, false).await?.iss_param_supported;
        match iss {
            Some(i) if i == self.issuer => Ok(()),
            Some(_) => Err(IdentityError::IssuerMismatch),
            None if required => Err(IdentityError::IssuerMismatch),
            None => Ok(()),
        }
    }

    fn id_token_rules(&self) -> (Vec<String>, JwtRules<'_>) {
        let aud = vec![self.cfg.client_id.clone()];
        // An access token (`typ: at+jwt`, RFC 9068) is never an ID token.
        static ID_TOKEN_TYPES: std::sync::LazyLock<Vec<String>> =
            std::sync::LazyLock::new(|| vec!["jwt".to_owned()]);
        let rules = JwtRules {
            issuer: &self.issuer,
            audiences: &[],
            leeway: self.cfg.leeway,
            max_bytes: 16 * 1024,
            accepted_types: &ID_TOKEN_TYPES,
            require_typ: false,
        };
        (aud, rules)
    }

    async fn verify_id_token(
        &self,
        id_token: &str,
        now: Timestamp,
    ) -> Result<Map<String, Value>, TokenError> {
        let (aud, mut rules) = self.id_token_rules();
        rules.audiences = &aud;
        let (claims, _) = verify_jwt(&self.jwks, id_token, &rules, now).await?;
        // OIDC Core 3.1.3.7: with several audiences, azp must be us; if present, it must be us.
        let multi_aud = claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|a| a.len() > 1);
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != self.cfg.client_id => return Err(TokenError::WrongAudience),
            None if multi_aud => return Err(TokenError::MissingClaim("azp")),
            _ => {}
        }
        Ok(claims)
    }

    /// Exchanges the code and verifies the ID token (signature, iss, aud, azp, exp, nonce,
    /// auth_time against a requested max_age). Returns mapped claims and the refresh token.
    pub(crate) async fn exchange(
        &self,
        login: &LoginState,
        code: &str,
        now: Timestamp,
    ) -> Result<(MappedClaims, Option<String>), IdentityError> {
        let d = self.discovered(now, false).await?;
        let resp = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| IdentityError::Protocol(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
            .set_redirect_uri(Cow::Owned(self.redirect_uri(&login.host)?))
            .request_async(&self.http)
            .await
            .map_err(map_grant_error);
        let resp = match resp {
            Err(e @ IdentityError::IdpUnavailable(_)) => {
                self.note_outage(now);
                return Err(e);
            }
            other => other?,
        };
        let id_token = resp
            .id_token()
            .ok_or_else(|| IdentityError::Protocol("token response has no id_token".into()))?
            .to_string();
        let claims = self
            .verify_id_token(&id_token, now)
            .await
            .map_err(|e| match e {
                TokenError::KeysUnavailable(m) => IdentityError::IdpUnavailable(m),
                e => IdentityError::IdToken(e),
            })?;
        let nonce_ok = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(login.nonce.as_bytes())));
        if !nonce_ok {
            return Err(IdentityError::NonceMismatch);
        }
        if let Some(max_age) = login.max_age {
            let auth_time =
                claims
                    .get("auth_time")
                    .and_then(Value::as_i64)
                    .ok_or(IdentityError::IdToken(TokenError::MissingClaim(
                        "auth_time",
                    )))?;
            if now.as_second() - auth_time > max_age as i64 + self.cfg.leeway.as_secs() as i64 {
                return Err(IdentityError::IdToken(TokenError::MissingClaim(
                    "auth_time",
                )));
            }
        }
        let mapped = MappedClaims::from_raw(&claims, &self.cfg.claims, false)
            .ok_or(IdentityError::IdToken(TokenError::MissingClaim("sub")))?;
        Ok((mapped, resp.refresh_token().map(|r| r.secret().clone())))
    }

    /// Refreshes claims through the refresh token. The subject must not change (OIDC Core
    /// 12.2). Claims come from the new ID token, or from userinfo when there is none.
    pub(crate) async fn refresh(
        &self,
        refresh_token: &str,
        expected_sub: &str,
        previous_auth_time: Option<i64>,
        now: Timestamp,
    ) -> Result<(MappedClaims, Option<String>), RefreshError> {
        let d = match self.discovered(now, false).await {
            Ok(d) => d,
            Err(IdentityError::IdpUnavailable(_)) => return Err(RefreshError::Unavailable),
            Err(e) => return Err(RefreshError::Rejected(e.to_string())),
        };
        let rt = RefreshToken::new(refresh_token.to_owned());
        let resp = d
            .client
            .exchange_refresh_token(&rt)
            .map_err(|e| RefreshError::Rejected(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(map_grant_error);
        let resp = match resp {
            Ok(r) => r,
            Err(IdentityError::IdpUnavailable(_)) => {
                self.note_outage(now);
                return Err(RefreshError::Unavailable);
            }
            Err(e) => return Err(RefreshError::Rejected(e.to_string())),
        };
        let raw = match resp.id_token() {
            Some(t) => match self.verify_id_token(&t.to_string(), now).await {
                Ok(c) => c,
                Err(TokenError::KeysUnavailable(_)) => return Err(RefreshError::Unavailable),
                Err(e) => return Err(RefreshError::Rejected(e.to_string())),
            },
            None => self.userinfo(&d, resp.access_token().secret(), now).await?,
        };
        let mut mapped = MappedClaims::from_raw(&raw, &self.cfg.claims, false)
            .ok_or_else(|| RefreshError::Rejected("no subject".into()))?;
        if mapped.sub != expected_sub {
            return Err(RefreshError::Rejected("subject changed on refresh".into()));
        }
        if mapped.auth_time.is_none() {
            mapped.auth_time = previous_auth_time;
        }
        let new_rt = resp.refresh_token().map(|r| r.secret().clone());
        Ok((mapped, new_rt))
    }

    async fn userinfo(
        &self,
        d: &Discovered,
        access_token: &str,
        now: Timestamp,
    ) -> Result<Map<String, Value>, RefreshError> {
        let Some(url) = &d.userinfo else {
            return Err(RefreshError::Rejected(
                "no id_token on refresh and no userinfo endpoint".into(),
            ));
        };
        let resp = match self
            .http
            .get(url.as_str(), "application/json", Some(access_token))
            .await
        {
            Ok(r) => r,
            Err(_) => {
                self.note_outage(now);
                return Err(RefreshError::Unavailable);
            }
        };
        if resp.status().is_server_error() {
            self.note_outage(now);
            return Err(RefreshError::Unavailable);
        }
        if !resp.status().is_success() {
            return Err(RefreshError::Rejected(format!(
                "userinfo answered {}",
                resp.status()
            )));
        }
        serde_json::from_slice(resp.body())
            .map_err(|_| RefreshError::Rejected("userinfo is not a JSON object".into()))
    }

    /// RP-initiated logout URL (OIDC RP-Initiated Logout 1.0) with `client_id` and
    /// `post_logout_redirect_uri = https://<host>/.sekisho/logged-out`; `None` if the IdP has
    /// no `end_session_endpoint` (or was never discovered).
    pub fn logout_url(&self, host: &str) -> Option<Url> {
        let d = self.discovered.load_full()?;
        let mut url = d.end_session.clone()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.cfg.client_id)
            .append_pair(
                "post_logout_redirect_uri",
                &format!(
                    "{}://{host}{}",
                    self.cfg.redirect_scheme, self.cfg.post_logout_path
                ),
            );
        Some(url)
    }
}
