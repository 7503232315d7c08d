//! Arrow IPC artifacts passed between stages, and the provenance each one carries in its
//! schema metadata under the key `graft`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::{Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::atomic::Pending;
use crate::ipc::{ChecksummedWriter, ValidatingReader};
use crate::{Error, Result};

/// Schema metadata key holding the [`Provenance`] JSON.
pub const METADATA_KEY: &str = "graft";

/// The splits a preprocess stage may write, in order.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];
/// The file of new rows to score (`graft-preprocess rows`), beside or instead of splits.
pub const ROWS: &str = "rows";
/// Beside it, the rows that cannot be scored and why.
pub const REJECTS: &str = "rejects";

/// The format of graft's Arrow artifacts: [`Provenance`] in the schema metadata, columns as
/// [`crate::columns`] lays them out, a checksum in the footer ([`crate::ipc`]).
pub const FORMAT: &str = "graft-arrow/2";

/// Where an artifact came from: enough to refuse mixing data from different sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// [`FORMAT`].
    pub format: String,
    pub stage: String,
    pub graft_version: String,
    /// What the `label` column holds: a class name, or a number for regression.
    #[serde(default, skip_serializing_if = "Task::is_classification")]
    pub task: Task,
    /// Label vocabulary in its stable order; a label's index is its class id. Empty for
    /// regression.
    pub labels: Vec<String>,
    /// Rows in this file.
    pub rows: u64,
    /// The stage's resolved parameters.
    pub params: serde_json::Value,
    /// blake3 of each input, by role.
    pub inputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneId>,
    /// Set when the file holds one shard of a split (`--shard I/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Image splits: where the images are and how augmented views are made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageSource>,
}

/// Where an image split's files are, and how the backbone makes its augmented views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    /// The folder the rows' paths are relative to, absolute; for an archive, whose rows hold
    /// their images' bytes, the archive; empty for pixel rows.
    pub root: std::path::PathBuf,
    /// Seeds view `v` of image `id` with (seed, id, v).
    pub seed: u64,
    #[serde(default)]
    pub augment: Augment,
}

/// How augmented views differ from the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Augment {
    /// Zero-pad by this many pixels, then crop back at a random offset.
    pub pad: usize,
    /// Mirror horizontally half the time.
    pub flip: bool,
    /// Rotate by a random angle in [-rotate, rotate] degrees (bilinear, zero fill).
    pub rotate: f32,
    /// Scale brightness and contrast by random factors in [1 - jitter, 1 + jitter].
    pub jitter: f32,
}

/// The kind of target a data set has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Labels are class names.
    #[default]
    Classification,
    /// Labels are real numbers, written as text.
    Regression,
}

impl Task {
    pub fn is_classification(&self) -> bool {
        *self == Task::Classification
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        })
    }
}

/// Shard `index` of `count`: the rows whose 0-based position in the split is `index` modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Parses `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parsed = s.split_once('/').and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(format!("`{s}` is not a shard: expected I/N with 0 <= I < N, e.g. 0/4")),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Identifies how text was tokenised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerId {
    pub blake3: String,
    pub max_length: usize,
    /// Token ids are below this (added tokens included).
    pub vocab_size: usize,
}

/// Identifies the feature space a features file lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneId {
    pub spec: String,
    pub model_blake3: String,
    pub outputs: Vec<String>,
    /// How several outputs were joined (`concat` or `mean`); absent for one output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combine: Option<String>,
    pub pooling: String,
    pub normalize: bool,
    pub dim: usize,
    /// Execution provider that computed the features (e.g. `cpu`).
    pub provider: String,
}

impl BackboneId {
    /// Whether features from `other` are interchangeable with these (the provider aside).
    pub fn same_features(&self, other: &BackboneId) -> bool {
        self.model_blake3 == other.model_blake3
            && self.outputs == other.outputs
            && self.combine == other.combine
            && self.pooling == other.pooling
            && self.normalize == other.normalize
            && self.dim == other.dim
    }

    /// One line naming the feature space, for error messages.
    pub fn describe(&self) -> String {
        format!(
            "spec `{}`, model blake3 {}, outputs {:?}, pooling {}{}, dim {}",
            self.spec,
            &self.model_blake3[..self.model_blake3.len().min(12)],
            self.outputs,
            self.pooling,
            if self.normalize { "+l2" } else { "" },
            self.dim
        )
    }
}

impl Provenance {
    /// The schema `fields` with this provenance attached.
    pub fn attach(&self, fields: Vec<arrow::datatypes::Field>) -> Result<SchemaRef> {
        let json = serde_json::to_string(self).map_err(|source| Error::Json { what: "provenance", source })?;
        let meta = HashMap::from([(METADATA_KEY.to_owned(), json)]);
        Ok(Arc::new(Schema::new_with_metadata(fields, meta)))
    }
}

