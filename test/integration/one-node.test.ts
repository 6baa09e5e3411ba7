/**
 * One node forwards real pod traffic through the daemon (issue: foundation).
 * A one-node lab, three pods, real kernel TCP/UDP/ICMP stacks in their namespaces.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import * as path from 'node:path';
import { TestLab, podYaml, TOOLS } from './harness.ts';

const lab = new TestLab();

beforeAll(async () => {
  await lab.start({ nodes: 1 }, [
    podYaml('alpha', { node: 'node1', ip: '10.244.1.10', tcp: [80, 8080], udp: [53] }),
    podYaml('beta', { node: 'node1', ip: '10.244.1.11', tcp: [80], udp: [53] }),
    podYaml('gamma', { node: 'node1', tcp: [80], udp: [53] }),
  ].join(''));
});

afterAll(async () => {
  const left = await lab.stop();
  expect(left).toEqual([]);
});

describe('one node', () => {
  it('gives pods addresses from the node CIDR, pinned or allocated', () => {
    expect(lab.pod('alpha').ip).toBe('10.244.1.10');
    expect(lab.pod('beta').ip).toBe('10.244.1.11');
    expect(lab.pod('gamma').ip).toMatch(/^10\.244\.1\.\d+$/);
    expect(lab.pod('gamma').ip).not.toBe('10.244.1.1');
  });

  it('configures eth0 in the pod: TAP, MAC from the IP, MTU, default route via the gateway', async () => {
    const link = await lab.execPod('alpha', ['ip', '-j', '-d', 'link', 'show', 'eth0']);
    const l = JSON.parse(link.stdout)[0];
    expect(l.address).toBe('0a:58:0a:f4:01:0a');
    expect(l.mtu).toBe(1450);
    expect(l.linkinfo?.info_kind).toBe('tun');
    const route = await lab.execPod('alpha', ['ip', '-j', 'route', 'show', 'default']);
    expect(JSON.parse(route.stdout)[0].gateway).toBe('10.244.1.1');
  });

  it('pings between two pods and the gateway', async () => {
    const r = await lab.execPod('alpha', ['ping', '-c', '3', '-i', '0.2', '-W', '2', '10.244.1.11']);
    expect(r.stdout).toMatch(/3 received/);
    const g = await lab.execPod('beta', ['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.244.1.1']);
    expect(g.stdout).toMatch(/2 received/);
  });

  it('resolves ARP: peers by their own MAC, the gateway by the router MAC', async () => {
    await lab.execPod('alpha', ['ping', '-c', '1', '-W', '2', '10.244.1.11']);
    await lab.execPod('alpha', ['ping', '-c', '1', '-W', '2', '10.244.1.1']);
    const n = JSON.parse((await lab.execPod('alpha', ['ip', '-j', 'neigh', 'show', 'dev', 'eth0'])).stdout) as { dst: string; lladdr: string }[];
    expect(n.find((x) => x.dst === '10.244.1.11')?.lladdr).toBe('0a:58:0a:f4:01:0b');
    expect(n.find((x) => x.dst === '10.244.1.1')?.lladdr).toBe('0e:77:c0:a8:38:0b');
  });

  it('moves 100 MB each way over TCP with the content verified by hash', async () => {
    const r = await lab.execPod('alpha', ['node', path.join(TOOLS, 'echo-client.mjs'), '10.244.1.11', '80', String(100 * 1024 * 1024)], 180_000);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.greeting).toBe('beta');
    expect(res.sent).toBe(100 * 1024 * 1024);
    expect(res.received).toBe(res.sent);
    expect(res.receivedSha256).toBe(res.sentSha256);
  });

  it('answers a UDP request from the right pod', async () => {
    const r = await lab.execPod('beta', ['node', path.join(TOOLS, 'udp-client.mjs'), '10.244.1.10', '53', 'hello-udp']);
    expect(r.code).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.reply).toBe('alpha\nhello-udp');
    expect(res.from).toBe('10.244.1.10');
  });

  it('answers an unknown address in the pod CIDR with ICMP host unreachable, not silence', async () => {
    const r = await lab.execPod('alpha', ['ping', '-c', '1', '-W', '2', '10.244.1.200']);
    // The host route is on-link (/24), so the pod ARPs; routed traffic to a missing pod is tested
    // through the gateway with a /32 route.
    await lab.execPod('alpha', ['ip', 'route', 'add', '10.244.1.201/32', 'via', '10.244.1.1']);
    const r2 = await lab.execPod('alpha', ['ping', '-c', '1', '-W', '2', '10.244.1.201']);
    await lab.execPod('alpha', ['ip', 'route', 'del', '10.244.1.201/32']);
    expect(r.code).not.toBe(0);
    expect(r2.stdout).toMatch(/Destination Host Unreachable/);
    const c = await lab.counters();
    expect(c.drops.host_unreachable).toBeGreaterThan(0);
  });

  it('answers TTL expiry with ICMP time exceeded', async () => {
    await lab.execPod('alpha', ['ip', 'route', 'add', '192.0.2.0/24', 'via', '10.244.1.1']);
    const r = await lab.execPod('alpha', ['ping', '-c', '1', '-W', '2', '-t', '1', '192.0.2.1']);
    await lab.execPod('alpha', ['ip', 'route', 'del', '192.0.2.0/24']);
    expect(r.stdout).toMatch(/Time to live exceeded/);
  });

  it('drops a pod spoofing its source IP, with its own reason', async () => {
    const before = (await lab.counters()).drops.spoofed_src_ip ?? 0;
    await lab.execPod('gamma', ['ip', 'addr', 'add', '10.244.1.99/24', 'dev', 'eth0']);
    // A static neighbour entry, so the pod sends IP at once (its ARP from .99 would be dropped first).
    await lab.execPod('gamma', ['ip', 'neigh', 'replace', '10.244.1.10', 'lladdr', '0a:58:0a:f4:01:0a', 'dev', 'eth0']);
    const r = await lab.execPod('gamma', ['ping', '-c', '2', '-i', '0.2', '-W', '1', '-I', '10.244.1.99', '10.244.1.10']);
    await lab.execPod('gamma', ['ip', 'addr', 'del', '10.244.1.99/24', 'dev', 'eth0']);
    expect(r.stdout).toMatch(/0 received/);
    const c = await lab.counters();
    expect((c.drops.spoofed_src_ip ?? 0) - before).toBeGreaterThanOrEqual(2);
    const port = c.ports.find((p) => p.label === 'default/gamma')!;
    expect(port.drops.spoofed_src_ip).toBeGreaterThanOrEqual(2);
  });

  it('drops a pod spoofing its source MAC, and ARP claiming another pod\'s IP', async () => {
    const before = await lab.counters();
    const gamma = lab.pod('gamma');
    await lab.execPod('gamma', ['ip', 'link', 'set', 'eth0', 'address', '02:00:00:00:00:66']);
    await lab.execPod('gamma', ['ip', 'neigh', 'flush', 'dev', 'eth0']);
    const r = await lab.execPod('gamma', ['ping', '-c', '2', '-i', '0.2', '-W', '1', '10.244.1.10']);
    await lab.execPod('gamma', ['ip', 'link', 'set', 'eth0', 'address', '0a:58:' + gamma.ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join(':')]);
    expect(r.stdout).toMatch(/0 received/);
    // gratuitous ARP from gamma claiming alpha's address
    await lab.execPod('gamma', ['ip', 'addr', 'add', '10.244.1.10/32', 'dev', 'eth0']);
    await lab.execPod('gamma', ['python3', '-c', `import socket,struct
s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW); s.bind(('eth0',0))
mac=bytes.fromhex('0a58'+''.join('%02x'%int(x) for x in '${gamma.ip}'.split('.')))
arp=struct.pack('!HHBBH6s4s6s4s',1,0x800,6,4,2,mac,socket.inet_aton('10.244.1.10'),b'\\xff'*6,socket.inet_aton('10.244.1.10'))
[s.send(b'\\xff'*6+mac+b'\\x08\\x06'+arp) for _ in range(3)]`]);
    await lab.execPod('gamma', ['ip', 'addr', 'del', '10.244.1.10/32', 'dev', 'eth0']);
    const after = await lab.counters();
    expect((after.drops.spoofed_src_mac ?? 0) - (before.drops.spoofed_src_mac ?? 0)).toBeGreaterThanOrEqual(2);
    expect((after.drops.spoofed_arp ?? 0) - (before.drops.spoofed_arp ?? 0)).toBeGreaterThanOrEqual(3);
    // beta still maps alpha's address to alpha's MAC
    await lab.execPod('beta', ['ping', '-c', '1', '-W', '2', '10.244.1.10']);
    const n = JSON.parse((await lab.execPod('beta', ['ip', '-j', 'neigh', 'show', '10.244.1.10'])).stdout) as { lladdr: string }[];
    expect(n[0]?.lladdr).toBe('0a:58:0a:f4:01:0a');
  });

  it('survives 100,000 malformed frames, counts them by reason, and keeps forwarding', async () => {
    const gamma = lab.pod('gamma');
    const txDropped = async () => JSON.parse((await lab.execPod('gamma', ['ip', '-j', '-s', 'link', 'show', 'eth0'])).stdout)[0].stats64.tx.dropped as number;
    const txDroppedBefore = await txDropped();
    const before = await lab.counters();
    const mac = '0a:58:' + gamma.ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join(':');
    const r = await lab.execPod('gamma', ['python3', path.join(TOOLS, 'inject.py'), 'eth0', mac, '0e:77:c0:a8:38:0b', gamma.ip, '10.244.1.10', '100000'], 300_000);
    expect(r.code).toBe(0);
    const sent = JSON.parse(r.stdout) as Record<string, number>;
    expect(Object.values(sent).reduce((a, b) => a + b, 0)).toBe(100000);
    await new Promise((res) => setTimeout(res, 500));
    const after = await lab.counters();
    const delta = (k: string) => (after.drops[k] ?? 0) - (before.drops[k] ?? 0);
    for (const reason of ['eth_unsupported_type', 'ipv4_truncated', 'ipv4_bad_version', 'ipv4_bad_header_len', 'ipv4_bad_total_len', 'ipv4_bad_checksum', 'ipv4_bad_options']) {
      expect(delta(reason), reason).toBeGreaterThan(0);
    }
    // Every frame is accounted for: counted by the daemon under a reason, or dropped by the pod's
    // kernel when the TAP queue overflowed during the burst (tx_dropped on the pod's eth0).
    const counted = Object.keys(after.drops).reduce((a, k) => a + delta(k), 0);
    const kernelDropped = (await txDropped()) - txDroppedBefore;
    expect(counted + kernelDropped).toBeGreaterThanOrEqual(100000);
    expect(counted).toBeGreaterThan(50000);
    const ping = await lab.execPod('alpha', ['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.244.1.11']);
    expect(ping.stdout).toMatch(/2 received/);
  });

  it('rejects an invalid manifest naming the object and field, and applies nothing of it', async () => {
    await expect(lab.apply(podYaml('delta', { node: 'node1' }) + `apiVersion: v1
kind: Pod
metadata: { name: epsilon }
spec:
  nodeName: node1
  containers:
  - name: main
    ports: [{ containerPort: 70000 }]
`)).rejects.toThrow(/epsilon.*containerPort/);
    await lab.refresh();
    expect(lab.pods.map((p) => p.name)).not.toContain('delta');
  });

  it('deletes a pod and everything of it', async () => {
    await lab.apply(podYaml('zeta', { node: 'node1' }));
    await lab.refresh();
    const ns = lab.pod('zeta').netns;
    const { adminRequest } = await import('../../src/daemon/client.ts');
    await adminRequest(lab.node('node1').socket, { op: 'delete', keys: ['Pod/default/zeta'] });
    await lab.refresh();
    expect(lab.pods.map((p) => p.name)).not.toContain('zeta');
    const { listNetns } = await import('../../src/daemon/sys.ts');
    expect(await listNetns()).not.toContain(ns);
  });
});
