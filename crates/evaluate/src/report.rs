//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, nothing fetched)
//! with the headline metrics and their intervals, per-class results, the confusion matrix
//! (counts and shares), ROC, precision-recall, reliability (with bin counts) and probability
//! histograms, a threshold table for two classes, the most confident wrong predictions with
//! their text, training and learning curves, fusion members, and provenance. Every piece of
//! text from data is escaped.

use std::fmt::Write;

use graft_core::curve::{Curve, Size};
use graft_core::head::{Epoch, Fit, Head};

use crate::errors::{self, Wrong};
use crate::metrics::{self, Classification, Regression};
use crate::svg::{Axis, Chart, Mark, Series, escape, heatmap, heatmap_by_row};
use crate::{Metrics, Report};

pub const FILE: &str = "report.html";

/// What the page is drawn from.
#[derive(Debug)]
pub struct Page<'a> {
    pub title: String,
    pub report: &'a Report,
    pub head: Option<&'a Head>,
    /// Classification: each row's class and probabilities.
    pub classes: Option<(&'a [usize], &'a [Vec<f64>])>,
    /// Regression: each row's target and prediction.
    pub values: Option<(&'a [f64], &'a [f64])>,
    pub curve: Option<&'a Curve>,
    /// Fusion: each member's name and report.
    pub members: &'a [(String, Report)],
    /// The most confident wrong predictions (classification).
    pub wrong: &'a [Wrong],
    /// Two classes: the threshold with the best F1, and the split it was found on.
    pub best_threshold: Option<(f64, String)>,
    pub provenance: Vec<(String, String)>,
}

