/**
 * Packet capture to a file in the classic libpcap format, cheap enough to call from the hot path.
 *
 * Format (the one every tool reads; see pcap-savefile(5) and draft-ietf-opsawg-pcap): a 24-byte
 * global header (magic 0xa1b2c3d4, version 2.4, thiszone 0, sigfigs 0, snaplen, link type), then per
 * packet a 16-byte record header (ts_sec, ts_usec, incl_len, orig_len) and incl_len bytes. Every
 * field is written little-endian, the writer's native order; readers recognise the order from how
 * the magic reads back (d4 c3 b2 a1 on disk). Timestamps are microseconds. Packets longer than the
 * snaplen (262144, tcpdump's default) are cut to it, with orig_len keeping the true length.
 *
 * Link types: LINKTYPE_ETHERNET (1) for frames as pods and the host see them, LINKTYPE_IPV4 (228,
 * a bare IPv4 header first) for the underlay, where the UDP socket hands us VXLAN payloads without
 * their IP/UDP headers: `writeSyntheticUdpIpv4` puts plausible ones back in front so Wireshark
 * decodes the datagram as VXLAN (UDP 4789) and the Ethernet frame inside it.
 *
 * Hot-path discipline. `write` copies the record header and the bytes into one of two preallocated
 * buffers (1 MiB each by default) and returns; it never blocks, never throws, never allocates (the
 * default timestamp is read once per event-loop turn, i.e. once per batch, not per packet). The
 * file is written asynchronously through an fs.promises FileHandle, one write at a time: when the
 * active buffer cannot take the next record, it is handed to the file and the other buffer becomes
 * active. If the other one is still being written (the disk is slower than the traffic), the packet
 * is dropped and counted in `dropped` instead. A timer (unref'd, every `flushIntervalMs`) also
 * hands over a partly filled buffer when no write is in flight, so a quiet capture still reaches the
 * disk promptly; `flush()` and `close()` write everything out.
 *
 * Limits: `maxPackets` and `maxBytes` (the file size, headers included) end the capture: `write`
 * returns false for the first packet that does not fit and for every one after it (and after
 * close() or an I/O error), so the caller can stop capturing. A back-pressure drop returns true: the
 * capture goes on. Open and write errors surface as rejections of flush()/close() and in `error`.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { internetChecksum } from '../wire/checksum.ts';

/** DLT_EN10MB: IEEE 802.3 Ethernet. */
export const LINKTYPE_ETHERNET = 1;
/** Raw IPv4: the packet begins with an IPv4 header. */
export const LINKTYPE_IPV4 = 228;

export const PCAP_MAGIC = 0xa1b2c3d4;
export const PCAP_SNAPLEN = 262144;
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
export const PCAP_DEFAULT_BUFFER_BYTES = 1 << 20;

export interface PcapWriterOptions {
  /** Stop after this many packets (default: no limit). */
  maxPackets?: number;
  /** Stop before the file would exceed this many bytes, headers included (default: no limit). */
  maxBytes?: number;
  /** Size of each of the two buffers (default 1 MiB; at least one record header + 64 bytes). */
  bufferBytes?: number;
  /** Hand a partly filled buffer to the file this often, in ms (default 1000; 0: only when full). */
  flushIntervalMs?: number;
}

