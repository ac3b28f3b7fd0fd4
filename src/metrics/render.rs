//! Rendering: a [`Snapshot`] plus the self-metrics registry as Prometheus text
//! (format 0.0.4), through the `prometheus` crate's data model and encoder.
//! Family names, help texts and label names of the contract live here.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType, Quantile,
    Summary,
};
use prometheus::{Encoder, TextEncoder};

use super::histogram::{Buckets, QUANTILES};
use super::{AgentCounters, Counters, SeriesSnapshot, Snapshot};
use crate::event::{EventKind, Reason};
use crate::rules::{FoldedLabel, Live, Outcome};

/// A family's name, help text and how to read its value.
type Described<F> = (&'static str, &'static str, F);
type CounterFn = fn(&Counters) -> u64;
type LiveFn = fn(&Live) -> f64;
type AgentFn = fn(&AgentCounters) -> u64;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Render every family: the contract's, then the self-metrics.
pub fn render(snapshot: &Snapshot, self_metrics: &prometheus::Registry) -> String {
    let mut families = call_center_families(snapshot);
    families.extend(self_metrics.gather());
    // A family with no series (no queue seen yet) is left out, as the text
    // format has no way to say "a family with nothing in it".
    families.retain(|f| !f.get_metric().is_empty());
    let mut out = Vec::with_capacity(64 * 1024);
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("families built here are well-formed");
    String::from_utf8(out).expect("the text encoder writes UTF-8")
}

