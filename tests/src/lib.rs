//! Helpers for end-to-end tests: the built binaries, the committed fixtures, and reading
//! what the stages wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeListArray, Float32Array, ListArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field};
use graft_core::artifact::{ArtifactReader, ArtifactWriter, Provenance, column};

/// Rows of a split by id: (label, values).
pub type Rows<T> = BTreeMap<String, (String, Vec<T>)>;

/// A path as the `&str` an argument list wants.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `scripts/import_encoder.py` (the pinned Python of `.graft/onnx-check-venv`) on the Hugging
/// Face folder `model_dir`, writing `dir/{name}` and its spec `dir/{name}.yaml`.
pub fn import_encoder(model_dir: &Path, dir: &Path, name: &str) -> Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
    let python = repo.join(".graft/onnx-check-venv/bin/python");
    assert!(python.is_file(), "{} missing: `make test` builds it (scripts/setup_onnx_check.sh)", python.display());
    let (out, spec) = (dir.join(name), dir.join(format!("{name}.yaml")));
    Command::new(python)
        .arg(repo.join("scripts/import_encoder.py"))
        .args(["--model-dir", s(model_dir), "--out", s(&out), "--spec", s(&spec)])
        .output()
        .unwrap()
}

/// preprocess + backbone on the fixture reviews into `dir/data` and `dir/features`; extra
/// backbone flags appended.
pub fn features(dir: &Path, backbone_args: &[&str]) {
    let spec = fixture("tiny/tiny.yaml");
    let data = dir.join("data");
    ok(
        "graft-preprocess",
        &["--input", s(&fixture("tiny/reviews.csv")), "--spec", s(&spec), "--out", s(&data), "--id-column", "id", "-q"],
    );
    let out = dir.join("features");
    let mut args = vec!["--spec", s(&spec), "--input", s(&data), "--out", s(&out), "-q"];
    args.extend_from_slice(backbone_args);
    ok("graft-backbone", &args);
}

/// A sweep over pooling x C with shared stages, its outputs under `ROOT/run`.
pub fn sweep_pipeline(root: &Path) -> PathBuf {
    std::fs::copy(fixture("tiny/reviews.csv"), root.join("reviews.csv")).unwrap();
    let yaml = format!(
        r#"version: 1
params: {{run: run, spec: "{spec}"}}
matrix:
  pooling: [mean, cls]
  c: [0.1, 10]
stages:
  preprocess:
    cmd: graft-preprocess
    args: {{input: reviews.csv, spec: "${{params.spec}}", id_column: id, out: "${{params.run}}/data"}}
    deps: [reviews.csv]
    outs: ["${{params.run}}/data"]
  backbone:
    cmd: graft-backbone
    args: {{spec: "${{params.spec}}", input: "${{params.run}}/data", pooling: "${{matrix.pooling}}", out: "${{params.run}}/features-${{matrix.pooling}}"}}
    deps: ["${{params.run}}/data"]
    outs: ["${{params.run}}/features-${{matrix.pooling}}"]
  finetune:
    cmd: graft-finetune
    args: {{features: "${{params.run}}/features-${{matrix.pooling}}", c: "${{matrix.c}}", out: "${{params.run}}/head-${{matrix.pooling}}-${{matrix.c}}"}}
    deps: ["${{params.run}}/features-${{matrix.pooling}}"]
    outs: ["${{params.run}}/head-${{matrix.pooling}}-${{matrix.c}}"]
  evaluate:
    cmd: graft-evaluate
    args: {{head: "${{params.run}}/head-${{matrix.pooling}}-${{matrix.c}}", features: "${{params.run}}/features-${{matrix.pooling}}", out: "${{params.run}}/eval-${{matrix.pooling}}-${{matrix.c}}"}}
    deps: ["${{params.run}}/head-${{matrix.pooling}}-${{matrix.c}}", "${{params.run}}/features-${{matrix.pooling}}"]
    outs: ["${{params.run}}/eval-${{matrix.pooling}}-${{matrix.c}}"]
"#,
        spec = s(&fixture("tiny/tiny.yaml"))
    );
    let path = root.join("sweep.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Writes a features file with the given provenance and rows `(id, label, features)`, as
/// graft-backbone lays it out; for crafting bad inputs.
pub fn write_features(path: &Path, provenance: &Provenance, rows: &[(String, String, Vec<f32>)]) {
    let dim = rows.first().map_or(0, |r| r.2.len());
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("features", DataType::FixedSizeList(item.clone(), dim as i32), false),
    ];
    let schema = provenance.attach(fields).unwrap();
    let values = Float32Array::from(rows.iter().flat_map(|r| r.2.iter().copied()).collect::<Vec<f32>>());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.as_str()))),
        Arc::new(FixedSizeListArray::new(item, dim as i32, Arc::new(values), None)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut w = ArtifactWriter::create(path, &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap().commit().unwrap();
}

/// `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// A stage binary from the same build as this test (`make test` builds them first).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "`{}` is not built: run `cargo build --release --workspace --bins` (or `make test`)",
        path.display()
    );
    path
}

