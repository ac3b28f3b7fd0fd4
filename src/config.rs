//! Configuration: typed, layered (built-in `config/default.toml`, then
//! `--config FILE`, then `RINGWATCH__SECTION__KEY` environment variables) and
//! validated before anything is bound. Every error names the key.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use config::{Environment, File, FileFormat};
use serde::Deserialize;

use crate::auth::TokenFile;
use crate::event::Millis;
use crate::ingest::throttle::RateLimit;
use crate::metrics::BucketConfig;
use crate::rules::{ClockMode, Limits, Settings};
use crate::tls::{TlsError, TlsFiles};

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: `{key}` {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub ingest: IngestConfig,
    pub http: HttpConfig,
    pub rules: RulesConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub alerts: AlertsConfig,
    pub client: ClientDefaults,
    /// Client-mode sources by name; none unless configured.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    pub durability: DurabilityConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurabilityConfig {
    pub dir: String,
    pub fsync: FsyncMode,
    pub fsync_interval: f64,
    pub snapshot_interval: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Interval,
    Batch,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub alertmanager_url: String,
    pub interval: f64,
    pub resend_interval: f64,
    pub timeout: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub listen: String,
    pub max_frame_bytes: usize,
    pub ping_interval: f64,
    pub idle_timeout: f64,
    pub handshake_timeout: f64,
    pub read_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
    pub max_connections: usize,
    pub max_events_per_second: f64,
    pub events_burst: u32,
    pub tokens_file: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    pub metrics_tokens_file: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    pub clock: ClockMode,
    pub ring_cycle: f64,
    pub max_rings: u32,
    pub hold_limit: f64,
    pub short_abandon: f64,
    pub callback_expiry: f64,
    pub call_ttl: f64,
    pub dedup_window: f64,
    pub dedup_max_ids: usize,
    pub max_calls: usize,
    pub max_promises: usize,
    #[serde(default)]
    pub queues: HashMap<String, QueueOverrides>,
}

/// Per-queue limits; absent keys inherit the `[rules]` value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOverrides {
    pub ring_cycle: Option<f64>,
    pub max_rings: Option<u32>,
    pub hold_limit: Option<f64>,
    pub short_abandon: Option<f64>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub max_queues: usize,
    pub max_sites: usize,
    pub per_agent: bool,
    pub max_agents: usize,
    pub queues: Vec<String>,
    pub quantile_window: f64,
    pub buckets: BucketsToml,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketsToml {
    pub time_to_answer: Vec<f64>,
    pub rings: Vec<f64>,
    pub hold: Vec<f64>,
    pub lateness: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub drain_timeout: f64,
}

/// `[client]`: defaults for every client-mode source (each may override them).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientDefaults {
    pub connect_timeout: f64,
    pub ping_interval: f64,
    pub idle_timeout: f64,
    pub backoff_initial: f64,
    pub backoff_max: f64,
    pub backoff_reset_after: f64,
}

/// `[sources.<name>]`: one platform event stream ringwatch connects out to.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Required; an `Option` so that its absence is reported with the key.
    pub url: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<String>,
    pub subscribe: Option<String>,
    pub ca_file: Option<String>,
    pub acks: Option<bool>,
    pub connect_timeout: Option<f64>,
    pub ping_interval: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub backoff_initial: Option<f64>,
    pub backoff_max: Option<f64>,
    pub backoff_reset_after: Option<f64>,
}

/// A credential: deserializes like a string, never shows in `Debug` output
/// (configurations and settings are debug-printed; tokens must not be).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Everything validated, in the units the daemon uses.
#[derive(Clone, Debug)]
pub struct Validated {
    pub ingest_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub max_frame_bytes: usize,
    pub read_buffer_bytes: usize,
    pub max_write_buffer_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
    pub settings: Settings,
    pub buckets: BucketConfig,
    pub quantile_window: Millis,
    pub declared_queues: Vec<String>,
    pub log: LogConfig,
    /// `None` when no Alertmanager is configured.
    pub alerts: Option<crate::alerts::AlertSettings>,
    /// `None` when `durability.dir` is empty (state in memory only).
    pub durability: Option<crate::durability::Settings>,
    /// Client-mode sources, in name order.
    pub sources: Vec<crate::ingest::client::SourceSettings>,
    pub ingest_edge: IngestEdge,
    pub http_edge: HttpEdge,
}

