#!/usr/bin/env bash
# Copy offload against a copy by the initiator, in one run (issue 21): a GIB GiB range of one
# engine volume is copied to another place on the same LUN with EXTENDED COPY, then with READ (16)
# / WRITE (16) by a libiscsi initiator on this machine (xcopy-bench.c beside this script). Prints
# time, MiB/s, the SCSI data that crossed the network and the volume's allocated bytes after each
# step, verifies both copies, and ends with `uptime`.
#   GIB=10 bench/copy/xcopy-vs-rw.sh
# Needs libiscsi-dev and gcc (installed when missing); the pool file lives in a temporary directory
# under /tmp and needs 3 x GIB GiB of free space; everything started is stopped on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -f /usr/include/iscsi/iscsi.h ] && command -v gcc >/dev/null \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q libiscsi-dev gcc >/dev/null
. "$root/bench/protocols/tidemark-serve.sh"
GIB=${GIB:-10}
work="$(mktemp -d /tmp/tidemark-xcopy-bench.XXXXXX)"
tm_pid=""
cleanup() {
  [ -n "$tm_pid" ] && { kill "$tm_pid" 2>/dev/null || true; wait "$tm_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
bench="$work/xcopy-bench"
gcc -O2 -Wall -o "$bench" "$root/bench/copy/xcopy-bench.c" -liscsi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TM_STORE_CAPACITY="$((3 * GIB + 2))G" tidemark_serve "$work/tm" "127.0.0.1:$port" "$work/tidemark.log"
tm_pid=$TM_PID
size=$(( (3 * GIB + 1) << 30 ))
tm_api -X POST "${TM_HTTP}api/v1/volumes" -d "{\"name\":\"copy\",\"sizeBytes\":$size}" >/dev/null
url=$(tm_api -X POST "${TM_HTTP}api/v1/exports" -d '{"target":"copy","name":"copy","protocol":"iscsi"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
allocated() { tm_api "${TM_HTTP}api/v1/volumes/copy" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocatedBytes"])'; }

blocks=$(( GIB << 30 >> 9 ))   # the volume has 512-byte blocks
src=0; dst_x=$blocks; dst_rw=$(( 2 * blocks ))
echo "fill:   $("$bench" fill "$url" $src $blocks | tail -1)   allocated $(allocated)"
echo "xcopy:  $("$bench" xcopy "$url" $src $dst_x $blocks | tail -1)   allocated $(allocated)"
echo "rw:     $("$bench" rw "$url" $src $dst_rw $blocks | tail -1)   allocated $(allocated)"
"$bench" verify "$url" $src $dst_x $blocks >/dev/null && echo "verify: the EXTENDED COPY destination matches the source"
"$bench" verify "$url" $src $dst_rw $blocks >/dev/null && echo "verify: the READ/WRITE destination matches the source"
uptime
