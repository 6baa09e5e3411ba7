/**
 * Tests for src/wire/udp.ts. Golden datagram written out with Python's struct, checksum from a
 * separate one's complement loop over pseudo-header + datagram in that script:
 *   PACKET_BYTES: 10.244.1.5:40000 -> 10.96.0.10:53, 12 data bytes (a DNS header), checksum 0x39af.
 * Same script: after DNAT to 10.244.1.6:5353 the checksum is 0x236b; 1000 -> 2000 between 10.0.0.1
 * and 10.0.0.2 with data 00 00 e0 1b computes to 0 (so it is sent as 0xffff); "hello" from
 * 10.0.0.1:1234 to 10.0.0.2:5678 has checksum 0x8cff.
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import {
  UDP_CHECKSUM, UDP_DST_PORT, UDP_HEADER_LEN, UDP_LENGTH, UDP_SRC_PORT, checkUdp, emitUdp, parseUdp, udpChecksum,
  udpChecksumUpdate16, udpChecksumUpdate32, udpDstPort, udpLength, udpSetDstPort, udpSetSrcPort, udpSrcPort,
  udpUpdateChecksumForAddr, udpWriteChecksum, writeUdpHeader, type UdpRepr,
} from '../../src/wire/udp.ts';
import { checksumUpdate32 } from '../../src/wire/checksum.ts';

// 20 bytes
const PACKET_BYTES = new Uint8Array([
  0x9c, 0x40, 0x00, 0x35, 0x00, 0x14, 0x39, 0xaf, 0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
  0x00, 0x00, 0x00, 0x0a,
]);
const SRC = 0x0af40105; // 10.244.1.5
const DST = 0x0a60000a; // 10.96.0.10
const DNS_HEADER = new Uint8Array([0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a]);
const REPR: UdpRepr = { srcPort: 40000, dstPort: 53, payload: DNS_HEADER };

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

function check(u8: Uint8Array, end = u8.length, src = SRC, dst = DST, off = 0): Drop {
  return checkUdp(view(u8), u8, off, end, src, dst);
}

/** Independent UDP checksum: pseudo-header + datagram, naive loop, 0 sent as 0xffff. */
function refUdpChecksum(u8: Uint8Array, src: number, dst: number): number {
  const len = u8.length;
  let s = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 17 + len;
  for (let i = 0; i < len; i += 2) {
    if (i === UDP_CHECKSUM) continue;
    s += (u8[i] << 8) | (i + 1 < len ? u8[i + 1] : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  s = (s & 0xffff) + (s >>> 16);
  const c = ~s & 0xffff;
  return c === 0 ? 0xffff : c;
}

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

describe('udp constants', () => {
  it('match RFC 768', () => {
    expect([UDP_SRC_PORT, UDP_DST_PORT, UDP_LENGTH, UDP_CHECKSUM, UDP_HEADER_LEN]).toEqual([0, 2, 4, 6, 8]);
  });
});

describe('udp deconstruct', () => {
  it('reads every field', () => {
    const dv = view(PACKET_BYTES);
    expect(check(PACKET_BYTES)).toBe(Drop.None);
    expect(udpSrcPort(dv, 0)).toBe(40000);
    expect(udpDstPort(dv, 0)).toBe(53);
    expect(udpLength(dv, 0)).toBe(20);
    expect(udpChecksum(dv, 0)).toBe(0x39af);
  });
});

describe('udp construct', () => {
  it('writes every field and the checksum into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(24).fill(0xa5);
    const dv = view(u8);
    writeUdpHeader(dv, 0, 40000, 53, 20);
    expect(udpChecksum(dv, 0)).toBe(0); // written as "none"
    u8.set(DNS_HEADER, 8);
    udpWriteChecksum(dv, 0, SRC, DST);
    expect(u8.subarray(0, 20)).toEqual(PACKET_BYTES);
    expect([...u8.subarray(20)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('sends a computed checksum of 0 as 0xffff (RFC 768), which verifies', () => {
    const repr: UdpRepr = { srcPort: 1000, dstPort: 2000, payload: new Uint8Array([0x00, 0x00, 0xe0, 0x1b]) };
    const u8 = new Uint8Array(12);
    emitUdp(repr, u8, 0, 0x0a000001, 0x0a000002);
    expect(udpChecksum(view(u8), 0)).toBe(0xffff);
    expect(check(u8, 12, 0x0a000001, 0x0a000002)).toBe(Drop.None);
  });

  it('pads an odd-length payload with zero for the checksum', () => {
    const u8 = new Uint8Array(13);
    emitUdp({ srcPort: 1234, dstPort: 5678, payload: new TextEncoder().encode('hello') }, u8, 0, '10.0.0.1', '10.0.0.2');
    expect(udpChecksum(view(u8), 0)).toBe(0x8cff);
    expect(check(u8, 13, 0x0a000001, 0x0a000002)).toBe(Drop.None);
  });
});

describe('UdpRepr', () => {
  it('parses the golden datagram, with or without checksum verification', () => {
    expect(parseUdp(PACKET_BYTES, 0, 20, SRC, DST)).toEqual(REPR);
    expect(parseUdp(PACKET_BYTES, 0, 20, '10.244.1.5', '10.96.0.10')).toEqual(REPR);
    expect(parseUdp(PACKET_BYTES, 0, 20)).toEqual(REPR);
    expect(parseUdp(PACKET_BYTES, 0, 20, SRC, DST + 1)).toBe(Drop.UdpBadChecksum);
    expect(parseUdp(PACKET_BYTES, 0, 20, SRC)).toEqual(REPR); // one address is not enough to verify
  });

  it('emits the golden datagram into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(23).fill(0xa5);
    expect(emitUdp(REPR, u8, 0, SRC, DST)).toBe(20);
    expect(u8.subarray(0, 20)).toEqual(PACKET_BYTES);
    expect([...u8.subarray(20)]).toEqual([0xa5, 0xa5, 0xa5]);
    const v = new Uint8Array(20);
    emitUdp(REPR, v, 0, '10.244.1.5', '10.96.0.10');
    expect(v).toEqual(PACKET_BYTES);
  });

  it('round-trips parse -> emit', () => {
    const repr = parseUdp(PACKET_BYTES, 0, 20, SRC, DST) as UdpRepr;
    const u8 = new Uint8Array(20);
    emitUdp(repr, u8, 0, SRC, DST);
    expect(u8).toEqual(PACKET_BYTES);
  });

  it('emits and parses at a non-zero offset, also through a subarray', () => {
    const frame = new Uint8Array(60).fill(0xa5);
    expect(emitUdp(REPR, frame, 34, SRC, DST)).toBe(20);
    expect(frame.subarray(34, 54)).toEqual(PACKET_BYTES);
    expect(frame.subarray(0, 34).every((b) => b === 0xa5)).toBe(true);
    expect(frame.subarray(54).every((b) => b === 0xa5)).toBe(true);
    expect(parseUdp(frame, 34, 54, SRC, DST)).toEqual(REPR);
    expect(parseUdp(frame.subarray(30), 4, 24, SRC, DST)).toEqual(REPR);
  });
});

describe('udp incremental checksum updates (RFC 1624 + RFC 768 zero rules)', () => {
  it('DNAT 10.96.0.10:53 -> 10.244.1.6:5353 gives the golden checksum 0x236b', () => {
    const u8 = PACKET_BYTES.slice();
    const dv = view(u8);
    udpUpdateChecksumForAddr(dv, 0, DST, 0x0af40106);
    udpSetDstPort(dv, 0, 5353);
    expect(udpDstPort(dv, 0)).toBe(5353);
    expect(udpChecksum(dv, 0)).toBe(0x236b);
    expect(check(u8, 20, SRC, 0x0af40106)).toBe(Drop.None);
  });

  it('SNAT of the source port keeps the datagram valid', () => {
    const u8 = PACKET_BYTES.slice();
    udpSetSrcPort(view(u8), 0, 61000);
    expect(udpSrcPort(view(u8), 0)).toBe(61000);
    expect(check(u8)).toBe(Drop.None);
    expect(udpChecksum(view(u8), 0)).toBe(refUdpChecksum(u8, SRC, DST));
  });

  it('leaves a 0 ("no checksum") checksum at 0', () => {
    expect(udpChecksumUpdate16(0, 53, 5353)).toBe(0);
    expect(udpChecksumUpdate32(0, DST, 0x0af40106)).toBe(0);
    const u8 = PACKET_BYTES.slice();
    const dv = view(u8);
    dv.setUint16(UDP_CHECKSUM, 0);
    udpSetDstPort(dv, 0, 5353);
    udpSetSrcPort(dv, 0, 1);
    udpUpdateChecksumForAddr(dv, 0, DST, 0x0af40106);
    expect(udpChecksum(dv, 0)).toBe(0);
    expect(check(u8, 20, 0x12345678, 0x9abcdef0)).toBe(Drop.None); // nothing to verify
  });

  it('maps a 0 result to 0xffff (the bare RFC 1624 update would yield 0)', () => {
    // Eqn 3 gives 0 when ~HC + ~m + m' sums to 0xffff: keep the high half of the address and pick
    // the new low half m' that forces it.
    const hc = 0x39af;
    const old = DST;
    const newLo = (0xffff - (((~hc & 0xffff) + (~old & 0xffff)) % 0xffff)) & 0xffff;
    const nu = ((old & 0xffff0000) | newLo) >>> 0;
    expect(checksumUpdate32(hc, old, nu)).toBe(0);
    expect(udpChecksumUpdate32(hc, old, nu)).toBe(0xffff);
    // And the datagram rewritten that way verifies with 0xffff in the field.
    const u8 = PACKET_BYTES.slice();
    udpUpdateChecksumForAddr(view(u8), 0, old, nu);
    expect(udpChecksum(view(u8), 0)).toBe(0xffff);
    expect(check(u8, 20, SRC, nu)).toBe(Drop.None);
  });

  it('updates starting from 0xffff (a transmitted computed-zero) stay valid', () => {
    const u8 = new Uint8Array(12);
    emitUdp({ srcPort: 1000, dstPort: 2000, payload: new Uint8Array([0x00, 0x00, 0xe0, 0x1b]) }, u8, 0, 0x0a000001, 0x0a000002);
    expect(udpChecksum(view(u8), 0)).toBe(0xffff);
    udpSetDstPort(view(u8), 0, 2001);
    expect(check(u8, 12, 0x0a000001, 0x0a000002)).toBe(Drop.None);
    expect(udpChecksum(view(u8), 0)).toBe(refUdpChecksum(u8, 0x0a000001, 0x0a000002));
  });

  it('equal a full recomputation on thousands of random datagrams and rewrites', () => {
    const rnd = mulberry32(768);
    for (let n = 0; n < 5000; n++) {
      const len = 8 + (rnd() % 40);
      const u8 = new Uint8Array(len);
      for (let i = 8; i < len; i++) u8[i] = rnd() & 0xff;
      const src = rnd();
      let dst = rnd();
      const dv = view(u8);
      writeUdpHeader(dv, 0, rnd() & 0xffff, rnd() & 0xffff, len);
      udpWriteChecksum(dv, 0, src, dst);
      switch (n % 3) {
        case 0: udpSetSrcPort(dv, 0, rnd() & 0xffff); break;
        case 1: udpSetDstPort(dv, 0, n % 5 === 0 ? 0 : 0xffff); break;
        default: {
          const nu = rnd();
          udpUpdateChecksumForAddr(dv, 0, dst, nu);
          dst = nu;
        }
      }
      expect(checkUdp(dv, u8, 0, len, src, dst), `n=${n}`).toBe(Drop.None);
      expect(udpChecksum(dv, 0), `n=${n}`).toBe(refUdpChecksum(u8, src, dst));
    }
  });
});

describe('udp negative checks', () => {
  it('UdpTruncated below 8 bytes', () => {
    expect(check(PACKET_BYTES, 7)).toBe(Drop.UdpTruncated);
    expect(check(PACKET_BYTES, 0)).toBe(Drop.UdpTruncated);
    expect(check(PACKET_BYTES, 20, SRC, DST, 13)).toBe(Drop.UdpTruncated);
    expect(parseUdp(PACKET_BYTES, 0, 7)).toBe(Drop.UdpTruncated);
  });

  it('UdpBadLength when the length field is below 8 or beyond the IP payload', () => {
    for (const len of [0, 1, 7]) {
      const u8 = PACKET_BYTES.slice();
      view(u8).setUint16(UDP_LENGTH, len);
      expect(check(u8), `len ${len}`).toBe(Drop.UdpBadLength);
    }
    expect(check(PACKET_BYTES, 19)).toBe(Drop.UdpBadLength);
    const long = PACKET_BYTES.slice();
    view(long).setUint16(UDP_LENGTH, 21);
    expect(check(long)).toBe(Drop.UdpBadLength);
    expect(parseUdp(long, 0, 20)).toBe(Drop.UdpBadLength);
  });

  it('accepts an IP payload longer than the UDP length (the rest is ignored)', () => {
    const padded = new Uint8Array(26);
    padded.set(PACKET_BYTES);
    padded.fill(0x77, 20);
    expect(check(padded)).toBe(Drop.None);
    expect(parseUdp(padded, 0, 26, SRC, DST)).toEqual(REPR);
  });

  it('UdpBadChecksum when data, header or pseudo-header disagree', () => {
    for (const at of [0, 3, 6, 7, 8, 19]) {
      const u8 = PACKET_BYTES.slice();
      u8[at] ^= 0x01;
      expect(check(u8), `byte ${at}`).toBe(Drop.UdpBadChecksum);
    }
    expect(check(PACKET_BYTES, 20, SRC + 1, DST)).toBe(Drop.UdpBadChecksum);
    expect(check(PACKET_BYTES, 20, SRC, 0x0af40106)).toBe(Drop.UdpBadChecksum);
  });

  it('skips verification for a 0 checksum or when asked to', () => {
    const u8 = PACKET_BYTES.slice();
    u8[19] ^= 0xff;
    expect(checkUdp(view(u8), u8, 0, 20, SRC, DST, false)).toBe(Drop.None);
    view(u8).setUint16(UDP_CHECKSUM, 0);
    expect(check(u8)).toBe(Drop.None);
    // Length checks still apply with verification off.
    expect(checkUdp(view(u8), u8, 0, 19, SRC, DST, false)).toBe(Drop.UdpBadLength);
  });
});
