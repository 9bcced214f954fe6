//! Prediction-interval coverage on simulated data and the inventory maths by hand.
mod common;

use mesh_forecast::ets::{fit_ets, ErrorType, EtsSpec, SeasonType, TrendType};
use mesh_forecast::{reorder_suggestion, Forecast};

/// Simulate local-level series (ETS(A,N,N), alpha 0.3, sigma 1), fit, and count how often
/// the 80% and 95% intervals cover the realised future at steps 1 and 6.
#[test]
fn ann_intervals_cover_at_nominal_rate() {
    let spec = EtsSpec {
        error: ErrorType::Additive,
        trend: TrendType::None,
        season: SeasonType::None,
        period: 1,
    };
    let sims = 300;
    let (n, h) = (80, 6);
    let mut hits = [[0usize; 2]; 2]; // [level][step]
    for s in 0..sims {
        let e = common::noise(1000 + s as u64, n + h, 1.0);
        let mut level = 50.0;
        let y: Vec<f64> = e
            .iter()
            .map(|err| {
                let v = level + err;
                level += 0.3 * err;
                v
            })
            .collect();
        let m = fit_ets(&y[..n], spec).unwrap();
        let f = m.forecast(h);
        for (li, lvl) in [0.8, 0.95].into_iter().enumerate() {
            let i = f.interval(lvl).unwrap();
            for (si, step) in [0, h - 1].into_iter().enumerate() {
                let v = y[n + step];
                if v >= i.lower[step] && v <= i.upper[step] {
                    hits[li][si] += 1;
                }
            }
        }
    }
    let rate = |c: usize| c as f64 / sims as f64;
    for (c80, c95) in hits[0].iter().zip(&hits[1]) {
        let (r80, r95) = (rate(*c80), rate(*c95));
        eprintln!("coverage 80%: {r80:.3}  95%: {r95:.3}");
        assert!((0.72..=0.88).contains(&r80), "80% interval covered {r80}");
        assert!((0.90..=0.99).contains(&r95), "95% interval covered {r95}");
    }
}

fn flat(mean: f64, sd: f64, h: usize) -> Forecast {
    Forecast {
        mean: vec![mean; h],
        sd: vec![sd; h],
    }
}

#[test]
fn reorder_point_and_safety_stock_by_hand() {
    // Lead time 2 periods, demand 10 ± 2 per period: lead-time demand 20, sd sqrt(8).
    let f = flat(10.0, 2.0, 4);
    let s = reorder_suggestion(15.0, 5.0, &f, 2, 0.95).unwrap();
    let sd = 8f64.sqrt();
    let z95 = 1.644_853_626_951_472_2;
    assert!((s.lead_time_demand - 20.0).abs() < 1e-12);
    assert!((s.lead_time_sd - sd).abs() < 1e-12);
    assert!((s.safety_stock - z95 * sd).abs() < 1e-9);
    assert!((s.reorder_point - (20.0 + z95 * sd)).abs() < 1e-9);
    assert!((s.order_qty - z95 * sd).abs() < 1e-9);
    // Inventory position equals expected demand: a coin flip.
    assert!((s.stockout_probability - 0.5).abs() < 1e-12);
    assert!(s.stockout_alert(0.2));

    // Plenty of stock: P(D > 30) = 1 - Phi(10 / sqrt 8) = 2.0342e-4.
    let s = reorder_suggestion(30.0, 0.0, &f, 2, 0.95).unwrap();
    assert!(
        (s.stockout_probability - 2.0342e-4).abs() < 1e-7,
        "{}",
        s.stockout_probability
    );
    assert_eq!(s.order_qty, 0.0);
    assert!(!s.stockout_alert(0.05));
}

#[test]
fn deterministic_demand_and_bad_arguments() {
    let f = flat(5.0, 0.0, 3);
    let s = reorder_suggestion(10.0, 0.0, &f, 3, 0.99).unwrap();
    assert_eq!(s.safety_stock, 0.0);
    assert_eq!(s.order_qty, 5.0);
    assert_eq!(s.stockout_probability, 1.0);
    assert!(reorder_suggestion(1.0, 0.0, &f, 4, 0.9).is_err());
    assert!(reorder_suggestion(1.0, 0.0, &f, 0, 0.9).is_err());
    assert!(reorder_suggestion(1.0, 0.0, &f, 1, 1.0).is_err());
    assert!(reorder_suggestion(1.0, -1.0, &f, 1, 0.9).is_err());
}
