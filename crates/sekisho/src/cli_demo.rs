//! `sekisho demo`: everything on one machine, one command, no external setup.
//!
//! **Development only.** It generates (or reuses) a development PKI, secrets and a device
//! inventory under the state directory, starts the development OpenID provider
//! (`sekisho-devidp`, which `sekisho serve` can never start: the gateway configuration has no
//! key for it) and two demo upstreams on loopback — an LGWAN-side portal on `127.0.10.x` and an
//! internet-side groupware on `127.0.20.x` — writes a gateway configuration that uses the
//! repository's example policies, and runs the gateway in front of them with the audit trail
//! and metrics. It prints what to open and writes `DIR/demo.json` for scripts and tests.
//!
//! State directory layout (all paths below are relative to it):
//!
//! ```text
//! demo.json                 what a script needs (written once everything listens)
//! sekisho.yaml              the gateway configuration (rewritten on every start)
//! devices.yaml              device inventory with "now" check-in times (rewritten on every start)
//! policies/                 copies of the repository's policies (kept if you edit them)
//! pki/                      dev CA, server cert, device certs (.pem .key .p12), CRL
//! secrets/                  client secret, cookie keys, assertion key (0600)
//! tokens/<user>.jwt         bearer access tokens for curl (valid 1 hour, renewed on start)
//! audit/                    the audit trail (`sekisho audit verify|query audit`)
//! ```
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use jiff::{SignedDuration, Timestamp};
use sekisho_devidp::upstreams::{self, AssertionCheck, RunningUpstream, UpstreamKind};
use sekisho_devidp::{DemoUser, DevClient, DevIdp, DevIdpConfig, demo_users};
use sekisho_posture::pki::{self, InitOptions, IssueOptions, RevokeTarget};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The example policies of the repository, built into the binary so that the demo works
/// from any directory. `tests::embedded_policies_match_the_repository` keeps the list honest.
pub(crate) const POLICY_FILES: &[(&str, &str)] = &[
    (
        "internet.yaml",
        include_str!("../../../policies/internet.yaml"),
    ),
    ("lgwan.yaml", include_str!("../../../policies/lgwan.yaml")),
    (
        "settings.yaml",
        include_str!("../../../policies/settings.yaml"),
    ),
    (
        "tests/municipality.yaml",
        include_str!("../../../policies/tests/municipality.yaml"),
    ),
];

const CLIENT_ID: &str = "sekisho";
const PORTAL_HOST: &str = "portal.lgwan.localhost";
const GROUPWARE_HOST: &str = "groupware.localhost";

#[derive(Args)]
pub struct DemoArgs {
    /// Where the demo keeps its files (certificates, secrets, configuration, audit trail).
    #[arg(long, default_value = "state/demo")]
    pub state_dir: PathBuf,
    /// Port of the LGWAN-side listener (0: any free port; see demo.json).
    #[arg(long, default_value_t = 8443)]
    pub lgwan_port: u16,
    /// Port of the internet-side listener (0: any free port).
    #[arg(long, default_value_t = 9443)]
    pub internet_port: u16,
    /// Port of the admin endpoint: /metrics, /healthz, /readyz (0: any free port).
    #[arg(long, default_value_t = 9900)]
    pub admin_port: u16,
}

/// A demo device certificate.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeviceFiles {
    id: String,
    serial: String,
    not_after: Timestamp,
    /// File names inside `pki/devices/`.
    cert: String,
    key: String,
    p12: String,
}

/// `pki/demo-devices.json`: which certificate is which demo device.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct DemoDevices {
    p12_password: String,
    managed: Option<DeviceFiles>,
    byod: Option<DeviceFiles>,
    revoked: Option<DeviceFiles>,
}

