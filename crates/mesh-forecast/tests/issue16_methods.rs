//! The methods added for issue 16: seasonality test, ARIMA, dynamic Theta, validation
//! weights (inside the history only) and numerics far from the data's usual range.
mod common;

use mesh_forecast::arima::{auto_arima, fit_arima, ndiffs, ArimaOrder};
use mesh_forecast::combine::{cv_weights, origins, CvConfig};
use mesh_forecast::decompose::is_seasonal;
use mesh_forecast::dyntheta::{auto_dyn_theta, fit_dyn_theta, ThetaModel};
use mesh_forecast::method::auto_rule;
use mesh_forecast::{fit_for_horizon, forecast, FittedModel, Forecast, Method};

#[test]
fn seasonality_test_detects_known_seasonal_series() {
    for (m, len) in [(12usize, 96usize), (4, 40)] {
        let e = common::noise(11 + m as u64, len, 2.0);
        let seasonal: Vec<f64> = (0..len)
            .map(|t| {
                let angle = 2.0 * std::f64::consts::PI * (t % m) as f64 / m as f64;
                100.0 + 0.3 * t as f64 + 15.0 * angle.sin() + e[t]
            })
            .collect();
        assert!(is_seasonal(&seasonal, m), "period {m} not detected");
        let plain: Vec<f64> = e.iter().map(|v| 100.0 + v).collect();
        assert!(!is_seasonal(&plain, m), "noise flagged seasonal at {m}");
    }
    // Too short (two cycles or less) and non-seasonal periods never fire.
    assert!(!is_seasonal(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], 3));
    assert!(!is_seasonal(&[1.0, 5.0, 2.0, 8.0], 1));
}

fn ar1(phi: f64, n: usize, seed: u64) -> Vec<f64> {
    let e = common::noise(seed, n + 100, 1.0);
    let mut y = Vec::with_capacity(n);
    let mut prev = 0.0;
    for (t, v) in e.iter().enumerate() {
        prev = phi * prev + v;
        if t >= 100 {
            y.push(10.0 + prev);
        }
    }
    y
}

#[test]
fn arima_recovers_ar1_and_ma1_coefficients() {
    let y = ar1(0.6, 500, 21);
    let order = ArimaOrder {
        p: 1,
        d: 0,
        q: 0,
        constant: true,
    };
    let m = fit_arima(&y, order).unwrap();
    assert!((m.ar[0] - 0.6).abs() < 0.08, "phi {}", m.ar[0]);
    assert!((m.constant() - 10.0).abs() < 0.5, "mean {}", m.constant());

    let e = common::noise(22, 501, 1.0);
    let y: Vec<f64> = (1..501).map(|t| 5.0 + e[t] + 0.5 * e[t - 1]).collect();
    let order = ArimaOrder {
        p: 0,
        d: 0,
        q: 1,
        constant: true,
    };
    let m = fit_arima(&y, order).unwrap();
    assert!((m.ma[0] - 0.5).abs() < 0.08, "theta {}", m.ma[0]);

    // Automatic selection: a stationary AR(1) needs no difference, a random walk one.
    let y = ar1(0.6, 300, 23);
    assert_eq!(ndiffs(&y), 0);
    let m = auto_arima(&y).unwrap();
    assert_eq!(m.order.d, 0, "{}", m.order.describe());
    let walk: Vec<f64> = common::noise(24, 300, 1.0)
        .iter()
        .scan(0.0, |a, v| {
            *a += v;
            Some(*a)
        })
        .collect();
    assert_eq!(ndiffs(&walk), 1);
}

#[test]
fn dynamic_theta_follows_a_trend_change() {
    // Flat for 40 steps then rising by 2 a step: the dynamic trend line, updated as the
    // data arrive, ends with a clearly positive drift.
    let e = common::noise(31, 70, 0.3);
    let y: Vec<f64> = (0..70)
        .map(|t: usize| 50.0 + 2.0 * t.saturating_sub(40) as f64 + e[t])
        .collect();
    let m = fit_dyn_theta(&y, ThetaModel::Dotm).unwrap();
    let f = m.forecast(6);
    assert!(f.mean[5] > f.mean[0] + 3.0, "{:?}", f.mean);
    assert!(m.theta >= 1.0 && (0.1..=0.99).contains(&m.alpha));
    let auto = auto_dyn_theta(&y).unwrap();
    assert!(auto.mse <= m.mse + 1e-9);
}

