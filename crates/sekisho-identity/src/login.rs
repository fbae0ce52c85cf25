//! Login state between the redirect to the IdP and the callback.
//!
//! `state`, `nonce` and the PKCE verifier live in a short-lived sealed cookie named after a hash
//! of the state (`__Host-sekisho-login-<8 hex>`), so the state is bound to the browser that
//! started the login and several tabs can log in at once. A set of used states (in memory, for
//! the login timeout) makes each state single-use even if the cookie is replayed.

use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::SessionConfig;
use crate::error::IdentityError;
use crate::keys::CookieKeyRing;
use crate::session::{cookie_pairs, set_cookie};

/// What a login remembers until its callback.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct LoginState {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "p")]
    pub pkce_verifier: String,
    /// Safe return target (already checked by `safe_return_target`).
    #[serde(rename = "r")]
    pub return_to: String,
    /// Host the login started on; the callback must arrive on the same host.
    #[serde(rename = "h")]
    pub host: String,
    #[serde(rename = "t")]
    pub started: i64,
    /// `max_age` requested (step-up), checked against `auth_time`.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

pub(crate) fn state_hash(state: &str) -> String {
    let d = Sha256::digest(state.as_bytes());
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn cookie_name(cfg: &SessionConfig, state: &str) -> String {
    format!("{}-login-{}", cfg.cookie_name, &state_hash(state)[..8])
}

/// Seals the login state into its cookie.
pub(crate) fn login_cookie(
    cfg: &SessionConfig,
    keys: &CookieKeyRing,
    login: &LoginState,
) -> HeaderValue {
    let name = cookie_name(cfg, &login.state);
    let json = serde_json::to_string(login).expect("plain struct");
    set_cookie(
        &name,
        &keys.seal(&name, &json),
        cfg.login_timeout.as_secs() as i64,
    )
}

/// Removes the login cookie for `state`.
pub(crate) fn clear_login_cookie(cfg: &SessionConfig, state: &str) -> HeaderValue {
    set_cookie(&cookie_name(cfg, state), "", 0)
}

/// Finds, opens and checks the login cookie for `state`.
pub(crate) fn open_login(
    cfg: &SessionConfig,
    keys: &CookieKeyRing,
    headers: &HeaderMap,
    state: &str,
    now: Timestamp,
) -> Result<LoginState, IdentityError> {
    let name = cookie_name(cfg, state);
    let pairs = cookie_pairs(headers, |n| n == name).ok_or(IdentityError::LoginStateMissing)?;
    let sealed = pairs.get(&name).ok_or(IdentityError::LoginStateMissing)?;
    let json = keys
        .open(&name, sealed)
        .ok_or(IdentityError::LoginStateMissing)?;
    let login: LoginState =
        serde_json::from_str(&json).map_err(|_| IdentityError::LoginStateMissing)?;
    if !bool::from(login.state.as_bytes().ct_eq(state.as_bytes())) {
        return Err(IdentityError::LoginStateMissing);
    }
    let age = now.as_second() - login.started;
    if age < -60 || age > cfg.login_timeout.as_secs() as i64 {
        return Err(IdentityError::LoginExpired);
    }
    Ok(login)
}

/// States already used, each remembered for the login timeout.
pub(crate) struct UsedStates {
    cache: moka::sync::Cache<String, ()>,
}

impl UsedStates {
    pub fn new(cfg: &SessionConfig) -> Self {
        UsedStates {
            cache: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(cfg.login_timeout + std::time::Duration::from_secs(60))
                .build(),
        }
    }

    /// Marks `state` used; false if it already was.
    pub fn first_use(&self, state: &str) -> bool {
        self.cache.entry(state_hash(state)).or_insert(()).is_fresh()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CookieKey;

    fn login(state: &str, started: i64) -> LoginState {
        LoginState {
            state: state.into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            return_to: "/".into(),
            host: "h".into(),
            started,
            max_age: None,
        }
    }

    #[test]
    fn login_cookie_binds_state_and_expires() {
        let cfg = SessionConfig::default();
        let keys = CookieKeyRing::new(vec![CookieKey::generate("k")]).unwrap();
        let set = login_cookie(&cfg, &keys, &login("state-1", 100));
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(pair.starts_with("__Host-sekisho-login-"));
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_str(&pair).unwrap());
        let now = Timestamp::from_second(160).unwrap();
        assert!(open_login(&cfg, &keys, &h, "state-1", now).is_ok());
        assert!(matches!(
            open_login(&cfg, &keys, &h, "state-2", now),
            Err(IdentityError::LoginStateMissing)
        ));
        let late = Timestamp::from_second(100 + 601).unwrap();
        assert!(matches!(
            open_login(&cfg, &keys, &h, "state-1", late),
            Err(IdentityError::LoginExpired)
        ));
        let other_keys = CookieKeyRing::new(vec![CookieKey::generate("k2")]).unwrap();
        assert!(matches!(
            open_login(&cfg, &other_keys, &h, "state-1", now),
            Err(IdentityError::LoginStateMissing)
        ));
    }

    #[test]
    fn states_are_single_use() {
        let used = UsedStates::new(&SessionConfig::default());
        assert!(used.first_use("abc"));
        assert!(!used.first_use("abc"));
        assert!(used.first_use("abd"));
    }
}
