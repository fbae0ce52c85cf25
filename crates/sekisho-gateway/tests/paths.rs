//! Disguised paths never reach a route they do not match.
//!
//! Routes on one host: `/admin` (protected: denied until a policy allows), `/public` and a
//! catch-all `/` (both public, each with its own upstream). Every attempt to reach
//! `/admin` through another reading of the path must be refused (400), or land on the
//! `/admin` route (401: its policy wants a signed-in administrator) — and no upstream may ever receive a request that a lenient server
//! (decoding twice, treating `\` as `/`, dropping `;` parameters, ignoring case and
//! trailing dots) would read as `/admin`.

use crate::common;

use common::*;

/// How a permissive upstream (Tomcat, IIS, nginx with merge_slashes, a framework that
/// decodes twice) might read a path.
fn lenient_reading(uri: &str) -> String {
    let path = uri.split('?').next().unwrap_or("");
    let mut p = path.to_owned();
    for _ in 0..2 {
        p = percent_encoding::percent_decode_str(&p)
            .decode_utf8_lossy()
            .into_owned();
    }
    let p = p.replace('\\', "/").replace('\0', "");
    let mut out: Vec<String> = Vec::new();
    for seg in p.split('/') {
        let seg = seg.split(';').next().unwrap_or("");
        let seg = if seg.chars().all(|c| c == '.') {
            seg
        } else {
            seg.trim_end_matches(['.', ' ', '\t'])
        };
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    format!("/{}", out.join("/"))
}

#[test]
fn lenient_reading_reads_like_a_permissive_server() {
    assert_eq!(lenient_reading("/public/..;/admin"), "/admin");
    assert_eq!(lenient_reading("/public/%252e%252e/ADMIN."), "/admin");
    assert_eq!(lenient_reading("/public\\..\\admin?x"), "/admin");
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// 400: refused as ambiguous.
    Refused,
    /// 401: routed to `/admin`, whose policy first wants to know who is asking.
    AdminRoute,
    /// Any status, but it must not be an admin reading upstream (checked below).
    Harmless(u16),
}

#[tokio::test]
async fn disguised_paths_never_reach_a_route_they_do_not_match() {
    let catchall = echo("catchall", "127.0.10.50:0").await;
    let public = echo("public", "127.0.10.51:0").await;
    let admin = echo("admin", "127.0.10.52:0").await;
    let gw = gateway(&format!(
        r#"routes:
  catchall:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{c}]
    access: public
  public:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /public
    upstreams: [http://{p}]
    access: public
  admin:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /admin
    upstreams: [http://{a}]
    policy: admins-only
"#,
        c = catchall.addr,
        p = public.addr,
        a = admin.addr
    ))
    .await;

    use Want::*;
    let targets: Vec<(&str, Want)> = vec![
        ("/admin", AdminRoute),
        ("//admin", AdminRoute),
        ("///admin///", AdminRoute),
        ("/./admin", AdminRoute),
        ("/%2e/admin", AdminRoute),
        ("/public/../admin", AdminRoute),
        ("/public/./../admin", AdminRoute),
        ("/public//../admin", AdminRoute),
        ("/public/%2e%2e/admin", AdminRoute),
        ("/public/%2E%2E/admin", AdminRoute),
        ("/public/.%2e/admin", AdminRoute),
        ("/%61dmin", AdminRoute),
        ("/adm%69n", AdminRoute),
        ("/ADMIN", AdminRoute),
        ("/Admin/x", AdminRoute),
        ("/admin/", AdminRoute),
        ("/admin?next=/../public", AdminRoute),
        ("/admin;x=1", Refused),
        ("/public/..;/admin", Refused),
        ("/public;/../admin", Refused),
        ("/admin%3b", Refused),
        ("/admin%2f", Refused),
        ("/%2fadmin", Refused),
        ("/public%2f..%2fadmin", Refused),
        ("/public/%2e%2e%2fadmin", Refused),
        ("/public/%252e%252e/admin", Refused),
        ("/public/%252fadmin", Refused),
        ("/public\\..\\admin", Refused),
        ("/public/%5c..%5cadmin", Refused),
        ("/admin%00", Refused),
        ("/public/..%00/admin", Refused),
        ("/admin%20", Refused),
        ("/admin%09", Refused),
        ("/admin.", Refused),
        ("/admin./", Refused),
        ("/public/%c0%ae%c0%ae/admin", Refused),
        ("/public/%e0%80%ae%e0%80%ae/admin", Refused),
        ("/public/%ff/admin", Refused),
        ("*", Refused),
        ("/admin/..", Harmless(200)),
        ("/public/", Harmless(200)),
        ("/public?/admin", Harmless(200)),
        ("/publicadmin", Harmless(200)),
    ];
    for (target, want) in &targets {
        let method = if *target == "*" { "OPTIONS" } else { "GET" };
        let req =
            format!("{method} {target} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
        let raw = raw_tls(&gw.pki, gw.addr("lgwan-https"), SITE, req.as_bytes()).await;
        let status = status_of(&raw);
        match want {
            Refused => assert_eq!(status, 400, "{target}: {raw}"),
            AdminRoute => assert_eq!(status, 401, "{target}: {raw}"),
            Harmless(s) => assert_eq!(status, *s, "{target}: {raw}"),
        }
    }

    // Absolute-form targets and Host/authority/SNI disagreements.
    let host_cases: Vec<(String, &str, u16)> = vec![
        (
            format!("GET https://{SITE}/admin HTTP/1.1\r\nHost: {SITE}\r\n"),
            SITE,
            401,
        ),
        (
            format!("GET https://other.test.localhost/public HTTP/1.1\r\nHost: {SITE}\r\n"),
            SITE,
            400,
        ),
        (
            format!("GET http://{SITE}/public HTTP/1.1\r\nHost: {SITE}\r\n"),
            SITE,
            400,
        ),
        (
            "GET /public HTTP/1.1\r\nHost: other.test.localhost\r\n".to_string(),
            SITE,
            421,
        ),
        (
            "GET /admin HTTP/1.1\r\nHost: APP.Test.Localhost.\r\n".to_string(),
            SITE,
            401,
        ),
        (
            format!("GET /public HTTP/1.1\r\nHost: {SITE}@evil.example\r\n"),
            SITE,
            400,
        ),
        (
            format!("GET /public HTTP/1.1\r\nHost: {SITE}:99999\r\n"),
            SITE,
            400,
        ),
        ("GET /public HTTP/1.1\r\nHost: \r\n".to_string(), SITE, 400),
    ];
    for (head, sni, want) in &host_cases {
        let req = format!("{head}Connection: close\r\n\r\n");
        let raw = raw_tls(&gw.pki, gw.addr("lgwan-https"), sni, req.as_bytes()).await;
        assert_eq!(status_of(&raw), *want, "{head:?}: {raw}");
    }

    assert_eq!(admin.count(), 0, "the protected upstream was never reached");
    for up in [&catchall, &public] {
        for seen in up.requests() {
            let reading = lenient_reading(&seen.uri);
            assert!(
                reading != "/admin" && !reading.starts_with("/admin/"),
                "upstream {} received {:?}, which a lenient server reads as {reading}",
                up.name,
                seen.uri
            );
        }
    }
    // The harmless cases did arrive, with their canonical paths.
    let seen: Vec<String> = catchall
        .requests()
        .iter()
        .chain(public.requests().iter())
        .map(|s| s.uri.clone())
        .collect();
    for expected in ["/", "/public/", "/public?/admin", "/publicadmin"] {
        assert!(
            seen.iter().any(|s| s == expected),
            "{expected} not among {seen:?}"
        );
    }
}
