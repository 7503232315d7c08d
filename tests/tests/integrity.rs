//! Corrupt, hostile and mixed inputs: each is refused with exit 1 and a message naming the
//! file, never a panic, a hang or a silently different result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, Int32Array, ListArray, RecordBatch};
use graft_core::artifact::{ArtifactReader, ArtifactWriter};
use graft_core::rng::SplitMix64;
use graft_e2e::*;

/// preprocess, backbone (with a feature cache), finetune and evaluate on the fixture.
fn trained(dir: &Path) {
    features(dir, &["--cache", s(&dir.join("cache"))]);
    let (feats, head, eval) = (dir.join("features"), dir.join("head"), dir.join("eval"));
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&head), "--c", "1", "-q"]);
    ok("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&eval), "-q"]);
}

/// Runs `name` with `args`, killed after `limit`; returns (exit code, stderr).
fn run_within(name: &str, args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child =
        Command::new(bin(name)).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn binary");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            return (status.code(), stderr);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("{name} {args:?} still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn flipped_bytes_in_every_artifact_are_refused_never_a_panic_or_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    let cache_file = std::fs::read_dir(d.join("cache"))
        .unwrap()
        .flat_map(|space| std::fs::read_dir(space.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "arrow"))
        .expect("a cache file");
    let spec = fixture("tiny/tiny.yaml");
    let (data, feats, head, eval, out) =
        (d.join("data"), d.join("features"), d.join("head"), d.join("eval"), d.join("out"));
    let cache = d.join("cache");
    let backbone = ["graft-backbone", "--spec", s(&spec), "--input", s(&data), "--out", s(&out), "-q"];
    let cached = [&backbone[..], &["--cache", s(&cache)]].concat();
    let finetune = ["graft-finetune", "--features", s(&feats), "--out", s(&out), "--c", "1", "-q"];
    let evaluate = ["graft-evaluate", "--head", s(&head), "--features", s(&feats), "--out", s(&out), "-q"];
    let compare = ["graft-evaluate", "compare", s(&eval), s(&eval)];
    let show = ["graft-evaluate", "show", s(&eval)];
    // Each file, and a stage that reads it.
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (data.join("train.arrow"), &backbone),
        (cache_file, &cached),
        (feats.join("train.arrow"), &finetune),
        (feats.join("test.arrow"), &evaluate),
        (head.join("head.safetensors"), &evaluate),
        (head.join("head.json"), &evaluate),
        (head.join("manifest.json"), &evaluate),
        (eval.join("predictions.arrow"), &compare),
        (eval.join("metrics.json"), &show),
        (eval.join("manifest.json"), &show),
    ];
    let mut rng = SplitMix64::new(11);
    for (file, command) in &cases {
        let good = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        for trial in 0..50 {
            let mut bytes = good.clone();
            let pos = rng.below(bytes.len());
            bytes[pos] ^= 1 << rng.below(8);
            std::fs::write(file, &bytes).unwrap();
            let (code, stderr) = run_within(command[0], &command[1..], Duration::from_secs(60));
            assert_eq!(code, Some(1), "{name}, trial {trial}, byte {pos}: {command:?}\n{stderr}");
            assert!(stderr.contains(name), "{name}, byte {pos}: the message names the file:\n{stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
        std::fs::write(file, &good).unwrap();
        let (code, stderr) = run_within(command[0], &command[1..], Duration::from_secs(60));
        assert_eq!(code, Some(0), "{name} restored: {stderr}");
    }
}

/// Rewrites head.json through `edit`, with a manifest that lists the new bytes, as a
/// hand-edited but self-consistent head would be.
#[test]
fn corrupt_parquet_inputs_are_refused_naming_the_file() {
    // Bytes Polars' reader trips on (scripts/make_fixtures.py): it panicked on the first two,
    // on the main thread and in a worker, and gave a short column for the third.
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture("tiny/tiny.yaml");
    for (name, message) in [
        ("corrupt-footer", "is corrupt: not a readable Parquet file ("),
        ("corrupt-page", "is corrupt: not a readable Parquet file ("),
        ("short-column", "is corrupt: column `label` holds 50 values, not the 82 of rows 0..82 its footer declares"),
    ] {
        let input = fixture(&format!("tiny/{name}.parquet"));
        let out = dir.path().join(name);
        let (code, err) = run_within(
            "graft-preprocess",
            &["--input", s(&input), "--spec", s(&spec), "--out", s(&out), "-q"],
            Duration::from_secs(60),
        );
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(&format!("{name}.parquet` {message}")), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: no panic report: {err}");
        assert!(!out.join("train.arrow").exists(), "{name}");
    }
}

#[test]
fn a_15_mb_text_keeps_its_first_words_tokens_in_bounded_memory() {
    // A field the size a CSV gets when a closing quote is missing: the tokenizer held about
    // 80 bytes per byte of text, 1.2 GB for a row like this, before it was given a prefix.
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let words = ["great", "film", "the", "dull", "movie", "plot", "and", "cast"];
    let mut rng = SplitMix64::new(4);
    let text: Vec<&str> = (0..2_500_000).map(|_| words[rng.below(words.len())]).collect();
    let spec = fixture("tiny/tiny.yaml");
    for (name, big) in [("whole", text.join(" ")), ("head", text[..200].join(" "))] {
        let mut csv = String::from("id,text,label\n");
        for i in 0..20 {
            csv.push_str(&format!("r{i},a short review {i},{}\n", ["neg", "pos"][i % 2]));
        }
        csv.push_str(&format!("big,{big},pos\n"));
        std::fs::write(d(&format!("{name}.csv")), csv).unwrap();
        let (input, out) = (d(&format!("{name}.csv")), d(name));
        let args = ["--input", s(&input), "--spec", s(&spec), "--id-column", "id", "--out", s(&out)];
        let peak =
            peak_rss_mb("graft-preprocess", &[&args[..], &["--val-fraction", "0", "--test-fraction", "0"]].concat());
        assert!(peak < 200.0, "{name}: peak RSS {peak:.0} MB for a {} MB row", big.len() / 1_000_000);
    }
    let (_, whole) = read_tokens(&d("whole/train.arrow"));
    let (_, head) = read_tokens(&d("head/train.arrow"));
    assert_eq!(whole["big"].1.len(), 12, "truncated at the spec's max_length");
    assert_eq!(whole["big"].1, head["big"].1, "the kept tokens are those of its first words");
}

#[test]
fn a_pipe_or_a_device_named_like_an_image_is_listed_not_read() {
    // Reading either never ends: a pipe blocks until a writer comes, /dev/zero fills memory.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(input.join(class)).unwrap();
        for i in 0..2 {
            let name = format!("{class}/0{i}.png");
            std::fs::copy(fixture(&format!("tiny-images/folder/{name}")), input.join(&name)).unwrap();
        }
    }
    let made = Command::new("mkfifo").arg(input.join("cat/pipe.png")).status().expect("mkfifo");
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", input.join("dog/zero.jpg")).unwrap();
    let (spec, out) = (fixture("tiny-images/tiny-cnn.yaml"), dir.path().join("data"));
    let args =
        ["--input", s(&input), "--spec", s(&spec), "--out", s(&out), "--val-fraction", "0", "--test-fraction", "0"];
    let (code, err) = run_within("graft-preprocess", &args, Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    for name in ["cat/pipe.png", "dog/zero.jpg"] {
        assert!(err.contains(&format!("{name}: not a regular file")), "{name} is listed: {err}");
    }
    assert_eq!(ArtifactReader::open(&out.join("train.arrow")).unwrap().provenance().rows, 4, "the four images");
}

/// Every file under `dir`, at any depth, with its bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        match path.is_dir() {
            true => files.extend(contents(&path)),
            false => files.push((path.clone(), std::fs::read(&path).unwrap())),
        }
    }
    files.sort();
    files
}

