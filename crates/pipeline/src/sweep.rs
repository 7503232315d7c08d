//! The comparison table of a sweep: after a run of a pipeline with a `matrix`, every
//! expanded `graft-evaluate` stage's metrics beside its matrix values, best first, each
//! classification row paired with the best on the same rows (`graft-evaluate compare`),
//! written to `sweep.json` (`sweep_out`, default `X.sweep.json` beside pipeline `X.yaml`).

use std::path::Path;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::definition::{Arg, Pipeline};
use graft_core::head::{Head, Selection};
use graft_core::metrics::{Comparison, Report};

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub stage: String,
    pub combination: IndexMap<String, String>,
    /// Headline metrics: accuracy and macro F1, or R² and RMSE.
    pub metrics: IndexMap<String, f64>,
    /// Their bootstrap intervals, where the evaluation computed them: `[low, high]`.
    pub intervals: IndexMap<String, [f64; 2]>,
    /// The split the metrics (and so the ranking) come from.
    pub ranked_on: String,
    /// What the head chose from data, and on which split.
    pub selections: Vec<Selection>,
    /// Against the best row on the same rows (classification, every row but the best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versus_best: Option<VersusBest>,
    /// Seconds the stage that wrote the row's features took when it last ran (from the lock
    /// file): shown in the table, kept out of sweep.json so that a rerun writes the same bytes.
    #[serde(skip)]
    pub features_seconds: Option<f64>,
    /// Tokens the backbone stage read (the token splits of its input), for its tokens/s.
    #[serde(skip)]
    pub features_tokens: Option<u64>,
}

/// A row's accuracy minus the best row's, paired on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersusBest {
    pub difference: f64,
    /// The 95% paired-bootstrap interval of the difference.
    pub interval: [f64; 2],
    /// McNemar's exact test of the rows only one of the two got right.
    pub mcnemar_p: f64,
}

impl Row {
    /// Whether the split that ranks this row also chose one of its settings: its score is
    /// then optimistic.
    pub fn selected_on_ranking_split(&self) -> bool {
        self.selections.iter().any(|s| s.split == self.ranked_on)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    /// The metric rows are ordered by (higher first).
    pub ranked_by: String,
    pub rows: Vec<Row>,
    /// The winner scored once on test, which no choice and no ranking saw; absent when the
    /// rows are ranked on test already or there is no test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_estimate: Option<Final>,
}

/// The final held-out estimate of the winning configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Final {
    pub stage: String,
    pub split: String,
    pub metrics: IndexMap<String, f64>,
    pub intervals: IndexMap<String, [f64; 2]>,
    /// The evaluation folder, relative to the pipeline file.
    pub out: String,
}

/// `graft sweep`: loads the pipeline (with `set` overrides) and ranks its evaluations.
pub fn rank(pipeline_path: &Path, set: &[String]) -> Result<Option<Sweep>> {
    let (pipeline, _) = crate::expand::load(pipeline_path, set)?;
    collect(pipeline_path, &pipeline)
}

