//! Exponential smoothing (ETS) state-space models: the recursion in [`model`], maximum
//! likelihood fitting and AICc model selection in [`fit`].

pub mod fit;
pub mod model;

pub use fit::{
    auto_ets, candidate_specs, fit_ets, fit_ets_bounded, FittedEts, NONSEASONAL_BETA_MAX,
};
pub use model::{ErrorType, EtsParams, EtsSpec, EtsState, SeasonType, TrendType};
