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

/// The fixture folder's 20 readable images split 60/20/20 into `out` by graft-preprocess.
fn split_folder(out: &Path, extra: &[&str]) -> std::process::Output {
    let (folder, spec) = (images("folder"), images("tiny-cnn.yaml"));
    let args = ["--input", s(&folder), "--spec", s(&spec), "--out", s(out)];
    ok("graft-preprocess", &[&args[..], &["--val-fraction", "0.2", "--test-fraction", "0.2"], extra].concat())
}

#[test]
fn image_folder_features_match_numpy_and_train_a_head() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let out = split_folder(&d("data"), &[]);
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("broken.png"), "the unreadable image is listed: {log}");
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    assert_eq!(got.len(), 20, "20 readable images");
    assert_matches(&got, str::to_owned);
    // One session, or sessions side by side in batches of three (the last ones cut smaller),
    // of one thread or two: the same features, exactly.
    for (sessions, threads) in [("1", "2"), ("3", "3"), ("2", "4")] {
        let (data, out) = (d("data"), d(&format!("sessions{sessions}")));
        let args = ["--spec", s(&spec), "--input", s(&data), "--out", s(&out), "--batch-size", "3", "-q"];
        ok("graft-backbone", &[&args[..], &["--sessions", sessions, "--threads", threads]].concat());
        assert_eq!(all(&out), got, "{sessions} session(s)");
    }
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

    // The same rows tab-separated give the same features; a Parquet of them is no pixel table.
    let tsv = std::fs::read_to_string(images("pixels.csv")).unwrap().replace(',', "\t");
    std::fs::write(d("pixels.tsv"), tsv).unwrap();
    ok("graft-preprocess", &["--input", s(&d("pixels.tsv")), "--spec", s(&spec), "--out", s(&d("tsv")), "-q"]);
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("tsv")), "--out", s(&d("tsv-features")), "-q"]);
    assert_eq!(all(&d("tsv-features")), got);
    std::fs::write(d("pixels.parquet"), b"PAR1").unwrap();
    let err =
        user_error("graft-preprocess", &["--input", s(&d("pixels.parquet")), "--spec", s(&spec), "--out", s(&d("x"))]);
    assert!(
        err.contains("pixels.parquet`: expected a folder of class folders") && err.contains("--path-column"),
        "{err}"
    );
    let err = user_error("graft-preprocess", &["--input", s(&d("gone.csv")), "--spec", s(&spec), "--out", s(&d("x"))]);
    assert!(err.contains("cannot read `") && err.contains("gone.csv`"), "{err}");
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
    // No pixels on disk: each row names its image (path and blake3), a hundred-odd bytes.
    let bytes: u64 = ["train", "val", "test"]
        .iter()
        .map(|p| std::fs::metadata(d("data").join(format!("{p}.arrow"))).unwrap().len())
        .sum();
    assert!(bytes < 20 * 1024, "{bytes} bytes for 60 rows");
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    // The backbone augments; seeded by (seed, id, view), a second run gives the same features.
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features2")), "-q"]);
    assert!(
        columns(d("features/train.arrow")) == columns(d("features2/train.arrow")),
        "augmented features reproducible"
    );
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
    // Augmented views are not the image: rows of one id carry different features.
    let path = d("features/train.arrow");
    let mut r = graft_core::artifact::ArtifactReader::open(&path).unwrap();
    let mut by_id: std::collections::BTreeMap<String, Vec<Vec<f32>>> = Default::default();
    while let Some(b) = r.next_batch().unwrap() {
        let f = graft_core::columns::Features::of(&b, 4, &path).unwrap();
        for i in 0..b.num_rows() {
            by_id.entry(f.ids.value(i).to_owned()).or_default().push(f.row(i).to_vec());
        }
    }
    assert!(by_id.values().all(|v| v.len() == 3) && by_id.values().any(|v| v[0] != v[1] && v[1] != v[2]));
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
    csv.push_str(" ,cat\n");
    std::fs::write(d("list.csv"), csv).unwrap();
    let prep = run(
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
        ],
    );
    let log = String::from_utf8_lossy(&prep.stderr);
    assert!(prep.status.success(), "{log}");
    // The row without a path is counted, not skipped unseen; the broken image is listed.
    assert!(log.contains("read 8 rows; dropped {\"missing path\": 1}"), "{log}");
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

