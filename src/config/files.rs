//! The file-reading step: everything a validated configuration only names
//! (bearer-token files, TLS certificates and keys, a source's token file and
//! CA file) is read and checked here, and nowhere else in configuration.
//! `main` runs it right after validation, before any port is bound; its
//! errors are configuration errors, naming the key (exit 64).

use super::client::bearer;
use super::platform::checked_secret;
use super::{
    invalid, ConfigError, EdgeFiles, PlatformSource, SecretRef, Source, Spec, Token, Validated,
};
use crate::auth::TokenFile;
use crate::ingest::client::Secret;
use crate::ingest::client::{self, SourceSettings};
use crate::sources::{asterisk_ami, asterisk_queue_log, freeswitch_esl, Platform};
use crate::tls::{TlsError, TlsFiles};

/// What the files named by a [`Validated`] hold.
#[derive(Clone, Debug)]
pub struct Files {
    pub ingest: EdgeGuards,
    pub http: EdgeGuards,
    /// One per [`Validated::sources`], in the same order.
    pub sources: Vec<SourceSettings>,
    /// One per [`Validated::platforms`], in the same order.
    pub platforms: Vec<Platform>,
}

/// The guards of one listener, loaded.
#[derive(Clone, Debug, Default)]
pub struct EdgeGuards {
    /// `None`: open to anyone who reaches the port.
    pub tokens: Option<TokenFile>,
    pub tls: Option<TlsFiles>,
}

impl Validated {
    /// Read and check every file the configuration names. SIGHUP re-reads
    /// the listeners' files later (`reload.rs`); a source's token and CA
    /// are read here only.
    pub fn read_files(&self) -> Result<Files, ConfigError> {
        Ok(Files {
            ingest: read_edge(&self.ingest.edge, "ingest", "ingest.tokens_file")?,
            http: read_edge(&self.http.edge, "http", "http.metrics_tokens_file")?,
            sources: self
                .sources
                .iter()
                .map(read_source)
                .collect::<Result<_, _>>()?,
            platforms: self
                .platforms
                .iter()
                .map(read_platform)
                .collect::<Result<_, _>>()?,
        })
    }
}

fn read_edge(edge: &EdgeFiles, section: &str, tokens_key: &str) -> Result<EdgeGuards, ConfigError> {
    let tokens = edge
        .tokens_file
        .as_deref()
        .map(|path| TokenFile::load(path).map_err(|e| invalid(tokens_key, e.to_string())))
        .transpose()?;
    let tls = match &edge.tls {
        None => None,
        Some(paths) => Some(match crate::tls::load_pair(&paths.cert, &paths.key) {
            Ok(pair) => TlsFiles {
                cert: paths.cert.clone(),
                key: paths.key.clone(),
                pair,
            },
            Err(e @ TlsError::Cert { .. }) => {
                return Err(invalid(format!("{section}.tls_cert_file"), e.to_string()))
            }
            Err(e @ TlsError::Key { .. }) => {
                return Err(invalid(format!("{section}.tls_key_file"), e.to_string()))
            }
        }),
    };
    Ok(EdgeGuards { tokens, tls })
}

fn read_source(s: &Source) -> Result<SourceSettings, ConfigError> {
    let key = |k: &str| format!("sources.{}.{k}", s.name);
    let token = match &s.token {
        None => None,
        Some(Token::Inline(secret)) => Some(secret.clone()),
        Some(Token::File(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    key("token_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some(bearer(&key("token_file"), &text)?)
        }
    };
    let tls = if s.target.tls {
        let ca_certs = match &s.ca_file {
            Some(path) => client::read_ca_file(path).map_err(|why| invalid(key("ca_file"), why))?,
            None => Vec::new(),
        };
        Some(client::tls_config(&ca_certs).map_err(|why| invalid(key("ca_file"), why))?)
    } else {
        None
    };
    Ok(SourceSettings {
        name: s.name.clone(),
        target: s.target.clone(),
        token,
        subscribe: s.subscribe.clone(),
        tls,
        conn: s.conn.clone(),
    })
}

fn read_platform(p: &PlatformSource) -> Result<Platform, ConfigError> {
    let key = |k: &str| format!("sources.{}.{k}", p.common.name);
    let common = p.common.clone();
    Ok(match &p.spec {
        Spec::AsteriskAmi {
            address,
            username,
            secret,
            tls,
            ca_file,
        } => {
            let tls = if *tls {
                let ca_certs = match ca_file {
                    Some(path) => {
                        client::read_ca_file(path).map_err(|why| invalid(key("ca_file"), why))?
                    }
                    None => Vec::new(),
                };
                Some(client::tls_config(&ca_certs).map_err(|why| invalid(key("ca_file"), why))?)
            } else {
                None
            };
            Platform::AsteriskAmi(asterisk_ami::Settings {
                common,
                address: address.clone(),
                username: username.clone(),
                secret: read_secret(&key("secret_file"), secret)?,
                tls,
            })
        }
        Spec::AsteriskQueueLog { path, start } => {
            Platform::AsteriskQueueLog(asterisk_queue_log::Settings {
                common,
                path: path.clone(),
                start: *start,
            })
        }
        Spec::FreeswitchEsl { address, password } => {
            Platform::FreeswitchEsl(freeswitch_esl::Settings {
                common,
                address: address.clone(),
                password: read_secret(&key("password_file"), password)?,
            })
        }
    })
}

/// A secret from its file (or as given); the error names the file key and
/// never the secret.
fn read_secret(file_key: &str, s: &SecretRef) -> Result<Secret, ConfigError> {
    match s {
        SecretRef::Inline(secret) => Ok(secret.clone()),
        SecretRef::File(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(file_key, format!("cannot read {}: {e}", path.display())))?;
            checked_secret(file_key, &text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, read};

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
        let (v, files) = read(&[
            ("RINGWATCH__INGEST__TOKENS_FILE", &p("tokens")),
            ("RINGWATCH__HTTP__METRICS_TOKENS_FILE", &p("tokens")),
            ("RINGWATCH__INGEST__TLS_CERT_FILE", &p("a.crt")),
            ("RINGWATCH__INGEST__TLS_KEY_FILE", &p("a.key")),
            ("RINGWATCH__HTTP__TLS_CERT_FILE", &p("b.crt")),
            ("RINGWATCH__HTTP__TLS_KEY_FILE", &p("b.key")),
        ])
        .unwrap();
        let tokens = files.ingest.tokens.as_ref().unwrap();
        assert_eq!(tokens.tokens.names().collect::<Vec<_>>(), ["pbx"]);
        assert!(files.http.tokens.is_some());
        assert_eq!(files.ingest.tls.as_ref().unwrap().cert, dir.join("a.crt"));
        assert_eq!(files.http.tls.as_ref().unwrap().key, dir.join("b.key"));
        assert_eq!(v.http.edge.tls.as_ref().unwrap().key, dir.join("b.key"));
        // Debug output (it may end up in a log) shows no token.
        assert!(!format!("{v:?} {files:?}").contains("0123456789abcdef0123"));
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
}
