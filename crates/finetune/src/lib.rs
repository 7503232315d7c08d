//! `graft-finetune`: trains a head on frozen backbone features.

pub mod calibrate;
pub mod curve;
mod error;
pub mod mlp;
pub mod optim;
mod regress;
pub mod ridge;
mod select;

use std::collections::BTreeMap;
use std::path::Path;

use graft_core::artifact::{SPLITS, Task};
use graft_core::features::{self, Features};
use graft_core::head::model::Model;
use graft_core::head::{self, Architecture, Fit, Head, HeadInfo};
use graft_learn::{logreg, sample};
use ndarray::{Array2, Axis};

pub use error::{Error, Result};
pub use graft_core::config::finetune::{
    AutoWord, CValue, ClassWeight, Config, HeadConfig, HeadKind, RegressionLoss, c_grid,
};
pub use graft_learn::accuracy;

/// Applies a `--config` YAML file: its keys fill every training key not given in
/// `explicit` (the keys set on the command line). Unknown keys are refused.
pub fn apply_config_file(params: &HeadConfig, path: &Path, explicit: &[String]) -> Result<HeadConfig> {
    let bad = |message: String| Error::ConfigFile { path: path.to_owned(), message };
    let text = fs_err::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let from_file: HeadConfig = serde_norway::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let to_map = |c: &HeadConfig| match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => unreachable!("a struct serialises to a map"),
    };
    let mut merged = to_map(&from_file);
    for (key, value) in to_map(params) {
        if explicit.contains(&key) {
            merged.insert(key, value);
        }
    }
    let merged: HeadConfig =
        serde_json::from_value(serde_json::Value::Object(merged)).map_err(|e| bad(e.to_string()))?;
    let in_file: Vec<String> = match serde_norway::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(m)) => m.keys().filter(|k| !explicit.contains(k)).cloned().collect(),
        _ => Vec::new(),
    };
    if let Some((_, why)) = merged.first_unused(&in_file) {
        return Err(bad(format!("{why}: remove it, or choose a head that uses it")));
    }
    Ok(merged)
}

/// Refuses a key of `given` (set explicitly) that `params` would ignore.
pub fn check_given(params: &HeadConfig, given: &[String]) -> Result<()> {
    match params.first_unused(given) {
        Some((_, why)) => Err(Error::Unused { why }),
        None => Ok(()),
    }
}

fn check_params(p: &HeadConfig) -> Result<()> {
    let bad = |key, message: String| Err(Error::BadParam { key, message });
    let (cs, _) = c_grid(&p.c);
    if cs.is_empty() || cs.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
        return bad("c", format!("values must be positive and finite, got {cs:?}"));
    }
    if let Some(f) = p.early_stopping_fraction
        && !(f > 0.0 && f <= 0.5)
    {
        return bad("early_stopping_fraction", format!("must be in (0, 0.5], got {f}"));
    }
    if let Some(f) = p.train_fraction
        && !(f > 0.0 && f <= 1.0)
    {
        return bad("train_fraction", format!("must be in (0, 1], got {f}"));
    }
    if p.per_class == Some(0) {
        return bad("per_class", "must be at least 1".into());
    }
    if p.folds == 1 {
        return bad("folds", "cross-validation needs at least 2 folds (0 chooses on val)".into());
    }
    if !(0.0..1.0).contains(&p.dropout) {
        return bad("dropout", format!("must be in [0, 1), got {}", p.dropout));
    }
    if !(0.0..1.0).contains(&p.label_smoothing) {
        return bad("label_smoothing", format!("must be in [0, 1), got {}", p.label_smoothing));
    }
    if !(p.lr.is_finite() && p.lr > 0.0) {
        return bad("lr", format!("must be positive, got {}", p.lr));
    }
    if p.epochs == 0 || p.batch_size == 0 {
        return bad(if p.epochs == 0 { "epochs" } else { "batch_size" }, "must be at least 1".into());
    }
    if p.hidden.contains(&0) {
        return bad("hidden", format!("layer widths must be at least 1, got {:?}", p.hidden));
    }
    if p.alpha.is_empty() || p.alpha.iter().any(|a| !(a.is_finite() && *a > 0.0)) {
        return bad("alpha", format!("values must be positive and finite, got {:?}", p.alpha));
    }
    if !(p.huber_delta.is_finite() && p.huber_delta > 0.0) {
        return bad("huber_delta", format!("must be positive, got {}", p.huber_delta));
    }
    if p.clip_norm.is_some_and(|c| !c.is_finite() || c <= 0.0) {
        return bad("clip_norm", "must be positive".into());
    }
    Ok(())
}

