/**
 * VXLAN (RFC 7348): the overlay that carries pod traffic between nodes.
 *
 * A pod frame leaving for another node is wrapped, unchanged, behind four headers written into the
 * frame's headroom: outer Ethernet (14) + outer IPv4 (20) + UDP (8, destination port 4789) + the
 * 8-byte VXLAN header below = 50 bytes. The receiving node checks the VXLAN header, strips the 50
 * bytes and handles the inner frame as if a local pod had sent it. This is the same encapsulation
 * a Linux `vxlan` device (and so flannel's vxlan backend) produces, so the two interoperate.
 *
 * The VNI (VXLAN Network Identifier, 24 bits) names the overlay segment; podwire uses a single one
 * per cluster and drops datagrams carrying any other (Drop.VxlanBadVni).
 *
 * Entropy (RFC 7348 §5): "the source port [should be] calculated using a hash of fields from the
 * inner packet", so that routers along the underlay that spread traffic over equal-cost paths by
 * 5-tuple see one outer flow per inner flow, not one giant flow per pair of nodes. `flowHash5`
 * hashes the inner 5-tuple and `vxlanSourcePort` maps the hash into the ephemeral port range the
 * way Linux's udp_flow_src_port() does.
 *
 * Invariant: after `checkVxlan(dv, off, end, vni)` returns Drop.None, the 8 VXLAN bytes and the
 * inner Ethernet header (14 bytes at `off + 8`) are in bounds and the VNI is the expected one.
 */
import { Drop } from './drop.ts';
import { ETH_HEADER_LEN } from './ethernet.ts';

/*
 * RFC 7348 §5, VXLAN Header:
 *
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |R|R|R|R|I|R|R|R|            Reserved                           |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                VXLAN Network Identifier (VNI) |   Reserved    |
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *
 * "Flags (8 bits): where the I flag MUST be set to 1 for a valid VXLAN Network ID (VNI). The other
 * 7 bits (designated "R") are reserved fields and MUST be set to zero on transmission." podwire is
 * strict on receive as well: byte 0 must be exactly 0x08 and every reserved byte zero.
 */
/** Offset of the flags byte (only the I flag, 0x08, is defined). */
export const VXLAN_FLAGS = 0;
/** Offset of the 32-bit word holding the VNI (high 24 bits) and a reserved byte. */
export const VXLAN_VNI = 4;
/** Length of the VXLAN header, in bytes. */
export const VXLAN_HEADER_LEN = 8;
/** The I flag: "the VNI is valid". */
export const VXLAN_FLAG_I = 0x08;
/** IANA-assigned UDP destination port for VXLAN (RFC 7348 §5). */
export const VXLAN_DEFAULT_PORT = 4789;
/** Bytes added in front of an inner frame: outer Ethernet + IPv4 + UDP + VXLAN. */
export const VXLAN_ENCAP_LEN = 14 + 20 + 8 + VXLAN_HEADER_LEN;

/** Low end of Linux's default ephemeral range (net.ipv4.ip_local_port_range = "32768 60999"). */
export const VXLAN_SRC_PORT_MIN = 32768;
/** Exclusive high end of that range (60999 is the last port). */
export const VXLAN_SRC_PORT_MAX = 61000;

/**
 * Return Drop.None if a valid VXLAN header with VNI `expectedVni`, followed by at least an inner
 * Ethernet header, occupies `[off, end)` (`end` = the UDP payload end); otherwise
 * Drop.VxlanTruncated (fewer than 8 + 14 bytes), Drop.VxlanBadFlags (byte 0 not exactly 0x08, or a
 * reserved byte — 1, 2, 3 or 7 — non-zero) or Drop.VxlanBadVni.
 */
