//! graft-finetune end to end on the tiny fixture's features: heads, options, bad input.

use std::path::Path;
use std::process::Command;

use graft_e2e::*;
use serde_json::Value;

fn head_json(head: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(head.join("head.json")).unwrap()).unwrap()
}

fn head_bytes(head: &Path) -> (Vec<u8>, Vec<u8>) {
    (std::fs::read(head.join("head.safetensors")).unwrap(), std::fs::read(head.join("head.json")).unwrap())
}

/// Trains with `RAYON_NUM_THREADS=threads`.
fn train_with_threads(threads: usize, args: &[&str]) {
    let out = Command::new(bin("graft-finetune")).args(args).env("RAYON_NUM_THREADS", threads.to_string()).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn heads_are_byte_identical_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head) = (dir.path().join("features"), dir.path().join("head"));
    for extra in [
        &["--c", "0.1,1,10", "--class-weight", "balanced"][..],
        &["--head", "mlp", "--hidden", "16,8", "--activation", "gelu", "--epochs", "15", "--seed", "3"][..],
    ] {
        let mut args = vec!["--features", s(&feats), "--out", s(&head), "-q"];
        args.extend_from_slice(extra);
        train_with_threads(1, &args);
        let one = head_bytes(&head);
        train_with_threads(2, &args);
        assert_eq!(one, head_bytes(&head), "{extra:?}");
        train_with_threads(3, &args);
        assert_eq!(one, head_bytes(&head), "{extra:?}");
    }
}

#[test]
fn mlp_head_records_its_history_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head, eval) = (dir.path().join("features"), dir.path().join("head"), dir.path().join("eval"));
    ok(
        "graft-finetune",
        &[
            "--features",
            s(&feats),
            "--out",
            s(&head),
            "--head",
            "mlp",
            "--hidden",
            "32",
            "--epochs",
            "40",
            "--patience",
            "5",
            "--monitor",
            "accuracy",
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--schedule",
            "step",
            "--lr-step",
            "5",
            "--lr-gamma",
            "0.5",
            "--clip-norm",
            "1",
            "--label-smoothing",
            "0.1",
            "-q",
        ],
    );
    let info = head_json(&head);
    assert_eq!(info["architecture"]["kind"], "mlp");
    assert_eq!(info["architecture"]["hidden"], serde_json::json!([32]));
    let epochs = info["training"]["fit"]["epochs"].as_array().unwrap();
    let best = info["training"]["fit"]["best_epoch"].as_u64().unwrap() as usize;
    assert!(best >= 1 && best <= epochs.len());
    // Early stopping: the run ends `patience` epochs after the best, or at the last epoch.
    assert!(epochs.len() == 40 || epochs.len() == best + 5, "{} epochs, best {best}", epochs.len());
    let acc = |e: &Value| e["val_accuracy"].as_f64().unwrap();
    let best_acc = acc(&epochs[best - 1]);
    assert!(epochs.iter().all(|e| acc(e) <= best_acc), "the kept epoch has the best val accuracy");
    // Step schedule: the rate halves every 5 epochs.
    let lr = |i: usize| epochs[i]["lr"].as_f64().unwrap();
    assert!((lr(0) - 0.05).abs() < 1e-12 && (lr(5) - 0.025).abs() < 1e-12, "{} {}", lr(0), lr(5));
    // Evaluating the head on val reproduces the kept epoch's val accuracy.
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--split", "val", "--out", s(&eval), "-q"]);
    let metrics: Value = serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    assert!((metrics["metrics"]["accuracy"].as_f64().unwrap() - best_acc).abs() < 1e-12);
    assert_eq!(metrics["head"]["kind"], "mlp");
}

#[test]
fn calibration_lowers_val_loss_and_evaluate_sees_the_same_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head, eval) = (dir.path().join("features"), dir.path().join("head"), dir.path().join("eval"));
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "100", "--calibrate", "-q"]);
    let info = head_json(&head);
    let t = info["temperature"].as_f64().unwrap();
    let cal = &info["training"]["calibration"];
    let (before, after) = (cal["val_loss_before"].as_f64().unwrap(), cal["val_loss_after"].as_f64().unwrap());
    assert!(t > 0.0 && t != 1.0 && after <= before, "T {t}: {before} -> {after}");
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--split", "val", "--out", s(&eval), "-q"]);
    let metrics: Value = serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    let log_loss = metrics["probabilities"]["log_loss"].as_f64().unwrap();
    assert!((log_loss - after).abs() < 1e-9, "evaluate's log-loss {log_loss} vs calibrated {after}");
}

