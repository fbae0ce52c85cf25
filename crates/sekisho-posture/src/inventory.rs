//! The device inventory exported from the MDM (YAML or CSV), reloaded when it changes.
//!
//! Loading reports **every** problem at once, each as `file:line[:column]: message`.
//! [`InventoryStore::reload`] keeps the previous inventory when the new file is broken, so a
//! half-written export never empties the inventory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::identity::valid_device_id;

/// Who owns the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ownership {
    /// 公用端末: owned and issued by the municipality.
    Corporate,
    /// 私物端末 (BYOD).
    Byod,
}

impl std::str::FromStr for Ownership {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "corporate" | "company" | "公用" => Ok(Self::Corporate),
            "byod" | "personal" | "私物" => Ok(Self::Byod),
            other => Err(format!("ownership {other:?}: use corporate or byod")),
        }
    }
}

/// One device as the MDM reports it. `None` means the export does not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryRecord {
    pub device_id: String,
    pub managed: Option<bool>,
    pub ownership: Option<Ownership>,
    pub owner: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub disk_encryption: Option<bool>,
    pub screen_lock: Option<bool>,
    pub firewall: Option<bool>,
    pub antivirus: Option<bool>,
    pub edr: Option<bool>,
    pub compliant: Option<bool>,
    /// When the device last reported to the MDM; every inventory fact is as old as this.
    pub last_check_in: Option<Timestamp>,
    pub tags: Vec<String>,
    /// `file:line` the record came from (for explanations and audit).
    pub origin: String,
}

/// One problem in an inventory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryIssue {
    pub file: PathBuf,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for InventoryIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// An inventory could not be loaded; lists every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct InventoryError {
    pub issues: Vec<InventoryIssue>,
}

impl std::fmt::Display for InventoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for i in &self.issues {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

/// An immutable, loaded inventory.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    devices: HashMap<String, InventoryRecord>,
    files: Vec<PathBuf>,
}

impl Inventory {
    pub fn get(&self, device_id: &str) -> Option<&InventoryRecord> {
        self.devices.get(device_id)
    }
    pub fn len(&self) -> usize {
        self.devices.len()
    }
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
    pub fn iter(&self) -> impl Iterator<Item = &InventoryRecord> {
        self.devices.values()
    }

    /// Load and merge inventory files (`.yaml`/`.yml` or `.csv`). A device ID may appear once
    /// across all files.
    pub fn load(files: &[PathBuf]) -> Result<Self, InventoryError> {
        let mut issues = Vec::new();
        let mut devices: HashMap<String, InventoryRecord> = HashMap::new();
        for file in files {
            let records = match std::fs::read_to_string(file) {
                Err(e) => {
                    issues.push(issue(file, None, None, format!("cannot read: {e}")));
                    continue;
                }
                Ok(text) => match format_of(file) {
                    Some(Format::Yaml) => parse_yaml(file, &text, &mut issues),
                    Some(Format::Csv) => parse_csv(file, &text, &mut issues),
                    None => {
                        issues.push(issue(
                            file,
                            None,
                            None,
                            "unknown inventory format: name it .yaml, .yml or .csv".into(),
                        ));
                        continue;
                    }
                },
            };
            for r in records {
                if let Some(prev) = devices.get(&r.device_id) {
                    issues.push(InventoryIssue {
                        file: file.clone(),
                        line: line_of(&r.origin),
                        column: None,
                        message: format!(
                            "device {:?} is listed twice (first at {})",
                            r.device_id, prev.origin
                        ),
                    });
                } else {
                    devices.insert(r.device_id.clone(), r);
                }
            }
        }
        if issues.is_empty() {
            Ok(Self {
                devices,
                files: files.to_vec(),
            })
        } else {
            Err(InventoryError { issues })
        }
    }
}

fn line_of(origin: &str) -> Option<u64> {
    origin.rsplit(':').next()?.parse().ok()
}

fn issue(file: &Path, line: Option<u64>, column: Option<u64>, message: String) -> InventoryIssue {
    InventoryIssue {
        file: file.to_owned(),
        line,
        column,
        message,
    }
}

enum Format {
    Yaml,
    Csv,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "yaml" | "yml" => Some(Format::Yaml),
        "csv" => Some(Format::Csv),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYamlInventory {
    /// Free text about the export (which MDM, when); ignored.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "documentation field for IT officers, accepted and ignored"
    )]
    source: Option<String>,
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "documentation field for IT officers, accepted and ignored"
    )]
    exported_at: Option<String>,
    devices: Vec<Spanned<RawDevice>>,
}

