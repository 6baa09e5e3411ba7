/**
 * The conntrack + Service NAT stage of the pipeline, without devices: frames are written into the
 * slab by hand, one batch is processed, and what the TxQueue holds is compared byte for byte with
 * frames built here by an independent implementation (full checksums computed from scratch, so
 * every comparison also checks the pipeline's incremental RFC 1624 updates).
 *
 * The node: node1 (pods 10.244.1.0/24, gateway 10.244.1.1, underlay 192.168.56.11) with pods A
 * (10.244.1.10) and B (10.244.1.11); node2 (10.244.2.0/24 at 192.168.56.12) is remote.
 * Service web: ClusterIP 10.96.0.10, TCP 80 → 8080 and UDP 53 → 5353, backends A (local) and
 * 10.244.2.5 (on node2); round-robin, so the first connection goes to A, the second to node2.
 */
import { describe, it, expect, beforeEach } from 'vitest';
import { FrameSlab, TxQueue } from '../../src/frame/slab.ts';
import { HOST_PORT, OVERLAY_PORT } from '../../src/tables/ports.ts';
import { Counters } from '../../src/dataplane/counters.ts';
import { Dataplane } from '../../src/dataplane/pipeline.ts';
import { ServiceTable, LbAlgorithm, type ServicePortSpec } from '../../src/tables/services.ts';
import { Conntrack } from '../../src/tables/conntrack.ts';
import { Drop, DROP_COUNT } from '../../src/wire/drop.ts';
import { hex, sum16, fold, csum, pseudo, cat, eth, ipv4, tcp, udp, icmpErr, VXLAN_HDR, SYN, RST, PSH, ACK, FIN, testNode, type TcpOpts, ROUTER, HOST, NODE2_VTEP, A, B } from './frames.ts';
import { ipToU32 as ip } from '../../src/control/addressing.ts';



/** Check an IPv4 packet's header checksum and its TCP/UDP/ICMP checksum from scratch. */
function verifyChecksums(pkt: Uint8Array): void {
  const ihl = (pkt[0] & 0x0f) * 4, total = (pkt[2] << 8) | pkt[3], proto = pkt[9];
  expect(csum(pkt.slice(0, ihl))).toBe(0);
  const l4 = pkt.slice(ihl, total);
  const src = Array.from(pkt.slice(12, 16)).join('.'), dst = Array.from(pkt.slice(16, 20)).join('.');
  if (proto === 6) expect(fold(sum16(l4, pseudo(src, dst, 6, l4.length)))).toBe(0);
  if (proto === 17 && (l4[6] | l4[7]) !== 0) expect(fold(sum16(l4, pseudo(src, dst, 17, l4.length)))).toBe(0);
  if (proto === 1) expect(csum(l4)).toBe(0);
}

// ---- the node: frames.ts's test node, with a service table and conntrack -----------------------
const GW = '10.244.1.1', NODE_IP = '192.168.56.11', EXT = '192.168.56.100';
const VIP = '10.96.0.10', R = '10.244.2.5';   // R: the backend on node2
let dp: Dataplane, slab: FrameSlab, tx: TxQueue, counters: Counters;
let svc: ServiceTable, ct: Conntrack;
let portA = 0, portB = 0, now = 1000;

function svcSpec(key: string, o: Partial<ServicePortSpec>): ServicePortSpec {
  return { key, proto: 6, vip: ip(VIP), port: 80, nodePort: 0, externalIps: [], algorithm: LbAlgorithm.RoundRobin, affinityMs: 0, externalLocal: false, ...o };
}
/** Install a service port with backends [A, R] (A local) on `bport`. */
function install(key: string, o: Partial<ServicePortSpec>, bport: number, backends = [A.ip, R]): number {
  const sp = svc.upsert(svcSpec(key, o));
  svc.setBackends(sp, backends.map(ip), backends.map(() => bport), backends.flatMap((b, i) => (b.startsWith('10.244.1.') ? [i] : [])));
  return sp;
}

beforeEach(() => {
  ({ dp, counters, slab, tx, portA, portB } = testNode());
  svc = new ServiceTable(64, 1024);
  ct = new Conntrack(1024);
  dp.services = svc;
  dp.ct = ct;
  install('default/web:80/TCP', {}, 8080);
  install('default/web:53/UDP', { proto: 17, port: 53 }, 5353);
  now = 1000;
});

