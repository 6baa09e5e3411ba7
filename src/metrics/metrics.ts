/**
 * Prometheus metrics: the data plane's counters, rendered at scrape time.
 *
 * The hot path never calls prom-client. It bumps plain typed-array counters (dataplane/counters.ts)
 * and table fields (conntrack evictions, service selections); this module reads them only when
 * someone scrapes `/metrics`. Every metric family below is a prom-client metric whose `collect()`
 * callback runs at scrape time: it clears the family and refills it from the `MetricsSource` the
 * daemon provides. So a series appears and disappears with the thing it describes (a detached pod's
 * port stops being exported), and no per-packet work is ever spent on metrics.
 *
 * Counters stay counters: a family filled from an external monotonic value is still a prom-client
 * `Counter` (reset, then `inc` by the current value), so the exposition says `# TYPE ... counter`
 * and `rate()` works. A pod port being reused resets its counters (Counters.resetPort), which
 * Prometheus treats as any counter reset.
 *
 * Each `Metrics` owns a fresh `Registry` (never prom-client's global default): two daemons in one
 * process (the unit tests, the lab) never see each other's series. prom-client's default process
 * metrics are added to the same registry with the `podwire_` prefix; they include event-loop lag
 * (`podwire_nodejs_eventloop_lag_seconds` and its min/max/mean/stddev/p50/p90/p99 companions,
 * measured with perf_hooks.monitorEventLoopDelay), which is the figure that tells a busy data plane
 * from a stalled one.
 *
 * Families (all `podwire_`; base units; `_total` on counters):
 *   node_info{node}                                 gauge, always 1: which node this daemon serves
 *   port_{rx,tx}_{packets,bytes}_total{port,pod}    per attached port ("default/web-1", "host", "overlay")
 *   drops_total{reason}                             every reason in wire/drop.ts (not `none`), zeros too
 *   port_drops_total{port,pod,reason}               only the non-zero ones (ports x reasons is large)
 *   conntrack_entries, conntrack_capacity           gauges
 *   conntrack_evictions_total, conntrack_expired_total
 *   service_backend_selections_total{service,backend,pod}
 *   policy_verdicts_total{policy,direction,rule,verdict}
 *   vxlan_{encapsulated,decapsulated}_packets_total, icmp_errors_sent_total,
 *   icmp_errors_rate_limited_total, bridge_floods_total, local_replies_total
 *   batch_frames                                    histogram of frames per batch
 *
 * The source's callbacks are called once per family per scrape (several times per scrape in all);
 * they must be cheap and side-effect free. An exception in one fails the scrape with HTTP 500.
 *
 * `listen` serves GET (and HEAD) /metrics on the given address with node:http; every other path is
 * a 404. `close` stops the server and drops kept-alive connections so the port is free at once.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as prom from 'prom-client';
import type { Counters } from '../dataplane/counters.ts';
import { DROP_INFO, DROP_COUNT } from '../wire/drop.ts';

/**
 * Frames-per-batch histogram as the source keeps it.
 *
 * `le` are the finite upper bounds, ascending. `counts[i]` is PER BUCKET (not cumulative): the
 * number of batches with `le[i-1] < frames <= le[i]` (for i = 0: `frames <= le[0]`). Batches above
 * the last bound are in no bucket but are included in `count` (they land in `+Inf`). `sum` is the
 * total of frames over all batches, `count` the number of batches. `counts` may be a typed array.
 */
export interface BatchSizeHistogram {
  le: ArrayLike<number>;
  counts: ArrayLike<number>;
  sum: number;
  count: number;
}

/** What the daemon gives the metrics endpoint: live views, read at scrape time only. */
export interface MetricsSource {
  /** The node's name (exported as `podwire_node_info{node}`). */
  node: string;
  /** The data plane's counters; read, never written. */
  counters: Counters;
  /** Attached ports: `label` is the pod ("default/web-1") or "host" / "overlay"; `kind` is informative. */
  portLabels(): { port: number; label: string; kind: string }[];
  /** Service ports (`key` e.g. "default/web:80/TCP") and their backends with selection counts. */
  services(): { key: string; backends: { address: string; pod?: string; selections: number }[] }[];
  /** Connection tracking: live entries, capacity, and the monotonic eviction / expiry counts. */
  conntrack(): { entries: number; capacity: number; evictions: number; expired: number };
  /** NetworkPolicy verdict counts (monotonic) by policy ("ns/name"), direction, rule index, verdict. */
  policyVerdicts(): { policy: string; direction: string; rule: number; verdict: 'allow' | 'deny'; count: number }[];
  /**
   * Frames per batch (see BatchSizeHistogram). Optional: without it the histogram has only the
   * `+Inf` bucket, with `count` = counters.batches and `sum` = counters.batchFrames.
   */
  batchSizeHistogram?(): BatchSizeHistogram;
}

/** Bucket bounds for frames per batch: powers of two up to the batch limit (frame/slab.ts BATCH_MAX = 64). */
export const DEFAULT_BATCH_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64];

