//! The durability self-metrics (`ringwatch_journal_*`, `ringwatch_snapshot_*`,
//! `ringwatch_recovery_*`), registered beside the code that records them.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Journal, snapshots and recovery (see docs/durability.md).
pub struct DiskMetrics {
    pub journal_bytes: IntCounter,
    pub journal_errors: IntCounterVec,
    pub journal_fsync_duration: Histogram,
    pub snapshot_encode_duration: Histogram,
    pub snapshot_duration: Histogram,
    pub snapshot_bytes: IntGauge,
    pub snapshot_last_success: Gauge,
    pub snapshot_failures: IntCounter,
    pub recovery_duration: Gauge,
    pub recovery_records: IntGauge,
    pub recovery_cut_bytes: IntGauge,
    pub recovery_bad_snapshots: IntGauge,
}

/// The `op` label of `ringwatch_journal_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JournalOp {
    Write,
    Sync,
}

impl JournalOp {
    pub const ALL: [JournalOp; 2] = [JournalOp::Write, JournalOp::Sync];

    pub fn as_str(self) -> &'static str {
        match self {
            JournalOp::Write => "write",
            JournalOp::Sync => "sync",
        }
    }
}

impl DiskMetrics {
    pub fn new(registry: &Registry) -> Self {
        let seconds = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).unwrap()
        };
        let fast = vec![
            0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        let m = DiskMetrics {
            journal_bytes: IntCounter::new(
                "ringwatch_journal_written_bytes_total",
                "Bytes written to the journal.",
            )
            .unwrap(),
            journal_errors: IntCounterVec::new(
                Opts::new(
                    "ringwatch_journal_errors_total",
                    "Journal writes or fsyncs that failed; frames whose write failed were not acknowledged.",
                ),
                &["op"],
            )
            .unwrap(),
            journal_fsync_duration: seconds(
                "ringwatch_journal_fsync_duration_seconds",
                "Time one fsync of the journal took.",
                fast.clone(),
            ),
            snapshot_encode_duration: seconds(
                "ringwatch_snapshot_encode_duration_seconds",
                "Time the pipeline spent taking the copy of the state a snapshot encodes (ingest waits meanwhile).",
                fast,
            ),
            snapshot_duration: seconds(
                "ringwatch_snapshot_write_duration_seconds",
                "Time encoding, writing and syncing one snapshot took (in the background).",
                vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
            ),
            snapshot_bytes: IntGauge::new(
                "ringwatch_snapshot_size_bytes",
                "Size of the last snapshot written.",
            )
            .unwrap(),
            snapshot_last_success: Gauge::new(
                "ringwatch_snapshot_last_success_timestamp_seconds",
                "Unix time of the last snapshot written (0: none since start).",
            )
            .unwrap(),
            snapshot_failures: IntCounter::new(
                "ringwatch_snapshot_failures_total",
                "Snapshots that could not be written (the journal is kept instead).",
            )
            .unwrap(),
            recovery_duration: Gauge::new(
                "ringwatch_recovery_duration_seconds",
                "Time the last start spent loading the snapshot and replaying the journal.",
            )
            .unwrap(),
            recovery_records: IntGauge::new(
                "ringwatch_recovery_replayed_records",
                "Journal records replayed at the last start.",
            )
            .unwrap(),
            recovery_cut_bytes: IntGauge::new(
                "ringwatch_recovery_cut_bytes",
                "Bytes of torn or corrupt journal tail cut off at the last start.",
            )
            .unwrap(),
            recovery_bad_snapshots: IntGauge::new(
                "ringwatch_recovery_unusable_snapshots",
                "Snapshots found unreadable at the last start (an older one was used).",
            )
            .unwrap(),
        };
        for op in JournalOp::ALL {
            m.journal_errors.with_label_values(&[op.as_str()]);
        }
        for c in [
            Box::new(m.journal_bytes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.journal_errors.clone()),
            Box::new(m.journal_fsync_duration.clone()),
            Box::new(m.snapshot_encode_duration.clone()),
            Box::new(m.snapshot_duration.clone()),
            Box::new(m.snapshot_bytes.clone()),
            Box::new(m.snapshot_last_success.clone()),
            Box::new(m.snapshot_failures.clone()),
            Box::new(m.recovery_duration.clone()),
            Box::new(m.recovery_records.clone()),
            Box::new(m.recovery_cut_bytes.clone()),
            Box::new(m.recovery_bad_snapshots.clone()),
        ] {
            registry.register(c).expect("self-metric names are unique");
        }
        m
    }

    pub fn journal_error(&self, op: JournalOp) {
        self.journal_errors.with_label_values(&[op.as_str()]).inc();
    }
}
