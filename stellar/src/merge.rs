//! stellar-core's bucket merge, streamed: two inputs, the shadows, and a writer, one record of
//! each in memory.
//!
//! The rules (stellar-core `BucketBase::merge`, `calculateMergeProtocolVersion`,
//! `LiveBucket::maybePut`, `LiveBucket::mergeCasesWithEqualKeys`,
//! `LiveBucket::checkProtocolLegality`, `HotArchiveBucket::mergeCasesWithEqualKeys`,
//! `BucketOutputIterator`):
//!
//! - **Protocol.** A merge's protocol version is the larger of the inputs' (`ledgerVersion` of
//!   their METAENTRY; a bucket without one counts as 0) and of every shadow's whose version is
//!   below [`FIRST_PROTOCOL_SHADOWS_REMOVED`] (12). Shadows given to a merge of protocol 12 or
//!   later are an error ([`Error::ShadowsNotSupported`]), as in stellar-core.
//! - **Output METAENTRY.** Written first, and only when the protocol is
//!   [`FIRST_PROTOCOL_WITH_META`] (11) or later; its `ext` is the newer input's if that is v1,
//!   else the older input's if that is v1, else v0.
//! - **Legality.** Before protocol 11, an INITENTRY or a METAENTRY in an input is an error
//!   naming the bucket and the record's offset ([`Error::IllegalEntry`]).
//! - **Equal keys (live buckets).** DEAD then INIT=x gives LIVE=x; INIT=x then LIVE=y gives
//!   INIT=y; INIT then DEAD gives nothing; INIT over a non-DEAD entry is an error; otherwise the
//!   newer entry wins.
//! - **Shadows** (live buckets, protocols before 12). An entry about to be written is dropped
//!   when any shadow holds its key (LIVE, INIT or DEAD there); from protocol 11 on, INIT and
//!   DEAD entries are kept whatever the shadows hold. The shadows are streamed alongside the
//!   output, each advanced to the candidate's key: one record of each in memory, never a set
//!   of keys. The merge into level `i` takes as shadows the curr and snap buckets of levels
//!   `0..i-1` (newest first) as they were when the merge started.
//! - **Tombstones.** Without `keep_tombstones` (the last level) no DEADENTRY is written; for the
//!   hot archive, no HOT_ARCHIVE_LIVE.
//! - **Hot archive buckets** (protocol 23; their METAENTRY's `ext` names the hot archive list):
//!   records are HOT_ARCHIVE_ARCHIVED (a `LedgerEntry`, discriminant 0) and HOT_ARCHIVE_LIVE (a
//!   `LedgerKey`, discriminant 1, the tombstone); only contract data and contract code may
//!   appear; for equal keys the newer record wins, and two records of one type for one key are
//!   an error. Shadows never apply.
//! - An output without a single record (not even a METAENTRY) is the empty bucket, whose name
//!   is all zeros.
//!
//! Entries are written with their original bytes; only the discriminant changes when a rule
//! turns INIT into LIVE or LIVE into INIT. Every shadow is read to its end after the merge, so
//! a shadow whose bytes do not match its name fails the merge.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use stellar_xdr::LedgerEntryType;

use crate::bucket::{BucketMeta, BucketReader, BucketSummary, BucketWriter, EntryKind, Record};
use crate::error::{Error, Result};
use crate::key::{type_prefix, TYPE_PREFIX_BYTES};
use crate::MAX_SHADOWS;

/// The first protocol version whose buckets carry INITENTRY and METAENTRY records
/// (stellar-core's `FIRST_PROTOCOL_SUPPORTING_INITENTRY_AND_METAENTRY`); from it on, merges keep
/// shadowed INIT and DEAD entries.
pub const FIRST_PROTOCOL_WITH_META: u32 = 11;

/// The first protocol version whose merges take no shadows (stellar-core's
/// `FIRST_PROTOCOL_SHADOWS_REMOVED`).
pub const FIRST_PROTOCOL_SHADOWS_REMOVED: u32 = 12;

/// The first protocol version with a hot archive bucket list (stellar-core's
/// `FIRST_PROTOCOL_SUPPORTING_PERSISTENT_EVICTION`).
pub const FIRST_PROTOCOL_HOT_ARCHIVE: u32 = 23;

/// Which bucket list a bucket belongs to (its METAENTRY's `ext.bucketListType`; buckets
/// without the v1 extension are live).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ListType {
    /// The live bucket list (`BucketEntry` records).
    Live,
    /// The protocol-23 hot archive (`HotArchiveBucketEntry` records).
    HotArchive,
}

impl ListType {
    /// The name used in reports: `live` or `hot_archive`.
    pub fn name(self) -> &'static str {
        match self {
            ListType::Live => "live",
            ListType::HotArchive => "hot_archive",
        }
    }

    /// The list a bucket's METAENTRY names (live without a METAENTRY or its v1 extension).
    pub fn of(meta: Option<&BucketMeta>) -> ListType {
        match meta.and_then(BucketMeta::list_type) {
            Some(1) => ListType::HotArchive,
            _ => ListType::Live,
        }
    }
}

