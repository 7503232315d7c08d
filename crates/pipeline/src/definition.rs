//! Pipeline files (`version: 1`): named stages, each a graft binary with its arguments,
//! the paths it reads (`deps`) and the paths it writes (`outs`). Paths are relative to
//! the pipeline file's folder. `params`, `include` and `matrix` are resolved by
//! expansion (`expand`) before anything runs.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::{Error, Result};

/// A pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Format version; only 1.
    pub version: u32,
    #[serde(default)]
    pub description: Option<String>,
    /// Files whose `params`, `matrix` and `stages` are merged in (paths relative to this
    /// file; this file's params win, a stage name may appear once).
    #[serde(default)]
    pub include: Vec<PathBuf>,
    /// Values stages use as `${params.NAME}`; `graft run --set params.NAME=VALUE` overrides.
    #[serde(default)]
    pub params: IndexMap<String, Scalar>,
    /// Sweep axes: a stage that uses `${matrix.NAME}` runs once per value of each axis it
    /// uses, so stages that use fewer axes are shared between combinations. A value is a
    /// scalar, or a record with a `name` and fields read as `${matrix.NAME.FIELD}`.
    #[serde(default)]
    pub matrix: IndexMap<String, Vec<AxisValue>>,
    /// Axes that apply only for some values of other axes: `c: {head: [logistic_regression]}`
    /// sweeps `c` for logistic regression only. Where the condition does not hold the axis is
    /// absent: an argument whose whole value is `${matrix.c}` is left out, `${matrix.c}`
    /// elsewhere reads as nothing, and the stage's name leaves the axis out.
    #[serde(default)]
    pub matrix_when: IndexMap<String, IndexMap<String, Vec<Scalar>>>,
    /// Where the sweep's comparison table is written (default `<pipeline>.sweep.json`).
    #[serde(default)]
    pub sweep_out: Option<PathBuf>,
    /// How a scheduler runs the pipeline: `graft export --to airflow` gives the DAG this
    /// schedule and fills the `partition` param with each run's logical date (`YYYY-MM-DD`).
    #[serde(default)]
    pub schedule: Option<Schedule>,
    pub stages: IndexMap<String, Stage>,
}

/// A schedule and the param that names each run's partition.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A cron expression or preset, e.g. `@daily` or `0 3 * * *`.
    pub cron: String,
    /// The param holding the partition (a date); `graft run --set params.NAME=2026-11-28`
    /// runs one partition by hand.
    pub partition: String,
}

/// One stage: a graft binary and its flags.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage binary, e.g. `graft-backbone`.
    pub cmd: String,
    /// The binary's subcommand, before the flags (e.g. `bundle` for `graft-evaluate`).
    #[serde(default)]
    pub subcommand: Option<String>,
    /// Flags: `key: value` becomes `--key value` (underscores as dashes); a list repeats the flag.
    /// Strings may use `${params.NAME}`, `${matrix.NAME}` and `${env.NAME}`.
    #[serde(default)]
    pub args: IndexMap<String, Arg>,
    /// Files or folders the stage reads.
    #[serde(default)]
    pub deps: Vec<PathBuf>,
    /// Files or folders the stage writes.
    #[serde(default)]
    pub outs: Vec<PathBuf>,
    /// Airflow export: run this (graft-backbone) stage as N shards mapped over
    /// `--shard I/N`, then merge them.
    #[serde(default)]
    pub shards: Option<u32>,
    /// Matrix values this expanded stage was made with (set by expansion).
    #[serde(skip)]
    #[schemars(skip)]
    pub combination: IndexMap<String, String>,
}

/// A flag's value: one scalar, or a list that repeats the flag.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Arg {
    Scalar(Scalar),
    List(Vec<Scalar>),
}

/// One value of a matrix axis: a scalar, or a record of scalars whose `name` stands for it
/// (in stage names, `--set matrix.AXIS=NAME`, `matrix_when` and the sweep table) and whose
/// other fields several arguments can read: `{name: last4, outputs: "hidden_state_3,..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum AxisValue {
    Scalar(Scalar),
    Record(IndexMap<String, Scalar>),
}

impl AxisValue {
    /// What stands for the value: the scalar itself, or the record's `name`.
    pub fn name(&self) -> String {
        match self {
            AxisValue::Scalar(s) => s.to_string(),
            AxisValue::Record(r) => r.get("name").map(ToString::to_string).unwrap_or_default(),
        }
    }

