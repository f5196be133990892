//! Stellar bucket files with stellar-core's semantics, for strata.
//!
//! - [`key`]: an encoding of `LedgerKey`s whose byte order is stellar-core's
//!   `LedgerEntryIdCmp`, so a strata store (ordered by bytes) keeps ledger entries in the order
//!   buckets do.
//! - [`bucket`]: a streaming reader (plain or gzipped; checks record marks, decodes every
//!   record, checks key order and the bucket's SHA-256) and a writer with its own record
//!   framing. Entries keep their original XDR bytes; nothing is re-encoded.
//! - [`merge`]: stellar-core's merge of an older and a newer bucket, streamed, byte-identical
//!   output.
//! - [`archive`]: history archive states, bucket paths, the bucket list's merge schedule and
//!   the check that re-performs every merge an archive shows.
//! - [`fetch`]: a checkpoint of an archive over HTTP, streamed into a local folder (parallel
//!   downloads, gunzip and SHA-256 on the fly, retries), reusing the buckets it holds.
//! - [`store`]: the ledger store, a bucket list's state in a strata database, with lookups by
//!   `LedgerKey` and per-type scans (through strata's one k-way merge).
//!
//! The format code and the store live in one crate: a Stellar node embeds both, and the store
//! is the only user of the format code besides the command line and the fuzz targets, so a
//! split would add a crate boundary without an embedder who wants only one half.
//!
//! Memory: a reader holds one record (at most [`MAX_RECORD_BYTES`]) and its key, plus a
//! 64 KiB read buffer and the gzip decoder's window; a merge holds two readers and a 64 KiB
//! write buffer. Nothing grows with the size of a bucket.

pub mod archive;
pub mod bucket;
pub mod error;
pub mod fetch;
pub mod key;
mod limits;
pub mod merge;
pub mod store;

pub use archive::{Archive, HistoryArchiveState};
pub use bucket::{BucketMeta, BucketReader, BucketSummary, BucketWriter, EntryKind, Record};
pub use error::{Error, Result};
pub use limits::*;
pub use stellar_xdr;
