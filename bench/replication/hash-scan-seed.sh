#!/usr/bin/env bash
# Seeding a replica by hash scan (issue 6), against the disk's own read rate, in one run:
# a SIZE volume (default 10G) written in full with random data is copied block for block into a
# volume of a second server (the "seed" carried by other means), then 1% of the source's 4 KiB
# blocks are overwritten at random, then `replica create --seed` and one `replica sync`: both
# servers hash their copy (a tree of per-range hashes), compare, and only the differing blocks go.
# Page caches are dropped before each timed phase (cold reads from the disk):
#   dd 1 file    dd of one server's store files to /dev/null (the disk's read rate for one copy)
#   dd 2 files   both servers' store files read at once (what the scan does on this one machine)
#   Tidemark     the seeded sync (its duration as the server records it; scanned bytes / time)
# Both servers run on this machine and share its disk and two cores; between sites each reads its
# own disk. Cleans up on exit, also on failure (peak disk use about 2 x SIZE).
#   bench/replication/hash-scan-seed.sh          SIZE=10G
#   SIZE=2G bench/replication/hash-scan-seed.sh  a quick pass
#   PERF=/tmp/scan DOTNET_PerfMapEnabled=1 ...   also records `perf` profiles of both servers during the sync
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SIZE=${SIZE:-10G}
bytes=$(numfmt --from=iec "$SIZE")
blocks=$((bytes / 4096))
changed=$((blocks / 100))
for tool in fio nbdcopy python3 sha256sum dd; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
[ -w /proc/sys/vm/drop_caches ] || { echo "needs root to drop the page cache (cold-read figures)" >&2; exit 2; }
D="$(mktemp -d /var/tmp/tidemark-scan-bench.XXXXXX)"
. "$root/bench/replication/lib.sh"
cleanup() {
  stop_servers
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }
rate() { python3 -c "print(f'{$1/($2)/1048576:,.0f} MiB/s')"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
echo "SIZE=$SIZE, $changed changed 4 KiB blocks ($((changed * 4096)) bytes); $(date -u +%Y-%m-%dT%H:%MZ); load $(cut -d' ' -f1-3 /proc/loadavg)"

start_pair
tm "$D/a" volume create bench --size "$SIZE" >/dev/null
tm "$D/b" volume create bench --size "$SIZE" >/dev/null
src=$(tm "$D/a" export nbd bench --json | url)
fio --name=fill --ioengine=nbd --uri="$src" --rw=write --bs=1M --iodepth=8 --size="$bytes" --refill_buffers=1 --output=/dev/null

# The seed: a block-for-block copy of the volume into the second server's volume.
tm "$D/a" snapshot create bench --name shipped >/dev/null
shipped=$(tm "$D/a" export nbd bench@shipped --name shipped --json | url)
seed=$(tm "$D/b" export nbd bench --name seed --json | url)
t0=$(now); nbdcopy "$shipped" "$seed"; t1=$(now)
echo "seed copied over NBD in $(secs "$t0" "$t1") s"
tm "$D/a" export remove shipped >/dev/null; tm "$D/b" export remove seed >/dev/null
tm "$D/a" snapshot delete bench@shipped >/dev/null
fio --name=change --ioengine=nbd --uri="$src" --rw=randwrite --bs=4k --number_ios="$changed" --size="$bytes" \
    --refill_buffers=1 --randseed=42 --output=/dev/null
tm "$D/a" export remove bench >/dev/null

# The disk's read rate for the same amount of data, cold.
stores_a=$(find "$D/a" -type f -size +256M | sort); stores_b=$(find "$D/b" -type f -size +256M | sort)
cold; t0=$(now); cat $stores_a | dd of=/dev/null bs=1M status=none; t1=$(now)
size_a=$(du -cb $stores_a | tail -1 | cut -f1)
dd1=$(secs "$t0" "$t1")
cold; t0=$(now)
(cat $stores_a | dd of=/dev/null bs=1M status=none) & ra=$!
(cat $stores_b | dd of=/dev/null bs=1M status=none) & rb=$!
wait "$ra" "$rb"; t1=$(now)
dd2=$(secs "$t0" "$t1")

tm "$D/a" replica create bench --to dr --seed >/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, clock ticks
ca=$(cpu "${pids[0]}"); cb=$(cpu "${pids[1]}")
cold
if [ -n "${PERF:-}" ]; then perf record -F 499 -g -o "$PERF.a" -p "${pids[0]}" 2>/dev/null & pa=$!; perf record -F 499 -g -o "$PERF.b" -p "${pids[1]}" 2>/dev/null & pb=$!; sleep 1; fi
t0=$(now); tm "$D/a" replica sync bench --json > "$D/seed.json"; t1=$(now)
if [ -n "${PERF:-}" ]; then kill -INT "$pa" "$pb"; wait "$pa" "$pb" || true; fi
ca=$(( $(cpu "${pids[0]}") - ca )); cb=$(( $(cpu "${pids[1]}") - cb )); hz=$(getconf CLK_TCK)
grep -h '"replica.scan"' "$D/a/events.jsonl" | tail -1 | python3 -c 'import json,sys; e=json.loads(sys.stdin.read()); print("  scan finished", e.get("time"), "-", e.get("message"))' || true
r=$(cat "$D/seed.json")
d=$(field "$r" lastDurationSeconds)
snap=$(field "$r" lastSnapshot)
hash() { local dir=$1 name=$2; local u; u=$(tm "$dir" export nbd "bench@$snap" --name "$name" --json | url); nbdcopy "$u" - | sha256sum | cut -d' ' -f1; }
[ "$(hash "$D/a" ha)" = "$(hash "$D/b" hb)" ] && echo "  replica snapshot identical (sha256)" || { echo "replica differs!" >&2; exit 1; }

echo
echo "| measure | wall time (s) | throughput (volume bytes per second) | notes |"
echo "|---|---|---|---|"
echo "| dd, one server's store files ($(printf "%'d" "$size_a") bytes) | $dd1 | $(rate "$size_a" "$dd1") | cold page cache |"
echo "| dd, both servers' store files at once | $dd2 | $(rate "$size_a" "$dd2") per copy | cold page cache |"
echo "| Tidemark seeded sync (hash scan + send) | $(printf "%.2f" "$d") (CLI $(secs "$t0" "$t1")) | $(rate "$(field "$r" lastScannedBytes)" "$d") | $(printf "%'d" "$(field "$r" lastRangeBytes)") bytes of differing ranges, $(printf "%'d" "$(field "$r" lastBytesSent)") bytes of stream; CPU $(python3 -c "print(f'{$ca/$hz:.1f}')") s sender, $(python3 -c "print(f'{$cb/$hz:.1f}')") s receiver |"
