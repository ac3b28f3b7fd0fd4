//! `[metrics]` and `[metrics.buckets]`: label caps, declared queues, the
//! quantile window and the extra histogram boundaries.

use serde::Deserialize;

use super::{count, invalid, seconds, ConfigError};
use crate::event::Millis;
use crate::metrics::BucketConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub max_queues: usize,
    pub max_sites: usize,
    pub per_agent: bool,
    pub max_agents: usize,
    pub queues: Vec<String>,
    pub quantile_window: f64,
    pub buckets: BucketsToml,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketsToml {
    pub time_to_answer: Vec<f64>,
    pub rings: Vec<f64>,
    pub hold: Vec<f64>,
    pub lateness: Vec<f64>,
}

/// `[metrics]`, validated. The label caps are also carried by
/// [`crate::rules::Settings`], which enforces them.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub max_queues: usize,
    pub max_sites: usize,
    pub per_agent: bool,
    pub max_agents: usize,
    /// Queues whose series exist from startup.
    pub queues: Vec<String>,
    pub quantile_window: Millis,
    pub buckets: BucketConfig,
}

impl MetricsConfig {
    pub(super) fn validate(&self) -> Result<Metrics, ConfigError> {
        for q in &self.queues {
            let n = q.chars().count();
            if !(1..=64).contains(&n) {
                return Err(invalid(
                    "metrics.queues",
                    format!("queue names are 1 to 64 characters, got {q:?}"),
                ));
            }
        }
        Ok(Metrics {
            max_queues: count("metrics.max_queues", self.max_queues, 1)?,
            max_sites: count("metrics.max_sites", self.max_sites, 1)?,
            per_agent: self.per_agent,
            max_agents: count("metrics.max_agents", self.max_agents, 1)?,
            queues: self.queues.clone(),
            quantile_window: seconds(
                "metrics.quantile_window",
                self.quantile_window,
                1.0,
                86_400.0,
            )?,
            buckets: self.buckets.validate()?,
        })
    }
}

impl BucketsToml {
    fn validate(&self) -> Result<BucketConfig, ConfigError> {
        let buckets = BucketConfig {
            time_to_answer: bucket_list("metrics.buckets.time_to_answer", &self.time_to_answer)?,
            rings: bucket_list("metrics.buckets.rings", &self.rings)?,
            hold: bucket_list("metrics.buckets.hold", &self.hold)?,
            lateness: bucket_list("metrics.buckets.lateness", &self.lateness)?,
        };
        if let Some(bad) = buckets.rings.iter().find(|r| r.fract() != 0.0) {
            return Err(invalid(
                "metrics.buckets.rings",
                format!("must be whole numbers of rings, got {bad}"),
            ));
        }
        Ok(buckets)
    }
}

fn bucket_list(key: &str, v: &[f64]) -> Result<Vec<f64>, ConfigError> {
    if let Some(bad) = v.iter().find(|b| !b.is_finite() || **b <= 0.0) {
        return Err(invalid(
            key,
            format!("boundaries must be positive numbers, got {bad}"),
        ));
    }
    Ok(v.to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use crate::metrics::BucketConfig;

    #[test]
    fn defaults_are_the_spec_defaults() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.metrics.quantile_window, 300_000);
        assert_eq!(v.metrics.buckets, BucketConfig::default());
        assert!(v.metrics.queues.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error(&[("RINGWATCH__METRICS__BUCKETS__HOLD", "5,-1")])
            .contains("metrics.buckets.hold"));
        assert!(error(&[("RINGWATCH__METRICS__BUCKETS__RINGS", "1,2.5")])
            .contains("metrics.buckets.rings"));
        assert!(error(&[("RINGWATCH__METRICS__MAX_QUEUES", "0")]).contains("metrics.max_queues"));
        assert!(error(&[("RINGWATCH__METRICS__QUANTILE_WINDOW", "0")])
            .contains("metrics.quantile_window"));
        let long = "q".repeat(65);
        assert!(error(&[("RINGWATCH__METRICS__QUEUES", &long)]).contains("metrics.queues"));
    }
}
