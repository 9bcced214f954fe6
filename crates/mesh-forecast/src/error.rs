//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in `mesh-forecast`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A series had no observations where at least one was needed.
    #[error("series is empty: at least one observation is needed to forecast")]
    EmptySeries,
    /// A series contained a NaN or infinite value.
    #[error("series value at index {index} is {value}: all observations must be finite")]
    NonFinite {
        /// Position of the offending observation.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// An argument was outside its valid range.
    #[error("invalid argument `{name}`: {reason}")]
    InvalidArgument {
        /// Argument name.
        name: &'static str,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A model could not be fitted to the series.
    #[error("model {model} could not be fitted: {reason}")]
    Fit {
        /// Model name.
        model: String,
        /// Why the fit failed.
        reason: String,
    },
    /// A data file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A data file was read but its content is not in the expected format.
    #[error("bad data in {path}: {reason}")]
    Data {
        /// The file that was being parsed.
        path: PathBuf,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// A plot file could not be written (`--plot DIR`).
    #[error(transparent)]
    Plot(#[from] mesh_plot::Error),
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}
