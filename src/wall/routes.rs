//! The wall's HTTP side: the landing page `/`, the page `/wall` and its
//! files, the sign-in of a wall screen (`POST /wall/session`), and the
//! figures as JSON (`/api/v1/queues`) and as a stream (`/api/v1/stream`).
//!
//! With `http.metrics_tokens_file` set, `/wall` and `/api/v1/*` take the
//! `/metrics` tokens: as `Authorization: Bearer` (tools), or as the
//! HttpOnly, SameSite=Strict cookie `/wall/session` sets for a valid bearer
//! token (a browser's EventSource cannot send a header). The cookie holds a
//! session id, never the token (browsers send a host's cookies to every
//! port of it): a random nonce and a MAC of it keyed by the token's digest
//! (`session`), so it holds only while that token does (checked on every request, and each second
//! by an open stream), so a token revoked by a reload stops its wall
//! screens within a second. Under TLS the cookie is `__Host-` prefixed and
//! `Secure`.
//! The page's files hold no figures and are open, as are `/` (without the
//! sources' states unless the request is authorized) and the probes.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::stream::{self, Stream};

use super::assets;
use super::feed::{Feed, Source, Subscription, PERIOD};
use super::session;
use super::WallSettings;
use crate::auth::metrics::EdgeMetrics;
use crate::auth::{Auth, Failure, Listener, Source as AuthSource};
use crate::health::Health;
use crate::pipeline::PipelineHandle;

/// The session cookie of a wall screen (plain HTTP).
pub const COOKIE: &str = "ringwatch_wall";
/// The session cookie under TLS: the prefix makes browsers keep it only if
/// `Secure`, host-only and for `Path=/`.
pub const COOKIE_TLS: &str = "__Host-ringwatch_wall";
/// How long a browser keeps the cookie (a wall screen runs for months).
const COOKIE_MAX_AGE: u64 = 400 * 86_400;

#[derive(Clone)]
pub struct WallState {
    source: Arc<Source>,
    feed: Arc<Feed>,
    auth: Auth,
    edge: Arc<EdgeMetrics>,
    registry: prometheus::Registry,
}

impl WallState {
    pub fn new(
        pipeline: PipelineHandle,
        health: Arc<Health>,
        settings: WallSettings,
        auth: Auth,
        edge: Arc<EdgeMetrics>,
        registry: prometheus::Registry,
    ) -> Self {
        let source = Arc::new(Source::new(pipeline, health, settings));
        let feed = Arc::new(Feed::start(Arc::downgrade(&source)));
        WallState {
            source,
            feed,
            auth,
            edge,
            registry,
        }
    }
}

pub fn router(state: WallState) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/wall", get(wall))
        .route("/wall/session", post(session))
        .route(
            "/wall/wall.css",
            get(|| asset("text/css", assets::WALL_CSS)),
        )
        .route("/wall/wall.js", get(|| asset(JS, assets::WALL_JS)))
        .route("/wall/signin.js", get(|| asset(JS, assets::SIGNIN_JS)))
        .route("/api/v1/queues", get(queues))
        .route("/api/v1/stream", get(stream))
        .with_state(state)
}

const JS: &str = "text/javascript; charset=utf-8";

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The value of the request's cookie `name`, if any.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .find_map(|pair| {
            pair.strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
        })
        .filter(|t| !t.is_empty())
}

/// Whether the request may read the figures: always when `/metrics` is
/// open; else a bearer header (checked as `/metrics` checks it) or the
/// session cookie. `Ok(Some(source))`: the token source it was let in as.
fn authorize(s: &WallState, headers: &HeaderMap) -> Result<Option<Arc<AuthSource>>, Failure> {
    if s.auth.is_open() {
        return Ok(None);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return s.auth.check(headers);
    }
    let id = cookie_value(headers, s.cookie_name()).ok_or(Failure::Missing)?;
    let tokens = s.auth.subscribe().ok_or(Failure::Invalid)?;
    let current = Arc::clone(&tokens.borrow());
    session::find(id, &current)
        .map(Some)
        .ok_or(Failure::Invalid)
}

fn cookie_name(tls: bool) -> &'static str {
    if tls {
        COOKIE_TLS
    } else {
        COOKIE
    }
}

/// The `Set-Cookie` value for session `id`.
fn session_cookie(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!(
        "{name}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE}{secure}",
        name = cookie_name(tls)
    )
}

/// Whether `source` (let in earlier) still holds under the current tokens.
fn admits(auth: &Auth, source: &AuthSource) -> bool {
    auth.subscribe()
        .is_some_and(|tokens| tokens.borrow().admits(source))
}