fn call_center_families(s: &Snapshot) -> Vec<MetricFamily> {
    let mut fams = Vec::with_capacity(48);
    let series = &s.series;

    // Histograms: durations are kept in milliseconds and shown in seconds.
    let b = &s.bounds;
    fams.push(histogram(
        "ringwatch_time_to_answer_seconds",
        "Time from call.offered to call.answered, per answered call.",
        series,
        &b.time_to_answer,
        1000.0,
        |x| &x.histograms.time_to_answer,
    ));
    fams.push(histogram(
        "ringwatch_answer_rings",
        "Rings heard before a person answered (ceil(time to answer / ring_cycle), at least 1).",
        series,
        &b.rings,
        1.0,
        |x| &x.histograms.rings,
    ));
    fams.push(histogram(
        "ringwatch_hold_duration_seconds",
        "Length of one finished hold segment (a call ending on hold closes its segment).",
        series,
        &b.hold,
        1000.0,
        |x| &x.histograms.hold,
    ));
    fams.push(histogram(
        "ringwatch_abandon_wait_seconds",
        "How long an abandoning caller waited before hanging up.",
        series,
        &b.time_to_answer,
        1000.0,
        |x| &x.histograms.abandon_wait,
    ));
    fams.push(histogram(
        "ringwatch_callback_lateness_seconds",
        "How late a late callback came (completed minus due).",
        series,
        &b.lateness,
        1000.0,
        |x| &x.histograms.lateness,
    ));

    // Per-series counters.
    let counters: [Described<CounterFn>; 6] = [
        ("ringwatch_calls_offered_total", "Calls offered.", |c| {
            c.offered
        }),
        (
            "ringwatch_calls_answered_total",
            "Calls answered by a person.",
            |c| c.answered,
        ),
        (
            "ringwatch_calls_answered_late_total",
            "Calls answered after more than max_rings rings.",
            |c| c.answered_late,
        ),
        ("ringwatch_holds_total", "Hold segments finished.", |c| {
            c.holds
        }),
        (
            "ringwatch_hold_limit_exceeded_total",
            "Hold segments longer than hold_limit.",
            |c| c.hold_exceeded,
        ),
        (
            "ringwatch_callbacks_promised_total",
            "Callback promises accepted.",
            |c| c.promised,
        ),
    ];
    for (name, help, get) in counters {
        fams.push(family(
            name,
            help,
            MetricType::COUNTER,
            series
                .iter()
                .map(|x| counter(labels(x, &[]), get(&x.counters) as f64))
                .collect(),
        ));
    }
    fams.push(family(
        "ringwatch_calls_abandoned_total",
        "Calls that ended before a person answered (short: waited under short_abandon).",
        MetricType::COUNTER,
        series
            .iter()
            .flat_map(|x| {
                [
                    counter(
                        labels(x, &[("short", "true")]),
                        x.counters.abandoned_short as f64,
                    ),
                    counter(
                        labels(x, &[("short", "false")]),
                        x.counters.abandoned_long as f64,
                    ),
                ]
            })
            .collect(),
    ));
    fams.push(family(
        "ringwatch_callbacks_resolved_total",
        "Callback promises that reached their one outcome.",
        MetricType::COUNTER,
        series
            .iter()
            .flat_map(|x| {
                Outcome::ALL.map(|o| {
                    counter(
                        labels(x, &[("outcome", o.as_str())]),
                        x.counters.resolved[o as usize] as f64,
                    )
                })
            })
            .collect(),
    ));
    fams.push(family(
        "ringwatch_calls_evicted_total",
        "Calls dropped after call_ttl without any event.",
        MetricType::COUNTER,
        series
            .iter()
            .map(|x| counter(labels(x, &[]), x.counters.evicted as f64))
            .collect(),
    ));

    // Event accounting.
    let t = &s.totals;
    fams.push(family(
        "ringwatch_events_received_total",
        "Events accepted and applied, by type.",
        MetricType::COUNTER,
        EventKind::ALL
            .iter()
            .map(|k| counter(pairs(&[("type", k.as_str())]), t.received[k.index()] as f64))
            .collect(),
    ));
    fams.push(family(
        "ringwatch_events_rejected_total",
        "Events not applied, by reason.",
        MetricType::COUNTER,
        Reason::ALL
            .iter()
            .map(|r| {
                counter(
                    pairs(&[("reason", r.as_str())]),
                    t.rejected[r.index()] as f64,
                )
            })
            .collect(),
    ));
    fams.push(family(
        "ringwatch_events_duplicate_total",
        "Events dropped as repeats of an already applied event_id.",
        MetricType::COUNTER,
        vec![counter(vec![], t.duplicates as f64)],
    ));
    fams.push(family(
        "ringwatch_label_values_folded_total",
        "Label values reported as \"other\" because max_queues, max_sites or max_agents was reached.",
        MetricType::COUNTER,
        FoldedLabel::ALL
            .iter()
            .map(|l| counter(pairs(&[("label", l.as_str())]), t.folded[*l as usize] as f64))
            .collect(),
    ));

    // Per-agent attribution (only when metrics.per_agent is on; otherwise
    // these families are empty and left out).
    let agent_counters: [Described<AgentFn>; 4] = [
        (
            "ringwatch_agent_calls_answered_total",
            "Calls answered, by the answering agent.",
            |a| a.answered,
        ),
        (
            "ringwatch_agent_calls_answered_late_total",
            "Calls answered after more than max_rings rings, by the answering agent.",
            |a| a.answered_late,
        ),
        (
            "ringwatch_agent_holds_total",
            "Hold segments finished, by the agent who put the caller on hold.",
            |a| a.holds,
        ),
        (
            "ringwatch_agent_hold_limit_exceeded_total",
            "Hold segments longer than hold_limit, by the agent who put the caller on hold.",
            |a| a.hold_exceeded,
        ),
    ];
    for (name, help, get) in agent_counters {
        fams.push(family(
            name,
            help,
            MetricType::COUNTER,
            s.agents
                .iter()
                .map(|a| counter(pairs(&[("agent", a.agent.as_str())]), get(a) as f64))
                .collect(),
        ));
    }
    fams.push(family(
        "ringwatch_agent_callbacks_resolved_total",
        "Callback promises resolved, by the agent who called back (else the one who promised).",
        MetricType::COUNTER,
        s.agents
            .iter()
            .flat_map(|a| {
                Outcome::ALL.map(|o| {
                    counter(
                        pairs(&[("agent", a.agent.as_str()), ("outcome", o.as_str())]),
                        a.resolved[o as usize] as f64,
                    )
                })
            })
            .collect(),
    ));

    // The live wall.
    let live: [Described<LiveFn>; 9] = [
        (
            "ringwatch_calls_waiting",
            "Calls offered and not yet answered or ended.",
            |l| l.waiting as f64,
        ),
        (
            "ringwatch_calls_waiting_over_limit",
            "Waiting calls ringing past max_rings right now.",
            |l| l.waiting_over_limit as f64,
        ),
        (
            "ringwatch_oldest_wait_seconds",
            "Longest current wait (0 when none).",
            |l| l.oldest_wait as f64 / 1000.0,
        ),
        (
            "ringwatch_calls_active",
            "Calls answered and not yet ended (on hold included).",
            |l| l.active as f64,
        ),
        ("ringwatch_calls_on_hold", "Calls on hold now.", |l| {
            l.on_hold as f64
        }),
        (
            "ringwatch_calls_on_hold_over_limit",
            "Calls on hold now for longer than hold_limit.",
            |l| l.on_hold_over_limit as f64,
        ),
        (
            "ringwatch_longest_hold_seconds",
            "Longest current hold (0 when none).",
            |l| l.longest_hold as f64 / 1000.0,
        ),
        (
            "ringwatch_callbacks_pending",
            "Callback promises not yet resolved.",
            |l| l.callbacks_pending as f64,
        ),
        (
            "ringwatch_callbacks_overdue",
            "Pending callback promises whose due time has passed.",
            |l| l.callbacks_overdue as f64,
        ),
    ];
    for (name, help, get) in live {
        fams.push(family(
            name,
            help,
            MetricType::GAUGE,
            series
                .iter()
                .map(|x| gauge(labels(x, &[]), get(&x.live)))
                .collect(),
        ));
    }
    // Quantiles over the sliding window are exposed as summaries: the
    // samples are the `{quantile="..."}` series of the contract, plus the
    // cumulative _sum and _count a summary carries (the same totals as the
    // histogram's). promtool refuses a `quantile` label on any other type.
    fams.push(summary(
        "ringwatch_time_to_answer_quantile_seconds",
        "Time to answer quantiles from the HDR histogram over the sliding window (NaN when no call was answered in it); _sum and _count are totals since start.",
        series,
        |x| (&x.tta_quantiles, &x.histograms.time_to_answer),
    ));
    fams.push(summary(
        "ringwatch_hold_duration_quantile_seconds",
        "Hold segment quantiles from the HDR histogram over the sliding window (NaN when no hold ended in it); _sum and _count are totals since start.",
        series,
        |x| (&x.hold_quantiles, &x.histograms.hold),
    ));

    // Engine state.
    let e = &s.engine;
    let engine: [(&str, &str, f64); 3] = [
        (
            "ringwatch_clock_seconds",
            "The monitor's clock as Unix seconds (event time when clock = \"event\").",
            if e.clock == i64::MIN {
                0.0
            } else {
                e.clock as f64 / 1000.0
            },
        ),
        (
            "ringwatch_calls_in_flight",
            "Calls held in memory (waiting or active).",
            e.calls_in_flight as f64,
        ),
        (
            "ringwatch_dedup_ids",
            "event_ids remembered for de-duplication.",
            e.dedup_ids as f64,
        ),
    ];
    for (name, help, v) in engine {
        fams.push(family(
            name,
            help,
            MetricType::GAUGE,
            vec![gauge(vec![], v)],
        ));
    }
    fams
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn pairs(extra: &[(&str, &str)]) -> Vec<LabelPair> {
    extra
        .iter()
        .map(|(k, v)| {
            let mut p = LabelPair::default();
            p.set_name(k.to_string());
            p.set_value(v.to_string());
            p
        })
        .collect()
}

/// `queue`, then `site` when the events carry one, then `extra`.
fn labels(x: &SeriesSnapshot, extra: &[(&str, &str)]) -> Vec<LabelPair> {
    let mut l = Vec::with_capacity(2 + extra.len());
    l.push(("queue", x.queue.as_str()));
    if let Some(site) = &x.site {
        l.push(("site", site.as_str()));
    }
    l.extend_from_slice(extra);
    pairs(&l)
}

fn counter(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::from_label(labels);
    m.set_counter(c);
    m
}

fn gauge(labels: Vec<LabelPair>, v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::from_label(labels);
    m.set_gauge(g);
    m
}

fn histogram(
    name: &str,
    help: &str,
    series: &[SeriesSnapshot],
    bounds: &[i64],
    unit: f64,
    get: impl Fn(&SeriesSnapshot) -> &Buckets,
) -> MetricFamily {
    let metrics = series
        .iter()
        .map(|x| {
            let data = get(x);
            let buckets = bounds
                .iter()
                .zip(data.cumulative())
                .map(|(le, n)| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(*le as f64 / unit);
                    b.set_cumulative_count(n);
                    b
                })
                .collect();
            let mut h = Histogram::default();
            h.set_bucket(buckets);
            h.set_sample_count(data.count);
            h.set_sample_sum(data.sum as f64 / unit);
            let mut m = Metric::from_label(labels(x, &[]));
            m.set_histogram(h);
            m
        })
        .collect();
    family(name, help, MetricType::HISTOGRAM, metrics)
}

fn summary(
    name: &str,
    help: &str,
    series: &[SeriesSnapshot],
    get: impl Fn(&SeriesSnapshot) -> (&[f64; 3], &Buckets),
) -> MetricFamily {
    let metrics = series
        .iter()
        .map(|x| {
            let (values, totals) = get(x);
            let mut s = Summary::default();
            s.set_quantile(
                QUANTILES
                    .iter()
                    .zip(values)
                    .map(|(q, v)| {
                        let mut quantile = Quantile::default();
                        quantile.set_quantile(*q);
                        quantile.set_value(*v);
                        quantile
                    })
                    .collect(),
            );
            s.set_sample_count(totals.count);
            s.set_sample_sum(totals.sum as f64 / 1000.0);
            let mut m = Metric::from_label(labels(x, &[]));
            m.set_summary(s);
            m
        })
        .collect();
    family(name, help, MetricType::SUMMARY, metrics)
}
