/**
 * The Prometheus endpoint (src/metrics/metrics.ts), scraped over real HTTP on 127.0.0.1.
 *
 * A fake MetricsSource wraps a real Counters object and a few plain arrays; the exposition text is
 * parsed by a small parser written here (not prom-client's) and checked for names, TYPE lines,
 * labels and values. Counters are then moved and the endpoint scraped again; ports come and go.
 * Also: the 404 path, the per-instance registry (nothing lands in prom-client's global one), the
 * default process metrics with event-loop lag, and close() freeing the port.
 */
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import * as prom from 'prom-client';
import { Metrics, BatchHistogram, type MetricsSource, type BatchSizeHistogram } from '../../src/metrics/metrics.ts';
import { Counters } from '../../src/dataplane/counters.ts';
import { Drop, DROP_INFO, DROP_COUNT } from '../../src/wire/drop.ts';

// ---- a tiny text-exposition parser ------------------------------------------------------------

interface Sample { name: string; labels: Record<string, string>; value: number }
interface Exposition { types: Map<string, string>; helps: Map<string, string>; samples: Sample[] }

function parseLabels(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const eq = s.indexOf('=', i);
    const key = s.slice(i, eq).trim();
    if (s[eq + 1] !== '"') throw new Error(`bad label value in {${s}}`);
    let j = eq + 2, v = '';
    for (; s[j] !== '"'; j++) {
      if (j >= s.length) throw new Error(`unterminated label value in {${s}}`);
      if (s[j] === '\\') { j++; v += s[j] === 'n' ? '\n' : s[j]; } else v += s[j];
    }
    out[key] = v;
    i = j + 1;
    if (s[i] === ',') i++;
  }
  return out;
}

function parse(text: string): Exposition {
  const types = new Map<string, string>(), helps = new Map<string, string>(), samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) { expect(types.has(m[1]), `TYPE ${m[1]} given twice`).toBe(false); types.set(m[1], m[2]); continue; }
    m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) { helps.set(m[1], m[2]); continue; }
    expect(line.startsWith('#'), `unexpected comment: ${line}`).toBe(false);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable line: ${line}`);
    // Go's ParseFloat (Prometheus) reads NaN case-insensitively; prom-client writes "Nan" (an empty
    // event-loop-delay histogram has no mean yet).
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : /^nan$/i.test(m[3]) ? NaN : Number(m[3]);
    expect(Number.isNaN(value) && !/^nan$/i.test(m[3]), `bad value in ${line}`).toBe(false);
    samples.push({ name: m[1], labels: m[2] ? parseLabels(m[2]) : {}, value });
  }
  return { types, helps, samples };
}

/** The samples of one series name whose labels include `want`. */
function find(e: Exposition, name: string, want: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v));
}
/** The value of the one sample matching, or undefined if none; fails if several match. */
function value(e: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  const hits = find(e, name, labels);
  expect(hits.length, `${name}${JSON.stringify(labels)} matched ${hits.length} samples`).toBeLessThanOrEqual(1);
  return hits[0]?.value;
}

// ---- a fake source ----------------------------------------------------------------------------

interface Fake extends MetricsSource {
  ports: { port: number; label: string; kind: string }[];
  svc: ReturnType<MetricsSource['services']>;
  ct: ReturnType<MetricsSource['conntrack']>;
  verdicts: ReturnType<MetricsSource['policyVerdicts']>;
  hist: BatchHistogram;
}

function fakeSource(): Fake {
  const counters = new Counters(16);
  const f: Fake = {
    node: 'node-a',
    counters,
    ports: [
      { port: 0, label: 'host', kind: 'host' },
      { port: 1, label: 'overlay', kind: 'overlay' },
      { port: 2, label: 'default/web-1', kind: 'pod' },
      { port: 3, label: 'default/web-2', kind: 'pod' },
    ],
    svc: [
      { key: 'default/web:80/TCP', backends: [
        { address: '10.244.1.2:8080', pod: 'default/web-1', selections: 7 },
        { address: '10.244.2.9:8080', selections: 3 },   // a remote backend: pod unknown here
      ] },
    ],
    ct: { entries: 12, capacity: 65536, evictions: 0, expired: 4 },
    verdicts: [
      { policy: 'default/allow-web', direction: 'ingress', rule: 0, verdict: 'allow', count: 5 },
      { policy: 'default/deny-all', direction: 'ingress', rule: -1, verdict: 'deny', count: 2 },
    ],
    hist: new BatchHistogram(),
    portLabels() { return f.ports; },
    services() { return f.svc; },
    conntrack() { return f.ct; },
    policyVerdicts() { return f.verdicts; },
    batchSizeHistogram() { return f.hist.snapshot(); },
  };
  counters.rxPackets[2] = 100; counters.rxBytes[2] = 9800;
  counters.txPackets[2] = 90; counters.txBytes[2] = 8820;
  counters.rxPackets[0] = 5; counters.rxBytes[0] = 420;
  counters.drop(2, Drop.SpoofedSrcIp); counters.drop(2, Drop.SpoofedSrcIp); counters.drop(3, Drop.Ipv4BadChecksum);
  counters.drop(-1, Drop.NoRoute);
  counters.vxlanEncap = 11; counters.vxlanDecap = 13; counters.icmpErrorsSent = 1; counters.floods = 6;
  counters.localReplies = 4; counters.icmpErrorsRateLimited = 2;
  for (const n of [1, 1, 3, 64, 64, 64, 100]) f.hist.observe(n);
  return f;
}

const live: Metrics[] = [];
afterEach(async () => { for (const m of live.splice(0)) await m.close(); });

async function serve(src: MetricsSource): Promise<{ m: Metrics; port: number; url: string }> {
  const m = new Metrics(src);
  live.push(m);
  const port = await m.listen('127.0.0.1', 0);
  return { m, port, url: `http://127.0.0.1:${port}` };
}

