#!/usr/bin/env bash
# Mail recovery time at a realistic scale (issue 23): a Maildir store of USERS x MESSAGES on ext4 on a
# Tidemark volume, served by a real Dovecot (the "production" IMAP server), SNAPSHOTS daily snapshots
# with churn between them (new mail, deletions = expunges, so freed blocks are reused), then:
#   1. the time from `tidemark recover mail --before DATE ... --restore-to imap` to the message being
#      found by IMAP SEARCH in the user's live mailbox, for a message that only the oldest snapshot
#      has (appended as the master user, with its flags and date);
#   2. the time to list every match for one sender across one snapshot (a dry run over all users).
# The store is generated as files directly on the mounted volume (not over SMTP) to keep it minutes.
# Needs root, nbdfuse, losetup, mkfs.ext4, dovecot-imapd, python3.
# Usage: [USERS=100] [MESSAGES=2000] [SNAPSHOTS=30] [CHURN=1] [BASELINE=DLL] bench/recovery/recovery-time.sh
#   CHURN: percent of the store's messages added and as many deleted between two snapshots.
#   BASELINE: a tidemark.dll built from another commit, timed alternately with this build's CLI.
#   RUNS: timed runs of each kind (3).
#   AGENT=1: a paired agent declares the store (--mail root=...), every snapshot is taken through it
#     (--consistent app --fallback crash), so the server has the agent build each snapshot's header
#     index in the background (docs/adr/0012, "Index after a snapshot"); the script waits for those
#     builds, then times the recoveries as jobs on that agent (--host app): the first search of a
#     snapshot is then an indexed one.
#   HOLD=FILE: after the store, snapshots and index builds are ready, wait until FILE exists before the
#     timed runs, so a long preparation can run on a busy machine and the timing on a quiet one.
#   Quick scale: USERS=10 MESSAGES=200 SNAPSHOTS=4 bench/recovery/recovery-time.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
USERS=${USERS:-100}
MESSAGES=${MESSAGES:-2000}
SNAPSHOTS=${SNAPSHOTS:-30}
CHURN=${CHURN:-1}
RUNS=${RUNS:-3}
# About 10 KiB a message on average; room for churn and ext4, plus 2 GiB.
bytes=$(( (USERS * MESSAGES * 32768 / 1073741824 + 2) * 1073741824 ))
D=$(mktemp -d /tmp/tm-mailrt-XXXXXX)
chmod 755 "$D"
nbdfuse_pid=
dovecot_pid=
agent_pid=
loop=
# shellcheck source=../replication/lib.sh
source "$root/bench/replication/lib.sh"

cleanup() {
  [ -n "$agent_pid" ] && { kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; }
  [ -n "$dovecot_pid" ] && { kill "$dovecot_pid" 2>/dev/null || true; wait "$dovecot_pid" 2>/dev/null || true; }
  mountpoint -q "$D/fs" && umount "$D/fs"
  [ -n "$loop" ] && losetup -d "$loop" || true
  mountpoint -q "$D/nbd" && { fusermount3 -u "$D/nbd" || umount -l "$D/nbd"; }
  [ -n "$nbdfuse_pid" ] && { wait "$nbdfuse_pid" 2>/dev/null || true; }
  stop_servers
  rm -rf "$D"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk "BEGIN{printf \"%.2f\", $(now)-$1}"; }

id vmail >/dev/null 2>&1 || useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin vmail
"$root/tidemark" --help >/dev/null # builds the CLI first if needed
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%d %H:%M UTC'); USERS=$USERS MESSAGES=$MESSAGES SNAPSHOTS=$SNAPSHOTS CHURN=$CHURN%"
start "$D/s"
tm "$D/s" volume create mail --size "$bytes" >/dev/null
url=$(tm "$D/s" export nbd mail --json | url)
mkdir -p "$D/nbd" "$D/fs" "$D/dc"
nbdfuse "$D/nbd/disk" "$url" & nbdfuse_pid=$!
for _ in $(seq 100); do [ -s "$D/nbd/disk" ] && break; sleep 0.1; done
loop=$(losetup --find --show "$D/nbd/disk")
mkfs.ext4 -q "$loop"
mount "$loop" "$D/fs"

# The generator: Dovecot-style Maildir file names (S= size, :2,FLAGS), INTERNALDATE as mtime,
# sizes from a few hundred bytes to about 150 KiB (most small, one in twenty with an attachment).
cat > "$D/gen.py" <<'PY'
import base64, os, pwd, random, sys
cmd, root = sys.argv[1], sys.argv[2]
vmail = pwd.getpwnam("vmail")
words = ("the of and to in is for on that by this with from at as your all have new more was will can about if page has "
         "search free but our one other do no time they site may what which their news out use any there see only when "
         "contact here business who web also now help get view online first been would how were some these click like "
         "service than find price date back top people had list name just over state year day into email two health "
         "world next used work last most products data make should product system post city add policy number such "
         "please available support message after best software then good video well where info rights public books "
         "high school through each links review years order very privacy book items company read group need many user "
         "said does set under general research university mail full map program life know games way days management").split()
