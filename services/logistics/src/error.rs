//! The service's one error type and its mapping to gRPC status codes.
use tonic::Status;

/// Everything that can go wrong in the logistics service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field was wrong; `field` names it (e.g. `stops[3].demand`).
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The thing asked for does not exist (yet).
    #[error("{0}")]
    NotFound(String),
    /// The state store could not be reached or answered nonsense.
    #[error("state store: {0}")]
    Store(#[from] mesh_store::Error),
    /// The broker did not take a record.
    #[error("broker: {0}")]
    Bus(#[from] mesh_bus::Error),
    /// The route optimizer refused or failed.
    #[error("routing: {0}")]
    Routing(#[from] mesh_vrp::Error),
    /// The forecasting core refused or failed.
    #[error("forecasting: {0}")]
    Forecast(#[from] mesh_forecast::Error),
    /// Production mode (`MESH_LOGISTICS_REQUIRE_DEPOTS=true`) and the
    /// wave's warehouse has no configured depot.
    #[error(
        "warehouse {warehouse} has no depot: add {warehouse}=<lat>,<lon> to MESH_LOGISTICS_DEPOTS \
         (required because MESH_LOGISTICS_REQUIRE_DEPOTS=true)"
    )]
    NoDepot { warehouse: String },
    /// A stored plan could not be read back.
    #[error("stored plan of wave {wave}: {reason}")]
    BadPlan { wave: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Shorthand for [`Error::InvalidArgument`].
pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The one place errors become gRPC statuses.
pub fn to_status(e: Error) -> Status {
    match &e {
        Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        Error::NotFound(_) => Status::not_found(e.to_string()),
        Error::Store(_) | Error::Bus(_) => Status::unavailable(e.to_string()),
        Error::Routing(mesh_vrp::Error::InvalidInstance { .. })
        | Error::Routing(mesh_vrp::Error::InvalidOptions(_))
        | Error::Forecast(mesh_forecast::Error::InvalidArgument { .. })
        | Error::Forecast(mesh_forecast::Error::NonFinite { .. }) => {
            Status::invalid_argument(e.to_string())
        }
        Error::Routing(mesh_vrp::Error::NoFeasibleSolution { .. }) | Error::NoDepot { .. } => {
            Status::failed_precondition(e.to_string())
        }
        Error::Routing(_) | Error::Forecast(_) | Error::BadPlan { .. } => {
            Status::internal(e.to_string())
        }
    }
}
