/**
 * ClusterIP benchmark: a client pod on node1 → a Service's ClusterIP whose only backend is a pod on
 * node2, podwire against the kernel with kube-proxy's iptables rules, built in the same run.
 *
 *   node --import tsx bench/clusterip.ts [--seconds 5] [--runs 3] [--quick]
 *
 * What it measures
 *   (a) podwire: a 2-node lab (prefix `bn` + 4 random hex digits); pod bench-a on node1
 *       (10.244.1.10), pod bench-b on node2 (10.244.2.10, label app=iperf-backend, running
 *       `iperf3 -s` on 5201), and Service default/iperf with the fixed clusterIP 10.96.0.100, port
 *       80 → targetPort 5201. node1's daemon picks the backend, DNATs 10.96.0.100:80 → 10.244.2.10:5201,
 *       tracks the connection and reverses the rewrite on the replies; the packets cross VXLAN as
 *       pod → pod traffic does.
 *   (b) kernel: a 2-node lab (prefix `bk` + 4 hex) with both nodes `kernelNodes` (flannel.1 VXLAN +
 *       cni0 bridge + veth pods, as bench/cross-node.ts), the same addresses, and kube-proxy's
 *       iptables-mode rules (iptables-restore, nf_tables backend) loaded in the node namespaces:
 *         nat:    PREROUTING/OUTPUT → KUBE-SERVICES; KUBE-SERVICES `-d 10.96.0.100/32 -p tcp --dport 80`
 *                 → KUBE-SVC-<hash> (`! -s 10.244.0.0/16` → KUBE-MARK-MASQ, then → KUBE-SEP-<hash>)
 *                 → `-j DNAT --to-destination 10.244.2.10:5201`; the masquerade mark machinery
 *                 (KUBE-MARK-MASQ sets 0x4000, KUBE-POSTROUTING masquerades marked packets) and the
 *                 trailing KUBE-NODEPORTS jump (`-m addrtype --dst-type LOCAL`);
 *         filter: FORWARD → KUBE-FORWARD (ctstate INVALID drop, mark 0x4000 accept,
 *                 RELATED,ESTABLISHED accept) and the NEW-connection jumps to KUBE-SERVICES and
 *                 KUBE-EXTERNAL-SERVICES, as kube-proxy writes them.
 *       Chain names are kube-proxy's (KUBE-SVC-/KUBE-SEP- + 16 base32 characters of a SHA-256 of the
 *       service port name, protocol and endpoint). A traffic from a pod enters node1 from cni0, so
 *       nat PREROUTING is where its DNAT happens. The rules are loaded on both nodes, as kube-proxy
 *       runs on every node (on node2 they only turn on connection tracking and KUBE-FORWARD).
 *   Both sides also get DUMMY_SERVICES other Services (2 endpoints each, on pods that do not exist)
 *   so that the rule set looks like a real cluster's: in iptables mode KUBE-SERVICES is a linear list
 *   with one rule per service port, and the bench's Service is placed last in it, the worst case.
 *   podwire gets the same Services as Service + EndpointSlice manifests (its lookup is a hash, not
 *   a list). Only the first packet of a connection walks the nat table (conntrack carries the DNAT
 *   for the rest), so the rule count costs connection setup, not the per-packet throughput measured
 *   here; the per-packet cost on the kernel side is conntrack plus the filter FORWARD chain.
 *   Tests: iperf3 TCP single stream and 4 streams (-P 4) to 10.96.0.100:80. One lab at a time, order
 *   alternating every run, a ping to the backend's pod address and a 1 s TCP warm-up through the
 *   Service first; medians.
 *
 * How to read the figures
 *   - The ratio column (podwire / kernel), not the absolutes: the machine is shared and has 2 cores.
 *   - "connections through the Service" proves the Service path was taken: podwire's per-backend
 *     selection counter on node1, and the packet counter of the kernel's DNAT rule (nat sees only a
 *     connection's first packet, so it counts connections). iperf3 opens one control connection and
 *     one per stream, so each test adds 2 (-P 1) or 5 (-P 4).
 *
 * Safety: every namespace is the bench's own (unique prefix per lab); the iptables rules live only in
 * the node namespaces of the kernel lab and vanish with them; nothing is configured in the root
 * namespace; every command is time-bounded; everything is removed in `finally` and on SIGINT.
 */
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { labUp, labApply, labPods, kernelPodUp, type LabState } from '../src/lab/lab.ts';
import { adminRequest } from '../src/daemon/client.ts';
import {
  uniquePrefix, benchPodManifest, inFreshLab, installSignalHandlers, findDaemonPid, Results, progress, measureTcp, iperfTcp, waitReachable,
  must, sh, environment, loadavg, table, metricRows, parseBenchArgs, daemonRows, median, fmt, type Side, type Metric,
} from './lib.ts';
import { kernelPod } from './cross-node.ts';
import type { BenchOptions } from './same-node.ts';

