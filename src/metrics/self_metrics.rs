//! ringwatch's own telemetry, defined in one place: ingest connections,
//! frames, protocol errors, event lag, scrape cost, build info. These are
//! updated from many tasks, so they are the `prometheus` crate's atomics.

use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

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

/// Who got in, over what, and how fast: tokens, TLS, the connection cap and
/// the event rate of the listeners (see docs/security.md, docs/limits.md).
pub struct EdgeMetrics {
    pub auth_failures: IntCounterVec,
    pub source_connections: IntGaugeVec,
    pub connections_refused: IntCounter,
    pub throttled_frames: IntCounter,
    pub throttled_seconds: prometheus::Counter,
    pub tls_handshake_failures: IntCounterVec,
    pub reloads: IntCounterVec,
}

/// What a SIGHUP reloads (`what` label values of `ringwatch_reloads_total`).
pub const RELOADABLE: [&str; 4] = ["ingest_tokens", "http_tokens", "ingest_tls", "http_tls"];

impl EdgeMetrics {
    fn new(registry: &Registry) -> Self {
        use crate::auth::{Failure, Listener};
        let m = EdgeMetrics {
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "ringwatch_auth_failures_total",
                    "Requests refused with 401 for want of a valid bearer token, by listener (ingest, http = /metrics) and reason.",
                ),
                &["listener", "reason"],
            )
            .unwrap(),
            source_connections: IntGaugeVec::new(
                Opts::new(
                    "ringwatch_ingest_source_connections",
                    "Open ingest connections per token source (only when ingest.tokens_file is set).",
                ),
                &["source"],
            )
            .unwrap(),
            connections_refused: IntCounter::new(
                "ringwatch_ingest_connections_refused_total",
                "Ingest connections refused at accept, before any TLS or upgrade work, because ingest.max_connections were open (plain: answered 503; TLS: closed before the handshake).",
            )
            .unwrap(),
            throttled_frames: IntCounter::new(
                "ringwatch_ingest_throttled_frames_total",
                "Frames after which a connection stopped reading to stay within ingest.max_events_per_second.",
            )
            .unwrap(),
            throttled_seconds: prometheus::Counter::new(
                "ringwatch_ingest_throttled_seconds_total",
                "Time connections were made to stop reading by ingest.max_events_per_second (counted when each pause starts).",
            )
            .unwrap(),
            tls_handshake_failures: IntCounterVec::new(
                Opts::new(
                    "ringwatch_tls_handshake_failures_total",
                    "TLS handshakes that failed or timed out, by listener.",
                ),
                &["listener"],
            )
            .unwrap(),
            reloads: IntCounterVec::new(
                Opts::new(
                    "ringwatch_reloads_total",
                    "Reloads of token files and TLS certificates on SIGHUP, by what and result (a failure keeps the previous one).",
                ),
                &["what", "result"],
            )
            .unwrap(),
        };
        for l in Listener::ALL {
            for f in Failure::ALL {
                m.auth_failures.with_label_values(&[l.as_str(), f.as_str()]);
            }
            m.tls_handshake_failures.with_label_values(&[l.as_str()]);
        }
        for what in RELOADABLE {
            for result in ["success", "failure"] {
                m.reloads.with_label_values(&[what, result]);
            }
        }
        for c in [
            Box::new(m.auth_failures.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.source_connections.clone()),
            Box::new(m.connections_refused.clone()),
            Box::new(m.throttled_frames.clone()),
            Box::new(m.throttled_seconds.clone()),
            Box::new(m.tls_handshake_failures.clone()),
            Box::new(m.reloads.clone()),
        ] {
            registry.register(c).expect("self-metric names are unique");
        }
        m
    }

    pub fn auth_failure(&self, listener: crate::auth::Listener, failure: crate::auth::Failure) {
        self.auth_failures
            .with_label_values(&[listener.as_str(), failure.as_str()])
            .inc();
    }

    pub fn tls_handshake_failure(&self, listener: crate::auth::Listener) {
        self.tls_handshake_failures
            .with_label_values(&[listener.as_str()])
            .inc();
    }

    /// Give every token source its series (at 0), so a source that never
    /// connected shows 0 rather than nothing.
    pub fn declare_sources<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for n in names {
            self.source_connections.with_label_values(&[n]);
        }
    }

    pub fn reloaded(&self, what: &'static str, ok: bool) {
        debug_assert!(RELOADABLE.contains(&what));
        let result = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[what, result]).inc();
    }
}

/// Why a connection ended (`reason` label values).
pub const CLOSE_REASONS: [&str; 7] = [
    "peer",
    "protocol_error",
    "idle_timeout",
    "revoked",
    "shutdown",
    "io_error",
    "journal_error",
];

