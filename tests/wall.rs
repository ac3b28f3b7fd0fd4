//! The wallboard over HTTP, on the real daemon: `/api/v1/queues` with the
//! exact figures of a golden scenario (and the same as `/metrics`), the
//! stream (two messages read), the landing page with a source's state,
//! `HEAD` on every endpoint, the tokens (bearer, the session cookie, what
//! stays open), and the windows across a SIGKILL and a restart.

mod common;

use std::time::Duration;

use common::{scenario, send, signal, start, start_process_in, Endpoints, Samples};
use serde_json::Value;

const PARIS: (&str, &str) = ("RINGWATCH__WALL__TIMEZONE", "Europe/Paris");
const SCRAPER: &str = "scraper-token-0123456789";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn json(d: &Endpoints, path: &str) -> Value {
    let resp = client().get(d.url(path)).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "{path}");
    assert_eq!(resp.headers()["content-type"], "application/json");
    serde_json::from_str(&resp.text().await.unwrap()).expect("JSON")
}

/// The three-rings story (event clock), fed frame by frame.
async fn three_rings(extra: &[(&str, &str)]) -> common::InProcess {
    let s = scenario("three_rings");
    let mut env = s.env();
    env.extend_from_slice(extra);
    let d = start(&env);
    let mut ws = d.connect().await;
    for frame in &s.frames {
        assert_eq!(send(&mut ws, frame).await["accepted"], 1);
    }
    d
}

/// The figures of the wall from `/metrics` for one queue: what the page
/// must show.
fn from_metrics(m: &Samples, queue: &str) -> (f64, f64, f64, f64) {
    let get = |s: &str| m.get(&s.replace("Q", queue)).unwrap_or(0.0);
    let answered = get("ringwatch_calls_answered_total{queue=\"Q\"}");
    let late = get("ringwatch_calls_answered_late_total{queue=\"Q\"}");
    let long = get("ringwatch_calls_abandoned_total{queue=\"Q\",short=\"false\"}");
    let waiting = get("ringwatch_calls_waiting{queue=\"Q\"}");
    (
        (answered - late) / (answered + long),
        long / (answered + long),
        answered,
        waiting,
    )
}

#[tokio::test]
async fn queues_have_the_scenarios_exact_figures() {
    let d = three_rings(&[PARIS]).await;
    let doc = json(&d, "/api/v1/queues").await;
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["timezone"], "Europe/Paris");
    assert_eq!(doc["generated_at"], "2026-11-23T10:01:40+01:00");
    assert_eq!(doc["today_since"], "2026-11-23T00:00:00+01:00");
    assert_eq!(doc["clock_ms"], 1_795_424_500_000i64);
    let names: Vec<&str> = doc["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing", "sales"]);
    let billing = &doc["queues"][0];
    for window in ["today", "last_15m"] {
        let w = &billing[window];
        assert_eq!(w["offered"], 5, "{window}");
        assert_eq!(w["answered"], 3);
        assert_eq!(w["answered_within_limit"], 2);
        assert_eq!(w["answered_late"], 1);
        assert_eq!(w["abandoned_short"], 1);
        assert_eq!(w["abandoned_long"], 1);
        assert_eq!(w["service_level"], 0.5);
        assert_eq!(w["abandon_rate"], 0.25);
        assert_eq!(w["average_answer_seconds"], 41.5 / 3.0);
        assert_eq!(w["callback_compliance"], Value::Null);
    }
    assert_eq!(billing["limits"]["rings"], 3);
    assert_eq!(billing["limits"]["answer_seconds"], 18.0);
    assert_eq!(billing["limits"]["hold_seconds"], 17.0);
    assert_eq!(billing["status"]["service_level_today"], "over");
    assert_eq!(billing["now"]["active"], 3);
    let sales = &doc["queues"][1];
    assert_eq!(sales["today"]["service_level"], 1.0);
    assert_eq!(sales["now"]["waiting"], 1);
    assert_eq!(sales["now"]["waiting_over_limit"], 1);
    assert_eq!(sales["now"]["oldest_wait_seconds"], 50.0);
    assert_eq!(sales["status"]["waiting_over_limit"], "over");
    assert_eq!(sales["status"]["oldest_wait"], "over");
    let total = &doc["total"];
    assert_eq!(total["queue"], Value::Null);
    assert_eq!(total["today"]["answered"], 4);
    assert_eq!(total["today"]["service_level"], 0.6);
    assert_eq!(total["now"]["waiting"], 1);
    // The chart: the last 60 minutes, the last one 10:01 local.
    let chart = billing["chart"].as_array().unwrap();
    assert_eq!(chart.len(), 60);
    assert_eq!(chart[59]["start_ms"], 1_795_424_460_000i64);
    assert_eq!(chart[58]["answered"], 3);
    assert_eq!(chart[59]["abandoned_long"], 1);
    assert_eq!(doc["chart_since_ms"], 1_795_424_460_000i64 - 59 * 60_000);

    // The same figures as /metrics.
    let m = d.metrics().await;
    for (i, q) in ["billing", "sales"].iter().enumerate() {
        let (sl, ar, answered, waiting) = from_metrics(&m, q);
        let w = &doc["queues"][i];
        assert_eq!(w["today"]["service_level"].as_f64(), Some(sl), "{q}");
        assert_eq!(w["today"]["abandon_rate"].as_f64(), Some(ar), "{q}");
        assert_eq!(w["today"]["answered"].as_f64(), Some(answered), "{q}");
        assert_eq!(w["now"]["waiting"].as_f64(), Some(waiting), "{q}");
    }

    // A selection picks and orders; the total follows it.
    let picked = json(&d, "/api/v1/queues?queues=sales,unknown,billing").await;
    assert_eq!(picked["queues"][0]["queue"], "sales");
    assert_eq!(picked["queues"][1]["queue"], "billing");
    let only = json(&d, "/api/v1/queues?queues=sales").await;
    assert_eq!(only["queues"].as_array().unwrap().len(), 1);
    assert_eq!(only["total"]["today"]["answered"], 1);
    d.stop().await;
}

