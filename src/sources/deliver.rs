//! Translated events into the pipeline: encoded as contract frames (under
//! the ingest frame limit), applied and journaled like a WebSocket frame,
//! and held and offered again while the journal refuses them, so an event
//! a source reports as delivered is as durable as an acknowledged frame.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::metrics::PlatformHandles;
use super::{wire, Common, Context};
use crate::event::{Event, Id};
use crate::ingest::client::Backoff;
use crate::ingest::frame;
use crate::ingest::metrics::{IngestMetrics, SourceHandles};
use crate::logging::RateLimited;
use crate::pipeline::{ApplyError, PipelineHandle, Stopped};
use crate::verdict::Rejection;

use std::sync::Arc;

/// What the pipeline made of a batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub accepted: u64,
    pub duplicates: u64,
    /// Rejections, `index` counted over the whole batch.
    pub rejected: Vec<Rejection>,
}

/// One source's way into the pipeline.
pub struct Deliverer {
    name: String,
    pipeline: PipelineHandle,
    ingest: Arc<IngestMetrics>,
    platform: PlatformHandles,
    connection: SourceHandles,
    max_frame_bytes: usize,
    retry_initial: Duration,
    retry_max: Duration,
    rejected_log: RateLimited,
}

impl Deliverer {
    pub fn new(common: &Common, ctx: &Context) -> Self {
        Deliverer {
            name: common.name.clone(),
            pipeline: ctx.pipeline.clone(),
            ingest: Arc::clone(&ctx.ingest),
            platform: ctx.platform.clone(),
            connection: ctx.connection.clone(),
            max_frame_bytes: common.max_frame_bytes,
            retry_initial: common.backoff_initial,
            retry_max: common.backoff_max,
            rejected_log: RateLimited::new(Duration::from_secs(10)),
        }
    }

    /// Apply `events` (in order) and return once the journal has them. A
    /// journal failure holds them and offers them again with backoff;
    /// `Err` only when the pipeline stopped, or `cancel` fired while
    /// waiting to offer them again (then whatever was not yet delivered is
    /// not).
    pub async fn deliver(
        &mut self,
        events: &[Event],
        cancel: &CancellationToken,
    ) -> Result<Delivered, Stopped> {
        let mut out = Delivered::default();
        for (text, range) in wire::frames(events, usize::MAX, self.max_frame_bytes) {
            let v = self.apply(Utf8Bytes::from(text), cancel).await?;
            out.accepted += u64::from(v.accepted);
            out.duplicates += u64::from(v.duplicates);
            out.rejected.extend(v.rejected.into_iter().map(|mut r| {
                r.index += range.start as u32;
                r
            }));
        }
        self.platform.translated.inc_by(events.len() as u64);
        if !events.is_empty() {
            self.connection.frames.inc();
            self.connection
                .last_event
                .set(crate::clock::wall_now() as f64 / 1000.0);
        }
        if let Some(first) = out.rejected.first() {
            if let Some(suppressed) = self.rejected_log.check() {
                tracing::warn!(
                    source = self.name.as_str(),
                    rejected = out.rejected.len(),
                    suppressed,
                    reason = first.reason.as_str(),
                    example = first.detail.as_str(),
                    "the rules engine rejected translated events (counted in ringwatch_events_rejected_total)"
                );
            }
        }
        Ok(out)
    }

    /// Forget calls the platform no longer reports (a reconnect's
    /// reconciliation): journaled like a frame, no outcome recorded; returns
    /// how many ringwatch still held.
    pub async fn forget(
        &mut self,
        calls: &[Id],
        cancel: &CancellationToken,
    ) -> Result<u64, Stopped> {
        if calls.is_empty() {
            return Ok(0);
        }
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            // Not raced against `cancel`: see `apply`.
            match self.pipeline.forget(calls.to_vec()).await {
                Ok(n) => return Ok(n),
                Err(ApplyError::Stopped(s)) => return Err(s),
                Err(ApplyError::Journal(_)) => self.wait(&mut backoff, cancel).await?,
            }
        }
    }

    async fn apply(
        &mut self,
        text: Utf8Bytes,
        cancel: &CancellationToken,
    ) -> Result<crate::verdict::Verdicts, Stopped> {
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max);
        loop {
            // Not raced against `cancel`: at shutdown the pipeline still
            // answers what it was given (sources stop before it does), so
            // a batch in flight ends delivered and the source can record
            // it (a queue_log position, a translator's state) instead of
            // reading it again at the next start.
            match frame::apply(&text, &self.pipeline, &self.ingest).await {
                Ok(v) => return Ok(v),
                Err(ApplyError::Stopped(s)) => return Err(s),
                Err(ApplyError::Journal(_)) => self.wait(&mut backoff, cancel).await?,
            }
        }
    }

    /// The journal refused a batch (nothing of it was applied): wait, then
    /// offer it again. Reading from the platform waits too, which is the
    /// backpressure a full disk needs.
    async fn wait(
        &mut self,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> Result<(), Stopped> {
        self.platform.delivery_retries.inc();
        let delay = backoff.next_delay();
        tracing::debug!(
            source = self.name.as_str(),
            ?delay,
            "journal refused a batch; offering it again"
        );
        tokio::select! {
            _ = cancel.cancelled() => Err(Stopped),
            _ = tokio::time::sleep(delay) => Ok(()),
        }
    }
}
