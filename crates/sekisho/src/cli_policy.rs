//! `sekisho policy …`: the IT officer's tools around `sekisho-policy`.
//!
//! * `policy check [DIR]`   — compile every policy file, print all errors and warnings and the version
//! * `policy test [DIR]`    — run the YAML test cases in `DIR/tests` against the policies in `DIR`
//! * `policy explain …`     — the full evaluation trace of one hypothetical request
//! * `policy schema`        — the JSON Schema of policy files (`--tests`: of test files)
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use sekisho_policy::testing::{CaseTarget, Scenario, TestSuite, load_scenario, no_routes};
use sekisho_policy::{
    Certificate, Device, Fact, Identity, Ownership, PolicySet, Request, Target, schema,
};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Compile the policies in DIR (default `policies`) and report every problem.
    Check {
        #[arg(default_value = "policies")]
        dir: PathBuf,
    },
    /// Run the test cases in DIR/tests against the policies in DIR.
    ///
    /// Prints one line per failed case, then `N passed, N failed`; exits 1 on any failure.
    Test {
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// Directory of test files (default DIR/tests).
        #[arg(long)]
        tests: Option<PathBuf>,
        /// Gateway configuration: test the policies it loads and resolve `route:` cases
        /// through its routes (zone floor included).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the evaluation trace of one hypothetical request.
    Explain(Box<ExplainArgs>),
    /// Print the JSON Schema of policy files (committed at schema/policy.schema.json).
    Schema {
        /// The schema of policy test files instead.
        #[arg(long)]
        tests: bool,
    },
}

/// The request to explain: a scenario file (`--input`, same keys as a test case), a
/// case from a test file (`--case-file` + `--case`), or flags.
#[derive(Args)]
pub struct ExplainArgs {
    /// Policy directory.
    #[arg(long, default_value = "policies")]
    dir: PathBuf,
    /// Gateway configuration: use the policies it loads; without --policy, decide as
    /// the gateway would for the route given by --route (or the scenario's `route:`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Route policy to decide against.
    #[arg(long)]
    policy: Option<String>,
    /// Zone floor policy, AND-ed with --policy.
    #[arg(long)]
    floor: Option<String>,
    /// YAML or JSON file with one scenario (keys as in a test case).
    #[arg(long, conflicts_with = "case_file")]
    input: Option<PathBuf>,
    /// Test file to take a case from (with --case).
    #[arg(long, requires = "case")]
    case_file: Option<PathBuf>,
    /// Name of the case in --case-file.
    #[arg(long)]
    case: Option<String>,
    /// Time of the request (RFC 3339, e.g. 2026-04-14T10:00:00+09:00).
    #[arg(long)]
    at: Option<String>,
    /// Signed-in user's subject; without it the request is not signed in.
    #[arg(long)]
    sub: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// Group (repeat for several).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// amr value (repeat), e.g. --amr pwd --amr otp.
    #[arg(long = "amr")]
    amr: Vec<String>,
    #[arg(long)]
    acr: Option<String>,
    /// When the user signed in (RFC 3339).
    #[arg(long)]
    auth_time: Option<String>,
    /// Claim as NAME=VALUE (repeat); VALUE is JSON if it parses, else a string.
    #[arg(long = "claim")]
    claims: Vec<String>,
    /// Verified device certificate ID; without it (or --invalid-cert) there is no certificate.
    #[arg(long)]
    device_id: Option<String>,
    /// The certificate was presented but is invalid for this reason (expired, revoked…).
    #[arg(long, conflicts_with = "device_id")]
    invalid_cert: Option<String>,
    #[arg(long)]
    managed: Option<bool>,
    #[arg(long)]
    compliant: Option<bool>,
    /// corporate or byod.
    #[arg(long)]
    ownership: Option<String>,
    #[arg(long)]
    os: Option<String>,
    #[arg(long)]
    os_version: Option<String>,
    #[arg(long)]
    disk_encryption: Option<bool>,
    #[arg(long)]
    screen_lock: Option<bool>,
    #[arg(long)]
    firewall: Option<bool>,
    #[arg(long)]
    antivirus: Option<bool>,
    #[arg(long)]
    edr: Option<bool>,
    /// Last MDM check-in (RFC 3339).
    #[arg(long)]
    last_check_in: Option<String>,
    /// Device tag (repeat).
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long, default_value = "GET")]
    method: String,
    #[arg(long, default_value = "/")]
    path: String,
    #[arg(long, default_value = "sekisho.example")]
    host: String,
    #[arg(long, default_value = "")]
    zone: String,
    #[arg(long, default_value = "")]
    route: String,
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: IpAddr,
}