export const CLUSTER_IP = '10.96.0.100';
export const SERVICE_PORT = 80;
const BACKEND_IP = '10.244.2.10', CLIENT_IP = '10.244.1.10', BACKEND_PORT = 5201;
const CLUSTER_CIDR = '10.244.0.0/16';
/** Other Services in the cluster (each with 2 endpoints): the size of the kube-proxy rule set. */
export const DUMMY_SERVICES = 400;

interface Svc { ns: string; name: string; portName: string; ip: string; port: number; endpoints: { ip: string; port: number }[] }

/** The dummy Services: 10.96.1.0 upwards, endpoints on pod addresses in 10.244.3.0/24+ that no pod has. */
function dummyServices(n: number): Svc[] {
  const out: Svc[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `10.96.${1 + (i >> 8)}.${i & 255}`;
    const e = (k: number) => ({ ip: `10.244.${3 + Math.floor((2 * i + k) / 250)}.${2 + ((2 * i + k) % 250)}`, port: 8080 });
    out.push({ ns: 'default', name: `dummy-${i}`, portName: 'http', ip, port: 80, endpoints: [e(0), e(1)] });
  }
  return out;
}

const BENCH_SVC: Svc = { ns: 'default', name: 'iperf', portName: '', ip: CLUSTER_IP, port: SERVICE_PORT, endpoints: [{ ip: BACKEND_IP, port: BACKEND_PORT }] };

// ------------------------------------------------------------------------------------------------
// podwire: manifests

function manifests(dummies: Svc[]): string {
  const docs = [
    benchPodManifest('bench-a', 'node1', { ip: CLIENT_IP, app: 'bench-client' }),
    benchPodManifest('bench-b', 'node2', { ip: BACKEND_IP, app: 'iperf-backend' }),
    `apiVersion: v1
kind: Service
metadata: { name: iperf, namespace: default }
spec:
  clusterIP: ${CLUSTER_IP}
  selector: { app: iperf-backend }
  ports: [{ port: ${SERVICE_PORT}, targetPort: ${BACKEND_PORT}, protocol: TCP }]
`,
  ];
  for (const s of dummies) {
    docs.push(`apiVersion: v1
kind: Service
metadata: { name: ${s.name}, namespace: ${s.ns} }
spec:
  clusterIP: ${s.ip}
  ports: [{ name: ${s.portName}, port: ${s.port}, targetPort: ${s.endpoints[0].port}, protocol: TCP }]
`, `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ${s.name}-x1
  namespace: ${s.ns}
  labels: { kubernetes.io/service-name: ${s.name} }
addressType: IPv4
ports: [{ name: ${s.portName}, port: ${s.endpoints[0].port}, protocol: TCP }]
endpoints:
${s.endpoints.map((e) => `- { addresses: ["${e.ip}"], conditions: { ready: true } }`).join('\n')}
`);
  }
  return docs.join('---\n');
}

async function podwireSide(lab: LabState, dummies: Svc[]): Promise<Side> {
  await labApply(lab, manifests(dummies), 'bench/clusterip.ts');
  const pods = await labPods(lab);
  const pa = pods.find((p) => p.name === 'bench-a')!, pb = pods.find((p) => p.name === 'bench-b')!;
  if (pb.ip !== BACKEND_IP) throw new Error(`backend pod got ${pb.ip}, expected ${BACKEND_IP}`);
  return {
    name: 'podwire', clientNs: pa.netns, serverNs: pb.netns, serverIp: CLUSTER_IP, targetPort: SERVICE_PORT,
    daemons: ['node1', 'node2'].map((node) => ({ lab, node, pid: findDaemonPid(lab, node) })),
  };
}

/** Connections node1's daemon sent to the backend through the bench's Service. */
async function podwireSelections(lab: LabState): Promise<number> {
  const n = lab.nodes.find((x) => x.name === 'node1')!;
  const v = await adminRequest<{ servicePort: string; backends: { address: string; selections: number }[] }[]>(n.socket, { op: 'services' }, 10_000);
  const sp = v.find((x) => x.servicePort.startsWith('default/iperf:'));
  return sp ? sp.backends.reduce((a, b) => a + b.selections, 0) : NaN;
}