interface Out { port: number; bytes: Uint8Array; dst: number }
/** Run frames from `port` (or the overlay when `fromUnderlay` is given) and return what was queued. */
function run(port: number, frames: Uint8Array[], fromUnderlay?: string): Out[] {
  slab.reset();
  frames.forEach((f, i) => { slab.u8.set(f, slab.frameOffset(i)); slab.lens[i] = f.length; if (fromUnderlay) slab.srcAddrs[i] = ip(fromUnderlay); });
  tx.clear();
  if (fromUnderlay) dp.processOverlayBatch(slab, frames.length, tx, now);
  else dp.processTapBatch(slab, port, frames.length, tx, now);
  now += 10;
  const out: Out[] = [];
  for (let i = 0; i < tx.count; i++) out.push({ port: tx.port[i], bytes: slab.u8.slice(tx.off[i], tx.off[i] + tx.len[i]), dst: tx.dstAddr[i] });
  return out;
}
/** Run one frame and expect exactly one frame out on `port`; returns its bytes. */
function one(inPort: number, frame: Uint8Array, outPort: number, fromUnderlay?: string): Uint8Array {
  const out = run(inPort, [frame], fromUnderlay);
  expect(out.map((o) => o.port)).toEqual([outPort]);
  return out[0].bytes;
}
const drops = (reason: number) => counters.drops[reason];
const totalDrops = () => counters.drops.reduce((a, b) => a + b, 0);

/** A TCP packet from pod B to the VIP, as B sends it (to the router MAC). */
const fromB = (sport: number, o: TcpOpts = {}, dst = VIP, dport = 80) => cat(eth(ROUTER, B.mac), ipv4(B.ip, dst, 6, tcp(B.ip, dst, sport, dport, o)));