/// A folder with the fixture's cats and the odd images as a second class, plus a symlink
/// loop and a PNG with one byte changed.
fn odd_folder(d: &Path) -> PathBuf {
    let input = d.join("in");
    for class in ["cat", "odd"] {
        std::fs::create_dir_all(input.join(class)).unwrap();
    }
    for entry in std::fs::read_dir(images("folder/cat")).unwrap().chain(std::fs::read_dir(images("odd")).unwrap()) {
        let path = entry.unwrap().path();
        let class = if path.starts_with(images("odd")) { "odd" } else { "cat" };
        std::fs::copy(&path, input.join(class).join(path.file_name().unwrap())).unwrap();
    }
    std::os::unix::fs::symlink("loop.png", input.join("odd/loop.png")).unwrap();
    // Bit rot: one changed byte inside a PNG's pixel data.
    let mut rotted = std::fs::read(images("folder/cat/00.png")).unwrap();
    let idat = rotted.windows(4).position(|w| w == b"IDAT").unwrap();
    rotted[idat + 8] ^= 0x04;
    std::fs::write(input.join("odd/rotted.png"), rotted).unwrap();
    input
}

#[test]
fn odd_images_are_scored_and_truncated_looping_or_huge_ones_listed() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let input = odd_folder(dir.path());
    let args = ["--input", s(&input), "--spec", s(&spec), "--val-fraction", "0", "--test-fraction", "0", "--out"];
    let log =
        String::from_utf8_lossy(&ok("graft-preprocess", &[&args[..], &[s(&d("data"))]].concat()).stderr).into_owned();
    for skipped in ["odd/truncated.jpg", "odd/loop.png", "odd/huge.png", "odd/rotted.png"] {
        assert!(log.contains(skipped), "{skipped} is listed: {log}");
    }
    assert!(log.contains("40000 x 40000 is too large to decode"), "{log}");
    assert!(log.contains("rotted.png: chunk `IDAT` at byte 33 does not match its CRC"), "{log}");
    // With --strict the first of them fails the run, named, and nothing is written.
    let err = user_error("graft-preprocess", &[&args[..], &[s(&d("strict")), "--strict"]].concat());
    assert!(err.contains("odd/huge.png") && err.contains("too large"), "the first in name order: {err}");
    assert!(!d("strict/train.arrow").exists());
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    assert_eq!(got.len(), 10 + 4, "ten cats and four odd images scored");
    // Alpha dropped, 16 bits rounded to 8, a single pixel spread: numpy's features within
    // 1e-4. CMYK: Pillow's conversion to RGB, within 1e-2 (the two JPEG decoders' rounding).
    let exact: Rows<f32> = got
        .iter()
        .filter(|(id, _)| id.starts_with("odd/") && !id.ends_with(".jpg"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(exact.len(), 3);
    assert_matches(&exact, str::to_owned);
    let want: Vec<f64> = serde_json::from_value(expected()["odd/cmyk.jpg"].clone()).unwrap();
    let cmyk = &got["odd/cmyk.jpg"].1;
    assert!(cmyk.iter().zip(&want).all(|(a, b)| (f64::from(*a) - b).abs() < 1e-2), "{cmyk:?} vs {want:?}");
}

#[test]
fn an_image_that_makes_the_decoder_panic_fails_the_run_naming_it() {
    // Sound header and end, so preprocess takes it; the JPEG decoder panics on its scans.
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let input = d("in");
    for class in ["cat", "odd"] {
        std::fs::create_dir_all(input.join(class)).unwrap();
    }
    std::fs::copy(images("folder/cat/00.png"), input.join("cat/00.png")).unwrap();
    std::fs::copy(images("hostile.jpg"), input.join("odd/hostile.jpg")).unwrap();
    let args = ["--input", s(&input), "--spec", s(&spec), "--val-fraction", "0", "--test-fraction", "0", "-q"];
    ok("graft-preprocess", &[&args[..], &["--out", s(&d("data"))]].concat());
    let err = user_error("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features"))]);
    assert!(err.contains("odd/hostile.jpg cannot be decoded: the decoder failed on it ("), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "no panic report: {err}");
    assert!(!d("features/train.arrow").exists());
}

