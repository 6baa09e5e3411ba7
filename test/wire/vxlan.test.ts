/**
 * Tests for src/wire/vxlan.ts. Golden bytes written out with Python's struct:
 *   PACKET_BYTES: a VXLAN header with the I flag and VNI 0x123456;
 *   FRAME_BYTES:  a whole encapsulated frame as it crosses the underlay: outer Ethernet
 *                 52:54:00:00:00:11 -> 52:54:00:00:00:12, outer IPv4 192.168.56.11 -> 192.168.56.12
 *                 (checksum 0x892f, DF clear, TTL 64), UDP 51234 -> 4789 with checksum 0 (RFC 7348),
 *                 VXLAN VNI 1, then the ICMP echo request frame of icmp.test.ts.
 * vxlanSourcePort expectations come from a Python transcription of Linux's udp_flow_src_port();
 * flowHash5 expectations from a Python MurmurHash3 x86_32 checked against the published test
 * vectors (e.g. "The quick brown fox jumps over the lazy dog", seed 0x9747b28c -> 0x2fa826cd).
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, checkEthernet, ethType } from '../../src/wire/ethernet.ts';
import { IPPROTO_ICMP, IPPROTO_UDP, checkIpv4, ipv4HeaderLen, ipv4Proto, ipv4TotalLen } from '../../src/wire/ipv4.ts';
import { checkUdp, udpChecksum, udpDstPort, udpLength, udpSrcPort } from '../../src/wire/udp.ts';
import { checkIcmp } from '../../src/wire/icmp.ts';
import {
  VXLAN_DEFAULT_PORT, VXLAN_FLAG_I, VXLAN_FLAGS, VXLAN_HEADER_LEN, VXLAN_VNI, checkVxlan, emitVxlan, flowHash5, parseVxlan,
  vxlanSourcePort, vxlanVni, writeVxlanHeader, type VxlanRepr,
} from '../../src/wire/vxlan.ts';

// 8 bytes
const PACKET_BYTES = new Uint8Array([0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x00]);
// 100 bytes
const FRAME_BYTES = new Uint8Array([
  0x52, 0x54, 0x00, 0x00, 0x00, 0x12, 0x52, 0x54, 0x00, 0x00, 0x00, 0x11, 0x08, 0x00, 0x45, 0x00,
  0x00, 0x56, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x89, 0x2f, 0xc0, 0xa8, 0x38, 0x0b, 0xc0, 0xa8,
  0x38, 0x0c, 0xc8, 0x22, 0x12, 0xb5, 0x00, 0x42, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
  0x01, 0x00, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00,
  0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x22, 0xeb, 0x0a, 0xf4, 0x01, 0x05,
  0x0a, 0xf4, 0x01, 0x01, 0x08, 0x00, 0x66, 0x67, 0x00, 0x01, 0x00, 0x02, 0x61, 0x62, 0x63, 0x64,
  0x65, 0x66, 0x67, 0x68,
]);
const INNER_ETH = new Uint8Array(14); // any inner Ethernet header satisfies checkVxlan's length rule

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** The golden VXLAN header followed by a 14-byte inner Ethernet header. */
function withInner(header: Uint8Array = PACKET_BYTES): Uint8Array {
  const u8 = new Uint8Array(22);
  u8.set(header);
  u8.set(INNER_ETH, 8);
  return u8;
}

function check(u8: Uint8Array, vni = 0x123456, end = u8.length, off = 0): Drop {
  return checkVxlan(view(u8), off, end, vni);
}

describe('vxlan constants', () => {
  it('match RFC 7348', () => {
    expect([VXLAN_FLAGS, VXLAN_VNI, VXLAN_HEADER_LEN, VXLAN_FLAG_I, VXLAN_DEFAULT_PORT]).toEqual([0, 4, 8, 0x08, 4789]);
  });
});

