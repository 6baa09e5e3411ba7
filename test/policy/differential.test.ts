/**
 * Differential test: the compiled tables against the reference evaluator on seeded random
 * clusters and packets (OVS's test-classifier.c compares its classifier with `tcls` the same way).
 *
 * Each cluster has a few namespaces with random labels, pods with random labels, addresses and
 * (named) container ports, and 0-8 policies drawing on every feature: pod/namespace selectors
 * alone and together, matchExpressions, ipBlocks with excepts (some covering pod addresses),
 * numeric/ranged/named ports over TCP/UDP/SCTP, empty lists, every policyTypes combination
 * (including rules for a direction the policy does not list). Packets come from pods, nodes and
 * the outside, to ports near the interesting numbers. Every packet must get the same verdict,
 * the same deciding kind per direction and the same (lowest) allowing rule from both.
 *
 * A failure prints the seed, the packet and the compiled explanation; rerun one cluster with
 * `SEED=<n> npx vitest run test/policy/differential.test.ts`.
 *
 * The second part does the same for `updatePolicies`: random sequences of changes (pods added,
 * removed, readdressed, relabelled, recreated with other ports; namespaces relabelled; policies
 * added, edited, deleted), each applied to the previous result, and after every step the updated
 * tables must answer every packet as a full compile of the new view does (verdict, sides, rule,
 * the one-direction entry point, explain's readable parts) and as the reference evaluator does;
 * the previous instance must still answer as it did before the step. Each path (ipcache-only,
 * partial, full) must be taken many times by the changes it exists for. SEED=<n> replays one
 * sequence; SEQUENCES=<n> runs more; DEBUG_KINDS=1 prints which change took which path and why
 * updates fell back.
 */
import { describe, it, expect } from 'vitest';
import { selectorMatches, type LabelSelector, type NetworkPolicyObj, type NetworkPolicyPeer, type NetworkPolicyPort, type NetworkPolicyRule } from '../../src/control/manifests.ts';
import { u32ToIp } from '../../src/control/addressing.ts';
import type { ClusterView, PolicyPacket, PolicyPod, PolicyPodPort } from '../../src/policy/model.ts';
import { compilePolicies, egressSide, ingressSide, PolicyDir, updatePolicies, type CompiledPolicy } from '../../src/policy/compiler.ts';
import { ip, judgeCompiled, judgeReference } from './helpers.ts';

/** A small, fast, seedable PRNG (mulberry32). */
function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick: <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)],
  };
}
type Rng = ReturnType<typeof rng>;

const NS_NAMES = ['alpha', 'beta', 'gamma', 'delta'];
const NS_LABELS: Record<string, string[]> = { env: ['prod', 'dev'], team: ['x', 'y'], tier: ['1', '2'] };
const POD_LABELS: Record<string, string[]> = { app: ['web', 'db', 'api'], role: ['client', 'server'], tier: ['front', 'back'] };
const PORT_NAMES = ['http', 'dns', 'metrics', 'grpc'];
const PORT_NUMBERS = [53, 80, 443, 5432, 8080, 9090, 30000, 30005, 30010, 255, 256, 511, 512, 65535, 1];
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;
const NODES = ['192.168.56.11', '192.168.56.12', '192.168.56.13'].map(ip);
/** Areas addresses are drawn from, so ipBlocks, pods and packets meet often. */
const AREAS = [ip('10.244.1.0'), ip('10.244.2.0'), ip('172.17.0.0'), ip('8.8.8.0'), ip('192.168.56.0'), ip('10.0.0.0')];

function randomLabels(r: Rng, pool: Record<string, string[]>, p: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, vs] of Object.entries(pool)) if (r.chance(p)) out[k] = r.pick(vs);
  return out;
}

