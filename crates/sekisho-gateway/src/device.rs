//! Pipeline step 4: the device. The client certificate the TLS layer accepted is checked
//! again on every request (so revocation reaches resumed TLS sessions and long-lived
//! connections), posture sources are merged, and the result is turned into the policy's
//! input facts. Unknown stays unknown: it never becomes an allow.

use std::sync::Mutex;

use jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use sekisho_policy as policy;
use sekisho_posture::{DeviceOutcome, DevicePosture, VerifiedDevice};

/// What the connection presented at the TLS handshake, and the last verified device
/// (a memo that lets the per-request check skip signature work while trust is unchanged).
///
/// The memo is keyed by the snapshot generation: every reload builds new trust material
/// whose own counters start afresh, so a memo from an older snapshot must never count.
#[derive(Debug, Default)]
pub struct ConnDevice {
    pub chain: Option<Vec<CertificateDer<'static>>>,
    pub memo: Mutex<Option<(u64, VerifiedDevice)>>,
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
    pub fn none() -> DeviceView {
        DeviceView {
            input: policy::Device::UNKNOWN,
            status: "none",
            id: None,
            fingerprint: None,
        }
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
) -> DeviceView {
    let chain = conn.chain.as_deref();
    // Copied out (cheap: the certificate facts and chain are shared) so that the lock is not
    // held while a chain or an assertion is verified: HTTP/2 streams of one connection run
    // as tasks of their own and would queue on it.
    let previous = conn
        .memo
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .filter(|(g, _)| *g == generation)
        .map(|(_, d)| d.clone());
    let outcome = posture.evaluate_memo(chain, previous.as_ref(), assertion, now);
    match outcome {
        DeviceOutcome::NoCertificate => DeviceView::none(),
        DeviceOutcome::Rejected(err) => {
            *conn.memo.lock().unwrap_or_else(|p| p.into_inner()) = None;
            DeviceView {
                input: policy::Device {
                    certificate: policy::Certificate::Invalid {
                        reason: err.code().to_owned(),
                    },
                    ..policy::Device::UNKNOWN
                },
                status: err.code(),
                id: None,
                fingerprint: None,
            }
        }
        DeviceOutcome::Verified(view) => {
            let d = &view.device;
            let p = &view.posture;
            *conn.memo.lock().unwrap_or_else(|p| p.into_inner()) = Some((generation, d.clone()));
            let input = policy::Device {
                certificate: policy::Certificate::Present {
                    id: d.id().to_owned(),
                    fingerprint: d.fingerprint_sha256().to_owned(),
                },
                managed: fact(&p.managed, |v| *v),
                ownership: fact(&p.ownership, |o| match o {
                    sekisho_posture::inventory::Ownership::Corporate => {
                        policy::Ownership::Corporate
                    }
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
            DeviceView {
                input,
                status: "verified",
                id: Some(d.id().to_owned()),
                fingerprint: Some(d.fingerprint_sha256().to_owned()),
            }
        }
    }
}
