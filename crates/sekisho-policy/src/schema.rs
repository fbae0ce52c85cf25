//! JSON Schemas (draft 2020-12) for policy files and policy test files, so editors
//! (yaml-language-server) complete keys and underline mistakes while IT officers type.
//! The key lists come from the loader's own constants, so schema and loader agree.
//!
//! Committed at `schema/policy.schema.json` and `schema/policy-tests.schema.json`; a
//! test fails when the committed files differ from what this module generates.

use serde_json::{Map, Value, json};

use crate::compile::{
    CLAIM_KEYS, CRITERIA, DEVICE_KEYS, METHODS, OS_FAMILIES, PATH_KEYS, POLICY_KEYS, SETTINGS_KEYS,
    TIME_KEYS, TOP_KEYS, USER_KEYS,
};
use crate::testing::{
    CASE_KEYS, CERT_KEYS, DEVICE_FIELDS, IDENTITY_KEYS, OUTCOMES, REQUEST_KEYS, TEST_TOP_KEYS,
};

fn strings(desc: &str) -> Value {
    json!({
        "description": desc,
        "oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
        ]
    })
}

fn duration(desc: &str) -> Value {
    json!({"description": desc, "type": "string", "pattern": "^\\s*\\d+\\s*[a-z]+(\\s*\\d+\\s*[a-z]+)*\\s*$"})
}

fn only_true(desc: &str) -> Value {
    json!({"description": desc, "const": true})
}

fn check_keys(props: &Map<String, Value>, keys: &[&str]) {
    debug_assert_eq!(props.len(), keys.len(), "schema and loader disagree");
    for k in keys {
        debug_assert!(props.contains_key(*k), "schema lacks {k}");
    }
}

