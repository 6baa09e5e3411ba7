/**
 * Explaining the daemon's traffic: names for addresses, the flow log, traces (real and synthetic),
 * captures and the metrics endpoint. None of this is on the hot path: the data plane only calls
 * back here for traced packets, connection events and captured frames, and the metrics read
 * counters at scrape time. Kept apart from daemon.ts so that file stays about wiring and state.
 */
import * as fs from 'node:fs';
import type { Daemon } from './daemon.ts';
import { FrameSlab, TxQueue, VNET_HDR_LEN } from '../frame/slab.ts';
import { OVERLAY_PORT, HOST_PORT } from '../tables/ports.ts';
import { Counters } from '../dataplane/counters.ts';
import { Conntrack } from '../tables/conntrack.ts';
import { TraceSession, type TraceFilter, type TraceRecord } from '../dataplane/trace.ts';
import { Metrics } from '../metrics/metrics.ts';
import { PcapWriter, LINKTYPE_ETHERNET, LINKTYPE_IPV4, writeSyntheticUdpIpv4 } from '../io/pcap.ts';
import { emitIpv4, IPPROTO_TCP, IPPROTO_UDP } from '../wire/ipv4.ts';
import { emitTcp } from '../wire/tcp.ts';
import { emitUdp } from '../wire/udp.ts';
import { emitIcmp } from '../wire/icmp.ts';
import { ipToU32, u32ToIp, macFromIp, POD_MAC_PREFIX } from '../control/addressing.ts';
import type { PodState } from './daemon.ts';

export class Explainer {
  private readonly d: Daemon;
  constructor(daemon: Daemon) { this.d = daemon; }

  metrics?: Metrics;
  metricsPort = 0;
  /** Policy verdict counts carried across recompilations (rule ids change; names don't). */
  private readonly policyHitTotals = new Map<string, number>();

  async startMetrics(): Promise<void> {
    const addr = this.d.opts.metricsAddr ?? '127.0.0.1:9402';
    if (!addr) return;
    const i = addr.lastIndexOf(':');
    const host = addr.slice(0, i), port = Number(addr.slice(i + 1));
    this.metrics = new Metrics({
      node: this.d.self.name,
      counters: this.d.counters,
      portLabels: () => this.d.ports.attached().map((p) => ({ port: p, label: this.d.ports.label[p], kind: p === OVERLAY_PORT ? 'overlay' : p === HOST_PORT ? 'host' : 'pod' })),
      services: () => (this.d.servicesView() as { servicePort: string; backends: { address: string; pod?: string; selections: number }[] }[]).map((v) => ({ key: v.servicePort, backends: v.backends })),
      conntrack: () => ({ entries: this.d.ct.size, capacity: this.d.ct.capacity, evictions: this.d.ct.evictions, expired: this.d.ct.expired }),
      policyVerdicts: () => this.policyVerdicts(),
      batchSizeHistogram: () => {
        const le = [1, 2, 4, 8, 16, 32, 64];
        return { le, counts: Array.from(this.d.dp.batchSizes.subarray(0, 7)), sum: this.d.counters.batchFrames, count: this.d.counters.batches };
      },
    });
    try {
      this.metricsPort = await this.metrics.listen(host, port);
    } catch (e) {
      this.d.log(`metrics endpoint not started: ${(e as Error).message}`);
      this.metrics = undefined;
    }
  }

  /** Fold the data plane's per-rule counters into totals keyed by policy name (before a recompile). */
  foldPolicyHits(): void {
    const hits = this.d.dp.policyRuleHits;
    if (!this.d.compiled) return;
    for (let id = 0; id < hits.length; id++) {
      if (hits[id] === 0) continue;
      let r;
      try { r = this.d.compiled.ruleInfo(id); } catch { hits[id] = 0; continue; }
      const key = `${r.namespace}/${r.name}|${r.direction}|${r.ruleIndex}`;
      this.policyHitTotals.set(key, (this.policyHitTotals.get(key) ?? 0) + hits[id]);
      hits[id] = 0;
    }
  }

