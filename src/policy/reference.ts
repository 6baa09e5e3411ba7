/**
 * The reference evaluator: Kubernetes NetworkPolicy semantics, written as plainly as possible.
 *
 * This is the `tcls` of podwire's policy engine (OVS tests its classifier against a "trivial
 * (linear) classifier" on random flows). It answers "is this packet allowed?" by walking every
 * pod and every policy of the `ClusterView`, straight from the Kubernetes documentation, with no
 * caching, no indexing and no cleverness. It is slow on purpose: its one job is to be obviously
 * right, so that the compiled tables in `compiler.ts` can be tested against it
 * (test/policy/differential.test.ts). It never runs on the data path.
 *
 * The quotes next to the code are from the Kubernetes documentation: the "Network Policies"
 * concept page (kubernetes.io/docs/concepts/services-networking/network-policies/) and the
 * NetworkPolicy API reference (networking.k8s.io/v1). Where the documentation leaves a choice to
 * the network plugin, the comment says which choice podwire makes.
 *
 * The answer is given per direction, because that is how Kubernetes defines it:
 *
 *   "For a connection from a source pod to a destination pod to be allowed, both the egress
 *    policy on the source pod and the ingress policy on the destination pod need to allow the
 *    connection. If either side does not allow the connection, it will not happen."
 *
 * Egress is judged at the source when the source is a pod of the cluster, ingress at the
 * destination when the destination is one; a side that is not a pod is 'not-applicable'.
 */
import { selectorMatches, type NetworkPolicyObj, type NetworkPolicyPeer, type NetworkPolicyPort } from '../control/manifests.ts';
import { parseCidr } from '../control/addressing.ts';
import { namespaceLabels, protocolNumber, type ClusterView, type PolicyPacket, type PolicyPod } from './model.ts';

/** One rule of one policy: `rule` indexes the policy's `ingress` or `egress` list. */
export interface PolicyRuleRef {
  namespace: string;
  name: string;
  rule: number;
}

/**
 * What one direction (egress at the source, ingress at the destination) says about a packet.
 *
 *   not-applicable  that end is not a pod of the cluster (a node, the outside world)
 *   always-allowed  the pod talks to itself, or to/from its own node: policy cannot block that
 *   not-isolated    no policy applies to the pod in this direction
 *   allowed         isolated, and these rules (every one that matches) allow the packet
 *   denied          isolated, and no rule of any applying policy matches
 */
export type Verdict =
  | { kind: 'not-applicable' }
  | { kind: 'always-allowed'; reason: 'self' | 'own-node' }
  | { kind: 'not-isolated' }
  | { kind: 'allowed'; policies: PolicyRuleRef[] }
  | { kind: 'denied' };

export interface ReferenceResult {
  /** True unless one of the two directions is 'denied'. */
  allowed: boolean;
  egress: Verdict;
  ingress: Verdict;
}

export type PolicyDirectionName = 'Ingress' | 'Egress';

/**
 * Judge one packet against the whole cluster view.
 *
 * @param view  the cluster: namespaces, every pod with an address, every policy
 * @param pkt   the first packet of a connection (addresses u32, host order)
 * @returns     the verdict of each direction, and whether the packet may pass
 * No side effects.
 */
export function referenceVerdict(view: ClusterView, pkt: PolicyPacket): ReferenceResult {
  const srcPod = view.pods.find((p) => p.ip === pkt.src);
  const dstPod = view.pods.find((p) => p.ip === pkt.dst);
  const egress: Verdict = srcPod ? judge(view, 'Egress', srcPod, pkt.dst, dstPod, pkt) : { kind: 'not-applicable' };
  const ingress: Verdict = dstPod ? judge(view, 'Ingress', dstPod, pkt.src, srcPod, pkt) : { kind: 'not-applicable' };
  return { allowed: egress.kind !== 'denied' && ingress.kind !== 'denied', egress, ingress };
}

/**
 * One direction for one pod: `pod` is the source for Egress and the destination for Ingress;
 * `remoteIp`/`remotePod` is the other end (`remotePod` undefined when it is not a pod).
 */
function judge(view: ClusterView, dir: PolicyDirectionName, pod: PolicyPod, remoteIp: number,
  remotePod: PolicyPod | undefined, pkt: PolicyPacket): Verdict {
  // "The entities that a Pod can communicate with are identified through a combination of the
  //  following three identifiers: 1. Other pods that are allowed (exception: a pod cannot block
  //  access to itself) [...] 3. IP blocks (exception: traffic to and from the node where a Pod is
  //  running is always allowed, regardless of the IP address of the Pod or the node)"
  // These two exceptions are checked first: they hold whether or not the pod is isolated.
  if (remoteIp === pod.ip) return { kind: 'always-allowed', reason: 'self' };
  if (remoteIp === pod.nodeIp) return { kind: 'always-allowed', reason: 'own-node' };

  // "A pod is isolated for egress if there is any NetworkPolicy that both selects the pod and has
  //  "Egress" in its policyTypes; we say that such a policy applies to the pod for egress."
  //  (Likewise for ingress.) A policy selects pods of its own namespace only: "An empty
  //  podSelector selects all pods in the namespace."
  const applying = view.policies.filter((p) =>
    p.namespace === pod.namespace && p.policyTypes.includes(dir) && selectorMatches(p.podSelector, pod.labels));
  if (applying.length === 0) return { kind: 'not-isolated' };

  // "Network policies do not conflict; they are additive. If any policy or policies apply to a
  //  given pod for a given direction, the connections allowed in that direction from that pod is
  //  the union of what the applicable policies allow."
  // Named ports are looked up on the destination pod: for ingress that is this pod, for egress
  // the remote end (if it is a pod at all).
  const dstPod = dir === 'Ingress' ? pod : remotePod;
  const allowedBy: PolicyRuleRef[] = [];
  for (const policy of applying) {
    const rules = dir === 'Ingress' ? policy.ingress : policy.egress;
    rules.forEach((rule, i) => {
      // "Each rule allows traffic which matches both the from and ports sections."
      if (peersMatch(view, policy, rule.peers, remoteIp, remotePod) && portsMatch(rule.ports, pkt, dstPod)) {
        allowedBy.push({ namespace: policy.namespace, name: policy.name, rule: i });
      }
    });
  }
  return allowedBy.length > 0 ? { kind: 'allowed', policies: allowedBy } : { kind: 'denied' };
}

