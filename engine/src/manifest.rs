//! Manifests: the database's identity file (`STRATA`) and each shard's `MANIFEST`, the list of
//! live runs and the first live WAL segment. Both are small, framed with magic, version, length
//! and checksum, and replaced atomically (temporary file, fsync, rename, directory fsync).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::limits::MAX_MANIFEST_BYTES;

/// Format version of both manifest files.
pub const MANIFEST_VERSION: u32 = 1;
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

/// A shard's durable state.
#[derive(Clone, Debug, Default, PartialEq, Eq, bincode::Encode, bincode::Decode)]
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
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<MAX_MANIFEST_BYTES>()
}

/// Encodes `value` as a framed manifest.
pub fn encode<T: bincode::Encode>(magic: [u8; 8], value: &T) -> Vec<u8> {
    let payload =
        bincode::encode_to_vec(value, config()).expect("manifest encodes within its limit");
    let mut out = Vec::with_capacity(MANIFEST_HEAD_BYTES + payload.len() + 8);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    crate::format::seal_frame(&mut out);
    out
}

/// Decodes a framed manifest read from `path`: the frame (see [`crate::format::check_frame`]),
/// then the payload length against the file length, then the payload.
pub fn decode<T: bincode::Decode<()>>(
    magic: [u8; 8],
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T> {
    let spec = crate::format::FrameSpec {
        what,
        magic,
        magic_at: M_MAGIC,
        version: MANIFEST_VERSION,
        min_bytes: MANIFEST_HEAD_BYTES + crate::format::FRAME_CHECKSUM_BYTES,
    };
    let body_end = crate::format::check_frame(bytes, path, 0, &spec)?;
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
    let body = &bytes[..body_end];
    let (value, used) = bincode::decode_from_slice(&body[MANIFEST_HEAD_BYTES..], config())
        .map_err(|e| {
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

/// The bytes of a shard manifest file (for tools that rewrite one, and tests).
pub fn encode_shard_manifest(manifest: &ShardManifest) -> Vec<u8> {
    encode(SHARD_MAGIC, manifest)
}

/// Checks the bytes of a database identity file (`STRATA`).
pub fn check_db_meta_bytes(bytes: &[u8], path: &Path) -> Result<DbMeta> {
    decode(DB_MAGIC, bytes, path, "database identity file")
}

/// Checks the bytes of a shard manifest (`MANIFEST`).
pub fn check_shard_manifest_bytes(bytes: &[u8], path: &Path) -> Result<ShardManifest> {
    decode(SHARD_MAGIC, bytes, path, "shard manifest")
}

/// Reads a framed manifest file (at most [`MAX_MANIFEST_BYTES`] plus framing).
pub fn read<T: bincode::Decode<()>>(magic: [u8; 8], path: &Path, what: &'static str) -> Result<T> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io("reading metadata of", path, e))?
        .len();
    if len > (MAX_MANIFEST_BYTES + MANIFEST_HEAD_BYTES + 8) as u64 {
        return Err(Error::corrupt(
            path,
            0,
            what,
            format!("{len} bytes is over the manifest limit"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    decode(magic, &bytes, path, what)
}

/// Replaces `path` with `bytes` atomically: write `path.tmp`, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(|e| Error::io("creating", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| Error::io("writing", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("syncing", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", &tmp, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory, so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
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
        };
        let bytes = encode(SHARD_MAGIC, &m);
        let p = Path::new("MANIFEST");
        assert_eq!(
            decode::<ShardManifest>(SHARD_MAGIC, &bytes, p, "shard manifest").unwrap(),
            m
        );
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(
                decode::<ShardManifest>(SHARD_MAGIC, &b, p, "shard manifest").is_err(),
                "flip at {i} accepted"
            );
        }
        for cut in 0..bytes.len() {
            assert!(
                decode::<ShardManifest>(SHARD_MAGIC, &bytes[..cut], p, "shard manifest").is_err()
            );
        }
    }
}
