//! `InMemoryIndex`: every key of a run and its record offset, held in memory; for small runs.
//!
//! Memory: the keys, back to back, plus 16 bytes per key (a `u64` key start and a `u64`
//! offset). The file beside the run (`run-<id>.idx`, see `docs/FORMAT.md`) holds the same list
//! and the run's identity; loading reads only that file.

use std::io::Write;
use std::path::Path;

use strata_engine::{
    Error, Index, IndexBuilder, IndexFactory, IndexKind, Result, RunIdentity, Span,
    MAX_INMEM_INDEX_FILE_BYTES, MAX_KEY_BYTES,
};

/// The kind recorded in manifests for this index.
pub const INMEM_KIND: IndexKind = IndexKind::IN_MEMORY;
/// Magic of the index file.
pub const INMEM_MAGIC: [u8; 8] = *b"STRATAIM";
/// Format version of the index file.
pub const INMEM_VERSION: u32 = 1;

const I_MAGIC: usize = 0;
const I_VERSION: usize = I_MAGIC + 8;
const I_RESERVED: usize = I_VERSION + 4;
const I_RUN_ID: usize = I_RESERVED + 4;
const I_RUN_DATA_END: usize = I_RUN_ID + 8;
const I_RUN_FILE_LEN: usize = I_RUN_DATA_END + 8;
const I_RUN_FOOTER_SUM: usize = I_RUN_FILE_LEN + 8;
const I_COUNT: usize = I_RUN_FOOTER_SUM + 8;
/// Bytes of the index file header; entries follow, then an 8-byte checksum of everything.
pub const INMEM_HEADER_BYTES: usize = I_COUNT + 8;
const _: () = assert!(INMEM_HEADER_BYTES == 56);
const _: () = assert!(
    I_RUN_ID == strata_engine::format::INDEX_IDENTITY_OFFSET
        && I_VERSION == strata_engine::format::INDEX_VERSION_OFFSET
);
/// The index file header's layout.
pub const INMEM_HEADER_LAYOUT: strata_engine::format::Layout = strata_engine::format::Layout {
    name: "index.inmem",
    offsets: &[
        I_MAGIC,
        I_VERSION,
        I_RESERVED,
        I_RUN_ID,
        I_RUN_DATA_END,
        I_RUN_FILE_LEN,
        I_RUN_FOOTER_SUM,
        I_COUNT,
    ],
    bytes: INMEM_HEADER_BYTES,
    magics: &[INMEM_MAGIC],
    version: Some(INMEM_VERSION),
};

/// Bytes per entry besides its key: `u16` key length and `u64` offset.
pub const ENTRY_FIXED_BYTES: usize = 2 + 8;

/// Factory of in-memory indexes.
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemoryIndexFactory;

/// A loaded in-memory index.
#[derive(Debug, Default)]
pub struct InMemoryIndex {
    keys: Vec<u8>,
    /// Per key: start of the key in `keys` and the record offset. Key `i` ends where key
    /// `i + 1` starts (or at `keys.len()`).
    entries: Vec<(u64, u64)>,
    data_end: u64,
}

/// Builds an [`InMemoryIndex`] file while a run is written.
#[derive(Debug, Default)]
pub struct InMemoryIndexBuilder {
    index: InMemoryIndex,
}

impl IndexBuilder for InMemoryIndexBuilder {
    fn add(&mut self, key: &[u8], offset: u64) {
        debug_assert!(self
            .index
            .entries
            .last()
            .is_none_or(|_| self.index.key(self.index.entries.len() - 1) < key));
        self.index
            .entries
            .push((self.index.keys.len() as u64, offset));
        self.index.keys.extend_from_slice(key);
    }

    fn finish(self: Box<Self>, run: &RunIdentity, out: &mut dyn Write) -> std::io::Result<()> {
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut put = |bytes: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
            hash.update(bytes);
            out.write_all(bytes)
        };
        let mut h = [0u8; INMEM_HEADER_BYTES];
        h[I_MAGIC..I_MAGIC + 8].copy_from_slice(&INMEM_MAGIC);
        h[I_VERSION..I_VERSION + 4].copy_from_slice(&INMEM_VERSION.to_le_bytes());
        h[I_RUN_ID..I_RUN_ID + RunIdentity::ENCODED_BYTES].copy_from_slice(&run.encode());
        h[I_COUNT..I_COUNT + 8].copy_from_slice(&(self.index.entries.len() as u64).to_le_bytes());
        put(&h, out)?;
        for i in 0..self.index.entries.len() {
            let key = self.index.key(i);
            put(&(key.len() as u16).to_le_bytes(), out)?;
            put(key, out)?;
            put(&self.index.entries[i].1.to_le_bytes(), out)?;
        }
        let sum = hash.digest();
        out.write_all(&sum.to_le_bytes())
    }
}

impl InMemoryIndex {
    fn key(&self, i: usize) -> &[u8] {
        let start = self.entries[i].0 as usize;
        let end = self
            .entries
            .get(i + 1)
            .map_or(self.keys.len(), |e| e.0 as usize);
        &self.keys[start..end]
    }

