//! `[alerts]`: pushing supervisor alerts to Alertmanager, validated into
//! [`crate::alerts::AlertSettings`] (none when no URL is set).

use serde::Deserialize;

use super::{duration, invalid, ConfigError};
use crate::alerts::AlertSettings;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    pub alertmanager_url: String,
    pub interval: f64,
    pub resend_interval: f64,
    pub timeout: f64,
}

impl AlertsConfig {
    /// The timings are checked even with alerts off, so a bad value is found
    /// when it is written rather than the day alerts are switched on.
    pub(super) fn validate(&self) -> Result<Option<AlertSettings>, ConfigError> {
        let interval = duration("alerts.interval", self.interval, 0.05, 60.0)?;
        let resend_interval =
            duration("alerts.resend_interval", self.resend_interval, 1.0, 3_600.0)?;
        if resend_interval < interval {
            return Err(invalid(
                "alerts.resend_interval",
                "must not be shorter than alerts.interval",
            ));
        }
        let timeout = duration("alerts.timeout", self.timeout, 0.1, 60.0)?;
        let url = self.alertmanager_url.trim();
        if url.is_empty() {
            return Ok(None);
        }
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "alerts.alertmanager_url",
                format!("must be an http:// or https:// URL, got {url:?}"),
            ));
        }
        Ok(Some(AlertSettings {
            alertmanager_url: url.to_string(),
            interval,
            resend_interval,
            timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use std::time::Duration;

    #[test]
    fn off_by_default_and_checked() {
        assert!(validate(&[]).unwrap().alerts.is_none());
        let a = validate(&[("RINGWATCH__ALERTS__ALERTMANAGER_URL", " http://am:9093 ")])
            .unwrap()
            .alerts
            .unwrap();
        assert_eq!(a.alertmanager_url, "http://am:9093");
        assert_eq!(a.resend_interval, Duration::from_secs(30));
        assert!(error(&[("RINGWATCH__ALERTS__ALERTMANAGER_URL", "am:9093")])
            .contains("alerts.alertmanager_url"));
        assert!(error(&[
            ("RINGWATCH__ALERTS__INTERVAL", "5"),
            ("RINGWATCH__ALERTS__RESEND_INTERVAL", "2")
        ])
        .contains("alerts.resend_interval"));
        assert!(error(&[("RINGWATCH__ALERTS__TIMEOUT", "0")]).contains("alerts.timeout"));
    }
}
