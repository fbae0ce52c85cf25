//! Helpers that drive the development IdP the way a browser and a relying party do.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use sekisho_devidp::{DevClient, DevIdp, DevIdpConfig, RunningIdp};
use serde_json::{Map, Value};

pub const CLIENT_ID: &str = "sekisho-gateway";
pub const SECRET: &str = "gateway-secret-123";
pub const REDIRECT: &str = "https://portal.localhost:8443/.sekisho/callback";
pub const OTHER_REDIRECT: &str = "https://groupware.localhost:8443/.sekisho/callback";
pub const POST_LOGOUT: &str = "https://portal.localhost:8443/.sekisho/signed-out";
pub const AUDIENCE: &str = "https://gateway.localhost";

pub fn client_config() -> DevClient {
    DevClient {
        client_id: CLIENT_ID.into(),
        client_secret: SECRET.into(),
        redirect_uris: vec![REDIRECT.into(), OTHER_REDIRECT.into()],
        post_logout_redirect_uris: vec![POST_LOGOUT.into()],
    }
}

pub async fn start() -> RunningIdp {
    let mut cfg = DevIdpConfig::with_clients(vec![
        client_config(),
        DevClient {
            client_id: "other-app".into(),
            client_secret: "other-secret-456".into(),
            redirect_uris: vec!["https://other.localhost/cb".into()],
            post_logout_redirect_uris: vec!["https://other.localhost/bye".into()],
        },
    ]);
    cfg.access_token_audience = AUDIENCE.into();
    DevIdp::start(cfg).await.expect("dev IdP starts")
}

/// One simulated browser: its own cookie jar, redirects never followed.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{t}-{n}")
}

pub fn pkce() -> Pkce {
    let verifier = format!("{:a>64}", unique("v").replace(['-'], "x"));
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    Pkce {
        verifier,
        challenge: URL_SAFE_NO_PAD.encode(d.as_ref()),
    }
}

/// One authorization request's parameters.
pub struct AuthReq {
    pub pkce: Pkce,
    pub state: String,
    pub nonce: String,
    pub redirect_uri: String,
    pub extra: Vec<(String, String)>,
}

impl AuthReq {
    pub fn new() -> Self {
        AuthReq {
            pkce: pkce(),
            state: unique("state"),
            nonce: unique("nonce"),
            redirect_uri: REDIRECT.into(),
            extra: Vec::new(),
        }
    }

    pub fn with(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    pub fn url(&self, idp: &RunningIdp) -> String {
        let mut u = url::Url::parse(&format!("{}/authorize", idp.issuer())).unwrap();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("client_id", CLIENT_ID)
                .append_pair("redirect_uri", &self.redirect_uri)
                .append_pair("response_type", "code")
                .append_pair("scope", "openid email profile")
                .append_pair("state", &self.state)
                .append_pair("nonce", &self.nonce)
                .append_pair("code_challenge", &self.pkce.challenge)
                .append_pair("code_challenge_method", "S256");
            for (k, v) in &self.extra {
                q.append_pair(k, v);
            }
        }
        u.to_string()
    }
}

/// The hidden `request` field of the login form.
pub fn request_id(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).expect("login form has a request field") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .expect("a redirect")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Query parameters of a redirect's Location.
pub fn redirect_params(resp: &reqwest::Response) -> (String, HashMap<String, String>) {
    let loc = url::Url::parse(&location(resp)).unwrap();
    let params = loc.query_pairs().into_owned().collect();
    let mut base = loc.clone();
    base.set_query(None);
    (base.to_string(), params)
}

pub async fn post_login(
    b: &reqwest::Client,
    idp: &RunningIdp,
    request: &str,
    user: &str,
    password: &str,
    mfa: bool,
) -> reqwest::Response {
    let mut form = vec![
        ("request", request.to_owned()),
        ("username", user.to_owned()),
        ("password", password.to_owned()),
    ];
    if mfa {
        form.push(("mfa", "1".to_owned()));
    }
    b.post(format!("{}/authorize", idp.issuer()))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// GET /authorize; if it shows the form, signs in. Returns the callback parameters.
pub async fn sign_in(
    b: &reqwest::Client,
    idp: &RunningIdp,
    req: &AuthReq,
    user: &str,
    mfa: bool,
) -> HashMap<String, String> {
    let r = b.get(req.url(idp)).send().await.unwrap();
    let r = if r.status() == StatusCode::OK {
        let html = r.text().await.unwrap();
        let r = post_login(
            b,
            idp,
            &request_id(&html),
            user,
            &format!("{user}-demo"),
            mfa,
        )
        .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "login accepted");
        r
    } else {
        r
    };
    assert!(r.status().is_redirection(), "{}", r.status());
    let (base, params) = redirect_params(&r);
    assert_eq!(base, req.redirect_uri);
    params
}

pub enum ClientAuth {
    Basic,
    Post,
}

pub async fn token(
    idp: &RunningIdp,
    form: &[(&str, &str)],
    auth: ClientAuth,
    secret: &str,
) -> (StatusCode, Value) {
    let c = reqwest::Client::new();
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let mut rb = c.post(format!("{}/token", idp.issuer()));
    match auth {
        ClientAuth::Basic => rb = rb.basic_auth(CLIENT_ID, Some(secret)),
        ClientAuth::Post => {
            form.push(("client_id", CLIENT_ID));
            form.push(("client_secret", secret));
        }
    }
    let r = rb.form(&form).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap())
}

pub async fn exchange(idp: &RunningIdp, code: &str, req: &AuthReq) -> (StatusCode, Value) {
    token(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &req.redirect_uri),
            ("code_verifier", &req.pkce.verifier),
        ],
        ClientAuth::Basic,
        SECRET,
    )
    .await
}

/// Verifies a JWT against the IdP's published JWKS (as a relying party would).
pub async fn verify(idp: &RunningIdp, token: &str, typ: &str, aud: &str) -> Map<String, Value> {
    let jwks: JwkSet = reqwest::get(format!("{}/jwks", idp.issuer()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some(typ));
    let kid = header.kid.expect("kid");
    let jwk = jwks.find(&kid).expect("kid in the JWKS");
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&[idp.issuer()]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v)
        .expect("valid signature and claims")
        .claims
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("array expected, got {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}
