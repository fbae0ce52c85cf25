//! Gateway configuration: YAML → a typed, validated [`Config`].
//!
//! The loader reads files (the only I/O here), parses them with `sekisho-yaml`, and
//! converts the tree into typed values while collecting **every** problem with its file,
//! line, column, key path and a hint. Only a configuration without errors is returned, so
//! whatever `serve` runs has passed exactly the checks that `sekisho check` reports.
//!
//! Cross-cutting rules live here too, because they are configuration errors an IT officer
//! must fix before anything starts: zones that overlap, routes that cross zones, upstreams
//! inside an isolated zone, routes that are open by omission.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use sekisho_policy::{PolicyId, PolicySet, Target};
use sekisho_posture::DevicesConfig;
use sekisho_yaml::{Decoder, Diagnostic, Kind, Node, Path, Severity};

use crate::host::HostPattern;

/// A validated gateway configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it was loaded from (relative paths inside resolve against its directory).
    pub source: PathBuf,
    /// SHA-256 (short hex) of the configuration files' bytes: shown in metrics and logs.
    pub version: String,
    pub instance: String,
    pub logging: Logging,
    pub admin: Admin,
    pub limits: Limits,
    pub trusted_proxies: Vec<IpNet>,
    pub zones: BTreeMap<String, Arc<Zone>>,
    pub listeners: Vec<Listener>,
    pub routes: Vec<Arc<Route>>,
    /// The compiled policy set (absent when no `policies:` are configured, in which case
    /// only `access: public` routes exist).
    pub policies: Option<Arc<PolicySet>>,
    /// Policy files read (watched for reload).
    pub policy_files: Vec<PathBuf>,
    /// Device trust, inventory and posture assertions (absent: no device certificates).
    pub devices: Option<DevicesConfig>,
    /// The audit trail (absent: a warning; nothing is recorded).
    pub audit: Option<sekisho_audit::AuditConfig>,
    /// Canonical form of the `audit:` section (changing it needs a restart).
    pub audit_fingerprint: String,
    /// Sign-in, sessions and bearer tokens (absent: nobody is ever signed in).
    pub identity: Option<crate::identity_config::IdentitySettings>,
    /// Warnings that did not stop the load (shown by `check`, logged by `serve`).
    pub warnings: Vec<Diagnostic>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Logging {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `sekisho_gateway=debug,info`.
    pub level: String,
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// Limits that protect the gateway from slow or oversized clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request header section (request line + headers) in bytes; larger → 431.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// A client must send its whole header section within this time (slowloris).
    pub header_read_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// How long SIGTERM waits for in-flight requests before closing connections.
    pub drain_timeout: Duration,
}

#[derive(Debug)]
pub struct Zone {
    pub name: String,
    pub description: String,
    pub egress_allow: Vec<IpNet>,
    pub egress_deny: Vec<IpNet>,
    pub bind: Option<IpAddr>,
    /// A policy AND-ed with every route policy in the zone (enforced once policies land).
    pub require: Option<String>,
    /// `require` resolved in the policy set.
    pub floor: Option<PolicyId>,
    pub isolated: bool,
    pub response: ZoneResponse,
}

#[derive(Clone, Debug, Default)]
pub struct ZoneResponse {
    /// Set `Cache-Control` on every response from this zone (e.g. `no-store` on LGWAN).
    pub cache_control: Option<String>,
}

impl Zone {
    /// Whether an upstream address may be reached from this zone.
    pub fn egress_permits(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        !self.isolated
            && self.egress_allow.iter().any(|n| n.contains(&ip))
            && !self.egress_deny.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are checked as the IPv4 address they are.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[derive(Debug)]
pub struct Listener {
    pub name: String,
    pub zone: String,
    pub listen: SocketAddr,
    /// `None` only when the listener is explicitly marked `plaintext: true`.
    pub tls: Option<ListenerTls>,
}

#[derive(Clone, Debug)]
pub struct ListenerTls {
    pub certificates: Vec<CertPair>,
}

#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone may reach the route (still audited and measured).
    Public,
    /// The named policy decides (with the zone floor).
    Policy(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Proxy,
    ScreenTransfer,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub zone: String,
    pub kind: RouteKind,
    pub listeners: Vec<String>,
    pub hosts: Vec<HostPattern>,
    pub path_prefix: String,
    pub upstreams: Vec<Upstream>,
    pub upstream_tls: Option<UpstreamTls>,
    pub upstream_http2: bool,
    pub access: Access,
    /// For `Access::Policy`: the route policy AND-ed with the zone floor.
    pub target: Option<Target>,
    /// Ask browsers for a device certificate on this route's hosts (see `client_certificate`).
    pub client_certificate: bool,
    pub timeouts: Timeouts,
    /// Strip the route's path prefix before forwarding (`/app/x` → `/x`).
    pub strip_prefix: bool,
    /// The route's metric series, resolved on first use (not configuration).
    pub series: crate::metrics::RouteSeries,
}

#[derive(Clone, Debug)]
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    pub host: String,
    pub port: u16,
    /// Set when `host` is an IP literal (checked against the zone at load).
    pub ip: Option<IpAddr>,
}

impl Upstream {
    pub fn authority(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority())
    }
}

#[derive(Clone, Debug)]
pub struct UpstreamTls {
    /// PEM file of CA certificates that sign the upstream's certificate.
    pub ca: PathBuf,
    /// Name to verify in the upstream certificate (default: the upstream host).
    pub server_name: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to receiving the response head.
    pub response_header: Duration,
    /// Longest the gateway waits for the next piece of a body, in either direction (the client's upload, the upstream's response).
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            response_header: Duration::from_secs(60),
            idle: Duration::from_secs(300),
        }
    }
}

/// Why loading failed: every diagnostic (errors and warnings) in file order.
#[derive(Debug)]
pub struct LoadError {
    pub diagnostics: Vec<Diagnostic>,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&sekisho_yaml::render_all(&self.diagnostics))
    }
}

impl std::error::Error for LoadError {}