/** Wall-clock milliseconds with sub-millisecond precision, without allocating. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

export class PcapWriter {
  readonly path: string;
  readonly linkType: number;
  private nPackets = 0;
  private nDropped = 0;
  private nBytes = 0;
  private err: Error | null = null;

  private readonly maxPackets: number;
  private readonly maxBytes: number;
  private readonly bufs: [Uint8Array, Uint8Array];
  private readonly dvs: [DataView, DataView];
  private active = 0;
  private used = 0;
  private limited = false;
  private closed = false;
  private fh: FileHandle | null = null;
  private readonly opening: Promise<void>;
  private inflight: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Source view cache for the word-at-a-time copy (the slab is nearly always the same buffer). */
  private srcBuffer: ArrayBufferLike | null = null;
  private srcView: DataView = new DataView(new ArrayBuffer(0));
  /** The default timestamp: read once per event-loop turn (reading a clock allocates and costs ~100 ns). */
  private clockMs = 0;
  private clockFresh = false;
  private readonly expireClock = (): void => { this.clockFresh = false; };

  constructor(path: string, linkType: number, opts: PcapWriterOptions = {}) {
    this.path = path;
    this.linkType = linkType >>> 0;
    this.maxPackets = opts.maxPackets ?? Infinity;
    this.maxBytes = opts.maxBytes ?? Infinity;
    const size = opts.bufferBytes ?? PCAP_DEFAULT_BUFFER_BYTES;
    if (!Number.isInteger(size) || size < PCAP_GLOBAL_HEADER_LEN + PCAP_RECORD_HEADER_LEN + 64) {
      throw new RangeError(`pcap buffer size must be an integer of at least 104 bytes, got ${size}`);
    }
    const a = new Uint8Array(size), b = new Uint8Array(size);
    this.bufs = [a, b];
    this.dvs = [new DataView(a.buffer), new DataView(b.buffer)];

    // The global header goes out with the first buffer.
    const dv = this.dvs[0];
    dv.setUint32(0, PCAP_MAGIC, true);
    dv.setUint16(4, 2, true);              // version major
    dv.setUint16(6, 4, true);              // version minor
    dv.setInt32(8, 0, true);               // thiszone: timestamps are UTC
    dv.setUint32(12, 0, true);             // sigfigs
    dv.setUint32(16, PCAP_SNAPLEN, true);
    dv.setUint32(20, this.linkType, true);
    this.used = PCAP_GLOBAL_HEADER_LEN;
    this.nBytes = PCAP_GLOBAL_HEADER_LEN;
    if (this.nBytes > this.maxBytes || this.maxPackets <= 0) this.limited = true;

    this.opening = open(path, 'w').then(
      (fh) => { this.fh = fh; },
      (e: Error) => { this.fail(e); },
    );
    const every = opts.flushIntervalMs ?? 1000;
    if (every > 0) {
      this.timer = setInterval(() => this.kick(), every);
      this.timer.unref();
    }
  }

  /** Packets accepted into the capture. */
  get packets(): number { return this.nPackets; }
  /** Packets lost because both buffers were busy (the file write could not keep up), or out of bounds. */
  get dropped(): number { return this.nDropped; }
  /** Bytes accepted into the file so far, global header included. */
  get bytes(): number { return this.nBytes; }
  /** The first I/O error (open or write); the capture stops when it is set. */
  get error(): Error | null { return this.err; }

  /** True once maxPackets/maxBytes is reached, after close() or after an I/O error. */
  get done(): boolean {
    return this.limited || this.closed || this.err !== null;
  }

  /**
   * Record `u8[off .. off+len)` with timestamp `tsMs` (Unix ms, fractions kept to the microsecond).
   * Without `tsMs`, the clock is read at the first write of each event-loop turn and shared by the
   * rest of that turn (one batch: its frames were read by one system call anyway). On the hot path
   * prefer that: a caller passing a non-Smi number (any current Unix time in ms) makes V8 box it
   * per call unless the call is inlined.
   *
   * Returns false once the capture is over (limit reached, closed, failed): this packet was not
   * recorded and no later one will be. Returns true otherwise, including when the packet had to be
   * dropped because the file write is behind or the range was out of bounds (see `dropped`).
   */
  write(u8: Uint8Array, off: number, len: number, tsMs?: number): boolean {
    if (this.limited || this.closed || this.err !== null) return false;
    if (!(len >= 0 && off >= 0 && off + len <= u8.length)) { this.nDropped++; return true; }   // a caller bug: never throw here
    const incl = len < PCAP_SNAPLEN ? len : PCAP_SNAPLEN;
    const rec = PCAP_RECORD_HEADER_LEN + incl;
    if (this.nPackets >= this.maxPackets || this.nBytes + rec > this.maxBytes) {
      this.limited = true;
      return false;
    }
    let buf = this.bufs[this.active];
    if (this.used + rec > buf.length) {
      if (rec > buf.length || this.inflight !== null || this.fh === null) { this.nDropped++; return true; }
      this.kick();
      buf = this.bufs[this.active];
    }
    let t: number;
    if (tsMs !== undefined) t = tsMs;
    else {
      if (!this.clockFresh) { this.clockMs = nowMs(); this.clockFresh = true; setImmediate(this.expireClock); }
      t = this.clockMs;
    }
    let sec = Math.floor(t / 1000);
    let usec = Math.round((t - sec * 1000) * 1000);
    if (usec >= 1_000_000) { sec++; usec -= 1_000_000; }
    const dv = this.dvs[this.active], p = this.used;
    dv.setUint32(p, sec >>> 0, true);
    dv.setUint32(p + 4, usec, true);
    dv.setUint32(p + 8, incl, true);
    dv.setUint32(p + 12, len, true);
    this.copy(u8, off, buf, p + PCAP_RECORD_HEADER_LEN, incl);
    this.used = p + rec;
    this.nBytes += rec;
    this.nPackets++;
    return true;
  }

  /** Write everything recorded so far to the file (waits for any write in flight first). */
  async flush(): Promise<void> {
    await this.opening;
    for (;;) {
      if (this.err) throw this.err;
      if (this.inflight) { await this.inflight; continue; }
      if (this.used === 0 || this.fh === null) return;
      this.kick();
    }
  }

  /** Flush, close the file and stop the timer. Idempotent; later writes return false. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      if (this.timer) { clearInterval(this.timer); this.timer = null; }
      this.closing = (async () => {
        try {
          await this.flush();
        } finally {
          await this.opening;
          const fh = this.fh;
          this.fh = null;
          if (fh) await fh.close();
        }
      })();
    }
    return this.closing;
  }

  /** If nothing is being written and the active buffer holds data, hand it to the file and swap. */
  private kick(): void {
    if (this.inflight !== null || this.used === 0 || this.fh === null || this.err !== null) return;
    const buf = this.bufs[this.active], n = this.used;
    this.active ^= 1;
    this.used = 0;
    this.inflight = this.writeOut(this.fh, buf, n).then(() => { this.inflight = null; });
  }

  private async writeOut(fh: FileHandle, buf: Uint8Array, n: number): Promise<void> {
    try {
      let done = 0;
      while (done < n) {
        const { bytesWritten } = await fh.write(buf, done, n - done, null);
        if (bytesWritten <= 0) throw new Error('short write');
        done += bytesWritten;
      }
    } catch (e) {
      this.fail(e as Error);
    }
  }

  private fail(e: Error): void {
    if (this.err) return;
    this.err = new Error(`pcap ${this.path}: ${e.message}`, { cause: e });
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  /** Copy `len` bytes into `dst` at `dOff`, four at a time through DataViews: no subarray, no allocation. */
  private copy(src: Uint8Array, sOff: number, dst: Uint8Array, dOff: number, len: number): void {
    if (src.buffer !== this.srcBuffer) {
      this.srcBuffer = src.buffer;
      this.srcView = new DataView(src.buffer);
    }
    copyBytes(this.srcView, src.byteOffset + sOff, this.dvs[this.active], dst.byteOffset + dOff, len);
  }
}

