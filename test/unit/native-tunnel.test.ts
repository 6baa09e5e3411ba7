/**
 * The UDP-tunnel GSO path against the real kernel: sendVxlanBatch writes a TCP super-frame whole
 * into a tunnel TAP (openTunnelTap, 24-byte virtio_net_hdr_v1_hash_tunnel), the kernel routes the
 * VXLAN packet over a veth into another namespace without cutting it, and recvVxlanBatch (with
 * innerMtu) hands it out as a super-frame with the MSS the inner MTU allows.
 *
 * Both ends run in namespaces private to this run (helper processes: helpers/addon-in-netns.ts),
 * joined by a veth pair 10.77.0.1 <-> 10.77.0.2; nothing is configured in the root namespace.
 * On kernels without UDP-tunnel GSO in TUN (< 6.17) the test checks that openTunnelTap says so.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addonInNetns } from './helpers/netns-helper.ts';

const canRun = process.platform === 'linux' && process.getuid?.() === 0 && existsSync('/dev/net/tun');
const [major, minor] = os.release().split('.').map(Number);
const kernelHasTunnelGso = major > 6 || (major === 6 && minor >= 17);
const VNI = 0x123456;

const put16 = (b: Uint8Array, o: number, v: number) => { b[o] = (v >>> 8) & 0xff; b[o + 1] = v & 0xff; };
const le16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
function sum16(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** [vnet 12][Ethernet + IPv4 + TCP (32-byte header) + payload], as a TAP with TSO4 hands it over. */
function tcpSuperEntry(payloadLen: number, mss: number): { entry: Uint8Array; frame: Uint8Array } {
  const f = new Uint8Array(14 + 20 + 32 + payloadLen);
  f.set([2, 0, 0, 0, 0, 0x0b, 2, 0, 0, 0, 0, 0x0a, 0x08, 0x00], 0);
  f.set([0x45, 0], 14);
  put16(f, 16, 20 + 32 + payloadLen);
  put16(f, 18, 0x2222);
  put16(f, 20, 0x4000);
  f[22] = 64; f[23] = 6;
  f.set([10, 244, 1, 5, 10, 244, 2, 7], 26);
  put16(f, 24, ~sum16(f, 14, 20) & 0xffff);
  put16(f, 34, 40000); put16(f, 36, 5201);
  f.set([0, 0, 0x10, 0, 0, 0, 0, 1, 0x80, 0x10, 0x01, 0xf5], 38);   // seq, ack, doff 8, ACK, window
  f.set([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78], 54);        // NOP NOP timestamp
  for (let i = 0; i < payloadLen; i++) f[66 + i] = (i * 13 + 5) & 0xff;
  // Partial checksum: the pseudo-header sum, not complemented (CHECKSUM_PARTIAL).
  put16(f, 50, sum16(f, 26, 8, 6 + 32 + payloadLen));
  const v = new Uint8Array(12);
  v[0] = 1; v[1] = 1;                                                   // NEEDS_CSUM, GSO_TCPV4
  v[2] = 66; v[4] = mss & 0xff; v[5] = mss >> 8; v[6] = 34; v[8] = 16;
  const entry = new Uint8Array(12 + f.length);
  entry.set(v, 0); entry.set(f, 12);
  return { entry, frame: f };
}

