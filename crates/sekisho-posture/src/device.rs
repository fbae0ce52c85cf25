//! The one call the gateway makes per request: certificate → verified device → posture.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::assertion::{AssertionConfig, AssertionConfigError, AssertionError, AssertionVerifier};
use crate::inventory::{Inventory, InventoryError, InventoryStore};
use crate::posture::{Posture, PostureConfig, merge_changes_at, merge_posture};
use crate::trust::{DeviceTrust, DeviceTrustConfig, TrustLoadError};
use crate::{DeviceCertError, VerifiedDevice};

/// The `devices:` section of the gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    /// Device CAs, CRLs, where the device ID is read from.
    pub trust: DeviceTrustConfig,
    /// MDM inventory exports (`.yaml`/`.yml`/`.csv`). Default: none (inventory facts unknown).
    #[serde(default)]
    pub inventory_files: Vec<PathBuf>,
    /// Signed posture assertions. Default: off.
    #[serde(default)]
    pub assertions: Option<AssertionConfig>,
    /// Freshness limits. Default: see [`PostureConfig`].
    #[serde(default)]
    pub posture: PostureConfig,
}

/// Loading the device configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum DevicesLoadError {
    #[error(transparent)]
    Trust(#[from] TrustLoadError),
    #[error("device inventory:\n{0}")]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Assertion(#[from] AssertionConfigError),
}

/// The verdict about the device behind one request.
#[derive(Debug, Clone)]
pub enum DeviceOutcome {
    /// No client certificate on the connection. (A posture assertion without a certificate is
    /// ignored: it cannot be bound to anything.)
    NoCertificate,
    /// A certificate was presented but does not identify a trusted device.
    Rejected(DeviceCertError),
    /// A trusted device, with its posture.
    Verified(Box<DeviceView>),
}

impl DeviceOutcome {
    pub fn device(&self) -> Option<&VerifiedDevice> {
        match self {
            Self::Verified(v) => Some(&v.device),
            _ => None,
        }
    }
    pub fn posture(&self) -> Option<&Posture> {
        match self {
            Self::Verified(v) => Some(&v.posture),
            _ => None,
        }
    }
}

/// A verified device and what is known about it.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub device: VerifiedDevice,
    pub posture: Posture,
    /// Set when an assertion was sent but refused (the posture then ignores it).
    pub assertion_error: Option<AssertionError>,
    /// What the posture was merged from, when no assertion was sent: lets a connection
    /// reuse it while [`DevicePosture::unchanged`] says merging again would give the same.
    pub stamp: Option<PostureStamp>,
}

/// The inputs of one merged posture that can change under it: the inventory snapshot it
/// read and the instants between which the merge gives the same result
/// ([`crate::posture::merge_changes_at`]). The device itself is the connection's and its
/// certificate is checked on every request regardless.
#[derive(Debug, Clone)]
pub struct PostureStamp {
    inventory: Arc<Inventory>,
    from: Timestamp,
    until: Option<Timestamp>,
}

/// Device trust + inventory + assertion verifier, shared by all connections.
#[derive(Debug)]
pub struct DevicePosture {
    trust: Arc<DeviceTrust>,
    inventory: Arc<InventoryStore>,
    assertions: Option<AssertionVerifier>,
    config: PostureConfig,
}

impl DevicePosture {
    /// Load everything named in `config`; any broken file is an error (fail closed at start).
    pub fn load(config: &DevicesConfig) -> Result<Self, DevicesLoadError> {
        let trust = DeviceTrust::load(config.trust.clone())?;
        let inventory = InventoryStore::load(config.inventory_files.clone())?;
        let assertions = config
            .assertions
            .as_ref()
            .map(AssertionVerifier::from_config)
            .transpose()?;
        Ok(Self::new(
            Arc::new(trust),
            Arc::new(inventory),
            assertions,
            config.posture,
        ))
    }

