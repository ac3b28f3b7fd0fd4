//! The daemon's health as operators see it: whether `/readyz` may say ready,
//! and the one fatal failure (if any) that makes the process stop and exit
//! non-zero so that systemd or Kubernetes restarts it and recovery from the
//! journal makes the restart lossless.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

/// Why the daemon cannot go on. The first one reported wins.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// A task the daemon cannot live without panicked.
    #[error("the {task} panicked: {message}")]
    Panicked { task: &'static str, message: String },
    /// A task the daemon cannot live without ended on its own.
    #[error("the {task} stopped unexpectedly")]
    Ended { task: &'static str },
    /// An fsync of the journal failed: the kernel may have dropped the
    /// written pages, so nothing after it may be acknowledged.
    #[error("journal fsync failed: {0}")]
    JournalSync(String),
    /// A failed journal write could not be cut back off the segment, so
    /// the next record would follow a torn one.
    #[error("journal write failed and could not be undone: {0}")]
    JournalTorn(String),
}

impl Fatal {
    /// The process exit status (sysexits): 74 (EX_IOERR) when the journal
    /// failed, 70 (EX_SOFTWARE) when a task did.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::JournalSync(_) | Fatal::JournalTorn(_) => 74,
            Fatal::Panicked { .. } | Fatal::Ended { .. } => 70,
        }
    }
}

/// Shared by the pipeline, the journal writer, the supervisor and `/readyz`.
#[derive(Debug)]
pub struct Health {
    /// State recovered and listeners up.
    started: AtomicBool,
    /// Shutdown has begun: load balancers should stop sending.
    stopping: AtomicBool,
    /// The last journal write succeeded (false while the disk is full).
    journal_writable: AtomicBool,
    fatal: Mutex<Option<Fatal>>,
    /// Cancelled when a fatal failure is reported.
    failed: CancellationToken,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            journal_writable: AtomicBool::new(true),
            fatal: Mutex::new(None),
            failed: CancellationToken::new(),
        }
    }
}

impl Health {
    /// What `/readyz` answers: ready only when the daemon can acknowledge.
    pub fn ready(&self) -> bool {
        self.started.load(Ordering::Acquire)
            && !self.stopping.load(Ordering::Acquire)
            && self.journal_writable.load(Ordering::Acquire)
            && !self.failed.is_cancelled()
    }

    /// Why `/readyz` says not ready, for its body.
    pub fn reason(&self) -> &'static str {
        if self.failed.is_cancelled() {
            "failed"
        } else if self.stopping.load(Ordering::Acquire) {
            "shutting down"
        } else if !self.started.load(Ordering::Acquire) {
            "recovering"
        } else if !self.journal_writable.load(Ordering::Acquire) {
            "journal not writable"
        } else {
            "ready"
        }
    }

    pub fn set_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    pub fn set_journal_writable(&self, ok: bool) {
        self.journal_writable.store(ok, Ordering::Release);
    }

    /// Report a fatal failure: logged once, `/readyz` turns 503 at once, and
    /// the daemon's supervisor starts the shutdown.
    pub fn fail(&self, why: Fatal) {
        let mut fatal = self.fatal.lock().unwrap_or_else(PoisonError::into_inner);
        if fatal.is_none() {
            tracing::error!(error = %why, exit_code = why.exit_code(), "fatal: ringwatch stops and exits non-zero; the next start recovers from the journal");
            *fatal = Some(why);
        }
        self.failed.cancel();
    }

    pub fn fatal(&self) -> Option<Fatal> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn is_failed(&self) -> bool {
        self.failed.is_cancelled()
    }

    /// The journal itself failed (fsync, or a write that could not be
    /// undone): nothing may be written, synced or snapshotted any more. Any
    /// other fatal failure still lets the journal sync and snapshot what was
    /// acknowledged while the daemon drains.
    pub fn journal_failed(&self) -> bool {
        matches!(
            self.fatal(),
            Some(Fatal::JournalSync(_) | Fatal::JournalTorn(_))
        )
    }

    pub fn journal_writable(&self) -> bool {
        self.journal_writable.load(Ordering::Acquire)
    }

    /// Resolves when a fatal failure is reported.
    pub async fn failed(&self) {
        self.failed.cancelled().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_started_writable_and_not_stopping() {
        let h = Health::default();
        assert!(!h.ready());
        assert_eq!(h.reason(), "recovering");
        h.set_started();
        assert!(h.ready());
        h.set_journal_writable(false);
        assert_eq!((h.ready(), h.reason()), (false, "journal not writable"));
        h.set_journal_writable(true);
        assert!(h.ready());
        h.fail(Fatal::JournalSync("EIO".into()));
        h.fail(Fatal::Ended { task: "pipeline" });
        assert_eq!((h.ready(), h.reason()), (false, "failed"));
        assert_eq!(h.fatal(), Some(Fatal::JournalSync("EIO".into())));
        assert_eq!(h.fatal().unwrap().exit_code(), 74);
    }
}
