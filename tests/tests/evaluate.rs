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
    parquet_copies_match(&d("eval_lr"), &m);
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

    // The same comparison inside an evaluation: metrics.json and the report carry it.
    let with_base = d("eval_with_base");
    ok(
        "graft-evaluate",
        &[
            "--head",
            s(&d("mlp")),
            "--features",
            s(&feats),
            "--baseline",
            s(&d("eval_lr")),
            "--out",
            s(&with_base),
            "-q",
        ],
    );
    let base = &metrics(&with_base)["baseline"];
    assert_eq!(
        (base["only_a_right"].as_u64(), base["only_b_right"].as_u64()),
        (Some(only_a as u64), Some(only_b as u64))
    );
    assert!(std::fs::read_to_string(with_base.join("report.html")).unwrap().contains("Against the baseline"));

    let err = user_error("graft-evaluate", &["compare", s(&d("eval_lr")), s(&d("eval_val"))]);
    assert!(
        err.contains("eval_lr") && err.contains("eval_val") && err.contains("not predictions on the same rows"),
        "{err}"
    );
    // The Parquet copy an evaluation writes for SQL engines (or scored rows) is named as not
    // an evaluation's predictions, not as a corrupt Arrow file.
    let parquet = d("eval_lr").join("predictions.parquet");
    let err = user_error("graft-evaluate", &["compare", s(&d("eval_lr")), s(&parquet)]);
    assert!(
        err.contains("predictions.parquet` is not an evaluation's predictions") && !err.contains("corrupt"),
        "{err}"
    );
}

#[test]
fn fusion_averages_weights_and_votes_members_on_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let d = |n: &str| dir.path().join(n);
    let feats = d("features");
    let heads: [(&str, &[&str]); 3] = [
        ("a", &["--c", "0.1"]),
        ("b", &["--head", "mlp", "--hidden", "8", "--epochs", "4", "--seed", "1"]),
        ("c", &["--head", "mlp", "--hidden", "4", "--epochs", "2", "--seed", "2"]),
    ];
    for (name, extra) in heads {
        let head = d(name);
        let mut args = vec!["--features", s(&feats), "--out", s(&head), "-q"];
        args.extend_from_slice(extra);
        ok("graft-finetune", &args);
        for split in ["test", "val"] {
            let out = d(&format!("{name}_{split}"));
            ok(
                "graft-evaluate",
                &["--head", s(&head), "--features", s(&feats), "--split", split, "--out", s(&out), "-q"],
            );
        }
    }
    let members = [d("a_test"), d("b_test"), d("c_test")];
    let fuse = |out: &str, extra: &[&str]| {
        let mut args = vec!["fuse".to_owned(), s(&members[0]).into(), s(&members[1]).into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(["--out".to_owned(), s(&d(out)).into(), "-q".into()]);
        ok("graft-evaluate", &args);
        read_predictions(&d(out))
    };
    let (_, truth, _, pa) = read_predictions(&members[0]);
    let (_, _, _, pb) = read_predictions(&members[1]);
    let close = |got: &[Vec<f64>], want: &dyn Fn(usize, usize) -> f64| {
        for (i, row) in got.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert!((v - want(i, c)).abs() < 1e-12, "row {i} class {c}: {v} vs {}", want(i, c));
            }
        }
    };
    let (_, _, pred, mean) = fuse("mean", &[]);
    close(&mean, &|i, c| (pa[i][c] + pb[i][c]) / 2.0);
    let metrics: Value = serde_json::from_slice(&std::fs::read(d("mean/metrics.json")).unwrap()).unwrap();
    let correct = truth.iter().zip(&pred).filter(|(t, p)| t == p).count() as f64 / truth.len() as f64;
    assert!((metrics["metrics"]["accuracy"].as_f64().unwrap() - correct).abs() < 1e-12);
    assert!(std::fs::read_to_string(d("mean/report.html")).unwrap().contains("Fusion members"));

    let (_, _, _, weighted) = fuse("weighted", &["--method", "weighted", "--weights", "1,3"]);
    close(&weighted, &|i, c| (pa[i][c] + 3.0 * pb[i][c]) / 4.0);

    let val = format!("{},{}", s(&d("a_val")), s(&d("b_val")));
    fuse("fitted", &["--method", "weighted", "--val", &val]);
    let fitted: Value = serde_json::from_slice(&std::fs::read(d("fitted/metrics.json")).unwrap()).unwrap();
    let w: Vec<f64> = serde_json::from_value(fitted["fusion"]["weights"].clone()).unwrap();
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9 && w.iter().all(|v| (0.0..=1.0).contains(v)), "{w:?}");

    // Three members vote; a two-member vote could tie.
    let out = d("vote");
    ok(
        "graft-evaluate",
        &["fuse", s(&members[0]), s(&members[1]), s(&members[2]), "--method", "vote", "--out", s(&out), "-q"],
    );
    let (_, _, voted, _) = read_predictions(&out);
    let preds: Vec<Vec<String>> = members.iter().map(|m| read_predictions(m).2).collect();
    for (i, v) in voted.iter().enumerate() {
        let votes = preds.iter().filter(|p| p[i] == *v).count();
        assert!(votes >= 2, "row {i}: {v} has {votes} of 3 votes");
    }
}