  private policyVerdicts(): { policy: string; direction: string; rule: number; verdict: 'allow' | 'deny'; count: number }[] {
    this.foldPolicyHits();
    const out: { policy: string; direction: string; rule: number; verdict: 'allow' | 'deny'; count: number }[] = [];
    for (const [k, count] of this.policyHitTotals) {
      const [policy, direction, rule] = k.split('|');
      out.push({ policy, direction, rule: Number(rule), verdict: 'allow', count });
    }
    out.push({ policy: '(isolation, no rule matched)', direction: 'Egress', rule: -1, verdict: 'deny', count: this.d.dp.policyDenied[0] });
    out.push({ policy: '(isolation, no rule matched)', direction: 'Ingress', rule: -1, verdict: 'deny', count: this.d.dp.policyDenied[1] });
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Capture.
  // ---------------------------------------------------------------------------------------------

  captureState?: { writer: PcapWriter; port: number; overlay: boolean; file: string; decap: boolean };

  /**
   * Capture a pod's port (Ethernet frames, both directions) or the overlay (datagrams with their
   * outer IPv4/UDP headers, or with `decap` the inner Ethernet frames) to a pcap file, for at most
   * `count` packets or `seconds`. Returns when done, with what was written.
   */
  async capture(req: { pod?: string; overlay?: boolean; decap?: boolean; file: string; count?: number; seconds?: number }): Promise<{ file: string; packets: number; dropped: number }> {
    if (this.captureState) throw new Error('a capture is already running on this node');
    const count = Math.min(req.count ?? 1000, 1_000_000), seconds = Math.min(req.seconds ?? 10, 600);
    let port = -1;
    if (!req.overlay) {
      const st = this.d.local.get(req.pod ?? '');
      if (!st) throw new Error(`no pod ${req.pod} on node ${this.d.self.name}`);
      port = st.port;
    }
    const linkType = req.overlay && !req.decap ? LINKTYPE_IPV4 : LINKTYPE_ETHERNET;
    const writer = new PcapWriter(req.file, linkType, { maxPackets: count });
    this.captureState = { writer, port, overlay: !!req.overlay, file: req.file, decap: !!req.decap };
    const selfIp = ipToU32(this.d.self.internalIP);
    if (req.overlay) {
      const inner = this.d.dp.innerOffset;
      this.d.dp.captureOverlay = (slab, slot, len, src) => {
        const off = slab.frameOffset(slot);
        if (req.decap) { if (len > inner) writer.write(slab.u8, off + inner, len - inner); return; }
        if (this.d.vnet) {
          // [VXLAN 8][vnet 12][inner]: record VXLAN + inner with synthetic outer headers, in a copy.
          this.captureScratch ??= new Uint8Array(28 + 8 + 65536 + 64);
          const b = this.captureScratch;
          b.set(slab.u8.subarray(off, off + 8), 28);
          b.set(slab.u8.subarray(off + inner, off + len), 36);
          const n = writeSyntheticUdpIpv4(b, 0, src, selfIp, 0, this.d.opts.vxlanPort, b, 28, 8 + len - inner);
          if (n) writer.write(b, 0, n);
          return;
        }
        // The socket gives the VXLAN payload; put back outer IPv4/UDP headers (in the headroom).
        const n = writeSyntheticUdpIpv4(slab.u8, off - 28, src, selfIp, slab.srcPorts[slot], this.d.opts.vxlanPort, slab.u8, off, len);
        if (n) writer.write(slab.u8, off - 28, n);
      };
    } else {
      this.d.dp.capture = writer;
      this.d.dp.capturePort = port;
    }
    const deadline = Date.now() + seconds * 1000;
    while (Date.now() < deadline && writer.packets < count && !writer.done) await new Promise((r) => setTimeout(r, 50));
    this.d.dp.capturePort = -1; this.d.dp.capture = undefined; this.d.dp.captureOverlay = undefined;
    this.captureState = undefined;
    await writer.close();
    return { file: req.file, packets: writer.packets, dropped: writer.dropped };
  }

  private captureScratch?: Uint8Array;

  /**
   * Record a datagram leaving for the overlay. Plain-frame mode wrote the outer IPv4/UDP/VXLAN
   * headers itself (the entry starts with them); super-frame mode leaves them to the addon, so they
   * are synthesised here (the super-frame is recorded whole, as GRO-aware captures show it).
   */
  captureOverlayTx(off: number, len: number, dst: number): void {
    const st = this.captureState!, u8 = this.d.slab.u8;
    if (!this.d.vnet) {
      if (st.decap) st.writer.write(u8, off + 36, len - 36); else st.writer.write(u8, off, len);
      return;
    }
    if (st.decap) { st.writer.write(u8, off, len); return; }
    this.captureScratch ??= new Uint8Array(28 + 8 + 65536 + 64);
    const b = this.captureScratch, vni = this.d.opts.vni;
    b[28] = 0x08; b[29] = b[30] = b[31] = 0;                                  // VXLAN: I flag,
    b[32] = (vni >>> 16) & 0xff; b[33] = (vni >>> 8) & 0xff; b[34] = vni & 0xff; b[35] = 0;   // VNI
    b.set(u8.subarray(off, off + len), 36);
    const n = writeSyntheticUdpIpv4(b, 0, ipToU32(this.d.self.internalIP), dst, 0, this.d.opts.vxlanPort, b, 28, 8 + len);
    if (n) st.writer.write(b, 0, n);
  }

  // ---------------------------------------------------------------------------------------------
  // Explaining: names for addresses, the flow log, traces and synthetic packets.
  // ---------------------------------------------------------------------------------------------

  /** An address in Kubernetes terms: a pod, a Service, a node, the gateway. */
  describe(ip: number): string {
    const text = u32ToIp(ip);
    if (ip === this.d.routes.gatewayIp) return `gateway of ${this.d.self.name}`;
    for (const p of this.d.pods.values()) if (p.podIP === text) return `pod ${p.namespace}/${p.name}`;
    for (const n of this.d.nodes.values()) if (n.internalIP === text) return `node ${n.name}`;
    for (const s of this.d.svcObjs.values()) if (s.clusterIP === text) return `Service ${s.namespace}/${s.name}`;
    return text;
  }

  /**
   * The flow log: one JSON line per connection event (new, denied), like Cilium's Hubble, with
   * pods, namespaces, Service, backend and the policy verdict. Rate-limited by a token bucket, with
   * the number suppressed reported on the next line that gets through.
   */
  attachFlowLog(target: string, perSecond: number): void {
    const out = target === '-' ? process.stdout : fs.createWriteStream(target, { flags: 'a' });
    let tokens = perSecond, last = Date.now(), suppressed = 0;
    const protoName: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 132: 'SCTP' };
    this.d.dp.onFlow = (event, proto, src, dst, sport, dport, svc, backend, detail) => {
      const now = Date.now();
      tokens = Math.min(perSecond, tokens + ((now - last) * perSecond) / 1000); last = now;
      if (tokens < 1) { suppressed++; return; }
      tokens--;
      const who = (ip: number) => { const t = u32ToIp(ip); const p = [...this.d.pods.values()].find((x) => x.podIP === t); return p ? { ip: t, namespace: p.namespace, pod: p.name } : { ip: t, name: this.describe(ip) }; };
      const rec: Record<string, unknown> = { time: new Date(now).toISOString(), node: this.d.self.name, event, protocol: protoName[proto] ?? proto, source: { ...who(src), port: sport }, destination: { ...who(dst), port: dport } };
      if (svc >= 0) {
        const spec = this.d.services.specs[svc];
        rec.service = spec?.key;
        if (backend >= 0) { const set = this.d.services.backends[svc]; rec.backend = { ip: u32ToIp(set.ips[backend]), port: set.ports[backend], pod: this.d.backendRefs.get(spec!.key)?.[backend] }; }
      }
      if (event === 'denied') {
        if (detail) {
          const local = detail === 'egress' ? src : dst;
          rec.verdict = 'DENIED';
          rec.reason = `NetworkPolicy isolates ${this.describe(local)} for ${detail} and no rule allows it`;
          rec.policies = [...this.d.policies.values()].filter((p) => p.policyTypes.includes(detail === 'egress' ? 'Egress' : 'Ingress')).map((p) => `${p.namespace}/${p.name}`);
        } else { rec.verdict = 'REJECTED'; rec.reason = 'Service has no ready endpoint'; }
      } else {
        rec.verdict = 'FORWARDED';
        if (this.d.compiled) rec.policy = this.d.compiled.explain({ src: svc >= 0 && backend >= 0 ? src : src, dst: svc >= 0 && backend >= 0 ? this.d.services.backends[svc].ips[backend] : dst, proto, dport: svc >= 0 && backend >= 0 ? this.d.services.backends[svc].ports[backend] : dport });
      }
      if (suppressed) { rec.suppressedBefore = suppressed; suppressed = 0; }
      out.write(JSON.stringify(rec) + '\n');
    };
  }

