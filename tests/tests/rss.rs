//! Peak RSS of a child process ingesting out-of-order history blocks into range shards with
//! automatic compaction: under 256 MiB at 2 GiB, and 4 GiB raises it by less than 10%. The
//! child's events show one compaction at a time, each start matched by an end.

use std::process::Command;

fn ingest(blocks: u64) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata_child"))
        .arg("ingest")
        .arg(dir.path().join("db"))
        .arg(blocks.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    let (peak, max_concurrent, balanced, compactions): (u64, u64, bool, u64) = (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    );
    assert_eq!(max_concurrent, 1, "{blocks} blocks: compactions overlapped");
    assert!(
        balanced,
        "{blocks} blocks: a compaction start without an end"
    );
    (peak, compactions)
}

#[test]
fn ingest_peak_rss_is_bounded_and_flat_from_2_to_4_gib() {
    // Values of 4 to 60 KiB average 32 KiB: 65,536 blocks are 2 GiB.
    let (peak_2, compactions_2) = ingest(65_536);
    let (peak_4, compactions_4) = ingest(131_072);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!("peak RSS: 2 GiB {:.1} MiB ({compactions_2} compactions), 4 GiB {:.1} MiB ({compactions_4} compactions)", mib(peak_2), mib(peak_4));
    assert!(
        peak_2 < 256 << 20,
        "2 GiB ingest peaked at {:.1} MiB",
        mib(peak_2)
    );
    assert!(
        (peak_4 as f64) < peak_2 as f64 * 1.10,
        "4 GiB peaked at {:.1} MiB, 2 GiB at {:.1} MiB",
        mib(peak_4),
        mib(peak_2)
    );
    assert!(compactions_4 > compactions_2);
}