/// Reliability bins with fewer rows than this are marked: their accuracy is noise.
const FEW_ROWS: usize = 10;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:8px 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}\
th:first-child,td:first-child{text-align:left}.grid{display:flex;flex-wrap:wrap;gap:12px}\
.chart{background:#fafafa;border:1px solid #e5e5e5}.ct{font-size:13px;font-weight:600}.tk{font-size:10px}\
.al{font-size:11px}.lg{font-size:11px}.note{color:#666;font-size:13px}code{font-size:12px}\
table.prov td{text-align:left;word-break:break-all}table.prov td:first-child{white-space:nowrap;word-break:normal}\
table.wrong td.text,table.wrong th:last-child{text-align:left}table.wrong td.text{max-width:700px;font-size:12px}\
img.thumb{width:64px;height:64px;image-rendering:pixelated}";

fn ci(report: &Report, name: &str) -> String {
    match report.intervals.as_ref().and_then(|i| i.metrics.get(name).map(|v| (v, i.confidence))) {
        Some((v, c)) => format!("[{:.4}, {:.4}] <span class=\"note\">{:.0}%</span>", v.low, v.high, 100.0 * c),
        None => String::new(),
    }
}

fn defined(v: Option<f64>) -> String {
    v.map_or("<span class=\"note\">undefined</span>".to_owned(), |v| format!("{v:.4}"))
}

pub fn html(page: &Page<'_>) -> String {
    let r = page.report;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>",
        t = escape(&page.title)
    );
    let _ = write!(
        s,
        "<p class=\"note\">{} split, {} on <code>{}</code> ({} pooling, dim {}).</p>",
        escape(&r.split),
        escape(&crate::table::describe_head(r)),
        escape(&r.backbone.spec),
        escape(&r.backbone.pooling),
        r.backbone.dim
    );
    match &r.metrics {
        Metrics::Classification(m) => classification(&mut s, page, m),
        Metrics::Regression(m) => regression(&mut s, page, m),
    }
    if let Some(head) = page.head {
        training(&mut s, head);
    }
    if let Some(curve) = page.curve {
        learning_curve(&mut s, curve);
    }
    s.push_str("<h2>Provenance</h2><table class=\"prov\">");
    for (k, v) in &page.provenance {
        let _ = write!(s, "<tr><td>{}</td><td><code>{}</code></td></tr>", escape(k), escape(v));
    }
    s.push_str("</table></body></html>\n");
    s
}

fn classification(s: &mut String, page: &Page<'_>, m: &Classification) {
    let r = page.report;
    s.push_str("<h2>Headline</h2><table><tr><th>metric</th><th>value</th><th>95% interval</th></tr>");
    let _ = write!(s, "<tr><td>accuracy</td><td>{:.4}</td><td>{}</td></tr>", m.accuracy, ci(r, "accuracy"));
    let _ = write!(s, "<tr><td>macro F1</td><td>{:.4}</td><td>{}</td></tr>", m.macro_f1, ci(r, "macro_f1"));
    let _ = write!(s, "<tr><td>balanced accuracy</td><td>{:.4}</td><td></td></tr>", m.balanced_accuracy);
    let _ = write!(s, "<tr><td>Matthews correlation</td><td>{:.4}</td><td></td></tr>", m.mcc);
    let _ = write!(s, "<tr><td>Cohen's kappa</td><td>{}</td><td></td></tr>", defined(m.cohen_kappa));
    if let Some(p) = &r.probabilities {
        let _ = write!(s, "<tr><td>ROC-AUC</td><td>{}</td><td></td></tr>", defined(p.roc_auc));
        let _ = write!(s, "<tr><td>average precision</td><td>{}</td><td></td></tr>", defined(p.average_precision));
        let _ = write!(s, "<tr><td>log-loss</td><td>{:.4}</td><td></td></tr>", p.log_loss);
        let _ = write!(
            s,
            "<tr><td>expected calibration error</td><td>{:.4}</td><td></td></tr>",
            p.expected_calibration_error
        );
    }
    s.push_str("</table>");
    if !page.members.is_empty() {
        members(s, page);
    }
    if let Some(c) = &r.baseline {
        s.push_str("<h2>Against the baseline</h2><table><tr><th></th><th>accuracy</th></tr>");
        let _ = write!(
            s,
            "<tr><td>baseline <code>{}</code></td><td>{:.4}</td></tr>",
            escape(&c.a.display().to_string()),
            c.accuracy_a
        );
        let _ = write!(s, "<tr><td>this model</td><td>{:.4}</td></tr>", c.accuracy_b);
        let _ = write!(
            s,
            "<tr><td>difference</td><td>{:+.4} [{:+.4}, {:+.4}] <span class=\"note\">95% paired bootstrap</span></td></tr>",
            c.difference, c.difference_interval.low, c.difference_interval.high
        );
        let _ = write!(
            s,
            "<tr><td>McNemar (exact)</td><td>p = {:.3e} <span class=\"note\">{} rows only the baseline got right, {} only this model</span></td></tr></table>",
            c.mcnemar_p, c.only_a_right, c.only_b_right
        );
    }
    s.push_str(
        "<h2>Per class</h2><table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>",
    );
    for c in &m.per_class {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            escape(&c.label),
            c.precision,
            c.recall,
            c.f1,
            c.support
        );
    }
    s.push_str("</table><h2>Errors and scores</h2><div class=\"grid\">");
    let labels: Vec<String> = m.per_class.iter().map(|c| c.label.clone()).collect();
    s.push_str(&heatmap("Confusion matrix", &labels, &m.confusion, "predicted", "true"));
    s.push_str(&heatmap_by_row("Shares of each true class", &labels, &m.confusion, "predicted", "true"));
    if let Some((truth, proba)) = page.classes {
        let k = labels.len();
        // Two classes: the positive class only; more: one curve per class against the rest.
        let shown: Vec<usize> = if k == 2 { vec![1] } else { (0..k).collect() };
        let (mut roc, mut pr) = (Vec::new(), Vec::new());
        for c in shown {
            let positive: Vec<bool> = truth.iter().map(|&t| t == c).collect();
            let scores: Vec<f64> = proba.iter().map(|p| p[c]).collect();
            let auc = metrics::binary_roc_auc(&positive, &scores);
            let name = format!("{} (AUC {})", labels[c], auc.map_or("undefined".into(), |a| format!("{a:.3}")));
            roc.push(Series { name, points: metrics::roc_curve(&positive, &scores), mark: Mark::Line });
            let ap = metrics::binary_average_precision(&positive, &scores);
            let name = format!("{} (AP {})", labels[c], ap.map_or("undefined".into(), |a| format!("{a:.3}")));
            pr.push(Series { name, points: metrics::pr_curve(&positive, &scores), mark: Mark::Line });
        }
        roc.push(Series { name: "chance".into(), points: vec![(0.0, 0.0), (1.0, 1.0)], mark: Mark::Dashed });
        let unit = |label: &str| Axis::linear(label, 0.0, 1.0);
        let chart =
            |title: &str, x: &str, y: &str, series| Chart { title: title.into(), x: unit(x), y: unit(y), series };
        s.push_str(&chart("ROC", "false positive rate", "true positive rate", roc).render());
        s.push_str(&chart("Precision-recall", "recall", "precision", pr).render());
        let bins = metrics::reliability_bins(truth, proba);
        let point = |&(conf, correct, n): &(f64, f64, usize)| (conf / n as f64, correct / n as f64);
        let points: Vec<(f64, f64)> = bins.iter().filter(|b| b.2 > 0).map(point).collect();
        let few: Vec<(f64, f64)> = bins.iter().filter(|b| b.2 > 0 && b.2 < FEW_ROWS).map(point).collect();
        // Each bin's row count, along the bottom of the plot under its point.
        let notes: Vec<(f64, f64, String)> =
            bins.iter().filter(|b| b.2 > 0).map(|b| (point(b).0, 0.0, b.2.to_string())).collect();
        let mut series = vec![
            Series { name: "perfectly calibrated".into(), points: vec![(0.0, 0.0), (1.0, 1.0)], mark: Mark::Dashed },
            Series { name: "model (rows per bin below)".into(), points, mark: Mark::LineDots },
        ];
        if !few.is_empty() {
            series.push(Series { name: format!("bins of fewer than {FEW_ROWS} rows"), points: few, mark: Mark::Dots });
        }
        s.push_str(&chart("Reliability (top class)", "mean confidence", "accuracy", series).render_with_notes(&notes));
        s.push_str(&histogram(truth, proba, &labels).render());
    }
    s.push_str("</div>");
    if let (Some((truth, proba)), 2) = (page.classes, labels.len()) {
        thresholds(s, truth, proba, &labels, page.best_threshold.as_ref());
    }
    if !page.wrong.is_empty() {
        wrong_predictions(s, page.wrong);
    }
}

