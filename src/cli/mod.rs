//! `ringwatch convert` and `ringwatch import`: PBX captures and JSON lines
//! read from files, printed as contract events or sent to a running
//! ringwatch over the WebSocket ingest. The reading is pure ([`convert`],
//! [`jsonl`]); [`import`] is the sender (acknowledgements, resends).

pub mod convert;
pub mod import;
pub mod jsonl;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::sources::{wire, AbandonPolicy, Translate};
use convert::Converted;

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// ringwatch contract events, one object or one array per line.
    Jsonl,
    /// An Asterisk Manager Interface capture (Asterisk 12+ event names).
    AsteriskAmi,
    /// An Asterisk queue_log file.
    AsteriskQueueLog,
    /// A FreeSWITCH event socket capture (mod_callcenter events).
    FreeswitchEsl,
}

/// The platform formats (`convert` takes no JSON lines: they already are
/// contract events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlatformFormat {
    AsteriskAmi,
    AsteriskQueueLog,
    FreeswitchEsl,
}

impl From<PlatformFormat> for Format {
    fn from(f: PlatformFormat) -> Format {
        match f {
            PlatformFormat::AsteriskAmi => Format::AsteriskAmi,
            PlatformFormat::AsteriskQueueLog => Format::AsteriskQueueLog,
            PlatformFormat::FreeswitchEsl => Format::FreeswitchEsl,
        }
    }
}

/// The translator options of a platform source, as flags.
#[derive(Args, Clone, Debug)]
pub struct TranslateArgs {
    /// The `site` label of every call (and part of its ids), as the
    /// source's `site` key would set it.
    #[arg(long)]
    pub site: Option<String>,
    /// How a queue exit that is not the caller hanging up ends the call.
    #[arg(long, default_value = "failed", value_parser = ["failed", "abandoned"])]
    pub abandon_policy: String,
}

impl TranslateArgs {
    pub fn translate(&self) -> Result<Translate, CliError> {
        let site = match self.site.as_deref().map(str::trim) {
            None => None,
            Some(s) if s.is_empty() || s.chars().count() > 64 => {
                return Err(CliError::Usage(format!(
                    "--site must be 1-64 characters, got {s:?}"
                )))
            }
            Some(s) => Some(s.into()),
        };
        let abandon_policy = AbandonPolicy::parse(&self.abandon_policy).ok_or_else(|| {
            CliError::Usage(format!(
                "--abandon-policy {:?}: expected failed or abandoned",
                self.abandon_policy
            ))
        })?;
        Ok(Translate {
            site,
            abandon_policy,
        })
    }
}

#[derive(Args, Clone, Debug)]
pub struct ConvertArgs {
    /// What the file holds.
    #[arg(long, value_enum)]
    pub format: PlatformFormat,
    #[command(flatten)]
    pub translate: TranslateArgs,
    /// Skipped messages listed one by one on stderr (after the counts).
    #[arg(long, default_value_t = 10)]
    pub show_skipped: usize,
    /// The capture (`-` for standard input).
    pub file: PathBuf,
}

#[derive(Args, Clone, Debug)]
pub struct ImportArgs {
    /// What the files hold.
    #[arg(long, value_enum)]
    pub format: Format,
    /// The ringwatch ingest endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:9467/v1/events")]
    pub url: String,
    /// A file holding the bearer token for ingest (when ringwatch has
    /// `ingest.tokens_file`): the token alone, surrounding whitespace
    /// ignored. A file, not an argument, so the token stays out of `ps`.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Events per frame, at most.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
    /// Frames sent ahead of their acknowledgements.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub window: u64,
    /// Largest frame in bytes: keep it at or under the daemon's
    /// `ingest.max_frame_bytes`.
    #[arg(long, default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(256..=67_108_864))]
    pub max_frame_bytes: u64,
    /// Connection attempts in a row that make no progress before giving up.
    #[arg(long, default_value_t = 10)]
    pub retries: u32,
    #[command(flatten)]
    pub translate: TranslateArgs,
    /// Skipped messages and bad lines listed one by one on stderr.
    #[arg(long, default_value_t = 10)]
    pub show_skipped: usize,
    /// The files, read in this order (a platform's files are read as one
    /// capture, so a call may span a rotation).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A wrong flag value (exit 64).
    #[error("{0}")]
    Usage(String),
    #[error("cannot read {path}: {why}")]
    Read { path: String, why: String },
    #[error(transparent)]
    Import(#[from] import::ImportError),
}

impl CliError {
    /// sysexits: EX_USAGE for a wrong flag, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 64,
            _ => 1,
        }
    }
}

