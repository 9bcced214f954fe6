//! Solver behaviour: quality on a small instance, determinism, threads, time windows.
mod common;

use common::load;
use mesh_vrp::{check, solve, Budget, SolveOptions};

fn iters(n: u64, seed: u64) -> SolveOptions {
    SolveOptions {
        seed,
        budget: Budget::iterations(n),
        threads: 1,
    }
}

#[test]
fn solves_a_n32_k5_within_two_percent() {
    let inst = load("vrp/cvrp/A-n32-k5.vrp");
    let res = solve(&inst, &iters(300, 1)).unwrap();
    let gap = 100.0 * (res.distance - 784.0) / 784.0;
    assert!(gap < 2.0, "gap {gap:.2}% (cost {})", res.distance);
    assert!(
        res.distance >= 784.0,
        "below the optimum: the fleet was not respected"
    );
    assert!(res.vehicles <= 5);
    check(&inst, &res.solution).unwrap();
}

#[test]
fn same_seed_same_iterations_same_solution() {
    let inst = load("vrp/cvrp/A-n33-k6.vrp");
    let a = solve(&inst, &iters(60, 7)).unwrap();
    let b = solve(&inst, &iters(60, 7)).unwrap();
    assert_eq!(a.solution, b.solution);
    assert_eq!(a.iterations, b.iterations);
}

#[test]
fn two_threads_run_two_seeded_searches_deterministically() {
    let inst = load("vrp/cvrp/A-n33-k6.vrp");
    let opts = SolveOptions {
        threads: 2,
        ..iters(40, 3)
    };
    let a = solve(&inst, &opts).unwrap();
    let b = solve(&inst, &opts).unwrap();
    assert_eq!(a.solution, b.solution);
    assert_eq!(a.iterations, 80);
    // Thread 0 uses the same seed as a single-threaded run, so two threads never do worse.
    let single = solve(&inst, &iters(40, 3)).unwrap();
    assert!(a.distance <= single.distance + 1e-9);
}

#[test]
fn solves_a_time_window_instance_feasibly() {
    let inst = load("vrp/vrptw/RC208.vrp");
    let res = solve(&inst, &iters(30, 1)).unwrap();
    let checked = check(&inst, &res.solution).unwrap();
    assert_eq!(checked.distance, res.distance);
    assert!(res.vehicles <= 25);
}

#[test]
fn refuses_an_unbounded_budget() {
    let inst = load("vrp/cvrp/A-n32-k5.vrp");
    let opts = SolveOptions {
        budget: Budget {
            time: None,
            iterations: None,
        },
        ..SolveOptions::default()
    };
    assert!(matches!(
        solve(&inst, &opts),
        Err(mesh_vrp::Error::InvalidOptions(_))
    ));
}