/// Histograms (as lines, share of the class's rows per bin of width 0.05) of the predicted
/// probability: of the positive class for two classes, else of each row's true class.
fn histogram(truth: &[usize], proba: &[Vec<f64>], labels: &[String]) -> Chart {
    const BINS: usize = 20;
    let binary = labels.len() == 2;
    let series: Vec<Series> = (0..labels.len())
        .map(|c| {
            let mut counts = [0usize; BINS];
            let mut n = 0;
            for (&t, p) in truth.iter().zip(proba).filter(|(t, _)| **t == c) {
                let v = if binary { p[1] } else { p[t] };
                counts[((v * BINS as f64) as usize).min(BINS - 1)] += 1;
                n += 1;
            }
            let points =
                (0..BINS).map(|b| ((b as f64 + 0.5) / BINS as f64, counts[b] as f64 / n.max(1) as f64)).collect();
            Series { name: format!("true {} ({n} rows)", labels[c]), points, mark: Mark::LineDots }
        })
        .collect();
    let x =
        if binary { format!("predicted probability of {}", labels[1]) } else { "probability of the true class".into() };
    let top = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(0.0, f64::max);
    Chart {
        title: "Predicted probability by true class".into(),
        x: Axis::linear(&x, 0.0, 1.0),
        y: Axis::linear("share of the class's rows", 0.0, (top * 1.1).max(0.05)),
        series,
    }
}

/// Precision, recall and F1 of the positive class (the second label) at several thresholds
/// and at the one with the best F1 (found on val where val was scored).
fn thresholds(s: &mut String, truth: &[usize], proba: &[Vec<f64>], labels: &[String], best: Option<&(f64, String)>) {
    let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
    let score: Vec<f64> = proba.iter().map(|p| p[1]).collect();
    let _ = write!(
        s,
        "<h2>Thresholds</h2><p class=\"note\">Predicting <code>{}</code> when its probability is at least the \
         threshold; 0.5 is what the predictions use.</p><table><tr><th>threshold</th><th>precision</th>\
         <th>recall</th><th>F1</th><th>predicted {}</th></tr>",
        escape(&labels[1]),
        escape(&labels[1])
    );
    let mut rows: Vec<(f64, String)> =
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].map(|t| (t, String::new())).to_vec();
    if let Some((t, found_on)) = best {
        rows.push((*t, format!(" <span class=\"note\">best F1 on {}</span>", escape(found_on))));
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    for (t, note) in rows {
        let at = errors::at_threshold(&positive, &score, t);
        let _ = write!(
            s,
            "<tr><td>{t:.3}{note}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td></tr>",
            defined(at.precision),
            at.recall,
            at.f1,
            at.predicted_positive
        );
    }
    s.push_str("</table>");
}

