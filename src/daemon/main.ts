/**
 * `podwire daemon`: run the data plane for one node in the current network namespace.
 *
 *   podwire daemon --node node1 --manifests nodes.yaml [--cluster-cidr 10.244.0.0/16] [--vni 1]
 *                  [--vxlan-port 4789] [--netns-prefix pw-] [--admin-socket /run/podwire/node1.sock]
 *                  [--serve-ports] [--host-if podwire0] [--underlay-if eth1] [--flow-log FILE|-]
 *                  [--metrics-addr 127.0.0.1:9402] [--offload auto|off]
 *                  [--busy-poll MICROSECONDS] [--tunnel-gso auto|off]
 *
 * The manifests must include this node's Node object (its pod CIDR and underlay address); other Node
 * objects make the rest of the cluster known. SIGTERM/SIGINT remove every pod this daemon created.
 */
import { parseArgs } from 'node:util';
import * as fs from 'node:fs';
import { Daemon } from './daemon.ts';
import * as v8 from 'node:v8';

export async function daemonMain(argv: string[]): Promise<void> {
  // V8 optimises a function once it has run enough bytecode (its "interrupt budget"). The data path
  // is a few small, hot functions, but at low packet rates (a ping every 10 ms, the first seconds
  // of a lab) the default budget leaves them in the baseline tier for tens of seconds, at ~10x the
  // cost per packet. An 8x smaller budget gets them optimised after a few hundred packets. Set
  // before the first packet, so every data-path function starts with it.
  v8.setFlagsFromString('--interrupt-budget=8192');
  const { values } = parseArgs({
    args: argv,
    options: {
      node: { type: 'string' },
      manifests: { type: 'string', multiple: true },
      'cluster-cidr': { type: 'string', default: '10.244.0.0/16' },
      vni: { type: 'string', default: '1' },
      'vxlan-port': { type: 'string', default: '4789' },
      'netns-prefix': { type: 'string', default: 'pw-' },
      'admin-socket': { type: 'string' },
      'serve-ports': { type: 'boolean', default: false },
      'host-if': { type: 'string', default: 'podwire0' },
      'underlay-if': { type: 'string' },
      'flow-log': { type: 'string' },
      'metrics-addr': { type: 'string' },
      offload: { type: 'string', default: 'auto' },
      'busy-poll': { type: 'string', default: '0' },
      'tunnel-gso': { type: 'string', default: 'auto' },
    },
    strict: true,
  });
  if (!values.node) throw new Error('--node is required');
  if (!values.manifests?.length) throw new Error('--manifests is required (a file with at least this node\'s Node object)');
  const vni = Number(values.vni), vxlanPort = Number(values['vxlan-port']);
  if (!Number.isInteger(vni) || vni < 0 || vni > 0xffffff) throw new Error(`--vni ${values.vni}: must be an integer 0..16777215`);
  if (!Number.isInteger(vxlanPort) || vxlanPort < 1 || vxlanPort > 65535) throw new Error(`--vxlan-port ${values['vxlan-port']}: must be 1..65535`);
  if (values.offload !== 'auto' && values.offload !== 'off') throw new Error(`--offload ${values.offload}: must be auto or off`);
  if (values['tunnel-gso'] !== 'auto' && values['tunnel-gso'] !== 'off') throw new Error(`--tunnel-gso ${values['tunnel-gso']}: must be auto or off`);
  const busyPollMicros = Number(values['busy-poll']);
  if (!Number.isInteger(busyPollMicros) || busyPollMicros < 0 || busyPollMicros > 100_000) throw new Error(`--busy-poll ${values['busy-poll']}: must be an integer number of microseconds, 0..100000 (0 = off)`);
  const manifestText = values.manifests.map((f) => fs.readFileSync(f, 'utf8')).join('\n---\n');
  const daemon = new Daemon({
    nodeName: values.node, manifestText, clusterCidr: values['cluster-cidr']!, vni, vxlanPort,
    netnsPrefix: values['netns-prefix']!, adminSocket: values['admin-socket'] ?? `/run/podwire/${values.node}.sock`,
    servePorts: values['serve-ports']!, hostIf: values['host-if']!, underlayIf: values['underlay-if'],
    flowLog: values['flow-log'], metricsAddr: values['metrics-addr'],
    offload: values.offload, busyPollMicros, tunnelGso: values['tunnel-gso'],
  });
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`[podwire ${values.node}] ${sig}: removing pods and stopping\n`);
    await daemon.stop().catch((e) => process.stderr.write(`${e}\n`));
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  try {
    await daemon.start();
  } catch (e) {
    await daemon.stop().catch(() => undefined);
    throw e;
  }
  process.stdout.write('ready\n');
}
