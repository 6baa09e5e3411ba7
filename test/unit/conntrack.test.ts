/**
 * Unit tests for connection tracking (src/tables/conntrack.ts).
 *
 * The TCP state machine is checked cell by cell against a table written out again here (not
 * derived from the module), then through whole connections told as stories. The hash index is
 * checked with hand-made collisions (a probe run that wraps around the end of the slot array)
 * and with a seeded random differential test against a plain Map model, which also replays the
 * garbage collector's cursor and the full-table eviction policy. The last test shows that the
 * hot-path methods allocate nothing.
 */
import { describe, it, expect } from 'vitest';
import v8 from 'node:v8';
import vm from 'node:vm';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import {
  Conntrack, CtState, CtDir, CT_NAT_NONE, CT_NAT_DNAT, CT_NAT_SNAT, CT_DEFAULT_TIMEOUTS,
} from '../../src/tables/conntrack.ts';
import { ipToU32 as ip } from '../../src/control/addressing.ts';

// Protocol numbers (RFC 790) and TCP flag bits (RFC 9293), written out rather than imported.
const ICMP = 1, TCP = 6, UDP = 17, SCTP = 132;
const FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10, URG = 0x20, ECE = 0x40, CWR = 0x80;
const O = CtDir.Original, R = CtDir.Reply;
const S = CtState;
const SEC = 1000;

/** netfilter's default timeouts, per state, in ms. */
const TIMEOUT: Record<number, number> = {
  [S.SynSent]: 120 * SEC, [S.SynRecv]: 60 * SEC, [S.Established]: 432_000 * SEC, [S.FinWait]: 120 * SEC,
  [S.CloseWait]: 60 * SEC, [S.LastAck]: 30 * SEC, [S.TimeWait]: 120 * SEC, [S.Close]: 10 * SEC,
  [S.UdpUnreplied]: 30 * SEC, [S.UdpReplied]: 120 * SEC, [S.IcmpUnreplied]: 30 * SEC, [S.IcmpReplied]: 30 * SEC,
};

const CLIENT = ip('10.244.1.5'), SERVER = ip('10.244.2.7'), VIP = ip('10.96.0.10'), NODE = ip('192.168.56.11');
const BACKEND = ip('10.244.3.9'), PEER = ip('172.16.0.1');

/** mulberry32: a small seeded PRNG, so every random test replays exactly. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A plain TCP connection CLIENT:40000 -> SERVER:80 (no NAT: the reply tuple is the inverse). */
function plainTcp(ct: Conntrack, now: number): number {
  return ct.create(TCP, CLIENT, SERVER, 40000, 80, SERVER, CLIENT, 80, 40000, now);
}

/** Feed a list of [flags, dir] segments, one millisecond apart from `now`; every one must be valid. */
function feed(ct: Conntrack, idx: number, steps: [number, number][], now: number): number {
  for (const [flags, dir] of steps) expect(ct.update(idx, dir, flags, 60, now++), `flags ${flags} dir ${dir}`).toBe(true);
  return now;
}

const HANDSHAKE: [number, number][] = [[SYN, O], [SYN | ACK, R], [ACK, O]];

// ---- construction ----------------------------------------------------------------------------

describe('Conntrack: construction and create', () => {
  it('uses netfilter\'s default timeouts and overlays the caller\'s', () => {
    expect(CT_DEFAULT_TIMEOUTS).toEqual({
      tcpSynSentMs: 120_000, tcpSynRecvMs: 60_000, tcpEstablishedMs: 432_000_000, tcpFinWaitMs: 120_000,
      tcpCloseWaitMs: 60_000, tcpLastAckMs: 30_000, tcpTimeWaitMs: 120_000, tcpCloseMs: 10_000,
      udpUnrepliedMs: 30_000, udpRepliedMs: 120_000, icmpMs: 30_000,
    });
    const ct = new Conntrack(8, { udpRepliedMs: 180_000, tcpCloseMs: 0 });
    expect(ct.timeouts).toEqual({ ...CT_DEFAULT_TIMEOUTS, udpRepliedMs: 180_000, tcpCloseMs: 0 });
    expect(new Conntrack(8).timeouts).toEqual(CT_DEFAULT_TIMEOUTS);
  });

  it('rejects a bad capacity or timeout at construction (control path)', () => {
    for (const c of [0, -1, 1.5, NaN]) expect(() => new Conntrack(c)).toThrow(RangeError);
    expect(() => new Conntrack(4, { udpRepliedMs: -1 })).toThrow(RangeError);
    expect(() => new Conntrack(4, { icmpMs: Infinity })).toThrow(RangeError);
    expect(() => new Conntrack(4, { bogusMs: 1 } as never)).toThrow(RangeError);
  });

  it('sizes the hash index to a power of two of at least 4 x capacity (two slots per entry, half full at most)', () => {
    for (const [cap, slots] of [[1, 16], [3, 16], [4, 16], [5, 32], [1000, 4096], [1024, 4096], [1025, 8192]]) {
      const ct = new Conntrack(cap);
      expect(ct.capacity).toBe(cap);
      expect(ct.hashSlots).toBe(slots);
      expect(ct.size).toBe(0);
      expect(ct.audit()).toEqual([]);
    }
  });

  it('create fills every field: state New, tuples, derived natFlags, -1 opaque ints, zero counters, first-packet timer', () => {
    const ct = new Conntrack(4);
    const a = ct.create(TCP, CLIENT, VIP, 40000, 80, BACKEND, CLIENT, 8080, 40000, 5000);
    const b = ct.create(UDP, CLIENT, SERVER, 5353, 53, SERVER, CLIENT, 53, 5353, 6000);
    const c = ct.create(ICMP, CLIENT, SERVER, 7, 7, SERVER, CLIENT, 7, 7, 7000);
    expect([a, b, c]).toEqual([0, 1, 2]);   // handed out in index order
    expect(ct.size).toBe(3);
    expect([ct.proto[a], ct.state[a], ct.natFlags[a]]).toEqual([TCP, S.New, CT_NAT_DNAT]);
    expect([ct.origSrc[a], ct.origDst[a], ct.origSport[a], ct.origDport[a]]).toEqual([CLIENT, VIP, 40000, 80]);
    expect([ct.replySrc[a], ct.replyDst[a], ct.replySport[a], ct.replyDport[a]]).toEqual([BACKEND, CLIENT, 8080, 40000]);
    expect([ct.service[a], ct.backend[a], ct.policy[a], ct.packets[a], ct.bytes[a]]).toEqual([-1, -1, -1, 0, 0]);
    expect(ct.expiresMs[a]).toBe(5000 + 120_000);   // TCP: as if the SYN had just been seen
    expect(ct.expiresMs[b]).toBe(6000 + 30_000);    // UDP: unreplied
    expect(ct.expiresMs[c]).toBe(7000 + 30_000);    // ICMP
    expect([ct.natFlags[b], ct.natFlags[c]]).toEqual([CT_NAT_NONE, CT_NAT_NONE]);
    expect(ct.audit()).toEqual([]);
  });

  it('derives natFlags from the tuples: DNAT when the reply source differs, SNAT when the reply destination differs', () => {
    const ct = new Conntrack(8);
    // DNAT by address, DNAT by port only, SNAT (masquerade), DNAT+SNAT (hairpin to a Service).
    const dnat = ct.create(TCP, CLIENT, VIP, 1, 80, BACKEND, CLIENT, 80, 1, 0);
    const dport = ct.create(TCP, CLIENT, SERVER, 2, 80, SERVER, CLIENT, 8080, 2, 0);
    const snat = ct.create(UDP, CLIENT, PEER, 3, 53, PEER, NODE, 53, 61000, 0);
    const both = ct.create(TCP, CLIENT, VIP, 4, 80, BACKEND, NODE, 8080, 62000, 0);
    expect([ct.natFlags[dnat], ct.natFlags[dport], ct.natFlags[snat], ct.natFlags[both]])
      .toEqual([CT_NAT_DNAT, CT_NAT_DNAT, CT_NAT_SNAT, CT_NAT_DNAT | CT_NAT_SNAT]);
    expect(CT_NAT_DNAT | CT_NAT_SNAT).toBe(3);
  });
});