#[test]
fn fusion_refuses_other_rows_bad_probabilities_and_wrong_weights() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let d = |n: &str| dir.path().join(n);
    ok("graft-finetune", &["--features", s(&d("features")), "--out", s(&d("h")), "--c", "1", "-q"]);
    for split in ["test", "val"] {
        let out = d(split);
        ok(
            "graft-evaluate",
            &["--head", s(&d("h")), "--features", s(&d("features")), "--split", split, "--out", s(&out), "-q"],
        );
    }
    let refused = |args: &[&str]| {
        let out = d("fused");
        let mut all = vec!["fuse"];
        all.extend_from_slice(args);
        all.extend(["--out", s(&out)]);
        let err = user_error("graft-evaluate", &all);
        assert!(files_in(&out).is_empty());
        err
    };
    let err = refused(&[s(&d("test")), s(&d("val"))]);
    assert!(err.contains("not predictions on the same rows"), "{err}");
    let err = refused(&[s(&d("test")), s(&d("test")), "--method", "weighted", "--weights", "1,2,3"]);
    assert!(err.contains("2 members need 2 non-negative weights"), "{err}");
    // Probabilities that do not sum to 1, and a label outside the label set.
    let (prov, truth, pred, proba) = read_predictions(&d("test"));
    let mut off = proba.clone();
    off[3][0] += 0.2;
    let bad = d("bad");
    write_predictions(&bad, &prov, &truth, &pred, &off);
    let mut unknown = pred.clone();
    unknown[5] = "maybe".into();
    write_predictions(&d("unknown"), &prov, &truth, &unknown, &proba);
    let err = refused(&[s(&d("test")), s(&d("unknown"))]);
    assert!(err.contains("unknown/predictions.arrow") && err.contains("row 5") && err.contains("`maybe`"), "{err}");
    let err = refused(&[s(&d("test")), s(&bad)]);
    assert!(err.contains("bad/predictions.arrow") && err.contains("row 3") && err.contains("do not sum to 1"), "{err}");
}

/// Writes `dir/predictions.arrow` with these rows, as graft-evaluate lays it out.
fn write_predictions(
    dir: &Path,
    prov: &graft_core::artifact::Provenance,
    truth: &[String],
    pred: &[String],
    proba: &[Vec<f64>],
) {
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("pred", DataType::Utf8, false),
    ];
    let ids: Vec<String> = (0..truth.len()).map(|i| format!("{i}")).collect();
    let mut columns: Vec<arrow::array::ArrayRef> = vec![
        Arc::new(arrow::array::StringArray::from(ids)),
        Arc::new(arrow::array::StringArray::from(truth.to_vec())),
        Arc::new(arrow::array::StringArray::from(pred.to_vec())),
    ];
    for (c, l) in prov.labels.iter().enumerate() {
        fields.push(Field::new(format!("prob_{l}"), DataType::Float64, false));
        columns.push(Arc::new(arrow::array::Float64Array::from(proba.iter().map(|p| p[c]).collect::<Vec<_>>())));
    }
    let schema = prov.attach(fields).unwrap();
    let batch = arrow::array::RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut w = graft_core::artifact::ArtifactWriter::create(&dir.join("predictions.arrow"), &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap().commit().unwrap();
}

/// `predictions.parquet` and `metrics.parquet`, read by pyarrow (no graft code), hold what
/// predictions.arrow and metrics.json hold.
fn parquet_copies_match(eval: &Path, metrics: &Value) {
    // The pinned environment `make test` builds (scripts/onnx-check-requirements.txt).
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.graft/onnx-check-venv/bin/python");
    assert!(python.is_file(), "{} missing: `make test` builds it", python.display());
    let script = r#"
import json, sys
import pyarrow.ipc as ipc, pyarrow.parquet as pq
d = sys.argv[1]
arrow = ipc.open_file(d + "/predictions.arrow").read_all()
parquet = pq.read_table(d + "/predictions.parquet")
assert parquet.column_names == arrow.column_names, (parquet.column_names, arrow.column_names)
assert parquet.to_pydict() == arrow.to_pydict()
metrics = pq.read_table(d + "/metrics.parquet")
assert metrics.schema.metadata[b"graft.format"] == b"graft-metrics-table/1", metrics.schema.metadata
rows = metrics.to_pylist()
print(json.dumps({(r["metric"] + ("/" + r["class"] if r["class"] else "")): [r["value"], r["low"], r["high"]] for r in rows}))
"#;
    let out = std::process::Command::new(python).args(["-c", script, s(eval)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table: Value = serde_json::from_slice(&out.stdout).unwrap();
    let interval = &metrics["intervals"]["metrics"]["accuracy"];
    assert_eq!(
        table["accuracy"],
        serde_json::json!([metrics["metrics"]["accuracy"], interval["low"], interval["high"]])
    );
    assert_eq!(table["log_loss"][0], metrics["probabilities"]["log_loss"]);
    let first = &metrics["metrics"]["per_class"][0];
    let key = format!("recall/{}", first["label"].as_str().unwrap());
    assert_eq!(table[key.as_str()][0], first["recall"]);
}

/// The best-threshold search scores val too: a val split from another feature space is
/// refused naming it, as the evaluated split would be, and nothing is written.
#[test]
fn a_foreign_val_split_is_refused() {
    let (dir, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    features(dir.path(), &[]);
    features(other.path(), &["--pooling", "cls"]);
    let d = |n: &str| dir.path().join(n);
    ok("graft-finetune", &["--features", s(&d("features")), "--out", s(&d("head")), "--c", "1", "-q"]);
    std::fs::copy(other.path().join("features/val.arrow"), d("features/val.arrow")).unwrap();
    let err = user_error(
        "graft-evaluate",
        &["--head", s(&d("head")), "--features", s(&d("features")), "--out", s(&d("eval"))],
    );
    assert!(err.contains("val.arrow") && err.contains("are not those head"), "{err}");
    assert!(!d("eval").exists());
}
