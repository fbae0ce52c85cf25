//! A snapshot: everything a request needs, built off the request path from one validated
//! configuration and swapped in atomically on reload. In-flight requests keep the snapshot
//! they started with until they finish.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use sekisho_yaml::Diagnostic;

use crate::config::{self, Config, LoadError};
use crate::proxy::UpstreamPool;
use crate::routing::RouteTable;
use crate::tls::ListenerCerts;

pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub pools: HashMap<String, Arc<UpstreamPool>>,
    /// TLS server configuration per listener name (absent for plaintext listeners).
    pub server_tls: HashMap<String, Arc<ServerConfig>>,
}

impl Snapshot {
    /// Loads the configuration file and everything it refers to (certificates, keys, CA
    /// files). This is exactly what `sekisho check` runs and what `serve` and reload use.
    pub fn load(path: &Path) -> Result<Snapshot, LoadError> {
        let config = config::load(path)?;
        Snapshot::build(config)
    }

    pub fn build(config: Config) -> Result<Snapshot, LoadError> {
        let file = config.source.display().to_string();
        let mut errors = Vec::new();
        let mut server_tls = HashMap::new();
        for l in &config.listeners {
            let Some(tls) = &l.tls else { continue };
            match ListenerCerts::load(tls).and_then(|c| c.server_config()) {
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
        if !errors.is_empty() {
            errors.extend(config.warnings.iter().cloned());
            return Err(LoadError {
                diagnostics: errors,
            });
        }
        let routes = RouteTable::build(&config);
        Ok(Snapshot {
            config: Arc::new(config),
            routes,
            pools,
            server_tls,
        })
    }
}
