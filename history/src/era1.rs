//! era1, Ethereum's history archive (one file per era of up to 8,192 blocks), read as a
//! stream, and its import into a [`HistoryStore`].
//!
//! An era1 file is an e2store file: TLV records, each an 8-byte header (type u16 LE, length
//! u32 LE, two reserved zero bytes) and its data. Records, in order: the version (`65 32`,
//! empty); per block a compressed header (`03 00`), body (`04 00`) and receipts (`05 00`),
//! each snappy *framed* RLP, and the total difficulty (`06 00`, 32 bytes LE); the accumulator
//! (`07 00`, 32 bytes); the block index (`66 32`: first block number u64 LE, one i64 LE
//! offset per block from the index record's start to the block's header record, the count
//! u64 LE).
//!
//! [`Era1Reader`] reads the block index first (from the end of the file), then streams the
//! blocks and checks, for every block: the record order and framing, that its header record
//! is where the index says, that header, body and receipts decompress to one RLP list each
//! that spans the bytes exactly, and that the header's number is the index's. It holds one
//! block (at most [`MAX_E2STORE_RECORD_BYTES`] compressed and [`MAX_BLOCK_PART_BYTES`]
//! decompressed per part) and the index (8 bytes per block).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Block, Error, HistoryStore, Result, BODY, HEADER, RECEIPTS};

/// Most blocks in one era1 file (an era).
pub const MAX_ERA1_BLOCKS: u64 = 8192;
/// Largest e2store record read (compressed bytes).
pub const MAX_E2STORE_RECORD_BYTES: u32 = 64 << 20;
/// Largest decompressed header, body or receipts (the engine's largest value).
pub const MAX_BLOCK_PART_BYTES: usize = strata::MAX_VALUE_BYTES;
/// Bytes of blocks an import gathers into one write batch.
pub const IMPORT_BATCH_BYTES: usize = 4 << 20;
/// Shards one import batch may span: each shard written holds its WAL file open until it is
/// sealed, so a batch of small blocks in narrow shards must not touch hundreds at once.
pub const IMPORT_BATCH_SHARDS: u64 = 8;
/// Read buffer of an era1 file.
pub const READ_BUFFER_BYTES: usize = 64 << 10;

const VERSION_RECORD: [u8; 8] = [0x65, 0x32, 0, 0, 0, 0, 0, 0];
const COMPRESSED_HEADER: u16 = 0x03;
const COMPRESSED_BODY: u16 = 0x04;
const COMPRESSED_RECEIPTS: u16 = 0x05;
const TOTAL_DIFFICULTY: u16 = 0x06;
const ACCUMULATOR: u16 = 0x07;
const BLOCK_INDEX: u16 = 0x3266;
const RECORD_HEADER_BYTES: u64 = 8;

/// One block of an era1 file, decompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Era1Block {
    /// Block number.
    pub number: u64,
    /// Header RLP.
    pub header: Vec<u8>,
    /// Body RLP (`[transactions, uncles]`, and withdrawals where the fork has them).
    pub body: Vec<u8>,
    /// Receipts RLP.
    pub receipts: Vec<u8>,
    /// Total difficulty after this block, 32 bytes little-endian.
    pub total_difficulty: [u8; 32],
}

/// A streaming reader of one era1 file.
#[derive(Debug)]
pub struct Era1Reader {
    path: PathBuf,
    file: BufReader<File>,
    /// Offset of the next record.
    pos: u64,
    /// Offset of the block index record.
    index_at: u64,
    start: u64,
    offsets: Vec<u64>,
    next: usize,
    compressed: Vec<u8>,
}

