/**
 * Ethernet II framing (IEEE 802.3 with an EtherType, as used by every TAP device and VXLAN inner
 * frame podwire sees).
 *
 * An Ethernet frame as the kernel hands it to a TAP reader has no preamble and no FCS: it is the
 * 14-byte header below followed directly by the payload (IPv4 or ARP for podwire; anything else is
 * dropped by the classifier as EthUnsupportedType). 802.1Q tags are not used on pod links.
 *
 * Invariant: after `checkEthernet(off, end)` returns Drop.None, every accessor below may read the
 * 14 header bytes at `off` without going out of bounds.
 *
 * MAC addresses on the hot path are never strings: a MAC is two numbers, `hi` (the first two bytes,
 * a u16) and `lo` (the last four bytes, a u32 `>>> 0`), compared in place. Strings appear only in
 * the Repr (control path, tests, trace output).
 */
import { Drop } from './drop.ts';

/*
 * Ethernet II header (IEEE 802.3 clause 3, EtherType form; RFC 894 for IPv4 over it):
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                Destination MAC (bytes 0-3)                    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * | Destination MAC (bytes 4-5)   |   Source MAC (bytes 0-1)      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                   Source MAC (bytes 2-5)                      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           EtherType           |  Payload ...
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Bit 0 of the first destination byte (the least significant bit, transmitted first) is the I/G
 * bit: 1 means a group (multicast or broadcast) address.
 */
/** Offset of the destination MAC address (6 bytes). */
export const ETH_DST = 0;
/** Offset of the source MAC address (6 bytes). */
export const ETH_SRC = 6;
/** Offset of the EtherType (2 bytes). */
export const ETH_TYPE = 12;
/** Length of the Ethernet II header in bytes. */
export const ETH_HEADER_LEN = 14;

/** EtherType of IPv4 (RFC 894). */
export const ETHERTYPE_IPV4 = 0x0800;
/** EtherType of ARP (RFC 826). */
export const ETHERTYPE_ARP = 0x0806;
/** EtherType of IPv6 (RFC 2464); recognised only to name it in traces and drop it. */
export const ETHERTYPE_IPV6 = 0x86dd;

/** Return Drop.None if a 14-byte Ethernet header fits in `[off, end)`, else Drop.EthTruncated. */
export function checkEthernet(off: number, end: number): Drop {
  if (end - off < ETH_HEADER_LEN) return Drop.EthTruncated;
  return Drop.None;
}

/** Return the first two bytes of the MAC address at `off` as a u16. */
export function macHi(dv: DataView, off: number): number {
  return dv.getUint16(off);
}

/** Return the last four bytes of the MAC address at `off` as a u32. */
export function macLo(dv: DataView, off: number): number {
  return dv.getUint32(off + 2);
}

/** Write the MAC address (`hi`, `lo`) as six bytes at `off`. */
export function writeMac(dv: DataView, off: number, hi: number, lo: number): void {
  dv.setUint16(off, hi);
  dv.setUint32(off + 2, lo);
}

/** Return true if the MAC at `off` is a group address (I/G bit, bit 0 of byte 0); broadcast is one. */
export function isMulticastMac(u8: Uint8Array, off: number): boolean {
  return (u8[off] & 1) !== 0;
}

/** Return true if the MAC at `off` is the broadcast address ff:ff:ff:ff:ff:ff. */
export function isBroadcastMac(dv: DataView, off: number): boolean {
  return dv.getUint16(off) === 0xffff && dv.getUint32(off + 2) === 0xffffffff;
}

/** Return the EtherType of the frame whose Ethernet header starts at `off`. */
export function ethType(dv: DataView, off: number): number {
  return dv.getUint16(off + ETH_TYPE);
}

/** Write a whole Ethernet header at `off`: destination, source (as hi/lo pairs) and EtherType. */
export function writeEthernetHeader(dv: DataView, off: number, dstHi: number, dstLo: number,
                                    srcHi: number, srcLo: number, ethertype: number): void {
  dv.setUint16(off + ETH_DST, dstHi);
  dv.setUint32(off + ETH_DST + 2, dstLo);
  dv.setUint16(off + ETH_SRC, srcHi);
  dv.setUint32(off + ETH_SRC + 2, srcLo);
  dv.setUint16(off + ETH_TYPE, ethertype);
}

/** Six colon-separated pairs of hex digits, either case. */
const MAC_RE = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i;

/**
 * Parse 'aa:bb:cc:dd:ee:ff' (case-insensitive, exactly two hex digits per byte) into {hi, lo}.
 * Throws an Error naming the text if it is not a MAC address. Control path only.
 */
export function parseMacString(text: string): { hi: number; lo: number } {
  const m = MAC_RE.exec(text);
  if (m === null) throw new Error(`invalid MAC address: ${JSON.stringify(text)}`);
  const b = m.slice(1).map((h) => parseInt(h, 16));
  return { hi: (b[0] << 8) | b[1], lo: ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) >>> 0 };
}

/** Format the MAC (`hi`, `lo`) as lowercase 'aa:bb:cc:dd:ee:ff'. */
export function formatMac(hi: number, lo: number): string {
  const bytes = [(hi >>> 8) & 0xff, hi & 0xff, lo >>> 24, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Format the six bytes at `u8[off]` as a MAC string (for traces and Reprs). */
export function formatMacAt(u8: Uint8Array, off: number): string {
  let s = '';
  for (let i = 0; i < 6; i++) {
    if (i > 0) s += ':';
    s += u8[off + i].toString(16).padStart(2, '0');
  }
  return s;
}

/** A decoded Ethernet header (control path and tests). MACs are lowercase strings. */
export interface EthernetRepr {
  dst: string;
  src: string;
  ethertype: number;
}

/** Decode the Ethernet header at `u8[off]`, or return Drop.EthTruncated if it does not fit before `end`. */
export function parseEthernet(u8: Uint8Array, off: number, end: number): EthernetRepr | Drop {
  const drop = checkEthernet(off, end);
  if (drop !== Drop.None) return drop;
  return {
    dst: formatMacAt(u8, off + ETH_DST),
    src: formatMacAt(u8, off + ETH_SRC),
    ethertype: (u8[off + ETH_TYPE] << 8) | u8[off + ETH_TYPE + 1],
  };
}

/**
 * Write `repr` as an Ethernet header at `u8[off]` and return the number of bytes written (14).
 * Throws if a MAC string is invalid (control path).
 */
export function emitEthernet(repr: EthernetRepr, u8: Uint8Array, off: number): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const dst = parseMacString(repr.dst);
  const src = parseMacString(repr.src);
  writeEthernetHeader(dv, off, dst.hi, dst.lo, src.hi, src.lo, repr.ethertype);
  return ETH_HEADER_LEN;
}