#[test]
fn a_changed_image_or_a_path_leaving_the_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let input = odd_folder(dir.path());
    let prep = |input: &Path, out: &Path, extra: &[&str]| {
        let args = [
            "--input",
            s(input),
            "--spec",
            s(&spec),
            "--val-fraction",
            "0",
            "--test-fraction",
            "0",
            "--out",
            s(out),
            "-q",
        ];
        run("graft-preprocess", &[&args[..], extra].concat())
    };
    assert!(prep(&input, &d("data"), &[]).status.success());
    // The image changes after preprocess read it: the backbone refuses, naming it.
    std::fs::copy(images("folder/dog/00.png"), input.join("cat/03.png")).unwrap();
    let err = user_error("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features"))]);
    assert!(err.contains("cat/03.png") && err.contains("changed since graft-preprocess"), "{err}");
    assert!(!d("features/train.arrow").exists());
    // A table whose path climbs out of its folder: listed and skipped, or refused with --strict.
    let table = input.join("list.csv");
    std::fs::write(&table, "file,label\ncat/00.png,cat\n../escape.png,cat\nodd/dot.png,odd\nodd/alpha.png,odd\n")
        .unwrap();
    std::fs::copy(images("folder/cat/01.png"), dir.path().join("escape.png")).unwrap();
    let out = prep(&table, &d("table"), &["--path-column", "file"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("../escape.png") && log.contains("leaves the image folder"), "{log}");
    let err = user_error(
        "graft-preprocess",
        &["--input", s(&table), "--path-column", "file", "--spec", s(&spec), "--out", s(&d("strict")), "--strict"],
    );
    assert!(err.contains("../escape.png") && err.contains("leaves the image folder"), "{err}");
}

#[test]
fn images_with_a_numeric_target_train_a_regression_head() {
    // A table of the fixture's images whose target is the red minus the blue channel's
    // mean: cats (red) high, dogs (blue) low. Ridge on the CNN's features recovers it.
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    let mut csv = String::from("file,redness\n");
    for label in ["cat", "dog"] {
        for n in 0..10 {
            let file = images(&format!("folder/{label}/{n:02}.png"));
            let bytes = std::fs::read(&file).unwrap();
            let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap();
            let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
            reader.next_frame(&mut rgb).unwrap();
            let mean = |c: usize| rgb.iter().skip(c).step_by(3).map(|&v| f64::from(v)).sum::<f64>() / 64.0;
            csv.push_str(&format!("{},{}\n", s(&file), (mean(0) - mean(2)) / 255.0));
        }
    }
    std::fs::write(d("targets.csv"), csv).unwrap();
    ok(
        "graft-preprocess",
        &[
            "--input",
            s(&d("targets.csv")),
            "--path-column",
            "file",
            "--label-column",
            "redness",
            "--task",
            "regression",
            "--spec",
            s(&spec),
            "--val-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
            "--out",
            s(&d("data")),
            "-q",
        ],
    );
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    ok("graft-finetune", &["--features", s(&d("features")), "--head", "ridge", "--out", s(&d("head")), "-q"]);
    ok("graft-evaluate", &["--head", s(&d("head")), "--features", s(&d("features")), "--out", s(&d("eval")), "-q"]);
    let metrics: Value = serde_json::from_str(&std::fs::read_to_string(d("eval/metrics.json")).unwrap()).unwrap();
    let r2 = metrics["metrics"]["r2"].as_f64().expect("an r2 in metrics.json");
    // Red against blue is what the CNN's four channels see most: R² well above zero.
    assert!(r2 > 0.9, "test R² {r2}: {metrics}");
}

