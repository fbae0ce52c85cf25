//! Configuration of the development IdP: where it listens, its clients and users.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::{DevIdpError, Result};
use crate::users::{DemoUser, demo_users};

/// A registered client (relying party), e.g. the gateway.
#[derive(Clone)]
pub struct DevClient {
    pub client_id: String,
    /// Checked in constant time; printed as `[redacted]`.
    pub client_secret: String,
    /// Exact-match list for `redirect_uri`.
    pub redirect_uris: Vec<String>,
    /// Exact-match list for `post_logout_redirect_uri`.
    pub post_logout_redirect_uris: Vec<String>,
}

impl fmt::Debug for DevClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uris", &self.redirect_uris)
            .field("post_logout_redirect_uris", &self.post_logout_redirect_uris)
            .finish()
    }
}

/// Everything [`crate::DevIdp::start`] needs.
#[derive(Clone, Debug)]
pub struct DevIdpConfig {
    /// Listen address; loopback only. Port 0 picks a free port (see
    /// [`crate::RunningIdp::issuer`]). Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    pub clients: Vec<DevClient>,
    /// Default [`demo_users`].
    pub users: Vec<DemoUser>,
    /// `aud` of access tokens (the resource, e.g. the gateway's bearer audience).
    /// Default `sekisho`.
    pub access_token_audience: String,
    /// Lifetime of ID and access tokens. Default 10 minutes.
    pub token_ttl: Duration,
    /// Lifetime of refresh tokens (rotated on every use). Default 8 hours.
    pub refresh_token_ttl: Duration,
    /// Lifetime of the IdP's own browser session. Default 8 hours.
    pub session_ttl: Duration,
    /// Show each demo user's password on the login page (handy in demos). Default true.
    pub show_password_hints: bool,
}

impl Default for DevIdpConfig {
    fn default() -> Self {
        DevIdpConfig {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            clients: Vec::new(),
            users: demo_users(),
            access_token_audience: "sekisho".into(),
            token_ttl: Duration::from_secs(600),
            refresh_token_ttl: Duration::from_secs(8 * 3600),
            session_ttl: Duration::from_secs(8 * 3600),
            show_password_hints: true,
        }
    }
}

impl DevIdpConfig {
    /// The defaults with these clients.
    pub fn with_clients(clients: Vec<DevClient>) -> Self {
        DevIdpConfig {
            clients,
            ..Default::default()
        }
    }

    /// Every problem at once.
    pub(crate) fn validate(&self) -> Result<()> {
        let mut errs = Vec::new();
        if !self.bind.ip().is_loopback() {
            return Err(DevIdpError::NotLoopback(self.bind));
        }
        if self.clients.is_empty() {
            errs.push("at least one client must be registered".to_owned());
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.client_id.is_empty() {
                errs.push(format!("client #{i}: empty client_id"));
            }
            if self.clients[..i].iter().any(|o| o.client_id == c.client_id) {
                errs.push(format!("client {:?} registered twice", c.client_id));
            }
            if c.client_secret.len() < 8 {
                errs.push(format!(
                    "client {:?}: client_secret must have at least 8 characters",
                    c.client_id
                ));
            }
            if c.redirect_uris.is_empty() {
                errs.push(format!("client {:?}: no redirect_uris", c.client_id));
            }
            for u in c.redirect_uris.iter().chain(&c.post_logout_redirect_uris) {
                match url::Url::parse(u) {
                    Ok(p) if p.fragment().is_none() && matches!(p.scheme(), "http" | "https") => {}
                    _ => errs.push(format!(
                        "client {:?}: {u:?} is not an absolute http(s) URI without fragment",
                        c.client_id
                    )),
                }
            }
        }
        if self.users.is_empty() {
            errs.push("at least one user is needed".to_owned());
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() || u.password.is_empty() {
                errs.push(format!("user #{i}: empty username or password"));
            }
            if self.users[..i].iter().any(|o| o.username == u.username) {
                errs.push(format!("user {:?} defined twice", u.username));
            }
        }
        if self.access_token_audience.is_empty() {
            errs.push("access_token_audience is empty".to_owned());
        }
        if self.token_ttl.is_zero()
            || self.refresh_token_ttl.is_zero()
            || self.session_ttl.is_zero()
        {
            errs.push("lifetimes must be positive".to_owned());
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(DevIdpError::Config(errs))
        }
    }
}
