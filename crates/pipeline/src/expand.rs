//! From a pipeline file as written to the stages that run: `include`s merged, `--set`
//! overrides applied, each stage expanded over the matrix axes it uses, and `${params.X}`,
//! `${matrix.X}`, `${env.X}` substituted in commands, arguments and paths.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::definition::{Arg, AxisValue, Pipeline, Scalar, Stage, parse, run_order};
use crate::error::{Error, Result};

/// Name of the expanded stage `base` for one combination: `base[k=v,k2=v2]`.
pub fn expanded_name(base: &str, combination: &IndexMap<String, String>) -> String {
    if combination.is_empty() {
        return base.to_owned();
    }
    let parts: Vec<String> = combination.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base}[{}]", parts.join(","))
}

/// Reads and validates a pipeline file, applies `overrides` (`--set`), resolves includes,
/// params and the matrix; returns the expanded stages and their run order.
/// Each stage's arguments are checked against its binary's flags (for graft's own stages).
pub fn load(path: &Path, overrides: &[String]) -> Result<(Pipeline, Vec<String>)> {
    let pipeline = expand(path, parse(path)?, overrides)?;
    let invalid = |message: String| Error::Invalid { path: path.to_owned(), message };
    for (name, stage) in &pipeline.stages {
        graft_core::config::check_args(&stage.cmd, &stage.argv())
            .map_err(|m| invalid(format!("stage `{name}` ({}): {m}", stage.cmd)))?;
    }
    let order = run_order(&pipeline).map_err(invalid)?;
    Ok((pipeline, order))
}

pub fn expand(path: &Path, mut pipeline: Pipeline, overrides: &[String]) -> Result<Pipeline> {
    let invalid = |message: String| Error::Invalid { path: path.to_owned(), message };
    let root = path.parent().unwrap_or(Path::new(""));
    for include in std::mem::take(&mut pipeline.include) {
        let part = parse(&root.join(&include))?;
        if !part.include.is_empty() {
            return Err(invalid(format!("`{}` includes other files; includes do not nest", include.display())));
        }
        for (k, v) in part.params {
            pipeline.params.entry(k).or_insert(v);
        }
        for (k, v) in part.matrix {
            pipeline.matrix.entry(k).or_insert(v);
        }
        for (k, v) in part.matrix_when {
            pipeline.matrix_when.entry(k).or_insert(v);
        }
        for (name, stage) in part.stages {
            if pipeline.stages.contains_key(&name) {
                return Err(invalid(format!("stage `{name}` is defined here and in `{}`", include.display())));
            }
            pipeline.stages.insert(name, stage);
        }
    }
    for o in overrides {
        apply_override(&mut pipeline, o).map_err(|m| invalid(format!("`--set {o}`: {m}")))?;
    }
    if let Some(schedule) = &pipeline.schedule
        && !pipeline.params.contains_key(&schedule.partition)
    {
        return Err(invalid(format!(
            "`schedule.partition` names `{}`, which `params:` does not define",
            schedule.partition
        )));
    }
    let params = resolve_params(&pipeline.params).map_err(invalid)?;
    let (no_axes, no_values) = (IndexMap::new(), IndexMap::new());
    let outer = Context { params: &params, matrix: &no_axes, values: &no_values, absent: &[] };
    for (axis, values) in &mut pipeline.matrix {
        for v in values {
            let texts: Vec<&mut String> = match v {
                AxisValue::Scalar(Scalar::Str(t)) => vec![t],
                AxisValue::Scalar(_) => vec![],
                AxisValue::Record(r) => {
                    r.values_mut().filter_map(|f| if let Scalar::Str(t) = f { Some(t) } else { None }).collect()
                }
            };
            for t in texts {
                *t = outer.substitute(t).map_err(|m| invalid(format!("matrix axis `{axis}`: {m}")))?;
            }
        }
    }
    check_records(&pipeline).map_err(invalid)?;
    check_conditions(&pipeline).map_err(invalid)?;
    let absolute_root = std::path::absolute(if root.as_os_str().is_empty() { Path::new(".") } else { root })
        .map_err(|source| Error::Read { path: path.to_owned(), source })?;
    let mut stages = IndexMap::new();
    for (name, stage) in std::mem::take(&mut pipeline.stages) {
        let axes = matrix_axes(&stage);
        for axis in &axes {
            if !pipeline.matrix.contains_key(axis) {
                return Err(invalid(format!(
                    "stage `{name}` uses `${{matrix.{axis}}}`, which `matrix:` does not define"
                )));
            }
        }
        let axes = with_conditions(&pipeline.matrix_when, axes);
        for combination in combinations(&pipeline.matrix, &pipeline.matrix_when, &axes) {
            let absent: Vec<&String> = axes.iter().filter(|a| !combination.contains_key(*a)).collect();
            let ctx = Context { params: &params, matrix: &combination, values: &pipeline.matrix, absent: &absent };
            // An argument that is only an absent axis (or one of its fields) is left out.
            let only_absent = |s: &Scalar| match s {
                Scalar::Str(t) => t
                    .strip_prefix("${matrix.")
                    .and_then(|r| r.strip_suffix('}'))
                    .is_some_and(|r| absent.iter().any(|x| *x == axis_of(r))),
                _ => false,
            };
            let sub = |text: &str| -> Result<String> {
                ctx.substitute(text).map_err(|m| invalid(format!("stage `{name}`: {m}")))
            };
            let scalar = |s: &Scalar| -> Result<Scalar> {
                Ok(match s {
                    Scalar::Str(t) => Scalar::Str(sub(t)?),
                    other => other.clone(),
                })
            };
            let mut args = IndexMap::new();
            for (k, v) in &stage.args {
                let v = match v {
                    Arg::Scalar(s) if only_absent(s) => continue,
                    Arg::Scalar(s) => Arg::Scalar(scalar(s)?),
                    Arg::List(l) => {
                        let kept: Vec<Scalar> =
                            l.iter().filter(|s| !only_absent(s)).map(scalar).collect::<Result<_>>()?;
                        if kept.is_empty() && !l.is_empty() {
                            continue;
                        }
                        Arg::List(kept)
                    }
                };
                args.insert(k.clone(), v);
            }
            let paths = |ps: &[PathBuf]| -> Result<Vec<PathBuf>> {
                ps.iter().map(|p| Ok(normalize(&absolute_root, Path::new(&sub(&p.to_string_lossy())?)))).collect()
            };
            let expanded = Stage {
                cmd: sub(&stage.cmd)?,
                subcommand: stage.subcommand.clone(),
                args,
                deps: paths(&stage.deps)?,
                outs: paths(&stage.outs)?,
                shards: stage.shards,
                combination: combination.clone(),
            };
            stages.insert(expanded_name(&name, &combination), expanded);
        }
    }
    pipeline.stages = stages;
    Ok(pipeline)
}