#[test]
fn fewer_labels_and_cross_validated_c() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head) = (dir.path().join("features"), dir.path().join("head"));
    let (_, train) = read_features(&feats.join("train.arrow"));
    let count = |label: &str| train.values().filter(|(l, _)| l == label).count();
    let train_rows = |extra: &[&str]| {
        let mut args = vec!["--features", s(&feats), "--out", s(&head), "--c", "1", "-q"];
        args.extend_from_slice(extra);
        ok("graft-finetune", &args);
        head_json(&head)["training"]["train_rows"].as_u64().unwrap() as usize
    };
    assert_eq!(train_rows(&["--per-class", "5"]), 10);
    let half = |n: usize| ((n as f64) * 0.5).round() as usize;
    assert_eq!(train_rows(&["--train-fraction", "0.5"]), half(count("neg")) + half(count("pos")));
    assert_eq!(train_rows(&[]), train.len());

    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "auto", "-q"]);
    let info = head_json(&head);
    let selection = info["training"]["fit"]["selection"].as_array().unwrap();
    assert_eq!(selection.len(), 10);
    let mean = |c: &Value| c["score"].as_f64().unwrap();
    for c in selection {
        let folds: Vec<f64> = serde_json::from_value(c["fold_scores"].clone()).unwrap();
        assert_eq!(folds.len(), 5);
        assert!((folds.iter().sum::<f64>() / 5.0 - mean(c)).abs() < 1e-12);
    }
    let best = selection.iter().map(mean).fold(f64::NEG_INFINITY, f64::max);
    let first_best = selection.iter().find(|c| mean(c) == best).unwrap();
    assert_eq!(info["training"]["fit"]["chosen_c"], first_best["c"]);
}

#[test]
fn a_kept_fit_that_did_not_converge_is_warned_of() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head) = (dir.path().join("features"), dir.path().join("head"));
    let train = |extra: &[&str]| {
        let mut args = vec!["--features", s(&feats), "--out", s(&head), "--c", "1"];
        args.extend_from_slice(extra);
        let stderr = String::from_utf8(ok("graft-finetune", &args).stderr).unwrap();
        let fit = head_json(&head)["training"]["fit"]["selection"][0]["fit"].clone();
        (stderr, fit["converged"].as_bool().unwrap(), fit["iterations"].as_u64().unwrap())
    };
    let (stderr, converged, iterations) = train(&["--max-iter", "2"]);
    assert!(!converged && iterations == 2, "{iterations}");
    assert!(stderr.contains("WARN") && stderr.contains("stopped at max_iter=2 without converging"), "{stderr}");
    let (stderr, converged, _) = train(&[]);
    assert!(converged && !stderr.contains("without converging"), "{stderr}");
}

#[test]
fn config_file_fills_keys_and_the_command_line_wins() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head) = (dir.path().join("features"), dir.path().join("head"));
    let cfg = dir.path().join("mlp.yaml");
    std::fs::write(&cfg, "head: mlp\nhidden: [8]\nepochs: 6\noptimizer: adam\nlr: 0.01\n").unwrap();
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--config", s(&cfg), "--epochs", "3", "-q"]);
    let c = &head_json(&head)["training"]["config"];
    assert_eq!((c["head"].as_str(), c["optimizer"].as_str()), (Some("mlp"), Some("adam")));
    assert_eq!(
        (c["hidden"].clone(), c["epochs"].as_u64(), c["lr"].as_f64()),
        (serde_json::json!([8]), Some(3), Some(0.01))
    );
}

mod bad_input {
    use super::*;

    fn rewrite_train(
        dir: &Path,
        edit: impl Fn(&mut graft_core::artifact::Provenance, &mut Vec<(String, String, Vec<f32>)>),
    ) {
        let path = dir.join("features/train.arrow");
        let (mut provenance, rows) = read_features(&path);
        let mut rows: Vec<(String, String, Vec<f32>)> = rows.into_iter().map(|(id, (l, f))| (id, l, f)).collect();
        edit(&mut provenance, &mut rows);
        write_features(&path, &provenance, &rows);
    }

