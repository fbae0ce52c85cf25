//! Device trust: the device CAs and CRLs, as a rustls client-certificate verifier for the
//! handshake and as a per-request check.
//!
//! The snapshot (verifier + revoked serials) is rebuilt off the request path by
//! [`DeviceTrust::reload`] and swapped in atomically; a broken file keeps the old snapshot.
//! The handshake verifier alone is not enough: a resumed TLS session carries the client
//! certificate from the first handshake without re-running the verifier, so the gateway
//! calls [`DeviceTrust::check`] on **every request** with the connection's peer certificates.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use jiff::Timestamp;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use serde::Deserialize;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::identity::{
    DeviceIdSource, device_id, normalize_serial_bytes, normalize_serial_text, parse_cert,
};
use crate::{DeviceCertError, VerifiedDevice};

/// Device trust configuration (the `devices.trust` part of the gateway configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceTrustConfig {
    /// PEM files with one or more device CA certificates (trust anchors). Required, non-empty.
    pub ca_files: Vec<PathBuf>,
    /// CRL files (PEM or DER), usually one per device CA. Default: none (no revocation).
    #[serde(default)]
    pub crl_files: Vec<PathBuf>,
    /// Where the device ID is read from. Default: SAN URI with prefix `urn:sekisho:device:`.
    #[serde(default)]
    pub device_id: DeviceIdSource,
    /// Accept devices whose issuing CA has no CRL configured. Default: false (fail closed).
    /// Only relevant when `crl_files` is non-empty.
    #[serde(default)]
    pub allow_unknown_revocation_status: bool,
    /// Reject everything when a CRL's `nextUpdate` has passed. Default: false.
    #[serde(default)]
    pub enforce_crl_expiry: bool,
}

impl DeviceTrustConfig {
    /// A configuration with the given CA files and defaults elsewhere.
    pub fn new(ca_files: Vec<PathBuf>) -> Self {
        Self {
            ca_files,
            crl_files: Vec::new(),
            device_id: DeviceIdSource::default(),
            allow_unknown_revocation_status: false,
            enforce_crl_expiry: false,
        }
    }

    /// Every file a watcher should watch to keep this trust fresh.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.ca_files
            .iter()
            .chain(&self.crl_files)
            .cloned()
            .collect()
    }
}

/// A device CA or CRL file could not be used. The previous snapshot (if any) stays in force.
#[derive(Debug, thiserror::Error)]
pub enum TrustLoadError {
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("device trust: {0}")]
    Config(String),
    #[error("device trust: building the client certificate verifier failed: {0}")]
    Verifier(#[from] VerifierBuilderError),
}

fn file_err(path: &Path, message: impl Into<String>) -> TrustLoadError {
    TrustLoadError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// One immutable view of the trust configuration.
pub struct TrustSnapshot {
    verifier: Arc<dyn ClientCertVerifier>,
    /// (issuer name DER, normalised serial) of every revoked certificate.
    revoked: HashSet<(Vec<u8>, String)>,
    revoked_serials: HashSet<String>,
    id_source: DeviceIdSource,
    generation: u64,
    ca_count: usize,
    crl_count: usize,
}

impl std::fmt::Debug for TrustSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSnapshot")
            .field("generation", &self.generation)
            .field("ca_count", &self.ca_count)
            .field("crl_count", &self.crl_count)
            .field("revoked", &self.revoked_serials.len())
            .finish_non_exhaustive()
    }
}

