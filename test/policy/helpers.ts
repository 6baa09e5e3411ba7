/**
 * Shared builders for the policy tests, and `judgeBoth`, which asks the reference evaluator and
 * the compiled tables the same question and fails unless they agree on every direction.
 */
import { expect } from 'vitest';
import type { LabelSelector, NetworkPolicyObj, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicyRule } from '../../src/control/manifests.ts';
import { ipToU32 } from '../../src/control/addressing.ts';
import type { ClusterView, PolicyPacket, PolicyPod, PolicyPodPort } from '../../src/policy/model.ts';
import { referenceVerdict, type Verdict } from '../../src/policy/reference.ts';
import { CompiledPolicy, compilePolicies, egressSide, ingressSide, policyAllowed, PolicySide } from '../../src/policy/compiler.ts';

export const ip = ipToU32;

/** A selector from matchLabels (and optional expressions). `sel()` selects everything. */
export function sel(matchLabels: Record<string, string> = {}, matchExpressions: LabelSelector['matchExpressions'] = []): LabelSelector {
  return { matchLabels, matchExpressions };
}

export function pod(namespace: string, name: string, labels: Record<string, string>, address: string, node: string,
  ports: PolicyPodPort[] = []): PolicyPod {
  return { namespace, name, labels, ip: ip(address), nodeIp: ip(node), ports };
}

export function policy(namespace: string, name: string, p: {
  podSelector?: LabelSelector; policyTypes?: ('Ingress' | 'Egress')[]; ingress?: NetworkPolicyRule[]; egress?: NetworkPolicyRule[];
}): NetworkPolicyObj {
  const ingress = p.ingress ?? [], egress = p.egress ?? [];
  // Kubernetes' defaulting, as the parser applies it: Ingress always, Egress iff egress rules.
  const policyTypes = p.policyTypes ?? (egress.length > 0 ? ['Ingress', 'Egress'] : ['Ingress']);
  return { kind: 'NetworkPolicy', namespace, name, labels: {}, podSelector: p.podSelector ?? sel(), policyTypes, ingress, egress };
}

export function rule(peers: NetworkPolicyPeer[] = [], ports: NetworkPolicyPort[] = []): NetworkPolicyRule {
  return { peers, ports };
}

export const tcp = (port?: number | string, endPort?: number): NetworkPolicyPort => ({ protocol: 'TCP', port, endPort });
export const udp = (port?: number | string, endPort?: number): NetworkPolicyPort => ({ protocol: 'UDP', port, endPort });
export const sctp = (port?: number | string, endPort?: number): NetworkPolicyPort => ({ protocol: 'SCTP', port, endPort });

export function view(namespaces: Record<string, Record<string, string>>, pods: PolicyPod[], policies: NetworkPolicyObj[],
  nodeIps: string[] = ['192.168.56.11', '192.168.56.12']): ClusterView {
  return { namespaces: new Map(Object.entries(namespaces)), pods, policies, nodeIps: nodeIps.map(ip) };
}

export function packet(src: string, dst: string, proto: 'TCP' | 'UDP' | 'SCTP' | 'ICMP', dport: number): PolicyPacket {
  const n = proto === 'TCP' ? 6 : proto === 'UDP' ? 17 : proto === 'SCTP' ? 132 : 1;
  return { src: ip(src), dst: ip(dst), proto: n, dport };
}

/** A direction's verdict as a short string: 'allowed by ns/name#i' names the lowest allowing rule. */
export function refSide(v: Verdict): string {
  switch (v.kind) {
    case 'not-applicable': return 'n/a';
    case 'not-isolated': return 'not-isolated';
    case 'always-allowed': return v.reason;
    case 'denied': return 'denied';
    case 'allowed': {
      // The compiler reports the lowest rule id; ids follow (namespace, name, rule index).
      const lowest = [...v.policies].sort((a, b) =>
        a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : a.rule - b.rule)[0];
      return `allowed by ${lowest.namespace}/${lowest.name}#${lowest.rule}`;
    }
  }
}

/** The same string from the compiled classifier's side code and deciding rule. */
export function compiledSide(c: CompiledPolicy, side: number, ruleId: number): string {
  switch (side) {
    case PolicySide.NotApplicable: return 'n/a';
    case PolicySide.NotIsolated: return 'not-isolated';
    case PolicySide.AllowedSelf: return 'self';
    case PolicySide.AllowedOwnNode: return 'own-node';
    case PolicySide.Denied: return ruleId === -1 ? 'denied' : `denied (but rule ${ruleId} set)`;
    case PolicySide.AllowedByRule: {
      const r = c.ruleInfo(ruleId);
      return `allowed by ${r.namespace}/${r.name}#${r.ruleIndex}`;
    }
    default: return `bad side ${side}`;
  }
}

export interface Judged { allowed: boolean; egress: string; ingress: string }

/** Judge with the compiled tables only (no cross-check). */
export function judgeCompiled(c: CompiledPolicy, pkt: PolicyPacket): Judged {
  const code = c.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport);
  return {
    allowed: policyAllowed(code),
    egress: compiledSide(c, egressSide(code), c.lastEgressRule),
    ingress: compiledSide(c, ingressSide(code), c.lastIngressRule),
  };
}

/** Judge with the reference evaluator only. */
export function judgeReference(v: ClusterView, pkt: PolicyPacket): Judged {
  const r = referenceVerdict(v, pkt);
  return { allowed: r.allowed, egress: refSide(r.egress), ingress: refSide(r.ingress) };
}

/**
 * Judge `pkt` with both implementations, assert they agree (verdict, deciding side, lowest
 * allowing rule), and return the shared answer. Pass a compiled policy to reuse one.
 */
export function judgeBoth(v: ClusterView, pkt: PolicyPacket, compiled: CompiledPolicy = compilePolicies(v)): Judged {
  const ref = judgeReference(v, pkt);
  const got = judgeCompiled(compiled, pkt);
  expect(got, `compiled vs reference for ${JSON.stringify(compiled.explain(pkt).packet)}`).toEqual(ref);
  return ref;
}
