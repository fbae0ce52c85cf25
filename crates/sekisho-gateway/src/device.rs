//! Pipeline step 4: the device. The client certificate the TLS layer accepted is checked
//! again on every request (so revocation reaches resumed TLS sessions and long-lived
//! connections), posture sources are merged, and the result is turned into the policy's
//! input facts. Unknown stays unknown: it never becomes an allow.

use std::sync::{Arc, LazyLock, Mutex};

use jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use sekisho_policy as policy;
use sekisho_posture::{DevicePosture, PostureStamp, VerifiedDevice};

/// What the connection presented at the TLS handshake, and the last verified device
/// (a memo that lets the per-request check skip signature work while trust is unchanged).
///
/// The memo is keyed by the snapshot generation: every reload builds new trust material
/// whose own counters start afresh, so a memo from an older snapshot must never count.
#[derive(Debug, Default)]
pub struct ConnDevice {
    pub chain: Option<Vec<CertificateDer<'static>>>,
    pub memo: Mutex<Option<Memo>>,
}

/// A connection's last device step.
#[derive(Debug)]
pub struct Memo {
    generation: u64,
    device: VerifiedDevice,
    /// The view made from it and what its posture was merged from, when no assertion was
    /// sent. Why: merging posture and turning it into policy input (a dozen facts, their
    /// strings copied) cost ≈ 3,500 instructions per request (callgrind, 2026-12-05) and
    /// gives the same result until the inventory is reloaded or a fact's freshness changes
    /// — which [`DevicePosture::unchanged`] tells exactly. The certificate is still checked
    /// against the current trust on every request first.
    view: Option<(PostureStamp, Arc<DeviceView>)>,
}
/// The device as seen by one request: policy input plus a summary for logs and audit.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    pub input: policy::Device,
    /// Stable code: `none`, `verified`, or the certificate error code.
    pub status: &'static str,
    pub id: Option<String>,
    pub fingerprint: Option<String>,
}

impl DeviceView {
    /// No certificate (or no `devices:` section): one shared value.
    pub fn none() -> Arc<DeviceView> {
        static NONE: LazyLock<Arc<DeviceView>> = LazyLock::new(|| {
            Arc::new(DeviceView {
                input: policy::Device::UNKNOWN,
                status: "none",
                id: None,
                fingerprint: None,
            })
        });
        NONE.clone()
    }
}

fn fact<T, U>(f: &sekisho_posture::Fact<T>, map: impl FnOnce(&T) -> U) -> policy::Fact<U> {
    match f {
        sekisho_posture::Fact::Known {
            value, observed_at, ..
        } => policy::Fact::known(map(value), *observed_at),
        sekisho_posture::Fact::Unknown { .. } => policy::Fact::Unknown,
    }
}

