//! The record schema: one JSON object per line, one line per event.
//!
//! Every line is a [`Record`]: an envelope (`v`, `seq`, `time`, `instance`, `prev`) and,
//! flattened into the same object, an [`Event`] tagged by `kind`. The schema has no field
//! for tokens, cookies, secrets or bodies: the gateway cannot put them in by mistake.
//!
//! Field order is fixed by the struct definitions, and the chain hashes the exact bytes of
//! each line, so no separate canonicalisation step is needed: the bytes on disk *are* the
//! canonical form.
use jiff::{Timestamp, tz::TimeZone};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Text that is most often a constant (a fact name, a reason, a method): borrowed when it is,
/// so the request path does not allocate a copy of it for every record.
pub type Text = std::borrow::Cow<'static, str>;

/// A part of a record that repeats from request to request — the user of a session, the
/// device of a connection, the reasons a rule gives — with its JSON made once and then
/// written as is into every record that carries it. Reads like the value it holds
/// (`Deref`); cheap to clone (shared).
///
/// Why: serde_json escapes strings a byte at a time, and these parts hold most of a
/// record's text (a 64-digit fingerprint, Japanese reason texts, e-mail addresses). Made
/// per request they were the larger part of what the audit trail cost the request path.
/// The bytes written are exactly those the value would serialise to (a test holds this),
/// so the chain and every reader see no difference.
///
/// Only serde_json's compact writer, which records are written with, knows raw JSON: its
/// pretty printer writes a frozen part compact, and another format would write serde_json's
/// raw-value wrapper. Convert a record with `serde_json::to_value` first for anything else.
pub struct Frozen<T>(Arc<FrozenInner<T>>);

struct FrozenInner<T> {
    value: T,
    json: std::sync::OnceLock<Option<Box<serde_json::value::RawValue>>>,
}

impl<T> Frozen<T> {
    /// Wraps `value`; its JSON is made when it is first written.
    pub fn new(value: T) -> Frozen<T> {
        Frozen(Arc::new(FrozenInner {
            value,
            json: std::sync::OnceLock::new(),
        }))
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.0.value
    }
}

impl<T> std::ops::Deref for Frozen<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> From<T> for Frozen<T> {
    fn from(value: T) -> Frozen<T> {
        Frozen::new(value)
    }
}

impl<T> Clone for Frozen<T> {
    fn clone(&self) -> Self {
        Frozen(Arc::clone(&self.0))
    }
}

impl<T: Default> Default for Frozen<T> {
    fn default() -> Self {
        Frozen::new(T::default())
    }
}

impl<T: PartialEq> PartialEq for Frozen<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Frozen<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.value.fmt(f)
    }
}

impl<T: Serialize> Frozen<T> {
    /// The value's JSON, made on first use.
    fn raw(&self) -> Option<&serde_json::value::RawValue> {
        self.0
            .json
            .get_or_init(|| {
                serde_json::to_string(&self.0.value)
                    .ok()
                    .and_then(|s| serde_json::value::RawValue::from_string(s).ok())
            })
            .as_deref()
    }

    /// Appends the value's JSON to `out` (the hand-written access record, [`crate::json`]).
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        match self.raw() {
            Some(raw) => out.extend_from_slice(raw.get().as_bytes()),
            // Writing into a Vec cannot fail.
            None => drop(serde_json::to_writer(out, &self.0.value)),
        }
    }
}

impl<T: Serialize> Serialize for Frozen<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.raw() {
            // serde_json writes a raw value's text as is; any other serializer would not
            // know it, but records are only ever written with serde_json.
            Some(raw) => raw.serialize(serializer),
            None => self.0.value.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Frozen<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Frozen::new)
    }
}

/// Schema version written in every record's `v` field.
pub const SCHEMA_VERSION: u32 = 1;

/// `prev` of the very first record of a trail: 64 zeros.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// Sequence number: 1 for the first record ever written, +1 for each record after,
    /// continuing across files.
    pub seq: u64,
    /// When the record was made: RFC 3339 with offset and milliseconds,
    /// e.g. `2026-11-23T09:15:02.123+09:00`.
    pub time: String,
    /// The gateway instance that wrote the record.
    pub instance: String,
    /// Lowercase hex SHA-256 of the previous line's bytes (without its newline);
    /// [`GENESIS_PREV`] for the first record.
    pub prev: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// An event serialised where it was made: the JSON object `{"kind":…,…}` that
