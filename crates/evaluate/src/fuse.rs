//! `graft-evaluate fuse`: one prediction from several heads' predictions on the same rows
//! (heads on different layers, backbones or seeds): the mean of their probabilities, a
//! weighted mean with given weights or weights fitted on val (lowest val log-loss), or a
//! majority vote. The fused predictions are evaluated like any other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray};
use graft_core::artifact::Provenance;
pub use graft_core::metrics::{Fusion, Method};
use graft_core::numeric::argmax;
use graft_learn::lbfgs;
use serde::Serialize;

use crate::predictions::Predictions;
use crate::{Error, Metrics, PREDICTIONS_FILE, Report, Result, metrics, report, uncertainty};

/// Parameters of `graft-evaluate fuse`.
#[derive(Debug, Clone, PartialEq, Serialize, clap::Args)]
pub struct FuseConfig {
    /// The members' predictions (evaluation folders or predictions.arrow files), same rows.
    #[arg(required = true, num_args = 2..)]
    pub members: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "mean")]
    pub method: Method,
    /// Weights of the members, in order (weighted).
    #[arg(long, value_delimiter = ',')]
    pub weights: Vec<f64>,
    /// The same members' predictions on val, in order, to fit the weights on (weighted).
    #[arg(long, value_delimiter = ',')]
    pub val: Vec<PathBuf>,
    /// Output folder for predictions.arrow, metrics.json and report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Bootstrap resamples for the intervals: 0 (none) or at least 100.
    #[arg(long, default_value_t = 1000, value_parser = graft_core::config::evaluate::resamples)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn bad(message: String) -> Error {
    Error::BadFusion(message)
}

/// Members' probabilities averaged with `weights`.
fn weighted(members: &[Predictions], weights: &[f64]) -> Vec<Vec<f64>> {
    let (n, k) = (members[0].ids.len(), members[0].provenance.labels.len());
    (0..n)
        .map(|i| (0..k).map(|c| members.iter().zip(weights).map(|(m, w)| w * m.proba[i][c]).sum::<f64>()).collect())
        .collect()
}

/// Weights on the simplex (softmax of free parameters) minimising the mean log-loss of the
/// weighted average on `val`.
fn fit_weights(val: &[Predictions]) -> Vec<f64> {
    let truth = val[0].classes();
    let m = val.len();
    let softmax = |theta: &[f64]| -> Vec<f64> {
        let mut w = theta.to_vec();
        graft_core::numeric::softmax(&mut w);
        w
    };
    let objective = |theta: &[f64], grad: &mut [f64]| -> f64 {
        let w = softmax(theta);
        let n = truth.len() as f64;
        let (mut loss, mut g) = (0.0, vec![0.0; m]);
        for (i, &t) in truth.iter().enumerate() {
            let p: f64 = (0..m).map(|j| w[j] * val[j].proba[i][t]).sum::<f64>().max(f64::EPSILON);
            loss -= p.ln();
            for (j, gj) in g.iter_mut().enumerate() {
                *gj -= val[j].proba[i][t] / p;
            }
        }
        // Through the softmax: d/dtheta_j = w_j (g_j - sum_k w_k g_k).
        let mean: f64 = w.iter().zip(&g).map(|(a, b)| a * b).sum();
        for j in 0..m {
            grad[j] = w[j] * (g[j] - mean) / n;
        }
        loss / n
    };
    let out = lbfgs::minimize(objective, vec![0.0; m], lbfgs::Options { gtol: 1e-8, ..lbfgs::Options::default() });
    softmax(&out.x)
}

fn vote(members: &[Predictions]) -> Vec<Vec<f64>> {
    let labels = &members[0].provenance.labels;
    let mean = weighted(members, &vec![1.0 / members.len() as f64; members.len()]);
    (0..members[0].ids.len())
        .map(|i| {
            let mut votes = vec![0.0; labels.len()];
            for m in members {
                let c = labels.iter().position(|l| *l == m.pred[i]).expect("checked on read");
                votes[c] += 1.0 / members.len() as f64;
            }
            // Ties go to the tied class with the highest mean probability: nudge by a
            // fraction of a vote, then renormalise to the vote shares.
            let top = votes.iter().fold(0.0f64, |a, &b| a.max(b));
            let tied: Vec<usize> = (0..votes.len()).filter(|&c| votes[c] == top).collect();
            if tied.len() > 1 {
                let winner = *tied.iter().max_by(|&&a, &&b| mean[i][a].total_cmp(&mean[i][b])).expect("a tie");
                let shift = 1e-9;
                votes[winner] += shift;
                let sum: f64 = votes.iter().sum();
                votes.iter_mut().for_each(|v| *v /= sum);
            }
            votes
        })
        .collect()
}

