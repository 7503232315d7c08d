//! The Arrow column contracts between stages, in one place: each file kind's column names
//! and types, the fields its writer declares and a typed view its readers check a batch
//! against (a missing column or another type is an error naming the file and column).
//!
//! | kind | written by | columns |
//! |---|---|---|
//! | tokens | preprocess (text) | `id`, `label`, `text`, `input_ids: list<int32>` |
//! | images | preprocess (images) | `id`, `label`, `view: int32`, `path` (under the split's root) or `image: binary` (encoded bytes), `blake3` of the bytes |
//! | features | backbone | `id`, `label`, [`view`], `features: fixed_size_list<float32, D>` |
//! | cache | backbone `--cache` | `key: fixed_size_binary(32)`, `features` |
//! | predictions | evaluate | `id`, `label`, `pred`, `prob_<label>: float64` per class; or `target`, `pred: float64` |
//! | rows (to score) | preprocess `rows` | `row: uint64`, `id`, `label` (null when unknown), `text`, `input_ids` or the images columns, `extra.<column>` |
//! | rejects | preprocess `rows` | `row: uint64`, `id`, `reason`, `extra.<column>` |
//! | scored rows (Parquet, CSV, JSONL, Arrow) | evaluate `predict` | `row`, `id`, `label`, `pred`, `top_probability`, `prob_<label>` per class (or `pred: float64`), `reason`, carried columns |

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, BinaryArray, FixedSizeListArray, Float16Array, Float32Array, Int32Array, ListArray, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};

use crate::artifact::{Task, column};
use crate::{Error, Result};

pub const ID: &str = "id";
pub const LABEL: &str = "label";
pub const TEXT: &str = "text";
pub const INPUT_IDS: &str = "input_ids";
pub const VIEW: &str = "view";
pub const PATH: &str = "path";
pub const IMAGE: &str = "image";
pub const BLAKE3: &str = "blake3";
pub const FEATURES: &str = "features";
pub const HIDDEN: &str = "hidden";
/// The `pooling` a token-vectors file records: none, every real token kept.
pub const TOKENS_POOLING: &str = "tokens";
pub const KEY: &str = "key";
pub const PRED: &str = "pred";
pub const TARGET: &str = "target";
/// A row's 0-based position among the input's rows (after filters).
pub const ROW: &str = "row";
pub const REASON: &str = "reason";

/// The column carrying input column `name` through scoring.
pub fn extra(name: &str) -> String {
    format!("extra.{name}")
}

/// The carried input columns of a rows or rejects file, by their input names.
pub fn extra_names(schema: &arrow::datatypes::Schema) -> Vec<String> {
    schema.fields().iter().filter_map(|f| f.name().strip_prefix("extra.").map(str::to_owned)).collect()
}

fn extras(names: &[String]) -> impl Iterator<Item = Field> + '_ {
    names.iter().map(|n| Field::new(extra(n), DataType::Utf8, true))
}

/// New rows to score: position, id, label when the input has one, text, token ids, carried columns.
pub fn rows_fields(extra: &[String]) -> Vec<Field> {
    let mut fields = vec![
        Field::new(ROW, DataType::UInt64, false),
        utf8(ID),
        Field::new(LABEL, DataType::Utf8, true),
        utf8(TEXT),
        Field::new(INPUT_IDS, token_ids(), false),
    ];
    fields.extend(extras(extra));
    fields
}

/// Rows that cannot be scored, and why.
pub fn rejects_fields(extra: &[String]) -> Vec<Field> {
    let mut fields = vec![Field::new(ROW, DataType::UInt64, false), utf8(ID), utf8(REASON)];
    fields.extend(extras(extra));
    fields
}

/// The probability column of class `label` in a predictions file.
pub fn prob(label: &str) -> String {
    format!("prob_{label}")
}

fn utf8(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}

/// `fixed_size_list<float32, width>`: features and pixels.
pub fn floats(width: usize) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), width as i32)
}

