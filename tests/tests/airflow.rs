//! `graft export --to airflow` loaded by real Apache Airflow (pinned, installed into
//! `.graft/airflow-venv` by `make test`): no import errors, the task graph is the
//! pipeline's, a sharded stage is a mapped task plus a merge, and the commands Airflow
//! would run reproduce `graft run`'s metrics.

use std::path::{Path, PathBuf};
use std::process::Command;

use graft_e2e::*;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tiny pipeline with the backbone in two shards.
fn pipeline(root: &Path) -> PathBuf {
    std::fs::copy(fixture("tiny/reviews.csv"), root.join("reviews.csv")).unwrap();
    let spec = s(&fixture("tiny/tiny.yaml")).to_owned();
    let yaml = format!(
        "version: 1\nstages:\n  preprocess:\n    cmd: graft-preprocess\n    args: {{input: reviews.csv, spec: {spec}, id_column: id, out: run/data}}\n    deps: [reviews.csv]\n    outs: [run/data]\n  backbone:\n    cmd: graft-backbone\n    shards: 2\n    args: {{spec: {spec}, input: run/data, out: run/features}}\n    deps: [run/data]\n    outs: [run/features]\n  finetune:\n    cmd: graft-finetune\n    args: {{features: run/features, c: [0.1, 1], out: run/head}}\n    deps: [run/features]\n    outs: [run/head]\n  evaluate:\n    cmd: graft-evaluate\n    args: {{head: run/head, features: run/features, out: run/eval}}\n    deps: [run/head, run/features]\n    outs: [run/eval]\n"
    );
    let path = root.join("tiny-sharded.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn airflow_loads_the_exported_dag_and_its_commands_reproduce_graft_run() {
    let (dir, root, dags, home) = folders();
    let path = pipeline(&root);
    let dag = ok("graft", &["export", "--to", "airflow", s(&path)]).stdout;
    std::fs::write(dags.join("tiny_sharded.py"), dag).unwrap();
    let tasks = load_dag(&dags, &home, "tiny-sharded");
    let upstream = |t: &str| -> Vec<String> { serde_json::from_value(tasks[t]["upstream"].clone()).unwrap() };
    assert_eq!(tasks.as_object().unwrap().len(), 5, "{tasks}");
    assert!(upstream("preprocess").is_empty());
    assert_eq!(upstream("backbone"), ["preprocess"]);
    assert_eq!(upstream("backbone_merge"), ["backbone"]);
    assert_eq!(upstream("finetune"), ["backbone_merge"]);
    assert_eq!(upstream("evaluate"), ["backbone_merge", "finetune"]);
    assert_eq!(tasks["backbone"]["mapped"], true);
    assert_eq!(tasks["backbone"]["commands"].as_array().unwrap().len(), 2);

    // Run Airflow's commands in DAG order, then `graft run` in a second copy: same metrics.
    for task in ["preprocess", "backbone", "backbone_merge", "finetune", "evaluate"] {
        for cmd in tasks[task]["commands"].as_array().unwrap() {
            let status = Command::new("sh").arg("-c").arg(cmd.as_str().unwrap()).status().unwrap();
            assert!(status.success(), "{task}: {cmd}");
        }
    }
    let other = dir.path().join("q");
    std::fs::create_dir_all(&other).unwrap();
    let path = pipeline(&other);
    ok("graft", &["run", s(&path), "-q"]);
    let metrics = |r: &Path| -> Value {
        serde_json::from_slice(&std::fs::read(r.join("run/eval/metrics.json")).unwrap()).unwrap()
    };
    assert_eq!(metrics(&root)["metrics"], metrics(&other)["metrics"]);
    assert_eq!(metrics(&root)["probabilities"], metrics(&other)["probabilities"]);
}

/// A temporary folder with `p/` (the pipeline's folder), `dags/` and `airflow/` (AIRFLOW_HOME).
fn folders() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (root, dags, home) = (dir.path().join("p"), dir.path().join("dags"), dir.path().join("airflow"));
    for d in [&root, &dags, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    (dir, root, dags, home)
}

/// Loads the DAGs in `dags` with Airflow; returns the tasks of DAG `dag_id` (by task id:
/// upstream task ids, mapped or not, and the commands they would run).
fn load_dag(dags: &Path, home: &Path, dag_id: &str) -> Value {
    let python = repo().join(".graft/airflow-venv/bin/python");
    assert!(python.is_file(), "{} missing: `make test` builds it (scripts/setup_airflow.sh)", python.display());
    let bin_dir = format!("{}/", bin("graft").parent().unwrap().display());
    let out = Command::new(&python)
        .arg(repo().join("scripts/airflow_dag_graph.py"))
        .arg(dags)
        .env("AIRFLOW_HOME", home)
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .env("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
        .env("GRAFT_BIN", &bin_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let loaded: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(loaded["errors"], serde_json::json!({}), "import errors");
    loaded["dags"][dag_id].clone()
}

#[test]
fn an_exported_sweep_has_readable_task_ids_and_ends_by_ranking_like_graft_run() {
    let (dir, root, dags, home) = folders();
    let path = sweep_pipeline(&root);
    std::fs::write(dags.join("sweep.py"), ok("graft", &["export", "--to", "airflow", s(&path)]).stdout).unwrap();
    let tasks = load_dag(&dags, &home, "sweep");
    let upstream = |t: &str| -> Vec<String> { serde_json::from_value(tasks[t]["upstream"].clone()).unwrap() };
    assert_eq!(upstream("finetune.pooling-cls.c-0.1"), ["backbone.pooling-cls"], "{tasks}");
    let mut ranked = upstream("sweep_ranking");
    ranked.sort();
    let expected = [
        "evaluate.pooling-cls.c-0.1",
        "evaluate.pooling-cls.c-10",
        "evaluate.pooling-mean.c-0.1",
        "evaluate.pooling-mean.c-10",
    ];
    assert_eq!(ranked, expected);
    // Airflow's commands in dependency order, then `graft run` on a copy: the same ranking.
    let mut order: Vec<&String> = tasks.as_object().unwrap().keys().collect();
    order.sort_by_key(|t| {
        ["preprocess", "backbone", "finetune", "evaluate", "sweep_ranking"].iter().position(|p| t.starts_with(p))
    });
    for task in order {
        for cmd in tasks[task.as_str()]["commands"].as_array().unwrap() {
            let status = Command::new("sh").arg("-c").arg(cmd.as_str().unwrap()).status().unwrap();
            assert!(status.success(), "{task}: {cmd}");
        }
    }
    let other = dir.path().join("q");
    std::fs::create_dir_all(&other).unwrap();
    ok("graft", &["run", s(&sweep_pipeline(&other)), "-q"]);
    let sweep =
        |r: &Path| -> Value { serde_json::from_slice(&std::fs::read(r.join("sweep.sweep.json")).unwrap()).unwrap() };
    assert_eq!(sweep(&root), sweep(&other));
    assert_eq!(sweep(&root)["rows"].as_array().unwrap().len(), 4);
}

/// A training pipeline ending in a bundle, and a daily scoring pipeline over `incoming/DATE.csv`.
fn train_and_score(root: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(root.join("incoming")).unwrap();
    std::fs::copy(fixture("tiny/reviews.csv"), root.join("reviews.csv")).unwrap();
    std::fs::copy(fixture("tiny/reviews.csv"), root.join("incoming/2026-11-28.csv")).unwrap();
    let spec = s(&fixture("tiny/tiny.yaml")).to_owned();
    let train = format!(
        "version: 1\nstages:\n  preprocess: {{cmd: graft-preprocess, args: {{input: reviews.csv, spec: {spec}, id_column: id, out: run/data}}, deps: [reviews.csv], outs: [run/data]}}\n  backbone: {{cmd: graft-backbone, args: {{spec: {spec}, input: run/data, out: run/features}}, deps: [run/data], outs: [run/features]}}\n  finetune: {{cmd: graft-finetune, args: {{features: run/features, c: [0.1, 1], out: run/head}}, deps: [run/features], outs: [run/head]}}\n  evaluate: {{cmd: graft-evaluate, args: {{head: run/head, features: run/features, out: run/eval}}, deps: [run/head, run/features], outs: [run/eval]}}\n  bundle: {{cmd: graft-evaluate, subcommand: bundle, args: {{head: run/head, spec: {spec}, data: run/data, eval: run/eval, out: run/model}}, deps: [run/head, run/eval], outs: [run/model]}}\n"
    );
    let score = "version: 1\nparams: {date: 2000-01-01}\nschedule: {cron: '@daily', partition: date}\nstages:\n  rows: {cmd: graft-preprocess, subcommand: rows, args: {bundle: run/model, input: 'incoming/${params.date}.csv', id_column: id, out: 'scores/${params.date}/rows'}, deps: [run/model/manifest.json, 'incoming/${params.date}.csv'], outs: ['scores/${params.date}/rows']}\n  backbone: {cmd: graft-backbone, args: {spec: run/model, input: 'scores/${params.date}/rows', out: 'scores/${params.date}/features'}, deps: ['scores/${params.date}/rows'], outs: ['scores/${params.date}/features']}\n  predict: {cmd: graft-evaluate, subcommand: predict, args: {bundle: run/model, rows: 'scores/${params.date}/rows', features: 'scores/${params.date}/features', out: 'scores/${params.date}/predictions.csv'}, deps: ['scores/${params.date}/features'], outs: ['scores/${params.date}/predictions.csv']}\n";
    let (train_path, score_path) = (root.join("train.yaml"), root.join("score.yaml"));
    std::fs::write(&train_path, train).unwrap();
    std::fs::write(&score_path, score).unwrap();
    (train_path, score_path)
}

#[test]
fn airflow_runs_a_training_dag_and_a_daily_scoring_dag_like_graft_run() {
    let airflow = repo().join(".graft/airflow-venv/bin/airflow");
    assert!(airflow.is_file(), "{} missing: `make test` builds it (scripts/setup_airflow.sh)", airflow.display());
    let (dir, root, dags, home) = folders();
    let (train, score) = train_and_score(&root);
    std::fs::write(dags.join("train.py"), ok("graft", &["export", "--to", "airflow", s(&train)]).stdout).unwrap();
    let dag = ok("graft", &["export", "--to", "airflow", s(&score)]).stdout;
    let text = String::from_utf8(dag.clone()).unwrap();
    assert!(text.contains("schedule=\"@daily\"") && text.contains("incoming/{{ ds }}.csv"), "{text}");
    std::fs::write(dags.join("score.py"), dag).unwrap();
    let bin_dir = format!("{}/", bin("graft").parent().unwrap().display());
    let airflow_cmd = |args: &[&str]| {
        let out = Command::new(&airflow)
            .args(args)
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", &dags)
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("GRAFT_BIN", &bin_dir)
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "airflow {args:?}:\n{log}");
        log
    };
    airflow_cmd(&["db", "migrate"]);
    // Airflow's own runner, at a logical date: the scoring DAG reads that day's partition.
    for dag_id in ["train", "score"] {
        let log = airflow_cmd(&["dags", "test", dag_id, "2026-11-28"]);
        assert!(log.contains(&format!("DagRun Finished: dag_id={dag_id}")) && log.contains("state=success"), "{log}");
    }
    // The same by hand in a second copy, the partition set as a param.
    let other = dir.path().join("q");
    std::fs::create_dir_all(&other).unwrap();
    let (train2, score2) = train_and_score(&other);
    ok("graft", &["run", s(&train2)]);
    ok("graft", &["run", s(&score2), "--set", "params.date=2026-11-28"]);
    for file in ["predictions.csv", "predictions.drift.json"] {
        let a = std::fs::read(root.join("scores/2026-11-28").join(file)).unwrap();
        let b = std::fs::read(other.join("scores/2026-11-28").join(file)).unwrap();
        assert_eq!(a, b, "{file}: Airflow's run equals graft run's");
    }
}
