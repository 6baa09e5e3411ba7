/**
 * Classification cost must not grow with the cluster: counted in table probes (reads of the
 * compiled tables, `CompiledPolicy.probes`), not in time, so the test is exact and not flaky.
 *
 * Two clusters are built from one recipe, a small one (10 policies, 20 pods) and a large one
 * (1000 policies, 2000 pods, 100x the identities, 256 ipBlocks with excepts). Half the policies
 * select every pod, so the large cluster's tables for the pods under test hold a hundred times
 * more rules, ports and remote classes. The same packets (same pods, ports and outside
 * addresses, chosen to take the same path through both: the same LPM depth, the same port-set
 * depth) must cost exactly the same number of probes in both, and never more than the bound
 * the design promises.
 */
import { describe, it, expect } from 'vitest';
import { compilePolicies, policyAllowed, updatePolicies } from '../../src/policy/compiler.ts';
import { referenceVerdict } from '../../src/policy/reference.ts';
import type { ClusterView, PolicyPacket, PolicyPod } from '../../src/policy/model.ts';
import { ip, policy, rule, sel, tcp, udp } from './helpers.ts';

const NODE1 = ip('192.168.56.11'), NODE2 = ip('192.168.56.12');

function recipe(policies: number, pods: number, identities: number): ClusterView {
  const podList: PolicyPod[] = [];
  for (let k = 0; k < pods; k++) {
    podList.push({
      namespace: 'app', name: `p${k}`, labels: { group: `g${k % 10}`, idx: String(k % identities) },
      ip: (ip('10.244.0.0') + 256 + k) >>> 0, nodeIp: k % 2 === 0 ? NODE1 : NODE2,
      ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }],
    });
  }
  const pols = [];
  for (let i = 0; i < policies; i++) {
    const o = i % 256;
    pols.push(policy('app', `pol${String(i).padStart(4, '0')}`, {
      // Even policies select every pod; odd ones only groups g2-g9, so tables differ by group
      // while the pods under test (g0, g1) see only even policies in both clusters.
      podSelector: i % 2 === 0 ? sel() : sel({ group: `g${2 + (i % 8)}` }), policyTypes: ['Ingress', 'Egress'],
      ingress: [rule([{ podSelector: sel({ group: `g${i % 10}` }) }, { ipBlock: { cidr: `172.16.${o}.0/24`, except: [`172.16.${o}.128/25`] } }], [tcp(1000 + i)])],
      egress: [rule([{ namespaceSelector: sel(), podSelector: sel({ group: `g${(i + 1) % 10}` }) }], [tcp(1000 + i), udp('dns')])],
    }));
  }
  return { namespaces: new Map([['app', {}]]), pods: podList, policies: pols, nodeIps: [NODE1, NODE2] };
}

const P0 = ip('10.244.1.0'), P1 = ip('10.244.1.1');   // pods p0 (group g0) and p1 (group g1)
const PACKETS: [string, PolicyPacket][] = [
  ['pod → pod, both sides allowed (policy 0)', { src: P0, dst: P1, proto: 6, dport: 1000 }],
  ['pod → pod, both sides denied, port beside an allowed one', { src: P0, dst: P1, proto: 6, dport: 1002 }],
  ['pod → pod, named port (dns) egress allowed, ingress denied', { src: P0, dst: P1, proto: 17, dport: 53 }],
  ['pod → pod, port in no rule', { src: P0, dst: P1, proto: 6, dport: 999 }],
  ['pod → pod, far port (uniform port-set block)', { src: P0, dst: P1, proto: 6, dport: 40000 }],
  ['outside (in an ipBlock) → pod', { src: ip('172.16.4.5'), dst: P1, proto: 6, dport: 1004 }],
  ['outside (in an except) → pod', { src: ip('172.16.4.200'), dst: P1, proto: 6, dport: 1004 }],
  ['outside (no ipBlock) → pod', { src: ip('8.8.8.8'), dst: P1, proto: 6, dport: 1004 }],
  ['pod → outside', { src: P0, dst: ip('172.16.6.1'), proto: 6, dport: 1006 }],
  ['node → pod', { src: NODE2, dst: P1, proto: 6, dport: 1 }],
  ['pod → itself', { src: P0, dst: P0, proto: 6, dport: 1 }],
  ['ICMP pod → pod', { src: P0, dst: P1, proto: 1, dport: 0 }],
];

