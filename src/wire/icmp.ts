/**
 * ICMP for IPv4 (RFC 792): echo (ping) and the error messages a router must send.
 *
 * podwire answers echo requests addressed to a pod gateway, and as a router it sends the three
 * errors RFC 1812 asks of one: destination unreachable (net, host, port; and "fragmentation needed"
 * with the next-hop MTU, RFC 1191, which is what makes Path MTU Discovery work across the VXLAN
 * overlay), and time exceeded when the TTL runs out.
 *
 * Every ICMP message starts with the same 8 bytes: type, code, checksum and a 4-byte field whose
 * meaning depends on the type (identifier + sequence number for echo; unused + next-hop MTU for
 * "fragmentation needed"; unused otherwise). Error messages then carry the offending packet's IP
 * header plus at least its first 8 payload bytes (RFC 792; RFC 1812 §4.3.2.3 allows more).
 *
 * The checksum covers the whole ICMP message (header + data) with no pseudo-header.
 *
 * Invariant: after `checkIcmp(dv, u8, off, end)` returns Drop.None, the 8 header bytes at `off`
 * are in bounds and the checksum over `[off, end)` verifies; here `end` is the end of the IP
 * payload (IPv4 start + total length), not of the Ethernet frame.
 */
import { Drop } from './drop.ts';
import { foldComplement, onesSumDv } from './checksum.ts';

/*
 * RFC 792 message header (shown for Echo / Echo Reply; other types use the second word differently):
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     Type      |     Code      |          Checksum             |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |           Identifier          |        Sequence Number        |   (echo)
 * |             unused            |         Next-Hop MTU          |   (dest unreach, code 4; RFC 1191)
 * |                             unused                            |   (other errors)
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     Data ...  (echo: any; errors: original IP header + 8 bytes)
 * +-+-+-+-+-
 */
/** Offset of the type byte. */
export const ICMP_TYPE = 0;
/** Offset of the code byte. */
export const ICMP_CODE = 1;
/** Offset of the checksum. */
export const ICMP_CHECKSUM = 2;
/** Offset of the type-dependent 4-byte "rest of header" (id/seq, or unused/next-hop MTU). */
export const ICMP_REST = 4;
/** Offset of the echo identifier (inside the rest of header). */
export const ICMP_ECHO_ID = 4;
/** Offset of the echo sequence number (inside the rest of header). */
export const ICMP_ECHO_SEQ = 6;
/** Offset of the next-hop MTU of "fragmentation needed" (RFC 1191). */
export const ICMP_NEXT_HOP_MTU = 6;
/** Length of the ICMP header, in bytes. */
export const ICMP_HEADER_LEN = 8;

// Types (RFC 792). Exported bare, as named in docs/CONTRACTS.md, and with an ICMP_ prefix.
/** Type: echo reply. */
export const ECHO_REPLY = 0;
/** Type: destination unreachable. */
export const DEST_UNREACH = 3;
/** Type: echo request. */
export const ECHO_REQUEST = 8;
/** Type: time exceeded (code 0: TTL exceeded in transit). */
export const TIME_EXCEEDED = 11;
export const ICMP_ECHO_REPLY = ECHO_REPLY;
export const ICMP_DEST_UNREACH = DEST_UNREACH;
export const ICMP_ECHO_REQUEST = ECHO_REQUEST;
export const ICMP_TIME_EXCEEDED = TIME_EXCEEDED;

// Codes of DEST_UNREACH (RFC 792, RFC 1191). Exported bare and with ICMP_ and ICMP_CODE_ prefixes.
/** Code: network unreachable. */
export const NET_UNREACH = 0;
/** Code: host unreachable. */
export const HOST_UNREACH = 1;
/** Code: port unreachable. */
export const PORT_UNREACH = 3;
/** Code: fragmentation needed and DF set (carries the next-hop MTU). */
export const FRAG_NEEDED = 4;
export const ICMP_NET_UNREACH = NET_UNREACH;
export const ICMP_HOST_UNREACH = HOST_UNREACH;
export const ICMP_PORT_UNREACH = PORT_UNREACH;
export const ICMP_FRAG_NEEDED = FRAG_NEEDED;
export const ICMP_CODE_NET_UNREACH = NET_UNREACH;
export const ICMP_CODE_HOST_UNREACH = HOST_UNREACH;
export const ICMP_CODE_PORT_UNREACH = PORT_UNREACH;
export const ICMP_CODE_FRAG_NEEDED = FRAG_NEEDED;

