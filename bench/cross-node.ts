/**
 * Cross-node benchmark: pod A on node1 → pod B on node2 over VXLAN, podwire against the Linux kernel's
 * own VXLAN (Flannel's vxlan backend) built in the same run.
 *
 *   node --import tsx bench/cross-node.ts [--seconds 5] [--runs 3] [--quick] [--udp-rate 0]
 *
 * What it measures
 *   (a) podwire: a 2-node lab (prefix `bn` + 4 random hex digits), one pod per node. Each node's
 *       daemon holds its pod's TAP and the node's VXLAN socket on the underlay: node1 encapsulates,
 *       node2 decapsulates.
 *   (b) kernel: a 2-node lab (prefix `bk` + 4 hex) whose nodes are both `kernelNodes`: a `vxlan`
 *       device (flannel.1) + cni0 bridge + veth pods, routes/neighbours/FDB programmed the way Flannel
 *       does it. Same underlay (a bridge namespace, 192.168.56.0/24), same pod addressing
 *       (10.244.<node>.0/24), same pod MTU (1450).
 *   Tests: iperf3 TCP single stream, TCP 4 streams (-P 4), UDP with 64-byte payloads sent as fast as
 *   the client can (`-b 0`, or `--udp-rate`), and ping RTT p50/p90 (200 pings, 10 ms apart).
 *   (c) podwire with `--busy-poll 20000` (prefix `bn`): the daemons poll their fds for 20 ms after
 *       traffic instead of sleeping in epoll; ping RTT and TCP single stream only, to show what the
 *       latency costs in throughput.
 *   (d) the userspace floor (prefix `bf`, bench/floor.ts): the same two nodes with a minimal relay
 *       (TAP <-> VXLAN, no lookups) in place of each daemon, in C and in Node with podwire's addon,
 *       each sleeping in epoll and spinning (four labs); ping only. The C relay is what any
 *       process-per-node data plane pays on this machine, the Node relay what the runtime adds;
 *       read podwire's ping against them.
 *   Only one lab exists at a time, so the idle one costs nothing: every run brings up a fresh podwire
 *   lab, measures, removes it, then does the same with a fresh kernel lab, a busy-poll lab and the
 *   four floor labs (the order flips every run). Each side starts with a ping and a 1 s TCP warm-up
 *   (JIT, ARP). Pings are measured last, and where a Node process forwards them (podwire, the Node
 *   floor) at least 15 s after it started (`pastStartup`: V8's one-off start-up GCs land around
 *   8 s). The table shows medians; in the floor rows the podwire column holds the relay's figure.
 *
 * How to read the figures
 *   - Read the ratio column (podwire / kernel), not absolutes: the machine is shared and has 2 cores.
 *     For throughput, < 1 means podwire is slower; for latency, > 1 means podwire is slower.
 *   - On 2 cores, podwire's cross-node path has four busy processes (iperf3 client, node1's daemon,
 *     node2's daemon, iperf3 server) where the kernel path runs in the sender's and receiver's
 *     softirq context. CPU is the currency: the "cores used" rows say how much each daemon took.
 *   - UDP 64 B: the sending and receiving iperf3 are often the limit. The daemons' own figures come
 *     from their counters: frames forwarded (sum of txPackets over each daemon's ports) per second,
 *     CPU per forwarded frame (utime+stime from /proc/<pid>/stat divided by frames), frames per batch.
 *     node1 forwards pod → VXLAN (encap), node2 VXLAN → pod (decap).
 *   - TCP frames may be TSO super-frames when the pod TAP has a vnet header, so TCP frames/s is not
 *     wire packets/s; the UDP rows are the per-packet cost.
 *
 * Safety: every namespace is the bench's own (unique prefix per lab); nothing is configured in the
 * root namespace; every command is time-bounded; everything is removed in `finally` and on SIGINT.
 */
import * as os from 'node:os';
import { pathToFileURL } from 'node:url';
import { labUp, labApply, labPods, kernelPodUp, type LabState } from '../src/lab/lab.ts';
import type { PodObj } from '../src/control/manifests.ts';
import {
  uniquePrefix, benchPodManifest, inFreshLab, installSignalHandlers, findDaemonPid, Results, progress, measureTcp, measureUdp, measureSaturated, measurePing,
  warmUp, pastStartup, podIfSummary, environment, loadavg, table, metricRows, parseBenchArgs, daemonRows, type Side, type Metric,
} from './lib.ts';
import type { BenchOptions } from './same-node.ts';
import { floorUp, floorCheck, floorRelayBinary, type FloorRelay } from './floor.ts';

/** The floor labs (bench/floor.ts): which relay, and whether it spins. */
const FLOORS = {
  floor: { relay: 'c', spin: false }, floorspin: { relay: 'c', spin: true },
  nodefloor: { relay: 'node', spin: false }, nodefloorspin: { relay: 'node', spin: true },
} as const satisfies Record<string, { relay: FloorRelay; spin: boolean }>;
type Lab = 'podwire' | 'kernel' | 'busypoll' | keyof typeof FLOORS;