/// Rows of `width` floats as a `fixed_size_list<float32, width>` column.
pub fn float_list(values: Vec<f32>, width: usize) -> Result<FixedSizeListArray, arrow::error::ArrowError> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    FixedSizeListArray::try_new(item, width as i32, Arc::new(Float32Array::from(values)), None)
}

/// `list<int32>`: unpadded token ids.
fn token_ids() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Int32, true)))
}

pub fn tokens_fields() -> Vec<Field> {
    vec![utf8(ID), utf8(LABEL), utf8(TEXT), Field::new(INPUT_IDS, token_ids(), false)]
}

/// What identifies each image of a split: its view number, its path under the split's root
/// or its encoded bytes (exactly one), and the blake3 of its bytes.
fn image_ref_fields() -> [Field; 4] {
    [
        Field::new(VIEW, DataType::Int32, false),
        Field::new(PATH, DataType::Utf8, true),
        Field::new(IMAGE, DataType::Binary, true),
        utf8(BLAKE3),
    ]
}

pub fn images_fields() -> Vec<Field> {
    let mut fields = vec![utf8(ID), utf8(LABEL)];
    fields.extend(image_ref_fields());
    fields
}

/// New images to score: position, id, label when known, the image columns, carried columns.
pub fn image_rows_fields(extra: &[String]) -> Vec<Field> {
    let mut fields = vec![Field::new(ROW, DataType::UInt64, false), utf8(ID), Field::new(LABEL, DataType::Utf8, true)];
    fields.extend(image_ref_fields());
    fields.extend(extras(extra));
    fields
}

/// Features; the label is null for new rows whose label is unknown (training splits have one
/// on every row, checked on read).
pub fn features_fields(dim: usize, with_view: bool) -> Vec<Field> {
    let mut fields = vec![utf8(ID), Field::new(LABEL, DataType::Utf8, true)];
    if with_view {
        fields.push(Field::new(VIEW, DataType::Int32, false));
    }
    fields.push(Field::new(FEATURES, floats(dim), false));
    fields
}

/// Token vectors (`graft-backbone --tokens`): each row's real tokens (an image's spatial
/// positions, with its view's index), `[tokens, dim]` in float16 or float32, row-major.
pub fn token_vectors_fields(half: bool, with_view: bool) -> Vec<Field> {
    let item = Field::new("item", if half { DataType::Float16 } else { DataType::Float32 }, false);
    let mut fields = vec![utf8(ID), Field::new(LABEL, DataType::Utf8, true)];
    if with_view {
        fields.push(Field::new(VIEW, DataType::Int32, false));
    }
    fields.push(Field::new(HIDDEN, DataType::List(Arc::new(item)), false));
    fields
}

pub fn cache_fields(dim: usize) -> Vec<Field> {
    vec![Field::new(KEY, DataType::FixedSizeBinary(32), false), Field::new(FEATURES, floats(dim), false)]
}

pub fn predictions_fields(task: Task, labels: &[String]) -> Vec<Field> {
    let mut fields = vec![utf8(ID), utf8(LABEL)];
    match task {
        Task::Classification => {
            fields.push(utf8(PRED));
            fields.extend(labels.iter().map(|l| Field::new(prob(l), DataType::Float64, false)));
        }
        Task::Regression => {
            fields.push(Field::new(TARGET, DataType::Float64, false));
            fields.push(Field::new(PRED, DataType::Float64, false));
        }
    }
    fields
}

/// Schema metadata key of a scored file mapping each probability column to its label (JSON).
pub const PROBABILITY_LABELS_KEY: &str = "graft.probability_columns";
pub const TOP_PROBABILITY: &str = "top_probability";