/**
 * Return Drop.None if an ICMP message occupies `[off, end)` with a valid checksum; otherwise
 * Drop.IcmpTruncated (fewer than 8 bytes) or Drop.IcmpBadChecksum. `end` is the IP payload end.
 */
export function checkIcmp(dv: DataView, u8: Uint8Array, off: number, end: number): Drop {
  if (end - off < ICMP_HEADER_LEN) return Drop.IcmpTruncated;
  // RFC 792: "The checksum is the 16-bit ones's complement of the one's complement sum of the ICMP
  // message starting with the ICMP Type." Summing with the field in place gives 0 after complement.
  if (foldComplement(onesSumDv(dv, off, end - off)) !== 0) return Drop.IcmpBadChecksum;
  return Drop.None;
}

/** Return the message type. */
export function icmpType(dv: DataView, off: number): number {
  return dv.getUint8(off + ICMP_TYPE);
}

/** Return the message code. */
export function icmpCode(dv: DataView, off: number): number {
  return dv.getUint8(off + ICMP_CODE);
}

/** Return the checksum field. */
export function icmpChecksum(dv: DataView, off: number): number {
  return dv.getUint16(off + ICMP_CHECKSUM);
}

/** Return the 4-byte rest of header as a u32. */
export function icmpRest(dv: DataView, off: number): number {
  return dv.getUint32(off + ICMP_REST);
}

/** Return the echo identifier (meaningful for echo request/reply). */
export function icmpEchoId(dv: DataView, off: number): number {
  return dv.getUint16(off + ICMP_ECHO_ID);
}

/** Return the echo sequence number (meaningful for echo request/reply). */
export function icmpEchoSeq(dv: DataView, off: number): number {
  return dv.getUint16(off + ICMP_ECHO_SEQ);
}

/** Return the next-hop MTU (meaningful for destination unreachable, code FRAG_NEEDED). */
export function icmpNextHopMtu(dv: DataView, off: number): number {
  return dv.getUint16(off + ICMP_NEXT_HOP_MTU);
}

/** Recompute the checksum over the message `[off, end)` from scratch and store it. */
export function icmpWriteChecksum(dv: DataView, off: number, end: number): void {
  dv.setUint16(off + ICMP_CHECKSUM, 0);
  dv.setUint16(off + ICMP_CHECKSUM, foldComplement(onesSumDv(dv, off, end - off)));
}

/** A decoded ICMP message (control path and tests). */
export interface IcmpRepr {
  /** Message type (ECHO_REQUEST, DEST_UNREACH, ...). */
  type: number;
  /** Message code. */
  code: number;
  /** Bytes 4..8 as a u32: (id << 16 | seq) for echo, next-hop MTU in the low 16 bits for FRAG_NEEDED. */
  rest: number;
  /** Everything after the 8-byte header (copied). */
  payload: Uint8Array;
}

/** Check and decode the ICMP message `[off, end)`; returns the Repr or the Drop code of `checkIcmp`. */
export function parseIcmp(u8: Uint8Array, off: number, end: number): IcmpRepr | Drop {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const drop = checkIcmp(dv, u8, off, end);
  if (drop !== Drop.None) return drop;
  return {
    type: icmpType(dv, off),
    code: icmpCode(dv, off),
    rest: icmpRest(dv, off),
    payload: u8.slice(off + ICMP_HEADER_LEN, end),
  };
}

/** Write `repr` (header and payload) at `u8[off]` with its checksum; returns the bytes written. */
export function emitIcmp(repr: IcmpRepr, u8: Uint8Array, off: number): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const len = ICMP_HEADER_LEN + repr.payload.length;
  dv.setUint8(off + ICMP_TYPE, repr.type);
  dv.setUint8(off + ICMP_CODE, repr.code);
  dv.setUint32(off + ICMP_REST, repr.rest >>> 0);
  u8.set(repr.payload, off + ICMP_HEADER_LEN);
  icmpWriteChecksum(dv, off, off + len);
  return len;
}
