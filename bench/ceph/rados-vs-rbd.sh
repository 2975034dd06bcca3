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
#   Every row also records the CPU the OSD, the Tidemark server(s) and fio used while it ran (from
#   /proc and fio's own figures), printed as milliseconds of CPU per MiB moved: where the time goes.
#   SNAPSHOTS="1000 10000" ...  after the rows as above, take snapshots of the RBD image and of the Tidemark
#                               volume up to each count in turn (one 4 KiB write at a pseudo-random offset
#                               before each, the same offsets on both, so every snapshot holds a change;
#                               bench/ceph/snapfill.py), time that, and run every row again as NAME@COUNT.
#                               A peer that refuses a snapshot (RBD's limit) is reported and the rows run
#                               with what it has; SNAPSHOT_SECONDS=N caps each peer's snapshotting per
#                               step (RBD slows down as its snapshots grow). With BASELINE, that build's volume is snapshotted the
#                               same way and runs every row too.
#   ISCSI=1 ...  iSCSI rows too (issue 22): Tidemark's iSCSI target on the same volume (an iSCSI export),
#                driven by iscsi-bench (../shared/peers/iscsi-bench.c, built as bench/protocols/iscsi-vs-tgt.sh
#                builds it), peer "tm-iscsi" (and "bf-iscsi" for BASELINE), beside fio's rbd engine and fio's
#                nbd engine on the same rows. The default rows become the read rows: 4K random read QD32 and
#                QD1, 1 MiB sequential read QD8 and QD32. NBD=0 leaves the nbd rows out. iscsi-bench's CPU is
#                its rusage (/usr/bin/time), so the CPU table has the client column for every row.
# Only 127.0.0.1 is used; the cluster and the server are stopped (by their PIDs) on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D="$(mktemp -d /tmp/tidemark-ceph-bench.XXXXXX)"
export D RES="$D/results.tsv"
own_workloads=${WORKLOADS:-}   # lib.sh sets its own default rows
peers=${PEERS_LIB:-$root/../shared/peers/lib.sh}
[ -f "$peers" ] || peers=/work/shared/peers/lib.sh
# shellcheck source=/dev/null
. "$peers"
IMAGE_BYTES=${IMAGE_BYTES:-1G}
for tool in fio rbd nbdcopy curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps)" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw rbd || { echo "this fio has no rbd engine" >&2; exit 1; }
ISCSI=${ISCSI:-0} NBD=${NBD:-1}
if [ "$ISCSI" = 1 ]; then
  BENCH=$("$(dirname "$peers")/build_iscsi_bench.sh" | tail -1)
  WORKLOADS=${own_workloads:-"rr4k_qd32 randread 4k 32
rr4k_qd1 randread 4k 1
sr1m_qd8 read 1M 8
sr1m_qd32 read 1M 32"}
fi

cleanup() {
  [ -n "${TM_PID:-}" ] && kill "$TM_PID" 2>/dev/null && wait "$TM_PID" 2>/dev/null
  [ -n "${BASE_PID:-}" ] && kill "$BASE_PID" 2>/dev/null && wait "$BASE_PID" 2>/dev/null
  if [ -n "${CEPH_PID:-}" ]; then echo stop >&"${CEPH[1]}" 2>/dev/null || true; wait "$CEPH_PID" 2>/dev/null || true; fi
  rm -rf "$D"
}
trap cleanup EXIT

cephup=${CEPHUP:-}   # CEPHUP=DIR: a CephUp already built there (skips the build)
if [ -z "$cephup" ]; then
  cephup=$D/cephup
  dotnet build "$root/bench/ceph/CephUp" -c Release -nologo -clp:ErrorsOnly -o "$cephup" >/dev/null
fi
read -r -a tidemark <<< "${TIDEMARK:-$root/tidemark}"
"${tidemark[@]}" --help >/dev/null   # ./tidemark builds the CLI on first use
coproc CEPH { exec dotnet "$cephup/CephUp.dll"; }
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
  local iscsi=off
  [ "$ISCSI" != 1 ] || iscsi=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$@" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi "$iscsi" --replication off \
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
  NBD_URI="nbd://$nbd/bench" NBD_ADDR=$nbd HTTP_URL=$http ISCSI_URL=""
  if [ "$ISCSI" = 1 ]; then
    api -X POST "${http}api/v1/exports" -d '{"target":"bench","name":"lun","protocol":"iscsi","iqn":"iqn.2026-11.dev.tidemark:bench"}' >/dev/null
    ISCSI_URL="iscsi://$iscsi/iqn.2026-11.dev.tidemark:bench/0"
  fi
}
start_tidemark tm tmbench "${tidemark[@]}"
TM_PID=$STARTED_PID TM_URI=$NBD_URI TM_NBD=$NBD_ADDR TM_HTTP=$HTTP_URL TM_ISCSI=$ISCSI_URL
if [ -n "${BASELINE:-}" ]; then
  read -r -a baseline <<< "$BASELINE"
  start_tidemark before tmbefore "${baseline[@]}"
  BASE_PID=$STARTED_PID BASE_URI=$NBD_URI BASE_NBD=$NBD_ADDR BASE_HTTP=$HTTP_URL BASE_ISCSI=$ISCSI_URL
