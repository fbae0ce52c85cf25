//! The one call the gateway makes per request: certificate → verified device → posture.

use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::assertion::{AssertionConfig, AssertionConfigError, AssertionError, AssertionVerifier};
use crate::inventory::{InventoryError, InventoryStore};
use crate::posture::{Posture, PostureConfig, merge_posture};
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
            Ok(device) => self.with_posture(device, assertion, now),
            Err(e) => DeviceOutcome::Rejected(e),
        }
    }

    /// Like [`evaluate`](Self::evaluate), reusing the device verified on an earlier request of
    /// the same connection while the trust snapshot is unchanged (see
    /// [`DeviceTrust::check_memo`]). Posture is always merged afresh.
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
            Ok(device) => self.with_posture(device, assertion, now),
            Err(e) => DeviceOutcome::Rejected(e),
        }
    }

    fn with_posture(
        &self,
        device: VerifiedDevice,
        assertion: Option<&str>,
        now: Timestamp,
    ) -> DeviceOutcome {
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
        DeviceOutcome::Verified(Box::new(DeviceView {
            device,
            posture,
            assertion_error,
        }))
    }

    /// Files a watcher should watch.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut v = self.trust.watched_files();
        v.extend(self.inventory.watched_files());
        v
    }
}
