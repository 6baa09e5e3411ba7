/**
 * The native addon's surface, as TypeScript sees it.
 *
 * Why an addon at all: Node's `fs` and `dgram` cost one callback (and one Buffer) per frame, which
 * measured 10-60x slower per frame than crossing into JS once per batch (see the README). npm's
 * `raw-socket` opens only AF_INET raw sockets (no L2, no UDP, one callback per packet) and the
 * `tuntap2` package named in early plans does not exist on the npm registry. So the addon owns the
 * few syscalls that must be batched, and nothing else:
 *
 *   - TAP devices: open with TUNSETIFF (IFF_TAP | IFF_NO_PI, optionally IFF_VNET_HDR), non-blocking;
 *   - batched frame reads and writes between a TAP fd and a JS-owned slab (one N-API call per batch);
 *   - the UDP underlay for VXLAN: recvmmsg / sendmmsg into and out of the same kind of slab;
 *   - readiness: a libuv poll watcher that calls back into JS when an fd is readable.
 *
 * Every decision (bridging, routing, NAT, policy) stays in TypeScript. The addon never allocates per
 * frame and never calls into JS per frame.
 *
 * Slab layout shared by every batch call: `buf` is split into slots of `slotSize` bytes; frame i of
 * a read lands at `buf[(firstSlot + i) * slotSize + headroom]` and its length goes to `lens[i]`.
 * Writes take explicit byte offsets, so a frame can be sent from anywhere in a slab (for instance
 * with a VXLAN header prepended into its headroom).
 *
 * Errors: OS failures become JS `Error`s whose message names the call, the device and the errno
 * (`openTap(pw0a1b2): EPERM Operation not permitted`) and whose `code` is the errno name. A would-
 * block condition is never an error: reads return 0, writes return how many frames they consumed.
 */
import { createRequire } from 'node:module';
import { getSystemErrorName } from 'node:util';

export interface TapHandle {
  /** The file descriptor the daemon keeps for the life of the pod. */
  fd: number;
  /** The kernel's name for the device (as created; may be renamed later inside the pod). */
  name: string;
  /** Whether each frame carries a 10/12-byte struct virtio_net_hdr in front of it. */
  vnetHdr: boolean;
}

