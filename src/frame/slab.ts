/**
 * The frame slab and the transmit queue: where packets live while the pipeline looks at them.
 *
 * One ArrayBuffer holds every frame of a batch. It is cut into equal slots:
 *
 *   slot k: [ headroom (64 B) | frame bytes (up to 64 KiB + virtio-net header) ]
 *            ^ room to prepend outer IPv4/UDP/VXLAN headers (36 B) without copying the frame
 *
 *   slots 0 .. BATCH_MAX-1            frames read from a device by one addon call
 *   slots BATCH_MAX .. 2*BATCH_MAX-1  frames the daemon writes itself (ARP and ICMP replies/errors)
 *
 * Slots are sized for a virtio_net_hdr plus a 64 KiB GSO super-frame from the start, so the offload
 * path (see the performance notes) needs no reshaping. Stages never copy a frame to forward it: they
 * rewrite headers in place and append (port, offset, length) to the TxQueue, which the daemon flushes
 * with one batched write per output port.
 */
export const BATCH_MAX = 64;
export const HEADROOM = 64;
export const SLOT_SIZE = HEADROOM + 12 + 65536 + 64;   // headroom + vnet hdr + 64 KiB + slack
export const GEN_FIRST_SLOT = BATCH_MAX;
/** struct virtio_net_hdr_v1 (flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers). */
export const VNET_HDR_LEN = 12;
export const VNET_F_NEEDS_CSUM = 1;
export const VNET_GSO_NONE = 0;

export class FrameSlab {
  readonly buffer: ArrayBuffer;
  readonly u8: Uint8Array;
  readonly dv: DataView;
  /** Lengths of received frames, by slot (filled by the addon). */
  readonly lens = new Int32Array(BATCH_MAX);
  /** Underlay sender of received datagrams, by slot (overlay port only). */
  readonly srcAddrs = new Uint32Array(BATCH_MAX);
  readonly srcPorts = new Uint16Array(BATCH_MAX);
  /** Next free slot for daemon-generated frames in this batch. */
  genNext = GEN_FIRST_SLOT;
  /**
   * In vnet mode every frame carries a 12-byte virtio_net_hdr right before it: generated frames get
   * an all-zero one (no offload requested).
   */
  vnet = false;

  constructor() {
    this.buffer = new ArrayBuffer(SLOT_SIZE * BATCH_MAX * 2);
    this.u8 = new Uint8Array(this.buffer);
    this.dv = new DataView(this.buffer);
  }

  /** Byte offset of the frame in slot `slot` (after the headroom). */
  frameOffset(slot: number): number { return slot * SLOT_SIZE + HEADROOM; }

  /** Claim a slot for a generated frame; returns its frame offset, or -1 when all are in use. */
  allocGenerated(): number {
    if (this.genNext >= BATCH_MAX * 2) return -1;
    const off = this.frameOffset(this.genNext++) + (this.vnet ? VNET_HDR_LEN : 0);
    if (this.vnet) this.u8.fill(0, off - VNET_HDR_LEN, off);
    return off;
  }

  /** Start a new batch: generated slots are free again. */
  reset(): void { this.genNext = GEN_FIRST_SLOT; }
}

/**
 * Frames to transmit, collected while a batch is processed and flushed once per batch.
 * `flushOrder` groups entries by port with a counting sort so each port gets one batched write.
 */
export class TxQueue {
  readonly capacity: number;
  readonly port: Int32Array;
  readonly off: Uint32Array;
  readonly len: Uint32Array;
  /** Overlay entries: the underlay destination (u32) of the datagram, and the inner flow's hash. */
  readonly dstAddr: Uint32Array;
  readonly hash: Uint32Array;
  readonly sortedHash: Uint32Array;
  count = 0;
  // Grouped view, filled by group().
  readonly sortedOff: Uint32Array;
  readonly sortedLen: Uint32Array;
  readonly sortedDst: Uint32Array;
  readonly sortedDstPort: Uint16Array;
  /** Ports with at least one entry, in first-seen order, and their [start, end) in the sorted arrays. */
  readonly touched: Int32Array;
  touchedCount = 0;
  readonly groupStart: Int32Array;
  readonly groupEnd: Int32Array;
  private readonly perPort: Int32Array;

  constructor(capacity = 8192, maxPorts = 1024) {
    this.capacity = capacity;
    this.port = new Int32Array(capacity);
    this.off = new Uint32Array(capacity);
    this.len = new Uint32Array(capacity);
    this.dstAddr = new Uint32Array(capacity);
    this.hash = new Uint32Array(capacity);
    this.sortedHash = new Uint32Array(capacity);
    this.sortedOff = new Uint32Array(capacity);
    this.sortedLen = new Uint32Array(capacity);
    this.sortedDst = new Uint32Array(capacity);
    this.sortedDstPort = new Uint16Array(capacity);
    this.touched = new Int32Array(maxPorts);
    this.groupStart = new Int32Array(maxPorts);
    this.groupEnd = new Int32Array(maxPorts);
    this.perPort = new Int32Array(maxPorts);
  }

  /** Queue one frame; false when full (the caller counts a tx_queue_full drop). */
  push(port: number, off: number, len: number, dstAddr = 0, hash = 0): boolean {
    const i = this.count;
    if (i >= this.capacity) return false;
    this.port[i] = port; this.off[i] = off; this.len[i] = len; this.dstAddr[i] = dstAddr; this.hash[i] = hash;
    this.count = i + 1;
    return true;
  }

  /** Group entries by port (stable counting sort); afterwards read touched/groupStart/groupEnd. */
  group(vxlanPort: number): void {
    const n = this.count, per = this.perPort;
    let t = 0;
    for (let i = 0; i < n; i++) {
      const p = this.port[i];
      if (per[p]++ === 0) this.touched[t++] = p;
    }
    this.touchedCount = t;
    let pos = 0;
    for (let k = 0; k < t; k++) {
      const p = this.touched[k];
      this.groupStart[p] = pos; this.groupEnd[p] = pos; pos += per[p]; per[p] = 0;
    }
    for (let i = 0; i < n; i++) {
      const p = this.port[i], j = this.groupEnd[p]++;
      this.sortedOff[j] = this.off[i]; this.sortedLen[j] = this.len[i];
      this.sortedDst[j] = this.dstAddr[i]; this.sortedDstPort[j] = vxlanPort; this.sortedHash[j] = this.hash[i];
    }
  }

  clear(): void { this.count = 0; this.touchedCount = 0; }
}
