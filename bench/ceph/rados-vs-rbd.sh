#!/usr/bin/env bash
# Tidemark on RADOS against an RBD image on the same one-node Ceph cluster, in the same run (issue 22):
# fio's rbd engine on an RBD image, and fio's nbd engine on a Tidemark volume whose pool is a rados:
# store in the same RADOS pool. Workloads: 4K random write and read (QD32 and QD1), 1 MiB sequential
# write and read (QD32), each row RBD then Tidemark, REPS times. Prints the table and the ratios.
#   bench/ceph/rados-vs-rbd.sh                 RUNTIME=20 REPS=2 (../shared/peers/lib.sh defaults)
#   RUNTIME=5 REPS=1 bench/ceph/rados-vs-rbd.sh  a quick pass
#   TIDEMARK="dotnet path/to/tidemark.dll" ...  use a CLI already built (default: ./tidemark, which builds it)
#   BASELINE="dotnet /tmp/old/tidemark.dll" ...  also run that build ("before", its own store prefix in the
#                                                same RADOS pool) after Tidemark in every row: before/after in one run
# Only 127.0.0.1 is used; the cluster and the server are stopped (by their PIDs) on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D="$(mktemp -d /tmp/tidemark-ceph-bench.XXXXXX)"
export D RES="$D/results.tsv"
peers=${PEERS_LIB:-$root/../shared/peers/lib.sh}
[ -f "$peers" ] || peers=/work/shared/peers/lib.sh
# shellcheck source=/dev/null
. "$peers"
IMAGE_BYTES=${IMAGE_BYTES:-1G}
for tool in fio rbd nbdcopy curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps)" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw rbd || { echo "this fio has no rbd engine" >&2; exit 1; }

cleanup() {
  [ -n "${TM_PID:-}" ] && kill "$TM_PID" 2>/dev/null && wait "$TM_PID" 2>/dev/null
  [ -n "${BASE_PID:-}" ] && kill "$BASE_PID" 2>/dev/null && wait "$BASE_PID" 2>/dev/null
  if [ -n "${CEPH_PID:-}" ]; then echo stop >&"${CEPH[1]}" 2>/dev/null || true; wait "$CEPH_PID" 2>/dev/null || true; fi
  rm -rf "$D"
}
trap cleanup EXIT

dotnet build "$root/bench/ceph/CephUp" -c Release -nologo -clp:ErrorsOnly -o "$D/cephup" >/dev/null
read -r -a tidemark <<< "${TIDEMARK:-$root/tidemark}"
"${tidemark[@]}" --help >/dev/null   # ./tidemark builds the CLI on first use
coproc CEPH { exec dotnet "$D/cephup/CephUp.dll"; }
CEPH_PID=$!
read -r _ conf <&"${CEPH[0]}"; read -r _ pool <&"${CEPH[0]}"; read -r _ started <&"${CEPH[0]}"
echo "cluster up in ${started}s: $conf"
export CEPH_CONF=$conf

# RBD: an image filled with data first, so reads never hit unwritten objects.
rbd -c "$conf" create --size "$IMAGE_BYTES" "$pool/bench"
fio --name=fill --ioengine=rbd --clientname=admin --pool="$pool" --rbdname=bench --rw=write --bs=1M --iodepth=16 \
  --size="$IMAGE_BYTES" --refill_buffers=1 --output=/dev/null

# Tidemark: its pool's first store is a rados: store in the same RADOS pool; the volume is filled the same way.
# start_tidemark NAME PREFIX CMD... : serve with a rados: store PREFIX, a filled volume "bench"; sets NBD_URI
start_tidemark() {
  local name=$1 prefix=$2; shift 2
  local data=$D/$name
  "$@" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication off \
    --store-path "rados:$pool/$prefix?conf=$conf&id=admin" --store-capacity 4G --log-level Warning > "$D/serve-$name.log" 2>&1 &
  STARTED_PID=$!
  for _ in $(seq 300); do [ -s "$data/server.json" ] && break; sleep 0.1; done
  [ -s "$data/server.json" ] || { echo "tidemark serve ($name) did not start:"; cat "$D/serve-$name.log"; exit 1; } >&2
  local http nbd bytes
  http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$data/server.json")
  nbd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nbd"])' "$data/server.json")
  api() { curl -sf -H "Authorization: Bearer $(cat "$data/token")" -H 'Content-Type: application/json' "$@"; }
  bytes=$(python3 -c "import sys; s=sys.argv[1]; print(int(s[:-1]) << {'K':10,'M':20,'G':30}[s[-1]])" "$IMAGE_BYTES")
  api -X POST "${http}api/v1/volumes" -d "{\"name\":\"bench\",\"sizeBytes\":$bytes}" >/dev/null
  api -X POST "${http}api/v1/exports" -d '{"target":"bench","name":"bench","protocol":"nbd"}' >/dev/null
  fio --name=fill --ioengine=nbd --uri="nbd://$nbd/bench" --rw=write --bs=1M --iodepth=16 \
    --size="$IMAGE_BYTES" --refill_buffers=1 --output=/dev/null
  NBD_URI="nbd://$nbd/bench"
}
start_tidemark tm tmbench "${tidemark[@]}"
TM_PID=$STARTED_PID TM_URI=$NBD_URI
if [ -n "${BASELINE:-}" ]; then
  read -r -a baseline <<< "$BASELINE"
  start_tidemark before tmbefore "${baseline[@]}"
  BASE_PID=$STARTED_PID BASE_URI=$NBD_URI
fi

WORKLOADS=${WORKLOADS:-"rw4k_qd32 randwrite 4k 32
rw4k_qd1 randwrite 4k 1
rr4k_qd32 randread 4k 32
rr4k_qd1 randread 4k 1
sw1m_qd32 write 1M 32
sr1m_qd32 read 1M 32"}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$REPS"); do
  while read -r name rw bs qd; do
    fio_one rbd "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=rbd --clientname=admin --pool="$pool" --rbdname=bench --size="$IMAGE_BYTES"
    fio_one tidemark "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$TM_URI" --size="$IMAGE_BYTES"
    [ -z "${BASE_URI:-}" ] || fio_one before "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$BASE_URI" --size="$IMAGE_BYTES"
  done <<< "$WORKLOADS"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RES" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    peer, name, qd, rep, iops, mibs, lat, p99 = line.split('\t')
    rows[(name, peer)].append((float(iops), float(mibs)))
names = list(dict.fromkeys(n for n, _ in rows))
before = any(p == 'before' for _, p in rows)
mean = lambda n, p: [sum(x) / len(x) for x in zip(*rows[(n, p)])]
head = f"{'workload':<11} {'rbd IOPS':>9} {'tidemark IOPS':>14} {'rbd MiB/s':>10} {'tidemark MiB/s':>15} {'ratio':>6}"
print(head + (f" {'before IOPS':>12} {'before ratio':>13} {'new/before':>11}" if before else ""))
for n in names:
    r, t = mean(n, 'rbd'), mean(n, 'tidemark')
    line = f"{n:<11} {r[0]:>9.0f} {t[0]:>14.0f} {r[1]:>10.1f} {t[1]:>15.1f} {t[0] / r[0]:>6.2f}"
    if before:
        b = mean(n, 'before')
        line += f" {b[0]:>12.0f} {b[0] / r[0]:>13.2f} {t[0] / b[0]:>11.2f}"
    print(line)
PY
