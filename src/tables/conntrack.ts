/**
 * Connection tracking: the table that remembers every flow crossing the data plane.
 *
 * Services (DNAT to a backend, SNAT for hairpin traffic) and NetworkPolicy ("allow replies to
 * connections we let out") both need to recognise the later packets of a connection, in both
 * directions, after the first packet made a decision. This table is that memory. It is modelled
 * on Linux's netfilter conntrack (nf_conntrack_core.c, nf_conntrack_proto_tcp.c), scaled down.
 *
 * Entries and tuples. A connection is one entry, identified by a small integer index into
 * per-entry typed arrays (`proto`, `state`, `origSrc`, ..., `policy`) that the pipeline reads and
 * writes directly. Each entry holds two 5-tuples (proto, src, dst, sport, dport):
 *
 *   original   the first packet as it arrived, e.g. client:5000 -> VIP:80
 *   reply      what a reply looks like on the wire *after NAT*, e.g. backend:8080 -> client:5000
 *
 * Without NAT the reply tuple is the original inverted. With NAT it is not, and then the inverted
 * original (VIP:80 -> client:5000) deliberately matches nothing: no such packet should exist.
 * For ICMP echo the identifier stands in both port fields (so a tuple is (src, dst, id, id)).
 * `create` derives `natFlags` from the two tuples (reply source differs from original
 * destination: DNAT; reply destination differs from original source: SNAT); the pipeline may
 * overwrite it.
 *
 * The hash index. Like netfilter's `tuplehash[IP_CT_DIR_MAX]`, every entry owns two hash slots,
 * one keyed by each tuple; a slot stores the entry index, the direction, and the key's 32-bit
 * hash. So one probe finds a packet of either direction, and `lastDir` says which it was.
 *
 *   - hashing: the five fields are mixed numerically (MurmurHash3's body and finaliser, with a
 *     per-table random seed, as netfilter seeds its hash, so nobody can aim for one bucket);
 *   - open addressing with linear probing; the slot count is a power of two of at least
 *     4 x capacity, so with two slots per entry the index is never more than half full;
 *   - a probe compares the stored hash first, then all five fields of the entry's tuple for the
 *     slot's direction; keys live only in the entry arrays (one source of truth);
 *   - deletion is backward-shift (no tombstones), so probe runs never decay;
 *   - entries come from a free list (an Int32Array stack); `size` counts live entries.
 * `create` does not look for an existing entry with the same tuple: the caller looks up first
 * (and, when choosing a NAT tuple, checks that its reply tuple is unused, as nf_nat_used_tuple
 * does). A duplicate key would still be stored; lookup finds the first of them.
 *
 * TCP states (simplified nf_conntrack_proto_tcp). The event is the flag class of the segment, in
 * netfilter's order: RST wins, then SYN (with or without ACK), then FIN, then ACK. Flag sets that
 * no TCP sends (tcp_valid_flags: FIN without ACK, SYN+FIN, SYN+RST, no flags, ...; PSH, ECE and
 * CWR are ignored) are invalid in every state. O = original direction, R = reply direction; in
 * the closing states "closer" is the side whose FIN came first and "peer" the other side.
 *
 *   state       | SYN O   | SYN+ACK R | FIN+ACK                          | ACK                              | RST
 *   ------------+---------+-----------+----------------------------------+----------------------------------+--------
 *   New         | SynSent | invalid   | invalid                          | invalid                          | invalid
 *   SynSent     | SynSent | SynRecv   | invalid                          | O: invalid, R: ignore            | Close
 *   SynRecv     | ignore  | ignore    | FinWait (closer = sender)        | O: Established, R: SynRecv       | Close
 *   Established | ignore  | ignore    | FinWait (closer = sender)        | Established                      | Close
 *   FinWait     | ignore  | ignore    | closer: FinWait, peer: LastAck   | closer: FinWait, peer: CloseWait | Close
 *   CloseWait   | ignore  | ignore    | closer: CloseWait, peer: LastAck | CloseWait                        | Close
 *   LastAck     | ignore  | ignore    | LastAck                          | closer: TimeWait, peer: LastAck  | Close
 *   TimeWait    | SynSent | ignore    | TimeWait                         | TimeWait                         | Close
 *   Close       | SynSent | invalid   | invalid                          | invalid                          | Close
 *
 *   SYN R and SYN+ACK O are invalid in every state (simultaneous open, netfilter's SYN_SENT2, is
 *   not modelled). "ignore" = valid (a retransmission or a harmless stray; netfilter's sIG): the
 *   packet is accepted and counted, but neither the state nor the timer moves. "invalid" = `update`
 *   returns false and changes nothing. Any other result is a transition (possibly to the same
 *   state) that restarts the timer at that state's timeout. In words: FinWait = one side has
 *   sent FIN; CloseWait = that FIN was acknowledged, the peer may still send; LastAck = both
 *   sides have sent FIN; TimeWait = the closer acknowledged the peer's FIN. A SYN from the
 *   original side in TimeWait or Close reopens the connection in place (netfilter instead kills
 *   the entry and builds a new one; here the NAT binding and counters carry over). Netfilter also
 *   checks sequence windows and "picks up" connections from a mid-stream ACK; this table does
 *   neither, so a stray ACK never creates a 5-day Established entry.
 *
 * UDP (and any protocol other than TCP and ICMP, e.g. SCTP, which is tracked the same way):
 * UdpUnreplied until a packet is seen in the reply direction, then UdpReplied for good; every
 * packet refreshes the timer (30 s unreplied, 120 s replied: netfilter's udp and udp_stream).
 * ICMP echo: IcmpUnreplied, then IcmpReplied; 30 s either way. Those packets are always valid.
 *
 * Timeouts (CtTimeouts; defaults are netfilter's): SynSent 120 s, SynRecv 60 s, Established
 * 5 days, FinWait 120 s, CloseWait 60 s, LastAck 30 s, TimeWait 120 s, Close 10 s. A freshly
 * created entry (state New, before its first `update`) gets its protocol's first-packet timeout.
 * An entry is alive while `nowMs < expiresMs`.
 *
 * Expiry and collection. `lookup` treats an expired entry as absent and deletes it on the spot.
 * `gc(nowMs, budget)` walks at most `budget` entry slots from a rotating cursor and deletes the
 * expired ones, so the caller spreads collection over many small steps and the data plane never
 * pauses for a full sweep. Both count `expired`.
 *
 * A full table never makes `create` fail or throw. It scans up to 64 entries from the gc cursor:
 * the first expired one found is reclaimed (counted in `expired`: it was dead already); otherwise
 * a live entry is evicted (counted in `evictions`): the one closest to expiry among those not
 * Established, else the one closest to expiry overall. This is netfilter's early_drop, with
 * "not Established" standing in for "not assured".
 *
 * Rules: `lookup`, `create`, `update`, `delete` and `gc` allocate nothing (numbers and typed
 * arrays only) and never throw; `entries` and `audit` are control path and may allocate. The
 * constructor validates its arguments and may throw.
 *
 * Addresses may be passed as u32 (`>>> 0`) or as int32 (`| 0`): the same 32 bits, and the
 * stored fields read back as u32 either way. Inside, they are handled as int32, because on
 * 64-bit Node (no pointer compression) every int32 is a small integer ("Smi") while a u32 of
 * 2^31 or more (128.0.0.0 and up: 172.16/12, 192.168/16) is a heap number: handed to a function
 * V8 does not inline, such a value is boxed, i.e. allocated, on every call. `lookup` and
 * `create` are too large to be inlined into a pipeline, so a hot-path caller that wants zero
 * allocation passes addresses as int32 (`dv.getInt32`, or `x | 0`).
 */
