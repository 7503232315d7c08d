//! The short text table `graft-evaluate` prints.

use std::fmt::Write;

use crate::{Metrics, Report};

/// `head KIND (C=..)`, or the fusion's method and member count.
pub fn describe_head(report: &Report) -> String {
    match (&report.head, &report.fusion) {
        (Some(h), _) => format!("head {}{}", h.kind, h.c.map_or(String::new(), |c| format!(" (C={c})"))),
        (None, Some(f)) => format!("{:?} fusion of {} heads", f.method, f.members.len()).to_lowercase(),
        (None, None) => "predictions".into(),
    }
}

pub fn render(report: &Report) -> String {
    let mut s = String::new();
    let rows = match &report.metrics {
        Metrics::Classification(m) => m.rows,
        Metrics::Regression(m) => m.rows,
    };
    let _ = writeln!(
        s,
        "{} split: {} rows, {} on {} ({}, dim {})",
        report.split,
        rows,
        describe_head(report),
        report.backbone.spec,
        report.backbone.pooling,
        report.backbone.dim
    );
    let ci = |name: &str| {
        report
            .intervals
            .as_ref()
            .and_then(|i| i.metrics.get(name).map(|v| (v, i.confidence)))
            .map_or(String::new(), |(v, confidence)| {
                format!("  [{:.4}, {:.4}] ({:.0}% bootstrap)", v.low, v.high, 100.0 * confidence)
            })
    };
    let defined = |v: Option<f64>| v.map_or("undefined".to_owned(), |v| format!("{v:.4}"));
    match &report.metrics {
        Metrics::Regression(m) => {
            let _ = writeln!(s, "RMSE      {:.4}{}", m.rmse, ci("rmse"));
            let _ = writeln!(s, "R2        {:.4}{}", m.r2, ci("r2"));
            let _ = writeln!(
                s,
                "MAE       {:.4}   Pearson {}   Spearman {}",
                m.mae,
                defined(m.pearson),
                defined(m.spearman)
            );
        }
        Metrics::Classification(m) => {
            let width = m.per_class.iter().map(|c| c.label.len()).max().unwrap_or(5).max(5);
            let _ = writeln!(s, "accuracy  {:.4}{}", m.accuracy, ci("accuracy"));
            let _ = writeln!(s, "macro F1  {:.4}{}", m.macro_f1, ci("macro_f1"));
            if let Some(p) = &report.probabilities {
                let _ = writeln!(
                    s,
                    "ROC-AUC   {}   log-loss {:.4}   ECE {:.4}   MCC {:.4}",
                    defined(p.roc_auc),
                    p.log_loss,
                    p.expected_calibration_error,
                    m.mcc
                );
            }
            let _ = writeln!(s, "{:<width$}  precision  recall      f1  support", "label");
            for c in &m.per_class {
                let _ = writeln!(
                    s,
                    "{:<width$}  {:>9.4}  {:>6.4}  {:>6.4}  {:>7}",
                    c.label, c.precision, c.recall, c.f1, c.support
                );
            }
            if let Some(f) = &report.fusion {
                for ((path, w), acc) in f.members.iter().zip(&f.weights).zip(&f.member_accuracy) {
                    let _ = writeln!(s, "member {} (weight {w:.3}): accuracy {acc:.4}", path.display());
                }
            }
            let _ = writeln!(s, "confusion (rows: true, columns: predicted)");
            for (c, row) in m.per_class.iter().zip(&m.confusion) {
                let cells: Vec<String> = row.iter().map(|n| format!("{n:>7}")).collect();
                let _ = writeln!(s, "{:<width$}  {}", c.label, cells.join(" "));
            }
        }
    }
    s
}
