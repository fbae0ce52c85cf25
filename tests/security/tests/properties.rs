//! Property: the decided path equals the forwarded path. Random paths built from the pieces
//! that disguise paths (dot segments, escapes, case, doubled slashes, matrix parameters,
//! backslashes, NUL, overlong UTF-8) go through a real gateway to echo upstreams. For every
//! request that is forwarded, what the upstream saw is exactly the canonical path, it
//! canonicalises to itself, the route whose upstream saw it is the route that matches the
//! canonical path, and the audit record names that path and route. Refused requests reach no
//! upstream. (Default deny, deny overrides allow and audit tamper-evidence are property-tested
//! in `sekisho-policy/tests/properties.rs` and `sekisho-audit/tests/tamper.rs`.)

use crate::common;
use crate::support;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sekisho_gateway::canon::{canonicalize, prefix_matches};
use support::*;

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "app",
        "APP",
        "App",
        "admin",
        "Admin",
        "x",
        "data",
        "..",
        ".",
        "",
        "%2e",
        "%2E%2e",
        ".%2e",
        "%61pp",
        "%61dmin",
        "a%20b",
        "%41",
        "~",
        "-",
        "_",
        "%7E",
        "%e6%97%a5",
        ";x",
        "..;",
        "%2f",
        "%5c",
        "\\",
        "%00",
        "%25",
        "a.",
        "%C0%AE",
        "%3b",
        "%3F",
        "%23",
        "%ef%bc%8f",
        "*",
        "@",
        ":",
    ])
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(piece(), 0..7),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(parts, trailing, query)| {
            let mut p = format!("/{}", parts.join("/"));
            if trailing {
                p.push('/');
            }
            if query {
                p.push_str("?q=%2e%2e/admin");
            }
            p
        })
}

#[test]
fn the_decided_path_is_the_forwarded_path() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (gw, audit, catchall, app) = rt.block_on(async {
        let catchall = echo("catchall", "127.0.10.190:0").await;
        let app = echo("app", "127.0.10.191:0").await;
        let admin = echo("admin", "127.0.10.192:0").await;
        let routes = format!(
            r#"routes:
  catchall:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
  app:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /app
    upstreams: [http://{}]
    access: public
  admin:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /admin
    upstreams: [http://{}]
    policy: admins-only
"#,
            catchall.addr, app.addr, admin.addr
        );
        let (gw, audit) = audited("", &routes).await;
        (gw, audit, catchall, app)
    });

    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let mut runner = TestRunner::new(Config {
        cases: 64,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&path(), |target| {
            rt.block_on(async {
                let (raw_path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.clone(), None),
                };
                let before = (catchall.count(), app.count());
                let req =
                    format!("GET {target} HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n");
                let raw = raw(&gw.pki, gw.addr("lgwan-https"), &req).await;
                let status = status_of(&raw);
                *outcomes.lock().unwrap().entry(status).or_default() += 1;
                let after = (catchall.count(), app.count());
                let canon = canonicalize(&raw_path);
                match status {
                    200 => {
                        let canon = canon.clone().expect("forwarded, so canonical");
                        let (up, route) = if after.1 > before.1 {
                            (&app, "app")
                        } else {
                            (&catchall, "catchall")
                        };
                        prop_assert_eq!(after.0 + after.1, before.0 + before.1 + 1);
                        let seen = up.requests().pop().unwrap();
                        let want = match &query {
                            Some(q) => format!("{canon}?{q}"),
                            None => canon.clone(),
                        };
                        prop_assert_eq!(&seen.uri, &want, "{} → {}", target, seen.uri);
                        prop_assert_eq!(canonicalize(&canon), Ok(canon.clone()));
                        prop_assert_eq!(route == "app", prefix_matches("/app", &canon));
                        prop_assert!(!prefix_matches("/admin", &canon));
                        let rid = rid_of(&raw).unwrap();
                        let rec = assert_allowed_on_record(&audit, &rid, &target).await;
                        prop_assert_eq!(rec["path"].as_str(), Some(canon.as_str()));
                        prop_assert_eq!(rec["route"].as_str(), Some(route));
                    }
                    401 => {
                        // The admin route: decided there, forwarded nowhere.
                        let canon = canon.expect("routed, so canonical");
                        prop_assert!(prefix_matches("/admin", &canon), "{} → {}", target, canon);
                        prop_assert_eq!(after, before);
                        let rid = rid_of(&raw).unwrap();
                        let rec = assert_denied_on_record(&audit, &rid, &target).await;
                        prop_assert_eq!(rec["path"].as_str(), Some(canon.as_str()));
                        prop_assert_eq!(rec["route"].as_str(), Some("admin"));
                    }
                    _ => {
                        prop_assert_eq!(
                            after,
                            before,
                            "{} ({}) reached an upstream",
                            target,
                            status
                        );
                        prop_assert!(
                            status == 400 || canon.is_err(),
                            "{} answered {}: {}",
                            target,
                            status,
                            raw
                        );
                    }
                }
                Ok(())
            })
        })
        .unwrap();
    // Not vacuous: the random paths were forwarded, decided on the admin route, and refused.
    let outcomes = outcomes.into_inner().unwrap();
    eprintln!("statuses: {outcomes:?}");
    for status in [200, 400] {
        assert!(
            outcomes.get(&status).is_some_and(|n| *n > 0),
            "{outcomes:?}"
        );
    }
}