// ---- TCP -----------------------------------------------------------------------------------------

/** The segments that bring a fresh entry to each state (closing states: the client closes first). */
const PATH: Record<string, [number, number][]> = {
  New: [],
  SynSent: [[SYN, O]],
  SynRecv: [[SYN, O], [SYN | ACK, R]],
  Established: HANDSHAKE,
  FinWait: [...HANDSHAKE, [FIN | ACK, O]],
  CloseWait: [...HANDSHAKE, [FIN | ACK, O], [ACK, R]],
  LastAck: [...HANDSHAKE, [FIN | ACK, O], [FIN | ACK, R]],
  TimeWait: [...HANDSHAKE, [FIN | ACK, O], [FIN | ACK, R], [ACK, O]],
  Close: [...HANDSHAKE, [RST, R]],
  // The same closing states when the server closes first.
  'FinWait/server': [...HANDSHAKE, [FIN | ACK, R]],
  'CloseWait/server': [...HANDSHAKE, [FIN | ACK, R], [ACK, O]],
  'LastAck/server': [...HANDSHAKE, [FIN | ACK, R], [FIN | ACK, O]],
};

const EVENTS: { name: string; flags: number; dir: number }[] = [
  { name: 'SYN O', flags: SYN, dir: O }, { name: 'SYN R', flags: SYN, dir: R },
  { name: 'SYN+ACK O', flags: SYN | ACK, dir: O }, { name: 'SYN+ACK R', flags: SYN | ACK, dir: R },
  { name: 'FIN+ACK O', flags: FIN | ACK, dir: O }, { name: 'FIN+ACK R', flags: FIN | ACK, dir: R },
  { name: 'ACK O', flags: ACK, dir: O }, { name: 'ACK R', flags: ACK, dir: R },
  { name: 'RST O', flags: RST, dir: O }, { name: 'RST R', flags: RST | ACK, dir: R },
];

// The transition table, restated: a state name = transition (timer restarts at that state's
// timeout), 'ign' = valid but nothing moves, 'inv' = invalid (update returns false, nothing moves).
const ign = 'ign', inv = 'inv';
const TABLE: Record<string, string[]> = {
  //                  SYN O        SYN R  SYN+ACK O  SYN+ACK R  FIN+ACK O    FIN+ACK R    ACK O          ACK R          RST O    RST R
  New:               ['SynSent',   inv,   inv,       inv,       inv,         inv,         inv,           inv,           inv,     inv],
  SynSent:           ['SynSent',   inv,   inv,       'SynRecv', inv,         inv,         inv,           ign,           'Close', 'Close'],
  SynRecv:           [ign,         inv,   inv,       ign,       'FinWait',   'FinWait',   'Established', 'SynRecv',     'Close', 'Close'],
  Established:       [ign,         inv,   inv,       ign,       'FinWait',   'FinWait',   'Established', 'Established', 'Close', 'Close'],
  FinWait:           [ign,         inv,   inv,       ign,       'FinWait',   'LastAck',   'FinWait',     'CloseWait',   'Close', 'Close'],
  CloseWait:         [ign,         inv,   inv,       ign,       'CloseWait', 'LastAck',   'CloseWait',   'CloseWait',   'Close', 'Close'],
  LastAck:           [ign,         inv,   inv,       ign,       'LastAck',   'LastAck',   'TimeWait',    'LastAck',     'Close', 'Close'],
  TimeWait:          ['SynSent',   inv,   inv,       ign,       'TimeWait',  'TimeWait',  'TimeWait',    'TimeWait',    'Close', 'Close'],
  Close:             ['SynSent',   inv,   inv,       inv,       inv,         inv,         inv,           inv,           'Close', 'Close'],
  'FinWait/server':  [ign,         inv,   inv,       ign,       'LastAck',   'FinWait',   'CloseWait',   'FinWait',     'Close', 'Close'],
  'CloseWait/server': [ign,        inv,   inv,       ign,       'LastAck',   'CloseWait', 'CloseWait',   'CloseWait',   'Close', 'Close'],
  'LastAck/server':  [ign,         inv,   inv,       ign,       'LastAck',   'LastAck',   'LastAck',     'TimeWait',    'Close', 'Close'],
};

