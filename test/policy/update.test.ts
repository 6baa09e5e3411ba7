/**
 * `updatePolicies`: the cheap paths are taken for the changes they exist for, what they share
 * with the previous instance is really shared (the same table objects), the previous instance
 * keeps answering as before, and every answer is a full compile's and the reference's.
 * (Random sequences of changes are in differential.test.ts.)
 */
import { describe, it, expect } from 'vitest';
import type { ClusterView, PolicyPacket, PolicyPod } from '../../src/policy/model.ts';
import { compilePolicies, updatePolicies, PolicyCompileError, type CompiledPolicy } from '../../src/policy/compiler.ts';
import { ip, judgeCompiled, judgeReference, pod, policy, rule, sel, tcp, udp, view } from './helpers.ts';

const N1 = '192.168.56.11', N2 = '192.168.56.12';
const http = (n: number) => [{ name: 'http', containerPort: n, protocol: 'TCP' as const }];

/** Two namespaces, three Deployments, a default-deny and a few allows (one with an ipBlock). */
function base(): ClusterView {
  return view({ prod: { env: 'prod' }, dev: { env: 'dev' } }, [
    pod('prod', 'web-1', { app: 'web' }, '10.244.1.10', N1, http(8080)),
    pod('prod', 'web-2', { app: 'web' }, '10.244.2.10', N2, http(8080)),
    pod('prod', 'api-1', { app: 'api' }, '10.244.1.20', N1, http(9090)),
    pod('prod', 'api-2', { app: 'api' }, '10.244.2.20', N2, http(9090)),
    pod('prod', 'db-1', { app: 'db' }, '10.244.1.30', N1),
    pod('dev', 'tool-1', { app: 'tool' }, '10.244.2.40', N2),
  ], [
    policy('prod', 'default-deny', { policyTypes: ['Ingress', 'Egress'] }),
    policy('prod', 'web-to-api', { podSelector: sel({ app: 'api' }), ingress: [rule([{ podSelector: sel({ app: 'web' }) }], [tcp('http')])] }),
    policy('prod', 'web-egress', {
      podSelector: sel({ app: 'web' }), policyTypes: ['Egress'],
      egress: [rule([{ podSelector: sel({ app: 'api' }) }], [tcp('http')]), rule([{ ipBlock: { cidr: '8.8.8.0/24', except: [] } }], [udp(53)])],
    }),
    policy('prod', 'api-to-db', {
      podSelector: sel({ app: 'db' }), ingress: [rule([{ podSelector: sel({ app: 'api' }) }, { namespaceSelector: sel({ env: 'dev' }) }], [tcp(5432)])],
    }),
    policy('prod', 'api-egress', { podSelector: sel({ app: 'api' }), policyTypes: ['Egress'], egress: [rule([{ podSelector: sel({ app: 'db' }) }], [tcp(5432)])] }),
  ]);
}

/** Packets between every two ends (pods, a node, an outside address) on the ports that matter. */
function packets(v: ClusterView, extra: number[] = []): PolicyPacket[] {
  const ends = [...v.pods.map((p) => p.ip), ...extra, ip(N1), ip('8.8.8.8'), ip('1.1.1.1')];
  const out: PolicyPacket[] = [];
  for (const src of ends) for (const dst of ends) {
    for (const [proto, dport] of [[6, 8080], [6, 9090], [6, 5432], [17, 53], [1, 0]]) out.push({ src, dst, proto, dport });
  }
  return out;
}

/** `c` answers every packet as compilePolicies(v) and the reference evaluator do. */
function expectExact(c: CompiledPolicy, v: ClusterView, extra: number[] = []): void {
  const full = compilePolicies(v);
  for (const pkt of packets(v, extra)) {
    const got = judgeCompiled(c, pkt);
    expect(got).toEqual(judgeCompiled(full, pkt));
    expect(got).toEqual(judgeReference(v, pkt));
  }
}

