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
        Metrics {
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

/// `2xx`, `4xx` … for the `status_class` label.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