    /// Trains on `dir/features` and expects exit 1 with no head written; returns stderr.
    fn refused(dir: &Path, extra: &[&str]) -> String {
        let (feats, head) = (dir.join("features"), dir.join("head"));
        let mut args = vec!["--features", s(&feats), "--out", s(&head)];
        if !extra.contains(&"--head") {
            args.extend(["--c", "1"]);
        }
        args.extend_from_slice(extra);
        let err = user_error("graft-finetune", &args);
        assert!(files_in(&head).is_empty(), "{:?}", files_in(&head));
        err
    }

    #[test]
    fn non_finite_feature() {
        let dir = tempfile::tempdir().unwrap();
        features(dir.path(), &[]);
        rewrite_train(dir.path(), |_, rows| rows[3].2[5] = f32::NAN);
        let err = refused(dir.path(), &[]);
        assert!(err.contains("train.arrow") && err.contains("row 3") && err.contains("feature 5 is NaN"), "{err}");
        rewrite_train(dir.path(), |_, rows| rows[3].2[5] = f32::INFINITY);
        let err = refused(dir.path(), &[]);
        assert!(err.contains("feature 5 is inf"), "{err}");
    }

    #[test]
    fn fewer_rows_than_the_metadata_says() {
        let dir = tempfile::tempdir().unwrap();
        features(dir.path(), &[]);
        rewrite_train(dir.path(), |_, rows| {
            rows.pop();
        });
        let err = refused(dir.path(), &[]);
        assert!(err.contains("train.arrow") && err.contains("metadata says"), "{err}");
    }

    #[test]
    fn class_missing_from_train() {
        let dir = tempfile::tempdir().unwrap();
        features(dir.path(), &[]);
        rewrite_train(dir.path(), |p, rows| {
            rows.retain(|r| r.1 == "neg");
            p.rows = rows.len() as u64;
        });
        let err = refused(dir.path(), &[]);
        assert!(err.contains("train.arrow") && err.contains("lacks class `pos`"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        features(dir.path(), &[]);
        let cfg = dir.path().join("head.yaml");
        std::fs::write(&cfg, "head: mlp\nhiden: [8]\n").unwrap();
        let err = refused(dir.path(), &["--config", s(&cfg)]);
        assert!(err.contains("head.yaml") && err.contains("unknown field `hiden`") && err.contains("line 2"), "{err}");
        let err = refused(dir.path(), &["--class-weight", "neutral=2"]);
        assert!(err.contains("class_weight") && err.contains("`neutral` is not a class"), "{err}");
        let err = refused(dir.path(), &["--head", "mlp", "--dropout", "1.5"]);
        assert!(err.contains("dropout") && err.contains("1.5"), "{err}");
        let err = refused(dir.path(), &["--folds", "40"]);
        assert!(err.contains("fewer than the 40 folds"), "{err}");
        // A key the chosen head would ignore, on the command line or in the config file.
        let err = refused(dir.path(), &["--head", "mlp", "--c", "0.1"]);
        assert!(err.contains("`c` is a key of the logistic_regression head, and the head is mlp"), "{err}");
        let err = refused(dir.path(), &["--epochs", "3"]);
        assert!(err.contains("`epochs` is a key of the mlp head"), "{err}");
        std::fs::write(&cfg, "head: mlp\noptimizer: adamw\nmomentum: 0.5\n").unwrap();
        let err = refused(dir.path(), &["--config", s(&cfg)]);
        assert!(err.contains("head.yaml") && err.contains("`momentum` is used by the sgd optimizer only"), "{err}");
        std::fs::write(&cfg, "head: mlp\nhidden: [8]\nepochs: 2\n").unwrap();
        ok(
            "graft-finetune",
            &[
                "--features",
                s(&dir.path().join("features")),
                "--out",
                s(&dir.path().join("h2")),
                "--config",
                s(&cfg),
                "-q",
            ],
        );
    }
}

#[test]
fn mteb_protocol_draws_k_per_class_and_reports_mean_and_spread() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, out) = (dir.path().join("features"), dir.path().join("mteb"));
    let run = |seed: &str| {
        ok(
            "graft-evaluate",
            &[
                "mteb",
                "--features",
                s(&feats),
                "--per-class",
                "4",
                "--experiments",
                "5",
                "--seed",
                seed,
                "--out",
                s(&out),
            ],
        );
        serde_json::from_slice::<Value>(&std::fs::read(out.join("mteb.json")).unwrap()).unwrap()
    };
    let a = run("1");
    let runs = a["scores_per_experiment"].as_array().unwrap();
    assert_eq!(runs.len(), 5);
    let acc: Vec<f64> = runs.iter().map(|r| r["accuracy"].as_f64().unwrap()).collect();
    let mean = acc.iter().sum::<f64>() / 5.0;
    let std = (acc.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0).sqrt();
    assert!((a["mean"]["accuracy"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!((a["std"]["accuracy"].as_f64().unwrap() - std).abs() < 1e-12);
    assert!(runs.iter().all(|r| r["ap"].is_f64()), "binary labels report ap");
    assert_eq!(a, run("1"));
    assert_ne!(a["scores_per_experiment"], run("2")["scores_per_experiment"]);
    let err = user_error("graft-evaluate", &["mteb", "--features", s(&feats), "--per-class", "0"]);
    assert!(err.contains("per_class"), "{err}");
}

#[test]
fn learning_curve_points_equal_separately_trained_heads() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, out, head, eval) =
        (dir.path().join("features"), dir.path().join("curve"), dir.path().join("head"), dir.path().join("eval"));
    ok(
        "graft-finetune",
        &["curve", "--features", s(&feats), "--sizes", "2,8", "--repeats", "2", "--c", "1", "--out", s(&out), "-q"],
    );
    let curve: Value = serde_json::from_slice(&std::fs::read(out.join("curve.json")).unwrap()).unwrap();
    let points = curve["points"].as_array().unwrap();
    assert_eq!(points.iter().map(|p| p["train_rows"].as_u64().unwrap()).collect::<Vec<_>>(), [4, 16]);
    // The second repeat of 8 per class is seed 1: train that head on its own and evaluate it.
    ok(
        "graft-finetune",
        &["--features", s(&feats), "--out", s(&head), "--per-class", "8", "--seed", "1", "--c", "1", "-q"],
    );
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "-q"]);
    let metrics: Value = serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    let accuracies = points[1]["accuracies"].as_array().unwrap();
    assert_eq!(accuracies.len(), 2);
    assert!((accuracies[1].as_f64().unwrap() - metrics["metrics"]["accuracy"].as_f64().unwrap()).abs() < 1e-12);
}