impl TrustSnapshot {
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }
    pub fn revoked_count(&self) -> usize {
        self.revoked_serials.len()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TrustLoadError> {
    std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

fn load_cas(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustLoadError> {
    let bytes = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "contains no CERTIFICATE block"));
    }
    for c in &certs {
        parse_cert(c).map_err(|e| file_err(path, e.to_string()))?;
    }
    Ok(certs)
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustLoadError> {
    let bytes = read(path)?;
    let crls: Vec<_> =
        if bytes.starts_with(b"-----BEGIN") || bytes.iter().take(64).all(u8::is_ascii) {
            CertificateRevocationListDer::pem_slice_iter(&bytes)
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(path, format!("not a PEM CRL file: {e}")))?
        } else {
            vec![CertificateRevocationListDer::from(bytes)]
        };
    if crls.is_empty() {
        return Err(file_err(path, "contains no X509 CRL block"));
    }
    Ok(crls)
}

/// Build a fresh snapshot from the files named in `config`.
pub fn build_snapshot(
    config: &DeviceTrustConfig,
    generation: u64,
) -> Result<TrustSnapshot, TrustLoadError> {
    if config.ca_files.is_empty() {
        return Err(TrustLoadError::Config(
            "ca_files is empty: name at least one device CA".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    let mut ca_count = 0;
    for path in &config.ca_files {
        for ca in load_cas(path)? {
            roots
                .add(ca)
                .map_err(|e| file_err(path, format!("not usable as a trust anchor: {e}")))?;
            ca_count += 1;
        }
    }
    let mut crls = Vec::new();
    let mut revoked = HashSet::new();
    let mut revoked_serials = HashSet::new();
    for path in &config.crl_files {
        for crl in load_crls(path)? {
            let (_, parsed) = CertificateRevocationList::from_der(&crl)
                .map_err(|e| file_err(path, format!("not an X.509 CRL: {e}")))?;
            for rc in parsed.iter_revoked_certificates() {
                let serial = normalize_serial_bytes(rc.raw_serial());
                revoked.insert((parsed.issuer().as_raw().to_vec(), serial.clone()));
                revoked_serials.insert(serial);
            }
            crls.push(crl);
        }
    }
    let crl_count = crls.len();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        // A certificate is optional at the handshake: browser login and public routes work
        // without one; the policy decides where a device is required.
        .allow_unauthenticated();
    if !crls.is_empty() {
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
        if config.allow_unknown_revocation_status {
            builder = builder.allow_unknown_revocation_status();
        }
        if config.enforce_crl_expiry {
            builder = builder.enforce_revocation_expiration();
        }
    }
    let verifier = builder.build()?;
    Ok(TrustSnapshot {
        verifier,
        revoked,
        revoked_serials,
        id_source: config.device_id.clone(),
        generation,
        ca_count,
        crl_count,
    })
}

fn map_rustls_error(err: rustls::Error, facts: &crate::identity::CertFacts) -> DeviceCertError {
    let detail = err.to_string();
    match err {
        rustls::Error::InvalidCertificate(ce) => match ce {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                DeviceCertError::Expired {
                    not_after: facts.not_after,
                }
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                DeviceCertError::NotYetValid {
                    not_before: facts.not_before,
                }
            }
            CertificateError::Revoked => DeviceCertError::Revoked {
                serial: facts.serial_hex.clone(),
            },
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                DeviceCertError::UnknownCa { detail }
            }
            CertificateError::BadEncoding => DeviceCertError::Malformed { detail },
            CertificateError::UnknownRevocationStatus
            | CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => {
                DeviceCertError::RevocationUnknown { detail }
            }
            _ => DeviceCertError::Rejected { detail },
        },
        rustls::Error::InvalidCertRevocationList(_) => {
            DeviceCertError::RevocationUnknown { detail }
        }
        _ => DeviceCertError::Rejected { detail },
    }
}

/// Check `chain` (end entity first) against one snapshot at time `now`.
pub fn check_with(
    snapshot: &TrustSnapshot,
    chain: &[CertificateDer<'_>],
    now: Timestamp,
) -> Result<VerifiedDevice, DeviceCertError> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(DeviceCertError::Malformed {
            detail: "empty certificate chain".into(),
        });
    };
    let facts = parse_cert(end_entity)?;
    // Our own validity and revocation checks come first so each failure gets its precise reason.
    if now > facts.not_after {
        return Err(DeviceCertError::Expired {
            not_after: facts.not_after,
        });
    }
    if now < facts.not_before {
        return Err(DeviceCertError::NotYetValid {
            not_before: facts.not_before,
        });
    }
    let unix = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now.as_second()).unwrap_or(0),
    ));
    snapshot
        .verifier
        .verify_client_cert(end_entity, intermediates, unix)
        .map_err(|e| map_rustls_error(e, &facts))?;
    if snapshot
        .revoked
        .contains(&(facts.issuer_raw.clone(), facts.serial_hex.clone()))
    {
        return Err(DeviceCertError::Revoked {
            serial: facts.serial_hex,
        });
    }
    let id = device_id(&facts, &snapshot.id_source)?;
    Ok(VerifiedDevice {
        id,
        facts: std::sync::Arc::new(facts),
        chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
        verified_at: now,
        trust_generation: snapshot.generation,
    })
}

