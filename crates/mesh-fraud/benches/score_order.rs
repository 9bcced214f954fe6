//! One order through features (MemoryFeatures) + rules + model + anomaly + policy.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mesh_fraud::eval::fit_policy;
use mesh_fraud::sim::{simulate, SimParams};
use mesh_fraud::{
    features, updates, Event, MemoryFeatures, Order, PolicyConfig, RuleSet, TrainParams,
};

fn setup() -> (MemoryFeatures, Vec<Order>, mesh_fraud::Policy, RuleSet) {
    let params = SimParams {
        users: 1500,
        days: 14,
        ..SimParams::default()
    };
    let mut mem = MemoryFeatures::new();
    let (mut xs, mut ys, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    for ev in simulate(&params).expect("simulate") {
        let ts = ev.event.ts();
        mem.expire(ts);
        if let Event::Order(o) = &ev.event {
            xs.push(features(o, &mem, ts).expect("features"));
            ys.push(ev.fraud);
            orders.push(o.clone());
        }
        mem.apply(&updates(&ev.event));
    }
    let policy =
        fit_policy(&xs, &ys, &TrainParams::default(), PolicyConfig::default()).expect("train");
    // score the last orders again, as if they arrived now
    let tail = orders.split_off(orders.len() - 256);
    (mem, tail, policy, RuleSet::default_rules())
}

fn bench(c: &mut Criterion) {
    let (mem, orders, policy, rules) = setup();
    let mut i = 0;
    c.bench_function("score_order/features+rules+model+iforest+policy", |b| {
        b.iter(|| {
            let o = &orders[i % orders.len()];
            i += 1;
            let f = features(o, &mem, o.ts).expect("features");
            black_box(policy.decide(&f, &rules).expect("decide"))
        })
    });
    c.bench_function("score_order/features_only", |b| {
        b.iter(|| {
            let o = &orders[i % orders.len()];
            i += 1;
            black_box(features(o, &mem, o.ts).expect("features"))
        })
    });
    let f = features(&orders[0], &mem, orders[0].ts).expect("features");
    let model = policy.model.clone().expect("model");
    c.bench_function("score_order/forest_only", |b| {
        b.iter(|| black_box(model.score_rf(&f.0).expect("rf")))
    });
    c.bench_function("score_order/gbdt_only", |b| {
        b.iter(|| black_box(model.score_gbdt(&f.0).expect("gbdt")))
    });
    c.bench_function("score_order/logistic_only", |b| {
        b.iter(|| black_box(model.score_lr(&f.0).expect("lr")))
    });
    c.bench_function("score_order/updates+apply", |b| {
        let mut m = mem.clone();
        b.iter(|| {
            let o = &orders[i % orders.len()];
            i += 1;
            m.apply(&updates(&Event::Order(o.clone())));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
