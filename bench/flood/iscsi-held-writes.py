#!/usr/bin/env python3
"""Server RSS across rounds of iSCSI connections that leave large WRITEs waiting for data (issue 17).

Each round opens CONNS connections to the target, logs in (no CHAP, InitialR2T=Yes,
ImmediateData=No), sends 64 WRITE(10)s of 8 MiB each, answers every R2T the target sends with
its data except the one for each command's last burst (so every solicited buffer is filled and no
command completes), then disconnects. The server's RSS is printed after each round.

  bench/flood/iscsi-held-writes.py PID HOST:PORT IQN [ROUNDS [CONNS]]
"""
import socket, struct, sys, time

pid, portal, iqn = sys.argv[1:4]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 10
conns = int(sys.argv[5]) if len(sys.argv) > 5 else 2
COMMAND = 8 << 20


def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024


def pad(data):
    return data + b"\0" * (-len(data) % 4)


def read_pdu(s):
    bhs = recv_exact(s, 48)
    length = int.from_bytes(bhs[5:8], "big")
    data = recv_exact(s, length + (-length % 4))[:length]
    return bhs, data


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise EOFError("target closed the connection")
        out += chunk
    return out


def login(s, isid):
    stat_sn = 0
    for csg, nsg, keys in [(0, 1, {"InitiatorName": "iqn.2026-11.dev.tidemark:bench", "TargetName": iqn, "SessionType": "Normal", "AuthMethod": "None"}),
                           (1, 3, {"InitialR2T": "Yes", "ImmediateData": "No", "HeaderDigest": "None", "DataDigest": "None",
                                   "MaxRecvDataSegmentLength": "262144", "MaxBurstLength": "1048576", "FirstBurstLength": "262144",
                                   "MaxOutstandingR2T": "4", "ErrorRecoveryLevel": "0", "MaxConnections": "1"})]:
        text = b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys.items())
        bhs = struct.pack(">BBBBB3s6sHIHHII16x", 0x43, 0x80 | (csg << 2) | nsg, 0, 0, 0, len(text).to_bytes(3, "big"),
                          isid, 0, 1, 0, 0, 1, stat_sn)
        s.sendall(bhs + pad(text))
        reply, _ = read_pdu(s)
        if reply[36] != 0:
            raise RuntimeError(f"login failed: class {reply[36]} detail {reply[37]}")
        stat_sn = struct.unpack(">I", reply[24:28])[0] + 1
    return stat_sn


def hold(s, stat_sn):
    for i in range(64):
        cdb = struct.pack(">BBIBHB6x", 0x2A, 0, 0, 0, COMMAND // 512, 0)
        bhs = struct.pack(">BB2xB3s8sIIII", 0x01, 0xA1, 0, b"\0\0\0", b"\0" * 8, 0x1000 + i, COMMAND, 1 + i, stat_sn) + cdb
        s.sendall(bhs)
    s.settimeout(1.0)
    r2ts = 0
    chunk = b"\xa5" * 262144
    try:
        while True:
            bhs, _ = read_pdu(s)
            if (bhs[0] & 0x3F) != 0x31:
                continue
            r2ts += 1
            itt, ttt = bhs[16:20], bhs[20:24]
            offset, length = struct.unpack(">II", bhs[40:48])
            if offset + length >= COMMAND:
                continue  # the last burst: held back, so the command waits for it forever
            data_sn = 0
            for at in range(offset, offset + length, len(chunk)):
                n = min(len(chunk), offset + length - at)
                final = 0x80 if at + n == offset + length else 0
                out = struct.pack(">BB2xB3s8s4s4s4xI4xII4x", 0x05, final, 0, n.to_bytes(3, "big"), b"\0" * 8, itt, ttt, stat_sn, data_sn, at)
                s.sendall(out + chunk[:n])
                data_sn += 1
    except (socket.timeout, EOFError):
        pass
    return r2ts


print(f"before: RSS {rss()} MiB")
for r in range(rounds):
    sockets, r2ts = [], 0
    for c in range(conns):
        host, port = portal.rsplit(":", 1)
        s = socket.create_connection((host, int(port)))
        stat_sn = login(s, bytes([0x80, 0, 0, 0, r & 0xFF, c & 0xFF]))
        r2ts += hold(s, stat_sn)
        sockets.append(s)
    peak = rss()
    for s in sockets:
        s.close()
    time.sleep(1)
    print(f"round {r + 1}: {r2ts} R2Ts for {conns * 64} WRITEs of 8 MiB; RSS while held {peak} MiB, after disconnect {rss()} MiB")
