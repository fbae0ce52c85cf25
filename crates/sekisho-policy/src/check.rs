//! Static checks over compiled policies: what an IT officer wants to hear before a
//! policy goes live. Type errors and unknown references are found while compiling;
//! here are the checks that need whole rules.

use sekisho_yaml::{Diagnostic, Severity};

use crate::model::{Cond, Leaf, Policy, Rule, Settings};
use crate::set::{always_false, always_true};

fn diag(severity: Severity, rule: &Rule, message: String, hint: Option<String>) -> Diagnostic {
    Diagnostic {
        severity,
        file: rule.span.file.to_string(),
        line: rule.span.line,
        column: rule.span.column,
        path: format!("policies.{}", rule.path),
        message,
        hint,
    }
}

pub(crate) fn static_checks(policies: &[Policy], _settings: &Settings) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for p in policies {
        for rule in p.allow.iter().chain(&p.deny) {
            if always_false(&rule.cond) || contradictory(&rule.cond) {
                out.push(diag(
                    Severity::Error,
                    rule,
                    format!("this {} rule can never match: its criteria contradict each other", rule.kind.as_str()),
                    Some("check for a criterion required both ways (e.g. `managed: true` and `managed: false`)".into()),
                ));
            }
        }
        for allow in &p.allow {
            if let Some(deny) = p.deny.iter().find(|d| implies(&allow.cond, &d.cond)) {
                out.push(diag(
                    Severity::Warning,
                    allow,
                    format!(
                        "this allow rule is fully shadowed by `{}` (line {}): every request it admits is denied",
                        deny.path, deny.span.line
                    ),
                    Some("remove the allow rule or narrow the deny rule".into()),
                ));
            }
        }
        for deny in &p.deny {
            if always_true(&deny.cond) && !p.allow.is_empty() {
                out.push(diag(
                    Severity::Warning,
                    deny,
                    "this deny rule matches every request: the policy denies everything".into(),
                    None,
                ));
            }
        }
        if p.allow.is_empty() && !p.deny.is_empty() {
            out.push(Diagnostic {
                severity: Severity::Warning,
                file: p.span.file.to_string(),
                line: p.span.line,
                column: p.span.column,
                path: format!("policies.{}", p.name),
                message: format!(
                    "policy `{}` has deny rules but no allow rule: it denies every request",
                    p.name
                ),
                hint: Some("deny rules only take away; add an `allow:` list".into()),
            });
        }
    }
    out
}

/// The top-level conjuncts of a condition.
fn conjuncts(c: &Cond) -> Vec<&Cond> {
    match c {
        Cond::All(parts) => parts.iter().flat_map(conjuncts).collect(),
        other => vec![other],
    }
}

/// Two leaves of one `all` that cannot both hold.
fn contradictory(c: &Cond) -> bool {
    let parts = conjuncts(c);
    for (i, a) in parts.iter().enumerate() {
        for b in &parts[i + 1..] {
            let clash = match (a, b) {
                (Cond::Leaf(Leaf::Posture(f1, v1)), Cond::Leaf(Leaf::Posture(f2, v2))) => {
                    f1 == f2 && v1 != v2
                }
                (Cond::Leaf(Leaf::Ownership(o1)), Cond::Leaf(Leaf::Ownership(o2))) => o1 != o2,
                (Cond::Leaf(x), Cond::Not(n)) | (Cond::Not(n), Cond::Leaf(x)) => {
                    matches!(&**n, Cond::Leaf(y) if y == x)
                }
                (Cond::Leaf(Leaf::Zone(z1)), Cond::Leaf(Leaf::Zone(z2)))
                | (Cond::Leaf(Leaf::Route(z1)), Cond::Leaf(Leaf::Route(z2)))
                | (Cond::Leaf(Leaf::Method(z1)), Cond::Leaf(Leaf::Method(z2)))
                | (Cond::Leaf(Leaf::Sub(z1)), Cond::Leaf(Leaf::Sub(z2))) => {
                    !z1.0.iter().any(|x| z2.contains(x))
                }
                _ => false,
            };
            if clash {
                return true;
            }
        }
    }
    // Recurse into nested combinators.
    match c {
        Cond::All(parts) | Cond::Any(parts) => {
            matches!(c, Cond::Any(_)) && parts.iter().all(contradictory)
        }
        Cond::Not(_) | Cond::Leaf(_) | Cond::Anyone => false,
    }
}

/// Does leaf `a` imply leaf `b` (every input satisfying `a` satisfies `b`)?
fn leaf_implies(a: &Leaf, b: &Leaf) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Leaf::Groups(x), Leaf::Groups(y))
        | (Leaf::Sub(x), Leaf::Sub(y))
        | (Leaf::Email(x), Leaf::Email(y))
        | (Leaf::EmailDomain(x), Leaf::EmailDomain(y))
        | (Leaf::DeviceId(x), Leaf::DeviceId(y))
        | (Leaf::Os(x), Leaf::Os(y))
        | (Leaf::Method(x), Leaf::Method(y))
        | (Leaf::Zone(x), Leaf::Zone(y))
        | (Leaf::Route(x), Leaf::Route(y)) => x.is_subset_of(y),
        (Leaf::Network(x), Leaf::Network(y)) => x.iter().all(|n| y.iter().any(|m| m.contains(n))),
        (Leaf::MaxAuthAge(x), Leaf::MaxAuthAge(y))
        | (Leaf::LastCheckInWithin(x), Leaf::LastCheckInWithin(y)) => x <= y,
        _ => false,
    }
}

/// Conservative: `a ⇒ b` when every conjunct of `b` is implied by some conjunct of `a`
/// (or `b` is always true). False negatives are fine; false positives are not.
fn implies(a: &Cond, b: &Cond) -> bool {
    if always_true(b) {
        return true;
    }
    let aparts = conjuncts(a);
    conjuncts(b).iter().all(|bp| match bp {
        Cond::Leaf(bl) => aparts
            .iter()
            .any(|ap| matches!(ap, Cond::Leaf(al) if leaf_implies(al, bl))),
        // `any` on the deny side: implied if one alternative is.
        Cond::Any(alts) => alts.iter().any(|alt| implies(a, alt)),
        other => aparts.iter().any(|ap| ap == other),
    })
}