export interface Addon {
  /**
   * Open (create) a TAP device named `name` in the calling process's network namespace. With
   * `vnetHdr`, frames carry a 12-byte virtio_net_hdr_v1, or the 24-byte tunnel variant when
   * `vnetHdrSize` is 24 (see openTunnelTap).
   */
  openTap(name: string, vnetHdr: boolean, vnetHdrSize?: 12 | 24): TapHandle;
  /** Close an fd opened by this addon. Closing a non-persistent TAP's fd deletes the device. */
  closeFd(fd: number): void;
  /**
   * Busy polling: poll(2) `fds` with a zero timeout (sched_yield between rounds) until one is
   * readable or `budgetMicros` have passed. Returns how many are readable, with ready[i] = 1 for
   * each of them, or 0 when the budget ran out first. Blocks the JS thread for up to the budget.
   */
  spinPoll(fds: Int32Array, ready: Uint8Array, budgetMicros: number): number;
  /**
   * Read up to `maxFrames` frames from `fd` with one read(2) each, without blocking.
   * Returns the number of frames read (0 when nothing is waiting). A frame longer than its slot
   * (which a TAP would silently cut) is reported with length -1, so it is dropped, never forwarded cut.
   */
  readBatch(fd: number, buf: Uint8Array, firstSlot: number, slotSize: number, headroom: number,
            maxFrames: number, lens: Int32Array): number;
  /**
   * Write `count` frames (`offsets[start + i]`, `lens[start + i]` within `buf`) to `fd`.
   * Returns how many were consumed: written, or failed with a permanent error (those are added to
   * the addon's error counter). Stops early on EAGAIN, so `returned < count` means the queue is full.
   *
   * `udpRuns` (for a TAP with a virtio-net header, every frame starting with its 12-byte header):
   * consecutive UDP/IPv4 datagrams of one flow -- same headers but for consecutive IPv4 IDs, equal
   * payload sizes but the last, checksums known good -- go as one USO write (gso_type UDP_L4) that
   * the kernel cuts back into the same datagrams after its IP input: one write and one pass through
   * the receiving stack's IP layer per run instead of per datagram (stats().tapUdpGsoWrites).
   */
  writeBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lens: Uint32Array,
             start: number, count: number, udpRuns?: boolean): number;
  /** Open a non-blocking UDP socket bound to `addr` (IPv4, host-order u32; 0 = any) and `port`. */
  openUdp(addr: number, port: number): number;
  /**
   * Open a send-only raw IPv4 socket (IPPROTO_RAW, so IP_HDRINCL): the caller writes the outer IPv4
   * and UDP headers itself, which lets every VXLAN datagram carry its own flow-hash source port.
   * The kernel fills the IPv4 checksum and ID (when 0) and routes it like any locally sent packet.
   */
  openRawIp(): number;
  /**
   * recvmmsg(2) up to `maxFrames` datagrams into the slab (same slot layout as readBatch); the
   * sender's IPv4 address (host-order u32) and UDP port go to srcAddrs[i] / srcPorts[i].
   */
  recvBatch(fd: number, buf: Uint8Array, firstSlot: number, slotSize: number, headroom: number,
            maxFrames: number, lens: Int32Array, srcAddrs: Uint32Array, srcPorts: Uint16Array): number;
  /**
   * sendmmsg(2) `count` datagrams, datagram i being `buf[offsets[start+i] .. + lens[start+i]]` sent
   * to dstAddrs[start+i]:dstPorts[start+i]. Returns how many were consumed (as writeBatch).
   */
  sendBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lens: Uint32Array,
            dstAddrs: Uint32Array, dstPorts: Uint16Array, start: number, count: number): number;
  /**
   * Watch `fd` for readability on the libuv loop; `onReadable` runs (level-triggered) until stop().
   * If libuv reports an error on the fd (the device vanished), polling ends and the callback gets
   * that Error as its one argument; the owner should then stop() the watcher.
   */
  FdWatcher: new (fd: number, onReadable: (err?: Error) => void) => { start(): void; stop(): void };
  /** Counters kept by the addon (frames that failed with a permanent write error, etc.). */
  stats(): { writeErrors: number; sendErrors: number } & OffloadStats;

  // -------------------------------------------------------------------------------------------
  // Offload: super-frames end to end (native/offload.h has the byte-level story).
  //
  //   pod TAP (vnetHdr, setOffload CSUM|TSO4|TSO6) --readBatch--> [vnet 12][frame up to 64 KiB]
  //     --pipeline--> sendVxlanBatch: cut into MSS packets, VXLAN-wrap, one UDP_SEGMENT send
  //   underlay
  //   recvVxlanBatch (UDP_GRO): split GRO buffers, merge same-flow TCP segments back into
  //     [VXLAN 8][vnet 12 (TCPV4, NEEDS_CSUM)][frame] --pipeline--> writeBatch to the pod TAP
  //
  // The JS pipeline sees one frame per 64 KiB of TCP instead of ~45, and the checksum work (about
  // 2.5 us per 64 KiB in C, ten times that in JS) stays native.
  // -------------------------------------------------------------------------------------------

  /**
   * ioctl(TUNSETOFFLOAD) on a TAP opened with `vnetHdr`: the offloads (OFFLOAD bits) the reader
   * accepts. Returns 0 or the errno (never throws for an OS error): the kernel answers EINVAL for a
   * combination it does not support (TSO bits need CSUM; unknown bits), so probe from the richest
   * set down, e.g. CSUM|TSO4|TSO6|USO4|USO6, then CSUM|TSO4|TSO6, then CSUM, then 0.
   * With TSO enabled, frames read from the TAP may be super-frames (vnet gso_type TCPV4/TCPV6) and
   * frames written to it may be too.
   */
  setOffload(fd: number, flags: number): number;
  /** MTU of interface `name` in the calling thread's network namespace (SIOCGIFMTU); throws ENODEV. */
  getIfMtu(name: string): number;
  /**
   * setsockopt(UDP_GRO) on a UDP socket, so that the kernel may queue several same-sized datagrams
   * of one sender as one buffer. recvVxlanBatch turns it on by itself; this says whether it worked.
   */
  enableUdpGro(fd: number): boolean;
  /**
   * Open `count` (1..1024) non-blocking UDP sockets bound to `addr` (host-order IPv4, 0 = any) and
   * ports basePort .. basePort+count-1 (basePort 0: kernel-chosen), 4 MiB send buffers, for
   * sendVxlanBatch. Several sockets give outer source-port entropy: routers (ECMP) and the
   * receiving NIC (RSS) spread load by the outer 4-tuple, so each inner flow keeps one socket,
   * chosen by its hash. Send-only by convention: the VXLAN receive socket (port 4789) stays a
   * separate openUdp socket. Also probes UDP_SEGMENT (see stats().udpSegment). Close with closeFd.
   */
  openUdpSender(addr: number, basePort: number, count: number): Int32Array;
  /**
   * Send entries i in [start, start+count): `buf[offsets[i] .. + lens[i]]` is
   * `[virtio_net_hdr_v1 12 bytes][inner Ethernet frame]` (inner headers already rewritten by the
   * pipeline), sent to `dstAddrs[i]:dstPort` from socket `fds[hashes[i] % fds.length]`, each
   * datagram being `[VXLAN header: I flag, vni][inner packet]`:
   *  - gso_type TCPV4 / TCPV6 / UDP_L4: segmented into gso_size pieces with their own IP length,
   *    IPv4 ID (first + i), TCP sequence number (+ i*gso_size), flags (FIN/PSH on the last only,
   *    CWR on the first only) and full checksums; sent by one sendmsg with UDP_SEGMENT per <= 64
   *    segments. Without UDP_SEGMENT (stats().udpSegment false; remembered) they go by sendmmsg one
   *    by one, and so do segments too big for the route's MTU (then as IP fragments; not
   *    remembered: keep the pods' MTU at the underlay's minus 50 so that this never happens).
   *  - gso_type NONE: one datagram; with NEEDS_CSUM the checksum at csum_start + csum_offset is
   *    completed on the way out. Consecutive ones for the same socket share one sendmmsg.
   *  - malformed entries, other gso types, offsets outside `buf`: counted in stats().sendErrors.
   * `buf` is never written. Returns how many entries were consumed (sent or counted as errors);
   * fewer than `count` means the socket buffer is full (EAGAIN). A super-frame of which only some
   * pieces went out before EAGAIN is NOT consumed: sending it again duplicates those pieces, which
   * TCP ignores (a hole would cost it a retransmission).
   * With `tunnelFd` (a TAP from openTunnelTap; -1 or absent: none), `srcAddr` (this node's underlay address) and
   * `tapMac` (that TAP's MAC), TCPV4 super-frames with NEEDS_CSUM are not segmented here: each is
   * written whole to the TAP as one VXLAN packet with a UDP-tunnel GSO header, and the kernel
   * routes it to the underlay and segments it only where it must (stats().vxlanTunnelSends). If
   * the kernel refuses such a write, the path is given up (stats().udpTunnelGso false) and the
   * frame segmented here.
   */
  sendVxlanBatch(fds: Int32Array, buf: Uint8Array, offsets: Uint32Array, lens: Uint32Array,
                 dstAddrs: Uint32Array, hashes: Uint32Array, start: number, count: number,
                 vni: number, dstPort: number, tunnelFd?: number, srcAddr?: number, tapMac?: Uint8Array): number;
  /**
   * Receive VXLAN datagrams (recvmmsg, UDP_GRO enabled on first use) and hand them out one inner
   * frame per slot, laid out as
   *
   *   buf[(firstSlot+i)*slotSize + headroom]: [VXLAN header 8][virtio_net_hdr_v1 12][inner frame]
   *
   * with lens[i] = 8 + 12 + frame length (-1: dropped: longer than the slot, truncated, or too short
   * for VXLAN + Ethernet) and srcAddrs[i] = the underlay sender (host-order IPv4).
   * Consecutive IPv4/TCP segments of one flow from one sender (same VXLAN header, MACs, addresses,
   * ports, TOS, TTL, header and option bytes; contiguous sequence numbers; ACK, no SYN/FIN/RST/URG;
   * all but the last exactly as long as the first; DF, no IP options; valid IPv4 and TCP
   * checksums) are merged into one super-frame, as Linux GRO does: IPv4 total length and header
   * checksum updated, ACK number and window of the last segment, PSH if the last had it (a PSH or
   * short segment ends the merge), and vnet header
   * `{flags NEEDS_CSUM, gso_type TCPV4, hdr_len, gso_size = first payload, csum_start = 14+20,
   * csum_offset 16}` with the TCP checksum field holding the pseudo-header sum (not complemented)
   * -- ready for writeBatch to a TAP with TSO4 enabled. A frame stops growing when the slot or
   * the 64 KiB IPv4 limit is reached. Other frames get a vnet header with DATA_VALID (an IPv4/TCP
   * segment whose checksums were verified) or all zero (everything else, including a TCP segment
   * with a bad checksum, which never merges).
   * With `innerMtu` (the pods' MTU), a datagram that carries one whole IPv4/TCP packet longer
   * than innerMtu (sent by a tunnel-GSO sender: see sendVxlanBatch's tunnelFd) is handed out as a
   * super-frame too, with gso_size = innerMtu minus its IPv4 and TCP headers, as GRO would record.
   *
   * Returns the slots used. One GRO buffer may hold more datagrams than the slots offered; the rest
   * wait inside the addon for the next call on this fd, where the fd no longer looks readable:
   * when a call returns maxFrames, call again before waiting for readability.
   */
  recvVxlanBatch(fd: number, buf: Uint8Array, firstSlot: number, slotSize: number, headroom: number,
                 maxFrames: number, lens: Int32Array, srcAddrs: Uint32Array, innerMtu?: number): number;
}

