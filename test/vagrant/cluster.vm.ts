/**
 * The VM suite: podwire daemons on real VMs (Vagrant), one per VM, joined by the VMs' private
 * network as the underlay. Run it with `sudo scripts/vagrant-test`, which boots the VMs, runs this
 * file from the host side and removes everything afterwards. It needs:
 *   PODWIRE_VAGRANT_SSH_CONFIG  `vagrant ssh-config` for node1..nodeN
 *   PODWIRE_NODES (default 2), PODWIRE_NET (default 192.168.56), PODWIRE_VAGRANT_DIR (a scratch folder)
 *
 * What it shows: each daemon uses its VM's private interface (never the management/NAT one) and
 * refuses a duplicate node address; the lab's manifests (examples/demo) and the suite's own
 * (test/vagrant/manifests) are applied by the lab's control plane unchanged; pods on different VMs
 * reach each other over podwire's VXLAN; a Service with a backend on each VM answers round-robin;
 * a NetworkPolicy denies what it should; each VM (the node) reaches pods on both VMs.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { VmCluster, type ExecResult } from './cluster.ts';
import type { LabPod } from '../../src/lab/lab.ts';
import { takesTapUso } from '../kernel.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SSH_CONFIG = process.env.PODWIRE_VAGRANT_SSH_CONFIG ?? '';
const NODES = Number(process.env.PODWIRE_NODES ?? '2');
const NET = process.env.PODWIRE_NET ?? '192.168.56';
const nodeIp = (i: number) => `${NET}.${10 + i}`;

let c: VmCluster;
let pods: LabPod[] = [];
const applied: string[] = [];

function pod(ref: string): LabPod {
  const [ns, name] = ref.split('/');
  const p = pods.find((x) => x.namespace === ns && x.name === name);
  if (!p) throw new Error(`no pod ${ref} (pods: ${pods.map((x) => `${x.namespace}/${x.name}`).join(', ')})`);
  return p;
}

/** `n` TCP connections from a pod (or, with pod = null, from a node) to ip:port; each agent's greeting line. */
async function connect(from: LabPod | string, ip: string, port: number, n = 1): Promise<string[]> {
  const script = `for i in $(seq ${n}); do timeout 5 bash -c 'exec 3<>/dev/tcp/${ip}/${port}; head -n1 <&3' 2>/dev/null || echo FAIL; done`;
  const r: ExecResult = typeof from === 'string' ? await c.sh(from, script, 120_000) : await c.execPod(from, ['bash', '-c', script], 120_000);
  return r.stdout.trim().split('\n');
}

/** The interface holding node i's InternalIP on its VM. */
async function privateIf(node: string, i: number): Promise<string> {
  const addrs = JSON.parse((await c.exec(node, ['ip', '-j', '-4', 'addr', 'show'])).stdout) as { ifname: string; addr_info: { local: string }[] }[];
  const l = addrs.find((x) => x.addr_info.some((a) => a.local === nodeIp(i)));
  if (!l) throw new Error(`${node}: no interface holds ${nodeIp(i)}`);
  return l.ifname;
}

const tally = (xs: string[]) => xs.reduce<Record<string, number>>((m, x) => { m[x] = (m[x] ?? 0) + 1; return m; }, {});
type Counters = { vxlanEncap: number; vxlanDecap: number; drops: Record<string, number> };

beforeAll(async () => {
  if (!SSH_CONFIG || !fs.existsSync(SSH_CONFIG)) throw new Error('PODWIRE_VAGRANT_SSH_CONFIG is not set: run this suite with `sudo scripts/vagrant-test`');
  if (NODES < 2) throw new Error('the VM suite needs at least 2 VMs (PODWIRE_NODES)');
  const dir = process.env.PODWIRE_VAGRANT_DIR ?? fs.mkdtempSync(path.join(os.tmpdir(), 'pwvg-suite-'));
  c = await VmCluster.connect({ sshConfig: SSH_CONFIG, nodes: NODES, net: NET, dir });
  // The demo application of the namespace lab, file by file as `podwire lab up -f examples/demo` does,
  // then the suite's own workload.
  const files = [
    ...fs.readdirSync(path.join(ROOT, 'examples/demo')).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => path.join(ROOT, 'examples/demo', f)),
    path.join(ROOT, 'test/vagrant/manifests/vmtest.yaml'),
  ];
  for (const f of files) applied.push(...await c.apply(fs.readFileSync(f, 'utf8'), path.relative(ROOT, f)));
  pods = await c.pods();
  console.log(applied.join('\n'));
}, 1_200_000);

afterAll(async () => {
  await c?.close();
});

