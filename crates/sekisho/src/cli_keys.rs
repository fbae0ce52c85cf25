//! `sekisho keys …`: secrets an operator needs, printed to standard output so they can be
//! redirected into a file with the right permissions (`umask 077`).
use std::process::ExitCode;

use base64::Engine;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// A session cookie key line (`id:base64`) for `identity.session.cookie_keys_file`.
    /// Put the new line first to rotate; remove the old line once sessions have expired.
    Cookie {
        /// Key name, shown in logs (never secret).
        #[arg(long)]
        id: Option<String>,
    },
    /// An EC P-256 private key (PKCS#8 PEM) for `identity.assertion.key_file`.
    Assertion,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Cookie { id } => {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
            let id =
                id.unwrap_or_else(|| format!("k{}", jiff::Timestamp::now().strftime("%Y%m%d")));
            println!(
                "{id}:{}",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            );
        }
        KeysCommand::Assertion => {
            let (_, pem) = sekisho_identity::AssertionSigner::generate(
                "sekisho",
                std::time::Duration::from_secs(60),
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            print!("{pem}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
