#!/usr/bin/env bash
# How long the agent's mail plugin holds delivery per snapshot, and what snapshots every INTERVAL
# cost a mail server receiving a stream of messages (issue 19). Debian's Postfix takes mail over SMTP
# and hands it over LMTP to Dovecot, whose Maildirs are on ext4 on a Tidemark volume (NBD export,
# nbdfuse, loop device). SENDERS connections send messages as fast as Postfix accepts them for
# DURATION seconds, once per MODE, the MODES alternated ROUNDS times in one session (even rounds in
# reverse order), each run starting on empty mailboxes:
#   none   no snapshots
#   mail   a snapshot through the agent every INTERVAL: doveadm index, hold delivery (SIGSTOP the
#          qmgr, wait for the deliveries in flight), doveadm index, FIFREEZE, cut, FITHAW, SIGCONT
#   crash  a plain (crash-consistent) snapshot every INTERVAL, no agent: what snapshots and the CLI
#          calls cost by themselves, so that mail against crash is what the agent's quiesce costs
# Reports per run the messages accepted over SMTP per second, the messages in the mailboxes at the end
# of DURATION per second ("delivered/s", the ratio to none beside it), how long after the senders
# stopped the last message was delivered ("drain"), and, per snapshot as the agent measures it,
# p50/p99/max of "frozen" (first FIFREEZE to last FITHAW) and "held" (quiesce request received to
# resume done; it includes the doveadm index the mail plugin runs before holding, while mail still
# flows), and p50/p99 of each step of the hold and release as the agent logs them at debug level
# (event 9026), "release: delivery held" being the time delivery actually waited (the qmgr's SIGSTOP to
# its SIGCONT). Needs root, postfix, dovecot-lmtpd.
#   bench/agent/mail-pause.sh                  DURATION=60 INTERVAL=10 SENDERS=4 MODES="none mail" ROUNDS=1
#   INDEX_BEFORE_HOLD=SECONDS                  the mail entry's bound on the doveadm index run before each hold (agent default 5; 0: none)
#   TIDEMARK="dotnet tests/Tidemark.Interop.Tests/bin/Release/net10.0/tidemark.dll" bench/agent/mail-pause.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION=${DURATION:-60}
INTERVAL=${INTERVAL:-10}
SENDERS=${SENDERS:-4}
MODES=${MODES:-none mail}
ROUNDS=${ROUNDS:-1}
INDEX_BEFORE_HOLD=${INDEX_BEFORE_HOLD:-}
read -r -a TM <<< "${TIDEMARK:-$root/tidemark}"
for tool in nbdfuse losetup mkfs.ext4 python3 dovecot doveadm postconf /usr/sbin/postfix; do
  command -v "$tool" >/dev/null || { echo "needs $tool (scripts/install-deps installs it)" >&2; exit 2; }
done
id vmail >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
# Short: Dovecot's base_dir holds unix sockets (108-byte paths).
D="$(mktemp -d /tmp/tm-mail.XXXXXX)"
chmod 755 "$D"
pids=(); loop=""
cleanup() {
  [ -f "$D/pf/etc/main.cf" ] && /usr/sbin/postfix -c "$D/pf/etc" stop >/dev/null 2>&1 || true
  [ -n "${dovecot_pid:-}" ] && kill "$dovecot_pid" 2>/dev/null && for _ in $(seq 100); do kill -0 "$dovecot_pid" 2>/dev/null || break; sleep 0.1; done
  for _ in $(seq 50); do fuser -m "$D/fs" >/dev/null 2>&1 || break; sleep 0.2; done
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
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

echo "DURATION=${DURATION}s INTERVAL=${INTERVAL}s SENDERS=$SENDERS MODES=\"$MODES\" ROUNDS=$ROUNDS${INDEX_BEFORE_HOLD:+ INDEX_BEFORE_HOLD=$INDEX_BEFORE_HOLD} $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
"${TM[@]}" serve --data "$D/data" --http 127.0.0.1:0 --nbd 127.0.0.1:0 --iscsi off --replication 127.0.0.1:0 --store-capacity 8G --log-level Warning > "$D/serve.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$D/data/server.json" ] && break; sleep 0.1; done
tm volume create mail --size 2G >/dev/null
nbd=$(tm export nbd mail --json | json 'd["url"]')
mkdir -p "$D/fuse" "$D/fs" "$D/dc" "$D/pf/etc" "$D/pf/spool" "$D/pf/data"
nbdfuse "$D/fuse/disk" "$nbd" & pids+=($!)
for _ in $(seq 300); do [ -s "$D/fuse/disk" ] && break; sleep 0.1; done
loop=$(losetup --find --show "$D/fuse/disk")
# Initialized now, not by ext4lazyinit in the background of the first runs (it writes the inode
# tables for minutes after the mount, which would be charged to whichever mode runs first).
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$loop"
mount -t ext4 "$loop" "$D/fs"
chown vmail:vmail "$D/fs"; chmod 750 "$D/fs"

