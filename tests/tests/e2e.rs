//! The stage binaries and `graft run` on the tiny fixture model and data.

use std::collections::BTreeMap;
use std::path::Path;

use graft_e2e::*;

/// Arguments of graft-backbone on the tiny model over `dir/data`, writing `dir/out`.
fn tiny_backbone_args(dir: &Path, out: &str, extra: &[&str]) -> Vec<String> {
    let spec = fixture("tiny/tiny.yaml");
    let (data, out) = (dir.join("data"), dir.join(out));
    let mut args: Vec<String> = ["--spec", s(&spec), "--input", s(&data), "--out", s(&out)].map(String::from).to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("tiny/expected_features.json")).unwrap()).unwrap()
}

fn all_features(dir: &Path) -> Rows<f32> {
    let mut all = BTreeMap::new();
    for split in ["train", "val", "test"] {
        all.extend(read_features(&dir.join(format!("features/{split}.arrow"))).1);
    }
    all
}

/// Asserts that the features in `dir` are the reference's mean-pooled features.
fn assert_reference_features(dir: &Path) {
    let expected = expected();
    let got = all_features(dir);
    // 80 labelled rows; one empty after cleaning and one without a label are dropped.
    assert_eq!(got.len(), 80);
    assert_eq!(got.len(), expected.as_object().unwrap().len());
    for (id, (_, f)) in &got {
        let want: Vec<f64> = serde_json::from_value(expected[id]["mean"].clone()).unwrap();
        let cos = cosine(f, &want);
        assert!(cos >= 0.9999, "row {id}: cosine {cos}");
        let worst = f.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "row {id}: max abs difference {worst}");
    }
}

#[test]
fn features_match_an_independent_numpy_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    assert_reference_features(dir.path());
}

#[test]
fn token_budget_batches_give_the_same_features() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &["--batch-size", "7", "--batch-tokens", "40"]);
    assert_reference_features(dir.path());
}

