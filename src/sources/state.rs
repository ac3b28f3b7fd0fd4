//! Where a PBX source keeps its own state in the data directory (a
//! translator's correlation, a file's read position) and how it is
//! replaced: a temporary file renamed over the old one, so a crash at any
//! moment leaves the old state or the new, never half of one.
//!
//! The file is written after the events it accounts for are in the journal,
//! so it is never ahead of what a restart replays (at worst behind it, and
//! events read again are duplicates by their deterministic ids). It is not
//! fsynced: like an acknowledged frame under `fsync = "interval"`, a power
//! loss may take the last moments back, never forward.

use std::io;
use std::path::{Path, PathBuf};

/// `<data_dir>/sources/<name>.<kind>.json`. Source names are already plain
/// (`a-z`, `0-9`, `_`, `-`: configuration refuses others); anything else
/// is replaced all the same, so no name can point outside the directory.
pub fn path(data_dir: &Path, name: &str, kind: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    data_dir.join("sources").join(format!("{safe}.{kind}.json"))
}

/// Replace the file at `path` with `bytes` (blocking: call it from
/// `spawn_blocking`).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_have_safe_names_and_replace_atomically() {
        let p = path(Path::new("/data"), "pbx/../x y", "queue_log");
        assert_eq!(p, Path::new("/data/sources/pbx____x_y.queue_log.json"));
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "pbx", "ami");
        write(&p, b"{\"a\":1}").unwrap();
        write(&p, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":2}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sources"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("pbx.ami.json")]);
    }
}
