//! Configuration: typed, layered (built-in `config/default.toml`, then
//! `--config FILE`, then `RINGWATCH__SECTION__KEY` environment variables),
//! validated section by section before anything is bound. Every error names
//! the key.
//!
//! Configuration depends on the modules it configures and none of them on
//! it: each section's file here holds the TOML-shaped raw struct and the
//! validation that turns it into that subsystem's own settings type. Only the
//! binary's wiring (`main.rs`, `daemon.rs`, `demo.rs`, `sim/run.rs`) imports
//! this module.
//!
//! Two steps follow loading, both before any port is bound:
//! [`Config::validate`] is pure (values and shapes; files are only named) and
//! [`Validated::read_files`] reads the files it names (token files, TLS
//! certificates and keys, CA files).

mod alerts;
mod client;
mod durability;
mod edge;
mod files;
mod http;
mod ingest;
mod log;
mod metrics;
mod platform;
mod rules;
mod shutdown;
mod wall;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ::config::{Environment, File, FileFormat};
use serde::Deserialize;

use crate::event::Millis;
use crate::logging::LogSettings;
use crate::metrics::Bounds;

pub use alerts::AlertsConfig;
pub use client::Kind;
pub use client::{ClientDefaults, Source, SourceConfig, Token};
pub use durability::{DurabilityConfig, FsyncMode};
pub use edge::{EdgeFiles, TlsPaths};
pub use files::{EdgeGuards, Files};
pub use http::{Http, HttpConfig};
pub use ingest::{Ingest, IngestConfig, MIN_WRITE_BUFFER_BYTES};
pub use log::LogConfig;
pub use metrics::{BucketsToml, Metrics, MetricsConfig};
pub use platform::{PlatformSource, SecretRef, Spec};
pub use rules::{QueueOverrides, RulesConfig};
pub use shutdown::{Shutdown, ShutdownConfig};
pub use wall::WallConfig;

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] ::config::ConfigError),
    #[error("configuration: `{key}` {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The configuration as layered, before validation: one field per section.
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
    pub wall: WallConfig,
}

/// Every section validated, in the units and types its subsystem uses. Files
/// are named here, not read: see [`Validated::read_files`].
#[derive(Clone, Debug)]
pub struct Validated {
    pub ingest: Ingest,
    pub http: Http,
    /// `[rules]`, plus `[metrics]`' label caps (`max_queues`, `max_sites`,
    /// `per_agent`, `max_agents`): the engine is what folds label values.
    pub rules: crate::rules::Settings,
    pub metrics: Metrics,
    pub log: LogSettings,
    pub shutdown: Shutdown,
    /// `None` when no Alertmanager is configured.
    pub alerts: Option<crate::alerts::AlertSettings>,
    /// `[sources.*]` in name order, each with the `[client]` defaults it does
    /// not override.
    pub sources: Vec<Source>,
    /// `[sources.*]` with a platform `kind`, in name order.
    pub platforms: Vec<PlatformSource>,
    /// `None` when `durability.dir` is empty (state in memory only).
    pub durability: Option<crate::durability::Settings>,
    /// `[wall]`: the wallboard's time zone.
    pub wall: crate::wall::WallSettings,
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
            ::config::Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
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

    /// Check every section; reads nothing (see [`Validated::read_files`]).
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        let metrics = self.metrics.validate()?;
        let rules = self.rules.validate(&metrics)?;
        let ingest = self.ingest.validate()?;
        let (sources, platforms) = validate_sources(&self.client, &self.sources, &ingest)?;
        Ok(Validated {
            http: self.http.validate()?,
            log: self.log.validate()?,
            shutdown: self.shutdown.validate()?,
            alerts: self.alerts.validate()?,
            durability: self.durability.validate()?,
            wall: self.wall.validate()?,
            ingest,
            rules,
            metrics,
            sources,
            platforms,
        })
    }
}

/// `[client]` on its own (as a source overriding nothing would get it), then
/// every source, in name order: the WebSocket ones and the platform ones.
fn validate_sources(
    defaults: &ClientDefaults,
    sources: &BTreeMap<String, SourceConfig>,
    ingest: &Ingest,
) -> Result<(Vec<Source>, Vec<PlatformSource>), ConfigError> {
    client::timings(defaults, &SourceConfig::default(), |k| {
        format!("client.{k}")
    })?;
    let mut websocket = Vec::new();
    let mut platforms = Vec::new();
    for (name, s) in sources {
        client::check_name(name)?;
        match Kind::parse(&format!("sources.{name}.kind"), s.kind.as_deref())? {
            Kind::Websocket => websocket.push(s.validate(name, defaults, ingest)?),
            kind => platforms.push(platform::validate(name, kind, s, defaults, ingest)?),
        }
    }
    Ok((websocket, platforms))
}

