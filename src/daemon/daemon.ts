/**
 * The podwire daemon: one per node. This is the one place where the layers are wired together.
 *
 *   control (manifests, IPAM, plumbing) ──writes──▶ tables (ports, routes, FDB)
 *   addon (TAP fds, UDP underlay, readiness) ──batches──▶ data plane ──TxQueue──▶ addon
 *
 * Lifecycle of a pod on this node (what kubelet + a CNI plugin would do):
 *   1. take an address from the node's pod CIDR (or the pinned one),
 *   2. create the pod's network namespace,
 *   3. open a TAP here (the daemon keeps its fd), move the link into the namespace, rename it eth0,
 *      give it the pod's MAC, MTU and address, a default route via the gateway, and bring it up,
 *   4. attach the fd as a port of the data plane, and watch it for frames,
 *   5. in lab mode, start the pod agent that serves every declared container port.
 * Deleting the pod undoes each step in reverse, and every step is rolled back if a later one fails,
 * so a failed apply leaves nothing behind (the CNI plugins' cmdAdd discipline).
 *
 * The node itself is reached through a host TAP (`podwire0`) in the node's namespace with a route
 * for the cluster CIDR via the gateway; the overlay is a UDP socket on port 4789 (receive) and a raw
 * IP socket (send, so the outer UDP source port can carry each flow's hash, as Linux does).
 */
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { loadAddon, openTunnelTap, OFFLOAD, type Addon, type TapHandle } from '../io/native.ts';
import { FrameSlab, TxQueue, SLOT_SIZE, HEADROOM, BATCH_MAX, VNET_HDR_LEN } from '../frame/slab.ts';
import { Fdb } from '../tables/fdb.ts';
import { PortTable, PortKind, HOST_PORT, OVERLAY_PORT } from '../tables/ports.ts';
import { RouteTable, prefixMask } from '../tables/routes.ts';
import { Counters } from '../dataplane/counters.ts';
import { Dataplane, VXLAN_MTU_OVERHEAD } from '../dataplane/pipeline.ts';
import { Drop, DROP_INFO } from '../wire/drop.ts';
import {
  parseManifests, objectKey, type ManifestObj, type PodObj, type NodeObj, type NamespaceObj,
  type ServiceObj, type EndpointSliceObj, type NetworkPolicyObj,
} from '../control/manifests.ts';
import { ServiceTable, LB_NAMES } from '../tables/services.ts';
import { Conntrack } from '../tables/conntrack.ts';
import { computeServicePorts, ServiceAllocator } from '../control/services.ts';
import { compilePolicies, updatePolicies, type CompiledPolicy } from '../policy/compiler.ts';
import type { ClusterView } from '../policy/model.ts';
import type { TraceFilter } from '../dataplane/trace.ts';
import { Explainer } from './explain.ts';
import { IPPROTO_UDP } from '../wire/ipv4.ts';
import { NodeIpam } from '../control/ipam.ts';
import { writeMac } from '../wire/ethernet.ts';
import {
  ipToU32, u32ToIp, parseCidr, macFromIp, macFromString, macToString, tapNameFor,
  POD_MAC_PREFIX, ROUTER_MAC_PREFIX, HOST_MAC_PREFIX, TUNNEL_MAC_PREFIX,
} from '../control/addressing.ts';
import { ipBatch, run, deleteNetns, spawn } from './sys.ts';

export interface DaemonOptions {
  nodeName: string;
  /** Node manifests (and anything else) applied before the daemon starts forwarding. */
  manifestText: string;
  clusterCidr: string;
  vni: number;
  vxlanPort: number;
  /** Prefix for pod namespace names: the pod's namespace is `<prefix><namespace>-<name>`. */
  netnsPrefix: string;
  adminSocket: string;
  /** Start the pod agent in each pod, serving its declared container ports (labs). */
  servePorts: boolean;
  hostIf: string;
  /** Underlay interface whose MTU the overlay follows; found from the node's address when empty. */
  underlayIf?: string;
  serviceCidr?: string;
  nodePortRange?: [number, number];
  conntrackEntries?: number;
  /** Write connection events as JSON lines here ('-' = stdout). */
  flowLog?: string;
  flowLogPerSecond?: number;
  /** Prometheus endpoint, host:port ('' = none). Defaults to the node's loopback, 127.0.0.1:9402. */
  metricsAddr?: string;
  /** Super-frames on TAPs (virtio-net header, checksum and TSO offloads) when the kernel allows: 'auto', or 'off'. */
  offload?: 'auto' | 'off';
  /**
   * Busy polling: after forwarding, keep polling every data fd for this many microseconds before
   * sleeping in epoll (0 = never). Trades idle CPU for latency; see `busyPoll()`.
   */
  busyPollMicros?: number;
  /**
   * The UDP-tunnel GSO path: 'auto' (default) writes TCP super-frames for other nodes whole into a
   * tunnel TAP (`tunnelIf`) when the kernel supports it (Linux >= 6.17), and the kernel segments
   * them; 'off' always segments in the addon. The node must forward (ip_forward, no FORWARD drop
   * for the underlay traffic): the packets enter the node's stack from the TAP and are routed out.
   */
  tunnelGso?: 'auto' | 'off';
  /** Name of that TAP (default `podwire-gso`). */
  tunnelIf?: string;
  log?: (line: string) => void;
}

/** What an apply did: a line per object, and what the daemon assigned (for the control plane to share). */
export interface ApplyResult {
  lines: string[];
  /** Pod key → its address; Service key → its ClusterIP and NodePorts. */
  assigned: Record<string, { podIP?: string; clusterIP?: string; nodePorts?: number[] }>;
}

export interface PodState {
  obj: PodObj;
  ip: string;
  netns: string;
  tapName: string;
  fd: number;
  port: number;
  watcher?: { stop(): void };
  agent?: ChildProcess;
}

/** The offloads podwire asks of every TAP in super-frame mode: checksum, TSO for IPv4 and IPv6. */
const TAP_OFFLOADS = OFFLOAD.CSUM | OFFLOAD.TSO4 | OFFLOAD.TSO6;