/// Many requests at once share the wall's one pipeline read (and, with a
/// stream open, the producer's figures): every answer still has the
/// scenario's exact figures, with and without a stream.
#[tokio::test]
async fn concurrent_requests_share_reads_and_answer_exactly() {
    let d = three_rings(&[]).await;
    let check = |doc: &Value| {
        let billing = &doc["queues"][0];
        assert_eq!(billing["queue"], "billing");
        assert_eq!(billing["today"]["answered"], 3);
        assert_eq!(billing["today"]["service_level"], 0.5);
        assert_eq!(doc["queues"][1]["now"]["oldest_wait_seconds"], 50.0);
        assert_eq!(doc["total"]["today"]["answered"], 4);
        assert_eq!(doc["clock_ms"], 1_795_424_500_000i64);
    };
    let many = || futures_util::future::join_all((0..40).map(|_| json(&d, "/api/v1/queues")));
    for doc in many().await {
        check(&doc);
    }
    let mut stream = client()
        .get(d.url("/api/v1/stream"))
        .send()
        .await
        .expect("stream");
    assert_eq!(sse_messages(&mut stream, 1).await.len(), 1);
    for doc in many().await {
        check(&doc);
    }
    drop(stream);
    d.stop().await;
}

/// "Today" is the monitor's clock's day in the zone: in Tokyo (UTC+9) the
/// story's 09:00 UTC is 18:00 the same day; the figures are the same.
#[tokio::test]
async fn today_follows_the_configured_zone() {
    let d = three_rings(&[("RINGWATCH__WALL__TIMEZONE", "Asia/Tokyo")]).await;
    let doc = json(&d, "/api/v1/queues").await;
    assert_eq!(doc["today_since"], "2026-11-23T00:00:00+09:00");
    assert_eq!(doc["total"]["today"]["answered"], 4);
    d.stop().await;
}

