/**
 * `podwire`: the command line.
 *
 *   podwire daemon --node NAME --manifests FILE ...      run a node's data plane (see daemon/main.ts)
 *   podwire lab up [--nodes N] [--name P] [--mtu M] [--kernel-node NAME] [-f FILE|DIR]...
 *   podwire lab status | check | down [--all] | apply -f FILE | delete KIND/[NS/]NAME
 *   podwire lab exec POD -- COMMAND...                    run a command inside a pod's namespace
 *   podwire lab show counters|fdb|services|conntrack|policy|status [NODE]   a daemon's tables
 *   podwire policy explain FROM TO PORT/PROTO             the static NetworkPolicy verdict and its reasons
 *   podwire trace [--pod P|--ip IP] [--proto P] [--port N] [--new] [--drops] [--count N] [--seconds S]
 *   podwire trace inject --from POD --to POD|IP [--proto P] [--port N]
 *   podwire matrix [--ports 80/TCP,81/UDP] [--expected] [--json]   the connectivity truth table
 *   podwire capture POD | --overlay [--node N] [--decap] [-w FILE] [--count N] [--seconds S]
 *   podwire apply -f FILE --socket PATH                   talk to one daemon directly
 *   podwire show status|counters|fdb --socket PATH
 */
import { parseArgs } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { daemonMain } from '../daemon/main.ts';
import { adminRequest } from '../daemon/client.ts';
import { labUp, labDown, loadLab, listLabs, labApply, labPods, findPod, probeTcp, type LabPod } from '../lab/lab.ts';
import { formatTrace, type TraceRecord } from '../dataplane/trace.ts';
import { probeMatrix, expectedMatrix, formatMatrix, matrixMismatches, type MatrixProbe } from '../lab/matrix.ts';

function readManifestArgs(files: string[] | undefined): { text: string; source: string }[] {
  const out: { text: string; source: string }[] = [];
  for (const f of files ?? []) {
    const st = fs.statSync(f);
    const list = st.isDirectory()
      ? fs.readdirSync(f).filter((x) => /\.ya?ml$/.test(x)).sort().map((x) => path.join(f, x))
      : [f];
    for (const file of list) out.push({ text: fs.readFileSync(file, 'utf8'), source: file });
  }
  return out;
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join('  ').trimEnd()).join('\n');
}

export function podTable(pods: LabPod[]): string {
  const rows = [['NODE', 'POD', 'IP', 'PORTS', 'LABELS']];
  for (const p of pods) {
    rows.push([p.node, `${p.namespace}/${p.name}`, p.ip,
      p.ports.map((x) => `${x.containerPort}/${x.protocol}${x.name ? `(${x.name})` : ''}`).join(',') || '-',
      Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(',')]);
  }
  return table(rows);
}

/** Probe every pod from every pod on its first TCP port; prints the matrix (rows from, columns to). */
export async function connectivity(pods: LabPod[]): Promise<{ text: string; failures: number }> {
  const targets = pods.filter((p) => p.ports.some((x) => x.protocol === 'TCP'));
  const short = (p: LabPod) => `${p.namespace === 'default' ? '' : p.namespace + '/'}${p.name}`;
  const rows = [['from \\ to', ...targets.map(short)]];
  let failures = 0;
  for (const from of pods) {
    const probes = targets.map(async (to) => {
      const port = to.ports.find((x) => x.protocol === 'TCP')!.containerPort;
      const got = await probeTcp(from.netns, to.ip, port);
      if (got === to.name) return '✓';
      failures++;
      return got ? `? ${got}` : '✗';
    });
    rows.push([short(from), ...(await Promise.all(probes))]);
  }
  return { text: table(rows), failures };
}

