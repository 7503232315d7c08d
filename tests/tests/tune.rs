//! `graft-finetune layers` on the tiny fixture BERT: the cut from `graft-backbone --tokens`,
//! the trained layers written back into a copy of the ONNX model, and that copy, run by ONNX
//! Runtime through graft-backbone and graft-evaluate, giving the probabilities the Rust forward
//! pass gives; a model bundle of it scores new rows. Bad input exits 1 naming what is wrong.

use std::path::Path;

use candle_core::DType;
use graft_e2e::*;
use graft_tune::Trunk;
use graft_tune::cut::Expected;
use graft_tune::encoder::Encoder;
use graft_tune::mbconv::ConvTop;

fn tiny_cut(dir: &Path, output: &str, dtype: &str) {
    let spec = fixture("tiny/tiny.yaml");
    let data = dir.join("data");
    if !data.exists() {
        #[rustfmt::skip]
        ok("graft-preprocess", &["--input", s(&fixture("tiny/reviews.csv")), "--spec", s(&spec), "--id-column", "id",
            "--out", s(&data)]);
    }
    ok(
        "graft-backbone",
        &[
            "--spec",
            s(&spec),
            "--input",
            s(&dir.join("data")),
            "--outputs",
            output,
            "--tokens",
            "--tokens-dtype",
            dtype,
            "--out",
            s(&dir.join(format!("cut-{output}-{dtype}"))),
        ],
    );
}

/// The largest difference between `onnx` (graft-evaluate's probabilities of `split`'s rows)
/// and the Rust forward pass of `trunk` and the head in `head_dir` on the same rows.
fn largest_difference(onnx: &[Vec<f64>], trunk: &Trunk, split: &graft_tune::cut::Split, head_dir: &Path) -> f64 {
    let rows: Vec<usize> = (0..split.len()).collect();
    let (x, mask) = graft_tune::train::batch(split, &rows, trunk.input_width(), DType::F32).unwrap();
    let pooled = trunk.pool(&trunk.forward(&x, &mask, None).unwrap(), &mask).unwrap();
    let values = pooled.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let pooled = ndarray::Array2::from_shape_vec((rows.len(), trunk.output_width()), values).unwrap();
    let rust = graft_core::head::Head::load(head_dir).unwrap().predict_proba(pooled.view());
    assert_eq!(onnx.len(), rows.len());
    onnx.iter()
        .enumerate()
        .flat_map(|(i, p)| p.iter().enumerate().map(move |(j, v)| (i, j, *v)))
        .map(|(i, j, v)| (v - rust[[i, j]]).abs())
        .fold(0.0, f64::max)
}

/// The test split's probabilities in ONNX Runtime: graft-backbone on `dir/tuned/spec.yaml`
/// over `dir/data` into `dir/features`, then graft-evaluate of `dir/tuned/head` into `dir/eval`.
fn tuned_test_probabilities(dir: &Path) -> Vec<Vec<f64>> {
    let d = |n: &str| dir.join(n);
    ok("graft-backbone", &["--spec", s(&d("tuned/spec.yaml")), "--input", s(&d("data")), "--out", s(&d("features"))]);
    #[rustfmt::skip]
    ok("graft-evaluate", &["--head", s(&d("tuned/head")), "--features", s(&d("features")), "--split", "test",
        "--out", s(&d("eval"))]);
    read_predictions(&d("eval")).3
}

fn ids(path: &Path) -> Vec<String> {
    let mut r = graft_core::artifact::ArtifactReader::open(path).unwrap();
    let mut out = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        let c = graft_core::artifact::column::<arrow::array::StringArray>(&b, "id", path, "").unwrap();
        out.extend((0..b.num_rows()).map(|i| c.value(i).to_owned()));
    }
    out
}

