//! Header spoofing: a signed-in user (alice, group staff) sends every identity, forwarding and
//! request-override header in case, underscore and duplicate variants, plus hop-by-hop tricks
//! that try to make the gateway drop its own headers. The upstream must see only the
//! gateway's values, and every request is on the audit trail as alice's.
//!
//! Requests are raw HTTP/1.1 bytes (so header-name case and underscores reach the wire as
//! written) and HTTP/2 (reqwest), against a policy route and a public route.

use crate::common;
use crate::signin;
use crate::support;

use common::*;
use support::*;

#[derive(Debug)]
enum Check {
    /// The upstream did not receive this header at all.
    Gone(&'static str),
    /// The upstream received exactly one value, equal to this.
    Is(&'static str, String),
    /// The upstream received exactly one value, different from this.
    Replaced(&'static str, &'static str),
}

fn routes(portal: &Echo, public: &Echo) -> String {
    format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    policy: lgwan-staff
  public:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /pub
    upstreams: [http://{}]
    access: public
"#,
        portal.addr, public.addr
    )
}

fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

fn check(case: &str, seen: &Seen, checks: &[Check]) {
    for c in checks {
        match c {
            Check::Gone(n) => assert!(
                values(seen, n).is_empty(),
                "{case}: upstream saw {n}: {:?}",
                values(seen, n)
            ),
            Check::Is(n, v) => assert_eq!(values(seen, n), vec![v.clone()], "{case}: {n}"),
            Check::Replaced(n, spoofed) => {
                let got = values(seen, n);
                assert_eq!(got.len(), 1, "{case}: {n}: {got:?}");
                assert_ne!(got[0], *spoofed, "{case}: {n} kept the client's value");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_forwarding_and_override_headers_never_reach_the_upstream() {
    use Check::*;
    let portal = echo("portal", "127.0.10.120:0").await;
    let public = echo("public", "127.0.10.121:0").await;
    let s = signin::start(&routes(&portal, &public)).await;
    let browser = signin::sign_in(&s, "alice", "/").await;
    let cookie = signin::cookie(&browser);
    let host = format!("{SITE}:{}", s.port);
    let alice = || Is("x-sekisho-user", "alice".into());
    let xff = || Is("x-forwarded-for", "127.0.0.1".into());

    let cases: Vec<(&str, &str, Vec<Check>)> = vec![
        // The gateway's own identity headers, in every spelling.
        ("user header", "X-Sekisho-User: mallory\r\n", vec![alice()]),
        (
            "user header lower case",
            "x-sekisho-user: mallory\r\n",
            vec![alice()],
        ),
        (
            "user header upper case",
            "X-SEKISHO-USER: mallory\r\n",
            vec![alice()],
        ),
        (
            "user header with underscores",
            "X_Sekisho_User: mallory\r\n",
            vec![alice(), Gone("x_sekisho_user")],
        ),
        (
            "user header, mixed - and _",
            "x-sekisho_user: mallory\r\n",
            vec![alice(), Gone("x-sekisho_user")],
        ),
        (
            "user header twice",
            "X-Sekisho-User: mallory\r\nX-Sekisho-User: root\r\n",
            vec![alice()],
        ),
        (
            "user header before and after the cookie",
            "X-Sekisho-User: a\r\nx_sekisho_user: b\r\nX-SEKISHO-USER: c\r\n",
            vec![alice(), Gone("x_sekisho_user")],
        ),
        (
            "groups header",
            "X-Sekisho-Groups: admins\r\n",
            vec![Is("x-sekisho-groups", "staff".into())],
        ),
        (
            "groups header with underscores",
            "X_SEKISHO_GROUPS: admins\r\n",
            vec![
                Is("x-sekisho-groups", "staff".into()),
                Gone("x_sekisho_groups"),
            ],
        ),
        (
            "email header",
            "X-Sekisho-Email: mayor@city.example.jp\r\n",
            vec![Is("x-sekisho-email", "alice@city.example.jp".into())],
        ),
        (
            "forged assertion",
            "X-Sekisho-Assertion: eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.\r\n",
            vec![Replaced(
                "x-sekisho-assertion",
                "eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",
            )],
        ),
        (
            "invented x-sekisho- header",
            "X-Sekisho-Device-Id: PC-0042\r\nX-Sekisho-Mfa: true\r\n",
            vec![Gone("x-sekisho-device-id"), Gone("x-sekisho-mfa")],
        ),
        (
            "sekisho- prefix",
            "Sekisho-User: root\r\n",
            vec![Gone("sekisho-user")],
        ),
        // Forwarding headers: the gateway's values only.
        (
            "X-Forwarded-For",
            "X-Forwarded-For: 10.0.0.1\r\n",
            vec![xff()],
        ),
        (
            "X-Forwarded-For twice",
            "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n",
            vec![xff()],
        ),
        (
            "X_Forwarded_For",
            "X_Forwarded_For: 10.0.0.1\r\n",
            vec![xff(), Gone("x_forwarded_for")],
        ),
        (
            "X-Forwarded-Host",
            "X-Forwarded-Host: evil.example\r\n",
            vec![Is("x-forwarded-host", host.clone())],
        ),
        (
            "X-Forwarded-Proto",
            "X-Forwarded-Proto: http\r\n",
            vec![Is("x-forwarded-proto", "https".into())],
        ),
        (
            "X-Forwarded-Port / Prefix / Server",
            "X-Forwarded-Port: 80\r\nX-Forwarded-Prefix: /admin\r\nX-Forwarded-Server: evil\r\n",
            vec![
                Gone("x-forwarded-port"),
                Gone("x-forwarded-prefix"),
                Gone("x-forwarded-server"),
            ],
        ),
        (
            "oauth2-proxy style X-Forwarded-User/Email/Groups",
            "X-Forwarded-User: root\r\nX-Forwarded-Email: root@city.example.jp\r\nX-Forwarded-Groups: admins\r\nX-Forwarded-Preferred-Username: root\r\nX-Forwarded-Access-Token: x\r\n",
            vec![
                Gone("x-forwarded-user"),
                Gone("x-forwarded-email"),
                Gone("x-forwarded-groups"),
                Gone("x-forwarded-preferred-username"),
                Gone("x-forwarded-access-token"),
            ],
        ),
        (
            "Forwarded (RFC 7239)",
            "Forwarded: for=10.0.0.1;host=evil.example;proto=http\r\n",
            vec![Gone("forwarded")],
        ),
        (
            "client-IP headers",
            "X-Real-IP: 10.0.0.1\r\nX-Client-IP: 10.0.0.1\r\nTrue-Client-IP: 10.0.0.1\r\nCF-Connecting-IP: 10.0.0.1\r\nFastly-Client-IP: 10.0.0.1\r\nX-Cluster-Client-IP: 10.0.0.1\r\n",
            vec![
                Gone("x-real-ip"),
                Gone("x-client-ip"),
                Gone("true-client-ip"),
                Gone("cf-connecting-ip"),
                Gone("fastly-client-ip"),
                Gone("x-cluster-client-ip"),
            ],
        ),
        (
            "client-chosen request id",
            "X-Request-ID: attacker-chosen-id\r\nX-Correlation-ID: attacker\r\n",
            vec![
                Replaced("x-request-id", "attacker-chosen-id"),
                Gone("x-correlation-id"),
            ],
        ),
        // Request overrides that some frameworks honour.
        (
            "X-Original-URL / X-Rewrite-URL",
            "X-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Original-URI: /admin\r\n",
            vec![
                Gone("x-original-url"),
                Gone("x-rewrite-url"),
                Gone("x-original-uri"),
            ],
        ),
        (
            "X_Original_URL with underscores",
            "X_Original_URL: /admin\r\nx_rewrite_url: /admin\r\n",
            vec![Gone("x_original_url"), Gone("x_rewrite_url")],
        ),
        (
            "X-Original-Host / Method",
            "X-Original-Host: evil.example\r\nX-Original-Method: DELETE\r\n",
            vec![Gone("x-original-host"), Gone("x-original-method")],
        ),
        (
            "method overrides",
            "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n",
            vec![
                Gone("x-http-method-override"),
                Gone("x-http-method"),
                Gone("x-method-override"),
            ],
        ),
        (
            "method override with underscores",
            "X_HTTP_Method_Override: DELETE\r\n",
            vec![Gone("x_http_method_override")],
        ),
        // Identity headers other proxies and frameworks trust.
        (
            "REMOTE_USER and friends",
            "Remote-User: root\r\nRemote_User: root\r\nX-Remote-User: root\r\nX-User: root\r\nX-Email: root@x\r\nX-Groups: admins\r\n",
            vec![
                Gone("remote-user"),
                Gone("remote_user"),
                Gone("x-remote-user"),
                Gone("x-user"),
                Gone("x-email"),
                Gone("x-groups"),
            ],
        ),
        (
            "web-auth headers",
            "X-WebAuth-User: root\r\nX-Authenticated-User: root\r\nX-Authenticated-Groups: admins\r\nX-Auth-Request-User: root\r\nX-Auth-Request-Email: root@x\r\n",
            vec![
                Gone("x-webauth-user"),
                Gone("x-authenticated-user"),
                Gone("x-authenticated-groups"),
                Gone("x-auth-request-user"),
                Gone("x-auth-request-email"),
            ],
        ),
        (
            "cloud IAP headers",
            "X-MS-Client-Principal-Name: root\r\nX-Goog-Authenticated-User-Email: accounts.google.com:root@x\r\nX-Amzn-Oidc-Identity: root\r\nX-Pomerium-Jwt-Assertion: x\r\nX-Vouch-User: root\r\n",
            vec![
                Gone("x-ms-client-principal-name"),
                Gone("x-goog-authenticated-user-email"),
                Gone("x-amzn-oidc-identity"),
                Gone("x-pomerium-jwt-assertion"),
                Gone("x-vouch-user"),
            ],
        ),
        (
            "mod_auth_openidc style claims",
            "OIDC_CLAIM_sub: root\r\nOIDC-Claim-Groups: admins\r\nOIDC_access_token: x\r\n",
            vec![
                Gone("oidc_claim_sub"),
                Gone("oidc-claim-groups"),
                Gone("oidc_access_token"),
            ],
        ),
        (
            "Proxy-Authorization",
            "Proxy-Authorization: Basic cm9vdDpyb290\r\n",
            vec![Gone("proxy-authorization")],
        ),
        // Hop-by-hop tricks: nominating the gateway's own headers in Connection must not
        // make the gateway drop them (the upstream would then fall back to defaults).
        (
            "Connection nominates the user header",
            "Connection: keep-alive, X-Sekisho-User, X-Sekisho-Assertion\r\n",
            vec![alice(), Replaced("x-sekisho-assertion", "")],
        ),
        (
            "Connection nominates X-Forwarded-For and X-Request-ID",
            "Connection: X-Forwarded-For, X-Request-ID, X-Forwarded-Proto\r\n",
            vec![
                xff(),
                Is("x-forwarded-proto", "https".into()),
                Replaced("x-request-id", ""),
            ],
        ),
    ];

    for (case, extra, checks) in &cases {
        let before = portal.count();
        let req = format!(
            "GET /work HTTP/1.1\r\nHost: {host}\r\n{extra}Cookie: {cookie}\r\nConnection: close\r\n\r\n"
        );
        // `Connection:` in `extra` and ours combine into one list.
        let raw = raw_tls(&s.gw.pki, s.gw.addr("lgwan-https"), SITE, req.as_bytes()).await;
        assert_eq!(status_of(&raw), 200, "{case}: {raw}");
        assert_eq!(portal.count(), before + 1, "{case}");
        let seen = portal.requests().pop().unwrap();
        check(case, &seen, checks);
        // Always: the user is alice, once; the forwarded-for is the real peer.
        check(case, &seen, &[alice(), xff()]);
        let rid = rid_of(&raw).expect("x-request-id");
        assert_eq!(values(&seen, "x-request-id"), vec![rid.clone()], "{case}");
        let rec = assert_allowed_on_record(&s.audit, &rid, case).await;
        assert_eq!(rec["user"]["sub"], "alice", "{case}: {rec}");
        assert_eq!(rec["path"], "/work", "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_headers_are_stripped_on_public_routes_and_over_http2() {
    let portal = echo("portal", "127.0.10.122:0").await;
    let public = echo("public", "127.0.10.123:0").await;
    let s = signin::start(&routes(&portal, &public)).await;

    // A public route: nobody is signed in, and nobody may claim to be.
    let c = s.client_h2();
    let r = c
        .get(format!("{}/pub/x", s.base()))
        .header("x-sekisho-user", "mallory")
        .header("x-sekisho-user", "root")
        .header("x_sekisho_groups", "admins")
        .header("x-forwarded-user", "root")
        .header("x-original-url", "/admin")
        .header("x-http-method-override", "DELETE")
        .header("forwarded", "for=10.0.0.1")
        .header("x-forwarded-for", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen = public.requests().pop().unwrap();
    for gone in [
        "x-sekisho-user",
        "x_sekisho_groups",
        "x-forwarded-user",
        "x-original-url",
        "x-http-method-override",
        "forwarded",
        "x-sekisho-assertion",
    ] {
        assert!(
            !seen.headers.contains_key(gone),
            "public h2: {gone} reached the upstream"
        );
    }
    assert_eq!(
        values(&seen, "x-forwarded-for"),
        vec!["127.0.0.1".to_owned()]
    );
    let rec = assert_allowed_on_record(&s.audit, &rid, "public h2").await;
    assert!(rec.get("user").is_none_or(|u| u.is_null()), "{rec}");

    // HTTP/2 with a session: the same headers, and the gateway's values win.
    let browser = signin::sign_in(&s, "alice", "/").await;
    let r = c
        .get(format!("{}/work", s.base()))
        .headers(browser.headers())
        .header("x-sekisho-user", "mallory")
        .header("x_sekisho_user", "mallory")
        .header("x-sekisho-groups", "admins")
        .header("x-forwarded-host", "evil.example")
        .header("x-rewrite-url", "/admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let seen = portal.requests().pop().unwrap();
    assert_eq!(
        seen.version,
        http::Version::HTTP_11,
        "forwarded as HTTP/1.1"
    );
    assert_eq!(values(&seen, "x-sekisho-user"), vec!["alice".to_owned()]);
    assert_eq!(values(&seen, "x-sekisho-groups"), vec!["staff".to_owned()]);
    assert!(!seen.headers.contains_key("x_sekisho_user"));
    assert!(!seen.headers.contains_key("x-rewrite-url"));
    assert_eq!(
        values(&seen, "x-forwarded-host"),
        vec![format!("{SITE}:{}", s.port)]
    );
    let rec = assert_allowed_on_record(&s.audit, &rid, "h2 signed in").await;
    assert_eq!(rec["user"]["sub"], "alice");

    // A spoofed identity header alone does not sign anyone in (the policy route refuses).
    let before = portal.count();
    let r = c
        .get(format!("{}/work", s.base()))
        .header("x-sekisho-user", "alice")
        .header("x-sekisho-groups", "staff")
        .header("x-forwarded-user", "alice")
        .header("remote-user", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        portal.count(),
        before,
        "the upstream never saw the anonymous request"
    );
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_denied_on_record(&s.audit, &rid, "identity headers alone").await;
}
