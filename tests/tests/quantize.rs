//! `scripts/quantize.py` on the tiny BERT, run by the pinned Python in `.graft/onnx-check-venv`:
//! the smoothing it calibrates leaves the float model's function unchanged (every hidden state,
//! through graft-backbone), the int8 model it writes stays close to float32 and keeps every
//! declared output, and a calibration file it cannot use is refused naming the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use graft_e2e::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn quantize(args: &[&str]) -> Output {
    let python = repo().join(".graft/onnx-check-venv/bin/python");
    assert!(python.is_file(), "{} missing: `make test` builds it (scripts/setup_onnx_check.sh)", python.display());
    Command::new(python).arg(repo().join("scripts/quantize.py")).args(args).output().unwrap()
}

/// The tiny spec with its model replaced by `model`.
fn spec_for(model: &Path, dir: &Path) -> PathBuf {
    let tokenizer = fixture("tiny/tokenizer.json");
    let text = std::fs::read_to_string(fixture("tiny/tiny.yaml"))
        .unwrap()
        .replace("model: model.onnx", &format!("model: {}", model.display()))
        .replace("tokenizer: tokenizer.json", &format!("tokenizer: {}", tokenizer.display()));
    let spec = dir.join(format!("{}.yaml", model.file_stem().unwrap().to_str().unwrap()));
    std::fs::write(&spec, text).unwrap();
    spec
}

/// Every layer's mean-pooled hidden state, concatenated, by id.
fn all_layers(spec: &Path, data: &Path, out: &Path) -> Rows<f32> {
    let outputs = "hidden_state_0,hidden_state_1,hidden_state_2,last_hidden_state";
    ok("graft-backbone", &["--spec", s(spec), "--input", s(data), "--out", s(out), "--outputs", outputs, "-q"]);
    read_features(&out.join("train.arrow")).1
}

#[test]
fn smoothing_keeps_the_function_and_int8_stays_close_to_float32() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    features(dir.path(), &[]);
    let (data, model) = (d("data"), fixture("tiny/model.onnx"));
    let calibration = data.join("train.arrow");
    let reference = all_layers(&fixture("tiny/tiny.yaml"), &data, &d("f32"));

    let smoothed = d("smoothed.onnx");
    let out = quantize(&[s(&model), s(&smoothed), "--calibrate", s(&calibration), "--smooth-only", "--rows", "64"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    // Each of the 2 layers has 4 weighted MatMul inputs (q/k/v share one); some were smoothed.
    assert_eq!(summary.lines().filter(|l| l.contains("int8 relative error")).count(), 8, "{summary}");
    assert!(summary.lines().any(|l| l.contains("alpha 0.") || l.contains("alpha 1.0")), "nothing smoothed: {summary}");
    assert_ne!(std::fs::read(&smoothed).unwrap(), std::fs::read(&model).unwrap());
    let got = all_layers(&spec_for(&smoothed, dir.path()), &data, &d("f32-smoothed"));
    assert_eq!(got.len(), reference.len());
    for (id, (_, want)) in &reference {
        let diff = want.iter().zip(&got[id].1).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "row {id}: smoothing changed the float model's output by {diff}");
    }

    let int8 = d("int8.onnx");
    let out = quantize(&[s(&model), s(&int8), "--calibrate", s(&calibration), "--rows", "64", "--keep-float", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let floats = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.ends_with("(float32)")).count();
    assert_eq!(floats, 1);
    let got = all_layers(&spec_for(&int8, dir.path()), &data, &d("int8"));
    let worst = reference
        .iter()
        .map(|(id, (_, want))| cosine(&got[id].1, &want.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()))
        .fold(1f64, f64::min);
    // Measured 0.9998 on this model; int8 that went wrong (a lost scale, a wrong channel) is far lower.
    assert!(worst > 0.995, "int8 features: minimum cosine to float32 {worst}");
    let graph = std::fs::read(&int8).unwrap();
    assert!(graph.windows(13).any(|w| w == b"MatMulInteger"), "no int8 MatMul in the graph");
}

#[test]
fn a_calibration_file_without_token_ids_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let model = fixture("tiny/model.onnx");
    let wrong = dir.path().join("features/train.arrow");
    let out = quantize(&[s(&model), s(&dir.path().join("int8.onnx")), "--calibrate", s(&wrong)]);
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(message.contains(s(&wrong)) && message.contains("input_ids"), "{message}");
    assert!(!dir.path().join("int8.onnx").exists());

    let missing = dir.path().join("nowhere.arrow");
    let out = quantize(&[s(&model), s(&dir.path().join("int8.onnx")), "--calibrate", s(&missing)]);
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(message.contains("nowhere.arrow") && message.contains("not found"), "{message}");
}
