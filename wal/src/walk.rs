//! Recovery's walk over one segment: headers and keys only, values skipped by offset. Works on
//! anything readable at an offset (a file, or bytes in memory for the fuzzer).

use std::path::Path;

use strata_engine::{Error, Result, SegmentId, WalPos, MAX_BATCH_OPS, WAL_RECOVERY_WINDOW_BYTES};

use crate::format::{
    check_segment_header, decode_fields, verify_checksum, HeaderProblem, RecordHeader,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

/// Something recovery can read at an offset.
pub trait ReadAt {
    /// Length in bytes.
    fn byte_len(&self) -> u64;
    /// Fills `buf` from `offset`; the range is within `byte_len()`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl ReadAt for [u8] {
    fn byte_len(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = offset as usize;
        buf.copy_from_slice(&self[start..start + buf.len()]);
        Ok(())
    }
}

/// A file and its length at open.
pub struct FileAt<'a> {
    /// The file.
    pub file: &'a dyn strata_engine::FsFile,
    /// Its length.
    pub len: u64,
}

impl ReadAt for FileAt<'_> {
    fn byte_len(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// A read window over a [`ReadAt`]: reads [`WAL_RECOVERY_WINDOW_BYTES`] at a time and counts the
/// bytes it read.
struct Window<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    path: &'a Path,
    buf: Vec<u8>,
    start: u64,
    bytes_read: u64,
}

impl<'a, R: ReadAt + ?Sized> Window<'a, R> {
    /// An empty window over `src`; `path` names it in errors.
    fn new(src: &'a R, path: &'a Path) -> Self {
        Window {
            src,
            path,
            buf: Vec::new(),
            start: 0,
            bytes_read: 0,
        }
    }

    /// `len` bytes at `offset`, or `None` when the source ends first.
    fn get(&mut self, offset: u64, len: usize) -> Result<Option<&[u8]>> {
        let total = self.src.byte_len();
        if offset.checked_add(len as u64).is_none_or(|end| end > total) {
            return Ok(None);
        }
        let have =
            offset >= self.start && offset + len as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let n = (len.max(WAL_RECOVERY_WINDOW_BYTES) as u64).min(total - offset) as usize;
            self.buf.resize(n, 0);
            self.src
                .read_exact_at(&mut self.buf, offset)
                .map_err(|e| Error::io("reading", self.path, e))?;
            self.start = offset;
            self.bytes_read += n as u64;
        }
        let at = (offset - self.start) as usize;
        Ok(Some(&self.buf[at..at + len]))
    }
}

/// How a segment ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// At a batch boundary, at the end of the file.
    Clean,
    /// Cut short: a header, key or value runs past the end, or the last batch is incomplete.
    /// Everything from `good_end` on belongs to no complete batch.
    Torn,
    /// A record at `at` is invalid.
    Damaged {
        /// Offset of the bad record.
        at: u64,
        /// What is wrong.
        detail: String,
    },
}

/// Result of walking a segment.
#[derive(Clone, Debug)]
pub struct Walked {
    /// End of the last complete batch.
    pub good_end: u64,
    /// How the segment ended.
    pub ending: Ending,
    /// Bytes read from the source.
    pub bytes_read: u64,
}

/// One record found by the walk.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its header.
    pub header: RecordHeader,
    /// Its key.
    pub key: Vec<u8>,
    /// Where its value is.
    pub pos: WalPos,
}

/// Walks segment `segment` of `src`, calling `visit` for each record of each complete batch,
/// in order. Reads headers and keys only. A segment shorter than its header is `Torn` with
/// `good_end` 0; a bad segment header is an error.
pub fn walk_segment<R: ReadAt + ?Sized>(
    src: &R,
    path: &Path,
    segment: SegmentId,
    visit: &mut dyn FnMut(&Found) -> Result<()>,
) -> Result<Walked> {
    let mut w = Window::new(src, path);
    let Some(h) = w.get(0, SEGMENT_HEADER_BYTES)? else {
        return Ok(Walked {
            good_end: 0,
            ending: Ending::Torn,
            bytes_read: w.bytes_read,
        });
    };
    check_segment_header(h, path, segment.0)?;
    walk_records(w, SEGMENT_HEADER_BYTES as u64, segment, visit)
}

/// [`walk_segment`] from `start`, taken as a record start, without checking the segment
/// header: for salvage tools that resume after damage.
pub fn walk_records_from<R: ReadAt + ?Sized>(
    src: &R,
    path: &Path,
    segment: SegmentId,
    start: u64,
    visit: &mut dyn FnMut(&Found) -> Result<()>,
) -> Result<Walked> {
    walk_records(Window::new(src, path), start, segment, visit)
}