/** The most reads one classify can do: 2 ipcache + per side (isolation + LPM 4 + 2 tables + 2 × 3 port reads). */
const MAX_PROBES = 2 + 2 * (1 + 4 + 2 + 2 * 3);

describe('classification cost does not grow with pods or policies', () => {
  const small = recipe(10, 20, 10), large = recipe(1000, 2000, 1000);
  const cs = compilePolicies(small), cl = compilePolicies(large);

  it('the large cluster really is larger', () => {
    const s = cs.stats(), l = cl.stats();
    if (process.env.POLICY_STATS) console.log({ small: s, large: l });
    expect(l.identities).toBeGreaterThanOrEqual(100 * s.identities);
    expect(l.rules).toBe(100 * s.rules);
    expect(l.cidrClasses).toBeGreaterThan(20 * s.cidrClasses);
    expect(l.tables).toBe(10);  // per direction: {g0,g1,g2,g4,g6,g8} share one; g3, g5, g7, g9 one each
    expect(l.tableEntries).toBeGreaterThan(30 * s.tableEntries);
  });

  for (const [what, pkt] of PACKETS) {
    it(`same probes, same verdict: ${what}`, () => {
      const before = [cs.probes, cl.probes];
      const a = cs.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport);
      const b = cl.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport);
      const ps = cs.probes - before[0], pl = cl.probes - before[1];
      expect(pl).toBe(ps);
      expect(ps).toBeLessThanOrEqual(MAX_PROBES);
      expect(policyAllowed(b)).toBe(policyAllowed(a));
      expect(b).toBe(a);
      // And both are right.
      expect(policyAllowed(a)).toBe(referenceVerdict(small, pkt).allowed);
      expect(policyAllowed(b)).toBe(referenceVerdict(large, pkt).allowed);
    });
  }

  it('an incrementally updated instance costs exactly what a full compile of its view does', () => {
    // Scale out (ipcache-only), then add a policy that sorts first (partial, every rule renumbered).
    const scaled = { ...large, pods: [...large.pods, { ...large.pods[7], name: 'scaled', ip: ip('10.244.200.1') }] };
    const edited = { ...scaled, policies: [policy('app', 'aaa', { podSelector: sel({ group: 'g3' }), ingress: [rule([], [tcp(80)])] }), ...scaled.policies] };
    const u1 = updatePolicies(cl, large, scaled), u2 = updatePolicies(u1, scaled, edited);
    expect([u1.lastUpdateKind, u2.lastUpdateKind]).toEqual(['ipcache-only', 'partial']);
    const full = compilePolicies(edited);
    for (const [, pkt] of [...PACKETS, ['to the new pod', { ...PACKETS[0][1], dst: ip('10.244.200.1') }] as const]) {
      const b0 = u2.probes, f0 = full.probes;
      expect(u2.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport)).toBe(full.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport));
      expect(u2.probes - b0).toBe(full.probes - f0);
    }
  });

  it('no packet, anywhere in the large cluster, exceeds the bound', () => {
    let seed = 12345;
    const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
    const ends = [...large.pods.slice(0, 50).map((p) => p.ip), NODE1, NODE2, ip('172.16.9.9'), ip('172.16.9.200'), ip('1.2.3.4')];
    for (let n = 0; n < 2000; n++) {
      const src = ends[next() % ends.length], dst = ends[next() % ends.length];
      const before = cl.probes;
      cl.classify(src, dst, [1, 6, 17, 132][next() % 4], next() % 65536);
      expect(cl.probes - before).toBeLessThanOrEqual(MAX_PROBES);
    }
  });
});
