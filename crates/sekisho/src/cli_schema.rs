//! `sekisho schema [config|policy|policy-tests]`: the JSON Schemas (draft 2020-12) that
//! editors (yaml-language-server) use to complete and check the YAML an IT officer writes.
//!
//! The committed copies live in `schema/`; refresh them with
//! `sekisho schema config > schema/config.schema.json` (and `policy`, `policy-tests`), or
//! check them with `sekisho schema config --check schema/config.schema.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchemaKind {
    /// The gateway configuration file (sekisho.yaml) → schema/config.schema.json.
    Config,
    /// Policy files → schema/policy.schema.json.
    Policy,
    /// Policy test files → schema/policy-tests.schema.json.
    PolicyTests,
}

#[derive(Args)]
pub struct SchemaArgs {
    /// Which schema to print.
    #[arg(value_enum, default_value = "config")]
    kind: SchemaKind,
    /// Instead of printing, compare with this file; exits 1 when it is stale.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,
}

fn generate(kind: SchemaKind) -> String {
    use sekisho_policy::schema;
    match kind {
        SchemaKind::Config => {
            sekisho_gateway::schema::to_pretty(&sekisho_gateway::schema::config_schema())
        }
        SchemaKind::Policy => schema::to_pretty(&schema::policy_schema()),
        SchemaKind::PolicyTests => schema::to_pretty(&schema::tests_schema()),
    }
}

pub fn run(args: SchemaArgs) -> Result<ExitCode> {
    let text = generate(args.kind);
    match args.check {
        None => {
            use std::io::Write;
            std::io::stdout()
                .lock()
                .write_all(text.as_bytes())
                .context("cannot write the schema to standard output")?;
            Ok(ExitCode::SUCCESS)
        }
        Some(path) => {
            let committed = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if committed == text {
                println!("{}: current", path.display());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "{}: stale — regenerate it with `sekisho schema {} > {}`",
                    path.display(),
                    args.kind
                        .to_possible_value()
                        .map(|v| v.get_name().to_owned())
                        .unwrap_or_default(),
                    path.display()
                );
                Ok(ExitCode::from(1))
            }
        }
    }
}
