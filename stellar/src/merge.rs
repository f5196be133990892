//! stellar-core's bucket merge, streamed: two readers and a writer, one record of each in
//! memory.
//!
//! The rules (stellar-core `BucketBase::merge`, `LiveBucket::mergeCasesWithEqualKeys`,
//! `BucketOutputIterator`), for protocol 12 and later (no shadows):
//!
//! - The output's protocol version is the larger of the inputs' (`ledgerVersion` of their
//!   METAENTRY; a bucket without one counts as 0). Its METAENTRY is written first, and only
//!   when that version is 11 or more; its `ext` is the newer input's if that is v1, else the
//!   older input's if that is v1, else v0.
//! - Keys present in one input are copied. For equal keys (old, new): DEAD then INIT=x gives
//!   LIVE=x; INIT=x then LIVE=y gives INIT=y; INIT then DEAD gives nothing; INIT over a
//!   non-DEAD entry is an error; otherwise the newer entry wins.
//! - Without `keep_tombstones` (the last level) no DEADENTRY is written.
//! - An output without a single record (not even a METAENTRY) is the empty bucket, whose name
//!   is all zeros.
//!
//! Entries are written with their original bytes; only the discriminant changes when a rule
//! turns INIT into LIVE or LIVE into INIT.

use std::cmp::Ordering;
use std::path::Path;

use crate::bucket::{BucketMeta, BucketReader, BucketSummary, BucketWriter, EntryKind, Record};
use crate::error::{Error, Result};

/// The first protocol version whose buckets carry INITENTRY and METAENTRY records.
pub const FIRST_PROTOCOL_WITH_META: u32 = 11;

/// The first protocol version whose merges take no shadows. Before it, stellar-core drops from
/// a merge's output the entries that a newer level's bucket (a shadow) holds; strata does not
/// apply shadows, so its merges of older buckets may keep entries stellar-core drops. Such a
/// merge is reported as not exact (`strata stellar merge` warns; `check-archive` does not
/// count it as checkable).
pub const FIRST_PROTOCOL_WITHOUT_SHADOWS: u32 = 12;

/// The protocol version of a merge of `old` and `new`: the larger of the inputs' (0 for a
/// bucket without a METAENTRY).
pub fn merge_protocol(old: &Path, new: &Path) -> Result<u32> {
    let old = BucketReader::open(old, None)?.ledger_version();
    let new = BucketReader::open(new, None)?.ledger_version();
    Ok(old.max(new))
}

/// Merges `old` and `new` (both positioned before their first entry, as
/// [`BucketReader::open`] leaves them) into a bucket at `out`.
pub fn merge(
    mut old: BucketReader,
    mut new: BucketReader,
    out: &Path,
    keep_tombstones: bool,
) -> Result<BucketSummary> {
    let mut writer = BucketWriter::create(out)?;
    let version = old.ledger_version().max(new.ledger_version());
    if version >= FIRST_PROTOCOL_WITH_META {
        let ext = [new.meta(), old.meta()]
            .into_iter()
            .flatten()
            .find(|m| m.ext_version() == 1)
            .map_or_else(|| 0i32.to_be_bytes().to_vec(), |m| m.ext.clone());
        let meta = BucketMeta {
            ledger_version: version,
            ext,
        };
        writer.put(&meta.record())?;
    }
    let put = |writer: &mut BucketWriter, kind: EntryKind, record: &Record<'_>| {
        if kind == EntryKind::Dead && !keep_tombstones {
            return Ok(());
        }
        writer.put_parts(&[&kind.tag().to_be_bytes(), record.payload()])
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
                put(&mut writer, o.kind, &o)?;
                has_old = old.advance()?;
            }
            Ordering::Greater => {
                let n = new.current().expect("present");
                put(&mut writer, n.kind, &n)?;
                has_new = new.advance()?;
            }
            Ordering::Equal => {
                let o = old.current().expect("present");
                let n = new.current().expect("present");
                match (o.kind, n.kind) {
                    (EntryKind::Dead, EntryKind::Init) => put(&mut writer, EntryKind::Live, &n)?,
                    (_, EntryKind::Init) => {
                        return Err(Error::MalformedMerge {
                            old: old.path().to_path_buf(),
                            old_offset: o.offset,
                            new: new.path().to_path_buf(),
                            new_offset: n.offset,
                        })
                    }
                    (EntryKind::Init, EntryKind::Live) => put(&mut writer, EntryKind::Init, &n)?,
                    (EntryKind::Init, EntryKind::Dead) => {}
                    (_, kind) => put(&mut writer, kind, &n)?,
                }
                has_old = old.advance()?;
                has_new = new.advance()?;
            }
        }
    }
    writer.finish()
}

/// Merges the bucket files `old` and `new` (plain or gzipped) into `out`.
pub fn merge_files(
    old: &Path,
    new: &Path,
    out: &Path,
    keep_tombstones: bool,
) -> Result<BucketSummary> {
    merge(
        BucketReader::open(old, None)?,
        BucketReader::open(new, None)?,
        out,
        keep_tombstones,
    )
}
