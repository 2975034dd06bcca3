#!/usr/bin/env bash
# Protocol transport comparison (issue 18 §1, docs/adr/0010-protocol-transport.md): the same NBD and
# iSCSI connections on the hand-written transport ("native") and on Kestrel's socket transport
# (`serve --protocol-transport kestrel`, and kestrel-splice for NBD: Kestrel with the socket handed to
# NBD for splice and write-behind). One server per transport runs at once, each on its own data
# directory and ports with the same volume (filled with the same random image); every row runs on
# each server in turn, the order rotating by round, so a machine whose speed drifts affects all alike.
#   bench/protocols/transport-compare.sh              RUNTIME=10 ROUNDS=3, volumes of 1 GiB
#   SMOKE=1 bench/protocols/transport-compare.sh      one short round of every row (checks the script)
#   TRANSPORTS="native kestrel" VOLUME_MIB=4096 RUNTIME=20 ROUNDS=5 ...
# NBD rows are fio's nbd engine with ../shared/peers/lib.sh's workloads; iSCSI rows are iscsi-bench
# (../shared/peers/iscsi-bench.c) with iscsi-vs-tgt.sh's. Kestrel runs with
# DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1 (its inline scheduling as documented); kestrel-splice
# without it (it deadlocks with it: see the ADR). Prints the load average before and after, medians
# per row and transport, and each transport's median / native's. Only 127.0.0.1 is used; everything
# started is stopped and every file removed on exit, also on failure or Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Beside the repository (/work/main), or two levels up from a worktree (/work/wt/NAME); PEERS overrides.
peers=${PEERS:-$root/../shared/peers}
[ -f "$peers/lib.sh" ] || peers="$root/../../shared/peers"
[ -f "$peers/lib.sh" ] || { echo "needs ../shared/peers/lib.sh beside the repository (or PEERS=DIR)" >&2; exit 2; }
for tool in fio nbdcopy curl python3 gcc; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
[ -f /usr/include/iscsi/iscsi.h ] || { echo "needs libiscsi-dev (apt-get install libiscsi-dev) to build iscsi-bench" >&2; exit 2; }
if [ "${SMOKE:-0}" = 1 ]; then
  RUNTIME=${RUNTIME:-2} RAMP=${RAMP:-0} ROUNDS=${ROUNDS:-1} VOLUME_MIB=${VOLUME_MIB:-256}
