/**
 * The data plane: what happens to every frame a pod, the node or another node sends us.
 *
 * podwire's node is a switch and a router in one, like the `cni0` bridge plus the kernel's routing
 * table plus `flannel.1` on a Flannel node, but written out as stages you can read:
 *
 *   pod TAP rx ─▶ L2 checks ─▶ anti-spoof ─▶ learn ─┬─ ARP ──▶ gateway? answer : bridge
 *                                                  └─ IPv4 ─▶ to router MAC? route : bridge
 *   host TAP rx ─▶ ARP for the gateway, or IPv4 to the router ─▶ route
 *   VXLAN rx ─▶ header, VNI and sender checks ─▶ decap ─▶ route (local pods and the node only)
 *
 *   route: TTL ─▶ lookup ─┬─ local pod   ─▶ MACs rewritten, TTL-1 ─▶ that pod's TAP
 *                         ├─ the node    ─▶ host TAP
 *                         ├─ other node  ─▶ MTU check ─▶ VXLAN encap into headroom ─▶ underlay
 *                         ├─ gateway     ─▶ ping answered in place
 *                         └─ unreachable ─▶ ICMP error back to the sender
 *
 * Rules of this file (the hot path):
 *   - a batch is processed in one synchronous pass; nothing allocates per frame; headers are read
 *     and rewritten in place through one DataView over the slab;
 *   - every early exit returns a code from the one Drop list, and the caller counts it; a bad frame
 *     never throws;
 *   - forwarding never copies a frame: it queues (port, offset, length) on the TxQueue, and the
 *     daemon flushes each port with one batched write.
 */
import { Drop, DROP_INFO } from '../wire/drop.ts';
import { ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, formatMac } from '../wire/ethernet.ts';
import { checkArp, ARP_OPER, ARP_REQUEST, ARP_REPLY, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA } from '../wire/arp.ts';
import {
  checkIpv4, IPV4_DST, ipv4SetSrc, ipv4SetDst, formatIpv4Addr, IPV4_FLAGS_FRAG, IPV4_FLAG_DF, IPV4_PROTO, IPV4_SRC, IPV4_TTL,
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, ipv4DecrementTtl, ipv4WriteChecksum,
} from '../wire/ipv4.ts';
import {
  ICMP_CHECKSUM, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED,
  ICMP_CODE_NET_UNREACH, ICMP_CODE_HOST_UNREACH, ICMP_CODE_FRAG_NEEDED, ICMP_CODE_PORT_UNREACH, ICMP_HEADER_LEN,
} from '../wire/icmp.ts';
import { checksumUpdate16, checksumUpdate32, internetChecksum, pseudoHeaderSum, onesSum, foldComplement } from '../wire/checksum.ts';
import { checkTcp, tcpSetSrcPort, tcpSetDstPort, tcpUpdateChecksumForAddr, TCP_FLAGS } from '../wire/tcp.ts';
import { udpSetSrcPort, udpSetDstPort, udpUpdateChecksumForAddr } from '../wire/udp.ts';
import { checkVxlan, VXLAN_HEADER_LEN, flowHash5, vxlanSourcePort } from '../wire/vxlan.ts';
import { FrameSlab, TxQueue, BATCH_MAX, VNET_HDR_LEN, VNET_F_NEEDS_CSUM } from '../frame/slab.ts';
import { Fdb } from '../tables/fdb.ts';
import { PortTable, PortKind, HOST_PORT, OVERLAY_PORT } from '../tables/ports.ts';
import { RouteTable, Route } from '../tables/routes.ts';
import { Counters } from './counters.ts';
import { ServiceTable } from '../tables/services.ts';
import { Conntrack, CtDir, CT_NAT_DNAT, CT_NAT_SNAT } from '../tables/conntrack.ts';
import { CompiledPolicy, PolicyDir, PolicySide } from '../policy/compiler.ts';
import { TraceSession } from './trace.ts';
import { formatFrame } from '../wire/format.ts';
import { LB_NAMES } from '../tables/services.ts';

const TCP_SYN = 0x02, TCP_ACK_FLAG = 0x10, TCP_RST = 0x04;

/** Trace notes: what a stage decided, formatted only for traced packets (see Dataplane.note). */
const Note = {
  AntiSpoof: 0, ToRouter: 1, Decap: 2, Fdb: 3, Flood: 4, Arp: 5, CtHit: 6, StaleDenied: 7, NatFollowed: 8, CtNew: 9,
  ServiceReject: 10, Service: 11, Dnat: 12, PolicyEgress: 13, PolicyIngress: 14, RouteGateway: 15, Ttl: 16, RouteLocal: 17,
  RouteHost: 18, RouteRemote: 19, Mtu: 20, RouteHostUnreachable: 21, RouteNone: 22, EncapGso: 23, Encap: 24,
} as const;

/** Outer IPv4 (20) + UDP (8) + VXLAN (8): what encapsulation prepends in the headroom. */
export const VXLAN_OVERHEAD_INNER = 20 + 8 + VXLAN_HEADER_LEN;
/** What VXLAN costs the pod MTU: outer IPv4 + UDP + VXLAN + the inner Ethernet header (RFC 7348 §4.3). */
export const VXLAN_MTU_OVERHEAD = VXLAN_OVERHEAD_INNER + ETH_HEADER_LEN;
/** A marker for "the daemon itself" as the origin of a packet (ICMP errors, ping replies). */
const SELF = -1;

export interface DataplaneConfig {
  routerMacHi: number;   // the gateway's and this node's VTEP MAC
  routerMacLo: number;
  hostMacHi: number;     // the node-side host TAP's MAC
  hostMacLo: number;
  vni: number;
  vxlanPort: number;     // destination UDP port on the underlay (4789)
  underlayMtu: number;
  icmpErrorsPerSecond?: number;
  /**
   * Super-frame mode: every frame from and to a TAP carries a virtio_net_hdr (IFF_VNET_HDR with
   * checksum and TSO offloads), so a TCP frame may be up to 64 KiB with a partial checksum; the
   * overlay is fed whole super-frames, which the addon segments (and coalesces on receipt).
   */
  vnet?: boolean;
}

export class Dataplane {
  readonly ports: PortTable;
  readonly routes: RouteTable;
  readonly fdb: Fdb;
  readonly counters: Counters;
  readonly cfg: DataplaneConfig;
  /** Services (kube-proxy's job) and connection tracking; absent in a bare L2/L3 node. */
  services?: ServiceTable;
  ct?: Conntrack;
  /**
   * Compiled NetworkPolicy (absent while no policy exists). Swapped as a whole by the control
   * plane; `policyGeneration` counts swaps, so tracked connections re-check once after a change.
   */
  policy?: CompiledPolicy;
  policyGeneration = 1;
  /** Set when a policy check denies: the direction and the pod it protected (for flow logs). */
  lastDeniedDir = -1;
  /**
   * Tracing: a session while one is attached, and whether the frame in hand matched its filter.
   * Every trace point is `if (this.tracing) ...`: nothing is formatted for other frames.
   */
  trace?: TraceSession;
  tracing = false;
  private traceDv?: DataView;
  /** Names an address for traces (a pod, a node); supplied by the daemon. */
  describe: (ip: number) => string = (ip) => u32(ip);
  /** Called for connection events (new, denied), when a flow log is attached. */
  onFlow?: (event: 'new' | 'denied', proto: number, src: number, dst: number, sport: number, dport: number, svc: number, backend: number, detail: string) => void;
  /**
   * Synthetic packets (`podwire trace inject`) run with dryRun set: nothing the pipeline learns or
   * chooses is kept (no FDB learning, no round-robin advance, no conntrack entry).
   */
  dryRun = false;
  /** Connections allowed per policy rule id, and denied per direction (for metrics). */
  readonly policyRuleHits = new Float64Array(1 << 16);
  readonly policyDenied = new Float64Array(2);
  /** Frames per batch, for the batch-size histogram (bucket by power of two, 1..64). */
  readonly batchSizes = new Float64Array(8);
  /**
   * Capture: a port number whose frames (both directions) go to `capture`, or -1. The daemon also
   * writes the frames it transmits on that port.
   */
  capturePort = -1;
  capture?: { write(u8: Uint8Array, off: number, len: number): boolean };
  /** Capture of the overlay: datagrams as received (with synthetic outer headers) or decapsulated. */
  captureOverlay?: (slab: FrameSlab, slot: number, len: number, src: number) => void;
  /** Largest inner IPv4 packet the overlay can carry: underlay MTU − 50. */
  overlayMtu: number;
  /** Pod ports, dense, for flooding (rebuilt by the control plane on attach/detach). */
  podPorts = new Int32Array(0);
  private icmpTokens: number;
  private icmpLastRefillMs = 0;
  // Per-batch state (no allocation).
  private nowMs = 0;
  // The transport header of the packet being looked at (set by parseL4).
  private l4Proto = 0;
  private l4Off = 0;
  private l4Sport = 0;
  private l4Dport = 0;
  private l4Flags = 0;
  private l4Len = 0;
  /** The frame in hand carries a partial (pseudo-header only) L4 checksum: VIRTIO_NET_HDR_F_NEEDS_CSUM. */
  private csumPartial = false;
  /** Its GSO segment size (0 when it is an ordinary frame). */
  private gsoSize = 0;
  private readonly vnet: boolean;

