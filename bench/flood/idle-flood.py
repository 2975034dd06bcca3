#!/usr/bin/env python3
"""Idle-connection flood against a running `tidemark serve` (issue 17, goal 5).

Opens COUNT connections that never negotiate to the NBD port and COUNT to the iSCSI portal (from
127.0.0.2 and 127.0.0.3, so per-source caps apply to them and not to the real client on
127.0.0.1), holds them, and meanwhile measures the server's threads and RSS and times a real
client (qemu-io write+read over NBD, iscsi-inq over iSCSI). Then closes them and measures again.

  bench/flood/idle-flood.py PID NBD_HOSTPORT ISCSI_HOSTPORT NBD_URL ISCSI_URL [COUNT]

Needs RLIMIT_NOFILE above 2*COUNT in this process and in the server (run as root, or raise it).
"""
import resource, socket, subprocess, sys, time

pid, nbd, iscsi, nbd_url, iscsi_url = sys.argv[1:6]
count = int(sys.argv[6]) if len(sys.argv) > 6 else 20000
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 2 * count + 1000
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))


def status():
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) // 1024


def client(pattern):
    start = time.monotonic()
    nbd_ok = subprocess.run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern} 0 1M", "-c", f"read -P {pattern} 0 1M", nbd_url],
                            capture_output=True).returncode == 0
    iscsi_ok = subprocess.run(["iscsi-inq", iscsi_url], capture_output=True).returncode == 0
    return nbd_ok, iscsi_ok, time.monotonic() - start


def flood(target, source, n):
    host, port = target.rsplit(":", 1)
    held, failed = [], 0
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        try:
            s.connect((host, int(port)))
            held.append(s)
        except OSError:
            failed += 1
            s.close()
    return held, failed


print("before:           threads %d, RSS %d MiB; client nbd/iscsi ok %s %s in %.2f s" % (status() + client(0x41)))
t0 = time.monotonic()
held_nbd, failed_nbd = flood(nbd, "127.0.0.2", count)
held_iscsi, failed_iscsi = flood(iscsi, "127.0.0.3", count)
print("connected %d NBD + %d iSCSI (%d + %d failed) in %.1f s" % (len(held_nbd), len(held_iscsi), failed_nbd, failed_iscsi, time.monotonic() - t0))
time.sleep(3)
print("during the flood: threads %d, RSS %d MiB; client nbd/iscsi ok %s %s in %.2f s" % (status() + client(0x42)))
for s in held_nbd + held_iscsi:
    s.close()
time.sleep(5)
print("after closing:    threads %d, RSS %d MiB; client nbd/iscsi ok %s %s in %.2f s" % (status() + client(0x43)))
