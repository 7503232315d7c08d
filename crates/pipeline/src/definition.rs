//! Pipeline files (`version: 1`): named stages, each a graft binary with its arguments,
//! the paths it reads (`deps`) and the paths it writes (`outs`). Paths are relative to
//! the pipeline file's folder.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub version: u32,
    #[serde(default)]
    pub description: Option<String>,
    pub stages: IndexMap<String, Stage>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The stage binary, e.g. `graft-backbone`.
    pub cmd: String,
    /// Flags: `key: value` becomes `--key value` (underscores as dashes); a list repeats the flag.
    #[serde(default)]
    pub args: IndexMap<String, Arg>,
    #[serde(default)]
    pub deps: Vec<PathBuf>,
    #[serde(default)]
    pub outs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Arg {
    Scalar(Scalar),
    List(Vec<Scalar>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
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
        let mut argv = Vec::new();
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

/// Reads and validates a pipeline file; returns it with its stages in run order.
pub fn load(path: &Path) -> Result<(Pipeline, Vec<String>)> {
    let text = fs_err::read_to_string(path).map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let pipeline: Pipeline =
        serde_norway::from_str(&text).map_err(|source| Error::Parse { path: path.to_owned(), source })?;
    if pipeline.version != 1 {
        return Err(Error::Invalid {
            path: path.to_owned(),
            message: format!("`version: {}` is not supported; expected `version: 1`", pipeline.version),
        });
    }
    let order = run_order(&pipeline).map_err(|message| Error::Invalid { path: path.to_owned(), message })?;
    Ok((pipeline, order))
}

/// For each stage in file order, the stages whose outputs it reads. Errors when two stages
/// write the same output.
pub fn upstream(p: &Pipeline) -> Result<IndexMap<&str, Vec<&str>>, String> {
    let mut writer: IndexMap<&Path, &str> = IndexMap::new();
    for (name, stage) in &p.stages {
        for out in &stage.outs {
            if let Some(other) = writer.insert(out.as_path(), name) {
                return Err(format!("`{}` is an output of both stage `{other}` and stage `{name}`", out.display()));
            }
        }
    }
    Ok(p.stages
        .iter()
        .map(|(name, stage)| {
            let mut up: Vec<&str> = stage
                .deps
                .iter()
                .filter_map(|d| writer.iter().find(|(out, _)| d.starts_with(out)).map(|(_, n)| *n))
                .collect();
            up.dedup();
            (name.as_str(), up)
        })
        .collect())
}

/// Stage names in an order where each runs after the stages whose outputs it reads:
/// file order, except where a dependency requires otherwise.
fn run_order(p: &Pipeline) -> Result<Vec<String>, String> {
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
    }

    #[test]
    fn unknown_key_names_the_key() {
        let err = serde_norway::from_str::<Pipeline>("version: 1\nstages:\n  a: {cmd: x, dep: [b]}\n").unwrap_err();
        assert!(err.to_string().contains("dep"), "{err}");
    }
}
