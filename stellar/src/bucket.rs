//! Streaming bucket files: [`BucketReader`] and [`BucketWriter`].
//!
//! A bucket is a stream of XDR `BucketEntry` records, each preceded by a 4-byte big-endian
//! record mark (RFC 5531 record marking): the high bit set (last fragment), the low 31 bits
//! the record's length. Its name is the SHA-256 of those bytes, marks included. Archives store
//! buckets gzipped; the reader accepts either form (it looks for the gzip magic number).
//!
//! The reader holds one record at a time (at most [`crate::MAX_RECORD_BYTES`] bytes plus its
//! encoded key), checks each record mark, decodes each record fully, checks that keys strictly
//! increase in `LedgerEntryIdCmp` order (by comparing [`crate::key`] encodings), and at the end
//! of the stream checks the SHA-256 when the caller knows what it must be. It never re-encodes
//! an entry: [`Record::xdr`] is the record's original bytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use stellar_xdr::{BucketEntry, Limits, ReadXdr};

use crate::error::{Error, Result};
use crate::key::{encode_entry_key, encode_key};
use crate::{MAX_RECORD_BYTES, READ_BUFFER_BYTES, XDR_DEPTH_LIMIT};

/// Bytes of a record mark.
pub const MARK_BYTES: usize = 4;

/// The high bit of a record mark: this is the last (here: only) fragment of the record.
const LAST_FRAGMENT: u32 = 0x8000_0000;

/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The name of the empty bucket (it has no file and no bytes).
pub const EMPTY_BUCKET: [u8; 32] = [0; 32];

/// The kind of a bucket entry, with its XDR discriminant (`BucketEntryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// `LIVEENTRY` (0): the entry's value.
    Live,
    /// `DEADENTRY` (1): a tombstone; carries a `LedgerKey`.
    Dead,
    /// `INITENTRY` (2): the entry's value, created since the entry was last dead.
    Init,
}

impl EntryKind {
    /// The XDR discriminant.
    pub fn tag(self) -> i32 {
        match self {
            EntryKind::Live => 0,
            EntryKind::Dead => 1,
            EntryKind::Init => 2,
        }
    }

    /// The kind of a `BucketEntry`'s XDR bytes, from their first four bytes (`None` for a
    /// METAENTRY or bytes that start with no known discriminant).
    pub fn of_xdr(xdr: &[u8]) -> Option<EntryKind> {
        match xdr.get(..4)? {
            [0, 0, 0, 0] => Some(EntryKind::Live),
            [0, 0, 0, 1] => Some(EntryKind::Dead),
            [0, 0, 0, 2] => Some(EntryKind::Init),
            _ => None,
        }
    }
}

/// A bucket's METAENTRY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketMeta {
    /// `ledgerVersion`: the protocol version the bucket was written with.
    pub ledger_version: u32,
    /// The original XDR bytes of the metadata's `ext` union (discriminant included).
    pub ext: Vec<u8>,
}

impl BucketMeta {
    /// The `ext` union's discriminant (0 or 1).
    pub fn ext_version(&self) -> i32 {
        self.ext
            .get(..4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("four bytes")))
            .unwrap_or(0)
    }

    /// The `ext`'s `bucketListType` (0: live, 1: hot archive) when the extension is v1.
    pub fn list_type(&self) -> Option<i32> {
        (self.ext_version() == 1)
            .then(|| self.ext.get(4..8))
            .flatten()
            .map(|b| i32::from_be_bytes(b.try_into().expect("four bytes")))
    }

    /// The METAENTRY record: discriminant -1, `ledgerVersion`, then the ext bytes.
    pub fn record(&self) -> Vec<u8> {
        let mut r = Vec::with_capacity(8 + self.ext.len());
        r.extend_from_slice(&(-1i32).to_be_bytes());
        r.extend_from_slice(&self.ledger_version.to_be_bytes());
        r.extend_from_slice(&self.ext);
        r
    }
}