describe('vxlan deconstruct', () => {
  it('reads the header', () => {
    const u8 = withInner();
    expect(check(u8)).toBe(Drop.None);
    expect(u8[VXLAN_FLAGS]).toBe(VXLAN_FLAG_I);
    expect(vxlanVni(view(u8), 0)).toBe(0x123456);
  });

  it('walks the golden encapsulated frame layer by layer', () => {
    const u8 = FRAME_BYTES;
    const dv = view(u8);
    const end = u8.length;
    expect(checkEthernet(0, end)).toBe(Drop.None);
    expect(ethType(dv, 0)).toBe(ETHERTYPE_IPV4);
    const ip = ETH_HEADER_LEN;
    expect(checkIpv4(dv, u8, ip, end)).toBe(Drop.None);
    expect(ipv4Proto(dv, ip)).toBe(IPPROTO_UDP);
    const udp = ip + ipv4HeaderLen(dv, ip);
    const ipEnd = ip + ipv4TotalLen(dv, ip);
    expect(checkUdp(dv, u8, udp, ipEnd, 0xc0a8380b, 0xc0a8380c)).toBe(Drop.None);
    expect(udpSrcPort(dv, udp)).toBe(51234);
    expect(udpDstPort(dv, udp)).toBe(VXLAN_DEFAULT_PORT);
    expect(udpChecksum(dv, udp)).toBe(0); // RFC 7348 §5: transmitted as zero
    const vx = udp + 8;
    const udpEnd = udp + udpLength(dv, udp);
    expect(checkVxlan(dv, vx, udpEnd, 1)).toBe(Drop.None);
    expect(vxlanVni(dv, vx)).toBe(1);
    const inner = vx + VXLAN_HEADER_LEN;
    expect(checkEthernet(inner, udpEnd)).toBe(Drop.None);
    const innerIp = inner + ETH_HEADER_LEN;
    expect(checkIpv4(dv, u8, innerIp, udpEnd)).toBe(Drop.None);
    expect(ipv4Proto(dv, innerIp)).toBe(IPPROTO_ICMP);
    expect(checkIcmp(dv, u8, innerIp + 20, innerIp + ipv4TotalLen(dv, innerIp))).toBe(Drop.None);
    expect(udpEnd).toBe(end);
  });
});

