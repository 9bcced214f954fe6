//! `mesh eval churn --plot DIR` on the CDNOW sample: the SVGs parse and hold one
//! calibration line (10 deciles) and one gains line (11 points) per model.

use chrono::NaiveDate;
use mesh_churn::cli::{self, EvalArgs};

/// `(class, data-name, number of points)` of every drawn series.
fn series(svg: &str) -> Vec<(String, String, usize)> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.starts_with("series "))
        })
        .map(|n| {
            let points = n
                .attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count();
            (
                n.attribute("class").unwrap().to_string(),
                n.attribute("data-name").unwrap_or("").to_string(),
                points,
            )
        })
        .collect()
}

#[test]
fn eval_writes_calibration_and_gains_svgs() {
    let transactions = cli::shared_data_dir().join("churn/CDNOW_sample.txt");
    assert!(transactions.is_file(), "missing {}", transactions.display());
    let dir = std::env::temp_dir().join(format!("mesh-churn-plot-{}", std::process::id()));
    let args = EvalArgs {
        transactions,
        calibration_end: NaiveDate::from_ymd_opt(1997, 9, 30).unwrap(),
        holdout_end: NaiveDate::from_ymd_opt(1998, 6, 30).unwrap(),
        json: true,
        plot: Some(dir.clone()),
    };
    let steps = std::cell::Cell::new(0);
    let (report, files) = cli::eval_with(&args, &|done, total| {
        assert!(done <= total);
        steps.set(done);
    })
    .unwrap();
    assert_eq!(
        steps.get(),
        mesh_churn::eval::EVAL_STEPS,
        "progress reaches the end"
    );
    assert_eq!(
        files,
        vec![
            dir.join("churn-calibration.svg"),
            dir.join("churn-gains.svg")
        ]
    );
    assert_eq!(report.calibration.len(), 4);
    let names: Vec<&str> = report
        .calibration
        .iter()
        .map(|c| c.model.as_str())
        .collect();
    assert!(names[0].starts_with("supervised_") && names[1].starts_with("hybrid_"));
    assert_eq!(&names[2..], ["bgnbd_p_purchase", "p_alive"]);

    let cal = series(&std::fs::read_to_string(&files[0]).unwrap());
    assert_eq!(cal.len(), 1 + 4, "diagonal + one line per model: {cal:?}");
    assert_eq!(cal[0].0, "series reference");
    for (class, name, points) in &cal[1..] {
        assert_eq!(class, "series line");
        assert_eq!(*points, 10, "{name}: one point per decile");
    }
    let gains = series(&std::fs::read_to_string(&files[1]).unwrap());
    assert_eq!(gains.len(), 1 + 4, "{gains:?}");
    assert!(gains[1..].iter().all(|(_, _, p)| *p == 11), "{gains:?}");
    // The supervised model ranks better than random: at 30% targeted it reaches
    // clearly more than 30% of the buyers.
    let sup = &report.gains[0].points;
    assert!(sup[3].1 > 0.45, "{sup:?}");
    // Calibration bins are sorted by prediction and hold every customer.
    for c in &report.calibration {
        assert_eq!(
            c.bins.iter().map(|b| b.customers).sum::<usize>(),
            report.customers
        );
        assert!(c.bins.windows(2).all(|w| w[0].predicted <= w[1].predicted));
    }
    std::fs::remove_dir_all(&dir).ok();
}