/// One record of a bucket, borrowed from its reader.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// LIVE, INIT or DEAD.
    pub kind: EntryKind,
    /// The order-preserving encoding of the entry's `LedgerKey` ([`crate::key`]).
    pub key: &'a [u8],
    /// The record's original XDR bytes (a `BucketEntry`: discriminant, then the payload).
    pub xdr: &'a [u8],
    /// Offset of the record's mark in the uncompressed stream.
    pub offset: u64,
}

impl<'a> Record<'a> {
    /// The payload: a `LedgerEntry` (LIVE, INIT) or a `LedgerKey` (DEAD), original bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.xdr[4..]
    }
}

/// Reads a bucket file record by record. See the [module documentation](self).
pub struct BucketReader {
    path: PathBuf,
    input: Box<dyn Read + Send>,
    gzip: bool,
    /// Offset of the next record mark.
    offset: u64,
    hasher: Sha256,
    expected: Option<[u8; 32]>,
    hash: Option<[u8; 32]>,
    record: Vec<u8>,
    key: Vec<u8>,
    prev_key: Vec<u8>,
    current: Option<(EntryKind, u64)>,
    /// The first record was read by `open` and is not yet returned.
    primed: bool,
    meta: Option<BucketMeta>,
    records: u64,
}

impl std::fmt::Debug for BucketReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketReader")
            .field("path", &self.path)
            .field("gzip", &self.gzip)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl BucketReader {
    /// Opens a bucket file, plain or gzipped, and reads its first record. With `expected`,
    /// the end of the stream is checked against that SHA-256 (a bucket's name).
    pub fn open(path: &Path, expected: Option<[u8; 32]>) -> Result<BucketReader> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        // Checked before opening: opening a FIFO would block.
        let meta = std::fs::metadata(path).map_err(io_err)?;
        if !meta.is_file() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"),
            });
        }
        let file = File::open(path).map_err(io_err)?;
        Self::from_reader(path, file, expected)
    }

    /// A reader over the empty bucket (no file, no records).
    pub fn empty() -> BucketReader {
        Self::from_reader(Path::new("<empty bucket>"), io::empty(), None)
            .expect("an empty stream has nothing to check")
    }

    /// A reader over an already opened stream of bucket bytes, plain or gzipped (detected by
    /// the gzip magic number), and reads its first record; `path` names it in errors.
    pub fn from_reader(
        path: &Path,
        input: impl Read + Send + 'static,
        expected: Option<[u8; 32]>,
    ) -> Result<BucketReader> {
        let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, input);
        let head = buffered.fill_buf().map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let gzip = head.starts_with(&GZIP_MAGIC);
        let input: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut reader = BucketReader {
            path: path.to_path_buf(),
            input,
            gzip,
            offset: 0,
            hasher: Sha256::new(),
            expected,
            hash: None,
            record: Vec::new(),
            key: Vec::new(),
            prev_key: Vec::new(),
            current: None,
            primed: true,
            meta: None,
            records: 0,
        };
        reader.read_next()?;
        Ok(reader)
    }

    /// The bucket's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The METAENTRY, if the bucket has one (it is always the first record).
    pub fn meta(&self) -> Option<&BucketMeta> {
        self.meta.as_ref()
    }

    /// The protocol version of the bucket: its METAENTRY's, or 0 without one.
    pub fn ledger_version(&self) -> u32 {
        self.meta.as_ref().map_or(0, |m| m.ledger_version)
    }

    /// Moves to the next entry (METAENTRY excluded); false at the end of the stream, after
    /// the hash check.
    pub fn advance(&mut self) -> Result<bool> {
        if self.primed {
            self.primed = false;
        } else {
            self.read_next()?;
        }
        Ok(self.current.is_some())
    }

    /// The entry [`advance`](Self::advance) moved to.
    pub fn current(&self) -> Option<Record<'_>> {
        self.current.map(|(kind, offset)| Record {
            kind,
            key: &self.key,
            xdr: &self.record,
            offset,
        })
    }

    /// Reads the next entry and returns it; `None` at the end of the stream.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>> {
        self.advance()?;
        Ok(self.current())
    }

    /// Entries read so far (METAENTRY excluded).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Uncompressed bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The SHA-256 of the stream, once the end has been reached.
    pub fn hash(&self) -> Option<[u8; 32]> {
        self.hash
    }

    /// Reads to the end of the stream (checking every record) and returns its SHA-256.
    pub fn finish(mut self) -> Result<[u8; 32]> {
        while self.advance()? {}
        Ok(self.hash.expect("the end was reached"))
    }

    fn read_err(&self, source: io::Error) -> Error {
        if self.gzip {
            Error::Gzip {
                bucket: self.path.clone(),
                offset: self.offset,
                source,
            }
        } else {
            Error::Io {
                path: self.path.clone(),
                source,
            }
        }
    }

    /// Reads up to `buf.len()` bytes; returns how many (fewer only at the end of the stream).
    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.input.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.read_err(e)),
            }
        }
        Ok(got)
    }

    fn read_next(&mut self) -> Result<()> {
        self.current = None;
        if self.hash.is_some() {
            return Ok(());
        }
        loop {
            let at = self.offset;
            let mut mark = [0u8; MARK_BYTES];
            let got = self.read_full(&mut mark)?;
            if got == 0 {
                return self.end();
            }
            if got < MARK_BYTES {
                return Err(Error::ShortRecord {
                    bucket: self.path.clone(),
                    offset: at,
                    wanted: MARK_BYTES as u64,
                    found: got as u64,
                });
            }
            let mark_value = u32::from_be_bytes(mark);
            if mark_value & LAST_FRAGMENT == 0 {
                return Err(Error::BadMark {
                    bucket: self.path.clone(),
                    offset: at,
                    mark: mark_value,
                });
            }
            let len = mark_value & !LAST_FRAGMENT;
            if len > MAX_RECORD_BYTES {
                return Err(Error::RecordTooLarge {
                    bucket: self.path.clone(),
                    offset: at,
                    len,
                    limit: MAX_RECORD_BYTES,
                });
            }
            let mut record = std::mem::take(&mut self.record);
            record.clear();
            let read = (&mut self.input)
                .take(u64::from(len))
                .read_to_end(&mut record);
            self.record = record;
            if let Err(e) = read {
                return Err(self.read_err(e));
            }
            if self.record.len() < len as usize {
                return Err(Error::ShortRecord {
                    bucket: self.path.clone(),
                    offset: at,
                    wanted: MARK_BYTES as u64 + u64::from(len),
                    found: (MARK_BYTES + self.record.len()) as u64,
                });
            }
            self.hasher.update(mark);
            self.hasher.update(&self.record);
            self.offset += MARK_BYTES as u64 + u64::from(len);
            if self.decode(at)? {
                return Ok(());
            }
        }
    }

    /// Decodes the record in `self.record`; true if it is an entry, false if it was the
    /// METAENTRY.
    fn decode(&mut self, at: u64) -> Result<bool> {
        let limits = Limits {
            depth: XDR_DEPTH_LIMIT,
            len: self.record.len(),
        };
        let entry =
            BucketEntry::from_xdr(&self.record, limits).map_err(|e| Error::Undecodable {
                bucket: self.path.clone(),
                offset: at,
                reason: e.to_string(),
            })?;
        std::mem::swap(&mut self.key, &mut self.prev_key);
        self.key.clear();
        let kind = match &entry {
            BucketEntry::Metaentry(m) => {
                if self.records > 0 || self.meta.is_some() {
                    return Err(Error::MisplacedMeta {
                        bucket: self.path.clone(),
                        offset: at,
                    });
                }
                self.meta = Some(BucketMeta {
                    ledger_version: m.ledger_version,
                    ext: self.record[8..].to_vec(),
                });
                std::mem::swap(&mut self.key, &mut self.prev_key);
                return Ok(false);
            }
            BucketEntry::Liveentry(e) => {
                encode_entry_key(&e.data, &mut self.key);
                EntryKind::Live
            }
            BucketEntry::Initentry(e) => {
                encode_entry_key(&e.data, &mut self.key);
                EntryKind::Init
            }
            BucketEntry::Deadentry(k) => {
                encode_key(k, &mut self.key);
                EntryKind::Dead
            }
        };
        if self.records > 0 && self.key <= self.prev_key {
            return Err(Error::OutOfOrder {
                bucket: self.path.clone(),
                offset: at,
            });
        }
        self.records += 1;
        self.current = Some((kind, at));
        Ok(true)
    }

    fn end(&mut self) -> Result<()> {
        let hash: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if let Some(expected) = self.expected {
            if expected != hash {
                return Err(Error::HashMismatch {
                    bucket: self.path.clone(),
                    bytes: self.offset,
                    expected: hex::encode(expected),
                    actual: hex::encode(hash),
                });
            }
        }
        self.hash = Some(hash);
        Ok(())
    }
}

