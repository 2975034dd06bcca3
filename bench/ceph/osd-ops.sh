#!/usr/bin/env bash
# What reaches the OSD per client I/O, RBD against Tidemark on RADOS (issue 22): brings up the tests'
# one-node cluster, fills a RBD image and a rados:-backed Tidemark volume (1 MiB writes, as
# rados-vs-rbd.sh does), then for each row runs fio against both and prints, per client I/O: the OSD
# perf counters that say what each op cost (`ceph daemon osd.0 perf dump` before/after: ops, op_r/op_w,
# bytes in and out, BlueStore reads, csum checks, transactions, deferred writes, onode lookups), the
# shape of the ops the OSD answered (its message log at debug_ms 1 for 0.3 s: object, extent,
# compound ops), the CPU of the OSD and of the server (from /proc; the OSD's CPU with no I/O at all
# is measured first and taken out), and how often their threads went to sleep (a wake-up each).
#   bench/ceph/osd-ops.sh                          the rows below, 8 s each
#   ROWS="randread 4k 32
#   randread 4k 1" RUNTIME=5 bench/ceph/osd-ops.sh   other rows (rw bs qd)
#   TIDEMARK="dotnet path/to/tidemark.dll" ...      the build to run (default: ./tidemark)
# Only 127.0.0.1 is used; the cluster and the server are stopped (by their PIDs) on exit.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
D="$(mktemp -d /tmp/tidemark-ceph-ops.XXXXXX)"
RUNTIME=${RUNTIME:-8} IMAGE_BYTES=${IMAGE_BYTES:-512M}
ROWS=${ROWS:-"randread 4k 32
randread 4k 1
randwrite 4k 32"}
for tool in fio rbd curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps)" >&2; exit 1; }
done

cleanup() {
  [ -n "${TM_PID:-}" ] && kill "$TM_PID" 2>/dev/null && wait "$TM_PID" 2>/dev/null
  if [ -n "${CEPH_PID:-}" ]; then echo stop >&"${CEPH[1]}" 2>/dev/null || true; wait "$CEPH_PID" 2>/dev/null || true; fi
  rm -rf "$D"
}
trap cleanup EXIT

cephup=${CEPHUP:-}
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
OSD_PID=$(pgrep -f -- "ceph-osd -c $conf" | head -1)

rbd -c "$conf" create --size "$IMAGE_BYTES" "$pool/bench"
CEPH_CONF=$conf fio --name=fill --ioengine=rbd --clientname=admin --pool="$pool" --rbdname=bench --rw=write --bs=1M \
  --iodepth=16 --size="$IMAGE_BYTES" --refill_buffers=1 --output=/dev/null

data=$D/tm
"${tidemark[@]}" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication off \
  --store-path "rados:$pool/ops?conf=$conf&id=admin" --store-capacity 4G --log-level Warning > "$D/serve.log" 2>&1 &
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

