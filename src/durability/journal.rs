//! The journal: an append-only sequence of segment files holding, in order,
//! everything that changed the pipeline's state (frames with the wall time
//! they were applied at, and wall-clock ticks; scrapes and alert checks are
//! reads and are not journaled), so that replaying it reproduces the state
//! exactly.
//!
//! Segment layout: an 8-byte magic, then records of
//! `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`, where the
//! payload is `[tag: u8][wall time in ms: i64 LE][body]`: a frame's decoded
//! events in their packed binary form (see `events.rs`), older versions'
//! plain binary form or frame text, or a forget's call ids.
//! A record that is cut short or fails its checksum ends the segment: a
//! crash can only tear the last write, and what follows a torn record was
//! never acknowledged (see docs/durability.md).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::event::Millis;

/// What a new segment starts with. Segments of versions before the packed
/// frame record start with `RWJRNL02` (before the binary one, `RWJRNL01`)
/// and are still read; a version before it finds this one's magic unknown
/// and sets the segment aside (renamed `.corrupt`, not deleted) instead of
/// cutting it at the first tag 7.
const MAGIC: &[u8; 8] = b"RWJRNL03";
const MAGIC_V2: &[u8; 8] = b"RWJRNL02";
const MAGIC_V1: &[u8; 8] = b"RWJRNL01";
const HEADER: usize = 8;
/// No record is larger than this: the largest frame `ingest.max_frame_bytes`
/// allows (64 MiB) plus the tag and the time. A length field beyond it is
/// corruption, not a reason to allocate.
pub const MAX_RECORD: usize = (64 << 20) + 1 + 8;