#[test]
fn sessions_side_by_side_give_one_session_s_features() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    features(one.path(), &["--threads", "2", "--sessions", "1", "--batch-size", "3"]);
    features(two.path(), &["--threads", "2", "--sessions", "2", "--batch-size", "3"]);
    assert_reference_features(two.path());
    // Each batch runs whole in one session: the same features whichever ran it (1e-6).
    let (a, b) = (all_features(one.path()), all_features(two.path()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (id, (_, f)) in &a {
        let worst = f.iter().zip(&b[id].1).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{id}: {worst}");
    }
    let (spec, data, out) = (fixture("tiny/tiny.yaml"), two.path().join("data"), two.path().join("x"));
    let embed = |extra: &[&str]| {
        let args = [&["--spec", s(&spec), "--input", s(&data), "--out", s(&out)][..], extra].concat();
        run("graft-backbone", &args)
    };
    let log = String::from_utf8_lossy(&embed(&["--threads", "2"]).stderr).into_owned();
    assert!(log.contains("on cpu (2 sessions side by side)"), "two threads, two sessions: {log}");
    let refused = embed(&["--threads", "2", "--sessions", "3"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("`--sessions`: 3 sessions need at least as many threads, not 2"), "{err}");
    let refused = embed(&["--threads", "2", "--sessions", "2", "--device", "cuda"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("sessions side by side run on the CPU"), "{err}");
}

#[test]
fn onnx_runtime_writes_no_telemetry_and_stays_offline() {
    // Without the variable set, ONNX Runtime 1.31 writes a device id and an event queue under
    // $HOME/.cache/Microsoft/DeveloperTools/.onnxruntime when its environment is created,
    // unless a CI variable is set: the binaries run here with none of either.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let data = dir.path().join("data");
    ok(
        "graft-preprocess",
        &["--input", s(&fixture("tiny/reviews.csv")), "--spec", s(&fixture("tiny/tiny.yaml")), "--out", s(&data), "-q"],
    );
    let mut cmd = std::process::Command::new(bin("graft-backbone"));
    cmd.env_clear().env("HOME", &home).args(tiny_backbone_args(dir.path(), "features", &["-q"]));
    for kept in ["PATH", "ORT_DYLIB_PATH"] {
        if let Some(value) = std::env::var_os(kept) {
            cmd.env(kept, value);
        }
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("features/train.arrow").is_file());
    assert_eq!(files_in(&home), Vec::<String>::new(), "nothing written under HOME");
}

#[test]
fn cuda_is_never_a_silent_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let (input, spec, data) = (fixture("tiny/reviews.csv"), fixture("tiny/tiny.yaml"), dir.path().join("data"));
    ok("graft-preprocess", &["--input", s(&input), "--spec", s(&spec), "--out", s(&data), "-q"]);
    let out = dir.path().join("features");
    let args = ["--spec", s(&spec), "--input", s(&data), "--out", s(&out), "--device"];
    // This build has no `cuda` feature: asking for CUDA fails and says why.
    let err = user_error("graft-backbone", &[&args[..], &["cuda"]].concat());
    assert!(err.contains("CUDA was asked for") && err.contains("`cuda` feature"), "{err}");
    assert!(files_in(&out).is_empty());
    let err = user_error("graft-backbone", &[&args[..], &["gpu"]].concat());
    assert!(err.contains("`--device gpu`"), "{err}");
    // Allowed to fall back, it runs on the CPU, warns, and records the provider it used.
    let done = ok("graft-backbone", &[&args[..], &["cuda:1", "--allow-cpu-fallback"]].concat());
    assert!(String::from_utf8_lossy(&done.stderr).contains("running on the CPU"));
    let (provenance, rows) = read_features(&out.join("train.arrow"));
    assert_eq!(provenance.backbone.unwrap().provider, "cpu");
    assert!(!rows.is_empty());
    let doctor = String::from_utf8_lossy(&ok("graft-backbone", &["doctor"]).stdout).into_owned();
    assert!(
        doctor.contains("loaded: ") && doctor.contains("libonnxruntime.so") && doctor.contains("cuda not usable"),
        "{doctor}"
    );
}

#[test]
fn more_shards_than_rows_give_empty_shards_that_merge() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (spec, data) = (fixture("tiny/tiny.yaml"), dir.path().join("data"));
    // val and test have 8 rows: shards 8 and 9 of 10 are empty there.
    let shard_dirs: Vec<_> = (0..10).map(|i| dir.path().join(format!("shard{i}"))).collect();
    for (i, out) in shard_dirs.iter().enumerate() {
        let shard = format!("{i}/10");
        ok("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(out), "--shard", &shard, "-q"]);
    }
    let (prov, rows) = read_features(&shard_dirs[9].join("val.arrow"));
    assert_eq!((prov.rows, rows.len()), (0, 0));
    assert_eq!(prov.backbone.unwrap().dim, 16);
    let merged = dir.path().join("merged");
    let mut args = vec!["merge", "--out", s(&merged), "-q"];
    args.extend(shard_dirs.iter().map(|d| s(d)));
    ok("graft-backbone", &args);
    for split in ["train", "val", "test"] {
        let (whole_prov, whole) = read_features(&dir.path().join(format!("features/{split}.arrow")));
        let (prov, rows) = read_features(&merged.join(format!("{split}.arrow")));
        assert_eq!(rows.keys().collect::<Vec<_>>(), whole.keys().collect::<Vec<_>>(), "{split}");
        let read = graft_core::hash::file(&data.join(format!("{split}.arrow"))).unwrap();
        assert_eq!(prov.inputs.get(split), Some(&read), "{split}: the merged file records the split its shards read");
        assert_eq!(prov.inputs.get(split), whole_prov.inputs.get(split));
    }
}

#[test]
fn merged_shards_equal_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (spec, data) = (fixture("tiny/tiny.yaml"), dir.path().join("data"));
    let mut shard_dirs = Vec::new();
    for i in [2, 0, 1] {
        let out = dir.path().join(format!("shard{i}"));
        ok(
            "graft-backbone",
            &["--spec", s(&spec), "--input", s(&data), "--out", s(&out), "--shard", &format!("{i}/3"), "-q"],
        );
        shard_dirs.push(out);
    }
    // A shard alone is refused downstream.
    let err =
        user_error("graft-finetune", &["--features", s(&shard_dirs[0]), "--out", s(&dir.path().join("h")), "--c", "1"]);
    assert!(err.contains("shard 2/3") && err.contains("graft-backbone merge"), "{err}");
    let merged = dir.path().join("merged");
    let merge_into = |out: &Path, last: &Path| {
        let mut args = vec!["merge".to_owned(), "--out".into(), s(out).into(), "-q".into()];
        args.extend(shard_dirs[..2].iter().map(|d| s(d).to_owned()));
        args.push(s(last).to_owned());
        args
    };
    // Into a shard folder, however spelled, or from a folder that is not there: refused,
    // the shards untouched.
    let before = std::fs::read(shard_dirs[1].join("train.arrow")).unwrap();
    let spelled = dir.path().join("shard2/../shard0");
    let err = user_error("graft-backbone", &merge_into(&spelled, &shard_dirs[2]));
    assert!(err.contains("is `shard folder ") && err.contains("choose another folder"), "{err}");
    assert_eq!(std::fs::read(shard_dirs[1].join("train.arrow")).unwrap(), before);
    let err = user_error("graft-backbone", &merge_into(&merged, &dir.path().join("shard9")));
    assert!(err.contains("shard9` is not a folder of shard output"), "{err}");
    ok("graft-backbone", &merge_into(&merged, &shard_dirs[2]));
    for split in ["train", "val", "test"] {
        let (whole_prov, whole) = read_features(&dir.path().join(format!("features/{split}.arrow")));
        let (merged_prov, rows) = read_features(&merged.join(format!("{split}.arrow")));
        assert_eq!(merged_prov.rows, whole_prov.rows);
        assert_eq!(merged_prov.shard, None);
        assert_eq!(rows.keys().collect::<Vec<_>>(), whole.keys().collect::<Vec<_>>());
        for (id, (label, f)) in &rows {
            assert_eq!(label, &whole[id].0);
            assert!(f.iter().zip(&whole[id].1).all(|(a, b)| (a - b).abs() < 1e-5), "{split} row {id}");
        }
    }
    // Row order is the unsharded order too.
    let order = |p: &Path| -> Vec<String> {
        let mut r = graft_core::artifact::ArtifactReader::open(p).unwrap();
        let mut ids = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            let col = graft_core::artifact::column::<arrow::array::StringArray>(&b, "id", p, "").unwrap();
            ids.extend(col.iter().map(|v| v.unwrap().to_owned()));
        }
        ids
    };
    assert_eq!(order(&merged.join("train.arrow")), order(&dir.path().join("features/train.arrow")));
}

