/**
 * The policy engine's input: a snapshot of the cluster as NetworkPolicy sees it, and a packet.
 *
 * Kubernetes NetworkPolicy is written in terms of labels (pods', namespaces') and ports (numbers
 * or container-port names); the data plane sees addresses. This module fixes the small, plain
 * shape that both halves of the engine read:
 *
 *   - `reference.ts`, a deliberately naive evaluator written straight from the Kubernetes
 *     documentation, which walks this view for every question it is asked;
 *   - `compiler.ts`, which turns the same view into numeric tables once, so that a packet is
 *     classified with a constant number of table probes.
 *
 * Rules of the view:
 *
 *   - Addresses are IPv4 as host-order u32 numbers (`ipToU32` in control/addressing.ts), as
 *     everywhere in podwire. Ports are plain numbers.
 *   - `pods` lists every pod of the cluster that has an address, on every node: a remote pod's
 *     labels matter as much as a local pod's, because selectors match the *other* end. Pod
 *     addresses are unique and are never a node's address (the compiler checks this).
 *   - `namespaces` maps a namespace name to its labels as the user wrote them. The automatic
 *     `kubernetes.io/metadata.name` label is added by `namespaceLabels` below, so whoever builds
 *     the view does not have to; a namespace a pod uses but the map lacks has only that label.
 *   - `policies` are NetworkPolicy objects as `control/manifests.ts` normalises them: defaults
 *     filled in (`policyTypes`, port protocol TCP), "empty or omitted" peer and port lists both
 *     given as `[]`.
 *
 * Nothing here is on the hot path; it is control-plane data, free to be objects and strings.
 */
import type { NetworkPolicyObj } from '../control/manifests.ts';

export type {
  NetworkPolicyObj, NetworkPolicyRule, NetworkPolicyPeer, NetworkPolicyPort, LabelSelector, LabelSelectorRequirement,
} from '../control/manifests.ts';

/** The protocols a NetworkPolicy port can name. */
export type PolicyProtocol = 'TCP' | 'UDP' | 'SCTP';

/** A container port, as the pod declares it; `name` is what a policy's named port refers to. */
export interface PolicyPodPort {
  name?: string;
  containerPort: number;
  protocol: PolicyProtocol;
}

/** One pod, anywhere in the cluster, with the facts policy can observe about it. */
export interface PolicyPod {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** The pod's IPv4 address (u32). */
  ip: number;
  /** The underlay/host address (u32) of the node it runs on. */
  nodeIp: number;
  /** Every container's ports, flattened. */
  ports: PolicyPodPort[];
}

/** The cluster as NetworkPolicy sees it. */
export interface ClusterView {
  /** Namespace name → its labels (without the automatic kubernetes.io/metadata.name; see above). */
  namespaces: Map<string, Record<string, string>>;
  pods: PolicyPod[];
  policies: NetworkPolicyObj[];
  /** Underlay/host addresses (u32) of the cluster's nodes. */
  nodeIps: number[];
}

/**
 * The first packet of a connection, as the policy stage sees it (after service DNAT).
 * `proto` is the IP protocol number: 6 TCP, 17 UDP, 132 SCTP. Any other protocol (ICMP, say) is
 * accepted too; it has no ports, so only a rule that restricts no ports can allow it.
 */
export interface PolicyPacket {
  src: number;
  dst: number;
  proto: number;
  /** Destination port (0 for protocols without ports). */
  dport: number;
}

export const IPPROTO_TCP = 6, IPPROTO_UDP = 17, IPPROTO_SCTP = 132;

/** The IP protocol number of a NetworkPolicy protocol name. */
export function protocolNumber(p: PolicyProtocol): number {
  return p === 'TCP' ? IPPROTO_TCP : p === 'UDP' ? IPPROTO_UDP : IPPROTO_SCTP;
}

/** The label the control plane sets on every namespace. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';

/**
 * A namespace's labels as a namespaceSelector sees them.
 *
 * Kubernetes docs, "Targeting a Namespace by its name": "The Kubernetes control plane sets an
 * immutable label kubernetes.io/metadata.name on all namespaces, the value of the label is the
 * namespace name." The label is added here, and wins over a user-written one, as it does in
 * the API server.
 */
export function namespaceLabels(view: ClusterView, namespace: string): Record<string, string> {
  return { ...(view.namespaces.get(namespace) ?? {}), [NAMESPACE_NAME_LABEL]: namespace };
}