describe('Conntrack: TCP state machine', () => {
  for (const [from, row] of Object.entries(TABLE)) {
    it(`from ${from}: every event does what the table says`, () => {
      const stateName = from.split('/')[0] as keyof typeof CtState;
      EVENTS.forEach((ev, col) => {
        const ct = new Conntrack(4);
        const idx = plainTcp(ct, 1000);
        const t = feed(ct, idx, PATH[from], 1000);
        expect(ct.state[idx]).toBe(S[stateName]);
        const before = { exp: ct.expiresMs[idx], pk: ct.packets[idx], by: ct.bytes[idx] };
        const now = t + 5000;
        const ok = ct.update(idx, ev.dir, ev.flags, 100, now);
        const want = row[col];
        const what = `${from} + ${ev.name}`;
        if (want === inv) {
          expect(ok, what).toBe(false);
          expect(ct.state[idx], what).toBe(S[stateName]);
          expect([ct.expiresMs[idx], ct.packets[idx], ct.bytes[idx]], what).toEqual([before.exp, before.pk, before.by]);
        } else if (want === ign) {
          expect(ok, what).toBe(true);
          expect(ct.state[idx], what).toBe(S[stateName]);
          expect([ct.expiresMs[idx], ct.packets[idx], ct.bytes[idx]], what).toEqual([before.exp, before.pk + 1, before.by + 100]);
        } else {
          const to = S[want as keyof typeof CtState];
          expect(ok, what).toBe(true);
          expect(ct.state[idx], what).toBe(to);
          expect(ct.expiresMs[idx], what).toBe(now + TIMEOUT[to]);
          expect([ct.packets[idx], ct.bytes[idx]], what).toEqual([before.pk + 1, before.by + 100]);
        }
      });
    });
  }

  it('a whole connection: handshake, data both ways, client closes, server finishes sending, TIME_WAIT expires', () => {
    const ct = new Conntrack(16);
    const c = plainTcp(ct, 0);
    expect(ct.update(c, O, SYN, 74, 0)).toBe(true);
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.SynSent, 120_000]);
    expect(ct.update(c, O, SYN | ECE | CWR, 74, 1000)).toBe(true);               // retransmitted SYN (ECN setup)
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.SynSent, 121_000]);
    expect(ct.update(c, R, SYN | ACK | ECE, 74, 1001)).toBe(true);
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.SynRecv, 61_001]);
    expect(ct.update(c, O, ACK, 66, 1002)).toBe(true);
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.Established, 1002 + 432_000_000]);
    expect(ct.update(c, O, PSH | ACK, 1000, 2000)).toBe(true);
    expect(ct.update(c, R, ACK, 66, 2001)).toBe(true);
    expect(ct.update(c, R, PSH | ACK | URG, 500, 2002)).toBe(true);
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.Established, 2002 + 432_000_000]);
    expect(ct.update(c, O, FIN | ACK, 66, 3000)).toBe(true);                      // client closes
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.FinWait, 123_000]);
    expect(ct.update(c, R, ACK, 66, 3001)).toBe(true);                            // server ACKs the FIN
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.CloseWait, 63_001]);
    expect(ct.update(c, R, PSH | ACK, 800, 3002)).toBe(true);                     // half-closed: server still sends
    expect(ct.update(c, O, ACK, 66, 3003)).toBe(true);                            // and the client still ACKs
    expect(ct.state[c]).toBe(S.CloseWait);
    expect(ct.update(c, R, FIN | ACK, 66, 4000)).toBe(true);                      // server closes
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.LastAck, 34_000]);
    expect(ct.update(c, O, ACK, 66, 4001)).toBe(true);                            // client ACKs the last FIN
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.TimeWait, 124_001]);
    expect(ct.update(c, R, FIN | ACK, 66, 5000)).toBe(true);                      // FIN retransmitted: still TIME_WAIT
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.TimeWait, 125_000]);
    expect(ct.packets[c]).toBe(14);
    expect(ct.bytes[c]).toBe(74 * 3 + 66 + 1000 + 66 + 500 + 66 + 66 + 800 + 66 + 66 + 66 + 66);
    expect(ct.lookup(TCP, SERVER, CLIENT, 80, 40000, 124_999)).toBe(c);
    expect(ct.lookup(TCP, SERVER, CLIENT, 80, 40000, 125_000)).toBe(-1);
    expect(ct.size).toBe(0);
  });

  it('the server closes first and its FIN+ACK is answered by a combined FIN+ACK: straight to LAST_ACK', () => {
    const ct = new Conntrack(4);
    const c = plainTcp(ct, 0);
    let t = feed(ct, c, HANDSHAKE, 0);
    expect(ct.update(c, R, FIN | ACK, 66, t++)).toBe(true);
    expect(ct.state[c]).toBe(S.FinWait);
    expect(ct.update(c, R, ACK, 66, t++)).toBe(true);          // the closer's own ACKs don't move it
    expect(ct.update(c, R, FIN | ACK, 66, t++)).toBe(true);    // nor its retransmitted FIN
    expect(ct.state[c]).toBe(S.FinWait);
    expect(ct.update(c, O, FIN | ACK, 66, t++)).toBe(true);
    expect(ct.state[c]).toBe(S.LastAck);
    expect(ct.update(c, O, ACK, 66, t++)).toBe(true);          // the peer's ACK does not end it
    expect(ct.state[c]).toBe(S.LastAck);
    expect(ct.update(c, R, ACK, 66, t)).toBe(true);            // the closer's ACK of the last FIN does
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.TimeWait, t + 120_000]);
  });

  it('a simultaneous close (both FINs cross) ends in TIME_WAIT', () => {
    const ct = new Conntrack(4);
    const c = plainTcp(ct, 0);
    const t = feed(ct, c, [...HANDSHAKE, [FIN | ACK, O], [FIN | ACK, R], [ACK, R], [ACK, O]], 0);
    expect([ct.state[c], ct.expiresMs[c]]).toEqual([S.TimeWait, t - 1 + 120_000]);
  });

  it('a FIN during SYN_RECV starts the close; the closer is whoever sent it', () => {
    const ct = new Conntrack(4);
    const c = plainTcp(ct, 0);
    feed(ct, c, [[SYN, O], [SYN | ACK, R], [FIN | ACK, R]], 0);
    expect(ct.state[c]).toBe(S.FinWait);
    expect(ct.update(c, O, ACK, 60, 10)).toBe(true);
    expect(ct.state[c]).toBe(S.CloseWait);
  });

  it('RST closes from every state but New, with the 10 s timer; the entry then expires', () => {
    for (const from of Object.keys(PATH)) {
      const ct = new Conntrack(4);
      const c = plainTcp(ct, 0);
      const t = feed(ct, c, PATH[from], 0);
      expect(ct.update(c, O, RST | ACK, 54, t), from).toBe(from !== 'New');
      if (from === 'New') continue;
      expect([ct.state[c], ct.expiresMs[c]], from).toEqual([S.Close, t + 10_000]);
      expect(ct.lookup(TCP, CLIENT, SERVER, 40000, 80, t + 9_999), from).toBe(c);
      expect(ct.lookup(TCP, CLIENT, SERVER, 40000, 80, t + 10_000), from).toBe(-1);
    }
  });

  it('a stray ACK or FIN to a closed entry is invalid and changes nothing', () => {
    const ct = new Conntrack(4);
    const c = plainTcp(ct, 0);
    const t = feed(ct, c, [...HANDSHAKE, [RST, O]], 0);
    const exp = ct.expiresMs[c], pk = ct.packets[c];
    for (const [flags, dir] of [[ACK, O], [ACK, R], [PSH | ACK, R], [FIN | ACK, O], [SYN | ACK, R]]) {
      expect(ct.update(c, dir, flags, 60, t + 1000)).toBe(false);
    }
    expect([ct.state[c], ct.expiresMs[c], ct.packets[c]]).toEqual([S.Close, exp, pk]);
  });

  it('a new SYN from the original side reopens a TIME_WAIT or CLOSE entry in place (same index, NAT binding kept)', () => {
    for (const from of ['TimeWait', 'Close']) {
      const ct = new Conntrack(4);
      const c = ct.create(TCP, CLIENT, VIP, 40000, 80, BACKEND, CLIENT, 8080, 40000, 0);
      ct.backend[c] = 3;
      let t = feed(ct, c, PATH[from], 0);
      expect(ct.update(c, R, SYN, 74, t)).toBe(false);             // not from the responder
      expect(ct.update(c, O, SYN, 74, t)).toBe(true);
      expect([ct.state[c], ct.expiresMs[c], ct.backend[c], ct.natFlags[c]]).toEqual([S.SynSent, t + 120_000, 3, CT_NAT_DNAT]);
      t = feed(ct, c, [[SYN | ACK, R], [ACK, O]], t + 1);
      expect(ct.state[c]).toBe(S.Established);
      // The new connection closes on its own terms: the closer is re-learned.
      feed(ct, c, [[FIN | ACK, R], [ACK, O]], t);
      expect(ct.state[c]).toBe(S.CloseWait);
    }
  });

  it('rejects flag sets no TCP sends (netfilter\'s tcp_valid_flags) in every state; PSH, ECE and CWR do not matter', () => {
    const bad = [0, FIN, SYN | FIN, SYN | RST, SYN | FIN | ACK, SYN | RST | ACK, FIN | RST, FIN | RST | ACK, URG, FIN | URG, PSH,
      PSH | FIN, ECE | CWR, SYN | FIN | PSH | URG, 0xff, FIN | SYN | RST | ACK];
    for (const from of Object.keys(PATH)) {
      for (const flags of bad) {
        const ct = new Conntrack(4);
        const c = plainTcp(ct, 0);
        const t = feed(ct, c, PATH[from], 0);
        const exp = ct.expiresMs[c];
        expect(ct.update(c, O, flags, 60, t + 7), `${from} flags ${flags}`).toBe(false);
        expect(ct.update(c, R, flags, 60, t + 7), `${from} flags ${flags}`).toBe(false);
        expect([ct.state[c], ct.expiresMs[c]]).toEqual([S[from.split('/')[0] as keyof typeof CtState], exp]);
      }
    }
    // Valid sets carrying extra bits behave as their class.
    const ct = new Conntrack(4);
    const c = plainTcp(ct, 0);
    expect(ct.update(c, O, SYN | URG | PSH, 60, 1)).toBe(true);
    expect(ct.update(c, R, SYN | ACK | ECE | CWR | PSH, 60, 2)).toBe(true);
    expect(ct.update(c, O, ACK | URG | PSH | ECE | CWR, 60, 3)).toBe(true);
    expect(ct.state[c]).toBe(S.Established);
    expect(ct.update(c, O, FIN | ACK | URG | PSH, 60, 4)).toBe(true);
    expect(ct.state[c]).toBe(S.FinWait);
  });

  it('update on an index that is not a live entry returns false; delete of one is a no-op', () => {
    const ct = new Conntrack(4);
    const c = plainTcp(ct, 0);
    ct.delete(c);
    expect(ct.size).toBe(0);
    expect(ct.update(c, O, SYN, 60, 1)).toBe(false);
    expect(ct.update(3, O, SYN, 60, 1)).toBe(false);     // never used
    expect(ct.update(99, O, SYN, 60, 1)).toBe(false);    // out of range
    expect(ct.update(-1, O, SYN, 60, 1)).toBe(false);
    ct.delete(c); ct.delete(99); ct.delete(-1);
    expect(ct.size).toBe(0);
    expect(ct.audit()).toEqual([]);
  });
});

