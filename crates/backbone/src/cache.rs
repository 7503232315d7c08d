//! Row-level feature cache (`--cache DIR`): a row's features are stored under the blake3 of
//! the feature space (model file, outputs, combine, pooling, normalisation) and the row's
//! token ids, which already reflect the tokenizer and the maximum length. A re-run on a data
//! set with a few new rows embeds only those rows.
//!
//! Layout: `DIR/<space>/NNNNNN-TTTTTTTT.arrow`, each file a run's new rows (`key`
//! fixed_size_binary(32), `features` fixed_size_list<float32>) in batches of 1,024, written
//! atomically with the stage's outputs. `NNNNNN` counts the files the run found and `TTTTTTTT`
//! is the run's own, so runs sharing a cache at once never replace each other's file. Only
//! keys and their locations are held in memory; features are read back batch by batch, and
//! each row's key is checked again when it is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, FixedSizeBinaryArray, FixedSizeListArray, Float32Array, RecordBatch};
use arrow::datatypes::Schema;
use arrow::ipc::reader::FileReader;
use graft_core::artifact::{ArtifactWriter, BackboneId};
use graft_core::atomic::Pending;

use crate::error::Result;

const BATCH_ROWS: usize = 1024;

pub type Key = [u8; 32];

/// Where a cached row lives: file index, record batch, row.
#[derive(Debug, Clone, Copy)]
struct Location {
    file: usize,
    batch: usize,
    row: usize,
}

#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    space: blake3::Hash,
    dim: Option<usize>,
    files: Vec<PathBuf>,
    index: HashMap<Key, Location>,
    writer: Option<ArtifactWriter>,
    buffered: Vec<(Key, Vec<f32>)>,
    /// The last batch read, to serve neighbouring rows without reading it again.
    last: Option<((usize, usize), RecordBatch)>,
    pub hits: u64,
    pub misses: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> graft_core::Error + '_ {
    move |source| graft_core::Error::Read { path: path.to_owned(), source }
}

fn arrow_err(path: &Path) -> impl Fn(arrow::error::ArrowError) -> graft_core::Error + '_ {
    move |source| graft_core::Error::Arrow { path: path.to_owned(), source }
}

