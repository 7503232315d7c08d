//! graft-evaluate end to end: intervals, and `compare` of two heads on the same rows.

use std::path::Path;

use graft_e2e::*;
use serde_json::Value;

fn metrics(eval: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn intervals_bracket_accuracy_and_compare_counts_discordant_rows() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let d = |n: &str| dir.path().join(n);
    let feats = d("features");
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&d("lr")), "--c", "0.01", "-q"]);
    ok(
        "graft-finetune",
        &["--features", s(&feats), "--out", s(&d("mlp")), "--head", "mlp", "--hidden", "8", "--epochs", "3", "-q"],
    );
    for (head, eval, split) in [("lr", "eval_lr", "test"), ("mlp", "eval_mlp", "test"), ("lr", "eval_val", "val")] {
        ok(
            "graft-evaluate",
            &["--head", s(&d(head)), "--features", s(&feats), "--split", split, "--out", s(&d(eval)), "-q"],
        );
    }
    let m = metrics(&d("eval_lr"));
    let (acc, ci) = (m["metrics"]["accuracy"].as_f64().unwrap(), &m["intervals"]["metrics"]["accuracy"]);
    let (low, high) = (ci["low"].as_f64().unwrap(), ci["high"].as_f64().unwrap());
    assert!(low <= acc && acc <= high && low < high, "{acc} not in [{low}, {high}]");
    assert_eq!(m["intervals"], metrics(&d("eval_lr"))["intervals"], "seeded");

    let out = ok("graft-evaluate", &["compare", s(&d("eval_lr")), s(&d("eval_mlp"))]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Recount the discordant rows from the two prediction files.
    let preds = |eval: &str| {
        let path = d(eval).join("predictions.arrow");
        let mut r = graft_core::artifact::ArtifactReader::open(&path).unwrap();
        let b = r.next_batch().unwrap().unwrap();
        let col =
            |n: &str| graft_core::artifact::column::<arrow::array::StringArray>(&b, n, &path, "").unwrap().clone();
        let (label, pred) = (col("label"), col("pred"));
        (0..b.num_rows()).map(|i| label.value(i) == pred.value(i)).collect::<Vec<bool>>()
    };
    let (a, b) = (preds("eval_lr"), preds("eval_mlp"));
    let only_a = (0..a.len()).filter(|&i| a[i] && !b[i]).count();
    let only_b = (0..a.len()).filter(|&i| b[i] && !a[i]).count();
    assert!(text.contains(&format!("only A right {only_a}, only B right {only_b}")), "{text}");

    let err = user_error("graft-evaluate", &["compare", s(&d("eval_lr")), s(&d("eval_val"))]);
    assert!(
        err.contains("eval_lr") && err.contains("eval_val") && err.contains("not predictions on the same rows"),
        "{err}"
    );
}