function randomSelector(r: Rng, pool: Record<string, string[]>): LabelSelector {
  const matchLabels: Record<string, string> = {};
  // Mostly 0 or 1 label: selectors that select something keep the rules busy.
  const n = r.pick([0, 1, 1, 1, 2]);
  for (let i = 0; i < n; i++) { const k = r.pick(Object.keys(pool)); matchLabels[k] = r.pick(pool[k]); }
  const matchExpressions: LabelSelector['matchExpressions'] = [];
  if (r.chance(0.3)) {
    const key = r.pick(Object.keys(pool)), op = r.pick(['In', 'NotIn', 'Exists', 'DoesNotExist'] as const);
    const values = op === 'In' || op === 'NotIn' ? [...new Set([r.pick(pool[key]), r.pick(pool[key])])] : [];
    matchExpressions.push({ key, operator: op, values });
  }
  return { matchLabels, matchExpressions };
}

/** An address in one of the areas (mostly near its start), or anywhere. */
function randomAddress(r: Rng): number {
  if (r.chance(0.1)) return (r.int(0x10000) * 0x10000 + r.int(0x10000)) >>> 0;
  return (r.pick(AREAS) + (r.chance(0.8) ? r.int(64) : r.int(0x10000))) >>> 0;
}

function mask(len: number): number { return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0; }
function cidrText(net: number, len: number): string { return `${u32ToIp(net)}/${len}`; }

function randomIpBlock(r: Rng, pods: PolicyPod[]): NetworkPolicyPeer['ipBlock'] {
  const base = pods.length > 0 && r.chance(0.4) ? r.pick(pods).ip : randomAddress(r);
  const len = r.chance(0.7) ? r.pick([0, 8, 16, 20, 24, 26, 28, 30, 31, 32]) : r.int(33);
  const net = (base & mask(len)) >>> 0;
  const except: string[] = [];
  const n = len < 32 ? r.int(3) : 0;
  for (let i = 0; i < n; i++) {
    const elen = len + 1 + r.int(32 - len);
    const inside = r.chance(0.5) && pods.length > 0 ? r.pick(pods).ip : randomAddress(r);
    // Keep the except strictly inside the cidr: take the cidr's bits and `inside`'s low bits.
    const addr = ((net & mask(len)) | (inside & ~mask(len))) >>> 0;
    except.push(cidrText((addr & mask(elen)) >>> 0, elen));
  }
  return { cidr: cidrText(net, len), except };
}

function randomPeer(r: Rng, pods: PolicyPod[]): NetworkPolicyPeer {
  const kind = r.int(4);
  if (kind === 0) return { podSelector: randomSelector(r, POD_LABELS) };
  if (kind === 1) return { namespaceSelector: randomSelector(r, NS_LABELS) };
  if (kind === 2) return { podSelector: randomSelector(r, POD_LABELS), namespaceSelector: randomSelector(r, NS_LABELS) };
  return { ipBlock: randomIpBlock(r, pods) };
}

function randomPort(r: Rng): NetworkPolicyPort {
  const protocol = r.chance(0.6) ? 'TCP' : r.pick(PROTOCOLS);
  const k = r.next();
  if (k < 0.15) return { protocol };
  if (k < 0.55) return { protocol, port: r.pick(PORT_NUMBERS) };
  if (k < 0.75) {
    const port = r.pick(PORT_NUMBERS);
    return { protocol, port, endPort: Math.min(65535, port + r.pick([0, 1, 10, 255, 300, 1000])) };
  }
  return { protocol, port: r.pick(PORT_NAMES) };
}

function randomRule(r: Rng, pods: PolicyPod[]): NetworkPolicyRule {
  const peers = r.chance(0.25) ? [] : Array.from({ length: 1 + r.int(3) }, () => randomPeer(r, pods));
  const ports = r.chance(0.3) ? [] : Array.from({ length: 1 + r.int(3) }, () => randomPort(r));
  return { peers, ports };
}