/// One device as written in YAML. Scalars are taken as strings where a precise error message
/// matters (timestamps, ownership).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    device_id: String,
    managed: Option<bool>,
    ownership: Option<String>,
    owner: Option<String>,
    os: Option<String>,
    os_version: Option<String>,
    disk_encryption: Option<bool>,
    screen_lock: Option<bool>,
    firewall: Option<bool>,
    antivirus: Option<bool>,
    edr: Option<bool>,
    compliant: Option<bool>,
    last_check_in: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

fn parse_yaml(file: &Path, text: &str, issues: &mut Vec<InventoryIssue>) -> Vec<InventoryRecord> {
    let raw: RawYamlInventory = match serde_saphyr::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let loc = e.location();
            issues.push(issue(
                file,
                loc.as_ref().map(|l| l.line()),
                loc.as_ref().map(|l| l.column()),
                e.to_string(),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for dev in raw.devices {
        let line = dev.defined.line();
        let mut errs = Vec::new();
        let r = dev.value;
        let ownership = r
            .ownership
            .as_deref()
            .map(str::parse::<Ownership>)
            .transpose()
            .unwrap_or_else(|e| {
                errs.push(e);
                None
            });
        let last_check_in = r
            .last_check_in
            .as_deref()
            .map(parse_time)
            .transpose()
            .unwrap_or_else(|e| {
                errs.push(e);
                None
            });
        if !valid_device_id(&r.device_id) {
            errs.push(format!(
                "device_id {:?}: use 1–128 characters from A–Z a–z 0–9 . _ : @ -",
                r.device_id
            ));
        }
        if errs.is_empty() {
            out.push(InventoryRecord {
                device_id: r.device_id,
                managed: r.managed,
                ownership,
                owner: r.owner,
                os: r.os,
                os_version: r.os_version,
                disk_encryption: r.disk_encryption,
                screen_lock: r.screen_lock,
                firewall: r.firewall,
                antivirus: r.antivirus,
                edr: r.edr,
                compliant: r.compliant,
                last_check_in,
                tags: r.tags,
                origin: format!("{}:{line}", file.display()),
            });
        } else {
            issues.extend(errs.into_iter().map(|m| issue(file, Some(line), None, m)));
        }
    }
    out
}

/// Accept RFC 3339 with an offset (`2026-11-20T09:00:00+09:00`, `…Z`).
fn parse_time(s: &str) -> Result<Timestamp, String> {
    s.trim().parse::<Timestamp>().map_err(|e| {
        format!("last_check_in {s:?}: expected a date-time with offset such as 2026-11-20T09:00:00+09:00 ({e})")
    })
}

fn parse_bool(col: &str, s: &str) -> Result<Option<bool>, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "unknown" | "n/a" | "-" => Ok(None),
        "true" | "yes" | "y" | "1" | "on" | "enabled" | "はい" | "有効" => Ok(Some(true)),
        "false" | "no" | "n" | "0" | "off" | "disabled" | "いいえ" | "無効" => Ok(Some(false)),
        other => Err(format!(
            "{col} {other:?}: use true or false (or leave empty for unknown)"
        )),
    }
}

const CSV_COLUMNS: &[&str] = &[
    "device_id",
    "managed",
    "ownership",
    "owner",
    "os",
    "os_version",
    "disk_encryption",
    "screen_lock",
    "firewall",
    "antivirus",
    "edr",
    "compliant",
    "last_check_in",
    "tags",
];

