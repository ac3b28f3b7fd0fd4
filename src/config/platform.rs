//! `[sources.<name>]` with a platform `kind` (`asterisk_ami`,
//! `asterisk_queue_log`, `freeswitch_esl`), validated into a
//! [`PlatformSource`]: keys checked per kind, secrets only named (a file)
//! or taken from the environment, read by the file-reading step into the
//! source's own [`crate::sources::Platform`] settings.

use std::path::PathBuf;

use super::client::{timings, ClientDefaults, Kind, SourceConfig};
use super::{invalid, ConfigError, Ingest};
use crate::ingest::client::Secret;
use crate::sources::asterisk_queue_log::Start;
use crate::sources::{AbandonPolicy, Address, Common, Translate};

/// Where a secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// From the environment (`RINGWATCH__SOURCES__NAME__SECRET`) or inline.
    Inline(Secret),
    /// A file, read by the file-reading step (surrounding whitespace dropped).
    File(PathBuf),
}

/// What each platform needs beyond [`Common`].
#[derive(Clone, Debug)]
pub enum Spec {
    AsteriskAmi {
        address: Address,
        username: String,
        secret: SecretRef,
        tls: bool,
        ca_file: Option<PathBuf>,
    },
    AsteriskQueueLog {
        path: PathBuf,
        start: Start,
    },
    FreeswitchEsl {
        address: Address,
        password: SecretRef,
    },
}

/// One platform `[sources.<name>]`, validated; files not read yet.
#[derive(Clone, Debug)]
pub struct PlatformSource {
    pub common: Common,
    pub spec: Spec,
}

/// Platform messages bigger than this are skipped by default (an AMI
/// `QueueStatus` list entry or an ESL event with every channel variable is
/// a few KiB).
const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

pub(super) fn validate(
    name: &str,
    kind: Kind,
    s: &SourceConfig,
    defaults: &ClientDefaults,
    ingest: &Ingest,
) -> Result<PlatformSource, ConfigError> {
    let key = |k: &str| format!("sources.{name}.{k}");
    s.only_keys_of(name, kind)?;
    let t = timings(defaults, s, key)?;
    let site = match s.site.as_deref().map(str::trim) {
        None => None,
        Some(v) if v.is_empty() || v.chars().count() > 64 || v.contains(':') => {
            return Err(invalid(
                key("site"),
                "must be 1 to 64 characters, without ':' (it is part of every call id)",
            ))
        }
        Some(v) => Some(v.into()),
    };
    let abandon_policy = match s.abandon_policy.as_deref() {
        None => AbandonPolicy::default(),
        Some(v) => AbandonPolicy::parse(v.trim()).ok_or_else(|| {
            invalid(
                key("abandon_policy"),
                format!("{v:?} is not \"failed\" or \"abandoned\""),
            )
        })?,
    };
    let max_message_bytes = match s.max_message_bytes {
        None => DEFAULT_MAX_MESSAGE_BYTES,
        Some(n) if (256..=16 * 1024 * 1024).contains(&n) => n,
        Some(n) => {
            return Err(invalid(
                key("max_message_bytes"),
                format!("must be 256 to 16777216, got {n}"),
            ))
        }
    };
    let common = Common {
        name: name.to_string(),
        translate: Translate {
            site,
            abandon_policy,
        },
        connect_timeout: t.connect_timeout,
        ping_interval: t.ping_interval,
        idle_timeout: t.idle_timeout,
        backoff_initial: t.backoff_initial,
        backoff_max: t.backoff_max,
        backoff_reset_after: t.backoff_reset_after,
        max_frame_bytes: ingest.limits.max_frame_bytes,
        max_message_bytes,
    };
    let address = |default_port: u16| -> Result<Address, ConfigError> {
        let Some(a) = s.address.as_deref().filter(|a| !a.trim().is_empty()) else {
            return Err(invalid(
                key("address"),
                format!("is required (host:port, port {default_port} by default)"),
            ));
        };
        Address::parse(a, default_port).map_err(|why| invalid(key("address"), why))
    };
    let spec = match kind {
        Kind::Websocket => unreachable!("websocket sources are validated in client.rs"),
        Kind::AsteriskAmi => {
            let username = s
                .username
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| invalid(key("username"), "is required (the manager.conf user)"))?;
            if username.chars().any(|c| c.is_control()) {
                return Err(invalid(key("username"), "must not hold control characters"));
            }
            let secret = secret_ref(&key, s.secret.as_ref(), s.secret_file.as_deref(), "secret")?;
            let tls = s.tls.unwrap_or(false);
            if s.ca_file.is_some() && !tls {
                return Err(invalid(key("ca_file"), "is only used with tls = true"));
            }
            Spec::AsteriskAmi {
                address: address(5038)?,
                username: username.to_string(),
                secret,
                tls,
                ca_file: s.ca_file.as_ref().map(PathBuf::from),
            }
        }
        Kind::AsteriskQueueLog => {
            let path = s
                .path
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| {
                    invalid(
                        key("path"),
                        "is required (usually /var/log/asterisk/queue_log)",
                    )
                })?;
            let start = match s.start.as_deref().map(str::trim) {
                None | Some("end") => Start::End,
                Some("beginning") => Start::Beginning,
                Some(v) => {
                    return Err(invalid(
                        key("start"),
                        format!("{v:?} is not \"end\" or \"beginning\""),
                    ))
                }
            };
            Spec::AsteriskQueueLog {
                path: PathBuf::from(path),
                start,
            }
        }
        Kind::FreeswitchEsl => Spec::FreeswitchEsl {
            address: address(8021)?,
            password: secret_ref(
                &key,
                s.password.as_ref(),
                s.password_file.as_deref(),
                "password",
            )?,
        },
    };
    Ok(PlatformSource { common, spec })
}

