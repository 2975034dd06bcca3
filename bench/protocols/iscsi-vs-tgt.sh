#!/usr/bin/env bash
# iSCSI benchmark against tgt, in one run on the same disk (issue 4): iscsi-bench (../shared/peers/
# iscsi-bench.c, libiscsi) and iscsi-perf against Tidemark (`tidemark serve`) and tgt (bs=rdwr),
# both serving the same 4 GiB random golden image, with the specs of ../shared/peers/tgt_perf.sh.
#   RUNTIME=10 REPS=2 bench/protocols/iscsi-vs-tgt.sh
# Needs the tgt and libiscsi-dev Debian packages (installed when missing). tgt is started with the
# peers' own scripts (127.0.0.1:3260, files in /tmp/peers); everything started is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
peers="$root/../shared/peers"
[ -f "$peers/lib.sh" ] || { echo "needs ../shared/peers beside the repository" >&2; exit 2; }
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
cleanup() {
  [ -n "$tm_pid" ] && { kill "$tm_pid" 2>/dev/null || true; wait "$tm_pid" 2>/dev/null || true; }
  "$peers/tgt_stop.sh" >/dev/null 2>&1 || true
  rm -rf "$work" "$D/tgt-lun1.img"   # the golden image stays in /tmp/peers for the next run, as the peers' scripts do
}
trap cleanup EXIT INT TERM
make_golden

run_specs() { # NAME URL
  local who=$1 url=$2 rep spec name
  for rep in $(seq "$REPS"); do
    for spec in "rw4k_qd32 -w -r -b 4096 -q 32" "rw4k_qd1 -w -r -b 4096 -q 1" "rr4k_qd32 -r -b 4096 -q 32" \
                "rr4k_qd1 -r -b 4096 -q 1" "sw1m_qd8 -w -b 1048576 -q 8" "sr1m_qd8 -b 1048576 -q 8"; do
      set -- $spec; name=$1; shift
      line=$("$BENCH" "$@" -t "$RUNTIME" "$url" | tail -1)
      echo -e "$who\t$name\t$rep\t$line" | tee -a "$out"
    done
  done
}

# ---- Tidemark ----
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
tidemark_serve "$work/tm" "127.0.0.1:$port" "$work/tidemark.log"
tm_pid=$TM_PID
tm_api -X POST "${TM_HTTP}api/v1/volumes" -d '{"name":"bench","sizeBytes":4294967296}' >/dev/null
tm_api -X POST "${TM_HTTP}api/v1/exports" -d '{"target":"bench","name":"fill","protocol":"nbd"}' >/dev/null
nbdcopy "$GOLD" "nbd://$TM_NBD/fill"
tm_api -X DELETE "${TM_HTTP}api/v1/exports/fill" >/dev/null
iqn=iqn.2026-11.dev.tidemark:bench
tm_api -X POST "${TM_HTTP}api/v1/exports" -d "{\"target\":\"bench\",\"name\":\"bench\",\"protocol\":\"iscsi\",\"iqn\":\"$iqn\"}" >/dev/null
sync
run_specs tidemark "iscsi://127.0.0.1:$port/$iqn/0"
kill "$tm_pid"; wait "$tm_pid" 2>/dev/null || true; tm_pid=""

# ---- tgt ----
"$peers/tgt_stop.sh" >/dev/null 2>&1 || true
FILL=1 IQN=iqn.2024-01.org.peers:tgt1 "$peers/tgt_start.sh" > "$work/tgt_start.log"
run_specs tgt "iscsi://127.0.0.1:3260/iqn.2024-01.org.peers:tgt1/1"
"$peers/tgt_stop.sh" >/dev/null 2>&1 || true

echo
echo "iscsi-bench (libiscsi $(dpkg-query -W -f='${Version}' libiscsi7 2>/dev/null)), tgt $(dpkg-query -W -f='${Version}' tgt); RUNTIME=$RUNTIME REPS=$REPS; $(date -u +%Y-%m-%dT%H:%MZ)"
python3 - "$out" <<'PY'
import sys, re, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, name, rep, text = line.rstrip("\n").split("\t", 3)
    iops = re.search(r"iops ([0-9.]+)", text)
    mbs = re.search(r"mbps ([0-9.]+)", text)
    rows[(name, who)].append((float(iops.group(1)) if iops else 0.0, float(mbs.group(1)) if mbs else 0.0, text))
names = []
for (name, _) in rows:
    if name not in names:
        names.append(name)
mean = lambda v: sum(v) / len(v)
print("| workload | Tidemark IOPS (MB/s) | tgt IOPS (MB/s) | Tidemark / tgt |")
print("|---|---|---|---|")
for n in names:
    t, g = rows[(n, "tidemark")], rows[(n, "tgt")]
    ti, tm, gi, gm = mean([x[0] for x in t]), mean([x[1] for x in t]), mean([x[0] for x in g]), mean([x[1] for x in g])
    ratio = ti / gi if gi else float("nan")
    print(f"| {n} | {ti:,.0f} ({tm:,.1f}) | {gi:,.0f} ({gm:,.1f}) | {ratio:.2f}x |")
PY
