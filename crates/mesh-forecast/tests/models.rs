//! Each model on synthetic series with known structure, and on the airline data.
mod common;

use mesh_forecast::data::load_csv_column;
use mesh_forecast::ets::{
    auto_ets, candidate_specs, fit_ets_bounded, SeasonType, TrendType, NONSEASONAL_BETA_MAX,
};
use mesh_forecast::metrics::smape;
use mesh_forecast::{fit, forecast, FittedModel, Forecaster, Method};

#[test]
fn ets_recovers_linear_slope() {
    let e = common::noise(1, 60, 0.5);
    let y: Vec<f64> = (0..60).map(|t| 50.0 + 2.0 * t as f64 + e[t]).collect();
    let m = auto_ets(&y, 1).unwrap();
    assert_ne!(m.spec.trend, TrendType::None, "chose {}", m.spec.code());
    let f = m.forecast(10);
    let slope = (f.mean[9] - f.mean[0]) / 9.0;
    assert!((slope - 2.0).abs() < 0.2, "slope {slope}");
    assert!((f.mean[0] - 170.0).abs() < 3.0, "first step {}", f.mean[0]);
}

/// A yearly-like series of 31 values: log-level grows ~6% a year with noise, jumps
/// (up or down) in about one year of ten, and the last value drops by a quarter (the shape
/// of Tourism's `Y13`).
fn growth_with_jumps(seed: u64, scale: f64) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut l = 0.0f64;
    let mut y: Vec<f64> = (0..30)
        .map(|_| {
            l += 0.06 + 0.08 * (r.random::<f64>() - 0.5);
            if r.random::<f64>() < 0.1 {
                l += 0.8 * (r.random::<f64>() - 0.3);
            }
            scale * l.exp()
        })
        .collect();
    y.push(0.75 * y[29]);
    y
}

/// Lowest of the next four forecasts as a share of the last value.
fn lowest_share(m: &mesh_forecast::ets::FittedEts, y: &[f64]) -> f64 {
    let last = y[y.len() - 1];
    m.forecast(4)
        .mean
        .iter()
        .fold(f64::INFINITY, |a, v| a.min(v / last))
}

#[test]
fn yearly_ets_slope_does_not_follow_a_last_step_drop() {
    let (mut usual_bad, mut worst) = (0, f64::INFINITY);
    for seed in 0..300 {
        let y = growth_with_jumps(seed, 1e5);
        let m = auto_ets(&y, 1).unwrap();
        assert!(
            m.params.beta <= NONSEASONAL_BETA_MAX,
            "seed {seed}: {}",
            m.params.beta
        );
        worst = worst.min(lowest_share(&m, &y));
        // The same selection with the usual region (beta <= alpha).
        let usual = candidate_specs(1, false)
            .into_iter()
            .filter_map(|spec| fit_ets_bounded(&y, spec, None).ok())
            .min_by(|a, b| a.aicc.total_cmp(&b.aicc))
            .unwrap();
        usual_bad += usize::from(lowest_share(&usual, &y) < 0.6);
    }
    // Measured: worst 0.81 with the bound; without it 28 of 300 series fall below 60% of
    // their last value within four years, some below zero.
    assert!(
        worst > 0.6,
        "a bounded forecast fell to {worst} of the last value"
    );
    assert!(
        usual_bad >= 10,
        "the usual region overreacted on {usual_bad} of 300"
    );
    for spec in candidate_specs(1, false) {
        let y = growth_with_jumps(1, 1e5);
        assert!(fit_ets_bounded(&y, spec, Some(0.0)).is_err());
        assert!(fit_ets_bounded(&y, spec, Some(f64::NAN)).is_err());
    }
}

#[test]
fn yearly_ets_forecasts_scale_with_the_data_far_outside_its_range() {
    for seed in 0..20 {
        let base = auto_ets(&growth_with_jumps(seed, 1.0), 1)
            .unwrap()
            .forecast(4)
            .mean;
        for scale in [1e-12, 1e12, 1e250] {
            let m = auto_ets(&growth_with_jumps(seed, scale), 1).unwrap();
            for (v, b) in m.forecast(4).mean.iter().zip(&base) {
                assert!(v.is_finite(), "seed {seed} scale {scale}: {v}");
                let rel = (v / scale - b).abs() / b.abs();
                assert!(rel <= 1e-6, "seed {seed} scale {scale}: {v} vs {b}");
            }
        }
    }
}

#[test]
fn theta_forecast_slope_is_half_the_trend() {
    let e = common::noise(2, 80, 0.5);
    let y: Vec<f64> = (0..80).map(|t| 20.0 + 1.0 * t as f64 + e[t]).collect();
    let f = forecast(Method::Theta, &y, 1, 8).unwrap();
    let slope = (f.mean[7] - f.mean[0]) / 7.0;
    assert!((slope - 0.5).abs() < 0.05, "theta slope {slope}");
}