/// Per-class loss weights given the class ids of the training rows.
pub fn class_weights(spec: &ClassWeight, labels: &[String], classes: &[usize]) -> Result<Vec<f64>> {
    spec.weights(labels, classes).map_err(|message| Error::BadParam { key: "class_weight", message })
}

/// Trains the head and writes it; returns what was written. `on_epoch` sees the MLP's
/// per-epoch records as they complete.
pub fn run(cfg: &Config, on_epoch: impl FnMut(&mlp::Epoch)) -> Result<Head> {
    graft_core::atomic::check_out_is_no_input(&cfg.out, &[("--features", &cfg.features)])?;
    let p = &cfg.params;
    check_params(p)?;
    let (train, val) = read_splits(&cfg.features, p)?;
    let mut head = fit(p, &train, val.as_ref(), on_epoch)?;
    for (split, loaded) in [(SPLITS[0], Some(&train)), (SPLITS[1], val.as_ref())] {
        let Some(loaded) = loaded else { continue };
        head.info.inputs.insert(split.to_owned(), graft_core::hash::file(&loaded.path)?);
        if let Some(data) = loaded.features.provenance.inputs.get(split) {
            head.info.data.insert(split.to_owned(), data.clone());
        }
    }
    graft_core::atomic::commit_all(head.to_files(&cfg.out)?.into_iter().map(|(_, p)| p).collect())?;
    Ok(head)
}

/// A split read from disk, and where from.
#[derive(Debug)]
pub struct Loaded {
    pub path: std::path::PathBuf,
    pub features: Features,
}

/// Reads train (required) and val (when present, or an error when `p` needs it).
pub fn read_splits(dir: &Path, p: &HeadConfig) -> Result<(Loaded, Option<Loaded>)> {
    let [train_name, val_name, _] = SPLITS;
    let train_path = dir.join(format!("{train_name}.arrow"));
    if !train_path.exists() {
        return Err(Error::NoTrain { path: train_path });
    }
    let train = features::read_features(&train_path)?;
    let val_path = dir.join(format!("{val_name}.arrow"));
    let (cs, auto) = c_grid(&p.c);
    let val = if val_path.exists() {
        let val = features::read_features(&val_path)?;
        features::check_compatible(&train, &train_path, &val, &val_path)?;
        Some(Loaded { path: val_path, features: val })
    } else {
        let needs = if p.calibrate {
            Some("`calibrate`".to_owned())
        } else if p.head == HeadKind::LogisticRegression && cs.len() > 1 && p.folds == 0 && !auto {
            Some(format!("choosing C among {} values without `folds`", cs.len()))
        } else if p.head == HeadKind::Ridge && p.alpha.len() > 1 {
            Some(format!("choosing alpha among {} values", p.alpha.len()))
        } else {
            None
        };
        if let Some(what) = needs {
            return Err(Error::NoVal { path: val_path, what });
        }
        None
    };
    Ok((Loaded { path: train_path, features: train }, val))
}

