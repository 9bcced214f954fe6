//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in `mesh-fraud`.
///
/// Messages say what was wrong and what was expected, so the operator CLI can print them as is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The rules file is not valid TOML or does not match the rules schema.
    #[error("rules file {path}: {message}")]
    RulesParse {
        /// The rules file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// One rule in an otherwise well-formed rules file is wrong.
    #[error("rule `{rule}`, field `{field}`: {message}")]
    InvalidRule {
        /// The rule's reason code (or `#index` when the code itself is missing).
        rule: String,
        /// The field that is wrong.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
    /// A model could not be trained or used.
    #[error("model: {0}")]
    Model(String),
    /// Serialized model has a version this build cannot read.
    #[error("model format version {found} is not supported (expected {expected})")]
    ModelVersion {
        /// Version found in the file.
        found: u32,
        /// Version this build writes and reads.
        expected: u32,
    },
    /// A CSV table could not be used for training.
    #[error("csv {path}: {message}")]
    Csv {
        /// The CSV file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// A column named on the command line does not exist.
    #[error("csv {path}: column `{column}` not found (columns: {available})")]
    MissingColumn {
        /// The CSV file.
        path: String,
        /// The missing column.
        column: String,
        /// The columns that do exist, comma separated.
        available: String,
    },
    /// The label column is not binary.
    #[error("csv {path}: label column `{column}` is not binary: {message}")]
    NonBinaryLabel {
        /// The CSV file.
        path: String,
        /// The label column.
        column: String,
        /// Values found.
        message: String,
    },
    /// Invalid arguments or data for an evaluation.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// JSON (de)serialization failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A plot file could not be written (`--plot DIR`).
    #[error(transparent)]
    Plot(#[from] mesh_plot::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
