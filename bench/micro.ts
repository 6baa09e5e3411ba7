/**
 * Micro-benchmarks of the hot path's tables and stages, in one process, no devices:
 *
 *   1. Service lookup (frontend probe + round-robin selection) with 10 Services against 10,000
 *      Services × 10 endpoints. O(1) in the number of Services means a ratio near 1.0.
 *   2. NetworkPolicy: compile time, table memory and classification rate for 100 pods / 10
 *      policies against 10,000 pods / 1,000 policies. The per-packet cost ratio should stay near 1.0.
 *   3. The pipeline with tracing: the same frames through (a) a build with no trace hooks at all
 *      (generated from src/dataplane/pipeline.ts by deleting every trace statement), (b) the real
 *      build with tracing off, (c) the real build with a trace session attached whose filter
 *      matches none of the frames (every frame is checked against it), (d) one that matches 1 frame
 *      in 64. Ratios against (a).
 *
 * Figures are ns per operation, medians of interleaved rounds; read the ratios (same process, same
 * moment), not the absolute values. Run: node --import tsx bench/micro.ts [--quick]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServiceTable, LbAlgorithm } from '../src/tables/services.ts';
import { compilePolicies } from '../src/policy/compiler.ts';
import { cluster, rng } from './cluster-gen.ts';
import { FrameSlab, TxQueue } from '../src/frame/slab.ts';
import { Fdb } from '../src/tables/fdb.ts';
import { PortTable, PortKind, HOST_PORT, OVERLAY_PORT } from '../src/tables/ports.ts';
import { RouteTable } from '../src/tables/routes.ts';
import { Counters } from '../src/dataplane/counters.ts';
import { Dataplane } from '../src/dataplane/pipeline.ts';
import { TraceSession } from '../src/dataplane/trace.ts';
import { Conntrack } from '../src/tables/conntrack.ts';
import { ipToU32 as ip } from '../src/control/addressing.ts';
import { emitIpv4 } from '../src/wire/ipv4.ts';
import { emitUdp } from '../src/wire/udp.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 3 : 7;

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
/** ns per call of fn, over n calls. */
function time(n: number, fn: (i: number) => void): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / n;
}
function table(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? (Number.isInteger(c) ? String(c) : c.toFixed(2)) : c)));
  const w = cells[0].map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ')).join('\n');
}

// ------------------------------------------------------------------------------------------------
// 1. Service lookup at scale.

function serviceTable(services: number, endpoints: number): { t: ServiceTable; vips: Uint32Array } {
  const t = new ServiceTable(services + 16, 1 << 16);
  const vips = new Uint32Array(services);
  for (let s = 0; s < services; s++) {
    const vip = (ip('10.96.0.0') + 2 + s) >>> 0;
    vips[s] = vip;
    const sp = t.upsert({ key: `ns/svc-${s}:80/TCP`, proto: 6, vip, port: 80, nodePort: 0, externalIps: [], algorithm: LbAlgorithm.RoundRobin, affinityMs: 0, externalLocal: false });
    const ips: number[] = [], ports: number[] = [];
    for (let e = 0; e < endpoints; e++) { ips.push((ip('10.244.0.0') + s * endpoints + e + 2) >>> 0); ports.push(8080); }
    t.setBackends(sp, ips, ports, []);
  }
  return { t, vips };
}

function benchServices(): string {
  const small = serviceTable(10, 10), large = serviceTable(10_000, 10);
  const N = quick ? 200_000 : 1_000_000;
  const client = ip('10.244.1.5');
  // hot = the same 10 Services are looked up in both tables (does the table's size cost anything?);
  // spread = lookups spread over every installed Service (adds the memory of a larger working set).
  const run = (x: { t: ServiceTable; vips: Uint32Array }, hot = false) => {
    const r = rng(7), n = hot ? 10 : x.vips.length;
    const picks = new Uint32Array(4096);
    for (let i = 0; i < picks.length; i++) picks[i] = x.vips[r() % n];
    let sink = 0;
    const ns = time(N, (i) => {
      const sp = x.t.frontend(6, picks[i & 4095], 80, false);
      sink += x.t.select(sp, client, 40000 + (i & 1023), i, 0, false);
    });
    if (sink < 0) console.log(sink);
    return ns;
  };
  run(small); run(large); run(large, true);   // warm up both shapes
  const a: number[] = [], b: number[] = [], c: number[] = [];
  for (let k = 0; k < ROUNDS; k++) { a.push(run(small)); b.push(run(large, true)); c.push(run(large)); }
  const s = median(a), h = median(b), l = median(c);
  return `Service lookup + backend selection per new connection (frontend probe, round-robin):\n${table([
    ['case', 'ns/lookup', 'ratio'], ['10 Services x 10 endpoints', s, 1],
    ['10,000 Services x 10 endpoints, the same 10 Services looked up', h, h / s],
    ['10,000 Services x 10 endpoints, lookups spread over all of them', l, l / s]])}`;
}

