//! `[http]`: where `/metrics`, `/healthz` and `/readyz` are served, and what
//! guards `/metrics`.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{addr, ConfigError, EdgeFiles};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    pub metrics_tokens_file: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

/// `[http]`, validated. The token file guards `/metrics` only; the probes
/// stay open.
#[derive(Clone, Debug)]
pub struct Http {
    pub listen: SocketAddr,
    pub edge: EdgeFiles,
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<Http, ConfigError> {
        Ok(Http {
            listen: addr("http.listen", &self.listen)?,
            edge: EdgeFiles::validate(
                "http",
                &self.metrics_tokens_file,
                &self.tls_cert_file,
                &self.tls_key_file,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};

    #[test]
    fn defaults_and_errors() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.http.listen.port(), 9466);
        assert!(v.http.edge.tokens_file.is_none() && v.http.edge.tls.is_none());
        assert!(error(&[("RINGWATCH__HTTP__LISTEN", "nowhere")]).contains("http.listen"));
    }
}
