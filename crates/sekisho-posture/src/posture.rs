//! Posture: facts about a device, each with its source and age, merged from the inventory and
//! a verified assertion. Stale or missing facts are [`Fact::Unknown`] — never a silent allow.

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::assertion::VerifiedAssertion;
use crate::inventory::{InventoryRecord, Ownership};

/// Where a known fact came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactSource {
    /// The MDM inventory export.
    Inventory,
    /// A signed posture assertion bound to the device certificate.
    Assertion,
}

/// Why a fact is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UnknownWhy {
    /// The device is not in the inventory and no assertion says it.
    NotReported,
    /// The newest observation is older than the freshness limit.
    Stale {
        observed_at: Timestamp,
        max_age_secs: i64,
    },
    /// The inventory has no `last_check_in` for the device, so its facts have no age.
    NoCheckIn,
    /// The observation is dated in the future (clock problem at the source).
    FromTheFuture { observed_at: Timestamp },
}

impl UnknownWhy {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotReported => "not_reported",
            Self::Stale { .. } => "stale",
            Self::NoCheckIn => "no_check_in",
            Self::FromTheFuture { .. } => "from_the_future",
        }
    }
}

impl std::fmt::Display for UnknownWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotReported => f.write_str("not reported by any posture source"),
            Self::Stale {
                observed_at,
                max_age_secs,
            } => {
                write!(
                    f,
                    "last observed {observed_at}, older than the limit of {max_age_secs}s"
                )
            }
            Self::NoCheckIn => f.write_str("the inventory has no last_check_in for this device"),
            Self::FromTheFuture { observed_at } => {
                write!(f, "observation dated in the future ({observed_at})")
            }
        }
    }
}

/// One fact about a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Fact<T> {
    Known {
        value: T,
        source: FactSource,
        observed_at: Timestamp,
    },
    Unknown {
        why: UnknownWhy,
    },
}

impl<T> Fact<T> {
    /// The value if known.
    pub fn known(&self) -> Option<&T> {
        match self {
            Self::Known { value, .. } => Some(value),
            Self::Unknown { .. } => None,
        }
    }
    pub fn is_known(&self) -> bool {
        matches!(self, Self::Known { .. })
    }
    fn unknown(why: UnknownWhy) -> Self {
        Self::Unknown { why }
    }
}

impl Fact<bool> {
    /// True only when known to be true: the shape policies should use for "must be on".
    pub fn is_true(&self) -> bool {
        matches!(self, Self::Known { value: true, .. })
    }
}

/// Freshness limits (`devices.posture` in the gateway configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostureConfig {
    /// Inventory facts older than this (measured from `last_check_in`) are unknown.
    /// Default: 72 hours (a PC switched off over a weekend stays known until Monday).
    #[serde(default = "default_inventory_max_age")]
    pub inventory_max_age: SignedDuration,
    /// Assertion facts older than this (measured from `observed_at`/`iat`) are unknown.
    /// Default: 15 minutes.
    #[serde(default = "default_assertion_max_age")]
    pub assertion_max_age: SignedDuration,
    /// Observations dated up to this far in the future are accepted (clock skew). Default: 5 minutes.
    #[serde(default = "default_skew")]
    pub clock_skew: SignedDuration,
}

fn default_inventory_max_age() -> SignedDuration {
    SignedDuration::from_hours(72)
}
fn default_assertion_max_age() -> SignedDuration {
    SignedDuration::from_mins(15)
}
fn default_skew() -> SignedDuration {
    SignedDuration::from_mins(5)
}

impl Default for PostureConfig {
    fn default() -> Self {
        Self {
            inventory_max_age: default_inventory_max_age(),
            assertion_max_age: default_assertion_max_age(),
            clock_skew: default_skew(),
        }
    }
}

/// Everything the policy may know about a device, each fact with its source and age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Posture {
    pub device_id: String,
    /// Whether the device is in the inventory at all.
    pub in_inventory: bool,
    pub managed: Fact<bool>,
    pub ownership: Fact<Ownership>,
    pub owner: Fact<String>,
    pub os: Fact<String>,
    pub os_version: Fact<String>,
    pub disk_encryption: Fact<bool>,
    pub screen_lock: Fact<bool>,
    pub firewall: Fact<bool>,
    pub antivirus: Fact<bool>,
    pub edr: Fact<bool>,
    pub compliant: Fact<bool>,
    /// The MDM's last check-in; known whenever the inventory has it, however old (policies use
    /// it for "seen within N days").
    pub last_check_in: Fact<Timestamp>,
    pub tags: Fact<Vec<String>>,
}

struct Observation {
    source: FactSource,
    at: Timestamp,
    max_age: SignedDuration,
}

impl Observation {
    fn judge<T>(&self, value: T, now: Timestamp, skew: SignedDuration) -> Fact<T> {
        if self.at > now + skew {
            Fact::unknown(UnknownWhy::FromTheFuture {
                observed_at: self.at,
            })
        } else if now.duration_since(self.at) > self.max_age {
            Fact::unknown(UnknownWhy::Stale {
                observed_at: self.at,
                max_age_secs: self.max_age.as_secs(),
            })
        } else {
            Fact::Known {
                value,
                source: self.source,
                observed_at: self.at,
            }
        }
    }

