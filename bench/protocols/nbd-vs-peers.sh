#!/usr/bin/env bash
# NBD benchmark against the peers, in one run on the same disk (issue 5): fio's nbd engine against
# Tidemark (`tidemark serve`), nbdkit's file plugin and qemu-nbd on a raw file, all backed by the
# same 4 GiB random golden image, with the workloads and fio settings of ../shared/peers/lib.sh.
#   bench/protocols/nbd-vs-peers.sh                 RUNTIME=20 REPS=2 by default (lib.sh)
#   RUNTIME=5 REPS=1 bench/protocols/nbd-vs-peers.sh   a quick pass
#   QEMU=0 ...                                          Tidemark and nbdkit only (A/B runs)
#   ALTERNATE=1 ...   Tidemark and nbdkit served at once, each fio run of one followed by the same
#                     run of the other (which goes first alternates by repetition): for a machine
#                     whose speed drifts between minutes; implies QEMU=0
#   BASELINE=DIR ALTERNATE=1 ...   also a second Tidemark built from the checkout DIR (a commit
#                     before a change), in the same alternation: before/after and nbdkit in one run
# Prints a table (IOPS and MiB/s per server, ratio Tidemark / nbdkit). Only 127.0.0.1 is used;
# every process it starts is stopped and every file removed on exit, also on failure or Ctrl-C.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Beside the repository (/work/main), or two levels up from a worktree (/work/wt/NAME); PEERS overrides.
peers=${PEERS:-$root/../shared/peers}
[ -f "$peers/lib.sh" ] || peers="$root/../../shared/peers"
[ -f "$peers/lib.sh" ] || { echo "needs ../shared/peers/lib.sh beside the repository (or PEERS=DIR)" >&2; exit 2; }
for tool in fio nbdkit qemu-nbd nbdcopy curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
D="$(mktemp -d /tmp/tidemark-nbd-bench.XXXXXX)"
export D RES="$D/results.tsv"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
# shellcheck source=/dev/null
. "$peers/lib.sh"
. "$root/bench/protocols/tidemark-serve.sh"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# fio_one of lib.sh, plus the server's CPU per I/O (utime + stime of its process over the run, over
# the I/Os fio counted, ramp included at the run's rate) into $CPU_RES, for the servers whose PID is
# in CPU_PID (Tidemark, the baseline, nbdkit).
eval "$(declare -f fio_one | sed 's/^fio_one/lib_fio_one/')"
declare -A CPU_PID=()
CPU_RES="$D/cpu.tsv"
fio_one() {
  local pid=${CPU_PID[$1]:-} before after iops
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  lib_fio_one "$@"
  if [ -n "$pid" ]; then
    after=$(cpu_ticks "$pid")
    iops=$(tail -1 "$RES" | cut -f5)
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$6" "$(cpu_us_per_io $((after - before)) "$iops" $((RUNTIME + RAMP)))" >> "$CPU_RES"
  fi
}

make_golden

start_tidemark() {
  tidemark_serve "$D/tm" off "$D/tidemark.log"
  pids+=("$TM_PID")
  tm_api -X POST "${TM_HTTP}api/v1/volumes" -d '{"name":"bench","sizeBytes":4294967296}' >/dev/null
  tm_api -X POST "${TM_HTTP}api/v1/exports" -d '{"target":"bench","name":"bench","protocol":"nbd"}' >/dev/null
  nbdcopy "$GOLD" "nbd://$TM_NBD/bench"
  sync
  TIDEMARK_URI="nbd://$TM_NBD/bench"
  TIDEMARK_PID=$TM_PID
}

start_nbdkit() {
  cp "$GOLD" "$D/nbdkit.img"; sync
  local port
  port=$(free_port)
  nbdkit -f -i 127.0.0.1 -p "$port" file file="$D/nbdkit.img" > "$D/nbdkit.log" 2>&1 &
  pids+=($!)
  CPU_PID[nbdkit]=$!
  wait_port "$port"
  NBDKIT_URI="nbd://127.0.0.1:$port/"
}

stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  pids=()
}