/// [`Record`] flattens after its envelope. The writer only frames it ([`frame`]), hashes and
/// writes it.
///
/// Why: the writer thread shares a CPU with the request path. Serialising there, and freeing
/// the event's strings on a thread other than the one that allocated them, cost the writer
/// more than hashing and writing together; the appending thread does both more cheaply,
/// with its own allocator cache, and hands over one buffer.
#[derive(Debug)]
pub(crate) struct Body {
    json: Vec<u8>,
    /// For an allowed access record: where the request's outcome arrives if the response
    /// ends before the writer frames the record ([`OutcomeSlot`]).
    outcome: Option<Arc<OutcomeSlot>>,
}

impl Body {
    /// Serialises `event`.
    pub(crate) fn of(event: &Event) -> Body {
        Body::with_outcome(event, None)
    }

    pub(crate) fn with_outcome(event: &Event, outcome: Option<Arc<OutcomeSlot>>) -> Body {
        // Room for the whole body at once: an access record with a user and a device is
        // ≈ 1.1 KB, and growing the buffer would copy it and allocate twice per request.
        let mut json = Vec::with_capacity(match event {
            Event::Access(_) => 2048,
            _ => 256,
        });
        // Serialising our own types cannot fail (no maps with non-string keys); should it
        // ever, the body stays empty and the framed line has no `kind`, which verify reports.
        match event {
            // Nearly every record is this one: written by hand, the same bytes (crate::json).
            Event::Access(a) => a.write_json(&mut json),
            _ => {
                if serde_json::to_writer(&mut json, event).is_err() {
                    json.clear();
                }
            }
        }
        Body { json, outcome }
    }

    /// An allowed access record whose response has not ended yet: its outcome may still
    /// arrive and join its line.
    pub(crate) fn awaiting_outcome(&self) -> bool {
        self.outcome.as_deref().is_some_and(OutcomeSlot::waiting)
    }
}

/// The outcome of a forwarded request while its `access` record waits to be written.
///
/// Why: an allowed request made two records, the decision (written before forwarding) and
/// its outcome (`access_result`, when the response ended). In `batched` mode most responses
/// end before the writer takes the decision off the queue; the outcome then goes into the
/// decision's own line, in the fields [`AccessEvent`] has for it, and the request costs one
/// record instead of two: one envelope, hash and write fewer on the writer's CPU. The
/// decision is still queued (accepted) before forwarding; only its not-yet-written line
/// gains the outcome. An outcome that arrives after the line was written becomes an
/// `access_result` record as before.
#[derive(Debug, Default)]
pub(crate) struct OutcomeSlot(Mutex<Outcome>);

#[derive(Debug, Default)]
enum Outcome {
    /// The response has not ended and the record has not been written.
    #[default]
    Waiting,
    /// The response ended first: the writer folds this into the record.
    Arrived(AccessResultEvent),
    /// The record is written: a later outcome needs a record of its own.
    Written,
}

/// A body dropped without being framed (the writer stopped first) closes its slot, so the
/// outcome is handed back to its caller — who then fails to append it and says so — rather
/// than vanishing into a slot nobody reads.
impl Drop for Body {
    fn drop(&mut self) {
        if let Some(slot) = &self.outcome {
            slot.close();
        }
    }
}

impl OutcomeSlot {
    /// Leaves `result` for the writer; hands it back when the record is already written
    /// (or `result` has an error, which an `access` record has no field for).
    pub(crate) fn offer(&self, result: AccessResultEvent) -> Result<(), AccessResultEvent> {
        let mut o = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match *o {
            Outcome::Waiting if result.error.is_none() => {
                *o = Outcome::Arrived(result);
                Ok(())
            }
            _ => Err(result),
        }
    }

    fn waiting(&self) -> bool {
        matches!(
            *self.0.lock().unwrap_or_else(PoisonError::into_inner),
            Outcome::Waiting
        )
    }

    /// Called by the writer as it frames the record: what arrived, if anything; from now
    /// on the outcome is refused.
    fn close(&self) -> Option<AccessResultEvent> {
        let mut o = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *o, Outcome::Written) {
            Outcome::Arrived(r) => Some(r),
            Outcome::Waiting | Outcome::Written => None,
        }
    }
}

