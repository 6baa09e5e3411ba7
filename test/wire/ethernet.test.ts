/**
 * Tests for src/wire/ethernet.ts. The golden frame was written out byte by byte with Python's
 * struct (dst 02:11:22:33:44:55, src 02:66:77:88:99:aa, EtherType IPv4, then 4 payload bytes).
 */
import { describe, expect, it } from 'vitest';
import { Drop } from '../../src/wire/drop.ts';
import {
  ETH_DST, ETH_HEADER_LEN, ETH_SRC, ETH_TYPE, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, checkEthernet, emitEthernet,
  ethType, formatMac, formatMacAt, isBroadcastMac, isMulticastMac, macHi, macLo, parseEthernet, parseMacString, writeEthernetHeader,
  writeMac, type EthernetRepr,
} from '../../src/wire/ethernet.ts';

// 18 bytes: 14-byte header + 4 payload bytes
const PACKET_BYTES = new Uint8Array([
  0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x02, 0x66, 0x77, 0x88, 0x99, 0xaa, 0x08, 0x00, 0xde, 0xad,
  0xbe, 0xef,
]);

const REPR: EthernetRepr = { dst: '02:11:22:33:44:55', src: '02:66:77:88:99:aa', ethertype: ETHERTYPE_IPV4 };

function view(u8: Uint8Array): DataView {
  return new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
}

describe('ethernet constants', () => {
  it('match IEEE 802.3 / RFC 894', () => {
    expect([ETH_DST, ETH_SRC, ETH_TYPE, ETH_HEADER_LEN]).toEqual([0, 6, 12, 14]);
    expect([ETHERTYPE_IPV4, ETHERTYPE_ARP, ETHERTYPE_IPV6]).toEqual([0x0800, 0x0806, 0x86dd]);
  });
});

describe('ethernet deconstruct', () => {
  it('reads every field', () => {
    const u8 = PACKET_BYTES.slice();
    const dv = view(u8);
    expect(checkEthernet(0, u8.length)).toBe(Drop.None);
    expect(macHi(dv, ETH_DST)).toBe(0x0211);
    expect(macLo(dv, ETH_DST)).toBe(0x22334455);
    expect(macHi(dv, ETH_SRC)).toBe(0x0266);
    expect(macLo(dv, ETH_SRC)).toBe(0x778899aa); // u32, not negative
    expect(ethType(dv, 0)).toBe(ETHERTYPE_IPV4);
    expect(isMulticastMac(u8, ETH_DST)).toBe(false);
    expect(isBroadcastMac(dv, ETH_DST)).toBe(false);
    expect(formatMacAt(u8, ETH_SRC)).toBe('02:66:77:88:99:aa');
  });

  it('classifies group addresses by the I/G bit', () => {
    const mac = (s: string) => {
      const { hi, lo } = parseMacString(s);
      const b = new Uint8Array(6);
      writeMac(view(b), 0, hi, lo);
      return b;
    };
    expect(isMulticastMac(mac('ff:ff:ff:ff:ff:ff'), 0)).toBe(true);
    expect(isMulticastMac(mac('01:00:5e:00:00:16'), 0)).toBe(true);
    expect(isMulticastMac(mac('33:33:00:00:00:01'), 0)).toBe(true);
    expect(isMulticastMac(mac('02:00:00:00:00:01'), 0)).toBe(false);
    expect(isMulticastMac(mac('fe:ff:ff:ff:ff:ff'), 0)).toBe(false);
    expect(isBroadcastMac(view(mac('ff:ff:ff:ff:ff:ff')), 0)).toBe(true);
    expect(isBroadcastMac(view(mac('ff:ff:ff:ff:ff:fe')), 0)).toBe(false);
    expect(isBroadcastMac(view(mac('fe:ff:ff:ff:ff:ff')), 0)).toBe(false);
  });
});

describe('ethernet construct', () => {
  it('writes every field into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(18).fill(0xa5);
    const dv = view(u8);
    writeEthernetHeader(dv, 0, 0x0211, 0x22334455, 0x0266, 0x778899aa, ETHERTYPE_IPV4);
    u8.set([0xde, 0xad, 0xbe, 0xef], 14);
    expect(u8).toEqual(PACKET_BYTES);
  });

  it('writeMac writes six bytes and nothing else', () => {
    const u8 = new Uint8Array(10).fill(0xa5);
    writeMac(view(u8), 2, 0x0266, 0x778899aa);
    expect([...u8]).toEqual([0xa5, 0xa5, 0x02, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xa5, 0xa5]);
  });
});