/// Params with their own `${params.X}` and `${env.X}` references substituted, in
/// declaration order; a param that refers back to itself is an error naming the cycle.
fn resolve_params(raw: &IndexMap<String, Scalar>) -> std::result::Result<IndexMap<String, String>, String> {
    fn resolve(
        name: &str,
        raw: &IndexMap<String, Scalar>,
        done: &mut IndexMap<String, String>,
        stack: &mut Vec<String>,
    ) -> std::result::Result<String, String> {
        if let Some(v) = done.get(name) {
            return Ok(v.clone());
        }
        if stack.iter().any(|s| s == name) {
            stack.push(name.to_owned());
            return Err(format!("params refer to each other in a cycle: {}", stack.join(" -> ")));
        }
        let text = raw.get(name).map(ToString::to_string).ok_or_else(|| format!("there is no param `{name}`"))?;
        stack.push(name.to_owned());
        let mut deps = IndexMap::new();
        for reference in references(&text) {
            if let Some(k) = reference.strip_prefix("params.") {
                let v = resolve(k, raw, done, stack).map_err(|m| format!("param `{name}`: {m}"))?;
                deps.insert(k.to_owned(), v);
            }
        }
        stack.pop();
        let no_axes = IndexMap::new();
        let no_values = IndexMap::new();
        let value = Context { params: &deps, matrix: &no_axes, values: &no_values, absent: &[] }
            .substitute(&text)
            .map_err(|m| format!("param `{name}`: {m}"))?;
        done.insert(name.to_owned(), value.clone());
        Ok(value)
    }
    let mut done = IndexMap::new();
    for name in raw.keys() {
        resolve(name, raw, &mut done, &mut Vec::new())?;
    }
    Ok(raw.keys().map(|k| (k.clone(), done[k].clone())).collect())
}