/** Busy polling hands the JS thread back to libuv this long after it began spinning... */
const HAND_BACK_DUE_MICROS = 5_000;
/** ...at the first gap of this long in the traffic (longer than a request's round trip here)... */
const HAND_BACK_GAP_MICROS = 1_000;
/** ...or at this point at the latest, gap or not. */
const HAND_BACK_FORCED_MICROS = 10_000;

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export class Daemon {
  readonly opts: DaemonOptions;
  private addon!: Addon;
  readonly ports = new PortTable(1024);
  readonly fdb = new Fdb(4096);
  readonly counters = new Counters(1024);
  readonly slab = new FrameSlab();
  readonly tx = new TxQueue(8192, 1024);
  readonly services = new ServiceTable(65536);
  ct!: Conntrack;
  allocator!: ServiceAllocator;
  readonly svcObjs = new Map<string, ServiceObj>();
  readonly slices = new Map<string, EndpointSliceObj>();
  readonly policies = new Map<string, NetworkPolicyObj>();
  /** Flow log, traces, captures, metrics (daemon/explain.ts). */
  readonly explain = new Explainer(this);
  routes!: RouteTable;
  dp!: Dataplane;
  self!: NodeObj;
  ipam!: NodeIpam;
  readonly nodes = new Map<string, NodeObj>();
  readonly namespaces = new Map<string, NamespaceObj>();
  /** Every pod of the cluster that this daemon was told about (key namespace/name). */
  readonly pods = new Map<string, PodObj>();
  /** Pods running on this node. */
  readonly local = new Map<string, PodState>();
  private hostFd = -1;
  /** Whether TAPs carry virtio-net headers with offloads (super-frames). */
  vnet = false;
  /** UDP sockets sending VXLAN in super-frame mode (the flow hash picks one: outer source-port entropy). */
  private udpSenders: Int32Array = new Int32Array(0);
  /** The tunnel TAP (-1: none) and its MAC, the outer Ethernet destination of what we write to it. */
  private tunnelFd = -1;
  private tunnelMac = new Uint8Array(6);
  private udpFd = -1;
  private rawFd = -1;
  private watchers: { stop(): void }[] = [];
  private server?: net.Server;
  private timers: NodeJS.Timeout[] = [];
  private underlayIf = '';
  private busy: Promise<unknown> = Promise.resolve();
  readonly log: (line: string) => void;

  constructor(opts: DaemonOptions) {
    this.opts = opts;
    this.log = opts.log ?? ((l) => process.stderr.write(`[podwire ${opts.nodeName}] ${l}\n`));
  }

  // ---------------------------------------------------------------------------------------------
  // Start and stop.
  // ---------------------------------------------------------------------------------------------

  async start(): Promise<void> {
    this.addon = loadAddon();
    const objs = parseManifests(this.opts.manifestText, 'startup manifests');
    const self = objs.find((o): o is NodeObj => o.kind === 'Node' && o.name === this.opts.nodeName);
    if (!self) throw new Error(`no Node manifest named ${this.opts.nodeName} among the startup manifests`);
    const dup = objs.find((o) => o.kind === 'Node' && o.name !== self.name && o.internalIP === self.internalIP);
    if (dup) throw new Error(`Node ${self.name}: status.addresses InternalIP ${self.internalIP} is also Node ${(dup as NodeObj).name}'s: every node needs its own underlay address`);
    this.self = self;
    const local = parseCidr(self.podCIDR), cluster = parseCidr(this.opts.clusterCidr);
    this.routes = new RouteTable(local.net, local.len, cluster.net, cluster.len);
    this.ipam = new NodeIpam(self.podCIDR);
    const selfIp = ipToU32(self.internalIP);
    const router = self.vtepMac ? macFromString(self.vtepMac) : macFromIp(ROUTER_MAC_PREFIX, selfIp);
    const host = macFromIp(HOST_MAC_PREFIX, selfIp);
    this.underlayIf = this.opts.underlayIf || (await this.findInterfaceWithAddress(self.internalIP));
    const underlayMtu = this.addon.getIfMtu(this.underlayIf);
    // Super-frames: open the host TAP with a virtio-net header and ask for checksum + TSO offloads;
    // if the kernel refuses, fall back to plain frames everywhere (one mode per node keeps every
    // path simple: a frame can go from any port to any port unchanged).
    let hostTap = this.addon.openTap(this.opts.hostIf, this.opts.offload !== 'off');
    if (hostTap.vnetHdr) {
      const err = this.addon.setOffload(hostTap.fd, TAP_OFFLOADS);
      if (err !== 0) {
        this.log(`TAP offloads refused (errno ${err}); using plain frames`);
        this.addon.closeFd(hostTap.fd);
        hostTap = this.addon.openTap(this.opts.hostIf, false);
      }
    }
    this.vnet = hostTap.vnetHdr;
    this.slab.vnet = this.vnet;
    this.dp = new Dataplane(this.ports, this.routes, this.fdb, this.counters, {
      routerMacHi: router.hi, routerMacLo: router.lo, hostMacHi: host.hi, hostMacLo: host.lo,
      vni: this.opts.vni, vxlanPort: this.opts.vxlanPort, underlayMtu, vnet: this.vnet,
    });
    this.ct = new Conntrack(this.opts.conntrackEntries ?? 65536);
    this.allocator = new ServiceAllocator(this.opts.serviceCidr ?? '10.96.0.0/12', ...(this.opts.nodePortRange ?? [30000, 32767]));
    this.dp.services = this.services;
    this.dp.ct = this.ct;
    this.dp.describe = (ip) => this.explain.describe(ip);
    if (this.opts.flowLog) this.explain.attachFlowLog(this.opts.flowLog, this.opts.flowLogPerSecond ?? 1000);

    // The overlay: receive on UDP 4789, send through a raw socket (we write the outer headers).
    this.udpFd = this.addon.openUdp(selfIp, this.opts.vxlanPort);
    this.rawFd = this.addon.openRawIp();
    if (this.vnet) {
      this.udpSenders = this.addon.openUdpSender(selfIp, 0, 16);
      this.addon.enableUdpGro(this.udpFd);
      if (this.opts.tunnelGso !== 'off') await this.setUpTunnelTap();
    }
    this.ports.attach(PortKind.Overlay, this.rawFd, 0, 0, selfIp, 'overlay', OVERLAY_PORT);
    const uw = new this.addon.FdWatcher(this.udpFd, () => { this.onOverlayReadable(); this.busyPoll(); });
    uw.start(); this.watchers.push(uw);

    // The host port: the node's kernel reaches the cluster through it.
    this.hostFd = hostTap.fd;
    await ipBatch([
      `link set dev ${this.opts.hostIf} address ${macToString(host)} mtu ${this.podMtu} up`,
      // Source the node's own traffic to pods from its InternalIP, never from whatever address comes
      // first (on a Vagrant VM that is the management NIC, the same 10.0.2.15 on every VM).
      `route replace ${this.opts.clusterCidr} via ${u32ToIp(this.routes.gatewayIp)} dev ${this.opts.hostIf} onlink src ${self.internalIP}`,
    ]);
    this.ports.attach(PortKind.Host, this.hostFd, host.hi, host.lo, 0, 'host', HOST_PORT);
    const hw = new this.addon.FdWatcher(this.hostFd, () => { this.onTapReadable(HOST_PORT, this.hostFd); this.busyPoll(); });
    this.rebuildSpinSet();
    hw.start(); this.watchers.push(hw);

    await this.explain.startMetrics();
    await this.steerNodePorts();
    await this.applyObjects(objs);
    this.timers.push(setInterval(() => this.fdb.sweep(Date.now()), 10_000));
    // Conntrack garbage collection in small slices, so expiry never pauses the data plane.
    this.timers.push(setInterval(() => this.ct.gc(Date.now(), 4096), 100));
    this.timers.push(setInterval(() => { void this.refreshMtu(); }, 2_000));
    await this.listen();
    this.log(`data path: ${this.dataPath}; overlay segmentation: ${this.overlaySegmentation}`);
    const bp = this.opts.busyPollMicros ?? 0;
    this.log(bp > 0 ? `busy polling: after traffic, every data fd is polled for ${bp} µs before sleeping (lower latency, CPU spent while idle)` : 'busy polling: off (the data path sleeps in epoll between batches)');
    this.log(`node ${self.name}: pod CIDR ${self.podCIDR}, gateway ${u32ToIp(this.routes.gatewayIp)}, underlay ${self.internalIP} on ${this.underlayIf} (MTU ${underlayMtu}), pod MTU ${this.podMtu}, VXLAN VNI ${this.opts.vni} port ${this.opts.vxlanPort}`);
  }

  /**
   * NodePort traffic arrives at the node's kernel (it is addressed to the node). A mark and a
   * policy route hand it to the daemon through the host TAP, untranslated, so podwire does the
   * Service NAT itself; the kernel only forwards (no NAT rules anywhere). Replies come back out of
   * the host TAP with the node's own address as source, which the node must accept and forward.
   * All of this lives in the node's namespace (or on the node VM), never in a lab machine's root.
   */
  private async steerNodePorts(): Promise<void> {
    const [lo, hi] = this.opts.nodePortRange ?? [30000, 32767];
    const hostIf = this.opts.hostIf, mark = '0x7077';
    const rules = `table ip podwire {
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    iifname != "${hostIf}" ip daddr ${this.self.internalIP} tcp dport ${lo}-${hi} meta mark set ${mark}
    iifname != "${hostIf}" ip daddr ${this.self.internalIP} udp dport ${lo}-${hi} meta mark set ${mark}
  }
}
`;
    try {
      await run('nft', ['delete', 'table', 'ip', 'podwire']).catch(() => undefined);
      await run('nft', ['-f', '-'], rules);
      await run('ip', ['rule', 'del', 'pref', '100']).catch(() => undefined);
      await run('ip', ['rule', 'add', 'pref', '100', 'fwmark', mark, 'lookup', '7077']);
      // The local table is consulted at preference 0 by default, before any mark could matter:
      // move it after ours (inside this node only).
      const ruleList = await run('ip', ['rule', 'show']);
      if (/^0:\s+from all lookup local/m.test(ruleList)) {
        await run('ip', ['rule', 'add', 'pref', '200', 'lookup', 'local']);
        await run('ip', ['rule', 'del', 'pref', '0', 'lookup', 'local']);
      }
      await run('ip', ['route', 'replace', 'default', 'via', u32ToIp(this.routes.gatewayIp), 'dev', hostIf, 'onlink', 'table', '7077']);
      await run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', `net.ipv4.conf.${hostIf}.rp_filter=0`, `net.ipv4.conf.${hostIf}.accept_local=1`]);
      this.nodePortsSteered = true;
    } catch (e) {
      this.log(`NodePort steering not installed (${(e as Error).message.split('\n')[0]}); NodePorts answer only traffic routed to ${hostIf}`);
    }
  }
  private nodePortsSteered = false;



  /**
   * The UDP-tunnel GSO path (see DaemonOptions.tunnelGso): a TAP that only ever gets written to.
   * What comes in through it is a VXLAN packet from this node's own underlay address, so the TAP
   * must accept a local source (accept_local, no reverse-path filter) and the node must forward.
   * Without kernel support openTunnelTap throws and super-frames are segmented in the addon.
   */
  private async setUpTunnelTap(): Promise<void> {
    const name = this.opts.tunnelIf ?? 'podwire-gso';
    let tap: TapHandle;
    try {
      tap = openTunnelTap(this.addon, name);
    } catch (e) {
      this.log(`UDP-tunnel GSO: not available (${(e as Error).message}); super-frames are segmented by the addon`);
      return;
    }
    // Its own MAC, chosen here (0e:67 + the underlay address), is the outer Ethernet destination of
    // every frame written to it, so the kernel takes them as its own to route.
    const mac = macFromIp(TUNNEL_MAC_PREFIX, this.routes.selfUnderlayIp);
    try {
      await run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', `net.ipv4.conf.${name}.rp_filter=0`,
        `net.ipv4.conf.${name}.accept_local=1`, `net.ipv6.conf.${name}.disable_ipv6=1`]);
      await run('ip', ['link', 'set', 'dev', name, 'address', macToString(mac), 'up']);
    } catch (e) {
      this.addon.closeFd(tap.fd);
      this.log(`UDP-tunnel GSO: ${name} could not be set up (${(e as Error).message.split('\n')[0]}); super-frames are segmented by the addon`);
      return;
    }
    this.tunnelFd = tap.fd;
    writeMac(new DataView(this.tunnelMac.buffer), 0, mac.hi, mac.lo);
  }

  /**
   * What the TAPs carry; with super-frames, whether small UDP goes into them in USO runs (until a
   * kernel refuses one). Status and the start-up log say the same.
   */
  get dataPath(): string {
    if (!this.vnet) return 'plain frames';
    const runs = this.addon.stats().tapUdpGso ? 'UDP runs written as USO frames' : 'UDP written frame by frame (the kernel refused USO writes)';
    return `super-frames (virtio-net header, CSUM+TSO4+TSO6 offloads; ${runs})`;
  }
  /** Who cuts super-frames for other nodes into VXLAN datagrams, and how the receiver rebuilds them. */
  get overlaySegmentation(): string {
    if (!this.vnet) return 'none (plain frames)';
    return this.tunnelFd >= 0
      ? `kernel (UDP-tunnel GSO through ${this.opts.tunnelIf ?? 'podwire-gso'}; received whole)`
      : 'addon (UDP_SEGMENT; coalesced from UDP_GRO on receipt)';
  }

  /** Pod MTU: underlay MTU − 50 (outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14). */
  get podMtu(): number { return this.dp.cfg.underlayMtu - VXLAN_MTU_OVERHEAD; }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await this.explain.metrics?.close().catch(() => undefined);
    this.server?.close();
    for (const key of [...this.local.keys()]) await this.deleteLocalPod(key).catch((e) => this.log(String(e)));
    for (const w of this.watchers) w.stop();
    this.watchers = [];
    this.spinFds = new Int32Array(0);
    for (const fd of [this.hostFd, this.udpFd, this.rawFd, this.tunnelFd, ...this.udpSenders]) if (fd >= 0) this.addon.closeFd(fd);
    this.tunnelFd = -1;
    this.udpSenders = new Int32Array(0);
    if (this.nodePortsSteered) {
      await run('nft', ['delete', 'table', 'ip', 'podwire']).catch(() => undefined);
      await run('ip', ['rule', 'del', 'pref', '100']).catch(() => undefined);
      this.nodePortsSteered = false;
    }
    this.hostFd = this.udpFd = this.rawFd = -1;
    try { fs.unlinkSync(this.opts.adminSocket); } catch { /* already gone */ }
  }

  private async findInterfaceWithAddress(ip: string): Promise<string> {
    const out = JSON.parse(await run('ip', ['-j', '-4', 'addr', 'show'])) as { ifname: string; addr_info: { local: string }[] }[];
    const found = out.find((l) => l.addr_info.some((a) => a.local === ip));
    if (!found) throw new Error(`node ${this.opts.nodeName}: no interface here has the node's InternalIP ${ip}; is this the right node?`);
    return found.ifname;
  }

  /** Follow the underlay MTU: when it shrinks, encapsulation starts answering with ICMP frag-needed. */
  private async refreshMtu(): Promise<void> {
    try {
      const mtu = this.addon.getIfMtu(this.underlayIf);   // one ioctl (SIOCGIFMTU), no child process
      if (mtu !== this.dp.cfg.underlayMtu) {
        this.log(`underlay ${this.underlayIf} MTU ${this.dp.cfg.underlayMtu} → ${mtu}; overlay MTU now ${mtu - VXLAN_MTU_OVERHEAD}`);
        this.dp.setUnderlayMtu(mtu);
      }
    } catch { /* the interface may be going away with the node */ }
  }

  // ---------------------------------------------------------------------------------------------
  // The data path glue: read a batch, run the pipeline, flush the TxQueue.
  // ---------------------------------------------------------------------------------------------

  private onTapReadable(port: number, fd: number): void {
    const slab = this.slab;
    let n: number;
    try {
      n = this.addon.readBatch(fd, slab.u8, 0, SLOT_SIZE, HEADROOM, BATCH_MAX, slab.lens);
    } catch (e) {
      this.log(`read on port ${port} (${this.ports.label[port]}): ${(e as Error).message}`);
      return;
    }
    if (n === 0) return;
    slab.reset();
    this.dp.processTapBatch(slab, port, n, this.tx, Date.now());
    this.flush();
  }

  private onOverlayReadable(): void {
    const slab = this.slab;
    // In super-frame mode one GRO buffer may hold more datagrams than a batch has slots; the addon
    // keeps the rest, invisible to the fd watcher, so keep reading while batches come back full.
    for (let round = 0; round < 8; round++) {
      let n: number;
      try {
        n = this.vnet
          ? this.addon.recvVxlanBatch(this.udpFd, slab.u8, 0, SLOT_SIZE, HEADROOM, BATCH_MAX, slab.lens, slab.srcAddrs, this.podMtu)
          : this.addon.recvBatch(this.udpFd, slab.u8, 0, SLOT_SIZE, HEADROOM, BATCH_MAX, slab.lens, slab.srcAddrs, slab.srcPorts);
      } catch (e) {
        this.log(`overlay receive: ${(e as Error).message}`);
        return;
      }
      if (n === 0) return;
      slab.reset();
      this.dp.processOverlayBatch(slab, n, this.tx, Date.now());
      this.flush();
      if (n < BATCH_MAX) return;
    }
    // Still more: come back on the next loop turn rather than starve the TAPs.
    setImmediate(() => this.onOverlayReadable());
  }

  /**
   * Busy polling (`--busy-poll µs`). After a batch, rather than return to libuv and sleep in
   * epoll, poll every data fd (overlay socket, host TAP, pod TAPs) for up to the budget and handle
   * whatever becomes readable, starting the budget again after each batch. A request's reply that
   * comes back within the budget is then read at once instead of waiting for the scheduler to
   * wake this process, which is most of a userspace hop's latency on a VM.
   *
   * While spinning the JS thread belongs to the data path, so it is handed back to libuv (timers,
   * control requests, the admin socket) at least every few milliseconds, and then spinning goes
   * on. Where it is handed back matters: right after forwarding a request, the reply would arrive
   * while the loop is busy elsewhere. So once the hand-back is due (HAND_BACK_DUE_MICROS) it waits
   * for a gap in the traffic (HAND_BACK_GAP_MICROS with nothing to read); only traffic without such
   * a gap is interrupted, at HAND_BACK_FORCED_MICROS.
   */
  private busyPoll(resume = false): void {
    const budget = this.opts.busyPollMicros ?? 0;
    if (budget === 0 || this.spinning || this.spinFds.length === 0) return;
    this.spinning = true;
    let handedBack = false;
    try {
      const start = performance.now() * 1000;
      const handBackDue = start + HAND_BACK_DUE_MICROS, handBackForced = start + HAND_BACK_FORCED_MICROS;
      // Called after a batch, the budget starts now; resumed after a hand-back, it runs on from the
      // last batch, so that a hand-back never prolongs spinning without traffic.
      if (!resume) this.spinQuietUntil = start + budget;
      for (;;) {
        let now = performance.now() * 1000;
        // Wait for traffic until the budget runs out, or until a gap past the hand-back's due
        // time: the hand-back goes where no reply is in flight.
        const untilGap = Math.max(handBackDue - now, 0) + HAND_BACK_GAP_MICROS;
        const wait = Math.ceil(Math.min(this.spinQuietUntil - now, untilGap));
        if (wait <= 0 || this.addon.spinPoll(this.spinFds, this.spinReady, wait) === 0) {
          // The wait ran out: a whole budget without traffic (back to sleeping in epoll), or else
          // the gap past the due time (hand back).
          handedBack = performance.now() * 1000 < this.spinQuietUntil;
          break;
        }
        for (let i = 0; i < this.spinFds.length; i++) if (this.spinReady[i] === 1) this.spinHandlers[i]();
        now = performance.now() * 1000;
        this.spinQuietUntil = now + budget;
        if (now >= handBackForced) { handedBack = true; break; }  // traffic without a gap
      }
    } finally {
      this.spinning = false;
    }
    // Handed back with the budget not yet spent: let the loop run its timers and control requests,
    // then spin on (a pending immediate keeps libuv from sleeping in epoll meanwhile). Only a
    // whole budget without traffic ends the spinning. One resumption is pending at most, even when
    // a watcher's callback spun and handed back meanwhile, so the loop's turn comes as often.
    if (handedBack && !this.spinResumePending) {
      this.spinResumePending = true;
      setImmediate(this.resumeSpinning);
    }
  }
  private readonly resumeSpinning = (): void => { this.spinResumePending = false; this.busyPoll(true); };
  private spinResumePending = false;
  /** When the busy-poll budget runs out without traffic (µs, on performance.now()'s clock). */
  private spinQuietUntil = 0;
  private spinning = false;
  private spinFds = new Int32Array(0);
  private spinReady = new Uint8Array(0);
  private spinHandlers: (() => void)[] = [];

  /** The fds busyPoll() watches, and what to do when each is readable (after a pod comes or goes). */
  private rebuildSpinSet(): void {
    const fds: number[] = [], handlers: (() => void)[] = [];
    if (this.udpFd >= 0) { fds.push(this.udpFd); handlers.push(() => this.onOverlayReadable()); }
    if (this.hostFd >= 0) { fds.push(this.hostFd); handlers.push(() => this.onTapReadable(HOST_PORT, this.hostFd)); }
    for (const st of this.local.values()) {
      const { port, fd } = st;
      fds.push(fd);
      handlers.push(() => this.onTapReadable(port, fd));
    }
    this.spinFds = Int32Array.from(fds);
    this.spinReady = new Uint8Array(fds.length);
    this.spinHandlers = handlers;
  }

  /** One batched write per output port; frames a full device queue could not take are counted. */
  private flush(): void {
    const tx = this.tx, c = this.counters, ports = this.ports, u8 = this.slab.u8;
    if (tx.count === 0) return;
    tx.group(this.opts.vxlanPort);
    for (let k = 0; k < tx.touchedCount; k++) {
      const p = tx.touched[k], start = tx.groupStart[p], n = tx.groupEnd[p] - start;
      if (ports.kind[p] === PortKind.Free) { for (let i = 0; i < n; i++) c.drop(p, Drop.UnknownPort); continue; }
      if (p === this.dp.capturePort) for (let i = start; i < start + n; i++) this.dp.capture!.write(u8, tx.sortedOff[i], tx.sortedLen[i]);
      if (p === OVERLAY_PORT && this.explain.captureState?.overlay) for (let i = start; i < start + n; i++) this.explain.captureOverlayTx(tx.sortedOff[i], tx.sortedLen[i], tx.sortedDst[i]);
      if (this.vnet) {
        // Every frame carries its virtio-net header in the 12 bytes before it.
        for (let i = start; i < start + n; i++) { tx.sortedOff[i] -= VNET_HDR_LEN; tx.sortedLen[i] += VNET_HDR_LEN; }
      }
      const done = p === OVERLAY_PORT
        ? (this.vnet
          ? this.addon.sendVxlanBatch(this.udpSenders, u8, tx.sortedOff, tx.sortedLen, tx.sortedDst, tx.sortedHash, start, n, this.opts.vni, this.opts.vxlanPort, this.tunnelFd, this.routes.selfUnderlayIp, this.tunnelMac)
          : this.addon.sendBatch(this.rawFd, u8, tx.sortedOff, tx.sortedLen, tx.sortedDst, tx.sortedDstPort, start, n))
        : this.addon.writeBatch(ports.fd[p], u8, tx.sortedOff, tx.sortedLen, start, n, this.vnet);
      c.txPackets[p] += done;
      for (let i = start; i < start + done; i++) c.txBytes[p] += tx.sortedLen[i];
      for (let i = done; i < n; i++) c.drop(p, Drop.TxQueueFull);
    }
    tx.clear();
  }

  // ---------------------------------------------------------------------------------------------
  // Control: applying manifests.
  // ---------------------------------------------------------------------------------------------

  /** Apply manifests (YAML text). All-or-nothing: validation happens before anything changes. */
  apply(text: string, source = 'request'): Promise<ApplyResult> {
    const objs = parseManifests(text, source);
    return this.serialize(() => this.applyObjects(objs));
  }

  /** Delete objects named in YAML text (or `kind/namespace/name` keys). */
  delete(keys: string[]): Promise<string[]> {
    return this.serialize(async () => {
      const done: string[] = [];
      for (const key of keys) {
        const [kind, a, b] = key.split('/');
        if (kind === 'Pod') {
          const podKey = b === undefined ? `default/${a}` : `${a}/${b}`;
          if (!this.pods.has(podKey)) throw new Error(`Pod ${podKey}: not found`);
          this.pods.delete(podKey);
          if (this.local.has(podKey)) await this.deleteLocalPod(podKey);
          done.push(`Pod/${podKey} deleted`);
        } else if (kind === 'Node') {
          if (a === this.self.name) throw new Error(`Node ${a}: a daemon cannot delete its own node; stop the daemon instead`);
          if (!this.nodes.delete(a)) throw new Error(`Node ${a}: not found`);
          this.routes.removeNode(a);
          done.push(`Node/${a} deleted`);
        } else if (kind === 'Namespace') {
          if (!this.namespaces.delete(a)) throw new Error(`Namespace ${a}: not found`);
          done.push(`Namespace/${a} deleted`);
        } else if (kind === 'Service' || kind === 'EndpointSlice' || kind === 'NetworkPolicy') {
          const k = b === undefined ? `default/${a}` : `${a}/${b}`;
          const map = kind === 'Service' ? this.svcObjs : kind === 'EndpointSlice' ? this.slices : this.policies;
          if (!map.delete(k)) throw new Error(`${kind} ${k}: not found`);
          if (kind === 'Service') this.allocator.release(k);
          done.push(`${kind}/${k} deleted`);
        } else throw new Error(`cannot delete ${key}: kind must be Pod, Node, Namespace, Service, EndpointSlice or NetworkPolicy`);
      }
      const kinds = keys.map((k) => k.split('/')[0]);
      if (kinds.some((k) => k !== 'NetworkPolicy' && k !== 'Namespace' && k !== 'Node')) this.recomputeServices();
      if (kinds.some((k) => k !== 'Service' && k !== 'EndpointSlice')) this.onClusterChange();
      return done;
    });
  }

  /** Control requests run one at a time, so a half-applied request is never visible to another. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.busy.then(fn, fn);
    this.busy = next.catch(() => undefined);
    return next;
  }

  private async applyObjects(objs: ManifestObj[]): Promise<ApplyResult> {
    // Validate against current state first: nothing is applied if anything is wrong. Services are
    // completed (ClusterIP, NodePorts) here too, against the allocations of the whole request.
    const pending = new ServiceAllocator(this.allocator.cidr, this.allocator.nodePortMin, this.allocator.nodePortMax);
    for (const [k, v] of this.allocator.ips) pending.ips.set(k, v);
    for (const [k, v] of this.allocator.nodePorts) pending.nodePorts.set(k, v);
    const completed = new Map<ManifestObj, ServiceObj>();
    for (const o of objs) {
      this.validateAgainstState(o);
      if (o.kind === 'Service') { const c = pending.complete(o); pending.commit(c); completed.set(o, c); }
    }
    // A NetworkPolicy that cannot be compiled exactly is refused before anything is applied.
    const newPolicies = objs.filter((o): o is NetworkPolicyObj => o.kind === 'NetworkPolicy');
    if (newPolicies.length) {
      const keys = new Set(newPolicies.map((p) => `${p.namespace}/${p.name}`));
      const candidate = { ...this.policyView(), policies: [...[...this.policies.entries()].filter(([k]) => !keys.has(k)).map(([, v]) => v), ...newPolicies] };
      if (this.compiled && this.compiledView) updatePolicies(this.compiled, this.compiledView, candidate);
      else compilePolicies(candidate);
    }
    const res: ApplyResult = { lines: [], assigned: {} };
    const createdPods: string[] = [];
    try {
      for (const o of objs) {
        const key = objectKey(o);
        if (o.kind === 'Namespace') { this.namespaces.set(o.name, o); res.lines.push(`${key} configured`); }
        else if (o.kind === 'Node') { this.applyNode(o); res.lines.push(`${key} configured`); }
        else if (o.kind === 'Pod') {
          const podKey = `${o.namespace}/${o.name}`;
          const existing = this.pods.get(podKey);
          if (existing) {
            // Labels, annotations and readiness may change; the address stays what it was.
            const st = this.local.get(podKey);
            o.podIP = st ? st.ip : (o.podIP ?? existing.podIP);
            this.pods.set(podKey, o);
            if (st) st.obj = o;
            res.lines.push(`${key} configured`);
          } else if (o.nodeName === this.self.name) {
            this.pods.set(podKey, o);
            await this.createLocalPod(o);
            createdPods.push(podKey);
            o.podIP = this.local.get(podKey)!.ip;
            res.lines.push(`${key} created (${o.podIP})`);
          } else {
            this.pods.set(podKey, o);
            res.lines.push(`${key} created`);
          }
          if (o.podIP) res.assigned[key] = { podIP: o.podIP };
        } else if (o.kind === 'Service') {
          const c = completed.get(o)!;
          this.allocator.commit(c);
          this.svcObjs.set(`${o.namespace}/${o.name}`, c);
          const np = c.ports.map((p) => p.nodePort).filter((x): x is number => x !== undefined);
          res.assigned[key] = { clusterIP: c.clusterIP, nodePorts: np };
          res.lines.push(`${key} configured (${c.clusterIP ?? c.type}${np.length ? `, nodePort ${np.join(',')}` : ''})`);
        } else if (o.kind === 'EndpointSlice') {
          this.slices.set(`${o.namespace}/${o.name}`, o);
          res.lines.push(`${key} configured`);
        } else if (o.kind === 'NetworkPolicy') {
          this.policies.set(`${o.namespace}/${o.name}`, o);
          res.lines.push(`${key} configured`);
        }
      }
    } catch (e) {
      // Roll back the pods this request created, so a failed apply leaves nothing behind.
      for (const key of createdPods.reverse()) { await this.deleteLocalPod(key).catch(() => undefined); this.pods.delete(key); }
      throw e;
    }
    // Services depend on pods and slices; NetworkPolicy on namespaces, pods, nodes and policies.
    // Recompile only what a request can have changed.
    if (objs.some((o) => o.kind !== 'NetworkPolicy' && o.kind !== 'Namespace' && o.kind !== 'Node')) this.recomputeServices();
    if (objs.some((o) => o.kind !== 'Service' && o.kind !== 'EndpointSlice')) this.onClusterChange();
    return res;
  }

  /** Rebuild every service port's backends from the current state; unchanged flows are untouched. */
  recomputeServices(): void {
    const computed = computeServicePorts(this.svcObjs.values(), this.slices.values(), this.pods.values(), this.self.name);
    const keep = new Set<string>();
    for (const c of computed) {
      keep.add(c.spec.key);
      const sp = this.services.upsert(c.spec);
      const local: number[] = [];
      c.backends.forEach((b, i) => { if (b.local) local.push(i); });
      const before = this.services.backends[sp];
      this.services.setBackends(sp, c.backends.map((b) => b.ip), c.backends.map((b) => b.port), local);
      this.flushRemovedUdpBackends(sp, before.ips, before.ports);
      this.backendRefs.set(c.spec.key, c.backends.map((b) => b.ref));
    }
    for (const spec of this.services.specs) if (spec && !keep.has(spec.key)) { this.services.remove(spec.key); this.backendRefs.delete(spec.key); }
  }
  /**
   * UDP has no end: a client that keeps sending would stay bound to a backend that is gone. As
   * kube-proxy does, forget the UDP connections of a service port whose backend was removed, so
   * the next datagram picks a live one. (TCP connections end by themselves.)
   */
  private flushRemovedUdpBackends(sp: number, oldIps: Uint32Array, oldPorts: Uint16Array): void {
    const set = this.services.backends[sp];
    const gone: string[] = [];
    for (let k = 0; k < oldIps.length; k++) {
      let kept = false;
      for (let j = 0; j < set.ips.length; j++) if (set.ips[j] === oldIps[k] && set.ports[j] === oldPorts[k]) kept = true;
      if (!kept) gone.push(`${u32ToIp(oldIps[k])}:${oldPorts[k]}`);
    }
    if (gone.length === 0) return;
    const ct = this.ct;
    for (const e of ct.entries(Date.now())) {
      const i = e.index;
      if (ct.proto[i] === IPPROTO_UDP && ct.service[i] === sp && gone.includes(`${u32ToIp(ct.replySrc[i])}:${ct.replySport[i]}`)) ct.delete(i);
    }
  }

  /** Which pod (or address) each backend of a service port is, for views. */
  readonly backendRefs = new Map<string, string[]>();

  /**
   * Recompile NetworkPolicy from the whole cluster state and swap the tables in at once: the data
   * plane reads either the old tables or the new ones, never a mix, so a default-deny is never
   * momentarily open. Tracked connections are re-judged once under the new tables.
   */
  protected onClusterChange(): void {
    if (this.policies.size === 0) {
      this.explain.foldPolicyHits();
      if (this.dp.policy) { this.dp.policy = undefined; this.dp.policyGeneration++; }
      this.compiled = undefined;
      this.compiledView = undefined;
      return;
    }
    const t0 = performance.now();
    const view = this.policyView();
    try {
      // Incremental where it is exact and cheap (scaling a Deployment touches only the ipcache;
      // editing a policy rebuilds only the tables it applies to); a full compile otherwise.
      const compiled = this.compiled && this.compiledView ? updatePolicies(this.compiled, this.compiledView, view) : compilePolicies(view);
      this.explain.foldPolicyHits();
      this.compiled = compiled;
      this.compiledView = view;
      this.dp.policy = compiled;
      this.dp.policyGeneration++;
      this.lastCompileMs = performance.now() - t0;
      this.lastCompileKind = compiled.update?.kind ?? 'full';
      if (this.lastCompileMs > 1000) this.log(`NetworkPolicy ${this.lastCompileKind} recompilation took ${this.lastCompileMs.toFixed(0)} ms${compiled.update?.fallbackReason ? ` (${compiled.update.fallbackReason})` : ''}`);
    } catch (e) {
      this.log(`NetworkPolicy not recompiled, previous tables kept: ${(e as Error).message}`);
      throw e;
    }
  }
  compiled?: CompiledPolicy;
  /** The view `compiled` was built from: what the next incremental update starts from. */
  private compiledView?: ClusterView;
  lastCompileMs = 0;
  lastCompileKind = '';

  /** The cluster as NetworkPolicy sees it: namespace labels, pods with addresses, policies, nodes. */
  policyView(): ClusterView {
    const nodeIpOf = (n?: string) => { const node = n ? this.nodes.get(n) : undefined; return node ? ipToU32(node.internalIP) : 0; };
    return {
      namespaces: new Map([...this.namespaces.values()].map((n) => [n.name, n.labels])),
      pods: [...this.pods.values()].filter((p) => p.podIP).map((p) => ({
        namespace: p.namespace, name: p.name, labels: p.labels, ip: ipToU32(p.podIP!), nodeIp: nodeIpOf(p.nodeName), ports: p.ports,
      })),
      policies: [...this.policies.values()],
      nodeIps: [...this.nodes.values()].map((n) => ipToU32(n.internalIP)),
    };
  }

  private validateAgainstState(o: ManifestObj): void {
    if (o.kind === 'Pod') {
      const key = `${o.namespace}/${o.name}`;
      const existing = this.pods.get(key);
      if (existing) {
        const same = existing.nodeName === o.nodeName && existing.pinnedIp === o.pinnedIp
          && JSON.stringify(existing.ports) === JSON.stringify(o.ports);
        if (!same) throw new Error(`Pod ${key}: spec is immutable once the pod exists (nodeName, podwire.io/ip and ports); delete the pod first`);
      }
      if (o.nodeName === this.self.name && o.pinnedIp) {
        if (!this.ipam.contains(o.pinnedIp)) throw new Error(`Pod ${key}: metadata.annotations[podwire.io/ip]: ${o.pinnedIp} is not in node ${this.self.name}'s pod CIDR ${this.self.podCIDR}`);
        for (const st of this.local.values()) {
          if (st.ip === o.pinnedIp && `${st.obj.namespace}/${st.obj.name}` !== key) throw new Error(`Pod ${key}: metadata.annotations[podwire.io/ip]: ${o.pinnedIp} is already used by pod ${st.obj.namespace}/${st.obj.name}`);
        }
      }
    } else if (o.kind === 'Node') {
      if (o.name === this.self.name && (o.podCIDR !== this.self.podCIDR || o.internalIP !== this.self.internalIP)) {
        throw new Error(`Node ${o.name}: spec.podCIDR and InternalIP of a running node cannot change; restart its daemon`);
      }
      for (const n of this.nodes.values()) {
        if (n.name !== o.name && n.internalIP === o.internalIP) throw new Error(`Node ${o.name}: status.addresses InternalIP ${o.internalIP} is already node ${n.name}'s`);
        if (n.name !== o.name && cidrsOverlap(n.podCIDR, o.podCIDR)) throw new Error(`Node ${o.name}: spec.podCIDR ${o.podCIDR} overlaps node ${n.name}'s ${n.podCIDR}`);
      }
      const cl = parseCidr(this.opts.clusterCidr), pc = parseCidr(o.podCIDR);
      if (pc.len < cl.len || ((pc.net & this.routes.clusterMask) >>> 0) !== cl.net) throw new Error(`Node ${o.name}: spec.podCIDR ${o.podCIDR} is not inside the cluster CIDR ${this.opts.clusterCidr}`);
    }
  }

  private applyNode(o: NodeObj): void {
    this.nodes.set(o.name, o);
    const ip = ipToU32(o.internalIP), cidr = parseCidr(o.podCIDR);
    const mac = o.vtepMac ? macFromString(o.vtepMac) : macFromIp(ROUTER_MAC_PREFIX, ip);
    this.routes.upsertNode({ name: o.name, podNet: cidr.net, prefixLen: cidr.len, underlayIp: ip, vtepMacHi: mac.hi, vtepMacLo: mac.lo, self: o.name === this.self.name });
  }

  private async createLocalPod(o: PodObj): Promise<void> {
    const key = `${o.namespace}/${o.name}`;
    const ip = this.ipam.allocate(key, o.pinnedIp);
    const netns = `${this.opts.netnsPrefix}${o.namespace}-${o.name}`;
    const tapName = tapNameFor(`${this.self.name}/${key}`);
    const mac = macFromIp(POD_MAC_PREFIX, ipToU32(ip));
    const undo: (() => Promise<void> | void)[] = [() => this.ipam.release(key)];
    try {
      await run('ip', ['netns', 'add', netns]);
      undo.push(() => deleteNetns(netns));
      const tap = this.addon.openTap(tapName, this.vnet);
      undo.push(() => this.addon.closeFd(tap.fd));
      if (this.vnet) {
        const err = this.addon.setOffload(tap.fd, TAP_OFFLOADS);
        if (err !== 0) throw new Error(`TUNSETOFFLOAD refused on ${tapName} (errno ${err}) although the host TAP accepted it`);
      }
      await ipBatch([`link set dev ${tapName} netns ${netns}`]);
      await ipBatch([
        `link set dev lo up`,
        `link set dev ${tapName} name eth0`,
        `link set dev eth0 address ${macToString(mac)} mtu ${this.podMtu} up`,
        `addr add ${ip}/${this.ipam.prefixLength} dev eth0`,
        `route add default via ${this.ipam.gateway} dev eth0`,
      ], netns);
      // Pods here speak IPv4 only; without this their kernels chatter IPv6 router solicitations.
      await run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
      const port = this.ports.attach(PortKind.Pod, tap.fd, mac.hi, mac.lo, ipToU32(ip), key);
      undo.push(() => { this.ports.detach(port); this.dp.refreshPodPorts(); });
      this.counters.resetPort(port);
      this.routes.setLocalPod(ipToU32(ip), port);
      undo.push(() => this.routes.clearLocalPod(ipToU32(ip)));
      this.dp.refreshPodPorts();
      const st: PodState = { obj: o, ip, netns, tapName, fd: tap.fd, port };
      const w = new this.addon.FdWatcher(tap.fd, () => { this.onTapReadable(port, tap.fd); this.busyPoll(); });
      w.start(); st.watcher = w;
      undo.push(() => w.stop());
      if (this.opts.servePorts) st.agent = await this.startAgent(o, netns);
      this.local.set(key, st);
      this.rebuildSpinSet();
      this.log(`pod ${key}: ${ip} ${macToString(mac)} in netns ${netns} (port ${port})`);
    } catch (e) {
      for (const u of undo.reverse()) await Promise.resolve().then(u).catch(() => undefined);
      throw new Error(`Pod ${key}: could not be created: ${(e as Error).message}`);
    }
  }

  private startAgent(o: PodObj, netns: string): Promise<ChildProcess> {
    const args = ['netns', 'exec', netns, process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'src/lab/pod-agent.ts'), '--name', o.name, '--namespace', o.namespace];
    for (const proto of ['TCP', 'UDP', 'SCTP'] as const) {
      const ports = o.ports.filter((p) => p.protocol === proto).map((p) => p.containerPort);
      if (ports.length) args.push(`--${proto.toLowerCase()}`, ports.join(','));
    }
    return new Promise((resolve, reject) => {
      const child = spawn('ip', args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      const timer = setTimeout(() => { child.kill(); reject(new Error('pod agent did not become ready in 20 s')); }, 20_000);
      child.stderr!.on('data', (d) => { err += d; });
      child.stdout!.on('data', (d) => {
        if (String(d).includes('ready')) { clearTimeout(timer); resolve(child); }
      });
      child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`pod agent exited (${code}): ${err.trim()}`)); });
    });
  }

  private async deleteLocalPod(key: string): Promise<void> {
    const st = this.local.get(key);
    if (!st) return;
    this.local.delete(key);
    this.rebuildSpinSet();
    st.watcher?.stop();
    if (st.agent && st.agent.exitCode === null) {
      const exited = new Promise((r) => st.agent!.once('exit', r));
      st.agent.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
    }
    this.routes.clearLocalPod(ipToU32(st.ip));
    this.fdb.flushPort(st.port);
    this.ports.detach(st.port);
    this.dp.refreshPodPorts();
    this.addon.closeFd(st.fd);
    await deleteNetns(st.netns);
    this.ipam.release(key);
    this.log(`pod ${key}: deleted`);
  }


  // ---------------------------------------------------------------------------------------------
  // Views and the admin socket.
  // ---------------------------------------------------------------------------------------------

  status(): object {
    const pods = [...this.local.values()].map((s) => ({
      namespace: s.obj.namespace, name: s.obj.name, ip: s.ip, mac: macToString(macFromIp(POD_MAC_PREFIX, ipToU32(s.ip))),
      netns: s.netns, port: s.port, ports: s.obj.ports, labels: s.obj.labels,
    }));
    return {
      node: this.self.name, podCIDR: this.self.podCIDR, internalIP: this.self.internalIP,
      gateway: u32ToIp(this.routes.gatewayIp), podMtu: this.podMtu, underlayMtu: this.dp.cfg.underlayMtu,
      dataPath: this.dataPath,
      overlaySegmentation: this.overlaySegmentation,
      busyPollMicros: this.opts.busyPollMicros ?? 0,
      nodes: [...this.nodes.values()].map((n) => ({ name: n.name, podCIDR: n.podCIDR, internalIP: n.internalIP, overlay: n.overlay })),
      pods,
      pending: [...this.pods.values()].filter((p) => !p.nodeName).map((p) => `${p.namespace}/${p.name}`),
    };
  }

  counterView(): object {
    const c = this.counters;
    const drops: Record<string, number> = {};
    DROP_INFO.forEach((d, i) => { if (c.drops[i] > 0) drops[d.label] = c.drops[i]; });
    const ports = this.ports.attached().map((p) => {
      const pd: Record<string, number> = {};
      DROP_INFO.forEach((d, i) => { const v = c.portDrops[p * DROP_INFO.length + i]; if (v > 0) pd[d.label] = v; });
      return { port: p, label: this.ports.label[p], rxPackets: c.rxPackets[p], rxBytes: c.rxBytes[p], txPackets: c.txPackets[p], txBytes: c.txBytes[p], drops: pd };
    });
    return {
      drops, ports, localReplies: c.localReplies, icmpErrorsSent: c.icmpErrorsSent, icmpErrorsRateLimited: c.icmpErrorsRateLimited,
      vxlanEncap: c.vxlanEncap, vxlanDecap: c.vxlanDecap, floods: c.floods, batches: c.batches, batchFrames: c.batchFrames,
      fdbEntries: this.fdb.size, addon: this.addon.stats(),
    };
  }

  servicesView(): object[] {
    const out: object[] = [];
    this.services.specs.forEach((spec, sp) => {
      if (!spec) return;
      const set = this.services.backends[sp], refs = this.backendRefs.get(spec.key) ?? [];
      out.push({
        servicePort: spec.key, clusterIP: u32ToIp(spec.vip), port: spec.port, nodePort: spec.nodePort || undefined,
        externalIPs: spec.externalIps.map(u32ToIp), algorithm: LB_NAMES[spec.algorithm], sessionAffinitySeconds: spec.affinityMs / 1000 || undefined,
        externalTrafficPolicy: spec.externalLocal ? 'Local' : 'Cluster',
        backends: [...set.ips].map((ip, k) => ({ address: `${u32ToIp(ip)}:${set.ports[k]}`, pod: refs[k], local: set.local.includes(k), selections: this.services.selections[sp][k] })),
      });
    });
    return out;
  }

  fdbView(): object[] {
    return this.fdb.entries(Date.now()).map((e) => ({ mac: macToString(e), port: e.port, label: this.ports.label[e.port], ageMs: e.ageMs }));
  }

  /** The admin socket: one JSON request per line, one JSON answer per line; root only (mode 0600). */
  private listen(): Promise<void> {
    const sock = this.opts.adminSocket;
    fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o700 });
    try { fs.unlinkSync(sock); } catch { /* not there */ }
    this.server = net.createServer((conn) => {
      let buf = '';
      conn.on('data', (d) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
          void this.handleRequest(line).then((res) => conn.write(JSON.stringify(res) + '\n'));
        }
      });
      conn.on('error', () => undefined);
    });
    return new Promise((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(sock, () => { fs.chmodSync(sock, 0o600); resolve(); });
    });
  }

  private async handleRequest(line: string): Promise<object> {
    try {
      const req = JSON.parse(line) as { op: string; yaml?: string; keys?: string[]; source?: string };
      switch (req.op) {
        case 'apply': return { ok: true, result: await this.apply(String(req.yaml ?? ''), req.source) };
        case 'delete': return { ok: true, result: await this.delete(req.keys ?? []) };
        case 'status': return { ok: true, result: this.status() };
        case 'counters': return { ok: true, result: this.counterView() };
        case 'fdb': return { ok: true, result: this.fdbView() };
        case 'services': return { ok: true, result: this.servicesView() };
        case 'conntrack': return { ok: true, result: this.ct.entries(Date.now()) };
        case 'policy': return { ok: true, result: this.compiled ? { ...this.compiled.stats(), compileMs: this.lastCompileMs, compileKind: this.lastCompileKind, generation: this.dp.policyGeneration } : { policies: 0 } };
        case 'explain': {
          const r = req as unknown as { src: string; dst: string; proto: number; dport: number };
          if (!this.compiled) return { ok: true, result: { verdict: 'allowed', reason: 'no NetworkPolicy exists' } };
          return { ok: true, result: this.compiled.explain({ src: ipToU32(r.src), dst: ipToU32(r.dst), proto: r.proto, dport: r.dport }) };
        }
        case 'ping': return { ok: true, result: 'pong' };
        case 'trace': {
          const r = req as unknown as { filter?: Record<string, string | number | boolean>; count?: number; seconds?: number };
          const f = r.filter ?? {};
          const filter: TraceFilter = {
            ip: f.ip !== undefined ? ipToU32(String(f.ip)) : undefined, src: f.src !== undefined ? ipToU32(String(f.src)) : undefined,
            dst: f.dst !== undefined ? ipToU32(String(f.dst)) : undefined, proto: f.proto !== undefined ? Number(f.proto) : undefined,
            port: f.port !== undefined ? Number(f.port) : undefined, newOnly: f.newOnly === true, dropsOnly: f.dropsOnly === true,
          };
          return { ok: true, result: await this.explain.traceReal(filter, r.count ?? 10, r.seconds ?? 10) };
        }
        case 'capture': return { ok: true, result: await this.explain.capture(req as unknown as Parameters<Explainer['capture']>[0]) };
        case 'metrics': return { ok: true, result: { port: this.explain.metricsPort } };
        case 'inject': return { ok: true, result: this.explain.injectSynthetic(req as unknown as Parameters<Explainer['injectSynthetic']>[0]) };
        default: return { ok: false, error: `unknown op ${JSON.stringify(req.op)}` };
      }
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }
}

function cidrsOverlap(a: string, b: string): boolean {
  const x = parseCidr(a), y = parseCidr(b), mask = prefixMask(Math.min(x.len, y.len));
  return ((x.net & mask) >>> 0) === ((y.net & mask) >>> 0);
}