// ---- UDP, ICMP and other protocols ---------------------------------------------------------------

describe('Conntrack: UDP, ICMP and other protocols', () => {
  it('UDP: unreplied (30 s, refreshed by each original packet) until a reply, then replied (120 s) for good', () => {
    const ct = new Conntrack(4);
    const u = ct.create(UDP, CLIENT, SERVER, 5353, 53, SERVER, CLIENT, 53, 5353, 0);
    expect(ct.update(u, O, 0, 70, 0)).toBe(true);
    expect([ct.state[u], ct.expiresMs[u]]).toEqual([S.UdpUnreplied, 30_000]);
    expect(ct.update(u, O, 0, 70, 10_000)).toBe(true);
    expect([ct.state[u], ct.expiresMs[u]]).toEqual([S.UdpUnreplied, 40_000]);
    expect(ct.lookup(UDP, SERVER, CLIENT, 53, 5353, 39_999)).toBe(u);
    expect(ct.lastDir).toBe(R);
    expect(ct.update(u, R, 0, 120, 39_999)).toBe(true);
    expect([ct.state[u], ct.expiresMs[u]]).toEqual([S.UdpReplied, 159_999]);
    expect(ct.update(u, O, 0, 70, 50_000)).toBe(true);               // stays replied
    expect([ct.state[u], ct.expiresMs[u]]).toEqual([S.UdpReplied, 170_000]);
    expect(ct.update(u, O, 0xff, 70, 50_001)).toBe(true);            // TCP flags mean nothing to UDP
    expect([ct.packets[u], ct.bytes[u]]).toEqual([5, 70 + 70 + 120 + 70 + 70]);
    expect(ct.lookup(UDP, CLIENT, SERVER, 5353, 53, 170_000)).toBe(u);
    expect(ct.lookup(UDP, CLIENT, SERVER, 5353, 53, 170_001)).toBe(-1);
  });

  it('UDP: an unanswered flow is gone after 30 s; the timeouts are configurable', () => {
    const ct = new Conntrack(4);
    const u = ct.create(UDP, CLIENT, SERVER, 5353, 53, SERVER, CLIENT, 53, 5353, 1000);
    ct.update(u, O, 0, 70, 1000);
    expect(ct.lookup(UDP, CLIENT, SERVER, 5353, 53, 30_999)).toBe(u);
    expect(ct.lookup(UDP, CLIENT, SERVER, 5353, 53, 31_000)).toBe(-1);
    const ct2 = new Conntrack(4, { udpUnrepliedMs: 5000, udpRepliedMs: 7000 });
    const v = ct2.create(UDP, CLIENT, SERVER, 1, 2, SERVER, CLIENT, 2, 1, 0);
    ct2.update(v, O, 0, 1, 0);
    expect(ct2.expiresMs[v]).toBe(5000);
    ct2.update(v, R, 0, 1, 100);
    expect(ct2.expiresMs[v]).toBe(7100);
  });

  it('ICMP echo: the identifier in both port fields; unreplied then replied, 30 s either way', () => {
    const ct = new Conntrack(4);
    const e = ct.create(ICMP, CLIENT, SERVER, 0x1234, 0x1234, SERVER, CLIENT, 0x1234, 0x1234, 0);
    expect(ct.update(e, O, 0, 84, 0)).toBe(true);
    expect([ct.state[e], ct.expiresMs[e]]).toEqual([S.IcmpUnreplied, 30_000]);
    expect(ct.lookup(ICMP, SERVER, CLIENT, 0x1234, 0x1234, 1)).toBe(e);
    expect(ct.lastDir).toBe(R);
    expect(ct.lookup(ICMP, SERVER, CLIENT, 0x1235, 0x1235, 1)).toBe(-1);   // another ping's identifier
    expect(ct.update(e, R, 0, 84, 1)).toBe(true);
    expect([ct.state[e], ct.expiresMs[e]]).toEqual([S.IcmpReplied, 30_001]);
    expect(ct.update(e, O, 0, 84, 1000)).toBe(true);
    expect([ct.state[e], ct.expiresMs[e]]).toEqual([S.IcmpReplied, 31_000]);
    expect(ct.lookup(ICMP, CLIENT, SERVER, 0x1234, 0x1234, 31_000)).toBe(-1);
  });

  it('other protocols (SCTP) are tracked like UDP, and the protocol is part of the key', () => {
    const ct = new Conntrack(4);
    const s = ct.create(SCTP, CLIENT, SERVER, 3868, 3868, SERVER, CLIENT, 3868, 3868, 0);
    ct.update(s, O, 0, 100, 0);
    expect(ct.state[s]).toBe(S.UdpUnreplied);
    ct.update(s, R, 0, 100, 1);
    expect([ct.state[s], ct.expiresMs[s]]).toEqual([S.UdpReplied, 120_001]);
    expect(ct.lookup(UDP, CLIENT, SERVER, 3868, 3868, 2)).toBe(-1);
    expect(ct.lookup(TCP, CLIENT, SERVER, 3868, 3868, 2)).toBe(-1);
    expect(ct.lookup(SCTP, CLIENT, SERVER, 3868, 3868, 2)).toBe(s);
  });
});

// ---- lookup and NAT --------------------------------------------------------------------------------

