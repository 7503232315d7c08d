//! Logistic regression against scikit-learn's answers on committed fixtures
//! (tests/fixtures/sklearn/logreg.json, made by scripts/make_fixtures.py).

use graft_finetune::{argmax, lbfgs, logreg};
use ndarray::Array2;

fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/sklearn/logreg.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn check(case: &serde_json::Value) {
    let x: Vec<Vec<f64>> = serde_json::from_value(case["x"].clone()).unwrap();
    let y: Vec<usize> = serde_json::from_value(case["y"].clone()).unwrap();
    let classes = case["classes"].as_u64().unwrap() as usize;
    let x = Array2::from_shape_vec((x.len(), x[0].len()), x.concat()).unwrap();
    let opts = lbfgs::Options { gtol: 1e-10, ..lbfgs::Options::default() };
    let (model, out) = logreg::fit(x.view(), &y, classes, case["c"].as_f64().unwrap(), opts);
    assert!(out.converged);
    let coef: Vec<Vec<f64>> = serde_json::from_value(case["coef"].clone()).unwrap();
    let intercept: Vec<f64> = serde_json::from_value(case["intercept"].clone()).unwrap();
    // scikit-learn keeps one row for two classes (class 1 against class 0).
    let first = if classes == 2 { 1 } else { 0 };
    let scale = coef.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    for (k, row) in coef.iter().enumerate() {
        for (j, want) in row.iter().enumerate() {
            let got = model.weight[[first + k, j]];
            assert!((got - want).abs() <= 1e-3 * scale, "coef[{k}][{j}]: {got} vs {want}");
        }
        let got = model.bias[first + k];
        assert!((got - intercept[k]).abs() <= 1e-3 * scale, "intercept[{k}]: {got} vs {}", intercept[k]);
    }
    let proba = model.predict_proba(x.view());
    let want_pred: Vec<usize> = serde_json::from_value(case["pred"].clone()).unwrap();
    let want_proba: Vec<Vec<f64>> = serde_json::from_value(case["proba"].clone()).unwrap();
    for (i, row) in proba.rows().into_iter().enumerate() {
        assert_eq!(argmax(row.as_slice().unwrap()), want_pred[i], "row {i}");
        for (c, p) in row.iter().enumerate() {
            assert!((p - want_proba[i][c]).abs() < 1e-5, "proba[{i}][{c}]: {p} vs {}", want_proba[i][c]);
        }
    }
}

#[test]
fn binary_matches_scikit_learn() {
    check(&fixture()["binary"]);
}

#[test]
fn multiclass_matches_scikit_learn() {
    check(&fixture()["multiclass"]);
}
