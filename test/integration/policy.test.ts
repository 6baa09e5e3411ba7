/**
 * NetworkPolicy with real traffic, in the topology of Kubernetes' network-policy e2e tests
 * (test/e2e/network/netpol): namespaces x, y, z (labelled ns: x|y|z), pods a, b, c in each
 * (labelled pod: a|b|c), every pod serving TCP and UDP on ports 80 and 81 (container ports
 * serve-80-tcp, serve-81-tcp, serve-80-udp, serve-81-udp), spread over two nodes so that both
 * same-node and cross-node paths are judged:
 *
 *   node1: x/a x/c y/b z/a z/c        node2: x/b y/a y/c z/b
 *
 * Each scenario applies its policies to every node (labApply), measures the whole 9×9 reachability
 * matrix with real connections (probeMatrix), and compares it with two things:
 *   - an expectation written here by hand from the Kubernetes documentation ("Network Policies",
 *     kubernetes.io/docs/concepts/services-networking/network-policies), never from podwire;
 *   - what the daemons' `explain` predicts for every cell (expectedMatrix), so that
 *     `podwire policy explain` is proven to agree with what the data plane does.
 * Then it deletes its policies from every node before the next scenario.
 *
 * Facts from the documentation that the expectations rely on:
 *   - a pod selected by no policy of a direction is non-isolated there: everything is allowed;
 *   - policies only add allowed connections and are combined by union ("additive");
 *   - a connection needs both the source's egress and the destination's ingress to allow it;
 *   - a pod cannot block access to itself (and traffic from a pod to its own IP never leaves it);
 *   - a peer's podSelector without namespaceSelector selects pods in the policy's own namespace;
 *     podSelector and namespaceSelector in ONE peer are ANDed, as two peers they are ORed;
 *   - a policy without policyTypes is an Ingress policy (plus Egress only with egress rules);
 *   - a named port is the destination pod's container port of that name;
 *   - a port without protocol is TCP; endPort makes a range, inclusive.
 * Blocked probes must be silent drops (timeouts), not refusals.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { TestLab, TOOLS } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';
import type { LabPod } from '../../src/lab/lab.ts';
import { probeMatrix, expectedMatrix, formatMatrix, matrixMismatches, podKey, probeKey, type Matrix, type MatrixProbe } from '../../src/lab/matrix.ts';

const lab = new TestLab();
const NAMESPACES = ['x', 'y', 'z'] as const;
const PODS = ['a', 'b', 'c'] as const;
const PLACEMENT: Record<string, string> = {
  'x/a': 'node1', 'x/b': 'node2', 'x/c': 'node1',
  'y/a': 'node2', 'y/b': 'node1', 'y/c': 'node2',
  'z/a': 'node1', 'z/b': 'node2', 'z/c': 'node1',
};
const SHOW = !!process.env.PODWIRE_SHOW_MATRIX;

const TCP80: MatrixProbe = { port: 80, protocol: 'TCP' };
const TCP81: MatrixProbe = { port: 81, protocol: 'TCP' };
const UDP80: MatrixProbe = { port: 80, protocol: 'UDP' };
const UDP81: MatrixProbe = { port: 81, protocol: 'UDP' };

/** The lab's pods in e2e order (x/a, x/b, ..., z/c). */
let pods: LabPod[] = [];
let daemonPids: number[] = [];

function manifests(): string {
  const docs: object[] = [];
  for (const ns of NAMESPACES) docs.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { ns } } });
  for (const ns of NAMESPACES) {
    for (const pod of PODS) {
      docs.push({
        apiVersion: 'v1', kind: 'Pod',
        metadata: { name: pod, namespace: ns, labels: { pod } },
        spec: {
          nodeName: PLACEMENT[`${ns}/${pod}`],
          containers: [{
            name: 'cont', image: 'agent',
            ports: [80, 81].flatMap((p) => (['TCP', 'UDP'] as const).map((protocol) => ({ name: `serve-${p}-${protocol.toLowerCase()}`, containerPort: p, protocol }))),
          }],
        },
      });
    }
  }
  return docs.map((d) => JSON.stringify(d)).join('\n---\n') + '\n';
}

/** A NetworkPolicy manifest (JSON is YAML). */
function netpol(ns: string, name: string, spec: object): string {
  return JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: ns }, spec }) + '\n---\n';
}

