//! Images end to end on the tiny fixture: a folder per class (with one unreadable file) and
//! a CSV of grey pixel rows, through preprocess and a tiny CNN backbone, checked against the
//! features numpy computes (tests/fixtures/tiny-images, made by scripts/make_fixtures.py).

use std::path::{Path, PathBuf};

use graft_e2e::*;
use serde_json::Value;

fn images(name: &str) -> PathBuf {
    fixture("tiny-images").join(name)
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(images("expected_features.json")).unwrap()).unwrap()
}

/// Every split's features, by id.
fn all(dir: &Path) -> Rows<f32> {
    let mut rows = Rows::new();
    for split in ["train", "val", "test"] {
        let path = dir.join(format!("{split}.arrow"));
        if path.exists() {
            rows.extend(read_features(&path).1);
        }
    }
    rows
}

fn assert_matches(got: &Rows<f32>, key: impl Fn(&str) -> String) {
    let expected = expected();
    for (id, (_, f)) in got {
        let want: Vec<f64> = serde_json::from_value(expected[key(id)].clone()).unwrap();
        let worst = f.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "{id}: max abs difference {worst} ({f:?} vs {want:?})");
    }
}

#[test]
fn image_folder_features_match_numpy_and_train_a_head() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let out = ok(
        "graft-preprocess",
        &[
            "--input",
            s(&images("folder")),
            "--spec",
            s(&spec),
            "--out",
            s(&d("data")),
            "--val-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("broken.png"), "the unreadable image is listed: {log}");
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    assert_eq!(got.len(), 20, "20 readable images");
    assert_matches(&got, str::to_owned);
    let (prov, _) = read_features(&d("features/train.arrow"));
    assert_eq!(prov.labels, ["cat", "dog"]);
    // The feature map, pooled by graft, gives the same vectors as the graph's own pooling.
    let (data, gap) = (d("data"), d("gap"));
    let args = [
        "--spec",
        s(&spec),
        "--input",
        s(&data),
        "--out",
        s(&gap),
        "--outputs",
        "feature_map",
        "--pooling",
        "gap",
        "-q",
    ];
    ok("graft-backbone", &args);
    assert_matches(&all(&d("gap")), str::to_owned);
    // And the features train a head like any others.
    ok("graft-finetune", &["--features", s(&d("features")), "--out", s(&d("head")), "--c", "1", "-q"]);
    ok("graft-evaluate", &["--head", s(&d("head")), "--features", s(&d("features")), "--out", s(&d("eval")), "-q"]);
    assert!(d("eval/report.html").is_file());
}

#[test]
fn pixel_rows_become_grey_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    ok("graft-preprocess", &["--input", s(&images("pixels.csv")), "--spec", s(&spec), "--out", s(&d("data")), "-q"]);
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    assert_eq!(got.len(), 12);
    assert_matches(&got, |id| format!("row/{id}"));
}

#[test]
fn strict_mode_fails_on_an_unreadable_image_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("data");
    let spec = images("tiny-cnn.yaml");
    let err = user_error(
        "graft-preprocess",
        &["--input", s(&images("folder")), "--spec", s(&spec), "--out", s(&out), "--strict"],
    );
    assert!(err.contains("broken.png"), "{err}");
    assert!(files_in(&out).is_empty());
    // A pixel CSV with a value out of range names its row.
    let csv = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(images("pixels.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut fields: Vec<&str> = lines[3].split(',').collect();
    fields[5] = "300";
    lines[3] = fields.join(",");
    std::fs::write(&csv, lines.join("\n") + "\n").unwrap();
    let err = user_error("graft-preprocess", &["--input", s(&csv), "--spec", s(&spec), "--out", s(&out)]);
    assert!(err.contains("bad.csv") && err.contains("data row 2") && err.contains("`300`"), "{err}");
}
