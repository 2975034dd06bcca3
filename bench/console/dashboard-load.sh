#!/usr/bin/env bash
# The web console's dashboard first load (issue 20: < 500 KB transferred and interactive in < 1 s
# with 1,000 volumes and 20,000 snapshots), in Debian's chromium through playwright-core (npm):
#   bench/console/dashboard-load.sh              VOLUMES=1000 SNAPSHOTS=20000 RUNS=5
#   VOLUMES=100 SNAPSHOTS=2000 bench/console/dashboard-load.sh    a quick pass
# Each run is a fresh browser context (cold cache) signed in with the admin token; the time is the
# page's own performance.now() when the dashboard has rendered (navigation start = 0). Only
# 127.0.0.1; the server is stopped and its data removed on exit, also on failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$root/bench/console"
for tool in node npm python3 /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
D="$(mktemp -d /tmp/tidemark-console-bench.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT INT TERM

"$root/tidemark" --help >/dev/null   # builds the CLI on first use
"$root/tidemark" serve --data "$D/tm" --http 127.0.0.1:0 --nbd off --iscsi off --replication off \
  --store-capacity 4G --log-level Warning > "$D/tidemark.log" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -s "$D/tm/server.json" ] && break; sleep 0.1; done
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$D/tm/server.json")
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
node "$here/dashboard-load.mjs" "$http" "$(cat "$D/tm/token")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
