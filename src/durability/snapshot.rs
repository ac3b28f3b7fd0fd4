//! Snapshot files: the whole state (engine and metrics store) at the start
//! of journal segment `seq`, written to a temporary file, fsynced and renamed
//! into place, so a snapshot on disk is always whole. Layout:
//! `[magic: 8][CRC-32 of body: u32 LE][body length: u64 LE][body]`, the body
//! being the postcard encoding of the state.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RWSNAP01";
const HEADER: usize = 8 + 4 + 8;

pub fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.bin")
}

/// The journal segment a snapshot file name starts at.
pub fn snapshot_seq(name: &str) -> Option<u64> {
    name.strip_prefix("snapshot-")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

/// Frame an encoded state as a snapshot file's bytes.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The body of a snapshot file, or why it cannot be used.
pub fn unframe(bytes: &[u8]) -> Result<&[u8], &'static str> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a ringwatch snapshot (bad header)");
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let body = &bytes[HEADER..];
    if body.len() as u64 != len {
        return Err("truncated snapshot");
    }
    if crc32fast::hash(body) != crc {
        return Err("snapshot checksum mismatch");
    }
    Ok(body)
}

/// Write `framed` as snapshot `seq` in `dir`, atomically and durably:
/// temporary file, fsync, rename, fsync of the directory.
pub fn write(dir: &Path, seq: u64, framed: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(snapshot_name(seq));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(seq)));
    let mut file = File::create(&tmp)?;
    file.write_all(framed)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(path)
}

/// Append the postcard encoding of `v` to `out` (a snapshot body is
/// assembled from parts encoded at different times; postcard writes a
/// struct or tuple as its fields one after the other).
pub fn append<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    struct Append<'a>(&'a mut Vec<u8>);
    impl postcard::ser_flavors::Flavor for Append<'_> {
        type Output = ();
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            // Most writes are varints of 1 to 10 bytes: a call to memcpy
            // for each was a third of a snapshot's time.
            self.0.extend_from_slice(data);
            Ok(())
        }
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.0.push(data);
            Ok(())
        }
        fn finalize(self) -> postcard::Result<()> {
            Ok(())
        }
    }
    postcard::serialize_with_flavor(v, Append(out)).expect("in-memory encoding cannot fail");
}

pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Make renames, creations and deletions in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_caught() {
        let body = b"some state".to_vec();
        let framed = frame(&body);
        assert_eq!(unframe(&framed), Ok(&body[..]));
        for len in 0..framed.len() {
            assert!(unframe(&framed[..len]).is_err(), "truncated to {len}");
        }
        let mut flipped = framed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(unframe(&flipped), Err("snapshot checksum mismatch"));
    }

    #[test]
    fn write_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 7, &frame(b"one")).unwrap();
        assert_eq!(
            snapshot_seq(path.file_name().unwrap().to_str().unwrap()),
            Some(7)
        );
        assert_eq!(unframe(&read(&path).unwrap()), Ok(&b"one"[..]));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }
}
