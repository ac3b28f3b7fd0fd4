//! The wallboard in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver, `fantoccini`). A golden scenario is fed
//! to a daemon whose `/metrics` takes tokens; the browser opens the wall's
//! bookmark (`/wall?queues=...#token=...`), signs in by itself, waits for
//! the figures, and they are compared with `/metrics`. Then the daemon
//! stops: the page must say it is stale; it starts again on the same port:
//! the page must come back by itself.
//!
//! Skipped, with the reason printed, when chromedriver is not installed,
//! unless `RINGWATCH_REQUIRE_BROWSER=1` (set by `.ci/run`), where a missing
//! browser fails.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, scenario, send, start_in, Samples};
use fantoccini::{Client, ClientBuilder};
use serde_json::json;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "lobby-wall-token-5d1c9a7e";

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
    if !present {
        let required = std::env::var("RINGWATCH_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "RINGWATCH_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing (Debian packages chromium and chromium-driver)"
        );
        eprintln!("skipped: {CHROMEDRIVER} or {CHROMIUM} is missing (install chromium and chromium-driver)");
    }
    present
}

async fn driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/status")).await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return d;
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(d: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1600,900"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("a browser session")
}

/// Poll `check` (a JavaScript expression) until it is true.
async fn until(c: &Client, what: &str, check: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = c
            .execute(&format!("return !!({check});"), vec![])
            .await
            .expect("script");
        if v == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A figure as the page shows it: its visible text and the exact value.
/// Read in one script run: the page re-renders every second, so an element
/// found by one WebDriver call may be gone (stale) by the next.
async fn figure(c: &Client, queue: &str, name: &str) -> (String, String) {
    let selector = format!("article[data-queue=\"{queue}\"] [data-figure=\"{name}\"]");
    let got = c
        .execute(
            "const el = document.querySelector(arguments[0]);
             return el ? [el.innerText, el.getAttribute('data-value') || ''] : null;",
            vec![serde_json::Value::String(selector)],
        )
        .await
        .unwrap_or_else(|e| panic!("{queue} {name}: {e}"));
    let pair = got
        .as_array()
        .unwrap_or_else(|| panic!("{queue} {name}: not on the page"));
    let text = pair[0].as_str().unwrap_or_default().to_string();
    let value = pair[1].as_str().unwrap_or_default().to_string();
    (text, value)
}

/// The visible text of the element `selector` names, read in one script run
/// (see [`figure`]).
async fn text_of(c: &Client, selector: &str) -> String {
    let got = c
        .execute(
            "const el = document.querySelector(arguments[0]); return el ? el.innerText : null;",
            vec![serde_json::Value::String(selector.to_string())],
        )
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    got.as_str()
        .unwrap_or_else(|| panic!("{selector}: not on the page"))
        .to_string()
}

fn pct(v: f64) -> String {
    format!("{}%", (v * 100.0).round())
}

#[tokio::test]
async fn the_wall_shows_the_scenario_in_chromium_and_says_when_it_is_stale() {
    if !browser_available() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let tokens = data.path().join("scrapers");
    std::fs::write(&tokens, format!("lobby {TOKEN}\n")).unwrap();
    let dir = data.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let s = scenario("three_rings");
    let mut env = s.env();
    env.push(("RINGWATCH__WALL__TIMEZONE", "Europe/Paris"));
    env.push((
        "RINGWATCH__HTTP__METRICS_TOKENS_FILE",
        tokens.to_str().unwrap(),
    ));
    env.push(("RINGWATCH__HTTP__LISTEN", &listen));
    let d = start_in(&dir, &env);
    let mut ws = d.connect().await;
    for frame in &s.frames {
        assert_eq!(send(&mut ws, frame).await["accepted"], 1);
    }
    drop(ws);

    let driver = driver().await;
    let c = browser(&driver).await;
    c.goto(&d.url(&format!("/wall?queues=billing,sales#token={TOKEN}")))
        .await
        .unwrap();
    until(
        &c,
        "the figures",
        "document.querySelector('article[data-queue=\"sales\"]')",
    )
    .await;
    // Signed in by the cookie: the token is gone from the address bar.
    let url = c.current_url().await.unwrap();
    assert_eq!(url.as_str(), d.url("/wall?queues=billing,sales"));
    let order = c
        .execute(
            "return [...document.querySelectorAll('article')].map(a => a.dataset.queue);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(order, json!(["*", "billing", "sales"]));

    let m = reqwest::Client::new()
        .get(d.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = Samples::parse(&m).unwrap();
    let mut total = [0.0; 3];
    for q in ["billing", "sales"] {
        let get = |f: &str| m.get(&f.replace('Q', q)).unwrap_or(0.0);
        let answered = get("ringwatch_calls_answered_total{queue=\"Q\"}");
        let within = answered - get("ringwatch_calls_answered_late_total{queue=\"Q\"}");
        let long = get("ringwatch_calls_abandoned_total{queue=\"Q\",short=\"false\"}");
        let sl = within / (answered + long);
        let (text, value) = figure(&c, q, "service_level_today").await;
        assert_eq!(
            (text.as_str(), value.parse::<f64>().unwrap()),
            (pct(sl).as_str(), sl),
            "{q}"
        );
        let (text, _) = figure(&c, q, "service_level_last_15m").await;
        assert_eq!(
            text,
            pct(sl),
            "{q}: all of the story is in the last 15 minutes"
        );
        let (text, _) = figure(&c, q, "abandon_rate_today").await;
        assert_eq!(text, pct(long / (answered + long)), "{q}");
        let (text, _) = figure(&c, q, "answered_today").await;
        assert_eq!(text, answered.to_string(), "{q}");
        for (name, family) in [
            ("waiting", "ringwatch_calls_waiting"),
            ("waiting_over_limit", "ringwatch_calls_waiting_over_limit"),
            ("on_hold", "ringwatch_calls_on_hold"),
            ("callbacks_pending", "ringwatch_callbacks_pending"),
        ] {
            let (text, _) = figure(&c, q, name).await;
            assert_eq!(
                text,
                get(&format!("{family}{{queue=\"Q\"}}")).to_string(),
                "{q} {name}"
            );
        }
        let (_, oldest) = figure(&c, q, "oldest_wait").await;
        assert_eq!(
            oldest.parse::<f64>().unwrap(),
            get("ringwatch_oldest_wait_seconds{queue=\"Q\"}"),
            "{q}"
        );
        total[0] += within;
        total[1] += answered;
        total[2] += long;
    }
    let (text, _) = figure(&c, "*", "service_level_today").await;
    assert_eq!(text, pct(total[0] / (total[1] + total[2])));
    // Status in words (and a shape), not by colour alone.
    let badge = text_of(
        &c,
        "article[data-queue=\"sales\"] [data-status=\"waiting_over_limit\"]",
    )
    .await;
    assert_eq!(badge, "\u{2716} OVER");
    // The labels name the queues' limits, from the document.
    for q in ["sales", "*"] {
        let label =
            |f: &str| format!("article[data-queue=\"{q}\"] .fig:has([data-figure=\"{f}\"]) .label");
        assert_eq!(
            text_of(&c, &label("waiting_over_limit")).await,
            "past 3 rings",
            "{q}"
        );
        assert_eq!(
            text_of(&c, &label("on_hold_over_limit")).await,
            "hold past 17 s",
            "{q}"
        );
    }
    until(
        &c,
        "a fresh page",
        "document.getElementById('stale').hidden",
    )
    .await;

    // The daemon stops: within a few seconds the page says it is stale.
    d.stop().await;
    until(
        &c,
        "the stale indicator",
        "!document.getElementById('stale').hidden",
    )
    .await;
    let stale = text_of(&c, "#stale").await;
    assert!(stale.starts_with("STALE since "), "{stale}");

    // Started again on the same address: the page reconnects by itself.
    let d = start_in(&dir, &env);
    until(
        &c,
        "the page to recover",
        "document.getElementById('stale').hidden",
    )
    .await;
    let (text, _) = figure(&c, "billing", "service_level_today").await;
    assert_eq!(text, "50%");
    c.close().await.unwrap();
    d.stop().await;
}
