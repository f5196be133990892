//! `DiskIndex`: one key per page of run plus a filter, persisted beside the run and
//! memory-mapped — the index that lets a node hold tens of millions of keys in little memory
//! (stellar-core's BucketListDB design).
//!
//! While a run is written, the builder keeps the first key (and its record offset) of every
//! page of 2^`page_size_exponent` bytes in which a record starts, and adds every key's xxh3
//! hash to a `fastbloom` filter sized for the target false-positive rate. A lookup asks the
//! filter (no I/O); if it may be present, a binary search over the page keys gives one span:
//! from the page's first record to the next page's first record. A record that crosses the page
//! end is still found: spans are record starts, not page bytes.
//!
//! Memory: the filter (about 1.2 bytes per key at 1%) on the heap, the page table (one key and
//! 16 bytes per page) in the file's memory map. File format: `docs/FORMAT.md`.

use std::io::Write;
use std::path::Path;

use fastbloom::BloomFilter;
use strata_engine::{
    Error, Index, IndexBuilder, IndexFactory, IndexKind, IndexParams, Result, RunIdentity, Span,
    MAX_FILTER_HASHES, MAX_KEY_BYTES,
};

/// The kind recorded in manifests for this index.
pub const DISK_KIND: IndexKind = IndexKind::DISK;
/// Magic of the index file.
pub const DISK_MAGIC: [u8; 8] = *b"STRATADX";
/// Format version of the index file.
pub const DISK_VERSION: u32 = 1;

const D_MAGIC: usize = 0;
const D_VERSION: usize = D_MAGIC + 8;
const D_PAGE_EXP: usize = D_VERSION + 4;
const D_RESERVED: usize = D_PAGE_EXP + 1;
const D_RUN_ID: usize = D_RESERVED + 3;
const D_RUN_DATA_END: usize = D_RUN_ID + 8;
const D_RUN_FILE_LEN: usize = D_RUN_DATA_END + 8;
const D_RUN_FOOTER_SUM: usize = D_RUN_FILE_LEN + 8;
const D_KEY_COUNT: usize = D_RUN_FOOTER_SUM + 8;
const D_PAGE_COUNT: usize = D_KEY_COUNT + 8;
const D_FILTER_HASHES: usize = D_PAGE_COUNT + 8;
const D_RESERVED2: usize = D_FILTER_HASHES + 4;
const D_FILTER_WORDS: usize = D_RESERVED2 + 4;
const D_KEY_BYTES: usize = D_FILTER_WORDS + 8;
/// Bytes of the index file header. Then: filter words, page offsets, key starts, key bytes,
/// and an 8-byte checksum of everything before it.
pub const DISK_HEADER_BYTES: usize = D_KEY_BYTES + 8;
const _: () = assert!(DISK_HEADER_BYTES == 88);
const _: () = assert!(
    D_RUN_ID == strata_engine::format::INDEX_IDENTITY_OFFSET
        && D_VERSION == strata_engine::format::INDEX_VERSION_OFFSET
);

/// The index file header's layout.
pub const DISK_HEADER_LAYOUT: strata_engine::format::Layout = strata_engine::format::Layout {
    name: "index.disk",
    offsets: &[
        D_MAGIC,
        D_VERSION,
        D_PAGE_EXP,
        D_RESERVED,
        D_RUN_ID,
        D_RUN_DATA_END,
        D_RUN_FILE_LEN,
        D_RUN_FOOTER_SUM,
        D_KEY_COUNT,
        D_PAGE_COUNT,
        D_FILTER_HASHES,
        D_RESERVED2,
        D_FILTER_WORDS,
        D_KEY_BYTES,
    ],
    bytes: DISK_HEADER_BYTES,
    magics: &[DISK_MAGIC],
    version: Some(DISK_VERSION),
};

/// Factory of disk indexes with a page size and filter false-positive rate.
#[derive(Debug, Clone, Copy)]
pub struct DiskIndexFactory {
    params: IndexParams,
}

impl DiskIndexFactory {
    /// A factory with these parameters (checked by [`IndexParams::validate`]).
    pub fn new(params: IndexParams) -> DiskIndexFactory {
        DiskIndexFactory { params }
    }
}

impl Default for DiskIndexFactory {
    fn default() -> Self {
        DiskIndexFactory::new(IndexParams::default())
    }
}