#[test]
fn features_from_an_inner_layer_and_from_several_layers() {
    let expected = expected();
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &["--outputs", "hidden_state_1"]);
    let layer1 = all_features(dir.path());
    for (id, (_, f)) in &layer1 {
        let want: Vec<f64> = serde_json::from_value(expected[id]["mean_layer_1"].clone()).unwrap();
        assert!(cosine(f, &want) >= 0.9999, "row {id}");
    }
    let (provenance, _) = read_features(&dir.path().join("features/train.arrow"));
    assert_eq!(provenance.backbone.unwrap().outputs, ["hidden_state_1"]);

    let both = tempfile::tempdir().unwrap();
    features(both.path(), &["--outputs", "hidden_state_1,last_hidden_state"]);
    let mean = tempfile::tempdir().unwrap();
    features(mean.path(), &["--outputs", "hidden_state_1,last_hidden_state", "--combine", "mean"]);
    let concat = all_features(both.path());
    let averaged = all_features(mean.path());
    for (id, (_, f)) in &concat {
        let (first, last): (Vec<f64>, Vec<f64>) = (
            serde_json::from_value(expected[id]["mean_layer_1"].clone()).unwrap(),
            serde_json::from_value(expected[id]["mean"].clone()).unwrap(),
        );
        assert_eq!(f.len(), 32);
        assert!(cosine(&f[..16], &first) >= 0.9999 && cosine(&f[16..], &last) >= 0.9999, "row {id}");
        let avg: Vec<f64> = first.iter().zip(&last).map(|(a, b)| (a + b) / 2.0).collect();
        assert!(cosine(&averaged[id].1, &avg) >= 0.9999, "row {id}");
    }
    let (provenance, _) = read_features(&both.path().join("features/train.arrow"));
    let backbone = provenance.backbone.unwrap();
    assert_eq!((backbone.dim, backbone.combine.as_deref()), (32, Some("concat")));
    let err = user_error("graft-backbone", &tiny_backbone_args(dir.path(), "x", &["--outputs", "hidden_state_9"]));
    assert!(err.contains("no tensor `hidden_state_9`") && err.contains("hidden_state_2"), "{err}");
}

#[test]
fn cls_pooling_matches_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &["--pooling", "cls"]);
    let expected = expected();
    for (id, (_, f)) in all_features(dir.path()) {
        let want: Vec<f64> = serde_json::from_value(expected[&id]["cls"].clone()).unwrap();
        assert!(cosine(&f, &want) >= 0.9999, "row {id}");
    }
}

#[test]
fn features_from_a_tensor_that_is_not_a_graph_output() {
    // `layer0/q` (layer 0's query projection) is an intermediate tensor of the tiny model:
    // the graph is edited in memory to expose it.
    let inspect = ok("graft-backbone", &["inspect", s(&fixture("tiny/model.onnx"))]);
    let listing = String::from_utf8_lossy(&inspect.stdout).into_owned();
    let line = listing.lines().find(|l| l.trim_start().starts_with("layer0/q ")).expect("layer0/q listed");
    assert!(line.contains("Add") && line.contains("(batch, sequence, 16)"), "{line}");
    assert!(listing.contains("last_hidden_state") && listing.contains("input_ids"), "{listing}");

    let expected = expected();
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &["--outputs", "layer0/q"]);
    let got = all_features(dir.path());
    assert_eq!(got.len(), 80);
    for (id, (_, f)) in &got {
        let want: Vec<f64> = serde_json::from_value(expected[id]["mean_layer0_q"].clone()).unwrap();
        let worst = f.iter().zip(&want).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
        assert!(cosine(f, &want) >= 0.9999 && worst < 1e-4, "row {id}: max abs difference {worst}");
    }
    let err = user_error("graft-backbone", &tiny_backbone_args(dir.path(), "none", &["--outputs", "layer9/q"]));
    assert!(err.contains("no tensor `layer9/q`") && err.contains("graft-backbone inspect"), "{err}");
    let err = user_error("graft-backbone", &tiny_backbone_args(dir.path(), "none", &["--batch-size", "0"]));
    assert!(err.contains("invalid value '0' for '--batch-size") && err.contains("not in 1.."), "{err}");
    assert!(files_in(&dir.path().join("none")).is_empty());
}

