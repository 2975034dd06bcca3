#!/usr/bin/env bash
# Mail recovery time (issue 23): a Maildir store of USERS x MESSAGES (about 4 KiB each) on ext4 on a
# Tidemark volume, one snapshot, then the wall time of `tidemark recover mail` (mount a view of the
# snapshot, search, tear down) for:
#   one message of one user by Message-ID (dry run), the same exported as .eml,
#   every message of one sender across all users (dry run: the "list all matches" figure).
# Needs root, nbdfuse, losetup, mkfs.ext4. Usage: [USERS=20] [MESSAGES=500] bench/recovery/mail-search.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
USERS=${USERS:-20}
MESSAGES=${MESSAGES:-500}
bytes=$((4 * 1073741824))
D=$(mktemp -d /tmp/tm-mailbench-XXXXXX)
nbdfuse_pid=
loop=
# shellcheck source=../replication/lib.sh
source "$root/bench/replication/lib.sh"

cleanup() {
  mountpoint -q "$D/fs" && umount "$D/fs"
  [ -n "$loop" ] && losetup -d "$loop" || true
  mountpoint -q "$D/nbd" && { fusermount3 -u "$D/nbd" || umount -l "$D/nbd"; }
  [ -n "$nbdfuse_pid" ] && { wait "$nbdfuse_pid" 2>/dev/null || true; }
  stop_servers
  rm -rf "$D"
}
trap cleanup EXIT

"$root/tidemark" --help >/dev/null # builds the CLI first if needed
start "$D/s"
tm "$D/s" volume create mail --size 4G >/dev/null
url=$(tm "$D/s" export nbd mail --json | url)
mkdir -p "$D/nbd" "$D/fs" "$D/eml"
nbdfuse "$D/nbd/disk" "$url" & nbdfuse_pid=$!
for _ in $(seq 100); do [ -s "$D/nbd/disk" ] && break; sleep 0.1; done
loop=$(losetup --find --show "$D/nbd/disk")
mkfs.ext4 -q "$loop"
mount "$loop" "$D/fs"

t0=$(date +%s.%N)
python3 - "$D/fs" "$USERS" "$MESSAGES" <<'PY'
import os, random, sys
root, users, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(23)
words = ("the of and to in is for on that by this with from at as your all have new more was will can about if page has search free but our one other do no time they site may what which their news out use any there see only when contact here business who web also now help get view online first been would how were some these click like service than find price date back top people had list name just over state year day into email two health world next used work last most products data make should product system post city add policy number such please available support message after best software then good video well where info rights public books high school through each links review years order very privacy book items company read group need many user said does set under general research university mail full map program life know games way days management part could great hotel real item international center must store travel comments made development report off member details line terms before did send right type because local those using results office education national car design take posted internet address community within area want phone shipping reserved subject between forum family long based code show even black check special prices website index being women much sign file link open today technology south case project same pages version section own found sports house related security both county american photo game members power while care network down computer systems three total place end following download without per access think north resources current posts big media law control water history pictures size art personal since including guide shop directory board location change white text small rating rate government children during return students shopping account times sites level digital profile previous form events love old main call hours image department title description insurance another why shall property class still money quality every listing content country private little visit save tools low reply customer compare movies include college value article man card jobs provide food source author different press learn sale around print course job canada process room stock training too credit point join science men categories advanced west sales look english left team estate box conditions select windows photos thread week category note live large gallery table register however market library really action start series model features air industry plan human provided yes required second hot cost movie forums better say questions friend come server study application cart staff articles feedback again play looking issues never users complete street topic comment financial things working against standard tax person below mobile less got blog party payment equipment login student let programs offers legal above recent park stores side act problem red give memory performance social quote language story sell options experience rates create key body young important field few east paper single age activities club example additional password latest something road gift question changes night hard pay four status browse issue range building seller court always result audio light write war offer blue groups easy given files event release analysis request fax making picture needs possible might professional yet month major star areas future space committee hand sun cards problems meeting become interest child keep enter share similar garden schools million added reference companies listed baby learning energy run delivery net popular term film stories put computers journal reports try welcome central images president notice original head radio until cell color self council away includes track discussion archive once others entertainment agreement format least society months log safety friends sure trade edition cars messages marketing tell further updated association able having provides fun already green studies close common drive specific several gold living collection called short arts lot ask display limited powered solutions means director daily beach past natural whether due electronics five upon period planning database says official weather land average done technical window region island record direct conference environment records district calendar costs style front statement update parts ever downloads early miles sound resource present applications either ago document word works material bill written talk federal hosting rules final adult tickets thing centre requirements via cheap kids finance true minutes else mark third rock gifts reading topics bad individual tips plus auto cover usually edit together videos percent fast function fact unit getting global tech meet far economic player projects often subscribe submit amount watch included feel though bank risk thanks everything deals various words").split()
for u in range(users):
    user = f"u{u:03d}"
    cur = os.path.join(root, user, "Maildir", "cur")
    os.makedirs(cur, exist_ok=True)
    for i in range(messages):
        t = 1790000000 + u * 100000 + i * 137
        body = "\n".join(" ".join(rnd.choice(words) for _ in range(12)) for _ in range(50))
        msg = (f"Received: from mx.example.org by mail.example.test; {t}\nFrom: Sender {i % 50} <sender{i % 50}@senders.example.org>\n"
               f"To: {user}@example.test\nSubject: {' '.join(rnd.choice(words) for _ in range(6))}\n"
               f"Message-ID: <bench-{u:03d}-{i:05d}@example.org>\nDate: Mon, 19 Oct 2026 08:00:00 +0000\n"
               f"MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n{body}\n")
        data = msg.encode()
        name = f"{t}.M{i}P{u}.bench,S={len(data)}:2,{'S' if i % 3 else 'FS'}"
        p = os.path.join(cur, name)
        with open(p, "wb") as f:
            f.write(data)
        os.utime(p, (t, t))
PY
sync -f "$D/fs"
t1=$(date +%s.%N)
total=$((USERS * MESSAGES))
echo "store: $USERS users x $MESSAGES messages = $total, $(du -sh "$D/fs" | cut -f1), written in $(awk "BEGIN{printf \"%.1f\", $t1-$t0}") s"
tm "$D/s" snapshot create mail --name day0 >/dev/null

timed() { # LABEL ARGS...: runs recover mail, prints wall time and matches
  local label=$1; shift
  local a b out
  a=$(date +%s.%N)
  out=$(tm "$D/s" recover mail "$@" --json 2>"$D/err") || { cat "$D/err" >&2; exit 1; }
  b=$(date +%s.%N)
  printf '%-44s %6.2f s  %s matches   (%s)\n' "$label" "$(awk "BEGIN{print $b-$a}")" \
    "$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["matches"]))' <<<"$out")" "$(grep -o 'mounted in[^)]*' "$D/err" | head -1)"
}
u=$(printf 'u%03d' $((USERS / 2)))
id=$(printf '<bench-%03d-%05d@example.org>' $((USERS / 2)) $((MESSAGES / 2)))
timed "one message of one user (dry run)" mail@day0 --user "$u" --message-id "$id"
timed "same, exported as .eml" mail@day0 --user "$u" --message-id "$id" --export "$D/eml"
timed "one sender across all users (dry run)" mail@day0 --from sender7@
timed "one sender, subject word, all users" mail@day0 --from sender7@ --subject the
