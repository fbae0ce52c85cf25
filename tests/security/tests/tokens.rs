//! Token attacks through the gateway. The identity crate tests its verifier at library level;
//! here hostile bearer tokens go through a real gateway (TLS, routing, identity step, policy,
//! audit) whose bearer issuer's JWKS is served by this test on loopback, so the test holds
//! the issuer's private keys and can forge every variant: `alg: none`, HMAC signed with the
//! public key (RSA and EC confusion), `kid` tricks, embedded `jwk`/`jku`, expired, not yet
//! valid, wrong `aud`/`iss`, unsigned, stripped or tampered signatures, oversized, `crit`.
//!
//! Each hostile token: 401 with `WWW-Authenticate: Bearer … invalid_token` (431 for a header
//! section over the limit), the upstream never sees the request, and the audit trail has a
//! `deny` record for it.

use crate::common;
use crate::support;

use std::convert::Infallible;
use std::sync::Arc;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use serde_json::{Value, json};
use support::*;

const ISS: &str = "https://idp.city.example.jp";
const AUD: &str = "https://api.city.example.jp";

struct Keys {
    ec: EcdsaKeyPair,
    ec_asn1: EcdsaKeyPair,
    ec_public_pem: String,
    rsa: RsaKeyPair,
    rsa_public_pem: String,
    attacker_ec: EcdsaKeyPair,
    attacker_jwk: Value,
    jwks: Value,
}

fn ec_jwk(kp: &EcdsaKeyPair, kid: &str) -> Value {
    let raw = kp.public_key().as_ref();
    json!({"kty":"EC","crv":"P-256","x":B64.encode(&raw[1..33]),"y":B64.encode(&raw[33..65]),
           "kid":kid,"use":"sig","alg":"ES256"})
}

fn rsa_keys() -> (RsaKeyPair, Value, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let der = kp.serialize_der();
    let rsa = RsaKeyPair::from_pkcs8(&der).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_rsa_pem(kp.serialize_pem().as_bytes()).unwrap();
    let mut jwk = serde_json::to_value(
        jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::RS256).unwrap(),
    )
    .unwrap();
    jwk["kid"] = json!("rsa");
    jwk["use"] = json!("sig");
    (rsa, jwk, kp.public_key_pem())
}

impl Keys {
    fn new() -> Keys {
        let ec_kp = rcgen::KeyPair::generate().unwrap();
        let ec_der = ec_kp.serialize_der();
        let ec = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &ec_der).unwrap();
        let ec_asn1 = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &ec_der).unwrap();
        let (rsa, rsa_jwk, rsa_public_pem) = rsa_keys();
        let (_, mut rsa2_jwk, _) = rsa_keys();
        rsa2_jwk["kid"] = json!("rsa-next");
        let attacker = rcgen::KeyPair::generate().unwrap();
        let attacker_ec =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &attacker.serialize_der())
                .unwrap();
        let attacker_jwk = ec_jwk(&attacker_ec, "attacker");
        let jwks = json!({"keys": [ec_jwk(&ec, "ec"), rsa_jwk, rsa2_jwk]});
        Keys {
            ec_public_pem: ec_kp.public_key_pem(),
            ec,
            ec_asn1,
            rsa,
            rsa_public_pem,
            attacker_ec,
            attacker_jwk,
            jwks,
        }
    }
}

#[derive(Clone, Copy)]
enum Signer<'a> {
    Ec(&'a EcdsaKeyPair),
    Rsa(&'a RsaKeyPair),
    Hmac(&'a [u8], aws_lc_rs::hmac::Algorithm),
    /// Whatever bytes are given, as the signature.
    Raw(&'a [u8]),
}

fn token(header: &Value, claims: &Value, signer: Signer<'_>) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig: Vec<u8> = match signer {
        Signer::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
        Signer::Rsa(k) => {
            let mut s = vec![0; k.public_modulus_len()];
            k.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut s)
                .unwrap();
            s
        }
        Signer::Hmac(secret, alg) => {
            let key = aws_lc_rs::hmac::Key::new(alg, secret);
            aws_lc_rs::hmac::sign(&key, input.as_bytes())
                .as_ref()
                .to_vec()
        }
        Signer::Raw(b) => b.to_vec(),
    };
    format!("{input}.{}", B64.encode(sig))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "svc-kintai", "groups": ["staff"],
           "iat": now() - 10, "exp": now() + 600})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// Serves `jwks` at `/jwks` on 127.0.0.1 (the issuer's key endpoint).
