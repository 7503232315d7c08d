//! Learning curves: test accuracy against the number of labelled train rows, each size
//! trained `repeats` times on different seeded subsets with the same head config.

use std::path::Path;

pub use graft_core::curve::{Curve, FILE, Point, Size};

use crate::HeadConfig;
use crate::error::{Error, Result};

/// Trains a head for every size and repeat (seed `params.seed + repeat`) and scores it on
/// `test.arrow` (or `val.arrow` when there is no test split).
pub fn learning_curve(features: &Path, sizes: &[Size], repeats: usize, params: &HeadConfig) -> Result<Curve> {
    if sizes.is_empty() || repeats == 0 {
        return Err(Error::BadParam { key: "sizes", message: "give at least one size and one repeat".into() });
    }
    let (train, val) = crate::read_splits(features, params)?;
    let (split, scored) = match features.join("test.arrow") {
        p if p.exists() => ("test", graft_core::features::read_features(&p)?),
        _ => ("val", graft_core::features::read_features(&features.join("val.arrow"))?),
    };
    let mut points = Vec::new();
    for &size in sizes {
        let mut accuracies = Vec::new();
        let mut train_rows = 0;
        for r in 0..repeats {
            let mut p = params.clone();
            p.seed = params.seed + r as u64;
            (p.per_class, p.train_fraction) = match size {
                Size::PerClass(k) => (Some(k), None),
                Size::Fraction(f) => (None, Some(f)),
            };
            let head = crate::fit(&p, &train, val.as_ref(), |_| {})?;
            train_rows = head.info.training.train_rows;
            accuracies.push(crate::accuracy(&head.logits(scored.x.view()), &scored.classes));
        }
        let mean = accuracies.iter().sum::<f64>() / repeats as f64;
        let std = (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / repeats as f64).sqrt();
        tracing::info!("{size:?}: {train_rows} rows, accuracy {mean:.4} ± {std:.4}");
        points.push(Point { size, train_rows, accuracy_mean: mean, accuracy_std: std, accuracies });
    }
    Ok(Curve { format: graft_core::curve::FORMAT.into(), split: split.into(), config: params.clone(), repeats, points })
}

/// Writes `curve.json` into `dir` atomically.
pub fn write(dir: &Path, curve: &Curve) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(curve).map_err(|source| graft_core::Error::Json { what: "curve", source })?;
    json.push(b'\n');
    graft_core::atomic::commit_all(vec![graft_core::atomic::pending_bytes(&dir.join(FILE), &json)?])?;
    Ok(())
}
