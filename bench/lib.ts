/**
 * Benchmark helpers shared by bench/same-node.ts, bench/cross-node.ts, bench/clusterip.ts and bench/ovs.ts.
 *
 * What is here:
 *   - bounded command execution, in the root namespace (only `ip netns ...` plumbing) or inside one
 *     of the bench's own namespaces (`ip netns exec NS ...`); every command has a timeout;
 *   - iperf3: a one-shot server (`iperf3 -s -1`) run as a child process that is always killed in a
 *     `finally`, and a JSON client for TCP (bits/s received) and UDP (packets/s received, loss);
 *   - ping RTT percentiles, computed from every `time=` line (not from ping's own summary);
 *   - the CPU time of a process from /proc/<pid>/stat (utime + stime, in clock ticks), which with the
 *     daemon's counters (`adminRequest(socket, {op: 'counters'})`, sum of txPackets over its ports)
 *     gives the daemon's CPU per forwarded frame;
 *   - a cleanup registry with SIGINT/SIGTERM handlers, so an interrupted bench still removes every
 *     namespace it created, and a sweep that deletes namespaces by the bench's unique prefix;
 *   - a small table printer and medians.
 *
 * Network safety: nothing here adds addresses, routes or links in the root namespace; the root
 * namespace only ever runs `ip netns add|del|pids|list` and `ip -n NS ...` (which acts inside NS).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { adminRequest } from '../src/daemon/client.ts';
import { labDown, nodeUnderlayIp, type LabState } from '../src/lab/lab.ts';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ------------------------------------------------------------------------------------------------
// Commands

export interface ShResult { code: number; stdout: string; stderr: string; timedOut: boolean }

const children = new Set<ChildProcess>();

/** Run a command with a hard timeout (SIGKILL when it expires). Never throws. */
export function sh(cmd: string, args: string[], timeoutMs = 60_000, input?: string): Promise<ShResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      children.delete(child);
      const e = err as (NodeJS.ErrnoException & { code?: unknown; killed?: boolean }) | null;
      const code = e ? (typeof e.code === 'number' ? e.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), timedOut: !!e?.killed });
    });
    children.add(child);
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Like sh, but throws with stderr when the command fails. */
export async function must(cmd: string, args: string[], timeoutMs = 60_000, input?: string): Promise<string> {
  const r = await sh(cmd, args, timeoutMs, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.timedOut ? `timed out after ${timeoutMs} ms` : (r.stderr.trim() || `exit ${r.code}`)}`);
  return r.stdout;
}

/** Run a command inside a network namespace. */
export function nsExec(netns: string, cmd: string[], timeoutMs = 60_000): Promise<ShResult> {
  return sh('ip', ['netns', 'exec', netns, ...cmd], timeoutMs);
}

/** Several `ip` commands applied inside a namespace (`ip -n NS -batch -`). */
export function ipIn(netns: string, lines: string[]): Promise<string> {
  return must('ip', ['-n', netns, '-batch', '-'], 30_000, lines.join('\n') + '\n');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ------------------------------------------------------------------------------------------------
// Prefixes, namespaces, cleanup

/** A fresh prefix: `tag` + 4 random hex digits (a valid lab name: 2-8 lowercase alnum). */
export function uniquePrefix(tag = 'bn'): string {
  for (;;) {
    const p = `${tag}${randomBytes(2).toString('hex')}`;
    if (!usedPrefixes.includes(p)) { usedPrefixes.push(p); return p; }
  }
}
/** Every prefix this process handed out (to check that none of their namespaces is left). */
export const usedPrefixes: string[] = [];

/** Namespaces of this process's prefixes that still exist. */
export async function leftoverNetns(): Promise<string[]> {
  return (await listNetns()).filter((n) => usedPrefixes.some((p) => n === p || n.startsWith(`${p}-`)));
}

export async function listNetns(): Promise<string[]> {
  const r = await sh('ip', ['netns', 'list'], 10_000);
  return r.stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

/** Delete every namespace named `prefix` or `prefix-...`, killing whatever still runs inside. */
export async function sweepNetns(prefix: string): Promise<string[]> {
  const mine = (await listNetns()).filter((n) => n === prefix || n.startsWith(`${prefix}-`));
  mine.sort((a, b) => b.length - a.length);
  for (const ns of mine) {
    const pids = (await sh('ip', ['netns', 'pids', ns], 10_000)).stdout.split('\n').filter(Boolean);
    for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    await sh('ip', ['netns', 'del', ns], 10_000);
  }
  return mine;
}

type Cleanup = () => Promise<unknown>;
const cleanups = new Map<number, Cleanup>();
let cleanupSeq = 0;

/** Register a cleanup to run on SIGINT/SIGTERM; returns a function that unregisters it. */
export function onCleanup(fn: Cleanup): () => void {
  const id = ++cleanupSeq;
  cleanups.set(id, fn);
  return () => { cleanups.delete(id); };
}

let handlersInstalled = false;
/** SIGINT/SIGTERM: kill our child processes, run every registered cleanup (bounded), then exit. */
export function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  let busy = false;
  const handler = (sig: NodeJS.Signals) => {
    if (busy) return;
    busy = true;
    process.stderr.write(`\n[bench] ${sig}: cleaning up\n`);
    for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
    const all = [...cleanups.values()].reverse();
    const work = (async () => { for (const fn of all) await fn().catch((e) => process.stderr.write(`[bench] cleanup: ${e}\n`)); })();
    const timer = new Promise((r) => setTimeout(r, 30_000));
    void Promise.race([work, timer]).finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

// ------------------------------------------------------------------------------------------------
// iperf3

export interface Server { kill(): void; done: Promise<void> }

/**
 * Start a one-shot iperf3 server inside a namespace and wait until it listens (polling `ss`).
 * The caller must `kill()` it in a finally (it also exits by itself after one test).
 */
export async function iperfServer(netns: string, port = 5201, timeoutMs = 5_000): Promise<Server> {
  const child = spawn('ip', ['netns', 'exec', netns, 'iperf3', '-s', '-1', '-p', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const done = new Promise<void>((r) => child.once('exit', () => { children.delete(child); r(); }));
  const server: Server = { kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); }, done };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`iperf3 server in ${netns} exited: ${stderr.trim()}`);
    const r = await nsExec(netns, ['ss', '-Hltn', `sport = :${port}`], 5_000);
    if (r.stdout.trim()) return server;
    if (Date.now() > deadline) { server.kill(); throw new Error(`iperf3 server in ${netns} not listening after ${timeoutMs} ms`); }
    await sleep(50);
  }
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

/**
 * One iperf3 test: a one-shot server on port 5201 in `serverNs`, the client in `clientNs` connecting
 * to `serverIp`:`targetPort` (5201 unless the path translates the port, as a Service does).
 */
async function iperfClient(clientNs: string, serverNs: string, serverIp: string, args: string[], seconds: number, targetPort = 5201): Promise<Json> {
  const server = await iperfServer(serverNs);
  try {
    const r = await nsExec(clientNs, ['iperf3', '-c', serverIp, '-p', String(targetPort), '-J', '-t', String(seconds), '--connect-timeout', '3000', ...args], (seconds + 20) * 1000);
    let j: Json;
    try { j = JSON.parse(r.stdout); } catch { throw new Error(`iperf3 ${args.join(' ')}: no JSON (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr.trim()}`); }
    if (j.error) throw new Error(`iperf3 ${args.join(' ')}: ${j.error}`);
    return j;
  } finally {
    server.kill();
    await Promise.race([server.done, sleep(2000)]);
  }
}

/** TCP throughput in bits/s as received by the server (`end.sum_received`). */
export async function iperfTcp(clientNs: string, serverNs: string, serverIp: string, seconds: number, streams = 1, targetPort = 5201): Promise<{ bps: number; retransmits: number; seconds: number }> {
  const j = await iperfClient(clientNs, serverNs, serverIp, ['-P', String(streams)], seconds, targetPort);
  return { bps: j.end.sum_received.bits_per_second, retransmits: j.end.sum_sent?.retransmits ?? 0, seconds: j.end.sum_received.seconds };
}

export interface UdpResult { sentPps: number; rxPps: number; lossPct: number; packets: number; lost: number; seconds: number }

/**
 * UDP with `len`-byte payloads at `rate` (iperf3 -b; "0" = as fast as the sender can). The figures
 * are the server's (receiver's) view reported back to the client: `end.sum_received.packets` sent,
 * of which `end.sum_received.lost_packets` never arrived (sequence-number gaps).
 */
export async function iperfUdp(clientNs: string, serverNs: string, serverIp: string, seconds: number, len = 64, rate = '0'): Promise<UdpResult> {
  const j = await iperfClient(clientNs, serverNs, serverIp, ['-u', '-l', String(len), '-b', rate], seconds);
  // iperf3 ≥ 3.8 splits the sender's and the receiver's view; older ones only have `end.sum`.
  const rcv = j.end.sum_received ?? j.end.sum, snd = j.end.sum_sent ?? j.end.sum;
  const secs = rcv.seconds || seconds;
  const packets = rcv.packets, lost = rcv.lost_packets;
  return { sentPps: snd.packets / (snd.seconds || secs), rxPps: (packets - lost) / secs, lossPct: rcv.lost_percent ?? (100 * lost / Math.max(1, packets)), packets, lost, seconds: secs };
}

// ------------------------------------------------------------------------------------------------
// ping

export interface PingResult { p50: number; p90: number; p99: number; min: number; replies: number; sent: number }

/** `count` pings at `intervalS` (root may go down to 0.01 s); RTT percentiles in ms from every reply. */
export async function pingRtt(netns: string, ip: string, count = 200, intervalS = 0.01): Promise<PingResult> {
  const r = await nsExec(netns, ['ping', '-n', '-c', String(count), '-i', String(intervalS), '-W', '1', ip], (count * intervalS + 15) * 1000);
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  if (times.length === 0) throw new Error(`ping ${ip} from ${netns}: no replies (${r.stderr.trim() || r.stdout.trim().split('\n').pop()})`);
  return { p50: percentile(times, 50), p90: percentile(times, 90), p99: percentile(times, 99), min: times[0], replies: times.length, sent: count };
}

/** Ping until a reply arrives (ARP/FDB warm-up, connectivity check); throws after `timeoutMs`. */
export async function waitReachable(netns: string, ip: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await nsExec(netns, ['ping', '-n', '-c', '1', '-W', '1', ip], 5_000);
    if (r.code === 0) return;
    if (Date.now() > deadline) throw new Error(`${ip} is not reachable from ${netns} after ${timeoutMs} ms`);
    await sleep(200);
  }
}

// ------------------------------------------------------------------------------------------------
// CPU and counters

let clkTck = 0;
export async function clockTicks(): Promise<number> {
  if (!clkTck) clkTck = Number((await sh('getconf', ['CLK_TCK'], 5_000)).stdout.trim()) || 100;
  return clkTck;
}

/** utime + stime of a process (all its threads), in seconds. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After "pid (comm) ": f[0] is field 3 (state), so utime (14) is f[11] and stime (15) is f[12].
  return (Number(f[11]) + Number(f[12])) / (await clockTicks());
}

function cmdline(pid: number): string[] {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean); } catch { return []; }
}

/**
 * The pid of a node's podwire daemon. The lab records the pid of the `nsenter` it spawned; nsenter
 * execs the daemon, so that pid is the node process itself: checked against /proc/<pid>/cmdline
 * (`... daemon --node NAME ... --admin-socket SOCKET ...`). If that does not match, look for the
 * process holding that admin socket path on its command line.
 */
export function findDaemonPid(lab: LabState, nodeName: string): number {
  const n = lab.nodes.find((x) => x.name === nodeName);
  if (!n) throw new Error(`lab ${lab.prefix} has no node ${nodeName}`);
  if (n.overlay !== 'podwire') throw new Error(`${nodeName} of lab ${lab.prefix} is a kernel node: no daemon`);
  const isDaemon = (pid: number) => {
    const c = cmdline(pid);
    const at = (flag: string) => c[c.indexOf(flag) + 1];
    return c.includes('daemon') && c.indexOf('--node') >= 0 && at('--node') === nodeName && at('--admin-socket') === n.socket;
  };
  if (n.pid && isDaemon(n.pid)) return n.pid;
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    if (isDaemon(Number(d))) return Number(d);
  }
  throw new Error(`no daemon process for ${nodeName} of lab ${lab.prefix} (recorded pid ${n.pid}: ${cmdline(n.pid ?? 0).join(' ') || 'gone'})`);
}

export interface CounterView { ports: { port: number; label: string; rxPackets: number; txPackets: number; rxBytes: number; txBytes: number }[]; batches: number; batchFrames: number; vxlanEncap: number; vxlanDecap: number; drops: Record<string, number> }

export function daemonCounters(lab: LabState, nodeName: string): Promise<CounterView> {
  const n = lab.nodes.find((x) => x.name === nodeName)!;
  return adminRequest<CounterView>(n.socket, { op: 'counters' }, 10_000);
}

export interface DaemonSnap { cpu: number; tx: number; rx: number; batches: number; batchFrames: number; drops: number; at: number }

/** One reading of a daemon: CPU seconds, frames sent/received over all its ports, batches. */
export async function snapDaemon(lab: LabState, nodeName: string, pid: number): Promise<DaemonSnap> {
  const c = await daemonCounters(lab, nodeName);
  const cpu = await cpuSeconds(pid);
  return {
    cpu, at: performance.now() / 1000,
    tx: c.ports.reduce((a, p) => a + p.txPackets, 0), rx: c.ports.reduce((a, p) => a + p.rxPackets, 0),
    batches: c.batches, batchFrames: c.batchFrames, drops: Object.values(c.drops).reduce((a, b) => a + b, 0),
  };
}

export interface DaemonDelta { cpuS: number; frames: number; rxFrames: number; wallS: number; fps: number; usPerFrame: number; cores: number; framesPerBatch: number; drops: number }

/** Between two snapshots: frames forwarded (tx delta), frames/s, CPU µs per frame, cores used. */
export function daemonDelta(a: DaemonSnap, b: DaemonSnap): DaemonDelta {
  const cpuS = b.cpu - a.cpu, frames = b.tx - a.tx, wallS = b.at - a.at, batches = b.batches - a.batches;
  return {
    cpuS, frames, rxFrames: b.rx - a.rx, wallS, fps: frames / wallS, usPerFrame: frames > 0 ? (cpuS * 1e6) / frames : NaN,
    cores: cpuS / wallS, framesPerBatch: batches > 0 ? (b.batchFrames - a.batchFrames) / batches : NaN, drops: b.drops - a.drops,
  };
}

// ------------------------------------------------------------------------------------------------
// Statistics and printing

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function loadavg(): string { return fs.readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' '); }

/** Print rows as an aligned table; first row is the header. Numbers are right-aligned. */
export function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  return [line(rows[0]), w.map((x) => '-'.repeat(x)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export function fmt(x: number, digits = 2): string {
  if (!Number.isFinite(x)) return '-';
  return x.toFixed(digits);
}

/** A comparison row: metric, podwire, kernel, podwire/kernel. */
export interface Metric { name: string; podwire: number[]; kernel: number[]; scale?: number; digits?: number; ratio?: boolean }

export function metricRows(ms: Metric[]): string[][] {
  const rows = [['metric', 'podwire', 'kernel', 'podwire/kernel']];
  for (const m of ms) {
    const s = m.scale ?? 1, d = m.digits ?? 2;
    const p = median(m.podwire) * s, k = median(m.kernel) * s;
    const ratio = m.ratio === false ? '' : fmt(p / k, 2);
    rows.push([m.name, fmt(p, d), fmt(k, d), ratio]);
  }
  return rows;
}

/** Parse `--seconds N --runs N --quick` (and pass through unknown flags). */
export function parseBenchArgs(argv: string[]): { seconds: number; runs: number; quick: boolean; udpRate: string } {
  let seconds = 5, runs = 3, quick = false, udpRate = '0', setS = false, setR = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') quick = true;
    else if (a === '--seconds') { seconds = Number(argv[++i]); setS = true; }
    else if (a === '--runs') { runs = Number(argv[++i]); setR = true; }
    else if (a === '--udp-rate') udpRate = String(argv[++i]);
    else throw new Error(`unknown argument ${a} (use --seconds N, --runs N, --quick, --udp-rate BW)`);
  }
  if (quick) { if (!setS) seconds = 2; if (!setR) runs = 1; }
  if (!(seconds >= 1 && seconds <= 60)) throw new Error('--seconds must be 1..60');
  if (!(runs >= 1 && runs <= 20)) throw new Error('--runs must be 1..20');
  return { seconds, runs, quick, udpRate };
}

// ------------------------------------------------------------------------------------------------
// Measurements shared by the benches: one "side" is a client namespace, a server namespace and the
// podwire daemons on the path (none for a kernel baseline).

export interface DaemonRef { lab: LabState; node: string; pid: number }
/**
 * One path under test. The iperf3 server always listens on 5201 in `serverNs`; the client connects
 * to `serverIp`:`targetPort` (default 5201; a ClusterIP's port when a Service translates it).
 */
export interface Side { name: string; clientNs: string; serverNs: string; serverIp: string; daemons: DaemonRef[]; targetPort?: number }

/** Results of one run, by metric name (one value per run is pushed). */
export class Results {
  readonly values = new Map<string, number[]>();
  readonly notes: string[] = [];
  push(key: string, v: number): void { const a = this.values.get(key) ?? []; a.push(v); this.values.set(key, a); }
  get(key: string): number[] { return this.values.get(key) ?? []; }
  /** Run one measurement; a failure is noted (and printed) instead of aborting the whole bench. */
  async attempt(label: string, fn: () => Promise<void>): Promise<void> {
    try { await fn(); } catch (e) {
      const lines = (e as Error).message.split('\n').map((l) => l.trim()).filter(Boolean);
      const cause = lines.slice(1).find((l) => /error|Error|ERR|failed/.test(l));
      const msg = `${label}: ${lines[0]}${cause ? ` … ${cause}` : ''}`;
      this.notes.push(msg);
      progress(`FAILED ${msg}`);
    }
  }
}

/** A bench pod: an iperf3 server port (5201), `app` label, optionally a pinned address. */
export function benchPodManifest(name: string, node: string, o: { ip?: string; app?: string } = {}): string {
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: default
  labels: { app: ${o.app ?? 'bench'} }
${o.ip ? `  annotations: { podwire.io/ip: "${o.ip}" }\n` : ''}spec:
  nodeName: ${node}
  containers:
  - name: main
    image: bench
    ports:
    - { containerPort: 5201, protocol: TCP }
`;
}