/// Runs a binary, returning its output; the test's own environment is inherited.
pub fn run<A: AsRef<std::ffi::OsStr>>(name: &str, args: &[A]) -> Output {
    Command::new(bin(name)).args(args).output().expect("spawn binary")
}

/// Runs a binary and asserts success, showing stderr otherwise.
pub fn ok<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(name: &str, args: &[A]) -> Output {
    let out = run(name, args);
    assert!(out.status.success(), "{name} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs a binary, asserting success; returns its peak resident memory in MB (the kernel's
/// high-water mark, read every 2 ms until it exits).
pub fn peak_rss_mb<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(name: &str, args: &[A]) -> f64 {
    let mut child = Command::new(bin(name))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn binary");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().split(' ').next()?.parse().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert!(status.success(), "{name} {args:?} failed");
    peak_kb as f64 / 1024.0
}

/// Runs a binary that must fail with exit code 1; returns its stderr.
pub fn user_error<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(name: &str, args: &[A]) -> String {
    let out = run(name, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{name} {args:?}: expected exit 1, stderr:\n{stderr}");
    stderr
}

/// Files in `dir` (none when it does not exist), temporary ones included.
pub fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The features file's rows: id -> (label, features).
pub fn read_features(path: &Path) -> (Provenance, Rows<f32>) {
    let mut r = ArtifactReader::open(path).unwrap();
    let mut rows = BTreeMap::new();
    while let Some(b) = r.next_batch().unwrap() {
        let ids = column::<StringArray>(&b, "id", path, "").unwrap();
        let labels = column::<StringArray>(&b, "label", path, "").unwrap();
        let feats = column::<FixedSizeListArray>(&b, "features", path, "").unwrap();
        for i in 0..b.num_rows() {
            let v = feats.value(i);
            let v = v.as_any().downcast_ref::<Float32Array>().unwrap().values().to_vec();
            rows.insert(ids.value(i).to_owned(), (labels.value(i).to_owned(), v));
        }
    }
    (r.provenance().clone(), rows)
}

/// A tokenised split's rows: id -> (label, token ids).
pub fn read_tokens(path: &Path) -> (Provenance, Rows<i32>) {
    let mut r = ArtifactReader::open(path).unwrap();
    let mut rows = BTreeMap::new();
    while let Some(b) = r.next_batch().unwrap() {
        let ids = column::<StringArray>(&b, "id", path, "").unwrap();
        let labels = column::<StringArray>(&b, "label", path, "").unwrap();
        let tokens = column::<ListArray>(&b, "input_ids", path, "").unwrap();
        for i in 0..b.num_rows() {
            let t = tokens.value(i);
            let t = t.as_any().downcast_ref::<arrow::array::Int32Array>().unwrap().values().to_vec();
            rows.insert(ids.value(i).to_owned(), (labels.value(i).to_owned(), t));
        }
    }
    (r.provenance().clone(), rows)
}

pub fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Label, pred and the probability columns of an evaluation folder's `predictions.arrow`.
pub fn read_predictions(path: &Path) -> (graft_core::artifact::Provenance, Vec<String>, Vec<String>, Vec<Vec<f64>>) {
    let path = path.join("predictions.arrow");
    let mut r = graft_core::artifact::ArtifactReader::open(&path).unwrap();
    let prov = r.provenance().clone();
    let b = r.next_batch().unwrap().unwrap();
    let text = |n: &str| {
        let c = graft_core::artifact::column::<arrow::array::StringArray>(&b, n, &path, "").unwrap();
        (0..b.num_rows()).map(|i| c.value(i).to_owned()).collect::<Vec<_>>()
    };
    let proba: Vec<Vec<f64>> = (0..b.num_rows())
        .map(|i| {
            prov.labels
                .iter()
                .map(|l| {
                    graft_core::artifact::column::<arrow::array::Float64Array>(&b, &format!("prob_{l}"), &path, "")
                        .unwrap()
                        .value(i)
                })
                .collect()
        })
        .collect();
    (prov.clone(), text("label"), text("pred"), proba)
}