describe('TCP to a ClusterIP: DNAT and the reverse translation', () => {
  it('DNATs a client SYN to the chosen local backend: only dst and dport change, TTL-1, checksums valid', () => {
    const o = { seq: 0x11223344, flags: SYN, win: 29200 };
    const got = one(portB, fromB(40000, o), portA);
    const want = cat(eth(A.mac, ROUTER), ipv4(B.ip, A.ip, 6, tcp(B.ip, A.ip, 40000, 8080, o), { ttl: 63 }));
    expect(got).toEqual(want);
    verifyChecksums(got.slice(14));
    expect(drops(Drop.ServiceNoEndpoints) + drops(Drop.ConntrackInvalid)).toBe(0);
    const [e] = ct.entries(now);
    expect([e.orig, e.reply, e.natFlags, e.state]).toEqual(['10.244.1.11:40000 -> 10.96.0.10:80', '10.244.1.10:8080 -> 10.244.1.11:40000', 'dnat', 'SynSent']);
    expect(Array.from(svc.selections[svc.indexOf('default/web:80/TCP')])).toEqual([1, 0]);
  });

  it('translates the backend\'s SYN-ACK back, bridged (no TTL change) or routed (TTL-1): the client sees VIP:80', () => {
    one(portB, fromB(40000, { seq: 100 }), portA);
    // Bridged: A answers B on the same subnet, straight to B's MAC.
    const sa = { seq: 5000, ack: 101, flags: SYN | ACK, win: 28960 };
    const bridged = one(portA, cat(eth(B.mac, A.mac), ipv4(A.ip, B.ip, 6, tcp(A.ip, B.ip, 8080, 40000, sa))), portB);
    expect(bridged).toEqual(cat(eth(B.mac, A.mac), ipv4(VIP, B.ip, 6, tcp(VIP, B.ip, 80, 40000, sa))));
    verifyChecksums(bridged.slice(14));
    // Routed: A sends the same (retransmitted) SYN-ACK through the gateway.
    const routed = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, B.ip, 6, tcp(A.ip, B.ip, 8080, 40000, sa))), portB);
    expect(routed).toEqual(cat(eth(B.mac, ROUTER), ipv4(VIP, B.ip, 6, tcp(VIP, B.ip, 80, 40000, sa), { ttl: 63 })));
    verifyChecksums(routed.slice(14));
    expect(ct.entries(now)[0].state).toBe('SynRecv');
  });

  it('sends the later packets of the connection to the same backend, while new connections round-robin', () => {
    one(portB, fromB(40000, { seq: 100 }), portA);
    one(portA, cat(eth(B.mac, A.mac), ipv4(A.ip, B.ip, 6, tcp(A.ip, B.ip, 8080, 40000, { seq: 7, ack: 101, flags: SYN | ACK }))), portB);
    // A second connection goes to the remote backend (round-robin)...
    const second = one(portB, fromB(40001, { seq: 900 }), OVERLAY_PORT);
    expect(second.slice(36)).toEqual(cat(eth(NODE2_VTEP, ROUTER), ipv4(B.ip, R, 6, tcp(B.ip, R, 40001, 8080, { seq: 900 }), { ttl: 63 })));
    // ...but the first connection's ACK and data still go to A.
    const ackO = { seq: 101, ack: 8, flags: ACK };
    expect(one(portB, fromB(40000, ackO), portA)).toEqual(cat(eth(A.mac, ROUTER), ipv4(B.ip, A.ip, 6, tcp(B.ip, A.ip, 40000, 8080, ackO), { ttl: 63 })));
    const dataO = { seq: 101, ack: 8, flags: PSH | ACK, data: hex('474554202f20485454502f312e310d0a0d') };   // odd length
    const data = one(portB, fromB(40000, dataO), portA);
    expect(data).toEqual(cat(eth(A.mac, ROUTER), ipv4(B.ip, A.ip, 6, tcp(B.ip, A.ip, 40000, 8080, dataO), { ttl: 63 })));
    verifyChecksums(data.slice(14));
    const e = ct.entries(now).find((x) => x.orig.startsWith('10.244.1.11:40000'))!;
    expect(e.state).toBe('Established');
    expect(e.packets).toBe(4);
    // A FIN from the client follows the connection too.
    const finO = { seq: 118, ack: 8, flags: FIN | ACK };
    expect(one(portB, fromB(40000, finO), portA)).toEqual(cat(eth(A.mac, ROUTER), ipv4(B.ip, A.ip, 6, tcp(B.ip, A.ip, 40000, 8080, finO), { ttl: 63 })));
  });

  it('reverse-translates a remote backend\'s reply arriving over VXLAN', () => {
    one(portB, fromB(40000), portA);   // first connection takes A
    const syn = one(portB, fromB(40001, { seq: 42 }), OVERLAY_PORT);
    verifyChecksums(syn.slice(36 + 14));
    const sa = { seq: 9, ack: 43, flags: SYN | ACK };
    const reply = cat(VXLAN_HDR, eth(ROUTER, NODE2_VTEP), ipv4(R, B.ip, 6, tcp(R, B.ip, 8080, 40001, sa), { ttl: 63 }));
    const got = one(OVERLAY_PORT, reply, portB, '192.168.56.12');
    expect(got).toEqual(cat(eth(B.mac, ROUTER), ipv4(VIP, B.ip, 6, tcp(VIP, B.ip, 80, 40001, sa), { ttl: 62 })));
    verifyChecksums(got.slice(14));
  });

  it('drops a TCP segment without SYN to the VIP when no connection exists (conntrack_invalid)', () => {
    for (const flags of [ACK, PSH | ACK, FIN | ACK, RST, SYN | ACK]) {
      expect(run(portB, [fromB(41000, { flags })])).toHaveLength(0);
    }
    expect(drops(Drop.ConntrackInvalid)).toBe(5);
    expect(counters.portDrops[portB * DROP_COUNT + Drop.ConntrackInvalid]).toBe(5);
    expect(ct.size).toBe(0);
    expect(Array.from(svc.selections[svc.indexOf('default/web:80/TCP')])).toEqual([0, 0]);
  });

  it('leaves traffic that is not for a Service untouched (tracked, so a later policy can judge it, but never translated)', () => {
    const pkt = ipv4(B.ip, R, 6, tcp(B.ip, R, 40000, 8080));
    const got = one(portB, cat(eth(ROUTER, B.mac), pkt), OVERLAY_PORT);
    expect(got.slice(36)).toEqual(cat(eth(NODE2_VTEP, ROUTER), ipv4(B.ip, R, 6, tcp(B.ip, R, 40000, 8080), { ttl: 63 })));
    expect(ct.size).toBe(1);
    // Another port of the ClusterIP is not a frontend either: routed as is (to the node, like any off-cluster address).
    const other = one(portB, fromB(40000, {}, VIP, 81), HOST_PORT);
    expect(other).toEqual(cat(eth(HOST, ROUTER), ipv4(B.ip, VIP, 6, tcp(B.ip, VIP, 40000, 81), { ttl: 63 })));
    expect(ct.size).toBe(2);
    expect(ct.entries(0).map((e) => e.natFlags)).toEqual(['none', 'none']);
  });
});

