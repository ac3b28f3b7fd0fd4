//! Platform sources: ringwatch reading a PBX in its own protocol (Asterisk
//! AMI and queue_log, FreeSWITCH mod_callcenter over ESL) instead of the
//! JSON contract. Each platform is a module in two parts: a pure
//! translator (platform messages in, [`Event`]s out, owning the per-call
//! correlation) and a transport (TCP or file, login, framing, reconnect).
//!
//! Translated events are encoded back into the contract ([`wire`]) and
//! applied through [`deliver`] exactly as a WebSocket frame: decoded,
//! journaled, de-duplicated by their deterministic [`ids`], and only then
//! taken as delivered.

pub mod asterisk_ami;
pub mod asterisk_queue_log;
pub mod deliver;
pub mod freeswitch_esl;
pub mod ids;
pub mod metrics;
pub mod state;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::event::{EndReason, Event, Label};
use crate::ingest::metrics::{IngestMetrics, SourceHandles};
use crate::pipeline::PipelineHandle;
use metrics::{PlatformHandles, PlatformMetrics, Skip};

/// How a queue exit that is not the caller hanging up (a timeout, an empty
/// queue, a withdraw) ends the call: `abandon_policy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AbandonPolicy {
    /// `call.ended failed` (the default): the system, not the caller, gave
    /// up. The reason is what is recorded; the figures count any call that
    /// ends unanswered, other than a transfer, as abandoned (the event
    /// contract's rule), so both policies give the same counters.
    #[default]
    Failed,
    /// `call.ended abandoned`, as Asterisk itself counts them.
    Abandoned,
}

impl AbandonPolicy {
    pub fn parse(s: &str) -> Option<AbandonPolicy> {
        match s {
            "failed" => Some(AbandonPolicy::Failed),
            "abandoned" => Some(AbandonPolicy::Abandoned),
            _ => None,
        }
    }

    /// The end reason of a non-caller exit under this policy.
    pub fn reason(self) -> EndReason {
        match self {
            AbandonPolicy::Failed => EndReason::Failed,
            AbandonPolicy::Abandoned => EndReason::Abandoned,
        }
    }
}

/// What every translator is configured with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Translate {
    /// `site`: the `site` label of every call, and part of its ids.
    pub site: Option<Label>,
    pub abandon_policy: AbandonPolicy,
}

/// Settings every platform source shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// The `[sources.NAME]` name: the `source` label, and in log lines.
    pub name: String,
    pub translate: Translate,
    pub connect_timeout: Duration,
    /// A live connection with nothing received for `idle_timeout` is
    /// probed (AMI `Ping`, ESL `api status`) every `ping_interval`, and
    /// dropped and reconnected after `idle_timeout`.
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_reset_after: Duration,
    /// The ingest limit: a frame built from translated events stays under it.
    pub max_frame_bytes: usize,
    /// A platform message over this is skipped and counted (`oversized`);
    /// the connection stays up.
    pub max_message_bytes: usize,
}

/// `host:port` of a PBX's TCP interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// `host`, `host:port`, `[v6]:port`; `default_port` when none is given.
    pub fn parse(s: &str, default_port: u16) -> Result<Address, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or("an IPv6 address needs its closing ]")?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err("expected :port after ]".into()),
            }
        } else {
            match s.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (s, None),
            }
        };
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains('/') {
            return Err("expected host:port (no scheme, no path)".into());
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} is not a port (1-65535)"))?,
        };
        Ok(Address {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One configured platform source, its files read.
#[derive(Clone, Debug)]
pub enum Platform {
    AsteriskAmi(asterisk_ami::Settings),
    AsteriskQueueLog(asterisk_queue_log::Settings),
    FreeswitchEsl(freeswitch_esl::Settings),
}

impl Platform {
    pub fn common(&self) -> &Common {
        match self {
            Platform::AsteriskAmi(s) => &s.common,
            Platform::AsteriskQueueLog(s) => &s.common,
            Platform::FreeswitchEsl(s) => &s.common,
        }
    }
}

/// What a source task is given besides its settings.
#[derive(Clone)]
pub struct Context {
    pub pipeline: PipelineHandle,
    pub ingest: Arc<IngestMetrics>,
    /// The connection series every client-mode source has
    /// (`ringwatch_source_connected`, attempts, disconnects...).
    pub connection: SourceHandles,
    pub platform: PlatformHandles,
    /// `durability.dir`, when durability is on: where a file source keeps
    /// its read position.
    pub data_dir: Option<PathBuf>,
    pub cancel: CancellationToken,
}

/// One task per platform source, for the daemon to spawn and supervise;
/// every source's series exist (at 0) when this returns.
pub fn tasks(
    sources: &[Platform],
    pipeline: &PipelineHandle,
    ingest: &Arc<IngestMetrics>,
    platform: &PlatformMetrics,
    data_dir: Option<PathBuf>,
    cancel: &CancellationToken,
) -> Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>> {
    sources
        .iter()
        .map(|s| {
            let name = s.common().name.as_str();
            let ctx = Context {
                pipeline: pipeline.clone(),
                ingest: Arc::clone(ingest),
                connection: ingest.sources.declare(name),
                platform: platform.declare(name),
                data_dir: data_dir.clone(),
                cancel: cancel.clone(),
            };
            let task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = match s {
                Platform::AsteriskAmi(s) => Box::pin(asterisk_ami::run(s.clone(), ctx)),
                Platform::AsteriskQueueLog(s) => Box::pin(asterisk_queue_log::run(s.clone(), ctx)),
                Platform::FreeswitchEsl(s) => Box::pin(freeswitch_esl::run(s.clone(), ctx)),
            };
            task
        })
        .collect()
}

/// A file or capture turned into events (`ringwatch convert`, `import`).
#[derive(Debug, Default)]
pub struct Converted {
    pub events: Vec<Event>,
    pub skipped: Vec<Skipped>,
}

/// One line or message of a capture that made no event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line where the message starts.
    pub line: usize,
    pub reason: Skip,
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_a_default_port() {
        let a = Address::parse("pbx.example.com", 5038).unwrap();
        assert_eq!((a.host.as_str(), a.port), ("pbx.example.com", 5038));
        assert_eq!(Address::parse("10.0.0.5:5039", 5038).unwrap().port, 5039);
        let v6 = Address::parse("[::1]:8021", 5038).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8021));
        assert_eq!(v6.to_string(), "[::1]:8021");
        assert_eq!(Address::parse("::1", 8021).unwrap().host, "::1");
        for bad in ["", "host:0", "host:99999", "tcp://host:1", "host:x", "[::1"] {
            assert!(Address::parse(bad, 1).is_err(), "{bad}");
        }
    }
}