fi

WORKLOADS=${WORKLOADS:-"rw4k_qd32 randwrite 4k 32
rw4k_qd1 randwrite 4k 1
rr4k_qd32 randread 4k 32
rr4k_qd1 randread 4k 1
sw1m_qd32 write 1M 32
sr1m_qd32 read 1M 32"}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
OSD_PID=$(pgrep -f -- "ceph-osd -c $conf" | head -1)
ticks() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
# Times the server's threads went to sleep (voluntary context switches): a wake-up per I/O costs a
# context switch each way, and unlike IOPS the count per I/O hardly depends on the machine's load.
sleeps() { [ -n "${1:-}" ] && cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n + 0}' || echo 0; }
# timed PEER NAME REP SERVER_PID fio_one-args... : one fio_one, with the CPU of the OSD and the server over its wall time
timed() {
  local peer=$1 name=$2 rep=$3 server=$4; shift 4
  local o0 s0 t0 o1 s1 t1 w0 w1
  o0=$(ticks "$OSD_PID") s0=$(ticks "$server") w0=$(sleeps "$server") t0=$(date +%s.%N)
  if [ "$1" = iscsi_one ]; then shift; iscsi_one "$@"; else fio_one "$@"; fi
  o1=$(ticks "$OSD_PID") s1=$(ticks "$server") w1=$(sleeps "$server") t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$peer" "$name" "$rep" "$(( o1 - o0 ))" "$(( s1 - s0 ))" "$(awk "BEGIN{print $t1 - $t0}")" "$(( w1 - w0 ))" >> "$D/cpu.tsv"
}
# iscsi_one PEER NAME RW BS QD REP URL : one iscsi-bench run, appended to $RES as fio_one does (p99 not
# measured: 0), and its CPU (rusage) to $D/client-PEER-NAME-REP
iscsi_one() {
  local peer=$1 name=$2 rw=$3 bs=$4 qd=$5 rep=$6 url=$7 bytes line args=()
  bytes=$(python3 -c "import sys; s=sys.argv[1]; print(int(s[:-1]) << {'k':10,'K':10,'M':20}[s[-1]])" "$bs")
  case $rw in rand*) args+=(-r) ;; esac
  case $rw in *write) args+=(-w) ;; esac
  line=$(/usr/bin/time -f '%U %S' -o "$D/rusage" "$BENCH" "${args[@]}" -b "$bytes" -q "$qd" -t "$RUNTIME" "$url" | tail -1)
  python3 - "$line" "$peer" "$name" "$qd" "$rep" "$bytes" "$RUNTIME" "$D/rusage" "$D/client-$peer-$name-$rep" >> "$RES" <<'PY'
import sys
line, peer, name, qd, rep, nbytes, runtime, rusage, client = sys.argv[1:]
f = line.split()
iops, lat = float(f[1]), float(f[5])
user, system = map(float, open(rusage).read().split()[-2:])
open(client, 'w').write(f"{(user + system) / float(runtime)} {iops}\n")
print(f"{peer}\t{name}\t{qd}\t{rep}\t{iops:.0f}\t{iops * int(nbytes) / 2**20:.1f}\t{lat:.1f}\t0")
PY
  tail -1 "$RES"
}
# run_rows SUFFIX: every workload REPS times, RBD then Tidemark (then the baseline)
run_rows() {
  local suffix=$1 rep name rw bs qd
  for rep in $(seq "$REPS"); do
    while read -r name rw bs qd; do
      timed rbd "$name$suffix" "$rep" "" rbd "$name$suffix" "$rw" "$bs" "$qd" "$rep" --ioengine=rbd --clientname=admin --pool="$pool" --rbdname=bench --size="$IMAGE_BYTES"
      if [ "$NBD" = 1 ]; then
        timed tidemark "$name$suffix" "$rep" "$TM_PID" tidemark "$name$suffix" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$TM_URI" --size="$IMAGE_BYTES"
        [ -z "${BASE_URI:-}" ] || timed before "$name$suffix" "$rep" "$BASE_PID" before "$name$suffix" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$BASE_URI" --size="$IMAGE_BYTES"
      fi
      [ -z "$TM_ISCSI" ] || timed tm-iscsi "$name$suffix" "$rep" "$TM_PID" iscsi_one tm-iscsi "$name$suffix" "$rw" "$bs" "$qd" "$rep" "$TM_ISCSI"
      [ -z "${BASE_ISCSI:-}" ] || timed bf-iscsi "$name$suffix" "$rep" "$BASE_PID" iscsi_one bf-iscsi "$name$suffix" "$rw" "$bs" "$qd" "$rep" "$BASE_ISCSI"
    done <<< "$WORKLOADS"
  done
}
run_rows ""
have=0 rbd_have=0
for count in ${SNAPSHOTS:-}; do
  [ "$count" -gt "$have" ] || continue
  r=$(python3 "$root/bench/ceph/snapfill.py" rbd "$conf" "$pool" bench "$rbd_have" "$count")
  rbd_have=$(( rbd_have + $(echo "$r" | awk '{print $2}') ))
  echo "rbd: snapshots -> $rbd_have (wanted $count): $r (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$D/snapshots.txt"
  r=$(python3 "$root/bench/ceph/snapfill.py" tidemark "$TM_HTTP" "$D/tm/token" "$TM_NBD" bench bench "$have" "$count")
  echo "tidemark: snapshots $have -> $count: $r (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$D/snapshots.txt"
  if [ -n "${BASE_URI:-}" ]; then
    r=$(python3 "$root/bench/ceph/snapfill.py" tidemark "$BASE_HTTP" "$D/before/token" "$BASE_NBD" bench bench "$have" "$count")
    echo "before: snapshots $have -> $count: $r (load $(cut -d' ' -f1 /proc/loadavg))" | tee -a "$D/snapshots.txt"
  fi
  have=$count
  run_rows "@$count"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RES" <<'PY'