/** One node of `twoNodeUnderlay`: its namespace, its underlay address and its peer's, its pod's (empty) namespace. */
export interface BareNode { netns: string; underlayIp: string; peerIp: string; pod: string }

/**
 * Two bare nodes on an underlay, for baselines that bring their own data plane (bench/ovs.ts,
 * bench/floor.ts): namespace `<p>-underlay` with bridge br0; per node i (1, 2) a namespace
 * `<p>-node<i>` whose `underlay0` (MTU 1500) is a veth on br0, up without an address (the caller
 * puts node i's, 192.168.56.(10+i) as in the labs, where its data plane wants it), and an empty
 * pod namespace `<p>-node<i>-bench-a|b`. The caller removes it all (sweepNetns(p)).
 */
export async function twoNodeUnderlay(p: string): Promise<BareNode[]> {
  const under = `${p}-underlay`;
  await must('ip', ['netns', 'add', under], 10_000);
  await ipIn(under, ['link set lo up', 'link add br0 type bridge', 'link set br0 mtu 1500 up']);
  const nodes: BareNode[] = [];
  for (const i of [1, 2]) {
    const n: BareNode = { netns: `${p}-node${i}`, underlayIp: nodeUnderlayIp(i), peerIp: nodeUnderlayIp(3 - i), pod: `${p}-node${i}-bench-${i === 1 ? 'a' : 'b'}` };
    await must('ip', ['netns', 'add', n.netns], 10_000);
    await must('ip', ['netns', 'add', n.pod], 10_000);
    await ipIn(under, [`link add node${i} mtu 1500 type veth peer name underlay0 mtu 1500 netns ${n.netns}`, `link set node${i} master br0 up`]);
    await ipIn(n.netns, ['link set lo up', 'link set underlay0 up']);
    nodes.push(n);
  }
  return nodes;
}

