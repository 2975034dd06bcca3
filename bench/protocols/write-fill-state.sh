#!/usr/bin/env bash
# One NBD fio row against several Tidemark builds, alternating, each run on a fresh server whose
# volume the same fio job filled first: what the page cache's state after the fill (the folios the
# fill's writes left behind) does to a row, apart from the transport (docs/BENCHMARKS.md, session 24).
#   BUILDS="DIR1 DIR2 ..." bench/protocols/write-fill-state.sh     checkouts; the first is the reference
#   REPS=4 RUNTIME=10 RW=write BS=1m QD=32 FILL_BS=1m               the defaults
#   DROP=1 ...    empties the page cache between the fill and the timed run (root: it writes
#                 /proc/sys/vm/drop_caches, which drops every clean page of the machine), so every
#                 build starts the row from the same state
#   DATA_ROOT=DIR ...   the servers' data directories go under DIR (default /tmp): the same row on
#                 another file system, e.g. an XFS mounted from a loop device (session 25)
# Each repetition runs the builds in turn, in reverse order every other repetition. Prints IOPS and the
# server's CPU per I/O for each run, then each build's mean and its ratio to the first build's.
# Only 127.0.0.1 is used; every server it starts is stopped and its data removed, also on failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
read -r -a builds <<< "${BUILDS:?BUILDS=\"DIR1 DIR2 ...\": the checkouts to compare}"
REPS=${REPS:-4} RUNTIME=${RUNTIME:-10} RW=${RW:-write} BS=${BS:-1m} QD=${QD:-32} FILL_BS=${FILL_BS:-1m}
for tool in fio curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
if [ "${DROP:-0}" = 1 ] && [ ! -w /proc/sys/vm/drop_caches ]; then
  echo "DROP=1 needs root (it writes /proc/sys/vm/drop_caches)" >&2; exit 2
fi

. "$here/tidemark-serve.sh"
D="$(mktemp -d "${DATA_ROOT:-/tmp}/tidemark-fill-state.XXXXXX")"
TM_PID=
cleanup() {
  if [ -n "$TM_PID" ]; then kill "$TM_PID" 2>/dev/null || true; wait "$TM_PID" 2>/dev/null || true; fi
  rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_one BUILD_DIR: serve from it, fill, optionally drop the cache, time the row; sets IOPS and CPU_US.
run_one() {
  root=$(cd "$1" && pwd)
  rm -rf "$D/tm"
  tidemark_serve "$D/tm" off "$D/tidemark.log"
  tm_api -X POST "${TM_HTTP}api/v1/volumes" -d '{"name":"bench","sizeBytes":4294967296}' >/dev/null
  tm_api -X POST "${TM_HTTP}api/v1/exports" -d '{"target":"bench","name":"bench","protocol":"nbd"}' >/dev/null
  local uri="nbd://$TM_NBD/bench"
  fio --name=fill --ioengine=nbd --uri="$uri" --rw=write --bs="$FILL_BS" --iodepth=32 --size=4g >/dev/null
  sync
  [ "${DROP:-0}" = 1 ] && echo 3 > /proc/sys/vm/drop_caches
  local before after iops
  before=$(cpu_ticks "$TM_PID")
  iops=$(fio --name=row --ioengine=nbd --uri="$uri" --rw="$RW" --bs="$BS" --iodepth="$QD" --size=4g \
    --time_based --runtime="$RUNTIME" --output-format=json | python3 -c '
import json, sys
text = sys.stdin.read()
job = json.loads(text[text.index("{"):])["jobs"][0]  # fio may print a note before the JSON
print(round(job["read"]["iops"] + job["write"]["iops"]))')
  after=$(cpu_ticks "$TM_PID")
  kill "$TM_PID"; wait "$TM_PID" 2>/dev/null || true; TM_PID=
  IOPS=$iops CPU_US=$(cpu_us_per_io $((after - before)) "$iops" "$RUNTIME")
}

echo "row: $RW bs=$BS qd=$QD, fill bs=$FILL_BS, DROP=${DROP:-0}, RUNTIME=$RUNTIME REPS=$REPS; $(date -u +%FT%RZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$D/results"
for rep in $(seq "$REPS"); do
  order=("${builds[@]}")
  if [ $((rep % 2)) = 0 ]; then
    order=(); for ((i = ${#builds[@]} - 1; i >= 0; i--)); do order+=("${builds[i]}"); done
  fi
  for build in "${order[@]}"; do
    run_one "$build"
    printf '%s\t%s\t%s\t%s\n' "$rep" "$build" "$IOPS" "$CPU_US" | tee -a "$D/results"
  done
done

python3 - "$D/results" "${builds[@]}" <<'EOF'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
builds = sys.argv[2:]
mean = {b: sum(float(r[2]) for r in rows if r[1] == b) / max(1, sum(1 for r in rows if r[1] == b)) for b in builds}
cpu = {b: sum(float(r[3]) for r in rows if r[1] == b) / max(1, sum(1 for r in rows if r[1] == b)) for b in builds}
for b in builds:
    print(f"| {b} | {mean[b]:,.0f} | {mean[b] / mean[builds[0]]:.2f}x | {cpu[b]:.1f} µs |")
EOF
