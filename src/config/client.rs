//! `[client]` (defaults for every client-mode source) and `[sources.<name>]`
//! (the platform streams ringwatch connects out to), validated into
//! [`Source`]s. A source's token file and CA file are only named here; the
//! file-reading step turns a [`Source`] into the
//! [`crate::ingest::client::SourceSettings`] it runs with.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{duration, invalid, ConfigError, Ingest};
use crate::ingest::client::{Connection, Secret, Target};

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
    /// `websocket` (the default), `asterisk_ami`, `asterisk_queue_log`,
    /// `freeswitch_esl`: see `platform.rs` for the platform kinds' keys.
    pub kind: Option<String>,
    pub address: Option<String>,
    pub username: Option<String>,
    pub secret: Option<Secret>,
    pub secret_file: Option<String>,
    pub tls: Option<bool>,
    pub password: Option<Secret>,
    pub password_file: Option<String>,
    pub path: Option<String>,
    pub start: Option<String>,
    pub site: Option<String>,
    pub abandon_policy: Option<String>,
    pub max_message_bytes: Option<usize>,
}

/// Where a source's bearer token comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    /// `token`, already checked to be header-safe.
    Inline(Secret),
    /// `token_file`, read (and checked) by the file-reading step.
    File(PathBuf),
}

/// One `[sources.<name>]`, validated, with the `[client]` defaults applied.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub target: Target,
    pub token: Option<Token>,
    /// Only with a wss:// target.
    pub ca_file: Option<PathBuf>,
    pub subscribe: Option<String>,
    /// The client's own settings type, as it runs with them.
    pub conn: Connection,
}

/// The connection timings of one source.
pub(super) struct Timings {
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_reset_after: Duration,
}

/// The `kind` of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Websocket,
    AsteriskAmi,
    AsteriskQueueLog,
    FreeswitchEsl,
}