// ------------------------------------------------------------------------------------------------
// 2. NetworkPolicy at scale.

function benchPolicy(): string {
  const rows: (string | number)[][] = [['case', 'compile ms', 'tables MiB', 'heap MiB', 'ns/classify']];
  const results: number[] = [];
  for (const [pods, policies] of [[100, 10], [10_000, 1_000]] as const) {
    const view = cluster(pods, policies, pods);
    global.gc?.();
    const heap0 = process.memoryUsage().heapUsed;
    const t0 = performance.now();
    const c = compilePolicies(view);
    const compileMs = performance.now() - t0;
    global.gc?.();
    const heapMiB = (process.memoryUsage().heapUsed - heap0) / 2 ** 20;
    const r = rng(3), P = view.pods.length;
    const src = new Uint32Array(4096), dst = new Uint32Array(4096), port = new Uint16Array(4096);
    for (let i = 0; i < 4096; i++) { src[i] = view.pods[r() % P].ip; dst[i] = view.pods[r() % P].ip; port[i] = 8080 + (r() % 12); }
    const N = quick ? 200_000 : 1_000_000;
    let sink = 0;
    const one = () => time(N, (i) => { sink += c.classify(src[i & 4095], dst[i & 4095], 6, port[i & 4095]); });
    one();
    const xs: number[] = [];
    for (let k = 0; k < ROUNDS; k++) xs.push(one());
    if (sink < 0) console.log(sink);
    results.push(median(xs));
    rows.push([`${pods} pods, ${policies} policies`, compileMs, c.stats().bytes / 2 ** 20, heapMiB, median(xs)]);
  }
  rows.push(['ratio (large / small) per packet', '', '', '', results[1] / results[0]]);
  return `NetworkPolicy: compile and classify both directions of a packet (${global.gc ? 'heap measured after gc' : 'run with --expose-gc for heap figures'}):\n${table(rows)}`;
}

// ------------------------------------------------------------------------------------------------
// 3. Trace hooks.

/** Generate a copy of the pipeline with every trace statement removed (the "no hooks" build). */
function pipelineWithoutTraceHooks(): string {
  const srcPath = path.join(HERE, '../src/dataplane/pipeline.ts');
  const lines = fs.readFileSync(srcPath, 'utf8').split('\n');
  const out: string[] = [];
  let skipping = 0;
  for (const line of lines) {
    if (skipping > 0) {
      skipping += (line.match(/{/g) ?? []).length - (line.match(/}/g) ?? []).length;
      continue;
    }
    const t = line.trim();
    if (/^if \(this\.(tracing|trace !== undefined)[^)]*\)/.test(t)) {
      const depth = (line.match(/{/g) ?? []).length - (line.match(/}/g) ?? []).length;
      if (t.endsWith('{')) skipping = depth;
      continue;   // single-line statement: dropped
    }
    out.push(line);
  }
  const dir = path.join(HERE, '.generated');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'pipeline-notrace.ts');
  fs.writeFileSync(file, out.join('\n').replaceAll("from '../", "from '../../src/").replaceAll("from './", "from '../../src/dataplane/"));
  return file;
}

interface Rig { dp: Dataplane; slab: FrameSlab; tx: TxQueue; port: number }

