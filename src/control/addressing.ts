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

export interface Mac { hi: number; lo: number }

/** MAC with two fixed leading octets followed by the four octets of an IPv4 address. */
export function macFromIp(prefix: number, ip: number): Mac { return { hi: prefix, lo: ip >>> 0 }; }
export const POD_MAC_PREFIX = 0x0a58;
export const ROUTER_MAC_PREFIX = 0x0e77;
export const HOST_MAC_PREFIX = 0x0e68;

/** "aa:bb:cc:dd:ee:ff" for a MAC given as hi16/lo32. */
export function macToString(m: Mac): string {
  const b = [m.hi >>> 8, m.hi & 0xff, m.lo >>> 24, (m.lo >>> 16) & 0xff, (m.lo >>> 8) & 0xff, m.lo & 0xff];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Parse "aa:bb:cc:dd:ee:ff"; throws on anything else. */
export function macFromString(s: string): Mac {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(s)) throw new Error(`not a MAC address: ${JSON.stringify(s)}`);
  const b = s.split(':').map((x) => parseInt(x, 16));
  return { hi: (b[0] << 8) | b[1], lo: ((b[2] << 24) | (b[3] << 16) | (b[4] << 8) | b[5]) >>> 0 };
}

/** Dotted quad → host-order u32; throws on anything else. */
export function ipToU32(s: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) throw new Error(`not an IPv4 address: ${JSON.stringify(s)}`);
  const o = m.slice(1).map(Number);
  if (o.some((x) => x > 255)) throw new Error(`not an IPv4 address: ${JSON.stringify(s)}`);
  return ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
}

export function u32ToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

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