/// An access record can take a folded outcome only if it has none of the outcome fields.
pub(crate) fn can_fold(event: &Event) -> bool {
    matches!(event, Event::Access(a) if a.upstream.is_none()
        && a.upstream_status.is_none()
        && a.status.is_none()
        && a.bytes_in.is_none()
        && a.bytes_out.is_none()
        && a.duration_us.is_none())
}

/// Appends one record's line (without its newline) to `out`: the envelope, then `body`'s
/// fields in the same object. The bytes are exactly what serde writes for the equivalent
/// [`Record`] (a test holds this), so `verify` and the readers see no difference.
///
/// `instance_json` is the instance name already as a JSON string (quoted and escaped once
/// when the writer opens); `time` (digits and `-T:.+`) and `prev` (hex) need no escaping.
pub(crate) fn frame(
    out: &mut Vec<u8>,
    seq: u64,
    time: &str,
    instance_json: &str,
    prev: &str,
    body: &Body,
) {
    // `time` is what `format_time` made (digits and `-+:.T`) and `prev` a hex digest:
    // nothing to escape in either; `instance_json` is already JSON.
    let mut itoa = itoa::Buffer::new();
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(itoa.format(SCHEMA_VERSION).as_bytes());
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(itoa.format(seq).as_bytes());
    out.extend_from_slice(b",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"instance\":");
    out.extend_from_slice(instance_json.as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev.as_bytes());
    out.push(b'"');
    match body.json.split_first() {
        Some((b'{', rest)) if rest.len() > 1 => {
            out.push(b',');
            match body.outcome.as_deref().and_then(OutcomeSlot::close) {
                None => out.extend_from_slice(rest),
                Some(r) => {
                    // `rest` without its closing brace, then the outcome's fields with a
                    // comma in place of their opening brace.
                    out.extend_from_slice(&rest[..rest.len() - 1]);
                    use crate::json::key;
                    let mut o = crate::json::Fields::new(out);
                    o.opt_str(key!("upstream"), r.upstream.as_deref());
                    o.opt_num(key!("upstream_status"), r.upstream_status.map(u64::from));
                    o.num(key!("status"), r.status.into());
                    o.num(key!("bytes_in"), r.bytes_in);
                    o.num(key!("bytes_out"), r.bytes_out);
                    o.num(key!("duration_us"), r.duration_us);
                    o.close();
                }
            }
        }
        _ => out.push(b'}'),
    }
}

impl Record {
    /// The record's time as an instant, if it parses.
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.time.parse().ok()
    }
}

/// Hash of one line, as stored in the next record's `prev`.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// [`line_hash`] written over `out`, reusing its allocation (the writer does this once per
/// record).
pub fn set_line_hash(out: &mut String, line: &[u8]) {
    let mut hex = [0u8; 64];
    if hex::encode_to_slice(Sha256::digest(line), &mut hex).is_ok()
        && let Ok(h) = std::str::from_utf8(&hex)
    {
        out.clear();
        out.push_str(h);
    }
}

/// Format an instant the way records carry it: RFC 3339, offset of `tz`, milliseconds.
pub fn format_time(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")
        .to_string()
}

/// Everything the trail records, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A policy decision for a request that reached routing (allow and deny).
    Access(Box<AccessEvent>),
    /// What happened after an allowed request was forwarded (status, bytes, duration),
    /// linked to its `access` record by `request_id`.
    AccessResult(AccessResultEvent),
    /// A user completed OIDC login.
    LoginSuccess(LoginEvent),
    /// An OIDC login failed.
    LoginFailure(LoginFailureEvent),
    /// A user logged out.
    Logout(SessionEvent),
    /// A session was refreshed (or the refresh failed).
    SessionRefresh(SessionEvent),
    /// A step-up authentication was asked for or completed.
    StepUp(StepUpEvent),
    /// A client certificate was presented and rejected.
    DeviceCertFailure(DeviceCertFailureEvent),
    /// Configuration and/or policies were reloaded (or a reload was rejected).
    ConfigReload(ConfigReloadEvent),
    /// The configuration could not be loaded.
    ConfigError(ConfigErrorEvent),
    /// The gateway started.
    Start(StartEvent),
    /// The gateway is stopping.
    Stop(StopEvent),
    /// Written by the audit writer: first record of a new file after rotation.
    Rotated(RotatedEvent),
    /// Written by the audit writer: old files were removed by the retention rule.
    Retention(RetentionEvent),
    /// Written by the audit writer: a torn last line left by a crash was cut off on start.
    Repaired(RepairedEvent),
    /// Written by the audit writer: writing works again after a failure.
    Recovered(RecoveredEvent),
}

