//! `sekisho certs …` subcommands. Owned by the sekisho-posture crate's work.
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum CertsCommand {}

pub fn run(cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    match cmd {}
}
