//! `graft-evaluate bundle`: a trained head, its backbone, how rows were read and how the
//! model measured, copied into one relocatable folder with a manifest and a model card.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use arrow::array::Array;
use graft_core::artifact::{ArtifactReader, Provenance};
use graft_core::atomic::{Pending, pending_bytes};
use graft_core::bundle::{self as format, BundleInfo, Estimate, Input, TestSummary, TrainingData};
use graft_core::columns;
use graft_core::config::evaluate::BundleConfig;
use graft_core::head::Head;
use graft_core::manifest::Manifest;
use graft_core::metrics::{Metrics, Report};
use graft_core::spec::{BackboneSpec, Kind};

use crate::predictions::Predictions;
use crate::{Error, Result};

pub fn bundle(cfg: &BundleConfig) -> Result<BundleInfo> {
    let head = Head::load(&cfg.head)?;
    let spec = BackboneSpec::load(&cfg.spec)?;
    let refuse = |message: String| Error::BadBundle { path: cfg.out.clone(), message };
    if graft_core::hash::file(&spec.model)? != head.info.backbone.model_blake3 {
        return Err(refuse(format!(
            "spec `{}` names a model other than the one head `{}` was trained on",
            cfg.spec.display(),
            cfg.head.display()
        )));
    }
    let train_path = cfg.data.join("train.arrow");
    let train = ArtifactReader::open(&train_path)?.provenance().clone();
    if let (Kind::Text, Some(t)) = (spec.kind, &train.tokenizer)
        && graft_core::hash::file(&spec.text().tokenizer)? != t.blake3
    {
        return Err(refuse(format!("`{}` was tokenised with another tokenizer than spec's", train_path.display())));
    }
    let eval = cfg.eval.as_deref().map(|e| ("--eval", e));
    let inputs = [[("--head", cfg.head.as_path()), ("--data", &cfg.data)].as_slice(), eval.as_slice()].concat();
    graft_core::atomic::check_out_is_no_input(&cfg.out, &inputs)?;
    if graft_core::atomic::same_path(&cfg.out.join(format::HEAD_DIR), &cfg.head) {
        return Err(refuse(format!("its `{}/` would be head `{}` itself", format::HEAD_DIR, cfg.head.display())));
    }
    if train.labels != head.info.labels {
        return Err(refuse(format!(
            "`{}` has labels {:?}, but head `{}` knows {:?}: not the data it was trained on",
            train_path.display(),
            train.labels,
            cfg.head.display(),
            head.info.labels
        )));
    }
    if let Some(made_from) = head.info.data.get("train")
        && *made_from != graft_core::hash::file(&train_path)?
    {
        return Err(refuse(format!(
            "`{}` is not the split head `{}` was trained on (its blake3 is not the one the head records)",
            train_path.display(),
            cfg.head.display()
        )));
    }
    if let Some(eval) = &cfg.eval {
        let predictions = eval.join(crate::PREDICTIONS_FILE);
        let evaluated = ArtifactReader::open(&predictions)?.provenance().inputs.get("head").cloned();
        if evaluated != Some(graft_core::head::weights_blake3(&cfg.head)?) {
            return Err(refuse(format!(
                "`{}` is not an evaluation of head `{}`: its metrics would describe another model",
                eval.display(),
                cfg.head.display()
            )));
        }
    }
    let report = cfg.eval.as_deref().map(crate::load_report).transpose()?;
    let info = BundleInfo {
        format: format::FORMAT.into(),
        graft_version: graft_core::VERSION.into(),
        task: head.info.task,
        labels: head.info.labels.clone(),
        features: head.info.backbone.clone(),
        input: input(&spec, &train, &train_path)?,
        training: TrainingData {
            inputs: head.info.inputs.clone(),
            train_rows: head.info.training.train_rows,
            class_counts: class_counts(&train_path, &head.info.labels)?,
        },
        test: match (&cfg.eval, &report) {
            (Some(eval), Some(report)) => Some(test_summary(eval, report)?),
            _ => None,
        },
    };

    let out = &cfg.out;
    let mut files: Vec<(String, Pending)> = Vec::new();
    let mut json =
        serde_json::to_vec_pretty(&info).map_err(|source| graft_core::Error::Json { what: "bundle", source })?;
    json.push(b'\n');
    files.push((format::INFO_FILE.into(), pending_bytes(&out.join(format::INFO_FILE), &json)?));
    let mut local = spec.clone();
    local.model = format::MODEL_FILE.into();
    files.push((format::MODEL_FILE.into(), copy(&spec.model, &out.join(format::MODEL_FILE))?));
    if let Some(text) = &mut local.text {
        files.push((format::TOKENIZER_FILE.into(), copy(&text.tokenizer, &out.join(format::TOKENIZER_FILE))?));
        text.tokenizer = format::TOKENIZER_FILE.into();
    }
    let yaml =
        serde_norway::to_string(&local).map_err(|source| graft_core::Error::Spec { path: cfg.spec.clone(), source })?;
    files.push((format::SPEC_FILE.into(), pending_bytes(&out.join(format::SPEC_FILE), yaml.as_bytes())?));
    for (name, pending) in head.to_files(&out.join(format::HEAD_DIR))? {
        files.push((format!("{}/{name}", format::HEAD_DIR), pending));
    }
    if let Some(eval) = &cfg.eval {
        let metrics = eval.join(crate::METRICS_FILE);
        files.push((format::METRICS_FILE.into(), copy(&metrics, &out.join(format::METRICS_FILE))?));
    }
    let card = crate::card::model_card(&info, &head, &spec, report.as_ref());
    files.push((format::CARD_FILE.into(), pending_bytes(&out.join(format::CARD_FILE), card.as_bytes())?));

    let mut manifest = Manifest::new(format::MANIFEST_KIND);
    for (name, pending) in &files {
        manifest.add_pending(name, pending)?;
    }
    let mut pending: Vec<Pending> = files.into_iter().map(|(_, p)| p).collect();
    pending.push(manifest.pending(out)?);
    graft_core::atomic::commit_all(pending)?;
    Ok(info)
}