function randomCluster(seed: number): ClusterView {
  const r = rng(seed);
  const namespaces = new Map<string, Record<string, string>>();
  const nsCount = 2 + r.int(3);
  for (const n of NS_NAMES.slice(0, nsCount)) namespaces.set(n, randomLabels(r, NS_LABELS, 0.5));
  const pods: PolicyPod[] = [];
  const used = new Set<number>();
  const podCount = 3 + r.int(10);
  for (let i = 0; i < podCount; i++) {
    let addr: number;
    do { addr = (r.pick(AREAS.slice(0, 2)) + 2 + r.int(40)) >>> 0; } while (used.has(addr));
    used.add(addr);
    const ports: PolicyPodPort[] = [];
    const np = r.int(4);
    for (let k = 0; k < np; k++) {
      ports.push({ name: r.chance(0.75) ? r.pick(PORT_NAMES) : undefined, containerPort: r.pick(PORT_NUMBERS), protocol: r.chance(0.6) ? 'TCP' : r.pick(PROTOCOLS) });
    }
    // Now and then a pod in a namespace the map does not list.
    const namespace = r.chance(0.05) ? 'unlisted' : r.pick([...namespaces.keys()]);
    pods.push({ namespace, name: `p${i}`, labels: randomLabels(r, POD_LABELS, 0.5), ip: addr, nodeIp: r.pick(NODES), ports });
  }
  const policies: NetworkPolicyObj[] = [];
  const polCount = r.int(9);
  for (let i = 0; i < polCount; i++) {
    const ingress = Array.from({ length: r.int(4) }, () => randomRule(r, pods));
    const egress = Array.from({ length: r.int(4) }, () => randomRule(r, pods));
    const t = r.int(4);
    const policyTypes: NetworkPolicyObj['policyTypes'] =
      t === 0 ? (egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress']) : t === 1 ? ['Ingress'] : t === 2 ? ['Egress'] : ['Ingress', 'Egress'];
    policies.push({
      kind: 'NetworkPolicy', name: `pol${i}`, namespace: r.chance(0.9) ? r.pick([...namespaces.keys()]) : 'unlisted', labels: {},
      podSelector: r.chance(0.3) ? { matchLabels: {}, matchExpressions: [] } : randomSelector(r, POD_LABELS), policyTypes, ingress, egress,
    });
  }
  return { namespaces, pods, policies, nodeIps: NODES };
}

/**
 * Half the packets are aimed at a random rule: one end in the policy's namespace, the other
 * where one of the rule's peers points, the port one of the rule's (a range end ±1, or the
 * number a named port has on some pod). Random packets alone rarely reach the corners.
 */
function randomPacket(r: Rng, v: ClusterView): PolicyPacket {
  if (v.policies.length > 0 && r.chance(0.5)) {
    const aimed = aimedPacket(r, v);
    if (aimed) return aimed;
  }
  return undirectedPacket(r, v);
}

function aimedPacket(r: Rng, v: ClusterView): PolicyPacket | undefined {
  const pol = r.pick(v.policies);
  const egress = r.chance(0.5);
  const rules = egress ? pol.egress : pol.ingress;
  const inNs = v.pods.filter((p) => p.namespace === pol.namespace);
  const selected = inNs.filter((p) => selectorMatches(pol.podSelector, p.labels));
  const locals = selected.length > 0 && r.chance(0.9) ? selected : inNs;
  if (rules.length === 0 || locals.length === 0) return undefined;
  const rl = r.pick(rules);
  const local = r.pick(locals);
  let remote: number;
  const peer = rl.peers.length > 0 ? r.pick(rl.peers) : undefined;
  if (peer?.ipBlock) {
    const [net, len] = peer.ipBlock.cidr.split('/');
    const inBlock = v.pods.filter((p) => ((p.ip & mask(Number(len))) >>> 0) === ip(net));
    remote = inBlock.length > 0 && r.chance(0.5) ? r.pick(inBlock).ip
      : ((ip(net) & mask(Number(len))) | (randomAddress(r) & ~mask(Number(len)))) >>> 0;
  } else {
    remote = r.chance(0.85) ? r.pick(v.pods).ip : r.chance(0.5) ? r.pick(NODES) : randomAddress(r);
  }
  const dstIp = egress ? remote : local.ip;
  const dstPod = v.pods.find((p) => p.ip === dstIp);
  let proto = r.pick([6, 17, 132]), dport = r.int(65536);
  if (rl.ports.length > 0) {
    const p = r.pick(rl.ports);
    proto = p.protocol === 'TCP' ? 6 : p.protocol === 'UDP' ? 17 : 132;
    if (typeof p.port === 'number') dport = r.pick([p.port, p.endPort ?? p.port]) + r.pick([0, 0, -1, 1]);
    else if (typeof p.port === 'string') {
      // The number the name has on the destination, or on another pod (the sender, say), where
      // it must not count unless the destination numbers it alike.
      const has = (q: PolicyPod | undefined) => !!q && q.ports.some((cp) => cp.name === p.port && cp.protocol === p.protocol);
      const others = v.pods.filter(has);
      const owner = has(dstPod) && r.chance(0.6) ? dstPod! : has(local) && r.chance(0.5) ? local : others.length > 0 ? r.pick(others) : undefined;
      const named = owner ? owner.ports.filter((cp) => cp.name === p.port && cp.protocol === p.protocol) : [];
      dport = named.length > 0 ? r.pick(named).containerPort : r.pick(interestingPorts(v));
    }
  }
  if (r.chance(0.1)) proto = r.pick([6, 17, 132, 1]);
  const src = egress ? local.ip : remote, dst = egress ? remote : local.ip;
  return { src, dst, proto, dport: Math.max(0, Math.min(65535, dport)) };
}

function undirectedPacket(r: Rng, v: ClusterView): PolicyPacket {
  const end = () => {
    const k = r.next();
    if (k < 0.6 && v.pods.length > 0) return r.pick(v.pods).ip;
    if (k < 0.75) return r.pick(NODES);
    return randomAddress(r);
  };
  const src = end();
  const dst = r.chance(0.03) ? src : end();
  const proto = r.chance(0.05) ? 1 : r.pick([6, 6, 17, 132]);
  // Aim at the numbers that matter: the destination pod's own container ports (named ports
  // resolve to them), and every port and endPort some policy writes, with their neighbours.
  const dstPod = v.pods.find((p) => p.ip === dst);
  const k = r.next();
  let dport: number;
  // For a non-pod destination, some pod's numbers: a named port must never match there.
  const numbered = dstPod ? dstPod : r.pick(v.pods.length > 0 ? v.pods : [undefined]);
  if (k < 0.35 && numbered && numbered.ports.length > 0) dport = r.pick(numbered.ports).containerPort;
  else if (k < 0.85) dport = r.pick(interestingPorts(v)) + r.pick([0, 0, 0, -1, 1]);
  else dport = r.int(65536);
  return { src, dst, proto, dport: Math.max(0, Math.min(65535, dport)) };
}

const interestingCache = new WeakMap<ClusterView, number[]>();
function interestingPorts(v: ClusterView): number[] {
  let out = interestingCache.get(v);
  if (!out) {
    const set = new Set<number>();
    for (const pol of v.policies) for (const rl of [...pol.ingress, ...pol.egress]) for (const p of rl.ports) {
      if (typeof p.port === 'number') set.add(p.port);
      if (p.endPort !== undefined) set.add(p.endPort);
    }
    for (const pod of v.pods) for (const cp of pod.ports) set.add(cp.containerPort);
    out = set.size > 0 ? [...set] : [...PORT_NUMBERS];
    interestingCache.set(v, out);
  }
  return out;
}

const CLUSTERS = 200, PACKETS = 50;

describe('compiled tables agree with the reference evaluator', () => {
  it(`${CLUSTERS} random clusters × ${PACKETS} packets`, () => {
    const only = process.env.SEED ? [Number(process.env.SEED)] : Array.from({ length: CLUSTERS }, (_, i) => 1000 + i);
    const seen = new Map<string, number>();
    let cases = 0;
    for (const seed of only) {
      const v = randomCluster(seed);
      const c = compilePolicies(v);
      const r = rng(seed * 7919);
      for (let n = 0; n < PACKETS; n++) {
        const pkt = randomPacket(r, v);
        const want = judgeReference(v, pkt);
        const got = judgeCompiled(c, pkt);
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          throw new Error(`seed ${seed}, packet ${n}: ${JSON.stringify(c.explain(pkt), null, 1)}\n` +
            `reference: ${JSON.stringify(want)}\ncompiled:  ${JSON.stringify(got)}\ncluster: ${JSON.stringify({ ...v, namespaces: [...v.namespaces] })}`);
        }
        // The one-direction entry point must say the same as classify for each side.
        const code = c.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport);
        const eRule = c.lastEgressRule, iRule = c.lastIngressRule;
        expect(c.classifyDirection(PolicyDir.Egress, pkt.src, pkt.dst, pkt.proto, pkt.dport)).toBe(egressSide(code));
        expect(c.lastEgressRule).toBe(eRule);
        expect(c.classifyDirection(PolicyDir.Ingress, pkt.dst, pkt.src, pkt.proto, pkt.dport)).toBe(ingressSide(code));
        expect(c.lastIngressRule).toBe(iRule);
        for (const side of [want.egress, want.ingress]) {
          const kind = side.startsWith('allowed by') ? 'allowed' : side;
          seen.set(kind, (seen.get(kind) ?? 0) + 1);
        }
        seen.set(want.allowed ? 'packet allowed' : 'packet denied', (seen.get(want.allowed ? 'packet allowed' : 'packet denied') ?? 0) + 1);
        cases++;
      }
    }
    expect(cases).toBe(only.length * PACKETS);
    // The generator must actually exercise every outcome, or agreement means little.
    if (!process.env.SEED) {
      for (const k of ['allowed', 'denied', 'not-isolated', 'n/a', 'own-node', 'self']) expect(seen.get(k) ?? 0, k).toBeGreaterThan(20);
      expect(seen.get('packet denied')!).toBeGreaterThan(cases / 10);
      expect(seen.get('packet allowed')!).toBeGreaterThan(cases / 10);
    }
  });

  it('named ports, ipBlocks and endPort ranges decide many of the allowed packets', () => {
    // Coverage of the features that are easiest to get subtly wrong: count packets whose
    // deciding rule has a named port, an ipBlock peer, or a range, over the same clusters.
    const features = { named: 0, ipBlock: 0, range: 0 };
    for (let seed = 1000; seed < 1000 + CLUSTERS; seed++) {
      const v = randomCluster(seed);
      const c = compilePolicies(v);
      const r = rng(seed * 7919);
      for (let n = 0; n < PACKETS; n++) {
        const pkt = randomPacket(r, v);
        c.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport);
        for (const id of [c.lastEgressRule, c.lastIngressRule]) {
          if (id < 0) continue;
          const info = c.ruleInfo(id);
          const pol = v.policies.find((p) => p.namespace === info.namespace && p.name === info.name)!;
          const rl = (info.direction === 'Ingress' ? pol.ingress : pol.egress)[info.ruleIndex];
          if (rl.ports.some((p) => typeof p.port === 'string')) features.named++;
          if (rl.peers.some((p) => p.ipBlock)) features.ipBlock++;
          if (rl.ports.some((p) => p.endPort !== undefined && p.endPort > (p.port as number))) features.range++;
        }
      }
    }
    expect(features.named).toBeGreaterThan(20);
    expect(features.ipBlock).toBeGreaterThan(20);
    expect(features.range).toBeGreaterThan(20);
  });
});

