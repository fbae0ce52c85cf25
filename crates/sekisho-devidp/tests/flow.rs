//! The development IdP driven end to end over HTTP on loopback.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use sekisho_devidp::{ACR_MFA, ACR_PWD, DevIdp, DevIdpConfig, DevIdpError, SESSION_COOKIE};
use serde_json::Value;
use support::*;

#[tokio::test]
async fn discovery_document_advertises_pkce_iss_and_endpoints() {
    let idp = start().await;
    let issuer = idp.issuer();
    assert!(issuer.starts_with("http://127.0.0.1:"), "{issuer}");
    assert_eq!(issuer, format!("http://{}", idp.local_addr()));
    let d: Value = reqwest::get(format!("{issuer}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], issuer.as_str());
    for (k, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("userinfo_endpoint", "/userinfo"),
        ("end_session_endpoint", "/end_session"),
    ] {
        assert_eq!(d[k], format!("{issuer}{path}"), "{k}");
    }
    assert_eq!(strings(&d["code_challenge_methods_supported"]), ["S256"]);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(
        strings(&d["id_token_signing_alg_values_supported"]),
        ["ES256"]
    );
    assert!(strings(&d["acr_values_supported"]).contains(&ACR_MFA.to_owned()));

    // The JWKS has one EC key with a kid, and no private part.
    let jwks: Value = reqwest::get(format!("{issuer}/jwks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert!(keys[0]["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(keys[0].get("d").is_none(), "no private key material");
    idp.shutdown().await;
}

#[tokio::test]
async fn code_flow_with_pkce_yields_tokens_that_verify_against_jwks() {
    let idp = start().await;
    let b = browser();
    let req = AuthReq::new();

    // The login page: accessible, bilingual, self-contained, clearly development-only.
    let r = b.get(req.url(&idp)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains("<html lang=\"ja\">"));
    assert!(html.contains("lang=\"en\""));
    assert!(html.contains("<h1>"));
    assert!(html.contains("開発用") && html.contains("DEVELOPMENT ONLY"));
    assert!(html.contains("<label for=\"password\">"));
    assert!(html.contains("田中 花子"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resources"
    );

    let r = post_login(&b, &idp, &request_id(&html), "tanaka", "tanaka-demo", false).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("{SESSION_COOKIE}=")));
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let (base, params) = redirect_params(&r);
    assert_eq!(base, REDIRECT);
    assert_eq!(params["state"], req.state);
    assert_eq!(params["iss"], idp.issuer(), "RFC 9207 iss on the redirect");
    let code = &params["code"];

    let (status, t) = exchange(&idp, code, &req).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["expires_in"].as_i64().unwrap() > 0);
    assert!(t["refresh_token"].as_str().is_some_and(|s| s.len() > 20));

    let id = verify(&idp, t["id_token"].as_str().unwrap(), "JWT", CLIENT_ID).await;
    assert_eq!(id["sub"], "tanaka");
    assert_eq!(id["nonce"], req.nonce.as_str());
    assert_eq!(id["email"], "tanaka@town.example.lg.jp");
    assert_eq!(id["name"], "田中 花子");
    assert_eq!(strings(&id["groups"]), ["staff", "lgwan-users"]);
    assert_eq!(strings(&id["amr"]), ["pwd"]);
    assert_eq!(id["acr"], ACR_PWD);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let auth_time = id["auth_time"].as_i64().unwrap();
    assert!((now - auth_time).abs() < 30);
    assert!(id["iat"].as_i64().unwrap() <= id["exp"].as_i64().unwrap());

    let at = verify(
        &idp,
        t["access_token"].as_str().unwrap(),
        "at+jwt",
        AUDIENCE,
    )
    .await;
    assert_eq!(at["sub"], "tanaka");
    assert_eq!(strings(&at["groups"]), ["staff", "lgwan-users"]);
    assert_eq!(at["client_id"], CLIENT_ID);

    // userinfo with the access token; without or with a forged one, 401.
    let ui = format!("{}/userinfo", idp.issuer());
    let c = reqwest::Client::new();
    let r = c
        .get(&ui)
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["sub"], "tanaka");
    assert_eq!(strings(&info["groups"]), ["staff", "lgwan-users"]);
    let r = c.get(&ui).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    // An ID token is not an access token.
    let r = c
        .get(&ui)
        .bearer_auth(t["id_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    idp.shutdown().await;
}

#[tokio::test]
async fn wrong_pkce_verifier_is_invalid_grant_and_does_not_consume_the_code() {
    let idp = start().await;
    let req = AuthReq::new();
    let params = sign_in(&browser(), &idp, &req, "suzuki", false).await;
    let code = &params["code"];
    let wrong = pkce();
    let (status, e) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &wrong.verifier),
        ],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"], "invalid_grant");
    // No verifier at all: refused too.
    let (status, e) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // The right verifier still redeems it.
    let (status, t) = exchange(&idp, code, &req).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    idp.shutdown().await;
}

#[tokio::test]
async fn code_is_single_use_and_reuse_revokes_its_refresh_token() {
    let idp = start().await;
    let req = AuthReq::new();
    let params = sign_in(&browser(), &idp, &req, "tanaka", false).await;
    let (status, t) = exchange(&idp, &params["code"], &req).await;
    assert_eq!(status, StatusCode::OK);
    let (status, e) = exchange(&idp, &params["code"], &req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"], "invalid_grant");
    // RFC 6749 §4.1.2: the tokens issued from the replayed code are revoked.
    let (status, e) = token(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn code_is_bound_to_client_and_redirect_uri() {
    let idp = start().await;
    let req = AuthReq::new();
    let params = sign_in(&browser(), &idp, &req, "tanaka", false).await;
    let code = params["code"].as_str();
    // Another registered redirect URI than the one the code was issued for.
    let (status, e) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", OTHER_REDIRECT),
            ("code_verifier", &req.pkce.verifier),
        ],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // Another client.
    let r = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer()))
        .basic_auth("other-app", Some("other-secret-456"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &req.pkce.verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Wrong secret: invalid_client, 401.
    let (status, e) = token(
        &idp,
        &[("grant_type", "authorization_code"), ("code", code)],
        ClientAuth::Basic,
        "not-the-secret",
    )
    .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    // None of that consumed it; client_secret_post works as well as Basic.
    let (status, t) = token(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &req.pkce.verifier),
        ],
        ClientAuth::Post,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    idp.shutdown().await;
}

#[tokio::test]
async fn unregistered_redirect_uri_or_client_is_refused_without_redirect() {
    let idp = start().await;
    let b = browser();
    for (client, uri) in [
        (CLIENT_ID, "https://evil.example/cb"),
        (
            CLIENT_ID,
            "https://portal.localhost:8443/.sekisho/callback/extra",
        ),
        (
            CLIENT_ID,
            "https://portal.localhost:8443/.sekisho/callback?x=1",
        ),
        ("unknown-client", REDIRECT),
    ] {
        let mut req = AuthReq::new();
        req.redirect_uri = uri.into();
        let url = req.url(&idp).replace(
            &format!("client_id={CLIENT_ID}"),
            &format!("client_id={client}"),
        );
        let r = b.get(url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{client} {uri}");
        assert!(
            r.headers().get("location").is_none(),
            "never redirects to {uri}"
        );
        let html = r.text().await.unwrap();
        assert!(html.contains("lang=\"en\""));
    }
    idp.shutdown().await;
}

#[tokio::test]
async fn bad_requests_to_a_registered_uri_come_back_as_errors_with_iss() {
    let idp = start().await;
    let b = browser();
    // Control: an unknown extra parameter is ignored and the form is shown, so each case
    // below fails for its own reason.
    let r = b
        .get(AuthReq::new().with("x", "1").url(&idp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A repeated parameter (RFC 6749 §3.1).
    let req = AuthReq::new();
    let r = b
        .get(req.url(&idp) + "&code_challenge=" + &req.pkce.challenge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (_, p) = redirect_params(&r);
    assert_eq!(p["error"], "invalid_request");

    for (needle, replacement, error) in [
        (
            "code_challenge_method=S256",
            "code_challenge_method=plain",
            "invalid_request",
        ),
        ("&code_challenge_method=S256", "", "invalid_request"),
        (
            "response_type=code",
            "response_type=token",
            "unsupported_response_type",
        ),
        ("scope=openid+email+profile", "scope=email", "invalid_scope"),
        ("&nonce=", "&nonce_=", "invalid_request"),
    ] {
        let req = AuthReq::new();
        let url = req.url(&idp);
        assert!(url.contains(needle), "{url} lacks {needle}");
        let r = b
            .get(url.replace(needle, replacement))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND, "{needle}");
        let (base, p) = redirect_params(&r);
        assert_eq!(base, REDIRECT);
        assert_eq!(p["error"], error, "{needle}");
        assert_eq!(p["state"], req.state);
        assert_eq!(p["iss"], idp.issuer());
        assert!(!p.contains_key("code"));
    }
    idp.shutdown().await;
}

#[tokio::test]
async fn wrong_password_shows_the_form_again_and_issues_no_code() {
    let idp = start().await;
    let b = browser();
    let req = AuthReq::new();
    let html = b
        .get(req.url(&idp))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rid = request_id(&html);
    for (user, pw) in [
        ("tanaka", "suzuki-demo"),
        ("tanaka", ""),
        ("nobody", "nobody-demo"),
    ] {
        let r = post_login(&b, &idp, &rid, user, pw, false).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(r.headers().get("location").is_none());
        assert!(r.headers().get("set-cookie").is_none());
        let page = r.text().await.unwrap();
        assert!(page.contains("role=\"alert\""));
    }
    // The same request still completes with the right password, once.
    let r = post_login(&b, &idp, &rid, "tanaka", "tanaka-demo", false).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = post_login(&b, &idp, &rid, "tanaka", "tanaka-demo", false).await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "a login request is single-use"
    );
    idp.shutdown().await;
}

#[tokio::test]
async fn second_login_is_silent_unless_prompt_login_or_max_age_exceeded() {
    let idp = start().await;
    let b = browser();
    let first = sign_in(&b, &idp, &AuthReq::new(), "tanaka", false).await;
    assert!(first.contains_key("code"));

    // Silent: straight back to the client with a code, same auth_time.
    let req = AuthReq::new();
    let r = b.get(req.url(&idp)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (_, p) = redirect_params(&r);
    let (_, t) = exchange(&idp, &p["code"], &req).await;
    let id = verify(&idp, t["id_token"].as_str().unwrap(), "JWT", CLIENT_ID).await;
    assert_eq!(id["nonce"], req.nonce.as_str());
    let auth_time = id["auth_time"].as_i64().unwrap();

    // prompt=login: the form again.
    let r = b
        .get(AuthReq::new().with("prompt", "login").url(&idp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A browser without the cookie gets the form; prompt=none without a session is an error.
    let r = browser()
        .get(AuthReq::new().url(&idp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = browser()
        .get(AuthReq::new().with("prompt", "none").url(&idp))
        .send()
        .await
        .unwrap();
    let (_, p) = redirect_params(&r);
    assert_eq!(p["error"], "login_required");

    // max_age: within it silent, beyond it the form; re-authentication moves auth_time.
    idp.advance_clock(Duration::from_secs(120));
    let r = b
        .get(AuthReq::new().with("max_age", "600").url(&idp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let req = AuthReq::new().with("max_age", "60");
    let r = b.get(req.url(&idp)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "session older than max_age");
    let html = r.text().await.unwrap();
    let r = post_login(&b, &idp, &request_id(&html), "tanaka", "tanaka-demo", false).await;
    let (_, p) = redirect_params(&r);
    let (_, t) = exchange(&idp, &p["code"], &req).await;
    let id = verify(&idp, t["id_token"].as_str().unwrap(), "JWT", CLIENT_ID).await;
    assert!(id["auth_time"].as_i64().unwrap() >= auth_time + 120);
    idp.shutdown().await;
}

#[tokio::test]
async fn step_up_with_acr_values_yields_otp_in_amr() {
    let idp = start().await;
    let b = browser();
    sign_in(&b, &idp, &AuthReq::new(), "tanaka", false).await;

    // A password-only session does not satisfy acr_values=mfa: the form, MFA pre-ticked.
    let req = AuthReq::new().with("acr_values", ACR_MFA);
    let r = b.get(req.url(&idp)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("name=\"mfa\" value=\"1\" checked"));
    let r = post_login(&b, &idp, &request_id(&html), "tanaka", "tanaka-demo", true).await;
    let (_, p) = redirect_params(&r);
    let (_, t) = exchange(&idp, &p["code"], &req).await;
    let id = verify(&idp, t["id_token"].as_str().unwrap(), "JWT", CLIENT_ID).await;
    assert_eq!(strings(&id["amr"]), ["pwd", "otp"]);
    assert_eq!(id["acr"], ACR_MFA);

    // Now the MFA session satisfies a later step-up silently.
    let r = b
        .get(AuthReq::new().with("acr_values", ACR_MFA).url(&idp))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);

    // A user without MFA cannot claim it.
    let b2 = browser();
    let html = b2
        .get(AuthReq::new().url(&idp))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = post_login(&b2, &idp, &request_id(&html), "suzuki", "suzuki-demo", true).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    idp.shutdown().await;
}

#[tokio::test]
async fn refresh_picks_up_a_group_change_and_rotates_the_token() {
    let idp = start().await;
    let req = AuthReq::new();
    let p = sign_in(&browser(), &idp, &req, "tanaka", true).await;
    let (_, t) = exchange(&idp, &p["code"], &req).await;
    let rt1 = t["refresh_token"].as_str().unwrap().to_owned();

    assert!(idp.set_groups("tanaka", vec!["staff".into(), "kikaku".into()]));
    assert!(!idp.set_groups("nobody", vec![]));
    let (status, t2) = token(
        &idp,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        ClientAuth::Post,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t2}");
    let id = verify(&idp, t2["id_token"].as_str().unwrap(), "JWT", CLIENT_ID).await;
    assert_eq!(strings(&id["groups"]), ["staff", "kikaku"]);
    assert_eq!(id["sub"], "tanaka");
    // The sign-in facts survive the refresh.
    assert_eq!(strings(&id["amr"]), ["pwd", "otp"]);
    let first = verify(&idp, t["id_token"].as_str().unwrap(), "JWT", CLIENT_ID).await;
    assert_eq!(id["auth_time"], first["auth_time"]);
    let at = verify(
        &idp,
        t2["access_token"].as_str().unwrap(),
        "at+jwt",
        AUDIENCE,
    )
    .await;
    assert_eq!(strings(&at["groups"]), ["staff", "kikaku"]);
    assert_eq!(
        idp.users()
            .iter()
            .find(|u| u.username == "tanaka")
            .unwrap()
            .groups,
        ["staff", "kikaku"]
    );

    // Rotation: the old refresh token is spent, the new one works.
    let rt2 = t2["refresh_token"].as_str().unwrap();
    assert_ne!(rt2, rt1);
    let (status, _) = token(
        &idp,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt1)],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = token(
        &idp,
        &[("grant_type", "refresh_token"), ("refresh_token", rt2)],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    idp.shutdown().await;
}

#[tokio::test]
async fn end_session_redirects_only_to_a_registered_uri_and_ends_the_session() {
    let idp = start().await;
    let b = browser();
    let req = AuthReq::new();
    let p = sign_in(&b, &idp, &req, "tanaka", false).await;
    let (_, t) = exchange(&idp, &p["code"], &req).await;
    let id_token = t["id_token"].as_str().unwrap();
    let end = format!("{}/end_session", idp.issuer());

    // Unregistered targets: an error page, no redirect, session kept.
    for uri in ["https://evil.example/", "https://other.localhost/bye"] {
        let r = b
            .get(&end)
            .query(&[
                ("id_token_hint", id_token),
                ("post_logout_redirect_uri", uri),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.headers().get("location").is_none());
    }
    // A forged hint is refused.
    let r = b
        .get(&end)
        .query(&[
            ("id_token_hint", "e30.e30.AAAA"),
            ("post_logout_redirect_uri", POST_LOGOUT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = b.get(AuthReq::new().url(&idp)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND, "still signed in");

    let r = b
        .get(&end)
        .query(&[
            ("id_token_hint", id_token),
            ("post_logout_redirect_uri", POST_LOGOUT),
            ("state", "bye-123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let (base, q) = redirect_params(&r);
    assert_eq!(base, POST_LOGOUT);
    assert_eq!(q["state"], "bye-123");
    let cleared = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // Signed out: the next authorization shows the form; the refresh token is gone.
    let r = b.get(AuthReq::new().url(&idp)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _) = token(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ],
        ClientAuth::Basic,
        SECRET,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Without a redirect target: a signed-out page.
    let r = b.get(&end).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    idp.shutdown().await;
}

#[tokio::test]
async fn refuses_non_loopback_and_bad_configuration() {
    let mut cfg = DevIdpConfig::with_clients(vec![client_config()]);
    cfg.bind = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(
        DevIdp::start(cfg).await,
        Err(DevIdpError::NotLoopback(_))
    ));

    let mut c = client_config();
    c.client_secret = "short".into();
    c.redirect_uris.push("not a uri".into());
    let err = DevIdp::start(DevIdpConfig::with_clients(vec![c, client_config()]))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("client_secret") && msg.contains("not a uri") && msg.contains("twice"),
        "{msg}"
    );
    assert!(!msg.contains("short"), "secrets never printed: {msg}");
    assert!(
        DevIdp::start(DevIdpConfig::default()).await.is_err(),
        "no clients"
    );
}

#[test]
fn debug_output_redacts_passwords_and_secrets() {
    let users = sekisho_devidp::demo_users();
    assert_eq!(users.len(), 4);
    let s = format!("{users:?} {:?}", client_config());
    assert!(!s.contains("-demo"), "{s}");
    assert!(!s.contains(SECRET), "{s}");
    for u in &users {
        assert!(u.email.ends_with("@town.example.lg.jp"));
    }
    let mfa: Vec<_> = users
        .iter()
        .filter(|u| u.mfa)
        .map(|u| u.username.as_str())
        .collect();
    assert!(mfa.contains(&"tanaka") && !mfa.contains(&"suzuki"));
}

#[tokio::test]
async fn minted_tokens_verify_and_work_at_userinfo() {
    let idp = start().await;
    assert!(idp.mint_tokens(CLIENT_ID, "nobody", false).is_none());
    assert!(idp.mint_tokens("no-such-client", "tanaka", false).is_none());
    let t = idp.mint_tokens(CLIENT_ID, "tanaka", true).unwrap();
    assert_eq!(format!("{t:?}"), "MintedTokens([redacted])");
    let at = verify(&idp, &t.access_token, "at+jwt", AUDIENCE).await;
    assert_eq!(strings(&at["amr"]), ["pwd", "otp"]);
    assert_eq!(at["acr"], ACR_MFA);
    let id = verify(&idp, &t.id_token, "JWT", CLIENT_ID).await;
    assert_eq!(id["sub"], "tanaka");
    // A user without MFA gets a password-only token even when MFA is asked for.
    let s = idp.mint_tokens(CLIENT_ID, "suzuki", true).unwrap();
    let at = verify(&idp, &s.access_token, "at+jwt", AUDIENCE).await;
    assert_eq!(strings(&at["amr"]), ["pwd"]);
    let r = reqwest::Client::new()
        .get(format!("{}/userinfo", idp.issuer()))
        .bearer_auth(&t.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Expired tokens are refused at userinfo (IdP clock moved past exp).
    idp.advance_clock(Duration::from_secs(3600));
    let r = reqwest::Client::new()
        .get(format!("{}/userinfo", idp.issuer()))
        .bearer_auth(&t.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    idp.shutdown().await;
}

#[test]
fn demo_users_serialize_with_passwords_for_demo_json() {
    let v = serde_json::to_value(sekisho_devidp::demo_users()).unwrap();
    assert_eq!(v[0]["username"], "tanaka");
    assert_eq!(v[0]["password"], "tanaka-demo");
    assert_eq!(v[0]["mfa"], true);
}
