//! The wall's figures as a pure function of a pipeline snapshot and the
//! time zone: [`Figures::of`] gathers them per queue (sites added up),
//! [`Figures::document`] picks and orders the queues asked for, adds them
//! up and computes the ratios and statuses: the JSON document of
//! `/api/v1/queues` and of each stream message (schema in `docs/wall.md`).

use std::collections::HashMap;

use serde::Serialize;

use super::WallSettings;
use crate::event::Millis;
use crate::metrics::windows::{Tally, MINUTE, MINUTES, QUARTER};
use crate::metrics::Snapshot;
use crate::rules::{Limits, Live};

/// Version of the document's layout; bumped only by changes that break a
/// reader (fields may be added without it).
pub const SCHEMA: u32 = 1;

/// Minutes in "last 15 minutes": the current minute and the 14 before.
pub const RECENT_MINUTES: i64 = 15;

/// One queue's raw figures at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueFigures {
    pub queue: String,
    pub limits: Limits,
    pub today: Tally,
    pub recent: Tally,
    /// The last [`MINUTES`] minutes, oldest first.
    pub chart: Vec<Tally>,
    pub live: Live,
}

/// Every queue's figures at the monitor's clock.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// The monitor's clock (or the wall clock before its first event).
    pub now: Millis,
    pub timezone: String,
    pub day_start: Millis,
    pub recent_start: Millis,
    pub chart_start: Millis,
    pub queues: Vec<QueueFigures>,
    /// `now` and `day_start` as RFC 3339 in the time zone.
    now_text: String,
    day_start_text: String,
}

/// Local midnight of the day `now` falls in; `None` if `now` is beyond
/// what the time zone library represents.
fn day_start(now: Millis, settings: &WallSettings) -> Option<(Millis, String, String)> {
    let ts = jiff::Timestamp::from_millisecond(now).ok()?;
    let zoned = ts.to_zoned_datetime(settings.zone().clone());
    let start = zoned.start_of_day().ok()?;
    let fmt = |z: &jiff::ZonedDateTime| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    Some((start.timestamp().as_millisecond(), fmt(&zoned), fmt(&start)))
}

impl Figures {
    /// `wall_now` stands in for the monitor's clock before it has a value
    /// (event mode before the first event).
    pub fn of(snapshot: &Snapshot, settings: &WallSettings, wall_now: Millis) -> Figures {
        let now = if snapshot.engine.clock == Millis::MIN {
            wall_now
        } else {
            snapshot.engine.clock
        };
        let (day, now_text, day_text) =
            day_start(now, settings).unwrap_or((now, String::new(), String::new()));
        let minute = now.div_euclid(MINUTE);
        let quarter = now.div_euclid(QUARTER);
        // Local midnight is a quarter boundary in every zone in use; a
        // zone whose midnight is not (old local mean times) counts from
        // the first quarter after it.
        let first_quarter = day.div_euclid(QUARTER) + i64::from(day.rem_euclid(QUARTER) != 0);
        let first_recent = minute - (RECENT_MINUTES - 1);
        let first_chart = minute - (MINUTES as i64 - 1);
        let mut live: HashMap<&str, Live> = HashMap::new();
        for s in &snapshot.series {
            let l = live.entry(s.queue.as_str()).or_default();
            add_live(l, &s.live);
        }
        let queues = snapshot
            .windows
            .iter()
            .map(|w| QueueFigures {
                queue: w.queue.to_string(),
                limits: w.limits,
                today: w.quarters_sum(first_quarter, quarter),
                recent: w.minutes_sum(first_recent, minute),
                chart: (first_chart..=minute).map(|m| w.minute(m)).collect(),
                live: live.get(w.queue.as_str()).copied().unwrap_or_default(),
            })
            .collect();
        Figures {
            now,
            timezone: settings.timezone().to_string(),
            day_start: day,
            recent_start: first_recent * MINUTE,
            chart_start: first_chart * MINUTE,
            queues,
            now_text,
            day_start_text: day_text,
        }
    }

