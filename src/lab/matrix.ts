/**
 * Reachability matrices: what every pod can reach, measured with real connections, next to what
 * the compiled NetworkPolicy says it should reach.
 *
 * This is the truth table of Kubernetes' network-policy e2e tests (test/e2e/network/netpol): rows
 * are the pods connections come *from*, columns the pods they go *to*, one table per port and
 * protocol, `.` for reachable and `X` for blocked.
 *
 *   probeMatrix    measures it. For each source pod ONE prober process runs inside that pod's
 *                  network namespace (`ip netns exec <ns> node -e <prober>`, targets as JSON on
 *                  stdin) and probes every (target pod, port/protocol) at once:
 *                    TCP: connect and read the greeting line, which must be the target pod's name
 *                         (the pod agent greets every connection with it). A blocked SYN is dropped
 *                         by the data plane, so a denied probe ends in the timeout;
 *                    UDP: send a datagram (resent a few times within the timeout) and wait for the
 *                         agent's reply `<podname>\n<payload>`.
 *                  Source pods are probed in parallel too, so a full 9×9 matrix with blocked cells
 *                  costs about one timeout (default 1 s), not one per cell.
 *   expectedMatrix asks the daemons instead (admin op `explain`): the egress side from the source
 *                  pod's node and the ingress side from the destination pod's node, because that is
 *                  where each side is enforced. A cell is reachable when neither side is denied.
 *   formatMatrix   prints the tables (and with `expected`, marks each differing cell with `*` and
 *                  counts them), or JSON.
 *
 * Pods are named `namespace/name`, probes `port/PROTOCOL` (e.g. `80/TCP`).
 */
import { run } from '../daemon/sys.ts';
import { adminRequest } from '../daemon/client.ts';
import type { LabState, LabPod } from './lab.ts';

export type ProbeProtocol = 'TCP' | 'UDP';
export interface MatrixProbe { port: number; protocol: ProbeProtocol }

/** cells[from][to][probe] = reachable. Pods are `namespace/name`, probes `port/PROTOCOL`. */
export interface Matrix {
  pods: string[];
  probes: string[];
  cells: Record<string, Record<string, Record<string, boolean>>>;
  /**
   * Only from probeMatrix: why each blocked cell failed (`timeout`, `ECONNREFUSED`, `greeting "…"`),
   * same shape as `cells`. A `timeout` is what a policy drop looks like; anything else deserves a look.
   */
  details?: Record<string, Record<string, Record<string, string>>>;
}

export interface ProbeOptions {
  /** How long one probe may take before it counts as blocked (ms). Default 1000. */
  timeoutMs?: number;
  /** How many source pods are probed at the same time. Default: all. */
  concurrency?: number;
}

export const podKey = (p: { namespace: string; name: string }): string => `${p.namespace}/${p.name}`;
export const probeKey = (p: MatrixProbe): string => `${p.port}/${p.protocol}`;

/**
 * The prober, plain CommonJS for `node -e` (no loader, fast start). Reads
 * {timeoutMs, targets: [{i, ip, port, proto, expect}]} on stdin, prints [{i, ok, detail, ms}].
 */
