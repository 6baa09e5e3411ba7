#!/usr/bin/env python3
"""Send COUNT VXLAN datagrams (RFC 7348) to HOST:PORT with the given VNI and flags byte.
usage: vxlan-send.py HOST PORT VNI FLAGS COUNT   (inner frame: an Ethernet/IPv4/ICMP echo, valid)"""
import socket, struct, sys
host, port, vni, flags, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 0), int(sys.argv[5])
inner = bytes.fromhex('0e77c0a8380b' '0e77c0a8380c' '0800') + bytes.fromhex('45000054000040004001') + b'\0\0' + socket.inet_aton('10.244.2.2') + socket.inet_aton('10.244.1.2') + b'\x08\0' + b'\0' * 62
hdr = struct.pack('!B3xI', flags, vni << 8)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(count):
    s.sendto(hdr + inner, (host, port))
print(count)
