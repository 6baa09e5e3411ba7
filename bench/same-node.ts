/**
 * Same-node benchmark: pod A → pod B on one node, podwire against a Linux bridge built in the same run.
 *
 *   node --import tsx bench/same-node.ts [--seconds 5] [--runs 3] [--quick] [--udp-rate 0]
 *
 * What it measures
 *   (a) podwire: a 1-node lab (its own namespaces, prefix `bn` + 4 random hex digits), two pods on
 *       node1. Each pod's eth0 is a TAP held by the node's podwire daemon, which forwards every frame.
 *   (b) kernel bridge: namespaces `bk` + 4 hex digits: one with a Linux bridge, two "pods" attached by
 *       veth pairs, same MTU as podwire's pods, addresses in 10.250.0.0/24. This is what the bridge
 *       CNI plugin gives a pod, forwarding entirely inside the kernel.
 *   For each: iperf3 TCP single stream A → B, and iperf3 UDP with 64-byte payloads sent as fast as the
 *   client can (`-b 0`, or `--udp-rate`). The two topologies are measured alternately, `--runs` times
 *   each (the order flips every run), and the table shows medians.
 *
 * How to read the figures
 *   - Read the ratio column (podwire / kernel), not the absolute values: both sides ran on the same
 *     machine minutes apart, while absolutes drift with whatever else the (shared, 2-core) machine does.
 *     For throughput, < 1 means podwire is slower; for latency, > 1 means podwire is slower.
 *   - UDP 64 B: three busy processes (iperf3 client, daemon, iperf3 server) share 2 cores, and the
 *     receiving iperf3 is often the limit (loss is then drops in its socket buffer, not in the data
 *     plane). So the table also gives what the daemon itself forwarded (sum of txPackets over its
 *     ports, from its counters), the daemon's CPU per forwarded frame (utime+stime from
 *     /proc/<pid>/stat divided by frames forwarded), the cores it used, and frames per batch (how
 *     many frames cross into JS per addon call).
 *   - TCP on podwire: a frame may be a TSO super-frame (up to 64 KB) when the TAP has a vnet header,
 *     so frames/s during TCP is not packets/s on the wire; the UDP row is the per-packet cost.
 *
 * Safety: every namespace is the bench's own (unique prefix); nothing is configured in the root
 * namespace; every command is time-bounded; everything is removed in `finally` and on SIGINT/SIGTERM.
 */
import { pathToFileURL } from 'node:url';
import { labUp, labApply, labPods, labDown, type LabState } from '../src/lab/lab.ts';
import {
  uniquePrefix, onCleanup, installSignalHandlers, sweepNetns, ipIn, must, findDaemonPid, Results, progress,
  benchPodManifest, measureTcp, measureUdp, measureSaturated, warmUp, podIfSummary, environment, loadavg, table, metricRows, parseBenchArgs, listNetns, daemonRows,
  type Side, type Metric,
} from './lib.ts';

export interface BenchOptions { seconds: number; runs: number; udpRate: string }

const BASE_NET = '10.250.0';

/** The kernel baseline: `<p>-br` holds bridge br0; `<p>-a` and `<p>-b` are pods on veth pairs. */
async function bridgeUp(p: string, mtu: number): Promise<{ a: string; b: string }> {
  const br = `${p}-br`, a = `${p}-a`, b = `${p}-b`;
  for (const ns of [br, a, b]) await must('ip', ['netns', 'add', ns], 10_000);
  await ipIn(br, ['link set lo up', 'link add br0 type bridge', `link set br0 mtu ${mtu} up`]);
  let i = 2;
  for (const [ns, host] of [[a, 'vpa'], [b, 'vpb']]) {
    await ipIn(br, [`link add ${host} mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${ns}`, `link set ${host} master br0 up`]);
    await ipIn(ns, ['link set lo up', 'link set eth0 up', `addr add ${BASE_NET}.${i++}/24 dev eth0`]);
  }
  return { a, b };
}

