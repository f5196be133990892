//! `strata verify`: checks every checksum of every file of a database directory, without
//! opening it for writes, and reports damage by file and offset.

use std::path::{Path, PathBuf};

use strata_engine::format::{self, FileKind};
use strata_engine::{Error, SegmentId};
use strata_wal::Ending;

/// One finding.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The file.
    pub file: PathBuf,
    /// Offset of the damage, when known.
    pub offset: Option<u64>,
    /// What is wrong.
    pub detail: String,
    /// Damage (true) or a note that open would repair (a torn WAL tail, a temporary file).
    pub damage: bool,
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Files checked.
    pub files: u64,
    /// Bytes checked.
    pub bytes: u64,
    /// Findings, damage and notes.
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// Whether any finding is damage.
    pub fn damaged(&self) -> bool {
        self.findings.iter().any(|f| f.damage)
    }

    fn error(&mut self, file: &Path, e: Error) {
        self.findings.push(Finding {
            file: file.to_path_buf(),
            offset: e.offset(),
            detail: e.to_string(),
            damage: true,
        });
    }
}

fn map(path: &Path) -> std::io::Result<Option<memmap2::Mmap>> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    #[expect(
        unsafe_code,
        reason = "files are checked through a read-only memory map"
    )]
    // SAFETY: a read-only mapping of a file of a database that is not being written (verify
    // reads files, it does not open the database); a concurrent truncation would be a misuse.
    let m = unsafe { memmap2::Mmap::map(&file)? };
    let _ = m.advise(memmap2::Advice::Sequential);
    Ok(Some(m))
}

fn check_file(report: &mut VerifyReport, path: &Path, name: &str) {
    let kind = format::parse_file_name(name);
    // Only regular files are opened: a FIFO or device under a strata name would block or
    // mislead the read (open refuses what it cannot read as a file, too).
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            if kind.is_some() {
                report.findings.push(Finding {
                    file: path.into(),
                    offset: None,
                    detail: format!(
                        "not a regular file ({:?}); strata writes only regular files here",
                        m.file_type()
                    ),
                    damage: true,
                });
            }
            return;
        }
        Err(e) => return report.error(path, Error::io("reading", path, e)),
    }
    let bytes = match map(path) {
        Ok(Some(m)) => m,
        Ok(None) => {
            report.findings.push(Finding {
                file: path.into(),
                offset: Some(0),
                detail: "empty file".into(),
                // Open removes an empty temporary file and rewrites an empty WAL segment's
                // header (a crash between creating and syncing it).
                damage: !matches!(kind, Some(FileKind::Temporary | FileKind::WalSegment(_))),
            });
            return;
        }
        Err(e) => return report.error(path, Error::io("reading", path, e)),
    };
    report.files += 1;
    report.bytes += bytes.len() as u64;
    let result = match kind {
        Some(FileKind::Temporary) => {
            report.findings.push(Finding {
                file: path.into(),
                offset: None,
                detail: "temporary file of an interrupted write (removed at open)".into(),
                damage: false,
            });
            Ok(())
        }
        Some(FileKind::ShardManifest) => {
            format::check_shard_manifest_bytes(&bytes, path).map(|_| ())
        }
        Some(FileKind::Run(_)) => format::check_run_bytes(&bytes, path).map(|_| ()),
        Some(FileKind::Index(_)) => check_index(&bytes, path),
        Some(FileKind::WalSegment(id)) => check_segment(report, &bytes, path, id),
        _ => Ok(()),
    };
    if let Err(e) = result {
        report.error(path, e);
    }
}

fn check_index(bytes: &[u8], path: &Path) -> Result<(), Error> {
    match bytes.get(..8) {
        Some(m) if m == strata_index_inmem::INMEM_MAGIC => {
            strata_index_inmem::check_index_bytes(bytes, path).map(|_| ())
        }
        Some(m) if m == strata_index_disk::DISK_MAGIC => {
            strata_index_disk::check_index_bytes(bytes, path).map(|_| ())
        }
        _ => Err(Error::corrupt(
            path,
            0,
            "index file",
            "unknown magic (rebuilt from its run at open)",
        )),
    }
}

