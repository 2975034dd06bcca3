#!/usr/bin/env bash
# What /metrics costs in memory (ADR 0019): RSS (VmRSS) of an idle `tidemark serve` of this checkout
# and of a BASE checkout (default /tmp/base-s16, session 16's start with the hand-written renderer),
# alternating in one run, ROUNDS times each:
#   bench/memory/metrics-rss.sh                 BASE=/tmp/base-s16 VOLUMES=1000 ROUNDS=2
#   CLI=src/Tidemark.Cli/bin/Release/net10.0/tidemark.dll ...   this build's CLI as built by
#                                               `dotnet build`, instead of publishing it through ./tidemark
# Per run: RSS 5 s after the start (idle, nothing scraped), after the first scrape, then after VOLUMES
# volumes are created and exported over NBD (through one keep-alive connection) and /metrics is scraped
# three times; with the GC heap the server itself reports and the scrape's size. Default settings;
# only 127.0.0.1; each server is stopped and its data removed on exit, also on failure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BASE=${BASE:-/tmp/base-s16}; VOLUMES=${VOLUMES:-1000}; ROUNDS=${ROUNDS:-2}
for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
[ -x "$BASE/tidemark" ] || { echo "BASE=$BASE is not a tidemark checkout (no ./tidemark)" >&2; exit 2; }
D="$(mktemp -d /tmp/tidemark-metrics-rss.XXXXXX)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT INT TERM
if [ -n "${CLI:-}" ]; then this_cli=(dotnet "$CLI"); else this_cli=("$root/tidemark"); fi
base_cli=("$BASE/tidemark")
"${this_cli[@]}" --help >/dev/null   # builds the CLIs on first use, outside the measurement
"${base_cli[@]}" --help >/dev/null

rss() { awk '/^VmRSS/ {print int($2/1024)}' "/proc/$pid/status"; }
# The managed heap as the server reports it (same family in both builds), MiB.
gc_heap() { awk '/^tidemark_process_gc_heap_bytes/ {printf "%d", $2/1048576}' "$1"; }

run() {
  local name=$1 round=$2 data="$D/$1-$2"; shift 2
  # exec: the measured pid is the server's own (./tidemark execs dotnet too).
  ( exec "$@" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication off \
    --log-level Warning > "$D/$name.log" 2>&1 ) &
  pid=$!
  for _ in $(seq 600); do [ -s "$data/server.json" ] && break; sleep 0.1; done
  local http token
  http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$data/server.json")
  token=$(cat "$data/token")
  scrape() { curl -sf -H "Authorization: Bearer $token" "${http}metrics" > "$D/scrape.txt"; }
  sleep 5
  local idle; idle=$(rss)
  scrape; local first; first=$(rss); local first_heap; first_heap=$(gc_heap "$D/scrape.txt")
  python3 - "$http" "$token" "$VOLUMES" <<'PY'
import http.client, json, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1]); token = sys.argv[2]; n = int(sys.argv[3])
c = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
def post(path, body):
    c.request("POST", path, json.dumps(body), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = c.getresponse(); data = r.read()
    if r.status >= 300: sys.exit(f"POST {path}: {r.status} {data[:300]!r}")
for i in range(n):
    post("/api/v1/volumes", {"name": f"v{i}", "sizeBytes": 1 << 20})
    post("/api/v1/exports", {"target": f"v{i}", "name": f"v{i}", "protocol": "nbd"})
PY
  scrape; scrape; scrape
  local after; after=$(rss)
  local lines; lines=$(grep -vc '^#' "$D/scrape.txt")
  local kib; kib=$(( $(wc -c < "$D/scrape.txt") / 1024 ))
  echo "$name round $round: RSS MiB idle $idle, after 1st scrape $first (GC heap $first_heap), after $VOLUMES exported volumes + 3 scrapes $after (GC heap $(gc_heap "$D/scrape.txt")); scrape $lines series, $kib KiB"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$data"
}

echo "$(date -u +%Y-%m-%dT%H:%MZ), load $(cut -d' ' -f1-3 /proc/loadavg); this $(git -C "$root" rev-parse --short HEAD), base $(git -C "$BASE" rev-parse --short HEAD 2>/dev/null || echo "$BASE")"
for round in $(seq "$ROUNDS"); do
  run base "$round" "${base_cli[@]}"
  run this "$round" "${this_cli[@]}"
done
echo "load at the end $(cut -d' ' -f1-3 /proc/loadavg)"
