//! Regression heads on features whose labels are numbers: ridge in closed form (alpha chosen
//! by val MSE) or an MLP trained on the standardised target with MSE or Huber loss.

use ndarray::Axis;

use graft_core::head::model::{Linear, Model};
use graft_core::head::{Fit, Head, Training};
use graft_learn::sample;

use crate::error::{Error, Result};
use crate::mlp::{self, Monitor, Target};
use crate::{ClassWeight, Loaded, Scaling, assemble, mlp_settings, ridge};
use crate::{HeadConfig, HeadKind, RegressionLoss};

fn refuse(key: &'static str, message: &str) -> Result<()> {
    Err(Error::BadParam { key, message: format!("{message} (these features are labelled with regression targets)") })
}

/// Options that only make sense for classes.
fn check(p: &HeadConfig) -> Result<()> {
    match p.head {
        HeadKind::LogisticRegression => refuse("head", "logistic regression needs classes; use `ridge` or `mlp`"),
        _ if p.class_weight != ClassWeight::None => refuse("class_weight", "class weights need classes"),
        _ if p.per_class.is_some() => refuse("per_class", "rows per class need classes; use `train_fraction`"),
        _ if p.calibrate => refuse("calibrate", "temperature scaling calibrates class probabilities"),
        _ if p.early_stopping_fraction.is_some() => {
            refuse("early_stopping_fraction", "held-out early stopping is for classes only so far; give a val split")
        }
        _ if p.head == HeadKind::Mlp && p.monitor == Monitor::Accuracy => {
            refuse("monitor", "accuracy is undefined; watch `loss`")
        }
        _ => Ok(()),
    }
}

fn mse(pred: impl Iterator<Item = f64>, y: &[f64]) -> f64 {
    pred.zip(y).map(|(p, t)| (p - t).powi(2)).sum::<f64>() / y.len().max(1) as f64
}

pub fn fit(p: &HeadConfig, train: &Loaded, val: Option<&Loaded>, on_epoch: impl FnMut(&mlp::Epoch)) -> Result<Head> {
    check(p)?;
    let (mut x_train, mut y_train) = (train.features.x.view(), train.features.targets.clone());
    let subset;
    if let Some(fraction) = p.train_fraction {
        let rows = sample::subsample(&vec![0; y_train.len()], 1, Some(fraction), None, p.seed);
        subset = x_train.select(Axis(0), &rows);
        x_train = subset.view();
        y_train = rows.iter().map(|&i| y_train[i]).collect();
    }
    let scaling = Scaling::learn(p.standardize, x_train);
    let scaled_train = scaling.apply(x_train);
    let x_train = scaled_train.as_ref().map_or(x_train, |x| x.view());
    let scaled_val = val.and_then(|v| scaling.apply(v.features.x.view()));
    let val_split =
        val.map(|v| (scaled_val.as_ref().map_or(v.features.x.view(), |x| x.view()), &v.features.targets[..]));
    let (model, fit, target_mean, target_scale) = match p.head {
        HeadKind::Ridge => {
            let mut alpha_selection = Vec::new();
            let mut best: Option<(f64, f64, Linear)> = None;
            for &alpha in &p.alpha {
                let model = ridge::fit(x_train, &y_train, alpha);
                let val_mse = val_split.map(|(x, y)| mse(model.logits(x).column(0).iter().copied(), y));
                tracing::info!("alpha={alpha:<10.4e}{}", val_mse.map_or(String::new(), |m| format!(" val MSE {m:.6}")));
                alpha_selection.push((alpha, val_mse));
                let score = val_mse.unwrap_or(0.0);
                if best.as_ref().is_none_or(|b| score < b.0) {
                    best = Some((score, alpha, model));
                }
            }
            let (_, chosen_alpha, model) = best.expect("at least one alpha");
            (Model::Linear(model), Fit::Ridge { chosen_alpha, alpha_selection }, 0.0, 1.0)
        }
        HeadKind::Mlp => {
            let n = y_train.len().max(1) as f64;
            let (mean, scale) = if p.standardize_target {
                let mean = y_train.iter().sum::<f64>() / n;
                let std = (y_train.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n).sqrt();
                (mean, if std > 0.0 { std } else { 1.0 })
            } else {
                (0.0, 1.0)
            };
            let standard = |y: &[f64]| -> Vec<f32> { y.iter().map(|v| ((v - mean) / scale) as f32).collect() };
            let (y_std, val_std) = (standard(&y_train), val_split.map(|(_, y)| standard(y)));
            let loss = match p.loss {
                RegressionLoss::Mse => mlp::Loss::Mse,
                RegressionLoss::Huber => mlp::Loss::Huber { delta: p.huber_delta },
            };
            let train_split = mlp::Split { x: x_train, y: Target::Values(&y_std), row_weights: None };
            let val_split = val_split.zip(val_std.as_deref()).map(|((x, _), y)| mlp::Split {
                x,
                y: Target::Values(y),
                row_weights: None,
            });
            let settings = mlp_settings(p, loss);
            let fitted = mlp::train(&train_split, val_split.as_ref(), 1, &p.hidden, p.activation, &settings, on_epoch)?;
            let fit = Fit::Mlp { epochs: fitted.history, best_epoch: fitted.best_epoch };
            (Model::Mlp(fitted.model), fit, mean, scale)
        }
        HeadKind::LogisticRegression => unreachable!("refused by check"),
    };
    let training =
        Training { config: p.clone(), train_rows: y_train.len(), class_weights: Vec::new(), calibration: None, fit };
    let mut head = assemble(train, model, scaling, training);
    head.info.target_mean = target_mean;
    head.info.target_scale = target_scale;
    Ok(head)
}
