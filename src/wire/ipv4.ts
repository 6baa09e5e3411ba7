/**
 * IPv4 (RFC 791): the header every pod packet carries and the one podwire routes on.
 *
 * The data plane reads five things from it (source, destination, protocol, TTL, lengths) and
 * rewrites three (TTL on every routed hop; source or destination for Service NAT). Rewrites patch
 * the header checksum incrementally (RFC 1624) instead of recomputing it, which is both cheaper and
 * the only correct choice when the packet is merely forwarded: a header that arrived with a bad
 * checksum must not leave with a good one.
 *
 * Invariant (smoltcp's check_len contract): once `checkIpv4(dv, u8, off, end)` returns Drop.None,
 *   - the whole header, options included, lies in `[off, off + ipv4HeaderLen)` ⊆ `[off, end)`;
 *   - the packet lies in `[off, off + ipv4TotalLen)` ⊆ `[off, end)`, so the L4 header and payload
 *     are `[off + headerLen, off + totalLen)`. Bytes after total length (Ethernet minimum-size
 *     padding) are allowed and must be ignored;
 *   - the header checksum verifies and the options are well formed;
 * so every accessor below is in bounds. Accessors assume a checked header and do not re-check.
 *
 * Fragments are passed through (podwire does not reassemble; Services and policy look at the first
 * fragment's ports only, and callers use `ipv4IsFirstFragment` to know whether an L4 header is
 * present). The one fragment rejected here is the RFC 1858 "overlapping fragment" attack: a TCP
 * fragment with offset 1 (8 bytes) can overwrite the first fragment's TCP flags after a filter has
 * passed them, so RFC 1858's filter rule says drop it: "IF FO=1 and PROTOCOL=TCP then drop packet".
 *
 * Addresses on the hot path are host-order u32 numbers (`>>> 0`); strings appear only in Reprs.
 */
import { Drop } from './drop.ts';
import { checksumUpdate16, checksumUpdate32, foldComplement, onesSumDv } from './checksum.ts';

/*
 * RFC 791 §3.1, Internet Header Format:
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |Version|  IHL  |Type of Service|          Total Length         |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |         Identification        |Flags|      Fragment Offset    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |  Time to Live |    Protocol   |         Header Checksum       |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                       Source Address                          |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Destination Address                        |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                    Options                    |    Padding    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * IHL is the header length in 32-bit words (5..15). Flags: bit 0 reserved (must be zero), bit 1
 * DF (don't fragment), bit 2 MF (more fragments). Fragment Offset counts 8-byte units.
 */
/** Offset of the version (high nibble) and IHL (low nibble) byte. */
export const IPV4_VER_IHL = 0;
/** Offset of the type-of-service byte (DSCP + ECN). */
export const IPV4_TOS = 1;
/** Offset of the total length (header + payload, bytes). */
export const IPV4_TOTAL_LEN = 2;
/** Offset of the identification field. */
export const IPV4_ID = 4;
/** Offset of the 16-bit word holding the flags (top 3 bits) and the fragment offset (low 13 bits). */
export const IPV4_FLAGS_FRAG = 6;
/** Offset of the time-to-live byte. */
export const IPV4_TTL = 8;
/** Offset of the protocol byte. */
export const IPV4_PROTO = 9;
/** Offset of the header checksum. */
export const IPV4_CHECKSUM = 10;
/** Offset of the source address. */
export const IPV4_SRC = 12;
/** Offset of the destination address. */
export const IPV4_DST = 16;
/** Length of a header without options, in bytes. */
export const IPV4_MIN_HEADER_LEN = 20;
/** Largest header length IHL can express (15 words), in bytes. */
export const IPV4_MAX_HEADER_LEN = 60;

/** IP protocol number of ICMP. */
export const IPPROTO_ICMP = 1;
/** IP protocol number of TCP. */
export const IPPROTO_TCP = 6;
/** IP protocol number of UDP. */
export const IPPROTO_UDP = 17;
/** IP protocol number of SCTP. */
export const IPPROTO_SCTP = 132;

/** Don't Fragment, as a bit of the flags/fragment-offset word. */
export const IPV4_FLAG_DF = 0x4000;
/** More Fragments, as a bit of the flags/fragment-offset word. */
export const IPV4_FLAG_MF = 0x2000;
/** The reserved flag bit (must be zero; RFC 3514's "evil bit"). */
export const IPV4_FLAG_RESERVED = 0x8000;
/** Mask of the fragment offset (8-byte units) in the flags/fragment-offset word. */
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;

/** Option type End of Option List (RFC 791): a single byte; the rest of the header is padding. */
export const IPV4_OPT_EOL = 0;
/** Option type No Operation (RFC 791): a single byte, used to align the next option. */
export const IPV4_OPT_NOP = 1;