fn parse_csv(file: &Path, text: &str, issues: &mut Vec<InventoryIssue>) -> Vec<InventoryRecord> {
    // Excel writes a UTF-8 BOM; accept it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            issues.push(issue(file, Some(1), None, format!("header row: {e}")));
            return Vec::new();
        }
    };
    let mut col = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if !CSV_COLUMNS.contains(&h) {
            issues.push(issue(
                file,
                Some(1),
                None,
                format!(
                    "unknown column {h:?}; known columns: {}",
                    CSV_COLUMNS.join(", ")
                ),
            ));
        } else if col.insert(h.to_owned(), i).is_some() {
            issues.push(issue(
                file,
                Some(1),
                None,
                format!("column {h:?} appears twice"),
            ));
        }
    }
    if !col.contains_key("device_id") {
        issues.push(issue(
            file,
            Some(1),
            None,
            "the header row has no device_id column".into(),
        ));
        return Vec::new();
    }
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line());
                issues.push(issue(file, line, None, e.to_string()));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let get = |name: &str| col.get(name).and_then(|i| rec.get(*i)).unwrap_or("");
        let opt = |name: &str| Some(get(name).to_owned()).filter(|s| !s.is_empty());
        let mut errs = Vec::new();
        let mut boolean = |name: &str| {
            parse_bool(name, get(name)).unwrap_or_else(|e| {
                errs.push(e);
                None
            })
        };
        let managed = boolean("managed");
        let disk_encryption = boolean("disk_encryption");
        let screen_lock = boolean("screen_lock");
        let firewall = boolean("firewall");
        let antivirus = boolean("antivirus");
        let edr = boolean("edr");
        let compliant = boolean("compliant");
        let ownership = opt("ownership")
            .map(|s| s.parse::<Ownership>())
            .transpose()
            .unwrap_or_else(|e| {
                errs.push(e);
                None
            });
        let last_check_in = opt("last_check_in")
            .map(|s| parse_time(&s))
            .transpose()
            .unwrap_or_else(|e| {
                errs.push(e);
                None
            });
        let device_id = get("device_id").to_owned();
        if !valid_device_id(&device_id) {
            errs.push(format!(
                "device_id {device_id:?}: use 1–128 characters from A–Z a–z 0–9 . _ : @ -"
            ));
        }
        let tags = get("tags")
            .split([';', '|'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        if errs.is_empty() {
            out.push(InventoryRecord {
                device_id,
                managed,
                ownership,
                owner: opt("owner"),
                os: opt("os"),
                os_version: opt("os_version"),
                disk_encryption,
                screen_lock,
                firewall,
                antivirus,
                edr,
                compliant,
                last_check_in,
                tags,
                origin: format!("{}:{line}", file.display()),
            });
        } else {
            issues.extend(errs.into_iter().map(|m| issue(file, Some(line), None, m)));
        }
    }
    out
}

/// The reloadable inventory: lock-free reads, atomic swap on reload.
#[derive(Debug)]
pub struct InventoryStore {
    files: ArcSwap<Vec<PathBuf>>,
    current: ArcSwap<Inventory>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl InventoryStore {
    /// Load `files`; fails if any is broken (nothing is served from a half-read inventory).
    pub fn load(files: Vec<PathBuf>) -> Result<Self, InventoryError> {
        let inv = Inventory::load(&files)?;
        Ok(Self {
            files: ArcSwap::from_pointee(files),
            current: ArcSwap::from_pointee(inv),
            changed: tokio::sync::watch::channel(1).0,
        })
    }

    /// An empty inventory (no MDM export configured): every inventory fact is unknown.
    pub fn empty() -> Self {
        Self {
            files: ArcSwap::from_pointee(Vec::new()),
            current: ArcSwap::from_pointee(Inventory::default()),
            changed: tokio::sync::watch::channel(1).0,
        }
    }

    /// Re-read the files. On error the previous inventory stays in force and the error says why.
    pub fn reload(&self) -> Result<usize, InventoryError> {
        let files = self.files.load_full();
        let inv = Inventory::load(&files)?;
        let n = inv.len();
        self.current.store(Arc::new(inv));
        self.changed.send_modify(|g| *g += 1);
        Ok(n)
    }

    /// Replace the file list (configuration reload). On error nothing changes.
    pub fn reconfigure(&self, files: Vec<PathBuf>) -> Result<usize, InventoryError> {
        let inv = Inventory::load(&files)?;
        let n = inv.len();
        self.current.store(Arc::new(inv));
        self.files.store(Arc::new(files));
        self.changed.send_modify(|g| *g += 1);
        Ok(n)
    }

    /// Changes on every successful reload: long-lived connections re-evaluate posture and
    /// policy when it does (a device that turned non-compliant loses its connection).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Increases with every successful reload.
    pub fn generation(&self) -> u64 {
        *self.changed.borrow()
    }

    pub fn current(&self) -> Arc<Inventory> {
        self.current.load_full()
    }

    /// Whether `inventory` is the one in force (no reload since it was read).
    pub fn is_current(&self, inventory: &Arc<Inventory>) -> bool {
        Arc::ptr_eq(&self.current.load(), inventory)
    }

    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.files.load().as_ref().clone()
    }
}
