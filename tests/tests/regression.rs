//! Regression end to end on the tiny fixture: a numeric target through preprocess, the
//! backbone, ridge and MLP heads, and evaluate's regression metrics.

use std::path::Path;

use graft_e2e::*;
use serde_json::Value;

/// The fixture reviews with a numeric `score` column (pos around +2, neg around -2);
/// `bad_row` puts a word in that row's score instead.
fn scored_csv(dir: &Path, bad_row: Option<usize>) -> std::path::PathBuf {
    let text = std::fs::read_to_string(fixture("tiny/reviews.csv")).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let path = dir.join("scored.csv");
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(["id", "text", "score"]).unwrap();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.unwrap();
        let score = match (rec.get(2).unwrap(), bad_row == Some(i)) {
            (_, true) => "lots".to_owned(),
            ("", _) => String::new(),
            (label, _) => format!("{:.3}", if label == "pos" { 2.0 } else { -2.0 } + 0.01 * i as f64),
        };
        w.write_record([rec.get(0).unwrap(), rec.get(1).unwrap(), score.as_str()]).unwrap();
    }
    w.flush().unwrap();
    path
}

fn prepare(dir: &Path) {
    let (spec, csv) = (fixture("tiny/tiny.yaml"), scored_csv(dir, None));
    let (data, feats) = (dir.join("data"), dir.join("features"));
    ok(
        "graft-preprocess",
        &[
            "--input",
            s(&csv),
            "--spec",
            s(&spec),
            "--out",
            s(&data),
            "--task",
            "regression",
            "--label-column",
            "score",
            "-q",
        ],
    );
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&feats), "-q"]);
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn ridge_and_mlp_heads_evaluate_with_regression_metrics() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let d = |n: &str| dir.path().join(n);
    let (prov, rows) = read_features(&d("features/train.arrow"));
    assert_eq!(prov.task, graft_core::artifact::Task::Regression);
    assert!(prov.labels.is_empty() && rows.len() == 64);

    ok("graft-finetune", &["--features", s(&d("features")), "--out", s(&d("ridge")), "--head", "ridge", "-q"]);
    let head = json(&d("ridge/head.json"));
    assert_eq!(head["task"], "regression");
    assert_eq!(head["training"]["fit"]["alpha_selection"].as_array().unwrap().len(), 3);
    let chosen = head["training"]["fit"]["chosen_alpha"].as_f64().unwrap();
    let best = head["training"]["fit"]["alpha_selection"]
        .as_array()
        .unwrap()
        .iter()
        .min_by(|a, b| a[1].as_f64().unwrap().total_cmp(&b[1].as_f64().unwrap()))
        .unwrap()[0]
        .as_f64()
        .unwrap();
    assert_eq!(chosen, best, "the lowest val MSE wins");

    let mlp = ["--head", "mlp", "--hidden", "16", "--loss", "huber", "--epochs", "30", "--lr", "0.01", "-q"];
    let (feats, mlp_dir) = (d("features"), d("mlp"));
    let mut args = vec!["--features", s(&feats), "--out", s(&mlp_dir)];
    args.extend_from_slice(&mlp);
    ok("graft-finetune", &args);
    assert!(json(&d("mlp/head.json"))["target_scale"].as_f64().unwrap() > 1.0, "the target is standardised");

    for head in ["ridge", "mlp"] {
        let eval = d(&format!("eval_{head}"));
        let out = ok("graft-evaluate", &["--head", s(&d(head)), "--features", s(&d("features")), "--out", s(&eval)]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("RMSE"));
        let m = json(&eval.join("metrics.json"));
        // Recompute R² and RMSE from predictions.arrow.
        let path = eval.join("predictions.arrow");
        let mut r = graft_core::artifact::ArtifactReader::open(&path).unwrap();
        let b = r.next_batch().unwrap().unwrap();
        let col = |n: &str| {
            graft_core::artifact::column::<arrow::array::Float64Array>(&b, n, &path, "").unwrap().values().to_vec()
        };
        let (y, p) = (col("target"), col("pred"));
        let mean = y.iter().sum::<f64>() / y.len() as f64;
        let ss_res: f64 = y.iter().zip(&p).map(|(a, b)| (a - b).powi(2)).sum();
        let ss_tot: f64 = y.iter().map(|a| (a - mean).powi(2)).sum();
        assert!((m["metrics"]["r2"].as_f64().unwrap() - (1.0 - ss_res / ss_tot)).abs() < 1e-9);
        assert!((m["metrics"]["rmse"].as_f64().unwrap() - (ss_res / y.len() as f64).sqrt()).abs() < 1e-9);
        let ci = &m["intervals"]["metrics"]["r2"];
        assert!(ci["low"].as_f64().unwrap() <= ci["high"].as_f64().unwrap(), "{ci}");
    }
}

