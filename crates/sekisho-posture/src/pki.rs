//! Certificate tooling with `rcgen`: a development device CA, a server certificate for the
//! demo hosts, device certificates (PEM + PKCS#12) and CRLs.
//!
//! Two layers: [`CertAuthority`] works in memory (used by the testkit and by the file layer);
//! [`init`], [`issue_device`] and [`revoke`] manage a directory (used by `sekisho certs …`).
//! Time is always passed in. Private key files are created with mode 0600.
//!
//! Directory layout:
//!
//! ```text
//! DIR/device-ca.pem  device-ca.key  device-ca.crl.pem
//! DIR/server-ca.pem  server-ca.key  server.pem (server cert + server CA)  server.key
//! DIR/devices/index.json            issued serials, IDs, revocations, CRL number
//! DIR/devices/<ID>-<serial>.pem .key .p12
//! ```

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use rcgen::string::{Ia5String, PrintableString};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use crate::identity::{
    DEFAULT_URI_PREFIX, normalize_serial_bytes, normalize_serial_text, valid_device_id,
};

/// Demo hosts the development server certificate covers.
pub const DEMO_HOSTS: &[&str] = &[
    // Every host of config/sekisho.yaml by name: TLS clients refuse a wildcard that sits
    // directly on a top-level name such as `*.localhost`.
    "portal.lgwan.localhost",
    "vb.lgwan.localhost",
    "groupware.localhost",
    "contractor.localhost",
    "status.localhost",
    "*.localhost",
    "localhost",
    "127.0.0.1",
    "::1",
];

pub const DEVICE_CA_CERT: &str = "device-ca.pem";
pub const DEVICE_CA_KEY: &str = "device-ca.key";
pub const DEVICE_CA_CRL: &str = "device-ca.crl.pem";
pub const SERVER_CA_CERT: &str = "server-ca.pem";
pub const SERVER_CA_KEY: &str = "server-ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const DEVICES_DIR: &str = "devices";
pub const INDEX_FILE: &str = "index.json";

/// Certificate tooling failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn to_time(ts: Timestamp) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second())
        .map_err(|e| PkiError::Invalid(format!("time {ts} out of range: {e}")))
}

/// Fill `buf` from the system CSPRNG (aws-lc-rs, the one crypto backend).
fn random_bytes(buf: &mut [u8]) -> Result<(), PkiError> {
    aws_lc_rs::rand::fill(buf)
        .map_err(|_| PkiError::Invalid("system random generator failed".into()))
}

/// A fresh random positive 16-byte serial (RFC 5280 allows up to 20 octets).
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    random_bytes(&mut b)?;
    b[0] &= 0x7f;
    b[0] |= 0x01; // never a leading zero byte, so the DER form and our hex form agree
    Ok(SerialNumber::from_slice(&b))
}

/// A random password for a PKCS#12 bundle (20 characters, no look-alikes).
pub fn random_password() -> Result<String, PkiError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 20];
    random_bytes(&mut b)?;
    Ok(b.iter()
        .map(|x| ALPHABET[usize::from(*x) % ALPHABET.len()] as char)
        .collect())
}

/// A certificate and its freshly generated private key.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
    /// PKCS#8 private key, PEM.
    pub key_pem: String,
    /// PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
    pub serial_hex: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_hex", &self.serial_hex)
            .finish_non_exhaustive()
    }
}

/// What goes into a device certificate.
#[derive(Debug, Clone)]
pub struct DeviceCertSpec {
    /// Device ID placed in the SAN URI and the subject CN. `None` makes a certificate
    /// without any device ID (for tests of that failure).
    pub id: Option<String>,
    /// SAN URI prefix, default `urn:sekisho:device:`.
    pub uri_prefix: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
}

impl DeviceCertSpec {
    /// Valid from `now - 1h` (clock skew) for `validity`.
    pub fn new(id: &str, now: Timestamp, validity: SignedDuration) -> Self {
        Self {
            id: Some(id.to_owned()),
            uri_prefix: DEFAULT_URI_PREFIX.to_owned(),
            not_before: now - SignedDuration::from_hours(1),
            not_after: now + validity,
        }
    }
}