/// Who may use the ingest listener, over what, and how much.
#[derive(Clone, Debug)]
pub struct IngestEdge {
    pub max_connections: usize,
    /// `None`: no per-connection rate limit.
    pub rate: Option<RateLimit>,
    /// `None`: open to anyone who reaches the port.
    pub tokens: Option<TokenFile>,
    pub tls: Option<TlsFiles>,
}

/// Who may scrape `/metrics`, and over what (`/healthz` and `/readyz` stay open).
#[derive(Clone, Debug)]
pub struct HttpEdge {
    pub tokens: Option<TokenFile>,
    pub tls: Option<TlsFiles>,
}

const LIST_KEYS: [&str; 5] = [
    "metrics.queues",
    "metrics.buckets.time_to_answer",
    "metrics.buckets.rings",
    "metrics.buckets.hold",
    "metrics.buckets.lateness",
];

impl Config {
    /// Load the layers; `env` is the environment to read (the process's own
    /// in `main`, a fixed list in tests).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(invalid(
                    "--config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            builder = builder.add_source(File::from(path).required(true));
        }
        let vars: HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RINGWATCH__"))
            .collect();
        let mut environment = Environment::with_prefix("RINGWATCH")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(vars));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let cfg = builder.add_source(environment).build()?;
        Ok(cfg.try_deserialize()?)
    }

    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let r = &self.rules;
        let limits = Limits {
            ring_cycle: seconds("rules.ring_cycle", r.ring_cycle, 0.001, 600.0)?,
            max_rings: rings("rules.max_rings", r.max_rings)?,
            hold_limit: seconds("rules.hold_limit", r.hold_limit, 0.001, 86_400.0)?,
            short_abandon: seconds("rules.short_abandon", r.short_abandon, 0.0, 3_600.0)?,
        };
        let mut queue_limits = HashMap::new();
        for (queue, o) in &r.queues {
            let key = |k: &str| format!("rules.queues.{queue}.{k}");
            let ov = |v: Option<f64>, k: &str, min, max, default| match v {
                Some(v) => seconds(&key(k), v, min, max),
                None => Ok(default),
            };
            queue_limits.insert(
                queue.clone(),
                Limits {
                    ring_cycle: ov(o.ring_cycle, "ring_cycle", 0.001, 600.0, limits.ring_cycle)?,
                    max_rings: match o.max_rings {
                        Some(n) => rings(&key("max_rings"), n)?,
                        None => limits.max_rings,
                    },
                    hold_limit: ov(
                        o.hold_limit,
                        "hold_limit",
                        0.001,
                        86_400.0,
                        limits.hold_limit,
                    )?,
                    short_abandon: ov(
                        o.short_abandon,
                        "short_abandon",
                        0.0,
                        3_600.0,
                        limits.short_abandon,
                    )?,
                },
            );
        }
        let m = &self.metrics;
        let settings = Settings {
            clock: r.clock,
            limits,
            queue_limits,
            call_ttl: seconds("rules.call_ttl", r.call_ttl, 1.0, 30.0 * 86_400.0)?,
            callback_expiry: seconds(
                "rules.callback_expiry",
                r.callback_expiry,
                0.0,
                365.0 * 86_400.0,
            )?,
            dedup_window: seconds("rules.dedup_window", r.dedup_window, 0.0, 30.0 * 86_400.0)?,
            dedup_max_ids: count("rules.dedup_max_ids", r.dedup_max_ids, 0)?,
            max_calls: count("rules.max_calls", r.max_calls, 1)?,
            max_promises: count("rules.max_promises", r.max_promises, 1)?,
            max_queues: count("metrics.max_queues", m.max_queues, 1)?,
            max_sites: count("metrics.max_sites", m.max_sites, 1)?,
            per_agent: m.per_agent,
            max_agents: count("metrics.max_agents", m.max_agents, 1)?,
        };
        let b = &m.buckets;
        let buckets = BucketConfig {
            time_to_answer: bucket_list("metrics.buckets.time_to_answer", &b.time_to_answer)?,
            rings: bucket_list("metrics.buckets.rings", &b.rings)?,
            hold: bucket_list("metrics.buckets.hold", &b.hold)?,
            lateness: bucket_list("metrics.buckets.lateness", &b.lateness)?,
        };
        if let Some(bad) = buckets.rings.iter().find(|r| r.fract() != 0.0) {
            return Err(invalid(
                "metrics.buckets.rings",
                format!("must be whole numbers of rings, got {bad}"),
            ));
        }
        for q in &m.queues {
            let n = q.chars().count();
            if !(1..=64).contains(&n) {
                return Err(invalid(
                    "metrics.queues",
                    format!("queue names are 1 to 64 characters, got {q:?}"),
                ));
            }
        }
        let i = &self.ingest;
        if !(128..=64 * 1024 * 1024).contains(&i.max_frame_bytes) {
            return Err(invalid(
                "ingest.max_frame_bytes",
                format!(
                    "must be between 128 and 67108864 bytes, got {}",
                    i.max_frame_bytes
                ),
            ));
        }
        if !(256..=16 * 1024 * 1024).contains(&i.read_buffer_bytes) {
            return Err(invalid(
                "ingest.read_buffer_bytes",
                format!(
                    "must be between 256 and 16777216 bytes, got {}",
                    i.read_buffer_bytes
                ),
            ));
        }
        if i.max_write_buffer_bytes < 64 * 1024 {
            return Err(invalid(
                "ingest.max_write_buffer_bytes",
                format!(
                    "must be at least 65536 bytes (one large acknowledgement), got {}",
                    i.max_write_buffer_bytes
                ),
            ));
        }
        let ping_interval = duration("ingest.ping_interval", i.ping_interval, 0.1, 3_600.0)?;
        let idle_timeout = duration("ingest.idle_timeout", i.idle_timeout, 0.1, 86_400.0)?;
        if idle_timeout <= ping_interval {
            return Err(invalid(
                "ingest.idle_timeout",
                "must be longer than ingest.ping_interval, or live peers would be closed",
            ));
        }
        if self.log.level.trim().is_empty() {
            return Err(invalid("log.level", "must not be empty"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            invalid(
                "log.level",
                format!("{:?} is not a valid filter: {e}", self.log.level),
            )
        })?;
        Ok(Validated {
            ingest_listen: addr("ingest.listen", &i.listen)?,
            http_listen: addr("http.listen", &self.http.listen)?,
            max_frame_bytes: i.max_frame_bytes,
            read_buffer_bytes: i.read_buffer_bytes,
            max_write_buffer_bytes: i.max_write_buffer_bytes,
            ping_interval,
            idle_timeout,
            handshake_timeout: duration(
                "ingest.handshake_timeout",
                i.handshake_timeout,
                0.1,
                600.0,
            )?,
            drain_timeout: duration(
                "shutdown.drain_timeout",
                self.shutdown.drain_timeout,
                0.0,
                3_600.0,
            )?,
            settings,
            buckets,
            quantile_window: seconds("metrics.quantile_window", m.quantile_window, 1.0, 86_400.0)?,
            declared_queues: m.queues.clone(),
            log: self.log.clone(),
            alerts: self.alerts()?,
            durability: self.durability()?,
            sources: self.sources()?,
            ingest_edge: self.ingest_edge()?,
            http_edge: HttpEdge {
                tokens: token_file("http.metrics_tokens_file", &self.http.metrics_tokens_file)?,
                tls: tls_files("http", &self.http.tls_cert_file, &self.http.tls_key_file)?,
            },
        })
    }

    fn ingest_edge(&self) -> Result<IngestEdge, ConfigError> {
        let i = &self.ingest;
        let eps = i.max_events_per_second;
        let rate = if eps == 0.0 {
            None
        } else if !eps.is_finite() || !(0.01..=10_000_000.0).contains(&eps) {
            return Err(invalid(
                "ingest.max_events_per_second",
                format!("must be 0 (no limit) or between 0.01 and 10000000 events per second, got {eps}"),
            ));
        } else {
            // 0: one second's worth.
            let burst = if i.events_burst == 0 {
                eps.ceil() as u32
            } else {
                i.events_burst
            };
            Some(RateLimit::new(eps, burst))
        };
        Ok(IngestEdge {
            max_connections: count("ingest.max_connections", i.max_connections, 1)?,
            rate,
            tokens: token_file("ingest.tokens_file", &i.tokens_file)?,
            tls: tls_files("ingest", &i.tls_cert_file, &i.tls_key_file)?,
        })
    }

    fn durability(&self) -> Result<Option<crate::durability::Settings>, ConfigError> {
        use crate::durability::{Fsync, Settings};
        let d = &self.durability;
        if d.dir.trim().is_empty() {
            return Ok(None);
        }
        let interval = duration("durability.fsync_interval", d.fsync_interval, 0.001, 60.0)?;
        Ok(Some(Settings {
            dir: d.dir.trim().into(),
            fsync: match d.fsync {
                FsyncMode::Batch => Fsync::Batch,
                FsyncMode::Interval => Fsync::Interval(interval),
            },
            snapshot_interval: duration(
                "durability.snapshot_interval",
                d.snapshot_interval,
                1.0,
                86_400.0,
            )?,
        }))
    }

    fn alerts(&self) -> Result<Option<crate::alerts::AlertSettings>, ConfigError> {
        let a = &self.alerts;
        let url = a.alertmanager_url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "alerts.alertmanager_url",
                format!("must be an http:// or https:// URL, got {url:?}"),
            ));
        }
        let interval = duration("alerts.interval", a.interval, 0.05, 60.0)?;
        let resend_interval = duration("alerts.resend_interval", a.resend_interval, 1.0, 3_600.0)?;
        if resend_interval < interval {
            return Err(invalid(
                "alerts.resend_interval",
                "must not be shorter than alerts.interval",
            ));
        }
        Ok(Some(crate::alerts::AlertSettings {
            alertmanager_url: url.to_string(),
            interval,
            resend_interval,
            timeout: duration("alerts.timeout", a.timeout, 0.1, 60.0)?,
        }))
    }

    fn sources(&self) -> Result<Vec<crate::ingest::client::SourceSettings>, ConfigError> {
        use crate::ingest::client::{self, SourceSettings};
        let d = &self.client;
        let mut out = Vec::new();
        for (name, s) in &self.sources {
            let key = |k: &str| format!("sources.{name}.{k}");
            // The name is a label value and an environment-variable segment
            // (which the config layer lowercases): keep it short and plain.
            let plain =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
            if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
                return Err(invalid(
                    format!("sources.{name}"),
                    "source names are 1 to 64 characters of a-z, 0-9, _ and -",
                ));
            }
            let Some(url) = s.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
                return Err(invalid(key("url"), "is required (a ws:// or wss:// URL)"));
            };
            let target = client::Target::parse(url).map_err(|why| invalid(key("url"), why))?;
            let token = match (&s.token, &s.token_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("token_file"),
                        "cannot be combined with token: set one of them",
                    ))
                }
                (Some(t), None) => Some(bearer(&key("token"), t.expose())?),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        invalid(key("token_file"), format!("cannot read {path}: {e}"))
                    })?;
                    Some(bearer(&key("token_file"), &text)?)
                }
                (None, None) => None,
            };
            let mut ca_certs = Vec::new();
            if let Some(path) = &s.ca_file {
                if !target.tls {
                    return Err(invalid(key("ca_file"), "is only used with a wss:// url"));
                }
                ca_certs = client::read_ca_file(Path::new(path))
                    .map_err(|why| invalid(key("ca_file"), why))?;
            }
            let tls = if target.tls {
                Some(client::tls_config(&ca_certs).map_err(|why| invalid(key("ca_file"), why))?)
            } else {
                None
            };
            if let Some(sub) = &s.subscribe {
                if sub.trim().is_empty() {
                    return Err(invalid(key("subscribe"), "must not be empty when set"));
                }
            }
            let pick = |v: Option<f64>, default: f64, k: &str| match v {
                Some(v) => (v, key(k)),
                None => (default, format!("client.{k}")),
            };
            let (v, k) = pick(s.ping_interval, d.ping_interval, "ping_interval");
            let ping_interval = duration(&k, v, 0.1, 3_600.0)?;
            let (v, k) = pick(s.idle_timeout, d.idle_timeout, "idle_timeout");
            let idle_timeout = duration(&k, v, 0.1, 86_400.0)?;
            if idle_timeout <= ping_interval {
                return Err(invalid(
                    k,
                    "must be longer than ping_interval, or live platforms would be dropped",
                ));
            }
            let (v, k) = pick(s.connect_timeout, d.connect_timeout, "connect_timeout");
            let connect_timeout = duration(&k, v, 0.1, 600.0)?;
            let (v, k) = pick(s.backoff_initial, d.backoff_initial, "backoff_initial");
            let backoff_initial = duration(&k, v, 0.001, 3_600.0)?;
            let (v, k) = pick(s.backoff_max, d.backoff_max, "backoff_max");
            let backoff_max = duration(&k, v, 0.001, 86_400.0)?;
            if backoff_max < backoff_initial {
                return Err(invalid(k, "must not be shorter than backoff_initial"));
            }
            let (v, k) = pick(
                s.backoff_reset_after,
                d.backoff_reset_after,
                "backoff_reset_after",
            );
            let backoff_reset_after = duration(&k, v, 0.0, 86_400.0)?;
            out.push(SourceSettings {
                name: name.clone(),
                target,
                token,
                subscribe: s.subscribe.clone(),
                tls,
                acks: s.acks.unwrap_or(true),
                connect_timeout,
                ping_interval,
                idle_timeout,
                backoff_initial,
                backoff_max,
                backoff_reset_after,
                max_frame_bytes: self.ingest.max_frame_bytes,
                read_buffer_bytes: self.ingest.read_buffer_bytes,
                max_write_buffer_bytes: self.ingest.max_write_buffer_bytes,
            });
        }
        Ok(out)
    }
}