  constructor(ports: PortTable, routes: RouteTable, fdb: Fdb, counters: Counters, cfg: DataplaneConfig) {
    this.ports = ports; this.routes = routes; this.fdb = fdb; this.counters = counters; this.cfg = cfg;
    this.overlayMtu = cfg.underlayMtu - VXLAN_MTU_OVERHEAD;
    this.icmpTokens = cfg.icmpErrorsPerSecond ?? 1000;
    this.vnet = cfg.vnet === true;
  }

  /** Underlay MTU changed (read from the device): the overlay MTU follows. */
  setUnderlayMtu(mtu: number): void { this.cfg.underlayMtu = mtu; this.overlayMtu = mtu - VXLAN_MTU_OVERHEAD; }

  /** Recompute the flood list after pods attach or detach. */
  refreshPodPorts(): void {
    const list: number[] = [];
    for (let p = 0; p < this.ports.maxPorts; p++) if (this.ports.kind[p] === PortKind.Pod) list.push(p);
    this.podPorts = Int32Array.from(list);
  }

  // ---------------------------------------------------------------------------------------------
  // Entry points: one call per batch.
  // ---------------------------------------------------------------------------------------------

  /** Process `count` frames read from TAP port `inPort` into slots 0..count-1 of the slab. */
  processTapBatch(slab: FrameSlab, inPort: number, count: number, tx: TxQueue, nowMs: number): void {
    this.beginBatch(nowMs, count);
    const c = this.counters;
    for (let i = 0; i < count; i++) {
      const v = this.vnet ? VNET_HDR_LEN : 0;
      const off = slab.frameOffset(i) + v, len = slab.lens[i] - v;
      c.rxPackets[inPort]++;
      if (len < 0) { c.drop(inPort, slab.lens[i] < 0 ? Drop.FrameTooLong : Drop.EthTruncated); continue; }
      this.csumPartial = false; this.gsoSize = 0;
      if (v !== 0) this.readVnet(slab.dv, off - VNET_HDR_LEN);
      c.rxBytes[inPort] += len;
      this.tracing = false;
      if (this.trace !== undefined) this.traceStart(slab, inPort, off, len);
      if (this.capturePort === inPort) this.capture!.write(slab.u8, off, len);
      const verdict = this.ports.kind[inPort] === PortKind.Pod
        ? this.fromPod(slab, inPort, off, len, tx)
        : this.fromHost(slab, off, len, tx);
      if (verdict !== Drop.None) c.drop(inPort, verdict);
      if (this.tracing) this.traceEnd(verdict);
    }
  }

  /** Process `count` VXLAN datagrams received from the underlay into slots 0..count-1. */
  processOverlayBatch(slab: FrameSlab, count: number, tx: TxQueue, nowMs: number): void {
    this.beginBatch(nowMs, count);
    const c = this.counters;
    for (let i = 0; i < count; i++) {
      const len = slab.lens[i];
      c.rxPackets[OVERLAY_PORT]++;
      if (len < 0) { c.drop(OVERLAY_PORT, Drop.VxlanTruncated); continue; }
      c.rxBytes[OVERLAY_PORT] += len;
      if (this.captureOverlay !== undefined) this.captureOverlay(slab, i, len, slab.srcAddrs[i]);
      this.tracing = false;
      this.csumPartial = false; this.gsoSize = 0;
      if (this.vnet && len >= VXLAN_HEADER_LEN + VNET_HDR_LEN) this.readVnet(slab.dv, slab.frameOffset(i) + VXLAN_HEADER_LEN);
      if (this.trace !== undefined) this.traceStart(slab, OVERLAY_PORT, slab.frameOffset(i) + this.innerOffset, len - this.innerOffset);
      const verdict = this.fromOverlay(slab, slab.frameOffset(i), len, slab.srcAddrs[i], tx);
      if (verdict !== Drop.None) c.drop(OVERLAY_PORT, verdict);
      if (this.tracing) this.traceEnd(verdict);
    }
  }

  /** Where the inner frame starts in an overlay slot: after VXLAN (and, in vnet mode, the virtio_net_hdr). */
  get innerOffset(): number { return VXLAN_HEADER_LEN + (this.vnet ? VNET_HDR_LEN : 0); }

  /** Note the offload state of the frame whose virtio_net_hdr is at `h`. */
  private readVnet(dv: DataView, h: number): void {
    this.csumPartial = (dv.getUint8(h) & VNET_F_NEEDS_CSUM) !== 0;
    this.gsoSize = dv.getUint8(h + 1) !== 0 ? dv.getUint16(h + 6, true) : 0;
  }

