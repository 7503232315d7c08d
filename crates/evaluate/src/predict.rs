//! `graft-evaluate predict`: a bundle's head applied to new rows' features, streamed batch
//! by batch into one output row per input row, in input order. Rows that could not be
//! scored come out with a null prediction and their reason; the counts and a drift summary
//! are written beside the predictions.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use graft_core::artifact::{ArtifactReader, ArtifactWriter, Provenance, REJECTS, ROWS, Task, column};
use graft_core::atomic::Pending;
use graft_core::bundle::{self as format, Bundle};
use graft_core::columns;
use graft_core::config::evaluate::{OutputFormat, PredictConfig};
use graft_core::drift::{self, ClassShare, Drift, Labelled, LowConfidence};
use ndarray::Array2;

use crate::{Error, Result};

/// Output rows per written batch.
const BATCH_ROWS: usize = 4096;

pub fn predict(cfg: &PredictConfig) -> Result<Drift> {
    let format = OutputFormat::resolve(cfg.format, &cfg.out)?;
    // Through a link, the predictions and their drift summary go where it points.
    let target = graft_core::atomic::output_target(&cfg.out)?;
    let bundle = Bundle::load(&cfg.bundle)?;
    let features_path = cfg.features.join(format!("{ROWS}.arrow"));
    let mut features = ArtifactReader::open(&features_path)?;
    let found = features
        .provenance()
        .backbone
        .clone()
        .ok_or_else(|| graft_core::Error::NotFeatures { path: features_path.clone() })?;
    if !found.same_features(&bundle.info.features) {
        return Err(Error::BackboneMismatch {
            features: features_path,
            head: cfg.bundle.clone(),
            found: found.describe(),
            expected: bundle.info.features.describe(),
        });
    }
    if let Some(shard) = features.provenance().shard {
        return Err(graft_core::Error::Shard { path: features_path, shard: shard.to_string() }.into());
    }
    let rows_path = cfg.rows.join(format!("{ROWS}.arrow"));
    let mut rows = Cursor::open(&rows_path)?;
    let rejects = Cursor::open(&cfg.rows.join(format!("{REJECTS}.arrow")))?;
    // Rows the backbone could not embed (an undecodable image), with the features'
    // provenance: the same model and rows file.
    let failed_path = cfg.features.join(format!("{REJECTS}.arrow"));
    if !failed_path.exists() {
        return Err(Error::NoBackboneRejects { dir: cfg.features.clone() });
    }
    let failed = Cursor::open(&failed_path)?;
    if failed.reader.provenance().inputs != features.provenance().inputs {
        return Err(Error::NotComparable {
            a: failed_path,
            b: features_path,
            message: "they come from different backbone runs".into(),
        });
    }
    if features.provenance().rows + failed.total != rows.total {
        return Err(Error::NotComparable {
            a: rows_path,
            b: features_path,
            message: format!(
                "{} rows to score, {} rows of features and {} rejected by the backbone",
                rows.total,
                features.provenance().rows,
                failed.total
            ),
        });
    }
    let labels = &bundle.info.labels;
    let layout = Layout::new(bundle.info.task, labels, &rows.extra);
    let provenance = Provenance {
        format: graft_core::artifact::FORMAT.into(),
        stage: "predict".into(),
        graft_version: graft_core::VERSION.into(),
        task: bundle.info.task,
        labels: labels.clone(),
        rows: rows.total + rejects.total,
        params: serde_json::to_value(cfg).map_err(|source| graft_core::Error::Json { what: "config", source })?,
        inputs: [
            ("bundle".to_owned(), graft_core::hash::file(&cfg.bundle.join(graft_core::manifest::FILE))?),
            ("features".to_owned(), graft_core::hash::file(features.path())?),
            ("rows".to_owned(), graft_core::hash::file(&rows_path)?),
        ]
        .into(),
        tokenizer: None,
        backbone: Some(found),
        shard: None,
        images: None,
    };
    let mut sink = Sink::create(&target, format, &layout, &provenance)?;
    let mut out = InOrder { rejects, failed, tally: Tally::new(labels.len()), unwritten: Unwritten::default() };
    let dim = bundle.info.features.dim;
    while let Some(batch) = features.next_batch()? {
        let view = columns::Features::of(&batch, dim, &features_path)?;
        let x = Array2::from_shape_fn((batch.num_rows(), dim), |(i, j)| view.row(i)[j]);
        // The batch's rows in order, with the backbone's rejects among them.
        let mut taken = Vec::with_capacity(batch.num_rows());
        let mut k = 0;
        while k < batch.num_rows() {
            let Some(row) = rows.next_if(|_| true)? else {
                return Err(Error::NotComparable {
                    a: rows_path,
                    b: features_path,
                    message: "more rows of features than rows to score".into(),
                });
            };
            let row = out.backbone_outcome(row, &failed_path)?;
            if row.reason.is_none() {
                if view.ids.value(k) != row.id {
                    return Err(Error::NotComparable {
                        a: rows_path.clone(),
                        b: features_path.clone(),
                        message: format!(
                            "row {k} of a batch is `{}` in one and `{}` in the other",
                            row.id,
                            view.ids.value(k)
                        ),
                    });
                }
                k += 1;
            }
            taken.push(row);
        }
        let scores: Vec<Score> = match bundle.info.task {
            Task::Classification => {
                let proba = bundle.head.predict_proba(x.view());
                proba.rows().into_iter().map(|r| Score::Classes(r.to_vec())).collect()
            }
            Task::Regression => bundle.head.predict_values(x.view()).into_iter().map(Score::Value).collect(),
        };
        let mut scores = scores.into_iter();
        for row in taken {
            let score = match row.reason {
                Some(_) => None,
                None => Some(scores.next().expect("a score per row with features")),
            };
            if score.as_ref().is_some_and(|s| !s.is_finite()) {
                return Err(Error::NonFinite {
                    head: cfg.bundle.clone(),
                    features: features_path.clone(),
                    row: row.position as usize,
                    id: row.id,
                });
            }
            out.push(row, score, cfg.low_confidence, labels, &mut sink, &layout)?;
        }
    }
    // Rows after the last with features: each one the backbone rejected.
    while let Some(row) = rows.next_if(|_| true)? {
        let row = out.backbone_outcome(row, &failed_path)?;
        if row.reason.is_none() {
            return Err(Error::NotComparable {
                a: rows_path,
                b: features_path,
                message: "more rows to score than rows of features".into(),
            });
        }
        out.push(row, None, cfg.low_confidence, labels, &mut sink, &layout)?;
    }
    let tally = out.finish(&rows_path, &failed_path, &mut sink, &layout, labels)?;
    let drift = tally.drift(&bundle, cfg.low_confidence);
    let mut json =
        serde_json::to_vec_pretty(&drift).map_err(|source| graft_core::Error::Json { what: "drift", source })?;
    json.push(b'\n');
    let drift_file = graft_core::atomic::pending_bytes(&drift_path(&target), &json)?;
    graft_core::atomic::commit_all(vec![sink.finish()?, drift_file])?;
    Ok(drift)
}