    pub fn new(
        trust: Arc<DeviceTrust>,
        inventory: Arc<InventoryStore>,
        assertions: Option<AssertionVerifier>,
        config: PostureConfig,
    ) -> Self {
        Self {
            trust,
            inventory,
            assertions,
            config,
        }
    }

    pub fn trust(&self) -> &Arc<DeviceTrust> {
        &self.trust
    }
    pub fn inventory(&self) -> &Arc<InventoryStore> {
        &self.inventory
    }
    /// The request header to pass to [`evaluate`](Self::evaluate), if assertions are on.
    pub fn assertion_header(&self) -> Option<&str> {
        self.assertions.as_ref().map(AssertionVerifier::header_name)
    }

    /// Per request: verify the connection's peer certificates against the **current** trust
    /// snapshot (so revocation applies to resumed sessions too), then merge posture.
    pub fn evaluate(
        &self,
        peer_certificates: Option<&[CertificateDer<'_>]>,
        assertion: Option<&str>,
        now: Timestamp,
    ) -> DeviceOutcome {
        let Some(chain) = peer_certificates.filter(|c| !c.is_empty()) else {
            return DeviceOutcome::NoCertificate;
        };
        match self.trust.check(chain, now) {
            Ok(device) => {
                DeviceOutcome::Verified(Box::new(self.with_posture(device, assertion, now)))
            }
            Err(e) => DeviceOutcome::Rejected(e),
        }
    }

    /// Like [`evaluate`](Self::evaluate), reusing the device verified on an earlier request of
    /// the same connection while the trust snapshot is unchanged (see
    /// [`DeviceTrust::check_memo`]). Posture is always merged afresh; a caller that keeps
    /// what it made from the posture calls the two steps itself (`trust().check_memo`, then
    /// [`Self::with_posture`] unless [`Self::unchanged`] says the last merge still holds).
    pub fn evaluate_memo(
        &self,
        peer_certificates: Option<&[CertificateDer<'_>]>,
        previous: Option<&VerifiedDevice>,
        assertion: Option<&str>,
        now: Timestamp,
    ) -> DeviceOutcome {
        let Some(chain) = peer_certificates.filter(|c| !c.is_empty()) else {
            return DeviceOutcome::NoCertificate;
        };
        match self.trust.check_memo(chain, previous, now) {
            Ok(device) => {
                DeviceOutcome::Verified(Box::new(self.with_posture(device, assertion, now)))
            }
            Err(e) => DeviceOutcome::Rejected(e),
        }
    }

    /// Whether merging the same device's posture at `now`, with no assertion, gives exactly
    /// what was merged under `stamp`: the inventory is the snapshot it read and `now` lies
    /// between the merge and the next instant at which a fact's freshness changes.
    pub fn unchanged(&self, stamp: &PostureStamp, now: Timestamp) -> bool {
        self.inventory.is_current(&stamp.inventory)
            && now >= stamp.from
            && stamp.until.is_none_or(|until| now < until)
    }

    /// The posture step of [`evaluate_memo`](Self::evaluate_memo): merge `device`'s posture.
    pub fn with_posture(
        &self,
        device: VerifiedDevice,
        assertion: Option<&str>,
        now: Timestamp,
    ) -> DeviceView {
        let (verified, assertion_error) = match (assertion, &self.assertions) {
            (Some(token), Some(v)) => match v.verify(token, &device, now) {
                Ok(a) => (Some(a), None),
                Err(e) => (None, Some(e)),
            },
            _ => (None, None),
        };
        let inventory = self.inventory.current();
        let posture = merge_posture(
            device.id(),
            inventory.get(device.id()),
            verified.as_ref(),
            &self.config,
            now,
        );
        let stamp = assertion.is_none().then(|| PostureStamp {
            until: merge_changes_at(
                device.id(),
                inventory.get(device.id()),
                None,
                &self.config,
                now,
            ),
            inventory,
            from: now,
        });
        DeviceView {
            device,
            posture,
            assertion_error,
            stamp,
        }
    }

    /// Files a watcher should watch.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut v = self.trust.watched_files();
        v.extend(self.inventory.watched_files());
        v
    }
}
