//! Range scans: a k-way merge of every memtable and run of the shards a range touches.
//! Equal keys resolve to the newest source; tombstones hide older versions and are not
//! returned. Memory: one key per source plus a memtable chunk, never a set of seen keys.

use std::ops::Bound;

use crate::error::Result;
use crate::limits::{FAULT_AROUND_BYTES, SCAN_RELEASE_WINDOW_BYTES};
use crate::merge::{MergeSource, Merger};
use crate::run::{RecordRef, Run};
use crate::shard::{MemCursor, ShardView};
use crate::types::EntryKind;
use crate::wal::Wal;
use std::sync::Arc;

enum Source<W: Wal> {
    Mem {
        cursor: MemCursor,
        wal: Arc<W>,
    },
    Run {
        run: Arc<Run>,
        offset: u64,
        end: Bound<Vec<u8>>,
        cur: Option<RunCur>,
        /// The current record's key.
        key: Vec<u8>,
        /// Run bytes before this are released from the page tables.
        released: u64,
    },
}

/// The current record of a run source: its kind and where its value is in the map.
#[derive(Copy, Clone)]
struct RunCur {
    kind: EntryKind,
    value_offset: u64,
    value_len: usize,
    /// Where the value lives, when the record holds a pointer to a value file.
    pointer: Option<crate::types::ValuePointer>,
}

fn within(key: &[u8], end: &Bound<Vec<u8>>) -> bool {
    match end {
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
        Bound::Unbounded => true,
    }
}

impl<W: Wal> MergeSource for Source<W> {
    /// Moves to the next entry in range; `false` at the end.
    fn advance(&mut self) -> Result<bool> {
        match self {
            Source::Mem { cursor, .. } => Ok(cursor.advance()),
            Source::Run {
                run,
                offset,
                end,
                cur,
                key,
                released,
                ..
            } => {
                *cur = None;
                // Drop what the scan has passed from the page tables, a window at a time, so
                // that a scan keeps about one window of each run resident.
                if *offset >= *released + SCAN_RELEASE_WINDOW_BYTES {
                    let upto = *offset / FAULT_AROUND_BYTES * FAULT_AROUND_BYTES;
                    run.release_range(*released, upto);
                    *released = upto;
                }
                if *offset >= run.data_end() {
                    return Ok(false);
                }
                let rec: RecordRef<'_> = run.record_at(*offset)?;
                if !within(rec.key, end) {
                    *offset = run.data_end();
                    return Ok(false);
                }
                let value_len = rec.value.len();
                let value_offset =
                    rec.next - (crate::run::RECORD_CHECKSUM_BYTES + value_len) as u64;
                *cur = Some(RunCur {
                    kind: rec.meta.kind,
                    value_offset,
                    value_len,
                    pointer: rec.pointer(run.path())?,
                });
                key.clear();
                key.extend_from_slice(rec.key);
                *offset = rec.next;
                Ok(true)
            }
        }
    }

    fn key(&self) -> &[u8] {
        match self {
            Source::Mem { cursor, .. } => &cursor.current().0,
            Source::Run { key, .. } => key,
        }
    }
}

impl<W: Wal> Source<W> {
    /// The current entry's value, or `None` for a tombstone.
    fn value(&self) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Mem { cursor, wal } => {
                let e = cursor.current().1;
                match e.kind {
                    EntryKind::Delete => Ok(None),
                    EntryKind::Put => Ok(Some(wal.read_value(e.pos)?)),
                }
            }
            Source::Run { run, cur, .. } => {
                let c = cur.expect("positioned");
                match (c.kind, c.pointer) {
                    (EntryKind::Delete, _) => Ok(None),
                    (EntryKind::Put, None) => {
                        Ok(Some(run.bytes(c.value_offset, c.value_len).to_vec()))
                    }
                    (EntryKind::Put, Some(p)) => Ok(Some(crate::shard::read_pointed(
                        run.files(),
                        run.path().parent().unwrap_or(run.path()),
                        &p,
                    )?)),
                }
            }
        }
    }
}

/// An iterator over `(key, value)` pairs of a key range, in key order. Sees every write that
/// finished before it was created; may or may not see later ones. Yields an error (and then
/// ends) when stored bytes fail their checks.
pub struct Scan<W: Wal> {
    merge: Merger<Source<W>>,
    failed: bool,
}

impl<W: Wal> Scan<W> {
    /// A scan over the given views (each with its shard's WAL), bounded by `start`/`end`.
    pub(crate) fn new(
        views: Vec<(ShardView, Arc<W>)>,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
    ) -> Result<Scan<W>> {
        let mut sources = Vec::new();
        for (view, wal) in views {
            for mem in view.mems {
                sources.push(Source::Mem {
                    cursor: MemCursor::new(mem, start.clone(), end.clone()),
                    wal: wal.clone(),
                });
            }
            for run in view.runs {
                let offset = first_offset(&run, &start)?;
                let released = offset / FAULT_AROUND_BYTES * FAULT_AROUND_BYTES;
                sources.push(Source::Run {
                    run,
                    offset,
                    end: end.clone(),
                    cur: None,
                    key: Vec::new(),
                    released,
                });
            }
        }
        Ok(Scan {
            merge: Merger::new(sources),
            failed: false,
        })
    }

    fn step(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        // Sources are ordered newest first; a tombstone hides the key.
        self.merge
            .next_resolved(|key, source| Ok(source.value()?.map(|v| (key, v))))
    }
}

/// Offset of the first record of `run` at or after `start`.
fn first_offset(run: &Run, start: &Bound<Vec<u8>>) -> Result<u64> {
    Ok(match start {
        Bound::Included(k) => run.seek(k)?,
        Bound::Excluded(k) => {
            let mut o = run.seek(k)?;
            if o < run.data_end() && run.record_at(o)?.key == k.as_slice() {
                o = run.record_at(o)?.next;
            }
            o
        }
        Bound::Unbounded => crate::run::RUN_HEADER_BYTES as u64,
    })
}

impl<W: Wal> Iterator for Scan<W> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut failed = self.failed;
        let item = crate::merge::fused_next(&mut failed, || self.step());
        self.failed = failed;
        item
    }
}
