//! Optional helper: watch CA, CRL and inventory files and reload what changed.
//!
//! The gateway may use its own watcher and call [`DeviceTrust::reload`](crate::DeviceTrust::reload) /
//! [`InventoryStore::reload`](crate::inventory::InventoryStore::reload) instead. Directories are watched (not files) because editors and
//! MDM exports usually replace a file by renaming a new one over it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use crate::device::DevicePosture;

/// What a reload triggered by the watcher did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadEvent {
    /// Device trust reloaded; the new generation.
    TrustReloaded(u64),
    /// Device trust files changed but are broken; the old trust stays. The message names the file.
    TrustFailed(String),
    /// Inventory reloaded; the number of devices.
    InventoryReloaded(usize),
    /// Inventory changed but is broken; the old inventory stays. `file:line: message` lines.
    InventoryFailed(String),
}

/// Keeps the watcher alive; dropping it stops watching.
pub struct FileWatcher {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatcher")
    }
}

fn normalize(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Watch the files `posture` uses; after changes settle for `debounce`, reload the affected
/// part and report through `on_event` (log it, count it, audit it).
pub fn watch(
    posture: Arc<DevicePosture>,
    debounce: Duration,
    on_event: impl Fn(ReloadEvent) + Send + 'static,
) -> Result<FileWatcher, notify_debouncer_full::notify::Error> {
    let trust_files: BTreeSet<PathBuf> = posture
        .trust()
        .watched_files()
        .iter()
        .map(|p| normalize(p))
        .collect();
    let inventory_files: BTreeSet<PathBuf> = posture
        .inventory()
        .watched_files()
        .iter()
        .map(|p| normalize(p))
        .collect();
    let dirs: BTreeSet<PathBuf> = trust_files
        .iter()
        .chain(&inventory_files)
        .filter_map(|p| p.parent().map(Path::to_owned))
        .collect();
    let handler_posture = posture.clone();
    let (tf, inf) = (trust_files.clone(), inventory_files.clone());
    let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| {
        let Ok(events) = res else { return };
        let touched: BTreeSet<PathBuf> = events
            .iter()
            .flat_map(|e| e.paths.iter().map(|p| normalize(p)))
            .collect();
        if touched.iter().any(|p| tf.contains(p)) {
            on_event(match handler_posture.trust().reload() {
                Ok(g) => ReloadEvent::TrustReloaded(g),
                Err(e) => ReloadEvent::TrustFailed(e.to_string()),
            });
        }
        if touched.iter().any(|p| inf.contains(p)) {
            on_event(match handler_posture.inventory().reload() {
                Ok(n) => ReloadEvent::InventoryReloaded(n),
                Err(e) => ReloadEvent::InventoryFailed(e.to_string()),
            });
        }
    })?;
    for d in dirs {
        debouncer.watch(&d, RecursiveMode::NonRecursive)?;
    }
    Ok(FileWatcher {
        _debouncer: debouncer,
    })
}