/** Counters of the offload paths, in stats() (process-wide, since the addon was loaded). */
export interface OffloadStats {
  /** Segments cut from super-frames by sendVxlanBatch and sent. */
  vxlanSegments: number;
  /** sendmsg calls with UDP_SEGMENT that succeeded (each carrying up to 64 segments). */
  vxlanGsoSends: number;
  /** writeBatch(…, udpRuns): USO writes to TAPs, and the UDP datagrams they carried. */
  tapUdpGsoWrites: number;
  tapUdpGsoDatagrams: number;
  /** false once a TAP has refused a USO write (runs then go frame by frame). */
  tapUdpGso: boolean;
  /**
   * Runs of equal-size single datagrams (small frames) for one destination sent as one
   * UDP_SEGMENT message, and the datagrams in them: the kernel carries a run as one skb.
   */
  vxlanPlainGsoSends: number;
  vxlanPlainGsoDatagrams: number;
  /** Super-frames written whole to the tunnel TAP, and whole inner super-packets received. */
  vxlanTunnelSends: number;
  vxlanTunnelReceived: number;
  /** false once the kernel has refused a tunnel write (super-frames are then segmented here). */
  udpTunnelGso: boolean;
  /** Super-frames built by recvVxlanBatch, and the received segments merged into them. */
  vxlanSuperFrames: number;
  vxlanCoalesced: number;
  /** Received inner IPv4/TCP segments whose IPv4 or TCP checksum was wrong (passed on, unmerged). */
  vxlanCsumErrors: number;
  /** false once the kernel has shown it cannot do UDP_SEGMENT (sends then go one by one). */
  udpSegment: boolean;
}