  /**
   * Trace real packets matching `filter` for at most `count` packets or `seconds`, and return the
   * records. Only one session at a time.
   */
  async traceReal(filter: TraceFilter, count: number, seconds: number): Promise<TraceRecord[]> {
    if (this.d.dp.trace) throw new Error('a trace is already running on this node');
    const session = new TraceSession(this.d.self.name, filter, Math.min(count, 1000), Math.min(seconds, 300) * 1000);
    this.d.dp.trace = session;
    try {
      while (!session.done && this.d.dp.trace === session) await new Promise((r) => setTimeout(r, 50));
    } finally {
      if (this.d.dp.trace === session) this.d.dp.trace = undefined;
    }
    return session.records;
  }

  private scratch?: { slab: FrameSlab; tx: TxQueue; ct: Conntrack; counters: Counters };

  /**
   * Follow a synthetic packet through the same stages without sending it (Open vSwitch's
   * ofproto/trace): nothing is learned, chosen for good, tracked or counted. When the packet would
   * leave for another node, the VXLAN datagram is returned so the trace can continue there.
   */
  injectSynthetic(req: { pod?: string; overlayFrom?: string; datagramHex?: string; dst?: string; proto?: number; dport?: number; sport?: number }): { records: TraceRecord[]; outputs: { port: number; label: string; bytes: number }[]; overlay?: { to: string; from: string; datagramHex: string } } {
    if (this.d.dp.trace) throw new Error('a trace is running on this node; try again when it ends');
    this.scratch ??= { slab: new FrameSlab(), tx: new TxQueue(256, 1024), ct: new Conntrack(64), counters: new Counters(1024) };
    const { slab, tx } = this.scratch;
    slab.reset(); tx.clear();
    const session = new TraceSession(this.d.self.name, {}, 1, 10_000);
    session.synthetic = true;
    const saved = { ct: this.d.dp.ct, counters: (this.d.dp as unknown as { counters: Counters }).counters };
    this.d.dp.ct = new Conntrack(64);
    (this.d.dp as unknown as { counters: Counters }).counters = this.scratch.counters;
    this.d.dp.dryRun = true; this.d.services.dryRun = true; this.d.dp.trace = session;
    try {
      const now = Date.now();
      if (req.datagramHex !== undefined) {
        const bytes = Buffer.from(req.datagramHex, 'hex');
        const o = slab.frameOffset(0);
        if (this.d.vnet) {
          // Slot layout in super-frame mode: [VXLAN 8][virtio-net header 12][inner frame].
          slab.u8.set(bytes.subarray(0, 8), o); slab.u8.fill(0, o + 8, o + 20); slab.u8.set(bytes.subarray(8), o + 20);
          slab.lens[0] = bytes.length + VNET_HDR_LEN;
        } else { slab.u8.set(bytes, o); slab.lens[0] = bytes.length; }
        slab.srcAddrs[0] = ipToU32(req.overlayFrom ?? '0.0.0.0');
        this.d.dp.processOverlayBatch(slab, 1, tx, now);
      } else {
        const st = this.d.local.get(req.pod ?? '');
        if (!st) throw new Error(`no pod ${req.pod} on node ${this.d.self.name}`);
        const v = this.d.vnet ? VNET_HDR_LEN : 0;
        slab.u8.fill(0, slab.frameOffset(0), slab.frameOffset(0) + v);
        const len = this.buildSynthetic(slab, slab.frameOffset(0) + v, st, req.dst ?? '', req.proto ?? IPPROTO_TCP, req.dport ?? 80, req.sport ?? 40000);
        slab.lens[0] = len + v;
        this.d.dp.processTapBatch(slab, st.port, 1, tx, now);
      }
    } finally {
      this.d.dp.ct = saved.ct;
      (this.d.dp as unknown as { counters: Counters }).counters = saved.counters;
      this.d.dp.dryRun = false; this.d.services.dryRun = false; this.d.dp.trace = undefined;
    }
    const outputs: { port: number; label: string; bytes: number }[] = [];
    let overlay: { to: string; from: string; datagramHex: string } | undefined;
    for (let i = 0; i < tx.count; i++) {
      outputs.push({ port: tx.port[i], label: this.d.ports.label[tx.port[i]], bytes: tx.len[i] });
      if (tx.port[i] === OVERLAY_PORT && !overlay) {
        // What the peer's socket would read: the VXLAN header and the inner frame.
        const hex = this.d.vnet
          ? Buffer.concat([Buffer.from([0x08, 0, 0, 0, (this.d.opts.vni >>> 16) & 0xff, (this.d.opts.vni >>> 8) & 0xff, this.d.opts.vni & 0xff, 0]), Buffer.from(slab.u8.subarray(tx.off[i], tx.off[i] + tx.len[i]))]).toString('hex')
          : Buffer.from(slab.u8.subarray(tx.off[i] + 28, tx.off[i] + tx.len[i])).toString('hex');
        overlay = { to: u32ToIp(tx.dstAddr[i]), from: this.d.self.internalIP, datagramHex: hex };
      }
    }
    return { records: session.records, outputs, overlay };
  }

