//! Real-time supervisor alerts pushed to Alertmanager's v2 API: a caller
//! ringing past the ring limit, on hold past the hold limit, a callback
//! overdue. Evaluated every `alerts.interval` (a second by default, not a
//! scrape plus a rule evaluation later), re-sent while they last, resolved
//! with `endsAt` when the condition clears. Delivery failures are retried
//! with backoff and counted; nothing here can hold up ingest.

pub mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use self::metrics::AlertMetrics;
use crate::clock::wall_now;
use crate::event::Millis;
use crate::pipeline::{Alert, PipelineHandle};
use crate::rules::AlertKind;

#[derive(Clone, Debug)]
pub struct AlertSettings {
    /// Base URL of Alertmanager, e.g. `http://127.0.0.1:9093`.
    pub alertmanager_url: String,
    pub interval: Duration,
    /// Firing alerts are re-sent this often; each send is valid for three
    /// of these, so alerts of a ringwatch that died resolve by themselves.
    pub resend_interval: Duration,
    pub timeout: Duration,
}

/// The body Alertmanager's `POST /api/v2/alerts` takes (postableAlert).
#[derive(Clone, Debug, Serialize, PartialEq)]
struct Posted {
    labels: BTreeMap<&'static str, String>,
    annotations: BTreeMap<&'static str, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
}

fn rfc3339(ms: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn alertname(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::RingingPastLimit => "RingwatchCallerRingingPastLimit",
        AlertKind::OnHoldPastLimit => "RingwatchCallerOnHoldPastLimit",
        AlertKind::CallbackOverdue => "RingwatchCallbackOverdue",
    }
}

/// Labels identify the alert (one per call or promise); annotations say
/// what a supervisor needs to act.
fn labels(a: &Alert) -> BTreeMap<&'static str, String> {
    let mut l = BTreeMap::new();
    l.insert("alertname", alertname(a.kind).to_string());
    l.insert("severity", "warning".to_string());
    l.insert("queue", a.queue.to_string());
    if let Some(site) = &a.site {
        l.insert("site", site.to_string());
    }
    match a.kind {
        AlertKind::CallbackOverdue => l.insert("promise", a.subject.to_string()),
        _ => l.insert("call", a.subject.to_string()),
    };
    l
}

fn annotations(a: &Alert) -> BTreeMap<&'static str, String> {
    let secs = a.elapsed as f64 / 1000.0;
    let agent = a
        .agent
        .as_deref()
        .map(|g| format!(" (agent {g})"))
        .unwrap_or_default();
    let summary = match a.kind {
        AlertKind::RingingPastLimit => format!(
            "Caller on queue {} has been ringing {secs:.0} s, past the ring limit",
            a.queue
        ),
        AlertKind::OnHoldPastLimit => format!(
            "Caller on queue {} has been on hold {secs:.0} s{agent}, past the hold limit",
            a.queue
        ),
        AlertKind::CallbackOverdue => format!(
            "Callback {} on queue {} is {secs:.0} s overdue{agent}",
            a.subject, a.queue
        ),
    };
    let mut m = BTreeMap::new();
    m.insert("summary", summary);
    if let Some(agent) = &a.agent {
        m.insert("agent", agent.to_string());
    }
    m.insert(
        "runbook_url",
        format!("docs/alerts.md#{}", alertname(a.kind).to_lowercase()),
    );
    m
}

/// Evaluate and push until `cancel`. Alerts still firing at shutdown are
/// left to expire on their `endsAt` (the condition did not clear).
pub async fn run(
    settings: AlertSettings,
    pipeline: PipelineHandle,
    metrics: Arc<AlertMetrics>,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder().timeout(settings.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            // Not fatal: ingest and /metrics go on. The task waits for
            // shutdown instead of ending (an early end is a failure).
            tracing::error!(error = %e, "cannot build the Alertmanager client; alerts are off");
            cancel.cancelled().await;
            return;
        }
    };
    let url = format!(
        "{}/api/v2/alerts",
        settings.alertmanager_url.trim_end_matches('/')
    );
    let mut state = Pusher::default();
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let current = tokio::select! {
            _ = cancel.cancelled() => return,
            current = pipeline.alerts() => current,
        };
        let Ok(current) = current else {
            return;
        };
        let now = wall_now();
        let batch = state.evaluate(&current, now, &settings);
        metrics.alerts_active.set(state.firing.len() as i64);
        let Some(batch) = batch else { continue };
        if state.retry_at.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let body = serde_json::to_string(&batch).expect("alerts serialize");
        let post = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send();
        // Shutdown does not wait for a slow Alertmanager: the POST in flight
        // is dropped (the alerts expire on their `endsAt`).
        let posted = tokio::select! {
            _ = cancel.cancelled() => return,
            posted = post => posted,
        };
        let sent = posted.map_err(|e| e.to_string()).and_then(|r| {
            if r.status().is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {}", r.status()))
            }
        });
        match sent {
            Ok(()) => {
                metrics.alerts_posted.inc_by(batch.len() as u64);
                state.delivered(now);
            }
            Err(e) => {
                metrics.alert_post_failures.inc();
                let backoff = state.failed();
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach Alertmanager");
            }
        }
    }
}