/// Classification and probability metrics of probabilities `proba` against `truth`.
fn evaluate(
    truth: &[usize],
    proba: &[Vec<f64>],
    labels: &[String],
) -> (metrics::Classification, metrics::Probabilistic) {
    let pred: Vec<usize> = proba.iter().map(|p| argmax(p)).collect();
    (metrics::classification(truth, &pred, labels), metrics::probabilistic(truth, proba))
}

pub fn fuse(cfg: &FuseConfig) -> Result<Report> {
    let folder =
        |p: &PathBuf| if p.is_file() { p.parent().map(Path::to_path_buf).unwrap_or_default() } else { p.clone() };
    let folders: Vec<PathBuf> = cfg.members.iter().chain(&cfg.val).map(folder).collect();
    let inputs: Vec<(&'static str, &Path)> = folders.iter().map(|f| ("member", f.as_path())).collect();
    graft_core::atomic::check_out_is_no_input(&cfg.out, &inputs)?;
    let members: Vec<Predictions> = cfg.members.iter().map(|p| Predictions::read(p)).collect::<Result<_>>()?;
    for m in &members[1..] {
        members[0].check_same_rows(m)?;
    }
    let m = members.len();
    let weights = match cfg.method {
        Method::Weighted if !cfg.weights.is_empty() => {
            if cfg.weights.len() != m || cfg.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
                return Err(bad(format!("{} members need {m} non-negative weights, got {:?}", m, cfg.weights)));
            }
            let sum: f64 = cfg.weights.iter().sum();
            if sum <= 0.0 {
                return Err(bad("the weights sum to 0".into()));
            }
            cfg.weights.iter().map(|w| w / sum).collect()
        }
        Method::Weighted => {
            if cfg.val.len() != m {
                return Err(bad(format!(
                    "weighted fusion needs `--weights` or the {m} members' val predictions in `--val` (got {})",
                    cfg.val.len()
                )));
            }
            let val: Vec<Predictions> = cfg.val.iter().map(|p| Predictions::read(p)).collect::<Result<_>>()?;
            for v in &val[1..] {
                val[0].check_same_rows(v)?;
            }
            if val[0].provenance.labels != members[0].provenance.labels {
                return Err(bad(format!(
                    "val predictions have labels {:?}, the members {:?}",
                    val[0].provenance.labels, members[0].provenance.labels
                )));
            }
            fit_weights(&val)
        }
        Method::Mean | Method::Vote => vec![1.0 / m as f64; m],
    };
    let fused = match cfg.method {
        Method::Vote => vote(&members),
        _ => weighted(&members, &weights),
    };
    let labels = members[0].provenance.labels.clone();
    let truth = members[0].classes();
    let (classification, probabilistic) = evaluate(&truth, &fused, &labels);
    let member_reports: Vec<(String, Report)> = members
        .iter()
        .zip(&cfg.members)
        .map(|(p, path)| {
            let (c, pr) = evaluate(&truth, &p.proba, &labels);
            let backbone = p.provenance.backbone.clone().unwrap_or_else(|| members[0].backbone());
            let r = crate::fused_report(&p.provenance, c, None, Some(pr), backbone, None);
            (path.display().to_string(), r)
        })
        .collect();
    let pred: Vec<usize> = fused.iter().map(|p| argmax(p)).collect();
    let intervals = uncertainty::classification_intervals(&truth, &pred, &labels, cfg.bootstrap, cfg.seed);
    let fusion = Fusion {
        method: cfg.method,
        members: cfg.members.clone(),
        weights,
        member_accuracy: member_reports
            .iter()
            .map(|(_, r)| if let Metrics::Classification(c) = &r.metrics { c.accuracy } else { f64::NAN })
            .collect(),
    };
    let report = crate::fused_report(
        &members[0].provenance,
        classification,
        intervals,
        Some(probabilistic),
        members[0].backbone(),
        Some(fusion),
    );
    write(cfg, &members[0], &fused, &pred, &report, &member_reports)?;
    Ok(report)
}

impl Predictions {
    fn backbone(&self) -> graft_core::artifact::BackboneId {
        self.provenance.backbone.clone().unwrap_or_else(|| graft_core::artifact::BackboneId {
            spec: "unknown".into(),
            model_blake3: String::new(),
            outputs: Vec::new(),
            combine: None,
            pooling: String::new(),
            normalize: false,
            dim: 0,
            provider: String::new(),
        })
    }
}

