//! The append-only writer: a dedicated task, a bounded queue, group commit with fsync.
//!
//! The gateway holds an [`AuditHandle`] (cheap to clone) and calls
//! [`AuditHandle::append`] for every event. A single writer task owns the files: it takes
//! records off the queue, gives them sequence numbers and the previous line's hash, writes
//! them, fsyncs, rotates, prunes, signs checkpoints and hands copies to the syslog
//! forwarder. File I/O runs on a blocking-pool thread so the request path never blocks.
//!
//! Failure handling: when a write or fsync fails, the file is cut back to the last
//! fsynced length (no torn or half-synced lines stay behind), the trail is marked
//! unhealthy and [`AuditHandle::append`] refuses new records until the writer, retrying on
//! its own, succeeds again and writes a `recovered` record.
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::checkpoint::{Checkpoint, SigningKey};
use crate::fault::FaultInjector;
use crate::files::{self, TrailFile};
use crate::record::{
    AccessResultEvent, Body, Event, GENESIS_PREV, OutcomeSlot, Record, RecoveredEvent,
    RepairedEvent, RetentionEvent, RotatedEvent, can_fold, format_time, frame, line_hash,
    set_line_hash,
};
use crate::syslog::{SyslogConfig, SyslogSender};
use crate::{AuditError, Clock};

/// When [`AuditHandle::append`] resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `append` resolves only after the record has been written and fsynced.
    Strict,
    /// `append` resolves once the record is accepted into the queue; it is written
    /// promptly and fsynced within `max_delay` or after `max_records` records,
    /// whichever comes first (plus the time of the fsync itself).
    Batched {
        /// Longest time a record waits for its fsync.
        max_delay: Duration,
        /// Most records that wait for one fsync.
        max_records: usize,
    },
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Batched {
            max_delay: Duration::from_millis(50),
            max_records: 512,
        }
    }
}

/// Signed checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Ed25519 PKCS#8 private key (PEM or DER). Keep it outside the log directory.
    pub key_path: PathBuf,
    /// Sidecar file the checkpoints are appended to. Default: `<dir>/checkpoints.jsonl`
    /// (set it elsewhere, e.g. another volume, to also detect removal of the sidecar).
    pub sidecar: Option<PathBuf>,
    /// A checkpoint after this many records … (default 10 000)
    pub every_records: u64,
    /// … or after this much time with new records (default 60 s), and always on shutdown.
    pub every: Duration,
}

impl CheckpointConfig {
    /// Defaults with the given key.
    pub fn new(key_path: impl Into<PathBuf>) -> Self {
        CheckpointConfig {
            key_path: key_path.into(),
            sidecar: None,
            every_records: 10_000,
            every: Duration::from_secs(60),
        }
    }
}

/// Writer configuration.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Directory of the trail (created if missing).
    pub dir: PathBuf,
    /// Gateway instance name written in every record (no newlines).
    pub instance: String,
    /// Strict or batched (default: batched, 50 ms / 512 records).
    pub durability: Durability,
    /// Queue length; `append` waits when it is full (default 8192).
    pub queue_capacity: usize,
    /// Rotate when the current file reaches this size (default 64 MiB).
    pub max_file_bytes: u64,
    /// Time zone of record times and of the day in file names (default Asia/Tokyo).
    pub time_zone: TimeZone,
    /// Delete files whose day is older than this many days; `None` keeps everything.
    /// Default 400 days: a full fiscal year (April–March) plus the months an audit of it
    /// takes. The operator chooses; municipal rules often ask for longer.
    pub retention_days: Option<u32>,
    /// How often the writer retries while the trail cannot be written (default 1 s).
    pub retry_interval: Duration,
    /// Signed checkpoints (default off).
    pub checkpoint: Option<CheckpointConfig>,
    /// Syslog forwarding (default off).
    pub syslog: Option<SyslogConfig>,
    /// Test hook: inject I/O faults. Never set in production.
    #[doc(hidden)]
    pub fault_injection: Option<FaultInjector>,
}

impl AuditConfig {
    /// Defaults for a trail in `dir`, written by `instance`.
    pub fn new(dir: impl Into<PathBuf>, instance: impl Into<String>) -> Self {
        AuditConfig {
            dir: dir.into(),
            instance: instance.into(),
            durability: Durability::default(),
            queue_capacity: 8192,
            max_file_bytes: 64 * 1024 * 1024,
            time_zone: TimeZone::get("Asia/Tokyo").unwrap_or(TimeZone::UTC),
            retention_days: Some(400),
            retry_interval: Duration::from_secs(1),
            checkpoint: None,
            syslog: None,
            fault_injection: None,
        }
    }
}

/// What [`AuditHandle::append`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// Strict mode: the record is on disk (fsynced).
    Durable {
        /// Its sequence number.
        seq: u64,
        /// Hash of its line.
        hash: String,
    },
    /// Batched mode: accepted; on disk within the configured bound.
    Queued,
}

/// Health of the trail, for `/readyz` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Records can be written.
    pub healthy: bool,
    /// Since when the trail has been failing.
    pub failing_since: Option<Timestamp>,
    /// The error that made it fail.
    pub error: Option<String>,
}

/// Counters for Prometheus. Read them with [`AuditHandle::metrics`].
#[derive(Debug, Default)]
pub struct AuditMetrics {
    /// Records written to the trail (fsynced or about to be).
    pub records_written: AtomicU64,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// Failed writes or fsyncs.
    pub write_errors: AtomicU64,
    /// Appends refused because the trail was unavailable or closed.
    pub rejected_appends: AtomicU64,
    /// fsyncs done.
    pub fsyncs: AtomicU64,
    /// Duration of the last fsync in microseconds.
    pub last_fsync_micros: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Checkpoints that could not be written.
    pub checkpoint_errors: AtomicU64,
    /// File rotations.
    pub rotations: AtomicU64,
    /// Records sent to syslog.
    pub syslog_sent: AtomicU64,
    /// Records not sent to syslog because its buffer was full (the local record is kept).
    pub syslog_dropped: AtomicU64,
    /// Syslog connection or write failures.
    pub syslog_errors: AtomicU64,
}

