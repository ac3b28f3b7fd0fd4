//! The sender of `ringwatch import`: events cut into frames (at most
//! `--batch` events, under the frame limit), a window of frames in flight
//! over the WebSocket ingest, and on a lost connection a reconnect with
//! backoff that resends every frame not yet acknowledged, in order (safe:
//! every event has a deterministic `event_id`, and the daemon counts a
//! resend of an applied event as a duplicate).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::convert::Origin;
use crate::event::Event;
use crate::ingest::client::Backoff;
use crate::sources::wire;

/// One frame to send, with where each of its events came from.
#[derive(Clone, Debug)]
pub struct Frame {
    pub text: String,
    pub origins: Vec<Origin>,
}

/// Cut `events` into frames of at most `batch` events and `max_bytes`
/// bytes (one event alone may be bigger: the daemon then refuses it).
pub fn frames(events: &[Event], origins: &[Origin], batch: usize, max_bytes: usize) -> Vec<Frame> {
    wire::frames(events, batch, max_bytes)
        .into_iter()
        .map(|(text, range)| Frame {
            text,
            origins: range
                .map(|i| origins.get(i).copied().unwrap_or_default())
                .collect(),
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Frames in flight before waiting for an acknowledgement.
    pub window: usize,
    /// Connection attempts in a row without an acknowledgement before
    /// giving up.
    pub retries: u32,
}

/// What the acknowledgements said.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub frames: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Rejections per reason.
    pub rejected: BTreeMap<String, u64>,
    /// The first few rejections: where the event came from, and the ack's entry.
    pub examples: Vec<(Origin, String)>,
    /// Connections lost and made again.
    pub reconnects: u64,
    /// File names, to print origins.
    pub files: Vec<String>,
}

impl Summary {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn acknowledged(&self) -> u64 {
        self.accepted + self.duplicates + self.rejected_total()
    }

    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "imported {} events in {} frames: {} accepted, {} duplicates, {} rejected",
            self.acknowledged(),
            self.frames,
            self.accepted,
            self.duplicates,
            self.rejected_total()
        );
        if self.reconnects > 0 {
            let _ = writeln!(
                s,
                "the connection was lost {} times; every unacknowledged frame was sent again",
                self.reconnects
            );
        }
        for (reason, n) in &self.rejected {
            let _ = writeln!(s, "  rejected {reason}: {n}");
        }
        for (at, entry) in &self.examples {
            // A translated event's line is not known: its event_id names it.
            match self.files.get(at.file) {
                Some(name) if at.line > 0 => {
                    let _ = writeln!(s, "  {name}:{}: {entry}", at.line);
                }
                _ => {
                    let _ = writeln!(s, "  {entry}");
                }
            }
        }
        s
    }

    /// Count one acknowledgement of `frame`.
    fn ack(&mut self, frame: &Frame, ack: &str) -> Result<(), ImportError> {
        let bad = || ImportError::BadAck(ack.chars().take(200).collect());
        let v: serde_json::Value = serde_json::from_str(ack).map_err(|_| bad())?;
        let num = |k: &str| v[k].as_u64().ok_or_else(bad);
        self.frames += 1;
        self.accepted += num("accepted")?;
        self.duplicates += num("duplicates")?;
        for r in v["rejected"].as_array().into_iter().flatten() {
            let reason = r["reason"].as_str().unwrap_or("unknown").to_string();
            *self.rejected.entry(reason).or_default() += 1;
            if self.examples.len() < 10 {
                let at = r["index"]
                    .as_u64()
                    .and_then(|i| frame.origins.get(i as usize))
                    .copied()
                    .unwrap_or_default();
                self.examples.push((at, r.to_string()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{url} refused the connection: {why}")]
    Refused { url: String, why: String },
    #[error("gave up after {attempts} attempts without progress ({acknowledged} of {total} frames acknowledged); last error: {last}")]
    GaveUp {
        attempts: u32,
        acknowledged: usize,
        total: usize,
        last: String,
    },
    #[error("unexpected acknowledgement {0:?}")]
    BadAck(String),
    #[error("--url {0}: {1}")]
    Url(String, String),
    #[error("the token cannot be sent in an HTTP header (control characters?)")]
    Token,
}

/// A connection that answers nothing for this long is taken as lost (the
/// daemon acknowledges a frame once it is journaled: seconds at worst).
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Why one connection ended before every frame was acknowledged.
enum Lost {
    /// Worth a reconnect (a reset, a close, a timeout).
    Retry(String),
    /// Not worth one (bad credentials, a bad acknowledgement).
    Fatal(ImportError),
}

/// Send every frame and return the summed acknowledgements; `progress`
/// after each one.
pub async fn send(
    url: &str,
    token: Option<&str>,
    frames: &[Frame],
    options: &Options,
    mut progress: impl FnMut(&Summary),
) -> Result<Summary, ImportError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ImportError::Url(url.to_string(), e.to_string()))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ImportError::Token)?;
        request.headers_mut().insert("authorization", value);
    }
    let mut summary = Summary::default();
    // Frames before `acked` are done with; the rest are resent after a loss.
    let mut acked = 0usize;
    let mut failures = 0u32;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut first = true;
    while acked < frames.len() {
        if !first {
            let delay = backoff.next_delay();
            tokio::time::sleep(delay).await;
        }
        first = false;
        let before = acked;
        let outcome = connection(
            request.clone(),
            url,
            frames,
            &mut acked,
            options.window.max(1),
            &mut summary,
            &mut progress,
        )
        .await;
        match outcome {
            Ok(()) => {}
            Err(Lost::Fatal(e)) => return Err(e),
            Err(Lost::Retry(why)) => {
                if acked > before {
                    failures = 0;
                    backoff.reset();
                }
                failures += 1;
                if failures > options.retries {
                    return Err(ImportError::GaveUp {
                        attempts: failures,
                        acknowledged: acked,
                        total: frames.len(),
                        last: why,
                    });
                }
                if acked < frames.len() {
                    summary.reconnects += 1;
                }
            }
        }
    }
    Ok(summary)
}

