//! The independent feasibility checker rejects hand-made infeasible solutions.
mod common;

use common::load;
use mesh_vrp::{check, Error, Solution};

fn violations(inst: &mesh_vrp::Instance, sol: &Solution) -> Vec<String> {
    match check(inst, sol) {
        Err(Error::Infeasible { violations, .. }) => violations,
        other => panic!("expected infeasible, got {other:?}"),
    }
}

#[test]
fn accepts_a_feasible_cvrp_solution_and_measures_it() {
    let inst = load("vrp/cvrp/A-n32-k5.vrp");
    // Greedy capacity-respecting chunks in index order: feasible but not good.
    let mut routes = vec![Vec::new()];
    let mut load = 0;
    for c in 1..inst.n() {
        if load + inst.demand[c] > inst.capacity {
            routes.push(Vec::new());
            load = 0;
        }
        load += inst.demand[c];
        routes.last_mut().unwrap().push(c);
    }
    let mut lifted = inst.clone();
    lifted.fleet = None;
    let sol = Solution::new(routes);
    let checked = check(&lifted, &sol).unwrap();
    assert_eq!(checked.distance, sol.distance(&inst));
    assert_eq!(checked.vehicles, sol.routes.len());
}

#[test]
fn rejects_capacity_duplicates_missing_and_fleet() {
    let mut inst = load("vrp/cvrp/A-n32-k5.vrp");
    inst.fleet = Some(5);
    // Everything in one route: 410 > 100.
    let v = violations(&inst, &Solution::new(vec![(1..32).collect()]));
    assert!(v.iter().any(|m| m.contains("exceeds capacity")), "{v:?}");
    // Customer 2 twice, customer 3 never.
    let mut routes: Vec<Vec<usize>> = (1..32).map(|c| vec![c]).collect();
    routes[2] = vec![2];
    let mut lifted = inst.clone();
    lifted.fleet = None;
    let v = violations(&lifted, &Solution::new(routes));
    assert!(
        v.iter().any(|m| m.contains("customer 2 visited 2 times")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|m| m.contains("customer 3 visited 0 times")),
        "{v:?}"
    );
    // 31 single-customer routes with a fleet of 5.
    let v = violations(&inst, &Solution::new((1..32).map(|c| vec![c]).collect()));
    assert!(v.iter().any(|m| m.contains("fleet has 5")), "{v:?}");
    // The depot is not a customer.
    let v = violations(&lifted, &Solution::new(vec![vec![0]]));
    assert!(v.iter().any(|m| m.contains("not a customer")), "{v:?}");
}

#[test]
fn rejects_time_window_and_depot_violations() {
    let inst = load("vrp/vrptw/C101.txt");
    // C101: customer 1 is due by 967 and customer 5 by 67; 1 before 5 is late at 5.
    let mut routes: Vec<Vec<usize>> = (2..inst.n()).filter(|&c| c != 5).map(|c| vec![c]).collect();
    routes.push(vec![1, 5]);
    let mut lifted = inst.clone();
    lifted.fleet = None;
    let v = violations(&lifted, &Solution::new(routes));
    assert!(v.iter().any(|m| m.contains("customer 5 reached")), "{v:?}");
    // The same two in the right order are fine.
    let mut routes: Vec<Vec<usize>> = (2..inst.n()).filter(|&c| c != 5).map(|c| vec![c]).collect();
    routes.push(vec![5, 1]);
    check(&lifted, &Solution::new(routes)).expect("5 then 1 respects both windows");
}

#[test]
fn duration_limit_uses_the_best_departure() {
    // A depot open all day and one customer ready at 100: leaving at 90 gives duration 20.
    let stops = [
        mesh_vrp::Stop {
            x: 0.0,
            y: 0.0,
            demand: 0,
            ready: 0.0,
            due: 1000.0,
            service: 0.0,
        },
        mesh_vrp::Stop {
            x: 10.0,
            y: 0.0,
            demand: 1,
            ready: 100.0,
            due: 110.0,
            service: 0.0,
        },
    ];
    let ok = mesh_vrp::Instance::from_stops("t", &stops, 5, None, Some(20.0)).unwrap();
    check(&ok, &Solution::new(vec![vec![1]])).expect("duration 20 within 20");
    let tight = mesh_vrp::Instance::from_stops("t", &stops, 5, None, Some(19.0)).unwrap();
    let v = violations(&tight, &Solution::new(vec![vec![1]]));
    assert!(v.iter().any(|m| m.contains("duration")), "{v:?}");
}
