//! The crate's one error type.
use std::path::PathBuf;

/// Everything that can go wrong in the audit trail.
///
/// The gateway maps [`AuditError::Unavailable`], [`AuditError::Io`] and
/// [`AuditError::Closed`] to `503 Service Unavailable` (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing a file failed.
    #[error("audit I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The trail cannot be written at the moment (disk full, permissions, I/O error);
    /// the writer keeps retrying and recovers on its own.
    #[error("audit trail unavailable: {0}")]
    Unavailable(String),
    /// The writer has stopped; no more records can be appended.
    #[error("audit writer is closed")]
    Closed,
    /// The configuration is not usable.
    #[error("invalid audit configuration: {0}")]
    Config(String),
    /// An existing trail is damaged in a way the writer must not paper over
    /// (anything beyond a torn last line). Run `sekisho audit verify`.
    #[error("audit trail is corrupt: {0}")]
    Corrupt(String),
    /// A signing or verification key could not be read or used.
    #[error("checkpoint key error: {0}")]
    Key(String),
    /// A record could not be encoded or decoded.
    #[error("audit record encoding error: {0}")]
    Json(#[from] serde_json::Error),
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}
