//! One text frame, whatever transport brought it: decode, hand to the
//! pipeline, and build the acknowledgement. The server endpoint and every
//! client-mode source go through here, so they count and answer alike.

use std::time::Instant;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::metrics::IngestMetrics;
use super::{ack, decode};
use crate::clock::wall_now;
use crate::event::Event;
use crate::pipeline::{ApplyError, PipelineHandle};
use crate::verdict::{Rejection, Verdicts};

/// Decode, apply and acknowledge one text frame; returns the ack text. The
/// ack is only returned once the pipeline has applied (and journaled) the
/// frame, so a sender that has it may forget the frame.
pub async fn process(
    text: &Utf8Bytes,
    pipeline: &PipelineHandle,
    metrics: &IngestMetrics,
) -> Result<String, ApplyError> {
    let v = apply(text, pipeline, metrics).await?;
    Ok(ack::encode(v.accepted, v.duplicates, &v.rejected))
}

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
    let started = Instant::now();
    metrics.frames.inc();
    metrics.frame_bytes.inc_by(text.len() as u64);
    let now = wall_now();
    let (events, mut rejected) = split(decode::decode_frame(text.as_str()));
    for (_, ev) in &events {
        metrics
            .event_lag
            .observe((now - ev.ts).max(0) as f64 / 1000.0);
    }
    let decode_rejects = rejected.iter().map(|r| r.reason).collect();
    let mut verdicts = pipeline.apply(text.clone(), events, decode_rejects).await?;
    if !verdicts.rejected.is_empty() {
        rejected.extend(std::mem::take(&mut verdicts.rejected));
        rejected.sort_by_key(|r| r.index);
    }
    verdicts.rejected = rejected;
    metrics
        .frame_duration
        .observe(started.elapsed().as_secs_f64());
    Ok(verdicts)
}

/// Decode a journaled frame for [`crate::pipeline::replay`]: the same
/// decoding as live, so a replay applies what live applied.
pub fn decode_for_replay(text: &str) -> crate::pipeline::Decoded {
    let (events, rejected) = split(decode::decode_frame(text));
    (events, rejected.iter().map(|r| r.reason).collect())
}

/// A decoded frame split into the events to apply (with their index in the
/// frame) and the elements that failed decoding.
pub fn split(decoded: decode::Decoded) -> (Vec<(u32, Event)>, Vec<Rejection>) {
    let mut events = Vec::new();
    let mut rejected = Vec::new();
    for (index, d) in (0u32..).zip(decoded) {
        match d {
            Ok(ev) => events.push((index, ev)),
            Err(e) => rejected.push(Rejection {
                index,
                event_id: e.event_id,
                reason: e.reason,
                detail: e.detail,
            }),
        }
    }
    (events, rejected)
}
