//! `strata repair`: rebuilds a damaged database from every record that is still intact, and
//! says what it dropped.
//!
//! Per shard, oldest first: the runs the manifest names (every run file found, if the manifest
//! itself is damaged), then the WAL segments from the manifest's floor on. Each record is
//! checked before it is used: a record whose value fails its checksum is dropped and the read
//! goes on (its header framed it); a header that fails its checks drops the rest of that file.
//! Intact records are written, in that order, into a new database beside the old one, so the
//! newest intact version of each key wins. Then the old directory is renamed to
//! `<name>.damaged-<unix seconds>` (`-1`, `-2`, ... when taken; kept, never deleted) and the new one takes its name.
//!
//! Memory: one value at a time (at most `MAX_VALUE_BYTES`) plus the new database's own bounds.

use std::path::{Path, PathBuf};

use strata_engine::format::{self, FileKind, RunRecord};
use strata_engine::{EntryKind, Error, OpRef, Result, SegmentId};

use crate::{Db, Options};

/// A record or a stretch of a file that repair could not use.
#[derive(Clone, Debug)]
pub struct Dropped {
    /// The file.
    pub file: PathBuf,
    /// Where in it.
    pub offset: u64,
    /// What was wrong, and what was lost.
    pub detail: String,
}

/// What a repair did.
#[derive(Clone, Debug, Default)]
pub struct RepairReport {
    /// Intact records written into the repaired database.
    pub records: u64,
    /// What was dropped.
    pub dropped: Vec<Dropped>,
    /// Where the damaged database now is.
    pub damaged_copy: PathBuf,
    /// Files of the top level that are not strata's own, copied over as they were (a history
    /// store's rollback record, for one). Shard seals are not carried over.
    pub kept_files: Vec<String>,
    /// Sealed shards of the damaged database: the repaired one holds their records unsealed.
    pub seals_not_carried: usize,
}

/// Repairs the database in `dir` (which must not be open). See the module docs.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let sharding = strata_engine::stored_sharding(&strata_engine::StdFs, dir)?;
    let lock = take_lock(dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "db".into());
    let repaired = dir.with_file_name(format!("{name}.repairing"));
    if repaired.exists() {
        std::fs::remove_dir_all(&repaired).map_err(|e| Error::io("removing", &repaired, e))?;
    }
    let mut options = Options::new();
    options.sharding = sharding;
    options.create_if_missing = true;
    options.compaction.auto = false;
    let db = Db::open(&repaired, options)?;
    let mut report = RepairReport::default();
    for shard in shard_dirs(dir)? {
        salvage_shard(&db, &shard, &mut report)?;
    }
    db.compact_all()?;
    db.close()?;
    report.kept_files = keep_foreign_files(dir, &repaired)?;
    drop(lock);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A second repair within the same second gets the next free name.
    report.damaged_copy = (0..)
        .map(|n| match n {
            0 => dir.with_file_name(format!("{name}.damaged-{stamp}")),
            n => dir.with_file_name(format!("{name}.damaged-{stamp}-{n}")),
        })
        .find(|p| !p.exists())
        .expect("a free name");
    std::fs::rename(dir, &report.damaged_copy).map_err(|e| Error::io("renaming", dir, e))?;
    std::fs::rename(&repaired, dir).map_err(|e| Error::io("renaming", &repaired, e))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let sync = std::fs::File::open(parent).and_then(|d| d.sync_all());
    sync.map_err(|e| Error::io("syncing directory", parent, e))?;
    Ok(report)
}

/// Copies the files of `dir`'s top level that are not strata's own (a store's records built
/// on strata, such as a history store's rollback record) into `repaired`, synced; returns
/// their names.
fn keep_foreign_files(dir: &Path, repaired: &Path) -> Result<Vec<String>> {
    let mut kept = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_file() || format::parse_file_name(&name).is_some() {
            continue;
        }
        let target = repaired.join(&name);
        std::fs::copy(&path, &target).map_err(|e| Error::io("copying", &path, e))?;
        std::fs::File::open(&target)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("syncing", &target, e))?;
        kept.push(name);
    }
    if !kept.is_empty() {
        std::fs::File::open(repaired)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("syncing directory", repaired, e))?;
    }
    Ok(kept)
}

fn take_lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(format::LOCK_FILE);
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("opening", &path, e))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", &path, e)),
    }
}

fn shard_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let kind = entry.file_name().to_str().and_then(format::parse_file_name);
        if matches!(kind, Some(FileKind::ShardDir(_))) {
            shards.push(entry.path());
        }
    }
    shards.sort();
    Ok(shards)
}

/// The runs (oldest first) and the WAL floor of a shard: from its manifest, or, if that is
/// damaged, every run file found and no floor.
fn shard_inputs(shard: &Path, report: &mut RepairReport) -> Result<(Vec<u64>, u64)> {
    let path = shard.join(format::SHARD_MANIFEST_FILE);
    let manifest = std::fs::read(&path)
        .map_err(|e| Error::io("reading", &path, e))
        .and_then(|bytes| format::check_shard_manifest_bytes(&bytes, &path));
    match manifest {
        Ok(m) => {
            report.seals_not_carried += usize::from(m.seal.is_some());
            Ok((m.runs.iter().rev().map(|r| r.id).collect(), m.wal_floor))
        }
        Err(e) => {
            report.dropped.push(Dropped {
                file: path,
                offset: e.offset().unwrap_or(0),
                detail: format!("{e}; salvaging every run and WAL segment found instead"),
            });
            let mut runs = Vec::new();
            for entry in std::fs::read_dir(shard).map_err(|e| Error::io("listing", shard, e))? {
                let entry = entry.map_err(|e| Error::io("listing", shard, e))?;
                if let Some(FileKind::Run(id)) =
                    entry.file_name().to_str().and_then(format::parse_file_name)
                {
                    runs.push(id);
                }
            }
            runs.sort();
            Ok((runs, 0))
        }
    }
}

