// offload.h: the byte work behind super-frames crossing a VXLAN underlay.
//
// Included by podwire.cc only (one translation unit; binding.gyp compiles podwire.cc). Nothing in
// here makes a syscall, allocates, or knows about N-API: every function takes pointers and lengths
// that the caller has already checked against its buffers, and promises to read and write only
// inside the ranges it documents.
//
// The problem
// -----------
// A TAP opened with IFF_VNET_HDR and TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 | ...) hands the data
// plane "super-frames": one Ethernet frame carrying up to 64 KiB of TCP payload, preceded by a
// struct virtio_net_hdr that says how the kernel would have cut it up (gso_type, gso_size) and
// that the TCP checksum is not finished (NEEDS_CSUM: the checksum field holds only the sum of the
// pseudo-header). Such a frame cannot travel over VXLAN as it is: the underlay's MTU is ~1500 bytes.
// So on the way out it is *segmented* here into ordinary MSS-sized packets with complete headers
// and checksums, and on the way in ordinary packets of one TCP flow are *coalesced* back into one
// super-frame before they are written to the destination pod's TAP. Both directions are what the
// kernel's GSO and GRO do for a NIC; a userspace data plane has to do them itself.
//
// Segmentation (send side)
// ------------------------
//   super-frame:  [ Eth | IPv4 | TCP (seq S, flags F) | payload: p0 p1 p2 ... pn-1 ]
//                                                      '- mss -'- mss -'...'- <= mss -'
//   segment i:    [ Eth | IPv4 (len, id0 + i, csum) | TCP (seq S + i*mss, flags, csum) | pi ]
//
// Flags, as the kernel's tcp_gso_segment sets them: FIN and PSH only on the last segment, CWR
// only on the first. Every segment's TCP checksum is computed in full (pseudo-header + TCP header
// + payload). UDP super-frames (gso_type UDP_L4, "USO") are cut the same way, each piece getting
// its own UDP length and checksum; IPv6 the same, with payload_len instead of total length and ID.
//
// Coalescing (receive side)
// -------------------------
//   segment a:  [ Eth | IPv4 | TCP seq S         | pa ]     (each with a valid checksum)
//   segment b:  [ Eth | IPv4 | TCP seq S + |pa|  | pb ]
//   segment c:  [ Eth | IPv4 | TCP seq S + ...   | pc ]  (|pc| <= |pa|, maybe with PSH)
//     -> one frame [ Eth | IPv4 (len = all) | TCP (seq S, ack/window of c, PSH if c had it) | pa pb pc ]
//        with vnet header {NEEDS_CSUM, TCPV4, gso_size |pa|, hdr_len, csum_start, csum_offset 16}
//        and the TCP checksum field holding the pseudo-header sum for the new length.
//
// The rules for which segments may merge are those of Linux's tcp_gro_receive, so that the kernel
// re-segmenting the frame (if it forwards it) reproduces the original packets: same MACs,
// addresses, ports, TOS, TTL, header lengths and option bytes; consecutive sequence numbers; every
// segment but the last exactly gso_size long; ACK set, no SYN/FIN/RST/URG, no CWR after the first.
// A segment with PSH, or shorter than the first, is the last one merged.
//
// Checksums
// ---------
// The Internet checksum (RFC 1071) is the ones' complement of the ones' complement sum of the
// data taken as 16-bit words. Two facts make it cheap:
//   * It does not care about byte order (RFC 1071 section 2(B)): summing the words as they sit in
//     memory on a little-endian CPU gives the byte-swapped sum, and storing that result back
//     as it sits in memory writes the right bytes. So nothing here calls ntohs on the data.
//   * Carries can be deferred: adding 32-bit words into a 64-bit accumulator and folding at the end
//     gives the same result, since 2^16 = 1 (mod 2^16 - 1). CsumAdd reads 8 bytes at a time,
//     which the compiler vectorises; 64 KiB costs about 2-3 microseconds.
// All Csum* functions return or take such an "accumulator" (a uint64_t in memory order); CsumFold
// turns it into the 16-bit sum, and the checksum field gets its complement (~).

#ifndef PODWIRE_NATIVE_OFFLOAD_H_
#define PODWIRE_NATIVE_OFFLOAD_H_

#include <arpa/inet.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace podwire {

// ---------------------------------------------------------------------------------------------
// Constants from <linux/virtio_net.h> (which C++ cannot include) and the wire formats.
// ---------------------------------------------------------------------------------------------

