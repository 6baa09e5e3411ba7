/**
 * The service controller: from Services, EndpointSlices and Pods to the service table's entries.
 *
 * This is the part of Kubernetes' endpoint-slice controller and of kube-proxy that decides *which*
 * backends a Service port has, done on every node from the same cluster state:
 *
 *   - a Service with a selector gets the pods of its namespace whose labels match, that have an
 *     address and are ready; `targetPort` is a number, or a container port *name* resolved per pod
 *     (pods without a port of that name and protocol are not backends of that port);
 *   - a Service without a selector gets the endpoints of the EndpointSlices labelled with its name,
 *     matched to its ports by port name; ready endpoints are used, and only when none is ready, the
 *     serving-and-terminating ones (kube-proxy's graceful-termination fallback);
 *   - headless Services (`clusterIP: None`) and ExternalName Services have no data path.
 *
 * It also allocates ClusterIPs (from the service CIDR, lowest free) and NodePorts (from the range,
 * lowest free), and refuses addresses or ports already taken, naming who holds them. The output is
 * plain data; the daemon installs it into the ServiceTable.
 */
import type { ServiceObj, EndpointSliceObj, PodObj } from './manifests.ts';
import { LbAlgorithm, type ServicePortSpec } from '../tables/services.ts';
import { ipToU32, u32ToIp, parseCidr } from './addressing.ts';

export interface BackendSpec { ip: number; port: number; local: boolean; ref: string }
export interface ComputedServicePort { spec: ServicePortSpec; backends: BackendSpec[] }

const PROTO: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132 };

/** The key of a service port in tables, views and metrics: `namespace/name:port/PROTO`. */
export function servicePortKey(s: ServiceObj, p: ServiceObj['ports'][number]): string {
  return `${s.namespace}/${s.name}:${p.name || p.port}/${p.protocol}`;
}

/** Every service port of the cluster with its backends, as this node sees them. */
export function computeServicePorts(
  services: Iterable<ServiceObj>, slices: Iterable<EndpointSliceObj>, pods: Iterable<PodObj>, selfNode: string,
): ComputedServicePort[] {
  const out: ComputedServicePort[] = [];
  const podList = [...pods].filter((p) => p.podIP !== undefined);
  const sliceList = [...slices];
  for (const s of services) {
    if (s.type === 'ExternalName' || s.clusterIP === 'None' || s.clusterIP === undefined) continue;
    for (const p of s.ports) {
      const spec: ServicePortSpec = {
        key: servicePortKey(s, p), proto: PROTO[p.protocol], vip: ipToU32(s.clusterIP), port: p.port,
        nodePort: s.type === 'NodePort' ? (p.nodePort ?? 0) : 0,
        externalIps: s.externalIPs.map(ipToU32),
        algorithm: s.lbAlgorithm === 'random' ? LbAlgorithm.Random : s.lbAlgorithm === 'maglev' ? LbAlgorithm.Maglev : LbAlgorithm.RoundRobin,
        affinityMs: s.sessionAffinity === 'ClientIP' ? s.affinityTimeoutSeconds * 1000 : 0,
        externalLocal: s.externalTrafficPolicy === 'Local',
      };
      const backends: BackendSpec[] = [];
      if (s.selector) {
        for (const pod of podList) {
          if (pod.namespace !== s.namespace || !pod.ready || !labelsMatch(s.selector, pod.labels)) continue;
          let port: number | undefined;
          if (typeof p.targetPort === 'number') port = p.targetPort;
          else port = pod.ports.find((c) => c.name === p.targetPort && c.protocol === p.protocol)?.containerPort;
          if (port === undefined) continue;
          backends.push({ ip: ipToU32(pod.podIP!), port, local: pod.nodeName === selfNode, ref: `${pod.namespace}/${pod.name}` });
        }
      } else {
        const ready: BackendSpec[] = [], terminating: BackendSpec[] = [];
        for (const sl of sliceList) {
          if (sl.namespace !== s.namespace || sl.serviceName !== s.name) continue;
          const sp = sl.ports.find((x) => (x.name ?? '') === (p.name ?? '') && x.protocol === p.protocol);
          if (!sp) continue;
          for (const ep of sl.endpoints) {
            const b = { ip: ipToU32(ep.addresses[0]), port: sp.port, local: ep.nodeName === selfNode, ref: ep.targetRef ? `${ep.targetRef.namespace ?? s.namespace}/${ep.targetRef.name}` : ep.addresses[0] };
            if (ep.ready && !ep.terminating) ready.push(b);
            else if (ep.serving && ep.terminating) terminating.push(b);
          }
        }
        backends.push(...(ready.length ? ready : terminating));
      }
      // A stable order (by address, then port) makes round-robin reproducible across nodes and runs.
      backends.sort((a, b) => a.ip - b.ip || a.port - b.port);
      out.push({ spec, backends: backends.filter((b, i) => i === 0 || b.ip !== backends[i - 1].ip || b.port !== backends[i - 1].port) });
    }
  }
  return out;
}

