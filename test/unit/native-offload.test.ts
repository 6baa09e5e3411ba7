/**
 * The addon's offload paths against the real kernel: TUNSETOFFLOAD on a TAP, SIOCGIFMTU, and
 * super-frames crossing a VXLAN underlay (sendVxlanBatch segments them with UDP_SEGMENT,
 * recvVxlanBatch splits UDP_GRO buffers and coalesces TCP segments back).
 *
 * The UDP-tunnel GSO path (Linux 6.17+) is tested end to end between two private namespaces.
 *
 * Needs root on Linux. The TAP and a veth pair live in a network namespace private to this run
 * (one veth end starts in the root namespace, unconfigured, so getIfMtu can read it there; the
 * MTU test moves it into a namespace of its own, where a helper process sends); the underlay is
 * 127.0.0.1 on random high ports. Nothing is configured in the root namespace. Every checksum the addon
 * writes is checked with the plain JS implementation below (no code shared with the addon), and
 * every payload byte is compared with what was sent. Everything is removed in afterAll.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAddon, OFFLOAD, VNET, type Addon } from '../../src/io/native.ts';
import { SLOT_SIZE, HEADROOM } from '../../src/frame/slab.ts';
import { addonInNetns } from './helpers/netns-helper.ts';
import { hasTapTunnelGso, takesTapUso } from '../kernel.ts';

const canRun =
  process.platform === 'linux' && process.getuid?.() === 0 && existsSync('/dev/net/tun');

const LOOPBACK = 0x7f000001;
const VNI = 0x00abcdef;
const EINVAL = 22;
const VNET_LEN = 12;
const VXLAN_LEN = 8;

const MAC_DST = [0x02, 0, 0, 0, 0, 0x0b];
const MAC_SRC = [0x02, 0, 0, 0, 0, 0x0a];
const IP_SRC = [10, 244, 1, 5];
const IP_DST = [10, 244, 2, 7];
const IP6_SRC = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05];
const IP6_DST = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07];
/** NOP, NOP, timestamp (10 bytes): a 32-byte TCP header, so options are copied and compared too. */
const TCP_OPTS = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_PSH = 0x08, TCP_ACK = 0x10, TCP_CWR = 0x80;

// ---------------------------------------------------------------------------------------------
// Bytes and checksums, the slow obvious way
// ---------------------------------------------------------------------------------------------

const u16 = (b: Uint8Array, o: number) => (b[o] << 8) | b[o + 1];
const u32 = (b: Uint8Array, o: number) => ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
const le16 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
function put32(b: Uint8Array, o: number, v: number): void {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v & 0xffff);
}

/** RFC 1071 ones' complement sum of b[off, off+len) (big-endian words), plus `init`, folded. */
function sum16(b: Uint8Array, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** Pseudo-header sum for the IP header at `ip` (v4 or v6) and an L4 length. */
function pseudo(f: Uint8Array, ip: number, proto: number, l4len: number): number {
  return f[ip] >> 4 === 4
    ? sum16(f, ip + 12, 8, proto + l4len)
    : sum16(f, ip + 8, 32, proto + (l4len >>> 16) + (l4len & 0xffff));
}

/** Does the L4 checksum of the frame's TCP/UDP packet verify? (frame = Ethernet frame) */
function l4ChecksumOk(f: Uint8Array): boolean {
  const v4 = u16(f, 12) === 0x0800;
  const l4 = v4 ? 14 + (f[14] & 0x0f) * 4 : 54;
  const proto = v4 ? f[14 + 9] : f[14 + 6];
  const l4len = v4 ? u16(f, 16) - (f[14] & 0x0f) * 4 : u16(f, 18);
  return sum16(f, l4, l4len, pseudo(f, 14, proto, l4len)) === 0xffff;
}

const ipv4HeaderOk = (f: Uint8Array) => sum16(f, 14, (f[14] & 0x0f) * 4) === 0xffff;

function payloadBytes(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  return p;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface TcpOpts {
  payload: Uint8Array;
  seq?: number;
  ack?: number;
  flags?: number;
  id?: number;
  window?: number;
  v6?: boolean;
  /** Write the TCP checksum as a NEEDS_CSUM partial (pseudo-header sum only) instead of in full. */
  partial?: boolean;
}

/** An Ethernet + IPv4 (DF, TTL 64, TOS 0x10) or IPv6 + TCP (32-byte header) frame. */
function tcpFrame(o: TcpOpts): Uint8Array {
  const v6 = o.v6 ?? false;
  const ipl = v6 ? 40 : 20;
  const thl = 20 + TCP_OPTS.length;
  const f = new Uint8Array(14 + ipl + thl + o.payload.length);
  f.set(MAC_DST, 0);
  f.set(MAC_SRC, 6);
  put16(f, 12, v6 ? 0x86dd : 0x0800);
  const l4 = 14 + ipl;
  const l4len = thl + o.payload.length;
  if (v6) {
    f.set([0x60, 0, 0, 0], 14);
    put16(f, 18, l4len);
    f[20] = 6;
    f[21] = 64;
    f.set(IP6_SRC, 22);
    f.set(IP6_DST, 38);
  } else {
    f.set([0x45, 0x10], 14);
    put16(f, 16, 20 + l4len);
    put16(f, 18, o.id ?? 0x1234);
    put16(f, 20, 0x4000);
    f[22] = 64;
    f[23] = 6;
    f.set(IP_SRC, 26);
    f.set(IP_DST, 30);
    put16(f, 24, ~sum16(f, 14, 20) & 0xffff);
  }
  put16(f, l4, 40000);
  put16(f, l4 + 2, 5201);
  put32(f, l4 + 4, o.seq ?? 0xfffff000); // wraps during the test frames
  put32(f, l4 + 8, o.ack ?? 0x01020304);
  f[l4 + 12] = (thl / 4) << 4;
  f[l4 + 13] = o.flags ?? TCP_ACK;
  put16(f, l4 + 14, o.window ?? 502);
  f.set(TCP_OPTS, l4 + 20);
  f.set(o.payload, l4 + thl);
  const ps = pseudo(f, 14, 6, l4len);
  put16(f, l4 + 16, o.partial ? ps : ~sum16(f, l4, l4len, ps) & 0xffff);
  return f;
}

/** A vnet header (little-endian fields). */
function vnetHdr(flags: number, gsoType: number, hdrLen: number, gsoSize: number, csumStart: number,
  csumOffset: number): Uint8Array {
  const h = new Uint8Array(VNET_LEN);
  const dv = new DataView(h.buffer);
  h[0] = flags;
  h[1] = gsoType;
  dv.setUint16(2, hdrLen, true);
  dv.setUint16(4, gsoSize, true);
  dv.setUint16(6, csumStart, true);
  dv.setUint16(8, csumOffset, true);
  return h;
}

/** [vnet][TCP super-frame] as a TAP with TSO would hand it over: NEEDS_CSUM, partial checksum. */
function tcpSuperEntry(o: TcpOpts & { mss: number }): Uint8Array {
  const f = tcpFrame({ ...o, partial: true });
  const l4 = o.v6 ? 54 : 34;
  const gso = o.v6 ? VNET.GSO_TCPV6 : VNET.GSO_TCPV4;
  return concat([vnetHdr(VNET.F_NEEDS_CSUM, gso, l4 + 32, o.mss, l4, 16), f]);
}

interface UdpOpts { id?: number; sport?: number; ttl?: number; df?: boolean }

/**
 * Ethernet + IPv4 + UDP (default 40000 -> 53, ID 0x4321, TTL 64, no DF) with a payload; checksum
 * complete, partial (pseudo-header sum, as a NEEDS_CSUM sender leaves it), none (0) or bad.
 */
function udpFrame(payload: Uint8Array, csum: 'full' | 'partial' | 'none' | 'bad', o: UdpOpts = {}): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + payload.length);
  f.set(MAC_DST, 0);
  f.set(MAC_SRC, 6);
  put16(f, 12, 0x0800);
  f.set([0x45, 0], 14);
  put16(f, 16, 28 + payload.length);
  put16(f, 18, o.id ?? 0x4321);
  put16(f, 20, o.df ? 0x4000 : 0);
  f[22] = o.ttl ?? 64;
  f[23] = 17;
  f.set(IP_SRC, 26);
  f.set(IP_DST, 30);
  put16(f, 24, ~sum16(f, 14, 20) & 0xffff);
  put16(f, 34, o.sport ?? 40000);
  put16(f, 36, 53);
  put16(f, 38, 8 + payload.length);
  f.set(payload, 42);
  const ps = pseudo(f, 14, 17, 8 + payload.length);
  const full = ~sum16(f, 34, 8 + payload.length, ps) & 0xffff;
  put16(f, 40, { full, partial: ps, none: 0, bad: full ^ 0x0101 }[csum]);
  return f;
}

