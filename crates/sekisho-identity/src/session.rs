//! Browser sessions in encrypted, authenticated cookies.
//!
//! **Where the session lives.** In the cookie (replicas stay stateless, as DESIGN.md asks), sealed
//! with AES-256-GCM under the key ring and bound to the cookie name. Only the mapped claims are
//! kept (short keys, groups filtered to `relevant_groups` when configured) plus the refresh
//! token. A sealed session longer than `chunk_bytes` is split over `__Host-sekisho`,
//! `__Host-sekisho.1`, …; a session longer than `max_cookie_bytes` (default 6,000) is refused
//! with [`IdentityError::SessionTooLarge`] rather than sent: a browser that carries 8 KiB+ of
//! cookies meets `431 Request Header Fields Too Large` at the next proxy, which is worse than a
//! clear error page naming the fix (`relevant_groups`).
//!
//! **What the server keeps.** Only the revocation list (session ids logged out, each until the
//! session's absolute end), so a cookie replayed after logout is refused. It is in memory per
//! replica: with several replicas, logout revocation reaches the other replicas only through
//! the claim refresh (the IdP refuses the ended grant within `claims_max_age`).
//!
//! **Times.** Every check takes `now`; nothing here reads the clock.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::claims::{AuthMethod, MappedClaims, VerifiedIdentity};
use crate::config::SessionConfig;
use crate::error::IdentityError;
use crate::keys::CookieKeyRing;
use crate::metrics::IdentityMetrics;

const VERSION: u8 = 1;
const MAX_CHUNKS: usize = 9;
const _: () = assert!(MAX_CHUNKS <= 10, "chunk names are read as one digit");

/// The session as sealed in the cookie.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SessionData {
    #[serde(rename = "v")]
    pub version: u8,
    /// Random session id (128 bits), the key of the revocation list.
    #[serde(rename = "i")]
    pub sid: String,
    /// The issuer that authenticated the user: a session from another IdP (after a
    /// configuration change) is refused.
    #[serde(rename = "o")]
    pub issuer: String,
    #[serde(rename = "u")]
    pub claims: MappedClaims,
    /// Login time.
    #[serde(rename = "c")]
    pub created: i64,
    /// Absolute end.
    #[serde(rename = "x")]
    pub expires: i64,
    /// Last request seen (idle timeout).
    #[serde(rename = "l")]
    pub seen: i64,
    /// When the claims were last fetched from the IdP.
    #[serde(rename = "r")]
    pub claims_at: i64,
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// A session that opened, is within its lifetimes and is not revoked.
#[derive(Clone)]
pub struct Session {
    /// Shared with the connection's [`SessionMemo`]; copied only when changed
    /// ([`Session::data_mut`]: a touch or a claim refresh, which re-issue the cookie).
    pub(crate) data: Arc<SessionData>,
    /// The identity `data` proves, when already made for the memo; dropped by any change.
    identity: Option<Arc<VerifiedIdentity>>,
}

/// The session cookie one connection presented last, and what it opened to.
///
/// A browser sends the same sealed cookie with every request on a connection; opening it
/// (AES-GCM, then JSON) was the largest part of a session request's own work (≈ 2 µs, ≈ 5 %
/// of the full-check route). The memo holds only what this connection itself sent: it is
/// used when the next request carries exactly the same sealed bytes and the key ring is the
/// one that opened them, and every check that depends on time or on the revocation list
/// still runs on each request.
#[derive(Default)]
pub struct SessionMemo(std::sync::Mutex<Option<Opened>>);

struct Opened {
    sealed: String,
    /// The manager and key ring that opened `sealed`.
    opener: (u64, u64),
    /// What `sealed` opened to and the identity it proves, shared with every request that
    /// sends it again: a hit copies nothing (copying the claims, then the identity made from
    /// them, was ≈ 20 allocations per request).
    data: Arc<SessionData>,
    identity: Arc<VerifiedIdentity>,
}

impl std::fmt::Debug for SessionMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionMemo(..)")
    }
}

