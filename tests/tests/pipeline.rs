//! `graft` pipelines end to end on the tiny fixture: sweeps, parallel runs, status,
//! resuming after a failure.

use std::path::Path;

use graft_e2e::*;
use serde_json::Value;

fn run(args: &[&str]) -> (String, String) {
    let out = ok("graft", args);
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn sweep_shares_stages_ranks_combinations_and_runs_the_same_in_parallel() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let serial = sweep_pipeline(one.path());
    let (table, log) = run(&["run", s(&serial)]);
    // 1 preprocess + 2 backbones (one per pooling) + 4 heads + 4 evaluations.
    assert!(log.contains("11 stages: 11 ran"), "{log}");
    assert_eq!(log.matches(": graft-backbone --spec").count(), 2, "{log}");
    assert_eq!(log.lines().filter(|l| l.contains("stage `backbone[") && l.contains("done in")).count(), 2, "{log}");
    assert!(log.contains("11 stages: 11 ran, 0 up to date, in ") && log.contains("; slowest: "), "{log}");
    let sweep = json(&one.path().join("sweep.sweep.json"));
    let rows = sweep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let acc: Vec<f64> = rows.iter().map(|r| r["metrics"]["accuracy"].as_f64().unwrap()).collect();
    assert!(acc.windows(2).all(|w| w[0] >= w[1]), "best first: {acc:?}");
    // Every row but the best is paired with it on the same rows.
    assert!(rows[0].get("versus_best").is_none());
    for (r, a) in rows.iter().zip(&acc).skip(1) {
        let v = &r["versus_best"];
        let difference = v["difference"].as_f64().unwrap();
        assert!((difference - (a - acc[0])).abs() < 1e-12, "{v} against {a} - {}", acc[0]);
        let (low, high, p) =
            (v["interval"][0].as_f64().unwrap(), v["interval"][1].as_f64().unwrap(), v["mcnemar_p"].as_f64().unwrap());
        assert!(low <= high && (0.0..=1.0).contains(&p), "{v}");
    }
    assert!(table.contains("vs best (paired)") && table.contains("McNemar p"), "{table}");
    // What each row's features cost, from the lock file of this run: seconds, and the tokens
    // of the data splits over them.
    assert!(table.contains("features took") && table.contains("tokens/s"), "{table}");
    let tokens: usize = ["train", "val", "test"]
        .iter()
        .map(|split| one.path().join(format!("run/data/{split}.arrow")))
        .filter(|p| p.exists())
        .map(|p| read_tokens(&p).1.values().map(|(_, t)| t.len()).sum::<usize>())
        .sum();
    let lock = json(&one.path().join("sweep.lock"));
    for pooling in ["mean", "cls"] {
        let seconds = lock["stages"][format!("backbone[pooling={pooling}]")]["seconds"].as_f64().unwrap();
        let rate = format!("{:.0}", tokens as f64 / seconds);
        let shown = table.lines().filter(|l| l.starts_with(pooling)).all(|l| l.split_whitespace().any(|w| w == rate));
        assert!(shown, "{pooling}: {tokens} tokens in {seconds} s = {rate}/s in\n{table}");
    }
    for r in rows {
        let (pooling, c) = (r["combination"]["pooling"].as_str().unwrap(), r["combination"]["c"].as_str().unwrap());
        let m = json(&one.path().join(format!("run/eval-{pooling}-{c}/metrics.json")));
        assert_eq!(m["metrics"]["accuracy"], r["metrics"]["accuracy"]);
        assert!(table.contains(pooling), "{table}");
    }
    // Two jobs at a time give the same results, here with the run outside the pipeline's
    // folder (`../run`), where the table still finds each row's cost.
    std::fs::create_dir(two.path().join("pipelines")).unwrap();
    let parallel = sweep_pipeline(&two.path().join("pipelines"));
    let (table, log) = run(&["run", s(&parallel), "--jobs", "2", "--set", "params.run=../run"]);
    assert!(log.contains("11 stages: 11 ran") && two.path().join("run/data").is_dir(), "{log}");
    let costs = table.lines().skip(1).filter(|l| l.split_whitespace().any(|w| w == "s")).count();
    assert_eq!(costs, 4, "every row shows what its features took:\n{table}");
    // Each line a stage printed is prefixed by its name, whole.
    let epoch_lines = log.lines().filter(|l| l.starts_with("[finetune[pooling=mean,c=0.1]] ")).count();
    assert!(epoch_lines > 0, "{log}");
    assert!(log.lines().filter(|l| l.contains("kept C=")).all(|l| l.starts_with("[finetune[")), "{log}");
    assert_eq!(json(&two.path().join("pipelines/sweep.sweep.json")), sweep);
    let (_, log) = run(&["run", s(&parallel), "--jobs", "2", "--set", "params.run=../run"]);
    assert!(log.contains("11 stages: 0 ran"), "{log}");
}

