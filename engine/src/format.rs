//! The on-disk format, for tools (`verify`, fuzz targets, format tests) and for the parts that
//! plug into the kernel (WAL, indexes): the frame check every file shares, file names, magics,
//! versions and layout constants, and checks of whole files by kind. `docs/FORMAT.md` describes
//! the same bytes; `tests/tests/format_doc.rs` checks the two agree.
//!
//! Every strata file, and every fixed header or footer inside one, is a *frame*: an 8-byte
//! magic, a `u32` little-endian format version right after it, and an xxh3-64 of every byte
//! before the frame's last 8, stored little-endian in those 8. [`check_frame`] is the one
//! function that checks a frame.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::types::checksum;

pub use crate::index::{INDEX_IDENTITY_OFFSET, INDEX_VERSION_OFFSET};
pub use crate::layout::{
    index_file_name, parse as parse_file_name, run_file_name, segment_file_name, shard_dir_name,
    tmp_name, FileKind, DB_FILE, LOCK_FILE, SHARD_MANIFEST_FILE, TMP_SUFFIX,
};
pub use crate::manifest::{
    check_db_meta_bytes, check_shard_manifest_bytes, encode_shard_manifest, DbMeta, RunMeta,
    SealDigest, ShardManifest, ShardSeal, DB_MAGIC, MANIFEST_HEAD_BYTES, MANIFEST_VERSION,
    SEALED_MANIFEST_VERSION, SHARD_MAGIC,
};
pub use crate::run::{
    check_run_bytes, RECORD_CHECKSUM_BYTES as RUN_RECORD_CHECKSUM_BYTES,
    RECORD_HEADER_BYTES as RUN_RECORD_HEADER_BYTES, RUN_FOOTER_BYTES, RUN_FOOTER_MAGIC,
    RUN_HEADER_BYTES, RUN_MAGIC, RUN_VERSION,
};

/// A fixed byte layout, for the check that `docs/FORMAT.md` agrees with the code: the offset of
/// each field in order (field `i` spans `offsets[i]..offsets[i + 1]`, the last one up to
/// `bytes`), the magic and the version where the structure has them.
#[derive(Copy, Clone, Debug)]
pub struct Layout {
    /// The name of the table in `docs/FORMAT.md` (`<!-- layout: NAME -->` before it).
    pub name: &'static str,
    /// Offsets of the fixed fields, increasing.
    pub offsets: &'static [usize],
    /// Bytes of the fixed part.
    pub bytes: usize,
    /// Magics the structure may start with.
    pub magics: &'static [[u8; 8]],
    /// Format version, where the structure has one.
    pub version: Option<u32>,
}

impl Layout {
    /// `(offset, size)` of every fixed field, in order.
    pub fn fields(&self) -> Vec<(usize, usize)> {
        let ends = self.offsets.iter().skip(1).copied().chain([self.bytes]);
        self.offsets
            .iter()
            .zip(ends)
            .map(|(&o, e)| (o, e - o))
            .collect()
    }
}

/// Every fixed layout of the kernel's own files.
pub const LAYOUTS: &[Layout] = &[
    crate::run::RUN_HEADER_LAYOUT,
    crate::run::RUN_RECORD_LAYOUT,
    crate::run::RUN_FOOTER_LAYOUT,
    crate::manifest::MANIFEST_LAYOUT,
    crate::types::VALUE_POINTER_LAYOUT,
];

/// One record of a run, as [`for_each_run_record`] hands it over.
#[derive(Copy, Clone, Debug)]
pub struct RunRecord<'a> {
    /// The key.
    pub key: &'a [u8],
    /// Put or delete.
    pub kind: crate::types::EntryKind,
    /// The adapter tag.
    pub tag: u8,
    /// The value (empty for a delete), or `None` when the record fails its checksum. For a
    /// record whose value lives in a value file, the pointer's bytes (see `pointer`).
    pub value: Option<&'a [u8]>,
    /// Where the value lives, when the record holds a value pointer (and it decodes).
    pub pointer: Option<crate::types::ValuePointer>,
    /// Offset of the record in the run file.
    pub offset: u64,
    /// The record's sequence number.
    pub seq: crate::types::SeqNo,
}