#[test]
fn non_numeric_targets_and_classification_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture("tiny/tiny.yaml");
    let csv = scored_csv(dir.path(), Some(5));
    let data = dir.path().join("bad");
    let err = user_error(
        "graft-preprocess",
        &["--input", s(&csv), "--spec", s(&spec), "--out", s(&data), "--task", "regression", "--label-column", "score"],
    );
    assert!(err.contains("scored.csv") && err.contains("row 5") && err.contains("`lots`"), "{err}");
    assert!(files_in(&data).is_empty());

    prepare(dir.path());
    let feats = dir.path().join("features");
    let train = feats.join("train.arrow");
    let (prov, rows) = read_features(&train);
    let mut rows: Vec<(String, String, Vec<f32>)> = rows.into_iter().map(|(id, (l, f))| (id, l, f)).collect();
    rows[2].1 = "n/a".into();
    write_features(&train, &prov, &rows);
    let head = dir.path().join("head");
    let err = user_error("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--head", "ridge"]);
    assert!(err.contains("train.arrow") && err.contains("row 2") && err.contains("target `n/a`"), "{err}");
    assert!(files_in(&head).is_empty());

    prepare(dir.path());
    for (extra, key) in [
        (&["--head", "logistic_regression", "--c", "1"][..], "head"),
        (&["--head", "ridge", "--class-weight", "balanced"][..], "class_weight"),
    ] {
        let mut args = vec!["--features", s(&feats), "--out", s(&head)];
        args.extend_from_slice(extra);
        let err = user_error("graft-finetune", &args);
        assert!(err.contains(key) && err.contains("regression"), "{err}");
    }
}

#[test]
fn trained_layers_learn_a_regression_target_with_mse() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    prepare(dir.path());
    let spec = fixture("tiny/tiny.yaml");
    #[rustfmt::skip]
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--outputs", "hidden_state_1", "--tokens",
        "--out", s(&d("cut"))]);
    #[rustfmt::skip]
    ok("graft-finetune", &["layers", "--cut", s(&d("cut")), "--spec", s(&spec), "--layers", "1", "--epochs", "8",
        "--lr", "0.01", "--layer-lr", "0.001", "--out", s(&d("tuned"))]);
    let head: Value = serde_json::from_slice(&std::fs::read(d("tuned/head/head.json")).unwrap()).unwrap();
    assert_eq!(head["task"], "regression");
    assert_eq!(head["architecture"]["outputs"], 1);
    // The target is standardised with train's mean and (population) standard deviation.
    let targets: Vec<f64> =
        read_tokens(&d("data/train.arrow")).1.values().map(|(label, _)| label.parse().unwrap()).collect();
    let n = targets.len() as f64;
    let mean = targets.iter().sum::<f64>() / n;
    let scale = (targets.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!((head["target_mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{head}");
    assert!((head["target_scale"].as_f64().unwrap() - scale).abs() < 1e-9, "{head}");
    ok("graft-backbone", &["--spec", s(&d("tuned/spec.yaml")), "--input", s(&d("data")), "--out", s(&d("tf"))]);
    #[rustfmt::skip]
    ok("graft-evaluate", &["--head", s(&d("tuned/head")), "--features", s(&d("tf")), "--split", "train",
        "--out", s(&d("eval"))]);
    let m: Value = serde_json::from_slice(&std::fs::read(d("eval/metrics.json")).unwrap()).unwrap();
    let r2 = m["metrics"]["r2"].as_f64().unwrap();
    // Better than predicting train's mean, on the rows it was fitted to.
    assert!(r2 > 0.3, "train R² {r2}");
}

#[test]
fn scoring_rows_with_targets_reports_the_error_on_the_numeric_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    prepare(dir.path());
    let spec = fixture("tiny/tiny.yaml");
    ok("graft-finetune", &["--features", s(&d("features")), "--out", s(&d("ridge")), "--head", "ridge", "-q"]);
    ok("graft-evaluate", &["--head", s(&d("ridge")), "--features", s(&d("features")), "--out", s(&d("eval")), "-q"]);
    #[rustfmt::skip]
    ok("graft-evaluate", &["bundle", "--head", s(&d("ridge")), "--spec", s(&spec), "--data", s(&d("data")),
        "--eval", s(&d("eval")), "--out", s(&d("model"))]);
    // New rows with their targets; two of them hold words.
    let text = std::fs::read_to_string(d("scored.csv")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .take(13)
        .enumerate()
        .map(|(i, l)| match i {
            4 => l.rsplit_once(',').map(|(head, _)| format!("{head},lots")).unwrap(),
            9 => l.rsplit_once(',').map(|(head, _)| format!("{head},n/a")).unwrap(),
            _ => l.to_owned(),
        })
        .collect();
    std::fs::write(d("new.csv"), lines.join("\n") + "\n").unwrap();
    let out = d("scored/p.csv");
    #[rustfmt::skip]
    ok("graft", &["predict", "--bundle", s(&d("model")), "--input", s(&d("new.csv")), "--id-column", "id",
        "--out", s(&out)]);
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let (mut abs, mut sq, mut n) = (0.0, 0.0, 0.0);
    for rec in reader.records() {
        let rec = rec.unwrap();
        if let Ok(target) = rec.get(2).unwrap().parse::<f64>() {
            let pred: f64 = rec.get(3).unwrap().parse().unwrap();
            (abs, sq, n) = (abs + (pred - target).abs(), sq + (pred - target).powi(2), n + 1.0);
        }
    }
    assert_eq!(n, 10.0, "twelve rows, two without a numeric target");
    let drift = json(&d("scored/p.drift.json"));
    assert_eq!(drift["labelled"]["rows"], 10, "{drift}");
    assert!((drift["labelled"]["mae"].as_f64().unwrap() - abs / n).abs() < 1e-9, "{drift}");
    assert!((drift["labelled"]["rmse"].as_f64().unwrap() - (sq / n).sqrt()).abs() < 1e-9, "{drift}");
    assert_eq!(drift["unknown_labels"], serde_json::json!({"rows": 2, "examples": ["lots", "n/a"]}));
    assert!(drift["warnings"].to_string().contains("2 labelled rows have a label that is not a number"), "{drift}");
}
