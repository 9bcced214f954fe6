//! Fits BG/NBD (and Pareto/NBD) to a CDNOW-sized synthetic cohort ([`mesh_churn::sim::cdnow_like`]) and
//! prints how its holdout conditional expectation tracks the simulated purchases.
//!
//! `cargo run -p mesh-churn --release --example synthetic_cohort -- [SEED] [CSV]`
//! (seed 16 by default). Pareto/NBD is fitted and scored too. With `CSV` it also
//! writes `x,t_x,T,holdout,expected,pareto_expected` per customer and the fitted
//! parameters as a `# r alpha a b r alpha s beta` first line, for checks against other
//! implementations (e.g. Python `lifetimes`).

use std::io::Write;

use mesh_churn::metrics::pearson;
use mesh_churn::sim::{cdnow_like, simulate};
use mesh_churn::{bgnbd, pareto};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(16);
    let csv = args.next();
    let spec = cdnow_like(seed);
    let cohort = simulate(&spec)?;
    let rfm: Vec<_> = cohort.iter().map(|c| c.rfm).collect();
    let fit = bgnbd::fit(&rfm)?;
    let p = fit.params;
    let expected = rfm
        .iter()
        .map(|c| p.conditional_expected(spec.holdout_weeks, c))
        .collect::<Result<Vec<_>, _>>()?;
    let actual: Vec<f64> = cohort.iter().map(|c| c.holdout).collect();
    let (sum_e, sum_a): (f64, f64) = (expected.iter().sum(), actual.iter().sum());
    let max_x = rfm.iter().map(|c| c.frequency).fold(0.0, f64::max);
    let heavy = rfm.iter().filter(|c| c.frequency >= 30.0).count();
    println!(
        "cohort seed {seed}: {} customers, max x {max_x}, {heavy} with x >= 30, {} with x >= 100",
        cohort.len(),
        rfm.iter().filter(|c| c.frequency >= 100.0).count()
    );
    println!(
        "BG/NBD fit: r {:.4} alpha {:.4} a {:.4} b {:.4} LL {:.1} ({} iterations)",
        p.r, p.alpha, p.a, p.b, fit.log_likelihood, fit.iterations
    );
    println!(
        "holdout ({} weeks): expected {sum_e:.0} vs actual {sum_a:.0} ({:+.1}%), corr {:.4}, \
         min expectation {:.4}",
        spec.holdout_weeks,
        100.0 * (sum_e / sum_a - 1.0),
        pearson(&expected, &actual)?,
        expected.iter().copied().fold(f64::INFINITY, f64::min)
    );
    let pareto_fit = pareto::fit(&rfm)?;
    let q = pareto_fit.params;
    let pareto_expected = rfm
        .iter()
        .map(|c| q.conditional_expected(spec.holdout_weeks, c))
        .collect::<Result<Vec<_>, _>>()?;
    let sum_p: f64 = pareto_expected.iter().sum();
    println!(
        "Pareto/NBD fit: r {:.4} alpha {:.4} s {:.4} beta {:.4} LL {:.1}; holdout expected \
         {sum_p:.0} ({:+.1}%), corr {:.4}",
        q.r,
        q.alpha,
        q.s,
        q.beta,
        pareto_fit.log_likelihood,
        100.0 * (sum_p / sum_a - 1.0),
        pearson(&pareto_expected, &actual)?
    );
    if let Some(path) = csv {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(
            out,
            "# {} {} {} {} {} {} {} {}",
            p.r, p.alpha, p.a, p.b, q.r, q.alpha, q.s, q.beta
        )?;
        writeln!(out, "x,t_x,T,holdout,expected,pareto_expected")?;
        for ((c, e), pe) in cohort.iter().zip(&expected).zip(&pareto_expected) {
            writeln!(
                out,
                "{},{},{},{},{},{}",
                c.rfm.frequency, c.rfm.recency, c.rfm.t, c.holdout, e, pe
            )?;
        }
        println!("wrote {path}");
    }
    Ok(())
}