/**
 * A hot-path-safe histogram the daemon can keep for `batchSizeHistogram`: `observe` is a short
 * scan over a few bounds and two additions; it allocates nothing. `snapshot()` hands the live
 * arrays to the metrics endpoint (no copy).
 */
export class BatchHistogram implements BatchSizeHistogram {
  readonly le: readonly number[];
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(le: readonly number[] = DEFAULT_BATCH_BUCKETS) {
    for (let i = 1; i < le.length; i++) {
      if (!(le[i] > le[i - 1])) throw new RangeError(`histogram bounds must ascend, got ${le.join(',')}`);
    }
    this.le = le.slice();
    this.counts = new Float64Array(le.length);
  }

  /** Record one batch of `frames` frames. */
  observe(frames: number): void {
    const le = this.le, n = le.length;
    let i = 0;
    while (i < n && frames > le[i]) i++;
    if (i < n) this.counts[i]++;
    this.sum += frames;
    this.count++;
  }

  snapshot(): BatchSizeHistogram {
    return this;
  }
}

type Labels<L extends string> = Record<L, string>;

/** A counter family refilled from `fill` at every scrape; negative or non-finite values are skipped. */
function sourcedCounter<L extends string>(registry: prom.Registry, name: string, help: string, labelNames: readonly L[],
                                          fill: (emit: (labels: Labels<L>, value: number) => void) => void): prom.Counter<L> {
  return new prom.Counter<L>({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      fill((labels, value) => { if (Number.isFinite(value) && value >= 0) this.inc(labels, value); });
    },
  });
}

/** A gauge family refilled from `fill` at every scrape. */
function sourcedGauge<L extends string>(registry: prom.Registry, name: string, help: string, labelNames: readonly L[],
                                        fill: (emit: (labels: Labels<L>, value: number) => void) => void): prom.Gauge<L> {
  return new prom.Gauge<L>({
    name, help, labelNames, registers: [registry],
    collect() {
      this.reset();
      fill((labels, value) => this.set(labels, value));
    },
  });
}

/**
 * A histogram whose buckets are not observed here but read from the source at scrape time.
 * prom-client's Histogram has no way to load bucket counts, so `get` (JSON) and `getForPromString`
 * (what Registry.metrics() calls) are replaced with a rendering of the source's snapshot.
 */
class SourcedHistogram extends prom.Histogram<string> {
  private readonly family: string;
  private readonly helpText: string;
  private readonly read: () => BatchSizeHistogram;

  constructor(registry: prom.Registry, name: string, help: string, read: () => BatchSizeHistogram) {
    super({ name, help, labelNames: [], registers: [registry], buckets: [] });
    this.family = name;
    this.helpText = help;
    this.read = read;
  }

  override async get(): Promise<HistogramExport> {
    const h = this.read(), name = this.family;
    const n = Math.min(h.le.length, h.counts.length);
    const values: HistogramExport['values'] = [];
    let acc = 0;
    for (let i = 0; i < n; i++) {
      acc += h.counts[i];
      values.push({ metricName: `${name}_bucket`, labels: { le: h.le[i] }, value: acc });
    }
    const count = Math.max(acc, h.count);
    values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: count });
    values.push({ metricName: `${name}_sum`, labels: {}, value: h.sum });
    values.push({ metricName: `${name}_count`, labels: {}, value: count });
    // The declared `type` is an enum that prom-client does not export at run time; the real value is the string.
    return { name, help: this.helpText, type: 'histogram' as unknown as prom.MetricType, values, aggregator: 'sum' } as HistogramExport;
  }

  /** Registry.metrics() prefers this over get() when it exists (Histogram defines it). */
  getForPromString(): Promise<HistogramExport> {
    return this.get();
  }
}

type HistogramExport = Awaited<ReturnType<prom.Histogram<string>['get']>>;

export class Metrics {
  readonly registry: prom.Registry;
  private server: http.Server | null = null;

