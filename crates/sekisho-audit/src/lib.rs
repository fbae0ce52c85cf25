//! # sekisho-audit — the audit trail auditors can trust and read
//!
//! What this crate is for:
//!
//! * the **record schema** ([`record`]): one JSON line per event — access decisions,
//!   logins, logouts, refreshes, step-up, device certificate failures, reloads,
//!   configuration errors, start/stop, and the writer's own rotation, retention, repair
//!   and recovery records;
//! * the **writer** ([`writer`]): a dedicated task with a bounded queue and group commit
//!   (fsync), `strict` or `batched` durability, hash chain (each record holds the SHA-256
//!   of the previous line, across files), rotation by size and by day, retention by age,
//!   torn-tail repair on start, fail-closed health when the disk cannot be written, and
//!   optional signed checkpoints ([`checkpoint`]) and syslog forwarding ([`syslog`]);
//! * the **auditor's tools**: [`verify`](verify::verify), [`query`](query::query),
//!   CSV/JSON lines/table output, and [`stats`](stats::stats).
//!
//! What it never does:
//!
//! * it has no field for tokens, cookies, passwords, secrets or bodies, and never
//!   records a URL query string unless the gateway passes one in (redacted) on purpose;
//! * it never rewrites or deletes a record: files are opened append-only; the only
//!   truncations are of bytes that never became a complete record (a torn last line
//!   on start, or a failed write), and each is recorded; whole files go only by the
//!   retention rule, and that is recorded too;
//! * it never blocks the caller on syslog, and never loses the local record because
//!   syslog is down;
//! * it does not depend on the other Sekisho crates: the gateway fills in plain data.
//!
//! # Using it from the gateway
//!
//! ```
//! use std::sync::Arc;
//! use sekisho_audit::{AccessEvent, AuditConfig, AuditError, AuditWriter, Decision, Durability,
//!     Event, StartEvent, StopEvent, SystemClock};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), AuditError> {
//! # let tmp = tempfile::tempdir().unwrap();
//! let mut config = AuditConfig::new(tmp.path(), "gw-1");
//! config.durability = Durability::Strict;
//! let (audit, writer_task) = AuditWriter::start(config, Arc::new(SystemClock))?;
//! audit.append(Event::Start(StartEvent { version: "0.1.0".into(), ..Default::default() })).await?;
//!
//! // Per request, after the decision and before forwarding:
//! let record = AccessEvent { request_id: "01JD…".into(), decision: Decision::Deny, ..Default::default() };
//! match audit.append(Event::Access(Box::new(record))).await {
//!     Ok(_receipt) => { /* forward (allow) or answer 403 (deny) */ }
//!     Err(_) => { /* fail closed: 503, the trail cannot be written */ }
//! }
//! assert!(audit.is_healthy()); // for /readyz; audit.metrics() for Prometheus
//!
//! // On shutdown, after the last request:
//! audit.shutdown(Some(Event::Stop(StopEvent { reason: "signal".into() }))).await?;
//! writer_task.await.expect("writer task")?;
//! assert!(sekisho_audit::verify(tmp.path())?.is_ok());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod clock;
mod error;
#[doc(hidden)] // test hook, see `AuditConfig::fault_injection`
pub mod fault;
pub mod files;
mod json;
pub mod query;
pub mod record;
pub mod stats;
pub mod syslog;
pub mod verify;
pub mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AuditError;
pub use record::{
    AccessEvent, AccessResultEvent, ConfigErrorEvent, ConfigReloadEvent, Decision,
    DeviceCertFailureEvent, DeviceInfo, Event, Frozen, LoginEvent, LoginFailureEvent, PostureFact,
    Reason, Record, SessionEvent, StartEvent, StepUpEvent, StopEvent, Text, UserInfo,
};
pub use verify::{VerifyOptions, VerifyReport, verify, verify_with};
pub use writer::{
    AuditConfig, AuditHandle, AuditMetrics, AuditWriter, CheckpointConfig, Durability, Health,
    MetricsSnapshot, PendingOutcome, Receipt, TryAppendError,
};