/**
 * Forward copy of `len` bytes between DataViews (absolute offsets), 4 bytes per step. Safe for an
 * overlap only when the destination starts before the source. (A `subarray` + `set` would be faster
 * for long frames but allocates a view per call; this is ~4x faster than a byte loop and allocates
 * nothing.)
 */
function copyBytes(s: DataView, sOff: number, d: DataView, dOff: number, len: number): void {
  let i = 0;
  for (const end4 = len - 3; i < end4; i += 4) d.setUint32(dOff + i, s.getUint32(sOff + i, true), true);
  for (; i < len; i++) d.setUint8(dOff + i, s.getUint8(sOff + i));
}

// DataViews `writeSyntheticUdpIpv4` keeps over the last source and destination buffers it saw.
let helperSrcBuffer: ArrayBufferLike | null = null;
let helperSrcView: DataView = new DataView(new ArrayBuffer(0));
let helperDstBuffer: ArrayBufferLike | null = null;
let helperDstView: DataView = new DataView(new ArrayBuffer(0));

/** Backward copy (last bytes first): safe for an overlap where the destination starts after the source. */
function copyBytesBackward(s: DataView, sOff: number, d: DataView, dOff: number, len: number): void {
  let i = len;
  for (; i >= 4; i -= 4) d.setUint32(dOff + i - 4, s.getUint32(sOff + i - 4, true), true);
  for (; i > 0; i--) d.setUint8(dOff + i - 1, s.getUint8(sOff + i - 1));
}

