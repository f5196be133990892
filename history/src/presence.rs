//! The presence record of a shard: one bit per block and the bytes stored per column, kept in
//! the shard itself under the key `number_be(shard start) ++ [0x00]` and rewritten in every
//! batch that adds or removes blocks of the shard, so that presence and blocks change together
//! (a batch is atomic within a shard).
//!
//! Layout (a frame: magic, version, checksum last; integers little-endian):
//!
//! | offset | bytes | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `STRHPRES` |
//! | 8 | 4 | version (1) |
//! | 12 | 8 | width: blocks per shard |
//! | 20 | 2 | column count C |
//! | 22 | 9 × C | per column, ascending: id (u8), bytes stored (u64) |
//! | 22 + 9C | ⌈width / 8⌉ | bitset: bit `i % 8` of byte `i / 8` is block `start + i` |
//! | end − 8 | 8 | xxh3-64 of every byte before |

use std::collections::BTreeMap;
use std::path::Path;

use strata_engine::format::{check_frame, seal_frame, FrameSpec};

use crate::Error;

/// Magic of a presence record.
pub const PRESENCE_MAGIC: [u8; 8] = *b"STRHPRES";
/// Format version of a presence record.
pub const PRESENCE_VERSION: u32 = 1;
const HEAD_BYTES: usize = 22;

/// The fixed part of a presence record, for the check that `docs/FORMAT.md` agrees.
pub const PRESENCE_LAYOUT: strata_engine::format::Layout = strata_engine::format::Layout {
    name: "history.presence",
    offsets: &[0, 8, 12, 20],
    bytes: HEAD_BYTES,
    magics: &[PRESENCE_MAGIC],
    version: Some(PRESENCE_VERSION),
};
const COLUMN_BYTES: usize = 9;

/// What one shard holds: which blocks, and how many value bytes per column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Presence {
    width: u64,
    words: Vec<u64>,
    count: u64,
    pub columns: BTreeMap<u8, u64>,
}

impl Presence {
    pub fn new(width: u64) -> Presence {
        Presence {
            width,
            words: vec![0; width.div_ceil(64) as usize],
            count: 0,
            columns: BTreeMap::new(),
        }
    }

    /// Blocks present.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether every block of the shard is present.
    pub fn full(&self) -> bool {
        self.count == self.width
    }

    /// Whether block `i` (offset within the shard) is present.
    pub fn get(&self, i: u64) -> bool {
        self.words[(i / 64) as usize] >> (i % 64) & 1 == 1
    }

