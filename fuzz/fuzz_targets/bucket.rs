//! The Stellar bucket reader: record marks, XDR decoding, key encoding and order checks, on a
//! plain stream or (when the input starts with the gzip magic number) a gzip stream.
#![no_main]
use std::io::{Cursor, Read};

use strata_stellar::bucket::BucketReader;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("bucket.xdr");
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    let cursor = Cursor::new(data.to_vec());
    let input: Box<dyn Read + Send> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(cursor))
    } else {
        Box::new(cursor)
    };
    if let Ok(mut reader) = BucketReader::from_reader(path, input, gzip, None) {
        while let Ok(Some(record)) = reader.next_record() {
            assert!(record.xdr.len() >= 4 && !record.key.is_empty());
        }
    }
});
