//! `graft-backbone merge`: joins the outputs of `--shard 0/N` .. `--shard N-1/N` into the
//! files one unsharded run would have written (same rows, same order).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use graft_core::artifact::{ArtifactReader, ArtifactWriter, Provenance, SPLITS};

use crate::error::{Error, Result};

/// Rows per written batch.
const BATCH_ROWS: usize = 4096;

/// Merges the shard folders `shards` (in any order) into `out`; returns rows per split.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<BTreeMap<&'static str, u64>> {
    for shard in shards {
        if !shard.is_dir() {
            return Err(Error::Merge(format!("`{}` is not a folder of shard output", shard.display())));
        }
    }
    let inputs: Vec<(&'static str, &Path)> = shards.iter().map(|s| ("shard folder", s.as_path())).collect();
    graft_core::atomic::check_out_is_no_input(out, &inputs)?;
    let mut written = BTreeMap::new();
    let mut pending = Vec::new();
    for split in SPLITS {
        let paths: Vec<PathBuf> = shards.iter().map(|d| d.join(format!("{split}.arrow"))).collect();
        let present = paths.iter().filter(|p| p.exists()).count();
        if present == 0 {
            continue;
        }
        if present != paths.len() {
            return Err(Error::Merge(format!("`{split}.arrow` is in some shard folders but not all")));
        }
        let mut readers = paths.iter().map(|p| ArtifactReader::open(p)).collect::<graft_core::Result<Vec<_>>>()?;
        readers.sort_by_key(|r| r.provenance().shard.map(|s| s.index));
        let provenance = check_shards(&readers)?;
        let rows = provenance.rows;
        let first = readers[0].schema();
        let schema = provenance.attach(first.fields().iter().map(|f| f.as_ref().clone()).collect())?;
        let dest = out.join(format!("{split}.arrow"));
        let mut writer = ArtifactWriter::create(&dest, &schema)?;
        let mut cursors: Vec<Cursor> = readers.into_iter().map(Cursor::new).collect();
        let mut slices: Vec<RecordBatch> = Vec::new();
        'rows: loop {
            for cursor in &mut cursors {
                match cursor.next_row()? {
                    Some(row) => slices.push(row),
                    None => break 'rows,
                }
            }
            if slices.len() >= BATCH_ROWS {
                write_rows(&mut writer, &schema, &mut slices, &dest)?;
            }
        }
        write_rows(&mut writer, &schema, &mut slices, &dest)?;
        let total: u64 = cursors.iter().map(|c| c.taken).sum();
        if total != rows || cursors.iter_mut().any(Cursor::remaining) {
            return Err(Error::Merge(format!("the shards of `{split}` do not interleave into {rows} rows")));
        }
        pending.push(writer.finish()?);
        written.insert(split, rows);
    }
    if pending.is_empty() {
        return Err(Error::Merge("no split files in the shard folders".into()));
    }
    graft_core::atomic::commit_all(pending)?;
    Ok(written)
}

/// All shards of one run, each once: returns the merged file's provenance.
fn check_shards(readers: &[ArtifactReader]) -> Result<Provenance> {
    let first = readers[0].provenance();
    let count = readers.len() as u32;
    for (i, r) in readers.iter().enumerate() {
        let p = r.provenance();
        let name = r.path().display();
        match p.shard {
            Some(s) if s.count == count && s.index == i as u32 => {}
            Some(s) => return Err(Error::Merge(format!("`{name}` is shard {s}; expected shard {i}/{count}"))),
            None => return Err(Error::Merge(format!("`{name}` is not a shard"))),
        }
        let same = p.backbone.as_ref().zip(first.backbone.as_ref()).is_some_and(|(a, b)| a.same_features(b));
        if !same || p.labels != first.labels || p.tokenizer != first.tokenizer {
            return Err(Error::Merge(format!(
                "`{name}` comes from another backbone, tokenizer or label set than the first shard"
            )));
        }
    }
    let mut merged = first.clone();
    merged.shard = None;
    merged.rows = readers.iter().map(|r| r.provenance().rows).sum();
    // The shards' own inputs that they all share (the model, the split read), then the shards.
    let mut inputs = first.inputs.clone();
    inputs.retain(|name, hash| readers.iter().all(|r| r.provenance().inputs.get(name) == Some(hash)));
    for r in readers {
        inputs.insert(format!("shard {}", r.provenance().shard.expect("checked")), graft_core::hash::file(r.path())?);
    }
    merged.inputs = inputs;
    Ok(merged)
}

fn write_rows(
    writer: &mut ArtifactWriter,
    schema: &arrow::datatypes::SchemaRef,
    rows: &mut Vec<RecordBatch>,
    dest: &Path,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let batch = arrow::compute::concat_batches(schema, rows.iter())
        .map_err(|source| graft_core::Error::Arrow { path: dest.to_owned(), source })?;
    rows.clear();
    Ok(writer.write(&batch)?)
}

/// Reads a shard one row at a time.
struct Cursor {
    reader: ArtifactReader,
    batch: Option<RecordBatch>,
    offset: usize,
    taken: u64,
}

impl Cursor {
    fn new(reader: ArtifactReader) -> Self {
        Self { reader, batch: None, offset: 0, taken: 0 }
    }

    fn next_row(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = &self.batch
                && self.offset < b.num_rows()
            {
                self.offset += 1;
                self.taken += 1;
                return Ok(Some(b.slice(self.offset - 1, 1)));
            }
            match self.reader.next_batch()? {
                Some(b) => (self.batch, self.offset) = (Some(b), 0),
                None => return Ok(None),
            }
        }
    }

    fn remaining(&mut self) -> bool {
        matches!(self.next_row(), Ok(Some(_)))
    }
}
