//! The disk index file decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = strata_index_disk::check_index_bytes(data, std::path::Path::new("fuzz.idx"));
});