function answers(c: CompiledPolicy, pkts: PolicyPacket[]): string[] {
  return pkts.map((p) => JSON.stringify(judgeCompiled(c, p)));
}

const podNamed = (v: ClusterView, name: string): PolicyPod => v.pods.find((p) => p.name === name)!;

describe('updatePolicies takes the cheap path for the common changes', () => {
  it('scaling a Deployment out and in: ipcache-only, every table and the port sets shared', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    expect(c0.lastUpdateKind).toBe('full');
    const v1 = { ...v0, pods: [...v0.pods, pod('prod', 'api-3', { app: 'api' }, '10.244.1.21', N1, http(9090))] };
    const c1 = updatePolicies(c0, v0, v1);
    expect(c1.lastUpdateKind).toBe('ipcache-only');
    expect(c1.update.rebuiltTables).toBe(0);
    expect(c1.sharing(c0)).toEqual({ tables: c0.stats().tables, sharedTables: c0.stats().tables, sharedPortSets: true });
    expectExact(c1, v1);
    // The new replica is already under the default-deny and the allows of its Deployment.
    expect(judgeCompiled(c1, { src: ip('10.244.2.40'), dst: ip('10.244.1.21'), proto: 6, dport: 9090 }).allowed).toBe(false);
    expect(judgeCompiled(c1, { src: ip('10.244.1.10'), dst: ip('10.244.1.21'), proto: 6, dport: 9090 }).allowed).toBe(true);

    const v2 = { ...v1, pods: v1.pods.filter((p) => p.name !== 'web-2') };
    const c2 = updatePolicies(c1, v1, v2);
    expect(c2.lastUpdateKind).toBe('ipcache-only');
    expect(c2.sharing(c0).sharedTables).toBe(c0.stats().tables);
    expectExact(c2, v2, [ip('10.244.2.10')]);
    expect(judgeCompiled(c2, { src: ip('10.244.2.10'), dst: ip('10.244.1.20'), proto: 6, dport: 9090 }).egress).toBe('n/a');
  });

  it('a pod readdressed, moved to another node, or relabelled onto an existing identity: ipcache-only', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const moved = { ...v0, pods: v0.pods.map((p) => (p.name === 'web-1' ? { ...p, ip: ip('10.244.2.11'), nodeIp: ip(N2) } : p)) };
    const c1 = updatePolicies(c0, v0, moved);
    expect(c1.lastUpdateKind).toBe('ipcache-only');
    expectExact(c1, moved, [ip('10.244.1.10')]);
    // api-2 becomes a web pod: web's numbering of "http" differs (8080), so its identity is
    // web's only when its ports say so; with them it is.
    const relabelled = { ...v0, pods: v0.pods.map((p) => (p.name === 'api-2' ? { ...p, labels: { app: 'web' }, ports: http(8080) } : p)) };
    const c2 = updatePolicies(c0, v0, relabelled);
    expect(c2.lastUpdateKind).toBe('ipcache-only');
    expectExact(c2, relabelled);
  });

  it('a rollout (new pod-template-hash): new identities, tables shared, remote classes borrowed', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    // The web and api pods are replaced by pods of a new ReplicaSet: labels no pod had, that no
    // selector tells from the old ones.
    const v1 = {
      ...v0, pods: v0.pods.map((p) => (p.labels.app === 'web' || p.labels.app === 'api'
        ? { ...p, name: p.name + '-b', ip: p.ip + 100, labels: { ...p.labels, 'pod-template-hash': 'b' } } : p)),
    };
    const c1 = updatePolicies(c0, v0, v1);
    expect(c1.lastUpdateKind).toBe('partial');
    expect(c1.update.rebuiltTables).toBe(0);
    expect(c1.stats().identities).toBe(c0.stats().identities + 2);
    expect(c1.stats().remoteClasses).toBe(c0.stats().remoteClasses);
    const s = c1.sharing(c0);
    expect(s).toEqual({ tables: c0.stats().tables, sharedTables: c0.stats().tables, sharedPortSets: true });
    expectExact(c1, v1, v0.pods.map((p) => p.ip));
    // A policy that tells the new ReplicaSet from the old one: the borrowed classes must split.
    const v2 = { ...v1, policies: [...v1.policies, policy('prod', 'canary', { podSelector: sel({ app: 'db' }), ingress: [rule([{ podSelector: sel({ 'pod-template-hash': 'b' }) }], [tcp(6000)])] })] };
    const c2 = updatePolicies(c1, v1, v2);
    expect(c2.lastUpdateKind).toBe('full');
    expect(c2.update.fallbackReason).toMatch(/share a remote class/);
    expectExact(c2, v2);
    // One that does not: still partial.
    const v3 = { ...v1, policies: [...v1.policies, policy('prod', 'canary', { podSelector: sel({ app: 'db' }), ingress: [rule([{ podSelector: sel({ app: 'web' }) }], [tcp(6000)])] })] };
    const c3 = updatePolicies(c1, v1, v3);
    expect(c3.lastUpdateKind).toBe('partial');
    expectExact(c3, v3);
  });

  it('a pod moving into a CIDR class its identity never had borrows a remote class, and a later policy that tells them apart splits it', () => {
    // tool2-1 sits in 8.8.8.0/24 (web-egress's ipBlock); nothing tells app=tool from app=tool2.
    const v0 = { ...base(), pods: [...base().pods, pod('dev', 'tool2-1', { app: 'tool2' }, '8.8.8.20', N2)] };
    const c0 = compilePolicies(v0);
    const v1 = { ...v0, pods: v0.pods.map((p) => (p.name === 'tool-1' ? { ...p, ip: ip('8.8.8.21') } : p)) };
    const c1 = updatePolicies(c0, v0, v1);
    expect(c1.lastUpdateKind).toBe('ipcache-only');
    expectExact(c1, v1, [ip('10.244.2.40')]);
    const v2 = { ...v1, policies: [...v1.policies, policy('dev', 'from-tool2', { podSelector: sel({ app: 'tool' }), ingress: [rule([{ podSelector: sel({ app: 'tool2' }) }])] })] };
    const c2 = updatePolicies(c1, v1, v2);
    expect(c2.update.fallbackReason).toMatch(/share a remote class/);
    expectExact(c2, v2);
    // Once no pod uses the borrowed class, it constrains nothing: the same policy is partial.
    const v3 = { ...v1, pods: v1.pods.filter((p) => p.name !== 'tool-1') };
    const c3 = updatePolicies(c1, v1, v3);
    expect(c3.lastUpdateKind).toBe('ipcache-only');
    const c4 = updatePolicies(c3, v3, { ...v3, policies: v2.policies });
    expect(c4.lastUpdateKind).toBe('partial');
    expectExact(c4, { ...v3, policies: v2.policies }, [ip('8.8.8.21')]);
  });

  it('editing one policy: partial, only the tables of the pods it selects are rebuilt', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const v1 = {
      ...v0, policies: v0.policies.map((p) => (p.name !== 'api-to-db' ? p
        : policy('prod', 'api-to-db', { podSelector: sel({ app: 'db' }), ingress: [rule([{ podSelector: sel({ app: 'api' }) }], [tcp(5432), tcp(5433)])] }))),
    };
    const c1 = updatePolicies(c0, v0, v1);
    expect(c1.lastUpdateKind).toBe('partial');
    // db's ingress table, and nothing else.
    expect(c1.update.rebuiltTables).toBe(1);
    const s = c1.sharing(c0);
    expect(s.sharedTables).toBe(s.tables - 1);
    expectExact(c1, v1);
    expect(judgeCompiled(c1, { src: ip('10.244.2.40'), dst: ip('10.244.1.30'), proto: 6, dport: 5432 }).allowed).toBe(false);
  });

  it('adding a policy that sorts first renumbers every rule: partial, reported rules as a full compile', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const v1 = { ...v0, policies: [...v0.policies, policy('prod', 'aaa-monitoring', { podSelector: sel({ app: 'db' }), ingress: [rule([{ namespaceSelector: sel({ env: 'dev' }) }], [tcp(9187)])] })] };
    const c1 = updatePolicies(c0, v0, v1);
    expect(c1.lastUpdateKind).toBe('partial');
    const s = c1.sharing(c0);
    expect(s.sharedPortSets).toBe(false);   // renumbered copy
    expect(s.sharedTables).toBe(s.tables - 1);
    expect(c1.ruleInfo(0)).toEqual({ namespace: 'prod', name: 'aaa-monitoring', direction: 'Ingress', ruleIndex: 0 });
    expectExact(c1, v1);
    // And deleting it again.
    const c2 = updatePolicies(c1, v1, v0);
    expect(c2.lastUpdateKind).toBe('partial');
    expectExact(c2, v0);
  });

  it('a policy whose content is unchanged (metadata labels, a copied object) changes nothing', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const v1 = { ...v0, policies: v0.policies.map((p) => ({ ...p, labels: { touched: 'yes' }, ingress: structuredClone(p.ingress) })) };
    const c1 = updatePolicies(c0, v0, v1);
    expect(c1.lastUpdateKind).toBe('ipcache-only');
    expect(c1.sharing(c0).sharedPortSets).toBe(true);
  });

  it('namespace labels: a label no namespaceSelector tells apart is cheap, one that changes a match is not', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const harmless = { ...v0, namespaces: new Map([...v0.namespaces, ['dev', { env: 'dev', owner: 'me' }]]) };
    const c1 = updatePolicies(c0, v0, harmless);
    expect(c1.lastUpdateKind).toBe('ipcache-only');
    expectExact(c1, harmless);
    const meaningful = { ...v0, namespaces: new Map([...v0.namespaces, ['dev', { env: 'staging' }]]) };
    const c2 = updatePolicies(c1, harmless, meaningful);
    expect(c2.lastUpdateKind).toBe('full');
    expect(c2.update.fallbackReason).toMatch(/namespaceSelector/);
    expectExact(c2, meaningful);
  });

  it('falls back to a full compile, and says why, for what it does not do incrementally', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const cases: [string, ClusterView, RegExp][] = [
      // Selected by no peer, unlike every pod of prod (db is api's peer): no remote class fits.
      ['a pod with labels no pod had', { ...v0, pods: [...v0.pods, pod('prod', 'cache-1', { app: 'cache' }, '10.244.1.50', N1)] }, /new remote class/],
      ['a pod whose named port is numbered anew', { ...v0, pods: v0.pods.map((p) => (p.name === 'api-1' ? { ...p, ports: http(9091) } : p)) }, /new remote class/],
      ['a pod whose named port changes protocol', { ...v0, pods: v0.pods.map((p) => (p.name === 'api-1' ? { ...p, ports: [{ name: 'http', containerPort: 9090, protocol: 'UDP' as const }] } : p)) }, /new remote class/],
      ['the first pod of a namespace', { ...v0, pods: [...v0.pods, pod('ops', 'o-1', {}, '10.244.1.51', N1)] }, /first of its namespace/],
      ['a pod moving into an ipBlock', { ...v0, pods: v0.pods.map((p) => (p.name === 'db-1' ? { ...p, ip: ip('8.8.8.9') } : p)) }, /new remote class/],
      ['a new ipBlock', { ...v0, policies: [...v0.policies, policy('prod', 'x', { policyTypes: ['Egress'], egress: [rule([{ ipBlock: { cidr: '1.1.1.0/24', except: [] } }])] })] }, /ipBlock/],
      ['a named port no policy named', { ...v0, policies: [...v0.policies, policy('prod', 'x', { ingress: [rule([], [tcp('metrics')])] })] }, /named port "metrics"/],
    ];
    for (const [what, v, reason] of cases) {
      const c = updatePolicies(c0, v0, v);
      expect(c.lastUpdateKind, what).toBe('full');
      expect(c.update.fallbackReason, what).toMatch(reason);
      expectExact(c, v, [ip('10.244.1.30')]);
    }
    // An ipBlock some policy already has is no new CIDR class: partial.
    const known = { ...v0, policies: [...v0.policies, policy('prod', 'x', { podSelector: sel({ app: 'db' }), policyTypes: ['Egress'], egress: [rule([{ ipBlock: { cidr: '8.8.8.0/24', except: [] } }])] })] };
    const c = updatePolicies(c0, v0, known);
    expect(c.lastUpdateKind).toBe('partial');
    expectExact(c, known);
  });
});

