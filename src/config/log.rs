//! `[log]`: the filter and line format, validated into
//! [`crate::logging::LogSettings`].

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::logging::{LogFormat, LogSettings};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

impl LogConfig {
    pub(super) fn validate(&self) -> Result<LogSettings, ConfigError> {
        if self.level.trim().is_empty() {
            return Err(invalid("log.level", "must not be empty"));
        }
        // Parsed here, not only at logging start, so a bad filter is a
        // configuration error (exit 64) rather than a silent fallback.
        tracing_subscriber::EnvFilter::try_new(&self.level).map_err(|e| {
            invalid(
                "log.level",
                format!("{:?} is not a valid filter: {e}", self.level),
            )
        })?;
        Ok(LogSettings {
            level: self.level.clone(),
            format: self.format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use crate::logging::LogFormat;

    #[test]
    fn level_and_format() {
        let v = validate(&[("RINGWATCH__LOG__FORMAT", "json")]).unwrap();
        assert_eq!(
            (v.log.level.as_str(), v.log.format),
            ("info", LogFormat::Json)
        );
        assert!(error(&[("RINGWATCH__LOG__LEVEL", "ringwatch=loud")]).contains("log.level"));
        assert!(error(&[("RINGWATCH__LOG__LEVEL", " ")]).contains("log.level"));
        assert!(error(&[("RINGWATCH__LOG__FORMAT", "xml")]).contains("format"));
    }
}
