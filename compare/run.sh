#!/usr/bin/env bash
# Runs both workloads on strata, fjall and RocksDB, each engine in its own process, engines
# alternating, ROUNDS rounds (default 3), and prints the medians side by side.
# Needs libclang-dev for RocksDB (apt-get install libclang-dev). Usage: compare/run.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")"
rounds="${1:-3}"
cargo build --release --quiet
bin=./target/release/strata-compare
out=$(mktemp)
for round in $(seq "$rounds"); do
  for workload in ingest state; do
    for engine in strata fjall rocksdb; do
      "$bin" --engine "$engine" --workload "$workload" >>"$out"
    done
  done
  # strata's memory bound: the same ingest with 4x the blocks.
  "$bin" --engine strata --workload ingest --blocks 160000 | sed 's/"workload":"ingest"/"workload":"ingest4x"/' >>"$out"
  echo "round $round done" >&2
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(engine, workload, field):
    vals = [r[field] for r in rows if r["engine"] == engine and r["workload"] == workload and r.get(field) is not None]
    return statistics.median(vals) if vals else None
fields = [("ingest", "payload_mb_per_s", "ingest payload MB/s"), ("ingest", "peak_rss_mb", "ingest peak RSS MiB"),
          ("ingest", "write_amplification", "ingest write amplification"), ("ingest", "stall_ms", "ingest write stalls ms"),
          ("ingest4x", "payload_mb_per_s", "ingest 4x blocks MB/s"), ("ingest4x", "peak_rss_mb", "ingest 4x blocks peak RSS MiB"),
          ("state", "load_mb_per_s", "state load MB/s"), ("state", "hit_lookups_per_s", "present lookups/s"),
          ("state", "miss_lookups_per_s", "absent lookups/s"), ("state", "index_bytes_per_key", "index bytes/key"),
          ("state", "reopen_s", "reopen s"), ("state", "scan_keys_per_s", "scan keys/s"),
          ("state", "scan_extra_rss_mb", "scan extra RSS MiB"), ("state", "peak_rss_mb", "state peak RSS MiB")]
engines = ["strata", "fjall", "rocksdb"]
print("| figure (median of %d) | %s |" % (len([r for r in rows if r["engine"] == "fjall"]) // 2, " | ".join(engines)))
print("| --- |" + " --- |" * len(engines))
for w, f, label in fields:
    cells = []
    for e in engines:
        v = med(e, w, f)
        cells.append("n/a" if v is None else (f"{v:,.0f}" if v >= 1000 else f"{v:.3g}" if v < 10 else f"{v:.1f}"))
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("| ratio (medians, same run) | strata / better peer |")
print("| --- | --- |")
for w, f, label in [("ingest", "payload_mb_per_s", "ingest payload MB/s"), ("state", "load_mb_per_s", "state load MB/s"),
                    ("state", "hit_lookups_per_s", "present lookups/s"), ("state", "miss_lookups_per_s", "absent lookups/s")]:
    s, peers = med("strata", w, f), [med(e, w, f) for e in ("fjall", "rocksdb")]
    peers = [p for p in peers if p]
    if s and peers:
        print(f"| {label} | {s / max(peers):.2f}x |")
s4, s1 = med("strata", "ingest4x", "peak_rss_mb"), med("strata", "ingest", "peak_rss_mb")
if s4 and s1:
    print(f"| strata peak RSS, 4x blocks / 1x | {s4 / s1:.2f}x |")
r, p = med("strata", "state", "peak_rss_mb"), med("rocksdb", "state", "peak_rss_mb")
if r and p:
    print(f"| state peak RSS, strata / RocksDB | {r / p:.2f}x |")
PY