/// `secret` / `secret_file` (or `password` / `password_file`): exactly one.
fn secret_ref(
    key: &impl Fn(&str) -> String,
    inline: Option<&Secret>,
    file: Option<&str>,
    what: &str,
) -> Result<SecretRef, ConfigError> {
    let file_key = format!("{what}_file");
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(
            key(&file_key),
            format!("cannot be combined with {what}: set one of them"),
        )),
        (Some(v), None) => Ok(SecretRef::Inline(checked_secret(&key(what), v.expose())?)),
        (None, Some(path)) => Ok(SecretRef::File(PathBuf::from(path))),
        (None, None) => Err(invalid(
            key(&file_key),
            format!(
                "is required: a file holding the {what} (or set it in the environment as RINGWATCH__SOURCES__<NAME>__{})",
                what.to_uppercase()
            ),
        )),
    }
}

/// A secret as it goes on the wire: one line, surrounding whitespace (a
/// file's final newline) dropped. The message never echoes it.
pub(super) fn checked_secret(key: &str, raw: &str) -> Result<Secret, ConfigError> {
    let v = raw.trim();
    if v.is_empty() {
        return Err(invalid(key, "is empty"));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(invalid(key, "must be one line without control characters"));
    }
    Ok(Secret::new(v))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, read};
    use crate::sources::{AbandonPolicy, Platform};
    use std::time::Duration;

    #[test]
    fn each_platform_kind_is_read_with_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ami-secret");
        std::fs::write(&secret, "s3cr3t-ami\n").unwrap();
        let secret = secret.to_str().unwrap();
        let (v, files) = read(&[
            ("RINGWATCH__SOURCES__PBX__KIND", "asterisk_ami"),
            ("RINGWATCH__SOURCES__PBX__ADDRESS", "10.0.0.5"),
            ("RINGWATCH__SOURCES__PBX__USERNAME", "ringwatch"),
            ("RINGWATCH__SOURCES__PBX__SECRET_FILE", secret),
            ("RINGWATCH__SOURCES__PBX__SITE", "hq"),
            ("RINGWATCH__SOURCES__PBX__ABANDON_POLICY", "abandoned"),
            ("RINGWATCH__SOURCES__QL__KIND", "asterisk_queue_log"),
            (
                "RINGWATCH__SOURCES__QL__PATH",
                "/var/log/asterisk/queue_log",
            ),
            ("RINGWATCH__SOURCES__QL__START", "beginning"),
            ("RINGWATCH__SOURCES__FS__KIND", "freeswitch_esl"),
            ("RINGWATCH__SOURCES__FS__ADDRESS", "127.0.0.1"),
            ("RINGWATCH__SOURCES__FS__PASSWORD", "s3cr3t-esl"),
            ("RINGWATCH__SOURCES__FS__PING_INTERVAL", "7"),
            ("RINGWATCH__SOURCES__WS__URL", "ws://127.0.0.1:1/"),
        ])
        .unwrap();
        assert_eq!(v.sources.len(), 1, "the websocket one");
        assert_eq!(v.platforms.len(), 3);
        let mut ami = None;
        let mut ql = None;
        let mut esl = None;
        for p in &files.platforms {
            match p {
                Platform::AsteriskAmi(s) => ami = Some(s.clone()),
                Platform::AsteriskQueueLog(s) => ql = Some(s.clone()),
                Platform::FreeswitchEsl(s) => esl = Some(s.clone()),
            }
        }
        let ami = ami.unwrap();
        assert_eq!(ami.address.to_string(), "10.0.0.5:5038");
        assert_eq!(ami.username, "ringwatch");
        assert_eq!(ami.secret.expose(), "s3cr3t-ami");
        assert_eq!(ami.common.translate.site.as_deref(), Some("hq"));
        assert_eq!(
            ami.common.translate.abandon_policy,
            AbandonPolicy::Abandoned
        );
        assert!(ami.tls.is_none());
        let ql = ql.unwrap();
        assert_eq!(ql.path.to_str(), Some("/var/log/asterisk/queue_log"));
        assert_eq!(
            ql.start,
            crate::sources::asterisk_queue_log::Start::Beginning
        );
        assert_eq!(ql.common.translate.abandon_policy, AbandonPolicy::Failed);
        let esl = esl.unwrap();
        assert_eq!(esl.address.to_string(), "127.0.0.1:8021");
        assert_eq!(esl.password.expose(), "s3cr3t-esl");
        assert_eq!(esl.common.ping_interval, Duration::from_secs(7));
        let printed = format!("{v:?} {files:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }

    #[test]
    fn platform_errors_name_the_key() {
        let ami = [
            ("RINGWATCH__SOURCES__P__KIND", "asterisk_ami"),
            ("RINGWATCH__SOURCES__P__ADDRESS", "127.0.0.1:5038"),
            ("RINGWATCH__SOURCES__P__USERNAME", "u"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut env = ami.to_vec();
            env.extend_from_slice(extra);
            error(&env)
        };
        assert!(with(&[]).contains("sources.p.secret_file"), "{}", with(&[]));
        let secret = ("RINGWATCH__SOURCES__P__SECRET", "x");
        assert!(
            with(&[secret, ("RINGWATCH__SOURCES__P__URL", "ws://h/")]).contains("sources.p.url")
        );
        assert!(with(&[secret, ("RINGWATCH__SOURCES__P__PATH", "/x")]).contains("sources.p.path"));
        assert!(with(&[secret, ("RINGWATCH__SOURCES__P__ADDRESS", "h:0")])
            .contains("sources.p.address"));
        assert!(
            with(&[secret, ("RINGWATCH__SOURCES__P__ABANDON_POLICY", "ignore")])
                .contains("sources.p.abandon_policy")
        );
        assert!(with(&[secret, ("RINGWATCH__SOURCES__P__SITE", "a:b")]).contains("sources.p.site"));
        assert!(
            with(&[secret, ("RINGWATCH__SOURCES__P__CA_FILE", "/etc/hostname")])
                .contains("sources.p.ca_file")
        );
        assert!(
            with(&[secret, ("RINGWATCH__SOURCES__P__MAX_MESSAGE_BYTES", "10")])
                .contains("sources.p.max_message_bytes")
        );
        let e = with(&[("RINGWATCH__SOURCES__P__SECRET_FILE", "/nonexistent/secret")]);
        assert!(e.contains("sources.p.secret_file"), "{e}");
        assert!(error(&[("RINGWATCH__SOURCES__P__KIND", "sip")]).contains("sources.p.kind"));
        assert!(
            error(&[("RINGWATCH__SOURCES__P__KIND", "asterisk_queue_log")])
                .contains("sources.p.path")
        );
        assert!(error(&[
            ("RINGWATCH__SOURCES__P__KIND", "asterisk_queue_log"),
            ("RINGWATCH__SOURCES__P__PATH", "/x"),
            ("RINGWATCH__SOURCES__P__START", "middle"),
        ])
        .contains("sources.p.start"));
        assert!(error(&[
            ("RINGWATCH__SOURCES__P__KIND", "freeswitch_esl"),
            ("RINGWATCH__SOURCES__P__ADDRESS", "127.0.0.1"),
        ])
        .contains("sources.p.password_file"));
        // A websocket source refuses a platform key, naming it.
        assert!(error(&[
            ("RINGWATCH__SOURCES__W__URL", "ws://127.0.0.1:1/"),
            ("RINGWATCH__SOURCES__W__USERNAME", "u"),
        ])
        .contains("sources.w.username"));
        // A secret with a newline in the middle never reaches the wire, and
        // is not echoed.
        let e = with(&[("RINGWATCH__SOURCES__P__SECRET", "top\nsecret")]);
        assert!(e.contains("sources.p.secret") && !e.contains("top"), "{e}");
    }
}
