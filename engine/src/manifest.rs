//! Manifests: the database's identity file (`STRATA`) and each shard's `MANIFEST`, the list of
//! live runs and the first live WAL segment. Both are small, framed with magic, version, length
//! and checksum, and replaced atomically (temporary file, fsync, rename, directory fsync).

use std::path::Path;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, OpenMode};
use crate::limits::MAX_MANIFEST_BYTES;

/// Format version of the database identity file and of the manifest of a shard that is not
/// sealed.
pub const MANIFEST_VERSION: u32 = 1;
/// Format version of the manifest of a sealed shard: version 1's payload followed by the seal.
/// Only sealed shards are written in it, so a database that never seals stays readable by
/// builds that know version 1 only, and such a build refuses a sealed shard (rather than
/// letting writes into it).
pub const SEALED_MANIFEST_VERSION: u32 = 2;
/// Format version of the manifest of a shard with value files (whether sealed or not):
/// version 1's payload, the seal if any, the value files and the runs' references into them.
/// Written only while the shard has value files, so shards without separated values keep
/// versions 1 and 2.
pub const VALUE_MANIFEST_VERSION: u32 = 3;
/// Magic of the database identity file.
pub const DB_MAGIC: [u8; 8] = *b"STRATADB";
/// Magic of a shard manifest.
pub const SHARD_MAGIC: [u8; 8] = *b"STRATAMF";

const M_MAGIC: usize = 0;
const M_VERSION: usize = M_MAGIC + 8;
const M_LEN: usize = M_VERSION + 4;
/// Bytes before the payload.
pub const MANIFEST_HEAD_BYTES: usize = M_LEN + 4;
const _: () = assert!(MANIFEST_HEAD_BYTES == 16);

pub(crate) const MANIFEST_LAYOUT: crate::format::Layout = crate::format::Layout {
    name: "manifest",
    offsets: &[M_MAGIC, M_VERSION, M_LEN],
    bytes: MANIFEST_HEAD_BYTES,
    magics: &[DB_MAGIC, SHARD_MAGIC],
    version: Some(MANIFEST_VERSION),
};

/// The database identity: what cannot change between opens.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct DbMeta {
    /// Sharding rule: 0 single, 1 hash, 2 range.
    pub sharding_kind: u8,
    /// Hash: number of shards; range: width of a shard's prefix range.
    pub sharding_param: u64,
}

/// One live run of a shard.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct RunMeta {
    /// Run id (file `run-<id>.run`).
    pub id: u64,
    /// Index kind (`IndexKind`) of its index file.
    pub index_kind: u8,
    /// Records.
    pub entries: u64,
    /// File length.
    pub file_bytes: u64,
}

/// A value file of a shard: a WAL segment below the WAL floor, kept because runs point into
/// it (see [`ValueRef`]).
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ValueFile {
    /// The segment id: the file keeps its WAL segment name.
    pub segment: u64,
    /// The file's length in bytes when it became a value file.
    pub file_bytes: u64,
}

/// How many value bytes one run points at in one value file. The live bytes of a value file
/// are the sum over the live runs; the rest of the file is garbage.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ValueRef {
    /// The run.
    pub run: u64,
    /// The value file (segment id).
    pub segment: u64,
    /// Bytes of values the run points at in that file.
    pub bytes: u64,
}

/// The seal of a shard: every key the shard will ever hold is in its one run, writes are
/// refused, and `digest` fingerprints the contents (see [`SealDigest`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct ShardSeal {
    /// SHA-256 of the shard's live records in key order, as [`SealDigest`] frames them.
    pub digest: [u8; 32],
    /// Live records hashed.
    pub entries: u64,
}

