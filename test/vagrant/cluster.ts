/**
 * The host side of the VM suite: a podwire cluster whose nodes are Vagrant VMs.
 *
 * One SSH session per VM runs `test/vagrant/relay.mjs` as root there; through it the host
 *   - talks to each daemon's admin socket: a local Unix socket per node forwards every request,
 *     so the lab's own control plane (`labApply`: scheduling, the two-phase apply that shares pod
 *     addresses and Service allocations) drives the VMs unchanged, from the same manifests;
 *   - runs commands on a VM (the node itself) or inside a pod's network namespace there.
 * Traffic under test flows only between the VMs, their pods, and the host's end of the VMs'
 * private network; the host only ever talks to the VMs over SSH.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { labApply, labPods, type LabState, type LabPod } from '../../src/lab/lab.ts';
import { adminRequest } from '../../src/daemon/client.ts';

export interface ExecResult { code: number; stdout: string; stderr: string }
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Answer = { id: number; ok: boolean; error?: string; line?: string; code?: number; stdout?: string; stderr?: string; ready?: boolean; node?: string };

/** One relay process on one VM, reached through one SSH session. */
class Relay {
  private nextId = 1;
  private readonly waiting = new Map<number, (a: Answer) => void>();
  private exited = false;
  private stderr = '';

  private constructor(readonly node: string, private readonly child: ChildProcessWithoutNullStreams) {}

  static start(sshConfig: string, host: string, repo: string, timeoutMs = 180_000): Promise<Relay> {
    const child = spawn('ssh', ['-F', sshConfig, '-o', 'BatchMode=yes', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=8',
      host, 'sudo', 'node', path.posix.join(repo, 'test/vagrant/relay.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
    const relay = new Relay(host, child);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`relay on ${host}: not ready in ${timeoutMs} ms; ssh said: ${relay.stderr.trim()}`)); }, timeoutMs);
      child.stderr.on('data', (d) => { relay.stderr = (relay.stderr + d).slice(-4000); });
      child.on('exit', (code) => {
        relay.exited = true;
        clearTimeout(timer);
        for (const [, w] of relay.waiting) w({ id: -1, ok: false, error: `relay on ${host} exited (${code}): ${relay.stderr.trim()}` });
        relay.waiting.clear();
        reject(new Error(`relay on ${host} exited (${code}): ${relay.stderr.trim()}`));
      });
      readline.createInterface({ input: child.stdout }).on('line', (l) => {
        let a: Answer;
        try { a = JSON.parse(l) as Answer; } catch { return; }
        if (a.id === 0 && a.ready) { clearTimeout(timer); resolve(relay); return; }
        const w = relay.waiting.get(a.id);
        if (w) { relay.waiting.delete(a.id); w(a); }
      });
    });
  }

  request(req: Record<string, unknown>): Promise<Answer> {
    if (this.exited) return Promise.resolve({ id: -1, ok: false, error: `relay on ${this.node} is gone: ${this.stderr.trim()}` });
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.stdin.write(JSON.stringify({ ...req, id }) + '\n');
    });
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

export interface VmClusterOptions {
  /** `vagrant ssh-config` output, one Host per VM named node1..nodeN. */
  sshConfig: string;
  nodes: number;
  /** The private network's first three octets: node i is <net>.(10+i). */
  net: string;
  /** A folder for the local admin-socket proxies. */
  dir: string;
  /** Where the repository is synced in the VMs. */
  repo?: string;
}

export class VmCluster {
  readonly state: LabState;
  private readonly relays = new Map<string, Relay>();
  private readonly servers: net.Server[] = [];

  private constructor(state: LabState) { this.state = state; }

  static async connect(o: VmClusterOptions): Promise<VmCluster> {
    const repo = o.repo ?? '/opt/podwire';
    fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    const names = Array.from({ length: o.nodes }, (_, k) => `node${k + 1}`);
    const state: LabState = {
      prefix: 'vagrant', dir: o.dir, underlayNetns: '(the VMs\' private network)', extNetns: '', extIp: `${o.net}.1`,
      mtu: 1500, vni: 1, vxlanPort: 4789,
      nodes: names.map((name, k) => ({
        name, netns: `(VM ${name})`, underlayIp: `${o.net}.${11 + k}`, podCIDR: `10.244.${k + 1}.0/24`,
        socket: path.join(o.dir, `${name}.sock`), log: `journalctl -u podwire on ${name}`, overlay: 'podwire' as const,
      })),
    };
    const c = new VmCluster(state);
    try {
      const relays = await Promise.all(names.map((n) => Relay.start(o.sshConfig, n, repo)));
      relays.forEach((r) => c.relays.set(r.node, r));
      for (const n of state.nodes) c.servers.push(await c.proxy(n.name, n.socket, `/run/podwire/${n.name}.sock`));
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  /** A local Unix socket that forwards each admin request to the daemon on a VM. */
  private proxy(node: string, local: string, remote: string): Promise<net.Server> {
    try { fs.unlinkSync(local); } catch { /* not there */ }
    const server = net.createServer((conn) => {
      let buf = '';
      conn.on('data', (d) => {
        buf += d;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
          void this.relay(node).request({ op: 'admin', socket: remote, line, timeoutMs: 300_000 }).then((a) => {
            conn.write((a.ok ? a.line! : JSON.stringify({ ok: false, error: a.error })) + '\n');
          });
        }
      });
      conn.on('error', () => undefined);
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(local, () => resolve(server));
    });
  }

  private relay(node: string): Relay {
    const r = this.relays.get(node);
    if (!r) throw new Error(`no VM ${node} (VMs: ${[...this.relays.keys()].join(', ')})`);
    return r;
  }

  /** Run a command on a VM (as root, in the VM's own network namespace: the node). */
  async exec(node: string, argv: string[], timeoutMs = 60_000, input?: string): Promise<ExecResult> {
    const a = await this.relay(node).request({ op: 'exec', argv, timeoutMs, input });
    if (!a.ok) throw new Error(a.error);
    return { code: a.code!, stdout: a.stdout!, stderr: a.stderr! };
  }

  sh(node: string, script: string, timeoutMs?: number): Promise<ExecResult> { return this.exec(node, ['bash', '-c', script], timeoutMs); }

  /** Run a command inside a pod's network namespace on its VM. */
  execPod(pod: LabPod, argv: string[], timeoutMs?: number): Promise<ExecResult> {
    return this.exec(pod.node, ['ip', 'netns', 'exec', pod.netns, ...argv], timeoutMs);
  }

  admin<T>(node: string, req: object, timeoutMs = 300_000): Promise<T> {
    return adminRequest<T>(this.state.nodes.find((n) => n.name === node)!.socket, req, timeoutMs);
  }

  /** Apply manifests to the VM cluster exactly as `podwire lab apply` does to a namespace lab. */
  apply(yaml: string, source: string): Promise<string[]> { return labApply(this.state, yaml, source); }

  pods(): Promise<LabPod[]> { return labPods(this.state); }

  async close(): Promise<void> {
    for (const s of this.servers) s.close();
    for (const n of this.state.nodes) { try { fs.unlinkSync(n.socket); } catch { /* gone */ } }
    await Promise.all([...this.relays.values()].map((r) => r.close()));
  }
}