/// `src` copied into a pending `dest`.
fn copy(src: &Path, dest: &Path) -> Result<Pending> {
    let mut pending = Pending::create(dest)?;
    let mut from =
        fs_err::File::open(src).map_err(|source| graft_core::Error::Read { path: src.to_owned(), source })?;
    std::io::copy(&mut from, pending.file())
        .map_err(|source| graft_core::Error::Write { path: dest.to_owned(), source })?;
    pending.file().flush().map_err(|source| graft_core::Error::Write { path: dest.to_owned(), source })?;
    Ok(pending)
}

/// How the training rows were read, from the preprocess parameters recorded in `train`.
fn input(spec: &BackboneSpec, train: &Provenance, path: &Path) -> Result<Input> {
    let param = |key: &str| train.params.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let missing = |key: &str| Error::BadBundle {
        path: path.to_owned(),
        message: format!("its provenance lacks the preprocess parameter `{key}`: not a graft-preprocess output"),
    };
    let label_column = param("label_column").ok_or_else(|| missing("label_column"))?;
    let id_column = param("id_column");
    Ok(match spec.kind {
        Kind::Text => Input::Text {
            text_column: param("text_column").ok_or_else(|| missing("text_column"))?,
            label_column,
            id_column,
            max_length: train.tokenizer.as_ref().map_or(spec.text().max_length, |t| t.max_length),
        },
        Kind::Image => Input::Image { label_column, id_column, path_column: param("path_column") },
    })
}

/// Rows per class of the training split, in label order.
fn class_counts(path: &Path, labels: &[String]) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; labels.len()];
    if labels.is_empty() {
        return Ok(counts);
    }
    let mut reader = ArtifactReader::open(path)?;
    while let Some(batch) = reader.next_batch()? {
        let column =
            graft_core::artifact::column::<arrow::array::StringArray>(&batch, columns::LABEL, path, "utf8 labels")?;
        for i in 0..column.len() {
            if let Some(c) = labels.iter().position(|l| l == column.value(i)) {
                counts[c] += 1;
            }
        }
    }
    Ok(counts)
}

fn test_summary(eval: &Path, report: &Report) -> Result<TestSummary> {
    let interval = |name: &str| report.intervals.as_ref().and_then(|i| i.metrics.get(name));
    let metrics: BTreeMap<String, Estimate> = report
        .headline()
        .into_iter()
        .map(|(name, value)| {
            let ci = interval(name);
            (name.to_owned(), Estimate { value, low: ci.map(|c| c.low), high: ci.map(|c| c.high) })
        })
        .collect();
    let (rows, top_probability) = match &report.metrics {
        Metrics::Classification(m) => {
            let predictions = Predictions::read(eval)?;
            let top = predictions.proba.iter().map(|p| p.iter().copied().fold(0.0, f64::max));
            (m.rows, format::confidence_histogram(top))
        }
        Metrics::Regression(m) => (m.rows, Vec::new()),
    };
    Ok(TestSummary { rows, metrics, top_probability })
}