ticks() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
# Times a process's threads went to sleep (voluntary context switches): an op that finds the OSD's
# threads asleep wakes each of them, ops that arrive together share the wake-ups.
sleeps() { [ -n "${1:-}" ] && cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {n += $2} END {print n + 0}' || echo 0; }
dump() { ceph -c "$conf" daemon osd.0 perf dump > "$1"; }
# Voluntary context switches per thread name (threads of one name summed): which threads wake per I/O.
by_thread() { [ -n "${1:-}" ] || return 0; for t in /proc/"$1"/task/*; do
  printf '%s\t%s\n' "$(cat "$t/comm" 2>/dev/null)" "$(awk '/^voluntary_ctxt_switches/ {print $2}' "$t/status" 2>/dev/null)"; done |
  awk -F'\t' '$2 != "" {n[$1] += $2} END {for (k in n) printf "%s\t%d\n", k, n[k]}'; }
ASOK=$(dirname "$conf")/run/osd.0.asok
# one PEER RW BS QD ENGINE-ARGS... : a fio run with the OSD's counters and CPU around it, and the
# shape of the ops it answered (the OSD's message log at debug_ms 1 for 0.3 s: its replies name each op)
one() {
  local peer=$1 rw=$2 bs=$3 qd=$4; shift 4
  local tag=$peer-$rw-$bs-$qd o0 s0 o1 s1 w0 w1 v0 v1 server="" log
  [ "$peer" = tidemark ] && server=$TM_PID
  log=$(dirname "$conf")/log/osd.0.log
  dump "$D/$tag.before"; o0=$(ticks "$OSD_PID") s0=$(ticks "$server") w0=$(sleeps "$OSD_PID") v0=$(sleeps "$server")
  by_thread "$OSD_PID" > "$D/$tag.osdthreads.before"; by_thread "$server" > "$D/$tag.srvthreads.before"
  CEPH_CONF=$conf fio --name="$tag" --rw="$rw" --bs="$bs" --iodepth="$qd" --numjobs=1 --time_based=1 --runtime="$RUNTIME" \
    --randrepeat=0 --norandommap=1 --output-format=json --output="$D/$tag.json" "$@" &
  local fio_pid=$!
  python3 "$root/bench/ceph/osd-sample.py" "$ASOK" $((RUNTIME - 2)) > "$D/$tag.wip" &
  local sampler=$!
  sleep 2
  local at; at=$(stat -c %s "$log" 2>/dev/null || echo 0)
  ceph -c "$conf" daemon osd.0 config set debug_ms 1 >/dev/null
  sleep 0.3
  ceph -c "$conf" daemon osd.0 config set debug_ms 0 >/dev/null
  tail -c +"$((at + 1))" "$log" 2>/dev/null | grep -o 'osd_op_reply([^)]*)' | head -400 > "$D/$tag.ops" || true
  wait "$fio_pid"
  o1=$(ticks "$OSD_PID") s1=$(ticks "$server") w1=$(sleeps "$OSD_PID") v1=$(sleeps "$server")
  by_thread "$OSD_PID" > "$D/$tag.osdthreads.after"; by_thread "$server" > "$D/$tag.srvthreads.after"
  wait "$sampler" || true
  dump "$D/$tag.after"
  python3 - "$D/$tag" "$tag" $((o1 - o0)) $((s1 - s0)) "$(getconf CLK_TCK)" "$IDLE_OSD_US_PER_S" $((w1 - w0)) $((v1 - v0)) <<'PY'
import collections, json, re, sys
base, tag, osd, srv, hz, idle = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
osd_sleeps, srv_sleeps = int(sys.argv[7]), int(sys.argv[8])
j = json.load(open(base + '.json'))['jobs'][0]
ios = max(j['read']['total_ios'] + j['write']['total_ios'], 1)
iops = j['read']['iops'] + j['write']['iops']
secs = j['job_runtime'] / 1000
def flat(d, p=''):
    for k, v in d.items():
        if isinstance(v, dict):
            if 'avgcount' in v:
                yield p + k + '.count', v['avgcount']
            else:
                yield from flat(v, p + k + '.')
        elif isinstance(v, (int, float)):
            yield p + k, v
a, b = dict(flat(json.load(open(base + '.before')))), dict(flat(json.load(open(base + '.after'))))
osd_us = osd / hz / ios * 1e6
print(f"== {tag}: {ios} client I/Os, {iops:.0f} IOPS; CPU per I/O: OSD {osd_us:.0f} us "
      f"(of it the OSD's idle {idle * secs / ios:.0f} us: {osd_us - idle * secs / ios:.0f} us of work), server {srv / hz / ios * 1e6:.0f} us; "
      f"thread sleeps per I/O: OSD {osd_sleeps / ios:.2f}, server {srv_sleeps / ios:.2f}")
keep = ('osd.op', 'osd.op_r', 'osd.op_w', 'osd.op_rw', 'osd.op_in_bytes', 'osd.op_out_bytes', 'osd.subop',
        'bluestore.read_lat.count', 'bluestore.read_onode_meta_lat.count', 'bluestore.csum_lat.count',
        'bluestore.bluestore_txc', 'bluestore.bluestore_write_big', 'bluestore.bluestore_write_small',
        'bluestore.deferred_write_ops', 'bluestore.bluestore_buffer_miss_bytes', 'bluestore.bluestore_buffer_hit_bytes',
        'bluestore.onode_hits', 'bluestore.onode_misses', 'rocksdb.get', 'rocksdb.submit_latency.count',
        'bluestore.bluestore_write_small_deferred', 'bluestore.bluestore_write_small_new', 'bluestore.bluestore_write_small_pre_read',
        'bluestore.write_penalty_read_ops', 'bluestore.write_pad_bytes', 'bluestore.deferred_write_bytes',
        'bluestore.kv_commit_lat.count', 'bluestore.kv_sync_lat.count', 'bluestore.bluestore_extent_compress')
print('  per I/O: ' + ', '.join(f"{k.split('.', 1)[1]} {(b[k] - a[k]) / ios:.2f}" for k in keep if k in a and k in b))
# How the OSD batched: transactions per RocksDB commit of its kv thread, and the ops it had in
# progress at once (sampled through the admin socket every 50 ms).
txc, kv = b.get('bluestore.bluestore_txc', 0) - a.get('bluestore.bluestore_txc', 0), b.get('bluestore.kv_commit_lat.count', 0) - a.get('bluestore.kv_commit_lat.count', 0)
wip = open(base + '.wip').read().split()
print(f"  batching: {txc / kv if kv else 0:.1f} transactions per kv commit; OSD ops in progress mean {wip[0]}, median {wip[1]}, max {wip[2]} ({wip[3]} samples)")
def threads(which):
    before = dict(l.split('\t') for l in open(f'{base}.{which}threads.before') if '\t' in l)
    after = dict(l.split('\t') for l in open(f'{base}.{which}threads.after') if '\t' in l)
    d = {k: int(v) - int(before.get(k, 0)) for k, v in after.items()}
    return ', '.join(f"{k} {v / ios:.2f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:6] if v > 0)
print('  sleeps per I/O by thread, OSD: ' + threads('osd'))
if tag.startswith('tidemark'):
    print('  sleeps per I/O by thread, server: ' + threads('srv'))
shapes = collections.Counter()
for line in open(base + '.ops'):
    m = re.search(r'osd_op_reply\(\d+ (\S+) \[(.*?)\] ', line)
    if m:
        ops = re.sub(r'\d+~', 'OFF~', m.group(2))
        shapes[ops] += 1
for shape, n in shapes.most_common(4):
    print(f"  ops answered (debug_ms 1, 0.3 s): {n} x [{shape}]")
PY
}
# The OSD's own CPU with no client I/O (heartbeats, ticks, cache trimming): spread over fewer I/Os per
# second it weighs more per I/O, so each row also says what is left once it is taken out.
o0=$(ticks "$OSD_PID"); sleep 5; o1=$(ticks "$OSD_PID")
IDLE_OSD_US_PER_S=$(( (o1 - o0) * 1000000 / $(getconf CLK_TCK) / 5 ))
echo "OSD idle: $IDLE_OSD_US_PER_S us of CPU per second"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
while read -r rw bs qd; do
  [ -n "$rw" ] || continue
  one rbd "$rw" "$bs" "$qd" --ioengine=rbd --clientname=admin --pool="$pool" --rbdname=bench --size="$IMAGE_BYTES"
  one tidemark "$rw" "$bs" "$qd" --ioengine=nbd --uri="nbd://$nbd/bench" --size="$IMAGE_BYTES"
done <<< "$ROWS"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