#[test]
fn an_output_folder_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    let spec = fixture("tiny/tiny.yaml");
    let (data, feats, head, eval, cut) =
        (d.join("data"), d.join("features"), d.join("head"), d.join("eval"), d.join("cut"));
    let (sp, da, fe, he, ev, cu) = (s(&spec), s(&data), s(&feats), s(&head), s(&eval), s(&cut));
    #[rustfmt::skip]
    ok("graft-backbone", &["--spec", sp, "--input", da, "--outputs", "hidden_state_1", "--tokens", "--out", cu, "-q"]);
    let predictions = eval.join("predictions.arrow");
    // Each command, the input its --out names, and that input's flag.
    #[rustfmt::skip]
    let cases: [(&[&str], &Path, &str); 7] = [
        (&["graft-backbone", "--spec", sp, "--input", da], &data, "--input"),
        (&["graft-backbone", "--spec", sp, "--input", da, "--cache", fe], &feats, "--cache"),
        (&["graft-finetune", "--features", fe, "--c", "1"], &feats, "--features"),
        (&["graft-evaluate", "--head", he, "--features", fe], &head, "--head"),
        (&["graft-evaluate", "fuse", ev, s(&predictions)], &eval, "member"),
        (&["graft-finetune", "layers", "--cut", cu, "--spec", sp, "--layers", "1"], &cut, "--cut"),
        (&["graft-preprocess", "--input", da, "--spec", sp], &data, "--input"),
    ];
    for (command, input, flag) in cases {
        // The output spelled another way than the input: through `..`, with a trailing `/`.
        let out = format!("{}/../{}/", eval.display(), input.file_name().unwrap().to_str().unwrap());
        let before = contents(input);
        let err = user_error(command[0], &[&command[1..], &["--out", out.as_str()][..]].concat());
        assert!(err.contains(&format!("is `{flag} ")) && err.contains("choose another folder"), "{command:?}: {err}");
        assert!(contents(input) == before, "{command:?} changed {}", input.display());
    }
}

