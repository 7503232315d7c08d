//! `graft-backbone export`: a bundle as one ONNX model, run by the Python onnxruntime package
//! (pinned, installed into `.graft/onnx-check-venv` by `make test`) with no graft code, gives
//! graft's own predictions on padded batches: multi-layer text features with a
//! temperature-scaled head, an MLP head on standardised features, max and mean-and-max
//! pooling, and an image model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, Float64Array, Int32Array, ListArray, StringArray};
use graft_core::artifact::ArtifactReader;
use graft_e2e::*;
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Runs `model` on `feeds` in Python onnxruntime (or, for an MLflow folder, through
/// `mlflow.pyfunc.load_model`); returns each feed's outputs and the metadata.
fn onnxruntime(model: &Path, feeds: &Value, dir: &Path) -> Value {
    let python = repo().join(".graft/onnx-check-venv/bin/python");
    assert!(python.is_file(), "{} missing: `make test` builds it (scripts/setup_onnx_check.sh)", python.display());
    let (feeds_path, out_path) = (dir.join("feeds.json"), dir.join("outputs.json"));
    std::fs::write(&feeds_path, feeds.to_string()).unwrap();
    let mut command = Command::new(python);
    command.arg(repo().join("scripts/run_onnx.py"));
    if model.is_dir() {
        command.arg("--mlflow");
    }
    let status = command.args([model, &feeds_path, &out_path]).status().unwrap();
    assert!(status.success());
    serde_json::from_slice(&std::fs::read(out_path).unwrap()).unwrap()
}

/// Evaluate's probabilities by id.
fn evaluated(eval: &Path) -> BTreeMap<String, Vec<f64>> {
    let mut r = ArtifactReader::open(&eval.join("predictions.arrow")).unwrap();
    let labels = r.provenance().labels.clone();
    let mut out = BTreeMap::new();
    while let Some(b) = r.next_batch().unwrap() {
        let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let probs: Vec<Float64Array> = labels
            .iter()
            .map(|l| {
                b.column_by_name(&format!("prob_{l}")).unwrap().as_any().downcast_ref::<Float64Array>().unwrap().clone()
            })
            .collect();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_owned(), probs.iter().map(|p| p.value(i)).collect());
        }
    }
    out
}

/// Exports `model` (as one ONNX file, or as an MLflow model folder with `mlflow`) and checks
/// its probabilities on each `(ids, feed)` (a batch, its rows' ids in order) against `expected`.
fn assert_parity(
    model: &Path,
    feeds: Vec<(Vec<String>, Value)>,
    expected: &BTreeMap<String, Vec<f64>>,
    dir: &Path,
    mlflow: bool,
) {
    let exported = dir.join(if mlflow { "mlflow-model" } else { "model.onnx" });
    let format = if mlflow { "mlflow" } else { "onnx" };
    ok("graft-backbone", &["export", "--bundle", s(model), "--out", s(&exported), "--format", format]);
    let (batches, feeds): (Vec<Vec<String>>, Vec<Value>) = feeds.into_iter().unzip();
    let result = onnxruntime(&exported, &Value::Array(feeds), dir);
    let labels: Vec<String> = serde_json::from_str(result["metadata"]["graft.labels"].as_str().unwrap()).unwrap();
    // The outputs' names: `embedding`, or `graft_embedding` where the backbone has its own.
    let names: Vec<String> = serde_json::from_str(result["metadata"]["graft.outputs"].as_str().unwrap()).unwrap();
    let embedding = &names[1];
    assert!(embedding == "embedding" || embedding == "graft_embedding", "{names:?}");
    assert_eq!(labels.len(), expected.values().next().unwrap().len());
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), expected.len());
    for (ids, out) in batches.iter().zip(result["outputs"].as_array().unwrap()) {
        for (row, id) in ids.iter().enumerate() {
            let got: Vec<f64> = serde_json::from_value(out["probabilities"][row].clone()).unwrap();
            let want = &expected[id];
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "{id}: onnxruntime {got:?}, graft {want:?}");
            }
            let argmax = |v: &[f64]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
            assert_eq!(argmax(&got), argmax(want), "{id}: the same predicted label");
            let dim = out[embedding.as_str()][row].as_array().unwrap().len();
            assert!(dim > 0);
        }
    }
}

/// Batches of up to four rows in file order, each padded to its longest row (id 0, mask 0),
/// so pooling must ignore the padding as graft does.
fn text_feeds(split: &Path) -> Vec<(Vec<String>, Value)> {
    let mut r = ArtifactReader::open(split).unwrap();
    let mut rows: Vec<(String, Vec<i64>)> = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        let lists = b.column_by_name("input_ids").unwrap().as_any().downcast_ref::<ListArray>().unwrap().clone();
        for i in 0..b.num_rows() {
            let v = lists.value(i);
            let tokens = v.as_any().downcast_ref::<Int32Array>().unwrap().values().iter().map(|&t| i64::from(t));
            rows.push((ids.value(i).to_owned(), tokens.collect()));
        }
    }
    let mut padded = 0;
    let feeds: Vec<(Vec<String>, Value)> = rows
        .chunks(4)
        .map(|batch| {
            let width = batch.iter().map(|(_, t)| t.len()).max().unwrap();
            let (mut ids, mut mask) = (Vec::new(), Vec::new());
            for (_, tokens) in batch {
                padded += width - tokens.len();
                ids.extend(tokens.iter().copied().chain(std::iter::repeat_n(0, width - tokens.len())));
                mask.extend((0..width).map(|t| i64::from(t < tokens.len())));
            }
            let shape = json!([batch.len(), width]);
            let tensor = |data: Vec<i64>| json!({"dtype": "int64", "shape": shape, "data": data});
            let feed = json!({
                "input_ids": tensor(ids),
                "attention_mask": tensor(mask),
                "token_type_ids": tensor(vec![0; batch.len() * width]),
            });
            (batch.iter().map(|(id, _)| id.clone()).collect(), feed)
        })
        .collect();
    assert!(padded > 0, "some rows are padded");
    feeds
}

