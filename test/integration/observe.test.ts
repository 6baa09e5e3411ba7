/**
 * Observing real traffic (issue: explain every packet): a pcap of the overlay taken during a
 * cross-node transfer decodes with tshark down to the inner TCP; the Prometheus endpoint is scraped
 * over HTTP and its counters move with traffic; the flow log records allowed and denied connections
 * with the NetworkPolicy named; `show` views answer over the admin socket.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestLab, podYaml, TOOLS, sh } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';

const lab = new TestLab();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'podwire-observe-'));

beforeAll(async () => {
  await lab.start({ nodes: 2 }, [
    podYaml('a', { node: 'node1', ip: '10.244.1.10', labels: { app: 'a' } }),
    podYaml('b', { node: 'node2', ip: '10.244.2.10', labels: { app: 'b' } }),
    podYaml('guarded', { node: 'node2', ip: '10.244.2.20', labels: { app: 'guarded' } }),
    `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: guard }
spec:
  podSelector: { matchLabels: { app: guarded } }
  ingress:
  - from: [{ podSelector: { matchLabels: { app: b } } }]
---
`,
  ].join(''));
});

afterAll(async () => {
  fs.rmSync(tmp, { recursive: true, force: true });
  const left = await lab.stop();
  expect(left).toEqual([]);
});

/** Scrape a node's metrics endpoint from inside its namespace (it listens on the node's loopback). */
async function scrape(node: string): Promise<Map<string, number>> {
  const r = await lab.exec(lab.node(node).netns, ['node', '-e', `require('http').get('http://127.0.0.1:9402/metrics', (res) => { let b = ''; res.on('data', (d) => b += d); res.on('end', () => process.stdout.write(b)); })`]);
  expect(r.code, r.stderr).toBe(0);
  const m = new Map<string, number>();
  for (const line of r.stdout.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

describe('capture', () => {
  it('captures the overlay during a cross-node transfer, and tshark decodes the VXLAN layer and the inner TCP', async () => {
    const file = path.join(tmp, 'overlay.pcap');
    const cap = adminRequest<{ packets: number }>(lab.node('node2').socket, { op: 'capture', overlay: true, file, count: 200, seconds: 10 }, 20_000);
    await new Promise((r) => setTimeout(r, 200));
    const t = await lab.execPod('a', ['node', path.join(TOOLS, 'echo-client.mjs'), '10.244.2.10', '80', String(2 * 1024 * 1024)]);
    expect(JSON.parse(t.stdout).receivedSha256).toBe(JSON.parse(t.stdout).sentSha256);
    const res = await cap;
    expect(res.packets).toBeGreaterThan(10);
    const ts = await sh('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.protocols', '-e', 'vxlan.vni', '-e', 'ip.src', '-e', 'tcp.dstport']);
    expect(ts.code, ts.stderr).toBe(0);
    const lines = ts.stdout.trim().split('\n');
    expect(lines.length).toBe(res.packets);
    expect(lines.every((l) => l.startsWith('ip:udp:vxlan:eth:ethertype:ip:tcp'))).toBe(true);
    expect(lines[0].split('\t')[1]).toBe('1');
    expect(lines.some((l) => l.split('\t')[2] === '192.168.56.11,10.244.1.10')).toBe(true);
  });
  it('captures a pod\'s port as Ethernet frames in both directions', async () => {
    const file = path.join(tmp, 'pod.pcap');
    const cap = adminRequest<{ packets: number }>(lab.node('node1').socket, { op: 'capture', pod: 'default/a', file, count: 4, seconds: 10 }, 20_000);
    await new Promise((r) => setTimeout(r, 200));
    await lab.execPod('a', ['ping', '-c', '2', '-i', '0.2', '10.244.2.10']);
    expect((await cap).packets).toBe(4);
    const ts = await sh('tshark', ['-r', file, '-T', 'fields', '-e', 'icmp.type']);
    expect(ts.stdout.trim().split('\n').sort()).toEqual(['0', '0', '8', '8']);
  });
});

describe('metrics', () => {
  it('serves Prometheus text on the node\'s loopback, and counters move with traffic', async () => {
    const before = await scrape('node1');
    await lab.execPod('a', ['ping', '-c', '5', '-i', '0.1', '10.244.2.10']);
    const after = await scrape('node1');
    const key = 'podwire_port_rx_packets_total{port="2",pod="default/a"}';
    expect([...after.keys()].some((k) => k.startsWith('podwire_port_rx_packets_total'))).toBe(true);
    const rx = [...after.entries()].find(([k]) => k.startsWith('podwire_port_rx_packets_total') && k.includes('default/a'));
    const rxBefore = [...before.entries()].find(([k]) => k === rx?.[0]);
    expect(rx, key).toBeDefined();
    expect(rx![1] - (rxBefore?.[1] ?? 0)).toBeGreaterThanOrEqual(5);
    expect((after.get('podwire_vxlan_encapsulated_packets_total') ?? 0) - (before.get('podwire_vxlan_encapsulated_packets_total') ?? 0)).toBeGreaterThanOrEqual(5);
    expect(after.has('podwire_drops_total{reason="spoofed_src_ip"}')).toBe(true);
    expect([...after.keys()].some((k) => k.startsWith('podwire_nodejs_eventloop_lag_seconds'))).toBe(true);
  });
  it('counts policy verdicts per policy and rule', async () => {
    await lab.execPod('b', ['bash', '-c', 'exec 3<>/dev/tcp/10.244.2.20/80; head -n1 <&3']);
    await lab.execPod('a', ['timeout', '1', 'bash', '-c', 'exec 3<>/dev/tcp/10.244.2.20/80; head -n1 <&3']);
    const m = await scrape('node2');
    const allow = [...m.entries()].find(([k]) => k.startsWith('podwire_policy_verdicts_total') && k.includes('default/guard') && k.includes('verdict="allow"'));
    expect(allow?.[1]).toBeGreaterThanOrEqual(1);
    const deny = [...m.entries()].find(([k]) => k.startsWith('podwire_policy_verdicts_total') && k.includes('Ingress') && k.includes('verdict="deny"'));
    expect(deny?.[1]).toBeGreaterThanOrEqual(1);
  });
});

describe('flow log', () => {
  it('records an allowed and a denied connection, naming the policy', async () => {
    await lab.execPod('b', ['bash', '-c', 'exec 3<>/dev/tcp/10.244.2.20/80; head -n1 <&3']);
    await lab.execPod('a', ['timeout', '1', 'bash', '-c', 'exec 3<>/dev/tcp/10.244.2.20/80; head -n1 <&3']);
    await new Promise((r) => setTimeout(r, 300));
    const lines = fs.readFileSync(path.join(lab.s.dir, 'node2.flows.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const allowed = lines.find((r) => r.event === 'new' && r.destination.pod === 'guarded' && r.source.pod === 'b');
    expect(allowed).toMatchObject({ verdict: 'FORWARDED', protocol: 'TCP', destination: { namespace: 'default', port: 80 } });
    expect(JSON.stringify(allowed.policy)).toContain('guard');
    const denied = lines.find((r) => r.event === 'denied' && r.destination.pod === 'guarded' && r.source.ip === '10.244.1.10');
    expect(denied).toMatchObject({ verdict: 'DENIED', policies: ['default/guard'] });
    expect(denied.reason).toMatch(/isolates pod default\/guarded for ingress/);
  });
});

describe('table views', () => {
  it('shows FDB, conntrack, services and policy tables over the admin socket', async () => {
    const ct = await adminRequest<{ orig: string; state: string }[]>(lab.node('node1').socket, { op: 'conntrack' });
    expect(ct.length).toBeGreaterThan(0);
    expect(ct[0]).toHaveProperty('orig');
    const pol = await adminRequest<{ identities: number; compileMs: number }>(lab.node('node2').socket, { op: 'policy' });
    expect(pol.identities).toBeGreaterThan(0);
    const fdb = await adminRequest<unknown[]>(lab.node('node1').socket, { op: 'fdb' });
    expect(Array.isArray(fdb)).toBe(true);
    const mode = fs.statSync(lab.node('node1').socket).mode & 0o777;
    expect(mode).toBe(0o600);
  });
});
