/**
 * Explaining packets (issue: pipeline trace, flow log, metrics, capture). Golden traces: the
 * stage-by-stage text of synthetic and real packets, compared with files in test/golden/trace
 * (timestamps removed). Set UPDATE_GOLDEN=1 to rewrite them after an intended change, then review
 * the diff like code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { TestLab, podYaml, sh } from './harness.ts';
import { REPO_ROOT } from '../../src/lab/lab.ts';
import { adminRequest } from '../../src/daemon/client.ts';
import { formatTrace, type TraceRecord } from '../../src/dataplane/trace.ts';

const lab = new TestLab();
const GOLDEN = path.join(REPO_ROOT, 'test/golden/trace');

beforeAll(async () => {
  await lab.start({ nodes: 2 }, [
    podYaml('a', { node: 'node1', ip: '10.244.1.10', labels: { app: 'a' } }),
    podYaml('b', { node: 'node1', ip: '10.244.1.11', labels: { app: 'b' } }),
    podYaml('c', { node: 'node2', ip: '10.244.2.10', labels: { app: 'c' } }),
    podYaml('locked', { node: 'node2', ip: '10.244.2.20', labels: { app: 'locked' } }),
    `apiVersion: v1
kind: Service
metadata: { name: c }
spec: { selector: { app: c }, clusterIP: 10.96.0.50, ports: [{ port: 8080, targetPort: 80 }] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: locked-down }
spec:
  podSelector: { matchLabels: { app: locked } }
  policyTypes: [Ingress]
---
`,
  ].join(''));
});

afterAll(async () => {
  const left = await lab.stop();
  expect(left).toEqual([]);
});

/** Synthetic trace across nodes, as `podwire trace inject` prints it, without timestamps. */
async function inject(from: string, to: string, proto: number, dport: number): Promise<string> {
  const pod = lab.pod(from);
  type Res = { records: TraceRecord[]; overlay?: { to: string; from: string; datagramHex: string } };
  let res = await adminRequest<Res>(lab.node(pod.node).socket, { op: 'inject', pod: `default/${from}`, dst: to, proto, dport });
  const out = [...res.records];
  while (res.overlay) {
    const next = lab.s.nodes.find((n) => n.underlayIp === res.overlay!.to)!;
    res = await adminRequest<Res>(next.socket, { op: 'inject', overlayFrom: res.overlay.from, datagramHex: res.overlay.datagramHex });
    out.push(...res.records);
  }
  return out.map((r) => formatTrace(r).replace(/^\d\d:\d\d:\d\d\.\d{3} /, '')).join('\n\n') + '\n';
}

function golden(name: string, text: string): void {
  const file = path.join(GOLDEN, `${name}.txt`);
  if (process.env.UPDATE_GOLDEN || !fs.existsSync(file)) fs.writeFileSync(file, text);
  expect(text).toBe(fs.readFileSync(file, 'utf8'));
}

describe('golden synthetic traces', () => {
  it('same-node pod → pod', async () => golden('same-node', await inject('a', '10.244.1.11', 6, 80)));
  it('cross-node pod → pod (both halves, in order)', async () => golden('cross-node', await inject('a', '10.244.2.10', 6, 80)));
  it('pod → ClusterIP with DNAT to a remote backend', async () => golden('clusterip-dnat', await inject('a', '10.96.0.50', 6, 8080)));
  it('a NetworkPolicy deny, naming the isolation', async () => golden('policy-deny', await inject('a', '10.244.2.20', 6, 80)));
  it('synthetic traces change nothing: round-robin, counters and conntrack stay as they were', async () => {
    const before = await adminRequest<{ backends: { selections: number }[] }[]>(lab.node('node1').socket, { op: 'services' });
    const ctBefore = await adminRequest<unknown[]>(lab.node('node1').socket, { op: 'conntrack' });
    await inject('a', '10.96.0.50', 6, 8080);
    expect(await adminRequest(lab.node('node1').socket, { op: 'services' })).toEqual(before);
    expect((await adminRequest<unknown[]>(lab.node('node1').socket, { op: 'conntrack' })).length).toBe(ctBefore.length);
  });
});

describe('golden traces of real packets', () => {
  it('an MTU drop: an oversize DF ping answered with fragmentation-needed', async () => {
    // Shrink node1's underlay to 1400 (overlay MTU 1350); the daemon notices within 2 s.
    await sh('ip', ['-n', lab.node('node1').netns, 'link', 'set', 'underlay0', 'mtu', '1400']);
    await new Promise((r) => setTimeout(r, 2500));
    const tr = adminRequest<TraceRecord[]>(lab.node('node1').socket, { op: 'trace', filter: { ip: '10.244.1.10', proto: 1, dropsOnly: true }, count: 1, seconds: 10 }, 20_000);
    await new Promise((r) => setTimeout(r, 200));
    await lab.execPod('a', ['ping', '-c', '1', '-W', '1', '-M', 'do', '-s', '1400', '10.244.2.10']);
    const recs = await tr;
    await sh('ip', ['-n', lab.node('node1').netns, 'link', 'set', 'underlay0', 'mtu', '1500']);
    expect(recs).toHaveLength(1);
    golden('mtu-drop', formatTrace(recs[0]).replace(/^\d\d:\d\d:\d\d\.\d{3} /, '').replace(/id \d+ seq \d+/, 'id N seq N') + '\n');
  });
  it('a spoofed frame, dropped with its reason', async () => {
    const tr = adminRequest<TraceRecord[]>(lab.node('node1').socket, { op: 'trace', filter: { ip: '10.244.1.99', dropsOnly: true }, count: 1, seconds: 10 }, 20_000);
    await new Promise((r) => setTimeout(r, 200));
    await lab.execPod('b', ['ip', 'addr', 'add', '10.244.1.99/32', 'dev', 'eth0']);
    await lab.execPod('b', ['ping', '-c', '1', '-W', '1', '-I', '10.244.1.99', '10.244.1.10']);
    await lab.execPod('b', ['ip', 'addr', 'del', '10.244.1.99/32', 'dev', 'eth0']);
    const recs = await tr;
    expect(recs.length).toBeGreaterThanOrEqual(1);
    golden('spoofed', formatTrace(recs[0]).replace(/^\d\d:\d\d:\d\d\.\d{3} /, '').replace(/id \d+ seq \d+/, 'id N seq N').replace(/ttl \d+/, 'ttl N') + '\n');
  });
  it('follows the first packet of each new connection on both nodes', async () => {
    const trs = ['node1', 'node2'].map((n) => adminRequest<TraceRecord[]>(lab.node(n).socket, { op: 'trace', filter: { ip: '10.244.1.10', proto: 6, port: 80, newOnly: true }, count: 1, seconds: 10 }, 20_000));
    await new Promise((r) => setTimeout(r, 200));
    await lab.execPod('a', ['bash', '-c', 'exec 3<>/dev/tcp/10.244.2.10/80; head -n1 <&3']);
    const [n1, n2] = await Promise.all(trs);
    expect(n1).toHaveLength(1); expect(n2).toHaveLength(1);
    expect(n1[0].timeUs).toBeLessThan(n2[0].timeUs);
    expect(n1[0].steps.map((s) => s.stage)).toEqual(['anti-spoof', 'l2', 'conntrack', 'policy', 'route', 'encap']);
    expect(n2[0].steps.map((s) => s.stage)).toEqual(['decap', 'conntrack', 'policy', 'route']);
    expect(n1[0].packet).toMatch(/\[S\]/);
  });
});

