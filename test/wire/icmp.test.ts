/**
 * Tests for src/wire/icmp.ts. Golden packets written out with Python's struct, checksums from a
 * separate one's complement loop in that script:
 *   PACKET_BYTES: echo request, id 1, seq 2, data "abcdefgh", checksum 0x6667;
 *   FRAG_NEEDED_BYTES: destination unreachable / fragmentation needed, next-hop MTU 1450, quoting
 *   the IPv4 golden header of ipv4.test.ts and its first 8 payload bytes, checksum 0x5ad4.
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import {
  DEST_UNREACH, ECHO_REPLY, ECHO_REQUEST, FRAG_NEEDED, HOST_UNREACH, ICMP_CHECKSUM, ICMP_CODE, ICMP_CODE_FRAG_NEEDED,
  ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_HEADER_LEN, ICMP_REST, ICMP_TYPE, NET_UNREACH, PORT_UNREACH, TIME_EXCEEDED,
  checkIcmp, emitIcmp, icmpChecksum, icmpCode, icmpEchoId, icmpEchoSeq, icmpNextHopMtu, icmpRest, icmpType, icmpWriteChecksum,
  parseIcmp, type IcmpRepr,
} from '../../src/wire/icmp.ts';

// 16 bytes
const PACKET_BYTES = new Uint8Array([
  0x08, 0x00, 0x66, 0x67, 0x00, 0x01, 0x00, 0x02, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
]);
// 36 bytes
const FRAG_NEEDED_BYTES = new Uint8Array([
  0x03, 0x04, 0x5a, 0xd4, 0x00, 0x00, 0x05, 0xaa, 0x45, 0xb8, 0x00, 0x1c, 0x1c, 0x46, 0x40, 0x00,
  0x40, 0x11, 0x04, 0xe0, 0x0a, 0xf4, 0x01, 0x05, 0x0a, 0xf4, 0x02, 0x07, 0x9c, 0x40, 0x00, 0x35,
  0x00, 0x08, 0x00, 0x00,
]);

const REPR: IcmpRepr = { type: ECHO_REQUEST, code: 0, rest: 0x00010002, payload: new TextEncoder().encode('abcdefgh') };
const FRAG_REPR: IcmpRepr = { type: DEST_UNREACH, code: FRAG_NEEDED, rest: 1450, payload: FRAG_NEEDED_BYTES.slice(8) };

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

function refChecksum(u8: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) {
    s += (u8[off + i] << 8) | (i + 1 < len ? u8[off + i + 1] : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return ~s & 0xffff;
}

describe('icmp constants', () => {
  it('match RFC 792 / RFC 1191', () => {
    expect([ICMP_TYPE, ICMP_CODE, ICMP_CHECKSUM, ICMP_REST, ICMP_HEADER_LEN]).toEqual([0, 1, 2, 4, 8]);
    expect([ECHO_REPLY, DEST_UNREACH, ECHO_REQUEST, TIME_EXCEEDED]).toEqual([0, 3, 8, 11]);
    expect([NET_UNREACH, HOST_UNREACH, PORT_UNREACH, FRAG_NEEDED]).toEqual([0, 1, 3, 4]);
    expect([ICMP_ECHO_REQUEST, ICMP_DEST_UNREACH, ICMP_CODE_FRAG_NEEDED]).toEqual([8, 3, 4]);
  });
});

describe('icmp deconstruct', () => {
  it('reads every field of the echo request', () => {
    const dv = view(PACKET_BYTES);
    expect(checkIcmp(dv, PACKET_BYTES, 0, 16)).toBe(Drop.None);
    expect(icmpType(dv, 0)).toBe(ECHO_REQUEST);
    expect(icmpCode(dv, 0)).toBe(0);
    expect(icmpChecksum(dv, 0)).toBe(0x6667);
    expect(icmpRest(dv, 0)).toBe(0x00010002);
    expect(icmpEchoId(dv, 0)).toBe(1);
    expect(icmpEchoSeq(dv, 0)).toBe(2);
  });

  it('reads every field of fragmentation needed', () => {
    const dv = view(FRAG_NEEDED_BYTES);
    expect(checkIcmp(dv, FRAG_NEEDED_BYTES, 0, 36)).toBe(Drop.None);
    expect(icmpType(dv, 0)).toBe(DEST_UNREACH);
    expect(icmpCode(dv, 0)).toBe(FRAG_NEEDED);
    expect(icmpChecksum(dv, 0)).toBe(0x5ad4);
    expect(icmpNextHopMtu(dv, 0)).toBe(1450);
    expect(icmpRest(dv, 0)).toBe(1450);
  });
});

describe('icmp construct', () => {
  it('writes every field and the checksum into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(20).fill(0xa5);
    const dv = view(u8);
    dv.setUint8(ICMP_TYPE, ECHO_REQUEST);
    dv.setUint8(ICMP_CODE, 0);
    dv.setUint16(4, 1);
    dv.setUint16(6, 2);
    u8.set(new TextEncoder().encode('abcdefgh'), 8);
    icmpWriteChecksum(dv, 0, 16);
    expect(u8.subarray(0, 16)).toEqual(PACKET_BYTES);
    expect([...u8.subarray(16)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('turning a request into a reply in place keeps the checksum valid after a rewrite', () => {
    const u8 = PACKET_BYTES.slice();
    const dv = view(u8);
    dv.setUint8(ICMP_TYPE, ECHO_REPLY);
    icmpWriteChecksum(dv, 0, 16);
    expect(icmpChecksum(dv, 0)).toBe(0x6e67); // 0x6667 + 0x0800 (one word changed by 0x0800)
    expect(checkIcmp(dv, u8, 0, 16)).toBe(Drop.None);
  });
});

describe('IcmpRepr', () => {
  it('parses both golden packets', () => {
    expect(parseIcmp(PACKET_BYTES, 0, 16)).toEqual(REPR);
    expect(parseIcmp(FRAG_NEEDED_BYTES, 0, 36)).toEqual(FRAG_REPR);
  });

  it('emits both golden packets into a 0xa5-filled buffer', () => {
    for (const [repr, golden] of [[REPR, PACKET_BYTES], [FRAG_REPR, FRAG_NEEDED_BYTES]] as const) {
      const u8 = new Uint8Array(golden.length + 3).fill(0xa5);
      expect(emitIcmp(repr, u8, 0)).toBe(golden.length);
      expect(u8.subarray(0, golden.length)).toEqual(golden);
      expect([...u8.subarray(golden.length)]).toEqual([0xa5, 0xa5, 0xa5]);
    }
  });

  it('round-trips parse -> emit', () => {
    const repr = parseIcmp(FRAG_NEEDED_BYTES, 0, 36) as IcmpRepr;
    const u8 = new Uint8Array(36);
    emitIcmp(repr, u8, 0);
    expect(u8).toEqual(FRAG_NEEDED_BYTES);
  });

  it('emits and parses at a non-zero offset, also through a subarray', () => {
    const frame = new Uint8Array(64).fill(0xa5);
    expect(emitIcmp(REPR, frame, 34)).toBe(16);
    expect(frame.subarray(34, 50)).toEqual(PACKET_BYTES);
    expect(frame.subarray(0, 34).every((b) => b === 0xa5)).toBe(true);
    expect(frame.subarray(50).every((b) => b === 0xa5)).toBe(true);
    expect(parseIcmp(frame, 34, 50)).toEqual(REPR);
    expect(parseIcmp(frame.subarray(30), 4, 20)).toEqual(REPR);
  });

  it('checksums an odd-length payload with the RFC 1071 zero pad', () => {
    const repr: IcmpRepr = { type: ECHO_REPLY, code: 0, rest: 0xbeef0007, payload: new Uint8Array([1, 2, 3, 4, 5]) };
    const u8 = new Uint8Array(13);
    expect(emitIcmp(repr, u8, 0)).toBe(13);
    const expected = (() => { const c = u8.slice(); c[2] = 0; c[3] = 0; return refChecksum(c, 0, 13); })();
    expect(icmpChecksum(view(u8), 0)).toBe(expected);
    expect(parseIcmp(u8, 0, 13)).toEqual(repr);
  });
});

describe('icmp negative checks', () => {
  it('IcmpTruncated below 8 bytes', () => {
    expect(checkIcmp(view(PACKET_BYTES), PACKET_BYTES, 0, 7)).toBe(Drop.IcmpTruncated);
    expect(checkIcmp(view(PACKET_BYTES), PACKET_BYTES, 10, 16)).toBe(Drop.IcmpTruncated);
    expect(checkIcmp(view(PACKET_BYTES), PACKET_BYTES, 0, 0)).toBe(Drop.IcmpTruncated);
    expect(parseIcmp(PACKET_BYTES, 0, 7)).toBe(Drop.IcmpTruncated);
  });

  it('IcmpBadChecksum when any byte of header or data is wrong, or the message is cut short', () => {
    for (const at of [0, 1, 2, 3, 5, 7, 8, 15]) {
      const u8 = PACKET_BYTES.slice();
      u8[at] ^= 0x01;
      expect(checkIcmp(view(u8), u8, 0, 16), `byte ${at}`).toBe(Drop.IcmpBadChecksum);
    }
    expect(checkIcmp(view(PACKET_BYTES), PACKET_BYTES, 0, 14)).toBe(Drop.IcmpBadChecksum);
    const zeros = new Uint8Array(8); // an all-zero message needs checksum 0xffff
    expect(checkIcmp(view(zeros), zeros, 0, 8)).toBe(Drop.IcmpBadChecksum);
    const bad = PACKET_BYTES.slice();
    bad[15] = 0;
    expect(parseIcmp(bad, 0, 16)).toBe(Drop.IcmpBadChecksum);
  });
});