impl FeatureCache {
    /// Opens (or starts) the cache of the feature space `backbone` (its `dim` not yet known).
    pub fn open(root: &Path, backbone: &BackboneId) -> Result<Self> {
        let mut hasher = blake3::Hasher::new();
        let space = serde_json::json!({
            "model": backbone.model_blake3,
            "outputs": backbone.outputs,
            "combine": backbone.combine,
            "pooling": backbone.pooling,
            "normalize": backbone.normalize,
        });
        hasher.update(space.to_string().as_bytes());
        let space = hasher.finalize();
        let dir = root.join(&space.to_hex()[..16]);
        let mut cache = Self {
            dir: dir.clone(),
            space,
            dim: None,
            files: Vec::new(),
            index: HashMap::new(),
            writer: None,
            buffered: Vec::new(),
            last: None,
            hits: 0,
            misses: 0,
        };
        if dir.is_dir() {
            let mut files: Vec<PathBuf> = fs_err::read_dir(&dir)
                .map_err(io(&dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
                .collect();
            files.sort();
            for path in files {
                let file = cache.files.len();
                let mut reader = graft_core::ipc::ValidatingReader::open(&path)?;
                let mut batch = 0;
                while let Some(rb) = reader.next_batch()? {
                    let keys = key_column(&rb, &path)?;
                    for row in 0..keys.len() {
                        let key: Key = keys.value(row).try_into().expect("32-byte keys");
                        cache.index.insert(key, Location { file, batch, row });
                    }
                    batch += 1;
                }
                cache.files.push(path);
            }
        }
        Ok(cache)
    }

    /// The key of a row of token ids.
    pub fn key(&self, tokens: &[i32]) -> Key {
        let mut hasher = blake3::Hasher::new();
        hasher.update(self.space.as_bytes());
        for t in tokens {
            hasher.update(&t.to_le_bytes());
        }
        *hasher.finalize().as_bytes()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    /// The cached features of `key`, when present.
    pub fn get(&mut self, key: &Key) -> Result<Option<Vec<f32>>> {
        let Some(loc) = self.index.get(key).copied() else {
            self.misses += 1;
            return Ok(None);
        };
        if self.last.as_ref().is_none_or(|(at, _)| *at != (loc.file, loc.batch)) {
            let path = &self.files[loc.file];
            // Validated when indexed; read again at random, still guarded against a file
            // changed since.
            let file = std::fs::File::open(path).map_err(io(path))?;
            let read = || {
                let mut reader = FileReader::try_new(file, None)?;
                reader.set_index(loc.batch)?;
                reader.next().transpose()
            };
            let corrupt = |message| graft_core::Error::Corrupt { path: path.clone(), message };
            let rb = graft_core::guard::unwind(read).map_err(corrupt)?.map_err(arrow_err(path))?.ok_or_else(|| {
                graft_core::Error::Column {
                    path: path.clone(),
                    column: "features".into(),
                    expected: "a cached batch".into(),
                }
            })?;
            self.last = Some(((loc.file, loc.batch), rb));
        }
        let (_, rb) = self.last.as_ref().expect("just read");
        let path = &self.files[loc.file];
        let keys = key_column(rb, path)?;
        if keys.len() <= loc.row || keys.value(loc.row) != key {
            return Err(graft_core::Error::Corrupt {
                path: path.clone(),
                message: format!(
                    "batch {} row {} no longer holds the key indexed there: the file changed while in use",
                    loc.batch, loc.row
                ),
            }
            .into());
        }
        let list = rb
            .column_by_name("features")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or_else(|| graft_core::Error::Column {
                path: path.clone(),
                column: "features".into(),
                expected: "fixed_size_list<float32>".into(),
            })?;
        let values = list.value(loc.row);
        let values = values.as_any().downcast_ref::<Float32Array>().expect("float32 features");
        self.hits += 1;
        Ok(Some(values.values().to_vec()))
    }

    /// Adds a newly embedded row; rows are written in batches to a new cache file.
    pub fn put(&mut self, key: Key, features: &[f32]) -> Result<()> {
        self.dim = Some(features.len());
        self.buffered.push((key, features.to_vec()));
        if self.buffered.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffered.is_empty() {
            return Ok(());
        }
        let dim = self.dim.expect("set with the first row");
        let schema = Arc::new(Schema::new(graft_core::columns::cache_fields(dim)));
        if self.writer.is_none() {
            let dest = self.dir.join(format!("{:06}-{}.arrow", self.files.len(), run_tag()));
            self.writer = Some(ArtifactWriter::create(&dest, &schema)?);
        }
        let rows = std::mem::take(&mut self.buffered);
        let keys = FixedSizeBinaryArray::try_from_iter(rows.iter().map(|(k, _)| k.as_slice())).expect("32-byte keys");
        let values: Vec<f32> = rows.iter().flat_map(|(_, f)| f.iter().copied()).collect();
        let list = graft_core::columns::float_list(values, dim).expect("dim values per row");
        let rb = RecordBatch::try_new(schema, vec![Arc::new(keys), Arc::new(list)]).expect("matching columns");
        self.writer.as_mut().expect("opened above").write(&rb)?;
        Ok(())
    }

    /// Finishes the new cache file; the caller commits it with the stage's outputs.
    pub fn finish(mut self) -> Result<Option<Pending>> {
        self.flush()?;
        self.writer.take().map(ArtifactWriter::finish).transpose().map_err(Into::into)
    }
}

/// Eight hex digits that no other run writing to the cache at the same time shares: the
/// blake3 of this process's id, the time and a count of the tags this process made.
fn run_tag() -> String {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    hasher.finalize().to_hex()[..8].to_owned()
}

fn key_column<'a>(rb: &'a RecordBatch, path: &Path) -> Result<&'a FixedSizeBinaryArray> {
    let keys = rb.column_by_name("key").and_then(|c| c.as_any().downcast_ref::<FixedSizeBinaryArray>());
    keys.filter(|k| k.value_length() == 32).ok_or_else(|| {
        graft_core::Error::Column {
            path: path.to_owned(),
            column: "key".into(),
            expected: "fixed_size_binary(32)".into(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backbone() -> BackboneId {
        BackboneId {
            spec: "s".into(),
            model_blake3: "m".into(),
            outputs: vec!["o".into()],
            combine: None,
            pooling: "mean".into(),
            normalize: true,
            dim: 0,
            provider: "cpu".into(),
        }
    }

    /// A cache opened on `root`, with `rows` (key byte, value) put and committed.
    fn write(cache: FeatureCache, rows: &[(u8, f32)]) {
        let mut cache = cache;
        for &(k, v) in rows {
            cache.put([k; 32], &[v, v]).unwrap();
        }
        cache.finish().unwrap().unwrap().commit().unwrap();
    }

    #[test]
    fn runs_sharing_a_cache_at_once_keep_both_their_files() {
        let dir = tempfile::tempdir().unwrap();
        // Both open the cache before either commits, as two shards started together do.
        let (a, b) = (
            FeatureCache::open(dir.path(), &backbone()).unwrap(),
            FeatureCache::open(dir.path(), &backbone()).unwrap(),
        );
        write(a, &[(1, 1.0)]);
        write(b, &[(2, 2.0)]);
        let mut cache = FeatureCache::open(dir.path(), &backbone()).unwrap();
        assert_eq!(cache.files.len(), 2, "{:?}", cache.files);
        assert_eq!(cache.get(&[1; 32]).unwrap(), Some(vec![1.0, 1.0]));
        assert_eq!(cache.get(&[2; 32]).unwrap(), Some(vec![2.0, 2.0]));
        assert_eq!(cache.get(&[3; 32]).unwrap(), None);
    }

    #[test]
    fn a_file_replaced_after_indexing_is_refused_not_read_as_another_row() {
        let (one, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(FeatureCache::open(one.path(), &backbone()).unwrap(), &[(1, 1.0)]);
        write(FeatureCache::open(other.path(), &backbone()).unwrap(), &[(2, 2.0)]);
        let mut cache = FeatureCache::open(one.path(), &backbone()).unwrap();
        let replacement = FeatureCache::open(other.path(), &backbone()).unwrap().files.remove(0);
        std::fs::copy(replacement, &cache.files[0]).unwrap();
        let err = cache.get(&[1; 32]).unwrap_err().to_string();
        assert!(err.contains("no longer holds the key"), "{err}");
    }
}
