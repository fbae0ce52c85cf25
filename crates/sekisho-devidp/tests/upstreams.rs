//! The demo upstreams: header pages, JSON, CSV download, websocket echo.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use sekisho_devidp::DevIdpError;
use sekisho_devidp::upstreams::{self, UpstreamKind};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

fn fake_assertion() -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(r#"{"sub":"tanaka","aud":"portal","groups":["staff"]}"#);
    format!("{h}.{c}.c2lnbmF0dXJl")
}

#[tokio::test]
async fn portal_page_shows_what_sekisho_passed_on() {
    // An LGWAN-side address, as in the demo (all of 127.0.0.0/8 is local on Linux).
    let up = upstreams::start(UpstreamKind::Portal, "127.0.10.11:0".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(up.local_addr().ip().to_string(), "127.0.10.11");
    let c = reqwest::Client::new();
    let send = |path: &str| {
        c.get(format!("{}{path}", up.url()))
            .header("X-Forwarded-For", "127.0.0.9")
            .header("X-Request-Id", "req-0001")
            .header("X-Sekisho-User", "tanaka")
            .header("X-Sekisho-Email", "tanaka@town.example.lg.jp")
            .header("X-Sekisho-Groups", "staff,lgwan-users")
            .header("X-Sekisho-Device", "urn:device:pc-001")
            .header("X-Sekisho-Assertion", fake_assertion())
            .header("Cookie", "app_pref=topsecretvalue; theme=dark")
            .send()
    };
    let r = send("/any/page?x=1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get("cache-control").is_none(),
        "zone controls stay visible"
    );
    let html = r.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>\n<html lang=\"ja\">"));
    assert!(html.contains("<h1>庁内ポータル（LGWAN接続系）"));
    assert!(html.contains("lang=\"en\""));
    for needle in [
        "127.0.0.9",
        "req-0001",
        "tanaka@town.example.lg.jp",
        "staff,lgwan-users",
        "x-sekisho-device",
        "urn:device:pc-001",
        "&quot;aud&quot;: &quot;portal&quot;",
        "app_pref",
        "/any/page?x=1",
    ] {
        assert!(html.contains(needle), "page lacks {needle}");
    }
    assert!(
        !html.contains("topsecretvalue"),
        "cookie values are not shown"
    );
    assert!(
        !html.contains("c2lnbmF0dXJl"),
        "the raw assertion is not shown"
    );

    let j: Value = send("/headers.json").await.unwrap().json().await.unwrap();
    assert_eq!(j["upstream"], "portal");
    assert_eq!(j["headers"]["x-sekisho-user"], "tanaka");
    assert_eq!(j["headers"]["x-request-id"], "req-0001");
    assert_eq!(j["headers"]["x-sekisho-device"], "urn:device:pc-001");
    assert_eq!(j["assertion_present"], true);
    assert_eq!(j["assertion_claims"]["sub"], "tanaka");
    assert_eq!(j["cookie_names"], serde_json::json!(["app_pref", "theme"]));

    // Nothing forwarded: shown as absent.
    let j: Value = c
        .get(format!("{}/headers.json", up.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(j["headers"]["x-sekisho-user"], Value::Null);
    assert_eq!(j["assertion_present"], false);
    up.shutdown().await;
}

#[tokio::test]
async fn groupware_page_escapes_header_values() {
    let up = upstreams::start(UpstreamKind::Groupware, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let html = reqwest::Client::new()
        .get(up.url())
        .header("X-Sekisho-User", "<script>alert(1)</script>")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("グループウェア（インターネット接続系）"));
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    up.shutdown().await;
}

#[tokio::test]
async fn download_is_a_csv_attachment() {
    let up = upstreams::start(UpstreamKind::Portal, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let r = reqwest::get(format!("{}/download", up.url()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/csv; charset=utf-8");
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cd.starts_with("attachment;") && cd.contains(".csv"), "{cd}");
    let body = r.bytes().await.unwrap();
    assert!(
        body.starts_with(b"\xEF\xBB\xBF"),
        "BOM so that Excel reads UTF-8"
    );
    assert!(String::from_utf8(body.to_vec()).unwrap().contains("住民課"));
    up.shutdown().await;
}

#[tokio::test]
async fn websocket_echo() {
    let up = upstreams::start(UpstreamKind::Groupware, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws", up.local_addr()))
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("こんにちは")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("こんにちは")
    );
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
    ws.close(None).await.unwrap();
    // A plain GET of /ws is refused.
    let r = reqwest::get(format!("{}/ws", up.url())).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    up.shutdown().await;
}

#[tokio::test]
async fn upstreams_listen_on_loopback_only() {
    let err = upstreams::start(UpstreamKind::Portal, "0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, DevIdpError::NotLoopback(_)), "{err}");
}

mod assertion {
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use sekisho_devidp::upstreams::AssertionCheck;

    struct Gateway {
        key: EncodingKey,
        jwks: String,
    }

    fn gateway_key() -> Gateway {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let raw = kp.public_key_raw();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "gw-1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
        }]});
        Gateway {
            key: EncodingKey::from_ec_der(&kp.serialize_der()),
            jwks: jwks.to_string(),
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn sign(gw: &Gateway, kid: &str, aud: &str, exp: i64) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        let claims = serde_json::json!({
            "iss": "https://gateway.localhost", "aud": aud, "sub": "tanaka",
            "iat": now(), "nbf": now(), "exp": exp,
        });
        jsonwebtoken::encode(&h, &claims, &gw.key).unwrap()
    }

    async fn seen(url: &str, assertion: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{url}/headers.json"))
            .header("X-Sekisho-Assertion", assertion)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn upstream_verifies_the_assertion_when_given_the_gateway_jwks() {
        let gw = gateway_key();
        let up = upstreams::start(UpstreamKind::Portal, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let good = sign(&gw, "gw-1", "portal", now() + 60);

        // Not configured: decoded only.
        let j = seen(&up.url(), &good).await;
        assert_eq!(j["assertion_present"], true);
        assert_eq!(j["assertion_verified"], Value::Null);

        up.set_assertion_check(Some(
            AssertionCheck::new(&gw.jwks, "https://gateway.localhost", "portal").unwrap(),
        ));
        let j = seen(&up.url(), &good).await;
        assert_eq!(j["assertion_verified"], true, "{j}");
        let page = reqwest::Client::new()
            .get(up.url())
            .header("X-Sekisho-Assertion", &good)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("署名検証: 成功"));

        let other = gateway_key();
        let mut tampered = good.clone();
        tampered.insert(tampered.rfind('.').unwrap() + 1, 'A');
        let none_alg = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"gw-1"}"#),
            good.split('.').nth(1).unwrap()
        );
        for (bad, why) in [
            (sign(&gw, "gw-1", "groupware", now() + 60), "audience"),
            (sign(&gw, "gw-1", "portal", now() - 120), "expired"),
            (sign(&other, "gw-1", "portal", now() + 60), "other key"),
            (sign(&gw, "gw-2", "portal", now() + 60), "unknown kid"),
            (tampered, "tampered"),
            (none_alg, "alg none"),
        ] {
            let j = seen(&up.url(), &bad).await;
            assert_eq!(j["assertion_verified"], false, "{why}: {j}");
            assert!(j["assertion_error"].is_string(), "{why}");
        }
        assert!(AssertionCheck::new("not json", "i", "a").is_err());
        up.shutdown().await;
    }
}
