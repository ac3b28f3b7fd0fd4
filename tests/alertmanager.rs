//! Supervisor alerts end to end: a real Alertmanager on a loopback port, a
//! call driven past the hold limit, the alert read back from Alertmanager's
//! API, then resolved when the hold ends; and an unreachable Alertmanager
//! that is retried and counted without costing ingest anything.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{now_ms, send, start};

struct Alertmanager {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start Alertmanager (Debian's `prometheus-alertmanager`), or `None` when it
/// is not installed and RINGWATCH_REQUIRE_ALERTMANAGER is not set.
async fn alertmanager() -> Option<Alertmanager> {
    let bin = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok());
    let Some(bin) = bin else {
        assert!(
            std::env::var_os("RINGWATCH_REQUIRE_ALERTMANAGER").is_none(),
            "Alertmanager is required (RINGWATCH_REQUIRE_ALERTMANAGER) but not installed"
        );
        eprintln!("alertmanager not installed: skipping");
        return None;
    };
    let dir = std::env::temp_dir().join(format!(
        "ringwatch-am-{}-{}",
        std::process::id(),
        common::free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: quiet\nreceivers:\n  - name: quiet\n",
    )
    .unwrap();
    let port = common::free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: TempDir(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/-/ready", am.url)).await {
            if r.status().is_success() {
                return Some(am);
            }
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alertmanager's current (unresolved) alerts.
async fn active_alerts(am: &Alertmanager) -> Vec<serde_json::Value> {
    let body = reqwest::get(format!("{}/api/v2/alerts", am.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn hold_past_the_limit_reaches_alertmanager_and_resolves() {
    let Some(am) = alertmanager().await else {
        return;
    };
    let d = start(&[
        ("RINGWATCH__ALERTS__ALERTMANAGER_URL", am.url.as_str()),
        ("RINGWATCH__ALERTS__INTERVAL", "0.2"),
        ("RINGWATCH__RULES__HOLD_LIMIT", "1"),
    ]);
    let mut ws = d.connect().await;
    let t = now_ms();
    let frame = format!(
        r#"[{{"type":"call.offered","ts":{t},"call_id":"c-42","queue":"billing"}},
            {{"type":"call.answered","ts":{t},"call_id":"c-42","agent":"ann"}},
            {{"type":"call.hold_started","ts":{t},"call_id":"c-42"}}]"#
    );
    assert_eq!(send(&mut ws, &frame).await["accepted"], 3);

    // Past the 1 s hold limit, the alert arrives within a second or so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let alerts = active_alerts(&am).await;
        if let Some(a) = alerts
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "RingwatchCallerOnHoldPastLimit")
        {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no hold alert reached Alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(alert["labels"]["queue"], "billing");
    assert_eq!(alert["labels"]["call"], "c-42");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["annotations"]["agent"], "ann");
    assert!(alert["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("on hold"));
    d.eventually("ringwatch_alerts_active", 1.0).await;

    // The hold ends: the alert is resolved (endsAt now) and leaves the list.
    let t = now_ms();
    let frame = format!(r#"{{"type":"call.hold_ended","ts":{t},"call_id":"c-42"}}"#);
    assert_eq!(send(&mut ws, &frame).await["accepted"], 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while active_alerts(&am)
        .await
        .iter()
        .any(|a| a["labels"]["call"] == "c-42")
    {
        assert!(Instant::now() < deadline, "the alert was not resolved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.eventually("ringwatch_alerts_active", 0.0).await;
    assert!(d.metrics().await.value("ringwatch_alerts_posted_total") >= 2.0);
}

#[tokio::test]
async fn unreachable_alertmanager_is_retried_and_counted_never_blocking_ingest() {
    let port = common::free_port(); // nothing listens here
    let url = format!("http://127.0.0.1:{port}");
    let d = start(&[
        ("RINGWATCH__ALERTS__ALERTMANAGER_URL", url.as_str()),
        ("RINGWATCH__ALERTS__INTERVAL", "0.1"),
        ("RINGWATCH__RULES__CLOCK", "event"),
    ]);
    let mut ws = d.connect().await;
    // A caller already ringing for a minute: an alert that cannot be delivered.
    let frame = r#"[{"type":"call.offered","ts":1795424400000,"call_id":"c","queue":"q"},{"type":"clock","ts":1795424460000}]"#;
    assert_eq!(send(&mut ws, frame).await["accepted"], 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while d
        .metrics()
        .await
        .value("ringwatch_alert_post_failures_total")
        < 1.0
    {
        assert!(Instant::now() < deadline, "no failed delivery counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.metrics().await.value("ringwatch_alerts_active"), 1.0);
    // ingest is unaffected
    for i in 0..50 {
        let frame =
            format!(r#"{{"type":"call.offered","ts":1795424460000,"call_id":"x{i}","queue":"q"}}"#);
        assert_eq!(send(&mut ws, &frame).await["accepted"], 1);
    }
}
