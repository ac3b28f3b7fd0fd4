//! The self-metrics of platform sources (`ringwatch_source_*` beyond the
//! connection series every client-mode source has), registered beside the
//! code that records them, and [`Skip`]: why a platform message made no
//! event.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Why a platform message (an AMI message, a queue_log line, an ESL event)
/// was skipped: the `reason` label of `ringwatch_source_skipped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Skip {
    /// Not the platform's protocol at all (a console line in a capture).
    NotProtocol,
    /// The protocol's framing or a required field is broken.
    Malformed,
    /// Over the source's size limit.
    Oversized,
    /// A file capture's AMI event without a `Timestamp:` header.
    NoTimestamp,
    /// A well-formed message the three rules do not need.
    Ignored,
    /// A queue member or agent state line (queue_log member verbs).
    MemberEvent,
    /// A verb, action or event name this adapter does not know.
    Unknown,
    /// About a call the adapter never saw offered (started before it
    /// connected, or a hold on an unrelated channel).
    UnknownCall,
    /// The same message delivered twice.
    Repeated,
    /// A field whose value does not fit the contract (a queue name over 64
    /// characters, a time out of range).
    InvalidValue,
}

impl Skip {
    pub const ALL: [Skip; 10] = [
        Skip::NotProtocol,
        Skip::Malformed,
        Skip::Oversized,
        Skip::NoTimestamp,
        Skip::Ignored,
        Skip::MemberEvent,
        Skip::Unknown,
        Skip::UnknownCall,
        Skip::Repeated,
        Skip::InvalidValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotProtocol => "not_protocol",
            Skip::Malformed => "malformed",
            Skip::Oversized => "oversized",
            Skip::NoTimestamp => "no_timestamp",
            Skip::Ignored => "ignored",
            Skip::MemberEvent => "member_event",
            Skip::Unknown => "unknown",
            Skip::UnknownCall => "unknown_call",
            Skip::Repeated => "repeated",
            Skip::InvalidValue => "invalid_value",
        }
    }
}

/// What a reconnect's reconciliation did with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// Known to ringwatch and still reported by the platform.
    Kept,
    /// Reported by the platform, unknown to ringwatch: offered now.
    Offered,
    /// Held by ringwatch, no longer reported by the platform: forgotten
    /// without an outcome.
    Dropped,
}

impl Reconciled {
    pub const ALL: [Reconciled; 3] = [Reconciled::Kept, Reconciled::Offered, Reconciled::Dropped];

    pub fn as_str(self) -> &'static str {
        match self {
            Reconciled::Kept => "kept",
            Reconciled::Offered => "offered",
            Reconciled::Dropped => "dropped",
        }
    }
}

/// A followed file that changed under the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// Renamed away and replaced (a new inode at the path).
    Rotated,
    /// Shorter than the read position: truncated in place.
    Truncated,
}

impl FileChange {
    pub const ALL: [FileChange; 2] = [FileChange::Rotated, FileChange::Truncated];

    pub fn as_str(self) -> &'static str {
        match self {
            FileChange::Rotated => "rotated",
            FileChange::Truncated => "truncated",
        }
    }
}

/// The platform-source families, labelled `source` with the configured
/// name (bounded by the configuration).
pub struct PlatformMetrics {
    messages: IntCounterVec,
    skipped: IntCounterVec,
    translated: IntCounterVec,
    login_failures: IntCounterVec,
    reconciled: IntCounterVec,
    delivery_retries: IntCounterVec,
    reports_holds: IntGaugeVec,
    exact_time: IntGaugeVec,
    file_changes: IntCounterVec,
    file_position: IntGaugeVec,
}

/// The series of one platform source, held by its task.
#[derive(Clone)]
pub struct PlatformHandles {
    /// Platform messages read (AMI messages, queue_log lines, ESL events).
    pub messages: IntCounter,
    skipped: [IntCounter; Skip::ALL.len()],
    /// ringwatch events made from them and handed to the pipeline.
    pub translated: IntCounter,
    pub login_failures: IntCounter,
    reconciled: [IntCounter; Reconciled::ALL.len()],
    /// Batches the journal refused, held and offered again.
    pub delivery_retries: IntCounter,
    /// 1 when the platform stream carries hold events (the 17-second rule
    /// can be served), else 0.
    pub reports_holds: IntGauge,
    /// 1 when events carry the platform's own sub-second time, 0 when they
    /// are stamped on receipt or to the whole second.
    pub exact_time: IntGauge,
    file_changes: [IntCounter; FileChange::ALL.len()],
    /// Bytes of the followed file read and acknowledged.
    pub file_position: IntGauge,
}

impl PlatformHandles {
    pub fn skipped(&self, why: Skip) {
        if let Some(c) = Skip::ALL.iter().position(|s| *s == why) {
            self.skipped[c].inc();
        }
    }

