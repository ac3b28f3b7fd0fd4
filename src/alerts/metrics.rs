//! The Alertmanager pusher's self-metrics (`ringwatch_alerts_active`,
//! `ringwatch_alerts_posted_total`, `ringwatch_alert_post_failures_total`),
//! registered beside the code that records them.

use prometheus::{IntCounter, IntGauge, Registry};

pub struct AlertMetrics {
    pub alerts_active: IntGauge,
    pub alerts_posted: IntCounter,
    pub alert_post_failures: IntCounter,
}

impl AlertMetrics {
    pub fn new(registry: &Registry) -> Self {
        let m = AlertMetrics {
            alerts_active: IntGauge::new(
                "ringwatch_alerts_active",
                "Supervisor alerts firing now (calls and promises past a limit), when alerts.alertmanager_url is set.",
            )
            .unwrap(),
            alerts_posted: IntCounter::new(
                "ringwatch_alerts_posted_total",
                "Alerts (firing or resolved) delivered to Alertmanager.",
            )
            .unwrap(),
            alert_post_failures: IntCounter::new(
                "ringwatch_alert_post_failures_total",
                "Failed deliveries to Alertmanager (retried with backoff).",
            )
            .unwrap(),
        };
        for c in [
            Box::new(m.alerts_active.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.alerts_posted.clone()),
            Box::new(m.alert_post_failures.clone()),
        ] {
            registry.register(c).expect("self-metric names are unique");
        }
        m
    }
}