/// The most confident wrong predictions, by (true, predicted) pair.
fn wrong_predictions(s: &mut String, wrong: &[Wrong]) {
    let _ = write!(
        s,
        "<h2>Most confident wrong predictions</h2><p class=\"note\">Up to {} rows per pair of classes, \
         the pairs with the most errors first.</p><table class=\"wrong\"><tr><th>id</th><th>true</th>\
         <th>predicted</th><th>confidence</th><th>text or image</th></tr>",
        errors::PER_PAIR
    );
    for w in wrong {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td class=\"text\">{}</td></tr>",
            escape(&w.id),
            escape(&w.truth),
            escape(&w.predicted),
            w.confidence,
            match (&w.text, &w.thumbnail) {
                (Some(text), _) => escape(text),
                (None, Some(uri)) => format!("<img class=\"thumb\" alt=\"{}\" src=\"{uri}\">", escape(&w.id)),
                (None, None) => String::new(),
            }
        );
    }
    s.push_str("</table>");
}

fn members(s: &mut String, page: &Page<'_>) {
    s.push_str(
        "<h2>Fusion members</h2><table><tr><th>member</th><th>accuracy</th><th>macro F1</th><th>log-loss</th></tr>",
    );
    let row = |s: &mut String, name: &str, r: &Report| {
        if let Metrics::Classification(m) = &r.metrics {
            let loss = r.probabilities.as_ref().map_or("-".into(), |p| format!("{:.4}", p.log_loss));
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{loss}</td></tr>",
                escape(name),
                m.accuracy,
                m.macro_f1
            );
        }
    };
    for (name, r) in page.members {
        row(s, name, r);
    }
    row(s, "fusion", page.report);
    s.push_str("</table>");
}

fn regression(s: &mut String, page: &Page<'_>, m: &Regression) {
    let r = page.report;
    s.push_str("<h2>Headline</h2><table><tr><th>metric</th><th>value</th><th>95% interval</th></tr>");
    let _ = write!(s, "<tr><td>RMSE</td><td>{:.4}</td><td>{}</td></tr>", m.rmse, ci(r, "rmse"));
    let _ = write!(s, "<tr><td>R²</td><td>{:.4}</td><td>{}</td></tr>", m.r2, ci(r, "r2"));
    let _ = write!(s, "<tr><td>MAE</td><td>{:.4}</td><td></td></tr>", m.mae);
    let _ = write!(s, "<tr><td>Pearson</td><td>{}</td><td></td></tr>", defined(m.pearson));
    let _ = write!(s, "<tr><td>Spearman</td><td>{}</td><td></td></tr>", defined(m.spearman));
    s.push_str("</table>");
    if let Some((y, pred)) = page.values {
        let all = || y.iter().chain(pred.iter()).copied();
        let (x_axis, y_axis) = (Axis::fit("target", all(), false), Axis::fit("prediction", all(), false));
        let (lo, hi) = (x_axis.min, x_axis.max);
        let chart = Chart {
            title: "Prediction against target".into(),
            x: x_axis,
            y: y_axis,
            series: vec![
                Series {
                    name: "rows".into(),
                    points: y.iter().copied().zip(pred.iter().copied()).collect(),
                    mark: Mark::Dots,
                },
                Series { name: "y = x".into(), points: vec![(lo, lo), (hi, hi)], mark: Mark::Dashed },
            ],
        };
        let _ = write!(s, "<h2>Predictions</h2><div class=\"grid\">{}</div>", chart.render());
    }
}

