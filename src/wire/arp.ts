/**
 * ARP (RFC 826) for Ethernet and IPv4 only: how a pod learns the MAC of its gateway.
 *
 * Every pod's default route points at a gateway address that podwire answers for itself (proxy
 * ARP for the gateway, with the node's pod-facing MAC), so ARP is the first thing each pod sends.
 * podwire also polices it: a pod may only claim its own IP and MAC (Drop.SpoofedArp is decided by
 * the data plane, not here).
 *
 * RFC 826 allows any hardware and protocol pair; podwire supports exactly one, Ethernet (htype 1,
 * hlen 6) carrying IPv4 (ptype 0x0800, plen 4), with opcodes request (1) and reply (2). With those
 * lengths fixed, the packet is always 28 bytes and every field has a fixed offset.
 *
 * Invariant: after `checkArp(dv, off, end)` returns Drop.None, the 28 bytes at `off` are in bounds,
 * the hardware/protocol fields are exactly Ethernet/IPv4 and the opcode is 1 or 2, so the accessors
 * below can be used without further checks. Bytes after the 28 (Ethernet padding) are ignored.
 */
import { Drop } from './drop.ts';
import { ETHERTYPE_IPV4, formatMacAt, parseMacString } from './ethernet.ts';
import { formatIpv4Addr, parseIpv4Addr } from './ipv4.ts';

/*
 * RFC 826 packet, with Ethernet/IPv4 lengths (RFC 5227 §1.1 draws the same layout):
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |     Hardware Type (1)         |     Protocol Type (0x0800)    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  HW len (6)   | Proto len (4) |          Operation            |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                Sender Hardware Address (bytes 0-3)            |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |   Sender HW Addr (bytes 4-5)  |  Sender Protocol Addr (0-1)   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Sender Protocol Addr (2-3)   |  Target HW Addr (bytes 0-1)   |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                Target Hardware Address (bytes 2-5)            |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                   Target Protocol Address                     |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 */
/** Offset of the hardware type (1 = Ethernet). */
export const ARP_HTYPE = 0;
/** Offset of the protocol type (an EtherType; 0x0800 = IPv4). */
export const ARP_PTYPE = 2;
/** Offset of the hardware address length byte (6). */
export const ARP_HLEN = 4;
/** Offset of the protocol address length byte (4). */
export const ARP_PLEN = 5;
/** Offset of the operation (ARP_REQUEST or ARP_REPLY). */
export const ARP_OPER = 6;
/** Offset of the sender hardware address (MAC). */
export const ARP_SHA = 8;
/** Offset of the sender protocol address (IPv4). */
export const ARP_SPA = 14;
/** Offset of the target hardware address (MAC; zero in a request). */
export const ARP_THA = 18;
/** Offset of the target protocol address (IPv4). */
export const ARP_TPA = 24;
/** Length of an Ethernet/IPv4 ARP packet, in bytes. */
export const ARP_LEN = 28;

/** Operation: request ("who has TPA? tell SPA"). */
export const ARP_REQUEST = 1;
/** Operation: reply ("SPA is at SHA"). */
export const ARP_REPLY = 2;
/** Hardware type of Ethernet (RFC 826 ar$hrd; IANA ARP parameters). */
export const ARP_HTYPE_ETHERNET = 1;

/**
 * Return Drop.None if an Ethernet/IPv4 ARP request or reply starts at `off` and fits before `end`;
 * otherwise Drop.ArpTruncated (fewer than 28 bytes) or Drop.ArpUnsupported (hardware type not 1,
 * protocol type not 0x0800, lengths not 6/4, or an opcode other than request/reply).
 */
export function checkArp(dv: DataView, off: number, end: number): Drop {
  if (end - off < ARP_LEN) return Drop.ArpTruncated;
  if (dv.getUint16(off + ARP_HTYPE) !== ARP_HTYPE_ETHERNET) return Drop.ArpUnsupported;
  if (dv.getUint16(off + ARP_PTYPE) !== ETHERTYPE_IPV4) return Drop.ArpUnsupported;
  if (dv.getUint8(off + ARP_HLEN) !== 6 || dv.getUint8(off + ARP_PLEN) !== 4) return Drop.ArpUnsupported;
  const oper = dv.getUint16(off + ARP_OPER);
  if (oper !== ARP_REQUEST && oper !== ARP_REPLY) return Drop.ArpUnsupported;
  return Drop.None;
}

