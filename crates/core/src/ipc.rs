//! Arrow IPC files that prove their own integrity.
//!
//! The footer's custom metadata holds, under [`CHECKSUM_KEY`], the blake3 of the whole file
//! as written with that value set to 64 zeros. The writer patches the value in after the
//! footer is written; the reader hashes the file the same way and compares before decoding
//! anything. It then decodes the stream between the magic and the footer with arrow's full
//! validation (the footer's block list is never followed), and turns any panic inside arrow
//! into an error naming the file and batch. A flipped byte anywhere in the file is an error,
//! never a panic or a silently different table.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Take, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::FileWriter;

use crate::{Error, Result, guard};

/// Footer metadata key of the file's blake3.
pub const CHECKSUM_KEY: &str = "graft.blake3";
/// The checksum's value while the file is hashed.
const PLACEHOLDER: [u8; 64] = [b'0'; 64];

/// `ARROW1` and its zero padding to the writer's alignment come before the stream; the
/// stream's first message starts with a non-zero continuation marker.
const MAX_HEAD: usize = 64;
/// Footer length (int32) and `ARROW1`, after the footer.
const TAIL: u64 = 10;
const MAGIC: &[u8; 6] = b"ARROW1";

/// Passes bytes to `inner` and hashes them on the way.
struct Hashing<W> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes an Arrow IPC file whose footer carries its own checksum.
pub struct ChecksummedWriter {
    writer: FileWriter<Hashing<BufWriter<File>>>,
    path: PathBuf,
}

impl std::fmt::Debug for ChecksummedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChecksummedWriter").field("path", &self.path).finish_non_exhaustive()
    }
}

impl ChecksummedWriter {
    /// Writes to `file` (opened for reading too: the checksum is patched in at the end);
    /// `path` names it in errors.
    pub fn new(file: File, path: &Path, schema: &SchemaRef) -> Result<Self> {
        let sink = Hashing { inner: BufWriter::new(file), hasher: blake3::Hasher::new() };
        let writer = FileWriter::try_new(sink, schema).map_err(|e| write_err(path, e))?;
        Ok(Self { writer, path: path.to_owned() })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| write_err(&self.path, e))
    }

    /// Ends the stream, writes the footer, then the checksum into it, and flushes.
    pub fn finish(mut self) -> Result<()> {
        let placeholder = String::from_utf8(PLACEHOLDER.to_vec()).expect("ascii");
        self.writer.write_metadata(CHECKSUM_KEY, placeholder);
        self.writer.finish().map_err(|e| write_err(&self.path, e))?;
        let sink = self.writer.into_inner().map_err(|e| write_err(&self.path, e))?;
        let digest = sink.hasher.finalize().to_hex();
        let file =
            sink.inner.into_inner().map_err(|e| Error::Write { path: self.path.clone(), source: e.into_error() })?;
        let io = |source| Error::Write { path: self.path.clone(), source };
        let (footer_start, footer) = read_footer(&file).map_err(io)?;
        let at = checksum_span(&footer).map_err(|message| Error::Corrupt { path: self.path.clone(), message })?.0;
        file.write_all_at(digest.as_bytes(), footer_start + at as u64).map_err(io)?;
        Ok(())
    }
}