/// The reloadable device trust: holds the current [`TrustSnapshot`] and swaps it on reload.
///
/// Cheap to share (`Arc<DeviceTrust>`); reads are lock-free.
pub struct DeviceTrust {
    config: ArcSwap<DeviceTrustConfig>,
    current: ArcSwap<TrustSnapshot>,
    next_generation: AtomicU64,
    changed: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for DeviceTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTrust")
            .field("current", &*self.current.load())
            .finish_non_exhaustive()
    }
}

impl DeviceTrust {
    /// Load the CA and CRL files. Fails (and nothing should be served) if any is unusable.
    pub fn load(config: DeviceTrustConfig) -> Result<Self, TrustLoadError> {
        let snapshot = build_snapshot(&config, 1)?;
        let (changed, _) = tokio::sync::watch::channel(1);
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            current: ArcSwap::from_pointee(snapshot),
            next_generation: AtomicU64::new(2),
            changed,
        })
    }

    /// Re-read the same files (call from a file watcher). On error the old snapshot stays.
    /// Returns the new generation.
    pub fn reload(&self) -> Result<u64, TrustLoadError> {
        let config = self.config.load_full();
        self.swap(&config)
    }

    /// Replace the configuration (gateway configuration reload). On error nothing changes.
    pub fn reconfigure(&self, config: DeviceTrustConfig) -> Result<u64, TrustLoadError> {
        let generation = self.swap(&config)?;
        self.config.store(Arc::new(config));
        Ok(generation)
    }

    fn swap(&self, config: &DeviceTrustConfig) -> Result<u64, TrustLoadError> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let snapshot = build_snapshot(config, generation)?;
        self.current.store(Arc::new(snapshot));
        self.changed.send_replace(generation);
        Ok(generation)
    }

    /// The verifier to put into the rustls `ServerConfig` of listeners that accept devices.
    ///
    /// Server configs built with it keep it until they are rebuilt; the per-request
    /// [`check`](Self::check) always uses the newest snapshot.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.load().verifier.clone()
    }

    /// A handshake verifier that **defers** every trust decision to the per-request check:
    /// it still sends the device CA names as hints and still makes the client prove it holds
    /// the certificate's private key (handshake signature), but it accepts an expired, revoked,
    /// unknown-CA or malformed certificate so the request reaches the gateway, where
    /// [`check`](Self::check) names the precise reason and the staff member gets a page in
    /// Japanese instead of a browser TLS error.
    ///
    /// Safe only because a [`VerifiedDevice`] exists solely as the result of `check`: a
    /// listener using this verifier must treat `peer_certificates()` as *unverified* and use
    /// [`crate::DevicePosture::evaluate`] (or `check`) on every request.
    pub fn deferring_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(DeferringVerifier {
            inner: self.verifier(),
        })
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<TrustSnapshot> {
        self.current.load_full()
    }

    /// Current generation; it increases with every successful reload.
    pub fn generation(&self) -> u64 {
        self.current.load().generation
    }

    /// A receiver that changes on every successful reload (for closing long-lived connections:
    /// on change, [`recheck`](Self::recheck) each connection's device and close those that fail).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Per-request check of the connection's peer certificates (end entity first).
    pub fn check(
        &self,
        chain: &[CertificateDer<'_>],
        now: Timestamp,
    ) -> Result<VerifiedDevice, DeviceCertError> {
        check_with(&self.current.load(), chain, now)
    }

    /// Per-request check with a per-connection memo: when `previous` (the device verified on
    /// an earlier request of the same connection) is for the same end-entity certificate and
    /// the trust snapshot has not changed since, only the validity window is re-checked against
    /// `now` — no signature verification, no lock. Any reload (new CRL, new CA) bumps the
    /// generation and forces the full check, so revocation still applies from the next request.
    pub fn check_memo(
        &self,
        chain: &[CertificateDer<'_>],
        previous: Option<&VerifiedDevice>,
        now: Timestamp,
    ) -> Result<VerifiedDevice, DeviceCertError> {
        let snapshot = self.current.load();
        if let Some(prev) = previous
            && prev.trust_generation == snapshot.generation
            && !chain.is_empty()
            && prev.chain.len() == chain.len()
            && prev
                .chain
                .iter()
                .zip(chain)
                .all(|(a, b)| a.as_ref() == b.as_ref())
        {
            if now > prev.facts.not_after {
                return Err(DeviceCertError::Expired {
                    not_after: prev.facts.not_after,
                });
            }
            if now < prev.facts.not_before {
                return Err(DeviceCertError::NotYetValid {
                    not_before: prev.facts.not_before,
                });
            }
            let mut again = prev.clone();
            again.verified_at = now;
            return Ok(again);
        }
        check_with(&snapshot, chain, now)
    }

    /// Re-check a device verified earlier (long-lived connections) against the newest snapshot.
    pub fn recheck(
        &self,
        device: &VerifiedDevice,
        now: Timestamp,
    ) -> Result<VerifiedDevice, DeviceCertError> {
        self.check(device.chain(), now)
    }

    /// For long-lived connections (WebSocket, HTTP/2): resolves with the reason as soon as
    /// `device` stops passing — right after a trust reload under which it fails (revoked CRL,
    /// CA removed), or when its certificate expires by `clock`. The gateway races this against
    /// the connection (`tokio::select!`) and closes the connection when it resolves.
    ///
    /// Bound: the reload notification wakes this at once, so the connection closes within the
    /// file watcher's debounce plus one re-check after the CRL file changes.
    pub async fn until_invalid(
        &self,
        device: &VerifiedDevice,
        clock: impl Fn() -> Timestamp,
    ) -> DeviceCertError {
        let mut changes = self.subscribe();
        loop {
            changes.borrow_and_update();
            let now = clock();
            if let Err(e) = self.recheck(device, now) {
                return e;
            }
            // Sleep until just after expiry, unless a reload comes first.
            let until_expiry =
                device.not_after().duration_since(now) + jiff::SignedDuration::from_secs(1);
            let wait = std::time::Duration::try_from(until_expiry)
                .unwrap_or(std::time::Duration::from_secs(1));
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The sender lives in `self`, so this cannot happen while we borrow it.
                        std::future::pending::<()>().await;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether a serial (any textual hex form) is on a currently loaded CRL, for any issuer.
    pub fn is_revoked(&self, serial: &str) -> bool {
        normalize_serial_text(serial)
            .is_some_and(|s| self.current.load().revoked_serials.contains(&s))
    }

    /// The configured files to watch.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.config.load().watched_files()
    }
}

/// See [`DeviceTrust::deferring_verifier`].
#[derive(Debug)]
struct DeferringVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferringVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Deliberately deferred: DeviceTrust::check decides per request, with a precise reason.
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        // Proof of possession of the private key is never deferred.
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
