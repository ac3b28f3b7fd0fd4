//! The journal's writer thread: the only place the journal file is written,
//! fsynced and rotated, so no blocking file I/O runs on a tokio worker. The
//! pipeline hands it encoded records through a bounded queue and waits for
//! the answer before it applies them: what memory holds is always what the
//! journal holds.
//!
//! - `fsync = "interval"`: a write is answered once the bytes are in the
//!   file; dirty segments are fsynced every interval, by a second thread
//!   (an fdatasync of a few megabytes takes milliseconds here, and writes,
//!   so acknowledgements, would wait behind it).
//! - `fsync = "batch"`: a write is answered after its fdatasync; everything
//!   queued meanwhile shares the next one (group commit).
//!
//! A failed write is cut back off the segment and answered as failed (the
//! frames are refused, never applied); the next write tries again, and
//! `/readyz` says not ready until one succeeds. A failed fsync is fatal: the
//! kernel may have dropped the written pages, so every later write is
//! refused and the daemon stops (docs/durability.md).

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::journal::{Batch, Writer};
use super::metrics::{DiskMetrics, JournalOp};
use super::{snapshot, DataDir, Fsync, JournalFailed};
use crate::fault::{self, Point};
use crate::health::{Fatal, Health};
use crate::logging::RateLimited;

/// Jobs queued before the pipeline waits. The pipeline waits for each write
/// before it sends the next, so this only absorbs a rotation or two.
const QUEUE: usize = 16;

/// How soon an interval fsync is tried again when the last is still running.
const SYNC_RETRY: Duration = Duration::from_millis(5);

pub(super) enum Job {
    /// Append these encoded records; answered once written (batch: synced).
    Write {
        batch: Batch,
        done: oneshot::Sender<Result<(), JournalFailed>>,
    },
    /// Start a new segment; answered with its sequence number and the old
    /// segment's file (which the snapshot fsyncs before it replaces it).
    Rotate {
        done: oneshot::Sender<Result<(u64, Arc<File>), JournalFailed>>,
    },
}

/// A write handed to the writer thread, not answered yet.
pub struct Pending {
    pub(super) rx: oneshot::Receiver<Result<(), JournalFailed>>,
    pub(super) health: Arc<Health>,
}

impl Pending {
    /// Written (batch: and synced), or why not.
    pub async fn answer(&mut self) -> Result<(), JournalFailed> {
        match (&mut self.rx).await {
            Ok(result) => result,
            Err(_) => {
                lost(&self.health);
                Err(JournalFailed)
            }
        }
    }
}

/// The writer thread is gone without answering: it panicked.
pub(super) fn lost(health: &Health) {
    health.fail(Fatal::Panicked {
        task: "journal writer thread",
        message: "it stopped without answering a write".into(),
    });
}

pub(super) struct Thread {
    jobs: SyncSender<Job>,
    handle: std::thread::JoinHandle<()>,
}

impl Thread {
    /// The thread owns the data directory's lock: it is released only once
    /// nothing more can be written.
    pub(super) fn spawn(
        lock: DataDir,
        writer: Writer,
        fsync: Fsync,
        metrics: Arc<DiskMetrics>,
        health: Arc<Health>,
    ) -> std::io::Result<Thread> {
        let (jobs, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let syncer = match fsync {
            Fsync::Interval(_) => Some(Syncer::spawn(Arc::clone(&metrics), Arc::clone(&health))?),
            Fsync::Batch => None,
        };
        let state = WriterThread {
            syncer,
            dir: lock.path().to_path_buf(),
            synced: writer.size(),
            writer,
            fsync,
            metrics,
            health,
            dirty: false,
            last_sync: Instant::now(),
            error_log: RateLimited::new(Duration::from_secs(10)),
        };
        let handle = std::thread::Builder::new()
            .name("ringwatch-journal".into())
            .spawn(move || {
                state.run(rx);
                drop(lock);
            })?;
        Ok(Thread { jobs, handle })
    }

    /// Queue a job; a full queue (a slow disk) makes the caller wait. The
    /// queue is std's (the thread needs `recv_timeout` for the interval
    /// fsync), so waiting is a short sleep; the pipeline keeps at most two
    /// writes and one rotation queued, so in practice it is never full.
    pub(super) async fn send(&self, mut job: Job) -> Result<(), JournalFailed> {
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    job = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(JournalFailed),
            }
        }
    }

    /// Stop after the queued jobs (a dirty segment is fsynced first).
    pub(super) async fn stop(self) {
        drop(self.jobs);
        let handle = self.handle;
        let _ = tokio::task::spawn_blocking(move || handle.join()).await;
    }
}

