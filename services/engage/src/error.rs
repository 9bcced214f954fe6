//! The service's one error type and its mapping to gRPC status codes.
use tonic::Status;

/// Everything that can go wrong in the engage service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field was wrong.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// An unknown campaign, item or offer.
    #[error("{0}")]
    NotFound(String),
    /// An erased user (`<tenant>/<user>`): answered as not found, and never
    /// enrolled or offered anything again.
    #[error("unknown user {0}")]
    Erased(String),
    /// The state store could not be reached or held a bad value.
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    /// The broker did not take a decision event.
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// The decision core refused its input.
    #[error("engage model: {0}")]
    Model(#[from] mesh_engage::EngageError),
    /// A peer this answer needs did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// A stored value could not be read back.
    #[error("stored {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// Configuration or server start-up failed.
    #[error(transparent)]
    Runtime(#[from] mesh_runtime::Error),
}

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The one place errors become gRPC statuses.
pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::NotFound(_) | Error::Erased(_) => Status::not_found(e.to_string()),
        Error::Store(_) | Error::Bus(_) | Error::Unavailable(_) => {
            Status::unavailable(e.to_string())
        }
        Error::Model(_) | Error::Corrupt { .. } | Error::Runtime(_) => {
            Status::internal(e.to_string())
        }
    }
}