pub struct SelfMetrics {
    pub registry: Registry,
    pub connections: IntGauge,
    pub connections_opened: IntCounter,
    pub connections_closed: IntCounterVec,
    pub frames: IntCounter,
    pub edge: EdgeMetrics,
    pub frame_bytes: IntCounter,
    pub protocol_errors: IntCounterVec,
    pub event_lag: Histogram,
    pub frame_duration: Histogram,
    pub scrape_duration: Histogram,
    pub scrapes_coalesced: IntCounter,
    pub alerts_active: IntGauge,
    pub alerts_posted: IntCounter,
    pub alert_post_failures: IntCounter,
    pub sources: SourceMetrics,
}

/// Client-mode sources (`[sources.<name>]`), labelled `source` with the
/// configured name, so the label is bounded by the configuration.
pub struct SourceMetrics {
    pub connected: IntGaugeVec,
    pub attempts: IntCounterVec,
    pub failures: IntCounterVec,
    pub reconnects: IntCounterVec,
    pub disconnects: IntCounterVec,
    pub frames: IntCounterVec,
    pub last_event: GaugeVec,
}

impl SourceMetrics {
    fn new() -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).unwrap()
        };
        SourceMetrics {
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
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.connected.clone()),
            Box::new(self.attempts.clone()),
            Box::new(self.failures.clone()),
            Box::new(self.reconnects.clone()),
            Box::new(self.disconnects.clone()),
            Box::new(self.frames.clone()),
            Box::new(self.last_event.clone()),
        ]
    }

    /// Create every series of one source (at 0) before it first connects.
    pub fn declare(&self, source: &str) {
        self.connected.with_label_values(&[source]).set(0);
        self.attempts.with_label_values(&[source]);
        self.failures.with_label_values(&[source]);
        self.reconnects.with_label_values(&[source]);
        for r in CLOSE_REASONS {
            self.disconnects.with_label_values(&[source, r]);
        }
        self.frames.with_label_values(&[source]);
        self.last_event.with_label_values(&[source]);
    }
}

impl SelfMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let edge = EdgeMetrics::new(&registry);
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
        let scrape_duration = Histogram::with_opts(
            HistogramOpts::new(
                "ringwatch_scrape_duration_seconds",
                "Time to produce one /metrics response.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .unwrap();
        let scrapes_coalesced = IntCounter::new(
            "ringwatch_scrapes_coalesced_total",
            "/metrics responses that shared a pipeline snapshot another concurrent scrape had asked for, instead of asking for their own.",
        )
        .unwrap();
        let alerts_active = IntGauge::new(
            "ringwatch_alerts_active",
            "Supervisor alerts firing now (calls and promises past a limit), when alerts.alertmanager_url is set.",
        )
        .unwrap();
        let alerts_posted = IntCounter::new(
            "ringwatch_alerts_posted_total",
            "Alerts (firing or resolved) delivered to Alertmanager.",
        )
        .unwrap();
        let alert_post_failures = IntCounter::new(
            "ringwatch_alert_post_failures_total",
            "Failed deliveries to Alertmanager (retried with backoff).",
        )
        .unwrap();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "ringwatch_build_info",
                "Always 1; labels carry the version and source revision.",
            ),
            &["version", "revision"],
        )
        .unwrap();
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("RINGWATCH_REVISION")])
            .set(1);
        // Pre-create every label value so the series exist (at 0) from the start.
        for r in CLOSE_REASONS {
            connections_closed.with_label_values(&[r]);
        }
        for k in ProtocolError::ALL {
            protocol_errors.with_label_values(&[k.as_str()]);
        }
        for c in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_opened.clone()),
            Box::new(connections_closed.clone()),
            Box::new(frames.clone()),
            Box::new(frame_bytes.clone()),
            Box::new(protocol_errors.clone()),
            Box::new(event_lag.clone()),
            Box::new(frame_duration.clone()),
            Box::new(scrape_duration.clone()),
            Box::new(scrapes_coalesced.clone()),
            Box::new(alerts_active.clone()),
            Box::new(alerts_posted.clone()),
            Box::new(alert_post_failures.clone()),
            Box::new(build_info),
        ] {
            registry.register(c).expect("self-metric names are unique");
        }
        let sources = SourceMetrics::new();
        for c in sources.collectors() {
            registry.register(c).expect("self-metric names are unique");
        }
        SelfMetrics {
            registry,
            connections,
            connections_opened,
            connections_closed,
            frames,
            edge,
            frame_bytes,
            protocol_errors,
            event_lag,
            frame_duration,
            scrape_duration,
            scrapes_coalesced,
            alerts_active,
            alerts_posted,
            alert_post_failures,
            sources,
        }
    }

    pub fn protocol_error(&self, kind: ProtocolError) {
        self.protocol_errors
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    pub fn closed(&self, reason: &'static str) {
        debug_assert!(CLOSE_REASONS.contains(&reason));
        self.connections_closed.with_label_values(&[reason]).inc();
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}
