//! Route lookup: (listener, canonical host, canonical path) → route.
//!
//! Compiled once per configuration snapshot. Exact hosts are a hash lookup; wildcard
//! hosts are a hash lookup on the parent domain (a wildcard covers exactly one label);
//! within a host, the longest matching path prefix wins. The cost of a lookup does not
//! grow with the number of routes on other hosts.

use std::collections::HashMap;
use std::sync::Arc;

use crate::canon::prefix_matches;
use crate::config::{Config, Route};
use crate::host::HostPattern;

#[derive(Default)]
struct HostTable {
    exact: HashMap<String, Vec<Arc<Route>>>,
    wildcard: HashMap<String, Vec<Arc<Route>>>,
}

/// All routes, indexed per listener.
pub struct RouteTable {
    by_listener: HashMap<String, HostTable>,
}

impl RouteTable {
    pub fn build(config: &Config) -> RouteTable {
        let mut by_listener: HashMap<String, HostTable> = HashMap::new();
        for route in &config.routes {
            for listener in &route.listeners {
                let table = by_listener.entry(listener.clone()).or_default();
                for host in &route.hosts {
                    let slot = match host {
                        HostPattern::Exact(h) => table.exact.entry(h.clone()).or_default(),
                        HostPattern::Wildcard(s) => table.wildcard.entry(s.clone()).or_default(),
                    };
                    slot.push(route.clone());
                }
            }
        }
        // Longest prefix first, so the first match is the most specific.
        for table in by_listener.values_mut() {
            for list in table.exact.values_mut().chain(table.wildcard.values_mut()) {
                list.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
            }
        }
        RouteTable { by_listener }
    }

    /// Whether any route on `listener` serves `host` (canonical), whatever the path.
    pub fn has_host(&self, listener: &str, host: &str) -> bool {
        let Some(table) = self.by_listener.get(listener) else {
            return false;
        };
        table.exact.contains_key(host)
            || host
                .split_once('.')
                .is_some_and(|(_, parent)| table.wildcard.contains_key(parent))
    }

    /// Finds the route for a request. `host` and `path` must be canonical.
    pub fn lookup(&self, listener: &str, host: &str, path: &str) -> Option<&Arc<Route>> {
        let table = self.by_listener.get(listener)?;
        let pick = |list: &'_ Vec<Arc<Route>>| -> Option<usize> {
            list.iter()
                .position(|r| prefix_matches(&r.path_prefix, path))
        };
        if let Some(list) = table.exact.get(host)
            && let Some(i) = pick(list)
        {
            return Some(&list[i]);
        }
        let parent = host.split_once('.').map(|(_, p)| p)?;
        let list = table.wildcard.get(parent)?;
        pick(list).map(|i| &list[i])
    }
}