imap=$(freeport); lmtp=$(freeport); smtp=$(freeport)
printf 'alice:{PLAIN}alicepw::::::\nbob:{PLAIN}bobpw::::::\n' > "$D/dc/users"
chown root:dovecot "$D/dc/users"; chmod 640 "$D/dc/users"
cat > "$D/dc/dovecot.conf" <<EOF
base_dir = $D/dc/run
state_dir = $D/dc/state
instance_name = tidemark-bench-$(basename "$D")
log_path = $D/dc/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_username_format = %Ln
first_valid_uid = 100
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $D/dc/users
}
userdb {
  driver = passwd-file
  args = username_format=%n $D/dc/users
  default_fields = uid=vmail gid=vmail home=$D/fs/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $imap
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $lmtp
  }
}
EOF
dovecot -c "$D/dc/dovecot.conf" -F > "$D/dc/stdout" 2>&1 & dovecot_pid=$!

chown postfix "$D/pf/data"
cat > "$D/pf/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $D/pf/spool
data_directory = $D/pf/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mail.example.test
mydomain = example.test
myorigin = \$mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
virtual_mailbox_domains = example.test
virtual_transport = lmtp:inet:127.0.0.1:$lmtp
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
local_recipient_maps =
alias_maps =
alias_database =
biff = no
smtp_host_lookup = native
lmtp_host_lookup = native
smtputf8_enable = no
maillog_file = $D/pf/postfix.log
maillog_file_prefixes = $D/pf
multi_instance_enable = no
EOF
cat > "$D/pf/etc/master.cf" <<EOF
127.0.0.1:$smtp inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
/usr/sbin/postfix -c "$D/pf/etc" start >/dev/null 2>&1 || { echo "postfix did not start: $(cat "$D/pf/postfix.log" 2>/dev/null)" >&2; exit 1; }
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$smtp") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$lmtp") 2>/dev/null && break; sleep 0.1; done

server_fp=$(tm partner identity --json | json 'd["fingerprint"]')
"${TM[@]}" agent pair --agent-dir "$D/agent" --server-fingerprint "$server_fp" --listen 127.0.0.1:0 --name app \
  --mount "$D/fs=mail" --deadline 30 --mail "root=$D/fs,postfix=$D/pf/etc,dovecot=$D/dc/dovecot.conf${INDEX_BEFORE_HOLD:+,index-before-hold=$INDEX_BEFORE_HOLD}" >/dev/null
# Debug level for the agent's own category: the mail plugin logs each step of a hold and a release (event 9026).
env "Logging__LogLevel__Tidemark.Agent=Debug" "${TM[@]}" agent run --agent-dir "$D/agent" > "$D/agent.log" 2>&1 & pids+=($!)
for _ in $(seq 600); do grep -q '^agent listening' "$D/agent.log" && break; sleep 0.1; done
line=$(grep '^agent listening' "$D/agent.log")
tm host add app "$(echo "$line" | awk '{print $4}')" --fingerprint "$(echo "$line" | awk '{print $6}')" >/dev/null

# Sends over SMTP from SENDERS connections (a new session every 20 messages, as a relay would) until
# the time is up; prints how many messages Postfix accepted (250 after DATA).
cat > "$D/send.py" <<'PY'
import smtplib, sys, threading, time
port, seconds, senders, tag = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
end = time.monotonic() + seconds
counts = [0] * senders
body = "\r\n".join(f"line {i:04d} of a message body of the usual size for a short business mail" for i in range(40))
def send(k):
    n = 0
    while time.monotonic() < end:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
            for _ in range(20):
                if time.monotonic() >= end:
                    break
                rcpt = "alice@example.test" if n % 2 == 0 else "bob@example.test"
                msg = f"From: sender@example.org\r\nTo: {rcpt}\r\nSubject: {tag} {k}-{n}\r\nMessage-ID: <{tag}-{k}-{n}@example.org>\r\n\r\n{body}\r\n"
                s.sendmail("sender@example.org", [rcpt], msg)
                n += 1
                counts[k] = n
threads = [threading.Thread(target=send, args=(k,)) for k in range(senders)]
for t in threads: t.start()
for t in threads: t.join()
print(sum(counts))
PY
# Messages in the mailboxes (find fails until the first delivery makes the Maildirs).
delivered() { { find "$D/fs/alice/Maildir/new" "$D/fs/alice/Maildir/cur" "$D/fs/bob/Maildir/new" "$D/fs/bob/Maildir/cur" -type f 2>/dev/null || true; } | wc -l; }

# Removes both users' Maildirs (Dovecot makes them again at the next delivery; nothing is delivering
# now, the previous run drained) and writes the change back: every run starts on new, empty Maildirs.
# Without it the second mode delivered into mailboxes twice as full, and Dovecot's per-message cost
# grows with the mailbox: the mode run second lost about 0.3x of its delivery rate to that alone,
# whichever mode it was (issue 19, session 20). Expunging is not enough: an ext4 directory keeps
# the size it grew to.
empty_mailboxes() {
  rm -rf "$D/fs/alice" "$D/fs/bob"
  sync -f "$D/fs"
}