/// A copy of the counters plus the queue depth.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`AuditMetrics`].
    pub records_written: u64,
    /// See [`AuditMetrics`].
    pub bytes_written: u64,
    /// See [`AuditMetrics`].
    pub write_errors: u64,
    /// See [`AuditMetrics`].
    pub rejected_appends: u64,
    /// See [`AuditMetrics`].
    pub fsyncs: u64,
    /// See [`AuditMetrics`].
    pub last_fsync_micros: u64,
    /// See [`AuditMetrics`].
    pub checkpoints: u64,
    /// See [`AuditMetrics`].
    pub checkpoint_errors: u64,
    /// See [`AuditMetrics`].
    pub rotations: u64,
    /// See [`AuditMetrics`].
    pub syslog_sent: u64,
    /// See [`AuditMetrics`].
    pub syslog_dropped: u64,
    /// See [`AuditMetrics`].
    pub syslog_errors: u64,
    /// Records waiting in the queue.
    pub queue_depth: u64,
    /// The trail is writable.
    pub healthy: bool,
}

struct Shared {
    healthy: AtomicBool,
    closed: AtomicBool,
    metrics: Arc<AuditMetrics>,
    health: watch::Sender<Health>,
    strict: bool,
}

type Ack = oneshot::Sender<Result<Receipt, AuditError>>;
type Batch = Vec<(Body, Option<Ack>)>;

enum Msg {
    Append {
        body: Body,
        ack: Option<Ack>,
    },
    Shutdown {
        stop: Option<Body>,
        ack: oneshot::Sender<Result<(), AuditError>>,
    },
}

/// The gateway's end of the trail. Cheap to clone.
#[derive(Clone)]
pub struct AuditHandle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditHandle")
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}

/// Where the outcome of a forwarded request goes: from
/// [`AuditHandle::append_awaiting_outcome`].
#[derive(Debug)]
pub struct PendingOutcome(Arc<OutcomeSlot>);

impl PendingOutcome {
    /// Puts the outcome into the request's `access` record if the writer has not written
    /// that record yet (one line for the request). Otherwise — or if `result` carries an
    /// error, which an `access` record has no field for — hands `result` back, and the
    /// caller appends it as an `access_result` record of its own.
    pub fn fold(self, result: AccessResultEvent) -> Result<(), AccessResultEvent> {
        self.0.offer(result)
    }
}

/// Why [`AuditHandle::try_append`] did not take a record.
#[derive(Debug)]
pub enum TryAppendError {
    /// The queue is full: the record is handed back so the caller can wait with
    /// [`AuditHandle::append`] instead.
    Full(Box<Event>),
    /// The trail cannot take records (closed, or failing: the gateway fails closed).
    Failed(AuditError),
}

impl AuditHandle {
    /// Append one record. Fails fast (→ 503) while the trail is unavailable.
    ///
    /// The event is serialised here, on the caller's thread, once the queue has room for it
    /// (see [`Body`] for why).
    pub async fn append(&self, event: Event) -> Result<Receipt, AuditError> {
        self.append_with(event, false).await.map(|(r, _)| r)
    }

    /// [`AuditHandle::append`] for an allowed `access` record whose outcome (status, bytes,
    /// duration) is known only after forwarding. In `batched` mode it also returns a
    /// [`PendingOutcome`]: the outcome given to it goes into this record's own line if the
    /// writer has not written it yet.
    pub async fn append_awaiting_outcome(
        &self,
        event: Event,
    ) -> Result<(Receipt, Option<PendingOutcome>), AuditError> {
        self.append_with(event, true).await
    }

