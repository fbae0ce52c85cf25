//! Test harness: the real OpenID provider (`oidc-provider` from npm) on 127.0.0.1, a
//! cookie-keeping browser per user, and a tiny cookie jar for the gateway side.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use sekisho_identity::{
    BearerConfig, CookieKey, CookieKeyRing, IdentityConfig, IdentityService, LoginComplete,
    OidcConfig, Secret, SessionConfig,
};

pub const HOST: &str = "127.0.0.1:8443";
pub const CALLBACK: &str = "https://127.0.0.1:8443/.sekisho/callback";
pub const API: &str = "https://api.sekisho.test";
pub const OTHER_API: &str = "https://other.sekisho.test";
pub const ADMIN_TOKEN: &str = "test-admin-token";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/support/oidc-provider")
}

/// Runs `npm ci` once if `node_modules` is missing.
fn ensure_node_modules() {
    static DONE: OnceLock<()> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    DONE.get_or_init(|| {
        let _g = LOCK.lock().unwrap();
        let dir = provider_dir();
        if dir.join("node_modules/oidc-provider/package.json").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("the identity tests need Node.js and npm to run the test OpenID provider ({e}); install them, then run `npm ci` in {}", dir.display())
            });
        assert!(status.success(), "`npm ci` failed in {}", dir.display());
    });
}

/// A running `tests/support/oidc-provider/server.js`.
pub struct Idp {
    child: Option<Child>,
    pub issuer: String,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra (redirect URI, post-logout URI) registered for the `sekisho` client.
    extra: Option<(String, String)>,
}

