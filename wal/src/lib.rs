//! `FileWal`: strata's write-ahead log. One directory of numbered segment files
//! (`wal-<id>.log`); appends are buffered in [`WAL_WRITE_BUFFER_BYTES`] and written to the OS per
//! batch; recovery walks record headers and seeks over values, so it needs memory for keys, not
//! bytes; values are read back by position and checked on demand.
//!
//! Damage handling: a torn tail of the newest segment (a record cut short, an incomplete batch,
//! or bad bytes after which no intact record follows) is truncated at the end of the last whole
//! batch, with an event. Damage anywhere else is an error naming the file and offset.

mod format;
mod walk;

pub use format::{
    RECORD_HEADER_BYTES, RECORD_HEADER_LAYOUT, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_LAYOUT,
    VALUE_CHECKSUM_BYTES, WAL_MAGIC, WAL_VERSION,
};
pub use walk::{check_segment_bytes, intact_header_after, Ending};

/// One record found by [`salvage_segment`].
#[derive(Copy, Clone, Debug)]
pub struct SalvagedRecord<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Put or delete.
    pub kind: EntryKind,
    /// The adapter tag.
    pub tag: u8,
    /// The value (empty for a delete), or `None` when it fails its checksum.
    pub value: Option<&'a [u8]>,
    /// Offset of the value in the segment file.
    pub value_offset: u64,
    /// The record's sequence number.
    pub seq: SeqNo,
}

/// Reads every record of the complete batches of the WAL segment file `path` and hands each to
/// `visit` with its value checked, for tools that salvage a damaged database (`strata
/// repair`). Values are read whole, one at a time. A record's header has its own checksum, so
/// a damaged value is skipped precisely; after a damaged header the read resumes at the next
/// intact record header (a byte-by-byte search), and `gap` is told `(offset, bytes skipped,
/// what was wrong)`; a batch whose start was lost is salvaged from its intact records on.
/// Returns how the segment ended (`Damaged` only when nothing intact follows the damage).
pub fn salvage_segment(
    fs: &dyn FileSystem,
    path: &Path,
    segment: SegmentId,
    visit: &mut dyn FnMut(SalvagedRecord<'_>) -> Result<()>,
    gap: &mut dyn FnMut(u64, u64, &str),
) -> Result<Ending> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("opening", path, e))?;
    let len = file
        .size()
        .map_err(|e| Error::io("reading metadata of", path, e))?;
    let src = FileAt { file: &*file, len };
    let mut value = Vec::new();
    let mut visit_checked = |f: &Found| {
        let pos = f.pos;
        value.resize(pos.value_len as usize, 0);
        let mut sum = [0u8; VALUE_CHECKSUM_BYTES];
        let read = file
            .read_exact_at(&mut value, pos.value_offset)
            .and_then(|()| file.read_exact_at(&mut sum, pos.value_offset + pos.value_len as u64));
        let intact = read.is_ok() && u64::from_le_bytes(sum) == checksum(&value);
        visit(SalvagedRecord {
            key: &f.key,
            kind: f.header.kind,
            tag: f.header.tag,
            value: intact.then_some(value.as_slice()),
            value_offset: pos.value_offset,
            seq: f.header.seq,
        })
    };
    let mut walked = match walk_segment(&src, path, segment, &mut visit_checked) {
        Ok(w) => w,
        Err(e @ Error::Io { .. }) => return Err(e),
        // A segment header that checks against its own checksum names another version or
        // segment: not this format's to salvage.
        Err(e) if header_sums(&*file) => return Err(e),
        Err(e) => {
            gap(0, SEGMENT_HEADER_BYTES as u64, &e.to_string());
            walk::walk_records_from(
                &src,
                path,
                segment,
                SEGMENT_HEADER_BYTES as u64,
                &mut visit_checked,
            )?
        }
    };
    while let Ending::Damaged { at, detail } = &walked.ending {
        let Some(resume) = walk::next_intact_header(&src, path, *at)? else {
            break;
        };
        gap(*at, resume - at, detail);
        walked = walk::walk_records_from(&src, path, segment, resume, &mut visit_checked)?;
    }
    Ok(walked.ending)
}

/// Whether the segment header of `file` matches its own checksum.
fn header_sums(file: &dyn FsFile) -> bool {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut h, 0).is_ok() && frame_sums(&h)
}