    async fn append_with(
        &self,
        event: Event,
        outcome: bool,
    ) -> Result<(Receipt, Option<PendingOutcome>), AuditError> {
        self.admit()?;
        // Batched: queueing is the whole wait. Try without the async machinery first; only a
        // full queue makes the caller wait for room.
        let permit = match self.tx.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Full(())) => self
                .tx
                .reserve()
                .await
                .map_err(|_| self.rejected(AuditError::Closed))?,
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(self.rejected(AuditError::Closed));
            }
        };
        let (body, pending) = self.body(&event, outcome);
        drop(event);
        if self.shared.strict {
            let (ack, rx) = oneshot::channel();
            permit.send(Msg::Append {
                body,
                ack: Some(ack),
            });
            Ok((rx.await.map_err(|_| AuditError::Closed)??, None))
        } else {
            permit.send(Msg::Append { body, ack: None });
            Ok((Receipt::Queued, pending))
        }
    }

    /// Queue a record without waiting, in either durability mode — for records nobody waits
    /// on, written after the fact (an access result when the response body has ended). The
    /// writer still writes it in order and, in `strict` mode, fsyncs it with its batch; a
    /// caller that needs the fsync before going on uses [`AuditHandle::append`].
    ///
    /// Why it exists: spawning a task per request just to `append` an access result cost a
    /// task, a wake-up and a timer per request on the gateway's busiest path.
    pub fn try_append(&self, event: Event) -> Result<Receipt, TryAppendError> {
        self.try_append_with(event, false).map(|(r, _)| r)
    }

    /// [`AuditHandle::try_append`] with a [`PendingOutcome`], as
    /// [`AuditHandle::append_awaiting_outcome`] gives. For `batched` mode: in `strict` mode
    /// the record is only queued here, and no outcome place is made.
    pub fn try_append_awaiting_outcome(
        &self,
        event: Event,
    ) -> Result<(Receipt, Option<PendingOutcome>), TryAppendError> {
        self.try_append_with(event, true)
    }

    fn try_append_with(
        &self,
        event: Event,
        outcome: bool,
    ) -> Result<(Receipt, Option<PendingOutcome>), TryAppendError> {
        self.admit().map_err(TryAppendError::Failed)?;
        match self.tx.try_reserve() {
            Ok(permit) => {
                let (body, pending) = self.body(&event, outcome);
                permit.send(Msg::Append { body, ack: None });
                Ok((Receipt::Queued, pending))
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(TryAppendError::Full(Box::new(event))),
            Err(mpsc::error::TrySendError::Closed(())) => {
                Err(TryAppendError::Failed(self.rejected(AuditError::Closed)))
            }
        }
    }

    /// The serialised record, with a place for its outcome when one was asked for and can
    /// be folded. In `strict` mode the record is on disk before the caller goes on, so no
    /// outcome could arrive first: no place is made.
    fn body(&self, event: &Event, outcome: bool) -> (Body, Option<PendingOutcome>) {
        let slot =
            (outcome && !self.shared.strict && can_fold(event)).then(Arc::<OutcomeSlot>::default);
        let pending = slot.clone().map(PendingOutcome);
        (Body::with_outcome(event, slot), pending)
    }

    /// Refuses at once while the trail is closed or failing (counted as a rejected append).
    fn admit(&self) -> Result<(), AuditError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(self.rejected(AuditError::Closed));
        }
        if !self.shared.healthy.load(Ordering::Acquire) {
            let why = self
                .shared
                .health
                .borrow()
                .error
                .clone()
                .unwrap_or_default();
            return Err(self.rejected(AuditError::Unavailable(why)));
        }
        Ok(())
    }

    fn rejected(&self, e: AuditError) -> AuditError {
        self.shared
            .metrics
            .rejected_appends
            .fetch_add(1, Ordering::Relaxed);
        e
    }

    /// `append` waits for the fsync (`strict`); otherwise only for room in the queue.
    pub fn is_strict(&self) -> bool {
        self.shared.strict
    }

    /// Records can be written right now.
    pub fn is_healthy(&self) -> bool {
        self.shared.healthy.load(Ordering::Acquire) && !self.shared.closed.load(Ordering::Acquire)
    }

    /// Current health.
    pub fn health(&self) -> Health {
        self.shared.health.borrow().clone()
    }

    /// Watch health changes (for `/readyz` and error logs).
    pub fn subscribe_health(&self) -> watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// The counters, for Prometheus.
    pub fn metrics(&self) -> MetricsSnapshot {
        let m = &self.shared.metrics;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            records_written: l(&m.records_written),
            bytes_written: l(&m.bytes_written),
            write_errors: l(&m.write_errors),
            rejected_appends: l(&m.rejected_appends),
            fsyncs: l(&m.fsyncs),
            last_fsync_micros: l(&m.last_fsync_micros),
            checkpoints: l(&m.checkpoints),
            checkpoint_errors: l(&m.checkpoint_errors),
            rotations: l(&m.rotations),
            syslog_sent: l(&m.syslog_sent),
            syslog_dropped: l(&m.syslog_dropped),
            syslog_errors: l(&m.syslog_errors),
            queue_depth: (self.tx.max_capacity() - self.tx.capacity()) as u64,
            healthy: self.is_healthy(),
        }
    }

    /// Write `stop` (if given) after everything already queued, fsync, write a final
    /// checkpoint and end the writer task. Later appends fail with [`AuditError::Closed`].
    pub async fn shutdown(&self, stop: Option<Event>) -> Result<(), AuditError> {
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Msg::Shutdown {
                stop: stop.as_ref().map(Body::of),
                ack,
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// [`AuditHandle::shutdown`], giving up after `limit`: a disk that stops answering (a
    /// dead NFS server, a failing device) must not keep the gateway from stopping. What was
    /// fsynced before stays verifiable; a line cut short is what `verify` reports and the
    /// writer repairs, recording that it did, on the next start.
    pub async fn shutdown_within(
        &self,
        stop: Option<Event>,
        limit: Duration,
    ) -> Result<(), AuditError> {
        match tokio::time::timeout(limit, self.shutdown(stop)).await {
            Ok(r) => r,
            Err(_) => Err(AuditError::Unavailable(format!(
                "the trail did not close within {limit:?} (the disk is not answering)"
            ))),
        }
    }
}

/// How long the batched writer lets records gather before a write: a tenth of `max_delay`,
/// between 0.5 and 5 ms (5 ms for the default 50 ms). Each gathering costs the writer one
/// wake-up and two context switches on a CPU the request path also needs, so fewer, fuller
/// batches are cheaper; records still reach the file long before their fsync is due.
fn gather(max_delay: Duration) -> Duration {
    (max_delay / 10).clamp(Duration::from_micros(500), Duration::from_millis(5))
}

/// Capacity of the unsynced-lines buffer kept between fsyncs: about 700 access records.
const UNSYNCED_KEPT: usize = 1 << 20;

/// Starts the writer task.
pub struct AuditWriter;

impl AuditWriter {
    /// Open (and if needed repair) the trail in `config.dir` and start the writer task.
    ///
    /// Must be called inside a tokio runtime. The returned task ends after
    /// [`AuditHandle::shutdown`] or when every handle has been dropped.
    pub fn start(
        config: AuditConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(AuditHandle, JoinHandle<Result<(), AuditError>>), AuditError> {
        if config.instance.is_empty() || config.instance.contains(['\n', '\r']) {
            return Err(AuditError::Config(
                "instance must be a non-empty single line".into(),
            ));
        }
        if config.queue_capacity == 0 {
            return Err(AuditError::Config(
                "queue_capacity must be at least 1".into(),
            ));
        }
        let metrics = Arc::new(AuditMetrics::default());
        let syslog = match &config.syslog {
            Some(s) => Some(crate::syslog::start(s.clone(), metrics.clone())?),
            None => None,
        };
        let (health, _) = watch::channel(Health {
            healthy: true,
            failing_since: None,
            error: None,
        });
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            metrics,
            health,
            strict: config.durability == Durability::Strict,
        });
        let inner = Inner::open(config, clock, shared.clone(), syslog)?;
        let (tx, rx) = mpsc::channel(inner.cfg.queue_capacity);
        let rt = tokio::runtime::Handle::current();
        let task = tokio::task::spawn_blocking(move || inner.run(rx, rt));
        Ok((AuditHandle { tx, shared }, task))
    }
}

struct Down {
    since: Timestamp,
    error: String,
    rejected_before: u64,
}

struct Inner {
    cfg: AuditConfig,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    syslog: Option<SyslogSender>,
    fault: FaultInjector,
    signer: Option<SigningKey>,
    sidecar: Option<PathBuf>,