    /// A field of a record; a scalar has none.
    pub fn field(&self, key: &str) -> Option<String> {
        match self {
            AxisValue::Scalar(_) => None,
            AxisValue::Record(r) => r.get(key).map(ToString::to_string),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

impl Stage {
    /// The argument vector passed to the stage binary.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = self.subcommand.iter().cloned().collect();
        for (key, value) in &self.args {
            let flag = format!("--{}", key.replace('_', "-"));
            let values = match value {
                Arg::Scalar(s) => std::slice::from_ref(s),
                Arg::List(l) => l.as_slice(),
            };
            for v in values {
                argv.push(flag.clone());
                argv.push(v.to_string());
            }
        }
        argv
    }
}

/// The JSON Schema of pipeline files, generated from these types
/// (committed as `schemas/pipeline.schema.json`).
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Pipeline);
    // A graft stage's `args` are its binary's flags, from the same definition clap parses.
    let by_stage: Vec<serde_json::Value> = graft_core::config::STAGES
        .iter()
        .map(|(cmd, subcommand)| {
            let keys: serde_json::Map<String, serde_json::Value> = graft_core::config::stage_keys(cmd, *subcommand)
                .into_iter()
                .map(|(key, help)| (key, serde_json::json!({ "description": help })))
                .collect();
            let subcommand = match subcommand {
                Some(s) => serde_json::json!({ "const": s }),
                None => serde_json::json!({ "type": "null" }),
            };
            serde_json::json!({
                "if": { "properties": { "cmd": { "const": cmd }, "subcommand": subcommand } },
                "then": { "properties": { "args": { "properties": keys, "additionalProperties": false } } }
            })
        })
        .collect();
    if let Some(stage) = schema.get_mut("$defs").and_then(|d| d.get_mut("Stage")).and_then(|s| s.as_object_mut()) {
        stage.insert("allOf".into(), by_stage.into());
    }
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

/// Parses one pipeline file as written.
pub fn parse(path: &Path) -> Result<Pipeline> {
    let text = fs_err::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let parse_err = |source| Error::Parse { path: path.to_owned(), source };
    // A key given twice in a map (a stage, an argument, a param) would silently replace the
    // first; YAML's own values refuse it, at any depth, naming the map, the key and the line.
    serde_norway::from_str::<serde_norway::Value>(&text).map_err(parse_err)?;
    let pipeline: Pipeline = serde_norway::from_str(&text).map_err(parse_err)?;
    if pipeline.version != 1 {
        return Err(Error::Invalid {
            path: path.to_owned(),
            message: format!("`version: {}` is not supported; expected `version: 1`", pipeline.version),
        });
    }
    Ok(pipeline)
}

/// For each stage in file order, the stages whose outputs it reads: a dependency inside an
/// output, or a folder holding one. Errors when two stages write the same output, one writes
/// inside another's output, or a stage reads its own output. Paths are compared as expansion
/// normalises them (one spelling per path).
pub fn upstream(p: &Pipeline) -> Result<IndexMap<&str, Vec<&str>>, String> {
    let mut writer: IndexMap<&Path, &str> = IndexMap::new();
    for (name, stage) in &p.stages {
        for out in &stage.outs {
            if let Some((other_out, other)) = writer.iter().find(|(o, _)| out.starts_with(o) || o.starts_with(out)) {
                return Err(if other_out == out {
                    format!("`{}` is an output of both stage `{other}` and stage `{name}`", out.display())
                } else {
                    format!(
                        "outputs nest: `{}` of stage `{name}` and `{}` of stage `{other}`",
                        out.display(),
                        other_out.display()
                    )
                });
            }
            writer.insert(out.as_path(), name);
        }
    }
    p.stages
        .iter()
        .map(|(name, stage)| {
            let mut up: Vec<&str> = Vec::new();
            for dep in &stage.deps {
                for (out, by) in writer.iter().filter(|(out, _)| dep.starts_with(out) || out.starts_with(dep)) {
                    if by == name {
                        return Err(format!(
                            "stage `{name}` reads `{}` and writes `{}`: a stage cannot read its own output",
                            dep.display(),
                            out.display()
                        ));
                    }
                    if !up.contains(by) {
                        up.push(by);
                    }
                }
            }
            Ok((name.as_str(), up))
        })
        .collect()
}

/// Stage names in an order where each runs after the stages whose outputs it reads:
/// file order, except where a dependency requires otherwise.
pub fn run_order(p: &Pipeline) -> Result<Vec<String>, String> {
    let upstream = upstream(p)?;
    let mut order: Vec<String> = Vec::new();
    let mut remaining: Vec<&str> = upstream.keys().copied().collect();
    while !remaining.is_empty() {
        let ready = remaining
            .iter()
            .position(|n| upstream[n].iter().all(|u| order.iter().any(|o| o == u)))
            .ok_or_else(|| {
                let names: Vec<String> = remaining.iter().map(|n| format!("`{n}`")).collect();
                format!("stages {} depend on each other in a cycle", names.join(", "))
            })?;
        order.push(remaining.remove(ready).to_owned());
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Pipeline {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn orders_by_dependency_and_builds_argv() {
        let p = parse(
            "version: 1\nstages:\n  b:\n    cmd: graft-b\n    args: {input: x/out, text_column: t, c: [0.1, 1], standardize: true}\n    deps: [x/out/train.arrow]\n  a:\n    cmd: graft-a\n    outs: [x/out]\n",
        );
        assert_eq!(run_order(&p).unwrap(), ["a", "b"]);
        assert_eq!(
            p.stages["b"].argv(),
            ["--input", "x/out", "--text-column", "t", "--c", "0.1", "--c", "1", "--standardize", "true"]
        );
    }

    #[test]
    fn rejects_cycles_and_shared_outputs() {
        let cycle =
            parse("version: 1\nstages:\n  a: {cmd: x, deps: [b], outs: [a]}\n  b: {cmd: x, deps: [a], outs: [b]}\n");
        assert!(run_order(&cycle).unwrap_err().contains("cycle"));
        let twice = parse("version: 1\nstages:\n  a: {cmd: x, outs: [o]}\n  b: {cmd: x, outs: [o]}\n");
        assert!(run_order(&twice).unwrap_err().contains("both stage `a` and stage `b`"));
        let nested = parse("version: 1\nstages:\n  a: {cmd: x, outs: [o]}\n  b: {cmd: x, outs: [o/inner]}\n");
        let err = run_order(&nested).unwrap_err();
        assert!(err.contains("outputs nest: `o/inner` of stage `b` and `o` of stage `a`"), "{err}");
        for (dep, out) in [("o", "o"), ("o", "o/inner"), ("o/inner/f", "o")] {
            let own = parse(&format!("version: 1\nstages:\n  a: {{cmd: x, deps: [{dep}], outs: [{out}]}}\n"));
            let err = run_order(&own).unwrap_err();
            assert!(err.contains(&format!("stage `a` reads `{dep}` and writes `{out}`")), "{err}");
        }
    }

    #[test]
    fn a_folder_holding_another_stage_s_output_is_read_after_it() {
        let p = parse(
            "version: 1\nstages:\n  report: {cmd: x, deps: [runs/x], outs: [report]}\n  data: {cmd: x, outs: [runs/x/data]}\n  features: {cmd: x, deps: [runs/x/data], outs: [runs/x/features]}\n",
        );
        assert_eq!(upstream(&p).unwrap()["report"], ["data", "features"]);
        assert_eq!(run_order(&p).unwrap(), ["data", "features", "report"]);
    }

    #[test]
    fn committed_json_schema_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/pipeline.schema.json");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(committed == json_schema(), "{path} is stale: run `graft schema > schemas/pipeline.schema.json`");
        for key in ["\"matrix\"", "\"params\"", "\"stages\"", "\"deps\"", "\"shards\"", "\"label_smoothing\""] {
            assert!(committed.contains(key), "{key}");
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.yaml");
        let stage = "    cmd: graft-a\n    outs: [o]\n";
        for (yaml, key, place) in [
            (format!("version: 1\nstages:\n  a:\n{stage}  a:\n    cmd: graft-b\n"), "\"a\"", "stages:"),
            (
                format!("version: 1\nstages:\n  a:\n{stage}    args: {{seed: 1, seed: 2}}\n"),
                "\"seed\"",
                "stages.a.args:",
            ),
            (format!("version: 1\nparams:\n  n: 1\n  n: 2\nstages:\n  a:\n{stage}"), "\"n\"", "params:"),
        ] {
            std::fs::write(&path, &yaml).unwrap();
            let err = super::parse(&path).unwrap_err();
            let err = format!("{err}: {}", std::error::Error::source(&err).unwrap());
            assert!(err.contains("p.yaml") && err.contains(&format!("duplicate entry with key {key}")), "{err}");
            assert!(err.contains(place), "{err}");
        }
        std::fs::write(&path, format!("version: 1\nstages:\n  a:\n{stage}    args: {{seed: 1}}\n")).unwrap();
        assert_eq!(super::parse(&path).unwrap().stages["a"].args.len(), 1);
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = serde_norway::from_str::<Pipeline>("version: 1\nstages:\n  a: {cmd: x, dep: [b]}\n").unwrap_err();
        assert!(err.to_string().contains("dep"), "{err}");
    }
}
