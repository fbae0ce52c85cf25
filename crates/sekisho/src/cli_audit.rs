//! `sekisho audit …` subcommands. Owned by the sekisho-audit crate's work.
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum AuditCommand {}

pub fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
