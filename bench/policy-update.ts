/**
 * NetworkPolicy recompilation at scale: a full compile (`compilePolicies`) against an incremental
 * one (`updatePolicies`) for the changes a cluster sees most, on 10,000 pods / 1,000 policies
 * generated as bench/micro.ts does (same recipe, same seed).
 *
 *   (a) a pod added with an identity that exists (scaling a Deployment)      → 'ipcache-only'
 *   (b) one policy changed (a port range widened)                            → 'partial'
 *   (c) one policy added (rule ids after it are renumbered)                  → 'partial'
 *   (d) one policy deleted                                                   → 'partial'
 *   (e) a pod relabelled onto an identity that exists                        → 'ipcache-only'
 *   (f) a pod added with a new identity (labels no pod had)                  → 'partial'
 *   (g) a policy added with an ipBlock no policy had (not a cheap case)      → 'full' (falls back)
 *
 * Each update starts from the same compiled base; times are medians of a few runs (updates) or one
 * run (full compiles, which take seconds). Each incremental result is checked against the full
 * compile of the same view on sampled packets before its time is printed.
 *
 * Run: node --import tsx bench/policy-update.ts [--quick]   (--quick: 2,000 pods / 200 policies)
 */
import { compilePolicies, updatePolicies, type CompiledPolicy } from '../src/policy/compiler.ts';
import type { ClusterView, PolicyPod } from '../src/policy/model.ts';
import type { NetworkPolicyObj } from '../src/control/manifests.ts';
import { ipToU32 as ip } from '../src/control/addressing.ts';

const quick = process.argv.includes('--quick');
const PODS = quick ? 2_000 : 10_000, POLICIES = quick ? 200 : 1_000;

function rng(seed: number) { return () => { seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return (t ^ (t >>> 14)) >>> 0; }; }
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(2)) : c)));
  const w = cells[0].map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')).join('\n');
}

/** bench/micro.ts's cluster(): namespaces of 100 pods, 50 apps x 3 tiers, one policy per app-ish. */
function cluster(pods: number, policies: number, seed: number): ClusterView {
  const r = rng(seed);
  const namespaces = new Map<string, Record<string, string>>();
  const nsCount = Math.max(3, Math.round(pods / 100));
  for (let n = 0; n < nsCount; n++) namespaces.set(`ns${n}`, { team: `t${n % 7}`, env: n % 2 ? 'prod' : 'dev' });
  const podList: PolicyPod[] = [];
  for (let p = 0; p < pods; p++) {
    podList.push({
      namespace: `ns${p % nsCount}`, name: `pod-${p}`, labels: { app: `app${r() % 50}`, tier: ['web', 'api', 'db'][r() % 3] },
      ip: (ip('10.244.0.0') + 2 + p + Math.floor(p / 250) * 6) >>> 0, nodeIp: (ip('192.168.56.11') + (p % 20)) >>> 0,
      ports: [{ name: 'http', containerPort: 8080 + (r() % 3), protocol: 'TCP' }, { containerPort: 53, protocol: 'UDP' }],
    });
  }
  const pols: NetworkPolicyObj[] = [];
  for (let i = 0; i < policies; i++) pols.push(makePolicy(r, i, `ns${i % nsCount}`));
  return { namespaces, pods: podList, policies: pols, nodeIps: Array.from({ length: 20 }, (_, k) => (ip('192.168.56.11') + k) >>> 0) };
}