/**
 * Return Drop.None if a well-formed IPv4 packet starts at `off` and ends at or before `end`,
 * otherwise the first reason it is not (checked in this order):
 * Ipv4Truncated (fewer than 20 bytes), Ipv4BadVersion (not 4), Ipv4BadHeaderLen (IHL < 5 or the
 * header runs past `end`), Ipv4BadTotalLen (total length < header length or past `end`),
 * Ipv4BadChecksum, Ipv4BadOptions (an option other than EOL/NOP whose length byte is missing,
 * below 2 or runs past the header), Ipv4Fragment (RFC 1858: TCP with fragment offset 1).
 */
export function checkIpv4(dv: DataView, u8: Uint8Array, off: number, end: number): Drop {
  if (end - off < IPV4_MIN_HEADER_LEN) return Drop.Ipv4Truncated;
  const verIhl = u8[off + IPV4_VER_IHL];
  if (verIhl >>> 4 !== 4) return Drop.Ipv4BadVersion;
  const hl = (verIhl & 0x0f) << 2;
  if (hl < IPV4_MIN_HEADER_LEN || off + hl > end) return Drop.Ipv4BadHeaderLen;
  const tl = dv.getUint16(off + IPV4_TOTAL_LEN);
  if (tl < hl || off + tl > end) return Drop.Ipv4BadTotalLen;
  // RFC 791: "The checksum field is the 16 bit one's complement of the one's complement sum of all
  // 16 bit words in the header." Summing the header including the field gives 0xffff, i.e. 0 here.
  // The header is short (20..60 bytes, always whole words): a plain 16-bit loop beats the 32-bit one.
  let sum = 0;
  for (let i = off; i < off + hl; i += 2) sum += dv.getUint16(i);
  if (foldComplement(sum) !== 0) return Drop.Ipv4BadChecksum;
  if (hl > IPV4_MIN_HEADER_LEN) {
    // Walk the options (RFC 791 §3.1): type 0 (EOL) ends the list, type 1 (NOP) is one byte, every
    // other option is type, length (counting both bytes, so >= 2), data, and must end inside the header.
    const hend = off + hl;
    let i = off + IPV4_MIN_HEADER_LEN;
    while (i < hend) {
      const type = u8[i];
      if (type === IPV4_OPT_EOL) break;
      if (type === IPV4_OPT_NOP) {
        i += 1;
        continue;
      }
      if (i + 1 >= hend) return Drop.Ipv4BadOptions;
      const len = u8[i + 1];
      if (len < 2 || i + len > hend) return Drop.Ipv4BadOptions;
      i += len;
    }
  }
  // RFC 1858: a TCP fragment at offset 8 bytes can rewrite the first fragment's TCP flags.
  if ((dv.getUint16(off + IPV4_FLAGS_FRAG) & IPV4_FRAG_OFFSET_MASK) === 1 && u8[off + IPV4_PROTO] === IPPROTO_TCP) {
    return Drop.Ipv4Fragment;
  }
  return Drop.None;
}

/** Return the version field (4 for IPv4). */
export function ipv4Version(dv: DataView, off: number): number {
  return dv.getUint8(off + IPV4_VER_IHL) >>> 4;
}

/** Return the header length, in bytes (IHL × 4). */
export function ipv4HeaderLen(dv: DataView, off: number): number {
  return (dv.getUint8(off + IPV4_VER_IHL) & 0x0f) << 2;
}

/** Return the type-of-service byte (DSCP << 2 | ECN). */
export function ipv4Tos(dv: DataView, off: number): number {
  return dv.getUint8(off + IPV4_TOS);
}

/** Return the total length (header + payload), in bytes. */
export function ipv4TotalLen(dv: DataView, off: number): number {
  return dv.getUint16(off + IPV4_TOTAL_LEN);
}

/** Return the identification field. */
export function ipv4Id(dv: DataView, off: number): number {
  return dv.getUint16(off + IPV4_ID);
}

/** Return the flag bits (IPV4_FLAG_DF | IPV4_FLAG_MF | reserved) in their word positions. */
export function ipv4Flags(dv: DataView, off: number): number {
  return dv.getUint16(off + IPV4_FLAGS_FRAG) & 0xe000;
}

/** Return the fragment offset, in 8-byte units. */
export function ipv4FragOffset(dv: DataView, off: number): number {
  return dv.getUint16(off + IPV4_FLAGS_FRAG) & IPV4_FRAG_OFFSET_MASK;
}

/** Return the time-to-live. */
export function ipv4Ttl(dv: DataView, off: number): number {
  return dv.getUint8(off + IPV4_TTL);
}