impl Validated {
    /// The histogram boundaries: the configured ones plus the rules' limits.
    pub fn bounds(&self) -> Bounds {
        Bounds::new(&self.rules, &self.metrics.buckets)
    }

    /// What the state (fresh or recovered) is built under.
    pub fn state(&self) -> crate::durability::StateConfig {
        crate::durability::StateConfig {
            rules: self.rules.clone(),
            bounds: self.bounds(),
            quantile_window: self.metrics.quantile_window,
            declared_queues: self.metrics.queues.clone(),
        }
    }
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

fn count(key: &str, n: usize, min: usize) -> Result<usize, ConfigError> {
    if n < min {
        return Err(invalid(key, format!("must be at least {min}, got {n}")));
    }
    Ok(n)
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
    //! Loading and layering; each section's own checks are tested in its file.

    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn validate(pairs: &[(&str, &str)]) -> Result<Validated, ConfigError> {
        Config::load(None, env(pairs))?.validate()
    }

    /// Validation and the file-reading step, as `main` runs them.
    pub(super) fn read(pairs: &[(&str, &str)]) -> Result<(Validated, Files), ConfigError> {
        let v = validate(pairs)?;
        let files = v.read_files()?;
        Ok((v, files))
    }

    /// The message of the error validation or the file-reading step gives.
    pub(super) fn error(pairs: &[(&str, &str)]) -> String {
        match read(pairs) {
            Ok(_) => panic!("{pairs:?} should be refused"),
            Err(e) => e.to_string(),
        }
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
        assert_eq!(v.rules.clock, crate::rules::ClockMode::Event);
        assert_eq!(v.rules.limits.hold_limit, 20_500);
        assert_eq!(v.rules.limits_for("vip").max_rings, 2);
        assert_eq!(v.rules.limits_for("vip").hold_limit, 20_500);
        assert_eq!(v.metrics.queues, vec!["billing", "sales"]);
        assert_eq!(v.ingest.listen.port(), 0);
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
        assert_eq!(v.rules.limits.hold_limit, 30_000);
        assert_eq!(v.rules.limits.max_rings, 5);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        assert!(error(&[("RINGWATCH__RULES__HOLD_LIMT", "5")]).contains("hold_limt"));
        assert!(error(&[("RINGWATCH__RULES__HOLD_LIMIT", "abc")]).contains("rules.hold_limit"));
        assert!(error(&[("RINGWATCH__RULES__CLOCK", "sundial")]).contains("clock"));
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/ringwatch.toml")), env(&[])).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ringwatch.toml"));
    }

    #[test]
    fn validation_reads_no_file() {
        // Every file key names a file that does not exist: validation still
        // passes (it only checks the shape), the file-reading step does not.
        let pairs = [
            ("RINGWATCH__INGEST__TOKENS_FILE", "/nonexistent/tokens"),
            ("RINGWATCH__INGEST__TLS_CERT_FILE", "/nonexistent/a.crt"),
            ("RINGWATCH__INGEST__TLS_KEY_FILE", "/nonexistent/a.key"),
            (
                "RINGWATCH__HTTP__METRICS_TOKENS_FILE",
                "/nonexistent/scrapers",
            ),
            ("RINGWATCH__HTTP__TLS_CERT_FILE", "/nonexistent/b.crt"),
            ("RINGWATCH__HTTP__TLS_KEY_FILE", "/nonexistent/b.key"),
            ("RINGWATCH__SOURCES__P__URL", "wss://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__P__TOKEN_FILE", "/nonexistent/token"),
            ("RINGWATCH__SOURCES__P__CA_FILE", "/nonexistent/ca.pem"),
        ];
        let v = validate(&pairs).unwrap();
        assert_eq!(
            v.ingest.edge.tokens_file.as_deref(),
            Some(Path::new("/nonexistent/tokens"))
        );
        assert_eq!(
            v.http.edge.tls.as_ref().unwrap().key,
            Path::new("/nonexistent/b.key")
        );
        assert_eq!(
            v.sources[0].ca_file.as_deref(),
            Some(Path::new("/nonexistent/ca.pem"))
        );
        assert!(v.read_files().is_err());
    }

    #[test]
    fn state_is_built_from_rules_and_metrics() {
        let v = validate(&[("RINGWATCH__METRICS__QUEUES", "billing")]).unwrap();
        let state = v.state();
        assert_eq!(state.declared_queues, ["billing"]);
        assert_eq!(state.quantile_window, v.metrics.quantile_window);
        assert_eq!(state.bounds, v.bounds());
        assert_eq!(state.rules.limits, v.rules.limits);
    }
}