// ------------------------------------------------------------------------------------------------
// Incremental updates: random sequences of changes applied with updatePolicies.
// ------------------------------------------------------------------------------------------------

/** An address no pod of `pods` has, in the pods' areas (mostly near `near`, so CIDR classes repeat). */
function freeAddress(r: Rng, pods: PolicyPod[], near?: number): number {
  const used = new Set(pods.map((p) => p.ip));
  for (;;) {
    const addr = near !== undefined && r.chance(0.7) ? ((near & 0xffffff00) + 2 + r.int(60)) >>> 0 : (r.pick(AREAS.slice(0, 2)) + 2 + r.int(60)) >>> 0;
    if (!used.has(addr)) return addr;
  }
}

/** Counter for new pod and policy names; reset per sequence so that SEED=<n> replays one exactly. */
let fresh = 0;

/** A policy made of rules other policies already have (so the ipBlocks are known ones), or a new one. */
function remixPolicy(r: Rng, v: ClusterView, name: string, namespace: string): NetworkPolicyObj {
  const pool = v.policies.flatMap((p) => [...p.ingress, ...p.egress]);
  const pickRule = () => (pool.length > 0 && r.chance(0.8) ? r.pick(pool) : { peers: r.chance(0.5) ? [] : [randomPeer(r, v.pods)].filter((p) => !p.ipBlock), ports: [randomPort(r)] });
  const ingress = Array.from({ length: r.int(3) }, pickRule);
  const egress = Array.from({ length: r.int(3) }, pickRule);
  const t = r.int(3);
  return {
    kind: 'NetworkPolicy', name, namespace, labels: {},
    podSelector: r.chance(0.3) ? { matchLabels: {}, matchExpressions: [] } : randomSelector(r, POD_LABELS),
    policyTypes: t === 0 ? ['Ingress'] : t === 1 ? ['Egress'] : ['Ingress', 'Egress'], ingress, egress,
  };
}

