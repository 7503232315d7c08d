//! Metrics against scikit-learn's values on committed fixtures
//! (tests/fixtures/sklearn/metrics.json, made by scripts/make_fixtures.py).

use graft_evaluate::metrics::classification;

#[test]
fn classification_metrics_match_scikit_learn() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/sklearn/metrics.json"
    );
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for (name, case) in cases.as_object().unwrap() {
        let vec = |k: &str| -> Vec<f64> { serde_json::from_value(case[k].clone()).unwrap() };
        let idx = |k: &str| -> Vec<usize> { serde_json::from_value(case[k].clone()).unwrap() };
        let k = case["classes"].as_u64().unwrap() as usize;
        let labels: Vec<String> = (0..k).map(|c| format!("c{c}")).collect();
        let m = classification(&idx("truth"), &idx("pred"), &labels);
        let close = |a: f64, b: f64, what: &str| {
            assert!((a - b).abs() < 1e-12, "{name} {what}: {a} vs {b}")
        };
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