describe('nodes', () => {
  it('every daemon runs with its own node identity, on the private network', async () => {
    for (let i = 1; i <= NODES; i++) {
      const st = await c.admin<{ node: string; internalIP: string; podCIDR: string; nodes: unknown[] }>(`node${i}`, { op: 'status' });
      expect(st).toMatchObject({ node: `node${i}`, internalIP: nodeIp(i), podCIDR: `10.244.${i}.0/24` });
      expect(st.nodes).toHaveLength(NODES);
    }
  });

  it('uses the private-network interface as underlay, never the management/NAT one', async () => {
    for (let i = 1; i <= NODES; i++) {
      const node = `node${i}`;
      const addrs = JSON.parse((await c.exec(node, ['ip', '-j', '-4', 'addr', 'show'])).stdout) as { ifname: string; addr_info: { local: string }[] }[];
      const priv = addrs.find((l) => l.addr_info.some((a) => a.local === nodeIp(i)))!.ifname;
      const mgmt = addrs.find((l) => l.ifname !== 'lo' && l.ifname !== priv && l.addr_info.length > 0);
      const unit = (await c.exec(node, ['systemctl', 'show', '-p', 'ExecStart', '--value', 'podwire.service'])).stdout;
      expect(unit).toContain(`--underlay-if ${priv} `);
      const log = (await c.exec(node, ['journalctl', '-u', 'podwire.service', '--no-pager', '-o', 'cat'])).stdout;
      expect(log).toContain(`underlay ${nodeIp(i)} on ${priv} `);
      // The VXLAN socket listens on the private address only.
      const ss = (await c.exec(node, ['ss', '-Huln', 'sport = :4789'])).stdout;
      expect(ss).toContain(`${nodeIp(i)}:4789`);
      if (mgmt) {
        expect(mgmt.ifname).not.toBe(priv);
        expect(ss).not.toContain(mgmt.addr_info[0].local);
      }
    }
  });

  it('refuses to start with a duplicate node address, saying why', async () => {
    // As on VirtualBox, where the NAT interface has 10.0.2.15 on every VM: two Nodes, one address.
    const dup = `apiVersion: v1
kind: Node
metadata: { name: node1 }
spec: { podCIDR: 10.244.1.0/24 }
status: { addresses: [{ type: InternalIP, address: ${nodeIp(1)} }] }
---
apiVersion: v1
kind: Node
metadata: { name: node2 }
spec: { podCIDR: 10.244.2.0/24 }
status: { addresses: [{ type: InternalIP, address: ${nodeIp(1)} }] }
`;
    await c.exec('node2', ['tee', '/tmp/podwire-dup.yaml'], 10_000, dup);
    const r = await c.exec('node2', ['/opt/podwire/scripts/podwire', 'daemon', '--node', 'node2', '--manifests', '/tmp/podwire-dup.yaml',
      '--admin-socket', '/run/podwire/dup-test.sock', '--host-if', 'pwdup0'], 180_000);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`InternalIP ${nodeIp(1).replace(/\./g, '\\.')}.*node1`));
  }, 240_000);

  it('refuses to start when no interface holds its InternalIP (a wrong node identity)', async () => {
    const wrong = `apiVersion: v1
kind: Node
metadata: { name: node2 }
spec: { podCIDR: 10.244.2.0/24 }
status: { addresses: [{ type: InternalIP, address: ${NET}.250 }] }
`;
    await c.exec('node2', ['tee', '/tmp/podwire-wrong.yaml'], 10_000, wrong);
    const r = await c.exec('node2', ['/opt/podwire/scripts/podwire', 'daemon', '--node', 'node2', '--manifests', '/tmp/podwire-wrong.yaml',
      '--admin-socket', '/run/podwire/wrong-test.sock', '--host-if', 'pwwrong0'], 180_000);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`no interface here has the node's InternalIP ${NET}.250`);
  }, 240_000);
});