/// A CA that can sign certificates and CRLs, in memory.
pub struct CertAuthority {
    params: CertificateParams,
    key: KeyPair,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl CertAuthority {
    /// A new self-signed CA (ECDSA P-256) valid from `now - 1h` for `validity`.
    pub fn generate(
        common_name: &str,
        organization: &str,
        now: Timestamp,
        validity: SignedDuration,
    ) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, organization);
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(random_serial()?);
        params.not_before = to_time(now - SignedDuration::from_hours(1))?;
        params.not_after = to_time(now + validity)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            params,
            key,
        })
    }

    /// Load an existing CA (certificate PEM + PKCS#8 key PEM), e.g. one made by [`init`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        use rustls_pki_types::pem::PemObject;
        let key = KeyPair::from_pem(key_pem)?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| PkiError::Invalid(format!("CA certificate PEM: {e}")))?;
        let (_, x509) = X509Certificate::from_der(&cert_der)
            .map_err(|e| PkiError::Invalid(format!("CA certificate: {e}")))?;
        if x509.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(PkiError::Invalid(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = dn_from_x509(x509.subject())?;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        for ext in x509.extensions() {
            if let ParsedExtension::SubjectKeyIdentifier(ski) = ext.parsed_extension() {
                params.key_identifier_method = KeyIdMethod::PreSpecified(ski.0.to_vec());
            }
        }
        Ok(Self {
            params,
            key,
            cert_der: cert_der.clone().into_owned(),
            cert_pem: cert_pem.to_owned(),
        })
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &self.key)
    }

    fn sign(&self, params: &CertificateParams, key: &KeyPair) -> Result<IssuedCert, PkiError> {
        let cert = params.signed_by(key, &self.issuer())?;
        // Name chaining compares bytes: make sure the issuer we wrote is the CA's subject.
        let (_, ca) = X509Certificate::from_der(&self.cert_der)
            .map_err(|e| PkiError::Invalid(format!("CA certificate: {e}")))?;
        let (_, issued) = X509Certificate::from_der(cert.der())
            .map_err(|e| PkiError::Invalid(format!("issued certificate: {e}")))?;
        if issued.issuer().as_raw() != ca.subject().as_raw() {
            return Err(PkiError::Invalid(
                "cannot reproduce this CA's subject name exactly; issue with the PKI's own tools"
                    .into(),
            ));
        }
        Ok(IssuedCert {
            serial_hex: normalize_serial_bytes(issued.raw_serial()),
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }

    /// Issue a device (client-auth) certificate.
    pub fn issue_device(&self, spec: &DeviceCertSpec) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(org) = self
            .params
            .distinguished_name
            .get(&DnType::OrganizationName)
        {
            dn.push(DnType::OrganizationName, org.clone());
        }
        match &spec.id {
            Some(id) => {
                if !valid_device_id(id) {
                    return Err(PkiError::Invalid(format!(
                        "device ID {id:?}: use 1–128 characters from A–Z a–z 0–9 . _ : @ -"
                    )));
                }
                dn.push(DnType::CommonName, id.as_str());
                let uri = format!("{}{id}", spec.uri_prefix);
                params.subject_alt_names = vec![SanType::URI(
                    Ia5String::try_from(uri).map_err(|e| PkiError::Invalid(e.to_string()))?,
                )];
            }
            None => dn.push(DnType::CommonName, "device without ID"),
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(random_serial()?);
        params.not_before = to_time(spec.not_before)?;
        params.not_after = to_time(spec.not_after)?;
        params.use_authority_key_identifier_extension = true;
        self.sign(&params, &key)
    }

    /// Issue a TLS server certificate for `hosts` (DNS names, wildcards or IP addresses).
    pub fn issue_server(
        &self,
        hosts: &[String],
        now: Timestamp,
        validity: SignedDuration,
    ) -> Result<IssuedCert, PkiError> {
        if hosts.is_empty() {
            return Err(PkiError::Invalid(
                "a server certificate needs at least one host".into(),
            ));
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, hosts[0].as_str());
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ia5String::try_from(h.as_str())
                    .map(SanType::DnsName)
                    .map_err(|e| PkiError::Invalid(format!("host {h:?}: {e}"))),
            })
            .collect::<Result<_, _>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.serial_number = Some(random_serial()?);
        params.not_before = to_time(now - SignedDuration::from_hours(1))?;
        params.not_after = to_time(now + validity)?;
        params.use_authority_key_identifier_extension = true;
        self.sign(&params, &key)
    }

    /// A CRL listing `revoked` (serial hex, revocation time), valid until `next_update`.
    pub fn crl_pem(
        &self,
        revoked: &[(String, Timestamp)],
        crl_number: u64,
        now: Timestamp,
        next_update: Timestamp,
    ) -> Result<String, PkiError> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                let bytes = hex::decode(serial)
                    .map_err(|e| PkiError::Invalid(format!("serial {serial}: {e}")))?;
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: to_time(*at)?,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, PkiError>>()?;
        let params = CertificateRevocationListParams {
            this_update: to_time(now)?,
            next_update: to_time(next_update)?,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.params.key_identifier_method.clone(),
        };
        Ok(params.signed_by(&self.issuer())?.pem()?)
    }
}