constexpr uint8_t kVnetFNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM: finish csum_start/offset
constexpr uint8_t kVnetFDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID: checksum already verified
constexpr uint8_t kGsoNone = 0;         // VIRTIO_NET_HDR_GSO_NONE
constexpr uint8_t kGsoTcpV4 = 1;        // VIRTIO_NET_HDR_GSO_TCPV4
constexpr uint8_t kGsoUdp = 3;          // VIRTIO_NET_HDR_GSO_UDP (UFO: IP fragmentation)
constexpr uint8_t kGsoTcpV6 = 4;        // VIRTIO_NET_HDR_GSO_TCPV6
constexpr uint8_t kGsoUdpL4 = 5;        // VIRTIO_NET_HDR_GSO_UDP_L4 (USO: one UDP header per piece)
constexpr uint8_t kGsoEcn = 0x80;       // VIRTIO_NET_HDR_GSO_ECN, or'ed into gso_type

constexpr uint32_t kVnetLen = 12;   // struct virtio_net_hdr_v1
constexpr uint32_t kVxlanLen = 8;   // flags(1) reserved(3) VNI(3) reserved(1)
constexpr uint32_t kEthLen = 14;    // untagged Ethernet II
constexpr uint16_t kEthIpv4 = 0x0800;
constexpr uint16_t kEthIpv6 = 0x86dd;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;

// TCP flag bits (byte 13 of the TCP header).
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpPsh = 0x08,
                  kTcpAck = 0x10, kTcpUrg = 0x20, kTcpCwr = 0x80;

// The longest headers a segment can carry: Ethernet + IPv4 with options (60) or IPv6 (40) + TCP
// with options (60). A per-segment header copy never exceeds kMaxSegHdr + the VXLAN header.
constexpr uint32_t kMaxSegHdr = kEthLen + 60 + 60;

// A virtio_net_hdr_v1 as raw bytes. Its 16-bit fields are in the CPU's byte order: a TAP uses
// little-endian headers on a little-endian host and does not need TUNSETVNETLE there.
struct VnetView {
  uint8_t flags, gsoType;
  uint16_t hdrLen, gsoSize, csumStart, csumOffset;
};

inline uint16_t LoadHost16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
inline void StoreHost16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }

inline VnetView ReadVnet(const uint8_t* p) {
  VnetView v;
  v.flags = p[0];
  v.gsoType = p[1];
  v.hdrLen = LoadHost16(p + 2);
  v.gsoSize = LoadHost16(p + 4);
  v.csumStart = LoadHost16(p + 6);
  v.csumOffset = LoadHost16(p + 8);
  return v;
}

inline void WriteVnet(uint8_t* p, uint8_t flags, uint8_t gsoType, uint16_t hdrLen,
                      uint16_t gsoSize, uint16_t csumStart, uint16_t csumOffset) {
  p[0] = flags;
  p[1] = gsoType;
  StoreHost16(p + 2, hdrLen);
  StoreHost16(p + 4, gsoSize);
  StoreHost16(p + 6, csumStart);
  StoreHost16(p + 8, csumOffset);
  StoreHost16(p + 10, 0);  // num_buffers: unused on a TAP
}

// Big-endian (network order) field access.
inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void PutBe16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// ---------------------------------------------------------------------------------------------
// Checksums (see the essay at the top)
// ---------------------------------------------------------------------------------------------

// Add the 16-bit words of p[0, n) to `acc`, in memory order. `p` must start a 16-bit word of the
// checksummed data (an even offset from where the checksum starts); an odd last byte counts as a
// word padded with a zero byte, as RFC 1071 says. Safe for any n below 2^32 (each step adds at most
// 2^33 to a 64-bit accumulator).
inline uint64_t CsumAdd(const uint8_t* p, size_t n, uint64_t acc) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  while (n >= 32) {
    uint64_t w[4];
    memcpy(w, p, 32);
    a0 += (w[0] & 0xffffffffu) + (w[0] >> 32);
    a1 += (w[1] & 0xffffffffu) + (w[1] >> 32);
    a2 += (w[2] & 0xffffffffu) + (w[2] >> 32);
    a3 += (w[3] & 0xffffffffu) + (w[3] >> 32);
    p += 32;
    n -= 32;
  }
  acc += a0 + a1 + a2 + a3;
  while (n >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    acc += LoadHost16(p);
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint8_t last[2] = {p[0], 0};
    acc += LoadHost16(last);
  }
  return acc;
}

// Fold an accumulator to the 16-bit ones' complement sum (memory order). Never 0 for a non-zero
// accumulator.
inline uint16_t CsumFold(uint64_t acc) {
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffffffffu) + (acc >> 32);
  uint32_t s = static_cast<uint32_t>(acc);
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// A 16-bit value in network order, as an accumulator term (the sum is kept in memory order).
inline uint64_t CsumWord(uint16_t hostValue) { return htons(hostValue); }

// The IPv4 pseudo-header {src, dst, 0, proto, l4len} for the IPv4 header at `ip`.
inline uint64_t PseudoV4(const uint8_t* ip, uint8_t proto, uint32_t l4len) {
  uint32_t src, dst;
  memcpy(&src, ip + 12, 4);
  memcpy(&dst, ip + 16, 4);
  return static_cast<uint64_t>(src) + dst + CsumWord(proto) +
         CsumWord(static_cast<uint16_t>(l4len));
}