    /// Marks block `i` present or absent.
    pub fn set(&mut self, i: u64, present: bool) {
        let was = self.get(i);
        let word = &mut self.words[(i / 64) as usize];
        if present {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
        match (was, present) {
            (false, true) => self.count += 1,
            (true, false) => self.count -= 1,
            _ => {}
        }
    }

    /// The first offset at or after `from` (and before `end`) whose presence is `present`.
    pub fn next(&self, from: u64, end: u64, present: bool) -> Option<u64> {
        let end = end.min(self.width);
        let mut i = from;
        while i < end {
            let word = self.words[(i / 64) as usize];
            let word = if present { word } else { !word };
            let bits = word >> (i % 64);
            if bits == 0 {
                i = (i / 64 + 1) * 64;
                continue;
            }
            let found = i + u64::from(bits.trailing_zeros());
            return (found < end).then_some(found);
        }
        None
    }

    /// The highest offset present, if any.
    pub fn last(&self) -> Option<u64> {
        let (i, w) = self
            .words
            .iter()
            .enumerate()
            .rev()
            .find(|(_, w)| **w != 0)?;
        Some(i as u64 * 64 + 63 - u64::from(w.leading_zeros()))
    }

    /// Adds `delta` (which may be negative) to the bytes of `column`.
    pub fn add_bytes(&mut self, column: u8, delta: i64) {
        let entry = self.columns.entry(column).or_insert(0);
        *entry = entry.saturating_add_signed(delta);
        if *entry == 0 {
            self.columns.remove(&column);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let bitset_bytes = self.width.div_ceil(8) as usize;
        let mut out =
            Vec::with_capacity(HEAD_BYTES + COLUMN_BYTES * self.columns.len() + bitset_bytes + 8);
        out.extend_from_slice(&PRESENCE_MAGIC);
        out.extend_from_slice(&PRESENCE_VERSION.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&(self.columns.len() as u16).to_le_bytes());
        for (&id, &bytes) in &self.columns {
            out.push(id);
            out.extend_from_slice(&bytes.to_le_bytes());
        }
        let bits: Vec<u8> = self.words.iter().flat_map(|w| w.to_le_bytes()).collect();
        out.extend_from_slice(&bits[..bitset_bytes]);
        seal_frame(&mut out);
        out
    }

    /// Decodes a presence record of a shard of `width` blocks; `path` names the database for
    /// errors.
    pub fn decode(bytes: &[u8], width: u64, path: &Path, shard: u64) -> Result<Presence, Error> {
        let what = "presence record";
        let spec = FrameSpec {
            what,
            magic: PRESENCE_MAGIC,
            magic_at: 0,
            version: PRESENCE_VERSION,
            oldest_version: PRESENCE_VERSION,
            min_bytes: HEAD_BYTES + 8,
        };
        let bad = |offset: usize, detail: String| Error::BadPresence {
            path: path.into(),
            shard,
            offset,
            detail,
        };
        let body_end = check_frame(bytes, path, 0, &spec)?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let stored_width = u64_at(12);
        if stored_width != width {
            return Err(bad(
                12,
                format!("width {stored_width}, the database's is {width}"),
            ));
        }
        let ncols = u16::from_le_bytes([bytes[20], bytes[21]]) as usize;
        let bitset_bytes = width.div_ceil(8) as usize;
        let expected = HEAD_BYTES + COLUMN_BYTES * ncols + bitset_bytes;
        if body_end != expected {
            return Err(bad(
                20,
                format!(
                    "{body_end} bytes before the checksum, expected {expected} for {ncols} columns"
                ),
            ));
        }
        let mut p = Presence::new(width);
        let mut last = None;
        for c in 0..ncols {
            let at = HEAD_BYTES + COLUMN_BYTES * c;
            let id = bytes[at];
            if last.is_some_and(|l| l >= id) || id == 0 {
                return Err(bad(at, format!("column {id} out of order or reserved")));
            }
            last = Some(id);
            p.columns.insert(id, u64_at(at + 1));
        }
        let bits = &bytes[expected - bitset_bytes..expected];
        for (w, chunk) in p.words.iter_mut().zip(bits.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        let tail = width % 64;
        if tail != 0 && p.words.last().is_some_and(|w| w >> tail != 0) {
            return Err(bad(expected - 1, "bits set past the shard's width".into()));
        }
        p.count = p.words.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let mut p = Presence::new(100);
        for i in [0, 5, 63, 64, 99] {
            p.set(i, true);
        }
        p.add_bytes(1, 500);
        p.add_bytes(3, 7);
        let bytes = p.encode();
        let path = Path::new("db");
        assert_eq!(Presence::decode(&bytes, 100, path, 0).unwrap(), p);
        assert_eq!(p.count(), 5);
        assert_eq!(p.next(1, 100, true), Some(5));
        assert_eq!(p.next(0, 100, false), Some(1));
        assert_eq!(p.next(65, 99, true), None);
        assert_eq!(p.last(), Some(99));
        assert_eq!(Presence::new(100).last(), None);
        assert!(Presence::decode(&bytes, 101, path, 0).is_err());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Presence::decode(&b, 100, path, 0).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(Presence::decode(&bytes[..cut], 100, path, 0).is_err());
        }
    }

    #[test]
    fn a_full_shard_is_full() {
        let mut p = Presence::new(70);
        for i in 0..70 {
            assert!(!p.full());
            p.set(i, true);
        }
        assert!(p.full());
        assert_eq!(p.next(0, 70, false), None);
        p.set(69, false);
        assert_eq!(p.next(0, 70, false), Some(69));
    }
}
