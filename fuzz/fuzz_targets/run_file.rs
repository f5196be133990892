//! The run reader: header, footer, every record, order and checksums.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = strata_engine::format::check_run_bytes(data, std::path::Path::new("fuzz.run"));
});