fn criteria_properties() -> Map<String, Value> {
    let cond = json!({"$ref": "#/$defs/condition"});
    let mut p = Map::new();
    p.insert(
        "anyone".into(),
        only_true("Matches every request (誰でも). Use only for public routes."),
    );
    p.insert(
        "authenticated".into(),
        only_true("The user is signed in (ログイン済み)."),
    );
    p.insert("user".into(), json!({
        "description": "The user: any of the listed subjects, e-mail addresses or e-mail domains.",
        "type": "object", "additionalProperties": false, "minProperties": 1,
        "properties": {
            "sub": strings("OIDC subject(s)."),
            "email": strings("E-mail address(es), case-insensitive."),
            "email_domain": strings("E-mail domain(s), e.g. city.example.lg.jp.")
        }
    }));
    p.insert(
        "groups".into(),
        strings("The user is in at least one of these groups (所属グループ)."),
    );
    p.insert("claim".into(), json!({
        "description": "A token claim: exactly one of equals, contains, one_of.",
        "type": "object", "additionalProperties": false, "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "equals": {"description": "The claim equals this value."},
            "contains": {"description": "The claim (a list, or a string) contains this value."},
            "one_of": {"type": "array", "minItems": 1, "description": "The claim equals one of these values."}
        },
        "oneOf": [{"required": ["equals"]}, {"required": ["contains"]}, {"required": ["one_of"]}]
    }));
    p.insert("mfa".into(), only_true("The user signed in with multi-factor authentication (amr values from settings.mfa_amr_values). Otherwise step-up is asked for."));
    p.insert(
        "acr".into(),
        strings("The session's acr is one of these values. Otherwise step-up is asked for."),
    );
    p.insert("max_auth_age".into(), duration("The last sign-in is at most this old, e.g. 30m. Otherwise re-authentication is asked for."));
    let mut device = Map::new();
    device.insert(
        "certificate".into(),
        only_true("A verified device certificate is presented (端末証明書)."),
    );
    device.insert("id".into(), strings("Device ID(s) from the certificate."));
    device.insert("ownership".into(), json!({"enum": ["corporate", "byod"], "description": "Corporate device or personal device (BYOD)."}));
    device.insert(
        "os".into(),
        json!({
            "description": "Operating system family (one or a list).",
            "anyOf": [
                {"enum": OS_FAMILIES},
                {"type": "array", "items": {"enum": OS_FAMILIES}, "minItems": 1}
            ]
        }),
    );
    for k in ["min_os_version", "max_os_version"] {
        device.insert(k.into(), json!({"type": "string", "pattern": "^\\d+(\\.\\d+)*$", "description": "Dotted version, compared numerically (10.0.19045 ≥ 10.0.19044). Quote it in YAML."}));
    }
    for k in [
        "managed",
        "compliant",
        "disk_encryption",
        "screen_lock",
        "firewall",
        "antivirus",
        "edr",
    ] {
        device.insert(k.into(), json!({"type": "boolean", "description": format!("Posture fact `{k}`. Unknown posture never matches.")}));
    }
    device.insert(
        "last_check_in_within".into(),
        duration("The device checked in with device management within this time, e.g. 7d."),
    );
    device.insert(
        "tags".into(),
        strings("The device has at least one of these tags."),
    );
    check_keys(&device, DEVICE_KEYS);
    p.insert(
        "device".into(),
        json!({
            "description": "Device criteria (all must hold). Need a verified device certificate.",
            "type": "object", "additionalProperties": false, "minProperties": 1,
            "properties": device
        }),
    );
    p.insert(
        "network".into(),
        strings("Source address in one of these networks (CIDR or single address)."),
    );
    p.insert("time".into(), json!({
        "description": "A time window. Several keys must all hold.",
        "type": "object", "additionalProperties": false, "minProperties": 1,
        "properties": {
            "tz": {"type": "string", "description": "IANA time zone; default settings.timezone (Asia/Tokyo)."},
            "weekdays": {
                "description": "Days: mon … sun, or ranges such as mon-fri.",
                "oneOf": [
                    {"type": "string", "pattern": "^(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?$"},
                    {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?$"}}
                ]
            },
            "hours": {"type": "string", "pattern": "^([01]\\d|2[0-4]):[0-5]\\d-([01]\\d|2[0-4]):[0-5]\\d$", "description": "HH:MM-HH:MM, start inclusive, end exclusive; 22:00-06:00 spans midnight. Quote it."},
            "dates": strings("Only on these dates (YYYY-MM-DD) or date lists from settings.holidays."),
            "except_dates": strings("Never on these dates (YYYY-MM-DD) or date lists, e.g. jp-holidays.")
        }
    }));
    check_keys(
        p["time"]["properties"].as_object().unwrap_or(&Map::new()),
        TIME_KEYS,
    );
    p.insert("method".into(), json!({
        "description": "HTTP method(s).",
        "anyOf": [{"enum": METHODS}, {"type": "array", "minItems": 1, "items": {"enum": METHODS}}]
    }));
    p.insert("path".into(), json!({
        "description": "The canonical request path: segment-aware prefixes (/audit matches /audit and /audit/x, not /auditx) and globs (* within a segment, ** across segments).",
        "type": "object", "additionalProperties": false, "minProperties": 1,
        "properties": {
            "prefix": strings("Path prefix(es), starting with /."),
            "glob": strings("Glob(s), starting with /.")
        }
    }));
    check_keys(
        p["path"]["properties"].as_object().unwrap_or(&Map::new()),
        PATH_KEYS,
    );
    p.insert(
        "zone".into(),
        strings("The request's zone (lgwan, internet, …)."),
    );
    p.insert("route".into(), strings("The request's route name."));
    p.insert("all".into(), json!({"description": "Every condition holds.", "type": "array", "minItems": 1, "items": cond}));
    p.insert("any".into(), json!({"description": "At least one condition holds.", "type": "array", "minItems": 1, "items": cond}));
    p.insert("not".into(), json!({"description": "The condition does not hold (unknown stays unknown).", "$ref": "#/$defs/condition"}));
    check_keys(
        p["user"]["properties"].as_object().unwrap_or(&Map::new()),
        USER_KEYS,
    );
    check_keys(
        p["claim"]["properties"].as_object().unwrap_or(&Map::new()),
        CLAIM_KEYS,
    );
    check_keys(&p, CRITERIA);
    p
}