/// Builds a disk index while a run is written.
pub struct DiskIndexBuilder {
    page_exp: u8,
    filter: BloomFilter,
    keys: u64,
    current_page: Option<u64>,
    page_offsets: Vec<u64>,
    key_starts: Vec<u64>,
    key_bytes: Vec<u8>,
}

fn key_hash(key: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key)
}

impl IndexBuilder for DiskIndexBuilder {
    fn add(&mut self, key: &[u8], offset: u64) {
        self.filter.insert_hash(key_hash(key));
        self.keys += 1;
        let page = offset >> self.page_exp;
        if self.current_page != Some(page) {
            self.current_page = Some(page);
            self.page_offsets.push(offset);
            self.key_starts.push(self.key_bytes.len() as u64);
            self.key_bytes.extend_from_slice(key);
        }
    }

    fn finish(self: Box<Self>, run: &RunIdentity, out: &mut dyn Write) -> std::io::Result<()> {
        let mut hash = xxhash_rust::xxh3::Xxh3::new();
        let mut put = |bytes: &[u8], out: &mut dyn Write| -> std::io::Result<()> {
            hash.update(bytes);
            out.write_all(bytes)
        };
        let words = self.filter.as_slice();
        let mut h = [0u8; DISK_HEADER_BYTES];
        h[D_MAGIC..D_MAGIC + 8].copy_from_slice(&DISK_MAGIC);
        h[D_VERSION..D_VERSION + 4].copy_from_slice(&DISK_VERSION.to_le_bytes());
        h[D_PAGE_EXP] = self.page_exp;
        h[D_RUN_ID..D_RUN_ID + RunIdentity::ENCODED_BYTES].copy_from_slice(&run.encode());
        h[D_KEY_COUNT..D_KEY_COUNT + 8].copy_from_slice(&self.keys.to_le_bytes());
        h[D_PAGE_COUNT..D_PAGE_COUNT + 8]
            .copy_from_slice(&(self.page_offsets.len() as u64).to_le_bytes());
        h[D_FILTER_HASHES..D_FILTER_HASHES + 4]
            .copy_from_slice(&self.filter.num_hashes().to_le_bytes());
        h[D_FILTER_WORDS..D_FILTER_WORDS + 8].copy_from_slice(&(words.len() as u64).to_le_bytes());
        h[D_KEY_BYTES..D_KEY_BYTES + 8]
            .copy_from_slice(&(self.key_bytes.len() as u64).to_le_bytes());
        put(&h, out)?;
        let mut buf = Vec::with_capacity(64 << 10);
        let mut put_u64s =
            |values: &mut dyn Iterator<Item = u64>, out: &mut dyn Write| -> std::io::Result<()> {
                for v in values {
                    buf.extend_from_slice(&v.to_le_bytes());
                    if buf.len() >= 64 << 10 {
                        put(&buf, out)?;
                        buf.clear();
                    }
                }
                put(&buf, out)?;
                buf.clear();
                Ok(())
            };
        put_u64s(&mut words.iter().copied(), out)?;
        put_u64s(&mut self.page_offsets.iter().copied(), out)?;
        put_u64s(
            &mut self
                .key_starts
                .iter()
                .copied()
                .chain([self.key_bytes.len() as u64]),
            out,
        )?;
        put(&self.key_bytes, out)?;
        out.write_all(&hash.digest().to_le_bytes())
    }
}

/// The bytes of an index file: mapped (normal use) or owned (fuzzing, verification).
enum Bytes {
    Map(Box<dyn strata_engine::Mapped>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Map(m) => m.bytes(),
            Bytes::Owned(v) => v,
        }
    }
}

/// A loaded disk index: the filter in memory, the page table in the file's memory map.
pub struct DiskIndex {
    map: Bytes,
    filter: BloomFilter,
    /// Each page's first key's first 8 bytes, big-endian and zero-padded (monotone in key
    /// order): the binary search compares these, in memory, before any whole key.
    heads: Vec<u64>,
    keys: u64,
    pages: usize,
    page_offsets_at: usize,
    key_starts_at: usize,
    key_bytes_at: usize,
    data_end: u64,
    page_exp: u8,
}

