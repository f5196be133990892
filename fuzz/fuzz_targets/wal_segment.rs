//! The WAL decoder: recovery's walk over a segment, then every value's checksum.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = strata_wal::check_segment_bytes(data, std::path::Path::new("fuzz.log"), strata_engine::SegmentId(1));
});