/**
 * One random change to a view, as a new view (the old one is left as it is). Weighted towards
 * the changes the incremental paths handle, but every kind of change occurs.
 */
function mutate(r: Rng, v: ClusterView): { view: ClusterView; what: string; focus?: PolicyPod } {
  const pods = v.pods, policies = v.policies;
  const k = r.int(14);
  if ((k <= 1 || pods.length === 0) && pods.length < 30) {
    // Scale out: a copy of a pod (same namespace, labels, ports), or a brand-new pod.
    const like = pods.length > 0 && r.chance(0.75) ? r.pick(pods) : undefined;
    const pod: PolicyPod = like
      ? { ...like, name: `x${fresh++}`, ip: freeAddress(r, pods, like.ip), nodeIp: r.pick(NODES) }
      : { namespace: r.pick([...v.namespaces.keys()]), name: `x${fresh++}`, labels: randomLabels(r, POD_LABELS, 0.5), ip: freeAddress(r, pods), nodeIp: r.pick(NODES), ports: [] };
    return { view: { ...v, pods: [...pods, pod] }, what: like ? 'scale out' : 'new pod', focus: pod };
  }
  if (k === 2 && pods.length > 1) {
    const gone = r.pick(pods);
    return { view: { ...v, pods: pods.filter((p) => p !== gone) }, what: 'delete pod' };
  }
  if (k === 3 && pods.length > 0) {
    const moved = r.pick(pods);
    const now = { ...moved, ip: freeAddress(r, pods, moved.ip), nodeIp: r.pick(NODES) };
    return { view: { ...v, pods: pods.map((p) => (p === moved ? now : p)) }, what: 'readdress pod', focus: now };
  }
  if (k === 4 && pods.length > 0) {
    // Relabel: often onto the labels of another pod of the namespace (an identity that exists).
    const pod = r.pick(pods);
    const same = pods.filter((p) => p.namespace === pod.namespace);
    const labels = r.chance(0.6) ? { ...r.pick(same).labels } : randomLabels(r, POD_LABELS, 0.5);
    const now = { ...pod, labels };
    return { view: { ...v, pods: pods.map((p) => (p === pod ? now : p)) }, what: 'relabel pod', focus: now };
  }
  if (k === 12 && pods.length > 0) {
    // Recreate a pod under the same name with one container port renumbered or re-protocolled
    // (ports are immutable, but a pod deleted and created again may differ in anything).
    const pod = r.pick(pods);
    const ports = pod.ports.length === 0 ? [{ name: r.pick(PORT_NAMES), containerPort: r.pick(PORT_NUMBERS), protocol: 'TCP' as const }]
      : pod.ports.map((cp, n) => (n > 0 ? cp : r.chance(0.5) ? { ...cp, protocol: r.pick(PROTOCOLS) } : { ...cp, containerPort: r.pick(PORT_NUMBERS) }));
    const now = { ...pod, ports };
    return { view: { ...v, pods: pods.map((p) => (p === pod ? now : p)) }, what: 'recreate pod', focus: now };
  }
  if (k === 5) {
    // Relabel a namespace: sometimes with a label no selector looks at.
    const ns = r.pick([...v.namespaces.keys()]);
    const namespaces = new Map(v.namespaces);
    namespaces.set(ns, r.chance(0.5) ? { ...v.namespaces.get(ns), note: `n${r.int(5)}` } : randomLabels(r, NS_LABELS, 0.5));
    return { view: { ...v, namespaces }, what: 'relabel namespace' };
  }
  if ((k === 6 || k === 7) && policies.length < 12) {
    // A new policy, named so that it sorts among the others (rule ids after it move).
    const ns = r.chance(0.9) ? r.pick([...v.namespaces.keys()]) : 'unlisted';
    const name = `pol${r.int(10)}-${fresh++}`;
    const p = r.chance(0.7) ? remixPolicy(r, v, name, ns) : randomClusterPolicy(r, v, name, ns);
    return { view: { ...v, policies: [...policies, p] }, what: 'add policy' };
  }
  if ((k === 8 || k === 9 || k === 10) && policies.length > 0) {
    // Edit a policy: its ports, its podSelector, or all of it.
    const old = r.pick(policies);
    const e = r.int(3);
    let p: NetworkPolicyObj;
    if (e === 0) {
      const edit = (rules: NetworkPolicyRule[]) => rules.map((rl) => (r.chance(0.5) ? { ...rl, ports: r.chance(0.3) ? [] : [randomPort(r)] } : rl));
      p = { ...old, ingress: edit(old.ingress), egress: edit(old.egress) };
    } else if (e === 1) p = { ...old, podSelector: randomSelector(r, POD_LABELS) };
    else p = remixPolicy(r, v, old.name, old.namespace);
    return { view: { ...v, policies: policies.map((q) => (q === old ? p : q)) }, what: 'edit policy' };
  }
  if (k === 11 && policies.length > 0) {
    const gone = r.pick(policies);
    return { view: { ...v, policies: policies.filter((p) => p !== gone) }, what: 'delete policy' };
  }
  // Nothing but a new node list order: the cheapest update of all.
  return { view: { ...v, nodeIps: [...v.nodeIps].reverse() }, what: 'no-op' };
}

