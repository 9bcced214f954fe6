//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in `mesh-recommend`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A data file was read but its content is not what was expected.
    #[error("bad data in {path} line {line}: {message}")]
    Parse {
        /// The file being parsed.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Training was asked for with no usable interactions.
    #[error("cannot train {model}: {reason}")]
    EmptyTraining {
        /// The model that was being trained.
        model: &'static str,
        /// Why there is nothing to train on.
        reason: String,
    },
    /// A numerical routine failed (e.g. a matrix that should be positive definite was not).
    #[error("numerical failure in {0}")]
    Numerical(String),
    /// A serialized model could not be encoded or decoded.
    #[error("model (de)serialization failed: {0}")]
    Serde(#[from] serde_json::Error),
    /// A serialized model has a format version this build does not understand.
    #[error("model format version {found} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// Version found in the artifact.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
