//! Parsers on the real files, the `.sol` writer round trip and the DIMACS convention.
mod common;

use common::{data_file, load};
use mesh_vrp::{check, parse, DistanceConvention, Objective, Solution};

#[test]
fn parses_cvrplib_set_a() {
    let inst = load("vrp/cvrp/A-n32-k5.vrp");
    assert_eq!(inst.name, "A-n32-k5");
    assert_eq!(inst.n(), 32);
    assert_eq!(inst.capacity, 100);
    assert_eq!(inst.fleet, Some(5));
    assert_eq!(inst.convention, DistanceConvention::TsplibRounded);
    assert_eq!(inst.best_known.map(|b| b.cost), Some(784.0));
    assert_eq!(inst.demand[1], 19);
    assert_eq!(inst.coords[0], (82.0, 76.0));
    // nint(sqrt((82-96)^2 + (76-44)^2)) = nint(34.93) = 35
    assert_eq!(inst.d(0, 1), 35.0);
    assert!(!inst.has_time_windows());
}

#[test]
fn every_set_a_instance_parses_with_its_fleet_and_optimum() {
    let dir = common::data_dir().join("vrp/cvrp");
    let mut count = 0;
    for entry in
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("missing {}: {e}", dir.display()))
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "vrp") {
            let inst = mesh_vrp::load(&path).unwrap();
            let k: usize = inst.name.rsplit_once("-k").unwrap().1.parse().unwrap();
            assert_eq!(inst.fleet, Some(k), "{}", inst.name);
            assert!(inst.best_known.is_some(), "{}", inst.name);
            count += 1;
        }
    }
    assert_eq!(count, 27);
}

#[test]
fn parses_dimacs_vrptw_and_reproduces_the_shipped_solution_cost() {
    let inst = load("vrp/vrptw/RC208.vrp");
    assert_eq!(inst.n(), 101);
    assert_eq!(inst.fleet, Some(25));
    assert_eq!(inst.capacity, 1000);
    assert_eq!(inst.convention, DistanceConvention::DimacsTruncated);
    assert!(inst.has_time_windows());
    assert_eq!(inst.service[1], 10.0);
    assert_eq!(inst.service[0], 0.0);
    assert_eq!((inst.ready[0], inst.due[0]), (0.0, 960.0));
    assert_eq!((inst.ready[1], inst.due[1]), (388.0, 911.0));
    let bk = inst
        .best_known
        .expect("RC208.sol beside the file gives the best known");
    assert_eq!(bk.cost, 776.1);
    assert_eq!(bk.vehicles, Some(4));

    let text = std::fs::read_to_string(data_file("vrp/vrptw/RC208.sol")).unwrap();
    let (routes, cost) = parse::parse_sol(&text, "RC208.sol").unwrap();
    assert_eq!(cost, Some(776.1));
    let sol = Solution::new(routes);
    let checked = check(&inst, &sol).expect("the shipped RC208 solution is feasible");
    assert_eq!(checked.vehicles, 4);
    assert_eq!(inst.round_cost(checked.distance), 776.1);
}

#[test]
fn parses_solomon() {
    for (file, fleet, cap, service, bks) in [
        ("vrp/vrptw/C101.txt", 25, 200, 90.0, 828.94),
        ("vrp/vrptw/R101.txt", 25, 200, 10.0, 1650.80),
        ("vrp/vrptw/RC101.txt", 25, 200, 10.0, 1696.95),
    ] {
        let inst = load(file);
        assert_eq!(inst.n(), 101, "{file}");
        assert_eq!(inst.fleet, Some(fleet));
        assert_eq!(inst.capacity, cap);
        assert_eq!(inst.service[5], service);
        assert_eq!(inst.convention, DistanceConvention::Exact);
        assert_eq!(inst.objective, Objective::VehiclesThenDistance);
        assert_eq!(inst.best_known.map(|b| b.cost), Some(bks));
    }
    let c101 = load("vrp/vrptw/C101.txt");
    assert_eq!((c101.ready[1], c101.due[1]), (912.0, 967.0));
    assert_eq!(c101.due[0], 1236.0);
}

#[test]
fn rejects_malformed_input_with_line_numbers() {
    let bad = "NAME : x\nCAPACITY : 10\nNODE_COORD_SECTION\n1 0 zero\n";
    let err = parse::parse_tsplib(bad, "bad.vrp").unwrap_err().to_string();
    assert!(
        err.contains("line 4") && err.contains("y coordinate"),
        "{err}"
    );
    let err = parse::parse_solomon("nothing here\n", "bad.txt")
        .unwrap_err()
        .to_string();
    assert!(err.contains("NUMBER CAPACITY"), "{err}");
}

#[test]
fn sol_writer_round_trips() {
    let inst = load("vrp/vrptw/RC208.vrp");
    let text = std::fs::read_to_string(data_file("vrp/vrptw/RC208.sol")).unwrap();
    let (routes, _) = parse::parse_sol(&text, "RC208.sol").unwrap();
    let sol = Solution::new(routes);
    let written = sol.to_sol(&inst);
    assert!(written.starts_with("Route #1: 61 42 44"), "{written}");
    assert!(written.trim_end().ends_with("Cost 776.1"), "{written}");
    let (back, cost) = parse::parse_sol(&written, "written.sol").unwrap();
    assert_eq!(Solution::new(back), sol);
    assert_eq!(cost, Some(776.1));

    let a = load("vrp/cvrp/A-n32-k5.vrp");
    let sol = Solution::new(vec![(1..16).collect(), (16..32).collect()]);
    let written = sol.to_sol(&a);
    let (back, cost) = parse::parse_sol(&written, "a.sol").unwrap();
    assert_eq!(back, sol.routes);
    assert_eq!(cost, Some(sol.distance(&a)));
}
