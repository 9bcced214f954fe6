//! Scoring latency per event: state update + BG/NBD risk + alert check.
use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use mesh_churn::bgnbd::BgNbdParams;
use mesh_churn::scoring::{AlertConfig, ChurnScorer, CustomerState, ManualClock};

fn bench(c: &mut Criterion) {
    let params = BgNbdParams {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let scorer = ChurnScorer::new(params, AlertConfig::default(), ManualClock::new(start)).unwrap();
    let mut state = CustomerState::default();
    for _ in 0..5 {
        scorer.on_order(&mut state).unwrap();
        scorer.clock().advance(Duration::weeks(3));
    }
    c.bench_function("order_event_update_score_alert", |b| {
        b.iter(|| {
            scorer.clock().advance(Duration::days(2));
            std::hint::black_box(scorer.on_order(&mut state).unwrap())
        })
    });
    let mut idle = state.clone();
    c.bench_function("tick_event_score_alert", |b| {
        b.iter(|| {
            scorer.clock().advance(Duration::hours(1));
            std::hint::black_box(scorer.on_tick(&mut idle).unwrap())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