import sys, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    peer, name, qd, rep, iops, mibs, lat, p99 = line.split('\t')
    rows[(name, peer)].append((float(iops), float(mibs)))
names = list(dict.fromkeys(n for n, _ in rows))
mean = lambda n, p: [sum(x) / len(x) for x in zip(*rows[(n, p)])]

def table(label, new, before):
    """One table: RBD against the Tidemark rows of peer `new`, and `before` (the baseline build) when it ran."""
    with_before = (names[0], before) in rows
    print(f"{'workload':<11} {'rbd IOPS':>9} {label + ' IOPS':>14} {'rbd MiB/s':>10} {label + ' MiB/s':>15} {'ratio':>6}"
          + (f" {'before IOPS':>12} {'before ratio':>13} {'new/before':>11}" if with_before else ""))
    for n in names:
        if (n, new) not in rows:
            continue
        r, t = mean(n, 'rbd'), mean(n, new)
        line = f"{n:<11} {r[0]:>9.0f} {t[0]:>14.0f} {r[1]:>10.1f} {t[1]:>15.1f} {t[0] / r[0]:>6.2f}"
        if (n, before) in rows:
            b = mean(n, before)
            line += f" {b[0]:>12.0f} {b[0] / r[0]:>13.2f} {t[0] / b[0]:>11.2f}"
        print(line)

table('tidemark', 'tidemark', 'before')
if any(p == 'tm-iscsi' for _, p in rows):
    print()
    table('iSCSI', 'tm-iscsi', 'bf-iscsi')

# Where the CPU went: cores each process used while the row ran, as CPU microseconds per I/O
# (the OSD and the Tidemark server from /proc, fio (with librbd for RBD) from its own figures).
import json, os
hz = os.sysconf('SC_CLK_TCK')
cpu = collections.defaultdict(list)
for line in open(os.path.join(os.path.dirname(sys.argv[1]), 'cpu.tsv')):
    peer, name, rep, osd, server, wall, slept = line.split('\t')
    client = os.path.join(os.path.dirname(sys.argv[1]), f'client-{peer}-{name}-{rep}')
    if os.path.exists(client):
        # iscsi-bench: its rusage over the run, and its IOPS
        fio_cores, io = map(float, open(client).read().split())
        d = {'iops': io}
    else:
        j = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), f'fio-{peer}-{name}-{rep}.json')))['jobs'][0]
        d = j['write'] if j['write']['io_bytes'] > 0 else j['read']
        fio_cores = (j['usr_cpu'] + j['sys_cpu']) / 100
    wall = float(wall)
    cpu[(name, peer)].append((int(osd) / hz / wall, int(server) / hz / wall, fio_cores, d['iops'], int(slept) / wall))
print()
print(f"{'workload':<16} {'peer':<9} {'osd cores':>9} {'server cores':>12} {'fio cores':>9} {'CPU us/IO: osd':>15} {'server':>7} {'fio':>6} {'total':>6} {'server sleeps/IO':>17}")
for (n, p), samples in cpu.items():
    o, s, f, iops, w = [sum(x) / len(x) for x in zip(*samples)]
    per = lambda c: 1e6 * c / iops if iops else 0
    print(f"{n:<16} {p:<9} {o:>9.2f} {s:>12.2f} {f:>9.2f} {per(o):>15.0f} {per(s):>7.0f} {per(f):>6.0f} {per(o + s + f):>6.0f} {(w / iops if iops else 0):>17.2f}")
PY
[ ! -s "$D/snapshots.txt" ] || cat "$D/snapshots.txt"