/// The three demo devices: (kind, device ID, description ja, description en).
const DEVICES: &[(&str, &str, &str, &str)] = &[
    (
        "managed",
        "PC-0042",
        "総務課の管理PC（管理端末・基準適合）",
        "managed, compliant municipal PC",
    ),
    (
        "byod",
        "BYOD-IPHONE-0007",
        "私物スマートフォン（BYOD・画面ロックと暗号化あり）",
        "personal phone (BYOD, screen lock and encryption)",
    ),
    (
        "revoked",
        "PC-0099",
        "紛失届の出た管理PC（証明書失効済み）",
        "managed PC reported lost (certificate revoked)",
    ),
];

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(demo(args))
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SEKISHO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The demo's users: the development IdP's, with groups that the example policies use
/// (田中 is in the IT section, so the LGWAN portal admits her outside office hours too).
fn users() -> Vec<DemoUser> {
    let mut users = demo_users();
    for u in &mut users {
        match u.username.as_str() {
            "tanaka" => {
                u.groups = vec!["staff".into(), "it-admin".into()];
                u.role = "職員・情報政策課（MFA 登録済み） / staff, IT section, with MFA".into();
            }
            "suzuki" => u.groups = vec!["staff".into()],
            "sato" => u.groups = vec!["auditors".into()],
            "yamada" => {
                u.groups = vec!["contractor-sample".into()];
                u.role = "委託事業者（サンプル情報サービス） / contractor".into();
            }
            _ => {}
        }
    }
    users
}

/// A port for a gateway listener. For 0 the kernel picks one, and the probe socket is kept
/// in `held` until the gateway is about to bind: the development IdP and the demo upstreams
/// also bind port 0 on loopback before the gateway starts, and a probe dropped at once lets
/// the kernel hand the same port to them (seen as "Address already in use").
fn port_or_free(p: u16, held: &mut Vec<std::net::TcpListener>) -> anyhow::Result<u16> {
    if p != 0 {
        return Ok(p);
    }
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = l.local_addr()?.port();
    held.push(l);
    Ok(port)
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| anyhow::anyhow!("system random generator failed"))?;
    Ok(b)
}

/// Makes sure a secret file is not readable by others (an older copy may have been).
fn restrict(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Reads a secret file, or creates it with `make()` (mode 0600).
fn secret_file(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    if let Ok(s) = std::fs::read_to_string(path)
        && !s.trim().is_empty()
    {
        restrict(path)?;
        return Ok(s);
    }
    let s = make()?;
    pki::write_private(path, s.as_bytes())?;
    Ok(s)
}

fn ensure_pki(dir: &Path, now: Timestamp) -> anyhow::Result<DemoDevices> {
    let state_file = dir.join("demo-devices.json");
    // The server certificate lives 397 days: start over well before that.
    let stale = std::fs::metadata(dir.join(pki::SERVER_CERT))
        .and_then(|m| m.modified())
        .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(360 * 86_400))
        .unwrap_or(true);
    if !dir.join(pki::DEVICE_CA_KEY).exists() || stale {
        let mut opts = InitOptions::new(now);
        opts.organization = "Sekisho demo (development only)".into();
        for h in ["vb.lgwan.localhost", "*.lgwan.localhost"] {
            if !opts.server_hosts.iter().any(|x| x == h) {
                opts.server_hosts.push(h.into());
            }
        }
        opts.force = true;
        pki::init(dir, &opts).context("creating the development PKI")?;
        let _ = std::fs::remove_file(&state_file);
        tracing::info!(dir = %dir.display(), "created a development CA and server certificate");
    }
    let mut devices: DemoDevices = std::fs::read_to_string(&state_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default();
    if devices.p12_password.is_empty() {
        devices.p12_password = pki::random_password()?;
    }
    let devdir = dir.join(pki::DEVICES_DIR);
    for (kind, id, _, _) in DEVICES {
        let slot = match *kind {
            "managed" => &mut devices.managed,
            "byod" => &mut devices.byod,
            _ => &mut devices.revoked,
        };
        let usable = slot.as_ref().is_some_and(|d| {
            d.id == *id
                && d.not_after > now + SignedDuration::from_hours(24)
                && [&d.cert, &d.key, &d.p12]
                    .iter()
                    .all(|f| devdir.join(f).exists())
        });
        if usable {
            continue;
        }
        let issued = pki::issue_device(
            dir,
            id,
            &IssueOptions::new(now, devices.p12_password.clone()),
        )
        .with_context(|| format!("issuing the demo device certificate {id}"))?;
        let name = |p: &Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        if *kind == "revoked" {
            pki::revoke(dir, &RevokeTarget::Serial(issued.serial_hex.clone()), now)?;
        }
        *slot = Some(DeviceFiles {
            id: issued.id.clone(),
            serial: issued.serial_hex.clone(),
            not_after: issued.not_after,
            cert: name(&issued.cert_path),
            key: name(&issued.key_path),
            p12: name(&issued.p12_path),
        });
    }
    pki::write_private(
        &state_file,
        serde_json::to_string_pretty(&devices)?.as_bytes(),
    )?;
    refresh_crl(dir, now)?;
    Ok(devices)
}

/// A CRL is valid for 30 days: write a fresh one on every start, so an old state directory
/// keeps working (and the revoked demo device stays revoked).
fn refresh_crl(dir: &Path, now: Timestamp) -> anyhow::Result<()> {
    let ca = pki::load_device_ca(dir)?;
    let mut index = pki::load_index(dir)?;
    index.crl_number += 1;
    let revoked: Vec<(String, Timestamp)> = index
        .devices
        .iter()
        .filter_map(|d| d.revoked_at.map(|at| (d.serial.clone(), at)))
        .collect();
    let pem = ca.crl_pem(&revoked, index.crl_number, now, now + pki::CRL_VALIDITY)?;
    pki::write_public(&dir.join(pki::DEVICE_CA_CRL), pem.as_bytes())?;
    pki::write_public(
        &dir.join(pki::DEVICES_DIR).join(pki::INDEX_FILE),
        serde_json::to_string_pretty(&index)?.as_bytes(),
    )?;
    Ok(())
}

/// Copies the example policies unless the state directory already has (possibly edited) ones.
fn ensure_policies(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut kept = Vec::new();
    for (name, text) in POLICY_FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::read_to_string(&path) {
            Ok(existing) if existing != *text => kept.push((*name).to_owned()),
            Ok(_) => {}
            Err(_) => std::fs::write(&path, text)?,
        }
    }
    Ok(kept)
}

