//! Sekisho's adversarial test suite (issue 9). The crate has no library code: the cases live
//! in `tests/*.rs`, each a separate binary that starts a real gateway (in process, real TLS on
//! loopback) in front of real upstreams that report exactly what they received, and attacks it
//! one class at a time. See `docs/security.md` for the threat model and the case list.
#![forbid(unsafe_code)]
