//! The compiled policy set: lookup, evaluate, version.

use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::eval::{self, Decision};
use crate::input::Input;
use crate::model::{Cond, Leaf, Policy, PolicyId, PostureFacts, Settings, Target};

/// A compiled, immutable set of policies. Build it with [`PolicySet::compile`],
/// share it behind an `Arc`, swap it on reload.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Sorted by name: a `PolicyId` is an index, lookup is a binary search.
    pub(crate) policies: Vec<Policy>,
    /// `<name>.default` per policy, for default-deny decisions.
    pub(crate) default_paths: Vec<Arc<str>>,
    /// Per policy: the posture facts any of its rules tests.
    posture: Vec<PostureFacts>,
    pub(crate) settings: Settings,
    version: String,
}

impl PolicySet {
    pub(crate) fn new(mut policies: Vec<Policy>, settings: Settings) -> PolicySet {
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let default_paths = policies
            .iter()
            .map(|p| Arc::<str>::from(format!("{}.default", p.name)))
            .collect();
        let posture = policies
            .iter()
            .map(|p| {
                let mut used = PostureFacts::NONE;
                for rule in p.allow.iter().chain(&p.deny) {
                    rule.cond
                        .for_each_leaf(&mut |l| used = used.union(l.posture_facts()));
                }
                used
            })
            .collect();
        let mut set = PolicySet {
            policies,
            default_paths,
            posture,
            settings,
            version: String::new(),
        };
        let canonical = canonical_string(&set.canonical());
        set.version = hex::encode(Sha256::digest(canonical.as_bytes()));
        set
    }

    /// The policy with this name.
    pub fn lookup(&self, name: &str) -> Option<PolicyId> {
        self.policies
            .binary_search_by(|p| (*p.name).cmp(name))
            .ok()
            .map(|i| PolicyId(i as u32))
    }

    /// Every policy name, sorted.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| &*p.name)
    }

    pub fn name(&self, id: PolicyId) -> &str {
        &self.policies[id.0 as usize].name
    }

    pub fn description(&self, id: PolicyId) -> Option<&str> {
        self.policies[id.0 as usize].description.as_deref()
    }

    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Decide one request. Default deny; deny overrides allow; the zone floor (if
    /// any) is AND-ed with the route policy. Allocates nothing.
    pub fn evaluate(&self, target: Target, input: &Input) -> Decision {
        let route = self.evaluate_policy(target.policy, input);
        match target.floor {
            None => route,
            Some(floor) => eval::combine(self.evaluate_policy(floor, input), route),
        }
    }

    pub(crate) fn evaluate_policy(&self, id: PolicyId, input: &Input) -> Decision {
        let i = id.0 as usize;
        eval::decide_policy(
            &self.policies[i],
            &self.default_paths[i],
            input,
            &self.settings,
        )
    }

    /// The posture facts a decision for `target` may test: those of any rule of the route
    /// policy or of the zone floor, allow or deny.
    pub fn posture_facts(&self, target: Target) -> PostureFacts {
        let of = |id: PolicyId| self.posture[id.0 as usize];
        target
            .floor
            .map_or(PostureFacts::NONE, of)
            .union(of(target.policy))
    }

    /// The policy version: the first 16 hex digits of the SHA-256 of the canonical
    /// form of the compiled set. Stable across whitespace, comments, key order,
    /// list order of sets, descriptions and file layout; changes when any decision
    /// could change.
    pub fn version(&self) -> &str {
        &self.version[..16]
    }

    /// The full SHA-256 (64 hex digits) of the canonical form.
    pub fn version_full(&self) -> &str {
        &self.version
    }

    /// The canonical form that [`PolicySet::version`] hashes.
    pub fn canonical(&self) -> Value {
        let mut policies = serde_json::Map::new();
        for p in &self.policies {
            policies.insert(
                p.name.to_string(),
                json!({
                    "allow": p.allow.iter().map(|r| r.cond.canonical()).collect::<Vec<_>>(),
                    "deny": p.deny.iter().map(|r| r.cond.canonical()).collect::<Vec<_>>(),
                }),
            );
        }
        json!({
            "mfa_amr_values": self.settings.mfa_amr.to_json(),
            "policies": policies,
        })
    }

    /// Can this policy admit a request that carries no identity? True when some
    /// allow rule can be satisfied without signing in (e.g. `anyone: true`, or only
    /// network / time / path criteria). Used by the gateway to warn about routes
    /// that are effectively public without being marked `public`.
    pub fn admits_anonymous(&self, id: PolicyId) -> bool {
        self.policies[id.0 as usize]
            .allow
            .iter()
            .any(|r| !requires_identity(&r.cond))
    }

    /// [`PolicySet::admits_anonymous`] for a target: both the floor and the route
    /// policy must admit anonymous requests.
    pub fn target_admits_anonymous(&self, target: Target) -> bool {
        self.admits_anonymous(target.policy)
            && target.floor.is_none_or(|f| self.admits_anonymous(f))
    }

    /// Does this policy admit everyone — an allow rule with no criterion that can
    /// fail (`anyone: true`, or only combinators of such) and no deny rule?
    pub fn admits_everyone(&self, id: PolicyId) -> bool {
        let p = &self.policies[id.0 as usize];
        p.deny.is_empty() && p.allow.iter().any(|r| always_true(&r.cond))
    }
}

