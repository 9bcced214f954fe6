//! Locating the shared data directory and reading the shipped review files.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The shared data directory: `$MESH_SHARED_DATA` if set, else the first `shared/data` found
/// walking up from this crate's manifest directory (works in /work/stage and in the
/// workspace under `crates/`).
pub fn shared_data_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MESH_SHARED_DATA") {
        let dir = PathBuf::from(dir);
        if dir.is_dir() {
            return Ok(dir);
        }
        return Err(Error::DataDirNotFound { start: dir });
    }
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|a| a.join("shared").join("data"))
        .find(|p| p.is_dir())
        .ok_or(Error::DataDirNotFound { start })
}

/// A file under `reviews/` in the shared data directory.
pub fn reviews_file(name: &str) -> Result<PathBuf> {
    Ok(shared_data_dir()?.join("reviews").join(name))
}

pub(crate) fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One line of a VADER ground-truth file: `id <TAB> mean rating <TAB> text`.
#[derive(Debug, Clone, PartialEq)]
pub struct RatedText {
    pub id: String,
    pub rating: f64,
    pub text: String,
}

/// Reads a VADER-format ground-truth file; blank lines are skipped, anything else that is not
/// `id<TAB>rating<TAB>text` with a finite rating in -4..=4 is an error naming the line.
pub fn read_vader_format(path: &Path) -> Result<Vec<RatedText>> {
    let raw = read_to_string(path)?;
    let mut out = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: &str| Error::Malformed {
            path: path.to_path_buf(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let mut parts = line.splitn(3, '\t');
        let (Some(id), Some(rating), Some(text)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `id<TAB>rating<TAB>text`"));
        };
        let rating: f64 = rating
            .trim()
            .parse()
            .map_err(|_| bad(&format!("rating {rating:?} is not a number")))?;
        if !rating.is_finite() || !(-4.0..=4.0).contains(&rating) {
            return Err(bad(&format!("rating {rating} outside -4..=4")));
        }
        out.push(RatedText {
            id: id.to_string(),
            rating,
            text: text.trim().to_string(),
        });
    }
    if out.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} holds no rated lines",
            path.display()
        )));
    }
    Ok(out)
}

/// Reads a one-review-per-line file, trimming and dropping blank lines.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    Ok(read_to_string(path)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_line_names_its_number() {
        let dir = std::env::temp_dir().join(format!("mesh-text-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.txt");
        std::fs::write(&f, "a\t1.0\tgood\n\nb\tnope\tbad\n").unwrap();
        let err = read_vader_format(&f).unwrap_err().to_string();
        assert!(err.contains(":3:"), "{err}");
        assert!(err.contains("not a number"), "{err}");
        std::fs::write(&f, "a\t9\tout of range\n").unwrap();
        assert!(read_vader_format(&f)
            .unwrap_err()
            .to_string()
            .contains(":1:"));
    }

    #[test]
    fn missing_file_is_io_error_with_path() {
        let err = read_vader_format(Path::new("/nonexistent/x.txt")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/x.txt"));
    }
}
