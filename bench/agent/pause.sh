#!/usr/bin/env bash
# How long the agent pauses an application per snapshot, and what snapshots every INTERVAL cost
# pgbench (issue 19). PostgreSQL (Debian's, /usr/lib/postgresql/*/bin) on ext4 on a Tidemark volume
# (NBD export, nbdfuse, loop device), pgbench -c 4 -j 2 for DURATION seconds three times in one run:
#   none        no snapshots
#   postgresql  a snapshot through the agent every INTERVAL: pg_backup_start (fast), FIFREEZE, cut,
#               FITHAW, pg_backup_stop
#   filesystem  the same through a second agent without the postgres entry: FIFREEZE, cut, FITHAW
# Reports TPS per run (and the ratio to none) and, per snapshot as the agent measures it, p50/p99/max
# of two intervals: "frozen", first FIFREEZE to last FITHAW (what the application's writes wait), and
# "quiesce", request received to resume done (adds pg_backup_start's checkpoint, during which
# writes go on, and pg_backup_stop). Needs root.
#   bench/agent/pause.sh                                   DURATION=60 INTERVAL=10 SCALE=10
#   TIDEMARK="dotnet tests/Tidemark.Interop.Tests/bin/Release/net10.0/tidemark.dll" bench/agent/pause.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION=${DURATION:-60}
INTERVAL=${INTERVAL:-10}
SCALE=${SCALE:-10}
read -r -a TM <<< "${TIDEMARK:-$root/tidemark}"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
for tool in nbdfuse losetup mkfs.ext4 runuser python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
D="$(mktemp -d /tmp/tidemark-agent-bench.XXXXXX)"
chmod 755 "$D"
pids=(); loop=""
cleanup() {
  [ -f "$D/pgdata/postmaster.pid" ] && runuser -u postgres -- "$pgbin/pg_ctl" stop -m fast -D "$D/fs/pgdata" >/dev/null 2>&1 || true
  runuser -u postgres -- "$pgbin/pg_ctl" stop -m fast -D "$D/fs/pgdata" >/dev/null 2>&1 || true
  umount "$D/fs" 2>/dev/null || true
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null || true
  umount "$D/fuse" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
tm() { "${TM[@]}" --data "$D/data" "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

echo "DURATION=${DURATION}s INTERVAL=${INTERVAL}s SCALE=$SCALE $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
"${TM[@]}" serve --data "$D/data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication 127.0.0.1:0 --store-capacity 8G --log-level Warning > "$D/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$D/data/server.json" ] && break; sleep 0.1; done
tm volume create pg --size 4G >/dev/null
nbd=$(tm export nbd pg --json | json 'd["url"]')
mkdir -p "$D/fuse" "$D/fs" "$D/sock"
nbdfuse "$D/fuse/disk" "$nbd" & pids+=($!)
for _ in $(seq 300); do [ -s "$D/fuse/disk" ] && break; sleep 0.1; done
loop=$(losetup --find --show "$D/fuse/disk")
mkfs.ext4 -q "$loop"
mount -t ext4 "$loop" "$D/fs"
mkdir "$D/fs/pgdata"; chown postgres:postgres "$D/fs/pgdata" "$D/sock"; chmod 700 "$D/fs/pgdata"
(cd "$D" && runuser -u postgres -- "$pgbin/initdb" --auth=trust --username=postgres -D "$D/fs/pgdata" >/dev/null)
port=$((20000 + RANDOM % 20000))
(cd "$D" && runuser -u postgres -- "$pgbin/pg_ctl" start -w -D "$D/fs/pgdata" -l "$D/sock/pg.log" \
  -o "-c listen_addresses='' -k $D/sock -p $port -c shared_buffers=128MB" >/dev/null)
pgb() { (cd "$D" && runuser -u postgres -- "$pgbin/pgbench" -h "$D/sock" -p "$port" "$@" postgres); }
pgb -i -q -s "$SCALE" >/dev/null 2>&1

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

run() { # MODE: prints "tps" and, with snapshots, the pauses into $D/pauses-MODE
  local mode=$1; local out="$D/pgbench-$mode.txt"
  pgb -c 4 -j 2 -T "$DURATION" > "$out" 2>&1 & local bench=$!
  : > "$D/pauses-$mode"; : > "$D/frozen-$mode"
  if [ "$mode" != none ]; then
    local host i=0; host=$([ "$mode" = postgresql ] && echo app || echo fsonly)
    while sleep "$INTERVAL" && kill -0 "$bench" 2>/dev/null; do
      i=$((i + 1))
      if tm snapshot create pg --name "$mode-$i" --consistent "$host" > /dev/null; then
        local last; last=$(tm host status "$host" --json | json 'd["status"]["lastSession"]')
        echo "$last" | python3 -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())["pausedSeconds"])' >> "$D/pauses-$mode"
        echo "$last" | python3 -c 'import ast,sys; v=ast.literal_eval(sys.stdin.read()).get("frozenSeconds"); print("" if v is None else v)' >> "$D/frozen-$mode"
      else
        echo "snapshot $mode-$i failed" >&2
      fi
    done
  fi
  wait "$bench"
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
none=$(run none); pg=$(run postgresql); fs=$(run filesystem)
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
printf "%-12s %10s %8s  %-40s %s\n" run tps ratio "frozen (writes wait)" "whole quiesce"
printf "%-12s %10s %8s  %-40s %s\n" none "$none" 1.00x - -
printf "%-12s %10s %8s  %-40s %s\n" postgresql "$pg" "$(ratio "$pg" "$none")" "$(stats "$D/frozen-postgresql")" "$(stats "$D/pauses-postgresql")"
printf "%-12s %10s %8s  %-40s %s\n" filesystem "$fs" "$(ratio "$fs" "$none")" "$(stats "$D/frozen-filesystem")" "$(stats "$D/pauses-filesystem")"
echo "consistency of the last snapshots: $(tm snapshot list pg --json | json '[s["consistency"].split(" (")[0] for s in d[-2:]]')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
