//! Ad targeting: lookalike audiences, a click-through-rate model on hashed features, and a
//! budget split across campaigns by Thompson sampling on return on ad spend.

mod budget;
mod ctr;
mod lookalike;

pub use budget::{BudgetBandit, RoasStats};
pub use ctr::{ad_features, ctr_features, CtrModel, DeliveryCell, FeatureHasher};
pub use lookalike::{Lookalike, Similarity};