function rig(DP: typeof Dataplane): Rig {
  const ports = new PortTable(64), counters = new Counters(64);
  const routes = new RouteTable(ip('10.244.1.0'), 24, ip('10.244.0.0'), 16, 16);
  const dp = new DP(ports, routes, new Fdb(64), counters, { routerMacHi: 0x0e77, routerMacLo: ip('192.168.56.11'), hostMacHi: 0x0e68, hostMacLo: ip('192.168.56.11'), vni: 1, vxlanPort: 4789, underlayMtu: 1500 });
  dp.ct = new Conntrack(4096);
  ports.attach(PortKind.Overlay, 100, 0, 0, ip('192.168.56.11'), 'overlay', OVERLAY_PORT);
  ports.attach(PortKind.Host, 101, 0x0e68, ip('192.168.56.11'), 0, 'host', HOST_PORT);
  const a = ports.attach(PortKind.Pod, 102, 0x0a58, ip('10.244.1.10'), ip('10.244.1.10'), 'default/a');
  const b = ports.attach(PortKind.Pod, 103, 0x0a58, ip('10.244.1.11'), ip('10.244.1.11'), 'default/b');
  routes.setLocalPod(ip('10.244.1.10'), a); routes.setLocalPod(ip('10.244.1.11'), b);
  routes.upsertNode({ name: 'node1', podNet: ip('10.244.1.0'), prefixLen: 24, underlayIp: ip('192.168.56.11'), vtepMacHi: 0x0e77, vtepMacLo: ip('192.168.56.11'), self: true });
  routes.upsertNode({ name: 'node2', podNet: ip('10.244.2.0'), prefixLen: 24, underlayIp: ip('192.168.56.12'), vtepMacHi: 0x0e77, vtepMacLo: ip('192.168.56.12'), self: false });
  dp.refreshPodPorts();
  const slab = new FrameSlab(), tx = new TxQueue(256, 64);
  // 64 UDP frames from pod a to a pod on node2 (routed, tracked, encapsulated): one flow per frame.
  for (let i = 0; i < 64; i++) {
    const off = slab.frameOffset(i), dv = slab.dv;
    dv.setUint16(off, 0x0e77); dv.setUint32(off + 2, ip('192.168.56.11')); dv.setUint16(off + 6, 0x0a58); dv.setUint32(off + 8, ip('10.244.1.10')); dv.setUint16(off + 12, 0x0800);
    const l4len = emitUdp({ srcPort: 40000 + i, dstPort: 53, payload: new Uint8Array(18) }, slab.u8, off + 34, '10.244.1.10', '10.244.2.5');
    emitIpv4({ tos: 0, id: i, flags: 0x4000, fragOffset: 0, ttl: 64, proto: 17, src: '10.244.1.10', dst: '10.244.2.5', options: new Uint8Array(0), payloadLen: l4len }, slab.u8, off + 14);
    slab.lens[i] = 34 + l4len;
  }
  return { dp, slab, tx, port: a };
}

function runRig(r: Rig, batches: number): number {
  // The pipeline rewrites TTL and MACs in place; restore them so every pass forwards the same frames.
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < batches; k++) {
    for (let i = 0; i < 64; i++) {
      const off = r.slab.frameOffset(i), dv = r.slab.dv;
      dv.setUint16(off, 0x0e77); dv.setUint32(off + 2, 0xc0a8380b); dv.setUint16(off + 6, 0x0a58); dv.setUint32(off + 8, 0x0af4010a);
      dv.setUint8(off + 22, 64); dv.setUint16(off + 24, 0); dv.setUint16(off + 24, checksum(r.slab.u8, off + 14));
    }
    r.slab.reset(); r.tx.clear();
    r.dp.processTapBatch(r.slab, r.port, 64, r.tx, 1000);
  }
  return Number(process.hrtime.bigint() - t0) / (batches * 64);
}

function checksum(u8: Uint8Array, off: number): number {
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += (u8[off + i] << 8) | u8[off + i + 1];
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

async function benchTrace(): Promise<string> {
  const file = pipelineWithoutTraceHooks();
  const { Dataplane: NoHooks } = (await import(file)) as { Dataplane: typeof Dataplane };
  const bare = rig(NoHooks), off = rig(Dataplane), miss = rig(Dataplane), hit = rig(Dataplane);
  const B = quick ? 2000 : 8000;
  const attach = (r: Rig, filterIp: string, max: number) => { r.dp.trace = new TraceSession('bench', { ip: ip(filterIp), port: 40000 }, max, 3_600_000); };
  const res: Record<string, number[]> = { bare: [], off: [], miss: [], hit: [] };
  for (let k = 0; k < ROUNDS + 1; k++) {
    const keep = k > 0;
    const a = runRig(bare, B), b = runRig(off, B);
    attach(miss, '10.9.9.9', 1e9); const c = runRig(miss, B);
    attach(hit, '10.244.2.5', 1e9); const d = runRig(hit, B);
    if (keep) { res.bare.push(a); res.off.push(b); res.miss.push(c); res.hit.push(d); }
  }
  const base = median(res.bare);
  return `Pipeline per frame (routed + tracked + VXLAN-encapsulated UDP, 64-frame batches), trace hooks:\n${table([
    ['build', 'ns/frame', 'ratio'],
    ['no trace hooks (generated)', base, 1],
    ['trace hooks, tracing off', median(res.off), median(res.off) / base],
    ['session attached, filter matches nothing', median(res.miss), median(res.miss) / base],
    ['session attached, 1 frame in 64 traced', median(res.hit), median(res.hit) / base],
  ])}`;
}

console.log(`podwire micro-benchmarks (${quick ? 'quick' : 'full'}), node ${process.version}, load ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}\n`);
console.log(benchServices() + '\n');
console.log(benchPolicy() + '\n');
console.log(await benchTrace());