#[test]
fn the_written_back_model_in_onnx_runtime_gives_the_rust_forward_passs_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    // A float32 cut, so that both sides read the same numbers at the cut.
    tiny_cut(dir.path(), "hidden_state_1", "float32");
    let cut = d("cut-hidden_state_1-float32");
    let (spec, tuned_dir) = (fixture("tiny/tiny.yaml"), d("tuned"));
    #[rustfmt::skip]
    let args = ["layers", "--cut", s(&cut), "--spec", s(&spec), "--layers", "1", "--epochs", "3",
        "--lr", "0.01", "--layer-lr", "0.01", "--seed", "3", "--out", s(&tuned_dir)];
    let started = std::time::Instant::now();
    let log = String::from_utf8_lossy(&ok("graft-finetune", &args).stderr).into_owned();
    let wall = started.elapsed().as_secs_f64();
    assert!(log.contains("training layers 1..1 of 2 above `hidden_state_1`"), "{log}");
    // Each epoch's seconds are in `timing.json`, inside the command's own wall time.
    let timing = graft_core::head::Head::load(&d("tuned/head")).unwrap().timing.expect("a tuned head is timed");
    assert_eq!(timing.epoch_seconds.len(), 3);
    let total: f64 = timing.epoch_seconds.iter().sum();
    assert!(timing.epoch_seconds.iter().all(|&t| t > 0.0) && total < wall, "{timing:?} in {wall} s");

    // Only layer 1's weights changed, every one of them (the key bias aside: its gradient is
    // zero but for rounding, as softmax ignores a shift shared by all keys); the rest of the
    // file is the original's.
    let base = std::fs::read(fixture("tiny/model.onnx")).unwrap();
    let tuned = std::fs::read(d("tuned/model.onnx")).unwrap();
    let (before, after) = (
        graft_core::onnx::float_initializers(&base, |_| true).unwrap(),
        graft_core::onnx::float_initializers(&tuned, |_| true).unwrap(),
    );
    assert_eq!(before.len(), after.len());
    for (name, t) in &before {
        let changed = after[name] != *t;
        if !name.ends_with("key.bias") {
            assert_eq!(changed, name.starts_with("encoder.layer.1."), "{name}");
        }
    }
    assert_eq!(graft_core::onnx::read(&tuned).unwrap().nodes, graft_core::onnx::read(&base).unwrap().nodes);

    // ONNX Runtime on the tuned model, and the head on its features.
    let onnx_proba = tuned_test_probabilities(dir.path());
    let html = std::fs::read_to_string(d("eval/report.html")).unwrap();
    let rows = html.split("<th>seconds (").nth(1).expect("the report times each epoch");
    assert_eq!(rows.split("</table>").next().unwrap().matches("<tr>").count(), 3, "one row an epoch");

    // The same rows through the Rust forward pass of the trained layers and the head.
    let path = d("tuned/model.onnx");
    let encoder = Encoder::load(&tuned, &path, 1, DType::F32).unwrap();
    let blake3 = graft_core::hash::bytes(&base);
    let expected = Expected::Vectors { tensor: "hidden_state_1", model_blake3: &blake3, dim: 16 };
    let (_, split) = graft_tune::cut::read(&cut, "test", expected).unwrap().unwrap();
    assert_eq!(split.ids, ids(&d("eval/predictions.arrow")));
    let worst = largest_difference(&onnx_proba, &Trunk::Layers(encoder), &split, &d("tuned/head"));
    assert!(worst < 1e-4, "ONNX Runtime and the Rust forward pass differ by {worst}");
    // Training moved the predictions away from the untrained head's (near 0.5).
    assert!(onnx_proba.iter().any(|p| (p[0] - 0.5).abs() > 0.05), "{onnx_proba:?}");

    // The tuned model ships as a bundle and scores new rows through the prediction path.
    #[rustfmt::skip]
    ok("graft-evaluate", &["bundle", "--head", s(&d("tuned/head")), "--spec", s(&d("tuned/spec.yaml")),
        "--data", s(&d("data")), "--eval", s(&d("eval")), "--out", s(&d("bundle"))]);
    let scored = ok(
        "graft",
        &[
            "predict",
            "--bundle",
            s(&d("bundle")),
            "--input",
            s(&fixture("tiny/reviews.csv")),
            "--id-column",
            "id",
            "--out",
            s(&d("scores.csv")),
        ],
    );
    assert!(scored.status.success());
    let count = |p: &Path| csv::Reader::from_path(p).unwrap().records().count();
    assert_eq!(count(&d("scores.csv")), count(&fixture("tiny/reviews.csv")), "one row per input row");

    // The folder's manifest binds its model to its spec: a model from elsewhere is refused.
    std::fs::copy(fixture("tiny/model.onnx"), d("tuned/model.onnx")).unwrap();
    let err = user_error(
        "graft-backbone",
        &["--spec", s(&d("tuned/spec.yaml")), "--input", s(&d("data")), "--out", s(&d("f2"))],
    );
    assert!(err.contains("manifest.json") && err.contains("model.onnx"), "{err}");
}

