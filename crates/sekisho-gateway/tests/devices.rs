//! Device certificates and posture in every decision, with real TLS handshakes: the
//! gateway asks for a certificate only on hosts that need one, checks it on every request
//! (so revocation reaches kept-alive connections), and decides on inventory facts.

use crate::common;

use std::sync::Arc;

use common::*;
use sekisho_posture::testkit::{TestDevice, TestPki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn inventory(now: jiff::Timestamp) -> String {
    let seen = now - jiff::SignedDuration::from_hours(1);
    format!(
        r#"devices:
  - device_id: PC-0042
    managed: true
    ownership: corporate
    compliant: true
    last_check_in: "{seen}"
  - device_id: PHONE-7
    managed: false
    ownership: byod
    last_check_in: "{seen}"
"#
    )
}

struct Setup {
    gw: Gw,
    devices: TestPki,
    up: Echo,
}

async fn setup() -> Setup {
    let up = echo("portal", "127.0.10.80:0").await;
    let public = echo("public", "127.0.10.81:0").await;
    let devices = TestPki::new();
    let pki = Pki::new(&[SITE, "other.test.localhost"]);
    std::fs::write(
        pki.path("inventory.yaml"),
        inventory(jiff::Timestamp::now()),
    )
    .unwrap();
    let extra = format!(
        "devices:\n  trust:\n    ca_files: [{}]\n    crl_files: [{}]\n  inventory_files: [inventory.yaml]\naudit:\n  dir: audit\n  durability: strict\n",
        devices.ca_path().display(),
        devices.crl_path().display()
    );
    let routes = format!(
        r#"routes:
  portal:
    zone: lgwan
    hosts: [{SITE}]
    upstreams: [http://{}]
    policy: managed-device
  public:
    zone: lgwan
    hosts: [other.test.localhost]
    upstreams: [http://{}]
    access: public
"#,
        up.addr, public.addr
    );
    Setup {
        gw: gateway_extra(pki, &extra, &routes).await,
        devices,
        up,
    }
}

fn resumption_store() -> Arc<dyn rustls::client::ClientSessionStore> {
    Arc::new(rustls::client::ClientSessionMemoryCache::new(32))
}

/// A kept-alive TLS connection presenting `device` (or no certificate).
async fn connect(
    s: &Setup,
    device: Option<&TestDevice>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    connect_with(s, device, None).await
}

async fn connect_with(
    s: &Setup,
    device: Option<&TestDevice>,
    sessions: Option<Arc<dyn rustls::client::ClientSessionStore>>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in sekisho_gateway::tls::load_certs(&s.gw.pki.path("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(sekisho_gateway::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match device {
        Some(d) => b.with_client_auth_cert(d.chain(), d.key()).unwrap(),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if let Some(store) = sessions {
        cfg.resumption = rustls::client::Resumption::store(store);
    }
    let tcp = tokio::net::TcpStream::connect(s.gw.addr("lgwan-https"))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(rustls_pki_types::ServerName::try_from(SITE).unwrap(), tcp)
        .await
        .unwrap()
}

/// One request on a kept-alive connection; returns status and body.
async fn get(
    conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {SITE}\r\nAccept-Language: en\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + len {
                return (status_of(&text), text[head_end + 4..].to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_managed_device_gets_in_and_loses_access_when_revoked_on_the_same_connection() {
    let s = setup().await;
    let pc = s.devices.device("PC-0042");
    let mut conn = connect(&s, Some(&pc)).await;
    let (status, body) = get(&mut conn, "/work").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.up.count(), 1);

    // Revoke, reload: the kept-alive connection is closed by the gateway …
    s.devices.revoke(&pc);
    s.gw.running.reload().unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), conn.read(&mut buf))
        .await
        .expect("the gateway closes the revoked device's connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed");
    // … and a new connection (which may resume the TLS session, skipping the handshake's
    // certificate check) is refused by the per-request check.
    let mut conn = connect_with(&s, Some(&pc), Some(resumption_store())).await;
    let (status, body) = get(&mut conn, "/work").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("registered device"), "{body}");
    assert_eq!(
        s.up.count(),
        1,
        "the revoked device's request never reached the upstream"
    );
}

#[tokio::test]
async fn a_websocket_is_closed_when_its_device_is_revoked() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.10.82:0")
        .await
        .unwrap();
    let ws_up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let s = setup().await;
    // Point the device route at the websocket upstream.
    let yaml = std::fs::read_to_string(&s.gw.config_path)
        .unwrap()
        .replace(&s.up.addr.to_string(), &ws_up.to_string());
    std::fs::write(&s.gw.config_path, yaml).unwrap();
    s.gw.running.reload().unwrap();

    let pc = s.devices.device("PC-0042");
    let tls = connect(&s, Some(&pc)).await;
    let url = format!("wss://{SITE}:{}/live", s.gw.addr("lgwan-https").port());
    let (mut ws, resp) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap().to_text().unwrap(), "ping");

    s.devices.revoke(&pc);
    s.gw.running.reload().unwrap();
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) if m.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the websocket was closed within 5 s of the revocation"
    );
    // An auditor sees the allow that opened it, then the deny that closed it: the same
    // request, decided again on the new trust (strict mode: on disk before the close).
    let recs = records(&s.gw.pki.path("audit"));
    let live: Vec<_> = recs
        .iter()
        .filter(|r| r["kind"] == "access" && r["path"] == "/live")
        .collect();
    assert_eq!(live.len(), 2, "{live:#?}");
    assert_eq!(live[0]["decision"], "allow");
    assert_eq!(live[1]["decision"], "deny", "{}", live[1]);
    assert_eq!(live[1]["request_id"], live[0]["request_id"]);
    assert_eq!(
        live[1]["device"]["posture"][0]["value"], "device_cert_revoked",
        "{}",
        live[1]
    );
    assert_eq!(live[1]["user"], live[0]["user"]);
    // The revoked certificate is no identity any more, but which one it was stays on record.
    assert_eq!(live[1]["device"]["id"], "");
    assert_eq!(
        live[1]["device"]["fingerprint"], live[0]["device"]["fingerprint"],
        "{}",
        live[1]
    );
    assert!(
        live[1]["reasons"].as_array().is_some_and(|r| !r.is_empty()),
        "the withdrawal says why: {}",
        live[1]
    );
}