async function lab(argv: string[]): Promise<number> {
  const sub = argv[0];
  const rest = argv.slice(1);
  const dash = rest.indexOf('--');
  const { values, positionals } = parseArgs({
    args: dash >= 0 ? rest.slice(0, dash) : rest,
    allowPositionals: true,
    options: {
      name: { type: 'string' }, nodes: { type: 'string' }, mtu: { type: 'string' }, file: { type: 'string', short: 'f', multiple: true },
      all: { type: 'boolean' }, 'kernel-node': { type: 'string', multiple: true }, json: { type: 'boolean' }, 'no-check': { type: 'boolean' },
    },
  });
  switch (sub) {
    case 'up': {
      const t0 = Date.now();
      const s = await labUp({
        nodes: values.nodes ? Number(values.nodes) : 2, prefix: values.name, mtu: values.mtu ? Number(values.mtu) : undefined,
        kernelNodes: values['kernel-node'], progress: (l) => console.log(`… ${l}`),
      });
      try {
        for (const m of readManifestArgs(values.file)) {
          console.log(`… applying ${m.source}`);
          for (const line of await labApply(s, m.text, m.source)) console.log(`  ${line}`);
        }
      } catch (e) {
        console.error(`error: ${(e as Error).message}\n(the lab ${s.prefix} is up; fix the manifest and \`podwire lab apply -f\`, or \`podwire lab down\`)`);
        return 1;
      }
      const pods = await labPods(s);
      console.log(`\nlab ${s.prefix} is up in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${s.nodes.length} node(s), ${pods.length} pod(s)\n`);
      console.log(table([['NODE', 'UNDERLAY', 'POD CIDR', 'OVERLAY', 'NETNS'], ...s.nodes.map((n) => [n.name, n.underlayIp, n.podCIDR, n.overlay, n.netns])]));
      if (pods.length) {
        console.log(`\n${podTable(pods)}`);
        if (!values['no-check']) {
          console.log('\nconnectivity (TCP, first declared port; each server answers with its pod name):');
          const c = await connectivity(pods);
          console.log(c.text);
          console.log(c.failures === 0 ? 'all pods reach all pods' : `${c.failures} probe(s) failed`);
        }
      }
      console.log(`\nexplore:  podwire lab exec <pod> -- ping -c1 <ip>   |   podwire lab status   |   podwire lab show counters\nremove:   podwire lab down`);
      return 0;
    }
    case 'down': {
      const names = values.all ? listLabs() : [loadLab(values.name).prefix];
      for (const n of names) {
        const removed = await labDown(n);
        console.log(`lab ${n}: removed ${removed.length} namespace(s)`);
      }
      return 0;
    }
    case 'status': {
      const s = loadLab(values.name);
      const pods = await labPods(s);
      if (values.json) { console.log(JSON.stringify({ lab: s, pods }, null, 2)); return 0; }
      console.log(`lab ${s.prefix}: ${s.nodes.map((n) => `${n.name} ${n.underlayIp} ${n.podCIDR}`).join('; ')}\n`);
      console.log(pods.length ? podTable(pods) : 'no pods');
      return 0;
    }
    case 'check': {
      const s = loadLab(values.name);
      const c = await connectivity(await labPods(s));
      console.log(c.text);
      return c.failures === 0 ? 0 : 1;
    }
    case 'apply': {
      const s = loadLab(values.name);
      for (const m of readManifestArgs(values.file)) for (const line of await labApply(s, m.text, m.source)) console.log(line);
      return 0;
    }
    case 'delete': {
      const s = loadLab(values.name);
      for (const n of s.nodes.filter((x) => x.overlay === 'podwire')) {
        const res = await adminRequest<string[]>(n.socket, { op: 'delete', keys: positionals.map(normalizeKey) });
        if (n === s.nodes[0]) for (const l of res) console.log(l);
      }
      return 0;
    }
    case 'exec': {
      const s = loadLab(values.name);
      const pod = await findPod(s, positionals[0] ?? '');
      const cmd = dash >= 0 ? rest.slice(dash + 1) : positionals.slice(1);
      if (!cmd.length) throw new Error('usage: podwire lab exec POD -- COMMAND...');
      const r = spawnSync('ip', ['netns', 'exec', pod.netns, ...cmd], { stdio: 'inherit' });
      return r.status ?? 1;
    }
    case 'show': {
      const s = loadLab(values.name);
      const what = positionals[0] ?? 'counters';
      const nodes = positionals[1] ? s.nodes.filter((n) => n.name === positionals[1]) : s.nodes.filter((n) => n.overlay === 'podwire');
      for (const n of nodes) console.log(`# ${n.name}\n${JSON.stringify(await adminRequest(n.socket, { op: what }), null, 2)}`);
      return 0;
    }
    case 'explain': {
      // podwire lab explain FROM TO PORT/PROTO — the static verdict of the compiled NetworkPolicy.
      const s = loadLab(values.name);
      const [from, to, portProto] = positionals;
      if (!from || !to || !portProto) throw new Error('usage: podwire policy explain FROM TO PORT/PROTO (pods as [namespace/]name, or addresses)');
      const addr = async (ref: string) => (/^\d+\.\d+\.\d+\.\d+$/.test(ref) ? ref : (await findPod(s, ref)).ip);
      const [port, proto = 'TCP'] = portProto.split('/');
      const protoNum = { TCP: 6, UDP: 17, SCTP: 132, ICMP: 1 }[proto.toUpperCase()];
      if (protoNum === undefined) throw new Error(`protocol ${proto}: TCP, UDP, SCTP or ICMP`);
      const node = s.nodes.find((n) => n.overlay === 'podwire')!;
      const res = await adminRequest(node.socket, { op: 'explain', src: await addr(from), dst: await addr(to), proto: protoNum, dport: Number(port) });
      console.log(JSON.stringify(res, null, 2));
      return 0;
    }
    default:
      throw new Error(`unknown lab command ${JSON.stringify(sub)}: up, down, status, check, apply, delete, exec, show, explain`);
  }
}

