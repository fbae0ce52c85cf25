//! `sekisho` — the command-line entry point.
//!
//! Every subcommand lives in its own module; this file only parses arguments and
//! dispatches. `check` and `serve` share one loading path (`sekisho_gateway::load`),
//! so what `check` accepts is exactly what `serve` runs.
#![forbid(unsafe_code)]

mod cli_audit;
mod cli_certs;
mod cli_demo;
mod cli_keys;
mod cli_policy;
mod cli_schema;
mod cli_serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: the gateway allocates many small, short-lived buffers
/// per request on several threads, and glibc's malloc/free were about 16 % of its CPU in the
/// benchmark profile (docs/performance.md, "What was changed").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sekisho",
    version,
    about = "Sekisho (関所): zero-trust access gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(cli_serve::ServeArgs),
    /// Check a configuration (the same loading code `serve` runs); exits 1 on any error.
    Check(cli_serve::CheckArgs),
    /// Policy tools for IT officers: test, explain.
    #[command(subcommand)]
    Policy(cli_policy::PolicyCommand),
    /// Audit trail tools for auditors: verify, query, stats.
    #[command(subcommand)]
    Audit(cli_audit::AuditCommand),
    /// Development certificate tooling: init, issue-device, revoke.
    #[command(subcommand)]
    Certs(cli_certs::CertsCommand),
    /// Generate secrets: session cookie keys, the upstream assertion signing key.
    #[command(subcommand)]
    Keys(cli_keys::KeysCommand),
    /// Print a JSON Schema for editors: config (default), policy, policy-tests.
    Schema(cli_schema::SchemaArgs),
    /// Everything on this machine for a first look: dev CA, dev OpenID provider, demo
    /// upstreams and the gateway (開発用デモ; development only).
    Demo(cli_demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cli_serve::serve(args),
        Command::Check(args) => cli_serve::check(args),
        Command::Policy(cmd) => cli_policy::run(cmd),
        Command::Audit(cmd) => cli_audit::run(cmd),
        Command::Certs(cmd) => cli_certs::run(cmd),
        Command::Demo(args) => cli_demo::run(args),
        Command::Keys(cmd) => cli_keys::run(cmd),
        Command::Schema(args) => cli_schema::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
