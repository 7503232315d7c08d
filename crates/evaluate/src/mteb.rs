//! MTEB's classification protocol on graft features, so a backbone can be compared with
//! published MTEB classification scores: for each of `experiments` draws, `per_class`
//! random train rows per label, `LogisticRegression(max_iter=100)` (C=1, tol=1e-4), scored
//! on the test split; the mean and standard deviation over draws are reported.

use std::path::{Path, PathBuf};

use graft_core::config::evaluate::MtebConfig;
use graft_core::features as data;
use graft_core::numeric::argmax;
use graft_learn::{lbfgs, logreg, sample};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, metrics};

pub const FILE: &str = "mteb.json";

/// Scores of one draw, as MTEB names them (`ap` only for two classes).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scores {
    pub accuracy: f64,
    pub f1: f64,
    pub f1_weighted: f64,
    pub ap: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtebReport {
    pub format: String,
    pub protocol: MtebConfig,
    pub train_rows: usize,
    pub test_rows: usize,
    pub mean: Scores,
    /// Population standard deviation over draws (numpy's `np.std`, as MTEB).
    pub std: Scores,
    pub scores_per_experiment: Vec<Scores>,
}

pub fn run(p: &MtebConfig) -> Result<MtebReport> {
    if p.per_class == 0 || p.experiments == 0 {
        return Err(Error::BadProtocol("`per_class` and `experiments` must be at least 1".into()));
    }
    let read = |split: &str| -> Result<(PathBuf, data::Features)> {
        let path = p.features.join(format!("{split}.arrow"));
        if !path.exists() {
            return Err(Error::NoSplit { dir: p.features.clone(), split: split.into() });
        }
        Ok((path.clone(), data::read_features(&path)?))
    };
    let (train_path, train) = read("train")?;
    let (test_path, test) = read("test")?;
    data::check_compatible(&train, &train_path, &test, &test_path)?;
    let labels = &train.provenance.labels;
    let opts = lbfgs::Options { max_iter: 100, gtol: 1e-4, ..lbfgs::Options::default() };
    let mut runs = Vec::new();
    for i in 0..p.experiments {
        let rows = sample::subsample(&train.classes, labels.len(), None, Some(p.per_class), p.seed + i as u64);
        let x = train.x.select(ndarray::Axis(0), &rows);
        let y: Vec<usize> = rows.iter().map(|&r| train.classes[r]).collect();
        let problem = logreg::Problem { x: x.view(), y: &y, classes: labels.len(), row_weights: None };
        let (model, _) = logreg::fit(&problem, 1.0, opts);
        let logits = model.logits(test.x.view());
        let pred: Vec<usize> = logits.rows().into_iter().map(|r| argmax(r.as_slice().expect("contiguous"))).collect();
        let m = metrics::classification(&test.classes, &pred, labels);
        let ap = (labels.len() == 2).then(|| {
            let positive: Vec<bool> = test.classes.iter().map(|&c| c == 1).collect();
            let scores: Vec<f64> = pred.iter().map(|&c| c as f64).collect();
            metrics::binary_average_precision(&positive, &scores)
        });
        runs.push(Scores { accuracy: m.accuracy, f1: m.macro_f1, f1_weighted: m.weighted_f1, ap: ap.flatten() });
    }
    let (mean, std) = summarise(&runs);
    let report = MtebReport {
        format: "graft-mteb/1".into(),
        protocol: p.clone(),
        train_rows: train.classes.len(),
        test_rows: test.classes.len(),
        mean,
        std,
        scores_per_experiment: runs,
    };
    if let Some(out) = &p.out {
        write(out, &report)?;
    }
    Ok(report)
}

/// Mean and population standard deviation of each score over the draws.
fn summarise(runs: &[Scores]) -> (Scores, Scores) {
    let stat = |f: fn(&Scores) -> Option<f64>| -> (Option<f64>, Option<f64>) {
        let Some(v) = runs.iter().map(f).collect::<Option<Vec<f64>>>() else {
            return (None, None);
        };
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        (Some(mean), Some(var.sqrt()))
    };
    let (acc, f1, f1w, ap) =
        (stat(|s| Some(s.accuracy)), stat(|s| Some(s.f1)), stat(|s| Some(s.f1_weighted)), stat(|s| s.ap));
    let pick = |i: usize| Scores {
        accuracy: [acc.0, acc.1][i].unwrap_or(0.0),
        f1: [f1.0, f1.1][i].unwrap_or(0.0),
        f1_weighted: [f1w.0, f1w.1][i].unwrap_or(0.0),
        ap: [ap.0, ap.1][i],
    };
    (pick(0), pick(1))
}

fn write(dir: &Path, report: &MtebReport) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(report).map_err(|source| graft_core::Error::Json { what: "mteb", source })?;
    json.push(b'\n');
    graft_core::atomic::commit_all(vec![graft_core::atomic::pending_bytes(&dir.join(FILE), &json)?])?;
    Ok(())
}

/// One line per score: mean ± std over the draws, in percent as MTEB tables print them.
pub fn render(r: &MtebReport) -> String {
    let p = &r.protocol;
    let mut s = format!(
        "MTEB classification protocol: {} per class, {} draws, {} test rows\n",
        p.per_class, p.experiments, r.test_rows
    );
    let mut line = |name: &str, mean: f64, std: f64| {
        s.push_str(&format!("{name:<12} {:6.2} ± {:.2}\n", 100.0 * mean, 100.0 * std));
    };
    line("accuracy", r.mean.accuracy, r.std.accuracy);
    line("f1", r.mean.f1, r.std.f1);
    line("f1_weighted", r.mean.f1_weighted, r.std.f1_weighted);
    if let (Some(m), Some(sd)) = (r.mean.ap, r.std.ap) {
        line("ap", m, sd);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_mean_and_population_std() {
        let s = |a: f64| Scores { accuracy: a, f1: a / 2.0, f1_weighted: a, ap: None };
        let (mean, std) = summarise(&[s(0.5), s(0.7), s(0.9)]);
        assert!((mean.accuracy - 0.7).abs() < 1e-12 && (mean.f1 - 0.35).abs() < 1e-12);
        assert!((std.accuracy - (0.08f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!((mean.ap, std.ap), (None, None));
    }
}