describe('Conntrack: lookup in both directions, with and without NAT', () => {
  it('without NAT the reply is the inverted original; both directions find the entry and say which', () => {
    const ct = new Conntrack(8);
    const c = plainTcp(ct, 0);
    expect(ct.lookup(TCP, CLIENT, SERVER, 40000, 80, 1)).toBe(c);
    expect(ct.lastDir).toBe(O);
    expect(ct.lookup(TCP, SERVER, CLIENT, 80, 40000, 1)).toBe(c);
    expect(ct.lastDir).toBe(R);
    // Near misses: each field matters.
    expect(ct.lookup(UDP, CLIENT, SERVER, 40000, 80, 1)).toBe(-1);
    expect(ct.lastDir).toBe(-1);
    expect(ct.lookup(TCP, CLIENT + 1, SERVER, 40000, 80, 1)).toBe(-1);
    expect(ct.lookup(TCP, CLIENT, SERVER + 1, 40000, 80, 1)).toBe(-1);
    expect(ct.lookup(TCP, CLIENT, SERVER, 40001, 80, 1)).toBe(-1);
    expect(ct.lookup(TCP, CLIENT, SERVER, 40000, 81, 1)).toBe(-1);
    expect(ct.lookup(TCP, CLIENT, SERVER, 80, 40000, 1)).toBe(-1);     // ports swapped, addresses not
  });

  it('DNAT to a Service backend: orig client->VIP:80 and reply backend:8080->client match; the inverted original does not', () => {
    const ct = new Conntrack(8);
    const d = ct.create(TCP, CLIENT, VIP, 40000, 80, BACKEND, CLIENT, 8080, 40000, 0);
    expect(ct.natFlags[d]).toBe(CT_NAT_DNAT);
    expect(ct.lookup(TCP, CLIENT, VIP, 40000, 80, 1)).toBe(d);
    expect(ct.lastDir).toBe(O);
    expect(ct.lookup(TCP, BACKEND, CLIENT, 8080, 40000, 1)).toBe(d);
    expect(ct.lastDir).toBe(R);
    expect(ct.lookup(TCP, VIP, CLIENT, 80, 40000, 1)).toBe(-1);         // inverse of the original: no such packet
    expect(ct.lastDir).toBe(-1);
    expect(ct.lookup(TCP, CLIENT, BACKEND, 40000, 8080, 1)).toBe(-1);   // the translated forward packet is not a key either
    expect(ct.lookup(TCP, BACKEND, CLIENT, 80, 40000, 1)).toBe(-1);     // backend address with the VIP's port
  });

  it('DNAT+SNAT (hairpin) and SNAT (masquerade): the reply goes to the node address and port chosen', () => {
    const ct = new Conntrack(8);
    const h = ct.create(TCP, CLIENT, VIP, 40000, 80, BACKEND, NODE, 8080, 61000, 0);
    const m = ct.create(UDP, CLIENT, PEER, 5353, 53, PEER, NODE, 53, 62000, 0);
    expect(ct.natFlags[h]).toBe(CT_NAT_DNAT | CT_NAT_SNAT);
    expect(ct.natFlags[m]).toBe(CT_NAT_SNAT);
    expect(ct.lookup(TCP, BACKEND, NODE, 8080, 61000, 1)).toBe(h);
    expect(ct.lastDir).toBe(R);
    expect(ct.lookup(TCP, BACKEND, CLIENT, 8080, 40000, 1)).toBe(-1);
    expect(ct.lookup(UDP, PEER, NODE, 53, 62000, 1)).toBe(m);
    expect(ct.lastDir).toBe(R);
    expect(ct.lookup(UDP, PEER, CLIENT, 53, 5353, 1)).toBe(-1);
    expect(ct.lookup(UDP, CLIENT, PEER, 5353, 53, 1)).toBe(m);
    expect(ct.lastDir).toBe(O);
  });

  it('addresses above 2^31 match whether passed as u32 or as a signed int32', () => {
    const ct = new Conntrack(4);
    const c = ct.create(UDP, NODE, PEER, 4789, 4789, PEER, NODE, 4789, 4789, 0);
    expect(NODE).toBeGreaterThan(0x7fffffff);
    expect(ct.lookup(UDP, NODE | 0, PEER, 4789, 4789, 1)).toBe(c);
    expect(ct.lookup(UDP, PEER, NODE | 0, 4789, 4789, 1)).toBe(c);
    expect(ct.origSrc[c]).toBe(NODE);
  });

  it('entries() shows live entries as text for `podwire show conntrack`', () => {
    const ct = new Conntrack(8);
    const d = ct.create(TCP, CLIENT, VIP, 40000, 80, BACKEND, CLIENT, 8080, 40000, 0);
    feed(ct, d, HANDSHAKE, 0);
    ct.service[d] = 7; ct.backend[d] = 2;
    const p = ct.create(ICMP, CLIENT, SERVER, 9, 9, SERVER, CLIENT, 9, 9, 10);
    ct.update(p, O, 0, 84, 10);
    const h = ct.create(UDP, CLIENT, VIP, 5353, 53, BACKEND, NODE, 53, 61000, 20);
    ct.update(h, O, 0, 70, 20);
    ct.update(h, R, 0, 90, 21);
    ct.policy[h] = 4;
    const gone = ct.create(SCTP, CLIENT, SERVER, 1, 2, SERVER, CLIENT, 2, 1, 0);
    ct.update(gone, O, 0, 10, 0);   // expires at 30 000
    expect(ct.entries(30_000)).toEqual([
      { index: d, proto: 'tcp', state: 'Established', orig: '10.244.1.5:40000 -> 10.96.0.10:80',
        reply: '10.244.3.9:8080 -> 10.244.1.5:40000', natFlags: 'dnat', expiresInMs: 2 + 432_000_000 - 30_000,
        packets: 3, bytes: 180, service: 7, backend: 2, policy: -1 },
      { index: p, proto: 'icmp', state: 'IcmpUnreplied', orig: '10.244.1.5 -> 10.244.2.7 id 9',
        reply: '10.244.2.7 -> 10.244.1.5 id 9', natFlags: 'none', expiresInMs: 10,
        packets: 1, bytes: 84, service: -1, backend: -1, policy: -1 },
      { index: h, proto: 'udp', state: 'UdpReplied', orig: '10.244.1.5:5353 -> 10.96.0.10:53',
        reply: '10.244.3.9:53 -> 192.168.56.11:61000', natFlags: 'dnat+snat', expiresInMs: 21 + 120_000 - 30_000,
        packets: 2, bytes: 160, service: -1, backend: -1, policy: 4 },
    ]);
    expect(ct.size).toBe(4);   // the expired SCTP entry is hidden but not yet collected
    expect(ct.entries(29_999).map((e) => e.proto)).toEqual(['tcp', 'icmp', 'udp', 'sctp']);
    const odd = ct.create(47, CLIENT, SERVER, 0, 0, SERVER, CLIENT, 0, 0, 0);
    expect(ct.entries(0).find((e) => e.index === odd)).toMatchObject({ proto: '47', state: 'New', orig: '10.244.1.5:0 -> 10.244.2.7:0' });
  });
});

// ---- expiry and gc ---------------------------------------------------------------------------------