async function deletePolicies(keys: string[]): Promise<void> {
  for (const n of lab.s.nodes.filter((x) => x.overlay === 'podwire')) {
    await adminRequest(n.socket, { op: 'delete', keys: keys.map((k) => `NetworkPolicy/${k}`) });
  }
}

// ------------------------------------------------------------------------------------------------
// Expectations, by hand.
// ------------------------------------------------------------------------------------------------

interface Ref { key: string; ns: string; pod: string; node: string }
const ref = (key: string): Ref => { const [ns, pod] = key.split('/'); return { key, ns, pod, node: PLACEMENT[key] }; };

/**
 * A matrix where a cell is reachable when `reachable(from, to, probe)` says so, or when from and to
 * are the same pod: "a pod cannot block access to itself".
 */
function truth(probes: MatrixProbe[], reachable: (from: Ref, to: Ref, probe: string) => boolean): Matrix {
  const keys = pods.map(podKey);
  const m: Matrix = { pods: keys, probes: probes.map(probeKey), cells: {} };
  for (const f of keys) {
    m.cells[f] = {};
    for (const t of keys) {
      m.cells[f][t] = {};
      for (const p of m.probes) m.cells[f][t][p] = f === t || reachable(ref(f), ref(t), p);
    }
  }
  return m;
}
const allowEverything = (probes: MatrixProbe[]) => truth(probes, () => true);
const allowEverythingExcept = (probes: MatrixProbe[], blocked: (from: Ref, to: Ref, probe: string) => boolean) =>
  truth(probes, (f, t, p) => !blocked(f, t, p));

/**
 * Measure the matrix, then require: it equals `want` (the documentation's answer), every blocked
 * cell is a silent drop, and the daemons' `explain` predicts exactly what was measured.
 */
async function check(title: string, probes: MatrixProbe[], want: Matrix): Promise<void> {
  const observed = await probeMatrix(lab.s, pods, probes);
  const predicted = await expectedMatrix(lab.s, pods, probes);
  const wrong = matrixMismatches(observed, want);
  const explainWrong = matrixMismatches(predicted, observed);
  if (SHOW || wrong.length || explainWrong.length) {
    console.log(`=== ${title}: observed vs the documentation's expectation\n${formatMatrix(observed, { expected: want })}`);
    if (explainWrong.length) console.log(`=== ${title}: explain's prediction vs observed\n${formatMatrix(predicted, { expected: observed })}`);
  }
  expect.soft(wrong, `${title}: observed (left) vs expected (right)`).toEqual([]);
  expect.soft(explainWrong, `${title}: explain (left) vs observed (right)`).toEqual([]);
  const notDrops: string[] = [];
  for (const [f, row] of Object.entries(observed.details ?? {})) {
    for (const [t, byProbe] of Object.entries(row)) for (const [p, why] of Object.entries(byProbe)) if (why !== 'timeout') notDrops.push(`${f} → ${t} ${p}: ${why}`);
  }
  expect.soft(notDrops, `${title}: blocked probes that were not silent drops`).toEqual([]);
}

/** Apply `yaml`, run `body`, and always delete `keys` afterwards (from every node). */
async function scenario(keys: string[], yaml: string, body: () => Promise<void>): Promise<void> {
  await lab.apply(yaml);
  try { await body(); } finally { await deletePolicies(keys); }
}

/**
 * A TCP connection from one pod to another kept busy by tools/stream-conn.mjs (it writes without
 * pause to the echoing pod agent); `rx()` is how many bytes have come back so far.
 */
