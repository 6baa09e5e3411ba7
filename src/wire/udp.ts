/**
 * UDP (RFC 768): pod datagrams (DNS above all) and the underlay that carries VXLAN.
 *
 * The header is four 16-bit fields. The checksum covers a pseudo-header (source and destination
 * address, protocol, UDP length; see `pseudoHeaderSum`), the UDP header and the data. Two rules of
 * RFC 768 make UDP's checksum different from TCP's:
 *
 *   1. A transmitted checksum of 0 means "no checksum was computed" (legal over IPv4). A receiver
 *      must not verify it, and a NAT rewriting addresses or ports must leave it at 0.
 *   2. So a computed checksum that happens to be 0 is transmitted as 0xffff (its one's complement
 *      twin, "-0", which verifies identically).
 *
 * `udpChecksumUpdate16/32` apply both rules around the RFC 1624 incremental update; use them (not the
 * bare `checksumUpdate*`) for UDP. VXLAN senders usually transmit 0 (RFC 7348 §5: "UDP Checksum: It
 * SHOULD be transmitted as zero"), which is why rule 1 matters on the underlay.
 *
 * Invariant: after `checkUdp(...)` returns Drop.None, the 8 header bytes are in bounds, the length
 * field is between 8 and `end - off`, so the datagram is `[off, off + udpLength)`, and (unless the
 * checksum is 0 or verification was turned off) the checksum verifies. `end` is the IP payload end.
 * A UDP length shorter than the IP payload is accepted (the rest is ignored, as Linux does).
 */
import { Drop } from './drop.ts';
import { checksumUpdate16, checksumUpdate32, foldComplement, onesSumDv, pseudoHeaderSum } from './checksum.ts';
import { IPPROTO_UDP, parseIpv4Addr } from './ipv4.ts';

/*
 * RFC 768 header:
 *
 *  0      7 8     15 16    23 24    31
 * +--------+--------+--------+--------+
 * |     Source      |   Destination   |
 * |      Port       |      Port       |
 * +--------+--------+--------+--------+
 * |                 |                 |
 * |     Length      |    Checksum     |
 * +--------+--------+--------+--------+
 * |
 * |          data octets ...
 * +---------------- ...
 *
 * Length counts the header and the data, in bytes (so at least 8).
 */
/** Offset of the source port. */
export const UDP_SRC_PORT = 0;
/** Offset of the destination port. */
export const UDP_DST_PORT = 2;
/** Offset of the length (header + data, bytes). */
export const UDP_LENGTH = 4;
/** Offset of the checksum. */
export const UDP_CHECKSUM = 6;
/** Length of the UDP header, in bytes. */
export const UDP_HEADER_LEN = 8;

/**
 * Return Drop.None if a UDP datagram starts at `off` and fits before `end` (the IP payload end);
 * otherwise Drop.UdpTruncated (fewer than 8 bytes), Drop.UdpBadLength (length field below 8 or past
 * `end`) or Drop.UdpBadChecksum (a non-zero checksum that does not verify against the pseudo-header
 * of `srcIp`/`dstIp`, host-order u32s). `verifyChecksum = false` skips the last step (for frames
 * whose checksum the sender left to offload).
 */
export function checkUdp(dv: DataView, u8: Uint8Array, off: number, end: number, srcIp: number, dstIp: number,
                         verifyChecksum = true): Drop {
  if (end - off < UDP_HEADER_LEN) return Drop.UdpTruncated;
  const len = dv.getUint16(off + UDP_LENGTH);
  if (len < UDP_HEADER_LEN || off + len > end) return Drop.UdpBadLength;
  if (verifyChecksum && dv.getUint16(off + UDP_CHECKSUM) !== 0) {
    const sum = onesSumDv(dv, off, len, pseudoHeaderSum(srcIp, dstIp, IPPROTO_UDP, len));
    if (foldComplement(sum) !== 0) return Drop.UdpBadChecksum;
  }
  return Drop.None;
}

/** Return the source port. */
export function udpSrcPort(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP_SRC_PORT);
}

/** Return the destination port. */
export function udpDstPort(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP_DST_PORT);
}

/** Return the length field (header + data), in bytes. */
export function udpLength(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP_LENGTH);
}

/** Return the checksum field (0 = none). */
export function udpChecksum(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP_CHECKSUM);
}

/**
 * Return the UDP checksum `old` patched for a 16-bit word changing from `oldWord` to `newWord`
 * (a port): RFC 1624 eqn 3, except that 0 ("no checksum") stays 0 and a result of 0 becomes 0xffff.
 */
export function udpChecksumUpdate16(old: number, oldWord: number, newWord: number): number {
  if (old === 0) return 0;
  const c = checksumUpdate16(old, oldWord, newWord);
  return c === 0 ? 0xffff : c;
}

/**
 * Return the UDP checksum `old` patched for a 32-bit field changing from `oldU32` to `newU32` (an
 * address in the pseudo-header): 0 stays 0 (RFC 768 "no checksum"), a result of 0 becomes 0xffff.
 */
