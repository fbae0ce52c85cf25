//! Prometheus metrics.
//!
//! Label values come only from configuration names (route, zone, listener) and closed
//! sets (status class, decision, error kind, rejection reason) — never from users, devices,
//! hosts or paths, so the number of series is bounded by the configuration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub zone: String,
    pub status_class: &'static str,
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub zone: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub route: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub listener: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InfoLabels {
    pub config_version: String,
    pub policy_version: String,
    pub version: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~65 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// All gateway metrics. Lives across reloads.
pub struct Metrics {
    /// Tells one registry's [`RouteSeries`] handles from another's (tests build many).
    id: u64,
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub open_connections: Family<ListenerLabels, Gauge>,
    pub rejected: Family<RejectLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    pub info: Family<InfoLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sekisho");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests that reached routing, by route, zone, status class and decision",
            requests.clone(),
        );
        let request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, seconds",
            request_duration.clone(),
        );
        let upstream_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer with a response head, seconds",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind (connect, connect_timeout, timeout, egress_denied, tls, protocol)",
            upstream_errors.clone(),
        );
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Client connections currently open, by listener",
            open_connections.clone(),
        );
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "rejected_requests",
            "Requests refused before routing (malformed, ambiguous, misdirected), by reason",
            rejected.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "build_info",
            "Build and configuration version (value is always 1)",
            info.clone(),
        );
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            open_connections,
            rejected,
            reloads,
            info,
        }
    }

    /// Records the configuration and policy versions now serving.
    pub fn set_config_version(&self, version: &str, policy_version: &str) {
        self.info.clear();
        self.info
            .get_or_create(&InfoLabels {
                config_version: version.to_owned(),
                policy_version: policy_version.to_owned(),
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
    }

    /// Gives access to the registry, for other subsystems that register their own metrics
    /// before serving starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One route's series in [`Metrics`], resolved on the route's first request and then used
/// directly.
///
/// Why: `Family::get_or_create` hashes the whole label set (SipHash over the route and zone
/// names) and takes the family's lock, and the labels were built by cloning both names:
/// three times per request, ≈ 2,000 instructions and six allocations (callgrind,
/// 2026-12-05). The handles are the same series the family holds (a clone of a counter or
/// histogram shares its value), so `/metrics` shows exactly what it did; series still
/// appear only once something is counted in them.
#[derive(Debug, Default)]
pub struct RouteSeries(OnceLock<RouteHandles>);

#[derive(Debug)]
struct RouteHandles {
    /// The [`Metrics`] these belong to; another registry takes the slow path.
    metrics: u64,
    /// By decision (allow, deny), then status class (1xx … 5xx).
    requests: [[OnceLock<Counter>; 5]; 2],
    request_duration: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
}

impl Metrics {
    fn handles<'a>(&self, series: &'a RouteSeries) -> Option<&'a RouteHandles> {
        let h = series.0.get_or_init(|| RouteHandles {
            metrics: self.id,
            requests: Default::default(),
            request_duration: OnceLock::new(),
            upstream_duration: OnceLock::new(),
        });
        (h.metrics == self.id).then_some(h)
    }

    /// Counts a request that reached routing and observes its duration (seconds), under
    /// `route` and `zone` — the names `series` was made for.
    pub fn count_request(
        &self,
        series: Option<&RouteSeries>,
        route: &str,
        zone: &str,
        status: http::StatusCode,
        allowed: bool,
        secs: f64,
    ) {
        let class = class_index(status);
        let decision = if allowed { "allow" } else { "deny" };
        let requests = || RequestLabels {
            route: route.to_owned(),
            zone: zone.to_owned(),
            status_class: STATUS_CLASSES[class],
            decision,
        };
        match series.and_then(|s| self.handles(s)) {
            Some(h) => {
                h.requests[usize::from(!allowed)][class]
                    .get_or_init(|| self.requests.get_or_create_owned(&requests()))
                    .inc();
                h.request_duration
                    .get_or_init(|| {
                        self.request_duration
                            .get_or_create_owned(&route_labels(route, zone))
                    })
                    .observe(secs);
            }
            None => {
                self.requests.get_or_create(&requests()).inc();
                self.request_duration
                    .get_or_create(&route_labels(route, zone))
                    .observe(secs);
            }
        }
    }

    /// Observes how long the upstream took to answer (seconds).
    pub fn observe_upstream(&self, series: &RouteSeries, route: &str, zone: &str, secs: f64) {
        match self.handles(series) {
            Some(h) => h
                .upstream_duration
                .get_or_init(|| {
                    self.upstream_duration
                        .get_or_create_owned(&route_labels(route, zone))
                })
                .observe(secs),
            None => self
                .upstream_duration
                .get_or_create(&route_labels(route, zone))
                .observe(secs),
        }
    }
}

fn route_labels(route: &str, zone: &str) -> RouteLabels {
    RouteLabels {
        route: route.to_owned(),
        zone: zone.to_owned(),
    }
}

/// The `status_class` label's values.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`]: anything from 500 up counts as `5xx`.
fn class_index(status: http::StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(series))
            .map(|l| l[series.len()..].trim())
    }

    /// A route's resolved handles count into the same series `/metrics` shows, one per
    /// decision and status class, a series appearing only once something is counted in it;
    /// the same route under another registry counts in that registry, not the first.
    #[test]
    fn route_series_count_in_their_own_registry() {
        let m = Metrics::new();
        let series = RouteSeries::default();
        for secs in [0.001, 0.002] {
            m.count_request(Some(&series), "portal", "lgwan", StatusCode::OK, true, secs);
        }
        m.observe_upstream(&series, "portal", "lgwan", 0.001);
        let text = m.encode();
        let allow = r#"sekisho_requests_total{route="portal",zone="lgwan",status_class="2xx",decision="allow"}"#;
        let deny = r#"sekisho_requests_total{route="portal",zone="lgwan",status_class="4xx",decision="deny"}"#;
        assert_eq!(line(&text, allow), Some("2"), "{text}");
        assert_eq!(line(&text, deny), None, "{text}");

        m.count_request(
            Some(&series),
            "portal",
            "lgwan",
            StatusCode::FORBIDDEN,
            false,
            0.0,
        );
        m.count_request(None, "none", "lgwan", StatusCode::NOT_FOUND, false, 0.0);
        let text = m.encode();
        assert_eq!(line(&text, deny), Some("1"), "{text}");
        let unrouted = r#"sekisho_requests_total{route="none",zone="lgwan",status_class="4xx",decision="deny"}"#;
        assert_eq!(line(&text, unrouted), Some("1"), "{text}");
        let count = r#"sekisho_request_duration_seconds_count{route="portal",zone="lgwan"}"#;
        assert_eq!(line(&text, count), Some("3"), "{text}");
        let up = r#"sekisho_upstream_duration_seconds_count{route="portal",zone="lgwan"}"#;
        assert_eq!(line(&text, up), Some("1"), "{text}");

        let other = Metrics::new();
        other.count_request(Some(&series), "portal", "lgwan", StatusCode::OK, true, 0.0);
        other.observe_upstream(&series, "portal", "lgwan", 0.0);
        let theirs = other.encode();
        assert_eq!(line(&theirs, allow), Some("1"), "{theirs}");
        assert_eq!(line(&theirs, up), Some("1"), "{theirs}");
        assert_eq!(line(&m.encode(), allow), Some("2"));
    }
}
