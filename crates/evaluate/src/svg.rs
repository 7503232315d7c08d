//! Small inline-SVG charts for the HTML report: line and scatter charts on linear or log
//! axes, and a heatmap. Hand-written because plotters needs a font file to lay out text
//! even for SVG, where the browser draws the text.

use std::fmt::Write;

/// Colours of successive series (matplotlib's tab10 without its grey, which reference lines
/// use).
pub const PALETTE: [&str; 9] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"];
/// Reference lines (chance, perfect calibration): dashed, in a grey no series uses.
const REFERENCE: &str = "#555";

/// `&`, `<`, `>`, `"` and `'` as entities, for text from data (labels, paths).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub label: String,
    pub min: f64,
    pub max: f64,
    pub log: bool,
}

impl Axis {
    pub fn linear(label: &str, min: f64, max: f64) -> Self {
        Self { label: label.into(), min, max, log: false }
    }

    /// An axis spanning `values` with a little margin (log when `log`).
    pub fn fit(label: &str, values: impl Iterator<Item = f64>, log: bool) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if log {
            return Self {
                label: label.into(),
                min: lo.log10().floor(),
                max: hi.log10().ceil().max(lo.log10().floor() + 1.0),
                log,
            };
        }
        let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
        Self { label: label.into(), min: lo - pad, max: hi + pad, log }
    }

    fn position(&self, v: f64) -> f64 {
        let v = if self.log { v.max(f64::MIN_POSITIVE).log10() } else { v };
        (v - self.min) / (self.max - self.min)
    }

    /// Tick values and their text.
    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            return (self.min as i32..=self.max as i32).map(|e| (10f64.powi(e), format!("1e{e}"))).collect();
        }
        let span = self.max - self.min;
        if !(span.is_finite() && span > 0.0) {
            return Vec::new();
        }
        let raw = span / 5.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
        let first = (self.min / step).ceil() as i64;
        let last = (self.max / step).floor() as i64;
        let decimals = (0..6).find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled.round() - scaled).abs() < 1e-9
        });
        let decimals = decimals.unwrap_or(6) as usize;
        (first..=last)
            .map(|k| {
                let v = (k as f64 * step * 1e9).round() / 1e9;
                (v, format!("{v:.decimals$}"))
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Dots,
    LineDots,
    /// A reference line (chance, y = x): dashed grey, not a colour of the palette.
    Dashed,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub mark: Mark,
}

/// A chart of one or more series; `render` gives an `<svg>` element.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
}

/// The plot area's width; the legend sits to its right, outside it, so it never covers a curve.
const PLOT_W: f64 = 440.0;
const LEGEND_W: f64 = 170.0;
const W: f64 = PLOT_W + LEGEND_W;
const H: f64 = 320.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 46.0;

impl Chart {
    pub fn render(&self) -> String {
        self.render_with_notes(&[])
    }