async function scrape(url: string): Promise<{ e: Exposition; text: string; type: string | null }> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  const text = await res.text();
  return { e: parse(text), text, type: res.headers.get('content-type') };
}

const PODWIRE_COUNTERS = [
  'podwire_port_rx_packets_total', 'podwire_port_rx_bytes_total', 'podwire_port_tx_packets_total', 'podwire_port_tx_bytes_total',
  'podwire_drops_total', 'podwire_port_drops_total', 'podwire_conntrack_evictions_total', 'podwire_conntrack_expired_total',
  'podwire_service_backend_selections_total', 'podwire_policy_verdicts_total', 'podwire_vxlan_encapsulated_packets_total',
  'podwire_vxlan_decapsulated_packets_total', 'podwire_icmp_errors_sent_total', 'podwire_icmp_errors_rate_limited_total',
  'podwire_bridge_floods_total', 'podwire_local_replies_total',
];

describe('Metrics: exposition over HTTP', () => {
  it('serves every family with the right TYPE, HELP and content type', async () => {
    const { url } = await serve(fakeSource());
    const { e, type } = await scrape(url);
    expect(type).toBe(prom.Registry.PROMETHEUS_CONTENT_TYPE);
    for (const name of PODWIRE_COUNTERS) expect(e.types.get(name), name).toBe('counter');
    expect(e.types.get('podwire_conntrack_entries')).toBe('gauge');
    expect(e.types.get('podwire_conntrack_capacity')).toBe('gauge');
    expect(e.types.get('podwire_node_info')).toBe('gauge');
    expect(e.types.get('podwire_batch_frames')).toBe('histogram');
    for (const [name, t] of e.types) {
      expect(name.startsWith('podwire_'), name).toBe(true);
      expect(e.helps.get(name), `HELP for ${name}`).toBeTruthy();
      if (t === 'counter') expect(name.endsWith('_total'), `counter ${name} ends in _total`).toBe(true);
    }
    // Every sample belongs to a declared family.
    for (const s of e.samples) {
      const family = s.name.replace(/_(bucket|sum|count)$/, '');
      expect(e.types.has(s.name) || e.types.get(family) === 'histogram', s.name).toBe(true);
    }
    expect(value(e, 'podwire_node_info', { node: 'node-a' })).toBe(1);
  });

  it('exports every drop reason, zeros included, and per-port drops only when non-zero', async () => {
    const { url } = await serve(fakeSource());
    const { e } = await scrape(url);
    const drops = find(e, 'podwire_drops_total');
    expect(drops.map((s) => s.labels.reason).sort()).toEqual(DROP_INFO.slice(1).map((d) => d.label).sort());
    expect(drops).toHaveLength(DROP_COUNT - 1);
    expect(value(e, 'podwire_drops_total', { reason: 'spoofed_src_ip' })).toBe(2);
    expect(value(e, 'podwire_drops_total', { reason: 'ipv4_bad_checksum' })).toBe(1);
    expect(value(e, 'podwire_drops_total', { reason: 'no_route' })).toBe(1);
    expect(value(e, 'podwire_drops_total', { reason: 'tcp_bad_checksum' })).toBe(0);
    expect(find(e, 'podwire_port_drops_total').map((s) => s.labels)).toEqual([
      { port: '2', pod: 'default/web-1', reason: 'spoofed_src_ip' },
      { port: '3', pod: 'default/web-2', reason: 'ipv4_bad_checksum' },
    ]);
    expect(value(e, 'podwire_port_drops_total', { pod: 'default/web-1' })).toBe(2);
  });

  it('per-port traffic, conntrack, services, policy, scalars and the batch histogram', async () => {
    const { url } = await serve(fakeSource());
    const { e } = await scrape(url);
    expect(find(e, 'podwire_port_rx_packets_total').map((s) => `${s.labels.port}:${s.labels.pod}=${s.value}`))
      .toEqual(['0:host=5', '1:overlay=0', '2:default/web-1=100', '3:default/web-2=0']);
    expect(value(e, 'podwire_port_rx_bytes_total', { pod: 'default/web-1' })).toBe(9800);
    expect(value(e, 'podwire_port_tx_packets_total', { port: '2' })).toBe(90);
    expect(value(e, 'podwire_port_tx_bytes_total', { port: '2' })).toBe(8820);
    expect(value(e, 'podwire_conntrack_entries')).toBe(12);
    expect(value(e, 'podwire_conntrack_capacity')).toBe(65536);
    expect(value(e, 'podwire_conntrack_evictions_total')).toBe(0);
    expect(value(e, 'podwire_conntrack_expired_total')).toBe(4);
    expect(find(e, 'podwire_service_backend_selections_total')).toEqual([
      { name: 'podwire_service_backend_selections_total', labels: { service: 'default/web:80/TCP', backend: '10.244.1.2:8080', pod: 'default/web-1' }, value: 7 },
      { name: 'podwire_service_backend_selections_total', labels: { service: 'default/web:80/TCP', backend: '10.244.2.9:8080', pod: '' }, value: 3 },
    ]);
    expect(value(e, 'podwire_policy_verdicts_total', { policy: 'default/allow-web', direction: 'ingress', rule: '0', verdict: 'allow' })).toBe(5);
    expect(value(e, 'podwire_policy_verdicts_total', { policy: 'default/deny-all', rule: '-1', verdict: 'deny' })).toBe(2);
    expect(value(e, 'podwire_vxlan_encapsulated_packets_total')).toBe(11);
    expect(value(e, 'podwire_vxlan_decapsulated_packets_total')).toBe(13);
    expect(value(e, 'podwire_icmp_errors_sent_total')).toBe(1);
    expect(value(e, 'podwire_icmp_errors_rate_limited_total')).toBe(2);
    expect(value(e, 'podwire_bridge_floods_total')).toBe(6);
    expect(value(e, 'podwire_local_replies_total')).toBe(4);
    // Observed 1, 1, 3, 64, 64, 64, 100 with bounds 1,2,4,...,64: cumulative buckets, +Inf = count.
    const buckets = find(e, 'podwire_batch_frames_bucket').map((s) => `${s.labels.le}=${s.value}`);
    expect(buckets).toEqual(['1=2', '2=2', '4=3', '8=3', '16=3', '32=3', '64=6', '+Inf=7']);
    expect(value(e, 'podwire_batch_frames_sum')).toBe(297);
    expect(value(e, 'podwire_batch_frames_count')).toBe(7);
  });

  it('includes the default process metrics and event-loop lag under the podwire_ prefix', async () => {
    const { url } = await serve(fakeSource());
    const { e } = await scrape(url);
    expect(e.types.get('podwire_process_cpu_user_seconds_total')).toBe('counter');
    expect(e.types.get('podwire_process_resident_memory_bytes')).toBe('gauge');
    expect(e.types.get('podwire_nodejs_eventloop_lag_seconds')).toBe('gauge');
    expect(e.types.get('podwire_nodejs_eventloop_lag_p99_seconds')).toBe('gauge');
    expect(value(e, 'podwire_nodejs_eventloop_lag_p99_seconds')).toBeGreaterThanOrEqual(0);
    expect(e.types.get('podwire_nodejs_gc_duration_seconds')).toBe('histogram');
  });

  it('values move when the counters move; series follow the attached ports', async () => {
    const f = fakeSource();
    const { url } = await serve(f);
    const a = (await scrape(url)).e;
    f.counters.rxPackets[2] += 25; f.counters.rxBytes[2] += 2450;
    f.counters.drop(2, Drop.SpoofedSrcIp);
    f.counters.drop(3, Drop.PolicyDenied);
    f.counters.vxlanEncap += 100; f.counters.floods++;
    f.svc[0].backends[1].selections += 5;
    f.ct = { entries: 3, capacity: 65536, evictions: 9, expired: 40 };
    f.verdicts.push({ policy: 'default/allow-web', direction: 'egress', rule: 1, verdict: 'allow', count: 1 });
    f.hist.observe(8);
    const b = (await scrape(url)).e;
    expect(value(b, 'podwire_port_rx_packets_total', { port: '2' })).toBe(value(a, 'podwire_port_rx_packets_total', { port: '2' })! + 25);
    expect(value(b, 'podwire_port_rx_bytes_total', { port: '2' })).toBe(9800 + 2450);
    expect(value(b, 'podwire_drops_total', { reason: 'spoofed_src_ip' })).toBe(3);
    expect(value(b, 'podwire_drops_total', { reason: 'policy_denied' })).toBe(1);
    expect(value(b, 'podwire_port_drops_total', { port: '3', reason: 'policy_denied' })).toBe(1);
    expect(value(b, 'podwire_vxlan_encapsulated_packets_total')).toBe(111);
    expect(value(b, 'podwire_bridge_floods_total')).toBe(7);
    expect(value(b, 'podwire_service_backend_selections_total', { backend: '10.244.2.9:8080' })).toBe(8);
    expect(value(b, 'podwire_conntrack_entries')).toBe(3);
    expect(value(b, 'podwire_conntrack_evictions_total')).toBe(9);
    expect(value(b, 'podwire_policy_verdicts_total', { direction: 'egress' })).toBe(1);
    expect(value(b, 'podwire_batch_frames_bucket', { le: '8' })).toBe(4);
    expect(value(b, 'podwire_batch_frames_count')).toBe(8);

    // A pod leaves: its port's series (traffic and drops) vanish; a new pod on another port appears.
    f.ports = f.ports.filter((p) => p.port !== 3).concat({ port: 5, label: 'kube-system/dns-0', kind: 'pod' });
    f.counters.rxPackets[5] = 1;
    const c = (await scrape(url)).e;
    expect(find(c, 'podwire_port_rx_packets_total', { port: '3' })).toEqual([]);
    expect(find(c, 'podwire_port_drops_total', { port: '3' })).toEqual([]);
    expect(value(c, 'podwire_port_rx_packets_total', { port: '5', pod: 'kube-system/dns-0' })).toBe(1);
    // Global drops keep counting what the departed port dropped.
    expect(value(c, 'podwire_drops_total', { reason: 'policy_denied' })).toBe(1);
  });

  it('without a batch histogram, batch_frames has only +Inf from counters.batches/batchFrames', async () => {
    const f = fakeSource();
    delete (f as Partial<Fake>).batchSizeHistogram;
    f.counters.batches = 10; f.counters.batchFrames = 123;
    const m = new Metrics(f);
    const e = parse(await m.render());
    expect(find(e, 'podwire_batch_frames_bucket').map((s) => [s.labels.le, s.value])).toEqual([['+Inf', 10]]);
    expect(value(e, 'podwire_batch_frames_sum')).toBe(123);
    expect(value(e, 'podwire_batch_frames_count')).toBe(10);
  });

  it('a per-bucket histogram from any source is exported cumulatively', async () => {
    const f = fakeSource();
    const h: BatchSizeHistogram = { le: [4, 16], counts: Float64Array.of(3, 2), sum: 80, count: 6 };
    f.batchSizeHistogram = () => h;
    const e = parse(await new Metrics(f).render());
    expect(find(e, 'podwire_batch_frames_bucket').map((s) => [s.labels.le, s.value])).toEqual([['4', 3], ['16', 5], ['+Inf', 6]]);
  });

  it('render() gives the same families as a scrape; the global registry stays empty', async () => {
    const { m, url } = await serve(fakeSource());
    const viaHttp = (await scrape(url)).e, direct = parse(await m.render());
    expect([...direct.types.keys()]).toEqual([...viaHttp.types.keys()]);
    const other = new Metrics(fakeSource());   // a second instance: no "already registered" clash
    expect((await other.registry.getMetricsAsJSON()).length).toBe(m.registry.getMetricsAsArray().length);
    expect((await prom.register.getMetricsAsJSON()).filter((x) => x.name.startsWith('podwire_'))).toEqual([]);
  });
});