    current: TrailFile,
    file: File,
    /// Bytes of the current file known to be fsynced.
    synced_len: u64,
    /// Bytes of the current file written (≥ synced_len).
    written_len: u64,
    /// Encoded lines not yet fsynced (batched mode keeps them to re-write after a failure).
    unsynced: Vec<u8>,
    unsynced_records: usize,
    first_unsynced: Option<Instant>,
    /// Batched records taken off the queue but not yet framed, oldest first, each with the
    /// instant its gathering began: a record whose response is still running is held for
    /// a moment so its outcome can join its line (see [`Inner::ready`]).
    held: VecDeque<(Body, Option<Ack>, Instant)>,
    /// The instance name as a JSON string, escaped once for every record's envelope.
    instance_json: String,
    /// Encoded lines that must be written before anything else (after a failure).
    rewrite_needed: bool,

    seq: u64,
    prev: String,
    last_cp_seq: u64,
    last_cp_at: Instant,
    down: Option<Down>,
    /// Held for the writer's lifetime (advisory lock on `.writer.lock`).
    _lock: File,
}

impl Inner {
    fn open(
        cfg: AuditConfig,
        clock: Arc<dyn Clock>,
        shared: Arc<Shared>,
        syslog: Option<SyslogSender>,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|e| AuditError::io(&cfg.dir, e))?;
        // One writer per directory: two would fork the chain.
        let lock_path = cfg.dir.join(".writer.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AuditError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Config(format!(
                    "another writer is using {} (each gateway instance needs its own audit directory)",
                    cfg.dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::io(&lock_path, e)),
        }
        let signer = match &cfg.checkpoint {
            Some(c) => {
                refuse_key_inside(&cfg.dir, &c.key_path)?;
                Some(SigningKey::load(&c.key_path)?)
            }
            None => None,
        };
        let sidecar = cfg.checkpoint.as_ref().map(|c| {
            c.sidecar
                .clone()
                .unwrap_or_else(|| cfg.dir.join("checkpoints.jsonl"))
        });
        let fault = cfg.fault_injection.clone().unwrap_or_default();
        let today = clock.now().to_zoned_datetime(cfg.time_zone.clone()).date();

        let existing = files::list(&cfg.dir)?;
        let mut repaired = None;
        let (seq, prev, last_file) = match existing.last() {
            None => (0, GENESIS_PREV.to_string(), None),
            Some(last) => {
                repaired = repair_torn_tail(&last.path)?;
                let (seq, prev) = last_record(&existing)?;
                (seq, prev, Some(last.clone()))
            }
        };
        if let Some(path) = &sidecar {
            check_against_last_checkpoint(path, seq, &prev)?;
        }
        let (current, rotate_reason) = match last_file {
            // Same day — or the clock went back: never write into an earlier file.
            Some(f) if f.date >= today => {
                let len = std::fs::metadata(&f.path)
                    .map_err(|e| AuditError::io(&f.path, e))?
                    .len();
                if len >= cfg.max_file_bytes {
                    let path = cfg.dir.join(files::file_name(f.date, f.index + 1));
                    (
                        TrailFile {
                            date: f.date,
                            index: f.index + 1,
                            path,
                        },
                        Some((f, "size")),
                    )
                } else {
                    (f, None)
                }
            }
            Some(f) => {
                let path = cfg.dir.join(files::file_name(today, 1));
                (
                    TrailFile {
                        date: today,
                        index: 1,
                        path,
                    },
                    Some((f, "day")),
                )
            }
            None => {
                let path = cfg.dir.join(files::file_name(today, 1));
                (
                    TrailFile {
                        date: today,
                        index: 1,
                        path,
                    },
                    None,
                )
            }
        };
        let file = open_append(&current.path)?;
        let len = file
            .metadata()
            .map_err(|e| AuditError::io(&current.path, e))?
            .len();
        sync_dir(&cfg.dir);
        let instance_json = serde_json::to_string(&cfg.instance)
            .map_err(|e| AuditError::Config(format!("instance: {e}")))?;
        let mut inner = Inner {
            cfg,
            clock,
            shared,
            syslog,
            fault,
            signer,
            sidecar,
            current,
            file,
            synced_len: len,
            written_len: len,
            unsynced: Vec::new(),
            unsynced_records: 0,
            instance_json,
            first_unsynced: None,
            held: VecDeque::new(),
            rewrite_needed: false,
            seq,
            prev,
            last_cp_seq: seq,
            last_cp_at: Instant::now(),
            down: None,
            _lock: lock,
        };
        let mut startup = Vec::new();
        if let Some((prev_file, reason)) = rotate_reason {
            startup.push(Body::of(&Event::Rotated(RotatedEvent {
                previous_file: prev_file.name(),
                reason: reason.into(),
            })));
        }
        if let Some(r) = repaired {
            startup.push(Body::of(&Event::Repaired(r)));
        }
        if !startup.is_empty() {
            inner.commit(startup, true).map_err(|e| inner.io_err(e))?;
        }
        inner.prune().map_err(|e| inner.io_err(e))?;
        Ok(inner)
    }

    fn io_err(&self, e: std::io::Error) -> AuditError {
        AuditError::io(&self.current.path, e)
    }

    fn run(
        mut self,
        mut rx: mpsc::Receiver<Msg>,
        rt: tokio::runtime::Handle,
    ) -> Result<(), AuditError> {
        loop {
            let timeout = self.next_deadline();
            let first = match timeout {
                None => rx.blocking_recv(),
                Some(d) => match rt.block_on(async { tokio::time::timeout(d, rx.recv()).await }) {
                    Ok(m) => m,
                    Err(_) => {
                        self.on_tick();
                        continue;
                    }
                },
            };
            let Some(first) = first else {
                // Every handle is gone.
                self.write_ready(Instant::now(), true);
                let res = self.close(None);
                self.finish_syslog(&rt);
                return res;
            };
            let round = Instant::now();
            // Batched mode: an append resolves once queued, so the writer may let records
            // gather for a moment before writing. Sleeping (rather than waiting on the
            // queue) means senders do not wake this thread once per record; it bounds the
            // wake-ups to about one per gathering and makes each write carry many records.
            if let Durability::Batched { max_delay, .. } = self.cfg.durability
                && self.down.is_none()
                && matches!(first, Msg::Append { .. })
                && rx.len() < 64
            {
                // Never past a deadline already running (a held record's, an fsync's).
                let nap = self
                    .next_deadline()
                    .map_or(gather(max_delay), |d| d.min(gather(max_delay)));
                std::thread::sleep(nap);
            }
            let mut batch = Vec::new();
            let mut shutdown = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append { body, ack } => batch.push((body, ack)),
                    Msg::Shutdown { stop, ack } => {
                        shutdown = Some((stop, ack));
                        break;
                    }
                }
                if batch.len() >= 4096 {
                    break;
                }
                next = rx.try_recv().ok();
            }
            self.held
                .extend(batch.into_iter().map(|(body, ack)| (body, ack, round)));
            self.write_ready(round, shutdown.is_some());
            if let Some((stop, ack)) = shutdown {
                self.shared.closed.store(true, Ordering::Release);
                rx.close();
                // Records accepted before the queue closed are still written, including
                // those whose sender holds a reserved slot and is still serialising: after
                // `close`, `blocking_recv` waits for every such slot to be used or given up
                // and only then returns `None`.
                let mut rest = Vec::new();
                while let Some(msg) = rx.blocking_recv() {
                    match msg {
                        Msg::Append { body, ack } => rest.push((body, ack)),
                        Msg::Shutdown { ack, .. } => {
                            let _ = ack.send(Err(AuditError::Closed));
                        }
                    }
                }
                if !rest.is_empty() {
                    self.handle_batch(rest);
                }
                let res = self.close(stop);
                self.finish_syslog(&rt);
                let reply = match &res {
                    Ok(()) => Ok(()),
                    Err(e) => Err(AuditError::Unavailable(e.to_string())),
                };
                let _ = ack.send(reply);
                return res;
            }
            self.on_tick();
        }
    }

    /// How long a batched record still waiting for its outcome may be held back, counted
    /// from when it was taken off the queue: four fifths of `max_delay` (40 ms by default),
    /// which leaves a fifth (more than one gathering) for the write before the fsync
    /// deadline, itself counted from the same instant. Nothing is held in `strict` mode (no
    /// record there waits for an outcome) or while the trail is down.
    ///
    /// Why not less: under load a response takes as long as the queue of requests ahead of
    /// it. At 256 connections responses took 15–20 ms, and with a hold of a fifth (10 ms)
    /// 78 % of allowed requests still made a second record (`access_result`); with four
    /// fifths, 0.3 %. Holding longer costs no durability (the deadline is unchanged), only
    /// memory (bounded by the queue's capacity) and lateness of `time` (documented).
    fn hold(&self) -> Duration {
        match self.cfg.durability {
            Durability::Batched { max_delay, .. } if self.down.is_none() => max_delay * 4 / 5,
            _ => Duration::ZERO,
        }
    }

    /// Frames and writes the held records that are ready: from the oldest on, up to the
    /// first one whose response is still running and that was taken less than
    /// [`Inner::hold`] ago (`all`: every one, for shutdown). Order is kept: a held record holds
    /// back those queued after it.
    ///
    /// Why: a record taken off the queue while its response is still running is written
    /// without its outcome, and the outcome then costs a record of its own (an
    /// `access_result`: another serialisation, envelope, hash and write). Under load about
    /// half of all allowed requests went that way; held for a moment, nearly all of
    /// them end in time and their outcome joins their own line. The bound on durability
    /// stays: the fsync deadline counts from when the oldest record was taken (`first`).
    fn write_ready(&mut self, first: Instant, all: bool) {
        // Held records have a bound of their own, the queue's capacity: past it, nothing is
        // held. (A taken record frees its queue slot, so at most twice the capacity is in
        // memory: the queue and the held records.)
        let hold = if all || self.held.len() > self.cfg.queue_capacity {
            Duration::ZERO
        } else {
            self.hold()
        };
        let now = Instant::now();
        let cut = self
            .held
            .iter()
            .position(|(body, _, taken)| {
                body.awaiting_outcome() && now.saturating_duration_since(*taken) < hold
            })
            .unwrap_or(self.held.len());
        if cut == 0 {
            return;
        }
        let oldest = self.held.front().map_or(first, |(_, _, t)| (*t).min(first));
        let ready: Batch = self
            .held
            .drain(..cut)
            .map(|(body, ack, _)| (body, ack))
            .collect();
        self.handle_batch(ready);
        if let Some(f) = &mut self.first_unsynced {
            *f = (*f).min(oldest);
        }
    }

    /// How long to wait for the next message before doing timed work.
    fn next_deadline(&self) -> Option<Duration> {
        let mut d: Option<Duration> = None;
        if self.down.is_some() {
            // While down, nothing else can be done but retrying, and not in a tight loop.
            return Some(self.cfg.retry_interval);
        }
        let mut consider = |x: Duration| d = Some(d.map_or(x, |y| y.min(x)));
        if let Some((_, _, taken)) = self.held.front() {
            consider((*taken + self.hold()).saturating_duration_since(Instant::now()));
        }
        if let (Some(first), Durability::Batched { max_delay, .. }) =
            (self.first_unsynced, self.cfg.durability)
        {
            consider((first + max_delay).saturating_duration_since(Instant::now()));
        }
        if let Some(c) = &self.cfg.checkpoint
            && self.seq > self.last_cp_seq
        {
            consider((self.last_cp_at + c.every).saturating_duration_since(Instant::now()));
        }
        d
    }

    /// Timed work: retry after a failure, write held records that are due, fsync a due
    /// batch, checkpoint.
    fn on_tick(&mut self) {
        // While down the hold is zero: held records all go to `handle_batch`, which keeps
        // them ahead of its retry's `recovered` (they were accepted before the failure).
        if self.down.is_some() && self.held.is_empty() {
            self.try_recover();
        }
        if !self.held.is_empty() {
            self.write_ready(Instant::now(), false);
        }
        if self.down.is_some() {
            return;
        }
        if let Durability::Batched {
            max_delay,
            max_records,
        } = self.cfg.durability
            && let Some(first) = self.first_unsynced
            && (first.elapsed() >= max_delay || self.unsynced_records >= max_records)
            && let Err(e) = self.sync()
        {
            self.fail(e);
            return;
        }
        self.maybe_checkpoint(false);
    }

    fn handle_batch(&mut self, batch: Batch) {
        let strict = self.cfg.durability == Durability::Strict;
        if self.down.is_some() {
            if !strict {
                // Batched records taken while down were accepted before the trail failed (a
                // failing trail accepts nothing): keep them first, so that they come before
                // the `recovered` record of the retry, as they came before the failure.
                self.refuse_or_keep(batch);
                self.try_recover();
                return;
            }
            // Try once more now; if still failing, strict callers hear so.
            self.try_recover();
            if self.down.is_some() {
                return self.refuse_or_keep(batch);
            }
        }
        if let Err(e) = self.maybe_rotate() {
            self.fail(e);
            return self.refuse_or_keep(batch);
        }
        let (bodies, acks): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let before = (
            self.seq,
            self.prev.clone(),
            self.unsynced.len(),
            self.unsynced_records,
        );
        match self.commit(bodies, strict) {
            Ok(receipts) => {
                for (ack, r) in acks.into_iter().zip(receipts) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(r));
                    }
                }
            }
            Err(e) => {
                if strict {
                    // The callers are told it failed (the gateway answers 503), so these
                    // records must not appear later: forget them.
                    self.seq = before.0;
                    self.prev = before.1;
                    self.unsynced.truncate(before.2);
                    self.unsynced_records = before.3;
                    if self.unsynced.is_empty() {
                        self.first_unsynced = None;
                    }
                    if self.file.set_len(self.synced_len).is_ok() {
                        self.written_len = self.synced_len;
                    }
                }
                let msg = e.to_string();
                self.fail(e);
                for ack in acks.into_iter().flatten() {
                    self.shared
                        .metrics
                        .rejected_appends
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = ack.send(Err(AuditError::Unavailable(msg.clone())));
                }
            }
        }
    }

    /// While the trail is down: strict callers hear so; batched records (already
    /// acknowledged) are kept in memory and written on recovery.
    fn refuse_or_keep(&mut self, batch: Batch) {
        let why = self
            .down
            .as_ref()
            .map(|d| d.error.clone())
            .unwrap_or_default();
        let mut keep = Vec::new();
        for (body, ack) in batch {
            match ack {
                Some(ack) => {
                    self.shared
                        .metrics
                        .rejected_appends
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = ack.send(Err(AuditError::Unavailable(why.clone())));
                }
                None => keep.push(body),
            }
        }
        if !keep.is_empty() {
            let now = self.clock.now();
            for body in keep {
                self.encode(&body, now);
            }
        }
    }

    /// Give the record a sequence number and hash and add it to `unsynced`.
    fn encode(&mut self, body: &Body, now: Timestamp) {
        let time = format_time(now, &self.cfg.time_zone);
        self.encode_at(body, &time);
    }

    /// Appends one line to `unsynced`: framed straight into the buffer and hashed there, the
    /// new `prev` written over the old one (no per-record allocation for the line, the time
    /// or the hash).
    fn encode_at(&mut self, body: &Body, time: &str) {
        self.seq += 1;
        let start = self.unsynced.len();
        frame(
            &mut self.unsynced,
            self.seq,
            time,
            &self.instance_json,
            &self.prev,
            body,
        );
        set_line_hash(&mut self.prev, &self.unsynced[start..]);
        self.unsynced.push(b'\n');
        self.unsynced_records += 1;
        if self.first_unsynced.is_none() {
            self.first_unsynced = Some(Instant::now());
        }
    }

    /// Encode, write, and fsync when asked to or when due.
    fn commit(&mut self, bodies: Vec<Body>, force_sync: bool) -> std::io::Result<Vec<Receipt>> {
        // One timestamp per batch: the records of a batch are made in the same instant.
        let time = format_time(self.clock.now(), &self.cfg.time_zone);
        let start = self.unsynced.len();
        // Only strict callers wait for a receipt; batched ones were answered when queued.
        let strict = self.cfg.durability == Durability::Strict;
        let mut receipts = Vec::with_capacity(if strict { bodies.len() } else { 0 });
        for b in &bodies {
            self.encode_at(b, &time);
            if strict {
                receipts.push(Receipt::Durable {
                    seq: self.seq,
                    hash: self.prev.clone(),
                });
            }
        }
        if self.rewrite_needed {
            self.rewrite()?;
        } else {
            let r = self
                .fault
                .write_all(&mut self.file, &self.unsynced[start..]);
            match r {
                Ok(()) => self.written_len += (self.unsynced.len() - start) as u64,
                Err(e) => {
                    self.rewrite_needed = true;
                    return Err(e);
                }
            }
        }
        let due = match self.cfg.durability {
            Durability::Strict => true,
            Durability::Batched { max_records, .. } => self.unsynced_records >= max_records,
        };
        if force_sync || due {
            self.sync()?;
        }
        Ok(receipts)
    }

    /// After a failure: cut the file back to what was fsynced and write `unsynced` again.
    fn rewrite(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.synced_len)?;
        self.file.seek(SeekFrom::End(0))?;
        self.written_len = self.synced_len;
        let buf = self.unsynced.clone();
        self.fault.write_all(&mut self.file, &buf)?;
        self.written_len += buf.len() as u64;
        self.rewrite_needed = false;
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        if self.rewrite_needed {
            self.rewrite()?;
        }
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let t = Instant::now();
        if let Err(e) = self.fault.sync(&self.file) {
            // After a failed fsync the page cache cannot be trusted: write again.
            self.rewrite_needed = true;
            return Err(e);
        }
        let m = &self.shared.metrics;
        m.last_fsync_micros
            .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        m.fsyncs.fetch_add(1, Ordering::Relaxed);
        m.records_written
            .fetch_add(self.unsynced_records as u64, Ordering::Relaxed);
        m.bytes_written
            .fetch_add(self.unsynced.len() as u64, Ordering::Relaxed);
        self.synced_len = self.written_len;
        self.unsynced_records = 0;
        self.first_unsynced = None;
        if let Some(s) = &self.syslog {
            for line in self
                .unsynced
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
            {
                s.offer(line);
            }
        }
        // Keep the buffer for the next batch (it regrew from nothing, with its copies, after
        // every fsync) unless a burst made it large.
        self.unsynced.clear();
        self.unsynced.shrink_to(UNSYNCED_KEPT);
        Ok(())
    }

    fn fail(&mut self, e: std::io::Error) {
        self.shared
            .metrics
            .write_errors
            .fetch_add(1, Ordering::Relaxed);
        // Cut off whatever part of the failed write reached the file right away, so no
        // torn line stays behind even if the process dies before writing works again.
        // Complete lines written before (not yet fsynced) stay: they may still reach the
        // disk; on recovery everything after the last fsync is written again anyway.
        self.rewrite_needed = true;
        let _ = self.file.set_len(self.written_len);
        tracing::error!(error = %e, file = %self.current.path.display(), "audit trail cannot be written; refusing requests until it can");
        if self.down.is_none() {
            let since = self.clock.now();
            self.down = Some(Down {
                since,
                error: e.to_string(),
                rejected_before: self.shared.metrics.rejected_appends.load(Ordering::Relaxed),
            });
            self.shared.healthy.store(false, Ordering::Release);
            self.shared.health.send_replace(Health {
                healthy: false,
                failing_since: Some(since),
                error: Some(e.to_string()),
            });
        }
    }

    fn try_recover(&mut self) {
        let Some(down) = &self.down else { return };
        let rec = RecoveredEvent {
            failed_since: format_time(down.since, &self.cfg.time_zone),
            error: down.error.clone(),
            rejected_appends: self
                .shared
                .metrics
                .rejected_appends
                .load(Ordering::Relaxed)
                .saturating_sub(down.rejected_before),
        };
        let before = (
            self.seq,
            self.prev.clone(),
            self.unsynced.len(),
            self.unsynced_records,
        );
        self.rewrite_needed = true;
        match self.commit(vec![Body::of(&Event::Recovered(rec))], true) {
            Ok(_) => {
                tracing::info!("audit trail writable again");
                self.down = None;
                self.shared.healthy.store(true, Ordering::Release);
                self.shared.health.send_replace(Health {
                    healthy: true,
                    failing_since: None,
                    error: None,
                });
            }
            Err(_) => {
                // Forget the recovered record; keep the accepted ones.
                self.seq = before.0;
                self.prev = before.1;
                self.unsynced.truncate(before.2);
                self.unsynced_records = before.3;
                if self.unsynced.is_empty() {
                    self.first_unsynced = None;
                }
                self.shared
                    .metrics
                    .write_errors
                    .fetch_add(1, Ordering::Relaxed);
                let _ = self.file.set_len(self.synced_len);
                self.rewrite_needed = true;
            }
        }
    }

    fn maybe_rotate(&mut self) -> std::io::Result<()> {
        let today = self
            .clock
            .now()
            .to_zoned_datetime(self.cfg.time_zone.clone())
            .date();
        let reason = if today > self.current.date {
            "day"
        } else if self.written_len >= self.cfg.max_file_bytes {
            "size"
        } else {
            return Ok(());
        };
        self.sync()?;
        // If the clock went back, stay on the current file's day: names must keep order.
        let (date, index) = if today > self.current.date {
            (today, 1)
        } else {
            (self.current.date, self.current.index + 1)
        };
        let next = TrailFile {
            date,
            index,
            path: self.cfg.dir.join(files::file_name(date, index)),
        };
        let file = open_append(&next.path).map_err(|e| match e {
            AuditError::Io { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        })?;
        let previous = std::mem::replace(&mut self.current, next);
        let old = std::mem::replace(&mut self.file, file);
        drop(old);
        let len = self.file.metadata()?.len();
        self.synced_len = len;
        self.written_len = len;
        sync_dir(&self.cfg.dir);
        self.shared
            .metrics
            .rotations
            .fetch_add(1, Ordering::Relaxed);
        self.commit(
            vec![Body::of(&Event::Rotated(RotatedEvent {
                previous_file: previous.name(),
                reason: reason.into(),
            }))],
            true,
        )?;
        if reason == "day" {
            self.prune()?;
        }
        Ok(())
    }

    /// Retention: record which files go, fsync that record, then delete them.
    fn prune(&mut self) -> std::io::Result<()> {
        let Some(days) = self.cfg.retention_days else {
            return Ok(());
        };
        let today = self
            .clock
            .now()
            .to_zoned_datetime(self.cfg.time_zone.clone())
            .date();
        let Ok(cutoff) = today.checked_sub(i64::from(days).days()) else {
            return Ok(());
        };
        let all = files::list(&self.cfg.dir).map_err(|e| std::io::Error::other(e.to_string()))?;
        let old: Vec<TrailFile> = all
            .into_iter()
            .filter(|f| f.date < cutoff && f.path != self.current.path)
            .collect();
        let Some(newest) = old.last() else {
            return Ok(());
        };
        let through = match last_record(std::slice::from_ref(newest)) {
            Ok((seq, _)) => seq,
            Err(_) => 0,
        };
        self.commit(
            vec![Body::of(&Event::Retention(RetentionEvent {
                removed: old.iter().map(TrailFile::name).collect(),
                removed_through_seq: through,
                retention_days: days,
            }))],
            true,
        )?;
        for f in &old {
            std::fs::remove_file(&f.path)?;
        }
        sync_dir(&self.cfg.dir);
        Ok(())
    }

    fn maybe_checkpoint(&mut self, force: bool) {
        let Some(c) = &self.cfg.checkpoint else {
            return;
        };
        if self.seq == self.last_cp_seq || !self.unsynced.is_empty() || self.down.is_some() {
            return;
        }
        let due = force
            || self.seq - self.last_cp_seq >= c.every_records
            || self.last_cp_at.elapsed() >= c.every;
        if !due {
            return;
        }
        let (Some(signer), Some(sidecar)) = (&self.signer, &self.sidecar) else {
            return;
        };
        let mut cp = Checkpoint {
            seq: self.seq,
            file: self.current.name(),
            hash: self.prev.clone(),
            time: format_time(self.clock.now(), &self.cfg.time_zone),
            instance: self.cfg.instance.clone(),
            sig: String::new(),
        };
        signer.sign(&mut cp);
        let res = (|| -> std::io::Result<Vec<u8>> {
            let mut line = serde_json::to_vec(&cp)?;
            line.push(b'\n');
            let mut f = private_options().create(true).append(true).open(sidecar)?;
            std::io::Write::write_all(&mut f, &line)?;
            f.sync_data()?;
            line.pop();
            Ok(line)
        })();
        match res {
            Ok(line) => {
                // The syslog copy of a checkpoint is an anchor outside this machine.
                if let Some(s) = &self.syslog {
                    s.offer(&line);
                }
                self.last_cp_seq = self.seq;
                self.last_cp_at = Instant::now();
                self.shared
                    .metrics
                    .checkpoints
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                // Try again after another interval, not in a tight loop.
                self.last_cp_at = Instant::now();
                self.shared
                    .metrics
                    .checkpoint_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "audit checkpoint could not be written");
            }
        }
    }

    /// Let the syslog copy of the last records (the stop record, the final checkpoint) go out
    /// before the trail reports itself closed.
    fn finish_syslog(&mut self, rt: &tokio::runtime::Handle) {
        if let Some(s) = self.syslog.take() {
            s.finish(rt);
        }
    }

    fn close(&mut self, stop: Option<Body>) -> Result<(), AuditError> {
        self.shared.closed.store(true, Ordering::Release);
        if self.down.is_some() {
            self.try_recover();
        }
        let res = match stop {
            Some(body) if self.down.is_none() => self.commit(vec![body], true).map(|_| ()),
            _ => self.sync(),
        };
        res.map_err(|e| self.io_err(e))?;
        if self.down.is_some() {
            return Err(AuditError::Unavailable(
                "trail could not be written at shutdown".into(),
            ));
        }
        self.maybe_checkpoint(true);
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    private_options()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))
}

