//! Pipeline step 6: the audit trail. Every request that reached routing is recorded —
//! allowed requests **before** they are forwarded — and when the trail cannot be written
//! the gateway fails closed (503) until it can.
//!
//! The record schema, the hash chain and the writer are `sekisho-audit`'s; this module
//! reads the `audit:` section, builds records from what the pipeline knows, and exports
//! the writer's counters as metrics.

use std::path::{Path as FsPath, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use sekisho_audit::{
    AccessResultEvent, AuditConfig, AuditHandle, CheckpointConfig, Durability, Event,
    PendingOutcome, TryAppendError,
};
use sekisho_yaml::{Decoder, Node, Path};

use crate::respond::BoxError;

/// Decodes the `audit:` section.
pub fn decode(
    d: &mut Decoder,
    n: &Node,
    p: &Path,
    base: &FsPath,
    instance: &str,
) -> Option<AuditConfig> {
    let m = d.map(
        n,
        p,
        &[
            "dir",
            "durability",
            "max_delay",
            "max_file_bytes",
            "retention_days",
            "checkpoint_key_file",
            "syslog",
        ],
    )?;
    let dir_node = m.require(d, "dir")?;
    let dir = base.join(d.nonempty_string(dir_node, &p.key("dir"))?);
    let mut cfg = AuditConfig::new(dir.clone(), instance);
    let mut ok = true;
    let durability = match m.get("durability") {
        Some(v) => d.one_of(v, &p.key("durability"), &["batched", "strict"]),
        None => Some("batched".into()),
    };
    let max_delay = match m.get("max_delay") {
        Some(v) => d.duration(v, &p.key("max_delay")),
        None => Some(Duration::from_millis(50)),
    };
    match (durability.as_deref(), max_delay) {
        (Some("strict"), _) => cfg.durability = Durability::Strict,
        (Some(_), Some(delay)) => {
            if let Durability::Batched { max_delay, .. } = &mut cfg.durability {
                *max_delay = delay;
            }
        }
        _ => ok = false,
    }
    if let Some(v) = m.get("max_file_bytes") {
        match d.uint(v, &p.key("max_file_bytes")) {
            Some(b) if b >= 1 << 20 => cfg.max_file_bytes = b,
            Some(_) => {
                d.error(
                    v,
                    &p.key("max_file_bytes"),
                    "at least 1048576 (1 MiB)",
                    None,
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(v) = m.get("retention_days") {
        match d.uint(v, &p.key("retention_days")) {
            Some(0) => cfg.retention_days = None,
            Some(days) => {
                if days < 366 {
                    d.warning(
                        v,
                        &p.key("retention_days"),
                        format!("audit records are removed after {days} days"),
                        Some(
                            "a year or more is usual for public bodies; 0 keeps everything".into(),
                        ),
                    );
                }
                cfg.retention_days = u32::try_from(days).ok();
            }
            None => ok = false,
        }
    }
    if let Some(v) = m.get("checkpoint_key_file") {
        let key = base.join(d.nonempty_string(v, &p.key("checkpoint_key_file"))?);
        if key.starts_with(&dir) {
            d.error(
                v,
                &p.key("checkpoint_key_file"),
                "the checkpoint signing key must not live in the audit directory",
                Some(
                    "whoever can change the log must not also hold the key that vouches for it"
                        .into(),
                ),
            );
            ok = false;
        }
        cfg.checkpoint = Some(CheckpointConfig::new(key));
    }
    if let Some(v) = m.get("syslog") {
        let sp = p.key("syslog");
        let sm = d.map(v, &sp, &["address", "ca_file", "server_name"])?;
        let address_node = sm.require(d, "address")?;
        let address = d.nonempty_string(address_node, &sp.key("address"))?;
        let mut s = sekisho_audit::syslog::SyslogConfig::new(address);
        if let Some(ca) = sm.get("ca_file") {
            let ca_file: PathBuf = base.join(d.nonempty_string(ca, &sp.key("ca_file"))?);
            let name_node = sm.require(d, "server_name")?;
            let server_name = d.nonempty_string(name_node, &sp.key("server_name"))?;
            s.tls = Some(sekisho_audit::syslog::SyslogTls {
                ca_file,
                server_name,
            });
        }
        cfg.syslog = Some(s);
    }
    ok.then_some(cfg)
}

/// Exports the audit writer's counters to Prometheus at scrape time.
#[derive(Debug)]
pub struct AuditCollector(pub AuditHandle);

impl Collector for AuditCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.0.metrics();
        for (name, help, value) in [
            (
                "audit_records_written",
                "Audit records written to disk",
                m.records_written,
            ),
            (
                "audit_write_errors",
                "Audit write or fsync failures",
                m.write_errors,
            ),
            (
                "audit_rejected_appends",
                "Audit records refused while the trail could not be written",
                m.rejected_appends,
            ),
            ("audit_fsyncs", "Audit fsync calls", m.fsyncs),
            ("audit_rotations", "Audit file rotations", m.rotations),
            (
                "audit_syslog_dropped",
                "Audit records not forwarded to syslog",
                m.syslog_dropped,
            ),
        ] {
            let c = ConstCounter::new(value);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        for (name, help, value) in [
            (
                "audit_healthy",
                "1 when the audit trail is being written, 0 when the gateway fails closed",
                i64::from(m.healthy),
            ),
            (
                "audit_queue_depth",
                "Audit records waiting to be written",
                m.queue_depth as i64,
            ),
            (
                "audit_last_fsync_microseconds",
                "Duration of the last audit fsync",
                m.last_fsync_micros as i64,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// Appends an event; `false` when the trail cannot take it (the caller fails closed).
pub async fn record(handle: Option<&AuditHandle>, event: Event, rid: &str) -> bool {
    record_with(handle, event, rid, false).await.is_ok()
}

/// Appends an allowed request's `access` record before it is forwarded; `Err` when the
/// trail cannot take it (the caller fails closed). The [`PendingOutcome`], when there is
/// one, takes the outcome into the same record ([`finish_access`]).
pub async fn record_allowed(
    handle: Option<&AuditHandle>,
    event: Event,
    rid: &str,
) -> Result<Option<PendingOutcome>, ()> {
    record_with(handle, event, rid, true).await
}

async fn record_with(
    handle: Option<&AuditHandle>,
    event: Event,
    rid: &str,
    outcome: bool,
) -> Result<Option<PendingOutcome>, ()> {
    let Some(h) = handle else { return Ok(None) };
    // Batched: a queue with room takes the record on the spot, with no timer to set up
    // (this runs for every request).
    let event = if h.is_strict() {
        event
    } else {
        let queued = if outcome {
            h.try_append_awaiting_outcome(event)
        } else {
            h.try_append(event).map(|r| (r, None))
        };
        match queued {
            Ok((_, pending)) => return Ok(pending),
            Err(TryAppendError::Full(event)) => *event,
            Err(TryAppendError::Failed(e)) => {
                tracing::error!(request_id = %rid, error = %e, "audit trail unavailable: refusing the request");
                return Err(());
            }
        }
    };
    // A full queue waits; a trail that cannot be written fails at once.
    let appended = tokio::time::timeout(Duration::from_secs(5), async {
        if outcome {
            h.append_awaiting_outcome(event).await
        } else {
            h.append(event).await.map(|r| (r, None))
        }
    })
    .await;
    match appended {
        Ok(Ok((_, pending))) => Ok(pending),
        Ok(Err(e)) => {
            tracing::error!(request_id = %rid, error = %e, "audit trail unavailable: refusing the request");
            Err(())
        }
        Err(_) => {
            tracing::error!(request_id = %rid, "audit queue full for 5 s: refusing the request");
            Err(())
        }
    }
}

/// Records a forwarded request's outcome once its response has ended: inside its `access`
/// record when that is still waiting to be written, else as an `access_result` record.
pub fn finish_access(
    handle: Option<&AuditHandle>,
    pending: Option<PendingOutcome>,
    result: AccessResultEvent,
) {
    let unfolded = match pending {
        Some(p) => p.fold(result).err(),
        None => Some(result),
    };
    if let Some(r) = unfolded {
        record_later(handle, Event::AccessResult(r));
    }
}

/// Appends without waiting (records written after the fact, e.g. an access result): queued
/// on the spot, from any thread; only when the queue is full is a task spawned to wait for
/// room, so a burst never drops the record.
pub fn record_later(handle: Option<&AuditHandle>, event: Event) {
    let Some(h) = handle else { return };
    match h.try_append(event) {
        Ok(_) => {}
        Err(TryAppendError::Full(event)) => {
            let h = h.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = h.append(*event).await {
                        tracing::error!(error = %e, "audit record after the response could not be written");
                    }
                });
            } else {
                tracing::error!(
                    "audit queue full outside the runtime: a record after the response was not written"
                );
            }
        }
        Err(TryAppendError::Failed(e)) => {
            tracing::error!(error = %e, "audit record after the response could not be written");
        }
    }
}

pin_project_lite::pin_project! {
    /// Counts the bytes of a body and calls `done` once, when it ends or is dropped.
    pub struct Counted<B> {
        #[pin]
        inner: B,
        count: Arc<AtomicU64>,
        done: Option<Box<dyn FnOnce(u64) + Send + Sync>>,
    }
    impl<B> PinnedDrop for Counted<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(done) = this.done.take() {
                done(this.count.load(Ordering::Relaxed));
            }
        }
    }
}

impl<B> Counted<B> {
    pub fn new(
        inner: B,
        count: Arc<AtomicU64>,
        done: Option<Box<dyn FnOnce(u64) + Send + Sync>>,
    ) -> Counted<B> {
        Counted { inner, count, done }
    }
}

impl<B> HttpBody for Counted<B>
where
    B: HttpBody<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(done) = this.done.take() {
                    done(this.count.load(Ordering::Relaxed));
                }
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