describe.skipIf(!canRun)('UDP-tunnel GSO through a TAP (root, Linux)', () => {
  const tag = randomBytes(3).toString('hex');
  const nsA = `pwtn${tag}a`, nsB = `pwtn${tag}b`;
  const ip = (...a: string[]) => execFileSync('ip', a, { stdio: ['ignore', 'pipe', 'pipe'] });

  beforeAll(() => {
    ip('netns', 'add', nsA);
    ip('netns', 'add', nsB);
    ip('link', 'add', `va${tag}`, 'netns', nsA, 'type', 'veth', 'peer', `vb${tag}`, 'netns', nsB);
    ip('-n', nsA, 'addr', 'add', '10.77.0.1/24', 'dev', `va${tag}`);
    ip('-n', nsB, 'addr', 'add', '10.77.0.2/24', 'dev', `vb${tag}`);
    for (const [ns, dev] of [[nsA, `va${tag}`], [nsB, `vb${tag}`]]) {
      ip('-n', ns, 'link', 'set', dev, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
  });
  afterAll(() => {
    for (const ns of [nsA, nsB]) { try { ip('netns', 'del', ns); } catch { /* already gone */ } }
    const left = execFileSync('ip', ['netns', 'list']).toString().split('\n').filter((l) => l.startsWith(`pwtn${tag}`));
    expect(left).toEqual([]);
  });

  it.runIf(kernelHasTunnelGso)('a super-frame crosses whole and comes out as a super-frame with the inner MTU\'s MSS', async () => {
    const { entry, frame } = tcpSuperEntry(20 * 1000, 1000);
    // A small UDP frame (no GSO) goes the usual way, through the UDP socket.
    const small = new Uint8Array(12 + 60);
    small.set([2, 0, 0, 0, 0, 0x0b, 2, 0, 0, 0, 0, 0x0a, 0x08, 0x00], 12);
    small.set([0x45, 0, 0, 46, 0, 1, 0x40, 0, 64, 17, 0, 0, 10, 244, 1, 5, 10, 244, 2, 7], 26);
    put16(small, 12 + 24, ~sum16(small, 26, 20) & 0xffff);
    small.set([0x9c, 0x40, 0, 53, 0, 26, 0, 0], 46);
    const rx = addonInNetns(nsB, 'recv', { addr: '10.77.0.2', port: 4789, innerMtu: 1450, want: 2, timeoutMs: 10_000 });
    await rx.ready;
    const tx = await addonInNetns(nsA, 'send', { tap: 'pwgso0', src: '10.77.0.1', dst: '10.77.0.2', vni: VNI, port: 4789,
      batches: [[Buffer.from(entry).toString('base64'), Buffer.from(small).toString('base64')]] }).done;
    expect(tx.results[0].consumed).toBe(2);
    expect(tx.results[0].stats).toMatchObject({ vxlanTunnelSends: 1, vxlanGsoSends: 0, vxlanSegments: 0, sendErrors: 0, udpTunnelGso: true });
    expect(tx.mac).toMatch(/^[0-9a-f]{12}$/);
    const { slots, stats } = await rx.done;
    expect(slots).toHaveLength(2);
    expect(stats.vxlanTunnelReceived).toBe(1);
    const big = Buffer.from(slots[0].data, 'base64');
    expect(slots[0].src).toBe(0x0a4d0001);
    expect([...big.subarray(0, 8)]).toEqual([0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
    // vnet: NEEDS_CSUM, TCPV4, hdr_len 66, gso_size = 1450 - 20 - 32, csum_start 34, offset 16.
    expect([big[8], big[9], le16(big, 10), le16(big, 12), le16(big, 14), le16(big, 16)]).toEqual([1, 1, 66, 1398, 34, 16]);
    expect(slots[0].len).toBe(8 + 12 + frame.length);
    expect(Buffer.from(big.subarray(20)).equals(Buffer.from(frame))).toBe(true);
    // The small frame: unchanged, no offload flags.
    const s = Buffer.from(slots[1].data, 'base64');
    expect([...s.subarray(8, 20)]).toEqual(new Array(12).fill(0));
    expect(Buffer.from(s.subarray(20)).equals(Buffer.from(small.subarray(12)))).toBe(true);
  });

  it.runIf(!kernelHasTunnelGso)('openTunnelTap says the kernel cannot do it', async () => {
    await expect(addonInNetns(nsA, 'send', { tap: 'pwgso0', src: '10.77.0.1', dst: '10.77.0.2', vni: VNI, port: 4789, batches: [] }).done)
      .rejects.toThrow(/openTunnelTap\(pwgso0\): EINVAL/);
  });
});
