//! Airline passengers: chosen models, 12-month holdout sMAPE per method, intervals and a
//! reorder suggestion. `cargo run --release -p mesh-forecast --example airline`
use mesh_forecast::data::{load_csv_column, shared_data_dir};
use mesh_forecast::metrics::smape;
use mesh_forecast::{fit, reorder_suggestion, Method};

fn main() -> Result<(), mesh_forecast::Error> {
    let y = load_csv_column(&shared_data_dir().join("forecast/Airline.csv"))?;
    let (train, test) = y.split_at(y.len() - 12);
    for method in [
        Method::Ets,
        Method::Theta,
        Method::Damped,
        Method::Comb,
        Method::CombMedian,
        Method::Snaive,
    ] {
        let m = fit(method, train, 12)?;
        let f = m.forecast(12);
        let i95 = f.interval(0.95)?;
        let covered = test
            .iter()
            .zip(i95.lower.iter().zip(&i95.upper))
            .filter(|(v, (lo, hi))| *v >= *lo && *v <= *hi)
            .count();
        println!(
            "{:<12} {:<40} holdout sMAPE {:>5.2}  95% covers {covered}/12",
            method.name(),
            m.describe(),
            smape(test, &f.mean)?
        );
    }
    let full = fit(Method::Ets, &y, 12)?;
    println!("full series: {}", full.describe());
    let f = fit(Method::Auto, train, 12)?.forecast(12);
    let s = reorder_suggestion(800.0, 200.0, &f, 2, 0.95)?;
    println!(
        "reorder: {}",
        serde_json::to_string(&s).expect("serialises")
    );
    Ok(())
}
