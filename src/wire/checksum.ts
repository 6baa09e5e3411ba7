/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * IPv4, ICMP, UDP and TCP all protect their bytes with the same arithmetic: treat the data as a
 * sequence of 16-bit big-endian words, add them in one's complement (an addition whose carry out of
 * bit 15 wraps around into bit 0), and store the one's complement of that sum in the header. A
 * receiver adds every word *including* the checksum field; an undamaged packet sums to 0xffff
 * ("negative zero"), whose complement is 0. So "verify" and "compute" are the same function:
 *
 *     internetChecksum(header with a valid checksum field) === 0
 *     internetChecksum(header with a zeroed checksum field) === the value to store
 *
 * RFC 1071 §2 lists the properties this module relies on:
 *   (A) the sum is commutative and associative, so words can be added in any order and grouping;
 *   (B) it is byte-order independent (we read big-endian words, which is the order on the wire);
 *   (C) carries can be deferred: add into a wide accumulator and fold the carries back in at the
 *       end ("(sum & 0xffff) + (sum >>> 16)", repeated). A 32-bit word is hi*2^16 + lo, and since
 *       2^16 ≡ 1 in one's complement arithmetic (it is the end-around carry), adding a 32-bit word
 *       is the same as adding its two 16-bit halves. That lets long payloads be summed four bytes
 *       at a time.
 *
 * Invariants and conventions:
 *   - `onesSum` and `pseudoHeaderSum` return *unfolded* sums (below 2^32) so callers can add
 *     pieces (pseudo-header + header + payload) and fold once with `foldComplement`.
 *   - A sum of data that is not all zero never folds to 0x0000, only to a value in 1..0xffff; this
 *     is what keeps the incremental update below in agreement with a full recomputation.
 *   - Nothing here allocates on the hot path, and nothing throws.
 *
 * Incremental update (RFC 1624 §3, equation 3): when one 16-bit word m of the covered data changes
 * to m', the new checksum is
 *
 *     HC' = ~(~HC + ~m + m')
 *
 * computed entirely in one's complement arithmetic. RFC 1624 replaced the older RFC 1141 form
 * (HC' = HC + m + ~m', eqn 2 in RFC 1624) because that one can produce 0xffff ("-0") where a full
 * recomputation gives 0x0000 (RFC 1624 §3 works through such a case: HC = 0xdd2f, m = 0x5555,
 * m' = 0x3285); eqn 3 cannot, because the one's complement sum inside the brackets is only +0 when
 * every operand is +0, which a real header (never all zero) cannot produce.
 */

/**
 * Add the bytes `u8[off .. off+len)` as 16-bit big-endian words into `initial` (one's complement
 * addition with deferred carries). A trailing odd byte is padded with a zero low byte (RFC 1071 §4.1).
 * Returns the unfolded sum, reduced below 2^32 but NOT folded to 16 bits.
 * Allocates only when called with a Uint8Array over a different ArrayBuffer than the previous call
 * (it keeps one DataView over the last buffer seen, so it can read 32-bit words).
 */
export function onesSum(u8: Uint8Array, off: number, len: number, initial = 0): number {
  if (len < 64) return onesSumBytes(u8, off, len, initial);
  if (u8.buffer !== cachedBuffer) {
    cachedBuffer = u8.buffer;
    cachedView = new DataView(u8.buffer);
  }
  return onesSumDv(cachedView, u8.byteOffset + off, len, initial);
}

/** The DataView `onesSum` reuses while callers keep passing views of the same slab. */
let cachedBuffer: ArrayBufferLike | null = null;
let cachedView: DataView = new DataView(new ArrayBuffer(0));

/**
 * Sum `len` bytes starting at `off` of a Uint8Array, two bytes at a time. Same result as `onesSum`;
 * fastest for short runs such as a 20-byte header.
 */
function onesSumBytes(u8: Uint8Array, off: number, len: number, initial: number): number {
  let sum = initial;
  let i = off;
  const pairsEnd = off + (len & ~1);
  for (; i < pairsEnd; i += 2) sum += (u8[i] << 8) | u8[i + 1];
  if (len & 1) sum += u8[i] << 8; // RFC 1071: pad the odd byte with a zero on the right
  return reduce32(sum);
}

/**
 * Sum `len` bytes starting at byte `off` of the DataView `dv` (the hot-path form of `onesSum`, for
 * callers that already hold the slab's DataView). Returns the unfolded sum, below 2^32.
 */
export function onesSumDv(dv: DataView, off: number, len: number, initial = 0): number {
  let sum = initial;
  let i = off;
  const end = off + len;
  // Four 32-bit words per step (RFC 1071 property C). A step adds < 2^34, a 1 MiB block (2^16 steps)
  // < 2^50, so the Number accumulator stays exact (below 2^53); reduce between blocks.
  while (end - i >= 16) {
    const blockEnd = Math.min(end - 15, i + (1 << 20));
    for (; i < blockEnd; i += 16) {
      sum += dv.getUint32(i) + dv.getUint32(i + 4) + dv.getUint32(i + 8) + dv.getUint32(i + 12);
    }
    sum = reduce32(sum);
  }
  for (; end - i >= 4; i += 4) sum += dv.getUint32(i);
  if (end - i >= 2) {
    sum += dv.getUint16(i);
    i += 2;
  }
  if (i < end) sum += dv.getUint8(i) << 8;
  return reduce32(sum);
}

/**
 * Reduce a non-negative integer accumulator (up to 2^53) below 2^32 without changing its value in
 * one's complement arithmetic: 2^32 ≡ 1, so the high part is added back to the low part.
 * A non-zero input never reduces to zero.
 */
function reduce32(sum: number): number {
  while (sum > 0xffffffff) sum = (sum % 0x100000000) + Math.floor(sum / 0x100000000);
  return sum;
}

/**
 * Fold a wide one's complement sum (any non-negative integer up to 2^53) to 16 bits and return its
 * complement, `~sum & 0xffff`: the checksum to store, or 0 when verifying valid data.
 */
export function foldComplement(sum: number): number {
  sum = reduce32(sum);
  // RFC 1071 §4.1: "while (sum>>16) sum = (sum & 0xffff) + (sum >> 16);" — two rounds suffice
  // for a 32-bit value (the first leaves at most 0x1fffe, the second at most 0xffff).
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Return the Internet checksum of `u8[off .. off+len)`: the value to store when the checksum field
 * inside that range is zero, or 0 when the range includes a valid checksum field.
 */
export function internetChecksum(u8: Uint8Array, off: number, len: number): number {
  return foldComplement(onesSum(u8, off, len));
}

/**
 * Return the unfolded sum of the TCP/UDP pseudo-header (RFC 768, RFC 9293 §3.1):
 *
 *     +--------+--------+--------+--------+
 *     |           Source Address          |
 *     +--------+--------+--------+--------+
 *     |         Destination Address       |
 *     +--------+--------+--------+--------+
 *     |  zero  |  PTCL  |    L4 Length    |
 *     +--------+--------+--------+--------+
 *
 * `src` and `dst` are host-order u32 addresses, `proto` the IP protocol number and `l4len` the
 * length in bytes of the L4 header plus payload. Add it to `onesSum` of the L4 bytes.
 */
export function pseudoHeaderSum(src: number, dst: number, proto: number, l4len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + (proto & 0xff) + (l4len & 0xffff);
}

/**
 * Return the checksum `oldCsum` patched for one 16-bit word of the covered data changing from
 * `oldWord` to `newWord`: RFC 1624 eqn 3, HC' = ~(~HC + ~m + m'), all in 16-bit one's complement.
 */
export function checksumUpdate16(oldCsum: number, oldWord: number, newWord: number): number {
  // ~HC + ~m + m' : three 16-bit terms, at most 0x2fffd, then end-around carry twice.
  let sum = (~oldCsum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Return the checksum `oldCsum` patched for a 32-bit field (an IPv4 address) changing from
 * `oldU32` to `newU32`: RFC 1624 eqn 3 applied to the high 16-bit half, then to the low half.
 */
export function checksumUpdate32(oldCsum: number, oldU32: number, newU32: number): number {
  const c = checksumUpdate16(oldCsum, oldU32 >>> 16, newU32 >>> 16);
  return checksumUpdate16(c, oldU32 & 0xffff, newU32 & 0xffff);
}
