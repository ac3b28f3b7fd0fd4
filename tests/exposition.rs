//! Owns how `/metrics` is served, against a real daemon on port 0: gzip when
//! `Accept-Encoding` asks for it (plain otherwise), OpenMetrics 1.0 when
//! `Accept` asks for it (the text format otherwise) with the same samples
//! and exact content types, the `le`/`quantile` label values pinned in the
//! float form Prometheus 3 stores (`le="18.0"`), and the standard
//! `process_*` families, promtool-clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use common::{scenario, send, Samples};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// What Prometheus 2.42 sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The golden scenarios applied together: every call-center family has
/// series, quantiles both real and NaN. (Their configurations are the
/// defaults; callbacks shares queue billing with three_rings.)
const SCENARIOS: [&str; 3] = ["three_rings", "hold_limit", "callbacks"];

/// A daemon on event time with `names` of the golden scenarios applied.
async fn populated_with(names: &[&str]) -> common::InProcess {
    let d = common::start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    for name in names {
        let s = scenario(name);
        let ack = send(&mut ws, &format!("[{}]", s.frames.join(","))).await;
        assert!(ack["accepted"].as_u64().unwrap() > 0, "{ack}");
    }
    d
}

async fn populated() -> common::InProcess {
    populated_with(&SCENARIOS).await
}

struct Answer {
    content_type: String,
    encoding: Option<String>,
    vary: Vec<String>,
    body: Vec<u8>,
}

