//! The service's one error type and its mapping to gRPC status codes.
use std::path::PathBuf;

use tonic::Status;

/// Everything that can go wrong in the recommend service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field was missing or out of range.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The state store could not be read or written.
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    /// The model core refused (bad artifact, training failure).
    #[error("model: {0}")]
    Model(#[from] mesh_recommend::Error),
    /// A model file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The broker could not be read (training from the event log).
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// A background computation did not finish.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl Error {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one place errors become gRPC statuses.
pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::Store(_) | Error::Io { .. } | Error::Bus(_) => Status::unavailable(e.to_string()),
        Error::Model(_) | Error::Task(_) => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_name_the_field() {
        let s = to_status(Error::invalid("user_id", "is required"));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("user_id"));
        let s = to_status(Error::Store(mesh_store::Error::BadValue {
            key: "k".into(),
            reason: "r".into(),
        }));
        assert_eq!(s.code(), tonic::Code::Unavailable);
    }
}
