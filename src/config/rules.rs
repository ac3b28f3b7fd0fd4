//! `[rules]` and `[rules.queues.<name>]`: the service limits and the engine's
//! bounds, validated into [`crate::rules::Settings`].

use std::collections::HashMap;

use serde::Deserialize;

use super::{count, invalid, seconds, ConfigError, Metrics};
use crate::rules::{ClockMode, Limits, Settings};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    pub clock: ClockMode,
    pub ring_cycle: f64,
    pub max_rings: u32,
    pub hold_limit: f64,
    pub short_abandon: f64,
    pub callback_expiry: f64,
    pub call_ttl: f64,
    pub dedup_window: f64,
    pub dedup_max_ids: usize,
    pub max_calls: usize,
    pub max_promises: usize,
    #[serde(default)]
    pub queues: HashMap<String, QueueOverrides>,
}

/// Per-queue limits; absent keys inherit the `[rules]` value.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueOverrides {
    pub ring_cycle: Option<f64>,
    pub max_rings: Option<u32>,
    pub hold_limit: Option<f64>,
    pub short_abandon: Option<f64>,
}

impl RulesConfig {
    /// `metrics` brings the label caps, which the engine enforces.
    pub(super) fn validate(&self, metrics: &Metrics) -> Result<Settings, ConfigError> {
        let limits = Limits {
            ring_cycle: seconds("rules.ring_cycle", self.ring_cycle, 0.001, 600.0)?,
            max_rings: rings("rules.max_rings", self.max_rings)?,
            hold_limit: seconds("rules.hold_limit", self.hold_limit, 0.001, 86_400.0)?,
            short_abandon: seconds("rules.short_abandon", self.short_abandon, 0.0, 3_600.0)?,
        };
        let mut queue_limits = HashMap::new();
        for (queue, o) in &self.queues {
            queue_limits.insert(queue.clone(), o.validate(queue, &limits)?);
        }
        Ok(Settings {
            clock: self.clock,
            limits,
            queue_limits,
            call_ttl: seconds("rules.call_ttl", self.call_ttl, 1.0, 30.0 * 86_400.0)?,
            callback_expiry: seconds(
                "rules.callback_expiry",
                self.callback_expiry,
                0.0,
                365.0 * 86_400.0,
            )?,
            dedup_window: seconds(
                "rules.dedup_window",
                self.dedup_window,
                0.0,
                30.0 * 86_400.0,
            )?,
            dedup_max_ids: count("rules.dedup_max_ids", self.dedup_max_ids, 0)?,
            max_calls: count("rules.max_calls", self.max_calls, 1)?,
            max_promises: count("rules.max_promises", self.max_promises, 1)?,
            max_queues: metrics.max_queues,
            max_sites: metrics.max_sites,
            per_agent: metrics.per_agent,
            max_agents: metrics.max_agents,
        })
    }
}

impl QueueOverrides {
    /// Same ranges as `[rules]`; `base` fills what the queue leaves out.
    fn validate(&self, queue: &str, base: &Limits) -> Result<Limits, ConfigError> {
        let key = |k: &str| format!("rules.queues.{queue}.{k}");
        let or = |v: Option<f64>, k: &str, min, max, default| match v {
            Some(v) => seconds(&key(k), v, min, max),
            None => Ok(default),
        };
        Ok(Limits {
            ring_cycle: or(self.ring_cycle, "ring_cycle", 0.001, 600.0, base.ring_cycle)?,
            max_rings: match self.max_rings {
                Some(n) => rings(&key("max_rings"), n)?,
                None => base.max_rings,
            },
            hold_limit: or(
                self.hold_limit,
                "hold_limit",
                0.001,
                86_400.0,
                base.hold_limit,
            )?,
            short_abandon: or(
                self.short_abandon,
                "short_abandon",
                0.0,
                3_600.0,
                base.short_abandon,
            )?,
        })
    }
}

fn rings(key: &str, n: u32) -> Result<u32, ConfigError> {
    if !(1..=100).contains(&n) {
        return Err(invalid(
            key,
            format!("must be between 1 and 100 rings, got {n}"),
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{error, validate};
    use crate::rules::{ClockMode, Limits};

    #[test]
    fn defaults_are_the_spec_defaults() {
        let v = validate(&[]).unwrap();
        assert_eq!(v.rules.limits, Limits::default());
        assert_eq!(v.rules.clock, ClockMode::Wall);
        assert_eq!(v.rules.call_ttl, 4 * 3_600_000);
        assert_eq!(v.rules.callback_expiry, 86_400_000);
        assert_eq!(v.rules.max_queues, 1000);
    }

    #[test]
    fn errors_name_the_key() {
        assert!(error(&[("RINGWATCH__RULES__RING_CYCLE", "0")]).contains("rules.ring_cycle"));
        assert!(error(&[("RINGWATCH__RULES__MAX_RINGS", "0")]).contains("rules.max_rings"));
        assert!(
            error(&[("RINGWATCH__RULES__QUEUES__VIP__HOLD_LIMIT", "-1")])
                .contains("rules.queues.vip.hold_limit")
        );
        assert!(
            error(&[("RINGWATCH__RULES__QUEUES__VIP__MAX_RINGS", "101")])
                .contains("rules.queues.vip.max_rings")
        );
        assert!(error(&[("RINGWATCH__RULES__QUEUES__VIP__HOLD_LIMT", "5")]).contains("hold_limt"));
        assert!(error(&[("RINGWATCH__RULES__MAX_CALLS", "0")]).contains("rules.max_calls"));
    }

    #[test]
    fn label_caps_come_from_metrics() {
        let v = validate(&[
            ("RINGWATCH__METRICS__MAX_SITES", "7"),
            ("RINGWATCH__METRICS__PER_AGENT", "true"),
        ])
        .unwrap();
        assert_eq!((v.rules.max_sites, v.metrics.max_sites), (7, 7));
        assert!(v.rules.per_agent);
    }
}
