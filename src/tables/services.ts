/**
 * The service table: what kube-proxy programs into iptables, as numeric tables the data plane reads.
 *
 * A Service port is a *frontend* (protocol, address, port) and a list of *backends* (endpoint
 * address, target port). Frontends are found with one hash probe, whatever the number of Services:
 *
 *   (TCP, 10.96.0.10, 80)      → service port 7        a ClusterIP (or an externalIP)
 *   (TCP, 0.0.0.0,   30080)    → service port 8        a NodePort: any of this node's addresses
 *
 * and each service port keeps, in typed arrays:
 *   - its backends (all ready endpoints, and the node-local subset for externalTrafficPolicy: Local),
 *   - its load-balancing algorithm: round-robin (a cursor per service port, the default here and
 *     what our users asked for), random (what iptables/nftables kube-proxy does), or Maglev
 *     consistent hashing (what Cilium and Google's Maglev do: a lookup table of prime size M filled
 *     from each backend's permutation, so that removing one backend moves few connections),
 *   - session affinity (ClientIP, with a timeout): (service port, client IP) → backend address,
 *   - a selection counter per backend, so users can compare the algorithms' fairness.
 *
 * The control plane rebuilds one service port's arrays and swaps them in with a single reference
 * assignment, so the data plane never sees half an update. Selection allocates nothing.
 */
export const LbAlgorithm = { RoundRobin: 0, Random: 1, Maglev: 2 } as const;
export const LB_NAMES = ['round-robin', 'random', 'maglev'] as const;
export const MAGLEV_M = 4093;   // prime; ≥ 100 × backends for up to 40 backends, as the Maglev paper advises

/** A backend set, replaced as a whole on every endpoint change. */
export interface BackendSet {
  ips: Uint32Array;
  ports: Uint16Array;
  /** Indexes (into ips) of backends on this node, for externalTrafficPolicy: Local. */
  local: Int32Array;
  /** Maglev lookup table (backend index per slot), when the algorithm is Maglev. */
  maglev?: Int32Array;
}

export interface ServicePortSpec {
  key: string;             // "namespace/name:portName-or-number/proto", for views and metrics
  proto: number;           // 6, 17, 132
  vip: number;             // ClusterIP (u32)
  port: number;
  nodePort: number;        // 0 = none
  externalIps: number[];
  algorithm: number;
  affinityMs: number;      // 0 = no session affinity
  externalLocal: boolean;  // externalTrafficPolicy: Local
}

const EMPTY: BackendSet = { ips: new Uint32Array(0), ports: new Uint16Array(0), local: new Int32Array(0) };

/** (addr, proto<<16|port) → int, open addressing with backward-shift deletion. */
class FrontendMap {
  private readonly mask: number;
  private readonly a: Uint32Array;
  private readonly pp: Uint32Array;
  private readonly v: Int32Array;
  private readonly used: Uint8Array;
  size = 0;
  readonly capacity: number;
  constructor(entries: number) {
    let cap = 16;
    while (cap < entries * 2) cap <<= 1;
    this.capacity = cap; this.mask = cap - 1;
    this.a = new Uint32Array(cap); this.pp = new Uint32Array(cap); this.v = new Int32Array(cap); this.used = new Uint8Array(cap);
  }
  private home(a: number, pp: number): number { return (Math.imul(a ^ Math.imul(pp, 0x9e3779b1), 0x85ebca6b) >>> 0) & this.mask; }
  get(a: number, pp: number): number {
    let i = this.home(a, pp);
    while (this.used[i] !== 0) {
      if (this.a[i] === a && this.pp[i] === pp) return this.v[i];
      i = (i + 1) & this.mask;
    }
    return -1;
  }
  set(a: number, pp: number, v: number): boolean {
    a >>>= 0;
    let i = this.home(a, pp);
    while (this.used[i] !== 0) {
      if (this.a[i] === a && this.pp[i] === pp) { this.v[i] = v; return true; }
      i = (i + 1) & this.mask;
    }
    if ((this.size + 1) * 4 > this.capacity * 3) return false;
    this.used[i] = 1; this.a[i] = a; this.pp[i] = pp; this.v[i] = v; this.size++;
    return true;
  }
  delete(a: number, pp: number): void {
    a >>>= 0;
    let i = this.home(a, pp);
    while (this.used[i] !== 0 && !(this.a[i] === a && this.pp[i] === pp)) i = (i + 1) & this.mask;
    if (this.used[i] === 0) return;
    this.used[i] = 0; this.size--;
    let j = i;
    for (;;) {
      j = (j + 1) & this.mask;
      if (this.used[j] === 0) return;
      const h = this.home(this.a[j], this.pp[j]);
      const inRange = i <= j ? (h > i && h <= j) : (h > i || h <= j);
      if (!inRange) {
        this.a[i] = this.a[j]; this.pp[i] = this.pp[j]; this.v[i] = this.v[j]; this.used[i] = 1; this.used[j] = 0; i = j;
      }
    }
  }
}