    /// Index of the first key `>= key`.
    fn lower_bound(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.entries.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Decodes an index file's bytes, checking everything against `run`.
    pub fn decode(bytes: &[u8], path: &Path, run: &RunIdentity) -> Result<InMemoryIndex> {
        let what = "in-memory index";
        let body_end = strata_engine::check_index_frame(
            bytes,
            path,
            what,
            (INMEM_MAGIC, INMEM_VERSION),
            INMEM_HEADER_BYTES,
            Some(run),
        )?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let count = u64_at(I_COUNT);
        if count > (body_end - INMEM_HEADER_BYTES) as u64 / ENTRY_FIXED_BYTES as u64 {
            return Err(Error::corrupt(
                path,
                I_COUNT as u64,
                what,
                format!("{count} entries cannot fit in the file"),
            ));
        }
        let mut index = InMemoryIndex {
            keys: Vec::new(),
            entries: Vec::with_capacity(count as usize),
            data_end: run.data_end,
        };
        let mut at = INMEM_HEADER_BYTES;
        let mut last_offset = 0u64;
        for _ in 0..count {
            let entry_at = at as u64;
            let bad = |detail: &str| Error::corrupt(path, entry_at, what, detail.to_string());
            let len_bytes = bytes
                .get(at..at + 2)
                .filter(|_| at + 2 <= body_end)
                .ok_or_else(|| bad("entry runs past the end"))?;
            let key_len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
            if key_len > MAX_KEY_BYTES || at + 2 + key_len + 8 > body_end {
                return Err(bad("entry runs past the end or key over the limit"));
            }
            let key = &bytes[at + 2..at + 2 + key_len];
            let offset = u64_at(at + 2 + key_len);
            if let Some(last) = index.entries.len().checked_sub(1) {
                if index.key(last) >= key || offset <= last_offset {
                    return Err(bad("keys or offsets out of order"));
                }
            }
            if offset >= run.data_end {
                return Err(bad("offset outside the run"));
            }
            index.entries.push((index.keys.len() as u64, offset));
            index.keys.extend_from_slice(key);
            last_offset = offset;
            at += 2 + key_len + 8;
        }
        if at != body_end {
            return Err(Error::corrupt(
                path,
                at as u64,
                what,
                "trailing bytes after the last entry",
            ));
        }
        index.keys.shrink_to_fit();
        Ok(index)
    }
}

/// Checks a whole index file image against the run identity it stores (not against a run):
/// framing, version, checksum, entry order. Returns the number of keys. Used by the fuzzer and
/// by verification.
pub fn check_index_bytes(bytes: &[u8], path: &Path) -> Result<u64> {
    let stored = RunIdentity::decode(bytes.get(I_RUN_ID..).unwrap_or_default());
    InMemoryIndex::decode(bytes, path, &stored).map(|i| i.key_count())
}

impl Index for InMemoryIndex {
    fn may_contain(&self, key: &[u8]) -> bool {
        self.locate(key).is_some()
    }

    fn locate(&self, key: &[u8]) -> Option<Span> {
        let i = self.lower_bound(key);
        (i < self.entries.len() && self.key(i) == key).then(|| {
            let start = self.entries[i].1;
            Span {
                start,
                end: start + 1,
            }
        })
    }

    fn seek(&self, key: &[u8]) -> u64 {
        let i = self.lower_bound(key);
        self.entries.get(i).map_or(self.data_end, |e| e.1)
    }

    fn key_count(&self) -> u64 {
        self.entries.len() as u64
    }

    fn memory_bytes(&self) -> u64 {
        (self.keys.capacity() + self.entries.capacity() * std::mem::size_of::<(u64, u64)>()) as u64
    }
}

impl IndexFactory for InMemoryIndexFactory {
    fn kind(&self) -> IndexKind {
        INMEM_KIND
    }

    fn name(&self) -> &'static str {
        "inmem"
    }

    fn builder(&self, _expected_keys: u64) -> Box<dyn IndexBuilder> {
        Box::<InMemoryIndexBuilder>::default()
    }

    fn load(
        &self,
        fs: &dyn strata_engine::FileSystem,
        path: &Path,
        run: &RunIdentity,
    ) -> Result<Box<dyn Index>> {
        let len = fs
            .metadata(path)
            .map_err(|e| Error::io("reading metadata of", path, e))?
            .len;
        if len > MAX_INMEM_INDEX_FILE_BYTES {
            return Err(Error::corrupt(
                path,
                0,
                "in-memory index",
                format!("{len} bytes is over the limit of {MAX_INMEM_INDEX_FILE_BYTES}"),
            ));
        }
        let bytes = fs.read(path).map_err(|e| Error::io("reading", path, e))?;
        Ok(Box::new(InMemoryIndex::decode(&bytes, path, run)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_index_conformance_suite() {
        strata_engine::conformance::run_all(&InMemoryIndexFactory);
    }
}