state_file = os.path.join(os.path.dirname(root.rstrip("/")), "gen.state")

# Bodies are drawn from a pool of lines made once: generating every word of 200,000 messages would
# take longer than the benchmark itself.
pool_rnd = random.Random(7)
lines_pool = [" ".join(pool_rnd.choice(words) for _ in range(11)) for _ in range(4096)]
blob = base64.encodebytes(pool_rnd.randbytes(200 * 1024)).decode()

def message(rnd, user, uid, t, sender):
    lines = min(4000, max(3, int(rnd.lognormvariate(4.4, 0.9))))  # median ~80 lines of ~70 bytes: ~6 KiB, long tail
    body = "\n".join(rnd.choices(lines_pool, k=lines))
    head = (f"Return-Path: <{sender}>\nDelivered-To: {user}@example.test\n"
            f"Received: from mx.example.org by mail.example.test with LMTP; {t}\n"
            f"From: Sender {sender.split('@')[0]} <{sender}>\nTo: {user}@example.test\n"
            f"Subject: {' '.join(rnd.choices(words, k=6))}\n"
            f"Message-ID: <{uid}@example.org>\nDate: Mon, 19 Oct 2026 08:00:00 +0000\nMIME-Version: 1.0\n")
    if rnd.random() < 0.05:  # one in twenty carries an attachment of 20-150 KiB
        start = rnd.randrange(0, len(blob) // 2)
        part = blob[start:start + rnd.randint(20, 150) * 1024 * 4 // 3]
        return (head + 'Content-Type: multipart/mixed; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\n' + body +
                '\n--b1\nContent-Type: application/octet-stream; name="a.bin"\nContent-Disposition: attachment; filename="a.bin"\n'
                'Content-Transfer-Encoding: base64\n\n' + part + "\n--b1--\n").encode()
    return (head + "Content-Type: text/plain; charset=us-ascii\n\n" + body + "\n").encode()

def write(rnd, user, uid, t, sender, flags):
    cur = os.path.join(root, user, "Maildir", "cur")
    data = message(rnd, user, uid, t, sender)
    virtual = len(data) + data.count(b"\n")  # W=: the size with CRLF line ends, as IMAP counts it
    path = os.path.join(cur, f"{t}.M{rnd.randrange(10**6)}P{uid.split('-')[-1]}.bench,S={len(data)},W={virtual}:2,{flags}")
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, vmail.pw_uid, vmail.pw_gid)  # Dovecot serves the store as vmail
    os.utime(path, (t, t))

def load():
    with open(state_file) as f:
        return [l.split() for l in f.read().split("\n") if l]

if cmd == "create":
    users, messages = int(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(23)
    t0 = 1790000000
    for u in range(users):
        user = f"u{u:03d}"
        for part in ("", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"):
            os.makedirs(os.path.join(root, user, part), exist_ok=True)
            os.chown(os.path.join(root, user, part), vmail.pw_uid, vmail.pw_gid)
        for i in range(messages):
            t = t0 + i * 600 + u
            write(rnd, user, f"m-{u:03d}-{i:06d}", t, f"sender{i % 97}@senders.example.org", "S" if i % 4 else "FS")
    with open(state_file, "w") as f:
        f.write(f"{users} {messages} {t0 + messages * 600}\n")
elif cmd == "churn":  # ROUND PERCENT: add PERCENT of the store as new mail, delete as many
    rnd = random.Random(int(sys.argv[3]))
    (users, messages, t), = load()[:1]
    users, messages, t = int(users), int(messages), int(t)
    n = max(1, users * messages * int(sys.argv[4]) // 100)
    for k in range(n):
        u = rnd.randrange(users)
        t += 30
        write(rnd, f"u{u:03d}", f"n-{sys.argv[3]}-{k:06d}-{u:03d}", t, f"sender{rnd.randrange(97)}@senders.example.org", "")
    for k in range(n):
        cur = os.path.join(root, f"u{rnd.randrange(users):03d}", "Maildir", "cur")
        names = os.listdir(cur)
        if names:
            os.remove(os.path.join(cur, rnd.choice(names)))  # what an expunge does to a Maildir
    with open(state_file, "w") as f:
        f.write(f"{users} {messages} {t}\n")
PY

t0=$(now)
python3 "$D/gen.py" create "$D/fs" "$USERS" "$MESSAGES"
# The message to lose: appended long ago, only the oldest snapshot will have it.
needle_user=$(printf 'u%03d' $((USERS / 2)))
needle_id="<lost-board-minutes@example.org>"
printf 'From: Secretary <secretary@example.org>\nTo: %s@example.test\nSubject: Board minutes\nMessage-ID: %s\nDate: Mon, 19 Oct 2026 08:00:00 +0000\n\nThe minutes.\n' "$needle_user" "$needle_id" > "$D/needle"
needle="$D/fs/$needle_user/Maildir/cur/1790000123.M1P1.bench,S=$(stat -c %s "$D/needle"):2,FS"
mv "$D/needle" "$needle"
touch -d @1790000123 "$needle"
chown vmail:vmail "$D/fs" "$needle"
sync -f "$D/fs"
echo "store: $USERS users x $MESSAGES messages, $(du -sh "$D/fs" | cut -f1) on the volume, written in $(since "$t0") s"

# Production Dovecot over the live store (as DovecotInstance in the tests: every path under $D/dc).
imap_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'admin:{PLAIN}adminpw\n' > "$D/dc/masters"
: > "$D/dc/users"
for u in $(seq 0 $((USERS - 1))); do printf 'u%03d:{PLAIN}pw::::::\n' "$u" >> "$D/dc/users"; done
chown root:dovecot "$D/dc/masters" "$D/dc/users"; chmod 640 "$D/dc/masters" "$D/dc/users"
cat > "$D/dc/dovecot.conf" <<EOF
base_dir = $D/dc/run
state_dir = $D/dc/state
instance_name = tidemark-bench-$$
log_path = $D/dc/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
first_valid_uid = 100
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = /
}
passdb {
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%n $D/dc/masters
  pass = yes
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
    port = $imap_port
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
dovecot -c "$D/dc/dovecot.conf" -F & dovecot_pid=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$imap_port") 2>/dev/null && break; sleep 0.1; done
imap_search() { # USER MESSAGE-ID: number of INBOX messages with that Message-ID
  python3 - "$imap_port" "$1" "$2" <<'PY'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1])); m.login(sys.argv[2], "pw"); m.select("INBOX", readonly=True)
typ, data = m.search(None, "HEADER", "Message-ID", sys.argv[3]); print(len(data[0].split())); m.logout()
PY
}
imap_expunge() { # USER MESSAGE-ID: deletes it again from the live INBOX, so every timed run restores
  python3 - "$imap_port" "$1" "$2" <<'PY'
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1])); m.login(sys.argv[2], "pw"); m.select("INBOX")
typ, data = m.search(None, "HEADER", "Message-ID", sys.argv[3])
for n in data[0].split(): m.store(n, "+FLAGS.SILENT", "\\Deleted")
m.expunge(); m.logout()
PY
}

