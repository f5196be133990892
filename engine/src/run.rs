//! Sorted runs: immutable files of records in strictly increasing key order.
//!
//! Layout (all integers little-endian; see `docs/FORMAT.md`): a 32-byte header, records, a
//! 64-byte footer. Each record carries its own checksum, so one record can be read and trusted
//! alone. Point reads and scans go through a memory map ([`Run`]); compaction reads its inputs
//! sequentially with buffered reads ([`RunStream`]) so that mapped pages of whole files never
//! pile up in RSS.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::files::FileCache;
use crate::format::{check_frame, FrameSpec, Layout};
use crate::fs::{FileReader, FileSystem, FileWriter, FsFile, Mapped, OpenMode};
use crate::index::{Index, IndexBuilder, RunIdentity};
use crate::layout::{index_file_name, run_file_name, tmp_name};
use crate::limits::{
    LOOKUP_READ_STEP_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, RECORD_ASSEMBLY_BYTES,
    RUN_READ_BUFFER_BYTES, RUN_WRITE_BUFFER_BYTES,
};
use crate::types::{checksum, EntryKind, SeqNo, ValuePointer, VALUE_POINTER_BYTES};

/// Format version written in run headers and footers.
pub const RUN_VERSION: u32 = 1;
/// Magic of the run header.
pub const RUN_MAGIC: [u8; 8] = *b"STRATARN";
/// Magic of the run footer.
pub const RUN_FOOTER_MAGIC: [u8; 8] = *b"STRATAFT";

// Header: magic, version, reserved, run id, checksum of the previous 24 bytes.
const H_MAGIC: usize = 0;
const H_VERSION: usize = H_MAGIC + 8;
const H_RESERVED: usize = H_VERSION + 4;
const H_RUN_ID: usize = H_RESERVED + 4;
const H_CHECKSUM: usize = H_RUN_ID + 8;
/// Bytes of the run header; the first record starts here.
pub const RUN_HEADER_BYTES: usize = H_CHECKSUM + 8;
const _: () = assert!(RUN_HEADER_BYTES == 32);

// Record header: key length, kind, tag, value length, sequence number.
const R_KEY_LEN: usize = 0;
const R_KIND: usize = R_KEY_LEN + 2;
const R_TAG: usize = R_KIND + 1;
const R_VALUE_LEN: usize = R_TAG + 1;
const R_SEQ: usize = R_VALUE_LEN + 4;
/// Bytes of a record header; key, value and an 8-byte checksum follow.
pub const RECORD_HEADER_BYTES: usize = R_SEQ + 8;
/// Bytes of the checksum that ends every record.
pub const RECORD_CHECKSUM_BYTES: usize = 8;
const _: () = assert!(RECORD_HEADER_BYTES == 16);

// Footer.
const F_ENTRY_COUNT: usize = 0;
const F_DATA_END: usize = F_ENTRY_COUNT + 8;
const F_MIN_SEQ: usize = F_DATA_END + 8;
const F_MAX_SEQ: usize = F_MIN_SEQ + 8;
const F_DATA_CHECKSUM: usize = F_MAX_SEQ + 8;
const F_MAGIC: usize = F_DATA_CHECKSUM + 8;
const F_VERSION: usize = F_MAGIC + 8;
const F_RESERVED: usize = F_VERSION + 4;
const F_CHECKSUM: usize = F_RESERVED + 4;
/// Bytes of the run footer, at the end of the file.
pub const RUN_FOOTER_BYTES: usize = F_CHECKSUM + 8;
const _: () = assert!(RUN_FOOTER_BYTES == 64);
// Header and footer are frames: checksum last, version right after the magic.
const _: () = assert!(H_VERSION == H_MAGIC + 8 && H_CHECKSUM + 8 == RUN_HEADER_BYTES);
const _: () = assert!(F_VERSION == F_MAGIC + 8 && F_CHECKSUM + 8 == RUN_FOOTER_BYTES);

pub(crate) const RUN_HEADER_LAYOUT: Layout = Layout {
    name: "run.header",
    offsets: &[H_MAGIC, H_VERSION, H_RESERVED, H_RUN_ID, H_CHECKSUM],
    bytes: RUN_HEADER_BYTES,
    magics: &[RUN_MAGIC],
    version: Some(RUN_VERSION),
};

pub(crate) const RUN_RECORD_LAYOUT: Layout = Layout {
    name: "run.record",
    offsets: &[R_KEY_LEN, R_KIND, R_TAG, R_VALUE_LEN, R_SEQ],
    bytes: RECORD_HEADER_BYTES,
    magics: &[],
    version: None,
};

pub(crate) const RUN_FOOTER_LAYOUT: Layout = Layout {
    name: "run.footer",
    offsets: &[
        F_ENTRY_COUNT,
        F_DATA_END,
        F_MIN_SEQ,
        F_MAX_SEQ,
        F_DATA_CHECKSUM,
        F_MAGIC,
        F_VERSION,
        F_RESERVED,
        F_CHECKSUM,
    ],
    bytes: RUN_FOOTER_BYTES,
    magics: &[RUN_FOOTER_MAGIC],
    version: Some(RUN_VERSION),
};

const RUN_HEADER_FRAME: FrameSpec = FrameSpec {
    what: "run header",
    magic: RUN_MAGIC,
    magic_at: H_MAGIC,
    version: RUN_VERSION,
    oldest_version: RUN_VERSION,
    min_bytes: RUN_HEADER_BYTES,
};