async function streamConnection(from: string, to: string, port: number): Promise<{ rx: () => Promise<number>; close: () => void }> {
  const src = pods.find((p) => podKey(p) === from)!, dst = pods.find((p) => podKey(p) === to)!;
  const child = spawn('ip', ['netns', 'exec', src.netns, process.execPath, path.join(TOOLS, 'stream-conn.mjs'), dst.ip, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  let buf = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) { const l = buf.slice(0, nl); buf = buf.slice(nl + 1); const w = waiters.shift(); if (w) w(l); else lines.push(l); }
  });
  const next = () => new Promise<string>((resolve, reject) => {
    if (lines.length) { resolve(lines.shift()!); return; }
    const t = setTimeout(() => reject(new Error(`stream ${from} → ${to}: no answer`)), 5000);
    waiters.push((l) => { clearTimeout(t); resolve(l); });
  });
  const greeting = await next();
  if (greeting !== `greeting ${dst.name}`) { child.kill('SIGKILL'); throw new Error(`stream ${from} → ${to}: ${greeting}`); }
  return {
    rx: async () => { child.stdin!.write('\n'); const l = await next(); const m = /^rx (\d+)$/.exec(l); if (!m) throw new Error(`stream ${from} → ${to}: ${l}`); return Number(m[1]); },
    close: () => { child.stdin!.end(); child.kill('SIGKILL'); },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Start a busy connection `from` → `to`, check it flows, apply `deny` (a policy denying it), and
 * return how many bytes still came back between 0.5 s and 2 s after the policy was in force
 * (0 when the connection was cut).
 */
async function bytesAfterDeny(from: string, to: string, denyKeys: string[], deny: string): Promise<number> {
  const c = await streamConnection(from, to, 80);
  try {
    const a = await c.rx();
    await sleep(300);
    expect(await c.rx(), `${from} → ${to} flows before the policy`).toBeGreaterThan(a);
    let moved = -1;
    await scenario(denyKeys, deny, async () => {
      await sleep(500);
      const r1 = await c.rx();
      await sleep(1500);
      moved = (await c.rx()) - r1;
    });
    return moved;
  } finally { c.close(); }
}

const sel = (labels: Record<string, string>) => ({ matchLabels: labels });

beforeAll(async () => {
  await lab.start({ nodes: 2 }, manifests());
  const order = NAMESPACES.flatMap((ns) => PODS.map((p) => `${ns}/${p}`));
  pods = order.map((k) => {
    const p = lab.pods.find((x) => podKey(x) === k);
    if (!p) throw new Error(`pod ${k} is missing from the lab`);
    return p;
  });
  daemonPids = lab.s.nodes.map((n) => n.pid!);
}, 180_000);

afterAll(async () => {
  const left = await lab.stop();
  expect(left).toEqual([]);
}, 60_000);

describe('the e2e topology', () => {
  it('places the pods as asked, in their node CIDRs', () => {
    for (const p of pods) {
      expect(p.node).toBe(PLACEMENT[podKey(p)]);
      expect(p.ip.startsWith(lab.node(p.node).podCIDR.replace(/0\/24$/, ''))).toBe(true);
      expect(p.ports.map((x) => x.name).sort()).toEqual(['serve-80-tcp', 'serve-80-udp', 'serve-81-tcp', 'serve-81-udp']);
    }
  });

  it('without any policy, everything reaches everything on 80/81 TCP and UDP', async () => {
    await check('no policy', [TCP80, TCP81, UDP80, UDP81], allowEverything([TCP80, TCP81, UDP80, UDP81]));
  });
});

describe('NetworkPolicy scenarios', () => {
  it('default deny ingress in x: nothing reaches x, x still reaches everything else', async () => {
    const probes = [TCP80, UDP80];
    await scenario(['x/deny-ingress'], netpol('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }), () =>
      check('default deny ingress in x', probes, allowEverythingExcept(probes, (_f, t) => t.ns === 'x')));
  });

  it('default deny egress in x: x reaches nothing but itself, everyone still reaches x', async () => {
    const probes = [TCP80, UDP80];
    await scenario(['x/deny-egress'], netpol('x', 'deny-egress', { podSelector: {}, policyTypes: ['Egress'] }), () =>
      check('default deny egress in x', probes, allowEverythingExcept(probes, (f) => f.ns === 'x')));
  });

  it('podSelector: x/a accepts only pods labelled pod: b in x', async () => {
    const probes = [TCP80];
    await scenario(['x/allow-b'], netpol('x', 'allow-b', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ from: [{ podSelector: sel({ pod: 'b' }) }] }],
    }), () => check('podSelector', probes, allowEverythingExcept(probes, (f, t) => t.key === 'x/a' && f.key !== 'x/b')));
  });

  it('namespaceSelector: x/a accepts only pods of namespace y', async () => {
    const probes = [TCP80];
    await scenario(['x/allow-ns-y'], netpol('x', 'allow-ns-y', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ from: [{ namespaceSelector: sel({ ns: 'y' }) }] }],
    }), () => check('namespaceSelector', probes, allowEverythingExcept(probes, (f, t) => t.key === 'x/a' && f.ns !== 'y')));
  });

  it('podSelector AND namespaceSelector in one peer: x/a accepts only y/b', async () => {
    const probes = [TCP80];
    await scenario(['x/allow-y-and-b'], netpol('x', 'allow-y-and-b', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ from: [{ namespaceSelector: sel({ ns: 'y' }), podSelector: sel({ pod: 'b' }) }] }],
    }), () => check('one peer (AND)', probes, allowEverythingExcept(probes, (f, t) => t.key === 'x/a' && f.key !== 'y/b')));
  });

  it('podSelector OR namespaceSelector as two peers: x/a accepts all of y, and b of its own namespace x', async () => {
    const probes = [TCP80];
    await scenario(['x/allow-y-or-b'], netpol('x', 'allow-y-or-b', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ from: [{ namespaceSelector: sel({ ns: 'y' }) }, { podSelector: sel({ pod: 'b' }) }] }],
    }), () => check('two peers (OR)', probes, allowEverythingExcept(probes, (f, t) => t.key === 'x/a' && !(f.ns === 'y' || f.key === 'x/b'))));
  });

  it('ipBlock with except: x/a accepts 10.244.0.0/16 except node1\'s pod CIDR, so only pods on node2', async () => {
    const probes = [TCP80];
    const node1Cidr = lab.node('node1').podCIDR;
    await scenario(['x/allow-cidr'], netpol('x', 'allow-cidr', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ from: [{ ipBlock: { cidr: '10.244.0.0/16', except: [node1Cidr] } }] }],
    }), () => check('ipBlock except', probes, allowEverythingExcept(probes, (f, t) => t.key === 'x/a' && f.node === 'node1')));
  });

  it('named port: x/a accepts everyone on serve-81-tcp only (81/TCP yes, 80/TCP and 81/UDP no)', async () => {
    const probes = [TCP80, TCP81, UDP81];
    await scenario(['x/allow-named'], netpol('x', 'allow-named', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ ports: [{ port: 'serve-81-tcp' }] }],
    }), () => check('named port', probes, allowEverythingExcept(probes, (_f, t, p) => t.key === 'x/a' && p !== '81/TCP')));
  });

  it('endPort: 80-81 allows both; the same policy changed to 81-82 leaves 80 out', async () => {
    const probes = [TCP80, TCP81];
    const policy = (port: number, endPort: number) => netpol('x', 'allow-range', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ ports: [{ protocol: 'TCP', port, endPort }] }],
    });
    await scenario(['x/allow-range'], policy(80, 81), async () => {
      await check('endPort 80-81', probes, allowEverything(probes));
      await lab.apply(policy(81, 82));
      await check('endPort 81-82', probes, allowEverythingExcept(probes, (_f, t, p) => t.key === 'x/a' && p === '80/TCP'));
    });
  });

  it('multiple policies are a union: deny all ingress in x + x/b→x/a on 80 + z→x/a on 81', async () => {
    const probes = [TCP80, TCP81];
    await scenario(['x/deny-ingress', 'x/a-from-b-80', 'x/a-from-z-81'], [
      netpol('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }),
      netpol('x', 'a-from-b-80', { podSelector: sel({ pod: 'a' }), ingress: [{ from: [{ podSelector: sel({ pod: 'b' }) }], ports: [{ protocol: 'TCP', port: 80 }] }] }),
      netpol('x', 'a-from-z-81', { podSelector: sel({ pod: 'a' }), ingress: [{ from: [{ namespaceSelector: sel({ ns: 'z' }) }], ports: [{ protocol: 'TCP', port: 81 }] }] }),
    ].join(''), () => check('union of policies', probes, allowEverythingExcept(probes, (f, t, p) => {
      if (t.ns !== 'x') return false;
      if (t.key !== 'x/a') return true;                       // x/b, x/c: isolated, nothing allows
      return p === '80/TCP' ? f.key !== 'x/b' : f.ns !== 'z'; // x/a: 80 from x/b, 81 from z
    })));
  });

  it('egress-only policy: x may only reach namespace y; ingress to x is untouched', async () => {
    const probes = [TCP80, UDP80];
    await scenario(['x/egress-to-y'], netpol('x', 'egress-to-y', {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [{ to: [{ namespaceSelector: sel({ ns: 'y' }) }] }],
    }), () => check('egress only to y', probes, allowEverythingExcept(probes, (f, t) => f.ns === 'x' && t.ns !== 'y')));
  });

  it('UDP: a policy allowing only UDP 80 to x/a lets UDP 80 in and keeps TCP 80 and UDP 81 out', async () => {
    const probes = [TCP80, UDP80, UDP81];
    await scenario(['x/allow-udp-80'], netpol('x', 'allow-udp-80', {
      podSelector: sel({ pod: 'a' }),
      ingress: [{ ports: [{ protocol: 'UDP', port: 80 }] }],
    }), () => check('UDP only', probes, allowEverythingExcept(probes, (_f, t, p) => t.key === 'x/a' && p !== '80/UDP')));
  });

  it('updating a policy in place (same name) changes the matrix at once, with no restart', async () => {
    const probes = [TCP80];
    const gen = async () => Promise.all(lab.s.nodes.map((n) => adminRequest<{ generation?: number }>(n.socket, { op: 'policy' }).then((r) => r.generation ?? 0)));
    await scenario(['x/a-ingress'], netpol('x', 'a-ingress', { podSelector: sel({ pod: 'a' }), policyTypes: ['Ingress'] }), async () => {
      await check('update: deny all to x/a', probes, allowEverythingExcept(probes, (_f, t) => t.key === 'x/a'));
      const before = await gen();
      await lab.apply(netpol('x', 'a-ingress', {
        podSelector: sel({ pod: 'a' }), policyTypes: ['Ingress'],
        ingress: [{ from: [{ namespaceSelector: sel({ ns: 'y' }) }] }],
      }));
      const after = await gen();
      after.forEach((g, i) => expect(g).toBeGreaterThan(before[i]));
      await check('update: x/a from y', probes, allowEverythingExcept(probes, (f, t) => t.key === 'x/a' && f.ns !== 'y'));
    });
    expect(lab.s.nodes.map((n) => n.pid)).toEqual(daemonPids);
    for (const pid of daemonPids) expect(() => process.kill(pid, 0)).not.toThrow();
  });
});

