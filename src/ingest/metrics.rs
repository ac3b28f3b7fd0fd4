//! The ingest self-metrics (`ringwatch_ingest_*`, `ringwatch_event_lag_seconds`,
//! `ringwatch_source_*`), registered beside the code that records them, and
//! the label enums they take: why a connection ended ([`CloseReason`]) and
//! which protocol error ended it ([`ProtocolError`]).
//!
//! Labelled series are resolved into handles when they are created, so a
//! frame or a connection only ever touches an atomic, never a label lookup.

use prometheus::{
    Counter, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

/// Why a connection ended (the `reason` label of
/// `ringwatch_ingest_connections_closed_total` and
/// `ringwatch_source_disconnects_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Peer,
    ProtocolError,
    IdleTimeout,
    /// Its token was removed from the token file (server endpoint only).
    Revoked,
    Shutdown,
    IoError,
    /// The journal could not be written: the frame was not acknowledged.
    JournalError,
}

impl CloseReason {
    /// In declaration order: the handle arrays are indexed by `reason as usize`.
    pub const ALL: [CloseReason; 7] = [
        CloseReason::Peer,
        CloseReason::ProtocolError,
        CloseReason::IdleTimeout,
        CloseReason::Revoked,
        CloseReason::Shutdown,
        CloseReason::IoError,
        CloseReason::JournalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Revoked => "revoked",
            CloseReason::Shutdown => "shutdown",
            CloseReason::IoError => "io_error",
            CloseReason::JournalError => "journal_error",
        }
    }
}

/// Protocol errors that end a connection (`kind` label values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A binary frame: closed with 1003.
    Binary,
    /// A frame or message over `max_frame_bytes`: closed with 1009.
    Oversize,
    /// A text frame that is not UTF-8: closed with 1007.
    InvalidUtf8,
    /// Any other WebSocket protocol violation: closed with 1002.
    Protocol,
    /// The HTTP upgrade failed or timed out (wrong path, not a WebSocket request).
    Handshake,
}

impl ProtocolError {
    /// In declaration order: the handle array is indexed by `kind as usize`.
    pub const ALL: [ProtocolError; 5] = [
        ProtocolError::Binary,
        ProtocolError::Oversize,
        ProtocolError::InvalidUtf8,
        ProtocolError::Protocol,
        ProtocolError::Handshake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolError::Binary => "binary_frame",
            ProtocolError::Oversize => "oversize_frame",
            ProtocolError::InvalidUtf8 => "invalid_utf8",
            ProtocolError::Protocol => "protocol",
            ProtocolError::Handshake => "handshake",
        }
    }
}

// A reordered `ALL` would silently count under the wrong label: refuse to build.
const _: () = {
    let mut i = 0;
    while i < CloseReason::ALL.len() {
        assert!(CloseReason::ALL[i] as usize == i);
        i += 1;
    }
    let mut i = 0;
    while i < ProtocolError::ALL.len() {
        assert!(ProtocolError::ALL[i] as usize == i);
        i += 1;
    }
};

const CLOSE_REASONS: usize = CloseReason::ALL.len();

/// One handle per value of `label`, in `ALL` order; creating them is what
/// makes every series exist (at 0) from the start.
fn per_close_reason(vec: &IntCounterVec, first: &[&str]) -> [IntCounter; CLOSE_REASONS] {
    std::array::from_fn(|i| {
        let mut labels = first.to_vec();
        labels.push(CloseReason::ALL[i].as_str());
        vec.with_label_values(&labels)
    })
}

fn register(registry: &Registry, collectors: Vec<Box<dyn prometheus::core::Collector>>) {
    for c in collectors {
        registry.register(c).expect("self-metric names are unique");
    }
}

