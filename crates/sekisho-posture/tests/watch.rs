//! The optional watcher reloads trust and inventory when their files change on disk.
//! Waits on the reload notification (with a generous timeout), never on a fixed sleep.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use sekisho_posture::inventory::InventoryStore;
use sekisho_posture::testkit::TestPki;
use sekisho_posture::watch::{ReloadEvent, watch};
use sekisho_posture::{DevicePosture, DeviceTrust, PostureConfig};

#[tokio::test]
async fn crl_and_inventory_changes_are_picked_up() {
    let pki = TestPki::at("2026-11-23T00:00:00Z".parse().unwrap());
    let now: Timestamp = "2026-11-23T01:00:00Z".parse().unwrap();
    let inv = pki.dir().join("devices.csv");
    std::fs::write(
        &inv,
        "device_id,compliant,last_check_in\nPC-1,true,2026-11-23T00:30:00Z\n",
    )
    .unwrap();
    let trust = Arc::new(DeviceTrust::load(pki.trust_config()).unwrap());
    let store = Arc::new(InventoryStore::load(vec![inv.clone()]).unwrap());
    let posture = Arc::new(DevicePosture::new(
        trust.clone(),
        store.clone(),
        None,
        PostureConfig::default(),
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = watch(posture.clone(), Duration::from_millis(50), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();

    let dev = pki.device("PC-1");
    assert!(trust.check(&dev.chain(), now).is_ok());
    pki.revoke(&dev);
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(ReloadEvent::TrustReloaded(g)) = rx.recv().await {
                break g;
            }
        }
    })
    .await
    .expect("trust reload after the CRL changed");
    assert_eq!(event, trust.generation());
    assert_eq!(
        trust.check(&dev.chain(), now).unwrap_err().code(),
        "device_cert_revoked"
    );

    std::fs::write(
        &inv,
        "device_id,compliant,last_check_in\nPC-1,false,2026-11-23T00:45:00Z\nPC-2,true,\n",
    )
    .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(ReloadEvent::InventoryReloaded(n)) = rx.recv().await {
                break n;
            }
        }
    })
    .await
    .expect("inventory reload");
    assert_eq!(n, 2);
    assert_eq!(store.current().get("PC-1").unwrap().compliant, Some(false));

    std::fs::write(&inv, "device_id,compliant\nPC-1,perhaps\n").unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(ReloadEvent::InventoryFailed(m)) = rx.recv().await {
                break m;
            }
        }
    })
    .await
    .expect("failed inventory reload reported");
    assert!(
        msg.contains("devices.csv:2") && msg.contains("perhaps"),
        "{msg}"
    );
    assert_eq!(store.current().len(), 2, "old inventory kept");
}
