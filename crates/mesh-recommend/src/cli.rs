//! Command-line entry points for the `mesh` operator binary: `mesh eval recommend`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::data::{default_ml100k_dir, split_recbole, split_stratified, Dataset, UserItems};
use crate::error::{Error, Result};
use crate::eval::{bpr_early_stopped, evaluate, tune, K};
use crate::metrics::TopKMetrics;
use crate::models::{AlsParams, BlendParams, BprParams, EaseParams, KnnParams, ModelSpec};

/// Evaluation protocol.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// RecBole quick start: per-user random 80/10/10, full ranking, test masks train + valid.
    Recbole,
    /// Microsoft Recommenders: per-user stratified random 75/25, top-10 excluding train.
    Msrec,
}

/// Arguments of `mesh eval recommend`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Directory holding `ml-100k.inter` (from `fetch-ml100k.sh DIR`).
    #[arg(long, default_value_os_t = default_ml100k_dir())]
    pub data: PathBuf,
    /// Split and metric protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Msrec)]
    pub protocol: Protocol,
    /// Number of seeds (splits and model initialisations): `seed, seed+1, ...`.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Models to run (comma separated): popularity, item_knn, bpr, als, ease, blend.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "popularity,item_knn,bpr,als,ease,blend"
    )]
    pub models: Vec<String>,
    /// Choose hyper-parameters per seed on a validation split (RecBole's valid split; for
    /// msrec a 90/10 stratified split of the training part) instead of the defaults.
    #[arg(long)]
    pub tune: bool,
    /// Override BPR's (maximum) epochs.
    #[arg(long)]
    pub bpr_epochs: Option<usize>,
    /// Print JSON (the `mesh` binary reads this flag).
    #[arg(long)]
    pub json: bool,
}

impl EvalArgs {
    /// Arguments with every default and the given data directory and protocol.
    pub fn new(data: PathBuf, protocol: Protocol) -> Self {
        Self {
            data,
            protocol,
            seeds: 3,
            seed: 42,
            models: ["popularity", "item_knn", "bpr", "als", "ease", "blend"]
                .map(String::from)
                .to_vec(),
            tune: false,
            bpr_epochs: None,
            json: false,
        }
    }
}

/// The default spec of each model (chosen with `--tune` on validation data; see README).
pub fn default_spec(name: &str) -> Result<ModelSpec> {
    Ok(match name {
        "popularity" => ModelSpec::Popularity,
        "item_knn" => ModelSpec::ItemKnn(KnnParams::default()),
        "bpr" => ModelSpec::Bpr(BprParams::default()),
        "als" => ModelSpec::Als(AlsParams::default()),
        "ease" => ModelSpec::Ease(EaseParams::default()),
        "blend" => ModelSpec::Blend(BlendParams::default()),
        other => {
            return Err(Error::InvalidConfig(format!(
                "unknown model {other:?}; expected popularity, item_knn, bpr, als, ease or blend"
            )))
        }
    })
}

/// The validation grid searched by `--tune` for one model.
pub fn tuning_grid(name: &str) -> Result<Vec<ModelSpec>> {
    let mut grid = Vec::new();
    match name {
        "item_knn" => {
            for k in [200, 400, 800] {
                for shrink in [0.0, 10.0, 50.0] {
                    grid.push(ModelSpec::ItemKnn(KnnParams { k, shrink }));
                }
            }
        }
        "bpr" => {
            for dims in [64, 128] {
                for reg in [0.01f32, 0.02, 0.05] {
                    for learning_rate in [0.02f32, 0.05] {
                        grid.push(ModelSpec::Bpr(BprParams {
                            dims,
                            reg,
                            learning_rate,
                            epochs: 200,
                            ..BprParams::default()
                        }));
                    }
                }
            }
        }
        "als" => {
            for alpha in [10.0, 20.0, 40.0] {
                for reg in [30.0, 60.0, 150.0] {
                    grid.push(ModelSpec::Als(AlsParams {
                        alpha,
                        reg,
                        iterations: 10,
                        ..AlsParams::default()
                    }));
                }
            }
        }
        "ease" => {
            for lambda in [250.0, 500.0, 1000.0] {
                grid.push(ModelSpec::Ease(EaseParams { lambda }));
            }
        }
        "blend" => {
            for ease_weight in [0.1f32, 0.2, 0.3, 0.5] {
                grid.push(ModelSpec::Blend(BlendParams {
                    ease_weight,
                    ..BlendParams::default()
                }));
            }
        }
        other => grid.push(default_spec(other)?),
    }
    Ok(grid)
}