/// What has been told to Alertmanager, and what still must be.
#[derive(Default)]
struct Pusher {
    /// Firing alerts by their labels (the alert's identity).
    firing: BTreeMap<BTreeMap<&'static str, String>, Posted>,
    /// Resolutions not yet delivered.
    resolved: Vec<Posted>,
    /// Something changed since the last delivery.
    dirty: bool,
    last_sent: Option<Millis>,
    backoff: Duration,
    retry_at: Option<Instant>,
}

impl Pusher {
    /// Fold the current conditions in; returns the batch to post, if any
    /// is due: on any change, else every `resend_interval`.
    fn evaluate(
        &mut self,
        current: &[Alert],
        now: Millis,
        s: &AlertSettings,
    ) -> Option<Vec<Posted>> {
        let valid = now + 3 * s.resend_interval.as_millis() as Millis;
        let mut seen = BTreeMap::new();
        for a in current {
            let labels = labels(a);
            let posted = Posted {
                labels: labels.clone(),
                annotations: annotations(a),
                starts_at: rfc3339(a.since),
                ends_at: rfc3339(valid),
            };
            if !self.firing.contains_key(&labels) {
                self.dirty = true;
            }
            seen.insert(labels, posted);
        }
        for (labels, mut gone) in std::mem::take(&mut self.firing) {
            if !seen.contains_key(&labels) {
                gone.ends_at = rfc3339(now);
                self.resolved.push(gone);
                self.dirty = true;
            }
        }
        self.firing = seen;
        let resend_due = self
            .last_sent
            .is_none_or(|t| now - t >= s.resend_interval.as_millis() as Millis);
        if !(self.dirty || (resend_due && !self.firing.is_empty())) {
            return None;
        }
        let mut batch: Vec<Posted> = self.firing.values().cloned().collect();
        batch.extend(self.resolved.iter().cloned());
        (!batch.is_empty()).then_some(batch)
    }

    fn delivered(&mut self, now: Millis) {
        self.resolved.clear();
        self.dirty = false;
        self.last_sent = Some(now);
        self.backoff = Duration::ZERO;
        self.retry_at = None;
    }

    /// Exponential backoff, 1 s doubling to 60 s.
    fn failed(&mut self) -> Duration {
        self.backoff = (self.backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(kind: AlertKind, subject: &str) -> Alert {
        Alert {
            kind,
            queue: "billing".into(),
            site: None,
            agent: Some("ann".into()),
            subject: subject.into(),
            since: 1_795_424_417_000,
            elapsed: 20_000,
        }
    }

    fn settings() -> AlertSettings {
        AlertSettings {
            alertmanager_url: String::new(),
            interval: Duration::from_secs(1),
            resend_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn fires_resends_and_resolves() {
        let s = settings();
        let mut p = Pusher::default();
        let hold = alert(AlertKind::OnHoldPastLimit, "c1");
        let batch = p
            .evaluate(std::slice::from_ref(&hold), 1_000_000, &s)
            .unwrap();
        assert_eq!(batch.len(), 1);
        let a = &batch[0];
        assert_eq!(a.labels["alertname"], "RingwatchCallerOnHoldPastLimit");
        assert_eq!(a.labels["call"], "c1");
        assert_eq!(a.labels["queue"], "billing");
        assert_eq!(a.annotations["agent"], "ann");
        assert!(a.annotations["summary"].contains("on hold 20 s"));
        assert_eq!(a.starts_at, "2026-11-23T09:00:17Z");
        p.delivered(1_000_000);
        // nothing new: quiet until the resend interval
        assert!(p
            .evaluate(std::slice::from_ref(&hold), 1_010_000, &s)
            .is_none());
        assert_eq!(
            p.evaluate(std::slice::from_ref(&hold), 1_030_000, &s)
                .unwrap()
                .len(),
            1
        );
        p.delivered(1_030_000);
        // cleared: one resolution with endsAt = now
        let batch = p.evaluate(&[], 1_031_000, &s).unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].ends_at, rfc3339(1_031_000));
        // an undelivered resolution is sent again
        p.failed();
        assert_eq!(p.evaluate(&[], 1_032_000, &s).unwrap().len(), 1);
        p.delivered(1_032_000);
        assert!(p.evaluate(&[], 1_033_000, &s).is_none());
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        let mut p = Pusher::default();
        let waits: Vec<u64> = (0..8).map(|_| p.failed().as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