#[test]
fn a_changed_image_reruns_the_pipeline_stages_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(root.join("photos").join(class)).unwrap();
        for n in 0..10 {
            let name = format!("{n:02}.png");
            std::fs::copy(images(&format!("folder/{class}/{name}")), root.join("photos").join(class).join(&name))
                .unwrap();
        }
    }
    let spec = images("tiny-cnn.yaml");
    let yaml = format!(
        "version: 1\nstages:\n  preprocess:\n    cmd: graft-preprocess\n    args: {{input: photos, spec: {spec}, out: run/data}}\n    deps: [photos]\n    outs: [run/data]\n  backbone:\n    cmd: graft-backbone\n    args: {{spec: {spec}, input: run/data, out: run/features}}\n    deps: [run/data]\n    outs: [run/features]\n",
        spec = s(&spec)
    );
    let pipeline = root.join("p.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    let graft = || String::from_utf8_lossy(&ok("graft", &["run", s(&pipeline)]).stderr).into_owned();
    let log = graft();
    assert!(log.contains("2 stages: 2 ran"), "{log}");
    let before = all(&root.join("run/features"));
    let log = graft();
    assert!(log.contains("2 stages: 0 ran"), "{log}");
    // One photo replaced by another: both stages rerun, and its features follow it.
    std::fs::copy(images("folder/dog/05.png"), root.join("photos/cat/03.png")).unwrap();
    let log = graft();
    assert!(log.contains("2 stages: 2 ran"), "{log}");
    let after = all(&root.join("run/features"));
    assert!(after["cat/03.png"].1 != before["cat/03.png"].1 && after["cat/04.png"].1 == before["cat/04.png"].1);
    assert_matches(&after, |id| if id == "cat/03.png" { "dog/05.png".into() } else { id.to_owned() });
}

#[test]
fn image_shards_merge_to_the_whole_split() {
    // Six shards of splits of 12, 4 and 4 images (val and test leave shards 4 and 5 empty).
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    split_folder(&d("data"), &["-q"]);
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("whole")), "-q"]);
    let shards: Vec<PathBuf> = (0..6).map(|i| d(&format!("shard{i}"))).collect();
    for (i, out) in shards.iter().enumerate() {
        let shard = format!("{i}/6");
        ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(out), "--shard", &shard, "-q"]);
    }
    let (prov, rows) = read_features(&shards[5].join("val.arrow"));
    assert_eq!((prov.rows, rows.len(), prov.backbone.unwrap().dim), (0, 0, 4), "an empty shard keeps the width");
    let merged_dir = d("merged");
    let mut args = vec!["merge", "--out", s(&merged_dir), "-q"];
    args.extend(shards.iter().map(|p| s(p)));
    ok("graft-backbone", &args);
    for split in ["train", "val", "test"] {
        let (_, whole) = read_features(&d(&format!("whole/{split}.arrow")));
        let (_, merged) = read_features(&d(&format!("merged/{split}.arrow")));
        assert!(!whole.is_empty() && merged == whole, "{split}");
    }
}

#[test]
fn zip_and_tar_archives_are_read_like_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    for archive in ["folder.zip", "folder.tar.gz"] {
        let (data, features) = (d(&format!("{archive}.data")), d(&format!("{archive}.features")));
        let out = ok("graft-preprocess", &["--input", s(&images(archive)), "--spec", s(&spec), "--out", s(&data)]);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(log.contains(&format!("{archive}: entry `dog/broken.png`")), "the unreadable entry is listed: {log}");
        ok("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&features), "-q"]);
        let got = all(&features);
        assert_eq!(got.len(), 20, "{archive}: 20 readable images");
        assert_matches(&got, str::to_owned);
    }
    // A path column does not apply to an archive; a damaged archive is named.
    let err = user_error(
        "graft-preprocess",
        &["--input", s(&images("folder.zip")), "--path-column", "file", "--spec", s(&spec), "--out", s(&d("x"))],
    );
    assert!(err.contains("folder.zip") && err.contains("--path-column"), "{err}");
    let bytes = std::fs::read(images("folder.zip")).unwrap();
    std::fs::write(d("cut.zip"), &bytes[..bytes.len() / 2]).unwrap();
    let err = user_error("graft-preprocess", &["--input", s(&d("cut.zip")), "--spec", s(&spec), "--out", s(&d("y"))]);
    assert!(err.contains("cut.zip") && err.contains("not a readable archive"), "{err}");
    assert!(!d("y/train.arrow").exists());
}

