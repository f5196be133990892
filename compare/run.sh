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
  echo "round $round done" >&2
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(engine, workload, field):
    vals = [r[field] for r in rows if r["engine"] == engine and r["workload"] == workload and r.get(field) is not None]
    return statistics.median(vals) if vals else None
fields = [("ingest", "payload_mb_per_s", "ingest payload MB/s"), ("ingest", "peak_rss_mb", "ingest peak RSS MiB"),
          ("state", "load_mb_per_s", "state load MB/s"), ("state", "hit_lookups_per_s", "present lookups/s"),
          ("state", "miss_lookups_per_s", "absent lookups/s"), ("state", "index_bytes_per_key", "index bytes/key"),
          ("state", "reopen_s", "reopen s"), ("state", "scan_keys_per_s", "scan keys/s"),
          ("state", "scan_extra_rss_mb", "scan extra RSS MiB"), ("state", "peak_rss_mb", "state peak RSS MiB")]
engines = ["strata", "fjall", "rocksdb"]
print("| figure (median of %d) | %s |" % (len(rows) // 6, " | ".join(engines)))
print("| --- |" + " --- |" * len(engines))
for w, f, label in fields:
    cells = []
    for e in engines:
        v = med(e, w, f)
        cells.append("n/a" if v is None else (f"{v:,.0f}" if v >= 1000 else f"{v:.3g}" if v < 10 else f"{v:.1f}"))
    print(f"| {label} | " + " | ".join(cells) + " |")
PY