const PROTO_NUM: Record<string, number> = { tcp: 6, udp: 17, sctp: 132, icmp: 1 };

/**
 * podwire trace [--pod P | --ip IP] [--proto P] [--port N] [--new] [--drops] [--count N] [--seconds S]
 *   follows real packets on every node at once and prints each node's stages in time order;
 * podwire trace inject --from POD --to POD|IP [--proto P] [--port N]
 *   follows a synthetic first packet through the stages without sending it, node after node.
 */
async function trace(argv: string[]): Promise<number> {
  const inject = argv[0] === 'inject';
  const { values } = parseArgs({
    args: inject ? argv.slice(1) : argv,
    options: {
      name: { type: 'string' }, pod: { type: 'string' }, ip: { type: 'string' }, proto: { type: 'string' }, port: { type: 'string' },
      new: { type: 'boolean' }, drops: { type: 'boolean' }, count: { type: 'string' }, seconds: { type: 'string' },
      from: { type: 'string' }, to: { type: 'string' }, json: { type: 'boolean' },
    },
  });
  const s = loadLab(values.name);
  const nodes = s.nodes.filter((n) => n.overlay === 'podwire');
  const proto = values.proto ? PROTO_NUM[values.proto.toLowerCase()] : undefined;
  if (values.proto && proto === undefined) throw new Error(`--proto ${values.proto}: tcp, udp, sctp or icmp`);
  const print = (records: TraceRecord[]) => {
    if (values.json) console.log(JSON.stringify(records, null, 2));
    else for (const r of records) console.log(formatTrace(r) + '\n');
  };
  if (inject) {
    if (!values.from || !values.to) throw new Error('usage: podwire trace inject --from POD --to POD|IP [--proto tcp|udp|icmp] [--port N]');
    const from = await findPod(s, values.from);
    const to = /^\d+\.\d+\.\d+\.\d+$/.test(values.to) ? values.to : (await findPod(s, values.to)).ip;
    type Res = { records: TraceRecord[]; overlay?: { to: string; from: string; datagramHex: string } };
    const node = s.nodes.find((n) => n.name === from.node)!;
    let res = await adminRequest<Res>(node.socket, { op: 'inject', pod: `${from.namespace}/${from.name}`, dst: to, proto: proto ?? 6, dport: Number(values.port ?? 80) });
    print(res.records);
    // Continue on the receiving node, as the VXLAN datagram would arrive there.
    for (let hop = 0; res.overlay && hop < 4; hop++) {
      const next = s.nodes.find((n) => n.underlayIp === res.overlay!.to);
      if (!next || next.overlay !== 'podwire') { console.log(`(continues on ${res.overlay.to}, which is not a podwire node)`); break; }
      res = await adminRequest<Res>(next.socket, { op: 'inject', overlayFrom: res.overlay.from, datagramHex: res.overlay.datagramHex });
      print(res.records);
    }
    return 0;
  }
  const ip = values.ip ?? (values.pod ? (await findPod(s, values.pod)).ip : undefined);
  const filter = { ip, proto, port: values.port ? Number(values.port) : undefined, newOnly: values.new ?? false, dropsOnly: values.drops ?? false };
  const count = Number(values.count ?? 10), seconds = Number(values.seconds ?? 10);
  console.error(`tracing ${JSON.stringify(filter)} on ${nodes.map((n) => n.name).join(', ')} for up to ${count} packet(s) per node or ${seconds} s…`);
  const all = (await Promise.all(nodes.map((n) => adminRequest<TraceRecord[]>(n.socket, { op: 'trace', filter, count, seconds }, (seconds + 5) * 1000)))).flat();
  all.sort((a, b) => a.timeUs - b.timeUs);
  print(all);
  return 0;
}

/**
 * podwire matrix [--ports 80/TCP,81/UDP] [--expected] [--json]
 *   probes every pod from every pod with real connections and prints the truth table the way
 *   Kubernetes' network-policy e2e tests do; --expected also asks the compiled policy for the static
 *   verdicts and marks every cell where reality differs.
 */
