//! Fit + forecast time for one monthly M3 series (N1402: 50 observations, h = 18).
use criterion::{criterion_group, criterion_main, Criterion};
use mesh_forecast::data::{load_m3, shared_data_dir};
use mesh_forecast::{forecast, Method};

fn bench(c: &mut Criterion) {
    let path = shared_data_dir().join("forecast/m3_data.json");
    let series = load_m3(&path).unwrap_or_else(|e| panic!("M3 data needed for the bench: {e}"));
    let s = series
        .iter()
        .find(|s| s.name == "N1402")
        .expect("N1402 is a monthly M3 series");
    let mut group = c.benchmark_group("monthly_N1402");
    group.sample_size(10);
    for method in [
        Method::Snaive,
        Method::Theta,
        Method::Damped,
        Method::Ets,
        Method::Comb,
    ] {
        group.bench_function(method.name(), |b| {
            b.iter(|| forecast(method, &s.x, 12, s.h).expect("forecast"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
