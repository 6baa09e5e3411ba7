/**
 * The pod agent: the "application" running inside each lab pod.
 *
 * podwire models a pod's network, not its processes, but a network is only testable if something
 * answers on it. The lab daemon starts one agent per pod, inside the pod's network namespace:
 *
 *   ip netns exec <ns> node --import tsx src/lab/pod-agent.ts \
 *       --name web-1 --namespace default --tcp 80,8080 --udp 53 [--sctp 9000] [--bind 0.0.0.0]
 *
 * and the agent serves every container port the manifest declares, in a way that lets a test see
 * both *who* answered and *that the bytes arrived intact*:
 *
 *   - TCP: each accepted connection first receives `<podname>\n`, then everything the peer sends is
 *     echoed back until the peer half-closes (FIN); then the agent finishes its side. Echoing uses
 *     `socket.pipe(socket)`, so a fast sender is slowed by TCP flow control instead of filling the
 *     agent's memory: 100 MB through a Service is fine.
 *   - UDP: each datagram gets exactly one reply: `<podname>\n` followed by the payload, cut to the
 *     largest UDP/IPv4 payload (65507 bytes).
 *   - SCTP: Node.js has no SCTP sockets, so an SCTP port is reported on stderr and not served. The
 *     agent does not fail: the rest of the pod still works.
 *
 * Protocol with the daemon: once every listener is bound the agent prints one line `ready` on
 * stdout. A bind failure (say EADDRINUSE) is reported on stderr, naming the port, with exit code 1;
 * a bad command line exits 2. SIGTERM or SIGINT closes every socket and exits 0.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { parseArgs } from 'node:util';

/** Largest UDP payload that fits one IPv4 datagram: 65535 - 20 (IPv4) - 8 (UDP). */
const MAX_UDP_PAYLOAD = 65507;

interface Options {
  name: string;
  namespace: string;
  bind: string;
  tcp: number[];
  udp: number[];
  sctp: number[];
}

class UsageError extends Error {}

const USAGE =
  'usage: pod-agent --name <pod> [--namespace <ns>] [--tcp p1,p2] [--udp p1,p2] [--sctp p1,p2] [--bind 0.0.0.0]';

function parsePortList(flag: string, values: string[]): number[] {
  const ports: number[] = [];
  for (const value of values) {
    for (const part of value.split(',')) {
      const text = part.trim();
      if (text === '') continue;
      if (!/^[0-9]+$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
        throw new UsageError(`--${flag}: ${JSON.stringify(text)} is not a port number 1-65535`);
      }
      const port = Number(text);
      if (ports.includes(port)) throw new UsageError(`--${flag}: port ${port} is listed twice`);
      ports.push(port);
    }
  }
  return ports;
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        name: { type: 'string' },
        namespace: { type: 'string', default: 'default' },
        bind: { type: 'string', default: '0.0.0.0' },
        tcp: { type: 'string', multiple: true, default: [] },
        udp: { type: 'string', multiple: true, default: [] },
        sctp: { type: 'string', multiple: true, default: [] },
      },
    }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (values.name === undefined || values.name === '') throw new UsageError('--name is required');
  return {
    name: values.name,
    namespace: values.namespace,
    bind: values.bind,
    tcp: parsePortList('tcp', values.tcp),
    udp: parsePortList('udp', values.udp),
    sctp: parsePortList('sctp', values.sctp),
  };
}

/** Serve one TCP port: greet, then echo with backpressure until the peer half-closes. */
function serveTcp(opts: Options, port: number, sockets: Set<Socket>): Promise<Server> {
  const greeting = Buffer.from(`${opts.name}\n`);
  // allowHalfOpen: when the peer's FIN arrives, keep our side open until the echo is flushed;
  // pipe() then calls end() on our side, which sends our FIN.
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy()); // a reset peer is normal; nothing to report
    socket.write(greeting);
    socket.pipe(socket);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host: opts.bind, exclusive: true }, () => {
      server.off('error', reject);
      server.on('error', (e) => log(opts, `TCP port ${port}: ${e.message}`));
      resolve(server);
    });
  });
}

/** Serve one UDP port: one reply per datagram, `<podname>\n` + payload. */
function serveUdp(opts: Options, port: number): Promise<UdpSocket> {
  const greeting = Buffer.from(`${opts.name}\n`);
  const sock = createSocket({ type: 'udp4', reuseAddr: false });
  sock.on('message', (msg, rinfo) => {
    const reply = Buffer.concat([greeting, msg]);
    const out = reply.length > MAX_UDP_PAYLOAD ? reply.subarray(0, MAX_UDP_PAYLOAD) : reply;
    sock.send(out, rinfo.port, rinfo.address, (err) => {
      if (err) log(opts, `UDP port ${port}: reply to ${rinfo.address}:${rinfo.port} failed: ${err.message}`);
    });
  });
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port, address: opts.bind, exclusive: true }, () => {
      sock.off('error', reject);
      sock.on('error', (e) => log(opts, `UDP port ${port}: ${e.message}`));
      resolve(sock);
    });
  });
}

function log(opts: Options, msg: string): void {
  process.stderr.write(`pod-agent ${opts.namespace}/${opts.name}: ${msg}\n`);
}

function bindFailure(opts: Options, proto: string, port: number, e: unknown): never {
  const err = e as NodeJS.ErrnoException;
  const why = err.code === 'EADDRINUSE' ? `address already in use (EADDRINUSE)` : `${err.code ?? 'error'}: ${err.message}`;
  log(opts, `cannot listen on ${proto} port ${port} (${opts.bind}): ${why}`);
  process.exit(1);
}

async function main(argv: string[]): Promise<void> {
  let opts: Options;
  try {
    opts = parseOptions(argv);
  } catch (e) {
    process.stderr.write(`pod-agent: ${(e as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }

  const servers: Server[] = [];
  const udpSockets: UdpSocket[] = [];
  const sockets = new Set<Socket>();
  // A pod with no served ports still "runs": keep the event loop alive until told to stop.
  const keepAlive = setInterval(() => {}, 1 << 30);

  const shutdown = (signal: string): void => {
    clearInterval(keepAlive);
    for (const s of servers) s.close();
    for (const s of sockets) s.destroy();
    for (const u of udpSockets) u.close();
    log(opts, `${signal}: stopped`);
    process.exit(0);
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  // Bind one listener at a time so a failure names exactly one port.
  for (const port of opts.tcp) {
    try {
      servers.push(await serveTcp(opts, port, sockets));
    } catch (e) {
      bindFailure(opts, 'TCP', port, e);
    }
  }
  for (const port of opts.udp) {
    try {
      udpSockets.push(await serveUdp(opts, port));
    } catch (e) {
      bindFailure(opts, 'UDP', port, e);
    }
  }
  for (const port of opts.sctp) {
    log(opts, `SCTP port ${port} is not served: SCTP sockets are not available in Node.js`);
  }

  process.stdout.write('ready\n');
}

await main(process.argv.slice(2));