/** Return the protocol number (IPPROTO_*). */
export function ipv4Proto(dv: DataView, off: number): number {
  return dv.getUint8(off + IPV4_PROTO);
}

/** Return the header checksum field. */
export function ipv4Checksum(dv: DataView, off: number): number {
  return dv.getUint16(off + IPV4_CHECKSUM);
}

/** Return the source address as a host-order u32. */
export function ipv4Src(dv: DataView, off: number): number {
  return dv.getUint32(off + IPV4_SRC);
}

/** Return the destination address as a host-order u32. */
export function ipv4Dst(dv: DataView, off: number): number {
  return dv.getUint32(off + IPV4_DST);
}

/** Return true if the packet is a fragment: MF set or a non-zero fragment offset. */
export function ipv4IsFragment(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + IPV4_FLAGS_FRAG) & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0;
}

/** Return true if the fragment offset is 0, i.e. the L4 header is present (also true for unfragmented packets). */
export function ipv4IsFirstFragment(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + IPV4_FLAGS_FRAG) & IPV4_FRAG_OFFSET_MASK) === 0;
}

/**
 * Decrement the TTL by one and patch the header checksum incrementally (RFC 1624). The caller must
 * have checked that the TTL is above 1 (otherwise it sends ICMP time exceeded); a TTL of 0 would
 * wrap to 255.
 */
export function ipv4DecrementTtl(dv: DataView, off: number): void {
  // TTL shares a 16-bit word with the protocol byte; the checksum covers the word.
  const oldWord = dv.getUint16(off + IPV4_TTL);
  const newWord = (oldWord - 0x0100) & 0xffff;
  dv.setUint16(off + IPV4_TTL, newWord);
  dv.setUint16(off + IPV4_CHECKSUM, checksumUpdate16(dv.getUint16(off + IPV4_CHECKSUM), oldWord, newWord));
}

/** Set the source address (host-order u32) and patch the header checksum incrementally. */
export function ipv4SetSrc(dv: DataView, off: number, addr: number): void {
  const old = dv.getUint32(off + IPV4_SRC);
  dv.setUint32(off + IPV4_SRC, addr >>> 0);
  dv.setUint16(off + IPV4_CHECKSUM, checksumUpdate32(dv.getUint16(off + IPV4_CHECKSUM), old, addr));
}

/** Set the destination address (host-order u32) and patch the header checksum incrementally. */
export function ipv4SetDst(dv: DataView, off: number, addr: number): void {
  const old = dv.getUint32(off + IPV4_DST);
  dv.setUint32(off + IPV4_DST, addr >>> 0);
  dv.setUint16(off + IPV4_CHECKSUM, checksumUpdate32(dv.getUint16(off + IPV4_CHECKSUM), old, addr));
}

/** Recompute the header checksum from scratch (over IHL × 4 bytes) and store it. */
export function ipv4WriteChecksum(dv: DataView, u8: Uint8Array, off: number): void {
  const hl = (u8[off + IPV4_VER_IHL] & 0x0f) << 2;
  dv.setUint16(off + IPV4_CHECKSUM, 0);
  dv.setUint16(off + IPV4_CHECKSUM, foldComplement(onesSumDv(dv, off, hl)));
}

/**
 * Write a complete 20-byte header without options at `off` (version 4, IHL 5) and its checksum.
 * `flagsFrag` is the whole flags/fragment-offset word (e.g. IPV4_FLAG_DF). Used on the hot path to
 * build outer headers (VXLAN encap) and ICMP errors.
 */
export function writeIpv4Header(dv: DataView, off: number, tos: number, totalLen: number, id: number,
                                flagsFrag: number, ttl: number, proto: number, src: number, dst: number): void {
  dv.setUint8(off + IPV4_VER_IHL, 0x45);
  dv.setUint8(off + IPV4_TOS, tos);
  dv.setUint16(off + IPV4_TOTAL_LEN, totalLen);
  dv.setUint16(off + IPV4_ID, id);
  dv.setUint16(off + IPV4_FLAGS_FRAG, flagsFrag);
  dv.setUint8(off + IPV4_TTL, ttl);
  dv.setUint8(off + IPV4_PROTO, proto);
  dv.setUint16(off + IPV4_CHECKSUM, 0);
  dv.setUint32(off + IPV4_SRC, src >>> 0);
  dv.setUint32(off + IPV4_DST, dst >>> 0);
  dv.setUint16(off + IPV4_CHECKSUM, foldComplement(onesSumDv(dv, off, IPV4_MIN_HEADER_LEN)));
}

/**
 * Parse dotted-quad text ('10.0.0.1') into a host-order u32. Throws an Error naming the text unless
 * it is exactly four decimal numbers 0..255 without leading zeros (which some parsers read as octal).
 */
