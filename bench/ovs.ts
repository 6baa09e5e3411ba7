/**
 * OVS benchmark: pod on node1 → pod on node2 over VXLAN, podwire against Open vSwitch's userspace
 * datapath (`datapath_type=netdev`, the "userspace peer to beat" of the design notes), built in the
 * same run on the same underlay.
 *
 *   node --import tsx bench/ovs.ts [--seconds 5] [--runs 3] [--quick]
 *
 * What it measures
 *   (a) podwire: a 2-node lab (prefix `bn` + 4 hex), pods bench-a (node1) and bench-b (node2), as
 *       bench/cross-node.ts builds it.
 *   (b) OVS: namespaces of its own (prefix `bo` + 4 hex) with the lab's underlay: `<p>-underlay`
 *       holds bridge br0; `<p>-node1` / `<p>-node2` reach it through a veth `underlay0`
 *       (192.168.56.11 / .12, MTU 1500). Each node namespace runs a private ovsdb-server and
 *       ovs-vswitchd (`ip netns exec NODE …`, every file under a temp directory: database, unix
 *       sockets, pid files, logs; OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR/OVS_SYSCONFDIR point there), stopped
 *       by pid at the end. The topology is OVS's documented userspace-tunnelling one:
 *         br-phy (netdev): port underlay0 (an AF_PACKET socket on the veth); the node's underlay
 *                 address moves from underlay0 to br-phy's internal port (a TAP), so OVS routes and
 *                 ARPs for the tunnel itself (`ovs/route`, `tnl/neigh`);
 *         br-int (netdev): the pod's port and `vxlan0` (type=vxlan, key=1, local_ip/remote_ip = the
 *                 two underlay addresses, UDP 4789); flows: the default NORMAL (MAC learning switch).
 *       Pods: a veth pair, `eth0` in the pod namespace, the other end an OVS "system" port (AF_PACKET)
 *       on br-int. The netdev datapath cannot use the kernel's checksum offload on such ports (OVS
 *       3.1's userspace TSO does not cover tunnels), so the pod's eth0 has `tx off`, as OVS's
 *       documentation prescribes for veths on the userspace datapath. (An internal port moved into the
 *       pod namespace, i.e. a TAP like podwire's, also works — OVS keeps the fd but warns that the
 *       device vanished from its namespace — and gave the same throughput in a probe, 0.37-0.45
 *       Gbit/s both; the veth is the supported way.)
 *       Addressing: both pods in one flat L2 network, 10.244.1.10/16 and 10.244.2.10/16, MAC learning
 *       and flooding over the tunnel. That is not Flannel's routed layout (no gateway hop, no per-node
 *       route): it is OVS's simplest and cheapest configuration, so it flatters OVS if anything.
 *   Tests: iperf3 TCP single stream, ping RTT p50/p90 (200 x 10 ms). One topology at a time, order
 *   alternating every run, a ping and a 1 s TCP warm-up first; medians. For OVS also the
 *   ovs-vswitchd CPU (utime+stime from /proc) and the packets its datapath received
 *   (`dpif-netdev/pmd-stats-show`), per node.
 *
 * How to read the figures
 *   - The ratio column (podwire / OVS); both sides ran minutes apart on the same shared 2-core machine.
 *   - OVS's TCP stream shows thousands of retransmits. They are losses inside each node, between the
 *     veths and ovs-vswitchd: the kernel counts every frame into vpod/underlay0, OVS forwards about
 *     10 % fewer, and OVS's own port and coverage counters show no drop, so they overflow the
 *     AF_PACKET sockets' receive queues (default net.core.rmem_default, 208 KiB) while ovs-vswitchd
 *     uses a third of a core: its main thread sleeps in poll() between batches and the pod's TCP
 *     bursts fill the queue. Raising that sysctl is not possible from a child namespace here
 *     (EINVAL), and OVS has no option for it, so OVS runs with its defaults. The receiving pod also
 *     sees heavy reordering (TcpExtTCPOFOQueue); pinning ovs-vswitchd to one CPU did not change it.
 *   - The OVS datapath works per MTU-sized packet (no TSO over tunnels in OVS 3.1); podwire's
 *     frames may be 64 KB super-frames, so its frames/s and CPU per frame are not per wire packet.
 *
 * If the OVS binaries are missing (Debian: `apt-get install openvswitch-switch`; on a machine without
 * systemd, a policy-rc.d that exits 101 keeps the package's own service from starting) or the OVS
 * topology cannot be brought up, the bench prints "OVS: not available (reason)" and still prints
 * podwire's figures.
 *
 * Safety: every namespace is the bench's own; OVS daemons run only inside the bench's node
 * namespaces (checked against /run/netns/<ns> after start) and are killed by pid, then every process
 * left in those namespaces; at the end the bench checks that no ovsdb-server/ovs-vswitchd runs in
 * the root namespace. Nothing is configured in the root namespace; every command is time-bounded;
 * cleanup runs in `finally` and on SIGINT/SIGTERM.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { labUp, labDown } from '../src/lab/lab.ts';
import {
  uniquePrefix, onCleanup, installSignalHandlers, sweepNetns, ipIn, must, sh, twoNodeUnderlay, Results, progress, measureTcp, measurePing,
  warmUp, cpuSeconds, environment, loadavg, table, median, fmt, parseBenchArgs, listNetns, daemonRows, sleep, podIfSummary, type Side,
} from './lib.ts';
import { podwireSide } from './cross-node.ts';
import type { BenchOptions } from './same-node.ts';

const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const OVS_BINS = ['ovsdb-tool', 'ovsdb-server', 'ovs-vswitchd', 'ovs-vsctl', 'ovs-appctl'];

/** null if the OVS tools are installed, else why not. */
export async function ovsMissing(): Promise<string | null> {
  const missing: string[] = [];
  for (const b of OVS_BINS) if ((await sh('sh', ['-c', `command -v ${b}`], 5_000)).code !== 0) missing.push(b);
  if (missing.length) return `${missing.join(', ')} not installed (Debian: apt-get install openvswitch-switch)`;
  if (!fs.existsSync(SCHEMA)) return `${SCHEMA} missing`;
  return null;
}

