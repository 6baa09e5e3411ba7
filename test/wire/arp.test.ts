/**
 * Tests for src/wire/arp.ts. Golden packets written out with Python's struct:
 * a request "who-has 10.244.1.1 tell 10.244.1.5" from 02:00:00:00:00:01 and the gateway's reply
 * "10.244.1.1 is-at 02:00:0a:f4:01:01".
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import {
  ARP_HLEN, ARP_HTYPE, ARP_LEN, ARP_OPER, ARP_PLEN, ARP_PTYPE, ARP_REPLY, ARP_REQUEST, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA,
  arpOper, arpSenderIp, arpSenderMacHi, arpSenderMacLo, arpTargetIp, arpTargetMacHi, arpTargetMacLo, checkArp, emitArp,
  parseArp, writeArp, type ArpRepr,
} from '../../src/wire/arp.ts';

// 28 bytes
const PACKET_BYTES = new Uint8Array([
  0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0xf4,
  0x01, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xf4, 0x01, 0x01,
]);
// 28 bytes
const REPLY_BYTES = new Uint8Array([
  0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x01, 0x0a, 0xf4,
  0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x0a, 0xf4, 0x01, 0x05,
]);

const REQUEST_REPR: ArpRepr = {
  op: ARP_REQUEST, senderMac: '02:00:00:00:00:01', senderIp: '10.244.1.5', targetMac: '00:00:00:00:00:00', targetIp: '10.244.1.1',
};
const REPLY_REPR: ArpRepr = {
  op: ARP_REPLY, senderMac: '02:00:0a:f4:01:01', senderIp: '10.244.1.1', targetMac: '02:00:00:00:00:01', targetIp: '10.244.1.5',
};

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

describe('arp constants', () => {
  it('match RFC 826 with Ethernet/IPv4 lengths', () => {
    expect([ARP_HTYPE, ARP_PTYPE, ARP_HLEN, ARP_PLEN, ARP_OPER, ARP_SHA, ARP_SPA, ARP_THA, ARP_TPA, ARP_LEN])
      .toEqual([0, 2, 4, 5, 6, 8, 14, 18, 24, 28]);
    expect([ARP_REQUEST, ARP_REPLY]).toEqual([1, 2]);
  });
});

describe('arp deconstruct', () => {
  it('reads every field of the request', () => {
    const dv = view(PACKET_BYTES);
    expect(checkArp(dv, 0, 28)).toBe(Drop.None);
    expect(dv.getUint16(ARP_HTYPE)).toBe(1);
    expect(dv.getUint16(ARP_PTYPE)).toBe(0x0800);
    expect(dv.getUint8(ARP_HLEN)).toBe(6);
    expect(dv.getUint8(ARP_PLEN)).toBe(4);
    expect(arpOper(dv, 0)).toBe(ARP_REQUEST);
    expect(arpSenderMacHi(dv, 0)).toBe(0x0200);
    expect(arpSenderMacLo(dv, 0)).toBe(0x00000001);
    expect(arpSenderIp(dv, 0)).toBe(0x0af40105);
    expect(arpTargetMacHi(dv, 0)).toBe(0);
    expect(arpTargetMacLo(dv, 0)).toBe(0);
    expect(arpTargetIp(dv, 0)).toBe(0x0af40101);
  });

  it('reads every field of the reply', () => {
    const dv = view(REPLY_BYTES);
    expect(checkArp(dv, 0, 28)).toBe(Drop.None);
    expect(arpOper(dv, 0)).toBe(ARP_REPLY);
    expect(arpSenderMacHi(dv, 0)).toBe(0x0200);
    expect(arpSenderMacLo(dv, 0)).toBe(0x0af40101);
    expect(arpSenderIp(dv, 0)).toBe(0x0af40101);
    expect(arpTargetMacHi(dv, 0)).toBe(0x0200);
    expect(arpTargetMacLo(dv, 0)).toBe(0x00000001);
    expect(arpTargetIp(dv, 0)).toBe(0x0af40105);
  });
});

describe('arp construct', () => {
  it('writes every field into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(32).fill(0xa5);
    writeArp(view(u8), 0, ARP_REQUEST, 0x0200, 0x00000001, 0x0af40105, 0, 0, 0x0af40101);
    expect(u8.subarray(0, 28)).toEqual(PACKET_BYTES);
    expect([...u8.subarray(28)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
    writeArp(view(u8), 0, ARP_REPLY, 0x0200, 0x0af40101, 0x0af40101, 0x0200, 0x00000001, 0x0af40105);
    expect(u8.subarray(0, 28)).toEqual(REPLY_BYTES);
  });
});

describe('ArpRepr', () => {
  it('parses both golden packets', () => {
    expect(parseArp(PACKET_BYTES, 0, 28)).toEqual(REQUEST_REPR);
    expect(parseArp(REPLY_BYTES, 0, 28)).toEqual(REPLY_REPR);
  });

  it('emits both golden packets into a 0xa5-filled buffer', () => {
    for (const [repr, bytes] of [[REQUEST_REPR, PACKET_BYTES], [REPLY_REPR, REPLY_BYTES]] as const) {
      const u8 = new Uint8Array(28).fill(0xa5);
      expect(emitArp(repr, u8, 0)).toBe(28);
      expect(u8).toEqual(bytes);
    }
  });

  it('round-trips parse -> emit', () => {
    const repr = parseArp(REPLY_BYTES, 0, 28) as ArpRepr;
    const u8 = new Uint8Array(28);
    emitArp(repr, u8, 0);
    expect(u8).toEqual(REPLY_BYTES);
  });

  it('emits and parses at a non-zero offset inside an Ethernet frame', () => {
    const frame = new Uint8Array(60).fill(0xa5);
    expect(emitArp(REQUEST_REPR, frame, 14)).toBe(28);
    expect(frame.subarray(14, 42)).toEqual(PACKET_BYTES);
    expect(frame.subarray(0, 14).every((b) => b === 0xa5)).toBe(true);
    expect(frame.subarray(42).every((b) => b === 0xa5)).toBe(true);
    // Ethernet pads ARP to 60 bytes: trailing bytes are allowed.
    expect(parseArp(frame, 14, 60)).toEqual(REQUEST_REPR);
    expect(parseArp(frame.subarray(10), 4, 50)).toEqual(REQUEST_REPR);
  });

  it('throws on invalid address text (control path)', () => {
    expect(() => emitArp({ ...REQUEST_REPR, senderIp: '10.244.1' }, new Uint8Array(28), 0)).toThrow(/IPv4/);
    expect(() => emitArp({ ...REQUEST_REPR, targetMac: 'nope' }, new Uint8Array(28), 0)).toThrow(/MAC/);
  });
});

describe('arp negative checks', () => {
  function mutated(at: number, value: number, width: 1 | 2 = 1): Uint8Array {
    const u8 = PACKET_BYTES.slice();
    if (width === 1) u8[at] = value;
    else view(u8).setUint16(at, value);
    return u8;
  }

  it('ArpTruncated below 28 bytes', () => {
    expect(checkArp(view(PACKET_BYTES), 0, 27)).toBe(Drop.ArpTruncated);
    expect(checkArp(view(PACKET_BYTES), 1, 28)).toBe(Drop.ArpTruncated);
    expect(checkArp(view(PACKET_BYTES), 0, 0)).toBe(Drop.ArpTruncated);
    expect(parseArp(PACKET_BYTES, 0, 27)).toBe(Drop.ArpTruncated);
  });

  it('ArpUnsupported for a hardware type other than Ethernet', () => {
    expect(checkArp(view(mutated(ARP_HTYPE, 6, 2)), 0, 28)).toBe(Drop.ArpUnsupported); // IEEE 802
    expect(checkArp(view(mutated(ARP_HTYPE, 0x0101, 2)), 0, 28)).toBe(Drop.ArpUnsupported);
  });

  it('ArpUnsupported for a protocol type other than IPv4', () => {
    expect(checkArp(view(mutated(ARP_PTYPE, 0x86dd, 2)), 0, 28)).toBe(Drop.ArpUnsupported);
    expect(checkArp(view(mutated(ARP_PTYPE, 0x0806, 2)), 0, 28)).toBe(Drop.ArpUnsupported);
  });

  it('ArpUnsupported for address lengths other than 6/4', () => {
    expect(checkArp(view(mutated(ARP_HLEN, 8)), 0, 28)).toBe(Drop.ArpUnsupported);
    expect(checkArp(view(mutated(ARP_HLEN, 0)), 0, 28)).toBe(Drop.ArpUnsupported);
    expect(checkArp(view(mutated(ARP_PLEN, 16)), 0, 28)).toBe(Drop.ArpUnsupported);
    expect(checkArp(view(mutated(ARP_PLEN, 3)), 0, 28)).toBe(Drop.ArpUnsupported);
  });

  it('ArpUnsupported for opcodes other than request/reply (0, RARP 3/4, InARP 8)', () => {
    for (const op of [0, 3, 4, 8, 0x0100, 0xffff]) {
      expect(checkArp(view(mutated(ARP_OPER, op, 2)), 0, 28), `op ${op}`).toBe(Drop.ArpUnsupported);
      expect(parseArp(mutated(ARP_OPER, op, 2), 0, 28)).toBe(Drop.ArpUnsupported);
    }
  });
});
