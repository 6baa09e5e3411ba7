/**
 * Fuzz-ish robustness test for every check function of src/wire/ (smoltcp's fuzz target in spirit).
 *
 * 100 000 random frames, each placed at the very END of its own slab so that any read past `end`
 * would throw a RangeError from the DataView. Every check must return a Drop code without throwing,
 * and whenever a check returns Drop.None the accessors it promises to make safe are called too.
 * A share of the frames get a plausible skeleton (EtherType, IPv4 version/IHL/total length and a
 * valid header checksum, VXLAN flags) so that the deeper checks are reached, not just the first.
 */
import { describe, expect, it } from 'vitest';
import { DROP_COUNT, Drop } from '../../src/wire/drop.ts';
import { arpOper, arpSenderIp, arpTargetIp, checkArp, parseArp } from '../../src/wire/arp.ts';
import { checkEthernet, ethType, macHi, macLo, parseEthernet } from '../../src/wire/ethernet.ts';
import { checkIcmp, icmpEchoSeq, icmpRest, parseIcmp } from '../../src/wire/icmp.ts';
import {
  checkIpv4, ipv4Dst, ipv4HeaderLen, ipv4IsFirstFragment, ipv4IsFragment, ipv4Proto, ipv4Src, ipv4TotalLen, parseIpv4,
} from '../../src/wire/ipv4.ts';
import { checkTcp, parseTcp, tcpAck, tcpHeaderLen, tcpUrgent } from '../../src/wire/tcp.ts';
import { checkUdp, parseUdp, udpChecksum, udpLength } from '../../src/wire/udp.ts';
import { checkVxlan, parseVxlan, vxlanVni } from '../../src/wire/vxlan.ts';
import { formatFrame } from '../../src/wire/format.ts';

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Re-seal an IPv4 header checksum in place with a naive loop (independent of the code under test). */
function sealIpv4(u8: Uint8Array, off: number, hl: number): void {
  u8[off + 10] = 0;
  u8[off + 11] = 0;
  let s = 0;
  for (let i = 0; i < hl; i += 2) {
    s += (u8[off + i] << 8) | u8[off + i + 1];
    s = (s & 0xffff) + (s >>> 16);
  }
  const c = ~s & 0xffff;
  u8[off + 10] = c >>> 8;
  u8[off + 11] = c & 0xff;
}