const RUN_FOOTER_FRAME: FrameSpec = FrameSpec {
    what: "run footer",
    magic: RUN_FOOTER_MAGIC,
    magic_at: F_MAGIC,
    version: RUN_VERSION,
    oldest_version: RUN_VERSION,
    min_bytes: RUN_FOOTER_BYTES,
};

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parsed fixed fields of one record header.
#[derive(Copy, Clone, Debug)]
pub struct RecordMeta {
    /// Key length.
    pub key_len: usize,
    /// Put or delete.
    pub kind: EntryKind,
    /// Adapter tag.
    pub tag: u8,
    /// Value length.
    pub value_len: usize,
    /// Sequence number.
    pub seq: SeqNo,
    /// The value bytes are a [`ValuePointer`] to a value file, not the value (on disk: kind
    /// byte [`KIND_PUT_POINTER`]).
    pub indirect: bool,
}

/// Kind byte of a put whose value is a [`ValuePointer`] (the value lives in a value file).
/// Bytes 1 and 2 are [`EntryKind::Put`] and [`EntryKind::Delete`] with the value inline.
pub const KIND_PUT_POINTER: u8 = 3;

impl RecordMeta {
    /// Total bytes of the record, checksum included.
    pub fn record_len(&self) -> u64 {
        (RECORD_HEADER_BYTES + self.key_len + self.value_len + RECORD_CHECKSUM_BYTES) as u64
    }

    fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[R_KEY_LEN..R_KEY_LEN + 2].copy_from_slice(&(self.key_len as u16).to_le_bytes());
        h[R_KIND] = if self.indirect {
            KIND_PUT_POINTER
        } else {
            self.kind as u8
        };
        h[R_TAG] = self.tag;
        h[R_VALUE_LEN..R_VALUE_LEN + 4].copy_from_slice(&(self.value_len as u32).to_le_bytes());
        h[R_SEQ..R_SEQ + 8].copy_from_slice(&self.seq.0.to_le_bytes());
        h
    }

    /// Decodes and range-checks a record header read at `offset` of `file`.
    pub fn decode(h: &[u8], file: &Path, offset: u64) -> Result<RecordMeta> {
        if h.len() < RECORD_HEADER_BYTES {
            return Err(Error::corrupt(
                file,
                offset,
                "run record",
                "record header is cut short",
            ));
        }
        let key_len = le_u16(h, R_KEY_LEN) as usize;
        let value_len = le_u32(h, R_VALUE_LEN) as usize;
        let indirect = h[R_KIND] == KIND_PUT_POINTER;
        if indirect && value_len != VALUE_POINTER_BYTES {
            return Err(Error::corrupt(
                file,
                offset,
                "run record",
                format!("a value pointer of {value_len} bytes, not {VALUE_POINTER_BYTES}"),
            ));
        }
        let kind = if indirect {
            Some(EntryKind::Put)
        } else {
            EntryKind::from_byte(h[R_KIND])
        };
        let kind = kind.ok_or_else(|| {
            Error::corrupt(
                file,
                offset,
                "run record",
                format!("unknown entry kind {}", h[R_KIND]),
            )
        })?;
        if key_len > MAX_KEY_BYTES || value_len > MAX_VALUE_BYTES {
            return Err(Error::corrupt(
                file,
                offset,
                "run record",
                format!("key length {key_len} or value length {value_len} over the limits"),
            ));
        }
        Ok(RecordMeta {
            key_len,
            kind,
            tag: h[R_TAG],
            value_len,
            seq: SeqNo(le_u64(h, R_SEQ)),
            indirect,
        })
    }
}

/// Writes a run: header, records in strictly increasing key order, footer; builds the index on
/// the fly. Values can be written in chunks, so no value needs to be whole in memory.
///
/// Files are written under temporary names; [`RunWriter::finish`] syncs and renames them.
pub struct RunWriter {
    fs: Arc<dyn FileSystem>,
    id: u64,
    dir: PathBuf,
    out: BufWriter<FileWriter>,
    offset: u64,
    data_hash: Xxh3,
    record_hash: Xxh3,
    /// The current record, when it is assembled whole before it is written (see
    /// [`RECORD_ASSEMBLY_BYTES`]).
    record: Vec<u8>,
    assembling: bool,
    value_left: usize,
    in_record: bool,
    entries: u64,
    min_seq: u64,
    max_seq: u64,
    last_key: Option<Vec<u8>>,
    index: Box<dyn IndexBuilder>,
    /// Distinct big-endian u64 key prefixes written.
    prefixes: u64,
}

/// A finished run on disk.
#[derive(Clone, Copy, Debug)]
pub struct FinishedRun {
    /// Its identity (id, lengths, footer checksum).
    pub identity: RunIdentity,
}

impl RunWriter {
    /// Starts run `id` in `dir` (as `run-<id>.run.tmp`), indexed by `index`.
    pub fn create(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        id: u64,
        index: Box<dyn IndexBuilder>,
    ) -> Result<RunWriter> {
        let path = dir.join(tmp_name(&run_file_name(id)));
        let file = fs
            .open(&path, OpenMode::Truncate)
            .map_err(|e| Error::io("creating", &path, e))?;
        let mut out = BufWriter::with_capacity(RUN_WRITE_BUFFER_BYTES, FileWriter::new(file));
        let mut h = [0u8; RUN_HEADER_BYTES];
        h[H_MAGIC..H_MAGIC + 8].copy_from_slice(&RUN_MAGIC);
        h[H_VERSION..H_VERSION + 4].copy_from_slice(&RUN_VERSION.to_le_bytes());
        h[H_RUN_ID..H_RUN_ID + 8].copy_from_slice(&id.to_le_bytes());
        let c = checksum(&h[..H_CHECKSUM]);
        h[H_CHECKSUM..].copy_from_slice(&c.to_le_bytes());
        out.write_all(&h)
            .map_err(|e| Error::io("writing", &path, e))?;
        Ok(RunWriter {
            fs: fs.clone(),
            id,
            dir: dir.to_path_buf(),
            out,
            offset: RUN_HEADER_BYTES as u64,
            data_hash: Xxh3::new(),
            record_hash: Xxh3::new(),
            record: Vec::with_capacity(RECORD_ASSEMBLY_BYTES),
            assembling: false,
            value_left: 0,
            in_record: false,
            entries: 0,
            min_seq: u64::MAX,
            max_seq: 0,
            last_key: None,
            index,
            prefixes: 0,
        })
    }

