//! The upstream assertion key rotates on reload: the new key signs, the retired one stays
//! published in /.sekisho/jwks.json so assertions already in flight still verify.

use crate::common;

use common::*;

fn kids(jwks: &serde_json::Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_new_assertion_key_takes_effect_on_reload_with_the_old_one_still_published() {
    let up = echo("portal", "127.0.10.96:0").await;
    let pki = Pki::new(&[SITE]);
    let key_a =
        sekisho_identity::AssertionSigner::generate("sekisho", std::time::Duration::from_secs(60))
            .unwrap()
            .1;
    std::fs::write(pki.path("assertion.pem"), &key_a).unwrap();
    chmod600(&pki.path("assertion.pem"));
    use base64::Engine;
    let cookie = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    std::fs::write(pki.path("cookie-keys"), format!("k1:{cookie}\n")).unwrap();
    let identity = |retired: bool| {
        format!(
            "identity:\n  bearer:\n    issuer: http://127.0.0.1:9\n    audiences: [sekisho]\n  assertion:\n    key_file: assertion.pem\n{}",
            if retired {
                "    retired_public_keys_file: retired.json\n"
            } else {
                ""
            }
        )
    };
    let routes = format!(
        "routes:\n  portal:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [http://{}]\n    policy: lgwan-staff\n",
        up.addr
    );
    let gw = gateway_extra(pki, &identity(false), &routes).await;
    let c = gw.client("lgwan-https");
    let jwks_url = gw.url("lgwan-https", "/.sekisho/jwks.json");
    let before: serde_json::Value = c.get(&jwks_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(kids(&before).len(), 1);

    // Rotate: keep the old public key published, switch the signing key, reload.
    std::fs::write(gw.pki.path("retired.json"), before.to_string()).unwrap();
    let key_b =
        sekisho_identity::AssertionSigner::generate("sekisho", std::time::Duration::from_secs(60))
            .unwrap()
            .1;
    std::fs::write(gw.pki.path("assertion.pem"), &key_b).unwrap();
    chmod600(&gw.pki.path("assertion.pem"));
    std::fs::write(
        &gw.config_path,
        full_yaml_with(&gw.pki, &identity(true), &routes),
    )
    .unwrap();
    gw.running
        .reload()
        .expect("assertion settings reload without a restart");
    let after: serde_json::Value = c.get(&jwks_url).send().await.unwrap().json().await.unwrap();
    let after = kids(&after);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_ne!(after[0], kids(&before)[0], "the new key is published first");
    assert!(
        after.contains(&kids(&before)[0]),
        "the retired key stays published"
    );
}

fn chmod600(p: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}