/// A bearer token as it will go into the `Authorization` header: surrounding
/// whitespace (a token file's final newline) dropped, header-safe characters.
fn bearer(key: &str, raw: &str) -> Result<Secret, ConfigError> {
    let token = raw.trim();
    if token.is_empty() {
        return Err(invalid(key, "the token is empty"));
    }
    // Never echo the token in the message: it is a credential.
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            key,
            "the token must be printable ASCII without spaces",
        ));
    }
    Ok(Secret::new(token))
}

fn seconds(key: &str, v: f64, min: f64, max: f64) -> Result<Millis, ConfigError> {
    if !v.is_finite() || v < min || v > max {
        return Err(invalid(
            key,
            format!("must be between {min} and {max} seconds, got {v}"),
        ));
    }
    Ok((v * 1000.0).round() as Millis)
}

fn duration(key: &str, v: f64, min: f64, max: f64) -> Result<Duration, ConfigError> {
    seconds(key, v, min, max).map(|ms| Duration::from_millis(ms as u64))
}

fn rings(key: &str, n: u32) -> Result<u32, ConfigError> {
    if !(1..=100).contains(&n) {
        return Err(invalid(
            key,
            format!("must be between 1 and 100 rings, got {n}"),
        ));
    }
    Ok(n)
}

fn count(key: &str, n: usize, min: usize) -> Result<usize, ConfigError> {
    if n < min {
        return Err(invalid(key, format!("must be at least {min}, got {n}")));
    }
    Ok(n)
}