    fn tmp_path(&self) -> PathBuf {
        self.dir.join(tmp_name(&run_file_name(self.id)))
    }

    fn put_bytes(&mut self, bytes: &[u8], in_record: bool) -> Result<()> {
        if let Err(e) = self.out.write_all(bytes) {
            return Err(Error::io("writing", self.tmp_path(), e));
        }
        self.data_hash.update(bytes);
        if in_record {
            self.record_hash.update(bytes);
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Starts a record; its `value_len` value bytes follow through [`RunWriter::value_chunk`],
    /// then [`RunWriter::end_record`]. Keys must be strictly increasing.
    pub fn begin_record(
        &mut self,
        key: &[u8],
        kind: EntryKind,
        tag: u8,
        seq: SeqNo,
        value_len: usize,
    ) -> Result<()> {
        self.begin(key, kind, tag, seq, value_len, false)
    }

    /// Writes one whole put record whose value lives in a value file at `pointer`.
    pub fn add_pointer(
        &mut self,
        key: &[u8],
        tag: u8,
        seq: SeqNo,
        pointer: &ValuePointer,
    ) -> Result<()> {
        self.begin(key, EntryKind::Put, tag, seq, VALUE_POINTER_BYTES, true)?;
        self.value_chunk(&pointer.encode())?;
        self.end_record()
    }

    fn begin(
        &mut self,
        key: &[u8],
        kind: EntryKind,
        tag: u8,
        seq: SeqNo,
        value_len: usize,
        indirect: bool,
    ) -> Result<()> {
        debug_assert!(!self.in_record, "begin_record inside a record");
        debug_assert!(
            self.last_key.as_deref().is_none_or(|last| last < key),
            "run keys must strictly increase"
        );
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                limit: MAX_KEY_BYTES,
            });
        }
        if value_len > MAX_VALUE_BYTES {
            return Err(Error::ValueTooLarge {
                len: value_len,
                limit: MAX_VALUE_BYTES,
            });
        }
        self.note_record(key, seq);
        let meta = RecordMeta {
            key_len: key.len(),
            kind,
            tag,
            value_len,
            seq,
            indirect,
        };
        self.assembling = meta.record_len() <= RECORD_ASSEMBLY_BYTES as u64;
        if self.assembling {
            self.record.clear();
            self.record.extend_from_slice(&meta.encode());
            self.record.extend_from_slice(key);
        } else {
            self.record_hash = Xxh3::new();
            self.put_bytes(&meta.encode(), true)?;
            self.put_bytes(key, true)?;
        }
        self.value_left = value_len;
        self.in_record = true;
        Ok(())
    }

    /// Writes a record read whole, and checked, from another run ([`RunStream::whole_record`]):
    /// its bytes, checksum included, are the ones this writer would produce.
    pub fn copy_record(&mut self, key: &[u8], seq: SeqNo, record: &[u8]) -> Result<()> {
        debug_assert!(!self.in_record, "copy_record inside a record");
        debug_assert!(
            self.last_key.as_deref().is_none_or(|last| last < key),
            "run keys must strictly increase"
        );
        self.note_record(key, seq);
        self.put_bytes(record, false)
    }

    /// Indexes a record starting here and counts it.
    fn note_record(&mut self, key: &[u8], seq: SeqNo) {
        self.index.add(key, self.offset);
        self.entries += 1;
        self.min_seq = self.min_seq.min(seq.0);
        self.max_seq = self.max_seq.max(seq.0);
        let prefix = crate::options::Sharding::prefix_u64;
        if self
            .last_key
            .as_deref()
            .is_none_or(|last| prefix(last) != prefix(key))
        {
            self.prefixes += 1;
        }
        match &mut self.last_key {
            Some(last) => {
                last.clear();
                last.extend_from_slice(key);
            }
            None => self.last_key = Some(key.to_vec()),
        }
    }

    /// Writes the next bytes of the current record's value.
    pub fn value_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        debug_assert!(
            self.in_record && chunk.len() <= self.value_left,
            "value longer than declared"
        );
        self.value_left -= chunk.len().min(self.value_left);
        if self.assembling {
            self.record.extend_from_slice(chunk);
            return Ok(());
        }
        self.put_bytes(chunk, true)
    }

    /// Ends the current record with its checksum.
    pub fn end_record(&mut self) -> Result<()> {
        if self.value_left != 0 {
            return Err(Error::corrupt(
                self.tmp_path(),
                self.offset,
                "run record",
                format!(
                    "value ended {} bytes short of its declared length",
                    self.value_left
                ),
            ));
        }
        if self.assembling {
            let mut record = std::mem::take(&mut self.record);
            let c = checksum(&record);
            record.extend_from_slice(&c.to_le_bytes());
            let written = self.put_bytes(&record, false);
            self.record = record;
            self.in_record = false;
            return written;
        }
        let c = self.record_hash.digest();
        self.put_bytes(&c.to_le_bytes(), false)?;
        self.in_record = false;
        Ok(())
    }

    /// Writes one whole record.
    #[cfg(feature = "conformance")]
    pub fn add(
        &mut self,
        key: &[u8],
        kind: EntryKind,
        tag: u8,
        seq: SeqNo,
        value: &[u8],
    ) -> Result<()> {
        self.begin_record(key, kind, tag, seq, value.len())?;
        self.value_chunk(value)?;
        self.end_record()
    }

    /// Distinct big-endian u64 key prefixes written so far.
    pub fn prefixes(&self) -> u64 {
        self.prefixes
    }

    /// Records written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Bytes written so far.
    #[cfg(feature = "conformance")]
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Writes the footer and the index, syncs both files and renames them into place (the
    /// caller syncs the directory). Returns the run's identity.
    pub fn finish(mut self) -> Result<FinishedRun> {
        debug_assert!(!self.in_record);
        let data_end = self.offset;
        let mut f = [0u8; RUN_FOOTER_BYTES];
        let (min_seq, max_seq) = if self.entries == 0 {
            (0, 0)
        } else {
            (self.min_seq, self.max_seq)
        };
        f[F_ENTRY_COUNT..F_ENTRY_COUNT + 8].copy_from_slice(&self.entries.to_le_bytes());
        f[F_DATA_END..F_DATA_END + 8].copy_from_slice(&data_end.to_le_bytes());
        f[F_MIN_SEQ..F_MIN_SEQ + 8].copy_from_slice(&min_seq.to_le_bytes());
        f[F_MAX_SEQ..F_MAX_SEQ + 8].copy_from_slice(&max_seq.to_le_bytes());
        f[F_DATA_CHECKSUM..F_DATA_CHECKSUM + 8]
            .copy_from_slice(&self.data_hash.digest().to_le_bytes());
        f[F_MAGIC..F_MAGIC + 8].copy_from_slice(&RUN_FOOTER_MAGIC);
        f[F_VERSION..F_VERSION + 4].copy_from_slice(&RUN_VERSION.to_le_bytes());
        let footer_checksum = checksum(&f[..F_CHECKSUM]);
        f[F_CHECKSUM..].copy_from_slice(&footer_checksum.to_le_bytes());
        let tmp = self.tmp_path();
        self.out
            .write_all(&f)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
        file.file()
            .sync_data()
            .map_err(|e| Error::io("syncing", &tmp, e))?;
        let identity = RunIdentity {
            run_id: self.id,
            data_end,
            file_len: data_end + RUN_FOOTER_BYTES as u64,
            footer_checksum,
        };

        let fs = self.fs.as_ref();
        write_index_file(fs, &self.dir, self.id, self.index, &identity)?;
        let final_path = self.dir.join(run_file_name(self.id));
        fs.rename(&tmp, &final_path)
            .map_err(|e| Error::io("renaming", &tmp, e))?;
        Ok(FinishedRun { identity })
    }
}