/// `prob_<label>` with every character outside `[A-Za-z0-9_]` replaced by `_`; a name taken
/// by an earlier label gets the first free of `_2`, `_3`, ... in label order.
pub fn probability_columns(labels: &[String]) -> Vec<String> {
    let mut taken: HashSet<String> = HashSet::new();
    labels
        .iter()
        .map(|l| {
            let safe: String = l.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
            let base = format!("prob_{safe}");
            let name = std::iter::once(base.clone())
                .chain((2..).map(|n| format!("{base}_{n}")))
                .find(|name| !taken.contains(name))
                .expect("a free name");
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// The columns of scored new rows: `row`, `id`, `label`, `pred`, `top_probability`, one
/// probability per class (SQL-safe names; the labels in the schema metadata), `reason`, then
/// the carried input columns under their own names (`input.<name>`, then `input.<name>_2`, ...
/// where one is taken).
#[derive(Debug, Clone)]
pub struct Scored {
    pub probability_columns: Vec<String>,
    /// Names of the carried columns in the output.
    pub extra: Vec<String>,
    pub schema: Schema,
}

impl Scored {
    pub fn new(task: Task, labels: &[String], extra: &[String]) -> Self {
        let probability_columns = probability_columns(labels);
        let mut fields =
            vec![Field::new(ROW, DataType::UInt64, false), utf8(ID), Field::new(LABEL, DataType::Utf8, true)];
        match task {
            Task::Classification => {
                fields.push(Field::new(PRED, DataType::Utf8, true));
                fields.push(Field::new(TOP_PROBABILITY, DataType::Float64, true));
                fields.extend(probability_columns.iter().map(|c| Field::new(c, DataType::Float64, true)));
            }
            Task::Regression => fields.push(Field::new(PRED, DataType::Float64, true)),
        }
        fields.push(Field::new(REASON, DataType::Utf8, true));
        let mut taken: HashSet<String> = fields.iter().map(|f| f.name().clone()).collect();
        let extra: Vec<String> = extra
            .iter()
            .map(|e| {
                let name = [e.clone(), format!("input.{e}")]
                    .into_iter()
                    .chain((2..).map(|n| format!("input.{e}_{n}")))
                    .find(|name| !taken.contains(name))
                    .expect("a free name");
                taken.insert(name.clone());
                name
            })
            .collect();
        fields.extend(extra.iter().map(|n| Field::new(n, DataType::Utf8, true)));
        let mapping: BTreeMap<&String, &String> = probability_columns.iter().zip(labels).collect();
        let meta =
            HashMap::from([(PROBABILITY_LABELS_KEY.to_owned(), serde_json::to_string(&mapping).expect("strings"))]);
        Self { probability_columns, extra, schema: Schema::new_with_metadata(fields, meta) }
    }
}

/// The `fixed_size_list<float32, width>` column `name` and its flat values.
fn float_rows<'a>(
    batch: &'a RecordBatch,
    name: &str,
    width: usize,
    path: &Path,
) -> Result<(&'a FixedSizeListArray, &'a [f32])> {
    let expected = format!("fixed_size_list<float32, {width}>");
    let list = column::<FixedSizeListArray>(batch, name, path, &expected)?;
    match list.values().as_any().downcast_ref::<Float32Array>() {
        Some(values) if list.value_length() as usize == width => Ok((list, values.values())),
        _ => Err(Error::Column { path: path.to_owned(), column: name.into(), expected }),
    }
}

/// A record batch of a tokens file.
#[derive(Debug)]
pub struct Tokens<'a> {
    pub ids: &'a StringArray,
    pub labels: &'a StringArray,
    lists: &'a ListArray,
    values: &'a [i32],
}

impl<'a> Tokens<'a> {
    pub fn of(batch: &'a RecordBatch, path: &Path) -> Result<Self> {
        let expected = "list<int32> token ids";
        let lists = column::<ListArray>(batch, INPUT_IDS, path, expected)?;
        let values = lists.values().as_any().downcast_ref::<Int32Array>().ok_or_else(|| Error::Column {
            path: path.to_owned(),
            column: INPUT_IDS.into(),
            expected: expected.into(),
        })?;
        Ok(Self {
            ids: column::<StringArray>(batch, ID, path, "utf8 row ids")?,
            labels: column::<StringArray>(batch, LABEL, path, "utf8 labels")?,
            lists,
            values: values.values(),
        })
    }

    /// Row `i`'s token ids (offsets checked by arrow's validation on read).
    pub fn row(&self, i: usize) -> &'a [i32] {
        let offsets = self.lists.value_offsets();
        &self.values[offsets[i] as usize..offsets[i + 1] as usize]
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// Token ids in all rows of the batch.
    pub fn total(&self) -> usize {
        let offsets = self.lists.value_offsets();
        (offsets[offsets.len() - 1] - offsets[0]) as usize
    }
}

/// Where one image's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRef<'a> {
    /// A path under the split's root, or absolute; without `..`.
    File(&'a str),
    Bytes(&'a [u8]),
}

/// A record batch of an images file.
#[derive(Debug)]
pub struct ImageRefs<'a> {
    pub ids: &'a StringArray,
    pub labels: &'a StringArray,
    pub views: &'a Int32Array,
    paths: &'a StringArray,
    bytes: &'a BinaryArray,
    hashes: &'a StringArray,
}

impl<'a> ImageRefs<'a> {
    pub fn of(batch: &'a RecordBatch, path: &Path) -> Result<Self> {
        Ok(Self {
            ids: column::<StringArray>(batch, ID, path, "utf8 row ids")?,
            labels: column::<StringArray>(batch, LABEL, path, "utf8 labels")?,
            views: column::<Int32Array>(batch, VIEW, path, "int32 view numbers")?,
            paths: column::<StringArray>(batch, PATH, path, "utf8 image paths")?,
            bytes: column::<BinaryArray>(batch, IMAGE, path, "binary encoded images")?,
            hashes: column::<StringArray>(batch, BLAKE3, path, "utf8 blake3 of each image")?,
        })
    }

    /// Row `i`'s image: a relative path that stays under the root, or bytes; never both.
    pub fn source(&self, i: usize) -> std::result::Result<ImageRef<'a>, String> {
        match (self.paths.is_valid(i), self.bytes.is_valid(i)) {
            (true, false) => {
                let path = self.paths.value(i);
                let parent = Path::new(path).components().any(|c| c == std::path::Component::ParentDir);
                match parent || path.is_empty() {
                    false => Ok(ImageRef::File(path)),
                    true => Err(format!("path `{path}` is empty or has `..` in it")),
                }
            }
            (false, true) => Ok(ImageRef::Bytes(self.bytes.value(i))),
            _ => Err("expected exactly one of `path` and `image`".into()),
        }
    }

    /// The blake3 (hex) of row `i`'s bytes.
    pub fn blake3(&self, i: usize) -> &'a str {
        self.hashes.value(i)
    }

    /// Row `i`'s view number: 0 for the image itself.
    pub fn view(&self, i: usize) -> std::result::Result<u32, String> {
        u32::try_from(self.views.value(i)).map_err(|_| format!("view {} is negative", self.views.value(i)))
    }
}