  private beginBatch(nowMs: number, count: number): void {
    this.nowMs = nowMs;
    const c = this.counters;
    c.batches++; c.batchFrames += count;
    this.batchSizes[count <= 1 ? 0 : 32 - Math.clz32(count - 1)]++;
    // Refill the ICMP error budget (a token bucket, as Linux's icmp_ratelimit does).
    const rate = this.cfg.icmpErrorsPerSecond ?? 1000;
    if (nowMs - this.icmpLastRefillMs >= 100) {
      this.icmpTokens = Math.min(rate, this.icmpTokens + ((nowMs - this.icmpLastRefillMs) * rate) / 1000);
      this.icmpLastRefillMs = nowMs;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Ingress stages.
  // ---------------------------------------------------------------------------------------------

  /** A frame from a pod: L2 checks, anti-spoofing, learning, then ARP, routing or bridging. */
  private fromPod(slab: FrameSlab, inPort: number, off: number, len: number, tx: TxQueue): number {
    const dv = slab.dv, u8 = slab.u8, ports = this.ports;
    if (len < ETH_HEADER_LEN) return Drop.EthTruncated;
    if ((u8[off + 6] & 1) !== 0) return Drop.MulticastSrcMac;
    const srcHi = dv.getUint16(off + 6), srcLo = dv.getUint32(off + 8);
    if (srcHi !== ports.macHi[inPort] || srcLo !== ports.macLo[inPort]) return Drop.SpoofedSrcMac;
    if (!this.dryRun) this.fdb.learn(srcHi, srcLo, inPort, this.nowMs);

    const type = dv.getUint16(off + 12), l3 = off + ETH_HEADER_LEN, end = off + len;
    if (type === ETHERTYPE_ARP) {
      const bad = checkArp(dv, l3, end);
      if (bad !== Drop.None) return bad;
      // A pod may only speak for itself: its own MAC, and its own address (or 0.0.0.0 for an
      // RFC 5227 probe). ARP claiming another pod's address is how poisoning starts.
      const spa = dv.getUint32(l3 + ARP_SPA);
      if (dv.getUint16(l3 + ARP_SHA) !== srcHi || dv.getUint32(l3 + ARP_SHA + 2) !== srcLo) return Drop.SpoofedArp;
      if (spa !== ports.ip[inPort] && spa !== 0) return Drop.SpoofedArp;
      if (dv.getUint16(l3 + ARP_OPER) === ARP_REQUEST && dv.getUint32(l3 + ARP_TPA) === this.routes.gatewayIp) {
        return this.answerArp(slab, inPort, off, l3, tx);
      }
      return this.bridge(slab, inPort, off, len, tx);
    }
    if (type !== ETHERTYPE_IPV4) return Drop.EthUnsupportedType;
    const bad = checkIpv4(dv, u8, l3, end);
    if (bad !== Drop.None) return bad;
    if (dv.getUint32(l3 + IPV4_SRC) !== ports.ip[inPort]) return Drop.SpoofedSrcIp;
    if (this.tracing) this.note(Note.AntiSpoof, inPort);
    if (dv.getUint16(off) === this.cfg.routerMacHi && dv.getUint32(off + 2) === this.cfg.routerMacLo) {
      if (this.tracing) this.note(Note.ToRouter);
      return this.route(slab, inPort, off, tx, false);
    }
    // Bridged IPv4 between pods of this node still passes connection tracking, so that a reply
    // from a Service backend to a client on the same subnet is translated back (what Linux needs
    // br_netfilter for under kube-proxy).
    if (this.ct !== undefined) {
      const nat = this.conntrackAndNat(slab, inPort, off, tx);
      if (nat !== Drop.None) return nat;
    }
    return this.bridge(slab, inPort, off, len, tx);
  }

  /** A frame from the node's kernel: it may ARP for the gateway and send IPv4 to the router. */
  private fromHost(slab: FrameSlab, off: number, len: number, tx: TxQueue): number {
    const dv = slab.dv, u8 = slab.u8;
    if (len < ETH_HEADER_LEN) return Drop.EthTruncated;
    const type = dv.getUint16(off + 12), l3 = off + ETH_HEADER_LEN, end = off + len;
    if (type === ETHERTYPE_ARP) {
      const bad = checkArp(dv, l3, end);
      if (bad !== Drop.None) return bad;
      if (dv.getUint16(l3 + ARP_OPER) === ARP_REQUEST && dv.getUint32(l3 + ARP_TPA) === this.routes.gatewayIp) {
        return this.answerArp(slab, HOST_PORT, off, l3, tx);
      }
      return Drop.L2Unicast;
    }
    if (type !== ETHERTYPE_IPV4) return Drop.EthUnsupportedType;
    const bad = checkIpv4(dv, u8, l3, end);
    if (bad !== Drop.None) return bad;
    if (dv.getUint16(off) !== this.cfg.routerMacHi || dv.getUint32(off + 2) !== this.cfg.routerMacLo) return Drop.L2Unicast;
    return this.route(slab, HOST_PORT, off, tx, false);
  }

  /**
   * A VXLAN datagram from another node (RFC 7348 §5): the sender must be a cluster member, the
   * header well-formed and the VNI ours; the inner frame must be addressed to our VTEP MAC.
   */
  private fromOverlay(slab: FrameSlab, off: number, len: number, srcAddr: number, tx: TxQueue): number {
    const dv = slab.dv, u8 = slab.u8, end = off + len;
    const node = this.routes.nodeByUnderlay.get(srcAddr);
    if (node < 0 || srcAddr === this.routes.selfUnderlayIp) return Drop.VxlanUnknownPeer;
    const bad = checkVxlan(dv, off, end, this.cfg.vni);
    if (bad !== Drop.None) return bad;
    this.counters.vxlanDecap++;
    if (this.tracing) this.note(Note.Decap, node, srcAddr);
    const inner = off + this.innerOffset;
    if (end - inner < ETH_HEADER_LEN) return Drop.VxlanTruncated;
    if (dv.getUint16(inner) !== this.cfg.routerMacHi || dv.getUint32(inner + 2) !== this.cfg.routerMacLo) return Drop.VxlanBadInnerMac;
    if (dv.getUint16(inner + 12) !== ETHERTYPE_IPV4) return Drop.EthUnsupportedType;
    const badIp = checkIpv4(dv, u8, inner + ETH_HEADER_LEN, end);
    if (badIp !== Drop.None) return badIp;
    return this.route(slab, OVERLAY_PORT, inner, tx, false);
  }

  // ---------------------------------------------------------------------------------------------
  // L2: the learning bridge among the node's pods.
  // ---------------------------------------------------------------------------------------------

  /** Forward by destination MAC: known unicast to one port, everything else flooded to the pods. */
  private bridge(slab: FrameSlab, inPort: number, off: number, len: number, tx: TxQueue): number {
    const dv = slab.dv;
    if ((slab.u8[off] & 1) === 0) {
      const out = this.fdb.lookup(dv.getUint16(off), dv.getUint32(off + 2), this.nowMs);
      if (this.tracing) this.note(Note.Fdb, out);
      if (out >= 0) {
        if (out === inPort) return Drop.L2Unicast;   // the destination is behind the input port
        if (!tx.push(out, off, len)) return Drop.TxQueueFull;
        return Drop.None;
      }
    }
    this.counters.floods++;
    if (this.tracing && (slab.u8[off] & 1) !== 0) this.note(Note.Flood);
    const pods = this.podPorts;
    for (let k = 0; k < pods.length; k++) {
      const p = pods[k];
      if (p !== inPort && !tx.push(p, off, len)) return Drop.TxQueueFull;
    }
    return Drop.None;
  }

  /** Turn an ARP request for the gateway into the reply, in place, and send it back (RFC 826). */
  private answerArp(slab: FrameSlab, inPort: number, off: number, l3: number, tx: TxQueue): number {
    const dv = slab.dv, u8 = slab.u8, cfg = this.cfg;
    u8.copyWithin(off, off + 6, off + 12);                         // eth dst := requester
    dv.setUint16(off + 6, cfg.routerMacHi); dv.setUint32(off + 8, cfg.routerMacLo);
    dv.setUint16(l3 + ARP_OPER, ARP_REPLY);
    u8.copyWithin(l3 + ARP_THA, l3 + ARP_SHA, l3 + ARP_SHA + 10); // target := sender (MAC + IP)
    dv.setUint16(l3 + ARP_SHA, cfg.routerMacHi); dv.setUint32(l3 + ARP_SHA + 2, cfg.routerMacLo);
    dv.setUint32(l3 + ARP_SPA, this.routes.gatewayIp);
    this.counters.localReplies++;
    if (this.tracing) this.note(Note.Arp);
    if (!tx.push(inPort, off, ETH_HEADER_LEN + 28)) return Drop.TxQueueFull;
    return Drop.None;
  }


  // ---------------------------------------------------------------------------------------------
  // Connection tracking and Service NAT (what kube-proxy asks of netfilter).
  // ---------------------------------------------------------------------------------------------

  /**
   * Read the transport header of the IPv4 packet at `l3` into the l4* fields. Returns false for
   * what is not tracked: fragments, other protocols, ICMP other than echo and errors, and short
   * headers (checked, so later reads stay in bounds).
   */
  private parseL4(dv: DataView, u8: Uint8Array, l3: number): boolean {
    if ((dv.getUint16(l3 + IPV4_FLAGS_FRAG) & 0x3fff) !== 0) return false;
    const ihl = (dv.getUint8(l3) & 0x0f) << 2, end = l3 + dv.getUint16(l3 + 2), l4 = l3 + ihl;
    const proto = dv.getUint8(l3 + IPV4_PROTO);
    this.l4Proto = proto; this.l4Off = l4; this.l4Len = end - l3; this.l4Flags = 0;
    if (proto === IPPROTO_TCP) {
      if (checkTcp(dv, u8, l4, end, 0, 0, false) !== Drop.None) return false;
      this.l4Sport = dv.getUint16(l4); this.l4Dport = dv.getUint16(l4 + 2); this.l4Flags = dv.getUint8(l4 + TCP_FLAGS);
      return true;
    }
    if (proto === IPPROTO_UDP) {
      if (end - l4 < 8) return false;
      this.l4Sport = dv.getUint16(l4); this.l4Dport = dv.getUint16(l4 + 2);
      return true;
    }
    if (proto === IPPROTO_ICMP) {
      if (end - l4 < ICMP_HEADER_LEN) return false;
      const type = dv.getUint8(l4);
      if (type === ICMP_ECHO_REQUEST || type === ICMP_ECHO_REPLY) {
        this.l4Sport = this.l4Dport = dv.getUint16(l4 + 4);
        return true;
      }
      this.l4Flags = type;   // an error: handled by relatedIcmp()
      return type === ICMP_DEST_UNREACH || type === ICMP_TIME_EXCEEDED;
    }
    return false;
  }

  /**
   * The conntrack and NAT stage. Packets of a tracked connection are rewritten the way the first
   * one was (or back, for replies); the first packet to a Service frontend picks a backend,
   * creates the connection and is rewritten (DNAT, plus SNAT to the gateway for hairpin and for
   * NodePort traffic under externalTrafficPolicy: Cluster, as kube-proxy masquerades). Returns
   * Drop.None to continue routing the (possibly rewritten) packet, or the reason it ends here.
   */
  private conntrackAndNat(slab: FrameSlab, inPort: number, off: number, tx: TxQueue): number {
    const dv = slab.dv, l3 = off + ETH_HEADER_LEN, ct = this.ct!;
    if (!this.parseL4(dv, slab.u8, l3)) {
      // Fragments and untracked protocols are judged packet by packet (port-less rules only).
      if (this.policy !== undefined && !this.policyAllows(dv.getUint8(l3 + IPV4_PROTO), dv.getUint32(l3 + IPV4_SRC), dv.getUint32(l3 + IPV4_DST), 0)) return Drop.PolicyDenied;
      return Drop.None;
    }
    const proto = this.l4Proto;
    if (proto === IPPROTO_ICMP && this.l4Flags !== 0) return this.relatedIcmp(slab, l3);
    const src = dv.getUint32(l3 + IPV4_SRC), dst = dv.getUint32(l3 + IPV4_DST);
    const sport = this.l4Sport, dport = this.l4Dport, now = this.nowMs;
    let idx = ct.lookup(proto, src, dst, sport, dport, now);
    if (idx >= 0) {
      const dir = ct.lastDir;
      if (this.tracing) this.note(Note.CtHit, idx, dir);
      const gen = this.policyGeneration;
      if (ct.policy[idx] !== gen) {
        // The verdict was given under other policies (or none): judge the connection again, as its
        // first packet would be judged now (the translated original direction). A denied
        // connection keeps its entry, marked -generation, so packets from either end are dropped
        // (deleting it would let the peer's next packet open a reversed, unchecked connection).
        if (this.policy === undefined) ct.policy[idx] = gen;
        else if (ct.policy[idx] === -gen) {
          if (this.tracing) this.note(Note.StaleDenied);
          return Drop.PolicyDenied;
        } else if (this.policyAllows(proto, ct.replyDst[idx], ct.replySrc[idx], ct.replySport[idx])) ct.policy[idx] = gen;
        else { ct.policy[idx] = -gen; return Drop.PolicyDenied; }
      }
      ct.update(idx, dir, this.l4Flags, this.l4Len, now);
      if (ct.natFlags[idx] !== 0) {
        if (dir === CtDir.Original) this.rewrite(dv, l3, ct.replyDst[idx], ct.replySrc[idx], ct.replyDport[idx], ct.replySport[idx]);
        else this.rewrite(dv, l3, ct.origDst[idx], ct.origSrc[idx], ct.origDport[idx], ct.origSport[idx]);
        if (this.tracing) this.note(Note.NatFollowed, dir, l3);
      }
      return Drop.None;
    }
    const svc = this.services;
    const sp = svc === undefined || proto === IPPROTO_ICMP ? -1 : svc.frontend(proto, dst, dport, dst === this.routes.selfUnderlayIp);
    if (sp < 0) {
      // Not a Service: with NetworkPolicy in force, the first packet is classified and an allowed
      // connection tracked, so its later packets and its replies pass without a second look.
      // Only a connection's first packet opens an entry: for TCP a SYN. A mid-stream segment with no
      // entry (a connection older than the daemon) is judged on its own and not tracked, so it can
      // never open a reversed entry that would let the other end's packets skip the policy.
      const opening = proto !== IPPROTO_TCP || (this.l4Flags & (TCP_SYN | TCP_ACK_FLAG | TCP_RST)) === TCP_SYN;
      if (this.tracing) this.note(Note.CtNew, opening ? 1 : 0);
      if (this.trace !== undefined && opening) this.trace.sawNewConnection = true;
      if (this.policy !== undefined && !this.policyAllows(proto, src, dst, dport)) { if (opening) this.flow('denied', proto, src, dst, sport, dport, -1, -1); return Drop.PolicyDenied; }
      if (this.dryRun || !opening) return Drop.None;
      // Tracked even while no policy exists, so that the first policy to arrive can judge it.
      idx = ct.create(proto, src, dst, sport, dport, dst, src, dport, sport, now);
      ct.policy[idx] = this.policyGeneration;
      ct.update(idx, CtDir.Original, this.l4Flags, this.l4Len, now);
      this.flow('new', proto, src, dst, sport, dport, -1, -1);
      return Drop.None;
    }
    if (svc === undefined) return Drop.None;
    if (proto === IPPROTO_TCP && (this.l4Flags & (TCP_SYN | TCP_ACK_FLAG | TCP_RST)) !== TCP_SYN) return Drop.ConntrackInvalid;
    const nodePort = svc.lastWasNodePort;
    const external = inPort === HOST_PORT && src !== this.routes.selfUnderlayIp;
    const localOnly = (nodePort || external) && svc.externalLocal[sp] === 1;
    const hash = flowHash5(src, dst, proto, sport, dport);
    if (this.trace !== undefined) this.trace.sawNewConnection = true;
    const rrBefore = svc.rrCursor[sp];
    const k = svc.select(sp, src, sport, hash, now, localOnly);
    if (this.dryRun) svc.undoSelect(sp, k, rrBefore);
    if (k < 0) {
      if (this.tracing) this.note(Note.ServiceReject, sp, localOnly ? 1 : 0, proto);
      this.flow('denied', proto, src, dst, sport, dport, sp, -1);
      this.reject(slab, inPort, off, tx);
      return Drop.ServiceNoEndpoints;
    }
    if (this.tracing) this.note(Note.Service, sp, k, rrBefore, (localOnly ? 1 : 0) | (nodePort ? 2 : 0));
    const set = svc.backends[sp], bip = set.ips[k], bport = set.ports[k];
    // Source NAT: a pod reaching itself through its Service (hairpin) would see its own address as
    // the source and drop the packet; traffic from outside the cluster must return through this node.
    const snat = bip === src || ((nodePort || external) && !localOnly);
    const natSrc = snat ? this.routes.gatewayIp : src;
    const natSport = snat ? this.freeSnatPort(proto, bip, bport, natSrc, sport) : sport;
    if (this.tracing) this.note(Note.Dnat, dst, dport, bip, bport, snat ? 1 : 0, src, sport, natSrc, natSport);
    // Policy sees the translated packet, as kube-proxy plus a CNI plugin would.
    if (this.policy !== undefined && !this.policyAllows(proto, natSrc, bip, bport)) { this.flow('denied', proto, src, dst, sport, dport, sp, k); return Drop.PolicyDenied; }
    if (this.dryRun) { this.rewrite(dv, l3, natSrc, bip, natSport, bport); return Drop.None; }
    idx = ct.create(proto, src, dst, sport, dport, bip, natSrc, bport, natSport, now);
    ct.natFlags[idx] = CT_NAT_DNAT | (snat ? CT_NAT_SNAT : 0);
    ct.policy[idx] = this.policyGeneration;
    ct.service[idx] = sp; ct.backend[idx] = k;
    ct.update(idx, CtDir.Original, this.l4Flags, this.l4Len, now);
    this.rewrite(dv, l3, natSrc, bip, natSport, bport);
    this.flow('new', proto, src, dst, sport, dport, sp, k);
    return Drop.None;
  }

  /**
   * NetworkPolicy for a new connection, enforced for this node's own pods only: egress when the
   * source is a local pod, ingress when the destination is. (The other end's node enforces the
   * other end.) Two constant-time classifications at most.
   */
  private policyAllows(proto: number, src: number, dst: number, dport: number): boolean {
    const pol = this.policy!;
    // Traffic this node source-translated to its gateway address is the node's own traffic.
    if (src === this.routes.gatewayIp) src = this.routes.selfUnderlayIp;
    if (this.routes.localPort(src) >= 0) {
      const side = pol.classifyDirection(PolicyDir.Egress, src, dst, proto, dport);
      if (this.tracing) this.note(Note.PolicyEgress, src, side, pol.lastEgressRule);
      if (side === PolicySide.Denied) { this.lastDeniedDir = PolicyDir.Egress; if (!this.dryRun) this.policyDenied[PolicyDir.Egress]++; return false; }
      if (side === PolicySide.AllowedByRule && !this.dryRun && pol.lastEgressRule < 65536) this.policyRuleHits[pol.lastEgressRule]++;
    }
    if (this.routes.localPort(dst) >= 0) {
      const side = pol.classifyDirection(PolicyDir.Ingress, dst, src, proto, dport);
      if (this.tracing) this.note(Note.PolicyIngress, dst, side, pol.lastIngressRule);
      if (side === PolicySide.Denied) { this.lastDeniedDir = PolicyDir.Ingress; if (!this.dryRun) this.policyDenied[PolicyDir.Ingress]++; return false; }
      if (side === PolicySide.AllowedByRule && !this.dryRun && pol.lastIngressRule < 65536) this.policyRuleHits[pol.lastIngressRule]++;
    }
    return true;
  }

  /**
   * Put a stage's decision into the trace, in words. The hot functions only call this behind
   * `if (this.tracing)` with numbers; all the formatting lives here, off the hot path, so the stages
   * stay small enough for V8 to optimise as if tracing did not exist.
   */
  private note(kind: number, a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0, i = 0): void {
    const t = this.trace!, routes = this.routes, svc = this.services;
    switch (kind) {
      case Note.AntiSpoof: return t.step('anti-spoof', `pod ${this.ports.label[a]}: source MAC and IP are its own`);
      case Note.ToRouter: return t.step('l2', 'to the gateway\'s router MAC: routed');
      case Note.Decap: return t.step('decap', `VXLAN VNI ${this.cfg.vni} from node ${routes.nodes[a]?.name ?? '?'} (${u32(b)}): member, header valid`);
      case Note.Fdb: return t.step('bridge', a >= 0 ? `FDB hit: destination MAC on port ${a} (${this.ports.label[a]})` : 'FDB miss: flooded to the node\'s pods');
      case Note.Flood: return t.step('bridge', `broadcast/multicast: flooded to ${this.podPorts.length - 1} other pod(s)`);
      case Note.Arp: return t.step('arp', `who-has ${u32(routes.gatewayIp)} (the gateway): answered with the router MAC`);
      case Note.CtHit: {
        const ct = this.ct!;
        return t.step('conntrack', `tracked connection #${a}, ${b === CtDir.Original ? 'original' : 'reply'} direction, ${CT_STATE_NAMES[ct.state[a]] ?? ct.state[a]}${ct.natFlags[a] ? ', translated' : ''}`);
      }
      case Note.StaleDenied: return t.step('policy', 'connection denied by NetworkPolicy when policies last changed');
      case Note.NatFollowed: {
        const dv = this.traceDv!;
        return t.step('nat', `${a === CtDir.Original ? 'as the first packet' : 'reverse'}: now ${u32(dv.getUint32(b + IPV4_SRC))}:${dv.getUint16(this.l4Off)} → ${u32(dv.getUint32(b + IPV4_DST))}:${dv.getUint16(this.l4Off + 2)}`);
      }
      case Note.CtNew: return t.step('conntrack', a ? 'no tracked connection: a new one' : 'no tracked connection, and not a SYN: judged alone, not tracked');
      case Note.ServiceReject: return t.step('service', `${svc!.specs[a]!.key}: no ${b ? 'local ' : ''}ready endpoint: rejected (${c === IPPROTO_TCP ? 'TCP RST' : 'ICMP port unreachable'})`);
      case Note.Service: {
        const set = svc!.backends[a], localOnly = (d & 1) !== 0, n = localOnly ? set.local.length : set.ips.length;
        return t.step('service', `${svc!.specs[a]!.key}${d & 2 ? ' (NodePort)' : ''}: ${LB_NAMES[svc!.algorithm[a]]}${svc!.algorithm[a] === 0 ? ` position ${c % n}` : ''} of ${n}${localOnly ? ' local' : ''} backend(s)${svc!.lastAffinityHit ? ', session affinity hit' : ''} → ${u32(set.ips[b])}:${set.ports[b]} (${this.describe(set.ips[b])})`);
      }
      case Note.Dnat: return t.step('nat', `DNAT ${u32(a)}:${b} → ${u32(c)}:${d}${e ? `; SNAT ${u32(f)}:${g} → ${u32(h)}:${i} (${c === f ? 'hairpin' : 'from outside the cluster'})` : ''}`);
      case Note.PolicyEgress: return t.step('policy', `egress of ${this.describe(a)}: ${this.sideText(b, c)}`);
      case Note.PolicyIngress: return t.step('policy', `ingress of ${this.describe(a)}: ${this.sideText(b, c)}`);
      case Note.RouteGateway: return t.step('route', `${u32(a)} is the gateway: answered by the daemon`);
      case Note.Ttl: return t.step('ttl', 'TTL 1 would reach 0');
      case Note.RouteLocal: return t.step('route', `${u32(a)} is local pod ${this.ports.label[b]} (port ${b})`);
      case Note.RouteHost: return t.step('route', `${u32(a)}: this node or outside the cluster → the node's kernel (host port)`);
      case Note.RouteRemote: return t.step('route', `${u32(a)} → node ${routes.nodes[b]?.name} via its VTEP ${u32(routes.nodeUnderlay[b])}`);
      case Note.Mtu: return t.step('mtu', `packet ${a} B > overlay MTU ${this.overlayMtu} B${b ? ' with DF set' : ' without DF'}`);
      case Note.RouteHostUnreachable: return t.step('route', `${u32(a)} is in this node's pod CIDR but no pod has it`);
      case Note.RouteNone: return t.step('route', `${u32(a)}: no route (in the cluster CIDR, but no node owns it)`);
      case Note.EncapGso: return t.step('encap', `VXLAN VNI ${this.cfg.vni}: ${u32(routes.selfUnderlayIp)} → ${u32(routes.nodeUnderlay[a])}:${this.cfg.vxlanPort} (flow hash ${(b >>> 0).toString(16).padStart(8, '0')} picks the source port), inner to VTEP MAC ${macText(routes.nodeVtepHi[a], routes.nodeVtepLo[a])}, ${this.gsoSize ? `super-frame of ${c} B sent as segments of ${this.gsoSize} B payload` : `${c + VXLAN_OVERHEAD_INNER} B ≤ underlay MTU ${this.cfg.underlayMtu}`}`);
      case Note.Encap: return t.step('encap', `VXLAN VNI ${this.cfg.vni}: ${u32(routes.selfUnderlayIp)}:${b} → ${u32(routes.nodeUnderlay[a])}:${this.cfg.vxlanPort}, inner to VTEP MAC ${macText(routes.nodeVtepHi[a], routes.nodeVtepLo[a])}, ${c} B ≤ underlay MTU ${this.cfg.underlayMtu}`);
    }
  }

  /** A policy decision in words: which NetworkPolicy and rule, or isolation with no match. */
  private sideText(side: number, rule: number): string {
    switch (side) {
      case PolicySide.NotIsolated: return 'not isolated (no NetworkPolicy selects it in this direction): allowed';
      case PolicySide.AllowedOwnNode: return 'its own node: always allowed';
      case PolicySide.AllowedSelf: return 'itself: always allowed';
      case PolicySide.AllowedByRule: {
        const info = this.policy!.ruleInfo(rule);
        return `allowed by NetworkPolicy ${info.namespace}/${info.name} ${info.direction.toLowerCase()} rule ${info.ruleIndex}`;
      }
      case PolicySide.Denied: return 'isolated by NetworkPolicy and no rule allows it: denied';
      default: return 'not a pod';
    }
  }

  /** Report a connection event to the flow log, if one is attached (once per connection, never per packet). */
  private flow(event: 'new' | 'denied', proto: number, src: number, dst: number, sport: number, dport: number, svc: number, backend: number): void {
    if (this.onFlow === undefined || this.dryRun) return;
    let detail = '';
    if (event === 'denied' && this.policy !== undefined && this.lastDeniedDir >= 0) {
      detail = this.lastDeniedDir === PolicyDir.Egress ? 'egress' : 'ingress';
    }
    this.onFlow(event, proto, src, dst, sport, dport, svc, backend, detail);
  }

  /** Begin tracing this frame if it matches the session's filter (only called while one is attached). */
  private traceStart(slab: FrameSlab, inPort: number, off: number, len: number): void {
    const t = this.trace!;
    if (t.done || t.current !== undefined) return;
    const dv = slab.dv, end = off + len;
    let src = 0, dst = 0, proto = 0, sport = 0, dport = 0;
    if (len >= 34 && dv.getUint16(off + 12) === ETHERTYPE_IPV4) {
      const l3 = off + 14, ihl = (dv.getUint8(l3) & 0x0f) << 2;
      src = dv.getUint32(l3 + 12); dst = dv.getUint32(l3 + 16); proto = dv.getUint8(l3 + 9);
      if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && l3 + ihl + 4 <= end) { sport = dv.getUint16(l3 + ihl); dport = dv.getUint16(l3 + ihl + 2); }
    } else if (len >= 42 && dv.getUint16(off + 12) === ETHERTYPE_ARP) {
      src = dv.getUint32(off + 14 + ARP_SPA); dst = dv.getUint32(off + 14 + ARP_TPA);
    }
    if (!t.matches(inPort, src, dst, proto, sport, dport)) return;
    this.tracing = true;
    this.traceDv = dv;
    t.begin(`port ${inPort} (${this.ports.label[inPort] || '?'})`, len > 0 ? formatFrame(slab.u8, off, end, false) : 'empty frame');
  }

  private traceEnd(verdict: number): void {
    const t = this.trace!;
    const dropped = verdict !== Drop.None && verdict !== Drop.LocalDelivered;
    t.end(verdict === Drop.None ? 'forwarded' : verdict === Drop.LocalDelivered ? 'answered by the daemon' : `dropped: ${DROP_INFO[verdict].label} (${DROP_INFO[verdict].meaning})`, dropped);
    this.tracing = false;
    if (t.done && !t.synthetic) this.trace = undefined;
  }

  /** A source port for SNAT to `natSrc` whose reply tuple is not already in use. */
  private freeSnatPort(proto: number, bip: number, bport: number, natSrc: number, want: number): number {
    const ct = this.ct!;
    let port = want;
    for (let i = 0; i < 64; i++) {
      if (ct.lookup(proto, bip, natSrc, bport, port, this.nowMs) < 0) return port;
      port = 32768 + ((Math.imul(want + i + 1, 0x9e3779b1) >>> 0) % 28232);
    }
    return port;
  }

  /**
   * Rewrite addresses and ports of the packet at `l3` (whose transport header parseL4 read),
   * patching every checksum incrementally (RFC 1624): the IPv4 header's, and TCP's or UDP's
   * pseudo-header and port words (a UDP checksum of 0, "none", stays 0).
   */
  private rewrite(dv: DataView, l3: number, nSrc: number, nDst: number, nSport: number, nDport: number): void {
    const l4 = this.l4Off, proto = this.l4Proto;
    const oSrc = dv.getUint32(l3 + IPV4_SRC), oDst = dv.getUint32(l3 + IPV4_DST);
    if (this.csumPartial && (proto === IPPROTO_TCP || proto === IPPROTO_UDP)) {
      // A partial checksum (VIRTIO_NET_HDR_F_NEEDS_CSUM) holds only the pseudo-header sum, not
      // complemented; whoever completes it sums the header with the ports as they are then. So an
      // address change updates the sum without complementing, and a port change needs nothing.
      const c = l4 + (proto === IPPROTO_TCP ? 16 : 6);
      if (oSrc !== nSrc) { ipv4SetSrc(dv, l3, nSrc); dv.setUint16(c, partialUpdate32(dv.getUint16(c), oSrc, nSrc)); }
      if (oDst !== nDst) { ipv4SetDst(dv, l3, nDst); dv.setUint16(c, partialUpdate32(dv.getUint16(c), oDst, nDst)); }
      dv.setUint16(l4, nSport); dv.setUint16(l4 + 2, nDport);
      return;
    }
    if (oSrc !== nSrc) {
      ipv4SetSrc(dv, l3, nSrc);
      if (proto === IPPROTO_TCP) tcpUpdateChecksumForAddr(dv, l4, oSrc, nSrc);
      else if (proto === IPPROTO_UDP) udpUpdateChecksumForAddr(dv, l4, oSrc, nSrc);
    }
    if (oDst !== nDst) {
      ipv4SetDst(dv, l3, nDst);
      if (proto === IPPROTO_TCP) tcpUpdateChecksumForAddr(dv, l4, oDst, nDst);
      else if (proto === IPPROTO_UDP) udpUpdateChecksumForAddr(dv, l4, oDst, nDst);
    }
    if (proto === IPPROTO_TCP) {
      if (dv.getUint16(l4) !== nSport) tcpSetSrcPort(dv, l4, nSport);
      if (dv.getUint16(l4 + 2) !== nDport) tcpSetDstPort(dv, l4, nDport);
    } else if (proto === IPPROTO_UDP) {
      if (dv.getUint16(l4) !== nSport) udpSetSrcPort(dv, l4, nSport);
      if (dv.getUint16(l4 + 2) !== nDport) udpSetDstPort(dv, l4, nDport);
    }
  }

  /**
   * An ICMP error about a tracked, translated connection (RFC 5508 §4.2 asks NATs for this): the
   * quoted packet is translated back to what the receiver sent, and the outer addresses too, so a
   * client learns "port unreachable" or "fragmentation needed" about the ClusterIP it used.
   */
  private relatedIcmp(slab: FrameSlab, l3: number): number {
    const dv = slab.dv, u8 = slab.u8, ct = this.ct!, icmp = this.l4Off, end = l3 + dv.getUint16(l3 + 2);
    const inner = icmp + ICMP_HEADER_LEN;
    if (end - inner < 28) return Drop.None;
    const ihl = (dv.getUint8(inner) & 0x0f) << 2;
    if ((dv.getUint8(inner) >>> 4) !== 4 || ihl < 20 || inner + ihl + 8 > end) return Drop.None;
    const proto = dv.getUint8(inner + IPV4_PROTO);
    if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return Drop.None;
    const iSrc = dv.getUint32(inner + IPV4_SRC), iDst = dv.getUint32(inner + IPV4_DST);
    const iSport = dv.getUint16(inner + ihl), iDport = dv.getUint16(inner + ihl + 2);
    // The quoted packet went from the error's receiver; its reverse is a packet toward it.
    const idx = ct.lookup(proto, iDst, iSrc, iDport, iSport, this.nowMs);
    if (idx < 0 || ct.natFlags[idx] === 0) return Drop.None;
    const toOriginalSide = ct.lastDir === CtDir.Reply;
    const wantSrc = toOriginalSide ? ct.origSrc[idx] : ct.replySrc[idx], wantDst = toOriginalSide ? ct.origDst[idx] : ct.replyDst[idx];
    const wantSport = toOriginalSide ? ct.origSport[idx] : ct.replySport[idx], wantDport = toOriginalSide ? ct.origDport[idx] : ct.replyDport[idx];
    // Quoted header: as the receiver sent it.
    dv.setUint32(inner + IPV4_SRC, wantSrc); dv.setUint32(inner + IPV4_DST, wantDst);
    ipv4WriteChecksum(dv, u8, inner);
    dv.setUint16(inner + ihl, wantSport); dv.setUint16(inner + ihl + 2, wantDport);
    // Outer header: from where the receiver believes its peer is, to the receiver itself.
    const oSrc = dv.getUint32(l3 + IPV4_SRC), oDst = dv.getUint32(l3 + IPV4_DST);
    if (oSrc === iDst) ipv4SetSrc(dv, l3, wantDst);
    if (oDst === iSrc) ipv4SetDst(dv, l3, wantSrc);
    dv.setUint16(icmp + ICMP_CHECKSUM, 0);
    dv.setUint16(icmp + ICMP_CHECKSUM, internetChecksum(u8, icmp, end - icmp));
    return Drop.None;
  }

  /**
   * Refuse a new connection to a Service with no ready endpoint at once, as kube-proxy's REJECT
   * rule does: a TCP RST for TCP, ICMP port unreachable otherwise, sent from the Service address.
   */
  private reject(slab: FrameSlab, inPort: number, off: number, tx: TxQueue): void {
    const dv = slab.dv, l3 = off + ETH_HEADER_LEN;
    if (this.l4Proto !== IPPROTO_TCP) {
      this.icmpError(slab, inPort, off, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, 0, tx);
      return;
    }
    const g = slab.allocGenerated();
    if (g < 0) return;
    const gl3 = g + ETH_HEADER_LEN, gl4 = gl3 + 20, l4 = this.l4Off;
    const seq = dv.getUint32(l4 + 4), payload = dv.getUint16(l3 + 2) - (l4 - l3) - ((dv.getUint8(l4 + 12) >>> 4) << 2);
    dv.setUint32(g, 0); dv.setUint32(g + 4, 0); dv.setUint32(g + 8, 0);
    dv.setUint16(g + 12, ETHERTYPE_IPV4);
    dv.setUint32(gl3, 0x45000000 | 40);
    dv.setUint32(gl3 + 4, 0x00004000);
    dv.setUint32(gl3 + 8, 0x40060000);
    dv.setUint32(gl3 + IPV4_SRC, dv.getUint32(l3 + IPV4_DST));
    dv.setUint32(gl3 + IPV4_DST, dv.getUint32(l3 + IPV4_SRC));
    ipv4WriteChecksum(dv, slab.u8, gl3);
    dv.setUint16(gl4, this.l4Dport); dv.setUint16(gl4 + 2, this.l4Sport);
    dv.setUint32(gl4 + 4, 0);
    dv.setUint32(gl4 + 8, (seq + payload + 1) >>> 0);         // RFC 9293 §3.10.7.1: ack the SYN
    dv.setUint16(gl4 + 12, 0x5000 | TCP_RST | TCP_ACK_FLAG);
    dv.setUint32(gl4 + 14, 0); dv.setUint16(gl4 + 18, 0);     // window 0, checksum 0, urgent 0
    const pseudo = pseudoHeaderSum(dv.getUint32(gl3 + IPV4_SRC), dv.getUint32(gl3 + IPV4_DST), IPPROTO_TCP, 20);
    dv.setUint16(gl4 + 16, foldComplement(onesSum(slab.u8, gl4, 20, pseudo)));
    this.route(slab, SELF, g, tx, true);
  }

  // ---------------------------------------------------------------------------------------------
  // L3: the router.
  // ---------------------------------------------------------------------------------------------

  /**
   * Route the IPv4 packet of the Ethernet frame at `off` (already checked by checkIpv4).
   * `originated` marks packets the daemon built itself: they keep their TTL.
   */
  private route(slab: FrameSlab, inPort: number, off: number, tx: TxQueue, originated: boolean): number {
    const dv = slab.dv, l3 = off + ETH_HEADER_LEN, routes = this.routes;
    if (this.ct !== undefined) {
      const nat = this.conntrackAndNat(slab, inPort, off, tx);
      if (nat !== Drop.None) return nat;
    }
    const dst = dv.getUint32(l3 + IPV4_DST);
    const totalLen = dv.getUint16(l3 + 2);
    const frameLen = ETH_HEADER_LEN + totalLen;   // drops any Ethernet padding
    const r = routes.lookup(dst);
    if (r === Route.Gateway) {
      if (this.tracing) this.note(Note.RouteGateway, dst);
      return this.toGateway(slab, inPort, off, tx);
    }
    if (!originated) {
      if (dv.getUint8(l3 + IPV4_TTL) <= 1) {
        if (this.tracing) this.note(Note.Ttl);
        this.icmpError(slab, inPort, off, ICMP_TIME_EXCEEDED, 0, 0, tx);
        return Drop.TtlExceeded;
      }
    }
    switch (r) {
      case Route.LocalPod: {
        const out = routes.resultPort;
        if (this.tracing) this.note(Note.RouteLocal, dst, out);
        if (!originated) ipv4DecrementTtl(dv, l3);
        this.setMacs(dv, off, this.ports.macHi[out], this.ports.macLo[out]);
        return tx.push(out, off, frameLen) ? Drop.None : Drop.TxQueueFull;
      }
      case Route.Host: {
        if (inPort === HOST_PORT) return Drop.NoRoute;   // never hand a packet back to the node that sent it
        if (this.tracing) this.note(Note.RouteHost, dst);
        if (!originated) ipv4DecrementTtl(dv, l3);
        this.setMacs(dv, off, this.cfg.hostMacHi, this.cfg.hostMacLo);
        return tx.push(HOST_PORT, off, frameLen) ? Drop.None : Drop.TxQueueFull;
      }
      case Route.RemoteNode: {
        if (inPort === OVERLAY_PORT) return Drop.NoRoute;   // no transit between nodes
        if (this.tracing) this.note(Note.RouteRemote, dst, routes.resultNode);
        // A super-frame leaves as segments of gsoSize payload each; that is what must fit.
        const wireLen = this.gsoSize !== 0 ? segmentWireLen(dv, l3, this.gsoSize) : totalLen;
        if (wireLen > this.overlayMtu) {
          if (this.tracing) this.note(Note.Mtu, wireLen, dv.getUint16(l3 + IPV4_FLAGS_FRAG) & IPV4_FLAG_DF);
          // RFC 1191: tell the sender the MTU of the next hop so TCP can shrink its segments.
          if ((dv.getUint16(l3 + IPV4_FLAGS_FRAG) & IPV4_FLAG_DF) !== 0) {
            this.icmpError(slab, inPort, off, ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED, this.overlayMtu, tx);
          }
          return Drop.FragNeeded;
        }
        if (!originated) ipv4DecrementTtl(dv, l3);
        return this.encapsulate(slab, off, frameLen, routes.resultNode, tx);
      }
      case Route.HostUnreachable:
        if (this.tracing) this.note(Note.RouteHostUnreachable, dst);
        this.icmpError(slab, inPort, off, ICMP_DEST_UNREACH, ICMP_CODE_HOST_UNREACH, 0, tx);
        return Drop.HostUnreachable;
      default:
        if (this.tracing) this.note(Note.RouteNone, dst);
        this.icmpError(slab, inPort, off, ICMP_DEST_UNREACH, ICMP_CODE_NET_UNREACH, 0, tx);
        return Drop.NoRoute;
    }
  }

  /** Rewrite the Ethernet addresses of a routed frame: from the router, to the next hop. */
  private setMacs(dv: DataView, off: number, dstHi: number, dstLo: number): void {
    dv.setUint16(off, dstHi); dv.setUint32(off + 2, dstLo);
    dv.setUint16(off + 6, this.cfg.routerMacHi); dv.setUint32(off + 8, this.cfg.routerMacLo);
  }

  /**
   * VXLAN encapsulation (RFC 7348 §5) into the headroom in front of the frame:
   *
   *   [ outer IPv4 20 | outer UDP 8 | VXLAN 8 | inner Ethernet frame ... ]
   *
   * The inner frame is addressed to the remote node's VTEP MAC (Flannel's L3 scheme: no flooding
   * and no ARP across the overlay). The outer UDP source port is a hash of the inner flow, as
   * Linux's udp_flow_src_port does, so underlay ECMP can spread flows. The outer UDP checksum is
   * zero (allowed by RFC 7348 for IPv4); the kernel fills the outer IP checksum and ID.
   */
  private encapsulate(slab: FrameSlab, off: number, frameLen: number, node: number, tx: TxQueue): number {
    const dv = slab.dv, routes = this.routes, l3 = off + ETH_HEADER_LEN;
    this.setMacs(dv, off, routes.nodeVtepHi[node], routes.nodeVtepLo[node]);
    const proto = dv.getUint8(l3 + IPV4_PROTO);
    const ihl = (dv.getUint8(l3) & 0x0f) << 2;
    let sport = 0, dport = 0;
    if ((proto === IPPROTO_TCP || proto === IPPROTO_UDP) && (dv.getUint16(l3 + IPV4_FLAGS_FRAG) & 0x1fff) === 0
        && ihl + 4 <= dv.getUint16(l3 + 2)) {
      sport = dv.getUint16(l3 + ihl); dport = dv.getUint16(l3 + ihl + 2);
    }
    const hash = flowHash5(dv.getUint32(l3 + IPV4_SRC), dv.getUint32(l3 + IPV4_DST), proto, sport, dport);
    if (this.vnet) {
      // The addon segments a super-frame, adds VXLAN headers and sends from the socket the hash picks.
      this.counters.vxlanEncap++;
      if (this.tracing) this.note(Note.EncapGso, node, hash, frameLen);
      return tx.push(OVERLAY_PORT, off, frameLen, routes.nodeUnderlay[node], hash) ? Drop.None : Drop.TxQueueFull;
    }
    const o = off - VXLAN_OVERHEAD_INNER;
    const underlayLen = VXLAN_OVERHEAD_INNER + frameLen;
    // Outer IPv4: version 4, IHL 5; DF set so the underlay never fragments silently.
    dv.setUint32(o, 0x45000000 | underlayLen);
    dv.setUint32(o + 4, 0x00004000);
    dv.setUint32(o + 8, 0x40110000);            // TTL 64, protocol UDP, checksum filled by the kernel
    dv.setUint32(o + 12, routes.selfUnderlayIp);
    dv.setUint32(o + 16, routes.nodeUnderlay[node]);
    // Outer UDP.
    dv.setUint16(o + 20, vxlanSourcePort(hash));
    dv.setUint16(o + 22, this.cfg.vxlanPort);
    dv.setUint16(o + 24, underlayLen - 20);
    dv.setUint16(o + 26, 0);
    // VXLAN: I flag, VNI in the top 24 bits of the second word.
    dv.setUint32(o + 28, 0x08000000);
    dv.setUint32(o + 32, (this.cfg.vni << 8) >>> 0);
    this.counters.vxlanEncap++;
    if (this.tracing) this.note(Note.Encap, node, dv.getUint16(o + 20), underlayLen);
    return tx.push(OVERLAY_PORT, o, underlayLen, routes.nodeUnderlay[node]) ? Drop.None : Drop.TxQueueFull;
  }

  /** A packet for the gateway address itself: answer ping in place; refuse other protocols. */
  private toGateway(slab: FrameSlab, inPort: number, off: number, tx: TxQueue): number {
    const dv = slab.dv, l3 = off + ETH_HEADER_LEN;
    const ihl = (dv.getUint8(l3) & 0x0f) << 2, totalLen = dv.getUint16(l3 + 2);
    const proto = dv.getUint8(l3 + IPV4_PROTO), icmp = l3 + ihl;
    if (proto === IPPROTO_ICMP && totalLen - ihl >= ICMP_HEADER_LEN && (dv.getUint16(l3 + IPV4_FLAGS_FRAG) & 0x3fff) === 0
        && dv.getUint8(icmp) === ICMP_ECHO_REQUEST) {
      if (internetChecksum(slab.u8, icmp, totalLen - ihl) !== 0) return Drop.IcmpBadChecksum;
      // Echo reply (RFC 792): swap the addresses, type 8 → 0, patch the checksum (RFC 1624).
      const src = dv.getUint32(l3 + IPV4_SRC);
      dv.setUint32(l3 + IPV4_SRC, this.routes.gatewayIp);
      dv.setUint32(l3 + IPV4_DST, src);
      dv.setUint8(l3 + IPV4_TTL, 64);
      ipv4WriteChecksum(dv, slab.u8, l3);
      const oldWord = dv.getUint16(icmp);
      dv.setUint8(icmp, ICMP_ECHO_REPLY);
      dv.setUint16(icmp + ICMP_CHECKSUM, checksumUpdate16(dv.getUint16(icmp + ICMP_CHECKSUM), oldWord, dv.getUint16(icmp)));
      this.counters.localReplies++;
      if (src === this.routes.gatewayIp) return Drop.SpoofedSrcIp;
      const r = this.route(slab, SELF, off, tx, true);
      return r === Drop.None ? Drop.LocalDelivered : r;
    }
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      if (proto === IPPROTO_TCP && checkTcp(dv, slab.u8, icmp, l3 + totalLen, 0, 0, false) !== Drop.None) return Drop.TcpTruncated;
      this.icmpError(slab, inPort, off, ICMP_DEST_UNREACH, ICMP_CODE_PORT_UNREACH, 0, tx);
    }
    return Drop.LocalDelivered;
  }

