/**
 * The node's routing table: where an IPv4 destination goes once a packet reaches the router.
 *
 * podwire routes the way Flannel's vxlan backend and a Kubernetes node do:
 *
 *   destination                                   next hop
 *   ------------------------------------------    ---------------------------------------------
 *   this node's gateway (.1 of its pod CIDR)      the daemon itself (answers ping)
 *   a pod of this node                            that pod's port (direct, O(1) array index)
 *   this node's pod CIDR, no such pod             unreachable: ICMP host unreachable
 *   this node's own underlay address              the host port (the node's kernel)
 *   another node's pod CIDR or underlay address   the overlay, to that node's VTEP
 *   the cluster CIDR, no node owns it             unreachable: ICMP net unreachable
 *   anything else                                 the host port (the node decides; no NAT here)
 *
 * Lookups are O(1) in the number of pods and nodes: local pods index a dense array by host
 * offset; remote CIDRs are found by one hash probe per distinct prefix length (nodes normally
 * share one, as Kubernetes' node IPAM hands out equal blocks); node addresses by one hash probe.
 * `lookup` returns a `Route` code and leaves the port or node index in `resultPort`/`resultNode`,
 * so it allocates nothing.
 */
import { U32Map } from './u32map.ts';

export const Route = {
  Gateway: 0,
  LocalPod: 1,
  Host: 2,
  RemoteNode: 3,
  HostUnreachable: 4,
  NetUnreachable: 5,
} as const;
export type Route = (typeof Route)[keyof typeof Route];

/** A cluster member as the data plane needs it. */
export interface NodeRoute {
  name: string;
  podNet: number;        // network address of its pod CIDR (u32)
  prefixLen: number;
  underlayIp: number;    // its VTEP's underlay address (u32)
  vtepMacHi: number;
  vtepMacLo: number;
  self: boolean;
}

/** Mask for a prefix length (u32). */
export function prefixMask(len: number): number { return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0; }

export class RouteTable {
  // This node's pod subnet.
  readonly localNet: number;
  readonly localPrefixLen: number;
  readonly localMask: number;
  readonly gatewayIp: number;
  /** Port of the pod at host offset i of the local subnet, or -1. */
  private readonly localPodPort: Int32Array;
  // The cluster.
  clusterNet: number;
  clusterMask: number;
  selfUnderlayIp = 0;
  /** Per prefix length present among remote nodes: masked network → node index. */
  private readonly remoteByPrefix = new Map<number, U32Map>();
  private remotePrefixLens: number[] = [];
  /** Node underlay address → node index (decides VXLAN sender membership and node routes). */
  readonly nodeByUnderlay: U32Map;
  readonly nodes: (NodeRoute | undefined)[] = [];
  // Hot-path arrays per node index.
  readonly nodeUnderlay: Uint32Array;
  readonly nodeVtepHi: Uint16Array;
  readonly nodeVtepLo: Uint32Array;

  /** Set by lookup(): the pod port (LocalPod) or the node index (RemoteNode). */
  resultPort = -1;
  resultNode = -1;

  constructor(localNet: number, localPrefixLen: number, clusterNet: number, clusterPrefixLen: number, maxNodes = 1024) {
    this.localPrefixLen = localPrefixLen;
    this.localMask = prefixMask(localPrefixLen);
    this.localNet = (localNet & this.localMask) >>> 0;
    this.gatewayIp = (this.localNet + 1) >>> 0;
    this.localPodPort = new Int32Array(2 ** (32 - localPrefixLen)).fill(-1);
    this.clusterMask = prefixMask(clusterPrefixLen);
    this.clusterNet = (clusterNet & this.clusterMask) >>> 0;
    this.nodeByUnderlay = new U32Map(maxNodes);
    this.nodeUnderlay = new Uint32Array(maxNodes);
    this.nodeVtepHi = new Uint16Array(maxNodes);
    this.nodeVtepLo = new Uint32Array(maxNodes);
  }

