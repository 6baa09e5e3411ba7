/**
 * A tcpdump-like one-line summary of a frame, for test failure messages, traces and the lab.
 *
 * smoltcp ships a PrettyPrinter so that a failing test prints packets, not hex; this is podwire's.
 * It runs the same check functions as the data plane, so a frame that the data plane would drop
 * prints as `malformed (<drop label>)` with the label the drop counters use (DROP_INFO), and a frame
 * that prints normally is one every accessor can read. Output shapes:
 *
 *   02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP who-has 10.244.1.1 tell 10.244.1.5
 *   02:00:00:00:00:02 > 02:00:00:00:00:01 ARP reply 10.244.1.1 is-at 02:00:00:00:00:02
 *   10.244.1.5.40000 > 10.244.1.6.80: TCP [S] seq 1 len 0 ttl 64
 *   10.244.1.5 > 10.244.1.1: ICMP echo request id 1 seq 2 len 56 ttl 64
 *   10.244.1.5.40000 > 10.96.0.10.53: UDP len 30 ttl 64
 *   192.168.56.11.51234 > 192.168.56.12.4789: UDP len 92 ttl 64 VXLAN vni 1: <inner frame>
 *   02:00:00:00:00:01 > 33:33:00:00:00:01 ethertype 0x86dd (IPv6) len 40
 *   malformed (ipv4_bad_checksum)
 *
 * IPv4 lines leave out the MAC addresses (as tcpdump does without -e); ARP and unknown EtherTypes
 * keep them because they are all there is to say about the sender. Lengths are payload lengths
 * (after the L4 header). TCP flags use tcpdump's letters: S F R P U E W, and '.' for ACK.
 *
 * Control path only: this allocates strings freely. It never throws for any input bytes.
 */
import { DROP_INFO, Drop } from './drop.ts';
import { ARP_REPLY, ARP_REQUEST, ARP_SHA, arpOper, arpSenderIp, arpTargetIp, checkArp } from './arp.ts';
import {
  ETH_DST, ETH_HEADER_LEN, ETH_SRC, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, checkEthernet, ethType, formatMacAt,
} from './ethernet.ts';
import {
  DEST_UNREACH, ECHO_REPLY, ECHO_REQUEST, FRAG_NEEDED, HOST_UNREACH, ICMP_HEADER_LEN, NET_UNREACH, PORT_UNREACH,
  TIME_EXCEEDED, checkIcmp, icmpCode, icmpEchoId, icmpEchoSeq, icmpNextHopMtu, icmpType,
} from './icmp.ts';
import {
  IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPV4_FLAG_MF, checkIpv4, formatIpv4Addr, ipv4Dst, ipv4FragOffset, ipv4Flags,
  ipv4HeaderLen, ipv4Id, ipv4IsFragment, ipv4Proto, ipv4Src, ipv4TotalLen, ipv4Ttl,
} from './ipv4.ts';
import { ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, checkTcp, tcpAck, tcpFlags, tcpHeaderLen, tcpSeq, tcpDstPort, tcpSrcPort } from './tcp.ts';
import { UDP_HEADER_LEN, checkUdp, udpDstPort, udpLength, udpSrcPort } from './udp.ts';
import { VXLAN_DEFAULT_PORT, VXLAN_HEADER_LEN, checkVxlan, vxlanVni } from './vxlan.ts';

/** VXLAN-in-VXLAN nesting beyond this depth is summarised instead of followed. */
const MAX_DEPTH = 4;

/**
 * Return a one-line summary of the Ethernet frame `u8[off .. end)`. Checksums are verified unless
 * `verifyChecksums` is false (useful for frames whose checksums were left to offload).
 */
export function formatFrame(u8: Uint8Array, off: number, end: number, verifyChecksums = true): string {
  if (off < 0 || end > u8.length || off > end) return malformed(Drop.EthTruncated);
  const dv = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  return formatEthernet(dv, u8, off, end, verifyChecksums, 0);
}

