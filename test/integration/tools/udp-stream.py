#!/usr/bin/env python3
"""A bounded UDP stream between two pods, checked in order and by hash.

usage: udp-stream.py recv PORT COUNT IDLE_S          (start first; prints JSON and exits)
       udp-stream.py send HOST PORT COUNT SIZE       (prints JSON)

The sender uses a connected socket, as most UDP applications do: Linux then sets DF and gives its
datagrams consecutive IPv4 IDs. Datagram i carries SIZE bytes: i as 4 bytes, then bytes derived
from i. It sends in bursts of 64 with a 2 ms pause, so that a data plane sees runs of one flow
without a socket buffer overflowing. Both sides print the count and the SHA-256 of the payloads
in the order they were sent or received: equal hashes mean every datagram arrived, whole, in
order. The receiver stops after COUNT datagrams or IDLE_S seconds without one.
"""
import hashlib, json, socket, struct, sys, time


def payload(i, size):
    head = struct.pack('!I', i)
    body = bytes((i * 7 + k) & 0xff for k in range(size - 4))
    return head + body


def recv(port, count, idle):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(('0.0.0.0', port))
    s.settimeout(idle)
    h, n, size = hashlib.sha256(), 0, 0
    print(json.dumps({'listening': port}), flush=True)
    try:
        while n < count:
            d = s.recv(65536)
            h.update(d)
            n += 1
            size = len(d)
    except socket.timeout:
        pass
    print(json.dumps({'received': n, 'size': size, 'sha256': h.hexdigest()}), flush=True)


def send(host, port, count, size):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    h = hashlib.sha256()
    for i in range(count):
        d = payload(i, size)
        h.update(d)
        s.send(d)
        if i % 64 == 63:
            time.sleep(0.002)
    print(json.dumps({'sent': count, 'sha256': h.hexdigest()}), flush=True)


if __name__ == '__main__':
    if sys.argv[1] == 'recv':
        recv(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    elif sys.argv[1] == 'send':
        send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(__doc__)