fn edit_head(head: &Path, edit: impl Fn(&mut serde_json::Value)) {
    let mut info: serde_json::Value = serde_json::from_slice(&std::fs::read(head.join("head.json")).unwrap()).unwrap();
    edit(&mut info);
    let bytes = serde_json::to_vec_pretty(&info).unwrap();
    std::fs::write(head.join("head.json"), &bytes).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(head.join("manifest.json")).unwrap()).unwrap();
    manifest["files"]["head.json"] = blake3::hash(&bytes).to_hex().to_string().into();
    std::fs::write(head.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[test]
fn non_finite_temperatures_and_scores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    let (feats, head, out) = (d.join("features"), d.join("head"), d.join("out"));
    let evaluate = ["--head", s(&head), "--features", s(&feats), "--out", s(&out)];
    edit_head(&head, |info| info["temperature"] = 0.0.into());
    let err = user_error("graft-evaluate", &evaluate);
    assert!(err.contains("head") && err.contains("temperature 0 is not a finite positive number"), "{err}");
    // A positive temperature so small that every logit overflows: the scores are refused.
    edit_head(&head, |info| info["temperature"] = 1e-320.into());
    let err = user_error("graft-evaluate", &evaluate);
    assert!(err.contains("scores row 0") && err.contains("test.arrow") && err.contains("NaN or infinite"), "{err}");
    assert!(files_in(&out).is_empty(), "{:?}", files_in(&out));
}

#[test]
fn a_diverging_mlp_writes_no_head_and_names_the_epoch() {
    let dir = tempfile::tempdir().unwrap();
    features(dir.path(), &[]);
    let (feats, head) = (dir.path().join("features"), dir.path().join("head"));
    let args = ["--features", s(&feats), "--out", s(&head), "--head", "mlp", "--optimizer", "sgd", "--lr", "1e6"];
    let err = user_error("graft-finetune", &args);
    let epoch = err.split("training diverged at epoch ").nth(1).and_then(|r| r.split(':').next());
    assert!(epoch.is_some_and(|e| e.parse::<usize>().is_ok_and(|e| (1..=50).contains(&e))), "{err}");
    assert!(files_in(&head).is_empty(), "{:?}", files_in(&head));
}

#[test]
fn a_head_mixing_two_runs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    let (feats, head, other) = (d.join("features"), d.join("head"), d.join("other"));
    ok("graft-finetune", &["--features", s(&feats), "--out", s(&other), "--c", "100", "-q"]);
    std::fs::copy(other.join("head.safetensors"), head.join("head.safetensors")).unwrap();
    let err = user_error("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&d.join("out"))]);
    assert!(err.contains("head.safetensors") && err.contains("mixes files of two runs"), "{err}");
    std::fs::remove_file(head.join("manifest.json")).unwrap();
    let err = user_error("graft-evaluate", &["--head", s(&head), "--features", s(&feats), "--out", s(&d.join("out"))]);
    assert!(err.contains("manifest.json") && err.contains("is not a complete head folder"), "{err}");
}