/// Runs the device step for one request.
pub fn evaluate(
    posture: &DevicePosture,
    generation: u64,
    conn: &ConnDevice,
    assertion: Option<&str>,
    now: Timestamp,
) -> Arc<DeviceView> {
    let Some(chain) = conn.chain.as_deref().filter(|c| !c.is_empty()) else {
        return DeviceView::none();
    };
    // Copied out (cheap: the certificate facts and chain are shared) so that the lock is not
    // held while a chain or an assertion is verified: HTTP/2 streams of one connection run
    // as tasks of their own and would queue on it.
    let previous = conn
        .memo
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|m| m.generation == generation)
        .map(|m| m.device.clone());
    let device = match posture.trust().check_memo(chain, previous.as_ref(), now) {
        Ok(device) => device,
        Err(err) => {
            *conn.memo.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Arc::new(DeviceView {
                input: policy::Device {
                    certificate: policy::Certificate::Invalid {
                        reason: err.code().to_owned(),
                    },
                    ..policy::Device::UNKNOWN
                },
                status: err.code(),
                // Not an identity (nothing about it was verified), but which certificate was
                // presented: what an auditor follows a lost or revoked device by.
                id: None,
                fingerprint: chain
                    .first()
                    .map(|c| sekisho_posture::identity::fingerprint_sha256(c)),
            });
        }
    };
    if assertion.is_none()
        && let Some(m) = conn
            .memo
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|m| m.generation == generation)
        && let Some((stamp, view)) = &m.view
        && posture.unchanged(stamp, now)
    {
        return view.clone();
    }
    let verified = posture.with_posture(device, assertion, now);
    let d = &verified.device;
    let p = &verified.posture;
    let input = policy::Device {
        certificate: policy::Certificate::Present {
            id: d.id().to_owned(),
            fingerprint: d.fingerprint_sha256().to_owned(),
        },
        managed: fact(&p.managed, |v| *v),
        ownership: fact(&p.ownership, |o| match o {
            sekisho_posture::inventory::Ownership::Corporate => policy::Ownership::Corporate,
            sekisho_posture::inventory::Ownership::Byod => policy::Ownership::Byod,
        }),
        compliant: fact(&p.compliant, |v| *v),
        os: fact(&p.os, |v| v.to_ascii_lowercase()),
        os_version: fact(&p.os_version, Clone::clone),
        disk_encryption: fact(&p.disk_encryption, |v| *v),
        screen_lock: fact(&p.screen_lock, |v| *v),
        firewall: fact(&p.firewall, |v| *v),
        antivirus: fact(&p.antivirus, |v| *v),
        edr: fact(&p.edr, |v| *v),
        last_check_in: fact(&p.last_check_in, |v| *v),
        tags: fact(&p.tags, Clone::clone),
    };
    let view = Arc::new(DeviceView {
        input,
        status: "verified",
        id: Some(d.id().to_owned()),
        fingerprint: Some(d.fingerprint_sha256().to_owned()),
    });
    *conn.memo.lock().unwrap_or_else(|p| p.into_inner()) = Some(Memo {
        generation,
        view: verified.stamp.map(|s| (s, view.clone())),
        device: verified.device,
    });
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;
    use sekisho_posture::DevicesConfig;
    use sekisho_posture::testkit::TestPki;

    fn inventory(managed: bool, seen: Timestamp) -> String {
        format!(
            "devices:\n  - device_id: PC-0042\n    managed: {managed}\n    compliant: true\n    last_check_in: \"{seen}\"\n"
        )
    }

    /// A connection reuses its device view only while merging posture again would give the
    /// same: a fact going stale, an inventory reload (the file watcher's path, which makes no
    /// new snapshot) or another snapshot makes it again, and a revoked certificate is refused
    /// with a view in hand.
    #[test]
    fn a_connection_reuses_its_device_view_only_while_it_is_what_merging_would_give() {
        let pki = TestPki::new();
        let now = pki.now();
        let seen = now - SignedDuration::from_hours(1);
        let file = pki.dir().join("inventory.yaml");
        std::fs::write(&file, inventory(true, seen)).unwrap();
        let posture = DevicePosture::load(&DevicesConfig {
            trust: pki.trust_config(),
            inventory_files: vec![file.clone()],
            assertions: None,
            posture: Default::default(),
        })
        .unwrap();
        let pc = pki.device("PC-0042");
        let conn = ConnDevice {
            chain: Some(pc.chain()),
            memo: Mutex::default(),
        };
        let managed = |v: &DeviceView| v.input.managed.value().copied();

        let first = evaluate(&posture, 1, &conn, None, now);
        assert_eq!((first.status, managed(&first)), ("verified", Some(true)));
        let again = evaluate(&posture, 1, &conn, None, now + SignedDuration::from_secs(1));
        assert!(Arc::ptr_eq(&first, &again), "the same view, not made again");

        // Past the inventory's freshness limit (72 h by default) the facts are unknown.
        let stale_at = seen + SignedDuration::from_hours(72) + SignedDuration::from_secs(1);
        let stale = evaluate(&posture, 1, &conn, None, stale_at);
        assert_eq!((stale.status, managed(&stale)), ("verified", None));

        // The MDM export changes and the watcher reloads the inventory.
        std::fs::write(&file, inventory(false, seen)).unwrap();
        posture.inventory().reload().unwrap();
        let after = evaluate(&posture, 1, &conn, None, now + SignedDuration::from_secs(2));
        assert_eq!(managed(&after), Some(false));
        let next = evaluate(&posture, 2, &conn, None, now + SignedDuration::from_secs(3));
        assert!(
            !Arc::ptr_eq(&after, &next),
            "another snapshot makes it again"
        );

        // Revoked: refused on the next request, whatever was remembered.
        pki.revoke(&pc);
        posture.trust().reload().unwrap();
        let refused = evaluate(&posture, 2, &conn, None, now + SignedDuration::from_secs(4));
        assert_ne!(refused.status, "verified");
        assert_eq!(managed(&refused), None);
    }
}