/// The JSON Schema of policy files (`policies/*.yaml`).
pub fn policy_schema() -> Value {
    let criteria = criteria_properties();
    let mut rule_props = criteria.clone();
    rule_props.insert(
        "name".into(),
        json!({"type": "string", "description": "A label for the rule, shown in traces."}),
    );
    let rule_list = json!({"type": "array", "items": {"$ref": "#/$defs/rule"}});
    let top = json!({
        "policies": {
            "description": "Policies by name (lower-case letters, digits, -). Routes and zones refer to them.",
            "type": "object",
            "propertyNames": {"pattern": "^[a-z0-9_-]+$"},
            "additionalProperties": {"$ref": "#/$defs/policy"}
        },
        "settings": {
            "description": "Settings for the whole policy set; each may be set in one file only.",
            "type": "object", "additionalProperties": false,
            "properties": {
                "timezone": {"type": "string", "description": "Default time zone of time windows (Asia/Tokyo)."},
                "mfa_amr_values": {"type": "array", "minItems": 1, "items": {"type": "string"}, "description": "amr values that count as MFA. Default: mfa, otp, hwk, fido, sc."},
                "holidays": {
                    "description": "Named date lists, e.g. jp-holidays, used by time windows.",
                    "type": "object",
                    "propertyNames": {"pattern": "^[a-z0-9_-]+$"},
                    "additionalProperties": {"type": "array", "items": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$"}}
                }
            }
        }
    });
    check_keys(top.as_object().unwrap_or(&Map::new()), TOP_KEYS);
    check_keys(
        top["settings"]["properties"]
            .as_object()
            .unwrap_or(&Map::new()),
        SETTINGS_KEYS,
    );
    let policy = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "description": {"type": "string"},
            "allow": rule_list,
            "deny": rule_list
        }
    });
    check_keys(
        policy["properties"].as_object().unwrap_or(&Map::new()),
        POLICY_KEYS,
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sekisho.example/schema/policy.schema.json",
        "title": "Sekisho policy file (関所 ポリシー)",
        "description": "Default deny; deny overrides allow; a zone floor is AND-ed with every route policy. See docs/policies.md.",
        "type": "object",
        "additionalProperties": false,
        "properties": top,
        "$defs": {
            "policy": policy,
            "rule": {
                "description": "A rule: every criterion must hold.",
                "type": "object", "additionalProperties": false, "minProperties": 1,
                "properties": rule_props
            },
            "condition": {
                "description": "A condition: every criterion must hold.",
                "type": "object", "additionalProperties": false, "minProperties": 1,
                "properties": criteria
            }
        }
    })
}