/// Where the footer starts, and its bytes.
fn read_footer(file: &File) -> std::io::Result<(u64, Vec<u8>)> {
    let len = file.metadata()?.len();
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if len < TAIL {
        return Err(bad(format!("{len} bytes is too short for an Arrow IPC file")));
    }
    let mut tail = [0u8; TAIL as usize];
    file.read_exact_at(&mut tail, len - TAIL)?;
    if &tail[4..] != MAGIC {
        return Err(bad("no `ARROW1` magic at its end".into()));
    }
    let footer_len = u64::from(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")));
    let start = (len - TAIL)
        .checked_sub(footer_len)
        .filter(|&s| s >= MAGIC.len() as u64)
        .ok_or_else(|| bad(format!("footer length {footer_len} does not fit in {len} bytes")))?;
    let mut footer = vec![0u8; footer_len as usize];
    file.read_exact_at(&mut footer, start)?;
    Ok((start, footer))
}

/// The checksum's position in the footer and its value.
fn checksum_span(footer: &[u8]) -> std::result::Result<(usize, String), String> {
    let parsed = arrow::ipc::root_as_footer(footer).map_err(|e| format!("unreadable footer: {e}"))?;
    let entry = parsed
        .custom_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key() == Some(CHECKSUM_KEY))
        .ok_or_else(|| format!("no `{CHECKSUM_KEY}` checksum in its footer: not written by this graft version"))?;
    let value = entry
        .value()
        .filter(|v| v.len() == PLACEHOLDER.len())
        .ok_or_else(|| format!("`{CHECKSUM_KEY}` is not {} hex digits", PLACEHOLDER.len()))?;
    // The value borrows from `footer`: its offset there is where it is stored.
    let at = value.as_ptr() as usize - footer.as_ptr() as usize;
    Ok((at, value.to_owned()))
}

/// A failed write, reported as the I/O error it usually is (a full disk), not as a bad file.
fn write_err(path: &Path, e: ArrowError) -> Error {
    match e {
        ArrowError::IoError(_, source) => Error::Write { path: path.to_owned(), source },
        source => Error::ArrowWrite { path: path.to_owned(), source },
    }
}

/// Reads a checksummed Arrow IPC file batch by batch, fully validated.
pub struct ValidatingReader {
    reader: StreamReader<BufReader<Take<File>>>,
    path: PathBuf,
    batch: usize,
}

impl std::fmt::Debug for ValidatingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatingReader").field("path", &self.path).field("batch", &self.batch).finish()
    }
}

