//! Ad targeting: lookalike audiences, a click-through-rate model on hashed features, and a
//! budget split across campaigns by Thompson sampling on return on ad spend.

mod budget;
mod ctr;
mod lookalike;

pub use budget::{BudgetBandit, RoasStats};
pub use ctr::{ctr_features, CtrModel, FeatureHasher};
pub use lookalike::{Lookalike, Similarity};
