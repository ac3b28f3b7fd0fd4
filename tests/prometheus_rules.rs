//! The Prometheus rules of deploy/prometheus: promtool accepts them and their
//! unit tests pass, every metric they name is one ringwatch exposes, and every
//! alert is labelled, annotated, tested both ways and has its runbook section.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of `dir` (relative to the crate root) whose names end with
/// `suffix`, sorted.
fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *{suffix} file in {dir}");
    files
}

/// deploy/prometheus/*_rules.yml: the directory also holds prometheus.yml,
/// a server configuration that `promtool check rules` would refuse.
fn rule_files() -> Vec<PathBuf> {
    files("deploy/prometheus", "_rules.yml")
}

fn test_files() -> Vec<PathBuf> {
    files("deploy/prometheus/tests", ".yml")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Whether promtool can be run: a skip notice when it is not installed, a
/// failure instead when RINGWATCH_REQUIRE_PROMTOOL is set (as in CI).
fn have_promtool() -> bool {
    let Ok(out) = Command::new("promtool").arg("--version").output() else {
        assert!(
            std::env::var_os("RINGWATCH_REQUIRE_PROMTOOL").is_none(),
            "promtool is required (RINGWATCH_REQUIRE_PROMTOOL is set) but not installed"
        );
        eprintln!("promtool not installed: skipping");
        return false;
    };
    assert!(out.status.success(), "promtool --version failed");
    true
}

/// Run `promtool <args> <files>` from the crate root; panics with promtool's
/// whole output unless it succeeds.
fn promtool(args: &[&str], files: &[PathBuf]) {
    let out = Command::new("promtool")
        .current_dir(root())
        .args(args)
        .args(files.iter().map(|f| f.strip_prefix(root()).unwrap()))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn rule_files_pass_promtool_check() {
    if have_promtool() {
        promtool(&["check", "rules"], &rule_files());
    }
}

#[test]
fn rule_unit_tests_pass() {
    if have_promtool() {
        promtool(&["test", "rules"], &test_files());
    }
}

/// Every `ringwatch_...` and `process_...` metric name in `text`: a run of
/// `[a-z0-9_]` starting with one of those prefixes, not inside a longer name
/// and not part of a recorded `level:metric:operations` name (no `:` on
/// either side).
fn metric_names(text: &str) -> BTreeSet<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    let starts = text
        .match_indices("ringwatch_")
        .chain(text.match_indices("process_"));
    for (at, _) in starts {
        if text[..at].chars().next_back().is_some_and(word) {
            continue;
        }
        let len = text[at..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(text.len() - at);
        if text[at + len..].starts_with(':') {
            continue;
        }
        names.insert(text[at..at + len].to_string());
    }
    names
}

/// Family name -> type, from the `# TYPE` lines of an exposition.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').expect("# TYPE name type");
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// Whether `name` is a sample name of one of `families`: the family itself,
/// or a histogram's `_bucket`/`_sum`/`_count`, or a summary's `_sum`/`_count`.
fn exposed(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) {
        return true;
    }
    [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ]
    .iter()
    .any(|(suffix, kinds)| {
        name.strip_suffix(suffix)
            .and_then(|family| families.get(family))
            .is_some_and(|kind| kinds.contains(&kind.as_str()))
    })
}

#[test]
fn metric_name_scanner() {
    let names = metric_names(
        "sum by (queue) (increase(ringwatch_calls_answered_total{short=\"false\"}[15m]))\n\
         - record: queue:ringwatch_service_level_three_rings:ratio_15m\n\
         # see ringwatch_time_to_answer_seconds_bucket, not xringwatch_nope\n\
         time() - process_start_time_seconds < 3600, not subprocess_x",
    );
    let want = [
        "process_start_time_seconds",
        "ringwatch_calls_answered_total",
        "ringwatch_time_to_answer_seconds_bucket",
    ];
    assert_eq!(names, want.iter().map(|s| s.to_string()).collect());
    let fams = families(
        "# TYPE ringwatch_a_seconds histogram\n# TYPE ringwatch_q summary\n# TYPE ringwatch_c_total counter\n",
    );
    assert!(exposed("ringwatch_a_seconds_bucket", &fams));
    assert!(exposed("ringwatch_q_count", &fams));
    assert!(exposed("ringwatch_c_total", &fams));
    assert!(!exposed("ringwatch_q_bucket", &fams));
    assert!(!exposed("ringwatch_c_total_sum", &fams));
    assert!(!exposed("ringwatch_c", &fams));
}

/// Every metric named in the rule files and in their unit tests' input series
/// (expressions, comments and annotations alike) is in a real scrape of
/// ringwatch, once a call has created the per-queue families. The daemon has
/// a data directory (the journal, snapshot and recovery families) and a
/// client-mode source pointing at a closed port: the `ringwatch_source_*`
/// families exist only for configured sources (this one keeps failing to
/// connect, which is all the scrape needs).
#[tokio::test]
async fn rules_name_only_exposed_metrics() {
    let closed = format!("ws://127.0.0.1:{}/events", common::free_port());
    let d = common::start(&[
        ("RINGWATCH__RULES__CLOCK", "event"),
        ("RINGWATCH__SOURCES__DUMMY__URL", &closed),
    ]);
    let mut ws = d.connect().await;
    let ack = common::send(
        &mut ws,
        r#"{"event_id":"r1","type":"call.offered","ts":"2026-11-23T09:00:00Z","call_id":"c1","queue":"billing","site":"east"}"#,
    )
    .await;
    assert_eq!(ack["accepted"], 1, "{ack}");
    let families = families(&d.metrics_text().await);
    assert!(
        families.contains_key("ringwatch_calls_answered_total")
            && families.contains_key("ringwatch_ingest_connections")
            && families.contains_key("ringwatch_journal_errors_total")
            && families.contains_key("ringwatch_source_connected"),
        "the scrape lacks the families the rules need: {families:?}"
    );

    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for file in rule_files().iter().chain(&test_files()) {
        for name in metric_names(&read(file)) {
            if !exposed(&name, &families) {
                unknown.push(format!(
                    "{}: {name}",
                    file.strip_prefix(root()).unwrap().display()
                ));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics named in the rules that ringwatch does not expose:\n  {}\nexposed families: {:?}",
        unknown.join("\n  "),
        families.keys().collect::<Vec<_>>()
    );
    // The scanner found what the rules are built on.
    for name in [
        "ringwatch_time_to_answer_seconds_bucket",
        "ringwatch_calls_abandoned_total",
        "ringwatch_hold_limit_exceeded_total",
        "ringwatch_callbacks_resolved_total",
        "ringwatch_calls_waiting_over_limit",
        "ringwatch_events_rejected_total",
        "ringwatch_calls_evicted_total",
        "ringwatch_journal_errors_total",
        "ringwatch_snapshot_failures_total",
        "ringwatch_snapshot_last_success_timestamp_seconds",
        "ringwatch_recovery_cut_bytes",
        "ringwatch_source_connected",
        "ringwatch_source_reconnects_total",
        "process_start_time_seconds",
    ] {
        assert!(used.contains(name), "{name} not found in the rule files");
    }
}

/// One alerting rule, read line by line from alerting_rules.yml (the file's
/// own layout: `- alert:` starts a rule, its keys follow).
#[derive(Debug, Default)]
struct Alert {
    name: String,
    severity: Option<String>,
    annotations: BTreeSet<String>,
    runbook: Option<String>,
}

fn alerts() -> Vec<Alert> {
    let text = read(&root().join("deploy/prometheus/alerting_rules.yml"));
    let mut alerts: Vec<Alert> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            alerts.push(Alert {
                name: name.trim().to_string(),
                ..Alert::default()
            });
            continue;
        }
        let Some(alert) = alerts.last_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key {
            "severity" => alert.severity = Some(value.to_string()),
            "runbook_url" => {
                alert.annotations.insert(key.to_string());
                alert.runbook = Some(value.to_string());
            }
            "summary" | "description" => {
                alert.annotations.insert(key.to_string());
            }
            _ => {}
        }
    }
    alerts
}

/// GitHub's anchor for a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_alert_is_labelled_annotated_and_has_a_runbook() {
    let alerts = alerts();
    assert!(alerts.len() >= 13, "found only {alerts:#?}");
    let runbook = read(&root().join("docs/alerts.md"));
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let mut wrong = Vec::new();
    for a in &alerts {
        let n = &a.name;
        if !matches!(a.severity.as_deref(), Some("critical" | "warning")) {
            wrong.push(format!("{n}: severity {:?}", a.severity));
        }
        for key in ["summary", "description", "runbook_url"] {
            if !a.annotations.contains(key) {
                wrong.push(format!("{n}: no {key} annotation"));
            }
        }
        let want = format!("docs/alerts.md#{}", anchor(n));
        match &a.runbook {
            Some(url) if *url == want => {}
            other => wrong.push(format!("{n}: runbook_url {other:?}, expected {want}")),
        }
        if !anchors.contains(&anchor(n)) {
            wrong.push(format!("{n}: no `## {n}` section in docs/alerts.md"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Each alert has at least one unit test where it fires and one where it
/// does not (`exp_alerts: []`).
#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for file in test_files() {
        let text = read(&file);
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.strip_prefix("- alertname:") else {
                continue;
            };
            let expected = lines[i + 1..]
                .iter()
                .find(|l| l.starts_with("exp_alerts:"))
                .unwrap_or_else(|| panic!("{}: {line} without exp_alerts", file.display()));
            let name = name.trim().to_string();
            if expected.trim_end() == "exp_alerts: []" {
                quiet.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }
    let mut missing = Vec::new();
    for a in alerts() {
        if !firing.contains(&a.name) {
            missing.push(format!("{}: no test where it fires", a.name));
        }
        if !quiet.contains(&a.name) {
            missing.push(format!("{}: no test where it stays quiet", a.name));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