/// `DIR/NAME.drift.json` beside predictions `DIR/NAME.EXT`.
pub fn drift_path(out: &Path) -> std::path::PathBuf {
    out.with_extension("drift.json")
}

/// A scored row's head output.
#[derive(Debug, Clone)]
enum Score {
    Classes(Vec<f64>),
    Value(f64),
}

impl Score {
    fn is_finite(&self) -> bool {
        match self {
            Score::Classes(p) => p.iter().all(|v| v.is_finite()),
            Score::Value(v) => v.is_finite(),
        }
    }
}

/// One input row as the rows or rejects file holds it.
#[derive(Debug, Clone)]
struct InputRow {
    position: u64,
    id: String,
    label: Option<String>,
    reason: Option<String>,
    extra: Vec<Option<String>>,
}

/// Output rows in input order: scored rows, and in their places the rows that
/// `graft-preprocess rows` rejected (never embedded) and those the backbone rejected.
struct InOrder {
    rejects: Cursor,
    failed: Cursor,
    tally: Tally,
    unwritten: Unwritten,
}

impl InOrder {
    /// `row` of the rows to score, with the backbone's reason when it rejected the row.
    fn backbone_outcome(&mut self, mut row: InputRow, failed_path: &Path) -> Result<InputRow> {
        if let Some(failed) = self.failed.next_if(|f| f.position == row.position)? {
            if failed.id != row.id {
                return Err(graft_core::Error::Corrupt {
                    path: failed_path.to_owned(),
                    message: format!(
                        "row {} is `{}` here and `{}` among the rows to score",
                        row.position, failed.id, row.id
                    ),
                }
                .into());
            }
            row.reason = Some(failed.reason.unwrap_or_else(|| "unknown".into()));
        }
        Ok(row)
    }