#[test]
fn a_tar_gz_changed_under_its_checksum_is_refused() {
    // One byte of the first image's pixel data changed (`cat/00.png`, data from byte 512 of
    // the tar) and the gzip trailer's CRC kept: the tar and its headers read as before, and
    // only that CRC, at the stream's very end, tells.
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let raw = std::fs::read(images("folder.tar.gz")).unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut tar).unwrap();
    tar[512 + 60] ^= 1;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let mut changed = gz.finish().unwrap();
    let (n, m) = (changed.len(), raw.len());
    changed[n - 8..n - 4].copy_from_slice(&raw[m - 8..m - 4]);
    std::fs::write(d("changed.tar.gz"), &changed).unwrap();
    let spec = images("tiny-cnn.yaml");
    let err =
        user_error("graft-preprocess", &["--input", s(&d("changed.tar.gz")), "--spec", s(&spec), "--out", s(&d("x"))]);
    assert!(err.contains("changed.tar.gz`: not a readable archive"), "{err}");
    assert!(err.contains("gzip") && err.contains("checksum"), "{err}");
    assert!(!d("x/train.arrow").exists());
}

#[test]
fn a_flipped_byte_in_an_image_split_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let spec = images("tiny-cnn.yaml");
    ok("graft-preprocess", &["--input", s(&images("folder.zip")), "--spec", s(&spec), "--out", s(&d("data")), "-q"]);
    let split = d("data/train.arrow");
    let good = std::fs::read(&split).unwrap();
    let mut rng = graft_core::rng::SplitMix64::new(5);
    let (data, features) = (d("data"), d("features"));
    let backbone = ["--spec", s(&spec), "--input", s(&data), "--out", s(&features)];
    for trial in 0..30 {
        let mut bytes = good.clone();
        let pos = rng.below(bytes.len());
        bytes[pos] ^= 1 << rng.below(8);
        std::fs::write(&split, &bytes).unwrap();
        let err = user_error("graft-backbone", &backbone);
        assert!(err.contains("train.arrow") && !err.contains("panicked"), "trial {trial}, byte {pos}: {err}");
    }
    std::fs::write(&split, &good).unwrap();
    ok("graft-backbone", &[&backbone[..], &["-q"]].concat());
}

