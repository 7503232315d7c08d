//! Rows written before their count is known: a plain Arrow file in a temporary file beside
//! the outputs, read back once (and removed) to write the real artifact, whose provenance
//! states its row count up front.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};

use crate::{Error, Result};

pub struct SpillFile {
    writer: arrow::ipc::writer::FileWriter<std::fs::File>,
    pending: crate::atomic::Pending,
    pub path: PathBuf,
}

impl std::fmt::Debug for SpillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpillFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SpillFile {
    pub fn create(path: PathBuf, schema: &Schema) -> Result<Self> {
        let mut pending = crate::atomic::Pending::create(&path)?;
        let file = pending.file().try_clone().map_err(|source| Error::Write { path: path.clone(), source })?;
        let writer = arrow::ipc::writer::FileWriter::try_new(file, schema)
            .map_err(|source| Error::Arrow { path: path.clone(), source })?;
        Ok(Self { writer, pending, path })
    }

    fn arrow_err(&self) -> impl Fn(arrow::error::ArrowError) -> Error + '_ {
        move |source| Error::Arrow { path: self.path.clone(), source }
    }

    pub fn schema(&self) -> SchemaRef {
        self.writer.schema().clone()
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(self.arrow_err())
    }

    /// Calls `each` with every batch written, in order; the temporary file goes afterwards.
    pub fn drain<E: From<Error>>(
        mut self,
        mut each: impl FnMut(RecordBatch) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.writer.finish().map_err(self.arrow_err())?;
        let read_err = |source| Error::Read { path: self.path.clone(), source };
        let mut file = self.pending.file().try_clone().map_err(read_err)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(read_err)?;
        let reader = arrow::ipc::reader::FileReader::try_new(file, None).map_err(self.arrow_err())?;
        for batch in reader {
            each(batch.map_err(self.arrow_err())?)?;
        }
        Ok(())
    }
}