#[test]
fn status_says_what_is_stale_and_why_and_a_failed_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pipeline = sweep_pipeline(root);
    let (status, _) = run(&["status", s(&pipeline)]);
    assert!(status.contains("preprocess: stale: never ran"), "{status}");
    assert!(status.contains("upstream stage `preprocess` will rerun"), "{status}");

    // A stage that fails: the stages before it stay recorded, only it and what follows rerun.
    let err = user_error("graft", &["run", s(&pipeline), "--set", "evaluate.split=nosuch"]);
    assert!(err.contains("stage `evaluate[") && err.contains("failed"), "{err}");
    let (_, log) = run(&["run", s(&pipeline)]);
    assert!(log.contains("stage `preprocess`: unchanged, skipped"), "{log}");
    assert!(log.contains("stage `backbone[pooling=mean]`: unchanged, skipped"), "{log}");
    assert!(log.contains("stage `evaluate[pooling=mean,c=0.1]`: graft-evaluate"), "{log}");

    let (status, _) = run(&["status", s(&pipeline)]);
    assert_eq!(status.matches("up to date").count(), 11, "{status}");
    // A stage's name selects every stage expanded from it; `matrix.NAME=` narrows an axis.
    let (_, log) = run(&["run", s(&pipeline), "--only", "finetune"]);
    assert!(log.contains("4 stages: 0 ran"), "{log}");
    let (status, _) = run(&["status", s(&pipeline), "--set", "matrix.c=10"]);
    assert_eq!(status.matches("up to date").count(), 7, "{status}");
    assert!(!status.contains("c=0.1"), "{status}");
    // A head flag the head would ignore is refused before anything runs.
    let err = user_error("graft", &["run", s(&pipeline), "--set", "finetune.epochs=3"]);
    assert!(err.contains("`epochs` is a key of the mlp head, and the head is logistic_regression"), "{err}");
    let (status, _) = run(&["status", s(&pipeline), "--set", "finetune.max_iter=5"]);
    assert!(status.contains("finetune[pooling=cls,c=10]: stale: arguments changed"), "{status}");
    std::fs::write(root.join("reviews.csv"), std::fs::read_to_string(root.join("reviews.csv")).unwrap() + "\n")
        .unwrap();
    let (status, _) = run(&["status", s(&pipeline)]);
    assert!(status.contains("preprocess: stale: input `reviews.csv` changed"), "{status}");
    std::fs::remove_file(root.join("run/eval-cls-10/report.html")).unwrap();
    let (status, _) = run(&["status", s(&pipeline)]);
    assert!(status.contains("output `run/eval-cls-10` is missing or was modified"), "{status}");
}

#[test]
fn rows_on_other_rows_than_the_best_are_left_unpaired_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let path = sweep_pipeline(dir.path());
    // Evaluate every head on val and on test: rows of the other split cannot be paired.
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("  c: [0.1, 10]\n", "  c: [0.1, 10]\n  split: [val, test]\n")
        .replace("eval-${matrix.pooling}-${matrix.c}", "eval-${matrix.pooling}-${matrix.c}-${matrix.split}")
        .replace("args: {head:", "args: {split: \"${matrix.split}\", head:");
    std::fs::write(&path, yaml).unwrap();
    let (table, _) = run(&["run", s(&path)]);
    let sweep = json(&dir.path().join("sweep.sweep.json"));
    let rows = sweep["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8);
    let best_split = rows[0]["ranked_on"].as_str().unwrap();
    for r in &rows[1..] {
        let same = r["ranked_on"].as_str().unwrap() == best_split;
        assert_eq!(r.get("versus_best").is_some(), same, "{r}");
    }
    assert!(table.contains("not paired (other rows)"), "{table}");
}