#[test]
fn feature_cache_embeds_only_new_rows_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spec = fixture("tiny/tiny.yaml");
    let cache = root.join("cache");
    let embed = |data: &str, out: &str, cached: bool| -> (String, BTreeMap<String, (String, Vec<f32>)>) {
        let mut args = tiny_backbone_args(root, out, &[]);
        args[3] = s(&root.join(data)).to_owned();
        if cached {
            args.extend(["--cache".to_owned(), s(&cache).to_owned()]);
        }
        let log = String::from_utf8_lossy(&ok("graft-backbone", &args).stderr).into_owned();
        let mut rows = BTreeMap::new();
        for split in ["train", "val", "test"] {
            rows.extend(read_features(&root.join(format!("{out}/{split}.arrow"))).1);
        }
        (log, rows)
    };
    let preprocess = |csv: &Path, out: &str| {
        ok(
            "graft-preprocess",
            &["--input", s(csv), "--spec", s(&spec), "--out", s(&root.join(out)), "--id-column", "id", "-q"],
        );
    };
    preprocess(&fixture("tiny/reviews.csv"), "data");
    let (_, plain) = embed("data", "plain", false);
    let (log, first) = embed("data", "first", true);
    assert!(log.contains("0 rows reused, 80 embedded"), "{log}");
    assert_eq!(first, plain, "a cold cache changes nothing");
    let (log, second) = embed("data", "second", true);
    assert!(log.contains("80 rows reused, 0 embedded"), "{log}");
    assert_eq!(second, plain, "cached features are the computed ones");
    // Three new reviews: only they are embedded.
    let mut csv = std::fs::read_to_string(fixture("tiny/reviews.csv")).unwrap();
    csv.push_str("n1,a sharp and moving film,pos,a\nn2,dull and slow,neg,a\nn3,charming sharp clever,pos,b\n");
    std::fs::write(root.join("more.csv"), csv).unwrap();
    preprocess(&root.join("more.csv"), "more");
    let (log, grown) = embed("more", "grown", true);
    assert!(log.contains("80 rows reused, 3 embedded"), "{log}");
    let (_, fresh) = embed("more", "fresh", false);
    assert_eq!(grown.keys().collect::<Vec<_>>(), fresh.keys().collect::<Vec<_>>());
    for (id, (_, f)) in &fresh {
        let worst = f.iter().zip(&grown[id].1).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "row {id}: cached and uncached differ by {worst}");
    }
}

#[test]
fn max_and_mean_max_pooling_bound_and_extend_the_mean() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let mean = all_features(dir.path());
    for pooling in ["max", "mean_max"] {
        let out = format!("f-{pooling}");
        ok("graft-backbone", &tiny_backbone_args(dir.path(), &out, &["--pooling", pooling, "-q"]));
        let mut got = BTreeMap::new();
        for split in ["train", "val", "test"] {
            got.extend(read_features(&dir.path().join(format!("{out}/{split}.arrow"))).1);
        }
        assert_eq!(got.len(), mean.len());
        for (id, (_, m)) in &mean {
            let f = &got[id].1;
            // The max over tokens is at least their mean; mean_max is [mean, max].
            let max = if pooling == "max" { &f[..] } else { &f[16..] };
            assert_eq!(f.len(), if pooling == "max" { 16 } else { 32 }, "{pooling} width");
            assert!(max.iter().zip(m).all(|(x, y)| x + 1e-6 >= *y), "{pooling} row {id}");
            assert!(max.iter().zip(m).any(|(x, y)| x > y), "{pooling} row {id} has more than one token");
            if pooling == "mean_max" {
                assert!(f[..16].iter().zip(m).all(|(a, b)| (a - b).abs() < 1e-6), "row {id}: first half is the mean");
            }
        }
    }
    // Global average pooling needs feature maps, not token vectors.
    let out = dir.path().join("gap");
    let err = user_error("graft-backbone", &tiny_backbone_args(dir.path(), "gap", &["--pooling", "gap"]));
    assert!(err.contains("last_hidden_state") && err.contains("[batch, channels, height, width]"), "{err}");
    assert!(files_in(&out).is_empty());
}

#[test]
fn preprocess_truncates_without_padding_and_splits_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected();
    let run_split = |out: &str, seed: &str| {
        let out = dir.path().join(out);
        let (input, spec) = (fixture("tiny/reviews.csv"), fixture("tiny/tiny.yaml"));
        ok(
            "graft-preprocess",
            &["--input", s(&input), "--spec", s(&spec), "--out", s(&out), "--id-column", "id", "--seed", seed, "-q"],
        );
        ["train", "val", "test"].map(|split| read_tokens(&out.join(format!("{split}.arrow"))))
    };
    let a = run_split("a", "1");
    let mut lengths = std::collections::BTreeSet::new();
    for (_, rows) in &a {
        for (id, (_, tokens)) in rows {
            assert_eq!(tokens.len() as u64, expected[id]["tokens"].as_u64().unwrap(), "row {id}");
            assert!(tokens.len() <= 12 && !tokens.contains(&0), "row {id} padded or too long: {tokens:?}");
            lengths.insert(tokens.len());
        }
    }
    assert!(lengths.len() > 3 && lengths.contains(&12), "lengths {lengths:?}");
    // 40 rows per class: 4 val and 4 test each.
    for (i, want) in [(1, 8), (2, 8)] {
        let rows = &a[i].1;
        assert_eq!(rows.len(), want);
        assert_eq!(rows.values().filter(|(l, _)| l == "pos").count(), want / 2);
    }
    assert_eq!(a[0].0.labels, ["neg", "pos"]);
    let ids = |x: &[(graft_core::artifact::Provenance, Rows<i32>); 3]| -> Vec<Vec<String>> {
        x.iter().map(|(_, r)| r.keys().cloned().collect()).collect()
    };
    assert_eq!(ids(&a), ids(&run_split("b", "1")));
    assert_ne!(ids(&a), ids(&run_split("c", "2")));
}