    /// Adds `row` (its score, or none when rejected) after the preprocess rejects before it.
    fn push(
        &mut self,
        row: InputRow,
        score: Option<Score>,
        low_confidence: f64,
        labels: &[String],
        sink: &mut Sink,
        layout: &Layout,
    ) -> Result<()> {
        self.rejects_before(Some(row.position), labels, sink, layout)?;
        match &score {
            Some(s) => self.tally.score(s, low_confidence, row.label.as_deref(), labels),
            None => self.tally.reject(row.reason.as_deref().unwrap_or("unknown")),
        }
        self.unwritten.push(row, score);
        self.unwritten.flush_when_full(sink, layout, labels)
    }

    /// Adds the preprocess rejects before `position` (all that are left without one).
    fn rejects_before(
        &mut self,
        position: Option<u64>,
        labels: &[String],
        sink: &mut Sink,
        layout: &Layout,
    ) -> Result<()> {
        while let Some(rejected) = self.rejects.next_if(|r| position.is_none_or(|end| r.position < end))? {
            self.tally.reject(rejected.reason.as_deref().unwrap_or("unknown"));
            self.unwritten.push(rejected, None);
            self.unwritten.flush_when_full(sink, layout, labels)?;
        }
        Ok(())
    }

    /// Adds the preprocess rejects after the last row to score and writes what is held;
    /// every row the backbone rejected must have been among the rows.
    fn finish(
        mut self,
        rows_path: &Path,
        failed_path: &Path,
        sink: &mut Sink,
        layout: &Layout,
        labels: &[String],
    ) -> Result<Tally> {
        if let Some(p) = self.failed.peek_position()? {
            return Err(Error::NotComparable {
                a: rows_path.to_owned(),
                b: failed_path.to_owned(),
                message: format!("row {p} is rejected by the backbone but is not among the rows to score"),
            });
        }
        self.rejects_before(None, labels, sink, layout)?;
        sink.write(self.unwritten.columns(layout, labels))?;
        Ok(self.tally)
    }
}

/// Reads a rows or rejects file row by row, a batch at a time.
struct Cursor {
    reader: ArtifactReader,
    total: u64,
    extra: Vec<String>,
    rows: std::collections::VecDeque<InputRow>,
}

impl Cursor {
    fn open(path: &Path) -> Result<Self> {
        let reader = ArtifactReader::open(path)?;
        let total = reader.provenance().rows;
        let extra = columns::extra_names(&reader.schema());
        Ok(Self { reader, total, extra, rows: Default::default() })
    }