/**
 * The busy-poll budget of the third lab: longer than the ping interval (10 ms), so the daemons are
 * still polling when the next echo comes, as a latency-sensitive deployment would set it.
 */
export const BUSY_POLL_MICROS = 20_000;

/** The minimal PodObj kernelPodUp needs (namespace and name make the pod's netns name). */
export function kernelPod(name: string): PodObj {
  return { kind: 'Pod', name, namespace: 'bench', uid: `bench/${name}`, labels: {}, annotations: {}, ports: [], ready: true };
}

/** Pod bench-a on node1 (client) and bench-b on node2 (server) in a 2-node podwire lab. */
export async function podwireSide(lab: LabState): Promise<Side> {
  await labApply(lab, benchPodManifest('bench-a', 'node1') + '---\n' + benchPodManifest('bench-b', 'node2'), 'bench/cross-node.ts');
  const pods = await labPods(lab);
  const pa = pods.find((p) => p.name === 'bench-a')!, pb = pods.find((p) => p.name === 'bench-b')!;
  return {
    name: 'podwire', clientNs: pa.netns, serverNs: pb.netns, serverIp: pb.ip,
    daemons: ['node1', 'node2'].map((node) => ({ lab, node, pid: findDaemonPid(lab, node) })),
  };
}

/** Pods on the kernel nodes of a 2-node kernel lab: 10.244.1.10 on node1 (client), 10.244.2.10 on node2. */
export async function kernelSide(lab: LabState): Promise<Side> {
  const a = await kernelPodUp(lab, lab.nodes[0], kernelPod('a'), '10.244.1.10');
  const b = await kernelPodUp(lab, lab.nodes[1], kernelPod('b'), '10.244.2.10');
  return { name: 'kernel', clientNs: a, serverNs: b, serverIp: '10.244.2.10', daemons: [] };
}