    /// The document for the queues named in `selection`, in that order
    /// (names not known are left out), or every queue in the order first
    /// seen; the total adds up the queues in the document.
    pub fn document(&self, selection: Option<&[String]>) -> Document {
        let picked: Vec<&QueueFigures> = match selection {
            None => self.queues.iter().collect(),
            Some(names) => {
                let mut v: Vec<&QueueFigures> = Vec::new();
                for n in names {
                    if let Some(q) = self.queues.iter().find(|q| &q.queue == n) {
                        if !v.iter().any(|p| p.queue == q.queue) {
                            v.push(q);
                        }
                    }
                }
                v
            }
        };
        let queues: Vec<QueueDoc> = picked
            .iter()
            .map(|q| QueueDoc::of(q, self.chart_start))
            .collect();
        let mut total = QueueFigures {
            queue: String::new(),
            limits: Limits::default(),
            today: Tally::default(),
            recent: Tally::default(),
            chart: vec![Tally::default(); MINUTES],
            live: Live::default(),
        };
        for q in &picked {
            total.today.add(&q.today);
            total.recent.add(&q.recent);
            for (t, m) in total.chart.iter_mut().zip(&q.chart) {
                t.add(m);
            }
            add_live(&mut total.live, &q.live);
        }
        let mut total_doc = QueueDoc::of(&total, self.chart_start);
        total_doc.queue = None;
        total_doc.limits = None;
        // A live figure's status for all queues is the worst of the
        // queues' (each has its own limits): never judged against limits
        // of its own, so it starts at the best level.
        total_doc.status.waiting_over_limit = Level::Ok;
        total_doc.status.oldest_wait = Level::Ok;
        total_doc.status.on_hold_over_limit = Level::Ok;
        total_doc.status.longest_hold = Level::Ok;
        total_doc.status.callbacks_overdue = Level::Ok;
        for q in &queues {
            total_doc.status.worst_of(&q.status);
        }
        Document {
            schema: SCHEMA,
            generated_at: self.now_text.clone(),
            clock_ms: self.now,
            timezone: self.timezone.clone(),
            today_since: self.day_start_text.clone(),
            today_since_ms: self.day_start,
            last_15m_since_ms: self.recent_start,
            chart_since_ms: self.chart_start,
            chart_minute_seconds: (MINUTE / 1000) as u32,
            queues,
            total: total_doc,
        }
    }
}

fn add_live(into: &mut Live, l: &Live) {
    into.waiting += l.waiting;
    into.waiting_over_limit += l.waiting_over_limit;
    into.oldest_wait = into.oldest_wait.max(l.oldest_wait);
    into.active += l.active;
    into.on_hold += l.on_hold;
    into.on_hold_over_limit += l.on_hold_over_limit;
    into.longest_hold = into.longest_hold.max(l.longest_hold);
    into.callbacks_pending += l.callbacks_pending;
    into.callbacks_overdue += l.callbacks_overdue;
}