struct WriterThread {
    /// The interval policy's fsyncs run there.
    syncer: Option<Syncer>,
    dir: PathBuf,
    writer: Writer,
    fsync: Fsync,
    metrics: Arc<DiskMetrics>,
    health: Arc<Health>,
    /// Written since the last fsync (interval policy).
    dirty: bool,
    /// Segment length at the last good fsync.
    synced: u64,
    last_sync: Instant,
    /// A full or failing disk fails every write: log once in a while.
    error_log: RateLimited,
}

impl WriterThread {
    fn run(mut self, rx: Receiver<Job>) {
        loop {
            let first = match (self.fsync, self.dirty) {
                (Fsync::Interval(every), true) => {
                    let wait = (self.last_sync + every).saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match rx.recv() {
                    Ok(job) => Some(job),
                    Err(_) => break,
                },
            };
            let mut waiting = Vec::new();
            for job in first.into_iter().chain(rx.try_iter()) {
                self.job(job, &mut waiting);
            }
            self.settle(&mut waiting);
        }
        // The last fsync waits for one still running.
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
        if self.dirty {
            // A failure is reported to Health by `sync` itself.
            let _ = self.sync();
        }
    }

    /// Do one job. Batch-policy writes wait in `waiting` for the next fsync.
    fn job(&mut self, job: Job, waiting: &mut Vec<oneshot::Sender<Result<(), JournalFailed>>>) {
        match job {
            Job::Write { batch, done } => {
                if fault::hit(Point::WriterPanic) {
                    panic!("fault injection: writer_panic");
                }
                let written = self.write(&batch);
                match (written, self.fsync) {
                    (Ok(()), Fsync::Batch) => waiting.push(done),
                    (result, _) => {
                        let _ = done.send(result);
                    }
                }
            }
            Job::Rotate { done } => {
                // Batch writes waiting for an fsync belong to this segment.
                self.settle(waiting);
                let _ = done.send(self.rotate());
            }
        }
    }

    /// Fsync for the waiting batch writes and answer them; with the
    /// interval policy, fsync once the interval has passed.
    fn settle(&mut self, waiting: &mut Vec<oneshot::Sender<Result<(), JournalFailed>>>) {
        if !waiting.is_empty() {
            let mut result = self.sync();
            if result.is_ok() && self.health.is_failed() {
                // A fatal failure came while these were written: they are
                // refused like every write after it.
                result = Err(JournalFailed);
            }
            if result.is_err() {
                // None of them is answered Ok: cut them off (best effort),
                // so a restart does not replay what was refused.
                let _ = self.writer.truncate(self.synced);
            }
            for done in waiting.drain(..) {
                let _ = done.send(result);
            }
        } else if let Fsync::Interval(every) = self.fsync {
            if self.dirty && self.last_sync.elapsed() >= every {
                match &self.syncer {
                    Some(syncer) => {
                        if syncer.start(self.writer.file()) {
                            self.dirty = false;
                            self.last_sync = Instant::now();
                        } else if let Some(earlier) = Instant::now().checked_sub(every) {
                            // Still busy with the last one: look again in
                            // a few milliseconds (not at once: a spin).
                            self.last_sync = earlier + SYNC_RETRY;
                        }
                    }
                    None => {
                        let _ = self.sync();
                    }
                }
            }
        }
    }

    fn write(&mut self, batch: &Batch) -> Result<(), JournalFailed> {
        // After any fatal failure nothing more is acknowledged.
        if self.health.is_failed() {
            return Err(JournalFailed);
        }
        let fail_after = fault::hit(Point::JournalWrite).then_some(batch.len() / 2);
        match self.writer.write(batch, fail_after) {
            Ok(()) => {
                self.dirty = true;
                self.metrics.journal_bytes.inc_by(batch.len() as u64);
                self.health.set_journal_writable(true);
                Ok(())
            }
            Err(failed) => {
                self.metrics.journal_error(JournalOp::Write);
                self.health.set_journal_writable(false);
                if let Err(undo) = failed.undo {
                    self.health.fail(Fatal::JournalTorn(format!(
                        "{}; cutting the segment back failed: {undo}",
                        failed.error
                    )));
                } else if let Some(suppressed) = self.error_log.check() {
                    tracing::error!(
                        error = %failed.error,
                        suppressed,
                        "journal write failed: the frames are refused and not applied; /readyz says not ready until a write succeeds"
                    );
                }
                Err(JournalFailed)
            }
        }
    }

    /// fdatasync the segment. A failure is fatal: it is never retried.
    fn sync(&mut self) -> Result<(), JournalFailed> {
        if self.health.journal_failed() {
            // Never retried (see above); nothing is dirty that may be synced.
            self.dirty = false;
            return Err(JournalFailed);
        }
        let started = Instant::now();
        let result = if fault::hit(Point::JournalSync) {
            Err(std::io::Error::from_raw_os_error(5))
        } else {
            self.writer.sync()
        };
        self.metrics
            .journal_fsync_duration
            .observe(started.elapsed().as_secs_f64());
        self.last_sync = Instant::now();
        match result {
            Ok(()) => {
                self.dirty = false;
                self.synced = self.writer.size();
                Ok(())
            }
            Err(e) => {
                self.metrics.journal_error(JournalOp::Sync);
                self.health.fail(Fatal::JournalSync(e.to_string()));
                self.dirty = false;
                if self.fsync == Fsync::Batch {
                    // Nothing after the last good fsync was answered: cut it
                    // off (best effort) so a restart shows what was.
                    let _ = self.writer.truncate(self.synced);
                }
                Err(JournalFailed)
            }
        }
    }

    fn rotate(&mut self) -> Result<(u64, Arc<File>), JournalFailed> {
        if self.health.journal_failed() {
            return Err(JournalFailed);
        }
        let seq = self.writer.seq() + 1;
        let next = match Writer::create(&self.dir, seq) {
            Ok(w) => w,
            Err(e) => {
                self.metrics.snapshot_failures.inc();
                tracing::error!(error = %e, "cannot start a new journal segment; snapshot skipped");
                return Err(JournalFailed);
            }
        };
        if self.fsync == Fsync::Batch {
            // A batch answer promises the record survives power loss: the
            // new segment's directory entry must too.
            if let Err(e) = snapshot::sync_dir(&self.dir) {
                self.metrics.journal_error(JournalOp::Sync);
                self.health.fail(Fatal::JournalSync(format!(
                    "syncing the data directory: {e}"
                )));
                return Err(JournalFailed);
            }
        }
        let old = std::mem::replace(&mut self.writer, next);
        // The old segment's unsynced writes are the snapshot's to fsync.
        self.dirty = false;
        self.synced = self.writer.size();
        Ok((seq, old.file()))
    }
}

/// The thread that fsyncs for the interval policy, while the writer thread
/// goes on writing. Linux lets an fdatasync and writes to the same file run
/// at once; the fsync covers at least what was written before it began. A
/// failure is as fatal as on the writer thread: `Health` fails, and the
/// writer refuses every write after it (those written while it ran were
/// never more than written, as with any write of the interval policy).
struct Syncer {
    files: Option<SyncSender<Arc<File>>>,
    busy: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

impl Syncer {
    fn spawn(metrics: Arc<DiskMetrics>, health: Arc<Health>) -> std::io::Result<Syncer> {
        let (files, rx) = std::sync::mpsc::sync_channel::<Arc<File>>(1);
        let busy = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&busy);
        let handle = std::thread::Builder::new()
            .name("ringwatch-fsync".into())
            .spawn(move || {
                for file in rx {
                    sync_file(&file, &metrics, &health);
                    done.store(false, Ordering::Release);
                }
            })?;
        Ok(Syncer {
            files: Some(files),
            busy,
            handle,
        })
    }

    /// Start an fsync of `file`, unless one is running; true if started.
    fn start(&self, file: Arc<File>) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        let sent = self
            .files
            .as_ref()
            .is_some_and(|f| f.try_send(file).is_ok());
        if !sent {
            self.busy.store(false, Ordering::Release);
        }
        sent
    }

    /// Wait for the fsync running, if any, and end the thread.
    fn stop(mut self) {
        drop(self.files.take());
        let _ = self.handle.join();
    }
}

/// One interval fsync, on the syncer thread.
fn sync_file(file: &File, metrics: &DiskMetrics, health: &Health) {
    if health.journal_failed() {
        return;
    }
    let started = Instant::now();
    let result = if fault::hit(Point::JournalSync) {
        Err(std::io::Error::from_raw_os_error(5))
    } else {
        file.sync_data()
    };
    metrics
        .journal_fsync_duration
        .observe(started.elapsed().as_secs_f64());
    if let Err(e) = result {
        metrics.journal_error(JournalOp::Sync);
        health.fail(Fatal::JournalSync(e.to_string()));
    }
}
