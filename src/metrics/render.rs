//! Rendering: a [`Snapshot`] followed by the self-metrics registry, in the
//! Prometheus text format (0.0.4) or OpenMetrics 1.0 text ([`Format`]).
//! Family names, help texts and label names of the contract live here.
//!
//! The call-center families are written straight into the output rather than
//! built as `prometheus` data-model objects first: with 1,000 queues that is
//! some 100,000 samples, and building an object (with owned label strings)
//! per sample cost more than everything else in a scrape. The self-metrics
//! are gathered from the registry and written by the same writer rather than
//! the crate's `TextEncoder`: it speaks no OpenMetrics, and it spells `le` as
//! `le="1"` where Prometheus 3 stores `le="1.0"`.
//!
//! A 1,000-queue scrape is about 105,000 lines, so the writer is built for
//! that: each series' label set (`queue="q1",site="s"`) and each family's
//! `le`/`quantile` labels are written once per scrape and then copied into
//! every line, and values are integers (itoa) or shortest floats (zmij)
//! spelled exactly as `format!("{v}")` spells them, into one buffer sized
//! up front.

use std::fmt::Write;

use prometheus::proto::{MetricFamily, MetricType};

use super::histogram::{Buckets, QUANTILES};
pub use super::openmetrics::Format;
use super::openmetrics::{self, label_float, label_float_string};
use super::{AgentCounters, Bounds, Counters, SeriesSnapshot, Snapshot};
use crate::event::{EventKind, Reason};
use crate::rules::{FoldedLabel, Live, Outcome};

/// A family's name, help text and how to read its value.
type Described<F> = (&'static str, &'static str, F);
type CounterFn = fn(&Counters) -> u64;
type LiveFn = fn(&Live) -> f64;
type AgentFn = fn(&AgentCounters) -> u64;

/// The text format's content type (the default of `/metrics`).
pub const CONTENT_TYPE: &str = openmetrics::TEXT_CONTENT_TYPE;

/// Render every family in the text format: the contract's, then the
/// self-metrics.
pub fn render(snapshot: &Snapshot, self_metrics: &prometheus::Registry) -> String {
    render_as(snapshot, self_metrics, Format::Text)
}

/// Render every family in `format`: the contract's, then the self-metrics
/// (then `# EOF` in OpenMetrics).
pub fn render_as(
    snapshot: &Snapshot,
    self_metrics: &prometheus::Registry,
    format: Format,
) -> String {
    let mut out = String::new();
    render_into(&mut out, snapshot, self_metrics, format);
    out
}

/// [`render_as`] into `out`, which is cleared first and keeps its
/// capacity. `/metrics` hands the same buffer to every scrape: a 1,000-queue
/// body is some 7 MB, and memory the process already touched costs a
/// fraction of fresh pages (which the kernel faults in and zeroes one by
/// one as they are first written).
pub fn render_into(
    out: &mut String,
    snapshot: &Snapshot,
    self_metrics: &prometheus::Registry,
    format: Format,
) {
    // Gathered first: the process collector reads /proc here.
    let families = self_metrics.gather();
    let series: Vec<Series> = snapshot
        .series
        .iter()
        .map(|x| (x, series_labels(x)))
        .collect();
    // Reserved once instead of grown through copies of megabytes, and
    // generously: a line is some 48 bytes besides its series' labels, and
    // pages never written are never touched.
    let lines = lines_per_series(&snapshot.bounds);
    let bytes: usize = series.iter().map(|(_, l)| lines * (l.len() + 96)).sum();
    out.clear();
    out.reserve(64 * 1024 + bytes);
    let mut t = Text::new(std::mem::take(out), format);
    call_center(&mut t, snapshot, &series);
    registry(&mut t, &families);
    if format == Format::OpenMetrics {
        t.out.push_str("# EOF\n");
    }
    *out = t.out;
}

/// The text being written. A family's `# HELP`/`# TYPE` header is written
/// with its first sample, so a family with no series leaves no trace (the
/// text format cannot express an empty family).
struct Text<'a> {
    out: String,
    format: Format,
    header: Option<(&'a str, &'a str, &'a str)>,
    /// No label written yet on the current sample line.
    first: bool,
}