/** Run the bench; `r` receives every sample (bench/run.ts passes its own to build the summary). */
export async function sameNode(o: BenchOptions, r = new Results()): Promise<string> {
  const lp = uniquePrefix('bn'), kp = uniquePrefix('bk');
  const out: string[] = [];
  const loadStart = loadavg();
  const offLab = onCleanup(() => labDown(lp));
  const offBr = onCleanup(() => sweepNetns(kp));
  let lab: LabState | undefined;
  let podIf = '', mtu = 1450;
  try {
    progress(`same-node: podwire lab ${lp}`);
    lab = await labUp({ nodes: 1, prefix: lp, servePorts: false });
    await labApply(lab, benchPodManifest('bench-a', 'node1') + '---\n' + benchPodManifest('bench-b', 'node1'), 'bench/same-node.ts');
    const pods = await labPods(lab);
    const pa = pods.find((p) => p.name === 'bench-a')!, pb = pods.find((p) => p.name === 'bench-b')!;
    const summary = await podIfSummary(pa.netns);
    podIf = summary.text; mtu = summary.mtu;
    const pw: Side = { name: 'podwire', clientNs: pa.netns, serverNs: pb.netns, serverIp: pb.ip, daemons: [{ lab, node: 'node1', pid: findDaemonPid(lab, 'node1') }] };

    progress(`same-node: kernel bridge ${kp} (mtu ${mtu})`);
    const k = await bridgeUp(kp, mtu);
    const kb: Side = { name: 'kernel', clientNs: k.a, serverNs: k.b, serverIp: `${BASE_NET}.3`, daemons: [] };

    await warmUp(pw);
    await warmUp(kb);
    for (let run = 1; run <= o.runs; run++) {
      const order = run % 2 === 1 ? [pw, kb] : [kb, pw];
      for (const side of order) {
        progress(`same-node run ${run}/${o.runs}: ${side.name}`);
        await measureTcp(side, r, o.seconds, 1);
        await measureUdp(side, r, o.seconds, o.udpRate);
        if (side === pw) await measureSaturated(side, r);
      }
    }
  } finally {
    progress('same-node: tearing down');
    await labDown(lp).catch((e) => progress(`labDown ${lp}: ${e}`));
    await sweepNetns(kp).catch((e) => progress(`sweep ${kp}: ${e}`));
    offLab(); offBr();
  }
  const left = (await listNetns()).filter((n) => n.startsWith(`${lp}-`) || n.startsWith(`${kp}-`));
  if (left.length) r.notes.push(`namespaces left behind: ${left.join(', ')}`);

  const m: Metric[] = [
    { name: 'TCP 1 stream (Gbit/s)', podwire: r.get('podwire:tcp1:gbps'), kernel: r.get('kernel:tcp1:gbps') },
    { name: 'TCP retransmits', podwire: r.get('podwire:tcp1:retr'), kernel: r.get('kernel:tcp1:retr'), digits: 0, ratio: false },
    { name: 'UDP 64 B received (kpps)', podwire: r.get('podwire:udp:rxkpps'), kernel: r.get('kernel:udp:rxkpps'), digits: 0 },
    { name: 'UDP 64 B sent by iperf3 (kpps)', podwire: r.get('podwire:udp:sentkpps'), kernel: r.get('kernel:udp:sentkpps'), digits: 0, ratio: false },
    { name: 'UDP 64 B loss (%)', podwire: r.get('podwire:udp:loss'), kernel: r.get('kernel:udp:loss'), digits: 1, ratio: false },
  ];
  out.push(`== same node: pod A -> pod B on one node (podwire vs Linux bridge + veth) ==`);
  out.push(await environment());
  out.push(`runs: ${o.runs} x ${o.seconds} s per test, interleaved, medians; UDP -l 64 -b ${o.udpRate}; pod MTU ${mtu}`);
  out.push(`podwire pod eth0: ${podIf}`);
  out.push(`load average at start: ${loadStart}`);
  out.push(`samples (TCP 1 stream): podwire ${r.get('podwire:tcp1:gbps').length}, kernel ${r.get('kernel:tcp1:gbps').length}`);
  out.push('');
  out.push(table(metricRows(m)));
  out.push('');
  out.push('podwire daemon (from its counters and /proc/<pid>/stat):');
  out.push(table(daemonRows(r, ['node1'], [['udp', 'UDP 64 B (iperf3)'], ['gen', '64 B flood (trafgen, 2M frames)'], ['tcp1', 'TCP 1 stream']])));
  out.push('');
  out.push(`load average at end: ${loadavg()}`);
  for (const note of r.notes) out.push(`note: ${note}`);
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  installSignalHandlers();
  const o = parseBenchArgs(process.argv.slice(2));
  sameNode(o).then((t) => { console.log(t); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
}
