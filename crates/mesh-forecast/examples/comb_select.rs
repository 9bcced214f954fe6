//! Score combination rules (member set, shrinkage, validation origins, weight power) offline
//! from `origin_dump` files, with exactly the weighting code `auto` uses
//! ([`cv_weights`]).
//!
//! `--split holdout` scores every rule of a grid on the last `h` values of each history
//! (the test values are never read) and ranks them; `--split test --rule R` scores only the
//! named rules on the test split, for reporting after the choice. `--holdouts 2` scores
//! every series on both holdout cuts of the dump (last `h` and the `h` before), `--base R`
//! names the rule the criterion is relative to (default: `auto`'s rule before issue 16
//! round 4).
//! `cargo run --release -p mesh-forecast --example comb_select -- --split holdout A.json B.json`
//! `cargo run --release -p mesh-forecast --example comb_select -- --split test --rule ets+theta+dotm+arima/0.5/2/1 A.json`
use std::collections::HashMap;

use mesh_forecast::combine::{cv_weights, CvConfig};
use mesh_forecast::forecast::Forecast;
use mesh_forecast::method::CANDIDATES;
use mesh_forecast::metrics::{mase, smape};
use rayon::prelude::*;
use serde::Deserialize;

/// Candidate members: the dumped [`CANDIDATES`], in order.
fn member_name(i: usize) -> &'static str {
    CANDIDATES[i].name()
}

const MEMBERS: usize = CANDIDATES.len();

#[derive(Deserialize)]
struct Origin {
    o: usize,
    f: Vec<Option<Vec<f64>>>,
}

#[derive(Deserialize)]
struct Row {
    m: usize,
    h: usize,
    x: Vec<f64>,
    xx: Vec<f64>,
    holdout: bool,
    /// Holdout cuts (history lengths), last `h` first; older dumps have none.
    #[serde(default)]
    cuts: Vec<usize>,
    fc: Vec<Origin>,
}

#[derive(Clone, Debug)]
struct Rule {
    members: Vec<usize>,
    cfg: CvConfig,
}

impl Rule {
    fn name(&self) -> String {
        let m: Vec<&str> = self.members.iter().map(|i| member_name(*i)).collect();
        format!(
            "{}/{}/{}/{}",
            m.join("+"),
            self.cfg.shrink,
            self.cfg.origins,
            self.cfg.power
        )
    }

    fn parse(s: &str) -> Rule {
        let p: Vec<&str> = s.split('/').collect();
        let members = p[0]
            .split('+')
            .map(|n| {
                (0..MEMBERS)
                    .position(|i| member_name(i) == n)
                    .unwrap_or_else(|| panic!("unknown member {n}"))
            })
            .collect();
        Rule {
            members,
            cfg: CvConfig {
                shrink: p[1].parse().expect("shrink"),
                origins: p[2].parse().expect("origins"),
                power: p[3].parse().expect("power"),
                ..CvConfig::default()
            },
        }
    }
}

/// (sMAPE, MASE) of `rule` on one series: history `y`, future `actual`.
fn score(
    row: &Row,
    by_origin: &HashMap<usize, &Origin>,
    y: &[f64],
    actual: &[f64],
    rule: &Rule,
) -> (f64, f64) {
    let n = y.len();
    let at = |o: usize, c: usize| -> Option<Forecast> {
        let k = rule.members[c];
        let f = by_origin.get(&o)?.f[k].clone()?;
        Some(Forecast {
            sd: vec![0.0; f.len()],
            mean: f,
        })
    };
    // Members that could not be fitted on the whole history are left out, as in `auto`.
    let ok: Vec<usize> = (0..rule.members.len())
        .filter(|c| at(n, *c).is_some())
        .collect();
    let parts: Vec<Forecast> = ok.iter().map(|c| at(n, *c).expect("fitted")).collect();
    let weights = cv_weights(y, row.m, row.h, ok.len(), &rule.cfg, |c, train, steps| {
        at(train.len(), ok[c]).map(|mut f| {
            f.mean.truncate(steps);
            f.sd.truncate(steps);
            f
        })
    });
    let f = Forecast::combine_weighted(&parts, &weights);
    (
        smape(actual, &f.mean).expect("smape"),
        mase(y, actual, &f.mean, row.m).expect("mase"),
    )
}

/// (seasonal period, sMAPE, MASE) of one rule on each series of one data set.
type SeriesScores = Vec<(usize, f64, f64)>;

/// Everything scored: per rule, per data set, per series.
struct Scored<'a> {
    data: &'a [(String, Vec<Row>)],
    scores: Vec<Vec<SeriesScores>>,
    rules: &'a [Rule],
    baseline: &'a Rule,
    split: &'a str,
    no_worse: usize,
}

/// (seasonal period, sMAPE, MASE) of `rule` on each series: on the test split
/// (`holdouts == 0`), or on each of the first `holdouts` holdout cuts of every series.
fn evaluate(rows: &[Row], holdouts: usize, rule: &Rule) -> SeriesScores {
    rows.par_iter()
        .flat_map_iter(|r| {
            let by_origin: HashMap<usize, &Origin> = r.fc.iter().map(|o| (o.o, o)).collect();
            let cuts: Vec<usize> = if r.cuts.is_empty() && r.holdout {
                vec![r.x.len() - r.h]
            } else {
                r.cuts.clone()
            };
            let out: Vec<(usize, f64, f64)> = if holdouts == 0 {
                let (a, b) = score(r, &by_origin, &r.x, &r.xx, rule);
                vec![(r.m, a, b)]
            } else {
                cuts.iter()
                    .filter(|&&cut| (r.x.len() - cut) / r.h <= holdouts)
                    .map(|&cut| {
                        let (y, actual) = (&r.x[..cut], &r.x[cut..cut + r.h]);
                        let (a, b) = score(r, &by_origin, y, actual, rule);
                        (r.m, a, b)
                    })
                    .collect()
            };
            out
        })
        .collect()
}