impl Event {
    /// The `kind` tag as written.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Access(_) => "access",
            Event::AccessResult(_) => "access_result",
            Event::LoginSuccess(_) => "login_success",
            Event::LoginFailure(_) => "login_failure",
            Event::Logout(_) => "logout",
            Event::SessionRefresh(_) => "session_refresh",
            Event::StepUp(_) => "step_up",
            Event::DeviceCertFailure(_) => "device_cert_failure",
            Event::ConfigReload(_) => "config_reload",
            Event::ConfigError(_) => "config_error",
            Event::Start(_) => "start",
            Event::Stop(_) => "stop",
            Event::Rotated(_) => "rotated",
            Event::Retention(_) => "retention",
            Event::Repaired(_) => "repaired",
            Event::Recovered(_) => "recovered",
        }
    }
}

/// allow or deny.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request was allowed and forwarded.
    Allow,
    /// The request was denied (the default: a record built without a decision says deny).
    #[default]
    Deny,
}

impl Decision {
    /// `allow` / `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// Who made the request, as the identity step established it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserInfo {
    /// OIDC subject.
    pub sub: String,
    /// E-mail address, if the IdP gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Groups used by the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Authentication methods (`amr`), e.g. `pwd`, `otp`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// Authentication context class (`acr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// When the user authenticated (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<String>,
}

/// One posture fact the policy used, and how old it was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PostureFact {
    /// Fact name, e.g. `managed`, `compliant`, `os_version`.
    pub name: Text,
    /// Its value as text.
    pub value: Text,
    /// Which source said so (inventory, signed assertion …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Text>,
    /// Age of the fact in seconds when the decision was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
}

/// The device, as the device step established it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device ID from the client certificate.
    pub id: String,
    /// SHA-256 fingerprint of the client certificate (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Posture facts used by the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub posture: Vec<PostureFact>,
}

/// A reason a person can read, with a stable code for counting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code, e.g. `mfa_required`, `device_not_compliant`.
    pub code: Text,
    /// Text in Japanese.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja: Option<Text>,
    /// Text in English.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en: Option<Text>,
}

/// An access decision. Written before anything is forwarded.
///
/// For a denied request it is the only record; for an allowed request the outcome fields
/// (`upstream_status`, `status`, `bytes_*`, `duration_us`) may be left empty here and
/// reported in an [`AccessResultEvent`] with the same `request_id` once the response is done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessEvent {
    /// Request ID (also shown to the user and in tracing).
    pub request_id: String,
    /// Zone of the route (e.g. `lgwan`, `internet`).
    pub zone: String,
    /// Listener that accepted the connection.
    pub listener: String,
    /// Route name; empty when no route matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// HTTP method.
    pub method: Text,
    /// Host the client asked for.
    pub host: String,
    /// Canonical path (what was routed, decided and forwarded). Never the query string.
    pub path: String,
    /// Query string: absent by default; if the operator enables it, the gateway redacts
    /// values before passing it here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Client IP address.
    pub client_ip: String,
    /// The user, when one was identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Frozen<UserInfo>>,
    /// The device, when a certificate was presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Frozen<DeviceInfo>>,
    /// allow / deny.
    pub decision: Decision,
    /// The policy rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "no_reasons")]
    pub reasons: Frozen<Vec<Reason>>,
    /// Version (hash) of the policy set that decided.
    pub policy_version: String,
    /// Upstream the request is forwarded to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Upstream's response status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Status sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Request body bytes received from the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    /// Response body bytes sent to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    /// Time from request start to the end of the response, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    // The outcome fields above must stay the last ones, in this order: the writer splices a
    // folded outcome (`frame`) onto the end of an already serialised record. A field added
    // here must also be added to `AccessEvent::write_json`.
}

