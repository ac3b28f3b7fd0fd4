//! The Asterisk queue_log source against the real daemon: a real file in a
//! temporary directory, appended, rotated, truncated, created late; the
//! daemon restarted cleanly and killed with SIGKILL mid-file on the same
//! data directory. Figures are compared exactly on `/metrics`: no line is
//! counted twice and none is missed. Lines carry fixed epoch seconds, so
//! every daemon runs on the event clock.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{signal, start, start_in, start_process_in, Endpoints, Samples};

/// The first line's time (2024-06-03T06:47:23Z); a log spans minutes, well
/// inside the de-duplication window.
const T0: i64 = 1_717_397_243;

/// How a generated call goes.
#[derive(Clone, Copy)]
enum Fate {
    /// Answered after this many whole seconds, then completed.
    Answered(i64),
    /// The caller hung up after 30 s.
    Abandoned,
}

/// The lines of calls `from..to`, in time order: call `i` enters at
/// `T0 + 4i`; every fourth call is abandoned, the others answered after
/// 18 s (within three rings) or, every third, 19 s (late).
fn calls(from: usize, to: usize) -> Vec<(i64, String)> {
    let mut lines = Vec::new();
    for i in from..to {
        let t = T0 + 4 * i as i64;
        let id = format!("{t}.{i}");
        lines.push((t, format!("{t}|{id}|sales|NONE|ENTERQUEUE||55501{i}|1")));
        match fate(i) {
            Fate::Answered(w) => {
                lines.push((
                    t + w,
                    format!(
                        "{}|{id}|sales|PJSIP/200{}|CONNECT|{w}|{id}x|3",
                        t + w,
                        i % 7
                    ),
                ));
                lines.push((
                    t + w + 30,
                    format!(
                        "{}|{id}|sales|PJSIP/200{}|COMPLETECALLER|{w}|30|1",
                        t + w + 30,
                        i % 7
                    ),
                ));
            }
            Fate::Abandoned => {
                lines.push((t + 30, format!("{}|{id}|sales|NONE|ABANDON|1|1|30", t + 30)));
            }
        }
    }
    lines
}

fn fate(i: usize) -> Fate {
    if i % 4 == 3 {
        Fate::Abandoned
    } else if i.is_multiple_of(3) {
        Fate::Answered(19)
    } else {
        Fate::Answered(18)
    }
}

/// The whole log of `n` calls, as lines in time order.
fn log(n: usize) -> Vec<String> {
    let mut l = calls(0, n);
    l.sort_by_key(|(t, _)| *t);
    l.into_iter().map(|(_, s)| s).collect()
}

/// What ringwatch must show after all of the first `n` calls.
#[derive(Debug, PartialEq)]
struct Totals {
    offered: f64,
    answered: f64,
    late: f64,
    abandoned: f64,
}

fn expected(n: usize) -> Totals {
    let (mut answered, mut late, mut abandoned) = (0, 0, 0);
    for i in 0..n {
        match fate(i) {
            Fate::Answered(w) => {
                answered += 1;
                if w > 18 {
                    late += 1;
                }
            }
            Fate::Abandoned => abandoned += 1,
        }
    }
    Totals {
        offered: n as f64,
        answered: f64::from(answered),
        late: f64::from(late),
        abandoned: f64::from(abandoned),
    }
}

/// Every series of a family added up.
fn total(m: &Samples, family: &str) -> f64 {
    m.0.iter()
        .filter(|(k, _)| k.as_str() == family || k.starts_with(&format!("{family}{{")))
        .map(|(_, v)| v)
        .sum()
}

fn totals(m: &Samples) -> Totals {
    Totals {
        offered: total(m, "ringwatch_calls_offered_total"),
        answered: total(m, "ringwatch_calls_answered_total"),
        late: total(m, "ringwatch_calls_answered_late_total"),
        abandoned: total(m, "ringwatch_calls_abandoned_total"),
    }
}