/// WAL bytes per record besides its key and value: the record header and the value checksum.
pub const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_BYTES + VALUE_CHECKSUM_BYTES;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_engine::format::{frame_sums, parse_file_name, segment_file_name, FileKind};
use strata_engine::sync::{Mutex, RwLock};
use strata_engine::{
    checksum, Appended, EntryKind, Error, Event, EventSink, FileSystem, FsFile, LoadedSegment,
    OpRef, OpenMode, RecoveredRecord, Result, SegmentId, SeqNo, Wal, WalPos, WalStats,
    COPY_CHUNK_BYTES, WAL_WRITE_BUFFER_BYTES,
};

use crate::format::{encode_segment_header, RecordHeader, FLAG_BATCH_CONTINUES};
use crate::walk::{walk_segment, FileAt, Found, Walked};

fn segment_id_from_name(name: &str) -> Option<SegmentId> {
    match parse_file_name(name)? {
        FileKind::WalSegment(id) => Some(id),
        _ => None,
    }
}

struct Segment {
    id: SegmentId,
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
    /// The open descriptor; `None` once released while fully synced (see
    /// [`Wal::release_files`]), reopened by the next use.
    file: Mutex<Option<Arc<dyn FsFile>>>,
}

impl Segment {
    fn new(
        fs: &Arc<dyn FileSystem>,
        id: SegmentId,
        path: PathBuf,
        file: Arc<dyn FsFile>,
    ) -> Segment {
        Segment {
            id,
            path,
            fs: fs.clone(),
            file: Mutex::new(Some(file)),
        }
    }

    /// The segment's descriptor, reopened (read and write) if it was released.
    fn file(&self) -> Result<Arc<dyn FsFile>> {
        let mut slot = self.file.lock();
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        let f = self
            .fs
            .open(&self.path, OpenMode::ReadWrite)
            .map_err(|e| Error::io("opening", &self.path, e))?;
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Closes the descriptor (the caller knows every write to it is synced).
    fn release(&self) -> bool {
        self.file.lock().take().is_some()
    }
}

struct Writer {
    seg: Arc<Segment>,
    len: u64,
    buf: Vec<u8>,
    next_seq: SeqNo,
    /// The first write or sync that failed: its OS error kind and message. Sticky until reopen.
    failed: Option<(std::io::ErrorKind, String)>,
}

/// A segmented, append-only log in one directory.
pub struct FileWal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    writer: Mutex<Writer>,
    segments: RwLock<BTreeMap<SegmentId, Arc<Segment>>>,
    /// Highest (segment, length) known durable; one syncer at a time (group commit).
    synced: Mutex<(SegmentId, u64)>,
    recovery_bytes_read: u64,
}

fn create_segment(fs: &Arc<dyn FileSystem>, dir: &Path, id: SegmentId) -> Result<Segment> {
    let path = dir.join(segment_file_name(id));
    let file = fs
        .open(&path, OpenMode::CreateNew)
        .map_err(|e| Error::io("creating", &path, e))?;
    file.write_all_at(&encode_segment_header(id.0), 0)
        .map_err(|e| Error::io("writing", &path, e))?;
    file.sync_data()
        .map_err(|e| Error::io("syncing", &path, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("syncing directory", dir, e))?;
    Ok(Segment::new(fs, id, path, file))
}

/// The segment ids in `dir`, ascending. Segments below `floor` are already compacted into
/// runs: they are deleted here.
fn list_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    floor: SegmentId,
    values: &[SegmentId],
    events: &dyn EventSink,
) -> Result<Vec<SegmentId>> {
    let mut ids = Vec::new();
    for entry in fs.list(dir).map_err(|e| Error::io("listing", dir, e))? {
        if let Some(id) = entry.name.to_str().and_then(segment_id_from_name) {
            ids.push(id);
        }
    }
    ids.sort();
    // Compaction makes the active segment (numbered at the floor or above) before it moves the
    // floor, so segments exist only below a floor that a damaged manifest put too high: refuse
    // rather than delete live segments as compacted ones.
    if let Some(newest) = ids.last().filter(|newest| **newest < floor) {
        return Err(Error::corrupt(
            dir,
            0,
            "shard manifest",
            format!(
                "its WAL floor {} is above the newest WAL segment {}; refusing to delete them",
                floor.0, newest.0
            ),
        ));
    }
    for id in ids.iter().filter(|id| **id < floor && !values.contains(id)) {
        let path = dir.join(segment_file_name(*id));
        fs.remove_file(&path)
            .map_err(|e| Error::io("removing", &path, e))?;
        events.event(&Event::StrayFileRemoved { file: path });
    }
    ids.retain(|id| *id >= floor);
    Ok(ids)
}