    /// The instants at which [`Observation::judge`]'s answer changes: the fact stops being
    /// "from the future" at `at − skew` and turns stale just after `at + max_age`. (`None`
    /// for an instant beyond jiff's range, which is never reached.)
    fn boundaries(&self, skew: SignedDuration) -> [Option<Timestamp>; 2] {
        [
            self.at.checked_sub(skew).ok(),
            self.at.checked_add(self.max_age).ok(),
        ]
    }
}

/// The observations a merge judges facts by: the inventory's (each of its facts is as old as
/// the device's last check-in, or has no age without one) and the assertion's, if it is
/// about this device.
fn observations(
    device_id: &str,
    inventory: Option<&InventoryRecord>,
    assertion: Option<&VerifiedAssertion>,
    config: &PostureConfig,
) -> (Option<Result<Observation, UnknownWhy>>, Option<Observation>) {
    let inv = inventory.map(|r| match r.last_check_in {
        Some(at) => Ok(Observation {
            source: FactSource::Inventory,
            at,
            max_age: config.inventory_max_age,
        }),
        None => Err(UnknownWhy::NoCheckIn),
    });
    let asr = assertion
        .filter(|a| a.device_id == device_id)
        .map(|a| Observation {
            source: FactSource::Assertion,
            at: a.observed_at,
            max_age: config.assertion_max_age,
        });
    (inv, asr)
}

/// Merge one fact from up to two sources: the freshest fresh observation wins; otherwise the
/// most telling reason it is unknown.
fn merge<T: Clone>(candidates: [Option<Fact<T>>; 2]) -> Fact<T> {
    let mut best: Option<Fact<T>> = None;
    for c in candidates.into_iter().flatten() {
        best = Some(match (best, c) {
            (None, c) => c,
            (Some(b @ Fact::Known { .. }), Fact::Unknown { .. }) => b,
            (Some(Fact::Unknown { .. }), c @ Fact::Known { .. }) => c,
            (
                Some(
                    b @ Fact::Known {
                        observed_at: bt, ..
                    },
                ),
                c @ Fact::Known {
                    observed_at: ct, ..
                },
            ) => {
                if ct > bt {
                    c
                } else {
                    b
                }
            }
            // Both unknown: keep a concrete reason (stale, no check-in) over "not reported".
            (Some(b), c) => match &b {
                Fact::Unknown {
                    why: UnknownWhy::NotReported,
                } => c,
                _ => b,
            },
        });
    }
    best.unwrap_or(Fact::unknown(UnknownWhy::NotReported))
}

/// Build the posture of `device_id` at `now` from its inventory record and a verified assertion.
pub fn merge_posture(
    device_id: &str,
    inventory: Option<&InventoryRecord>,
    assertion: Option<&VerifiedAssertion>,
    config: &PostureConfig,
    now: Timestamp,
) -> Posture {
    let skew = config.clock_skew;
    let (inv_obs, asr_obs) = observations(device_id, inventory, assertion, config);

    fn from_inv<T>(
        inv_obs: &Option<Result<Observation, UnknownWhy>>,
        value: Option<T>,
        now: Timestamp,
        skew: SignedDuration,
    ) -> Option<Fact<T>> {
        match (inv_obs, value) {
            (None, _) | (Some(_), None) => None,
            (Some(Err(why)), Some(_)) => Some(Fact::unknown(why.clone())),
            (Some(Ok(obs)), Some(v)) => Some(obs.judge(v, now, skew)),
        }
    }
    macro_rules! inv {
        ($e:expr) => {
            from_inv(&inv_obs, $e, now, skew)
        };
    }
    macro_rules! from_asr {
        ($field:ident) => {
            match (&asr_obs, assertion.and_then(|a| a.posture.$field.clone())) {
                (Some(obs), Some(v)) => Some(obs.judge(v, now, skew)),
                _ => None,
            }
        };
    }
    macro_rules! health {
        ($field:ident) => {
            merge([
                inv!(inventory.and_then(|r| r.$field.clone())),
                from_asr!($field),
            ])
        };
    }

    Posture {
        device_id: device_id.to_owned(),
        in_inventory: inventory.is_some(),
        managed: merge([inv!(inventory.and_then(|r| r.managed)), None]),
        ownership: merge([inv!(inventory.and_then(|r| r.ownership)), None]),
        owner: merge([inv!(inventory.and_then(|r| r.owner.clone())), None]),
        tags: merge([inv!(inventory.map(|r| r.tags.clone())), None]),
        os: health!(os),
        os_version: health!(os_version),
        disk_encryption: health!(disk_encryption),
        screen_lock: health!(screen_lock),
        firewall: health!(firewall),
        antivirus: health!(antivirus),
        edr: health!(edr),
        compliant: health!(compliant),
        last_check_in: match inventory.and_then(|r| r.last_check_in) {
            Some(at) => Fact::Known {
                value: at,
                source: FactSource::Inventory,
                observed_at: at,
            },
            None if inventory.is_some() => Fact::unknown(UnknownWhy::NoCheckIn),
            None => Fact::unknown(UnknownWhy::NotReported),
        },
    }
}

