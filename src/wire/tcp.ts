/**
 * TCP (RFC 9293) as a forwarding device sees it: ports for Services and policy, flags for
 * connection tracking, and a checksum to patch when NAT rewrites addresses or ports.
 *
 * podwire never terminates TCP, so this module has no state machine: only the header layout,
 * bounds checks, accessors and the Repr used by tests and the lab to build segments.
 *
 * The checksum covers the same pseudo-header as UDP's (source, destination, protocol 6, TCP
 * length) plus the whole segment. Unlike UDP it is mandatory, and 0 has no special meaning, so
 * the bare RFC 1624 update (`checksumUpdate16/32`) is correct for TCP.
 *
 * Invariant: after `checkTcp(...)` returns Drop.None, the header including options lies in
 * `[off, off + tcpHeaderLen)` ⊆ `[off, end)`, so every accessor is in bounds; the payload is
 * `[off + tcpHeaderLen, end)`, where `end` is the IP payload end (the segment has no length field
 * of its own). Options are not interpreted here.
 */
import { Drop } from './drop.ts';
import { checksumUpdate16, checksumUpdate32, foldComplement, onesSumDv, pseudoHeaderSum } from './checksum.ts';
import { IPPROTO_TCP, parseIpv4Addr } from './ipv4.ts';

/*
 * RFC 9293 §3.1, TCP Header Format:
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |          Source Port          |       Destination Port        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        Sequence Number                        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Acknowledgment Number                      |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Data |       |C|E|U|A|P|R|S|F|                               |
 * | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
 * |       |       |R|E|G|K|H|T|N|N|                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Checksum            |         Urgent Pointer        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                           [Options]                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                                                               :
 * :                             Data                              :
 * :                                                               |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * Data Offset is the header length in 32-bit words (5..15).
 */
/** Offset of the source port. */
export const TCP_SRC_PORT = 0;
/** Offset of the destination port. */
export const TCP_DST_PORT = 2;
/** Offset of the sequence number. */
export const TCP_SEQ = 4;
/** Offset of the acknowledgment number. */
export const TCP_ACK = 8;
/** Offset of the data offset (high nibble) byte. */
export const TCP_DATA_OFF = 12;
/** Offset of the flags byte (CWR ECE URG ACK PSH RST SYN FIN). */
export const TCP_FLAGS = 13;
/** Offset of the window. */
export const TCP_WINDOW = 14;
/** Offset of the checksum. */
export const TCP_CHECKSUM = 16;
/** Offset of the urgent pointer. */
export const TCP_URGENT = 18;
/** Length of a header without options, in bytes. */
export const TCP_MIN_HEADER_LEN = 20;
/** Largest header length Data Offset can express (15 words), in bytes. */
export const TCP_MAX_HEADER_LEN = 60;

// Flag bits of the byte at TCP_FLAGS. Exported bare (as named in docs/CONTRACTS.md) and with a
// TCP_FLAG_ prefix. Beware: TCP_ACK (8) is the *offset* of the acknowledgment number, not a flag.
/** No more data from sender. */
export const FIN = 1;
/** Synchronize sequence numbers. */
export const SYN = 2;
/** Reset the connection. */
export const RST = 4;
/** Push function. */
export const PSH = 8;
/** Acknowledgment field is significant. */
export const ACK = 16;
/** Urgent pointer field is significant. */
export const URG = 32;
/** ECN-Echo (RFC 3168). */
export const ECE = 64;
/** Congestion Window Reduced (RFC 3168). */
export const CWR = 128;
export const TCP_FLAG_FIN = FIN, TCP_FLAG_SYN = SYN, TCP_FLAG_RST = RST, TCP_FLAG_PSH = PSH;
export const TCP_FLAG_ACK = ACK, TCP_FLAG_URG = URG, TCP_FLAG_ECE = ECE, TCP_FLAG_CWR = CWR;

