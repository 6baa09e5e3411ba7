/** Unit tests for the hot-path tables: U32Map, the bridge FDB (learning, aging) and the route table. */
import { describe, it, expect } from 'vitest';
import { U32Map } from '../../src/tables/u32map.ts';
import { Fdb } from '../../src/tables/fdb.ts';
import { RouteTable, Route } from '../../src/tables/routes.ts';
import { ipToU32 as ip } from '../../src/control/addressing.ts';

function rng(seed: number) {
  return () => { seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0); };
}

describe('U32Map', () => {
  it('agrees with a Map under random inserts and deletes (backward-shift deletion keeps lookups right)', () => {
    const m = new U32Map(2000), ref = new Map<number, number>(), r = rng(7);
    for (let i = 0; i < 50_000; i++) {
      const k = r() % 3000, op = r() % 3;
      if (op < 2) { if (m.set(k, i)) ref.set(k, i); else expect(ref.size).toBeGreaterThanOrEqual(Math.floor(m.capacity * 3 / 4)); }
      else { expect(m.delete(k)).toBe(ref.delete(k)); }
      if (i % 1000 === 0) for (let q = 0; q < 3000; q++) expect(m.get(q)).toBe(ref.has(q) ? ref.get(q) : -1);
    }
    expect(m.size).toBe(ref.size);
  });
  it('handles keys above 2^31 and refuses to fill past 3/4', () => {
    const m = new U32Map(4);
    expect(m.set(0xfffffffe, 1)).toBe(true);
    expect(m.get(0xfffffffe)).toBe(1);
    expect(m.get(0x7ffffffe)).toBe(-1);
    let n = 1;
    while (m.set(n, n)) n++;
    expect(m.size).toBe(Math.floor(m.capacity * 3 / 4));
  });
});

describe('Fdb', () => {
  it('learns, forwards, moves a MAC to its new port, and ages entries out', () => {
    const f = new Fdb(64, 300_000);
    f.learn(0x0a58, 0x0af4010a, 3, 1000);
    expect(f.lookup(0x0a58, 0x0af4010a, 2000)).toBe(3);
    expect(f.lookup(0x0a58, 0x0af4010b, 2000)).toBe(-1);
    f.learn(0x0a58, 0x0af4010a, 5, 3000);
    expect(f.lookup(0x0a58, 0x0af4010a, 3000)).toBe(5);
    expect(f.lookup(0x0a58, 0x0af4010a, 3000 + 300_001)).toBe(-1);
    expect(f.sweep(3000 + 300_001)).toBe(1);
    expect(f.size).toBe(0);
  });
  it('flushes a detached port and stops learning when full, counting it', () => {
    const f = new Fdb(8);
    for (let i = 0; i < 100; i++) f.learn(0x0200, i, i % 3, 0);
    expect(f.size).toBe(Math.floor(f.capacity * 3 / 4));
    expect(f.learnFailures).toBe(100 - f.size);
    const onPort1 = f.entries(0).filter((e) => e.port === 1).length;
    expect(f.flushPort(1)).toBe(onPort1);
    expect(f.entries(0).every((e) => e.port !== 1)).toBe(true);
    for (const e of f.entries(0)) expect(f.lookup(e.hi, e.lo, 0)).toBe(e.port);
  });
});

describe('RouteTable', () => {
  const t = new RouteTable(ip('10.244.1.0'), 24, ip('10.244.0.0'), 16);
  t.upsertNode({ name: 'node1', podNet: ip('10.244.1.0'), prefixLen: 24, underlayIp: ip('192.168.56.11'), vtepMacHi: 0x0e77, vtepMacLo: ip('192.168.56.11'), self: true });
  t.upsertNode({ name: 'node2', podNet: ip('10.244.2.0'), prefixLen: 24, underlayIp: ip('192.168.56.12'), vtepMacHi: 0x0e77, vtepMacLo: ip('192.168.56.12'), self: false });
  t.setLocalPod(ip('10.244.1.10'), 7);

  it('routes each kind of destination as the header table says', () => {
    expect(t.lookup(ip('10.244.1.1'))).toBe(Route.Gateway);
    expect(t.lookup(ip('10.244.1.10'))).toBe(Route.LocalPod);
    expect(t.resultPort).toBe(7);
    expect(t.lookup(ip('10.244.1.11'))).toBe(Route.HostUnreachable);
    expect(t.lookup(ip('10.244.2.5'))).toBe(Route.RemoteNode);
    expect(t.nodes[t.resultNode]!.name).toBe('node2');
    expect(t.lookup(ip('192.168.56.12'))).toBe(Route.RemoteNode);
    expect(t.lookup(ip('192.168.56.11'))).toBe(Route.Host);
    expect(t.lookup(ip('10.244.3.5'))).toBe(Route.NetUnreachable);
    expect(t.lookup(ip('8.8.8.8'))).toBe(Route.Host);
  });
  it('applies node removal and re-adding without touching the others', () => {
    t.upsertNode({ name: 'node3', podNet: ip('10.244.3.0'), prefixLen: 24, underlayIp: ip('192.168.56.13'), vtepMacHi: 0x0e77, vtepMacLo: 1, self: false });
    expect(t.lookup(ip('10.244.3.5'))).toBe(Route.RemoteNode);
    t.removeNode('node2');
    expect(t.lookup(ip('10.244.2.5'))).toBe(Route.NetUnreachable);
    expect(t.nodeByUnderlay.get(ip('192.168.56.12'))).toBe(-1);
    expect(t.lookup(ip('10.244.3.5'))).toBe(Route.RemoteNode);
    t.upsertNode({ name: 'node3', podNet: ip('10.244.3.0'), prefixLen: 24, underlayIp: ip('192.168.56.23'), vtepMacHi: 0x0e77, vtepMacLo: 2, self: false });
    expect(t.lookup(ip('10.244.3.5'))).toBe(Route.RemoteNode);
    expect(t.nodeUnderlay[t.resultNode]).toBe(ip('192.168.56.23'));
    expect(t.nodeByUnderlay.get(ip('192.168.56.13'))).toBe(-1);
  });
});