/// Loads and validates a configuration file. The single entry point used by both
/// `sekisho check` and `sekisho serve` (and by reload).
pub fn load(path: &FsPath) -> Result<Config, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        diagnostics: vec![Diagnostic::file_error(
            &file,
            format!("cannot read the configuration file: {e}"),
            Some("check the path given to --config and the file's permissions".into()),
        )],
    })?;
    let base = path.parent().map(FsPath::to_path_buf).unwrap_or_default();
    from_str(&file, &text, &base)
}

/// Parses and validates configuration text. `base` is the directory relative paths
/// (certificates, policy files) are resolved against.
pub fn from_str(file: &str, text: &str, base: &FsPath) -> Result<Config, LoadError> {
    let root = sekisho_yaml::parse(file, text).map_err(|d| LoadError {
        diagnostics: vec![d],
    })?;
    let mut d = Decoder::new(file);
    let cfg = decode_root(&mut d, &root, base);
    let mut diags = d.into_diagnostics();
    let has_errors = diags.iter().any(Diagnostic::is_error);
    match cfg {
        Some(mut cfg) if !has_errors => {
            cfg.source = PathBuf::from(file);
            cfg.version = version_of(text);
            cfg.warnings = diags;
            Ok(cfg)
        }
        _ => {
            if !diags.iter().any(Diagnostic::is_error) {
                // Defensive: a `None` without a recorded error would hide the reason.
                diags.push(Diagnostic::file_error(
                    file,
                    "the configuration is incomplete",
                    None,
                ));
            }
            Err(LoadError { diagnostics: diags })
        }
    }
}

fn version_of(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..6])
}

const ROOT_KEYS: &[&str] = &[
    "instance",
    "policies",
    "devices",
    "identity",
    "audit",
    "logging",
    "admin",
    "limits",
    "trusted_proxies",
    "zones",
    "listeners",
    "routes",
];

fn decode_root(d: &mut Decoder, root: &Node, base: &FsPath) -> Option<Config> {
    let rp = Path::root();
    if matches!(root.kind, Kind::Null) {
        d.error(
            root,
            &rp,
            "the configuration file is empty",
            Some("start from config/sekisho.yaml in the Sekisho repository".into()),
        );
        return None;
    }
    let m = d.map(root, &rp, ROOT_KEYS)?;

    let instance = m
        .get("instance")
        .and_then(|n| d.nonempty_string(n, &rp.key("instance")))
        .unwrap_or_else(|| "sekisho".to_owned());
    let logging = match m.get("logging") {
        Some(n) => decode_logging(d, n, &rp.key("logging")),
        None => Some(Logging {
            format: LogFormat::Text,
            level: "info".into(),
        }),
    };
    let admin = match m.get("admin") {
        Some(n) => decode_admin(d, n, &rp.key("admin")),
        None => Some(Admin {
            listen: SocketAddr::from(([127, 0, 0, 1], 9900)),
        }),
    };
    let limits = decode_limits(d, m.get("limits"), &rp.key("limits"));
    let trusted_proxies = match m.get("trusted_proxies") {
        Some(n) => decode_cidrs(d, n, &rp.key("trusted_proxies")),
        None => Some(Vec::new()),
    };

    // Policies first: zones and routes refer to them by name.
    let (policies, policy_files) = match m.get("policies") {
        Some(n) => decode_policies(d, n, &rp.key("policies"), base),
        None => (None, Vec::new()),
    };
    let devices = m
        .get("devices")
        .and_then(|n| decode_devices(d, n, &rp.key("devices"), base));
    let identity = m
        .get("identity")
        .and_then(|n| crate::identity_config::decode(d, n, &rp.key("identity"), base));
    let audit = match m.get("audit") {
        Some(n) => crate::audit::decode(d, n, &rp.key("audit"), base, &instance),
        None => {
            d.warning(
                root,
                &rp,
                "no `audit` section: access decisions are not recorded",
                Some(
                    "add `audit: { dir: /var/lib/sekisho/audit }` — auditors need the trail".into(),
                ),
            );
            None
        }
    };
    let audit_fingerprint = m
        .get("audit")
        .map(|n| format!("{:?}", crate::identity_config::canonical_text(n)))
        .unwrap_or_default();

    let zones_path = rp.key("zones");
    let mut zones = match m.require(d, "zones") {
        Some(n) => decode_zones(d, n, &zones_path),
        None => None,
    }
    .unwrap_or_default();
    for (name, z) in zones.iter_mut() {
        if let Some(req) = z.zone.require.clone() {
            let at = m
                .get("zones")
                .and_then(|zn| zn.get(name))
                .and_then(|zn| zn.get("require"));
            z.zone.floor = at.and_then(|at| {
                policy_ref(
                    d,
                    at,
                    &zones_path.key(name).key("require"),
                    &req,
                    policies.as_deref(),
                )
            });
        }
    }
    let listeners_path = rp.key("listeners");
    let listeners = match m.require(d, "listeners") {
        Some(n) => decode_listeners(d, n, &listeners_path, &zones, base),
        None => Vec::new(),
    };
    let routes_path = rp.key("routes");
    let routes = match m.require(d, "routes") {
        Some(n) => decode_routes(d, n, &routes_path, &zones, &listeners, base),
        None => Vec::new(),
    };
    let mut routes = routes;
    if let Some(set) = policies.as_deref() {
        check_policy_references(d, set, &zones, &routes);
    }
    resolve_route_policies(
        d,
        &mut routes,
        &routes_path,
        &zones,
        policies.as_deref(),
        devices.is_some(),
    );

    // Cross-checks run on what decoded; a missing section was reported above.
    check_zone_overlap(d, &zones_path, &zones);
    check_listen_addresses(d, &listeners, admin.as_ref());
    check_route_overlap(d, &routes_path, &routes);

    Some(Config {
        source: PathBuf::new(),
        version: String::new(),
        instance,
        logging: logging?,
        admin: admin?,
        limits: limits?,
        trusted_proxies: trusted_proxies?,
        zones: zones
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v.zone)))
            .collect(),
        listeners: listeners.into_iter().map(|l| l.listener).collect(),
        routes: routes.into_iter().map(|r| Arc::new(r.route)).collect(),
        policies,
        policy_files,
        devices,
        identity,
        audit,
        audit_fingerprint,
        warnings: Vec::new(),
    })
}