/**
 * Return Drop.None if a TCP segment occupies `[off, end)` (`end` = the IP payload end); otherwise
 * Drop.TcpTruncated (fewer than 20 bytes), Drop.TcpBadHeaderLen (data offset below 5 or header past
 * `end`) or, if `verifyChecksum`, Drop.TcpBadChecksum (checksum over the pseudo-header of
 * `srcIp`/`dstIp`, host-order u32s, and the segment does not verify).
 */
export function checkTcp(dv: DataView, u8: Uint8Array, off: number, end: number, srcIp: number, dstIp: number,
                         verifyChecksum: boolean): Drop {
  if (end - off < TCP_MIN_HEADER_LEN) return Drop.TcpTruncated;
  const hl = (u8[off + TCP_DATA_OFF] >>> 4) << 2;
  if (hl < TCP_MIN_HEADER_LEN || off + hl > end) return Drop.TcpBadHeaderLen;
  if (verifyChecksum) {
    const len = end - off;
    const sum = onesSumDv(dv, off, len, pseudoHeaderSum(srcIp, dstIp, IPPROTO_TCP, len));
    if (foldComplement(sum) !== 0) return Drop.TcpBadChecksum;
  }
  return Drop.None;
}

/** Return the source port. */
export function tcpSrcPort(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP_SRC_PORT);
}

/** Return the destination port. */
export function tcpDstPort(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP_DST_PORT);
}

/** Return the sequence number (u32). */
export function tcpSeq(dv: DataView, off: number): number {
  return dv.getUint32(off + TCP_SEQ);
}

/** Return the acknowledgment number (u32). */
export function tcpAck(dv: DataView, off: number): number {
  return dv.getUint32(off + TCP_ACK);
}

/** Return the header length, in bytes (data offset × 4). */
export function tcpHeaderLen(dv: DataView, off: number): number {
  return (dv.getUint8(off + TCP_DATA_OFF) >>> 4) << 2;
}

/** Return the flags byte (FIN | SYN | RST | PSH | ACK | URG | ECE | CWR). */
export function tcpFlags(dv: DataView, off: number): number {
  return dv.getUint8(off + TCP_FLAGS);
}

/** Return the window. */
export function tcpWindow(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP_WINDOW);
}

/** Return the checksum field. */
export function tcpChecksum(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP_CHECKSUM);
}

/** Return the urgent pointer. */
export function tcpUrgent(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP_URGENT);
}

/** Set the source port and patch the checksum incrementally (RFC 1624). */
export function tcpSetSrcPort(dv: DataView, off: number, port: number): void {
  const old = dv.getUint16(off + TCP_SRC_PORT);
  dv.setUint16(off + TCP_SRC_PORT, port);
  dv.setUint16(off + TCP_CHECKSUM, checksumUpdate16(dv.getUint16(off + TCP_CHECKSUM), old, port));
}

/** Set the destination port and patch the checksum incrementally (RFC 1624). */
export function tcpSetDstPort(dv: DataView, off: number, port: number): void {
  const old = dv.getUint16(off + TCP_DST_PORT);
  dv.setUint16(off + TCP_DST_PORT, port);
  dv.setUint16(off + TCP_CHECKSUM, checksumUpdate16(dv.getUint16(off + TCP_CHECKSUM), old, port));
}

/**
 * Patch the checksum of the TCP header at `off` for an IPv4 address in its pseudo-header changing
 * from `oldAddr` to `newAddr` (call alongside `ipv4SetSrc`/`ipv4SetDst` when NATing).
 */
export function tcpUpdateChecksumForAddr(dv: DataView, off: number, oldAddr: number, newAddr: number): void {
  dv.setUint16(off + TCP_CHECKSUM, checksumUpdate32(dv.getUint16(off + TCP_CHECKSUM), oldAddr, newAddr));
}

/** Compute and store the checksum of the segment `[off, end)` for the given pseudo-header addresses. */
export function tcpWriteChecksum(dv: DataView, off: number, end: number, srcIp: number, dstIp: number): void {
  const len = end - off;
  dv.setUint16(off + TCP_CHECKSUM, 0);
  dv.setUint16(off + TCP_CHECKSUM, foldComplement(onesSumDv(dv, off, len, pseudoHeaderSum(srcIp, dstIp, IPPROTO_TCP, len))));
}

