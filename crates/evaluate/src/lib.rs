//! `graft-evaluate`: a trained head on one split's features -> predictions and metrics.

pub mod bundle;
mod card;
pub mod compare;
pub mod errors;
pub mod fuse;
pub mod metrics;
pub mod mteb;
pub mod predict;
pub mod predictions;
pub mod report;
pub mod sql;
pub mod svg;
mod table;
pub mod uncertainty;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use graft_core::artifact::{ArtifactWriter, BackboneId, Provenance, Task};
use graft_core::columns;
pub use graft_core::config::evaluate::Config;
use graft_core::features::{self as data};
use graft_core::head::Head;
use graft_core::manifest::Manifest;
pub use graft_core::metrics::{HeadSummary, Intervals, Metrics, Report};
use graft_core::numeric::argmax;
pub use metrics::{ClassMetrics, Classification, Probabilistic, Regression};
pub use table::render;

pub const METRICS_FILE: &str = graft_core::metrics::FILE;
pub const PREDICTIONS_FILE: &str = "predictions.arrow";
/// The manifest's `kind` of an evaluation folder.
pub const MANIFEST_KIND: &str = "evaluation";

/// The report of predictions not made by one head: fusion members and their fusion.
pub(crate) fn fused_report(
    provenance: &Provenance,
    metrics: Classification,
    intervals: Option<Intervals>,
    probabilities: Option<Probabilistic>,
    backbone: BackboneId,
    fusion: Option<fuse::Fusion>,
) -> Report {
    Report {
        format: graft_core::metrics::FORMAT.into(),
        split: provenance.params.get("split").and_then(|s| s.as_str()).unwrap_or("unknown").to_owned(),
        metrics: Metrics::Classification(metrics),
        intervals,
        probabilities,
        backbone,
        head: None,
        fusion,
        baseline: None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] graft_core::Error),
    #[error("features `{}` ({found}) are not those head `{}` was trained on ({expected})", features.display(), head.display())]
    BackboneMismatch { features: PathBuf, head: PathBuf, found: String, expected: String },
    #[error("features `{}` have labels {found:?}, head `{}` knows {expected:?}", features.display(), head.display())]
    LabelMismatch { features: PathBuf, head: PathBuf, found: Vec<String>, expected: Vec<String> },
    #[error("head `{}` was trained for {expected}, but features `{}` are labelled for {found}", head.display(), features.display())]
    TaskMismatch { features: PathBuf, head: PathBuf, found: Task, expected: Task },
    #[error("`{}` has no split `{split}`", dir.display())]
    NoSplit { dir: PathBuf, split: String },
    #[error("`--data`: features `{}` were not made from `{}` (its blake3 is not the one they record), so its rows cannot be shown beside them", features.display(), data.display())]
    DataNotFeatures { data: PathBuf, features: PathBuf },
    #[error("`{}` has features of rows to score but not the `rejects.arrow` graft-backbone writes beside them; rerun graft-backbone", dir.display())]
    NoBackboneRejects { dir: PathBuf },
    #[error("`{}` and `{}` are not predictions on the same rows: {message}", a.display(), b.display())]
    NotComparable { a: PathBuf, b: PathBuf, message: String },
    #[error("`{}` row {row}: {message}", path.display())]
    BadPredictions { path: PathBuf, row: usize, message: String },
    #[error("`{}` is not an evaluation's predictions: give an evaluation folder or its `predictions.arrow` (scored new rows are not compared)", path.display())]
    NotEvaluation { path: PathBuf },
    #[error("head `{}` scores row {row} (id `{id}`) of `{}` as NaN or infinite", head.display(), features.display())]
    NonFinite { head: PathBuf, features: PathBuf, row: usize, id: String },
    #[error("bundle `{}`: {message}", path.display())]
    BadBundle { path: PathBuf, message: String },
    #[error("cannot write Parquet `{}`: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("fuse: {0}")]
    BadFusion(String),
    #[error("mteb: {0}")]
    BadProtocol(String),
}

