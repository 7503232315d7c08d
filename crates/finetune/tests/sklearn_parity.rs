//! Logistic regression against scikit-learn's answers on committed fixtures
//! (tests/fixtures/sklearn/logreg.json, made by scripts/make_fixtures.py): coefficients
//! within 1e-3 of the largest, identical test predictions and accuracy, probabilities
//! within 1e-5; binary and multinomial, with and without class weights.

use std::collections::BTreeMap;

use graft_core::numeric::{argmax, softmax};
use graft_finetune::{ClassWeight, accuracy, class_weights};
use graft_learn::{lbfgs, logreg};
use ndarray::Array2;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/sklearn/logreg.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Array2<f32> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    // The fixture's values are float32 numbers written as float64: the cast is exact.
    Array2::from_shape_vec((rows.len(), rows[0].len()), rows.concat().iter().map(|&v| v as f32).collect()).unwrap()
}

fn check(case: &Value) {
    let x = matrix(&case["x"]);
    let y: Vec<usize> = serde_json::from_value(case["y"].clone()).unwrap();
    let classes = case["classes"].as_u64().unwrap() as usize;
    let labels: Vec<String> = (0..classes).map(|c| c.to_string()).collect();
    let spec = match &case["class_weight"] {
        Value::Null => ClassWeight::None,
        Value::String(s) if s == "balanced" => ClassWeight::Balanced,
        Value::Object(m) => {
            ClassWeight::Given(m.iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect::<BTreeMap<_, _>>())
        }
        other => panic!("class_weight {other}"),
    };
    let per_class = class_weights(&spec, &labels, &y).unwrap();
    let row_weights: Vec<f64> = y.iter().map(|&c| per_class[c]).collect();
    let problem = logreg::Problem {
        x: x.view(),
        y: &y,
        classes,
        row_weights: (spec != ClassWeight::None).then_some(&row_weights[..]),
    };
    let opts = lbfgs::Options { gtol: 1e-10, ..lbfgs::Options::default() };
    let (model, out) = logreg::fit(&problem, case["c"].as_f64().unwrap(), opts);
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
    let x_test = matrix(&case["x_test"]);
    let y_test: Vec<usize> = serde_json::from_value(case["y_test"].clone()).unwrap();
    let mut proba = model.logits(x_test.view());
    proba.rows_mut().into_iter().for_each(|mut r| softmax(r.as_slice_mut().unwrap()));
    let want_pred: Vec<usize> = serde_json::from_value(case["pred"].clone()).unwrap();
    let want_proba: Vec<Vec<f64>> = serde_json::from_value(case["proba"].clone()).unwrap();
    for (i, row) in proba.rows().into_iter().enumerate() {
        assert_eq!(argmax(row.as_slice().unwrap()), want_pred[i], "row {i}");
        for (c, p) in row.iter().enumerate() {
            assert!((p - want_proba[i][c]).abs() < 1e-5, "proba[{i}][{c}]: {p} vs {}", want_proba[i][c]);
        }
    }
    assert_eq!(accuracy(&proba, &y_test), case["accuracy"].as_f64().unwrap());
}

#[test]
fn binary_matches_scikit_learn() {
    check(&fixture()["binary"]);
}

#[test]
fn multiclass_matches_scikit_learn() {
    check(&fixture()["multiclass"]);
}

#[test]
fn balanced_class_weights_match_scikit_learn() {
    check(&fixture()["binary_balanced"]);
}

#[test]
fn given_class_weights_match_scikit_learn() {
    check(&fixture()["multiclass_weighted"]);
}

#[test]
fn ridge_matches_scikit_learn() {
    let case = &fixture()["ridge"];
    let x = matrix(&case["x"]);
    let y: Vec<f64> = serde_json::from_value(case["y"].clone()).unwrap();
    let model = graft_finetune::ridge::fit(x.view(), &y, case["alpha"].as_f64().unwrap());
    let coef: Vec<f64> = serde_json::from_value(case["coef"].clone()).unwrap();
    for (j, want) in coef.iter().enumerate() {
        assert!((model.weight[[0, j]] - want).abs() < 1e-9, "coef[{j}]: {} vs {want}", model.weight[[0, j]]);
    }
    let intercept = case["intercept"].as_f64().unwrap();
    assert!((model.bias[0] - intercept).abs() < 1e-9, "intercept {} vs {intercept}", model.bias[0]);
    let pred: Vec<f64> = serde_json::from_value(case["pred"].clone()).unwrap();
    for (got, want) in model.logits(x.view()).column(0).iter().zip(&pred) {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
}