describe('Conntrack: expiry and incremental gc', () => {
  it('lookup treats an expired entry as absent and deletes it on the spot', () => {
    const ct = new Conntrack(8);
    const a = plainTcp(ct, 0);
    const b = ct.create(UDP, CLIENT, SERVER, 1, 2, SERVER, CLIENT, 2, 1, 0);
    ct.update(a, O, SYN, 60, 0);   // expires 120 000
    ct.update(b, O, 0, 60, 0);     // expires 30 000
    expect(ct.lookup(UDP, SERVER, CLIENT, 2, 1, 29_999)).toBe(b);
    expect(ct.lookup(UDP, SERVER, CLIENT, 2, 1, 30_000)).toBe(-1);
    expect([ct.size, ct.expired]).toEqual([1, 1]);
    expect(ct.lookup(UDP, CLIENT, SERVER, 1, 2, 30_000)).toBe(-1);   // both keys went with it
    expect(ct.expired).toBe(1);
    expect(ct.lookup(TCP, CLIENT, SERVER, 40000, 80, 30_000)).toBe(a);
    expect(ct.audit()).toEqual([]);
    // The freed index is the next one handed out.
    expect(ct.create(UDP, CLIENT, SERVER, 3, 4, SERVER, CLIENT, 4, 3, 30_000)).toBe(b);
  });

  it('gc examines exactly `budget` entry slots per call from a rotating cursor', () => {
    const ct = new Conntrack(10);
    for (let i = 0; i < 10; i++) {
      const u = ct.create(UDP, CLIENT, SERVER, 1000 + i, 53, SERVER, CLIENT, 53, 1000 + i, 0);
      expect(u).toBe(i);
      ct.update(u, O, 0, 60, i % 2 === 0 ? 0 : 20_000);   // even: expire at 30 000, odd: at 50 000
    }
    const now = 40_000;
    expect(ct.gc(now, 0)).toBe(0);
    expect(ct.gc(now, -5)).toBe(0);
    expect(ct.gc(now, 3)).toBe(2);   // examines 0, 1, 2
    expect(ct.gc(now, 3)).toBe(1);   // 3, 4, 5
    expect(ct.gc(now, 3)).toBe(2);   // 6, 7, 8
    expect(ct.size).toBe(5);
    expect(ct.gc(now, 3)).toBe(0);   // 9, 0, 1: 0 is already gone
    expect(ct.expired).toBe(5);
    expect(ct.gc(now, 1000)).toBe(0);   // one full turn at most, nothing left to find
    for (let i = 0; i < 10; i++) {
      expect(ct.lookup(UDP, SERVER, CLIENT, 53, 1000 + i, now)).toBe(i % 2 === 0 ? -1 : i);
    }
    expect(ct.audit()).toEqual([]);
    expect(ct.gc(50_000, 1000)).toBe(5);
    expect([ct.size, ct.expired]).toEqual([0, 10]);
    expect(ct.audit()).toEqual([]);
  });

  it('gc never removes a live entry, and budget 1 visits each entry slot once per turn', () => {
    const ct = new Conntrack(7);
    for (let i = 0; i < 7; i++) ct.update(ct.create(UDP, CLIENT, SERVER, i, 9, SERVER, CLIENT, 9, i, 0), O, 0, 1, i * 1000);
    // Entries expire at 30 000 + i*1000; at 33 500 entries 0..3 are dead.
    let removed = 0;
    for (let k = 0; k < 7; k++) removed += ct.gc(33_500, 1);
    expect(removed).toBe(4);
    expect(ct.size).toBe(3);
    for (let i = 4; i < 7; i++) expect(ct.lookup(UDP, CLIENT, SERVER, i, 9, 33_500)).toBe(i);
  });
});

// ---- full table ------------------------------------------------------------------------------------

describe('Conntrack: a full table', () => {
  /** Fill a table with UDP entries i = 0..n-1 (sport 1000+i), each updated once at `when(i)`. */
  function fillUdp(ct: Conntrack, n: number, when: (i: number) => number): void {
    for (let i = 0; i < n; i++) {
      const u = ct.create(UDP, CLIENT, SERVER, 1000 + i, 53, SERVER, CLIENT, 53, 1000 + i, 0);
      ct.update(u, O, 0, 60, when(i));
    }
  }
  const findUdp = (ct: Conntrack, i: number, now: number) => ct.lookup(UDP, CLIENT, SERVER, 1000 + i, 53, now);

  it('reclaims an expired entry first (counted as expired, not as an eviction)', () => {
    const ct = new Conntrack(4);
    fillUdp(ct, 4, (i) => (i === 2 ? 0 : 10_000));   // entry 2 expires at 30 000, the rest at 40 000
    const n = ct.create(TCP, CLIENT, SERVER, 7, 7, SERVER, CLIENT, 7, 7, 35_000);
    expect(n).toBe(2);
    expect([ct.size, ct.expired, ct.evictions]).toEqual([4, 1, 0]);
    expect(findUdp(ct, 2, 35_000)).toBe(-1);
    for (const i of [0, 1, 3]) expect(findUdp(ct, i, 35_000)).toBe(i);
    expect(ct.lookup(TCP, SERVER, CLIENT, 7, 7, 35_000)).toBe(n);
    expect(ct.audit()).toEqual([]);
  });

  it('else evicts the entry closest to expiry among those not Established, even if an Established one expires sooner', () => {
    const ct = new Conntrack(4, { tcpEstablishedMs: 1000, udpUnrepliedMs: 50_000, udpRepliedMs: 60_000 });
    const e0 = ct.create(TCP, CLIENT, SERVER, 1, 80, SERVER, CLIENT, 80, 1, 0);
    feed(ct, e0, HANDSHAKE, 0);                                                     // Established, expires 1002
    const u1 = ct.create(UDP, CLIENT, SERVER, 2, 53, SERVER, CLIENT, 53, 2, 0);
    ct.update(u1, O, 0, 1, 0);                                                      // expires 50 000
    const u2 = ct.create(UDP, CLIENT, SERVER, 3, 53, SERVER, CLIENT, 53, 3, 0);
    ct.update(u2, O, 0, 1, 0); ct.update(u2, R, 0, 1, 0);                           // expires 60 000
    const e3 = ct.create(TCP, CLIENT, SERVER, 4, 80, SERVER, CLIENT, 80, 4, 0);
    feed(ct, e3, HANDSHAKE, 0);                                                     // Established, expires 1002
    const n = ct.create(UDP, CLIENT, SERVER, 5, 53, SERVER, CLIENT, 53, 5, 500);
    expect(n).toBe(u1);
    expect([ct.evictions, ct.expired, ct.size]).toEqual([1, 0, 4]);
    expect(ct.lookup(UDP, SERVER, CLIENT, 53, 2, 500)).toBe(-1);
    expect(ct.lookup(UDP, SERVER, CLIENT, 53, 5, 500)).toBe(n);
    expect(ct.lookup(TCP, CLIENT, SERVER, 1, 80, 500)).toBe(e0);
    expect(ct.lookup(TCP, CLIENT, SERVER, 4, 80, 500)).toBe(e3);
    // Next, the newcomer (New, expires 50 500) goes before the replied stream (60 000).
    expect(ct.create(UDP, CLIENT, SERVER, 6, 53, SERVER, CLIENT, 53, 6, 600)).toBe(n);
    expect(ct.lookup(UDP, CLIENT, SERVER, 3, 53, 600)).toBe(u2);
    expect(ct.evictions).toBe(2);
    expect(ct.audit()).toEqual([]);
  });

  it('with only Established entries, evicts the one closest to expiry', () => {
    const ct = new Conntrack(4);
    const when = [30, 10, 40, 20];
    for (let i = 0; i < 4; i++) feed(ct, ct.create(TCP, CLIENT, SERVER, i, 80, SERVER, CLIENT, 80, i, 0), HANDSHAKE, when[i]);
    expect(ct.create(TCP, CLIENT, SERVER, 9, 80, SERVER, CLIENT, 80, 9, 100)).toBe(1);
    expect(ct.lookup(TCP, CLIENT, SERVER, 1, 80, 100)).toBe(-1);
    expect(ct.evictions).toBe(1);
  });

  it('the victim search is bounded (64 entries from the gc cursor) and rotates', () => {
    const ct = new Conntrack(200);
    fillUdp(ct, 200, () => 0);
    for (let i = 0; i < 200; i++) if (i !== 100) ct.update(i, O, 0, 60, 20_000);   // entry 100: 30 000, others 50 000
    const now = 40_000;
    // First create scans entries 0..63: none dead, all equal: the first one seen is evicted.
    expect(ct.create(UDP, PEER, SERVER, 1, 53, SERVER, PEER, 53, 1, now)).toBe(0);
    expect([ct.evictions, ct.expired]).toEqual([1, 0]);
    // The next scans 64..127 and finds entry 100 dead.
    expect(ct.create(UDP, PEER, SERVER, 2, 53, SERVER, PEER, 53, 2, now)).toBe(100);
    expect([ct.evictions, ct.expired]).toEqual([1, 1]);
    // gc continues from there (101..110).
    expect(ct.gc(60_000, 10)).toBe(10);
    expect(ct.size).toBe(190);
    expect(ct.audit()).toEqual([]);
  });

  it('never fails: a table of one keeps taking new connections', () => {
    const ct = new Conntrack(1);
    for (let i = 0; i < 1000; i++) {
      expect(ct.create(UDP, CLIENT, SERVER, i, 53, SERVER, CLIENT, 53, i, i)).toBe(0);
      expect(ct.lookup(UDP, SERVER, CLIENT, 53, i, i)).toBe(0);
      if (i > 0) expect(ct.lookup(UDP, SERVER, CLIENT, 53, i - 1, i)).toBe(-1);
    }
    expect([ct.size, ct.evictions, ct.expired]).toEqual([1, 999, 0]);
    expect(ct.audit()).toEqual([]);
  });
});