/// The JSON document (`docs/wall.md` describes every field).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Document {
    pub schema: u32,
    pub generated_at: String,
    pub clock_ms: Millis,
    pub timezone: String,
    pub today_since: String,
    pub today_since_ms: Millis,
    pub last_15m_since_ms: Millis,
    pub chart_since_ms: Millis,
    pub chart_minute_seconds: u32,
    pub queues: Vec<QueueDoc>,
    pub total: QueueDoc,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueDoc {
    /// `null` for the total.
    pub queue: Option<String>,
    pub limits: Option<LimitsDoc>,
    pub today: WindowDoc,
    pub last_15m: WindowDoc,
    pub now: NowDoc,
    pub status: Status,
    pub chart: Vec<MinuteDoc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LimitsDoc {
    /// `max_rings`: the rings a caller may hear before the answer is late.
    pub rings: u32,
    pub answer_seconds: f64,
    pub hold_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowDoc {
    pub offered: u32,
    pub answered: u32,
    pub answered_within_limit: u32,
    pub answered_late: u32,
    pub abandoned_short: u32,
    pub abandoned_long: u32,
    pub holds: u32,
    pub holds_over_limit: u32,
    pub callbacks_kept: u32,
    pub callbacks_late: u32,
    pub callbacks_missed: u32,
    pub callbacks_cancelled: u32,
    /// answered within the limit / (answered + long abandons).
    pub service_level: Option<f64>,
    /// long abandons / (answered + long abandons).
    pub abandon_rate: Option<f64>,
    pub average_answer_seconds: Option<f64>,
    /// holds over the limit / holds.
    pub hold_breach_rate: Option<f64>,
    /// kept / (kept + late + missed).
    pub callback_compliance: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NowDoc {
    pub waiting: u64,
    pub waiting_over_limit: u64,
    pub oldest_wait_seconds: f64,
    pub active: u64,
    pub on_hold: u64,
    pub on_hold_over_limit: u64,
    pub longest_hold_seconds: f64,
    pub callbacks_pending: u64,
    pub callbacks_overdue: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MinuteDoc {
    pub start_ms: Millis,
    pub answered: u32,
    pub abandoned_long: u32,
    pub service_level: Option<f64>,
    pub average_answer_seconds: Option<f64>,
}

/// Where a figure stands against the business limits; the page shows it
/// as a word and a shape as well as a colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing to judge (no calls in the window).
    None,
    Ok,
    /// Near the limit.
    Warn,
    /// Past the limit.
    Over,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Status {
    pub service_level_today: Level,
    pub service_level_last_15m: Level,
    pub waiting_over_limit: Level,
    pub oldest_wait: Level,
    pub on_hold_over_limit: Level,
    pub longest_hold: Level,
    pub callbacks_overdue: Level,
    pub callback_compliance_today: Level,
}

impl Status {
    fn worst_of(&mut self, o: &Status) {
        self.waiting_over_limit = self.waiting_over_limit.max(o.waiting_over_limit);
        self.oldest_wait = self.oldest_wait.max(o.oldest_wait);
        self.on_hold_over_limit = self.on_hold_over_limit.max(o.on_hold_over_limit);
        self.longest_hold = self.longest_hold.max(o.longest_hold);
        self.callbacks_overdue = self.callbacks_overdue.max(o.callbacks_overdue);
    }
}

/// The service-level target (where the alert fires) and the band above it
/// that is "at risk", as on the Grafana wall (`docs/dashboards.md`).
pub const SERVICE_LEVEL_TARGET: f64 = 0.80;
pub const SERVICE_LEVEL_AT_RISK: f64 = 0.85;
pub const COMPLIANCE_TARGET: f64 = 0.90;
pub const COMPLIANCE_AT_RISK: f64 = 0.95;

fn ratio(num: u32, den: u32) -> Option<f64> {
    (den > 0).then(|| f64::from(num) / f64::from(den))
}

fn seconds(ms: Millis) -> f64 {
    ms as f64 / 1000.0
}

fn against(v: Option<f64>, target: f64, at_risk: f64) -> Level {
    match v {
        None => Level::None,
        Some(v) if v < target => Level::Over,
        Some(v) if v < at_risk => Level::Warn,
        Some(_) => Level::Ok,
    }
}

fn count_level(n: u64) -> Level {
    if n > 0 {
        Level::Over
    } else {
        Level::Ok
    }
}

/// Over past `limit` (strictly, as the gauges count), near it from
/// `warn_from`.
fn duration_level(ms: Millis, warn_from: Millis, limit: Millis) -> Level {
    if ms > limit {
        Level::Over
    } else if ms >= warn_from && ms > 0 {
        Level::Warn
    } else {
        Level::Ok
    }
}

impl WindowDoc {
    fn of(t: &Tally) -> WindowDoc {
        let within = t.answered.saturating_sub(t.answered_late);
        let base = t.answered.saturating_add(t.abandoned_long);
        let resolved = t.kept.saturating_add(t.late).saturating_add(t.missed);
        WindowDoc {
            offered: t.offered,
            answered: t.answered,
            answered_within_limit: within,
            answered_late: t.answered_late,
            abandoned_short: t.abandoned_short,
            abandoned_long: t.abandoned_long,
            holds: t.holds,
            holds_over_limit: t.hold_exceeded,
            callbacks_kept: t.kept,
            callbacks_late: t.late,
            callbacks_missed: t.missed,
            callbacks_cancelled: t.cancelled,
            service_level: ratio(within, base),
            abandon_rate: ratio(t.abandoned_long, base),
            average_answer_seconds: (t.answered > 0)
                .then(|| t.answer_ms as f64 / 1000.0 / f64::from(t.answered)),
            hold_breach_rate: ratio(t.hold_exceeded, t.holds),
            callback_compliance: ratio(t.kept, resolved),
        }
    }
}

impl QueueDoc {
    fn of(q: &QueueFigures, chart_start: Millis) -> QueueDoc {
        let today = WindowDoc::of(&q.today);
        let last_15m = WindowDoc::of(&q.recent);
        let l = &q.live;
        let answer_limit = q.limits.answer_limit();
        let status = Status {
            service_level_today: against(
                today.service_level,
                SERVICE_LEVEL_TARGET,
                SERVICE_LEVEL_AT_RISK,
            ),
            service_level_last_15m: against(
                last_15m.service_level,
                SERVICE_LEVEL_TARGET,
                SERVICE_LEVEL_AT_RISK,
            ),
            waiting_over_limit: count_level(l.waiting_over_limit),
            // Near the limit from the last ring before it.
            oldest_wait: duration_level(
                l.oldest_wait,
                answer_limit - q.limits.ring_cycle,
                answer_limit,
            ),
            on_hold_over_limit: count_level(l.on_hold_over_limit),
            longest_hold: duration_level(
                l.longest_hold,
                q.limits.hold_limit - 5_000,
                q.limits.hold_limit,
            ),
            callbacks_overdue: count_level(l.callbacks_overdue),
            callback_compliance_today: against(
                today.callback_compliance,
                COMPLIANCE_TARGET,
                COMPLIANCE_AT_RISK,
            ),
        };
        QueueDoc {
            queue: Some(q.queue.clone()),
            limits: Some(LimitsDoc {
                rings: q.limits.max_rings,
                answer_seconds: seconds(answer_limit),
                hold_seconds: seconds(q.limits.hold_limit),
            }),
            now: NowDoc {
                waiting: l.waiting,
                waiting_over_limit: l.waiting_over_limit,
                oldest_wait_seconds: seconds(l.oldest_wait),
                active: l.active,
                on_hold: l.on_hold,
                on_hold_over_limit: l.on_hold_over_limit,
                longest_hold_seconds: seconds(l.longest_hold),
                callbacks_pending: l.callbacks_pending,
                callbacks_overdue: l.callbacks_overdue,
            },
            status,
            chart: q
                .chart
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let w = WindowDoc::of(t);
                    MinuteDoc {
                        start_ms: chart_start + i as i64 * MINUTE,
                        answered: t.answered,
                        abandoned_long: t.abandoned_long,
                        service_level: w.service_level,
                        average_answer_seconds: w.average_answer_seconds,
                    }
                })
                .collect(),
            today,
            last_15m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Bounds, BucketConfig, EngineState, Store};
    use crate::rules::{Measure, Observer, Outcome, SeriesInfo, Settings};

    fn store(queues: &[(&str, Option<&str>)]) -> Store {
        let mut s = Store::new(
            Bounds::new(&Settings::default(), &BucketConfig::default()),
            300_000,
        );
        for (id, (q, site)) in (0..).zip(queues) {
            s.new_series(
                id,
                &SeriesInfo {
                    queue: (*q).into(),
                    site: site.map(Into::into),
                    limits: Limits::default(),
                },
            );
        }
        s
    }

    fn zone(name: &str) -> WallSettings {
        WallSettings::new(name, jiff::tz::TimeZone::get(name).unwrap())
    }

    fn ms(rfc3339: &str) -> Millis {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn at(store: &mut Store, now: Millis, tz: &WallSettings, live: Vec<Live>) -> Figures {
        let snap = store.snapshot(
            live,
            EngineState {
                clock: now,
                ..EngineState::default()
            },
        );
        Figures::of(&snap, tz, 0)
    }

    const ANSWERED: Measure = Measure::Answered {
        wait: 4_000,
        rings: 1,
        late: false,
    };

    /// Today starts at local midnight: in Paris (UTC+1 in November) a call
    /// at 23:50 local is yesterday's by 00:20, while in UTC both calls are
    /// on the same day.
    #[test]
    fn today_rolls_over_at_local_midnight() {
        let mut s = store(&[("q", None)]);
        s.measure(0, ms("2026-11-23T22:50:00Z"), ANSWERED);
        s.measure(0, ms("2026-11-23T23:10:00Z"), ANSWERED);
        let now = ms("2026-11-23T23:20:00Z");
        let paris = at(&mut s, now, &zone("Europe/Paris"), vec![]);
        assert_eq!(paris.day_start, ms("2026-11-23T23:00:00Z"));
        assert_eq!(paris.day_start_text, "2026-11-24T00:00:00+01:00");
        assert_eq!(paris.now_text, "2026-11-24T00:20:00+01:00");
        assert_eq!(paris.queues[0].today.answered, 1);
        let utc = at(&mut s, now, &zone("UTC"), vec![]);
        assert_eq!(utc.queues[0].today.answered, 2);
        // Kathmandu is UTC+5:45: midnight is still a quarter boundary.
        let ktm = at(&mut s, now, &zone("Asia/Kathmandu"), vec![]);
        assert_eq!(ktm.day_start, ms("2026-11-23T18:15:00Z"));
        assert_eq!(ktm.queues[0].today.answered, 2);
    }

    /// New York's 2026-11-01 has 25 hours (clocks go back at 02:00): late
    /// that evening, the call at 00:05 is still today's, the one at 23:55
    /// the day before is not.
    #[test]
    fn a_dst_day_of_25_hours_is_kept_whole() {
        let mut s = store(&[("q", None)]);
        s.measure(0, ms("2026-11-01T03:55:00Z"), ANSWERED); // 23:55 EDT, Oct 31
        s.measure(0, ms("2026-11-01T04:05:00Z"), ANSWERED); // 00:05 EDT
        s.measure(0, ms("2026-11-02T04:40:00Z"), ANSWERED); // 23:40 EST
        let ny = zone("America/New_York");
        let f = at(&mut s, ms("2026-11-02T04:50:00Z"), &ny, vec![]);
        assert_eq!(f.day_start_text, "2026-11-01T00:00:00-04:00");
        assert_eq!(f.now_text, "2026-11-01T23:50:00-05:00");
        assert_eq!(f.queues[0].today.answered, 2);
        // And at the next midnight, today starts again.
        let f = at(&mut s, ms("2026-11-02T05:00:00Z"), &ny, vec![]);
        assert_eq!(f.queues[0].today.answered, 0);
    }

    /// Antarctica/Troll's 2026-10-25 has 26 hours (UTC+2 back to UTC+0):
    /// at 23:50 local, the call at 00:05 local, 25 h 45 min before, is
    /// still today's; the one just before midnight the day before is not.
    #[test]
    fn the_longest_day_of_26_hours_is_kept_whole() {
        let mut s = store(&[("q", None)]);
        s.measure(0, ms("2026-10-24T21:55:00Z"), ANSWERED); // 23:55 +02, Oct 24
        s.measure(0, ms("2026-10-24T22:05:00Z"), ANSWERED); // 00:05 +02
                                                            // 25 hours after the 00:05 call: with fewer than 26 hours of
                                                            // quarters, this one would take its place.
        s.measure(0, ms("2026-10-25T23:05:00Z"), ANSWERED); // 23:05 +00
        let troll = zone("Antarctica/Troll");
        let f = at(&mut s, ms("2026-10-25T23:50:00Z"), &troll, vec![]);
        assert_eq!(f.day_start_text, "2026-10-25T00:00:00+02:00");
        assert_eq!(f.now_text, "2026-10-25T23:50:00+00:00");
        assert_eq!(f.queues[0].today.answered, 2);
    }

    /// "Last 15 minutes" is the current minute and the 14 before it; the
    /// chart the current minute and the 59 before it, oldest first.
    #[test]
    fn the_fifteen_minutes_and_the_chart_have_exact_edges() {
        let mut s = store(&[("q", None)]);
        let now = ms("2026-11-23T09:30:20Z");
        let first = ms("2026-11-23T09:16:00Z");
        s.measure(0, first - 1, ANSWERED);
        s.measure(0, first, ANSWERED);
        s.measure(
            0,
            now,
            Measure::Abandoned {
                wait: 30_000,
                short: false,
            },
        );
        let f = at(&mut s, now, &zone("UTC"), vec![]);
        assert_eq!(f.recent_start, first);
        assert_eq!(f.queues[0].recent.answered, 1);
        assert_eq!(f.queues[0].recent.abandoned_long, 1);
        assert_eq!(f.queues[0].today.answered, 2);
        let chart = &f.queues[0].chart;
        assert_eq!(chart.len(), 60);
        assert_eq!(f.chart_start, ms("2026-11-23T08:31:00Z"));
        assert_eq!(chart[59].abandoned_long, 1);
        assert_eq!(chart[45].answered, 1); // 09:16
        assert_eq!(chart[44].answered, 1); // 09:15:59.999
                                           // An hour on, the chart has moved past all of it.
        let f = at(&mut s, now + 3_600_000, &zone("UTC"), vec![]);
        assert!(f.queues[0].chart.iter().all(|t| *t == Tally::default()));
    }

    /// Exact values of the document: ratios, statuses, the live figures
    /// summed over a queue's sites (longest taken), and the total of the
    /// queues asked for, in the order asked.
    #[test]
    fn the_document_has_exact_values() {
        let mut s = store(&[
            ("billing", Some("eu")),
            ("sales", None),
            ("billing", Some("us")),
        ]);
        let t = ms("2026-11-23T09:00:00Z");
        for (id, late) in [(0, false), (0, false), (2, true), (1, false)] {
            s.measure(
                id,
                t,
                Measure::Answered {
                    wait: if late { 20_000 } else { 6_000 },
                    rings: 1,
                    late,
                },
            );
        }
        s.measure(
            2,
            t,
            Measure::Abandoned {
                wait: 3_000,
                short: true,
            },
        );
        s.measure(
            0,
            t,
            Measure::Abandoned {
                wait: 40_000,
                short: false,
            },
        );
        s.measure(
            0,
            t,
            Measure::Resolved {
                outcome: Outcome::Kept,
                lateness: 0,
            },
        );
        s.measure(
            2,
            t,
            Measure::Resolved {
                outcome: Outcome::Missed,
                lateness: 0,
            },
        );
        s.measure(
            2,
            t,
            Measure::Resolved {
                outcome: Outcome::Cancelled,
                lateness: 0,
            },
        );
        let live = vec![
            Live {
                waiting: 2,
                waiting_over_limit: 1,
                oldest_wait: 25_000,
                on_hold: 1,
                longest_hold: 9_000,
                callbacks_pending: 3,
                ..Live::default()
            },
            Live {
                waiting: 1,
                oldest_wait: 13_000,
                ..Live::default()
            },
            Live {
                waiting: 1,
                oldest_wait: 5_000,
                on_hold: 2,
                on_hold_over_limit: 1,
                longest_hold: 18_000,
                callbacks_overdue: 1,
                ..Live::default()
            },
        ];
        let f = at(&mut s, t + 30_000, &zone("UTC"), live);
        let all = f.document(None);
        assert_eq!(
            all.queues
                .iter()
                .map(|q| q.queue.as_deref())
                .collect::<Vec<_>>(),
            [Some("billing"), Some("sales")]
        );
        let b = &all.queues[0];
        assert_eq!(b.today.answered, 3);
        assert_eq!(b.today.answered_within_limit, 2);
        assert_eq!(b.today.abandoned_long, 1);
        assert_eq!(b.today.abandoned_short, 1);
        assert_eq!(b.today.service_level, Some(0.5));
        assert_eq!(b.today.abandon_rate, Some(0.25));
        assert_eq!(b.today.average_answer_seconds, Some(32.0 / 3.0));
        assert_eq!(b.today.callback_compliance, Some(0.5));
        assert_eq!(b.last_15m, b.today);
        assert_eq!(b.now.waiting, 3);
        assert_eq!(b.now.oldest_wait_seconds, 25.0);
        assert_eq!(b.now.longest_hold_seconds, 18.0);
        assert_eq!(b.now.on_hold, 3);
        assert_eq!(
            b.limits,
            Some(LimitsDoc {
                rings: 3,
                answer_seconds: 18.0,
                hold_seconds: 17.0
            })
        );
        assert_eq!(b.status.service_level_today, Level::Over);
        assert_eq!(b.status.oldest_wait, Level::Over);
        assert_eq!(b.status.longest_hold, Level::Over);
        assert_eq!(b.status.callbacks_overdue, Level::Over);
        assert_eq!(b.status.callback_compliance_today, Level::Over);
        let sales = &all.queues[1];
        assert_eq!(sales.today.service_level, Some(1.0));
        assert_eq!(sales.status.service_level_today, Level::Ok);
        assert_eq!(sales.status.oldest_wait, Level::Warn); // 13 s: past two rings
        assert_eq!(sales.status.callback_compliance_today, Level::None);
        assert_eq!(all.total.queue, None);
        assert_eq!(all.total.today.answered, 4);
        assert_eq!(all.total.today.service_level, Some(0.6));
        assert_eq!(all.total.now.waiting, 4);
        assert_eq!(all.total.status.oldest_wait, Level::Over);
        assert_eq!(all.total.chart[59].answered, 4);
        assert_eq!(all.total.chart[59].start_ms, ms("2026-11-23T09:00:00Z"));
        let picked = f.document(Some(&["sales".into(), "nope".into(), "sales".into()]));
        assert_eq!(picked.queues.len(), 1);
        assert_eq!(picked.total.today.answered, 1);
        let v = serde_json::to_value(&picked).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["generated_at"], "2026-11-23T09:00:30+00:00");
        assert_eq!(v["queues"][0]["status"]["oldest_wait"], "warn");
        assert_eq!(v["total"]["queue"], serde_json::Value::Null);
    }

    /// The total judges nothing against limits of its own: with five rings
    /// (30 s) and a 40 s hold limit, a 20 s wait and a 20 s hold are OK on
    /// the queue and on the total (the built-in 18 s and 17 s play no
    /// part); and the total is as bad as its worst queue.
    #[test]
    fn the_total_status_is_only_the_worst_of_the_queues() {
        let mut s = Store::new(
            Bounds::new(&Settings::default(), &BucketConfig::default()),
            300_000,
        );
        let loose = Limits {
            max_rings: 5,
            hold_limit: 40_000,
            ..Limits::default()
        };
        for (id, q, limits) in [(0, "loose", loose), (1, "strict", Limits::default())] {
            s.new_series(
                id,
                &SeriesInfo {
                    queue: q.into(),
                    site: None,
                    limits,
                },
            );
        }
        let long = Live {
            waiting: 1,
            oldest_wait: 20_000,
            on_hold: 1,
            longest_hold: 20_000,
            ..Live::default()
        };
        let t = ms("2026-11-23T09:00:00Z");
        let f = at(&mut s, t, &zone("UTC"), vec![long, Live::default()]);
        let only_loose = f.document(Some(&["loose".into()]));
        let q = &only_loose.queues[0];
        assert_eq!(
            q.limits,
            Some(LimitsDoc {
                rings: 5,
                answer_seconds: 30.0,
                hold_seconds: 40.0
            })
        );
        assert_eq!(q.status.oldest_wait, Level::Ok);
        assert_eq!(q.status.longest_hold, Level::Ok);
        let total = &only_loose.total.status;
        assert_eq!(total.oldest_wait, Level::Ok);
        assert_eq!(total.longest_hold, Level::Ok);
        assert_eq!(total.waiting_over_limit, Level::Ok);
        assert_eq!(total.on_hold_over_limit, Level::Ok);
        assert_eq!(total.callbacks_overdue, Level::Ok);
        // Both queues: the strict one is idle, the total stays OK.
        let both = f.document(None);
        assert_eq!(both.total.now.oldest_wait_seconds, 20.0);
        assert_eq!(both.total.status.oldest_wait, Level::Ok);
        assert_eq!(both.total.status.longest_hold, Level::Ok);
        // The same wait on the strict queue is over, and so is the total.
        let f = at(&mut s, t, &zone("UTC"), vec![Live::default(), long]);
        let both = f.document(None);
        assert_eq!(both.queues[1].status.oldest_wait, Level::Over);
        assert_eq!(both.total.status.oldest_wait, Level::Over);
        assert_eq!(both.total.status.longest_hold, Level::Over);
        // No queue picked: nothing is over.
        let none = f.document(Some(&["nope".into()]));
        assert_eq!(none.total.status.oldest_wait, Level::Ok);
    }

    /// Before its first event the monitor's clock has no value: the wall
    /// clock stands in.
    #[test]
    fn no_clock_yet_uses_the_wall_clock() {
        let mut s = store(&[("q", None)]);
        let snap = s.snapshot(
            vec![],
            EngineState {
                clock: Millis::MIN,
                ..EngineState::default()
            },
        );
        let f = Figures::of(&snap, &zone("UTC"), ms("2026-11-23T09:00:00Z"));
        assert_eq!(f.now, ms("2026-11-23T09:00:00Z"));
        assert_eq!(f.document(None).queues[0].today.service_level, None);
    }
}
