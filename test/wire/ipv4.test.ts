/**
 * Tests for src/wire/ipv4.ts. Golden packets written out with Python's struct, checksums from a
 * separate one's complement loop in that script (itself checked against RFC 1071's example and the
 * well-known 0xb861 header):
 *   PACKET_BYTES:  tos 0xb8, id 0x1c46, DF, TTL 64, UDP, 10.244.1.5 -> 10.244.2.7, checksum 0x04e0,
 *                  followed by 8 payload bytes (total length 28);
 *   OPTIONS_BYTES: IHL 7 with Router Alert (94 04 00 00), NOP, NOP, EOL, pad; id 0xbeef, MF, fragment
 *                  offset 185, TTL 1, IGMP, 10.244.1.5 -> 224.0.0.22, checksum 0x571f, 4 payload bytes.
 * Checksums after rewrites (same script): TTL 63 -> 0x05e0; dst 10.96.0.10 -> 0x0771;
 * src 192.168.7.9 -> 0x4927.
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import {
  IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPV4_CHECKSUM, IPV4_DST, IPV4_FLAG_DF, IPV4_FLAG_MF, IPV4_FLAGS_FRAG,
  IPV4_ID, IPV4_MIN_HEADER_LEN, IPV4_PROTO, IPV4_SRC, IPV4_TOS, IPV4_TOTAL_LEN, IPV4_TTL, IPV4_VER_IHL, checkIpv4, emitIpv4,
  formatIpv4Addr, ipv4Checksum, ipv4DecrementTtl, ipv4Dst, ipv4Flags, ipv4FragOffset, ipv4HeaderLen, ipv4Id, ipv4IsFirstFragment,
  ipv4IsFragment, ipv4Proto, ipv4SetDst, ipv4SetSrc, ipv4Src, ipv4Tos, ipv4TotalLen, ipv4Ttl, ipv4Version, ipv4WriteChecksum,
  parseIpv4, parseIpv4Addr, writeIpv4Header, type Ipv4Repr,
} from '../../src/wire/ipv4.ts';

// 28 bytes
const PACKET_BYTES = new Uint8Array([
  0x45, 0xb8, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x04, 0xe0, 0x0a, 0xf4, 0x01, 0x05,
  0x0a, 0xf4, 0x02, 0x07, 0x9c, 0x40, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00,
]);
// 32 bytes
const OPTIONS_BYTES = new Uint8Array([
  0x47, 0x00, 0x00, 0x20, 0xbe, 0xef, 0x20, 0xb9, 0x01, 0x02, 0x57, 0x1f, 0x0a, 0xf4, 0x01, 0x05,
  0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04,
]);

const REPR: Ipv4Repr = {
  tos: 0xb8, id: 0x1c46, flags: IPV4_FLAG_DF, fragOffset: 0, ttl: 64, proto: IPPROTO_UDP,
  src: '10.244.1.5', dst: '10.244.2.7', options: new Uint8Array(0), payloadLen: 8,
};
const OPTIONS_REPR: Ipv4Repr = {
  tos: 0, id: 0xbeef, flags: IPV4_FLAG_MF, fragOffset: 185, ttl: 1, proto: 2,
  src: '10.244.1.5', dst: '224.0.0.22', options: new Uint8Array([0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00]), payloadLen: 4,
};

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Independent checksum (naive loop) used to re-seal headers that a negative test mutates. */
function refChecksum(u8: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) {
    s += (u8[off + i] << 8) | u8[off + i + 1];
    s = (s & 0xffff) + (s >>> 16);
  }
  return ~s & 0xffff;
}

/** Copy `bytes`, apply `edit`, and re-seal the header checksum (header length from the IHL byte). */
function sealed(bytes: Uint8Array, edit: (u8: Uint8Array, dv: DataView) => void): Uint8Array {
  const u8 = bytes.slice();
  const dv = view(u8);
  edit(u8, dv);
  const hl = Math.min((u8[0] & 0x0f) * 4, u8.length);
  dv.setUint16(IPV4_CHECKSUM, 0);
  dv.setUint16(IPV4_CHECKSUM, refChecksum(u8, 0, hl));
  return u8;
}