/// One journal entry; the pipeline replays each with the same engine call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A frame as received, applied at `now`: what versions before the
    /// binary record wrote (still replayed; tests and tools write it too).
    Frame { now: Millis, text: &'a str },
    /// A frame's decoded events and decoding rejects in the plain binary
    /// form ([`super::events::decode_plain`]), applied at `now`: what
    /// versions before the packed form wrote (still replayed).
    Events { now: Millis, body: &'a [u8] },
    /// The same in the packed form ([`super::events`]): what the pipeline
    /// writes.
    Packed { now: Millis, body: &'a [u8] },
    /// The wall-clock timer (`Engine::tick`).
    Tick { now: Millis },
    /// A scrape. Written only by versions whose scrapes evicted idle calls;
    /// reads change nothing now, and these are replayed as a tick.
    Live { now: Millis },
    /// An alert check; as `Live`.
    Alerts { now: Millis },
    /// Calls a platform source's reconciliation dropped without an
    /// outcome: their ids, one per line.
    Forget { now: Millis, calls: &'a str },
}

impl Record<'_> {
    fn tag(&self) -> u8 {
        match self {
            Record::Frame { .. } => 1,
            Record::Tick { .. } => 2,
            Record::Live { .. } => 3,
            Record::Alerts { .. } => 4,
            Record::Forget { .. } => 5,
            Record::Events { .. } => 6,
            Record::Packed { .. } => 7,
        }
    }

    fn now(&self) -> Millis {
        match *self {
            Record::Frame { now, .. }
            | Record::Tick { now }
            | Record::Live { now }
            | Record::Alerts { now }
            | Record::Forget { now, .. }
            | Record::Events { now, .. }
            | Record::Packed { now, .. } => now,
        }
    }

    fn text(&self) -> &[u8] {
        match self {
            Record::Frame { text, .. } | Record::Forget { calls: text, .. } => text.as_bytes(),
            Record::Events { body, .. } | Record::Packed { body, .. } => body,
            _ => &[],
        }
    }

    /// Decode a payload whose checksum matched.
    fn parse(payload: &[u8]) -> Option<Record<'_>> {
        let (&tag, rest) = payload.split_first()?;
        let (now, text) = rest.split_first_chunk::<8>()?;
        let now = Millis::from_le_bytes(*now);
        match (tag, text.is_empty()) {
            (1, _) => Some(Record::Frame {
                now,
                text: std::str::from_utf8(text).ok()?,
            }),
            (2, true) => Some(Record::Tick { now }),
            (3, true) => Some(Record::Live { now }),
            (4, true) => Some(Record::Alerts { now }),
            (5, _) => Some(Record::Forget {
                now,
                calls: std::str::from_utf8(text).ok()?,
            }),
            (6, _) => Some(Record::Events { now, body: text }),
            (7, _) => Some(Record::Packed { now, body: text }),
            _ => None,
        }
    }
}

pub fn segment_name(seq: u64) -> String {
    format!("journal-{seq:020}.log")
}

/// The sequence number of a segment file name.
pub fn segment_seq(name: &str) -> Option<u64> {
    name.strip_prefix("journal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

/// Encode one record onto `out` (tests and tools; the pipeline builds a
/// [`Batch`], which shares frame texts instead of copying them).
pub fn encode(rec: &Record<'_>, out: &mut Vec<u8>) {
    head(rec.tag(), rec.now(), rec.text(), out);
    out.extend_from_slice(rec.text());
}

/// A record's length, checksum, tag and time, which precede its text.
fn head(tag: u8, now: Millis, text: &[u8], out: &mut Vec<u8>) {
    let tag = [tag];
    let now = now.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&tag);
    crc.update(&now);
    crc.update(text);
    let payload_len = (tag.len() + now.len() + text.len()) as u32;
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&tag);
    out.extend_from_slice(&now);
}

/// Records bound for one write. A frame's events are kept as the buffer
/// its connection encoded them into (reference-counted, never copied) and
/// written with the records' heads in one `writev`; small records are
/// copied in.
#[derive(Debug, Default)]
pub struct Batch {
    /// Heads and copied records, back to back.
    inline: Vec<u8>,
    /// Shared bodies, each with the length of `inline` written before it.
    shared: Vec<(usize, Bytes)>,
    len: usize,
}

impl Batch {
    /// A frame's events encoded by [`super::events::encode`] into `body`,
    /// applied at `now`.
    pub fn events(&mut self, now: Millis, body: Bytes) {
        self.shared(7, now, body);
    }

    /// A frame received as `text`, applied at `now` (the older record).
    pub fn frame(&mut self, now: Millis, text: Bytes) {
        self.shared(1, now, text);
    }

    fn shared(&mut self, tag: u8, now: Millis, body: Bytes) {
        head(tag, now, &body, &mut self.inline);
        self.len += HEAD + body.len();
        self.shared.push((self.inline.len(), body));
    }

    /// Any record, copied.
    pub fn record(&mut self, rec: &Record<'_>) {
        encode(rec, &mut self.inline);
        self.len += HEAD + rec.text().len();
    }

    /// Bytes the write appends to the segment.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The write's pieces in order (what `writev` takes).
    fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.shared.len() * 2 + 1);
        let mut at = 0;
        for (until, text) in &self.shared {
            out.push(IoSlice::new(&self.inline[at..*until]));
            out.push(IoSlice::new(text));
            at = *until;
        }
        out.push(IoSlice::new(&self.inline[at..]));
        out.retain(|s| !s.is_empty());
        out
    }

    /// The whole write as one buffer (fault injection cuts it short).
    fn flatten(&self) -> Vec<u8> {
        self.slices()
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }
}

/// Bytes already encoded (by [`encode`]), written as they are.
impl From<Vec<u8>> for Batch {
    fn from(inline: Vec<u8>) -> Batch {
        Batch {
            len: inline.len(),
            inline,
            shared: Vec::new(),
        }
    }
}

/// A record's head: length, CRC, tag, time.
const HEAD: usize = 4 + 4 + 1 + 8;