impl graft_core::UserFacing for Error {
    fn is_user_error(&self) -> bool {
        match self {
            Error::Core(e) => e.is_user_error(),
            _ => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub fn run(cfg: &Config) -> Result<Report> {
    let data = cfg.data.as_deref().map(|d| ("--data", d));
    let inputs = [[("--head", cfg.head.as_path()), ("--features", &cfg.features)].as_slice(), data.as_slice()].concat();
    graft_core::atomic::check_out_is_no_input(&cfg.out, &inputs)?;
    let head = Head::load(&cfg.head)?;
    let path = cfg.features.join(format!("{}.arrow", cfg.split));
    if !path.exists() {
        return Err(Error::NoSplit { dir: cfg.features.clone(), split: cfg.split.clone() });
    }
    let feats = read_scored_by(&path, &head, cfg)?;
    if let Some(data) = &cfg.data {
        let file = data.join(format!("{}.arrow", cfg.split));
        if let Some(made_from) = feats.provenance.inputs.get(&cfg.split)
            && *made_from != graft_core::hash::file(&file)?
        {
            return Err(Error::DataNotFeatures { data: file, features: path });
        }
    }
    let n = feats.ids.len();
    let labels = &head.info.labels;
    let fields = columns::predictions_fields(head.info.task, labels);
    let mut columns: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from(feats.ids.clone())), Arc::new(StringArray::from(feats.labels.clone()))];
    let (metrics, intervals, probabilities, scored) = match head.info.task {
        Task::Classification => {
            let proba = head.predict_proba(feats.x.view());
            check_finite(proba.rows().into_iter().map(|r| r.iter().all(|v| v.is_finite())), &feats, &path, cfg)?;
            let pred: Vec<usize> =
                proba.rows().into_iter().map(|r| argmax(r.as_slice().expect("contiguous rows"))).collect();
            let intervals =
                uncertainty::classification_intervals(&feats.classes, &pred, labels, cfg.bootstrap, cfg.seed);
            let rows: Vec<Vec<f64>> = proba.rows().into_iter().map(|r| r.to_vec()).collect();
            columns.push(Arc::new(StringArray::from_iter_values(pred.iter().map(|&p| labels[p].as_str()))));
            for c in 0..labels.len() {
                columns.push(Arc::new(Float64Array::from(proba.column(c).to_vec())));
            }
            let m = metrics::classification(&feats.classes, &pred, labels);
            let probabilistic = metrics::probabilistic(&feats.classes, &rows);
            (Metrics::Classification(m), intervals, Some(probabilistic), Scored::Classes(rows))
        }
        Task::Regression => {
            let pred = head.predict_values(feats.x.view());
            check_finite(pred.iter().map(|v| v.is_finite()), &feats, &path, cfg)?;
            let resampled = |rows: &[usize], stat: fn(&Regression) -> f64| {
                let (t, p): (Vec<f64>, Vec<f64>) = rows.iter().map(|&r| (feats.targets[r], pred[r])).unzip();
                stat(&metrics::regression(&t, &p))
            };
            let intervals = uncertainty::intervals(
                n,
                cfg.bootstrap,
                cfg.seed,
                &[("rmse", &|rows| resampled(rows, |m| m.rmse)), ("r2", &|rows| resampled(rows, |m| m.r2))],
            );
            columns.push(Arc::new(Float64Array::from(feats.targets.clone())));
            columns.push(Arc::new(Float64Array::from(pred.clone())));
            (Metrics::Regression(metrics::regression(&feats.targets, &pred)), intervals, None, Scored::Values(pred))
        }
    };
    let provenance = Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "evaluate".into(),
        graft_version: graft_core::VERSION.into(),
        task: feats.provenance.task,
        labels: labels.clone(),
        rows: feats.ids.len() as u64,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        inputs: [
            ("features".to_owned(), graft_core::hash::file(&path)?),
            ("head".to_owned(), graft_core::head::weights_blake3(&cfg.head)?),
        ]
        .into(),
        tokenizer: feats.provenance.tokenizer.clone(),
        backbone: Some(feats.backbone.clone()),
        shard: None,
        images: None,
    };
    let schema = provenance.attach(fields)?;