pub fn idp_config(port: u16) -> serde_json::Value {
    serde_json::json!({
        "port": port,
        "adminToken": ADMIN_TOKEN,
        "users": {
            "alice": { "password": "alice-pw", "email": "alice@city.example.jp", "name": "山田 花子",
                       "groups": ["staff"], "amr": ["pwd", "otp"], "acr": "urn:sekisho:loa:2" },
            "bob":   { "password": "bob-pw", "email": "bob@city.example.jp", "name": "Bob",
                       "groups": ["visitors"], "amr": ["pwd"], "acr": "urn:sekisho:loa:1" }
        },
        "clients": [{
            "client_id": "sekisho",
            "client_secret": "sekisho-test-secret",
            "redirect_uris": [CALLBACK],
            "post_logout_redirect_uris": ["https://127.0.0.1:8443/.sekisho/logged-out"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
            "require_auth_time": true
        }, {
            "client_id": "sekisho-norefresh",
            "client_secret": "sekisho-test-secret",
            "redirect_uris": [CALLBACK],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic"
        }],
        "resources": [API, OTHER_API],
        "ttl": { "AccessToken": 600, "IdToken": 3600, "RefreshToken": 86400 }
    })
}

impl Idp {
    pub fn start() -> Idp {
        Idp::start_for(None)
    }

    /// Starts the provider with another relying party's callback registered too (the
    /// gateway's end-to-end tests, whose host and port differ).
    pub fn start_for(extra: Option<(String, String)>) -> Idp {
        ensure_node_modules();
        let dir = tempfile::tempdir().unwrap();
        let mut idp = Idp {
            child: None,
            issuer: String::new(),
            port: 0,
            dir,
            extra,
        };
        idp.spawn(0);
        idp
    }

    fn spawn(&mut self, port: u16) {
        let cfg = self.dir.path().join("idp.json");
        let mut json = idp_config(port);
        if let Some((redirect, logout)) = &self.extra {
            json["clients"][0]["redirect_uris"]
                .as_array_mut()
                .unwrap()
                .push(redirect.clone().into());
            json["clients"][0]["post_logout_redirect_uris"]
                .as_array_mut()
                .unwrap()
                .push(logout.clone().into());
        }
        std::fs::write(&cfg, json.to_string()).unwrap();
        let mut child = Command::new("node")
            .arg(provider_dir().join("server.js"))
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed to run the test OpenID provider");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(iss) = line.strip_prefix("READY ") {
                    let _ = tx.send(iss.to_owned());
                }
            }
        });
        // Waiting for a child process to print READY (not a clock-driven sleep).
        let issuer = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the OpenID provider did not print READY");
        self.port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        self.issuer = issuer;
        self.child = Some(child);
    }

    /// Stops the provider (an IdP outage).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port: same issuer, new signing keys (a key rotation).
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port;
        self.spawn(port);
    }

    pub fn oidc_config(&self) -> OidcConfig {
        let mut c = OidcConfig::new(
            url::Url::parse(&self.issuer).unwrap(),
            "sekisho",
            Some(Secret::new("sekisho-test-secret")),
        );
        c.scopes = vec![
            "openid".into(),
            "email".into(),
            "profile".into(),
            "groups".into(),
            "offline_access".into(),
        ];
        c.http_timeout = Duration::from_secs(5);
        c
    }

    pub fn bearer_config(&self) -> BearerConfig {
        BearerConfig::new(self.issuer.clone(), vec![API.to_owned()])
    }

    pub fn service(&self) -> IdentityService {
        self.service_with_keys(CookieKeyRing::new(vec![CookieKey::generate("test")]).unwrap())
    }

    pub fn service_with_keys(&self, keys: CookieKeyRing) -> IdentityService {
        IdentityService::new(
            IdentityConfig {
                oidc: Some(self.oidc_config()),
                session: SessionConfig::default(),
                bearer: Some(self.bearer_config()),
            },
            keys,
        )
        .unwrap()
    }

    /// Changes a user's groups at the IdP (admin hook).
    pub async fn set_groups(&self, user: &str, groups: &[&str]) {
        let resp = reqwest::Client::new()
            .post(format!("{}/__admin/users/{user}", self.issuer))
            .header("x-admin-token", ADMIN_TOKEN)
            .body(serde_json::json!({ "groups": groups }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
    }

    /// A JWT access token for `resource` (client credentials, resource indicator).
    pub async fn access_token(&self, resource: &str) -> String {
        let resp: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth("sekisho", Some("sekisho-test-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "api:read"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    pub async fn jwks(&self) -> serde_json::Value {
        reqwest::get(format!("{}/jwks", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One simulated user: a browser that keeps the IdP's cookies, and the gateway's cookies.
pub struct Browser {
    pub idp_client: reqwest::Client,
    pub gateway_cookies: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            idp_client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            gateway_cookies: BTreeMap::new(),
        }
    }

    /// Applies `Set-Cookie` values from the gateway.
    pub fn store(&mut self, set: &[HeaderValue]) {
        for v in set {
            let s = v.to_str().unwrap();
            let pair = s.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if s.contains("Max-Age=0") || value.is_empty() {
                self.gateway_cookies.remove(name);
            } else {
                self.gateway_cookies
                    .insert(name.to_owned(), value.to_owned());
            }
        }
    }

    /// The `Cookie` header this browser sends to the gateway.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !self.gateway_cookies.is_empty() {
            let joined: Vec<String> = self
                .gateway_cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            h.insert(COOKIE, HeaderValue::from_str(&joined.join("; ")).unwrap());
        }
        h
    }

    /// Follows the IdP's redirects from `url`, filling the login form with the credentials,
    /// until the IdP redirects to `stop_prefix`. Returns that URL.
    pub async fn drive_idp(
        &self,
        url: &str,
        user: &str,
        password: &str,
        stop_prefix: &str,
    ) -> String {
        let mut url = url::Url::parse(url).unwrap();
        for _ in 0..12 {
            let resp = self.idp_client.get(url.clone()).send().await.unwrap();
            let next = if resp.status().is_redirection() {
                resp.headers()["location"].to_str().unwrap().to_owned()
            } else {
                let status = resp.status();
                let body = resp.text().await.unwrap();
                if let Some(i) = body.find("action=\"/interaction/") {
                    let action = body[i + 8..].split('"').next().unwrap().to_owned();
                    let posted = self
                        .idp_client
                        .post(url.join(&action).unwrap())
                        .form(&[("username", user), ("password", password)])
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        posted.status().is_redirection(),
                        "login form answered {}",
                        posted.status()
                    );
                    posted.headers()["location"].to_str().unwrap().to_owned()
                } else if let Some(i) = body.find("name=\"xsrf\" value=\"") {
                    // RP-initiated logout confirmation form.
                    let xsrf = body[i + 19..].split('"').next().unwrap().to_owned();
                    let action = body
                        .find("action=\"")
                        .map(|j| body[j + 8..].split('"').next().unwrap().to_owned())
                        .unwrap();
                    let posted = self
                        .idp_client
                        .post(url.join(&action).unwrap())
                        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
                        .send()
                        .await
                        .unwrap();
                    posted.headers()["location"].to_str().unwrap().to_owned()
                } else {
                    panic!("unexpected IdP page ({status}): {body}");
                }
            };
            let next = url.join(&next).unwrap();
            if next.as_str().starts_with(stop_prefix) {
                return next.to_string();
            }
            url = next;
        }
        panic!("too many redirects at the IdP");
    }
}

pub fn now() -> Timestamp {
    Timestamp::now()
}

pub fn at(base: Timestamp, secs: i64) -> Timestamp {
    Timestamp::from_second(base.as_second() + secs).unwrap()
}

/// The callback request the browser makes to the gateway: path and query only.
pub fn callback_uri(full: &str) -> http::Uri {
    let u = url::Url::parse(full).unwrap();
    let pq = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    pq.parse().unwrap()
}

/// A full login of `user` through the real IdP; the browser keeps the session cookies.
pub async fn login(
    svc: &IdentityService,
    browser: &mut Browser,
    user: &str,
    password: &str,
    at: Timestamp,
) -> LoginComplete {
    let (callback, _) = authorize(svc, browser, user, password, at).await;
    let done = svc
        .finish_login(HOST, &callback_uri(&callback), &browser.headers(), at)
        .await
        .expect("login");
    browser.store(&done.set_cookies);
    done
}

/// Starts a login and drives the IdP up to the callback URL (not yet delivered).
pub async fn authorize(
    svc: &IdentityService,
    browser: &mut Browser,
    user: &str,
    password: &str,
    at: Timestamp,
) -> (String, String) {
    let start = svc
        .start_login(
            HOST,
            "/app/page?x=1",
            |_, p| p.starts_with("/app/"),
            None,
            &browser.headers(),
            at,
        )
        .await
        .expect("start login");
    browser.store(&start.set_cookies);
    let callback = browser
        .drive_idp(&start.location, user, password, CALLBACK)
        .await;
    (callback, start.location)
}