/// Rewrites a split file batch by batch through `edit`, keeping its schema and provenance.
fn rewrite(path: &Path, edit: impl Fn(RecordBatch) -> RecordBatch) {
    let mut r = ArtifactReader::open(path).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = r.next_batch().unwrap() {
        batches.push(edit(b));
    }
    let mut w = ArtifactWriter::create(path, &r.schema()).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap().commit().unwrap();
}

#[test]
fn a_token_id_outside_the_vocabulary_is_refused_before_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    features(d, &[]);
    let path = d.join("data/train.arrow");
    let vocab = ArtifactReader::open(&path).unwrap().provenance().tokenizer.clone().unwrap().vocab_size;
    rewrite(&path, |batch| {
        let i = batch.schema().index_of("input_ids").unwrap();
        let lists = batch.column(i).as_any().downcast_ref::<ListArray>().unwrap();
        let mut values = lists.values().as_any().downcast_ref::<Int32Array>().unwrap().values().to_vec();
        values[lists.value_offsets()[2] as usize + 1] = vocab as i32;
        let arrow::datatypes::DataType::List(field) = lists.data_type() else { panic!("a list column") };
        let edited = ListArray::new(field.clone(), lists.offsets().clone(), Arc::new(Int32Array::from(values)), None);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns[i] = Arc::new(edited);
        RecordBatch::try_new(batch.schema(), columns).unwrap()
    });
    let spec = fixture("tiny/tiny.yaml");
    let err =
        user_error("graft-backbone", &["--spec", s(&spec), "--input", s(&d.join("data")), "--out", s(&d.join("f"))]);
    assert!(err.contains("train.arrow") && err.contains("row 2"), "{err}");
    assert!(err.contains(&format!("token id {vocab}, outside the tokenizer's {vocab} ids")), "{err}");
}

#[test]
fn an_ort_dylib_path_naming_nothing_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    features(d, &[]);
    let spec = fixture("tiny/tiny.yaml");
    let out = Command::new(bin("graft-backbone"))
        .args(["--spec", s(&spec), "--input", s(&d.join("data")), "--out", s(&d.join("f"))])
        .env("ORT_DYLIB_PATH", d.join("no-such-lib.so"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no-such-lib.so") && stderr.contains("ORT_DYLIB_PATH names no file"), "{stderr}");
}

#[test]
fn a_regression_head_on_class_labels_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trained(d);
    let head = d.join("head");
    edit_head(&head, |info| {
        info["task"] = "regression".into();
        info["labels"] = serde_json::json!([]);
    });
    let err = user_error(
        "graft-evaluate",
        &["--head", s(&head), "--features", s(&d.join("features")), "--out", s(&d.join("o"))],
    );
    assert!(
        err.contains("trained for regression, but features") && err.contains("labelled for classification"),
        "{err}"
    );
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

#[test]
fn one_run_of_a_pipeline_at_a_time_and_its_stages_end_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A stage that blocks: preprocess opening a named pipe nobody writes to.
    let fifo = d.join("blocking-input.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let spec = fixture("tiny/tiny.yaml");
    let yaml = format!(
        "version: 1\nstages:\n  prep:\n    cmd: graft-preprocess\n    args: {{input: '{}', spec: '{}', out: out/data}}\n    outs: [out/data]\n",
        s(&fifo),
        s(&spec)
    );
    let pipeline = d.join("p.yaml");
    std::fs::write(&pipeline, yaml).unwrap();
    let mut runner = Command::new(bin("graft")).args(["run", s(&pipeline)]).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while processes_mentioning("blocking-input.csv").iter().all(|&p| p == runner.id()) {
        assert!(started.elapsed() < Duration::from_secs(30), "the stage never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = user_error("graft", &["run", s(&pipeline)]);
    assert!(err.contains(&format!("is being run by process {}", runner.id())), "{err}");

    runner.kill().unwrap(); // SIGKILL: the runner cannot clean up after itself.
    runner.wait().unwrap();
    let killed = Instant::now();
    while !processes_mentioning("blocking-input.csv").is_empty() {
        assert!(killed.elapsed() < Duration::from_secs(10), "the stage outlived its runner");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The lock went with the runner: the next run takes it and runs the stage.
    std::fs::remove_file(&fifo).unwrap();
    std::fs::copy(fixture("tiny/reviews.csv"), &fifo).unwrap();
    ok("graft", &["run", s(&pipeline)]);
    assert!(d.join("out/data/train.arrow").is_file());
}