#[tokio::test]
async fn an_unmanaged_device_and_no_certificate_are_refused_with_reasons() {
    let s = setup().await;
    let phone = s.devices.device("PHONE-7");
    let mut conn = connect(&s, Some(&phone)).await;
    let (status, body) = get(&mut conn, "/").await;
    assert_eq!(status, 403, "{body}");
    let mut conn = connect(&s, None).await;
    let (status, body) = get(&mut conn, "/").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("registered device"), "{body}");
    // A certificate from another CA proves nothing.
    let stranger = s.devices.wrong_ca("PC-0042");
    let mut conn = connect(&s, Some(&stranger)).await;
    let (status, _) = get(&mut conn, "/").await;
    assert_eq!(status, 403);
    assert_eq!(s.up.count(), 0);
}

/// What an auditor reads about the device: its ID and certificate fingerprint, the
/// certificate's state, and the posture facts the route's policy tests with their age, and
/// when the device last checked in — on every request of a kept-alive connection, allowed
/// or denied. What the inventory also knows but the policy does not test (ownership,
/// compliance) is not the decision's evidence and is not on record.
#[tokio::test]
async fn the_access_record_names_the_device_and_each_posture_fact_with_its_age() {
    let s = setup().await;
    let pc = s.devices.device("PC-0042");
    let mut conn = connect(&s, Some(&pc)).await;
    assert_eq!(get(&mut conn, "/one").await.0, 200);
    assert_eq!(get(&mut conn, "/two").await.0, 200);
    // The MDM now says the PC is not managed: the same connection's next record says so.
    let inv = inventory(jiff::Timestamp::now()).replacen("managed: true", "managed: false", 1);
    std::fs::write(s.gw.pki.path("inventory.yaml"), inv).unwrap();
    s.gw.running.reload().unwrap();
    assert_eq!(get(&mut conn, "/again").await.0, 403);
    let phone = s.devices.device("PHONE-7");
    let mut conn = connect(&s, Some(&phone)).await;
    assert_eq!(get(&mut conn, "/three").await.0, 403);

    let recs = records(&s.gw.pki.path("audit"));
    let access: Vec<_> = recs.iter().filter(|r| r["kind"] == "access").collect();
    assert_eq!(access.len(), 4, "{recs:#?}");
    let facts = |r: &serde_json::Value| -> Vec<(String, String, Option<u64>)> {
        r["device"]["posture"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap().to_owned(),
                    f["value"].as_str().unwrap().to_owned(),
                    f["age_secs"].as_u64(),
                )
            })
            .collect()
    };
    for (r, path) in access[..2].iter().zip(["/one", "/two"]) {
        assert_eq!(r["path"], path);
        assert_eq!(r["decision"], "allow");
        assert_eq!(r["device"]["id"], "PC-0042");
        assert_eq!(
            r["device"]["fingerprint"].as_str().unwrap().len(),
            64,
            "{r}"
        );
        let f = facts(r);
        let names: Vec<&str> = f.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["certificate", "managed", "last_check_in"], "{r}");
        assert_eq!((f[0].1.as_str(), f[0].2), ("verified", None));
        assert_eq!(f[1].1, "true");
        // The inventory saw the PC an hour before the test started.
        for (name, _, age) in &f[1..] {
            let age = age.unwrap_or_else(|| panic!("{name} has no age: {r}"));
            assert!((3600..3700).contains(&age), "{name} is {age} s old: {r}");
        }
    }
    assert_eq!(access[2]["path"], "/again");
    assert_eq!(access[2]["decision"], "deny");
    assert!(
        facts(access[2]).contains(&("managed".into(), "false".into(), facts(access[2])[1].2)),
        "{}",
        access[2]
    );
    assert_eq!(access[3]["decision"], "deny");
    assert_eq!(access[3]["device"]["id"], "PHONE-7");
    let f = facts(access[3]);
    assert!(
        f.contains(&("managed".into(), "false".into(), f[1].2)),
        "{f:?}"
    );
    assert!(
        !f.iter().any(|(n, _, _)| n == "ownership"),
        "the policy does not test ownership: {f:?}"
    );
}