// The IPv6 pseudo-header {src, dst, l4len (32 bits), 0, 0, 0, next header} for the header at `ip`.
inline uint64_t PseudoV6(const uint8_t* ip, uint8_t proto, uint32_t l4len) {
  return CsumAdd(ip + 8, 32, 0) + CsumWord(static_cast<uint16_t>(l4len >> 16)) +
         CsumWord(static_cast<uint16_t>(l4len)) + CsumWord(proto);
}

// ---------------------------------------------------------------------------------------------
// Segmentation
// ---------------------------------------------------------------------------------------------

// What PlanSegments learned about a super-frame. Offsets are from the start of the Ethernet frame.
struct SegPlan {
  const uint8_t* frame;
  uint32_t len;    // frame length
  uint32_t l3;     // IP header offset (14)
  uint32_t l4;     // TCP/UDP header offset
  uint32_t hl;     // total header length = payload offset
  uint32_t mss;    // payload bytes per segment (gso_size)
  uint32_t pay;    // payload bytes in all
  uint32_t nseg;   // segments: ceil(pay / mss), at least 1
  bool v6;
  uint8_t proto;   // kProtoTcp or kProtoUdp
  uint16_t id0;    // IPv4 ID of the first segment
  uint32_t seq0;   // TCP sequence number of the first segment
};

// Parse the headers of a super-frame and check that they can be segmented: untagged Ethernet,
// IPv4 (not a fragment, options allowed) or IPv6 (TCP/UDP directly after the fixed header),
// TCP or UDP matching `gsoType` (TCPV4, TCPV6 or UDP_L4; the ECN bit already masked off), whole
// headers inside `len`, and `mss` >= 1. Returns false for anything else.
inline bool PlanSegments(const uint8_t* f, uint32_t len, uint8_t gsoType, uint32_t mss,
                         SegPlan* p) {
  if (len < kEthLen + 20 || mss == 0) return false;
  uint16_t type = Be16(f + 12);
  const uint8_t* ip = f + kEthLen;
  p->frame = f;
  p->len = len;
  p->l3 = kEthLen;
  p->id0 = 0;
  if (type == kEthIpv4) {
    if ((ip[0] >> 4) != 4) return false;
    uint32_t ihl = (ip[0] & 0x0f) * 4u;
    if (ihl < 20 || kEthLen + ihl > len) return false;
    if ((Be16(ip + 6) & 0x3fff) != 0) return false;  // MF set or a fragment offset
    p->v6 = false;
    p->proto = ip[9];
    p->l4 = kEthLen + ihl;
    p->id0 = Be16(ip + 4);
  } else if (type == kEthIpv6) {
    if (len < kEthLen + 40 || (ip[0] >> 4) != 6) return false;
    p->v6 = true;
    p->proto = ip[6];  // extension headers are not supported
    p->l4 = kEthLen + 40;
  } else {
    return false;
  }
  if (gsoType == kGsoTcpV4 && (p->v6 || p->proto != kProtoTcp)) return false;
  if (gsoType == kGsoTcpV6 && (!p->v6 || p->proto != kProtoTcp)) return false;
  if (gsoType == kGsoUdpL4 && p->proto != kProtoUdp) return false;
  if (gsoType != kGsoTcpV4 && gsoType != kGsoTcpV6 && gsoType != kGsoUdpL4) return false;
  uint32_t l4hl;
  if (p->proto == kProtoTcp) {
    if (p->l4 + 20 > len) return false;
    l4hl = (f[p->l4 + 12] >> 4) * 4u;
    if (l4hl < 20) return false;
    p->seq0 = Be32(f + p->l4 + 4);
  } else {
    l4hl = 8;
    p->seq0 = 0;
  }
  p->hl = p->l4 + l4hl;
  if (p->hl > len) return false;
  p->mss = mss;
  p->pay = len - p->hl;
  p->nseg = p->pay == 0 ? 1 : (p->pay + mss - 1) / mss;
  return true;
}