/** Return the operation (ARP_REQUEST or ARP_REPLY). */
export function arpOper(dv: DataView, off: number): number {
  return dv.getUint16(off + ARP_OPER);
}

/** Return the sender MAC's first two bytes (u16). */
export function arpSenderMacHi(dv: DataView, off: number): number {
  return dv.getUint16(off + ARP_SHA);
}

/** Return the sender MAC's last four bytes (u32). */
export function arpSenderMacLo(dv: DataView, off: number): number {
  return dv.getUint32(off + ARP_SHA + 2);
}

/** Return the sender IPv4 address as a host-order u32. */
export function arpSenderIp(dv: DataView, off: number): number {
  return dv.getUint32(off + ARP_SPA);
}

/** Return the target MAC's first two bytes (u16). */
export function arpTargetMacHi(dv: DataView, off: number): number {
  return dv.getUint16(off + ARP_THA);
}

/** Return the target MAC's last four bytes (u32). */
export function arpTargetMacLo(dv: DataView, off: number): number {
  return dv.getUint32(off + ARP_THA + 2);
}

/** Return the target IPv4 address as a host-order u32. */
export function arpTargetIp(dv: DataView, off: number): number {
  return dv.getUint32(off + ARP_TPA);
}

/**
 * Write a complete 28-byte Ethernet/IPv4 ARP packet at `off` (hot path: answering a request in place
 * or building one). MACs are hi/lo pairs, addresses host-order u32s.
 */
export function writeArp(dv: DataView, off: number, oper: number, shaHi: number, shaLo: number, spa: number,
                         thaHi: number, thaLo: number, tpa: number): void {
  dv.setUint16(off + ARP_HTYPE, ARP_HTYPE_ETHERNET);
  dv.setUint16(off + ARP_PTYPE, ETHERTYPE_IPV4);
  dv.setUint8(off + ARP_HLEN, 6);
  dv.setUint8(off + ARP_PLEN, 4);
  dv.setUint16(off + ARP_OPER, oper);
  dv.setUint16(off + ARP_SHA, shaHi);
  dv.setUint32(off + ARP_SHA + 2, shaLo);
  dv.setUint32(off + ARP_SPA, spa >>> 0);
  dv.setUint16(off + ARP_THA, thaHi);
  dv.setUint32(off + ARP_THA + 2, thaLo);
  dv.setUint32(off + ARP_TPA, tpa >>> 0);
}

/** A decoded Ethernet/IPv4 ARP packet (control path and tests). */
export interface ArpRepr {
  /** ARP_REQUEST or ARP_REPLY. */
  op: number;
  /** Sender MAC, lowercase 'aa:bb:cc:dd:ee:ff'. */
  senderMac: string;
  /** Sender IPv4 address, dotted quad. */
  senderIp: string;
  /** Target MAC (00:00:00:00:00:00 in a request). */
  targetMac: string;
  /** Target IPv4 address, dotted quad. */
  targetIp: string;
}

/** Check and decode the ARP packet at `u8[off]`; returns the Repr or the Drop code of `checkArp`. */
export function parseArp(u8: Uint8Array, off: number, end: number): ArpRepr | Drop {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const drop = checkArp(dv, off, end);
  if (drop !== Drop.None) return drop;
  return {
    op: arpOper(dv, off),
    senderMac: formatMacAt(u8, off + ARP_SHA),
    senderIp: formatIpv4Addr(arpSenderIp(dv, off)),
    targetMac: formatMacAt(u8, off + ARP_THA),
    targetIp: formatIpv4Addr(arpTargetIp(dv, off)),
  };
}

/** Write `repr` as a 28-byte ARP packet at `u8[off]`; returns 28. Throws on invalid address text. */
export function emitArp(repr: ArpRepr, u8: Uint8Array, off: number): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const sha = parseMacString(repr.senderMac);
  const tha = parseMacString(repr.targetMac);
  writeArp(dv, off, repr.op, sha.hi, sha.lo, parseIpv4Addr(repr.senderIp), tha.hi, tha.lo, parseIpv4Addr(repr.targetIp));
  return ARP_LEN;
}
