//! How an ingest connection ends when it cannot go on: the close code and
//! reason the peer is sent, the protocol error counted, and the
//! [`CloseReason`] of the close counters. Decided once here, so the server
//! endpoint and client-mode sources end alike.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::ProtocolError as WsProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::WebSocketStream;

use super::metrics::{CloseReason, IngestMetrics, ProtocolError};
use crate::pipeline::ApplyError;

/// How long a closing connection waits for the peer's close frame.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// What ending a connection involves.
#[derive(Debug, PartialEq, Eq)]
pub struct Ending {
    /// The `reason` label of the close counters.
    pub reason: CloseReason,
    /// The close frame sent, if the connection is still there to send it.
    pub close: Option<(CloseCode, Cow<'static, str>)>,
    /// Read on until the peer answers the close; false when unread input
    /// is left over (the rest of an oversize frame).
    pub wait: bool,
    pub protocol_error: Option<ProtocolError>,
}

impl Ending {
    fn closed(
        reason: CloseReason,
        code: CloseCode,
        why: impl Into<Cow<'static, str>>,
        protocol_error: Option<ProtocolError>,
    ) -> Ending {
        Ending {
            reason,
            close: Some((code, why.into())),
            wait: true,
            protocol_error,
        }
    }

    fn quiet(reason: CloseReason) -> Ending {
        Ending {
            reason,
            close: None,
            wait: false,
            protocol_error: None,
        }
    }

    /// A binary frame: events are JSON text.
    pub fn binary() -> Ending {
        Ending::closed(
            CloseReason::ProtocolError,
            CloseCode::Unsupported,
            "binary frames are not accepted: send JSON in text frames",
            Some(ProtocolError::Binary),
        )
    }

    /// A frame the pipeline did not acknowledge.
    pub fn unacknowledged(e: &ApplyError) -> Ending {
        match e {
            ApplyError::Stopped(_) => Ending::closed(
                CloseReason::Shutdown,
                CloseCode::Away,
                "ringwatch is shutting down",
                None,
            ),
            // The sender resends it after reconnecting.
            ApplyError::Journal(_) => Ending::closed(
                CloseReason::JournalError,
                CloseCode::Error,
                "the journal could not be written: frame not acknowledged, resend it",
                None,
            ),
        }
    }

    /// An error reading from the WebSocket.
    pub fn read_error(e: &WsError, max_frame_bytes: usize) -> Ending {
        match e {
            WsError::Capacity(_) => Ending {
                wait: false,
                ..Ending::closed(
                    CloseReason::ProtocolError,
                    CloseCode::Size,
                    format!("frame larger than the {max_frame_bytes} byte limit"),
                    Some(ProtocolError::Oversize),
                )
            },
            WsError::Utf8(_) => Ending::closed(
                CloseReason::ProtocolError,
                CloseCode::Invalid,
                "text frame is not valid UTF-8",
                Some(ProtocolError::InvalidUtf8),
            ),
            WsError::Protocol(WsProtocolError::ResetWithoutClosingHandshake)
            | WsError::ConnectionClosed
            | WsError::AlreadyClosed => Ending::quiet(CloseReason::Peer),
            WsError::Protocol(p) => {
                tracing::debug!(error = %p, "WebSocket protocol error");
                Ending::closed(
                    CloseReason::ProtocolError,
                    CloseCode::Protocol,
                    "WebSocket protocol error",
                    Some(ProtocolError::Protocol),
                )
            }
            _ => Ending::quiet(CloseReason::IoError),
        }
    }

    /// Count it, send the close frame, and give the close `reason`.
    pub async fn finish<S>(
        self,
        ws: &mut WebSocketStream<S>,
        metrics: &IngestMetrics,
    ) -> CloseReason
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(kind) = self.protocol_error {
            metrics.protocol_error(kind);
        }
        if let Some((code, why)) = self.close {
            close(ws, code, &why, self.wait).await;
        }
        self.reason
    }
}

/// Send a close frame; with `wait`, give the peer a moment to answer it.
pub async fn close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &str, wait: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if ws.close(Some(frame)).await.is_ok() && wait {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::JournalFailed;
    use crate::pipeline::Stopped;

    #[test]
    fn unacknowledged_frames_close_with_the_matching_code() {
        let journal = Ending::unacknowledged(&ApplyError::Journal(JournalFailed));
        assert_eq!(journal.reason, CloseReason::JournalError);
        assert_eq!(journal.close.as_ref().unwrap().0, CloseCode::Error);
        assert!(journal.wait && journal.protocol_error.is_none());
        let stopped = Ending::unacknowledged(&ApplyError::Stopped(Stopped));
        assert_eq!(stopped.reason, CloseReason::Shutdown);
        assert_eq!(stopped.close.unwrap().0, CloseCode::Away);
    }

    #[test]
    fn an_oversize_frame_is_not_read_after_the_close() {
        let e = WsError::Capacity(
            tokio_tungstenite::tungstenite::error::CapacityError::MessageTooLong {
                size: 10,
                max_size: 5,
            },
        );
        let end = Ending::read_error(&e, 5);
        assert_eq!(end.protocol_error, Some(ProtocolError::Oversize));
        assert_eq!(
            end.close,
            Some((CloseCode::Size, "frame larger than the 5 byte limit".into()))
        );
        assert!(!end.wait);
        assert_eq!(
            Ending::read_error(&WsError::ConnectionClosed, 5),
            Ending::quiet(CloseReason::Peer)
        );
    }
}