fn dn_from_x509(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName, PkiError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DistinguishedName::new();
    for rdn in name.iter_rdn() {
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| {
                    PkiError::Invalid("CA subject has an unsupported attribute OID".into())
                })?
                .collect();
            let ty = match oid.as_slice() {
                [2, 5, 4, 3] => DnType::CommonName,
                [2, 5, 4, 6] => DnType::CountryName,
                [2, 5, 4, 7] => DnType::LocalityName,
                [2, 5, 4, 8] => DnType::StateOrProvinceName,
                [2, 5, 4, 10] => DnType::OrganizationName,
                [2, 5, 4, 11] => DnType::OrganizationalUnitName,
                other => DnType::CustomDnType(other.to_vec()),
            };
            let text = attr
                .as_str()
                .map_err(|e| PkiError::Invalid(format!("CA subject attribute: {e}")))?
                .to_owned();
            let value = match attr.attr_value().tag() {
                Tag::PrintableString => DnValue::PrintableString(
                    PrintableString::try_from(text)
                        .map_err(|e| PkiError::Invalid(e.to_string()))?,
                ),
                Tag::Ia5String => DnValue::Ia5String(
                    Ia5String::try_from(text).map_err(|e| PkiError::Invalid(e.to_string()))?,
                ),
                _ => DnValue::Utf8String(text),
            };
            dn.push(ty, value);
        }
    }
    Ok(dn)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// Write a file that holds a secret: created with mode 0600 (never world- or group-readable).
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    // Remove first so an existing file's wider permissions are not inherited.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(path)(e)),
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(data).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Write a public file atomically (temporary file + rename), so a watcher never sees half a CRL.
pub fn write_public(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn read_string(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(io_err(path))
}

/// Load the device CA from `dir`.
pub fn load_device_ca(dir: &Path) -> Result<CertAuthority, PkiError> {
    CertAuthority::from_pem(
        &read_string(&dir.join(DEVICE_CA_CERT))?,
        &read_string(&dir.join(DEVICE_CA_KEY))?,
    )
}

/// Options for [`init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub now: Timestamp,
    /// Host names and IP addresses for the server certificate. Default: [`DEMO_HOSTS`].
    pub server_hosts: Vec<String>,
    pub organization: String,
    /// Default: 5 years (43 830 h).
    pub ca_validity: SignedDuration,
    /// Default: 397 days (what browsers accept for server certificates).
    pub server_validity: SignedDuration,
    /// Overwrite an existing CA. Default: false (refuse).
    pub force: bool,
}

impl InitOptions {
    pub fn new(now: Timestamp) -> Self {
        Self {
            now,
            server_hosts: DEMO_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            organization: "Sekisho development".into(),
            ca_validity: SignedDuration::from_hours(43_830),
            server_validity: SignedDuration::from_hours(397 * 24),
            force: false,
        }
    }
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub files: Vec<PathBuf>,
}

/// Register of issued device certificates (`DIR/devices/index.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceIndex {
    pub crl_number: u64,
    pub devices: Vec<IndexEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    /// Device ID, or `None` for a serial revoked without being issued here.
    pub id: Option<String>,
    pub serial: String,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

fn index_path(dir: &Path) -> PathBuf {
    dir.join(DEVICES_DIR).join(INDEX_FILE)
}

pub fn load_index(dir: &Path) -> Result<DeviceIndex, PkiError> {
    let path = index_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(s) => serde_json::from_str(&s)
            .map_err(|e| PkiError::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DeviceIndex::default()),
        Err(e) => Err(io_err(&path)(e)),
    }
}

fn save_index(dir: &Path, index: &DeviceIndex) -> Result<(), PkiError> {
    let json = serde_json::to_string_pretty(index).map_err(|e| PkiError::Invalid(e.to_string()))?;
    write_public(&index_path(dir), json.as_bytes())
}

/// How long a CRL written by this tool is valid (its `nextUpdate`).
pub const CRL_VALIDITY: SignedDuration = SignedDuration::from_hours(30 * 24);

fn write_crl(
    dir: &Path,
    ca: &CertAuthority,
    index: &mut DeviceIndex,
    now: Timestamp,
) -> Result<PathBuf, PkiError> {
    index.crl_number += 1;
    let revoked: Vec<(String, Timestamp)> = index
        .devices
        .iter()
        .filter_map(|d| d.revoked_at.map(|at| (d.serial.clone(), at)))
        .collect();
    let pem = ca.crl_pem(&revoked, index.crl_number, now, now + CRL_VALIDITY)?;
    let path = dir.join(DEVICE_CA_CRL);
    write_public(&path, pem.as_bytes())?;
    Ok(path)
}