/// `path` relative to the pipeline's folder `root` (absolute), without `.` or `a/..`
/// components, so that one file has one spelling: `./out/a`, `out/b/../a` and
/// `ROOT/out/a` are all `out/a`. Paths outside the root stay absolute.
pub fn normalize(root: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in root.join(path).components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    match out.strip_prefix(root) {
        Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rel) => rel.to_owned(),
        Err(_) => out,
    }
}

/// `params.NAME=VALUE`, `matrix.NAME=V1,V2` (only those of the axis's values) or
/// `STAGE.KEY=VALUE` (a stage flag).
fn apply_override(p: &mut Pipeline, text: &str) -> std::result::Result<(), String> {
    let (target, value) = text.split_once('=').ok_or("expected TARGET=VALUE")?;
    let (scope, key) = target.split_once('.').ok_or("expected params.NAME, matrix.NAME or STAGE.KEY before `=`")?;
    if scope == "matrix" {
        let axes: Vec<String> = p.matrix.keys().cloned().collect();
        let values =
            p.matrix.get_mut(key).ok_or_else(|| format!("there is no matrix axis `{key}`; axes are {axes:?}"))?;
        let mut kept = Vec::new();
        for wanted in value.split(',').map(str::trim) {
            let found = values.iter().find(|v| v.name() == wanted).ok_or_else(|| {
                let all: Vec<String> = values.iter().map(AxisValue::name).collect();
                format!("matrix axis `{key}` has no value `{wanted}`; its values are {all:?}")
            })?;
            kept.push(found.clone());
        }
        *values = kept;
        return Ok(());
    }
    let value = Scalar::Str(value.to_owned());
    if scope == "params" {
        if !p.params.contains_key(key) {
            return Err(format!("there is no param `{key}`; params are {:?}", p.params.keys().collect::<Vec<_>>()));
        }
        p.params.insert(key.to_owned(), value);
        return Ok(());
    }
    let known: Vec<String> = p.stages.keys().cloned().collect();
    let stage = p.stages.get_mut(scope).ok_or_else(|| format!("there is no stage `{scope}`; stages are {known:?}"))?;
    stage.args.insert(key.to_owned(), Arg::Scalar(value));
    Ok(())
}

/// Matrix axes a stage refers to, in first-use order.
fn matrix_axes(stage: &Stage) -> Vec<String> {
    let mut texts = vec![stage.cmd.clone()];
    for v in stage.args.values() {
        let scalars = match v {
            Arg::Scalar(s) => std::slice::from_ref(s),
            Arg::List(l) => l.as_slice(),
        };
        texts.extend(scalars.iter().filter_map(|s| if let Scalar::Str(t) = s { Some(t.clone()) } else { None }));
    }
    texts.extend(stage.deps.iter().chain(&stage.outs).map(|p| p.to_string_lossy().into_owned()));
    let mut axes = Vec::new();
    for t in texts {
        for reference in references(&t) {
            if let Some(axis) = reference.strip_prefix("matrix.").map(axis_of)
                && !axes.iter().any(|a| a == axis)
            {
                axes.push(axis.to_owned());
            }
        }
    }
    axes
}

/// Every `${...}` body in `text`.
fn references(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else { break };
        out.push(&rest[start + 2..start + 2 + len]);
        rest = &rest[start + 2 + len + 1..];
    }
    out
}

/// The axis of a matrix reference: `axis` of `axis` or `axis.field`.
fn axis_of(reference: &str) -> &str {
    reference.split_once('.').map_or(reference, |(axis, _)| axis)
}

/// Record values have a `name`, and no two values of an axis share one.
fn check_records(p: &Pipeline) -> std::result::Result<(), String> {
    for (axis, values) in &p.matrix {
        let mut seen = std::collections::HashSet::new();
        for (i, v) in values.iter().enumerate() {
            if let AxisValue::Record(r) = v
                && r.get("name").is_none_or(|n| n.to_string().is_empty())
            {
                return Err(format!("matrix axis `{axis}`, value {}: a record needs a `name`", i + 1));
            }
            if !seen.insert(v.name()) {
                return Err(format!("matrix axis `{axis}` has the value `{}` twice", v.name()));
            }
        }
    }
    Ok(())
}

