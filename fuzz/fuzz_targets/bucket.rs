//! The Stellar bucket reader: record marks, XDR decoding, key encoding and order checks, on a
//! plain stream or (when the input starts with the gzip magic number) a gzip stream.
#![no_main]
use std::io::Cursor;

use strata_stellar::bucket::BucketReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("bucket.xdr");
    if let Ok(mut reader) = BucketReader::from_reader(path, Cursor::new(data.to_vec()), None) {
        while let Ok(Some(record)) = reader.next_record() {
            assert!(record.xdr.len() >= 4 && !record.key.is_empty());
        }
    }
});