/// Reads the evaluations of a run; `None` when the pipeline has no matrix or no expanded
/// evaluate stage.
pub fn collect(pipeline_path: &Path, pipeline: &Pipeline) -> Result<Option<Sweep>> {
    if pipeline.matrix.is_empty() {
        return Ok(None);
    }
    let root = pipeline_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let lock = graft_core::lockfile::Lock::read(&crate::runner::lock_path(pipeline_path))?;
    let absolute_root =
        std::path::absolute(root).map_err(|source| graft_core::Error::Read { path: root.to_owned(), source })?;
    // Stage paths are normalised against the pipeline's folder (as in the lock file).
    let key = |out: &str| crate::expand::normalize(&absolute_root, Path::new(out));
    let seconds_of_out =
        |out: &str| lock.stages.values().find(|s| s.outs.contains_key(&key(out))).and_then(|s| s.seconds);
    let mut rows = Vec::new();
    for (name, stage) in &pipeline.stages {
        if stage.combination.is_empty() || !stage.cmd.ends_with("graft-evaluate") || stage.subcommand.is_some() {
            continue;
        }
        let Some(out) = scalar_arg(pipeline, name, "out") else { continue };
        let report = Report::read(&root.join(out).join(graft_core::metrics::FILE))?;
        let (metrics, intervals) = headline(&report);
        let selections = match scalar_arg(pipeline, name, "head") {
            Some(head) => Head::load(&root.join(head))?.info.training.selections(),
            None => Vec::new(),
        };
        let features = scalar_arg(pipeline, name, "features");
        rows.push(Row {
            stage: name.clone(),
            combination: stage.combination.clone(),
            metrics,
            intervals,
            ranked_on: report.split.clone(),
            selections,
            versus_best: None,
            features_seconds: features.as_deref().and_then(seconds_of_out),
            features_tokens: features.as_deref().map(|f| tokens_read(root, pipeline, &key(f))).transpose()?.flatten(),
        });
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let ranked_by = if rows[0].metrics.contains_key("accuracy") { "accuracy" } else { "r2" }.to_owned();
    let score = |r: &Row| r.metrics.get(&ranked_by).copied().unwrap_or(f64::NEG_INFINITY);
    rows.sort_by(|a, b| score(b).total_cmp(&score(a)));
    if ranked_by == "accuracy" {
        let best = rows[0].stage.clone();
        for row in rows.iter_mut().skip(1) {
            row.versus_best = versus_best(root, pipeline, &best, &row.stage)?;
        }
    }
    let dest = match &pipeline.sweep_out {
        Some(p) => root.join(p),
        None => pipeline_path.with_extension("sweep.json"),
    };
    let final_estimate = final_estimate(root, pipeline, &rows[0], &dest)?;
    let sweep = Sweep { ranked_by, rows, final_estimate };
    let mut json =
        serde_json::to_vec_pretty(&sweep).map_err(|source| graft_core::Error::Json { what: "sweep", source })?;
    json.push(b'\n');
    graft_core::atomic::write_bytes(&dest, &json)?;
    Ok(Some(sweep))
}

/// Tokens in the token splits the `graft-backbone` stage writing `features` (a normalised
/// stage path) read; `None` where no such stage or no token split (images).
fn tokens_read(root: &Path, pipeline: &Pipeline, features: &Path) -> Result<Option<u64>> {
    let Some(input) = pipeline.stages.iter().find_map(|(name, s)| {
        let writes = s.cmd.ends_with("graft-backbone") && s.outs.iter().any(|o| o == features);
        if writes { scalar_arg(pipeline, name, "input") } else { None }
    }) else {
        return Ok(None);
    };
    let mut total = 0u64;
    for split in graft_core::artifact::SPLITS {
        let path = root.join(&input).join(format!("{split}.arrow"));
        if !path.exists() {
            continue;
        }
        let mut reader = graft_core::ipc::ValidatingReader::open(&path)?;
        if reader.schema().field_with_name(graft_core::columns::INPUT_IDS).is_err() {
            return Ok(None);
        }
        while let Some(batch) = reader.next_batch()? {
            total += graft_core::columns::Tokens::of(&batch, &path)?.total() as u64;
        }
    }
    Ok(Some(total))
}

/// A scalar argument of stage `name`, as text.
fn scalar_arg(pipeline: &Pipeline, name: &str, key: &str) -> Option<String> {
    match pipeline.stages[name].args.get(key) {
        Some(Arg::Scalar(value)) => Some(value.to_string()),
        _ => None,
    }
}

/// `graft-evaluate compare BEST ROW` (the row's own evaluate binary) on the two evaluate
/// stages' outputs; `None`, with a warning, where it refuses them (rows that differ, as
/// across splits).
fn versus_best(root: &Path, pipeline: &Pipeline, best: &str, row: &str) -> Result<Option<VersusBest>> {
    let what = format!("{row} against {best}");
    let (Some(best_out), Some(row_out)) = (scalar_arg(pipeline, best, "out"), scalar_arg(pipeline, row, "out")) else {
        return Ok(None);
    };
    let dir = tempfile::tempdir().map_err(|source| graft_core::Error::Write { path: std::env::temp_dir(), source })?;
    let program = crate::runner::resolve_program(&pipeline.stages[row].cmd);
    let output = std::process::Command::new(&program)
        .args(["compare", &best_out, &row_out, "--out"])
        .arg(dir.path())
        .arg("-q")
        .current_dir(root)
        .output()
        .map_err(|source| crate::Error::Spawn { stage: what.clone(), program, source })?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        tracing::warn!("sweep: {what} not paired: {}", reason.trim());
        return Ok(None);
    }
    let c = Comparison::read(&dir.path().join(graft_core::metrics::COMPARISON_FILE))?;
    let interval = [c.difference_interval.low, c.difference_interval.high];
    Ok(Some(VersusBest { difference: c.difference, interval, mcnemar_p: c.mcnemar_p }))
}

/// A report's headline metrics and their intervals.
fn headline(report: &Report) -> (IndexMap<String, f64>, IndexMap<String, [f64; 2]>) {
    let metrics: IndexMap<String, f64> = report.headline().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let intervals = metrics
        .keys()
        .filter_map(|k| {
            let i = report.intervals.as_ref()?.metrics.get(k)?;
            Some((k.clone(), [i.low, i.high]))
        })
        .collect();
    (metrics, intervals)
}

