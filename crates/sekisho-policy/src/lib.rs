//! Sekisho's policy decision point.
//!
//! IT officers write policies in YAML (`policies/*.yaml`); this crate validates them
//! (every error at once, with file, line, column, key path and a hint), compiles them
//! into matchers, and decides requests: allow, deny, login required, device certificate
//! required or step-up — with the rule that decided and reasons in Japanese and English.
//! It also explains decisions ([`PolicySet::explain`]), runs YAML test cases
//! ([`testing`]) and describes its own file format as a JSON Schema ([`schema`]).
//!
//! What it never does: I/O, async, networking, or reading the clock. The gateway
//! passes file contents in, and every decision takes `now` as an input.
#![forbid(unsafe_code)]

mod check;
mod compile;
mod eval;
pub mod explain;
mod input;
mod model;
pub mod reason;
pub mod schema;
mod set;
pub mod testing;

pub use eval::{Decision, Outcome, Reasons, RuleRef, StepUp, Tri};
pub use explain::Trace;
pub use input::{Certificate, Device, Fact, Identity, Input, Ownership, Request};
pub use model::{DEFAULT_MFA_AMR, DEFAULT_TIMEZONE, PolicyId, RuleKind, Target};
pub use reason::Reason;
pub use sekisho_yaml::{Diagnostic, Severity};
pub use set::{PolicySet, Reference};