// Write the headers of segment i (0 <= i < p.nseg) to out[0, p.hl), with every length, ID,
// sequence number, flag and checksum set; the segment's payload is p.frame[*payOff, + returned
// length). Reads only p.frame[0, p.len).
inline uint32_t BuildSegment(const SegPlan& p, uint32_t i, uint8_t* out, uint32_t* payOff) {
  const uint32_t off = p.hl + i * p.mss;
  const uint32_t rest = p.pay - i * p.mss;
  const uint32_t plen = rest < p.mss ? rest : p.mss;
  const uint32_t l4len = (p.hl - p.l4) + plen;
  memcpy(out, p.frame, p.hl);
  uint8_t* ip = out + p.l3;
  uint8_t* th = out + p.l4;
  uint64_t acc;
  if (!p.v6) {
    PutBe16(ip + 2, (p.l4 - p.l3) + l4len);
    PutBe16(ip + 4, static_cast<uint16_t>(p.id0 + i));
    ip[10] = ip[11] = 0;
    StoreHost16(ip + 10, static_cast<uint16_t>(~CsumFold(CsumAdd(ip, p.l4 - p.l3, 0))));
    acc = PseudoV4(ip, p.proto, l4len);
  } else {
    PutBe16(ip + 4, l4len);
    acc = PseudoV6(ip, p.proto, l4len);
  }
  uint8_t* check;
  if (p.proto == kProtoTcp) {
    PutBe32(th + 4, p.seq0 + i * p.mss);
    uint8_t flags = th[13];
    if (i + 1 < p.nseg) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i > 0) flags &= static_cast<uint8_t>(~kTcpCwr);
    th[13] = flags;
    check = th + 16;
  } else {
    PutBe16(th + 4, l4len);
    check = th + 6;
  }
  check[0] = check[1] = 0;
  acc = CsumAdd(th, p.hl - p.l4, acc);
  acc = CsumAdd(p.frame + off, plen, acc);
  uint16_t sum = static_cast<uint16_t>(~CsumFold(acc));
  // A computed 0 is sent as 0xffff (the same value in ones' complement): for UDP a 0 would mean
  // "no checksum" (and is illegal over IPv6). The kernel's skb_checksum_help does the same.
  if (sum == 0) sum = 0xffff;
  StoreHost16(check, sum);
  *payOff = off;
  return plen;
}

// Finish a NEEDS_CSUM checksum: the field at csumStart + csumOffset holds the pseudo-header sum
// (not complemented); the result is the complement of the sum over f[csumStart, len), field
// included, with words counted from csumStart (as the kernel's skb_checksum_help counts them).
// The caller has checked csumStart + csumOffset + 2 <= len.
inline uint16_t CompleteCsum(const uint8_t* f, uint32_t len, uint32_t csumStart) {
  uint16_t sum = static_cast<uint16_t>(~CsumFold(CsumAdd(f + csumStart, len - csumStart, 0)));
  return sum == 0 ? 0xffff : sum;
}

// ---------------------------------------------------------------------------------------------
// Coalescing
// ---------------------------------------------------------------------------------------------

// What InspectTcp4 learned about one received inner frame.
struct TcpSeg {
  uint32_t hl;      // Ethernet + IPv4 + TCP header length (payload offset)
  uint32_t thl;     // TCP header length
  uint32_t pay;     // payload length
  uint32_t seq;     // sequence number
  uint8_t flags;    // TCP flags byte
  bool csumOk;      // IPv4 header checksum and TCP checksum verified
  bool mergeable;   // may start or join a super-frame (see InspectTcp4)
};

// Look at an inner frame f[0, len). Returns false unless it is an untagged Ethernet, IPv4 (no
// options, not a fragment) TCP segment whose headers fit inside the IPv4 total length, which fits
// inside len. Otherwise fills `s`, verifies both checksums (csumOk) and decides `mergeable`:
// checksums good, DF set, no Ethernet padding (14 + total length == len), ACK set, no
// SYN/FIN/RST/URG, and a payload.
inline bool InspectTcp4(const uint8_t* f, uint32_t len, TcpSeg* s) {
  if (len < kEthLen + 20 + 20 || Be16(f + 12) != kEthIpv4) return false;
  const uint8_t* ip = f + kEthLen;
  if (ip[0] != 0x45 || ip[9] != kProtoTcp) return false;
  const uint16_t frag = Be16(ip + 6);
  if ((frag & 0x3fff) != 0) return false;
  const uint32_t tot = Be16(ip + 2);
  if (tot < 40 || kEthLen + tot > len) return false;
  const uint8_t* th = ip + 20;
  const uint32_t thl = (th[12] >> 4) * 4u;
  if (thl < 20 || 20 + thl > tot) return false;
  s->thl = thl;
  s->hl = kEthLen + 20 + thl;
  s->pay = tot - 20 - thl;
  s->seq = Be32(th + 4);
  s->flags = th[13];
  const uint32_t l4len = tot - 20;
  s->csumOk = CsumFold(CsumAdd(ip, 20, 0)) == 0xffff &&
              CsumFold(CsumAdd(th, l4len, PseudoV4(ip, kProtoTcp, l4len))) == 0xffff;
  s->mergeable = s->csumOk && (frag & 0x4000) != 0 && kEthLen + tot == len && s->pay > 0 &&
                 (s->flags & kTcpAck) != 0 &&
                 (s->flags & (kTcpSyn | kTcpFin | kTcpRst | kTcpUrg)) == 0;
  return true;
}