/// Opens value file `id` (a segment below the floor that runs point into) for reads: it must
/// exist, hold at least its header, and its header must name it. Its records are not walked.
fn open_value_file(fs: &Arc<dyn FileSystem>, dir: &Path, id: SegmentId) -> Result<Segment> {
    let path = dir.join(segment_file_name(id));
    let file = fs
        .open(&path, OpenMode::Read)
        .map_err(|e| Error::io("opening value file", &path, e))?;
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    file.read_exact_at(&mut h, 0)
        .map_err(|e| Error::io("reading the header of value file", &path, e))?;
    crate::format::check_segment_header(&h, &path, id.0)?;
    Ok(Segment::new(fs, id, path, file))
}

/// Opens segment `id`, passes the records of its complete batches to `replay` (raising
/// `max_seq`), and truncates a torn tail if it is the `newest`. Returns the segment, the end of
/// its last complete batch, and the bytes read.
fn recover_segment(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    id: SegmentId,
    newest: bool,
    events: &dyn EventSink,
    max_seq: &mut SeqNo,
    replay: &mut dyn FnMut(RecoveredRecord<'_>) -> Result<()>,
) -> Result<(Segment, u64, u64)> {
    let path = dir.join(segment_file_name(id));
    let file = fs
        .open(&path, OpenMode::ReadWrite)
        .map_err(|e| Error::io("opening", &path, e))?;
    let len = file
        .size()
        .map_err(|e| Error::io("reading metadata of", &path, e))?;
    let src = FileAt { file: &*file, len };
    if newest && torn_creation(&src, &path, id)? {
        // Created, its header torn by a crash before the header's sync: nothing after it was
        // ever synced (a sync covers the header too), so it holds nothing durable.
        truncate_tail(&*file, &path, id, 0)?;
        events.event(&Event::WalTailTruncated {
            file: path.clone(),
            offset: 0,
            dropped_bytes: len,
        });
        return Ok((
            Segment::new(fs, id, path, file),
            0,
            SEGMENT_HEADER_BYTES as u64,
        ));
    }
    let mut apply = |f: &Found| {
        *max_seq = (*max_seq).max(f.header.seq);
        replay(RecoveredRecord {
            seq: f.header.seq,
            kind: f.header.kind,
            tag: f.header.tag,
            key: &f.key,
            pos: f.pos,
        })
    };
    // In the newest segment the last whole batch is held back until its values are checked:
    // a torn write can leave headers intact and values not (the header's sector reached the
    // disk, the data's did not). Older batches are applied as the next one completes.
    let mut held: Vec<Found> = Vec::new();
    let mut batch: Vec<Found> = Vec::new();
    let walked = walk_segment(&src, &path, id, &mut |f| {
        if !newest {
            return apply(f);
        }
        batch.push(f.clone());
        if !f.header.continues() {
            held.drain(..).try_for_each(|h| apply(&h))?;
            held = std::mem::take(&mut batch);
        }
        Ok(())
    })?;
    let bytes_read = walked.bytes_read;
    let mut end = kept_end(walked, newest, &src, &path)?;
    match first_torn_value(&*file, &path, &held)? {
        None => held.iter().try_for_each(&mut apply)?,
        Some(batch_start) => end = end.min(batch_start),
    }
    // A segment shorter than its header (a crash between its creation and its header's sync,
    // even at 0 bytes) gets its header written again, or the next append would land behind
    // zeros where the header belongs.
    if end < len || len < SEGMENT_HEADER_BYTES as u64 {
        truncate_tail(&*file, &path, id, end)?;
        events.event(&Event::WalTailTruncated {
            file: path.clone(),
            offset: end,
            dropped_bytes: len - end,
        });
    } else if newest && end > SEGMENT_HEADER_BYTES as u64 {
        // What a killed process wrote may still be only in the page cache: sync it before
        // anything recovered from it is reported durable.
        file.sync_data()
            .map_err(|e| Error::io("syncing", &path, e))?;
    }
    Ok((Segment::new(fs, id, path, file), end, bytes_read))
}

/// Whether the newest segment's header is torn (it fails its own checksum) with no intact
/// record after it: a crash between the segment's creation and the sync of its header.
fn torn_creation(src: &FileAt<'_>, path: &Path, id: SegmentId) -> Result<bool> {
    if src.len < SEGMENT_HEADER_BYTES as u64 {
        return Ok(false); // handled by the walk as a short segment
    }
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    src.file
        .read_exact_at(&mut h, 0)
        .map_err(|e| Error::io("reading", path, e))?;
    // A header that checks against its own checksum is not torn (it may be of another
    // version or segment: the walk names that).
    if crate::format::check_segment_header(&h, path, id.0).is_ok() || frame_sums(&h) {
        return Ok(false);
    }
    Ok(!walk::intact_header_after(
        src,
        path,
        SEGMENT_HEADER_BYTES as u64 - 1,
    )?)
}

/// Checks the values of `batch` (the newest segment's last whole batch) against their
/// checksums, streaming in [`COPY_CHUNK_BYTES`] chunks; returns the offset where the batch
/// starts if one fails (the batch is then a torn tail), `None` if all hold.
fn first_torn_value(file: &dyn FsFile, path: &Path, batch: &[Found]) -> Result<Option<u64>> {
    let mut chunk = Vec::new();
    // Deletes too: their (empty) value's checksum is the last bytes of their record.
    for f in batch {
        if chunk.is_empty() && f.pos.value_len > 0 {
            chunk = vec![0u8; COPY_CHUNK_BYTES];
        }
        if !value_intact(file, path, f.pos, &mut chunk)? {
            let first = &batch[0];
            let start = first.pos.value_offset - (first.key.len() + RECORD_HEADER_BYTES) as u64;
            return Ok(Some(start));
        }
    }
    Ok(None)
}

/// Whether the value at `pos` matches its checksum. A value cut short by the file's end is not
/// intact; other read errors are errors.
fn value_intact(file: &dyn FsFile, path: &Path, pos: WalPos, chunk: &mut [u8]) -> Result<bool> {
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    let mut at = pos.value_offset;
    let mut left = pos.value_len as usize;
    let read = |buf: &mut [u8], at: u64| match file.read_exact_at(buf, at) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io("reading", path, e)),
    };
    while left > 0 {
        let n = left.min(chunk.len());
        if !read(&mut chunk[..n], at)? {
            return Ok(false);
        }
        hash.update(&chunk[..n]);
        at += n as u64;
        left -= n;
    }
    let mut sum = [0u8; VALUE_CHECKSUM_BYTES];
    Ok(read(&mut sum, at)? && u64::from_le_bytes(sum) == hash.digest())
}