/// Trains a head on `train`, selecting and stopping on `val` when given; writes nothing.
pub fn fit(p: &HeadConfig, train: &Loaded, val: Option<&Loaded>, on_epoch: impl FnMut(&mlp::Epoch)) -> Result<Head> {
    check_params(p)?;
    if train.features.provenance.task == Task::Regression {
        return regress::fit(p, train, val, on_epoch);
    }
    let train_path = &train.path;
    let labels = train.features.provenance.labels.clone();
    let (mut x_train, mut y_train) = (train.features.x.view(), train.features.classes.clone());
    let subset;
    if p.train_fraction.is_some() || p.per_class.is_some() {
        let rows = sample::subsample(&y_train, labels.len(), p.train_fraction, p.per_class, p.seed);
        subset = x_train.select(Axis(0), &rows);
        x_train = subset.view();
        y_train = rows.iter().map(|&i| y_train[i]).collect();
    }
    for (class, name) in labels.iter().enumerate() {
        if !y_train.contains(&class) {
            return Err(Error::MissingClass { path: train_path.clone(), class: name.clone() });
        }
    }
    let (cs, auto) = c_grid(&p.c);
    let folds = if p.folds == 0 && auto { 5 } else { p.folds };
    let scaling = Scaling::learn(p.standardize, x_train);
    let scaled_train = scaling.apply(x_train);
    let x_train = scaled_train.as_ref().map_or(x_train, |x| x.view());
    let scaled_val = val.and_then(|v| scaling.apply(v.features.x.view()));
    let val_split =
        val.map(|v| (scaled_val.as_ref().map_or(v.features.x.view(), |x| x.view()), &v.features.classes[..]));
    let weights = class_weights(&p.class_weight, &labels, &y_train)?;
    let row_weights: Option<Vec<f64>> =
        (p.class_weight != ClassWeight::None).then(|| y_train.iter().map(|&c| weights[c]).collect());

    let (model, fit) = match p.head {
        HeadKind::LogisticRegression => {
            let problem =
                logreg::Problem { x: x_train, y: &y_train, classes: labels.len(), row_weights: row_weights.as_deref() };
            if folds > 0 {
                select::check_folds(train_path, &y_train, &labels, folds)?;
            }
            let chosen = select::choose_c(&problem, &cs, folds, val_split, p)?;
            let fit = Fit::LogisticRegression {
                chosen_c: chosen.c,
                selection: chosen.candidates,
                objective: chosen.outcome.trace,
            };
            (Model::Linear(chosen.model), fit)
        }
        HeadKind::Mlp => {
            let settings = mlp_settings(p, mlp::Loss::CrossEntropy { smoothing: p.label_smoothing });
            // Early stopping watches val, or a stratified share of train held out from training.
            let held_out =
                p.early_stopping_fraction.map(|f| sample::subsample(&y_train, labels.len(), Some(f), None, p.seed));
            let (fit_rows, stop_rows): (Vec<usize>, Vec<usize>) = match &held_out {
                Some(out) => (0..y_train.len()).partition(|i| out.binary_search(i).is_err()),
                None => ((0..y_train.len()).collect(), Vec::new()),
            };
            let pick =
                |rows: &[usize]| (x_train.select(Axis(0), rows), rows.iter().map(|&i| y_train[i]).collect::<Vec<_>>());
            let ((x_fit, y_fit), (x_stop, y_stop)) = (pick(&fit_rows), pick(&stop_rows));
            let w_fit: Option<Vec<f64>> = row_weights.as_ref().map(|w| fit_rows.iter().map(|&i| w[i]).collect());
            let train_split =
                mlp::Split { x: x_fit.view(), y: mlp::Target::Classes(&y_fit), row_weights: w_fit.as_deref() };
            let val_split = match held_out {
                Some(_) => Some(mlp::Split { x: x_stop.view(), y: mlp::Target::Classes(&y_stop), row_weights: None }),
                None => val_split.map(|(x, y)| mlp::Split { x, y: mlp::Target::Classes(y), row_weights: None }),
            };
            let fitted = mlp::train(
                &train_split,
                val_split.as_ref(),
                labels.len(),
                &p.hidden,
                p.activation,
                &settings,
                on_epoch,
            )?;
            (Model::Mlp(fitted.model), Fit::Mlp { epochs: fitted.history, best_epoch: fitted.best_epoch })
        }
        HeadKind::Ridge => {
            return Err(Error::BadParam {
                key: "head",
                message: "`ridge` is a regression head, and these features are labelled with classes".into(),
            });
        }
    };
    let (mut temperature, mut calibration) = (1.0, None);
    if p.calibrate
        && let Some((x, y)) = val_split
    {
        let z = model.logits(x);
        temperature = calibrate::fit_temperature(z.view(), y);
        calibration = Some(head::Calibration {
            val_loss_before: calibrate::nll(z.view(), y, 1.0),
            val_loss_after: calibrate::nll(z.view(), y, temperature),
        });
    }
    let training =
        head::Training { config: p.clone(), train_rows: y_train.len(), class_weights: weights, calibration, fit };
    let mut head = assemble(train, model, scaling, training);
    head.info.temperature = temperature;
    Ok(head)
}