/// What a merge wrote, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merged {
    /// The output bucket.
    pub summary: BucketSummary,
    /// The merge's protocol version.
    pub protocol: u32,
    /// The bucket list the inputs belong to.
    pub list: ListType,
    /// Entries dropped because a shadow held their key.
    pub shadowed: u64,
}

/// The protocol version of a merge (stellar-core's `calculateMergeProtocolVersion`): the
/// largest of the inputs' versions and of the shadows' versions below
/// [`FIRST_PROTOCOL_SHADOWS_REMOVED`].
pub fn merge_protocol(old: &BucketReader, new: &BucketReader, shadows: &[BucketReader]) -> u32 {
    shadows
        .iter()
        .map(BucketReader::ledger_version)
        .filter(|&v| v < FIRST_PROTOCOL_SHADOWS_REMOVED)
        .fold(old.ledger_version().max(new.ledger_version()), u32::max)
}

/// The shadows of a merge, each positioned at its first key not below the last candidate.
struct Shadows {
    readers: Vec<BucketReader>,
    /// Whether each reader still has a current record.
    live: Vec<bool>,
    elided: u64,
}

impl Shadows {
    fn new(mut readers: Vec<BucketReader>) -> Result<Shadows> {
        let live = readers
            .iter_mut()
            .map(BucketReader::advance)
            .collect::<Result<Vec<_>>>()?;
        Ok(Shadows {
            readers,
            live,
            elided: 0,
        })
    }

