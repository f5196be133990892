//! The manifest decoders (shard manifest and database identity file).
#![no_main]
use strata_engine::format::{check_db_meta_bytes, check_shard_manifest_bytes};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("MANIFEST");
    let _ = check_shard_manifest_bytes(data, path);
    let _ = check_db_meta_bytes(data, path);
});