// A super-frame being built in a slot:
//
//   slot: [headroom][VXLAN 8][vnet 12][Eth | IPv4 | TCP | payload of segment 1 | of 2 | ...]
//                   ^vxlan   ^vnet    ^frame
//
// The first segment is copied whole; each joining segment adds only its payload. Headers are
// patched when the run ends (Finish).
struct Run {
  uint8_t* vxlan;   // the slot's VXLAN header (8 bytes); vnet and frame follow
  uint8_t* frame;
  uint32_t len;     // frame bytes so far
  uint32_t room;    // bytes available for the frame in the slot
  uint32_t hl;      // header length of the first segment
  uint32_t mss;     // payload length of the first segment (the gso_size)
  uint32_t nextSeq; // sequence number the next segment must carry
  uint32_t count;   // segments in the run
  uint32_t srcAddr; // underlay sender (host order) and port
  uint16_t srcPort;
  bool closed;      // a PSH or short segment ended it: nothing may join
};

// Start a run in a slot whose frame already holds the first segment (s describes it).
inline void RunStart(Run* r, uint8_t* vxlan, uint32_t room, const TcpSeg& s, uint32_t srcAddr,
                     uint16_t srcPort) {
  r->vxlan = vxlan;
  r->frame = vxlan + kVxlanLen + kVnetLen;
  r->len = s.hl + s.pay;
  r->room = room;
  r->hl = s.hl;
  r->mss = s.pay;
  r->nextSeq = s.seq + s.pay;
  r->count = 1;
  r->srcAddr = srcAddr;
  r->srcPort = srcPort;
  r->closed = (s.flags & kTcpPsh) != 0;
}

// May the segment f (VXLAN header vx, described by s, from srcAddr:srcPort) join the run?
inline bool RunCanJoin(const Run& r, const uint8_t* vx, const uint8_t* f, const TcpSeg& s,
                       uint32_t srcAddr, uint16_t srcPort) {
  if (r.closed || !s.mergeable || srcAddr != r.srcAddr || srcPort != r.srcPort) return false;
  if (s.hl != r.hl || s.seq != r.nextSeq || s.pay > r.mss) return false;
  // The frame must fit the slot, and the IPv4 total length its 16 bits.
  if (r.len + s.pay > r.room || r.len - kEthLen + s.pay > 0xffff) return false;
  if (memcmp(vx, r.vxlan, kVxlanLen) != 0) return false;
  const uint8_t* a = r.frame;
  // Ethernet addresses and type (0..13); IPv4 version/IHL and TOS (14, 15); flags and fragment
  // offset, TTL, protocol (20..23); addresses (26..33). Lengths, IDs and checksums may differ.
  if (memcmp(a, f, 16) != 0 || memcmp(a + 20, f + 20, 4) != 0 || memcmp(a + 26, f + 26, 8) != 0) {
    return false;
  }
  const uint8_t* ta = a + 34;
  const uint8_t* tb = f + 34;
  // Ports; then the options, byte for byte (timestamps included, as Linux GRO requires).
  if (memcmp(ta, tb, 4) != 0 || memcmp(ta + 20, tb + 20, s.thl - 20) != 0) return false;
  // Flags: ECE and the rest must match the first segment's, PSH may differ; CWR may not appear.
  if ((s.flags & kTcpCwr) != 0) return false;
  if (((ta[13] ^ s.flags) & static_cast<uint8_t>(~(kTcpPsh | kTcpCwr))) != 0) return false;
  return true;
}

// Append the segment's payload; take its ACK number and window; a PSH or short segment ends the run.
inline void RunJoin(Run* r, const uint8_t* f, const TcpSeg& s) {
  memcpy(r->frame + r->len, f + s.hl, s.pay);
  r->len += s.pay;
  uint8_t* th = r->frame + 34;
  memcpy(th + 8, f + 34 + 8, 4);    // acknowledgment number
  memcpy(th + 14, f + 34 + 14, 2);  // window
  if (s.flags & kTcpPsh) {
    th[13] |= kTcpPsh;
    r->closed = true;
  }
  if (s.pay < r->mss) r->closed = true;
  r->nextSeq += s.pay;
  r->count++;
}

// End the run and write its vnet header. A run of one segment stays as received, marked
// DATA_VALID (its checksum was verified). A longer one gets its IPv4 total length and header
// checksum, and a TCP checksum field holding the pseudo-header sum (not complemented) for the new
// length, as NEEDS_CSUM requires. Returns the frame length.
inline uint32_t RunFinish(const Run& r) {
  uint8_t* vnet = r.vxlan + kVxlanLen;
  if (r.count < 2) {
    WriteVnet(vnet, kVnetFDataValid, kGsoNone, 0, 0, 0, 0);
    return r.len;
  }
  uint8_t* ip = r.frame + kEthLen;
  const uint32_t tot = r.len - kEthLen;
  PutBe16(ip + 2, tot);
  ip[10] = ip[11] = 0;
  StoreHost16(ip + 10, static_cast<uint16_t>(~CsumFold(CsumAdd(ip, 20, 0))));
  StoreHost16(ip + 20 + 16, CsumFold(PseudoV4(ip, kProtoTcp, tot - 20)));
  WriteVnet(vnet, kVnetFNeedsCsum, kGsoTcpV4, static_cast<uint16_t>(r.hl),
            static_cast<uint16_t>(r.mss), kEthLen + 20, 16);
  return r.len;
}

