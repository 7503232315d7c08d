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
    let (head, features, eval) = (d("head"), d("features"), d("eval"));
    let args = ["--head", s(&head), "--features", s(&features), "--data", s(&data), "--out", s(&eval), "-q"];
    ok("graft-evaluate", &args);
    // Each wrong prediction shown carries its image: as many thumbnails as wrong rows shown
    // (five per pair of classes at most), counted here from predictions.arrow.
    let html = std::fs::read_to_string(d("eval/report.html")).unwrap();
    let mut reader = graft_core::artifact::ArtifactReader::open(&d("eval/predictions.arrow")).unwrap();
    let mut pairs = std::collections::BTreeMap::<(String, String), usize>::new();
    while let Some(b) = reader.next_batch().unwrap() {
        let col = |n: &str| {
            b.column_by_name(n).unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap().clone()
        };
        let (truth, pred) = (col("label"), col("pred"));
        for i in 0..b.num_rows() {
            if truth.value(i) != pred.value(i) {
                *pairs.entry((truth.value(i).into(), pred.value(i).into())).or_default() += 1;
            }
        }
    }
    let shown: usize = pairs.values().map(|&n| n.min(5)).sum();
    assert_eq!(html.matches("<img class=\"thumb\"").count(), shown, "{pairs:?}");
    assert_eq!(html.matches("src=\"data:image/png;base64,").count(), shown);
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

#[test]
fn augmented_views_stay_in_train_keep_their_id_and_are_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let preprocess = |out: &str| {
        let out = d(out);
        ok(
            "graft-preprocess",
            &[
                "--input",
                s(&images("folder")),
                "--spec",
                s(&spec),
                "--out",
                s(&out),
                "--val-fraction",
                "0.2",
                "--test-fraction",
                "0.2",
                "--augment-views",
                "2",
                "--augment-pad",
                "1",
                "--augment-flip",
                "-q",
            ],
        );
    };
    preprocess("data");
    preprocess("again");
    // The same rows, views and pixels (the metadata differs only by the output folder).
    let columns = |path: PathBuf| {
        let mut r = graft_core::artifact::ArtifactReader::open(&path).unwrap();
        let mut data = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            data.extend(b.columns().iter().map(|c| c.to_data()));
        }
        data
    };
    for split in ["train", "val", "test"] {
        let name = format!("{split}.arrow");
        assert!(columns(d("data").join(&name)) == columns(d("again").join(&name)), "{split} reproducible");
    }
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    // Per split: (id, view) of every row, from the features file.
    let views = |split: &str| -> Vec<(String, i32)> {
        let path = d("features").join(format!("{split}.arrow"));
        let mut r = graft_core::artifact::ArtifactReader::open(&path).unwrap();
        let mut out = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            let ids = graft_core::artifact::column::<arrow::array::StringArray>(&b, "id", &path, "").unwrap();
            let view = graft_core::artifact::column::<arrow::array::Int32Array>(&b, "view", &path, "").unwrap();
            out.extend((0..b.num_rows()).map(|i| (ids.value(i).to_owned(), view.value(i))));
        }
        out
    };
    let train = views("train");
    let originals: Vec<&String> = train.iter().filter(|(_, v)| *v == 0).map(|(id, _)| id).collect();
    assert_eq!(train.len(), 3 * originals.len());
    for id in &originals {
        let mut v: Vec<i32> = train.iter().filter(|(i, _)| i == *id).map(|(_, v)| *v).collect();
        v.sort();
        assert_eq!(v, [0, 1, 2], "{id}");
    }
    for split in ["val", "test"] {
        let rows = views(split);
        assert!(!rows.is_empty() && rows.iter().all(|(_, v)| *v == 0), "{split} has no augmented rows");
        assert!(rows.iter().all(|(id, _)| !originals.contains(&id)), "{split} shares no image with train");
    }
    // View 0 is the untouched image: its features are numpy's.
    let expected = expected();
    let (_, rows) = read_features(&d("features/val.arrow"));
    for (id, (_, f)) in rows {
        let want: Vec<f64> = serde_json::from_value(expected[&id].clone()).unwrap();
        assert!(f.iter().zip(&want).all(|(a, b)| (f64::from(*a) - b).abs() < 1e-4), "{id}");
    }
}

#[test]
fn a_table_of_image_paths_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    // Absolute paths to six fixture images and the unreadable one.
    let mut csv = String::from("file,kind\n");
    for (label, n) in [("cat", 0), ("cat", 1), ("cat", 2), ("dog", 0), ("dog", 1), ("dog", 2)] {
        csv.push_str(&format!("{},{label}\n", s(&images(&format!("folder/{label}/{n:02}.png")))));
    }
    csv.push_str(&format!("{},dog\n", s(&images("folder/dog/broken.png"))));
    std::fs::write(d("list.csv"), csv).unwrap();
    ok(
        "graft-preprocess",
        &[
            "--input",
            s(&d("list.csv")),
            "--path-column",
            "file",
            "--label-column",
            "kind",
            "--spec",
            s(&spec),
            "--out",
            s(&d("data")),
            "--val-fraction",
            "0",
            "--test-fraction",
            "0",
            "-q",
        ],
    );
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    assert_eq!(got.len(), 6, "six readable images, the broken one skipped");
    // Ids are the paths: the fixture key is their last two components.
    assert_matches(&got, |id| {
        let p = Path::new(id);
        format!(
            "{}/{}",
            p.parent().unwrap().file_name().unwrap().to_str().unwrap(),
            p.file_name().unwrap().to_str().unwrap()
        )
    });
}

#[test]
fn channels_last_models_get_channels_last_pixels() {
    // The same CNN behind a transpose, fed NHWC pixels: the features are numpy's again.
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn-nhwc.yaml");
    ok("graft-preprocess", &["--input", s(&images("folder")), "--spec", s(&spec), "--out", s(&d("data")), "-q"]);
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    assert_eq!(got.len(), 20);
    assert_matches(&got, str::to_owned);
}