export class ServiceTable {
  readonly maxServicePorts: number;
  private readonly frontends: FrontendMap;
  readonly specs: (ServicePortSpec | undefined)[] = [];
  readonly backends: BackendSet[] = [];
  readonly algorithm: Uint8Array;
  readonly affinityMs: Float64Array;
  readonly externalLocal: Uint8Array;
  readonly rrCursor: Uint32Array;
  /** Selections per backend, by service port then backend index (swapped with the backend set). */
  readonly selections: Float64Array[] = [];
  /** Session affinity: (service port, client) → backend address and expiry. */
  private readonly affKeySp: Int32Array;
  private readonly affKeyIp: Uint32Array;
  private readonly affBackend: Uint32Array;
  private readonly affExpires: Float64Array;
  private readonly affMask: number;
  /** Set by frontend(): whether the match was a NodePort frontend. */
  lastWasNodePort = false;
  /** Set by select(): whether session affinity decided. */
  lastAffinityHit = false;
  /** While set (synthetic traces), select() records no affinity. */
  dryRun = false;

  constructor(maxServicePorts = 65536, affinitySlots = 1 << 16) {
    this.maxServicePorts = maxServicePorts;
    this.frontends = new FrontendMap(maxServicePorts * 2);
    this.algorithm = new Uint8Array(maxServicePorts);
    this.affinityMs = new Float64Array(maxServicePorts);
    this.externalLocal = new Uint8Array(maxServicePorts);
    this.rrCursor = new Uint32Array(maxServicePorts);
    this.affKeySp = new Int32Array(affinitySlots).fill(-1);
    this.affKeyIp = new Uint32Array(affinitySlots);
    this.affBackend = new Uint32Array(affinitySlots);
    this.affExpires = new Float64Array(affinitySlots);
    this.affMask = affinitySlots - 1;
  }

  /** Number of service ports installed. */
  get size(): number { return this.specs.filter((s) => s !== undefined).length; }

  /**
   * The service port for a packet to (proto, dst, dport), or -1. `dstIsNode` says dst is one of
   * this node's own addresses, which is where NodePorts listen. Hot path: one or two probes.
   */
  frontend(proto: number, dst: number, dport: number, dstIsNode: boolean): number {
    const pp = (proto << 16) | dport;
    const sp = this.frontends.get(dst, pp);
    if (sp >= 0) { this.lastWasNodePort = false; return sp; }
    if (dstIsNode) {
      const np = this.frontends.get(0, pp);
      if (np >= 0) { this.lastWasNodePort = true; return np; }
    }
    return -1;
  }

  /**
   * Choose a backend for a new connection: returns the backend index into backends[sp], or -1 when
   * there is none. `localOnly` restricts to node-local backends (externalTrafficPolicy: Local).
   */
  select(sp: number, client: number, clientPort: number, flowHash: number, nowMs: number, localOnly: boolean): number {
    const set = this.backends[sp];
    const n = localOnly ? set.local.length : set.ips.length;
    if (n === 0) return -1;
    const aff = this.affinityMs[sp];
    let slot = -1;
    this.lastAffinityHit = false;
    if (aff > 0) {
      slot = (Math.imul(client ^ Math.imul(sp, 0x27d4eb2d), 0x9e3779b1) >>> 0) & this.affMask;
      if (this.affKeySp[slot] === sp && this.affKeyIp[slot] === client && this.affExpires[slot] > nowMs) {
        const ip = this.affBackend[slot];
        for (let k = 0; k < set.ips.length; k++) {
          if (set.ips[k] === ip && (!localOnly || this.isLocal(set, k))) {
            if (!this.dryRun) this.affExpires[slot] = nowMs + aff;
            this.lastAffinityHit = true;
            this.selections[sp][k]++;
            return k;
          }
        }
      }
    }
    let pick: number;
    switch (this.algorithm[sp]) {
      case LbAlgorithm.Random: pick = (Math.random() * n) | 0; break;
      case LbAlgorithm.Maglev: {
        const table = set.maglev!;
        pick = table[(flowHash >>> 0) % MAGLEV_M];
        if (localOnly) pick = -1;   // Maglev tables are built over all backends; Local falls back to RR
        if (pick >= 0) break;
        pick = this.rrCursor[sp]++ % n;
        break;
      }
      default: pick = this.rrCursor[sp]++ % n;
    }
    const k = localOnly ? set.local[pick] : pick;
    void clientPort;
    if (aff > 0 && !this.dryRun) {
      this.affKeySp[slot] = sp; this.affKeyIp[slot] = client; this.affBackend[slot] = set.ips[k]; this.affExpires[slot] = nowMs + aff;
    }
    this.selections[sp][k]++;
    return k;
  }

  /** Take back a selection (synthetic traces must not move round-robin or the counters). */
  undoSelect(sp: number, k: number, rrBefore: number): void {
    this.rrCursor[sp] = rrBefore;
    if (k >= 0) this.selections[sp][k]--;
  }