describe('EthernetRepr', () => {
  it('parses the golden frame', () => {
    expect(parseEthernet(PACKET_BYTES, 0, PACKET_BYTES.length)).toEqual(REPR);
  });

  it('emits the golden header into a 0xa5-filled buffer', () => {
    const u8 = new Uint8Array(18).fill(0xa5);
    expect(emitEthernet(REPR, u8, 0)).toBe(14);
    expect(u8.subarray(0, 14)).toEqual(PACKET_BYTES.subarray(0, 14));
    expect([...u8.subarray(14)]).toEqual([0xa5, 0xa5, 0xa5, 0xa5]);
  });

  it('round-trips parse -> emit -> parse', () => {
    const repr = parseEthernet(PACKET_BYTES, 0, 18) as EthernetRepr;
    const u8 = new Uint8Array(14);
    emitEthernet(repr, u8, 0);
    expect(u8).toEqual(PACKET_BYTES.subarray(0, 14));
    expect(parseEthernet(u8, 0, 14)).toEqual(repr);
  });

  it('emits and parses at a non-zero offset, also through a subarray', () => {
    const big = new Uint8Array(64).fill(0xa5);
    expect(emitEthernet(REPR, big, 23)).toBe(14);
    expect(big.subarray(23, 37)).toEqual(PACKET_BYTES.subarray(0, 14));
    expect(big.subarray(0, 23).every((b) => b === 0xa5)).toBe(true);
    expect(big.subarray(37).every((b) => b === 0xa5)).toBe(true);
    expect(parseEthernet(big, 23, 37)).toEqual(REPR);
    const sub = big.subarray(20, 50);
    expect(parseEthernet(sub, 3, 17)).toEqual(REPR);
    const out = new Uint8Array(40).fill(0xa5);
    emitEthernet(REPR, out.subarray(5), 2);
    expect(out.subarray(7, 21)).toEqual(PACKET_BYTES.subarray(0, 14));
  });

  it('accepts upper-case MAC text and emits it canonically', () => {
    const u8 = new Uint8Array(14);
    emitEthernet({ dst: 'FF:FF:FF:FF:FF:FF', src: '02:AB:cd:00:00:01', ethertype: ETHERTYPE_ARP }, u8, 0);
    expect(parseEthernet(u8, 0, 14)).toEqual({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:ab:cd:00:00:01', ethertype: ETHERTYPE_ARP });
  });
});

describe('ethernet negative checks', () => {
  it('EthTruncated below 14 bytes, at any offset', () => {
    expect(checkEthernet(0, 13)).toBe(Drop.EthTruncated);
    expect(checkEthernet(0, 0)).toBe(Drop.EthTruncated);
    expect(checkEthernet(5, 18)).toBe(Drop.EthTruncated);
    expect(checkEthernet(10, 5)).toBe(Drop.EthTruncated);
    expect(checkEthernet(0, 14)).toBe(Drop.None);
    expect(checkEthernet(4, 18)).toBe(Drop.None);
    expect(parseEthernet(PACKET_BYTES, 0, 13)).toBe(Drop.EthTruncated);
    expect(parseEthernet(PACKET_BYTES, 5, 18)).toBe(Drop.EthTruncated);
  });
});

describe('MAC text', () => {
  it('parses and formats', () => {
    expect(parseMacString('02:11:22:33:44:55')).toEqual({ hi: 0x0211, lo: 0x22334455 });
    expect(parseMacString('ff:ff:ff:ff:ff:ff')).toEqual({ hi: 0xffff, lo: 0xffffffff });
    expect(parseMacString('00:00:00:00:00:00')).toEqual({ hi: 0, lo: 0 });
    expect(formatMac(0x0211, 0x22334455)).toBe('02:11:22:33:44:55');
    expect(formatMac(0xffff, 0xffffffff)).toBe('ff:ff:ff:ff:ff:ff');
    expect(formatMac(0x0a0b, 0x0c0d0e0f)).toBe('0a:0b:0c:0d:0e:0f');
    expect(formatMac(0xffff, -1)).toBe('ff:ff:ff:ff:ff:ff'); // a signed lo is read as u32
  });

  it('throws on anything that is not six colon-separated hex pairs', () => {
    for (const bad of ['', '02:11:22:33:44', '02:11:22:33:44:55:66', '0g:11:22:33:44:55', '2:11:22:33:44:55',
      '02-11-22-33-44-55', ' 02:11:22:33:44:55', '02:11:22:33:44:55 ', '021122334455', '02:11:22:33:44:555']) {
      expect(() => parseMacString(bad), bad).toThrow(/invalid MAC/);
    }
  });

  it('round-trips random MACs', () => {
    let seed = 99;
    for (let i = 0; i < 1000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const hi = seed >>> 16;
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      const lo = seed;
      expect(parseMacString(formatMac(hi, lo))).toEqual({ hi, lo });
    }
  });
});
