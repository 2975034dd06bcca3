#!/usr/bin/env bash
# How long the agent pauses an application per snapshot, and what snapshots every INTERVAL cost
# pgbench (issue 19). PostgreSQL (Debian's, /usr/lib/postgresql/*/bin) on ext4 on a Tidemark volume
# (NBD export, nbdfuse, loop device), pgbench -c 4 -j 2 for DURATION seconds per run, one run per
# MODE, the MODES alternated ROUNDS times in one session (the machine is shared: ratios are taken
# within a round, against that round's none):
#   none   no snapshots
#   crash  a plain snapshot every INTERVAL, no agent: the engine's cost alone (redirect-on-write of
#          the blocks pgbench dirties after each cut)
#   fs     a snapshot through an agent without the postgres entry: FIFREEZE, cut, FITHAW
#   pg     a snapshot through the agent with the PostgreSQL plugin: pg_backup_start, FIFREEZE, cut,
#          FITHAW, pg_backup_stop
#   pgcut  the same with the cluster in mode atomic-cut (no backup mode: checks that data and WAL are
#          in the cut, FIFREEZE, cut, FITHAW); not in the default MODES
# Reports TPS per run (and the ratio to none) and, per snapshot as the agent measures it, p50/p99/max
# of two intervals: "frozen", first FIFREEZE to last FITHAW (what the application's writes wait), and
# "quiesce", request received to resume done (adds pg_backup_start's checkpoint, during which
# writes go on, and pg_backup_stop); for crash, the CLI's snapshot call; and, per transaction, the
# bytes the server passed to write calls, its CPU time and the WAL PostgreSQL wrote (full-page images after each
# checkpoint show here): less noisy than TPS on a shared machine. Needs root.
#   bench/agent/pause.sh                       DURATION=60 INTERVAL=10 SCALE=10 MODES="none crash fs pg" ROUNDS=1 WARMUP=60
#   PGCONF="-c checkpoint_timeout=30s" ...     extra postgres options
#   TIDEMARK="dotnet tests/Tidemark.Interop.Tests/bin/Release/net10.0/tidemark.dll" bench/agent/pause.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION=${DURATION:-60}
INTERVAL=${INTERVAL:-10}
SCALE=${SCALE:-10}
MODES=${MODES:-none crash fs pg}
ROUNDS=${ROUNDS:-1}
PGCONF=${PGCONF:-}
WARMUP=${WARMUP:-60}
read -r -a TM <<< "${TIDEMARK:-$root/tidemark}"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
for tool in nbdfuse losetup mkfs.ext4 runuser python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
D="$(mktemp -d /tmp/tidemark-agent-bench.XXXXXX)"
chmod 755 "$D"
pids=(); loop=""
cleanup() {
  runuser -u postgres -- "$pgbin/pg_ctl" stop -m fast -D "$D/fs/pgdata" >/dev/null 2>&1 || true
  # Retried: on a loaded machine the file system can stay busy for a moment after PostgreSQL's stop,
  # and unmounting the NBD attachment under a still-mounted ext4 leaves it mounted read-only.
  for _ in $(seq 50); do umount "$D/fs" 2>/dev/null && break; mountpoint -q "$D/fs" || break; sleep 0.2; done
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
  umount "$D/fuse" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
tm() { "${TM[@]}" --data "$D/data" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

echo "DURATION=${DURATION}s INTERVAL=${INTERVAL}s SCALE=$SCALE MODES=\"$MODES\" ROUNDS=$ROUNDS WARMUP=${WARMUP}s PGCONF=\"$PGCONF\" $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
"${TM[@]}" serve --data "$D/data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication 127.0.0.1:0 --store-capacity 8G --log-level Warning > "$D/serve.log" 2>&1 &
pids+=($!); server=$!
for _ in $(seq 600); do [ -s "$D/data/server.json" ] && break; sleep 0.1; done
tm volume create pg --size 4G >/dev/null
nbd=$(tm export nbd pg --json | json 'd["url"]')
mkdir -p "$D/fuse" "$D/fs" "$D/sock"
nbdfuse "$D/fuse/disk" "$nbd" & pids+=($!)
for _ in $(seq 300); do [ -s "$D/fuse/disk" ] && break; sleep 0.1; done
loop=$(losetup --find --show "$D/fuse/disk")
# Initialized now, not by ext4lazyinit in the background of the first runs (it writes the inode
# tables for minutes after the mount, which would be charged to whichever mode runs first).
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
mount -t ext4 "$loop" "$D/fs"
mkdir "$D/fs/pgdata"; chown postgres:postgres "$D/fs/pgdata" "$D/sock"; chmod 700 "$D/fs/pgdata"
(cd "$D" && runuser -u postgres -- "$pgbin/initdb" --auth=trust --username=postgres -D "$D/fs/pgdata" >/dev/null)
port=$((20000 + RANDOM % 20000))
(cd "$D" && runuser -u postgres -- "$pgbin/pg_ctl" start -w -D "$D/fs/pgdata" -l "$D/sock/pg.log" \
  -o "-c listen_addresses='' -k $D/sock -p $port -c shared_buffers=128MB $PGCONF" >/dev/null)
pgb() { (cd "$D" && runuser -u postgres -- "$pgbin/pgbench" -h "$D/sock" -p "$port" "$@" postgres); }
pgb -i -q -s "$SCALE" >/dev/null 2>&1
# Discarded: the first mode run should not be the one that starts on the caches pgbench -i left.
[ "$WARMUP" -gt 0 ] && pgb -c 4 -j 2 -T "$WARMUP" >/dev/null 2>&1

server_fp=$(tm partner identity --json | json 'd["fingerprint"]')
agent() { # NAME [pair options...]: pairs and starts an agent, adds it as host NAME
  local name=$1; shift
  "${TM[@]}" agent pair --agent-dir "$D/agent-$name" --server-fingerprint "$server_fp" --listen 127.0.0.1:0 \
    --name "$name" --mount "$D/fs=pg" --deadline 30 "$@" >/dev/null
  "${TM[@]}" agent run --agent-dir "$D/agent-$name" > "$D/agent-$name.log" 2>&1 & pids+=($!)
  for _ in $(seq 600); do grep -q '^agent listening' "$D/agent-$name.log" && break; sleep 0.1; done
  local line; line=$(grep '^agent listening' "$D/agent-$name.log")
  tm host add "$name" "$(echo "$line" | awk '{print $4}')" --fingerprint "$(echo "$line" | awk '{print $6}')" >/dev/null
}
agent app --postgres "main:Host=$D/sock;Port=$port;Username=postgres;Database=postgres"
agent fsonly
case " $MODES " in *" pgcut "*) agent cut --postgres "main:Host=$D/sock;Port=$port;Username=postgres;Database=postgres" --postgres-mode atomic-cut ;; esac

# What the server did, cumulative: bytes it passed to write calls (stores, metadata, and its sockets:
# NBD replies) and CPU seconds. Per transaction these say what a mode costs with less noise than TPS
# on a shared machine. Not write_bytes: that counts write-back the kernel charges to the server's
# fsyncs (12.4 GB against 0.9 GB of its own writes in one session here).
counters() { python3 - "$server" "$(wal)" <<'PY'
import os, sys
pid = sys.argv[1]
io = dict(l.split(": ") for l in open(f"/proc/{pid}/io").read().splitlines())
st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
print(int(io["wchar"]), (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK"), sys.argv[2])
PY
}
wal() { (cd "$D" && runuser -u postgres -- "$pgbin/psql" -h "$D/sock" -p "$port" -Atc "SELECT pg_current_wal_lsn() - '0/0'" postgres); }
run() { # MODE ROUND: prints "tps"; with snapshots, the pauses into $D/pauses-MODE, $D/frozen-MODE
  local mode=$1 round=$2; local out="$D/pgbench-$mode-$round.txt"
  # Every run starts just after a checkpoint, so none pays the full-page images of a checkpoint
  # cycle too, and no run inherits the checkpoints (or their absence) of the one before.
  (cd "$D" && runuser -u postgres -- "$pgbin/psql" -h "$D/sock" -p "$port" -qc CHECKPOINT postgres)
  counters > "$D/counters-$mode-$round"
  pgb -c 4 -j 2 -T "$DURATION" > "$out" 2>&1 & local bench=$!
  touch "$D/pauses-$mode" "$D/frozen-$mode"
  if [ "$mode" != none ]; then
    local host i=0; host=$(case $mode in pg) echo app ;; pgcut) echo cut ;; *) echo fsonly ;; esac)
    while sleep "$INTERVAL" && kill -0 "$bench" 2>/dev/null; do
      i=$((i + 1))
      if [ "$mode" = crash ]; then
        local t0; t0=$(date +%s.%N)
        tm snapshot create pg --name "$mode-$round-$i" > /dev/null || echo "snapshot $mode-$round-$i failed" >&2
        python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$t0" "$(date +%s.%N)" >> "$D/pauses-$mode"
      elif tm snapshot create pg --name "$mode-$round-$i" --consistent "$host" > /dev/null; then
        local last; last=$(tm host status "$host" --json | json 'd["status"]["lastSession"]')
        echo "$last" | python3 -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())["pausedSeconds"])' >> "$D/pauses-$mode"
        echo "$last" | python3 -c 'import ast,sys; v=ast.literal_eval(sys.stdin.read()).get("frozenSeconds"); print("" if v is None else v)' >> "$D/frozen-$mode"
      else
        echo "snapshot $mode-$round-$i failed" >&2
      fi
    done
  fi
  wait "$bench"
  counters >> "$D/counters-$mode-$round"
  local txns; txns=$(grep -oP 'number of transactions actually processed: \K[0-9]+' "$out" | head -1)
  python3 - "$D/counters-$mode-$round" "$txns" > "$D/cost-$mode-$round" <<'PY'
