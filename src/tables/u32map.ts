/**
 * U32Map: an open-addressing hash table from u32 keys to i32 values, in typed arrays.
 *
 * The data plane looks things up by number (an IPv4 address, a masked prefix, a node's underlay
 * address). A JS `Map` would box keys above 2^30 into heap numbers on every call, which allocates
 * per packet; this table keeps keys and values in typed arrays and never allocates on lookup.
 *
 * Rules:
 *   - capacity is a power of two, fixed at construction, and the table refuses to fill past 3/4
 *     (set() returns false), so probe sequences stay short;
 *   - linear probing; deletion uses backward-shift (no tombstones), so lookups never degrade;
 *   - `get` returns `missing` (default -1) for an absent key.
 * Written only by the control plane; read by the hot path.
 */
export class U32Map {
  readonly capacity: number;
  private readonly mask: number;
  private readonly keys: Uint32Array;
  private readonly values: Int32Array;
  private readonly used: Uint8Array;
  private count = 0;
  private readonly missing: number;

  constructor(capacity: number, missing = -1) {
    let cap = 16;
    while (cap < capacity * 2) cap <<= 1;
    this.capacity = cap;
    this.mask = cap - 1;
    this.keys = new Uint32Array(cap);
    this.values = new Int32Array(cap);
    this.used = new Uint8Array(cap);
    this.missing = missing;
  }

  /** Number of keys stored. */
  get size(): number { return this.count; }

  /** The slot where a probe for `key` starts (a multiplicative hash of the key). */
  private home(key: number): number {
    return (Math.imul(key ^ (key >>> 16), 0x45d9f3b) >>> 0) & this.mask;
  }

  /** Value stored for `key`, or the `missing` value. */
  get(key: number): number {
    key >>>= 0;
    let i = this.home(key);
    while (this.used[i] !== 0) {
      if (this.keys[i] === key) return this.values[i];
      i = (i + 1) & this.mask;
    }
    return this.missing;
  }

  /** True when `key` is present. */
  has(key: number): boolean { return this.find(key) >= 0; }

  private find(key: number): number {
    key >>>= 0;
    let i = this.home(key);
    while (this.used[i] !== 0) {
      if (this.keys[i] === key) return i;
      i = (i + 1) & this.mask;
    }
    return -1;
  }

  /** Insert or replace. Returns false (and changes nothing) when the table is at its load limit. */
  set(key: number, value: number): boolean {
    key >>>= 0;
    let i = this.home(key);
    while (this.used[i] !== 0) {
      if (this.keys[i] === key) { this.values[i] = value; return true; }
      i = (i + 1) & this.mask;
    }
    if ((this.count + 1) * 4 > this.capacity * 3) return false;
    this.used[i] = 1; this.keys[i] = key; this.values[i] = value; this.count++;
    return true;
  }

  /** Remove `key` if present, shifting later entries of the probe run back (no tombstones). */
  delete(key: number): boolean {
    let i = this.find(key);
    if (i < 0) return false;
    this.used[i] = 0; this.count--;
    let j = i;
    for (;;) {
      j = (j + 1) & this.mask;
      if (this.used[j] === 0) return true;
      const h = this.home(this.keys[j]);
      // Move entry j into the hole at i if its home slot is not cyclically in (i, j].
      const inRange = i <= j ? (h > i && h <= j) : (h > i || h <= j);
      if (!inRange) {
        this.keys[i] = this.keys[j]; this.values[i] = this.values[j]; this.used[i] = 1;
        this.used[j] = 0; i = j;
      }
    }
  }

  /** Visit every entry (control path only). */
  forEach(fn: (key: number, value: number) => void): void {
    for (let i = 0; i < this.capacity; i++) if (this.used[i] !== 0) fn(this.keys[i], this.values[i]);
  }

  clear(): void { this.used.fill(0); this.count = 0; }
}