    pub fn reconciled(&self, what: Reconciled, n: u64) {
        if let Some(c) = Reconciled::ALL.iter().position(|s| *s == what) {
            self.reconciled[c].inc_by(n);
        }
    }

    pub fn file_changed(&self, change: FileChange) {
        if let Some(c) = FileChange::ALL.iter().position(|s| *s == change) {
            self.file_changes[c].inc();
        }
    }
}

impl PlatformMetrics {
    pub fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).unwrap();
            registry.register(Box::new(c.clone())).unwrap();
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["source"]).unwrap();
            registry.register(Box::new(g.clone())).unwrap();
            g
        };
        PlatformMetrics {
            messages: counter(
                "ringwatch_source_messages_total",
                "Platform messages read by a PBX source (AMI messages, queue_log lines, ESL events).",
                &["source"],
            ),
            skipped: counter(
                "ringwatch_source_skipped_total",
                "Platform messages that made no event, by reason.",
                &["source", "reason"],
            ),
            translated: counter(
                "ringwatch_source_translated_events_total",
                "ringwatch events made from a PBX source's messages and handed to the pipeline.",
                &["source"],
            ),
            login_failures: counter(
                "ringwatch_source_login_failures_total",
                "Logins the PBX refused (retried with backoff).",
                &["source"],
            ),
            reconciled: counter(
                "ringwatch_source_reconciled_calls_total",
                "Calls checked against the PBX's own list after a (re)connect, by what was done.",
                &["source", "action"],
            ),
            delivery_retries: counter(
                "ringwatch_source_delivery_retries_total",
                "Batches of translated events the journal refused and that were offered again.",
                &["source"],
            ),
            reports_holds: gauge(
                "ringwatch_source_reports_holds",
                "1 when the source's stream carries hold events (the 17-second rule is served), 0 when it cannot.",
            ),
            exact_time: gauge(
                "ringwatch_source_exact_timestamps",
                "1 when events carry the platform's sub-second time, 0 when stamped on receipt or to the whole second.",
            ),
            file_changes: counter(
                "ringwatch_source_file_changes_total",
                "Times a followed file was rotated or truncated under the reader.",
                &["source", "change"],
            ),
            file_position: gauge(
                "ringwatch_source_file_position_bytes",
                "Bytes of the followed file read and acknowledged.",
            ),
        }
    }

    /// Create every series of one source (at 0) and hand back its handles.
    pub fn declare(&self, source: &str) -> PlatformHandles {
        let per = |vec: &IntCounterVec, values: &[&str]| -> Vec<IntCounter> {
            values
                .iter()
                .map(|v| vec.with_label_values(&[source, v]))
                .collect()
        };
        let skips: Vec<&str> = Skip::ALL.iter().map(|s| s.as_str()).collect();
        let recs: Vec<&str> = Reconciled::ALL.iter().map(|s| s.as_str()).collect();
        let changes: Vec<&str> = FileChange::ALL.iter().map(|s| s.as_str()).collect();
        PlatformHandles {
            messages: self.messages.with_label_values(&[source]),
            skipped: per(&self.skipped, &skips)
                .try_into()
                .expect("one per reason"),
            translated: self.translated.with_label_values(&[source]),
            login_failures: self.login_failures.with_label_values(&[source]),
            reconciled: per(&self.reconciled, &recs)
                .try_into()
                .expect("one per action"),
            delivery_retries: self.delivery_retries.with_label_values(&[source]),
            reports_holds: self.reports_holds.with_label_values(&[source]),
            exact_time: self.exact_time.with_label_values(&[source]),
            file_changes: per(&self.file_changes, &changes)
                .try_into()
                .expect("one per change"),
            file_position: self.file_position.with_label_values(&[source]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_source_has_every_series_at_zero() {
        let registry = Registry::new();
        let m = PlatformMetrics::new(&registry);
        let h = m.declare("pbx");
        h.skipped(Skip::Oversized);
        h.reconciled(Reconciled::Dropped, 2);
        let mut text = String::new();
        for f in registry.gather() {
            for metric in f.get_metric() {
                let labels: Vec<String> = metric
                    .get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect();
                let v = if f.name().ends_with("_total") {
                    metric.get_counter().get_value()
                } else {
                    metric.get_gauge().get_value()
                };
                text.push_str(&format!("{}{{{}}} {v}\n", f.name(), labels.join(",")));
            }
        }
        assert!(
            text.contains("ringwatch_source_skipped_total{reason=oversized,source=pbx} 1"),
            "{text}"
        );
        assert!(
            text.contains("ringwatch_source_skipped_total{reason=malformed,source=pbx} 0"),
            "{text}"
        );
        assert!(
            text.contains("ringwatch_source_reconciled_calls_total{action=dropped,source=pbx} 2"),
            "{text}"
        );
        assert!(
            text.contains("ringwatch_source_reports_holds{source=pbx} 0"),
            "{text}"
        );
    }
}
