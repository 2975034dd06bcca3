# Sourced by the protocol benchmarks: starts `tidemark serve` on a fresh data directory and waits
# until it has written server.json.
#   tidemark_serve DATA_DIR ISCSI_LISTEN LOG   ISCSI_LISTEN is "off" or host:port
# TM_STORE_CAPACITY (default 12G) sizes the pool's file store. Sets TM_PID, TM_HTTP (base URL), TM_NBD (host:port) and defines tm_api (curl with the token).
tidemark_serve() {
  local data=$1 iscsi=$2 log=$3
  "$root/tidemark" --help >/dev/null   # builds the CLI on first use
  "$root/tidemark" serve --data "$data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi "$iscsi" --replication off \
    --store-capacity "${TM_STORE_CAPACITY:-12G}" --log-level Warning > "$log" 2>&1 &
  TM_PID=$!
  for _ in $(seq 300); do [ -s "$data/server.json" ] && break; sleep 0.1; done
  [ -s "$data/server.json" ] || { kill "$TM_PID" 2>/dev/null; echo "tidemark serve did not start; see $log" >&2; exit 1; }
  TM_HTTP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$data/server.json")
  TM_NBD=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nbd"])' "$data/server.json")
  TM_TOKEN=$(cat "$data/token")
}

tm_api() { curl -sf -H "Authorization: Bearer $TM_TOKEN" -H 'Content-Type: application/json' "$@"; }

# cpu_ticks PID: user + system CPU the process has used so far, in clock ticks (0 once it is gone).
# The benchmarks read it before and after each run: CPU per I/O is a figure a loaded machine does not
# distort much, where IOPS of one run are noise.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

# cpu_us_per_io TICKS IOPS SECONDS: microseconds of CPU per I/O over a run of SECONDS at IOPS.
cpu_us_per_io() { python3 -c 'import sys; t,i,s,c=map(float,sys.argv[1:]); print(f"{t/c*1e6/(i*s):.1f}" if i*s>0 else "nan")' "$1" "$2" "$3" "$CLK_TCK"; }