/// `write_all` over several buffers (std's `write_all_vectored` is not
/// stable yet).
fn write_all_vectored(mut file: &File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A write that failed, and whether the segment could be cut back to its
/// last complete record (if not, the next record would follow a torn one).
#[derive(Debug)]
pub struct WriteFailed {
    pub error: io::Error,
    pub undo: Result<(), io::Error>,
}

/// Appends encoded records to one segment file. Owned by the journal's
/// writer thread: nothing here runs on the async runtime.
pub struct Writer {
    seq: u64,
    file: Arc<File>,
    /// Bytes in the file: where a failed write is cut back to.
    len: u64,
}

impl Writer {
    /// Create segment `seq` in `dir` (it must not exist yet).
    pub fn create(dir: &Path, seq: u64) -> io::Result<Writer> {
        let path = dir.join(segment_name(seq));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        if let Err(e) = file.write_all(MAGIC) {
            // A full disk: leave no half segment behind, or every later
            // rotation would find this sequence number taken.
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Writer {
            seq,
            file: Arc::new(file),
            len: HEADER as u64,
        })
    }

    /// A writer appending to `file` as segment `seq` (tests: a file that
    /// fails every write).
    #[cfg(test)]
    pub(crate) fn over(file: File, seq: u64) -> Writer {
        Writer {
            seq,
            file: Arc::new(file),
            len: HEADER as u64,
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Bytes in the segment.
    pub fn size(&self) -> u64 {
        self.len
    }

    /// A handle on the segment file (the snapshot fsyncs the old segment).
    pub fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Write encoded records. On failure the segment is cut back to its
    /// last complete write, so no half record sits before the ones that
    /// follow; `fail_after` (fault injection) writes that many bytes and
    /// then fails as a full disk does.
    pub fn write(&mut self, batch: &Batch, fail_after: Option<usize>) -> Result<(), WriteFailed> {
        let result = match fail_after {
            None => write_all_vectored(&self.file, &mut batch.slices()),
            Some(n) => {
                let bytes = batch.flatten();
                (&*self.file)
                    .write_all(&bytes[..n.min(bytes.len())])
                    .and(Err(io::Error::from_raw_os_error(28)))
            }
        };
        match result {
            Ok(()) => {
                self.len += batch.len() as u64;
                Ok(())
            }
            Err(error) => Err(WriteFailed {
                error,
                undo: self.file.set_len(self.len),
            }),
        }
    }

    /// Make what was written durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Cut the segment back to `len` bytes (after a failed fsync under the
    /// batch policy: what follows the last good fsync was never answered).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }
}

/// What reading one segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SegmentRead {
    pub records: u64,
    /// Bytes after the last good record that were cut off (torn or corrupt).
    pub cut_bytes: u64,
    /// Why reading stopped early, for the log.
    pub problem: Option<String>,
}

/// Read segment `path`, calling `each` for every good record in order. A
/// torn or corrupt tail is cut off the file (so the next start sees a clean
/// segment) and reported; only I/O errors on the file itself are errors.
/// `each` returns false to have the segment cut at that record (one that
/// cannot be replayed).
pub fn read_segment(
    path: &Path,
    mut each: impl FnMut(Record<'_>) -> bool,
) -> io::Result<SegmentRead> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut out = SegmentRead::default();
    let known = |magic: &[u8]| [MAGIC, MAGIC_V2, MAGIC_V1].iter().any(|m| &m[..] == magic);
    if bytes.len() < HEADER || !known(&bytes[..HEADER]) {
        out.cut_bytes = bytes.len() as u64;
        out.problem = Some("not a journal segment (bad header)".into());
        cut(path, 0)?;
        return Ok(out);
    }
    let mut at = HEADER;
    while at < bytes.len() {
        match next_record(&bytes[at..]) {
            Ok((rec, used)) => {
                if !each(rec) {
                    out.cut_bytes = (bytes.len() - at) as u64;
                    out.problem = Some(format!("a record that cannot be replayed at byte {at}"));
                    cut(path, at as u64)?;
                    break;
                }
                out.records += 1;
                at += used;
            }
            Err(problem) => {
                out.cut_bytes = (bytes.len() - at) as u64;
                out.problem = Some(format!("{problem} at byte {at}"));
                cut(path, at as u64)?;
                break;
            }
        }
    }
    Ok(out)
}

fn next_record(buf: &[u8]) -> Result<(Record<'_>, usize), &'static str> {
    let Some((head, rest)) = buf.split_first_chunk::<8>() else {
        return Err("torn record header");
    };
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD {
        return Err("impossible record length");
    }
    let Some(payload) = rest.get(..len) else {
        return Err("torn record");
    };
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch");
    }
    let rec = Record::parse(payload).ok_or("unknown record")?;
    Ok((rec, 8 + len))
}

/// Truncate a segment at `len` and make that durable, so a bad tail is
/// reported once, not on every start.
fn cut(path: &Path, len: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    if len == 0 {
        drop(file);
        let mut bad = PathBuf::from(path);
        bad.set_extension("corrupt");
        return std::fs::rename(path, bad);
    }
    file.set_len(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record<'static>> {
        vec![
            Record::Frame {
                now: 1_700_000_000_000,
                text: r#"{"type":"call_offered"}"#,
            },
            Record::Tick { now: -5 },
            Record::Live { now: 42 },
            Record::Alerts { now: i64::MAX },
            Record::Frame { now: 7, text: "" },
            Record::Forget {
                now: 8,
                calls: "ast:1.2:1\nfs:uuid:1\n",
            },
            Record::Events {
                now: 9,
                body: &[0, 1, 0, 0, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0],
            },
            Record::Events { now: 10, body: &[] },
            Record::Packed {
                now: 11,
                body: &[0, 1, 0, 0, 8, 0, 2],
            },
            Record::Packed { now: 12, body: &[] },
        ]
    }

    /// A new segment says it may hold packed records (tag 7), so a version
    /// that knows only tag 6 sets it aside instead of cutting it there.
    #[test]
    fn a_new_segment_starts_with_the_packed_records_magic() {
        let dir = tempfile::tempdir().unwrap();
        drop(Writer::create(dir.path(), 1).unwrap());
        let bytes = std::fs::read(dir.path().join(segment_name(1))).unwrap();
        assert_eq!(&bytes[..], b"RWJRNL03");
    }

    /// Segments of versions before the packed frame record (and before the
    /// binary one) still read.
    #[test]
    fn segments_with_the_earlier_magics_still_read() {
        for magic in [MAGIC_V1, MAGIC_V2] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(segment_name(1));
            let mut bytes = magic.to_vec();
            for r in records() {
                encode(&r, &mut bytes);
            }
            std::fs::write(&path, &bytes).unwrap();
            let (seen, read) = read_all(&path);
            assert_eq!(seen.len(), records().len());
            assert_eq!(read.cut_bytes, 0);
        }
    }

    fn read_all(path: &Path) -> (Vec<String>, SegmentRead) {
        let mut seen = Vec::new();
        let r = read_segment(path, |rec| {
            seen.push(format!("{rec:?}"));
            true
        })
        .unwrap();
        (seen, r)
    }

    fn written(dir: &Path) -> PathBuf {
        let mut w = Writer::create(dir, 3).unwrap();
        // Frames shared (written from their own buffers), the rest copied:
        // the segment reads back the same either way.
        let mut batch = Batch::default();
        for r in records() {
            match r {
                Record::Frame { now, text } => {
                    batch.frame(now, Bytes::copy_from_slice(text.as_bytes()))
                }
                Record::Packed { now, body } => batch.events(now, Bytes::copy_from_slice(body)),
                other => batch.record(&other),
            }
        }
        let mut flat = Vec::new();
        for r in records() {
            encode(&r, &mut flat);
        }
        assert_eq!(batch.flatten(), flat);
        assert_eq!(batch.len(), flat.len());
        w.write(&batch, None).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join(segment_name(3))).unwrap().len(),
            w.size()
        );
        dir.join(segment_name(3))
    }

    #[test]
    fn records_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let (seen, r) = read_all(&path);
        let want: Vec<String> = records().iter().map(|r| format!("{r:?}")).collect();
        assert_eq!(seen, want);
        assert_eq!(r.cut_bytes, 0);
        assert_eq!(segment_seq(&segment_name(3)), Some(3));
    }

    #[test]
    fn every_torn_tail_is_cut_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let full = std::fs::read(&path).unwrap();
        // Record boundaries, from an intact read.
        let mut ends = vec![HEADER];
        let mut at = HEADER;
        while at < full.len() {
            at += next_record(&full[at..]).unwrap().1;
            ends.push(at);
        }
        for len in HEADER..full.len() {
            std::fs::write(&path, &full[..len]).unwrap();
            let (seen, r) = read_all(&path);
            let whole = ends.iter().rposition(|&e| e <= len).unwrap();
            assert_eq!(seen.len(), whole, "cut at {len}");
            assert_eq!(r.cut_bytes as usize, len - ends[whole]);
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() as usize,
                ends[whole]
            );
            // The next read finds a clean segment.
            assert_eq!(read_all(&path).1.cut_bytes, 0);
        }
    }

    #[test]
    fn a_flipped_bit_ends_the_segment_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        let second = HEADER + 8 + 9 + r#"{"type":"call_offered"}"#.len();
        bytes[second + 8] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (seen, r) = read_all(&path);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            r.problem.as_deref(),
            Some(&*format!("record checksum mismatch at byte {second}"))
        );
        assert_eq!(r.cut_bytes as usize, bytes.len() - second);
    }

    #[test]
    fn a_failed_write_is_cut_back_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let before = std::fs::read(&path).unwrap();
        let mut w = Writer {
            seq: 3,
            file: Arc::new(OpenOptions::new().append(true).open(&path).unwrap()),
            len: before.len() as u64,
        };
        let mut bytes = Vec::new();
        encode(&Record::Tick { now: 1 }, &mut bytes);
        let bytes = Batch::from(bytes);
        let failed = w.write(&bytes, Some(5)).unwrap_err();
        assert_eq!(failed.error.raw_os_error(), Some(28));
        assert!(failed.undo.is_ok());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the half record is gone"
        );
        w.write(&bytes, None).unwrap();
        let (seen, r) = read_all(&path);
        assert_eq!(seen.len(), records().len() + 1);
        assert_eq!(r.cut_bytes, 0);
    }

    #[test]
    fn the_largest_frame_allowed_is_read_back() {
        // ingest.max_frame_bytes allows 64 MiB: its record must not be taken
        // for corruption at recovery (it was, by 9 bytes, before).
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::create(dir.path(), 1).unwrap();
        let text = "x".repeat(64 << 20);
        let mut bytes = Vec::new();
        encode(
            &Record::Frame {
                now: 1,
                text: &text,
            },
            &mut bytes,
        );
        w.write(&Batch::from(bytes), None).unwrap();
        let (seen, r) = {
            let mut n = 0;
            let r = read_segment(&dir.path().join(segment_name(1)), |rec| {
                n += usize::from(
                    matches!(rec, Record::Frame { text, .. } if text.len() == 64 << 20),
                );
                true
            })
            .unwrap();
            (n, r)
        };
        assert_eq!((seen, r.cut_bytes, r.problem), (1, 0, None));
    }

    #[test]
    fn a_bad_header_sets_the_segment_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_name(9));
        std::fs::write(&path, b"garbage!and more").unwrap();
        let (seen, r) = read_all(&path);
        assert!(seen.is_empty());
        assert_eq!(r.cut_bytes, 16);
        assert!(!path.exists());
        assert!(dir
            .path()
            .join("journal-00000000000000000009.corrupt")
            .exists());
    }
}