/**
 * API reference, NetworkPolicyIngressRule.from: "If this field is empty or missing, this rule
 * matches all sources (traffic not restricted by source). If this field is present and contains
 * at least one item, this rule allows traffic only if the traffic matches at least one item in
 * the from list." (`to` of an egress rule reads the same.) "All sources" includes non-pods.
 */
function peersMatch(view: ClusterView, policy: NetworkPolicyObj, peers: NetworkPolicyPeer[], remoteIp: number,
  remotePod: PolicyPod | undefined): boolean {
  if (peers.length === 0) return true;
  return peers.some((peer) => peerMatches(view, policy, peer, remoteIp, remotePod));
}

function peerMatches(view: ClusterView, policy: NetworkPolicyObj, peer: NetworkPolicyPeer, remoteIp: number,
  remotePod: PolicyPod | undefined): boolean {
  if (peer.ipBlock) {
    // "ipBlock: This selects particular IP CIDR ranges to allow as ingress sources or egress
    //  destinations. These should be cluster-external IPs, since Pod IPs are ephemeral and
    //  unpredictable." The documentation stops at "should": what an ipBlock does to an address
    //  that happens to be a pod's is left to the plugin. podwire's choice: an ipBlock matches by
    //  address alone, whether or not the address is a pod's (as Calico does), so a policy means
    //  the same thing whatever currently holds an address.
    // API reference, IPBlock: "The except entry describes CIDRs that should not be included
    //  within this rule."
    return inCidr(remoteIp, peer.ipBlock.cidr) && !peer.ipBlock.except.some((e) => inCidr(remoteIp, e));
  }
  if (!peer.podSelector && !peer.namespaceSelector) return false;  // not a valid peer; matches nothing
  if (!remotePod) return false;  // selectors only ever select pods
  // API reference, NetworkPolicyPeer.namespaceSelector: "If podSelector is also set, then the
  //  NetworkPolicyPeer as a whole selects the pods matching podSelector in the namespaces
  //  selected by namespaceSelector. Otherwise it selects all pods in the namespaces selected by
  //  namespaceSelector." And .podSelector: "[without namespaceSelector] it selects the pods
  //  matching podSelector in the policy's own namespace."
  const namespaceOk = peer.namespaceSelector
    ? selectorMatches(peer.namespaceSelector, namespaceLabels(view, remotePod.namespace))
    : remotePod.namespace === policy.namespace;
  const podOk = peer.podSelector ? selectorMatches(peer.podSelector, remotePod.labels) : true;
  return namespaceOk && podOk;
}

/**
 * API reference, NetworkPolicyIngressRule.ports: "Each item in this list is combined using a
 * logical OR. If this field is empty or missing, this rule matches all ports (traffic not
 * restricted by port)." A rule that restricts no ports restricts no protocol either, so it also
 * allows ICMP and the like; a rule with ports only ever matches TCP, UDP or SCTP.
 */
function portsMatch(ports: NetworkPolicyPort[], pkt: PolicyPacket, dstPod: PolicyPod | undefined): boolean {
  if (ports.length === 0) return true;
  return ports.some((p) => portMatches(p, pkt, dstPod));
}

function portMatches(p: NetworkPolicyPort, pkt: PolicyPacket, dstPod: PolicyPod | undefined): boolean {
  // NetworkPolicyPort.protocol: "protocol represents the protocol (TCP, UDP, or SCTP) which
  //  traffic must match."
  if (pkt.proto !== protocolNumber(p.protocol)) return false;
  // .port: "If this field is not provided, this matches all port names and numbers. If present,
  //  only traffic on the specified protocol AND port will be matched."
  if (p.port === undefined) return true;
  if (typeof p.port === 'number') {
    // .endPort: "endPort indicates that the range of ports from port to endPort if set,
    //  inclusive, should be allowed by the policy."
    const end = p.endPort ?? p.port;
    return pkt.dport >= p.port && pkt.dport <= end;
  }
  // .port: "This can either be a numerical or named port on a pod." A name means whatever
  // number the destination pod gave a container port of that name and protocol. A destination
  // that is not a pod has no named ports, so a named port matches nothing there.
  if (!dstPod) return false;
  return dstPod.ports.some((cp) => cp.name === p.port && cp.protocol === p.protocol && cp.containerPort === pkt.dport);
}

/** True when `ip` lies in the IPv4 CIDR `cidr`. */
function inCidr(ip: number, cidr: string): boolean {
  const { net, len } = parseCidr(cidr);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return ((ip & mask) >>> 0) === net;
}