async fn scrape(d: &common::Endpoints, headers: &[(&str, &str)]) -> Answer {
    // reqwest is built without its gzip feature: it neither asks for nor
    // decodes compression, so the bytes are what the server sent.
    let mut req = reqwest::Client::new().get(d.url("/metrics"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    let answer = Answer {
        content_type: h["content-type"].to_str().unwrap().to_string(),
        encoding: h
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string()),
        vary: h
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect(),
        body: Vec::new(),
    };
    Answer {
        body: resp.bytes().await.unwrap().to_vec(),
        ..answer
    }
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

/// The call-center figures (every series with a queue): what two scrapes
/// with no event between them agree on. Compared bit for bit (NaN quantiles).
fn figures(s: &Samples) -> BTreeMap<String, u64> {
    s.0.iter()
        .filter(|(k, _)| k.contains("queue=\""))
        .map(|(k, v)| (k.clone(), v.to_bits()))
        .collect()
}

#[tokio::test]
async fn gzip_when_asked_plain_otherwise() {
    let d = populated().await;
    let plain = scrape(&d, &[]).await;
    assert_eq!(plain.encoding, None);
    assert_eq!(plain.content_type, TEXT);
    let text = String::from_utf8(plain.body.clone()).expect("a plain body is text");
    assert!(text.starts_with("# HELP "), "{}", &text[..80]);

    let gz = scrape(&d, &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.encoding.as_deref(), Some("gzip"));
    assert_eq!(gz.content_type, TEXT);
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "gzip magic");
    for answer in [&plain, &gz] {
        assert!(
            answer.vary.iter().any(|v| v == "accept-encoding"),
            "{:?}",
            answer.vary
        );
        assert!(
            answer.vary.iter().any(|v| v == "accept"),
            "{:?}",
            answer.vary
        );
    }
    let unzipped = gunzip(&gz.body);
    assert_eq!(
        figures(&Samples::parse(&unzipped).unwrap()),
        figures(&Samples::parse(&text).unwrap())
    );
    eprintln!(
        "plain {} bytes, gzip {} bytes (of {} uncompressed): {:.1}x",
        plain.body.len(),
        gz.body.len(),
        unzipped.len(),
        unzipped.len() as f64 / gz.body.len() as f64
    );
    assert!(gz.body.len() * 4 < unzipped.len(), "gzip barely compressed");

    // A client that accepts only identity, and OpenMetrics compressed too.
    let identity = scrape(&d, &[("accept-encoding", "identity")]).await;
    assert_eq!(identity.encoding, None);
    let om = scrape(
        &d,
        &[("accept", PROMETHEUS_ACCEPT), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(om.encoding.as_deref(), Some("gzip"));
    assert_eq!(om.content_type, OPENMETRICS);
    assert!(gunzip(&om.body).ends_with("# EOF\n"));
}

/// Family name -> (type, unit) and the family each sample line belongs to,
/// checked against OpenMetrics 1.0 as it goes; panics at the first breach.
fn check_openmetrics(text: &str) -> BTreeMap<String, (String, Option<String>)> {
    let (body, eof) = text.rsplit_once("# EOF\n").expect("ends with # EOF");
    assert!(eof.is_empty(), "text after # EOF: {eof:?}");
    let mut families: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut samples = 0;
    for line in body.lines() {
        assert!(!line.is_empty(), "OpenMetrics has no blank lines");
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (what, name, rest) = (
                parts.next().unwrap(),
                parts.next().unwrap().to_string(),
                parts.next().unwrap_or(""),
            );
            if current.as_deref() != Some(&name) {
                assert!(
                    !families.contains_key(&name),
                    "family {name} described twice (interleaved)"
                );
                current = Some(name.clone());
                families.insert(name.clone(), (String::new(), None));
            }
            let entry = families.get_mut(&name).unwrap();
            match what {
                "HELP" => {}
                "TYPE" => entry.0 = rest.to_string(),
                "UNIT" => entry.1 = Some(rest.to_string()),
                other => panic!("unknown descriptor {other}: {line}"),
            }
            continue;
        }
        samples += 1;
        let family = current.as_ref().expect("a sample before any # TYPE");
        let (kind, _) = &families[family];
        let name = line.split(['{', ' ']).next().unwrap();
        let suffix = name
            .strip_prefix(family.as_str())
            .unwrap_or_else(|| panic!("sample {name} outside its family {family}"));
        let allowed: &[&str] = match kind.as_str() {
            "counter" => &["_total"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum"],
            "summary" => &["", "_count", "_sum"],
            other => panic!("type {other:?} of {family}"),
        };
        assert!(allowed.contains(&suffix), "{line}: not a {kind} sample");
        if suffix == "_bucket" {
            assert!(line.contains("le=\""), "{line}");
        }
    }
    assert!(samples > 100, "only {samples} samples");
    for (name, (kind, unit)) in &families {
        assert!(!kind.is_empty(), "{name} has no # TYPE");
        if kind == "counter" {
            assert!(!name.ends_with("_total"), "counter family {name}");
        }
        let want = ["seconds", "bytes"]
            .into_iter()
            .find(|u| name.ends_with(&format!("_{u}")));
        assert_eq!(unit.as_deref(), want, "# UNIT of {name}");
    }
    families
}

#[tokio::test]
async fn openmetrics_when_asked_with_the_same_samples() {
    let d = populated().await;
    let text = scrape(&d, &[]).await;
    assert_eq!(text.content_type, TEXT);
    let text = String::from_utf8(text.body).unwrap();
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));

    for accept in [
        PROMETHEUS_ACCEPT,
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    ] {
        let om = scrape(&d, &[("accept", accept)]).await;
        assert_eq!(om.content_type, OPENMETRICS, "Accept: {accept}");
        let om = String::from_utf8(om.body).unwrap();
        let families = check_openmetrics(&om);
        // Counters and units, as OpenMetrics names them.
        assert_eq!(
            families["ringwatch_calls_offered"],
            ("counter".to_string(), None)
        );
        assert_eq!(
            families["ringwatch_time_to_answer_seconds"],
            ("histogram".to_string(), Some("seconds".to_string()))
        );
        assert_eq!(
            families["process_cpu_seconds"],
            ("counter".to_string(), Some("seconds".to_string()))
        );
        assert_eq!(
            families["process_resident_memory_bytes"],
            ("gauge".to_string(), Some("bytes".to_string()))
        );
        assert_eq!(families["ringwatch_build_info"].0, "gauge");
        assert_eq!(
            families["ringwatch_time_to_answer_quantile_seconds"].0,
            "summary"
        );
        assert!(om.contains("\n# TYPE ringwatch_calls_offered counter\n"));
        assert!(om.contains(
            "\n# HELP ringwatch_label_values_folded Label values reported as \\\"other\\\" because"
        ));

        // The same series, by the same names, both ways; the call-center
        // figures equal (self-metrics count the scrapes themselves).
        let (t, o) = (Samples::parse(&text).unwrap(), Samples::parse(&om).unwrap());
        let keys = |s: &Samples| s.0.keys().cloned().collect::<BTreeSet<_>>();
        assert_eq!(keys(&t), keys(&o), "series differ between the formats");
        assert_eq!(figures(&t), figures(&o));
        assert!(figures(&t).len() > 100);
    }

    // Anything else gets the text format.
    for accept in [
        "*/*",
        "text/plain",
        "application/json",
        "text/plain;version=0.0.4,*/*;q=0.1",
    ] {
        let answer = scrape(&d, &[("accept", accept)]).await;
        assert_eq!(answer.content_type, TEXT, "Accept: {accept}");
    }
}

/// Every `le="..."` and `quantile="..."` value of an exposition.
fn float_labels(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["le=\"", "quantile=\""] {
        for (at, _) in text.match_indices(key) {
            let v = &text[at + key.len()..];
            out.push(v[..v.find('"').unwrap()].to_string());
        }
    }
    out
}

#[tokio::test]
async fn le_and_quantile_in_prometheus_3_float_form() {
    // Two scenarios on distinct queues, so their golden figures hold as
    // they are.
    let d = populated_with(&["three_rings", "hold_limit"]).await;
    let text = String::from_utf8(scrape(&d, &[]).await.body).unwrap();
    let om = String::from_utf8(
        scrape(&d, &[("accept", "application/openmetrics-text")])
            .await
            .body,
    )
    .unwrap();
    for body in [&text, &om] {
        // Pinned: the three-ring bucket, the first ring, the hold limit, a
        // self-metric's whole and fractional bounds, and the quantiles.
        for line in [
            "\nringwatch_time_to_answer_seconds_bucket{queue=\"billing\",le=\"18.0\"} 2\n",
            "\nringwatch_time_to_answer_seconds_bucket{queue=\"billing\",le=\"6.0\"} 1\n",
            "\nringwatch_time_to_answer_seconds_bucket{queue=\"billing\",le=\"+Inf\"} 3\n",
            "\nringwatch_answer_rings_bucket{queue=\"billing\",le=\"3.0\"} 2\n",
            "\nringwatch_hold_duration_seconds_bucket{queue=\"support\",le=\"17.0\"} 2\n",
        ] {
            assert!(body.contains(line), "missing {line:?}");
        }
        for fragment in [
            "ringwatch_scrape_duration_seconds_bucket{le=\"1.0\"}",
            "ringwatch_scrape_duration_seconds_bucket{le=\"0.0025\"}",
            "ringwatch_scrape_duration_seconds_bucket{le=\"+Inf\"}",
            "ringwatch_time_to_answer_quantile_seconds{queue=\"billing\",quantile=\"0.5\"}",
            "ringwatch_time_to_answer_quantile_seconds{queue=\"billing\",quantile=\"0.99\"}",
        ] {
            assert!(body.contains(fragment), "missing {fragment}");
        }
        // No value is a bare integer, which Prometheus 3 would store
        // differently from how it is exposed.
        let values = float_labels(body);
        assert!(values.len() > 200, "{}", values.len());
        let bare: Vec<&String> = values
            .iter()
            .filter(|v| !(v.contains('.') || v.contains('e') || v.ends_with("Inf")))
            .collect();
        assert!(
            bare.is_empty(),
            "le/quantile values not in float form: {bare:?}"
        );
    }
    // The golden scenarios, written `le="18"`, still match: selectors are
    // compared as Prometheus 3 would store them.
    let samples = Samples::parse(&text).unwrap();
    assert_eq!(
        samples.get(r#"ringwatch_time_to_answer_seconds_bucket{queue="billing",le="18"}"#),
        Some(2.0)
    );
    let om = Samples::parse(&om).unwrap();
    for (k, v) in &scenario("three_rings").expect {
        if k.contains("queue=") {
            assert_eq!(samples.get(k), Some(*v), "text: {k}");
            assert_eq!(om.get(k), Some(*v), "OpenMetrics: {k}");
        }
    }
}

#[tokio::test]
async fn process_families_are_there_and_promtool_clean() {
    let d = populated().await;
    let text = String::from_utf8(scrape(&d, &[]).await.body).unwrap();
    let m = Samples::parse(&text).unwrap();
    for (family, kind) in [
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_threads", "gauge"),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {family} {kind}\n")),
            "no {family} {kind}"
        );
        assert!(m.get(family).is_some(), "no sample {family}");
    }
    // Plausible values of this very process.
    let started = m.value("process_start_time_seconds");
    let now = common::now_ms() as f64 / 1000.0;
    assert!(
        started <= now && started > now - 86_400.0,
        "started {started}, now {now}"
    );
    assert!(m.value("process_resident_memory_bytes") > 1_000_000.0);
    assert!(m.value("process_open_fds") >= 3.0);
    assert!(m.value("process_max_fds") >= m.value("process_open_fds"));

    // promtool reads the text format only (its parser stops at the
    // OpenMetrics `\"` escape in help texts); the OpenMetrics answer is
    // parsed by the real Prometheus in tests/prometheus_e2e.rs.
    if common::promtool_available() {
        common::promtool_check_metrics(&text);
    }
}
