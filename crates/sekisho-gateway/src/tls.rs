//! TLS material: listener server configurations (certificate chosen by SNI, ALPN h2 and
//! http/1.1) and upstream client configurations (trusting a configured CA only).
//!
//! Every config is built with `builder_with_provider` on aws-lc-rs: the plain `builder()`
//! panics at run time when a second crypto backend is in the tree.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ListenerTls;
use crate::host::HostPattern;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads a PEM file of certificates.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: contains no certificate", path.display()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{}: not a PEM private key: {e}", path.display()))
}

/// Host names a certificate is valid for (its DNS and IP subject alternative names).
fn certificate_names(der: &CertificateDer<'_>) -> Vec<HostPattern> {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => {
                    if let Ok(p) = HostPattern::parse(n) {
                        out.push(p);
                    }
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        out.push(HostPattern::Exact(ip.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Chooses the certificate whose names cover the client's SNI; the first certificate
/// when there is no SNI (clients connecting by IP address) or no match.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<(Vec<HostPattern>, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some((_, key)) = self
                .certs
                .iter()
                .find(|(names, _)| names.iter().any(|p| p.matches(&name)))
            {
                return Some(key.clone());
            }
        }
        self.certs.first().map(|(_, k)| k.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// Loaded listener certificates, before they are turned into a `ServerConfig`.
#[derive(Clone, Debug)]
pub struct ListenerCerts {
    resolver: Arc<SniResolver>,
}

impl ListenerCerts {
    pub fn load(tls: &ListenerTls) -> Result<ListenerCerts, String> {
        let provider = provider();
        let mut certs = Vec::new();
        for pair in &tls.certificates {
            let chain = load_certs(&pair.cert)?;
            let key = load_key(&pair.key)?;
            let signing = provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| format!("{}: unusable private key: {e}", pair.key.display()))?;
            let names = certificate_names(&chain[0]);
            let certified = CertifiedKey::new(chain, signing);
            certified.keys_match().map_err(|e| {
                format!(
                    "{} and {} do not belong together: {e}",
                    pair.cert.display(),
                    pair.key.display()
                )
            })?;
            certs.push((names, Arc::new(certified)));
        }
        Ok(ListenerCerts {
            resolver: Arc::new(SniResolver { certs }),
        })
    }

    /// A server config without client certificates, HTTP/2 and HTTP/1.1 by ALPN.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        self.server_config_with(None)
    }

    /// A server config that asks for a client certificate checked by `verifier` (which
    /// decides whether one is optional), or none when `verifier` is `None`.
    pub fn server_config_with(
        &self,
        verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<Arc<ServerConfig>, String> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(self.resolver.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// A client config for upstream TLS that trusts only the given CA file.
pub fn upstream_client_config(ca: &Path, http2: bool) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = if http2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(cfg))
}