/// `matrix_when` names only declared axes and values, and no axis depends on itself.
fn check_conditions(p: &Pipeline) -> std::result::Result<(), String> {
    for (axis, when) in &p.matrix_when {
        if !p.matrix.contains_key(axis) {
            return Err(format!("`matrix_when` names axis `{axis}`, which `matrix:` does not define"));
        }
        for (other, values) in when {
            let declared = p.matrix.get(other).ok_or_else(|| {
                format!("`matrix_when.{axis}` depends on axis `{other}`, which `matrix:` does not define")
            })?;
            if other == axis {
                return Err(format!("`matrix_when.{axis}` depends on itself"));
            }
            if let Some(v) = values.iter().find(|v| !declared.iter().any(|d| d.name() == v.to_string())) {
                return Err(format!("`matrix_when.{axis}`: axis `{other}` has no value `{v}`"));
            }
        }
    }
    Ok(())
}

/// A stage's axes with the axes their conditions read: unconditional axes first (in
/// first-use order), then conditional ones, so a condition is decided before its axis.
fn with_conditions(when: &IndexMap<String, IndexMap<String, Vec<Scalar>>>, used: Vec<String>) -> Vec<String> {
    let mut all = used;
    let mut i = 0;
    while i < all.len() {
        for other in when.get(&all[i]).map(|w| w.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
            if !all.contains(&other) {
                all.push(other);
            }
        }
        i += 1;
    }
    let (plain, conditional): (Vec<String>, Vec<String>) = all.into_iter().partition(|a| !when.contains_key(a));
    plain.into_iter().chain(conditional).collect()
}

/// All value combinations of `axes` (in the matrix's declaration order of values); a
/// conditional axis takes its values only where its condition holds, and is absent elsewhere.
fn combinations(
    matrix: &IndexMap<String, Vec<AxisValue>>,
    when: &IndexMap<String, IndexMap<String, Vec<Scalar>>>,
    axes: &[String],
) -> Vec<IndexMap<String, String>> {
    let mut out = vec![IndexMap::new()];
    for axis in axes {
        let values = &matrix[axis];
        let holds = |c: &IndexMap<String, String>| {
            when.get(axis).is_none_or(|w| {
                w.iter()
                    .all(|(other, allowed)| c.get(other).is_some_and(|v| allowed.iter().any(|a| a.to_string() == *v)))
            })
        };
        out = out
            .into_iter()
            .flat_map(|c| {
                if !holds(&c) {
                    return vec![c];
                }
                values
                    .iter()
                    .map(|v| {
                        let mut c = c.clone();
                        c.insert(axis.clone(), v.name());
                        c
                    })
                    .collect()
            })
            .collect();
    }
    out
}

struct Context<'a> {
    params: &'a IndexMap<String, String>,
    /// This combination: each axis's value (its name, for a record).
    matrix: &'a IndexMap<String, String>,
    /// Every axis's values, for `${matrix.AXIS.FIELD}`.
    values: &'a IndexMap<String, Vec<AxisValue>>,
    /// Conditional axes absent from this combination: they read as nothing.
    absent: &'a [&'a String],
}

