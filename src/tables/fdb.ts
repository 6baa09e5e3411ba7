/**
 * The bridge's forwarding database (FDB): which port a MAC address was last seen on.
 *
 * This is the table of an IEEE 802.1D learning bridge, the same one the Linux bridge and Open
 * vSwitch's NORMAL action keep:
 *   - learning: every accepted frame teaches "source MAC lives behind the input port";
 *   - forwarding: a unicast destination found here goes out that one port; a miss floods;
 *   - aging: an entry not refreshed for `ageLimitMs` (300 s by default, as 802.1D recommends and
 *     Linux's bridge `ageing_time` defaults to) no longer counts and is swept away.
 *
 * Layout: open addressing with linear probing over typed arrays; the key is the MAC split into
 * its high 16 bits and low 32 bits, so a lookup never builds a string. Capacity is fixed; when
 * the table is full, learning stops (existing entries keep working, new MACs flood) and the
 * `learnFailures` counter says so.
 */
export const FDB_DEFAULT_AGE_MS = 300_000;

export class Fdb {
  readonly capacity: number;
  private readonly mask: number;
  private readonly keyHi: Uint16Array;
  private readonly keyLo: Uint32Array;
  private readonly port: Int32Array;
  private readonly lastSeenMs: Float64Array;
  private readonly used: Uint8Array;
  private count = 0;
  ageLimitMs: number;
  learnFailures = 0;

  constructor(capacity = 4096, ageLimitMs = FDB_DEFAULT_AGE_MS) {
    let cap = 16;
    while (cap < capacity * 2) cap <<= 1;
    this.capacity = cap;
    this.mask = cap - 1;
    this.keyHi = new Uint16Array(cap);
    this.keyLo = new Uint32Array(cap);
    this.port = new Int32Array(cap);
    this.lastSeenMs = new Float64Array(cap);
    this.used = new Uint8Array(cap);
    this.ageLimitMs = ageLimitMs;
  }

  get size(): number { return this.count; }

  private home(hi: number, lo: number): number {
    return (Math.imul(lo ^ (lo >>> 15) ^ (hi << 7), 0x2c1b3c6d) >>> 0) & this.mask;
  }

  /** Record that MAC (hi, lo) was seen on `port` at time `nowMs`. Hot path: no allocation. */
  learn(hi: number, lo: number, port: number, nowMs: number): void {
    let i = this.home(hi, lo);
    while (this.used[i] !== 0) {
      if (this.keyLo[i] === lo && this.keyHi[i] === hi) {
        this.port[i] = port; this.lastSeenMs[i] = nowMs; return;
      }
      i = (i + 1) & this.mask;
    }
    if ((this.count + 1) * 4 > this.capacity * 3) { this.learnFailures++; return; }
    this.used[i] = 1; this.keyHi[i] = hi; this.keyLo[i] = lo >>> 0;
    this.port[i] = port; this.lastSeenMs[i] = nowMs; this.count++;
  }

  /** Port for MAC (hi, lo), or -1 when unknown or aged out. Hot path: no allocation. */
  lookup(hi: number, lo: number, nowMs: number): number {
    lo >>>= 0;
    let i = this.home(hi, lo);
    while (this.used[i] !== 0) {
      if (this.keyLo[i] === lo && this.keyHi[i] === hi) {
        return nowMs - this.lastSeenMs[i] > this.ageLimitMs ? -1 : this.port[i];
      }
      i = (i + 1) & this.mask;
    }
    return -1;
  }

  /** Forget every MAC learned on `port` (the port was detached). Returns how many. */
  flushPort(port: number): number {
    let n = 0;
    for (let again = true; again;) {
      again = false;
      for (let i = 0; i < this.capacity; i++) {
        if (this.used[i] !== 0 && this.port[i] === port) { this.removeAt(i); n++; again = true; break; }
      }
    }
    return n;
  }

  /** Remove entries older than the age limit. Control path (a timer); returns how many. */
  sweep(nowMs: number): number {
    let n = 0;
    for (let i = 0; i < this.capacity; i++) {
      while (this.used[i] !== 0 && nowMs - this.lastSeenMs[i] > this.ageLimitMs) { this.removeAt(i); n++; }
    }
    return n;
  }

  /** Backward-shift deletion: keeps every probe run contiguous, so no tombstones are needed. */
  private removeAt(i: number): void {
    this.used[i] = 0; this.count--;
    let j = i;
    for (;;) {
      j = (j + 1) & this.mask;
      if (this.used[j] === 0) return;
      const h = this.home(this.keyHi[j], this.keyLo[j]);
      const inRange = i <= j ? (h > i && h <= j) : (h > i || h <= j);
      if (!inRange) {
        this.keyHi[i] = this.keyHi[j]; this.keyLo[i] = this.keyLo[j]; this.port[i] = this.port[j];
        this.lastSeenMs[i] = this.lastSeenMs[j]; this.used[i] = 1; this.used[j] = 0; i = j;
      }
    }
  }

  /** Snapshot for `podwire show fdb` and tests (control path). */
  entries(nowMs: number): { hi: number; lo: number; port: number; ageMs: number }[] {
    const out = [];
    for (let i = 0; i < this.capacity; i++) {
      if (this.used[i] !== 0) out.push({ hi: this.keyHi[i], lo: this.keyLo[i], port: this.port[i], ageMs: nowMs - this.lastSeenMs[i] });
    }
    return out;
  }
}