impl<'a> Text<'a> {
    fn new(out: String, format: Format) -> Self {
        Text {
            out,
            format,
            header: None,
            first: true,
        }
    }

    fn family(&mut self, name: &'a str, help: &'a str, kind: &'a str) {
        self.header = Some((name, help, kind));
    }

    /// Start a sample line: the pending header, then `name` `suffix`.
    fn start(&mut self, name: &str, suffix: &str) {
        if let Some(header) = self.header.take() {
            self.write_header(header);
        }
        self.out.push_str(name);
        self.out.push_str(suffix);
        self.first = true;
    }

    /// Once per family, so out of the way of the per-line path.
    #[cold]
    fn write_header(&mut self, (name, help, kind): (&str, &str, &str)) {
        let format = self.format;
        let family = openmetrics::family_name(format, name, kind);
        self.out.push_str("# HELP ");
        self.out.push_str(family);
        self.out.push(' ');
        // OpenMetrics escapes `"` in help texts too.
        escape(&mut self.out, help, format == Format::OpenMetrics);
        self.out.push_str("\n# TYPE ");
        self.out.push_str(family);
        self.out.push(' ');
        self.out.push_str(kind);
        self.out.push('\n');
        if format == Format::OpenMetrics {
            if let Some(unit) = openmetrics::unit(family) {
                self.out.push_str("# UNIT ");
                self.out.push_str(family);
                self.out.push(' ');
                self.out.push_str(unit);
                self.out.push('\n');
            }
        }
    }

    fn label(&mut self, k: &str, v: &str) {
        self.out.push(if self.first { '{' } else { ',' });
        self.first = false;
        self.out.push_str(k);
        self.out.push_str("=\"");
        escape(&mut self.out, v, true);
        self.out.push('"');
    }

    /// End the sample line with its value.
    fn value(&mut self, value: f64) {
        if !self.first {
            self.out.push('}');
        }
        self.out.push(' ');
        number(&mut self.out, value);
        self.out.push('\n');
    }

    /// One sample: `name{extra...} value`.
    fn sample(&mut self, name: &str, suffix: &str, extra: &[(&str, &str)], value: f64) {
        self.start(name, suffix);
        for (k, v) in extra {
            self.label(k, v);
        }
        self.value(value);
    }

    /// One sample of a series: `name{labels,extra} value`, both label sets
    /// already written out (see [`series_labels`], [`pair`]; `extra` may be
    /// empty).
    fn line(&mut self, name: &str, suffix: &str, labels: &str, extra: &str, value: impl Spell) {
        self.start(name, suffix);
        let out = &mut self.out;
        out.push('{');
        out.push_str(labels);
        if !extra.is_empty() {
            out.push(',');
            out.push_str(extra);
        }
        out.push_str("} ");
        value.spell(out);
        out.push('\n');
    }

    fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        series: &[Series],
        bounds: &[i64],
        unit: f64,
        get: impl Fn(&SeriesSnapshot) -> &Buckets,
    ) {
        self.family(name, help, "histogram");
        let les: Vec<String> = bounds
            .iter()
            .map(|b| pair("le", &label_float_string(*b as f64 / unit)))
            .collect();
        for (x, labels) in series {
            let data = get(x);
            for (le, n) in les.iter().zip(data.cumulative()) {
                self.line(name, "_bucket", labels, le, n);
            }
            self.line(name, "_bucket", labels, "le=\"+Inf\"", data.count);
            self.line(name, "_sum", labels, "", data.sum as f64 / unit);
            self.line(name, "_count", labels, "", data.count);
        }
    }

    /// Quantiles over the sliding window, exposed as a summary: the samples
    /// are the `{quantile="..."}` series of the contract, plus the
    /// cumulative `_sum` and `_count` a summary carries (the histogram's
    /// totals). promtool refuses a `quantile` label on any other type.
    fn summary(
        &mut self,
        name: &'static str,
        help: &'static str,
        series: &[Series],
        get: impl Fn(&SeriesSnapshot) -> (&[f64; 3], &Buckets),
    ) {
        self.family(name, help, "summary");
        let qs = QUANTILES.map(|q| pair("quantile", &label_float_string(q)));
        for (x, labels) in series {
            let (values, totals) = get(x);
            for (q, v) in qs.iter().zip(values) {
                self.line(name, "", labels, q, *v);
            }
            self.line(name, "_sum", labels, "", totals.sum as f64 / 1000.0);
            self.line(name, "_count", labels, "", totals.count);
        }
    }

    /// One sample of a gathered self-metric, with its own labels and
    /// optionally `le` or `quantile` last.
    fn proto_sample(
        &mut self,
        name: &str,
        suffix: &str,
        m: &prometheus::proto::Metric,
        extra: Option<(&str, f64)>,
        value: f64,
    ) {
        self.start(name, suffix);
        for l in m.get_label() {
            self.label(l.name(), l.value());
        }
        if let Some((k, v)) = extra {
            self.out.push(if self.first { '{' } else { ',' });
            self.first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            label_float(&mut self.out, v);
            self.out.push('"');
        }
        if !self.first {
            self.out.push('}');
        }
        self.out.push(' ');
        number(&mut self.out, value);
        // No self-metric sets one; written as each format spells it should
        // one ever do (milliseconds in the text format, seconds in
        // OpenMetrics).
        let ts = m.timestamp_ms();
        if ts != 0 {
            match self.format {
                Format::Text => {
                    let _ = write!(self.out, " {ts}");
                }
                Format::OpenMetrics => {
                    self.out.push(' ');
                    number(&mut self.out, ts as f64 / 1000.0);
                }
            }
        }
        self.out.push('\n');
    }
}

/// The gathered self-metrics (families without any series left out).
fn registry<'a>(t: &mut Text<'a>, families: &'a [MetricFamily]) {
    for f in families.iter().filter(|f| !f.get_metric().is_empty()) {
        let name = f.name();
        let kind = match f.get_field_type() {
            MetricType::COUNTER => "counter",
            MetricType::GAUGE => "gauge",
            MetricType::HISTOGRAM => "histogram",
            MetricType::SUMMARY => "summary",
            // The crate has no untyped metric of its own (and its encoder
            // panics on one): nothing registered can be untyped.
            MetricType::UNTYPED => continue,
        };
        t.family(name, f.help(), kind);
        for m in f.get_metric() {
            match f.get_field_type() {
                MetricType::COUNTER => {
                    t.proto_sample(name, "", m, None, m.get_counter().get_value())
                }
                MetricType::GAUGE => t.proto_sample(name, "", m, None, m.get_gauge().get_value()),
                MetricType::UNTYPED => {}
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let mut inf = false;
                    for b in h.get_bucket() {
                        let le = b.upper_bound();
                        inf |= le == f64::INFINITY;
                        t.proto_sample(
                            name,
                            "_bucket",
                            m,
                            Some(("le", le)),
                            b.cumulative_count() as f64,
                        );
                    }
                    if !inf {
                        let count = h.get_sample_count() as f64;
                        t.proto_sample(name, "_bucket", m, Some(("le", f64::INFINITY)), count);
                    }
                    t.proto_sample(name, "_sum", m, None, h.get_sample_sum());
                    t.proto_sample(name, "_count", m, None, h.get_sample_count() as f64);
                }
                MetricType::SUMMARY => {
                    let s = m.get_summary();
                    for q in s.get_quantile() {
                        t.proto_sample(name, "", m, Some(("quantile", q.quantile())), q.value());
                    }
                    t.proto_sample(name, "_sum", m, None, s.sample_sum());
                    t.proto_sample(name, "_count", m, None, s.sample_count() as f64);
                }
            }
        }
    }
}

/// Escape a label value (`\`, `"`, newline) or help text (`\`, newline).
fn escape(out: &mut String, s: &str, quotes: bool) {
    if !s.contains(['\\', '\n', '"']) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A series and its label set as written (see [`series_labels`]).
type Series<'a> = (&'a SeriesSnapshot, String);