run() { # MODE ROUND: appends "round mode accepted delivered-at-end drain-seconds" to $D/runs
  local mode=$1 round=$2
  empty_mailboxes
  local before; before=$(delivered)
  [ "$before" -eq 0 ] || echo "round $round $mode: $before messages left in the mailboxes after emptying them" >&2
  python3 "$D/send.py" "$smtp" "$DURATION" "$SENDERS" "$mode-$round" > "$D/sent-$mode-$round" & local sender=$!
  local t0; t0=$(date +%s.%N)
  touch "$D/held-$mode" "$D/frozen-$mode"
  if [ "$mode" != none ]; then
    local i=0
    while sleep "$INTERVAL" && kill -0 "$sender" 2>/dev/null; do
      i=$((i + 1))
      if [ "$mode" = crash ]; then
        tm snapshot create mail --name "$mode-$round-$i" > /dev/null || echo "snapshot $mode-$round-$i failed" >&2
        tm host status app --json > /dev/null # the same CLI calls as the mail mode makes
      elif tm snapshot create mail --name "$mode-$round-$i" --consistent app > /dev/null; then
        local last; last=$(tm host status app --json | json 'd["status"]["lastSession"]')
        echo "$last" | python3 -c 'import ast,sys; print(ast.literal_eval(sys.stdin.read())["pausedSeconds"])' >> "$D/held-$mode"
        echo "$last" | python3 -c 'import ast,sys; v=ast.literal_eval(sys.stdin.read()).get("frozenSeconds"); print("" if v is None else v)' >> "$D/frozen-$mode"
      else
        echo "snapshot $mode-$round-$i failed" >&2
      fi
    done
  fi
  wait "$sender"
  local atEnd; atEnd=$(( $(delivered) - before ))
  local sent; sent=$(cat "$D/sent-$mode-$round")
  local t1; t1=$(date +%s.%N)
  for _ in $(seq 1200); do [ $(( $(delivered) - before )) -ge "$sent" ] && break; sleep 0.1; done
  local drain; drain=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t1" "$(date +%s.%N)")
  [ $(( $(delivered) - before )) -ge "$sent" ] || echo "round $round $mode: only $(( $(delivered) - before )) of $sent messages delivered 120 s after the senders stopped" >&2
  echo "$round $mode $sent $atEnd $drain" >> "$D/runs"
  echo "round $round $mode: $sent accepted, $atEnd delivered by the end, drained in ${drain}s (load $(cut -d' ' -f1 /proc/loadavg))"
}
stats() { python3 - "$1" <<'PY'
import sys
xs = sorted(float(l) for l in open(sys.argv[1]) if l.strip())
if not xs: print("-"); sys.exit()
q = lambda p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
print(f"n={len(xs)} p50={q(.5)*1000:.0f}ms p99={q(.99)*1000:.0f}ms max={xs[-1]*1000:.0f}ms")
PY
}
read -r -a modes <<< "$MODES"
for round in $(seq "$ROUNDS"); do
  # Even rounds run the modes in reverse order, so no mode is always the one after another.
  order=("${modes[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=(); for ((k = ${#modes[@]} - 1; k >= 0; k--)); do order+=("${modes[$k]}"); done
  fi
  for mode in "${order[@]}"; do run "$mode" "$round"; done
done
printf "%-6s %-5s %12s %13s %8s %7s\n" round mode "accepted/s" "delivered/s" "vs none" drain
while read -r round mode sent atEnd drain; do
  base=$(awk -v r="$round" '$1 == r && $2 == "none" {print $4}' "$D/runs")
  printf "%-6s %-5s %12s %13s %8s %6ss\n" "$round" "$mode" "$(python3 -c "print(f'{$sent/$DURATION:.1f}')")" "$(python3 -c "print(f'{$atEnd/$DURATION:.1f}')")" \
    "$([ -n "$base" ] && python3 -c "print(f'{$atEnd/$base:.2f}x')" || echo -)" "$drain"
done < "$D/runs"
for mode in "${modes[@]}"; do
  [ "$mode" = none ] || [ "$mode" = crash ] && continue
  echo "$mode: frozen (writes wait) $(stats "$D/frozen-$mode"); whole quiesce $(stats "$D/held-$mode")"
done
# Per step of the mail plugin's hold and release, as the agent logs them (event 9026): where the held time goes.
python3 - "$D/agent.log" <<'PY'
import re, sys
steps = {}
for line in open(sys.argv[1]):
    m = re.search(r"Mail (hold|release) \(.*\): (.+) ([0-9.]+) ms$", line)
    if m:
        steps.setdefault(f"{m[1]}: {m[2]}", []).append(float(m[3]))
    m = re.search(r"Mail (hold|release) \(.*\): (\S+) \(pid [0-9]+\) finished its delivery ([0-9.]+) ms into the step$", line)
    if m:
        steps.setdefault(f"{m[1]}: {m[2]} finished", []).append(float(m[3]))
for name, xs in steps.items():
    xs.sort()
    q = lambda p: xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]
    print(f"  step {name:<28} n={len(xs)} p50={q(.5):.0f}ms p99={q(.99):.0f}ms max={xs[-1]:.0f}ms")
PY
echo "consistency of the last snapshot: $(tm snapshot list mail --json | json '[s["consistency"] for s in d[-1:]]')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