/** Run the bench; `r` receives every sample (bench/run.ts passes its own to build the summary). */
export async function crossNode(o: BenchOptions, r = new Results()): Promise<string> {
  const loadStart = loadavg();
  const ifaces: Record<string, string> = {};
  // The C floor relay is built here, once; without g++ its labs are skipped (said once, in a note).
  const cFloorMissing = await floorRelayBinary().then(() => '', (e: Error) => e.message);
  if (cFloorMissing) r.notes.push(`C floor relay not available: ${cFloorMissing}`);
  for (let run = 1; run <= o.runs; run++) {
    const labs: Lab[] = ['podwire', 'kernel', 'busypoll', ...(cFloorMissing ? [] : ['floor', 'floorspin'] as const), 'nodefloor', 'nodefloorspin'];
    const order = run % 2 === 1 ? labs : labs.slice().reverse();
    for (const which of order) {
      const floorKind = which in FLOORS ? FLOORS[which as keyof typeof FLOORS] : undefined;
      const prefix = uniquePrefix(which === 'kernel' ? 'bk' : floorKind ? 'bf' : 'bn');
      progress(`cross-node run ${run}/${o.runs}: ${which} lab ${prefix}`);
      await inFreshLab(prefix, r, `${which} run ${run}`, async () => {
        if (floorKind) {
          // The userspace floor (bench/floor.ts): ping only, the Node relay past its start-up GCs.
          const floor = await floorUp(prefix, floorKind.relay, floorKind.spin, which);
          const upAt = Date.now();
          await warmUp(floor.side);
          if (floorKind.relay === 'node') await pastStartup(upAt);
          await measurePing(floor.side, r, 200);
          floorCheck(floor);
          return;
        }
        const lab = await labUp({
          nodes: 2, prefix, servePorts: false, kernelNodes: which === 'kernel' ? ['node1', 'node2'] : [],
          busyPollMicros: which === 'busypoll' ? BUSY_POLL_MICROS : 0,
        });
        const upAt = Date.now();
        const side = which === 'kernel' ? await kernelSide(lab) : { ...(await podwireSide(lab)), name: which };
        ifaces[which] ??= (await podIfSummary(side.clientNs)).text;
        await warmUp(side);
        if (which === 'busypoll') {
          // The same data path with --busy-poll: what it buys (latency) and what it costs (CPU
          // that the pods' own processes no longer get, which shows in TCP throughput).
          await measureTcp(side, r, o.seconds, 1);
          await pastStartup(upAt);
          await measurePing(side, r, 200);
          return;
        }
        await measureTcp(side, r, o.seconds, 1);
        await measureTcp(side, r, o.seconds, 4);
        await measureUdp(side, r, o.seconds, o.udpRate);
        if (which === 'podwire') await measureSaturated(side, r);
        await pastStartup(upAt);
        await measurePing(side, r, 200);
      });
    }
  }

  const m: Metric[] = [
    { name: 'TCP 1 stream (Gbit/s)', podwire: r.get('podwire:tcp1:gbps'), kernel: r.get('kernel:tcp1:gbps') },
    { name: 'TCP 4 streams (Gbit/s)', podwire: r.get('podwire:tcp4:gbps'), kernel: r.get('kernel:tcp4:gbps') },
    { name: 'TCP 1 stream retransmits', podwire: r.get('podwire:tcp1:retr'), kernel: r.get('kernel:tcp1:retr'), digits: 0, ratio: false },
    { name: `TCP 1 stream: busy CPUs (of ${os.availableParallelism()})`, podwire: r.get('podwire:tcp1:busyCpus'), kernel: r.get('kernel:tcp1:busyCpus'), ratio: false },
    { name: `TCP 4 streams: busy CPUs (of ${os.availableParallelism()})`, podwire: r.get('podwire:tcp4:busyCpus'), kernel: r.get('kernel:tcp4:busyCpus'), ratio: false },
    { name: 'UDP 64 B received (kpps)', podwire: r.get('podwire:udp:rxkpps'), kernel: r.get('kernel:udp:rxkpps'), digits: 0 },
    { name: 'UDP 64 B sent by iperf3 (kpps)', podwire: r.get('podwire:udp:sentkpps'), kernel: r.get('kernel:udp:sentkpps'), digits: 0, ratio: false },
    { name: 'UDP 64 B loss (%)', podwire: r.get('podwire:udp:loss'), kernel: r.get('kernel:udp:loss'), digits: 1, ratio: false },
    { name: 'ping RTT p50 (µs)', podwire: r.get('podwire:ping:p50'), kernel: r.get('kernel:ping:p50'), digits: 0 },
    { name: 'ping RTT p90 (µs)', podwire: r.get('podwire:ping:p90'), kernel: r.get('kernel:ping:p90'), digits: 0 },
    { name: `with --busy-poll ${BUSY_POLL_MICROS}: ping RTT p50 (µs)`, podwire: r.get('busypoll:ping:p50'), kernel: r.get('kernel:ping:p50'), digits: 0 },
    { name: `with --busy-poll ${BUSY_POLL_MICROS}: ping RTT p90 (µs)`, podwire: r.get('busypoll:ping:p90'), kernel: r.get('kernel:ping:p90'), digits: 0 },
    { name: `with --busy-poll ${BUSY_POLL_MICROS}: TCP 1 stream (Gbit/s)`, podwire: r.get('busypoll:tcp1:gbps'), kernel: r.get('kernel:tcp1:gbps') },
    { name: 'floor, a minimal C relay per node: ping RTT p50 (µs)', podwire: r.get('floor:ping:p50'), kernel: r.get('kernel:ping:p50'), digits: 0 },
    { name: 'floor, the same relay in Node + addon: ping RTT p50 (µs)', podwire: r.get('nodefloor:ping:p50'), kernel: r.get('kernel:ping:p50'), digits: 0 },
    { name: 'floor, C relay spinning: ping RTT p50 (µs)', podwire: r.get('floorspin:ping:p50'), kernel: r.get('kernel:ping:p50'), digits: 0 },
    { name: 'floor, Node relay spinning: ping RTT p50 (µs)', podwire: r.get('nodefloorspin:ping:p50'), kernel: r.get('kernel:ping:p50'), digits: 0 },
  ];
  const out: string[] = [];
  out.push(`== cross node: pod on node1 -> pod on node2 over VXLAN (podwire vs kernel VXLAN + cni0 bridge, Flannel-style) ==`);
  out.push(await environment());
  out.push(`runs: ${o.runs} x ${o.seconds} s per test, one lab at a time, order alternating, medians; UDP -l 64 -b ${o.udpRate}; ping 200 x 10 ms`);
  out.push(`pod eth0: podwire ${ifaces.podwire ?? '?'}; kernel ${ifaces.kernel ?? '?'}`);
  out.push(`load average at start: ${loadStart}`);
  out.push(`samples (TCP 1 stream): podwire ${r.get('podwire:tcp1:gbps').length}, kernel ${r.get('kernel:tcp1:gbps').length}`);
  out.push('');
  out.push(table(metricRows(m)));
  out.push('');
  out.push('podwire daemons (from their counters and /proc/<pid>/stat; node1 encapsulates, node2 decapsulates):');
  out.push(table(daemonRows(r, ['node1', 'node2'], [['udp', 'UDP 64 B (iperf3)'], ['gen', '64 B flood (trafgen, 2M frames)'], ['tcp1', 'TCP 1 stream'], ['tcp4', 'TCP 4 streams']])));
  out.push('');
  out.push(`load average at end: ${loadavg()}`);
  for (const note of r.notes) out.push(`note: ${note}`);
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  installSignalHandlers();
  const o = parseBenchArgs(process.argv.slice(2));
  crossNode(o).then((t) => { console.log(t); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
}
