/**
 * The pod agent, run as the daemon runs it (a child process), but in the root network namespace
 * on 127.0.0.1 with free high ports, so no privileges are needed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const AGENT = 'src/lab/pod-agent.ts';
const HOST = '127.0.0.1';

interface Agent {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running: ChildProcess[] = [];

afterEach(() => {
  for (const c of running.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function startAgent(args: string[]): Agent {
  const child = spawn(process.execPath, ['--import', 'tsx', AGENT, '--bind', HOST, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr: () => err, exited };
}

/** Resolve when the agent prints `ready`; reject if it exits first. */
function waitReady(a: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    a.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').includes('ready')) resolve();
    });
    void a.exited.then(({ code }) => reject(new Error(`agent exited (${code}) before ready: ${a.stderr()}`)));
  });
}

async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, HOST, r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, HOST, r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(r));
  return port;
}

/** Connect, send `payload`, half-close, and collect everything until the agent closes. */
function tcpExchange(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = connect({ port, host: HOST, allowHalfOpen: true }, () => {
      sock.end(payload);
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('end', () => resolve(Buffer.concat(chunks)));
    sock.on('error', reject);
  });
}

function udpExchange(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no UDP reply'));
    }, 5000);
    s.on('message', (msg) => {
      clearTimeout(timer);
      s.close();
      resolve(msg);
    });
    s.send(payload, port, HOST, (e) => e && reject(e));
  });
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('pod-agent', () => {
  it('greets and echoes 5 MB over TCP on every port, and answers UDP', { timeout: 30_000 }, async () => {
    const [tcp1, tcp2, udp] = [await freeTcpPort(), await freeTcpPort(), await freeUdpPort()];
    const a = startAgent(['--name', 'web-1', '--namespace', 'prod', '--tcp', `${tcp1},${tcp2}`, '--udp', String(udp)]);
    await waitReady(a);

    const payload = randomBytes(5 * 1024 * 1024);
    const reply = await tcpExchange(tcp1, payload);
    const greeting = Buffer.from('web-1\n');
    expect(reply.subarray(0, greeting.length).toString()).toBe('web-1\n');
    expect(reply.length).toBe(greeting.length + payload.length);
    expect(sha256(reply.subarray(greeting.length))).toBe(sha256(payload));

    // The second port is served too; an empty exchange is just the greeting.
    expect((await tcpExchange(tcp2, Buffer.alloc(0))).toString()).toBe('web-1\n');

    expect((await udpExchange(udp, Buffer.from('hello'))).toString()).toBe('web-1\nhello');
  });

  it('truncates a UDP reply to 65507 bytes', { timeout: 20_000 }, async () => {
    const udp = await freeUdpPort();
    const a = startAgent(['--name', 'dns', '--udp', String(udp)]);
    await waitReady(a);
    const payload = randomBytes(65507);
    const reply = await udpExchange(udp, payload);
    expect(reply.length).toBe(65507);
    expect(reply.subarray(0, 4).toString()).toBe('dns\n');
    expect(reply.subarray(4).equals(payload.subarray(0, 65507 - 4))).toBe(true);
  });

  it('reports SCTP as not served but still becomes ready', { timeout: 20_000 }, async () => {
    const tcp = await freeTcpPort();
    const a = startAgent(['--name', 'sig', '--tcp', String(tcp), '--sctp', '9000']);
    await waitReady(a);
    expect(a.stderr()).toContain('SCTP port 9000 is not served: SCTP sockets are not available in Node.js');
    expect((await tcpExchange(tcp, Buffer.from('x'))).toString()).toBe('sig\nx');
  });

  it('exits 0 on SIGTERM, even with a connection open', { timeout: 20_000 }, async () => {
    const tcp = await freeTcpPort();
    const a = startAgent(['--name', 'web-2', '--tcp', String(tcp)]);
    await waitReady(a);
    const open = connect({ port: tcp, host: HOST });
    open.on('error', () => {});
    await new Promise((r) => open.once('data', r)); // the greeting: the connection is accepted
    a.child.kill('SIGTERM');
    expect(await a.exited).toEqual({ code: 0, signal: null });
    open.destroy();
  });

  it('exits 0 on SIGINT with no ports at all', { timeout: 20_000 }, async () => {
    const a = startAgent(['--name', 'idle']);
    await waitReady(a);
    a.child.kill('SIGINT');
    expect(await a.exited).toEqual({ code: 0, signal: null });
  });

  it('exits 1 naming the port when a TCP port is in use', { timeout: 20_000 }, async () => {
    const blocker: Server = createServer();
    await new Promise<void>((r) => blocker.listen(0, HOST, r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const a = startAgent(['--name', 'web-3', '--tcp', String(port)]);
      const { code } = await a.exited;
      expect(code).toBe(1);
      expect(a.stderr()).toContain(`cannot listen on TCP port ${port}`);
      expect(a.stderr()).toContain('EADDRINUSE');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('exits 1 naming the port when a UDP port is in use', { timeout: 20_000 }, async () => {
    const blocker = createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(0, HOST, r));
    const port = blocker.address().port;
    try {
      const a = startAgent(['--name', 'web-4', '--udp', String(port)]);
      const { code } = await a.exited;
      expect(code).toBe(1);
      expect(a.stderr()).toContain(`cannot listen on UDP port ${port}`);
      expect(a.stderr()).toContain('EADDRINUSE');
    } finally {
      await new Promise<void>((r) => blocker.close(r));
    }
  });

  it.each([
    [['--tcp', '80'], '--name is required'],
    [['--name', 'x', '--tcp', '70000'], '--tcp: "70000" is not a port number 1-65535'],
    [['--name', 'x', '--udp', '53,53'], '--udp: port 53 is listed twice'],
    [['--name', 'x', '--bogus'], "Unknown option '--bogus'"],
  ])('exits 2 on a bad command line %j', { timeout: 20_000 }, async (args, msg) => {
    const a = startAgent(args);
    const { code } = await a.exited;
    expect(code).toBe(2);
    expect(a.stderr()).toContain(msg);
  });
});
