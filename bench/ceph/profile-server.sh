#!/usr/bin/env bash
# Where a Tidemark server on RADOS spends its CPU during one fio row (issue 22): brings up the
# tests' one-node Ceph cluster, serves a rados:-backed volume over NBD, fills it, then runs the row
# while `perf record` samples the server (JIT symbols from DOTNET_PerfMapEnabled=1), and prints the
# server's CPU per MiB moved (from /proc, a fair figure on a loaded machine; wall time is not) and
# the hottest symbols, by self time and with callers.
#   bench/ceph/profile-server.sh                                  1 MiB sequential write, QD32, 15 s
#   RW=randwrite BS=4k QD=32 RUNTIME=10 bench/ceph/profile-server.sh
#   SNAPSHOTS=20 ...        take that many snapshots (one 4 KiB write before each) before the row
#   PRE="randwrite 4k 32 5" ...  run that fio row (rw bs qd seconds) unprofiled first, after the snapshots
#   TIDEMARK="dotnet path/to/tidemark.dll" ...   the build to profile (default: ./tidemark)
#   PERF=0 ...              no perf, only the CPU figures (for before/after runs of two builds)
#   KEEP=DIR ...            keep perf.data and the report in DIR
# Only 127.0.0.1 is used; the cluster and the server are stopped (by their PIDs) on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D="$(mktemp -d /tmp/tidemark-ceph-prof.XXXXXX)"
RW=${RW:-write} BS=${BS:-1M} QD=${QD:-32} RUNTIME=${RUNTIME:-15} IMAGE_BYTES=${IMAGE_BYTES:-512M}
for tool in fio curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps)" >&2; exit 1; }
done
[ "${PERF:-1}" = 0 ] || command -v perf >/dev/null || { echo "needs perf (or PERF=0)" >&2; exit 1; }

cleanup() {
  [ -n "${TM_PID:-}" ] && kill "$TM_PID" 2>/dev/null && wait "$TM_PID" 2>/dev/null
  if [ -n "${CEPH_PID:-}" ]; then echo stop >&"${CEPH[1]}" 2>/dev/null || true; wait "$CEPH_PID" 2>/dev/null || true; fi
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp -r "$D"/. "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$D"
}
trap cleanup EXIT

cephup=${CEPHUP:-}   # CEPHUP=DIR: a CephUp already built there (skips the build)
if [ -z "$cephup" ]; then
  cephup=$D/cephup
  dotnet build "$root/bench/ceph/CephUp" -c Release -nologo -clp:ErrorsOnly -o "$cephup" >/dev/null
fi
read -r -a tidemark <<< "${TIDEMARK:-$root/tidemark}"
"${tidemark[@]}" --help >/dev/null
coproc CEPH { exec dotnet "$cephup/CephUp.dll"; }
CEPH_PID=$!
read -r _ conf <&"${CEPH[0]}"; read -r _ pool <&"${CEPH[0]}"; read -r _ started <&"${CEPH[0]}"
echo "cluster up in ${started}s: $conf"

data=$D/tm
DOTNET_PerfMapEnabled=1 "${tidemark[@]}" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication off \
  --store-path "rados:$pool/prof?conf=$conf&id=admin" --store-capacity 4G --log-level Warning > "$D/serve.log" 2>&1 &
TM_PID=$!
for _ in $(seq 600); do [ -s "$data/server.json" ] && break; sleep 0.1; done
[ -s "$data/server.json" ] || { echo "tidemark serve did not start:"; cat "$D/serve.log"; exit 1; } >&2
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$data/server.json")
nbd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nbd"])' "$data/server.json")
api() { curl -sf -H "Authorization: Bearer $(cat "$data/token")" -H 'Content-Type: application/json' "$@"; }
bytes=$(python3 -c "import sys; s=sys.argv[1]; print(int(s[:-1]) << {'K':10,'M':20,'G':30}[s[-1]])" "$IMAGE_BYTES")
api -X POST "${http}api/v1/volumes" -d "{\"name\":\"bench\",\"sizeBytes\":$bytes}" >/dev/null
api -X POST "${http}api/v1/exports" -d '{"target":"bench","name":"bench","protocol":"nbd"}' >/dev/null
fio --name=fill --ioengine=nbd --uri="nbd://$nbd/bench" --rw=write --bs=1M --iodepth=16 \
  --size="$IMAGE_BYTES" --refill_buffers=1 --output=/dev/null
if [ "${SNAPSHOTS:-0}" -gt 0 ]; then
  python3 "$root/bench/ceph/snapfill.py" tidemark "$http" "$data/token" "$nbd" bench bench 0 "$SNAPSHOTS"
fi

if [ -n "${PRE:-}" ]; then
  read -r pre_rw pre_bs pre_qd pre_s <<< "$PRE"
  fio --name=pre --ioengine=nbd --uri="nbd://$nbd/bench" --rw="$pre_rw" --bs="$pre_bs" --iodepth="$pre_qd" --size="$IMAGE_BYTES" \
    --time_based=1 --runtime="$pre_s" --refill_buffers=1 --output=/dev/null
fi

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Times the server's threads went to sleep (voluntary context switches, all threads): a wake-up per
# I/O costs a context switch each way, and unlike IOPS the count per I/O does not depend on the load.
sleeps() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n + 0}'; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
s0=$(ticks "$TM_PID") c0=$(sleeps "$TM_PID")
fio --name=row --ioengine=nbd --uri="nbd://$nbd/bench" --rw="$RW" --bs="$BS" --iodepth="$QD" --size="$IMAGE_BYTES" \
  --time_based=1 --runtime="$RUNTIME" --refill_buffers=1 --output-format=json --output="$D/fio.json" &
FIO_PID=$!
if [ "${PERF:-1}" != 0 ]; then
  # Attached once fio is connected: perf follows the threads that exist when it attaches (the
  # connection's threads start with the connection), so it starts 2 s in and stops 2 s early.
  sleep 2
  perf record -q -F 997 -g -p "$TM_PID" -o "$D/perf.data" -- sleep $((RUNTIME - 4)) 2>/dev/null || true
fi
wait "$FIO_PID"
s1=$(ticks "$TM_PID") c1=$(sleeps "$TM_PID")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$D/fio.json" "$((s1 - s0))" "$((c1 - c0))" <<'PY'
import json, os, sys
j = json.load(open(sys.argv[1]))['jobs'][0]
sleeps = int(sys.argv[3])
d = j['write'] if j['write']['io_bytes'] > 0 else j['read']
mib = d['io_bytes'] / 2**20
cpu = int(sys.argv[2]) / os.sysconf('SC_CLK_TCK')
print(f"row: {d['iops']:.0f} IOPS, {d['bw'] / 1024:.1f} MiB/s; server CPU {cpu:.2f} s for {mib:.0f} MiB: "
      f"{1000 * cpu / mib:.3f} ms/MiB, {1e6 * cpu / max(d['total_ios'], 1):.0f} us/IO; "
      f"server threads slept {sleeps / max(d['total_ios'], 1):.2f} times per I/O")
PY
if [ "${PERF:-1}" != 0 ]; then
  perf report -i "$D/perf.data" --stdio --sort comm -g none 2>/dev/null | grep '%' | head -12
  perf report -i "$D/perf.data" --no-children --sort dso,sym --percent-limit 0.5 --stdio -g none 2>/dev/null | grep '%' | head -50
  perf report -i "$D/perf.data" --children --sort sym --percent-limit 3 --stdio -g none 2>/dev/null | grep '%' | head -60 > "$D/children.txt"
  echo "--- with callees (children) ---"; cat "$D/children.txt"
fi