#[test]
fn class_folders_are_walked_to_any_depth_and_hidden_or_looping_entries_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let input = d("in");
    for sub in ["cat/2024/may", "dog", ".ipynb_checkpoints", "dog/.cache"] {
        std::fs::create_dir_all(input.join(sub)).unwrap();
    }
    let copy = |from: &str, to: &str| std::fs::copy(images(from), input.join(to)).unwrap();
    copy("folder/cat/00.png", "cat/00.png");
    copy("folder/cat/01.png", "cat/2024/01.png");
    copy("folder/cat/02.png", "cat/2024/may/02.png");
    copy("folder/dog/00.png", "dog/00.png");
    copy("folder/dog/01.png", "dog/01.png");
    copy("folder/dog/02.png", "dog/.cache/02.png");
    copy("folder/dog/03.png", ".ipynb_checkpoints/03.png");
    copy("folder/cat/03.png", "loose.png");
    // Links from inside a class: back to the whole folder, to another class (neither is
    // followed), and to a folder outside (followed).
    std::os::unix::fs::symlink("../..", input.join("cat/2024/up")).unwrap();
    std::os::unix::fs::symlink("../dog", input.join("cat/dogs")).unwrap();
    std::fs::create_dir_all(d("outside")).unwrap();
    std::fs::copy(images("folder/cat/04.png"), d("outside/04.png")).unwrap();
    std::os::unix::fs::symlink("../../outside", input.join("cat/more")).unwrap();
    let spec = images("tiny-cnn.yaml");
    #[rustfmt::skip]
    let out = ok("graft-preprocess", &["--input", s(&input), "--spec", s(&spec), "--out", s(&d("data")),
        "--val-fraction", "0", "--test-fraction", "0"]);
    let log = String::from_utf8_lossy(&out.stderr);
    for named in [".ipynb_checkpoints", "dog/.cache", "cat/2024/up", "cat/dogs", "images directly in"] {
        assert!(log.contains(named), "{named} is named: {log}");
    }
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    let ids: Vec<(&str, &str)> = got.iter().map(|(id, (label, _))| (id.as_str(), label.as_str())).collect();
    assert_eq!(
        ids,
        [
            ("cat/00.png", "cat"),
            ("cat/2024/01.png", "cat"),
            ("cat/2024/may/02.png", "cat"),
            ("cat/more/04.png", "cat"),
            ("dog/00.png", "dog"),
            ("dog/01.png", "dog")
        ]
    );
    // Scoring the same folder: the same images, and the loose one without a label.
    let model = {
        let (head, eval, model) = (d("head"), d("eval"), d("model"));
        ok("graft-finetune", &["--features", s(&d("features")), "--out", s(&head), "--c", "1", "-q"]);
        ok(
            "graft-evaluate",
            &["--head", s(&head), "--features", s(&d("features")), "--split", "train", "--out", s(&eval), "-q"],
        );
        #[rustfmt::skip]
        ok("graft-evaluate", &["bundle", "--head", s(&head), "--spec", s(&spec), "--data", s(&d("data")),
            "--eval", s(&eval), "--out", s(&model)]);
        model
    };
    let scored = d("scored.csv");
    ok("graft", &["predict", "--bundle", s(&model), "--input", s(&input), "--out", s(&scored)]);
    let mut reader = csv::Reader::from_path(&scored).unwrap();
    let rows: Vec<(String, String)> = reader
        .records()
        .map(|r| r.unwrap())
        .map(|r| (r.get(1).unwrap().to_owned(), r.get(2).unwrap().to_owned()))
        .collect();
    let want = [
        ("cat/00.png", "cat"),
        ("cat/2024/01.png", "cat"),
        ("cat/2024/may/02.png", "cat"),
        ("cat/more/04.png", "cat"),
        ("dog/00.png", "dog"),
        ("dog/01.png", "dog"),
        ("loose.png", ""),
    ];
    assert_eq!(rows, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
}

#[test]
fn hidden_entries_of_an_archive_are_named_not_read() {
    // What macOS Finder writes beside each file of a zip (`__MACOSX/.../._name`, metadata
    // named like the image), and a dotfile image: neither is a class nor an image to read.
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(d("photos.zip")).unwrap());
    for name in ["cat/00.png", "cat/01.png", "dog/00.png", "dog/01.png", "__MACOSX/cat/._00.png", "cat/.01.png"] {
        zip.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        let fixture = name.trim_start_matches("__MACOSX/").replace("._", "").replace("/.", "/");
        let bytes = std::fs::read(images(&format!("folder/{fixture}"))).unwrap();
        let bytes = if name.starts_with("__MACOSX") { b"\x00\x05\x16\x07 Mac OS X metadata".to_vec() } else { bytes };
        std::io::Write::write_all(&mut zip, &bytes).unwrap();
    }
    zip.finish().unwrap();
    let spec = images("tiny-cnn.yaml");
    #[rustfmt::skip]
    let out = ok("graft-preprocess", &["--input", s(&d("photos.zip")), "--spec", s(&spec), "--out", s(&d("data")),
        "--val-fraction", "0", "--test-fraction", "0"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("skipping 2 hidden entries of") && log.contains("`__MACOSX/cat/._00.png`"), "{log}");
    assert!(!log.contains("skipping unreadable"), "nothing is listed as unreadable: {log}");
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--out", s(&d("features")), "-q"]);
    let got = all(&d("features"));
    let ids: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(ids, ["cat/00.png", "cat/01.png", "dog/00.png", "dog/01.png"]);
    let (prov, _) = read_features(&d("features/train.arrow"));
    assert_eq!(prov.labels, ["cat", "dog"]);
}