describe('updatePolicies never disturbs the instance it starts from', () => {
  it('prev classifies exactly as before after updates from it, branching ones included', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const pkts = packets(v0, [ip('10.244.1.21'), ip('10.244.1.50')]);
    const before = answers(c0, pkts);
    const stats = c0.stats();
    const v1 = { ...v0, pods: [...v0.pods, pod('prod', 'api-3', { app: 'api' }, '10.244.1.21', N1, http(9090))] };
    const v2 = { ...v1, policies: v1.policies.filter((p) => p.name !== 'default-deny') };
    const v3 = { ...v2, policies: [...v2.policies, policy('prod', 'aaa', { podSelector: sel({ app: 'web' }), ingress: [rule()] })] };
    const c1 = updatePolicies(c0, v0, v1);
    const c2 = updatePolicies(c1, v1, v2);
    const c3 = updatePolicies(c2, v2, v3);
    // Branch off the first instance again, with a different change.
    const b1 = updatePolicies(c0, v0, v3);
    const b2 = updatePolicies(c1, v1, { ...v1, policies: v1.policies.slice(1) });
    expect([c1, c2, c3].map((c) => c.lastUpdateKind)).toEqual(['ipcache-only', 'partial', 'partial']);
    expect(answers(c0, pkts)).toEqual(before);
    expect(c0.stats()).toEqual(stats);
    expectExact(c3, v3); expectExact(b1, v3); expectExact(b2, { ...v1, policies: v1.policies.slice(1) });
    // And the intermediate ones still answer for their own views.
    expectExact(c1, v1); expectExact(c2, v2);
  });

  it('a change that does not compile throws what compilePolicies throws, and leaves prev as it was', () => {
    const v0 = base();
    const c0 = compilePolicies(v0);
    const pkts = packets(v0);
    const before = answers(c0, pkts);
    const badPolicy = { ...v0, policies: [...v0.policies, policy('prod', 'bad', { ingress: [rule([{ ipBlock: { cidr: '10.0.0.0/33', except: [] } }])] })] };
    const dupIp = { ...v0, pods: [...v0.pods, pod('prod', 'web-3', { app: 'web' }, '10.244.1.10', N1, http(8080))] };
    const onNode = { ...v0, pods: [...v0.pods, pod('prod', 'web-3', { app: 'web' }, N2, N1, http(8080))] };
    for (const v of [badPolicy, dupIp, onNode]) {
      let want = '';
      try { compilePolicies(v); } catch (e) { want = (e as Error).message; }
      expect(want).not.toBe('');
      expect(() => updatePolicies(c0, v0, v)).toThrow(PolicyCompileError);
      expect(() => updatePolicies(c0, v0, v)).toThrow(want);
    }
    expect(answers(c0, pkts)).toEqual(before);
    expect(updatePolicies(c0, v0, podsPlus(v0)).lastUpdateKind).toBe('ipcache-only');
  });
});

function podsPlus(v: ClusterView): ClusterView {
  const web = podNamed(v, 'web-1');
  return { ...v, pods: [...v.pods, { ...web, name: 'web-9', ip: ip('10.244.1.19') }] };
}
