//! The manifest decoders (shard manifest and database identity file).
#![no_main]
use strata_engine::manifest::{decode, DbMeta, ShardManifest, DB_MAGIC, SHARD_MAGIC};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("MANIFEST");
    let _ = decode::<ShardManifest>(SHARD_MAGIC, data, path, "shard manifest");
    let _ = decode::<DbMeta>(DB_MAGIC, data, path, "database identity file");
});