pub fn run(cmd: PolicyCommand) -> Result<ExitCode> {
    match cmd {
        PolicyCommand::Check { dir } => check(&dir),
        PolicyCommand::Test { dir, tests, config } => {
            let tests = tests.unwrap_or_else(|| dir.join("tests"));
            test(&dir, &tests, config.as_deref())
        }
        PolicyCommand::Explain(args) => explain(&args),
        PolicyCommand::Schema { tests } => {
            let s = if tests {
                schema::tests_schema()
            } else {
                schema::policy_schema()
            };
            out(&schema::to_pretty(&s));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// `(path, text)` of every `*.yaml` / `*.yml` directly in `dir`, sorted by name.
fn read_yaml_dir(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot read directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let text =
                fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p.display().to_string(), text))
        })
        .collect()
}

/// Compile the policies in `dir`; diagnostics go to stderr.
fn load(dir: &Path) -> Result<Option<PolicySet>> {
    let files = read_yaml_dir(dir)?;
    if files.is_empty() {
        bail!("no policy files (*.yaml) in {}", dir.display());
    }
    match PolicySet::compile(&files) {
        Ok((set, warnings)) => {
            if !warnings.is_empty() {
                eprint!("{}", sekisho_yaml::render_all(&warnings));
            }
            Ok(Some(set))
        }
        Err(diags) => {
            eprint!("{}", sekisho_yaml::render_all(&diags));
            Ok(None)
        }
    }
}

/// The policies a gateway configuration loads, and its routes' targets by name.
struct FromConfig {
    set: std::sync::Arc<PolicySet>,
    routes: std::collections::HashMap<String, Target>,
}

fn load_config(path: &Path) -> Result<Option<FromConfig>> {
    let config = match sekisho_gateway::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return Ok(None);
        }
    };
    if !config.warnings.is_empty() {
        eprint!("{}", sekisho_yaml::render_all(&config.warnings));
    }
    let Some(set) = config.policies.clone() else {
        bail!(
            "{} loads no policies (`policies:` is missing)",
            path.display()
        );
    };
    let routes = config
        .routes
        .iter()
        .filter_map(|r| r.target.map(|t| (r.name.clone(), t)))
        .collect();
    Ok(Some(FromConfig { set, routes }))
}