/// Connections, frames and their cost, for the endpoint and client-mode
/// sources alike, plus the endpoint's connection cap and event rate (see
/// docs/limits.md).
pub struct IngestMetrics {
    pub connections: IntGauge,
    pub connections_opened: IntCounter,
    connections_closed: [IntCounter; CLOSE_REASONS],
    pub frames: IntCounter,
    pub frame_bytes: IntCounter,
    protocol_errors: [IntCounter; ProtocolError::ALL.len()],
    pub event_lag: Histogram,
    pub frame_duration: Histogram,
    pub connections_refused: IntCounter,
    pub throttled_frames: IntCounter,
    pub throttled_seconds: Counter,
    /// Client-mode sources.
    pub sources: SourceMetrics,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> Self {
        let connections = IntGauge::new(
            "ringwatch_ingest_connections",
            "Open ingest WebSocket connections (accepted ones and client-mode sources).",
        )
        .unwrap();
        let connections_opened = IntCounter::new(
            "ringwatch_ingest_connections_opened_total",
            "Ingest WebSocket connections accepted (after a successful upgrade).",
        )
        .unwrap();
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "ringwatch_ingest_connections_closed_total",
                "Ingest WebSocket connections ended, by reason.",
            ),
            &["reason"],
        )
        .unwrap();
        let frames = IntCounter::new(
            "ringwatch_ingest_frames_total",
            "Text frames received (each is answered with one acknowledgement).",
        )
        .unwrap();
        let frame_bytes = IntCounter::new(
            "ringwatch_ingest_frame_bytes_total",
            "Bytes of text frames received.",
        )
        .unwrap();
        let protocol_errors = IntCounterVec::new(
            Opts::new(
                "ringwatch_ingest_protocol_errors_total",
                "WebSocket protocol errors that closed a connection or refused an upgrade, by kind.",
            ),
            &["kind"],
        )
        .unwrap();
        let event_lag = Histogram::with_opts(
            HistogramOpts::new(
                "ringwatch_event_lag_seconds",
                "Arrival time minus the event's ts, per decoded event (0 when ts is in the future).",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )
        .unwrap();
        let frame_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ringwatch_ingest_frame_duration_seconds",
                "Time from receiving a frame to sending its acknowledgement.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ]),
        )
        .unwrap();
        let connections_refused = IntCounter::new(
            "ringwatch_ingest_connections_refused_total",
            "Ingest connections refused at accept, before any TLS or upgrade work, because ingest.max_connections were open (plain: answered 503; TLS: closed before the handshake).",
        )
        .unwrap();
        let throttled_frames = IntCounter::new(
            "ringwatch_ingest_throttled_frames_total",
            "Frames after which a connection stopped reading to stay within ingest.max_events_per_second.",
        )
        .unwrap();
        let throttled_seconds = Counter::new(
            "ringwatch_ingest_throttled_seconds_total",
            "Time connections were made to stop reading by ingest.max_events_per_second (counted when each pause starts).",
        )
        .unwrap();
        register(
            registry,
            vec![
                Box::new(connections.clone()),
                Box::new(connections_opened.clone()),
                Box::new(connections_closed.clone()),
                Box::new(frames.clone()),
                Box::new(frame_bytes.clone()),
                Box::new(protocol_errors.clone()),
                Box::new(event_lag.clone()),
                Box::new(frame_duration.clone()),
                Box::new(connections_refused.clone()),
                Box::new(throttled_frames.clone()),
                Box::new(throttled_seconds.clone()),
            ],
        );
        IngestMetrics {
            connections,
            connections_opened,
            connections_closed: per_close_reason(&connections_closed, &[]),
            frames,
            frame_bytes,
            protocol_errors: std::array::from_fn(|i| {
                protocol_errors.with_label_values(&[ProtocolError::ALL[i].as_str()])
            }),
            event_lag,
            frame_duration,
            connections_refused,
            throttled_frames,
            throttled_seconds,
            sources: SourceMetrics::new(registry),
        }
    }

    pub fn protocol_error(&self, kind: ProtocolError) {
        self.protocol_errors[kind as usize].inc();
    }

    pub fn closed(&self, reason: CloseReason) {
        self.connections_closed[reason as usize].inc();
    }
}

/// Client-mode sources (`[sources.<name>]`), labelled `source` with the
/// configured name, so the label is bounded by the configuration. A source's
/// handles are resolved once, by [`SourceMetrics::declare`].
pub struct SourceMetrics {
    connected: IntGaugeVec,
    attempts: IntCounterVec,
    failures: IntCounterVec,
    reconnects: IntCounterVec,
    disconnects: IntCounterVec,
    frames: IntCounterVec,
    last_event: GaugeVec,
}