impl WallState {
    fn cookie_name(&self) -> &'static str {
        cookie_name(self.source.settings.secure_cookie)
    }

    fn refused(&self, f: Failure, what: &str) -> Response {
        tracing::debug!(reason = f.as_str(), "{what} refused: token");
        self.edge.auth_failure(Listener::Http, f);
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, f.challenge())],
            f.message(),
        )
            .into_response()
    }
}

/// `queues=a,b` of a query string: the names, in order, percent-decoded.
/// `None` when absent or empty (every queue).
pub fn selection(query: Option<&str>) -> Option<Vec<String>> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("queues="))?;
    let decoded = percent_decode(value);
    let names: Vec<String> = decoded
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    (!names.is_empty()).then_some(names)
}

/// `%XX` escapes decoded (a bad one is kept as is); `+` is a space, as
/// browsers encode a form.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn wall(State(s): State<WallState>, headers: HeaderMap) -> Response {
    match authorize(&s, &headers) {
        Ok(_) => (
            [(header::CACHE_CONTROL, "no-cache")],
            Html(assets::WALL_HTML),
        )
            .into_response(),
        Err(f) => {
            s.edge.auth_failure(Listener::Http, f);
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, f.challenge())],
                Html(assets::SIGNIN_HTML),
            )
                .into_response()
        }
    }
}

/// A valid bearer token in, the session cookie out.
async fn session(State(s): State<WallState>, headers: HeaderMap) -> Response {
    if s.auth.is_open() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let source = match authorize(&s, &headers) {
        Ok(Some(source)) if headers.contains_key(header::AUTHORIZATION) => source,
        Ok(_) => return s.refused(Failure::Missing, "/wall/session"),
        Err(f) => return s.refused(f, "/wall/session"),
    };
    let Some(id) = session::create(&source) else {
        tracing::error!("no random session id: the system's random source failed");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let cookie = session_cookie(&id, s.source.settings.secure_cookie);
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
}

async fn queues(State(s): State<WallState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(f) = authorize(&s, &headers) {
        return s.refused(f, "/api/v1/queues");
    }
    // Anyone reaching the port may loop this: it costs the pipeline no
    // more than the streams do (the producer's figures of the last second
    // while one is open), else one read shared by every request waiting.
    let figures = match s.feed.fresh(PERIOD) {
        Some(f) => f,
        None => match s.source.read().await {
            Some((_, f)) => f,
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ringwatch is shutting down\n",
                )
                    .into_response()
            }
        },
    };
    let doc = figures.document(selection(uri.query()).as_deref());
    json(&doc)
}

fn json(doc: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(doc) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn stream(State(s): State<WallState>, headers: HeaderMap, uri: Uri) -> Response {
    let credential = match authorize(&s, &headers) {
        Ok(c) => c,
        Err(f) => return s.refused(f, "/api/v1/stream"),
    };
    let Some(sub) = s.feed.subscribe() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            "no stream now: shutting down, or too many open\n",
        )
            .into_response();
    };
    let picked = selection(uri.query());
    let guard = credential.map(|source| (s.auth.clone(), source));
    Sse::new(messages(sub, picked, guard))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// One message per published figures, until the producer ends or the
/// token the stream was opened with is revoked (a reload of the file).
fn messages(
    sub: Subscription,
    picked: Option<Vec<String>>,
    guard: Option<(Auth, Arc<AuthSource>)>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(
        (sub, picked, guard),
        |(mut sub, picked, guard)| async move {
            sub.latest.changed().await.ok()?;
            if let Some((auth, source)) = &guard {
                if !admits(auth, source) {
                    return None;
                }
            }
            let published = sub.latest.borrow_and_update().clone();
            let data: Arc<str> = match published {
                Some(p) => p.message(&picked).await,
                None => Arc::from("{}"),
            };
            // The browser reconnects this long after the stream ends.
            let event = Event::default().data(data).retry(PERIOD);
            Some((Ok(event), (sub, picked, guard)))
        },
    )
}

/// One source's state from the `ringwatch_source_*` gauges.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceState {
    pub name: String,
    pub connected: bool,
    /// Unix seconds; 0 before the first event.
    pub last_event: f64,
}

/// Every source's state, from the gauges every kind of source keeps.
pub fn source_states(registry: &prometheus::Registry) -> Vec<SourceState> {
    let mut states: Vec<SourceState> = Vec::new();
    for family in registry.gather() {
        let connected = match family.name() {
            "ringwatch_source_connected" => true,
            "ringwatch_source_last_event_timestamp_seconds" => false,
            _ => continue,
        };
        for m in family.get_metric() {
            let Some(name) = m
                .get_label()
                .iter()
                .find(|l| l.name() == "source")
                .map(|l| l.value().to_string())
            else {
                continue;
            };
            let value = m.get_gauge().get_value();
            let i = match states.iter().position(|s| s.name == name) {
                Some(i) => i,
                None => {
                    states.push(SourceState {
                        name,
                        ..SourceState::default()
                    });
                    states.len() - 1
                }
            };
            if let Some(s) = states.get_mut(i) {
                if connected {
                    s.connected = value > 0.0;
                } else {
                    s.last_event = value;
                }
            }
        }
    }
    states.sort_by(|a, b| a.name.cmp(&b.name));
    states
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn utc(secs: f64) -> String {
    if secs <= 0.0 {
        return "none yet".into();
    }
    jiff::Timestamp::from_millisecond((secs * 1000.0) as i64)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "-".into())
}

