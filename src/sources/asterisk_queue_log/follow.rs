//! The `tail -F` of one queue_log file: appends, rotation by rename (the
//! old file read to its end first), truncation, a file that appears later;
//! and its read position (file identity, byte offset, translator state)
//! saved in the data directory only after the lines before that offset
//! were delivered (journaled), so after a crash the position is at or
//! before the journal and lines read again are de-duplicated by their
//! deterministic ids. All file I/O runs on the blocking pool.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::translate::{Rejected, State, Translator};
use super::{one_line, Settings, Start};
use crate::event::Event;
use crate::logging::RateLimited;
use crate::sources::deliver::Deliverer;
use crate::sources::metrics::FileChange;
use crate::sources::Context;

/// How often the file is checked for appends, rotation and truncation.
pub const POLL: Duration = Duration::from_millis(200);
/// Bytes read at a time (more when `max_message_bytes` is larger).
const CHUNK: usize = 256 * 1024;
/// The first line (up to this many bytes) fingerprints a file, to tell a
/// file replaced in place (same inode, new content) while ringwatch was
/// stopped.
const HEAD: usize = 512;
/// Version of the position file's layout.
const VERSION: u32 = 1;

/// The saved read position: `<data_dir>/sources/<name>.queue_log.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    /// The configured path it was saved for.
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// Bytes of the file consumed: always the end of a whole line.
    pub offset: u64,
    /// Lines consumed (for line numbers in log messages).
    pub line: u64,
    /// Fingerprint of the file's first line, once it has one.
    pub head: Option<u64>,
    pub state: State,
}

/// Where the position of source `name` is kept.
pub fn position_path(data_dir: &Path, name: &str) -> PathBuf {
    crate::sources::state::path(data_dir, name, "queue_log")
}

/// The file being read.
struct Current {
    file: Arc<File>,
    /// The name it was opened under (the configured path, or the rotated
    /// name found at start).
    name: PathBuf,
    dev: u64,
    ino: u64,
    /// Consumed up to here (a line boundary).
    offset: u64,
    line: u64,
    head: Option<u64>,
    /// Inside a line longer than `max_message_bytes`: scanned up to here
    /// for its end, which is where consumption resumes.
    skipping: Option<u64>,
}

/// What one look at the file found.
enum Step {
    /// Lines consumed (maybe more to read at once).
    Read { more: bool },
    /// Nothing new.
    Idle,
}

struct Follower {
    s: Settings,
    ctx: Context,
    deliverer: Deliverer,
    tr: Translator,
    cur: Option<Current>,
    position: Option<PathBuf>,
    last_saved: Option<(u64, u64, u64)>,
    read_size: usize,
    skipped_log: RateLimited,
    io_log: RateLimited,
}

