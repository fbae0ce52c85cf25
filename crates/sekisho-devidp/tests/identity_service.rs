//! The gateway's own identity code (`sekisho-identity`) against the development IdP: login,
//! step-up, refresh after a group change, bearer tokens and RP-initiated logout — the same
//! code paths as with a production IdP.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use reqwest::StatusCode;
use sekisho_devidp::upstreams::{self, AssertionCheck, UpstreamKind};
use sekisho_devidp::{ACR_MFA, DevClient, DevIdp, DevIdpConfig, RunningIdp};
use sekisho_identity::{
    AssertionSigner, AuthMethod, BearerConfig, CookieKey, CookieKeyRing, IdentityConfig,
    IdentityService, OidcConfig, Secret, SessionConfig, SessionOutcome, StepUp, VerifiedIdentity,
};
use support::{AUDIENCE, browser, request_id};

const HOST: &str = "portal.localhost:8443";
const CALLBACK: &str = "https://portal.localhost:8443/.sekisho/callback";
const LOGGED_OUT: &str = "https://portal.localhost:8443/.sekisho/logged-out";

async fn start_idp() -> RunningIdp {
    let mut cfg = DevIdpConfig::with_clients(vec![DevClient {
        client_id: "sekisho".into(),
        client_secret: "sekisho-demo-secret".into(),
        redirect_uris: vec![CALLBACK.into()],
        post_logout_redirect_uris: vec![LOGGED_OUT.into()],
    }]);
    cfg.access_token_audience = AUDIENCE.into();
    DevIdp::start(cfg).await.unwrap()
}

fn service(idp: &RunningIdp) -> IdentityService {
    let mut oidc = OidcConfig::new(
        url::Url::parse(&idp.issuer()).unwrap(),
        "sekisho",
        Some(Secret::new("sekisho-demo-secret")),
    );
    oidc.http_timeout = Duration::from_secs(5);
    IdentityService::new(
        IdentityConfig {
            oidc: Some(oidc),
            session: SessionConfig::default(),
            bearer: Some(BearerConfig::new(idp.issuer(), vec![AUDIENCE.to_owned()])),
        },
        CookieKeyRing::new(vec![CookieKey::generate("test")]).unwrap(),
    )
    .unwrap()
}

/// The gateway's cookies in one browser (the IdP's cookies live in the reqwest jar).
#[derive(Default)]
struct GatewayCookies(BTreeMap<String, String>);

impl GatewayCookies {
    fn store(&mut self, set_cookies: &[HeaderValue]) {
        for c in set_cookies {
            let c = c.to_str().unwrap();
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if !self.0.is_empty() {
            let v: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            h.insert(http::header::COOKIE, v.join("; ").parse().unwrap());
        }
        h
    }
}

fn path_and_query(full: &str) -> http::Uri {
    let u = url::Url::parse(full).unwrap();
    format!("{}?{}", u.path(), u.query().unwrap_or(""))
        .parse()
        .unwrap()
}

/// start_login → the IdP (form if shown) → finish_login.
#[expect(
    clippy::too_many_arguments,
    reason = "a test helper mirroring one login's inputs"
)]
async fn gateway_login(
    svc: &IdentityService,
    idp: &RunningIdp,
    b: &reqwest::Client,
    jar: &mut GatewayCookies,
    user: &str,
    mfa: bool,
    step_up: Option<&StepUp>,
    now: Timestamp,
) -> Arc<VerifiedIdentity> {
    let start = svc
        .start_login(HOST, "/app", |_, _| true, step_up, &jar.headers(), now)
        .await
        .expect("start login");
    jar.store(&start.set_cookies);
    assert!(
        start
            .location
            .starts_with(&format!("{}/authorize?", idp.issuer()))
    );
    let r = b.get(&start.location).send().await.unwrap();
    let r = if r.status() == StatusCode::OK {
        let html = r.text().await.unwrap();
        support::post_login(
            b,
            idp,
            &request_id(&html),
            user,
            &format!("{user}-demo"),
            mfa,
        )
        .await
    } else {
        r
    };
    let callback = support::location(&r);
    assert!(callback.starts_with(CALLBACK), "{callback}");
    let done = svc
        .finish_login(HOST, &path_and_query(&callback), &jar.headers(), now)
        .await
        .expect("finish login");
    jar.store(&done.set_cookies);
    assert_eq!(done.return_to, "/app");
    done.identity
}

fn identity(outcome: SessionOutcome) -> Arc<VerifiedIdentity> {
    match outcome {
        SessionOutcome::Authenticated { identity, .. } => identity,
        other => panic!("expected an identity, got {other:?}"),
    }
}

