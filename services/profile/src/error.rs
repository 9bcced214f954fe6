//! The service's one error type and its mapping to gRPC status codes.
use tonic::Status;

/// Everything that can go wrong in the profile service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field was wrong.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The user (or model) is unknown.
    #[error("{0}")]
    NotFound(String),
    /// The state store could not be reached or held a bad value.
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    /// The broker did not take a transition.
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// A config file (tags) or stored model could not be read.
    #[error("{0}")]
    Config(String),
    /// Configuration or server start-up failed.
    #[error(transparent)]
    Runtime(#[from] mesh_runtime::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The one place errors become gRPC statuses.
pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::NotFound(_) => Status::not_found(e.to_string()),
        Error::Store(_) | Error::Bus(_) => Status::unavailable(e.to_string()),
        Error::Config(_) | Error::Runtime(_) => Status::internal(e.to_string()),
    }
}