/// How much of a walked segment recovery keeps: all of a clean one; of the newest, everything
/// before a torn tail (what a crash leaves). Anything else (a tear or damage in an older
/// segment, damage followed by an intact record) is an error naming the file and offset.
fn kept_end(walked: Walked, newest: bool, src: &FileAt<'_>, path: &Path) -> Result<u64> {
    Ok(match walked.ending {
        Ending::Clean => src.len,
        Ending::Torn if newest => walked.good_end,
        Ending::Damaged { at, detail } => {
            if !newest || intact_header_after(src, path, at)? {
                return Err(Error::corrupt(path, at, "WAL record", detail));
            }
            walked.good_end
        }
        Ending::Torn => {
            return Err(Error::corrupt(
                path,
                walked.good_end,
                "WAL record",
                "segment ends inside a record or batch, and it is not the newest",
            ));
        }
    })
}

/// Cuts segment `id` back to `end` (the end of its last complete batch) and syncs.
fn truncate_tail(file: &dyn FsFile, path: &Path, id: SegmentId, end: u64) -> Result<()> {
    if end == 0 {
        // Crashed while creating the segment: write its header again.
        file.set_len(0)
            .map_err(|e| Error::io("truncating", path, e))?;
        file.write_all_at(&encode_segment_header(id.0), 0)
            .map_err(|e| Error::io("writing", path, e))?;
    } else {
        file.set_len(end)
            .map_err(|e| Error::io("truncating", path, e))?;
    }
    file.sync_data().map_err(|e| Error::io("syncing", path, e))
}

