/**
 * The local lab: a multi-node cluster made of network namespaces on one Linux machine.
 *
 *   ns <prefix>-underlay: bridge br0                (stands in for the VMs' private network)
 *     ├─ veth ─ ns <prefix>-node1: underlay0 192.168.56.11/24, a podwire daemon, podwire0 (host TAP)
 *     │            └─ ns <prefix>-node1-<namespace>-<pod>: eth0 = a TAP held by node1's daemon
 *     ├─ veth ─ ns <prefix>-node2: underlay0 192.168.56.12/24 ...
 *     └─ veth ─ ns <prefix>-ext:   underlay0 192.168.56.100/24 (a client outside the cluster)
 *
 * Rules:
 *   - nothing is created in the root namespace except the lab's state folder under /run/podwire/labs;
 *   - every namespace name starts with the lab's prefix (unique per run), so `down` can sweep them
 *     all even after a crash or an interrupted `up`;
 *   - each daemon runs in its node's namespace (nsenter --net, so it shares the mount namespace and
 *     the pod namespaces it creates are visible to everyone).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { spawn } from 'node:child_process';
import { ipBatch, run, listNetns, deleteNetns } from '../daemon/sys.ts';
import { adminRequest } from '../daemon/client.ts';
import { parseManifests, type PodObj } from '../control/manifests.ts';
import { macToString, macFromIp, ipToU32, ROUTER_MAC_PREFIX } from '../control/addressing.ts';

export const LABS_DIR = '/run/podwire/labs';
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** tsx's ESM loader: `node --import TSX_LOADER file.ts` runs TypeScript (daemons, bench helpers). */
export const TSX_LOADER = path.join(REPO_ROOT, 'node_modules/tsx/dist/loader.mjs');
const CLI = path.join(REPO_ROOT, 'src/cli/podwire.ts');

export interface LabNode { name: string; netns: string; underlayIp: string; podCIDR: string; socket: string; log: string; pid?: number; overlay: 'podwire' | 'kernel' }
export interface LabState { prefix: string; dir: string; nodes: LabNode[]; underlayNetns: string; extNetns: string; extIp: string; mtu: number; vni: number; vxlanPort: number; offload?: 'auto' | 'off'; busyPollMicros?: number; tunnelGso?: 'auto' | 'off' }

export interface LabUpOptions {
  nodes?: number;
  prefix?: string;
  mtu?: number;
  vni?: number;
  vxlanPort?: number;
  /** Node names whose overlay is the Linux kernel's own VXLAN (interop), e.g. ['node3']. */
  kernelNodes?: string[];
  servePorts?: boolean;
  /** Super-frame offloads on the daemons' TAPs: 'auto' (default) or 'off' (plain frames). */
  offload?: 'auto' | 'off';
  /** The daemons' busy-poll budget in microseconds (`--busy-poll`; 0 or absent = off). */
  busyPollMicros?: number;
  /** The daemons' UDP-tunnel GSO path (`--tunnel-gso`): 'auto' (default) or 'off'. */
  tunnelGso?: 'auto' | 'off';
  progress?: (line: string) => void;
}

/** Underlay address of node i (1-based). */
export const nodeUnderlayIp = (i: number): string => `192.168.56.${10 + i}`;

export function labStatePath(prefix: string): string { return path.join(LABS_DIR, prefix, 'lab.json'); }

export function loadLab(prefix?: string): LabState {
  if (!prefix) {
    const labs = listLabs();
    if (labs.length === 0) throw new Error('no lab is running (start one with `podwire lab up`)');
    if (labs.length > 1) throw new Error(`several labs are running (${labs.join(', ')}); name one with --name`);
    prefix = labs[0];
  }
  const p = labStatePath(prefix);
  if (!fs.existsSync(p)) throw new Error(`no lab named ${prefix}`);
  return JSON.parse(fs.readFileSync(p, 'utf8')) as LabState;
}

export function listLabs(): string[] {
  if (!fs.existsSync(LABS_DIR)) return [];
  return fs.readdirSync(LABS_DIR).filter((d) => fs.existsSync(labStatePath(d)));
}

function saveLab(s: LabState): void { fs.writeFileSync(labStatePath(s.prefix), JSON.stringify(s, null, 2)); }