impl AccessEvent {
    /// `{"kind":"access",…}` — byte for byte what serde writes for `Event::Access(self)`
    /// (the test `an_access_record_written_by_hand_is_what_serde_writes` holds this for
    /// every field), without serde_json's per-byte escaping of names and plain values.
    /// Fields in the struct's order; when a field is added above, add it here too.
    fn write_json(&self, out: &mut Vec<u8>) {
        use crate::json::key;
        out.extend_from_slice(br#"{"kind":"access""#);
        let mut o = crate::json::Fields::new(out);
        o.str(key!("request_id"), &self.request_id);
        o.str(key!("zone"), &self.zone);
        o.str(key!("listener"), &self.listener);
        o.opt_str(key!("route"), self.route.as_deref());
        o.str(key!("method"), &self.method);
        o.str(key!("host"), &self.host);
        o.str(key!("path"), &self.path);
        o.opt_str(key!("query"), self.query.as_deref());
        o.str(key!("client_ip"), &self.client_ip);
        if let Some(user) = &self.user {
            o.with(key!("user"), |out| user.write_json(out));
        }
        if let Some(device) = &self.device {
            o.with(key!("device"), |out| device.write_json(out));
        }
        o.str(key!("decision"), self.decision.as_str());
        o.opt_str(key!("rule"), self.rule.as_deref());
        if !no_reasons(&self.reasons) {
            o.with(key!("reasons"), |out| self.reasons.write_json(out));
        }
        o.str(key!("policy_version"), &self.policy_version);
        o.opt_str(key!("upstream"), self.upstream.as_deref());
        o.opt_num(key!("upstream_status"), self.upstream_status.map(u64::from));
        o.opt_num(key!("status"), self.status.map(u64::from));
        o.opt_num(key!("bytes_in"), self.bytes_in);
        o.opt_num(key!("bytes_out"), self.bytes_out);
        o.opt_num(key!("duration_us"), self.duration_us);
        o.close();
    }
}

fn no_reasons(r: &Frozen<Vec<Reason>>) -> bool {
    r.is_empty()
}

/// The outcome of a forwarded request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccessResultEvent {
    /// Same as the `access` record's `request_id`.
    pub request_id: String,
    /// Upstream the request went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Upstream's status (absent when the upstream could not be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// Status sent to the client.
    pub status: u16,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Duration in microseconds.
    pub duration_us: u64,
    /// Why it ended abnormally, e.g. `upstream_timeout`, `client_aborted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A successful login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginEvent {
    /// Request ID of the callback request.
    pub request_id: String,
    /// The identity provider (issuer URL).
    pub issuer: String,
    /// The user.
    pub user: UserInfo,
    /// Client IP address.
    pub client_ip: String,
    /// Device ID, when a verified certificate was presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// A failed login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoginFailureEvent {
    /// Request ID.
    pub request_id: String,
    /// The identity provider (issuer URL).
    pub issuer: String,
    /// Subject or e-mail if known (never a password or token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_hint: Option<String>,
    /// Client IP address.
    pub client_ip: String,
    /// Why, as a stable code (e.g. `state_mismatch`, `idp_error`, `nonce_mismatch`).
    pub reason: String,
}

/// Logout or session refresh.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEvent {
    /// Request ID.
    pub request_id: String,
    /// OIDC subject.
    pub sub: String,
    /// Client IP address.
    pub client_ip: String,
    /// `ok` or a failure code.
    pub outcome: String,
}

/// Step-up authentication.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepUpEvent {
    /// Request ID.
    pub request_id: String,
    /// OIDC subject.
    pub sub: String,
    /// Route that required it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// What was required (e.g. `acr=mfa`, `max_age=300`).
    pub required: String,
    /// `requested`, `completed` or a failure code.
    pub outcome: String,
}

/// A client certificate was rejected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceCertFailureEvent {
    /// Request ID (if the failure happened after the handshake) or connection ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Listener.
    pub listener: String,
    /// Client IP address.
    pub client_ip: String,
    /// Certificate fingerprint (hex), if a certificate was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Device ID, if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Why: e.g. `expired`, `revoked`, `unknown_ca`, `no_device_id`.
    pub reason: String,
}

/// A configuration / policy reload.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigReloadEvent {
    /// `applied` or `rejected`.
    pub outcome: String,
    /// Configuration version (hash) now in force.
    pub config_version: String,
    /// Policy version (hash) now in force.
    pub policy_version: String,
    /// Policy version before the reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_policy_version: Option<String>,
    /// Human-readable summary of what changed (`route added: …`, `policy changed: …`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Errors when the reload was rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The configuration could not be loaded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigErrorEvent {
    /// File that failed.
    pub source: String,
    /// Each error with file:line:column.
    pub errors: Vec<String>,
}

/// Gateway start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartEvent {
    /// Gateway version.
    pub version: String,
    /// Configuration version in force.
    pub config_version: String,
    /// Policy version in force.
    pub policy_version: String,
}

