//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in `mesh-vrp`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file in question.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An instance or solution file did not follow its format.
    #[error("{file}: line {line}: {message}")]
    Parse {
        /// File (or instance) name.
        file: String,
        /// 1-based line number (0 when not tied to a line).
        line: usize,
        /// What was wrong and what was expected.
        message: String,
    },
    /// An instance is internally inconsistent (e.g. a demand larger than the capacity).
    #[error("invalid instance {name}: {message}")]
    InvalidInstance {
        /// Instance name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A solution broke a constraint; the checker lists every violation it found.
    #[error("infeasible solution for {name}: {}", violations.join("; "))]
    Infeasible {
        /// Instance name.
        name: String,
        /// Human readable violations.
        violations: Vec<String>,
    },
    /// Options that cannot work (e.g. a budget with neither a time nor an iteration limit).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A re-planning request referred to stops that do not fit the plan.
    #[error("invalid re-plan request: {0}")]
    InvalidChange(String),
    /// No feasible solution was found within the budget.
    #[error("no feasible solution found for {name} within the budget")]
    NoFeasibleSolution {
        /// Instance name.
        name: String,
    },
    /// A plot file could not be written (`--plot DIR`).
    #[error(transparent)]
    Plot(#[from] mesh_plot::Error),
}

/// Shorthand result type.
pub type Result<T> = std::result::Result<T, Error>;