impl Kind {
    pub fn parse(key: &str, s: Option<&str>) -> Result<Kind, ConfigError> {
        match s.map(str::trim) {
            None | Some("websocket") => Ok(Kind::Websocket),
            Some("asterisk_ami") => Ok(Kind::AsteriskAmi),
            Some("asterisk_queue_log") => Ok(Kind::AsteriskQueueLog),
            Some("freeswitch_esl") => Ok(Kind::FreeswitchEsl),
            Some(other) => Err(invalid(
                key,
                format!("{other:?} is not a source kind (websocket, asterisk_ami, asterisk_queue_log, freeswitch_esl)"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Websocket => "websocket",
            Kind::AsteriskAmi => "asterisk_ami",
            Kind::AsteriskQueueLog => "asterisk_queue_log",
            Kind::FreeswitchEsl => "freeswitch_esl",
        }
    }
}

impl SourceConfig {
    /// The keys of each kind; one of another kind is refused, naming it.
    fn foreign_keys(&self, kind: Kind) -> Vec<&'static str> {
        let set: [(&'static str, bool, &[Kind]); 20] = [
            ("url", self.url.is_some(), &[Kind::Websocket]),
            ("token", self.token.is_some(), &[Kind::Websocket]),
            ("token_file", self.token_file.is_some(), &[Kind::Websocket]),
            ("subscribe", self.subscribe.is_some(), &[Kind::Websocket]),
            ("acks", self.acks.is_some(), &[Kind::Websocket]),
            (
                "ca_file",
                self.ca_file.is_some(),
                &[Kind::Websocket, Kind::AsteriskAmi],
            ),
            (
                "address",
                self.address.is_some(),
                &[Kind::AsteriskAmi, Kind::FreeswitchEsl],
            ),
            ("username", self.username.is_some(), &[Kind::AsteriskAmi]),
            ("secret", self.secret.is_some(), &[Kind::AsteriskAmi]),
            (
                "secret_file",
                self.secret_file.is_some(),
                &[Kind::AsteriskAmi],
            ),
            ("tls", self.tls.is_some(), &[Kind::AsteriskAmi]),
            ("password", self.password.is_some(), &[Kind::FreeswitchEsl]),
            (
                "password_file",
                self.password_file.is_some(),
                &[Kind::FreeswitchEsl],
            ),
            ("path", self.path.is_some(), &[Kind::AsteriskQueueLog]),
            ("start", self.start.is_some(), &[Kind::AsteriskQueueLog]),
            ("site", self.site.is_some(), PLATFORMS),
            ("abandon_policy", self.abandon_policy.is_some(), PLATFORMS),
            (
                "max_message_bytes",
                self.max_message_bytes.is_some(),
                PLATFORMS,
            ),
            ("ping_interval", self.ping_interval.is_some(), NETWORKED),
            ("idle_timeout", self.idle_timeout.is_some(), NETWORKED),
        ];
        set.iter()
            .filter(|(_, present, kinds)| *present && !kinds.contains(&kind))
            .map(|(k, _, _)| *k)
            .collect()
    }

    /// Refuse a key that belongs to another kind, naming it.
    pub(super) fn only_keys_of(&self, name: &str, kind: Kind) -> Result<(), ConfigError> {
        match self.foreign_keys(kind).first() {
            None => Ok(()),
            Some(k) => Err(invalid(
                format!("sources.{name}.{k}"),
                format!("is not a key of kind = \"{}\"", kind.as_str()),
            )),
        }
    }
}

const PLATFORMS: &[Kind] = &[
    Kind::AsteriskAmi,
    Kind::AsteriskQueueLog,
    Kind::FreeswitchEsl,
];
const NETWORKED: &[Kind] = &[Kind::Websocket, Kind::AsteriskAmi, Kind::FreeswitchEsl];

/// The name is a label value and an environment-variable segment (which
/// the config layer lowercases): keep it short and plain.
pub(super) fn check_name(name: &str) -> Result<(), ConfigError> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
    if name.is_empty() || name.len() > 64 || !name.chars().all(plain) {
        return Err(invalid(
            format!("sources.{name}"),
            "source names are 1 to 64 characters of a-z, 0-9, _ and -",
        ));
    }
    Ok(())
}

/// Each value from the source when it sets it, else from `[client]`; an error
/// names the key the value came from.
pub(super) fn timings(
    d: &ClientDefaults,
    s: &SourceConfig,
    key: impl Fn(&str) -> String,
) -> Result<Timings, ConfigError> {
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
    Ok(Timings {
        connect_timeout,
        ping_interval,
        idle_timeout,
        backoff_initial,
        backoff_max,
        backoff_reset_after,
    })
}

impl SourceConfig {
    pub(super) fn validate(
        &self,
        name: &str,
        defaults: &ClientDefaults,
        ingest: &Ingest,
    ) -> Result<Source, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        self.only_keys_of(name, Kind::Websocket)?;
        let Some(url) = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            return Err(invalid(key("url"), "is required (a ws:// or wss:// URL)"));
        };
        let target = Target::parse(url).map_err(|why| invalid(key("url"), why))?;
        let token = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    key("token_file"),
                    "cannot be combined with token: set one of them",
                ))
            }
            (Some(t), None) => Some(Token::Inline(bearer(&key("token"), t.expose())?)),
            (None, Some(path)) => Some(Token::File(PathBuf::from(path))),
            (None, None) => None,
        };
        if self.ca_file.is_some() && !target.tls {
            return Err(invalid(key("ca_file"), "is only used with a wss:// url"));
        }
        if let Some(sub) = &self.subscribe {
            if sub.trim().is_empty() {
                return Err(invalid(key("subscribe"), "must not be empty when set"));
            }
        }
        let t = timings(defaults, self, key)?;
        Ok(Source {
            name: name.to_string(),
            target,
            token,
            ca_file: self.ca_file.as_ref().map(PathBuf::from),
            subscribe: self.subscribe.clone(),
            conn: Connection {
                acks: self.acks.unwrap_or(true),
                connect_timeout: t.connect_timeout,
                ping_interval: t.ping_interval,
                idle_timeout: t.idle_timeout,
                backoff_initial: t.backoff_initial,
                backoff_max: t.backoff_max,
                backoff_reset_after: t.backoff_reset_after,
                // One frame format, one limit: `[ingest]`'s.
                max_frame_bytes: ingest.limits.max_frame_bytes,
                read_buffer_bytes: ingest.limits.read_buffer_bytes,
                max_write_buffer_bytes: ingest.limits.max_write_buffer_bytes,
            },
        })
    }
}