  /**
   * Send an ICMP error about the packet at `off` back to its source (RFC 792, RFC 1812 §4.3.2):
   * never about an ICMP error, a non-first fragment, or a packet from 0.0.0.0 or to a broadcast
   * address; at most `icmpErrorsPerSecond`; quoting the original IP header and as much of its
   * payload as fits in 576 bytes. The error is built in a generated slot and routed like any
   * packet, so it reaches a local pod, the node or another node alike.
   */
  private icmpError(slab: FrameSlab, inPort: number, off: number, type: number, code: number, mtu: number, tx: TxQueue): void {
    if (inPort === SELF) return;
    const dv = slab.dv, u8 = slab.u8, l3 = off + ETH_HEADER_LEN;
    const src = dv.getUint32(l3 + IPV4_SRC), dst = dv.getUint32(l3 + IPV4_DST);
    if (src === 0 || dst === 0xffffffff || (dst >>> 28) === 0xe) return;
    if ((dv.getUint16(l3 + IPV4_FLAGS_FRAG) & 0x1fff) !== 0) return;
    const ihl = (dv.getUint8(l3) & 0x0f) << 2;
    if (dv.getUint8(l3 + IPV4_PROTO) === IPPROTO_ICMP) {
      const t = dv.getUint8(l3 + ihl);
      if (t !== ICMP_ECHO_REQUEST && t !== ICMP_ECHO_REPLY) return;
    }
    if (this.icmpTokens < 1) { this.counters.icmpErrorsRateLimited++; return; }
    const g = slab.allocGenerated();
    if (g < 0) { this.counters.icmpErrorsRateLimited++; return; }
    this.icmpTokens--;
    const quoteLen = Math.min(dv.getUint16(l3 + 2), 576 - 20 - ICMP_HEADER_LEN);
    const gl3 = g + ETH_HEADER_LEN, gicmp = gl3 + 20;
    const total = 20 + ICMP_HEADER_LEN + quoteLen;
    dv.setUint32(g, 0); dv.setUint32(g + 4, 0); dv.setUint32(g + 8, 0);   // MACs set by route()
    dv.setUint16(g + 12, ETHERTYPE_IPV4);
    dv.setUint32(gl3, 0x45c00000 | total);        // TOS 0xc0 (internetwork control), as Linux sends
    dv.setUint32(gl3 + 4, 0);
    dv.setUint32(gl3 + 8, 0x40010000);            // TTL 64, protocol ICMP
    dv.setUint32(gl3 + IPV4_SRC, this.routes.gatewayIp);
    dv.setUint32(gl3 + IPV4_DST, src);
    ipv4WriteChecksum(dv, u8, gl3);
    dv.setUint8(gicmp, type); dv.setUint8(gicmp + 1, code);
    dv.setUint16(gicmp + 2, 0);
    dv.setUint32(gicmp + 4, mtu & 0xffff);        // unused, or next-hop MTU (RFC 1191)
    u8.copyWithin(gicmp + ICMP_HEADER_LEN, l3, l3 + quoteLen);
    dv.setUint16(gicmp + 2, internetChecksum(u8, gicmp, ICMP_HEADER_LEN + quoteLen));
    this.counters.icmpErrorsSent++;
    // The error is routed like any packet, but its own route is not part of this packet's story.
    const tracing = this.tracing;
    if (tracing) this.trace!.step('icmp', `sent ICMP type ${type} code ${code}${mtu ? ` (next-hop MTU ${mtu})` : ''} to ${u32(src)}`);
    this.tracing = false;
    this.route(slab, SELF, g, tx, true);
    this.tracing = tracing;
  }
}