#[test]
fn finetune_is_byte_for_byte_deterministic_and_evaluate_agrees_with_its_predictions() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head, eval) = (dir.path().join("features"), dir.path().join("head"), dir.path().join("eval"));
    let train = |_: ()| {
        ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "0.1,1,10", "-q"]);
        (std::fs::read(head.join("head.safetensors")).unwrap(), std::fs::read(head.join("head.json")).unwrap())
    };
    let first = train(());
    assert_eq!(first, train(()));
    let out = ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval)]);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    let m = &metrics["metrics"];
    // Recount accuracy and the confusion matrix from predictions.arrow.
    let mut r = graft_core::artifact::ArtifactReader::open(&eval.join("predictions.arrow")).unwrap();
    let b = r.next_batch().unwrap().unwrap();
    let col =
        |n: &str| graft_core::artifact::column::<arrow::array::StringArray>(&b, n, Path::new("p"), "").unwrap().clone();
    let (label, pred) = (col("label"), col("pred"));
    let correct = (0..b.num_rows()).filter(|&i| label.value(i) == pred.value(i)).count();
    assert_eq!(b.num_rows(), 8);
    assert!((m["accuracy"].as_f64().unwrap() - correct as f64 / 8.0).abs() < 1e-12);
    let confusion: Vec<Vec<u64>> = serde_json::from_value(m["confusion"].clone()).unwrap();
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 8);
    assert!(String::from_utf8_lossy(&out.stdout).contains("accuracy"));
}

/// Writes `ROOT/p.yaml`: the four stages on a copy of the fixture reviews, outputs under `ROOT/run`.
fn tiny_pipeline(root: &Path) -> std::path::PathBuf {
    std::fs::copy(fixture("tiny/reviews.csv"), root.join("reviews.csv")).unwrap();
    let spec = fixture("tiny/tiny.yaml");
    let yaml = format!(
        "version: 1\nstages:\n  preprocess:\n    cmd: graft-preprocess\n    args: {{input: reviews.csv, spec: {spec}, id_column: id, out: run/data}}\n    deps: [reviews.csv]\n    outs: [run/data]\n  backbone:\n    cmd: graft-backbone\n    args: {{spec: {spec}, input: run/data, out: run/features}}\n    deps: [run/data]\n    outs: [run/features]\n  finetune:\n    cmd: graft-finetune\n    args: {{features: run/features, c: [0.1, 1], out: run/head}}\n    deps: [run/features]\n    outs: [run/head]\n  evaluate:\n    cmd: graft-evaluate\n    args: {{head: run/head, features: run/features, out: run/eval}}\n    deps: [run/head, run/features]\n    outs: [run/eval]\n",
        spec = s(&spec)
    );
    let pipeline = root.join("p.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    pipeline
}

#[test]
fn pipeline_runs_every_stage_then_skips_what_has_not_changed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pipeline = tiny_pipeline(root);
    let graft = |_: ()| String::from_utf8_lossy(&ok("graft", &["run", s(&pipeline)]).stderr).into_owned();
    let first = graft(());
    assert!(first.contains("4 stages: 4 ran"), "{first}");
    assert!(root.join("run/eval/metrics.json").is_file() && root.join("p.lock").is_file());
    let second = graft(());
    assert!(second.contains("4 stages: 0 ran"), "{second}");
    // A changed input reruns everything downstream of it.
    let csv = std::fs::read_to_string(root.join("reviews.csv")).unwrap();
    std::fs::write(root.join("reviews.csv"), csv.replace("r000,", "r000x,")).unwrap();
    let third = graft(());
    assert!(third.contains("4 stages: 4 ran"), "{third}");
}