impl std::fmt::Debug for DiskIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskIndex")
            .field("keys", &self.keys)
            .field("pages", &self.pages)
            .finish()
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl DiskIndex {
    fn page_offset(&self, i: usize) -> u64 {
        u64_at(&self.map, self.page_offsets_at + 8 * i)
    }

    fn page_key(&self, i: usize) -> &[u8] {
        let start = u64_at(&self.map, self.key_starts_at + 8 * i) as usize;
        let end = u64_at(&self.map, self.key_starts_at + 8 * (i + 1)) as usize;
        &self.map[self.key_bytes_at + start..self.key_bytes_at + end]
    }

    /// The last page whose first key is `<= key`, if any.
    fn page_for(&self, key: &[u8]) -> Option<usize> {
        let head = strata_engine::Sharding::prefix_u64(key);
        let (mut lo, mut hi) = (0, self.pages);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // Heads are monotone: one that differs decides; an equal one needs the whole key.
            let first_at_most_key = match self.heads[mid].cmp(&head) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => self.page_key(mid) <= key,
            };
            if first_at_most_key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// Number of pages indexed.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The page size exponent it was built with.
    pub fn page_size_exponent(&self) -> u8 {
        self.page_exp
    }

    /// Decodes and checks index file bytes (read by the caller) against `run` and the expected
    /// page size.
    pub fn from_bytes(
        bytes: Vec<u8>,
        path: &Path,
        run: &RunIdentity,
        page_exp: u8,
    ) -> Result<DiskIndex> {
        Self::decode(Bytes::Owned(bytes), path, run, page_exp)
    }

    fn decode(map: Bytes, path: &Path, run: &RunIdentity, page_exp: u8) -> Result<DiskIndex> {
        let bytes: &[u8] = &map;
        let body_end = strata_engine::check_index_frame(
            bytes,
            path,
            WHAT,
            (DISK_MAGIC, DISK_VERSION),
            DISK_HEADER_BYTES,
            Some(run),
        )?;
        check_page_exp(bytes, path, page_exp)?;
        let counts = Counts::read(bytes);
        counts.check_sections(path, body_end)?;
        counts.check_filter(path)?;
        // Checked above: every section lies inside the file.
        let (words, pages) = (counts.words as usize, counts.pages as usize);
        let filter_at = DISK_HEADER_BYTES;
        let page_offsets_at = filter_at + 8 * words;
        let key_starts_at = page_offsets_at + 8 * pages;
        let key_bytes_at = key_starts_at + 8 * (pages + 1);
        let filter = read_filter(bytes, filter_at, words, counts.hashes);
        let mut index = DiskIndex {
            map,
            filter,
            heads: Vec::new(),
            keys: counts.keys,
            pages,
            page_offsets_at,
            key_starts_at,
            key_bytes_at,
            data_end: run.data_end,
            page_exp,
        };
        index.check_page_table(path, counts.key_bytes)?;
        index.heads = (0..index.pages)
            .map(|i| strata_engine::Sharding::prefix_u64(index.page_key(i)))
            .collect();
        index.release_checked_pages();
        Ok(index)
    }

    /// Checks the page table is sorted and inside the run, and uses all `key_bytes`, so that
    /// lookups can trust it.
    fn check_page_table(&self, path: &Path, key_bytes: u64) -> Result<()> {
        let mut last_start = 0u64;
        for i in 0..self.pages {
            let at = (self.key_starts_at + 8 * i) as u64;
            let (start, end) = (
                u64_at(&self.map, self.key_starts_at + 8 * i),
                u64_at(&self.map, self.key_starts_at + 8 * (i + 1)),
            );
            if start != last_start
                || end < start
                || end > key_bytes
                || end - start > MAX_KEY_BYTES as u64
            {
                return Err(Error::corrupt(
                    path,
                    at,
                    WHAT,
                    "page key bounds out of order or too long",
                ));
            }
            last_start = end;
            let offset = self.page_offset(i);
            if offset >= self.data_end
                || (i > 0
                    && (offset <= self.page_offset(i - 1)
                        || self.page_key(i) <= self.page_key(i - 1)))
            {
                return Err(Error::corrupt(
                    path,
                    at,
                    WHAT,
                    "page offsets or keys out of order",
                ));
            }
        }
        if last_start != key_bytes {
            return Err(Error::corrupt(
                path,
                self.key_starts_at as u64,
                WHAT,
                "key bytes not fully used",
            ));
        }
        Ok(())
    }

    /// Checking touched every page; lookups touch only the pages they search. Drops them from
    /// this process's page tables (the page cache keeps them) so that resident memory is the
    /// filter plus what lookups use.
    fn release_checked_pages(&self) {
        if let Bytes::Map(map) = &self.map {
            map.release(0, map.bytes().len());
            map.advise_random();
        }
    }
}