impl Writer {
    /// After a failed write the file's tail is unknown, and after a failed sync the kernel may
    /// have dropped the dirty pages (a retried fsync can succeed without writing them): only a
    /// reopen, which recovers from what is really on disk, may append or report durability
    /// again. Until then every append and sync gets the first failure's error kind.
    fn check_usable(&self, op: &'static str) -> Result<()> {
        if let Some((kind, cause)) = &self.failed {
            return Err(Error::io(
                op,
                &self.seg.path,
                std::io::Error::new(
                    *kind,
                    format!("an earlier write or sync failed ({cause}); nothing since the last successful sync is durable; reopen"),
                ),
            ));
        }
        Ok(())
    }

    /// Writes `ops` as one batch from the end of the segment (every record but the last flagged
    /// as continued). Returns the positions of their values and the new end. Leaves `len` and
    /// `next_seq` to the caller, which updates them only on success.
    fn write_batch(&mut self, ops: &[OpRef<'_>]) -> Result<(Vec<WalPos>, u64)> {
        let mut positions = Vec::with_capacity(ops.len());
        let mut offset = self.len;
        let mut write_at = self.len;
        for (i, op) in ops.iter().enumerate() {
            debug_assert!(op.kind == EntryKind::Put || op.value.is_empty());
            let header = RecordHeader {
                seq: SeqNo(self.next_seq.0 + i as u64),
                value_len: op.value.len() as u32,
                key_len: op.key.len() as u16,
                kind: op.kind,
                tag: op.tag,
                flags: if i + 1 < ops.len() {
                    FLAG_BATCH_CONTINUES
                } else {
                    0
                },
            };
            self.buf.extend_from_slice(&header.encode(op.key));
            self.buf.extend_from_slice(op.key);
            let value_offset = offset + (RECORD_HEADER_BYTES + op.key.len()) as u64;
            self.put_value(op.value, &mut write_at)?;
            self.buf
                .extend_from_slice(&checksum(op.value).to_le_bytes());
            positions.push(WalPos {
                segment: self.seg.id,
                value_offset,
                value_len: op.value.len() as u32,
            });
            offset += header.record_len();
        }
        flush(&self.seg, &mut self.buf, &mut write_at)?;
        debug_assert_eq!(write_at, offset);
        Ok((positions, offset))
    }

    /// Buffers `value`, or, if it would overflow the buffer, flushes and writes it directly so
    /// that a large value is not copied.
    fn put_value(&mut self, value: &[u8], write_at: &mut u64) -> Result<()> {
        if self.buf.len() + value.len() > WAL_WRITE_BUFFER_BYTES {
            flush(&self.seg, &mut self.buf, write_at)?;
            self.seg
                .file()?
                .write_all_at(value, *write_at)
                .map_err(|e| Error::io("writing", &self.seg.path, e))?;
            *write_at += value.len() as u64;
        } else {
            self.buf.extend_from_slice(value);
        }
        Ok(())
    }
}

impl FileWal {
    fn fail(&self, w: &mut Writer, e: Error) -> Error {
        if w.failed.is_none() {
            let kind = match &e {
                Error::Io { source, .. } => source.kind(),
                _ => std::io::ErrorKind::Other,
            };
            w.failed = Some((kind, e.to_string()));
        }
        e
    }

    fn segment(&self, id: SegmentId) -> Result<Arc<Segment>> {
        self.segments.read().get(&id).cloned().ok_or_else(|| {
            Error::corrupt(
                self.dir.join(segment_file_name(id)),
                0,
                "WAL position",
                "refers to a segment that is not open",
            )
        })
    }