#[test]
fn run_selects_stages_with_until_from_and_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pipeline = tiny_pipeline(root);
    let graft = |args: &[&str]| {
        let mut all = vec!["run", s(&pipeline)];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&ok("graft", &all).stderr).into_owned()
    };
    let log = graft(&["--until", "backbone"]);
    assert!(log.contains("2 stages: 2 ran"), "{log}");
    assert!(root.join("run/features/train.arrow").is_file() && !root.join("run/head").exists());
    let log = graft(&["--from", "finetune"]);
    assert!(log.contains("2 stages: 2 ran"), "{log}");
    assert!(root.join("run/eval/metrics.json").is_file());
    // -q quiets the stages too; only the runner's summary is missing at warn level.
    let log = graft(&["--only", "evaluate", "--force", "-q"]);
    assert!(!log.contains("INFO"), "{log}");
    let err = user_error("graft", &["run", s(&pipeline), "--only", "train"]);
    assert!(err.contains("p.yaml") && err.contains("no stage `train`") && err.contains("finetune"), "{err}");
    let err = user_error("graft", &["run", s(&pipeline), "--from", "finetune", "--until", "backbone"]);
    assert!(err.contains("`--from finetune` and `--until backbone` select no stage together"), "{err}");
    let err = user_error("graft", &["run", s(&pipeline), "--jobs", "0"]);
    assert!(err.contains("'--jobs <JOBS>': 0 is not in 1.."), "{err}");
}

