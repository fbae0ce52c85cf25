//! [`VerifiedIdentity`], the proof that a verifier of this crate checked who is asking, and
//! the claims mapping shared by ID tokens, userinfo and bearer tokens.

use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::config::ClaimsMapping;

/// How the identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A browser session cookie.
    Session,
    /// An `Authorization: Bearer` JWT.
    Bearer,
}

impl AuthMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Session => "session",
            AuthMethod::Bearer => "bearer",
        }
    }
}

/// Private field that makes [`VerifiedIdentity`] impossible to build outside this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Proof(());

/// Who is asking, as checked by [`crate::session::SessionManager`] or
/// [`crate::bearer::BearerVerifier`]. Only this crate can build one (except through the
/// explicitly named [`VerifiedIdentity::dangerous_unverified`] for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub(crate) issuer: String,
    pub(crate) sub: String,
    pub(crate) email: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) amr: Vec<String>,
    pub(crate) acr: Option<String>,
    pub(crate) auth_time: Option<Timestamp>,
    pub(crate) claims: Map<String, Value>,
    pub(crate) expires: Option<Timestamp>,
    pub(crate) claims_at: Option<Timestamp>,
    pub(crate) method: AuthMethod,
    /// The upstream header values made from the fields above, on first use.
    pub(crate) headers: HeaderCache,
    _proof: Proof,
}

/// The identity's upstream header values (user, e-mail, groups joined), made once: a
/// session's identity is shared by every request its connection sends with the same
/// cookie, and making the three values was three allocations and a join per request.
/// Derived data: equal for equal identities, and a clone starts empty (a clone may be
/// changed, in this crate, before it is used).
#[derive(Default)]
pub(crate) struct HeaderCache(std::sync::OnceLock<IdentityHeaderValues>);

pub(crate) struct IdentityHeaderValues {
    pub(crate) user: Option<http::HeaderValue>,
    pub(crate) email: Option<http::HeaderValue>,
    pub(crate) groups: Option<http::HeaderValue>,
}

impl HeaderCache {
    /// Whether the values have been made (for tests).
    #[cfg(test)]
    pub(crate) fn is_made(&self) -> bool {
        self.0.get().is_some()
    }

    pub(crate) fn get(&self, id: &VerifiedIdentity) -> &IdentityHeaderValues {
        self.0.get_or_init(|| IdentityHeaderValues {
            user: http::HeaderValue::from_str(&id.sub).ok(),
            email: id
                .email
                .as_deref()
                .and_then(|e| http::HeaderValue::from_str(e).ok()),
            groups: http::HeaderValue::from_str(&id.groups.join(",")).ok(),
        })
    }
}

impl Clone for HeaderCache {
    fn clone(&self) -> Self {
        HeaderCache::default()
    }
}

impl PartialEq for HeaderCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for HeaderCache {}

impl std::fmt::Debug for HeaderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl VerifiedIdentity {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn sub(&self) -> &str {
        &self.sub
    }
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
    /// Group names after mapping (Entra ID GUIDs → names) and filtering.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }
    pub fn amr(&self) -> &[String] {
        &self.amr
    }
    pub fn acr(&self) -> Option<&str> {
        self.acr.as_deref()
    }
    pub fn auth_time(&self) -> Option<Timestamp> {
        self.auth_time
    }
    /// Claims kept for policy: for bearer tokens all of them, for sessions the standard ones
    /// plus `keep_claims`.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
    /// Session end (absolute or idle, whichever is first) or token `exp`.
    pub fn expires(&self) -> Option<Timestamp> {
        self.expires
    }
    /// When the claims were last fetched from the IdP (sessions only).
    pub fn claims_at(&self) -> Option<Timestamp> {
        self.claims_at
    }
    pub fn method(&self) -> AuthMethod {
        self.method
    }
    /// True if any `amr` value names a second factor (`mfa`, `otp`, `hwk`, `swk`, `sms`,
    /// `fido`, `face`, `fpt`, `iris`, `retina`, `vbm`, `sc`, `tel`, `ngcmfa`).
    pub fn has_mfa(&self) -> bool {
        const MFA: &[&str] = &[
            "mfa", "otp", "hwk", "swk", "sms", "fido", "face", "fpt", "iris", "retina", "vbm",
            "sc", "tel", "ngcmfa",
        ];
        self.amr.iter().any(|a| MFA.contains(&a.as_str()))
    }

