//! Regression metrics.

pub use graft_core::metrics::Regression;

use super::rank::average_ranks;

pub fn regression(y: &[f64], pred: &[f64]) -> Regression {
    let n = y.len().max(1) as f64;
    let mse = y.iter().zip(pred).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / n;
    let mae = y.iter().zip(pred).map(|(a, b)| (a - b).abs()).sum::<f64>() / n;
    let mean = y.iter().sum::<f64>() / n;
    let ss_tot: f64 = y.iter().map(|a| (a - mean).powi(2)).sum();
    let ss_res = mse * n;
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    Regression {
        rows: y.len(),
        mse,
        rmse: mse.sqrt(),
        mae,
        r2,
        pearson: pearson(y, pred),
        spearman: pearson(&average_ranks(y), &average_ranks(pred)),
    }
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}