/// Rows of float32 vectors as a list column of float16 (`half`) or float32 values
/// (`graft-backbone --tokens`).
pub fn vector_lists(rows: &[Vec<f32>], half: bool) -> ListArray {
    let offsets = arrow::buffer::OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    if half {
        let item = Arc::new(Field::new("item", DataType::Float16, false));
        let values: Float16Array = rows.iter().flatten().map(|&v| half::f16::from_f32(v)).collect();
        return ListArray::new(item, offsets, Arc::new(values), None);
    }
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let values: Float32Array = rows.iter().flatten().copied().collect();
    ListArray::new(item, offsets, Arc::new(values), None)
}

/// The values of a token-vectors file: float16 or float32.
#[derive(Debug, Clone, Copy)]
pub enum VectorValues<'a> {
    Half(&'a [half::f16]),
    Single(&'a [f32]),
}

/// A record batch of a token-vectors file.
#[derive(Debug)]
pub struct TokenVectors<'a> {
    pub ids: &'a StringArray,
    pub labels: &'a StringArray,
    lists: &'a ListArray,
    values: VectorValues<'a>,
}

impl<'a> TokenVectors<'a> {
    pub fn of(batch: &'a RecordBatch, path: &Path) -> Result<Self> {
        let expected = "list<float16> or list<float32> token vectors";
        let lists = column::<ListArray>(batch, HIDDEN, path, expected)?;
        let any = lists.values().as_any();
        let values = match (any.downcast_ref::<Float16Array>(), any.downcast_ref::<Float32Array>()) {
            (Some(h), _) => VectorValues::Half(h.values()),
            (_, Some(s)) => VectorValues::Single(s.values()),
            _ => {
                return Err(Error::Column { path: path.to_owned(), column: HIDDEN.into(), expected: expected.into() });
            }
        };
        Ok(Self {
            ids: column::<StringArray>(batch, ID, path, "utf8 row ids")?,
            labels: column::<StringArray>(batch, LABEL, path, "utf8 labels")?,
            lists,
            values,
        })
    }