describe('UDP to a ClusterIP', () => {
  const fromBUdp = (sport: number, data: Uint8Array, withChecksum: boolean) =>
    cat(eth(ROUTER, B.mac), ipv4(B.ip, VIP, 17, udp(B.ip, VIP, sport, 53, data, withChecksum)));

  it('keeps a zero (absent) UDP checksum at zero through DNAT and the reverse translation', () => {
    const q = hex('abcd01000001000000000000');
    const got = one(portB, fromBUdp(5000, q, false), portA);
    expect(got).toEqual(cat(eth(A.mac, ROUTER), ipv4(B.ip, A.ip, 17, udp(B.ip, A.ip, 5000, 5353, q, false), { ttl: 63 })));
    expect(got[14 + 20 + 6] | got[14 + 20 + 7]).toBe(0);
    verifyChecksums(got.slice(14));
    const ans = hex('abcd81800001000100000000');
    const back = one(portA, cat(eth(B.mac, A.mac), ipv4(A.ip, B.ip, 17, udp(A.ip, B.ip, 5353, 5000, ans, false))), portB);
    expect(back).toEqual(cat(eth(B.mac, A.mac), ipv4(VIP, B.ip, 17, udp(VIP, B.ip, 53, 5000, ans, false))));
  });

  it('updates a present UDP checksum so that it equals a full recomputation, both ways', () => {
    const q = hex('1234010000010000000000000377777706676f6f676c6503636f6d0000010001');
    const got = one(portB, fromBUdp(5001, q, true), portA);
    expect(got).toEqual(cat(eth(A.mac, ROUTER), ipv4(B.ip, A.ip, 17, udp(B.ip, A.ip, 5001, 5353, q, true), { ttl: 63 })));
    verifyChecksums(got.slice(14));
    const ans = hex('12348180000100010000000003');   // odd length
    const back = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, B.ip, 17, udp(A.ip, B.ip, 5353, 5001, ans, true))), portB);
    expect(back).toEqual(cat(eth(B.mac, ROUTER), ipv4(VIP, B.ip, 17, udp(VIP, B.ip, 53, 5001, ans, true), { ttl: 63 })));
    verifyChecksums(back.slice(14));
    expect(ct.entries(now)[0].state).toBe('UdpReplied');
  });

  it('updates UDP checksums correctly over many addresses and ports (random payloads)', () => {
    let seed = 7;
    const r = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16;
    for (let i = 0; i < 200; i++) {
      const data = Uint8Array.from({ length: r() % 40 }, () => r() & 0xff);
      const sport = 1024 + (r() % 60000);
      const out = run(portB, [fromBUdp(sport, data, true)]);
      expect(out).toHaveLength(1);
      const to = out[0].port === portA ? A.ip : R;
      const pkt = out[0].port === portA ? out[0].bytes.slice(14) : out[0].bytes.slice(36 + 14);
      expect(pkt).toEqual(ipv4(B.ip, to, 17, udp(B.ip, to, sport, 5353, data, true), { ttl: 63 }));
    }
  });
});