/// The device inventory, with check-in times relative to now so the facts are fresh.
fn inventory(now: Timestamp) -> String {
    let ago = |minutes: i64| (now - SignedDuration::from_mins(minutes)).to_string();
    format!(
        r#"# 端末台帳 (device inventory) for `sekisho demo` — DEVELOPMENT ONLY.
# Rewritten on every start with check-in times relative to the start time.
source: sekisho demo
exported_at: "{exported}"
devices:
  # 総務課の管理PC — managed, compliant (certificate: pki/devices/PC-0042-*.p12)
  - device_id: PC-0042
    managed: true
    ownership: corporate
    owner: tanaka@town.example.lg.jp
    os: windows
    os_version: "10.0.26100"
    disk_encryption: true
    screen_lock: true
    firewall: true
    antivirus: true
    edr: true
    compliant: true
    last_check_in: "{pc}"
    tags: [lgwan, soumu]

  # 私物スマートフォン (BYOD) — enrolled for groupware only (certificate: BYOD-IPHONE-0007-*.p12)
  - device_id: BYOD-IPHONE-0007
    managed: false
    ownership: byod
    owner: tanaka@town.example.lg.jp
    os: ios
    os_version: "18.1"
    disk_encryption: true
    screen_lock: true
    compliant: true
    last_check_in: "{phone}"
    tags: [byod, groupware-only]

  # 紛失届の出た管理PC — its certificate is revoked in pki/device-ca.crl.pem
  - device_id: PC-0099
    managed: true
    ownership: corporate
    owner: suzuki@town.example.lg.jp
    os: windows
    os_version: "10.0.26100"
    disk_encryption: true
    screen_lock: true
    compliant: true
    last_check_in: "{lost}"
    tags: [lgwan, lost]
"#,
        exported = ago(1),
        pc = ago(20),
        phone = ago(45),
        lost = ago(180),
    )
}

struct Ports {
    lgwan: u16,
    internet: u16,
    admin: u16,
}

struct Upstreams {
    portal: RunningUpstream,
    audit: RunningUpstream,
    groupware: RunningUpstream,
}