#[test]
fn image_blocks_train_write_back_and_score_in_onnx_runtime_as_the_rust_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (spec, folder) = (fixture("tiny-images/tiny-effnet.yaml"), fixture("tiny-images/folder"));
    #[rustfmt::skip]
    ok("graft-preprocess", &["--input", s(&folder), "--spec", s(&spec), "--val-fraction", "0.2",
        "--test-fraction", "0.2", "--out", s(&d("data"))]);
    let base_path = fixture("tiny-images/effnet.onnx");
    let base = std::fs::read(&base_path).unwrap();
    let top = ConvTop::load(&base, &base_path, 2, DType::F32).unwrap();
    let cut_tensor = top.cut();
    // The feature map below block 14, float32 so that both sides read the same numbers.
    #[rustfmt::skip]
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--outputs", &cut_tensor, "--tokens",
        "--tokens-dtype", "float32", "--out", s(&d("cut"))]);
    let (cut, tuned_dir) = (d("cut"), d("tuned"));
    #[rustfmt::skip]
    let args = ["layers", "--cut", s(&cut), "--spec", s(&spec), "--layers", "2", "--epochs", "3",
        "--lr", "0.01", "--layer-lr", "0.01", "--seed", "3", "--out", s(&tuned_dir)];
    let log = String::from_utf8_lossy(&ok("graft-finetune", &args).stderr).into_owned();
    assert!(
        log.contains(&format!("MBConv blocks 14..15 of 16 and the head convolution above `{cut_tensor}`")),
        "{log}"
    );

    // Every tensor of blocks 14 and 15 and the head convolution changed, nothing else did.
    let tuned = std::fs::read(d("tuned/model.onnx")).unwrap();
    let trained: Vec<String> = Trunk::Blocks(top).named_vars().into_iter().map(|(n, _)| n).collect();
    assert_eq!(trained.len(), 2 * 3 * 2 + 2);
    let (before, after) = (
        graft_core::onnx::float_initializers(&base, |_| true).unwrap(),
        graft_core::onnx::float_initializers(&tuned, |_| true).unwrap(),
    );
    assert_eq!(before.len(), after.len());
    for (name, t) in &before {
        assert_eq!(after[name] != *t, trained.contains(name), "{name}");
    }
    assert_eq!(graft_core::onnx::read(&tuned).unwrap().nodes, graft_core::onnx::read(&base).unwrap().nodes);

    // ONNX Runtime on the tuned model from the images, and the head on its pooled features,
    // against the Rust forward pass from the cut.
    let onnx_proba = tuned_test_probabilities(dir.path());
    let trunk = Trunk::Blocks(ConvTop::load(&tuned, &d("tuned/model.onnx"), 2, DType::F32).unwrap());
    let blake3 = graft_core::hash::bytes(&base);
    let expected = Expected::Vectors { tensor: &cut_tensor, model_blake3: &blake3, dim: trunk.input_width() };
    let (_, split) = graft_tune::cut::read(&d("cut"), "test", expected).unwrap().unwrap();
    assert_eq!(split.ids, ids(&d("eval/predictions.arrow")));
    let worst = largest_difference(&onnx_proba, &trunk, &split, &d("tuned/head"));
    assert!(worst < 1e-4, "ONNX Runtime and the Rust forward pass differ by {worst}");
    assert!(onnx_proba.iter().any(|p| (p[0] - 0.5).abs() > 0.05), "{onnx_proba:?}");

    // Shipped as a bundle, it scores the folder: one row per image file, the broken one rejected.
    #[rustfmt::skip]
    ok("graft-evaluate", &["bundle", "--head", s(&d("tuned/head")), "--spec", s(&d("tuned/spec.yaml")),
        "--data", s(&d("data")), "--eval", s(&d("eval")), "--out", s(&d("bundle"))]);
    ok("graft", &["predict", "--bundle", s(&d("bundle")), "--input", s(&folder), "--out", s(&d("scores.csv"))]);
    let files: usize = ["cat", "dog"].iter().map(|c| std::fs::read_dir(folder.join(c)).unwrap().count()).sum();
    assert_eq!(csv::Reader::from_path(d("scores.csv")).unwrap().records().count(), files);

    // `--tokens` of an output that is not a feature map, pooled features as a cut, or more
    // blocks than the model has: exit 1 naming it.
    #[rustfmt::skip]
    let err = user_error("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--outputs", "features",
        "--tokens", "--out", s(&d("x"))]);
    assert!(err.contains("`features` has shape [") && err.contains("not [batch, channels, height, width]"), "{err}");
    let err = user_error(
        "graft-finetune",
        &["layers", "--cut", s(&d("features")), "--spec", s(&spec), "--layers", "2", "--out", s(&d("x"))],
    );
    assert!(err.contains("holds `none`-pooled features") && err.contains("--tokens"), "{err}");
    let err = user_error(
        "graft-finetune",
        &["layers", "--cut", s(&d("cut")), "--spec", s(&spec), "--layers", "17", "--out", s(&d("x"))],
    );
    assert!(err.contains("`--layers 17`") && err.contains("has 16 MBConv blocks"), "{err}");
}

