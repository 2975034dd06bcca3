#!/usr/bin/env python3
"""Takes snapshots of a volume with a little data changed before each one (issue 22's snapshot rows).

  snapfill.py rbd CONF POOL IMAGE FROM TO
      librbd (ctypes, Debian's librbd1): before each snapshot, one 4 KiB write at a pseudo-random
      4 KiB-aligned offset, then rbd_snap_create of snap-N, for N = FROM+1 .. TO.
  snapfill.py tidemark HTTP_URL TOKEN_FILE NBD_HOST:PORT EXPORT VOLUME FROM TO
      the same through Tidemark: the 4 KiB write over NBD (one connection), the snapshot through the
      REST API (one keep-alive connection).

SNAPSHOT_SECONDS=N in the environment stops a peer after N seconds of snapshotting (RBD slows down
as its snapshots grow; the count reached is the result then).
Both use the same offsets (seeded by N), so the two peers change the same blocks. Prints one line,
"created COUNT of WANTED in SECONDS s (RATE/s)[; stopped: ERROR]", and exits 0 even when the peer
refused a snapshot (RBD's limit is a result to report, not a failure of the bench).
"""
import ctypes
import http.client
import json
import os
import socket
import struct
import sys
import time
import urllib.parse

BLOCK = 4096
LIMIT = float(os.environ.get('SNAPSHOT_SECONDS') or 0)


def over_limit(start):
    return LIMIT > 0 and time.monotonic() - start > LIMIT


def offset_of(n, size):
    # A multiplicative hash of N spreads the writes over the volume without a random generator's state.
    return ((n * 2654435761) % (size // BLOCK)) * BLOCK


def payload(n):
    return struct.pack('<Q', n) * (BLOCK // 8)


def rbd_fill(conf, pool, image, first, last):
    rados = ctypes.CDLL('librados.so.2')
    rbd = ctypes.CDLL('librbd.so.1')
    cluster = ctypes.c_void_p()
    ioctx = ctypes.c_void_p()
    handle = ctypes.c_void_p()
    check = lambda what, rc: rc >= 0 or sys.exit(f'{what} failed: {rc}')
    check('rados_create', rados.rados_create(ctypes.byref(cluster), b'admin'))
    check('rados_conf_read_file', rados.rados_conf_read_file(cluster, conf.encode()))
    check('rados_connect', rados.rados_connect(cluster))
    check('rados_ioctx_create', rados.rados_ioctx_create(cluster, pool.encode(), ctypes.byref(ioctx)))
    check('rbd_open', rbd.rbd_open(ioctx, image.encode(), ctypes.byref(handle), None))
    size = ctypes.c_uint64()
    check('rbd_get_size', rbd.rbd_get_size(handle, ctypes.byref(size)))
    rbd.rbd_write.restype = ctypes.c_ssize_t
    rbd.rbd_write.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_size_t, ctypes.c_char_p]
    rbd.rbd_snap_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    done, error = 0, None
    start = time.monotonic()
    for n in range(first + 1, last + 1):
        if over_limit(start):
            error = f'time limit of {LIMIT:.0f} s'
            break
        rc = rbd.rbd_write(handle, offset_of(n, size.value), BLOCK, payload(n))
        if rc != BLOCK:
            error = f'rbd_write before snapshot {n}: {rc}'
            break
        rc = rbd.rbd_snap_create(handle, f'snap-{n}'.encode())
        if rc < 0:
            error = f'rbd_snap_create snap-{n}: {rc}'
            break
        done += 1
    elapsed = time.monotonic() - start
    rbd.rbd_close(handle)
    rados.rados_ioctx_destroy(ioctx)
    rados.rados_shutdown(cluster)
    return done, elapsed, error


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError('NBD server closed the connection')
        data += chunk
    return bytes(data)


def nbd_connect(hostport, export):
    host, port = hostport.rsplit(':', 1)
    sock = socket.create_connection((host, int(port)))
    magic, opt_magic, _flags = struct.unpack('>8s8sH', recv_exact(sock, 18))
    if magic != b'NBDMAGIC' or opt_magic != b'IHAVEOPT':
        raise ConnectionError('not a newstyle NBD server')
    sock.sendall(struct.pack('>I', 3))  # FIXED_NEWSTYLE | NO_ZEROES
    name = export.encode()
    sock.sendall(b'IHAVEOPT' + struct.pack('>II', 1, len(name)) + name)  # NBD_OPT_EXPORT_NAME
    size, _tflags = struct.unpack('>QH', recv_exact(sock, 10))
    return sock, size


def nbd_write(sock, cookie, offset, data):
    sock.sendall(struct.pack('>IHHQQI', 0x25609513, 0, 1, cookie, offset, len(data)) + data)
    magic, error, got = struct.unpack('>IIQ', recv_exact(sock, 16))
    if magic != 0x67446698 or got != cookie:
        raise ConnectionError('unexpected NBD reply')
    return error


def tidemark_fill(http_url, token_file, nbd, export, volume, first, last):
    token = open(token_file).read().strip()
    url = urllib.parse.urlsplit(http_url)
    api = http.client.HTTPConnection(url.hostname, url.port)
    headers = {'Authorization': f'Bearer {token}', 'Content-Type': 'application/json'}
    path = f'/api/v1/volumes/{urllib.parse.quote(volume)}/snapshots'
    sock, size = nbd_connect(nbd, export)
    done, error = 0, None
    start = time.monotonic()
    for n in range(first + 1, last + 1):
        if over_limit(start):
            error = f'time limit of {LIMIT:.0f} s'
            break
        rc = nbd_write(sock, n, offset_of(n, size), payload(n))
        if rc != 0:
            error = f'NBD write before snapshot {n}: error {rc}'
            break
        api.request('POST', path, json.dumps({'name': f'snap-{n}'}), headers)
        reply = api.getresponse()
        body = reply.read()
        if reply.status >= 300:
            error = f'snapshot snap-{n}: HTTP {reply.status} {body[:300].decode(errors="replace")}'
            break
        done += 1
    elapsed = time.monotonic() - start
    sock.sendall(struct.pack('>IHHQQI', 0x25609513, 0, 2, 0, 0, 0))  # NBD_CMD_DISC
    sock.close()
    api.close()
    return done, elapsed, error


def main(argv):
    if len(argv) == 7 and argv[1] == 'rbd':
        first, last = int(argv[5]), int(argv[6])
        done, elapsed, error = rbd_fill(argv[2], argv[3], argv[4], first, last)
    elif len(argv) == 9 and argv[1] == 'tidemark':
        first, last = int(argv[7]), int(argv[8])
        done, elapsed, error = tidemark_fill(*argv[2:7], first, last)
    else:
        sys.exit(__doc__)
    rate = done / elapsed if elapsed > 0 else 0
    print(f'created {done} of {last - first} in {elapsed:.1f} s ({rate:.1f}/s)' + (f'; stopped: {error}' if error else ''))


if __name__ == '__main__':
    main(sys.argv)