/// Records hold personal data (names, e-mail and IP addresses): new files are readable
/// by their owner and group only (0640 before the umask).
fn private_options() -> OpenOptions {
    #[allow(unused_mut)] // reason: only unix sets a mode
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o640);
    }
    o
}

/// Make a new or removed directory entry durable. Best effort: not every file system
/// lets a directory be opened for syncing.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// If `path` ends in an incomplete line (a crash during a write), keep a copy of the
/// torn bytes beside it, cut the file back to its last complete line, and describe it.
fn repair_torn_tail(path: &Path) -> Result<Option<RepairedEvent>, AuditError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .map_err(|e| AuditError::io(path, e))?;
    let keep = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if keep == data.len() {
        return Ok(None);
    }
    let torn = &data[keep..];
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    let mut n = 1;
    let copy = loop {
        let c = path.with_file_name(format!("{name}.torn-{n}"));
        if !c.exists() {
            break c;
        }
        n += 1;
    };
    private_options()
        .write(true)
        .create_new(true)
        .open(&copy)
        .and_then(|mut c| {
            std::io::Write::write_all(&mut c, torn)?;
            c.sync_all()
        })
        .map_err(|e| AuditError::io(&copy, e))?;
    f.set_len(keep as u64)
        .map_err(|e| AuditError::io(path, e))?;
    f.sync_all().map_err(|e| AuditError::io(path, e))?;
    tracing::warn!(file = %path.display(), bytes = torn.len(), "audit: cut off a torn last line");
    Ok(Some(RepairedEvent {
        file: name,
        original_len: data.len() as u64,
        removed_bytes: torn.len() as u64,
        removed_sha256: line_hash(torn),
        copy: copy
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string(),
    }))
}