fn decode_logging(d: &mut Decoder, n: &Node, p: &Path) -> Option<Logging> {
    let m = d.map(n, p, &["format", "level"])?;
    let format = match m.get("format") {
        Some(f) => match d.one_of(f, &p.key("format"), &["text", "json"])?.as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        },
        None => LogFormat::Text,
    };
    let level = match m.get("level") {
        Some(l) => d.nonempty_string(l, &p.key("level"))?,
        None => "info".into(),
    };
    Some(Logging { format, level })
}

fn decode_admin(d: &mut Decoder, n: &Node, p: &Path) -> Option<Admin> {
    let m = d.map(n, p, &["listen"])?;
    let listen = match m.get("listen") {
        Some(l) => decode_socket_addr(d, l, &p.key("listen"))?,
        None => SocketAddr::from(([127, 0, 0, 1], 9900)),
    };
    Some(Admin { listen })
}

fn decode_limits(d: &mut Decoder, n: Option<&Node>, p: &Path) -> Option<Limits> {
    let mut limits = Limits {
        max_header_bytes: 32 * 1024,
        max_headers: 100,
        header_read_timeout: Duration::from_secs(10),
        max_concurrent_streams: 100,
        drain_timeout: Duration::from_secs(30),
    };
    let Some(n) = n else { return Some(limits) };
    let m = d.map(
        n,
        p,
        &[
            "max_header_bytes",
            "max_headers",
            "header_read_timeout",
            "max_concurrent_streams",
            "drain_timeout",
        ],
    )?;
    let mut ok = true;
    if let Some(v) = m.get("max_header_bytes") {
        match d.uint(v, &p.key("max_header_bytes")) {
            // hyper needs room for at least one full read buffer.
            Some(b) if (8192..=1 << 20).contains(&b) => limits.max_header_bytes = b as usize,
            Some(_) => {
                d.error(
                    v,
                    &p.key("max_header_bytes"),
                    "must be between 8192 and 1048576",
                    Some("32768 suits browsers with large cookies".into()),
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(v) = m.get("max_headers") {
        match d.uint(v, &p.key("max_headers")) {
            Some(b) if (16..=1000).contains(&b) => limits.max_headers = b as usize,
            Some(_) => {
                d.error(
                    v,
                    &p.key("max_headers"),
                    "must be between 16 and 1000",
                    None,
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(v) = m.get("max_concurrent_streams") {
        match d.uint(v, &p.key("max_concurrent_streams")) {
            Some(b) if (1..=1000).contains(&b) => limits.max_concurrent_streams = b as u32,
            Some(_) => {
                d.error(
                    v,
                    &p.key("max_concurrent_streams"),
                    "must be between 1 and 1000",
                    None,
                );
                ok = false;
            }
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("header_read_timeout", &mut limits.header_read_timeout),
        ("drain_timeout", &mut limits.drain_timeout),
    ] {
        if let Some(v) = m.get(key) {
            match d.duration(v, &p.key(key)) {
                Some(t) if !t.is_zero() => *slot = t,
                Some(_) => {
                    d.error(v, &p.key(key), "must be longer than zero", None);
                    ok = false;
                }
                None => ok = false,
            }
        }
    }
    ok.then_some(limits)
}

fn decode_socket_addr(d: &mut Decoder, n: &Node, p: &Path) -> Option<SocketAddr> {
    let s = d.string(n, p)?;
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            d.error(
                n,
                p,
                format!("`{s}` is not an IP address with a port"),
                Some("for example `127.0.0.1:8443`, `0.0.0.0:443` or `[::1]:8443` (host names are not allowed here)".into()),
            );
            None
        }
    }
}

fn decode_cidrs(d: &mut Decoder, n: &Node, p: &Path) -> Option<Vec<IpNet>> {
    let items = d.string_list(n, p)?;
    let nodes: Vec<&Node> = match &n.kind {
        Kind::Seq(v) => v.iter().collect(),
        _ => vec![n],
    };
    let mut out = Vec::new();
    let mut ok = true;
    for (i, (s, node)) in items.iter().zip(nodes).enumerate() {
        match parse_cidr(s) {
            Some(net) => out.push(net),
            None => {
                d.error(
                    node,
                    &p.index(i),
                    format!("`{s}` is not an IP network"),
                    Some("write a CIDR such as `127.0.10.0/24`, or a single address such as `127.0.10.5`".into()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A CIDR, or a bare address meaning a single host.
fn parse_cidr(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        // `127.0.10.5/24` is almost certainly a typo for the network; keep the network.
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A zone while loading, with the node positions needed for later cross-checks.
struct ZoneDraft {
    zone: Zone,
    allow_nodes: Vec<(IpNet, Node)>,
}

fn decode_zones(d: &mut Decoder, n: &Node, p: &Path) -> Option<BTreeMap<String, ZoneDraft>> {
    let entries = d.named_entries(n, p)?;
    if entries.is_empty() {
        d.error(
            n,
            p,
            "at least one zone is needed",
            Some("for example `lgwan` and `internet`".into()),
        );
    }
    let mut out = BTreeMap::new();
    for (name, _key, value) in entries {
        let zp = p.key(name);
        if let Some(z) = decode_zone(d, name, value, &zp) {
            out.insert(name.to_owned(), z);
        }
    }
    Some(out)
}

fn decode_zone(d: &mut Decoder, name: &str, n: &Node, p: &Path) -> Option<ZoneDraft> {
    let m = d.map(
        n,
        p,
        &["description", "egress", "require", "isolated", "response"],
    )?;
    let description = match m.get("description") {
        Some(v) => d.string(v, &p.key("description"))?,
        None => String::new(),
    };
    let isolated = match m.get("isolated") {
        Some(v) => d.boolean(v, &p.key("isolated"))?,
        None => false,
    };
    let require = match m.get("require") {
        Some(v) => Some(d.nonempty_string(v, &p.key("require"))?),
        None => None,
    };
    let mut allow_nodes = Vec::new();
    let mut egress_allow = Vec::new();
    let mut egress_deny = Vec::new();
    let mut bind = None;
    let ep = p.key("egress");
    match m.get("egress") {
        Some(e) => {
            let em = d.map(e, &ep, &["allow", "deny", "bind"])?;
            if let Some(a) = em.require(d, "allow") {
                egress_allow = decode_cidrs(d, a, &ep.key("allow"))?;
                let nodes: Vec<Node> = match &a.kind {
                    Kind::Seq(v) => v.clone(),
                    _ => vec![a.clone()],
                };
                allow_nodes = egress_allow.iter().copied().zip(nodes).collect();
            }
            if let Some(dn) = em.get("deny") {
                egress_deny = decode_cidrs(d, dn, &ep.key("deny"))?;
            }
            if let Some(b) = em.get("bind") {
                let s = d.string(b, &ep.key("bind"))?;
                match s.parse::<IpAddr>() {
                    Ok(ip) => {
                        if !egress_allow.is_empty() && !egress_allow.iter().any(|n| n.contains(&ip))
                        {
                            d.warning(
                                b,
                                &ep.key("bind"),
                                format!("source address {ip} is outside the zone's own networks"),
                                Some("LGWAN-side traffic should leave through the LGWAN-side interface; check the address".into()),
                            );
                        }
                        bind = Some(ip);
                    }
                    Err(_) => d.error(
                        b,
                        &ep.key("bind"),
                        format!("`{s}` is not an IP address"),
                        Some("the local source address, e.g. `127.0.10.1`".into()),
                    ),
                }
            }
        }
        None => {
            d.error(
                n,
                p,
                format!("zone `{name}` has no `egress` section"),
                Some(
                    "list the networks its upstreams live in: `egress: { allow: [127.0.10.0/24] }`"
                        .into(),
                ),
            );
            return None;
        }
    }
    let response = match m.get("response") {
        Some(r) => {
            let rp = p.key("response");
            let rm = d.map(r, &rp, &["cache_control"])?;
            ZoneResponse {
                cache_control: match rm.get("cache_control") {
                    Some(v) => {
                        let s = d.nonempty_string(v, &rp.key("cache_control"))?;
                        if http::HeaderValue::from_str(&s).is_err() {
                            d.error(
                                v,
                                &rp.key("cache_control"),
                                "not a valid header value",
                                None,
                            );
                            return None;
                        }
                        Some(s)
                    }
                    None => None,
                },
            }
        }
        None => ZoneResponse::default(),
    };
    if isolated && require.is_some() {
        d.warning(
            n,
            p,
            "an isolated zone's `require` has no effect: nothing may reach it",
            None,
        );
    }
    Some(ZoneDraft {
        zone: Zone {
            name: name.to_owned(),
            description,
            egress_allow,
            egress_deny,
            bind,
            require,
            floor: None,
            isolated,
            response,
        },
        allow_nodes,
    })
}

fn check_zone_overlap(d: &mut Decoder, p: &Path, zones: &BTreeMap<String, ZoneDraft>) {
    let list: Vec<(&String, &ZoneDraft)> = zones.iter().collect();
    for (i, (a_name, a)) in list.iter().enumerate() {
        for (b_name, b) in &list[i + 1..] {
            for (na, node_a) in &a.allow_nodes {
                for (nb, _) in &b.allow_nodes {
                    if na.contains(&nb.network()) || nb.contains(&na.network()) {
                        d.error(
                            node_a,
                            &p.key(a_name).key("egress").key("allow"),
                            format!(
                                "zones `{a_name}` and `{b_name}` overlap: {na} (in `{a_name}`) and {nb} (in `{b_name}`)"
                            ),
                            Some("each network belongs to exactly one side; split the ranges so no address is in two zones".into()),
                        );
                    }
                }
            }
        }
    }
}

struct ListenerDraft {
    listener: Listener,
    node: Node,
}

fn decode_listeners(
    d: &mut Decoder,
    n: &Node,
    p: &Path,
    zones: &BTreeMap<String, ZoneDraft>,
    base: &FsPath,
) -> Vec<ListenerDraft> {
    let Some(entries) = d.named_entries(n, p) else {
        return Vec::new();
    };
    if entries.is_empty() {
        d.error(n, p, "at least one listener is needed", None);
    }
    let zone_names: Vec<&str> = zones.keys().map(String::as_str).collect();
    let mut out = Vec::new();
    for (name, _k, value) in entries {
        let lp = p.key(name);
        let Some(m) = d.map(value, &lp, &["zone", "listen", "tls", "plaintext"]) else {
            continue;
        };
        let zone = m
            .require(d, "zone")
            .and_then(|z| zone_ref(d, z, &lp.key("zone"), &zone_names, zones));
        let listen = m
            .require(d, "listen")
            .and_then(|l| decode_socket_addr(d, l, &lp.key("listen")));
        let plaintext = match m.get("plaintext") {
            Some(v) => d.boolean(v, &lp.key("plaintext")),
            None => Some(false),
        };
        let tls = match (m.get("tls"), plaintext) {
            (Some(t), Some(false)) => decode_listener_tls(d, t, &lp.key("tls"), base).map(Some),
            (Some(t), Some(true)) => {
                d.error(
                    t,
                    &lp.key("tls"),
                    "a listener is either `plaintext: true` or has `tls`, not both",
                    None,
                );
                None
            }
            (None, Some(true)) => Some(None),
            (None, Some(false)) => {
                d.error(
                    value,
                    &lp,
                    format!("listener `{name}` has no `tls` section"),
                    Some("add `tls: { certificates: [{ cert: …, key: … }] }`, or mark a test listener `plaintext: true` explicitly".into()),
                );
                None
            }
            (_, None) => None,
        };
        // A listener whose TLS section has errors still counts for the checks of routes
        // that name it (its own error already stops the load): one mistake, one message.
        if let (Some(zone), Some(listen)) = (zone, listen) {
            out.push(ListenerDraft {
                listener: Listener {
                    name: name.to_owned(),
                    zone,
                    listen,
                    tls: tls.flatten(),
                },
                node: value.clone(),
            });
        }
    }
    out
}

fn zone_ref(
    d: &mut Decoder,
    n: &Node,
    p: &Path,
    names: &[&str],
    zones: &BTreeMap<String, ZoneDraft>,
) -> Option<String> {
    let z = d.string(n, p)?;
    if zones.contains_key(&z) {
        return Some(z);
    }
    let hint = match sekisho_yaml::did_you_mean(&z, names) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("zones defined: {}", names.join(", ")),
    };
    d.error(n, p, format!("unknown zone `{z}`"), Some(hint));
    None
}

fn decode_listener_tls(d: &mut Decoder, n: &Node, p: &Path, base: &FsPath) -> Option<ListenerTls> {
    let m = d.map(n, p, &["certificates"])?;
    let cp = p.key("certificates");
    let certs_node = m.require(d, "certificates")?;
    let list = d.seq(certs_node, &cp)?;
    if list.is_empty() {
        d.error(n, &cp, "at least one certificate is needed", None);
        return None;
    }
    let mut certificates = Vec::new();
    let mut ok = true;
    for (i, item) in list.iter().enumerate() {
        let ip = cp.index(i);
        let Some(cm) = d.map(item, &ip, &["cert", "key"]) else {
            ok = false;
            continue;
        };
        let cert = cm
            .require(d, "cert")
            .and_then(|c| file_path(d, c, &ip.key("cert"), base));
        let key = cm
            .require(d, "key")
            .and_then(|k| file_path(d, k, &ip.key("key"), base));
        match (cert, key) {
            (Some(cert), Some(key)) => certificates.push(CertPair { cert, key }),
            _ => ok = false,
        }
    }
    ok.then_some(ListenerTls { certificates })
}

/// A path to a file that must exist (relative to the configuration file's directory).
fn file_path(d: &mut Decoder, n: &Node, p: &Path, base: &FsPath) -> Option<PathBuf> {
    let s = d.nonempty_string(n, p)?;
    let path = base.join(&s);
    if !path.is_file() {
        d.error(
            n,
            p,
            format!("file `{}` does not exist", path.display()),
            Some("paths are relative to the configuration file's directory".into()),
        );
        return None;
    }
    Some(path)
}

struct RouteDraft {
    route: Route,
    node: Node,
}

const ROUTE_KEYS: &[&str] = &[
    "zone",
    "kind",
    "listeners",
    "hosts",
    "path_prefix",
    "strip_prefix",
    "upstreams",
    "upstream_tls",
    "upstream_http2",
    "access",
    "policy",
    "client_certificate",
    "timeouts",
];

fn decode_routes(
    d: &mut Decoder,
    n: &Node,
    p: &Path,
    zones: &BTreeMap<String, ZoneDraft>,
    listeners: &[ListenerDraft],
    base: &FsPath,
) -> Vec<RouteDraft> {
    let Some(entries) = d.named_entries(n, p) else {
        return Vec::new();
    };
    let zone_names: Vec<&str> = zones.keys().map(String::as_str).collect();
    let listener_names: Vec<&str> = listeners.iter().map(|l| l.listener.name.as_str()).collect();
    let mut out = Vec::new();
    for (name, _k, value) in entries {
        let rp = p.key(name);
        if let Some(r) = decode_route(
            d,
            name,
            value,
            &rp,
            zones,
            &zone_names,
            listeners,
            &listener_names,
            base,
        ) {
            out.push(RouteDraft {
                route: r,
                node: value.clone(),
            });
        }
    }
    out
}

#[expect(
    clippy::too_many_arguments,
    reason = "one step of the pipeline, given the pieces it reads"
)]
fn decode_route(
    d: &mut Decoder,
    name: &str,
    n: &Node,
    p: &Path,
    zones: &BTreeMap<String, ZoneDraft>,
    zone_names: &[&str],
    listeners: &[ListenerDraft],
    listener_names: &[&str],
    base: &FsPath,
) -> Option<Route> {
    let m = d.map(n, p, ROUTE_KEYS)?;
    let zone_node = m.require(d, "zone");
    let zone = zone_node.and_then(|z| zone_ref(d, z, &p.key("zone"), zone_names, zones));
    let kind = match m.get("kind") {
        Some(k) => match d
            .one_of(
                k,
                &p.key("kind"),
                &["proxy", "screen_transfer", "sanitized_upload"],
            )?
            .as_str()
        {
            "screen_transfer" => Some(RouteKind::ScreenTransfer),
            "sanitized_upload" => {
                d.error(
                    k,
                    &p.key("kind"),
                    "`sanitized_upload` routes are not supported by this version of Sekisho",
                    Some("files must pass a sanitiser (無害化) before they cross; until Sekisho drives one, keep the upload on its own side".into()),
                );
                None
            }
            _ => Some(RouteKind::Proxy),
        },
        None => Some(RouteKind::Proxy),
    };

    // Hosts.
    let hosts_path = p.key("hosts");
    let hosts = m.require(d, "hosts").and_then(|h| {
        let names = d.string_list(h, &hosts_path)?;
        let nodes: Vec<&Node> = match &h.kind {
            Kind::Seq(v) => v.iter().collect(),
            _ => vec![h],
        };
        if names.is_empty() {
            d.error(h, &hosts_path, "at least one host is needed", None);
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, (s, node)) in names.iter().zip(nodes).enumerate() {
            match HostPattern::parse(s) {
                Ok(hp) => out.push(hp),
                Err(why) => {
                    d.error(
                        node,
                        &hosts_path.index(i),
                        format!("`{s}` is not a host name: {why}"),
                        Some("write `portal.example.lg.jp` or `*.example.lg.jp`".into()),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    });

    let path_prefix = match m.get("path_prefix") {
        Some(v) => {
            let s = d.string(v, &p.key("path_prefix"))?;
            match crate::canon::canonicalize_prefix(&s) {
                Ok(c) => Some(c),
                Err(why) => {
                    d.error(
                        v,
                        &p.key("path_prefix"),
                        format!("`{s}` is not a usable path prefix: {why}"),
                        Some("write a plain path such as `/` or `/kintai/`".into()),
                    );
                    None
                }
            }
        }
        None => Some("/".to_owned()),
    };
    let strip_prefix = match m.get("strip_prefix") {
        Some(v) => d.boolean(v, &p.key("strip_prefix")),
        None => Some(false),
    };
    let upstream_http2 = match m.get("upstream_http2") {
        Some(v) => d.boolean(v, &p.key("upstream_http2")),
        None => Some(false),
    };

    // Access: explicit public, or a named policy; never open by omission.
    let access = match (m.get("access"), m.get("policy")) {
        (Some(a), None) => match d
            .one_of(a, &p.key("access"), &["public", "policy"])?
            .as_str()
        {
            "public" => Some(Access::Public),
            _ => {
                d.error(
                    a,
                    &p.key("access"),
                    "`access: policy` needs a `policy: <name>`",
                    None,
                );
                None
            }
        },
        (Some(a), Some(pol)) => {
            let mode = d.one_of(a, &p.key("access"), &["public", "policy"])?;
            if mode == "public" {
                d.error(
                    a,
                    &p.key("access"),
                    "a route is either `access: public` or names a `policy`, not both",
                    Some("remove one of the two".into()),
                );
                None
            } else {
                d.nonempty_string(pol, &p.key("policy")).map(Access::Policy)
            }
        }
        (None, Some(pol)) => d.nonempty_string(pol, &p.key("policy")).map(Access::Policy),
        (None, None) => {
            d.error(
                n,
                p,
                format!("route `{name}` says nothing about access"),
                Some("name the policy that decides (`policy: lgwan-staff`), or write `access: public` if anyone may reach it; nothing is open by omission".into()),
            );
            None
        }
    };

    let timeouts = match m.get("timeouts") {
        Some(t) => decode_timeouts(d, t, &p.key("timeouts")),
        None => Some(Timeouts::default()),
    };
    // `request` (default for policy routes when devices are configured) or `off`;
    // resolved in `resolve_route_policies` once `devices` is known.
    let client_certificate = match m.get("client_certificate") {
        Some(v) => d
            .one_of(v, &p.key("client_certificate"), &["request", "off"])
            .map(|s| Some(s == "request")),
        None => Some(None),
    };
    let client_certificate: Option<bool> =
        client_certificate.map(|c| c.unwrap_or(matches!(access, Some(Access::Policy(_)))));

    let upstream_tls = match m.get("upstream_tls") {
        Some(t) => {
            let tp = p.key("upstream_tls");
            let tm = d.map(t, &tp, &["ca", "server_name"])?;
            let ca = tm
                .require(d, "ca")
                .and_then(|c| file_path(d, c, &tp.key("ca"), base));
            let server_name = match tm.get("server_name") {
                Some(s) => Some(d.nonempty_string(s, &tp.key("server_name"))?),
                None => None,
            };
            ca.map(|ca| Some(UpstreamTls { ca, server_name }))
        }
        None => Some(None),
    }?;

    // Upstreams: parsed, then checked against the route's zone and every isolated zone.
    let up_path = p.key("upstreams");
    let upstreams = m.require(d, "upstreams").and_then(|u| {
        let items = d.seq(u, &up_path)?;
        if items.is_empty() {
            d.error(u, &up_path, "at least one upstream is needed", None);
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ip = up_path.index(i);
            let Some(s) = d.nonempty_string(item, &ip) else {
                ok = false;
                continue;
            };
            match parse_upstream(&s) {
                Ok(up) => {
                    if up.scheme == http::uri::Scheme::HTTPS && upstream_tls.is_none() {
                        // The system roots are not consulted: upstreams inside a municipality
                        // are signed by its own CA, which must be named.
                        d.error(
                            item,
                            &ip,
                            "an `https` upstream needs `upstream_tls.ca`",
                            Some(
                                "name the PEM file of the CA that signs the upstream's certificate"
                                    .into(),
                            ),
                        );
                        ok = false;
                    }
                    if let (Some(ip_addr), Some(zone_name)) = (up.ip, zone.as_deref()) {
                        ok &= check_upstream_zone(d, item, &ip, name, zone_name, ip_addr, zones);
                    }
                    out.push(up);
                }
                Err(why) => {
                    d.error(
                        item,
                        &ip,
                        format!("`{s}` is not an upstream URL: {why}"),
                        Some(
                            "write `http://127.0.10.5:8080` or `https://portal.internal:8443`"
                                .into(),
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    });

    // Listeners: by default every listener of the route's zone. Naming a listener of
    // another zone makes the route a crossing.
    let route_listeners = match (m.get("listeners"), zone.as_deref()) {
        (Some(ln), Some(zone_name)) => {
            let lp = p.key("listeners");
            let names = d.string_list(ln, &lp)?;
            let nodes: Vec<&Node> = match &ln.kind {
                Kind::Seq(v) => v.iter().collect(),
                _ => vec![ln],
            };
            let mut ok = true;
            for (i, (l, node)) in names.iter().zip(nodes).enumerate() {
                let Some(listener) = listeners.iter().find(|x| &x.listener.name == l) else {
                    let hint = match sekisho_yaml::did_you_mean(l, listener_names) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("listeners defined: {}", listener_names.join(", ")),
                    };
                    d.error(
                        node,
                        &lp.index(i),
                        format!("unknown listener `{l}`"),
                        Some(hint),
                    );
                    ok = false;
                    continue;
                };
                let lz = &listener.listener.zone;
                if lz != zone_name && kind.as_ref() == Some(&RouteKind::Proxy) {
                    d.error(
                        node,
                        &lp.index(i),
                        format!(
                            "route `{name}` (zone `{zone_name}`) would be served on listener `{l}` (zone `{lz}`): a plain proxy route may not cross from `{lz}` to `{zone_name}`"
                        ),
                        Some("traffic between sides is blocked in principle (三層の対策); serve the route on a listener of its own zone, or make it `kind: screen_transfer`".into()),
                    );
                    ok = false;
                }
            }
            ok.then_some(names)
        }
        (None, Some(zone_name)) => {
            let own: Vec<String> = listeners
                .iter()
                .filter(|l| l.listener.zone == zone_name)
                .map(|l| l.listener.name.clone())
                .collect();
            if own.is_empty() {
                d.error(
                    n,
                    p,
                    format!("route `{name}` is in zone `{zone_name}`, but no listener serves that zone"),
                    Some("add a listener with `zone: …` for it, or name the listeners with `listeners: [...]`".into()),
                );
                None
            } else {
                Some(own)
            }
        }
        (_, None) => None,
    };

    if let (Some(zone_name), Some(Access::Public)) = (zone.as_deref(), access.as_ref())
        && let Some(z) = zones.get(zone_name)
        && let Some(floor) = &z.zone.require
    {
        d.error(
            n,
            p,
            format!("route `{name}` is `access: public`, but zone `{zone_name}` requires policy `{floor}` for every route"),
            Some("a route cannot weaken its zone's floor; give the route a policy".into()),
        );
    }

    Some(Route {
        name: name.to_owned(),
        zone: zone?,
        kind: kind?,
        listeners: route_listeners?,
        hosts: hosts?,
        path_prefix: path_prefix?,
        upstreams: upstreams?,
        upstream_tls,
        upstream_http2: upstream_http2?,
        access: access?,
        target: None,
        client_certificate: client_certificate?,
        timeouts: timeouts?,
        strip_prefix: strip_prefix?,
        series: Default::default(),
    })
}

fn check_upstream_zone(
    d: &mut Decoder,
    node: &Node,
    p: &Path,
    route: &str,
    zone_name: &str,
    ip: IpAddr,
    zones: &BTreeMap<String, ZoneDraft>,
) -> bool {
    let ip = canonical_ip(ip);
    for (other, z) in zones {
        if z.zone.isolated && z.zone.egress_allow.iter().any(|n| n.contains(&ip)) {
            d.error(
                node,
                p,
                format!("route `{route}` points at {ip}, inside isolated zone `{other}`"),
                Some(format!(
                    "nothing may reach `{other}` through Sekisho; remove this upstream"
                )),
            );
            return false;
        }
    }
    let Some(z) = zones.get(zone_name) else {
        return true;
    };
    if z.zone.isolated {
        d.error(
            node,
            p,
            format!("route `{route}` is in isolated zone `{zone_name}`"),
            Some("an isolated zone may not be reached by any route".into()),
        );
        return false;
    }
    if z.zone.egress_deny.iter().any(|n| n.contains(&ip)) {
        d.error(
            node,
            p,
            format!("upstream {ip} is in zone `{zone_name}`'s `egress.deny`"),
            None,
        );
        return false;
    }
    if !z.zone.egress_allow.iter().any(|n| n.contains(&ip)) {
        let owner = zones
            .iter()
            .find(|(_, o)| o.zone.egress_allow.iter().any(|n| n.contains(&ip)))
            .map(|(k, _)| k.clone());
        let msg = match owner {
            Some(o) => format!(
                "route `{route}` is in zone `{zone_name}`, but upstream {ip} belongs to zone `{o}`"
            ),
            None => {
                format!("upstream {ip} is outside zone `{zone_name}`'s `egress.allow` networks")
            }
        };
        d.error(
            node,
            p,
            msg,
            Some("a route's upstreams must lie in its own zone; fix the address or the route's `zone`".into()),
        );
        return false;
    }
    true
}

fn decode_timeouts(d: &mut Decoder, n: &Node, p: &Path) -> Option<Timeouts> {
    let m = d.map(n, p, &["connect", "response_header", "idle"])?;
    let mut t = Timeouts::default();
    let mut ok = true;
    for (key, slot) in [
        ("connect", &mut t.connect),
        ("response_header", &mut t.response_header),
        ("idle", &mut t.idle),
    ] {
        if let Some(v) = m.get(key) {
            match d.duration(v, &p.key(key)) {
                Some(x) if !x.is_zero() => *slot = x,
                Some(_) => {
                    d.error(v, &p.key(key), "must be longer than zero", None);
                    ok = false;
                }
                None => ok = false,
            }
        }
    }
    ok.then_some(t)
}

/// Parses `http://host:port` or `https://host:port` (no path, query or credentials).
pub fn parse_upstream(s: &str) -> Result<Upstream, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or("the scheme (`http://` or `https://`) is missing")?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(format!("scheme `{scheme}` is not supported"));
    }
    let auth = uri.authority().ok_or("the host is missing")?;
    if auth.as_str().contains('@') {
        return Err("credentials in the URL are not allowed".into());
    }
    if uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str() != "/" && !pq.as_str().is_empty())
    {
        return Err("an upstream is a scheme, host and port only; use `strip_prefix` or path routing instead of a path".into());
    }
    let host = auth
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = auth
        .port_u16()
        .unwrap_or(if scheme == http::uri::Scheme::HTTPS {
            443
        } else {
            80
        });
    let ip = host.parse::<IpAddr>().ok();
    Ok(Upstream {
        scheme,
        host,
        port,
        ip,
    })
}

fn check_listen_addresses(d: &mut Decoder, listeners: &[ListenerDraft], admin: Option<&Admin>) {
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    for l in listeners {
        // Port 0 asks the system for a free port: never a clash.
        if l.listener.listen.port() == 0 {
            continue;
        }
        if !seen.insert(l.listener.listen) {
            d.error(
                &l.node,
                &Path::root().key("listeners").key(&l.listener.name),
                format!("address {} is used by two listeners", l.listener.listen),
                None,
            );
        }
        if admin.is_some_and(|a| a.listen == l.listener.listen) {
            d.error(
                &l.node,
                &Path::root().key("listeners").key(&l.listener.name),
                format!("address {} is the admin listener's", l.listener.listen),
                Some("admin endpoints are never served on a public listener; give the admin listener its own address".into()),
            );
        }
    }
    if let Some(a) = admin
        && !a.listen.ip().is_loopback()
    {
        d.push_diagnostic(Diagnostic {
            severity: Severity::Warning,
            file: d.file().to_owned(),
            line: 0,
            column: 0,
            path: "admin.listen".into(),
            message: format!("the admin listener {} is not on loopback", a.listen),
            hint: Some(
                "metrics and readiness should be reachable only from the monitoring network".into(),
            ),
        });
    }
}

/// Two routes with the same host pattern and path prefix on a common listener would make
/// the choice between them depend on file order: refuse it.
fn check_route_overlap(d: &mut Decoder, p: &Path, routes: &[RouteDraft]) {
    for (i, a) in routes.iter().enumerate() {
        for b in &routes[i + 1..] {
            let shared_listener = a
                .route
                .listeners
                .iter()
                .any(|l| b.route.listeners.contains(l));
            if !shared_listener || a.route.path_prefix != b.route.path_prefix {
                continue;
            }
            if let Some(h) = a.route.hosts.iter().find(|h| b.route.hosts.contains(h)) {
                d.error(
                    &b.node,
                    &p.key(&b.route.name),
                    format!(
                        "routes `{}` and `{}` both claim host `{h}` with path prefix `{}`",
                        a.route.name, b.route.name, a.route.path_prefix
                    ),
                    Some("give one of them a different host or a longer path prefix".into()),
                );
            }
        }
    }
}

/// Reads the policy files and directories named in `policies:` and compiles them.
fn decode_policies(
    d: &mut Decoder,
    n: &Node,
    p: &Path,
    base: &FsPath,
) -> (Option<Arc<PolicySet>>, Vec<PathBuf>) {
    let Some(entries) = d.string_list(n, p) else {
        return (None, Vec::new());
    };
    let mut files = Vec::new();
    for e in entries {
        let path = base.join(&e);
        if path.is_dir() {
            let mut found: Vec<PathBuf> = match std::fs::read_dir(&path) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|f| {
                        f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml")
                    })
                    .collect(),
                Err(err) => {
                    d.error(
                        n,
                        p,
                        format!("cannot read directory `{}`: {err}", path.display()),
                        None,
                    );
                    continue;
                }
            };
            found.sort();
            if found.is_empty() {
                d.error(
                    n,
                    p,
                    format!("directory `{}` has no .yaml policy files", path.display()),
                    None,
                );
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path);
        } else {
            d.error(
                n,
                p,
                format!("`{}` does not exist", path.display()),
                Some("name policy files or a directory of them, relative to this file".into()),
            );
        }
    }
    let mut texts = Vec::new();
    for f in &files {
        match std::fs::read_to_string(f) {
            Ok(t) => texts.push((f.display().to_string(), t)),
            Err(e) => d.error(n, p, format!("cannot read `{}`: {e}", f.display()), None),
        }
    }
    if texts.is_empty() {
        return (None, files);
    }
    match PolicySet::compile(&texts) {
        Ok((set, warnings)) => {
            for w in warnings {
                d.push_diagnostic(w);
            }
            (Some(Arc::new(set)), files)
        }
        Err(diags) => {
            for x in diags {
                d.push_diagnostic(x);
            }
            (None, files)
        }
    }
}

/// The `devices:` section is posture's own serde type; relative paths are made relative
/// to this file.
fn decode_devices(d: &mut Decoder, n: &Node, p: &Path, base: &FsPath) -> Option<DevicesConfig> {
    let mut cfg: DevicesConfig = sekisho_yaml::deserialize(d, n, p)?;
    let fix = |x: &mut PathBuf| {
        if x.is_relative() {
            *x = base.join(&*x);
        }
    };
    cfg.trust.ca_files.iter_mut().for_each(fix);
    cfg.trust.crl_files.iter_mut().for_each(fix);
    cfg.inventory_files.iter_mut().for_each(fix);
    if let Some(a) = cfg.assertions.as_mut() {
        for k in &mut a.keys {
            fix(&mut k.public_key_file);
        }
    }
    Some(cfg)
}

/// Policies may name zones and routes (`zone:` / `route:` criteria); a name that does not
/// exist would silently never match, so it is an error at the policy file's position.
fn check_policy_references(
    d: &mut Decoder,
    set: &PolicySet,
    zones: &BTreeMap<String, ZoneDraft>,
    routes: &[RouteDraft],
) {
    let zone_names: Vec<&str> = zones.keys().map(String::as_str).collect();
    let route_names: Vec<&str> = routes.iter().map(|r| r.route.name.as_str()).collect();
    for r in set.references() {
        let known: &[&str] = if r.kind == "zone" {
            &zone_names
        } else {
            &route_names
        };
        if known.contains(&r.name.as_str()) {
            continue;
        }
        let hint = match sekisho_yaml::did_you_mean(&r.name, known) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("{}s in the configuration: {}", r.kind, known.join(", ")),
        };
        d.push_diagnostic(Diagnostic {
            severity: Severity::Error,
            file: r.file.clone(),
            line: r.line,
            column: r.column,
            path: r.path.clone(),
            message: format!(
                "the policy names {} `{}`, which the configuration does not define",
                r.kind, r.name
            ),
            hint: Some(hint),
        });
    }
}

/// Resolves a policy name, with a did-you-mean hint when it is unknown.
fn policy_ref(
    d: &mut Decoder,
    at: &Node,
    p: &Path,
    name: &str,
    set: Option<&PolicySet>,
) -> Option<PolicyId> {
    let Some(set) = set else {
        d.error(
            at,
            p,
            format!("policy `{name}` is named, but no policies are loaded"),
            Some("add `policies: [../policies]` naming the policy files (or fix the errors reported in them)".into()),
        );
        return None;
    };
    if let Some(id) = set.lookup(name) {
        return Some(id);
    }
    let names: Vec<&str> = set.policy_names().collect();
    let hint = match sekisho_yaml::did_you_mean(name, &names) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("policies defined: {}", names.join(", ")),
    };
    d.error(at, p, format!("unknown policy `{name}`"), Some(hint));
    None
}

/// Gives every policy route its target (route policy AND zone floor), and warns about
/// routes whose effective policy admits everyone without being marked public.
fn resolve_route_policies(
    d: &mut Decoder,
    routes: &mut [RouteDraft],
    p: &Path,
    zones: &BTreeMap<String, ZoneDraft>,
    set: Option<&PolicySet>,
    devices: bool,
) {
    for r in routes.iter_mut() {
        let rp = p.key(&r.route.name);
        if !devices {
            r.route.client_certificate = false;
        }
        let Access::Policy(name) = &r.route.access else {
            continue;
        };
        let at = r
            .node
            .get("policy")
            .cloned()
            .unwrap_or_else(|| r.node.clone());
        let Some(policy) = policy_ref(d, &at, &rp.key("policy"), name, set) else {
            continue;
        };
        let floor = zones.get(&r.route.zone).and_then(|z| z.zone.floor);
        let target = Target { floor, policy };
        if let Some(set) = set
            && set.admits_everyone(policy)
            && floor.is_none_or(|f| set.admits_everyone(f))
        {
            d.warning(
                &at,
                &rp.key("policy"),
                format!("route `{}`: policy `{name}` admits everyone", r.route.name),
                Some("if that is intended, write `access: public` so it is visible; otherwise narrow the policy".into()),
            );
        }
        r.route.target = Some(target);
    }
}

#[cfg(test)]
mod tests;