/// Follow `s.path` until `ctx.cancel` fires.
pub async fn run(s: Settings, ctx: Context) {
    let cancel = ctx.cancel.clone();
    tracing::info!(
        source = s.common.name.as_str(),
        path = %s.path.display(),
        "queue_log carries no hold events in stock Asterisk: the 17-second hold rule cannot be served from this source (only QueueMetrics' CALLERONHOLD/CALLEROFFHOLD lines carry holds; ringwatch_source_reports_holds stays 0 until one is seen); times are whole seconds"
    );
    ctx.platform.exact_time.set(0);
    ctx.platform.reports_holds.set(0);
    ctx.connection.connected.set(0);
    let position = ctx
        .data_dir
        .as_deref()
        .map(|d| position_path(d, &s.common.name));
    if position.is_none() {
        tracing::info!(
            source = s.common.name.as_str(),
            "durability is off: the queue_log read position is kept in memory only (a restart starts per `start`)"
        );
    }
    let mut f = Follower {
        deliverer: Deliverer::new(&s.common, &ctx),
        tr: Translator::new(s.common.translate.clone(), State::default()),
        read_size: CHUNK.max(s.common.max_message_bytes.saturating_add(1)),
        s,
        ctx,
        cur: None,
        position,
        last_saved: None,
        skipped_log: RateLimited::new(Duration::from_secs(10)),
        io_log: RateLimited::new(Duration::from_secs(30)),
    };
    f.follow().await;
    f.ctx.connection.connected.set(0);
    // A source task returns only once the daemon is stopping.
    cancel.cancelled().await;
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

/// Open `path` with its identity and length.
async fn open(path: &Path) -> io::Result<(Arc<File>, u64, u64, u64)> {
    let path = path.to_path_buf();
    blocking(move || {
        let f = File::open(&path)?;
        let m = f.metadata()?;
        Ok((Arc::new(f), m.dev(), m.ino(), m.len()))
    })
    .await
}

/// `(dev, ino, len)` of whatever is at `path` now.
async fn stat(path: &Path) -> io::Result<(u64, u64, u64)> {
    let path = path.to_path_buf();
    blocking(move || {
        let m = std::fs::metadata(&path)?;
        Ok((m.dev(), m.ino(), m.len()))
    })
    .await
}

async fn read_at(file: &Arc<File>, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let file = Arc::clone(file);
    blocking(move || {
        let len = file.metadata()?.len();
        let want = usize::try_from(len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(max);
        let mut buf = vec![0; want];
        let mut got = 0;
        while got < want {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    })
    .await
}

/// Fingerprint of a file's first line, if it has a whole one.
async fn head_of(file: &Arc<File>) -> io::Result<Option<u64>> {
    let buf = read_at(file, 0, HEAD).await?;
    Ok(head_hash(&buf))
}

fn head_hash(buf: &[u8]) -> Option<u64> {
    use std::hash::Hasher;
    let (line, _) = split_line(buf)?;
    let mut h = siphasher::sip::SipHasher13::new_with_keys(0x7177_6865_6164, 0x7177_6865_6164);
    h.write(line);
    h.write_u8(b'\n');
    Some(h.finish())
}

/// The first line of `b` (without its newline) and what follows it.
fn split_line(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|x| *x == b'\n')?;
    Some((b.get(..i)?, b.get(i + 1..)?))
}

/// A file in the directory of `path`, named after it (`queue_log.1`,
/// `queue_log-20260101`, `queue_log.0`...), that is the file `dev`/`ino`:
/// where a rotation while ringwatch was stopped put the file it was reading.
async fn find_rotated(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = path.parent().map(Path::to_path_buf)?;
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let base = path.file_name()?.to_str()?.to_string();
    blocking(move || {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == base || !name.starts_with(&base) {
                continue;
            }
            if let Ok(m) = std::fs::metadata(entry.path()) {
                if m.is_file() && m.dev() == dev && m.ino() == ino {
                    return Ok(Some(entry.path()));
                }
            }
        }
        Ok(None)
    })
    .await
    .ok()
    .flatten()
}

async fn load(path: &Path) -> Result<Option<Saved>, String> {
    let p = path.to_path_buf();
    let bytes = match blocking(move || std::fs::read(&p)).await {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if saved.version != VERSION {
        return Err(format!("unknown version {}", saved.version));
    }
    Ok(Some(saved))
}

/// Write the position atomically: a temporary file renamed over the old.
async fn store(path: &Path, saved: &Saved) -> io::Result<()> {
    let bytes = serde_json::to_vec(saved).map_err(io::Error::other)?;
    let path = path.to_path_buf();
    blocking(move || crate::sources::state::write(&path, &bytes)).await
}

impl Follower {
    fn name(&self) -> &str {
        &self.s.common.name
    }

    /// Read, deliver and save step by step until `cancel`. Cancellation is
    /// looked at between steps only: a batch being delivered at shutdown is
    /// finished and its position saved (the pipeline outlives the sources),
    /// so the next start does not read it again.
    async fn follow(&mut self) {
        let cancel = self.ctx.cancel.clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = self.resume() => {}
        }
        while !cancel.is_cancelled() {
            match self.step().await {
                Ok(Step::Read { more: true }) => continue,
                Ok(Step::Read { more: false }) | Ok(Step::Idle) => {}
                Err(Stop) => return,
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The position at start: the saved one if it is for this path, else
    /// per `start`.
    async fn resume(&mut self) {
        let saved = match &self.position {
            None => None,
            Some(p) => match load(p).await {
                Ok(s) => s,
                Err(why) => {
                    tracing::error!(
                        source = self.name(),
                        position = %p.display(),
                        error = why.as_str(),
                        "the saved queue_log position is unreadable; starting per `start` instead"
                    );
                    None
                }
            },
        };
        match saved {
            Some(sv) if sv.path == self.s.path => self.resume_saved(sv).await,
            Some(sv) => {
                tracing::info!(
                    source = self.name(),
                    saved_for = %sv.path.display(),
                    path = %self.s.path.display(),
                    "the saved queue_log position is for another path; starting per `start`"
                );
                self.fresh().await;
            }
            None => self.fresh().await,
        }
    }

    /// No saved position: `start = "end"` skips what the file holds now
    /// (to its last whole line), `"beginning"` reads it all. A file that
    /// does not exist yet is read from its beginning once it appears.
    async fn fresh(&mut self) {
        let Ok((file, dev, ino, len)) = open(&self.s.path).await else {
            self.waiting();
            return;
        };
        let offset = match self.s.start {
            Start::Beginning => 0,
            Start::End => {
                let from = len.saturating_sub(self.read_size as u64);
                match read_at(&file, from, self.read_size).await {
                    Ok(tail) => match tail.iter().rposition(|b| *b == b'\n') {
                        Some(i) => from + i as u64 + 1,
                        None => len,
                    },
                    Err(_) => len,
                }
            }
        };
        self.opened(Current {
            file,
            name: self.s.path.clone(),
            dev,
            ino,
            offset,
            line: 0,
            head: None,
            skipping: None,
        });
        if offset > 0 {
            tracing::info!(
                source = self.name(),
                path = %self.s.path.display(),
                skipped_bytes = offset,
                "start = \"end\": following the queue_log from its current end"
            );
        }
        self.save().await;
    }

    async fn resume_saved(&mut self, sv: Saved) {
        self.tr = Translator::new(self.s.common.translate.clone(), sv.state.clone());
        self.ctx
            .platform
            .reports_holds
            .set(i64::from(self.tr.reports_holds()));
        let here = stat(&self.s.path).await.ok();
        let same = here.is_some_and(|(d, i, _)| (d, i) == (sv.dev, sv.ino));
        let name = if same {
            Some(self.s.path.clone())
        } else {
            find_rotated(&self.s.path, sv.dev, sv.ino).await
        };
        let Some(name) = name else {
            tracing::warn!(
                source = self.name(),
                path = %self.s.path.display(),
                "the queue_log was rotated while ringwatch was stopped and the file it was reading is gone (compressed or deleted): its lines after the saved position are lost; reading the new file from its beginning"
            );
            self.ctx.platform.file_changed(FileChange::Rotated);
            self.open_path_at_start().await;
            return;
        };
        let Ok((file, dev, ino, len)) = open(&name).await else {
            self.open_path_at_start().await;
            return;
        };
        let mut cur = Current {
            file,
            name: name.clone(),
            dev,
            ino,
            offset: sv.offset,
            line: sv.line,
            head: sv.head,
            skipping: None,
        };
        let head_now = head_of(&cur.file).await.ok().flatten();
        let replaced = sv.head.is_some() && head_now != sv.head;
        if (dev, ino) != (sv.dev, sv.ino) || len < sv.offset || replaced {
            tracing::warn!(
                source = self.name(),
                path = %name.display(),
                saved_offset = sv.offset,
                len,
                "the queue_log was truncated or replaced while ringwatch was stopped; reading it from its beginning"
            );
            self.ctx.platform.file_changed(FileChange::Truncated);
            cur.offset = 0;
            cur.line = 0;
            cur.head = None;
        } else if !same {
            tracing::info!(
                source = self.name(),
                rotated = %name.display(),
                offset = sv.offset,
                "the queue_log was rotated while ringwatch was stopped: reading the rest of the rotated file first"
            );
        }
        self.opened(cur);
        self.save().await;
    }

    async fn open_path_at_start(&mut self) {
        match open(&self.s.path).await {
            Ok((file, dev, ino, _)) => {
                self.opened(Current {
                    file,
                    name: self.s.path.clone(),
                    dev,
                    ino,
                    offset: 0,
                    line: 0,
                    head: None,
                    skipping: None,
                });
                self.save().await;
            }
            Err(_) => self.waiting(),
        }
    }

    fn waiting(&mut self) {
        self.cur = None;
        self.ctx.connection.connected.set(0);
        tracing::info!(
            source = self.name(),
            path = %self.s.path.display(),
            "waiting for the queue_log to appear"
        );
    }

    fn opened(&mut self, cur: Current) {
        self.ctx.connection.attempts.inc();
        self.ctx.connection.connected.set(1);
        self.ctx.platform.file_position.set(cur.offset as i64);
        self.cur = Some(cur);
    }

    /// One look at the file.
    async fn step(&mut self) -> Result<Step, Stop> {
        if self.cur.is_none() {
            // The file appeared: everything in it was written since.
            if let Ok((file, dev, ino, _)) = open(&self.s.path).await {
                tracing::info!(source = self.name(), path = %self.s.path.display(), "the queue_log appeared");
                self.opened(Current {
                    file,
                    name: self.s.path.clone(),
                    dev,
                    ino,
                    offset: 0,
                    line: 0,
                    head: None,
                    skipping: None,
                });
                self.save().await;
                return Ok(Step::Read { more: true });
            }
            return Ok(Step::Idle);
        }
        let Some(cur) = &self.cur else {
            return Ok(Step::Idle);
        };
        let file = Arc::clone(&cur.file);
        let len = match blocking(move || file.metadata()).await {
            Ok(m) => m.len(),
            Err(e) => {
                self.io_error("cannot stat the queue_log", &e);
                return Ok(Step::Idle);
            }
        };
        let scan = cur.skipping.unwrap_or(cur.offset);
        if len < scan {
            self.truncated(len).await;
            return Ok(Step::Read { more: true });
        }
        let (dev, ino) = (cur.dev, cur.ino);
        if len > scan {
            let before = (cur.offset, cur.skipping);
            let step = self.read(false).await?;
            let after = self.cur.as_ref().map(|c| (c.offset, c.skipping));
            // Only a partial last line is pending: it may never get its
            // newline (the file was rotated away), so look at the path too.
            if after != Some(before) {
                return Ok(step);
            }
        }
        // At the end of what the file holds (or of its whole lines): rotated away?
        match stat(&self.s.path).await {
            Ok((new_dev, new_ino, new_len)) if (new_dev, new_ino) != (dev, ino) && new_len > 0 => {
                // Asterisk writes to the new file only once it reopened, so
                // the old one is complete: read it to its very end (a last
                // line without its newline too), then switch.
                while let Step::Read { more: true } = self.read(false).await? {}
                self.read(true).await?;
                self.rotated().await;
                Ok(Step::Read { more: true })
            }
            _ => Ok(Step::Idle),
        }
    }

    async fn truncated(&mut self, len: u64) {
        let Some(cur) = &mut self.cur else { return };
        tracing::warn!(
            source = self.s.common.name.as_str(),
            path = %cur.name.display(),
            offset = cur.offset,
            len,
            "the queue_log was truncated: reading it again from its beginning"
        );
        cur.offset = 0;
        cur.line = 0;
        cur.head = None;
        cur.skipping = None;
        self.ctx.platform.file_changed(FileChange::Truncated);
        self.save().await;
    }

    async fn rotated(&mut self) {
        let old = self.cur.as_ref().map(|c| c.name.clone());
        tracing::info!(
            source = self.name(),
            path = %self.s.path.display(),
            old = ?old,
            "the queue_log was rotated: following the new file from its beginning"
        );
        self.ctx.platform.file_changed(FileChange::Rotated);
        self.ctx.connection.reconnects.inc();
        self.open_path_at_start().await;
    }

    /// Read and consume what follows the position: whole lines, or with
    /// `to_end` also a last line without its newline (the file is done).
    async fn read(&mut self, to_end: bool) -> Result<Step, Stop> {
        let Some(cur) = &self.cur else {
            return Ok(Step::Idle);
        };
        let max = self.s.common.max_message_bytes;
        let base = cur.skipping.unwrap_or(cur.offset);
        let buf = match read_at(&cur.file, base, self.read_size).await {
            Ok(b) => b,
            Err(e) => {
                self.io_error("cannot read the queue_log", &e);
                return Ok(Step::Idle);
            }
        };
        if buf.is_empty() {
            return Ok(Step::Idle);
        }
        let full = buf.len() == self.read_size;
        let mut events = Vec::new();
        let mut rest: &[u8] = &buf;
        let mut consumed = 0usize;
        let mut lines = Vec::new();
        if let Some(scan) = cur.skipping {
            // The end of an oversized line, if it is here.
            match split_line(rest) {
                Some((line, tail)) => {
                    lines.push(Err(Rejected {
                        reason: crate::sources::metrics::Skip::Oversized,
                        detail: format!("a line of more than {max} bytes (max_message_bytes)"),
                    }));
                    consumed = line.len() + 1;
                    rest = tail;
                }
                None => {
                    let Some(cur) = &mut self.cur else {
                        return Ok(Step::Idle);
                    };
                    cur.skipping = Some(scan + buf.len() as u64);
                    return Ok(Step::Read { more: full });
                }
            }
        }
        while let Some((line, tail)) = split_line(rest) {
            lines.push(one_line(line, max, &mut self.tr));
            consumed += line.len() + 1;
            rest = tail;
        }
        let mut start_skipping = false;
        if !rest.is_empty() {
            if to_end {
                lines.push(one_line(rest, max, &mut self.tr));
                consumed += rest.len();
            } else if rest.len() > max {
                start_skipping = true;
            }
        }
        let first_line = cur.line + 1;
        let n_lines = lines.len() as u64;
        for (k, out) in lines.into_iter().enumerate() {
            self.ctx.platform.messages.inc();
            match out {
                Ok(ev) => events.push(ev),
                Err(r) => self.skipped(first_line + k as u64, r),
            }
        }
        self.deliver(&events).await?;
        let forget = self.tr.take_forget();
        if !forget.is_empty() {
            let cancel = self.ctx.cancel.clone();
            self.deliverer
                .forget(&forget, &cancel)
                .await
                .map_err(|_| Stop)?;
        }
        let Some(cur) = &mut self.cur else {
            return Ok(Step::Idle);
        };
        cur.offset = base + consumed as u64;
        cur.line += n_lines;
        cur.skipping = start_skipping.then_some(base + buf.len() as u64);
        self.ctx.platform.file_position.set(cur.offset as i64);
        self.ctx
            .platform
            .reports_holds
            .set(i64::from(self.tr.reports_holds()));
        self.save().await;
        Ok(Step::Read { more: full })
    }

    async fn deliver(&mut self, events: &[Event]) -> Result<(), Stop> {
        if events.is_empty() {
            return Ok(());
        }
        let cancel = self.ctx.cancel.clone();
        match self.deliverer.deliver(events, &cancel).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Stop),
        }
    }

    fn skipped(&self, line: u64, r: Rejected) {
        self.ctx.platform.skipped(r.reason);
        use crate::sources::metrics::Skip;
        // Lines the rules do not need are expected, not worth a log line.
        if matches!(r.reason, Skip::Ignored | Skip::MemberEvent) {
            return;
        }
        if let Some(suppressed) = self.skipped_log.check() {
            let path = self.cur.as_ref().map(|c| c.name.display().to_string());
            tracing::warn!(
                source = self.name(),
                path = path.as_deref().unwrap_or(""),
                line,
                reason = r.reason.as_str(),
                detail = r.detail.as_str(),
                suppressed,
                "queue_log line skipped (counted in ringwatch_source_skipped_total)"
            );
        }
    }

    fn io_error(&self, what: &str, e: &io::Error) {
        if let Some(suppressed) = self.io_log.check() {
            tracing::warn!(source = self.name(), error = %e, suppressed, "{what}; retrying");
        }
    }

    /// Save the position if it moved (after the lines before it were
    /// delivered: the caller's order).
    async fn save(&mut self) {
        let Some(path) = self.position.clone() else {
            return;
        };
        let Some(cur) = &mut self.cur else { return };
        if cur.head.is_none() && cur.offset > 0 {
            cur.head = head_of(&cur.file).await.ok().flatten();
        }
        let key = (cur.dev, cur.ino, cur.offset);
        if self.last_saved == Some(key) {
            return;
        }
        let saved = Saved {
            version: VERSION,
            path: self.s.path.clone(),
            dev: cur.dev,
            ino: cur.ino,
            offset: cur.offset,
            line: cur.line,
            head: cur.head,
            state: self.tr.state().clone(),
        };
        match store(&path, &saved).await {
            Ok(()) => self.last_saved = Some(key),
            Err(e) => self.io_error("cannot save the queue_log read position", &e),
        }
    }
}

/// The pipeline stopped or the daemon is stopping.
struct Stop;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_is_the_first_whole_line() {
        assert_eq!(head_hash(b"no newline yet"), None);
        let a = head_hash(b"1|NONE|NONE|NONE|QUEUESTART|\nmore").unwrap();
        assert_eq!(head_hash(b"1|NONE|NONE|NONE|QUEUESTART|\nother"), Some(a));
        assert_ne!(head_hash(b"2|NONE|NONE|NONE|QUEUESTART|\nmore"), Some(a));
    }
}
