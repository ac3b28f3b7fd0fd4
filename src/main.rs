//! The `ringwatch` binary: parses the command line, loads and validates the
//! configuration and reads the files it names (exit 64 when either is bad),
//! and runs the daemon until a signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use ringwatch::config::{Config, ConfigError, Files, Validated};
use ringwatch::health::Fatal;

/// sysexits EX_CONFIG... EX_USAGE (64): the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(version, about = "Real-time call-center service-level monitor")]
struct Cli {
    /// Configuration file (TOML), layered over the built-in defaults.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Run,
    /// Validate the configuration and exit (0 when valid, 64 when not).
    CheckConfig,
    /// Run the daemon with a simulated call center at a human pace.
    Demo(ringwatch::demo::DemoArgs),
    /// Push a simulated call center to a running ringwatch (and verify it).
    Simulate(ringwatch::sim::run::SimulateArgs),
    /// Print the ringwatch events a PBX capture makes (JSON lines on
    /// stdout; what was skipped, and why, on stderr).
    Convert(ringwatch::cli::ConvertArgs),
    /// Send files (JSON lines or PBX captures) to a running ringwatch,
    /// with acknowledgements and resends; importing twice counts nothing twice.
    Import(ringwatch::cli::ImportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let (cfg, files) = match configure(cli.config.as_deref(), env) {
        Ok(configured) => configured,
        Err(e) => {
            eprintln!("ringwatch: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("configuration is valid");
            ExitCode::SUCCESS
        }
        Command::Run => match run(cfg, files) {
            Ok(None) => ExitCode::SUCCESS,
            // Logged by the daemon; the status tells systemd or Kubernetes
            // to restart it (recovery from the journal makes that lossless).
            Ok(Some(fatal)) => {
                eprintln!("ringwatch: {fatal}");
                ExitCode::from(fatal.exit_code())
            }
            Err(e) => finish(Err(e)),
        },
        Command::Demo(args) => finish(demo(cfg, files, args)),
        Command::Simulate(args) => match simulate(cfg, args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => finish(Err(e)),
        },
        Command::Convert(args) => cli_exit(ringwatch::cli::run_convert(&args).map(|()| true)),
        Command::Import(args) => match runtime() {
            Ok(rt) => cli_exit(rt.block_on(ringwatch::cli::run_import(&args))),
            Err(e) => finish(Err(e)),
        },
    }
}

/// `convert` and `import`: 0, 1 when something was not taken, or the
/// error's own code (64 for a wrong flag).
fn cli_exit(result: Result<bool, ringwatch::cli::CliError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ringwatch: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Load, validate, then read the files the configuration names: all before
/// any port is bound, and for every command (so `check-config` checks the
/// files too).
fn configure(
    file: Option<&Path>,
    env: impl Iterator<Item = (String, String)>,
) -> Result<(Validated, Files), ConfigError> {
    let cfg = Config::load(file, env)?.validate()?;
    let files = cfg.read_files()?;
    Ok((cfg, files))
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringwatch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the tokio runtime")
}

fn demo(mut cfg: Validated, files: Files, args: ringwatch::demo::DemoArgs) -> anyhow::Result<()> {
    // The demo talks to the user on stdout; logs only when something is wrong.
    cfg.log.level = "warn".to_string();
    ringwatch::logging::init(&cfg.log);
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        ringwatch::shutdown::cancel_on_signals(shutdown.clone());
        ringwatch::demo::run(cfg, files, &args, shutdown).await?;
        Ok(())
    })
}

fn simulate(cfg: Validated, args: ringwatch::sim::run::SimulateArgs) -> anyhow::Result<bool> {
    runtime()?.block_on(async { Ok(ringwatch::sim::run::simulate(&args, &cfg).await?) })
}

/// Run the daemon until it stops; `Some` names the fatal failure it
/// stopped for.
fn run(cfg: Validated, files: Files) -> anyhow::Result<Option<Fatal>> {
    ringwatch::logging::init(&cfg.log);
    let rt = runtime()?;
    let stopped = rt.block_on(async {
        let shutdown = CancellationToken::new();
        ringwatch::shutdown::cancel_on_signals(shutdown.clone());
        let running = ringwatch::daemon::start(cfg, files, shutdown).await?;
        anyhow::Ok(running.wait().await.err())
    });
    // The drain is over: whatever task is left (a connection that never
    // drained) is dropped, not waited for.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    stopped
}