    /// Builds an identity that nothing verified. Only for tests of code that consumes
    /// identities (policy, gateway pages); never on a request path.
    pub fn dangerous_unverified(
        issuer: &str,
        sub: &str,
        groups: Vec<String>,
        amr: Vec<String>,
        method: AuthMethod,
    ) -> Self {
        VerifiedIdentity {
            issuer: issuer.into(),
            sub: sub.into(),
            email: None,
            name: None,
            groups,
            amr,
            acr: None,
            auth_time: None,
            claims: Map::new(),
            expires: None,
            claims_at: None,
            method,
            headers: HeaderCache::default(),
            _proof: Proof(()),
        }
    }
}

/// Claims as mapped from a verified token or userinfo answer; becomes part of a session or a
/// [`VerifiedIdentity`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MappedClaims {
    #[serde(rename = "s")]
    pub sub: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(rename = "m", default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(rename = "c", default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

impl MappedClaims {
    /// Maps raw claims. `None` if the subject claim is missing or empty.
    pub fn from_raw(raw: &Map<String, Value>, m: &ClaimsMapping, keep_all: bool) -> Option<Self> {
        let sub = lookup(raw, &m.subject)?.as_str()?.to_owned();
        if sub.is_empty() {
            return None;
        }
        let mut groups: Vec<String> = strings(lookup(raw, &m.groups))
            .into_iter()
            .map(|g| m.group_names.get(&g).cloned().unwrap_or(g))
            .collect();
        if let Some(relevant) = &m.relevant_groups {
            groups.retain(|g| relevant.contains(g));
        }
        groups.sort();
        groups.dedup();
        let extra = if keep_all {
            raw.clone()
        } else {
            m.keep_claims
                .iter()
                .filter_map(|k| lookup(raw, k).map(|v| (k.clone(), v.clone())))
                .collect()
        };
        Some(MappedClaims {
            sub,
            email: lookup(raw, &m.email)
                .and_then(Value::as_str)
                .map(str::to_owned),
            name: lookup(raw, &m.name)
                .and_then(Value::as_str)
                .map(str::to_owned),
            groups,
            amr: strings(raw.get("amr")),
            acr: raw.get("acr").and_then(Value::as_str).map(str::to_owned),
            auth_time: raw.get("auth_time").and_then(Value::as_i64),
            extra,
        })
    }

    pub(crate) fn into_identity(
        self,
        issuer: &str,
        method: AuthMethod,
        expires: Option<Timestamp>,
        claims_at: Option<Timestamp>,
    ) -> VerifiedIdentity {
        let mut claims = self.extra;
        claims.insert("sub".into(), Value::String(self.sub.clone()));
        if let Some(e) = &self.email {
            claims
                .entry("email")
                .or_insert_with(|| Value::String(e.clone()));
        }
        VerifiedIdentity {
            issuer: issuer.into(),
            auth_time: self.auth_time.and_then(|t| Timestamp::from_second(t).ok()),
            sub: self.sub,
            email: self.email,
            name: self.name,
            groups: self.groups,
            amr: self.amr,
            acr: self.acr,
            claims,
            expires,
            claims_at,
            method,
            headers: HeaderCache::default(),
            _proof: Proof(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entra_guids_are_mapped_and_filtered() {
        let mut m = ClaimsMapping::default();
        m.group_names.insert("0b1c-guid".into(), "staff".into());
        m.relevant_groups = Some(vec!["staff".into(), "admins".into()]);
        let raw =
            json!({"sub": "u1", "groups": ["0b1c-guid", "unrelated-guid"], "amr": ["pwd", "mfa"]});
        let c = MappedClaims::from_raw(raw.as_object().unwrap(), &m, false).unwrap();
        assert_eq!(c.groups, vec!["staff".to_string()]);
        let id = c.into_identity("iss", AuthMethod::Session, None, None);
        assert!(id.has_mfa());
    }

    #[test]
    fn nested_group_path_for_keycloak() {
        let m = ClaimsMapping {
            groups: "realm_access.roles".into(),
            ..Default::default()
        };
        let raw = json!({"sub": "u1", "realm_access": {"roles": ["b", "a"]}});
        let c = MappedClaims::from_raw(raw.as_object().unwrap(), &m, false).unwrap();
        assert_eq!(c.groups, vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn missing_subject_is_refused() {
        let raw = json!({"email": "a@b"});
        assert!(
            MappedClaims::from_raw(raw.as_object().unwrap(), &ClaimsMapping::default(), false)
                .is_none()
        );
        let raw = json!({"sub": ""});
        assert!(
            MappedClaims::from_raw(raw.as_object().unwrap(), &ClaimsMapping::default(), false)
                .is_none()
        );
    }
}