export function parseIpv4Addr(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new Error(`invalid IPv4 address: ${JSON.stringify(text)}`);
  let addr = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) {
      throw new Error(`invalid IPv4 address: ${JSON.stringify(text)}`);
    }
    addr = addr * 256 + Number(p);
  }
  return addr >>> 0;
}

/** Format a host-order u32 as dotted-quad text. */
export function formatIpv4Addr(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/** A decoded IPv4 header (control path and tests). */
export interface Ipv4Repr {
  /** Type of service byte. */
  tos: number;
  /** Identification. */
  id: number;
  /** Flag bits in their word positions: IPV4_FLAG_DF | IPV4_FLAG_MF (| IPV4_FLAG_RESERVED). */
  flags: number;
  /** Fragment offset in 8-byte units, as on the wire. */
  fragOffset: number;
  /** Time to live. */
  ttl: number;
  /** Protocol number (IPPROTO_*). */
  proto: number;
  /** Source address, dotted quad. */
  src: string;
  /** Destination address, dotted quad. */
  dst: string;
  /** Option bytes (including any padding), a multiple of 4 long, at most 40; empty when IHL is 5. */
  options: Uint8Array;
  /** Bytes after the header: total length minus header length. */
  payloadLen: number;
}

/**
 * Check and decode the IPv4 header at `u8[off]` in a frame ending at `end`. Returns the Repr, or the
 * Drop code `checkIpv4` gives. The options are copied.
 */
export function parseIpv4(u8: Uint8Array, off: number, end: number): Ipv4Repr | Drop {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const drop = checkIpv4(dv, u8, off, end);
  if (drop !== Drop.None) return drop;
  const hl = ipv4HeaderLen(dv, off);
  return {
    tos: ipv4Tos(dv, off),
    id: ipv4Id(dv, off),
    flags: ipv4Flags(dv, off),
    fragOffset: ipv4FragOffset(dv, off),
    ttl: ipv4Ttl(dv, off),
    proto: ipv4Proto(dv, off),
    src: formatIpv4Addr(ipv4Src(dv, off)),
    dst: formatIpv4Addr(ipv4Dst(dv, off)),
    options: u8.slice(off + IPV4_MIN_HEADER_LEN, off + hl),
    payloadLen: ipv4TotalLen(dv, off) - hl,
  };
}

/** Return the header length `emitIpv4` writes for `repr`: 20 plus the options padded to 4 bytes. */
export function ipv4ReprHeaderLen(repr: Ipv4Repr): number {
  const optLen = repr.options === undefined ? 0 : repr.options.length;
  return IPV4_MIN_HEADER_LEN + ((optLen + 3) & ~3);
}

/**
 * Write `repr` as an IPv4 header at `u8[off]`, computing the header checksum, and return the header
 * length written. Options are zero-padded (EOL) to a multiple of 4 bytes. The payload is not
 * written; total length is set to header length + `payloadLen`. Throws if the options exceed 40
 * bytes or an address string is invalid (control path).
 */
export function emitIpv4(repr: Ipv4Repr, u8: Uint8Array, off: number): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  const hl = ipv4ReprHeaderLen(repr);
  if (hl > IPV4_MAX_HEADER_LEN) throw new Error(`IPv4 options too long: ${hl - IPV4_MIN_HEADER_LEN} bytes`);
  if (hl + repr.payloadLen > 0xffff) throw new Error(`IPv4 packet too long: ${hl + repr.payloadLen} bytes`);
  dv.setUint8(off + IPV4_VER_IHL, 0x40 | (hl >>> 2));
  dv.setUint8(off + IPV4_TOS, repr.tos);
  dv.setUint16(off + IPV4_TOTAL_LEN, hl + repr.payloadLen);
  dv.setUint16(off + IPV4_ID, repr.id);
  dv.setUint16(off + IPV4_FLAGS_FRAG, (repr.flags & 0xe000) | (repr.fragOffset & IPV4_FRAG_OFFSET_MASK));
  dv.setUint8(off + IPV4_TTL, repr.ttl);
  dv.setUint8(off + IPV4_PROTO, repr.proto);
  dv.setUint16(off + IPV4_CHECKSUM, 0);
  dv.setUint32(off + IPV4_SRC, parseIpv4Addr(repr.src));
  dv.setUint32(off + IPV4_DST, parseIpv4Addr(repr.dst));
  const opts = repr.options ?? new Uint8Array(0);
  u8.set(opts, off + IPV4_MIN_HEADER_LEN);
  u8.fill(0, off + IPV4_MIN_HEADER_LEN + opts.length, off + hl);
  dv.setUint16(off + IPV4_CHECKSUM, foldComplement(onesSumDv(dv, off, hl)));
  return hl;
}
