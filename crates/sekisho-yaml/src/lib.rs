//! A spanned YAML tree and an error-collecting decoder.
//!
//! Sekisho's configuration and policy files are written by IT officers, often by hand,
//! often late. A decoder that stops at the first mistake makes them fix one line, run the
//! check again, fix the next… This crate reports **every** mistake in one run, each with
//! file, line, column, key path and — where we can guess — a hint such as "did you mean
//! `groups`?".
//!
//! How: the YAML text is parsed once by `serde-saphyr` (pure Rust, no `unsafe`, rejects
//! duplicate keys, bounded alias expansion) into a [`Node`] tree where every node keeps its
//! position. Typed decoding then walks that tree with a [`Decoder`], which records problems
//! and keeps going instead of returning early.
//!
//! This crate does no I/O: callers read files and pass text in.
#![forbid(unsafe_code)]

mod decode;
mod diag;
mod node;
mod serde_node;

pub use decode::{Decoder, MapView, did_you_mean};
pub use diag::{Diagnostic, Severity, render_all};
pub use node::{Kind, Node, Path, parse};
pub use serde_node::{NodeDeserializer, NodeError, deserialize};