import { IPPROTO_ICMP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, formatIpv4Addr } from '../wire/ipv4.ts';
import { ACK, FIN, RST, SYN, URG } from '../wire/tcp.ts';

export const CtState = {
  New: 0,
  SynSent: 1,
  SynRecv: 2,
  Established: 3,
  FinWait: 4,
  CloseWait: 5,
  LastAck: 6,
  TimeWait: 7,
  Close: 8,
  UdpUnreplied: 9,
  UdpReplied: 10,
  IcmpUnreplied: 11,
  IcmpReplied: 12,
} as const;
export type CtState = (typeof CtState)[keyof typeof CtState];

export const CtDir = { Original: 0, Reply: 1 } as const;
export type CtDir = (typeof CtDir)[keyof typeof CtDir];

/**
 * natFlags bits. DNAT: the destination was rewritten (a Service VIP became a backend), so replies
 * come from elsewhere. SNAT: the source was rewritten (masquerade, hairpin), so replies go elsewhere.
 */
export const CT_NAT_NONE = 0, CT_NAT_DNAT = 1, CT_NAT_SNAT = 2;   // bit flags, DNAT|SNAT = 3

/** How long an entry lives after its last valid packet, per state, in milliseconds. */
export interface CtTimeouts {
  tcpSynSentMs: number;
  tcpSynRecvMs: number;
  tcpEstablishedMs: number;
  tcpFinWaitMs: number;
  tcpCloseWaitMs: number;
  tcpLastAckMs: number;
  tcpTimeWaitMs: number;
  tcpCloseMs: number;
  udpUnrepliedMs: number;
  udpRepliedMs: number;
  icmpMs: number;
}