fn bucket_list(key: &str, v: &[f64]) -> Result<Vec<f64>, ConfigError> {
    if let Some(bad) = v.iter().find(|b| !b.is_finite() || **b <= 0.0) {
        return Err(invalid(
            key,
            format!("boundaries must be positive numbers, got {bad}"),
        ));
    }
    Ok(v.to_vec())
}

/// An empty path means no token file (the listener is open).
fn token_file(key: &str, path: &str) -> Result<Option<TokenFile>, ConfigError> {
    if path.trim().is_empty() {
        return Ok(None);
    }
    TokenFile::load(Path::new(path.trim()))
        .map(Some)
        .map_err(|e| invalid(key, e.to_string()))
}

/// Both paths empty: no TLS. Both set: the pair, loaded and checked.
fn tls_files(section: &str, cert: &str, key: &str) -> Result<Option<TlsFiles>, ConfigError> {
    let (cert, key) = (cert.trim(), key.trim());
    let cert_key = format!("{section}.tls_cert_file");
    let key_key = format!("{section}.tls_key_file");
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => return Err(invalid(key_key, format!("must be set when {cert_key} is"))),
        (true, false) => return Err(invalid(cert_key, format!("must be set when {key_key} is"))),
        (false, false) => {}
    }
    let (cert, key) = (Path::new(cert), Path::new(key));
    match crate::tls::load_pair(cert, key) {
        Ok(pair) => Ok(Some(TlsFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            pair,
        })),
        Err(e @ TlsError::Cert { .. }) => Err(invalid(cert_key, e.to_string())),
        Err(e @ TlsError::Key { .. }) => Err(invalid(key_key, e.to_string())),
    }
}