/// Names the index file in errors.
const WHAT: &str = "disk index";

/// Refuses an index built for another page size than the options ask for.
fn check_page_exp(bytes: &[u8], path: &Path, page_exp: u8) -> Result<()> {
    if bytes[D_PAGE_EXP] != page_exp {
        return Err(Error::corrupt(
            path,
            D_PAGE_EXP as u64,
            WHAT,
            format!(
                "built for pages of 2^{} bytes, the options ask for 2^{page_exp}",
                bytes[D_PAGE_EXP]
            ),
        ));
    }
    Ok(())
}

/// The counts an index header declares: untrusted until [`Counts::check_sections`] and
/// [`Counts::check_filter`] pass.
struct Counts {
    keys: u64,
    pages: u64,
    hashes: u32,
    words: u64,
    key_bytes: u64,
}

impl Counts {
    /// Reads the counts from a header whose frame is checked (so it is whole).
    fn read(bytes: &[u8]) -> Counts {
        Counts {
            keys: u64_at(bytes, D_KEY_COUNT),
            pages: u64_at(bytes, D_PAGE_COUNT),
            hashes: u32::from_le_bytes(
                bytes[D_FILTER_HASHES..D_FILTER_HASHES + 4]
                    .try_into()
                    .expect("4 bytes"),
            ),
            words: u64_at(bytes, D_FILTER_WORDS),
            key_bytes: u64_at(bytes, D_KEY_BYTES),
        }
    }

    /// Section sizes must add up to the file (up to `body_end`) exactly, checked without
    /// overflow, so that section offsets computed from them stay inside the file.
    fn check_sections(&self, path: &Path, body_end: usize) -> Result<()> {
        let sections = [self.words, self.pages, self.pages.saturating_add(1)]
            .iter()
            .try_fold(0u64, |acc, n| {
                n.checked_mul(8).and_then(|b| acc.checked_add(b))
            });
        let total = sections
            .and_then(|s| s.checked_add(self.key_bytes))
            .and_then(|s| s.checked_add(DISK_HEADER_BYTES as u64));
        if total != Some(body_end as u64) {
            return Err(Error::corrupt(
                path,
                D_PAGE_COUNT as u64,
                WHAT,
                "section lengths do not add up to the file length",
            ));
        }
        Ok(())
    }

    /// Refuses a filter that cannot be built or probed, and more pages than keys.
    fn check_filter(&self, path: &Path) -> Result<()> {
        let Counts {
            keys,
            pages,
            hashes,
            words,
            ..
        } = *self;
        if words == 0 || hashes == 0 || hashes > MAX_FILTER_HASHES || pages > keys {
            return Err(Error::corrupt(
                path,
                D_FILTER_HASHES as u64,
                WHAT,
                format!(
                    "impossible filter ({words} words, {hashes} hashes) or {pages} pages for {keys} keys"
                ),
            ));
        }
        Ok(())
    }
}

/// The filter stored as `words` words from `at`, probed with `hashes` hashes.
fn read_filter(bytes: &[u8], at: usize, words: usize, hashes: u32) -> BloomFilter {
    let filter_words: Vec<u64> = (0..words).map(|i| u64_at(bytes, at + 8 * i)).collect();
    BloomFilter::from_vec(filter_words).hashes(hashes)
}

impl Index for DiskIndex {
    fn may_contain(&self, key: &[u8]) -> bool {
        self.filter.contains_hash(key_hash(key))
    }

    fn locate(&self, key: &[u8]) -> Option<Span> {
        if !self.may_contain(key) {
            return None;
        }
        let page = self.page_for(key)?;
        let end = if page + 1 < self.pages {
            self.page_offset(page + 1)
        } else {
            self.data_end
        };
        Some(Span {
            start: self.page_offset(page),
            end,
        })
    }

    fn seek(&self, key: &[u8]) -> u64 {
        match self.page_for(key) {
            Some(page) => self.page_offset(page),
            None if self.pages > 0 => self.page_offset(0),
            None => self.data_end,
        }
    }

