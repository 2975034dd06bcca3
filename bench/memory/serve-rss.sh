#!/usr/bin/env bash
# Memory of `tidemark serve` itself (issue 2: <= 256 MiB RSS for a 20 GiB volume fully written at 4K
# random with 256 snapshots, not growing with volume size), with its default settings:
#   bench/memory/serve-rss.sh                 SIZE=20G SNAPSHOTS=256 READ_SECONDS=20
#   SIZE=2G bench/memory/serve-rss.sh         a quick pass
#   SERVE_ARGS="--map-cache 32M" ...          other server settings
# fio (nbd engine, 4K random writes at QD32, every block once) fills the volume while a snapshot is
# taken every 1/SNAPSHOTS of the expected time; then 4K random reads. RSS (VmRSS) is sampled every
# second; VmHWM is the peak. The plain-file peer of a memory goal is nothing: the figure is absolute.
# Only 127.0.0.1; the server is stopped and its data removed on exit, also on failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SIZE=${SIZE:-20G}; SNAPSHOTS=${SNAPSHOTS:-256}; READ_SECONDS=${READ_SECONDS:-20}
for tool in fio curl python3 numfmt; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
D="$(mktemp -d /tmp/tidemark-rss-bench.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT INT TERM

"$root/tidemark" --help >/dev/null   # builds the CLI on first use
"$root/tidemark" serve --data "$D/tm" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication off \
  --log-level Warning ${SERVE_ARGS:-} > "$D/tidemark.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [ -s "$D/tm/server.json" ] && break; sleep 0.1; done
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$D/tm/server.json")
nbd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nbd"])' "$D/tm/server.json")
token=$(cat "$D/tm/token")
api() { curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@"; }
bytes=$(numfmt --from=iec "$SIZE")
api -X POST "${http}api/v1/volumes" -d "{\"name\":\"mem\",\"sizeBytes\":$bytes,\"logicalBlockSizeBytes\":4096}" >/dev/null
api -X POST "${http}api/v1/exports" -d '{"target":"mem","name":"mem","protocol":"nbd"}' >/dev/null
rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$pid/status"; }
hwm() { awk '/^VmHWM/ {print int($2/1024)}' "/proc/$pid/status"; }
# At each new maximum the server's memory by part (GET /metrics) and the kinds of resident pages.
breakdown() {
  { awk '/^(RssAnon|RssFile|RssShmem)/ {printf "%s %d MiB, ", $1, $2/1024}' "/proc/$pid/status"
    api "${http}metrics" | awk '
      /^tidemark_process_gc_committed_bytes / {printf "GC committed %d MiB, ", $2/1048576}
      /^tidemark_process_gc_heap_bytes / {printf "GC heap %d MiB, ", $2/1048576}
      /^tidemark_engine_memory_bytes\{/ {split($1, a, "\""); printf "%s %d MiB, ", a[2], $2/1048576}
      /^tidemark_process_native_heap_bytes\{/ {split($1, a, "\""); printf "glibc %s %d MiB, ", a[2], $2/1048576}'
  } | sed 's/, $//'
}
echo "idle: RSS $(rss) MiB"

start=$(date +%s.%N)
fio --name=fill --rw=randwrite --bs=4k --iodepth=32 --ioengine=nbd --uri="nbd://$nbd/mem" \
  --size="$SIZE" --randrepeat=0 --output-format=terse --output="$D/fill.txt" &
fio_pid=$!
# One snapshot a second for ten seconds tells the write rate; the rest are spread over the time left.
taken=0; max_write=0; interval=1
while kill -0 "$fio_pid" 2>/dev/null; do
  sleep "$interval"
  r=$(rss); if [ "$r" -gt "$max_write" ]; then max_write=$r; write_parts=$(breakdown); fi
  if [ "$taken" -lt "$SNAPSHOTS" ]; then
    api -X POST "${http}api/v1/volumes/mem/snapshots" -d "{\"name\":\"s$taken\"}" >/dev/null && taken=$((taken + 1))
  fi
  elapsed=$(python3 -c "import time; print(time.time() - $start)")
  if [ "$taken" -eq 10 ] && [ "$interval" = 1 ]; then
    # Spread the rest over the time the fill still needs at its rate so far.
    used=$(api "${http}api/v1/volumes/mem" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("allocatedBytes") or 1)')
    elapsed=$(python3 -c "import time; print(time.time() - $start)")
    interval=$(python3 -c "print(round(max(0.05, ($bytes - $used) / ($used / $elapsed) / ($SNAPSHOTS - 10)), 3))")
  fi
done
wait "$fio_pid"
write_seconds=$(python3 -c "import time; print(round(time.time() - $start, 1))")
while [ "$taken" -lt "$SNAPSHOTS" ]; do
  api -X POST "${http}api/v1/volumes/mem/snapshots" -d "{\"name\":\"s$taken\"}" >/dev/null; taken=$((taken + 1))
done
iops=$(cut -d';' -f 49 "$D/fill.txt")
after_write=$(rss)
fio --name=read --rw=randread --bs=4k --iodepth=32 --ioengine=nbd --uri="nbd://$nbd/mem" --size="$SIZE" \
  --time_based=1 --runtime="$READ_SECONDS" --norandommap=1 --output-format=terse --output="$D/read.txt" &
fio_pid=$!
max_read=0
while kill -0 "$fio_pid" 2>/dev/null; do
  sleep 1; r=$(rss); if [ "$r" -gt "$max_read" ]; then max_read=$r; read_parts=$(breakdown); fi
done
wait "$fio_pid"
read_iops=$(cut -d';' -f 8 "$D/read.txt")
echo "volume $SIZE, $taken snapshots, written in $write_seconds s at $iops IOPS; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "RSS MiB: max while writing $max_write, after writing $after_write, max while reading $max_read (read $read_iops IOPS), peak (VmHWM) $(hwm)"
echo "at the writing maximum: ${write_parts:-}"
echo "at the reading maximum: ${read_parts:-}"
echo "store: $(du -sh "$D/tm" | cut -f1)"
