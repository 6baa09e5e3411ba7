/**
 * Drop reasons: the one numbered list.
 *
 * Every early exit on the hot path returns one of these codes instead of throwing (a thrown Error
 * costs microseconds; a flood of bad frames must not become a denial of service). The same list
 * labels the metrics (`podwire_drops_total{reason="ipv4_bad_checksum"}`), the per-port counters and
 * the trace output, so a number seen anywhere means the same thing everywhere.
 *
 * Numbers are stable: add new reasons at the end, never renumber.
 */
export const Drop = {
  None: 0,
  // --- L2 ---
  EthTruncated: 1,
  EthUnsupportedType: 2,
  // --- ARP ---
  ArpTruncated: 3,
  ArpUnsupported: 4,
  // --- IPv4 ---
  Ipv4Truncated: 5,
  Ipv4BadVersion: 6,
  Ipv4BadHeaderLen: 7,
  Ipv4BadTotalLen: 8,
  Ipv4BadChecksum: 9,
  Ipv4BadOptions: 10,
  Ipv4Fragment: 11,
  // --- L4 ---
  IcmpTruncated: 12,
  IcmpBadChecksum: 13,
  UdpTruncated: 14,
  UdpBadLength: 15,
  UdpBadChecksum: 16,
  TcpTruncated: 17,
  TcpBadHeaderLen: 18,
  TcpBadChecksum: 19,
  // --- policy of the node itself ---
  SpoofedSrcMac: 20,
  SpoofedSrcIp: 21,
  SpoofedArp: 22,
  TtlExceeded: 23,
  NoRoute: 24,
  HostUnreachable: 25,
  FragNeeded: 26,
  UnknownPort: 27,
  TxQueueFull: 28,
  TxError: 29,
  L2Unicast: 30,
  // --- overlay ---
  VxlanTruncated: 31,
  VxlanBadFlags: 32,
  VxlanBadVni: 33,
  VxlanUnknownPeer: 34,
  VxlanBadInnerMac: 35,
  // --- misc ---
  MulticastSrcMac: 36,
  LocalDelivered: 37,
  FrameTooLong: 38,
  ServiceNoEndpoints: 39,
  ConntrackInvalid: 40,
  PolicyDenied: 41,
} as const;
export type Drop = (typeof Drop)[keyof typeof Drop];

/** One line per reason: the metric label and what it means. Indexed by the code. */
export const DROP_INFO: readonly { readonly label: string; readonly meaning: string }[] = [
  { label: 'none', meaning: 'not dropped' },
  { label: 'eth_truncated', meaning: 'frame shorter than an Ethernet header' },
  { label: 'eth_unsupported_type', meaning: 'EtherType is not IPv4 or ARP (IPv6 is not routed by podwire)' },
  { label: 'arp_truncated', meaning: 'ARP packet shorter than 28 bytes' },
  { label: 'arp_unsupported', meaning: 'ARP for a hardware/protocol other than Ethernet/IPv4, or an unknown opcode' },
  { label: 'ipv4_truncated', meaning: 'frame too short for an IPv4 header' },
  { label: 'ipv4_bad_version', meaning: 'IP version field is not 4' },
  { label: 'ipv4_bad_header_len', meaning: 'IHL below 5 or beyond the packet' },
  { label: 'ipv4_bad_total_len', meaning: 'total length smaller than the header or larger than the frame' },
  { label: 'ipv4_bad_checksum', meaning: 'IPv4 header checksum does not verify' },
  { label: 'ipv4_bad_options', meaning: 'malformed IPv4 options' },
  { label: 'ipv4_fragment', meaning: 'IPv4 fragment with an offset too small to be safe (RFC 1858 overlap attack)' },
  { label: 'icmp_truncated', meaning: 'ICMP message shorter than its header' },
  { label: 'icmp_bad_checksum', meaning: 'ICMP checksum does not verify' },
  { label: 'udp_truncated', meaning: 'UDP datagram shorter than its header' },
  { label: 'udp_bad_length', meaning: 'UDP length field disagrees with the IP payload' },
  { label: 'udp_bad_checksum', meaning: 'UDP checksum does not verify' },
  { label: 'tcp_truncated', meaning: 'TCP segment shorter than its header' },
  { label: 'tcp_bad_header_len', meaning: 'TCP data offset below 5 or beyond the segment' },
  { label: 'tcp_bad_checksum', meaning: 'TCP checksum does not verify' },
  { label: 'spoofed_src_mac', meaning: "a pod sent a frame whose source MAC is not its own" },
  { label: 'spoofed_src_ip', meaning: "a pod sent an IPv4 packet whose source address is not its own" },
  { label: 'spoofed_arp', meaning: "a pod sent ARP claiming an address or MAC that is not its own" },
  { label: 'ttl_exceeded', meaning: 'TTL reached zero while routing (ICMP time exceeded sent)' },
  { label: 'no_route', meaning: 'no route for the destination (ICMP net unreachable sent)' },
  { label: 'host_unreachable', meaning: 'destination is in a pod subnet but no pod has it (ICMP host unreachable sent)' },
  { label: 'frag_needed', meaning: 'packet larger than the next hop MTU with DF set (ICMP fragmentation needed sent)' },
  { label: 'unknown_port', meaning: 'frame arrived on a port that is no longer attached' },
  { label: 'tx_queue_full', meaning: 'the output device would block; frame dropped rather than queued' },
  { label: 'tx_error', meaning: 'the kernel refused the write (device down or gone)' },
  { label: 'l2_unicast_unknown', meaning: 'unicast to an unknown MAC with flooding not possible' },
  { label: 'vxlan_truncated', meaning: 'UDP payload shorter than VXLAN header + Ethernet header' },
  { label: 'vxlan_bad_flags', meaning: 'VXLAN I flag not set or reserved bits used' },
  { label: 'vxlan_bad_vni', meaning: 'VXLAN network identifier is not ours' },
  { label: 'vxlan_unknown_peer', meaning: 'VXLAN datagram from an address that is not a cluster member' },
  { label: 'vxlan_bad_inner_mac', meaning: 'inner destination MAC is not this node\'s VTEP MAC' },
  { label: 'multicast_src_mac', meaning: 'source MAC is a multicast or broadcast address' },
  { label: 'local_delivered', meaning: 'consumed by the daemon itself (ARP or ICMP to the gateway); not an error' },
  { label: 'frame_too_long', meaning: 'frame larger than a slot (the device cut it); never forwarded half a packet' },
  { label: 'service_no_endpoints', meaning: 'new connection to a Service port with no ready endpoint (rejected: TCP RST / ICMP port unreachable)' },
  { label: 'conntrack_invalid', meaning: 'a TCP segment other than SYN for a Service address with no tracked connection' },
  { label: 'policy_denied', meaning: 'a NetworkPolicy isolates the pod in this direction and no rule allows the connection' },
];
export const DROP_COUNT = DROP_INFO.length;
