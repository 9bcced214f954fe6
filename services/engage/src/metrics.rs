//! Metric names of the engage service, defined once.
use prometheus::{
    register_counter_vec, register_gauge, register_int_counter_vec, CounterVec, Gauge,
    IntCounterVec,
};
use std::sync::LazyLock;

/// Offer decisions by campaign kind and outcome (`offer`, `control`,
/// `frequency_cap`, `not_in_audience`).
pub static OFFERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_offer_decisions_total",
        "Offer decisions by outcome (offer, control, frequency_cap, not_in_audience) and offer",
        &["outcome", "offer"]
    )
    .expect("metric registers once")
});

/// Responses recorded, by kind (`click`, `conversion`) and source (`rpc`,
/// `stream`).
pub static RESPONSES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_responses_total",
        "Offer responses recorded by kind (click, conversion) and source (rpc, stream)",
        &["kind", "source"]
    )
    .expect("metric registers once")
});

/// Price changes published, by the constraint that bound them (`none`
/// when the optimum was inside every bound).
pub static PRICE_CHANGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_price_changes_total",
        "Quoted price changes published, by binding constraint (none, floor, ceiling, max_change, min_margin, market)",
        &["bound_by"]
    )
    .expect("metric registers once")
});

/// Every `bound_by` value of [`PRICE_CHANGES`].
pub const PRICE_BOUNDS: [&str; 6] = [
    "none",
    "floor",
    "ceiling",
    "max_change",
    "min_margin",
    "market",
];

/// Relative size of the latest published price change (new / old - 1).
pub static PRICE_LAST_CHANGE: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "mesh_engage_price_last_relative_change",
        "Relative size of the latest quoted price change (new / old - 1; 0 before the first)"
    )
    .expect("metric registers once")
});

/// Exports the price metrics at 0 before the first change, so dashboards
/// and alerts see them from the start.
pub fn export_price_metrics() {
    for b in PRICE_BOUNDS {
        PRICE_CHANGES.with_label_values(&[b]).inc_by(0);
    }
    LazyLock::force(&PRICE_LAST_CHANGE);
}

/// `ScoreCreatives` answers, by the model that ranked them (`ctr_model`,
/// `observed_rate`).
pub static CREATIVE_SCORES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_creative_scores_total",
        "ScoreCreatives answers by the model that ranked them (ctr_model, observed_rate)",
        &["model"]
    )
    .expect("metric registers once")
});

/// Ad deliveries recorded from the platforms' reports, by kind
/// (`impressions`, `clicks`).
pub static AD_DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_ad_deliveries_total",
        "Ad impressions and clicks recorded from delivery reports, by kind (impressions, clicks)",
        &["kind"]
    )
    .expect("metric registers once")
});

/// CTR model refits, by outcome (`fitted`, `one_class`, `lost_race`).
pub static CTR_FITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "mesh_engage_ctr_fits_total",
        "CTR model refits by outcome (fitted, one_class, lost_race)",
        &["outcome"]
    )
    .expect("metric registers once")
});

/// Budget allocated by `AllocateBudget` and ad spend and revenue reported by
/// `ReportAdSpend`, in the tenant's currency, by kind (`allocated`, `spend`,
/// `revenue`).
pub static AD_MONEY: LazyLock<CounterVec> = LazyLock::new(|| {
    register_counter_vec!(
        "mesh_engage_ad_money_total",
        "Ad budget allocated and spend and revenue reported, by kind (allocated, spend, revenue)",
        &["kind"]
    )
    .expect("metric registers once")
});