#[test]
fn combination_weights_never_use_the_test_horizon() {
    let cfg = CvConfig::default();
    let y: Vec<f64> = (0..60).map(|t| 100.0 + (t as f64).sin() * 5.0).collect();
    let n = y.len();
    let seen = std::sync::Mutex::new(Vec::new());
    let w = cv_weights(&y, 1, 18, 3, &cfg, |c, train, steps| {
        seen.lock().unwrap().push((train.len(), steps));
        Some(Forecast {
            mean: vec![train[train.len() - 1] + c as f64; steps],
            sd: vec![1.0; steps],
        })
    });
    let seen = seen.into_inner().unwrap();
    assert!(!seen.is_empty());
    for (len, steps) in seen {
        assert!(len + steps <= n, "validation window past the history");
        assert!(steps <= 18);
    }
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    // The fitted combination only ever sees the history: forecasts from a history are
    // the same whatever values follow it.
    let train = &y[..42];
    let a = forecast(Method::CombCv, train, 1, 18).unwrap();
    let mut other = y.clone();
    other[42..].iter_mut().for_each(|v| *v = -1e6);
    let b = forecast(Method::CombCv, &other[..42], 1, 18).unwrap();
    assert_eq!(a, b);
    assert!(origins(42, 18, &cfg).iter().all(|(o, hv)| o + hv <= 42));
    // The weights are stored with the model and sum to one.
    match fit_for_horizon(Method::CombCv, train, 1, 18).unwrap() {
        FittedModel::Combination { weights, parts, .. } => {
            assert_eq!(weights.len(), parts.len());
            assert!(
                (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
                "{weights:?}"
            );
        }
        other => panic!("expected a combination, got {}", other.describe()),
    }
}

#[test]
fn auto_combines_the_members_of_its_rule() {
    for (period, h) in [(1usize, 6usize), (4, 8), (12, 18)] {
        let e = common::noise(40 + period as u64, 72, 3.0);
        let y: Vec<f64> = (0..72)
            .map(|t| {
                let angle = 2.0 * std::f64::consts::PI * (t % period) as f64 / period as f64;
                200.0 + 0.5 * t as f64 + 20.0 * angle.sin() + e[t]
            })
            .collect();
        let rule = auto_rule();
        let fitted = fit_for_horizon(Method::Auto, &y, period, h).unwrap();
        let described = fitted.describe();
        match fitted {
            FittedModel::Combination { weights, parts, .. } => {
                assert_eq!(parts.len(), rule.members.len(), "{described}");
                assert_eq!(weights.len(), parts.len());
                assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                // Validation, not only the equal split, sets the weights.
                let spread = weights.iter().cloned().fold(0.0, f64::max)
                    - weights.iter().cloned().fold(1.0, f64::min);
                assert!(spread > 1e-3, "{described}");
            }
            other => panic!("expected a combination, got {}", other.describe()),
        }
        // The damped trend is no longer a member.
        assert!(!described.contains("damped"), "{described}");
        let f = forecast(Method::Auto, &y, period, h).unwrap();
        assert_eq!(f.mean.len(), h);
        assert!(f.mean.iter().all(|v| v.is_finite() && *v > 100.0));
    }
}

const METHODS: [Method; 8] = [
    Method::Auto,
    Method::Dotm,
    Method::Arima,
    Method::Sarima,
    Method::CombAll,
    Method::Ets,
    Method::Theta,
    Method::Damped,
];

fn assert_finite(name: &str, y: &[f64], period: usize) {
    for method in METHODS {
        let f = forecast(method, y, period, 8).unwrap_or_else(|e| panic!("{name} / {method}: {e}"));
        assert_eq!(f.mean.len(), 8);
        assert!(
            f.mean.iter().chain(&f.sd).all(|v| v.is_finite()),
            "{name} / {method}: {:?} {:?}",
            f.mean,
            f.sd
        );
    }
}

#[test]
fn forecasts_stay_finite_far_outside_the_usual_range() {
    let e = common::noise(41, 48, 1.0);
    let big: Vec<f64> = (0..48)
        .map(|t| 1e9 * (3.0 + 0.01 * t as f64 + 0.2 * ((t % 12) as f64 / 12.0) + 0.01 * e[t]))
        .collect();
    assert_finite("1e9 scale", &big, 12);
    let f = forecast(Method::Auto, &big, 12, 4).unwrap();
    assert!(
        f.mean.iter().all(|v| (2e9..6e9).contains(v)),
        "{:?}",
        f.mean
    );
    let near_constant: Vec<f64> = (0..30)
        .map(|t| 500.0 + if t % 7 == 0 { 1e-9 } else { 0.0 })
        .collect();
    assert_finite("near constant", &near_constant, 4);
    assert_finite("constant", &[7.0; 25], 4);
    assert_finite("zeros", &[0.0; 25], 4);
    let sparse: Vec<f64> = (0..36)
        .map(|t| if t % 5 == 0 { 3.0 } else { 0.0 })
        .collect();
    assert_finite("intermittent with zeros", &sparse, 12);
    let tiny: Vec<f64> = (0..30).map(|t| 1e-9 * (1.0 + 0.1 * t as f64)).collect();
    assert_finite("1e-9 scale", &tiny, 1);
    assert_finite("length 1", &[4.0], 1);
    assert_finite("length 2", &[4.0, 6.0], 12);
    assert_finite(
        "negative",
        &(0..20).map(|t| -50.0 - t as f64).collect::<Vec<_>>(),
        4,
    );
}

/// Mean absolute percentage error of `f` against `actual`.
fn mape(actual: &[f64], f: &[f64]) -> f64 {
    actual
        .iter()
        .zip(f)
        .map(|(a, b)| 100.0 * (a - b).abs() / a.abs())
        .sum::<f64>()
        / actual.len() as f64
}

#[test]
fn seasonal_arima_differences_the_airline_series_and_beats_seasonal_naive() {
    let y = mesh_forecast::data::load_csv_column(&common::data_file("forecast/Airline.csv"))
        .expect("Airline.csv");
    let (train, test) = y.split_at(y.len() - 12);
    let fitted = fit_for_horizon(Method::Sarima, train, 12, 12).unwrap();
    let described = fitted.describe();
    assert!(described.ends_with("(0,1,0)[12]"), "{described}");
    let f = fitted.forecast(12);
    let snaive = forecast(Method::Snaive, train, 12, 12).unwrap();
    let (ours, base) = (mape(test, &f.mean), mape(test, &snaive.mean));
    assert!(
        ours < base,
        "sarima MAPE {ours:.2} vs seasonal naive {base:.2}"
    );
    // The intervals widen with the horizon (the seasonal integration adds variance).
    assert!(f.sd[11] > f.sd[0], "{:?}", f.sd);
}

/// A yearly series that climbs slowly, then steeply, levels off and falls 60% in its last
/// year (the shape of some of Tourism's yearly series): ARIMA on the differences extends the
/// fall below zero, and `auto` leaves that member out rather than averaging it in.
#[test]
fn a_member_forecasting_a_positive_series_below_zero_is_left_out() {
    let y: Vec<f64> = [
        5.0, 6.0, 7.0, 6.0, 6.5, 7.0, 8.0, 11.0, 16.0, 15.0, 18.0, 20.0, 25.0, 44.0, 70.0, 90.0,
        98.0, 95.0, 38.0,
    ]
    .iter()
    .map(|v| v * 1_000.0)
    .collect();
    let h = 4;
    let arima = forecast(Method::Arima, &y, 1, h).unwrap();
    assert!(
        arima.mean.iter().any(|v| *v <= 0.0),
        "the case needs an ARIMA that falls below zero: {:?}",
        arima.mean
    );
    let fitted = fit_for_horizon(Method::Auto, &y, 1, h).unwrap();
    let described = fitted.describe();
    match &fitted {
        FittedModel::Combination { parts, weights, .. } => {
            assert_eq!(parts.len(), auto_rule().members.len() - 1, "{described}");
            assert!(!described.contains("ARIMA"), "{described}");
            assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        other => panic!("expected a combination, got {}", other.describe()),
    }
    let f = fitted.forecast(h);
    assert!(f.mean.iter().all(|v| *v > 0.0), "{:?}", f.mean);
    // A series that is not all positive keeps every member, negative forecasts included.
    let shifted: Vec<f64> = y.iter().map(|v| v - 6_000.0).collect();
    match fit_for_horizon(Method::Auto, &shifted, 1, h).unwrap() {
        FittedModel::Combination { parts, .. } => {
            assert_eq!(parts.len(), auto_rule().members.len())
        }
        other => panic!("expected a combination, got {}", other.describe()),
    }
}
