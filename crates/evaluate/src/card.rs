//! `MODEL_CARD.md`: what a bundled model is, what it was trained on and how, how it
//! measured on held-out rows, and what input it expects.

use std::fmt::Write;

use graft_core::bundle::{BundleInfo, Input};
use graft_core::head::{Fit, Head};
use graft_core::metrics::Report;
use graft_core::spec::BackboneSpec;

pub fn model_card(info: &BundleInfo, head: &Head, spec: &BackboneSpec, report: Option<&Report>) -> String {
    let mut s = String::new();
    let kind = head.info.architecture.kind();
    let _ = writeln!(s, "# {} on {}\n", kind, spec.name);
    let _ = writeln!(s, "Made by graft {} (bundle format `{}`).\n", info.graft_version, info.format);
    let _ = writeln!(s, "## What it does\n");
    if info.labels.is_empty() {
        let _ = writeln!(s, "Regression: predicts one number per row.\n");
    } else {
        let labels: Vec<String> = info.labels.iter().map(|l| format!("`{l}`")).collect();
        let _ = writeln!(s, "Classification into {} classes: {}.\n", info.labels.len(), labels.join(", "));
    }
    let _ = writeln!(s, "## Intended input\n");
    match &info.input {
        Input::Text { text_column, label_column, id_column, max_length } => {
            let _ = writeln!(
                s,
                "A table (CSV, JSONL or Parquet) with the text in column `{text_column}`; ids from `{}`; \
                 a `{label_column}` column, when present, is scored too. Text is cleaned as at training \
                 time (HTML tags removed, entities decoded, whitespace collapsed), tokenised with the \
                 bundled `tokenizer.json` and truncated at {max_length} tokens.\n",
                id_column.as_deref().unwrap_or("the row number"),
            );
        }
        Input::Image { label_column, id_column, path_column } => {
            let _ = writeln!(
                s,
                "Images ({}), resized and normalised as the bundled `spec.yaml` says; ids from `{}`; \
                 a `{label_column}` column, when present, is scored too.\n",
                path_column
                    .as_deref()
                    .map_or("a folder per class, or pixel rows".into(), |c| format!("paths in column `{c}`")),
                id_column.as_deref().unwrap_or("the row number"),
            );
        }
    }
    let f = &info.features;
    let _ = writeln!(s, "## How it was made\n");
    let _ = writeln!(
        s,
        "- Backbone: `{}` (model blake3 `{}`), outputs {:?}{}, {} pooling{}, {} features.",
        f.spec,
        f.model_blake3,
        f.outputs,
        f.combine.as_deref().map(|c| format!(" joined by {c}")).unwrap_or_default(),
        f.pooling,
        if f.normalize { ", L2-normalised" } else { "" },
        f.dim
    );
    let fit = match &head.info.training.fit {
        Fit::LogisticRegression { chosen_c, selection, .. } => {
            format!("logistic regression, C = {chosen_c} chosen among {} values", selection.len())
        }
        Fit::Ridge { chosen_alpha, .. } => format!("ridge regression, alpha = {chosen_alpha}"),
        Fit::Mlp { epochs, best_epoch } => format!(
            "MLP with hidden widths {:?}, weights of epoch {best_epoch} of {} kept",
            head.info.training.config.hidden,
            epochs.len()
        ),
        Fit::Layers { config, cut, epochs, best_epoch, .. } => format!(
            "the backbone's top {} {} (above `{cut}`) trained with a linear head, weights of epoch {best_epoch} \
             of {} kept",
            config.layers,
            // `graft-finetune layers` mean-pools a text encoder's last layer and reads an image
            // backbone's own pooled features.
            if head.info.backbone.pooling == graft_core::spec::Pooling::None.as_str() {
                "MBConv blocks and its head convolution"
            } else {
                "layers"
            },
            epochs.len()
        ),
    };
    let _ =
        writeln!(s, "- Head: {fit}; {} train rows; temperature {}.", info.training.train_rows, head.info.temperature);
    if !info.training.class_counts.is_empty() {
        let counts: Vec<String> =
            info.labels.iter().zip(&info.training.class_counts).map(|(l, n)| format!("`{l}` {n}")).collect();
        let _ = writeln!(s, "- Training split by class: {}.", counts.join(", "));
    }
    for (split, hash) in &info.training.inputs {
        let _ = writeln!(s, "- Trained on {split} features blake3 `{hash}`.");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "## How it measured\n");
    match (&info.test, report) {
        (Some(test), Some(report)) => {
            let _ = writeln!(s, "On the held-out {} split ({} rows):\n", report.split, test.rows);
            let _ = writeln!(s, "| metric | value | 95% interval |\n|---|---|---|");
            for (name, e) in &test.metrics {
                let ci = match (e.low, e.high) {
                    (Some(l), Some(h)) => format!("[{l:.4}, {h:.4}]"),
                    _ => "not computed".into(),
                };
                let _ = writeln!(s, "| {name} | {:.4} | {ci} |", e.value);
            }
            let _ = writeln!(s);
        }
        _ => {
            let _ = writeln!(s, "Not measured: the bundle was made without an evaluation.\n");
        }
    }
    let _ = writeln!(s, "## Limits\n");
    let _ = writeln!(
        s,
        "The numbers above hold for rows like the training data. Scoring writes a drift summary \
         (predicted class shares against training, low-confidence share, population stability \
         index of the top probability against the test split): read it before trusting a new batch."
    );
    s
}