function check(u8: Uint8Array, end = u8.length, off = 0): Drop {
  return checkIpv4(view(u8), u8, off, end);
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

describe('ipv4 constants', () => {
  it('match RFC 791', () => {
    expect([IPV4_VER_IHL, IPV4_TOS, IPV4_TOTAL_LEN, IPV4_ID, IPV4_FLAGS_FRAG, IPV4_TTL, IPV4_PROTO, IPV4_CHECKSUM, IPV4_SRC,
      IPV4_DST, IPV4_MIN_HEADER_LEN]).toEqual([0, 1, 2, 4, 6, 8, 9, 10, 12, 16, 20]);
    expect([IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP]).toEqual([1, 6, 17, 132]);
    expect([IPV4_FLAG_DF, IPV4_FLAG_MF]).toEqual([0x4000, 0x2000]);
  });
});

describe('ipv4 deconstruct', () => {
  it('reads every field of the plain header', () => {
    const dv = view(PACKET_BYTES);
    expect(check(PACKET_BYTES)).toBe(Drop.None);
    expect(ipv4Version(dv, 0)).toBe(4);
    expect(ipv4HeaderLen(dv, 0)).toBe(20);
    expect(ipv4Tos(dv, 0)).toBe(0xb8);
    expect(ipv4TotalLen(dv, 0)).toBe(28);
    expect(ipv4Id(dv, 0)).toBe(0x1c46);
    expect(ipv4Flags(dv, 0)).toBe(IPV4_FLAG_DF);
    expect(ipv4FragOffset(dv, 0)).toBe(0);
    expect(ipv4Ttl(dv, 0)).toBe(64);
    expect(ipv4Proto(dv, 0)).toBe(IPPROTO_UDP);
    expect(ipv4Checksum(dv, 0)).toBe(0x04e0);
    expect(ipv4Src(dv, 0)).toBe(0x0af40105);
    expect(ipv4Dst(dv, 0)).toBe(0x0af40207);
    expect(ipv4IsFragment(dv, 0)).toBe(false);
    expect(ipv4IsFirstFragment(dv, 0)).toBe(true);
  });

  it('reads every field of the header with options (a non-first fragment)', () => {
    const dv = view(OPTIONS_BYTES);
    expect(check(OPTIONS_BYTES)).toBe(Drop.None);
    expect(ipv4HeaderLen(dv, 0)).toBe(28);
    expect(ipv4TotalLen(dv, 0)).toBe(32);
    expect(ipv4Id(dv, 0)).toBe(0xbeef);
    expect(ipv4Flags(dv, 0)).toBe(IPV4_FLAG_MF);
    expect(ipv4FragOffset(dv, 0)).toBe(185);
    expect(ipv4Ttl(dv, 0)).toBe(1);
    expect(ipv4Proto(dv, 0)).toBe(2);
    expect(ipv4Checksum(dv, 0)).toBe(0x571f);
    expect(ipv4Dst(dv, 0)).toBe(0xe0000016); // u32, not negative
    expect(ipv4IsFragment(dv, 0)).toBe(true);
    expect(ipv4IsFirstFragment(dv, 0)).toBe(false);
  });

  it('accepts the well-known 0xb861 header (192.168.0.1 -> 192.168.0.199) with its payload', () => {
    const u8 = new Uint8Array(0x73);
    u8.set([0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7]);
    expect(check(u8)).toBe(Drop.None);
    expect(formatIpv4Addr(ipv4Dst(view(u8), 0))).toBe('192.168.0.199');
  });

  it('classifies fragments: MF only, offset only, both, neither', () => {
    const frag = (word: number) => sealed(PACKET_BYTES, (_u8, dv) => dv.setUint16(IPV4_FLAGS_FRAG, word));
    const first = frag(IPV4_FLAG_MF);
    const last = frag(100);
    const middle = frag(IPV4_FLAG_MF | 100);
    const df = frag(IPV4_FLAG_DF);
    expect([ipv4IsFragment(view(first), 0), ipv4IsFirstFragment(view(first), 0)]).toEqual([true, true]);
    expect([ipv4IsFragment(view(last), 0), ipv4IsFirstFragment(view(last), 0)]).toEqual([true, false]);
    expect([ipv4IsFragment(view(middle), 0), ipv4IsFirstFragment(view(middle), 0)]).toEqual([true, false]);
    expect([ipv4IsFragment(view(df), 0), ipv4IsFirstFragment(view(df), 0)]).toEqual([false, true]);
    for (const u8 of [first, last, middle, df]) expect(check(u8)).toBe(Drop.None); // fragments pass through
  });
});

describe('ipv4 construct', () => {
  it('writeIpv4Header writes every field and the checksum into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(24).fill(0xa5);
    writeIpv4Header(view(u8), 0, 0xb8, 28, 0x1c46, IPV4_FLAG_DF, 64, IPPROTO_UDP, 0x0af40105, 0x0af40207);
    expect(u8.subarray(0, 20)).toEqual(PACKET_BYTES.subarray(0, 20));
    expect([...u8.subarray(20)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('ipv4WriteChecksum recomputes from scratch, options included', () => {
    for (const golden of [PACKET_BYTES, OPTIONS_BYTES]) {
      const u8 = golden.slice();
      u8[IPV4_CHECKSUM] = 0xa5;
      u8[IPV4_CHECKSUM + 1] = 0xa5;
      ipv4WriteChecksum(view(u8), u8, 0);
      expect(u8).toEqual(golden);
    }
  });
});

describe('Ipv4Repr', () => {
  it('parses both golden packets', () => {
    expect(parseIpv4(PACKET_BYTES, 0, PACKET_BYTES.length)).toEqual(REPR);
    expect(parseIpv4(OPTIONS_BYTES, 0, OPTIONS_BYTES.length)).toEqual(OPTIONS_REPR);
  });

  it('emits both golden headers into a 0xa5-filled buffer (checksum computed)', () => {
    for (const [repr, golden] of [[REPR, PACKET_BYTES], [OPTIONS_REPR, OPTIONS_BYTES]] as const) {
      const u8 = new Uint8Array(golden.length).fill(0xa5);
      const hl = emitIpv4(repr, u8, 0);
      expect(hl).toBe(20 + repr.options.length);
      expect(u8.subarray(0, hl)).toEqual(golden.subarray(0, hl));
      expect(u8.subarray(hl).every((b) => b === 0xa5)).toBe(true); // payload untouched
    }
  });

  it('round-trips parse -> emit -> parse', () => {
    for (const golden of [PACKET_BYTES, OPTIONS_BYTES]) {
      const repr = parseIpv4(golden, 0, golden.length) as Ipv4Repr;
      const u8 = golden.slice();
      u8.fill(0, 0, ipv4HeaderLen(view(golden), 0));
      emitIpv4(repr, u8, 0);
      expect(u8).toEqual(golden);
      expect(parseIpv4(u8, 0, u8.length)).toEqual(repr);
    }
  });

  it('emits and parses at a non-zero offset, also through a subarray', () => {
    const frame = new Uint8Array(14 + 28 + 6).fill(0xa5);
    expect(emitIpv4(REPR, frame, 14)).toBe(20);
    expect(frame.subarray(14, 34)).toEqual(PACKET_BYTES.subarray(0, 20));
    expect(frame.subarray(0, 14).every((b) => b === 0xa5)).toBe(true);
    frame.set(PACKET_BYTES.subarray(20), 34);
    expect(check(frame, 42, 14)).toBe(Drop.None);
    expect(parseIpv4(frame, 14, frame.length)).toEqual(REPR); // 6 bytes of trailing padding allowed
    expect(parseIpv4(frame.subarray(10), 4, 38)).toEqual(REPR);
  });

  it('pads options to a multiple of 4 with zeros (EOL)', () => {
    const u8 = new Uint8Array(40).fill(0xa5);
    const hl = emitIpv4({ ...REPR, options: new Uint8Array([0x94, 0x04, 0x00, 0x00, 0x01]), payloadLen: 0 }, u8, 0);
    expect(hl).toBe(28);
    expect(u8[0]).toBe(0x47);
    expect([...u8.subarray(20, 28)]).toEqual([0x94, 0x04, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00]);
    expect(check(u8, 28)).toBe(Drop.None);
  });

  it('throws on options longer than 40 bytes or bad address text', () => {
    expect(() => emitIpv4({ ...REPR, options: new Uint8Array(41).fill(1) }, new Uint8Array(80), 0)).toThrow(/options/);
    expect(() => emitIpv4({ ...REPR, src: '10.244.1.256' }, new Uint8Array(80), 0)).toThrow(/IPv4/);
  });
});

describe('ipv4 rewrites with incremental checksum (RFC 1624)', () => {
  it('ipv4DecrementTtl: TTL 64 -> 63, checksum 0x04e0 -> 0x05e0', () => {
    const u8 = PACKET_BYTES.slice();
    ipv4DecrementTtl(view(u8), 0);
    expect(ipv4Ttl(view(u8), 0)).toBe(63);
    expect(ipv4Proto(view(u8), 0)).toBe(IPPROTO_UDP);
    expect(ipv4Checksum(view(u8), 0)).toBe(0x05e0);
    expect(check(u8)).toBe(Drop.None);
  });

  it('ipv4SetDst / ipv4SetSrc patch the checksum to the golden values', () => {
    const a = PACKET_BYTES.slice();
    ipv4SetDst(view(a), 0, 0x0a60000a); // 10.96.0.10
    expect(ipv4Dst(view(a), 0)).toBe(0x0a60000a);
    expect(ipv4Checksum(view(a), 0)).toBe(0x0771);
    expect(check(a)).toBe(Drop.None);
    const b = PACKET_BYTES.slice();
    ipv4SetSrc(view(b), 0, 0xc0a80709); // 192.168.7.9
    expect(ipv4Src(view(b), 0)).toBe(0xc0a80709);
    expect(ipv4Checksum(view(b), 0)).toBe(0x4927);
    expect(check(b)).toBe(Drop.None);
  });

  it('work at a non-zero offset and leave the payload alone', () => {
    const frame = new Uint8Array(14 + 28).fill(0xa5);
    frame.set(PACKET_BYTES, 14);
    const dv = view(frame);
    ipv4DecrementTtl(dv, 14);
    ipv4SetDst(dv, 14, 0x0a60000a);
    expect(checkIpv4(dv, frame, 14, frame.length)).toBe(Drop.None);
    expect(frame.subarray(34)).toEqual(PACKET_BYTES.subarray(20));
    expect(frame.subarray(0, 14).every((b) => b === 0xa5)).toBe(true);
  });

  it('equal a full recomputation on thousands of random headers', () => {
    const rnd = mulberry32(791);
    for (let n = 0; n < 5000; n++) {
      const u8 = new Uint8Array(20);
      const dv = view(u8);
      writeIpv4Header(dv, 0, rnd() & 0xff, 20, rnd() & 0xffff, rnd() & 0x4000, 2 + (rnd() % 254), rnd() & 0xff, rnd(), rnd());
      const op = n % 3;
      if (op === 0) ipv4DecrementTtl(dv, 0);
      else if (op === 1) ipv4SetSrc(dv, 0, n % 7 === 0 ? 0 : rnd());
      else ipv4SetDst(dv, 0, n % 7 === 0 ? 0xffffffff : rnd());
      const incremental = ipv4Checksum(dv, 0);
      dv.setUint16(IPV4_CHECKSUM, 0);
      expect(incremental, `n=${n}`).toBe(refChecksum(u8, 0, 20));
    }
  });
});

describe('IPv4 address text', () => {
  it('parses and formats dotted quads', () => {
    expect(parseIpv4Addr('10.244.1.5')).toBe(0x0af40105);
    expect(parseIpv4Addr('0.0.0.0')).toBe(0);
    expect(parseIpv4Addr('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4Addr('224.0.0.22')).toBe(0xe0000016);
    expect(formatIpv4Addr(0x0af40105)).toBe('10.244.1.5');
    expect(formatIpv4Addr(0xffffffff)).toBe('255.255.255.255');
    expect(formatIpv4Addr(-1)).toBe('255.255.255.255');
    expect(formatIpv4Addr(0)).toBe('0.0.0.0');
  });

  it('throws on malformed text, including leading zeros', () => {
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1.2.3.-1', '01.2.3.4', '1.2.3.04', 'a.b.c.d', ' 1.2.3.4',
      '1.2.3.4 ', '1..3.4', '1.2.3.1e1', '0x1.2.3.4', '1.2.3.4/24']) {
      expect(() => parseIpv4Addr(bad), bad).toThrow(/invalid IPv4/);
    }
  });
});

describe('ipv4 negative checks', () => {
  it('Ipv4Truncated below 20 bytes', () => {
    expect(check(PACKET_BYTES, 19)).toBe(Drop.Ipv4Truncated);
    expect(check(PACKET_BYTES, 0)).toBe(Drop.Ipv4Truncated);
    expect(check(PACKET_BYTES, 28, 9)).toBe(Drop.Ipv4Truncated);
    expect(parseIpv4(PACKET_BYTES, 0, 19)).toBe(Drop.Ipv4Truncated);
  });

  it('Ipv4BadVersion when the version is not 4 (checked before anything else)', () => {
    for (const v of [0, 6, 15]) {
      expect(check(sealed(PACKET_BYTES, (u8) => { u8[0] = (v << 4) | 5; }))).toBe(Drop.Ipv4BadVersion);
    }
    expect(check(sealed(PACKET_BYTES, (u8) => { u8[0] = 0x64; }))).toBe(Drop.Ipv4BadVersion); // IHL 4 too
  });

  it('Ipv4BadHeaderLen when IHL < 5 or the header runs past the end', () => {
    for (const ihl of [0, 1, 4]) {
      expect(check(sealed(PACKET_BYTES, (u8) => { u8[0] = 0x40 | ihl; }))).toBe(Drop.Ipv4BadHeaderLen);
    }
    const ihl15 = PACKET_BYTES.slice();
    ihl15[0] = 0x4f; // 60-byte header in a 28-byte packet
    expect(check(ihl15)).toBe(Drop.Ipv4BadHeaderLen);
    expect(check(OPTIONS_BYTES, 27)).toBe(Drop.Ipv4BadHeaderLen); // 28-byte header, 27 bytes available
    expect(parseIpv4(ihl15, 0, 28)).toBe(Drop.Ipv4BadHeaderLen);
  });

  it('Ipv4BadTotalLen when total length < header length or > the bytes available', () => {
    expect(check(sealed(PACKET_BYTES, (_u8, dv) => dv.setUint16(IPV4_TOTAL_LEN, 19)))).toBe(Drop.Ipv4BadTotalLen);
    expect(check(sealed(PACKET_BYTES, (_u8, dv) => dv.setUint16(IPV4_TOTAL_LEN, 0)))).toBe(Drop.Ipv4BadTotalLen);
    expect(check(sealed(PACKET_BYTES, (_u8, dv) => dv.setUint16(IPV4_TOTAL_LEN, 29)))).toBe(Drop.Ipv4BadTotalLen);
    expect(check(sealed(OPTIONS_BYTES, (_u8, dv) => dv.setUint16(IPV4_TOTAL_LEN, 24)))).toBe(Drop.Ipv4BadTotalLen);
    expect(check(PACKET_BYTES, 27)).toBe(Drop.Ipv4BadTotalLen);
    expect(check(sealed(PACKET_BYTES, (_u8, dv) => dv.setUint16(IPV4_TOTAL_LEN, 20)))).toBe(Drop.None); // empty payload
  });

  it('allows trailing bytes after total length (Ethernet minimum-size padding)', () => {
    const padded = new Uint8Array(46);
    padded.set(PACKET_BYTES);
    expect(check(padded)).toBe(Drop.None);
  });

  it('Ipv4BadChecksum when the checksum or any header byte is wrong (payload not covered)', () => {
    const badCsum = PACKET_BYTES.slice();
    badCsum[IPV4_CHECKSUM + 1] ^= 1;
    expect(check(badCsum)).toBe(Drop.Ipv4BadChecksum);
    for (const at of [1, 5, 8, 9, 12, 19]) {
      const u8 = PACKET_BYTES.slice();
      u8[at] ^= 0x10;
      expect(check(u8), `byte ${at}`).toBe(Drop.Ipv4BadChecksum);
    }
    const optByte = OPTIONS_BYTES.slice();
    optByte[23] ^= 1;
    expect(check(optByte)).toBe(Drop.Ipv4BadChecksum);
    const payload = PACKET_BYTES.slice();
    payload[25] ^= 0xff;
    expect(check(payload)).toBe(Drop.None);
    expect(parseIpv4(badCsum, 0, 28)).toBe(Drop.Ipv4BadChecksum);
  });

  describe('Ipv4BadOptions (RFC 791 option walk)', () => {
    /** A 28-byte header whose 8 option bytes are `opts`, sealed with a valid checksum. */
    const withOptions = (opts: number[]) => sealed(OPTIONS_BYTES, (u8) => u8.set(opts, 20));

    it('rejects an option length below 2', () => {
      expect(check(withOptions([0x94, 0x01, 0, 0, 0, 0, 0, 0]))).toBe(Drop.Ipv4BadOptions);
      expect(check(withOptions([0x94, 0x00, 0, 0, 0, 0, 0, 0]))).toBe(Drop.Ipv4BadOptions);
      expect(check(withOptions([0x01, 0x01, 0x07, 0x01, 0, 0, 0, 0]))).toBe(Drop.Ipv4BadOptions);
    });

    it('rejects an option running past the header', () => {
      expect(check(withOptions([0x94, 0x09, 0, 0, 0, 0, 0, 0]))).toBe(Drop.Ipv4BadOptions);
      expect(check(withOptions([0x01, 0x07, 0x08, 0, 0, 0, 0, 0]))).toBe(Drop.Ipv4BadOptions);
      expect(check(withOptions([0x94, 0x04, 0, 0, 0x07, 0x05, 0, 0]))).toBe(Drop.Ipv4BadOptions);
      expect(check(withOptions([0x94, 0xff, 0, 0, 0, 0, 0, 0]))).toBe(Drop.Ipv4BadOptions);
    });

    it('rejects an option whose length byte is missing (type in the last byte)', () => {
      expect(check(withOptions([0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x44]))).toBe(Drop.Ipv4BadOptions);
    });

    it('accepts EOL (ending the walk), NOP runs and options that end exactly at the header end', () => {
      expect(check(withOptions([0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toBe(Drop.None);
      expect(check(withOptions([0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01]))).toBe(Drop.None);
      expect(check(withOptions([0x07, 0x08, 0x04, 0, 0, 0, 0, 0]))).toBe(Drop.None); // record route, 8 bytes
      expect(check(withOptions([0x01, 0x94, 0x04, 0, 0, 0x01, 0x00, 0x00]))).toBe(Drop.None);
      expect(check(withOptions([0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x44, 0x02]))).toBe(Drop.None);
    });

    it('parseIpv4 reports the same code', () => {
      const u8 = withOptions([0x94, 0x09, 0, 0, 0, 0, 0, 0]);
      expect(parseIpv4(u8, 0, u8.length)).toBe(Drop.Ipv4BadOptions);
    });
  });

  describe('Ipv4Fragment (RFC 1858: FO = 1 and protocol TCP)', () => {
    const frag = (proto: number, word: number) =>
      sealed(PACKET_BYTES, (u8, dv) => { u8[IPV4_PROTO] = proto; dv.setUint16(IPV4_FLAGS_FRAG, word); });

    it('drops a TCP fragment at offset 1 (8 bytes), with or without MF', () => {
      expect(check(frag(IPPROTO_TCP, 1))).toBe(Drop.Ipv4Fragment);
      expect(check(frag(IPPROTO_TCP, IPV4_FLAG_MF | 1))).toBe(Drop.Ipv4Fragment);
      const u8 = frag(IPPROTO_TCP, 1);
      expect(parseIpv4(u8, 0, u8.length)).toBe(Drop.Ipv4Fragment);
    });

    it('passes other fragments', () => {
      expect(check(frag(IPPROTO_UDP, 1))).toBe(Drop.None);
      expect(check(frag(IPPROTO_ICMP, 1))).toBe(Drop.None);
      expect(check(frag(IPPROTO_TCP, 2))).toBe(Drop.None);
      expect(check(frag(IPPROTO_TCP, IPV4_FLAG_MF))).toBe(Drop.None);
      expect(check(frag(IPPROTO_TCP, 0x1fff))).toBe(Drop.None);
    });
  });
});
