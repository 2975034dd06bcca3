#!/usr/bin/env python3
# Samples a Ceph daemon's perf counters through its admin socket (the protocol of `ceph daemon`:
# the JSON command and a NUL, answered by a 4-byte big-endian length and the JSON) every PERIOD
# seconds until SECONDS pass, without starting a `ceph` process per sample (each costs the machine
# a Python start-up, more than the sampling itself). Prints, for the OSD's writes in progress
# (osd.op_wip: ops received and not yet answered), the mean, the median and the maximum.
#   osd-sample.py ASOK SECONDS [PERIOD]
import json, socket, statistics, struct, sys, time

def ask(path, command):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
        s.sendall(json.dumps(command).encode() + b'\0')
        f = s.makefile('rb')
        head = f.read(4)
        if len(head) < 4:
            raise EOFError('admin socket closed')
        n, = struct.unpack('>I', head)
        return json.loads(f.read(n))

path, seconds = sys.argv[1], float(sys.argv[2])
period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
samples = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        samples.append(ask(path, {'prefix': 'perf dump', 'logger': 'osd', 'counter': 'op_wip'})['osd']['op_wip'])
    except (OSError, EOFError, KeyError, ValueError):
        pass
    time.sleep(period)
if samples:
    print(f"{statistics.mean(samples):.1f} {statistics.median(samples):.0f} {max(samples)} {len(samples)}")
else:
    print("0 0 0 0")