/** Kubernetes' equality-based selector (a Service selector is matchLabels only). */
export function labelsMatch(selector: Record<string, string>, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** Allocates ClusterIPs and NodePorts, like the API server's service registry does. */
export class ServiceAllocator {
  readonly cidr: string;
  readonly nodePortMin: number;
  readonly nodePortMax: number;
  private readonly net: number;
  private readonly size: number;
  /** address → service, nodePort/proto → service ("namespace/name"). */
  readonly ips = new Map<string, string>();
  readonly nodePorts = new Map<string, string>();

  constructor(cidr = '10.96.0.0/12', nodePortMin = 30000, nodePortMax = 32767) {
    const c = parseCidr(cidr);
    this.cidr = cidr; this.net = c.net; this.size = 2 ** (32 - c.len);
    this.nodePortMin = nodePortMin; this.nodePortMax = nodePortMax;
  }

  contains(ip: string): boolean { const n = ipToU32(ip); return n - this.net >= 0 && n - this.net < this.size; }

  /**
   * Check and complete a Service: its ClusterIP (given, or the lowest free after .1, which the
   * `kubernetes` Service traditionally holds) and NodePorts. Throws a message naming the field.
   * Nothing is recorded until commit().
   */
  complete(s: ServiceObj): ServiceObj {
    const ref = `Service ${s.namespace}/${s.name}`, me = `${s.namespace}/${s.name}`;
    const out: ServiceObj = { ...s, ports: s.ports.map((p) => ({ ...p })) };
    if (s.type !== 'ExternalName' && s.clusterIP !== 'None') {
      if (s.clusterIP !== undefined) {
        if (!this.contains(s.clusterIP)) throw new Error(`${ref}: spec.clusterIP: ${s.clusterIP} is not in the service CIDR ${this.cidr}`);
        const holder = this.ips.get(s.clusterIP);
        if (holder && holder !== me) throw new Error(`${ref}: spec.clusterIP: ${s.clusterIP} is already allocated to Service ${holder}`);
      } else {
        const held = [...this.ips.entries()].find(([, v]) => v === me)?.[0];
        out.clusterIP = held ?? this.freeIp();
      }
    }
    // Ports pinned in this request are reserved first, so an automatically allocated port never
    // takes a number a later port of the same Service asks for.
    const taken = new Set<string>();
    out.ports.forEach((p, i) => {
      if (s.type !== 'NodePort' || p.nodePort === undefined) return;
      const k = `${p.nodePort}/${p.protocol}`;
      if (taken.has(k)) throw new Error(`${ref}: spec.ports[${i}].nodePort: ${k} is used by another port of this Service`);
      taken.add(k);
    });
    const pinned = new Set(taken);
    out.ports.forEach((p, i) => {
      if (s.type !== 'NodePort') return;
      const field = `spec.ports[${i}].nodePort`;
      if (p.nodePort !== undefined) {
        if (p.nodePort < this.nodePortMin || p.nodePort > this.nodePortMax) throw new Error(`${ref}: ${field}: ${p.nodePort} is outside the NodePort range ${this.nodePortMin}-${this.nodePortMax}`);
        const holder = this.nodePorts.get(`${p.nodePort}/${p.protocol}`);
        if (holder && holder !== me) throw new Error(`${ref}: ${field}: ${p.nodePort}/${p.protocol} is already allocated to Service ${holder}`);
      } else {
        const held = [...this.nodePorts.entries()].find(([k, v]) => v === me && k.endsWith(`/${p.protocol}`) && !taken.has(k))?.[0];
        p.nodePort = held ? Number(held.split('/')[0]) : this.freeNodePort(p.protocol, taken);
      }
      if (!pinned.has(`${p.nodePort}/${p.protocol}`)) taken.add(`${p.nodePort}/${p.protocol}`);
    });
    return out;
  }

  /** Record a completed Service's allocations (after the whole request validated). */
  commit(s: ServiceObj): void {
    const me = `${s.namespace}/${s.name}`;
    this.release(me);
    if (s.clusterIP && s.clusterIP !== 'None') this.ips.set(s.clusterIP, me);
    for (const p of s.ports) if (p.nodePort) this.nodePorts.set(`${p.nodePort}/${p.protocol}`, me);
  }

  release(me: string): void {
    for (const [k, v] of this.ips) if (v === me) this.ips.delete(k);
    for (const [k, v] of this.nodePorts) if (v === me) this.nodePorts.delete(k);
  }

  private freeIp(): string {
    for (let i = 2; i < this.size - 1; i++) {
      const ip = u32ToIp((this.net + i) >>> 0);
      if (!this.ips.has(ip)) return ip;
    }
    throw new Error(`the service CIDR ${this.cidr} is full`);
  }

  private freeNodePort(proto: string, taken: Set<string>): number {
    for (let p = this.nodePortMin; p <= this.nodePortMax; p++) {
      if (!this.nodePorts.has(`${p}/${proto}`) && !taken.has(`${p}/${proto}`)) return p;
    }
    throw new Error(`no free NodePort in ${this.nodePortMin}-${this.nodePortMax}`);
  }
}
