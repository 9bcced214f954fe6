//! `mesh eval vrp --plot DIR`: each solved instance drawn on the plane (depot,
//! customers, one polyline per route from and back to the depot), as SVG
//! (drawn by `mesh-plot`).

use std::path::{Path, PathBuf};

use mesh_plot::Chart;

use crate::error::Result;
use crate::instance::Instance;
use crate::solution::Solution;

/// The routes of `solution` on `inst`'s coordinates.
pub fn routes_chart(inst: &Instance, solution: &Solution, cost: f64) -> Chart {
    let at = |i: usize| inst.coords.get(i).copied().unwrap_or((f64::NAN, f64::NAN));
    let mut c = Chart::new(
        &format!("{}: {} routes, cost {cost}", inst.name, solution.vehicles()),
        "x",
        "y",
    )
    .equal_aspect();
    for (k, route) in solution.routes.iter().filter(|r| !r.is_empty()).enumerate() {
        let pts = std::iter::once(0)
            .chain(route.iter().copied())
            .chain(std::iter::once(0))
            .map(at)
            .collect();
        c = c.route(&format!("route {}", k + 1), pts);
    }
    let customers = (1..inst.coords.len()).map(at).collect();
    c.scatter("customers", customers)
        .colour("#999999")
        .scatter("depot", vec![at(0)])
        .colour("#000000")
}

/// File name of an instance's chart: `vrp-<name>.svg`.
pub fn file_name(inst: &Instance) -> String {
    format!("vrp-{}.svg", mesh_plot::file_stem(&inst.name))
}

/// Writes one chart per `(instance, solution, cost)` into `dir`.
pub fn write(solved: &[(Instance, Solution, f64)], dir: &Path) -> Result<Vec<PathBuf>> {
    let charts: Vec<(String, Chart)> = solved
        .iter()
        .map(|(inst, sol, cost)| (file_name(inst), routes_chart(inst, sol, *cost)))
        .collect();
    Ok(mesh_plot::write_all(dir, &charts)?)
}
