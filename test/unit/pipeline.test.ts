/**
 * The data plane pipeline without any device: frames are written into the slab by hand, one batch
 * is processed, and the TxQueue (what would be written to each port) and the drop counters are
 * checked byte for byte. Frames are built here with an independent checksum, not with src/wire.
 */
import { describe, it, expect, beforeEach } from 'vitest';
import { FrameSlab, TxQueue } from '../../src/frame/slab.ts';
import { hex, mac, csum, cat, eth, ipv4, icmpEcho, udp, arp, testNode, ROUTER, HOST, NODE2_VTEP, A, B } from './frames.ts';
import { HOST_PORT, OVERLAY_PORT } from '../../src/tables/ports.ts';
import { Counters } from '../../src/dataplane/counters.ts';
import { Dataplane } from '../../src/dataplane/pipeline.ts';
import { Drop, DROP_COUNT } from '../../src/wire/drop.ts';
import { ipToU32 as ip } from '../../src/control/addressing.ts';

const udpPlain = (sport: number, dport: number, data: Uint8Array) => udp('0.0.0.0', '0.0.0.0', sport, dport, data);
let dp: Dataplane, slab: FrameSlab, tx: TxQueue, counters: Counters;
let portA = 0, portB = 0;

beforeEach(() => {
  ({ dp, slab, tx, counters, portA, portB } = testNode());
});

/** Run frames from `port` (or the overlay when `fromUnderlay` is given) and return what was queued. */
function run(port: number, frames: Uint8Array[], fromUnderlay?: string) {
  slab.reset();
  frames.forEach((f, i) => { slab.u8.set(f, slab.frameOffset(i)); slab.lens[i] = f.length; if (fromUnderlay) slab.srcAddrs[i] = ip(fromUnderlay); });
  tx.clear();
  if (fromUnderlay) dp.processOverlayBatch(slab, frames.length, tx, 1000);
  else dp.processTapBatch(slab, port, frames.length, tx, 1000);
  const out: { port: number; bytes: Uint8Array; dst: number }[] = [];
  for (let i = 0; i < tx.count; i++) out.push({ port: tx.port[i], bytes: slab.u8.slice(tx.off[i], tx.off[i] + tx.len[i]), dst: tx.dstAddr[i] });
  return out;
}
const drops = (reason: number) => counters.drops[reason];

describe('ARP and the gateway', () => {
  it('answers ARP for the gateway in place with the router MAC (byte-exact)', () => {
    const out = run(portA, [cat(eth('ff:ff:ff:ff:ff:ff', A.mac, 0x0806), arp(1, A.mac, A.ip, '00:00:00:00:00:00', '10.244.1.1'))]);
    expect(out).toHaveLength(1);
    expect(out[0].port).toBe(portA);
    expect(out[0].bytes).toEqual(cat(eth(A.mac, ROUTER, 0x0806), arp(2, ROUTER, '10.244.1.1', A.mac, A.ip)));
  });
  it('answers the node kernel\'s ARP for the gateway on the host port', () => {
    const out = run(HOST_PORT, [cat(eth('ff:ff:ff:ff:ff:ff', HOST, 0x0806), arp(1, HOST, '192.168.56.11', '00:00:00:00:00:00', '10.244.1.1'))]);
    expect(out.map((o) => o.port)).toEqual([HOST_PORT]);
    expect(out[0].bytes).toEqual(cat(eth(HOST, ROUTER, 0x0806), arp(2, ROUTER, '10.244.1.1', HOST, '192.168.56.11')));
  });
  it('answers ping of the gateway (echo reply, checksums valid)', () => {
    const req = cat(eth(ROUTER, A.mac, 0x0800), ipv4(A.ip, '10.244.1.1', 1, icmpEcho(8, 7, 1, hex('deadbeef'))));
    const out = run(portA, [req]);
    expect(out).toHaveLength(1);
    const reply = cat(eth(A.mac, ROUTER, 0x0800), ipv4('10.244.1.1', A.ip, 1, icmpEcho(0, 7, 1, hex('deadbeef')), { id: 0x1234 }));
    expect(out[0].bytes).toEqual(reply);
  });
});

