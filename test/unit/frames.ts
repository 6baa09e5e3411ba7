/**
 * Independent frame builders and a test node for the pipeline tests.
 *
 * Expected frames are built here byte by byte, with a checksum implementation of their own (RFC
 * 1071, summed 16 bits at a time), never with src/wire: a bug in the codecs must not be able to
 * hide in both the code under test and its expectations.
 */
import { FrameSlab, TxQueue } from '../../src/frame/slab.ts';
import { Fdb } from '../../src/tables/fdb.ts';
import { PortTable, PortKind, HOST_PORT, OVERLAY_PORT } from '../../src/tables/ports.ts';
import { RouteTable } from '../../src/tables/routes.ts';
import { Counters } from '../../src/dataplane/counters.ts';
import { Dataplane } from '../../src/dataplane/pipeline.ts';
import { ipToU32 as ip } from '../../src/control/addressing.ts';

export const hex = (s: string) => Uint8Array.from(s.replace(/[^0-9a-f]/gi, '').match(/../g)!.map((b) => parseInt(b, 16)));
export const mac = (s: string) => hex(s);
export const ipb = (s: string) => Uint8Array.from(s.split('.').map(Number));

/** RFC 1071 over the bytes, summed 16 bits at a time; carries folded by `fold`. */
export function sum16(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i < b.length; i += 2) s += (b[i] << 8) | (b[i + 1] ?? 0);
  return s;
}
export function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return ~s & 0xffff;
}
export const csum = (b: Uint8Array) => fold(sum16(b));
export function pseudo(src: string, dst: string, proto: number, len: number): number {
  return sum16(cat(ipb(src), ipb(dst), Uint8Array.of(0, proto, len >> 8, len & 0xff)));
}
export function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
export function eth(dst: string, src: string, type = 0x0800): Uint8Array { return cat(mac(dst), mac(src), Uint8Array.of(type >> 8, type & 0xff)); }
export interface IpOpts { ttl?: number; df?: boolean; mf?: boolean; fragOff?: number; id?: number; tos?: number }
export function ipv4(src: string, dst: string, proto: number, payload: Uint8Array, o: IpOpts = {}): Uint8Array {
  const h = new Uint8Array(20), dv = new DataView(h.buffer);
  dv.setUint8(0, 0x45); dv.setUint8(1, o.tos ?? 0); dv.setUint16(2, 20 + payload.length); dv.setUint16(4, o.id ?? 0x1234);
  dv.setUint16(6, (o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | ((o.fragOff ?? 0) >> 3)); dv.setUint8(8, o.ttl ?? 64); dv.setUint8(9, proto);
  h.set(ipb(src), 12); h.set(ipb(dst), 16);
  dv.setUint16(10, csum(h));
  return cat(h, payload);
}
export const SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10, FIN = 0x01;
export interface TcpOpts { seq?: number; ack?: number; flags?: number; win?: number; data?: Uint8Array }
/** A TCP segment with its checksum over the (src, dst) pseudo-header. */
export function tcp(src: string, dst: string, sport: number, dport: number, o: TcpOpts = {}): Uint8Array {
  const data = o.data ?? new Uint8Array(0);
  const h = new Uint8Array(20), dv = new DataView(h.buffer);
  dv.setUint16(0, sport); dv.setUint16(2, dport); dv.setUint32(4, o.seq ?? 1000); dv.setUint32(8, o.ack ?? 0);
  dv.setUint8(12, 0x50); dv.setUint8(13, o.flags ?? SYN); dv.setUint16(14, o.win ?? 65535);
  const seg = cat(h, data);
  const c = fold(sum16(seg, pseudo(src, dst, 6, seg.length)));
  seg[16] = c >> 8; seg[17] = c & 0xff;
  return seg;
}
/** A UDP datagram; with `withChecksum` its checksum over the pseudo-header (0 sent as 0xffff), else 0 ("none", RFC 768). */
export function udp(src: string, dst: string, sport: number, dport: number, data: Uint8Array, withChecksum = false): Uint8Array {
  const len = 8 + data.length;
  const m = cat(Uint8Array.of(sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, len >> 8, len & 0xff, 0, 0), data);
  if (withChecksum) {
    const c = fold(sum16(m, pseudo(src, dst, 17, len))) || 0xffff;
    m[6] = c >> 8; m[7] = c & 0xff;
  }
  return m;
}
export function icmpEcho(type: number, id: number, seq: number, data: Uint8Array): Uint8Array {
  const m = cat(Uint8Array.of(type, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff), data);
  const c = csum(m); m[2] = c >> 8; m[3] = c & 0xff;
  return m;
}
/** An ICMP error (type, code) quoting `quoted`. */
export function icmpErr(type: number, code: number, quoted: Uint8Array, rest = 0): Uint8Array {
  const m = cat(Uint8Array.of(type, code, 0, 0, rest >>> 24, (rest >> 16) & 0xff, (rest >> 8) & 0xff, rest & 0xff), quoted);
  const c = csum(m); m[2] = c >> 8; m[3] = c & 0xff;
  return m;
}
export function arp(op: number, sha: string, spa: string, tha: string, tpa: string): Uint8Array {
  return cat(Uint8Array.of(0, 1, 8, 0, 6, 4, 0, op), mac(sha), ipb(spa), mac(tha), ipb(tpa));
}
export const VXLAN_HDR = hex('0800000000000100');

// ---- a node: node1 (10.244.1.0/24, underlay 192.168.56.11) with pods A and B, and a remote node2 --
export const ROUTER = '0e:77:c0:a8:38:0b', HOST = '0e:68:c0:a8:38:0b', NODE2_VTEP = '0e:77:c0:a8:38:0c';
export const A = { mac: '0a:58:0a:f4:01:0a', ip: '10.244.1.10' }, B = { mac: '0a:58:0a:f4:01:0b', ip: '10.244.1.11' };

export interface TestNode { dp: Dataplane; ports: PortTable; routes: RouteTable; counters: Counters; slab: FrameSlab; tx: TxQueue; portA: number; portB: number }

/** A data plane with no devices: node1 with pods A and B, node2 as a remote member. */
export function testNode(): TestNode {
  const ports = new PortTable(16);
  const routes = new RouteTable(ip('10.244.1.0'), 24, ip('10.244.0.0'), 16, 16);
  const counters = new Counters(16);
  const dp = new Dataplane(ports, routes, new Fdb(64), counters, {
    routerMacHi: 0x0e77, routerMacLo: ip('192.168.56.11'), hostMacHi: 0x0e68, hostMacLo: ip('192.168.56.11'),
    vni: 1, vxlanPort: 4789, underlayMtu: 1500,
  });
  ports.attach(PortKind.Overlay, 100, 0, 0, ip('192.168.56.11'), 'overlay', OVERLAY_PORT);
  ports.attach(PortKind.Host, 101, 0x0e68, ip('192.168.56.11'), 0, 'host', HOST_PORT);
  const portA = ports.attach(PortKind.Pod, 102, 0x0a58, ip(A.ip), ip(A.ip), 'default/a');
  const portB = ports.attach(PortKind.Pod, 103, 0x0a58, ip(B.ip), ip(B.ip), 'default/b');
  routes.setLocalPod(ip(A.ip), portA); routes.setLocalPod(ip(B.ip), portB);
  routes.upsertNode({ name: 'node1', podNet: ip('10.244.1.0'), prefixLen: 24, underlayIp: ip('192.168.56.11'), vtepMacHi: 0x0e77, vtepMacLo: ip('192.168.56.11'), self: true });
  routes.upsertNode({ name: 'node2', podNet: ip('10.244.2.0'), prefixLen: 24, underlayIp: ip('192.168.56.12'), vtepMacHi: 0x0e77, vtepMacLo: ip('192.168.56.12'), self: false });
  dp.refreshPodPorts();
  return { dp, ports, routes, counters, slab: new FrameSlab(), tx: new TxQueue(256, 16), portA, portB };
}
