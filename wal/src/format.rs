//! The WAL's byte layout (see `docs/FORMAT.md`): a 32-byte segment header, then records of a
//! 32-byte header (with its own checksum over header and key), the key, the value, and an
//! 8-byte checksum of the value. All integers little-endian.

use std::path::Path;

use strata_engine::format::{check_frame, FrameSpec, Layout};
use strata_engine::{checksum, EntryKind, Error, Result, SeqNo, MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// Format version of WAL segments.
pub const WAL_VERSION: u32 = 1;
/// Magic at the start of every segment.
pub const WAL_MAGIC: [u8; 8] = *b"STRATAWL";

const S_MAGIC: usize = 0;
const S_VERSION: usize = S_MAGIC + 8;
const S_RESERVED: usize = S_VERSION + 4;
const S_SEGMENT: usize = S_RESERVED + 4;
const S_CHECKSUM: usize = S_SEGMENT + 8;
/// Bytes of the segment header; the first record starts here.
pub const SEGMENT_HEADER_BYTES: usize = S_CHECKSUM + 8;
const _: () = assert!(SEGMENT_HEADER_BYTES == 32);

const R_CHECKSUM: usize = 0;
const R_SEQ: usize = R_CHECKSUM + 8;
const R_VALUE_LEN: usize = R_SEQ + 8;
const R_KEY_LEN: usize = R_VALUE_LEN + 4;
const R_KIND: usize = R_KEY_LEN + 2;
const R_TAG: usize = R_KIND + 1;
const R_FLAGS: usize = R_TAG + 1;
const R_RESERVED: usize = R_FLAGS + 1;
/// Bytes of a record header.
pub const RECORD_HEADER_BYTES: usize = R_RESERVED + 7;
const _: () = assert!(RECORD_HEADER_BYTES == 32);
/// The segment header's layout.
pub const SEGMENT_HEADER_LAYOUT: Layout = Layout {
    name: "wal.segment_header",
    offsets: &[S_MAGIC, S_VERSION, S_RESERVED, S_SEGMENT, S_CHECKSUM],
    bytes: SEGMENT_HEADER_BYTES,
    magics: &[WAL_MAGIC],
    version: Some(WAL_VERSION),
};

/// The record header's layout.
pub const RECORD_HEADER_LAYOUT: Layout = Layout {
    name: "wal.record",
    offsets: &[
        R_CHECKSUM,
        R_SEQ,
        R_VALUE_LEN,
        R_KEY_LEN,
        R_KIND,
        R_TAG,
        R_FLAGS,
        R_RESERVED,
    ],
    bytes: RECORD_HEADER_BYTES,
    magics: &[],
    version: None,
};

/// Bytes of the value checksum that ends a record.
pub const VALUE_CHECKSUM_BYTES: usize = 8;

/// Flag: more records of the same batch follow this one.
pub const FLAG_BATCH_CONTINUES: u8 = 1;

/// A decoded, checked record header.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Sequence number.
    pub seq: SeqNo,
    /// Value length.
    pub value_len: u32,
    /// Key length.
    pub key_len: u16,
    /// Put or delete.
    pub kind: EntryKind,
    /// Adapter tag.
    pub tag: u8,
    /// Flags ([`FLAG_BATCH_CONTINUES`]).
    pub flags: u8,
}

impl RecordHeader {
    /// Bytes of the whole record: header, key, value, value checksum.
    pub fn record_len(&self) -> u64 {
        (RECORD_HEADER_BYTES
            + self.key_len as usize
            + self.value_len as usize
            + VALUE_CHECKSUM_BYTES) as u64
    }

    /// Whether more records of this batch follow.
    pub fn continues(&self) -> bool {
        self.flags & FLAG_BATCH_CONTINUES != 0
    }

    /// Encodes the header for `key`, checksum included.
    pub fn encode(&self, key: &[u8]) -> [u8; RECORD_HEADER_BYTES] {
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[R_SEQ..R_SEQ + 8].copy_from_slice(&self.seq.0.to_le_bytes());
        h[R_VALUE_LEN..R_VALUE_LEN + 4].copy_from_slice(&self.value_len.to_le_bytes());
        h[R_KEY_LEN..R_KEY_LEN + 2].copy_from_slice(&self.key_len.to_le_bytes());
        h[R_KIND] = self.kind as u8;
        h[R_TAG] = self.tag;
        h[R_FLAGS] = self.flags;
        let c = header_checksum(&h, key);
        h[R_CHECKSUM..R_CHECKSUM + 8].copy_from_slice(&c.to_le_bytes());
        h
    }
}