const PROBER = String.raw`
const net = require('node:net'), dgram = require('node:dgram');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', () => {
  const { timeoutMs, targets } = JSON.parse(input);
  Promise.all(targets.map((t) => (t.proto === 'TCP' ? tcp : udp)(t, timeoutMs))).then((res) => {
    process.stdout.write(JSON.stringify(res));
    process.exit(0);
  });
});
function tcp(t, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    let buf = '', done = false;
    const s = net.createConnection({ host: t.ip, port: t.port });
    const finish = (ok, detail) => {
      if (done) return;
      done = true; clearTimeout(timer); s.destroy();
      resolve({ i: t.i, ok, detail, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) { const line = buf.slice(0, nl); finish(line === t.expect, line === t.expect ? 'ok' : 'greeting ' + JSON.stringify(line)); }
    });
    s.on('error', (e) => finish(false, e.code || e.message));
    s.on('end', () => finish(false, 'closed before the greeting'));
  });
}
function udp(t, timeoutMs) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const payload = 'probe-' + t.i + '-' + Math.random().toString(36).slice(2);
    const want = t.expect + '\n' + payload;
    let done = false, resend;
    const s = dgram.createSocket('udp4');
    const finish = (ok, detail) => {
      if (done) return;
      done = true; clearTimeout(timer); clearInterval(resend);
      try { s.close(); } catch {}
      resolve({ i: t.i, ok, detail, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
    s.on('message', (m) => {
      const text = m.toString();
      finish(text === want, text === want ? 'ok' : 'reply ' + JSON.stringify(text.split('\n')[0]));
    });
    s.on('error', (e) => finish(false, e.code || e.message));
    s.connect(t.port, t.ip, () => {
      const send = () => { if (!done) s.send(payload, (e) => { if (e) finish(false, e.code || e.message); }); };
      send();
      resend = setInterval(send, Math.max(50, Math.floor(timeoutMs / 4)));
    });
  });
}
`;

interface ProberResult { i: number; ok: boolean; detail: string; ms: number }

/** Run `fn` over `items` with at most `limit` at a time; results in input order. */
async function pool<T, R>(items: T[], limit: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; out[i] = await fn(items[i]); } };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

function emptyMatrix(pods: LabPod[], probes: MatrixProbe[]): Matrix {
  const m: Matrix = { pods: pods.map(podKey), probes: probes.map(probeKey), cells: {} };
  for (const f of m.pods) { m.cells[f] = {}; for (const t of m.pods) m.cells[f][t] = {}; }
  return m;
}

/**
 * Measure the reachability matrix with real connections: one prober process per source pod, all
 * its (target, probe) pairs concurrently. Every pod is also a target (a pod reaching itself is the
 * diagonal, and never leaves the pod). A probe that fails counts as blocked; `details` says why.
 */
export async function probeMatrix(s: LabState, pods: LabPod[], probes: MatrixProbe[], opts: ProbeOptions = {}): Promise<Matrix> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  const m = emptyMatrix(pods, probes);
  const details: NonNullable<Matrix['details']> = {};
  const cells: { to: LabPod; probe: MatrixProbe }[] = [];
  for (const to of pods) for (const probe of probes) cells.push({ to, probe });
  await pool(pods, opts.concurrency ?? pods.length, async (from) => {
    const targets = cells.map((c, i) => ({ i, ip: c.to.ip, port: c.probe.port, proto: c.probe.protocol, expect: c.to.name }));
    const input = JSON.stringify({ timeoutMs, targets });
    let res: ProberResult[];
    try {
      res = JSON.parse(await run('ip', ['netns', 'exec', from.netns, process.execPath, '-e', PROBER], input)) as ProberResult[];
    } catch (e) {
      throw new Error(`probing from ${podKey(from)} (netns ${from.netns}) failed: ${(e as Error).message}`);
    }
    const f = podKey(from);
    details[f] = {};
    for (const r of res) {
      const { to, probe } = cells[r.i];
      const t = podKey(to), p = probeKey(probe);
      m.cells[f][t][p] = r.ok;
      if (!r.ok) (details[f][t] ??= {})[p] = r.detail;
    }
  });
  m.details = details;
  return m;
}

/** The parts of an `explain` answer used here (the daemon answers `{verdict: 'allowed'}` with no policy). */
interface ExplainAnswer { allowed?: boolean; verdict?: string; egress?: { verdict: string }; ingress?: { verdict: string } }

const PROTO_NUMBER: Record<ProbeProtocol, number> = { TCP: 6, UDP: 17 };

/**
 * The matrix the daemons' compiled policies predict (admin op `explain`). Each side is asked of
 * the node that enforces it: egress of the source pod's node, ingress of the destination pod's
 * node. A side on a node podwire does not run (a kernel node) is enforced by nobody: allowed.
 */