/// A file's text (`-`: standard input).
fn read(path: &std::path::Path) -> Result<String, CliError> {
    let err = |why: String| CliError::Read {
        path: path.display().to_string(),
        why,
    };
    let bytes = if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
            .map_err(|e| err(e.to_string()))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| err(e.to_string()))?
    };
    // A capture with a stray byte (a console escape) is still read; the
    // translator skips the message it lands in.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `ringwatch convert`: events on stdout, what was skipped on stderr.
pub fn run_convert(args: &ConvertArgs) -> Result<(), CliError> {
    let translate = args.translate.translate()?;
    let text = read(&args.file)?;
    let name = args.file.display().to_string();
    let converted = convert::platform(args.format.into(), &[(name, text)], &translate);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for ev in &converted.events {
        // A closed pipe (`| head`) ends the output, not with a panic.
        if writeln!(out, "{}", wire::to_json(ev)).is_err() {
            return Ok(());
        }
    }
    let _ = out.flush();
    eprint!("{}", converted.report(args.show_skipped));
    Ok(())
}

/// `ringwatch import`; `Ok(false)` when anything was rejected, could not be
/// read as an event, or was not sent.
pub async fn run_import(args: &ImportArgs) -> Result<bool, CliError> {
    let translate = args.translate.translate()?;
    // Reading and converting is blocking work: off the async workers.
    let (paths, format, token_file) = (args.files.clone(), args.format, args.token_file.clone());
    let (token, converted) = tokio::task::spawn_blocking(move || {
        let token = match &token_file {
            None => None,
            Some(path) => {
                let t = read(path)?;
                let t = t.trim();
                if t.is_empty() {
                    return Err(CliError::Usage(format!(
                        "--token-file {} is empty",
                        path.display()
                    )));
                }
                Some(t.to_string())
            }
        };
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            files.push((path.display().to_string(), read(path)?));
        }
        let converted: Converted = match format {
            Format::Jsonl => jsonl::read_all(&files),
            f => convert::platform(f, &files, &translate),
        };
        Ok((token, converted))
    })
    .await
    .map_err(|e| CliError::Read {
        path: "the files".into(),
        why: e.to_string(),
    })??;
    eprint!("{}", converted.report(args.show_skipped));
    let unsent = converted.unsendable();
    let frames = import::frames(
        &converted.events,
        &converted.origins,
        args.batch as usize,
        args.max_frame_bytes as usize,
    );
    let tty = std::io::stderr().is_terminal();
    let total = converted.events.len();
    let options = import::Options {
        window: args.window as usize,
        retries: args.retries,
    };
    let summary = import::send(&args.url, token.as_deref(), &frames, &options, |s| {
        if tty {
            eprint!(
                "\r{} of {total} events acknowledged ({} accepted, {} duplicates, {} rejected)   ",
                s.acknowledged(),
                s.accepted,
                s.duplicates,
                s.rejected_total()
            );
        }
    })
    .await;
    if tty {
        eprintln!();
    }
    let mut summary = summary?;
    summary.files = converted.files.clone();
    print!("{}", summary.report());
    if unsent > 0 {
        println!("{unsent} lines or elements were not events and were not sent (listed above)");
    }
    let _ = std::io::stdout().flush();
    Ok(summary.rejected_total() == 0 && unsent == 0)
}