    fn value_error(seg: &Segment, pos: WalPos, expected: u64, actual: u64) -> Error {
        Error::ChecksumMismatch {
            file: seg.path.clone(),
            offset: pos.value_offset,
            what: "WAL value",
            expected,
            actual,
        }
    }
}

impl Wal for FileWal {
    fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        floor: SegmentId,
        values: &[SegmentId],
        last_seq: SeqNo,
        events: Arc<dyn EventSink>,
        replay: &mut dyn FnMut(RecoveredRecord<'_>) -> Result<()>,
    ) -> Result<FileWal> {
        let ids = list_segments(fs.as_ref(), dir, floor, values, &*events)?;
        let mut segments = BTreeMap::new();
        for &id in values {
            let seg = open_value_file(&fs, dir, id)?;
            // No descriptor held: the next read (a collection) reopens it.
            seg.release();
            segments.insert(id, Arc::new(seg));
        }
        let mut max_seq = last_seq;
        let mut bytes_read = 0;
        let mut active: Option<(Arc<Segment>, u64)> = None;
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let (seg, end, read) =
                recover_segment(&fs, dir, id, newest, &*events, &mut max_seq, replay)?;
            bytes_read += read;
            let seg = Arc::new(seg);
            segments.insert(id, seg.clone());
            if newest {
                active = Some((seg, end.max(SEGMENT_HEADER_BYTES as u64)));
            }
        }
        let (seg, len) = match active {
            Some(a) => a,
            None => {
                let id = SegmentId(floor.0.max(1));
                let seg = Arc::new(create_segment(&fs, dir, id)?);
                segments.insert(id, seg.clone());
                (seg, SEGMENT_HEADER_BYTES as u64)
            }
        };
        let synced = (seg.id, len);
        Ok(FileWal {
            fs,
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                seg,
                len,
                buf: Vec::new(),
                next_seq: max_seq.next(),
                failed: None,
            }),
            segments: RwLock::new(segments),
            synced: Mutex::new(synced),
            recovery_bytes_read: bytes_read,
        })
    }

    fn append(&self, ops: &[OpRef<'_>]) -> Result<Appended> {
        let mut guard = self.writer.lock();
        let w = &mut *guard;
        w.check_usable("appending to")?;
        let first_seq = w.next_seq;
        let (positions, end) = match w.write_batch(ops) {
            Ok(written) => written,
            Err(e) => {
                w.buf.clear();
                return Err(self.fail(w, e));
            }
        };
        // An idle shard holds no buffer: a history node has thousands of finished shards.
        w.buf = Vec::new();
        w.len = end;
        w.next_seq = SeqNo(first_seq.0 + ops.len() as u64);
        Ok(Appended {
            first_seq,
            positions,
        })
    }

    fn sync(&self) -> Result<()> {
        let target = {
            let w = self.writer.lock();
            w.check_usable("syncing")?;
            (w.seg.id, w.len)
        };
        let mut synced = self.synced.lock();
        if *synced >= target {
            return Ok(()); // another caller's sync covered this one
        }
        if target.1 == SEGMENT_HEADER_BYTES as u64 {
            // A segment holding only its header, which was synced when it was made: nothing
            // to sync, and no reason to reopen a file that was released.
            *synced = target;
            return Ok(());
        }
        let (seg, len) = {
            let w = self.writer.lock();
            (w.seg.clone(), w.len)
        };
        if let Err(e) = seg.file()?.sync_data() {
            let e = Error::io("syncing", &seg.path, e);
            let mut w = self.writer.lock();
            return Err(self.fail(&mut w, e));
        }
        *synced = (seg.id, len);
        Ok(())
    }

    fn rotate(&self) -> Result<SegmentId> {
        let mut w = self.writer.lock();
        w.check_usable("rotating")?;
        if let Err(e) = w.seg.file()?.sync_data() {
            let e = Error::io("syncing", &w.seg.path, e);
            return Err(self.fail(&mut w, e));
        }
        let id = w.seg.id.next();
        let seg = match create_segment(&self.fs, &self.dir, id) {
            Ok(s) => Arc::new(s),
            Err(e) => return Err(self.fail(&mut w, e)),
        };
        self.segments.write().insert(id, seg.clone());
        w.seg = seg;
        w.len = SEGMENT_HEADER_BYTES as u64;
        Ok(id)
    }

    fn active_segment(&self) -> SegmentId {
        self.writer.lock().seg.id
    }

    fn read_value(&self, pos: WalPos) -> Result<Vec<u8>> {
        let seg = self.segment(pos.segment)?;
        let mut buf = vec![0u8; pos.value_len as usize + VALUE_CHECKSUM_BYTES];
        seg.file()?
            .read_exact_at(&mut buf, pos.value_offset)
            .map_err(|e| Error::io("reading", &seg.path, e))?;
        let (value, sum) = buf.split_at(pos.value_len as usize);
        let expected = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
        let actual = checksum(value);
        if expected != actual {
            return Err(Self::value_error(&seg, pos, expected, actual));
        }
        buf.truncate(pos.value_len as usize);
        Ok(buf)
    }

    fn value_checksum(&self, pos: WalPos) -> Result<u64> {
        let seg = self.segment(pos.segment)?;
        let mut sum = [0u8; VALUE_CHECKSUM_BYTES];
        seg.file()?
            .read_exact_at(&mut sum, pos.value_offset + pos.value_len as u64)
            .map_err(|e| Error::io("reading", &seg.path, e))?;
        Ok(u64::from_le_bytes(sum))
    }

    fn load_segment(&self, segment: SegmentId, max_bytes: u64) -> Result<Option<LoadedSegment>> {
        let seg = self.segment(segment)?;
        let file = seg.file()?;
        let len = file
            .size()
            .map_err(|e| Error::io("reading the length of", &seg.path, e))?;
        if len > max_bytes {
            return Ok(None);
        }
        let map = file.map().map_err(|e| Error::io("mapping", &seg.path, e))?;
        Ok(Some(LoadedSegment {
            path: seg.path.clone(),
            map,
        }))
    }

    fn copy_value(
        &self,
        pos: WalPos,
        chunk: &mut [u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let seg = self.segment(pos.segment)?;
        let len = pos.value_len as usize;
        if len + VALUE_CHECKSUM_BYTES <= chunk.len() {
            // A value that fits the chunk with its checksum: one read.
            let buf = &mut chunk[..len + VALUE_CHECKSUM_BYTES];
            seg.file()?
                .read_exact_at(buf, pos.value_offset)
                .map_err(|e| Error::io("reading", &seg.path, e))?;
            let (value, sum) = buf.split_at(len);
            let expected = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
            let actual = checksum(value);
            if expected != actual {
                return Err(Self::value_error(&seg, pos, expected, actual));
            }
            return sink(value);
        }
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut at = pos.value_offset;
        let mut left = pos.value_len as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            seg.file()?
                .read_exact_at(&mut chunk[..n], at)
                .map_err(|e| Error::io("reading", &seg.path, e))?;
            hash.update(&chunk[..n]);
            sink(&chunk[..n])?;
            at += n as u64;
            left -= n;
        }
        let mut sum = [0u8; VALUE_CHECKSUM_BYTES];
        seg.file()?
            .read_exact_at(&mut sum, at)
            .map_err(|e| Error::io("reading", &seg.path, e))?;
        let expected = u64::from_le_bytes(sum);
        let actual = hash.digest();
        if expected != actual {
            return Err(Self::value_error(&seg, pos, expected, actual));
        }
        Ok(())
    }

    fn release_files(&self) -> usize {
        // Lock order as in `sync`: `synced` is read before `writer` is taken, never inside it.
        let synced = *self.synced.lock();
        let w = self.writer.lock();
        if w.failed.is_some() {
            return 0; // keep the descriptor the failure was reported on until reopen
        }
        self.segments
            .read()
            .values()
            // Frozen segments were synced when they were rotated out; a new segment's header
            // was synced when it was made.
            .filter(|s| {
                s.id != w.seg.id
                    || synced >= (w.seg.id, w.len)
                    || w.len == SEGMENT_HEADER_BYTES as u64
            })
            .filter(|s| s.release())
            .count()
    }

    fn remove_segment(&self, segment: SegmentId) -> Result<()> {
        debug_assert!(
            segment != self.active_segment(),
            "removing the active segment"
        );
        if let Some(seg) = self.segments.write().remove(&segment) {
            self.fs
                .remove_file(&seg.path)
                .map_err(|e| Error::io("removing", &seg.path, e))?;
        }
        Ok(())
    }

    fn stats(&self) -> WalStats {
        // Writer before segments, as in `rotate`.
        let (active_id, active_len) = {
            let w = self.writer.lock();
            (w.seg.id, w.len)
        };
        let segs = self.segments.read();
        let bytes = segs
            .values()
            .map(|s| {
                if s.id == active_id {
                    active_len
                } else {
                    self.fs.metadata(&s.path).map(|m| m.len).unwrap_or(0)
                }
            })
            .sum();
        WalStats {
            segments: segs.len() as u64,
            bytes,
            recovery_bytes_read: self.recovery_bytes_read,
        }
    }
}

fn flush(seg: &Segment, buf: &mut Vec<u8>, write_at: &mut u64) -> Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    seg.file()?
        .write_all_at(buf, *write_at)
        .map_err(|e| Error::io("writing", &seg.path, e))?;
    *write_at += buf.len() as u64;
    buf.clear();
    Ok(())
}