fn src(m: &Samples, family: &str) -> f64 {
    m.value(&format!(r#"{family}{{source="ql"}}"#))
}

/// Scrape until the totals are `want` (the follower polls every 200 ms);
/// panics with the last figures after 60 s.
async fn settle(d: &Endpoints, want: &Totals) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = d.metrics().await;
        let got = totals(&m);
        if &got == want {
            return m;
        }
        assert!(Instant::now() < deadline, "expected {want:?}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Scrape until `selector` is `want` (60 s at most).
async fn until(d: &Endpoints, selector: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = d.metrics().await.get(selector);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{selector}: expected {want}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
}

/// The source's environment: the queue_log at `path`, read from its
/// beginning, on the event clock.
fn env(path: &Path) -> Vec<(String, String)> {
    vec![
        ("RINGWATCH__RULES__CLOCK".into(), "event".into()),
        (
            "RINGWATCH__SOURCES__QL__KIND".into(),
            "asterisk_queue_log".into(),
        ),
        (
            "RINGWATCH__SOURCES__QL__PATH".into(),
            path.to_str().unwrap().into(),
        ),
        ("RINGWATCH__SOURCES__QL__START".into(), "beginning".into()),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

struct Files {
    _dir: tempfile::TempDir,
    log: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("queue_log");
    Files { _dir: dir, log }
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_are_followed_whole_lines_only_and_bad_lines_counted() {
    let f = files();
    let all = log(8);
    append(&f.log, &all[..10]);
    let e = env(&f.log);
    let d = start(&pairs(&e));
    let m = d.metrics().await;
    assert_eq!(src(&m, "ringwatch_source_exact_timestamps"), 0.0);
    // A partial last line waits for its newline.
    let mut h = std::fs::OpenOptions::new()
        .append(true)
        .open(&f.log)
        .unwrap();
    let (head, tail) = all[10].split_at(12);
    h.write_all(head.as_bytes()).unwrap();
    until(&d, r#"ringwatch_source_messages_total{source="ql"}"#, 10.0).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        src(&d.metrics().await, "ringwatch_source_messages_total"),
        10.0
    );
    h.write_all(format!("{tail}\n").as_bytes()).unwrap();
    // A malformed line, an unknown verb, a member line: counted, and the
    // valid lines after them still count.
    append(
        &f.log,
        &[
            "this is not a queue_log line".to_string(),
            format!("{T0}|NONE|sales|PJSIP/2001|ADDMEMBER|"),
            format!("{T0}|1.1|sales|NONE|NOSUCHVERB|x"),
        ],
    );
    append(&f.log, &all[11..]);
    let m = settle(&d, &expected(8)).await;
    assert_eq!(
        src(&m, "ringwatch_source_messages_total"),
        all.len() as f64 + 3.0
    );
    let skipped = |r: &str| {
        m.value(&format!(
            r#"ringwatch_source_skipped_total{{source="ql",reason="{r}"}}"#
        ))
    };
    assert_eq!(skipped("malformed"), 1.0);
    assert_eq!(skipped("member_event"), 1.0);
    assert_eq!(skipped("unknown"), 1.0);
    assert_eq!(
        src(&m, "ringwatch_source_translated_events_total"),
        all.len() as f64
    );
    assert_eq!(src(&m, "ringwatch_source_connected"), 1.0);
    assert_eq!(src(&m, "ringwatch_source_reports_holds"), 0.0);
    let size = std::fs::metadata(&f.log).unwrap().len() as f64;
    assert_eq!(src(&m, "ringwatch_source_file_position_bytes"), size);
}

/// Whole seconds on the three-ring boundary: a CONNECT 18 s after the
/// ENTERQUEUE is within three rings, 19 s is late.
#[tokio::test(flavor = "multi_thread")]
async fn eighteen_seconds_is_within_three_rings_nineteen_is_late() {
    let f = files();
    append(
        &f.log,
        &[
            format!("{T0}|a.1|sales|NONE|ENTERQUEUE||1|1"),
            format!("{}|b.1|sales|NONE|ENTERQUEUE||2|2", T0 + 1),
            format!("{}|a.1|sales|PJSIP/1|CONNECT|18|x|2", T0 + 18),
            format!("{}|b.1|sales|PJSIP/2|CONNECT|19|y|2", T0 + 20),
        ],
    );
    let e = env(&f.log);
    let d = start(&pairs(&e));
    let m = settle(
        &d,
        &Totals {
            offered: 2.0,
            answered: 2.0,
            late: 1.0,
            abandoned: 0.0,
        },
    )
    .await;
    assert_eq!(
        m.value(r#"ringwatch_time_to_answer_seconds_bucket{queue="sales",le="18"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_time_to_answer_seconds_sum{queue="sales"}"#),
        37.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_by_rename_reads_the_old_file_to_its_end_then_the_new_one() {
    let f = files();
    let all = log(12);
    let (a, rest) = all.split_at(10);
    let (b, c) = rest.split_at(8);
    append(&f.log, a);
    let e = env(&f.log);
    let d = start(&pairs(&e));
    until(&d, r#"ringwatch_source_messages_total{source="ql"}"#, 10.0).await;
    // Written to the old file just before the rename (Asterisk keeps writing
    // to it until it reopens), then a new file with the next lines.
    append(&f.log, b);
    std::fs::rename(&f.log, f.log.with_extension("1")).unwrap();
    append(&f.log, c);
    let m = settle(&d, &expected(12)).await;
    assert_eq!(
        m.value(r#"ringwatch_source_file_changes_total{source="ql",change="rotated"}"#),
        1.0
    );
    assert_eq!(src(&m, "ringwatch_source_messages_total"), all.len() as f64);
    // And a rename with no new file yet: the old one is still followed.
    let more = calls(12, 14)
        .into_iter()
        .map(|(_, l)| l)
        .collect::<Vec<_>>();
    std::fs::rename(&f.log, f.log.with_extension("2")).unwrap();
    append(&f.log.with_extension("2"), &more[..3]);
    until(
        &d,
        r#"ringwatch_source_messages_total{source="ql"}"#,
        all.len() as f64 + 3.0,
    )
    .await;
    append(&f.log, &more[3..]);
    let m = settle(&d, &expected(14)).await;
    assert_eq!(
        m.value(r#"ringwatch_source_file_changes_total{source="ql",change="rotated"}"#),
        2.0
    );
}

/// A rotated file whose last line never got its newline: Asterisk will
/// not finish it, so it counts as a line, and the new file is followed.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_file_ending_without_a_newline_is_left_for_the_new_one() {
    let f = files();
    let all = log(12);
    let (a, rest) = all.split_at(10);
    let (b, c) = rest.split_at(8);
    append(&f.log, a);
    let e = env(&f.log);
    let d = start(&pairs(&e));
    until(&d, r#"ringwatch_source_messages_total{source="ql"}"#, 10.0).await;
    let (last, whole) = b.split_last().unwrap();
    append(&f.log, whole);
    let mut h = std::fs::OpenOptions::new()
        .append(true)
        .open(&f.log)
        .unwrap();
    h.write_all(last.as_bytes()).unwrap();
    drop(h);
    // The whole lines are read; the partial one waits.
    until(
        &d,
        r#"ringwatch_source_messages_total{source="ql"}"#,
        (a.len() + whole.len()) as f64,
    )
    .await;
    std::fs::rename(&f.log, f.log.with_extension("1")).unwrap();
    append(&f.log, c);
    let m = settle(&d, &expected(12)).await;
    assert_eq!(
        m.value(r#"ringwatch_source_file_changes_total{source="ql",change="rotated"}"#),
        1.0
    );
    assert_eq!(src(&m, "ringwatch_source_messages_total"), all.len() as f64);
    let size = std::fs::metadata(&f.log).unwrap().len() as f64;
    assert_eq!(src(&m, "ringwatch_source_file_position_bytes"), size);
}

#[tokio::test(flavor = "multi_thread")]
async fn truncation_starts_the_file_again() {
    let f = files();
    let all = log(10);
    append(&f.log, &all[..20]);
    let e = env(&f.log);
    let d = start(&pairs(&e));
    until(&d, r#"ringwatch_source_messages_total{source="ql"}"#, 20.0).await;
    // copytruncate: emptied in place, then written again (less than before).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    until(
        &d,
        r#"ringwatch_source_file_changes_total{source="ql",change="truncated"}"#,
        1.0,
    )
    .await;
    append(&f.log, &all[20..]);
    let m = settle(&d, &expected(10)).await;
    assert_eq!(src(&m, "ringwatch_source_messages_total"), all.len() as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_file_is_waited_for() {
    let f = files();
    let e = env(&f.log);
    let d = start(&pairs(&e));
    let m = d.metrics().await;
    assert_eq!(src(&m, "ringwatch_source_connected"), 0.0);
    assert_eq!(d.get("/readyz").await.0, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    append(&f.log, &log(6));
    let m = settle(&d, &expected(6)).await;
    assert_eq!(src(&m, "ringwatch_source_connected"), 1.0);
}

/// A clean restart mid-file, with a rotation while ringwatch is stopped:
/// the rest of the rotated file, then the new file; nothing read twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_continues_where_it_stopped_even_across_a_rotation() {
    let f = files();
    let data = tempfile::tempdir().unwrap();
    let all = log(20);
    append(&f.log, &all[..25]);
    let e = env(&f.log);
    let d = start_in(data.path(), &pairs(&e));
    until(&d, r#"ringwatch_source_messages_total{source="ql"}"#, 25.0).await;
    d.stop().await;
    let position = data.path().join("sources/ql.queue_log.json");
    assert!(position.exists());

    append(&f.log, &all[25..40]);
    let d = start_in(data.path(), &pairs(&e));
    until(&d, r#"ringwatch_source_messages_total{source="ql"}"#, 15.0).await;
    d.stop().await;

    append(&f.log, &all[40..45]);
    std::fs::rename(&f.log, f.log.with_extension("1")).unwrap();
    append(&f.log, &all[45..]);
    let d = start_in(data.path(), &pairs(&e));
    let m = settle(&d, &expected(20)).await;
    assert_eq!(
        src(&m, "ringwatch_source_messages_total"),
        (all.len() - 40) as f64
    );
    assert_eq!(m.value("ringwatch_events_duplicate_total"), 0.0);
    assert_eq!(
        m.value(r#"ringwatch_source_file_changes_total{source="ql",change="rotated"}"#),
        1.0
    );
}

/// `kill -9` while lines keep coming: each restart on the same data
/// directory resumes at or before what the journal holds; lines read again
/// are de-duplicated, none is skipped.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_file_counts_nothing_twice_and_misses_nothing() {
    let f = files();
    let data = tempfile::tempdir().unwrap();
    let all = log(150);
    let e = env(&f.log);
    let mut written = 0;
    let mut d = start_process_in(data.path(), &pairs(&e));
    for round in 0..4 {
        // Lines in small bursts, so the kill lands between and inside batches.
        for _ in 0..6 {
            let to = (written + 7 + round).min(all.len());
            append(&f.log, &all[written..to]);
            written = to;
            tokio::time::sleep(Duration::from_millis(70)).await;
        }
        signal(d.pid(), "KILL");
        d.wait_exit(Duration::from_secs(10));
        // Written while ringwatch is down.
        let to = (written + 5).min(all.len());
        append(&f.log, &all[written..to]);
        written = to;
        d = start_process_in(data.path(), &pairs(&e));
    }
    append(&f.log, &all[written..]);
    let m = settle(&d, &expected(150)).await;
    // Settled means nothing more to come: check again after a few polls.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(totals(&d.metrics().await), expected(150));
    let size = std::fs::metadata(&f.log).unwrap().len() as f64;
    assert_eq!(src(&m, "ringwatch_source_file_position_bytes"), size);
    assert_eq!(total(&m, "ringwatch_events_rejected_total"), 0.0);
}