/**
 * Run `fn` as attempt `label` with the lab of this `prefix` removed afterwards, also on failure
 * and on Ctrl-C; namespaces of the prefix still there after that are noted in `r`.
 */
export async function inFreshLab(prefix: string, r: Results, label: string, fn: () => Promise<void>): Promise<void> {
  const off = onCleanup(() => labDown(prefix));
  try {
    await r.attempt(label, fn);
  } finally {
    await labDown(prefix).catch((e) => progress(`labDown ${prefix}: ${e}`));
    off();
    const left = (await listNetns()).filter((n) => n.startsWith(`${prefix}-`));
    if (left.length) r.notes.push(`namespaces left behind: ${left.join(', ')}`);
  }
}

export function progress(line: string): void { process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`); }

async function snapAll(side: Side): Promise<DaemonSnap[]> {
  return Promise.all(side.daemons.map((d) => snapDaemon(d.lab, d.node, d.pid)));
}

/** Run `fn` between two snapshots of every daemon on the path; record daemon metrics under `key`. */
export async function withDaemons<T>(side: Side, r: Results, key: string, fn: () => Promise<T>): Promise<T> {
  const a = await snapAll(side);
  const out = await fn();
  const b = await snapAll(side);
  side.daemons.forEach((d, i) => {
    const x = daemonDelta(a[i], b[i]);
    r.push(`${side.name}:${key}:${d.node}:kfps`, x.fps / 1e3);
    r.push(`${side.name}:${key}:${d.node}:us`, x.usPerFrame);
    r.push(`${side.name}:${key}:${d.node}:cores`, x.cores);
    r.push(`${side.name}:${key}:${d.node}:batch`, x.framesPerBatch);
    r.push(`${side.name}:${key}:${d.node}:drops`, x.drops);
  });
  return out;
}

/** The machine's CPU time so far from /proc/stat, in clock ticks: all of it, and the busy part (not idle or iowait). */
export function machineCpuTicks(): { total: number; busy: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { total, busy: total - f[3] - f[4] };
}

export async function measureTcp(side: Side, r: Results, seconds: number, streams: number): Promise<void> {
  const key = `tcp${streams}`;
  await r.attempt(`${side.name} TCP -P ${streams}`, async () => {
    const c0 = machineCpuTicks();
    const t = await withDaemons(side, r, key, () => iperfTcp(side.clientNs, side.serverNs, side.serverIp, seconds, streams, side.targetPort));
    const c1 = machineCpuTicks();
    r.push(`${side.name}:${key}:gbps`, t.bps / 1e9);
    r.push(`${side.name}:${key}:retr`, t.retransmits);
    // How many of the machine's CPUs were busy, whoever used them: whether a second worker would
    // have had an idle core to run on.
    r.push(`${side.name}:${key}:busyCpus`, ((c1.busy - c0.busy) / (c1.total - c0.total)) * os.availableParallelism());
  });
}

export async function measureUdp(side: Side, r: Results, seconds: number, rate: string): Promise<void> {
  await r.attempt(`${side.name} UDP 64 B`, async () => {
    const u = await withDaemons(side, r, 'udp', () => iperfUdp(side.clientNs, side.serverNs, side.serverIp, seconds, 64, rate));
    r.push(`${side.name}:udp:rxkpps`, u.rxPps / 1e3);
    r.push(`${side.name}:udp:sentkpps`, u.sentPps / 1e3);
    r.push(`${side.name}:udp:loss`, u.lossPct);
  });
}

// ------------------------------------------------------------------------------------------------
// 64-byte frames at saturation: trafgen (netsniff-ng's packet generator) in the client pod

/**
 * Flood the path with `count` minimal UDP frames (64 bytes on the wire with the FCS: 18 bytes of
 * payload) from the client pod and measure the daemons while they forward them. iperf3 cannot do
 * this on 2 cores: its per-datagram cost is higher than a daemon's, so the daemons idle between
 * small batches. trafgen writes from a packet ring (PF_PACKET TX_RING, no qdisc) and keeps the
 * daemons' queues full, so their batches are full and "frames per second per core" is what a
 * saturated daemon does. The frames go to the client's next hop for the server (its MAC from the
 * client's neighbour table after warmUp's ping): the server pod on one node, the gateway across
 * nodes. The server pod holds a UDP socket on the port, connected to the flow's source as
 * iperf3's server connects its UDP socket, that never reads: what reaches it is dropped at its
 * receive buffer (the receiving pod's kernel work up to there runs inside the daemon's TAP write
 * and is charged to the daemon). The frames carry DF and consecutive IPv4 IDs, as a connected
 * Linux UDP socket's datagrams do, so the daemon may write them into the receiving TAP in USO runs;
 * frames the sending TAP drops when its queue is full leave gaps in the IDs, and a gap ends a run.
 * Bounded by count and by a 30 s timeout.
 */
export async function measureSaturated(side: Side, r: Results, count = 2_000_000): Promise<void> {
  await r.attempt(`${side.name} trafgen 64 B`, async () => {
    const addr = JSON.parse((await nsExec(side.clientNs, ['ip', '-j', 'addr', 'show', 'eth0'], 5_000)).stdout)[0];
    const srcMac: string = addr.address, srcIp: string = addr.addr_info.find((a: { family: string }) => a.family === 'inet').local;
    const route = JSON.parse((await nsExec(side.clientNs, ['ip', '-j', 'route', 'get', side.serverIp], 5_000)).stdout)[0];
    const hop: string = route.gateway ?? side.serverIp;
    const neigh = JSON.parse((await nsExec(side.clientNs, ['ip', '-j', 'neigh', 'show', hop, 'dev', 'eth0'], 5_000)).stdout)[0];
    if (!neigh?.lladdr) throw new Error(`no neighbour entry for ${hop} in ${side.clientNs}`);
    const conf = `{ eth(da=${neigh.lladdr}, sa=${srcMac}), ipv4(saddr=${srcIp}, daddr=${side.serverIp}, ttl=64, df, id=dinc(0, 65535)), udp(sp=40000, dp=9), fill(0x41, 18) }\n`;
    const sink = spawn('ip', ['netns', 'exec', side.serverNs, 'timeout', '60', 'python3', '-c',
      `import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 9)); s.connect(('${srcIp}', 40000)); time.sleep(60)`], { stdio: 'ignore' });
    try {
      await new Promise((res) => setTimeout(res, 300));
      await withDaemons(side, r, 'gen', () => new Promise<void>((resolve, reject) => {
        const gen = spawn('ip', ['netns', 'exec', side.clientNs, 'timeout', '30', 'trafgen', '-o', 'eth0', '--cpus', '1', '-n', String(count), '-q', '--conf', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
        let err = '';
        gen.stderr!.on('data', (d) => { err += d; });
        gen.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`trafgen exited ${code}: ${err.trim()}`))));
        gen.stdin!.end(conf);
      }).then(() => new Promise((res) => setTimeout(res, 200))));   // let the daemons drain their queues
    } finally {
      sink.kill();
    }
  });
}

export async function measurePing(side: Side, r: Results, count = 200): Promise<void> {
  await r.attempt(`${side.name} ping`, async () => {
    const p = await pingRtt(side.clientNs, side.serverIp, count, 0.01);
    r.push(`${side.name}:ping:p50`, p.p50 * 1000);
    r.push(`${side.name}:ping:p90`, p.p90 * 1000);
    r.push(`${side.name}:ping:lost`, p.sent - p.replies);
  });
}

/**
 * Wait until the lab's daemons are at least 15 s old before a latency measurement. V8's memory
 * reducer runs a few major GCs about 8 s after a process's start-up GC (seen with `--trace-gc`:
 * at 8.1-9.4 s in both daemons), and their concurrent marking takes one of this machine's two
 * cores; a ping measured then measures that transient, not the data path. After it, a daemon
 * that allocates nothing per packet has nothing for the collector to do.
 */
export async function pastStartup(upAt: number, ms = 15_000): Promise<void> {
  const wait = upAt + ms - Date.now();
  if (wait > 0) await sleep(wait);
}

/** A short TCP transfer so both sides start warm (the daemon's JIT, ARP/FDB entries, conntrack). */
export async function warmUp(side: Side): Promise<void> {
  await waitReachable(side.clientNs, side.serverIp, 10_000);
  await iperfTcp(side.clientNs, side.serverNs, side.serverIp, 1, 1).catch(() => undefined);
}

/** `ip -d link show eth0` inside a pod, reduced to what matters for speed (kind, vnet_hdr, MTU). */
export async function podIfSummary(netns: string): Promise<{ mtu: number; text: string }> {
  const out = (await nsExec(netns, ['ip', '-d', 'link', 'show', 'eth0'], 5_000)).stdout;
  const mtu = Number(/ mtu (\d+)/.exec(out)?.[1] ?? NaN);
  const tun = /\n\s+(tun type \S+ pi \S+ vnet_hdr \S+)/.exec(out)?.[1] ?? (/\n\s+veth/.test(out) ? 'veth' : '?');
  const tso = /tso_max_size (\d+)/.exec(out)?.[1];
  return { mtu, text: `${tun}, mtu ${mtu}${tso ? `, tso_max_size ${tso}` : ''}` };
}

/** Context lines printed above each table. */
export async function environment(): Promise<string> {
  const kernel = (await sh('uname', ['-r'], 5_000)).stdout.trim();
  const iperf = (await sh('iperf3', ['--version'], 5_000)).stdout.split('\n')[0].trim();
  const cpus = (await sh('nproc', [], 5_000)).stdout.trim();
  const head = (await sh('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD'], 5_000)).stdout.trim() || '?';
  const dirty = (await sh('git', ['-C', REPO, 'status', '--porcelain', '--', 'src', 'native', 'binding.gyp'], 5_000)).stdout.split('\n').filter(Boolean).length;
  return `machine: ${cpus} CPUs, kernel ${kernel}, Node ${process.version}, ${iperf}\ncode: commit ${head}${dirty ? ` + ${dirty} uncommitted change(s) in src/native` : ''}`;
}

/** Daemon-side rows (podwire only): one column per node, medians over runs. */
export function daemonRows(r: Results, nodes: string[], tests: [string, string][]): string[][] {
  const rows = [['metric', ...nodes]];
  const what: [string, string, number][] = [
    ['kfps', 'forwarded (kframes/s)', 0], ['us', 'CPU per frame (µs)', 2], ['cores', 'cores used', 2],
    ['batch', 'frames per batch', 1], ['drops', 'drops', 0],
  ];
  for (const [key, label] of tests) {
    for (const [w, wl, digits] of what) rows.push([`${label}: ${wl}`, ...nodes.map((n) => fmt(median(r.get(`podwire:${key}:${n}:${w}`)), digits))]);
  }
  return rows;
}