fn check_segment(
    report: &mut VerifyReport,
    bytes: &[u8],
    path: &Path,
    id: SegmentId,
) -> Result<(), Error> {
    let (records, ending) = strata_wal::check_segment_bytes(bytes, path, id)?;
    if ending == Ending::Clean {
        return Ok(());
    }
    // Damage after which intact records follow is damage; otherwise it is a torn tail, which
    // open truncates (in the newest segment).
    let (offset, damage) = match &ending {
        Ending::Damaged { at, .. } => (
            Some(*at),
            strata_wal::intact_header_after(bytes, path, *at).unwrap_or(true),
        ),
        _ => (None, false),
    };
    let what = match &ending {
        Ending::Damaged { detail, .. } => format!("a damaged record ({detail})"),
        _ => "a batch cut short".to_string(),
    };
    let meaning = if damage {
        "intact records follow it, so it is damage, not a torn write"
    } else {
        "a torn tail of the newest segment is truncated at open"
    };
    report.findings.push(Finding {
        file: path.into(),
        offset,
        detail: format!("{records} intact records, then {what}; {meaning}"),
        damage,
    });
    Ok(())
}

/// Checks every file of the database in `dir`.
pub fn verify(dir: &Path) -> std::io::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let db_file = dir.join(format::DB_FILE);
    match std::fs::read(&db_file) {
        Ok(bytes) => match format::check_db_meta_bytes(&bytes, &db_file) {
            Ok(_) => report.files += 1,
            Err(e) => report.error(&db_file, e),
        },
        Err(e) => report.error(&db_file, Error::io("reading", &db_file, e)),
    }
    let mut shards: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir)?.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.is_dir() {
            shards.push(path);
        } else if matches!(
            format::parse_file_name(&entry.file_name().to_string_lossy()),
            Some(FileKind::ShardDir(_))
        ) {
            // A shard name that does not lead to a directory (a dangling link): open cannot
            // list it and refuses the database.
            report.findings.push(Finding {
                file: path,
                offset: None,
                detail: "a shard entry that is not a readable directory (a dangling link?): \
                         open refuses it"
                    .into(),
                damage: true,
            });
        }
    }
    shards.sort();
    for shard in shards {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&shard)?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            check_file(&mut report, &file, &name);
        }
        check_manifest_names(&mut report, &shard);
    }
    Ok(report)
}

/// A shard whose manifest is missing, or names a run whose file is missing, does not open.
fn check_manifest_names(report: &mut VerifyReport, shard: &Path) {
    let is_shard = shard
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(format::parse_file_name);
    if !matches!(is_shard, Some(FileKind::ShardDir(_))) {
        return;
    }
    let path = shard.join(format::SHARD_MANIFEST_FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        let holds_data = std::fs::read_dir(shard).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                let kind = e.file_name().to_str().and_then(format::parse_file_name);
                kind != Some(FileKind::Temporary)
            })
        });
        report.findings.push(Finding {
            file: path,
            offset: None,
            detail: if holds_data {
                "the shard has no manifest but holds data: open refuses it".into()
            } else {
                "a half-made shard folder with no manifest and no data (removed at open)".into()
            },
            damage: holds_data,
        });
        return;
    };
    let Ok(manifest) = format::check_shard_manifest_bytes(&bytes, &path) else {
        return; // reported by check_file
    };
    if let Some(FileKind::ShardDir(id)) = is_shard {
        if id.0 != manifest.shard {
            report.findings.push(Finding {
                file: path.clone(),
                offset: Some(0),
                detail: format!(
                    "the manifest of shard {} is in the directory of shard {}: open refuses it",
                    manifest.shard, id.0
                ),
                damage: true,
            });
        }
    }
    for run in &manifest.runs {
        let file = shard.join(format::run_file_name(run.id));
        if !file.exists() {
            report.findings.push(Finding {
                file,
                offset: None,
                detail: format!("the manifest names run {}, whose file is missing", run.id),
                damage: true,
            });
        }
    }
    for v in &manifest.value_files {
        let file = shard.join(format::segment_file_name(SegmentId(v.segment)));
        if !file.exists() {
            report.findings.push(Finding {
                file,
                offset: None,
                detail: format!(
                    "the manifest names value file {}, whose file is missing: open refuses the shard",
                    v.segment
                ),
                damage: true,
            });
        }
    }
    check_pointers(report, shard, &manifest);
    if let Some(seal) = &manifest.seal {
        check_seal(report, shard, &manifest, seal);
    }
}