describe('hairpin: a backend reaching itself through its Service', () => {
  it('SNATs to the gateway and translates the reply back to VIP:80', () => {
    const syn = { seq: 77, flags: SYN };
    const got = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, VIP, 6, tcp(A.ip, VIP, 40000, 80, syn))), portA);
    expect(got).toEqual(cat(eth(A.mac, ROUTER), ipv4(GW, A.ip, 6, tcp(GW, A.ip, 40000, 8080, syn), { ttl: 63 })));
    verifyChecksums(got.slice(14));
    const [e] = ct.entries(now);
    expect([e.orig, e.reply, e.natFlags]).toEqual(['10.244.1.10:40000 -> 10.96.0.10:80', '10.244.1.10:8080 -> 10.244.1.1:40000', 'dnat+snat']);
    // A answers 10.244.1.1 (the gateway, reached through the router MAC).
    const sa = { seq: 3, ack: 78, flags: SYN | ACK };
    const back = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, GW, 6, tcp(A.ip, GW, 8080, 40000, sa))), portA);
    expect(back).toEqual(cat(eth(A.mac, ROUTER), ipv4(VIP, A.ip, 6, tcp(VIP, A.ip, 80, 40000, sa), { ttl: 63 })));
    verifyChecksums(back.slice(14));
    // And the client's next segment is translated as the first was.
    const ackO = { seq: 78, ack: 4, flags: ACK };
    expect(one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, VIP, 6, tcp(A.ip, VIP, 40000, 80, ackO))), portA))
      .toEqual(cat(eth(A.mac, ROUTER), ipv4(GW, A.ip, 6, tcp(GW, A.ip, 40000, 8080, ackO), { ttl: 63 })));
  });

  it('does not SNAT a client that is not the chosen backend', () => {
    one(portB, fromB(40000), portA);
    expect(ct.entries(now)[0].natFlags).toBe('dnat');
  });
});

describe('a Service with no endpoints is refused', () => {
  const EMPTY_VIP = '10.96.0.20';
  beforeEach(() => {
    install('default/empty:80/TCP', { vip: ip(EMPTY_VIP), port: 80 }, 8080, []);
    install('default/empty:53/UDP', { vip: ip(EMPTY_VIP), port: 53, proto: 17 }, 53, []);
  });

  it('answers a TCP SYN with a RST+ACK from VIP:80 acknowledging seq+1 (valid checksums)', () => {
    const got = one(portB, fromB(40000, { seq: 0xfffffffe }, EMPTY_VIP, 80), portB);
    const rst = tcp(EMPTY_VIP, B.ip, 80, 40000, { seq: 0, ack: 0xffffffff, flags: RST | ACK, win: 0 });
    expect(got).toEqual(cat(eth(B.mac, ROUTER), ipv4(EMPTY_VIP, B.ip, 6, rst, { id: 0, df: true, ttl: 64 })));
    verifyChecksums(got.slice(14));
    expect(drops(Drop.ServiceNoEndpoints)).toBe(1);
    expect(ct.size).toBe(0);
    // seq + 1 wraps.
    const wrap = one(portB, fromB(40001, { seq: 0xffffffff }, EMPTY_VIP, 80), portB);
    expect(Array.from(wrap.slice(14 + 20 + 8, 14 + 20 + 12))).toEqual([0, 0, 0, 0]);
  });

  it('acknowledges SYN data too (ack = seq + payload + 1)', () => {
    const got = one(portB, fromB(40000, { seq: 1000, data: hex('0102030405') }, EMPTY_VIP, 80), portB);
    expect(got).toEqual(cat(eth(B.mac, ROUTER), ipv4(EMPTY_VIP, B.ip, 6, tcp(EMPTY_VIP, B.ip, 80, 40000, { seq: 0, ack: 1006, flags: RST | ACK, win: 0 }), { id: 0, df: true })));
  });

  it('answers UDP with ICMP port unreachable quoting the datagram as sent (to the VIP)', () => {
    const pkt = ipv4(B.ip, EMPTY_VIP, 17, udp(B.ip, EMPTY_VIP, 5000, 53, hex('abcd0100'), true));
    const got = one(portB, cat(eth(ROUTER, B.mac), pkt), portB);
    expect(got).toEqual(cat(eth(B.mac, ROUTER), ipv4(GW, B.ip, 1, icmpErr(3, 3, pkt), { id: 0, tos: 0xc0, ttl: 64 })));
    verifyChecksums(got.slice(14));
    expect(drops(Drop.ServiceNoEndpoints)).toBe(1);
  });

  it('refuses when the backends go away, and accepts again when they come back', () => {
    const sp = svc.indexOf('default/web:80/TCP');
    svc.setBackends(sp, [], [], []);
    expect(one(portB, fromB(40000), portB)[14 + 20 + 13]).toBe(RST | ACK);
    svc.setBackends(sp, [ip(A.ip)], [8080], [0]);
    one(portB, fromB(40001), portA);
  });
});

