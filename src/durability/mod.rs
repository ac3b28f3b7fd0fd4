//! Durability: nothing acknowledged is lost across a restart. The pipeline
//! writes every state-changing input to the [`journal`] before it answers,
//! and periodically (and on shutdown) writes the whole state to a
//! [`snapshot`]; a start loads the newest good snapshot and replays the
//! journal after it. Why a hand-written journal and what each fsync policy
//! guarantees: docs/durability.md.

pub mod events;
pub mod journal;
pub mod metrics;
pub mod snapshot;
pub mod writer;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::event::Millis;
use crate::health::{Fatal, Health};
use crate::metrics::windows::WindowsImage;
use crate::metrics::{Bounds, Store, StoreCopy};
use crate::rules::{Engine, EngineCopy, EngineImage, Settings as RuleSettings};
use events::Undecodable;
pub use journal::Record;
use journal::Writer;
use metrics::{DiskMetrics, JournalOp};
use writer::{Job, Thread};

/// When an acknowledgement may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// After the frame is fsynced (group commit).
    Batch,
    /// After the frame is written; the journal is fsynced this often.
    Interval(Duration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub dir: PathBuf,
    pub fsync: Fsync,
    pub snapshot_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DurabilityError {
    #[error("durability.dir {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("durability.dir {0} is in use by another ringwatch (its LOCK file is held)")]
    Locked(PathBuf),
    #[error("recovery from {path}: {source}")]
    Recover {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The data directory, locked for this process until dropped.
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Create (if needed) and lock the directory. Done before any port is
    /// bound, so a second daemon on the same directory fails at once.
    pub fn open(settings: &Settings) -> Result<DataDir, DurabilityError> {
        let dir = &settings.dir;
        let err = |source| DurabilityError::Dir {
            dir: dir.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))
            .map_err(err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(DurabilityError::Locked(dir.clone())),
            Err(fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        Ok(DataDir {
            path: dir.clone(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Configuration the state is rebuilt under.
pub struct StateConfig {
    pub rules: RuleSettings,
    pub bounds: Bounds,
    pub quantile_window: Millis,
    pub declared_queues: Vec<String>,
}

impl StateConfig {
    /// The state of a first start.
    pub fn fresh(&self) -> (Engine, Store) {
        let mut store = Store::new(self.bounds.clone(), self.quantile_window);
        let mut engine = Engine::new(self.rules.clone());
        for queue in &self.declared_queues {
            engine.declare_queue(queue, &mut store);
        }
        (engine, store)
    }
}

/// Snapshot body version; bumped when the encoding changes. Version 2
/// added the wallboard's windows after the store; a version 1 body (which
/// ends after the store) still loads, with the windows empty.
const STATE_VERSION: u32 = 2;
const STATE_VERSION_NO_WINDOWS: u32 = 1;

#[derive(Serialize, Deserialize)]
pub struct Meta {
    version: u32,
    /// Wall time the snapshot was taken (for the log).
    taken_at: Millis,
}

/// The snapshot body of a state (public for the benchmarks).
pub fn encode_state(engine: &Engine, store: &Store) -> Vec<u8> {
    copy_state(engine, store).encode()
}

/// A state as a snapshot takes it: what the pipeline does (the copy is
/// cheap; see [`StateCopy`]), public for the benchmarks.
pub fn copy_state(engine: &Engine, store: &Store) -> StateCopy {
    StateCopy {
        taken_at: crate::clock::wall_now(),
        engine: engine.copy_for_snapshot(),
        store: store.copy_for_snapshot(),
        windows: store.windows_image(),
    }
}

/// The state of one instant, taken on the pipeline and encoded on a
/// blocking thread while the pipeline goes on: the engine's calls and
/// promises copied as lists, its id sets' order copied and its tables
/// encoded ([`EngineCopy`]); the store's histograms shared and its quantile
/// windows' filled bins copied, unsorted ([`StoreCopy`]); the wallboard's
/// windows shared (copied by the pipeline only if it records into one
/// before the encoding is done).
pub struct StateCopy {
    taken_at: Millis,
    engine: EngineCopy,
    store: StoreCopy,
    windows: WindowsImage,
}

impl StateCopy {
    /// The snapshot body: `(meta, engine, store, windows)` as postcard
    /// writes the tuple, its parts one after the other. The wallboard's
    /// windows trail the rest: a version 1 body, written before them,
    /// ends after the store.
    pub fn encode(&self) -> Vec<u8> {
        let meta = Meta {
            version: STATE_VERSION,
            taken_at: self.taken_at,
        };
        // About what a call and a series take, so the buffer seldom grows.
        let mut out =
            Vec::with_capacity(48 * self.engine.calls() + 512 * self.store.series() + 1024);
        snapshot::append(&meta, &mut out);
        self.engine.encode(&mut out);
        self.store.encode(&mut out);
        snapshot::append(&self.windows, &mut out);
        out
    }
}

/// Rebuild the state from a snapshot body. Metrics whose bucket boundaries
/// changed since cannot carry on and restart from zero (as after any
/// restart of an exporter); the rules state always carries on.
pub fn decode_state(body: &[u8], cfg: &StateConfig) -> Result<(Engine, Store, Meta), String> {
    let ((meta, image, mut store), rest): ((Meta, EngineImage, Store), &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| format!("cannot decode: {e}"))?;
    let windows: WindowsImage = match meta.version {
        STATE_VERSION => postcard::from_bytes(rest)
            .map_err(|e| format!("cannot decode the wall's windows: {e}"))?,
        STATE_VERSION_NO_WINDOWS => WindowsImage::default(),
        v => return Err(format!("unknown snapshot version {v}")),
    };
    let mut engine = Engine::restore(cfg.rules.clone(), image);
    if store.series_len() != engine.series().len() {
        return Err("engine and metrics disagree on the series".into());
    }
    if !store.fits(&cfg.bounds, cfg.quantile_window) {
        tracing::warn!(
            "histogram buckets or metrics.quantile_window changed since the snapshot: \
             call-center counters restart from zero; calls, promises and de-duplication carry on"
        );
        store = Store::new(cfg.bounds.clone(), cfg.quantile_window);
        engine.replay_labels(&mut store);
    } else if !cfg.rules.per_agent {
        store.clear_agents();
    } else {
        engine.replay_agents_from(store.agents_len(), &mut store);
    }
    store.restore_windows(engine.series().all(), windows);
    for queue in &cfg.declared_queues {
        engine.declare_queue(queue, &mut store);
    }
    Ok((engine, store, meta))
}

/// What a start found on disk, for the log and the self-metrics.
#[derive(Debug, Default)]
pub struct Recovery {
    pub snapshot: Option<u64>,
    pub bad_snapshots: u64,
    pub segments: u64,
    pub records: u64,
    pub cut_bytes: u64,
    pub duration: Duration,
}

/// The files of a data directory, by sequence number.
struct Listing {
    snapshots: Vec<u64>,
    segments: Vec<u64>,
}

fn list(dir: &Path) -> io::Result<Listing> {
    let mut l = Listing {
        snapshots: Vec::new(),
        segments: Vec::new(),
    };
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("snapshot-") && name.ends_with(".tmp") {
            // A snapshot whose write was cut short by a crash: never used.
            fs::remove_file(dir.join(name))?;
        } else if let Some(seq) = snapshot::snapshot_seq(name) {
            l.snapshots.push(seq);
        } else if let Some(seq) = journal::segment_seq(name) {
            l.segments.push(seq);
        }
    }
    l.snapshots.sort_unstable();
    l.segments.sort_unstable();
    Ok(l)
}

/// Load the newest usable snapshot and replay the journal after it with
/// `replay` (the pipeline's own functions, so replay does what live did).
/// Returns the state, a journal open on a new segment, and what was found.
///
/// A record that panics the engine at replay (the pipeline died applying
/// it, so neither it nor anything after it was acknowledged) would make
/// every start fail the same way: it is cut off its segment, reported, and
/// recovery starts over from the snapshot. So is a record `apply` finds
/// undecodable (corruption its checksum missed).
pub fn recover<P: Send>(
    dir: &DataDir,
    cfg: &StateConfig,
    prepare: impl Fn(Record<'_>) -> P + Sync,
    mut apply: impl FnMut(&mut Engine, &mut Store, P) -> Result<(), Undecodable>,
) -> Result<(Engine, Store, Writer, Recovery), DurabilityError> {
    let started = Instant::now();
    let mut cut_before = 0;
    loop {
        match recover_once(dir, cfg, &prepare, &mut apply)? {
            Ok((engine, store, writer, mut report)) => {
                report.cut_bytes += cut_before;
                report.duration = started.elapsed();
                return Ok((engine, store, writer, report));
            }
            Err(cut) => {
                tracing::error!(
                    segment = %cut.segment.display(),
                    cut_bytes = cut.bytes,
                    "a journal record could not be replayed (it panicked the engine, or its events cannot be decoded): cut off with what followed it; recovering again"
                );
                cut_before += cut.bytes;
            }
        }
    }
}

/// Records prepared ahead of the one being applied, at most.
const PREPARED_AHEAD: usize = 256;
/// Records handed from the reader to the applier at a time.
const CHUNK: usize = 16;

/// Replay one segment: a second thread reads and prepares its records (for
/// frames, the decoding) while this one applies them in order. A record
/// whose preparing or applying panics, or which `apply` finds undecodable,
/// is cut off with what follows it, as a torn tail is; returns what the
/// read found and whether that happened.
fn replay_segment<P: Send>(
    file: &Path,
    prepare: &(impl Fn(Record<'_>) -> P + Sync),
    mut apply: impl FnMut(P) -> Result<(), Undecodable>,
) -> io::Result<(journal::SegmentRead, bool)> {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    // Prepared records go over in chunks: one hand-over (a lock, often a
    // wake-up) per record was a tenth of a replay's time.
    type Chunk<P> = Vec<std::thread::Result<P>>;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk<P>>(PREPARED_AHEAD / CHUNK);
    let (read, applied, poisoned) = std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            // Never stops the read early: the cut, if any, is made below
            // at the record that failed, which the reader may be past.
            let mut stopped = false;
            let mut chunk = Vec::with_capacity(CHUNK);
            let read = journal::read_segment(file, |rec| {
                // Once the applier has stopped, nothing more is prepared.
                if !stopped {
                    chunk.push(catch_unwind(AssertUnwindSafe(|| prepare(rec))));
                    if chunk.len() == CHUNK {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
                        stopped = tx.send(full).is_err();
                    }
                }
                true
            });
            if !stopped && !chunk.is_empty() {
                let _ = tx.send(chunk);
            }
            read
        });
        let mut applied = 0u64;
        let mut poisoned = false;
        'chunks: for chunk in rx.iter() {
            for prepared in chunk {
                let ok = prepared
                    .and_then(|p| catch_unwind(AssertUnwindSafe(|| apply(p))))
                    .is_ok_and(|applied| applied.is_ok());
                if !ok {
                    poisoned = true;
                    // Dropping the receiver makes the reader's sends fail fast.
                    break 'chunks;
                }
                applied += 1;
            }
        }
        drop(rx);
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the journal reader thread panicked")));
        (read, applied, poisoned)
    });
    let read = read?;
    if !poisoned {
        return Ok((read, false));
    }
    // Cut at the record that failed: read again, stopping there.
    let mut seen = 0u64;
    let cut = journal::read_segment(file, |_| {
        seen += 1;
        seen <= applied
    })?;
    // A torn tail the first read cut is part of what was cut off.
    let cut = journal::SegmentRead {
        cut_bytes: cut.cut_bytes + read.cut_bytes,
        ..cut
    };
    Ok((cut, true))
}

/// Where a record that could not be replayed was cut.
struct PoisonCut {
    segment: PathBuf,
    bytes: u64,
}

type Recovered = (Engine, Store, Writer, Recovery);

fn recover_once<P: Send>(
    dir: &DataDir,
    cfg: &StateConfig,
    prepare: &(impl Fn(Record<'_>) -> P + Sync),
    apply: &mut impl FnMut(&mut Engine, &mut Store, P) -> Result<(), Undecodable>,
) -> Result<Result<Recovered, PoisonCut>, DurabilityError> {
    let path = dir.path();
    let fail = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DurabilityError::Recover { path, source }
    };
    let listing = list(path).map_err(fail(path))?;
    let mut report = Recovery::default();
    let mut state = None;
    for &seq in listing.snapshots.iter().rev() {
        let file = path.join(snapshot::snapshot_name(seq));
        let loaded = snapshot::read(&file)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                let body = snapshot::unframe(&bytes).map_err(str::to_string)?;
                decode_state(body, cfg)
            });
        match loaded {
            Ok((engine, store, meta)) => {
                tracing::info!(
                    snapshot = %file.display(),
                    taken_at = meta.taken_at,
                    "snapshot loaded"
                );
                report.snapshot = Some(seq);
                state = Some((engine, store, seq));
                break;
            }
            Err(problem) => {
                report.bad_snapshots += 1;
                tracing::error!(snapshot = %file.display(), %problem, "snapshot unusable, trying an older one");
            }
        }
    }
    let (mut engine, mut store, from) = match state {
        Some(s) => s,
        None => {
            let (e, s) = cfg.fresh();
            (e, s, 0)
        }
    };
    if report.snapshot.is_none() && !listing.snapshots.is_empty() {
        tracing::error!(
            "no usable snapshot: replaying every journal segment left; figures from before the oldest one are lost"
        );
    }
    let segments: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&s| s >= from)
        .collect();
    if let (Some(&first), true) = (segments.first(), report.snapshot.is_some()) {
        if first != from {
            tracing::error!(
                expected = from,
                found = first,
                "journal segments missing after the snapshot"
            );
        }
    }
    for &seq in &segments {
        let file = path.join(journal::segment_name(seq));
        let (read, poisoned) =
            replay_segment(&file, prepare, |p| apply(&mut engine, &mut store, p))
                .map_err(fail(&file))?;
        if poisoned {
            // The engine may be half-changed: start over.
            return Ok(Err(PoisonCut {
                segment: file,
                bytes: read.cut_bytes,
            }));
        }
        report.segments += 1;
        report.records += read.records;
        report.cut_bytes += read.cut_bytes;
        if let Some(problem) = read.problem {
            tracing::warn!(
                segment = %file.display(),
                %problem,
                cut_bytes = read.cut_bytes,
                "journal tail cut (a write torn by a crash, or corruption); nothing after it had been acknowledged"
            );
        }
    }
    let next = listing
        .segments
        .last()
        .map_or(0, |s| s + 1)
        .max(listing.snapshots.last().copied().unwrap_or(0))
        .max(1);
    let writer = Writer::create(path, next).map_err(fail(path))?;
    snapshot::sync_dir(path).map_err(fail(path))?;
    Ok(Ok((engine, store, writer, report)))
}

/// The journal could not take a frame: it is not applied nor acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the journal could not be written")]
pub struct JournalFailed;

/// The journal as the pipeline uses it: write, snapshot, close. Every file
/// operation happens on the writer thread or a blocking task.
pub struct Journal {
    dir: PathBuf,
    thread: Thread,
    snapshot_job: Option<tokio::task::JoinHandle<()>>,
    metrics: Arc<DiskMetrics>,
    health: Arc<Health>,
}

impl Journal {
    pub fn new(
        dir: DataDir,
        writer: Writer,
        fsync: Fsync,
        metrics: Arc<DiskMetrics>,
        health: Arc<Health>,
    ) -> io::Result<Journal> {
        let path = dir.path().to_path_buf();
        let thread = Thread::spawn(
            dir,
            writer,
            fsync,
            Arc::clone(&metrics),
            Arc::clone(&health),
        )?;
        Ok(Journal {
            dir: path,
            thread,
            snapshot_job: None,
            metrics,
            health,
        })
    }

    /// Hand encoded records (see [`journal::encode`]) to the writer thread;
    /// the answer comes once they are written (with `fsync = "batch"`, once
    /// they are on disk). Only then may the pipeline apply them.
    pub async fn submit(
        &self,
        batch: impl Into<journal::Batch>,
    ) -> Result<writer::Pending, JournalFailed> {
        let (done, rx) = oneshot::channel();
        let batch = batch.into();
        match self.thread.send(Job::Write { batch, done }).await {
            Ok(()) => Ok(writer::Pending {
                rx,
                health: Arc::clone(&self.health),
            }),
            Err(JournalFailed) => {
                writer::lost(&self.health);
                Err(JournalFailed)
            }
        }
    }

    /// [`Journal::submit`] and its answer.
    #[cfg(test)]
    async fn write(&self, bytes: Vec<u8>) -> Result<(), JournalFailed> {
        self.submit(bytes).await?.answer().await
    }

    /// Snapshot `engine` and `store`: the writer thread moves to a new
    /// segment, the state is copied here (the only part that holds up the
    /// pipeline) and encoded and written by a blocking task, which then
    /// deletes what the snapshot makes unnecessary. Skipped while the last
    /// one is still being written.
    pub async fn snapshot(&mut self, engine: &Engine, store: &Store) {
        if self.snapshot_job.as_ref().is_some_and(|j| !j.is_finished()) {
            return;
        }
        let Some((seq, old, copy)) = self.rotate(engine, store).await else {
            return;
        };
        let dir = self.dir.clone();
        let (metrics, health) = (Arc::clone(&self.metrics), Arc::clone(&self.health));
        self.snapshot_job = Some(tokio::task::spawn_blocking(move || {
            write_snapshot(&dir, seq, &old, &copy, &metrics, &health);
        }));
    }

    /// Move to a new segment and copy the state that precedes it (every
    /// record written so far has been applied: the pipeline applies a
    /// record only after its write and rotates between bursts; and nothing
    /// is applied between the rotation and the copy, so the copy is the
    /// state at the start of segment `seq`).
    async fn rotate(&self, engine: &Engine, store: &Store) -> Option<(u64, Arc<File>, StateCopy)> {
        let (done, rx) = oneshot::channel();
        self.thread.send(Job::Rotate { done }).await.ok()?;
        let (seq, old) = rx.await.ok()?.ok()?;
        let started = Instant::now();
        let copy = copy_state(engine, store);
        self.metrics
            .snapshot_encode_duration
            .observe(started.elapsed().as_secs_f64());
        Some((seq, old, copy))
    }

    /// Take a last snapshot (graceful shutdown, so the next start has
    /// nothing to replay) and stop the writer thread. After a fatal journal
    /// failure no snapshot is taken: the next start recovers from what is
    /// on disk, which is what was acknowledged.
    pub async fn close(mut self, engine: &Engine, store: &Store) {
        if let Some(job) = self.snapshot_job.take() {
            let _ = job.await;
        }
        let rotated = if self.health.journal_failed() {
            None
        } else {
            self.rotate(engine, store).await
        };
        if let Some((seq, old, copy)) = rotated {
            let dir = self.dir.clone();
            let (metrics, health) = (Arc::clone(&self.metrics), Arc::clone(&self.health));
            let written = tokio::task::spawn_blocking(move || {
                write_snapshot(&dir, seq, &old, &copy, &metrics, &health)
            })
            .await;
            if matches!(written, Ok(true)) {
                tracing::info!(seq, "final snapshot written");
            }
        }
        // Last: the writer thread holds the directory's lock.
        self.thread.stop().await;
    }
}

/// Encode and write one snapshot and prune what it replaces; true if it
/// was written.
fn write_snapshot(
    dir: &Path,
    seq: u64,
    old: &File,
    copy: &StateCopy,
    metrics: &DiskMetrics,
    health: &Health,
) -> bool {
    let started = Instant::now();
    let framed = &snapshot::frame(&copy.encode());
    // The snapshot replaces the old segment only once that is on disk too.
    // A failed fsync is as fatal here as on the writer thread.
    if let Err(e) = old.sync_data() {
        metrics.journal_error(JournalOp::Sync);
        health.fail(Fatal::JournalSync(e.to_string()));
        return false;
    }
    let result = snapshot::write(dir, seq, framed).and_then(|_| prune(dir));
    match result {
        Ok(()) => {
            metrics
                .snapshot_duration
                .observe(started.elapsed().as_secs_f64());
            metrics.snapshot_bytes.set(framed.len() as i64);
            metrics
                .snapshot_last_success
                .set(crate::clock::wall_now() as f64 / 1000.0);
            tracing::debug!(seq, bytes = framed.len(), "snapshot written");
            true
        }
        Err(e) => {
            metrics.snapshot_failures.inc();
            tracing::error!(seq, error = %e, "snapshot failed; the journal is kept and replayed instead");
            false
        }
    }
}

/// Keep the two newest snapshots (the older one is the fallback if the
/// newest cannot be read) and the journal segments from the older one on.
fn prune(dir: &Path) -> io::Result<()> {
    let l = list(dir)?;
    let keep_from = match l.snapshots.len() {
        0 => return Ok(()),
        1 => l.snapshots[0],
        n => l.snapshots[n - 2],
    };
    for &seq in l.snapshots.iter().filter(|&&s| s < keep_from) {
        fs::remove_file(dir.join(snapshot::snapshot_name(seq)))?;
    }
    for &seq in l.segments.iter().filter(|&&s| s < keep_from) {
        fs::remove_file(dir.join(journal::segment_name(seq)))?;
    }
    snapshot::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BucketConfig;
    use crate::rules::ClockMode;

    /// A segment of ticks at `now` = 1..=n.
    fn ticks(dir: &Path, n: i64) -> PathBuf {
        let mut w = Writer::create(dir, 1).unwrap();
        let mut bytes = Vec::new();
        for now in 1..=n {
            journal::encode(&Record::Tick { now }, &mut bytes);
        }
        w.write(&journal::Batch::from(bytes), None).unwrap();
        dir.join(journal::segment_name(1))
    }

    fn tick_of(rec: Record<'_>) -> Millis {
        match rec {
            Record::Tick { now } => now,
            other => panic!("not a tick: {other:?}"),
        }
    }

    /// Records are prepared on the reader thread and applied here in
    /// order; a record whose preparing panics, or whose applying panics,
    /// is cut off with everything after it, exactly there, although the
    /// reader was ahead of the applier.
    #[test]
    fn replay_applies_in_order_and_cuts_at_the_record_that_panicked() {
        let dir = tempfile::tempdir().unwrap();
        let file = ticks(dir.path(), 1000);
        let mut seen = Vec::new();
        let (read, poisoned) = replay_segment(&file, &tick_of, |t| {
            seen.push(t);
            Ok(())
        })
        .unwrap();
        assert!(!poisoned);
        assert_eq!((read.records, read.cut_bytes), (1000, 0));
        assert_eq!(seen, (1..=1000).collect::<Vec<_>>());

        // Preparing record 700 panics: 699 applied, the segment cut there.
        let prepare = |rec: Record<'_>| {
            let t = tick_of(rec);
            assert!(t != 700, "fault injection at 700");
            t
        };
        let mut applied = 0;
        let (read, poisoned) = replay_segment(&file, &prepare, |_| {
            applied += 1;
            Ok(())
        })
        .unwrap();
        assert!(poisoned);
        assert_eq!(applied, 699);
        assert_eq!(read.records, 699);
        assert_eq!(read.cut_bytes, 301 * 17);

        // Applying record 5 panics (the reader is far ahead by then).
        let mut applied = Vec::new();
        let (read, poisoned) = replay_segment(&file, &tick_of, |t| {
            assert!(t != 5, "fault injection at 5");
            applied.push(t);
            Ok(())
        })
        .unwrap();
        assert!(poisoned);
        assert_eq!(applied, vec![1, 2, 3, 4]);
        assert_eq!((read.records, read.cut_bytes), (4, 695 * 17));
        let (read, _) = replay_segment(&file, &tick_of, |_| Ok(())).unwrap();
        assert_eq!((read.records, read.cut_bytes), (4, 0));

        // Record 3 is undecodable: cut there, as for a panic.
        let (read, poisoned) = replay_segment(&file, &tick_of, |t| {
            if t == 3 {
                Err(Undecodable)
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert!(poisoned);
        assert_eq!((read.records, read.cut_bytes), (2, 2 * 17));
    }

    fn config() -> StateConfig {
        let rules = RuleSettings {
            clock: ClockMode::Wall,
            ..RuleSettings::default()
        };
        StateConfig {
            bounds: Bounds::new(&rules, &BucketConfig::default()),
            rules,
            quantile_window: 300_000,
            declared_queues: vec!["declared".into()],
        }
    }

    /// A snapshot written before the wall's windows existed (version 1:
    /// the body ends after the store) loads, with empty windows; one
    /// written now carries them.
    #[test]
    fn bodies_without_the_windows_still_load_and_new_ones_keep_them() {
        use crate::rules::{Measure, Observer};
        let cfg = config();
        let (e, mut s) = cfg.fresh();
        s.measure(0, 1_795_424_400_000, Measure::Offered);
        let meta = Meta {
            version: 1,
            taken_at: 0,
        };
        let old = postcard::to_stdvec(&(meta, &e, &s)).unwrap();
        let (_, mut s1, _) = decode_state(&old, &cfg).unwrap();
        let snap = s1.snapshot(e.live(), crate::metrics::EngineState::default());
        assert_eq!(
            snap.windows[0].minute(1_795_424_400_000 / 60_000).offered,
            0
        );
        assert_eq!(snap.series[0].counters.offered, 1);
        let (_, mut s2, _) = decode_state(&encode_state(&e, &s), &cfg).unwrap();
        let snap = s2.snapshot(e.live(), crate::metrics::EngineState::default());
        assert_eq!(
            snap.windows[0].minute(1_795_424_400_000 / 60_000).offered,
            1
        );
    }

    #[test]
    fn a_damaged_body_is_an_error_not_a_panic() {
        let cfg = config();
        let (e, s) = cfg.fresh();
        let body = encode_state(&e, &s);
        for len in 0..body.len() {
            assert!(decode_state(&body[..len], &cfg).is_err(), "cut at {len}");
        }
    }

    #[tokio::test]
    async fn a_failed_write_that_cannot_be_cut_back_is_fatal() {
        // /dev/full fails every write with ENOSPC (a full disk), and a
        // character device cannot be truncated: the write cannot be undone.
        let Ok(full) = fs::OpenOptions::new().append(true).open("/dev/full") else {
            return;
        };
        let data = tempfile::tempdir().unwrap();
        let dir = DataDir::open(&Settings {
            dir: data.path().to_path_buf(),
            fsync: Fsync::Batch,
            snapshot_interval: Duration::from_secs(60),
        })
        .unwrap();
        let metrics = Arc::new(DiskMetrics::new(&prometheus::Registry::new()));
        let health = Arc::new(Health::default());
        health.set_started();
        let journal = Journal::new(
            dir,
            Writer::over(full, 1),
            Fsync::Batch,
            Arc::clone(&metrics),
            Arc::clone(&health),
        )
        .unwrap();
        let mut bytes = Vec::new();
        journal::encode(&Record::Frame { now: 1, text: "[]" }, &mut bytes);
        assert_eq!(journal.write(bytes.clone()).await, Err(JournalFailed));
        let errors = &metrics.journal_errors;
        assert_eq!(errors.with_label_values(&["write"]).get(), 1);
        assert_eq!(errors.with_label_values(&["sync"]).get(), 0);
        assert!(!health.ready());
        assert!(matches!(health.fatal(), Some(Fatal::JournalTorn(_))));
        // Nothing is written after a fatal failure, not even tried.
        assert_eq!(journal.write(bytes).await, Err(JournalFailed));
        assert_eq!(errors.with_label_values(&["write"]).get(), 1);
    }

    #[tokio::test]
    async fn writes_are_answered_after_they_reach_the_segment() {
        let data = tempfile::tempdir().unwrap();
        for fsync in [Fsync::Batch, Fsync::Interval(Duration::from_millis(5))] {
            let path = data.path().join(format!("{fsync:?}"));
            let settings = Settings {
                dir: path.clone(),
                fsync,
                snapshot_interval: Duration::from_secs(60),
            };
            let dir = DataDir::open(&settings).unwrap();
            let metrics = Arc::new(DiskMetrics::new(&prometheus::Registry::new()));
            let health = Arc::new(Health::default());
            let journal = Journal::new(
                dir,
                Writer::create(&path, 1).unwrap(),
                fsync,
                Arc::clone(&metrics),
                health,
            )
            .unwrap();
            let mut bytes = Vec::new();
            journal::encode(&Record::Tick { now: 42 }, &mut bytes);
            journal.write(bytes.clone()).await.unwrap();
            let mut seen = Vec::new();
            journal::read_segment(&path.join(journal::segment_name(1)), |r| {
                seen.push(format!("{r:?}"));
                true
            })
            .unwrap();
            assert_eq!(seen, vec!["Tick { now: 42 }"], "{fsync:?}");
            let fsyncs = metrics.journal_fsync_duration.get_sample_count();
            if fsync == Fsync::Batch {
                assert_eq!(fsyncs, 1, "batch: synced before the answer");
            }
            let (e, s) = config().fresh();
            journal.close(&e, &s).await;
            assert!(path.join(snapshot::snapshot_name(2)).exists());
        }
    }
}