/// A shard's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardManifest {
    /// The shard.
    pub shard: u64,
    /// Next run id to use.
    pub next_run_id: u64,
    /// WAL segments below this are compacted into runs and can be deleted.
    pub wal_floor: u64,
    /// Largest sequence number in any run.
    pub last_seq: u64,
    /// Live runs, newest first.
    pub runs: Vec<RunMeta>,
    /// Set while the shard is sealed (written as [`SEALED_MANIFEST_VERSION`]).
    pub seal: Option<ShardSeal>,
    /// Value files, by ascending segment id.
    pub value_files: Vec<ValueFile>,
    /// Each live run's value bytes per value file (only non-zero ones).
    pub value_refs: Vec<ValueRef>,
}

impl ShardManifest {
    /// Bytes of values the live runs point at in value file `segment`.
    pub fn live_value_bytes(&self, segment: u64) -> u64 {
        self.value_refs
            .iter()
            .filter(|r| r.segment == segment)
            .map(|r| r.bytes)
            .sum()
    }
}

/// The payload of a version-1 shard manifest (and the start of a version-2 one).
#[derive(bincode::Encode, bincode::Decode)]
struct ManifestV1 {
    shard: u64,
    next_run_id: u64,
    wal_floor: u64,
    last_seq: u64,
    runs: Vec<RunMeta>,
}

/// The fingerprint of a sealed shard: SHA-256 over its live records in key order, each framed
/// as `key length (u32 LE) | key | value length (u64 LE) | value`. Feeding the records of a
/// shard's one run in file order gives the digest its manifest records.
#[derive(Clone, Debug, Default)]
pub struct SealDigest {
    hasher: sha2::Sha256,
    entries: u64,
}

impl SealDigest {
    /// An empty digest.
    pub fn new() -> SealDigest {
        SealDigest::default()
    }

    /// Adds one live record; records must come in key order.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        use sha2::Digest;
        self.hasher.update((key.len() as u32).to_le_bytes());
        self.hasher.update(key);
        self.hasher.update((value.len() as u64).to_le_bytes());
        self.hasher.update(value);
        self.entries += 1;
    }

    /// The seal of the records added.
    pub fn finish(self) -> ShardSeal {
        use sha2::Digest;
        ShardSeal {
            digest: self.hasher.finalize().into(),
            entries: self.entries,
        }
    }
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<MAX_MANIFEST_BYTES>()
}

/// Encodes `value` as a framed manifest of format `version`.
pub fn encode<T: bincode::Encode>(magic: [u8; 8], version: u32, value: &T) -> Vec<u8> {
    let payload =
        bincode::encode_to_vec(value, config()).expect("manifest encodes within its limit");
    let mut out = Vec::with_capacity(MANIFEST_HEAD_BYTES + payload.len() + 8);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    crate::format::seal_frame(&mut out);
    out
}

