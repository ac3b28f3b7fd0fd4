//! The frames one connection has handed to the pipeline and not yet
//! answered, oldest first. A connection keeps reading and submitting while
//! earlier frames wait for the journal; this answers them in order, writing
//! every ack that is ready before one flush, so under load one write carries
//! many acks. The server endpoint and client-mode sources share it.

use std::collections::VecDeque;

use futures_util::{FutureExt, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::ack;
use super::ending::Ending;
use super::frame::InFlight;
use super::metrics::{CloseReason, IngestMetrics};
use crate::pipeline::ApplyError;
use crate::verdict::Verdicts;

/// Frames one connection may have in the pipeline at once. Past this the
/// connection stops reading until the oldest is answered, which is the
/// backpressure a sender sees as a full socket.
pub const FRAMES_IN_FLIGHT: usize = 64;

#[derive(Default)]
pub struct Window {
    frames: VecDeque<InFlight>,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// No more may be submitted until the oldest is answered.
    pub fn is_full(&self) -> bool {
        self.frames.len() >= FRAMES_IN_FLIGHT
    }

    pub fn push(&mut self, frame: InFlight) {
        self.frames.push_back(frame);
    }

    /// The verdicts of the oldest frame, taken out of the window; never
    /// resolves while the window is empty. Cancel-safe: dropped before it
    /// resolves, it leaves the window as it was.
    pub async fn oldest(&mut self) -> Result<Verdicts, ApplyError> {
        let Some(front) = self.frames.front_mut() else {
            return std::future::pending().await;
        };
        let answer = front.await;
        self.frames.pop_front();
        answer
    }

    /// Answer `first` (the oldest frame's verdicts) and every later frame
    /// whose verdicts are already in: with `acks`, write their acks and
    /// flush once. A frame the pipeline refused ends the connection
    /// unacknowledged (the sender resends it and everything after it, which
    /// event_ids make safe).
    pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        first: Result<Verdicts, ApplyError>,
        ws: &mut WebSocketStream<S>,
        acks: bool,
        metrics: &IngestMetrics,
    ) -> Result<(), CloseReason> {
        let mut next = Some(first);
        while let Some(answer) = next.take() {
            let verdicts = match answer {
                Ok(v) => v,
                Err(e) => return Err(Ending::unacknowledged(&e).finish(ws, metrics).await),
            };
            if acks && ws.feed(Message::text(ack::of(&verdicts))).await.is_err() {
                return Err(CloseReason::IoError);
            }
            if let Some(ready) = self.frames.front_mut().and_then(|f| f.now_or_never()) {
                self.frames.pop_front();
                next = Some(ready);
            }
        }
        if acks && ws.flush().await.is_err() {
            return Err(CloseReason::IoError);
        }
        Ok(())
    }

    /// Answer every frame in flight (before the connection closes).
    pub async fn drain<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        acks: bool,
        metrics: &IngestMetrics,
    ) -> Result<(), CloseReason> {
        while !self.is_empty() {
            let answer = self.oldest().await;
            self.answer(answer, ws, acks, metrics).await?;
        }
        Ok(())
    }
}