fn salvage_shard(db: &Db, shard: &Path, report: &mut RepairReport) -> Result<()> {
    let (runs, floor) = shard_inputs(shard, report)?;
    let mut newest_in_runs = 0u64;
    let mut values = format::ValueFileReader::new(shard);
    for id in runs {
        let file = shard.join(format::run_file_name(id));
        let mut gaps = Vec::new();
        let mut visit_run = |r: RunRecord<'_>| match r.pointer {
            // A separated value is read from its value file; one that does not read back
            // whole is dropped like a damaged record.
            Some(p) => {
                let value = values.read(&p).ok();
                apply(
                    db,
                    &file,
                    r.key,
                    r.kind,
                    r.tag,
                    value.as_deref(),
                    r.offset,
                    report,
                )
            }
            None => apply(db, &file, r.key, r.kind, r.tag, r.value, r.offset, report),
        };
        let mut visit = |r: RunRecord<'_>| {
            newest_in_runs = newest_in_runs.max(r.seq.0);
            visit_run(r)
        };
        let mut gap = |offset: u64, bytes: u64, e: &Error| {
            gaps.push(Dropped {
                file: file.clone(),
                offset,
                detail: if bytes == 0 {
                    format!("{e}; no record lost with it: every record is framed and checked by its own checksum")
                } else {
                    format!("{e}; {bytes} bytes skipped up to the next intact record")
                },
            })
        };
        let (_, result) = format::for_each_run_record(shard, id, &mut visit, &mut gap);
        report.dropped.append(&mut gaps);
        if let Err(e) = result {
            report.dropped.push(Dropped {
                file: file.clone(),
                offset: e.offset().unwrap_or(0),
                detail: format!("{e}; the rest of this run is dropped"),
            });
        }
    }
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(shard).map_err(|e| Error::io("listing", shard, e))? {
        let entry = entry.map_err(|e| Error::io("listing", shard, e))?;
        if let Some(FileKind::WalSegment(id)) =
            entry.file_name().to_str().and_then(format::parse_file_name)
        {
            if id.0 >= floor {
                segments.push(id);
            }
        }
    }
    segments.sort();
    // Every record of a segment that runs were compacted from (a value file, or any segment
    // below a floor a damaged manifest hides) is older than the newest run record: only newer
    // ones are replayed, so an old version never wins over the runs' newer one.
    for id in segments {
        salvage_segment(db, shard, id, newest_in_runs, report)?;
    }
    Ok(())
}

fn salvage_segment(
    db: &Db,
    shard: &Path,
    id: SegmentId,
    newest_in_runs: u64,
    report: &mut RepairReport,
) -> Result<()> {
    let file = shard.join(format::segment_file_name(id));
    let mut visit = |r: strata_wal::SalvagedRecord<'_>| {
        if r.seq.0 <= newest_in_runs {
            return Ok(());
        }
        apply(
            db,
            &file,
            r.key,
            r.kind,
            r.tag,
            r.value,
            r.value_offset,
            report,
        )
    };
    let mut gaps = Vec::new();
    let mut gap = |offset: u64, bytes: u64, detail: &str| {
        gaps.push(Dropped {
            file: file.clone(),
            offset,
            detail: format!("{detail}; {bytes} bytes skipped up to the next intact record"),
        })
    };
    let salvaged =
        strata_wal::salvage_segment(&strata_engine::StdFs, &file, id, &mut visit, &mut gap);
    report.dropped.append(&mut gaps);
    match salvaged {
        Ok(strata_wal::Ending::Clean) => {}
        Ok(strata_wal::Ending::Torn) => report.dropped.push(Dropped {
            file: file.clone(),
            offset: 0,
            detail: "the segment ends inside a record or batch: that last batch is dropped".into(),
        }),
        Ok(strata_wal::Ending::Damaged { at, detail }) => report.dropped.push(Dropped {
            file: file.clone(),
            offset: at,
            detail: format!("{detail}; the rest of this segment cannot be framed and is dropped"),
        }),
        Err(e) => report.dropped.push(Dropped {
            file: file.clone(),
            offset: e.offset().unwrap_or(0),
            detail: format!("{e}; the segment is dropped"),
        }),
    }
    Ok(())
}

/// Writes one salvaged record, or notes it as dropped when its value failed its checksum.
#[allow(clippy::too_many_arguments)]
fn apply(
    db: &Db,
    file: &Path,
    key: &[u8],
    kind: EntryKind,
    tag: u8,
    value: Option<&[u8]>,
    offset: u64,
    report: &mut RepairReport,
) -> Result<()> {
    let Some(value) = value else {
        report.dropped.push(Dropped {
            file: file.to_path_buf(),
            offset,
            detail: format!("the record of key 0x{} fails its checksum", hex(key)),
        });
        return Ok(());
    };
    db.write_ops(&[OpRef {
        kind,
        tag,
        key,
        value,
    }])?;
    report.records += 1;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