#[test]
fn exported_makefile_and_script_reproduce_graft_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pipeline = tiny_pipeline(root);
    ok("graft", &["run", s(&pipeline), "-q"]);
    let reference = all_features(&root.join("run"));
    let metrics = |_: ()| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(root.join("run/eval/metrics.json")).unwrap()).unwrap()
    };
    let reference_metrics = metrics(());
    let bin_dir = format!("{}/", bin("graft").parent().unwrap().display());
    for (format, file) in [("make", "p.mk"), ("sh", "p.sh")] {
        let text = ok("graft", &["export", "--to", format, s(&pipeline)]).stdout;
        std::fs::write(root.join(file), text).unwrap();
        std::fs::remove_dir_all(root.join("run")).unwrap();
        let mut cmd = if format == "make" {
            let mut c = std::process::Command::new("make");
            c.args(["-s", "-f", file, &format!("GRAFT_BIN={bin_dir}")]);
            c
        } else {
            let mut c = std::process::Command::new("sh");
            c.arg(file).env("GRAFT_BIN", &bin_dir);
            c
        };
        let out = cmd.current_dir(root).env("RUST_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        let got = all_features(&root.join("run"));
        assert_eq!(got.keys().collect::<Vec<_>>(), reference.keys().collect::<Vec<_>>(), "{format}");
        for (id, (_, f)) in &got {
            let want = &reference[id].1;
            assert!(f.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{format}: row {id}");
        }
        assert_eq!(metrics(())["metrics"], reference_metrics["metrics"], "{format}");
    }
}

mod bad_input {
    use super::*;

    fn preprocess_fails(csv: &[u8], extra: &[&str]) -> (String, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        std::fs::write(&input, csv).unwrap();
        let (out, spec) = (dir.path().join("out"), fixture("tiny/tiny.yaml"));
        let mut args = vec!["--input", s(&input), "--spec", s(&spec), "--out", s(&out)];
        args.extend_from_slice(extra);
        let err = user_error("graft-preprocess", &args);
        assert!(err.contains("in.csv"), "message does not name the file: {err}");
        (err, files_in(&out))
    }

    #[test]
    fn missing_column() {
        let (err, files) = preprocess_fails(b"text,label\nfine film,pos\nbad film,neg\n", &["--text-column", "review"]);
        assert!(err.contains("no column `review`") && err.contains("`text`"), "{err}");
        assert!(files.is_empty(), "{files:?}");
    }

    #[test]
    fn empty_file() {
        let (err, files) = preprocess_fails(b"", &[]);
        assert!(err.contains("no data rows"), "{err}");
        assert!(files.is_empty());
        let (err, _) = preprocess_fails(b"text,label\n", &[]);
        assert!(err.contains("no data rows"), "{err}");
        let (err, _) = preprocess_fails(b",\ngood film,pos\n", &[]);
        assert!(err.contains("has no column names: its first line, the header, is blank"), "{err}");
    }

    #[test]
    fn evaluate_shows_rows_only_from_the_data_its_features_were_made_from() {
        let dir = tempfile::tempdir().unwrap();
        features(dir.path(), &[]);
        let (feats, head, eval) = (dir.path().join("features"), dir.path().join("head"), dir.path().join("eval"));
        ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "1", "-q"]);
        // The same reviews split with another seed: other test rows under the same ids.
        let (reviews, spec, other) = (fixture("tiny/reviews.csv"), fixture("tiny/tiny.yaml"), dir.path().join("other"));
        let args = ["--input", s(&reviews), "--spec", s(&spec), "--out", s(&other), "--id-column", "id", "--seed", "7"];
        ok("graft-preprocess", &[&args[..], &["-q"]].concat());
        let args = ["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "--data"];
        let err = user_error("graft-evaluate", &[&args[..], &[s(&other)]].concat());
        assert!(
            err.contains("features/test.arrow` were not made from `") && err.contains("other/test.arrow`"),
            "{err}"
        );
        assert!(files_in(&eval).is_empty());
        ok("graft-evaluate", &[&args[..], &[s(&dir.path().join("data")), "-q"]].concat());
    }

    #[test]
    fn label_column_is_the_text_column() {
        let (err, files) = preprocess_fails(b"text,label\nfine film,pos\nbad film,neg\n", &["--label-column", "text"]);
        assert!(err.contains("the label column `text` is also the column of the inputs"), "{err}");
        assert!(files.is_empty(), "{files:?}");
    }

    #[test]
    fn a_flag_of_the_other_kind_of_backbone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (input, spec, out) = (fixture("tiny/reviews.csv"), fixture("tiny/tiny.yaml"), dir.path().join("out"));
        for flag in [&["--augment-views", "2"][..], &["--strict"], &["--path-column", "p"], &["--augment-flip"]] {
            let args = [&["--input", s(&input), "--spec", s(&spec), "--out", s(&out)][..], flag];
            let err = user_error("graft-preprocess", &args.concat());
            assert!(err.contains(&format!("`{}` applies to an image backbone", flag[0])), "{err}");
            assert!(err.contains("tiny.yaml` is a text one"), "{err}");
            assert!(files_in(&out).is_empty());
        }
        let spec = fixture("tiny-images/tiny-cnn.yaml");
        let folder = fixture("tiny-images/folder");
        for flag in [&["--max-length", "7"][..], &["--text-column", "review"]] {
            let args = [&["--input", s(&folder), "--spec", s(&spec), "--out", s(&out)][..], flag];
            let err = user_error("graft-preprocess", &args.concat());
            assert!(err.contains(&format!("`{}` applies to a text backbone; ", flag[0])), "{err}");
            assert!(err.contains("tiny-cnn.yaml` is an image one"), "{err}");
            assert!(files_in(&out).is_empty());
        }
        // The backbone's flags too: of the other kind, or without the flag they go with.
        let images = dir.path().join("images");
        ok("graft-preprocess", &["--input", s(&folder), "--spec", s(&spec), "--out", s(&images), "-q"]);
        let refused = [
            (&["--batch-tokens", "64"][..], "`--batch-tokens` applies to a text backbone; "),
            (&["--cpu-skip-layer-norm-fusion"], "`--cpu-skip-layer-norm-fusion` applies to a text backbone; "),
            (&["--tokens-dtype", "float32"], "`--tokens-dtype` applies with `--tokens`, which is not given"),
            (&["--allow-cpu-fallback"], "`--allow-cpu-fallback` applies with `--device cuda` or `cuda:N`, not `cpu`"),
        ];
        for (flag, why) in refused {
            let args = [&["--spec", s(&spec), "--input", s(&images), "--out", s(&out)][..], flag];
            let err = user_error("graft-backbone", &args.concat());
            assert!(err.contains(why), "{err}");
            assert!(files_in(&out).is_empty());
        }
    }

    #[test]
    fn single_class() {
        let (err, files) = preprocess_fails(b"text,label\ngood film,pos\ngreat film,pos\n", &[]);
        assert!(err.contains("single class (`pos`)"), "{err}");
        assert!(files.is_empty());
    }

    #[test]
    fn non_utf8_byte() {
        let (err, files) = preprocess_fails(b"text,label\ngood film,pos\nbad \xff film,neg\n", &[]);
        assert!(err.contains("not valid UTF-8") && err.contains("line 3"), "{err}");
        assert!(files.is_empty());
    }

    #[test]
    fn model_inputs_do_not_match_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("bad.yaml");
        let text = std::fs::read_to_string(fixture("tiny/tiny.yaml")).unwrap();
        let tiny = fixture("tiny");
        let text = text
            .replace("model: model.onnx", &format!("model: {}/model.onnx", s(&tiny)))
            .replace("tokenizer: tokenizer.json", &format!("tokenizer: {}/tokenizer.json", s(&tiny)));
        std::fs::write(&spec, format!("{text}inputs:\n  input_ids: ids\n")).unwrap();
        let data = dir.path().join("data");
        ok(
            "graft-preprocess",
            &["--input", s(&fixture("tiny/reviews.csv")), "--spec", s(&spec), "--out", s(&data), "-q"],
        );
        let out = dir.path().join("features");
        let err = user_error("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&out)]);
        assert!(err.contains("model.onnx") && err.contains("no input `ids`") && err.contains("`input_ids`"), "{err}");
        assert!(files_in(&out).is_empty());
    }

    #[test]
    fn unknown_flag_and_unknown_pipeline_key() {
        let err = user_error("graft-finetune", &["--features", "f", "--out", "o", "--learning-rate", "1"]);
        assert!(err.contains("--learning-rate"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let pipeline = dir.path().join("p.yaml");
        std::fs::write(&pipeline, "version: 1\nstages:\n  a:\n    cmd: graft-preprocess\n    dep: [x]\n").unwrap();
        let err = user_error("graft", &["run", s(&pipeline)]);
        assert!(err.contains("p.yaml") && err.contains("unknown field `dep`") && err.contains("line 5"), "{err}");
    }

    #[test]
    fn tokens_from_another_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (input, spec) = (fixture("tiny/reviews.csv"), fixture("tiny/tiny.yaml"));
        ok("graft-preprocess", &["--input", s(&input), "--spec", s(&spec), "--out", s(&data), "-q"]);
        // The same model with a tokenizer that differs by one vocabulary entry.
        let tiny = fixture("tiny");
        let tokenizer =
            std::fs::read_to_string(tiny.join("tokenizer.json")).unwrap().replace("\"clever\"", "\"cleverer\"");
        std::fs::write(dir.path().join("tokenizer.json"), tokenizer).unwrap();
        let other = dir.path().join("other.yaml");
        let text = std::fs::read_to_string(&spec)
            .unwrap()
            .replace("model: model.onnx", &format!("model: {}/model.onnx", s(&tiny)));
        std::fs::write(&other, text).unwrap();
        let out = dir.path().join("features");
        let err = user_error("graft-backbone", &["--spec", s(&other), "--input", s(&data), "--out", s(&out)]);
        assert!(
            err.contains("data/train.arrow") && err.contains("another tokenizer") && err.contains("other.yaml"),
            "{err}"
        );
        assert!(files_in(&out).is_empty());
    }

    #[test]
    fn features_from_another_backbone() {
        let dir = tempfile::tempdir().unwrap();
        features(dir.path(), &[]);
        let (feats, head) = (dir.path().join("features"), dir.path().join("head"));
        ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "1", "-q"]);
        let other = dir.path().join("other");
        ok("graft-backbone", &tiny_backbone_args(dir.path(), "other", &["--pooling", "cls", "-q"]));
        let out = dir.path().join("eval");
        let err = user_error("graft-evaluate", &["--head", s(&head), "--features", s(&other), "--out", s(&out)]);
        assert!(
            err.contains("other/test.arrow") && err.contains("pooling cls") && err.contains("pooling mean"),
            "{err}"
        );
        assert!(files_in(&out).is_empty());
    }

    #[test]
    fn row_longer_than_the_spec_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (data, spec) = (dir.path().join("data"), fixture("tiny/tiny.yaml"));
        // Preprocess refuses a maximum length past the spec's.
        let reviews = fixture("tiny/reviews.csv");
        let args = ["--input", s(&reviews), "--spec", s(&spec), "--out", s(&data), "-q"];
        let err = user_error("graft-preprocess", &[&args[..], &["--max-length", "40"]].concat());
        assert!(err.contains("`--max-length 40`: expected 1 to 12, the most that spec"), "{err}");
        let err = user_error("graft-preprocess", &[&args[..], &["--max-length", "0"]].concat());
        assert!(err.contains("`--max-length 0`: expected 1 to 12"), "{err}");
        // Tokens up to 40 long, from a copy of the spec that accepts 40 (the backbone checks
        // what it reads all the same).
        let long = dir.path().join("long.yaml");
        let text = std::fs::read_to_string(&spec).unwrap().replace("max_length: 12", "max_length: 40");
        let base = fixture("tiny");
        let text = text
            .replace("model.onnx", s(&base.join("model.onnx")))
            .replace("tokenizer.json", s(&base.join("tokenizer.json")));
        std::fs::write(&long, text).unwrap();
        ok("graft-preprocess", &["--input", s(&reviews), "--spec", s(&long), "--out", s(&data), "-q"]);
        let out = dir.path().join("features");
        let err = user_error("graft-backbone", &["--spec", s(&spec), "--input", s(&data), "--out", s(&out)]);
        assert!(
            err.contains("train.arrow") && err.contains("tokens; spec") && err.contains("accepts at most 12"),
            "{err}"
        );
        assert!(files_in(&out).is_empty());
    }
}

