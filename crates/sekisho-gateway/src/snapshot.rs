//! A snapshot: everything a request needs, built off the request path from one validated
//! configuration and swapped in atomically on reload. In-flight requests keep the snapshot
//! they started with until they finish.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use sekisho_yaml::Diagnostic;

use crate::config::{self, Config, LoadError};
use crate::host::HostPattern;
use crate::proxy::UpstreamPool;
use crate::routing::RouteTable;
use crate::tls::ListenerCerts;

pub struct Snapshot {
    /// Unique per snapshot built in this process (increases on every reload).
    pub generation: u64,
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub pools: HashMap<String, Arc<UpstreamPool>>,
    /// TLS server configurations per listener name (absent for plaintext listeners).
    pub server_tls: HashMap<String, ListenerTls>,
    /// Device trust and posture (absent when no `devices:` are configured).
    pub devices: Option<Arc<sekisho_posture::DevicePosture>>,
    /// Sign-in, sessions and bearer tokens. Kept across reloads: it holds logins in flight
    /// and the logout revocation list.
    pub identity: Option<Arc<IdentityRuntime>>,
    /// Signs the upstream assertion. Rebuilt with every snapshot (it holds no state), so a
    /// new key file or retired keys take effect on reload.
    pub signer: Option<Arc<sekisho_identity::AssertionSigner>>,
}

pub struct IdentityRuntime {
    pub service: sekisho_identity::IdentityService,
    /// The signer made at start when no `assertion.key_file` is configured: kept for the
    /// life of the process so upstreams see one key.
    generated_signer: Option<Arc<sekisho_identity::AssertionSigner>>,
    fingerprint: String,
}

/// A listener's TLS configurations: browsers are asked for a device certificate only on
/// hosts whose routes want one, so public sites never show a certificate prompt.
pub struct ListenerTls {
    pub plain: Arc<ServerConfig>,
    pub device: Option<Arc<ServerConfig>>,
    pub device_hosts: Vec<HostPattern>,
}

impl ListenerTls {
    /// The configuration for a TLS client hello's server name.
    pub fn for_sni(&self, sni: Option<&str>) -> (Arc<ServerConfig>, bool) {
        if let (Some(device), Some(name)) = (&self.device, sni) {
            let name = name.to_ascii_lowercase();
            if self.device_hosts.iter().any(|p| p.matches(&name)) {
                return (device.clone(), true);
            }
        }
        (self.plain.clone(), false)
    }
}

impl Snapshot {
    /// Loads the configuration file and everything it refers to (certificates, keys, CA
    /// files). This is exactly what `sekisho check` runs and what `serve` and reload use.
    pub fn load(path: &Path) -> Result<Snapshot, LoadError> {
        Snapshot::load_after(path, None)
    }