/** A fresh random policy (as randomCluster makes them), with new ipBlocks likely. */
function randomClusterPolicy(r: Rng, v: ClusterView, name: string, namespace: string): NetworkPolicyObj {
  const ingress = Array.from({ length: r.int(3) }, () => randomRule(r, v.pods));
  const egress = Array.from({ length: r.int(3) }, () => randomRule(r, v.pods));
  return {
    kind: 'NetworkPolicy', name, namespace, labels: {}, podSelector: randomSelector(r, POD_LABELS),
    policyTypes: egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress'], ingress, egress,
  };
}

/** Everything a packet's answer consists of, the explanation's readable parts included. */
function fullAnswer(c: CompiledPolicy, pkt: PolicyPacket): string {
  const j = judgeCompiled(c, pkt);
  const ex = c.explain(pkt);
  const end = (e: typeof ex.source) => [e.kind, e.pod, e.labels, e.ipBlocks];
  const e = c.classifyDirection(PolicyDir.Egress, pkt.src, pkt.dst, pkt.proto, pkt.dport), er = c.lastEgressRule;
  const i = c.classifyDirection(PolicyDir.Ingress, pkt.dst, pkt.src, pkt.proto, pkt.dport), ir = c.lastIngressRule;
  return JSON.stringify([j, ex.egress, ex.ingress, end(ex.source), end(ex.destination), e, er < 0 ? -1 : c.ruleInfo(er), i, ir < 0 ? -1 : c.ruleInfo(ir)]);
}

