//! The audit trail through the gateway: every request that reached routing is recorded
//! (allowed ones before they are forwarded), the trail verifies, and when it cannot be
//! written the gateway fails closed and recovers on its own.

use crate::common;

use common::*;
use sekisho_audit::fault::{FaultInjector, FaultKind};

fn routes(up: std::net::SocketAddr) -> String {
    format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{up}]
    access: public
  staff:
    zone: lgwan
    hosts: [{SITE}]
    path_prefix: /staff
    upstreams: [http://{up}]
    policy: lgwan-staff
"#
    )
}

async fn setup(faults: Option<FaultInjector>) -> (Gw, Echo, std::path::PathBuf) {
    let up = echo("portal", "127.0.10.95:0").await;
    let pki = Pki::new(&[SITE, "other.test.localhost"]);
    let dir = pki.path("audit");
    let extra = "audit:\n  dir: audit\n  durability: strict\n";
    let options = sekisho_gateway::server::StartOptions {
        audit_faults: faults,
    };
    (
        gateway_extra_with(pki, extra, &routes(up.addr), options).await,
        up,
        dir,
    )
}

fn of_request<'a>(recs: &'a [serde_json::Value], rid: &str) -> Vec<&'a serde_json::Value> {
    recs.iter().filter(|r| r["request_id"] == rid).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_denied_and_unrouted_requests_are_all_on_record_and_the_trail_verifies() {
    let (gw, up, dir) = setup(None).await;
    let c = gw.client("lgwan-https");
    let ok = c
        .get(gw.url("lgwan-https", "/hello?token=secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok_id = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        ok.text()
            .await
            .unwrap()
            .starts_with("upstream portal saw /hello")
    );
    assert_eq!(up.count(), 1);
    let denied = c
        .get(gw.url("lgwan-https", "/staff/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let denied_id = denied.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let missing = c
        .get(gw.url_at("other.test.localhost", "lgwan-https", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let missing_id = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let Gw { running, pki, .. } = gw;
    running.shutdown().await;
    let recs = records(&dir);
    let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"stop"), "{kinds:?}");

    let allowed = of_request(&recs, &ok_id);
    assert_eq!(allowed[0]["kind"], "access");
    assert_eq!(allowed[0]["decision"], "allow");
    assert_eq!(allowed[0]["route"], "portal");
    assert_eq!(allowed[0]["path"], "/hello");
    assert!(
        allowed[0].get("query").is_none_or(|q| q.is_null()),
        "queries are never recorded"
    );
    // The outcome is in the access record itself when the response ended before the writer
    // took that record (batched mode, most requests), else in an access_result record after
    // it; never in both.
    let outcome = match allowed.as_slice() {
        [access] => *access,
        [access, result] => {
            assert_eq!(result["kind"], "access_result");
            assert!(access.get("status").is_none(), "{access}");
            *result
        }
        more => panic!("one or two records per request: {more:?}"),
    };
    assert_eq!(outcome["status"], 200);
    assert!(outcome["bytes_out"].as_u64().unwrap() > 0);

    let d = of_request(&recs, &denied_id);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["decision"], "deny");
    assert_eq!(d[0]["status"], 401);
    assert_eq!(d[0]["route"], "staff");
    assert!(
        d[0]["rule"].as_str().unwrap().starts_with("lgwan-staff"),
        "{}",
        d[0]
    );
    assert!(!d[0]["policy_version"].as_str().unwrap().is_empty());

    let m = of_request(&recs, &missing_id);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["decision"], "deny");
    assert!(m[0].get("route").is_none_or(|r| r.is_null()));

    // Nothing secret reached the trail.
    let raw: String = recs.iter().map(|r| r.to_string()).collect();
    assert!(
        !raw.contains("secret"),
        "the query's token leaked into the trail"
    );

    let report = sekisho_audit::verify(&dir).unwrap();
    assert!(report.is_ok(), "{report}");
    drop(pki);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_closed_and_the_gateway_recovers_on_its_own() {
    let faults = FaultInjector::new();
    let (gw, up, dir) = setup(Some(faults.clone())).await;
    let c = gw.client("lgwan-https");
    assert_eq!(
        c.get(gw.url("lgwan-https", "/before"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    faults.fail_writes(FaultKind::NoSpace, 0);
    let r = c
        .get(gw.url("lgwan-https", "/during"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        503,
        "fail closed while the trail cannot be written"
    );
    assert!(
        !up.requests().iter().any(|s| s.uri == "/during"),
        "nothing was forwarded without its record"
    );
    let ready = reqwest::get(format!("http://{}/readyz", gw.running.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while failing closed");
    let m = gw.metrics().await;
    assert!(m.contains("sekisho_audit_healthy 0"), "{m}");

    faults.heal();
    // The writer retries on its own; wait for it to report healthy (no fixed sleep).
    let admin = gw.running.admin;
    let mut tries = 0;
    while reqwest::get(format!("http://{admin}/readyz"))
        .await
        .unwrap()
        .status()
        != 200
    {
        tries += 1;
        assert!(tries < 200, "the gateway did not recover");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        c.get(gw.url("lgwan-https", "/after"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let Gw { running, pki, .. } = gw;
    running.shutdown().await;
    let report = sekisho_audit::verify(&dir).unwrap();
    assert!(report.is_ok(), "{report}");
    drop(pki);
}

/// Round robin over two upstreams: each request's recorded outcome names the upstream that
/// actually answered it (the body says which one), not just the route's first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outcome_names_the_upstream_that_answered() {
    let a = echo("a", "127.0.10.96:0").await;
    let b = echo("b", "127.0.10.97:0").await;
    let pki = Pki::new(&[SITE]);
    let dir = pki.path("audit");
    let routes = format!(
        "routes:\n  portal:\n    zone: lgwan\n    hosts: [{SITE}]\n    upstreams: [http://{}, http://{}]\n    access: public\n",
        a.addr, b.addr
    );
    let gw = gateway_extra_with(
        pki,
        "audit:\n  dir: audit\n  durability: strict\n",
        &routes,
        sekisho_gateway::server::StartOptions { audit_faults: None },
    )
    .await;
    let c = gw.client("lgwan-https");
    let mut answers = Vec::new();
    for i in 0..4 {
        let r = c
            .get(gw.url("lgwan-https", &format!("/rr/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let rid = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        answers.push((rid, r.text().await.unwrap()));
    }
    let Gw { running, pki, .. } = gw;
    running.shutdown().await;
    let recs = records(&dir);
    let mut by = std::collections::HashSet::new();
    for (rid, body) in &answers {
        let (name, addr) = if body.starts_with("upstream a ") {
            ("a", a.addr)
        } else {
            ("b", b.addr)
        };
        by.insert(name);
        let outcome = of_request(&recs, rid)
            .into_iter()
            .find(|r| r.get("status").is_some_and(|s| s == 200))
            .unwrap_or_else(|| panic!("no outcome for {rid}: {recs:?}"));
        assert_eq!(outcome["upstream"], format!("http://{addr}"), "{body}");
    }
    assert_eq!(by.len(), 2, "both upstreams answered: {answers:?}");
    drop(pki);
}
