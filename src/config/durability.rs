//! `[durability]`: the journal and snapshots, validated into
//! [`crate::durability::Settings`] (none when `dir` is empty).

use serde::Deserialize;

use super::{duration, ConfigError};
use crate::durability::{Fsync, Settings};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurabilityConfig {
    pub dir: String,
    pub fsync: FsyncMode,
    pub fsync_interval: f64,
    pub snapshot_interval: f64,
}

/// `durability.fsync` as written; [`Fsync`] carries the interval with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    Interval,
    Batch,
}

impl DurabilityConfig {
    /// The intervals are checked even with durability off, as any key is.
    pub(super) fn validate(&self) -> Result<Option<Settings>, ConfigError> {
        let interval = duration(
            "durability.fsync_interval",
            self.fsync_interval,
            0.001,
            60.0,
        )?;
        let snapshot_interval = duration(
            "durability.snapshot_interval",
            self.snapshot_interval,
            1.0,
            86_400.0,
        )?;
        let dir = self.dir.trim();
        if dir.is_empty() {
            return Ok(None);
        }
        Ok(Some(Settings {
            dir: dir.into(),
            fsync: match self.fsync {
                FsyncMode::Batch => Fsync::Batch,
                FsyncMode::Interval => Fsync::Interval(interval),
            },
            snapshot_interval,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use crate::durability::Fsync;
    use std::time::Duration;

    #[test]
    fn durability_keys_are_typed_and_checked() {
        let d = validate(&[]).unwrap().durability.unwrap();
        assert_eq!(d.dir, std::path::PathBuf::from("data"));
        assert_eq!(d.fsync, Fsync::Interval(Duration::from_millis(200)));
        assert_eq!(d.snapshot_interval, Duration::from_secs(60));
        let batch = validate(&[("RINGWATCH__DURABILITY__FSYNC", "batch")]).unwrap();
        assert_eq!(batch.durability.unwrap().fsync, Fsync::Batch);
        let off = validate(&[("RINGWATCH__DURABILITY__DIR", "")]).unwrap();
        assert!(
            off.durability.is_none(),
            "an empty dir keeps state in memory only"
        );
        assert!(error(&[("RINGWATCH__DURABILITY__FSYNC", "sometimes")]).contains("fsync"));
        assert!(error(&[("RINGWATCH__DURABILITY__FSYNC_INTERVAL", "0")])
            .contains("durability.fsync_interval"));
        assert!(
            error(&[("RINGWATCH__DURABILITY__SNAPSHOT_INTERVAL", "0.5")])
                .contains("durability.snapshot_interval")
        );
    }
}
