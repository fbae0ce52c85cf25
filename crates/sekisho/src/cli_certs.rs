//! `sekisho certs …` subcommands: a development device CA, device certificates (PEM and
//! PKCS#12) and revocation. The work is done by `sekisho_posture::pki`; this file only parses
//! arguments and prints what happened.
//!
//! For production, use the municipality's existing PKI and point the gateway at its CA and
//! CRL files (see certs/README.md).
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{ArgGroup, Subcommand};
use jiff::{SignedDuration, Timestamp};
use sekisho_posture::pki::{self, InitOptions, IssueOptions, RevokeTarget};

const DEFAULT_DIR: &str = "certs/dev";

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Create a development device CA, a server CA and certificate for the demo hosts, and an
    /// empty CRL in DIR (開発用の端末CA・サーバ証明書・空のCRLを作成).
    Init {
        /// Directory to write into (created if missing).
        #[arg(default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Host name or IP address for the server certificate; repeat for several.
        /// Default: portal.lgwan.localhost, groupware.localhost, *.localhost, localhost, 127.0.0.1, ::1.
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// Organisation name in the CA certificates.
        #[arg(long, default_value = "Sekisho development")]
        organization: String,
        /// Replace an existing CA (every device certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a device certificate and a PKCS#12 bundle a browser can import (端末証明書の発行).
    IssueDevice {
        /// Device ID, as in the MDM inventory (e.g. PC-0042). Goes into the SAN URI urn:sekisho:device:ID.
        #[arg(long)]
        id: String,
        /// Directory made by `certs init`.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
        /// Validity in days (used when --not-after is not given).
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Start of validity, RFC 3339 (e.g. 2026-04-01T00:00:00+09:00). Default: one hour ago.
        #[arg(long)]
        not_before: Option<Timestamp>,
        /// End of validity, RFC 3339. Default: not-before + days.
        #[arg(long)]
        not_after: Option<Timestamp>,
        /// Password for the .p12 bundle. Default: a random one, printed once.
        #[arg(long, env = "SEKISHO_P12_PASSWORD", hide_env_values = true)]
        p12_password: Option<String>,
        /// Use 3DES/SHA-1 in the .p12 for old importers (older macOS, Windows 7).
        #[arg(long)]
        p12_legacy: bool,
        /// SAN URI prefix before the device ID.
        #[arg(long, default_value = sekisho_posture::identity::DEFAULT_URI_PREFIX)]
        uri_prefix: String,
    },
    /// Revoke device certificates and regenerate the CRL (端末証明書の失効).
    #[command(group(ArgGroup::new("target").required(true).args(["serial", "id"])))]
    Revoke {
        /// Serial number in hex (colons allowed), as printed by issue-device.
        #[arg(long)]
        serial: Option<String>,
        /// Revoke every certificate issued to this device ID.
        #[arg(long)]
        id: Option<String>,
        /// Directory made by `certs init`.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

pub fn run(cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    // The command line is the edge: this is the one place that reads the clock.
    let now = Timestamp::now();
    match cmd {
        CertsCommand::Init {
            dir,
            hosts,
            organization,
            force,
        } => {
            let mut opts = InitOptions::new(now);
            if !hosts.is_empty() {
                opts.server_hosts = hosts;
            }
            opts.organization = organization;
            opts.force = force;
            let report =
                pki::init(&dir, &opts).with_context(|| format!("certs init {}", dir.display()))?;
            println!("created / 作成しました:");
            for f in &report.files {
                println!("  {}", f.display());
            }
            println!("server certificate hosts: {}", opts.server_hosts.join(", "));
            println!(
                "next: sekisho certs issue-device --dir {} --id PC-0042\n\
                 private keys (*.key) are mode 0600; never commit them / 秘密鍵はコミットしないでください",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::IssueDevice {
            id,
            dir,
            days,
            not_before,
            not_after,
            p12_password,
            p12_legacy,
            uri_prefix,
        } => {
            let (password, generated) = match p12_password {
                Some(p) => (p, false),
                None => (pki::random_password()?, true),
            };
            let mut opts = IssueOptions::new(now, password.clone());
            opts.validity = SignedDuration::from_hours(i64::from(days) * 24);
            opts.not_before = not_before;
            opts.not_after = not_after;
            opts.p12_legacy = p12_legacy;
            opts.uri_prefix = uri_prefix;
            let issued = pki::issue_device(&dir, &id, &opts)
                .with_context(|| format!("certs issue-device --id {id}"))?;
            println!("device / 端末:      {}", issued.id);
            println!("serial / シリアル:  {}", issued.serial_hex);
            println!(
                "valid / 有効期間:   {} … {}",
                issued.not_before, issued.not_after
            );
            println!("certificate:       {}", issued.cert_path.display());
            println!("private key:       {}", issued.key_path.display());
            println!("PKCS#12 bundle:    {}", issued.p12_path.display());
            if generated {
                println!("PKCS#12 password / パスワード (shown once / 一度だけ表示): {password}");
            }
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Revoke { serial, id, dir } => {
            let target = match (serial, id) {
                (Some(s), _) => RevokeTarget::Serial(s),
                (None, Some(i)) => RevokeTarget::DeviceId(i),
                (None, None) => anyhow::bail!("give --serial or --id"),
            };
            let newly = pki::revoke(&dir, &target, now).context("certs revoke")?;
            if newly.is_empty() {
                println!("already revoked / 失効済みです");
            }
            for s in &newly {
                println!("revoked / 失効: {s}");
            }
            println!(
                "CRL written / CRLを更新しました: {}\n\
                 the gateway reloads it on change; revoked devices lose access on their next request",
                dir.join(pki::DEVICE_CA_CRL).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
