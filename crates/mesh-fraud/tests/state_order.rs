//! State updates are increments that commute: replaying a stream's counter ops in another
//! order (as a redelivering consumer might) gives the same windowed features.

use mesh_fraud::sim::{simulate, SimParams};
use mesh_fraud::{features, updates, Event, MemoryFeatures};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn shuffled_application_gives_the_same_features() {
    let params = SimParams {
        users: 600,
        days: 4,
        card_testing_rate: 5.0,
        ..SimParams::default()
    };
    let events: Vec<_> = simulate(&params).unwrap().map(|e| e.event).collect();
    let (history, probes) = events.split_at(events.len() * 3 / 4);
    let mut in_order = MemoryFeatures::new();
    for e in history {
        in_order.apply(&updates(e));
    }
    let mut shuffled_events = history.to_vec();
    shuffled_events.shuffle(&mut ChaCha8Rng::seed_from_u64(3));
    let mut shuffled = MemoryFeatures::new();
    for e in &shuffled_events {
        shuffled.apply(&updates(e));
    }
    let age = mesh_fraud::features::feature_index("account_age_days").unwrap();
    let mut compared = 0;
    for e in probes {
        if let Event::Order(o) = e {
            let mut a = features(o, &in_order, o.ts).unwrap();
            let mut b = features(o, &shuffled, o.ts).unwrap();
            // first-seen values are set-if-absent: with out-of-order delivery the first
            // delivered wins, so account age may differ; presence-based features may not
            a.0[age] = 0.0;
            b.0[age] = 0.0;
            for (x, y) in a.0.iter().zip(&b.0) {
                assert!((x - y).abs() < 1e-6 * x.abs().max(1.0), "{a:?}\n{b:?}");
            }
            compared += 1;
        }
    }
    assert!(compared > 20, "{compared}");
}
