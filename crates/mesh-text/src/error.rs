use std::path::PathBuf;

/// Every failure this crate reports. Messages say what was wrong and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line in a data file did not have the expected shape.
    #[error("{path}:{line}: malformed line: {reason}")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// The shared data directory could not be found.
    #[error(
        "shared data directory not found: set MESH_SHARED_DATA to the directory holding \
         reviews/ (no shared/data found above {start})"
    )]
    DataDirNotFound { start: PathBuf },
    /// Input that cannot be used, e.g. too little data to train or split.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A model could not be (de)serialized.
    #[error("model serialization failed: {0}")]
    Json(#[from] serde_json::Error),
}
