/**
 * Tests for src/wire/checksum.ts: the RFC 1071 sum and the RFC 1624 incremental update.
 *
 * Expected values come from outside the code under test: the RFC 1071 §3 worked example, the
 * well-known IPv4 header example (checksum 0xb861, as printed in Wikipedia's "IPv4 header checksum"
 * article), RFC 1624 §3's example, and a deliberately naive reference sum written below (one word
 * at a time, carry folded at every step), which the randomized tests compare against.
 */
import { describe, expect, it } from 'vitest';
import {
  checksumUpdate16, checksumUpdate32, foldComplement, internetChecksum, onesSum, onesSumDv, pseudoHeaderSum,
} from '../../src/wire/checksum.ts';

/** Naive one's complement sum of 16-bit big-endian words, folded at every step (RFC 1071 §4.1 style). */
function refSum(bytes: ArrayLike<number>, start = 0, end = bytes.length): number {
  let s = 0;
  for (let i = start; i < end; i += 2) {
    s += (bytes[i] << 8) | (i + 1 < end ? bytes[i + 1] : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return s;
}

/** The checksum a sender stores, computed naively. */
function refChecksum(bytes: ArrayLike<number>, start = 0, end = bytes.length): number {
  return ~refSum(bytes, start, end) & 0xffff;
}

/** mulberry32: a tiny seeded PRNG returning u32s, so every random test is reproducible. */
function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A random word, biased towards the edge values 0x0000, 0xffff, 0x0001 and 0xfffe. */
function edgyWord(rnd: () => number): number {
  const r = rnd();
  switch (r & 7) {
    case 0: return 0x0000;
    case 1: return 0xffff;
    case 2: return (r >>> 8) & 1 ? 0x0001 : 0xfffe;
    default: return r >>> 16;
  }
}

describe('RFC 1071 example (§3)', () => {
  // "00 01 f2 03 f4 f5 f6 f7": 2's complement sum 2ddf0, one's complement sum ddf2, checksum 220d.
  const bytes = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);

  it('sums to 0x2ddf0 unfolded, 0xddf2 folded, checksum 0x220d', () => {
    expect(onesSum(bytes, 0, 8)).toBe(0x2ddf0);
    expect(foldComplement(onesSum(bytes, 0, 8))).toBe(0x220d);
    expect(internetChecksum(bytes, 0, 8)).toBe(0x220d);
  });

  it('is byte-order independent as RFC 1071 §2(B) says (swapped sum ≡ swapped result)', () => {
    const swapped = new Uint8Array([0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6]);
    const s = internetChecksum(swapped, 0, 8);
    expect(((s & 0xff) << 8) | (s >>> 8)).toBe(0x220d);
  });

  it('a buffer carrying its own checksum sums to zero', () => {
    const withCsum = new Uint8Array([...bytes, 0x22, 0x0d]);
    expect(internetChecksum(withCsum, 0, 10)).toBe(0);
  });
});

describe('IPv4 header example (checksum 0xb861)', () => {
  const header = new Uint8Array([
    0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
    0xc0, 0xa8, 0x00, 0xc7,
  ]);

  it('verifies with the checksum in place', () => {
    expect(internetChecksum(header, 0, 20)).toBe(0);
  });

  it('computes 0xb861 with the field zeroed', () => {
    const z = header.slice();
    z[10] = 0;
    z[11] = 0;
    expect(internetChecksum(z, 0, 20)).toBe(0xb861);
  });

  it('works at a non-zero offset and through a subarray with a byteOffset', () => {
    const big = new Uint8Array(100).fill(0xa5);
    big.set(header, 37);
    expect(internetChecksum(big, 37, 20)).toBe(0);
    const sub = big.subarray(30, 80);
    expect(sub.byteOffset).toBe(30);
    expect(internetChecksum(sub, 7, 20)).toBe(0);
  });
});

describe('onesSum', () => {
  it('pads an odd trailing byte with zero on the right', () => {
    expect(onesSum(new Uint8Array([0x01]), 0, 1)).toBe(0x0100);
    expect(onesSum(new Uint8Array([0x12, 0x34, 0x56]), 0, 3)).toBe(0x1234 + 0x5600);
  });

  it('adds `initial` and returns 0 for an empty range', () => {
    const b = new Uint8Array([0xab, 0xcd]);
    expect(onesSum(b, 0, 0)).toBe(0);
    expect(onesSum(b, 0, 0, 1234)).toBe(1234);
    expect(onesSum(b, 0, 2, 0x10000)).toBe(0x1abcd);
  });

  it('matches the naive reference for random lengths and offsets (both code paths)', () => {
    const rnd = mulberry32(1071);
    const buf = new Uint8Array(4096 + 16);
    for (let i = 0; i < buf.length; i++) buf[i] = rnd() & 0xff;
    const dv = new DataView(buf.buffer);
    for (let n = 0; n < 3000; n++) {
      const off = rnd() % 16; // odd offsets included: DataView reads are unaligned-safe
      const len = n < 200 ? n : rnd() % 4096;
      const ref = refChecksum(buf, off, off + len);
      expect(foldComplement(onesSum(buf, off, len))).toBe(ref);
      expect(foldComplement(onesSumDv(dv, off, len))).toBe(ref);
    }
  });

  it('keeps its result below 2^32 and exact on multi-megabyte input', () => {
    const rnd = mulberry32(53);
    const len = 3 * 1024 * 1024 + 3;
    const buf = new Uint8Array(len + 1);
    for (let i = 0; i < buf.length; i++) buf[i] = 0xff - (rnd() & 0x0f); // mostly large words
    const s = onesSum(buf, 1, len);
    expect(s).toBeLessThan(2 ** 32);
    expect(foldComplement(s)).toBe(refChecksum(buf, 1, 1 + len));
  });

  it('never turns non-zero data into a +0 sum, and all-zero data sums to 0', () => {
    expect(onesSum(new Uint8Array(100), 0, 100)).toBe(0);
    expect(foldComplement(0)).toBe(0xffff);
    const ff = new Uint8Array(200).fill(0xff);
    expect(foldComplement(onesSum(ff, 0, 200))).toBe(0); // sum is "-0" (0xffff), never +0
  });
});

describe('foldComplement', () => {
  it('folds carries and complements', () => {
    expect(foldComplement(0xffff)).toBe(0);
    expect(foldComplement(0x1fffe)).toBe(0); // 0xfffe + 1 = 0xffff
    expect(foldComplement(0x10000)).toBe(0xfffe); // 0x0000 + 1
    expect(foldComplement(0x12345678)).toBe(~(0x1234 + 0x5678) & 0xffff);
  });

  it('is exact for accumulators up to 2^53 (2^16 ≡ 1, so fold = value mod 0xffff)', () => {
    const rnd = mulberry32(7);
    for (let i = 0; i < 2000; i++) {
      const v = (rnd() % 0x200000) * 2 ** 32 + rnd(); // < 2^53
      const big = BigInt(v);
      let r = Number(big % 0xffffn);
      if (r === 0 && v !== 0) r = 0xffff; // non-zero folds to "-0", not "+0"
      expect(foldComplement(v)).toBe(~r & 0xffff);
    }
  });
});

describe('pseudoHeaderSum', () => {
  it('sums the address halves, protocol and length without folding', () => {
    // 10.244.1.5 -> 10.96.0.10, UDP, 20 bytes
    expect(pseudoHeaderSum(0x0af40105, 0x0a60000a, 17, 20)).toBe(0x0af4 + 0x0105 + 0x0a60 + 0x000a + 17 + 20);
    expect(pseudoHeaderSum(0xffffffff, 0xffffffff, 255, 0xffff)).toBe(4 * 0xffff + 255 + 0xffff);
  });
});

describe('checksumUpdate16 (RFC 1624 eqn 3)', () => {
  it('reproduces RFC 1624 §3: HC 0xdd2f, m 0x5555 -> 0x3285 gives 0x0000 (eqn 2 would give 0xffff)', () => {
    expect(checksumUpdate16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  it('leaves a checksum alone when the word does not change (except -0 is normalised)', () => {
    expect(checksumUpdate16(0x1234, 0xabcd, 0xabcd)).toBe(0x1234);
    expect(checksumUpdate16(0x0000, 0x0000, 0x0000)).toBe(0x0000);
    // HC = 0xffff means the data summed to +0 (all zero); eqn 3 returns the canonical 0x0000.
    expect(checksumUpdate16(0xffff, 0x1234, 0x1234)).toBe(0x0000);
  });

  it('equals a full recomputation for thousands of random headers and edits', () => {
    const rnd = mulberry32(1624);
    let zeroResults = 0;
    for (let n = 0; n < 20000; n++) {
      const words = 10 + (rnd() % 20); // 20..58 bytes
      const data = new Uint8Array(words * 2);
      for (let w = 0; w < words; w++) {
        const v = edgyWord(rnd);
        data[2 * w] = v >>> 8;
        data[2 * w + 1] = v & 0xff;
      }
      const csumAt = 2 * (rnd() % words); // the word holding the checksum
      data[csumAt] = 0;
      data[csumAt + 1] = 0;
      if (data.every((b) => b === 0)) data[csumAt === 0 ? 2 : 0] = 1; // a real header is never all zero
      const hc = refChecksum(data);
      let edit = 2 * (rnd() % words);
      if (edit === csumAt) edit = (edit + 2) % (words * 2);
      const m = (data[edit] << 8) | data[edit + 1];
      let m2 = edgyWord(rnd);
      // Every 8th case, pick m' so that the new sum is exactly 0xffff (new checksum 0x0000).
      if (n % 8 === 0) {
        const others = refSum(data) + (~m & 0xffff); // sum without m (one's complement subtraction)
        const folded = (others & 0xffff) + (others >>> 16);
        m2 = ~((folded & 0xffff) + (folded >>> 16)) & 0xffff;
      }
      data[edit] = m2 >>> 8;
      data[edit + 1] = m2 & 0xff;
      if (data.every((b) => b === 0)) continue; // all-zero data has no non-degenerate checksum
      const full = refChecksum(data);
      const inc = checksumUpdate16(hc, m, m2);
      if (full === 0) zeroResults++;
      expect(inc, `n=${n}`).toBe(full);
    }
    expect(zeroResults).toBeGreaterThan(1000); // the 0x0000 edge was really exercised
  });

  it('keeps an original checksum of 0x0000 (data summing to 0xffff) consistent', () => {
    // Words 0x1234 + 0xedcb = 0xffff, so the checksum is 0x0000.
    const data = new Uint8Array([0x12, 0x34, 0xed, 0xcb, 0x00, 0x00]);
    expect(refChecksum(data)).toBe(0x0000);
    const inc = checksumUpdate16(0x0000, 0x1234, 0x1235);
    data[1] = 0x35;
    expect(inc).toBe(refChecksum(data));
    expect(inc).toBe(0xfffe);
  });
});

describe('checksumUpdate32', () => {
  it('equals two 16-bit updates and a full recomputation for random address rewrites', () => {
    const rnd = mulberry32(32);
    for (let n = 0; n < 10000; n++) {
      const data = new Uint8Array(20);
      for (let i = 0; i < 20; i++) data[i] = rnd() & 0xff;
      data[10] = 0;
      data[11] = 0;
      const hc = refChecksum(data);
      const field = rnd() % 2 === 0 ? 12 : 16;
      const old = ((data[field] << 24) | (data[field + 1] << 16) | (data[field + 2] << 8) | data[field + 3]) >>> 0;
      const nu = n % 5 === 0 ? (rnd() & 1 ? 0 : 0xffffffff) : rnd();
      new DataView(data.buffer).setUint32(field, nu);
      const inc = checksumUpdate32(hc, old, nu);
      expect(inc).toBe(checksumUpdate16(checksumUpdate16(hc, old >>> 16, nu >>> 16), old & 0xffff, nu & 0xffff));
      expect(inc).toBe(refChecksum(data));
    }
  });

  it('accepts signed 32-bit inputs (a `| 0` address) like their unsigned twins', () => {
    expect(checksumUpdate32(0x04e0, 0x0af40207 | 0, 0xc0a80709 | 0)).toBe(checksumUpdate32(0x04e0, 0x0af40207, 0xc0a80709));
  });
});