// ---------------------------------------------------------------------------------------------
// The UDP-tunnel GSO path (Linux >= 6.17): the kernel segments VXLAN super-frames itself
// ---------------------------------------------------------------------------------------------
//
// A TAP whose virtio-net header is the 24-byte virtio_net_hdr_v1_hash_tunnel accepts frames with
// gso_type UDP_TUNNEL_IPV4 | TCPV4: a whole VXLAN packet whose inner TCP packet is a super-frame.
// The kernel takes it as one skb (SKB_GSO_UDP_TUNNEL), routes it to the underlay like any packet
// it forwards, and cuts it into MSS-sized VXLAN datagrams only where something needs them cut (a
// real NIC, a socket that cannot take it whole), computing each inner TCP checksum on the way.
// Between namespaces it is never cut: the receiving daemon's UDP socket gets the VXLAN packet
// whole, and so does a Linux VXLAN device, which is how two Linux VXLAN nodes talk on one host.
//
//   written to the TAP:
//   [ virtio_net_hdr_v1_hash_tunnel 24 ][ Eth 14 ][ IPv4 20 ][ UDP 8 ][ VXLAN 8 ][ inner frame ]
//     flags NEEDS_CSUM, gso_type 0x21,    '-- outer_th_offset = 34    '-- inner_nh_offset = 64
//     csum_start = inner TCP header,      (offsets from the start of the Ethernet frame)
//     gso_size = the inner MSS
//
//   virtio_net_hdr_v1_hash_tunnel (include/uapi/linux/virtio_net.h), little-endian fields:
//     0 flags | 1 gso_type | 2 hdr_len | 4 gso_size | 6 csum_start | 8 csum_offset | 10 num_buffers
//     12 hash_value (32) | 16 hash_report | 18 padding | 20 outer_th_offset | 22 inner_nh_offset

constexpr uint32_t kVnetTunnelLen = 24;
constexpr uint8_t kGsoUdpTunnelV4 = 0x20;       // VIRTIO_NET_HDR_GSO_UDP_TUNNEL_IPV4
constexpr uint32_t kTunFUdpTunnelGso = 0x80;    // TUN_F_UDP_TUNNEL_GSO (if_tun.h)
constexpr uint32_t kOuterLen = kEthLen + 20 + 8 + kVxlanLen;  // 50: what VXLAN adds

// Fill hdr[0, kVnetTunnelLen + kOuterLen) for the inner frame f (flen bytes, a TCPV4 super-frame
// described by vh) sent from srcAddr to dstAddr (host order) on UDP srcPort -> dstPort. The
// outer Ethernet destination is the TAP's own address, so the kernel takes the frame as its own
// to route. Returns false when the outer IPv4 packet would exceed 65535 bytes.
inline bool BuildTunnelHeader(uint8_t* hdr, const VnetView& vh, const uint8_t* f, uint32_t flen,
                              const uint8_t* vxlan, const uint8_t tapMac[6], uint32_t srcAddr,
                              uint32_t dstAddr, uint16_t srcPort, uint16_t dstPort, uint16_t ipId) {
  const uint32_t ipLen = 20 + 8 + kVxlanLen + flen;
  if (ipLen > 65535 || vh.csumStart < kEthLen + 20 || vh.csumStart + 20u > flen) return false;
  const uint32_t thl = (f[vh.csumStart + 12] >> 4) * 4u;
  const uint32_t innerTh = 50 + vh.csumStart;
  memset(hdr, 0, kVnetTunnelLen);
  hdr[0] = kVnetFNeedsCsum;
  hdr[1] = static_cast<uint8_t>(kGsoUdpTunnelV4 | kGsoTcpV4 | (vh.gsoType & kGsoEcn));
  StoreHost16(hdr + 2, static_cast<uint16_t>(innerTh + thl));
  StoreHost16(hdr + 4, vh.gsoSize);
  StoreHost16(hdr + 6, static_cast<uint16_t>(innerTh));
  StoreHost16(hdr + 8, 16);                                  // TCP checksum field
  StoreHost16(hdr + 20, kEthLen + 20);                       // outer UDP header
  StoreHost16(hdr + 22, kEthLen + 20 + 8 + kVxlanLen + kEthLen);  // inner IPv4 header
  uint8_t* e = hdr + kVnetTunnelLen;
  memcpy(e, tapMac, 6);
  memcpy(e + 6, tapMac, 6);
  e[6] ^= 0x02;                                              // a different, locally administered source
  e[12] = 0x08;
  e[13] = 0x00;
  uint8_t* ip = e + kEthLen;
  ip[0] = 0x45;
  ip[1] = 0;
  PutBe16(ip + 2, ipLen);
  PutBe16(ip + 4, ipId);
  PutBe16(ip + 6, 0);                                        // DF clear, as Linux VXLAN sends
  ip[8] = 64;
  ip[9] = 17;
  PutBe16(ip + 10, 0);
  PutBe32(ip + 12, srcAddr);
  PutBe32(ip + 16, dstAddr);
  StoreHost16(ip + 10, static_cast<uint16_t>(~CsumFold(CsumAdd(ip, 20, 0))));
  uint8_t* udp = ip + 20;
  PutBe16(udp, srcPort);
  PutBe16(udp + 2, dstPort);
  PutBe16(udp + 4, 8 + kVxlanLen + flen);
  PutBe16(udp + 6, 0);                                       // no outer checksum (RFC 7348 5)
  memcpy(udp + 8, vxlan, kVxlanLen);
  return true;
}