describe('the lab\'s manifests on VMs', () => {
  it('places every pod on its node, with an address from that node\'s pod CIDR', () => {
    expect(pods.length).toBeGreaterThanOrEqual(10);
    for (const p of pods) {
      const i = Number(p.node.slice(4));
      expect(p.ip.startsWith(`10.244.${i}.`), `${p.namespace}/${p.name} on ${p.node}: ${p.ip}`).toBe(true);
    }
    expect(pod('shop/database')).toMatchObject({ node: 'node1', ip: '10.244.1.50' });
    expect(pod('vmtest/db')).toMatchObject({ node: 'node2', ip: '10.244.2.40' });
    // Pods without spec.nodeName are scheduled round-robin, so the demo spans the VMs.
    expect(new Set(pods.filter((p) => p.namespace === 'shop').map((p) => p.node)).size).toBeGreaterThanOrEqual(2);
  });

  it('connects the demo pods exactly as the compiled NetworkPolicy says (across VMs too)', async () => {
    const shop = pods.filter((p) => p.namespace === 'shop' && p.ports.some((x) => x.protocol === 'TCP'));
    const wrong: string[] = [];
    for (const from of shop) {
      const targets = shop.map((to) => ({ to, port: to.ports.find((x) => x.protocol === 'TCP')!.containerPort }));
      const script = targets.map(({ to, port }) => `timeout 5 bash -c 'exec 3<>/dev/tcp/${to.ip}/${port}; head -n1 <&3' 2>/dev/null || echo FAIL`).join('\n');
      const got = (await c.execPod(from, ['bash', '-c', script], 180_000)).stdout.trim().split('\n');
      for (const [k, { to, port }] of targets.entries()) {
        const ex = await c.admin<{ allowed?: boolean; verdict?: string }>(from.node, { op: 'explain', src: from.ip, dst: to.ip, proto: 6, dport: port });
        const allowed = ex.allowed ?? ex.verdict === 'allowed';
        const reached = got[k] === to.name;
        if (reached !== allowed) wrong.push(`${from.name} → ${to.name}:${port}: got ${got[k]}, policy says ${allowed ? 'allowed' : 'denied'}`);
      }
    }
    expect(wrong).toEqual([]);
  }, 600_000);
});

describe('across VMs over VXLAN', () => {
  it('pods on each VM reach pods on the other (TCP and ping), encapsulated by podwire', async () => {
    const before1 = await c.admin<Counters>('node1', { op: 'counters' });
    const before2 = await c.admin<Counters>('node2', { op: 'counters' });
    expect(await connect(pod('vmtest/client-1'), '10.244.2.21', 80)).toEqual(['web-2']);
    expect(await connect(pod('vmtest/client-2'), '10.244.1.21', 80)).toEqual(['web-1']);
    const ping = await c.execPod(pod('vmtest/client-1'), ['ping', '-c', '3', '-i', '0.3', '-W', '3', '10.244.2.30'], 60_000);
    expect(ping.stdout).toMatch(/3 received/);
    const after1 = await c.admin<Counters>('node1', { op: 'counters' });
    const after2 = await c.admin<Counters>('node2', { op: 'counters' });
    expect(after1.vxlanEncap - before1.vxlanEncap).toBeGreaterThanOrEqual(4);
    expect(after1.vxlanDecap - before1.vxlanDecap).toBeGreaterThanOrEqual(4);
    expect(after2.vxlanEncap - before2.vxlanEncap).toBeGreaterThanOrEqual(4);
    expect(after2.vxlanDecap - before2.vxlanDecap).toBeGreaterThanOrEqual(4);
  }, 300_000);

  it('carries the VXLAN datagrams on the private network: UDP 4789 between the VMs\' private addresses', async () => {
    // The kernel's own UDP counters on node2 see the datagrams arrive at its VXLAN socket; its
    // private interface's counters grow while a cross-VM ping runs.
    const priv = await privateIf('node2', 2);
    const rx = async () => Number((await c.exec('node2', ['cat', `/sys/class/net/${priv}/statistics/rx_packets`])).stdout);
    const r0 = await rx();
    const ping = await c.execPod(pod('vmtest/client-1'), ['ping', '-c', '5', '-i', '0.2', '-W', '3', '10.244.2.21'], 60_000);
    expect(ping.stdout).toMatch(/5 received/);
    expect(await rx() - r0).toBeGreaterThanOrEqual(5);
  }, 120_000);
});

describe('UDP into a pod', () => {
  it('3000 datagrams from a pod on the other VM arrive whole and in order; USO runs where the VM kernel takes them, one by one where not', async () => {
    // Linux 6.2 added UDP_L4 GSO to what a TAP accepts; the VMs' Debian 12 kernel (6.1) refuses it,
    // so the daemon's first USO write fails, it stops trying (tapUdpGso false) and writes each
    // datagram on its own. Either way every datagram must arrive.
    const takesUso = takesTapUso((await c.exec('node2', ['uname', '-r'])).stdout.trim());
    const tool = '/opt/podwire/test/integration/tools/udp-stream.mjs';
    type Addon = { tapUdpGsoWrites: number; tapUdpGso: boolean };
    const before = (await c.admin<{ addon: Addon }>('node2', { op: 'counters' })).addon;
    const receiver = c.execPod(pod('vmtest/client-2'), ['node', tool, 'recv', '7003', '3000', '5'], 120_000);
    await new Promise((r) => setTimeout(r, 1500));
    // 20 ms between bursts of 32: the VMs run under software emulation, where a receiving process
    // that stalls for a moment lets its socket buffer (net.core.rmem_max) overflow at 5 ms.
    const sent = await c.execPod(pod('vmtest/client-1'), ['node', tool, 'send', '10.244.2.30', '7003', '3000', '1000', '20'], 120_000);
    const got = await receiver;
    expect(sent.code, sent.stderr).toBe(0);
    expect(got.code, got.stderr).toBe(0);
    const tx = JSON.parse(sent.stdout.trim().split('\n').pop()!), rx = JSON.parse(got.stdout.trim().split('\n').pop()!);
    // If one went missing, say where the daemons dropped what (nothing, if a socket buffer did).
    const drops = rx.received === 3000 ? '' : JSON.stringify(await Promise.all(['node1', 'node2'].map((n) => c.admin<{ drops: object }>(n, { op: 'counters' }).then((x) => x.drops))));
    expect(rx, drops).toMatchObject({ received: 3000, size: 1000, sha256: tx.sha256 });
    const after = (await c.admin<{ addon: Addon }>('node2', { op: 'counters' })).addon;
    if (takesUso) {
      expect(after.tapUdpGso).toBe(true);
      expect(after.tapUdpGsoWrites).toBeGreaterThan(before.tapUdpGsoWrites);
    } else {
      expect(after.tapUdpGso).toBe(false);
      expect(after.tapUdpGsoWrites).toBe(before.tapUdpGsoWrites);
    }
    const st = await c.admin<{ dataPath: string }>('node2', { op: 'status' });
    expect(st.dataPath).toMatch(takesUso ? /UDP runs written as USO frames/ : /UDP written frame by frame/);
  }, 300_000);
});