fn write(
    cfg: &FuseConfig,
    first: &Predictions,
    fused: &[Vec<f64>],
    pred: &[usize],
    report: &Report,
    members: &[(String, Report)],
) -> Result<()> {
    let labels = &first.provenance.labels;
    let fields = graft_core::columns::predictions_fields(graft_core::artifact::Task::Classification, labels);
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(first.ids.clone())),
        Arc::new(StringArray::from(first.truth.clone())),
        Arc::new(StringArray::from_iter_values(pred.iter().map(|&p| labels[p].as_str()))),
    ];
    for c in 0..labels.len() {
        columns.push(Arc::new(Float64Array::from(fused.iter().map(|p| p[c]).collect::<Vec<f64>>())));
    }
    let mut inputs = std::collections::BTreeMap::new();
    for (i, path) in cfg.members.iter().enumerate() {
        let file = if path.is_dir() { path.join(PREDICTIONS_FILE) } else { path.clone() };
        inputs.insert(format!("member {i}"), graft_core::hash::file(&file)?);
    }
    let provenance = Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "fuse".into(),
        graft_version: graft_core::VERSION.into(),
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        inputs: inputs.clone(),
        shard: None,
        images: None,
        ..first.provenance.clone()
    };
    let schema = provenance.attach(fields)?;
    let fusion = report.fusion.as_ref().expect("a fused report");
    let mut provenance_rows = vec![
        ("graft".to_owned(), graft_core::VERSION.to_owned()),
        ("method".to_owned(), format!("{:?}", fusion.method).to_lowercase()),
    ];
    for ((path, w), (i, hash)) in
        cfg.members.iter().zip(&fusion.weights).zip(inputs.iter().enumerate().map(|(i, (_, h))| (i, h)))
    {
        provenance_rows.push((format!("member {i}"), format!("{} (weight {w:.4}, blake3 {hash})", path.display())));
    }
    let truth = first.classes();
    let wrong = crate::errors::most_confident_wrong(&first.ids, &truth, fused, &first.provenance.labels);
    let page = report::Page {
        title: format!("graft fusion of {} heads", cfg.members.len()),
        report,
        head: None,
        classes: Some((&truth, fused)),
        values: None,
        curve: None,
        members,
        wrong: &wrong,
        best_threshold: None,
        provenance: provenance_rows,
    };
    crate::write_outputs(&cfg.out, &schema, columns, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predictions of two classes `a`/`b` with these true labels, predicted labels and
    /// probabilities.
    fn predictions(truth: Vec<String>, pred: Vec<String>, proba: Vec<Vec<f64>>) -> Predictions {
        Predictions {
            path: PathBuf::from("p"),
            provenance: Provenance {
                format: graft_core::artifact::FORMAT.into(),
                stage: "evaluate".into(),
                graft_version: String::new(),
                task: graft_core::artifact::Task::Classification,
                labels: vec!["a".into(), "b".into()],
                rows: truth.len() as u64,
                params: serde_json::Value::Null,
                inputs: Default::default(),
                tokenizer: None,
                backbone: None,
                shard: None,
                images: None,
            },
            ids: (0..truth.len()).map(|i| i.to_string()).collect(),
            truth,
            pred,
            proba,
        }
    }

    #[test]
    fn vote_shares_sum_to_one_and_ties_follow_the_mean_probability() {
        let make = |pred: &[&str], proba: &[[f64; 2]]| {
            let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
            predictions(strings(&["a"; 2]), strings(pred), proba.iter().map(|p| p.to_vec()).collect())
        };
        // Row 0: one vote each, b more probable on average; row 1: both vote a.
        let m1 = make(&["a", "a"], &[[0.55, 0.45], [0.9, 0.1]]);
        let m2 = make(&["b", "a"], &[[0.1, 0.9], [0.8, 0.2]]);
        let v = vote(&[m1, m2]);
        assert!(v.iter().all(|p| (p.iter().sum::<f64>() - 1.0).abs() < 1e-12));
        assert!(v[0][1] > v[0][0], "{:?}", v[0]);
        assert_eq!(v[1], [1.0, 0.0]);
    }

    #[test]
    fn fitted_weights_favour_the_better_member() {
        // Member 0 is right with confidence 0.9, member 1 is a coin flip.
        let rows = 200usize;
        let make = |p: f64| {
            let truth: Vec<String> = (0..rows).map(|i| if i % 2 == 0 { "a".into() } else { "b".into() }).collect();
            let proba = (0..rows).map(|i| if i % 2 == 0 { vec![p, 1.0 - p] } else { vec![1.0 - p, p] }).collect();
            predictions(truth, vec!["a".into(); rows], proba)
        };
        let w = fit_weights(&[make(0.9), make(0.5)]);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(w[0] > 0.99, "{w:?}");
    }
}