// Is the inner frame f[0, len) of a received VXLAN datagram one whole TCP/IPv4 super-packet (what
// the tunnel path above sends; UDP_GRO reports no segment size for it)? True when the IPv4 total
// length says exactly len - 14 and exceeds innerMtu, the most a single packet may carry. Then
// *gsoSize is the MSS that innerMtu allows with these headers (what GRO would have recorded), and
// *csumStart/*hdrLen locate the TCP header for the virtio-net header of the super-frame.
inline bool InspectTcp4Super(const uint8_t* f, uint32_t len, uint32_t innerMtu, uint16_t* gsoSize,
                             uint16_t* csumStart, uint16_t* hdrLen) {
  if (innerMtu == 0 || len < kEthLen + 40 || Be16(f + 12) != 0x0800) return false;
  const uint8_t* ip = f + kEthLen;
  const uint32_t ihl = (ip[0] & 0x0f) * 4u;
  if ((ip[0] >> 4) != 4 || ihl < 20 || ip[9] != 6 || (Be16(ip + 6) & 0x3fff) != 0) return false;
  const uint32_t total = Be16(ip + 2);
  if (total + kEthLen != len || total <= innerMtu || ihl + 20 > total) return false;
  const uint32_t thl = (ip[ihl + 12] >> 4) * 4u;
  if (thl < 20 || ihl + thl >= total || ihl + thl >= innerMtu) return false;
  *gsoSize = static_cast<uint16_t>(innerMtu - ihl - thl);
  *csumStart = static_cast<uint16_t>(kEthLen + ihl);
  *hdrLen = static_cast<uint16_t>(kEthLen + ihl + thl);
  return true;
}

// ---------------------------------------------------------------------------------------------
// UDP runs toward a TAP (USO on write)
// ---------------------------------------------------------------------------------------------
//
// Writing a frame into a TAP costs about a microsecond of kernel time (the syscall, an skb, and
// the receiving namespace's IP input), whatever its size. Consecutive small UDP datagrams of one
// flow can go as one write instead: a "USO" frame that the kernel cuts back into the datagrams
// after its IP input, as it does for a UDP_SEGMENT send or for UDP GRO forwarding.
//
//   datagram k:  [vnet NONE][ Eth | IPv4 (ID id0 + k) | UDP (len 8 + pk) | pk ]   k = 0 .. n-1
//
//   one write:   [vnet {NEEDS_CSUM, UDP_L4, hdr_len 42, gso_size p0, csum_start 34, offset 6}]
//                [ Eth | IPv4 (len 28 + P, ID id0, checksum) | UDP (len 8 + P, pseudo-header sum) ]
//                [ p0 | p1 | ... | pn-1 ]         (P = sum of pk; gathered by writev, not copied)
//
// The kernel's segmentation (__udp_gso_segment, inet_gso_segment) gives every piece the headers
// of the first with its own IPv4 length, ID id0 + k and checksum, its own UDP length, and a UDP
// checksum completed from the pseudo-header sum. So the datagrams come out byte for byte as they
// went in when: untagged IPv4 without options, not a fragment, the same MACs, TOS, flags, TTL,
// addresses and ports; IDs consecutive (a connected Linux socket's are); every payload p0 long but
// the last, which may be shorter; lengths that agree with the frame; and checksums known good.
// The checksum rule keeps a bad datagram from being laundered (a piece's checksum is computed
// afresh, and nothing checks the run's): its UDP checksum is verified here unless the virtio-net
// header says NEEDS_CSUM (a local sender left it to offload: the field holds only the pseudo-header
// sum). DATA_VALID is not taken on trust, so a slip in an incremental NAT update cannot hide
// either. A datagram sent without a UDP checksum (0) is not merged, since its piece would get one.

constexpr uint32_t kUdpRunHdr = kEthLen + 20 + 8;  // 42: the headers a USO frame starts with
constexpr uint32_t kMaxUdpRun = 64;                // datagrams per USO write

