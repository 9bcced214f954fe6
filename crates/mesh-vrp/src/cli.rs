//! Arguments and reports for the `mesh` operator binary (`mesh eval vrp`, `mesh vrp solve`).

use crate::error::{Error, Result};
use crate::instance::{Instance, Objective};
use crate::parse::load;
use crate::solver::{solve, Budget, SolveOptions, SolveResult};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `mesh eval vrp`: solve benchmark instances and compare with their best known values.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Wall-clock seconds per instance.
    #[arg(long, default_value_t = 5.0)]
    pub time_limit: f64,
    /// Iteration limit per instance: generations, plus ILS steps at 100+ customers (makes
    /// runs reproducible; combines with --time-limit).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Independent searches in parallel per instance (best kept).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Lift the fleet-size limit.
    #[arg(long)]
    pub unlimited_fleet: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Draw each solved instance's routes (SVG, `vrp-<name>.svg`) into this directory.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Instance files (.vrp or Solomon .txt).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// One solved instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceReport {
    /// Instance name.
    pub name: String,
    /// Distance, rounded to the instance's convention.
    pub cost: f64,
    /// Routes used.
    pub vehicles: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Iterations run (generations, plus ILS steps at 100+ customers).
    pub iterations: u64,
    /// Best known distance, if published with the instance.
    pub bks: Option<f64>,
    /// Vehicles of the best known solution, if known.
    pub bks_vehicles: Option<usize>,
    /// `100 * (cost - bks) / bks` (distance only).
    pub gap: Option<f64>,
    /// Whether `gap` enters `mean_gap`: distance objectives always; vehicles-first
    /// objectives only when the vehicle count equals the best known one.
    pub comparable: bool,
    /// Objective the instance is ranked by.
    pub objective: Objective,
    /// Always true: reports are made only after the independent checker accepted the routes.
    pub feasible: bool,
}

/// The evaluation report.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Per-instance results.
    pub instances: Vec<InstanceReport>,
    /// Mean gap over the comparable instances (see [`InstanceReport::comparable`]).
    pub mean_gap: Option<f64>,
    /// Seconds per instance.
    pub time_limit: f64,
    /// Seed used.
    pub seed: u64,
    /// Threads per instance.
    pub threads: usize,
}

/// Solves every file and measures the gap to the best known values (writing
/// the plots when `--plot` is given).
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    Ok(eval_with(args, &|_, _| {})?.0)
}

/// [`eval`] with `progress(done, total)` called after each instance; also
/// returns the plot files written.
pub fn eval_with(
    args: &EvalArgs,
    progress: &dyn Fn(u64, u64),
) -> Result<(EvalReport, Vec<PathBuf>)> {
    let mut instances = Vec::new();
    let mut solved = Vec::new();
    let total = args.files.len() as u64;
    for path in &args.files {
        let mut inst = load(path)?;
        if args.unlimited_fleet {
            inst.fleet = None;
        }
        let opts = SolveOptions {
            seed: args.seed,
            budget: Budget {
                time: (args.time_limit > 0.0).then(|| Duration::from_secs_f64(args.time_limit)),
                iterations: args.iterations,
            },
            threads: args.threads,
        };
        if opts.budget.time.is_none() && opts.budget.iterations.is_none() {
            return Err(Error::InvalidOptions(
                "give --time-limit > 0 or --iterations".into(),
            ));
        }
        let res = solve(&inst, &opts)?;
        let r = report(&inst, &res);
        if args.plot.is_some() {
            solved.push((inst, res.solution, r.cost));
        }
        instances.push(r);
        progress(instances.len() as u64, total);
    }
    let plots = match &args.plot {
        Some(dir) => crate::plot::write(&solved, dir)?,
        None => Vec::new(),
    };
    let gaps: Vec<f64> = instances
        .iter()
        .filter(|i| i.comparable)
        .filter_map(|i| i.gap)
        .collect();
    let report = EvalReport {
        mean_gap: (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64),
        instances,
        time_limit: args.time_limit,
        seed: args.seed,
        threads: args.threads,
    };
    Ok((report, plots))
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>10} {:>4} {:>10} {:>4} {:>8} {:>7} {:>8}",
            "instance", "cost", "veh", "bks", "veh", "gap%", "secs", "iters"
        )?;
        for i in &self.instances {
            writeln!(
                f,
                "{:<12} {:>10} {:>4} {:>10} {:>4} {:>8} {:>7.2} {:>8}",
                i.name,
                i.cost,
                i.vehicles,
                opt(i.bks),
                opt(i.bks_vehicles),
                opt(i
                    .gap
                    .map(|g| format!("{g:.2}{}", if i.comparable { "" } else { "*" }))),
                i.seconds,
                i.iterations
            )?;
        }
        if self
            .instances
            .iter()
            .any(|i| !i.comparable && i.gap.is_some())
        {
            writeln!(
                f,
                "* vehicles differ from the best known: gap not in the mean"
            )?;
        }
        write!(
            f,
            "mean gap: {}% ({} s/instance, seed {}, {} thread(s))",
            opt(self.mean_gap.map(|g| format!("{g:.3}"))),
            self.time_limit,
            self.seed,
            self.threads
        )
    }
}

