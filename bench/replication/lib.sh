# Shared by the replication benchmarks: two `tidemark serve` on 127.0.0.1, paired both ways.
# Source it after setting root (the repository), D (a scratch directory) and bytes (the volume
# size, which sizes the stores); call stop_servers from the script's own cleanup.
# shellcheck shell=bash
pids=()
tm() { local dir=$1; shift; "$root/tidemark" --data "$dir" "$@"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }
url() { python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])'; }
start() { # DIR; waits for server.json
  "$root/tidemark" serve --data "$1" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication 127.0.0.1:0 \
    --store-capacity "$((bytes / 1073741824 + 2))G" --log-level Warning > "$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$1/server.json" ] && return 0; sleep 0.1; done
  echo "tidemark serve did not start; see $1.log" >&2; exit 1
}
# Starts $D/a (home) and $D/b (dr) and pairs them: a knows b as "dr", b knows a as "home".
start_pair() {
  "$root/tidemark" --help >/dev/null # builds the CLI first if needed, outside start's wait
  start "$D/a"; start "$D/b"
  local ida idb
  ida=$(tm "$D/a" partner identity --json); idb=$(tm "$D/b" partner identity --json)
  tm "$D/a" partner add dr "$(field "$idb" replicationAddress)" --fingerprint "$(field "$idb" fingerprint)" >/dev/null
  tm "$D/b" partner add home "$(field "$ida" replicationAddress)" --fingerprint "$(field "$ida" fingerprint)" >/dev/null
}
stop_servers() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