function makePolicy(r: () => number, i: number, ns: string, name = `pol-${i}`): NetworkPolicyObj {
  return {
    kind: 'NetworkPolicy', name, namespace: ns, labels: {},
    podSelector: { matchLabels: { app: `app${r() % 50}` }, matchExpressions: [] },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [{ peers: [{ podSelector: { matchLabels: { tier: ['web', 'api'][r() % 2] }, matchExpressions: [] }, namespaceSelector: { matchLabels: { team: `t${r() % 7}` }, matchExpressions: [] } }], ports: [{ protocol: 'TCP', port: 'http' }] },
      { peers: [{ ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.56.0/24'] } }], ports: [{ protocol: 'TCP', port: 8080, endPort: 8090 }] }],
    egress: [{ peers: [{ namespaceSelector: { matchLabels: { env: 'prod' }, matchExpressions: [] } }], ports: [] }],
  };
}

/** Fail loudly unless `a` and `b` agree (code and deciding rules, by name) on sampled packets. */
function check(a: CompiledPolicy, b: CompiledPolicy, v: ClusterView, label: string): void {
  const r = rng(99), P = v.pods.length;
  const name = (c: CompiledPolicy, id: number) => (id < 0 ? '-' : JSON.stringify(c.ruleInfo(id)));
  for (let k = 0; k < 20_000; k++) {
    const src = v.pods[r() % P].ip, dst = k % 10 === 0 ? ip('192.168.1.1') + (r() % 256) : v.pods[r() % P].ip, port = 8078 + (r() % 16);
    const ca = a.classify(src, dst, 6, port), ea = name(a, a.lastEgressRule), ia = name(a, a.lastIngressRule);
    const cb = b.classify(src, dst, 6, port), eb = name(b, b.lastEgressRule), ib = name(b, b.lastIngressRule);
    if (ca !== cb || ea !== eb || ia !== ib) throw new Error(`${label}: incremental and full disagree on ${src} → ${dst}:${port}`);
  }
}

const base = cluster(PODS, POLICIES, PODS);
console.log(`NetworkPolicy recompilation, ${PODS} pods / ${POLICIES} policies, node ${process.version}\n`);
let t0 = performance.now();
const prev = compilePolicies(base);
const baseMs = performance.now() - t0;
const st = prev.stats();
console.log(`base: full compile ${baseMs.toFixed(0)} ms; ${st.identities} identities, ${st.tables} tables, ${st.tableEntries} entries, ${st.rules} rules\n`);

const donor = base.pods[1234 % PODS];
const target = base.pods[77];
const twin = base.pods.find((p) => p !== target && p.namespace === target.namespace && p.ports[0].containerPort === target.ports[0].containerPort
  && (p.labels.app !== target.labels.app || p.labels.tier !== target.labels.tier))!;
const lastIp = base.pods[base.pods.length - 1].ip;
// A policy from the second half that selects at least one pod (so some tables change).
const edited = base.policies.findIndex((p, i) => i >= POLICIES / 2
  && base.pods.some((q) => q.namespace === p.namespace && q.labels.app === p.podSelector.matchLabels.app));
const cases: [string, ClusterView][] = [
  ['(a) add a pod, existing identity', { ...base, pods: [...base.pods, { ...donor, name: 'scaled-1', ip: (lastIp + 1) >>> 0 }] }],
  ['(b) change one policy', {
    ...base, policies: base.policies.map((p, i) => i !== edited ? p
      : { ...p, ingress: [p.ingress[0], { ...p.ingress[1], ports: [{ protocol: 'TCP' as const, port: 8080, endPort: 8099 }] }] }),
  }],
  ['(c) add one policy', { ...base, policies: [...base.policies, makePolicy(rng(5), 0, 'ns3', 'added')] }],
  ['(d) delete one policy', { ...base, policies: base.policies.filter((_, i) => i !== 3) }],
  ['(e) relabel a pod onto an existing identity', { ...base, pods: base.pods.map((p) => (p === target ? { ...p, labels: { ...twin.labels } } : p)) }],
  ['(f) add a pod with a new identity', {
    ...base, pods: [...base.pods, { ...donor, name: 'new-app-1', ip: (lastIp + 2) >>> 0, labels: { app: 'brand-new', tier: donor.labels.tier } }],
  }],
  ['(g) add a policy with a new ipBlock (fallback)', {
    ...base, policies: [...base.policies, { ...makePolicy(rng(6), 0, 'ns3', 'new-cidr'), egress: [{ peers: [{ ipBlock: { cidr: '172.16.0.0/12', except: [] } }], ports: [] }] }],
  }],
];

const rows: (string | number)[][] = [['change', 'full ms', 'update ms', 'speedup', 'kind', 'tables rebuilt', 'tables shared']];
for (const [label, next] of cases) {
  t0 = performance.now();
  const full = compilePolicies(next);
  const fullMs = performance.now() - t0;
  const times: number[] = [];
  let upd!: CompiledPolicy;
  const runs = label.includes('fallback') ? 1 : 7;   // a fallback is a full compile: once is enough
  for (let k = 0; k < runs; k++) {
    t0 = performance.now();
    upd = updatePolicies(prev, base, next);
    times.push(performance.now() - t0);
  }
  check(upd, full, next, label);
  const sh = upd.sharing(prev);
  const ms = median(times);
  rows.push([label, fullMs, ms, `${(fullMs / ms).toFixed(0)}x`, upd.lastUpdateKind, upd.update.rebuiltTables, `${sh.sharedTables}/${sh.tables}`]);
}
console.log(table(rows));
console.log('\n(full ms: compilePolicies of the changed view; update ms: updatePolicies from the base, median of 7;'
  + ' tables shared: distinct tables of the result that are the base\'s own objects)');
