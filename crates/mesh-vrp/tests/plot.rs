//! `mesh eval vrp --plot DIR`: each solved instance becomes an SVG with the
//! depot, every customer and one polyline per route.
mod common;

use clap::Parser;
use common::data_file;
use mesh_vrp::cli::{eval_with, EvalArgs};

#[derive(Parser)]
struct Eval {
    #[command(flatten)]
    args: EvalArgs,
}

#[test]
fn eval_draws_every_route_of_each_instance() {
    let dir = std::env::temp_dir().join(format!("mesh-vrp-plot-{}", std::process::id()));
    let a = data_file("vrp/cvrp/A-n32-k5.vrp");
    let rc = data_file("vrp/vrptw/RC208.vrp");
    let cli = Eval::try_parse_from([
        "eval".as_ref(),
        "--time-limit".as_ref(),
        "0".as_ref(),
        "--iterations".as_ref(),
        "40".as_ref(),
        "--plot".as_ref(),
        dir.as_os_str(),
        a.as_os_str(),
        rc.as_os_str(),
    ])
    .unwrap();
    let calls = std::cell::RefCell::new(Vec::new());
    let (report, files) = eval_with(&cli.args, &|done, total| {
        calls.borrow_mut().push((done, total))
    })
    .unwrap();
    assert_eq!(*calls.borrow(), [(1, 2), (2, 2)]);
    assert_eq!(
        files,
        vec![dir.join("vrp-A-n32-k5.svg"), dir.join("vrp-RC208.svg")]
    );
    for ((file, inst), customers) in files.iter().zip(&report.instances).zip([31, 100]) {
        let svg = std::fs::read_to_string(file).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let series = |class: &str| {
            doc.descendants()
                .filter(|n| n.attribute("class") == Some(class))
                .collect::<Vec<_>>()
        };
        let points = |n: &roxmltree::Node| {
            n.descendants()
                .filter(|c| c.attribute("class") == Some("point"))
                .count()
        };
        let routes = series("series route");
        assert_eq!(
            routes.len(),
            inst.vehicles,
            "{}: one polyline per route",
            inst.name
        );
        // every route starts and ends at the depot: stops + 2 points, and all
        // routes together visit each customer once
        let visits: usize = routes.iter().map(|r| points(r) - 2).sum();
        assert_eq!(visits, customers, "{}", inst.name);
        let scatter = series("series scatter");
        let names: Vec<_> = scatter
            .iter()
            .filter_map(|n| n.attribute("data-name"))
            .collect();
        assert_eq!(names, ["customers", "depot"]);
        assert_eq!(points(&scatter[0]), customers);
        assert_eq!(points(&scatter[1]), 1);
    }
    std::fs::remove_dir_all(&dir).ok();
}
