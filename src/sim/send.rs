//! Pushing simulated events over the real WebSocket ingest, in batches,
//! optionally paced to the events' own timestamps.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::WireEvent;
use crate::event::Millis;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tokio_tungstenite::tungstenite::Error,
    },
    #[error("connection lost: {0}")]
    Lost(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("unexpected acknowledgement {0:?}")]
    BadAck(String),
    #[error("the token cannot be sent in an HTTP header (control characters?)")]
    Token,
}

/// What the acknowledgements said, summed over the run.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub frames: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// The first few rejections, verbatim, for the report.
    pub rejections: Vec<String>,
    pub rejected: u64,
}

/// How events are released.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// As fast as acknowledgements come back (for `clock = "event"`).
    Unpaced,
    /// Each event when the wall clock reaches its `ts` (for `clock = "wall"`).
    RealTime,
}

/// Send `events` in frames of at most `batch`, with `token` as the bearer
/// token when ingest requires one; `progress` is called after every
/// acknowledgement.
pub async fn send(
    url: &str,
    token: Option<&str>,
    events: &[WireEvent],
    batch: usize,
    pace: Pace,
    mut progress: impl FnMut(&Sent),
) -> Result<Sent, SendError> {
    let connect_err = |source| SendError::Connect {
        url: url.to_string(),
        source,
    };
    let mut request = url.into_client_request().map_err(connect_err)?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| SendError::Token)?;
        request.headers_mut().insert("authorization", value);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(connect_err)?;
    let mut sent = Sent::default();
    let mut i = 0;
    while i < events.len() {
        let mut end = (i + batch.max(1)).min(events.len());
        if let Pace::RealTime = pace {
            let wait = events[i].ts - crate::clock::wall_now();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            let now: Millis = crate::clock::wall_now();
            end = i + events[i..end]
                .iter()
                .take_while(|e| e.ts <= now)
                .count()
                .max(1);
        }
        let chunk = &events[i..end];
        let frame = if chunk.len() == 1 {
            chunk[0].json.clone()
        } else {
            let body: Vec<&str> = chunk.iter().map(|e| e.json.as_str()).collect();
            format!("[{}]", body.join(","))
        };
        ws.send(Message::text(frame)).await?;
        let ack = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break t,
                Some(Ok(Message::Close(_))) | None => return Err(SendError::Closed),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        };
        let v: serde_json::Value =
            serde_json::from_str(ack.as_str()).map_err(|_| SendError::BadAck(ack.to_string()))?;
        let num = |k: &str| {
            v[k].as_u64()
                .ok_or_else(|| SendError::BadAck(ack.to_string()))
        };
        sent.frames += 1;
        sent.accepted += num("accepted")?;
        sent.duplicates += num("duplicates")?;
        for r in v["rejected"].as_array().into_iter().flatten() {
            sent.rejected += 1;
            if sent.rejections.len() < 10 {
                sent.rejections.push(r.to_string());
            }
        }
        progress(&sent);
        i = end;
    }
    let _ = ws.close(None).await;
    Ok(sent)
}