/// Writes an index file for run `id` from a finished builder: temporary name, sync, rename.
/// The caller syncs the directory.
pub fn write_index_file(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    builder: Box<dyn IndexBuilder>,
    identity: &RunIdentity,
) -> Result<()> {
    let tmp = dir.join(tmp_name(&index_file_name(id)));
    let file = fs
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    let mut out = BufWriter::with_capacity(RUN_WRITE_BUFFER_BYTES, FileWriter::new(file));
    builder
        .finish(identity, &mut out)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    let file = out
        .into_inner()
        .map_err(|e| Error::io("writing", &tmp, e.into_error()))?;
    file.file()
        .sync_data()
        .map_err(|e| Error::io("syncing", &tmp, e))?;
    let path = dir.join(index_file_name(id));
    fs.rename(&tmp, &path)
        .map_err(|e| Error::io("renaming", &tmp, e))
}

/// Rebuilds run `id`'s index file from the run itself (a sequential, buffered read that checks
/// every record) and loads it.
pub fn rebuild_index(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    factory: &dyn crate::index::IndexFactory,
) -> Result<Box<dyn Index>> {
    let (_, footer, identity) = read_run_frame(fs, &dir.join(run_file_name(id)), id)?;
    let mut builder = factory.builder(footer.entries);
    let mut stream = RunStream::open(fs, dir, id)?;
    while stream.advance()? {
        builder.add(stream.key(), stream.record_offset());
    }
    write_index_file(fs, dir, id, builder, &identity)?;
    crate::manifest::sync_dir(fs, dir)?;
    factory.load(fs, &dir.join(index_file_name(id)), &identity)
}

/// The validated footer of a run.
#[derive(Copy, Clone, Debug)]
pub struct RunFooter {
    /// Records in the run.
    pub entries: u64,
    /// Offset where records end.
    pub data_end: u64,
    /// Smallest sequence number.
    pub min_seq: SeqNo,
    /// Largest sequence number.
    pub max_seq: SeqNo,
    /// xxh3 of the record bytes `[RUN_HEADER_BYTES, data_end)`.
    pub data_checksum: u64,
    /// Checksum of the footer itself.
    pub footer_checksum: u64,
}