if [ "${ALTERNATE:-0}" = 1 ]; then
  QEMU=0
  if [ -n "${BASELINE:-}" ]; then
    own_root=$root; root=$(cd "$BASELINE" && pwd)
    D_OWN=$D; D="$D/baseline"; mkdir -p "$D"
    start_tidemark
    BASELINE_URI=$TIDEMARK_URI; root=$own_root; D=$D_OWN; CPU_PID[baseline]=$TIDEMARK_PID
  fi
  start_tidemark
  CPU_PID[tidemark]=$TIDEMARK_PID
  start_nbdkit
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for rep in $(seq "$REPS"); do
    while read -r name rw bs qd; do
      if [ $((rep % 2)) = 1 ]; then
        fio_one tidemark "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$TIDEMARK_URI"
        [ -n "${BASELINE:-}" ] && fio_one baseline "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$BASELINE_URI"
        fio_one nbdkit "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$NBDKIT_URI"
      else
        fio_one nbdkit "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$NBDKIT_URI"
        [ -n "${BASELINE:-}" ] && fio_one baseline "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$BASELINE_URI"
        fio_one tidemark "$name" "$rw" "$bs" "$qd" "$rep" --ioengine=nbd --uri="$TIDEMARK_URI"
      fi
    done <<< "$WORKLOADS"
  done
  echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
  stop_servers; rm -f "$D/nbdkit.img"
else
  # ---- Tidemark ----
  start_tidemark
  CPU_PID[tidemark]=$TIDEMARK_PID
  fio_suite tidemark --ioengine=nbd --uri="$TIDEMARK_URI"
  stop_servers

  # ---- nbdkit, file plugin ----
  start_nbdkit
  fio_suite nbdkit --ioengine=nbd --uri="$NBDKIT_URI"
  stop_servers; rm -f "$D/nbdkit.img"
fi

# ---- qemu-nbd, raw file ----
if [ "${QEMU:-1}" != 0 ]; then
cp "$GOLD" "$D/qemu.img"; sync
port=$(free_port)
qemu-nbd -f raw -b 127.0.0.1 -p "$port" -t --cache=writeback --aio=threads "$D/qemu.img" > "$D/qemu-nbd.log" 2>&1 &
pids+=($!)
wait_port "$port"
fio_suite qemu-nbd-raw --ioengine=nbd --uri="nbd://127.0.0.1:$port/"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; pids=(); rm -f "$D/qemu.img"
fi

echo
echo "fio $(fio --version), nbdkit $(nbdkit --version | awk '{print $2}'), $(qemu-nbd --version | head -1); RUNTIME=$RUNTIME REPS=$REPS ALTERNATE=${ALTERNATE:-0}; $(date -u +%Y-%m-%dT%H:%MZ)"
python3 - "$RES" "$CPU_RES" <<'PY'
import sys, collections, statistics, os
rows = collections.defaultdict(list)
cpu = collections.defaultdict(list)
if os.path.exists(sys.argv[2]):
    for line in open(sys.argv[2]):
        peer, name, rep, us = line.rstrip("\n").split("\t")
        if us != "nan":
            cpu[(name, peer)].append(float(us))
reps = {}
for line in open(sys.argv[1]):
    peer, name, qd, rep, iops, mib, lat, p99 = line.rstrip("\n").split("\t")
    rows[(name, peer)].append((float(iops), float(mib)))
    reps[(name, peer, rep)] = float(iops)
names = []
for (name, _) in rows:
    if name not in names:
        names.append(name)
def mean(v): return sum(v) / len(v)
print("| workload | Tidemark IOPS (MiB/s) | nbdkit IOPS (MiB/s) | Tidemark / nbdkit | per repetition | CPU µs per I/O | qemu-nbd raw IOPS (MiB/s) |")
print("|---|---|---|---|---|---|---|")
def cpu_cell(name):
    parts = [f"{p} {mean(cpu[(name, p)]):.1f}" for p in ("tidemark", "baseline", "nbdkit") if cpu[(name, p)]]
    return ", ".join(parts) if parts else "not measured"
for name in names:
    t = rows[(name, "tidemark")]; k = rows[(name, "nbdkit")]; q = rows[(name, "qemu-nbd-raw")]
    ti, tm = mean([x[0] for x in t]), mean([x[1] for x in t])
    ki, km = mean([x[0] for x in k]), mean([x[1] for x in k])
    qemu = f"{mean([x[0] for x in q]):,.0f} ({mean([x[1] for x in q]):,.1f})" if q else "not run"
    base = rows[(name, "baseline")]
    if base:
        bi = mean([x[0] for x in base])
        qemu += f" | baseline {bi:,.0f}: {bi/ki:.2f}x nbdkit, new/baseline {ti/bi:.2f}x"
    per = [reps[(n, "tidemark", r)] / reps[(n, "nbdkit", r)] for (n, p, r) in reps if n == name and p == "tidemark" and (n, "nbdkit", r) in reps]
    spread = f"median {statistics.median(per):.2f}x ({min(per):.2f}-{max(per):.2f})" if per else ""
    print(f"| {name} | {ti:,.0f} ({tm:,.1f}) | {ki:,.0f} ({km:,.1f}) | {ti/ki:.2f}x | {spread} | {cpu_cell(name)} | {qemu} |")
PY