#[test]
fn mpnet_layers_train_with_its_relative_position_bias_as_onnx_runtime_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let imported = import_encoder(&fixture("tiny-encoders/mpnet"), dir.path(), "mpnet");
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let spec = d("mpnet.yaml");
    #[rustfmt::skip]
    ok("graft-preprocess", &["--input", s(&fixture("tiny/reviews.csv")), "--spec", s(&spec), "--id-column", "id",
        "--max-length", "12", "--out", s(&d("data"))]);
    #[rustfmt::skip]
    ok("graft-backbone", &["--spec", s(&spec), "--input", s(&d("data")), "--outputs", "hidden_state_1", "--tokens",
        "--tokens-dtype", "float32", "--out", s(&d("cut"))]);
    let (cut, tuned_dir) = (d("cut"), d("tuned"));
    #[rustfmt::skip]
    ok("graft-finetune", &["layers", "--cut", s(&cut), "--spec", s(&spec), "--layers", "1", "--epochs", "3",
        "--lr", "0.01", "--layer-lr", "0.01", "--seed", "3", "--out", s(&tuned_dir)]);
    let onnx_proba = tuned_test_probabilities(dir.path());
    let tuned = std::fs::read(d("tuned/model.onnx")).unwrap();
    let encoder = Encoder::load(&tuned, &d("tuned/model.onnx"), 1, DType::F32).unwrap();
    assert!(encoder.relative_bias.is_some(), "MPNet's bias by distance is read");
    let base = std::fs::read(d("mpnet/model.onnx")).unwrap();
    let blake3 = graft_core::hash::bytes(&base);
    let expected = Expected::Vectors { tensor: "hidden_state_1", model_blake3: &blake3, dim: encoder.hidden };
    let (_, split) = graft_tune::cut::read(&cut, "test", expected).unwrap().unwrap();
    let worst = largest_difference(&onnx_proba, &Trunk::Layers(encoder), &split, &d("tuned/head"));
    assert!(worst < 1e-4, "ONNX Runtime and the Rust forward pass differ by {worst}");
    assert!(onnx_proba.iter().any(|p| (p[0] - 0.5).abs() > 0.05), "{onnx_proba:?}");
}

