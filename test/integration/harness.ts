/**
 * Integration harness: a real lab (network namespaces, podwire daemons, pod agents) per test file.
 *
 * Every lab gets a unique prefix, and `stop()` (called from afterAll, also after a failure) removes
 * every namespace it created, then asserts none is left. Traffic only ever flows between the lab's
 * own namespaces.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { labUp, labDown, labApply, labPods, REPO_ROOT, type LabState, type LabPod, type LabUpOptions } from '../../src/lab/lab.ts';
import { listNetns } from '../../src/daemon/sys.ts';
import { adminRequest } from '../../src/daemon/client.ts';

export const TOOLS = path.join(REPO_ROOT, 'test/integration/tools');

export function sh(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

export class TestLab {
  s!: LabState;
  pods: LabPod[] = [];
  private readonly bg: ChildProcess[] = [];

  /** Start a long-running helper inside a namespace; resolves once it prints `ready`; stop() ends it. */
  background(netns: string, cmd: string[]): Promise<ChildProcess> {
    return new Promise((resolve, reject) => {
      const c = spawn('ip', ['netns', 'exec', netns, ...cmd], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      this.bg.push(c);
      c.stdout!.on('data', (d) => { if (String(d).includes('ready')) resolve(c); });
      c.on('exit', (code) => reject(new Error(`${cmd.join(' ')} exited ${code}`)));
    });
  }

  async start(opts: LabUpOptions, manifests: string): Promise<void> {
    const prefix = `pt${randomBytes(3).toString('hex')}`;
    this.s = await labUp({ ...opts, prefix });
    if (manifests.trim()) await labApply(this.s, manifests, 'test manifests');
    await this.refresh();
  }

  async refresh(): Promise<void> { this.pods = await labPods(this.s); }

  pod(name: string): LabPod {
    const p = this.pods.find((x) => x.name === name);
    if (!p) throw new Error(`no pod ${name}`);
    return p;
  }

  node(name: string) { return this.s.nodes.find((n) => n.name === name)!; }

  /** Run a command inside a pod's (or any lab) namespace. */
  exec(netns: string, cmd: string[], timeoutMs?: number) { return sh('ip', ['netns', 'exec', netns, ...cmd], timeoutMs); }
  execPod(pod: string, cmd: string[], timeoutMs?: number) { return this.exec(this.pod(pod).netns, cmd, timeoutMs); }

  /**
   * A TCP transfer of `mb` MiB each way with tools/echo-client.mjs, from a pod (or any lab
   * namespace) to `to`:80, both directions checked by SHA-256. Returns the server's greeting (its pod name).
   */
  async echo(from: string | { netns: string }, to: string, mb: number, timeoutMs = 180_000): Promise<string> {
    const cmd = ['node', path.join(TOOLS, 'echo-client.mjs'), to, '80', String(mb * 1024 * 1024)];
    const r = typeof from === 'string' ? await this.execPod(from, cmd, timeoutMs) : await this.exec(from.netns, cmd, timeoutMs);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.received).toBe(mb * 1024 * 1024);
    expect(res.receivedSha256).toBe(res.sentSha256);
    return res.greeting as string;
  }

  counters(node = 'node1'): Promise<{ drops: Record<string, number>; ports: { label: string; drops: Record<string, number>; rxPackets: number; txPackets: number }[]; vxlanEncap: number; vxlanDecap: number }> {
    return adminRequest(this.node(node).socket, { op: 'counters' });
  }

  apply(yaml: string) { return labApply(this.s, yaml, 'test'); }

  /** Tear down and return the lab's namespaces still present afterwards (should be none). */
  async stop(): Promise<string[]> {
    for (const c of this.bg) c.kill('SIGKILL');
    if (!this.s) return [];
    await labDown(this.s.prefix);
    return (await listNetns()).filter((n) => n.startsWith(this.s.prefix));
  }
}

/** A Pod manifest. */
export function podYaml(name: string, o: { ns?: string; node?: string; ip?: string; labels?: Record<string, string>; tcp?: number[]; udp?: number[]; named?: Record<string, number> } = {}): string {
  const ports = [
    ...(o.tcp ?? [80]).map((p) => `    - { containerPort: ${p}, protocol: TCP${o.named && Object.values(o.named).includes(p) ? `, name: ${Object.keys(o.named).find((k) => o.named![k] === p)}` : ''} }`),
    ...(o.udp ?? [53]).map((p) => `    - { containerPort: ${p}, protocol: UDP }`),
  ];
  return `apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: ${o.ns ?? 'default'}
  labels: ${JSON.stringify(o.labels ?? { app: name })}
${o.ip ? `  annotations:\n    podwire.io/ip: ${o.ip}\n` : ''}spec:
${o.node ? `  nodeName: ${o.node}\n` : ''}  containers:
  - name: main
    image: agent
    ports:
${ports.join('\n')}
---
`;
}
