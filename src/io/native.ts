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

export interface TapHandle {
  /** The file descriptor the daemon keeps for the life of the pod. */
  fd: number;
  /** The kernel's name for the device (as created; may be renamed later inside the pod). */
  name: string;
  /** Whether each frame carries a 10/12-byte struct virtio_net_hdr in front of it. */
  vnetHdr: boolean;
}

export interface Addon {
  /** Open (create) a TAP device named `name` in the calling process's network namespace. */
  openTap(name: string, vnetHdr: boolean): TapHandle;
  /** Close an fd opened by this addon. Closing a non-persistent TAP's fd deletes the device. */
  closeFd(fd: number): void;
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
   */
  writeBatch(fd: number, buf: Uint8Array, offsets: Uint32Array, lens: Uint32Array,
             start: number, count: number): number;
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
  stats(): { writeErrors: number; sendErrors: number };
}

const require = createRequire(import.meta.url);
let cached: Addon | undefined;

/** Load the compiled addon (built by `npm ci` through node-gyp into build/Release). */
export function loadAddon(): Addon {
  cached ??= require('../../build/Release/podwire_native.node') as Addon;
  return cached;
}