  /** Bind a local pod's address to its port. */
  setLocalPod(ip: number, port: number): void {
    if (((ip & this.localMask) >>> 0) !== this.localNet) throw new Error('pod address outside the node CIDR');
    this.localPodPort[(ip - this.localNet) >>> 0] = port;
  }

  clearLocalPod(ip: number): void {
    if (((ip & this.localMask) >>> 0) === this.localNet) this.localPodPort[(ip - this.localNet) >>> 0] = -1;
  }

  /** Port of a local pod address, or -1. */
  localPort(ip: number): number {
    return ((ip & this.localMask) >>> 0) === this.localNet ? this.localPodPort[(ip - this.localNet) >>> 0] : -1;
  }

  /** Add or replace a cluster member (idempotent). Returns its index. */
  upsertNode(n: NodeRoute): number {
    let idx = this.nodes.findIndex((x) => x?.name === n.name);
    if (idx >= 0) this.removeNodeAt(idx);
    else {
      idx = this.nodes.findIndex((x) => x === undefined);
      if (idx < 0) idx = this.nodes.length;
      if (idx >= this.nodeUnderlay.length) throw new Error('node table full');
    }
    this.nodes[idx] = n;
    this.nodeUnderlay[idx] = n.underlayIp;
    this.nodeVtepHi[idx] = n.vtepMacHi; this.nodeVtepLo[idx] = n.vtepMacLo;
    this.nodeByUnderlay.set(n.underlayIp, idx);
    if (n.self) { this.selfUnderlayIp = n.underlayIp; return idx; }
    let m = this.remoteByPrefix.get(n.prefixLen);
    if (!m) {
      m = new U32Map(1024);
      this.remoteByPrefix.set(n.prefixLen, m);
      this.remotePrefixLens = [...this.remoteByPrefix.keys()].sort((a, b) => b - a);
    }
    m.set(n.podNet, idx);
    return idx;
  }

  /** Remove a member by name (no-op when absent). */
  removeNode(name: string): void {
    const idx = this.nodes.findIndex((x) => x?.name === name);
    if (idx >= 0) this.removeNodeAt(idx);
  }

  private removeNodeAt(idx: number): void {
    const n = this.nodes[idx];
    if (!n) return;
    this.nodeByUnderlay.delete(n.underlayIp);
    if (!n.self) {
      const m = this.remoteByPrefix.get(n.prefixLen);
      m?.delete(n.podNet);
      if (m && m.size === 0) {
        this.remoteByPrefix.delete(n.prefixLen);
        this.remotePrefixLens = [...this.remoteByPrefix.keys()].sort((a, b) => b - a);
      }
    }
    this.nodes[idx] = undefined;
    this.nodeUnderlay[idx] = 0;
  }

  /** Route a destination. Hot path: no allocation; see the table in the header. */
  lookup(dst: number): Route {
    if (((dst & this.localMask) >>> 0) === this.localNet) {
      if (dst === this.gatewayIp) return Route.Gateway;
      const p = this.localPodPort[(dst - this.localNet) >>> 0];
      if (p >= 0) { this.resultPort = p; return Route.LocalPod; }
      return Route.HostUnreachable;
    }
    const lens = this.remotePrefixLens;
    for (let i = 0; i < lens.length; i++) {
      const len = lens[i];
      const node = this.remoteByPrefix.get(len)!.get((dst & prefixMask(len)) >>> 0);
      if (node >= 0) { this.resultNode = node; return Route.RemoteNode; }
    }
    const byUnderlay = this.nodeByUnderlay.get(dst);
    if (byUnderlay >= 0) {
      if (dst === this.selfUnderlayIp) return Route.Host;
      this.resultNode = byUnderlay; return Route.RemoteNode;
    }
    if (((dst & this.clusterMask) >>> 0) === this.clusterNet) return Route.NetUnreachable;
    return Route.Host;
  }
}