fn gateway_config(issuer: &str, ports: &Ports, up: &Upstreams) -> String {
    format!(
        r#"# yaml-language-server: $schema=../../schema/config.schema.json
# Generated by `sekisho demo` on every start — DEVELOPMENT ONLY (the identity provider below
# is the built-in development one; its users' passwords are published).
# `sekisho check --config {{this file}}` checks it; editing the policies in ./policies
# reloads them while the demo runs.
instance: sekisho-demo

logging:
  format: text
  level: info

admin:
  listen: 127.0.0.1:{admin}

limits:
  drain_timeout: 5s

policies: [policies]

devices:
  trust:
    ca_files: [pki/device-ca.pem]
    crl_files: [pki/device-ca.crl.pem]
    device_id: {{ from: san_uri, prefix: "urn:sekisho:device:" }}
  inventory_files: [devices.yaml]
  posture:
    inventory_max_age: 72h

identity:
  oidc:
    issuer: {issuer}
    client_id: {CLIENT_ID}
    client_secret_file: secrets/client-secret
    scopes: [openid, email, profile, groups]
  session:
    cookie_keys_file: secrets/cookie-keys
  bearer:
    issuer: {issuer}
    audiences: [sekisho]
  assertion:
    key_file: secrets/assertion-key.pem

audit:
  dir: audit
  durability: batched

zones:
  lgwan:
    description: LGWAN接続系 — 庁内の業務システム
    require: lgwan-floor
    egress:
      allow: [127.0.10.0/24]
      bind: 127.0.10.1
    response:
      cache_control: no-store
  internet:
    description: インターネット接続系 — グループウェア等
    egress:
      allow: [127.0.20.0/24]
  mynumber:
    description: マイナンバー利用事務系 — 到達不可
    isolated: true
    egress:
      allow: [127.0.30.0/24]

listeners:
  lgwan-https:
    zone: lgwan
    listen: 127.0.0.1:{lgwan}
    tls:
      certificates:
        - cert: pki/server.pem
          key: pki/server.key
  internet-https:
    zone: internet
    listen: 127.0.0.1:{internet}
    tls:
      certificates:
        - cert: pki/server.pem
          key: pki/server.key

routes:
  # 庁内ポータル (LGWAN side): staff with MFA on a managed, compliant device.
  portal:
    zone: lgwan
    hosts: [{PORTAL_HOST}]
    upstreams: [{portal}]
    policy: lgwan-staff
  # 監査ログ閲覧 (LGWAN side): auditors only.
  audit-viewer:
    zone: lgwan
    hosts: [{PORTAL_HOST}]
    path_prefix: /audit
    upstreams: [{audit}]
    policy: audit-viewer
  # グループウェア (internet side): staff, BYOD allowed.
  groupware:
    zone: internet
    hosts: [{GROUPWARE_HOST}]
    upstreams: [{groupware}]
    policy: internet-groupware
"#,
        admin = ports.admin,
        lgwan = ports.lgwan,
        internet = ports.internet,
        portal = up.portal.url(),
        audit = up.audit.url(),
        groupware = up.groupware.url(),
    )
}

async fn start_upstream(kind: UpstreamKind, ip: [u8; 4]) -> anyhow::Result<RunningUpstream> {
    let addr = SocketAddr::from((Ipv4Addr::from(ip), 0));
    upstreams::start(kind, addr)
        .await
        .with_context(|| format!("starting the demo {} on {addr}", kind.name()))
}