/// One model on one seed.
#[derive(Debug, Clone, Serialize)]
pub struct SeedResult {
    /// The seed.
    pub seed: u64,
    /// Test metrics.
    #[serde(flatten)]
    pub metrics: TopKMetrics,
    /// Wall-clock seconds to train (including early-stopping validation).
    pub train_seconds: f64,
    /// The spec trained (after tuning / early stopping).
    pub spec: ModelSpec,
}

/// One model over all seeds.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    /// Mean test metrics over seeds.
    #[serde(flatten)]
    pub mean: TopKMetrics,
    /// Mean training seconds.
    pub train_seconds: f64,
    /// Standard deviation over seeds.
    pub std: TopKMetrics,
    /// Every seed.
    pub per_seed: Vec<SeedResult>,
}

/// Output of `mesh eval recommend`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Protocol run.
    pub protocol: Protocol,
    /// Seeds used.
    pub seeds: Vec<u64>,
    /// Users, items and interactions in the data.
    pub data: BTreeMap<String, usize>,
    /// Whether hyper-parameters were tuned on validation data.
    pub tuned: bool,
    /// Model with the best mean NDCG@10.
    pub best_model: String,
    /// Its mean test metrics.
    #[serde(flatten)]
    pub metrics: TopKMetrics,
    /// Its mean training seconds.
    pub train_seconds: f64,
    /// Every model.
    pub models: BTreeMap<String, ModelReport>,
    /// Published reference numbers for this protocol.
    pub published: BTreeMap<String, BTreeMap<String, f64>>,
}

fn published(protocol: Protocol) -> BTreeMap<String, BTreeMap<String, f64>> {
    let row = |v: &[(&str, f64)]| {
        v.iter()
            .map(|(k, x)| (k.to_string(), *x))
            .collect::<BTreeMap<_, _>>()
    };
    let mut out = BTreeMap::new();
    match protocol {
        Protocol::Recbole => {
            out.insert(
                "bpr_recbole".into(),
                row(&[
                    ("ndcg@10", 0.2920),
                    ("recall@10", 0.2523),
                    ("mrr@10", 0.4855),
                    ("hit@10", 0.7953),
                    ("precision@10", 0.1962),
                ]),
            );
        }
        Protocol::Msrec => {
            out.insert(
                "bpr_msrec".into(),
                row(&[
                    ("ndcg@10", 0.442),
                    ("precision@10", 0.388),
                    ("recall@10", 0.213),
                ]),
            );
            out.insert(
                "bivae_msrec".into(),
                row(&[
                    ("ndcg@10", 0.475),
                    ("precision@10", 0.412),
                    ("recall@10", 0.219),
                ]),
            );
        }
    }
    out
}

struct SeedSplit {
    train: UserItems,
    /// Items masked at test time besides train (RecBole: valid).
    masked: UserItems,
    test: UserItems,
    /// Validation data for tuning / early stopping: (train part, validation targets).
    tuning: (UserItems, UserItems),
}

fn seed_split(ds: &Dataset, protocol: Protocol, seed: u64) -> SeedSplit {
    match protocol {
        Protocol::Recbole => {
            let s = split_recbole(&ds.user_items, seed);
            SeedSplit {
                tuning: (s.train.clone(), s.valid.clone()),
                train: s.train,
                masked: s.valid,
                test: s.test,
            }
        }
        Protocol::Msrec => {
            let s = split_stratified(&ds.user_items, 0.75, seed);
            let inner = split_stratified(&s.train, 0.9, seed.wrapping_add(1_000_003));
            SeedSplit {
                train: s.train,
                masked: vec![Vec::new(); ds.n_users()],
                test: s.test,
                tuning: (inner.train, inner.test),
            }
        }
    }
}

/// Runs `mesh eval recommend`.
pub fn eval(args: &EvalArgs) -> Result<EvalReport> {
    eval_with(args, &|_, _| {})
}

