//! Test fixtures for this crate and for other crates' tests (feature `testkit`).
//!
//! [`TestPki`] makes, in a temporary directory: a device CA with a CRL file, a second
//! ("wrong") CA, a server CA and a server certificate for `localhost`/`127.0.0.1`/`::1`, and
//! device certificates that are valid, expired, not yet valid, revoked, from the wrong CA, or
//! without a device ID. [`AssertionSigner`] signs posture assertions, honest and hostile.
//!
//! Certificates are dated around a `now` you choose. Real TLS handshakes check validity with
//! the real clock, so tests that do handshakes use [`TestPki::new`] (dated around the real
//! time); pure checks can use [`TestPki::at`] with any time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::DeviceTrustConfig;
use crate::identity::{DEFAULT_URI_PREFIX, x5t_s256};
use crate::pki::{CertAuthority, DeviceCertSpec, IssuedCert, write_public};

/// A device certificate and its key, in memory.
#[derive(Debug, Clone)]
pub struct TestDevice {
    pub id: Option<String>,
    pub cert: IssuedCert,
    ca_der: CertificateDer<'static>,
}

impl TestDevice {
    /// The chain a client presents: the device certificate only (the CA is the trust anchor).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.cert_der.clone()]
    }
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.cert.key_der.clone()))
    }
    pub fn serial_hex(&self) -> &str {
        &self.cert.serial_hex
    }
    /// `cnf.x5t#S256` value for assertions bound to this certificate.
    pub fn x5t_s256(&self) -> String {
        x5t_s256(&self.cert.cert_der)
    }
    /// The CA that issued it.
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }
}

/// A throwaway PKI in a temporary directory.
pub struct TestPki {
    dir: tempfile::TempDir,
    now: Timestamp,
    ca: CertAuthority,
    other_ca: CertAuthority,
    server_ca: CertAuthority,
    server: IssuedCert,
    revoked: Mutex<(u64, Vec<(String, Timestamp)>)>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

pub const CA_FILE: &str = "device-ca.pem";
pub const CRL_FILE: &str = "device-ca.crl.pem";

fn crypto() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl TestPki {
    /// Dated around the real current time (for real TLS handshakes).
    #[expect(
        clippy::new_without_default,
        reason = "creating a PKI does I/O; keep it explicit"
    )]
    pub fn new() -> Self {
        Self::at(Timestamp::now())
    }

    /// Dated around `now`.
    pub fn at(now: Timestamp) -> Self {
        let year = SignedDuration::from_hours(24 * 365);
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertAuthority::generate("Test device CA", "Sekisho test city", now, year)
            .expect("device CA");
        let other_ca =
            CertAuthority::generate("Some other CA", "Elsewhere", now, year).expect("other CA");
        let server_ca = CertAuthority::generate("Test server CA", "Sekisho test city", now, year)
            .expect("server CA");
        let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let server = server_ca
            .issue_server(&hosts, now, year)
            .expect("server cert");
        std::fs::write(dir.path().join(CA_FILE), ca.cert_pem()).expect("write CA");
        let pki = Self {
            dir,
            now,
            ca,
            other_ca,
            server_ca,
            server,
            revoked: Mutex::new((0, Vec::new())),
        };
        pki.write_crl();
        pki
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join(CA_FILE)
    }
    pub fn crl_path(&self) -> PathBuf {
        self.dir.path().join(CRL_FILE)
    }
    pub fn ca(&self) -> &CertAuthority {
        &self.ca
    }

    /// Device trust over this PKI's CA and CRL, default device ID source.
    pub fn trust_config(&self) -> DeviceTrustConfig {
        let mut c = DeviceTrustConfig::new(vec![self.ca_path()]);
        c.crl_files = vec![self.crl_path()];
        c
    }

    fn write_crl(&self) {
        let mut guard = self.revoked.lock().expect("lock");
        guard.0 += 1;
        let pem = self
            .ca
            .crl_pem(
                &guard.1,
                guard.0,
                self.now,
                self.now + SignedDuration::from_hours(24 * 30),
            )
            .expect("CRL");
        write_public(&self.crl_path(), pem.as_bytes()).expect("write CRL");
    }

    fn issue(
        &self,
        ca: &CertAuthority,
        id: Option<&str>,
        not_before: Timestamp,
        not_after: Timestamp,
    ) -> TestDevice {
        let spec = DeviceCertSpec {
            id: id.map(str::to_owned),
            uri_prefix: DEFAULT_URI_PREFIX.into(),
            not_before,
            not_after,
        };
        TestDevice {
            id: id.map(str::to_owned),
            cert: ca.issue_device(&spec).expect("device cert"),
            ca_der: ca.cert_der().clone(),
        }
    }

    /// Valid from `now - 1h` to `now + 30 days`.
    pub fn device(&self, id: &str) -> TestDevice {
        self.issue(
            &self.ca,
            Some(id),
            self.now - SignedDuration::from_hours(1),
            self.now + SignedDuration::from_hours(720),
        )
    }
    /// Expired yesterday.
    pub fn expired(&self, id: &str) -> TestDevice {
        self.issue(
            &self.ca,
            Some(id),
            self.now - SignedDuration::from_hours(720),
            self.now - SignedDuration::from_hours(24),
        )
    }
    /// Valid from tomorrow.
    pub fn not_yet_valid(&self, id: &str) -> TestDevice {
        self.issue(
            &self.ca,
            Some(id),
            self.now + SignedDuration::from_hours(24),
            self.now + SignedDuration::from_hours(720),
        )
    }
    /// Issued by a CA the gateway does not trust.
    pub fn wrong_ca(&self, id: &str) -> TestDevice {
        self.issue(
            &self.other_ca,
            Some(id),
            self.now - SignedDuration::from_hours(1),
            self.now + SignedDuration::from_hours(720),
        )
    }
    /// Trusted CA, valid, but no SAN URI with a device ID.
    pub fn without_device_id(&self) -> TestDevice {
        self.issue(
            &self.ca,
            None,
            self.now - SignedDuration::from_hours(1),
            self.now + SignedDuration::from_hours(720),
        )
    }
    /// A valid device certificate that is then revoked (CRL file rewritten).
    pub fn revoked(&self, id: &str) -> TestDevice {
        let d = self.device(id);
        self.revoke(&d);
        d
    }
    /// Put `device` on the CRL and rewrite the CRL file. Call [`crate::DeviceTrust::reload`] after.
    pub fn revoke(&self, device: &TestDevice) {
        self.revoked
            .lock()
            .expect("lock")
            .1
            .push((device.serial_hex().to_owned(), self.now));
        self.write_crl();
    }

    pub fn server_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.server.cert_der.clone()]
    }
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server.key_der.clone()))
    }
    pub fn server_ca_der(&self) -> &CertificateDer<'static> {
        self.server_ca.cert_der()
    }

    /// A TLS 1.3 server config for `localhost` that asks for (but does not require) a device certificate.
    pub fn server_config(&self, verifier: Arc<dyn ClientCertVerifier>) -> rustls::ServerConfig {
        rustls::ServerConfig::builder_with_provider(crypto())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.server_chain(), self.server_key())
            .expect("server config")
    }

    /// A client config trusting the test server CA, presenting `device` if given.
    /// Keep one per simulated device: its session cache makes the next handshake resume.
    pub fn client_config(&self, device: Option<&TestDevice>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.server_ca.cert_der().clone()).expect("root");
        let b = rustls::ClientConfig::builder_with_provider(crypto())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(roots);
        match device {
            Some(d) => b
                .with_client_auth_cert(d.chain(), d.key())
                .expect("client cert"),
            None => b.with_no_client_auth(),
        }
    }
}

