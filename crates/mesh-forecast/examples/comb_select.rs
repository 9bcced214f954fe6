//! Score combination rules (member set, shrinkage, validation origins, weight power) offline
//! from `origin_dump` files, with exactly the weighting code `auto` uses
//! ([`cv_weights`]).
//!
//! `--split holdout` scores every rule of a grid on the last `h` values of each history
//! (the test values are never read) and ranks them; `--split test --rule R` scores only the
//! named rules on the test split, for reporting after the choice. `--holdouts 2` scores
//! every series on both holdout cuts of the dump (last `h` and the `h` before), `--base R`
//! names the rule the criterion is relative to (default: `auto`'s rule before issue 16
//! round 4). `--forecasts PREFIX` writes the first `--rule`'s forecasts after every holdout
//! cut and after the whole history to `PREFIX<file stem>.json` (nothing is scored), so they
//! can be compared per series with forecasts made elsewhere. `--half 0|1` keeps one half
//! of the series (split by a hash of the name), to choose on one half and check on the
//! other. A rule may name members per seasonal period: `ets+theta,m12:ets+snaive/0.25/3/1`.
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
    name: String,
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
    /// Members for series of one seasonal period, in place of `members`.
    by_period: Vec<(usize, Vec<usize>)>,
    cfg: CvConfig,
}

fn parse_members(s: &str) -> Vec<usize> {
    s.split('+')
        .map(|n| {
            (0..MEMBERS)
                .position(|i| member_name(i) == n)
                .unwrap_or_else(|| panic!("unknown member {n}"))
        })
        .collect()
}

fn member_names(members: &[usize]) -> String {
    let m: Vec<&str> = members.iter().map(|i| member_name(*i)).collect();
    m.join("+")
}

impl Rule {
    /// The members used on series of seasonal period `m`.
    fn members_for(&self, m: usize) -> &[usize] {
        self.by_period
            .iter()
            .find(|(p, _)| *p == m)
            .map_or(&self.members, |(_, v)| v)
    }

    fn name(&self) -> String {
        let mut m = member_names(&self.members);
        for (p, v) in &self.by_period {
            m.push_str(&format!(",m{p}:{}", member_names(v)));
        }
        format!(
            "{}/{}/{}/{}",
            m, self.cfg.shrink, self.cfg.origins, self.cfg.power
        )
    }

    /// `A+B/shrink/origins/power`, or per period `A+B,m4:C+D,m12:E/...` (the first list is
    /// the default, `mK:` lists replace it on series of seasonal period K).
    fn parse(s: &str) -> Rule {
        let p: Vec<&str> = s.split('/').collect();
        let mut lists = p[0].split(',');
        let members = parse_members(lists.next().expect("members"));
        let by_period = lists
            .map(|l| {
                let (k, v) = l.split_once(':').expect("mK:members");
                let k = k.strip_prefix('m').expect("mK:members").parse().expect("K");
                (k, parse_members(v))
            })
            .collect();
        Rule {
            members,
            by_period,
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
    let f = combined(row, by_origin, y, rule);
    (
        smape(actual, &f.mean).expect("smape"),
        mase(y, actual, &f.mean, row.m).expect("mase"),
    )
}

/// The rule's forecast of the `h` values after `y` (a prefix of the row's series).
fn combined(row: &Row, by_origin: &HashMap<usize, &Origin>, y: &[f64], rule: &Rule) -> Forecast {
    let n = y.len();
    let members = rule.members_for(row.m);
    let at = |o: usize, c: usize| -> Option<Forecast> {
        let k = members[c];
        let f = by_origin.get(&o)?.f[k].clone()?;
        Some(Forecast {
            sd: vec![0.0; f.len()],
            mean: f,
        })
    };
    // Members that could not be fitted on the whole history are left out, as in `auto`.
    let ok: Vec<usize> = (0..members.len()).filter(|c| at(n, *c).is_some()).collect();
    let parts: Vec<Forecast> = ok.iter().map(|c| at(n, *c).expect("fitted")).collect();
    let weights = cv_weights(y, row.m, row.h, ok.len(), &rule.cfg, |c, train, steps| {
        at(train.len(), ok[c]).map(|mut f| {
            f.mean.truncate(steps);
            f.sd.truncate(steps);
            f
        })
    });
    Forecast::combine_weighted(&parts, &weights)
}

/// Which half (0 or 1) of a split by series a series falls in: FNV-1a of its name through
/// SplitMix64's finaliser (FNV's own bits split names like `N0001` by period), so the split
/// is fixed by the data and needs no seed.
fn name_half(name: &str) -> u64 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & 1
}

/// Per row, the first rule's forecast after every holdout cut (keyed by the cut) and after
/// the whole history (`"test"`), for scoring beside forecasts made elsewhere.
fn write_forecasts(rows: &[Row], rule: &Rule, path: &str) {
    let out: Vec<serde_json::Map<String, serde_json::Value>> = rows
        .par_iter()
        .map(|r| {
            let by_origin: HashMap<usize, &Origin> = r.fc.iter().map(|o| (o.o, o)).collect();
            let mut m = serde_json::Map::new();
            for &cut in &r.cuts {
                let f = combined(r, &by_origin, &r.x[..cut], rule);
                m.insert(cut.to_string(), serde_json::json!(f.mean));
            }
            let f = combined(r, &by_origin, &r.x, rule);
            m.insert("test".into(), serde_json::json!(f.mean));
            m
        })
        .collect();
    std::fs::write(path, serde_json::to_string(&out).expect("json")).expect("write forecasts");
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
                        by_period: Vec::new(),
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
    let mut forecasts: Option<String> = None;
    let mut half: Option<u64> = None;
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
            "--half" => half = Some(it.next().expect("--half 0|1").parse().expect("0|1")),
            "--forecasts" => forecasts = Some(it.next().expect("--forecasts PREFIX")),
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
            let mut rows: Vec<Row> = serde_json::from_str(&text).expect("dump json");
            if let Some(k) = half {
                rows.retain(|r| name_half(&r.name) == k);
            }
            (f.clone(), rows)
        })
        .collect();
    if let Some(prefix) = &forecasts {
        for (file, rows) in &data {
            let stem = std::path::Path::new(file)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("data");
            write_forecasts(rows, &rules[0], &format!("{prefix}{stem}.json"));
        }
        return;
    }
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