impl Era1Reader {
    /// Opens `path`: checks the version record and reads the block index.
    pub fn open(path: &Path) -> Result<Era1Reader> {
        let file = File::open(path).map_err(|e| io_err("opening", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| io_err("reading metadata of", path, e))?
            .len();
        let mut r = Era1Reader {
            path: path.into(),
            file: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            pos: 0,
            index_at: 0,
            start: 0,
            offsets: Vec::new(),
            next: 0,
            compressed: Vec::new(),
        };
        let mut first = [0u8; 8];
        if len < RECORD_HEADER_BYTES || r.read_exact(&mut first).is_err() || first != VERSION_RECORD
        {
            return Err(r.bad(
                0,
                "not an era1 file: it does not start with the e2store version record \
                 (65 32 00 00 00 00 00 00)"
                    .into(),
            ));
        }
        r.read_index(len).map_err(|e| {
            context(
                e,
                "the file does not end with a block index (truncated, or not an era1 file)",
            )
        })?;
        r.seek(RECORD_HEADER_BYTES)?;
        Ok(r)
    }

    /// The first block's number.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Blocks in the file.
    pub fn count(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn bad(&self, offset: u64, detail: String) -> Error {
        Error::Era1 {
            path: self.path.clone(),
            offset,
            detail,
        }
    }

    fn seek(&mut self, to: u64) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(to))
            .map_err(|e| io_err("seeking in", &self.path, e))?;
        self.pos = to;
        Ok(())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.bad(self.pos, "the file ends inside a record".into())
            } else {
                io_err("reading", &self.path, e)
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Reads a record header at the current position: (type, length).
    fn record_header(&mut self) -> Result<(u16, u32)> {
        let at = self.pos;
        let mut h = [0u8; 8];
        self.read_exact(&mut h)?;
        let ty = u16::from_le_bytes([h[0], h[1]]);
        let len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
        if h[6] != 0 || h[7] != 0 {
            return Err(self.bad(
                at,
                format!("record type {ty:#06x} has non-zero reserved bytes"),
            ));
        }
        if len > MAX_E2STORE_RECORD_BYTES {
            return Err(self.bad(
                at,
                format!("record of {len} bytes is over the {MAX_E2STORE_RECORD_BYTES}-byte limit"),
            ));
        }
        Ok((ty, len))
    }

    /// Reads the block index from the end of the file.
    fn read_index(&mut self, file_len: u64) -> Result<()> {
        if file_len < RECORD_HEADER_BYTES + 24 {
            return Err(self.bad(0, format!("{file_len} bytes is too short for an era1 file")));
        }
        self.seek(file_len - 8)?;
        let mut b8 = [0u8; 8];
        self.read_exact(&mut b8)?;
        let count = u64::from_le_bytes(b8);
        let record_len = 16 + 8 * count.min(MAX_ERA1_BLOCKS);
        if count == 0 || count > MAX_ERA1_BLOCKS || record_len + RECORD_HEADER_BYTES > file_len {
            return Err(self.bad(file_len - 8, format!("block index count {count} is not 1 to {MAX_ERA1_BLOCKS} blocks that fit the file")));
        }
        self.index_at = file_len - record_len - RECORD_HEADER_BYTES;
        self.seek(self.index_at)?;
        let (ty, len) = self.record_header()?;
        if ty != BLOCK_INDEX || u64::from(len) != record_len {
            return Err(self.bad(self.index_at, format!("the last record is type {ty:#06x} of {len} bytes, not a block index of {record_len}")));
        }
        self.read_exact(&mut b8)?;
        self.start = u64::from_le_bytes(b8);
        if self.start > crate::MAX_BLOCK_NUMBER + 1 - count {
            return Err(self.bad(
                self.index_at + RECORD_HEADER_BYTES,
                format!(
                    "blocks {} and {count} after it run past the highest block number, {}",
                    self.start,
                    crate::MAX_BLOCK_NUMBER
                ),
            ));
        }
        for i in 0..count {
            self.read_exact(&mut b8)?;
            let rel = i64::from_le_bytes(b8);
            let at = self
                .index_at
                .checked_add_signed(rel)
                .filter(|&a| a < self.index_at);
            match at {
                Some(at) => self.offsets.push(at),
                None => {
                    return Err(self.bad(
                        self.pos - 8,
                        format!("block index offset {rel} of block {i} points outside the blocks"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Reads the data of a record of type `want` (and at most `max` bytes, when given).
    fn record(&mut self, want: u16, what: &str) -> Result<u64> {
        let at = self.pos;
        let (ty, len) = self.record_header()?;
        if ty != want {
            return Err(self.bad(
                at,
                format!("record type {ty:#06x} where the {what} ({want:#06x}) belongs"),
            ));
        }
        self.compressed.resize(len as usize, 0);
        let mut buf = std::mem::take(&mut self.compressed);
        let read = self.read_exact(&mut buf);
        self.compressed = buf;
        read?;
        Ok(at)
    }

    /// Decompresses the record just read (snappy framed) into one RLP list.
    fn decompress(&self, at: u64, what: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let limit = MAX_BLOCK_PART_BYTES as u64 + 1;
        snap::read::FrameDecoder::new(&self.compressed[..])
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|e| self.bad(at, format!("the {what} does not decompress: {e}")))?;
        if out.len() > MAX_BLOCK_PART_BYTES {
            return Err(self.bad(
                at,
                format!("the {what} decompresses to over {MAX_BLOCK_PART_BYTES} bytes"),
            ));
        }
        match rlp_item(&out) {
            Some((true, start, len)) if start + len == out.len() => Ok(out),
            _ => Err(self.bad(at, format!("the {what} is not one RLP list"))),
        }
    }

    /// The next block, or `None` after the last one (once the records between the last block
    /// and the index, which must include the accumulator, are checked).
    pub fn next_block(&mut self) -> Result<Option<Era1Block>> {
        if self.next >= self.offsets.len() {
            return self.finish().map(|()| None);
        }
        let number = self.start + self.next as u64;
        self.block_tuple(number)
            .map(Some)
            .map_err(|e| context(e, &format!("block {number}")))
    }

    /// Reads the records of block `number` (the next one).
    fn block_tuple(&mut self, number: u64) -> Result<Era1Block> {
        let expected_at = self.offsets[self.next];
        if self.pos != expected_at {
            return Err(self.bad(self.pos, format!("block {number}'s header record is at {expected_at} by the block index, but the records put it here")));
        }
        let at = self.record(COMPRESSED_HEADER, "compressed header")?;
        let header = self.decompress(at, "header")?;
        let found = header_number(&header)
            .ok_or_else(|| self.bad(at, "the header has no block number field".into()))?;
        if found != number {
            return Err(self.bad(
                at,
                format!("header of block {found} where the index puts block {number}"),
            ));
        }
        let at = self.record(COMPRESSED_BODY, "compressed body")?;
        let body = self.decompress(at, "body")?;
        let at = self.record(COMPRESSED_RECEIPTS, "compressed receipts")?;
        let receipts = self.decompress(at, "receipts")?;
        let at = self.record(TOTAL_DIFFICULTY, "total difficulty")?;
        let total_difficulty: [u8; 32] = self.compressed[..].try_into().map_err(|_| {
            self.bad(
                at,
                format!(
                    "total difficulty of {} bytes, not 32",
                    self.compressed.len()
                ),
            )
        })?;
        self.next += 1;
        Ok(Era1Block {
            number,
            header,
            body,
            receipts,
            total_difficulty,
        })
    }

    /// Block `i` of the file (0 is [`Era1Reader::start`]), found through the block index and
    /// checked like [`Era1Reader::next_block`]; streaming goes on from the block after it.
    pub fn read_block(&mut self, i: u64) -> Result<Era1Block> {
        let Some(&at) = self.offsets.get(i as usize) else {
            return Err(self.bad(
                self.index_at,
                format!("no block {i} in a file of {}", self.offsets.len()),
            ));
        };
        self.seek(at)?;
        self.next = i as usize;
        self.next_block()?
            .ok_or_else(|| self.bad(at, "the block index points past the blocks".into()))
    }

    /// Checks the records after the last block: the accumulator (32 bytes), and any others,
    /// up to the block index.
    fn finish(&mut self) -> Result<()> {
        let mut accumulator = false;
        while self.pos < self.index_at {
            let at = self.pos;
            let (ty, len) = self.record_header()?;
            if ty == ACCUMULATOR {
                if len != 32 {
                    return Err(self.bad(at, format!("accumulator of {len} bytes, not 32")));
                }
                accumulator = true;
            }
            if self.pos + u64::from(len) > self.index_at {
                return Err(self.bad(at, "a record runs into the block index".into()));
            }
            self.seek(self.pos + u64::from(len))?;
        }
        if !accumulator {
            return Err(self.bad(
                self.index_at,
                "no accumulator record before the block index".into(),
            ));
        }
        Ok(())
    }
}

/// `e` with `what` before its detail, if it is a format error.
fn context(e: Error, what: &str) -> Error {
    match e {
        Error::Era1 {
            path,
            offset,
            detail,
        } => Error::Era1 {
            path,
            offset,
            detail: format!("{what}: {detail}"),
        },
        e => e,
    }
}

fn io_err(what: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        what,
        path: path.into(),
        source,
    }
}

/// The RLP item at the start of `b`: (is a list, payload start, payload length), or `None`
/// when its prefix or length runs past `b`.
pub fn rlp_item(b: &[u8]) -> Option<(bool, usize, usize)> {
    let p = *b.first()?;
    let (list, start, len) = match p {
        0x00..=0x7f => return Some((false, 0, 1)),
        0x80..=0xb7 => (false, 1, usize::from(p - 0x80)),
        0xc0..=0xf7 => (true, 1, usize::from(p - 0xc0)),
        _ => {
            let (list, n) = if p >= 0xf8 {
                (true, usize::from(p - 0xf7))
            } else {
                (false, usize::from(p - 0xb7))
            };
            let len_bytes = b.get(1..1 + n)?;
            if n > 8 {
                return None;
            }
            let len = len_bytes
                .iter()
                .fold(0u64, |acc, &x| acc << 8 | u64::from(x));
            (list, 1 + n, usize::try_from(len).ok()?)
        }
    };
    (start.checked_add(len)? <= b.len()).then_some((list, start, len))
}

/// The items of the RLP list `b` (which must be exactly one list), as byte slices of whole
/// items, or `None` if it is not one.
pub fn rlp_list_items(b: &[u8]) -> Option<Vec<&[u8]>> {
    let (list, start, len) = rlp_item(b)?;
    if !list || start + len != b.len() {
        return None;
    }
    let mut items = Vec::new();
    let mut rest = &b[start..];
    while !rest.is_empty() {
        let (_, s, l) = rlp_item(rest)?;
        items.push(&rest[..s + l]);
        rest = &rest[s + l..];
    }
    Some(items)
}

/// The number field (the ninth) of an Ethereum header's RLP.
pub fn header_number(header: &[u8]) -> Option<u64> {
    let (list, start, len) = rlp_item(header)?;
    if !list {
        return None;
    }
    let mut rest = &header[start..start + len];
    for _ in 0..8 {
        let (_, s, l) = rlp_item(rest)?;
        rest = &rest[s + l..];
    }
    let (is_list, s, l) = rlp_item(rest)?;
    if is_list || l > 8 {
        return None;
    }
    let bytes = &rest[s..s + l];
    Some(bytes.iter().fold(0u64, |acc, &x| acc << 8 | u64::from(x)))
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Files read.
    pub files: u64,
    /// Blocks stored.
    pub blocks: u64,
    /// Blocks skipped because the store holds them already (era1 blocks are canonical: a
    /// block present is the same block).
    pub skipped: u64,
    /// Decompressed bytes stored (header, body and receipts).
    pub bytes: u64,
    /// Bytes of the era1 files read.
    pub file_bytes: u64,
    /// Shards sealed by the import.
    pub sealed: Vec<u64>,
}

/// Imports era1 files into `store`: every block's header, body and receipts, in batches of at
/// most [`IMPORT_BATCH_BYTES`]; a shard is sealed as soon as all its blocks are in. Blocks the
/// store holds already are skipped (so are repeats of a file: blocks within one file have
/// consecutive numbers, and each file's last batch is written before the next). Each file is
/// synced when done. `progress` gets the blocks
/// stored so far after each batch. A malformed file stops the import with an error naming the
/// file and offset; blocks of earlier batches stay stored (and present).
pub fn import(
    store: &HistoryStore,
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
) -> Result<ImportReport> {
    import_each(store, files, progress, &mut |_, _| {})
}

/// [`import`], calling `done` with each file and the report so far once it is imported.
pub fn import_each(
    store: &HistoryStore,
    files: &[PathBuf],
    progress: &mut dyn FnMut(u64),
    done: &mut dyn FnMut(&Path, &ImportReport),
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    for path in files {
        let mut reader = Era1Reader::open(path)?;
        let mut batch: Vec<Era1Block> = Vec::new();
        let mut batch_bytes = 0;
        while let Some(block) = reader.next_block()? {
            if store.has(block.number) {
                report.skipped += 1;
                continue;
            }
            let spread = batch.first().map_or(0, |b: &Era1Block| {
                store
                    .shard_of(block.number)
                    .abs_diff(store.shard_of(b.number))
            });
            if spread >= IMPORT_BATCH_SHARDS {
                write_batch(store, &mut batch, &mut report)?;
                batch_bytes = 0;
                progress(report.blocks);
            }
            batch_bytes += block.header.len() + block.body.len() + block.receipts.len();
            batch.push(block);
            if batch_bytes >= IMPORT_BATCH_BYTES {
                write_batch(store, &mut batch, &mut report)?;
                batch_bytes = 0;
                progress(report.blocks);
            }
        }
        write_batch(store, &mut batch, &mut report)?;
        progress(report.blocks);
        // Shards filled before a crash that came between a write and its seal.
        report.sealed.extend(store.seal_full()?);
        store.sync()?;
        report.files += 1;
        report.file_bytes += reader.pos;
        done(path, &report);
    }
    Ok(report)
}

fn write_batch(
    store: &HistoryStore,
    batch: &mut Vec<Era1Block>,
    report: &mut ImportReport,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let columns: Vec<[(crate::Column, &[u8]); 3]> = batch
        .iter()
        .map(|b| {
            [
                (HEADER, &b.header[..]),
                (BODY, &b.body[..]),
                (RECEIPTS, &b.receipts[..]),
            ]
        })
        .collect();
    let blocks: Vec<Block<'_>> = batch
        .iter()
        .zip(&columns)
        .map(|(b, c)| Block {
            number: b.number,
            columns: c,
        })
        .collect();
    store.put_blocks(&blocks)?;
    report.blocks += batch.len() as u64;
    report.bytes += batch
        .iter()
        .map(|b| (b.header.len() + b.body.len() + b.receipts.len()) as u64)
        .sum::<u64>();
    let mut shards: Vec<u64> = batch.iter().map(|b| store.shard_of(b.number)).collect();
    shards.dedup();
    for shard in shards {
        if store.shard_is_full(shard) && !store.is_sealed(shard) {
            store.seal(shard)?;
            report.sealed.push(shard);
        }
    }
    batch.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlp_items_are_bounded() {
        assert_eq!(rlp_item(&[0x05]), Some((false, 0, 1)));
        assert_eq!(rlp_item(&[0x82, 1, 2]), Some((false, 1, 2)));
        assert_eq!(rlp_item(&[0x82, 1]), None);
        assert_eq!(rlp_item(&[0xc2, 0xc0, 0xc0]), Some((true, 1, 2)));
        assert_eq!(rlp_item(&[0xf8, 2, 0x80, 0x80]), Some((true, 2, 2)));
        assert_eq!(rlp_item(&[0xf9, 0xff]), None);
        assert_eq!(
            rlp_item(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
        assert_eq!(rlp_item(&[]), None);
        assert_eq!(rlp_list_items(&[0xc2, 0xc0, 0xc0]).unwrap().len(), 2);
        assert!(rlp_list_items(&[0xc2, 0xc0]).is_none());
    }
}