/** Node manifests for a lab: pod CIDR 10.244.i.0/24 and underlay 192.168.56.(10+i). */
export function labNodeManifests(s: LabState): string {
  return s.nodes.map((n) => `apiVersion: v1
kind: Node
metadata:
  name: ${n.name}
  annotations:
    podwire.io/overlay: ${n.overlay}
spec:
  podCIDR: ${n.podCIDR}
status:
  addresses:
  - type: InternalIP
    address: ${n.underlayIp}
`).join('---\n');
}

/** Create the lab's namespaces, underlay and daemons. Cleans up everything on failure. */
export async function labUp(o: LabUpOptions = {}): Promise<LabState> {
  const progress = o.progress ?? (() => undefined);
  const prefix = o.prefix ?? `pw${randomBytes(2).toString('hex')}`;
  if (!/^[a-z][a-z0-9]{1,7}$/.test(prefix)) throw new Error(`lab name ${prefix}: 2-8 lowercase letters/digits, starting with a letter`);
  const count = o.nodes ?? 2;
  if (count < 1 || count > 50) throw new Error('--nodes must be 1..50');
  const dir = path.join(LABS_DIR, prefix);
  if (fs.existsSync(dir)) throw new Error(`a lab named ${prefix} already exists; \`podwire lab down --name ${prefix}\` first`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const s: LabState = {
    prefix, dir, nodes: [], underlayNetns: `${prefix}-underlay`, extNetns: `${prefix}-ext`, extIp: '192.168.56.100',
    mtu: o.mtu ?? 1500, vni: o.vni ?? 1, vxlanPort: o.vxlanPort ?? 4789, offload: o.offload ?? 'auto', busyPollMicros: o.busyPollMicros ?? 0, tunnelGso: o.tunnelGso ?? 'auto',
  };
  for (let i = 1; i <= count; i++) {
    const name = `node${i}`;
    s.nodes.push({
      name, netns: `${prefix}-${name}`, underlayIp: nodeUnderlayIp(i), podCIDR: `10.244.${i}.0/24`,
      socket: path.join(dir, `${name}.sock`), log: path.join(dir, `${name}.log`),
      overlay: o.kernelNodes?.includes(name) ? 'kernel' : 'podwire',
    });
  }
  saveLab(s);
  try {
    progress(`lab ${prefix}: underlay bridge`);
    await run('ip', ['netns', 'add', s.underlayNetns]);
    await ipBatch(['link set lo up', 'link add br0 type bridge', `link set br0 mtu ${s.mtu} up`], s.underlayNetns);
    const attach = async (netns: string, port: string, ip: string) => {
      await run('ip', ['netns', 'add', netns]);
      await ipBatch([`link add ${port} mtu ${s.mtu} type veth peer name underlay0 mtu ${s.mtu} netns ${netns}`, `link set ${port} master br0 up`], s.underlayNetns);
      await ipBatch(['link set lo up', `addr add ${ip}/24 dev underlay0`, 'link set underlay0 up'], netns);
    };
    for (const n of s.nodes) {
      progress(`lab ${prefix}: ${n.name} (${n.underlayIp}, pods ${n.podCIDR})`);
      await attach(n.netns, n.name, n.underlayIp);
    }
    await attach(s.extNetns, 'ext', s.extIp);
    fs.writeFileSync(path.join(dir, 'nodes.yaml'), labNodeManifests(s));
    for (const n of s.nodes) {
      if (n.overlay === 'kernel') { await kernelNodeUp(s, n); continue; }
      progress(`lab ${prefix}: starting the podwire daemon on ${n.name}`);
      n.pid = await startDaemon(s, n, o.servePorts ?? true);
      saveLab(s);
    }
    saveLab(s);
    return s;
  } catch (e) {
    await labDown(prefix).catch(() => undefined);
    throw e;
  }
}

async function startDaemon(s: LabState, n: LabNode, servePorts: boolean): Promise<number> {
  const args = [`--net=/run/netns/${n.netns}`, process.execPath, '--import', TSX_LOADER, CLI, 'daemon',
    '--node', n.name, '--manifests', path.join(s.dir, 'nodes.yaml'), '--netns-prefix', `${n.netns}-`,
    '--admin-socket', n.socket, '--vni', String(s.vni), '--vxlan-port', String(s.vxlanPort), '--underlay-if', 'underlay0',
    '--flow-log', path.join(s.dir, `${n.name}.flows.jsonl`)];
  if (s.offload === 'off') args.push('--offload', 'off');
  if (s.busyPollMicros) args.push('--busy-poll', String(s.busyPollMicros));
  if (s.tunnelGso === 'off') args.push('--tunnel-gso', 'off');
  if (servePorts) args.push('--serve-ports');
  const log = fs.openSync(n.log, 'a');
  const child = spawn('nsenter', args, { detached: true, stdio: ['ignore', log, log], cwd: REPO_ROOT });
  child.unref();
  fs.closeSync(log);
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daemon for ${n.name} exited (${child.exitCode}); see ${n.log}:\n${fs.readFileSync(n.log, 'utf8').slice(-2000)}`);
    try { await adminRequest(n.socket, { op: 'ping' }, 2000); return child.pid!; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`daemon for ${n.name} did not answer in 30 s; see ${n.log}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/**
 * A node whose overlay is the Linux kernel's own, programmed the way Flannel's vxlan backend does
 * it: a `vxlan` device with the node's VTEP MAC, a bridge for its pods (veth pairs), and for every
 * other node a route to its pod CIDR via its .0 address on the vxlan device, a permanent neighbour
 * entry mapping that address to the remote VTEP MAC, and an FDB entry mapping the MAC to the
 * remote underlay address. podwire nodes then see it as just another cluster member.
 */
async function kernelNodeUp(s: LabState, n: LabNode): Promise<void> {
  const vtepMac = macToString(macFromIp(ROUTER_MAC_PREFIX, ipToU32(n.underlayIp)));
  const gw = n.podCIDR.replace(/\.0\/24$/, '.1');
  const lines = [
    `link add flannel.1 address ${vtepMac} mtu ${s.mtu - 50} type vxlan id ${s.vni} local ${n.underlayIp} dev underlay0 dstport ${s.vxlanPort} nolearning`,
    'link set flannel.1 up',
    `addr add ${n.podCIDR.replace(/\/24$/, '/32')} dev flannel.1`,
    'link add cni0 type bridge',
    `link set cni0 mtu ${s.mtu - 50} up`,
    `addr add ${gw}/24 dev cni0`,
  ];
  const fdb: string[] = [];
  for (const m of s.nodes) {
    if (m.name === n.name) continue;
    const mMac = macToString(macFromIp(ROUTER_MAC_PREFIX, ipToU32(m.underlayIp)));
    const mAddr = m.podCIDR.replace(/\/24$/, '');
    lines.push(`route add ${m.podCIDR} via ${mAddr} dev flannel.1 onlink`);
    lines.push(`neigh add ${mAddr} lladdr ${mMac} dev flannel.1 nud permanent`);
    fdb.push(`fdb append ${mMac} dev flannel.1 dst ${m.underlayIp}`);
  }
  await ipBatch(lines, n.netns);
  if (fdb.length) await run('bridge', ['-n', n.netns, '-batch', '-'], fdb.join('\n') + '\n');
  await run('ip', ['netns', 'exec', n.netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  // Inside one machine, veth carries "checksum not yet computed" (CHECKSUM_PARTIAL) packets from one
  // namespace to the next, and the kernel's VXLAN device then sends the inner TCP checksum unfinished:
  // a kernel receiver trusts the flag, but a VTEP that reads datagrams from a socket (podwire, or any
  // real NIC-less peer) sees a wrong checksum and the pod drops the segment. This is the bug behind
  // Flannel's 63-second delays (kubernetes#88986), and Flannel's fix is ours: no tx checksum offload
  // on the VXLAN device of a node that talks to other kinds of VTEP.
  if (s.nodes.some((m) => m.overlay === 'podwire')) await run('ip', ['netns', 'exec', n.netns, 'ethtool', '-K', 'flannel.1', 'tx', 'off']);
}

/** Create a pod on a kernel-overlay node: a veth into the cni0 bridge (what the bridge CNI does). */
export async function kernelPodUp(s: LabState, n: LabNode, pod: PodObj, ip: string): Promise<string> {
  const netns = `${n.netns}-${pod.namespace}-${pod.name}`;
  const host = `veth${randomBytes(4).toString('hex')}`;
  await run('ip', ['netns', 'add', netns]);
  await ipBatch([`link add ${host} mtu ${s.mtu - 50} type veth peer name eth0 netns ${netns}`, `link set ${host} master cni0 up`], n.netns);
  await ipBatch(['link set lo up', `link set eth0 mtu ${s.mtu - 50} up`, `addr add ${ip}/24 dev eth0`, `route add default via ${n.podCIDR.replace(/\.0\/24$/, '.1')}`], netns);
  return netns;
}

/** Stop daemons and remove every namespace of the lab (also after a crash). */
export async function labDown(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  const p = labStatePath(prefix);
  if (fs.existsSync(p)) {
    const s = JSON.parse(fs.readFileSync(p, 'utf8')) as LabState;
    const pids = s.nodes.map((n) => n.pid).filter((x): x is number => !!x);
    for (const pid of pids) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
    const deadline = Date.now() + 10_000;
    while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const pid of pids) if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
  }
  // Sweep: pods first (their TAPs' owners are gone), then nodes, then the underlay.
  const all = (await listNetns()).filter((n) => n === prefix || n.startsWith(`${prefix}-`));
  all.sort((a, b) => b.length - a.length);
  for (const ns of all) {
    // Processes still inside (pod agents of a killed daemon) would keep nothing alive, but end them.
    try {
      const pids = (await run('ip', ['netns', 'pids', ns])).split('\n').filter(Boolean);
      for (const pid of pids) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } }
    } catch { /* ns vanished */ }
    await deleteNetns(ns);
    removed.push(ns);
  }
  fs.rmSync(path.join(LABS_DIR, prefix), { recursive: true, force: true });
  return removed;
}

function alive(pid: number): boolean { try { process.kill(pid, 0); return true; } catch { return false; } }

/**
 * Apply manifests to the lab, playing the API server's part:
 *   - pods without spec.nodeName are scheduled round-robin over the podwire nodes (kube-scheduler);
 *   - phase 1: every node gets the cluster-wide objects and its own pods (its daemon assigns their
 *     addresses); the first node also gets the Services (it allocates ClusterIPs and NodePorts);
 *   - phase 2: every node learns the other nodes' pods with their addresses (status.podIP) and the
 *     Services with what was allocated, so all nodes share one view of the cluster.
 * The manifests are validated first; nothing is sent if any object is invalid.
 */
export async function labApply(s: LabState, text: string, source: string): Promise<string[]> {
  parseManifests(text, source);
  const YAML = await import('yaml');
  type Assigned = Record<string, { podIP?: string; clusterIP?: string; nodePorts?: number[] }>;
  // Raw manifests as YAML parsed them: the lab only reads and fills a few well-known fields.
  type Raw = { kind: string; metadata: { name: string; namespace?: string }; spec?: Record<string, any>; status?: Record<string, unknown> }; // eslint-disable-line @typescript-eslint/no-explicit-any
  const raws: Raw[] = [];
  for (const doc of YAML.parseAllDocuments(text)) {
    const js = doc.toJS() as (Raw & { items?: Raw[] }) | null;
    if (js == null) continue;
    if (js.kind === 'List') raws.push(...(js.items ?? [])); else raws.push(js);
  }
  const podwireNodes = s.nodes.filter((n) => n.overlay === 'podwire');
  if (podwireNodes.length === 0) throw new Error('the lab has no podwire node to apply to');
  let rr = 0;
  for (const r of raws) {
    if (r.kind !== 'Pod') continue;
    r.spec ??= {};
    if (!r.spec.nodeName) r.spec.nodeName = podwireNodes[rr++ % podwireNodes.length].name;
    if (!s.nodes.some((n) => n.name === r.spec!.nodeName)) throw new Error(`Pod ${r.metadata.namespace ?? 'default'}/${r.metadata.name}: spec.nodeName: no node ${r.spec.nodeName} in lab ${s.prefix}`);
  }
  const key = (r: Raw) => `${r.kind}/${r.kind === 'Node' || r.kind === 'Namespace' ? '' : `${r.metadata.namespace ?? 'default'}/`}${r.metadata.name}`;
  const send = async (n: LabNode, docs: Raw[]): Promise<{ lines: string[]; assigned: Assigned }> => {
    if (docs.length === 0) return { lines: [], assigned: {} };
    const body = docs.map((d) => YAML.stringify(d)).join('---\n');
    return adminRequest(n.socket, { op: 'apply', yaml: body, source }, 120_000);
  };
  const out: string[] = [];
  const shared = raws.filter((r) => r.kind !== 'Pod' && r.kind !== 'Service');
  const services = raws.filter((r) => r.kind === 'Service');
  // Pods on kernel nodes are created here, with their pinned address.
  for (const r of raws.filter((x) => x.kind === 'Pod')) {
    const n = s.nodes.find((x) => x.name === r.spec!.nodeName)!;
    if (n.overlay !== 'kernel') continue;
    const pod = parseManifests(YAML.stringify(r), source)[0] as PodObj;
    if (!pod.pinnedIp) throw new Error(`Pod ${pod.namespace}/${pod.name}: pods on kernel node ${n.name} need a pinned address (annotation podwire.io/ip)`);
    await kernelPodUp(s, n, pod, pod.pinnedIp);
    r.status = { ...(r.status ?? {}), podIP: pod.pinnedIp };
    out.push(`${n.name}: Pod/${pod.namespace}/${pod.name} created (${pod.pinnedIp}, kernel node)`);
  }
  // Phase 1.
  for (const n of podwireNodes) {
    const own = raws.filter((r) => r.kind === 'Pod' && r.spec!.nodeName === n.name);
    const first = n === podwireNodes[0];
    const res = await send(n, [...shared, ...own, ...(first ? services : [])]);
    for (const r of own) {
      const a = res.assigned[key(r)];
      if (a?.podIP) r.status = { ...(r.status ?? {}), podIP: a.podIP };
    }
    if (first) {
      for (const r of services) {
        const a = res.assigned[key(r)];
        if (!a) continue;
        r.spec ??= {};
        if (a.clusterIP && r.spec.clusterIP === undefined) r.spec.clusterIP = a.clusterIP;
        if (a.nodePorts?.length) (r.spec.ports as { nodePort?: number }[]).forEach((p, i) => { p.nodePort ??= a.nodePorts![i]; });
      }
    }
    for (const line of res.lines) {
      if (line.startsWith('Pod/')) { if (/ \(\d+\.\d+\.\d+\.\d+\)$/.test(line)) out.push(`${n.name}: ${line}`); }
      else if (first) out.push(line);
    }
  }
  // Phase 2.
  for (const n of podwireNodes) {
    const others = raws.filter((r) => r.kind === 'Pod' && r.spec!.nodeName !== n.name);
    await send(n, [...others, ...(n === podwireNodes[0] ? [] : services)]);
  }
  return out;
}

export interface LabPod { node: string; namespace: string; name: string; ip: string; netns: string; ports: { name?: string; containerPort: number; protocol: string }[]; labels: Record<string, string> }

/** Every pod of the lab, from the daemons' own status. */
export async function labPods(s: LabState): Promise<LabPod[]> {
  const out: LabPod[] = [];
  for (const n of s.nodes.filter((x) => x.overlay === 'podwire')) {
    const st = await adminRequest<{ pods: Omit<LabPod, 'node'>[] }>(n.socket, { op: 'status' });
    for (const p of st.pods) out.push({ node: n.name, ...p });
  }
  return out;
}

/** Find a pod by `name` or `namespace/name`. */
export async function findPod(s: LabState, ref: string): Promise<LabPod> {
  const pods = await labPods(s);
  let p: LabPod | undefined;
  if (ref.includes('/')) {
    const [ns, name] = ref.split('/');
    p = pods.find((x) => x.namespace === ns && x.name === name);
  } else {
    const byName = pods.filter((x) => x.name === ref);
    if (byName.length > 1) throw new Error(`pod name ${ref} is in several namespaces (${byName.map((x) => x.namespace).join(', ')}); say namespace/name`);
    p = byName[0];
  }
  const [ns, name] = ref.includes('/') ? ref.split('/') : ['*', ref];
  if (!p) throw new Error(`no pod ${ns}/${name} in lab ${s.prefix} (pods: ${pods.map((x) => `${x.namespace}/${x.name}`).join(', ') || 'none'})`);
  return p;
}

/** Probe TCP from one pod to an address: the agent's greeting line names the pod that answered. */
export async function probeTcp(netns: string, ip: string, port: number, timeoutS = 2): Promise<string | null> {
  try {
    const out = await run('ip', ['netns', 'exec', netns, 'timeout', String(timeoutS), 'bash', '-c', `exec 3<>/dev/tcp/${ip}/${port}; head -n1 <&3`]);
    return out.trim() || null;
  } catch { return null; }
}
