/**
 * The userspace floor: the cross-node topology with a minimal relay per node in place of podwire's
 * daemon, so that podwire's ping can be split into what the design costs and what podwire adds.
 *
 * Why: podwire's cross-node ping is a chain of four process wake-ups (the client's echo wakes
 * node1's daemon, which wakes node2's, whose reply wakes node1's again, which wakes the client),
 * where the kernel's VXLAN answers the echo in one softirq pass without waking anybody. Two relays
 * do the hop with nothing else in it:
 *   - `c`: bench/tools/floor-relay.cc, TAP <-> UDP in C, one frame per system call, no lookups:
 *     what any process-per-node data plane pays on this machine;
 *   - `node`: bench/tools/floor-relay-node.ts, the same hop in Node with podwire's addon (libuv
 *     wake-up, N-API, batched I/O, a few lines of JS): what the runtime adds on top.
 * What podwire measures beyond the `node` relay is its own pipeline. Each runs sleeping in epoll
 * (podwire's default) or spinning for 20 ms after traffic (as `--busy-poll 20000` does).
 *
 * Topology (prefix `bf` + 4 hex digits; the OVS bench's layout): an underlay namespace with bridge
 * br0; per node a namespace with `underlay0` (192.168.56.1N/24) on br0 and one relay; per node a pod
 * namespace whose eth0 is that relay's TAP (MTU 1450), 10.244.1.10/16 and 10.244.2.10/16: one L2
 * segment stretched over the tunnel (UDP port 4789, VNI 1), so ARP crosses it like any frame.
 *
 * The C relay is compiled with g++ on first use; without a compiler the bench skips its labs and
 * says why in a note. Safety: every namespace is the bench's own and removed (with whatever runs inside) in
 * `floorDown`, or by the caller's labDown of the same prefix; the relays also exit by themselves
 * after 10 minutes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TSX_LOADER } from '../src/lab/lab.ts';
import { sweepNetns, ipIn, sh, twoNodeUnderlay, type Side } from './lib.ts';

const TOOLS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tools');
const SOURCE = path.join(TOOLS, 'floor-relay.cc');
const NODE_RELAY = path.join(TOOLS, 'floor-relay-node.ts');
const RELAY_MAX_SECONDS = 600;

let compiled: Promise<string> | undefined;

/** Compile the relay once per process into a temporary directory; its path, or a rejection saying why not. */
export function floorRelayBinary(): Promise<string> {
  compiled ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'podwire-floor-'));
    process.once('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
    const bin = path.join(dir, 'floor-relay');
    if ((await sh('g++', ['--version'], 10_000)).code !== 0) throw new Error('g++ not found (Debian: apt-get install g++)');
    const r = await sh('g++', ['-O2', '-Wall', '-o', bin, SOURCE], 120_000);
    if (r.code !== 0) throw new Error(`g++ could not build ${path.basename(SOURCE)}: ${(r.stderr.trim() || `exit ${r.code}`).split('\n')[0]}`);
    return bin;
  })();
  return compiled;
}

export type FloorRelay = 'c' | 'node';
export interface FloorLab { prefix: string; side: Side; relays: ChildProcess[] }

/** Build the topology in the header with `relay` sleeping (`spin` false) or spinning; `name` names the side. */
export async function floorUp(prefix: string, relay: FloorRelay, spin: boolean, name: string): Promise<FloorLab> {
  const cmd = relay === 'c' ? [await floorRelayBinary()] : [process.execPath, '--import', TSX_LOADER, NODE_RELAY];
  // The pods are twoNodeUnderlay's: <prefix>-node1-bench-a (client) and <prefix>-node2-bench-b.
  const lab: FloorLab = { prefix, relays: [], side: { name, clientNs: `${prefix}-node1-bench-a`, serverNs: `${prefix}-node2-bench-b`, serverIp: '10.244.2.10', daemons: [] } };
  try {
    await build(lab, cmd, spin);
  } catch (e) {
    await floorDown(lab);
    throw e;
  }
  return lab;
}

async function build(lab: FloorLab, cmd: string[], spin: boolean): Promise<void> {
  for (const [k, b] of (await twoNodeUnderlay(lab.prefix)).entries()) {
    const i = k + 1, node = b.netns, pod = b.pod, self = b.underlayIp, peer = b.peerIp;
    await ipIn(node, [`addr add ${self}/24 dev underlay0`]);
    const relay = spawn('ip', ['netns', 'exec', node, ...cmd, 'floor0', self, peer, '4789', '1', String(RELAY_MAX_SECONDS), ...(spin ? ['spin'] : [])], { stdio: ['ignore', 'pipe', 'pipe'] });
    lab.relays.push(relay);
    let stderr = '';
    relay.stderr!.on('data', (d) => { stderr += String(d); });
    relayStderr.set(relay, () => stderr.trim());
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`floor relay on node${i} did not start in 20 s`)), 20_000);
      relay.once('error', (e) => { clearTimeout(timer); reject(new Error(`floor relay on node${i}: ${e.message}`)); });
      relay.stdout!.once('data', () => { clearTimeout(timer); resolve(); });
      relay.once('exit', () => { clearTimeout(timer); reject(new Error(`floor relay on node${i} ${exitText(relay)} before it was ready: ${stderr.trim()}`)); });
    });
    // The TAP was created in the node's namespace; the relay keeps its fd while it moves to the pod.
    await ipIn(node, [`link set floor0 netns ${pod}`]);
    await ipIn(pod, ['link set lo up', 'link set floor0 name eth0', 'link set eth0 mtu 1450 up', `addr add 10.244.${i}.10/16 dev eth0`]);
  }
}

const relayStderr = new WeakMap<ChildProcess, () => string>();
const exitText = (c: ChildProcess): string => c.signalCode ? `was killed (${c.signalCode})` : `exited (${c.exitCode})`;

/** Throw if a relay has died since it was ready (a measurement through it would be a partial one). */
export function floorCheck(lab: FloorLab): void {
  lab.relays.forEach((r, i) => {
    if (r.exitCode !== null || r.signalCode !== null) throw new Error(`floor relay on node${i + 1} ${exitText(r)}: ${relayStderr.get(r)?.() ?? ''}`);
  });
}

/** Stop the relays and remove every namespace of the prefix. */
export async function floorDown(lab: { prefix: string; relays?: ChildProcess[] }): Promise<void> {
  for (const r of lab.relays ?? []) r.kill('SIGKILL');
  await sweepNetns(lab.prefix);   // also SIGKILLs whatever still runs inside
}
