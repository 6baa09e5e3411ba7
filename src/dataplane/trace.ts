/**
 * Packet tracing: what every stage decided for one packet, and why, in Kubernetes terms.
 *
 * A TraceSession is attached to the data plane for a bounded number of packets or a bounded time.
 * While none is attached the pipeline pays one `undefined` check per frame; while one is attached,
 * a frame that matches the filter sets `tracing`, and only then do the stages format their
 * decisions (strings are built only for traced packets, and a session traces at most `maxPackets`,
 * so tracing cannot overload the daemon).
 *
 *   filter ─▶ begin (port, frame summary) ─▶ step per stage ─▶ end (forwarded or drop reason)
 *
 * A session can keep only the first packet of each new connection (`newOnly`) or only dropped
 * packets (`dropsOnly`): steps are collected, and the record is kept or discarded at `end`.
 * Records carry a wall-clock timestamp in microseconds, so the halves of a cross-node trace,
 * collected from two daemons, can be put back in order.
 */
export interface TraceFilter {
  /** Either address of the packet (source or destination), host-order u32. */
  ip?: number;
  src?: number;
  dst?: number;
  proto?: number;
  /** Either port (source or destination). */
  port?: number;
  /** Only packets received on this port number. */
  inPort?: number;
  newOnly?: boolean;
  dropsOnly?: boolean;
}

export interface TraceStep { stage: string; detail: string }
export interface TraceRecord {
  node: string;
  timeUs: number;
  inPort: string;
  packet: string;
  steps: TraceStep[];
  verdict: string;
  dropped: boolean;
  synthetic: boolean;
}

export class TraceSession {
  readonly filter: TraceFilter;
  readonly maxPackets: number;
  readonly deadlineMs: number;
  readonly records: TraceRecord[] = [];
  private readonly sink?: (r: TraceRecord) => void;
  /** The record being built (only while a matching packet is in the pipeline). */
  current?: TraceRecord;
  sawNewConnection = false;
  synthetic = false;
  node: string;

  constructor(node: string, filter: TraceFilter, maxPackets: number, durationMs: number, sink?: (r: TraceRecord) => void) {
    this.node = node; this.filter = filter; this.maxPackets = maxPackets;
    this.deadlineMs = Date.now() + durationMs; this.sink = sink;
  }

  /** True when the session has what it asked for or ran out of time. */
  get done(): boolean { return this.records.length >= this.maxPackets || Date.now() > this.deadlineMs; }

  /** Does a packet with these fields match? (Called only while a session is attached.) */
  matches(inPort: number, src: number, dst: number, proto: number, sport: number, dport: number): boolean {
    const f = this.filter;
    if (f.inPort !== undefined && f.inPort !== inPort) return false;
    if (f.src !== undefined && f.src !== src) return false;
    if (f.dst !== undefined && f.dst !== dst) return false;
    if (f.ip !== undefined && f.ip !== src && f.ip !== dst) return false;
    if (f.proto !== undefined && f.proto !== proto) return false;
    if (f.port !== undefined && f.port !== sport && f.port !== dport) return false;
    return true;
  }

  begin(inPort: string, packet: string): void {
    this.current = { node: this.node, timeUs: Math.round((performance.timeOrigin + performance.now()) * 1000), inPort, packet, steps: [], verdict: '', dropped: false, synthetic: this.synthetic };
    this.sawNewConnection = false;
  }

  step(stage: string, detail: string): void { this.current?.steps.push({ stage, detail }); }

  /** Finish the current packet; keep it unless the filter's newOnly/dropsOnly say otherwise. */
  end(verdict: string, dropped: boolean): void {
    const r = this.current;
    this.current = undefined;
    if (!r) return;
    r.verdict = verdict; r.dropped = dropped;
    if (this.filter.newOnly && !this.sawNewConnection) return;
    if (this.filter.dropsOnly && !dropped) return;
    if (this.records.length >= this.maxPackets) return;
    this.records.push(r);
    this.sink?.(r);
  }
}

/** A trace record as text, one stage per line (what `podwire trace` prints). */
export function formatTrace(r: TraceRecord): string {
  const t = new Date(r.timeUs / 1000).toISOString().slice(11, 23);
  const head = `${t} ${r.node}${r.synthetic ? ' (synthetic)' : ''} ${r.inPort}: ${r.packet}`;
  const w = Math.max(8, ...r.steps.map((s) => s.stage.length));
  const lines = r.steps.map((s) => `    ${s.stage.padEnd(w)}  ${s.detail}`);
  return [head, ...lines, `    ${'verdict'.padEnd(w)}  ${r.verdict}`].join('\n');
}
