#!/usr/bin/env bash
# One incremental replication cycle against the peers, in one run on the same disk (issue 6):
# a SIZE volume (default 10G) written in full with random data, then 1% of its 4 KiB blocks
# overwritten at random, then one incremental cycle:
#   Tidemark   replica sync between two `tidemark serve` on 127.0.0.1 (mutual TLS, zstd level 3)
#   btrfs      btrfs send -p OLD NEW | btrfs receive, between two loop-mounted btrfs file systems
#   rsync      rsync --inplace --no-whole-file of the image file (delta algorithm forced)
# Reports bytes on the wire (Tidemark: stream bytes before TLS; btrfs: the send stream; rsync:
# "Total bytes sent" of --stats) and wall time (Tidemark: the sync's own duration as the server
# records it, and in brackets the CLI command's, which adds a .NET process start).
# Each phase cleans up before the next (peak disk use about 2 x SIZE); all on exit, also on failure.
#   bench/replication/incremental-vs-btrfs.sh          SIZE=10G
#   SIZE=2G bench/replication/incremental-vs-btrfs.sh  a quick pass
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SIZE=${SIZE:-10G}
bytes=$(numfmt --from=iec "$SIZE")
blocks=$((bytes / 4096))
changed=$((blocks / 100))
for tool in fio nbdcopy curl python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
if ! command -v btrfs >/dev/null || ! command -v rsync >/dev/null; then
  echo "== installing btrfs-progs and rsync"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q btrfs-progs rsync >/dev/null
fi
D="$(mktemp -d /tmp/tidemark-repl-bench.XXXXXX)"
. "$root/bench/replication/lib.sh"
loops=(); mounts=()
cleanup() {
  stop_servers
  for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT INT TERM
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }
RES="$D/results.tsv"
echo "SIZE=$SIZE, $changed changed 4 KiB blocks ($((changed * 4096)) bytes); $(date -u +%Y-%m-%dT%H:%MZ)"

# ---- Tidemark: two servers, paired ----
start_pair
tm "$D/a" volume create bench --size "$SIZE" >/dev/null
url=$(tm "$D/a" export nbd bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
fio --name=fill --ioengine=nbd --uri="$url" --rw=write --bs=1M --iodepth=8 --size="$bytes" --refill_buffers=1 --output=/dev/null
tm "$D/a" replica create bench --to dr >/dev/null
t0=$(now); tm "$D/a" replica sync bench --json > "$D/full.json"; t1=$(now)
echo "tidemark full sync: $(secs "$t0" "$t1") s, $(field "$(cat "$D/full.json")" lastBytesSent) bytes"
fio --name=change --ioengine=nbd --uri="$url" --rw=randwrite --bs=4k --number_ios="$changed" --size="$bytes" \
    --refill_buffers=1 --randseed=42 --output=/dev/null
t0=$(now); tm "$D/a" replica sync bench --json > "$D/incr.json"; t1=$(now)
incr=$(cat "$D/incr.json")
echo -e "tidemark\t$(field "$incr" lastDurationSeconds) (CLI $(secs "$t0" "$t1"))\t$(field "$incr" lastBytesSent)\t$(field "$incr" lastRangeBytes)" >> "$RES"
snap=$(field "$incr" lastSnapshot)
hash() { local dir=$1 name=$2; local u; u=$(tm "$dir" export nbd "bench@$snap" --name "$name" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])'); nbdcopy "$u" - | sha256sum | cut -d' ' -f1; }
[ "$(hash "$D/a" ha)" = "$(hash "$D/b" hb)" ] && echo "  replica snapshot identical (sha256)" || { echo "replica differs!" >&2; exit 1; }
stop_servers; rm -rf "$D/a" "$D/b"

# ---- btrfs: send -p | receive between two loop-mounted file systems ----
for x in a b; do
  truncate -s "$((bytes + bytes / 4 + 1073741824))" "$D/btrfs-$x.img"
  l=$(losetup -f --show "$D/btrfs-$x.img"); loops+=("$l")
  mkfs.btrfs -q -f "$l" >/dev/null 2>&1; mkdir -p "$D/mnt-$x"; mount "$l" "$D/mnt-$x"; mounts+=("$D/mnt-$x")
done
btrfs -q subvolume create "$D/mnt-a/vol"
fio --name=fill --filename="$D/mnt-a/vol/disk.img" --rw=write --bs=1M --size="$bytes" --refill_buffers=1 --ioengine=psync --end_fsync=1 --output=/dev/null
btrfs subvolume snapshot -r "$D/mnt-a/vol" "$D/mnt-a/s0" >/dev/null
btrfs send -q "$D/mnt-a/s0" | btrfs receive -q "$D/mnt-b"
fio --name=change --filename="$D/mnt-a/vol/disk.img" --rw=randwrite --bs=4k --number_ios="$changed" --size="$bytes" \
    --refill_buffers=1 --randseed=42 --ioengine=psync --output=/dev/null
sync; btrfs subvolume snapshot -r "$D/mnt-a/vol" "$D/mnt-a/s1" >/dev/null
t0=$(now); btrfs send -q -p "$D/mnt-a/s0" "$D/mnt-a/s1" | tee >(wc -c > "$D/btrfs-stream") | btrfs receive -q "$D/mnt-b"; sync; t1=$(now)
sleep 1
echo -e "btrfs\t$(secs "$t0" "$t1")\t$(cat "$D/btrfs-stream")\t-" >> "$RES"
cmp "$D/mnt-a/s1/disk.img" "$D/mnt-b/s1/disk.img" && echo "  btrfs copy identical"
for m in "${mounts[@]}"; do umount "$m"; done; mounts=()
for l in "${loops[@]}"; do losetup -d "$l"; done; loops=(); rm -f "$D"/btrfs-?.img

# ---- rsync of the image file ----
fio --name=fill --filename="$D/src.img" --rw=write --bs=1M --size="$bytes" --refill_buffers=1 --ioengine=psync --output=/dev/null
cp "$D/src.img" "$D/dst.img"
fio --name=change --filename="$D/src.img" --rw=randwrite --bs=4k --number_ios="$changed" --size="$bytes" \
    --refill_buffers=1 --randseed=42 --ioengine=psync --output=/dev/null
sync
t0=$(now); rsync --inplace --no-whole-file --ignore-times --stats "$D/src.img" "$D/dst.img" > "$D/rsync.log"; t1=$(now)
sent=$(awk -F': ' '/Total bytes sent/ {gsub(",", "", $2); print $2}' "$D/rsync.log")
echo -e "rsync\t$(secs "$t0" "$t1")\t$sent\t-" >> "$RES"
cmp "$D/src.img" "$D/dst.img" && echo "  rsync copy identical"

echo
echo "| system | wall time (s) | bytes on the wire | bytes of changed ranges |"
echo "|---|---|---|---|"
while IFS=$'\t' read -r name t b r; do echo "| $name | $t | $(printf "%'d" "$b") | $r |"; done < "$RES"
