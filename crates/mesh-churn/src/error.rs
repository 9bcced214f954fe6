//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in `mesh-churn`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A purchase-log line did not match the expected CDNOW layout.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line number in the input.
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An argument was outside its valid domain.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A numerical routine failed (non-convergence, domain error, non-finite value).
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// The optimizer failed to find a finite optimum.
    #[error("model fit failed: {0}")]
    Fit(String),
    /// A smartcore model failed to fit or predict.
    #[error("smartcore: {0}")]
    Smartcore(String),
    /// A model could not be (de)serialised.
    #[error("model serialisation: {0}")]
    Serde(#[from] serde_json::Error),
    /// A plot file could not be written (`--plot DIR`).
    #[error(transparent)]
    Plot(#[from] mesh_plot::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<smartcore::error::Failed> for Error {
    fn from(e: smartcore::error::Failed) -> Self {
        Error::Smartcore(e.to_string())
    }
}
