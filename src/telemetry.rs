//! All of ringwatch's self-metrics on one registry: builds each subsystem's
//! own set (registered beside the code that records it) plus
//! `ringwatch_build_info` and the standard `process_*` families. Only the wiring (`daemon`), benches and tests use
//! this aggregate; a subsystem is handed just its own set, so none of them
//! imports this module.

use std::sync::Arc;

use prometheus::{IntGaugeVec, Opts, Registry};

use crate::alerts::metrics::AlertMetrics;
use crate::auth::metrics::EdgeMetrics;
use crate::durability::metrics::DiskMetrics;
use crate::http::metrics::ScrapeMetrics;
use crate::ingest::metrics::IngestMetrics;
use crate::sources::metrics::PlatformMetrics;

pub struct SelfMetrics {
    /// What `/metrics` renders after the call-center families.
    pub registry: Registry,
    pub ingest: Arc<IngestMetrics>,
    pub edge: Arc<EdgeMetrics>,
    pub scrape: Arc<ScrapeMetrics>,
    pub alerts: Arc<AlertMetrics>,
    pub disk: Arc<DiskMetrics>,
    pub platforms: Arc<PlatformMetrics>,
}

impl SelfMetrics {
    /// Every self-metric family, registered on a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        build_info(&registry);
        process(&registry);
        SelfMetrics {
            ingest: Arc::new(IngestMetrics::new(&registry)),
            edge: Arc::new(EdgeMetrics::new(&registry)),
            scrape: Arc::new(ScrapeMetrics::new(&registry)),
            alerts: Arc::new(AlertMetrics::new(&registry)),
            disk: Arc::new(DiskMetrics::new(&registry)),
            platforms: Arc::new(PlatformMetrics::new(&registry)),
            registry,
        }
    }
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, ...
/// from the `prometheus` crate's own collector, under the names every
/// exporter uses, so the usual restart and leak alerts and dashboards work.
/// It reads /proc at each gather, which `/metrics` does off the async
/// workers. Linux only: elsewhere the families are absent.
fn process(registry: &Registry) {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("self-metric names are unique");
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

/// Set once and never touched again, so nothing keeps a handle.
fn build_info(registry: &Registry) {
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
    registry
        .register(Box::new(build_info))
        .expect("self-metric names are unique");
}

#[cfg(test)]
mod tests {
    use prometheus::proto::MetricType;

    /// OpenMetrics names a counter's samples `<family>_total`: a counter
    /// named otherwise would be exposed under another name there than in
    /// the text format.
    #[test]
    fn every_counter_ends_in_total_and_process_families_are_there() {
        let m = super::SelfMetrics::new();
        let families = m.registry.gather();
        for f in &families {
            if f.get_field_type() == MetricType::COUNTER {
                assert!(f.name().ends_with("_total"), "counter {}", f.name());
            }
        }
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        #[cfg(target_os = "linux")]
        for want in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(names.contains(&want), "{want} not in {names:?}");
        }
    }
}
