//! Starts the development IdP and both demo upstreams on loopback and waits for Ctrl-C.
//! `cargo run -p sekisho-devidp --example devidp`. Development only.

use sekisho_devidp::upstreams::{self, UpstreamKind};
use sekisho_devidp::{DevClient, DevIdp, DevIdpConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let idp = DevIdp::start(DevIdpConfig::with_clients(vec![DevClient {
        client_id: "sekisho".into(),
        client_secret: "demo-secret-123".into(),
        redirect_uris: vec!["http://127.0.0.1:9/callback".into()],
        post_logout_redirect_uris: vec!["http://127.0.0.1:9/".into()],
    }]))
    .await?;
    let portal = upstreams::start(UpstreamKind::Portal, "127.0.10.11:0".parse()?).await?;
    let groupware = upstreams::start(UpstreamKind::Groupware, "127.0.20.11:0".parse()?).await?;
    println!("issuer    {}", idp.issuer());
    println!(
        "login     {}/authorize?client_id=sekisho&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback&response_type=code&scope=openid&state=s&nonce=n&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        idp.issuer()
    );
    println!("portal    {}", portal.url());
    println!("groupware {}", groupware.url());
    tokio::signal::ctrl_c().await?;
    idp.shutdown().await;
    portal.shutdown().await;
    groupware.shutdown().await;
    Ok(())
}