describe('ICMP errors about translated flows (RFC 5508)', () => {
  it('translates a backend\'s port unreachable about a DNATed UDP flow: outer src VIP, quoted dst VIP:53', () => {
    const q = hex('beef01000001');
    one(portB, cat(eth(ROUTER, B.mac), ipv4(B.ip, VIP, 17, udp(B.ip, VIP, 5000, 53, q))), portA);
    // What A received, and quotes back (bridged to B on the subnet).
    const received = ipv4(B.ip, A.ip, 17, udp(B.ip, A.ip, 5000, 5353, q), { ttl: 63 });
    const err = cat(eth(B.mac, A.mac), ipv4(A.ip, B.ip, 1, icmpErr(3, 3, received), { tos: 0xc0, id: 0x4242 }));
    const got = one(portA, err, portB);
    const quoted = ipv4(B.ip, VIP, 17, udp(B.ip, VIP, 5000, 53, q), { ttl: 63 });
    expect(got).toEqual(cat(eth(B.mac, A.mac), ipv4(VIP, B.ip, 1, icmpErr(3, 3, quoted), { tos: 0xc0, id: 0x4242 })));
    verifyChecksums(got.slice(14));
    expect(csum(got.slice(14 + 20 + 8, 14 + 20 + 8 + 20))).toBe(0);   // the quoted header's checksum
    expect(totalDrops()).toBe(0);
  });

  it('translates it when routed as well, and leaves errors about untranslated flows alone', () => {
    one(portB, cat(eth(ROUTER, B.mac), ipv4(B.ip, VIP, 17, udp(B.ip, VIP, 5000, 53, hex('00')))), portA);
    const received = ipv4(B.ip, A.ip, 17, udp(B.ip, A.ip, 5000, 5353, hex('00')), { ttl: 63 });
    const got = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, B.ip, 1, icmpErr(3, 3, received))), portB);
    const quoted = ipv4(B.ip, VIP, 17, udp(B.ip, VIP, 5000, 53, hex('00')), { ttl: 63 });
    expect(got).toEqual(cat(eth(B.mac, ROUTER), ipv4(VIP, B.ip, 1, icmpErr(3, 3, quoted), { ttl: 63 })));
    // An error about a flow conntrack never NATed passes unchanged.
    const plain = ipv4(B.ip, A.ip, 17, udp(B.ip, A.ip, 6000, 7000, hex('00')));
    const err = cat(eth(B.mac, A.mac), ipv4(A.ip, B.ip, 1, icmpErr(3, 3, plain)));
    expect(one(portA, err, portB)).toEqual(err);
  });
});