    /// The chart with `notes`: small text at data coordinates `(x, y, text)`.
    pub fn render_with_notes(&self, notes: &[(f64, f64, String)]) -> String {
        let (pw, ph) = (PLOT_W - LEFT - RIGHT, H - TOP - BOTTOM);
        let px = |v: f64| LEFT + pw * self.x.position(v).clamp(-0.02, 1.02);
        let py = |v: f64| TOP + ph * (1.0 - self.y.position(v).clamp(-0.02, 1.02));
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img"><title>{t}</title><text x="{cx}" y="18" text-anchor="middle" class="ct">{t}</text>"#,
            t = escape(&self.title),
            cx = LEFT + pw / 2.0
        );
        let _ = write!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>"##);
        for (v, text) in self.x.ticks() {
            let x = px(v);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{b}" stroke="#eee"/><text x="{x:.1}" y="{ty}" text-anchor="middle" class="tk">{text}</text>"##,
                b = TOP + ph,
                ty = TOP + ph + 14.0
            );
        }
        for (v, text) in self.y.ticks() {
            let y = py(v);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#eee"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="tk">{text}</text>"##,
                r = LEFT + pw,
                tx = LEFT - 4.0,
                ty = y + 4.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{cx}" y="{ly}" text-anchor="middle" class="al">{xl}</text><text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle" class="al">{yl}</text>"#,
            cx = LEFT + pw / 2.0,
            ly = H - 8.0,
            xl = escape(&self.x.label),
            cy = TOP + ph / 2.0,
            yl = escape(&self.y.label)
        );
        let mut next_colour = 0;
        for (i, series) in self.series.iter().enumerate() {
            let color = if series.mark == Mark::Dashed {
                REFERENCE
            } else {
                next_colour += 1;
                PALETTE[(next_colour - 1) % PALETTE.len()]
            };
            let points: Vec<(f64, f64)> = series
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            if matches!(series.mark, Mark::Line | Mark::LineDots | Mark::Dashed) && points.len() > 1 {
                let path: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let dash = if series.mark == Mark::Dashed { r#" stroke-dasharray="5 4""# } else { "" };
                let _ = write!(
                    s,
                    r#"<polyline class="series" points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
                    path.join(" ")
                );
            }
            if matches!(series.mark, Mark::Dots | Mark::LineDots) {
                for (x, y) in &points {
                    let _ = write!(s, r#"<circle class="series" cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#);
                }
            }
            // The legend, right of the plot area.
            let ly = TOP + 14.0 + 15.0 * i as f64;
            let _ = write!(
                s,
                r#"<rect class="legend" x="{lx}" y="{ry}" width="10" height="10" fill="{color}"/><text x="{tx}" y="{ly}" class="lg">{name}</text>"#,
                lx = PLOT_W + 4.0,
                ry = ly - 9.0,
                tx = PLOT_W + 18.0,
                name = escape(&series.name)
            );
        }
        for (x, y, text) in notes.iter().filter(|(x, y, _)| x.is_finite() && y.is_finite()) {
            let _ = write!(
                s,
                r#"<text class="tk" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                px(*x),
                py(*y) - 6.0,
                escape(text)
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// A heatmap of `counts[row][column]` with row and column labels; cells show the count.
pub fn heatmap(title: &str, labels: &[String], counts: &[Vec<usize>], x_label: &str, y_label: &str) -> String {
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let cells: Vec<Vec<(f64, String)>> =
        counts.iter().map(|row| row.iter().map(|&n| (n as f64 / max, n.to_string())).collect()).collect();
    shaded(title, labels, &cells, x_label, y_label)
}

/// The confusion matrix with each row divided by its total: the share of each true class
/// given each prediction (the diagonal is per-class recall).
pub fn heatmap_by_row(title: &str, labels: &[String], counts: &[Vec<usize>], x_label: &str, y_label: &str) -> String {
    let cells: Vec<Vec<(f64, String)>> = counts
        .iter()
        .map(|row| {
            let total = row.iter().sum::<usize>().max(1) as f64;
            row.iter().map(|&n| (n as f64 / total, format!("{:.2}", n as f64 / total))).collect()
        })
        .collect();
    shaded(title, labels, &cells, x_label, y_label)
}

/// A heatmap of cells `(shade in [0, 1], text)`.
fn shaded(title: &str, labels: &[String], cells: &[Vec<(f64, String)>], x_label: &str, y_label: &str) -> String {
    let k = labels.len().max(1);
    let cell = (300.0 / k as f64).clamp(14.0, 60.0);
    let (left, top) = (110.0, 40.0);
    let (w, h) = (left + cell * k as f64 + 20.0, top + cell * k as f64 + 60.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"><title>{t}</title><text x="{cx}" y="18" text-anchor="middle" class="ct">{t}</text>"#,
        t = escape(title),
        cx = w / 2.0
    );
    for (r, row) in cells.iter().enumerate() {
        for (c, (shade, text)) in row.iter().enumerate() {
            let shade = shade.clamp(0.0, 1.0);
            // White to the palette's blue.
            let mix = |a: f64, b: f64| (a + (b - a) * shade).round() as u8;
            let fill = format!("#{:02x}{:02x}{:02x}", mix(255.0, 31.0), mix(255.0, 119.0), mix(255.0, 180.0));
            let (x, y) = (left + cell * c as f64, top + cell * r as f64);
            let ink = if shade > 0.5 { "#fff" } else { "#222" };
            let _ = write!(
                s,
                r##"<rect class="cell" x="{x:.1}" y="{y:.1}" width="{cell:.1}" height="{cell:.1}" fill="{fill}" stroke="#fff"/><text x="{tx:.1}" y="{ty:.1}" text-anchor="middle" class="tk" fill="{ink}">{text}</text>"##,
                tx = x + cell / 2.0,
                ty = y + cell / 2.0 + 4.0
            );
        }
    }
    for (i, label) in labels.iter().enumerate() {
        let text = escape(label);
        let _ = write!(
            s,
            r#"<text x="{lx}" y="{ly:.1}" text-anchor="end" class="tk">{text}</text><text transform="translate({cx:.1} {cy}) rotate(-40)" text-anchor="end" class="tk">{text}</text>"#,
            lx = left - 6.0,
            ly = top + cell * i as f64 + cell / 2.0 + 4.0,
            cx = left + cell * i as f64 + cell / 2.0,
            cy = top + cell * k as f64 + 12.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{cx}" y="{by}" text-anchor="middle" class="al">{xl}</text><text transform="translate(14 {cy}) rotate(-90)" text-anchor="middle" class="al">{yl}</text></svg>"#,
        cx = left + cell * k as f64 / 2.0,
        by = h - 6.0,
        xl = escape(x_label),
        cy = top + cell * k as f64 / 2.0,
        yl = escape(y_label)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_in_data() {
        assert_eq!(escape(r#"<b>"x" & 'y'</b>"#), "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;");
    }

    #[test]
    fn ticks_are_round_numbers_inside_the_axis() {
        let ticks = Axis::linear("x", 0.0, 1.0).ticks();
        let values: Vec<f64> = ticks.iter().map(|t| t.0).collect();
        assert_eq!(values, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks[1].1, "0.2");
        let log = Axis::fit("c", [0.01, 100.0].into_iter(), true).ticks();
        assert_eq!(log.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["1e-2", "1e-1", "1e0", "1e1", "1e2"]);
    }

    #[test]
    fn chart_draws_every_series_and_escapes_names() {
        let chart = Chart {
            title: "t".into(),
            x: Axis::linear("x", 0.0, 1.0),
            y: Axis::linear("y", 0.0, 1.0),
            series: vec![
                Series { name: "<a>".into(), points: vec![(0.0, 0.0), (1.0, 1.0)], mark: Mark::Line },
                Series { name: "b".into(), points: vec![(0.5, 0.5)], mark: Mark::Dots },
            ],
        };
        let svg = chart.render();
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        assert!(svg.contains("&lt;a&gt;") && !svg.contains("<a>"));
    }

    #[test]
    fn legends_sit_outside_the_plot_and_reference_lines_are_grey() {
        let chart = Chart {
            title: "t".into(),
            x: Axis::linear("x", 0.0, 1.0),
            y: Axis::linear("y", 0.0, 1.0),
            series: vec![
                Series { name: "chance".into(), points: vec![(0.0, 0.0), (1.0, 1.0)], mark: Mark::Dashed },
                Series { name: "a".into(), points: vec![(0.0, 0.5), (1.0, 0.5)], mark: Mark::Line },
            ],
        };
        let svg = chart.render_with_notes(&[(0.5, 0.5, "n=3".into())]);
        // The plot area ends at PLOT_W - RIGHT; every legend swatch starts after it.
        for part in svg.split(r#"<rect class="legend" x=""#).skip(1) {
            let x: f64 = part.split('"').next().unwrap().parse().unwrap();
            assert!(x > PLOT_W - RIGHT, "{x}");
        }
        assert!(svg.contains(&format!(r#"stroke="{REFERENCE}" stroke-width="2" stroke-dasharray"#)));
        assert!(
            svg.contains(&format!(r#"stroke="{}" stroke-width="2"/>"#, PALETTE[0])),
            "the first class keeps the first colour"
        );
        assert!(!PALETTE.contains(&REFERENCE));
        assert!(svg.contains(">n=3</text>"));
    }
}