impl Context<'_> {
    /// `axis` (the value or its name) or `axis.field` (a field of this combination's record).
    fn axis_value(&self, reference: &str) -> std::result::Result<String, String> {
        let axis = axis_of(reference);
        let name = self.matrix.get(axis).ok_or_else(|| format!("no matrix axis `{axis}`"))?;
        let Some((_, field)) = reference.split_once('.') else { return Ok(name.clone()) };
        self.values
            .get(axis)
            .and_then(|vs| vs.iter().find(|v| v.name() == *name))
            .and_then(|v| v.field(field))
            .ok_or_else(|| format!("value `{name}` of matrix axis `{axis}` has no field `{field}`"))
    }

    fn substitute(&self, text: &str) -> std::result::Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let body_start = start + 2;
            let len = rest[body_start..].find('}').ok_or_else(|| format!("unclosed `${{` in `{text}`"))?;
            let reference = &rest[body_start..body_start + len];
            let value = match reference.split_once('.') {
                Some(("params", k)) => {
                    self.params.get(k).cloned().ok_or_else(|| format!("`${{{reference}}}`: there is no param `{k}`"))?
                }
                Some(("matrix", k)) if self.absent.iter().any(|a| *a == axis_of(k)) => String::new(),
                Some(("matrix", k)) => self.axis_value(k).map_err(|m| format!("`${{{reference}}}`: {m}"))?,
                Some(("env", k)) => std::env::var(k)
                    .map_err(|_| format!("`${{{reference}}}`: environment variable `{k}` is not set"))?,
                _ => return Err(format!("`${{{reference}}}` is neither params.NAME, matrix.NAME nor env.NAME")),
            };
            out.push_str(&value);
            rest = &rest[body_start + len + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_text(yaml: &str, overrides: &[&str]) -> Result<Pipeline> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, yaml).unwrap();
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        expand(&path, parse(&path)?, &overrides)
    }

    const SWEEP: &str = "version: 1\nparams: {run: out}\nmatrix: {layer: [3, 6], pooling: [mean, cls], c: [1, 10]}\nstages:\n  data: {cmd: p, outs: ['${params.run}/data']}\n  feats:\n    cmd: b\n    args: {outputs: 'hidden_state_${matrix.layer}', pooling: '${matrix.pooling}', out: '${params.run}/f-${matrix.layer}-${matrix.pooling}'}\n    deps: ['${params.run}/data']\n    outs: ['${params.run}/f-${matrix.layer}-${matrix.pooling}']\n  head:\n    cmd: f\n    args: {c: '${matrix.c}', features: '${params.run}/f-${matrix.layer}-${matrix.pooling}'}\n    deps: ['${params.run}/f-${matrix.layer}-${matrix.pooling}']\n    outs: ['${params.run}/h-${matrix.layer}-${matrix.pooling}-${matrix.c}']\n";

    #[test]
    fn a_conditional_axis_sweeps_only_where_its_condition_holds() {
        let yaml = "version: 1\nmatrix: {head: [logistic_regression, mlp], c: [0.1, 1], hidden: [8]}\nmatrix_when: {c: {head: [logistic_regression]}, hidden: {head: [mlp]}}\nstages:\n  f:\n    cmd: graft-finetune\n    args: {features: x, head: '${matrix.head}', c: '${matrix.c}', hidden: ['${matrix.hidden}'], out: 'h-${matrix.head}-${matrix.c}'}\n    outs: ['h-${matrix.head}-${matrix.c}']\n";
        let p = expand_text(yaml, &[]).unwrap();
        let names: Vec<&String> = p.stages.keys().collect();
        assert_eq!(
            names,
            ["f[head=logistic_regression,c=0.1]", "f[head=logistic_regression,c=1]", "f[head=mlp,hidden=8]"]
        );
        let mlp = &p.stages["f[head=mlp,hidden=8]"];
        assert_eq!(mlp.argv(), ["--features", "x", "--head", "mlp", "--hidden", "8", "--out", "h-mlp-"]);
        let lr = &p.stages["f[head=logistic_regression,c=1]"];
        assert_eq!(
            lr.argv(),
            ["--features", "x", "--head", "logistic_regression", "--c", "1", "--out", "h-logistic_regression-1"]
        );
        let bad = yaml.replace("c: {head: [logistic_regression]}", "c: {head: [svm]}");
        let err = expand_text(&bad, &[]).unwrap_err().to_string();
        assert!(err.contains("`matrix_when.c`: axis `head` has no value `svm`"), "{err}");
    }

    #[test]
    fn record_values_name_a_combination_and_give_fields() {
        let yaml = "version: 1\nmatrix:\n  backbone: [mini, mpnet]\n  layers: [{name: last, outputs: last_hidden_state, join: concat}, {name: last4, outputs: 'h3,h4,h5,h6', join: concat}]\nmatrix_when: {layers: {backbone: [mini]}}\nstages:\n  b:\n    cmd: graft-backbone\n    args: {spec: '${matrix.backbone}.yaml', outputs: '${matrix.layers.outputs}', join: '${matrix.layers.join}', out: 'f-${matrix.backbone}${matrix.layers}'}\n    outs: ['f-${matrix.backbone}${matrix.layers}']\n";
        let p = expand_text(yaml, &[]).unwrap();
        let names: Vec<&String> = p.stages.keys().collect();
        assert_eq!(names, ["b[backbone=mini,layers=last]", "b[backbone=mini,layers=last4]", "b[backbone=mpnet]"]);
        let last4 = &p.stages["b[backbone=mini,layers=last4]"];
        assert_eq!(
            last4.argv(),
            ["--spec", "mini.yaml", "--outputs", "h3,h4,h5,h6", "--join", "concat", "--out", "f-minilast4"]
        );
        assert_eq!(last4.combination.get("layers").map(String::as_str), Some("last4"));
        // A field a record lacks is an error naming it; an absent axis's fields are left out.
        let err = expand_text(&yaml.replace("layers.join", "layers.joins"), &[]).unwrap_err().to_string();
        assert!(err.contains("value `last` of matrix axis `layers` has no field `joins`"), "{err}");
        assert_eq!(p.stages["b[backbone=mpnet]"].argv(), ["--spec", "mpnet.yaml", "--out", "f-mpnet"]);
        let narrowed = expand_text(yaml, &["matrix.layers=last4"]).unwrap();
        assert!(narrowed.stages.contains_key("b[backbone=mini,layers=last4]") && narrowed.stages.len() == 2);
        let unnamed = yaml.replace("{name: last, ", "{");
        let err = expand_text(&unnamed, &[]).unwrap_err().to_string();
        assert!(err.contains("matrix axis `layers`, value 1: a record needs a `name`"), "{err}");
    }

    #[test]
    fn stages_expand_over_the_axes_they_use_only() {
        let p = expand_text(SWEEP, &[]).unwrap();
        let count = |prefix: &str| p.stages.keys().filter(|k| k.starts_with(prefix)).count();
        assert_eq!((count("data"), count("feats"), count("head")), (1, 4, 8));
        let f = &p.stages["feats[layer=6,pooling=cls]"];
        assert_eq!(f.argv(), ["--outputs", "hidden_state_6", "--pooling", "cls", "--out", "out/f-6-cls"]);
        assert_eq!(f.deps, [PathBuf::from("out/data")]);
        let h = &p.stages["head[c=10,layer=3,pooling=mean]"];
        assert_eq!(h.deps, [PathBuf::from("out/f-3-mean")]);
        assert_eq!(h.combination.get("c").map(String::as_str), Some("10"));
    }

    #[test]
    fn overrides_and_errors_name_what_is_wrong() {
        let p = expand_text(SWEEP, &["params.run=elsewhere", "data.seed=7"]).unwrap();
        assert_eq!(p.stages["data"].outs, [PathBuf::from("elsewhere/data")]);
        assert_eq!(p.stages["data"].argv(), ["--seed", "7"]);
        let err = expand_text(SWEEP, &["params.nope=1"]).unwrap_err().to_string();
        assert!(err.contains("no param `nope`"), "{err}");
        let err = expand_text(SWEEP, &["trainer.c=1"]).unwrap_err().to_string();
        assert!(err.contains("no stage `trainer`"), "{err}");
        let bad = "version: 1\nstages:\n  a: {cmd: x, args: {out: '${params.missing}'}}\n";
        let err = expand_text(bad, &[]).unwrap_err().to_string();
        assert!(err.contains("stage `a`") && err.contains("no param `missing`"), "{err}");
        let bad = "version: 1\nstages:\n  a: {cmd: x, args: {out: '${matrix.k}'}}\n";
        assert!(expand_text(bad, &[]).unwrap_err().to_string().contains("`matrix:` does not define"));
        // `matrix.NAME=...` narrows an axis to some of its values, and only to those.
        let narrowed = expand_text(SWEEP, &["matrix.layer=6", "matrix.c=10,1"]).unwrap();
        let mut heads: Vec<&String> = narrowed.stages.keys().filter(|k| k.starts_with("head")).collect();
        heads.sort();
        let expected = [
            "c=1,layer=6,pooling=cls",
            "c=1,layer=6,pooling=mean",
            "c=10,layer=6,pooling=cls",
            "c=10,layer=6,pooling=mean",
        ];
        assert_eq!(heads, expected.map(|c| format!("head[{c}]")).iter().collect::<Vec<_>>());
        let err = expand_text(SWEEP, &["matrix.layer=5"]).unwrap_err().to_string();
        assert!(err.contains("matrix axis `layer` has no value `5`; its values are [\"3\", \"6\"]"), "{err}");
        let bad = "version: 1\nstages:\n  a: {cmd: x, args: {out: '${env.GRAFT_TEST_SURELY_UNSET}'}}\n";
        assert!(expand_text(bad, &[]).unwrap_err().to_string().contains("is not set"));
    }

    #[test]
    fn includes_merge_params_and_stages() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("shared.yaml"),
            "version: 1\nparams: {spec: m.yaml, seed: 1}\nstages:\n  prep: {cmd: p, args: {spec: '${params.spec}'}}\n",
        )
        .unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "version: 1\ninclude: [shared.yaml]\nparams: {seed: 2}\nstages:\n  run: {cmd: r, args: {seed: '${params.seed}'}}\n").unwrap();
        let p = expand(&path, parse(&path).unwrap(), &[]).unwrap();
        assert_eq!(p.stages["prep"].argv(), ["--spec", "m.yaml"]);
        assert_eq!(p.stages["run"].argv(), ["--seed", "2"], "the including file's params win");
        std::fs::write(&path, "version: 1\ninclude: [shared.yaml]\nstages:\n  prep: {cmd: x}\n").unwrap();
        let err = expand(&path, parse(&path).unwrap(), &[]).unwrap_err().to_string();
        assert!(err.contains("stage `prep` is defined here and in `shared.yaml`"), "{err}");
    }

    #[test]
    fn params_and_matrix_values_are_substituted_with_a_cycle_check() {
        // CARGO_PKG_NAME: an environment variable cargo sets for every test.
        let yaml = "version: 1\nparams: {root: '${env.CARGO_PKG_NAME}', run: '${params.root}/run'}\nmatrix: {dir: ['${params.run}/a', b]}\nstages:\n  s: {cmd: x, outs: ['${matrix.dir}']}\n";
        let p = expand_text(yaml, &[]).unwrap();
        let outs: Vec<&PathBuf> = p.stages.values().flat_map(|s| &s.outs).collect();
        assert_eq!(outs, [&PathBuf::from("graft-pipeline/run/a"), &PathBuf::from("b")]);
        let cycle = "version: 1\nparams: {a: '${params.b}', b: 'x${params.a}'}\nstages:\n  s: {cmd: x}\n";
        let err = expand_text(cycle, &[]).unwrap_err().to_string();
        assert!(err.contains("cycle: a -> b -> a"), "{err}");
        let p = expand_text(SWEEP, &["params.run=${env.CARGO_PKG_NAME}"]).unwrap();
        assert_eq!(p.stages["data"].outs, [PathBuf::from("graft-pipeline/data")]);
    }

    #[test]
    fn a_schedule_names_a_param() {
        let bad = "version: 1\nschedule: {cron: '@daily', partition: day}\nstages:\n  s: {cmd: x}\n";
        let err = expand_text(bad, &[]).unwrap_err().to_string();
        assert!(err.contains("`schedule.partition` names `day`"), "{err}");
        let good = "version: 1\nparams: {day: 2026-01-01}\nschedule: {cron: '@daily', partition: day}\nstages:\n  s: {cmd: x, outs: ['o/${params.day}']}\n";
        let p = expand_text(good, &["params.day=2026-11-28"]).unwrap();
        assert_eq!(p.stages["s"].outs, [PathBuf::from("o/2026-11-28")]);
    }

    #[test]
    fn paths_have_one_spelling() {
        let root = Path::new("/p/q");
        assert_eq!(normalize(root, Path::new("./out/a")), PathBuf::from("out/a"));
        assert_eq!(normalize(root, Path::new("out/b/../a/.")), PathBuf::from("out/a"));
        assert_eq!(normalize(root, Path::new("/p/q/out/a")), PathBuf::from("out/a"));
        assert_eq!(normalize(root, Path::new("../r")), PathBuf::from("/p/r"));
        let yaml = "version: 1\nstages:\n  eval: {cmd: e, deps: [./out/a]}\n  make: {cmd: m, outs: [out/a]}\n";
        let p = expand_text(yaml, &[]).unwrap();
        assert_eq!(crate::definition::upstream(&p).unwrap()["eval"], ["make"], "the producer runs first");
    }

    #[test]
    fn stage_args_are_checked_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            "version: 1\nstages:\n  train: {cmd: graft-finetune, args: {features: f, out: h, c: 1}}\n",
        )
        .unwrap();
        load(&path, &[]).unwrap();
        let err = load(&path, &["train.unknownkey=1".into()]).unwrap_err().to_string();
        assert!(err.contains("stage `train` (graft-finetune)") && err.contains("'--unknownkey'"), "{err}");
        let err = load(&path, &["train.epochs=many".into()]).unwrap_err().to_string();
        assert!(err.contains("'many'") && err.contains("--epochs"), "{err}");
        std::fs::write(
            &path,
            "version: 1\nstages:\n  mteb: {cmd: graft-evaluate, subcommand: mteb, args: {features: f, per_class: many}}\n",
        )
        .unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("stage `mteb` (graft-evaluate)") && err.contains("--per-class"), "{err}");
    }
}