export async function ovsVersion(): Promise<string> {
  return (await sh('ovs-vswitchd', ['--version'], 5_000)).stdout.split('\n')[0].trim();
}

interface OvsNode { name: string; netns: string; dir: string; underlayIp: string; pids: number[] }
interface OvsLab { prefix: string; dir: string; nodes: OvsNode[]; side: Side }

/** ovsdb-server / ovs-vswitchd processes whose network namespace is the root's (ours). */
export function ovsInRootNetns(): string[] {
  const self = fs.statSync('/proc/self/ns/net').ino;
  const out: string[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const comm = fs.readFileSync(`/proc/${d}/comm`, 'utf8').trim();
      if (comm !== 'ovsdb-server' && comm !== 'ovs-vswitchd') continue;
      if (fs.statSync(`/proc/${d}/ns/net`).ino === self) out.push(`${comm}[${d}]`);
    } catch { /* gone */ }
  }
  return out;
}

function readPid(file: string): number {
  const pid = Number(fs.readFileSync(file, 'utf8').trim());
  if (!(pid > 0)) throw new Error(`no pid in ${file}`);
  return pid;
}

/** The daemon really runs in the node's namespace (same inode as /run/netns/<ns>). */
function checkNetns(pid: number, netns: string): void {
  if (fs.statSync(`/proc/${pid}/ns/net`).ino !== fs.statSync(`/run/netns/${netns}`).ino) throw new Error(`OVS process ${pid} is not in namespace ${netns}`);
}

/** Run an OVS tool inside the node's namespace with the node's private directories. */
function ovs(n: OvsNode, cmd: string[], timeoutMs = 20_000): Promise<string> {
  const env = ['OVS_RUNDIR', 'OVS_DBDIR', 'OVS_LOGDIR', 'OVS_SYSCONFDIR'].map((k) => `${k}=${n.dir}`);
  return must('ip', ['netns', 'exec', n.netns, 'env', ...env, ...cmd], timeoutMs);
}
const vsctl = (n: OvsNode, args: string[]) => ovs(n, ['ovs-vsctl', `--db=unix:${n.dir}/db.sock`, '--timeout=20', ...args], 25_000);
const appctl = (n: OvsNode, args: string[]) => ovs(n, ['ovs-appctl', '-t', `${n.dir}/vswitchd.ctl`, '--timeout=10', ...args], 15_000);