fn addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| {
        invalid(
            key,
            format!("{v:?} is not an address like 127.0.0.1:9466 or [::]:9466"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn validate(pairs: &[(&str, &str)]) -> Result<Validated, ConfigError> {
        Config::load(None, env(pairs))?.validate()
    }

    #[test]
    fn defaults_are_the_spec_defaults() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.settings.limits, Limits::default());
        assert_eq!(v.settings.clock, ClockMode::Wall);
        assert_eq!(v.settings.call_ttl, 4 * 3_600_000);
        assert_eq!(v.settings.callback_expiry, 86_400_000);
        assert_eq!(v.settings.max_queues, 1000);
        assert_eq!(v.quantile_window, 300_000);
        assert_eq!(v.buckets, BucketConfig::default());
    }

    #[test]
    fn environment_overrides_and_lists() {
        let v = validate(&[
            ("RINGWATCH__RULES__CLOCK", "event"),
            ("RINGWATCH__RULES__HOLD_LIMIT", "20.5"),
            ("RINGWATCH__RULES__QUEUES__VIP__MAX_RINGS", "2"),
            ("RINGWATCH__METRICS__QUEUES", "billing,sales"),
            ("RINGWATCH__INGEST__LISTEN", "127.0.0.1:0"),
            ("RINGWATCH_NOT_OURS", "ignored"),
        ])
        .unwrap();
        assert_eq!(v.settings.clock, ClockMode::Event);
        assert_eq!(v.settings.limits.hold_limit, 20_500);
        assert_eq!(v.settings.limits_for("vip").max_rings, 2);
        assert_eq!(v.settings.limits_for("vip").hold_limit, 20_500);
        assert_eq!(v.declared_queues, vec!["billing", "sales"]);
        assert_eq!(v.ingest_listen.port(), 0);
    }

    #[test]
    fn file_layer_sits_between_defaults_and_env() {
        let dir = std::env::temp_dir().join(format!("ringwatch-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[rules]\nhold_limit = 30\nmax_rings = 4\n").unwrap();
        let v = Config::load(Some(&path), env(&[("RINGWATCH__RULES__MAX_RINGS", "5")]))
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.settings.limits.hold_limit, 30_000);
        assert_eq!(v.settings.limits.max_rings, 5);
        std::fs::remove_dir_all(dir).ok();
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        match validate(pairs) {
            Ok(_) => panic!("{pairs:?} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error(&[("RINGWATCH__RULES__RING_CYCLE", "0")]).contains("rules.ring_cycle"));
        assert!(error(&[("RINGWATCH__RULES__MAX_RINGS", "0")]).contains("rules.max_rings"));
        assert!(error(&[("RINGWATCH__RULES__HOLD_LIMIT", "abc")]).contains("rules.hold_limit"));
        assert!(error(&[("RINGWATCH__RULES__CLOCK", "sundial")]).contains("clock"));
        assert!(error(&[("RINGWATCH__HTTP__LISTEN", "nowhere")]).contains("http.listen"));
        assert!(
            error(&[("RINGWATCH__RULES__QUEUES__VIP__HOLD_LIMIT", "-1")])
                .contains("rules.queues.vip.hold_limit")
        );
        assert!(error(&[
            ("RINGWATCH__INGEST__IDLE_TIMEOUT", "5"),
            ("RINGWATCH__INGEST__PING_INTERVAL", "10")
        ])
        .contains("ingest.idle_timeout"));
        assert!(error(&[("RINGWATCH__RULES__HOLD_LIMT", "5")]).contains("hold_limt"));
        assert!(error(&[("RINGWATCH__METRICS__BUCKETS__HOLD", "5,-1")])
            .contains("metrics.buckets.hold"));
        assert!(error(&[("RINGWATCH__LOG__LEVEL", "ringwatch=loud")]).contains("log.level"));
    }

    #[test]
    fn durability_keys_are_typed_and_checked() {
        use crate::durability::Fsync;
        let d = validate(&[]).unwrap().durability.unwrap();
        assert_eq!(d.dir, std::path::PathBuf::from("data"));
        assert_eq!(d.fsync, Fsync::Interval(Duration::from_millis(200)));
        assert_eq!(d.snapshot_interval, Duration::from_secs(60));
        let batch = validate(&[("RINGWATCH__DURABILITY__FSYNC", "batch")]).unwrap();
        assert_eq!(batch.durability.unwrap().fsync, Fsync::Batch);
        let off = validate(&[("RINGWATCH__DURABILITY__DIR", "")]).unwrap();
        assert!(
            off.durability.is_none(),
            "an empty dir keeps state in memory only"
        );
        assert!(error(&[("RINGWATCH__DURABILITY__FSYNC", "sometimes")]).contains("fsync"));
        assert!(error(&[("RINGWATCH__DURABILITY__FSYNC_INTERVAL", "0")])
            .contains("durability.fsync_interval"));
        assert!(
            error(&[("RINGWATCH__DURABILITY__SNAPSHOT_INTERVAL", "0.5")])
                .contains("durability.snapshot_interval")
        );
    }

    #[test]
    fn listener_guards_default_to_open_plain_and_unthrottled() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.ingest_edge.max_connections, 1000);
        assert!(v.ingest_edge.rate.is_none());
        assert!(v.ingest_edge.tokens.is_none() && v.ingest_edge.tls.is_none());
        assert!(v.http_edge.tokens.is_none() && v.http_edge.tls.is_none());
        let v = validate(&[("RINGWATCH__INGEST__MAX_EVENTS_PER_SECOND", "2.5")]).unwrap();
        assert_eq!(v.ingest_edge.rate, Some(RateLimit::new(2.5, 3)));
        let v = validate(&[
            ("RINGWATCH__INGEST__MAX_EVENTS_PER_SECOND", "100"),
            ("RINGWATCH__INGEST__EVENTS_BURST", "10"),
        ])
        .unwrap();
        assert_eq!(v.ingest_edge.rate, Some(RateLimit::new(100.0, 10)));
    }

    /// A scratch directory with a token file and two unrelated key pairs.
    fn edge_files(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ringwatch-edge-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tokens"), "pbx 0123456789abcdef0123\n").unwrap();
        std::fs::write(dir.join("bad-tokens"), "pbx short\n").unwrap();
        for name in ["a", "b"] {
            let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            std::fs::write(dir.join(format!("{name}.crt")), c.cert.pem()).unwrap();
            std::fs::write(
                dir.join(format!("{name}.key")),
                c.signing_key.serialize_pem(),
            )
            .unwrap();
        }
        std::fs::write(dir.join("junk.pem"), "not pem at all\n").unwrap();
        dir
    }

    #[test]
    fn token_files_and_certificates_are_loaded_and_checked() {
        let dir = edge_files("ok");
        let p = |f: &str| dir.join(f).display().to_string();
        let v = validate(&[
            ("RINGWATCH__INGEST__TOKENS_FILE", &p("tokens")),
            ("RINGWATCH__HTTP__METRICS_TOKENS_FILE", &p("tokens")),
            ("RINGWATCH__INGEST__TLS_CERT_FILE", &p("a.crt")),
            ("RINGWATCH__INGEST__TLS_KEY_FILE", &p("a.key")),
            ("RINGWATCH__HTTP__TLS_CERT_FILE", &p("b.crt")),
            ("RINGWATCH__HTTP__TLS_KEY_FILE", &p("b.key")),
        ])
        .unwrap();
        let tokens = v.ingest_edge.tokens.as_ref().unwrap();
        assert_eq!(tokens.tokens.names().collect::<Vec<_>>(), ["pbx"]);
        assert!(v.http_edge.tokens.is_some());
        assert_eq!(v.ingest_edge.tls.as_ref().unwrap().cert, dir.join("a.crt"));
        assert_eq!(v.http_edge.tls.as_ref().unwrap().key, dir.join("b.key"));
        // Debug output (it may end up in a log) shows no token.
        assert!(!format!("{v:?}").contains("0123456789abcdef0123"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn listener_guard_errors_name_the_key() {
        let dir = edge_files("bad");
        let p = |f: &str| dir.join(f).display().to_string();
        let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
            (
                vec![("RINGWATCH__INGEST__MAX_CONNECTIONS", "0".into())],
                "`ingest.max_connections`",
            ),
            (
                vec![("RINGWATCH__INGEST__MAX_EVENTS_PER_SECOND", "-1".into())],
                "`ingest.max_events_per_second`",
            ),
            (
                vec![("RINGWATCH__INGEST__TOKENS_FILE", p("missing"))],
                "`ingest.tokens_file` cannot read token file",
            ),
            (
                vec![("RINGWATCH__HTTP__METRICS_TOKENS_FILE", p("bad-tokens"))],
                "`http.metrics_tokens_file` token file",
            ),
            (
                vec![("RINGWATCH__INGEST__TLS_CERT_FILE", p("a.crt"))],
                "`ingest.tls_key_file` must be set when ingest.tls_cert_file is",
            ),
            (
                vec![("RINGWATCH__HTTP__TLS_KEY_FILE", p("a.key"))],
                "`http.tls_cert_file` must be set",
            ),
            (
                vec![
                    ("RINGWATCH__HTTP__TLS_CERT_FILE", p("junk.pem")),
                    ("RINGWATCH__HTTP__TLS_KEY_FILE", p("a.key")),
                ],
                "`http.tls_cert_file` certificate file",
            ),
            (
                vec![
                    ("RINGWATCH__INGEST__TLS_CERT_FILE", p("a.crt")),
                    ("RINGWATCH__INGEST__TLS_KEY_FILE", p("a.crt")),
                ],
                "`ingest.tls_key_file` key file",
            ),
            (
                vec![
                    ("RINGWATCH__INGEST__TLS_CERT_FILE", p("a.crt")),
                    ("RINGWATCH__INGEST__TLS_KEY_FILE", p("b.key")),
                ],
                "does not match the certificate",
            ),
        ];
        for (pairs, want) in cases {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let e = error(&pairs);
            assert!(e.contains(want), "{pairs:?}: {e}");
        }
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/ringwatch.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ringwatch.toml"));
    }

    #[test]
    fn sources_default_to_none_and_take_client_defaults() {
        assert!(validate(&[]).unwrap().sources.is_empty());
        let v = validate(&[
            (
                "RINGWATCH__SOURCES__PBX__URL",
                "ws://127.0.0.1:9000/events?key=k",
            ),
            ("RINGWATCH__SOURCES__PBX__PING_INTERVAL", "5"),
            (
                "RINGWATCH__SOURCES__PBX__SUBSCRIBE",
                r#"{"subscribe":"calls"}"#,
            ),
            ("RINGWATCH__SOURCES__PBX__ACKS", "false"),
            ("RINGWATCH__CLIENT__BACKOFF_MAX", "7"),
        ])
        .unwrap();
        let s = &v.sources[0];
        assert_eq!(s.name, "pbx");
        assert_eq!(s.target.display, "ws://127.0.0.1:9000/events");
        assert_eq!(s.ping_interval, Duration::from_secs(5));
        assert_eq!(s.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.backoff_max, Duration::from_secs(7));
        assert_eq!(s.backoff_initial, Duration::from_millis(500));
        assert_eq!(s.subscribe.as_deref(), Some(r#"{"subscribe":"calls"}"#));
        assert!(!s.acks);
        assert!(s.tls.is_none());
        assert!(s.token.is_none());
        let v = validate(&[(
            "RINGWATCH__SOURCES__CLOUD__URL",
            "wss://events.example.com/v1",
        )])
        .unwrap();
        assert!(v.sources[0].tls.is_some());
        assert!(v.sources[0].acks);
    }

    #[test]
    fn tokens_come_from_env_or_file_and_never_show() {
        let dir = std::env::temp_dir().join(format!("ringwatch-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cr3t-from-file\n").unwrap();
        let v = validate(&[
            ("RINGWATCH__SOURCES__A__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__A__TOKEN", "s3cr3t-from-env"),
            ("RINGWATCH__SOURCES__B__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__B__TOKEN_FILE", path.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(
            v.sources[0].token.as_ref().unwrap().expose(),
            "s3cr3t-from-env"
        );
        assert_eq!(
            v.sources[1].token.as_ref().unwrap().expose(),
            "s3cr3t-from-file"
        );
        let printed = format!("{v:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        let e = error(&[
            ("RINGWATCH__SOURCES__A__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__A__TOKEN", "bad token"),
        ]);
        assert!(
            e.contains("sources.a.token") && !e.contains("bad token"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn source_errors_name_the_key() {
        let url = ("RINGWATCH__SOURCES__P__URL", "ws://127.0.0.1:1/");
        assert!(error(&[("RINGWATCH__SOURCES__P__ACKS", "true")]).contains("sources.p.url"));
        assert!(error(&[("RINGWATCH__SOURCES__P__URL", "http://x/")]).contains("sources.p.url"));
        assert!(error(&[url, ("RINGWATCH__SOURCES__P__PORT", "1")]).contains("port"));
        assert!(
            error(&[url, ("RINGWATCH__SOURCES__P__TOKEN_FILE", "/nonexistent/t")])
                .contains("sources.p.token_file")
        );
        assert!(error(&[
            url,
            ("RINGWATCH__SOURCES__P__TOKEN", "a"),
            ("RINGWATCH__SOURCES__P__TOKEN_FILE", "/etc/hostname")
        ])
        .contains("sources.p.token_file"));
        assert!(
            error(&[url, ("RINGWATCH__SOURCES__P__CA_FILE", "/etc/hostname")])
                .contains("sources.p.ca_file")
        );
        assert!(error(&[
            ("RINGWATCH__SOURCES__P__URL", "wss://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__P__CA_FILE", "/etc/hostname")
        ])
        .contains("sources.p.ca_file"));
        assert!(error(&[
            url,
            ("RINGWATCH__SOURCES__P__IDLE_TIMEOUT", "10"),
            ("RINGWATCH__SOURCES__P__PING_INTERVAL", "20")
        ])
        .contains("sources.p.idle_timeout"));
        assert!(
            error(&[url, ("RINGWATCH__CLIENT__BACKOFF_MAX", "0.1")]).contains("client.backoff_max")
        );
        assert!(
            error(&[url, ("RINGWATCH__SOURCES__P__CONNECT_TIMEOUT", "0")])
                .contains("sources.p.connect_timeout")
        );
        assert!(
            error(&[("RINGWATCH__SOURCES__P.Q__URL", "ws://127.0.0.1:1/")]).contains("sources")
        );
    }
}