#[tokio::test]
async fn only_hosts_that_need_a_device_ask_for_a_certificate() {
    let s = setup().await;
    let snap = s.gw.running.gateway.snapshot.load();
    let tls = &snap.server_tls["lgwan-https"];
    assert!(
        tls.for_sni(Some(SITE)).1,
        "the policy route's host asks for a device certificate"
    );
    assert!(
        !tls.for_sni(Some("other.test.localhost")).1,
        "the public host never prompts"
    );
    assert!(!tls.for_sni(None).1);
}

#[tokio::test]
async fn a_posture_change_in_the_inventory_is_seen_on_the_next_request() {
    let s = setup().await;
    let pc = s.devices.device("PC-0042");
    let mut conn = connect(&s, Some(&pc)).await;
    assert_eq!(get(&mut conn, "/a").await.0, 200);
    // The MDM export now says the PC is no longer managed (e.g. wiped and re-enrolled).
    let inv = inventory(jiff::Timestamp::now()).replacen("managed: true", "managed: false", 1);
    std::fs::write(s.gw.pki.path("inventory.yaml"), inv).unwrap();
    s.gw.running.reload().unwrap();
    let mut conn = connect(&s, Some(&pc)).await;
    let (status, body) = get(&mut conn, "/a").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(s.up.count(), 1);
}