export function udpChecksumUpdate32(old: number, oldU32: number, newU32: number): number {
  if (old === 0) return 0;
  const c = checksumUpdate32(old, oldU32, newU32);
  return c === 0 ? 0xffff : c;
}

/** Set the source port and patch the checksum incrementally (leaving a 0 checksum alone). */
export function udpSetSrcPort(dv: DataView, off: number, port: number): void {
  const old = dv.getUint16(off + UDP_SRC_PORT);
  dv.setUint16(off + UDP_SRC_PORT, port);
  dv.setUint16(off + UDP_CHECKSUM, udpChecksumUpdate16(dv.getUint16(off + UDP_CHECKSUM), old, port));
}

/** Set the destination port and patch the checksum incrementally (leaving a 0 checksum alone). */
export function udpSetDstPort(dv: DataView, off: number, port: number): void {
  const old = dv.getUint16(off + UDP_DST_PORT);
  dv.setUint16(off + UDP_DST_PORT, port);
  dv.setUint16(off + UDP_CHECKSUM, udpChecksumUpdate16(dv.getUint16(off + UDP_CHECKSUM), old, port));
}

/**
 * Patch the checksum of the UDP header at `off` for an IPv4 address in its pseudo-header changing
 * from `oldAddr` to `newAddr` (call alongside `ipv4SetSrc`/`ipv4SetDst` when NATing).
 */
export function udpUpdateChecksumForAddr(dv: DataView, off: number, oldAddr: number, newAddr: number): void {
  dv.setUint16(off + UDP_CHECKSUM, udpChecksumUpdate32(dv.getUint16(off + UDP_CHECKSUM), oldAddr, newAddr));
}

/**
 * Write a UDP header at `off` with the given ports and length and a checksum of 0 ("none"); the hot
 * path uses it for the VXLAN outer header (RFC 7348 §5).
 */
export function writeUdpHeader(dv: DataView, off: number, srcPort: number, dstPort: number, length: number): void {
  dv.setUint16(off + UDP_SRC_PORT, srcPort);
  dv.setUint16(off + UDP_DST_PORT, dstPort);
  dv.setUint16(off + UDP_LENGTH, length);
  dv.setUint16(off + UDP_CHECKSUM, 0);
}

/**
 * Compute and store the checksum of the datagram at `off` (length taken from its header) for the
 * given pseudo-header addresses, writing 0xffff for a computed 0 (RFC 768).
 */
export function udpWriteChecksum(dv: DataView, off: number, srcIp: number, dstIp: number): void {
  const len = dv.getUint16(off + UDP_LENGTH);
  dv.setUint16(off + UDP_CHECKSUM, 0);
  const c = foldComplement(onesSumDv(dv, off, len, pseudoHeaderSum(srcIp, dstIp, IPPROTO_UDP, len)));
  dv.setUint16(off + UDP_CHECKSUM, c === 0 ? 0xffff : c);
}

/** A decoded UDP datagram (control path and tests). */
export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** The data after the header, `length - 8` bytes (copied). */
  payload: Uint8Array;
}

/** An IPv4 address given as a host-order u32 or as dotted-quad text (Repr functions accept both). */
export type Ipv4AddrLike = number | string;

/** Convert an `Ipv4AddrLike` to a host-order u32 (throws on invalid text). */
function addrU32(a: Ipv4AddrLike): number {
  return typeof a === 'number' ? a >>> 0 : parseIpv4Addr(a);
}

/**
 * Check and decode the UDP datagram at `u8[off]` ending by `end`. The checksum is verified only when
 * both addresses are given (it needs the pseudo-header). Returns the Repr or the Drop code of `checkUdp`.
 */
export function parseUdp(u8: Uint8Array, off: number, end: number, srcIp?: Ipv4AddrLike, dstIp?: Ipv4AddrLike): UdpRepr | Drop {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const verify = srcIp !== undefined && dstIp !== undefined;
  const drop = checkUdp(dv, u8, off, end, verify ? addrU32(srcIp) : 0, verify ? addrU32(dstIp) : 0, verify);
  if (drop !== Drop.None) return drop;
  return {
    srcPort: udpSrcPort(dv, off),
    dstPort: udpDstPort(dv, off),
    payload: u8.slice(off + UDP_HEADER_LEN, off + udpLength(dv, off)),
  };
}

/**
 * Write `repr` (header and payload) at `u8[off]` with the checksum for the pseudo-header of
 * `srcIp`/`dstIp` (0 is sent as 0xffff); returns the bytes written (8 + payload length).
 */
export function emitUdp(repr: UdpRepr, u8: Uint8Array, off: number, srcIp: Ipv4AddrLike, dstIp: Ipv4AddrLike): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const len = UDP_HEADER_LEN + repr.payload.length;
  if (len > 0xffff) throw new Error(`UDP datagram too long: ${len} bytes`);
  writeUdpHeader(dv, off, repr.srcPort, repr.dstPort, len);
  u8.set(repr.payload, off + UDP_HEADER_LEN);
  udpWriteChecksum(dv, off, addrU32(srcIp), addrU32(dstIp));
  return len;
}
