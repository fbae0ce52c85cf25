//! `sekisho policy …` subcommands. Owned by the sekisho-policy crate's work.
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum PolicyCommand {}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