// ------------------------------------------------------------------------------------------------
// kernel: kube-proxy's iptables rules

/** kube-proxy's chain-name hash: base32(sha256(s)) cut to 16 characters. */
function kpHash(s: string): string {
  const h = createHash('sha256').update(s).digest();
  const A = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, val = 0, out = '';
  for (const byte of h) {
    val = (val << 8) | byte; bits += 8;
    while (bits >= 5 && out.length < 16) { out += A[(val >>> (bits - 5)) & 31]; bits -= 5; }
    val &= (1 << bits) - 1;
  }
  return out;
}

/**
 * An iptables-restore input with kube-proxy's iptables-mode rules for `svcs` (the last one is
 * placed last in KUBE-SERVICES). Returns the text and the number of rules and of chains it holds.
 */
export function kubeProxyRules(svcs: Svc[]): { text: string; rules: number; chains: number; sepChain: string } {
  const natChains = ['KUBE-SERVICES', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS'];
  const nat: string[] = [
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
    '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000',
    '-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN',
    '-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0',
    '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
  ];
  const svcRules: string[] = [];
  let sepChain = '';
  for (const s of svcs) {
    const spn = `${s.ns}/${s.name}${s.portName ? `:${s.portName}` : ''}`;
    const svc = `KUBE-SVC-${kpHash(spn + 'tcp')}`;
    natChains.push(svc);
    svcRules.push(`-A KUBE-SERVICES -d ${s.ip}/32 -p tcp -m comment --comment "${spn} cluster IP" -m tcp --dport ${s.port} -j ${svc}`);
    nat.push(`-A ${svc} ! -s ${CLUSTER_CIDR} -d ${s.ip}/32 -p tcp -m comment --comment "${spn} cluster IP" -m tcp --dport ${s.port} -j KUBE-MARK-MASQ`);
    s.endpoints.forEach((e, k) => {
      const sep = `KUBE-SEP-${kpHash(spn + 'tcp' + `${e.ip}:${e.port}`)}`;
      natChains.push(sep);
      const left = s.endpoints.length - k;
      const stat = left > 1 ? ` -m statistic --mode random --probability ${(1 / left).toFixed(11)}` : '';
      nat.push(`-A ${svc} -m comment --comment "${spn} -> ${e.ip}:${e.port}"${stat} -j ${sep}`);
      nat.push(`-A ${sep} -s ${e.ip}/32 -m comment --comment ${spn} -j KUBE-MARK-MASQ`);
      nat.push(`-A ${sep} -p tcp -m comment --comment ${spn} -m tcp -j DNAT --to-destination ${e.ip}:${e.port}`);
      if (s === BENCH_SVC) sepChain = sep;
    });
  }
  svcRules.push('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');
  const filterChains = ['KUBE-FORWARD', 'KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL'];
  const filter = [
    '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
    '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
    '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES',
    '-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
    '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  ];
  const text = [
    '*filter', ...filterChains.map((c) => `:${c} - [0:0]`), ...filter, 'COMMIT',
    '*nat', ...natChains.map((c) => `:${c} - [0:0]`), ...nat, ...svcRules, 'COMMIT', '',
  ].join('\n');
  return { text, rules: filter.length + nat.length + svcRules.length, chains: filterChains.length + natChains.length, sepChain };
}

async function kernelSide(lab: LabState, rules: string): Promise<Side> {
  const a = await kernelPodUp(lab, lab.nodes[0], kernelPod('a'), CLIENT_IP);
  const b = await kernelPodUp(lab, lab.nodes[1], kernelPod('b'), BACKEND_IP);
  for (const n of lab.nodes) await must('ip', ['netns', 'exec', n.netns, 'iptables-restore', '-w', '5'], 60_000, rules);
  return { name: 'kernel', clientNs: a, serverNs: b, serverIp: CLUSTER_IP, targetPort: SERVICE_PORT, daemons: [] };
}

/** Packets (= connections: nat sees only first packets) that hit the DNAT rule of the bench's Service on node1. */
async function kernelDnatHits(lab: LabState, sep: string): Promise<number> {
  const out = await must('ip', ['netns', 'exec', lab.nodes[0].netns, 'iptables', '-w', '5', '-t', 'nat', '-L', sep, '-n', '-v', '-x'], 30_000);
  const line = out.split('\n').find((l) => /DNAT/.test(l));
  return line ? Number(line.trim().split(/\s+/)[0]) : NaN;
}

// ------------------------------------------------------------------------------------------------

/** Ping the backend's own address (ARP/FDB), then 1 s of TCP through the Service (JIT, conntrack). */
async function warmUp(side: Side): Promise<void> {
  await waitReachable(side.clientNs, BACKEND_IP, 10_000);
  await iperfTcp(side.clientNs, side.serverNs, side.serverIp, 1, 1, side.targetPort);
}

export async function clusterIp(o: BenchOptions, r = new Results()): Promise<string> {
  const loadStart = loadavg();
  const dummies = dummyServices(DUMMY_SERVICES);
  const kp = kubeProxyRules([...dummies, BENCH_SVC]);
  const iptVersion = (await sh('iptables', ['--version'], 5_000)).stdout.trim() || 'iptables ?';
  const via: Record<string, number[]> = { podwire: [], kernel: [] };
  for (let run = 1; run <= o.runs; run++) {
    const order: ('podwire' | 'kernel')[] = run % 2 === 1 ? ['podwire', 'kernel'] : ['kernel', 'podwire'];
    for (const which of order) {
      const prefix = uniquePrefix(which === 'podwire' ? 'bn' : 'bk');
      progress(`clusterip run ${run}/${o.runs}: ${which} lab ${prefix}`);
      await inFreshLab(prefix, r, `${which} run ${run}`, async () => {
        const lab = await labUp({ nodes: 2, prefix, servePorts: false, kernelNodes: which === 'kernel' ? ['node1', 'node2'] : [] });
        const side = which === 'podwire' ? await podwireSide(lab, dummies) : await kernelSide(lab, kp.text);
        await warmUp(side);
        await measureTcp(side, r, o.seconds, 1);
        await measureTcp(side, r, o.seconds, 4);
        via[which].push(which === 'podwire' ? await podwireSelections(lab) : await kernelDnatHits(lab, kp.sepChain));
      });
    }
  }

  const m: Metric[] = [
    { name: 'TCP 1 stream to ClusterIP (Gbit/s)', podwire: r.get('podwire:tcp1:gbps'), kernel: r.get('kernel:tcp1:gbps') },
    { name: 'TCP 4 streams to ClusterIP (Gbit/s)', podwire: r.get('podwire:tcp4:gbps'), kernel: r.get('kernel:tcp4:gbps') },
    { name: 'TCP 1 stream retransmits', podwire: r.get('podwire:tcp1:retr'), kernel: r.get('kernel:tcp1:retr'), digits: 0, ratio: false },
    { name: 'connections through the Service per run', podwire: via.podwire, kernel: via.kernel, digits: 0, ratio: false },
  ];
  const out: string[] = [];
  out.push(`== ClusterIP: pod on node1 -> ${CLUSTER_IP}:${SERVICE_PORT} -> only backend ${BACKEND_IP}:${BACKEND_PORT} on node2 (podwire vs kernel VXLAN + kube-proxy iptables) ==`);
  out.push(await environment());
  out.push(`runs: ${o.runs} x ${o.seconds} s per test, one lab at a time, order alternating, medians`);
  out.push(`kube-proxy baseline: ${iptVersion}, iptables mode, ${DUMMY_SERVICES} other Services x 2 endpoints + the bench's (last in KUBE-SERVICES): ${kp.rules} rules in ${kp.chains} chains, loaded in both node namespaces; podwire gets the same ${DUMMY_SERVICES} Services as manifests`);
  out.push(`load average at start: ${loadStart}`);
  out.push(`samples (TCP 1 stream): podwire ${r.get('podwire:tcp1:gbps').length}, kernel ${r.get('kernel:tcp1:gbps').length}`);
  out.push('');
  out.push(table(metricRows(m)));
  out.push('');
  out.push('podwire daemons (from their counters and /proc/<pid>/stat; node1 does the DNAT and encapsulates, node2 decapsulates):');
  out.push(table(daemonRows(r, ['node1', 'node2'], [['tcp1', 'TCP 1 stream'], ['tcp4', 'TCP 4 streams']])));
  out.push('');
  out.push(`load average at end: ${loadavg()}`);
  if (via.podwire.length && !(median(via.podwire) > 0)) r.notes.push(`podwire: no connection selected the Service's backend (${fmt(median(via.podwire), 0)})`);
  if (via.kernel.length && !(median(via.kernel) > 0)) r.notes.push(`kernel: the DNAT rule saw no connection (${fmt(median(via.kernel), 0)})`);
  for (const note of r.notes) out.push(`note: ${note}`);
  return out.join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  installSignalHandlers();
  const o = parseBenchArgs(process.argv.slice(2));
  clusterIp(o).then((t) => { console.log(t); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
}
