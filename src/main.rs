//! The `ringwatch` binary: parses the command line, loads and validates the
//! configuration (exit 64 when it is bad), and runs the daemon until a signal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use ringwatch::config::{Config, Validated};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let cfg = match Config::load(cli.config.as_deref(), env).and_then(|c| c.validate()) {
        Ok(cfg) => cfg,
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
        Command::Run => match run(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringwatch: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(cfg: Validated) -> anyhow::Result<()> {
    ringwatch::logging::init(&cfg.log);
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        ringwatch::shutdown::cancel_on_signals(shutdown.clone());
        let running = ringwatch::daemon::start(cfg, shutdown).await?;
        running.wait().await;
        Ok(())
    })
}