/// Checks a run's header (`head`, the first bytes) and footer (`tail`, the last
/// [`RUN_FOOTER_BYTES`]) for a file of `file_len` bytes.
pub fn check_run_frame(
    path: &Path,
    id: u64,
    file_len: u64,
    head: &[u8],
    tail: &[u8],
) -> Result<RunFooter> {
    let min_len = (RUN_HEADER_BYTES + RUN_FOOTER_BYTES) as u64;
    if file_len < min_len || head.len() < RUN_HEADER_BYTES || tail.len() != RUN_FOOTER_BYTES {
        return Err(Error::corrupt(
            path,
            0,
            "run file",
            format!("{file_len} bytes is shorter than header and footer ({min_len})"),
        ));
    }
    check_frame(&head[..RUN_HEADER_BYTES], path, 0, &RUN_HEADER_FRAME)?;
    if le_u64(head, H_RUN_ID) != id {
        return Err(Error::corrupt(
            path,
            H_RUN_ID as u64,
            "run header",
            format!("holds run id {}, expected {id}", le_u64(head, H_RUN_ID)),
        ));
    }
    let foff = file_len - RUN_FOOTER_BYTES as u64;
    check_frame(tail, path, foff, &RUN_FOOTER_FRAME)?;
    let stored = le_u64(tail, F_CHECKSUM);
    let data_end = le_u64(tail, F_DATA_END);
    if data_end != foff {
        return Err(Error::corrupt(
            path,
            foff,
            "run footer",
            format!("data end {data_end} does not meet the footer at {foff}"),
        ));
    }
    Ok(RunFooter {
        entries: le_u64(tail, F_ENTRY_COUNT),
        data_end,
        min_seq: SeqNo(le_u64(tail, F_MIN_SEQ)),
        max_seq: SeqNo(le_u64(tail, F_MAX_SEQ)),
        data_checksum: le_u64(tail, F_DATA_CHECKSUM),
        footer_checksum: stored,
    })
}

/// One record of a mapped run, borrowed from the map.
#[derive(Copy, Clone, Debug)]
pub struct RecordRef<'a> {
    /// Fixed fields.
    pub meta: RecordMeta,
    /// The key.
    pub key: &'a [u8],
    /// The value.
    pub value: &'a [u8],
    /// Offset of the record.
    pub offset: u64,
    /// Offset of the next record.
    pub next: u64,
}

impl RecordRef<'_> {
    /// The record's value pointer, if its value lives in a value file; an error naming `path`
    /// and the record's offset if the pointer does not decode.
    pub fn pointer(&self, path: &Path) -> Result<Option<ValuePointer>> {
        decode_pointer(&self.meta, self.value, path, self.offset)
    }
}

/// The value pointer of a record with `meta` and value bytes `value`, if it is indirect.
pub fn decode_pointer(
    meta: &RecordMeta,
    value: &[u8],
    path: &Path,
    offset: u64,
) -> Result<Option<ValuePointer>> {
    if !meta.indirect {
        return Ok(None);
    }
    ValuePointer::decode(value).map(Some).ok_or_else(|| {
        Error::corrupt(
            path,
            offset,
            "run record",
            "value pointer with non-zero reserved bytes or a length over the limit",
        )
    })
}

/// A value as a run stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredValue {
    /// The value itself (empty for a delete).
    Inline(Vec<u8>),
    /// Where the value lives in a value file.
    Pointer(ValuePointer),
}

/// Parses and checks the record at `offset` of `data` (bytes `[0, data_end)` of a run file).
pub fn parse_record<'a>(data: &'a [u8], path: &Path, offset: u64) -> Result<RecordRef<'a>> {
    parse_record_at(data, 0, path, offset)
}

/// [`parse_record`] over `data` holding the run's bytes from offset `base` on. Offsets in the
/// result and in errors are the run's.
pub fn parse_record_at<'a>(
    data: &'a [u8],
    base: u64,
    path: &Path,
    offset: u64,
) -> Result<RecordRef<'a>> {
    let start = offset
        .checked_sub(base)
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| {
            Error::corrupt(path, offset, "run record", "offset outside the bytes read")
        })?;
    let head = data
        .get(start..start.saturating_add(RECORD_HEADER_BYTES))
        .ok_or_else(|| {
            Error::corrupt(
                path,
                offset,
                "run record",
                "record header runs past the end of the data",
            )
        })?;
    let meta = RecordMeta::decode(head, path, offset)?;
    let key_start = start + RECORD_HEADER_BYTES;
    let value_start = key_start + meta.key_len;
    let sum_start = value_start + meta.value_len;
    let end = sum_start + RECORD_CHECKSUM_BYTES;
    let record = data.get(start..end).ok_or_else(|| {
        Error::corrupt(
            path,
            offset,
            "run record",
            "record runs past the end of the data",
        )
    })?;
    let stored = le_u64(record, record.len() - RECORD_CHECKSUM_BYTES);
    let actual = checksum(&record[..record.len() - RECORD_CHECKSUM_BYTES]);
    if stored != actual {
        return Err(Error::ChecksumMismatch {
            file: path.into(),
            offset,
            what: "run record",
            expected: stored,
            actual,
        });
    }
    Ok(RecordRef {
        meta,
        key: &data[key_start..value_start],
        value: &data[value_start..sum_start],
        offset,
        next: base + end as u64,
    })
}

/// Checks a whole run image in memory: header, footer, every record's checksum, strictly
/// increasing keys, record count and data checksum. Returns the number of records. The run id
/// is taken from the header. Used by the fuzzer and by verification.
pub fn check_run_bytes(bytes: &[u8], path: &Path) -> Result<u64> {
    if bytes.len() < RUN_HEADER_BYTES + RUN_FOOTER_BYTES {
        return Err(Error::corrupt(
            path,
            0,
            "run file",
            "shorter than header and footer",
        ));
    }
    let id = le_u64(bytes, H_RUN_ID);
    let tail = &bytes[bytes.len() - RUN_FOOTER_BYTES..];
    let footer = check_run_frame(
        path,
        id,
        bytes.len() as u64,
        &bytes[..RUN_HEADER_BYTES],
        tail,
    )?;
    let data = &bytes[..footer.data_end as usize];
    let actual = checksum(&data[RUN_HEADER_BYTES..]);
    let mut offset = RUN_HEADER_BYTES as u64;
    let mut count = 0u64;
    let mut last: Option<&[u8]> = None;
    while offset < footer.data_end {
        let rec = parse_record(data, path, offset)?;
        if last.is_some_and(|l| l >= rec.key) {
            return Err(Error::corrupt(
                path,
                offset,
                "run record",
                "key not greater than the previous key",
            ));
        }
        last = Some(rec.key);
        count += 1;
        offset = rec.next;
    }
    if actual != footer.data_checksum {
        return Err(Error::ChecksumMismatch {
            file: path.into(),
            offset: RUN_HEADER_BYTES as u64,
            what: "run data",
            expected: footer.data_checksum,
            actual,
        });
    }
    if count != footer.entries {
        return Err(Error::corrupt(
            path,
            footer.data_end,
            "run footer",
            format!(
                "footer counts {} records, the data holds {count}",
                footer.entries
            ),
        ));
    }
    Ok(count)
}