export async function expectedMatrix(s: LabState, pods: LabPod[], probes: MatrixProbe[], opts: { concurrency?: number } = {}): Promise<Matrix> {
  const m = emptyMatrix(pods, probes);
  const socketOf = (p: LabPod) => s.nodes.find((n) => n.name === p.node && n.overlay === 'podwire')?.socket;
  const denied = (a: ExplainAnswer, side: 'egress' | 'ingress') => a[side]?.verdict === 'denied';
  const jobs: { from: LabPod; to: LabPod; probe: MatrixProbe }[] = [];
  for (const from of pods) for (const to of pods) for (const probe of probes) jobs.push({ from, to, probe });
  await pool(jobs, opts.concurrency ?? 32, async ({ from, to, probe }) => {
    const req = { op: 'explain', src: from.ip, dst: to.ip, proto: PROTO_NUMBER[probe.protocol], dport: probe.port };
    const eSock = socketOf(from), iSock = socketOf(to);
    const [e, i] = await Promise.all([
      eSock ? adminRequest<ExplainAnswer>(eSock, req) : undefined,
      iSock === eSock ? undefined : iSock ? adminRequest<ExplainAnswer>(iSock, req) : undefined,
    ]);
    const ingressAnswer = iSock === eSock ? e : i;
    const ok = !(e && denied(e, 'egress')) && !(ingressAnswer && denied(ingressAnswer, 'ingress'));
    m.cells[podKey(from)][podKey(to)][probeKey(probe)] = ok;
  });
  return m;
}

/** Cells where `a` and `b` differ, as `from → to probe: a/b` strings (`.` reachable, `X` blocked). */
export function matrixMismatches(a: Matrix, b: Matrix): string[] {
  const out: string[] = [];
  const sym = (v: boolean | undefined) => (v === undefined ? '?' : v ? '.' : 'X');
  for (const p of a.probes) for (const f of a.pods) for (const t of a.pods) {
    const x = a.cells[f]?.[t]?.[p], y = b.cells[f]?.[t]?.[p];
    if (x !== y) out.push(`${f} → ${t} ${p}: ${sym(x)} vs ${sym(y)}`);
  }
  return out;
}

/**
 * The truth tables, one per probe: rows = from, columns = to, `.` reachable, `X` blocked. With
 * `expected`, a cell that differs from it is followed by `*`, and a last line counts them
 * ("N mismatches"). With `json`, the matrix (and the mismatch list) as JSON instead.
 */
export function formatMatrix(m: Matrix, opts: { expected?: Matrix; json?: boolean } = {}): string {
  const mismatches = opts.expected ? matrixMismatches(m, opts.expected) : [];
  if (opts.json) {
    return JSON.stringify(opts.expected ? { observed: m, expected: opts.expected, mismatches } : m, null, 2);
  }
  const lines: string[] = [];
  const w = Math.max(3, ...m.pods.map((p) => p.length)) + 1;
  const pad = (x: string) => x.padEnd(w);
  for (const p of m.probes) {
    lines.push(`${p} (rows: from, columns: to; . reachable, X blocked${opts.expected ? ', * differs from expected' : ''})`);
    lines.push([pad('-'), ...m.pods.map(pad)].join('').trimEnd());
    for (const f of m.pods) {
      const row = m.pods.map((t) => {
        const v = m.cells[f]?.[t]?.[p];
        let c = v === undefined ? '?' : v ? '.' : 'X';
        if (opts.expected && opts.expected.cells[f]?.[t]?.[p] !== v) c += '*';
        return pad(c);
      });
      lines.push([pad(f), ...row].join('').trimEnd());
    }
    lines.push('');
  }
  if (opts.expected) lines.push(`${mismatches.length} mismatches`);
  return lines.join('\n').trimEnd() + '\n';
}