/// A zone or route name that a policy refers to (`zone: [..]`, `route: [..]`), so
/// the configuration loader can report names it does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `zone` or `route`.
    pub kind: &'static str,
    pub name: String,
    /// Where the rule that refers to it is written.
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// `policies.lgwan-staff.allow[0]`
    pub path: String,
}

impl PolicySet {
    /// Every zone and route name used in a criterion, with the rule's location.
    pub fn references(&self) -> Vec<Reference> {
        let mut refs = Vec::new();
        for p in &self.policies {
            for rule in p.allow.iter().chain(&p.deny) {
                let mut names = Vec::new();
                rule.cond.for_each_leaf(&mut |l| match l {
                    Leaf::Zone(s) => names.extend(s.0.iter().map(|n| ("zone", n.clone()))),
                    Leaf::Route(s) => names.extend(s.0.iter().map(|n| ("route", n.clone()))),
                    _ => {}
                });
                for (kind, name) in names {
                    refs.push(Reference {
                        kind,
                        name,
                        file: rule.span.file.to_string(),
                        line: rule.span.line,
                        column: rule.span.column,
                        path: format!("policies.{}", rule.path),
                    });
                }
            }
        }
        refs
    }
}

/// Every way to satisfy `cond` involves the user's identity.
pub(crate) fn requires_identity(cond: &Cond) -> bool {
    match cond {
        Cond::Anyone => false,
        Cond::Leaf(l) => l.needs_identity(),
        Cond::All(parts) => parts.iter().any(requires_identity),
        Cond::Any(parts) => !parts.is_empty() && parts.iter().all(requires_identity),
        // `not: {groups: [x]}` still needs to know the groups; `not: authenticated`
        // does not.
        Cond::Not(inner) => match &**inner {
            Cond::Leaf(Leaf::Authenticated) => false,
            Cond::Leaf(l) => l.needs_identity(),
            _ => false,
        },
    }
}

/// `cond` is true for every input.
pub(crate) fn always_true(cond: &Cond) -> bool {
    match cond {
        Cond::Anyone => true,
        Cond::Leaf(_) => false,
        Cond::All(parts) => parts.iter().all(always_true),
        Cond::Any(parts) => parts.iter().any(always_true),
        Cond::Not(inner) => always_false(inner),
    }
}

pub(crate) fn always_false(cond: &Cond) -> bool {
    match cond {
        Cond::Anyone => false,
        Cond::Leaf(_) => false,
        Cond::All(parts) => parts.iter().any(always_false),
        Cond::Any(parts) => parts.iter().all(always_false),
        Cond::Not(inner) => always_true(inner),
    }
}

/// JSON with object keys sorted at every level, no whitespace — independent of
/// serde_json's `preserve_order` feature, which another crate may switch on.
pub(crate) fn canonical_string(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
