/**
 * Multi-node overlay (issue: VXLAN between nodes): a 2-node podwire lab plus a third node whose
 * overlay is the Linux kernel's own VXLAN (Flannel-style), all with real kernel traffic.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'node:path';
import { TestLab, podYaml, TOOLS, sh } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';

const lab = new TestLab();

beforeAll(async () => {
  await lab.start({ nodes: 3, kernelNodes: ['node3'] }, [
    podYaml('a1', { node: 'node1', ip: '10.244.1.10' }),
    podYaml('a2', { node: 'node1', ip: '10.244.1.11' }),
    podYaml('b1', { node: 'node2', ip: '10.244.2.10' }),
    podYaml('k1', { node: 'node3', ip: '10.244.3.10' }),
  ].join(''));
});

afterAll(async () => {
  const left = await lab.stop();
  expect(left).toEqual([]);
});

const k1ns = () => `${lab.s.prefix}-node3-default-k1`;

describe('cross-node pod traffic over VXLAN', () => {
  it('pings a pod on the other node', async () => {
    const r = await lab.execPod('a1', ['ping', '-c', '3', '-i', '0.2', '-W', '2', '10.244.2.10']);
    expect(r.stdout).toMatch(/3 received/);
    const c1 = await lab.counters('node1'), c2 = await lab.counters('node2');
    expect(c1.vxlanEncap).toBeGreaterThanOrEqual(3);
    expect(c2.vxlanDecap).toBeGreaterThanOrEqual(3);
  });

  it('moves 100 MB each way over TCP across nodes, verified by hash', async () => {
    const r = await lab.execPod('a1', ['node', path.join(TOOLS, 'echo-client.mjs'), '10.244.2.10', '80', String(100 * 1024 * 1024)], 240_000);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.greeting).toBe('b1');
    expect(res.received).toBe(100 * 1024 * 1024);
    expect(res.receivedSha256).toBe(res.sentSha256);
  });

  it('answers UDP across nodes', async () => {
    const r = await lab.execPod('b1', ['node', path.join(TOOLS, 'udp-client.mjs'), '10.244.1.11', '53', 'cross']);
    expect(JSON.parse(r.stdout)).toMatchObject({ reply: 'a2\ncross', from: '10.244.1.11' });
  });

  it('shows the receiving pod the sender\'s own pod IP (no NAT), across nodes and on one node', async () => {
    await lab.background(lab.pod('b1').netns, ['node', path.join(TOOLS, 'whoami-server.mjs'), '7000']);
    const r = await lab.execPod('a1', ['bash', '-c', 'exec 3<>/dev/tcp/10.244.2.10/7000; cat <&3']);
    expect(r.stdout.trim()).toBe('10.244.1.10');
    await lab.background(lab.pod('a2').netns, ['node', path.join(TOOLS, 'whoami-server.mjs'), '7000']);
    const r2 = await lab.execPod('a1', ['bash', '-c', 'exec 3<>/dev/tcp/10.244.1.11/7000; cat <&3']);
    expect(r2.stdout.trim()).toBe('10.244.1.10');
  });
});

describe('node ↔ pod', () => {
  for (const [node, nodeIp] of [['node1', '192.168.56.11'], ['node2', '192.168.56.12']] as const) {
    it(`${node} reaches pods on both nodes, and pods reach ${node}`, async () => {
      const ns = lab.node(node).netns;
      for (const target of ['10.244.1.10', '10.244.2.10']) {
        const r = await lab.exec(ns, ['ping', '-c', '2', '-i', '0.2', '-W', '2', target]);
        expect(r.stdout, `${node} → ${target}`).toMatch(/2 received/);
        const t = await lab.exec(ns, ['timeout', '3', 'bash', '-c', `exec 3<>/dev/tcp/${target}/80; head -n1 <&3`]);
        expect(t.stdout.trim()).toBe(target === '10.244.1.10' ? 'a1' : 'b1');
      }
      for (const pod of ['a1', 'b1']) {
        const r = await lab.execPod(pod, ['ping', '-c', '2', '-i', '0.2', '-W', '2', nodeIp]);
        expect(r.stdout, `${pod} → ${node}`).toMatch(/2 received/);
      }
    });
  }
  it('the node sees a pod\'s own address when the pod connects to it', async () => {
    await lab.background(lab.node('node2').netns, ['node', path.join(TOOLS, 'whoami-server.mjs'), '7001']);
    const r = await lab.execPod('a1', ['bash', '-c', 'exec 3<>/dev/tcp/192.168.56.12/7001; cat <&3']);
    expect(r.stdout.trim()).toBe('10.244.1.10');
  });
});

describe('overlay input checks', () => {
  it('drops VXLAN from a non-member address with its reason', async () => {
    const before = (await lab.counters('node1')).drops.vxlan_unknown_peer ?? 0;
    const r = await lab.exec(lab.s.extNetns, ['python3', path.join(TOOLS, 'vxlan-send.py'), '192.168.56.11', '4789', '1', '0x08', '5']);
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => setTimeout(res, 300));
    expect(((await lab.counters('node1')).drops.vxlan_unknown_peer ?? 0) - before).toBe(5);
  });
  it('drops VXLAN from a member with the wrong VNI or without the I flag', async () => {
    const before = (await lab.counters('node1')).drops;
    await lab.exec(lab.node('node2').netns, ['python3', path.join(TOOLS, 'vxlan-send.py'), '192.168.56.11', '4789', '2', '0x08', '4']);
    await lab.exec(lab.node('node2').netns, ['python3', path.join(TOOLS, 'vxlan-send.py'), '192.168.56.11', '4789', '1', '0x00', '3']);
    await new Promise((res) => setTimeout(res, 300));
    const after = (await lab.counters('node1')).drops;
    expect((after.vxlan_bad_vni ?? 0) - (before.vxlan_bad_vni ?? 0)).toBe(4);
    expect((after.vxlan_bad_flags ?? 0) - (before.vxlan_bad_flags ?? 0)).toBe(3);
  });
});

describe('interoperability with a Linux-kernel VXLAN node (Flannel-style)', () => {
  it('exchanges ping both ways between podwire pods and the kernel node\'s pod', async () => {
    expect((await lab.execPod('a1', ['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.244.3.10'])).stdout).toMatch(/2 received/);
    expect((await lab.exec(k1ns(), ['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.244.2.10'])).stdout).toMatch(/2 received/);
  });
  it('carries TCP both ways with content verified', async () => {
    const r = await lab.exec(k1ns(), ['node', path.join(TOOLS, 'echo-client.mjs'), '10.244.1.10', '80', String(10 * 1024 * 1024)], 120_000);
    const res = JSON.parse(r.stdout);
    expect(res.greeting).toBe('a1');
    expect(res.receivedSha256).toBe(res.sentSha256);
    await lab.background(k1ns(), ['node', '--import', 'tsx', 'src/lab/pod-agent.ts', '--name', 'k1', '--tcp', '80']);
    const r2 = await lab.execPod('b1', ['node', path.join(TOOLS, 'echo-client.mjs'), '10.244.3.10', '80', String(10 * 1024 * 1024)], 120_000);
    const res2 = JSON.parse(r2.stdout);
    expect(res2.greeting).toBe('k1');
    expect(res2.receivedSha256).toBe(res2.sentSha256);
  });
});

describe('cluster membership changes apply live', () => {
  it('adds and removes a node without restarting the daemons', async () => {
    const node9 = `apiVersion: v1
kind: Node
metadata: { name: node9 }
spec: { podCIDR: 10.244.9.0/24 }
status: { addresses: [{ type: InternalIP, address: 192.168.56.19 }] }
`;
    const before = await lab.counters('node1');
    const r1 = await lab.execPod('a1', ['ping', '-c', '1', '-W', '1', '10.244.9.5']);
    expect(r1.stdout).toMatch(/Unreachable/);
    await lab.apply(node9);
    await lab.execPod('a1', ['ping', '-c', '2', '-i', '0.2', '-W', '1', '10.244.9.5']);
    const mid = await lab.counters('node1');
    expect(mid.vxlanEncap - before.vxlanEncap).toBeGreaterThanOrEqual(2);   // now sent to node9's VTEP
    for (const n of ['node1', 'node2']) await adminRequest(lab.node(n).socket, { op: 'delete', keys: ['Node/node9'] });
    const r3 = await lab.execPod('a1', ['ping', '-c', '1', '-W', '1', '10.244.9.5']);
    expect(r3.stdout).toMatch(/Unreachable/);
    // existing pods were never disturbed
    expect((await lab.execPod('a1', ['ping', '-c', '1', '-W', '2', '10.244.2.10'])).stdout).toMatch(/1 received/);
  });
});

describe('MTU', () => {
  it('gives pods underlay MTU − 50', async () => {
    const l = JSON.parse((await lab.execPod('a1', ['ip', '-j', 'link', 'show', 'eth0'])).stdout)[0];
    expect(l.mtu).toBe(1450);
  });
  it('answers oversize DF packets with fragmentation-needed so path-MTU discovery works after the underlay shrinks', async () => {
    // Shrink the underlay to 1300 on both podwire nodes (veth ends and bridge ports).
    for (const n of ['node1', 'node2']) {
      await sh('ip', ['-n', lab.node(n).netns, 'link', 'set', 'underlay0', 'mtu', '1300']);
      await sh('ip', ['-n', lab.s.underlayNetns, 'link', 'set', n, 'mtu', '1300']);
    }
    await new Promise((res) => setTimeout(res, 2500));   // the daemons re-read the underlay MTU every 2 s
    const p = await lab.execPod('a1', ['ping', '-c', '1', '-W', '2', '-M', 'do', '-s', '1400', '10.244.2.10']);
    expect(p.stdout + p.stderr).toMatch(/mtu = 1250/);
    const r = await lab.execPod('a1', ['node', path.join(TOOLS, 'echo-client.mjs'), '10.244.2.10', '80', String(5 * 1024 * 1024)], 60_000);
    const res = JSON.parse(r.stdout);
    expect(res.receivedSha256).toBe(res.sentSha256);
    const route = await lab.execPod('a1', ['ip', 'route', 'get', '10.244.2.10']);
    expect(route.stdout).toMatch(/mtu 1250/);
    const c = await lab.counters('node1');
    expect(c.drops.frag_needed).toBeGreaterThan(0);
  });
});