/// The first instant after `now` at which [`merge_posture`] may give another result for the
/// same inputs; `None` when no later instant changes it.
///
/// Only [`Observation::judge`] looks at the time, and its answer changes only at the
/// observation's [`Observation::boundaries`]. So a posture merged at `now` stays exactly the same for every
/// instant in `[now, the returned instant)` — what lets a connection reuse it
/// ([`crate::DevicePosture::unchanged`]).
pub fn merge_changes_at(
    device_id: &str,
    inventory: Option<&InventoryRecord>,
    assertion: Option<&VerifiedAssertion>,
    config: &PostureConfig,
    now: Timestamp,
) -> Option<Timestamp> {
    let (inv, asr) = observations(device_id, inventory, assertion, config);
    inv.and_then(Result::ok)
        .into_iter()
        .chain(asr)
        .flat_map(|o| o.boundaries(config.clock_skew))
        .flatten()
        // At `at + max_age` itself the fact is still fresh, so a boundary equal to `now` is
        // not yet passed: `>=` keeps it and `now < until` then merges again (safe side).
        .filter(|&b| b >= now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assertion::AssertedPosture;
    use proptest::prelude::*;

    fn record(last_check_in: Option<Timestamp>) -> InventoryRecord {
        InventoryRecord {
            device_id: "PC-1".into(),
            managed: Some(true),
            ownership: Some(Ownership::Corporate),
            owner: None,
            os: Some("Windows".into()),
            os_version: None,
            disk_encryption: Some(true),
            screen_lock: None,
            firewall: None,
            antivirus: None,
            edr: None,
            compliant: Some(true),
            last_check_in,
            tags: vec![],
            origin: "inventory.yaml:1".into(),
        }
    }

    fn assertion(observed_at: Timestamp) -> VerifiedAssertion {
        VerifiedAssertion {
            issuer: None,
            device_id: "PC-1".into(),
            issued_at: observed_at,
            observed_at,
            posture: AssertedPosture {
                os: Some("Windows".into()),
                compliant: Some(false),
                ..Default::default()
            },
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    /// The two instants at which an inventory fact changes: it stops being "from the future"
    /// at `last_check_in − clock_skew`, and turns stale just after `last_check_in + max_age`.
    #[test]
    fn a_merge_changes_where_a_fact_turns_known_or_stale() {
        let config = PostureConfig::default();
        let merge = |r: &InventoryRecord, at| merge_posture("PC-1", Some(r), None, &config, at);

        let seen = now() - SignedDuration::from_hours(1);
        let r = record(Some(seen));
        let until = merge_changes_at("PC-1", Some(&r), None, &config, now()).unwrap();
        assert_eq!(until, seen + config.inventory_max_age);
        assert!(merge(&r, until).managed.is_known());
        assert!(
            !merge(&r, until + SignedDuration::from_nanos(1))
                .managed
                .is_known()
        );

        let ahead = now() + SignedDuration::from_mins(10);
        let r = record(Some(ahead));
        let until = merge_changes_at("PC-1", Some(&r), None, &config, now()).unwrap();
        assert_eq!(until, ahead - config.clock_skew);
        assert!(
            !merge(&r, until - SignedDuration::from_nanos(1))
                .managed
                .is_known()
        );
        assert!(merge(&r, until).managed.is_known());

        // Stale for good, or nothing dated: no later instant changes anything.
        let old = record(Some(now() - SignedDuration::from_hours(100)));
        assert_eq!(
            merge_changes_at("PC-1", Some(&old), None, &config, now()),
            None
        );
        assert_eq!(
            merge_changes_at("PC-1", Some(&record(None)), None, &config, now()),
            None
        );
        assert_eq!(merge_changes_at("PC-1", None, None, &config, now()), None);
    }

    proptest! {
        /// Whatever the inventory and assertion say and however old they are, merging again
        /// at any instant before the one `merge_changes_at` names gives the same posture: what
        /// lets a connection reuse it.
        #[test]
        fn a_merge_stays_the_same_until_the_instant_named(
            check_in in proptest::option::of(-400_000i64..400_000),
            asserted in proptest::option::of(-4_000i64..4_000),
            with_inventory in any::<bool>(),
            later in 0i64..1_000_000,
        ) {
            let config = PostureConfig::default();
            let rec = with_inventory
                .then(|| record(check_in.map(|s| now() + SignedDuration::from_secs(s))));
            let asr = asserted.map(|s| assertion(now() + SignedDuration::from_secs(s)));
            let merge = |at| merge_posture("PC-1", rec.as_ref(), asr.as_ref(), &config, at);
            let first = merge(now());
            let until = merge_changes_at("PC-1", rec.as_ref(), asr.as_ref(), &config, now());
            let t = now() + SignedDuration::from_secs(later);
            if until.is_none_or(|u| t < u) {
                prop_assert_eq!(merge(t), first.clone());
            }
            if let Some(u) = until.filter(|&u| u > now()) {
                prop_assert_eq!(merge(u - SignedDuration::from_nanos(1)), first);
            }
        }
    }
}
