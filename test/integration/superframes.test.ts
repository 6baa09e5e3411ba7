/**
 * Super-frames end to end (issue: speed): with virtio-net headers and TSO on the TAPs, pods send
 * TCP in frames of up to 64 KiB; every path must carry them intact — same node, across nodes
 * (segmented into VXLAN, coalesced on receipt), through Service DNAT (partial checksums updated
 * without complementing), through NetworkPolicy, and to and from a Linux-kernel VXLAN node. Then the
 * same transfers with offloads off (the plain-frame fallback).
 */
import { describe, it, expect, afterAll } from 'vitest';
import * as path from 'node:path';
import * as os from 'node:os';
import { TestLab, podYaml, TOOLS } from './harness.ts';
import { adminRequest } from '../../src/daemon/client.ts';
import { hasTapTunnelGso, takesTapUso } from '../kernel.ts';

const MANIFESTS = [
  podYaml('a1', { node: 'node1', ip: '10.244.1.10', labels: { app: 'a' } }),
  podYaml('a2', { node: 'node1', ip: '10.244.1.11', labels: { app: 'a' } }),
  podYaml('b1', { node: 'node2', ip: '10.244.2.10', labels: { app: 'b' } }),
  podYaml('k1', { node: 'node3', ip: '10.244.3.10', labels: { app: 'k' } }),
  `apiVersion: v1
kind: Service
metadata: { name: b }
spec: { selector: { app: b }, clusterIP: 10.96.0.20, ports: [{ port: 80 }] }
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: b-from-a }
spec:
  podSelector: { matchLabels: { app: b } }
  ingress: [{ from: [{ podSelector: { matchLabels: { app: a } } }], ports: [{ port: 80 }] }]
---
`,
].join('');

// Linux >= 6.17 takes whole VXLAN super-frames through a TAP (UDP-tunnel GSO); the daemon then
// lets the kernel segment them. Both ways of carrying super-frames across nodes are tested.
const kernelHasTunnelGso = hasTapTunnelGso(os.release());
// Small UDP goes into pods in USO runs where the kernel takes them.
const kernelTakesUso = takesTapUso(os.release());

const CONFIGS = [
  { offload: 'auto', tunnelGso: 'auto', title: 'offloads on (super-frames), VXLAN segmentation by the kernel where it can' },
  { offload: 'auto', tunnelGso: 'off', title: 'offloads on (super-frames), VXLAN segmentation by the addon' },
  { offload: 'off', tunnelGso: 'auto', title: 'offloads off (plain frames)' },
] as const;