/** The line for a frame whose check returned `drop`. */
function malformed(drop: number): string {
  const info = DROP_INFO[drop];
  return `malformed (${info === undefined ? `drop ${drop}` : info.label})`;
}

function formatEthernet(dv: DataView, u8: Uint8Array, off: number, end: number, verify: boolean, depth: number): string {
  const ethDrop = checkEthernet(off, end);
  if (ethDrop !== Drop.None) return malformed(ethDrop);
  const macs = `${formatMacAt(u8, off + ETH_SRC)} > ${formatMacAt(u8, off + ETH_DST)}`;
  const type = ethType(dv, off);
  const l3 = off + ETH_HEADER_LEN;
  if (type === ETHERTYPE_ARP) return formatArp(dv, u8, l3, end, macs);
  if (type === ETHERTYPE_IPV4) return formatIpv4(dv, u8, l3, end, verify, depth);
  const hex = `0x${type.toString(16).padStart(4, '0')}`;
  const name = type === ETHERTYPE_IPV6 ? ' (IPv6)' : '';
  return `${macs} ethertype ${hex}${name} len ${end - l3}`;
}

function formatArp(dv: DataView, u8: Uint8Array, off: number, end: number, macs: string): string {
  const drop = checkArp(dv, off, end);
  if (drop !== Drop.None) return malformed(drop);
  const spa = formatIpv4Addr(arpSenderIp(dv, off));
  const tpa = formatIpv4Addr(arpTargetIp(dv, off));
  const op = arpOper(dv, off);
  if (op === ARP_REQUEST) return `${macs} ARP who-has ${tpa} tell ${spa}`;
  if (op === ARP_REPLY) return `${macs} ARP reply ${spa} is-at ${formatMacAt(u8, off + ARP_SHA)}`;
  return `${macs} ARP op ${op}`; // unreachable: checkArp admits only request and reply
}

function formatIpv4(dv: DataView, u8: Uint8Array, off: number, end: number, verify: boolean, depth: number): string {
  const drop = checkIpv4(dv, u8, off, end);
  if (drop !== Drop.None) return malformed(drop);
  const src = formatIpv4Addr(ipv4Src(dv, off));
  const dst = formatIpv4Addr(ipv4Dst(dv, off));
  const ttl = ipv4Ttl(dv, off);
  const proto = ipv4Proto(dv, off);
  const l4 = off + ipv4HeaderLen(dv, off);
  const ipEnd = off + ipv4TotalLen(dv, off);
  if (ipv4IsFragment(dv, off)) {
    // Only the first fragment holds the L4 header, and no fragment holds the whole L4 checksum.
    const mf = (ipv4Flags(dv, off) & IPV4_FLAG_MF) !== 0 ? ' MF' : '';
    return `${src} > ${dst}: IP fragment proto ${proto} id ${ipv4Id(dv, off)} offset ${ipv4FragOffset(dv, off) * 8}${mf} len ${ipEnd - l4} ttl ${ttl}`;
  }
  if (proto === IPPROTO_ICMP) {
    const d = checkIcmp(dv, u8, l4, ipEnd);
    if (d !== Drop.None && (verify || d !== Drop.IcmpBadChecksum)) return malformed(d);
    return `${src} > ${dst}: ICMP ${describeIcmp(dv, l4, ipEnd)} ttl ${ttl}`;
  }
  if (proto === IPPROTO_UDP) {
    const d = checkUdp(dv, u8, l4, ipEnd, ipv4Src(dv, off), ipv4Dst(dv, off), verify);
    if (d !== Drop.None) return malformed(d);
    const sport = udpSrcPort(dv, l4);
    const dport = udpDstPort(dv, l4);
    const udpEnd = l4 + udpLength(dv, l4);
    let line = `${src}.${sport} > ${dst}.${dport}: UDP len ${udpEnd - l4 - UDP_HEADER_LEN} ttl ${ttl}`;
    if (dport === VXLAN_DEFAULT_PORT) line += ` ${describeVxlan(dv, u8, l4 + UDP_HEADER_LEN, udpEnd, verify, depth)}`;
    return line;
  }
  if (proto === IPPROTO_TCP) {
    const d = checkTcp(dv, u8, l4, ipEnd, ipv4Src(dv, off), ipv4Dst(dv, off), verify);
    if (d !== Drop.None) return malformed(d);
    const flags = tcpFlags(dv, l4);
    const ack = (flags & ACK) !== 0 ? ` ack ${tcpAck(dv, l4)}` : '';
    const len = ipEnd - l4 - tcpHeaderLen(dv, l4);
    return `${src}.${tcpSrcPort(dv, l4)} > ${dst}.${tcpDstPort(dv, l4)}: TCP [${tcpFlagString(flags)}] seq ${tcpSeq(dv, l4)}${ack} len ${len} ttl ${ttl}`;
  }
  return `${src} > ${dst}: IP proto ${proto} len ${ipEnd - l4} ttl ${ttl}`;
}

