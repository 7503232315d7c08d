//! Metrics against scikit-learn's values on committed fixtures
//! (tests/fixtures/sklearn/metrics.json, made by scripts/make_fixtures.py).

use graft_evaluate::metrics::classification;

#[test]
fn classification_metrics_match_scikit_learn() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/sklearn/metrics.json");
    let cases: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (name, case) in cases.as_object().unwrap() {
        let vec = |k: &str| -> Vec<f64> { serde_json::from_value(case[k].clone()).unwrap() };
        let idx = |k: &str| -> Vec<usize> { serde_json::from_value(case[k].clone()).unwrap() };
        let k = case["classes"].as_u64().unwrap() as usize;
        let labels: Vec<String> = (0..k).map(|c| format!("c{c}")).collect();
        let m = classification(&idx("truth"), &idx("pred"), &labels);
        let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-12, "{name} {what}: {a} vs {b}");
        close(m.accuracy, case["accuracy"].as_f64().unwrap(), "accuracy");
        close(m.macro_f1, case["macro_f1"].as_f64().unwrap(), "macro_f1");
        for (c, pc) in m.per_class.iter().enumerate() {
            close(pc.precision, vec("precision")[c], "precision");
            close(pc.recall, vec("recall")[c], "recall");
            close(pc.f1, vec("f1")[c], "f1");
            assert_eq!(pc.support, idx("support")[c]);
        }
        let confusion: Vec<Vec<usize>> = serde_json::from_value(case["confusion"].clone()).unwrap();
        assert_eq!(m.confusion, confusion, "{name}");
    }
}

fn scores() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/sklearn/scores.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn probability_and_agreement_metrics_match_scikit_learn() {
    use graft_evaluate::metrics::probabilistic;
    for (name, case) in scores()["classification"].as_object().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        let truth: Vec<usize> = serde_json::from_value(case["truth"].clone()).unwrap();
        let pred: Vec<usize> = serde_json::from_value(case["pred"].clone()).unwrap();
        let proba: Vec<Vec<f64>> = serde_json::from_value(case["proba"].clone()).unwrap();
        let k = case["classes"].as_u64().unwrap() as usize;
        let labels: Vec<String> = (0..k).map(|c| c.to_string()).collect();
        let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-9, "{name} {what}: {a} vs {b}");
        let m = classification(&truth, &pred, &labels);
        close(m.balanced_accuracy, f("balanced_accuracy"), "balanced accuracy");
        close(m.mcc, f("mcc"), "mcc");
        close(m.cohen_kappa.unwrap(), f("cohen_kappa"), "kappa");
        let avg = |k: &str, i: usize| case[k][i].as_f64().unwrap();
        close(m.macro_precision, avg("macro", 0), "macro precision");
        close(m.macro_recall, avg("macro", 1), "macro recall");
        close(m.weighted_precision, avg("weighted", 0), "weighted precision");
        close(m.weighted_recall, avg("weighted", 1), "weighted recall");
        close(m.weighted_f1, avg("weighted", 2), "weighted f1");
        let p = probabilistic(&truth, &proba);
        close(p.log_loss, f("log_loss"), "log loss");
        close(p.roc_auc.unwrap(), f("roc_auc"), "roc auc");
        close(p.average_precision.unwrap(), f("average_precision"), "average precision");
        close(p.expected_calibration_error, f("ece"), "ece");
        if let Some(top) = case["top_k"].as_array() {
            assert_eq!(p.top_k_accuracy.len(), top.len());
            for ((k, got), want) in p.top_k_accuracy.iter().zip(top) {
                assert_eq!(*k as u64, want[0].as_u64().unwrap());
                close(*got, want[1].as_f64().unwrap(), "top-k");
            }
        }
    }
}

#[test]
fn undefined_metrics_are_none_not_nan() {
    use graft_evaluate::metrics::probabilistic;
    // Only class 0 present: ROC-AUC and average precision of class 1 are undefined.
    let p = probabilistic(&[0, 0, 0], &[vec![0.9, 0.1], vec![0.6, 0.4], vec![0.2, 0.8]]);
    assert_eq!(p.roc_auc, None);
    assert_eq!(p.average_precision, None);
    let labels: Vec<String> = vec!["a".into(), "b".into()];
    // Everything predicted and true in one class: chance agreement is 1.
    let m = classification(&[0, 0], &[0, 0], &labels);
    assert_eq!(m.cohen_kappa, None);
    assert_eq!(m.mcc, 0.0);
}

#[test]
fn regression_metrics_match_scikit_learn_and_scipy() {
    use graft_evaluate::metrics::regression;
    for (name, case) in scores()["regression"].as_object().unwrap() {
        let f = |k: &str| case[k].as_f64().unwrap();
        let y: Vec<f64> = serde_json::from_value(case["y"].clone()).unwrap();
        let pred: Vec<f64> = serde_json::from_value(case["pred"].clone()).unwrap();
        let r = regression(&y, &pred);
        let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-9, "{name} {what}: {a} vs {b}");
        close(r.mse, f("mse"), "mse");
        close(r.rmse, f("mse").sqrt(), "rmse");
        close(r.mae, f("mae"), "mae");
        close(r.r2, f("r2"), "r2");
        close(r.pearson.unwrap(), f("pearson"), "pearson");
        close(r.spearman.unwrap(), f("spearman"), "spearman");
    }
}

#[test]
fn roc_and_precision_recall_curves_match_scikit_learn() {
    use graft_evaluate::metrics::{pr_curve, roc_curve};
    let mut checked = 0;
    for (name, case) in scores()["classification"].as_object().unwrap() {
        let Some(roc) = case["roc_curve"].as_array() else { continue };
        let truth: Vec<usize> = serde_json::from_value(case["truth"].clone()).unwrap();
        let proba: Vec<Vec<f64>> = serde_json::from_value(case["proba"].clone()).unwrap();
        let positive: Vec<bool> = truth.iter().map(|&t| t == 1).collect();
        let scores: Vec<f64> = proba.iter().map(|p| p[1]).collect();
        let series = |v: &serde_json::Value| -> Vec<f64> { serde_json::from_value(v.clone()).unwrap() };
        let (fpr, tpr) = (series(&roc[0]), series(&roc[1]));
        let got = roc_curve(&positive, &scores);
        assert_eq!(got.len(), fpr.len(), "{name}: ROC points");
        for (i, (x, y)) in got.iter().enumerate() {
            assert!((x - fpr[i]).abs() < 1e-12 && (y - tpr[i]).abs() < 1e-12, "{name} ROC point {i}");
        }
        // scikit-learn lists precision-recall by increasing threshold and ends with (0, 1).
        let (recall, precision) = (series(&case["pr_curve"][0]), series(&case["pr_curve"][1]));
        let got = pr_curve(&positive, &scores);
        assert_eq!(got.len(), recall.len() - 1, "{name}: PR points");
        for (i, (r, p)) in got.iter().enumerate() {
            let j = recall.len() - 2 - i;
            assert!((r - recall[j]).abs() < 1e-12 && (p - precision[j]).abs() < 1e-12, "{name} PR point {i}");
        }
        checked += 1;
    }
    assert_eq!(checked, 2, "both binary cases carry curves");
}