snaphosts=(); onhost=()
if [ "${AGENT:-0}" = 1 ]; then
  cli="$root/artifacts/cli/tidemark.dll"
  fp=$(tm "$D/s" partner identity --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')
  dotnet "$cli" agent pair --agent-dir "$D/agent" --server-fingerprint "$fp" --listen 127.0.0.1:0 --name app \
    --mount "$D/fs=mail" --mail "root=$D/fs,dovecot=$D/dc/dovecot.conf" >/dev/null
  dotnet "$cli" agent run --agent-dir "$D/agent" > "$D/agent.log" 2>&1 & agent_pid=$!
  for _ in $(seq 600); do grep -q '^agent listening on' "$D/agent.log" && break; sleep 0.1; done
  read -r _ _ _ agent_addr _ agent_fp < <(grep -m1 '^agent listening on' "$D/agent.log")
  tm "$D/s" host add app "$agent_addr" --fingerprint "$agent_fp" >/dev/null
  printf 'admin:adminpw\n' > "$D/agent/imap-master"; chmod 600 "$D/agent/imap-master"
  snaphosts=(--consistent app --fallback crash); onhost=(--host app)
fi

# Day 0 has the message; it is expunged before day 1; then churn and a snapshot every "day".
t0=$(now)
tm "$D/s" snapshot create mail --name day00 "${snaphosts[@]}" >/dev/null
rm "$needle"
for day in $(seq 1 $((SNAPSHOTS - 1))); do
  python3 "$D/gen.py" churn "$D/fs" "$day" "$CHURN"
  sync -f "$D/fs"
  tm "$D/s" snapshot create mail --name "$(printf 'day%02d' "$day")" "${snaphosts[@]}" >/dev/null
done
echo "$SNAPSHOTS snapshots with ${CHURN}% churn each in $(since "$t0") s; store now $(du -sh "$D/fs" | cut -f1)"
[ "$(imap_search "$needle_user" "$needle_id")" = 0 ] || { echo "the lost message is still in the live mailbox" >&2; exit 1; }

if [ "${AGENT:-0}" = 1 ]; then
  # The post-snapshot index builds run in the background, one at a time, newest waiting snapshot first.
  for _ in $(seq 7200); do
    tm "$D/s" job list --json | python3 -c 'import json,sys; sys.exit(any(j["kind"]=="mail.index" and j["state"]=="running" for j in json.load(sys.stdin)))' && break
    sleep 1
  done
  echo "index builds after the snapshots ($(since "$t0") s after the first snapshot):"
  tm "$D/s" event list --kind mail.index --json | python3 -c '
import json,sys
for e in json.load(sys.stdin): print("  ", e["subject"], e["outcome"], e["message"][:160])'
fi
printf 'admin:adminpw\n' > "$D/master"; chmod 600 "$D/master"
day01=$(tm "$D/s" snapshot list mail --json | python3 -c 'import json,sys; print([s["createdAt"] for s in json.load(sys.stdin) if s["name"]=="day01"][0])')
if [ "$SNAPSHOTS" -lt 2 ]; then day01=$(date -u -Iseconds -d '+1 min'); fi
if [ -n "${HOLD:-}" ]; then
  echo "ready; waiting for $HOLD to exist before the timed runs ($(date -u '+%H:%M UTC'))"
  until [ -e "$HOLD" ]; do sleep 5; done
fi
echo "load before the timed runs: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%H:%M UTC')"
# The CLI itself, not the ./tidemark wrapper (which checks its build first): what an operator runs.
# BASELINE=path/to/tidemark.dll (a CLI built from another commit) alternates with this build, run by run.
clis=("$root/artifacts/cli/tidemark.dll"); labels=("this build")
if [ -n "${BASELINE:-}" ]; then
  for _ in $(seq 600); do [ -f "$BASELINE" ] && break; sleep 1; done # it may still be building
  clis+=("$BASELINE"); labels+=("baseline")
fi
# Header indexes (docs/adr/0012) go into the run's own directory: the first search of a snapshot
# builds them, later ones use them; NOINDEX=1 times every run as a full scan (--no-index).
export TIDEMARK_MAIL_INDEX_DIR="$D/index"
noindex=(); [ "${NOINDEX:-0}" = 1 ] && noindex=(--no-index)
recover() { local dll=$1; shift; dotnet "$dll" --data "$D/s" recover mail "$@"; }
for run in $(seq "$RUNS"); do
  for i in "${!clis[@]}"; do
    a=$(now)
    master=(--master-user-file "$D/master"); [ "${AGENT:-0}" = 1 ] && master=("${onhost[@]}")
    recover "${clis[$i]}" mail "${noindex[@]}" --before "$day01" --user "$needle_user" --message-id "$needle_id" \
      --restore-to imap --imap "127.0.0.1:$imap_port" --imap-tls none "${master[@]}" --json > "$D/out" 2> "$D/err" \
      || { cat "$D/err" >&2; exit 1; }
    found=$(imap_search "$needle_user" "$needle_id")
    took=$(since "$a")
    result=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["snapshot"], d["outcomes"][0]["result"] if d["outcomes"] else "none")' "$D/out")
    printf '%-10s restore to IMAP, run %d: %6.2f s to IMAP SEARCH finding it (%s; %s found; %s)\n' "${labels[$i]}" "$run" "$took" "$result" "$found" \
      "$(grep -o 'mounted in[^)]*' "$D/err" | head -1)"
    grep -o 'timings:.*' "$D/err" | head -1 | sed 's/^/             /' # where the seconds went (CLI, server, agent)
    imap_expunge "$needle_user" "$needle_id"
  done
done
sender="sender7@senders.example.org"
for run in $(seq "$RUNS"); do
  for i in "${!clis[@]}"; do
    a=$(now)
    recover "${clis[$i]}" mail@day00 "${noindex[@]}" "${onhost[@]}" --from "$sender" --json > "$D/out" 2> "$D/err" || { cat "$D/err" >&2; exit 1; }
    printf '%-10s list one sender, all users, run %d: %6.2f s, %s matches (%s; %s)\n' "${labels[$i]}" "$run" "$(since "$a")" \
      "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["matches"]))' "$D/out")" "$(grep -o 'mounted in[^)]*' "$D/err" | head -1)" \
      "$(grep -o 'indexing the headers of [0-9]* message(s)\|header index of [0-9]* user(s) loaded' "$D/err" | head -1)"
  done
done
[ "${AGENT:-0}" = 1 ] && { echo "the agent's searches:"; grep -o 'header index of [0-9]* user(s) loaded\|indexing the headers of [0-9]* message(s)\|[0-9]* matching message(s)[^)]*)' "$D/agent.log" | sed 's/^/   /'; }
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
