//! Re-planning keeps untouched stops on their vehicles and never breaks a constraint.
mod common;

use common::{data_file, load};
use mesh_vrp::{check, parse, replan, Budget, Changes, Error, ReplanOptions, Solution};

fn rc208_plan() -> (mesh_vrp::Instance, Solution) {
    let inst = load("vrp/vrptw/RC208.vrp");
    let text = std::fs::read_to_string(data_file("vrp/vrptw/RC208.sol")).unwrap();
    let (routes, _) = parse::parse_sol(&text, "RC208.sol").unwrap();
    let plan = Solution::new(routes);
    check(&inst, &plan).expect("shipped plan is feasible");
    (inst, plan)
}

fn opts() -> ReplanOptions {
    ReplanOptions {
        budget: Budget::iterations(50),
        ..ReplanOptions::default()
    }
}

#[test]
fn cancellation_keeps_every_other_stop_on_its_route() {
    let (inst, plan) = rc208_plan();
    let cancelled = vec![5, 40, 77, 61];
    let out = replan(
        &inst,
        &plan,
        &Changes {
            cancelled: cancelled.clone(),
            ..Changes::default()
        },
        &opts(),
    )
    .unwrap();
    let before = plan.route_of(inst.n());
    let after = out.solution.route_of(inst.n());
    for c in 1..inst.n() {
        if cancelled.contains(&c) {
            assert_eq!(after[c], None, "cancelled stop {c} still served");
        } else {
            assert_eq!(after[c], before[c], "stop {c} changed route");
        }
    }
    assert!(out.moved.is_empty());
    assert!(out.unassigned.is_empty());
    // Route order inside a vehicle may improve, never the constraints.
    assert!(out.distance <= plan.distance(&inst) + 0.1 * cancelled.len() as f64);
}

#[test]
fn additions_and_holds_are_feasible_and_stable() {
    let (inst, full) = rc208_plan();
    let new_stops = [10, 20, 30, 60, 90];
    let plan = Solution::new(
        full.routes
            .iter()
            .map(|r| {
                r.iter()
                    .copied()
                    .filter(|c| !new_stops.contains(c))
                    .collect()
            })
            .collect(),
    );
    let changes = Changes {
        added: new_stops.to_vec(),
        held: vec![2, 33],
        cancelled: vec![],
    };
    let out = replan(&inst, &plan, &changes, &opts()).unwrap();
    assert!(
        out.unassigned.is_empty(),
        "capacity 1000 leaves room for all: {:?}",
        out.unassigned
    );
    let after = out.solution.route_of(inst.n());
    assert!(new_stops.iter().all(|&c| after[c].is_some()));
    assert!(after[2].is_none() && after[33].is_none());
    // replan() ran the independent checker; here: all stops but the held ones are served.
    let served: usize = out.solution.routes.iter().map(Vec::len).sum();
    assert_eq!(served, 98);
    let before = plan.route_of(inst.n());
    let moved: Vec<usize> = (1..inst.n())
        .filter(|&c| before[c].is_some() && after[c].is_some() && before[c] != after[c])
        .collect();
    assert_eq!(moved, out.moved);
    assert!(
        moved.len() <= 5,
        "too many stops changed vehicle: {moved:?}"
    );
}

#[test]
fn capacity_is_never_exceeded_when_stops_do_not_fit() {
    let inst = load("vrp/cvrp/A-n32-k5.vrp");
    // A feasible plan of 5 routes in index order that serves customers 1..=20 only.
    let mut routes: Vec<Vec<usize>> = vec![Vec::new(); 5];
    let mut loads = [0i64; 5];
    for c in 1..=20 {
        let r = (0..5).find(|&r| loads[r] + inst.demand[c] <= 100).unwrap();
        loads[r] += inst.demand[c];
        routes[r].push(c);
    }
    let plan = Solution::new(routes);
    // Total demand is 410 of 500: the other 11 stops fit only if packed carefully.
    let changes = Changes {
        added: (21..32).collect(),
        ..Changes::default()
    };
    let out = replan(&inst, &plan, &changes, &opts()).unwrap();
    for r in &out.solution.routes {
        let load: i64 = r.iter().map(|&c| inst.demand[c]).sum();
        assert!(load <= inst.capacity, "route load {load}");
    }
    let served: usize = out.solution.routes.iter().map(Vec::len).sum();
    assert_eq!(served + out.unassigned.len(), 31);
    assert!(out.solution.vehicles() <= 5);
}

#[test]
fn rejects_inconsistent_changes() {
    let (inst, plan) = rc208_plan();
    let err = replan(
        &inst,
        &plan,
        &Changes {
            added: vec![3],
            ..Changes::default()
        },
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidChange(_)), "{err}");
    let err = replan(
        &inst,
        &plan,
        &Changes {
            cancelled: vec![500],
            ..Changes::default()
        },
        &opts(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidChange(_)), "{err}");
}