/// Signs posture assertions (ES256, P-256) like an MDM or endpoint agent would.
pub struct AssertionSigner {
    key: rcgen::KeyPair,
    pub kid: Option<String>,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    pub fn new(kid: Option<&str>) -> Self {
        Self {
            key: rcgen::KeyPair::generate().expect("P-256 key"),
            kid: kid.map(str::to_owned),
        }
    }
    /// `PUBLIC KEY` PEM for the verifier configuration.
    pub fn public_key_pem(&self) -> String {
        self.key.public_key_pem()
    }
    /// An [`crate::assertion::AssertionKey`] for [`crate::assertion::AssertionVerifier::new`].
    pub fn verifier_key(&self) -> crate::assertion::AssertionKey {
        crate::assertion::AssertionKey {
            kid: self.kid.clone(),
            public_key_pem: self.public_key_pem().into_bytes(),
            algorithm: None,
            issuer: None,
        }
    }
    /// Sign arbitrary claims with ES256.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = self.kid.clone();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.key.serialize_pem().as_bytes())
            .expect("encoding key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
    /// An honest assertion for `device` issued at `iat` with `posture` facts.
    pub fn assertion(
        &self,
        device: &TestDevice,
        iat: Timestamp,
        posture: serde_json::Value,
    ) -> String {
        self.sign(&serde_json::json!({
            "iss": "test-mdm",
            "sub": device.id,
            "iat": iat.as_second(),
            "exp": (iat + SignedDuration::from_hours(1)).as_second(),
            "cnf": { "x5t#S256": device.x5t_s256() },
            "posture": posture,
        }))
    }
    /// Hostile: `alg: none`, no signature.
    pub fn unsigned(claims: &serde_json::Value) -> String {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b.encode(claims.to_string())
        )
    }
    /// Hostile: HS256 keyed with this signer's *public* key PEM (the classic algorithm confusion).
    pub fn hmac_with_public_key(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = self.kid.clone();
        let key = jsonwebtoken::EncodingKey::from_secret(self.public_key_pem().as_bytes());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}
