/**
 * Addressing conventions: how podwire derives MAC addresses and interface names from IPs.
 *
 * Deterministic addresses make labs reproducible and traces readable:
 *   - a pod's MAC is 0a:58 followed by its IPv4 address, the convention of Kubernetes' own bridge
 *     CNI plugin (0a:58:0a:f4:01:05 is 10.244.1.5);
 *   - a node's router/VTEP MAC is 0e:77 + its underlay address; the node's host TAP is 0e:68 + it.
 * All are locally administered unicast addresses (second-lowest bit of the first octet set, lowest
 * clear), so they never collide with a vendor's.
 */
import { createHash } from 'node:crypto';
import { formatMac, parseMacString } from '../wire/ethernet.ts';
import { formatIpv4Addr, parseIpv4Addr } from '../wire/ipv4.ts';

export interface Mac { hi: number; lo: number }

/** MAC with two fixed leading octets followed by the four octets of an IPv4 address. */
export function macFromIp(prefix: number, ip: number): Mac { return { hi: prefix, lo: ip >>> 0 }; }
export const POD_MAC_PREFIX = 0x0a58;
export const ROUTER_MAC_PREFIX = 0x0e77;
export const HOST_MAC_PREFIX = 0x0e68;
/** The tunnel TAP (UDP-tunnel GSO path): 0e:67 + the node's underlay address. */
export const TUNNEL_MAC_PREFIX = 0x0e67;

/** "aa:bb:cc:dd:ee:ff" for a MAC given as hi16/lo32 (wire/ethernet.ts formats it). */
export function macToString(m: Mac): string { return formatMac(m.hi, m.lo); }

/** Parse "aa:bb:cc:dd:ee:ff"; throws on anything else (wire/ethernet.ts parses it). */
export const macFromString: (s: string) => Mac = parseMacString;

/** Dotted quad → host-order u32; throws on anything else (wire/ipv4.ts parses it). */
export const ipToU32: (s: string) => number = parseIpv4Addr;

/** Host-order u32 → dotted quad. */
export const u32ToIp: (n: number) => string = formatIpv4Addr;

/** "10.244.1.0/24" → network (u32) and prefix length; throws on a malformed CIDR. */
export function parseCidr(s: string): { net: number; len: number } {
  const [ip, lenText, extra] = s.split('/');
  const len = Number(lenText);
  if (extra !== undefined || lenText === undefined || !/^\d+$/.test(lenText) || len > 32) throw new Error(`not an IPv4 CIDR: ${JSON.stringify(s)}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { net: (ipToU32(ip) & mask) >>> 0, len };
}

/** A TAP name (≤ 15 bytes, IFNAMSIZ) unique per pod: "pw" + 10 hex digits of a hash. */
export function tapNameFor(key: string): string {
  return 'pw' + createHash('sha1').update(key).digest('hex').slice(0, 10);
}