for (const { offload, tunnelGso, title } of CONFIGS) {
  describe(`data path with ${title}`, () => {
    const lab = new TestLab();
    const MB = offload === 'auto' ? 50 : 20;
    afterAll(async () => { expect(await lab.stop()).toEqual([]); });

    const echo = (from: string | { netns: string }, to: string) => lab.echo(from, to, MB);

    it('comes up in the asked mode', async () => {
      await lab.start({ nodes: 3, kernelNodes: ['node3'], offload, tunnelGso }, MANIFESTS);
      // k1 (kernel node) serves port 80 too, through a pod agent started here.
      const { spawn } = await import('node:child_process');
      const { REPO_ROOT } = await import('../../src/lab/lab.ts');
      const agent = spawn('ip', ['netns', 'exec', `${lab.s.prefix}-node3-default-k1`, 'node', '--import', 'tsx', 'src/lab/pod-agent.ts', '--name', 'k1', '--tcp', '80'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise((r) => agent.stdout!.on('data', r));
      const st = await adminRequest<{ dataPath: string }>(lab.node('node1').socket, { op: 'status' });
      expect(st.dataPath).toMatch(offload === 'auto' ? /super-frames/ : /plain frames/);
      if (offload === 'auto' && kernelTakesUso) expect(st.dataPath).toMatch(/UDP runs written as USO frames/);
    });
    it(`same node: ${MB} MB each way, content verified`, async () => expect(await echo('a1', '10.244.1.11')).toBe('a2'));
    it(`cross node: ${MB} MB each way, content verified`, async () => expect(await echo('a1', '10.244.2.10')).toBe('b1'));
    it(`through a ClusterIP with a cross-node backend and a NetworkPolicy allowing it`, async () => expect(await echo('a2', '10.96.0.20')).toBe('b1'));
    it('to and from a Linux-kernel VXLAN node', async () => {
      expect(await echo('b1', '10.244.3.10')).toBe('k1');
      expect(await echo({ netns: `${lab.s.prefix}-node3-default-k1` }, '10.244.1.10')).toBe('a1');
    });
    it(`UDP: 3000 datagrams to a1 from the same node and from another arrive whole and in order${offload === 'auto' ? ', written to its TAP in USO runs' : ''}`, async () => {
      const usoWrites = async () => (await adminRequest<{ addon: { tapUdpGsoWrites: number; tapUdpGsoDatagrams: number } }>(lab.node('node1').socket, { op: 'counters' })).addon;
      for (const [from, port] of [['a2', 7001], ['b1', 7002]] as const) {
        const before = await usoWrites();
        const receiver = lab.execPod('a1', ['node', path.join(TOOLS, 'udp-stream.mjs'), 'recv', String(port), '3000', '3'], 60_000);
        await new Promise((r) => setTimeout(r, 500));
        const sent = await lab.execPod(from, ['node', path.join(TOOLS, 'udp-stream.mjs'), 'send', '10.244.1.10', String(port), '3000', '1000', '10'], 60_000);
        const got = await receiver;
        expect(sent.code, sent.stderr).toBe(0);
        expect(got.code, got.stderr).toBe(0);
        const tx = JSON.parse(sent.stdout.trim().split('\n').pop()!), rx = JSON.parse(got.stdout.trim().split('\n').pop()!);
        expect(rx).toMatchObject({ received: 3000, size: 1000, sha256: tx.sha256 });
        const after = await usoWrites();
        if (offload === 'auto') {
          // The sender's datagrams (DF, consecutive IDs, bursts of 32) reached a1's TAP mostly in
          // runs, several per write (typically ~2500 of the 3000, 15-20 per write).
          const writes = after.tapUdpGsoWrites - before.tapUdpGsoWrites;
          const merged = after.tapUdpGsoDatagrams - before.tapUdpGsoDatagrams;
          expect(merged).toBeGreaterThanOrEqual(1500);
          expect(merged / writes).toBeGreaterThanOrEqual(4);
        } else {
          expect(after.tapUdpGsoWrites).toBe(before.tapUdpGsoWrites);
        }
      }
    });
    if (offload === 'auto') {
      it(`really moved super-frames, segmented by the ${tunnelGso === 'auto' && kernelHasTunnelGso ? 'kernel (written whole, received whole)' : 'addon (UDP_SEGMENT, then coalesced)'}`, async () => {
        type Addon = { vxlanGsoSends: number; vxlanSuperFrames: number; vxlanTunnelSends: number; vxlanTunnelReceived: number; udpTunnelGso: boolean };
        const st = await adminRequest<{ overlaySegmentation: string }>(lab.node('node1').socket, { op: 'status' });
        const [c1, c2] = await Promise.all(['node1', 'node2'].map((n) => adminRequest<{ addon: Addon }>(lab.node(n).socket, { op: 'counters' }).then((c) => c.addon)));
        if (tunnelGso === 'auto' && kernelHasTunnelGso) {
          expect(st.overlaySegmentation).toMatch(/^kernel/);
          // Both directions carried data (echo): each node wrote whole super-frames and got some.
          for (const c of [c1, c2]) {
            expect(c.udpTunnelGso).toBe(true);
            expect(c.vxlanTunnelSends).toBeGreaterThan(0);
            expect(c.vxlanTunnelReceived).toBeGreaterThan(0);
            expect(c.vxlanGsoSends).toBe(0);
          }
        } else {
          expect(st.overlaySegmentation).toMatch(/^addon/);
          for (const c of [c1, c2]) {
            expect(c.vxlanTunnelSends).toBe(0);
            expect(c.vxlanGsoSends).toBeGreaterThan(0);
            expect(c.vxlanSuperFrames).toBeGreaterThan(0);
          }
        }
      });
    }
  });
}
