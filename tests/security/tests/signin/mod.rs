//! A gateway signed in against the real OpenID provider (npm `oidc-provider`, started by the
//! identity crate's test support), with an audit trail: the same set-up as the gateway's
//! `tests/identity.rs`, parameterised by routes.
#![allow(dead_code)]

use std::path::PathBuf;

use http::HeaderValue;

use crate::common::*;
use crate::idp;

pub struct Signed {
    pub gw: Gw,
    pub idp: idp::Idp,
    pub port: u16,
    pub audit: PathBuf,
}

pub fn base(port: u16) -> String {
    format!("https://{SITE}:{port}")
}

impl Signed {
    pub fn base(&self) -> String {
        base(self.port)
    }
    pub fn client(&self) -> reqwest::Client {
        client(&self.gw.pki, self.gw.addr("lgwan-https"), false)
    }
    pub fn client_h2(&self) -> reqwest::Client {
        client(&self.gw.pki, self.gw.addr("lgwan-https"), true)
    }
}

/// Starts the IdP and a gateway whose `lgwan-https` listener serves `routes` with sign-in,
/// sessions, bearer tokens for `idp::API`, and `audit:` (strict).
pub async fn start(routes: &str) -> Signed {
    let port = closed_port("127.0.0.1:0").await.port();
    let idp = idp::Idp::start_for(Some((
        format!("{}/.sekisho/callback", base(port)),
        format!("{}/.sekisho/logged-out", base(port)),
    )));
    let pki = Pki::new(&[SITE, "other.test.localhost"]);
    std::fs::write(pki.path("client-secret"), "sekisho-test-secret\n").unwrap();
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(pki.path("cookie-keys"), format!("k1:{key}\n")).unwrap();
    for f in ["client-secret", "cookie-keys"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.path(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let extra = format!(
        r#"audit:
  dir: audit
  durability: strict
identity:
  oidc:
    issuer: {issuer}
    client_id: sekisho
    client_secret_file: client-secret
    scopes: [openid, email, profile, groups]
  session:
    cookie_keys_file: cookie-keys
  bearer:
    issuer: {issuer}
    audiences: ["{api}"]
"#,
        issuer = idp.issuer,
        api = idp::API
    );
    let config_path = pki.path("sekisho.yaml");
    let yaml = full_yaml_with(&pki, &extra, routes).replacen(
        "lgwan-https:\n    zone: lgwan\n    listen: 127.0.0.1:0",
        &format!("lgwan-https:\n    zone: lgwan\n    listen: 127.0.0.1:{port}"),
        1,
    );
    std::fs::write(&config_path, yaml).unwrap();
    let running = sekisho_gateway::server::start(&config_path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let audit = pki.path("audit");
    Signed {
        gw: Gw {
            running,
            config_path,
            pki,
        },
        idp,
        port,
        audit,
    }
}

/// Starts a login at `start` (a policy route path or `/.sekisho/login?rd=…`) and drives the
/// IdP up to the callback URL, which is returned undelivered. The browser holds the login
/// cookie.
pub async fn authorize(s: &Signed, browser: &mut idp::Browser, start: &str, user: &str) -> String {
    let r = s
        .client()
        .get(format!("{}{start}", s.base()))
        .header("accept", "text/html")
        .headers(browser.headers())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{start}: a browser is sent to sign in");
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&s.idp.issuer), "{location}");
    let set: Vec<HeaderValue> = r.headers().get_all("set-cookie").iter().cloned().collect();
    browser.store(&set);
    browser
        .drive_idp(
            &location,
            user,
            &format!("{user}-pw"),
            &format!("{}/.sekisho/callback", s.base()),
        )
        .await
}

/// Delivers a callback URL; returns the response (status, Location, Set-Cookie stored).
pub async fn deliver(
    s: &Signed,
    browser: &mut idp::Browser,
    callback: &str,
) -> (u16, Option<String>, Option<String>) {
    let r = s
        .client()
        .get(callback)
        .headers(browser.headers())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let rid = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let set: Vec<HeaderValue> = r.headers().get_all("set-cookie").iter().cloned().collect();
    browser.store(&set);
    // Error pages carry the request ID in the page (for the help desk), not in a header.
    let body = r.text().await.unwrap_or_default();
    let rid = rid.or_else(|| {
        let i = body.rfind("<code>")? + 6;
        let j = body[i..].find("</code>")? + i;
        Some(body[i..j].to_owned())
    });
    (status, location, rid)
}

/// A full sign-in of `user` starting at `start`; returns the browser with its session.
pub async fn sign_in(s: &Signed, user: &str, start: &str) -> idp::Browser {
    let mut browser = idp::Browser::new();
    let callback = authorize(s, &mut browser, start, user).await;
    let (status, _, _) = deliver(s, &mut browser, &callback).await;
    assert_eq!(status, 302, "callback for {user}");
    assert!(
        browser.gateway_cookies.contains_key("__Host-sekisho"),
        "{:?}",
        browser.gateway_cookies
    );
    browser
}

/// The browser's `Cookie` header value for the gateway.
pub fn cookie(browser: &idp::Browser) -> String {
    browser
        .headers()
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
