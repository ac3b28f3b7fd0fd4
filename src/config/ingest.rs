//! `[ingest]`: the WebSocket ingest listener, its connection limits and its
//! guards, validated into [`Ingest`], which gives the server its
//! [`IngestSettings`] once the guards are built from the files.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{addr, count, duration, invalid, ConfigError, EdgeFiles};
use crate::auth::Auth;
use crate::ingest::server::{IngestSettings, Limits};
use crate::ingest::throttle::RateLimit;
use crate::tls::Tls;

/// The least `ingest.max_write_buffer_bytes`: one large acknowledgement
/// (and more than the acks a connection buffers before a write).
pub const MIN_WRITE_BUFFER_BYTES: usize = 64 * 1024;

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

/// `[ingest]`, validated: the listener's address, the server's own
/// [`Limits`], and the files its guards are built from.
#[derive(Clone, Debug)]
pub struct Ingest {
    pub listen: SocketAddr,
    pub limits: Limits,
    pub edge: EdgeFiles,
}

impl IngestConfig {
    pub(super) fn validate(&self) -> Result<Ingest, ConfigError> {
        if !(128..=64 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return Err(invalid(
                "ingest.max_frame_bytes",
                format!(
                    "must be between 128 and 67108864 bytes, got {}",
                    self.max_frame_bytes
                ),
            ));
        }
        if !(256..=16 * 1024 * 1024).contains(&self.read_buffer_bytes) {
            return Err(invalid(
                "ingest.read_buffer_bytes",
                format!(
                    "must be between 256 and 16777216 bytes, got {}",
                    self.read_buffer_bytes
                ),
            ));
        }
        if self.max_write_buffer_bytes < MIN_WRITE_BUFFER_BYTES {
            return Err(invalid(
                "ingest.max_write_buffer_bytes",
                format!(
                    "must be at least 65536 bytes (one large acknowledgement), got {}",
                    self.max_write_buffer_bytes
                ),
            ));
        }
        let ping_interval = duration("ingest.ping_interval", self.ping_interval, 0.1, 3_600.0)?;
        let idle_timeout = duration("ingest.idle_timeout", self.idle_timeout, 0.1, 86_400.0)?;
        if idle_timeout <= ping_interval {
            return Err(invalid(
                "ingest.idle_timeout",
                "must be longer than ingest.ping_interval, or live peers would be closed",
            ));
        }
        Ok(Ingest {
            listen: addr("ingest.listen", &self.listen)?,
            limits: Limits {
                max_frame_bytes: self.max_frame_bytes,
                read_buffer_bytes: self.read_buffer_bytes,
                max_write_buffer_bytes: self.max_write_buffer_bytes,
                ping_interval,
                idle_timeout,
                handshake_timeout: duration(
                    "ingest.handshake_timeout",
                    self.handshake_timeout,
                    0.1,
                    600.0,
                )?,
                max_connections: count("ingest.max_connections", self.max_connections, 1)?,
                rate: self.rate()?,
            },
            edge: EdgeFiles::validate(
                "ingest",
                &self.tokens_file,
                &self.tls_cert_file,
                &self.tls_key_file,
            )?,
        })
    }

    fn rate(&self) -> Result<Option<RateLimit>, ConfigError> {
        let eps = self.max_events_per_second;
        if eps == 0.0 {
            return Ok(None);
        }
        if !eps.is_finite() || !(0.01..=10_000_000.0).contains(&eps) {
            return Err(invalid(
                "ingest.max_events_per_second",
                format!("must be 0 (no limit) or between 0.01 and 10000000 events per second, got {eps}"),
            ));
        }
        // 0: one second's worth.
        let burst = if self.events_burst == 0 {
            eps.ceil() as u32
        } else {
            self.events_burst
        };
        Ok(Some(RateLimit::new(eps, burst)))
    }
}

impl Ingest {
    /// What the ingest server runs with; `auth` and `tls` are built from the
    /// files [`Ingest::edge`] names (see [`super::Validated::read_files`]).
    pub fn settings(&self, auth: Auth, tls: Option<Tls>) -> IngestSettings {
        IngestSettings {
            limits: self.limits.clone(),
            auth,
            tls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use crate::ingest::throttle::RateLimit;

    #[test]
    fn errors_name_the_key() {
        assert!(error(&[
            ("RINGWATCH__INGEST__IDLE_TIMEOUT", "5"),
            ("RINGWATCH__INGEST__PING_INTERVAL", "10")
        ])
        .contains("ingest.idle_timeout"));
        assert!(error(&[("RINGWATCH__INGEST__MAX_FRAME_BYTES", "100")])
            .contains("ingest.max_frame_bytes"));
        assert!(error(&[("RINGWATCH__INGEST__LISTEN", "nowhere")]).contains("ingest.listen"));
    }

    #[test]
    fn listener_guards_default_to_open_plain_and_unthrottled() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.ingest.limits.max_connections, 1000);
        assert!(v.ingest.limits.rate.is_none());
        assert!(v.ingest.edge.tokens_file.is_none() && v.ingest.edge.tls.is_none());
        let v = validate(&[("RINGWATCH__INGEST__MAX_EVENTS_PER_SECOND", "2.5")]).unwrap();
        assert_eq!(v.ingest.limits.rate, Some(RateLimit::new(2.5, 3)));
        let v = validate(&[
            ("RINGWATCH__INGEST__MAX_EVENTS_PER_SECOND", "100"),
            ("RINGWATCH__INGEST__EVENTS_BURST", "10"),
        ])
        .unwrap();
        assert_eq!(v.ingest.limits.rate, Some(RateLimit::new(100.0, 10)));
    }
}
