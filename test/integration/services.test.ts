/**
 * Services (issue: ClusterIP and NodePort with round-robin DNAT, conntrack and reverse NAT), with
 * real connections in a 2-node lab. Each pod agent answers with its pod name, so a client knows
 * which backend it reached.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'node:path';
import { TestLab, podYaml, TOOLS } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';

const lab = new TestLab();

const svc = (name: string, spec: string, annotations = '') => `apiVersion: v1
kind: Service
metadata:
  name: ${name}
  namespace: default
${annotations ? `  annotations: ${annotations}\n` : ''}spec:
${spec}
---
`;

beforeAll(async () => {
  await lab.start({ nodes: 2 }, [
    podYaml('web-1', { node: 'node1', ip: '10.244.1.21', labels: { app: 'web' }, tcp: [80], udp: [53], named: { http: 80 } }),
    podYaml('web-2', { node: 'node2', ip: '10.244.2.21', labels: { app: 'web' }, tcp: [80], udp: [53], named: { http: 80 } }),
    podYaml('web-3', { node: 'node2', ip: '10.244.2.22', labels: { app: 'web' }, tcp: [80], udp: [53], named: { http: 80 } }),
    podYaml('client', { node: 'node1', ip: '10.244.1.30', labels: { app: 'client' } }),
    podYaml('lonely', { node: 'node1', ip: '10.244.1.40', labels: { app: 'lonely' } }),
    podYaml('named-a', { node: 'node1', ip: '10.244.1.50', labels: { app: 'named' }, tcp: [8081], named: { serve: 8081 } }),
    podYaml('named-b', { node: 'node2', ip: '10.244.2.50', labels: { app: 'named' }, tcp: [9091], named: { serve: 9091 } }),
    svc('web', `  selector: { app: web }
  clusterIP: 10.96.0.80
  ports:
  - { name: http, port: 80, targetPort: http }
  - { name: dns, port: 53, targetPort: 53, protocol: UDP }`),
    svc('web-sticky', `  selector: { app: web }
  clusterIP: 10.96.0.81
  sessionAffinity: ClientIP
  ports: [{ port: 80 }]`),
    svc('empty', `  selector: { app: nobody }
  clusterIP: 10.96.0.82
  ports: [{ name: tcp, port: 80 }, { name: udp, port: 53, protocol: UDP }]`),
    svc('lonely', `  selector: { app: lonely }
  clusterIP: 10.96.0.83
  ports: [{ port: 80 }]`),
    svc('named', `  selector: { app: named }
  clusterIP: 10.96.0.84
  ports: [{ port: 80, targetPort: serve }]`),
    svc('web-np', `  type: NodePort
  selector: { app: web }
  ports: [{ port: 7000, nodePort: 30700 }]`),
    svc('web-np-local', `  type: NodePort
  externalTrafficPolicy: Local
  selector: { app: web }
  ports: [{ port: 7000, nodePort: 30701 }]`),
  ].join(''));
  for (const p of ['web-1', 'web-2', 'web-3']) await lab.background(lab.pod(p).netns, ['node', path.join(TOOLS, 'whoami-server.mjs'), '7000']);
});

afterAll(async () => {
  const left = await lab.stop();
  expect(left).toEqual([]);
});

/** Open `n` TCP connections from a pod to ip:port; return the greeting line of each. */
async function connect(pod: string, ip: string, port: number, n: number): Promise<string[]> {
  const script = `for i in $(seq ${n}); do timeout 3 bash -c 'exec 3<>/dev/tcp/${ip}/${port}; head -n1 <&3' || echo FAIL; done`;
  const r = await lab.execPod(pod, ['bash', '-c', script], 120_000);
  return r.stdout.trim().split('\n');
}

const tally = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => { m[x] = (m[x] ?? 0) + 1; return m; }, {});