describe('the bridge', () => {
  it('floods a broadcast to every other pod, then forwards learned unicast to one port', () => {
    const who = cat(eth('ff:ff:ff:ff:ff:ff', A.mac, 0x0806), arp(1, A.mac, A.ip, '00:00:00:00:00:00', B.ip));
    expect(run(portA, [who]).map((o) => o.port)).toEqual([portB]);
    const reply = cat(eth(A.mac, B.mac, 0x0806), arp(2, B.mac, B.ip, A.mac, A.ip));
    const out = run(portB, [reply]);
    expect(out.map((o) => o.port)).toEqual([portA]);
    expect(out[0].bytes).toEqual(reply);
    const data = cat(eth(B.mac, A.mac, 0x0800), ipv4(A.ip, B.ip, 17, udpPlain(1000, 53, hex('01'))));
    const fwd = run(portA, [data]);
    expect(fwd).toHaveLength(1);
    expect(fwd[0].port).toBe(portB);
    expect(fwd[0].bytes).toEqual(data);   // bridged frames are not modified
  });
});

describe('anti-spoofing', () => {
  it('drops a frame whose source MAC is not the pod\'s', () => {
    expect(run(portA, [cat(eth(ROUTER, '02:00:00:00:00:01', 0x0800), ipv4(A.ip, B.ip, 17, udpPlain(1, 2, hex('00'))))])).toHaveLength(0);
    expect(drops(Drop.SpoofedSrcMac)).toBe(1);
    expect(counters.portDrops[portA * DROP_COUNT + Drop.SpoofedSrcMac]).toBe(1);
  });
  it('drops a packet whose source IP is not the pod\'s', () => {
    expect(run(portA, [cat(eth(ROUTER, A.mac, 0x0800), ipv4(B.ip, '10.244.2.5', 17, udpPlain(1, 2, hex('00'))))])).toHaveLength(0);
    expect(drops(Drop.SpoofedSrcIp)).toBe(1);
  });
  it('ignores ARP claiming another pod\'s address', () => {
    expect(run(portA, [cat(eth('ff:ff:ff:ff:ff:ff', A.mac, 0x0806), arp(2, A.mac, B.ip, 'ff:ff:ff:ff:ff:ff', B.ip))])).toHaveLength(0);
    expect(drops(Drop.SpoofedArp)).toBe(1);
  });
});