async fn jwks_server(jwks: Value) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Arc::new(jwks.to_string());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let b = body.clone();
                    async move {
                        let mut r = http::Response::new(Full::new(Bytes::from((*b).clone())));
                        r.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bearer_tokens_are_refused_through_the_gateway_and_audited() {
    let keys = Keys::new();
    let jwks = jwks_server(keys.jwks.clone()).await;
    let jku_trap = trap("127.0.0.1:0").await;
    let up = echo("api", "127.0.10.130:0").await;
    let extra = format!(
        r#"identity:
  session:
    cookie_keys_file: cookie-keys
  bearer:
    issuer: {ISS}
    audiences: ["{AUD}"]
    jwks_uri: http://{jwks}/jwks
"#
    );
    let routes = format!(
        r#"routes:
  api:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    policy: lgwan-staff
"#,
        up.addr
    );
    let pki = Pki::new(&[SITE, "other.test.localhost"]);
    {
        use std::os::unix::fs::PermissionsExt;
        let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
        std::fs::write(pki.path("cookie-keys"), format!("k1:{key}\n")).unwrap();
        std::fs::set_permissions(
            pki.path("cookie-keys"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    let (gw, audit) = audited_with(pki, &extra, &routes).await;
    let c = gw.client("lgwan-https");
    let url = gw.url("lgwan-https", "/api/records");

    let es = json!({"alg": "ES256", "typ": "JWT", "kid": "ec"});
    let rs = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa"});
    let good_es = token(&es, &claims(), Signer::Ec(&keys.ec));
    let good_rs = token(&rs, &claims(), Signer::Rsa(&keys.rsa));

    // Controls: genuine tokens pass, and the upstream sees the gateway's identity, not the token.
    for (name, t) in [("ES256", &good_es), ("RS256", &good_rs)] {
        let r = c.get(&url).bearer_auth(t).send().await.unwrap();
        assert_eq!(r.status(), 200, "genuine {name} token");
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let seen = up.requests().pop().unwrap();
        assert_eq!(seen.headers["x-sekisho-user"], "svc-kintai");
        assert!(
            !seen.headers.contains_key("authorization"),
            "a token issued to Sekisho is not passed on"
        );
        let rec = assert_allowed_on_record(&audit, &rid, name).await;
        assert_eq!(rec["user"]["sub"], "svc-kintai");
    }
    let allowed = up.count();

    let hs = |alg: &str| json!({"alg": alg, "typ": "JWT", "kid": "rsa"});
    let tampered_payload = B64.encode(with(claims(), "sub", json!("admin")).to_string());
    let sig_of_good = good_es.rsplit('.').next().unwrap().to_owned();
    let unsigned_es = {
        let parts: Vec<&str> = good_es.split('.').collect();
        format!("{}.{}.", parts[0], parts[1])
    };
    let big_claims = with(claims(), "pad", json!("x".repeat(9000)));
    let huge_claims = with(claims(), "pad", json!("x".repeat(40_000)));

    let cases: Vec<(&str, String, u16)> = vec![
        (
            "alg none",
            token(
                &json!({"alg": "none", "typ": "JWT"}),
                &claims(),
                Signer::Raw(b""),
            ),
            401,
        ),
        (
            "alg None (case variant)",
            token(&json!({"alg": "None"}), &claims(), Signer::Raw(b"")),
            401,
        ),
        (
            "alg nOnE with a signature",
            token(
                &json!({"alg": "nOnE", "kid": "ec"}),
                &claims(),
                Signer::Raw(b"sig"),
            ),
            401,
        ),
        (
            "HS256 keyed with the RSA public key PEM (key confusion)",
            token(
                &hs("HS256"),
                &claims(),
                Signer::Hmac(keys.rsa_public_pem.as_bytes(), aws_lc_rs::hmac::HMAC_SHA256),
            ),
            401,
        ),
        (
            "HS512 keyed with the RSA public key PEM",
            token(
                &hs("HS512"),
                &claims(),
                Signer::Hmac(keys.rsa_public_pem.as_bytes(), aws_lc_rs::hmac::HMAC_SHA512),
            ),
            401,
        ),
        (
            "HS256 keyed with the EC public key PEM",
            token(
                &json!({"alg": "HS256", "kid": "ec"}),
                &claims(),
                Signer::Hmac(keys.ec_public_pem.as_bytes(), aws_lc_rs::hmac::HMAC_SHA256),
            ),
            401,
        ),
        (
            "HS256 keyed with the JWKS text",
            token(
                &json!({"alg": "HS256"}),
                &claims(),
                Signer::Hmac(
                    keys.jwks.to_string().as_bytes(),
                    aws_lc_rs::hmac::HMAC_SHA256,
                ),
            ),
            401,
        ),
        (
            "RS256 signature, kid of the EC key (alg/key mismatch)",
            token(
                &json!({"alg": "RS256", "kid": "ec"}),
                &claims(),
                Signer::Rsa(&keys.rsa),
            ),
            401,
        ),
        (
            "ES256 header on the RSA kid",
            token(
                &json!({"alg": "ES256", "kid": "rsa"}),
                &claims(),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "attacker's key under the issuer's kid",
            token(&es, &claims(), Signer::Ec(&keys.attacker_ec)),
            401,
        ),
        (
            "unknown kid",
            token(
                &json!({"alg": "ES256", "kid": "nonexistent"}),
                &claims(),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "kid path traversal",
            token(
                &json!({"alg": "ES256", "kid": "../../../../../dev/null"}),
                &claims(),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "kid injection",
            token(
                &json!({"alg": "ES256", "kid": "ec' OR '1'='1"}),
                &claims(),
                Signer::Ec(&keys.attacker_ec),
            ),
            401,
        ),
        (
            "kid as a number",
            token(
                &json!({"alg": "ES256", "kid": 1}),
                &claims(),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "no kid, two RSA keys (ambiguous)",
            token(&json!({"alg": "RS256"}), &claims(), Signer::Rsa(&keys.rsa)),
            401,
        ),
        (
            "embedded jwk header (attacker's key)",
            token(
                &json!({"alg": "ES256", "kid": "attacker", "jwk": keys.attacker_jwk}),
                &claims(),
                Signer::Ec(&keys.attacker_ec),
            ),
            401,
        ),
        (
            "embedded jwk header under the issuer's kid",
            token(
                &json!({"alg": "ES256", "kid": "ec", "jwk": keys.attacker_jwk}),
                &claims(),
                Signer::Ec(&keys.attacker_ec),
            ),
            401,
        ),
        (
            "jku / x5u pointing at the attacker",
            token(
                &json!({"alg": "ES256", "kid": "attacker",
                        "jku": format!("http://{}/jwks", jku_trap.addr),
                        "x5u": format!("http://{}/cert", jku_trap.addr)}),
                &claims(),
                Signer::Ec(&keys.attacker_ec),
            ),
            401,
        ),
        (
            "expired",
            token(
                &es,
                &with(claims(), "exp", json!(now() - 3600)),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "not yet valid (nbf)",
            token(
                &es,
                &with(claims(), "nbf", json!(now() + 3600)),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "issued in the future (iat)",
            token(
                &es,
                &with(claims(), "iat", json!(now() + 3600)),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "exp as a string",
            token(
                &es,
                &with(claims(), "exp", json!("9999999999")),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "no exp",
            token(&es, &without(claims(), "exp"), Signer::Ec(&keys.ec)),
            401,
        ),
        (
            "wrong aud",
            token(
                &es,
                &with(claims(), "aud", json!("https://other.example.jp")),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "aud list without ours",
            token(
                &es,
                &with(
                    claims(),
                    "aud",
                    json!(["https://a.example", "https://b.example"]),
                ),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "no aud",
            token(&es, &without(claims(), "aud"), Signer::Ec(&keys.ec)),
            401,
        ),
        (
            "wrong iss",
            token(
                &es,
                &with(claims(), "iss", json!("https://evil.example")),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "iss with a trailing slash",
            token(
                &es,
                &with(claims(), "iss", json!(format!("{ISS}/"))),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "no iss",
            token(&es, &without(claims(), "iss"), Signer::Ec(&keys.ec)),
            401,
        ),
        ("unsigned (signature stripped)", unsigned_es, 401),
        (
            "payload swapped after signing",
            format!(
                "{}.{}.{}",
                good_es.split('.').next().unwrap(),
                tampered_payload,
                sig_of_good
            ),
            401,
        ),
        (
            "ES256 signature in DER form",
            token(&es, &claims(), Signer::Ec(&keys.ec_asn1)),
            401,
        ),
        (
            "crit header",
            token(
                &json!({"alg": "ES256", "kid": "ec", "crit": ["exp"]}),
                &claims(),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "typ of another token kind",
            token(
                &json!({"alg": "ES256", "kid": "ec", "typ": "dpop+jwt"}),
                &claims(),
                Signer::Ec(&keys.ec),
            ),
            401,
        ),
        (
            "JWE-shaped (five parts)",
            format!("{good_es}.AAAA.BBBB"),
            401,
        ),
        ("padding characters", format!("{good_es}=="), 401),
        (
            "oversized but within the header limit",
            token(&es, &big_claims, Signer::Ec(&keys.ec)),
            401,
        ),
        (
            "oversized beyond the header limit",
            token(&es, &huge_claims, Signer::Ec(&keys.ec)),
            431,
        ),
    ];

    for (case, t, want) in &cases {
        let r = c.get(&url).bearer_auth(t).send().await.unwrap();
        // A 53 KB token over a 32 KiB header limit is answered 431 — or, seen intermittently
        // through reqwest, 401 by the token's own 8 KiB limit. Both refuse; see docs/security.md.
        let want = if *want == 431 && r.status() == 401 {
            401
        } else {
            *want
        };
        assert_eq!(r.status(), want, "{case}");
        assert_eq!(up.count(), allowed, "{case}: the upstream saw the request");
        if want == 401 {
            let www = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
            assert!(
                www.starts_with("Bearer") && www.contains("invalid_token"),
                "{case}: {www}"
            );
            let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            let rec = assert_denied_on_record(&audit, &rid, case).await;
            assert!(rec.get("user").is_none_or(|u| u.is_null()), "{case}: {rec}");
        }
    }
    assert_eq!(jku_trap.count(), 0, "a token's jku/x5u is never fetched");

    // Header-level tricks: two Authorization headers; a token in the query; another scheme.
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "two Authorization headers (good + junk)",
            c.get(&url)
                .header("authorization", format!("Bearer {good_es}"))
                .header("authorization", "Bearer junk"),
        ),
        (
            "token in the query string",
            c.get(format!("{url}?access_token={good_es}")),
        ),
        (
            "token under the Basic scheme",
            c.get(&url)
                .header("authorization", format!("Basic {good_es}")),
        ),
        (
            "token in a cookie",
            c.get(&url)
                .header("cookie", format!("access_token={good_es}")),
        ),
    ];
    for (case, req) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{case}");
        assert_eq!(up.count(), allowed, "{case}");
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_denied_on_record(&audit, &rid, case).await;
    }

    // A genuine token whose subject the policy does not allow: 403, audited, not forwarded.
    let outsider = token(
        &es,
        &with(claims(), "groups", json!(["visitors"])),
        Signer::Ec(&keys.ec),
    );
    let r = c.get(&url).bearer_auth(&outsider).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let rec = assert_denied_on_record(&audit, &rid, "outsider").await;
    assert_eq!(rec["user"]["sub"], "svc-kintai");
    assert_eq!(up.count(), allowed);
}