    let report = Report {
        format: graft_core::metrics::FORMAT.into(),
        split: cfg.split.clone(),
        metrics,
        intervals,
        probabilities,
        backbone: feats.backbone,
        head: Some(HeadSummary {
            kind: head.info.architecture.kind(),
            c: match head.info.training.fit {
                graft_core::head::Fit::LogisticRegression { chosen_c, .. } => Some(chosen_c),
                _ => None,
            },
            temperature: head.info.temperature,
            train_rows: head.info.training.train_rows,
        }),
        fusion: None,
        baseline: None,
    };
    let mut report = report;
    if let (Some(base), Scored::Classes(proba)) = (&cfg.baseline, &scored) {
        let ours = predictions::Predictions {
            path: cfg.out.join(PREDICTIONS_FILE),
            provenance: feats.provenance.clone(),
            ids: feats.ids.clone(),
            truth: feats.labels.clone(),
            pred: proba.iter().map(|p| labels[argmax(p)].clone()).collect(),
            proba: proba.clone(),
        };
        let baseline = predictions::Predictions::read(base)?;
        report.baseline = Some(compare::compare_predictions(&baseline, &ours, 2000, cfg.seed)?);
    }
    let curve = cfg.curve.as_deref().map(graft_core::curve::Curve::read).transpose()?;
    let features_hash = graft_core::hash::file(&path)?;
    let mut provenance = vec![
        ("graft".to_owned(), graft_core::VERSION.to_owned()),
        ("features".to_owned(), format!("{} (blake3 {features_hash})", shown_path(&path))),
        (
            "head".to_owned(),
            format!("{} ({}, graft {})", shown_path(&cfg.head), head.info.format, head.info.graft_version),
        ),
        ("backbone".to_owned(), report.backbone.describe()),
        ("model blake3".to_owned(), report.backbone.model_blake3.clone()),
        ("provider".to_owned(), report.backbone.provider.clone()),
        ("train rows".to_owned(), head.info.training.train_rows.to_string()),
    ];
    for (split, hash) in &head.info.inputs {
        provenance.push((format!("head trained on {split}"), format!("blake3 {hash}")));
    }
    // The head's settings that its kind of head uses (the others are defaults it ignored).
    let config = match serde_json::to_value(&head.info.training.config) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.retain(|key, _| head.info.training.config.unused_because(key).is_none());
            serde_json::Value::Object(map).to_string()
        }
        _ => String::new(),
    };
    provenance.push(("head config".to_owned(), config));
    let (wrong, best_threshold) = match &scored {
        Scored::Classes(proba) => {
            let mut wrong = errors::most_confident_wrong(&feats.ids, &feats.classes, proba, labels);
            if let Some(data) = &cfg.data {
                let file = data.join(format!("{}.arrow", cfg.split));
                errors::attach_rows(&mut wrong, &file)?;
                provenance.push(("rows of wrong predictions".to_owned(), shown_path(&file)));
            }
            (wrong, best_threshold(cfg, &head, &feats.classes, proba)?)
        }
        Scored::Values(_) => (Vec::new(), None),
    };
    let page = report::Page {
        title: format!("graft evaluation: {} on {}", head.info.architecture.kind(), report.backbone.spec),
        report: &report,
        head: Some(&head),
        classes: match &scored {
            Scored::Classes(rows) => Some((&feats.classes, rows)),
            Scored::Values(_) => None,
        },
        values: match &scored {
            Scored::Values(pred) => Some((&feats.targets, pred)),
            Scored::Classes(_) => None,
        },
        curve: curve.as_ref(),
        members: &[],
        wrong: &wrong,
        best_threshold,
        provenance,
    };
    write_outputs(&cfg.out, &schema, columns, &page)?;
    Ok(report)
}

/// Reads the features at `path`, refusing them unless they are in `head`'s feature space,
/// with its task and labels.
fn read_scored_by(path: &Path, head: &Head, cfg: &Config) -> Result<data::Features> {
    let feats = data::read_features(path)?;
    if !feats.backbone.same_features(&head.info.backbone) {
        return Err(Error::BackboneMismatch {
            features: path.to_owned(),
            head: cfg.head.clone(),
            found: feats.backbone.describe(),
            expected: head.info.backbone.describe(),
        });
    }
    if feats.provenance.task != head.info.task {
        return Err(Error::TaskMismatch {
            features: path.to_owned(),
            head: cfg.head.clone(),
            found: feats.provenance.task,
            expected: head.info.task,
        });
    }
    if feats.provenance.labels != head.info.labels {
        return Err(Error::LabelMismatch {
            features: path.to_owned(),
            head: cfg.head.clone(),
            found: feats.provenance.labels.clone(),
            expected: head.info.labels.clone(),
        });
    }
    Ok(feats)
}

/// A path as given, and resolved when that differs: `runs/x (/home/u/p/runs/x)`.
fn shown_path(path: &Path) -> String {
    match std::fs::canonicalize(path) {
        Ok(full) if full != path => format!("{} ({})", path.display(), full.display()),
        _ => path.display().to_string(),
    }
}

