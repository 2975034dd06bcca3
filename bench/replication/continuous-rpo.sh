#!/usr/bin/env bash
# Continuous replication (issue 6): how far behind does a replica syncing every few seconds stay
# while its source takes a steady write load? Two `tidemark serve` on 127.0.0.1, a SIZE volume
# (default 4G), a replica with --every EVERY (default 2s), fio writing 4 KiB random blocks at
# RATE IOPS (default 2000, about 8 MB/s) for DURATION seconds (default 60). Every second the replica's
# lag (RPO: age of the newest snapshot the partner has) is sampled; the summary gives its
# median, 99th percentile and maximum, and how many syncs ran. Cleans up on exit.
#   bench/replication/continuous-rpo.sh
#   EVERY=5s RATE=5000 bench/replication/continuous-rpo.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SIZE=${SIZE:-4G}; EVERY=${EVERY:-2s}; RATE=${RATE:-2000}; SECONDS_RUN=${DURATION:-60}
bytes=$(numfmt --from=iec "$SIZE")
D="$(mktemp -d /tmp/tidemark-rpo-bench.XXXXXX)"
. "$root/bench/replication/lib.sh"
cleanup() {
  stop_servers
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
start_pair
tm "$D/a" volume create mail --size "$SIZE" >/dev/null
url=$(tm "$D/a" export nbd mail --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
fio --name=fill --ioengine=nbd --uri="$url" --rw=write --bs=1M --iodepth=8 --size="$bytes" --refill_buffers=1 --output=/dev/null
tm "$D/a" replica create mail --to dr >/dev/null
initial=$(tm "$D/a" replica sync mail --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["lastSnapshot"])') # the full copy: not part of the figure
tm "$D/a" replica update mail --every "$EVERY" >/dev/null
fio --name=load --ioengine=nbd --uri="$url" --rw=randwrite --bs=4k --iodepth=4 --rate_iops="$RATE" \
    --time_based=1 --runtime="$SECONDS_RUN" --size="$bytes" --output="$D/fio.json" --output-format=json &
load=$!
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$D/a/server.json")
token=$(cat "$D/a/token")
: > "$D/lag"
for _ in $(seq "$SECONDS_RUN"); do
  curl -sf -H "Authorization: Bearer $token" "${http}api/v1/replicas/mail" >> "$D/lag" || true
  echo >> "$D/lag"; sleep 1
done
wait "$load"
python3 - "$D/lag" "$D/fio.json" "$EVERY" "$RATE" "$SIZE" "$initial" <<'PY'
import json, sys
# Samples count from the first sync under load on (before it, the lag is the full copy's age).
samples = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
samples = [s for s in samples if s.get("lastSnapshot") not in (None, sys.argv[6])]
lags = sorted(s["lagSeconds"] for s in samples if s.get("lagSeconds") is not None)
snaps = {s["lastSnapshot"] for s in samples}
durations = [s["lastDurationSeconds"] for s in samples if s.get("lastDurationSeconds")]
fio = json.load(open(sys.argv[2]))["jobs"][0]["write"]
pct = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
print(f"volume {sys.argv[5]}, --every {sys.argv[3]}, load {fio['iops']:.0f} write IOPS of 4 KiB ({fio['bw']/1024:.1f} MiB/s); {len(samples)} one-second samples")
print(f"RPO (replica lag) median {pct(0.5):.1f} s, p99 {pct(0.99):.1f} s, max {lags[-1]:.1f} s; {len(snaps)} distinct replica snapshots seen; sync duration median {sorted(durations)[len(durations)//2]:.2f} s")
PY
