#!/usr/bin/env python3
"""Write malformed frames into an interface with an AF_PACKET socket (run inside a pod's netns).

usage: inject.py IFACE SRC_MAC DST_MAC SRC_IP DST_IP COUNT
Frames rotate through: an unsupported EtherType, truncated IPv4, bad version, bad IHL, bad total length,
bad header checksum, bad options, random bytes; all carry the pod's real source MAC so they get past
anti-spoofing and exercise the deeper checks. Prints a JSON count per kind.
"""
import json, os, random, socket, struct, sys

iface, src_mac, dst_mac, src_ip, dst_ip, count = sys.argv[1:7]
count = int(count)
smac = bytes.fromhex(src_mac.replace(':', ''))
dmac = bytes.fromhex(dst_mac.replace(':', ''))
sip, dip = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)

def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

def ip_header(ver_ihl=0x45, total=28, opts=b'', good_csum=True):
    h = struct.pack('!BBHHHBBH4s4s', ver_ihl, 0, total, 1, 0, 64, 17, 0, sip, dip) + opts
    c = csum(h) if good_csum else (csum(h) ^ 0x1234)
    return h[:10] + struct.pack('!H', c) + h[12:]

eth = dmac + smac + b'\x08\x00'
udp = struct.pack('!HHHH', 1234, 5678, 8, 0)
kinds = {
    # (a frame shorter than 14 bytes cannot leave a kernel interface; unit tests cover it)
    'eth_unsupported_type': lambda: dmac + smac + b'\x88\xb5' + b'\x00' * 46,
    'ipv4_truncated': lambda: eth + ip_header()[:12],
    'ipv4_bad_version': lambda: eth + ip_header(ver_ihl=0x65) + udp,
    'ipv4_bad_header_len': lambda: eth + ip_header(ver_ihl=0x43) + udp,
    'ipv4_bad_total_len': lambda: eth + ip_header(total=1400) + udp,
    'ipv4_bad_checksum': lambda: eth + ip_header(good_csum=False) + udp,
    'ipv4_bad_options': lambda: eth + ip_header(ver_ihl=0x46, total=32, opts=b'\x44\x09\x00\x00') + udp,
    'random': lambda: bytes(random.getrandbits(8) for _ in range(random.randint(14, 200))),
}
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
names = list(kinds)
sent = {k: 0 for k in names}
frames = {k: kinds[k]() for k in names if k != 'random'}
randoms = [kinds['random']() for _ in range(256)]
for i in range(count):
    k = names[i % len(names)]
    f = randoms[i % 256] if k == 'random' else frames[k]
    while True:
        try:
            s.send(f); break
        except BlockingIOError:
            continue
        except OSError as e:
            if e.errno == 105: continue  # ENOBUFS: queue full, try again
            raise
    sent[k] += 1
print(json.dumps(sent))