describe('connections that exist when a denying policy arrives are cut', () => {
  // Kubernetes leaves this to the implementation; podwire's contract is that tracked connections
  // are judged again on every policy change. Each connection here is a busy stream (the server
  // keeps sending echoed data), which is what gives a server-to-client packet the chance to be
  // the first one judged after the change.
  const denyEgressX = netpol('x', 'deny-out', { podSelector: {}, policyTypes: ['Egress'] });
  const denyIngressXa = netpol('x', 'a-deny-in', { podSelector: sel({ pod: 'a' }), policyTypes: ['Ingress'] });
  // An ingress allow-all for z/c: changes no verdict, but puts NetworkPolicy in force on every node.
  const unrelated = netpol('z', 'unrelated', { podSelector: sel({ pod: 'c' }), policyTypes: ['Ingress'], ingress: [{}] });

  it('established with no policy in force: x/b → y/b (node2 → node1) stops when x loses egress', async () => {
    expect(await bytesAfterDeny('x/b', 'y/b', ['x/deny-out'], denyEgressX)).toBe(0);
  });

  it('established with no policy in force: y/a → x/a (node2 → node1) stops when x/a loses ingress', async () => {
    expect(await bytesAfterDeny('y/a', 'x/a', ['x/a-deny-in'], denyIngressXa)).toBe(0);
  });

  it('established while tracked (a policy in force): x/b → y/b stops when x loses egress', async () => {
    await scenario(['z/unrelated'], unrelated, async () => {
      expect(await bytesAfterDeny('x/b', 'y/b', ['x/deny-out'], denyEgressX)).toBe(0);
    });
  });

  it('established while tracked (a policy in force): y/a → x/a stops when x/a loses ingress', async () => {
    await scenario(['z/unrelated'], unrelated, async () => {
      expect(await bytesAfterDeny('y/a', 'x/a', ['x/a-deny-in'], denyIngressXa)).toBe(0);
    });
  });
});

describe('after all scenarios', () => {
  it('with every policy deleted, everything reaches everything again', async () => {
    for (const n of lab.s.nodes) expect(await adminRequest(n.socket, { op: 'policy' })).toEqual({ policies: 0 });
    await check('all policies deleted', [TCP80, UDP80], allowEverything([TCP80, UDP80]));
  });
});