/// `mesh vrp solve`: solve one instance and optionally write its `.sol`.
#[derive(clap::Args, Debug, Clone)]
pub struct SolveArgs {
    /// Wall-clock seconds.
    #[arg(long, default_value_t = 5.0)]
    pub time_limit: f64,
    /// Iteration limit: generations, plus ILS steps at 100+ customers (reproducible runs).
    #[arg(long)]
    pub iterations: Option<u64>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Independent searches in parallel.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Lift the fleet-size limit.
    #[arg(long)]
    pub unlimited_fleet: bool,
    /// Write the CVRPLIB `.sol` here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Instance file.
    pub file: PathBuf,
}

/// A solved instance with its `.sol` text.
#[derive(Debug, Clone, Serialize)]
pub struct SolveReport {
    /// Per-instance numbers.
    pub result: InstanceReport,
    /// CVRPLIB `.sol` text.
    pub sol: String,
}

/// Solves one instance (writing `--out` if given).
pub fn solve_file(args: &SolveArgs) -> Result<SolveReport> {
    let mut inst = load(&args.file)?;
    if args.unlimited_fleet {
        inst.fleet = None;
    }
    let opts = SolveOptions {
        seed: args.seed,
        budget: Budget {
            time: (args.time_limit > 0.0).then(|| Duration::from_secs_f64(args.time_limit)),
            iterations: args.iterations,
        },
        threads: args.threads,
    };
    let res = solve(&inst, &opts)?;
    let sol = res.solution.to_sol(&inst);
    if let Some(out) = &args.out {
        std::fs::write(out, &sol).map_err(|source| Error::Io {
            path: out.clone(),
            source,
        })?;
    }
    Ok(SolveReport {
        result: report(&inst, &res),
        sol,
    })
}

fn report(inst: &Instance, res: &SolveResult) -> InstanceReport {
    let cost = inst.round_cost(res.distance);
    let bks = inst.best_known;
    let comparable = match inst.objective {
        Objective::Distance => true,
        Objective::VehiclesThenDistance => bks.and_then(|b| b.vehicles) == Some(res.vehicles),
    };
    InstanceReport {
        name: inst.name.clone(),
        cost,
        vehicles: res.vehicles,
        seconds: res.seconds,
        iterations: res.iterations,
        bks: bks.map(|b| b.cost),
        bks_vehicles: bks.and_then(|b| b.vehicles),
        gap: bks.map(|b| 100.0 * (cost - b.cost) / b.cost),
        comparable: comparable && bks.is_some(),
        objective: inst.objective,
        feasible: true,
    }
}

impl fmt::Display for SolveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.result;
        writeln!(
            f,
            "{}: cost {} with {} vehicles in {:.2}s (bks {}, gap {}%)",
            r.name,
            r.cost,
            r.vehicles,
            r.seconds,
            opt(r.bks),
            opt(r.gap.map(|g| format!("{g:.2}")))
        )?;
        write!(f, "{}", self.sol)
    }
}