/// A bearer token as it will go into the `Authorization` header: surrounding
/// whitespace (a token file's final newline) dropped, header-safe characters.
pub(super) fn bearer(key: &str, raw: &str) -> Result<Secret, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{error, read, validate};
    use super::Token;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn sources_default_to_none_and_take_client_defaults() {
        assert!(validate(&[]).unwrap().sources.is_empty());
        let (v, files) = read(&[
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
        assert_eq!(s.conn.ping_interval, Duration::from_secs(5));
        assert_eq!(s.conn.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.conn.backoff_max, Duration::from_secs(7));
        assert_eq!(s.conn.backoff_initial, Duration::from_millis(500));
        assert_eq!(s.subscribe.as_deref(), Some(r#"{"subscribe":"calls"}"#));
        assert!(!s.conn.acks);
        assert!(s.token.is_none());
        let s = &files.sources[0];
        assert_eq!(
            (s.name.as_str(), s.conn.ping_interval),
            ("pbx", v.sources[0].conn.ping_interval)
        );
        assert!(s.tls.is_none());
        assert!(s.token.is_none());
        let (v, files) = read(&[(
            "RINGWATCH__SOURCES__CLOUD__URL",
            "wss://events.example.com/v1",
        )])
        .unwrap();
        assert!(files.sources[0].tls.is_some());
        assert!(v.sources[0].conn.acks && files.sources[0].conn.acks);
    }

    #[test]
    fn tokens_come_from_env_or_file_and_never_show() {
        let dir = std::env::temp_dir().join(format!("ringwatch-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cr3t-from-file\n").unwrap();
        let (v, files) = read(&[
            ("RINGWATCH__SOURCES__A__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__A__TOKEN", "s3cr3t-from-env"),
            ("RINGWATCH__SOURCES__B__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__B__TOKEN_FILE", path.to_str().unwrap()),
        ])
        .unwrap();
        assert_eq!(v.sources[1].token, Some(Token::File(path.clone())));
        assert_eq!(
            files.sources[0].token.as_ref().unwrap().expose(),
            "s3cr3t-from-env"
        );
        assert_eq!(
            files.sources[1].token.as_ref().unwrap().expose(),
            "s3cr3t-from-file"
        );
        let printed = format!("{v:?} {files:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
        let e = error(&[
            ("RINGWATCH__SOURCES__A__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__A__TOKEN", "bad token"),
        ]);
        assert!(
            e.contains("sources.a.token") && !e.contains("bad token"),
            "{e}"
        );
        std::fs::write(&path, "bad token from file\n").unwrap();
        let e = error(&[
            ("RINGWATCH__SOURCES__A__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__A__TOKEN_FILE", path.to_str().unwrap()),
        ]);
        assert!(
            e.contains("sources.a.token_file") && !e.contains("bad token"),
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

    #[test]
    fn client_defaults_are_checked_without_sources() {
        assert!(error(&[("RINGWATCH__CLIENT__BACKOFF_MAX", "0.1")]).contains("client.backoff_max"));
        assert!(error(&[("RINGWATCH__CLIENT__IDLE_TIMEOUT", "1")]).contains("client.idle_timeout"));
        let v = validate(&[
            ("RINGWATCH__SOURCES__P__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__P__CA_FILE", "/nonexistent/ca"),
        ]);
        assert!(
            v.is_err(),
            "a ca_file on ws:// is refused without reading it"
        );
        let v = validate(&[
            ("RINGWATCH__SOURCES__P__URL", "wss://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__P__CA_FILE", "/nonexistent/ca"),
        ])
        .unwrap();
        assert_eq!(
            v.sources[0].ca_file.as_deref(),
            Some(Path::new("/nonexistent/ca"))
        );
    }
}