describe('Metrics: the HTTP server', () => {
  it('answers 404 off /metrics, 405 for other methods, HEAD without a body, 500 when the source throws', async () => {
    const f = fakeSource();
    const { url } = await serve(f);
    for (const path of ['/', '/metric', '/metrics/x', '/favicon.ico']) {
      const res = await fetch(url + path);
      expect(res.status, path).toBe(404);
      await res.text();
    }
    const ok = await fetch(`${url}/metrics?name[]=x`);
    expect(ok.status).toBe(200);
    await ok.text();
    const post = await fetch(`${url}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    await post.text();
    const head = await fetch(`${url}/metrics`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get('content-length'))).toBeGreaterThan(1000);
    expect(await head.text()).toBe('');
    f.conntrack = () => { throw new Error('conntrack gone'); };
    const bad = await fetch(`${url}/metrics`);
    expect(bad.status).toBe(500);
    expect(await bad.text()).toContain('conntrack gone');
  });

  it('close() releases the port (even with a kept-alive connection) and is idempotent', async () => {
    const m = new Metrics(fakeSource());
    const port = await m.listen('127.0.0.1', 0);
    expect(port).toBeGreaterThan(0);
    // Hold a keep-alive connection open across close().
    const sock = net.connect(port, '127.0.0.1');
    await new Promise<void>((res) => sock.once('connect', () => res()));
    sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await new Promise<void>((res) => sock.once('data', () => res()));
    await expect(m.listen('127.0.0.1', 0)).rejects.toThrow(/already listening/);
    await m.close();
    await m.close();
    sock.destroy();
    await expect(fetch(`http://127.0.0.1:${port}/metrics`)).rejects.toThrow();
    // The same port can be bound again at once, by another server and by the same Metrics.
    const again = await m.listen('127.0.0.1', port);
    expect(again).toBe(port);
    await m.close();
    const srv = net.createServer();
    await new Promise<void>((res, rej) => { srv.once('error', rej); srv.listen(port, '127.0.0.1', () => res()); });
    // While something else holds the port, listen() rejects with a message naming the address.
    const m2 = new Metrics(fakeSource());
    await expect(m2.listen('127.0.0.1', port)).rejects.toThrow(`metrics: cannot listen on 127.0.0.1:${port}`);
    await new Promise<void>((res) => srv.close(() => res()));
  });
});
