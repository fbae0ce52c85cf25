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

/// How operators and Kubernetes publish a new CRL: behind a symlink. The file the
/// configuration names never changes; a link on the way to it does.
#[derive(Clone, Copy, Debug)]
enum Publish {
    /// `crl.pem -> crl-vN.pem`, replaced like `ln -sfn` (a new link renamed over the old).
    Symlink,
    /// A ConfigMap/Secret volume: `crl.pem -> ..data/crl.pem`, `..data -> ..<version>/`,
    /// updated by renaming a new `..data` link over the old one, then removing the old folder.
    KubernetesData,
}

async fn revocation_published_behind_a_symlink_is_picked_up(how: Publish) {
    use std::os::unix::fs::symlink;
    let pki = TestPki::at("2026-11-23T00:00:00Z".parse().unwrap());
    let now: Timestamp = "2026-11-23T01:00:00Z".parse().unwrap();
    let dev = pki.device("PC-1");
    let pub_dir = pki.dir().join("published");
    std::fs::create_dir(&pub_dir).unwrap();
    let named = pub_dir.join("crl.pem");
    let empty_crl = std::fs::read(pki.crl_path()).unwrap();
    match how {
        Publish::Symlink => {
            std::fs::write(pub_dir.join("crl-v1.pem"), &empty_crl).unwrap();
            symlink("crl-v1.pem", &named).unwrap();
        }
        Publish::KubernetesData => {
            std::fs::create_dir(pub_dir.join("..v1")).unwrap();
            std::fs::write(pub_dir.join("..v1/crl.pem"), &empty_crl).unwrap();
            symlink("..v1", pub_dir.join("..data")).unwrap();
            symlink("..data/crl.pem", &named).unwrap();
        }
    }
    let mut cfg = pki.trust_config();
    cfg.crl_files = vec![named.clone()];
    let trust = Arc::new(DeviceTrust::load(cfg).unwrap());
    let store = Arc::new(InventoryStore::load(vec![]).unwrap());
    let posture = Arc::new(DevicePosture::new(
        trust.clone(),
        store,
        None,
        PostureConfig::default(),
    ));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = watch(posture, Duration::from_millis(50), move |e| {
        let _ = tx.send(e);
    })
    .unwrap();
    assert!(trust.check(&dev.chain(), now).is_ok());

    // The PKI writes its CRL elsewhere (not watched); it is published by swapping a link.
    pki.revoke(&dev);
    let revoked_crl = std::fs::read(pki.crl_path()).unwrap();
    match how {
        Publish::Symlink => {
            std::fs::write(pub_dir.join("crl-v2.pem"), &revoked_crl).unwrap();
            symlink("crl-v2.pem", pub_dir.join(".crl.pem.tmp")).unwrap();
            std::fs::rename(pub_dir.join(".crl.pem.tmp"), &named).unwrap();
        }
        Publish::KubernetesData => {
            std::fs::create_dir(pub_dir.join("..v2")).unwrap();
            std::fs::write(pub_dir.join("..v2/crl.pem"), &revoked_crl).unwrap();
            symlink("..v2", pub_dir.join("..data_tmp")).unwrap();
            std::fs::rename(pub_dir.join("..data_tmp"), pub_dir.join("..data")).unwrap();
            std::fs::remove_dir_all(pub_dir.join("..v1")).unwrap();
        }
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(ReloadEvent::TrustReloaded(_)) = rx.recv().await {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no trust reload after the {how:?} swap"));
    assert_eq!(
        trust.check(&dev.chain(), now).unwrap_err().code(),
        "device_cert_revoked"
    );
}

#[tokio::test]
async fn crl_swapped_with_ln_sfn_is_picked_up() {
    revocation_published_behind_a_symlink_is_picked_up(Publish::Symlink).await;
}

#[tokio::test]
async fn crl_in_a_kubernetes_volume_is_picked_up() {
    revocation_published_behind_a_symlink_is_picked_up(Publish::KubernetesData).await;
}