#[test]
fn ets_recovers_additive_seasonal_pattern() {
    let pattern = [-10.0, 5.0, 15.0, -10.0];
    let e = common::noise(3, 64, 1.0);
    let y: Vec<f64> = (0..64).map(|t| 200.0 + pattern[t % 4] + e[t]).collect();
    let m = auto_ets(&y, 4).unwrap();
    assert_ne!(m.spec.season, SeasonType::None, "chose {}", m.spec.code());
    let f = m.forecast(8);
    // 64 observations: the next one is at position 0 of the cycle.
    for (i, v) in f.mean.iter().enumerate() {
        let expect = 200.0 + pattern[i % 4];
        assert!((v - expect).abs() < 3.0, "step {i}: {v} vs {expect}");
    }
}

#[test]
fn seasonal_naive_and_naive_forecast_the_obvious() {
    let y = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0];
    assert_eq!(
        forecast(Method::Naive, &y, 3, 2).unwrap().mean,
        vec![9.0, 9.0]
    );
    assert_eq!(
        forecast(Method::Snaive, &y, 3, 4).unwrap().mean,
        vec![1.0, 5.0, 9.0, 1.0]
    );
    // A series shorter than MIN_MODEL_LEN falls back to seasonal naive for model methods.
    assert_eq!(
        forecast(Method::Comb, &y[2..], 3, 3).unwrap().mean,
        vec![1.0, 5.0, 9.0]
    );
    assert!(forecast(Method::Ets, &[], 1, 3).is_err());
    assert!(forecast(Method::Ets, &[1.0, f64::NAN], 1, 3).is_err());
}

#[test]
fn short_series_from_min_model_len_are_fitted_not_naive() {
    // Six yearly values on a steady climb: the naive fallback would repeat 20; `auto` and the
    // Theta members carry the climb on, and no member collapses (ARIMA once chose the
    // zero-mean order here, the only one short enough to fit, and forecast 0).
    let y = [10.0, 12.1, 13.9, 16.0, 18.1, 20.0];
    assert!(y.len() >= mesh_forecast::method::MIN_MODEL_LEN);
    for method in [Method::Auto, Method::Theta, Method::Dotm] {
        let f = forecast(method, &y, 1, 4).unwrap().mean;
        assert!(
            f[0] > 20.5 && f[3] > f[0] + 2.0,
            "{method}: {f:?} does not continue the climb"
        );
    }
    for method in [Method::Ets, Method::Arima, Method::Damped] {
        let f = forecast(method, &y, 1, 4).unwrap().mean;
        assert!(
            f.iter().all(|v| *v >= 19.0),
            "{method}: {f:?} falls below the last values"
        );
    }
}

fn airline() -> Vec<f64> {
    load_csv_column(&common::data_file("forecast/Airline.csv")).unwrap()
}

#[test]
fn airline_selects_multiplicative_season() {
    let y = airline();
    assert_eq!(y.len(), 144);
    let m = auto_ets(&y, 12).unwrap();
    assert_eq!(
        m.spec.season,
        SeasonType::Multiplicative,
        "chose {}",
        m.spec.code()
    );
}

#[test]
fn airline_holdout_error_is_small() {
    let y = airline();
    let (train, test) = y.split_at(132);
    // Measured (release and debug alike): ETS(M,A,M) 4.10, theta 5.42, comb 4.73;
    // seasonal naive scores 10.57 on the same holdout.
    for (method, bound) in [
        (Method::Ets, 5.0),
        (Method::Theta, 6.5),
        (Method::Comb, 5.5),
    ] {
        let f = forecast(method, train, 12, 12).unwrap();
        let s = smape(test, &f.mean).unwrap();
        assert!(s < bound, "{method}: holdout sMAPE {s:.2} >= {bound}");
    }
}

#[test]
fn combination_describes_its_parts() {
    let y = airline();
    let m = fit(Method::Comb, &y, 12).unwrap();
    match &m {
        FittedModel::Combination { parts, median, .. } => {
            assert_eq!(parts.len(), 3);
            assert!(!median);
        }
        other => panic!("expected a combination, got {}", other.describe()),
    }
    assert!(m.describe().contains("theta+season"), "{}", m.describe());
}

#[test]
fn incremental_forecaster_tracks_a_refit() {
    let y = airline();
    let mut inc = Forecaster::new(Method::Ets, 12, 1000).unwrap();
    inc.extend(y[..120].iter().copied()).unwrap();
    inc.refit().unwrap();
    inc.extend(y[120..132].iter().copied()).unwrap();
    let cheap = inc.forecast(12).unwrap();
    let mut full = Forecaster::new(Method::Ets, 12, 1).unwrap();
    full.extend(y[..132].iter().copied()).unwrap();
    let refit = full.forecast(12).unwrap();
    let test = &y[132..];
    let s_cheap = smape(test, &cheap.mean).unwrap();
    let s_refit = smape(test, &refit.mean).unwrap();
    // Absorbing 12 points without re-estimation stays close to a full refit.
    assert!(s_cheap < 6.0 && s_refit < 6.0, "{s_cheap} {s_refit}");
    assert_eq!(inc.history().len(), 132);
}