    fn key_count(&self) -> u64 {
        self.keys
    }

    fn memory_bytes(&self) -> u64 {
        (self.filter.as_slice().len() * 8 + self.heads.len() * 8) as u64
            + (self.map.len() - self.page_offsets_at) as u64
    }
}

impl IndexFactory for DiskIndexFactory {
    fn kind(&self) -> IndexKind {
        DISK_KIND
    }

    fn name(&self) -> &'static str {
        "disk"
    }

    fn builder(&self, expected_keys: u64) -> Box<dyn IndexBuilder> {
        let filter = BloomFilter::with_false_pos(self.params.filter_false_positive_rate)
            .expected_items(expected_keys.max(1) as usize);
        Box::new(DiskIndexBuilder {
            page_exp: self.params.page_size_exponent,
            filter,
            keys: 0,
            current_page: None,
            page_offsets: Vec::new(),
            key_starts: Vec::new(),
            key_bytes: Vec::new(),
        })
    }

    fn load(
        &self,
        fs: &dyn strata_engine::FileSystem,
        path: &Path,
        run: &RunIdentity,
    ) -> Result<Box<dyn Index>> {
        let file = fs
            .open(path, strata_engine::OpenMode::Read)
            .map_err(|e| Error::io("opening", path, e))?;
        // Index files are immutable once renamed into place; strata replaces them only by
        // renaming a new file over the name, which leaves this mapping's inode intact.
        let map = file.map().map_err(|e| Error::io("mapping", path, e))?;
        Ok(Box::new(DiskIndex::decode(
            Bytes::Map(map),
            path,
            run,
            self.params.page_size_exponent,
        )?))
    }
}

/// Checks a whole disk index image against the run identity and page size it stores (not
/// against a run). Returns the number of keys. Used by the fuzzer and by verification.
pub fn check_index_bytes(bytes: &[u8], path: &Path) -> Result<u64> {
    if bytes.len() < DISK_HEADER_BYTES {
        return Err(Error::corrupt(path, 0, WHAT, "shorter than its header"));
    }
    let run = RunIdentity::decode(&bytes[D_RUN_ID..]);
    DiskIndex::from_bytes(bytes.to_vec(), path, &run, bytes[D_PAGE_EXP]).map(|i| i.keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_index_conformance_suite_at_several_page_sizes() {
        for page_size_exponent in [6, 9, 14] {
            let f = DiskIndexFactory::new(IndexParams {
                page_size_exponent,
                ..IndexParams::default()
            });
            strata_engine::conformance::run_all(&f);
        }
    }
}

#[cfg(test)]
mod resident {
    use super::*;
    use strata_engine::conformance::bench_support::build_run;
    use strata_engine::format::index_file_name;

    /// Resident kilobytes of the mapping of `path` in this process.
    fn resident_kb(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_string_lossy().into_owned();
        let mut inside = false;
        let mut total = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                inside = line.ends_with(&name);
            } else if inside {
                if let Some(v) = line.strip_prefix("Rss:") {
                    total += v
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap();
                }
            }
        }
        total
    }

    #[test]
    fn a_loaded_index_keeps_only_its_filter_resident() {
        let dir = tempfile::tempdir().unwrap();
        let factory = DiskIndexFactory::new(IndexParams {
            page_size_exponent: 8,
            ..IndexParams::default()
        });
        let (run, _) = build_run(dir.path(), &factory, 50_000);
        let path = dir.path().join(index_file_name(1));
        let file_kb = std::fs::metadata(&path).unwrap().len() / 1024;
        let index = factory
            .load(&strata_engine::StdFs, &path, &run.identity())
            .unwrap();
        assert!(file_kb > 500, "{file_kb}");
        assert!(
            resident_kb(&path) < 64,
            "{} of {file_kb} kB resident after load",
            resident_kb(&path)
        );
        // Lookups then fault in the pages their binary searches touch: the page table is the
        // index's working set (one key and 16 bytes per page), the filter its heap.
        for i in 0..100 {
            assert!(index
                .locate(&strata_engine::conformance::bench_support::present_key(
                    i * 397
                ))
                .is_some());
        }
        assert!(resident_kb(&path) <= file_kb + 4);
    }
}