fn abs(p: &Path) -> String {
    p.display().to_string()
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let now = Timestamp::now();
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let dir = std::fs::canonicalize(&args.state_dir)?;
    // A script waits for demo.json: never let it find the previous run's.
    let demo_json = dir.join("demo.json");
    let _ = std::fs::remove_file(&demo_json);
    for sub in ["secrets", "tokens", "audit"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }

    let pki_dir = dir.join("pki");
    let devices = ensure_pki(&pki_dir, now)?;
    let client_secret = secret_file(&dir.join("secrets/client-secret"), || {
        Ok(pki::random_password()? + "\n")
    })?;
    secret_file(&dir.join("secrets/cookie-keys"), || {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>()?);
        Ok(format!("demo-1:{key}\n"))
    })?;
    secret_file(&dir.join("secrets/assertion-key.pem"), || {
        Ok(rcgen::KeyPair::generate()?.serialize_pem())
    })?;
    let kept = ensure_policies(&dir.join("policies"))?;
    std::fs::write(dir.join("devices.yaml"), inventory(now))?;

    let mut held = Vec::new();
    let ports = Ports {
        lgwan: port_or_free(args.lgwan_port, &mut held)?,
        internet: port_or_free(args.internet_port, &mut held)?,
        admin: port_or_free(args.admin_port, &mut held)?,
    };
    if ports.lgwan == ports.internet {
        bail!("--lgwan-port and --internet-port must differ");
    }
    let portal_origin = format!("https://{PORTAL_HOST}:{}", ports.lgwan);
    let groupware_origin = format!("https://{GROUPWARE_HOST}:{}", ports.internet);

    let up = Upstreams {
        portal: start_upstream(UpstreamKind::Portal, [127, 0, 10, 11]).await?,
        audit: start_upstream(UpstreamKind::Portal, [127, 0, 10, 13]).await?,
        groupware: start_upstream(UpstreamKind::Groupware, [127, 0, 20, 11]).await?,
    };

    let users = users();
    let origins = [&portal_origin, &groupware_origin];
    let idp = DevIdp::start(DevIdpConfig {
        clients: vec![DevClient {
            client_id: CLIENT_ID.into(),
            client_secret: client_secret.trim().to_owned(),
            redirect_uris: origins
                .iter()
                .map(|o| format!("{o}/.sekisho/callback"))
                .collect(),
            post_logout_redirect_uris: origins
                .iter()
                .map(|o| format!("{o}/.sekisho/logged-out"))
                .collect(),
        }],
        users: users.clone(),
        // Long enough for the printed curl commands to keep working for a while.
        token_ttl: Duration::from_secs(3600),
        ..DevIdpConfig::default()
    })
    .await
    .context("starting the development OpenID provider")?;
    let issuer = idp.issuer();

    let config_path = dir.join("sekisho.yaml");
    std::fs::write(&config_path, gateway_config(&issuer, &ports, &up))?;
    drop(held);
    let running = match sekisho_gateway::server::start(&config_path).await {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("{e}");
            if matches!(e, sekisho_gateway::server::StartError::Bind { .. }) {
                eprintln!(
                    "hint: another program (or another `sekisho demo`) uses that port; \
                     choose others, e.g. --lgwan-port 0 --internet-port 0 --admin-port 0 \
                     (the ports chosen are printed and written to demo.json)"
                );
            }
            idp.shutdown().await;
            return Ok(ExitCode::from(1));
        }
    };
    // The demo upstreams verify the gateway's signed assertion like a real back-end would.
    if let Some(jwks) = running
        .gateway
        .snapshot
        .load()
        .signer
        .as_ref()
        .map(|s| s.jwks_json())
    {
        for (u, aud) in [
            (&up.portal, "portal"),
            (&up.audit, "audit-viewer"),
            (&up.groupware, "groupware"),
        ] {
            u.set_assertion_check(Some(AssertionCheck::new(&jwks, "sekisho", aud)?));
        }
    }

    // Bearer tokens for the curl examples.
    let mut tokens = serde_json::Map::new();
    for u in &users {
        if let Some(t) = idp.mint_tokens(CLIENT_ID, &u.username, true) {
            let path = dir.join("tokens").join(format!("{}.jwt", u.username));
            pki::write_private(&path, t.access_token.as_bytes())?;
            tokens.insert(u.username.clone(), json!(abs(&path)));
        }
    }

    let admin_url = format!("http://{}", running.admin);
    let devdir = pki_dir.join(pki::DEVICES_DIR);
    let mut device_json = serde_json::Map::new();
    for (kind, _, ja, en) in DEVICES {
        let d = match *kind {
            "managed" => &devices.managed,
            "byod" => &devices.byod,
            _ => &devices.revoked,
        };
        if let Some(d) = d {
            device_json.insert(
                (*kind).into(),
                json!({
                    "id": d.id,
                    "serial": d.serial,
                    "not_after": d.not_after.to_string(),
                    "cert": abs(&devdir.join(&d.cert)),
                    "key": abs(&devdir.join(&d.key)),
                    "p12": abs(&devdir.join(&d.p12)),
                    "p12_password": devices.p12_password,
                    "revoked": *kind == "revoked",
                    "description": { "ja": ja, "en": en },
                }),
            );
        }
    }
    let listeners = &running.listeners;
    let info = json!({
        "development_only": true,
        "pid": std::process::id(),
        "started_at": now.to_string(),
        "state_dir": abs(&dir),
        "config": abs(&config_path),
        "policies_dir": abs(&dir.join("policies")),
        "inventory": abs(&dir.join("devices.yaml")),
        "urls": {
            "portal": format!("{portal_origin}/"),
            "audit_viewer": format!("{portal_origin}/audit/"),
            "groupware": format!("{groupware_origin}/"),
            "whoami": format!("{portal_origin}/.sekisho/whoami"),
            "logout": format!("{portal_origin}/.sekisho/logout"),
        },
        "hosts": { "lgwan": PORTAL_HOST, "internet": GROUPWARE_HOST },
        "listeners": {
            "lgwan": listeners.get("lgwan-https").map(|a| a.to_string()),
            "internet": listeners.get("internet-https").map(|a| a.to_string()),
        },
        "ports": { "lgwan": ports.lgwan, "internet": ports.internet, "admin": running.admin.port() },
        "admin": {
            "url": admin_url,
            "metrics": format!("{admin_url}/metrics"),
            "healthz": format!("{admin_url}/healthz"),
            "readyz": format!("{admin_url}/readyz"),
        },
        "idp": { "issuer": issuer, "client_id": CLIENT_ID, "development_only": true },
        "users": users,
        "devices": device_json,
        "ca": {
            "server": abs(&pki_dir.join(pki::SERVER_CA_CERT)),
            "device": abs(&pki_dir.join(pki::DEVICE_CA_CERT)),
            "crl": abs(&pki_dir.join(pki::DEVICE_CA_CRL)),
        },
        "audit_dir": abs(&dir.join("audit")),
        "tokens": tokens,
        "upstreams": {
            "portal": up.portal.url(),
            "audit_viewer": up.audit.url(),
            "groupware": up.groupware.url(),
        },
    });
    let tmp = dir.join("demo.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&info)?)?;
    std::fs::rename(&tmp, &demo_json)?;

    print_banner(&info, &kept);
    crate::cli_serve::wait_and_reload(&running).await?;

    eprintln!("停止しています… / stopping (draining connections, closing the audit trail)…");
    match Arc::try_unwrap(running) {
        Ok(r) => r.shutdown().await,
        Err(_) => tracing::warn!("gateway still referenced; exiting without drain"),
    }
    idp.shutdown().await;
    up.portal.shutdown().await;
    up.audit.shutdown().await;
    up.groupware.shutdown().await;
    eprintln!("停止しました / stopped");
    Ok(ExitCode::SUCCESS)
}