/// Decodes a framed manifest read from `path`: the frame (see [`crate::format::check_frame`],
/// versions `oldest..=newest`), then the payload length against the file length, then the
/// payload with `payload`, which gets the version found. Returns what `payload` returns.
fn decode_with<T>(
    magic: [u8; 8],
    (oldest, newest): (u32, u32),
    bytes: &[u8],
    path: &Path,
    what: &'static str,
    payload: impl FnOnce(u32, &[u8]) -> std::result::Result<(T, usize), bincode::error::DecodeError>,
) -> Result<T> {
    let spec = crate::format::FrameSpec {
        what,
        magic,
        magic_at: M_MAGIC,
        version: newest,
        oldest_version: oldest,
        min_bytes: MANIFEST_HEAD_BYTES + crate::format::FRAME_CHECKSUM_BYTES,
    };
    let body_end = crate::format::check_frame(bytes, path, 0, &spec)?;
    let version = u32::from_le_bytes(bytes[M_VERSION..M_VERSION + 4].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(bytes[M_LEN..M_LEN + 4].try_into().expect("4 bytes")) as usize;
    if len > MAX_MANIFEST_BYTES || MANIFEST_HEAD_BYTES + len != body_end {
        return Err(Error::corrupt(
            path,
            M_LEN as u64,
            what,
            format!(
                "payload length {len} does not match the file length {}",
                bytes.len()
            ),
        ));
    }
    let (value, used) = payload(version, &bytes[MANIFEST_HEAD_BYTES..body_end]).map_err(|e| {
        Error::corrupt(
            path,
            MANIFEST_HEAD_BYTES as u64,
            what,
            format!("payload does not decode: {e}"),
        )
    })?;
    if used != len {
        return Err(Error::corrupt(
            path,
            MANIFEST_HEAD_BYTES as u64,
            what,
            "payload has trailing bytes",
        ));
    }
    Ok(value)
}

/// Decodes a framed manifest of version [`MANIFEST_VERSION`] read from `path`.
pub fn decode<T: bincode::Decode<()>>(
    magic: [u8; 8],
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let versions = (MANIFEST_VERSION, MANIFEST_VERSION);
    decode_with(magic, versions, bytes, path, what, |_, p| {
        bincode::decode_from_slice(p, config())
    })
}

/// Encodes a shard manifest: version 1 unless the shard is sealed.
fn encode_shard(m: &ShardManifest) -> Vec<u8> {
    let base = ManifestV1 {
        shard: m.shard,
        next_run_id: m.next_run_id,
        wal_floor: m.wal_floor,
        last_seq: m.last_seq,
        runs: m.runs.clone(),
    };
    if !m.value_files.is_empty() || !m.value_refs.is_empty() {
        let payload = (
            base,
            m.seal.clone(),
            m.value_files.clone(),
            m.value_refs.clone(),
        );
        return encode(SHARD_MAGIC, VALUE_MANIFEST_VERSION, &payload);
    }
    match &m.seal {
        None => encode(SHARD_MAGIC, MANIFEST_VERSION, &base),
        Some(seal) => encode(SHARD_MAGIC, SEALED_MANIFEST_VERSION, &(base, seal.clone())),
    }
}

fn decode_shard(bytes: &[u8], path: &Path) -> Result<ShardManifest> {
    let versions = (MANIFEST_VERSION, VALUE_MANIFEST_VERSION);
    decode_with(
        SHARD_MAGIC,
        versions,
        bytes,
        path,
        "shard manifest",
        |v, p| {
            type V3 = (ManifestV1, Option<ShardSeal>, Vec<ValueFile>, Vec<ValueRef>);
            let (base, seal, value_files, value_refs, used) = if v == MANIFEST_VERSION {
                let (base, used): (ManifestV1, usize) = bincode::decode_from_slice(p, config())?;
                (base, None, Vec::new(), Vec::new(), used)
            } else if v == SEALED_MANIFEST_VERSION {
                let ((base, seal), used): ((ManifestV1, ShardSeal), usize) =
                    bincode::decode_from_slice(p, config())?;
                (base, Some(seal), Vec::new(), Vec::new(), used)
            } else {
                let ((base, seal, files, refs), used): (V3, usize) =
                    bincode::decode_from_slice(p, config())?;
                (base, seal, files, refs, used)
            };
            let m = ShardManifest {
                shard: base.shard,
                next_run_id: base.next_run_id,
                wal_floor: base.wal_floor,
                last_seq: base.last_seq,
                runs: base.runs,
                seal,
                value_files,
                value_refs,
            };
            Ok((m, used))
        },
    )
}

/// The bytes of a shard manifest file (for tools that rewrite one, and tests).
pub fn encode_shard_manifest(manifest: &ShardManifest) -> Vec<u8> {
    encode_shard(manifest)
}

/// Checks the bytes of a database identity file (`STRATA`).
pub fn check_db_meta_bytes(bytes: &[u8], path: &Path) -> Result<DbMeta> {
    decode(DB_MAGIC, bytes, path, "database identity file")
}

/// Checks the bytes of a shard manifest (`MANIFEST`).
pub fn check_shard_manifest_bytes(bytes: &[u8], path: &Path) -> Result<ShardManifest> {
    decode_shard(bytes, path)
}

/// Reads the bytes of a manifest file (at most [`MAX_MANIFEST_BYTES`] plus framing).
fn read_bytes(fs: &dyn FileSystem, path: &Path, what: &'static str) -> Result<Vec<u8>> {
    let len = fs
        .metadata(path)
        .map_err(|e| Error::io("reading metadata of", path, e))?
        .len;
    if len > (MAX_MANIFEST_BYTES + MANIFEST_HEAD_BYTES + 8) as u64 {
        return Err(Error::corrupt(
            path,
            0,
            what,
            format!("{len} bytes is over the manifest limit"),
        ));
    }
    fs.read(path).map_err(|e| Error::io("reading", path, e))
}

/// Reads a framed manifest file of version [`MANIFEST_VERSION`].
pub fn read<T: bincode::Decode<()>>(
    fs: &dyn FileSystem,
    magic: [u8; 8],
    path: &Path,
    what: &'static str,
) -> Result<T> {
    decode(magic, &read_bytes(fs, path, what)?, path, what)
}

/// Reads a shard manifest file.
pub fn read_shard(fs: &dyn FileSystem, path: &Path) -> Result<ShardManifest> {
    decode_shard(&read_bytes(fs, path, "shard manifest")?, path)
}

/// Replaces the shard manifest at `path` with `manifest`, atomically.
pub fn write_shard(fs: &dyn FileSystem, path: &Path, manifest: &ShardManifest) -> Result<()> {
    write_atomic(fs, path, &encode_shard(manifest))
}

/// Replaces `path` with `bytes` atomically: write `path.tmp`, fsync, rename, fsync the directory.
pub fn write_atomic(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let f = fs
        .open(&tmp, OpenMode::Truncate)
        .map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all_at(bytes, 0)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("syncing", &tmp, e))?;
    drop(f);
    fs.rename(&tmp, path)
        .map_err(|e| Error::io("renaming", &tmp, e))?;
    sync_dir(fs, path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory, so that renames and creations in it are durable.
pub fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_rejects_damage() {
        let m = ShardManifest {
            shard: 3,
            next_run_id: 9,
            wal_floor: 4,
            last_seq: 77,
            runs: vec![RunMeta {
                id: 8,
                index_kind: 1,
                entries: 5,
                file_bytes: 500,
            }],
            seal: None,
            value_files: Vec::new(),
            value_refs: Vec::new(),
        };
        let valued = ShardManifest {
            value_files: vec![ValueFile {
                segment: 3,
                file_bytes: 1_000,
            }],
            value_refs: vec![ValueRef {
                run: 8,
                segment: 3,
                bytes: 600,
            }],
            ..m.clone()
        };
        let sealed = ShardManifest {
            seal: Some(ShardSeal {
                digest: [7; 32],
                entries: 5,
            }),
            ..m.clone()
        };
        let p = Path::new("MANIFEST");
        let cases = [
            (m, MANIFEST_VERSION),
            (sealed, SEALED_MANIFEST_VERSION),
            (valued, VALUE_MANIFEST_VERSION),
        ];
        for (m, version) in cases {
            let bytes = encode_shard(&m);
            assert_eq!(bytes[M_VERSION..M_VERSION + 4], version.to_le_bytes());
            assert_eq!(decode_shard(&bytes, p).unwrap(), m);
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                b[i] ^= 0x40;
                assert!(decode_shard(&b, p).is_err(), "flip at {i} accepted");
            }
            for cut in 0..bytes.len() {
                assert!(decode_shard(&bytes[..cut], p).is_err());
            }
        }
    }

    #[test]
    fn the_seal_digest_frames_each_record() {
        let mut a = SealDigest::new();
        a.add(b"ab", b"c");
        let mut b = SealDigest::new();
        b.add(b"a", b"bc");
        assert_ne!(a.finish().digest, b.finish().digest);
        assert_eq!(SealDigest::new().finish().entries, 0);
    }
}
