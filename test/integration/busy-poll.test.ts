/**
 * Busy polling (`--busy-poll`, issue: speed): daemons that poll their fds after traffic instead of
 * sleeping in epoll must forward exactly as the sleeping ones do, across nodes and on one node,
 * and must still answer control requests while traffic flows (the spin loop hands the JS thread
 * back every few milliseconds, in a gap in the traffic when there is one), and must go back to
 * sleeping once a whole budget passes without traffic.
 */
import { describe, it, expect, afterAll } from 'vitest';
import * as path from 'node:path';
import { TestLab, podYaml, TOOLS } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';
import { cpuSeconds } from '../../bench/lib.ts';   // utime + stime from /proc/<pid>/stat

const MANIFESTS = [
  podYaml('a1', { node: 'node1', ip: '10.244.1.10' }),
  podYaml('a2', { node: 'node1', ip: '10.244.1.11' }),
  podYaml('b1', { node: 'node2', ip: '10.244.2.10' }),
].join('');

/** The budget: longer than the 10 ms between the pings below, so those keep the daemons spinning. */
const BUDGET_MICROS = 20_000;

describe('busy polling', () => {
  const lab = new TestLab();
  afterAll(async () => { expect(await lab.stop()).toEqual([]); });

  const echo = (from: string, to: string, mb: number) => lab.echo(from, to, mb, 120_000);

  it('comes up with the budget it was given', async () => {
    await lab.start({ nodes: 2, servePorts: true, busyPollMicros: BUDGET_MICROS }, MANIFESTS);
    for (const node of ['node1', 'node2']) {
      const st = await adminRequest<{ busyPollMicros: number }>(lab.node(node).socket, { op: 'status' });
      expect(st.busyPollMicros).toBe(BUDGET_MICROS);
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

  it('sparse traffic keeps the daemons spinning, and control requests still get their turn', async () => {
    // Pings 10 ms apart never leave a whole budget (20 ms) without traffic, so the daemons never
    // go back to epoll: every status answer below came from a hand-back in a gap between pings.
    const pinging = lab.execPod('a1', ['ping', '-n', '-c', '300', '-i', '0.01', '-W', '1', '10.244.2.10'], 30_000);
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 10; i++) {
      for (const node of ['node1', 'node2']) {
        const st = await adminRequest<{ busyPollMicros: number }>(lab.node(node).socket, { op: 'status' }, 2_000);
        expect(st.busyPollMicros).toBe(BUDGET_MICROS);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await pinging;
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/300 packets transmitted, 300 received/);
  });

  it('a whole budget without traffic sends the daemons back to sleep in epoll', async () => {
    const r = await lab.execPod('a1', ['ping', '-n', '-c', '50', '-i', '0.01', '-W', '1', '10.244.2.10'], 30_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 500));   // 25 budgets: long past any spinning
    const pids = ['node1', 'node2'].map((n) => lab.node(n).pid!);
    const before = await Promise.all(pids.map(cpuSeconds));
    await new Promise((r) => setTimeout(r, 2_000));
    const used = (await Promise.all(pids.map(cpuSeconds))).map((cpu, i) => cpu - before[i]);
    // A daemon still spinning would use most of a CPU over these 2 s; a sleeping one, a few timers.
    for (const u of used) expect(u).toBeLessThan(0.25);
  });
});