fn check(dir: &Path) -> Result<ExitCode> {
    let Some(set) = load(dir)? else {
        return Ok(ExitCode::FAILURE);
    };
    println!("{} policies, version {}", set.len(), set.version());
    for name in set.policy_names() {
        let id = set.lookup(name).context("policy vanished")?;
        let note = if set.admits_anonymous(id) {
            "  (admits requests without sign-in: routes using it must be marked public)"
        } else {
            ""
        };
        println!("  {name}{note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn test(dir: &Path, tests: &Path, config: Option<&Path>) -> Result<ExitCode> {
    let from_config = match config {
        Some(path) => match load_config(path)? {
            Some(c) => Some(c),
            None => {
                eprintln!("policy test: the configuration does not load; no case was run");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => None,
    };
    let loaded = match &from_config {
        Some(c) => Some(c.set.clone()),
        None => load(dir)?.map(std::sync::Arc::new),
    };
    let Some(set) = loaded else {
        eprintln!("policy test: the policies do not compile; no case was run");
        return Ok(ExitCode::FAILURE);
    };
    let files = read_yaml_dir(tests)?;
    if files.is_empty() {
        bail!("no test files (*.yaml) in {}", tests.display());
    }
    let suite = match TestSuite::load(&files) {
        Ok(s) => s,
        Err(diags) => {
            eprint!("{}", sekisho_yaml::render_all(&diags));
            return Ok(ExitCode::FAILURE);
        }
    };
    // `route:` cases need the gateway configuration (--config); without it they fail
    // with "unknown route".
    let report = match &from_config {
        Some(c) => suite.run(&set, &|route: &str| c.routes.get(route).copied()),
        None => suite.run(&set, &no_routes),
    };
    out(&report.to_string());
    Ok(if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn timestamp(s: &str, what: &str) -> Result<jiff::Timestamp> {
    s.parse().with_context(|| {
        format!("--{what}: `{s}` is not an RFC 3339 time such as 2026-04-14T10:00:00+09:00")
    })
}

fn scenario_from_flags(a: &ExplainArgs) -> Result<Scenario> {
    let now = match &a.at {
        Some(s) => timestamp(s, "at")?,
        None => {
            bail!("--at is required (time is always an input), e.g. --at 2026-04-14T10:00:00+09:00")
        }
    };
    let identity = match &a.sub {
        None => None,
        Some(sub) => {
            let mut claims = serde_json::Map::new();
            for c in &a.claims {
                let (k, v) = c
                    .split_once('=')
                    .with_context(|| format!("--claim `{c}`: write NAME=VALUE"))?;
                let value =
                    serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
                claims.insert(k.to_string(), value);
            }
            Some(Identity {
                sub: sub.clone(),
                email: a.email.clone(),
                name: None,
                groups: a.groups.clone(),
                amr: a.amr.clone(),
                acr: a.acr.clone(),
                auth_time: a
                    .auth_time
                    .as_deref()
                    .map(|s| timestamp(s, "auth-time"))
                    .transpose()?,
                claims,
            })
        }
    };
    let known = |v: Option<bool>| v.map_or(Fact::Unknown, |b| Fact::known(b, now));
    let certificate = match (&a.device_id, &a.invalid_cert) {
        (Some(id), _) => Certificate::Present {
            id: id.clone(),
            fingerprint: String::new(),
        },
        (None, Some(reason)) => Certificate::Invalid {
            reason: reason.clone(),
        },
        (None, None) => Certificate::Absent,
    };
    let ownership = match a.ownership.as_deref() {
        None => Fact::Unknown,
        Some("corporate") => Fact::known(Ownership::Corporate, now),
        Some("byod") => Fact::known(Ownership::Byod, now),
        Some(other) => bail!("--ownership `{other}`: corporate or byod"),
    };
    let device = Device {
        certificate,
        managed: known(a.managed),
        ownership,
        compliant: known(a.compliant),
        os: a.os.clone().map_or(Fact::Unknown, |v| Fact::known(v, now)),
        os_version: a
            .os_version
            .clone()
            .map_or(Fact::Unknown, |v| Fact::known(v, now)),
        disk_encryption: known(a.disk_encryption),
        screen_lock: known(a.screen_lock),
        firewall: known(a.firewall),
        antivirus: known(a.antivirus),
        edr: known(a.edr),
        last_check_in: match &a.last_check_in {
            Some(s) => Fact::known(timestamp(s, "last-check-in")?, now),
            None => Fact::Unknown,
        },
        tags: if a.tags.is_empty() {
            Fact::Unknown
        } else {
            Fact::known(a.tags.clone(), now)
        },
    };
    Ok(Scenario {
        identity,
        device: Some(device),
        request: Request {
            method: a.method.to_ascii_uppercase().into(),
            host: a.host.clone().into(),
            path: a.path.clone().into(),
            zone: a.zone.clone().into(),
            route: a.route.clone().into(),
            source_ip: a.source_ip,
        },
        now,
    })
}

fn explain(a: &ExplainArgs) -> Result<ExitCode> {
    let from_config = match &a.config {
        Some(path) => match load_config(path)? {
            Some(c) => Some(c),
            None => return Ok(ExitCode::FAILURE),
        },
        None => None,
    };
    let loaded = match &from_config {
        Some(c) => Some(c.set.clone()),
        None => load(&a.dir)?.map(std::sync::Arc::new),
    };
    let Some(set) = loaded else {
        return Ok(ExitCode::FAILURE);
    };
    let (case_target, scenario) = if let Some(file) = &a.input {
        let text =
            fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        match load_scenario(&file.display().to_string(), &text) {
            Ok((t, s)) => (Some(t), s),
            Err(diags) => {
                eprint!("{}", sekisho_yaml::render_all(&diags));
                return Ok(ExitCode::FAILURE);
            }
        }
    } else if let Some(file) = &a.case_file {
        let text =
            fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let suite = match TestSuite::load(&[(file.display().to_string(), text)]) {
            Ok(s) => s,
            Err(diags) => {
                eprint!("{}", sekisho_yaml::render_all(&diags));
                return Ok(ExitCode::FAILURE);
            }
        };
        let name = a.case.as_deref().unwrap_or_default();
        let case = suite
            .cases
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("no case named `{name}` in {}", file.display()))?;
        (Some(case.target.clone()), case.scenario.clone())
    } else {
        (None, scenario_from_flags(a)?)
    };

    // Flags override the scenario's target; a route is resolved through --config.
    let route_target = |r: &str| -> Result<Target> {
        let Some(c) = &from_config else {
            bail!(
                "route `{r}`: route targets need the gateway configuration (--config); or give --policy (and --floor)"
            )
        };
        c.routes.get(r).copied().with_context(|| {
            let mut names: Vec<&str> = c.routes.keys().map(String::as_str).collect();
            names.sort();
            format!("no policy route named `{r}`; routes: {}", names.join(", "))
        })
    };
    let (policy, floor) = match (&a.policy, case_target) {
        (Some(p), _) => (p.clone(), a.floor.clone()),
        (None, Some(CaseTarget::Policy { policy, floor })) => (policy, a.floor.clone().or(floor)),
        (None, Some(CaseTarget::Route(r))) => {
            let target = route_target(&r)?;
            out(&set.explain(target, &scenario.input()).to_string());
            return Ok(ExitCode::SUCCESS);
        }
        (None, None) if from_config.is_some() && !a.route.is_empty() => {
            let target = route_target(&a.route)?;
            out(&set.explain(target, &scenario.input()).to_string());
            return Ok(ExitCode::SUCCESS);
        }
        (None, None) => bail!("--policy is required (or --config with --route)"),
    };
    let lookup = |name: &str| {
        set.lookup(name).with_context(|| {
            let names: Vec<&str> = set.policy_names().collect();
            format!("unknown policy `{name}`; policies: {}", names.join(", "))
        })
    };
    let target = Target {
        floor: floor.as_deref().map(lookup).transpose()?,
        policy: lookup(&policy)?,
    };
    out(&set.explain(target, &scenario.input()).to_string());
    Ok(ExitCode::SUCCESS)
}