/// Two classes: the threshold of the positive class's probability with the best F1, found
/// on val when val exists and is not the split evaluated (else on this split, so said).
fn best_threshold(cfg: &Config, head: &Head, classes: &[usize], proba: &[Vec<f64>]) -> Result<Option<(f64, String)>> {
    if head.info.labels.len() != 2 {
        return Ok(None);
    }
    let val_path = cfg.features.join("val.arrow");
    let found = if cfg.split != "val" && val_path.exists() {
        let val = read_scored_by(&val_path, head, cfg)?;
        let p = head.predict_proba(val.x.view());
        let positive: Vec<bool> = val.classes.iter().map(|&c| c == 1).collect();
        errors::best_f1_threshold(&positive, &p.column(1).to_vec()).map(|t| (t, "val".to_owned()))
    } else {
        let positive: Vec<bool> = classes.iter().map(|&c| c == 1).collect();
        let score: Vec<f64> = proba.iter().map(|p| p[1]).collect();
        errors::best_f1_threshold(&positive, &score).map(|t| (t, format!("{} itself (optimistic)", cfg.split)))
    };
    Ok(found)
}

/// Refuses scores with a non-finite value (`finite` per row), naming the first such row.
fn check_finite(finite: impl Iterator<Item = bool>, feats: &data::Features, path: &Path, cfg: &Config) -> Result<()> {
    match finite.enumerate().find(|(_, ok)| !ok) {
        Some((row, _)) => {
            Err(Error::NonFinite { head: cfg.head.clone(), features: path.to_owned(), row, id: feats.ids[row].clone() })
        }
        None => Ok(()),
    }
}

/// Writes `predictions.arrow` (`schema`, `columns`), `metrics.json` (the page's report),
/// `report.html` and their Parquet copies (`sql`) into `out`, all committed together.
pub(crate) fn write_outputs(
    out: &Path,
    schema: &arrow::datatypes::SchemaRef,
    columns: Vec<ArrayRef>,
    page: &report::Page<'_>,
) -> Result<()> {
    let dest = out.join(PREDICTIONS_FILE);
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|source| graft_core::Error::Arrow { path: dest.clone(), source })?;
    let mut writer = ArtifactWriter::create(&dest, schema)?;
    writer.write(&batch)?;
    let predictions = writer.finish()?;
    let tables = [
        (sql::PREDICTIONS_FILE, sql::parquet_bytes(&batch, &out.join(sql::PREDICTIONS_FILE))?),
        (sql::METRICS_FILE, sql::parquet_bytes(&page.report.table(), &out.join(sql::METRICS_FILE))?),
    ];
    let mut json =
        serde_json::to_vec_pretty(page.report).map_err(|source| graft_core::Error::Json { what: "metrics", source })?;
    json.push(b'\n');
    let html = report::html(page);
    let mut manifest = Manifest::new(MANIFEST_KIND);
    manifest.add_pending(PREDICTIONS_FILE, &predictions)?;
    manifest.add_bytes(METRICS_FILE, &json);
    manifest.add_bytes(report::FILE, html.as_bytes());
    let mut pending = vec![predictions];
    for (name, bytes) in &tables {
        manifest.add_bytes(name, bytes);
        pending.push(graft_core::atomic::pending_bytes(&out.join(name), bytes)?);
    }
    pending.push(graft_core::atomic::pending_bytes(&out.join(METRICS_FILE), &json)?);
    pending.push(graft_core::atomic::pending_bytes(&out.join(report::FILE), html.as_bytes())?);
    pending.push(manifest.pending(out)?);
    graft_core::atomic::commit_all(pending)?;
    Ok(())
}

/// What each row was scored: class probabilities, or a value.
enum Scored {
    Classes(Vec<Vec<f64>>),
    Values(Vec<f64>),
}

/// Reads a `metrics.json`, given it or the folder holding it.
pub fn load_report(path: &Path) -> Result<Report> {
    let path = if path.is_dir() { path.join(METRICS_FILE) } else { path.to_owned() };
    let bytes = fs_err::read(&path).map_err(|source| graft_core::Error::Read { path: path.clone(), source })?;
    check_manifest(&path, Some(&bytes))?;
    Ok(Report::parse(&path, &bytes)?)
}

/// Refuses a file of an evaluation folder unless the folder's manifest lists it and every
/// other file as they are (`bytes`: the file, when already read). A file outside an
/// evaluation folder has no manifest to check.
pub(crate) fn check_manifest(path: &Path, bytes: Option<&[u8]>) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if !dir.join(graft_core::manifest::FILE).exists() {
        return Ok(());
    }
    let manifest = Manifest::read(dir, MANIFEST_KIND)?;
    match bytes {
        Some(b) => {
            manifest.check_bytes(dir, name, b)?;
            manifest.check_others(dir, Some(name))?;
        }
        None => manifest.check_all(dir)?,
    }
    Ok(())
}