/// Equal slices of equal length, in time independent of where they differ. `subtle`'s
/// `ct_eq` puts a barrier on every byte (≈ 1 µs for a 1.3 KB cookie, 3 % of a request); this
/// folds the differences into one accumulator the compiler can vectorise, with one barrier.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    debug_assert_eq!(a.len(), b.len());
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl SessionMemo {
    fn get(&self, sealed: &str, opener: (u64, u64)) -> Option<Session> {
        let memo = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // In constant time: behind a trusted front proxy one connection may carry several
        // users' requests, so the memo may hold another user's cookie.
        memo.as_ref()
            .filter(|o| {
                o.opener == opener
                    && o.sealed.len() == sealed.len()
                    && same_bytes(o.sealed.as_bytes(), sealed.as_bytes())
            })
            .map(|o| Session {
                data: o.data.clone(),
                identity: Some(o.identity.clone()),
            })
    }

    fn clear(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    fn put(
        &self,
        sealed: String,
        opener: (u64, u64),
        data: Arc<SessionData>,
        identity: Arc<VerifiedIdentity>,
    ) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Opened {
            sealed,
            opener,
            data,
            identity,
        });
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.data.claims.sub)
            .field("expires", &self.data.expires)
            .field(
                "refresh_token",
                &self.data.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(data: SessionData) -> Session {
        Session {
            data: Arc::new(data),
            identity: None,
        }
    }

    /// The data, to change: the identity made from it before no longer holds.
    pub(crate) fn data_mut(&mut self) -> &mut SessionData {
        self.identity = None;
        Arc::make_mut(&mut self.data)
    }

    /// Unix second of the absolute end.
    pub fn expires_at(&self) -> i64 {
        self.data.expires
    }
    pub fn has_refresh_token(&self) -> bool {
        self.data.refresh_token.is_some()
    }
}

/// Why a present session cookie was refused. The gateway clears the cookies and treats the
/// request as anonymous (login for browsers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRejection {
    /// Does not open under any key, or is not a session (tampered, forged, old key removed).
    Invalid,
    /// Past its absolute lifetime.
    Expired,
    /// Past its idle timeout.
    Idle,
    /// Logged out (cookie replay).
    Revoked,
    /// Claims too old and no way to refresh them (no refresh token).
    ClaimsStale,
    /// The IdP refused the refresh token (user disabled, grant revoked).
    RefreshRejected,
}

impl SessionRejection {
    pub fn as_str(&self) -> &'static str {
        match self {
            SessionRejection::Invalid => "invalid",
            SessionRejection::Expired => "expired",
            SessionRejection::Idle => "idle",
            SessionRejection::Revoked => "revoked",
            SessionRejection::ClaimsStale => "claims_stale",
            SessionRejection::RefreshRejected => "refresh_rejected",
        }
    }
}

/// Result of reading the session cookies.
#[derive(Debug)]
pub enum Decoded {
    /// No session cookie.
    Absent,
    Rejected(SessionRejection),
    Valid(Session),
}

/// Seals, opens, checks and revokes sessions.
pub struct SessionManager {
    /// Different for every manager built (a reload with another cookie name or issuer builds
    /// a new one): a [`SessionMemo`] filled under one manager is not used by another.
    id: u64,
    cfg: SessionConfig,
    keys: ArcSwap<CookieKeyRing>,
    revoked: moka::sync::Cache<String, i64>,
    issuer: String,
    metrics: Arc<IdentityMetrics>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// The `name=value` pairs of the `Cookie` headers that one reader looks at, borrowed from the
/// headers (this runs on every request that may carry a session).
pub(crate) struct CookiePairs<'h>(Vec<(&'h str, &'h str)>);

impl<'h> CookiePairs<'h> {
    pub(crate) fn get(&self, name: &str) -> Option<&'h str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// Every `name=value` pair of every `Cookie` header, trimmed (value unquoted), empty and
/// nameless ones skipped.
pub(crate) fn all_cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(crate::upstream::cookie_text)
        .flat_map(crate::upstream::cookie_parts)
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.trim(), value.trim().trim_matches('"')))
}