impl ValidatingReader {
    pub fn open(path: &Path) -> Result<Self> {
        let corrupt = |message: String| Error::Corrupt { path: path.to_owned(), message };
        let read_err = |source| Error::Read { path: path.to_owned(), source };
        let mut file = fs_err::File::open(path).map_err(read_err)?.into_parts().0;
        let mut head = [0u8; MAX_HEAD];
        let head_len = (file.metadata().map_err(read_err)?.len() as usize).min(MAX_HEAD);
        file.read_exact_at(&mut head[..head_len], 0).map_err(read_err)?;
        if head_len < MAGIC.len() || &head[..MAGIC.len()] != MAGIC {
            return Err(corrupt("no `ARROW1` magic at its start: not an Arrow IPC file".into()));
        }
        let (footer_start, mut footer) = read_footer(&file).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => corrupt(e.to_string()),
            _ => read_err(e),
        })?;
        let (at, expected) = checksum_span(&footer).map_err(corrupt)?;
        footer[at..at + PLACEHOLDER.len()].copy_from_slice(&PLACEHOLDER);
        let mut hasher = blake3::Hasher::new();
        file.seek(SeekFrom::Start(0)).map_err(read_err)?;
        std::io::copy(&mut (&mut file).take(footer_start), &mut hasher).map_err(read_err)?;
        hasher.update(&footer);
        let mut tail = [0u8; TAIL as usize];
        file.read_exact_at(&mut tail, footer_start + footer.len() as u64).map_err(read_err)?;
        hasher.update(&tail);
        let found = hasher.finalize().to_hex();
        if found.as_str() != expected {
            return Err(corrupt(format!("content blake3 {found} differs from the recorded {expected}")));
        }
        let stream_start = (MAGIC.len() + head[MAGIC.len()..head_len].iter().take_while(|&&b| b == 0).count()) as u64;
        if stream_start > footer_start {
            return Err(corrupt("no stream between its magic and its footer".into()));
        }
        file.seek(SeekFrom::Start(stream_start)).map_err(read_err)?;
        let body = BufReader::new(file.take(footer_start - stream_start));
        let reader = guard::unwind(|| StreamReader::try_new(body, None))
            .map_err(|panic| corrupt(format!("schema: {panic}")))?
            .map_err(|source| Error::Arrow { path: path.to_owned(), source })?;
        Ok(Self { reader, path: path.to_owned(), batch: 0 })
    }

    pub fn schema(&self) -> SchemaRef {
        self.reader.schema()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Next batch, `None` at the end of the file.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let index = self.batch;
        let next = guard::unwind(|| self.reader.next().transpose())
            .map_err(|panic| Error::Corrupt { path: self.path.clone(), message: format!("batch {index}: {panic}") })?
            .map_err(|source| Error::ArrowBatch { path: self.path.clone(), batch: index, source })?;
        if let Some(batch) = &next {
            // The IPC reader builds arrays with validation; check nested data fully as well.
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                column.to_data().validate_full().map_err(|source| Error::ArrowColumn {
                    path: self.path.clone(),
                    batch: index,
                    column: field.name().clone(),
                    source,
                })?;
            }
            self.batch += 1;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn write(path: &Path) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("x", DataType::Float32, false),
        ]));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        let mut w = ChecksummedWriter::new(file, path, &schema).unwrap();
        for k in 0..3 {
            let ids: Vec<String> = (0..50).map(|i| format!("row-{k}-{i}")).collect();
            let xs: Vec<f32> = (0..50).map(|i| (k * 50 + i) as f32 * 0.25).collect();
            let columns = vec![
                Arc::new(StringArray::from(ids)) as arrow::array::ArrayRef,
                Arc::new(Float32Array::from(xs)) as arrow::array::ArrayRef,
            ];
            w.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
        }
        w.finish().unwrap();
    }

    fn read_all(path: &Path) -> Result<usize> {
        let mut r = ValidatingReader::open(path)?;
        let mut rows = 0;
        while let Some(b) = r.next_batch()? {
            rows += b.num_rows();
        }
        Ok(rows)
    }

    #[test]
    fn round_trips_large() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.arrow");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float32, false)]));
        let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        let mut w = ChecksummedWriter::new(file, &path, &schema).unwrap();
        for k in 0..5 {
            let xs: Vec<f32> = (0..3000).map(|i| (k * 3000 + i) as f32).collect();
            w.write(&RecordBatch::try_new(schema.clone(), vec![Arc::new(Float32Array::from(xs)) as _]).unwrap())
                .unwrap();
        }
        w.finish().unwrap();
        assert_eq!(read_all(&path).unwrap(), 15000);
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.arrow");
        write(&path);
        assert_eq!(read_all(&path).unwrap(), 150);
        // Other Arrow readers still read it as a plain IPC file.
        let r = arrow::ipc::reader::FileReader::try_new(File::open(&path).unwrap(), None).unwrap();
        assert_eq!(r.map(|b| b.unwrap().num_rows()).sum::<usize>(), 150);
    }

    #[test]
    fn every_flipped_byte_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.arrow");
        write(&path);
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad.arrow");
        // Every position, one bit each: the file is small enough to try them all.
        for pos in 0..good.len() {
            let mut bytes = good.clone();
            bytes[pos] ^= 1 << (pos % 8);
            std::fs::write(&bad, &bytes).unwrap();
            let err = read_all(&bad).expect_err(&format!("flip at byte {pos} accepted"));
            assert!(err.to_string().contains("bad.arrow"), "byte {pos}: {err}");
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_full_disk_is_a_write_error_not_a_bad_file() {
        let path = Path::new("/dev/full");
        let file = File::options().read(true).write(true).open(path).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float32, false)]));
        let xs: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Float32Array::from(xs)) as _]).unwrap();
        let result = ChecksummedWriter::new(file, path, &schema).and_then(|mut w| {
            w.write(&batch)?;
            w.finish()
        });
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Write { .. }), "{err:?}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.contains("cannot write `/dev/full`") && chain.contains("No space left"), "{chain}");
    }

    #[test]
    fn truncated_and_empty_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.arrow");
        write(&path);
        let good = std::fs::read(&path).unwrap();
        for len in [0, 5, 17, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            let err = read_all(&path).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{len} bytes: {err}");
        }
    }
}