/// An open run: memory-mapped data plus its loaded index.
pub struct Run {
    id: u64,
    path: PathBuf,
    index_path: PathBuf,
    map: Box<dyn Mapped>,
    /// Open descriptors of run files, for point reads with `pread` (they leave nothing mapped
    /// behind); bounded by `max_open_files`.
    files: Arc<FileCache>,
    footer: RunFooter,
    identity: RunIdentity,
    index: Box<dyn Index>,
    obsolete: AtomicBool,
    bytes_touched: AtomicU64,
    /// Distinct big-endian u64 key prefixes: counted when the run was written, or (after a
    /// reopen) its entry count, an upper bound.
    prefixes: AtomicU64,
    /// What must outlive this run: the value files it points into.
    holds: parking_lot::Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("entries", &self.footer.entries)
            .finish()
    }
}

/// Reads the header and footer of the run file at `path` with two small reads (never the data).
pub fn read_run_frame(
    fs: &dyn FileSystem,
    path: &Path,
    id: u64,
) -> Result<(Arc<dyn FsFile>, RunFooter, RunIdentity)> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("opening", path, e))?;
    let len = file
        .size()
        .map_err(|e| Error::io("reading metadata of", path, e))?;
    let mut head = [0u8; RUN_HEADER_BYTES];
    let mut tail = [0u8; RUN_FOOTER_BYTES];
    if len >= (RUN_HEADER_BYTES + RUN_FOOTER_BYTES) as u64 {
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io("reading", path, e))?;
        file.read_exact_at(&mut tail, len - RUN_FOOTER_BYTES as u64)
            .map_err(|e| Error::io("reading", path, e))?;
    }
    let footer = check_run_frame(path, id, len, &head, &tail)?;
    let identity = RunIdentity {
        run_id: id,
        data_end: footer.data_end,
        file_len: len,
        footer_checksum: footer.footer_checksum,
    };
    Ok((file, footer, identity))
}

impl Run {
    /// Opens run `id` in `dir` with an index already loaded for it. Reads the header and
    /// footer only.
    pub fn open(dir: &Path, id: u64, index: Box<dyn Index>, files: &Arc<FileCache>) -> Result<Run> {
        let path = dir.join(run_file_name(id));
        let (file, footer, identity) = read_run_frame(files.fs().as_ref(), &path, id)?;
        // Run files are immutable once renamed into place; strata never writes or truncates
        // them, and removes them only after every `Run` mapping them is dropped.
        let map = file.map().map_err(|e| Error::io("mapping", &path, e))?;
        // Point reads and scans jump around: no readahead, no fault-around of neighbours.
        map.advise_random();
        Ok(Run {
            id,
            index_path: dir.join(index_file_name(id)),
            path,
            map,
            files: files.clone(),
            footer,
            identity,
            index,
            obsolete: AtomicBool::new(false),
            bytes_touched: AtomicU64::new(0),
            holds: parking_lot::Mutex::new(Vec::new()),
            prefixes: AtomicU64::new(footer.entries),
        })
    }

    /// The descriptor cache the run is read through.
    pub(crate) fn files(&self) -> &FileCache {
        &self.files
    }

    /// Path of the run file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's id.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// Footer fields.
    pub fn footer(&self) -> &RunFooter {
        &self.footer
    }
    /// Identity, as stored in its index.
    #[cfg(feature = "conformance")]
    pub fn identity(&self) -> RunIdentity {
        self.identity
    }
    /// File length in bytes.
    pub fn file_len(&self) -> u64 {
        self.identity.file_len
    }
    /// The loaded index.
    pub fn index(&self) -> &dyn Index {
        self.index.as_ref()
    }

    fn data(&self) -> &[u8] {
        &self.map.bytes()[..self.footer.data_end as usize]
    }

