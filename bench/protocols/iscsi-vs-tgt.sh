#!/usr/bin/env bash
# iSCSI benchmark against tgt, in one run on the same disk (issue 4): iscsi-bench (../shared/peers/
# iscsi-bench.c, libiscsi) and iscsi-perf against Tidemark (`tidemark serve`) and tgt (bs=rdwr),
# both serving the same 4 GiB random golden image, with the specs of ../shared/peers/tgt_perf.sh.
#   RUNTIME=10 REPS=2 bench/protocols/iscsi-vs-tgt.sh
#   BASELINE=DIR ...   also a second Tidemark built from the checkout DIR (a commit before a change),
#                      served at the same time; each run against one is followed by the same run
#                      against the other (which goes first alternates by repetition): before/after in one run
#   TGT=0 ...          skip tgt (a quick before/after)
#   ROWS="sw1m_qd8 rw4k_qd32" ...  only these rows (names as in SPECS below)
# Needs the tgt and libiscsi-dev Debian packages (installed when missing). tgt is started with the
# peers' own scripts (127.0.0.1:3260, files in /tmp/peers); everything started is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Beside the repository (/work/main), or two levels up from a worktree (/work/wt/NAME); PEERS overrides.
peers=${PEERS:-$root/../shared/peers}
[ -f "$peers/lib.sh" ] || peers="$root/../../shared/peers"
[ -f "$peers/lib.sh" ] || { echo "needs ../shared/peers beside the repository (or PEERS=DIR)" >&2; exit 2; }
if ! command -v tgtd >/dev/null || [ ! -f /usr/include/iscsi/iscsi.h ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q tgt libiscsi-dev gcc >/dev/null
fi
export D=/tmp/peers   # the peers' scripts keep the golden image and tgt's LUN here
mkdir -p "$D"
# shellcheck source=/dev/null
. "$peers/lib.sh"
. "$root/bench/protocols/tidemark-serve.sh"
RUNTIME=${RUNTIME:-10}
BENCH=$("$peers/build_iscsi_bench.sh" | tail -1)
work="$(mktemp -d /tmp/tidemark-iscsi-bench.XXXXXX)"
out="$work/results.tsv"
tm_pid=""
base_pid=""
cleanup() {
  [ -n "$tm_pid" ] && { kill "$tm_pid" 2>/dev/null || true; wait "$tm_pid" 2>/dev/null || true; }
  [ -n "$base_pid" ] && { kill "$base_pid" 2>/dev/null || true; wait "$base_pid" 2>/dev/null || true; }
  "$peers/tgt_stop.sh" >/dev/null 2>&1 || true
  rm -rf "$work" "$D/tgt-lun1.img"   # the golden image stays in /tmp/peers for the next run, as the peers' scripts do
}
trap cleanup EXIT INT TERM
make_golden

SPECS=("rw4k_qd32 -w -r -b 4096 -q 32" "rw4k_qd1 -w -r -b 4096 -q 1" "rr4k_qd32 -r -b 4096 -q 32"
       "rr4k_qd1 -r -b 4096 -q 1" "sw1m_qd8 -w -b 1048576 -q 8" "sr1m_qd8 -b 1048576 -q 8")
if [ -n "${ROWS:-}" ]; then
  chosen=()
  for spec in "${SPECS[@]}"; do
    [[ " $ROWS " == *" ${spec%% *} "* ]] && chosen+=("$spec")
  done
  [ ${#chosen[@]} -gt 0 ] || { echo "ROWS=\"$ROWS\" names none of: $(printf '%s ' "${SPECS[@]%% *}")" >&2; exit 2; }
  SPECS=("${chosen[@]}")
fi
# The server's CPU per I/O (utime + stime of its process over the run, over the I/Os counted) goes
# beside each result, for the servers whose PID is in CPU_PID.
declare -A CPU_PID=()
run_one() { # NAME URL REP SPEC...
  local who=$1 url=$2 rep=$3 name=$4 line pid before after us=nan; shift 4
  pid=${CPU_PID[$who]:-}
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  line=$("$BENCH" "$@" -t "$RUNTIME" "$url" | tail -1)
  if [ -n "$pid" ]; then
    after=$(cpu_ticks "$pid")
    us=$(cpu_us_per_io $((after - before)) "$(sed -n 's/.*iops \([0-9.]*\).*/\1/p' <<< "$line")" "$RUNTIME")
  fi
  echo -e "$who\t$name\t$rep\t$us\t$line" | tee -a "$out"
}

run_specs() { # NAME URL [NAME2 URL2: alternate with it]
  local who=$1 url=$2 who2=${3:-} url2=${4:-} rep spec
  for rep in $(seq "$REPS"); do
    for spec in "${SPECS[@]}"; do
      set -- $spec
      if [ -z "$who2" ]; then run_one "$who" "$url" "$rep" "$@"
      elif [ $((rep % 2)) = 1 ]; then run_one "$who" "$url" "$rep" "$@"; run_one "$who2" "$url2" "$rep" "$@"
      else run_one "$who2" "$url2" "$rep" "$@"; run_one "$who" "$url" "$rep" "$@"; fi
    done
  done
}

# Starts a Tidemark from checkout $root with the golden image in an iSCSI export; sets TM_URL, TM_PID.
start_tm() { # NAME
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  tidemark_serve "$work/$1" "127.0.0.1:$port" "$work/$1.log"
  tm_api -X POST "${TM_HTTP}api/v1/volumes" -d '{"name":"bench","sizeBytes":4294967296}' >/dev/null
  tm_api -X POST "${TM_HTTP}api/v1/exports" -d '{"target":"bench","name":"fill","protocol":"nbd"}' >/dev/null
  nbdcopy "$GOLD" "nbd://$TM_NBD/fill"
  tm_api -X DELETE "${TM_HTTP}api/v1/exports/fill" >/dev/null
  tm_api -X POST "${TM_HTTP}api/v1/exports" -d "{\"target\":\"bench\",\"name\":\"bench\",\"protocol\":\"iscsi\",\"iqn\":\"$iqn\"}" >/dev/null
  TM_URL="iscsi://127.0.0.1:$port/$iqn/0"
}

# ---- Tidemark (and the baseline build, alternating with it) ----
iqn=iqn.2026-11.dev.tidemark:bench
if [ -n "${BASELINE:-}" ]; then
  own_root=$root; root=$(cd "$BASELINE" && pwd)
  start_tm baseline; base_pid=$TM_PID; base_url=$TM_URL; root=$own_root; CPU_PID[baseline]=$base_pid
fi
start_tm tidemark; tm_pid=$TM_PID; CPU_PID[tidemark]=$tm_pid
sync
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${BASELINE:-}" ]; then run_specs tidemark "$TM_URL" baseline "$base_url"; else run_specs tidemark "$TM_URL"; fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
kill "$tm_pid"; wait "$tm_pid" 2>/dev/null || true; tm_pid=""
[ -n "$base_pid" ] && { kill "$base_pid"; wait "$base_pid" 2>/dev/null || true; base_pid=""; }

# ---- tgt ----
if [ "${TGT:-1}" != 0 ]; then
  "$peers/tgt_stop.sh" >/dev/null 2>&1 || true
  FILL=1 IQN=iqn.2024-01.org.peers:tgt1 "$peers/tgt_start.sh" > "$work/tgt_start.log"
  CPU_PID[tgt]=$(pgrep -n -x tgtd || true)   # the tgtd just started (the newest)
  run_specs tgt "iscsi://127.0.0.1:3260/iqn.2024-01.org.peers:tgt1/1"
  "$peers/tgt_stop.sh" >/dev/null 2>&1 || true
fi

echo
echo "iscsi-bench (libiscsi $(dpkg-query -W -f='${Version}' libiscsi7 2>/dev/null)), tgt $(dpkg-query -W -f='${Version}' tgt); RUNTIME=$RUNTIME REPS=$REPS; $(date -u +%Y-%m-%dT%H:%MZ)"
python3 - "$out" <<'PY'
import sys, re, collections
rows = collections.defaultdict(list)
cpu = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, name, rep, us, text = line.rstrip("\n").split("\t", 4)
    if us != "nan":
        cpu[(name, who)].append(float(us))
    iops = re.search(r"iops ([0-9.]+)", text)
    mbs = re.search(r"mbps ([0-9.]+)", text)
    rows[(name, who)].append((float(iops.group(1)) if iops else 0.0, float(mbs.group(1)) if mbs else 0.0, text))
names = []
for (name, _) in rows:
    if name not in names:
        names.append(name)
mean = lambda v: sum(v) / len(v)
peers = [p for p in ("baseline", "tgt") if any(who == p for (_, who) in rows)]
print("| workload | Tidemark IOPS (MB/s) | " + " | ".join(f"{p} IOPS (MB/s) | Tidemark / {p}" for p in peers) + " | CPU µs per I/O |")
print("|---|---|" + "---|---|" * len(peers) + "---|")
for n in names:
    t = rows[(n, "tidemark")]
    ti, tm = mean([x[0] for x in t]), mean([x[1] for x in t])
    cells = []
    for p in peers:
        g = rows.get((n, p), [])
        gi, gm = (mean([x[0] for x in g]), mean([x[1] for x in g])) if g else (0.0, 0.0)
        cells.append(f"{gi:,.0f} ({gm:,.1f}) | {(ti / gi if gi else float('nan')):.2f}x")
    used = ", ".join(f"{p} {mean(cpu[(n, p)]):.1f}" for p in ["tidemark"] + peers if cpu[(n, p)]) or "not measured"
    print(f"| {n} | {ti:,.0f} ({tm:,.1f}) | " + " | ".join(cells) + f" | {used} |")
PY