/** Update a partial (uncomplemented) checksum for a 32-bit pseudo-header field change. */
function partialUpdate32(partial: number, oldU32: number, newU32: number): number {
  return ~checksumUpdate32(~partial & 0xffff, oldU32, newU32) & 0xffff;
}

/** Bytes on the wire per segment of a TCP/UDP super-frame: IP header + L4 header + gsoSize. */
function segmentWireLen(dv: DataView, l3: number, gsoSize: number): number {
  const ihl = (dv.getUint8(l3) & 0x0f) << 2;
  const proto = dv.getUint8(l3 + IPV4_PROTO);
  const l4hdr = proto === IPPROTO_TCP ? (dv.getUint8(l3 + ihl + 12) >>> 4) << 2 : 8;
  return ihl + l4hdr + gsoSize;
}

const u32 = formatIpv4Addr;
const macText = formatMac;
const CT_STATE_NAMES = ['NEW', 'SYN_SENT', 'SYN_RECV', 'ESTABLISHED', 'FIN_WAIT', 'CLOSE_WAIT', 'LAST_ACK', 'TIME_WAIT', 'CLOSE', 'UDP_UNREPLIED', 'UDP_REPLIED', 'ICMP_UNREPLIED', 'ICMP_REPLIED'];

/** Frames read per device per wake-up. */
export const FRAMES_PER_READ = BATCH_MAX;