/// What a finished [`BucketWriter`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSummary {
    /// The bucket's name: the SHA-256 of its bytes, or [`EMPTY_BUCKET`] when it has none.
    pub hash: [u8; 32],
    /// Bytes written, record marks included.
    pub bytes: u64,
    /// Records written, METAENTRY included.
    pub records: u64,
}

/// Writes an uncompressed bucket file with its own record framing, hashing as it goes. The
/// file appears under its final name only when [`finish`](Self::finish) succeeds (it is written
/// to `<path>.tmp` and renamed).
pub struct BucketWriter {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once [`finish`](Self::finish) has taken it.
    out: Option<BufWriter<File>>,
    /// The file was renamed into place; until then, dropping the writer removes the `.tmp`.
    placed: bool,
    hasher: Sha256,
    bytes: u64,
    records: u64,
}

impl std::fmt::Debug for BucketWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketWriter")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl BucketWriter {
    /// Starts a bucket that will be `path`.
    pub fn create(path: &Path) -> Result<BucketWriter> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // The output replaces only a regular file (never a device, FIFO or link), and the
        // temporary file is new: an existing `<path>.tmp` (an input, or a leftover) is never
        // truncated.
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if !m.is_file() {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "exists and is not a regular file: not replaced",
                    ),
                });
            }
        }
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|source| Error::Io {
                path: tmp.clone(),
                source: if source.kind() == io::ErrorKind::AlreadyExists {
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "exists (an input, or left by an interrupted write: remove it)",
                    )
                } else {
                    source
                },
            })?;
        Ok(BucketWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(READ_BUFFER_BYTES, file)),
            placed: false,
            hasher: Sha256::new(),
            bytes: 0,
            records: 0,
        })
    }

    /// Writes one record from its parts (the record is their concatenation: typically a
    /// 4-byte discriminant and the original payload bytes).
    pub fn put_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_RECORD_BYTES as usize {
            return Err(Error::RecordTooLarge {
                bucket: self.path.clone(),
                offset: self.bytes,
                len: u32::try_from(len).unwrap_or(u32::MAX),
                limit: MAX_RECORD_BYTES,
            });
        }
        let mark = (len as u32 | LAST_FRAGMENT).to_be_bytes();
        self.write(&mark)?;
        for part in parts {
            self.write(part)?;
        }
        self.bytes += (MARK_BYTES + len) as u64;
        self.records += 1;
        Ok(())
    }

    /// Writes one record (a whole `BucketEntry`'s XDR bytes).
    pub fn put(&mut self, xdr: &[u8]) -> Result<()> {
        self.put_parts(&[xdr])
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        let out = self.out.as_mut().expect("taken only by finish");
        out.write_all(bytes).map_err(|source| Error::Io {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes, syncs and renames the file into place. (A writer dropped without finishing,
    /// after an error, removes its `.tmp` file.)
    pub fn finish(mut self) -> Result<BucketSummary> {
        let out = self.out.take().expect("finish runs once");
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .map_err(|source| Error::Io {
                path: self.tmp.clone(),
                source,
            })?;
        std::fs::rename(&self.tmp, &self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        self.placed = true;
        let hash = if self.records == 0 {
            EMPTY_BUCKET
        } else {
            std::mem::take(&mut self.hasher).finalize().into()
        };
        Ok(BucketSummary {
            hash,
            bytes: self.bytes,
            records: self.records,
        })
    }
}

impl Drop for BucketWriter {
    fn drop(&mut self) {
        // Not placed (an error on the way, in `finish` too, or the merge that fed it failed):
        // the half-written file goes, so nothing is left beside the output a caller named.
        if !self.placed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