/// `queue="..."` and, when it has one, `,site="..."`: the labels every
/// sample of the series starts with.
fn series_labels(x: &SeriesSnapshot) -> String {
    let mut out = String::with_capacity(x.queue.len() + 32);
    out.push_str(&pair("queue", &x.queue));
    if let Some(site) = &x.site {
        out.push(',');
        out.push_str(&pair("site", site));
    }
    out
}

/// One label as written: `k="v"`, `v` escaped.
fn pair(k: &str, v: &str) -> String {
    let mut out = String::with_capacity(k.len() + v.len() + 3);
    out.push_str(k);
    out.push_str("=\"");
    escape(&mut out, v, true);
    out.push('"');
    out
}

/// Below this, every integer is an `f64` of its own, so its shortest
/// digits are its own digits and itoa spells it as `{v}` does.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

/// A sample's value, written as the text format spells it.
trait Spell {
    fn spell(self, out: &mut String);
}

impl Spell for f64 {
    fn spell(self, out: &mut String) {
        number(out, self);
    }
}

/// A count, spelled as the `f64` it was always shown as.
impl Spell for u64 {
    fn spell(self, out: &mut String) {
        if self < EXACT_INTEGERS as u64 {
            out.push_str(itoa::Buffer::new().format(self));
        } else {
            number(out, self as f64);
        }
    }
}

/// Values as the text format spells them: `format!("{v}")` (never an
/// exponent), but for NaN and the infinities. Integers (counts, mostly)
/// go through itoa and other finite values through zmij's shortest
/// digits, which are Rust's; zmij's exponent form (tiny and huge values),
/// its `.0` on integers and its ties (below) are left to `{v}`.
fn number(out: &mut String, v: f64) {
    // One conversion tells integers from the rest (`fract` is a libm call).
    if v.abs() < EXACT_INTEGERS {
        let i = v as i64;
        if i as f64 == v {
            if i != 0 || v.is_sign_positive() {
                out.push_str(itoa::Buffer::new().format(i));
                return;
            }
        } else {
            fraction(out, v);
            return;
        }
    }
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // -0, and integers past 2^53 (whose shortest digits end in zeros).
        let _ = write!(out, "{v}");
    }
}

/// A finite value with a fractional part.
fn fraction(out: &mut String, v: f64) {
    let mut buffer = zmij::Buffer::new();
    let digits = buffer.format_finite(v);
    // With 16 or 17 significant digits, two shortest candidates can be
    // equally near `v`, and zmij and Rust break that tie differently;
    // with 15 or fewer the rounding interval is too narrow to hold two.
    let significant = digits
        .trim_start_matches(['-', '0', '.'])
        .bytes()
        .filter(u8::is_ascii_digit)
        .count();
    if digits.contains('e') || significant > 15 {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(digits);
    }
}

/// Sample lines each series has (see [`call_center`]).
fn lines_per_series(b: &Bounds) -> usize {
    // A histogram: its buckets, +Inf, _sum and _count.
    let histogram = |bounds: &[i64]| bounds.len() + 3;
    2 * histogram(&b.time_to_answer)
        + histogram(&b.rings)
        + histogram(&b.hold)
        + histogram(&b.lateness)
        // counters, abandoned by short, resolved by outcome, evicted
        + 6 + 2 + Outcome::ALL.len() + 1
        // live gauges, two summaries
        + 9 + 2 * (QUANTILES.len() + 2)
}