// One datagram that may join a run: its frame (after the virtio-net header) and what a run
// compares.
struct UdpDatagram {
  const uint8_t* f;   // Ethernet header
  uint32_t payload;   // UDP payload bytes
  uint16_t id;        // IPv4 ID
  bool partial;       // NEEDS_CSUM: the UDP checksum field holds the pseudo-header sum only
};

// Could v[0, len) -- a 12-byte virtio-net header and a frame -- be a UDP/IPv4 datagram that travels
// in a USO write (see the rules above)? Everything but its UDP checksum is checked; fills *d.
// The caller checks the checksum (UdpChecksumOk) only once the datagram is about to join a run,
// so a stream whose datagrams never merge costs no checksum work.
inline bool InspectUdp4Datagram(const uint8_t* v, uint32_t len, UdpDatagram* d) {
  if (len < kVnetLen + kUdpRunHdr + 1) return false;
  const VnetView vh = ReadVnet(v);
  if (vh.gsoType != kGsoNone) return false;
  const bool partial = vh.flags == kVnetFNeedsCsum;
  if (partial ? (vh.csumStart != kEthLen + 20 || vh.csumOffset != 6)
              : (vh.flags != 0 && vh.flags != kVnetFDataValid)) {
    return false;
  }
  const uint8_t* f = v + kVnetLen;
  const uint8_t* ip = f + kEthLen;
  if (Be16(f + 12) != kEthIpv4 || ip[0] != 0x45 || ip[9] != kProtoUdp) return false;
  if ((Be16(ip + 6) & 0x3fff) != 0) return false;  // MF or a fragment offset
  const uint32_t total = Be16(ip + 2);
  if (total != len - kVnetLen - kEthLen || CsumFold(CsumAdd(ip, 20, 0)) != 0xffff) return false;
  const uint8_t* udp = ip + 20;
  const uint32_t ulen = Be16(udp + 4);
  if (ulen != total - 20 || ulen <= 8) return false;
  d->f = f;
  d->payload = ulen - 8;
  d->id = Be16(ip + 4);
  d->partial = partial;
  return true;
}

// The checksum rule for a datagram InspectUdp4Datagram accepted: a partial checksum is the
// sender's kernel's to finish; any other must be present (not 0) and verify.
inline bool UdpChecksumOk(const UdpDatagram& d) {
  if (d.partial) return true;
  const uint8_t* ip = d.f + kEthLen;
  const uint8_t* udp = ip + 20;
  const uint32_t ulen = d.payload + 8;
  return LoadHost16(udp + 6) != 0 &&
         CsumFold(PseudoV4(ip, kProtoUdp, ulen) + CsumAdd(udp, ulen, 0)) == 0xffff;
}

// May datagram b follow a run that starts with a and has k datagrams so far? (Lengths are checked
// by the caller, which also decides where the run ends.)
inline bool UdpRunCanJoin(const UdpDatagram& a, const UdpDatagram& b, uint32_t k) {
  const uint8_t *ia = a.f + kEthLen, *ib = b.f + kEthLen;
  return b.id == static_cast<uint16_t>(a.id + k) &&
         memcmp(a.f, b.f, 12) == 0 &&            // MACs
         ia[1] == ib[1] &&                       // TOS
         Be16(ia + 6) == Be16(ib + 6) &&         // flags (DF)
         ia[8] == ib[8] &&                       // TTL
         memcmp(ia + 12, ib + 12, 8) == 0 &&     // addresses
         memcmp(ia + 20, ib + 20, 4) == 0;       // ports
}

// The header of a USO write for a run that starts with datagram a and carries `total` payload
// bytes: hdr[0, kVnetLen + kUdpRunHdr).
inline void BuildUdpRunHeader(uint8_t* hdr, const UdpDatagram& a, uint32_t total) {
  WriteVnet(hdr, kVnetFNeedsCsum, kGsoUdpL4, static_cast<uint16_t>(kUdpRunHdr),
            static_cast<uint16_t>(a.payload), kEthLen + 20, 6);
  uint8_t* f = hdr + kVnetLen;
  memcpy(f, a.f, kUdpRunHdr);
  uint8_t* ip = f + kEthLen;
  uint8_t* udp = ip + 20;
  PutBe16(ip + 2, 28 + total);
  PutBe16(ip + 10, 0);
  StoreHost16(ip + 10, static_cast<uint16_t>(~CsumFold(CsumAdd(ip, 20, 0))));
  PutBe16(udp + 4, 8 + total);
  // NEEDS_CSUM: the field holds the pseudo-header sum, not complemented; the kernel adds the rest.
  StoreHost16(udp + 6, CsumFold(PseudoV4(ip, kProtoUdp, 8 + total)));
}

}  // namespace podwire

#endif  // PODWIRE_NATIVE_OFFLOAD_H_