    fn fill(&mut self) -> Result<bool> {
        while self.rows.is_empty() {
            let Some(batch) = self.reader.next_batch()? else { return Ok(false) };
            let path = self.reader.path().to_owned();
            let positions = column::<UInt64Array>(&batch, columns::ROW, &path, "uint64 row positions")?;
            let ids = column::<StringArray>(&batch, columns::ID, &path, "utf8 ids")?;
            let optional =
                |name: &str| batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>());
            let (labels, reasons) = (optional(columns::LABEL), optional(columns::REASON));
            let extras: Vec<&StringArray> = self
                .extra
                .iter()
                .map(|e| column::<StringArray>(&batch, &columns::extra(e), &path, "utf8"))
                .collect::<graft_core::Result<_>>()?;
            let text = |a: Option<&StringArray>, i: usize| a.filter(|a| a.is_valid(i)).map(|a| a.value(i).to_owned());
            for i in 0..batch.num_rows() {
                self.rows.push_back(InputRow {
                    position: positions.value(i),
                    id: ids.value(i).to_owned(),
                    label: text(labels, i),
                    reason: text(reasons, i),
                    extra: extras.iter().map(|e| text(Some(e), i)).collect(),
                });
            }
        }
        Ok(true)
    }

    fn peek_position(&mut self) -> Result<Option<u64>> {
        Ok(if self.fill()? { self.rows.front().map(|r| r.position) } else { None })
    }

    /// The next row if `wanted` takes it.
    fn next_if(&mut self, wanted: impl Fn(&InputRow) -> bool) -> Result<Option<InputRow>> {
        Ok(match self.fill()? && self.rows.front().is_some_and(wanted) {
            true => self.rows.pop_front(),
            false => None,
        })
    }
}

/// The output columns ([`columns::Scored`]).
struct Layout {
    task: Task,
    probability_columns: Vec<String>,
    extra: Vec<String>,
    schema: SchemaRef,
}

impl Layout {
    fn new(task: Task, labels: &[String], extra: &[String]) -> Self {
        let scored = columns::Scored::new(task, labels, extra);
        Self {
            task,
            probability_columns: scored.probability_columns,
            extra: scored.extra,
            schema: Arc::new(scored.schema),
        }
    }
}

/// Output rows not yet written.
#[derive(Default)]
struct Unwritten {
    rows: Vec<(InputRow, Option<Score>)>,
}

impl Unwritten {
    fn push(&mut self, row: InputRow, score: Option<Score>) {
        self.rows.push((row, score));
    }

    /// Writes the rows held once there are a batch's worth, so memory stays flat.
    fn flush_when_full(&mut self, sink: &mut Sink, layout: &Layout, labels: &[String]) -> Result<()> {
        if self.rows.len() >= BATCH_ROWS {
            sink.write(std::mem::take(self).columns(layout, labels))?;
        }
        Ok(())
    }

    fn columns(self, layout: &Layout, labels: &[String]) -> Vec<ArrayRef> {
        let rows = &self.rows;
        let mut out: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|(r, _)| r.position))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|(r, _)| r.id.as_str()))),
            Arc::new(StringArray::from_iter(rows.iter().map(|(r, _)| r.label.as_deref()))),
        ];
        let classes = |s: &Option<Score>| match s {
            Some(Score::Classes(p)) => Some(p.clone()),
            _ => None,
        };
        match layout.task {
            Task::Classification => {
                let probs: Vec<Option<Vec<f64>>> = rows.iter().map(|(_, s)| classes(s)).collect();
                let top = |p: &Vec<f64>| graft_core::numeric::argmax(p);
                out.push(Arc::new(StringArray::from_iter(
                    probs.iter().map(|p| p.as_ref().map(|p| labels[top(p)].as_str())),
                )));
                out.push(Arc::new(Float64Array::from_iter(probs.iter().map(|p| p.as_ref().map(|p| p[top(p)])))));
                for c in 0..layout.probability_columns.len() {
                    out.push(Arc::new(Float64Array::from_iter(probs.iter().map(|p| p.as_ref().map(|p| p[c])))));
                }
            }
            Task::Regression => {
                let value = |s: &Option<Score>| match s {
                    Some(Score::Value(v)) => Some(*v),
                    _ => None,
                };
                out.push(Arc::new(Float64Array::from_iter(rows.iter().map(|(_, s)| value(s)))));
            }
        }
        out.push(Arc::new(StringArray::from_iter(rows.iter().map(|(r, _)| r.reason.as_deref()))));
        for k in 0..layout.extra.len() {
            out.push(Arc::new(StringArray::from_iter(rows.iter().map(|(r, _)| r.extra[k].as_deref()))));
        }
        out
    }
}

