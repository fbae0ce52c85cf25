//! Attacks on sign-in and sessions through a real gateway and the real OpenID provider:
//! open redirects on login and logout, CSRF on the callback (state reuse, a callback without
//! the login cookie, another browser's login, another host, mix-up), and session cookies
//! (tampering, forging with another key, duplicates, replay after logout, use on another host,
//! never leaked upstream).

use crate::common;
use crate::idp;
use crate::signin;
use crate::support;

use common::*;
use support::*;

fn routes(portal: &Echo, other: &Echo) -> String {
    format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    policy: lgwan-staff
  other:
    zone: lgwan
    hosts: [other.test.localhost]
    upstreams: [http://{}]
    policy: lgwan-staff
"#,
        portal.addr, other.addr
    )
}

/// Where a browser on `page` goes when told `Location: location` (WHATWG URL resolution,
/// which treats `\` like `/` and strips tabs and newlines).
fn resolve(page: &str, location: &str) -> url::Url {
    url::Url::parse(page).unwrap().join(location).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_logout_never_redirect_off_site() {
    let portal = echo("portal", "127.0.10.140:0").await;
    let other = echo("other", "127.0.10.141:0").await;
    let s = signin::start(&routes(&portal, &other)).await;
    let page = format!("{}/.sekisho/callback", s.base());

    // `rd` values as they appear in the query string (already URL-encoded where noted).
    let hostile = [
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "\\/evil.example/",
        "\\\\evil.example",
        "https://evil.example/",
        "https:evil.example",
        "http:/evil.example",
        "%2F%2Fevil.example",
        "%2f%5cevil.example",
        "/%2F/evil.example",
        "%252F%252Fevil.example",
        "/%09/evil.example",
        "/%0a/evil.example",
        "/%0d%0a/evil.example",
        "%09//evil.example",
        "%20//evil.example",
        "javascript:alert(document.domain)",
        "data:text/html,<script>alert(1)</script>",
        "//app.test.localhost@evil.example/",
        "https://app.test.localhost.evil.example/",
        "https://other.test.localhost/",
        "/%5Cevil.example",
        "/.sekisho/login?rd=//evil.example",
    ];
    for rd in hostile {
        let mut browser = idp::Browser::new();
        let start = format!("/.sekisho/login?rd={}", rd.replace('&', "%26"));
        let callback = signin::authorize(&s, &mut browser, &start, "alice").await;
        let (status, location, rid) = signin::deliver(&s, &mut browser, &callback).await;
        assert_eq!(status, 302, "rd={rd}");
        let location = location.expect("a Location");
        let target = resolve(&page, &location);
        assert_eq!(
            target.host_str(),
            Some(SITE),
            "rd={rd}: Location {location:?} leaves the site"
        );
        assert_eq!(target.scheme(), "https", "rd={rd}: {location:?}");
        assert!(
            location.starts_with('/') && !location.starts_with("//"),
            "rd={rd}: {location:?}"
        );
        assert!(
            !location.contains('\\') && !location.bytes().any(|b| b.is_ascii_control()),
            "rd={rd}: {location:?}"
        );
        // The sign-in itself is on the audit trail.
        let recs = records_of(&s.audit, rid.as_deref().unwrap()).await;
        assert!(
            recs.iter().any(|r| r["kind"] == "login_success"),
            "rd={rd}: {recs:?}"
        );
    }
    // A legitimate return target survives.
    let mut browser = idp::Browser::new();
    let callback = signin::authorize(
        &s,
        &mut browser,
        "/.sekisho/login?rd=/kintai/2026?m=11",
        "alice",
    )
    .await;
    let (_, location, _) = signin::deliver(&s, &mut browser, &callback).await;
    assert_eq!(location.as_deref(), Some("/kintai/2026?m=11"));

    // Logout: whatever the request says, the browser goes to the IdP's end-session endpoint,
    // which sends it back only to the gateway's registered logged-out page.
    let c = s.client();
    for q in [
        "?rd=//evil.example",
        "?post_logout_redirect_uri=https://evil.example/",
        "?redirect_uri=https://evil.example/&rd=https:evil.example",
        "?next=%2F%2Fevil.example",
    ] {
        let r = c
            .post(format!("{}/.sekisho/logout{q}", s.base()))
            .headers(browser.headers())
            .header("referer", "https://evil.example/")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{q}");
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let target = url::Url::parse(&location).unwrap();
        assert!(location.starts_with(&s.idp.issuer), "{q}: {location}");
        for (k, v) in target.query_pairs() {
            if k.contains("redirect") {
                assert_eq!(
                    v,
                    format!("{}/.sekisho/logged-out", s.base()),
                    "{q}: {location}"
                );
            }
            assert!(!v.contains("evil.example"), "{q}: {k}={v}");
        }
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let recs = records_of(&s.audit, &rid).await;
        assert!(recs.iter().any(|r| r["kind"] == "logout"), "{q}: {recs:?}");
    }
    // GET logout and the logged-out page never redirect at all.
    for path in [
        "/.sekisho/logout?rd=//evil.example",
        "/.sekisho/logged-out?rd=//evil.example&post_logout_redirect_uri=https://evil.example",
    ] {
        let r = c.get(format!("{}{path}", s.base())).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.headers().get("location").is_none(), "{path}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("evil.example"), "{path}: reflected");
    }
    assert_eq!(other.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_csrf_state_reuse_and_foreign_callbacks_are_refused() {
    let portal = echo("portal", "127.0.10.142:0").await;
    let other = echo("other", "127.0.10.143:0").await;
    let s = signin::start(&routes(&portal, &other)).await;
    let port = s.port;

    let no_session = |b: &idp::Browser| !b.gateway_cookies.contains_key("__Host-sekisho");
    let mut failures = Vec::new();

    // 1. State reuse: a completed callback delivered again with the same login cookie.
    let mut victim = idp::Browser::new();
    let callback = signin::authorize(&s, &mut victim, "/", "alice").await;
    let saved = victim.gateway_cookies.clone();
    let (status, _, _) = signin::deliver(&s, &mut victim, &callback).await;
    assert_eq!(status, 302);
    let mut replayer = idp::Browser::new();
    replayer.gateway_cookies = saved;
    let (status, location, rid) = signin::deliver(&s, &mut replayer, &callback).await;
    assert_eq!(status, 400, "state reuse: {location:?}");
    assert!(no_session(&replayer), "state reuse set a session");
    failures.push(("state reuse", rid));

    // 2. Login CSRF: the attacker's callback URL opened in a browser without the login cookie.
    let mut attacker = idp::Browser::new();
    let attacker_callback = signin::authorize(&s, &mut attacker, "/", "bob").await;
    let mut fresh = idp::Browser::new();
    let (status, _, rid) = signin::deliver(&s, &mut fresh, &attacker_callback).await;
    assert_eq!(status, 400, "callback without the login cookie");
    assert!(no_session(&fresh));
    failures.push(("no login cookie", rid));

    // 3. The attacker's callback in a victim browser that has its own login in progress.
    let mut victim = idp::Browser::new();
    let _own = signin::authorize(&s, &mut victim, "/", "alice").await;
    let (status, _, rid) = signin::deliver(&s, &mut victim, &attacker_callback).await;
    assert_eq!(status, 400, "another browser's state");
    assert!(no_session(&victim));
    failures.push(("another login's state", rid));

    // 4. The right cookie and callback, delivered on another host of the same gateway.
    let mut b = idp::Browser::new();
    let callback = signin::authorize(&s, &mut b, "/", "alice").await;
    let moved = callback.replace(
        &format!("{SITE}:{port}"),
        &format!("other.test.localhost:{port}"),
    );
    let (status, _, rid) = signin::deliver(&s, &mut b, &moved).await;
    assert_eq!(status, 400, "callback on another host");
    assert!(no_session(&b));
    failures.push(("another host", rid));
    // … and it cannot be used afterwards on the right host either? It may: the state was not
    // consumed by a refused callback on the wrong host. Either way, no session on `other`.

    // 5. Mix-up: the `iss` of the authorization response names another issuer.
    let mut b = idp::Browser::new();
    let callback = signin::authorize(&s, &mut b, "/", "alice").await;
    let mixed = {
        let mut u = url::Url::parse(&callback).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "iss" {
                    "https://evil.example".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    };
    let (status, _, rid) = signin::deliver(&s, &mut b, &mixed).await;
    assert_eq!(status, 400, "mix-up iss");
    assert!(no_session(&b));
    failures.push(("mix-up iss", rid));

    // 6. A repeated state parameter.
    let mut b = idp::Browser::new();
    let callback = signin::authorize(&s, &mut b, "/", "alice").await;
    let (status, _, rid) = signin::deliver(&s, &mut b, &format!("{callback}&state=other")).await;
    assert_eq!(status, 400, "repeated state");
    assert!(no_session(&b));
    failures.push(("repeated state", rid));

    // 7. A forged code with a genuine state and cookie.
    let mut b = idp::Browser::new();
    let callback = signin::authorize(&s, &mut b, "/", "alice").await;
    let forged = {
        let mut u = url::Url::parse(&callback).unwrap();
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "code" {
                    "forged-code".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        u.to_string()
    };
    let (status, _, rid) = signin::deliver(&s, &mut b, &forged).await;
    assert_eq!(status, 400, "forged code");
    assert!(no_session(&b));
    failures.push(("forged code", rid));
    // The genuine code cannot be redeemed with that state any more.
    let (status, _, rid) = signin::deliver(&s, &mut b, &callback).await;
    assert_eq!(status, 400, "state consumed by the forged attempt");
    failures.push(("state consumed", rid));

    // 8. An error response from the IdP, and a callback without state.
    let mut b = idp::Browser::new();
    let _ = signin::authorize(&s, &mut b, "/", "alice").await;
    for (case, q) in [
        ("idp error", "error=access_denied&state=x"),
        ("no state", "code=abc"),
    ] {
        let (status, _, rid) =
            signin::deliver(&s, &mut b, &format!("{}/.sekisho/callback?{q}", s.base())).await;
        assert_eq!(status, 400, "{case}");
        assert!(no_session(&b));
        failures.push((case, rid));
    }

    for (case, rid) in failures {
        let rid = rid.unwrap_or_else(|| panic!("{case}: no request id"));
        let recs = records_of(&s.audit, &rid).await;
        assert!(
            recs.iter().any(|r| r["kind"] == "login_failure"),
            "{case}: no login_failure record: {recs:?}"
        );
    }
    assert_eq!(portal.count(), 0);
    assert_eq!(other.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_cookies_tampered_forged_replayed_or_moved_are_refused() {
    let portal = echo("portal", "127.0.10.144:0").await;
    let other = echo("other", "127.0.10.145:0").await;
    let s = signin::start(&routes(&portal, &other)).await;
    let browser = signin::sign_in(&s, "alice", "/").await;
    let good = browser.gateway_cookies["__Host-sekisho"].clone();
    let c = s.client();
    let url = format!("{}/work", s.base());

    // Control: the genuine cookie works, and the upstream never sees it.
    let r = c
        .get(&url)
        .header("cookie", format!("__Host-sekisho={good}; theme=dark"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = portal.requests().pop().unwrap();
    let cookies: Vec<String> = seen
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        cookies,
        vec!["theme=dark".to_owned()],
        "only the app's cookie goes upstream"
    );
    let allowed = portal.count();

    // A cookie sealed under another key, with otherwise perfect contents.
    let forged = {
        let k = sekisho_identity::CookieKey::new("k1", &[9u8; 32]).unwrap();
        let ring = sekisho_identity::CookieKeyRing::new(vec![k]).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let data = serde_json::json!({
            "v": 1, "i": "0123456789abcdef0123456789abcdef", "o": s.idp.issuer,
            "u": {"s": "root", "g": ["staff", "admins"], "m": ["pwd", "otp"], "t": now},
            "c": now, "x": now + 3600, "l": now, "r": now,
        });
        format!("1~{}", ring.seal("__Host-sekisho", &data.to_string()))
    };
    // The same contents sealed under the gateway's own key but naming another issuer.
    let other_issuer = {
        let k = sekisho_identity::CookieKey::new("k1", &[7u8; 32]).unwrap();
        let ring = sekisho_identity::CookieKeyRing::new(vec![k]).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let data = serde_json::json!({
            "v": 1, "i": "fedcba9876543210fedcba9876543210", "o": "https://evil.example",
            "u": {"s": "root", "g": ["staff"], "m": ["pwd"], "t": now},
            "c": now, "x": now + 3600, "l": now, "r": now,
        });
        format!("1~{}", ring.seal("__Host-sekisho", &data.to_string()))
    };
    // Sealed under the right key for another cookie name (the name is bound into the AEAD).
    let other_name = {
        let k = sekisho_identity::CookieKey::new("k1", &[7u8; 32]).unwrap();
        let ring = sekisho_identity::CookieKeyRing::new(vec![k]).unwrap();
        let opened = ring
            .open("__Host-sekisho", good.split_once('~').unwrap().1)
            .unwrap();
        format!("1~{}", ring.seal("__Host-sekisho-login-x", &opened))
    };
    let flip = |i: usize| {
        let mut b = good.clone().into_bytes();
        let j = b.len() - 1 - i;
        b[j] = if b[j] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "one byte flipped at the end",
            format!("__Host-sekisho={}", flip(0)),
        ),
        (
            "one byte flipped in the middle",
            format!("__Host-sekisho={}", flip(good.len() / 2)),
        ),
        (
            "truncated",
            format!("__Host-sekisho={}", &good[..good.len() - 8]),
        ),
        (
            "chunk count raised",
            format!("__Host-sekisho=2{}", &good[1..]),
        ),
        (
            "chunk count zero",
            format!("__Host-sekisho=0{}", &good[1..]),
        ),
        (
            "no chunk count",
            format!("__Host-sekisho={}", good.split_once('~').unwrap().1),
        ),
        (
            "forged under another key",
            format!("__Host-sekisho={forged}"),
        ),
        (
            "right key, other issuer",
            format!("__Host-sekisho={other_issuer}"),
        ),
        (
            "sealed for another cookie name",
            format!("__Host-sekisho={other_name}"),
        ),
        (
            "duplicate session cookie (good + forged)",
            format!("__Host-sekisho={good}; __Host-sekisho={forged}"),
        ),
        (
            "duplicate across two Cookie headers",
            format!("__Host-sekisho={forged}\r\nCookie: __Host-sekisho={good}"),
        ),
        ("empty value", "__Host-sekisho=".into()),
        ("quoted garbage", "__Host-sekisho=\"1~AAAA\"".into()),
    ];
    for (case, cookie) in &cases {
        // Raw bytes so the two-header case reaches the wire as written.
        let req = format!(
            "GET /work HTTP/1.1\r\nHost: {SITE}:{}\r\nAccept: application/json\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
            s.port
        );
        let raw = raw_tls(&s.gw.pki, s.gw.addr("lgwan-https"), SITE, req.as_bytes()).await;
        assert_eq!(status_of(&raw), 401, "{case}: {raw}");
        assert_eq!(portal.count(), allowed, "{case}: reached the upstream");
        let rid = rid_of(&raw).unwrap();
        let rec = assert_denied_on_record(&s.audit, &rid, case).await;
        assert!(rec.get("user").is_none_or(|u| u.is_null()), "{case}: {rec}");
        // A refused session is cleared in the browser.
        assert!(
            raw.to_ascii_lowercase()
                .contains("set-cookie: __host-sekisho=;")
                || !raw.contains("__Host-sekisho=1~"),
            "{case}"
        );
    }

    // Use on another host of the same gateway: the session is the user's, not the host's —
    // the other host's policy decides on the same identity, and its upstream never sees the
    // cookie. (A browser would not send a `__Host-` cookie there; this is a replay by hand.)
    let oc = client(&s.gw.pki, s.gw.addr("lgwan-https"), false);
    let r = oc
        .get(format!("https://other.test.localhost:{}/x", s.port))
        .header("cookie", format!("__Host-sekisho={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = other.requests().pop().unwrap();
    assert_eq!(seen.headers["x-sekisho-user"], "alice");
    assert!(!seen.headers.contains_key("cookie"));
    let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let rec = assert_allowed_on_record(&s.audit, &rid, "other host").await;
    assert_eq!(rec["host"], "other.test.localhost");

    // Replay after logout, on HTTP/1.1 and HTTP/2, on both hosts.
    let r = c
        .post(format!("{}/.sekisho/logout", s.base()))
        .header("cookie", format!("__Host-sekisho={good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let before = (portal.count(), other.count());
    for (case, cl, u) in [
        ("replay h1", s.client(), url.clone()),
        ("replay h2", s.client_h2(), url.clone()),
        (
            "replay on the other host",
            oc.clone(),
            format!("https://other.test.localhost:{}/x", s.port),
        ),
    ] {
        let r = cl
            .get(&u)
            .header("cookie", format!("__Host-sekisho={good}"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{case}");
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_denied_on_record(&s.audit, &rid, case).await;
    }
    assert_eq!(
        (portal.count(), other.count()),
        before,
        "no replay reached an upstream"
    );
    // The logout itself cannot be "undone" by logging out again with a forged cookie.
    let r = c
        .post(format!("{}/.sekisho/logout", s.base()))
        .header("cookie", format!("__Host-sekisho={forged}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}