describe('Services', () => {
  it('answers round-robin from a Service with a backend on each VM', async () => {
    const got = await connect(pod('vmtest/client-1'), '10.96.0.80', 80, 10);
    expect(tally(got)).toEqual({ 'web-1': 5, 'web-2': 5 });
    const view = await c.admin<{ servicePort: string; backends: { pod: string; selections: number }[] }[]>('node1', { op: 'services' });
    const web = view.find((v) => v.servicePort.startsWith('vmtest/web:'))!;
    expect(web.backends.map((b) => b.selections)).toEqual([5, 5]);
  }, 300_000);

  it('balances on the other VM too (each node picks backends for its own clients)', async () => {
    const got = await connect(pod('vmtest/client-2'), '10.96.0.80', 80, 4);
    expect(tally(got)).toEqual({ 'web-1': 2, 'web-2': 2 });
  }, 300_000);
});

describe('NetworkPolicy', () => {
  it('lets the selected clients in, from either VM', async () => {
    expect(await connect(pod('vmtest/client-1'), '10.244.2.40', 5432)).toEqual(['db']);
    expect(await connect(pod('vmtest/client-2'), '10.244.2.40', 5432)).toEqual(['db']);
  }, 120_000);

  it('denies everyone else, from either VM', async () => {
    expect(await connect(pod('vmtest/web-1'), '10.244.2.40', 5432)).toEqual(['FAIL']);
    expect(await connect(pod('vmtest/web-2'), '10.244.2.40', 5432)).toEqual(['FAIL']);
    expect(await connect(pod('shop/frontend-1'), '10.244.2.40', 5432)).toEqual(['FAIL']);
    const ex = await c.admin<{ allowed: boolean; ingress: { verdict: string; reason: string } }>('node2', { op: 'explain', src: '10.244.1.21', dst: '10.244.2.40', proto: 6, dport: 5432 });
    expect(ex.allowed).toBe(false);
    expect(ex.ingress.reason).toContain('vmtest/db-from-clients');
  }, 120_000);
});

describe('the node reaches pods', () => {
  it('each VM reaches pods on itself and on the other VM (TCP and ping)', async () => {
    expect(await connect('node1', '10.244.1.21', 80)).toEqual(['web-1']);
    expect(await connect('node1', '10.244.2.21', 80)).toEqual(['web-2']);
    expect(await connect('node2', '10.244.1.21', 80)).toEqual(['web-1']);
    expect(await connect('node2', '10.244.2.21', 80)).toEqual(['web-2']);
    for (const [node, ip] of [['node1', '10.244.2.30'], ['node2', '10.244.1.30']]) {
      const r = await c.exec(node, ['ping', '-c', '2', '-i', '0.3', '-W', '3', ip], 60_000);
      expect(r.stdout, `${node} → ${ip}`).toMatch(/2 received/);
    }
  }, 300_000);

  it('speaks to pods from its InternalIP, not from the management interface\'s address', async () => {
    // A VM's first NIC has Vagrant's management address (10.0.2.15 on every VirtualBox VM): a node
    // that used it as the source towards pods on other nodes would get the replies lost.
    for (let i = 1; i <= NODES; i++) {
      const r = await c.exec(`node${i}`, ['ip', '-o', 'route', 'get', `10.244.${i === 1 ? 2 : 1}.21`]);
      expect(r.stdout, `node${i}: ${r.stdout}`).toContain(`src ${nodeIp(i)} `);
    }
  });
});