fi
RUNTIME=${RUNTIME:-10}
RAMP=${RAMP:-2}
ROUNDS=${ROUNDS:-3}
VOLUME_MIB=${VOLUME_MIB:-1024}
TRANSPORTS=${TRANSPORTS:-"native kestrel kestrel-splice"}
D="$(mktemp -d /tmp/tidemark-transport-bench.XXXXXX)"
export D RES="$D/nbd.tsv" RUNTIME RAMP
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
# shellcheck source=/dev/null
. "$peers/lib.sh"
BENCH=$("$peers/build_iscsi_bench.sh" | tail -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
"$root/tidemark" --help >/dev/null   # builds the CLI on first use

# The same random content in every volume: reads never hit holes, writes overwrite allocated blocks.
image="$D/image.raw"
fio --name=image --filename="$image" --rw=write --bs=1M --size="${VOLUME_MIB}M" --ioengine=psync \
    --refill_buffers=1 --output=/dev/null

declare -A NBD_URI ISCSI_URI
start() { # TRANSPORT
  local t=$1 data="$D/$1" iscsi inline=0 http nbd token
  iscsi=$(free_port)
  [ "$t" = kestrel ] && inline=1
  DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=$inline "$root/tidemark" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 \
    --iscsi "127.0.0.1:$iscsi" --replication off --store-capacity "$((VOLUME_MIB * 3))M" --log-level Warning \
    --protocol-transport "$t" > "$D/$t.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$data/server.json" ] && break; sleep 0.1; done
  [ -s "$data/server.json" ] || { echo "tidemark serve ($t) did not start:" >&2; cat "$D/$t.log" >&2; exit 1; }
  http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$data/server.json")
  nbd=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nbd"])' "$data/server.json")
  token=$(cat "$data/token")
  api() { curl -sf -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$@" >/dev/null; }
  api -X POST "${http}api/v1/volumes" -d "{\"name\":\"bench\",\"sizeBytes\":$((VOLUME_MIB << 20))}"
  api -X POST "${http}api/v1/exports" -d '{"target":"bench","name":"bench","protocol":"nbd"}'
  api -X POST "${http}api/v1/exports" -d '{"target":"bench","name":"bench-iscsi","protocol":"iscsi","iqn":"iqn.2026-12.dev.tidemark:bench"}'
  nbdcopy "$image" "nbd://$nbd/bench"
  NBD_URI[$t]="nbd://$nbd/bench"
  ISCSI_URI[$t]="iscsi://127.0.0.1:$iscsi/iqn.2026-12.dev.tidemark:bench/0"
}

load_before=$(load)
for t in $TRANSPORTS; do start "$t"; done
rm -f "$image"; sync

ISCSI_WORKLOADS="rw4k_qd32 -w -r -b 4096 -q 32
rw4k_qd1 -w -r -b 4096 -q 1
rr4k_qd32 -r -b 4096 -q 32
rr4k_qd1 -r -b 4096 -q 1
sw1m_qd8 -w -b 1048576 -q 8
sr1m_qd8 -b 1048576 -q 8"

# The order of the transports within a row rotates by round.
rotated() { # ROUND
  local -a list=($TRANSPORTS); local n=${#list[@]} i
  for ((i = 0; i < n; i++)); do echo "${list[$(((i + $1) % n))]}"; done
}

for round in $(seq "$ROUNDS"); do
  echo "round $round: load $(load)"
  while read -r name rw bs qd; do
    for t in $(rotated "$round"); do
      fio_one "nbd-$t" "$name" "$rw" "$bs" "$qd" "$round" --ioengine=nbd --uri="${NBD_URI[$t]}"
    done
  done <<< "$WORKLOADS"
  while read -r name args; do
    for t in $(rotated "$round"); do
      # Kestrel's socket is handed to NBD only; for iSCSI kestrel-splice is kestrel again.
      [ "$t" = kestrel-splice ] && continue
      # shellcheck disable=SC2086
      line=$("$BENCH" $args -t "$RUNTIME" "${ISCSI_URI[$t]}" | tail -1)
      echo -e "iscsi-$t\t$name\t$round\t$line" | tee -a "$D/iscsi.tsv"
    done
  done <<< "$ISCSI_WORKLOADS"
done
load_after=$(load)

echo
echo "transport-compare: fio $(fio --version), libiscsi $(dpkg-query -W -f='${Version}' libiscsi7 2>/dev/null); RUNTIME=$RUNTIME RAMP=$RAMP ROUNDS=$ROUNDS VOLUME_MIB=$VOLUME_MIB; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)"
echo "load average (1, 5, 15 min) before: $load_before; after: $load_after"
python3 - "$D/nbd.tsv" "$D/iscsi.tsv" "$TRANSPORTS" <<'PY'
import sys, re, collections, statistics
nbd, iscsi, transports = sys.argv[1], sys.argv[2], sys.argv[3].split()
rows = collections.defaultdict(list)   # (protocol, row, transport) -> [(iops, MiB/s)] per round
order = []
for line in open(nbd):
    peer, name, qd, rnd, iops, mib, lat, p99 = line.rstrip("\n").split("\t")
    proto, t = peer.split("-", 1)
    rows[(proto, name, t)].append((float(iops), float(mib)))
    if (proto, name) not in order: order.append((proto, name))
for line in open(iscsi):
    peer, name, rnd, text = line.rstrip("\n").split("\t", 3)
    proto, t = peer.split("-", 1)
    iops = float(re.search(r"iops ([0-9.]+)", text).group(1))
    mbs = float(re.search(r"mbps ([0-9.]+)", text).group(1)) * 1e6 / 2**20
    rows[(proto, name, t)].append((iops, mbs))
    if (proto, name) not in order: order.append((proto, name))
others = [t for t in transports if t != "native"]
head = "| row | native IOPS (MiB/s) |" + "".join(f" {t} IOPS (MiB/s) | {t} / native (per round) |" for t in others)
print(head)
print("|---" * (2 + 2 * len(others)) + "|")
med = lambda v: statistics.median(v)
for proto, name in order:
    base = rows.get((proto, name, "native"), [])
    if not base: continue
    bi, bm = med([x[0] for x in base]), med([x[1] for x in base])
    cells = f"| {proto} {name} | {bi:,.0f} ({bm:,.1f}) |"
    for t in others:
        v = rows.get((proto, name, t), [])
        if not v:
            cells += " - | - |"; continue
        ti, tm = med([x[0] for x in v]), med([x[1] for x in v])
        per = [a[0] / b[0] for a, b in zip(v, base) if b[0]]
        cells += f" {ti:,.0f} ({tm:,.1f}) | {ti / bi:.2f}x ({min(per):.2f}-{max(per):.2f}) |"
    print(cells)
PY
