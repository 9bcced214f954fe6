//! # mesh-plot — small SVG charts for evaluation reports
//!
//! Owns one thing: turning series of `(x, y)` points into a standalone SVG
//! file with axes, ticks, labels and a legend. Used by `mesh eval ... --plot
//! DIR` through the model crates (calibration and gains curves,
//! precision–recall curves, routes, forecast fans).
//!
//! It must not know about any model or data format, and it draws text as
//! plain SVG `<text>` elements, so it needs no fonts, no font metrics and no
//! system libraries: the viewer renders the text. Every series is one SVG
//! element with `class="series <kind>"` and a `data-name`, so tests can
//! count what was drawn.
//!
//! # Layout
//! - [`Chart`] — the builder: title, axis labels, series, [`Chart::to_svg`], [`Chart::write`].
//! - [`write_all`] — write several charts into a directory ([`Error`] names the file).
//! - [`nice_ticks`] — round tick positions for an axis range.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Colours cycled over series (colour-blind friendly, Okabe–Ito).
const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000",
];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Connected line through the points.
    Line,
    /// Dashed reference line (diagonals, baselines).
    Reference,
    /// Filled band between `upper` (the points) and `lower`.
    Band,
    /// Unconnected markers.
    Scatter,
    /// A route: connected line with markers at the points.
    Route,
}

impl Kind {
    fn class(self) -> &'static str {
        match self {
            Kind::Line => "line",
            Kind::Reference => "reference",
            Kind::Band => "band",
            Kind::Scatter => "scatter",
            Kind::Route => "route",
        }
    }
}

/// One series of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// How it is drawn.
    pub kind: Kind,
    /// Points (the upper edge for a band).
    pub points: Vec<(f64, f64)>,
    /// Lower edge of a band, same x order as `points`.
    pub lower: Vec<(f64, f64)>,
    /// Colour override (`#rrggbb`); else from the palette.
    pub colour: Option<String>,
}

/// A chart under construction.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
    equal_aspect: bool,
}