const SEQUENCES = Number(process.env.SEQUENCES ?? 60), STEPS = 30, STEP_PACKETS = 30;

describe('incremental updates agree with a full compile and with the reference evaluator', () => {
  it(`${SEQUENCES} random sequences × ${STEPS} changes × ${STEP_PACKETS} packets`, () => {
    const only = process.env.SEED ? [Number(process.env.SEED)] : Array.from({ length: SEQUENCES }, (_, i) => 5000 + i);
    const kinds = new Map<string, number>();
    const whatKinds = new Map<string, number>();
    const reasons = new Map<string, number>();
    let checked = 0;
    for (const seed of only) {
      fresh = 0;
      const r = rng(seed * 104729);
      let view = randomCluster(seed);
      let compiled = compilePolicies(view);
      // An older (view, compiled) pair, to update from again later: branching off an old
      // instance must work as well as updating the newest one.
      let older = { view, compiled };
      for (let step = 0; step < STEPS; step++) {
        const { view: next, what, focus } = mutate(r, view);
        const packets = Array.from({ length: STEP_PACKETS }, () => randomPacket(r, r.chance(0.5) ? next : view));
        if (focus) {
          // A third of them to or from the pod that changed, at its own ports and the policies'.
          for (let n = 0; n < STEP_PACKETS / 3; n++) {
            const other = r.chance(0.8) ? r.pick(next.pods).ip : r.chance(0.5) ? r.pick(NODES) : randomAddress(r);
            const dport = focus.ports.length > 0 && r.chance(0.6) ? r.pick(focus.ports).containerPort : r.pick(interestingPorts(next));
            const proto = r.pick([6, 6, 17, 132]);
            packets[n] = r.chance(0.6) ? { src: other, dst: focus.ip, proto, dport } : { src: focus.ip, dst: other, proto, dport };
          }
        }
        const before = packets.map((pkt) => fullAnswer(compiled, pkt));
        let upd: CompiledPolicy;
        try {
          upd = updatePolicies(compiled, view, next);
        } catch (e) {
          // The only errors a valid-looking change can cause must be compilePolicies' own.
          expect(() => compilePolicies(next)).toThrow((e as Error).message);
          continue;
        }
        const full = compilePolicies(next);
        const key = `${what} → ${upd.lastUpdateKind}`;
        whatKinds.set(key, (whatKinds.get(key) ?? 0) + 1);
        kinds.set(upd.lastUpdateKind, (kinds.get(upd.lastUpdateKind) ?? 0) + 1);
        const why = (upd.update.fallbackReason ?? '').replace(/pod \S+|named port "\S+"|namespace \S+'s/, 'X');
        if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
        packets.forEach((pkt, n) => {
          const got = fullAnswer(upd, pkt), want = fullAnswer(full, pkt);
          const ref = judgeReference(next, pkt);
          if (got !== want || JSON.stringify(judgeCompiled(upd, pkt)) !== JSON.stringify(ref)) {
            throw new Error(`seed ${seed}, step ${step} (${what}, ${upd.lastUpdateKind}${upd.update.fallbackReason ? ': ' + upd.update.fallbackReason : ''}), packet ${n}:\n`
              + `updated:   ${got}\nfull:      ${want}\nreference: ${JSON.stringify(ref)}\n${JSON.stringify(upd.explain(pkt), null, 1)}`);
          }
          // The previous instance still answers exactly as it did before the update.
          expect(fullAnswer(compiled, pkt), `seed ${seed}, step ${step}: prev changed by the update`).toBe(before[n]);
          checked++;
        });
        // From an older instance too (skipping the changes in between).
        if (r.chance(0.3)) {
          const again = updatePolicies(older.compiled, older.view, next);
          for (const pkt of packets.slice(0, 10)) expect(fullAnswer(again, pkt)).toBe(fullAnswer(full, pkt));
        }
        if (r.chance(0.2)) older = { view, compiled };
        view = next;
        compiled = upd;
      }
    }
    if (process.env.DEBUG_KINDS) console.log(JSON.stringify([...whatKinds].sort(), null, 1), JSON.stringify([...reasons].sort((a, b) => b[1] - a[1]), null, 1));
    if (!process.env.SEED) {
      // Each path must really be exercised, by the changes it exists for.
      expect(checked).toBeGreaterThan(SEQUENCES * STEPS * STEP_PACKETS * 0.9);
      for (const k of ['full', 'partial', 'ipcache-only']) expect(kinds.get(k) ?? 0, `${k}: ${JSON.stringify([...whatKinds])}`).toBeGreaterThan(100);
      for (const k of ['scale out → ipcache-only', 'delete pod → ipcache-only', 'relabel pod → ipcache-only', 'relabel namespace → ipcache-only',
        'add policy → partial', 'edit policy → partial', 'delete policy → partial', 'readdress pod → ipcache-only']) {
        expect(whatKinds.get(k) ?? 0, `${k}: ${JSON.stringify([...whatKinds])}`).toBeGreaterThan(10);
      }
    }
  });
});