/// Streams record batches into an artifact that becomes visible on [`commit`](Pending::commit).
pub struct ArtifactWriter {
    writer: ChecksummedWriter,
    schema: SchemaRef,
    path: PathBuf,
    pending: Pending,
}

impl std::fmt::Debug for ArtifactWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactWriter").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ArtifactWriter {
    pub fn create(dest: &Path, schema: &SchemaRef) -> Result<Self> {
        let mut pending = Pending::create(dest)?;
        let file = pending.file().try_clone().map_err(|source| Error::Write { path: dest.to_owned(), source })?;
        let writer = ChecksummedWriter::new(file, dest, schema)?;
        Ok(Self { writer, schema: schema.clone(), path: dest.to_owned(), pending })
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)
    }

    /// Writes `batch`'s columns under this file's schema: a batch built, or spilled, without
    /// the provenance the file carries.
    pub fn write_columns(&mut self, batch: &RecordBatch) -> Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|source| Error::Arrow { path: self.path.clone(), source })?;
        self.write(&batch)
    }

    /// Completes the file; it is renamed into place when the returned value is committed.
    pub fn finish(self) -> Result<Pending> {
        self.writer.finish()?;
        Ok(self.pending)
    }
}

/// Reads an artifact batch by batch, its checksum and every batch validated.
#[derive(Debug)]
pub struct ArtifactReader {
    reader: ValidatingReader,
    path: PathBuf,
    provenance: Provenance,
    rows_read: u64,
}

impl ArtifactReader {
    pub fn open(path: &Path) -> Result<Self> {
        let reader = ValidatingReader::open(path)?;
        let json = reader
            .schema()
            .metadata()
            .get(METADATA_KEY)
            .cloned()
            .ok_or_else(|| Error::NoProvenance { path: path.to_owned() })?;
        let provenance: Provenance =
            serde_json::from_str(&json).map_err(|source| Error::BadProvenance { path: path.to_owned(), source })?;
        if provenance.format != FORMAT {
            return Err(Error::Format { path: path.to_owned(), found: provenance.format, expected: FORMAT });
        }
        Ok(Self { reader, path: path.to_owned(), provenance, rows_read: 0 })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema(&self) -> SchemaRef {
        self.reader.schema()
    }

    /// Next batch, `None` at the end, where the rows read must be the rows recorded.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let next = self.reader.next_batch()?;
        match &next {
            Some(batch) => self.rows_read += batch.num_rows() as u64,
            None if self.rows_read != self.provenance.rows => {
                return Err(Error::RowCount {
                    path: self.path.clone(),
                    found: self.rows_read,
                    expected: self.provenance.rows,
                });
            }
            None => {}
        }
        Ok(next)
    }
}

/// The column `name` of `batch`, downcast to `A`, or an error naming the file and column.
pub fn column<'a, A: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
    path: &Path,
    expected: &str,
) -> Result<&'a A> {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<A>()).ok_or_else(|| Error::Column {
        path: path.to_owned(),
        column: name.to_owned(),
        expected: expected.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field};

    fn provenance() -> Provenance {
        Provenance {
            format: FORMAT.into(),
            stage: "test".into(),
            graft_version: crate::VERSION.into(),
            task: Task::Classification,
            labels: vec!["neg".into(), "pos".into()],
            rows: 4,
            params: serde_json::json!({"seed": 1}),
            inputs: BTreeMap::from([("input".into(), "abc".into())]),
            tokenizer: None,
            backbone: None,
            shard: None,
            images: None,
        }
    }

    #[test]
    fn round_trips_batches_and_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.arrow");
        let schema = provenance().attach(vec![Field::new("id", DataType::Utf8, false)]).unwrap();
        let mut w = ArtifactWriter::create(&path, &schema).unwrap();
        for ids in [["a", "b"], ["c", "d"]] {
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(ids.to_vec()))]).unwrap();
            w.write(&batch).unwrap();
        }
        let pending = w.finish().unwrap();
        assert!(!path.exists(), "visible before commit");
        pending.commit().unwrap();
        let mut r = ArtifactReader::open(&path).unwrap();
        assert_eq!(r.provenance(), &provenance());
        let mut ids = Vec::new();
        while let Some(b) = r.next_batch().unwrap() {
            let col = column::<StringArray>(&b, "id", &path, "utf8").unwrap();
            ids.extend(col.iter().map(|s| s.unwrap().to_owned()));
        }
        assert_eq!(ids, ["a", "b", "c", "d"]);
    }

    #[test]
    fn parses_shards() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("4/4".parse::<Shard>().unwrap_err().contains("`4/4`"));
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn file_without_provenance_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.arrow");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let w = ArtifactWriter::create(&path, &schema).unwrap();
        w.finish().unwrap().commit().unwrap();
        let err = ArtifactReader::open(&path).unwrap_err();
        assert!(matches!(err, Error::NoProvenance { .. }), "{err}");
        assert!(err.to_string().contains("plain.arrow"));
    }
}
