//! Plain atomic counters; the gateway exports them to Prometheus (this crate has no registry).

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters of the identity step. All monotonic.
        #[derive(Debug, Default)]
        pub struct IdentityMetrics { $($(#[$doc])* pub $name: AtomicU64,)* }
        impl IdentityMetrics {
            /// `(name, value)` pairs for export.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Logins started (redirects to the IdP).
    logins_started,
    /// Logins completed (session issued).
    logins_completed,
    /// Logins that failed at the callback for any reason but an IdP outage.
    logins_failed,
    /// Calls to the IdP that failed because it was unreachable or answered 5xx.
    idp_unavailable,
    /// Sessions accepted.
    sessions_valid,
    /// Session cookies refused (tampered, forged, expired, idle, revoked).
    sessions_rejected,
    /// Sessions refused because their id was revoked (logout replay).
    sessions_revoked_replay,
    /// Claim refreshes that succeeded.
    refresh_ok,
    /// Claim refreshes refused by the IdP (session ended).
    refresh_rejected,
    /// Claim refreshes skipped or failed because the IdP is down (session kept).
    refresh_deferred,
    /// Logouts.
    logouts,
    /// Bearer tokens accepted.
    bearer_ok,
    /// Bearer tokens refused.
    bearer_rejected,
    /// Bearer tokens accepted from the cache of verified tokens, without a new signature check
    /// (also counted in `bearer_ok`).
    bearer_cache_hits,
    /// JWKS fetches that succeeded.
    jwks_fetch_ok,
    /// JWKS fetches that failed (cached keys keep working).
    jwks_fetch_failed,
    /// JWKS refreshes refused by the rate limit.
    jwks_refresh_limited,
    /// Discovery fetches that succeeded.
    discovery_ok,
    /// Discovery fetches that failed.
    discovery_failed,
}

impl IdentityMetrics {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