/// Reads run `id` of the shard directory `dir` and hands every intact record to `visit` in
/// file order, for tools that salvage data (`strata repair`). Nothing is trusted but each
/// record's own checksum (over its header, key and value): a damaged run header or footer is
/// reported to `gap` and the records between them are still read; a record whose header frames
/// it but whose checksum fails is handed over without its value (`value: None`) when the next
/// record starts where it ends; anything else that does not parse is skipped up to the next
/// offset where an intact record starts (a byte-by-byte search), and the skipped span is
/// reported to `gap` as `(offset, bytes, what was wrong at offset)`. The run is read through a
/// map whose pages are released behind the read. Returns how many records were handed over,
/// and the error that stopped the read (a file that cannot be opened or read, a run of another
/// format version, or an error from `visit`).
pub fn for_each_run_record(
    dir: &Path,
    id: u64,
    visit: &mut dyn FnMut(RunRecord<'_>) -> Result<()>,
    gap: &mut dyn FnMut(u64, u64, &Error),
) -> (u64, Result<()>) {
    let mut count = 0;
    let result = salvage_run(
        dir,
        id,
        &mut |r| {
            count += 1;
            visit(r)
        },
        gap,
    );
    (count, result)
}

/// Reads the values run records of one shard directory point at, from their value files (with
/// the host's file system), each checked against the checksum stored after it in the file and
/// against the pointer's: for tools (`verify`, `repair`) that read files without opening the
/// database. Keeps the last value file it read open (one descriptor): a run's pointers go to
/// few files, in runs of the same one.
pub struct ValueFileReader {
    dir: std::path::PathBuf,
    open: Option<(crate::types::SegmentId, Arc<dyn crate::fs::FsFile>)>,
}

impl ValueFileReader {
    /// A reader of the value files of the shard directory `dir`.
    pub fn new(dir: &Path) -> ValueFileReader {
        ValueFileReader {
            dir: dir.to_path_buf(),
            open: None,
        }
    }

    /// The value `p` points at, checked.
    pub fn read(&mut self, p: &crate::types::ValuePointer) -> Result<Vec<u8>> {
        use crate::fs::FileSystem;
        let path = self.dir.join(segment_file_name(p.segment));
        let file = match &self.open {
            Some((seg, file)) if *seg == p.segment => file.clone(),
            _ => {
                let file = crate::fs::StdFs
                    .open(&path, crate::fs::OpenMode::Read)
                    .map_err(|e| Error::io("opening value file", &path, e))?;
                self.open = Some((p.segment, file.clone()));
                file
            }
        };
        read_pointed_from(file.as_ref(), &path, p)
    }
}

/// Reads the value `p` points at from `file`, its value file at `path`, and checks it against
/// the checksum stored after it and the pointer's.
pub(crate) fn read_pointed_from(
    file: &dyn crate::fs::FsFile,
    path: &Path,
    p: &crate::types::ValuePointer,
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; p.len as usize + 8];
    file.read_exact_at(&mut buf, p.offset).map_err(|e| {
        Error::io(
            "reading",
            path,
            std::io::Error::new(e.kind(), format!("the value at offset {}: {e}", p.offset)),
        )
    })?;
    let (value, sum) = buf.split_at(p.len as usize);
    let stored = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
    let actual = checksum(value);
    for (expected, what) in [
        (stored, "value in a value file"),
        (p.checksum, "value a run points at"),
    ] {
        if expected != actual {
            return Err(Error::ChecksumMismatch {
                file: path.to_path_buf(),
                offset: p.offset,
                what,
                expected,
                actual,
            });
        }
    }
    buf.truncate(p.len as usize);
    Ok(buf)
}

/// Whether a run file's header and footer both match their own checksums.
fn frames_check(bytes: &[u8]) -> bool {
    use crate::run::{RUN_FOOTER_BYTES, RUN_HEADER_BYTES};
    bytes.len() >= RUN_HEADER_BYTES + RUN_FOOTER_BYTES
        && frame_sums(&bytes[..RUN_HEADER_BYTES])
        && frame_sums(&bytes[bytes.len() - RUN_FOOTER_BYTES..])
}

