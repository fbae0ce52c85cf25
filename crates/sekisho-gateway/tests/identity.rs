//! Sign-in through the gateway against a real OpenID provider (npm `oidc-provider`, started
//! on loopback by the identity crate's test support): browsers are redirected to log in,
//! the callback sets a session, policy decides on the user's groups, the upstream gets the
//! gateway's identity headers and a signed assertion — never Sekisho's cookies or a spoofed
//! identity — and a cookie replayed after logout is refused.

use crate::common;
use crate::idp;

use common::*;
use http::HeaderValue;

struct Setup {
    gw: Gw,
    idp: idp::Idp,
    up: Echo,
    port: u16,
}

fn base(port: u16) -> String {
    format!("https://{SITE}:{port}")
}

async fn setup() -> Setup {
    // The redirect URI must be registered at the provider before the gateway starts, so the
    // gateway's port is chosen first.
    let port = closed_port("127.0.0.1:0").await.port();
    let idp = idp::Idp::start_for(Some((
        format!("{}/.sekisho/callback", base(port)),
        format!("{}/.sekisho/logged-out", base(port)),
    )));
    let up = echo("portal", "127.0.10.90:0").await;
    let pki = Pki::new(&[SITE]);
    std::fs::write(pki.path("client-secret"), "sekisho-test-secret\n").unwrap();
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    std::fs::write(pki.path("cookie-keys"), format!("k1:{key}\n")).unwrap();
    for f in ["client-secret", "cookie-keys"] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(pki.path(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let extra = format!(
        r#"identity:
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
    let routes = format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    policy: lgwan-staff
"#,
        up.addr
    );
    let config_path = pki.path("sekisho.yaml");
    let yaml = full_yaml_with(&pki, &extra, &routes).replacen(
        "lgwan-https:\n    zone: lgwan\n    listen: 127.0.0.1:0",
        &format!("lgwan-https:\n    zone: lgwan\n    listen: 127.0.0.1:{port}"),
        1,
    );
    std::fs::write(&config_path, yaml).unwrap();
    let running = sekisho_gateway::server::start(&config_path)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    Setup {
        gw: Gw {
            running,
            config_path,
            pki,
        },
        idp,
        up,
        port,
    }
}

/// A GET of the portal route through the gateway.
fn portal(c: &reqwest::Client, s: &Setup) -> reqwest::RequestBuilder {
    c.get(format!("{}/portal", base(s.port)))
}

fn gateway_client(s: &Setup) -> reqwest::Client {
    client(&s.gw.pki, s.gw.addr("lgwan-https"), false)
}

/// Signs `user` in through the gateway as a browser would; returns the browser.
async fn sign_in(s: &Setup, user: &str, password: &str) -> idp::Browser {
    let c = gateway_client(s);
    let mut browser = idp::Browser::new();
    let r = c
        .get(format!("{}/portal?x=1", base(s.port)))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "a browser without a session is sent to sign in"
    );
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&s.idp.issuer), "{location}");
    let set: Vec<HeaderValue> = r.headers().get_all("set-cookie").iter().cloned().collect();
    browser.store(&set);
    let callback = browser
        .drive_idp(
            &location,
            user,
            password,
            &format!("{}/.sekisho/callback", base(s.port)),
        )
        .await;
    let r = c
        .get(&callback)
        .headers(browser.headers())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "callback: {:?}", r.text().await);
    assert_eq!(
        r.headers()["location"],
        "/portal?x=1",
        "back where the user started"
    );
    let set: Vec<HeaderValue> = r.headers().get_all("set-cookie").iter().cloned().collect();
    assert!(
        set.iter()
            .any(|c| c.to_str().unwrap().starts_with("__Host-sekisho")),
        "{set:?}"
    );
    browser.store(&set);
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_sign_in_reaches_the_portal_with_gateway_identity_only() {
    let s = setup().await;
    let browser = sign_in(&s, "alice", "alice-pw").await;
    let c = gateway_client(&s);
    let r = portal(&c, &s)
        .headers(browser.headers())
        .header("X-Sekisho-User", "mallory")
        .header("X_Forwarded_Email", "boss@example.jp")
        .header("Cookie", "other=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.requests().pop().unwrap();
    assert_eq!(seen.headers["x-sekisho-user"], "alice");
    assert_eq!(seen.headers["x-sekisho-groups"], "staff");
    assert_eq!(seen.headers.get_all("x-sekisho-user").iter().count(), 1);
    assert!(!seen.headers.contains_key("x_forwarded_email"));
    let cookies: Vec<&str> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        cookies.iter().all(|c| !c.contains("__Host-sekisho")),
        "Sekisho's cookies never go upstream: {cookies:?}"
    );
    // The assertion verifies against the gateway's published key, for this route.
    let jwt = seen.headers["x-sekisho-assertion"]
        .to_str()
        .unwrap()
        .to_owned();
    let jwks: jsonwebtoken::jwk::JwkSet = c
        .get(format!("{}/.sekisho/jwks.json", base(s.port)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid published");
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&["portal"]);
    v.set_issuer(&["sekisho"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        &jwt,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], serde_json::json!(["staff"]));
    // Reused for the same user and route (the default `reuse`): no request ID in it, the
    // request ID travels in X-Request-Id.
    assert!(claims.get("request_id").is_none(), "{claims}");
    let r = portal(&c, &s)
        .headers(browser.headers())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = s.up.requests().pop().unwrap();
    assert_eq!(again.headers["x-sekisho-assertion"], jwt.as_str());
    assert_ne!(again.headers["x-request-id"], seen.headers["x-request-id"]);

    // whoami shows the session as the gateway sees it.
    let me: serde_json::Value = c
        .get(format!("{}/.sekisho/whoami", base(s.port)))
        .headers(browser.headers())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["sub"], "alice");
    assert_eq!(me["user"]["groups"][0], "staff");
    let m = s.gw.metrics().await;
    assert!(
        m.contains("sekisho_identity_logins_completed_total 1"),
        "{m}"
    );
    assert!(m.contains("policy_version=\""), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_outside_the_group_sees_the_deny_page() {
    let s = setup().await;
    let browser = sign_in(&s, "bob", "bob-pw").await;
    let r = portal(&gateway_client(&s), &s)
        .headers(browser.headers())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("アクセスが許可されていません"), "{page}");
    assert_eq!(s.up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_then_the_old_cookie_is_refused() {
    let s = setup().await;
    let browser = sign_in(&s, "alice", "alice-pw").await;
    let c = gateway_client(&s);
    let r = c
        .post(format!("{}/.sekisho/logout", base(s.port)))
        .headers(browser.headers())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with(&s.idp.issuer),
        "RP-initiated logout at the IdP"
    );
    // Replay the cookie from before the logout.
    let r = portal(&c, &s)
        .headers(browser.headers())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        302,
        "the replayed session is refused: sign in again"
    );
    assert_eq!(s.up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_clients_get_401_and_hostile_tokens_are_refused() {
    let s = setup().await;
    let c = gateway_client(&s);
    let r = portal(&c, &s).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    for token in ["not-a-jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."] {
        let r = portal(&c, &s).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 401, "{token}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    // A real token from the provider is verified; its client has no groups, so policy denies.
    let token = s.idp.access_token(idp::API).await;
    let r = portal(&c, &s).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_outage_keeps_sessions_working_and_new_logins_get_a_clear_page() {
    let mut s = setup().await;
    let browser = sign_in(&s, "alice", "alice-pw").await;
    s.idp.kill();
    let c = gateway_client(&s);
    let r = portal(&c, &s)
        .headers(browser.headers())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "an existing session keeps working while the IdP is down"
    );
    let r = portal(&c, &s)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let page = r.text().await.unwrap();
    assert!(page.contains("ただいま利用できません"), "{page}");
    let m = s.gw.metrics().await;
    assert!(
        m.contains("sekisho_identity_idp_unavailable_total 1"),
        "{m}"
    );
}
