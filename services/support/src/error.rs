//! The service's one error type and its mapping to gRPC status codes.
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field was wrong.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// The text models could not be trained or loaded.
    #[error("text models: {0}")]
    Text(#[from] mesh_text::Error),
    #[error("stored {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(transparent)]
    Runtime(#[from] mesh_runtime::Error),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::NotFound(_) => Status::not_found(e.to_string()),
        Error::Store(_) | Error::Bus(_) => Status::unavailable(e.to_string()),
        Error::Text(_) | Error::Corrupt { .. } | Error::Runtime(_) => {
            Status::internal(e.to_string())
        }
    }
}

/// Checks a required text field: non-empty, at most `max` bytes.
pub fn text(field: &str, v: &str, max: usize) -> Result<()> {
    if v.trim().is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    if v.len() > max {
        return Err(Error::invalid(
            field,
            format!("{} bytes; at most {max}", v.len()),
        ));
    }
    Ok(())
}