    /// The record at `offset` (a record start), checked.
    pub fn record_at(&self, offset: u64) -> Result<RecordRef<'_>> {
        let rec = parse_record(self.data(), &self.path, offset)?;
        self.bytes_touched
            .fetch_add(rec.next - rec.offset, Ordering::Relaxed);
        Ok(rec)
    }

    /// Bytes of records this run has read through its map so far (for tests and benchmarks:
    /// a lookup the filter rejects adds nothing).
    pub fn bytes_touched(&self) -> u64 {
        self.bytes_touched.load(Ordering::Relaxed)
    }

    /// The newest version of `key` in this run, if present.
    #[cfg(feature = "conformance")]
    pub fn get(&self, key: &[u8]) -> Result<Option<RecordRef<'_>>> {
        if !self.index.may_contain(key) {
            return Ok(None);
        }
        let Some(span) = self.index.locate(key) else {
            return Ok(None);
        };
        let mut offset = span.start;
        while offset < span.end.min(self.footer.data_end) {
            let rec = self.record_at(offset)?;
            match rec.key.cmp(key) {
                std::cmp::Ordering::Less => offset = rec.next,
                std::cmp::Ordering::Equal => return Ok(Some(rec)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The newest version of `key` in this run, copied out: its kind and value. Reads the span
    /// the index gives with `pread` (records crossing its end included), so point reads leave
    /// no mapped pages behind: resident memory does not grow with the data looked up.
    pub fn get_owned(&self, key: &[u8]) -> Result<Option<(EntryKind, StoredValue)>> {
        // `locate` is `None` for a key the index (its filter) knows is absent.
        let Some(span) = self.index.locate(key) else {
            return Ok(None);
        };
        let data_end = self.footer.data_end;
        let end = span.end.min(data_end);
        let base = span.start;
        // The page, and a record that runs past its end (a span is a page: capped, in case an
        // index says otherwise).
        let span_bytes = end.saturating_sub(base).min(1 << 20) as usize;
        let mut buf: Vec<u8> = Vec::with_capacity(span_bytes + LOOKUP_READ_STEP_BYTES as usize);
        let file = self.files.get(&self.path)?;
        // Grows `buf` (the run's bytes from `base` on) to cover `upto`, reading only what is
        // missing: a step at a time inside the page, never past it unless a record needs it.
        let cover = |buf: &mut Vec<u8>, upto: u64| -> Result<()> {
            let have = base + buf.len() as u64;
            if upto > have {
                let upto = upto
                    .max((have + LOOKUP_READ_STEP_BYTES).min(end))
                    .min(data_end);
                let old = buf.len();
                buf.resize((upto - base) as usize, 0);
                file.read_exact_at(&mut buf[old..], have)
                    .map_err(|e| Error::io("reading", &self.path, e))?;
                self.bytes_touched.fetch_add(upto - have, Ordering::Relaxed);
            }
            Ok(())
        };
        let mut offset = span.start;
        while offset < end {
            cover(&mut buf, offset + RECORD_HEADER_BYTES as u64)?;
            let head = &buf[(offset - base) as usize..];
            let meta = RecordMeta::decode(head, &self.path, offset)?;
            cover(&mut buf, offset + meta.record_len())?;
            let rec = parse_record_at(&buf, base, &self.path, offset)?;
            match rec.key.cmp(key) {
                std::cmp::Ordering::Less => offset = rec.next,
                std::cmp::Ordering::Equal => {
                    let stored = match rec.pointer(&self.path)? {
                        Some(p) => StoredValue::Pointer(p),
                        None => StoredValue::Inline(rec.value.to_vec()),
                    };
                    return Ok(Some((rec.meta.kind, stored)));
                }
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Drops `[start, end)` (page-aligned inward) from this process's page tables. Best effort.
    pub fn release_range(&self, start: u64, end: u64) {
        if end > start {
            self.map.release(start as usize, (end - start) as usize);
        }
    }

    /// Offset of the first record with key `>= key` (or the data end).
    pub fn seek(&self, key: &[u8]) -> Result<u64> {
        let mut offset = self.index.seek(key).max(RUN_HEADER_BYTES as u64);
        while offset < self.footer.data_end {
            let rec = self.record_at(offset)?;
            if rec.key >= key {
                break;
            }
            offset = rec.next;
        }
        Ok(offset)
    }

    /// `len` bytes at `offset` of a record already checked by [`Run::record_at`].
    pub(crate) fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        &self.data()[offset as usize..offset as usize + len]
    }

    /// Data end: offsets at or past it hold no record.
    pub fn data_end(&self) -> u64 {
        self.footer.data_end
    }

    /// Distinct big-endian u64 key prefixes (an upper bound after a reopen).
    pub fn prefixes(&self) -> u64 {
        self.prefixes.load(Ordering::Relaxed)
    }

    /// Records the exact count of distinct key prefixes, known when the run was written.
    pub(crate) fn set_prefixes(&self, n: u64) {
        self.prefixes.store(n, Ordering::Relaxed);
    }

    /// Keeps `thing` (a value file this run points into) alive as long as the run.
    pub(crate) fn hold(&self, thing: Arc<dyn std::any::Any + Send + Sync>) {
        self.holds.lock().push(thing);
    }

    /// Marks the run as replaced: its files are deleted when the last reference is dropped.
    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A dropped run is either obsolete or its database is closing: either way its
        // descriptor is not needed.
        self.files.forget(&self.path);
        if self.obsolete.load(Ordering::Acquire) {
            // Best effort: a leftover file is not in the manifest and is removed at next open.
            let _ = self.files.fs().remove_file(&self.index_path);
            let _ = self.files.fs().remove_file(&self.path);
        }
    }
}

/// Sequential, buffered reader of a run's records, for compaction and verification. Holds one
/// read buffer of [`RUN_READ_BUFFER_BYTES`]; values are streamed, never held whole.
pub struct RunStream {
    path: PathBuf,
    input: BufReader<FileReader>,
    offset: u64,
    data_end: u64,
    meta: Option<RecordMeta>,
    record_offset: u64,
    key: Vec<u8>,
    hash: Xxh3,
    value_pending: bool,
    /// The current record read whole and checked (records of at most
    /// [`RECORD_ASSEMBLY_BYTES`]); empty when it is streamed.
    record: Vec<u8>,
}

impl RunStream {
    /// Opens run `id` of `dir` for a sequential read; checks header and footer.
    pub fn open(fs: &dyn FileSystem, dir: &Path, id: u64) -> Result<RunStream> {
        let path = dir.join(run_file_name(id));
        let (file, footer, _) = read_run_frame(fs, &path, id)?;
        let mut input = BufReader::with_capacity(RUN_READ_BUFFER_BYTES, FileReader::new(file, 0));
        let mut skip = [0u8; RUN_HEADER_BYTES];
        input
            .read_exact(&mut skip)
            .map_err(|e| Error::io("reading", &path, e))?;
        Ok(RunStream {
            path,
            input,
            offset: RUN_HEADER_BYTES as u64,
            data_end: footer.data_end,
            meta: None,
            record_offset: 0,
            key: Vec::new(),
            hash: Xxh3::new(),
            value_pending: false,
            record: Vec::with_capacity(RECORD_ASSEMBLY_BYTES),
        })
    }

    /// Moves to the next record, reading its header and key; `false` at the end. Any value of
    /// the current record not yet streamed is read (and checked) first.
    pub fn advance(&mut self) -> Result<bool> {
        if self.value_pending {
            self.stream_value(&mut |_| Ok(()))?;
        }
        self.meta = None;
        if self.offset >= self.data_end {
            return Ok(false);
        }
        if self.data_end - self.offset < (RECORD_HEADER_BYTES + RECORD_CHECKSUM_BYTES) as u64 {
            return Err(Error::corrupt(
                &self.path,
                self.offset,
                "run record",
                "record header runs past the end of the data",
            ));
        }
        let mut h = [0u8; RECORD_HEADER_BYTES];
        self.input
            .read_exact(&mut h)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        let meta = RecordMeta::decode(&h, &self.path, self.offset)?;
        if self.offset + meta.record_len() > self.data_end {
            return Err(Error::corrupt(
                &self.path,
                self.offset,
                "run record",
                "record runs past the end of the data",
            ));
        }
        self.record_offset = self.offset;
        self.offset += meta.record_len();
        self.meta = Some(meta);
        self.record.clear();
        if meta.record_len() <= RECORD_ASSEMBLY_BYTES as u64 {
            // Small: read it whole and check it now, in one pass.
            self.record.extend_from_slice(&h);
            self.record.resize(meta.record_len() as usize, 0);
            self.input
                .read_exact(&mut self.record[RECORD_HEADER_BYTES..])
                .map_err(|e| Error::io("reading", &self.path, e))?;
            let (body, sum) = self
                .record
                .split_at(self.record.len() - RECORD_CHECKSUM_BYTES);
            let stored = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
            self.check_record(stored, checksum(body))?;
            self.key.clear();
            self.key.extend_from_slice(
                &self.record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + meta.key_len],
            );
            self.value_pending = true;
            return Ok(true);
        }
        self.key.resize(meta.key_len, 0);
        self.input
            .read_exact(&mut self.key)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        self.hash = Xxh3::new();
        self.hash.update(&h);
        self.hash.update(&self.key);
        self.value_pending = true;
        Ok(true)
    }

    /// The current record's bytes, checksum included, when it was read whole (and checked).
    pub fn whole_record(&self) -> Option<&[u8]> {
        (self.meta.is_some() && !self.record.is_empty()).then_some(self.record.as_slice())
    }

    /// The current record's fixed fields (after a successful [`RunStream::advance`]).
    pub fn meta(&self) -> Option<&RecordMeta> {
        self.meta.as_ref()
    }

    /// The current record's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Offset of the current record.
    pub fn record_offset(&self) -> u64 {
        self.record_offset
    }

    /// The current record's value pointer, read and checked, if the record is indirect (its
    /// value is then consumed: [`RunStream::stream_value`] streams nothing more).
    pub fn pointer(&mut self) -> Result<Option<ValuePointer>> {
        let Some(meta) = self.meta.filter(|m| m.indirect) else {
            return Ok(None);
        };
        let mut bytes = [0u8; VALUE_POINTER_BYTES];
        let mut at = 0;
        self.stream_value(&mut |c| {
            bytes[at..at + c.len()].copy_from_slice(c);
            at += c.len();
            Ok(())
        })?;
        decode_pointer(&meta, &bytes, &self.path, self.record_offset)
    }

    /// Streams the current record's value to `sink` in pieces of at most
    /// [`RUN_READ_BUFFER_BYTES`], then checks the record checksum.
    pub fn stream_value(&mut self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let Some(meta) = self.meta else { return Ok(()) };
        if !self.value_pending {
            return Ok(());
        }
        self.value_pending = false;
        if !self.record.is_empty() {
            // Read whole and checked: the value is in memory.
            let start = RECORD_HEADER_BYTES + meta.key_len;
            if meta.value_len > 0 {
                sink(&self.record[start..start + meta.value_len])?;
            }
            return Ok(());
        }
        let mut left = meta.value_len;
        while left > 0 {
            let buf = self.input.fill_buf_checked(&self.path)?;
            let n = buf.len().min(left);
            self.hash.update(&buf[..n]);
            sink(&buf[..n])?;
            self.input.consume(n);
            left -= n;
        }
        let mut sum = [0u8; RECORD_CHECKSUM_BYTES];
        self.input
            .read_exact(&mut sum)
            .map_err(|e| Error::io("reading", &self.path, e))?;
        self.check_record(u64::from_le_bytes(sum), self.hash.digest())
    }

    /// An error naming the current record unless its stored checksum is the computed one.
    fn check_record(&self, stored: u64, actual: u64) -> Result<()> {
        if stored == actual {
            return Ok(());
        }
        Err(Error::ChecksumMismatch {
            file: self.path.clone(),
            offset: self.record_offset,
            what: "run record",
            expected: stored,
            actual,
        })
    }
}

trait FillChecked {
    fn fill_buf_checked(&mut self, path: &Path) -> Result<&[u8]>;
    fn consume(&mut self, n: usize);
}

impl FillChecked for BufReader<FileReader> {
    fn fill_buf_checked(&mut self, path: &Path) -> Result<&[u8]> {
        let buf = std::io::BufRead::fill_buf(self).map_err(|e| Error::io("reading", path, e))?;
        if buf.is_empty() {
            return Err(Error::corrupt(
                path,
                0,
                "run file",
                "file ends inside a record",
            ));
        }
        Ok(buf)
    }
    fn consume(&mut self, n: usize) {
        std::io::BufRead::consume(self, n)
    }
}