/// The predictions file being written, in the chosen format, under a temporary name.
enum Sink {
    Arrow(Box<ArtifactWriter>, SchemaRef),
    Parquet(parquet::arrow::ArrowWriter<File>, Pending, SchemaRef),
    Csv(arrow::csv::Writer<File>, Pending, SchemaRef),
    Jsonl(arrow::json::LineDelimitedWriter<File>, Pending, SchemaRef),
}

impl Sink {
    fn create(dest: &Path, format: OutputFormat, layout: &Layout, provenance: &Provenance) -> Result<Self> {
        let write_err = |source: std::io::Error| graft_core::Error::Write { path: dest.to_owned(), source };
        let schema = layout.schema.clone();
        if format == OutputFormat::Arrow {
            let fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
            let mut meta = provenance.attach(fields.clone())?.metadata().clone();
            meta.extend(schema.metadata().clone());
            let schema = Arc::new(Schema::new_with_metadata(fields, meta));
            return Ok(Sink::Arrow(Box::new(ArtifactWriter::create(dest, &schema)?), schema));
        }
        let mut pending = Pending::create(dest)?;
        let file = pending.file().try_clone().map_err(write_err)?;
        Ok(match format {
            OutputFormat::Parquet => {
                let writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(crate::sql::properties()))
                    .map_err(|e| Error::Parquet { path: dest.to_owned(), message: e.to_string() })?;
                Sink::Parquet(writer, pending, schema)
            }
            OutputFormat::Csv => {
                Sink::Csv(arrow::csv::WriterBuilder::new().with_header(true).build(file), pending, schema)
            }
            OutputFormat::Jsonl => Sink::Jsonl(arrow::json::LineDelimitedWriter::new(file), pending, schema),
            OutputFormat::Arrow => unreachable!("handled above"),
        })
    }

    fn write(&mut self, columns: Vec<ArrayRef>) -> Result<()> {
        // An empty batch is left out, except that it gives a CSV of no rows its header.
        if columns.first().is_none_or(|c| c.is_empty()) && !matches!(self, Sink::Csv(..)) {
            return Ok(());
        }
        let schema = match self {
            Sink::Arrow(_, s) | Sink::Parquet(_, _, s) | Sink::Csv(_, _, s) | Sink::Jsonl(_, _, s) => s.clone(),
        };
        let batch = RecordBatch::try_new(schema, columns).expect("columns match the layout");
        match self {
            Sink::Arrow(w, _) => w.write(&batch)?,
            Sink::Parquet(w, p, _) => {
                w.write(&batch).map_err(|e| Error::Parquet { path: p.dest().to_owned(), message: e.to_string() })?
            }
            Sink::Csv(w, p, _) => {
                w.write(&batch).map_err(|source| graft_core::Error::ArrowWrite { path: p.dest().to_owned(), source })?
            }
            Sink::Jsonl(w, p, _) => {
                w.write(&batch).map_err(|source| graft_core::Error::ArrowWrite { path: p.dest().to_owned(), source })?
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Pending> {
        Ok(match self {
            Sink::Arrow(w, _) => (*w).finish()?,
            Sink::Parquet(w, p, _) => {
                w.close().map_err(|e| Error::Parquet { path: p.dest().to_owned(), message: e.to_string() })?;
                p
            }
            Sink::Csv(w, p, _) => {
                drop(w.into_inner());
                p
            }
            Sink::Jsonl(mut w, p, _) => {
                w.finish().map_err(|source| graft_core::Error::ArrowWrite { path: p.dest().to_owned(), source })?;
                p
            }
        })
    }
}

/// Counts for the summary and the drift check.
struct Tally {
    read: u64,
    scored: u64,
    /// Scored rows whose input had a label of the model's, and those predicted right
    /// (classification); rows with another label, and the first few distinct such labels.
    labelled: u64,
    correct: u64,
    /// Sums over labelled rows (regression).
    absolute_error: f64,
    squared_error: f64,
    unknown_labels: u64,
    unknown_examples: std::collections::BTreeSet<String>,
    unknown_more: bool,
    rejected: BTreeMap<String, u64>,
    predicted: Vec<u64>,
    low: u64,
    top: Vec<f64>,
}

impl Tally {
    fn new(classes: usize) -> Self {
        Self {
            read: 0,
            scored: 0,
            labelled: 0,
            correct: 0,
            absolute_error: 0.0,
            squared_error: 0.0,
            unknown_labels: 0,
            unknown_examples: Default::default(),
            unknown_more: false,
            rejected: BTreeMap::new(),
            predicted: vec![0; classes],
            low: 0,
            top: Vec::new(),
        }
    }

    fn reject(&mut self, reason: &str) {
        self.read += 1;
        *self.rejected.entry(reason.to_owned()).or_default() += 1;
    }

    fn score(&mut self, score: &Score, threshold: f64, label: Option<&str>, labels: &[String]) {
        self.read += 1;
        self.scored += 1;
        match score {
            Score::Classes(p) => {
                let c = graft_core::numeric::argmax(p);
                match label {
                    Some(label) if labels.iter().any(|l| l == label) => {
                        self.labelled += 1;
                        self.correct += u64::from(labels[c] == label);
                    }
                    Some(label) => self.unknown(label),
                    None => {}
                }
                self.predicted[c] += 1;
                self.low += u64::from(p[c] < threshold);
                self.top.push(p[c]);
            }
            Score::Value(v) => match label.map(|l| (l, l.trim().parse::<f64>().ok().filter(|t| t.is_finite()))) {
                Some((_, Some(target))) => {
                    self.labelled += 1;
                    self.absolute_error += (v - target).abs();
                    self.squared_error += (v - target).powi(2);
                }
                Some((label, None)) => self.unknown(label),
                None => {}
            },
        }
    }

    /// A labelled row whose label the model cannot be scored against.
    fn unknown(&mut self, label: &str) {
        self.unknown_labels += 1;
        if !self.unknown_examples.contains(label) {
            self.unknown_examples.insert(label.to_owned());
            if self.unknown_examples.len() > drift::UNKNOWN_LABEL_EXAMPLES {
                self.unknown_examples.pop_last();
                self.unknown_more = true;
            }
        }
    }

    fn drift(self, bundle: &Bundle, threshold: f64) -> Drift {
        let info = &bundle.info;
        let n = self.scored.max(1) as f64;
        let trained: u64 = info.training.class_counts.iter().sum();
        let classes: Vec<ClassShare> = info
            .labels
            .iter()
            .enumerate()
            .map(|(c, label)| ClassShare {
                label: label.clone(),
                predicted: self.predicted[c] as f64 / n,
                training: info.training.class_counts.get(c).map_or(0.0, |&k| k as f64 / trained.max(1) as f64),
            })
            .collect();
        let psi =
            info.test.as_ref().filter(|t| !t.top_probability.is_empty() && self.top.len() >= drift::PSI_MIN_ROWS).map(
                |t| {
                    format::population_stability_index(
                        &t.top_probability,
                        &format::confidence_histogram(self.top.iter().copied()),
                    )
                },
            );
        let mut warnings = Vec::new();
        if let Some(psi) = psi {
            if psi > drift::PSI_LARGE {
                warnings.push(format!(
                    "top-probability PSI {psi:.3} > {}: these rows do not look like the test rows",
                    drift::PSI_LARGE
                ));
            } else if psi > drift::PSI_MODERATE {
                warnings.push(format!(
                    "top-probability PSI {psi:.3} > {}: a moderate shift from the test rows",
                    drift::PSI_MODERATE
                ));
            }
        }
        if self.read == 0 {
            warnings.push("no rows to score".into());
        }
        for c in classes.iter().filter(|_| self.scored > 0) {
            if (c.predicted - c.training).abs() > 0.2 {
                warnings.push(format!(
                    "class `{}` is predicted for {:.1}% of rows, against {:.1}% of training rows",
                    c.label,
                    100.0 * c.predicted,
                    100.0 * c.training
                ));
            }
        }
        let unknown_labels = (self.unknown_labels > 0).then(|| drift::UnknownLabels {
            rows: self.unknown_labels,
            examples: self.unknown_examples.into_iter().collect(),
        });
        if let Some(u) = &unknown_labels {
            let listed = |names: &[String], more: bool| {
                let quoted: Vec<String> = names.iter().map(|l| format!("`{l}`")).collect();
                format!("{}{}", quoted.join(", "), if more { ", ..." } else { "" })
            };
            let shown = info.labels.len().min(drift::UNKNOWN_LABEL_EXAMPLES * 2);
            let expected = match info.task {
                Task::Classification => format!(
                    "that is none of the model's classes ({}; the classes are {}): the accuracy leaves them out",
                    listed(&u.examples, self.unknown_more),
                    listed(&info.labels[..shown], shown < info.labels.len()),
                ),
                Task::Regression => format!(
                    "that is not a number ({}): the error leaves them out",
                    listed(&u.examples, self.unknown_more)
                ),
            };
            warnings.push(format!("{} labelled rows have a label {expected}", u.rows));
        }
        let rejected: u64 = self.rejected.values().sum();
        if rejected > 0 {
            warnings.push(format!("{rejected} of {} rows could not be scored (see the `reason` column)", self.read));
        }
        Drift {
            format: drift::FORMAT.into(),
            rows_read: self.read,
            scored: self.scored,
            rejected: self.rejected,
            classes,
            low_confidence: LowConfidence { threshold, share: self.low as f64 / n },
            top_probability_psi: psi,
            labelled: (self.labelled > 0).then(|| {
                let rows = self.labelled as f64;
                match info.task {
                    Task::Classification => Labelled {
                        rows: self.labelled,
                        accuracy: Some(self.correct as f64 / rows),
                        mae: None,
                        rmse: None,
                    },
                    Task::Regression => Labelled {
                        rows: self.labelled,
                        accuracy: None,
                        mae: Some(self.absolute_error / rows),
                        rmse: Some((self.squared_error / rows).sqrt()),
                    },
                }
            }),
            unknown_labels,
            warnings,
        }
    }
}

/// The printed summary.
pub fn render(d: &Drift) -> String {
    let mut s =
        format!("read {} rows: {} scored, {} rejected\n", d.rows_read, d.scored, d.rejected.values().sum::<u64>());
    for c in &d.classes {
        s.push_str(&format!(
            "  {:<12} predicted {:>6.1}%  training {:>6.1}%\n",
            c.label,
            100.0 * c.predicted,
            100.0 * c.training
        ));
    }
    s.push_str(&format!(
        "low confidence (top probability < {}): {:.1}%",
        d.low_confidence.threshold,
        100.0 * d.low_confidence.share
    ));
    if let Some(psi) = d.top_probability_psi {
        s.push_str(&format!("; top-probability PSI against test: {psi:.3}"));
    }
    s.push('\n');
    if let Some(l) = &d.labelled {
        if let Some(accuracy) = l.accuracy {
            s.push_str(&format!("accuracy on the {} labelled rows: {accuracy:.4}\n", l.rows));
        }
        if let (Some(mae), Some(rmse)) = (l.mae, l.rmse) {
            s.push_str(&format!(
                "on the {} rows with a target: mean absolute error {mae:.4}, RMSE {rmse:.4}\n",
                l.rows
            ));
        }
    }
    for w in &d.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    s
}