fn walk_records<R: ReadAt + ?Sized>(
    mut w: Window<'_, R>,
    start: u64,
    segment: SegmentId,
    visit: &mut dyn FnMut(&Found) -> Result<()>,
) -> Result<Walked> {
    let src = w.src;
    let len = src.byte_len();
    let mut offset = start;
    let mut good_end = offset;
    // Records of the current batch: visited only once the batch is known to be complete.
    let mut pending: Vec<Found> = Vec::new();
    let ending = loop {
        if offset == len {
            break if pending.is_empty() {
                Ending::Clean
            } else {
                Ending::Torn
            };
        }
        let found = match read_record(&mut w, offset, segment, pending.len())? {
            Next::Record(found) => found,
            Next::End(ending) => break ending,
        };
        let header = found.header;
        pending.push(found);
        offset += header.record_len();
        if !header.continues() {
            for f in pending.drain(..) {
                visit(&f)?;
            }
            good_end = offset;
        }
    };
    Ok(Walked {
        good_end,
        ending,
        bytes_read: w.bytes_read,
    })
}

/// What [`read_record`] found at an offset.
enum Next {
    /// An intact record.
    Record(Found),
    /// No record here: how the segment ends.
    End(Ending),
}

/// Reads and checks the record at `offset`, after `batched` records of its batch: header fields
/// before the key length is trusted, then the checksum over header and key, then that the whole
/// record fits in the source.
fn read_record<R: ReadAt + ?Sized>(
    w: &mut Window<'_, R>,
    offset: u64,
    segment: SegmentId,
    batched: usize,
) -> Result<Next> {
    let damaged = |detail: String| Next::End(Ending::Damaged { at: offset, detail });
    let len = w.src.byte_len();
    let Some(h) = w.get(offset, RECORD_HEADER_BYTES)? else {
        return Ok(Next::End(Ending::Torn));
    };
    let h: [u8; RECORD_HEADER_BYTES] = h.try_into().expect("header length");
    let header = match decode_fields(&h) {
        Ok(header) => header,
        Err(p) => return Ok(damaged(describe(p))),
    };
    let Some(key) = w.get(offset + RECORD_HEADER_BYTES as u64, header.key_len as usize)? else {
        return Ok(Next::End(Ending::Torn));
    };
    if let Err(p) = verify_checksum(&h, key) {
        return Ok(damaged(describe(p)));
    }
    if offset + header.record_len() > len {
        return Ok(Next::End(Ending::Torn));
    }
    if batched >= MAX_BATCH_OPS {
        return Ok(damaged(format!(
            "batch longer than {MAX_BATCH_OPS} records"
        )));
    }
    let value_offset = offset + RECORD_HEADER_BYTES as u64 + u64::from(header.key_len);
    Ok(Next::Record(Found {
        header,
        key: key.to_vec(),
        pos: WalPos {
            segment,
            value_offset,
            value_len: header.value_len,
        },
    }))
}

fn describe(p: HeaderProblem) -> String {
    match p {
        HeaderProblem::Invalid(d) => format!("invalid record header: {d}"),
        HeaderProblem::Checksum { expected, actual } => {
            format!(
                "record header checksum mismatch: stored {expected:#018x}, computed {actual:#018x}"
            )
        }
    }
}

/// Whether any intact record header (fields plausible, checksum over header and key right)
/// starts in `(from, len)`. Distinguishes a torn tail (nothing intact after the damage) from
/// damage in the middle of the log.
pub fn intact_header_after<R: ReadAt + ?Sized>(src: &R, path: &Path, from: u64) -> Result<bool> {
    Ok(next_intact_header(src, path, from)?.is_some())
}

/// The first offset in `(from, len)` where an intact record header starts, if any.
pub fn next_intact_header<R: ReadAt + ?Sized>(
    src: &R,
    path: &Path,
    from: u64,
) -> Result<Option<u64>> {
    let len = src.byte_len();
    let mut w = Window::new(src, path);
    let mut at = from + 1;
    while at + RECORD_HEADER_BYTES as u64 <= len {
        let h: [u8; RECORD_HEADER_BYTES] = w
            .get(at, RECORD_HEADER_BYTES)?
            .expect("in range")
            .try_into()
            .expect("header length");
        if let Ok(header) = decode_fields(&h) {
            if let Some(key) = w.get(at + RECORD_HEADER_BYTES as u64, header.key_len as usize)? {
                if verify_checksum(&h, key).is_ok() {
                    return Ok(Some(at));
                }
            }
        }
        at += 1;
    }
    Ok(None)
}

/// Checks a whole segment image in memory (as segment `segment`): walks it, then reads and
/// checks every recovered value. Returns the number of intact records and how the segment
/// ended. Used by the fuzzer and by verification.
pub fn check_segment_bytes(bytes: &[u8], path: &Path, segment: SegmentId) -> Result<(u64, Ending)> {
    let mut found = Vec::new();
    let walked = walk_segment(bytes, path, segment, &mut |f| {
        found.push(f.pos);
        Ok(())
    })?;
    for pos in &found {
        let start = pos.value_offset as usize;
        let end = start + pos.value_len as usize;
        let value = &bytes[start..end];
        let sum: [u8; 8] = bytes[end..end + 8]
            .try_into()
            .expect("walk checked the record length");
        let expected = u64::from_le_bytes(sum);
        let actual = strata_engine::checksum(value);
        if expected != actual {
            return Err(Error::ChecksumMismatch {
                file: path.into(),
                offset: pos.value_offset,
                what: "WAL value",
                expected,
                actual,
            });
        }
    }
    Ok((found.len() as u64, walked.ending))
}
