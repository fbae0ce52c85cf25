//! Identity against the real OpenID provider (`oidc-provider` from npm) on 127.0.0.1.

mod support;

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use http::header::{AUTHORIZATION, COOKIE};
use sekisho_identity::{
    AuthMethod, CookieKey, CookieKeyRing, IdentityError, SessionOutcome, SessionRejection,
    TokenError,
};
use support::*;

fn authenticated(
    outcome: SessionOutcome,
) -> (
    std::sync::Arc<sekisho_identity::VerifiedIdentity>,
    Vec<HeaderValue>,
) {
    match outcome {
        SessionOutcome::Authenticated {
            identity,
            set_cookies,
        } => (identity, set_cookies),
        other => panic!("expected an identity, got {other:?}"),
    }
}

fn rejected(outcome: SessionOutcome) -> SessionRejection {
    match outcome {
        SessionOutcome::SessionRejected {
            reason,
            set_cookies,
        } => {
            assert!(
                set_cookies
                    .iter()
                    .all(|c| c.to_str().unwrap().contains("Max-Age=0"))
            );
            reason
        }
        other => panic!("expected a rejected session, got {other:?}"),
    }
}

#[tokio::test]
async fn login_yields_identity_with_groups_amr_acr() {
    let idp = Idp::start();
    let svc = idp.service();
    let mut alice = Browser::new();
    let t0 = now();
    let done = login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    let id = &done.identity;
    assert_eq!(id.sub(), "alice");
    assert_eq!(id.email(), Some("alice@city.example.jp"));
    assert_eq!(id.name(), Some("山田 花子"));
    assert_eq!(id.groups(), ["staff".to_string()]);
    assert_eq!(id.amr(), ["pwd".to_string(), "otp".to_string()]);
    assert!(id.has_mfa());
    assert_eq!(id.acr(), Some("urn:sekisho:loa:2"));
    assert!(id.auth_time().is_some());
    assert_eq!(id.method(), AuthMethod::Session);
    assert_eq!(done.return_to, "/app/page?x=1");
    // Session cookie: __Host-, Secure, HttpOnly, SameSite=Lax, Path=/; login cookie cleared.
    let first = done.set_cookies[0].to_str().unwrap();
    assert!(first.starts_with("__Host-sekisho="));
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(first.contains(attr));
    }
    assert!(alice.gateway_cookies.keys().all(|k| !k.contains("-login-")));
    // The next request is identified by the cookie alone.
    let (again, _) = authenticated(svc.authenticate(&alice.headers(), at(t0, 5)).await);
    assert_eq!(again.sub(), "alice");
    assert_eq!(again.groups(), ["staff".to_string()]);
    // A different user in a different browser gets their own identity.
    let mut bob = Browser::new();
    let bob_done = login(&svc, &mut bob, "bob", "bob-pw", t0).await;
    assert_eq!(bob_done.identity.groups(), ["visitors".to_string()]);
    assert!(!bob_done.identity.has_mfa());
    assert_eq!(svc.metrics().logins_completed.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn callback_replay_wrong_state_and_wrong_issuer_are_refused() {
    let idp = Idp::start();
    let svc = idp.service();
    let t0 = now();

    // Replay: the same callback twice.
    let mut b = Browser::new();
    let (callback, _) = authorize(&svc, &mut b, "alice", "alice-pw", t0).await;
    let headers = b.headers();
    svc.finish_login(HOST, &callback_uri(&callback), &headers, t0)
        .await
        .unwrap();
    let replay = svc
        .finish_login(HOST, &callback_uri(&callback), &headers, t0)
        .await;
    assert!(
        matches!(replay, Err(IdentityError::LoginStateReplayed)),
        "{replay:?}"
    );

    // Wrong state: the login cookie for it is not in this browser.
    let mut b = Browser::new();
    let (callback, _) = authorize(&svc, &mut b, "alice", "alice-pw", t0).await;
    let forged = callback.replace("state=", "state=x");
    let r = svc
        .finish_login(HOST, &callback_uri(&forged), &b.headers(), t0)
        .await;
    assert!(matches!(r, Err(IdentityError::LoginStateMissing)), "{r:?}");

    // State bound to the browser: another browser (no login cookie) cannot use the callback.
    let r = svc
        .finish_login(
            HOST,
            &callback_uri(&callback),
            &Browser::new().headers(),
            t0,
        )
        .await;
    assert!(matches!(r, Err(IdentityError::LoginStateMissing)), "{r:?}");

    // Wrong issuer (RFC 9207 mix-up).
    let mut b = Browser::new();
    let (callback, _) = authorize(&svc, &mut b, "alice", "alice-pw", t0).await;
    let mut u = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "iss" {
                    "http://127.0.0.1:1".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let r = svc
        .finish_login(HOST, &callback_uri(u.as_str()), &b.headers(), t0)
        .await;
    assert!(matches!(r, Err(IdentityError::IssuerMismatch)), "{r:?}");

    // Missing issuer while the IdP advertises the parameter.
    let mut b = Browser::new();
    let (callback, _) = authorize(&svc, &mut b, "alice", "alice-pw", t0).await;
    let mut u = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let r = svc
        .finish_login(HOST, &callback_uri(u.as_str()), &b.headers(), t0)
        .await;
    assert!(matches!(r, Err(IdentityError::IssuerMismatch)), "{r:?}");

    // Callback on another host than the login started on.
    let mut b = Browser::new();
    let (callback, _) = authorize(&svc, &mut b, "alice", "alice-pw", t0).await;
    let r = svc
        .finish_login("evil.example", &callback_uri(&callback), &b.headers(), t0)
        .await;
    assert!(matches!(r, Err(IdentityError::LoginHostMismatch)), "{r:?}");

    // Too late.
    let mut b = Browser::new();
    let (callback, _) = authorize(&svc, &mut b, "alice", "alice-pw", t0).await;
    let r = svc
        .finish_login(HOST, &callback_uri(&callback), &b.headers(), at(t0, 601))
        .await;
    assert!(matches!(r, Err(IdentityError::LoginExpired)), "{r:?}");
}

#[tokio::test]
async fn code_injection_into_another_login_is_refused() {
    // The attacker's code delivered with the victim's state: PKCE (and the nonce behind it)
    // makes the exchange fail.
    let idp = Idp::start();
    let svc = idp.service();
    let t0 = now();
    let mut attacker = Browser::new();
    let (attacker_cb, _) = authorize(&svc, &mut attacker, "bob", "bob-pw", t0).await;
    let mut victim = Browser::new();
    let (victim_cb, _) = authorize(&svc, &mut victim, "alice", "alice-pw", t0).await;
    let code = url::Url::parse(&attacker_cb)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let mut u = url::Url::parse(&victim_cb).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_string(),
                if k == "code" {
                    code.clone()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    let r = svc
        .finish_login(HOST, &callback_uri(u.as_str()), &victim.headers(), t0)
        .await;
    assert!(matches!(r, Err(IdentityError::GrantRejected(_))), "{r:?}");
}

#[tokio::test]
async fn group_change_is_picked_up_after_refresh() {
    let idp = Idp::start();
    let svc = idp.service();
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    idp.set_groups("alice", &["staff", "finance"]).await;

    // Within the claims bound: the session's claims are used as they are.
    let (id, _) = authenticated(svc.authenticate(&alice.headers(), at(t0, 5 * 60)).await);
    assert_eq!(id.groups(), ["staff".to_string()]);

    // At the bound (10 min): refreshed through the refresh token.
    let (id, set) = authenticated(svc.authenticate(&alice.headers(), at(t0, 10 * 60)).await);
    assert_eq!(id.groups(), ["finance".to_string(), "staff".to_string()]);
    assert!(!set.is_empty(), "the refreshed session must be re-issued");
    assert_eq!(svc.metrics().refresh_ok.load(Ordering::Relaxed), 1);
    alice.store(&set);
    let (id, _) = authenticated(svc.authenticate(&alice.headers(), at(t0, 11 * 60)).await);
    assert_eq!(id.groups(), ["finance".to_string(), "staff".to_string()]);
    assert_eq!(id.amr(), ["pwd".to_string(), "otp".to_string()]);
    assert!(id.auth_time().is_some());

    // Removal works the same way.
    idp.set_groups("alice", &[]).await;
    let (id, _) = authenticated(svc.authenticate(&alice.headers(), at(t0, 21 * 60)).await);
    assert!(id.groups().is_empty());
}

#[tokio::test]
async fn logout_then_cookie_replay_is_refused() {
    let idp = Idp::start();
    let svc = idp.service();
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    let stolen = alice.headers();

    let out = svc.logout(HOST, &alice.headers());
    assert!(out.had_session);
    assert!(
        out.location
            .starts_with(&format!("{}/session/end?", idp.issuer)),
        "{}",
        out.location
    );
    assert!(out.location.contains("client_id=sekisho"));
    assert!(out.location.contains(
        "post_logout_redirect_uri=https%3A%2F%2F127.0.0.1%3A8443%2F.sekisho%2Flogged-out"
    ));
    alice.store(&out.set_cookies);
    assert!(alice.gateway_cookies.is_empty());
    // RP-initiated logout at the IdP ends there with the post-logout redirect.
    let landed = alice
        .drive_idp(
            &out.location,
            "",
            "",
            "https://127.0.0.1:8443/.sekisho/logged-out",
        )
        .await;
    assert!(landed.starts_with("https://127.0.0.1:8443/.sekisho/logged-out"));

    // The cookie from before logout is refused.
    assert_eq!(
        rejected(svc.authenticate(&stolen, at(t0, 10)).await),
        SessionRejection::Revoked
    );
    // The browser has no session any more.
    assert!(matches!(
        svc.authenticate(&alice.headers(), at(t0, 10)).await,
        SessionOutcome::Anonymous
    ));
}

#[tokio::test]
async fn expired_idle_tampered_and_forged_sessions_are_refused() {
    let idp = Idp::start();
    let key = CookieKey::generate("2026-11");
    let svc = idp.service_with_keys(CookieKeyRing::new(vec![key.clone()]).unwrap());
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    let h = alice.headers();
    // Absolute lifetime (10 h) and idle timeout (1 h), by injected time.
    assert_eq!(
        rejected(svc.authenticate(&h, at(t0, 10 * 3600)).await),
        SessionRejection::Expired
    );
    assert_eq!(
        rejected(svc.authenticate(&h, at(t0, 3601)).await),
        SessionRejection::Idle
    );
    // Touching the session moves the idle deadline. (Checked with `decode`, which does not
    // refresh: the IdP's own tokens carry real time, the injected clock is far ahead.)
    let (_, set) = authenticated(svc.authenticate(&h, at(t0, 300)).await);
    assert!(!set.is_empty());
    let mut later = Browser::new();
    later.gateway_cookies = alice.gateway_cookies.clone();
    later.store(&set);
    assert!(matches!(
        svc.sessions().decode(&later.headers(), at(t0, 300 + 3500)),
        sekisho_identity::session::Decoded::Valid(_)
    ));
    assert!(matches!(
        svc.sessions().decode(&h, at(t0, 300 + 3500)),
        sekisho_identity::session::Decoded::Rejected(SessionRejection::Idle)
    ));

    // Tampered: one character changed.
    let mut tampered = alice.gateway_cookies.clone();
    let v = tampered.get_mut("__Host-sekisho").unwrap();
    let mut bytes = v.clone().into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'Q' { b'R' } else { b'Q' };
    *v = String::from_utf8(bytes).unwrap();
    let mut b = Browser::new();
    b.gateway_cookies = tampered;
    assert_eq!(
        rejected(svc.authenticate(&b.headers(), at(t0, 1)).await),
        SessionRejection::Invalid
    );

    // Forged: sealed by a gateway with another key.
    let other =
        idp.service_with_keys(CookieKeyRing::new(vec![CookieKey::generate("attacker")]).unwrap());
    let mut mallory = Browser::new();
    login(&other, &mut mallory, "alice", "alice-pw", t0).await;
    assert_eq!(
        rejected(svc.authenticate(&mallory.headers(), at(t0, 1)).await),
        SessionRejection::Invalid
    );

    // Plain garbage and a plaintext JSON session.
    let mut h = http::HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_static("__Host-sekisho=1~eyJzIjoicm9vdCJ9"),
    );
    assert_eq!(
        rejected(svc.authenticate(&h, at(t0, 1)).await),
        SessionRejection::Invalid
    );

    // Key rotation: a new key in front keeps the session valid; once the old key is removed
    // the session no longer opens.
    let rotated = idp
        .service_with_keys(CookieKeyRing::new(vec![CookieKey::generate("2026-12"), key]).unwrap());
    authenticated(rotated.authenticate(&alice.headers(), at(t0, 1)).await);
    rotated.set_cookie_keys(CookieKeyRing::new(vec![CookieKey::generate("2027-01")]).unwrap());
    assert_eq!(
        rejected(rotated.authenticate(&alice.headers(), at(t0, 1)).await),
        SessionRejection::Invalid
    );
}

#[tokio::test]
async fn bearer_tokens_verify_and_hostile_ones_are_refused() {
    let idp = Idp::start();
    let svc = idp.service();
    let t0 = now();
    let token = idp.access_token(API).await;
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "at+jwt");

    let mut h = http::HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (id, set) = authenticated(svc.authenticate(&h, t0).await);
    assert_eq!(id.sub(), "sekisho");
    assert_eq!(id.method(), AuthMethod::Bearer);
    assert_eq!(id.claims()["scope"], "api:read");
    assert!(set.is_empty());

    let bearer = svc.bearer().unwrap();
    // Wrong audience.
    let other = idp.access_token(OTHER_API).await;
    assert_eq!(
        bearer.verify(&other, t0).await.unwrap_err(),
        TokenError::WrongAudience
    );
    // Expired (600 s lifetime + 60 s leeway), and leeway honoured.
    assert!(bearer.verify(&token, at(t0, 600 + 30)).await.is_ok());
    assert_eq!(
        bearer
            .verify(&token, at(t0, 600 + 61 + 5))
            .await
            .unwrap_err(),
        TokenError::Expired
    );
    // Not yet valid (iat in the future beyond leeway).
    assert_eq!(
        bearer.verify(&token, at(t0, -120)).await.unwrap_err(),
        TokenError::NotYetValid
    );

    // Algorithm confusion: HS256 signed with the RSA public key as the HMAC secret.
    let jwks = idp.jwks().await;
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap()
        .clone();
    let ec = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "EC")
        .unwrap()
        .clone();
    let payload = token.split('.').nth(1).unwrap();
    let n = URL_SAFE_NO_PAD.decode(rsa["n"].as_str().unwrap()).unwrap();
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(rsa["kid"].as_str().unwrap().to_owned());
    hs_header.typ = Some("at+jwt".into());
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    for secret in [n.clone(), rsa.to_string().into_bytes()] {
        let forged = jsonwebtoken::encode(
            &hs_header,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&secret),
        )
        .unwrap();
        assert_eq!(
            bearer.verify(&forged, t0).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
    }
    // alg none, with and without a signature part.
    let none_header = URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": rsa["kid"]}).to_string());
    for forged in [
        format!("{none_header}.{payload}."),
        format!("{none_header}.{payload}.AAAA"),
    ] {
        assert!(matches!(
            bearer.verify(&forged, t0).await.unwrap_err(),
            TokenError::AlgorithmNotAllowed | TokenError::Malformed
        ));
    }
    // Mismatched alg: RS256 header naming the EC key.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": ec["kid"]}).to_string());
    assert_eq!(
        bearer.verify(&parts.join("."), t0).await.unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    // Signature over other claims.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut evil = claims.clone();
    evil["sub"] = "root".into();
    parts[1] = URL_SAFE_NO_PAD.encode(evil.to_string());
    assert_eq!(
        bearer.verify(&parts.join("."), t0).await.unwrap_err(),
        TokenError::BadSignature
    );
    // Wrong typ.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"alg": "RS256", "typ": "logout+jwt", "kid": rsa["kid"]}).to_string(),
    );
    assert!(matches!(
        bearer.verify(&parts.join("."), t0).await.unwrap_err(),
        TokenError::WrongType(_)
    ));
    // Oversized tokens are refused before parsing.
    let huge = format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c");
    assert_eq!(
        bearer.verify(&huge, t0).await.unwrap_err(),
        TokenError::TooLarge
    );
    // The gateway answers 401 with WWW-Authenticate.
    let mut h = http::HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {other}")).unwrap(),
    );
    let SessionOutcome::BearerRejected(e) = svc.authenticate(&h, t0).await else {
        panic!()
    };
    let www = svc.www_authenticate(Some(&e));
    assert_eq!(
        www.to_str().unwrap(),
        "Bearer realm=\"sekisho\", error=\"invalid_token\", error_description=\"audience does not match\""
    );
    assert_eq!(
        IdentityError::Bearer(e).status(),
        http::StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn jwks_rotation_refreshes_on_unknown_kid_with_rate_limit() {
    let mut idp = Idp::start();
    let svc = idp.service();
    let bearer = svc.bearer().unwrap();
    let t0 = now();
    let old_token = idp.access_token(API).await;
    bearer.verify(&old_token, t0).await.unwrap();
    let old_kids = bearer.jwks().kids();
    assert_eq!(svc.metrics().jwks_fetch_ok.load(Ordering::Relaxed), 1);

    idp.restart();
    let new_token = idp.access_token(API).await;
    // Within the rate limit (30 s) no refetch happens: the unknown kid is refused.
    assert_eq!(
        bearer.verify(&new_token, at(t0, 1)).await.unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(
        svc.metrics().jwks_refresh_limited.load(Ordering::Relaxed),
        1
    );
    // After it, the unknown kid triggers one refresh and the new key verifies.
    bearer.verify(&new_token, at(t0, 31)).await.unwrap();
    assert_eq!(svc.metrics().jwks_fetch_ok.load(Ordering::Relaxed), 2);
    let new_kids = bearer.jwks().kids();
    assert!(
        new_kids.iter().all(|k| !old_kids.contains(k)),
        "{old_kids:?} {new_kids:?}"
    );
    // Tokens signed with the removed key no longer verify.
    assert_eq!(
        bearer.verify(&old_token, at(t0, 32)).await.unwrap_err(),
        TokenError::UnknownKey
    );

    // Logins verify ID tokens with the rotated keys too.
    let mut alice = Browser::new();
    login(&svc, &mut alice, "alice", "alice-pw", at(t0, 40)).await;
}

#[tokio::test]
async fn idp_down_keeps_sessions_and_cached_keys_but_new_logins_fail() {
    let mut idp = Idp::start();
    let svc = idp.service();
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    let token = idp.access_token(API).await;
    svc.bearer().unwrap().verify(&token, t0).await.unwrap();

    idp.kill();

    // Existing session: fine, also when its claims are due for refresh.
    let (id, _) = authenticated(svc.authenticate(&alice.headers(), at(t0, 60)).await);
    assert_eq!(id.groups(), ["staff".to_string()]);
    let (id, _) = authenticated(svc.authenticate(&alice.headers(), at(t0, 11 * 60)).await);
    assert_eq!(id.sub(), "alice");
    assert!(svc.metrics().refresh_deferred.load(Ordering::Relaxed) >= 1);
    assert!(svc.metrics().idp_unavailable.load(Ordering::Relaxed) >= 1);
    // During the back-off no further attempt is made, the session still works.
    let before = svc.metrics().idp_unavailable.load(Ordering::Relaxed);
    authenticated(
        svc.authenticate(&alice.headers(), at(t0, 11 * 60 + 5))
            .await,
    );
    assert_eq!(
        svc.metrics().idp_unavailable.load(Ordering::Relaxed),
        before
    );

    // New login: a typed error the gateway shows as a 503 page.
    let r = svc
        .start_login(
            HOST,
            "/app/",
            |_, _| true,
            None,
            &alice.headers(),
            at(t0, 12 * 60),
        )
        .await;
    let err = r.unwrap_err();
    assert!(matches!(err, IdentityError::IdpUnavailable(_)), "{err:?}");
    assert_eq!(err.status(), http::StatusCode::SERVICE_UNAVAILABLE);

    // Bearer token with an already cached key still verifies.
    let (id, _) = {
        let mut h = http::HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        authenticated(svc.authenticate(&h, at(t0, 120)).await)
    };
    assert_eq!(id.method(), AuthMethod::Bearer);
    // An unknown kid while the JWKS cannot be fetched: keys unavailable (503), not a crash.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[0] = URL_SAFE_NO_PAD
        .encode(serde_json::json!({"alg": "RS256", "typ": "at+jwt", "kid": "unknown"}).to_string());
    let e = svc
        .bearer()
        .unwrap()
        .verify(&parts.join("."), at(t0, 200))
        .await
        .unwrap_err();
    assert!(matches!(e, TokenError::KeysUnavailable(_)), "{e:?}");
}

#[tokio::test]
async fn step_up_sends_prompt_max_age_and_acr_values() {
    let idp = Idp::start();
    let svc = idp.service();
    let step = sekisho_identity::StepUp {
        prompt_login: true,
        max_age: Some(std::time::Duration::from_secs(300)),
        acr_values: vec!["urn:sekisho:loa:2".into()],
    };
    let start = svc
        .start_login(
            HOST,
            "/app/",
            |_, _| true,
            Some(&step),
            &http::HeaderMap::new(),
            now(),
        )
        .await
        .unwrap();
    let u = url::Url::parse(&start.location).unwrap();
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["prompt"], "login");
    assert_eq!(q["max_age"], "300");
    assert_eq!(q["acr_values"], "urn:sekisho:loa:2");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("state") && q.contains_key("nonce"));
    assert_eq!(q["redirect_uri"], CALLBACK);
    // Debug output never shows the state, nonce or the sealed login cookie.
    let dbg = format!("{start:?}");
    assert!(
        !dbg.contains(q["state"].as_ref() as &str) && !dbg.contains(q["nonce"].as_ref() as &str),
        "{dbg}"
    );
    assert!(!dbg.contains("__Host-sekisho-login-"), "{dbg}");
    // A hostile return target falls back to `/`.
    let mut b = Browser::new();
    let start = svc
        .start_login(
            HOST,
            "//evil.example/",
            |_, _| true,
            None,
            &b.headers(),
            now(),
        )
        .await
        .unwrap();
    b.store(&start.set_cookies);
    let cb = b
        .drive_idp(&start.location, "alice", "alice-pw", CALLBACK)
        .await;
    let done = svc
        .finish_login(HOST, &callback_uri(&cb), &b.headers(), now())
        .await
        .unwrap();
    assert_eq!(done.return_to, "/");
}

