//! Demand forecasting and inventory core for the logistics service.
//!
//! Owns: univariate forecasting of demand series (automatic ETS selected by AICc, Theta,
//! dynamic optimised Theta, ARIMA, seasonal ARIMA, damped trend, seasonal naive and their validation-weighted
//! combination), prediction intervals, an
//! incremental [`Forecaster`] that absorbs observations and refits on a schedule, and the
//! inventory maths (safety stock, reorder point, order quantity, stock-out risk). Also
//! the M3-protocol evaluation behind `mesh eval forecast`.
//!
//! Must not: talk to Kafka, Redis or gRPC, build series from events, keep global state or
//! read files other than the evaluation data it is pointed at. Services own I/O; this
//! crate is pure computation on `&[f64]`.
//!
//! # Layout
//! - [`ets`]: ETS state-space recursion ([`ets::model`]) and ML fit / AICc selection ([`ets::fit`]).
//! - [`theta`]: Theta (SES with drift) and the seasonal-adjustment wrapper.
//! - [`dyntheta`]: optimised and dynamic optimised Theta (OTM/DOTM).
//! - [`arima`]: ARIMA(p,d,q) with KPSS differencing and AICc order selection.
//! - [`sarima`]: ARIMA(p,d,q)(0,1,0)_m on the seasonally differenced series.
//! - [`combine`]: combination weights from rolling-origin validation inside the history.
//! - [`naive`]: naive and seasonal naive.
//! - [`decompose`]: classical decomposition, ACF and the 90% seasonality test.
//! - [`method`]: [`Method`] names, [`FittedModel`], dispatch, combination, fallback.
//! - [`forecast`]: the [`Forecast`] value and prediction intervals.
//! - [`forecaster`]: incremental [`Forecaster`].
//! - [`inventory`]: [`reorder_suggestion`] and [`Suggestion`].
//! - [`metrics`]: sMAPE and MASE.
//! - [`data`]: loading M3-format JSON and CSV series from the shared data directory.
//! - [`eval`]: parallel competition-style scoring.
//! - [`optim`]: Nelder–Mead (via `argmin`) used by every fit.
//! - [`plot`]: forecast fans as SVG for `mesh eval forecast --plot DIR`.
//! - [`cli`]: `EvalArgs`, `eval`, `EvalReport` for the `mesh` binary.
#![forbid(unsafe_code)]

pub mod arima;
pub mod cli;
pub mod combine;
pub mod data;
pub mod decompose;
pub mod dyntheta;
pub mod error;
pub mod ets;
pub mod eval;
pub mod forecast;
pub mod forecaster;
pub mod inventory;
pub mod method;
pub mod metrics;
pub mod naive;
pub mod optim;
pub mod plot;
pub mod sarima;
pub mod theta;

pub use error::{Error, Result};
pub use forecast::{Forecast, Interval};
pub use forecaster::Forecaster;
pub use inventory::{reorder_suggestion, Suggestion};
pub use method::{fit, fit_for_horizon, forecast, FittedModel, Method};