  private isLocal(set: BackendSet, k: number): boolean {
    for (let i = 0; i < set.local.length; i++) if (set.local[i] === k) return true;
    return false;
  }

  // ---------------------------------------------------------------------------------------------
  // Control path.
  // ---------------------------------------------------------------------------------------------

  /** Install or replace a service port's frontends and settings; returns its index. */
  upsert(spec: ServicePortSpec): number {
    let sp = this.specs.findIndex((s) => s?.key === spec.key);
    if (sp >= 0) this.removeFrontends(this.specs[sp]!);
    else {
      sp = this.specs.findIndex((s) => s === undefined);
      if (sp < 0) sp = this.specs.length;
      if (sp >= this.maxServicePorts) throw new Error(`service table full (${this.maxServicePorts} service ports)`);
      this.backends[sp] = EMPTY;
      this.selections[sp] = new Float64Array(0);
      this.rrCursor[sp] = 0;
    }
    this.specs[sp] = spec;
    this.algorithm[sp] = spec.algorithm;
    this.affinityMs[sp] = spec.affinityMs;
    this.externalLocal[sp] = spec.externalLocal ? 1 : 0;
    const pp = (spec.proto << 16) | spec.port;
    if (spec.vip !== 0 && !this.frontends.set(spec.vip, pp, sp)) throw new Error('frontend table full');
    for (const ip of spec.externalIps) if (!this.frontends.set(ip, pp, sp)) throw new Error('frontend table full');
    if (spec.nodePort) this.frontends.set(0, (spec.proto << 16) | spec.nodePort, sp);
    if (this.backends[sp].maglev === undefined && spec.algorithm === LbAlgorithm.Maglev) {
      const b = this.backends[sp];
      this.setBackends(sp, [...b.ips], [...b.ports], [...b.local]);
    }
    return sp;
  }

  private removeFrontends(spec: ServicePortSpec): void {
    const pp = (spec.proto << 16) | spec.port;
    if (spec.vip !== 0) this.frontends.delete(spec.vip, pp);
    for (const ip of spec.externalIps) this.frontends.delete(ip, pp);
    if (spec.nodePort) this.frontends.delete(0, (spec.proto << 16) | spec.nodePort);
  }

  /** Remove a service port (by key). */
  remove(key: string): void {
    const sp = this.specs.findIndex((s) => s?.key === key);
    if (sp < 0) return;
    this.removeFrontends(this.specs[sp]!);
    this.specs[sp] = undefined;
    this.backends[sp] = EMPTY;
    this.selections[sp] = new Float64Array(0);
  }

  /** Replace a service port's backends (atomically: one reference swap). Counters follow addresses. */
  setBackends(sp: number, ips: number[], ports: number[], localIndexes: number[]): void {
    const old = this.backends[sp], oldSel = this.selections[sp];
    const sel = new Float64Array(ips.length);
    for (let k = 0; k < ips.length; k++) {
      for (let j = 0; j < old.ips.length; j++) if (old.ips[j] === ips[k] && old.ports[j] === ports[k]) sel[k] = oldSel[j];
    }
    const set: BackendSet = { ips: Uint32Array.from(ips), ports: Uint16Array.from(ports), local: Int32Array.from(localIndexes) };
    if (this.algorithm[sp] === LbAlgorithm.Maglev) set.maglev = maglevTable(ips, ports);
    this.selections[sp] = sel;
    this.backends[sp] = set;
  }

  indexOf(key: string): number { return this.specs.findIndex((s) => s?.key === key); }
}

/**
 * Maglev's lookup table (Eisenbud et al., NSDI 2016, §3.4): each backend gets a permutation of the
 * M slots from two hashes of its name (offset, skip); backends take turns claiming their next
 * preferred free slot until every slot is owned. Equal shares, and minimal disruption on change.
 */
export function maglevTable(ips: number[], ports: number[]): Int32Array {
  const M = MAGLEV_M, n = ips.length;
  const table = new Int32Array(M).fill(-1);
  if (n === 0) return table;
  const offset = new Uint32Array(n), skip = new Uint32Array(n), next = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const h1 = mix32(ips[i] ^ Math.imul(ports[i], 0x9e3779b1)), h2 = mix32(h1 ^ 0x5bd1e995 ^ ips[i]);
    offset[i] = h1 % M;
    skip[i] = (h2 % (M - 1)) + 1;
  }
  let filled = 0;
  while (filled < M) {
    for (let i = 0; i < n && filled < M; i++) {
      let c = (offset[i] + next[i] * skip[i]) % M;
      while (table[c] >= 0) { next[i]++; c = (offset[i] + next[i] * skip[i]) % M; }
      table[c] = i; next[i]++; filled++;
    }
  }
  return table;
}

function mix32(h: number): number {
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); h ^= h >>> 16;
  return h >>> 0;
}
