/**
 * Busy polling (`--busy-poll`, issue: speed): daemons that poll their fds after traffic instead of
 * sleeping in epoll must forward exactly as the sleeping ones do, across nodes and on one node,
 * and must still answer control requests while traffic flows (the spin loop hands the JS thread
 * back every few milliseconds).
 */
import { describe, it, expect, afterAll } from 'vitest';
import * as path from 'node:path';
import { TestLab, podYaml, TOOLS } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';

const MANIFESTS = [
  podYaml('a1', { node: 'node1', ip: '10.244.1.10' }),
  podYaml('a2', { node: 'node1', ip: '10.244.1.11' }),
  podYaml('b1', { node: 'node2', ip: '10.244.2.10' }),
].join('');

describe('busy polling', () => {
  const lab = new TestLab();
  afterAll(async () => { expect(await lab.stop()).toEqual([]); });

  const echo = (from: string, to: string, mb: number) => lab.echo(from, to, mb, 120_000);

  it('comes up with the budget it was given', async () => {
    await lab.start({ nodes: 2, servePorts: true, busyPollMicros: 2000 }, MANIFESTS);
    for (const node of ['node1', 'node2']) {
      const st = await adminRequest<{ busyPollMicros: number }>(lab.node(node).socket, { op: 'status' });
      expect(st.busyPollMicros).toBe(2000);
    }
  });

  it('ping across nodes and on one node: every echo answered', async () => {
    for (const dst of ['10.244.2.10', '10.244.1.11']) {
      const r = await lab.execPod('a1', ['ping', '-n', '-c', '20', '-i', '0.01', '-W', '1', dst], 30_000);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/20 packets transmitted, 20 received/);
    }
  });

  it('TCP across nodes and on one node, content verified; control answers during the transfer', async () => {
    const forwarded = async () => {
      const c = await adminRequest<{ ports: { txPackets: number }[] }>(lab.node('node1').socket, { op: 'counters' });
      return c.ports.reduce((n, p) => n + p.txPackets, 0);
    };
    const before = await forwarded();
    const transfer = echo('a1', '10.244.2.10', 30);
    // While the data path spins, the admin socket still gets its turn, and sees the traffic move.
    const seen: number[] = [];
    const t0 = Date.now();
    while (seen.length < 4 && Date.now() - t0 < 20_000) { seen.push(await forwarded()); await new Promise((r) => setTimeout(r, 50)); }
    expect(await transfer).toBe('b1');
    expect(seen.length).toBe(4);
    expect(seen[seen.length - 1]).toBeGreaterThan(before);
    expect(await echo('a1', '10.244.1.11', 20)).toBe('a2');
  });

  it('UDP request and reply across nodes', async () => {
    const r = await lab.execPod('a1', ['node', path.join(TOOLS, 'udp-client.mjs'), '10.244.2.10', '53', 'hello'], 20_000);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ reply: 'b1\nhello', from: '10.244.2.10' });
  });
});