/// Evaluates the winner's head on test with the winner's evaluate binary, into
/// `X.sweep.final-test/` beside the sweep table, unless the rows are ranked on test or its
/// features have no test split.
fn final_estimate(root: &Path, pipeline: &Pipeline, winner: &Row, dest: &Path) -> Result<Option<Final>> {
    let stage = &pipeline.stages[&winner.stage];
    let (Some(head), Some(features)) =
        (scalar_arg(pipeline, &winner.stage, "head"), scalar_arg(pipeline, &winner.stage, "features"))
    else {
        return Ok(None);
    };
    if winner.ranked_on == "test" || !root.join(&features).join("test.arrow").exists() {
        return Ok(None);
    }
    let out = dest.with_extension("final-test");
    let shown = out.strip_prefix(root).unwrap_or(&out).display().to_string();
    let program = crate::runner::resolve_program(&stage.cmd);
    let status = std::process::Command::new(&program)
        .args(["--head", &head, "--features", &features, "--split", "test", "--out", &shown, "-q"])
        .current_dir(root)
        // Its table would read as one more row of the sweep; the summary line says it all.
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|source| crate::Error::Spawn { stage: format!("{} on test", winner.stage), program, source })?;
    if !status.success() {
        return Err(crate::Error::StageFailed { stage: format!("{} on test", winner.stage), status });
    }
    let report = Report::read(&out.join(graft_core::metrics::FILE))?;
    let (metrics, intervals) = headline(&report);
    Ok(Some(Final { stage: winner.stage.clone(), split: "test".into(), metrics, intervals, out: shown }))
}