describe('wire fuzz', () => {
  it('100k random frames: no check function throws, and Drop.None makes accessors safe', () => {
    const rnd = mulberry32(0xf022);
    const seen = new Uint32Array(DROP_COUNT);
    const count = (d: Drop) => { seen[d]++; return d; };
    for (let n = 0; n < 100_000; n++) {
      const len = rnd() % 160;
      const pre = rnd() % 9;
      const slab = new Uint8Array(pre + len);
      const end = slab.length;
      for (let i = pre; i < end; i++) slab[i] = rnd() & 0xff;
      const mode = rnd() % 4;
      if (mode !== 0 && len >= 14 + 20) {
        // Plausible skeleton: IPv4 or ARP EtherType, IPv4 version, small IHL, fitting total length.
        slab[pre + 12] = 0x08;
        slab[pre + 13] = mode === 1 ? 0x06 : 0x00;
        const l3 = pre + 14;
        if (mode === 1) {
          slab.set([0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 1 + (rnd() & 1)], l3);
        } else {
          const ihl = 5 + (rnd() % 3);
          slab[l3] = 0x40 | ihl;
          const maxTl = end - l3;
          const tl = ihl * 4 + (rnd() % Math.max(1, maxTl - ihl * 4 + 4)); // sometimes too long
          slab[l3 + 2] = tl >>> 8;
          slab[l3 + 3] = tl & 0xff;
          slab[l3 + 9] = [1, 6, 17, 17][rnd() % 4];
          if (rnd() % 4 !== 0) { slab[l3 + 6] &= 0x40; slab[l3 + 7] = 0; } // mostly unfragmented
          if (mode === 3) {
            // UDP to 4789 with a VXLAN-looking payload.
            const l4 = l3 + ihl * 4;
            if (l4 + 16 <= end) {
              slab[l4 + 2] = 0x12;
              slab[l4 + 3] = 0xb5;
              const ulen = Math.min(end, l3 + tl) - l4;
              slab[l4 + 4] = ulen >>> 8;
              slab[l4 + 5] = ulen & 0xff;
              slab[l4 + 6] = 0;
              slab[l4 + 7] = 0;
              slab.set([0x08, 0, 0, 0, 0, 0, 1, 0], l4 + 8);
            }
          }
          if (l3 + ihl * 4 <= end && rnd() % 8 !== 0) sealIpv4(slab, l3, ihl * 4);
        }
      }
      const dv = new DataView(slab.buffer);
      const off = pre;
      const verify = (rnd() & 1) === 0;

      // Every check at the frame start, whatever the bytes are.
      count(checkEthernet(off, end));
      count(checkArp(dv, off, end));
      count(checkIpv4(dv, slab, off, end));
      count(checkIcmp(dv, slab, off, end));
      count(checkUdp(dv, slab, off, end, rnd(), rnd(), verify));
      count(checkTcp(dv, slab, off, end, rnd(), rnd(), verify));
      count(checkVxlan(dv, off, end, 1));

      // And layered, as the data plane does it.
      if (checkEthernet(off, end) === Drop.None) {
        macHi(dv, off); macLo(dv, off + 6);
        const type = ethType(dv, off);
        const l3 = off + 14;
        if (type === 0x0806 && count(checkArp(dv, l3, end)) === Drop.None) {
          arpOper(dv, l3); arpSenderIp(dv, l3); arpTargetIp(dv, l3);
        }
        if (type === 0x0800 && count(checkIpv4(dv, slab, l3, end)) === Drop.None) {
          const hl = ipv4HeaderLen(dv, l3);
          const ipEnd = l3 + ipv4TotalLen(dv, l3);
          const src = ipv4Src(dv, l3);
          const dst = ipv4Dst(dv, l3);
          ipv4IsFragment(dv, l3);
          const l4 = l3 + hl;
          if (ipv4IsFirstFragment(dv, l3)) {
            switch (ipv4Proto(dv, l3)) {
              case 1:
                if (count(checkIcmp(dv, slab, l4, ipEnd)) === Drop.None) { icmpRest(dv, l4); icmpEchoSeq(dv, l4); }
                break;
              case 6:
                if (count(checkTcp(dv, slab, l4, ipEnd, src, dst, verify)) === Drop.None) {
                  tcpAck(dv, l4); tcpUrgent(dv, l4);
                  expect(l4 + tcpHeaderLen(dv, l4)).toBeLessThanOrEqual(ipEnd);
                }
                break;
              case 17:
                if (count(checkUdp(dv, slab, l4, ipEnd, src, dst, verify)) === Drop.None) {
                  udpChecksum(dv, l4);
                  const udpEnd = l4 + udpLength(dv, l4);
                  expect(udpEnd).toBeLessThanOrEqual(ipEnd);
                  if (count(checkVxlan(dv, l4 + 8, udpEnd, 1)) === Drop.None) {
                    vxlanVni(dv, l4 + 8);
                    ethType(dv, l4 + 16);
                  }
                }
                break;
            }
          }
        }
      }

      // The control-path parsers and the pretty printer must not throw either.
      parseEthernet(slab, off, end);
      parseArp(slab, off, end);
      parseIpv4(slab, off, end);
      parseIcmp(slab, off, end);
      parseUdp(slab, off, end, rnd(), rnd());
      parseTcp(slab, off, end);
      parseVxlan(slab, off, end);
      const line = formatFrame(slab, off, end);
      expect(typeof line).toBe('string');
    }
    // The skeletons really did reach the deep checks: every code a check can return was seen.
    for (const d of [Drop.None, Drop.EthTruncated, Drop.ArpTruncated, Drop.ArpUnsupported, Drop.Ipv4Truncated,
      Drop.Ipv4BadVersion, Drop.Ipv4BadHeaderLen, Drop.Ipv4BadTotalLen, Drop.Ipv4BadChecksum, Drop.Ipv4BadOptions,
      Drop.IcmpTruncated, Drop.IcmpBadChecksum, Drop.UdpTruncated, Drop.UdpBadLength, Drop.UdpBadChecksum,
      Drop.TcpTruncated, Drop.TcpBadHeaderLen, Drop.TcpBadChecksum, Drop.VxlanTruncated, Drop.VxlanBadFlags]) {
      expect(seen[d], `drop ${d} never produced`).toBeGreaterThan(0);
    }
  });

  it('check functions survive hostile offsets (end before off, empty frames)', () => {
    const slab = new Uint8Array(64);
    const dv = new DataView(slab.buffer);
    for (const [off, end] of [[0, 0], [64, 64], [10, 5], [63, 64]]) {
      expect(checkEthernet(off, end)).toBe(Drop.EthTruncated);
      expect(checkArp(dv, off, end)).toBe(Drop.ArpTruncated);
      expect(checkIpv4(dv, slab, off, end)).toBe(Drop.Ipv4Truncated);
      expect(checkIcmp(dv, slab, off, end)).toBe(Drop.IcmpTruncated);
      expect(checkUdp(dv, slab, off, end, 0, 0)).toBe(Drop.UdpTruncated);
      expect(checkTcp(dv, slab, off, end, 0, 0, true)).toBe(Drop.TcpTruncated);
      expect(checkVxlan(dv, off, end, 1)).toBe(Drop.VxlanTruncated);
      expect(formatFrame(slab, off, end)).toBe('malformed (eth_truncated)');
    }
  });
});
