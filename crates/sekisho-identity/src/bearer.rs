//! Bearer tokens (`Authorization: Bearer <JWT>`) for scripts and apps.

use std::sync::Arc;

use http::HeaderMap;
use http::header::AUTHORIZATION;
use jiff::Timestamp;
use serde_json::Value;

use crate::claims::{AuthMethod, MappedClaims, VerifiedIdentity};
use crate::config::BearerConfig;
use crate::error::{IdentityError, TokenError};
use crate::http_client::IdpHttpClient;
use crate::jwks::{JwksCache, JwksSource, JwtRules, Refresh, verify_jwt};
use crate::metrics::IdentityMetrics;

/// Verifies bearer JWTs of one issuer against its JWKS.
#[derive(Debug)]
pub struct BearerVerifier {
    cfg: BearerConfig,
    types: Vec<String>,
    jwks: Arc<JwksCache>,
    metrics: Arc<IdentityMetrics>,
}

/// The bearer token of a request: `Ok(None)` without an `Authorization` header, an error for
/// several headers, another scheme with a JWT-looking value, or an empty token.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let mut all = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(TokenError::Malformed);
    }
    let s = first.to_str().map_err(|_| TokenError::Malformed)?;
    let Some((scheme, token)) = s.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(Some(token))
}

impl BearerVerifier {
    /// A verifier with its own JWKS cache (nothing is fetched until the first token).
    pub fn new(cfg: BearerConfig, metrics: Arc<IdentityMetrics>) -> Result<Self, IdentityError> {
        let http = IdpHttpClient::new(cfg.http_timeout)
            .map_err(|e| IdentityError::Config(e.to_string()))?;
        let source = match &cfg.jwks_uri {
            Some(u) => JwksSource::Uri(u.clone()),
            None => JwksSource::Discover(url::Url::parse(&cfg.issuer).map_err(|_| {
                IdentityError::Config(format!("bearer.issuer {:?} is not a URL", cfg.issuer))
            })?),
        };
        let jwks = Arc::new(JwksCache::new(
            http,
            source,
            cfg.algorithms.clone(),
            cfg.jwks_min_refresh_interval,
            metrics.clone(),
        ));
        Self::with_jwks(cfg, jwks, metrics)
    }

    /// A verifier sharing a JWKS cache (e.g. the OIDC provider's, same issuer).
    pub fn with_jwks(
        cfg: BearerConfig,
        jwks: Arc<JwksCache>,
        metrics: Arc<IdentityMetrics>,
    ) -> Result<Self, IdentityError> {
        if cfg.audiences.is_empty() {
            return Err(IdentityError::Config(
                "bearer.audiences must not be empty".into(),
            ));
        }
        let types = cfg
            .accepted_types
            .iter()
            .map(|t| {
                let t = t.to_ascii_lowercase();
                t.strip_prefix("application/").unwrap_or(&t).to_owned()
            })
            .collect();
        Ok(BearerVerifier {
            cfg,
            types,
            jwks,
            metrics,
        })
    }

    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// Fetches the keys ahead of the first token (at start; failure is not fatal).
    pub async fn prefetch(&self, now: Timestamp) -> Refresh {
        self.jwks.refresh(now).await
    }

    /// Verifies `token` and maps its claims. All claims are kept for policy.
    pub async fn verify(
        &self,
        token: &str,
        now: Timestamp,
    ) -> Result<VerifiedIdentity, TokenError> {
        let rules = JwtRules {
            issuer: &self.cfg.issuer,
            audiences: &self.cfg.audiences,
            leeway: self.cfg.leeway,
            max_bytes: self.cfg.max_token_bytes,
            accepted_types: &self.types,
            require_typ: self.cfg.require_typ,
        };
        let res = verify_jwt(&self.jwks, token, &rules, now)
            .await
            .and_then(|claims| {
                let exp = claims.get("exp").and_then(Value::as_i64);
                MappedClaims::from_raw(&claims, &self.cfg.claims, true)
                    .map(|m| {
                        m.into_identity(
                            &self.cfg.issuer,
                            AuthMethod::Bearer,
                            exp.and_then(|e| Timestamp::from_second(e).ok()),
                            None,
                        )
                    })
                    .ok_or(TokenError::MissingClaim("sub"))
            });
        match &res {
            Ok(_) => IdentityMetrics::inc(&self.metrics.bearer_ok),
            Err(_) => IdentityMetrics::inc(&self.metrics.bearer_rejected),
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn authorization_header_forms() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert_eq!(bearer_token(&h), Ok(None));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_static("bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&h), Ok(Some("abc.def.ghi")));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), Err(TokenError::Malformed));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer d.e.f"));
        assert_eq!(bearer_token(&h), Err(TokenError::Malformed));
    }
}