/// The landing page, as exporters have one: what this is, where to go.
pub fn landing_html(sources: Option<&[SourceState]>, ready: &str) -> String {
    let mut rows = String::new();
    match sources {
        None => rows.push_str(
            "<p>Sign in to see the sources: <a href=\"/wall\">/wall</a> (the <code>/metrics</code> tokens).</p>",
        ),
        Some([]) => rows.push_str("<p>No client-mode or PBX source is configured: events come to the ingest endpoint.</p>"),
        Some(list) => {
            rows.push_str("<table><tr><th>source</th><th>state</th><th>last event</th></tr>");
            for s in list {
                rows.push_str(&format!(
                    "<tr data-source=\"{n}\"><td>{n}</td><td>{state}</td><td>{last}</td></tr>",
                    n = escape(&s.name),
                    state = if s.connected { "&#x2714; connected" } else { "&#x2716; not connected" },
                    last = utc(s.last_event),
                ));
            }
            rows.push_str("</table>");
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>ringwatch</title><link rel=\"stylesheet\" href=\"/wall/wall.css\"></head>\
<body class=\"landing\"><h1>ringwatch {version}</h1>\
<p>Call-center service-level monitor: three rings, 17 seconds on hold, callbacks when promised.</p>\
<ul><li><a href=\"/wall\">/wall</a>: the wallboard</li>\
<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>\
<li><a href=\"/api/v1/queues\">/api/v1/queues</a>: the wall's figures as JSON</li>\
<li><a href=\"/healthz\">/healthz</a>: alive</li>\
<li><a href=\"/readyz\">/readyz</a>: ready ({ready})</li></ul>\
<h2>Sources</h2>{rows}</body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        ready = escape(ready),
    )
}

async fn landing(State(s): State<WallState>, headers: HeaderMap) -> Response {
    // Gathering runs every collector, the process one reading /proc: only
    // for a request allowed to see the states, and off the async workers.
    let states = if authorize(&s, &headers).is_ok() {
        let registry = s.registry.clone();
        tokio::task::spawn_blocking(move || source_states(&registry))
            .await
            .ok()
    } else {
        None
    };
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Html(landing_html(states.as_deref(), s.source.health.reason())),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_ordered_decoded_and_optional() {
        assert_eq!(selection(None), None);
        assert_eq!(selection(Some("theme=dark")), None);
        assert_eq!(selection(Some("queues=")), None);
        assert_eq!(
            selection(Some("theme=dark&queues=sales,billing%20eu,,x%2")),
            Some(vec!["sales".into(), "billing eu".into(), "x%2".into()])
        );
        assert_eq!(
            selection(Some("queues=a%2Cb")),
            Some(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(cookie_value(&h, COOKIE), None);
        h.append(
            header::COOKIE,
            "a=1; ringwatch_wall=tok+/=; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some(&b"tok+/="[..]));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "ringwatch_wallx=1; ringwatch_wall=".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), None);
    }

    /// Under TLS the cookie is `__Host-` prefixed (host-only, `Path=/`, no
    /// `Domain`) and `Secure`, and found under that name only.
    #[test]
    fn the_session_cookie_is_host_only_under_tls() {
        assert_eq!(
            session_cookie("ab12", true),
            "__Host-ringwatch_wall=ab12; Path=/; HttpOnly; SameSite=Strict; Max-Age=34560000; Secure"
        );
        assert_eq!(
            session_cookie("ab12", false),
            "ringwatch_wall=ab12; Path=/; HttpOnly; SameSite=Strict; Max-Age=34560000"
        );
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "ringwatch_wall=plain; __Host-ringwatch_wall=tls"
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_value(&h, cookie_name(true)), Some(&b"tls"[..]));
        assert_eq!(cookie_value(&h, cookie_name(false)), Some(&b"plain"[..]));
    }

    #[test]
    fn landing_escapes_source_names() {
        let html = landing_html(
            Some(&[SourceState {
                name: "<pbx>".into(),
                connected: true,
                last_event: 0.0,
            }]),
            "ready",
        );
        assert!(html.contains("&lt;pbx&gt;") && !html.contains("<pbx>"));
        assert!(html.contains("connected") && html.contains("none yet"));
    }
}