describe('routing', () => {
  it('encapsulates traffic for another node\'s CIDR in VXLAN (RFC 7348), byte-exact but for the source port', () => {
    const inner = ipv4(A.ip, '10.244.2.5', 17, udpPlain(40000, 53, hex('68656c6c6f')));
    const out = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), inner)]);
    expect(out).toHaveLength(1);
    expect(out[0].port).toBe(OVERLAY_PORT);
    expect(out[0].dst).toBe(ip('192.168.56.12'));
    const b = out[0].bytes, dv = new DataView(b.buffer);
    const innerFrameLen = 14 + inner.length;
    // outer IPv4: 45 00 len | id 0 DF | ttl 64 udp csum 0 | src | dst
    expect(Array.from(b.slice(0, 12))).toEqual([0x45, 0, (36 + innerFrameLen) >> 8, (36 + innerFrameLen) & 0xff, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    expect(Array.from(b.slice(12, 20))).toEqual([192, 168, 56, 11, 192, 168, 56, 12]);
    const sport = dv.getUint16(20);
    expect(sport).toBeGreaterThanOrEqual(32768); expect(sport).toBeLessThan(61000);
    expect(dv.getUint16(22)).toBe(4789);
    expect(dv.getUint16(24)).toBe(16 + innerFrameLen);
    expect(dv.getUint16(26)).toBe(0);
    expect(Array.from(b.slice(28, 36))).toEqual([0x08, 0, 0, 0, 0, 0, 1, 0]);
    // inner frame: to node2's VTEP MAC from ours, TTL 63, header checksum still valid
    const routed = ipv4(A.ip, '10.244.2.5', 17, udpPlain(40000, 53, hex('68656c6c6f')), { ttl: 63 });
    expect(b.slice(36)).toEqual(cat(eth(NODE2_VTEP, ROUTER, 0x0800), routed));
    // the same flow always gets the same source port; another flow very likely another
    const again = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), inner)]);
    expect(new DataView(again[0].bytes.buffer).getUint16(20)).toBe(sport);
  });

  it('decapsulates VXLAN from a member to the local pod (MACs rewritten, TTL-1)', () => {
    const inner = cat(eth(ROUTER, NODE2_VTEP, 0x0800), ipv4('10.244.2.5', A.ip, 17, udpPlain(53, 40000, hex('6869'))));
    const out = run(OVERLAY_PORT, [cat(hex('0800000000000100'), inner)], '192.168.56.12');
    expect(out).toHaveLength(1);
    expect(out[0].port).toBe(portA);
    expect(out[0].bytes).toEqual(cat(eth(A.mac, ROUTER, 0x0800), ipv4('10.244.2.5', A.ip, 17, udpPlain(53, 40000, hex('6869')), { ttl: 63 })));
  });

  it('drops VXLAN from a non-member, with a wrong VNI, bad flags, or for another VTEP MAC', () => {
    const inner = cat(eth(ROUTER, NODE2_VTEP, 0x0800), ipv4('10.244.2.5', A.ip, 17, udpPlain(53, 40000, hex('6869'))));
    expect(run(OVERLAY_PORT, [cat(hex('0800000000000100'), inner)], '192.168.56.99')).toHaveLength(0);
    expect(run(OVERLAY_PORT, [cat(hex('0800000000000200'), inner)], '192.168.56.12')).toHaveLength(0);
    expect(run(OVERLAY_PORT, [cat(hex('0000000000000100'), inner)], '192.168.56.12')).toHaveLength(0);
    const wrongMac = cat(eth('0e:77:00:00:00:01', NODE2_VTEP, 0x0800), inner.slice(14));
    expect(run(OVERLAY_PORT, [cat(hex('0800000000000100'), wrongMac)], '192.168.56.12')).toHaveLength(0);
    expect([drops(Drop.VxlanUnknownPeer), drops(Drop.VxlanBadVni), drops(Drop.VxlanBadFlags), drops(Drop.VxlanBadInnerMac)]).toEqual([1, 1, 1, 1]);
  });

  it('sends ICMP time exceeded for TTL 1, quoting the original header', () => {
    const pkt = ipv4(A.ip, '10.244.2.5', 17, udpPlain(40000, 53, hex('00')), { ttl: 1 });
    const out = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), pkt)]);
    expect(drops(Drop.TtlExceeded)).toBe(1);
    expect(out).toHaveLength(1);
    expect(out[0].port).toBe(portA);
    const b = out[0].bytes;
    expect(b.slice(0, 14)).toEqual(eth(A.mac, ROUTER, 0x0800));
    const icmp = b.slice(34);
    expect(icmp[0]).toBe(11); expect(icmp[1]).toBe(0);
    expect(csum(icmp)).toBe(0);
    expect(csum(b.slice(14, 34))).toBe(0);
    expect(Array.from(b.slice(26, 34))).toEqual([10, 244, 1, 1, 10, 244, 1, 10]);
    expect(icmp.slice(8)).toEqual(pkt);
  });

  it('answers an oversize DF packet for the overlay with fragmentation-needed carrying MTU 1450', () => {
    const big = ipv4(A.ip, '10.244.2.5', 17, udpPlain(1, 2, new Uint8Array(1460)), { df: true });
    const out = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), big)]);
    expect(drops(Drop.FragNeeded)).toBe(1);
    expect(out).toHaveLength(1);
    const icmp = out[0].bytes.slice(34);
    expect([icmp[0], icmp[1]]).toEqual([3, 4]);
    expect((icmp[6] << 8) | icmp[7]).toBe(1450);
    expect(csum(icmp)).toBe(0);
  });

  it('answers an unroutable cluster address with net unreachable and a missing local pod with host unreachable', () => {
    const o1 = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), ipv4(A.ip, '10.244.9.9', 17, udpPlain(1, 2, hex('00'))))]);
    expect(o1[0].bytes[34]).toBe(3); expect(o1[0].bytes[35]).toBe(0);
    const o2 = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), ipv4(A.ip, '10.244.1.99', 17, udpPlain(1, 2, hex('00'))))]);
    expect(o2[0].bytes[34]).toBe(3); expect(o2[0].bytes[35]).toBe(1);
    expect([drops(Drop.NoRoute), drops(Drop.HostUnreachable)]).toEqual([1, 1]);
  });

  it('sends traffic for the node\'s own address, or outside the cluster, to the host port', () => {
    const out = run(portA, [cat(eth(ROUTER, A.mac, 0x0800), ipv4(A.ip, '192.168.56.11', 17, udpPlain(1, 2, hex('00'))))]);
    expect(out.map((o) => o.port)).toEqual([HOST_PORT]);
    expect(out[0].bytes.slice(0, 12)).toEqual(cat(mac(HOST), mac(ROUTER)));
  });

  it('never throws on random bytes from any port, and counts every frame', () => {
    let seed = 1;
    const r = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 24;
    for (let round = 0; round < 300; round++) {
      const frames = Array.from({ length: 32 }, () => {
        const f = Uint8Array.from({ length: r() % 200 }, r);
        if (f.length > 14 && r() % 2) { f.set(mac(A.mac), 6); f[12] = 8; f[13] = r() % 2 ? 0 : 6; }
        return f;
      });
      expect(() => run(round % 3 === 0 ? OVERLAY_PORT : portA, frames, round % 3 === 0 ? '192.168.56.12' : undefined)).not.toThrow();
    }
  });
});