/** Length of the IPv4 + UDP headers `writeSyntheticUdpIpv4` puts in front of the payload. */
export const SYNTHETIC_UDP_IPV4_HEADER_LEN = 28;

/**
 * Write at `dst[off]` an IPv4 header (no options, DF, TTL 64, ID 0, valid checksum) and a UDP header
 * (`sport` → `dport`, checksum 0 = none, as VXLAN senders usually do) followed by
 * `payload[pOff .. pOff+pLen)`. Addresses are host-order u32 (int32 accepted). Returns the datagram
 * length (28 + pLen), or 0 if it would not fit in `dst` or exceed 65535 bytes.
 *
 * The payload may already sit in place: when `payload` shares `dst`'s buffer and starts exactly 28
 * bytes after `off` (a received datagram with headroom in front of it), nothing is copied. Other
 * overlaps are handled as by memmove. Allocates nothing while `dst` and `payload` keep living in the
 * same buffers as on the previous call (it keeps a DataView over each, like wire/checksum.ts).
 */
export function writeSyntheticUdpIpv4(dst: Uint8Array, off: number, src: number, dstIp: number, sport: number, dport: number,
                                      payload: Uint8Array, pOff: number, pLen: number): number {
  const total = SYNTHETIC_UDP_IPV4_HEADER_LEN + pLen;
  if (pLen < 0 || off < 0 || total > 65535 || off + total > dst.length || pOff < 0 || pOff + pLen > payload.length) return 0;
  // Payload first, so that a source overlapping the header area is read before it is overwritten.
  const dAbs = dst.byteOffset + off + SYNTHETIC_UDP_IPV4_HEADER_LEN, sAbs = payload.byteOffset + pOff;
  if (payload.buffer !== helperSrcBuffer) { helperSrcBuffer = payload.buffer; helperSrcView = new DataView(payload.buffer); }
  if (payload.buffer !== dst.buffer) {
    if (dst.buffer !== helperDstBuffer) { helperDstBuffer = dst.buffer; helperDstView = new DataView(dst.buffer); }
    copyBytes(helperSrcView, sAbs, helperDstView, dAbs, pLen);
  } else if (dAbs < sAbs) {
    copyBytes(helperSrcView, sAbs, helperSrcView, dAbs, pLen);           // same buffer: forward is safe
  } else if (dAbs > sAbs) {
    copyBytesBackward(helperSrcView, sAbs, helperSrcView, dAbs, pLen);   // same buffer, moving up
  }
  const s = src >>> 0, d = dstIp >>> 0;
  let p = off;
  dst[p] = 0x45; dst[p + 1] = 0;
  dst[p + 2] = total >>> 8; dst[p + 3] = total & 0xff;
  dst[p + 4] = 0; dst[p + 5] = 0;               // identification
  dst[p + 6] = 0x40; dst[p + 7] = 0;            // DF, offset 0
  dst[p + 8] = 64; dst[p + 9] = 17;             // TTL, UDP
  dst[p + 10] = 0; dst[p + 11] = 0;
  dst[p + 12] = s >>> 24; dst[p + 13] = (s >>> 16) & 0xff; dst[p + 14] = (s >>> 8) & 0xff; dst[p + 15] = s & 0xff;
  dst[p + 16] = d >>> 24; dst[p + 17] = (d >>> 16) & 0xff; dst[p + 18] = (d >>> 8) & 0xff; dst[p + 19] = d & 0xff;
  const csum = internetChecksum(dst, p, 20);
  dst[p + 10] = csum >>> 8; dst[p + 11] = csum & 0xff;
  p += 20;
  const ulen = 8 + pLen;
  dst[p] = (sport >>> 8) & 0xff; dst[p + 1] = sport & 0xff;
  dst[p + 2] = (dport >>> 8) & 0xff; dst[p + 3] = dport & 0xff;
  dst[p + 4] = ulen >>> 8; dst[p + 5] = ulen & 0xff;
  dst[p + 6] = 0; dst[p + 7] = 0;
  return total;
}