/// The series of one client-mode source, held by its task.
#[derive(Clone)]
pub struct SourceHandles {
    pub connected: IntGauge,
    pub attempts: IntCounter,
    pub failures: IntCounter,
    pub reconnects: IntCounter,
    disconnects: [IntCounter; CLOSE_REASONS],
    pub frames: IntCounter,
    pub last_event: Gauge,
}

impl SourceHandles {
    pub fn disconnected(&self, reason: CloseReason) {
        self.disconnects[reason as usize].inc();
    }
}

impl SourceMetrics {
    fn new(registry: &Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).unwrap()
        };
        let m = SourceMetrics {
            connected: IntGaugeVec::new(
                Opts::new(
                    "ringwatch_source_connected",
                    "1 while the client-mode source is connected, else 0.",
                ),
                &["source"],
            )
            .unwrap(),
            attempts: counter(
                "ringwatch_source_connection_attempts_total",
                "Connection attempts to the source (TCP, TLS, upgrade, subscribe).",
                &["source"],
            ),
            failures: counter(
                "ringwatch_source_connection_failures_total",
                "Connection attempts that failed or timed out (retried with backoff).",
                &["source"],
            ),
            reconnects: counter(
                "ringwatch_source_reconnects_total",
                "Connections established after the source's first one.",
                &["source"],
            ),
            disconnects: counter(
                "ringwatch_source_disconnects_total",
                "Established source connections that ended, by reason.",
                &["source", "reason"],
            ),
            frames: counter(
                "ringwatch_source_frames_total",
                "Text frames received from the source.",
                &["source"],
            ),
            last_event: GaugeVec::new(
                Opts::new(
                    "ringwatch_source_last_event_timestamp_seconds",
                    "Unix time the last event frame arrived from the source (0: none yet); time() minus this is its age.",
                ),
                &["source"],
            )
            .unwrap(),
        };
        register(
            registry,
            vec![
                Box::new(m.connected.clone()),
                Box::new(m.attempts.clone()),
                Box::new(m.failures.clone()),
                Box::new(m.reconnects.clone()),
                Box::new(m.disconnects.clone()),
                Box::new(m.frames.clone()),
                Box::new(m.last_event.clone()),
            ],
        );
        m
    }

    /// Create every series of one source (at 0) before it first connects,
    /// and hand back their handles.
    pub fn declare(&self, source: &str) -> SourceHandles {
        let connected = self.connected.with_label_values(&[source]);
        connected.set(0);
        SourceHandles {
            connected,
            attempts: self.attempts.with_label_values(&[source]),
            failures: self.failures.with_label_values(&[source]),
            reconnects: self.reconnects.with_label_values(&[source]),
            disconnects: per_close_reason(&self.disconnects, &[source]),
            frames: self.frames.with_label_values(&[source]),
            last_event: self.last_event.with_label_values(&[source]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(registry: &Registry) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap()
    }

    #[test]
    fn handles_count_under_their_own_label() {
        let registry = Registry::new();
        let m = IngestMetrics::new(&registry);
        m.closed(CloseReason::Revoked);
        m.protocol_error(ProtocolError::InvalidUtf8);
        let s = m.sources.declare("platform");
        s.disconnected(CloseReason::IdleTimeout);
        let text = exposition(&registry);
        for r in CloseReason::ALL {
            let n = u8::from(r == CloseReason::Revoked);
            let line = format!(
                "ringwatch_ingest_connections_closed_total{{reason=\"{}\"}} {n}\n",
                r.as_str()
            );
            assert!(text.contains(&line), "{line}in\n{text}");
            let n = u8::from(r == CloseReason::IdleTimeout);
            let line = format!(
                "ringwatch_source_disconnects_total{{reason=\"{}\",source=\"platform\"}} {n}\n",
                r.as_str()
            );
            assert!(text.contains(&line), "{line}in\n{text}");
        }
        for k in ProtocolError::ALL {
            let n = u8::from(k == ProtocolError::InvalidUtf8);
            let line = format!(
                "ringwatch_ingest_protocol_errors_total{{kind=\"{}\"}} {n}\n",
                k.as_str()
            );
            assert!(text.contains(&line), "{line}in\n{text}");
        }
        assert!(text.contains("ringwatch_source_connected{source=\"platform\"} 0\n"));
    }
}