/** Ethernet + IPv4 + ICMP echo request (complete checksums). */
function icmpFrame(): Uint8Array {
  const f = new Uint8Array(14 + 20 + 16);
  f.set(MAC_DST, 0);
  f.set(MAC_SRC, 6);
  put16(f, 12, 0x0800);
  f.set([0x45, 0, 0, 36, 0, 1, 0x40, 0, 64, 1], 14);
  f.set(IP_SRC, 26);
  f.set(IP_DST, 30);
  put16(f, 24, ~sum16(f, 14, 20) & 0xffff);
  f.set([8, 0, 0, 0, 0, 7, 0, 1, 0x70, 0x6f, 0x64, 0x77, 0x69, 0x72, 0x65, 0x21], 34);
  put16(f, 36, ~sum16(f, 34, 16) & 0xffff);
  return f;
}

// ---------------------------------------------------------------------------------------------

describe.skipIf(!canRun)('native addon offload (root, Linux)', () => {
  const run = randomBytes(4).toString('hex');
  const ns = `pwt-offload-${run}`;
  const tapName = `pwo${run}`;
  const vethRoot = `pwr${run}`;
  const vethNs = `pwn${run}`;
  const ns2 = `pwt-offload2-${run}`;
  let addon: Addon;
  let nsCreated = false;
  let ns2Created = false;
  let vethCreated = false;
  const fds: number[] = [];
  let senders: Int32Array;

  function ip(...args: string[]): string {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  /** A UDP socket on 127.0.0.1 and a random high port. */
  function openLoopbackUdp(): { fd: number; port: number } {
    for (let attempt = 0; ; attempt++) {
      const port = 20000 + Math.floor(Math.random() * 40000);
      try {
        const fd = addon.openUdp(LOOPBACK, port);
        fds.push(fd);
        return { fd, port };
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRINUSE' || attempt > 50) throw e;
      }
    }
  }

  /** Lay entries out in one slab and call sendVxlanBatch; returns the count consumed. */
  function sendEntries(entries: Uint8Array[], port: number, hashes?: number[]): number {
    const slab = new Uint8Array(entries.reduce((n, e) => n + e.length + 7, 0) + 16);
    const offsets = new Uint32Array(entries.length);
    const lens = new Uint32Array(entries.length);
    let at = 3; // odd start: nothing may assume alignment
    entries.forEach((e, i) => {
      slab.set(e, at);
      offsets[i] = at;
      lens[i] = e.length;
      at += e.length + 7;
    });
    const dst = new Uint32Array(entries.length).fill(LOOPBACK);
    const h = Uint32Array.from(hashes ?? entries.map(() => 7));
    const copy = slab.slice();
    const n = addon.sendVxlanBatch(senders, slab, offsets, lens, dst, h, 0, entries.length, VNI, port);
    expect(slab).toEqual(copy); // buf is never written
    return n;
  }

  /** Every datagram waiting on a plain UDP socket (no GRO): [bytes, source port]. */
  function recvAll(fd: number): { data: Uint8Array; port: number }[] {
    const slot = 2048;
    const max = 64;
    const buf = new Uint8Array(slot * max);
    const lens = new Int32Array(max);
    const addrs = new Uint32Array(max);
    const ports = new Uint16Array(max);
    const out: { data: Uint8Array; port: number }[] = [];
    for (;;) {
      const n = addon.recvBatch(fd, buf, 0, slot, 0, max, lens, addrs, ports);
      for (let i = 0; i < n; i++) {
        expect(lens[i]).toBeGreaterThan(0);
        out.push({ data: buf.slice(i * slot, i * slot + lens[i]), port: ports[i] });
      }
      if (n < max) return out;
    }
  }

  interface Slot { vxlan: Uint8Array; vnet: Uint8Array; frame: Uint8Array; len: number; src: number }

  /** Call recvVxlanBatch until it returns less than maxFrames; collect the slots. */
  function recvVxlan(fd: number, maxFrames = 8, slotSize = SLOT_SIZE, innerMtu?: number): Slot[] {
    const buf = new Uint8Array(slotSize * (maxFrames + 1)).fill(0xee);
    const lens = new Int32Array(maxFrames);
    const srcs = new Uint32Array(maxFrames);
    const out: Slot[] = [];
    for (;;) {
      const n = addon.recvVxlanBatch(fd, buf, 1, slotSize, HEADROOM, maxFrames, lens, srcs, innerMtu);
      // Nothing outside the slots handed over, nor in the headroom, is touched.
      expect(buf.subarray(0, slotSize + HEADROOM).every((b) => b === 0xee)).toBe(true);
      for (let i = 0; i < n; i++) {
        const at = (1 + i) * slotSize + HEADROOM;
        const len = lens[i];
        if (len < 0) {
          out.push({ vxlan: new Uint8Array(0), vnet: new Uint8Array(0), frame: new Uint8Array(0), len, src: srcs[i] });
          continue;
        }
        expect(len).toBeLessThanOrEqual(slotSize - HEADROOM);
        out.push({
          vxlan: buf.slice(at, at + VXLAN_LEN),
          vnet: buf.slice(at + VXLAN_LEN, at + VXLAN_LEN + VNET_LEN),
          frame: buf.slice(at + VXLAN_LEN + VNET_LEN, at + len),
          len,
          src: srcs[i],
        });
      }
      buf.fill(0xee);
      if (n < maxFrames) return out;
    }
  }

  const vxlanHeader = [0x08, 0, 0, 0, (VNI >> 16) & 0xff, (VNI >> 8) & 0xff, VNI & 0xff, 0];

  beforeAll(() => {
    addon = loadAddon();
    ip('netns', 'add', ns);
    nsCreated = true;
    ip('link', 'add', vethRoot, 'mtu', '1450', 'type', 'veth', 'peer', 'name', vethNs, 'netns', ns);
    vethCreated = true;
    senders = addon.openUdpSender(LOOPBACK, 0, 4);
    fds.push(...senders);
  });

  afterAll(() => {
    for (const fd of fds.splice(0)) {
      try {
        addon.closeFd(fd);
      } catch {
        // closed by a test already
      }
    }
    if (vethCreated) {
      try {
        ip('link', 'del', vethRoot);
      } catch {
        // gone with the namespace
      }
    }
    if (nsCreated) ip('netns', 'del', ns);
    if (ns2Created) ip('netns', 'del', ns2);
  });

  it('exports the offload surface and the constants', () => {
    for (const name of ['setOffload', 'getIfMtu', 'enableUdpGro', 'openUdpSender', 'sendVxlanBatch', 'recvVxlanBatch']) {
      expect(typeof (addon as unknown as Record<string, unknown>)[name]).toBe('function');
    }
    expect(OFFLOAD).toMatchObject({ CSUM: 1, TSO4: 2, TSO6: 4, TSO_ECN: 8, UFO: 16, USO4: 32, USO6: 64 });
    expect(addon.stats()).toMatchObject({
      tapUdpGsoWrites: expect.any(Number), tapUdpGsoDatagrams: expect.any(Number), tapUdpGso: true, vxlanSegments: expect.any(Number), vxlanGsoSends: expect.any(Number), vxlanPlainGsoSends: expect.any(Number), vxlanPlainGsoDatagrams: expect.any(Number), vxlanTunnelSends: expect.any(Number), vxlanTunnelReceived: expect.any(Number), udpTunnelGso: expect.any(Boolean), sendErrors: expect.any(Number),
      vxlanSuperFrames: expect.any(Number), vxlanCoalesced: expect.any(Number), vxlanCsumErrors: expect.any(Number),
      udpSegment: true,
    });
  });

  it('setOffload probes a TAP moved into the namespace: CSUM|TSO4|TSO6 works, nonsense is EINVAL', () => {
    const tap = addon.openTap(tapName, true);
    fds.push(tap.fd);
    ip('link', 'set', 'dev', tapName, 'netns', ns);
    ip('-n', ns, 'link', 'set', 'dev', tapName, 'up');
    expect(addon.setOffload(tap.fd, OFFLOAD.CSUM | OFFLOAD.TSO4 | OFFLOAD.TSO6)).toBe(0);
    expect(ip('-n', ns, '-d', 'link', 'show', tapName)).toContain(tapName);
    // Kernel 6.2+ also knows USO; TSO without CSUM and unknown bits are refused.
    expect(addon.setOffload(tap.fd, OFFLOAD.CSUM | OFFLOAD.TSO4 | OFFLOAD.TSO6 | OFFLOAD.USO4 | OFFLOAD.USO6)).toBe(0);
    expect(addon.setOffload(tap.fd, OFFLOAD.TSO4)).toBe(EINVAL);
    expect(addon.setOffload(tap.fd, 0x8000_0000)).toBe(EINVAL);
    // The tunnel-GSO bits (Linux 6.17+) are accepted with a plain GSO bit: report, not require.
    const tunnel = addon.setOffload(tap.fd, OFFLOAD.CSUM | OFFLOAD.TSO4 | OFFLOAD.UDP_TUNNEL_GSO);
    expect([0, EINVAL]).toContain(tunnel);
    expect(addon.setOffload(tap.fd, 0)).toBe(0);
    // Not a TAP: the errno, no exception.
    expect(addon.setOffload(senders[0], OFFLOAD.CSUM)).not.toBe(0);
  });

  it('getIfMtu reads an interface MTU in the caller\'s namespace (veth end 1450, lo); ENODEV otherwise', () => {
    expect(addon.getIfMtu(vethRoot)).toBe(1450);
    ip('link', 'set', 'dev', vethRoot, 'mtu', '1400');
    expect(addon.getIfMtu(vethRoot)).toBe(1400);
    expect(addon.getIfMtu('lo')).toBe(65536);
    // The other end lives in the test namespace, invisible from here.
    expect(() => addon.getIfMtu(vethNs)).toThrow(expect.objectContaining({ code: 'ENODEV' }));
    expect(() => addon.getIfMtu('x'.repeat(16))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('openUdpSender binds consecutive ports and rejects bad ranges', () => {
    const { fd: rfd, port } = openLoopbackUdp();
    // Find 3 free consecutive ports by trying.
    let pool: Int32Array | undefined;
    let base = 0;
    for (let attempt = 0; attempt < 50 && !pool; attempt++) {
      base = 20000 + Math.floor(Math.random() * 40000);
      try {
        pool = addon.openUdpSender(LOOPBACK, base, 3);
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRINUSE') throw e;
      }
    }
    expect(pool).toBeInstanceOf(Int32Array);
    fds.push(...pool!);
    // One small frame per socket (hash i picks socket i): the source ports tell them apart.
    const f = icmpFrame();
    const e = concat([vnetHdr(0, 0, 0, 0, 0, 0), f]);
    const slab = concat([e, e, e]);
    const offsets = Uint32Array.from([0, e.length, 2 * e.length]);
    const lens = new Uint32Array(3).fill(e.length);
    expect(addon.sendVxlanBatch(pool!, slab, offsets, lens, new Uint32Array(3).fill(LOOPBACK),
      Uint32Array.from([0, 1, 5]), 0, 3, VNI, port)).toBe(3);
    expect(recvAll(rfd).map((d) => d.port).sort()).toEqual([base, base + 1, base + 2]);
    expect(() => addon.openUdpSender(LOOPBACK, 65535, 2)).toThrow(RangeError);
    expect(() => addon.openUdpSender(LOOPBACK, 0, 0)).toThrow(RangeError);
    expect(() => addon.openUdpSender(LOOPBACK, base, 1)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
  });

  // The reference super-frame: 20000 bytes of TCP in gso_size 1400 pieces, ACK|PSH.
  const PAYLOAD = payloadBytes(20000, 42);
  const MSS = 1400;
  const NSEG = Math.ceil(PAYLOAD.length / MSS); // 15
  const SEQ0 = 0xfffff000; // the sequence numbers wrap past 2^32 inside the frame
  const ID0 = 0xfff8; // so do the IPv4 IDs
  const superEntry = () => tcpSuperEntry({ payload: PAYLOAD, mss: MSS, flags: TCP_ACK | TCP_PSH, seq: SEQ0, id: ID0 });

  /** Check one received VXLAN datagram as segment i of a TCP super-frame. */
  function checkSegment(d: Uint8Array, i: number, n: number, payload: Uint8Array, mss: number, flagsIn: number,
    v6 = false): void {
    expect([...d.subarray(0, 8)]).toEqual(vxlanHeader);
    const f = d.subarray(VXLAN_LEN);
    const l4 = v6 ? 54 : 34;
    const plen = i < n - 1 ? mss : payload.length - (n - 1) * mss;
    expect(f.length).toBe(l4 + 32 + plen);
    expect([...f.subarray(0, 12)]).toEqual([...MAC_DST, ...MAC_SRC]);
    if (v6) {
      expect(u16(f, 18)).toBe(32 + plen);
    } else {
      expect(u16(f, 16)).toBe(20 + 32 + plen);
      expect(u16(f, 18)).toBe((ID0 + i) & 0xffff);
      expect(ipv4HeaderOk(f)).toBe(true);
    }
    expect(u32(f, l4 + 4)).toBe((SEQ0 + i * mss) >>> 0);
    let flags = flagsIn;
    if (i < n - 1) flags &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) flags &= ~TCP_CWR;
    expect(f[l4 + 13]).toBe(flags);
    expect([...f.subarray(l4 + 20, l4 + 32)]).toEqual(TCP_OPTS);
    expect(l4ChecksumOk(f)).toBe(true);
    expect(f.subarray(l4 + 32)).toEqual(payload.subarray(i * mss, i * mss + plen));
  }

  it('sendVxlanBatch segments a TCP super-frame into MSS packets sent with one UDP_SEGMENT send', () => {
    const { fd, port } = openLoopbackUdp();
    const before = addon.stats();
    expect(sendEntries([superEntry()], port)).toBe(1);
    const got = recvAll(fd);
    expect(got).toHaveLength(NSEG);
    for (let i = 0; i < NSEG; i++) checkSegment(got[i].data, i, NSEG, PAYLOAD, MSS, TCP_ACK | TCP_PSH);
    expect(new Set(got.map((d) => d.port)).size).toBe(1); // one socket per flow
    const after = addon.stats();
    expect(after.vxlanSegments - before.vxlanSegments).toBe(NSEG);
    expect(after.vxlanGsoSends - before.vxlanGsoSends).toBe(1);
    expect(after.sendErrors).toBe(before.sendErrors);
  });

  it('sendVxlanBatch: FIN/PSH only on the last segment, CWR only on the first; a 64 KiB frame takes two sends', () => {
    const { fd, port } = openLoopbackUdp();
    const payload = payloadBytes(65000, 7);
    const mss = 1448;
    const n = Math.ceil(payload.length / mss); // 45 segments of 1522-byte datagrams > 65507 bytes
    const flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR;
    const before = addon.stats();
    expect(sendEntries([tcpSuperEntry({ payload, mss, flags, seq: SEQ0, id: ID0 })], port)).toBe(1);
    const got = recvAll(fd);
    expect(got).toHaveLength(n);
    for (let i = 0; i < n; i++) checkSegment(got[i].data, i, n, payload, mss, flags);
    expect(addon.stats().vxlanGsoSends - before.vxlanGsoSends).toBe(2);
  });

  it('sendVxlanBatch segments TCP over IPv6 and UDP_L4 (USO) super-frames too', () => {
    const { fd, port } = openLoopbackUdp();
    const payload = payloadBytes(5000, 9);
    const v6 = tcpSuperEntry({ payload, mss: 1200, flags: TCP_ACK, seq: SEQ0, v6: true });
    // A UDP super-frame: one UDP header for 5000 bytes, to be cut into 1000-byte datagrams.
    const big = udpFrame(payload, 'partial');
    put16(big, 16, 0); // the total lengths of a GSO frame are not trusted
    const uso = concat([vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_UDP_L4, 42, 1000, 34, 6), big]);
    expect(sendEntries([v6, uso], port)).toBe(2);
    const got = recvAll(fd);
    expect(got).toHaveLength(5 + 5);
    for (let i = 0; i < 5; i++) checkSegment(got[i].data, i, 5, payload, 1200, TCP_ACK, true);
    for (let i = 0; i < 5; i++) {
      const f = got[5 + i].data.subarray(VXLAN_LEN);
      expect(f.length).toBe(42 + 1000);
      expect(u16(f, 16)).toBe(28 + 1000);
      expect(u16(f, 18)).toBe((0x4321 + i) & 0xffff);
      expect(ipv4HeaderOk(f)).toBe(true);
      expect(u16(f, 38)).toBe(1008);
      expect(l4ChecksumOk(f)).toBe(true);
      expect(f.subarray(42)).toEqual(payload.subarray(i * 1000, (i + 1) * 1000));
    }
  });

  it('sendVxlanBatch: non-TCP frames pass unchanged, NEEDS_CSUM UDP gets its checksum; bad entries are counted', () => {
    const { fd, port } = openLoopbackUdp();
    const icmp = icmpFrame();
    const udpFull = udpFrame(payloadBytes(333, 3), 'full'); // odd length: the padding byte
    const udpPartial = udpFrame(payloadBytes(333, 3), 'partial');
    const arp = new Uint8Array(42).fill(0x5a);
    put16(arp, 12, 0x0806);
    const tcpSmall = tcpFrame({ payload: payloadBytes(100, 4), partial: true, flags: TCP_ACK | TCP_SYN });
    const entries = [
      concat([vnetHdr(0, 0, 0, 0, 0, 0), icmp]),
      concat([vnetHdr(VNET.F_NEEDS_CSUM, 0, 0, 0, 34, 6), udpPartial]),
      concat([vnetHdr(0, 0, 0, 0, 0, 0), arp]),
      concat([vnetHdr(VNET.F_NEEDS_CSUM, 0, 0, 0, 34, 16), tcpSmall]),
      concat([vnetHdr(VNET.F_NEEDS_CSUM, 0, 0, 0, 34, 6000), udpPartial]), // offset past the end
      concat([vnetHdr(0, VNET.GSO_UDP, 0, 1000, 0, 0), udpPartial]), // UFO: unsupported
      new Uint8Array(20), // shorter than vnet + Ethernet
      concat([vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_TCPV4, 0, 1400, 0, 0), udpPartial]), // TCPV4 but UDP
    ];
    const before = addon.stats().sendErrors;
    // Alternate sockets, so the sendmmsg batch is split by socket too.
    expect(sendEntries(entries, port, [0, 1, 1, 2, 0, 0, 0, 0])).toBe(entries.length);
    expect(addon.stats().sendErrors - before).toBe(4);
    const got = recvAll(fd).map((d) => d.data);
    expect(got).toHaveLength(4);
    for (const d of got) expect([...d.subarray(0, 8)]).toEqual(vxlanHeader);
    expect(got[0].subarray(8)).toEqual(icmp);
    expect(got[1].subarray(8)).toEqual(udpFull);
    expect(l4ChecksumOk(got[1].subarray(8))).toBe(true);
    expect(got[2].subarray(8)).toEqual(arp);
    expect(l4ChecksumOk(got[3].subarray(8))).toBe(true);
    expect(got[3].subarray(8 + 34 + 18)).toEqual(tcpSmall.subarray(34 + 18));
  });

  it('sendVxlanBatch sends runs of equal-size small frames as one UDP_SEGMENT message; the receiver gets the same datagrams', () => {
    const { fd, port } = openLoopbackUdp();
    const small = (seed: number, len: number) => udpFrame(payloadBytes(len, seed), 'full');
    const plain = (f: Uint8Array) => concat([vnetHdr(0, 0, 0, 0, 0, 0), f]);
    // Socket 0: a run of 5 (the last one shorter, which ends it), then a run of 3 of another size,
    // then a lone larger frame (a run never grows); socket 1 (another flow hash): a run of 2.
    // Four messages carry the 11 datagrams, three of them with UDP_SEGMENT.
    const frames = [
      small(1, 64), small(2, 64), small(3, 64), small(4, 64), small(5, 30),
      small(6, 200), small(7, 200), small(8, 200),
      small(9, 300),
      small(10, 90), small(11, 90),
    ];
    const hashes = [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    const before = addon.stats();
    expect(sendEntries(frames.map(plain), port, hashes)).toBe(frames.length);
    const after = addon.stats();
    expect(after.vxlanPlainGsoSends - before.vxlanPlainGsoSends).toBe(3);
    expect(after.vxlanPlainGsoDatagrams - before.vxlanPlainGsoDatagrams).toBe(10);
    expect(after.sendErrors).toBe(before.sendErrors);
    // This receiver has no UDP_GRO: the kernel cut the runs into the original datagrams, in order.
    const got = recvAll(fd).map((d) => d.data);
    expect(got).toHaveLength(frames.length);
    got.forEach((d, i) => {
      expect([...d.subarray(0, 8)]).toEqual(vxlanHeader);
      expect(d.subarray(8)).toEqual(frames[i]);
    });
  });

  it('sendVxlanBatch: segments too big for the route MTU fall back to single sends, without giving up UDP_SEGMENT', async () => {
    // The sender runs in a namespace of its own (helpers/addon-in-netns.ts), with the veth's other
    // end moved there: 10.95.0.1/30 (MTU 1400) -> 10.95.0.2 in `ns`. Its stats start at zero.
    const ns3 = `pwt-offload3-${run}`;
    ip('netns', 'add', ns3);
    try {
      ip('link', 'set', 'dev', vethRoot, 'netns', ns3);
      vethCreated = false;
      ip('-n', ns3, 'addr', 'add', '10.95.0.1/30', 'dev', vethRoot);
      ip('-n', ns3, 'link', 'set', 'dev', vethRoot, 'mtu', '1400', 'up');
      ip('-n', ns, 'addr', 'add', '10.95.0.2/30', 'dev', vethNs);
      ip('-n', ns, 'link', 'set', 'dev', vethNs, 'up');
      const b64 = (e: Uint8Array) => Buffer.from(e).toString('base64');
      const superEntry = (mss: number) => b64(tcpSuperEntry({ payload: PAYLOAD, mss, flags: TCP_ACK, seq: SEQ0, id: ID0 }));
      const plain = (payloadLen: number) => b64(concat([vnetHdr(0, 0, 0, 0, 0, 0), udpFrame(payloadBytes(payloadLen, 5), 'full')]));
      const { results } = await addonInNetns(ns3, 'send', {
        src: '10.95.0.1', dst: '10.95.0.2', vni: VNI, port: 4789,
        batches: [
          [superEntry(MSS)],                                            // 8 + 66 + 1400 > 1400 - 28
          [superEntry(1000)],                                           // fits
          [plain(1408 - 8 - 42), plain(1408 - 8 - 42), plain(1408 - 8 - 42)],  // too big as a run
          [plain(1000 - 8 - 42), plain(1000 - 8 - 42), plain(1000 - 8 - 42)],  // fits
        ],
      }).done;
      type S = { vxlanGsoSends: number; vxlanSegments: number; sendErrors: number; udpSegment: boolean; vxlanPlainGsoSends: number; vxlanPlainGsoDatagrams: number };
      const st: S[] = results.map((r: { stats: S }) => r.stats);
      expect(results.map((r: { consumed: number }) => r.consumed)).toEqual([1, 1, 3, 3]);
      // UDP_SEGMENT says EMSGSIZE; the single datagrams go out (fragmented, as a UDP socket does by
      // default), and UDP_SEGMENT is not given up.
      expect(st[0]).toMatchObject({ vxlanGsoSends: 0, vxlanSegments: NSEG, sendErrors: 0, udpSegment: true });
      // 8 + 66 + 1000 fit: one UDP_SEGMENT send.
      expect(st[1].vxlanGsoSends).toBe(1);
      expect(st[1].vxlanSegments - st[0].vxlanSegments).toBe(20);
      // Small frames: the run of 1408-byte datagrams is refused as one message and goes one by one;
      // the run of 1000-byte ones leaves as one message.
      expect(st[2]).toMatchObject({ vxlanPlainGsoSends: 0, sendErrors: 0, udpSegment: true });
      expect(st[3]).toMatchObject({ vxlanPlainGsoSends: 1, vxlanPlainGsoDatagrams: 3, sendErrors: 0 });
    } finally {
      ip('netns', 'del', ns3);
    }
  });

  // The UDP-tunnel GSO path: sender and receiver each in a namespace of their own (helper
  // processes), joined by a veth pair 10.77.0.1 <-> 10.77.0.2.
  const kernelHasTunnelGso = hasTapTunnelGso(release());
  async function withNamespacePair(fn: (a: string, b: string) => Promise<void>): Promise<void> {
    const a = `pwt-tnl-a-${run}`, b = `pwt-tnl-b-${run}`;
    ip('netns', 'add', a);
    try {
      ip('netns', 'add', b);
      ip('link', 'add', `pwva${run}`, 'netns', a, 'type', 'veth', 'peer', `pwvb${run}`, 'netns', b);
      ip('-n', a, 'addr', 'add', '10.77.0.1/24', 'dev', `pwva${run}`);
      ip('-n', b, 'addr', 'add', '10.77.0.2/24', 'dev', `pwvb${run}`);
      ip('-n', a, 'link', 'set', `pwva${run}`, 'up');
      ip('-n', b, 'link', 'set', `pwvb${run}`, 'up');
      await fn(a, b);
    } finally {
      for (const n of [a, b]) { try { ip('netns', 'del', n); } catch { /* not created */ } }
    }
  }

  it.runIf(kernelHasTunnelGso)('sendVxlanBatch with a tunnel TAP: a super-frame crosses whole and comes out as a super-frame with the inner MTU\'s MSS', async () => {
    await withNamespacePair(async (a, b) => {
      const entry = tcpSuperEntry({ payload: payloadBytes(20 * 1000, 11), mss: 1000, flags: TCP_ACK, seq: SEQ0, id: ID0 });
      const small = concat([vnetHdr(0, 0, 0, 0, 0, 0), udpFrame(payloadBytes(18, 2), 'full')]); // goes the socket way
      const rx = addonInNetns(b, 'recv', { addr: '10.77.0.2', port: 4789, innerMtu: 1450, want: 2, timeoutMs: 10_000 });
      await rx.ready;
      const tx = await addonInNetns(a, 'send', { tap: 'pwgso0', src: '10.77.0.1', dst: '10.77.0.2', vni: VNI, port: 4789,
        batches: [[Buffer.from(entry).toString('base64'), Buffer.from(small).toString('base64')]] }).done;
      expect(tx.results[0].consumed).toBe(2);
      expect(tx.results[0].stats).toMatchObject({ vxlanTunnelSends: 1, vxlanGsoSends: 0, vxlanSegments: 0, sendErrors: 0, udpTunnelGso: true });
      const { slots, stats } = await rx.done;
      expect(slots).toHaveLength(2);
      expect(stats.vxlanTunnelReceived).toBe(1);
      const big = Uint8Array.from(Buffer.from(slots[0].data, 'base64'));
      expect(slots[0].src).toBe(0x0a4d0001);
      expect([...big.subarray(0, VXLAN_LEN)]).toEqual(vxlanHeader);
      // NEEDS_CSUM, TCPV4, hdr_len 66, gso_size = 1450 - 20 - 32, csum_start 34, offset 16.
      expect(big.subarray(VXLAN_LEN, VXLAN_LEN + VNET_LEN)).toEqual(vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_TCPV4, 66, 1398, 34, 16));
      expect(big.subarray(VXLAN_LEN + VNET_LEN)).toEqual(entry.subarray(VNET_LEN));
      const s2 = Uint8Array.from(Buffer.from(slots[1].data, 'base64'));
      expect(s2.subarray(VXLAN_LEN, VXLAN_LEN + VNET_LEN)).toEqual(new Uint8Array(VNET_LEN));
      expect(s2.subarray(VXLAN_LEN + VNET_LEN)).toEqual(small.subarray(VNET_LEN));
    });
  });

  it.runIf(!kernelHasTunnelGso)('openTunnelTap says when the kernel cannot do UDP-tunnel GSO', async () => {
    await withNamespacePair(async (a) => {
      await expect(addonInNetns(a, 'send', { tap: 'pwgso0', src: '10.77.0.1', dst: '10.77.0.2', vni: VNI, port: 4789, batches: [] }).done)
        .rejects.toThrow(/openTunnelTap\(pwgso0\): EINVAL from TUNSETOFFLOAD/);
    });
  });

  it('sendVxlanBatch rejects misuse before any syscall', () => {
    const A = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
    const b = new Uint8Array(100);
    const one = new Uint32Array(1);
    expect(() => addon.sendVxlanBatch(new Int32Array(0), b, one, one, one, one, 0, 1, 1, 4789)).toThrow(RangeError);
    expect(() => addon.sendVxlanBatch(Int32Array.of(-1), b, one, one, one, one, 0, 1, 1, 4789)).toThrow(RangeError);
    expect(() => addon.sendVxlanBatch(senders, b, one, one, one, new Uint32Array(0), 0, 1, 1, 4789)).toThrow(RangeError);
    expect(() => addon.sendVxlanBatch(senders, b, one, one, one, one, 0, 1, 1 << 24, 4789)).toThrow(RangeError);
    expect(() => A.sendVxlanBatch([3], b, one, one, one, one, 0, 1, 1, 4789)).toThrow(TypeError);
    expect(() => A.recvVxlanBatch(senders[0], b, 0, 50, 0, 2, new Int32Array(2), new Uint32Array(1))).toThrow(RangeError);
    expect(() => A.recvVxlanBatch(senders[0], b, 0, 50, 0, 3, new Int32Array(3), new Uint32Array(3))).toThrow(RangeError);
    expect(() => A.setOffload('x', 1)).toThrow(TypeError);
    expect(() => A.getIfMtu(3)).toThrow(TypeError);
  });

  /** The frame and vnet header recvVxlanBatch must produce for `entry` (a super-frame it rebuilt). */
  function expectSameSuperFrame(s: Slot, entry: Uint8Array): void {
    expect([...s.vxlan]).toEqual(vxlanHeader);
    expect(s.vnet).toEqual(entry.subarray(0, VNET_LEN));
    expect(s.frame.length).toBe(entry.length - VNET_LEN);
    expect(s.frame).toEqual(entry.subarray(VNET_LEN));
  }

  it('recvVxlanBatch splits a UDP_GRO buffer and coalesces the segments into the original super-frame', () => {
    const { fd, port } = openLoopbackUdp();
    expect(addon.enableUdpGro(fd)).toBe(true);
    const entry = superEntry();
    const before = addon.stats();
    expect(sendEntries([entry], port)).toBe(1);
    const slots = recvVxlan(fd);
    expect(slots).toHaveLength(1);
    // Byte for byte what a TAP with TSO would have produced: vnet {NEEDS_CSUM, TCPV4, hdr_len 66,
    // gso_size 1400, csum_start 34, csum_offset 16}, IPv4 length/ID/checksum of the whole, TCP
    // checksum field = pseudo-header sum for 32 + 20000 bytes.
    expectSameSuperFrame(slots[0], entry);
    expect(slots[0].src).toBe(LOOPBACK);
    expect(slots[0].len).toBe(8 + 12 + 14 + 20 + 32 + 20000);
    const v = slots[0].vnet;
    expect([v[0], v[1], le16(v, 2), le16(v, 4), le16(v, 6), le16(v, 8)]).toEqual([1, 1, 66, 1400, 34, 16]);
    const after = addon.stats();
    expect(after.vxlanSuperFrames - before.vxlanSuperFrames).toBe(1);
    expect(after.vxlanCoalesced - before.vxlanCoalesced).toBe(NSEG);
  });

  /** The segments of the reference super-frame as separate VXLAN datagrams (made by the addon). */
  function referenceSegments(): Uint8Array[] {
    const { fd, port } = openLoopbackUdp();
    expect(sendEntries([superEntry()], port)).toBe(1);
    const segs = recvAll(fd).map((d) => d.data);
    expect(segs).toHaveLength(NSEG);
    return segs;
  }

  /** Send datagrams one by one (plain sendBatch: no UDP_SEGMENT, so no GRO buffer either). */
  function sendDatagrams(dgrams: Uint8Array[], port: number): void {
    const { fd } = openLoopbackUdp();
    const slab = concat(dgrams);
    const offsets = new Uint32Array(dgrams.length);
    const lens = Uint32Array.from(dgrams.map((d) => d.length));
    for (let i = 1; i < dgrams.length; i++) offsets[i] = offsets[i - 1] + lens[i - 1];
    const n = dgrams.length;
    expect(addon.sendBatch(fd, slab, offsets, lens, new Uint32Array(n).fill(LOOPBACK),
      new Uint16Array(n).fill(port), 0, n)).toBe(n);
  }

  it('recvVxlanBatch coalesces separate datagrams (one recvmmsg, many buffers) the same way', () => {
    const segs = referenceSegments();
    const { fd, port } = openLoopbackUdp();
    sendDatagrams(segs, port);
    const slots = recvVxlan(fd, 64);
    expect(slots).toHaveLength(1);
    expectSameSuperFrame(slots[0], superEntry());
  });

  it('recvVxlanBatch never merges a segment with a bad checksum, and passes it on unverified', () => {
    const segs = referenceSegments();
    const bad = segs[5].slice();
    bad[VXLAN_LEN + 14 + 20 + 32 + 100] ^= 0x01; // one payload bit
    segs[5] = bad;
    const { fd, port } = openLoopbackUdp();
    const before = addon.stats().vxlanCsumErrors;
    sendDatagrams(segs, port);
    const slots = recvVxlan(fd, 64);
    expect(slots).toHaveLength(3);
    expect(addon.stats().vxlanCsumErrors - before).toBe(1);
    // Segments 0-4 merged (gso_size 1400), segment 5 alone (vnet all zero), 6-14 merged.
    expect([slots[0].vnet[0], slots[0].vnet[1], le16(slots[0].vnet, 4)]).toEqual([1, 1, MSS]);
    expect(slots[0].frame.subarray(66)).toEqual(PAYLOAD.subarray(0, 5 * MSS));
    expect(u16(slots[0].frame, 16)).toBe(20 + 32 + 5 * MSS);
    expect(slots[0].frame[47] & TCP_PSH).toBe(0);
    expect([...slots[1].vnet]).toEqual(new Array(12).fill(0));
    expect(slots[1].frame).toEqual(bad.subarray(VXLAN_LEN));
    expect([slots[2].vnet[0], slots[2].vnet[1], le16(slots[2].vnet, 4)]).toEqual([1, 1, MSS]);
    expect(slots[2].frame.subarray(66)).toEqual(PAYLOAD.subarray(6 * MSS));
    expect(u32(slots[2].frame, 38)).toBe((SEQ0 + 6 * MSS) >>> 0);
    expect(slots[2].frame[47]).toBe(TCP_ACK | TCP_PSH); // the last segment's PSH
    for (const k of [0, 2]) {
      const f = slots[k].frame;
      expect(ipv4HeaderOk(f)).toBe(true);
      // The checksum field is the pseudo-header sum: completing it gives a valid checksum.
      const l4len = f.length - 34;
      const done = f.slice();
      put16(done, 50, ~sum16(f, 34, l4len) & 0xffff);
      expect(l4ChecksumOk(done)).toBe(true);
    }
  });

  it('recvVxlanBatch: flows, gaps, flags and senders that must not merge; a segment alone is DATA_VALID', () => {
    const p = payloadBytes(4000, 5);
    const seg = (i: number, o: Partial<TcpOpts> = {}) =>
      concat([Uint8Array.from(vxlanHeader), tcpFrame({ payload: p.subarray(i * 1000, (i + 1) * 1000), seq: 1000 + i * 1000, id: i, ...o })]);
    const otherVni = seg(1);
    otherVni[6] ^= 1;
    const dgrams = [
      seg(0), seg(1), // merge
      seg(3), // gap in sequence: new run
      seg(2, { flags: TCP_ACK | TCP_SYN }), // SYN: alone, verified
      otherVni, // other VNI: alone
      seg(2, { ack: 7 }), seg(3, { ack: 8, window: 9 }), // a run taking ACK/window from its last
      concat([Uint8Array.from(vxlanHeader), icmpFrame()]),
      new Uint8Array(10), // runt: dropped (-1)
    ];
    const { fd, port } = openLoopbackUdp();
    sendDatagrams(dgrams, port);
    const slots = recvVxlan(fd, 64);
    // vnet flags: NEEDS_CSUM (merged), DATA_VALID (alone, verified), 0 (not TCP), -1: dropped.
    expect(slots.map((s) => (s.len < 0 ? -1 : s.vnet[0]))).toEqual([1, 2, 2, 2, 1, 0, -1]);
    expect(u16(slots[0].frame, 16)).toBe(20 + 32 + 2000);
    expect(slots[0].frame.subarray(66)).toEqual(p.subarray(0, 2000));
    expect(slots[1].frame).toEqual(dgrams[2].subarray(8));
    expect(slots[2].frame).toEqual(dgrams[3].subarray(8));
    expect(slots[3].frame).toEqual(otherVni.subarray(8));
    expect([...slots[3].vxlan]).toEqual([...otherVni.subarray(0, 8)]);
    expect(u32(slots[4].frame, 42)).toBe(8); // ack of the last
    expect(u16(slots[4].frame, 48)).toBe(9); // its window
    expect(slots[4].frame.subarray(66)).toEqual(p.subarray(2000, 4000));
    expect(slots[5].frame).toEqual(icmpFrame());
    expect([...slots[5].vnet]).toEqual(new Array(12).fill(0));
  });

  it('recvVxlanBatch keeps what does not fit for the next call, and stops a super-frame at the slot size', () => {
    const { fd, port } = openLoopbackUdp();
    expect(addon.enableUdpGro(fd)).toBe(true); // before the send, so the kernel keeps it whole
    // 15 UDP datagrams in one GRO buffer (they cannot merge): 4 slots per call.
    const payload = payloadBytes(15 * 500, 11);
    const big = udpFrame(payload, 'partial');
    expect(sendEntries([concat([vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_UDP_L4, 42, 500, 34, 6), big])], port)).toBe(1);
    const buf = new Uint8Array(4 * 2048);
    const lens = new Int32Array(4);
    const srcs = new Uint32Array(4);
    const counts: number[] = [];
    const frames: Uint8Array[] = [];
    for (let k = 0; k < 6; k++) {
      const n = addon.recvVxlanBatch(fd, buf, 0, 2048, 0, 4, lens, srcs);
      counts.push(n);
      for (let i = 0; i < n; i++) frames.push(buf.slice(i * 2048 + 20, i * 2048 + lens[i]));
      // After the first call the socket itself is empty: the rest waits inside the addon.
      if (k === 0) expect(addon.recvBatch(fd, new Uint8Array(2048), 0, 2048, 0, 1, new Int32Array(1), new Uint32Array(1), new Uint16Array(1))).toBe(0);
    }
    expect(counts).toEqual([4, 4, 4, 3, 0, 0]);
    frames.forEach((f, i) => {
      expect(l4ChecksumOk(f)).toBe(true);
      expect(f.subarray(42)).toEqual(payload.subarray(i * 500, (i + 1) * 500));
    });

    // Slots with room for 3 segments of 1400 bytes (plus headers): the 15 segments become 5 frames,
    // the last one holding 1400 + 1400 + 400 bytes.
    expect(sendEntries([superEntry()], port)).toBe(1);
    const slotSize = HEADROOM + 8 + 12 + 66 + 3 * MSS + 100;
    const slots = recvVxlan(fd, 8, slotSize);
    expect(slots.map((s) => s.frame.length)).toEqual([...new Array(4).fill(66 + 3 * MSS), 66 + 2 * MSS + 400]);
    for (const s of slots) expect(le16(s.vnet, 4)).toBe(MSS);
    expect(concat(slots.map((s) => s.frame.subarray(66)))).toEqual(PAYLOAD);
  });

  it('recvVxlanBatch with innerMtu: a datagram holding one whole TCP super-packet becomes a super-frame', () => {
    const { fd, port } = openLoopbackUdp();
    const whole = tcpFrame({ payload: payloadBytes(8000, 9), partial: true, flags: TCP_ACK }); // IPv4 total 8052
    const dgram = concat([Uint8Array.from(vxlanHeader), whole]);
    const before = addon.stats().vxlanTunnelReceived;
    // innerMtu 1450: longer than one packet may be, so a super-frame with MSS 1450 - 20 - 32.
    sendDatagrams([dgram], port);
    let got = recvVxlan(fd, 8, SLOT_SIZE, 1450);
    expect(got).toHaveLength(1);
    expect(got[0].vnet).toEqual(vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_TCPV4, 66, 1398, 34, 16));
    expect(got[0].frame).toEqual(whole);
    expect(addon.stats().vxlanTunnelReceived - before).toBe(1);
    // innerMtu 9000 (it fits one packet) or no innerMtu: an ordinary datagram, whose partial
    // checksum does not verify, so no offload flags, and a checksum error counted.
    for (const mtu of [9000, undefined]) {
      const errs = addon.stats().vxlanCsumErrors;
      sendDatagrams([dgram], port);
      got = recvVxlan(fd, 8, SLOT_SIZE, mtu);
      expect(got).toHaveLength(1);
      expect(got[0].vnet).toEqual(new Uint8Array(VNET_LEN));
      expect(got[0].frame).toEqual(whole);
      expect(addon.stats().vxlanCsumErrors - errs).toBe(1);
    }
    expect(addon.stats().vxlanTunnelReceived - before).toBe(1);
  });

  it('closeFd forgets datagrams held for a socket', () => {
    const { fd, port } = openLoopbackUdp();
    expect(addon.enableUdpGro(fd)).toBe(true);
    const big = udpFrame(payloadBytes(10 * 100, 1), 'partial');
    expect(sendEntries([concat([vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_UDP_L4, 42, 100, 34, 6), big])], port)).toBe(1);
    const buf = new Uint8Array(2 * 512);
    expect(addon.recvVxlanBatch(fd, buf, 0, 512, 0, 2, new Int32Array(2), new Uint32Array(2))).toBe(2);
    addon.closeFd(fd);
    fds.splice(fds.indexOf(fd), 1);
    const again = openLoopbackUdp();
    // Whatever number the new socket got, it starts empty.
    expect(addon.recvVxlanBatch(again.fd, buf, 0, 512, 0, 2, new Int32Array(2), new Uint32Array(2))).toBe(0);
  });
  it('end to end: a real TCP transfer between two namespaces through TSO TAPs and this VXLAN path', async () => {
    // ns (client 10.97.0.1, TAP A) <-> [readBatch -> sendVxlanBatch -> 127.0.0.1 -> recvVxlanBatch
    // -> writeBatch] <-> ns2 (server 10.97.0.2, TAP B). Both TAPs take and give 64 KiB super-frames
    // (CSUM|TSO4|TSO6), so the kernel's own TSO frames are what sendVxlanBatch cuts, and what
    // recvVxlanBatch rebuilds is what the server's TCP stack receives.
    ip('netns', 'add', ns2);
    ns2Created = true;
    const taps = [
      { name: `pwa${run}`, ns, mac: '02:00:00:00:97:01', addr: '10.97.0.1', peer: '10.97.0.2', peerMac: '02:00:00:00:97:02' },
      { name: `pwb${run}`, ns: ns2, mac: '02:00:00:00:97:02', addr: '10.97.0.2', peer: '10.97.0.1', peerMac: '02:00:00:00:97:01' },
    ].map((t) => {
      const h = addon.openTap(t.name, true);
      fds.push(h.fd);
      expect(addon.setOffload(h.fd, OFFLOAD.CSUM | OFFLOAD.TSO4 | OFFLOAD.TSO6)).toBe(0);
      ip('link', 'set', 'dev', t.name, 'netns', t.ns);
      execFileSync('ip', ['netns', 'exec', t.ns, 'sh', '-c',
        'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6']);
      ip('-n', t.ns, 'link', 'set', 'dev', t.name, 'address', t.mac, 'mtu', '1450', 'up');
      ip('-n', t.ns, 'addr', 'add', `${t.addr}/24`, 'dev', t.name);
      ip('-n', t.ns, 'neigh', 'replace', t.peer, 'lladdr', t.peerMac, 'dev', t.name);
      return h.fd;
    });
    // rx[k]: the underlay socket whose datagrams are written to taps[k].
    const rx = [openLoopbackUdp(), openLoopbackUdp()];
    let drops = 0;
    const watchers: { stop(): void }[] = [];
    const before = addon.stats();

    function tapToUnderlay(tapFd: number, port: number) {
      const slab = new Uint8Array(SLOT_SIZE * 64);
      const lens = new Int32Array(64);
      const offs = new Uint32Array(64), ls = new Uint32Array(64), hs = new Uint32Array(64);
      const dsts = new Uint32Array(64).fill(LOOPBACK);
      return () => {
        for (;;) {
          const n = addon.readBatch(tapFd, slab, 0, SLOT_SIZE, HEADROOM, 64, lens);
          let k = 0;
          for (let i = 0; i < n; i++) {
            if (lens[i] < 0) continue;
            offs[k] = i * SLOT_SIZE + HEADROOM;
            ls[k] = lens[i];
            const f = offs[k] + VNET_LEN;
            hs[k] = u16(slab, f + 12) === 0x0800 ? u16(slab, f + 34) ^ u16(slab, f + 36) : 0; // flow hash
            k++;
          }
          drops += k - addon.sendVxlanBatch(senders, slab, offs, ls, dsts, hs, 0, k, VNI, port);
          if (n < 64) return;
        }
      };
    }
    function underlayToTap(rxFd: number, tapFd: number) {
      const slab = new Uint8Array(SLOT_SIZE * 64);
      const lens = new Int32Array(64), srcs = new Uint32Array(64);
      const offs = new Uint32Array(64), ls = new Uint32Array(64);
      return () => {
        for (;;) {
          const n = addon.recvVxlanBatch(rxFd, slab, 0, SLOT_SIZE, HEADROOM, 64, lens, srcs);
          let k = 0;
          for (let i = 0; i < n; i++) {
            if (lens[i] < 0) continue;
            offs[k] = i * SLOT_SIZE + HEADROOM + VXLAN_LEN; // the TAP takes [vnet][frame]
            ls[k] = lens[i] - VXLAN_LEN;
            k++;
          }
          drops += k - addon.writeBatch(tapFd, slab, offs, ls, 0, k);
          if (n < 64) return; // a full batch may leave datagrams inside the addon: go again
        }
      };
    }
    for (const [fd, cb] of [
      [taps[0], tapToUnderlay(taps[0], rx[1].port)],
      [taps[1], tapToUnderlay(taps[1], rx[0].port)],
      [rx[0].fd, underlayToTap(rx[0].fd, taps[0])],
      [rx[1].fd, underlayToTap(rx[1].fd, taps[1])],
    ] as const) {
      const w = new addon.FdWatcher(fd, cb);
      w.start();
      watchers.push(w);
    }

    const MIB = 64;
    const server = `
      const h = require('crypto').createHash('sha256'); let n = 0;
      const s = require('net').createServer((c) => {
        c.on('data', (d) => { h.update(d); n += d.length; });
        c.on('end', () => { console.log(JSON.stringify({ n, sha: h.digest('hex') })); c.end(); s.close(); });
      });
      s.listen(5201, '10.97.0.2', () => console.log('ready'));`;
    const client = `
      const blk = Buffer.alloc(1 << 20); let x = 12345;
      for (let i = 0; i < blk.length; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; blk[i] = x & 255; }
      const h = require('crypto').createHash('sha256'); let k = 0, t0 = 0;
      const c = require('net').connect(5201, '10.97.0.2', () => {
        t0 = process.hrtime.bigint();
        const w = () => {
          while (k < ${MIB}) { const b = Buffer.from(blk); b.writeUInt32BE(k++, 0); h.update(b); if (!c.write(b)) return c.once('drain', w); }
          c.end();
        };
        w();
      });
      c.on('close', () => console.log(JSON.stringify({ sha: h.digest('hex'), ms: Number(process.hrtime.bigint() - t0) / 1e6 })));
      c.resume();`;
    function runIn(nsName: string, script: string, onLine?: (l: string) => void): Promise<string[]> {
      return new Promise((resolve, reject) => {
        const p = spawn('ip', ['netns', 'exec', nsName, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
        const lines: string[] = [];
        let err = '';
        let partial = '';
        p.stdout.on('data', (d: Buffer) => {
          partial += d.toString();
          const parts = partial.split('\n');
          partial = parts.pop()!;
          for (const l of parts) {
            lines.push(l);
            onLine?.(l);
          }
        });
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        const timer = setTimeout(() => p.kill(), 60_000);
        p.on('close', (code) => {
          clearTimeout(timer);
          if (code === 0) resolve(lines);
          else reject(new Error(`${nsName}: exit ${code}: ${err}`));
        });
      });
    }
    try {
      let ready!: () => void;
      const isReady = new Promise<void>((r) => (ready = r));
      const srv = runIn(ns2, server, (l) => l === 'ready' && ready());
      await isReady;
      const [cli, srvOut] = await Promise.all([runIn(ns, client), srv]);
      const c = JSON.parse(cli[cli.length - 1]) as { sha: string; ms: number };
      const s2 = JSON.parse(srvOut[srvOut.length - 1]) as { n: number; sha: string };
      expect(s2.n).toBe(MIB << 20);
      expect(s2.sha).toBe(c.sha);
      const after = addon.stats();
      // Kernel TSO frames were cut with UDP_SEGMENT, and rebuilt into super-frames on arrival.
      expect(after.vxlanGsoSends).toBeGreaterThan(before.vxlanGsoSends);
      expect(after.vxlanSuperFrames).toBeGreaterThan(before.vxlanSuperFrames);
      expect(after.vxlanCsumErrors).toBe(before.vxlanCsumErrors);
      expect(after.writeErrors).toBe(before.writeErrors);
      console.log(`offload e2e: ${MIB} MiB in ${c.ms.toFixed(0)} ms = ${((MIB * 8 * 1.048576) / c.ms).toFixed(2)} Gbit/s; ` +
        `${after.vxlanSegments - before.vxlanSegments} segments in ${after.vxlanGsoSends - before.vxlanGsoSends} UDP_SEGMENT sends; ` +
        `${after.vxlanCoalesced - before.vxlanCoalesced} segments -> ${after.vxlanSuperFrames - before.vxlanSuperFrames} super-frames; ${drops} drops`);
    } finally {
      for (const w of watchers) w.stop();
    }
  });
  // Linux 6.2 taught TAPs to take UDP_L4 GSO frames; before, the first USO write is EINVAL and the
  // addon stops trying for the process (the VM suite checks that on Debian 12's 6.1).
  const kernelTakesUso = takesTapUso(release());
  it.skipIf(!kernelTakesUso)('writeBatch with udpRuns: runs of UDP datagrams go as one USO write each; a forwarding kernel puts out the same datagrams', async () => {
    // A namespace of its own: TAP W (ours, virtio-net header; we write into it) 10.244.1.1/24 and
    // TAP R (ours, plain; we read from it) 10.244.2.1/24, forwarding between them, 10.244.2.7 a
    // static neighbour behind R. A plain TAP takes no offloads, so the kernel completes every
    // checksum and cuts every USO packet before R: what R hands us is what a wire would carry.
    const usoNs = `pwt-uso-${run}`;
    const wName = `pwuw${run}`, rName = `pwur${run}`;
    ip('netns', 'add', usoNs);
    try {
      const w = addon.openTap(wName, true);
      fds.push(w.fd);
      const r = addon.openTap(rName, false);
      fds.push(r.fd);
      for (const name of [wName, rName]) ip('link', 'set', 'dev', name, 'netns', usoNs);
      ip('-n', usoNs, 'link', 'set', 'dev', wName, 'address', MAC_DST.map((b) => b.toString(16).padStart(2, '0')).join(':'), 'up');
      ip('-n', usoNs, 'link', 'set', 'dev', rName, 'up');
      ip('-n', usoNs, 'addr', 'add', '10.244.1.1/24', 'dev', wName);
      ip('-n', usoNs, 'addr', 'add', '10.244.2.1/24', 'dev', rName);
      ip('-n', usoNs, 'neigh', 'add', '10.244.2.7', 'lladdr', '02:00:00:00:02:07', 'dev', rName, 'nud', 'permanent');
      execFileSync('ip', ['netns', 'exec', usoNs, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', `net.ipv4.conf.${wName}.rp_filter=0`]);
      const rMac = JSON.parse(ip('-n', usoNs, '-j', 'link', 'show', rName))[0].address as string;

      const partialHdr = vnetHdr(VNET.F_NEEDS_CSUM, VNET.GSO_NONE, 0, 0, 34, 6);
      const plainHdr = vnetHdr(0, VNET.GSO_NONE, 0, 0, 0, 0);
      const validHdr = vnetHdr(VNET.F_DATA_VALID, VNET.GSO_NONE, 0, 0, 0, 0);
      interface Sent { entry: Uint8Array; expect: Uint8Array }
      /** One datagram: the entry we write, and the frame a receiver must get (checksum complete). */
      const dgram = (len: number, seed: number, csum: 'full' | 'partial' | 'none' | 'bad', o: UdpOpts, hdr = csum === 'partial' ? partialHdr : plainHdr): Sent => ({
        entry: concat([hdr, udpFrame(payloadBytes(len, seed), csum, o)]),
        expect: udpFrame(payloadBytes(len, seed), csum === 'partial' ? 'full' : csum, o),
      });
      const other = (f: Uint8Array): Sent => ({ entry: concat([plainHdr, f]), expect: f });

      /** The entries laid end to end in one slab, with their offsets and lengths. */
      const batch = (sent: Sent[]) => {
        const offsets = new Uint32Array(sent.length), lens = new Uint32Array(sent.length);
        let at = 0;
        sent.forEach((x, i) => { offsets[i] = at; lens[i] = x.entry.length; at += x.entry.length; });
        return { slab: concat(sent.map((x) => x.entry)), offsets, lens };
      };

      /** Write the entries in one writeBatch(…, true); return the USO writes it made, and what R got. */
      const writeAndForward = async (sent: Sent[]): Promise<{ writes: number; datagrams: number; got: Uint8Array[] }> => {
        const { slab, offsets, lens } = batch(sent);
        const before = addon.stats();
        expect(addon.writeBatch(w.fd, slab, offsets, lens, 0, sent.length, true)).toBe(sent.length);
        const after = addon.stats();
        const got: Uint8Array[] = [];
        const buf = new Uint8Array(64 * 2048), rl = new Int32Array(64);
        for (let waited = 0; got.length < sent.length && waited < 3000; waited += 20) {
          const n = addon.readBatch(r.fd, buf, 0, 2048, 0, 64, rl);
          for (let i = 0; i < n; i++) {
            const fr = buf.slice(i * 2048, i * 2048 + rl[i]);
            if (u16(fr, 12) === 0x0800) got.push(fr); // not the namespace's own IPv6 chatter
          }
          if (n === 0) await new Promise((res) => setTimeout(res, 20));
        }
        return { writes: after.tapUdpGsoWrites - before.tapUdpGsoWrites, datagrams: after.tapUdpGsoDatagrams - before.tapUdpGsoDatagrams, got };
      };

      /** The forwarded frame: R's MACs, TTL one less, IPv4 checksum redone; every other byte the same. */
      const checkForwarded = (got: Uint8Array[], sent: Sent[]) => {
        expect(got.length).toBe(sent.length);
        got.forEach((g, i) => {
          const want = sent[i].expect.slice();
          want.set([2, 0, 0, 0, 2, 7], 0);
          want.set(rMac.split(':').map((h) => parseInt(h, 16)), 6);
          want[22] -= 1;
          put16(want, 24, 0);
          put16(want, 24, ~sum16(want, 14, 20) & 0xffff);
          expect(g).toEqual(want);
        });
      };

      // One run: 12 datagrams of one flow, IDs wrapping past 0xffff, checksums partial (NEEDS_CSUM),
      // complete and verified here, or vouched for (DATA_VALID); the last one shorter.
      const run1: Sent[] = [];
      for (let k = 0; k < 12; k++) {
        const id = (0xfff8 + k) & 0xffff, len = k === 11 ? 40 : 100, o = { id, df: true, sport: 1000 };
        run1.push(k % 3 === 0 ? dgram(len, k, 'partial', o) : k % 3 === 1 ? dgram(len, k, 'full', o) : dgram(len, k, 'full', o, validHdr));
      }
      const r1 = await writeAndForward(run1);
      expect(r1).toMatchObject({ writes: 1, datagrams: 12 });
      checkForwarded(r1.got, run1);

      // What must not merge, flow by flow (source port), in one batch.
      const run2: Sent[] = [
        dgram(64, 1, 'full', { id: 100, sport: 1001 }), dgram(64, 2, 'partial', { id: 101, sport: 1001 }), dgram(64, 3, 'full', { id: 102, sport: 1001 }), // one run of 3
        dgram(64, 4, 'none', { id: 200, sport: 1002 }), dgram(64, 5, 'full', { id: 201, sport: 1002 }),  // no UDP checksum: alone
        dgram(64, 6, 'full', { id: 300, sport: 1003 }), dgram(64, 7, 'bad', { id: 301, sport: 1003 }),   // a bad checksum is never merged (nor fixed)
        dgram(64, 8, 'full', { id: 400, sport: 1004 }), dgram(64, 9, 'full', { id: 402, sport: 1004 }),  // an ID gap (a lost datagram)
        dgram(40, 10, 'full', { id: 500, sport: 1005 }), dgram(64, 11, 'full', { id: 501, sport: 1005 }), // longer than the first
        dgram(64, 12, 'full', { id: 600, sport: 1006 }), dgram(30, 13, 'full', { id: 601, sport: 1006 }), dgram(64, 14, 'full', { id: 602, sport: 1006 }), // run of 2: a shorter one ends it
        dgram(64, 15, 'full', { id: 700, sport: 1007, ttl: 64 }), dgram(64, 16, 'full', { id: 701, sport: 1007, ttl: 9 }), // TTLs differ
        other(tcpFrame({ payload: payloadBytes(50, 17), id: 800 })), other(icmpFrame()),
        dgram(70, 18, 'full', { id: 900, sport: 1009 }), dgram(70, 19, 'full', { id: 901, sport: 1009 }), dgram(70, 20, 'full', { id: 902, sport: 1009 }), dgram(70, 21, 'full', { id: 903, sport: 1009 }), // run of 4, no DF
      ];
      const r2 = await writeAndForward(run2);
      expect(r2).toMatchObject({ writes: 3, datagrams: 9 });
      checkForwarded(r2.got, run2);

      // DATA_VALID is not taken on trust: a datagram it vouches for with no checksum, or a wrong
      // one, goes alone (and comes out as it went in).
      const run3: Sent[] = [
        dgram(64, 30, 'none', { id: 1000, sport: 1010 }, validHdr), dgram(64, 31, 'full', { id: 1001, sport: 1010 }, validHdr),
        dgram(64, 32, 'bad', { id: 1100, sport: 1011 }, validHdr), dgram(64, 33, 'full', { id: 1101, sport: 1011 }, validHdr),
      ];
      const r3 = await writeAndForward(run3);
      expect(r3).toMatchObject({ writes: 0, datagrams: 0 });
      checkForwarded(r3.got, run3);

      // A run stops at 64 datagrams, and before its IPv4 total length would pass 65535 bytes
      // (28 + 46 x 1400 = 64428; a 47th would make 65828).
      const many: Sent[] = [];
      for (let k = 0; k < 70; k++) many.push(dgram(100, 40 + k, 'full', { id: 2000 + k, sport: 1012 }));
      const r4 = await writeAndForward(many);
      expect(r4).toMatchObject({ writes: 2, datagrams: 70 });
      checkForwarded(r4.got, many);
      const big: Sent[] = [];
      for (let k = 0; k < 50; k++) big.push(dgram(1400, 200 + k, k % 2 ? 'full' : 'partial', { id: 3000 + k, sport: 1013, df: true }));
      const r5 = await writeAndForward(big);
      expect(r5).toMatchObject({ writes: 2, datagrams: 50 });
      checkForwarded(r5.got, big);
      expect(addon.stats().tapUdpGso).toBe(true);

      // Without udpRuns every frame is its own write.
      const before = addon.stats().tapUdpGsoWrites;
      const { slab, offsets, lens } = batch(run1);
      expect(addon.writeBatch(w.fd, slab, offsets, lens, 0, run1.length)).toBe(run1.length);
      expect(addon.stats().tapUdpGsoWrites).toBe(before);
      expect(() => addon.writeBatch(w.fd, slab, offsets, lens, 0, 1, 1 as unknown as boolean)).toThrow(/udpRuns must be a boolean/);
    } finally {
      ip('netns', 'del', usoNs);
    }
  });
});