/// `--early-stopping-fraction`: the MLP stops on a held-out share of train, so it needs no
/// val split and records what it chose on which split.
#[test]
fn mlp_early_stops_on_held_out_train_rows_without_val() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let feats = dir.path().join("features");
    std::fs::remove_file(feats.join("val.arrow")).unwrap();
    let head = |name: &str, extra: &[&str]| -> serde_json::Value {
        let out = dir.path().join(name);
        let mut args =
            vec!["--features", s(&feats), "--out", s(&out), "--head", "mlp", "--hidden", "8", "--epochs", "6", "-q"];
        args.extend_from_slice(extra);
        ok("graft-finetune", &args);
        serde_json::from_slice(&std::fs::read(out.join("head.json")).unwrap()).unwrap()
    };
    let epochs = |h: &serde_json::Value| h["training"]["fit"]["epochs"].as_array().unwrap().clone();
    // Without val and without a held-out share, nothing watches the epochs.
    assert!(epochs(&head("plain", &[])).iter().all(|e| e["val_loss"].is_null()));
    let held = head("held", &["--early-stopping-fraction", "0.25"]);
    assert!(epochs(&held).iter().all(|e| e["val_loss"].is_number()), "{held}");
    // The train split's 64 rows, the held-out ones included, are what it was given.
    assert_eq!(held["training"]["train_rows"], 64);
    assert_ne!(epochs(&held)[0]["train_loss"], epochs(&head("plain2", &[]))[0]["train_loss"], "fewer rows trained on");
    let err = user_error(
        "graft-finetune",
        &["--features", s(&feats), "--out", s(&dir.path().join("x")), "--early-stopping-fraction", "0.2"],
    );
    assert!(err.contains("`early_stopping_fraction` is a key of the mlp head"), "{err}");
}