#[test]
fn a_specs_batch_size_is_used_unless_given_and_features_do_not_depend_on_it() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let text = std::fs::read_to_string(fixture("tiny/tiny.yaml")).unwrap();
    let tiny = fixture("tiny");
    let spec = dir.path().join("batched.yaml");
    let text = text
        .replace("model: model.onnx", &format!("model: {}", s(&tiny.join("model.onnx"))))
        .replace("tokenizer: tokenizer.json", &format!("tokenizer: {}", s(&tiny.join("tokenizer.json"))));
    std::fs::write(&spec, format!("{text}batch_size: 3\n")).unwrap();
    let data = dir.path().join("data");
    let run = |out: &str, extra: &[&str]| {
        let args = [&["--spec", s(&spec), "--input", s(&data), "--out", out][..], extra].concat();
        String::from_utf8_lossy(&ok("graft-backbone", &args).stderr).into_owned()
    };
    let (spec_out, flag_out) = (dir.path().join("spec-batches/features"), dir.path().join("flag-batches/features"));
    assert!(run(s(&spec_out), &[]).contains("batches of 3;"));
    assert!(run(s(&flag_out), &["--batch-size", "5"]).contains("batches of 5;"));
    // Padding is masked: the batches change no feature beyond float32 rounding (1e-5).
    let (a, b) = (all_features(&dir.path().join("spec-batches")), all_features(dir.path()));
    assert_eq!(a.len(), b.len());
    for (id, (_, f)) in &a {
        let worst = f.iter().zip(&b[id].1).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{id}: {worst}");
    }
}