fn header_checksum(h: &[u8], key: &[u8]) -> u64 {
    let mut x = xxhash_rust::xxh3::Xxh3::new();
    x.update(&h[R_SEQ..RECORD_HEADER_BYTES]);
    x.update(key);
    x.digest()
}

/// Why a record header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The fields are impossible (unknown kind or flag, non-zero reserved bytes, lengths over
    /// the limits).
    Invalid(String),
    /// The checksum over header and key does not match.
    Checksum {
        /// Stored.
        expected: u64,
        /// Computed.
        actual: u64,
    },
}

/// Decodes the fixed fields of `h` (at least [`RECORD_HEADER_BYTES`]) without the checksum:
/// refuses impossible values, so a key length can be trusted enough to read the key.
pub fn decode_fields(h: &[u8]) -> Result<RecordHeader, HeaderProblem> {
    if h.len() < RECORD_HEADER_BYTES {
        return Err(HeaderProblem::Invalid("header cut short".into()));
    }
    let kind = EntryKind::from_byte(h[R_KIND])
        .ok_or_else(|| HeaderProblem::Invalid(format!("unknown kind {}", h[R_KIND])))?;
    let flags = h[R_FLAGS];
    if flags & !FLAG_BATCH_CONTINUES != 0 {
        return Err(HeaderProblem::Invalid(format!(
            "unknown flags {flags:#04x}"
        )));
    }
    if h[R_RESERVED..RECORD_HEADER_BYTES].iter().any(|&b| b != 0) {
        return Err(HeaderProblem::Invalid("reserved bytes are not zero".into()));
    }
    let key_len = u16::from_le_bytes([h[R_KEY_LEN], h[R_KEY_LEN + 1]]);
    let value_len =
        u32::from_le_bytes(h[R_VALUE_LEN..R_VALUE_LEN + 4].try_into().expect("4 bytes"));
    if key_len as usize > MAX_KEY_BYTES || value_len as usize > MAX_VALUE_BYTES {
        return Err(HeaderProblem::Invalid(format!(
            "key length {key_len} or value length {value_len} over the limits"
        )));
    }
    if kind == EntryKind::Delete && value_len != 0 {
        return Err(HeaderProblem::Invalid("a delete with a value".into()));
    }
    let seq = SeqNo(u64::from_le_bytes(
        h[R_SEQ..R_SEQ + 8].try_into().expect("8 bytes"),
    ));
    Ok(RecordHeader {
        seq,
        value_len,
        key_len,
        kind,
        tag: h[R_TAG],
        flags,
    })
}

/// Checks the header checksum of `h` over the header and `key`.
pub fn verify_checksum(h: &[u8], key: &[u8]) -> Result<(), HeaderProblem> {
    let expected = u64::from_le_bytes(h[R_CHECKSUM..R_CHECKSUM + 8].try_into().expect("8 bytes"));
    let actual = header_checksum(h, key);
    if expected == actual {
        Ok(())
    } else {
        Err(HeaderProblem::Checksum { expected, actual })
    }
}

/// Encodes a segment header.
pub fn encode_segment_header(segment: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[S_MAGIC..S_MAGIC + 8].copy_from_slice(&WAL_MAGIC);
    h[S_VERSION..S_VERSION + 4].copy_from_slice(&WAL_VERSION.to_le_bytes());
    h[S_SEGMENT..S_SEGMENT + 8].copy_from_slice(&segment.to_le_bytes());
    let c = checksum(&h[..S_CHECKSUM]);
    h[S_CHECKSUM..].copy_from_slice(&c.to_le_bytes());
    h
}

const SEGMENT_FRAME: FrameSpec = FrameSpec {
    what: "WAL segment header",
    magic: WAL_MAGIC,
    magic_at: S_MAGIC,
    version: WAL_VERSION,
    oldest_version: WAL_VERSION,
    min_bytes: SEGMENT_HEADER_BYTES,
};
// The segment header is a frame: version after the magic, checksum last.
const _: () = assert!(S_VERSION == S_MAGIC + 8 && S_CHECKSUM + 8 == SEGMENT_HEADER_BYTES);

/// Checks a segment header (the frame, see [`check_frame`]) against the segment number of its
/// file name.
pub fn check_segment_header(h: &[u8], path: &Path, segment: u64) -> Result<()> {
    let h = h.get(..SEGMENT_HEADER_BYTES).unwrap_or(h);
    check_frame(h, path, 0, &SEGMENT_FRAME)?;
    let id = u64::from_le_bytes(h[S_SEGMENT..S_SEGMENT + 8].try_into().expect("8 bytes"));
    if id != segment {
        return Err(Error::corrupt(
            path,
            S_SEGMENT as u64,
            "WAL segment header",
            format!("header names segment {id}, file name says {segment}"),
        ));
    }
    Ok(())
}