#[tokio::test]
async fn pending_login_cookies_are_bounded() {
    let idp = Idp::start();
    let svc = idp.service();
    let mut b = Browser::new();
    for _ in 0..10 {
        let start = svc
            .start_login(HOST, "/app/", |_, _| true, None, &b.headers(), now())
            .await
            .unwrap();
        b.store(&start.set_cookies);
        let pending = b
            .gateway_cookies
            .keys()
            .filter(|k| k.contains("-login-"))
            .count();
        assert!(
            pending <= sekisho_identity::service::MAX_PENDING_LOGINS,
            "{pending}"
        );
    }
    // The newest login still completes.
    let start = svc
        .start_login(HOST, "/app/", |_, _| true, None, &b.headers(), now())
        .await
        .unwrap();
    b.store(&start.set_cookies);
    let cb = b
        .drive_idp(&start.location, "alice", "alice-pw", CALLBACK)
        .await;
    svc.finish_login(HOST, &callback_uri(&cb), &b.headers(), now())
        .await
        .unwrap();
}

#[tokio::test]
async fn refresh_refused_by_the_idp_ends_the_session() {
    // The IdP forgets every grant on restart (in-memory adapter): the refresh token is refused
    // with invalid_grant, as when an account is disabled or its sessions revoked.
    let mut idp = Idp::start();
    let svc = idp.service();
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    idp.restart();
    assert_eq!(
        rejected(svc.authenticate(&alice.headers(), at(t0, 10 * 60)).await),
        SessionRejection::RefreshRejected
    );
    assert_eq!(svc.metrics().refresh_rejected.load(Ordering::Relaxed), 1);
    // And the cookie cannot be used again.
    assert_eq!(
        rejected(
            svc.authenticate(&alice.headers(), at(t0, 10 * 60 + 1))
                .await
        ),
        SessionRejection::Revoked
    );
}