describe('ClusterIP', () => {
  it('spreads 30 new connections over 3 backends on both nodes exactly 10 each (round-robin)', async () => {
    const got = await connect('client', '10.96.0.80', 80, 30);
    expect(tally(got)).toEqual({ 'web-1': 10, 'web-2': 10, 'web-3': 10 });
    const view = await adminRequest<{ servicePort: string; backends: { pod: string; selections: number }[] }[]>(lab.node('node1').socket, { op: 'services' });
    const web = view.find((v) => v.servicePort === 'default/web:http/TCP')!;
    expect(web.backends.map((b) => b.selections)).toEqual([10, 10, 10]);
  });

  it('answers UDP through the ClusterIP, and the reply comes from the ClusterIP', async () => {
    const r = await lab.execPod('client', ['node', path.join(TOOLS, 'udp-client.mjs'), '10.96.0.80', '53', 'via-vip']);
    const res = JSON.parse(r.stdout);
    expect(res.from).toBe('10.96.0.80');
    expect(res.port).toBe(53);
    expect(res.reply).toMatch(/^web-\d\nvia-vip$/);
  });

  it('carries a 20 MB TCP echo through the ClusterIP with the content verified', async () => {
    const r = await lab.execPod('client', ['node', path.join(TOOLS, 'echo-client.mjs'), '10.96.0.80', '80', String(20 * 1024 * 1024)], 120_000);
    const res = JSON.parse(r.stdout);
    expect(res.greeting).toMatch(/^web-\d$/);
    expect(res.receivedSha256).toBe(res.sentSha256);
  });

  it('refuses a connection to a Service with no endpoints at once (RST; ICMP port unreachable for UDP)', async () => {
    const t0 = Date.now();
    const r = await lab.execPod('client', ['bash', '-c', 'exec 3<>/dev/tcp/10.96.0.82/80']);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(r.stderr).toMatch(/Connection refused/);
    const u = await lab.execPod('client', ['python3', '-c', `import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(2); s.connect(('10.96.0.82',53)); s.send(b'x')
try:
  s.recv(10); print('reply')
except ConnectionRefusedError: print('refused')
except socket.timeout: print('timeout')`]);
    expect(u.stdout.trim()).toBe('refused');
    const c = await lab.counters('node1');
    expect(c.drops.service_no_endpoints).toBeGreaterThanOrEqual(2);
  });

  it('keeps a client on one backend with sessionAffinity: ClientIP across 20 connections', async () => {
    const got = await connect('client', '10.96.0.81', 80, 20);
    expect(new Set(got).size).toBe(1);
    expect(got[0]).toMatch(/^web-\d$/);
  });

  it('lets a pod reach itself through its own Service (hairpin)', async () => {
    const got = await connect('lonely', '10.96.0.83', 80, 3);
    expect(got).toEqual(['lonely', 'lonely', 'lonely']);
  });

  it('resolves a named targetPort per pod', async () => {
    const got = await connect('client', '10.96.0.84', 80, 4);
    expect(tally(got)).toEqual({ 'named-a': 2, 'named-b': 2 });
  });
});

describe('NodePort from outside the cluster', () => {
  const ext = () => lab.s.extNetns;
  async function fromExt(ip: string, port: number, n: number): Promise<string[]> {
    const script = `for i in $(seq ${n}); do timeout 3 bash -c 'exec 3<>/dev/tcp/${ip}/${port}; head -n1 <&3' || echo FAIL; done`;
    return (await lab.exec(ext(), ['bash', '-c', script], 60_000)).stdout.trim().split('\n');
  }
  for (const node of ['192.168.56.11', '192.168.56.12']) {
    it(`reaches backends on any node through ${node} (Cluster policy: source translated)`, async () => {
      const got = await fromExt(node, 30700, 6);
      expect(got.every((x) => /^\d+\.\d+\.\d+\.\d+$/.test(x))).toBe(true);
      // the backend saw the node's gateway address, not the client's
      expect(got.every((x) => x !== '192.168.56.100')).toBe(true);
    });
    it(`through ${node} with externalTrafficPolicy: Local keeps the client IP and uses only that node's endpoints`, async () => {
      const got = await fromExt(node, 30701, 4);
      expect(got).toEqual(['192.168.56.100', '192.168.56.100', '192.168.56.100', '192.168.56.100']);
    });
  }
});

describe('endpoint changes', () => {
  it('sends new connections elsewhere when an endpoint goes away, without restarting anything', async () => {
    await adminRequest(lab.node('node1').socket, { op: 'ping' });
    for (const n of ['node1', 'node2']) await adminRequest(lab.node(n).socket, { op: 'delete', keys: ['Pod/default/web-3'] });
    const got = await connect('client', '10.96.0.80', 80, 10);
    expect(tally(got)).toEqual({ 'web-1': 5, 'web-2': 5 });
  });
});