/// Create a development device CA, a server CA and server certificate, and an empty CRL in `dir`.
pub fn init(dir: &Path, opts: &InitOptions) -> Result<InitReport, PkiError> {
    std::fs::create_dir_all(dir.join(DEVICES_DIR)).map_err(io_err(dir))?;
    if dir.join(DEVICE_CA_KEY).exists() && !opts.force {
        return Err(PkiError::Invalid(format!(
            "{} already exists; refusing to replace the device CA (every issued device certificate would stop working). Use --force to replace it.",
            dir.join(DEVICE_CA_KEY).display()
        )));
    }
    let device_ca = CertAuthority::generate(
        "Sekisho development device CA",
        &opts.organization,
        opts.now,
        opts.ca_validity,
    )?;
    let server_ca = CertAuthority::generate(
        "Sekisho development server CA",
        &opts.organization,
        opts.now,
        opts.ca_validity,
    )?;
    let server = server_ca.issue_server(&opts.server_hosts, opts.now, opts.server_validity)?;
    let mut files = Vec::new();
    let mut put_private = |name: &str, data: &str| -> Result<(), PkiError> {
        let p = dir.join(name);
        write_private(&p, data.as_bytes())?;
        files.push(p);
        Ok(())
    };
    put_private(DEVICE_CA_KEY, &device_ca.key_pem())?;
    put_private(SERVER_CA_KEY, &server_ca.key_pem())?;
    put_private(SERVER_KEY, &server.key_pem)?;
    for (name, data) in [
        (DEVICE_CA_CERT, device_ca.cert_pem().to_owned()),
        (SERVER_CA_CERT, server_ca.cert_pem().to_owned()),
        (
            SERVER_CERT,
            format!("{}{}", server.cert_pem, server_ca.cert_pem()),
        ),
    ] {
        let p = dir.join(name);
        write_public(&p, data.as_bytes())?;
        files.push(p);
    }
    let mut index = DeviceIndex::default();
    files.push(write_crl(dir, &device_ca, &mut index, opts.now)?);
    save_index(dir, &index)?;
    files.push(index_path(dir));
    Ok(InitReport { files })
}

/// Options for [`issue_device`].
#[derive(Clone)]
pub struct IssueOptions {
    pub now: Timestamp,
    /// Used when `not_after` is not given. Default: 365 days.
    pub validity: SignedDuration,
    /// Default: `now - 1h`.
    pub not_before: Option<Timestamp>,
    /// Default: `not_before + validity`.
    pub not_after: Option<Timestamp>,
    /// Password protecting the PKCS#12 bundle.
    pub p12_password: String,
    /// Use 3DES/SHA-1 in the PKCS#12 bundle for old importers (older macOS, Windows 7).
    /// Default: false (AES-256 + HMAC-SHA-256).
    pub p12_legacy: bool,
    pub uri_prefix: String,
}

impl std::fmt::Debug for IssueOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssueOptions")
            .field("now", &self.now)
            .field("validity", &self.validity)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("p12_password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl IssueOptions {
    pub fn new(now: Timestamp, p12_password: String) -> Self {
        Self {
            now,
            validity: SignedDuration::from_hours(365 * 24),
            not_before: None,
            not_after: None,
            p12_password,
            p12_legacy: false,
            uri_prefix: DEFAULT_URI_PREFIX.into(),
        }
    }
}

/// What [`issue_device`] wrote.
#[derive(Debug, Clone)]
pub struct IssuedDevice {
    pub id: String,
    pub serial_hex: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub p12_path: PathBuf,
}

/// A PKCS#12 bundle (key, device certificate, CA certificate) a browser or OS can import.
pub fn pkcs12_bundle(
    device: &IssuedCert,
    ca_cert_der: &[u8],
    alias: &str,
    password: &str,
    legacy: bool,
) -> Result<Vec<u8>, PkiError> {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
        PrivateKeyChain,
    };
    let p12 = |e: p12_keystore::error::Error| PkiError::Pkcs12(e.to_string());
    let key = PrivateKey::from_der(&device.key_der).map_err(p12)?;
    let chain = vec![
        Certificate::from_der(&device.cert_der).map_err(p12)?,
        Certificate::from_der(ca_cert_der).map_err(p12)?,
    ];
    let local_key_id =
        hex::decode(&device.serial_hex).unwrap_or_else(|_| alias.as_bytes().to_vec());
    let mut ks = KeyStore::new();
    ks.add_entry(
        alias,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, chain)),
    );
    let mut writer = ks.writer(password);
    if legacy {
        writer = writer
            .encryption_algorithm(EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc)
            .mac_algorithm(MacAlgorithm::HmacSha1);
    }
    writer.write().map_err(p12)
}

