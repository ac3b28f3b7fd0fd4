//! What guards a listener, as configured: the token file and the TLS pair,
//! shared by `[ingest]` and `[http]`. Only paths: the files are read by
//! [`super::files`].

use std::path::PathBuf;

use super::{invalid, ConfigError};

/// The files that guard one listener.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeFiles {
    /// `None`: open to anyone who reaches the port.
    pub tokens_file: Option<PathBuf>,
    /// `None`: plain TCP.
    pub tls: Option<TlsPaths>,
}

/// A certificate chain and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EdgeFiles {
    /// An empty path means none; the TLS pair is both files or neither.
    /// `section` is `ingest` or `http`, for the keys `<section>.tls_*_file`.
    pub(super) fn validate(
        section: &str,
        tokens_file: &str,
        cert: &str,
        key: &str,
    ) -> Result<EdgeFiles, ConfigError> {
        let path = |p: &str| Some(p.trim()).filter(|p| !p.is_empty()).map(PathBuf::from);
        let cert_key = format!("{section}.tls_cert_file");
        let key_key = format!("{section}.tls_key_file");
        let tls = match (path(cert), path(key)) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid(key_key, format!("must be set when {cert_key} is")))
            }
            (None, Some(_)) => {
                return Err(invalid(cert_key, format!("must be set when {key_key} is")))
            }
            (Some(cert), Some(key)) => Some(TlsPaths { cert, key }),
        };
        Ok(EdgeFiles {
            tokens_file: path(tokens_file),
            tls,
        })
    }
}