/** A decoded TCP segment (control path and tests). */
export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** The flags byte (FIN | SYN | ...). */
  flags: number;
  window: number;
  urgent: number;
  /** Option bytes (including padding), a multiple of 4 long, at most 40 (copied). */
  options: Uint8Array;
  /** Data after the header (copied). */
  payload: Uint8Array;
}

/** An IPv4 address given as a host-order u32 or as dotted-quad text (Repr functions accept both). */
type Ipv4AddrLike = number | string;

/** Convert an `Ipv4AddrLike` to a host-order u32 (throws on invalid text). */
function addrU32(a: Ipv4AddrLike): number {
  return typeof a === 'number' ? a >>> 0 : parseIpv4Addr(a);
}

/**
 * Check and decode the TCP segment `[off, end)`. The checksum is verified only when both addresses
 * are given (it needs the pseudo-header). Returns the Repr or the Drop code of `checkTcp`.
 */
export function parseTcp(u8: Uint8Array, off: number, end: number, srcIp?: Ipv4AddrLike, dstIp?: Ipv4AddrLike): TcpRepr | Drop {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const verify = srcIp !== undefined && dstIp !== undefined;
  const drop = checkTcp(dv, u8, off, end, verify ? addrU32(srcIp) : 0, verify ? addrU32(dstIp) : 0, verify);
  if (drop !== Drop.None) return drop;
  const hl = tcpHeaderLen(dv, off);
  return {
    srcPort: tcpSrcPort(dv, off),
    dstPort: tcpDstPort(dv, off),
    seq: tcpSeq(dv, off),
    ack: tcpAck(dv, off),
    flags: tcpFlags(dv, off),
    window: tcpWindow(dv, off),
    urgent: tcpUrgent(dv, off),
    options: u8.slice(off + TCP_MIN_HEADER_LEN, off + hl),
    payload: u8.slice(off + hl, end),
  };
}

/** Return the header length `emitTcp` writes for `repr`: 20 plus the options padded to 4 bytes. */
export function tcpReprHeaderLen(repr: TcpRepr): number {
  const optLen = repr.options === undefined ? 0 : repr.options.length;
  return TCP_MIN_HEADER_LEN + ((optLen + 3) & ~3);
}

/**
 * Write `repr` (header, options zero-padded to 4 bytes, payload) at `u8[off]` with the checksum for
 * the pseudo-header of `srcIp`/`dstIp`; returns the bytes written. The reserved bits are written as
 * zero. Throws if the options exceed 40 bytes (control path).
 */
export function emitTcp(repr: TcpRepr, u8: Uint8Array, off: number, srcIp: Ipv4AddrLike, dstIp: Ipv4AddrLike): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const hl = tcpReprHeaderLen(repr);
  if (hl > TCP_MAX_HEADER_LEN) throw new Error(`TCP options too long: ${hl - TCP_MIN_HEADER_LEN} bytes`);
  const opts = repr.options ?? new Uint8Array(0);
  const len = hl + repr.payload.length;
  dv.setUint16(off + TCP_SRC_PORT, repr.srcPort);
  dv.setUint16(off + TCP_DST_PORT, repr.dstPort);
  dv.setUint32(off + TCP_SEQ, repr.seq >>> 0);
  dv.setUint32(off + TCP_ACK, repr.ack >>> 0);
  dv.setUint8(off + TCP_DATA_OFF, (hl >>> 2) << 4);
  dv.setUint8(off + TCP_FLAGS, repr.flags);
  dv.setUint16(off + TCP_WINDOW, repr.window);
  dv.setUint16(off + TCP_URGENT, repr.urgent);
  u8.set(opts, off + TCP_MIN_HEADER_LEN);
  u8.fill(0, off + TCP_MIN_HEADER_LEN + opts.length, off + hl);
  u8.set(repr.payload, off + hl);
  tcpWriteChecksum(dv, off, off + len, addrU32(srcIp), addrU32(dstIp));
  return len;
}
