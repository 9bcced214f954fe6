//! Model files: written atomically by the trainer, picked up by the serving
//! service without a restart.
//!
//! A writer puts the bytes in a temporary file in the same directory and
//! renames it over the old one ([`write_atomically`]), so a reader sees the
//! old file or the new one, never half of one. A reader polls
//! ([`FileWatch::read_if_changed`]) by modification time and length; the
//! service parses and swaps (see `crate::shutdown::spawn_poller`).
use std::io;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

/// Writes `bytes` to `path` through a temporary file and a rename in the
/// same directory (created if missing).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The (modification time, length) of the file last read, so a poll reads
/// the file only when it changed.
#[derive(Debug, Default)]
pub struct FileWatch {
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl FileWatch {
    /// The file's bytes if it changed since the last read; `None` if it did
    /// not, or does not exist (the current model keeps serving). The stamp
    /// is kept whatever the caller makes of the bytes, so a file that fails
    /// to parse is reported once, not at every poll, and the next write is
    /// picked up.
    pub fn read_if_changed(&self, path: &Path) -> io::Result<Option<Vec<u8>>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let mut last = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *last == Some(stamp) {
            return Ok(None);
        }
        let bytes = std::fs::read(path)?;
        *last = Some(stamp);
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_is_read_once_per_change() {
        let dir = std::env::temp_dir().join(format!("mesh-model-file-{}", std::process::id()));
        let path = dir.join("sub").join("m.json");
        let watch = FileWatch::default();
        assert_eq!(watch.read_if_changed(&path).unwrap(), None, "missing");
        write_atomically(&path, b"one").unwrap();
        assert_eq!(
            watch.read_if_changed(&path).unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(watch.read_if_changed(&path).unwrap(), None, "unchanged");
        write_atomically(&path, b"second").unwrap();
        assert_eq!(
            watch.read_if_changed(&path).unwrap().as_deref(),
            Some(&b"second"[..])
        );
        let leftovers = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