describe('NodePort from outside the cluster', () => {
  /** A SYN from the external client, as the node's kernel hands it to the router. */
  const ext = (sport: number, o: TcpOpts = {}) => cat(eth(ROUTER, HOST), ipv4(EXT, NODE_IP, 6, tcp(EXT, NODE_IP, sport, 30080, o)));

  it('externalTrafficPolicy Cluster: DNAT to a backend and SNAT to the gateway; the reply goes back to the client from NodeIP:30080', () => {
    install('default/web:80/TCP', { nodePort: 30080 }, 8080);
    const syn = { seq: 555, flags: SYN };
    const got = one(HOST_PORT, ext(50000, syn), portA);
    expect(got).toEqual(cat(eth(A.mac, ROUTER), ipv4(GW, A.ip, 6, tcp(GW, A.ip, 50000, 8080, syn), { ttl: 63 })));
    verifyChecksums(got.slice(14));
    expect(ct.entries(now)[0].natFlags).toBe('dnat+snat');
    const sa = { seq: 1, ack: 556, flags: SYN | ACK };
    const back = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, GW, 6, tcp(A.ip, GW, 8080, 50000, sa))), HOST_PORT);
    expect(back).toEqual(cat(eth(HOST, ROUTER), ipv4(NODE_IP, EXT, 6, tcp(NODE_IP, EXT, 30080, 50000, sa), { ttl: 63 })));
    verifyChecksums(back.slice(14));
    // The next connection goes to node2, SNATed too, so node2's answer comes back through here.
    const second = one(HOST_PORT, ext(50001, syn), OVERLAY_PORT);
    expect(second.slice(36)).toEqual(cat(eth(NODE2_VTEP, ROUTER), ipv4(GW, R, 6, tcp(GW, R, 50001, 8080, syn), { ttl: 63 })));
    const rsa = cat(VXLAN_HDR, eth(ROUTER, NODE2_VTEP), ipv4(R, GW, 6, tcp(R, GW, 8080, 50001, sa), { ttl: 63 }));
    const back2 = one(OVERLAY_PORT, rsa, HOST_PORT, '192.168.56.12');
    expect(back2).toEqual(cat(eth(HOST, ROUTER), ipv4(NODE_IP, EXT, 6, tcp(NODE_IP, EXT, 30080, 50001, sa), { ttl: 62 })));
  });

  it('picks another SNAT source port when two clients would collide on the gateway address', () => {
    install('default/web:80/TCP', { nodePort: 30080 }, 8080, [A.ip]);
    const EXT2 = '203.0.113.9';
    const syn = { seq: 1, flags: SYN };
    one(HOST_PORT, ext(50000, syn), portA);
    const got = one(HOST_PORT, cat(eth(ROUTER, HOST), ipv4(EXT2, NODE_IP, 6, tcp(EXT2, NODE_IP, 50000, 30080, syn))), portA);
    const natPort = (got[14 + 20] << 8) | got[14 + 21];
    expect(natPort).not.toBe(50000);
    expect(got).toEqual(cat(eth(A.mac, ROUTER), ipv4(GW, A.ip, 6, tcp(GW, A.ip, natPort, 8080, syn), { ttl: 63 })));
    // Each reply reaches its own client.
    const sa = { seq: 5, ack: 2, flags: SYN | ACK };
    const r1 = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, GW, 6, tcp(A.ip, GW, 8080, 50000, sa))), HOST_PORT);
    expect(r1.slice(14)).toEqual(ipv4(NODE_IP, EXT, 6, tcp(NODE_IP, EXT, 30080, 50000, sa), { ttl: 63 }));
    const r2 = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, GW, 6, tcp(A.ip, GW, 8080, natPort, sa))), HOST_PORT);
    expect(r2.slice(14)).toEqual(ipv4(NODE_IP, EXT2, 6, tcp(NODE_IP, EXT2, 30080, 50000, sa), { ttl: 63 }));
    expect(ct.audit()).toEqual([]);
  });

  it('externalTrafficPolicy Local: only the local backend, and the client address is kept', () => {
    install('default/web:80/TCP', { nodePort: 30080, externalLocal: true }, 8080);
    const syn = { seq: 9, flags: SYN };
    for (const sport of [50000, 50001, 50002]) {
      const got = one(HOST_PORT, ext(sport, syn), portA);
      expect(got).toEqual(cat(eth(A.mac, ROUTER), ipv4(EXT, A.ip, 6, tcp(EXT, A.ip, sport, 8080, syn), { ttl: 63 })));
    }
    expect(ct.entries(now).map((e) => e.natFlags)).toEqual(['dnat', 'dnat', 'dnat']);
    const sa = { seq: 1, ack: 10, flags: SYN | ACK };
    const back = one(portA, cat(eth(ROUTER, A.mac), ipv4(A.ip, EXT, 6, tcp(A.ip, EXT, 8080, 50000, sa))), HOST_PORT);
    expect(back).toEqual(cat(eth(HOST, ROUTER), ipv4(NODE_IP, EXT, 6, tcp(NODE_IP, EXT, 30080, 50000, sa), { ttl: 63 })));
    // A pod reaching the ClusterIP is not external: it still gets every backend (the round-robin
    // cursor is shared with the Local selections, so which comes first is not asserted).
    const outs = [...run(portB, [fromB(40000)]), ...run(portB, [fromB(40001)])];
    expect(outs.map((o) => o.port).sort()).toEqual([OVERLAY_PORT, portA].sort());
  });

  it('externalTrafficPolicy Local without a local backend: refused', () => {
    install('default/web:80/TCP', { nodePort: 30080, externalLocal: true }, 8080, [R]);
    const got = one(HOST_PORT, ext(50000, { seq: 1 }), HOST_PORT);
    expect(got).toEqual(cat(eth(HOST, ROUTER), ipv4(NODE_IP, EXT, 6, tcp(NODE_IP, EXT, 30080, 50000, { seq: 0, ack: 2, flags: RST | ACK, win: 0 }), { id: 0, df: true })));
    expect(drops(Drop.ServiceNoEndpoints)).toBe(1);
  });

  it('a NodePort is only a frontend on the node\'s address', () => {
    install('default/web:80/TCP', { nodePort: 30080 }, 8080);
    const pkt = ipv4(B.ip, '10.244.2.9', 6, tcp(B.ip, '10.244.2.9', 40000, 30080));
    const got = one(portB, cat(eth(ROUTER, B.mac), pkt), OVERLAY_PORT);
    expect(got.slice(36 + 14)).toEqual(ipv4(B.ip, '10.244.2.9', 6, tcp(B.ip, '10.244.2.9', 40000, 30080), { ttl: 63 }));
    expect(ct.entries(0).map((e) => e.natFlags)).toEqual(['none']);
  });
});