#[tokio::test]
async fn gateway_identity_logs_in_steps_up_refreshes_and_logs_out() {
    let idp = start_idp().await;
    let svc = service(&idp);
    let b = browser();
    let mut jar = GatewayCookies::default();
    let t0 = Timestamp::now();

    let id = gateway_login(&svc, &idp, &b, &mut jar, "tanaka", false, None, t0).await;
    assert_eq!(id.sub(), "tanaka");
    assert_eq!(id.email(), Some("tanaka@town.example.lg.jp"));
    assert_eq!(id.name(), Some("田中 花子"));
    assert_eq!(id.groups(), ["lgwan-users".to_owned(), "staff".to_owned()]);
    assert!(!id.has_mfa());
    assert_eq!(id.method(), AuthMethod::Session);

    // Step-up through the gateway's StepUp: the IdP asks again, MFA ticked → otp.
    let step = StepUp {
        prompt_login: false,
        max_age: None,
        acr_values: vec![ACR_MFA.to_owned()],
    };
    let id = gateway_login(&svc, &idp, &b, &mut jar, "tanaka", true, Some(&step), t0).await;
    assert!(id.has_mfa());
    assert_eq!(id.acr(), Some(ACR_MFA));

    // A group change at the IdP reaches the session when its claims are refreshed.
    assert!(idp.set_groups("tanaka", vec!["staff".into()]));
    let same = identity(svc.authenticate(&jar.headers(), t0).await);
    assert_eq!(same.groups().len(), 2, "claims are fresh: no refresh yet");
    idp.advance_clock(Duration::from_secs(11 * 60));
    let later = Timestamp::from_second(t0.as_second() + 11 * 60).unwrap();
    let refreshed = identity(svc.authenticate(&jar.headers(), later).await);
    assert_eq!(refreshed.groups(), ["staff".to_owned()]);
    assert!(
        refreshed.has_mfa(),
        "the sign-in's MFA survives the refresh"
    );

    // RP-initiated logout as the gateway builds it.
    let out = svc.logout(HOST, &jar.headers());
    assert!(out.had_session);
    assert!(
        out.location
            .starts_with(&format!("{}/end_session?", idp.issuer()))
    );
    let r = b.get(&out.location).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert!(support::location(&r).starts_with(LOGGED_OUT));
    // The IdP session is gone too: the next login shows the form.
    let r = b
        .get(
            svc.start_login(HOST, "/", |_, _| true, None, &HeaderMap::new(), later)
                .await
                .unwrap()
                .location,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    idp.shutdown().await;
}

#[tokio::test]
async fn gateway_bearer_verification_accepts_dev_idp_access_tokens() {
    let idp = start_idp().await;
    let svc = service(&idp);
    let t = idp.mint_tokens("sekisho", "sato", true).unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", t.access_token).parse().unwrap(),
    );
    let id = identity(svc.authenticate(&h, Timestamp::now()).await);
    assert_eq!(id.sub(), "sato");
    assert_eq!(id.method(), AuthMethod::Bearer);
    assert_eq!(id.groups(), ["auditors".to_owned()]);
    assert!(id.has_mfa());
    // An ID token is not accepted as a bearer access token.
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", t.id_token).parse().unwrap(),
    );
    assert!(matches!(
        svc.authenticate(&h, Timestamp::now()).await,
        SessionOutcome::BearerRejected(_)
    ));
    idp.shutdown().await;
}

#[tokio::test]
async fn demo_upstream_verifies_an_assertion_from_the_gateway_signer() {
    let idp = start_idp().await;
    let svc = service(&idp);
    let t = idp.mint_tokens("sekisho", "tanaka", true).unwrap();
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", t.access_token).parse().unwrap(),
    );
    let id = identity(svc.authenticate(&h, Timestamp::now()).await);
    let (signer, _pem) =
        AssertionSigner::generate("https://gateway.localhost", Duration::from_secs(60)).unwrap();
    let assertion = signer
        .sign(
            &id,
            "portal",
            Some("urn:device:pc-001"),
            "pv-1",
            "req-1",
            Timestamp::now(),
        )
        .unwrap();

    let up = upstreams::start(UpstreamKind::Portal, "127.0.10.11:0".parse().unwrap())
        .await
        .unwrap();
    up.set_assertion_check(Some(
        AssertionCheck::new(&signer.jwks_json(), "https://gateway.localhost", "portal").unwrap(),
    ));
    let j: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/headers.json", up.url()))
        .header("X-Sekisho-Assertion", &assertion)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["assertion_verified"], true, "{j}");
    assert_eq!(j["assertion_claims"]["sub"], "tanaka");
    assert_eq!(j["assertion_claims"]["device_id"], "urn:device:pc-001");
    // The same assertion is refused by the other zone's upstream (audience).
    up.set_assertion_check(Some(
        AssertionCheck::new(
            &signer.jwks_json(),
            "https://gateway.localhost",
            "groupware",
        )
        .unwrap(),
    ));
    let j: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/headers.json", up.url()))
        .header("X-Sekisho-Assertion", &assertion)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["assertion_verified"], false);
    up.shutdown().await;
    idp.shutdown().await;
}