fn training(s: &mut String, head: &Head) {
    let mut charts = Vec::new();
    match &head.info.training.fit {
        Fit::Mlp { epochs, best_epoch } | Fit::Layers { epochs, best_epoch, .. } => {
            let epoch = |f: fn(&graft_core::head::Epoch) -> Option<f64>| -> Vec<(f64, f64)> {
                epochs.iter().filter_map(|e| f(e).map(|v| (e.epoch as f64, v))).collect()
            };
            let (train, val) = (epoch(|e| Some(e.train_loss)), epoch(|e| e.val_loss));
            let kept: Vec<(f64, f64)> = val.iter().copied().filter(|p| p.0 == *best_epoch as f64).collect();
            let values = train.iter().chain(&val).map(|p| p.1);
            charts.push(Chart {
                title: "Training loss".into(),
                x: Axis::fit("epoch", train.iter().map(|p| p.0), false),
                y: Axis::fit("loss", values, false),
                series: vec![
                    Series { name: "train".into(), points: train.clone(), mark: Mark::Line },
                    Series { name: "val".into(), points: val, mark: Mark::Line },
                    Series { name: "kept epoch".into(), points: kept, mark: Mark::Dots },
                ],
            });
            let acc = epoch(|e| e.val_accuracy);
            if !acc.is_empty() {
                charts.push(Chart {
                    title: "Val accuracy".into(),
                    x: Axis::fit("epoch", acc.iter().map(|p| p.0), false),
                    y: Axis::fit("accuracy", acc.iter().map(|p| p.1), false),
                    series: vec![Series { name: "val".into(), points: acc, mark: Mark::LineDots }],
                });
            }
        }
        Fit::LogisticRegression { objective, selection, .. } => {
            let objective: Vec<(f64, f64)> = objective.iter().enumerate().map(|(i, v)| ((i + 1) as f64, *v)).collect();
            charts.push(Chart {
                title: "L-BFGS objective (kept C)".into(),
                x: Axis::fit("iteration", objective.iter().map(|p| p.0), false),
                y: Axis::fit("objective", objective.iter().map(|p| p.1), false),
                series: vec![Series { name: "objective".into(), points: objective, mark: Mark::Line }],
            });
            let scores: Vec<(f64, f64)> = selection.iter().filter_map(|c| c.score.map(|v| (c.c, v))).collect();
            if !scores.is_empty() {
                charts.push(Chart {
                    title: "Choice of C".into(),
                    x: Axis::fit("C", scores.iter().map(|p| p.0), true),
                    y: Axis::fit("accuracy (val or cross-validated)", scores.iter().map(|p| p.1), false),
                    series: vec![Series { name: "score".into(), points: scores, mark: Mark::LineDots }],
                });
            }
        }
        Fit::Ridge { alpha_selection, .. } => {
            let mse: Vec<(f64, f64)> = alpha_selection.iter().filter_map(|(a, m)| m.map(|m| (*a, m))).collect();
            if !mse.is_empty() {
                charts.push(Chart {
                    title: "Choice of alpha".into(),
                    x: Axis::fit("alpha", mse.iter().map(|p| p.0), true),
                    y: Axis::fit("val MSE", mse.iter().map(|p| p.1), false),
                    series: vec![Series { name: "val MSE".into(), points: mse, mark: Mark::LineDots }],
                });
            }
        }
    }
    s.push_str("<h2>Training</h2><div class=\"grid\">");
    for c in charts {
        s.push_str(&c.render());
    }
    s.push_str("</div>");
    if let Some(timing) = &head.timing {
        epochs_table(s, head.info.training.fit.epochs(), timing);
    }
}

/// A timed head's history (tuned layers: a few long epochs), one row per epoch.
fn epochs_table(s: &mut String, history: &[Epoch], timing: &graft_core::head::timing::Timing) {
    let cell = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.4}"));
    let _ = write!(
        s,
        "<table><tr><th>epoch</th><th>train loss</th><th>val loss</th><th>val accuracy</th><th>rate</th>\
         <th>seconds ({} threads)</th></tr>",
        timing.threads
    );
    for (e, seconds) in history.iter().zip(&timing.epoch_seconds) {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{:.2e}</td><td>{seconds:.1}</td></tr>",
            e.epoch,
            e.train_loss,
            cell(e.val_loss),
            cell(e.val_accuracy),
            e.lr
        );
    }
    s.push_str("</table>");
}

fn learning_curve(s: &mut String, curve: &Curve) {
    let point = |f: fn(&graft_core::curve::Point) -> f64| -> Vec<(f64, f64)> {
        curve.points.iter().map(|p| (p.train_rows as f64, f(p))).collect()
    };
    let (mean, low, high) = (
        point(|p| p.accuracy_mean),
        point(|p| p.accuracy_mean - p.accuracy_std),
        point(|p| p.accuracy_mean + p.accuracy_std),
    );
    // The band's outline: along the lower edge, back along the upper one.
    let band: Vec<(f64, f64)> = low.iter().chain(high.iter().rev()).copied().collect();
    let chart = Chart {
        title: format!("Learning curve ({} accuracy, {} repeats)", curve.split, curve.repeats),
        x: Axis::fit("labelled train rows", mean.iter().map(|p| p.0), true),
        y: Axis::fit("accuracy", low.iter().chain(&high).map(|p| p.1), false),
        series: vec![
            Series { name: "mean".into(), points: mean, mark: Mark::LineDots },
            Series { name: "mean ± std".into(), points: band, mark: Mark::Dashed },
        ],
    };
    s.push_str("<h2>Learning curve</h2><div class=\"grid\">");
    s.push_str(&chart.render());
    s.push_str("</div><table><tr><th>size</th><th>train rows</th><th>accuracy</th><th>std</th></tr>");
    for p in &curve.points {
        let size = match p.size {
            Size::PerClass(k) => format!("{k} per class"),
            Size::Fraction(f) => format!("{f} of train"),
        };
        let _ = write!(
            s,
            "<tr><td>{size}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td></tr>",
            p.train_rows, p.accuracy_mean, p.accuracy_std
        );
    }
    s.push_str("</table>");
}