/// Mean (sMAPE, MASE) over the series whose seasonal period is in `periods`.
fn mean_of(scores: &[(usize, f64, f64)], periods: &[usize]) -> (f64, f64) {
    let sel: Vec<_> = scores.iter().filter(|s| periods.contains(&s.0)).collect();
    let n = sel.len() as f64;
    (
        sel.iter().map(|s| s.1).sum::<f64>() / n,
        sel.iter().map(|s| s.2).sum::<f64>() / n,
    )
}

fn grid() -> Vec<Rule> {
    let mut out = Vec::new();
    for mask in 1u32..(1 << MEMBERS) {
        let members: Vec<usize> = (0..MEMBERS).filter(|i| mask & (1 << i) != 0).collect();
        let single = members.len() == 1;
        for shrink in [0.0, 0.25, 0.5] {
            for origins in [2, 3] {
                for power in [1.0, 2.0] {
                    if single && (shrink != 0.0 || origins != 2 || power != 1.0) {
                        continue;
                    }
                    out.push(Rule {
                        members: members.clone(),
                        cfg: CvConfig {
                            shrink,
                            origins,
                            power,
                            ..CvConfig::default()
                        },
                    });
                }
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut split = "holdout".to_string();
    let mut rules: Vec<Rule> = Vec::new();
    let mut files = Vec::new();
    let mut no_worse = 0;
    let mut holdouts = 1;
    // The rule `auto` used before this round (`--base` to compare against another one).
    let mut base = "ets+theta+dotm+arima/0.25/3/1".to_string();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--split" => split = it.next().expect("--split holdout|test"),
            "--no-worse" => no_worse = it.next().expect("--no-worse K").parse().expect("K"),
            "--holdouts" => holdouts = it.next().expect("--holdouts K").parse().expect("K"),
            "--base" => base = it.next().expect("--base R"),
            "--rule" => rules.push(Rule::parse(&it.next().expect("--rule R"))),
            _ => files.push(a),
        }
    }
    let holdout = match split.as_str() {
        "holdout" => true,
        "test" => false,
        other => panic!("--split must be holdout or test, not {other}"),
    };
    assert!(
        holdout || !rules.is_empty(),
        "the test split is scored only for named --rule values (choose on the holdout)"
    );
    let baseline = Rule::parse(&base);
    if rules.is_empty() {
        rules = grid();
    }
    if !rules.iter().any(|r| r.name() == baseline.name()) {
        rules.insert(0, baseline.clone());
    }
    let data: Vec<(String, Vec<Row>)> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read dump");
            (f.clone(), serde_json::from_str(&text).expect("dump json"))
        })
        .collect();
    let scores: Vec<Vec<SeriesScores>> = rules
        .iter()
        .map(|r| {
            data.iter()
                .map(|(_, rows)| evaluate(rows, if holdout { holdouts } else { 0 }, r))
                .collect()
        })
        .collect();
    let groups: Vec<(&str, Vec<usize>)> = vec![
        ("all", vec![1, 4, 12]),
        ("m=1", vec![1]),
        ("m=4", vec![4]),
        ("m=12", vec![12]),
    ];
    let scored = Scored {
        data: &data,
        scores,
        rules: &rules,
        baseline: &baseline,
        split: &split,
        no_worse,
    };
    for (label, periods) in &groups {
        rank(&scored, label, periods);
    }
}

fn rank(scored: &Scored, label: &str, periods: &[usize]) {
    let Scored {
        data,
        scores,
        rules,
        baseline,
        split,
        no_worse,
    } = scored;
    let no_worse = *no_worse;
    let table: Vec<(Rule, Vec<(f64, f64)>)> = rules
        .iter()
        .zip(scores)
        .map(|(r, per_data)| {
            let s = per_data.iter().map(|sc| mean_of(sc, periods)).collect();
            (r.clone(), s)
        })
        .collect();
    let base = &table
        .iter()
        .find(|(r, _)| r.name() == baseline.name())
        .expect("baseline")
        .1;
    // Criterion fixed before looking: mean over data sets of the mean of sMAPE and MASE,
    // each relative to the baseline (the five-member rule `auto` used before this round).
    let crit = |s: &[(f64, f64)]| {
        s.iter()
            .zip(base)
            .map(|(a, b)| 0.5 * (a.0 / b.0 + a.1 / b.1))
            .sum::<f64>()
            / s.len() as f64
    };
    // With `--no-worse K`: only rules at least as good as the baseline on both measures on
    // each of the first K files.
    let keep = |s: &[(f64, f64)]| {
        s.iter()
            .zip(base)
            .take(no_worse)
            .all(|(a, b)| a.0 <= b.0 && a.1 <= b.1)
    };
    let mut order: Vec<usize> = (0..table.len()).filter(|i| keep(&table[*i].1)).collect();
    order.sort_by(|a, b| crit(&table[*a].1).total_cmp(&crit(&table[*b].1)));
    println!(
        "split {split}, series {label}; files {:?}",
        data.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    let show = if label == "all" { 40 } else { 12 };
    for (rank, i) in order.iter().enumerate() {
        let (r, s) = &table[*i];
        if rank >= show && r.name() != baseline.name() {
            continue;
        }
        let cells: Vec<String> = s.iter().map(|(a, b)| format!("{a:.3}/{b:.4}")).collect();
        println!(
            "{rank:>4} {:.5} {:<40} {}",
            crit(s),
            r.name(),
            cells.join("  ")
        );
    }
}
