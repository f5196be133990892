//! stellar-core's rules on buckets and archives these tests build (one test binary: each
//! integration test file is a binary of its own, linked in full).

mod common;
mod rules {
    mod archive_plan;
    mod merge_rules;
}