  constructor(src: MetricsSource) {
    const r = this.registry = new prom.Registry();
    prom.collectDefaultMetrics({ register: r, prefix: 'podwire_' });
    const c = src.counters;

    sourcedGauge(r, 'podwire_node_info', 'The node this podwire daemon serves (always 1).', ['node'],
      (emit) => emit({ node: src.node }, 1));

    // ---- per port ----
    const perPort = (name: string, help: string, arr: (c: Counters) => Float64Array) =>
      sourcedCounter(r, name, help, ['port', 'pod'], (emit) => {
        const a = arr(c);
        for (const p of src.portLabels()) if (p.port >= 0 && p.port < a.length) emit({ port: String(p.port), pod: p.label }, a[p.port]);
      });
    perPort('podwire_port_rx_packets_total', 'Frames received from the port (read from its device).', (c) => c.rxPackets);
    perPort('podwire_port_rx_bytes_total', 'Bytes of frames received from the port.', (c) => c.rxBytes);
    perPort('podwire_port_tx_packets_total', 'Frames sent to the port (accepted by its device).', (c) => c.txPackets);
    perPort('podwire_port_tx_bytes_total', 'Bytes of frames sent to the port.', (c) => c.txBytes);

    // ---- drops ----
    sourcedCounter(r, 'podwire_drops_total', 'Frames dropped (or consumed) by the data plane, by reason (see wire/drop.ts).', ['reason'],
      (emit) => { for (let i = 1; i < DROP_COUNT; i++) emit({ reason: DROP_INFO[i].label }, c.drops[i]); });
    sourcedCounter(r, 'podwire_port_drops_total', 'Frames dropped by input port and reason; only non-zero series are exported.',
      ['port', 'pod', 'reason'], (emit) => {
        for (const p of src.portLabels()) {
          if (p.port < 0 || p.port >= c.maxPorts) continue;
          const base = p.port * DROP_COUNT;
          for (let i = 1; i < DROP_COUNT; i++) {
            const v = c.portDrops[base + i];
            if (v > 0) emit({ port: String(p.port), pod: p.label, reason: DROP_INFO[i].label }, v);
          }
        }
      });

    // ---- conntrack ----
    sourcedGauge(r, 'podwire_conntrack_entries', 'Live connection tracking entries.', [],
      (emit) => emit({}, src.conntrack().entries));
    sourcedGauge(r, 'podwire_conntrack_capacity', 'Connection tracking table capacity (entries).', [],
      (emit) => emit({}, src.conntrack().capacity));
    sourcedCounter(r, 'podwire_conntrack_evictions_total', 'Live connection tracking entries evicted because the table was full.', [],
      (emit) => emit({}, src.conntrack().evictions));
    sourcedCounter(r, 'podwire_conntrack_expired_total', 'Connection tracking entries reclaimed after their timeout.', [],
      (emit) => emit({}, src.conntrack().expired));

    // ---- services and policy ----
    sourcedCounter(r, 'podwire_service_backend_selections_total', 'New connections steered to each Service backend.',
      ['service', 'backend', 'pod'], (emit) => {
        for (const s of src.services()) for (const b of s.backends) emit({ service: s.key, backend: b.address, pod: b.pod ?? '' }, b.selections);
      });
    sourcedCounter(r, 'podwire_policy_verdicts_total', 'Connections judged by NetworkPolicy, by policy, direction, rule and verdict.',
      ['policy', 'direction', 'rule', 'verdict'], (emit) => {
        for (const v of src.policyVerdicts()) emit({ policy: v.policy, direction: v.direction, rule: String(v.rule), verdict: v.verdict }, v.count);
      });

    // ---- scalar counters ----
    const scalar = (name: string, help: string, get: (c: Counters) => number) =>
      sourcedCounter(r, name, help, [], (emit) => emit({}, get(c)));
    scalar('podwire_vxlan_encapsulated_packets_total', 'Frames encapsulated in VXLAN toward another node.', (c) => c.vxlanEncap);
    scalar('podwire_vxlan_decapsulated_packets_total', 'VXLAN datagrams from other nodes decapsulated.', (c) => c.vxlanDecap);
    scalar('podwire_icmp_errors_sent_total', 'ICMP errors generated by the data plane (unreachable, time exceeded, ...).', (c) => c.icmpErrorsSent);
    scalar('podwire_icmp_errors_rate_limited_total', 'ICMP errors not sent because of the rate limit.', (c) => c.icmpErrorsRateLimited);
    scalar('podwire_bridge_floods_total', 'Frames flooded to all ports of the bridge (broadcast or unknown unicast).', (c) => c.floods);
    scalar('podwire_local_replies_total', 'Frames answered by the daemon itself (ARP for and pings of the gateway).', (c) => c.localReplies);

    // ---- batches ----
    new SourcedHistogram(r, 'podwire_batch_frames', 'Frames per batch read from a device.',
      () => src.batchSizeHistogram?.() ?? { le: [], counts: [], sum: c.batchFrames, count: c.batches });
  }

  /** The whole exposition, as a scrape would see it. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Serve GET /metrics on `host:port` (port 0: any free port). Resolves with the bound port. */
  async listen(host: string, port: number): Promise<number> {
    if (this.server) throw new Error('metrics: already listening');
    const server = http.createServer((req, res) => this.handle(req, res));
    this.server = server;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => { server.off('error', reject); resolve(); });
      });
    } catch (e) {
      this.server = null;
      throw new Error(`metrics: cannot listen on ${host}:${port}: ${(e as Error).message}`, { cause: e });
    }
    return (server.address() as AddressInfo).port;
  }

  /** Stop serving; kept-alive connections are closed too. Safe to call when not listening. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'Content-Type': 'text/plain; charset=utf-8', Allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    this.registry.metrics().then(
      (body) => {
        res.writeHead(200, { 'Content-Type': this.registry.contentType, 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: unknown) => {
        res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`metrics: ${(e as Error)?.message ?? String(e)}\n`);
      },
    );
  }
}
