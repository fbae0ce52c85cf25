//! Test-only fault injection for the writer's file I/O.
//!
//! The full-disk tests use this instead of a real full file system: mounting a small tmpfs
//! needs privileges a test must not assume, and `setrlimit(RLIMIT_FSIZE)` would affect the
//! whole test process. The injector sits exactly where the writer calls `write` and
//! `fsync`, and returns the same error kinds the kernel would (`StorageFull` = ENOSPC,
//! `PermissionDenied` = EACCES, `Other` = EIO), optionally after letting part of the bytes
//! through, so that a torn write really reaches the file.
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// What kind of error to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// ENOSPC
    NoSpace,
    /// EACCES
    PermissionDenied,
    /// EIO
    Io,
}

impl FaultKind {
    fn error(self) -> io::Error {
        match self {
            FaultKind::NoSpace => io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left on device",
            ),
            FaultKind::PermissionDenied => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "injected: permission denied",
            ),
            FaultKind::Io => io::Error::other("injected: input/output error"),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    writes_fail: AtomicBool,
    fsync_fails: AtomicBool,
    kind: Mutex<Option<FaultKind>>,
    partial_bytes: AtomicU64,
    fsyncs: AtomicU64,
    fsync_waiting: AtomicU64,
    hold: Mutex<bool>,
    cv: Condvar,
}

/// A handle that tests keep to make the writer's I/O fail, pause or count.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector(Arc<State>);

impl FaultInjector {
    /// A new injector that injects nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make every write fail with `kind`, after letting `partial_bytes` of it through.
    pub fn fail_writes(&self, kind: FaultKind, partial_bytes: u64) {
        *self.0.kind.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
        self.0.partial_bytes.store(partial_bytes, Ordering::SeqCst);
        self.0.writes_fail.store(true, Ordering::SeqCst);
    }

    /// Make every fsync fail with `kind`.
    pub fn fail_fsync(&self, kind: FaultKind) {
        *self.0.kind.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
        self.0.fsync_fails.store(true, Ordering::SeqCst);
    }

    /// Stop injecting errors: the "disk" has space again.
    pub fn heal(&self) {
        self.0.writes_fail.store(false, Ordering::SeqCst);
        self.0.fsync_fails.store(false, Ordering::SeqCst);
    }

    /// Make fsync wait until [`FaultInjector::release_fsync`].
    pub fn hold_fsync(&self) {
        *self.0.hold.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Let held fsyncs proceed.
    pub fn release_fsync(&self) {
        *self.0.hold.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.0.cv.notify_all();
    }

    /// How many fsyncs of trail files completed.
    pub fn fsync_count(&self) -> u64 {
        self.0.fsyncs.load(Ordering::SeqCst)
    }

    /// How many fsyncs are currently waiting because of [`FaultInjector::hold_fsync`].
    pub fn fsyncs_waiting(&self) -> u64 {
        self.0.fsync_waiting.load(Ordering::SeqCst)
    }

    fn kind(&self) -> FaultKind {
        self.0
            .kind
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or(FaultKind::Io)
    }

    /// Called by the writer instead of `write_all`.
    pub(crate) fn write_all(&self, w: &mut impl io::Write, buf: &[u8]) -> io::Result<()> {
        if self.0.writes_fail.load(Ordering::SeqCst) {
            let n = (self.0.partial_bytes.load(Ordering::SeqCst) as usize).min(buf.len());
            w.write_all(&buf[..n])?;
            return Err(self.kind().error());
        }
        w.write_all(buf)
    }

    /// Called by the writer instead of `sync_data`.
    pub(crate) fn sync(&self, f: &std::fs::File) -> io::Result<()> {
        {
            let mut held = self.0.hold.lock().unwrap_or_else(|e| e.into_inner());
            if *held {
                self.0.fsync_waiting.fetch_add(1, Ordering::SeqCst);
                while *held {
                    held = self.0.cv.wait(held).unwrap_or_else(|e| e.into_inner());
                }
                self.0.fsync_waiting.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.0.fsync_fails.load(Ordering::SeqCst) {
            return Err(self.kind().error());
        }
        f.sync_data()?;
        self.0.fsyncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
