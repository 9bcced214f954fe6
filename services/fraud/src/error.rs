//! The service's single error type and its one mapping to `tonic::Status`.

/// Everything that can go wrong in the fraud service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request or event field is missing or out of range.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// Path of the field, e.g. `envelope.order_placed.items[0].quantity`.
        field: String,
        /// What was wrong and what was expected.
        reason: String,
    },
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The state store did not answer or refused.
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    /// The broker did not take a record.
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// The fraud core failed (rules file, model file, training, scoring).
    #[error("fraud core: {0}")]
    Core(#[from] mesh_fraud::Error),
    /// A value in the store could not be decoded.
    #[error("stored value at {key}: {reason}")]
    Corrupt {
        /// Store key (relative to its slot).
        key: String,
        /// What was wrong.
        reason: String,
    },
}

impl Error {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with `prefix.` in front of an invalid field's path.
    pub fn in_field(self, prefix: &str) -> Self {
        match self {
            Error::InvalidArgument { field, reason } => Error::InvalidArgument {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }
}

/// Result alias of the service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one place errors become gRPC statuses.
pub fn to_status(e: Error) -> tonic::Status {
    match &e {
        Error::InvalidArgument { .. } => tonic::Status::invalid_argument(e.to_string()),
        Error::NotFound(_) => tonic::Status::not_found(e.to_string()),
        Error::Store(_) | Error::Bus(_) => tonic::Status::unavailable(e.to_string()),
        Error::Core(_) | Error::Corrupt { .. } => tonic::Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let s = to_status(
            Error::invalid("order_placed.items", "at least one item").in_field("envelope"),
        );
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(
            s.message().contains("envelope.order_placed.items"),
            "{}",
            s.message()
        );
        assert_eq!(
            to_status(Error::NotFound("x".into())).code(),
            tonic::Code::NotFound
        );
    }
}