fn s<'a>(v: &'a serde_json::Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or("?")
}

fn print_banner(info: &serde_json::Value, kept_policies: &[String]) {
    let dir = s(info, &["state_dir"]);
    let portal = s(info, &["urls", "portal"]);
    let groupware = s(info, &["urls", "groupware"]);
    let whoami = s(info, &["urls", "whoami"]);
    let ca = s(info, &["ca", "server"]);
    let admin = s(info, &["admin", "url"]);
    let audit = s(info, &["audit_dir"]);
    let lgwan_port = &info["ports"]["lgwan"];
    let dev = |kind: &str, f: &str| s(info, &["devices", kind, f]).to_owned();
    let pw = dev("managed", "p12_password");
    let mut out = String::new();
    let line = "─".repeat(78);
    out.push_str(&format!(
        "\n{line}\n 関所 Sekisho デモ — 開発用 / DEVELOPMENT ONLY (demo users, published passwords, dev CA)\n{line}\n"
    ));
    out.push_str(&format!(
        "\n■ ブラウザーで開く / Open in a browser\n  庁内ポータル (LGWAN接続系)      {portal}\n  グループウェア (インターネット接続系) {groupware}\n  あなたの接続情報 / who am I     {whoami}\n  サインアウト / sign out         {}\n",
        s(info, &["urls", "logout"])
    ));
    out.push_str("\n■ デモ利用者 / Demo users (development OpenID provider: ");
    out.push_str(s(info, &["idp", "issuer"]));
    out.push_str(")\n");
    if let Some(users) = info["users"].as_array() {
        for u in users {
            out.push_str(&format!(
                "  {:<8} {:<10} パスワード/password: {:<13} groups: {:<28} {}\n",
                s(u, &["username"]),
                s(u, &["name"]),
                s(u, &["password"]),
                u["groups"]
                    .as_array()
                    .map(|g| g
                        .iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default(),
                if u["mfa"].as_bool() == Some(true) {
                    "MFA"
                } else {
                    "no MFA"
                },
            ));
        }
    }
    out.push_str(&format!(
        "\n■ 端末証明書 / Device certificates (PKCS#12 password / パスワード: {pw})\n"
    ));
    for (kind, _, ja, en) in DEVICES {
        out.push_str(&format!(
            "  {kind:<8} {:<17} {ja} / {en}\n           {}\n",
            dev(kind, "id"),
            dev(kind, "p12")
        ));
    }
    out.push_str(&format!(
        "\n■ ブラウザーへの取り込み / Importing into a browser\n  \
         1. サーバCAを信頼 / trust the server CA: {ca}\n     \
         Chrome/Edge: 設定 → プライバシーとセキュリティ → セキュリティ → 証明書の管理 → 認証局 → インポート\n     \
         Firefox: 設定 → プライバシーとセキュリティ → 証明書を表示 → 認証局証明書 → インポート\n  \
         2. 端末証明書 (.p12) を「あなたの証明書」に取り込む / import the .p12 under “Your certificates”\n     \
         (password above). Linux/Chromium: pk12util -d sql:$HOME/.pki/nssdb -i {}\n  \
         3. {portal} を開き、証明書を選び、tanaka / tanaka-demo で「ワンタイムパスワード」にチェックしてサインイン\n     \
         open the portal, pick the certificate, sign in as tanaka (tick the one-time password box)\n  \
         BYOD の証明書では同じ利用者でもポータルは拒否され、理由が表示されます / with the BYOD certificate the portal is denied, with the reason\n",
        dev("managed", "p12")
    ));
    let cert = dev("managed", "cert");
    let key = dev("managed", "key");
    let token = s(info, &["tokens", "tanaka"]);
    out.push_str(&format!(
        "\n■ curl\n  \
         # 端末証明書なし → 401 サインインが必要 / no device certificate, no token: 401\n  \
         curl --cacert {ca} {portal}\n  \
         # 端末証明書 + トークン (1時間有効) → 許可 / device certificate + bearer token (valid 1 h): allowed\n  \
         curl --cacert {ca} --cert {cert} --key {key} \\\n       -H \"Authorization: Bearer $(cat {token})\" {portal}\n  \
         # トークンのみ (端末証明書なし) → 403 と理由 / token without the device certificate: 403 with the reasons\n  \
         curl --cacert {ca} -H \"Authorization: Bearer $(cat {token})\" {portal}\n  \
         # *.localhost を解決できない古い curl では / for curl versions that do not resolve *.localhost:\n  \
         curl --resolve {PORTAL_HOST}:{lgwan_port}:127.0.0.1 --cacert {ca} {portal}\n"
    ));
    out.push_str(&format!(
        "\n■ 監査ログ / Audit trail: {audit}\n  \
         sekisho audit verify {audit}\n  \
         sekisho audit query {audit} --decision deny\n\
         \n■ メトリクス / Admin: {admin}/metrics  {admin}/healthz  {admin}/readyz\n\
         \n■ ポリシー / Policies: {dir}/policies (編集すると自動で再読み込み / edits reload automatically)\n  \
         sekisho policy test {dir}/policies\n  \
         sekisho check --config {dir}/sekisho.yaml\n"
    ));
    if !kept_policies.is_empty() {
        out.push_str(&format!(
            "  注意: 編集済みのポリシーをそのまま使います / note: keeping your edited policies/{} (delete a file to get the repository's version back)\n",
            kept_policies.join(", policies/")
        ));
    }
    out.push_str(&format!(
        "\n  スクリプト用 / for scripts: {dir}/demo.json\n  停止: Ctrl-C / stop with Ctrl-C\n{line}\n"
    ));
    println!("{out}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_policies_match_the_repository() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let mut on_disk = Vec::new();
        for sub in ["", "tests"] {
            for e in std::fs::read_dir(root.join(sub)).unwrap() {
                let p = e.unwrap().path();
                if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                    let name = p
                        .strip_prefix(&root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    assert_eq!(
                        std::fs::read_to_string(&p).unwrap(),
                        POLICY_FILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t).unwrap_or_else(
                            || panic!("policies/{name} is not embedded in the demo (cli_demo.rs POLICY_FILES)")
                        ),
                    );
                    on_disk.push(name);
                }
            }
        }
        assert_eq!(on_disk.len(), POLICY_FILES.len());
    }

    #[test]
    fn demo_users_use_the_groups_the_policies_know() {
        let text: String = POLICY_FILES.iter().map(|(_, t)| *t).collect();
        for u in users() {
            for g in &u.groups {
                assert!(
                    text.contains(g.as_str()),
                    "group {g} of {} is in no policy",
                    u.username
                );
            }
        }
    }
}