#[tokio::test]
async fn concurrent_requests_share_one_refresh() {
    let idp = Idp::start();
    let svc = idp.service();
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    idp.set_groups("alice", &["staff", "finance"]).await;
    let h = alice.headers();
    let due = at(t0, 10 * 60);
    let (a, b, c) = tokio::join!(
        svc.authenticate(&h, due),
        svc.authenticate(&h, due),
        svc.authenticate(&h, due)
    );
    for o in [a, b, c] {
        let (id, _) = authenticated(o);
        assert_eq!(id.groups(), ["finance".to_string(), "staff".to_string()]);
    }
    assert_eq!(svc.metrics().refresh_ok.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn without_a_refresh_token_stale_claims_end_the_session() {
    let idp = Idp::start();
    let mut oidc = idp.oidc_config();
    oidc.client_id = "sekisho-norefresh".into();
    oidc.scopes = vec!["openid".into(), "email".into(), "groups".into()];
    let svc = sekisho_identity::IdentityService::new(
        sekisho_identity::IdentityConfig {
            oidc: Some(oidc),
            session: sekisho_identity::SessionConfig::default(),
            bearer: None,
        },
        CookieKeyRing::new(vec![CookieKey::generate("k")]).unwrap(),
    )
    .unwrap();
    let mut alice = Browser::new();
    let t0 = now();
    login(&svc, &mut alice, "alice", "alice-pw", t0).await;
    authenticated(svc.authenticate(&alice.headers(), at(t0, 9 * 60)).await);
    assert_eq!(
        rejected(svc.authenticate(&alice.headers(), at(t0, 10 * 60)).await),
        SessionRejection::ClaimsStale
    );
    // Bearer tokens are refused when no bearer issuer is configured.
    let mut h = http::HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer a.b.c"));
    assert!(matches!(
        svc.authenticate(&h, t0).await,
        SessionOutcome::BearerRejected(TokenError::NotAccepted)
    ));
}

#[tokio::test]
async fn login_started_on_one_replica_finishes_on_another() {
    // Replicas share only the key ring: the login cookie carries everything the callback needs,
    // and the second replica discovers the IdP on its own before checking `iss`.
    let idp = Idp::start();
    let key = CookieKey::generate("shared");
    let a = idp.service_with_keys(CookieKeyRing::new(vec![key.clone()]).unwrap());
    let b = idp.service_with_keys(CookieKeyRing::new(vec![key]).unwrap());
    let mut alice = Browser::new();
    let t0 = now();
    let (callback, _) = authorize(&a, &mut alice, "alice", "alice-pw", t0).await;
    let done = b
        .finish_login(HOST, &callback_uri(&callback), &alice.headers(), t0)
        .await
        .unwrap();
    alice.store(&done.set_cookies);
    let (id, _) = authenticated(a.authenticate(&alice.headers(), at(t0, 1)).await);
    assert_eq!(id.sub(), "alice");
}
