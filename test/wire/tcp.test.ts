/**
 * Tests for src/wire/tcp.ts. Golden segments written out with Python's struct, checksums from a
 * separate one's complement loop over pseudo-header + segment in that script, 10.244.1.5 -> 10.244.1.6:
 *   PACKET_BYTES: SYN 40000 -> 80, seq 1, window 64240, options MSS 1460, NOP, NOP, SACK-permitted
 *                 (data offset 7), checksum 0xd3aa;
 *   DATA_BYTES:   PSH|ACK, seq 0x11223344, ack 0x55667788, window 502, "GET / HTTP/1.0\r\n\r\n",
 *                 checksum 0x094d.
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import {
  ACK, CWR, ECE, FIN, PSH, RST, SYN, TCP_ACK, TCP_CHECKSUM, TCP_DATA_OFF, TCP_DST_PORT, TCP_FLAG_ACK, TCP_FLAG_SYN, TCP_FLAGS,
  TCP_MIN_HEADER_LEN, TCP_SEQ, TCP_SRC_PORT, TCP_URGENT, TCP_WINDOW, URG, checkTcp, emitTcp, parseTcp, tcpAck, tcpChecksum,
  tcpDstPort, tcpFlags, tcpHeaderLen, tcpSeq, tcpSetDstPort, tcpSetSrcPort, tcpSrcPort, tcpUpdateChecksumForAddr, tcpUrgent,
  tcpWindow, tcpWriteChecksum, type TcpRepr,
} from '../../src/wire/tcp.ts';

// 28 bytes
const PACKET_BYTES = new Uint8Array([
  0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x70, 0x02, 0xfa, 0xf0,
  0xd3, 0xaa, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02,
]);
// 38 bytes
const DATA_BYTES = new Uint8Array([
  0x9c, 0x40, 0x00, 0x50, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x50, 0x18, 0x01, 0xf6,
  0x09, 0x4d, 0x00, 0x00, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31,
  0x2e, 0x30, 0x0d, 0x0a, 0x0d, 0x0a,
]);
const SRC = 0x0af40105; // 10.244.1.5
const DST = 0x0af40106; // 10.244.1.6

const SYN_REPR: TcpRepr = {
  srcPort: 40000, dstPort: 80, seq: 1, ack: 0, flags: SYN, window: 64240, urgent: 0,
  options: new Uint8Array([0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02]), payload: new Uint8Array(0),
};
const DATA_REPR: TcpRepr = {
  srcPort: 40000, dstPort: 80, seq: 0x11223344, ack: 0x55667788, flags: PSH | ACK, window: 502, urgent: 0,
  options: new Uint8Array(0), payload: new TextEncoder().encode('GET / HTTP/1.0\r\n\r\n'),
};

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

function check(u8: Uint8Array, end = u8.length, verify = true, src = SRC, dst = DST, off = 0): Drop {
  return checkTcp(view(u8), u8, off, end, src, dst, verify);
}

/** Independent TCP checksum: pseudo-header + segment (checksum field skipped), naive loop. */
function refTcpChecksum(u8: Uint8Array, src: number, dst: number): number {
  const len = u8.length;
  let s = (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + 6 + len;
  for (let i = 0; i < len; i += 2) {
    if (i === TCP_CHECKSUM) continue;
    s += (u8[i] << 8) | (i + 1 < len ? u8[i + 1] : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
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

describe('tcp constants', () => {
  it('match RFC 9293', () => {
    expect([TCP_SRC_PORT, TCP_DST_PORT, TCP_SEQ, TCP_ACK, TCP_DATA_OFF, TCP_FLAGS, TCP_WINDOW, TCP_CHECKSUM, TCP_URGENT,
      TCP_MIN_HEADER_LEN]).toEqual([0, 2, 4, 8, 12, 13, 14, 16, 18, 20]);
    expect([FIN, SYN, RST, PSH, ACK, URG, ECE, CWR]).toEqual([1, 2, 4, 8, 16, 32, 64, 128]);
    expect([TCP_FLAG_SYN, TCP_FLAG_ACK]).toEqual([SYN, ACK]);
  });
});

describe('tcp deconstruct', () => {
  it('reads every field of the SYN', () => {
    const dv = view(PACKET_BYTES);
    expect(check(PACKET_BYTES)).toBe(Drop.None);
    expect(tcpSrcPort(dv, 0)).toBe(40000);
    expect(tcpDstPort(dv, 0)).toBe(80);
    expect(tcpSeq(dv, 0)).toBe(1);
    expect(tcpAck(dv, 0)).toBe(0);
    expect(tcpHeaderLen(dv, 0)).toBe(28);
    expect(tcpFlags(dv, 0)).toBe(SYN);
    expect(tcpWindow(dv, 0)).toBe(64240);
    expect(tcpChecksum(dv, 0)).toBe(0xd3aa);
    expect(tcpUrgent(dv, 0)).toBe(0);
  });

  it('reads every field of the data segment (u32 sequence numbers stay unsigned)', () => {
    const dv = view(DATA_BYTES);
    expect(check(DATA_BYTES)).toBe(Drop.None);
    expect(tcpSeq(dv, 0)).toBe(0x11223344);
    expect(tcpAck(dv, 0)).toBe(0x55667788);
    expect(tcpHeaderLen(dv, 0)).toBe(20);
    expect(tcpFlags(dv, 0)).toBe(PSH | ACK);
    expect(tcpWindow(dv, 0)).toBe(502);
    expect(tcpChecksum(dv, 0)).toBe(0x094d);
    const big = DATA_BYTES.slice();
    view(big).setUint32(TCP_SEQ, 0xfffffffe);
    expect(tcpSeq(view(big), 0)).toBe(0xfffffffe);
  });
});

describe('tcp construct', () => {
  it('writes every field and the checksum into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(32).fill(0xa5);
    const dv = view(u8);
    dv.setUint16(TCP_SRC_PORT, 40000);
    dv.setUint16(TCP_DST_PORT, 80);
    dv.setUint32(TCP_SEQ, 1);
    dv.setUint32(TCP_ACK, 0);
    dv.setUint8(TCP_DATA_OFF, 7 << 4);
    dv.setUint8(TCP_FLAGS, SYN);
    dv.setUint16(TCP_WINDOW, 64240);
    dv.setUint16(TCP_URGENT, 0);
    u8.set([0x02, 0x04, 0x05, 0xb4, 0x01, 0x01, 0x04, 0x02], 20);
    tcpWriteChecksum(dv, 0, 28, SRC, DST);
    expect(u8.subarray(0, 28)).toEqual(PACKET_BYTES);
    expect([...u8.subarray(28)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });
});

describe('TcpRepr', () => {
  it('parses both golden segments, with or without checksum verification', () => {
    expect(parseTcp(PACKET_BYTES, 0, 28, SRC, DST)).toEqual(SYN_REPR);
    expect(parseTcp(DATA_BYTES, 0, 38, '10.244.1.5', '10.244.1.6')).toEqual(DATA_REPR);
    expect(parseTcp(DATA_BYTES, 0, 38)).toEqual(DATA_REPR);
    expect(parseTcp(DATA_BYTES, 0, 38, SRC, SRC)).toBe(Drop.TcpBadChecksum);
  });

  it('emits both golden segments into a 0xa5-filled buffer', () => {
    for (const [repr, golden] of [[SYN_REPR, PACKET_BYTES], [DATA_REPR, DATA_BYTES]] as const) {
      const u8 = new Uint8Array(golden.length + 2).fill(0xa5);
      expect(emitTcp(repr, u8, 0, SRC, DST)).toBe(golden.length);
      expect(u8.subarray(0, golden.length)).toEqual(golden);
      expect([...u8.subarray(golden.length)]).toEqual([0xa5, 0xa5]);
    }
  });

  it('round-trips parse -> emit', () => {
    for (const golden of [PACKET_BYTES, DATA_BYTES]) {
      const repr = parseTcp(golden, 0, golden.length, SRC, DST) as TcpRepr;
      const u8 = new Uint8Array(golden.length);
      emitTcp(repr, u8, 0, SRC, DST);
      expect(u8).toEqual(golden);
    }
  });

  it('emits and parses at a non-zero offset, also through a subarray', () => {
    const frame = new Uint8Array(14 + 20 + 38 + 4).fill(0xa5);
    expect(emitTcp(DATA_REPR, frame, 34, SRC, DST)).toBe(38);
    expect(frame.subarray(34, 72)).toEqual(DATA_BYTES);
    expect(frame.subarray(0, 34).every((b) => b === 0xa5)).toBe(true);
    expect(frame.subarray(72).every((b) => b === 0xa5)).toBe(true);
    expect(parseTcp(frame, 34, 72, SRC, DST)).toEqual(DATA_REPR);
    expect(parseTcp(frame.subarray(30), 4, 42, SRC, DST)).toEqual(DATA_REPR);
  });

  it('pads options to a multiple of 4 with zeros and rejects more than 40 bytes', () => {
    const u8 = new Uint8Array(24).fill(0xa5);
    expect(emitTcp({ ...DATA_REPR, options: new Uint8Array([0x02, 0x04, 0x05]), payload: new Uint8Array(0) }, u8, 0, SRC, DST)).toBe(24);
    expect(u8[TCP_DATA_OFF]).toBe(6 << 4);
    expect([...u8.subarray(20)]).toEqual([0x02, 0x04, 0x05, 0x00]);
    expect(check(u8)).toBe(Drop.None);
    expect(() => emitTcp({ ...DATA_REPR, options: new Uint8Array(44) }, new Uint8Array(200), 0, SRC, DST)).toThrow(/options/);
  });
});

describe('tcp incremental checksum updates (RFC 1624)', () => {
  it('DNAT of port and address keeps the segment valid and equal to a recomputation', () => {
    const u8 = DATA_BYTES.slice();
    const dv = view(u8);
    const newDst = 0x0af40207;
    tcpSetDstPort(dv, 0, 8080);
    tcpUpdateChecksumForAddr(dv, 0, DST, newDst);
    expect(tcpDstPort(dv, 0)).toBe(8080);
    expect(check(u8, 38, true, SRC, newDst)).toBe(Drop.None);
    expect(tcpChecksum(dv, 0)).toBe(refTcpChecksum(u8, SRC, newDst));
  });

  it('equal a full recomputation on thousands of random segments and rewrites', () => {
    const rnd = mulberry32(9293);
    for (let n = 0; n < 5000; n++) {
      const len = 20 + (rnd() % 60);
      const u8 = new Uint8Array(len);
      for (let i = 0; i < len; i++) u8[i] = rnd() & 0xff;
      u8[TCP_DATA_OFF] = 5 << 4;
      let src = rnd();
      const dst = rnd();
      const dv = view(u8);
      tcpWriteChecksum(dv, 0, len, src, dst);
      switch (n % 3) {
        case 0: tcpSetSrcPort(dv, 0, rnd() & 0xffff); break;
        case 1: tcpSetDstPort(dv, 0, n % 2 ? 0 : 0xffff); break;
        default: {
          const nu = n % 5 === 0 ? 0 : rnd();
          tcpUpdateChecksumForAddr(dv, 0, src, nu);
          src = nu;
        }
      }
      expect(checkTcp(dv, u8, 0, len, src, dst, true), `n=${n}`).toBe(Drop.None);
      expect(tcpChecksum(dv, 0), `n=${n}`).toBe(refTcpChecksum(u8, src, dst));
    }
  });
});

describe('tcp negative checks', () => {
  it('TcpTruncated below 20 bytes', () => {
    expect(check(PACKET_BYTES, 19)).toBe(Drop.TcpTruncated);
    expect(check(PACKET_BYTES, 0)).toBe(Drop.TcpTruncated);
    expect(check(PACKET_BYTES, 28, false, SRC, DST, 9)).toBe(Drop.TcpTruncated);
    expect(parseTcp(PACKET_BYTES, 0, 19)).toBe(Drop.TcpTruncated);
  });

  it('TcpBadHeaderLen when the data offset is below 5 or the header runs past the segment', () => {
    for (const doff of [0, 1, 4]) {
      const u8 = DATA_BYTES.slice();
      u8[TCP_DATA_OFF] = doff << 4;
      expect(check(u8, 38, false), `doff ${doff}`).toBe(Drop.TcpBadHeaderLen);
    }
    expect(check(PACKET_BYTES, 27, false)).toBe(Drop.TcpBadHeaderLen); // 28-byte header
    const doff15 = DATA_BYTES.slice(0, 24);
    doff15[TCP_DATA_OFF] = 15 << 4;
    expect(check(doff15, 24, false)).toBe(Drop.TcpBadHeaderLen);
    expect(parseTcp(doff15, 0, 24)).toBe(Drop.TcpBadHeaderLen);
  });

  it('TcpBadChecksum when verifying and anything covered is wrong; nothing when not verifying', () => {
    for (const at of [0, 4, 13, 16, 17, 20, 37]) {
      const u8 = DATA_BYTES.slice();
      u8[at] ^= 0x01;
      expect(check(u8), `byte ${at}`).toBe(Drop.TcpBadChecksum);
      expect(check(u8, 38, false)).toBe(Drop.None);
    }
    expect(check(DATA_BYTES, 38, true, DST, SRC + 2)).toBe(Drop.TcpBadChecksum);
    expect(check(DATA_BYTES, 37)).toBe(Drop.TcpBadChecksum); // segment cut short
    const zero = DATA_BYTES.slice();
    view(zero).setUint16(TCP_CHECKSUM, 0); // unlike UDP, 0 is not "none"
    expect(check(zero)).toBe(Drop.TcpBadChecksum);
  });
});
