//! The crate's one error type.

use std::net::SocketAddr;

use thiserror::Error;

/// Why the development IdP or a demo upstream could not start.
#[derive(Debug, Error)]
pub enum DevIdpError {
    /// Development servers listen on loopback only (127.0.0.0/8, ::1).
    #[error("development servers listen on loopback only, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configuration is unusable; every problem is listed.
    #[error("invalid development IdP configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    #[error("signing key: {0}")]
    Key(String),
}

pub type Result<T> = std::result::Result<T, DevIdpError>;