/// The JSON Schema of policy test files (`policies/tests/*.yaml`).
pub fn tests_schema() -> Value {
    let time = json!({"type": "string", "description": "RFC 3339 with offset, e.g. 2026-04-14T10:00:00+09:00."});
    let string_list =
        json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    let identity = json!({
        "type": "object", "additionalProperties": false, "required": ["sub"],
        "properties": {
            "sub": {"type": "string"}, "email": {"type": "string"}, "name": {"type": "string"},
            "groups": string_list, "amr": string_list, "acr": {"type": "string"},
            "auth_time": time, "claims": {"type": "object"}
        }
    });
    check_keys(
        identity["properties"].as_object().unwrap_or(&Map::new()),
        IDENTITY_KEYS,
    );
    let flag = json!({"oneOf": [{"type": "boolean"}, {"const": "unknown"}]});
    let mut dev = Map::new();
    dev.insert("certificate".into(), json!({
        "description": "`absent`, {id, fingerprint} or {invalid: reason}.",
        "oneOf": [
            {"const": "absent"},
            {"type": "object", "additionalProperties": false, "properties": {"id": {"type": "string"}, "fingerprint": {"type": "string"}, "invalid": {"type": "string"}}}
        ]
    }));
    check_keys(
        dev["certificate"]["oneOf"][1]["properties"]
            .as_object()
            .unwrap_or(&Map::new()),
        CERT_KEYS,
    );
    for k in [
        "managed",
        "compliant",
        "disk_encryption",
        "screen_lock",
        "firewall",
        "antivirus",
        "edr",
    ] {
        dev.insert(k.into(), flag.clone());
    }
    dev.insert(
        "ownership".into(),
        json!({"enum": ["corporate", "byod", "unknown"]}),
    );
    dev.insert("os".into(), json!({"type": "string"}));
    dev.insert("os_version".into(), json!({"type": "string"}));
    dev.insert(
        "last_check_in".into(),
        json!({"type": "string", "description": "A time, or a duration before `at` such as 2h."}),
    );
    dev.insert(
        "tags".into(),
        json!({"oneOf": [{"const": "unknown"}, string_list]}),
    );
    check_keys(&dev, DEVICE_FIELDS);
    let device = json!({"type": "object", "additionalProperties": false, "properties": dev, "description": "Posture facts left out are unknown."});
    let request = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "method": {"type": "string"}, "host": {"type": "string"}, "path": {"type": "string"},
            "zone": {"type": "string"}, "route": {"type": "string"}, "source_ip": {"type": "string"}
        }
    });
    check_keys(
        request["properties"].as_object().unwrap_or(&Map::new()),
        REQUEST_KEYS,
    );
    let case = json!({
        "type": "object", "additionalProperties": false,
        "required": ["name", "at", "expect"],
        "properties": {
            "name": {"type": "string"},
            "policy": {"type": "string"},
            "floor": {"type": "string"},
            "route": {"type": "string"},
            "at": time,
            "identity": {"description": "A name from `identities`, or an inline identity; omit for a request without sign-in.", "oneOf": [{"type": "string"}, {"$ref": "#/$defs/identity"}]},
            "device": {"description": "A name from `devices`, or an inline device; omit for no certificate.", "oneOf": [{"type": "string"}, {"$ref": "#/$defs/device"}]},
            "request": {"$ref": "#/$defs/request"},
            "expect": {"enum": OUTCOMES},
            "reason": {"type": "string", "enum": crate::reason::ALL.iter().map(|r| r.code).collect::<Vec<_>>()}
        },
        "oneOf": [{"required": ["policy"]}, {"required": ["route"]}]
    });
    check_keys(
        case["properties"].as_object().unwrap_or(&Map::new()),
        CASE_KEYS,
    );
    let top = json!({
        "identities": {"type": "object", "additionalProperties": {"$ref": "#/$defs/identity"}},
        "devices": {"type": "object", "additionalProperties": {"$ref": "#/$defs/device"}},
        "cases": {"type": "array", "items": {"$ref": "#/$defs/case"}}
    });
    check_keys(top.as_object().unwrap_or(&Map::new()), TEST_TOP_KEYS);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sekisho.example/schema/policy-tests.schema.json",
        "title": "Sekisho policy test cases (ポリシーのテストケース)",
        "type": "object", "additionalProperties": false, "required": ["cases"],
        "properties": top,
        "$defs": {"identity": identity, "device": device, "request": request, "case": case}
    })
}

/// Rebuild objects with sorted keys, so the output is the same whether or not
/// serde_json's `preserve_order` feature is on somewhere in the build.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Pretty JSON with sorted keys and a trailing newline, as committed.
pub fn to_pretty(schema: &Value) -> String {
    let mut s = serde_json::to_string_pretty(&sorted(schema)).unwrap_or_default();
    s.push('\n');
    s
}
