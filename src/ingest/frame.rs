//! One text frame, whatever transport brought it: decode, hand to the
//! pipeline, and build the acknowledgement. The server endpoint and every
//! client-mode source go through here, so they count and answer alike.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::Histogram;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::decode;
use super::metrics::IngestMetrics;
use crate::clock::wall_now;
use crate::pipeline::{ApplyError, PipelineHandle, Reply, Stopped};
use crate::verdict::{Rejection, Verdicts};

/// Decode and apply one text frame: the verdicts of every element (decoding
/// and engine rejections together, in index order), once the pipeline has
/// applied and journaled it. Platform sources call this with the frames they
/// build from translated events, so their events are counted, journaled and
/// replayed exactly as a WebSocket frame's.
pub async fn apply(
    text: &Utf8Bytes,
    pipeline: &PipelineHandle,
    metrics: &IngestMetrics,
) -> Result<Verdicts, ApplyError> {
    submit(text.clone(), pipeline, metrics).await?.await
}

/// Decode a frame and queue it on the pipeline; the returned future gives
/// its verdicts. A connection keeps reading and submitting while earlier
/// frames wait for the journal; their verdicts come back in the order the
/// frames were submitted.
pub async fn submit(
    text: Utf8Bytes,
    pipeline: &PipelineHandle,
    metrics: &IngestMetrics,
) -> Result<InFlight, Stopped> {
    let started = Instant::now();
    metrics.frames.inc();
    metrics.frame_bytes.inc_by(text.len() as u64);
    let now = wall_now();
    let decoded = decode::decode_split(text.as_str());
    // Observed locally and added to the shared histogram once per frame:
    // an observation of the shared one is a few atomic operations.
    let lag = metrics.event_lag.local();
    for (_, ev) in &decoded.events {
        lag.observe((now - ev.ts).max(0) as f64 / 1000.0);
    }
    lag.flush();
    let elements = decoded.events.len() + decoded.rejected.len();
    let decode_rejects = decoded.rejected.iter().map(|(_, e)| e.reason).collect();
    let rejected = rejections(decoded.rejected);
    // The text is done with here, on the connection's thread: the
    // pipeline journals the decoded events, not the text.
    drop(text);
    let reply = pipeline.submit(decoded.events, decode_rejects).await?;
    Ok(InFlight {
        reply,
        elements,
        rejected,
        started,
        duration: metrics.frame_duration.clone(),
    })
}

/// A frame the pipeline has, until its verdicts come back.
pub struct InFlight {
    reply: Reply,
    elements: usize,
    /// The elements that failed decoding, merged into the verdicts.
    rejected: Vec<Rejection>,
    started: Instant,
    duration: Histogram,
}

impl InFlight {
    /// The frame's elements, valid or not: each has exactly one outcome in
    /// the ack (wire contract), so this is what the ack will answer for,
    /// known before it comes (the rate limit charges it).
    pub fn elements(&self) -> usize {
        self.elements
    }
}

impl Future for InFlight {
    type Output = Result<Verdicts, ApplyError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let mut verdicts = match Pin::new(&mut this.reply).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r?,
        };
        if !this.rejected.is_empty() {
            let mut rejected = std::mem::take(&mut this.rejected);
            rejected.append(&mut verdicts.rejected);
            rejected.sort_by_key(|r| r.index);
            verdicts.rejected = rejected;
        }
        this.duration.observe(this.started.elapsed().as_secs_f64());
        Poll::Ready(Ok(verdicts))
    }
}

/// Decode a journaled frame text (what versions before the binary record
/// wrote) for [`crate::pipeline::replay`]: the same decoding as live, so a
/// replay applies what live applied.
pub fn decode_for_replay(text: &str) -> crate::pipeline::Decoded {
    let decoded = decode::decode_split(text);
    let reasons = decoded.rejected.iter().map(|(_, e)| e.reason).collect();
    (decoded.events, reasons)
}

fn rejections(failed: Vec<(u32, decode::DecodeError)>) -> Vec<Rejection> {
    failed
        .into_iter()
        .map(|(index, e)| Rejection {
            index,
            event_id: e.event_id,
            reason: e.reason,
            detail: e.detail,
        })
        .collect()
}