/// Whether `frame` (a whole frame, checksum last) matches its own checksum, whatever its magic
/// and version say: tells a frame of another format version (self-consistent) from a damaged
/// one, for salvage and for torn-write detection. False for a frame shorter than its checksum.
pub fn frame_sums(frame: &[u8]) -> bool {
    frame.len() >= FRAME_CHECKSUM_BYTES && {
        let (body, sum) = frame.split_at(frame.len() - FRAME_CHECKSUM_BYTES);
        checksum(body).to_le_bytes() == sum
    }
}

fn salvage_run(
    dir: &Path,
    id: u64,
    visit: &mut dyn FnMut(RunRecord<'_>) -> Result<()>,
    gap: &mut dyn FnMut(u64, u64, &Error),
) -> Result<()> {
    use crate::fs::FileSystem;
    use crate::run::{RecordMeta, RUN_HEADER_BYTES};
    const RELEASE_EVERY: usize = 1 << 20;
    let path = dir.join(run_file_name(id));
    let fs = crate::fs::StdFs;
    let file = fs
        .open(&path, crate::fs::OpenMode::Read)
        .map_err(|e| Error::io("opening", &path, e))?;
    let map = file.map().map_err(|e| Error::io("mapping", &path, e))?;
    let bytes = map.bytes();
    // Header and footer that check against their own checksums but name another version are
    // another format: refused. Damaged ones are reported and the records are read from the
    // header's end to the file's end (the damaged footer is then skipped like any damage).
    let data_end = match crate::run::read_run_frame(&fs, &path, id) {
        Ok((_, footer, _)) => footer.data_end as usize,
        Err(e @ Error::Io { .. }) => return Err(e),
        Err(e @ Error::UnsupportedVersion { .. }) if frames_check(bytes) => return Err(e),
        Err(e) => {
            gap(e.offset().unwrap_or(0), 0, &e);
            bytes.len()
        }
    };
    let data = &bytes[..data_end.min(bytes.len())];
    let data_end = data.len();
    let mut offset = RUN_HEADER_BYTES;
    let mut released = 0;
    while offset < data_end {
        if offset - released >= RELEASE_EVERY {
            map.release(released, offset - released);
            released = offset;
        }
        let e = match crate::run::parse_record(data, &path, offset as u64) {
            Ok(rec) => {
                visit(RunRecord {
                    key: rec.key,
                    kind: rec.meta.kind,
                    tag: rec.meta.tag,
                    value: Some(rec.value),
                    pointer: rec.pointer(&path).ok().flatten(),
                    offset: offset as u64,
                    seq: rec.meta.seq,
                })?;
                offset = rec.next as usize;
                continue;
            }
            Err(e) => e,
        };
        // A header that frames a record ending where the next intact one starts (or at the
        // data end): the record is damaged in its key or value only; hand over its key.
        let framed = RecordMeta::decode(&data[offset..], &path, offset as u64)
            .ok()
            .map(|m| (m, offset + m.record_len() as usize))
            .filter(|(_, next)| {
                *next == data_end
                    || (*next < data_end
                        && crate::run::parse_record(data, &path, *next as u64).is_ok())
            });
        if let Some((meta, next)) = framed {
            let key_at = offset + crate::run::RECORD_HEADER_BYTES;
            visit(RunRecord {
                key: &data[key_at..key_at + meta.key_len],
                kind: meta.kind,
                tag: meta.tag,
                value: None,
                pointer: None,
                offset: offset as u64,
                seq: meta.seq,
            })?;
            offset = next;
            continue;
        }
        let resume = (offset + 1..data_end)
            .find(|p| crate::run::parse_record(data, &path, *p as u64).is_ok())
            .unwrap_or(data_end);
        gap(offset as u64, (resume - offset) as u64, &e);
        offset = resume;
    }
    Ok(())
}

/// Bytes of a frame's checksum (xxh3-64, little-endian), always the frame's last 8.
pub const FRAME_CHECKSUM_BYTES: usize = 8;

/// What a frame must hold.
#[derive(Copy, Clone, Debug)]
pub struct FrameSpec {
    /// What the frame is, for errors ("run header", "shard manifest").
    pub what: &'static str,
    /// The magic.
    pub magic: [u8; 8],
    /// Offset of the magic in the frame; the version follows it.
    pub magic_at: usize,
    /// The newest version this build reads.
    pub version: u32,
    /// The oldest version this build reads (equal to `version` for frames with one version).
    pub oldest_version: u32,
    /// Fewest bytes the frame has, checksum included.
    pub min_bytes: usize,
}

/// Checks the frame `bytes`, found at offset `at` of the file `path`, in this order:
/// 1. at least `spec.min_bytes`;
/// 2. with the right magic, the version: another one is an [`Error::UnsupportedVersion`]
///    whatever the rest holds (a newer format may checksum differently);
/// 3. the checksum in the last 8 bytes over every byte before them: an
///    [`Error::ChecksumMismatch`] (damage, even where it hit the magic);
/// 4. the magic: an intact frame with another magic is not this kind of file.
///
/// Returns the offset of the checksum within `bytes`.
pub fn check_frame(bytes: &[u8], path: &Path, at: u64, spec: &FrameSpec) -> Result<usize> {
    let min = spec
        .min_bytes
        .max(spec.magic_at + 12)
        .max(FRAME_CHECKSUM_BYTES);
    if bytes.len() < min {
        return Err(Error::corrupt(
            path,
            at,
            spec.what,
            format!("{} bytes is shorter than its {min}-byte frame", bytes.len()),
        ));
    }
    let m = spec.magic_at;
    let magic_ok = bytes[m..m + 8] == spec.magic;
    let found = u32::from_le_bytes(bytes[m + 8..m + 12].try_into().expect("4 bytes"));
    if magic_ok && !(spec.oldest_version..=spec.version).contains(&found) {
        return Err(Error::UnsupportedVersion {
            file: path.into(),
            what: spec.what,
            found,
            supported: spec.version,
        });
    }
    let sum_at = bytes.len() - FRAME_CHECKSUM_BYTES;
    let expected = u64::from_le_bytes(bytes[sum_at..].try_into().expect("8 bytes"));
    let actual = checksum(&bytes[..sum_at]);
    if expected != actual {
        return Err(Error::ChecksumMismatch {
            file: path.into(),
            offset: at + sum_at as u64,
            what: spec.what,
            expected,
            actual,
        });
    }
    if !magic_ok {
        return Err(Error::corrupt(path, at + m as u64, spec.what, "bad magic"));
    }
    Ok(sum_at)
}

/// Appends the frame checksum of `frame` (every byte so far) to it.
pub fn seal_frame(frame: &mut Vec<u8>) {
    let sum = checksum(frame);
    frame.extend_from_slice(&sum.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: FrameSpec = FrameSpec {
        what: "test frame",
        magic: *b"STRATATS",
        magic_at: 0,
        version: 3,
        oldest_version: 3,
        min_bytes: 20,
    };

    fn frame() -> Vec<u8> {
        let mut f = b"STRATATS".to_vec();
        f.extend_from_slice(&3u32.to_le_bytes());
        seal_frame(&mut f);
        f
    }

    #[test]
    fn a_frame_checks_length_version_checksum_then_magic() {
        let p = Path::new("f");
        assert_eq!(check_frame(&frame(), p, 0, &SPEC).unwrap(), 12);
        let short = &frame()[..19];
        let e = check_frame(short, p, 0, &SPEC).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        // A newer version is named as such, checksum or not.
        let mut newer = frame();
        newer[8] = 4;
        let e = check_frame(&newer, p, 0, &SPEC).unwrap_err();
        assert!(
            matches!(e, Error::UnsupportedVersion { found: 4, .. }),
            "{e}"
        );
        // Damage is damage, wherever it is.
        for i in [0, 12] {
            let mut flipped = frame();
            flipped[i] ^= 1;
            let e = check_frame(&flipped, p, 100, &SPEC).unwrap_err();
            assert!(
                matches!(e, Error::ChecksumMismatch { offset: 112, .. }),
                "{e}"
            );
        }
        // An intact frame of another kind.
        let mut other = b"STRATAXX".to_vec();
        other.extend_from_slice(&3u32.to_le_bytes());
        seal_frame(&mut other);
        let e = check_frame(&other, p, 0, &SPEC).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }
}