export function checkVxlan(dv: DataView, off: number, end: number, expectedVni: number): Drop {
  if (end - off < VXLAN_HEADER_LEN + ETH_HEADER_LEN) return Drop.VxlanTruncated;
  // Word 0 must be exactly 0x08000000: the I flag and 24 reserved zero bits.
  if (dv.getUint32(off + VXLAN_FLAGS) !== 0x08000000) return Drop.VxlanBadFlags;
  const word1 = dv.getUint32(off + VXLAN_VNI);
  if ((word1 & 0xff) !== 0) return Drop.VxlanBadFlags;
  if (word1 >>> 8 !== expectedVni) return Drop.VxlanBadVni;
  return Drop.None;
}

/** Return the VNI (24 bits). */
export function vxlanVni(dv: DataView, off: number): number {
  return dv.getUint32(off + VXLAN_VNI) >>> 8;
}

/** Write an 8-byte VXLAN header at `off`: I flag set, `vni` (24 bits), all reserved bits zero. */
export function writeVxlanHeader(dv: DataView, off: number, vni: number): void {
  dv.setUint32(off + VXLAN_FLAGS, 0x08000000);
  dv.setUint32(off + VXLAN_VNI, ((vni & 0xffffff) << 8) >>> 0);
}

/**
 * Map a 32-bit flow hash to a UDP source port in `[min, max)` (default: Linux's default ephemeral
 * range, 32768..60999), as Linux's udp_flow_src_port() (include/net/udp.h) does:
 *
 *     hash ^= hash << 16;                                  // fold the low half into the high half
 *     return (((u64) hash * (max - min)) >> 32) + min;     // scale, no modulo bias
 *
 * The xor matters because the multiply-shift only looks at the high bits of the hash.
 * Allocation-free; `max - min` must be at most 65536.
 */
export function vxlanSourcePort(flowHash: number, min: number = VXLAN_SRC_PORT_MIN, max: number = VXLAN_SRC_PORT_MAX): number {
  const hash = (flowHash ^ (flowHash << 16)) >>> 0;
  // hash < 2^32 and the range < 2^17, so the product is < 2^49: exact in a double.
  return Math.floor((hash * (max - min)) / 4294967296) + min;
}

/**
 * Return a deterministic 32-bit hash of an IPv4 5-tuple (addresses host-order u32s, ports u16s).
 * MurmurHash3 (x86_32) over the words src, dst, sport<<16|dport, proto, with a fixed seed; its
 * finalizer makes every input bit affect every output bit. Not keyed: use it for spreading load
 * (VXLAN entropy), never for a table an attacker can fill.
 */
export function flowHash5(src: number, dst: number, proto: number, sport: number, dport: number): number {
  let h = 0x2f6a2d4d; // seed: any fixed constant
  h = murmurMix(h, src);
  h = murmurMix(h, dst);
  h = murmurMix(h, ((sport & 0xffff) << 16) | (dport & 0xffff));
  h = murmurMix(h, proto & 0xff);
  // Finalization (fmix32): length in bytes, then avalanche.
  h ^= 16;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** One MurmurHash3 x86_32 block step: mix the 32-bit word `k` into the running hash `h`. */
function murmurMix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** A decoded VXLAN header (control path and tests). */
export interface VxlanRepr {
  vni: number;
}

/**
 * Decode the VXLAN header at `u8[off]` (UDP payload ending at `end`) without a VNI expectation;
 * returns the Repr, or Drop.VxlanTruncated / Drop.VxlanBadFlags as `checkVxlan` would.
 */
export function parseVxlan(u8: Uint8Array, off: number, end: number): VxlanRepr | Drop {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  if (end - off < VXLAN_HEADER_LEN + ETH_HEADER_LEN) return Drop.VxlanTruncated;
  const vni = vxlanVni(dv, off);
  const drop = checkVxlan(dv, off, end, vni);
  if (drop !== Drop.None) return drop;
  return { vni };
}

/** Write `repr` as an 8-byte VXLAN header at `u8[off]`; returns 8. */
export function emitVxlan(repr: VxlanRepr, u8: Uint8Array, off: number): number {
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  writeVxlanHeader(dv, off, repr.vni);
  return VXLAN_HEADER_LEN;
}