async function startOvs(n: OvsNode): Promise<void> {
  fs.mkdirSync(n.dir, { recursive: true, mode: 0o700 });
  await ovs(n, ['ovsdb-tool', 'create', `${n.dir}/conf.db`, SCHEMA]);
  await ovs(n, ['ovsdb-server', `${n.dir}/conf.db`, `--remote=punix:${n.dir}/db.sock`, `--unixctl=${n.dir}/ovsdb.ctl`,
    `--pidfile=${n.dir}/ovsdb-server.pid`, `--log-file=${n.dir}/ovsdb-server.log`, '--detach', '--no-chdir']);
  n.pids.push(readPid(`${n.dir}/ovsdb-server.pid`));
  checkNetns(n.pids[0], n.netns);
  await vsctl(n, ['--no-wait', 'init']);
  await ovs(n, ['ovs-vswitchd', `unix:${n.dir}/db.sock`, `--unixctl=${n.dir}/vswitchd.ctl`,
    `--pidfile=${n.dir}/ovs-vswitchd.pid`, `--log-file=${n.dir}/ovs-vswitchd.log`, '--detach', '--no-chdir'], 30_000);
  n.pids.push(readPid(`${n.dir}/ovs-vswitchd.pid`));
  checkNetns(n.pids[1], n.netns);
}

