//! Live signals: decayed co-occurrence, bounded histories, popularity and trending.

pub mod decay;
pub mod index;
pub mod signals;

pub use decay::Decay;
pub use index::LiveIndex;
pub use signals::{
    cooccurrence_updates, popularity_updates, push_history, trending_score, EventWeights, Horizon,
    LiveConfig, PopularityUpdate, Scope,
};
