//! Giant-tour split (Prins 2004; Vidal 2016): optimal segmentation of a customer sequence
//! into at most `k` routes, with capacity excess penalised (time windows are left to the
//! local search).

use crate::instance::Instance;

/// Splits `tour` into at most `slots` routes, returning exactly `slots` routes (some empty).
pub(crate) fn split(
    inst: &Instance,
    tour: &[usize],
    slots: usize,
    cap_penalty: f64,
) -> Vec<Vec<usize>> {
    let n = tour.len();
    let q = inst.capacity;
    let max_load = q + q / 2;
    // cost of route tour[i..j] (i < j), exclusive end.
    let cost = |i: usize, j: usize, load: i64, inner: f64| -> f64 {
        inst.d(0, tour[i]) + inner + inst.d(tour[j - 1], 0) + cap_penalty * (load - q).max(0) as f64
    };
    // Unlimited fleet first.
    let mut p = vec![f64::INFINITY; n + 1];
    let mut pred = vec![0usize; n + 1];
    p[0] = 0.0;
    for i in 0..n {
        if p[i].is_infinite() {
            continue;
        }
        let (mut load, mut inner) = (0i64, 0.0);
        for j in i + 1..=n {
            load += inst.demand[tour[j - 1]];
            if j > i + 1 {
                inner += inst.d(tour[j - 2], tour[j - 1]);
            }
            if load > max_load && j > i + 1 {
                break;
            }
            let c = p[i] + cost(i, j, load, inner);
            if c < p[j] {
                p[j] = c;
                pred[j] = i;
            }
        }
    }
    let mut cuts = Vec::new();
    let mut j = n;
    while j > 0 {
        cuts.push((pred[j], j));
        j = pred[j];
    }
    if cuts.len() > slots {
        cuts = split_limited(inst, tour, slots, cap_penalty, max_load);
    }
    let mut routes: Vec<Vec<usize>> = cuts
        .iter()
        .rev()
        .map(|&(i, j)| tour[i..j].to_vec())
        .collect();
    routes.resize(slots.max(routes.len()), Vec::new());
    routes
}

fn split_limited(
    inst: &Instance,
    tour: &[usize],
    k: usize,
    pen: f64,
    max_load: i64,
) -> Vec<(usize, usize)> {
    let n = tour.len();
    let q = inst.capacity;
    let mut p = vec![vec![f64::INFINITY; n + 1]; k + 1];
    let mut pred = vec![vec![0usize; n + 1]; k + 1];
    p[0][0] = 0.0;
    for r in 0..k {
        for i in r..n {
            if p[r][i].is_infinite() {
                continue;
            }
            let (mut load, mut inner) = (0i64, 0.0);
            for j in i + 1..=n {
                load += inst.demand[tour[j - 1]];
                if j > i + 1 {
                    inner += inst.d(tour[j - 2], tour[j - 1]);
                }
                // The last route must absorb the rest: no load cap there.
                if load > max_load && j > i + 1 && r + 1 < k {
                    break;
                }
                let c = p[r][i]
                    + inst.d(0, tour[i])
                    + inner
                    + inst.d(tour[j - 1], 0)
                    + pen * (load - q).max(0) as f64;
                if c < p[r + 1][j] {
                    p[r + 1][j] = c;
                    pred[r + 1][j] = i;
                }
            }
        }
    }
    let best_r = (1..=k)
        .min_by(|&a, &b| p[a][n].total_cmp(&p[b][n]))
        .unwrap_or(k);
    let mut cuts = Vec::new();
    let (mut r, mut j) = (best_r, n);
    while j > 0 && r > 0 {
        let i = pred[r][j];
        cuts.push((i, j));
        j = i;
        r -= 1;
    }
    cuts
}