/// The pairs whose name `wanted` accepts. `None` when such a name repeats (a `__Host-` cookie
/// cannot legitimately appear twice, so a duplicate is an injection attempt). Readers accept
/// only the few exact names they use, so other cookies in Sekisho's namespace — however many
/// a page or an upstream set — neither cost a look-up nor make the request fail.
pub(crate) fn cookie_pairs<'h>(
    headers: &'h HeaderMap,
    wanted: impl Fn(&str) -> bool,
) -> Option<CookiePairs<'h>> {
    let mut out = CookiePairs(Vec::new());
    for (name, value) in all_cookie_pairs(headers) {
        if !wanted(name) {
            continue;
        }
        if out.get(name).is_some() {
            return None;
        }
        out.0.push((name, value));
    }
    Some(out)
}

pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64) -> HeaderValue {
    let s = format!(
        "{name}={value}; Path=/; Max-Age={}; Secure; HttpOnly; SameSite=Lax",
        max_age.max(0)
    );
    HeaderValue::from_str(&s).expect("cookie names and sealed values are visible ASCII")
}

impl SessionManager {
    pub fn new(
        cfg: SessionConfig,
        keys: CookieKeyRing,
        issuer: impl Into<String>,
        metrics: Arc<IdentityMetrics>,
    ) -> Result<Self, IdentityError> {
        cfg.validate()
            .map_err(|e| IdentityError::Config(e.join("; ")))?;
        let revoked = moka::sync::Cache::builder()
            .max_capacity(cfg.revocation_capacity)
            .time_to_live(cfg.absolute_lifetime)
            .build();
        static MANAGERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Ok(SessionManager {
            id: MANAGERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            cfg,
            keys: ArcSwap::from_pointee(keys),
            revoked,
            issuer: issuer.into(),
            metrics,
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Replaces the key ring (rotation on reload).
    pub fn set_keys(&self, keys: CookieKeyRing) {
        self.keys.store(Arc::new(keys));
    }

    pub(crate) fn keys(&self) -> Arc<CookieKeyRing> {
        self.keys.load_full()
    }

    /// `cookie_name`, or `cookie_name.N` for a chunk this configuration can use.
    fn is_chunk_name(&self, name: &str) -> bool {
        match name.strip_prefix(self.cfg.cookie_name.as_str()) {
            Some("") => true,
            // Chunk numbers are one digit (`MAX_CHUNKS` ≤ 10), written without a leading zero.
            Some(rest) => match rest.as_bytes() {
                [b'.', d @ b'1'..=b'9'] => usize::from(d - b'0') < self.max_chunks(),
                _ => false,
            },
            None => false,
        }
    }

    fn chunk_name(&self, i: usize) -> String {
        if i == 0 {
            self.cfg.cookie_name.clone()
        } else {
            format!("{}.{i}", self.cfg.cookie_name)
        }
    }

    fn max_chunks(&self) -> usize {
        self.cfg
            .max_cookie_bytes
            .div_ceil(self.cfg.chunk_bytes)
            .clamp(1, MAX_CHUNKS)
    }

    /// Opens the session cookies without checking lifetimes or revocation.
    fn open(
        &self,
        headers: &HeaderMap,
        memo: Option<&SessionMemo>,
    ) -> Result<Option<Session>, SessionRejection> {
        let Some(pairs) = cookie_pairs(headers, |n| self.is_chunk_name(n)) else {
            return Err(SessionRejection::Invalid);
        };
        let Some(first) = pairs.get(&self.cfg.cookie_name) else {
            return Ok(None);
        };
        let (count, part0) = first.split_once('~').ok_or(SessionRejection::Invalid)?;
        let count: usize = count.parse().map_err(|_| SessionRejection::Invalid)?;
        if count == 0 || count > self.max_chunks() {
            return Err(SessionRejection::Invalid);
        }
        // One chunk (the usual case) is read where it is; only chunks are joined.
        let mut sealed = std::borrow::Cow::Borrowed(part0);
        for i in 1..count {
            sealed.to_mut().push_str(
                pairs
                    .get(&self.chunk_name(i))
                    .ok_or(SessionRejection::Invalid)?,
            );
        }
        let ring = self.keys.load();
        let opener = (self.id, ring.generation());
        if let Some(session) = memo.and_then(|m| m.get(&sealed, opener)) {
            // Checked below when it was put.
            return Ok(Some(session));
        }
        let json = ring
            .open(&self.cfg.cookie_name, &sealed)
            .ok_or(SessionRejection::Invalid)?;
        let data: SessionData =
            serde_json::from_str(&json).map_err(|_| SessionRejection::Invalid)?;
        if data.version != VERSION || data.issuer != self.issuer {
            return Err(SessionRejection::Invalid);
        }
        let mut session = Session::new(data);
        if let Some(m) = memo {
            let identity = Arc::new(self.identity_of(&session.data));
            m.put(
                sealed.into_owned(),
                opener,
                session.data.clone(),
                identity.clone(),
            );
            session.identity = Some(identity);
        }
        Ok(Some(session))
    }

    /// Reads and checks the session cookies: opens under the key ring, then absolute lifetime,
    /// idle timeout and revocation against `now`.
    pub fn decode(&self, headers: &HeaderMap, now: Timestamp) -> Decoded {
        self.decode_in(headers, now, None)
    }

    /// [`SessionManager::decode`] for a request on a connection that keeps a [`SessionMemo`].
    pub fn decode_in(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
        memo: Option<&SessionMemo>,
    ) -> Decoded {
        let session = match self.open(headers, memo) {
            Ok(None) => return Decoded::Absent,
            Ok(Some(s)) => s,
            Err(r) => {
                IdentityMetrics::inc(&self.metrics.sessions_rejected);
                return Decoded::Rejected(r);
            }
        };
        let now_s = now.as_second();
        let data = &session.data;
        let rejection = if now_s >= data.expires {
            Some(SessionRejection::Expired)
        } else if now_s - data.seen > self.cfg.idle_timeout.as_secs() as i64 {
            Some(SessionRejection::Idle)
        } else if self.revoked.contains_key(&data.sid) {
            IdentityMetrics::inc(&self.metrics.sessions_revoked_replay);
            Some(SessionRejection::Revoked)
        } else {
            None
        };
        match rejection {
            Some(r) => {
                // An ended session's data (its refresh token) is not kept for nothing.
                if let Some(m) = memo {
                    m.clear();
                }
                IdentityMetrics::inc(&self.metrics.sessions_rejected);
                Decoded::Rejected(r)
            }
            None => Decoded::Valid(session),
        }
    }

    /// A new session for freshly verified claims.
    pub(crate) fn create(
        &self,
        claims: MappedClaims,
        refresh_token: Option<String>,
        now: Timestamp,
    ) -> Session {
        let now_s = now.as_second();
        Session::new(SessionData {
            version: VERSION,
            sid: uuid::Uuid::new_v4().simple().to_string(),
            issuer: self.issuer.clone(),
            claims,
            created: now_s,
            expires: now_s + self.cfg.absolute_lifetime.as_secs() as i64,
            seen: now_s,
            claims_at: now_s,
            refresh_token,
        })
    }

    /// `Set-Cookie` values that store `session`: its chunks, then removals of chunks it no
    /// longer uses.
    pub fn encode(
        &self,
        session: &Session,
        now: Timestamp,
    ) -> Result<Vec<HeaderValue>, IdentityError> {
        let json = serde_json::to_string(&*session.data)
            .map_err(|e| IdentityError::Config(e.to_string()))?;
        let sealed = self.keys.load().seal(&self.cfg.cookie_name, &json);
        let chunk = self.cfg.chunk_bytes - 4;
        let parts: Vec<&str> = sealed
            .as_bytes()
            .chunks(chunk)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        let size = sealed.len() + parts.len() * (self.cfg.cookie_name.len() + 4);
        if size > self.cfg.max_cookie_bytes || parts.len() > self.max_chunks() {
            return Err(IdentityError::SessionTooLarge {
                size,
                limit: self.cfg.max_cookie_bytes,
            });
        }
        let max_age = session.data.expires - now.as_second();
        let mut out = Vec::with_capacity(self.max_chunks());
        for (i, p) in parts.iter().enumerate() {
            let value = if i == 0 {
                format!("{}~{p}", parts.len())
            } else {
                (*p).to_owned()
            };
            out.push(set_cookie(&self.chunk_name(i), &value, max_age));
        }
        for i in parts.len()..self.max_chunks() {
            out.push(set_cookie(&self.chunk_name(i), "", 0));
        }
        Ok(out)
    }

    /// `Set-Cookie` values that remove every session chunk.
    pub fn clear_cookies(&self) -> Vec<HeaderValue> {
        (0..self.max_chunks())
            .map(|i| set_cookie(&self.chunk_name(i), "", 0))
            .collect()
    }

    /// Puts the session id on the revocation list until the session's absolute end.
    pub fn revoke(&self, session: &Session) {
        self.revoked
            .insert(session.data.sid.clone(), session.data.expires);
    }

    /// Opens the cookies (ignoring lifetimes) and revokes the session; for logout, so even an
    /// idle session's id is refused afterwards. True if there was a session.
    pub fn revoke_from_headers(&self, headers: &HeaderMap) -> bool {
        match self.open(headers, None) {
            Ok(Some(session)) => {
                self.revoke(&session);
                true
            }
            _ => false,
        }
    }

    /// Claims are older than `claims_max_age`.
    pub fn needs_refresh(&self, session: &Session, now: Timestamp) -> bool {
        now.as_second() - session.data.claims_at >= self.cfg.claims_max_age.as_secs() as i64
    }

    /// The cookie should be re-issued to move the idle deadline.
    pub fn needs_touch(&self, session: &Session, now: Timestamp) -> bool {
        now.as_second() - session.data.seen >= self.cfg.touch_interval.as_secs() as i64
    }

    pub(crate) fn touch(&self, session: &mut Session, now: Timestamp) {
        session.data_mut().seen = now.as_second();
    }

    /// The identity a valid session proves: the one made when its cookie was first opened on
    /// this connection, unless the session changed since.
    pub fn identity(&self, session: Session) -> Arc<VerifiedIdentity> {
        match session.identity {
            Some(identity) => identity,
            // Not shared with a memo (a login, a changed session): the claims move.
            None => {
                let d = Arc::unwrap_or_clone(session.data);
                Arc::new(self.identity_from(d.claims, d.seen, d.expires, d.claims_at))
            }
        }
    }

    /// The identity `d` proves, for a memo that keeps `d` too (the claims are copied).
    fn identity_of(&self, d: &SessionData) -> VerifiedIdentity {
        self.identity_from(d.claims.clone(), d.seen, d.expires, d.claims_at)
    }

    fn identity_from(
        &self,
        claims: MappedClaims,
        seen: i64,
        expires: i64,
        claims_at: i64,
    ) -> VerifiedIdentity {
        let idle_end = seen + self.cfg.idle_timeout.as_secs() as i64;
        claims.into_identity(
            &self.issuer,
            AuthMethod::Session,
            Timestamp::from_second(expires.min(idle_end)).ok(),
            Timestamp::from_second(claims_at).ok(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClaimsMapping;
    use crate::keys::CookieKey;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn claims(groups: usize) -> MappedClaims {
        let raw = serde_json::json!({
            "sub": "alice", "email": "alice@city.example.jp", "amr": ["pwd", "otp"],
            "groups": (0..groups).map(|i| format!("group-{i:04}")).collect::<Vec<_>>(),
        });
        MappedClaims::from_raw(raw.as_object().unwrap(), &ClaimsMapping::default(), false).unwrap()
    }

    fn manager(keys: Vec<CookieKey>) -> SessionManager {
        SessionManager::new(
            SessionConfig::default(),
            CookieKeyRing::new(keys).unwrap(),
            "https://idp",
            Arc::new(IdentityMetrics::default()),
        )
        .unwrap()
    }

    /// Turns Set-Cookie values into the Cookie header a browser would send.
    pub(crate) fn browser(set: &[HeaderValue]) -> HeaderMap {
        let pairs: Vec<String> = set
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
            .filter(|p| !p.split_once('=').is_some_and(|(_, v)| v.is_empty()))
            .collect();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(&pairs.join("; ")).unwrap());
        h
    }

    #[test]
    fn roundtrip_and_attributes() {
        let m = manager(vec![CookieKey::generate("k")]);
        let s = m.create(claims(3), Some("rt".into()), ts(1000));
        let set = m.encode(&s, ts(1000)).unwrap();
        let first = set[0].to_str().unwrap();
        assert!(first.starts_with("__Host-sekisho=1~"));
        for attr in [
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=36000",
        ] {
            assert!(first.contains(attr), "{first}");
        }
        let Decoded::Valid(back) = m.decode(&browser(&set), ts(1001)) else {
            panic!()
        };
        assert_eq!(back.data.claims.groups.len(), 3);
        let id = m.identity(back.clone());
        assert_eq!(id.sub(), "alice");
        assert!(id.has_mfa());
    }

    #[test]
    fn a_repeated_session_cookie_is_refused_and_other_names_are_ignored() {
        let m = manager(vec![CookieKey::generate("k")]);
        let s = m.create(claims(1), None, ts(0));
        let good = browser(&m.encode(&s, ts(0)).unwrap());
        assert!(matches!(m.decode(&good, ts(1)), Decoded::Valid(_)));
        let value = good.get(COOKIE).unwrap().to_str().unwrap().to_owned();
        // The same session twice, in one header or in two: an injection attempt.
        for twice in [
            vec![format!("{value}; {value}")],
            vec![value.clone(), value.clone()],
        ] {
            let mut h = HeaderMap::new();
            for v in twice {
                h.append(COOKIE, HeaderValue::from_str(&v).unwrap());
            }
            assert!(matches!(
                m.decode(&h, ts(1)),
                Decoded::Rejected(SessionRejection::Invalid)
            ));
        }
        // Any number of other cookies, in Sekisho's namespace or not, neither refuse the
        // session nor cost more than a look at their names (a page or an upstream may set
        // them; they must not lock the user out).
        let flood: Vec<String> = (0..5000)
            .map(|i| format!("__Host-sekisho-x{i}=1; __Host-sekisho.0{i}=2; a{i}=3"))
            .collect();
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{}; {value}", flood.join("; "))).unwrap(),
        );
        assert!(matches!(m.decode(&h, ts(1)), Decoded::Valid(_)));
        assert!(m.is_chunk_name("__Host-sekisho") && m.is_chunk_name("__Host-sekisho.1"));
        for not in [
            "__Host-sekisho.0",
            "__Host-sekisho.01",
            "__Host-sekisho.9",
            "__Host-sekisho-login-ab",
        ] {
            assert!(!m.is_chunk_name(not), "{not}");
        }
    }

    #[test]
    fn same_bytes_is_equality() {
        assert!(same_bytes(b"", b""));
        assert!(same_bytes(b"abc", b"abc"));
        assert!(!same_bytes(b"xbc", b"abc"));
        assert!(!same_bytes(b"abx", b"abc"));
        assert!(!same_bytes(&[0x80; 1300], &[0x00; 1300]));
    }

    #[test]
    fn a_connection_memo_never_outlives_keys_revocation_or_time() {
        let k = CookieKey::generate("k");
        let m = manager(vec![k.clone()]);
        let s = m.create(claims(2), None, ts(0));
        let h = browser(&m.encode(&s, ts(0)).unwrap());
        let memo = SessionMemo::default();
        assert!(matches!(
            m.decode_in(&h, ts(1), Some(&memo)),
            Decoded::Valid(_)
        ));
        assert!(
            memo.0.lock().unwrap().is_some(),
            "the opened cookie is kept"
        );
        let Decoded::Valid(again) = m.decode_in(&h, ts(2), Some(&memo)) else {
            panic!("the same cookie again")
        };
        assert_eq!(again.data.claims.groups.len(), 2);
        // Lifetimes are checked on every request, memo or not.
        assert!(matches!(
            m.decode_in(&h, ts(3601), Some(&memo)),
            Decoded::Rejected(SessionRejection::Idle)
        ));
        assert!(
            memo.0.lock().unwrap().is_none(),
            "an ended session is not kept"
        );
        // Another cookie on the same connection is opened, not taken from the memo.
        let other = browser(&m.encode(&m.create(claims(5), None, ts(0)), ts(0)).unwrap());
        let Decoded::Valid(o) = m.decode_in(&other, ts(1), Some(&memo)) else {
            panic!()
        };
        assert_eq!(o.data.claims.groups.len(), 5);
        // Revocation applies to a remembered session.
        m.decode_in(&h, ts(1), Some(&memo));
        m.revoke(&s);
        assert!(matches!(
            m.decode_in(&h, ts(1), Some(&memo)),
            Decoded::Rejected(SessionRejection::Revoked)
        ));
        // A key removed from the ring: the memo filled under the old ring is not used.
        let m = manager(vec![k]);
        assert!(matches!(
            m.decode_in(&h, ts(1), Some(&memo)),
            Decoded::Valid(_)
        ));
        m.set_keys(CookieKeyRing::new(vec![CookieKey::generate("new")]).unwrap());
        assert!(matches!(
            m.decode_in(&h, ts(1), Some(&memo)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
    }

    #[test]
    fn a_memo_hit_shares_the_identity_and_a_change_makes_a_new_one() {
        let m = manager(vec![CookieKey::generate("k")]);
        let h = browser(&m.encode(&m.create(claims(2), None, ts(0)), ts(0)).unwrap());
        let memo = SessionMemo::default();
        let open = |at| match m.decode_in(&h, ts(at), Some(&memo)) {
            Decoded::Valid(s) => s,
            other => panic!("{other:?}"),
        };
        let first = m.identity(open(1));
        let second = m.identity(open(2));
        assert!(
            Arc::ptr_eq(&first, &second),
            "the same cookie on the same connection proves the same identity, made once"
        );
        assert_eq!(second.groups().len(), 2);
        // A touched session moves its idle deadline: its identity is made again, not reused.
        let mut touched = open(3);
        m.touch(&mut touched, ts(600));
        let third = m.identity(touched);
        assert!(!Arc::ptr_eq(&first, &third));
        assert_eq!(
            third.expires().map(|t| t.as_second()),
            first.expires().map(|t| t.as_second() + 600),
            "the new identity ends an idle timeout after the touch"
        );
        assert_eq!(third.sub(), first.sub());
        // The memo still holds what the cookie the browser sent opened to.
        assert!(Arc::ptr_eq(&m.identity(open(4)), &first));
    }

    #[test]
    fn lifetimes_are_enforced_with_injected_time() {
        let m = manager(vec![CookieKey::generate("k")]);
        let s = m.create(claims(1), None, ts(0));
        let h = browser(&m.encode(&s, ts(0)).unwrap());
        assert!(matches!(m.decode(&h, ts(3600)), Decoded::Valid(_)));
        assert!(matches!(
            m.decode(&h, ts(3601)),
            Decoded::Rejected(SessionRejection::Idle)
        ));
        let mut s2 = s.clone();
        s2.data_mut().seen = 36_000 - 10;
        let h2 = browser(&m.encode(&s2, ts(36_000 - 10)).unwrap());
        assert!(matches!(
            m.decode(&h2, ts(36_000)),
            Decoded::Rejected(SessionRejection::Expired)
        ));
        assert!(m.needs_refresh(&s, ts(600)));
        assert!(!m.needs_refresh(&s, ts(599)));
    }

    #[test]
    fn tampered_forged_and_rotated_cookies() {
        let old = CookieKey::generate("old");
        let m_old = manager(vec![old.clone()]);
        let s = m_old.create(claims(1), None, ts(0));
        let set = m_old.encode(&s, ts(0)).unwrap();
        // Rotation: the new ring still opens cookies sealed by the old key.
        let m_new = manager(vec![CookieKey::generate("new"), old]);
        assert!(matches!(
            m_new.decode(&browser(&set), ts(1)),
            Decoded::Valid(_)
        ));
        // After removal of the old key it no longer opens.
        m_new.set_keys(CookieKeyRing::new(vec![CookieKey::generate("newer")]).unwrap());
        assert!(matches!(
            m_new.decode(&browser(&set), ts(1)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
        // Flip one character of the sealed value.
        let v = set[0]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut bytes = v.into_bytes();
        let i = bytes.len() - 5;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_bytes(&bytes).unwrap());
        assert!(matches!(
            m_old.decode(&h, ts(1)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
        // A forged plaintext session.
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("__Host-sekisho=1~eyJ2IjoxLCJ1Ijp7InMiOiJyb290In19"),
        );
        assert!(matches!(
            m_old.decode(&h, ts(1)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
        // Duplicate cookie names are refused.
        let mut h = browser(&set);
        h.append(COOKIE, HeaderValue::from_static("__Host-sekisho=1~x"));
        assert!(matches!(
            m_old.decode(&h, ts(1)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
    }

    #[test]
    fn big_sessions_are_chunked_and_huge_ones_refused() {
        let m = manager(vec![CookieKey::generate("k")]);
        let s = m.create(claims(200), Some("r".repeat(200)), ts(0));
        let set = m.encode(&s, ts(0)).unwrap();
        assert!(set[1].to_str().unwrap().starts_with("__Host-sekisho.1="));
        assert!(!set[1].to_str().unwrap().starts_with("__Host-sekisho.1=;"));
        let total: usize = set.iter().map(|v| v.len()).sum();
        assert!(total < 6_400, "{total}");
        let Decoded::Valid(back) = m.decode(&browser(&set), ts(1)) else {
            panic!()
        };
        assert_eq!(back.data.claims.groups.len(), 200);
        // A chunk missing → invalid, not a panic.
        let only_first = browser(&set[..1]);
        assert!(matches!(
            m.decode(&only_first, ts(1)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
        let huge = m.create(claims(400), None, ts(0));
        assert!(matches!(
            m.encode(&huge, ts(0)),
            Err(IdentityError::SessionTooLarge { .. })
        ));
        // A small session clears the chunk a bigger one left behind.
        let small = m.encode(&m.create(claims(1), None, ts(0)), ts(0)).unwrap();
        assert!(
            small[1]
                .to_str()
                .unwrap()
                .starts_with("__Host-sekisho.1=; Path=/; Max-Age=0")
        );
    }

    #[test]
    fn sessions_of_another_issuer_are_refused() {
        let key = CookieKey::generate("k");
        let m = manager(vec![key.clone()]);
        let h = browser(&m.encode(&m.create(claims(1), None, ts(0)), ts(0)).unwrap());
        let other = SessionManager::new(
            SessionConfig::default(),
            CookieKeyRing::new(vec![key]).unwrap(),
            "https://other-idp",
            Arc::new(IdentityMetrics::default()),
        )
        .unwrap();
        assert!(matches!(
            other.decode(&h, ts(1)),
            Decoded::Rejected(SessionRejection::Invalid)
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_cookie_headers_never_open(value in "[ -~]{0,300}", chunks in 0usize..4) {
            let m = manager(vec![CookieKey::generate("k")]);
            let mut h = HeaderMap::new();
            let mut s = format!("__Host-sekisho={chunks}~{value}");
            for i in 1..chunks {
                s.push_str(&format!("; __Host-sekisho.{i}={value}"));
            }
            if let Ok(v) = HeaderValue::from_str(&s) {
                h.insert(COOKIE, v);
                proptest::prop_assert!(!matches!(m.decode(&h, ts(1)), Decoded::Valid(_)));
            }
        }
    }

    #[test]
    fn revoked_sessions_are_refused() {
        let m = manager(vec![CookieKey::generate("k")]);
        let s = m.create(claims(1), None, ts(0));
        let h = browser(&m.encode(&s, ts(0)).unwrap());
        assert!(m.revoke_from_headers(&h));
        assert!(matches!(
            m.decode(&h, ts(1)),
            Decoded::Rejected(SessionRejection::Revoked)
        ));
    }
}