// ---- the hash index --------------------------------------------------------------------------------

describe('Conntrack: hash index under collisions', () => {
  it('backward-shift deletion keeps every other entry findable in a probe run that wraps around the end', () => {
    const r = rng(42);
    for (let round = 0; round < 30; round++) {
      const ct = new Conntrack(8);   // 32 slots
      const mask = ct.hashSlots - 1;
      expect(ct.hashSlots).toBe(32);
      // Find no-NAT UDP connections whose original AND reply keys both start probing at a chosen
      // slot: 4 at the last slot (the run wraps to 0), 2 at slot 0, 2 at slot 2. Their 16 slots
      // form one run: 31, 0, 1, ..., 14.
      const homes = [31, 31, 31, 31, 0, 0, 2, 2];
      const conns: { src: number; sport: number }[] = [];
      for (const home of homes) {
        for (;;) {
          const src = ip('10.0.0.0') + (r() & 0xffff), sport = r() & 0xffff;
          if ((ct.hash(UDP, src, SERVER, sport, 53) & mask) !== home || (ct.hash(UDP, SERVER, src, 53, sport) & mask) !== home) continue;
          if (conns.some((c) => c.src === src && c.sport === sport)) continue;
          conns.push({ src, sport });
          break;
        }
      }
      const idx = conns.map((c) => ct.create(UDP, c.src, SERVER, c.sport, 53, SERVER, c.src, 53, c.sport, 0));
      expect(ct.audit()).toEqual([]);
      const alive = new Set(conns.keys());
      const check = () => {
        for (let k = 0; k < conns.length; k++) {
          const c = conns[k];
          expect(ct.lookup(UDP, c.src, SERVER, c.sport, 53, 1)).toBe(alive.has(k) ? idx[k] : -1);
          if (alive.has(k)) expect(ct.lastDir).toBe(O);
          expect(ct.lookup(UDP, SERVER, c.src, 53, c.sport, 1)).toBe(alive.has(k) ? idx[k] : -1);
          if (alive.has(k)) expect(ct.lastDir).toBe(R);
        }
        expect(ct.audit()).toEqual([]);
        expect(ct.size).toBe(alive.size);
      };
      // Delete in a random order, then bring some back (into whatever slots are free) and delete again.
      const order = [...alive].sort(() => (r() & 1) - 0.5);
      for (const k of order.slice(0, 5)) { ct.delete(idx[k]); alive.delete(k); check(); }
      for (const k of order.slice(0, 3)) {
        const c = conns[k];
        idx[k] = ct.create(UDP, c.src, SERVER, c.sport, 53, SERVER, c.src, 53, c.sport, 0);
        alive.add(k); check();
      }
      for (const k of [...alive]) { ct.delete(idx[k]); alive.delete(k); check(); }
    }
  });

  it('agrees with a Map model over thousands of random operations (lookup, create, update, delete, gc, eviction)', () => {
    for (const seed of [1, 2, 3, 0xc0ffee]) differential(seed, 12_000);
  });
});

/**
 * The model: a Map from tuple text to entry, plus a replay of the gc cursor and of the
 * full-table victim choice. Only lookups, sizes and counters are compared.
 */
interface ModelEntry { idx: number; proto: number; okey: string; rkey: string; expires: number; state: number }