    /// Whether any shadow holds `key` (keys arrive in ascending order).
    fn hold(&mut self, key: &[u8]) -> Result<bool> {
        for (reader, live) in self.readers.iter_mut().zip(self.live.iter_mut()) {
            while *live && reader.current().is_some_and(|r| r.key < key) {
                *live = reader.advance()?;
            }
            if *live && reader.current().is_some_and(|r| r.key == key) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads every shadow to its end, checking its SHA-256 where it is known.
    fn finish(self) -> Result<()> {
        for reader in self.readers {
            reader.finish()?;
        }
        Ok(())
    }
}

/// The merge's output side: the writer, the rules that decide what reaches it, the shadows.
struct Output {
    writer: BucketWriter,
    list: ListType,
    protocol: u32,
    keep_tombstones: bool,
    keep_shadowed_lifecycle: bool,
    shadows: Shadows,
}

impl Output {
    /// `maybePut`, then the output iterator's tombstone filter: writes `record` as `kind`
    /// unless a shadow holds its key or it is a tombstone the last level drops.
    fn maybe_put(&mut self, kind: EntryKind, record: &Record<'_>, bucket: &Path) -> Result<()> {
        if self.list == ListType::HotArchive {
            check_hot_archive_record(record, bucket)?;
        }
        let lifecycle = matches!(kind, EntryKind::Init | EntryKind::Dead);
        if !(self.keep_shadowed_lifecycle && lifecycle) && self.shadows.hold(record.key)? {
            self.shadows.elided += 1;
            return Ok(());
        }
        if kind == EntryKind::Dead && !self.keep_tombstones {
            return Ok(());
        }
        self.writer
            .put_parts(&[&kind.tag().to_be_bytes(), record.payload()])
    }

    /// `checkProtocolLegality` for one input record.
    fn check_legal(&self, record: &Record<'_>, bucket: &Path) -> Result<()> {
        if record.kind == EntryKind::Init
            && (self.protocol < FIRST_PROTOCOL_WITH_META || self.list == ListType::HotArchive)
        {
            return Err(Error::IllegalEntry {
                bucket: bucket.to_path_buf(),
                offset: record.offset,
                entry: "INITENTRY",
                protocol: self.protocol,
                list: self.list.name(),
            });
        }
        Ok(())
    }
}

/// A hot archive bucket holds only contract data and contract code.
fn check_hot_archive_record(record: &Record<'_>, bucket: &Path) -> Result<()> {
    let ty = record.key.get(..TYPE_PREFIX_BYTES);
    let soroban = [LedgerEntryType::ContractData, LedgerEntryType::ContractCode]
        .into_iter()
        .any(|t| ty == Some(&type_prefix(t)[..]));
    if soroban {
        Ok(())
    } else {
        Err(Error::HotArchive {
            bucket: bucket.to_path_buf(),
            offset: record.offset,
            reason: "an entry that is neither contract data nor contract code".into(),
        })
    }
}

/// The bucket list of a merge's inputs; an error if one is live and the other hot archive.
fn list_of(old: &BucketReader, new: &BucketReader) -> Result<ListType> {
    let lists = [old, new].map(|b| b.meta().map(|_| ListType::of(b.meta())));
    match lists {
        [Some(a), Some(b)] if a != b => Err(Error::HotArchive {
            bucket: new.path().to_path_buf(),
            offset: 0,
            reason: format!(
                "a {} bucket merged with the {} bucket {}",
                b.name(),
                a.name(),
                old.path().display()
            ),
        }),
        [a, b] => Ok(a.or(b).unwrap_or(ListType::Live)),
    }
}

fn check_shadow_count(given: usize) -> Result<()> {
    if given > MAX_SHADOWS {
        return Err(Error::TooManyShadows {
            given,
            limit: MAX_SHADOWS,
        });
    }
    Ok(())
}

/// Merges `old` and `new` (both as [`BucketReader::open`] leaves them) with `shadows` (newest
/// first; empty from protocol 12 on) into a bucket at `out`.
pub fn merge(
    mut old: BucketReader,
    mut new: BucketReader,
    shadows: Vec<BucketReader>,
    out: &Path,
    keep_tombstones: bool,
) -> Result<Merged> {
    check_shadow_count(shadows.len())?;
    let list = list_of(&old, &new)?;
    let protocol = merge_protocol(&old, &new, &shadows);
    if let Some(first) = shadows.first() {
        if protocol >= FIRST_PROTOCOL_SHADOWS_REMOVED || list == ListType::HotArchive {
            return Err(Error::ShadowsNotSupported {
                first: first.path().to_path_buf(),
                shadows: shadows.len(),
                protocol,
            });
        }
    }
    for input in [&old, &new] {
        if input.meta().is_some() && protocol < FIRST_PROTOCOL_WITH_META {
            return Err(Error::IllegalEntry {
                bucket: input.path().to_path_buf(),
                offset: 0,
                entry: "METAENTRY",
                protocol,
                list: list.name(),
            });
        }
    }
    let mut writer = BucketWriter::create(out)?;
    if protocol >= FIRST_PROTOCOL_WITH_META {
        let ext = [new.meta(), old.meta()]
            .into_iter()
            .flatten()
            .find(|m| m.ext_version() == 1)
            .map_or_else(|| 0i32.to_be_bytes().to_vec(), |m| m.ext.clone());
        let meta = BucketMeta {
            ledger_version: protocol,
            ext,
        };
        writer.put(&meta.record())?;
    }
    let mut output = Output {
        writer,
        list,
        protocol,
        keep_tombstones,
        keep_shadowed_lifecycle: protocol >= FIRST_PROTOCOL_WITH_META,
        shadows: Shadows::new(shadows)?,
    };
    let mut has_old = old.advance()?;
    let mut has_new = new.advance()?;
    while has_old || has_new {
        let order = match (old.current(), new.current()) {
            (Some(o), Some(n)) => o.key.cmp(n.key),
            (Some(_), None) => Ordering::Less,
            (None, _) => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                let o = old.current().expect("present");
                output.check_legal(&o, old.path())?;
                output.maybe_put(o.kind, &o, old.path())?;
                has_old = old.advance()?;
            }
            Ordering::Greater => {
                let n = new.current().expect("present");
                output.check_legal(&n, new.path())?;
                output.maybe_put(n.kind, &n, new.path())?;
                has_new = new.advance()?;
            }
            Ordering::Equal => {
                let o = old.current().expect("present");
                let n = new.current().expect("present");
                output.check_legal(&o, old.path())?;
                output.check_legal(&n, new.path())?;
                if list == ListType::HotArchive {
                    if o.kind == n.kind {
                        return Err(Error::HotArchive {
                            bucket: new.path().to_path_buf(),
                            offset: n.offset,
                            reason: format!(
                                "same key and type as the record at offset {} of {}",
                                o.offset,
                                old.path().display()
                            ),
                        });
                    }
                    output.maybe_put(n.kind, &n, new.path())?;
                } else {
                    match (o.kind, n.kind) {
                        (EntryKind::Dead, EntryKind::Init) => {
                            output.maybe_put(EntryKind::Live, &n, new.path())?
                        }
                        (_, EntryKind::Init) => {
                            return Err(Error::MalformedMerge {
                                old: old.path().to_path_buf(),
                                old_offset: o.offset,
                                new: new.path().to_path_buf(),
                                new_offset: n.offset,
                            })
                        }
                        (EntryKind::Init, EntryKind::Live) => {
                            output.maybe_put(EntryKind::Init, &n, new.path())?
                        }
                        (EntryKind::Init, EntryKind::Dead) => {}
                        (_, kind) => output.maybe_put(kind, &n, new.path())?,
                    }
                }
                has_old = old.advance()?;
                has_new = new.advance()?;
            }
        }
    }
    let shadowed = output.shadows.elided;
    output.shadows.finish()?;
    Ok(Merged {
        summary: output.writer.finish()?,
        protocol,
        list,
        shadowed,
    })
}

/// Merges the bucket files `old` and `new` (plain or gzipped) with the shadow bucket files
/// `shadows` (newest first) into `out`.
pub fn merge_files(
    old: &Path,
    new: &Path,
    shadows: &[PathBuf],
    out: &Path,
    keep_tombstones: bool,
) -> Result<Merged> {
    check_shadow_count(shadows.len())?;
    let shadows = shadows
        .iter()
        .map(|s| BucketReader::open(s, None))
        .collect::<Result<Vec<_>>>()?;
    merge(
        BucketReader::open(old, None)?,
        BucketReader::open(new, None)?,
        shadows,
        out,
        keep_tombstones,
    )
}