/// Sequence number and line hash of the last complete record in `files` (newest last).
fn last_record(files: &[TrailFile]) -> Result<(u64, String), AuditError> {
    for f in files.iter().rev() {
        let data = std::fs::read(&f.path).map_err(|e| AuditError::io(&f.path, e))?;
        let Some(line) = data.split(|b| *b == b'\n').rev().find(|l| !l.is_empty()) else {
            continue;
        };
        let rec: Record = serde_json::from_slice(line).map_err(|e| {
            AuditError::Corrupt(format!("last record of {} does not parse: {e}", f.name()))
        })?;
        return Ok((rec.seq, line_hash(line)));
    }
    Ok((0, GENESIS_PREV.to_string()))
}

/// Refuse to continue a trail whose end is missing or changed compared with the last
/// signed checkpoint: continuing would reuse sequence numbers and hide the damage.
/// (A checkpoint is only ever written after the records it covers were fsynced, so a
/// crash cannot cause this.)
fn check_against_last_checkpoint(sidecar: &Path, seq: u64, prev: &str) -> Result<(), AuditError> {
    let Some(Ok(cp)) = crate::checkpoint::read_sidecar(sidecar)?.pop() else {
        return Ok(());
    };
    if cp.seq > seq {
        return Err(AuditError::Corrupt(format!(
            "the trail ends at seq {seq} but checkpoint attests seq {} (file {}): records were removed; run `sekisho audit verify`",
            cp.seq, cp.file
        )));
    }
    if cp.seq == seq && cp.hash != prev {
        return Err(AuditError::Corrupt(format!(
            "the last record (seq {seq}) differs from the last checkpoint: run `sekisho audit verify`"
        )));
    }
    Ok(())
}

/// The checkpoint key must not live in the log directory: whoever can change the log
/// could then also sign a forged checkpoint.
fn refuse_key_inside(dir: &Path, key: &Path) -> Result<(), AuditError> {
    let dir = dir.canonicalize().map_err(|e| AuditError::io(dir, e))?;
    let key_abs = key.canonicalize().map_err(|e| AuditError::io(key, e))?;
    if key_abs.starts_with(&dir) {
        return Err(AuditError::Config(format!(
            "the checkpoint key {} is inside the audit directory {}: keep it elsewhere",
            key.display(),
            dir.display()
        )));
    }
    Ok(())
}