/** Netfilter's defaults (nf_conntrack_tcp_timeout_*, nf_conntrack_udp_timeout[_stream], nf_conntrack_icmp_timeout). */
export const CT_DEFAULT_TIMEOUTS: Readonly<CtTimeouts> = Object.freeze({
  tcpSynSentMs: 120_000,
  tcpSynRecvMs: 60_000,
  tcpEstablishedMs: 432_000_000,
  tcpFinWaitMs: 120_000,
  tcpCloseWaitMs: 60_000,
  tcpLastAckMs: 30_000,
  tcpTimeWaitMs: 120_000,
  tcpCloseMs: 10_000,
  udpUnrepliedMs: 30_000,
  udpRepliedMs: 120_000,
  icmpMs: 30_000,
});

/** One entry as `podwire show conntrack` prints it (control path). */
export interface CtEntryView {
  index: number;
  proto: string;          // 'tcp', 'udp', 'icmp', 'sctp' or the protocol number
  state: string;          // a CtState key, e.g. 'Established'
  orig: string;           // '10.244.1.5:40000 -> 10.96.0.10:80' (ICMP: '10.244.1.5 -> 10.244.2.7 id 7')
  reply: string;
  natFlags: string;       // 'none', 'dnat', 'snat' or 'dnat+snat'
  expiresInMs: number;
  packets: number;
  bytes: number;
  service: number;
  backend: number;
  policy: number;
}

/** How many entries a full-table `create` examines before choosing a victim. */
const RECLAIM_SCAN = 64;

/** `tcpNext` results that are not states. */
const TCP_IGNORE = -1, TCP_INVALID = -2;

/**
 * tcp_valid_flags from nf_conntrack_proto_tcp.c, indexed by flags & (FIN|SYN|RST|ACK|URG):
 * the flag combinations a real TCP sends. Everything else (FIN without ACK, SYN+FIN, no flags)
 * is a scan or a forgery.
 */
const VALID_TCP_FLAGS = new Uint8Array(64);
for (const f of [SYN, SYN | URG, SYN | ACK, RST, RST | ACK, FIN | ACK, FIN | ACK | URG, ACK, ACK | URG]) VALID_TCP_FLAGS[f] = 1;

const STATE_NAMES: string[] = [];
for (const [name, value] of Object.entries(CtState)) STATE_NAMES[value] = name;

/** Mix one 32-bit word into a running hash (the body step of MurmurHash3_x86_32). */
function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

export class Conntrack {
  /** Maximum number of entries (connections). */
  readonly capacity: number;
  /** The timeouts in force (defaults overlaid with the constructor's argument). */
  readonly timeouts: Readonly<CtTimeouts>;

  // ---- per-entry fields, indexed by entry index (read and written by the pipeline) ----
  readonly proto: Uint8Array;
  readonly state: Uint8Array;
  readonly natFlags: Uint8Array;
  readonly origSrc: Uint32Array;
  readonly origDst: Uint32Array;
  readonly origSport: Uint16Array;
  readonly origDport: Uint16Array;
  readonly replySrc: Uint32Array;
  readonly replyDst: Uint32Array;
  readonly replySport: Uint16Array;
  readonly replyDport: Uint16Array;
  readonly expiresMs: Float64Array;
  /** Opaque ints for the pipeline (a Service, its chosen backend, the policy verdict); -1 by default. */
  readonly service: Int32Array;
  readonly backend: Int32Array;
  readonly policy: Int32Array;
  /** Valid packets and their bytes, both directions together. */
  readonly packets: Float64Array;
  readonly bytes: Float64Array;