    /// Row `i`'s token vectors, `[tokens, dim]` row-major.
    pub fn row(&self, i: usize) -> VectorValues<'a> {
        let offsets = self.lists.value_offsets();
        let range = offsets[i] as usize..offsets[i + 1] as usize;
        match self.values {
            VectorValues::Half(v) => VectorValues::Half(&v[range]),
            VectorValues::Single(v) => VectorValues::Single(&v[range]),
        }
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

/// A record batch of a features file.
#[derive(Debug)]
pub struct Features<'a> {
    pub ids: &'a StringArray,
    pub labels: &'a StringArray,
    pub list: &'a FixedSizeListArray,
    pub values: &'a [f32],
    pub dim: usize,
}

impl<'a> Features<'a> {
    pub fn of(batch: &'a RecordBatch, dim: usize, path: &Path) -> Result<Self> {
        let (list, values) = float_rows(batch, FEATURES, dim, path)?;
        Ok(Self {
            ids: column::<StringArray>(batch, ID, path, "utf8 row ids")?,
            labels: column::<StringArray>(batch, LABEL, path, "utf8 labels")?,
            list,
            values,
            dim,
        })
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &'a [f32] {
        let start = self.list.value_offset_at(i);
        &self.values[start..start + self.dim]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_columns_are_sql_safe_and_distinct() {
        let labels: Vec<String> = ["pos", "very good", "very-good", "0"].iter().map(|s| s.to_string()).collect();
        assert_eq!(probability_columns(&labels), ["prob_pos", "prob_very_good", "prob_very_good_2", "prob_0"]);
        let scored = Scored::new(Task::Classification, &labels, &["text".into(), "pred".into()]);
        assert_eq!(scored.extra, ["text", "input.pred"], "a carried column never hides an output column");
        let scored = Scored::new(Task::Classification, &labels, &["pred".into(), "input.pred".into()]);
        assert_eq!(scored.extra, ["input.pred", "input.input.pred"], "nor another carried column");
        let mapping = &scored.schema.metadata()[PROBABILITY_LABELS_KEY];
        assert!(mapping.contains(r#""prob_very_good_2":"very-good""#), "{mapping}");
        // A label whose own name is a suffixed one's: every column name stays distinct.
        let labels: Vec<String> = ["a_b", "a b", "a_b_2", "a-b"].map(String::from).to_vec();
        assert_eq!(probability_columns(&labels), ["prob_a_b", "prob_a_b_2", "prob_a_b_2_2", "prob_a_b_3"]);
    }
}
