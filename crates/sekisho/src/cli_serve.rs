//! `sekisho serve` and `sekisho check`: both go through `Snapshot::load`, so `check`
//! accepts exactly what `serve` would run.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use sekisho_gateway::config::{LogFormat, Logging};
use sekisho_gateway::snapshot::Snapshot;

#[derive(Args)]
pub struct ServeArgs {
    /// The gateway configuration file.
    #[arg(
        long,
        short,
        env = "SEKISHO_CONFIG",
        default_value = "config/sekisho.yaml"
    )]
    pub config: PathBuf,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The gateway configuration file.
    #[arg(
        long,
        short,
        env = "SEKISHO_CONFIG",
        default_value = "config/sekisho.yaml"
    )]
    pub config: PathBuf,
}

/// `sekisho check`: prints every error and warning with file:line:column and a hint.
pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    match Snapshot::load(&args.config) {
        Ok(snap) => {
            let c = &snap.config;
            for w in &c.warnings {
                eprintln!("{w}");
            }
            println!(
                "{}: OK — {} zone(s), {} listener(s), {} route(s); configuration version {}",
                args.config.display(),
                c.zones.len(),
                c.listeners.len(),
                c.routes.len(),
                c.version
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprint!("{e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub fn init_logging(logging: &Logging) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SEKISHO_LOG").unwrap_or_else(|_| EnvFilter::new(&logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match logging.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// `sekisho serve`: runs until SIGTERM or Ctrl-C; SIGHUP and file changes reload.
pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Logging settings come from the configuration; errors in it are printed plainly.
    let logging = match sekisho_gateway::config::load(&args.config) {
        Ok(c) => c.logging.clone(),
        Err(e) => {
            eprint!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    init_logging(&logging);
    let rt = runtime()?;
    let code = rt.block_on(run(&args.config));
    // Dropping a runtime waits for its blocking threads for ever; the audit writer's may be
    // stuck in an fsync the disk never answers (the stop above has already given up on it).
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}

/// The gateway's scheduler. With one CPU to run on (a 1-vCPU VM, a container limited to one
/// CPU, `taskset`) the current-thread scheduler: a multi-thread runtime would have one worker
/// anyway, and pay for work stealing, cross-thread wake-ups and their atomics on every task.
/// Measured on one pinned CPU, same binary, alternating runs: +15 % req/s on a public route,
/// +27 % with full checks (docs/performance.md). With more CPUs, one worker per CPU.
/// Blocking work (the audit writer, DNS) runs on the blocking pool in both cases.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tracing::info!("one CPU available: current-thread scheduler");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tracing::info!(workers = cpus, "multi-thread scheduler");
        tokio::runtime::Runtime::new()
    }
}

async fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let running = match sekisho_gateway::server::start(config).await {
        Ok(r) => Arc::new(r),
        Err(e) => {
            tracing::error!("gateway did not start:\n{e}");
            eprint!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    wait_and_reload(&running).await?;
    tracing::info!("shutting down: draining connections");
    match Arc::try_unwrap(running) {
        Ok(r) => r.shutdown().await,
        Err(_) => tracing::warn!("gateway still referenced; exiting without drain"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs until SIGTERM or Ctrl-C; SIGHUP and changes to any file the configuration reads
/// (policies, certificates, CRLs, inventory, keys) reload it. Shared by `serve` and `demo`.
pub async fn wait_and_reload(
    running: &Arc<sekisho_gateway::server::Running>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    let watch = |running: &sekisho_gateway::server::Running| {
        let watch_tx = tx.clone();
        match sekisho_gateway::server::watch_files(running, move || {
            let _ = watch_tx.try_send("file change");
        }) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch configuration files; reload with SIGHUP");
                None
            }
        }
    };
    let mut watcher = watch(running);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => { let _ = tx.try_send("SIGHUP"); }
            Some(why) = rx.recv() => {
                tracing::info!(trigger = why, "reloading configuration");
                // What the watched files look like before the reload reads them.
                let before = watcher.as_ref().map(|w| w.state());
                // Off the runtime: with one CPU this task's thread is the only one serving
                // requests, and a reload parses and builds everything again.
                let r = running.clone();
                let reloaded = tokio::task::spawn_blocking(move || r.reload().is_ok())
                    .await
                    .unwrap_or(false);
                // Watch what the new configuration reads: it may name other files, and a
                // swapped symlink now leads to another file in another folder. The new watcher
                // starts before the old one is looked at and replaced (its pending events are
                // dropped with it); the old one stays if the new one cannot start.
                let next = if reloaded { watch(running) } else { None };
                // A change made while the reload ran may have been read half-way or gone to
                // the old watcher: if the old watcher's paths differ from before, reload once
                // more.
                let changed = watcher
                    .as_ref()
                    .zip(before)
                    .is_some_and(|(w, before)| w.state() != before);
                if next.is_some() {
                    watcher = next;
                }
                if changed {
                    let _ = tx.try_send("file change during reload");
                }
            }
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}