    /// Loads a snapshot to replace `previous` (reload): the identity runtime carries over.
    pub fn load_after(path: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, LoadError> {
        let config = config::load(path)?;
        Snapshot::build_after(config, previous)
    }

    pub fn build(config: Config) -> Result<Snapshot, LoadError> {
        Snapshot::build_after(config, None)
    }

    pub fn build_after(config: Config, previous: Option<&Snapshot>) -> Result<Snapshot, LoadError> {
        let file = config.source.display().to_string();
        let mut errors = Vec::new();
        let devices = match &config.devices {
            Some(dc) => match sekisho_posture::DevicePosture::load(dc) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    errors.push(Diagnostic {
                        path: "devices".into(),
                        ..Diagnostic::file_error(&file, e.to_string(), Some("check the device CA, CRL and inventory files named under `devices`".into()))
                    });
                    None
                }
            },
            None => None,
        };
        let mut server_tls = HashMap::new();
        for l in &config.listeners {
            let Some(tls) = &l.tls else { continue };
            let device_hosts: Vec<HostPattern> = config
                .routes
                .iter()
                .filter(|r| r.client_certificate && r.listeners.contains(&l.name))
                .flat_map(|r| r.hosts.iter().cloned())
                .collect();
            // The deferring verifier asks for a certificate (optional) and checks the
            // client holds its key; chain, validity and revocation are judged per request
            // so a refused device gets a page that says why, not a browser TLS error.
            let verifier = devices
                .as_ref()
                .filter(|_| !device_hosts.is_empty())
                .map(|d| d.trust().deferring_verifier());
            let built = ListenerCerts::load(tls).and_then(|c| {
                let plain = c.server_config()?;
                let device = match verifier {
                    Some(v) => Some(c.server_config_with(Some(v))?),
                    None => None,
                };
                Ok(ListenerTls {
                    plain,
                    device,
                    device_hosts,
                })
            });
            match built {
                Ok(sc) => {
                    server_tls.insert(l.name.clone(), sc);
                }
                Err(e) => errors.push(Diagnostic {
                    path: format!("listeners.{}.tls", l.name),
                    ..Diagnostic::file_error(
                        &file,
                        e,
                        Some(
                            "check that the certificate and key are PEM files that belong together"
                                .into(),
                        ),
                    )
                }),
            }
        }
        let mut pools = HashMap::new();
        for r in &config.routes {
            let Some(zone) = config.zones.get(&r.zone) else {
                continue;
            };
            match UpstreamPool::new(r.clone(), zone.clone()) {
                Ok(p) => {
                    pools.insert(r.name.clone(), Arc::new(p));
                }
                Err(e) => errors.push(Diagnostic {
                    path: format!("routes.{}.upstream_tls", r.name),
                    ..Diagnostic::file_error(&file, e, None)
                }),
            }
        }
        let identity = match (&config.identity, previous.and_then(|p| p.identity.as_ref())) {
            (None, _) => None,
            (Some(settings), Some(old)) if old.fingerprint == settings.fingerprint => {
                // Same identity configuration: keep the running service, rotate cookie keys.
                match settings.key_ring() {
                    Ok(ring) => {
                        old.service.set_cookie_keys(ring);
                        Some(old.clone())
                    }
                    Err(e) => {
                        errors.push(Diagnostic {
                            path: "identity.session.cookie_keys_file".into(),
                            ..Diagnostic::file_error(&file, e, None)
                        });
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                errors.push(Diagnostic {
                    path: "identity".into(),
                    ..Diagnostic::file_error(&file, "the `identity` section changed: this needs a restart", Some("cookie keys rotate on reload; other identity settings take effect on restart".into()))
                });
                None
            }
            (Some(settings), None) => match build_identity(settings) {
                Ok(rt) => Some(Arc::new(rt)),
                Err(e) => {
                    errors.push(Diagnostic {
                        path: "identity".into(),
                        ..Diagnostic::file_error(&file, e, None)
                    });
                    None
                }
            },
        };
        let signer = match (&config.identity, &identity) {
            (Some(settings), Some(rt)) => match build_signer(settings, rt) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(Diagnostic {
                        path: "identity.assertion".into(),
                        ..Diagnostic::file_error(&file, e, None)
                    });
                    None
                }
            },
            _ => None,
        };
        if previous.is_some_and(|p| p.identity.is_some()) && config.identity.is_none() {
            errors.push(Diagnostic {
                path: "identity".into(),
                ..Diagnostic::file_error(
                    &file,
                    "the `identity` section was removed: this needs a restart",
                    None,
                )
            });
        }
        if !errors.is_empty() {
            errors.extend(config.warnings.iter().cloned());
            return Err(LoadError {
                diagnostics: errors,
            });
        }
        let routes = RouteTable::build(&config);
        static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Snapshot {
            generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            config: Arc::new(config),
            routes,
            pools,
            server_tls,
            devices,
            identity,
            signer,
        })
    }
}

fn build_identity(
    settings: &crate::identity_config::IdentitySettings,
) -> Result<IdentityRuntime, String> {
    let ring = settings.key_ring()?;
    let service = sekisho_identity::IdentityService::new(settings.config.clone(), ring)
        .map_err(|e| e.to_string())?;
    let a = &settings.assertion;
    let generated_signer = match (&a.header, &a.key_pem) {
        (Some(_), None) => {
            // Without a configured key every replica signs with its own: fine for one
            // replica, wrong for several behind a load balancer.
            tracing::warn!(
                "identity.assertion.key_file is not set: signing upstream assertions with a key generated at start"
            );
            Some(Arc::new(
                sekisho_identity::AssertionSigner::generate(a.issuer.clone(), a.lifetime)
                    .map_err(|e| e.to_string())?
                    .0,
            ))
        }
        _ => None,
    };
    Ok(IdentityRuntime {
        service,
        generated_signer,
        fingerprint: settings.fingerprint.clone(),
    })
}

fn build_signer(
    settings: &crate::identity_config::IdentitySettings,
    rt: &IdentityRuntime,
) -> Result<Option<Arc<sekisho_identity::AssertionSigner>>, String> {
    let a = &settings.assertion;
    Ok(match (&a.header, &a.key_pem) {
        (None, _) => None,
        (Some(_), Some(pem)) => Some(Arc::new(
            sekisho_identity::AssertionSigner::new(
                a.issuer.clone(),
                pem,
                a.lifetime,
                a.retired_public_keys.clone(),
            )
            .map_err(|e| e.to_string())?,
        )),
        // The generated key outlives reloads (a new one would leave upstreams with a JWKS that
        // no longer has it); a changed issuer or lifetime gets a signer of its own with it.
        (Some(_), None) => rt.generated_signer.as_ref().map(|s| {
            if s.issuer() == a.issuer && s.lifetime() == a.lifetime {
                s.clone()
            } else {
                Arc::new(s.reconfigured(&a.issuer, a.lifetime))
            }
        }),
    })
}
