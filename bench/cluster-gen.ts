/**
 * A synthetic cluster for the NetworkPolicy benches (bench/micro.ts, bench/policy-update.ts): the
 * same recipe and seed give both the same pods and policies, so their figures describe one cluster.
 */
import type { ClusterView, PolicyPod } from '../src/policy/model.ts';
import type { NetworkPolicyObj } from '../src/control/manifests.ts';
import { ipToU32 as ip } from '../src/control/addressing.ts';

/** A small seeded PRNG (mulberry32): 32-bit unsigned draws. */
export function rng(seed: number) { return () => { seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return (t ^ (t >>> 14)) >>> 0; }; }

/**
 * A cluster of `pods` pods in namespaces of ~100 (50 apps x 3 tiers) and `policies` policies, one
 * per app-ish, drawn from `seed`: the same view for the same arguments.
 */
export function cluster(pods: number, policies: number, seed: number): ClusterView {
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

/** Policy number `i` in namespace `ns`: selects an app; ingress from web/api of a team and from a CIDR, egress to prod. */
export function makePolicy(r: () => number, i: number, ns: string, name = `pol-${i}`): NetworkPolicyObj {
  return {
    kind: 'NetworkPolicy', name, namespace: ns, labels: {},
    podSelector: { matchLabels: { app: `app${r() % 50}` }, matchExpressions: [] },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [{ peers: [{ podSelector: { matchLabels: { tier: ['web', 'api'][r() % 2] }, matchExpressions: [] }, namespaceSelector: { matchLabels: { team: `t${r() % 7}` }, matchExpressions: [] } }], ports: [{ protocol: 'TCP', port: 'http' }] },
      { peers: [{ ipBlock: { cidr: '192.168.0.0/16', except: ['192.168.56.0/24'] } }], ports: [{ protocol: 'TCP', port: 8080, endPort: 8090 }] }],
    egress: [{ peers: [{ namespaceSelector: { matchLabels: { env: 'prod' }, matchExpressions: [] } }], ports: [] }],
  };
}
