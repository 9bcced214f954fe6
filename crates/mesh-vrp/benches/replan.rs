//! Re-planning latency for a 200-stop plan with time windows: 10 new stops, 5 cancelled.
use criterion::{criterion_group, criterion_main, Criterion};
use mesh_vrp::{
    replan, solve, Budget, Changes, Instance, ReplanOptions, Solution, SolveOptions, Stop,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn instance(customers: usize) -> Instance {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut stops = vec![Stop {
        x: 50.0,
        y: 50.0,
        demand: 0,
        ready: 0.0,
        due: 1000.0,
        service: 0.0,
    }];
    for _ in 0..customers {
        let ready = rng.random_range(0.0..600.0);
        stops.push(Stop {
            x: rng.random_range(0.0..100.0),
            y: rng.random_range(0.0..100.0),
            demand: rng.random_range(1..10),
            ready,
            due: ready + 250.0,
            service: 5.0,
        });
    }
    Instance::from_stops("bench-210", &stops, 100, Some(30), None).expect("valid instance")
}

fn bench(c: &mut Criterion) {
    let inst = instance(210);
    let solved = solve(
        &inst,
        &SolveOptions {
            seed: 1,
            budget: Budget::iterations(30),
            threads: 1,
        },
    )
    .expect("solvable");
    let added: Vec<usize> = (1..=10).map(|k| k * 20).collect();
    let plan = Solution::new(
        solved
            .solution
            .routes
            .iter()
            .map(|r| r.iter().copied().filter(|c| !added.contains(c)).collect())
            .collect(),
    );
    let cancelled: Vec<usize> = plan
        .routes
        .iter()
        .filter_map(|r| r.first().copied())
        .take(5)
        .collect();
    let changes = Changes {
        added,
        cancelled,
        held: vec![],
    };
    let opts = ReplanOptions {
        budget: Budget::time(Duration::from_secs(1)),
        ..ReplanOptions::default()
    };
    c.bench_function("replan_200_stops_add10_cancel5", |b| {
        b.iter(|| replan(&inst, &plan, &changes, &opts).expect("replan"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