import sys
(b0, c0, w0), (b1, c1, w1) = [map(float, l.split()) for l in open(sys.argv[1])]
n = max(1, int(sys.argv[2]))
print(f"{(b1 - b0) / n / 1024:.1f} {(c1 - c0) / n * 1000:.2f} {(w1 - w0) / n / 1024:.1f}")
PY
  grep -oP 'tps = \K[0-9.]+' "$out" | head -1
}
stats() { python3 - "$1" <<'PY'
import sys
xs = sorted(float(l) for l in open(sys.argv[1]) if l.strip())
if not xs: print("-"); sys.exit()
q = lambda p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
print(f"n={len(xs)} p50={q(.5)*1000:.0f}ms p99={q(.99)*1000:.0f}ms max={xs[-1]*1000:.0f}ms")
PY
}
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
read -r -a modes <<< "$MODES"
for round in $(seq "$ROUNDS"); do
  for mode in "${modes[@]}"; do
    tps=$(run "$mode" "$round")
    echo "$round $mode $tps" >> "$D/tps"
    echo "round $round $mode: $tps tps, per transaction: server $(awk '{print $1 " KiB write(), " $2 " ms CPU; WAL " $3 " KiB"}' "$D/cost-$mode-$round") (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
printf "%-6s %-6s %10s %8s %22s %22s %16s\n" round mode tps "vs none" "server KiB write()/txn" "server CPU ms/txn" "WAL KiB/txn"
while read -r round mode tps; do
  base=$(awk -v r="$round" '$1 == r && $2 == "none" {print $3}' "$D/tps")
  read -r kib cpu walkib < "$D/cost-$mode-$round"
  printf "%-6s %-6s %10s %8s %22s %22s %16s\n" "$round" "$mode" "$tps" "$([ -n "$base" ] && ratio "$tps" "$base" || echo -)" "$kib" "$cpu" "$walkib"
done < "$D/tps"
printf "%-6s %8s %8s  %-40s %s\n" mode "sum tps" "vs none" "frozen (writes wait)" "whole quiesce (crash: snapshot call)"
sumtps() { awk -v m="$1" '$2 == m {s += $3} END {print s + 0}' "$D/tps"; }
nonesum=$(sumtps none)
for mode in "${modes[@]}"; do
  s=$(sumtps "$mode")
  printf "%-6s %8s %8s  %-40s %s\n" "$mode" "$s" "$([ "$nonesum" != 0 ] && ratio "$s" "$nonesum" || echo -)" "$(stats "$D/frozen-$mode")" "$(stats "$D/pauses-$mode")"
done
echo "consistency of the last snapshots: $(tm snapshot list pg --json | json '[s["consistency"].split(" (")[0] for s in d[-3:]]')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