  /** The first packet a pod would send to dst (a TCP SYN, a UDP datagram or a ping). */
  private buildSynthetic(slab: FrameSlab, off: number, st: PodState, dst: string, proto: number, dport: number, sport: number): number {
    const dv = slab.dv, u8 = slab.u8, dstIp = ipToU32(dst), podIp = ipToU32(st.ip);
    const sameSubnet = ((dstIp & this.d.routes.localMask) >>> 0) === this.d.routes.localNet && dstIp !== this.d.routes.gatewayIp;
    const peer = sameSubnet ? this.d.routes.localPort(dstIp) : -1;
    const dstMac = peer >= 0 ? { hi: this.d.ports.macHi[peer], lo: this.d.ports.macLo[peer] } : { hi: this.d.dp.cfg.routerMacHi, lo: this.d.dp.cfg.routerMacLo };
    const mac = macFromIp(POD_MAC_PREFIX, podIp);
    dv.setUint16(off, dstMac.hi); dv.setUint32(off + 2, dstMac.lo); dv.setUint16(off + 6, mac.hi); dv.setUint32(off + 8, mac.lo); dv.setUint16(off + 12, 0x0800);
    const l4 = off + 14 + 20;
    let l4len: number;
    if (proto === IPPROTO_TCP) l4len = emitTcp({ srcPort: sport, dstPort: dport, seq: 1, ack: 0, flags: 0x02, window: 64240, urgent: 0, options: new Uint8Array(0), payload: new Uint8Array(0) }, u8, l4, podIp, dstIp);
    else if (proto === IPPROTO_UDP) l4len = emitUdp({ srcPort: sport, dstPort: dport, payload: new TextEncoder().encode('podwire trace') }, u8, l4, podIp, dstIp);
    else l4len = emitIcmp({ type: 8, code: 0, rest: (sport << 16) | 1, payload: new Uint8Array(8) }, u8, l4);
    emitIpv4({ tos: 0, id: 1, flags: 0x4000, fragOffset: 0, ttl: 64, proto, src: st.ip, dst, options: new Uint8Array(0), payloadLen: l4len }, u8, off + 14);
    return 14 + 20 + l4len;
  }
}