describe('vxlan construct', () => {
  it('writes the header into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(12).fill(0xa5);
    writeVxlanHeader(view(u8), 0, 0x123456);
    expect(u8.subarray(0, 8)).toEqual(PACKET_BYTES);
    expect([...u8.subarray(8)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('writes the largest VNI and masks anything above 24 bits', () => {
    const u8 = new Uint8Array(8);
    writeVxlanHeader(view(u8), 0, 0xffffff);
    expect([...u8]).toEqual([0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0x00]);
    writeVxlanHeader(view(u8), 0, 0x1000001);
    expect(vxlanVni(view(u8), 0)).toBe(1);
    expect(u8[7]).toBe(0);
  });
});

describe('VxlanRepr', () => {
  it('parses, emits into a 0xa5-filled buffer and round-trips', () => {
    const u8 = withInner();
    const repr = parseVxlan(u8, 0, u8.length) as VxlanRepr;
    expect(repr).toEqual({ vni: 0x123456 });
    const out = new Uint8Array(10).fill(0xa5);
    expect(emitVxlan(repr, out, 0)).toBe(8);
    expect(out.subarray(0, 8)).toEqual(PACKET_BYTES);
    expect([...out.subarray(8)]).toEqual([0xa5, 0xa5]);
  });

  it('emits and parses at a non-zero offset, also through a subarray', () => {
    const frame = new Uint8Array(80).fill(0xa5);
    expect(emitVxlan({ vni: 1 }, frame, 42)).toBe(8);
    expect(frame.subarray(42, 50)).toEqual(FRAME_BYTES.subarray(42, 50));
    expect(frame.subarray(0, 42).every((b) => b === 0xa5)).toBe(true);
    expect(frame.subarray(50).every((b) => b === 0xa5)).toBe(true);
    expect(parseVxlan(FRAME_BYTES, 42, 100)).toEqual({ vni: 1 });
    expect(parseVxlan(FRAME_BYTES.subarray(40), 2, 60)).toEqual({ vni: 1 });
  });

  it('reports truncation and bad flags', () => {
    expect(parseVxlan(withInner(), 0, 21)).toBe(Drop.VxlanTruncated);
    expect(parseVxlan(withInner(new Uint8Array([0x0c, 0, 0, 0, 0, 0, 1, 0])), 0, 22)).toBe(Drop.VxlanBadFlags);
  });
});

describe('vxlan negative checks', () => {
  it('VxlanTruncated below 8 + 14 bytes', () => {
    expect(check(withInner(), 0x123456, 21)).toBe(Drop.VxlanTruncated);
    expect(check(withInner(), 0x123456, 8)).toBe(Drop.VxlanTruncated);
    expect(check(withInner(), 0x123456, 22, 1)).toBe(Drop.VxlanTruncated);
    expect(check(withInner(), 0x123456, 0)).toBe(Drop.VxlanTruncated);
  });

  it('VxlanBadFlags unless byte 0 is exactly 0x08', () => {
    for (const flags of [0x00, 0x0c, 0x88, 0x09, 0xff, 0x80]) {
      const h = PACKET_BYTES.slice();
      h[0] = flags;
      expect(check(withInner(h)), `flags 0x${flags.toString(16)}`).toBe(Drop.VxlanBadFlags);
    }
  });

  it('VxlanBadFlags when a reserved byte (1, 2, 3 or 7) is non-zero', () => {
    for (const at of [1, 2, 3, 7]) {
      const h = PACKET_BYTES.slice();
      h[at] = 0x01;
      expect(check(withInner(h)), `byte ${at}`).toBe(Drop.VxlanBadFlags);
    }
  });

  it('VxlanBadVni when the VNI is not the expected one', () => {
    expect(check(withInner(), 0x123457)).toBe(Drop.VxlanBadVni);
    expect(check(withInner(), 1)).toBe(Drop.VxlanBadVni);
    expect(check(withInner(), 0)).toBe(Drop.VxlanBadVni);
    expect(checkVxlan(view(FRAME_BYTES), 42, 100, 2)).toBe(Drop.VxlanBadVni);
  });
});

describe('vxlanSourcePort (Linux udp_flow_src_port)', () => {
  it('matches the kernel formula on fixed hashes', () => {
    const cases: [number, number][] = [
      [0x00000000, 32768], [0x00000001, 32768], [0x0000ffff, 60999], [0x00010000, 32768],
      [0x12345678, 40300], [0x80000000, 46884], [0xdeadbeef, 43383], [0xffffffff, 32768],
    ];
    for (const [hash, port] of cases) expect(vxlanSourcePort(hash), `0x${hash.toString(16)}`).toBe(port);
  });

  it('stays in [32768, 61000) and covers the range', () => {
    let seed = 1;
    let min = Infinity;
    let max = -Infinity;
    let nonInteger = 0;
    const buckets = new Uint32Array(8);
    for (let i = 0; i < 100000; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const p = vxlanSourcePort(seed);
      if (!Number.isInteger(p)) nonInteger++;
      min = Math.min(min, p);
      max = Math.max(max, p);
      buckets[Math.floor(((p - 32768) * 8) / (61000 - 32768))]++;
    }
    expect(nonInteger).toBe(0);
    expect(min).toBeGreaterThanOrEqual(32768);
    expect(max).toBeLessThan(61000);
    expect(min).toBeLessThan(32800);
    expect(max).toBeGreaterThan(60960);
    for (const b of buckets) expect(b).toBeGreaterThan(100000 / 8 * 0.9);
  });

  it('honours a custom range', () => {
    for (const h of [0, 0x12345678, 0xffffffff, 0xdeadbeef]) {
      const p = vxlanSourcePort(h, 49152, 65536);
      expect(p).toBeGreaterThanOrEqual(49152);
      expect(p).toBeLessThan(65536);
    }
    expect(vxlanSourcePort(0x12345678, 1000, 1001)).toBe(1000);
  });
});

describe('flowHash5', () => {
  it('matches MurmurHash3 x86_32 of the tuple words (seed 0x2f6a2d4d)', () => {
    expect(flowHash5(0x0af40105, 0x0af40106, 6, 40000, 80)).toBe(0x346bfc3a);
    expect(flowHash5(0x0af40106, 0x0af40105, 6, 80, 40000)).toBe(0x26d089c9);
    expect(flowHash5(0x0af40105, 0x0a60000a, 17, 40000, 53)).toBe(0xa4275039);
    expect(flowHash5(0, 0, 0, 0, 0)).toBe(0x18716fd0);
    expect(flowHash5(0xffffffff, 0xffffffff, 255, 65535, 65535)).toBe(0xc1070924);
  });

  it('is deterministic, unsigned, and sensitive to every field', () => {
    const base = flowHash5(0x0af40105, 0x0af40106, 6, 40000, 80);
    expect(flowHash5(0x0af40105, 0x0af40106, 6, 40000, 80)).toBe(base);
    expect(base).toBeGreaterThanOrEqual(0);
    expect(base).toBeLessThan(2 ** 32);
    expect(flowHash5(0x0af40105 | 0, 0x0af40106, 6, 40000, 80)).toBe(base);
    const variants = [
      flowHash5(0x0af40104, 0x0af40106, 6, 40000, 80),
      flowHash5(0x0af40105, 0x0af40107, 6, 40000, 80),
      flowHash5(0x0af40105, 0x0af40106, 17, 40000, 80),
      flowHash5(0x0af40105, 0x0af40106, 6, 40001, 80),
      flowHash5(0x0af40105, 0x0af40106, 6, 40000, 81),
    ];
    for (const v of variants) expect(v).not.toBe(base);
  });

  it('spreads consecutive source ports over the VXLAN port range', () => {
    const seen = new Set<number>();
    for (let sport = 30000; sport < 31000; sport++) seen.add(vxlanSourcePort(flowHash5(0x0af40105, 0x0af40206, 6, sport, 80)));
    expect(seen.size).toBeGreaterThan(950);
  });
});
