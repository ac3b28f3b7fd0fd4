//! The self-metrics of the listeners' guards: bearer-token refusals and open
//! connections per token source ([`super`]), TLS handshake failures
//! (`crate::tls`) and SIGHUP reloads (`crate::reload`), with the label enum
//! of reloads ([`ReloadFile`]). See docs/security.md.
//!
//! Every fixed label combination is resolved into a handle here, once, so a
//! refusal or a failed handshake never looks a series up by its labels.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{Failure, Listener};

/// What a SIGHUP reloads (the `what` label of `ringwatch_reloads_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadFile {
    IngestTokens,
    HttpTokens,
    IngestTls,
    HttpTls,
}

impl ReloadFile {
    /// In declaration order: the handle array is indexed by `what as usize`.
    pub const ALL: [ReloadFile; 4] = [
        ReloadFile::IngestTokens,
        ReloadFile::HttpTokens,
        ReloadFile::IngestTls,
        ReloadFile::HttpTls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadFile::IngestTokens => "ingest_tokens",
            ReloadFile::HttpTokens => "http_tokens",
            ReloadFile::IngestTls => "ingest_tls",
            ReloadFile::HttpTls => "http_tls",
        }
    }
}

// The handle arrays are indexed by `as usize`: a reordered `ALL` would
// count under the wrong label, so it does not build.
const _: () = {
    let mut i = 0;
    while i < Listener::ALL.len() {
        assert!(Listener::ALL[i] as usize == i);
        i += 1;
    }
    let mut i = 0;
    while i < Failure::ALL.len() {
        assert!(Failure::ALL[i] as usize == i);
        i += 1;
    }
    let mut i = 0;
    while i < ReloadFile::ALL.len() {
        assert!(ReloadFile::ALL[i] as usize == i);
        i += 1;
    }
};

/// The `result` label of `ringwatch_reloads_total`, indexed by `!ok`.
const RESULTS: [&str; 2] = ["success", "failure"];

const LISTENERS: usize = Listener::ALL.len();

/// Who got in, over what: tokens, TLS and reloads of both.
pub struct EdgeMetrics {
    auth_failures: [[IntCounter; Failure::ALL.len()]; LISTENERS],
    tls_handshake_failures: [IntCounter; LISTENERS],
    reloads: [[IntCounter; RESULTS.len()]; ReloadFile::ALL.len()],
    /// Labelled with token-file names, which reloads can add: resolved per
    /// connection by [`EdgeMetrics::source_connections`].
    source_connections: IntGaugeVec,
}

impl EdgeMetrics {
    pub fn new(registry: &Registry) -> Self {
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "ringwatch_auth_failures_total",
                "Requests refused with 401 for want of a valid bearer token, by listener (ingest, http = /metrics) and reason.",
            ),
            &["listener", "reason"],
        )
        .unwrap();
        let source_connections = IntGaugeVec::new(
            Opts::new(
                "ringwatch_ingest_source_connections",
                "Open ingest connections per token source (only when ingest.tokens_file is set).",
            ),
            &["source"],
        )
        .unwrap();
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "ringwatch_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out, by listener.",
            ),
            &["listener"],
        )
        .unwrap();
        let reloads = IntCounterVec::new(
            Opts::new(
                "ringwatch_reloads_total",
                "Reloads of token files and TLS certificates on SIGHUP, by what and result (a failure keeps the previous one).",
            ),
            &["what", "result"],
        )
        .unwrap();
        for c in [
            Box::new(auth_failures.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(source_connections.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(reloads.clone()),
        ] {
            registry.register(c).expect("self-metric names are unique");
        }
        EdgeMetrics {
            auth_failures: Listener::ALL.map(|l| {
                Failure::ALL.map(|f| auth_failures.with_label_values(&[l.as_str(), f.as_str()]))
            }),
            tls_handshake_failures: Listener::ALL
                .map(|l| tls_handshake_failures.with_label_values(&[l.as_str()])),
            reloads: ReloadFile::ALL.map(|what| {
                RESULTS.map(|result| reloads.with_label_values(&[what.as_str(), result]))
            }),
            source_connections,
        }
    }

    pub fn auth_failure(&self, listener: Listener, failure: Failure) {
        self.auth_failures[listener as usize][failure as usize].inc();
    }

    pub fn tls_handshake_failure(&self, listener: Listener) {
        self.tls_handshake_failures[listener as usize].inc();
    }

    pub fn reloaded(&self, what: ReloadFile, ok: bool) {
        self.reloads[what as usize][usize::from(!ok)].inc();
    }

    /// Give every token source its series (at 0), so a source that never
    /// connected shows 0 rather than nothing.
    pub fn declare_sources<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        for n in names {
            self.source_connections.with_label_values(&[n]);
        }
    }

    /// The open-connections gauge of one token source, for a connection to
    /// hold for its life.
    pub fn source_connections(&self, source: &str) -> IntGauge {
        self.source_connections.with_label_values(&[source])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_count_under_their_own_labels() {
        let registry = Registry::new();
        let m = EdgeMetrics::new(&registry);
        m.auth_failure(Listener::Http, Failure::Malformed);
        m.tls_handshake_failure(Listener::Ingest);
        m.reloaded(ReloadFile::IngestTls, false);
        m.reloaded(ReloadFile::HttpTokens, true);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for l in Listener::ALL {
            for f in Failure::ALL {
                let n = u8::from((l, f) == (Listener::Http, Failure::Malformed));
                let line = format!(
                    "ringwatch_auth_failures_total{{listener=\"{}\",reason=\"{}\"}} {n}\n",
                    l.as_str(),
                    f.as_str()
                );
                assert!(text.contains(&line), "{line}in\n{text}");
            }
            let n = u8::from(l == Listener::Ingest);
            let line = format!(
                "ringwatch_tls_handshake_failures_total{{listener=\"{}\"}} {n}\n",
                l.as_str()
            );
            assert!(text.contains(&line), "{line}in\n{text}");
        }
        for what in ReloadFile::ALL {
            for (result, ok) in [("success", true), ("failure", false)] {
                let counted = [
                    (ReloadFile::IngestTls, false),
                    (ReloadFile::HttpTokens, true),
                ];
                let n = u8::from(counted.contains(&(what, ok)));
                let line = format!(
                    "ringwatch_reloads_total{{result=\"{result}\",what=\"{}\"}} {n}\n",
                    what.as_str()
                );
                assert!(text.contains(&line), "{line}in\n{text}");
            }
        }
    }
}
