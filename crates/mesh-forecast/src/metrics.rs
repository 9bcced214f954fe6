//! Forecast accuracy measures with the M3 protocol: sMAPE and MASE.

use crate::error::{invalid, Result};

/// Symmetric MAPE in percent: `mean(200 |y - f| / (|y| + |f|))`; a pair with
/// `y = f = 0` contributes 0.
pub fn smape(actual: &[f64], forecast: &[f64]) -> Result<f64> {
    check(actual, forecast)?;
    let sum: f64 = actual
        .iter()
        .zip(forecast)
        .map(|(y, f)| {
            let d = y.abs() + f.abs();
            if d == 0.0 {
                0.0
            } else {
                200.0 * (y - f).abs() / d
            }
        })
        .sum();
    Ok(sum / actual.len() as f64)
}

/// Mean absolute scaled error: MAE of the forecast over the in-sample mean
/// `|y_t - y_{t-m}|` of `insample`.
pub fn mase(insample: &[f64], actual: &[f64], forecast: &[f64], m: usize) -> Result<f64> {
    check(actual, forecast)?;
    let m = m.max(1);
    if insample.len() <= m {
        return Err(invalid(
            "insample",
            format!("{} values cannot scale lag-{m} differences", insample.len()),
        ));
    }
    let scale = (m..insample.len())
        .map(|t| (insample[t] - insample[t - m]).abs())
        .sum::<f64>()
        / (insample.len() - m) as f64;
    if scale == 0.0 {
        return Err(invalid(
            "insample",
            "in-sample seasonal differences are all zero",
        ));
    }
    let mae = actual
        .iter()
        .zip(forecast)
        .map(|(y, f)| (y - f).abs())
        .sum::<f64>()
        / actual.len() as f64;
    Ok(mae / scale)
}

fn check(actual: &[f64], forecast: &[f64]) -> Result<()> {
    if actual.is_empty() || actual.len() != forecast.len() {
        return Err(invalid(
            "forecast",
            format!(
                "needs the same non-zero length as actual ({} vs {})",
                forecast.len(),
                actual.len()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smape_hand_computed() {
        // |100-110|/(210) * 200 = 9.5238..., |50-40|/90*200 = 22.222...
        let s = smape(&[100.0, 50.0], &[110.0, 40.0]).unwrap();
        assert!((s - (2000.0 / 210.0 + 2000.0 / 90.0) / 2.0).abs() < 1e-12);
        assert_eq!(smape(&[0.0], &[0.0]).unwrap(), 0.0);
        assert!(smape(&[1.0], &[]).is_err());
    }

    #[test]
    fn mase_hand_computed() {
        // Lag-1 diffs of [1, 3, 6, 10]: 2, 3, 4 -> scale 3. MAE of [12,14] vs [11,17] = 2.
        let m = mase(&[1.0, 3.0, 6.0, 10.0], &[12.0, 14.0], &[11.0, 17.0], 1).unwrap();
        assert!((m - 2.0 / 3.0).abs() < 1e-12);
        // Lag-2 diffs: 5, 7 -> scale 6.
        let m2 = mase(&[1.0, 3.0, 6.0, 10.0], &[12.0, 14.0], &[11.0, 17.0], 2).unwrap();
        assert!((m2 - 2.0 / 6.0).abs() < 1e-12);
        assert!(mase(&[5.0, 5.0], &[1.0], &[1.0], 1).is_err());
    }
}