/** tcpdump's flag letters, in tcpdump's order (print-tcp.c tcp_flag_values). */
const TCP_FLAG_LETTERS: readonly (readonly [number, string])[] = [
  [FIN, 'F'], [SYN, 'S'], [RST, 'R'], [PSH, 'P'], [ACK, '.'], [URG, 'U'], [ECE, 'E'], [CWR, 'W'],
];

/** Return tcpdump's rendering of a TCP flags byte, e.g. 'S.' for SYN+ACK, 'none' for no flags. */
export function tcpFlagString(flags: number): string {
  let s = '';
  for (const [bit, letter] of TCP_FLAG_LETTERS) if ((flags & bit) !== 0) s += letter;
  return s === '' ? 'none' : s;
}

/** Describe the ICMP message `[off, end)` (already checked) without the 'ICMP ' prefix. */
function describeIcmp(dv: DataView, off: number, end: number): string {
  const type = icmpType(dv, off);
  const code = icmpCode(dv, off);
  const dataLen = end - off - ICMP_HEADER_LEN;
  switch (type) {
    case ECHO_REQUEST:
    case ECHO_REPLY:
      return `echo ${type === ECHO_REQUEST ? 'request' : 'reply'} id ${icmpEchoId(dv, off)} seq ${icmpEchoSeq(dv, off)} len ${dataLen}`;
    case DEST_UNREACH:
      if (code === NET_UNREACH) return 'net unreachable';
      if (code === HOST_UNREACH) return 'host unreachable';
      if (code === PORT_UNREACH) return 'port unreachable';
      if (code === FRAG_NEEDED) return `frag needed mtu ${icmpNextHopMtu(dv, off)}`;
      return `dest unreachable code ${code}`;
    case TIME_EXCEEDED:
      return code === 0 ? 'time exceeded in transit' : `time exceeded code ${code}`;
    default:
      return `type ${type} code ${code} len ${dataLen}`;
  }
}

/** Describe the VXLAN payload `[off, end)` of a UDP datagram to port 4789, inner frame included. */
function describeVxlan(dv: DataView, u8: Uint8Array, off: number, end: number, verify: boolean, depth: number): string {
  if (end - off < VXLAN_HEADER_LEN) return `VXLAN ${malformed(Drop.VxlanTruncated)}`;
  const vni = vxlanVni(dv, off);
  const drop = checkVxlan(dv, off, end, vni);
  if (drop !== Drop.None) return `VXLAN ${malformed(drop)}`;
  if (depth >= MAX_DEPTH) return `VXLAN vni ${vni}: ...`;
  return `VXLAN vni ${vni}: ${formatEthernet(dv, u8, off + VXLAN_HEADER_LEN, end, verify, depth + 1)}`;
}
