//! The service's one error type and its mapping to gRPC status codes.
use tonic::Status;

/// Everything that can go wrong in the churn service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field was wrong.
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    /// The user has no stored order.
    #[error("{0}")]
    NotFound(String),
    /// The state store could not be reached or held a bad value.
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    /// The broker did not take an alert.
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// The model core refused its input or failed numerically.
    #[error("churn model: {0}")]
    Model(#[from] mesh_churn::Error),
    /// `MESH_CHURN_MODEL` could not be read or parsed.
    #[error("MESH_CHURN_MODEL: {0}")]
    ModelFile(String),
    /// Training could not run or its output could not be written.
    #[error("training: {0}")]
    Training(String),
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
        Error::Model(_) | Error::ModelFile(_) | Error::Training(_) | Error::Runtime(_) => {
            Status::internal(e.to_string())
        }
    }
}
