//! `mesh eval forecast --plot DIR` on the first M3 series: one fan per series
//! with history, actual future, point forecast and two interval bands.
mod common;

use mesh_forecast::cli::{eval_with, EvalArgs};
use mesh_forecast::data::load_m3;
use mesh_forecast::plot::FAN_SERIES;
use mesh_forecast::Method;

#[test]
fn eval_writes_forecast_fans() {
    let data = common::data_file("forecast/m3_data.json");
    let dir = std::env::temp_dir().join(format!("mesh-forecast-plot-{}", std::process::id()));
    let args = EvalArgs {
        data: Some(data.clone()),
        method: vec![Method::Auto],
        period: None,
        limit: Some(6),
        json: true,
        holdout: false,
        plot: Some(dir.clone()),
    };
    let last = std::sync::Mutex::new((0, 0));
    let (report, files) = eval_with(&args, &|done, total| {
        let mut l = last.lock().unwrap();
        *l = (l.0.max(done), total);
    })
    .unwrap();
    assert_eq!(
        *last.lock().unwrap(),
        (6, 6),
        "progress counts every series"
    );
    assert_eq!(report.series, 6);
    let series = load_m3(&data).unwrap();
    assert_eq!(files.len(), FAN_SERIES);
    for (file, s) in files.iter().zip(&series) {
        assert_eq!(file, &dir.join(format!("forecast-{}.svg", s.name)));
        let svg = std::fs::read_to_string(file).unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed XML");
        let drawn: Vec<(&str, &str, usize)> = doc
            .descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with("series "))
            })
            .map(|n| {
                (
                    n.attribute("class").unwrap(),
                    n.attribute("data-name").unwrap(),
                    n.attribute("points").unwrap().split_whitespace().count(),
                )
            })
            .collect();
        let (n, h) = (s.x.len(), s.h);
        assert_eq!(
            drawn,
            [
                ("series band", "95% interval", 2 * h),
                ("series band", "80% interval", 2 * h),
                ("series line", "history", n),
                ("series line", "actual", h + 1),
                ("series line", "forecast", h + 1),
            ],
            "{}",
            s.name
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