/// One connection: send from `acked` on with `window` frames in flight,
/// advancing `acked` with every acknowledgement.
async fn connection(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    url: &str,
    frames: &[Frame],
    acked: &mut usize,
    window: usize,
    summary: &mut Summary,
    progress: &mut impl FnMut(&Summary),
) -> Result<(), Lost> {
    let (mut ws, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(ok) => ok,
        Err(WsError::Http(resp)) if resp.status().is_client_error() => {
            return Err(Lost::Fatal(ImportError::Refused {
                url: url.to_string(),
                why: format!("HTTP {}", resp.status()),
            }))
        }
        Err(e) => return Err(Lost::Retry(format!("connecting: {e}"))),
    };
    let mut in_flight: VecDeque<usize> = VecDeque::new();
    let mut next = *acked;
    while *acked < frames.len() {
        while next < frames.len() && in_flight.len() < window {
            let Some(frame) = frames.get(next) else { break };
            if let Err(e) = ws.feed(Message::text(frame.text.clone())).await {
                return Err(Lost::Retry(format!("sending: {e}")));
            }
            in_flight.push_back(next);
            next += 1;
        }
        if let Err(e) = ws.flush().await {
            return Err(Lost::Retry(format!("sending: {e}")));
        }
        let text = loop {
            let Ok(next) = tokio::time::timeout(ACK_TIMEOUT, ws.next()).await else {
                return Err(Lost::Retry(format!(
                    "no acknowledgement for {} s",
                    ACK_TIMEOUT.as_secs()
                )));
            };
            match next {
                Some(Ok(Message::Text(t))) => break t,
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or("no code".to_string(), |f| {
                        format!("code {}: {}", u16::from(f.code), f.reason)
                    });
                    return Err(Lost::Retry(format!(
                        "the server closed the connection ({why})"
                    )));
                }
                None => return Err(Lost::Retry("the connection ended".into())),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Lost::Retry(format!("reading: {e}"))),
            }
        };
        let Some(index) = in_flight.pop_front() else {
            return Err(Lost::Fatal(ImportError::BadAck(text.to_string())));
        };
        let Some(frame) = frames.get(index) else {
            return Err(Lost::Fatal(ImportError::BadAck(text.to_string())));
        };
        summary.ack(frame, text.as_str()).map_err(Lost::Fatal)?;
        *acked = index + 1;
        progress(summary);
    }
    let _ = ws.close(None).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Body;

    fn clock(ts: i64) -> Event {
        Event {
            ts,
            event_id: Some(format!("e{ts}").into()),
            site: None,
            agent: None,
            body: Body::Clock,
        }
    }

    #[test]
    fn frames_hold_at_most_batch_events_and_max_bytes() {
        let events: Vec<Event> = (0..10).map(clock).collect();
        let origins: Vec<Origin> = (0..10)
            .map(|i| Origin {
                file: 0,
                line: i + 1,
            })
            .collect();
        let f = frames(&events, &origins, 4, 1 << 20);
        assert_eq!(
            f.iter().map(|f| f.origins.len()).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert_eq!(f[2].origins[1].line, 10);
        let all: Vec<Event> = f
            .iter()
            .flat_map(|f| crate::ingest::decode::decode_frame(&f.text))
            .map(|d| d.unwrap())
            .collect();
        assert_eq!(all, events);
        let one = wire::to_json(&events[0]).len();
        let f = frames(&events, &origins, 100, 2 * one + 3);
        assert!(f.iter().all(|f| f.text.len() <= 2 * one + 3));
        assert_eq!(f.len(), 5);
        // an event bigger than the limit still goes, alone
        assert_eq!(frames(&events, &origins, 100, 1).len(), 10);
        assert!(frames(&[], &[], 5, 100).is_empty());
    }

    #[test]
    fn acks_are_summed_and_rejections_located() {
        let frame = Frame {
            text: String::new(),
            origins: vec![Origin { file: 0, line: 7 }, Origin { file: 0, line: 9 }],
        };
        let mut s = Summary {
            files: vec!["f.jsonl".into()],
            ..Summary::default()
        };
        s.ack(
            &frame,
            r#"{"accepted":1,"duplicates":0,"rejected":[{"index":1,"reason":"unknown_call","detail":"x"}]}"#,
        )
        .unwrap();
        assert_eq!(
            (s.accepted, s.rejected_total(), s.acknowledged()),
            (1, 1, 2)
        );
        let r = s.report();
        assert!(r.contains("1 accepted, 0 duplicates, 1 rejected"), "{r}");
        assert!(r.contains("  rejected unknown_call: 1"), "{r}");
        assert!(r.contains("  f.jsonl:9: {"), "{r}");
        assert!(s.ack(&frame, "nope").is_err());
    }
}