/// Feature standardisation learned on train (none unless asked for): `(mean, scale)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scaling(Option<(ndarray::Array1<f64>, ndarray::Array1<f64>)>);

impl Scaling {
    pub(crate) fn learn(standardize: bool, x: ndarray::ArrayView2<'_, f32>) -> Self {
        if !standardize {
            return Self::default();
        }
        let x64 = x.mapv(f64::from);
        let mean = x64.mean_axis(Axis(0)).expect("train has rows");
        let std = x64.std_axis(Axis(0), 0.0).mapv(|s| if s > 0.0 { s } else { 1.0 });
        Self(Some((mean, std)))
    }

    /// The standardised copy of `x`, or `None` when there is no scaling.
    pub(crate) fn apply(&self, x: ndarray::ArrayView2<'_, f32>) -> Option<Array2<f32>> {
        self.0.as_ref().map(|(m, s)| head::standardized(x, m, s))
    }
}

pub(crate) fn mlp_settings(p: &HeadConfig, loss: mlp::Loss) -> mlp::Training {
    mlp::Training {
        epochs: p.epochs,
        batch_size: p.batch_size,
        dropout: p.dropout,
        optimizer: optim::Settings {
            optimizer: p.optimizer,
            lr: p.lr,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        schedule: p.schedule,
        warmup_epochs: p.warmup_epochs,
        lr_step: p.lr_step,
        lr_gamma: p.lr_gamma,
        clip_norm: p.clip_norm,
        loss,
        patience: Some(p.patience),
        monitor: p.monitor,
        seed: p.seed,
    }
}

/// The head and its description, from a trained model.
pub(crate) fn assemble(train: &Loaded, model: Model, scaling: Scaling, training: head::Training) -> Head {
    let dim = train.features.backbone.dim;
    let architecture = match (&training.fit, &model) {
        (Fit::Ridge { .. }, _) => Architecture::Ridge { dim },
        (Fit::Mlp { .. }, Model::Mlp(m)) => Architecture::Mlp {
            outputs: model.outputs(),
            dim,
            hidden: m.layers[..m.layers.len() - 1].iter().map(|l| l.bias.len()).collect(),
            activation: m.activation,
        },
        _ => Architecture::LogisticRegression { outputs: model.outputs(), dim },
    };
    let provenance = &train.features.provenance;
    Head {
        info: HeadInfo {
            format: head::FORMAT.into(),
            graft_version: graft_core::VERSION.into(),
            architecture,
            task: provenance.task,
            labels: provenance.labels.clone(),
            backbone: train.features.backbone.clone(),
            standardize: scaling.0.is_some(),
            temperature: 1.0,
            target_mean: 0.0,
            target_scale: 1.0,
            training,
            inputs: BTreeMap::new(),
            data: BTreeMap::new(),
        },
        model,
        scaling: scaling.0,
        timing: None,
    }
}