/// Issue a device certificate signed by `dir`'s device CA: `<ID>-<serial>.pem`, `.key` and `.p12`.
pub fn issue_device(dir: &Path, id: &str, opts: &IssueOptions) -> Result<IssuedDevice, PkiError> {
    let ca = load_device_ca(dir)?;
    let not_before = opts
        .not_before
        .unwrap_or(opts.now - SignedDuration::from_hours(1));
    let not_after = opts.not_after.unwrap_or(not_before + opts.validity);
    if not_after <= not_before {
        return Err(PkiError::Invalid(format!(
            "not_after {not_after} is not after not_before {not_before}"
        )));
    }
    let spec = DeviceCertSpec {
        id: Some(id.to_owned()),
        uri_prefix: opts.uri_prefix.clone(),
        not_before,
        not_after,
    };
    let issued = ca.issue_device(&spec)?;
    let devices = dir.join(DEVICES_DIR);
    std::fs::create_dir_all(&devices).map_err(io_err(&devices))?;
    let stem = format!(
        "{id}-{}",
        &issued.serial_hex[..8.min(issued.serial_hex.len())]
    );
    let cert_path = devices.join(format!("{stem}.pem"));
    let key_path = devices.join(format!("{stem}.key"));
    let p12_path = devices.join(format!("{stem}.p12"));
    write_public(
        &cert_path,
        format!("{}{}", issued.cert_pem, ca.cert_pem()).as_bytes(),
    )?;
    write_private(&key_path, issued.key_pem.as_bytes())?;
    let bundle = pkcs12_bundle(
        &issued,
        ca.cert_der(),
        id,
        &opts.p12_password,
        opts.p12_legacy,
    )?;
    write_private(&p12_path, &bundle)?;
    let mut index = load_index(dir)?;
    index.devices.push(IndexEntry {
        id: Some(id.to_owned()),
        serial: issued.serial_hex.clone(),
        not_before: Some(not_before),
        not_after: Some(not_after),
        revoked_at: None,
    });
    save_index(dir, &index)?;
    Ok(IssuedDevice {
        id: id.to_owned(),
        serial_hex: issued.serial_hex,
        not_before,
        not_after,
        cert_path,
        key_path,
        p12_path,
    })
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// A serial in any hex form (`0a:1b…`, `0x0a1b`).
    Serial(String),
    /// Every unrevoked certificate issued for this device ID.
    DeviceId(String),
}

/// Revoke and regenerate `DIR/device-ca.crl.pem`. Returns the serials newly revoked.
pub fn revoke(dir: &Path, target: &RevokeTarget, now: Timestamp) -> Result<Vec<String>, PkiError> {
    let ca = load_device_ca(dir)?;
    let mut index = load_index(dir)?;
    let mut newly = Vec::new();
    match target {
        RevokeTarget::Serial(text) => {
            let serial = normalize_serial_text(text).ok_or_else(|| {
                PkiError::Invalid(format!("{text:?} is not a hexadecimal serial number"))
            })?;
            match index.devices.iter_mut().find(|d| d.serial == serial) {
                Some(d) if d.revoked_at.is_some() => {}
                Some(d) => {
                    d.revoked_at = Some(now);
                    newly.push(serial);
                }
                None => {
                    index.devices.push(IndexEntry {
                        id: None,
                        serial: serial.clone(),
                        not_before: None,
                        not_after: None,
                        revoked_at: Some(now),
                    });
                    newly.push(serial);
                }
            }
        }
        RevokeTarget::DeviceId(id) => {
            let mut found = false;
            for d in index
                .devices
                .iter_mut()
                .filter(|d| d.id.as_deref() == Some(id.as_str()))
            {
                found = true;
                if d.revoked_at.is_none() {
                    d.revoked_at = Some(now);
                    newly.push(d.serial.clone());
                }
            }
            if !found {
                return Err(PkiError::Invalid(format!(
                    "no certificate for device {id:?} in {}; revoke by serial instead",
                    index_path(dir).display()
                )));
            }
        }
    }
    write_crl(dir, &ca, &mut index, now)?;
    save_index(dir, &index)?;
    Ok(newly)
}