fn train_evaluate_bundle(dir: &Path, spec: &Path, finetune: &[&str]) -> PathBuf {
    let (data, feats, head, eval, model) =
        (dir.join("data"), dir.join("features"), dir.join("head"), dir.join("eval"), dir.join("model"));
    let mut args = vec!["--features", s(&feats), "--out", s(&head), "-q"];
    args.extend_from_slice(finetune);
    ok("graft-finetune", &args);
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "-q"]);
    ok(
        "graft-evaluate",
        &["bundle", "--head", s(&head), "--spec", s(spec), "--data", s(&data), "--eval", s(&eval), "--out", s(&model)],
    );
    model
}

#[test]
fn exported_text_models_match_graft_in_python_onnxruntime() {
    let spec = fixture("tiny/tiny.yaml");
    // Two layers concatenated and L2-normalised; logistic regression with a fitted temperature.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    features(d, &["--outputs", "hidden_state_1,hidden_state_2", "--normalize", "true"]);
    let model = train_evaluate_bundle(d, &spec, &["--c", "1", "--calibrate"]);
    let info: Value = serde_json::from_slice(&std::fs::read(model.join("head/head.json")).unwrap()).unwrap();
    assert_ne!(info["temperature"], 1.0, "the head is temperature-scaled");
    let expected = evaluated(&d.join("eval"));
    assert_parity(&model, text_feeds(&d.join("data/test.arrow")), &expected, d, false);
    // The same model as an MLflow model, loaded by `mlflow.pyfunc.load_model`.
    assert_parity(&model, text_feeds(&d.join("data/test.arrow")), &expected, d, true);

    // An MLP with GELU on standardised, mean-combined layers.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    features(d, &["--outputs", "hidden_state_1,last_hidden_state", "--combine", "mean"]);
    let args = ["--head", "mlp", "--hidden", "8", "--activation", "gelu", "--epochs", "5", "--standardize"];
    let model = train_evaluate_bundle(d, &spec, &args);
    assert_parity(&model, text_feeds(&d.join("data/test.arrow")), &evaluated(&d.join("eval")), d, false);

    // Max and mean-and-max pooling, which must skip the padding of the batch.
    for pooling in ["max", "mean_max"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        features(d, &["--outputs", "hidden_state_1,last_hidden_state", "--pooling", pooling]);
        let model = train_evaluate_bundle(d, &spec, &["--c", "1"]);
        assert_parity(&model, text_feeds(&d.join("data/test.arrow")), &evaluated(&d.join("eval")), d, false);
    }
}

#[test]
fn an_exported_image_model_matches_graft_in_python_onnxruntime() {
    // The graph's pooled output, and its feature map pooled by graft (global average).
    for backbone_args in [&[][..], &["--outputs", "feature_map", "--pooling", "gap"][..]] {
        image_parity(backbone_args);
    }
}

fn image_parity(backbone_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = fixture("tiny-images/tiny-cnn.yaml");
    let folder = fixture("tiny-images/folder");
    let data = d.join("data");
    let args = [
        "--input",
        s(&folder),
        "--spec",
        s(&spec),
        "--out",
        s(&data),
        "--val-fraction",
        "0.2",
        "--test-fraction",
        "0.2",
        "-q",
    ];
    ok("graft-preprocess", &args);
    let features = d.join("features");
    ok(
        "graft-backbone",
        &[&["--spec", s(&spec), "--input", s(&data), "--out", s(&features), "-q"][..], backbone_args].concat(),
    );
    let model = train_evaluate_bundle(d, &spec, &["--c", "1"]);
    // The test images as the model's input (view 0: resized, cropped, normalised).
    let image_spec = graft_core::spec::BackboneSpec::load(&spec).unwrap().image().clone();
    let mut r = ArtifactReader::open(&data.join("test.arrow")).unwrap();
    let mut feeds = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        let ids = b.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap().clone();
        for i in 0..b.num_rows() {
            let bytes = std::fs::read(folder.join(ids.value(i))).unwrap();
            let mut data = vec![0f32; 3 * 8 * 8];
            graft_imaging::views_into(&bytes, &image_spec, ids.value(i), &[0], 0, &Default::default(), &mut data)
                .unwrap();
            let feed = json!({"image": {"dtype": "float32", "shape": [1, 3, 8, 8], "data": data}});
            feeds.push((vec![ids.value(i).to_owned()], feed));
        }
    }
    assert_parity(&model, feeds, &evaluated(&d.join("eval")), d, false);
}