/// The table `graft run` prints: one row per combination, best first, with each metric's
/// interval, the split that ranks it and what chose its settings; and a warning when a
/// split both chose settings and ranks.
pub fn render(sweep: &Sweep) -> String {
    let Some(first) = sweep.rows.first() else { return String::new() };
    // Every axis of any row (a conditional axis is absent from some).
    let mut axes: Vec<&String> = Vec::new();
    for a in sweep.rows.iter().flat_map(|r| r.combination.keys()) {
        if !axes.contains(&a) {
            axes.push(a);
        }
    }
    let metrics: Vec<&String> = first.metrics.keys().collect();
    let chosen = |r: &Row| {
        let parts: Vec<String> = r.selections.iter().map(|s| format!("{} on {}", s.what, s.split)).collect();
        if parts.is_empty() { "nothing".to_owned() } else { parts.join(", ") }
    };
    let cell = |r: &Row, m: &str| {
        let value = r.metrics.get(m).copied().unwrap_or(f64::NAN);
        match r.intervals.get(m) {
            Some([low, high]) => format!("{value:.4} [{low:.3}, {high:.3}]"),
            None => format!("{value:.4}"),
        }
    };
    let mut columns: Vec<(String, Vec<String>)> = axes
        .iter()
        .map(|a| {
            ((*a).clone(), sweep.rows.iter().map(|r| r.combination.get(*a).cloned().unwrap_or_default()).collect())
        })
        .collect();
    for m in &metrics {
        columns.push(((*m).clone(), sweep.rows.iter().map(|r| cell(r, m)).collect()));
    }
    if sweep.rows.iter().any(|r| r.versus_best.is_some()) {
        let paired = |(i, r): (usize, &Row)| match &r.versus_best {
            Some(v) => format!(
                "{:+.4} [{:+.3}, {:+.3}], McNemar p {:.1e}",
                v.difference, v.interval[0], v.interval[1], v.mcnemar_p
            ),
            None if i == 0 => "best".into(),
            None => "not paired (other rows)".into(),
        };
        columns.push(("vs best (paired)".into(), sweep.rows.iter().enumerate().map(paired).collect()));
    }
    if sweep.rows.iter().any(|r| r.features_seconds.is_some()) {
        let cost = |r: &Row| r.features_seconds.map(|s| format!("{s:.1} s")).unwrap_or_default();
        columns.push(("features took".into(), sweep.rows.iter().map(cost).collect()));
        let rate = |r: &Row| match (r.features_tokens, r.features_seconds) {
            (Some(tokens), Some(s)) if s > 0.0 => format!("{:.0}", tokens as f64 / s),
            _ => String::new(),
        };
        if sweep.rows.iter().any(|r| !rate(r).is_empty()) {
            columns.push(("tokens/s".into(), sweep.rows.iter().map(rate).collect()));
        }
    }
    columns.push(("ranked on".into(), sweep.rows.iter().map(|r| r.ranked_on.clone()).collect()));
    columns.push(("chosen".into(), sweep.rows.iter().map(chosen).collect()));
    let widths: Vec<usize> =
        columns.iter().map(|(h, vs)| vs.iter().map(String::len).chain([h.len()]).max().unwrap_or(0)).collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(columns.iter().map(|(h, _)| h.as_str()).collect());
    for i in 0..sweep.rows.len() {
        out.push_str(&line(columns.iter().map(|(_, vs)| vs[i].as_str()).collect()));
    }
    if let Some(f) = &sweep.final_estimate {
        let parts: Vec<String> = f
            .metrics
            .iter()
            .map(|(m, v)| match f.intervals.get(m) {
                Some([low, high]) => format!("{m} {v:.4} [{low:.3}, {high:.3}]"),
                None => format!("{m} {v:.4}"),
            })
            .collect();
        out.push_str(&format!(
            "final held-out estimate of the winner `{}` on {} (seen once, by no choice or ranking): {} ({})\n",
            f.stage,
            f.split,
            parts.join(", "),
            f.out
        ));
    }
    let optimistic = sweep.rows.iter().filter(|r| r.selected_on_ranking_split()).count();
    if optimistic > 0 {
        out.push_str(&format!(
            "warning: {optimistic} of {} rows are ranked on the split that also chose their settings, so their \
             scores are optimistic and favour heads that chose more; rank on a split no choice saw (e.g. \
             `folds: 5` for logistic regression, so C is chosen inside train) and report the winner's test \
             score once\n",
            sweep.rows.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: &str, accuracy: f64, ranked_on: &str, selections: &[(&str, &str)]) -> Row {
        Row {
            stage: format!("evaluate[c={c}]"),
            combination: IndexMap::from([("c".to_owned(), c.to_owned())]),
            metrics: IndexMap::from([("accuracy".to_owned(), accuracy)]),
            intervals: IndexMap::from([("accuracy".to_owned(), [accuracy - 0.05, accuracy + 0.04])]),
            ranked_on: ranked_on.into(),
            selections: selections.iter().map(|(w, s)| Selection { what: (*w).into(), split: (*s).into() }).collect(),
            versus_best: None,
            features_seconds: None,
            features_tokens: None,
        }
    }

    #[test]
    fn rows_paired_with_the_best_show_the_difference_its_interval_mcnemar_and_cost() {
        let mut best = row("1", 0.8, "val", &[]);
        (best.features_seconds, best.features_tokens) = (Some(103.24), Some(200_000));
        let mut second = row("10", 0.75, "val", &[]);
        second.versus_best = Some(VersusBest { difference: -0.05, interval: [-0.081, -0.02], mcnemar_p: 0.0031 });
        second.features_seconds = Some(13.3);
        let sweep = Sweep { ranked_by: "accuracy".into(), rows: vec![best, second], final_estimate: None };
        let table = render(&sweep);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "c   accuracy               vs best (paired)                            features took  tokens/s  ranked on  chosen"
        );
        // 200,000 tokens in 103.24 s: 1937 tokens/s; the second row read no token split.
        assert_eq!(
            lines[1],
            "1   0.8000 [0.750, 0.840]  best                                        103.2 s        1937      val        nothing"
        );
        assert_eq!(
            lines[2],
            "10  0.7500 [0.700, 0.790]  -0.0500 [-0.081, -0.020], McNemar p 3.1e-3  13.3 s                   val        nothing"
        );
        // Timings stay out of sweep.json, which a rerun rewrites byte for byte.
        let json = serde_json::to_string(&sweep).unwrap();
        assert!(!json.contains("13.3") && !json.contains("200000"));
    }

    #[test]
    fn the_table_says_what_chose_and_what_ranks_and_warns_when_they_are_one_split() {
        let honest = Sweep {
            ranked_by: "accuracy".into(),
            rows: vec![row("1", 0.8, "val", &[("C", "train (5-fold CV)")]), row("10", 0.75, "val", &[])],
            final_estimate: Some(Final {
                stage: "evaluate[c=1]".into(),
                split: "test".into(),
                metrics: IndexMap::from([("accuracy".to_owned(), 0.78)]),
                intervals: IndexMap::from([("accuracy".to_owned(), [0.75, 0.81])]),
                out: "p.sweep.final-test".into(),
            }),
        };
        let table = render(&honest);
        assert_eq!(table.lines().next().unwrap(), "c   accuracy               ranked on  chosen");
        assert_eq!(table.lines().nth(1).unwrap(), "1   0.8000 [0.750, 0.840]  val        C on train (5-fold CV)");
        assert_eq!(table.lines().nth(2).unwrap(), "10  0.7500 [0.700, 0.790]  val        nothing");
        assert!(!table.contains("warning"), "{table}");
        assert!(table.contains("final held-out estimate of the winner `evaluate[c=1]` on test (seen once, by no choice or ranking): accuracy 0.7800 [0.750, 0.810] (p.sweep.final-test)"), "{table}");
        let leaky = Sweep {
            ranked_by: "accuracy".into(),
            rows: vec![row("1", 0.8, "val", &[("epoch", "val")])],
            final_estimate: None,
        };
        assert!(render(&leaky).contains("warning: 1 of 1 rows are ranked on the split that also chose"));
    }
}