async function matrix(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { name: { type: 'string' }, ports: { type: 'string' }, expected: { type: 'boolean' }, json: { type: 'boolean' }, timeout: { type: 'string' } } });
  const s = loadLab(values.name);
  const pods = await labPods(s);
  const probes: MatrixProbe[] = (values.ports ?? '80/TCP').split(',').map((x) => {
    const [port, proto = 'TCP'] = x.split('/');
    const protocol = proto.toUpperCase();
    if (protocol !== 'TCP' && protocol !== 'UDP') throw new Error(`--ports ${x}: TCP or UDP`);
    return { port: Number(port), protocol };
  });
  const observed = await probeMatrix(s, pods, probes, { timeoutMs: values.timeout ? Number(values.timeout) : undefined });
  const expected = values.expected ? await expectedMatrix(s, pods, probes) : undefined;
  if (values.json) console.log(JSON.stringify({ observed, expected }, null, 2));
  else console.log(formatMatrix(observed, { expected }));
  return expected && matrixMismatches(observed, expected).length ? 1 : 0;
}

/** podwire capture POD|--overlay [--node N] [--decap] [-w FILE] [--count N] [--seconds S] */
async function capture(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: {
    name: { type: 'string' }, overlay: { type: 'boolean' }, node: { type: 'string' }, decap: { type: 'boolean' },
    write: { type: 'string', short: 'w' }, count: { type: 'string' }, seconds: { type: 'string' } } });
  const s = loadLab(values.name);
  let nodeName = values.node, pod: string | undefined;
  if (!values.overlay) {
    const p = await findPod(s, positionals[0] ?? '');
    nodeName = p.node; pod = `${p.namespace}/${p.name}`;
  }
  const node = s.nodes.find((n) => n.name === (nodeName ?? s.nodes[0].name));
  if (!node) throw new Error(`no node ${nodeName}`);
  const file = path.resolve(values.write ?? `podwire-${pod ? pod.replace('/', '-') : `${node.name}-overlay`}.pcap`);
  const seconds = Number(values.seconds ?? 10);
  console.error(`capturing ${pod ?? `the overlay of ${node.name}`} to ${file} for up to ${values.count ?? 1000} packets or ${seconds} s…`);
  const res = await adminRequest<{ packets: number; dropped: number }>(node.socket, { op: 'capture', pod, overlay: values.overlay, decap: values.decap, file, count: Number(values.count ?? 1000), seconds }, (seconds + 5) * 1000);
  console.log(`${res.packets} packet(s) written to ${file}${res.dropped ? ` (${res.dropped} dropped: the disk fell behind)` : ''}; read it with: tshark -r ${file}`);
  return 0;
}

function normalizeKey(k: string): string {
  const [kind, ...rest] = k.split('/');
  const norm = { pod: 'Pod', pods: 'Pod', node: 'Node', nodes: 'Node', namespace: 'Namespace', ns: 'Namespace' }[kind.toLowerCase()] ?? kind;
  return [norm, ...rest].join('/');
}

async function main(argv: string[]): Promise<number> {
  const cmd = argv[0];
  switch (cmd) {
    case 'daemon': await daemonMain(argv.slice(1)); return -1;
    case 'lab': return lab(argv.slice(1));
    case 'trace': return trace(argv.slice(1));
    case 'matrix': return matrix(argv.slice(1));
    case 'capture': return capture(argv.slice(1));
    case 'policy':
      if (argv[1] !== 'explain') throw new Error('usage: podwire policy explain FROM TO PORT/PROTO');
      return lab(['explain', ...argv.slice(2)]);
    case 'apply': case 'show': {
      const { values, positionals } = parseArgs({ args: argv.slice(1), allowPositionals: true, options: { socket: { type: 'string' }, file: { type: 'string', short: 'f', multiple: true } } });
      if (!values.socket) throw new Error('--socket is required');
      if (cmd === 'apply') {
        for (const m of readManifestArgs(values.file)) for (const l of (await adminRequest<{ lines: string[] }>(values.socket, { op: 'apply', yaml: m.text, source: m.source })).lines) console.log(l);
      } else console.log(JSON.stringify(await adminRequest(values.socket, { op: positionals[0] ?? 'status' }), null, 2));
      return 0;
    }
    default:
      console.error('usage: podwire daemon|lab|apply|show ... (see the README)');
      return 2;
  }
}

main(process.argv.slice(2)).then((code) => { if (code >= 0) process.exit(code); }, (e) => {
  console.error(`error: ${(e as Error).message}`);
  process.exit(1);
});
