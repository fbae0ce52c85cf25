//! The gateway's edges: admin endpoints are never served on public listeners, and zones are
//! never crossed — not through DNS answers (a host name, or a numeric form that resolvers read
//! as an address in another zone) and not through upstream redirects (the gateway does not
//! follow them; the Location goes back to the client as is and no connection to the other zone
//! is made).

use crate::common;
use crate::support;

use common::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_are_never_served_on_public_listeners() {
    let app = echo("app", "127.0.10.150:0").await;
    let web = echo("web", "127.0.20.150:0").await;
    let routes = format!(
        r#"routes:
  app:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
  web:
    zone: internet
    listeners: [internet-https]
    hosts: [{SITE}]
    upstreams: [http://{}]
    access: public
"#,
        app.addr, web.addr
    );
    let (gw, audit) = audited("", &routes).await;
    // The admin listener is on loopback and really serves them.
    assert!(gw.running.admin.ip().is_loopback());
    let m = gw.metrics().await;
    assert!(m.contains("sekisho_"), "admin /metrics works: {m}");

    let admin_like =
        |body: &str| body.contains("sekisho_") || body.trim() == "ok" || body.trim() == "ready";
    let mut cases = 0;
    for listener in ["lgwan-https", "internet-https"] {
        let up = if listener == "lgwan-https" {
            &app
        } else {
            &web
        };
        for (h2, c) in [(false, gw.client(listener)), (true, gw.client_h2(listener))] {
            for path in [
                "/metrics",
                "/readyz",
                "/healthz",
                "//metrics",
                "/%6Detrics",
                "/metrics?x=1",
            ] {
                let before = up.count();
                let r = c.get(gw.url(listener, path)).send().await.unwrap();
                let status = r.status();
                let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                let body = r.text().await.unwrap();
                assert!(!admin_like(&body), "{listener} h2={h2} {path}: {body}");
                // The path belongs to the application behind the route.
                assert_eq!(status, 200, "{listener} {path}");
                assert_eq!(up.count(), before + 1, "{listener} {path}");
                assert!(
                    body.starts_with(&format!("upstream {} saw /", up.name)),
                    "{body}"
                );
                let rec = assert_allowed_on_record(&audit, &rid, path).await;
                assert_eq!(rec["listener"], listener);
                cases += 1;
            }
        }
        // A host without routes: 404 from the gateway, never the admin answer.
        let oc = gw.client(listener);
        for path in ["/metrics", "/readyz", "/healthz"] {
            let r = oc
                .get(format!(
                    "https://other.test.localhost:{}{path}",
                    gw.addr(listener).port()
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{listener} other host {path}");
            let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            let body = r.text().await.unwrap();
            assert!(!admin_like(&body), "{body}");
            assert_denied_on_record(&audit, &rid, path).await;
            cases += 1;
        }
    }
    // Reserved gateway paths and an IP-address Host with no SNI.
    for path in ["/.sekisho/metrics", "/.sekisho/readyz", "/.sekisho/healthz"] {
        let r = gw
            .client("lgwan-https")
            .get(gw.url("lgwan-https", path))
            .send()
            .await
            .unwrap();
        let body = r.text().await.unwrap();
        assert!(!admin_like(&body), "{path}: {body}");
    }
    let raw = raw(
        &gw.pki,
        gw.addr("lgwan-https"),
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            gw.running.admin.port()
        ),
    )
    .await;
    assert!(
        [404, 421].contains(&status_of(&raw)) && !raw.contains("sekisho_"),
        "Host naming the admin port: {raw}"
    );
    // The admin listener in turn never proxies.
    let before = app.count();
    let raw_admin = {
        let mut s = tokio::net::TcpStream::connect(gw.running.admin)
            .await
            .unwrap();
        use tokio::io::AsyncWriteExt;
        s.write_all(
            format!("GET /app HTTP/1.1\r\nHost: {SITE}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        read_for(&mut s, std::time::Duration::from_secs(3)).await
    };
    assert_eq!(status_of(&raw_admin), 404, "{raw_admin}");
    assert_eq!(app.count(), before);
    assert!(cases >= 30);

    // The loader refuses an admin listener on a public listener's address.
    let pki = Pki::new(&[SITE]);
    let yaml = full_yaml(&pki, &routes)
        .replacen(
            "admin:\n  listen: 127.0.0.1:0",
            "admin:\n  listen: 127.0.0.1:18443",
            1,
        )
        .replacen(
            "lgwan-https:\n    zone: lgwan\n    listen: 127.0.0.1:0",
            "lgwan-https:\n    zone: lgwan\n    listen: 127.0.0.1:18443",
            1,
        );
    let path = pki.path("sekisho.yaml");
    std::fs::write(&path, yaml).unwrap();
    let err = sekisho_gateway::config::load(&path).expect_err("admin on a public address");
    assert!(err.to_string().contains("admin"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_and_numeric_host_forms_never_cross_zones() {
    // Traps: anything connecting to them is a zone crossing.
    let localhost_trap = trap("127.0.0.1:0").await;
    let mynumber_trap = trap("127.0.30.5:0").await;
    let lgwan_trap = trap("127.0.10.5:0").await;
    let p = localhost_trap.addr.port();
    let q = mynumber_trap.addr.port();
    let r = lgwan_trap.addr.port();
    // Host names (not IP literals): checked when resolved, at connect time.
    let lgwan_cases = [
        ("localhost", format!("localhost:{p}")),
        ("decimal 127.0.0.1", format!("2130706433:{p}")),
        ("short 127.1", format!("127.1:{p}")),
        ("hex", format!("0x7f000001:{p}")),
        ("octal", format!("0177.0.0.1:{p}")),
        ("decimal into the isolated zone", format!("2130714117:{q}")),
        (
            "short form into the isolated zone",
            format!("127.0.7685:{q}"),
        ),
    ];
    let mut routes = String::from("routes:\n");
    for (i, (_, up)) in lgwan_cases.iter().enumerate() {
        routes.push_str(&format!(
            "  r{i}:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /r{i}\n    upstreams: [http://{up}]\n    access: public\n"
        ));
    }
    // An internet-side route whose name resolves into the LGWAN side.
    routes.push_str(&format!(
        "  inet:\n    zone: internet\n    listeners: [internet-https]\n    hosts: [{SITE}]\n    upstreams: [http://2130708997:{r}]\n    access: public\n"
    ));
    let (gw, audit) = audited("", &routes).await;
    let c = gw.client("lgwan-https");
    let mut probes: Vec<(String, String)> = Vec::new();
    for (i, (name, _)) in lgwan_cases.iter().enumerate() {
        let resp = c
            .get(gw.url("lgwan-https", &format!("/r{i}/x")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502, "{name}");
        probes.push((
            name.to_string(),
            resp.headers()["x-request-id"].to_str().unwrap().to_owned(),
        ));
    }
    let resp = gw
        .client("internet-https")
        .get(gw.url("internet-https", "/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502, "internet route resolving into LGWAN");
    probes.push((
        "internet → lgwan".into(),
        resp.headers()["x-request-id"].to_str().unwrap().to_owned(),
    ));
    assert_eq!(
        localhost_trap.count(),
        0,
        "connected to 127.0.0.1 from the LGWAN zone"
    );
    assert_eq!(mynumber_trap.count(), 0, "connected into the isolated zone");
    assert_eq!(
        lgwan_trap.count(),
        0,
        "connected from the internet zone into LGWAN"
    );
    let m = gw.metrics().await;
    assert!(
        metric(&m, "sekisho_upstream_errors", &["egress_denied"]) >= probes.len() as f64,
        "{m}"
    );
    for (name, rid) in &probes {
        let recs = records_until(&audit, rid, |r| r.iter().any(|x| x["status"] == 502)).await;
        assert!(!recs.is_empty(), "{name}: not audited");
        assert!(
            recs.iter().any(|r| r["status"] == 502),
            "{name}: the failure is on record: {recs:?}"
        );
    }

    // IP literals into another zone are refused when the configuration loads.
    for (name, up) in [
        ("isolated zone", "127.0.30.5:80"),
        ("other zone", "127.0.20.5:80"),
        (
            "IPv4-mapped IPv6 into the isolated zone",
            "[::ffff:127.0.30.5]:80",
        ),
        ("IPv6 loopback", "[::1]:80"),
    ] {
        let pki = Pki::new(&[SITE]);
        let yaml = full_yaml(
            &pki,
            &format!(
                "routes:\n  bad:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [http://{up}]\n    access: public\n"
            ),
        );
        let path = pki.path("sekisho.yaml");
        std::fs::write(&path, yaml).unwrap();
        assert!(
            sekisho_gateway::config::load(&path).is_err(),
            "{name}: {up} was accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_redirects_are_passed_back_never_followed() {
    let mynumber_trap = trap("127.0.30.6:0").await;
    let internet_trap = trap("127.0.20.6:0").await;
    let localhost_trap = trap("127.0.0.1:0").await;
    let targets = [
        (302, format!("http://{}/secret", mynumber_trap.addr)),
        (307, format!("http://{}/upload", internet_trap.addr)),
        (
            308,
            format!("http://localhost:{}/", localhost_trap.addr.port()),
        ),
        (301, "//127.0.30.6/x".to_owned()),
        (303, "/elsewhere?next=http://127.0.30.6/".to_owned()),
    ];
    let mut routes = String::from("routes:\n");
    let mut ups = Vec::new();
    for (i, (status, location)) in targets.iter().enumerate() {
        let (addr, hits) =
            redirector(&format!("127.0.10.16{i}:0"), *status, location.clone()).await;
        ups.push(hits);
        routes.push_str(&format!(
            "  r{i}:\n    zone: lgwan\n    hosts: [{SITE}]\n    path_prefix: /r{i}\n    upstreams: [http://{addr}]\n    access: public\n"
        ));
    }
    let (gw, audit) = audited("", &routes).await;
    for (i, (status, location)) in targets.iter().enumerate() {
        for c in [gw.client("lgwan-https"), gw.client_h2("lgwan-https")] {
            let resp = c
                .post(gw.url("lgwan-https", &format!("/r{i}/go")))
                .body("payload")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), *status, "r{i}");
            assert_eq!(
                resp.headers()["location"].to_str().unwrap(),
                location,
                "the Location goes back as is"
            );
            let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
            let want = *status;
            let recs = records_until(&audit, &rid, |r| r.iter().any(|x| x["status"] == want)).await;
            assert!(
                recs.iter().any(|r| r["status"] == *status),
                "r{i}: {recs:?}"
            );
        }
        assert_eq!(
            ups[i].load(std::sync::atomic::Ordering::SeqCst),
            2,
            "r{i}: asked once per request"
        );
    }
    assert_eq!(
        mynumber_trap.count(),
        0,
        "followed a redirect into the isolated zone"
    );
    assert_eq!(
        internet_trap.count(),
        0,
        "followed a redirect into the internet zone"
    );
    assert_eq!(
        localhost_trap.count(),
        0,
        "followed a redirect to localhost"
    );
}