/// Gateway stop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StopEvent {
    /// Why: `signal`, `shutdown`, …
    pub reason: String,
}

/// Rotation: the first record of every file but the first one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RotatedEvent {
    /// The file before this one.
    pub previous_file: String,
    /// `size`, `day` or `restart`.
    pub reason: String,
}

/// Files removed by the retention rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionEvent {
    /// File names removed.
    pub removed: Vec<String>,
    /// The highest sequence number in the removed files.
    pub removed_through_seq: u64,
    /// Retention in days in force.
    pub retention_days: u32,
}

/// A torn last line was cut off on start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepairedEvent {
    /// File repaired.
    pub file: String,
    /// Length of the file before repair.
    pub original_len: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
    /// SHA-256 (hex) of the removed bytes.
    pub removed_sha256: String,
    /// Where a copy of the removed bytes was kept.
    pub copy: String,
}

/// Writing works again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecoveredEvent {
    /// When writing first failed (RFC 3339).
    pub failed_since: String,
    /// The first error seen.
    pub error: String,
    /// Appends refused while the trail was unavailable (the gateway answered 503).
    pub rejected_appends: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A frozen part is written exactly as its value would be, inside a record too, and
    /// reads back as the same value.
    #[test]
    fn a_frozen_part_writes_the_bytes_its_value_would() {
        let user = UserInfo {
            sub: "u-\"1\"\n".into(),
            email: Some("山田@city.example.lg.jp".into()),
            groups: vec!["財務課".into(), "staff".into()],
            amr: vec!["pwd".into(), "otp".into()],
            acr: None,
            auth_time: Some("2026-11-23T08:00:00Z".into()),
        };
        let device = DeviceInfo {
            id: "PC-0042".into(),
            fingerprint: Some("ab".repeat(32)),
            posture: vec![PostureFact {
                name: "managed".into(),
                value: "true".into(),
                source: Some("inventory".into()),
                age_secs: Some(42),
            }],
        };
        let reasons = vec![Reason {
            code: "policy.allowed".into(),
            ja: Some("ポリシーにより許可されました\t\u{1}".into()),
            en: Some("Access is permitted by the policy".into()),
        }];
        fn plain<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).unwrap()
        }
        assert_eq!(
            serde_json::to_string(&Frozen::new(user.clone())).unwrap(),
            plain(&user)
        );
        assert_eq!(
            serde_json::to_string(&Frozen::new(device.clone())).unwrap(),
            plain(&device)
        );
        assert_eq!(
            serde_json::to_string(&Frozen::new(reasons.clone())).unwrap(),
            plain(&reasons)
        );
        let event = Event::Access(Box::new(AccessEvent {
            request_id: "req-1".into(),
            user: Some(user.clone().into()),
            device: Some(device.clone().into()),
            reasons: reasons.clone().into(),
            ..Default::default()
        }));
        let line = serde_json::to_string(&event).unwrap();
        assert!(
            line.contains(&format!(",\"user\":{},", plain(&user))),
            "{line}"
        );
        assert!(
            line.contains(&format!(",\"device\":{},", plain(&device))),
            "{line}"
        );
        assert!(
            line.contains(&format!(",\"reasons\":{},", plain(&reasons))),
            "{line}"
        );
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event);
        assert_eq!(serde_json::to_string(&back).unwrap(), line);
    }

    /// The writer frames a [`Body`]; readers parse [`Record`]. Both must mean the same bytes,
    /// or hashes computed by `verify` would not match what the writer chained.
    #[test]
    fn a_framed_body_is_exactly_what_record_writes() {
        let access = Event::Access(Box::new(AccessEvent {
            request_id: "req-1".into(),
            zone: "lgwan".into(),
            method: "GET".into(),
            host: "portal.example.lg.jp".into(),
            path: "/書類/一覧".into(),
            client_ip: "127.0.0.1".into(),
            route: Some("portal".into()),
            rule: Some("staff \"quoted\"\n".into()),
            reasons: vec![Reason {
                code: "policy.allowed".into(),
                ja: Some("ポリシーにより許可されました".into()),
                en: Some("Access is permitted by the policy".into()),
            }]
            .into(),
            status: Some(403),
            ..Default::default()
        }));
        let result = Event::AccessResult(AccessResultEvent {
            request_id: "req-1".into(),
            status: 200,
            bytes_out: 322,
            ..Default::default()
        });
        let stop = Event::Stop(StopEvent::default());
        for (event, instance) in [(access, "gw-1"), (result, "庁舎 \"A\"\\1"), (stop, "")] {
            let owned = Record {
                v: SCHEMA_VERSION,
                seq: 42,
                time: "2026-11-23T09:15:02.123+09:00".into(),
                instance: instance.into(),
                prev: GENESIS_PREV.into(),
                event,
            };
            let mut framed = Vec::new();
            frame(
                &mut framed,
                42,
                "2026-11-23T09:15:02.123+09:00",
                &serde_json::to_string(instance).unwrap(),
                GENESIS_PREV,
                &Body::of(&owned.event),
            );
            assert_eq!(
                String::from_utf8(framed.clone()).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
            let back: Record = serde_json::from_slice(&framed).unwrap();
            assert_eq!(back, owned);
        }
    }

    #[test]
    fn an_empty_body_still_frames_a_closed_object() {
        let mut framed = Vec::new();
        frame(
            &mut framed,
            1,
            "t",
            "\"i\"",
            GENESIS_PREV,
            &Body {
                json: Vec::new(),
                outcome: None,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&framed).unwrap();
        assert_eq!(v["seq"], 1);
        assert!(v.get("kind").is_none());
    }

    /// A folded outcome gives the bytes serde writes for the access record with its outcome
    /// fields set; an outcome offered after framing, or with an error, is handed back.
    #[test]
    fn a_folded_outcome_is_exactly_the_access_record_with_its_outcome() {
        let allowed = AccessEvent {
            request_id: "req-7".into(),
            zone: "internet".into(),
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            client_ip: "127.0.0.1".into(),
            decision: Decision::Allow,
            policy_version: "v1".into(),
            ..Default::default()
        };
        let event = Event::Access(Box::new(allowed.clone()));
        assert!(can_fold(&event));
        let result = AccessResultEvent {
            request_id: "req-7".into(),
            upstream: Some("http://127.0.0.1:8080".into()),
            upstream_status: Some(200),
            status: 200,
            bytes_in: 3,
            bytes_out: 322,
            duration_us: 1234,
            error: None,
        };
        let slot = Arc::new(OutcomeSlot::default());
        let body = Body::with_outcome(&event, Some(slot.clone()));
        assert!(slot.offer(result.clone()).is_ok());
        let mut framed = Vec::new();
        frame(&mut framed, 9, "t", "\"gw\"", GENESIS_PREV, &body);
        let want = Record {
            v: SCHEMA_VERSION,
            seq: 9,
            time: "t".into(),
            instance: "gw".into(),
            prev: GENESIS_PREV.into(),
            event: Event::Access(Box::new(AccessEvent {
                upstream: result.upstream.clone(),
                upstream_status: Some(200),
                status: Some(200),
                bytes_in: Some(3),
                bytes_out: Some(322),
                duration_us: Some(1234),
                ..allowed
            })),
        };
        assert_eq!(
            String::from_utf8(framed).unwrap(),
            serde_json::to_string(&want).unwrap()
        );
        assert!(!can_fold(&want.event), "an outcome is folded once");
        // The line is written: a late outcome is handed back for a record of its own.
        assert_eq!(slot.offer(result.clone()), Err(result.clone()));

        // Nothing arrived before framing: the plain record, and the slot is closed.
        let slot = Arc::new(OutcomeSlot::default());
        let mut framed = Vec::new();
        frame(
            &mut framed,
            9,
            "t",
            "\"gw\"",
            GENESIS_PREV,
            &Body::with_outcome(&event, Some(slot.clone())),
        );
        let plain: Record = serde_json::from_slice(&framed).unwrap();
        assert_eq!(plain.event, event);
        assert!(slot.offer(result.clone()).is_err());

        // A record dropped unwritten (the writer stopped first) hands the outcome back, so
        // its caller tries a record of its own and reports that it could not be written.
        let slot = Arc::new(OutcomeSlot::default());
        drop(Body::with_outcome(&event, Some(slot.clone())));
        assert!(slot.offer(result.clone()).is_err());

        // An outcome with an error stays a record of its own.
        let slot = OutcomeSlot::default();
        let failed = AccessResultEvent {
            error: Some("upstream reset".into()),
            ..result
        };
        assert_eq!(slot.offer(failed.clone()), Err(failed));
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9./:_-]{0,24}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}\u{7f}あ-ん a-z]{0,12}",
        ]
    }

    prop_compose! {
        fn access_event()(
            (request_id, zone, listener, route, method, host, path, query, client_ip) in (
                text(), text(), text(), proptest::option::of(text()), text(), text(), text(),
                proptest::option::of(text()), text(),
            ),
            (with_user, with_device, allow, rule, reasons, policy_version) in (
                any::<bool>(), any::<bool>(), any::<bool>(), proptest::option::of(text()),
                0usize..3, text(),
            ),
            (upstream, upstream_status, status, bytes_in, bytes_out, duration_us) in (
                proptest::option::of(text()), proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u16>()), proptest::option::of(any::<u64>()),
                proptest::option::of(any::<u64>()), proptest::option::of(any::<u64>()),
            ),
        ) -> AccessEvent {
            AccessEvent {
                request_id, zone, listener, route, method: method.into(), host, path, query,
                client_ip,
                user: with_user.then(|| UserInfo {
                    sub: "u-\"1\"\n".into(),
                    email: Some("山田@city.example.lg.jp".into()),
                    groups: vec!["財務課".into()],
                    ..Default::default()
                }.into()),
                device: with_device.then(|| DeviceInfo {
                    id: "PC-0042".into(),
                    fingerprint: Some("ab".repeat(32)),
                    posture: vec![PostureFact {
                        name: "managed".into(),
                        value: "true".into(),
                        source: None,
                        age_secs: Some(42),
                    }],
                }.into()),
                decision: if allow { Decision::Allow } else { Decision::Deny },
                rule,
                reasons: (0..reasons).map(|i| Reason {
                    code: format!("policy.r{i}").into(),
                    ja: Some("許可\t".into()),
                    en: None,
                }).collect::<Vec<_>>().into(),
                policy_version, upstream, upstream_status, status, bytes_in, bytes_out,
                duration_us,
            }
        }
    }

    proptest! {
        /// The access record is written by hand (`AccessEvent::write_json`) and its outcome
        /// folded in by hand (`frame`); readers and `verify` read what serde writes. For any
        /// record, with any text in any field, the bytes must be the same.
        #[test]
        fn an_access_record_written_by_hand_is_what_serde_writes(
            access in access_event(),
            outcome in proptest::option::of((
                proptest::option::of(text()), proptest::option::of(any::<u16>()), any::<u16>(),
                any::<u64>(), any::<u64>(), any::<u64>(),
            )),
            seq in any::<u64>(),
        ) {
            let event = Event::Access(Box::new(access.clone()));
            prop_assert_eq!(
                String::from_utf8(Body::of(&event).json.clone()).unwrap(),
                serde_json::to_string(&event).unwrap()
            );
            let slot = Arc::new(OutcomeSlot::default());
            let body = Body::with_outcome(&event, Some(slot.clone()));
            let mut want = access;
            if let Some((upstream, upstream_status, status, bytes_in, bytes_out, duration_us)) = outcome
                && can_fold(&event)
            {
                let result = AccessResultEvent {
                    request_id: want.request_id.clone(),
                    upstream: upstream.clone(),
                    upstream_status,
                    status,
                    bytes_in,
                    bytes_out,
                    duration_us,
                    error: None,
                };
                prop_assert!(slot.offer(result).is_ok());
                want.upstream = upstream;
                want.upstream_status = upstream_status;
                want.status = Some(status);
                want.bytes_in = Some(bytes_in);
                want.bytes_out = Some(bytes_out);
                want.duration_us = Some(duration_us);
            }
            let mut framed = Vec::new();
            frame(&mut framed, seq, "2026-11-23T09:15:02.123+09:00", "\"gw \\\"1\\\"\"", GENESIS_PREV, &body);
            let record = Record {
                v: SCHEMA_VERSION,
                seq,
                time: "2026-11-23T09:15:02.123+09:00".into(),
                instance: "gw \"1\"".into(),
                prev: GENESIS_PREV.into(),
                event: Event::Access(Box::new(want)),
            };
            prop_assert_eq!(
                String::from_utf8(framed).unwrap(),
                serde_json::to_string(&record).unwrap()
            );
        }
    }

    #[test]
    fn set_line_hash_is_line_hash() {
        let mut prev = GENESIS_PREV.to_string();
        set_line_hash(&mut prev, b"{\"v\":1}");
        assert_eq!(prev, line_hash(b"{\"v\":1}"));
        assert_eq!(prev.len(), 64);
    }
}
