//! The development IdP seen through the `openidconnect` 4 crate — the same client library
//! (default features off, a named `AsyncHttpClient`) that `sekisho-identity` uses, so the
//! gateway cannot tell it from a production IdP.

mod support;

use std::future::Future;
use std::pin::Pin;

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope,
    TokenResponse,
};
use sekisho_devidp::ACR_MFA;
use support::*;

/// reqwest without redirects, as a named type so its futures are `Send`.
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let resp = self
                .0
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::new(Vec::new());
            *out.status_mut() = resp.status();
            *out.headers_mut() = resp.headers().clone();
            *out.body_mut() = resp.bytes().await?.to_vec();
            Ok(out)
        })
    }
}

#[tokio::test]
async fn openidconnect_discovers_exchanges_verifies_refreshes_and_reads_userinfo() {
    let idp = start().await;
    let http = Http(
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    );

    // The discovery document parses as CoreProviderMetadata (and its JWKS loads).
    let meta = CoreProviderMetadata::discover_async(IssuerUrl::new(idp.issuer()).unwrap(), &http)
        .await
        .expect("discovery");
    assert_eq!(meta.issuer().as_str(), idp.issuer());
    assert_eq!(meta.jwks().keys().len(), 1);

    let client = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap());
    let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_auth_context_value(AuthenticationContextClass::new(ACR_MFA.into()))
        .set_pkce_challenge(challenge)
        .url();

    // The browser part.
    let b = browser();
    let html = b.get(url).send().await.unwrap().text().await.unwrap();
    let r = post_login(&b, &idp, &request_id(&html), "sato", "sato-demo", true).await;
    let (base, p) = redirect_params(&r);
    assert_eq!(base, REDIRECT);
    assert_eq!(&p["state"], csrf.secret());
    assert_eq!(p["iss"], idp.issuer());

    // The relying-party part, as the gateway does it (client_secret_basic).
    let resp = client
        .exchange_code(AuthorizationCode::new(p["code"].clone()))
        .unwrap()
        .set_pkce_verifier(pkce_verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = resp
        .id_token()
        .expect("id_token")
        .claims(&id_verifier, &nonce)
        .expect("ID token verifies");
    assert_eq!(claims.subject().as_str(), "sato");
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some("sato@town.example.lg.jp")
    );
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some(ACR_MFA));
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .expect("amr")
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert_eq!(amr, ["pwd", "otp"]);
    assert!(claims.auth_time().is_some());
    assert_eq!(
        claims.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("佐藤 美咲")
    );

    // A wrong nonce is caught by the library, i.e. the nonce really is in the token.
    assert!(
        resp.id_token()
            .unwrap()
            .claims(&id_verifier, &Nonce::new("other".into()))
            .is_err()
    );

    // Refresh through the library.
    let refreshed = client
        .exchange_refresh_token(resp.refresh_token().expect("refresh token"))
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    assert!(refreshed.id_token().is_some());
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        resp.refresh_token().unwrap().secret()
    );

    // userinfo through the library.
    let info: openidconnect::UserInfoClaims<
        openidconnect::EmptyAdditionalClaims,
        openidconnect::core::CoreGenderClaim,
    > = client
        .user_info(refreshed.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), "sato");
    idp.shutdown().await;
}
