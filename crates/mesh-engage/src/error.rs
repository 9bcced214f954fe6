//! The one error type of the crate.

use thiserror::Error;

/// Everything that can go wrong in `mesh-engage`. Messages name the offending input and
/// what was expected, so the service can return them as `InvalidArgument` unchanged.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngageError {
    /// A numeric input was NaN or infinite.
    #[error("{what} must be a finite number, got {value}")]
    NotFinite {
        /// Name of the input.
        what: &'static str,
        /// The value received.
        value: f64,
    },
    /// A numeric input was outside its allowed range.
    #[error("{what} must be {expected}, got {value}")]
    OutOfRange {
        /// Name of the input.
        what: &'static str,
        /// The allowed range, in words.
        expected: &'static str,
        /// The value received.
        value: f64,
    },
    /// A collection that must hold data was empty or too small.
    #[error("{what}: need at least {needed}, got {got}")]
    NotEnoughData {
        /// What was too small.
        what: &'static str,
        /// Minimum size.
        needed: usize,
        /// Size received.
        got: usize,
    },
    /// Vectors that must agree in length did not.
    #[error("{what}: expected length {expected}, got {got}")]
    DimensionMismatch {
        /// What was mismatched.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// An index (arm, campaign) did not exist.
    #[error("{what} index {index} out of range (have {len})")]
    UnknownIndex {
        /// What was indexed.
        what: &'static str,
        /// Index received.
        index: usize,
        /// Number of valid indices.
        len: usize,
    },
    /// Price constraints leave no feasible price.
    #[error(
        "price constraints are infeasible: lowest allowed {low} exceeds highest allowed {high}"
    )]
    Infeasible {
        /// Tightest lower bound.
        low: f64,
        /// Tightest upper bound.
        high: f64,
    },
    /// A numerical routine failed (singular matrix, model fit).
    #[error("numerical failure in {what}: {detail}")]
    Numerical {
        /// Which routine.
        what: &'static str,
        /// Details from the routine.
        detail: String,
    },
}

/// Result alias for the crate.
pub type Result<T> = std::result::Result<T, EngageError>;

impl From<smartcore::error::Failed> for EngageError {
    fn from(e: smartcore::error::Failed) -> Self {
        EngageError::Numerical {
            what: "smartcore",
            detail: e.to_string(),
        }
    }
}

/// Checks `value` is finite.
pub(crate) fn finite(what: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(EngageError::NotFinite { what, value })
    }
}

/// Checks `value` is finite and strictly positive.
pub(crate) fn positive(what: &'static str, value: f64) -> Result<f64> {
    finite(what, value)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(EngageError::OutOfRange {
            what,
            expected: "> 0",
            value,
        })
    }
}

/// Checks `value` is finite and not negative.
pub(crate) fn non_negative(what: &'static str, value: f64) -> Result<f64> {
    finite(what, value)?;
    if value >= 0.0 {
        Ok(value)
    } else {
        Err(EngageError::OutOfRange {
            what,
            expected: ">= 0",
            value,
        })
    }
}