/** SIGTERM the node's OVS daemons, wait up to 5 s, then SIGKILL. */
async function stopOvs(n: OvsNode): Promise<void> {
  const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  for (const pid of n.pids) { try { process.kill(pid, 'SIGTERM'); } catch { /* gone */ } }
  const deadline = Date.now() + 5_000;
  while (n.pids.some(alive) && Date.now() < deadline) await sleep(100);
  for (const pid of n.pids) if (alive(pid)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}

async function ovsLabDown(l: { prefix: string; dir: string; nodes: OvsNode[] }): Promise<void> {
  for (const n of l.nodes) await stopOvs(n).catch(() => undefined);
  await sweepNetns(l.prefix);   // also SIGKILLs whatever still runs inside (e.g. a daemon whose pid file we never read)
  fs.rmSync(l.dir, { recursive: true, force: true });
}

/** Build the OVS topology described in the header. Throws (after cleaning up nothing: the caller does) on failure. */
async function ovsLabUp(l: { prefix: string; dir: string; nodes: OvsNode[] }): Promise<OvsLab> {
  const bare = await twoNodeUnderlay(l.prefix);
  const pods = bare.map((b) => b.pod);
  for (const [k, b] of bare.entries()) {
    const i = k + 1, pod = b.pod;
    const n: OvsNode = { name: `node${i}`, netns: b.netns, dir: path.join(l.dir, `node${i}`), underlayIp: b.underlayIp, pids: [] };
    l.nodes.push(n);
    await ipIn(n.netns, [`link add vpod mtu 1450 type veth peer name eth0 mtu 1450 netns ${pod}`, 'link set vpod up']);
    await ipIn(pod, ['link set lo up', 'link set eth0 up', `addr add 10.244.${i}.10/16 dev eth0`]);
    await must('ip', ['netns', 'exec', pod, 'ethtool', '-K', 'eth0', 'tx', 'off'], 10_000);
    await startOvs(n);
    await vsctl(n, ['add-br', 'br-phy', '--', 'set', 'bridge', 'br-phy', 'datapath_type=netdev', '--', 'add-port', 'br-phy', 'underlay0']);
    await ipIn(n.netns, [`addr add ${n.underlayIp}/24 dev br-phy`, 'link set br-phy up']);
    const other = b.peerIp;
    await vsctl(n, ['add-br', 'br-int', '--', 'set', 'bridge', 'br-int', 'datapath_type=netdev',
      '--', 'add-port', 'br-int', 'vpod',
      '--', 'add-port', 'br-int', 'vxlan0', '--', 'set', 'interface', 'vxlan0', 'type=vxlan',
      `options:remote_ip=${other}`, `options:local_ip=${n.underlayIp}`, 'options:key=1', 'options:dst_port=4789']);
  }
  // OVS learns the kernel's routes over netlink; wait until it routes the underlay via br-phy.
  for (const n of l.nodes) {
    const deadline = Date.now() + 10_000;
    while (!/192\.168\.56\.0\/24 dev br-phy/.test(await appctl(n, ['ovs/route/show']))) {
      if (Date.now() > deadline) throw new Error(`ovs-vswitchd on ${n.name} has no route to the underlay via br-phy`);
      await sleep(100);
    }
  }
  return { ...l, side: { name: 'ovs', clientNs: pods[0], serverNs: pods[1], serverIp: '10.244.2.10', daemons: [] } };
}

interface OvsSnap { cpu: number; packets: number; at: number }
async function snapOvs(n: OvsNode): Promise<OvsSnap> {
  const s = await appctl(n, ['dpif-netdev/pmd-stats-show']);
  const packets = [...s.matchAll(/packets received: (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);
  let cpu = 0;
  for (const pid of n.pids) cpu += await cpuSeconds(pid);
  return { cpu, packets, at: performance.now() / 1000 };
}

/** TCP 1 stream on OVS, with ovs-vswitchd's CPU and datapath packets per node around it. */
async function measureOvsTcp(l: OvsLab, r: Results, seconds: number): Promise<void> {
  const a = await Promise.all(l.nodes.map(snapOvs));
  await measureTcp(l.side, r, seconds, 1);
  const b = await Promise.all(l.nodes.map(snapOvs));
  l.nodes.forEach((n, i) => {
    const cpu = b[i].cpu - a[i].cpu, pk = b[i].packets - a[i].packets, wall = b[i].at - a[i].at;
    r.push(`ovs:tcp1:${n.name}:kpps`, pk / wall / 1e3);
    r.push(`ovs:tcp1:${n.name}:cores`, cpu / wall);
    r.push(`ovs:tcp1:${n.name}:us`, pk > 0 ? (cpu * 1e6) / pk : NaN);
  });
}

export async function ovsBench(o: BenchOptions, r = new Results()): Promise<string> {
  const loadStart = loadavg();
  const missing = await ovsMissing();
  const unavailable: string[] = [];
  if (missing) unavailable.push(missing);
  const version = missing ? '' : await ovsVersion();
  const ifaces: Record<string, string> = {};
  for (let run = 1; run <= o.runs; run++) {
    const order: ('podwire' | 'ovs')[] = run % 2 === 1 ? ['podwire', 'ovs'] : ['ovs', 'podwire'];
    for (const which of order) {
      if (which === 'ovs' && unavailable.length) continue;   // not installed, or the topology already failed once
      const prefix = uniquePrefix(which === 'podwire' ? 'bn' : 'bo');
      const l = { prefix, dir: fs.mkdtempSync(path.join(os.tmpdir(), `podwire-${prefix}-`)), nodes: [] as OvsNode[] };
      const down = which === 'podwire' ? () => labDown(prefix) : () => ovsLabDown(l);
      const off = onCleanup(down);
      try {
        progress(`ovs run ${run}/${o.runs}: ${which} ${prefix}`);
        let side: Side;
        let ol: OvsLab | undefined;
        if (which === 'podwire') {
          fs.rmSync(l.dir, { recursive: true, force: true });
          const lab = await labUp({ nodes: 2, prefix, servePorts: false });
          side = await podwireSide(lab);
        } else {
          try {
            ol = await ovsLabUp(l);
            side = ol.side;
            await warmUp(side);
          } catch (e) {
            const msg = (e as Error).message.split('\n')[0].replaceAll(l.dir, '$DIR');
            unavailable.push(msg);
            progress(`OVS topology failed: ${msg}`);
            for (const n of l.nodes) {
              const log = path.join(n.dir, 'ovs-vswitchd.log');
              if (fs.existsSync(log)) progress(`${n.name} ovs-vswitchd.log (tail):\n${fs.readFileSync(log, 'utf8').split('\n').slice(-8).join('\n')}`);
            }
            continue;
          }
        }
        ifaces[which] ??= (await podIfSummary(side.clientNs)).text;
        await r.attempt(`${which} run ${run}`, async () => {
          if (which === 'podwire') await warmUp(side);
          if (ol) await measureOvsTcp(ol, r, o.seconds); else await measureTcp(side, r, o.seconds, 1);
          await measurePing(side, r, 200);
        });
      } finally {
        await down().catch((e) => progress(`teardown ${prefix}: ${e}`));
        off();
        fs.rmSync(l.dir, { recursive: true, force: true });
        const left = (await listNetns()).filter((n) => n.startsWith(`${prefix}-`));
        if (left.length) r.notes.push(`namespaces left behind: ${left.join(', ')}`);
      }
    }
  }
  const inRoot = ovsInRootNetns();
  if (inRoot.length) r.notes.push(`OVS processes in the root namespace (not the bench's): ${inRoot.join(', ')}`);

  const out: string[] = [];
  out.push('== OVS: pod on node1 -> pod on node2 over VXLAN (podwire vs Open vSwitch userspace datapath, netdev) ==');
  out.push(await environment());
  out.push(`runs: ${o.runs} x ${o.seconds} s per test, one topology at a time, order alternating, medians; ping 200 x 10 ms`);
  const ovsOk = r.get('ovs:tcp1:gbps').length > 0;
  if (!ovsOk) out.push(`OVS: not available (${[...new Set(unavailable)].join('; ') || 'every OVS measurement failed: see the notes'})`);
  else out.push(`OVS: ${version}; br-int (NORMAL) + vxlan0 + pod veth (AF_PACKET), br-phy owns underlay0; pods in one /16 over the tunnel`);
  out.push(`pod eth0: podwire ${ifaces.podwire ?? '?'}; ovs ${ifaces.ovs ?? '-'} (tx checksum offload off)`);
  out.push(`load average at start: ${loadStart}`);
  out.push(`samples (TCP 1 stream): podwire ${r.get('podwire:tcp1:gbps').length}, ovs ${r.get('ovs:tcp1:gbps').length}`);
  out.push('');
  const rows = [['metric', 'podwire', 'ovs', 'podwire/ovs']];
  const row = (name: string, key: string, digits = 2, scale = 1, ratio = true) => {
    const p = median(r.get(`podwire:${key}`)) * scale, v = median(r.get(`ovs:${key}`)) * scale;
    rows.push([name, fmt(p, digits), fmt(v, digits), ratio ? fmt(p / v, 2) : '']);
  };
  row('TCP 1 stream (Gbit/s)', 'tcp1:gbps');
  row('TCP 1 stream retransmits', 'tcp1:retr', 0, 1, false);
  row('ping RTT p50 (µs)', 'ping:p50', 0);
  row('ping RTT p90 (µs)', 'ping:p90', 0);
  out.push(table(rows));
  out.push('');
  out.push('per node during TCP 1 stream: podwire daemons (counters, /proc) and ovs-vswitchd (pmd-stats "packets received", /proc):');
  const d = daemonRows(r, ['node1', 'node2'], [['tcp1', 'podwire TCP 1 stream']]);
  for (const [k, label, digits] of [['kpps', 'ovs-vswitchd TCP 1 stream: datapath packets (k/s)', 0], ['us', 'ovs-vswitchd TCP 1 stream: CPU per packet (µs)', 2], ['cores', 'ovs-vswitchd TCP 1 stream: cores used', 2]] as const) {
    d.push([label, ...['node1', 'node2'].map((n) => fmt(median(r.get(`ovs:tcp1:${n}:${k}`)), digits))]);
  }
  out.push(table(d));
  out.push('');
  out.push(`OVS daemons in the root namespace after the run: ${inRoot.length ? inRoot.join(', ') : 'none'}`);
  out.push(`load average at end: ${loadavg()}`);
  for (const note of r.notes) out.push(`note: ${note}`);
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  installSignalHandlers();
  const o = parseBenchArgs(process.argv.slice(2));
  ovsBench(o).then((t) => { console.log(t); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
}