/**
 * TUNSETOFFLOAD flags (<linux/if_tun.h>; the machine's header may predate the newer ones).
 * TSO and USO bits are accepted only together with CSUM; UDP_TUNNEL_GSO (Linux 6.17+) only with
 * some plain GSO bit, on a TAP whose vnet header is the 24-byte virtio_net_hdr_v1_hash_tunnel
 * (openTunnelTap).
 */
export const OFFLOAD = {
  CSUM: 0x01,
  TSO4: 0x02,
  TSO6: 0x04,
  TSO_ECN: 0x08,
  UFO: 0x10,
  USO4: 0x20,
  USO6: 0x40,
  UDP_TUNNEL_GSO: 0x80,
  UDP_TUNNEL_GSO_CSUM: 0x100,
} as const;

/**
 * A write-only TAP for the UDP-tunnel GSO path (sendVxlanBatch's tunnelFd): 24-byte tunnel
 * virtio-net headers and TUN_F_UDP_TUNNEL_GSO, which kernels before 6.17 refuse; then this throws
 * (code EINVAL) and the TAP is gone again.
 */
export function openTunnelTap(addon: Addon, name: string): TapHandle {
  const tap = addon.openTap(name, true, 24);
  const err = addon.setOffload(tap.fd, OFFLOAD.CSUM | OFFLOAD.TSO4 | OFFLOAD.TSO6 | OFFLOAD.UDP_TUNNEL_GSO);
  if (err !== 0) {
    addon.closeFd(tap.fd);
    const code = getSystemErrorName(-err);
    throw Object.assign(new Error(`openTunnelTap(${name}): ${code} from TUNSETOFFLOAD UDP_TUNNEL_GSO (Linux 6.17+ has it)`), { code });
  }
  return tap;
}

/** virtio_net_hdr_v1 field values (<linux/virtio_net.h>). Its 16-bit fields are little-endian. */
export const VNET = {
  F_NEEDS_CSUM: 1,
  F_DATA_VALID: 2,
  GSO_NONE: 0,
  GSO_TCPV4: 1,
  GSO_UDP: 3,
  GSO_TCPV6: 4,
  GSO_UDP_L4: 5,
  GSO_ECN: 0x80,
} as const;

const require = createRequire(import.meta.url);
let cached: Addon | undefined;

/** Load the compiled addon (built by `npm ci` through node-gyp into build/Release). */
export function loadAddon(): Addon {
  cached ??= require('../../build/Release/podwire_native.node') as Addon;
  return cached;
}