/// Reads Server-Sent Events from a response until `n` `data:` lines came.
async fn sse_messages(resp: &mut reqwest::Response, n: usize) -> Vec<Value> {
    let mut buf = String::new();
    let mut out = Vec::new();
    let read = async {
        while out.len() < n {
            let chunk = resp.chunk().await.expect("stream").expect("more");
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = buf.find("\n\n") {
                let message: String = buf.drain(..end + 2).collect();
                for line in message.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        out.push(serde_json::from_str(data).expect("a JSON document"));
                    }
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("two messages in time");
    out
}

#[tokio::test]
async fn the_stream_sends_the_document_every_second() {
    let d = three_rings(&[PARIS]).await;
    let mut resp = client()
        .get(d.url("/api/v1/stream?queues=sales"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let messages = sse_messages(&mut resp, 2).await;
    let expected = json(&d, "/api/v1/queues?queues=sales").await;
    for m in &messages {
        assert_eq!(m["schema"], 1);
        assert_eq!(m["queues"].as_array().unwrap().len(), 1);
        // Event clock: nothing moves between reads, so every message is
        // the document /api/v1/queues answers.
        assert_eq!(*m, expected);
    }
    d.stop().await;
}

#[tokio::test]
async fn head_works_on_every_endpoint() {
    let d = start(&[]);
    for path in [
        "/",
        "/wall",
        "/metrics",
        "/healthz",
        "/readyz",
        "/api/v1/queues",
    ] {
        let resp = client().head(d.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "HEAD {path}");
        assert!(resp.headers().contains_key("content-type"), "HEAD {path}");
        assert_eq!(resp.bytes().await.unwrap().len(), 0, "HEAD {path}");
    }
    d.stop().await;
}

#[tokio::test]
async fn the_landing_page_links_everything_and_shows_the_sources() {
    let d = start(&[("RINGWATCH__SOURCES__PLATFORM__URL", "ws://127.0.0.1:1/")]);
    let (status, body) = d.get("/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(concat!("ringwatch ", env!("CARGO_PKG_VERSION"))),
        "{body}"
    );
    for link in ["/wall", "/metrics", "/healthz", "/readyz", "/api/v1/queues"] {
        assert!(body.contains(&format!("href=\"{link}\"")), "{link}: {body}");
    }
    assert!(
        body.contains("<tr data-source=\"platform\"><td>platform</td><td>&#x2716; not connected</td><td>none yet</td></tr>"),
        "{body}"
    );
    // The page and its files come from the binary; nothing from elsewhere.
    let (status, wall) = d.get("/wall").await;
    assert_eq!(status, 200);
    assert!(wall.contains("/wall/wall.js") && !wall.contains("https://"));
    for asset in ["/wall/wall.js", "/wall/wall.css", "/wall/signin.js"] {
        assert_eq!(d.get(asset).await.0, 200, "{asset}");
    }
    d.stop().await;
}

#[tokio::test]
async fn tokens_guard_the_wall_and_its_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrapers");
    std::fs::write(&file, format!("wall-lobby {SCRAPER}\n")).unwrap();
    let d = start(&[(
        "RINGWATCH__HTTP__METRICS_TOKENS_FILE",
        file.to_str().unwrap(),
    )]);
    let c = client();
    for path in ["/api/v1/queues", "/api/v1/stream", "/wall"] {
        let resp = c.get(d.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            r#"Bearer realm="ringwatch""#
        );
        let wrong = c.get(d.url(path)).bearer_auth("nope").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let cookie = c
            .get(d.url(path))
            .header("cookie", "ringwatch_wall=nope")
            .send()
            .await
            .unwrap();
        assert_eq!(cookie.status(), 401, "{path}");
    }
    // The sign-in page is what an unauthorized /wall shows.
    let signin = c
        .get(d.url("/wall"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(signin.contains("/wall/signin.js") && signin.contains("#token="));
    // Tools: a bearer header.
    let ok = c
        .get(d.url("/api/v1/queues"))
        .bearer_auth(SCRAPER)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Browsers: the bearer token once, a cookie from then on.
    let refused = c.post(d.url("/wall/session")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let signed = c
        .post(d.url("/wall/session"))
        .bearer_auth(SCRAPER)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 204);
    let set = signed.headers()["set-cookie"].to_str().unwrap().to_string();
    // A random session id, never the token.
    let id = set
        .strip_prefix("ringwatch_wall=")
        .and_then(|r| r.strip_suffix("; Path=/; HttpOnly; SameSite=Strict; Max-Age=34560000"))
        .unwrap_or_else(|| panic!("{set}"))
        .to_string();
    assert_eq!(id.len(), 96, "{set}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()) && !set.contains(SCRAPER));
    // The token itself is no cookie.
    let raw = c
        .get(d.url("/api/v1/queues"))
        .header("cookie", format!("ringwatch_wall={SCRAPER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let cookie = format!("theme=dark; ringwatch_wall={id}");
    for path in ["/wall", "/api/v1/queues", "/api/v1/stream"] {
        let resp = c
            .get(d.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // The landing page is open, the sources' states only for the signed in;
    // the probes and the page's files stay open.
    let open = c
        .get(d.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(open.contains("Sign in to see the sources"), "{open}");
    let signed_in = c
        .get(d.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        signed_in.contains("No client-mode or PBX source"),
        "{signed_in}"
    );
    for path in ["/healthz", "/readyz", "/wall/wall.js", "/wall/wall.css"] {
        assert_eq!(
            c.get(d.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let m = c
        .get(d.url("/metrics"))
        .bearer_auth(SCRAPER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refusals = Samples::parse(&m).unwrap();
    assert!(
        refusals
            .get("ringwatch_auth_failures_total{listener=\"http\",reason=\"invalid\"}")
            .unwrap()
            >= 6.0
    );
    d.stop().await;
}

/// The windows are state: after SIGKILL (journal replay) and after a
/// graceful restart (snapshot) the document is the same.
#[tokio::test]
async fn the_windows_survive_sigkill_and_restart() {
    let s = scenario("three_rings");
    let dir = tempfile::tempdir().unwrap();
    let mut env = s.env();
    env.push(PARIS);
    let d = start_process_in(dir.path(), &env);
    let mut ws = d.connect().await;
    for frame in &s.frames {
        assert_eq!(send(&mut ws, frame).await["accepted"], 1);
    }
    let before = json(&d, "/api/v1/queues").await;
    signal(d.pid(), "KILL");
    drop(d);
    let mut d = start_process_in(dir.path(), &env);
    assert_eq!(json(&d, "/api/v1/queues").await, before, "after SIGKILL");
    d.terminate(Duration::from_secs(20));
    drop(d);
    let d = start_process_in(dir.path(), &env);
    assert_eq!(json(&d, "/api/v1/queues").await, before, "after a restart");
}

/// The demo's first line is the wall's address.
#[test]
fn the_demo_prints_the_wall_first() {
    let out = common::ringwatch_command()
        .env("RINGWATCH__INGEST__LISTEN", "127.0.0.1:0")
        .env("RINGWATCH__HTTP__LISTEN", "127.0.0.1:0")
        .args(["demo", "--duration", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ringwatch wall: http://127.0.0.1:") && first.ends_with("/wall"),
        "{stdout}"
    );
}

/// A stream opened with a token ends once the token is revoked (the file
/// rewritten, SIGHUP), and the token is refused from then on.
#[tokio::test]
async fn a_revoked_token_ends_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scrapers");
    std::fs::write(&file, format!("wall-lobby {SCRAPER}\n")).unwrap();
    let d = common::start_process(&[(
        "RINGWATCH__HTTP__METRICS_TOKENS_FILE",
        file.to_str().unwrap(),
    )]);
    let signed = client()
        .post(d.url("/wall/session"))
        .bearer_auth(SCRAPER)
        .send()
        .await
        .unwrap();
    let set = signed.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    let mut resp = client()
        .get(d.url("/api/v1/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sse_messages(&mut resp, 1).await;
    std::fs::write(&file, "someone-else another-token-0123456789\n").unwrap();
    signal(d.pid(), "HUP");
    let ended = async { while let Ok(Some(_)) = resp.chunk().await {} };
    tokio::time::timeout(Duration::from_secs(20), ended)
        .await
        .expect("the stream ends after the revocation");
    let again = client()
        .get(d.url("/api/v1/stream"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
}

/// An unknown `[wall] timezone` stops ringwatch before it binds anything:
/// exit 64, and the message names the key.
#[test]
fn an_unknown_time_zone_exits_64_naming_the_key() {
    let out = common::ringwatch_command()
        .env("RINGWATCH__WALL__TIMEZONE", "Mars/Olympus_Mons")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wall.timezone") && stderr.contains("Mars/Olympus_Mons"),
        "{stderr}"
    );
}
