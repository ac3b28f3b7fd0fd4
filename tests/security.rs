//! Who may connect, and over what, against the daemon: per-source
//! bearer tokens on ingest (401s, revocation by SIGHUP reload), a separate
//! token file for /metrics with the probes left open, TLS on both listeners
//! with certificate reload, tokens kept out of the logs, and wire strings
//! bounded and escaped before they reach the exposition. Reloads (SIGHUP)
//! and what reaches the logs are tested on the binary, the rest in-process.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{close_frame, now_ms, offer_now, send, start, start_process, Endpoints, Samples, Ws};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::Connector;

/// For the tests on the event clock; those on the wall clock use
/// `offer_now` (a fixed date there is a call days old, evicted at once).
const OFFER: &str = r#"{"type":"call.offered","ts":1795424400000,"call_id":"c1","queue":"q"}"#;
const PBX: &str = "pbx-token-4f1c2a9e8b7d6c5e4f3a2b1c";
const ACD: &str = "acd-token-9a8b7c6d5e4f3a2b1c0d9e8f";
const SCRAPER: &str = "scraper-token-0a1b2c3d4e5f6a7b8c9d";

/// A scratch directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let dir =
            std::env::temp_dir().join(format!("ringwatch-security-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Open an ingest connection, with `Authorization: Bearer <token>` when given.
async fn connect(d: &Endpoints, token: Option<&str>) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}/v1/events", d.ingest)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert(AUTHORIZATION, format!("Bearer {t}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP refusal of an upgrade: status and `WWW-Authenticate`.
fn refused(result: Result<Ws, WsError>) -> (u16, String) {
    match result {
        Err(WsError::Http(resp)) => (
            resp.status().as_u16(),
            resp.headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
        ),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade succeeded"),
    }
}

async fn scrape_with(d: &Endpoints, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(d.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let challenge = resp
        .headers()
        .get(WWW_AUTHENTICATE.as_str())
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        resp.status().as_u16(),
        challenge,
        resp.text().await.unwrap(),
    )
}

/// Scrape (with the scraper's token) until `selector` equals `want`.
async fn eventually_with(d: &Endpoints, token: Option<&str>, selector: &str, want: f64) {
    let mut got = None;
    for _ in 0..250 {
        let (status, _, body) = scrape_with(d, token).await;
        assert_eq!(status, 200);
        got = Samples::parse(&body).unwrap().get(selector);
        if got == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{selector}: expected {want}, last saw {got:?}");
}

#[tokio::test]
async fn ingest_requires_a_valid_token_and_knows_the_source() {
    let dir = Dir::new("required");
    let tokens = dir.write("tokens", &format!("# sources\npbx {PBX}\nacd {ACD}\n"));
    let d = start(&[("RINGWATCH__INGEST__TOKENS_FILE", &tokens)]);

    assert_eq!(
        refused(connect(&d, None).await),
        (401, r#"Bearer realm="ringwatch""#.into())
    );
    assert_eq!(
        refused(connect(&d, Some("not-a-token-of-anyone-at-all")).await),
        (
            401,
            r#"Bearer realm="ringwatch", error="invalid_token""#.into()
        )
    );
    let mut req = format!("ws://{}/v1/events", d.ingest)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert(AUTHORIZATION, format!("Basic {PBX}").parse().unwrap());
    assert_eq!(
        refused(
            tokio_tungstenite::connect_async(req)
                .await
                .map(|(ws, _)| ws)
        )
        .0,
        401
    );

    let mut ws = connect(&d, Some(PBX)).await.expect("pbx's token is valid");
    assert_eq!(send(&mut ws, &offer_now("c1")).await["accepted"], 1);

    let m = d.metrics().await;
    for (reason, n) in [("missing", 1.0), ("invalid", 1.0), ("malformed", 1.0)] {
        assert_eq!(
            m.value(&format!(
                r#"ringwatch_auth_failures_total{{listener="ingest",reason="{reason}"}}"#
            )),
            n,
            "{reason}"
        );
    }
    assert_eq!(
        m.value(r#"ringwatch_auth_failures_total{listener="http",reason="missing"}"#),
        0.0,
        "/metrics is open: no token file for it"
    );
    // Refusals are not protocol errors, and refused peers never count as opened.
    assert_eq!(
        m.value(r#"ringwatch_ingest_protocol_errors_total{kind="handshake"}"#),
        0.0
    );
    assert_eq!(m.value("ringwatch_ingest_connections_opened_total"), 1.0);
    assert_eq!(
        m.value(r#"ringwatch_ingest_source_connections{source="pbx"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_ingest_source_connections{source="acd"}"#),
        0.0
    );
    assert_eq!(m.value(r#"ringwatch_calls_offered_total{queue="q"}"#), 1.0);
}

#[tokio::test]
async fn one_source_is_revoked_by_editing_the_file_and_sending_sighup() {
    let dir = Dir::new("revoke");
    let tokens = dir.write("tokens", &format!("pbx {PBX}\nacd {ACD}\n"));
    let d = start_process(&[
        ("RINGWATCH__INGEST__TOKENS_FILE", &tokens),
        ("RINGWATCH__RULES__CLOCK", "event"),
    ]);
    let mut pbx = connect(&d, Some(PBX)).await.unwrap();
    let mut acd = connect(&d, Some(ACD)).await.unwrap();
    assert_eq!(send(&mut acd, OFFER).await["accepted"], 1);

    // acd's token leaked: remove its line, reload.
    dir.write("tokens", &format!("pbx {PBX}\n"));
    common::signal(d.pid(), "HUP");
    let (code, reason) = close_frame(&mut acd).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(reason.contains("revoked"), "{reason}");
    assert_eq!(
        refused(connect(&d, Some(ACD)).await),
        (
            401,
            r#"Bearer realm="ringwatch", error="invalid_token""#.into()
        )
    );
    // pbx never noticed.
    let answer = r#"{"type":"call.answered","ts":1795424405000,"call_id":"c1"}"#;
    assert_eq!(send(&mut pbx, answer).await["accepted"], 1);
    d.eventually(
        r#"ringwatch_reloads_total{what="ingest_tokens",result="success"}"#,
        1.0,
    )
    .await;
    d.eventually(
        r#"ringwatch_ingest_connections_closed_total{reason="revoked"}"#,
        1.0,
    )
    .await;
    d.eventually(r#"ringwatch_ingest_source_connections{source="acd"}"#, 0.0)
        .await;

    // A broken file is refused whole: the tokens in force stay.
    dir.write("tokens", &format!("pbx {PBX}\nacd too-short\n"));
    common::signal(d.pid(), "HUP");
    d.eventually(
        r#"ringwatch_reloads_total{what="ingest_tokens",result="failure"}"#,
        1.0,
    )
    .await;
    let mut again = connect(&d, Some(PBX)).await.expect("pbx still admitted");
    assert_eq!(send(&mut again, "[]").await["accepted"], 0);
    assert_eq!(
        d.metrics()
            .await
            .value(r#"ringwatch_ingest_source_connections{source="pbx"}"#),
        2.0
    );
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("token file reload failed"), "{logs}");
    assert!(logs.contains(r#""removed":"[\"acd\"]""#), "{logs}");
}

#[tokio::test]
async fn tokens_never_appear_in_the_logs() {
    secrets_stay_out_of_logs("debug").await;
}

/// At trace level the libraries log too (the WebSocket library would log
/// whole frames): still no token, and no caller or customer data.
#[tokio::test]
async fn tokens_and_personal_data_stay_out_of_trace_logs() {
    secrets_stay_out_of_logs("trace").await;
}

async fn secrets_stay_out_of_logs(level: &str) {
    let dir = Dir::new(&format!("logs-{level}"));
    let tokens = dir.write("tokens", &format!("pbx {PBX}\n"));
    let scrapers = dir.write("scrapers", &format!("prometheus {SCRAPER}\n"));
    let wrong = "wrong-token-5e6f7a8b9c0d1e2f3a4b";
    let d = start_process(&[
        ("RINGWATCH__LOG__LEVEL", level),
        ("RINGWATCH__INGEST__TOKENS_FILE", &tokens),
        ("RINGWATCH__HTTP__METRICS_TOKENS_FILE", &scrapers),
    ]);
    assert_eq!(refused(connect(&d, Some(wrong)).await).0, 401);
    let mut ws = connect(&d, Some(PBX)).await.unwrap();
    let personal = format!(
        r#"{{"type":"call.offered","ts":{},"call_id":"c1","queue":"q","caller":"+15557654321","customer":"Jane Q. Public"}}"#,
        now_ms()
    );
    assert_eq!(send(&mut ws, &personal).await["accepted"], 1);
    ws.close(None).await.unwrap();
    assert_eq!(scrape_with(&d, Some(wrong)).await.0, 401);
    assert_eq!(scrape_with(&d, Some(SCRAPER)).await.0, 200);
    // A reload logs what changed, by name.
    common::signal(d.pid(), "HUP");
    eventually_with(
        &d,
        Some(SCRAPER),
        r#"ringwatch_reloads_total{what="http_tokens",result="success"}"#,
        1.0,
    )
    .await;
    eventually_with(
        &d,
        Some(SCRAPER),
        r#"ringwatch_ingest_connections_closed_total{reason="peer"}"#,
        1.0,
    )
    .await;

    let logs = d.log_lines().join("\n");
    // Debug logging was on, and the events around the tokens were logged...
    assert!(
        logs.contains("ingest upgrade refused: bearer token"),
        "{logs}"
    );
    assert!(logs.contains("/metrics refused: bearer token"), "{logs}");
    assert!(logs.contains(r#""source":"pbx""#), "{logs}");
    assert!(logs.contains("token file reloaded"), "{logs}");
    // ...but no token, right or wrong, nor any recognisable part of one.
    for secret in [PBX, SCRAPER, wrong] {
        assert!(
            !logs.contains(&secret[..12]),
            "{secret} in the logs:\n{logs}"
        );
    }
    assert!(
        !logs.contains("7654321") && !logs.contains("Jane"),
        "personal data in the logs:\n{logs}"
    );
}

#[tokio::test]
async fn metrics_can_require_its_own_tokens_and_probes_stay_open() {
    let dir = Dir::new("metrics");
    let ingest_tokens = dir.write("ingest", &format!("pbx {PBX}\n"));
    let scrapers = dir.write("scrapers", &format!("prometheus {SCRAPER}\n"));
    let d = start(&[
        ("RINGWATCH__INGEST__TOKENS_FILE", &ingest_tokens),
        ("RINGWATCH__HTTP__METRICS_TOKENS_FILE", &scrapers),
    ]);
    let (status, challenge, body) = scrape_with(&d, None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge, r#"Bearer realm="ringwatch""#);
    assert!(body.contains("bearer token is required"), "{body}");
    // A sender's token is no scraper's token.
    let (status, challenge, _) = scrape_with(&d, Some(PBX)).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert_eq!(d.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(d.get("/readyz").await, (200, "ready\n".to_string()));

    let (status, _, body) = scrape_with(&d, Some(SCRAPER)).await;
    assert_eq!(status, 200);
    let m = Samples::parse(&body).unwrap();
    assert_eq!(
        m.value(r#"ringwatch_auth_failures_total{listener="http",reason="missing"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_auth_failures_total{listener="http",reason="invalid"}"#),
        1.0
    );
    // The scraper's token opens no ingest connection either.
    assert_eq!(refused(connect(&d, Some(SCRAPER)).await).0, 401);
}

/// A CA, and a leaf for localhost and 127.0.0.1 signed by it: chain file
/// (leaf, then CA), key file, and the CA to trust.
struct Pki {
    chain: String,
    key: String,
    ca: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    Pki {
        chain: format!("{}{}", leaf.pem(), ca.pem()),
        key: leaf_key.serialize_pem(),
        ca: ca.pem(),
    }
}

fn trusting(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn connect_wss(addr: SocketAddr, tls: Arc<ClientConfig>) -> Result<Ws, WsError> {
    let req = format!("wss://localhost:{}/v1/events", addr.port())
        .into_client_request()
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(Connector::Rustls(tls)))
        .await
        .map(|(ws, _)| ws)
}

/// GET over HTTPS (hyper's client on a rustls stream); `Err` when the TLS
/// handshake fails.
async fn https_get(
    addr: SocketAddr,
    tls: Arc<ClientConfig>,
    path: &str,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).unwrap()))
}

async fn tls_samples(d: &Endpoints, tls: Arc<ClientConfig>) -> Samples {
    let (status, body) = https_get(d.http, tls, "/metrics").await.unwrap();
    assert_eq!(status, 200);
    Samples::parse(&body).unwrap()
}

fn tls_env(dir: &Dir, pki: &Pki) -> Vec<(&'static str, String)> {
    let chain = dir.write("chain.pem", &pki.chain);
    let key = dir.write("key.pem", &pki.key);
    vec![
        ("RINGWATCH__INGEST__TLS_CERT_FILE", chain.clone()),
        ("RINGWATCH__INGEST__TLS_KEY_FILE", key.clone()),
        ("RINGWATCH__HTTP__TLS_CERT_FILE", chain),
        ("RINGWATCH__HTTP__TLS_KEY_FILE", key),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn both_listeners_speak_tls() {
    let dir = Dir::new("tls");
    let certs = pki();
    let d = start(&borrowed(&tls_env(&dir, &certs)));
    let tls = trusting(&certs.ca);

    let mut ws = connect_wss(d.ingest, Arc::clone(&tls)).await.expect("wss");
    assert_eq!(send(&mut ws, &offer_now("c1")).await["accepted"], 1);
    assert_eq!(
        https_get(d.http, Arc::clone(&tls), "/readyz").await,
        Ok((200, "ready\n".to_string()))
    );

    // Plain text to either TLS port gets nowhere, and is counted.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/v1/events", d.ingest))
            .await
            .is_err()
    );
    assert!(reqwest::get(d.url("/healthz")).await.is_err());
    // A client that does not trust the certificate is refused.
    let stranger = trusting(&pki().ca);
    assert!(connect_wss(d.ingest, Arc::clone(&stranger)).await.is_err());

    let mut m = tls_samples(&d, Arc::clone(&tls)).await;
    for _ in 0..100 {
        if m.value(r#"ringwatch_tls_handshake_failures_total{listener="http"}"#) >= 1.0
            && m.value(r#"ringwatch_tls_handshake_failures_total{listener="ingest"}"#) >= 2.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = tls_samples(&d, Arc::clone(&tls)).await;
    }
    assert_eq!(m.value("ringwatch_ingest_frames_total"), 1.0);
    assert_eq!(m.value(r#"ringwatch_calls_offered_total{queue="q"}"#), 1.0);
    assert_eq!(
        m.value(r#"ringwatch_tls_handshake_failures_total{listener="ingest"}"#),
        2.0
    );
    assert_eq!(
        m.value(r#"ringwatch_tls_handshake_failures_total{listener="http"}"#),
        1.0
    );
    assert_eq!(
        m.value(r#"ringwatch_ingest_protocol_errors_total{kind="handshake"}"#),
        0.0
    );
}

#[tokio::test]
async fn certificates_are_reloaded_on_sighup_and_a_bad_pair_is_refused() {
    let dir = Dir::new("tls-reload");
    let first = pki();
    let env = tls_env(&dir, &first);
    let d = start_process(&borrowed(&env));
    let old_ca = trusting(&first.ca);
    let mut kept = connect_wss(d.ingest, Arc::clone(&old_ca)).await.unwrap();

    // Renewal: a new pair from a new CA.
    let second = pki();
    let new_ca = trusting(&second.ca);
    dir.write("chain.pem", &second.chain);
    dir.write("key.pem", &second.key);
    common::signal(d.pid(), "HUP");
    let mut reloaded = false;
    for _ in 0..250 {
        if let Ok((200, body)) = https_get(d.http, Arc::clone(&new_ca), "/metrics").await {
            let m = Samples::parse(&body).unwrap();
            if m.value(r#"ringwatch_reloads_total{what="ingest_tls",result="success"}"#) == 1.0 {
                assert_eq!(
                    m.value(r#"ringwatch_reloads_total{what="http_tls",result="success"}"#),
                    1.0
                );
                reloaded = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reloaded, "the new certificate is served after SIGHUP");
    let mut fresh = connect_wss(d.ingest, Arc::clone(&new_ca))
        .await
        .expect("new certificate on ingest");
    assert_eq!(send(&mut fresh, &offer_now("c1")).await["accepted"], 1);
    // A fresh client: one that kept a session ticket could resume without
    // seeing any certificate.
    assert!(connect_wss(d.ingest, trusting(&first.ca)).await.is_err());
    // The connection made under the old certificate goes on.
    assert_eq!(send(&mut kept, "[]").await["accepted"], 0);

    // A half-written renewal (key of another pair) is refused: the current
    // certificate stays in use.
    dir.write("key.pem", &first.key);
    common::signal(d.pid(), "HUP");
    let mut failed = false;
    for _ in 0..250 {
        let m = tls_samples(&d, Arc::clone(&new_ca)).await;
        if m.value(r#"ringwatch_reloads_total{what="ingest_tls",result="failure"}"#) == 1.0 {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "the bad pair is counted");
    assert!(connect_wss(d.ingest, new_ca).await.is_ok());
    let logs = d.log_lines().join("\n");
    assert!(logs.contains("TLS reload failed"), "{logs}");
    assert!(logs.contains("does not match the certificate"), "{logs}");
}

#[tokio::test]
async fn startup_warns_about_open_or_clear_text_listeners_beyond_loopback() {
    let d = start_process(&[("RINGWATCH__INGEST__LISTEN", "0.0.0.0:0")]);
    let logs = d.log_lines().join("\n");
    assert!(
        logs.contains("ingest listens beyond loopback without tokens"),
        "{logs}"
    );

    let dir = Dir::new("warn");
    let tokens = dir.write("tokens", &format!("pbx {PBX}\n"));
    let d = start_process(&[
        ("RINGWATCH__INGEST__LISTEN", "0.0.0.0:0"),
        ("RINGWATCH__INGEST__TOKENS_FILE", &tokens),
    ]);
    let logs = d.log_lines().join("\n");
    assert!(!logs.contains("without tokens"), "{logs}");
    assert!(
        logs.contains("tokens cross the network in clear text"),
        "{logs}"
    );

    // On loopback (the default) neither warning.
    let d = start_process(&[]);
    let logs = d.log_lines().join("\n");
    assert!(
        !logs.contains("beyond loopback") && !logs.contains("clear text"),
        "{logs}"
    );
}

/// Every string field of the wire contract is bounded before anything keeps
/// it (one character over is rejected, exactly at the bound is accepted);
/// label values reach the exposition escaped.
#[tokio::test]
async fn wire_strings_are_bounded_and_label_values_escaped() {
    let d = start(&[("RINGWATCH__RULES__CLOCK", "event")]);
    let mut ws = d.connect().await;
    let base = |field: &str, value: &str| {
        let mut e = serde_json::json!({
            "type": "call.offered", "ts": 1795424400000u64, "call_id": "c", "queue": "q",
        });
        if field == "promise_id" {
            e = serde_json::json!({
                "type": "callback.promised", "ts": 1795424400000u64, "queue": "q",
                "due": 1795428000000u64, "promise_id": "p",
            });
        }
        e[field] = serde_json::Value::String(value.to_string());
        e.to_string()
    };
    let fields = [
        ("event_id", 128),
        ("call_id", 128),
        ("promise_id", 128),
        ("queue", 64),
        ("site", 64),
        ("agent", 64),
        ("caller", 128),
        ("customer", 128),
    ];
    for (i, (field, max)) in fields.iter().enumerate() {
        // Multi-byte characters: the bound is in characters, and a byte count
        // would be 3x over.
        let over: String = std::iter::repeat_n('€', max + 1).collect();
        let ack = send(&mut ws, &base(field, &over)).await;
        assert_eq!(ack["accepted"], 0, "{field}: {ack}");
        let detail = ack["rejected"][0]["detail"].as_str().unwrap();
        assert_eq!(ack["rejected"][0]["reason"], "invalid_field", "{field}");
        assert!(detail.contains(&format!("`{field}`")), "{field}: {detail}");
        assert!(!detail.contains("€€"), "the value is not echoed: {detail}");

        // Personal data gets a mark of its own, to look for in the exposition.
        let mark = if matches!(*field, "caller" | "customer") {
            '☎'
        } else {
            '€'
        };
        let at: String = std::iter::repeat_n(mark, *max).collect();
        let mut ok = serde_json::from_str::<serde_json::Value>(&base(field, &at)).unwrap();
        // Unique ids so each at-the-bound event is accepted on its own.
        if *field != "call_id" && ok["type"] == "call.offered" {
            ok["call_id"] = format!("c{i}").into();
        }
        if *field != "promise_id" && ok["type"] == "callback.promised" {
            ok["promise_id"] = format!("p{i}").into();
        }
        if *field != "event_id" {
            ok["event_id"] = format!("e{i}").into();
        }
        let ack = send(&mut ws, &ok.to_string()).await;
        assert_eq!(ack["accepted"], 1, "{field} at {max}: {ack}");
    }
    // Quotes, backslashes and newlines in a label value are escaped (the
    // exposition stays one sample per line).
    let nasty = "q\"x\\y\nz";
    let ack = send(&mut ws, &base("queue", nasty)).await;
    assert_eq!(ack["accepted"], 1, "{ack}");
    let text = d.metrics_text().await;
    assert!(
        text.contains(r#"ringwatch_calls_offered_total{queue="q\"x\\y\nz"} 1"#),
        "{text}"
    );
    assert!(
        !text.contains('☎'),
        "caller and customer never reach the exposition"
    );
    assert!(
        !text.contains("q\"x\\y\nz"),
        "raw newline in the exposition"
    );
}

/// The cap is taken at accept: a connection over it is closed before any
/// TLS work, so its client never completes a handshake, while the one that
/// holds the place goes on and the place is free again once it leaves.
#[tokio::test]
async fn over_the_cap_a_tls_client_gets_no_handshake() {
    let dir = Dir::new("tls-cap");
    let certs = pki();
    let mut env = tls_env(&dir, &certs);
    env.push(("RINGWATCH__INGEST__MAX_CONNECTIONS", "1".to_string()));
    let d = start(&borrowed(&env));
    let tls = trusting(&certs.ca);

    let mut inside = connect_wss(d.ingest, Arc::clone(&tls)).await.expect("wss");
    // Its place is surely taken once it has an ack.
    assert_eq!(send(&mut inside, OFFER).await["accepted"], 1);

    for _ in 0..2 {
        let tcp = TcpStream::connect(d.ingest).await.unwrap();
        let handshake = tokio_rustls::TlsConnector::from(Arc::clone(&tls))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await;
        assert!(
            handshake.is_err(),
            "an over-cap client completed a TLS handshake"
        );
    }
    let m = tls_samples(&d, Arc::clone(&tls)).await;
    assert_eq!(m.value("ringwatch_ingest_connections_refused_total"), 2.0);
    // Refused before the handshake: no handshake was tried, so none failed.
    assert_eq!(
        m.value(r#"ringwatch_tls_handshake_failures_total{listener="ingest"}"#),
        0.0
    );
    assert_eq!(m.value("ringwatch_ingest_connections"), 1.0);
    assert_eq!(send(&mut inside, "[]").await["accepted"], 0);

    inside.close(None).await.unwrap();
    let mut freed = false;
    for _ in 0..250 {
        if tls_samples(&d, Arc::clone(&tls))
            .await
            .value("ringwatch_ingest_connections")
            == 0.0
        {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "the connection that left gave its place back");
    let mut next = connect_wss(d.ingest, tls)
        .await
        .expect("a place is free again");
    assert_eq!(send(&mut next, "[]").await["accepted"], 0);
}