/// [`eval`], calling `progress(done, total)` after each model on each seed.
pub fn eval_with(args: &EvalArgs, progress: &dyn Fn(u64, u64)) -> Result<EvalReport> {
    if args.seeds == 0 {
        return Err(Error::InvalidConfig("--seeds must be at least 1".into()));
    }
    let ds = Dataset::load_inter(&args.data.join("ml-100k.inter"))?;
    let n_items = ds.n_items();
    let seeds: Vec<u64> = (0..args.seeds).map(|k| args.seed + k).collect();
    let mut per_model: BTreeMap<String, Vec<SeedResult>> = BTreeMap::new();
    let (mut done, total) = (0, seeds.len() as u64 * args.models.len() as u64);
    for &seed in &seeds {
        let sp = seed_split(&ds, args.protocol, seed);
        for name in &args.models {
            let mut spec = if args.tune {
                tune(
                    &tuning_grid(name)?,
                    &sp.tuning.0,
                    &sp.tuning.1,
                    n_items,
                    seed,
                )?
                .spec
            } else {
                default_spec(name)?
            };
            if let (ModelSpec::Bpr(p), Some(e)) = (&mut spec, args.bpr_epochs) {
                p.epochs = e;
            }
            let start = Instant::now();
            let model = match (spec, args.protocol) {
                // RecBole keeps the checkpoint with the best validation score.
                // Up to 200 epochs unless --bpr-epochs says otherwise.
                (ModelSpec::Bpr(p), Protocol::Recbole) => {
                    let p = BprParams {
                        epochs: args.bpr_epochs.unwrap_or(p.epochs.max(200)),
                        ..p
                    };
                    let (m, epochs, _) =
                        bpr_early_stopped(&sp.train, &sp.masked, &Vec::new(), n_items, p, seed)?;
                    spec = ModelSpec::Bpr(BprParams { epochs, ..p });
                    m
                }
                _ => spec.train(&sp.train, n_items, seed)?,
            };
            let train_seconds = start.elapsed().as_secs_f64();
            let metrics = evaluate(&model, &sp.train, &sp.masked, &sp.test)?;
            per_model.entry(name.clone()).or_default().push(SeedResult {
                seed,
                metrics,
                train_seconds,
                spec,
            });
            done += 1;
            progress(done, total);
        }
    }
    let models: BTreeMap<String, ModelReport> = per_model
        .into_iter()
        .map(|(name, runs)| {
            let ms: Vec<TopKMetrics> = runs.iter().map(|r| r.metrics).collect();
            let secs = runs.iter().map(|r| r.train_seconds).sum::<f64>() / runs.len() as f64;
            (
                name,
                ModelReport {
                    mean: TopKMetrics::mean(&ms),
                    train_seconds: secs,
                    std: TopKMetrics::std(&ms),
                    per_seed: runs,
                },
            )
        })
        .collect();
    let (best_model, best) = models
        .iter()
        .max_by(|a, b| a.1.mean.ndcg.total_cmp(&b.1.mean.ndcg))
        .ok_or_else(|| Error::InvalidConfig("--models is empty".into()))?;
    let data = BTreeMap::from([
        ("users".to_string(), ds.n_users()),
        ("items".to_string(), n_items),
        ("interactions".to_string(), ds.n_interactions()),
    ]);
    Ok(EvalReport {
        protocol: args.protocol,
        seeds,
        data,
        tuned: args.tune,
        best_model: best_model.clone(),
        metrics: best.mean,
        train_seconds: best.train_seconds,
        published: published(args.protocol),
        models: models.clone(),
    })
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "MovieLens {:?} protocol, seeds {:?}, {} users x {} items, {} interactions{}",
            self.protocol,
            self.seeds,
            self.data["users"],
            self.data["items"],
            self.data["interactions"],
            if self.tuned {
                ", tuned on validation"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  (mean ± std of NDCG over seeds)",
            "model", "P@10", "R@10", "NDCG@10", "Hit@10", "MRR@10", "train s"
        )?;
        for (name, m) in &self.models {
            let x = &m.mean;
            writeln!(
                f,
                "{name:<12} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>8.4} {:>9.2}  ± {:.4}",
                x.precision, x.recall, x.ndcg, x.hit, x.mrr, m.train_seconds, m.std.ndcg
            )?;
        }
        for (name, row) in &self.published {
            let cells: Vec<String> = row.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(f, "published {name}: {}", cells.join(", "))?;
        }
        write!(
            f,
            "best: {} NDCG@{K} {:.4}",
            self.best_model, self.metrics.ndcg
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: EvalArgs,
    }

    #[test]
    fn parses_the_documented_flags() {
        let c = Cli::parse_from([
            "x",
            "--data",
            "/d",
            "--protocol",
            "recbole",
            "--seeds",
            "2",
            "--json",
            "--models",
            "bpr,ease",
        ]);
        assert_eq!(c.args.protocol, Protocol::Recbole);
        assert_eq!(c.args.seeds, 2);
        assert!(c.args.json && !c.args.tune);
        assert_eq!(c.args.models, vec!["bpr", "ease"]);
        let d = Cli::parse_from(["x"]);
        assert_eq!(
            (d.args.protocol, d.args.seeds, d.args.models.len()),
            (Protocol::Msrec, 3, 6)
        );
    }

    #[test]
    fn unknown_model_and_missing_data_are_errors() {
        assert!(matches!(default_spec("svd"), Err(Error::InvalidConfig(_))));
        let args = EvalArgs::new(PathBuf::from("/nonexistent/ml"), Protocol::Msrec);
        assert!(matches!(eval(&args), Err(Error::Io { .. })));
    }
}
