//! The comparison table of a sweep: after a run of a pipeline with a `matrix`, every
//! expanded `graft-evaluate` stage's metrics beside its matrix values, best first, written
//! to `sweep.json` (`sweep_out`, default `X.sweep.json` beside pipeline `X.yaml`).

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::definition::{Arg, Pipeline};
use graft_core::metrics::Report;

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub stage: String,
    pub combination: IndexMap<String, String>,
    /// Headline metrics: accuracy and macro F1, or R² and RMSE.
    pub metrics: IndexMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The metric rows are ordered by (higher first).
    pub ranked_by: String,
    pub rows: Vec<Row>,
}

/// Reads the evaluations of a run; `None` when the pipeline has no matrix or no expanded
/// evaluate stage.
pub fn collect(pipeline_path: &Path, pipeline: &Pipeline) -> Result<Option<Sweep>> {
    if pipeline.matrix.is_empty() {
        return Ok(None);
    }
    let root = pipeline_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut rows = Vec::new();
    for (name, stage) in &pipeline.stages {
        if stage.combination.is_empty() || !stage.cmd.ends_with("graft-evaluate") {
            continue;
        }
        let Some(Arg::Scalar(out)) = stage.args.get("out") else { continue };
        let report = Report::read(&root.join(out.to_string()).join(graft_core::metrics::FILE))?;
        let metrics: IndexMap<String, f64> = report.headline().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        rows.push(Row { stage: name.clone(), combination: stage.combination.clone(), metrics });
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let ranked_by = if rows[0].metrics.contains_key("accuracy") { "accuracy" } else { "r2" }.to_owned();
    let score = |r: &Row| r.metrics.get(&ranked_by).copied().unwrap_or(f64::NEG_INFINITY);
    rows.sort_by(|a, b| score(b).total_cmp(&score(a)));
    let sweep = Sweep { ranked_by, rows };
    let dest = match &pipeline.sweep_out {
        Some(p) => root.join(p),
        None => pipeline_path.with_extension("sweep.json"),
    };
    let mut json =
        serde_json::to_vec_pretty(&sweep).map_err(|source| graft_core::Error::Json { what: "sweep", source })?;
    json.push(b'\n');
    graft_core::atomic::write_bytes(&dest, &json)?;
    Ok(Some(sweep))
}

/// The table `graft run` prints: one row per combination, best first.
pub fn render(sweep: &Sweep) -> String {
    let Some(first) = sweep.rows.first() else { return String::new() };
    let axes: Vec<&String> = first.combination.keys().collect();
    let metrics: Vec<&String> = first.metrics.keys().collect();
    let width = |axis: &str| {
        sweep.rows.iter().map(|r| r.combination.get(axis).map_or(0, String::len)).max().unwrap_or(0).max(axis.len())
    };
    let mut out = String::new();
    for a in &axes {
        out.push_str(&format!("{:<w$}  ", a, w = width(a)));
    }
    for m in &metrics {
        out.push_str(&format!("{m:>9}  "));
    }
    out.push('\n');
    for r in &sweep.rows {
        for a in &axes {
            out.push_str(&format!("{:<w$}  ", r.combination.get(*a).map_or("", String::as_str), w = width(a)));
        }
        for m in &metrics {
            out.push_str(&format!("{:>9.4}  ", r.metrics.get(*m).copied().unwrap_or(f64::NAN)));
        }
        out.push('\n');
    }
    out
}