describe('session affinity through the pipeline', () => {
  it('sends every new connection of a client to the backend it got first', () => {
    install('default/web:80/TCP', { affinityMs: 10_800_000 }, 8080);
    for (const sport of [40000, 40001, 40002, 40003]) one(portB, fromB(sport), portA);
    // Another client starts the round-robin where it stands.
    const fromA = (sport: number) => cat(eth(ROUTER, A.mac), ipv4(A.ip, VIP, 6, tcp(A.ip, VIP, sport, 80)));
    for (const sport of [41000, 41001]) one(portA, fromA(sport), OVERLAY_PORT);
    expect(Array.from(svc.selections[svc.indexOf('default/web:80/TCP')])).toEqual([4, 2]);
  });
});

describe('a translated packet that cannot be forwarded', () => {
  it('time exceeded for a SYN with TTL 1 to the VIP quotes what the client sent: VIP:80', () => {
    const syn = { seq: 31, flags: SYN };
    const sent = ipv4(B.ip, VIP, 6, tcp(B.ip, VIP, 40000, 80, syn), { ttl: 1 });
    const got = one(portB, cat(eth(ROUTER, B.mac), sent), portB);
    expect(drops(Drop.TtlExceeded)).toBe(1);
    verifyChecksums(got.slice(14));
    expect(got.slice(0, 14)).toEqual(eth(B.mac, ROUTER));
    expect(Array.from(got.slice(14 + 12, 14 + 20))).toEqual([10, 244, 1, 1, 10, 244, 1, 11]);
    const icmp = got.slice(34);
    expect([icmp[0], icmp[1]]).toEqual([11, 0]);
    const quoted = icmp.slice(8);
    expect(csum(quoted.slice(0, 20))).toBe(0);
    // Quoted IP header and the first 8 bytes of TCP (ports, seq) as sent.
    expect(quoted.slice(0, 20)).toEqual(sent.slice(0, 20));
    expect(quoted.slice(20, 28)).toEqual(sent.slice(20, 28));
  });
});

describe('fragments', () => {
  it('are neither NATed nor tracked: a first fragment to the VIP is routed as is', () => {
    const first = ipv4(B.ip, VIP, 17, udp(B.ip, VIP, 5000, 53, new Uint8Array(32)), { mf: true, id: 0x7777 });
    const got = one(portB, cat(eth(ROUTER, B.mac), first), HOST_PORT);
    expect(got).toEqual(cat(eth(HOST, ROUTER), ipv4(B.ip, VIP, 17, udp(B.ip, VIP, 5000, 53, new Uint8Array(32)), { mf: true, id: 0x7777, ttl: 63 })));
    const later = ipv4(B.ip, VIP, 17, new Uint8Array(24).fill(0x5a), { fragOff: 40, id: 0x7777 });
    const got2 = one(portB, cat(eth(ROUTER, B.mac), later), HOST_PORT);
    expect(got2).toEqual(cat(eth(HOST, ROUTER), ipv4(B.ip, VIP, 17, new Uint8Array(24).fill(0x5a), { fragOff: 40, id: 0x7777, ttl: 63 })));
    expect(ct.size).toBe(0);
    expect(Array.from(svc.selections[svc.indexOf('default/web:53/UDP')])).toEqual([0, 0]);
    expect(totalDrops()).toBe(0);
  });
});
