//! The cost of `/metrics` (`ringwatch_scrape_duration_seconds`,
//! `ringwatch_scrapes_coalesced_total`), registered beside the handler that
//! records it.

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

pub struct ScrapeMetrics {
    pub scrape_duration: Histogram,
    pub scrapes_coalesced: IntCounter,
}

impl ScrapeMetrics {
    pub fn new(registry: &Registry) -> Self {
        let m = ScrapeMetrics {
            scrape_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "ringwatch_scrape_duration_seconds",
                    "Time to produce one /metrics response.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
            )
            .unwrap(),
            scrapes_coalesced: IntCounter::new(
                "ringwatch_scrapes_coalesced_total",
                "/metrics responses that shared a pipeline snapshot another concurrent scrape had asked for, instead of asking for their own.",
            )
            .unwrap(),
        };
        for c in [
            Box::new(m.scrape_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.scrapes_coalesced.clone()),
        ] {
            registry.register(c).expect("self-metric names are unique");
        }
        m
    }
}
