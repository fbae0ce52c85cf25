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
//!
//! ```
//! use sekisho_policy::{Device, Identity, Input, Outcome, PolicySet, Request, Target};
//!
//! let yaml = "policies:\n  portal:\n    allow:\n      - groups: [staff]\n        mfa: true\n";
//! let (set, warnings) = PolicySet::compile(&[("policies/portal.yaml", yaml)]).unwrap();
//! assert!(warnings.is_empty());
//! let target = Target::policy(set.lookup("portal").unwrap());
//!
//! let user = Identity {
//!     sub: "tanaka".into(),
//!     groups: vec!["staff".into()],
//!     amr: vec!["pwd".into()],
//!     ..Identity::default()
//! };
//! let request = Request {
//!     method: "GET".into(),
//!     host: "portal.example".into(),
//!     path: "/".into(),
//!     zone: "lgwan".into(),
//!     route: "portal".into(),
//!     source_ip: [127, 0, 0, 1].into(),
//! };
//! let input = Input {
//!     identity: Some(&user),
//!     device: Some(&Device::UNKNOWN),
//!     request: &request,
//!     now: "2026-04-14T10:00:00+09:00".parse().unwrap(),
//! };
//! let decision = set.evaluate(target, &input);
//! assert!(matches!(decision.outcome, Outcome::StepUp(ref s) if s.mfa));
//! assert_eq!(&*decision.rule.path, "portal.allow[0]");
//! assert_eq!(decision.reason_code(), "mfa.required");
//! ```
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
pub use model::{DEFAULT_MFA_AMR, DEFAULT_TIMEZONE, PolicyId, PostureFacts, RuleKind, Target};
pub use reason::Reason;
pub use sekisho_yaml::{Diagnostic, Severity};
pub use set::{PolicySet, Reference};