fn call_center(t: &mut Text, s: &Snapshot, series: &[Series]) {
    // Histograms: durations are kept in milliseconds and shown in seconds.
    let b = &s.bounds;
    t.histogram(
        "ringwatch_time_to_answer_seconds",
        "Time from call.offered to call.answered, per answered call.",
        series,
        &b.time_to_answer,
        1000.0,
        |x| &x.histograms.time_to_answer,
    );
    t.histogram(
        "ringwatch_answer_rings",
        "Rings heard before a person answered (ceil(time to answer / ring_cycle), at least 1).",
        series,
        &b.rings,
        1.0,
        |x| &x.histograms.rings,
    );
    t.histogram(
        "ringwatch_hold_duration_seconds",
        "Length of one finished hold segment (a call ending on hold closes its segment).",
        series,
        &b.hold,
        1000.0,
        |x| &x.histograms.hold,
    );
    t.histogram(
        "ringwatch_abandon_wait_seconds",
        "How long an abandoning caller waited before hanging up.",
        series,
        &b.time_to_answer,
        1000.0,
        |x| &x.histograms.abandon_wait,
    );
    t.histogram(
        "ringwatch_callback_lateness_seconds",
        "How late a late callback came (completed minus due).",
        series,
        &b.lateness,
        1000.0,
        |x| &x.histograms.lateness,
    );

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
        t.family(name, help, "counter");
        for (x, labels) in series {
            t.line(name, "", labels, "", get(&x.counters));
        }
    }
    let name = "ringwatch_calls_abandoned_total";
    t.family(
        name,
        "Calls that ended before a person answered (short: waited under short_abandon).",
        "counter",
    );
    for (x, labels) in series {
        let c = &x.counters;
        t.line(name, "", labels, "short=\"true\"", c.abandoned_short);
        t.line(name, "", labels, "short=\"false\"", c.abandoned_long);
    }
    let name = "ringwatch_callbacks_resolved_total";
    t.family(
        name,
        "Callback promises that reached their one outcome.",
        "counter",
    );
    let outcomes = Outcome::ALL.map(|o| pair("outcome", o.as_str()));
    for (x, labels) in series {
        for (o, outcome) in Outcome::ALL.into_iter().zip(&outcomes) {
            t.line(name, "", labels, outcome, x.counters.resolved[o as usize]);
        }
    }
    let name = "ringwatch_calls_evicted_total";
    t.family(
        name,
        "Calls dropped after call_ttl without any event.",
        "counter",
    );
    for (x, labels) in series {
        t.line(name, "", labels, "", x.counters.evicted);
    }

    // Event accounting.
    let totals = &s.totals;
    let name = "ringwatch_events_received_total";
    t.family(name, "Events accepted and applied, by type.", "counter");
    for k in EventKind::ALL {
        t.sample(
            name,
            "",
            &[("type", k.as_str())],
            totals.received[k.index()] as f64,
        );
    }
    let name = "ringwatch_events_rejected_total";
    t.family(name, "Events not applied, by reason.", "counter");
    for r in Reason::ALL {
        t.sample(
            name,
            "",
            &[("reason", r.as_str())],
            totals.rejected[r.index()] as f64,
        );
    }
    let name = "ringwatch_events_duplicate_total";
    t.family(
        name,
        "Events dropped as repeats of an already applied event_id.",
        "counter",
    );
    t.sample(name, "", &[], totals.duplicates as f64);
    let name = "ringwatch_label_values_folded_total";
    t.family(
        name,
        "Label values reported as \"other\" because max_queues, max_sites or max_agents was reached.",
        "counter",
    );
    for l in FoldedLabel::ALL {
        t.sample(
            name,
            "",
            &[("label", l.as_str())],
            totals.folded[l as usize] as f64,
        );
    }

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
        t.family(name, help, "counter");
        for a in &s.agents {
            t.sample(name, "", &[("agent", &a.agent)], get(a) as f64);
        }
    }
    let name = "ringwatch_agent_callbacks_resolved_total";
    t.family(
        name,
        "Callback promises resolved, by the agent who called back (else the one who promised).",
        "counter",
    );
    for a in &s.agents {
        for o in Outcome::ALL {
            let v = a.resolved[o as usize] as f64;
            t.sample(name, "", &[("agent", &a.agent), ("outcome", o.as_str())], v);
        }
    }

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
        t.family(name, help, "gauge");
        for (x, labels) in series {
            t.line(name, "", labels, "", get(&x.live));
        }
    }
    t.summary(
        "ringwatch_time_to_answer_quantile_seconds",
        "Time to answer quantiles from the HDR histogram over the sliding window (NaN when no call was answered in it); _sum and _count are totals since start.",
        series,
        |x| (&x.tta_quantiles, &x.histograms.time_to_answer),
    );
    t.summary(
        "ringwatch_hold_duration_quantile_seconds",
        "Hold segment quantiles from the HDR histogram over the sliding window (NaN when no hold ended in it); _sum and _count are totals since start.",
        series,
        |x| (&x.hold_quantiles, &x.histograms.hold),
    );

    // Engine state.
    let e = &s.engine;
    let clock = if e.clock == i64::MIN {
        0.0
    } else {
        e.clock as f64 / 1000.0
    };
    let engine: [(&'static str, &'static str, f64); 3] = [
        (
            "ringwatch_clock_seconds",
            "The monitor's clock as Unix seconds (event time when clock = \"event\").",
            clock,
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
        t.family(name, help, "gauge");
        t.sample(name, "", &[], v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_special_values() {
        let mut out = String::new();
        escape(&mut out, "a\\b\"c\nd", true);
        assert_eq!(out, r#"a\\b\"c\nd"#);
        let mut out = String::new();
        escape(&mut out, "say \"hi\"\n", false);
        assert_eq!(out, "say \"hi\"\\n");
        let mut out = String::new();
        for v in [f64::NAN, f64::INFINITY, 18.0, 0.5, 41.5, 1e21] {
            number(&mut out, v);
            out.push(' ');
        }
        assert_eq!(out, "NaN +Inf 18 0.5 41.5 1000000000000000000000 ");
    }

    /// Self-metrics through the gathered registry, both formats, exactly.
    #[test]
    fn self_metrics_in_both_formats() {
        let r = prometheus::Registry::new();
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new("x_frames_total", "Frames \"seen\"."),
            &["kind"],
        )
        .unwrap();
        c.with_label_values(&["a\"b"]).inc_by(3);
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("x_wait_seconds", "Waits.").buckets(vec![0.5, 1.0, 2e6]),
        )
        .unwrap();
        h.observe(0.7);
        let empty = prometheus::IntGauge::new("x_idle_bytes", "Never set.").unwrap();
        r.register(Box::new(c)).unwrap();
        r.register(Box::new(h)).unwrap();
        r.register(Box::new(empty)).unwrap();
        let families = r.gather();
        let text = |format| {
            let mut t = Text::new(String::new(), format);
            registry(&mut t, &families);
            t.out
        };
        assert_eq!(
            text(Format::Text),
            "# HELP x_frames_total Frames \"seen\".\n\
             # TYPE x_frames_total counter\n\
             x_frames_total{kind=\"a\\\"b\"} 3\n\
             # HELP x_idle_bytes Never set.\n\
             # TYPE x_idle_bytes gauge\n\
             x_idle_bytes 0\n\
             # HELP x_wait_seconds Waits.\n\
             # TYPE x_wait_seconds histogram\n\
             x_wait_seconds_bucket{le=\"0.5\"} 0\n\
             x_wait_seconds_bucket{le=\"1.0\"} 1\n\
             x_wait_seconds_bucket{le=\"2e+06\"} 1\n\
             x_wait_seconds_bucket{le=\"+Inf\"} 1\n\
             x_wait_seconds_sum 0.7\n\
             x_wait_seconds_count 1\n"
        );
        assert_eq!(
            text(Format::OpenMetrics),
            "# HELP x_frames Frames \\\"seen\\\".\n\
             # TYPE x_frames counter\n\
             x_frames_total{kind=\"a\\\"b\"} 3\n\
             # HELP x_idle_bytes Never set.\n\
             # TYPE x_idle_bytes gauge\n\
             # UNIT x_idle_bytes bytes\n\
             x_idle_bytes 0\n\
             # HELP x_wait_seconds Waits.\n\
             # TYPE x_wait_seconds histogram\n\
             # UNIT x_wait_seconds seconds\n\
             x_wait_seconds_bucket{le=\"0.5\"} 0\n\
             x_wait_seconds_bucket{le=\"1.0\"} 1\n\
             x_wait_seconds_bucket{le=\"2e+06\"} 1\n\
             x_wait_seconds_bucket{le=\"+Inf\"} 1\n\
             x_wait_seconds_sum 0.7\n\
             x_wait_seconds_count 1\n"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Byte for byte what `format!("{v}")` writes (the format's spelling
        /// before the fast paths), over every finite value and the values a
        /// scrape writes most: counts and milliseconds shown in seconds.
        #[test]
        fn numbers_are_spelled_as_display_spells_them(
            v in proptest::num::f64::ANY,
            n in proptest::num::i64::ANY,
            ms in -10_000_000_000_000i64..10_000_000_000_000,
        ) {
            for v in [v, n as f64, ms as f64 / 1000.0, ms as f64, n as f64 / 1000.0] {
                if v.is_finite() {
                    let mut out = String::new();
                    number(&mut out, v);
                    proptest::prop_assert_eq!(out, format!("{v}"));
                }
            }
            for c in [n as u64, n as u64 >> 11, ms.unsigned_abs()] {
                let mut out = String::new();
                c.spell(&mut out);
                proptest::prop_assert_eq!(out, format!("{}", c as f64));
            }
        }
    }

    #[test]
    fn numbers_at_the_fast_paths_edges() {
        let edges = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            EXACT_INTEGERS - 1.0,
            EXACT_INTEGERS,
            EXACT_INTEGERS + 2.0,
            -EXACT_INTEGERS + 1.0,
            u64::MAX as f64,
            i64::MIN as f64,
            1e15 + 0.5,
            1e16,
            1e-7,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            1795424400.123,
            0.1 + 0.2,
            // A tie: zmij writes .2, Rust .3.
            1734825042059437185.0 / 1000.0,
            123456789012345.6,
            0.000123456789012345,
        ];
        for v in edges {
            let mut out = String::new();
            number(&mut out, v);
            assert_eq!(out, format!("{v}"), "{v:e}");
        }
    }

    /// A buffer handed back by an earlier scrape (holding another body,
    /// larger than this one) renders exactly what a fresh one does.
    #[test]
    fn a_reused_buffer_renders_what_a_fresh_one_does() {
        use crate::metrics::{BucketConfig, EngineState, Store};
        use crate::rules::{Limits, Measure, Observer, SeriesInfo, Settings};
        let s = Settings::default();
        let mut store = Store::new(Bounds::new(&s, &BucketConfig::default()), 300_000);
        for (id, queue) in ["sales", "q\"2"].into_iter().enumerate() {
            let info = SeriesInfo {
                queue: queue.into(),
                site: None,
                limits: Limits::default(),
            };
            store.new_series(id as u32, &info);
            store.measure(id as u32, 10, Measure::Offered);
            let answered = Measure::Answered {
                wait: 4_500,
                rings: 1,
                late: false,
            };
            store.measure(id as u32, 20, answered);
        }
        let snap = store.snapshot_without_windows(Vec::new(), EngineState::default());
        let registry = prometheus::Registry::new();
        for format in Format::ALL {
            let fresh = render_as(&snap, &registry, format);
            assert!(fresh.contains("ringwatch_calls_answered_total{queue=\"q\\\"2\"} 1\n"));
            let mut reused = "x".repeat(3 * fresh.len());
            render_into(&mut reused, &snap, &registry, format);
            assert_eq!(reused, fresh);
            render_into(&mut reused, &snap, &registry, format);
            assert_eq!(reused, fresh);
        }
    }

    #[test]
    fn empty_families_leave_no_header() {
        let mut t = Text::new(String::new(), Format::Text);
        t.family("a_total", "A.", "counter");
        t.family("b_total", "B.", "counter");
        t.sample("b_total", "", &[("x", "y")], 2.0);
        assert_eq!(
            t.out,
            "# HELP b_total B.\n# TYPE b_total counter\nb_total{x=\"y\"} 2\n"
        );
    }
}