#[test]
fn half_precision_cut_trains_too_and_is_close_to_float32() {
    let dir = tempfile::tempdir().unwrap();
    tiny_cut(dir.path(), "hidden_state_0", "float32");
    tiny_cut(dir.path(), "hidden_state_0", "float16");
    let base = std::fs::read(fixture("tiny/model.onnx")).unwrap();
    let blake3 = graft_core::hash::bytes(&base);
    let read = |dtype: &str| {
        let cut = dir.path().join(format!("cut-hidden_state_0-{dtype}"));
        let expected = Expected::Vectors { tensor: "hidden_state_0", model_blake3: &blake3, dim: 16 };
        graft_tune::cut::read(&cut, "train", expected).unwrap().unwrap().1
    };
    let (single, half) = (read("float32"), read("float16"));
    let rows: Vec<usize> = (0..single.len()).collect();
    let (a, _) = graft_tune::train::batch(&single, &rows, 16, DType::F32).unwrap();
    let (b, _) = graft_tune::train::batch(&half, &rows, 16, DType::F32).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    // float16 keeps 11 significant bits: layer-normalised values (|x| < 8) within 4e-3.
    assert!(diff > 0.0 && diff < 4e-3, "{diff}");
    // All layers (K = depth) train through the same path, from the embeddings' output; the
    // same seed and threads give the same bytes.
    let all = |name: &str| {
        let out = dir.path().join(name);
        #[rustfmt::skip]
        ok("graft-finetune", &["layers", "--cut", s(&dir.path().join("cut-hidden_state_0-float16")),
            "--spec", s(&fixture("tiny/tiny.yaml")), "--layers", "2", "--epochs", "2", "--threads", "2",
            "--out", s(&out)]);
        out
    };
    let (first, second) = (all("all"), all("again"));
    for file in ["model.onnx", "head/head.safetensors", "head/head.json"] {
        assert_eq!(std::fs::read(first.join(file)).unwrap(), std::fs::read(second.join(file)).unwrap(), "{file}");
    }
    // Wall time is the one thing that differs, in its own file, bound by the manifest: an
    // edited `timing.json` is refused.
    let timing_file = first.join("head/timing.json");
    let original = std::fs::read(&timing_file).unwrap();
    let mut edited: graft_core::head::timing::Timing = serde_json::from_slice(&original).unwrap();
    edited.epoch_seconds[0] += 1.0;
    std::fs::write(&timing_file, serde_json::to_vec_pretty(&edited).unwrap()).unwrap();
    let err = graft_core::head::Head::load(&first.join("head")).unwrap_err().to_string();
    assert!(err.contains("timing.json") && err.contains("manifest.json"), "{err}");
    std::fs::write(&timing_file, original).unwrap();
    let head = graft_core::head::Head::load(&first.join("head")).unwrap();
    let graft_core::head::Fit::Layers { epochs, config, .. } = &head.info.training.fit else { panic!("a layers fit") };
    assert_eq!((epochs.len(), config.layers), (2, 2));
}

#[test]
fn full_fine_tuning_trains_the_embeddings_from_the_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    tiny_cut(dir.path(), "hidden_state_0", "float16");
    let spec = fixture("tiny/tiny.yaml");
    // Every layer and the embeddings, read from graft-preprocess's token ids.
    #[rustfmt::skip]
    ok("graft-finetune", &["layers", "--cut", s(&d("data")), "--spec", s(&spec), "--layers", "2", "--embeddings",
        "--epochs", "2", "--lr", "0.01", "--layer-lr", "0.01", "--out", s(&d("full"))]);
    let base = std::fs::read(fixture("tiny/model.onnx")).unwrap();
    let tuned = std::fs::read(d("full/model.onnx")).unwrap();
    let (before, after) = (
        graft_core::onnx::float_initializers(&base, |_| true).unwrap(),
        graft_core::onnx::float_initializers(&tuned, |_| true).unwrap(),
    );
    for name in ["embeddings.word", "embeddings.position", "embeddings.token_type", "embeddings.LayerNorm.weight"] {
        assert_ne!(before[name], after[name], "{name} was trained");
    }
    // ONNX Runtime on the written-back model gives the Rust forward pass's probabilities.
    ok("graft-backbone", &["--spec", s(&d("full/spec.yaml")), "--input", s(&d("data")), "--out", s(&d("features"))]);
    #[rustfmt::skip]
    ok("graft-evaluate", &["--head", s(&d("full/head")), "--features", s(&d("features")), "--split", "test",
        "--out", s(&d("eval"))]);
    let (_, _, _, onnx_proba) = read_predictions(&d("eval"));
    let path = d("full/model.onnx");
    let encoder =
        Encoder::load(&tuned, &path, 2, DType::F32).unwrap().with_embeddings(&tuned, &path, DType::F32).unwrap();
    let tokenizer = graft_core::hash::file(&fixture("tiny/tokenizer.json")).unwrap();
    let expected = Expected::Ids { tokenizer_blake3: &tokenizer, vocab: encoder.vocab().unwrap() };
    let (_, split) = graft_tune::cut::read(&d("data"), "test", expected).unwrap().unwrap();
    let worst = largest_difference(&onnx_proba, &Trunk::Layers(encoder), &split, &d("full/head"));
    assert!(worst < 1e-4, "ONNX Runtime and the Rust forward pass differ by {worst}");
    // Training the embeddings needs every layer, and token ids rather than vectors.
    #[rustfmt::skip]
    let err = user_error("graft-finetune", &["layers", "--cut", s(&d("data")), "--spec", s(&spec), "--layers", "1",
        "--embeddings", "--out", s(&d("x"))]);
    assert!(err.contains("give `--layers 2`"), "{err}");
    #[rustfmt::skip]
    let err = user_error("graft-finetune", &["layers", "--cut", s(&d("cut-hidden_state_0-float16")), "--spec", s(&spec),
        "--layers", "2", "--embeddings", "--out", s(&d("x"))]);
    assert!(err.contains("train.arrow` lacks column `input_ids`"), "{err}");
}

