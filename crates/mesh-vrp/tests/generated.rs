//! The solver on generated X-like instances and on numbers far outside the benchmark data:
//! huge coordinates, a single customer, demands equal to the capacity.
use mesh_vrp::generate::{generate, CustomerPos, DemandDist, DepotPos, GenSpec};
use mesh_vrp::{check, solve, Budget, Instance, SolveOptions};
use std::time::Duration;

/// A few generations, capped by a generous clock so a slow debug build still ends.
fn quick(iterations: u64) -> SolveOptions {
    SolveOptions {
        seed: 5,
        budget: Budget {
            time: Some(Duration::from_secs(2)),
            iterations: Some(iterations),
        },
        threads: 1,
    }
}

#[test]
fn solves_a_generated_300_customer_instance_feasibly() {
    let inst = generate(&GenSpec {
        n: 300,
        depot: DepotPos::Eccentric,
        customers: CustomerPos::RandomClustered,
        demand: DemandDist::Quadrant,
        r: 12.0,
        seed: 3,
    })
    .unwrap();
    let res = solve(&inst, &quick(2)).unwrap();
    let checked = check(&inst, &res.solution).unwrap();
    assert_eq!(checked.distance, res.distance);
    let served: usize = res.solution.routes.iter().map(Vec::len).sum();
    assert_eq!(served, 300);
    assert!(res.vehicles >= inst.min_vehicles());
    assert!(res.ls_evaluations > 0 && res.ls_moves > 0);
}

#[test]
fn coordinates_around_a_million_solve_and_check() {
    let inst = generate(&GenSpec {
        n: 40,
        depot: DepotPos::Random,
        customers: CustomerPos::Clustered,
        demand: DemandDist::SmallLargeVar,
        r: 6.0,
        seed: 8,
    })
    .unwrap();
    // The same layout stretched 1000x and shifted: distances of order 1e6 (f64 sums stay
    // exact: every rounded distance is an integer below 2^53).
    let coords: Vec<(f64, f64)> = inst
        .coords
        .iter()
        .map(|&(x, y)| (x * 1000.0 + 1e6, y * 1000.0 - 1e6))
        .collect();
    let big = Instance::cvrp("big", coords, inst.demand.clone(), inst.capacity, None).unwrap();
    let res = solve(&big, &quick(30)).unwrap();
    let checked = check(&big, &res.solution).unwrap();
    assert_eq!(checked.distance, res.distance);
    assert_eq!(res.distance.fract(), 0.0);
    // Same routes priced on the small grid are within rounding of a thousandth.
    let small = inst.routes_distance(&res.solution.routes);
    let slack = 2.0 * (inst.customers() + res.vehicles) as f64;
    assert!((res.distance / 1000.0 - small).abs() <= slack);
}

#[test]
fn a_single_customer_gets_one_out_and_back_route() {
    let inst = Instance::cvrp("one", vec![(0.0, 0.0), (3.0, 4.0)], vec![0, 7], 7, None).unwrap();
    let res = solve(&inst, &quick(5)).unwrap();
    assert_eq!(res.solution.routes, vec![vec![1]]);
    assert_eq!(res.distance, 10.0);
}

#[test]
fn demands_equal_to_the_capacity_need_one_route_each() {
    let coords: Vec<(f64, f64)> = (0..13)
        .map(|k| {
            let a = k as f64 * 0.5;
            (500.0 + 300.0 * a.cos(), 500.0 + 300.0 * a.sin())
        })
        .collect();
    let mut demand = vec![100; 13];
    demand[0] = 0;
    let inst = Instance::cvrp("full", coords, demand, 100, None).unwrap();
    let res = solve(&inst, &quick(20)).unwrap();
    check(&inst, &res.solution).unwrap();
    assert_eq!(res.vehicles, 12);
    let out_and_back: f64 = (1..13).map(|c| 2.0 * inst.d(0, c)).sum();
    assert_eq!(res.distance, out_and_back);
}

#[test]
fn a_500_customer_instance_goes_through_the_iterated_local_search() {
    let inst = generate(&GenSpec {
        n: 500,
        depot: DepotPos::Central,
        customers: CustomerPos::Clustered,
        demand: DemandDist::SmallLargeVar,
        r: 10.0,
        seed: 11,
    })
    .unwrap();
    // 5 generations of the genetic search (20 % of 25 iterations), then 20 ILS steps
    // (the 2 s clock may cut either short in a debug build).
    let res = solve(&inst, &quick(25)).unwrap();
    let checked = check(&inst, &res.solution).unwrap();
    assert_eq!(checked.distance, res.distance);
    let served: usize = res.solution.routes.iter().map(Vec::len).sum();
    assert_eq!(served, 500);
}

#[test]
fn the_iterated_local_search_is_deterministic_under_an_iteration_budget() {
    let inst = generate(&GenSpec {
        n: 120,
        depot: DepotPos::Random,
        customers: CustomerPos::RandomClustered,
        demand: DemandDist::Quadrant,
        r: 8.0,
        seed: 12,
    })
    .unwrap();
    let opts = SolveOptions {
        seed: 3,
        budget: Budget::iterations(60),
        threads: 1,
    };
    let a = solve(&inst, &opts).unwrap();
    let b = solve(&inst, &opts).unwrap();
    assert_eq!(a.solution.routes, b.solution.routes);
    // 12 generations (20 %), then 48 ILS steps.
    assert_eq!(a.iterations, 60);
    check(&inst, &a.solution).unwrap();
}