impl Chart {
    /// A chart with a title and axis labels.
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Chart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            ..Chart::default()
        }
    }

    /// Fix the x range instead of fitting the data.
    pub fn x_range(mut self, lo: f64, hi: f64) -> Self {
        self.x_range = Some((lo, hi));
        self
    }

    /// Fix the y range instead of fitting the data.
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// Same scale on both axes (maps, routes).
    pub fn equal_aspect(mut self) -> Self {
        self.equal_aspect = true;
        self
    }

    fn push(&mut self, name: &str, kind: Kind, points: Vec<(f64, f64)>, lower: Vec<(f64, f64)>) {
        self.series.push(Series {
            name: name.into(),
            kind,
            points,
            lower,
            colour: None,
        });
    }

    /// A connected line.
    pub fn line(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.push(name, Kind::Line, points, Vec::new());
        self
    }

    /// A dashed grey reference line.
    pub fn reference(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.push(name, Kind::Reference, points, Vec::new());
        self.series.last_mut().expect("pushed").colour = Some("#777777".into());
        self
    }

    /// A filled band between `upper` and `lower` (same x values).
    pub fn band(mut self, name: &str, upper: Vec<(f64, f64)>, lower: Vec<(f64, f64)>) -> Self {
        self.push(name, Kind::Band, upper, lower);
        self
    }

    /// Unconnected markers.
    pub fn scatter(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.push(name, Kind::Scatter, points, Vec::new());
        self
    }

    /// A route: a polyline with markers.
    pub fn route(mut self, name: &str, points: Vec<(f64, f64)>) -> Self {
        self.push(name, Kind::Route, points, Vec::new());
        self
    }

    /// Set the colour of the last added series.
    pub fn colour(mut self, colour: &str) -> Self {
        if let Some(s) = self.series.last_mut() {
            s.colour = Some(colour.into());
        }
        self
    }

    /// The series added so far.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    fn finite_points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.series
            .iter()
            .flat_map(|s| s.points.iter().chain(&s.lower))
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    }

    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let fit = |get: fn((f64, f64)) -> f64| {
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for p in self.finite_points() {
                lo = lo.min(get(p));
                hi = hi.max(get(p));
            }
            if !lo.is_finite() {
                (0.0, 1.0)
            } else if hi - lo < 1e-12 {
                (lo - 0.5, hi + 0.5)
            } else {
                let pad = 0.03 * (hi - lo);
                (lo - pad, hi + pad)
            }
        };
        let sane = |r: Option<(f64, f64)>, f: (f64, f64)| match r {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && hi > lo => (lo, hi),
            _ => f,
        };
        let mut x = sane(self.x_range, fit(|p| p.0));
        let mut y = sane(self.y_range, fit(|p| p.1));
        if self.equal_aspect {
            // Widen the narrower range so one unit is as long on both axes.
            let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
            let per_px = ((x.1 - x.0) / pw).max((y.1 - y.0) / ph);
            let (cx, cy) = ((x.0 + x.1) / 2.0, (y.0 + y.1) / 2.0);
            x = (cx - per_px * pw / 2.0, cx + per_px * pw / 2.0);
            y = (cy - per_px * ph / 2.0, cy + per_px * ph / 2.0);
        }
        (x, y)
    }

    /// The chart as a standalone SVG document. Non-finite points are skipped;
    /// an empty chart still renders its axes.
    pub fn to_svg(&self) -> String {
        let ((x0, x1), (y0, y1)) = self.ranges();
        let (pw, ph) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        let path = |pts: &[(f64, f64)]| {
            let mut s = String::new();
            for (x, y) in pts.iter().filter(|(x, y)| x.is_finite() && y.is_finite()) {
                let _ = write!(s, "{:.2},{:.2} ", sx(*x), sy(*y));
            }
            s.trim_end().to_string()
        };
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text class="title" x="{:.1}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            LEFT + pw / 2.0,
            escape(&self.title)
        );
        // Axes, grid and ticks.
        let _ = writeln!(o, r##"<g class="axes" stroke="#333" fill="none">"##);
        let _ = writeln!(
            o,
            r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/>"#
        );
        let _ = writeln!(o, "</g>");
        let _ = writeln!(o, r##"<g class="ticks" fill="#333">"##);
        for t in nice_ticks(x0, x1, 6) {
            let x = sx(t);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.2}" y1="{TOP}" x2="{x:.2}" y2="{:.2}" stroke="#e5e5e5"/><text x="{x:.2}" y="{:.2}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 16.0,
                label(t)
            );
        }
        for t in nice_ticks(y0, y1, 6) {
            let y = sy(t);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" y1="{y:.2}" x2="{:.2}" y2="{y:.2}" stroke="#e5e5e5"/><text x="{:.2}" y="{:.2}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 6.0,
                y + 4.0,
                label(t)
            );
        }
        let _ = writeln!(o, "</g>");
        let _ = writeln!(
            o,
            r#"<text class="x-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            HEIGHT - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            o,
            r#"<text class="y-label" transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        // Series, clipped to the plot area.
        let _ = writeln!(
            o,
            r#"<clipPath id="plot-area"><rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}"/></clipPath>"#
        );
        let _ = writeln!(o, r#"<g clip-path="url(#plot-area)">"#);
        for (i, s) in self.series.iter().enumerate() {
            let c = s
                .colour
                .clone()
                .unwrap_or_else(|| PALETTE[i % PALETTE.len()].into());
            let name = escape(&s.name);
            let class = s.kind.class();
            match s.kind {
                Kind::Line | Kind::Reference => {
                    let dash = if s.kind == Kind::Reference {
                        r#" stroke-dasharray="6 4""#
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        o,
                        r#"<polyline class="series {class}" data-name="{name}" points="{}" fill="none" stroke="{c}" stroke-width="2"{dash}/>"#,
                        path(&s.points)
                    );
                }
                Kind::Band => {
                    let mut edge = s.points.clone();
                    edge.extend(s.lower.iter().rev());
                    let _ = writeln!(
                        o,
                        r#"<polygon class="series {class}" data-name="{name}" points="{}" fill="{c}" fill-opacity="0.25" stroke="none"/>"#,
                        path(&edge)
                    );
                }
                Kind::Scatter | Kind::Route => {
                    let _ = writeln!(o, r#"<g class="series {class}" data-name="{name}">"#);
                    if s.kind == Kind::Route {
                        let _ = writeln!(
                            o,
                            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="1.5"/>"#,
                            path(&s.points)
                        );
                    }
                    for (x, y) in s
                        .points
                        .iter()
                        .filter(|(x, y)| x.is_finite() && y.is_finite())
                    {
                        let _ = writeln!(
                            o,
                            r#"<circle class="point" cx="{:.2}" cy="{:.2}" r="3" fill="{c}"/>"#,
                            sx(*x),
                            sy(*y)
                        );
                    }
                    let _ = writeln!(o, "</g>");
                }
            }
        }
        let _ = writeln!(o, "</g>");
        // Legend, beside the plot so it never hides data.
        let _ = writeln!(o, r#"<g class="legend">"#);
        for (i, s) in self.series.iter().enumerate().take(24) {
            let c = s
                .colour
                .clone()
                .unwrap_or_else(|| PALETTE[i % PALETTE.len()].into());
            let y = TOP + 8.0 + 18.0 * i as f64;
            let x = LEFT + pw + 14.0;
            let _ = writeln!(
                o,
                r#"<rect x="{x:.1}" y="{:.1}" width="14" height="10" fill="{c}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
                y - 9.0,
                x + 20.0,
                escape(&s.name)
            );
        }
        let _ = writeln!(o, "</g>");
        o.push_str("</svg>\n");
        o
    }

    /// Write the SVG to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_svg())
    }
}

/// A chart file could not be written.
#[derive(Debug)]
pub struct Error {
    /// The file or directory being written.
    pub path: PathBuf,
    /// The underlying I/O error.
    pub source: std::io::Error,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write plot {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Creates `dir` if needed and writes each `(file name, chart)` into it;
/// returns the paths written, in order.
pub fn write_all(dir: &Path, charts: &[(String, Chart)]) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (name, chart) in charts {
        let path = dir.join(name);
        chart.write(&path).map_err(|source| Error {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// A file-name-safe form of `s` (letters, digits, `-`, `_`, `.`).
pub fn file_stem(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// About `target` round tick positions (steps of 1, 2 or 5 × 10^k) inside `[lo, hi]`.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo || target == 0 {
        return Vec::new();
    }
    let raw = (hi - lo) / target as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".into()
        } else {
            s.into()
        }
    }
}

/// Escape text for SVG element content and attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let t = nice_ticks(0.0, 1.0, 5);
        let want = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
        assert_eq!(t.len(), want.len(), "{t:?}");
        assert!(
            t.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{t:?}"
        );
        let t = nice_ticks(-3.7, 112.0, 6);
        assert!(t.iter().all(|v| (-3.7..=112.0).contains(v)), "{t:?}");
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
        assert!(nice_ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn svg_parses_and_counts_series() {
        let svg = Chart::new("a <b> & \"c\"", "x", "y")
            .line("l", vec![(0.0, 0.0), (1.0, 1.0)])
            .reference("ref", vec![(0.0, 0.0), (1.0, 1.0)])
            .band(
                "b",
                vec![(0.0, 1.0), (1.0, 2.0)],
                vec![(0.0, 0.0), (1.0, 0.5)],
            )
            .scatter("s", vec![(0.5, f64::NAN), (0.2, 0.3)])
            .route("r", vec![(0.0, 0.0), (0.3, 0.4), (0.0, 0.0)])
            .to_svg();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let series: Vec<_> = doc
            .descendants()
            .filter(|n| {
                n.attribute("class")
                    .is_some_and(|c| c.starts_with("series "))
            })
            .collect();
        assert_eq!(series.len(), 5);
        let points = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("point"))
            .count();
        assert_eq!(points, 1 + 3, "NaN point skipped");
        assert!(svg.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
    }

    #[test]
    fn empty_and_degenerate_charts_render() {
        for c in [
            Chart::new("empty", "", ""),
            Chart::new("flat", "", "").line("f", vec![(1.0, 1.0), (1.0, 1.0)]),
            Chart::new("nan", "", "").line("n", vec![(f64::NAN, f64::INFINITY)]),
            Chart::new("eq", "", "")
                .equal_aspect()
                .scatter("s", vec![(0.0, 0.0), (100.0, 1.0)]),
        ] {
            roxmltree::Document::parse(&c.to_svg()).unwrap();
        }
    }
}