/// Every value a live run points at must read back from its value file and match the
/// pointer's checksum (the values are read one at a time).
fn check_pointers(report: &mut VerifyReport, shard: &Path, manifest: &format::ShardManifest) {
    let mut values = format::ValueFileReader::new(shard);
    for run in &manifest.runs {
        if !manifest.value_refs.iter().any(|r| r.run == run.id) {
            continue;
        }
        let run_file = shard.join(format::run_file_name(run.id));
        let (mut bad, mut more) = (Vec::new(), 0u64);
        let _ = format::for_each_run_record(
            shard,
            run.id,
            &mut |r| {
                if let Some(p) = r.pointer {
                    if let Err(e) = values.read(&p) {
                        if bad.len() < MAX_POINTER_FINDINGS {
                            bad.push((r.offset, e));
                        } else {
                            more += 1;
                        }
                    }
                }
                Ok(())
            },
            &mut |_, _, _| {},
        );
        for (offset, e) in bad {
            report.findings.push(Finding {
                file: run_file.clone(),
                offset: Some(offset),
                detail: format!("the record's value pointer does not resolve: {e}"),
                damage: true,
            });
        }
        if more > 0 {
            report.findings.push(Finding {
                file: run_file.clone(),
                offset: None,
                detail: format!("{more} more value pointers of this run do not resolve"),
                damage: true,
            });
        }
    }
}

/// Most findings `verify` reports for the value pointers of one run.
const MAX_POINTER_FINDINGS: usize = 100;

/// A sealed shard's one run must give the digest its manifest records (records read one at a
/// time; a damaged record is reported by the run's own check).
fn check_seal(
    report: &mut VerifyReport,
    shard: &Path,
    manifest: &format::ShardManifest,
    seal: &strata_engine::ShardSeal,
) {
    let mut digest = strata_engine::SealDigest::new();
    let mut values = format::ValueFileReader::new(shard);
    let mut intact = true;
    if let Some(run) = manifest.runs.first() {
        let mut gaps = false;
        let (_, result) = format::for_each_run_record(
            shard,
            run.id,
            &mut |r| {
                match (r.kind, r.value) {
                    (strata_engine::EntryKind::Put, Some(_)) if r.pointer.is_some() => {
                        let p = r.pointer.expect("checked");
                        match values.read(&p) {
                            Ok(value) => digest.add(r.key, &value),
                            Err(_) => intact = false, // reported by check_pointers
                        }
                    }
                    (strata_engine::EntryKind::Put, Some(value)) => digest.add(r.key, value),
                    (strata_engine::EntryKind::Put, None) => intact = false,
                    (strata_engine::EntryKind::Delete, _) => {}
                }
                Ok(())
            },
            &mut |_, _, _| gaps = true,
        );
        intact &= result.is_ok() && !gaps;
    }
    let found = digest.finish();
    if intact && found != *seal {
        report.findings.push(Finding {
            file: shard.join(format::SHARD_MANIFEST_FILE),
            offset: None,
            detail: format!(
                "the seal's digest does not match the shard's contents: sealed {} records, \
                 digest {}; found {} records, digest {}",
                seal.entries,
                hex(&seal.digest),
                found.entries,
                hex(&found.digest)
            ),
            damage: true,
        });
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