#[test]
fn bad_layers_and_cuts_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    tiny_cut(dir.path(), "hidden_state_1", "float16");
    let cut = dir.path().join("cut-hidden_state_1-float16");
    let spec = fixture("tiny/tiny.yaml");
    let out = dir.path().join("out");
    let run = |layers: &str, cut: &Path| {
        user_error(
            "graft-finetune",
            &["layers", "--cut", s(cut), "--spec", s(&spec), "--layers", layers, "--out", s(&out)],
        )
    };
    // The cut's rows are spilled to a temporary file: where there is none, the cut is named.
    let spilled = std::process::Command::new(bin("graft-finetune"))
        .args(["layers", "--cut", s(&cut), "--spec", s(&spec), "--layers", "1", "--out", s(&out)])
        .env("TMPDIR", dir.path().join("no-such-folder"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&spilled.stderr);
    assert_eq!(spilled.status.code(), Some(1), "{err}");
    assert!(err.contains("train.arrow") && err.contains("could not be spilled to a temporary file"), "{err}");
    let err = run("3", &cut);
    assert!(err.contains("`--layers 3`") && err.contains("has 2 transformer layers"), "{err}");
    let err = user_error(
        "graft-finetune",
        &["layers", "--cut", s(&cut), "--spec", s(&spec), "--layers", "1", "--momentum", "0.5", "--out", s(&out)],
    );
    assert!(err.contains("`momentum` is used by the sgd optimizer only"), "{err}");
    // The cut must be the output just below the trained layers.
    let err = run("2", &cut);
    assert!(err.contains("the layers trained read `hidden_state_0`") && err.contains("[\"hidden_state_1\"]"), "{err}");
    // Pooled features are not a cut.
    features(dir.path(), &[]);
    let err = run("1", &dir.path().join("features"));
    assert!(err.contains("`mean`-pooled features") && err.contains("--tokens"), "{err}");
    // A model whose layers are not graft's BERT graph: the tiny CNN.
    let cnn_spec = dir.path().join("cnn.yaml");
    std::fs::write(
        &cnn_spec,
        format!(
            "name: cnn\nkind: text\nmodel: {}\ntext: {{tokenizer: {}, max_length: 12}}\noutput: logits\n",
            s(&fixture("tiny-images/cnn.onnx")),
            s(&fixture("tiny/tokenizer.json"))
        ),
    )
    .unwrap();
    let err = user_error(
        "graft-finetune",
        &["layers", "--cut", s(&cut), "--spec", s(&cnn_spec), "--layers", "1", "--out", s(&out)],
    );
    assert!(err.contains("is not a backbone whose layers graft can train") && err.contains("encoder.layer.0"), "{err}");
    // Token vectors only where they apply.
    let err = user_error(
        "graft-backbone",
        &["--spec", s(&spec), "--input", s(&dir.path().join("data")), "--tokens", "--pooling", "cls", "--out", s(&out)],
    );
    assert!(err.contains("`--tokens`") && err.contains("drop `--pooling`"), "{err}");
    assert!(!out.exists());
}