function differential(seed: number, ops: number): void {
  const cap = 32, SCAN = 64, EST = 60_000;
  const ct = new Conntrack(cap, { tcpEstablishedMs: EST });
  const r = rng(seed);
  const byKey = new Map<string, { m: ModelEntry; dir: number }>();
  const byIdx = new Map<number, ModelEntry>();
  let cursor = 0, expired = 0, evictions = 0, now = 1_000_000;

  const addrs = [ip('10.244.1.5'), ip('10.244.1.6'), ip('192.168.56.11'), ip('10.96.0.10')];
  const pick = <T>(xs: T[]) => xs[r() % xs.length];
  const key = (p: number, s: number, d: number, sp: number, dp: number) => `${p} ${s} ${d} ${sp} ${dp}`;
  const randomTuple = (): [number, number, number, number, number] =>
    [pick([TCP, UDP]), pick(addrs), pick(addrs), 1000 + (r() & 7), pick([53, 80])];

  const remove = (m: ModelEntry) => { byKey.delete(m.okey); byKey.delete(m.rkey); byIdx.delete(m.idx); };
  const modelLookup = (k: string): [number, number] => {
    const hit = byKey.get(k);
    if (!hit) return [-1, -1];
    if (hit.m.expires <= now) { remove(hit.m); expired++; return [-1, -1]; }
    return [hit.m.idx, hit.dir];
  };
  const lookupBoth = (t: number[]) => {
    const got = ct.lookup(t[0], t[1], t[2], t[3], t[4], now);
    const [want, dir] = modelLookup(key(t[0], t[1], t[2], t[3], t[4]));
    expect(got, `seed ${seed}: lookup ${t}`).toBe(want);
    expect(ct.lastDir).toBe(dir);
    return got;
  };
  const makeRoom = () => {
    let soon: ModelEntry | undefined, soonOpen: ModelEntry | undefined;
    for (let k = 0; k < Math.min(SCAN, cap); k++) {
      const m = byIdx.get(cursor);
      cursor = (cursor + 1) % cap;
      if (!m) continue;
      if (m.expires <= now) { remove(m); expired++; return; }
      if (!soon || m.expires < soon.expires) soon = m;
      if (m.state !== S.Established && (!soonOpen || m.expires < soonOpen.expires)) soonOpen = m;
    }
    remove((soonOpen ?? soon)!);
    evictions++;
  };

  for (let op = 0; op < ops; op++) {
    now += r() % 400;
    if (r() % 500 === 0) now += 100_000;
    const dice = r() % 100;
    if (dice < 35) {
      lookupBoth(randomTuple());
    } else if (dice < 60) {
      // create, the pipeline's way: look both keys up first, create only on a double miss.
      const o = randomTuple();
      const nat = r() % 2 === 0;
      const rt = nat ? [o[0], pick(addrs), pick(addrs), pick([53, 80, 8080]), 1000 + (r() & 7)] : [o[0], o[2], o[1], o[4], o[3]];
      const okey = key(o[0], o[1], o[2], o[3], o[4]), rkey = key(rt[0], rt[1], rt[2], rt[3], rt[4]);
      if (okey === rkey) continue;
      if (lookupBoth(o) >= 0 || lookupBoth(rt) >= 0) continue;
      if (byIdx.size === cap) makeRoom();
      const idx = ct.create(o[0], o[1], o[2], o[3], o[4], rt[1], rt[2], rt[3], rt[4], now);
      expect(byIdx.has(idx), `seed ${seed}: create returned live index ${idx}`).toBe(false);
      const m: ModelEntry = { idx, proto: o[0], okey, rkey, expires: 0, state: S.New };
      if (o[0] === TCP) {
        feed(ct, idx, HANDSHAKE, now); now += 3;
        m.state = S.Established; m.expires = now - 1 + EST;
      } else {
        ct.update(idx, O, 0, 60, now);
        m.state = S.UdpUnreplied; m.expires = now + 30_000;
      }
      byIdx.set(idx, m); byKey.set(okey, { m, dir: O }); byKey.set(rkey, { m, dir: R });
    } else if (dice < 80) {
      if (byIdx.size === 0) continue;
      const m = pick([...byIdx.values()]);
      const dir = r() & 1;
      expect(ct.update(m.idx, dir, m.proto === TCP ? PSH | ACK : 0, 100, now)).toBe(true);
      if (m.proto === TCP) m.expires = now + EST;
      else {
        if (dir === R) m.state = S.UdpReplied;
        m.expires = now + (m.state === S.UdpReplied ? 120_000 : 30_000);
      }
    } else if (dice < 90) {
      if (byIdx.size === 0) continue;
      const m = pick([...byIdx.values()]);
      ct.delete(m.idx);
      remove(m);
    } else {
      const budget = r() % 80;
      let removed = 0;
      for (let k = 0; k < Math.min(budget, cap); k++) {
        const m = byIdx.get(cursor);
        cursor = (cursor + 1) % cap;
        if (m && m.expires <= now) { remove(m); removed++; }
      }
      expired += removed;
      expect(ct.gc(now, budget), `seed ${seed}: gc`).toBe(removed);
    }
    expect(ct.size).toBe(byIdx.size);
    expect([ct.expired, ct.evictions]).toEqual([expired, evictions]);
    if (op % 100 === 99) {
      // Every live entry is found by both keys (lookups of unexpired keys change nothing).
      expect(ct.audit()).toEqual([]);
      for (const [k, { m, dir }] of byKey) {
        if (m.expires <= now) continue;
        const [p, s, d, sp, dp] = k.split(' ').map(Number);
        expect(ct.lookup(p, s, d, sp, dp, now), `seed ${seed} op ${op}: ${k}`).toBe(m.idx);
        expect(ct.lastDir).toBe(dir);
      }
      for (const m of byIdx.values()) {
        expect([m.idx, ct.state[m.idx], ct.expiresMs[m.idx]]).toEqual([m.idx, m.state, m.expires]);
      }
    }
  }
  expect(evictions, 'the test should exercise eviction').toBeGreaterThan(0);
  expect(expired, 'and expiry').toBeGreaterThan(0);
}

// ---- allocation ------------------------------------------------------------------------------------

/**
 * A stand-in for the pipeline: per packet, a lookup; on a miss, create + update; now and then a
 * delete and a gc step. The addresses are 192.168/16, i.e. above 2^31, passed as int32 the way the
 * module header asks of hot-path callers: as u32 they would be heap numbers, boxed by V8 at every
 * call it does not inline (an allocation in the caller, not in the table).
 */
function churn(ct: Conntrack, srcs: Int32Array, n: number, now: number, dst: number, backend: number): number {
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const k = Math.imul(i, 0x9e3779b1) >>> 22;   // 0..1023
    const src = srcs[k & 255], sport = 1024 + k;
    let e = ct.lookup(TCP, src, dst, sport, 443, now);
    if (e < 0) {
      e = ct.create(TCP, src, dst, sport, 443, backend, src, 8443, sport, now);
      ct.update(e, CtDir.Original, SYN, 60, now);
    } else {
      hits++;
      ct.update(e, ct.lastDir, ACK, 1500, now);
      if ((i & 63) === 0) ct.delete(e);
    }
    if ((i & 255) === 0) ct.gc(now, 16);
  }
  return hits;
}

describe('Conntrack: no allocation on the hot path', () => {
  it('a million lookups/updates with creates, deletes and gc steps allocate nothing once warm', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as (() => void) | undefined;
    if (typeof gc !== 'function') return;   // cannot force a collection here: nothing reliable to measure
    const ct = new Conntrack(512);           // smaller than the 1024 keys: evictions happen too
    const srcs = new Int32Array(256);
    for (let i = 0; i < 256; i++) srcs[i] = ip('192.168.0.0') + i * 7;
    const dst = ip('192.168.10.10') | 0, backend = ip('192.168.11.11') | 0;
    let now = 1_000_000.5;
    for (let b = 0; b < 400; b++) churn(ct, srcs, 1000, now += 100, dst, backend);   // warm up: let V8 optimise

    // Count collections during the measured run: any allocation of ~16 bytes per operation would
    // fill the young generation several times over and show up here even if heapUsed then fell.
    const gcs: number[] = [];
    const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) gcs.push(e.startTime); });
    obs.observe({ entryTypes: ['gc'] });
    gc();
    await new Promise((res) => setTimeout(res, 20));
    const t0 = performance.now();
    const before = process.memoryUsage().heapUsed;
    let hits = 0;
    for (let b = 0; b < 1000; b++) hits += churn(ct, srcs, 1000, now += 100, dst, backend);   // 1e6 packets
    const after = process.memoryUsage().heapUsed;
    const t1 = performance.now();
    await new Promise((res) => setTimeout(res, 50));
    obs.disconnect();
    expect(hits).toBeGreaterThan(100_000);        // lookups hit, miss, create, evict, delete, collect:
    expect(ct.evictions).toBeGreaterThan(100_000); // every path ran in the measured loop
    expect(gcs.filter((t) => t >= t0 && t <= t1)).toEqual([]);
    expect(after - before).toBeLessThan(1 << 20);
    expect(ct.audit()).toEqual([]);
  });
});