  /** Direction (CtDir) of the tuple the last successful `lookup` matched; -1 after a miss. */
  lastDir = -1;
  /** Live entries thrown out by a full-table `create`. */
  evictions = 0;
  /** Entries removed because their timer ran out (by `lookup`, `gc` or a full-table `create`). */
  expired = 0;

  /** Number of hash slots (a power of two, at least 4 x capacity). */
  readonly hashSlots: number;
  private readonly mask: number;
  private readonly seed: number;
  /** Hash slots: entry index (-1 = empty), direction, and the key's hash. */
  private readonly slotEntry: Int32Array;
  private readonly slotDir: Uint8Array;
  private readonly slotHash: Int32Array;

  /** Per-entry private fields: in use, which side sent the first FIN, the two keys' hashes. */
  private readonly inUse: Uint8Array;
  private readonly closer: Uint8Array;
  private readonly origHash: Int32Array;
  private readonly replyHash: Int32Array;
  /** Timeout per state, indexed by CtState (New: unused; see `initialTimeout`). */
  private readonly stateTimeout: Float64Array;

  private readonly freeList: Int32Array;
  private freeTop: number;
  private live = 0;
  /** Next entry slot `gc` and a full-table `create` examine. */
  private cursor = 0;

  constructor(capacity: number, timeouts?: Partial<CtTimeouts>) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 0x4000000) {
      throw new RangeError(`conntrack capacity must be an integer in 1..${0x4000000}, got ${capacity}`);
    }
    const t: CtTimeouts = { ...CT_DEFAULT_TIMEOUTS };
    for (const [k, v] of Object.entries(timeouts ?? {})) {
      if (!(k in t)) throw new RangeError(`unknown conntrack timeout ${k}`);
      if (v === undefined) continue;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`conntrack timeout ${k} must be a finite number >= 0, got ${v}`);
      t[k as keyof CtTimeouts] = v;
    }
    this.timeouts = Object.freeze(t);
    this.capacity = capacity;

    this.proto = new Uint8Array(capacity);
    this.state = new Uint8Array(capacity);
    this.natFlags = new Uint8Array(capacity);
    this.origSrc = new Uint32Array(capacity);
    this.origDst = new Uint32Array(capacity);
    this.origSport = new Uint16Array(capacity);
    this.origDport = new Uint16Array(capacity);
    this.replySrc = new Uint32Array(capacity);
    this.replyDst = new Uint32Array(capacity);
    this.replySport = new Uint16Array(capacity);
    this.replyDport = new Uint16Array(capacity);
    this.expiresMs = new Float64Array(capacity);
    this.service = new Int32Array(capacity).fill(-1);
    this.backend = new Int32Array(capacity).fill(-1);
    this.policy = new Int32Array(capacity).fill(-1);
    this.packets = new Float64Array(capacity);
    this.bytes = new Float64Array(capacity);

    let slots = 16;
    while (slots < capacity * 4) slots *= 2;
    this.hashSlots = slots;
    this.mask = slots - 1;
    this.seed = (Math.random() * 0x100000000) | 0;
    this.slotEntry = new Int32Array(slots).fill(-1);
    this.slotDir = new Uint8Array(slots);
    this.slotHash = new Int32Array(slots);

    this.inUse = new Uint8Array(capacity);
    this.closer = new Uint8Array(capacity);
    this.origHash = new Int32Array(capacity);
    this.replyHash = new Int32Array(capacity);
    this.stateTimeout = new Float64Array(STATE_NAMES.length);
    const st = this.stateTimeout;
    st[CtState.SynSent] = t.tcpSynSentMs; st[CtState.SynRecv] = t.tcpSynRecvMs;
    st[CtState.Established] = t.tcpEstablishedMs; st[CtState.FinWait] = t.tcpFinWaitMs;
    st[CtState.CloseWait] = t.tcpCloseWaitMs; st[CtState.LastAck] = t.tcpLastAckMs;
    st[CtState.TimeWait] = t.tcpTimeWaitMs; st[CtState.Close] = t.tcpCloseMs;
    st[CtState.UdpUnreplied] = t.udpUnrepliedMs; st[CtState.UdpReplied] = t.udpRepliedMs;
    st[CtState.IcmpUnreplied] = t.icmpMs; st[CtState.IcmpReplied] = t.icmpMs;

    // A stack whose top is entry 0, so entries are handed out in index order.
    this.freeList = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.freeList[i] = capacity - 1 - i;
    this.freeTop = capacity;
  }

  /** Number of live entries (expired ones not yet collected included). */
  get size(): number { return this.live; }

  /**
   * The 32-bit hash (int32) of a 5-tuple under this table's seed; its home slot is
   * `hash & (hashSlots - 1)`. Exposed for tests that need colliding keys.
   */
  hash(proto: number, src: number, dst: number, sport: number, dport: number): number {
    let h = mix(this.seed ^ (proto & 0xff), src);
    h = mix(h, dst);
    h = mix(h, ((sport & 0xffff) << 16) | (dport & 0xffff));
    // MurmurHash3's finaliser: every input bit affects every output bit.
    h ^= 12;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h | 0;
  }

  /**
   * Find the entry for a packet's 5-tuple in either direction; -1 if none or expired. Sets
   * `lastDir` (CtDir of the matched tuple, -1 on a miss). An expired entry met on the way is
   * deleted (counted in `expired`). No allocation.
   */
  lookup(proto: number, src: number, dst: number, sport: number, dport: number, nowMs: number): number {
    proto &= 0xff; src |= 0; dst |= 0; sport &= 0xffff; dport &= 0xffff;
    const h = this.hash(proto, src, dst, sport, dport);
    let i = h & this.mask;
    for (;;) {
      const e = this.slotEntry[i];
      if (e < 0) { this.lastDir = -1; return -1; }
      if (this.slotHash[i] === h && this.proto[e] === proto && this.keyEquals(e, this.slotDir[i], src, dst, sport, dport)) {
        if (this.expiresMs[e] <= nowMs) {
          // Dead: remove it and probe again from the start (the backward shift may have moved
          // slots of this run, including behind i).
          this.delete(e);
          this.expired++;
          i = h & this.mask;
          continue;
        }
        this.lastDir = this.slotDir[i];
        return e;
      }
      i = (i + 1) & this.mask;
    }
  }

  /**
   * Create an entry with explicit original and reply tuples (NAT = reply tuple differs from the
   * inverted original). State New, timer at the protocol's first-packet timeout, service, backend
   * and policy -1, counters 0, natFlags derived from the tuples. Evicts when full (see the module
   * header); never throws. Returns the index.
   */
  create(proto: number, oSrc: number, oDst: number, oSport: number, oDport: number,
    rSrc: number, rDst: number, rSport: number, rDport: number, nowMs: number): number {
    proto &= 0xff;
    oSrc |= 0; oDst |= 0; oSport &= 0xffff; oDport &= 0xffff;
    rSrc |= 0; rDst |= 0; rSport &= 0xffff; rDport &= 0xffff;
    if (this.freeTop === 0) this.makeRoom(nowMs);
    const e = this.freeList[--this.freeTop];
    this.inUse[e] = 1;
    this.live++;

    this.proto[e] = proto;
    this.state[e] = CtState.New;
    this.natFlags[e] = (rSrc !== oDst || rSport !== oDport ? CT_NAT_DNAT : 0) | (rDst !== oSrc || rDport !== oSport ? CT_NAT_SNAT : 0);
    this.origSrc[e] = oSrc; this.origDst[e] = oDst; this.origSport[e] = oSport; this.origDport[e] = oDport;
    this.replySrc[e] = rSrc; this.replyDst[e] = rDst; this.replySport[e] = rSport; this.replyDport[e] = rDport;
    this.expiresMs[e] = nowMs + this.initialTimeout(proto);
    this.service[e] = -1; this.backend[e] = -1; this.policy[e] = -1;
    this.packets[e] = 0; this.bytes[e] = 0;
    this.closer[e] = 0;

    const ho = this.hash(proto, oSrc, oDst, oSport, oDport);
    const hr = this.hash(proto, rSrc, rDst, rSport, rDport);
    this.origHash[e] = ho; this.replyHash[e] = hr;
    this.insertSlot(ho, e, CtDir.Original);
    this.insertSlot(hr, e, CtDir.Reply);
    return e;
  }

  /**
   * Advance the state machine for a packet in direction `dir` with TCP flags (0 for UDP/ICMP)
   * and refresh expiry. Returns true if the packet is valid for the state (e.g. not a stray ACK
   * to a closed entry) — the pipeline may still forward it. A valid packet is counted (`len`
   * bytes); an invalid one changes nothing. An index that is not a live entry gives false.
   */
  update(idx: number, dir: number, tcpFlags: number, len: number, nowMs: number): boolean {
    if (this.inUse[idx] !== 1) return false;
    const p = this.proto[idx];
    const s = this.state[idx];
    let next: number;
    if (p === IPPROTO_TCP) {
      next = this.tcpNext(idx, dir, tcpFlags);
      if (next === TCP_INVALID) return false;
      if (next !== TCP_IGNORE) {
        if (next === CtState.FinWait && s !== CtState.FinWait) this.closer[idx] = dir;
        this.state[idx] = next;
        this.expiresMs[idx] = nowMs + this.stateTimeout[next];
      }
    } else {
      const icmp = p === IPPROTO_ICMP;
      const replied = icmp ? CtState.IcmpReplied : CtState.UdpReplied;
      next = dir === CtDir.Reply || s === replied ? replied : (icmp ? CtState.IcmpUnreplied : CtState.UdpUnreplied);
      this.state[idx] = next;
      this.expiresMs[idx] = nowMs + this.stateTimeout[next];
    }
    this.packets[idx] += 1;
    this.bytes[idx] += len;
    return true;
  }

  /** Remove entry `idx` (both hash slots) and return it to the free list; no-op if not live. */
  delete(idx: number): void {
    if (this.inUse[idx] !== 1) return;
    // Find the second slot only after removing the first: the backward shift may move it.
    this.removeSlot(this.findSlot(this.origHash[idx], idx, CtDir.Original));
    this.removeSlot(this.findSlot(this.replyHash[idx], idx, CtDir.Reply));
    this.inUse[idx] = 0;
    this.freeList[this.freeTop++] = idx;
    this.live--;
  }

  /**
   * Incremental garbage collection: examine at most `budget` entry slots from a rotating
   * cursor (never more than `capacity`, i.e. one full turn), removing expired entries; returns
   * the removed count (also added to `expired`).
   */
  gc(nowMs: number, budget: number): number {
    const n = budget < this.capacity ? budget : this.capacity;
    let removed = 0;
    for (let k = 0; k < n; k++) {
      const e = this.cursor;
      this.cursor = e + 1 === this.capacity ? 0 : e + 1;
      if (this.inUse[e] === 1 && this.expiresMs[e] <= nowMs) { this.delete(e); removed++; }
    }
    this.expired += removed;
    return removed;
  }

  /** Control path: a readable snapshot of the live (unexpired) entries for `podwire show conntrack`. */
  entries(nowMs: number): CtEntryView[] {
    const out: CtEntryView[] = [];
    for (let e = 0; e < this.capacity; e++) {
      if (this.inUse[e] !== 1 || this.expiresMs[e] <= nowMs) continue;
      const p = this.proto[e], nat = this.natFlags[e];
      out.push({
        index: e,
        proto: protoName(p),
        state: STATE_NAMES[this.state[e]] ?? String(this.state[e]),
        orig: tupleText(p, this.origSrc[e], this.origDst[e], this.origSport[e], this.origDport[e]),
        reply: tupleText(p, this.replySrc[e], this.replyDst[e], this.replySport[e], this.replyDport[e]),
        natFlags: nat === 0 ? 'none' : [nat & CT_NAT_DNAT ? 'dnat' : '', nat & CT_NAT_SNAT ? 'snat' : ''].filter(Boolean).join('+'),
        expiresInMs: this.expiresMs[e] - nowMs,
        packets: this.packets[e],
        bytes: this.bytes[e],
        service: this.service[e],
        backend: this.backend[e],
        policy: this.policy[e],
      });
    }
    return out;
  }

  /**
   * Control path and tests: check the table's invariants and describe every violation (an empty
   * list means sound). Each live entry has exactly one slot per direction, carrying the hash of
   * that tuple; every occupied slot is reachable from its home slot without crossing an empty
   * one; the free list holds exactly the entries not in use.
   */
  audit(): string[] {
    const problems: string[] = [];
    const seen = new Uint8Array(this.capacity);   // bit 0: original slot seen, bit 1: reply slot seen
    let occupied = 0;
    for (let i = 0; i < this.hashSlots; i++) {
      const e = this.slotEntry[i];
      if (e < 0) continue;
      occupied++;
      const d = this.slotDir[i];
      if (e >= this.capacity || this.inUse[e] !== 1) { problems.push(`slot ${i} points at entry ${e}, which is not live`); continue; }
      if (seen[e] & (1 << d)) problems.push(`entry ${e} has two slots for direction ${d}`);
      seen[e] |= 1 << d;
      const want = d === CtDir.Original
        ? this.hash(this.proto[e], this.origSrc[e], this.origDst[e], this.origSport[e], this.origDport[e])
        : this.hash(this.proto[e], this.replySrc[e], this.replyDst[e], this.replySport[e], this.replyDport[e]);
      if (this.slotHash[i] !== want || (d === CtDir.Original ? this.origHash[e] : this.replyHash[e]) !== want) {
        problems.push(`slot ${i} (entry ${e}, direction ${d}) holds a stale hash`);
      }
      for (let j = this.slotHash[i] & this.mask; j !== i; j = (j + 1) & this.mask) {
        if (this.slotEntry[j] < 0) { problems.push(`slot ${i} (entry ${e}) is unreachable: empty slot ${j} after its home`); break; }
      }
    }
    if (occupied !== 2 * this.live) problems.push(`${occupied} occupied slots for ${this.live} live entries`);
    let inUse = 0;
    for (let e = 0; e < this.capacity; e++) {
      if (this.inUse[e] !== 1) continue;
      inUse++;
      if (seen[e] !== 3) problems.push(`entry ${e} is missing a hash slot`);
    }
    if (inUse !== this.live) problems.push(`${inUse} entries in use, size says ${this.live}`);
    if (this.freeTop + this.live !== this.capacity) problems.push(`free list holds ${this.freeTop}, live ${this.live}, capacity ${this.capacity}`);
    for (let k = 0; k < this.freeTop; k++) {
      if (this.inUse[this.freeList[k]] !== 0) problems.push(`free list holds live entry ${this.freeList[k]}`);
    }
    return problems;
  }

  // ---- internals ---------------------------------------------------------------------------

  /**
   * Does entry e's tuple for direction d equal (src, dst, sport, dport)? Addresses arrive as
   * int32 and are compared as int32 (the same 32 bits as the stored u32). Proto is checked by
   * the caller.
   */
  private keyEquals(e: number, d: number, src: number, dst: number, sport: number, dport: number): boolean {
    return d === CtDir.Original
      ? (this.origSrc[e] | 0) === src && (this.origDst[e] | 0) === dst && this.origSport[e] === sport && this.origDport[e] === dport
      : (this.replySrc[e] | 0) === src && (this.replyDst[e] | 0) === dst && this.replySport[e] === sport && this.replyDport[e] === dport;
  }

  /** Timer of a freshly created entry: as if its first packet had just been seen. */
  private initialTimeout(proto: number): number {
    if (proto === IPPROTO_TCP) return this.stateTimeout[CtState.SynSent];
    if (proto === IPPROTO_ICMP) return this.stateTimeout[CtState.IcmpUnreplied];
    return this.stateTimeout[CtState.UdpUnreplied];
  }

  /**
   * The TCP transition for a segment with `flags` in direction `dir`: the next state,
   * TCP_IGNORE or TCP_INVALID. The table in the module header, row by row.
   */
  private tcpNext(e: number, dir: number, flags: number): number {
    const f = flags & (FIN | SYN | RST | ACK | URG);
    if (VALID_TCP_FLAGS[f] === 0) return TCP_INVALID;
    const s = this.state[e];
    if ((f & RST) !== 0) return s === CtState.New ? TCP_INVALID : CtState.Close;
    if ((f & SYN) !== 0) {
      if ((f & ACK) !== 0) {
        // SYN+ACK: the responder's half of the handshake, only ever from the reply side.
        if (dir !== CtDir.Reply) return TCP_INVALID;
        if (s === CtState.SynSent) return CtState.SynRecv;
        return s >= CtState.SynRecv && s <= CtState.TimeWait ? TCP_IGNORE : TCP_INVALID;
      }
      // SYN: opens (or reopens) from the original side only.
      if (dir !== CtDir.Original) return TCP_INVALID;
      if (s === CtState.New || s === CtState.SynSent || s === CtState.TimeWait || s === CtState.Close) return CtState.SynSent;
      return TCP_IGNORE;
    }
    // FIN+ACK or ACK (the flag table admits no FIN without ACK).
    const fin = (f & FIN) !== 0;
    const fromCloser = dir === this.closer[e];
    switch (s) {
      case CtState.SynSent:
        return !fin && dir === CtDir.Reply ? TCP_IGNORE : TCP_INVALID;
      case CtState.SynRecv:
        if (fin) return CtState.FinWait;
        return dir === CtDir.Original ? CtState.Established : CtState.SynRecv;
      case CtState.Established:
        return fin ? CtState.FinWait : CtState.Established;
      case CtState.FinWait:
        if (fromCloser) return CtState.FinWait;
        return fin ? CtState.LastAck : CtState.CloseWait;
      case CtState.CloseWait:
        return fin && !fromCloser ? CtState.LastAck : CtState.CloseWait;
      case CtState.LastAck:
        return !fin && fromCloser ? CtState.TimeWait : CtState.LastAck;
      case CtState.TimeWait:
        return CtState.TimeWait;
      default:   // New, Close (and UDP/ICMP states, which a TCP entry never has)
        return TCP_INVALID;
    }
  }

  /** Put (hash h, entry e, direction d) in the first empty slot of h's probe run. */
  private insertSlot(h: number, e: number, d: number): void {
    let i = h & this.mask;
    while (this.slotEntry[i] >= 0) i = (i + 1) & this.mask;
    this.slotEntry[i] = e; this.slotDir[i] = d; this.slotHash[i] = h;
  }

  /** The slot of entry e's direction-d key (whose hash is h); -1 if absent (never, when sound). */
  private findSlot(h: number, e: number, d: number): number {
    let i = h & this.mask;
    for (;;) {
      const s = this.slotEntry[i];
      if (s < 0) return -1;
      if (s === e && this.slotDir[i] === d) return i;
      i = (i + 1) & this.mask;
    }
  }

  /** Empty slot i, then backward-shift the rest of its probe run so no run has a hole. */
  private removeSlot(i: number): void {
    if (i < 0) return;
    const mask = this.mask;
    this.slotEntry[i] = -1;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (this.slotEntry[j] < 0) return;
      const home = this.slotHash[j] & mask;
      // Slot j may stay only if its home lies cyclically in (i, j]; otherwise it moves to i.
      const inRange = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!inRange) {
        this.slotEntry[i] = this.slotEntry[j]; this.slotDir[i] = this.slotDir[j]; this.slotHash[i] = this.slotHash[j];
        this.slotEntry[j] = -1;
        i = j;
      }
    }
  }

  /**
   * The table is full: free one entry. Scan up to RECLAIM_SCAN entries from the cursor; reclaim
   * the first expired one, else evict the non-Established entry closest to expiry, else the
   * entry closest to expiry.
   */
  private makeRoom(nowMs: number): void {
    const n = RECLAIM_SCAN < this.capacity ? RECLAIM_SCAN : this.capacity;
    let soonest = -1, soonestExp = Infinity, soonestOpen = -1, soonestOpenExp = Infinity;
    for (let k = 0; k < n; k++) {
      const e = this.cursor;
      this.cursor = e + 1 === this.capacity ? 0 : e + 1;
      if (this.inUse[e] !== 1) continue;
      const exp = this.expiresMs[e];
      if (exp <= nowMs) { this.delete(e); this.expired++; return; }
      if (exp < soonestExp) { soonest = e; soonestExp = exp; }
      if (this.state[e] !== CtState.Established && exp < soonestOpenExp) { soonestOpen = e; soonestOpenExp = exp; }
    }
    const victim = soonestOpen >= 0 ? soonestOpen : soonest;
    this.delete(victim);
    this.evictions++;
  }
}

/** 'tcp', 'udp', 'icmp', 'sctp', or the number. */
function protoName(p: number): string {
  switch (p) {
    case IPPROTO_TCP: return 'tcp';
    case IPPROTO_UDP: return 'udp';
    case IPPROTO_ICMP: return 'icmp';
    case IPPROTO_SCTP: return 'sctp';
    default: return String(p);
  }
}

/** A tuple as text: '10.0.0.1:5000 -> 10.96.0.10:80', or for ICMP '10.0.0.1 -> 10.0.0.2 id 7'. */
function tupleText(p: number, src: number, dst: number, sport: number, dport: number): string {
  if (p === IPPROTO_ICMP) return `${formatIpv4Addr(src)} -> ${formatIpv4Addr(dst)} id ${sport}`;
  return `${formatIpv4Addr(src)}:${sport} -> ${formatIpv4Addr(dst)}:${dport}`;
}
