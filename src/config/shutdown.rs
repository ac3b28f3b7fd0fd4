//! `[shutdown]`: how long the graceful drain may take.

use std::time::Duration;

use serde::Deserialize;

use super::{duration, ConfigError};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub drain_timeout: f64,
}

/// `[shutdown]`, validated.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// The whole drain, from the signal to exit.
    pub drain_timeout: Duration,
}

impl ShutdownConfig {
    pub(super) fn validate(&self) -> Result<Shutdown, ConfigError> {
        Ok(Shutdown {
            drain_timeout: duration("shutdown.drain_timeout", self.drain_timeout, 0.0, 3_600.0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use std::time::Duration;

    #[test]
    fn drain_timeout() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.shutdown.drain_timeout, Duration::from_secs(10));
        assert!(error(&[("RINGWATCH__SHUTDOWN__DRAIN_TIMEOUT", "-1")])
            .contains("shutdown.drain_timeout"));
    }
}
