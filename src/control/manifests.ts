/**
 * Kubernetes manifests in, validated plain objects out.
 *
 * podwire is configured with the same YAML a Kubernetes user already writes: Namespaces, Pods,
 * Nodes, Services, EndpointSlices and NetworkPolicies. This module is the only place that text is
 * trusted to become data. Everything downstream (IPAM, the daemon, the lab) receives small typed
 * objects (`PodObj`, `ServiceObj`, ...) holding exactly the facts podwire uses, already checked,
 * with defaults filled in, and never has to ask "what if this field is a number?".
 *
 * The rules this parser follows:
 *
 *   - Strict, not lenient. Kubernetes itself rejects a pod whose port protocol is "ICMP" or whose
 *     name has an underscore; so do we, with the same rules (DNS-1123 names, qualified label keys,
 *     IANA service names for ports). A manifest that podwire accepts should also be accepted by a
 *     real API server. Defaults are Kubernetes' own (a Service port's targetPort is its port, a
 *     NetworkPolicy without policyTypes is an Ingress policy, ...).
 *
 *   - Precise errors. Every problem is a `ManifestError` that names the object ("Pod default/web"),
 *     the field path in Kubernetes notation ("spec.containers[0].ports[1].protocol"), what is wrong,
 *     and where it was written (file, line, document number). The first problem stops the parse.
 *
 *   - All or nothing. `parseManifests` returns every object or throws; a half-applied
 *     configuration is harder to reason about than a refused one. Within one call, two objects
 *     with the same key (`Pod/default/web`), two pods with the same uid or address, or two
 *     Services with the same cluster IP or node port are errors too.
 *
 *   - `key: null` (or a bare `key:`) means the field is unset, as it does for the API server.
 *
 *   - Never silently ignore networking. podwire models a pod's *network*, not its processes, so
 *     fields about processes (image, command, resources, probes, volumes, ...) are accepted and
 *     dropped. But a networking field podwire does not implement (`spec.hostNetwork: true`,
 *     `hostPort`, a second pod CIDR, a LoadBalancer Service, `internalTrafficPolicy: Local`,
 *     EndpointSlice `hints`, an IPv6 ipBlock, ...) is an error: dropping it would make the lab
 *     behave differently from what the manifest says. For the same reason the specs of Services
 *     and NetworkPolicies, which are nothing but networking, reject unknown fields (a typo like
 *     `selecter:` must not quietly produce a Service without a selector). So does a combination
 *     that Kubernetes accepts but kube-proxy ignores (externalIPs on a headless Service, a selector
 *     on an ExternalName one): the user is told instead of being surprised. DNS (`dnsPolicy`,
 *     `dnsConfig`, `hostAliases`, `hostname`, `subdomain`, an endpoint's `hostname`) is not
 *     podwire's job and is accepted; so are purely informational fields (`appProtocol`, an
 *     endpoint's `zone`).
 *
 *   - A Pod's `status` is written by the kubelet, not by users, so it is not a spec podwire
 *     follows: everything in it is ignored except `status.podIP` (and `status.podIPs`, which must
 *     agree), the address the owning node gave the pod. The control plane sets it when it tells
 *     other nodes about a pod. Readiness comes from the `podwire.io/ready` annotation instead, not
 *     from `status.conditions`. A Node's `status.addresses` is read, because that is where
 *     Kubernetes publishes a node's InternalIP. A Service's `status` (load-balancer ingress) is
 *     ignored.
 *
 *   - Annotations under `podwire.io/` are podwire's own knobs; an unknown one (say a typo like
 *     `podwire.io/pinned-ip`) is an error rather than a no-op. Known: `podwire.io/ip` and
 *     `podwire.io/ready` (Pod), `podwire.io/vtep-mac` and `podwire.io/overlay` (Node),
 *     `podwire.io/lb-algorithm` (Service).
 *
 *   - IPv4 only. podwire is a single-stack IPv4 data plane; dual-stack Services, IPv6
 *     EndpointSlices and IPv6 ipBlocks are rejected as unsupported.
 *
 * How it is organised: `parseManifests` splits the YAML stream into documents (and `kind: List`
 * into items), checks what every object shares (apiVersion, metadata, labels, annotations) once,
 * then hands the object to its kind's parser through the `KINDS` table. Adding a kind is one
 * `parseXxx` function plus one table entry.
 */
import ipaddr from 'ipaddr.js';
import { LineCounter, parseAllDocuments, isScalar, type Document } from 'yaml';

// ------------------------------------------------------------------------------------------------
// Public types
// ------------------------------------------------------------------------------------------------

/** Where a problem was written, when the parser knows it. `document` is 1-based. */
export interface ManifestLocation {
  source?: string;
  document?: number;
  /** Index inside a `kind: List`'s `items`, when the object came from one. */
  item?: number;
  /** 1-based line of the offending field (or the nearest enclosing one that exists). */
  line?: number;
}

/**
 * One problem in a manifest. `message` reads, for example:
 *
 *   Pod default/web: spec.containers[0].ports[1].protocol: "ICMP" is not one of TCP, UDP, SCTP (at pods.yaml:14, document 2)
 *
 * `objectRef` is "Kind namespace/name" (or "document N" when no object could be identified),
 * `field` is the Kubernetes-style field path ('' when the problem is the whole object), `reason` is
 * the bare explanation.
 */
export class ManifestError extends Error {
  readonly objectRef: string;
  readonly field: string;
  readonly reason: string;
  readonly source: string | undefined;
  readonly document: number | undefined;
  readonly item: number | undefined;
  readonly line: number | undefined;

  constructor(objectRef: string, field: string, reason: string, where: ManifestLocation = {}) {
    super(`${objectRef}: ${field === '' ? '' : `${field}: `}${reason}${formatLocation(objectRef, where)}`);
    this.name = 'ManifestError';
    this.objectRef = objectRef;
    this.field = field;
    this.reason = reason;
    this.source = where.source;
    this.document = where.document;
    this.item = where.item;
    this.line = where.line;
  }
}

export interface NamespaceObj {
  kind: 'Namespace';
  name: string;
  labels: Record<string, string>;
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
}

export interface PodObj {
  kind: 'Pod';
  name: string;
  namespace: string;
  /** metadata.uid, or `${namespace}/${name}` when the manifest has none. */
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  nodeName?: string;
  /** From the annotation podwire.io/ip: the pod asks for this exact IPv4 address. */
  pinnedIp?: string;
  /** Every container's ports, flattened in declaration order. */
  ports: ContainerPort[];
  /** true unless the annotation podwire.io/ready is "false". */
  ready: boolean;
  /**
   * status.podIP: the address the owning node gave the pod (set by the control plane when it tells
   * other nodes about the pod). A valid IPv4 host address; equal to `pinnedIp` when both are set.
   */
  podIP?: string;
}

export interface NodeObj {
  kind: 'Node';
  name: string;
  labels: Record<string, string>;
  /** spec.podCIDR: the IPv4 block this node's pods get addresses from. */
  podCIDR: string;
  /** The node's InternalIP from status.addresses: the VXLAN underlay address. */
  internalIP: string;
  /**
   * The MAC of the node's VXLAN endpoint, lowercase: from podwire.io/vtep-mac, or VtepMAC inside
   * flannel's flannel.alpha.coreos.com/backend-data annotation. Absent when neither is set; the
   * daemon then derives one from the node's address (for kernel nodes too, so the lab's kernel
   * VXLAN devices must use that same derived MAC).
   */
  vtepMac?: string;
  /** 'kernel' = a Linux-kernel VXLAN node (flannel-style) podwire interoperates with. */
  overlay: 'podwire' | 'kernel';
}

export type Protocol = 'TCP' | 'UDP' | 'SCTP';

/** One entry of a Service's spec.ports, with Kubernetes' defaults applied. */
export interface ServicePort {
  /** Required (a DNS-1123 label) when the Service has more than one port. */
  name?: string;
  /** Default TCP. */
  protocol: Protocol;
  port: number;
  /**
   * The backend port: a number, or an IANA_SVC_NAME naming a container port of each backend pod.
   * Defaults to `port` (also when written as 0 or "", as Kubernetes does).
   */
  targetPort: number | string;
  /**
   * Only on NodePort services; undefined = the daemon allocates one. The parser checks 1-65535;
   * the node-port range (30000-32767 by default) is the daemon's, configurable.
   */
  nodePort?: number;
}

export interface ServiceObj {
  kind: 'Service';
  name: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Default ClusterIP. LoadBalancer is rejected (podwire has no load-balancer controller). */
  type: 'ClusterIP' | 'NodePort' | 'ExternalName';
  /** undefined = allocate (and always for ExternalName); 'None' = headless; else an IPv4 address. */
  clusterIP?: string;
  /** undefined when absent or empty: no selector (endpoints come from EndpointSlices). */
  selector?: Record<string, string>;
  /** Required unless ExternalName or headless; names required and unique when > 1; (port, protocol) unique. */
  ports: ServicePort[];
  externalIPs: string[];
  sessionAffinity: 'None' | 'ClientIP';
  /** sessionAffinityConfig.clientIP.timeoutSeconds: 1..86400, default 10800 (also when affinity is None). */
  affinityTimeoutSeconds: number;
  /** Default Cluster. Only settable on externally accessible services (NodePort, or ClusterIP with externalIPs). */
  externalTrafficPolicy: 'Cluster' | 'Local';
  /** 'Local' is rejected: podwire does not implement it. */
  internalTrafficPolicy: 'Cluster';
  /** ExternalName only: a DNS-1123 subdomain (a trailing dot, allowed by Kubernetes, is removed). */
  externalName?: string;
  /** The annotation podwire.io/lb-algorithm; default round-robin. */
  lbAlgorithm: 'round-robin' | 'random' | 'maglev';
}

/** One endpoint of an EndpointSlice. Conditions are defaulted as the contract says: see parseEndpoint. */
export interface EndpointObj {
  /** 1 to 100 IPv4 host addresses. Kubernetes calls them fungible: kube-proxy uses the first. */
  addresses: string[];
  /** Default true (Kubernetes: "a nil value should be interpreted as true"). */
  ready: boolean;
  /** Default = ready. */
  serving: boolean;
  /** Default false. */
  terminating: boolean;
  nodeName?: string;
  targetRef?: { kind: string; namespace?: string; name: string };
}

export interface EndpointSliceObj {
  kind: 'EndpointSlice';
  name: string;
  namespace: string;
  labels: Record<string, string>;
  /** metadata.labels["kubernetes.io/service-name"]: required. */
  serviceName: string;
  /** IPv6 and FQDN slices are rejected. */
  addressType: 'IPv4';
  /** protocol defaults to TCP; an unnamed port has no `name`. */
  ports: { name?: string; port: number; protocol: Protocol }[];
  endpoints: EndpointObj[];
}

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  /** Non-empty for In/NotIn, empty for Exists/DoesNotExist. */
  values: string[];
}

/** A Kubernetes label selector, normalized: both parts always present. `{}` (both empty) selects everything. */
export interface LabelSelector {
  matchLabels: Record<string, string>;
  matchExpressions: LabelSelectorRequirement[];
}

/** Either `ipBlock` alone, or `podSelector` and/or `namespaceSelector`. */
export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  /** cidr and except normalized to their network address (host bits cleared, as Kubernetes does). */
  ipBlock?: { cidr: string; except: string[] };
}

export interface NetworkPolicyPort {
  /** Default TCP. */
  protocol: Protocol;
  /** undefined = every port; a string is a named (container) port. */
  port?: number | string;
  /** Only with a numeric `port`; the range port..endPort inclusive. */
  endPort?: number;
}

export interface NetworkPolicyRule {
  /** from (ingress) / to (egress); empty (omitted or []) = every peer. */
  peers: NetworkPolicyPeer[];
  /** empty (omitted or []) = every port. */
  ports: NetworkPolicyPort[];
}

export interface NetworkPolicyObj {
  kind: 'NetworkPolicy';
  name: string;
  namespace: string;
  labels: Record<string, string>;
  podSelector: LabelSelector;
  /**
   * As written (validated), or Kubernetes' default when absent or empty: Ingress always, plus
   * Egress when spec.egress has at least one rule.
   */
  policyTypes: ('Ingress' | 'Egress')[];
  ingress: NetworkPolicyRule[];
  egress: NetworkPolicyRule[];
}

export type ManifestObj = NamespaceObj | PodObj | NodeObj | ServiceObj | EndpointSliceObj | NetworkPolicyObj;

/** 'Pod/default/web', 'Service/default/web', 'Node/node1', 'Namespace/prod'. */
export function objectKey(o: ManifestObj): string {
  return o.kind === 'Namespace' || o.kind === 'Node' ? `${o.kind}/${o.name}` : `${o.kind}/${o.namespace}/${o.name}`;
}

/**
 * Kubernetes label-selector semantics: every matchLabels pair and every expression must hold (AND).
 * In: the key is present with one of the values. NotIn: the key is absent, or its value is none of
 * the values. Exists / DoesNotExist: the key is present / absent. The empty selector matches
 * everything.
 */
export function selectorMatches(sel: LabelSelector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels)) {
    if (!Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  for (const r of sel.matchExpressions) {
    const has = Object.hasOwn(labels, r.key);
    switch (r.operator) {
      case 'In':
        if (!has || !r.values.includes(labels[r.key]!)) return false;
        break;
      case 'NotIn':
        if (has && r.values.includes(labels[r.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

// ------------------------------------------------------------------------------------------------
// Annotations podwire reads
// ------------------------------------------------------------------------------------------------

export const ANNOTATION_POD_IP = 'podwire.io/ip';
export const ANNOTATION_POD_READY = 'podwire.io/ready';
export const ANNOTATION_VTEP_MAC = 'podwire.io/vtep-mac';
export const ANNOTATION_OVERLAY = 'podwire.io/overlay';
/** flannel's per-node annotation: JSON like {"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}. */
export const ANNOTATION_FLANNEL_BACKEND_DATA = 'flannel.alpha.coreos.com/backend-data';
/** On a Service: how the daemon picks a backend: round-robin (default), random or maglev. */
export const ANNOTATION_LB_ALGORITHM = 'podwire.io/lb-algorithm';
/** The EndpointSlice label naming the Service the slice belongs to (set by Kubernetes' controller). */
export const LABEL_SERVICE_NAME = 'kubernetes.io/service-name';

const PODWIRE_PREFIX = 'podwire.io/';
const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];

// ------------------------------------------------------------------------------------------------
// The kinds table
// ------------------------------------------------------------------------------------------------

type Path = ReadonlyArray<string | number>;
type Raw = Record<string, unknown>;

/** What every object has, already validated, handed to the kind's parser. */
interface Meta {
  name: string;
  /** '' for cluster-scoped kinds. */
  namespace: string;
  uid: string | undefined;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

interface KindRule {
  /** The only apiVersion accepted (core/v1, discovery.k8s.io/v1, networking.k8s.io/v1). */
  readonly apiVersion: string;
  /** Namespaced objects default to "default"; cluster-scoped ones must not set metadata.namespace. */
  readonly namespaced: boolean;
  /** Which Kubernetes rule metadata.name follows (Services: DNS-1035 label). */
  readonly nameRule: 'subdomain' | 'label' | 'dns1035';
  /** The podwire.io/* annotations this kind understands; any other podwire.io/ key is an error. */
  readonly podwireAnnotations: readonly string[];
  readonly parse: (raw: Raw, meta: Meta, ctx: ObjectContext) => ManifestObj;
}

const KINDS: Record<string, KindRule> = {
  Namespace: { apiVersion: 'v1', namespaced: false, nameRule: 'label', podwireAnnotations: [], parse: parseNamespace },
  Pod: {
    apiVersion: 'v1',
    namespaced: true,
    nameRule: 'subdomain',
    podwireAnnotations: [ANNOTATION_POD_IP, ANNOTATION_POD_READY],
    parse: parsePod,
  },
  Node: {
    apiVersion: 'v1',
    namespaced: false,
    nameRule: 'subdomain',
    podwireAnnotations: [ANNOTATION_VTEP_MAC, ANNOTATION_OVERLAY],
    parse: parseNode,
  },
  Service: {
    apiVersion: 'v1',
    namespaced: true,
    nameRule: 'dns1035',
    podwireAnnotations: [ANNOTATION_LB_ALGORITHM],
    parse: parseService,
  },
  EndpointSlice: {
    apiVersion: 'discovery.k8s.io/v1',
    namespaced: true,
    nameRule: 'subdomain',
    podwireAnnotations: [],
    parse: parseEndpointSlice,
  },
  NetworkPolicy: {
    apiVersion: 'networking.k8s.io/v1',
    namespaced: true,
    nameRule: 'subdomain',
    podwireAnnotations: [],
    parse: parseNetworkPolicy,
  },
};

const SUPPORTED_KINDS = `${Object.keys(KINDS).join(', ')} (and List)`;

// ------------------------------------------------------------------------------------------------
// Entry point
// ------------------------------------------------------------------------------------------------

/**
 * Parse a YAML stream (documents separated by `---`; a `kind: List` contributes its items) into
 * validated objects, in the order written. Empty documents are skipped. Throws `ManifestError` on
 * the first problem, including YAML syntax errors and two objects with the same `objectKey`.
 */
export function parseManifests(text: string, source?: string): ManifestObj[] {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const out: ManifestObj[] = [];
  const seen = new Map<string, string>(); // objectKey -> where it was first defined
  const uids = new Map<string, string>(); // pod uid -> objectRef
  const podAddrs = new Map<string, string>(); // pod IP (pinned or status.podIP) -> "pinned by <ref>" / "the podIP of <ref>"
  const clusterIPs = new Map<string, string>(); // Service cluster IP -> objectRef
  const nodePorts = new Map<string, string>(); // "30080/TCP" -> objectRef

  for (let d = 0; d < docs.length; d++) {
    const doc = docs[d]!;
    const document = d + 1;
    const docRef = `document ${document}`;
    const err = doc.errors[0];
    if (err !== undefined) {
      const line = lineCounter.linePos(err.pos[0]).line;
      throw new ManifestError(docRef, '', `YAML syntax error: ${err.message}`, { source, document, line });
    }
    if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) continue;

    let value: unknown;
    try {
      value = dropNulls(doc.toJS({ maxAliasCount: 100 }));
    } catch (e) {
      const line = lineCounter.linePos(doc.contents.range?.[0] ?? 0).line;
      throw new ManifestError(docRef, '', `cannot load YAML: ${(e as Error).message}`, { source, document, line });
    }
    const docCtx: ObjectContext = new ObjectContext(docRef, doc, lineCounter, [], { source, document });
    if (!isMapping(value)) {
      docCtx.fail([], `expected a Kubernetes object (a mapping with apiVersion, kind and metadata), got ${describe(value)}`);
    }

    const found: Array<{ obj: ManifestObj; ctx: ObjectContext }> = [];
    if (value.kind === 'List') {
      const listCtx: ObjectContext = new ObjectContext('List', doc, lineCounter, [], { source, document });
      if (value.apiVersion === undefined) listCtx.fail(['apiVersion'], 'required; List is v1');
      if (value.apiVersion !== 'v1') listCtx.fail(['apiVersion'], `${show(value.apiVersion)} is not supported for List; use v1`);
      const items = value.items;
      if (!Array.isArray(items)) listCtx.fail(['items'], items === undefined ? 'required' : `must be a sequence, got ${describe(items)}`);
      for (let i = 0; i < items.length; i++) {
        const item: unknown = items[i];
        if (!isMapping(item)) listCtx.fail(['items', i], `expected a Kubernetes object, got ${describe(item)}`);
        if (item.kind === 'List') listCtx.fail(['items', i, 'kind'], 'a List inside a List is not supported');
        found.push(parseObject(item, doc, lineCounter, ['items', i], { source, document, item: i }));
      }
    } else {
      found.push(parseObject(value, doc, lineCounter, [], { source, document }));
    }

    for (const { obj, ctx } of found) {
      const key = objectKey(obj);
      const first = seen.get(key);
      if (first !== undefined) ctx.fail(['metadata', 'name'], `duplicate object: ${key} is already defined ${first}`);
      seen.set(key, ctx.describeLocation(['metadata', 'name']));
      if (obj.kind === 'Pod') {
        const uidOwner = uids.get(obj.uid);
        if (uidOwner !== undefined) ctx.fail(['metadata', 'uid'], `${show(obj.uid)} is already the uid of ${uidOwner}`);
        uids.set(obj.uid, ctx.ref);
        if (obj.pinnedIp !== undefined) {
          const ipOwner = podAddrs.get(obj.pinnedIp);
          const at: Path = ['metadata', 'annotations', ANNOTATION_POD_IP];
          if (ipOwner !== undefined) ctx.fail(at, `${obj.pinnedIp} is already ${ipOwner}`);
          podAddrs.set(obj.pinnedIp, `pinned by ${ctx.ref}`);
        }
        if (obj.podIP !== undefined && obj.podIP !== obj.pinnedIp) {
          const ipOwner = podAddrs.get(obj.podIP);
          if (ipOwner !== undefined) ctx.fail(['status', 'podIP'], `${obj.podIP} is already ${ipOwner}`);
          podAddrs.set(obj.podIP, `the podIP of ${ctx.ref}`);
        }
      } else if (obj.kind === 'Service') {
        if (obj.clusterIP !== undefined && obj.clusterIP !== 'None') {
          const owner = clusterIPs.get(obj.clusterIP);
          if (owner !== undefined) ctx.fail(['spec', 'clusterIP'], `${obj.clusterIP} is already the cluster IP of ${owner}`);
          clusterIPs.set(obj.clusterIP, ctx.ref);
        }
        obj.ports.forEach((sp, i) => {
          if (sp.nodePort === undefined) return;
          const np = `${sp.nodePort}/${sp.protocol}`;
          const owner = nodePorts.get(np);
          if (owner !== undefined) ctx.fail(['spec', 'ports', i, 'nodePort'], `node port ${np} is already used by ${owner}`);
          nodePorts.set(np, ctx.ref);
        });
      }
      out.push(obj);
    }
  }
  return out;
}

/** Everything kind-independent, then the kind's own parser. */
function parseObject(
  raw: Raw,
  doc: Document.Parsed,
  lineCounter: LineCounter,
  base: Path,
  where: ManifestLocation,
): { obj: ManifestObj; ctx: ObjectContext } {
  const metaRaw = isMapping(raw.metadata) ? raw.metadata : {};
  const kindText = typeof raw.kind === 'string' && raw.kind !== '' ? raw.kind : undefined;
  const rule = kindText !== undefined && Object.hasOwn(KINDS, kindText) ? KINDS[kindText] : undefined;
  const nameText = typeof metaRaw.name === 'string' && metaRaw.name !== '' ? metaRaw.name : '<unnamed>';
  const nsText = typeof metaRaw.namespace === 'string' && metaRaw.namespace !== '' ? metaRaw.namespace : undefined;
  const nsPart = rule === undefined ? (nsText !== undefined ? `${nsText}/` : '') : rule.namespaced ? `${nsText ?? 'default'}/` : '';
  const ctx: ObjectContext = new ObjectContext(`${kindText ?? 'object'} ${nsPart}${nameText}`, doc, lineCounter, base, where);

  if (raw.kind === undefined) ctx.fail(['kind'], `required; supported kinds: ${SUPPORTED_KINDS}`);
  if (kindText === undefined) ctx.fail(['kind'], `must be a non-empty string, got ${describe(raw.kind)}`);
  if (rule === undefined) ctx.fail(['kind'], `${show(kindText)} is not supported; supported kinds: ${SUPPORTED_KINDS}`);
  if (raw.apiVersion === undefined) ctx.fail(['apiVersion'], `required; ${kindText} is ${rule.apiVersion}`);
  if (raw.apiVersion !== rule.apiVersion) {
    ctx.fail(['apiVersion'], `${show(raw.apiVersion)} is not supported for ${kindText}; use ${rule.apiVersion}`);
  }
  const meta = parseMeta(raw, rule, ctx);
  return { obj: rule.parse(raw, meta, ctx), ctx };
}

function parseMeta(raw: Raw, rule: KindRule, ctx: ObjectContext): Meta {
  const m = raw.metadata;
  if (m === undefined) ctx.fail(['metadata'], 'required');
  if (!isMapping(m)) ctx.fail(['metadata'], `must be a mapping, got ${describe(m)}`);

  if (m.name === undefined) {
    const hint = m.generateName !== undefined ? ' (podwire does not generate names; metadata.generateName is not supported)' : '';
    ctx.fail(['metadata', 'name'], `required${hint}`);
  }
  if (typeof m.name !== 'string') ctx.fail(['metadata', 'name'], `must be a string, got ${describe(m.name)}`);
  const nameProblem =
    rule.nameRule === 'label' ? dns1123LabelProblem(m.name) : rule.nameRule === 'dns1035' ? dns1035LabelProblem(m.name) : dns1123SubdomainProblem(m.name);
  if (nameProblem !== undefined) ctx.fail(['metadata', 'name'], `${show(m.name)} ${nameProblem}`);

  let namespace = '';
  if (rule.namespaced) {
    namespace = 'default';
    if (m.namespace !== undefined) {
      if (typeof m.namespace !== 'string') ctx.fail(['metadata', 'namespace'], `must be a string, got ${describe(m.namespace)}`);
      const p = dns1123LabelProblem(m.namespace);
      if (p !== undefined) ctx.fail(['metadata', 'namespace'], `${show(m.namespace)} ${p}`);
      namespace = m.namespace;
    }
  } else if (m.namespace !== undefined) {
    ctx.fail(['metadata', 'namespace'], `must not be set: ${raw.kind} is cluster-scoped`);
  }

  let uid: string | undefined;
  if (m.uid !== undefined) {
    if (typeof m.uid !== 'string' || m.uid === '') ctx.fail(['metadata', 'uid'], `must be a non-empty string, got ${describe(m.uid)}`);
    uid = m.uid;
  }

  const labels = labelMap(m.labels, ['metadata', 'labels'], ctx);

  const annotations = stringMap(m.annotations, ['metadata', 'annotations'], ctx);
  for (const k of Object.keys(annotations)) {
    const kp = qualifiedNameProblem(k);
    if (kp !== undefined) {
      ctx.fail(['metadata', 'annotations'], `key ${show(k)} is not a valid annotation key: ${kp}`, ['metadata', 'annotations', k]);
    }
    if (k.startsWith(PODWIRE_PREFIX) && !rule.podwireAnnotations.includes(k)) {
      const known = rule.podwireAnnotations.length === 0 ? 'none' : rule.podwireAnnotations.join(', ');
      ctx.fail(['metadata', 'annotations', k], `unknown podwire annotation on ${/^[AEIOU]/.test(String(raw.kind)) ? 'an' : 'a'} ${raw.kind} (known: ${known})`);
    }
  }

  return { name: m.name, namespace, uid, labels, annotations };
}

// ------------------------------------------------------------------------------------------------
// One parser per kind
// ------------------------------------------------------------------------------------------------

function parseNamespace(_raw: Raw, meta: Meta): NamespaceObj {
  return { kind: 'Namespace', name: meta.name, labels: meta.labels };
}

function parsePod(raw: Raw, meta: Meta, ctx: ObjectContext): PodObj {
  const spec = raw.spec;
  if (spec === undefined) ctx.fail(['spec'], 'required (a Pod needs spec.containers)');
  if (!isMapping(spec)) ctx.fail(['spec'], `must be a mapping, got ${describe(spec)}`);

  if (spec.hostNetwork !== undefined) {
    if (typeof spec.hostNetwork !== 'boolean') ctx.fail(['spec', 'hostNetwork'], `must be a boolean, got ${describe(spec.hostNetwork)}`);
    if (spec.hostNetwork) {
      ctx.fail(['spec', 'hostNetwork'], 'true is not supported: every podwire pod has its own network namespace');
    }
  }

  let nodeName: string | undefined;
  if (spec.nodeName !== undefined) {
    if (typeof spec.nodeName !== 'string') ctx.fail(['spec', 'nodeName'], `must be a string, got ${describe(spec.nodeName)}`);
    const p = dns1123SubdomainProblem(spec.nodeName);
    if (p !== undefined) ctx.fail(['spec', 'nodeName'], `${show(spec.nodeName)} ${p}`);
    nodeName = spec.nodeName;
  }

  if (spec.initContainers !== undefined) {
    const inits = spec.initContainers;
    if (!Array.isArray(inits)) ctx.fail(['spec', 'initContainers'], `must be a sequence, got ${describe(inits)}`);
    inits.forEach((c: unknown, i) => {
      if (isMapping(c) && c.ports !== undefined) {
        ctx.fail(['spec', 'initContainers', i, 'ports'], 'ports on init containers are not supported by podwire; declare them on spec.containers');
      }
    });
  }

  const containers = spec.containers;
  if (containers === undefined) ctx.fail(['spec', 'containers'], 'required (at least one container)');
  if (!Array.isArray(containers)) ctx.fail(['spec', 'containers'], `must be a sequence, got ${describe(containers)}`);
  if (containers.length === 0) ctx.fail(['spec', 'containers'], 'must have at least one container');

  const ports: ContainerPort[] = [];
  const containerNames = new Map<string, number>();
  const portNames = new Map<string, string>();
  const portKeys = new Map<string, string>();
  containers.forEach((c: unknown, ci) => {
    const cp: Path = ['spec', 'containers', ci];
    if (!isMapping(c)) ctx.fail(cp, `must be a mapping, got ${describe(c)}`);
    if (c.name === undefined) ctx.fail([...cp, 'name'], 'required');
    if (typeof c.name !== 'string') ctx.fail([...cp, 'name'], `must be a string, got ${describe(c.name)}`);
    const np = dns1123LabelProblem(c.name);
    if (np !== undefined) ctx.fail([...cp, 'name'], `${show(c.name)} ${np}`);
    const firstContainer = containerNames.get(c.name);
    if (firstContainer !== undefined) {
      ctx.fail([...cp, 'name'], `duplicate container name ${show(c.name)} (also spec.containers[${firstContainer}].name)`);
    }
    containerNames.set(c.name, ci);

    if (c.ports === undefined) return;
    if (!Array.isArray(c.ports)) ctx.fail([...cp, 'ports'], `must be a sequence, got ${describe(c.ports)}`);
    c.ports.forEach((p: unknown, pi) => {
      const pp: Path = [...cp, 'ports', pi];
      const port = parseContainerPort(p, pp, ctx);
      if (port.name !== undefined) {
        const firstName = portNames.get(port.name);
        if (firstName !== undefined) ctx.fail([...pp, 'name'], `duplicate port name ${show(port.name)} (also ${firstName})`);
        portNames.set(port.name, formatPath([...pp, 'name']));
      }
      const key = `${port.containerPort}/${port.protocol}`;
      const firstKey = portKeys.get(key);
      if (firstKey !== undefined) ctx.fail([...pp, 'containerPort'], `duplicate port ${key} (also ${firstKey})`);
      portKeys.set(key, formatPath(pp));
      ports.push(port);
    });
  });

  let pinnedIp: string | undefined;
  const ipText = meta.annotations[ANNOTATION_POD_IP];
  if (ipText !== undefined) {
    const p = ipv4Problem(ipText, true);
    if (p !== undefined) ctx.fail(['metadata', 'annotations', ANNOTATION_POD_IP], `${show(ipText)} ${p}`);
    pinnedIp = ipText;
  }

  let ready = true;
  const readyText = meta.annotations[ANNOTATION_POD_READY];
  if (readyText !== undefined) {
    if (readyText !== 'true' && readyText !== 'false') {
      ctx.fail(['metadata', 'annotations', ANNOTATION_POD_READY], `${show(readyText)} must be "true" or "false"`);
    }
    ready = readyText === 'true';
  }

  const podIP = parsePodStatus(raw.status, pinnedIp, ctx);

  const pod: PodObj = {
    kind: 'Pod',
    name: meta.name,
    namespace: meta.namespace,
    uid: meta.uid ?? `${meta.namespace}/${meta.name}`,
    labels: meta.labels,
    annotations: meta.annotations,
    ports,
    ready,
  };
  if (nodeName !== undefined) pod.nodeName = nodeName;
  if (pinnedIp !== undefined) pod.pinnedIp = pinnedIp;
  if (podIP !== undefined) pod.podIP = podIP;
  return pod;
}

/**
 * status.podIP, the only part of a Pod's status podwire reads (status is the kubelet's report, not
 * a spec: phase, conditions, containerStatuses, hostIP, ... are ignored). status.podIPs, when
 * present, must agree: one entry (podwire is single-stack IPv4) equal to podIP. As the API server
 * does, podIP is taken from podIPs[0] when only podIPs is written.
 */
function parsePodStatus(status: unknown, pinnedIp: string | undefined, ctx: ObjectContext): string | undefined {
  if (status === undefined) return undefined;
  if (!isMapping(status)) ctx.fail(['status'], `must be a mapping, got ${describe(status)}`);
  let podIP: string | undefined;
  if (status.podIP !== undefined) {
    const ip = status.podIP;
    if (typeof ip !== 'string') ctx.fail(['status', 'podIP'], `must be a string, got ${describe(ip)}`);
    if (ip !== '') {
      const p = ipv4Problem(ip, true);
      if (p !== undefined) ctx.fail(['status', 'podIP'], `${show(ip)} ${p}`);
      podIP = ip;
    }
  }
  const list = seqOf(status.podIPs, ['status', 'podIPs'], ctx);
  if (list.length > 1) ctx.fail(['status', 'podIPs'], `has ${list.length} entries; podwire is single-stack IPv4 and a pod has exactly one address`);
  if (list.length === 1) {
    const at: Path = ['status', 'podIPs', 0];
    const entry = list[0];
    if (!isMapping(entry)) ctx.fail(at, `must be a mapping like {ip: 10.244.1.5}, got ${describe(entry)}`);
    checkFields(entry, at, ['ip'], 'a pod IP entry has only ip', ctx);
    if (entry.ip === undefined) ctx.fail([...at, 'ip'], 'required');
    if (typeof entry.ip !== 'string') ctx.fail([...at, 'ip'], `must be a string, got ${describe(entry.ip)}`);
    if (podIP === undefined) {
      const p = ipv4Problem(entry.ip, true);
      if (p !== undefined) ctx.fail([...at, 'ip'], `${show(entry.ip)} ${p}`);
      podIP = entry.ip;
    } else if (entry.ip !== podIP) {
      ctx.fail([...at, 'ip'], `${show(entry.ip)} must equal status.podIP (${podIP})`);
    }
  }
  if (podIP !== undefined && pinnedIp !== undefined && podIP !== pinnedIp) {
    ctx.fail(['status', 'podIP'], `${podIP} disagrees with the annotation ${ANNOTATION_POD_IP} (${pinnedIp})`);
  }
  return podIP;
}

const PORT_FIELDS = ['name', 'containerPort', 'protocol'];

function parseContainerPort(p: unknown, pp: Path, ctx: ObjectContext): ContainerPort {
  if (!isMapping(p)) ctx.fail(pp, `must be a mapping, got ${describe(p)}`);
  for (const k of Object.keys(p)) {
    if (k === 'hostPort') ctx.fail([...pp, k], 'host ports are not supported by podwire (use a Service instead)');
    if (k === 'hostIP') ctx.fail([...pp, k], 'host IPs are not supported by podwire (host ports are not implemented)');
    if (!PORT_FIELDS.includes(k)) ctx.fail([...pp, k], `unknown field (a container port has ${PORT_FIELDS.join(', ')})`);
  }

  const n = p.containerPort;
  if (n === undefined) ctx.fail([...pp, 'containerPort'], 'required');
  if (typeof n !== 'number' || !Number.isInteger(n)) ctx.fail([...pp, 'containerPort'], `must be an integer, got ${describe(n)}`);
  if (n < 1 || n > 65535) ctx.fail([...pp, 'containerPort'], `${n} is out of range 1-65535`);

  const protocol = parseProtocol(p.protocol, [...pp, 'protocol'], ctx);
  const port: ContainerPort = { containerPort: n, protocol };
  if (p.name !== undefined) {
    if (typeof p.name !== 'string') ctx.fail([...pp, 'name'], `must be a string, got ${describe(p.name)}`);
    const np = ianaSvcNameProblem(p.name);
    if (np !== undefined) ctx.fail([...pp, 'name'], `${show(p.name)} is not a valid port name: ${np}`);
    port.name = p.name;
  }
  return port;
}

function isProtocol(s: string): s is Protocol {
  return (PROTOCOLS as readonly string[]).includes(s);
}

/** A port's protocol: absent = TCP (Kubernetes' default); else exactly TCP, UDP or SCTP. */
function parseProtocol(v: unknown, path: Path, ctx: ObjectContext): Protocol {
  if (v === undefined) return 'TCP';
  if (typeof v !== 'string') ctx.fail(path, `must be a string, one of ${PROTOCOLS.join(', ')}; got ${describe(v)}`);
  if (!isProtocol(v)) ctx.fail(path, `${show(v)} is not one of ${PROTOCOLS.join(', ')}`);
  return v;
}

function parseNode(raw: Raw, meta: Meta, ctx: ObjectContext): NodeObj {
  const spec = raw.spec;
  if (spec === undefined) ctx.fail(['spec'], 'required (a Node needs spec.podCIDR)');
  if (!isMapping(spec)) ctx.fail(['spec'], `must be a mapping, got ${describe(spec)}`);

  const cidr = spec.podCIDR;
  if (cidr === undefined) ctx.fail(['spec', 'podCIDR'], 'required (the IPv4 block this node gives its pods)');
  if (typeof cidr !== 'string') ctx.fail(['spec', 'podCIDR'], `must be a string, got ${describe(cidr)}`);
  const cp = podCidrProblem(cidr);
  if (cp !== undefined) ctx.fail(['spec', 'podCIDR'], `${show(cidr)} ${cp}`);

  if (spec.podCIDRs !== undefined) {
    const list = spec.podCIDRs;
    if (!Array.isArray(list)) ctx.fail(['spec', 'podCIDRs'], `must be a sequence, got ${describe(list)}`);
    if (list.length > 1) ctx.fail(['spec', 'podCIDRs'], `has ${list.length} entries; podwire is single-stack IPv4 and uses exactly one pod CIDR`);
    if (list.length === 1 && list[0] !== cidr) {
      ctx.fail(['spec', 'podCIDRs', 0], `${show(list[0])} must equal spec.podCIDR (${cidr})`);
    }
  }

  const status = raw.status;
  if (status === undefined) ctx.fail(['status'], 'required (a Node needs status.addresses with an InternalIP)');
  if (!isMapping(status)) ctx.fail(['status'], `must be a mapping, got ${describe(status)}`);
  const addrs = status.addresses;
  if (addrs === undefined) ctx.fail(['status', 'addresses'], 'required (with one entry of type InternalIP)');
  if (!Array.isArray(addrs)) ctx.fail(['status', 'addresses'], `must be a sequence, got ${describe(addrs)}`);
  let internalIP: string | undefined;
  for (let i = 0; i < addrs.length; i++) {
    const a: unknown = addrs[i];
    const ap: Path = ['status', 'addresses', i];
    if (!isMapping(a)) ctx.fail(ap, `must be a mapping with type and address, got ${describe(a)}`);
    if (typeof a.type !== 'string' || a.type === '') ctx.fail([...ap, 'type'], `must be a non-empty string, got ${describe(a.type)}`);
    if (typeof a.address !== 'string') ctx.fail([...ap, 'address'], `must be a string, got ${describe(a.address)}`);
    if (a.type !== 'InternalIP') continue;
    if (internalIP !== undefined) ctx.fail(ap, `a second InternalIP (${a.address}); podwire needs exactly one`);
    // Loopback is allowed here: a lab may run several nodes on 127.0.0.x.
    const p = ipv4Problem(a.address, false);
    if (p !== undefined) ctx.fail([...ap, 'address'], `${show(a.address)} ${p}`);
    internalIP = a.address;
  }
  if (internalIP === undefined) ctx.fail(['status', 'addresses'], 'has no entry of type InternalIP');

  const annPath = (k: string): Path => ['metadata', 'annotations', k];
  let vtepMac: string | undefined;
  const macText = meta.annotations[ANNOTATION_VTEP_MAC];
  if (macText !== undefined) {
    const p = unicastMacProblem(macText);
    if (p !== undefined) ctx.fail(annPath(ANNOTATION_VTEP_MAC), `${show(macText)} ${p}`);
    vtepMac = macText.toLowerCase();
  }
  const backendText = meta.annotations[ANNOTATION_FLANNEL_BACKEND_DATA];
  if (backendText !== undefined) {
    const at = annPath(ANNOTATION_FLANNEL_BACKEND_DATA);
    let data: unknown;
    try {
      data = JSON.parse(backendText);
    } catch (e) {
      ctx.fail(at, `is not valid JSON: ${(e as Error).message}`);
    }
    // flannel writes "null" for backends without data (host-gw); only VXLAN has a VtepMAC.
    if (data !== null) {
      if (!isMapping(data)) ctx.fail(at, `must be a JSON object like {"VNI":1,"VtepMAC":"..."}, got ${describe(data)}`);
      if (data.VtepMAC !== undefined) {
        if (typeof data.VtepMAC !== 'string') ctx.fail(at, `VtepMAC must be a string, got ${describe(data.VtepMAC)}`);
        const p = unicastMacProblem(data.VtepMAC);
        if (p !== undefined) ctx.fail(at, `VtepMAC ${show(data.VtepMAC)} ${p}`);
        const mac = data.VtepMAC.toLowerCase();
        if (vtepMac !== undefined && vtepMac !== mac) {
          ctx.fail(annPath(ANNOTATION_VTEP_MAC), `${vtepMac} disagrees with VtepMAC ${mac} in ${ANNOTATION_FLANNEL_BACKEND_DATA}`);
        }
        vtepMac = mac;
      }
    }
  }

  let overlay: NodeObj['overlay'] = 'podwire';
  const overlayText = meta.annotations[ANNOTATION_OVERLAY];
  if (overlayText !== undefined) {
    if (overlayText !== 'podwire' && overlayText !== 'kernel') {
      ctx.fail(annPath(ANNOTATION_OVERLAY), `${show(overlayText)} is not one of podwire, kernel`);
    }
    overlay = overlayText;
  }

  const node: NodeObj = { kind: 'Node', name: meta.name, labels: meta.labels, podCIDR: cidr, internalIP, overlay };
  if (vtepMac !== undefined) node.vtepMac = vtepMac;
  return node;
}

// ------------------------------------------------------------------------------------------------
// Service (v1)
// ------------------------------------------------------------------------------------------------

const SERVICE_TYPES = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'] as const;
const LB_ALGORITHMS = ['round-robin', 'random', 'maglev'] as const;
const SERVICE_SPEC_FIELDS = [
  'type', 'clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy', 'selector', 'ports', 'externalIPs', 'externalName',
  'sessionAffinity', 'sessionAffinityConfig', 'externalTrafficPolicy', 'internalTrafficPolicy', 'publishNotReadyAddresses',
  'trafficDistribution', 'loadBalancerIP', 'loadBalancerClass', 'loadBalancerSourceRanges', 'healthCheckNodePort',
  'allocateLoadBalancerNodePorts',
];
const SERVICE_PORT_FIELDS = ['name', 'protocol', 'appProtocol', 'port', 'targetPort', 'nodePort'];
const LB_ONLY = 'only applies to LoadBalancer services, which podwire does not support';

function parseService(raw: Raw, meta: Meta, ctx: ObjectContext): ServiceObj {
  const spec = raw.spec;
  if (spec === undefined) ctx.fail(['spec'], 'required (a Service needs spec.ports, or spec.type ExternalName with spec.externalName)');
  if (!isMapping(spec)) ctx.fail(['spec'], `must be a mapping, got ${describe(spec)}`);
  checkFields(spec, ['spec'], SERVICE_SPEC_FIELDS, 'not a Service spec field', ctx);
  const sp = (k: string): Path => ['spec', k];

  // type
  let type: ServiceObj['type'] = 'ClusterIP';
  if (spec.type !== undefined) {
    const t = oneOfAt(spec.type, SERVICE_TYPES, sp('type'), ctx);
    if (t === 'LoadBalancer') {
      ctx.fail(sp('type'), 'LoadBalancer is not supported: podwire has no load-balancer controller (use NodePort, or ClusterIP with spec.externalIPs)');
    }
    type = t;
  }
  const externalNameType = type === 'ExternalName';

  // Fields of LoadBalancer services, and others podwire does not implement: only their defaults pass.
  if (spec.loadBalancerIP !== undefined && stringAt(spec.loadBalancerIP, sp('loadBalancerIP'), ctx) !== '') ctx.fail(sp('loadBalancerIP'), LB_ONLY);
  if (spec.loadBalancerClass !== undefined) {
    stringAt(spec.loadBalancerClass, sp('loadBalancerClass'), ctx);
    ctx.fail(sp('loadBalancerClass'), LB_ONLY);
  }
  if (seqOf(spec.loadBalancerSourceRanges, sp('loadBalancerSourceRanges'), ctx).length > 0) ctx.fail(sp('loadBalancerSourceRanges'), LB_ONLY);
  if (spec.healthCheckNodePort !== undefined && spec.healthCheckNodePort !== 0) {
    integerAt(spec.healthCheckNodePort, sp('healthCheckNodePort'), ctx, 1, 65535);
    ctx.fail(sp('healthCheckNodePort'), LB_ONLY);
  }
  if (spec.allocateLoadBalancerNodePorts !== undefined) {
    // Kubernetes defaults it (to true) only on LoadBalancer services and rejects it on any other type.
    booleanAt(spec.allocateLoadBalancerNodePorts, sp('allocateLoadBalancerNodePorts'), ctx);
    ctx.fail(sp('allocateLoadBalancerNodePorts'), LB_ONLY);
  }
  if (spec.publishNotReadyAddresses !== undefined && booleanAt(spec.publishNotReadyAddresses, sp('publishNotReadyAddresses'), ctx)) {
    ctx.fail(sp('publishNotReadyAddresses'), 'true is not supported: podwire does not implement it (endpoints that are not ready never get traffic)');
  }
  if (spec.trafficDistribution !== undefined) {
    const td = stringAt(spec.trafficDistribution, sp('trafficDistribution'), ctx);
    ctx.fail(sp('trafficDistribution'), `${show(td)} is not supported: podwire does not implement topology-aware traffic distribution`);
  }

  // externalName
  let externalName: string | undefined;
  if (spec.externalName !== undefined && spec.externalName !== '') {
    const en = stringAt(spec.externalName, sp('externalName'), ctx);
    if (!externalNameType) ctx.fail(sp('externalName'), `may only be set when spec.type is ExternalName (this service is ${type})`);
    const name = en.endsWith('.') ? en.slice(0, -1) : en; // Kubernetes accepts a fully qualified name's trailing dot
    const p = dns1123SubdomainProblem(name);
    if (p !== undefined) ctx.fail(sp('externalName'), `${show(en)} ${p}`);
    externalName = name;
  } else if (externalNameType) {
    ctx.fail(sp('externalName'), 'required when spec.type is ExternalName (the DNS name this service is an alias for)');
  }

  // clusterIP, clusterIPs, ipFamilies, ipFamilyPolicy
  const forExternalName = 'may not be set for ExternalName services (they have no cluster IP)';
  let clusterIP: string | undefined;
  if (spec.clusterIP !== undefined && stringAt(spec.clusterIP, sp('clusterIP'), ctx) !== '') {
    if (externalNameType) ctx.fail(sp('clusterIP'), forExternalName);
    clusterIP = clusterIPAt(spec.clusterIP as string, sp('clusterIP'), type, ctx);
  }
  const ips = seqOf(spec.clusterIPs, sp('clusterIPs'), ctx);
  if (ips.length > 0 && externalNameType) ctx.fail(sp('clusterIPs'), forExternalName);
  if (ips.length > 1) ctx.fail(sp('clusterIPs'), `has ${ips.length} entries; podwire is single-stack IPv4 and a Service has exactly one cluster IP`);
  if (ips.length === 1) {
    const at: Path = ['spec', 'clusterIPs', 0];
    const ip = stringAt(ips[0], at, ctx);
    if (clusterIP === undefined) clusterIP = clusterIPAt(ip, at, type, ctx); // as the API server defaults clusterIP from clusterIPs[0]
    else if (ip !== clusterIP) ctx.fail(at, `${show(ip)} must equal spec.clusterIP (${clusterIP})`);
  }
  const families = seqOf(spec.ipFamilies, sp('ipFamilies'), ctx);
  if (families.length > 0 && externalNameType) ctx.fail(sp('ipFamilies'), forExternalName);
  if (families.length > 1) ctx.fail(sp('ipFamilies'), `has ${families.length} entries; podwire is single-stack IPv4 (dual-stack Services are not supported)`);
  if (families.length === 1 && oneOfAt(families[0], ['IPv4', 'IPv6'], ['spec', 'ipFamilies', 0], ctx) === 'IPv6') {
    ctx.fail(['spec', 'ipFamilies', 0], '"IPv6" is not supported: podwire is single-stack IPv4');
  }
  if (spec.ipFamilyPolicy !== undefined) {
    if (externalNameType) ctx.fail(sp('ipFamilyPolicy'), forExternalName);
    const pol = oneOfAt(spec.ipFamilyPolicy, ['SingleStack', 'PreferDualStack', 'RequireDualStack'], sp('ipFamilyPolicy'), ctx);
    if (pol !== 'SingleStack') ctx.fail(sp('ipFamilyPolicy'), `${show(pol)} is not supported: podwire is single-stack IPv4 (use SingleStack)`);
  }
  const headless = clusterIP === 'None';
  const noVirtualIP = externalNameType ? 'an ExternalName service' : headless ? 'a headless service (clusterIP None)' : undefined;

  // selector
  let selector: Record<string, string> | undefined = labelMap(spec.selector, sp('selector'), ctx);
  if (Object.keys(selector).length === 0) selector = undefined;
  else if (externalNameType) {
    ctx.fail(sp('selector'), 'may not be set for ExternalName services: an ExternalName service is only a DNS alias, it has no endpoints');
  }

  // ports
  const portList = seqOf(spec.ports, sp('ports'), ctx);
  if (portList.length === 0 && noVirtualIP === undefined) {
    ctx.fail(sp('ports'), 'required (at least one port, unless the service is headless or ExternalName)');
  }
  const ports: ServicePort[] = [];
  const names = new Map<string, string>();
  const keys = new Map<string, string>();
  const nodePorts = new Map<string, string>();
  portList.forEach((p, i) => {
    const pp: Path = ['spec', 'ports', i];
    const port = parseServicePort(p, pp, type, portList.length > 1, ctx);
    if (port.name !== undefined) {
      const first = names.get(port.name);
      if (first !== undefined) ctx.fail([...pp, 'name'], `duplicate port name ${show(port.name)} (also ${first})`);
      names.set(port.name, formatPath([...pp, 'name']));
    }
    const key = `${port.port}/${port.protocol}`;
    const firstKey = keys.get(key);
    if (firstKey !== undefined) ctx.fail([...pp, 'port'], `duplicate port ${key} (also ${firstKey})`);
    keys.set(key, formatPath(pp));
    if (port.nodePort !== undefined) {
      const np = `${port.nodePort}/${port.protocol}`;
      const firstNp = nodePorts.get(np);
      if (firstNp !== undefined) ctx.fail([...pp, 'nodePort'], `duplicate node port ${np} (also ${firstNp})`);
      nodePorts.set(np, formatPath([...pp, 'nodePort']));
    }
    ports.push(port);
  });

  // externalIPs
  const externalIPs: string[] = [];
  const eips = seqOf(spec.externalIPs, sp('externalIPs'), ctx);
  if (eips.length > 0 && noVirtualIP !== undefined) {
    ctx.fail(sp('externalIPs'), `not allowed on ${noVirtualIP}: there is no virtual IP to forward them to (kube-proxy ignores them too)`);
  }
  eips.forEach((v, i) => {
    const at: Path = ['spec', 'externalIPs', i];
    const ip = stringAt(v, at, ctx);
    const p = routableIpv4Problem(ip);
    if (p !== undefined) ctx.fail(at, `${show(ip)} ${p}`);
    const first = externalIPs.indexOf(ip);
    if (first >= 0) ctx.fail(at, `duplicate external IP ${ip} (also spec.externalIPs[${first}])`);
    externalIPs.push(ip);
  });

  // session affinity
  let sessionAffinity: ServiceObj['sessionAffinity'] = 'None';
  if (spec.sessionAffinity !== undefined) sessionAffinity = oneOfAt(spec.sessionAffinity, ['None', 'ClientIP'], sp('sessionAffinity'), ctx);
  if (sessionAffinity === 'ClientIP' && noVirtualIP !== undefined) {
    ctx.fail(sp('sessionAffinity'), `ClientIP has no effect on ${noVirtualIP}: podwire does not load-balance it (use None)`);
  }
  let affinityTimeoutSeconds = 10800;
  if (spec.sessionAffinityConfig !== undefined) {
    const at = sp('sessionAffinityConfig');
    if (sessionAffinity === 'None') ctx.fail(at, 'must not be set when spec.sessionAffinity is None');
    const cfg = mappingAt(spec.sessionAffinityConfig, at, ctx);
    checkFields(cfg, at, ['clientIP'], 'sessionAffinityConfig has only clientIP', ctx);
    if (cfg.clientIP !== undefined) {
      const cat: Path = [...at, 'clientIP'];
      const c = mappingAt(cfg.clientIP, cat, ctx);
      checkFields(c, cat, ['timeoutSeconds'], 'clientIP has only timeoutSeconds', ctx);
      if (c.timeoutSeconds !== undefined) affinityTimeoutSeconds = integerAt(c.timeoutSeconds, [...cat, 'timeoutSeconds'], ctx, 1, 86400);
    }
  }

  // traffic policies
  let externalTrafficPolicy: ServiceObj['externalTrafficPolicy'] = 'Cluster';
  if (spec.externalTrafficPolicy !== undefined) {
    const etp = oneOfAt(spec.externalTrafficPolicy, ['Cluster', 'Local'], sp('externalTrafficPolicy'), ctx);
    // As Kubernetes: any value (not only Local) is refused on a service nothing outside the cluster can reach.
    const externallyAccessible = type === 'NodePort' || (type === 'ClusterIP' && externalIPs.length > 0);
    if (!externallyAccessible) {
      ctx.fail(sp('externalTrafficPolicy'), `${show(etp)} may only be set for externally-accessible services (type NodePort, or ClusterIP with spec.externalIPs)`);
    }
    externalTrafficPolicy = etp;
  }
  if (spec.internalTrafficPolicy !== undefined) {
    const itp = oneOfAt(spec.internalTrafficPolicy, ['Cluster', 'Local'], sp('internalTrafficPolicy'), ctx);
    if (itp === 'Local') {
      ctx.fail(sp('internalTrafficPolicy'), '"Local" is not supported: podwire does not implement internalTrafficPolicy Local (sending in-cluster traffic only to endpoints on the same node); use Cluster');
    }
  }

  // podwire.io/lb-algorithm
  let lbAlgorithm: ServiceObj['lbAlgorithm'] = 'round-robin';
  const algText = meta.annotations[ANNOTATION_LB_ALGORITHM];
  if (algText !== undefined) {
    const at: Path = ['metadata', 'annotations', ANNOTATION_LB_ALGORITHM];
    if (!(LB_ALGORITHMS as readonly string[]).includes(algText)) ctx.fail(at, `${show(algText)} is not one of ${LB_ALGORITHMS.join(', ')}`);
    if (noVirtualIP !== undefined) ctx.fail(at, `has no effect on ${noVirtualIP}: podwire does not load-balance it`);
    lbAlgorithm = algText as ServiceObj['lbAlgorithm'];
  }

  const svc: ServiceObj = {
    kind: 'Service',
    name: meta.name,
    namespace: meta.namespace,
    labels: meta.labels,
    annotations: meta.annotations,
    type,
    ports,
    externalIPs,
    sessionAffinity,
    affinityTimeoutSeconds,
    externalTrafficPolicy,
    internalTrafficPolicy: 'Cluster',
    lbAlgorithm,
  };
  if (clusterIP !== undefined) svc.clusterIP = clusterIP;
  if (selector !== undefined) svc.selector = selector;
  if (externalName !== undefined) svc.externalName = externalName;
  return svc;
}

/** "None" (headless, ClusterIP type only) or an IPv4 host address. */
function clusterIPAt(ip: string, at: Path, type: ServiceObj['type'], ctx: ObjectContext): string {
  if (ip === 'None') {
    if (type !== 'ClusterIP') ctx.fail(at, `"None" (headless) is only allowed when spec.type is ClusterIP, not ${type}`);
    return ip;
  }
  const p = ipv4Problem(ip, true);
  if (p !== undefined) ctx.fail(at, `${show(ip)} ${p}`);
  return ip;
}

function parseServicePort(p: unknown, pp: Path, type: ServiceObj['type'], several: boolean, ctx: ObjectContext): ServicePort {
  if (!isMapping(p)) ctx.fail(pp, `must be a mapping, got ${describe(p)}`);
  checkFields(p, pp, SERVICE_PORT_FIELDS, `a Service port has ${SERVICE_PORT_FIELDS.join(', ')}`, ctx);

  let name: string | undefined;
  if (p.name !== undefined && stringAt(p.name, [...pp, 'name'], ctx) !== '') {
    const np = dns1123LabelProblem(p.name as string);
    if (np !== undefined) ctx.fail([...pp, 'name'], `${show(p.name)} ${np}`);
    name = p.name as string;
  } else if (several) {
    ctx.fail([...pp, 'name'], 'required when a Service has more than one port');
  }

  const protocol = parseProtocol(p.protocol, [...pp, 'protocol'], ctx);
  if (p.port === undefined) ctx.fail([...pp, 'port'], 'required');
  const port = integerAt(p.port, [...pp, 'port'], ctx, 1, 65535);

  // Kubernetes defaults an unset, 0 or "" targetPort to the port.
  let targetPort: number | string = port;
  if (p.targetPort !== undefined && p.targetPort !== 0 && p.targetPort !== '') targetPort = portOrNameAt(p.targetPort, [...pp, 'targetPort'], ctx);

  if (p.appProtocol !== undefined) {
    // Informational (a hint for proxies that understand the protocol); validated, not used.
    const ap = stringAt(p.appProtocol, [...pp, 'appProtocol'], ctx);
    const problem = qualifiedNameProblem(ap);
    if (problem !== undefined) ctx.fail([...pp, 'appProtocol'], `${show(ap)} is not a valid application protocol: ${problem}`);
  }

  const out: ServicePort = { protocol, port, targetPort };
  if (name !== undefined) out.name = name;
  // nodePort 0 means "unset" (allocate), as in Kubernetes.
  if (p.nodePort !== undefined && p.nodePort !== 0) {
    integerAt(p.nodePort, [...pp, 'nodePort'], ctx, 1, 65535);
    if (type !== 'NodePort') ctx.fail([...pp, 'nodePort'], `may only be set when spec.type is NodePort (this service is ${type})`);
    out.nodePort = p.nodePort as number;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// EndpointSlice (discovery.k8s.io/v1)
// ------------------------------------------------------------------------------------------------

const ENDPOINT_SLICE_FIELDS = ['apiVersion', 'kind', 'metadata', 'addressType', 'endpoints', 'ports'];
const ENDPOINT_FIELDS = ['addresses', 'conditions', 'hostname', 'nodeName', 'zone', 'targetRef', 'hints', 'deprecatedTopology'];
const OBJECT_REFERENCE_FIELDS = ['kind', 'namespace', 'name', 'uid', 'apiVersion', 'resourceVersion', 'fieldPath'];
const ENDPOINT_PORT_FIELDS = ['name', 'protocol', 'port', 'appProtocol'];
const MAX_ENDPOINTS = 1000;
const MAX_ENDPOINT_ADDRESSES = 100;

function parseEndpointSlice(raw: Raw, meta: Meta, ctx: ObjectContext): EndpointSliceObj {
  checkFields(raw, [], ENDPOINT_SLICE_FIELDS, 'an EndpointSlice has addressType, endpoints and ports at the top level', ctx);

  if (raw.addressType === undefined) ctx.fail(['addressType'], 'required (podwire supports IPv4)');
  const at = oneOfAt(raw.addressType, ['IPv4', 'IPv6', 'FQDN'], ['addressType'], ctx);
  if (at !== 'IPv4') ctx.fail(['addressType'], `${show(at)} is not supported: podwire is IPv4-only`);

  const svcPath: Path = ['metadata', 'labels', LABEL_SERVICE_NAME];
  const serviceName = meta.labels[LABEL_SERVICE_NAME];
  if (serviceName === undefined) ctx.fail(svcPath, 'required: the name of the Service this slice belongs to');
  const np = dns1035LabelProblem(serviceName);
  if (np !== undefined) ctx.fail(svcPath, `${show(serviceName)} is not a valid Service name: ${np}`);

  const list = seqOf(raw.endpoints, ['endpoints'], ctx);
  if (list.length > MAX_ENDPOINTS) ctx.fail(['endpoints'], `has ${list.length} entries; an EndpointSlice holds at most ${MAX_ENDPOINTS}`);
  const endpoints = list.map((e, i) => parseEndpoint(e, ['endpoints', i], ctx));

  const ports: EndpointSliceObj['ports'] = [];
  const names = new Map<string, string>();
  seqOf(raw.ports, ['ports'], ctx).forEach((p, i) => {
    const pp: Path = ['ports', i];
    if (!isMapping(p)) ctx.fail(pp, `must be a mapping, got ${describe(p)}`);
    checkFields(p, pp, ENDPOINT_PORT_FIELDS, `an EndpointSlice port has ${ENDPOINT_PORT_FIELDS.join(', ')}`, ctx);
    let name = '';
    if (p.name !== undefined) {
      name = stringAt(p.name, [...pp, 'name'], ctx);
      const lp = name === '' ? undefined : dns1123LabelProblem(name);
      if (lp !== undefined) ctx.fail([...pp, 'name'], `${show(name)} ${lp}`);
    }
    // Kubernetes defaults an absent name to "" and requires names to be unique, so at most one port is unnamed.
    const first = names.get(name);
    if (first !== undefined) {
      ctx.fail([...pp, 'name'], name === '' ? `a second unnamed port (also ${first}); ports need distinct names` : `duplicate port name ${show(name)} (also ${first})`);
    }
    names.set(name, formatPath(name === '' ? pp : [...pp, 'name']));
    const protocol = parseProtocol(p.protocol, [...pp, 'protocol'], ctx);
    if (p.port === undefined) {
      ctx.fail([...pp, 'port'], 'required (a port-less entry means "every port" in Kubernetes, which podwire does not support)');
    }
    const port = integerAt(p.port, [...pp, 'port'], ctx, 1, 65535);
    if (p.appProtocol !== undefined) {
      const ap = stringAt(p.appProtocol, [...pp, 'appProtocol'], ctx);
      const problem = qualifiedNameProblem(ap);
      if (problem !== undefined) ctx.fail([...pp, 'appProtocol'], `${show(ap)} is not a valid application protocol: ${problem}`);
    }
    ports.push(name === '' ? { port, protocol } : { name, port, protocol });
  });

  return { kind: 'EndpointSlice', name: meta.name, namespace: meta.namespace, labels: meta.labels, serviceName, addressType: 'IPv4', ports, endpoints };
}

/**
 * Conditions default as the contract says: ready = true when unset (Kubernetes: "a nil value should
 * be interpreted as true"), serving = ready when unset (so an endpoint marked not ready and saying
 * nothing about serving gets no traffic, even as a terminating fallback), terminating = false.
 */
function parseEndpoint(e: unknown, ep: Path, ctx: ObjectContext): EndpointObj {
  if (!isMapping(e)) ctx.fail(ep, `must be a mapping, got ${describe(e)}`);
  if (e.hints !== undefined) ctx.fail([...ep, 'hints'], 'topology-aware routing hints are not supported by podwire');
  checkFields(e, ep, ENDPOINT_FIELDS, `an endpoint has ${ENDPOINT_FIELDS.filter((f) => f !== 'hints').join(', ')}`, ctx);

  if (e.addresses === undefined) ctx.fail([...ep, 'addresses'], 'required (at least one IPv4 address)');
  const list = seqOf(e.addresses, [...ep, 'addresses'], ctx);
  if (list.length === 0) ctx.fail([...ep, 'addresses'], 'must have at least one address');
  if (list.length > MAX_ENDPOINT_ADDRESSES) {
    ctx.fail([...ep, 'addresses'], `has ${list.length} entries; an endpoint has at most ${MAX_ENDPOINT_ADDRESSES}`);
  }
  const addresses = list.map((a, i) => {
    const ip = stringAt(a, [...ep, 'addresses', i], ctx);
    const p = routableIpv4Problem(ip);
    if (p !== undefined) ctx.fail([...ep, 'addresses', i], `${show(ip)} ${p}`);
    return ip;
  });

  let ready = true;
  let serving: boolean | undefined;
  let terminating = false;
  if (e.conditions !== undefined) {
    const cp: Path = [...ep, 'conditions'];
    const c = mappingAt(e.conditions, cp, ctx);
    checkFields(c, cp, ['ready', 'serving', 'terminating'], 'conditions are ready, serving and terminating', ctx);
    if (c.ready !== undefined) ready = booleanAt(c.ready, [...cp, 'ready'], ctx);
    if (c.serving !== undefined) serving = booleanAt(c.serving, [...cp, 'serving'], ctx);
    if (c.terminating !== undefined) terminating = booleanAt(c.terminating, [...cp, 'terminating'], ctx);
  }

  if (e.hostname !== undefined) {
    // DNS, not podwire's job: validated as Kubernetes does, then dropped.
    const h = stringAt(e.hostname, [...ep, 'hostname'], ctx);
    const p = dns1123LabelProblem(h);
    if (p !== undefined) ctx.fail([...ep, 'hostname'], `${show(h)} ${p}`);
  }
  if (e.zone !== undefined) stringAt(e.zone, [...ep, 'zone'], ctx); // informational: accepted, not used
  if (e.deprecatedTopology !== undefined) stringMap(e.deprecatedTopology, [...ep, 'deprecatedTopology'], ctx); // informational too

  const out: EndpointObj = { addresses, ready, serving: serving ?? ready, terminating };
  if (e.nodeName !== undefined) {
    const n = stringAt(e.nodeName, [...ep, 'nodeName'], ctx);
    const p = dns1123SubdomainProblem(n);
    if (p !== undefined) ctx.fail([...ep, 'nodeName'], `${show(n)} ${p}`);
    out.nodeName = n;
  }
  if (e.targetRef !== undefined) {
    const tp: Path = [...ep, 'targetRef'];
    const t = mappingAt(e.targetRef, tp, ctx);
    checkFields(t, tp, OBJECT_REFERENCE_FIELDS, `an object reference has ${OBJECT_REFERENCE_FIELDS.join(', ')}`, ctx);
    for (const k of ['kind', 'name'] as const) {
      if (t[k] === undefined) ctx.fail([...tp, k], 'required');
      if (stringAt(t[k], [...tp, k], ctx) === '') ctx.fail([...tp, k], 'must not be empty');
    }
    for (const k of ['uid', 'apiVersion', 'resourceVersion', 'fieldPath']) if (t[k] !== undefined) stringAt(t[k], [...tp, k], ctx);
    const ref: NonNullable<EndpointObj['targetRef']> = { kind: t.kind as string, name: t.name as string };
    if (t.namespace !== undefined && stringAt(t.namespace, [...tp, 'namespace'], ctx) !== '') {
      const p = dns1123LabelProblem(t.namespace as string);
      if (p !== undefined) ctx.fail([...tp, 'namespace'], `${show(t.namespace)} ${p}`);
      ref.namespace = t.namespace as string;
    }
    out.targetRef = ref;
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// NetworkPolicy (networking.k8s.io/v1)
// ------------------------------------------------------------------------------------------------

const NETWORK_POLICY_SPEC_FIELDS = ['podSelector', 'policyTypes', 'ingress', 'egress'];
const SELECTOR_OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

function parseNetworkPolicy(raw: Raw, meta: Meta, ctx: ObjectContext): NetworkPolicyObj {
  const spec = raw.spec;
  if (spec === undefined) ctx.fail(['spec'], 'required (a NetworkPolicy needs spec.podSelector)');
  if (!isMapping(spec)) ctx.fail(['spec'], `must be a mapping, got ${describe(spec)}`);
  checkFields(spec, ['spec'], NETWORK_POLICY_SPEC_FIELDS, `a NetworkPolicy spec has ${NETWORK_POLICY_SPEC_FIELDS.join(', ')}`, ctx);

  if (spec.podSelector === undefined) ctx.fail(['spec', 'podSelector'], 'required ({} selects every pod in the namespace)');
  const podSelector = parseSelector(spec.podSelector, ['spec', 'podSelector'], ctx);

  const ingress = seqOf(spec.ingress, ['spec', 'ingress'], ctx).map((r, i) => parseRule(r, ['spec', 'ingress', i], 'from', ctx));
  const egress = seqOf(spec.egress, ['spec', 'egress'], ctx).map((r, i) => parseRule(r, ['spec', 'egress', i], 'to', ctx));

  const policyTypes: NetworkPolicyObj['policyTypes'] = [];
  seqOf(spec.policyTypes, ['spec', 'policyTypes'], ctx).forEach((v, i) => {
    const at: Path = ['spec', 'policyTypes', i];
    const t = oneOfAt(v, ['Ingress', 'Egress'], at, ctx);
    const first = policyTypes.indexOf(t);
    if (first >= 0) ctx.fail(at, `duplicate ${show(t)} (also spec.policyTypes[${first}])`);
    policyTypes.push(t);
  });
  if (policyTypes.length === 0) {
    // Kubernetes' defaulting (SetDefaults_NetworkPolicy): Ingress always, Egress only when there is
    // at least one egress rule; `egress: []` without policyTypes does not make an Egress policy.
    policyTypes.push('Ingress');
    if (egress.length > 0) policyTypes.push('Egress');
  }

  return { kind: 'NetworkPolicy', name: meta.name, namespace: meta.namespace, labels: meta.labels, podSelector, policyTypes, ingress, egress };
}

function parseRule(r: unknown, rp: Path, peersField: 'from' | 'to', ctx: ObjectContext): NetworkPolicyRule {
  const what = peersField === 'from' ? 'an ingress rule has from and ports' : 'an egress rule has to and ports';
  if (!isMapping(r)) ctx.fail(rp, `must be a mapping, got ${describe(r)}`);
  checkFields(r, rp, [peersField, 'ports'], what, ctx);
  const peers = seqOf(r[peersField], [...rp, peersField], ctx).map((p, i) => parsePeer(p, [...rp, peersField, i], ctx));
  const ports = seqOf(r.ports, [...rp, 'ports'], ctx).map((p, i) => parsePolicyPort(p, [...rp, 'ports', i], ctx));
  return { peers, ports };
}

function parsePeer(p: unknown, pp: Path, ctx: ObjectContext): NetworkPolicyPeer {
  if (!isMapping(p)) ctx.fail(pp, `must be a mapping, got ${describe(p)}`);
  checkFields(p, pp, ['podSelector', 'namespaceSelector', 'ipBlock'], 'a peer has podSelector, namespaceSelector or ipBlock', ctx);
  if (p.podSelector === undefined && p.namespaceSelector === undefined && p.ipBlock === undefined) {
    ctx.fail(pp, 'must specify a peer: podSelector and/or namespaceSelector, or ipBlock');
  }
  if (p.ipBlock !== undefined && (p.podSelector !== undefined || p.namespaceSelector !== undefined)) {
    ctx.fail(pp, 'ipBlock may not be combined with podSelector or namespaceSelector (write them as separate peers)');
  }
  const out: NetworkPolicyPeer = {};
  if (p.podSelector !== undefined) out.podSelector = parseSelector(p.podSelector, [...pp, 'podSelector'], ctx);
  if (p.namespaceSelector !== undefined) out.namespaceSelector = parseSelector(p.namespaceSelector, [...pp, 'namespaceSelector'], ctx);
  if (p.ipBlock !== undefined) out.ipBlock = parseIpBlock(p.ipBlock, [...pp, 'ipBlock'], ctx);
  return out;
}

function parseIpBlock(v: unknown, bp: Path, ctx: ObjectContext): { cidr: string; except: string[] } {
  const b = mappingAt(v, bp, ctx);
  checkFields(b, bp, ['cidr', 'except'], 'an ipBlock has cidr and except', ctx);
  if (b.cidr === undefined) ctx.fail([...bp, 'cidr'], 'required');
  const cidrText = stringAt(b.cidr, [...bp, 'cidr'], ctx);
  const block = parseIpv4Cidr(cidrText);
  if ('problem' in block) ctx.fail([...bp, 'cidr'], `${show(cidrText)} ${block.problem}`);
  const except = seqOf(b.except, [...bp, 'except'], ctx).map((x, i) => {
    const at: Path = [...bp, 'except', i];
    const text = stringAt(x, at, ctx);
    const e = parseIpv4Cidr(text);
    if ('problem' in e) ctx.fail(at, `${show(text)} ${e.problem}`);
    const mask = block.prefix === 0 ? 0 : (0xffffffff << (32 - block.prefix)) >>> 0;
    if (e.prefix <= block.prefix || ((e.net & mask) >>> 0) !== block.net) ctx.fail(at, `${show(text)} must be strictly inside cidr ${block.cidr}`);
    return e.cidr;
  });
  return { cidr: block.cidr, except };
}

function parsePolicyPort(v: unknown, pp: Path, ctx: ObjectContext): NetworkPolicyPort {
  if (!isMapping(v)) ctx.fail(pp, `must be a mapping, got ${describe(v)}`);
  checkFields(v, pp, ['protocol', 'port', 'endPort'], 'a NetworkPolicy port has protocol, port and endPort', ctx);
  const out: NetworkPolicyPort = { protocol: parseProtocol(v.protocol, [...pp, 'protocol'], ctx) };
  if (v.port !== undefined) out.port = portOrNameAt(v.port, [...pp, 'port'], ctx);
  if (v.endPort !== undefined) {
    const end = integerAt(v.endPort, [...pp, 'endPort'], ctx, 1, 65535);
    if (out.port === undefined) ctx.fail([...pp, 'port'], 'required when endPort is set');
    if (typeof out.port === 'string') ctx.fail([...pp, 'endPort'], `may not be set when port is a name (${show(out.port)}); endPort needs a numeric port`);
    if (end < out.port) ctx.fail([...pp, 'endPort'], `${end} must be greater than or equal to port (${out.port})`);
    out.endPort = end;
  }
  return out;
}

/** A metav1.LabelSelector: matchLabels and matchExpressions, validated and normalized. */
function parseSelector(v: unknown, sp: Path, ctx: ObjectContext): LabelSelector {
  const s = mappingAt(v, sp, ctx);
  checkFields(s, sp, ['matchLabels', 'matchExpressions'], 'a label selector has matchLabels and matchExpressions', ctx);
  const matchLabels = labelMap(s.matchLabels, [...sp, 'matchLabels'], ctx);
  const matchExpressions = seqOf(s.matchExpressions, [...sp, 'matchExpressions'], ctx).map((r, i): LabelSelectorRequirement => {
    const rp: Path = [...sp, 'matchExpressions', i];
    if (!isMapping(r)) ctx.fail(rp, `must be a mapping, got ${describe(r)}`);
    checkFields(r, rp, ['key', 'operator', 'values'], 'a selector requirement has key, operator and values', ctx);
    if (r.key === undefined) ctx.fail([...rp, 'key'], 'required');
    const key = stringAt(r.key, [...rp, 'key'], ctx);
    const kp = qualifiedNameProblem(key);
    if (kp !== undefined) ctx.fail([...rp, 'key'], `${show(key)} is not a valid label key: ${kp}`);
    if (r.operator === undefined) ctx.fail([...rp, 'operator'], `required (one of ${SELECTOR_OPERATORS.join(', ')})`);
    const operator = oneOfAt(r.operator, SELECTOR_OPERATORS, [...rp, 'operator'], ctx);
    const values = seqOf(r.values, [...rp, 'values'], ctx).map((x, j) => {
      const val = stringAt(x, [...rp, 'values', j], ctx);
      const vp = labelValueProblem(val);
      if (vp !== undefined) ctx.fail([...rp, 'values', j], `${show(val)} is not a valid label value: ${vp}`);
      return val;
    });
    if ((operator === 'In' || operator === 'NotIn') && values.length === 0) {
      ctx.fail([...rp, 'values'], `must have at least one value when operator is ${operator}`);
    }
    if ((operator === 'Exists' || operator === 'DoesNotExist') && values.length > 0) {
      ctx.fail([...rp, 'values'], `must be empty when operator is ${operator}`);
    }
    return { key, operator, values };
  });
  return { matchLabels, matchExpressions };
}

// ------------------------------------------------------------------------------------------------
// Errors with a location
// ------------------------------------------------------------------------------------------------

/** The object being parsed: its ref, and where in the YAML document its fields live. */
class ObjectContext {
  readonly ref: string;
  private readonly doc: Document.Parsed;
  private readonly lineCounter: LineCounter;
  private readonly base: Path;
  private readonly where: ManifestLocation;

  constructor(ref: string, doc: Document.Parsed, lineCounter: LineCounter, base: Path, where: ManifestLocation) {
    this.ref = ref;
    this.doc = doc;
    this.lineCounter = lineCounter;
    this.base = base;
    this.where = where;
  }

  /**
   * Throw a ManifestError for `path` (relative to the object). `at` is where to look for the line
   * number when that differs from `path` (a bad map key is reported on the map, found at the key).
   */
  fail(path: Path, reason: string, at: Path = path): never {
    throw new ManifestError(this.ref, formatPath(path), reason, { ...this.where, line: this.lineOf(at) });
  }

  /** "at pods.yaml:12, document 2": used to point at a first definition. */
  describeLocation(path: Path): string {
    return formatLocation(this.ref, { ...this.where, line: this.lineOf(path) }).replace(/^ \((.*)\)$/, '$1');
  }

  /** Line of the deepest node on `path` that exists in the document. */
  private lineOf(path: Path): number | undefined {
    const full = [...this.base, ...path];
    for (let n = full.length; n >= 0; n--) {
      const node: unknown = n === 0 ? this.doc.contents : this.doc.getIn(full.slice(0, n), true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      if (range !== undefined) return this.lineCounter.linePos(range[0]).line;
    }
    return undefined;
  }
}

function formatLocation(objectRef: string, w: ManifestLocation): string {
  const parts: string[] = [];
  if (w.source !== undefined) parts.push(w.line !== undefined ? `${w.source}:${w.line}` : w.source);
  else if (w.line !== undefined) parts.push(`line ${w.line}`);
  if (w.document !== undefined && objectRef !== `document ${w.document}`) parts.push(`document ${w.document}`);
  if (w.item !== undefined) parts.push(`items[${w.item}]`);
  return parts.length === 0 ? '' : ` (at ${parts.join(', ')})`;
}

/** ['spec', 'containers', 0, 'name'] -> 'spec.containers[0].name'; odd keys -> '[podwire.io/ip]'. */
function formatPath(path: Path): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) s += s === '' ? seg : `.${seg}`;
    else s += `[${seg}]`;
  }
  return s;
}

// ------------------------------------------------------------------------------------------------
// Small type helpers
// ------------------------------------------------------------------------------------------------

/**
 * `key: null` (or a bare `key:`) means "not set", as in Kubernetes, whose JSON decoding turns null
 * into the field's zero value. Removing such keys up front lets every check treat null as absent.
 */
function dropNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(dropNulls);
  if (!isMapping(v)) return v;
  const out: Raw = {};
  for (const [k, val] of Object.entries(v)) if (val !== null) setOwn(out, k, dropNulls(val));
  return out;
}

function isMapping(v: unknown): v is Raw {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) && !(v instanceof Set);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a sequence';
  if (isMapping(v)) return 'a mapping';
  if (typeof v === 'string') return `the string ${show(v)}`;
  return `${typeof v} ${String(v)}`;
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/** labels / annotations: absent = {}; otherwise a mapping whose values are all strings. */
function stringMap(v: unknown, path: Path, ctx: ObjectContext): Record<string, string> {
  if (v === undefined) return {};
  if (!isMapping(v)) ctx.fail(path, `must be a mapping of strings, got ${describe(v)}`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') {
      const hint = typeof val === 'boolean' || typeof val === 'number' ? ` (quote it: "${String(val)}")` : '';
      ctx.fail([...path, k], `must be a string, got ${describe(val)}${hint}`);
    }
    setOwn(out, k, val);
  }
  return out;
}

/** A mapping of label keys to label values (metadata.labels, a selector's matchLabels); absent = {}. */
function labelMap(v: unknown, path: Path, ctx: ObjectContext): Record<string, string> {
  const labels = stringMap(v, path, ctx);
  for (const [k, val] of Object.entries(labels)) {
    const kp = qualifiedNameProblem(k);
    if (kp !== undefined) ctx.fail(path, `key ${show(k)} is not a valid label key: ${kp}`, [...path, k]);
    const vp = labelValueProblem(val);
    if (vp !== undefined) ctx.fail([...path, k], `${show(val)} is not a valid label value: ${vp}`);
  }
  return labels;
}

/** absent = []; otherwise must be a sequence. */
function seqOf(v: unknown, path: Path, ctx: ObjectContext): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) ctx.fail(path, `must be a sequence, got ${describe(v)}`);
  return v;
}

/** A required mapping (the caller has checked presence). */
function mappingAt(v: unknown, path: Path, ctx: ObjectContext): Raw {
  if (!isMapping(v)) ctx.fail(path, `must be a mapping, got ${describe(v)}`);
  return v;
}

/** Reject any key not in `allowed`; `hint` completes "unknown field (...)". */
function checkFields(m: Raw, path: Path, allowed: readonly string[], hint: string, ctx: ObjectContext): void {
  for (const k of Object.keys(m)) if (!allowed.includes(k)) ctx.fail([...path, k], `unknown field (${hint})`);
}

function stringAt(v: unknown, path: Path, ctx: ObjectContext): string {
  if (typeof v !== 'string') ctx.fail(path, `must be a string, got ${describe(v)}`);
  return v;
}

function booleanAt(v: unknown, path: Path, ctx: ObjectContext): boolean {
  if (typeof v !== 'boolean') ctx.fail(path, `must be a boolean, got ${describe(v)}`);
  return v;
}

function integerAt(v: unknown, path: Path, ctx: ObjectContext, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) ctx.fail(path, `must be an integer, got ${describe(v)}`);
  if (v < min || v > max) ctx.fail(path, `${v} is out of range ${min}-${max}`);
  return v;
}

function oneOfAt<T extends string>(v: unknown, allowed: readonly T[], path: Path, ctx: ObjectContext): T {
  if (typeof v !== 'string') ctx.fail(path, `must be a string, one of ${allowed.join(', ')}; got ${describe(v)}`);
  if (!(allowed as readonly string[]).includes(v)) ctx.fail(path, `${show(v)} is not one of ${allowed.join(', ')}`);
  return v as T;
}

/**
 * A port that may be a number or a name (a Service's targetPort, a NetworkPolicy port): an integer
 * 1-65535, or an IANA_SVC_NAME naming a container port.
 */
function portOrNameAt(v: unknown, path: Path, ctx: ObjectContext): number | string {
  if (typeof v === 'number') return integerAt(v, path, ctx, 1, 65535);
  if (typeof v !== 'string') ctx.fail(path, `must be a port number or a port name, got ${describe(v)}`);
  const p = ianaSvcNameProblem(v);
  if (p !== undefined) {
    const hint = /^\d+$/.test(v) ? ' (for a port number, write it without quotes)' : '';
    ctx.fail(path, `${show(v)} is not a valid port name: ${p}${hint}`);
  }
  return v;
}

/** `o[k] = v`, except that a key named "__proto__" becomes an ordinary property (and gets validated). */
function setOwn(o: object, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

// ------------------------------------------------------------------------------------------------
// Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation). Each returns why a value is
// invalid, or undefined when it is fine.
// ------------------------------------------------------------------------------------------------

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

export function dns1123LabelProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.length > 63) return `is not a valid DNS-1123 label: must be no more than 63 characters (has ${s.length})`;
  if (!DNS1123_LABEL.test(s)) {
    return "is not a valid DNS-1123 label: must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Service names (and what must name a Service): like a DNS-1123 label, but starting with a letter. */
export function dns1035LabelProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.length > 63) return `is not a valid DNS-1035 label: must be no more than 63 characters (has ${s.length})`;
  if (!DNS1035_LABEL.test(s)) {
    return "is not a valid DNS-1035 label: must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
  }
  return undefined;
}

export function dns1123SubdomainProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.length > 253) return `is not a valid DNS-1123 subdomain: must be no more than 253 characters (has ${s.length})`;
  if (!DNS1123_SUBDOMAIN.test(s)) {
    return "is not a valid DNS-1123 subdomain: must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Label and annotation keys: `[prefix/]name`, prefix a DNS-1123 subdomain, name ≤ 63 chars. */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length > 2) return "must be a name with an optional DNS subdomain prefix and one '/' (e.g. 'example.com/my-name')";
  const name = parts.length === 2 ? parts[1]! : parts[0]!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix.length === 0) return 'prefix part must not be empty';
    const p = dns1123SubdomainProblem(prefix);
    if (p !== undefined) return `prefix part ${p}`;
  }
  if (name.length === 0) return 'name part must not be empty';
  if (name.length > 63) return `name part must be no more than 63 characters (has ${name.length})`;
  if (!QUALIFIED_NAME_PART.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

export function labelValueProblem(v: string): string | undefined {
  if (v.length > 63) return `must be no more than 63 characters (has ${v.length})`;
  if (!LABEL_VALUE.test(v)) {
    return "must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Port names (IANA_SVC_NAME, RFC 6335 §5.1): what a Service's targetPort may refer to. */
export function ianaSvcNameProblem(s: string): string | undefined {
  if (s.length === 0) return 'must not be empty';
  if (s.length > 15) return `must be no more than 15 characters (has ${s.length})`;
  if (!/^[-a-z0-9]+$/.test(s)) return "must contain only lower case alphanumeric characters or '-'";
  if (!/[a-z]/.test(s)) return 'must contain at least one letter';
  if (s.startsWith('-') || s.endsWith('-')) return "must not begin or end with '-'";
  if (s.includes('--')) return "must not contain consecutive '-'";
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// Addresses
// ------------------------------------------------------------------------------------------------

/**
 * A dotted-quad IPv4 address usable by a host (no leading zeros: "010.0.0.1" is ambiguous).
 * Never 0.0.0.0/8, 255.255.255.255 or multicast; loopback only when `rejectLoopback` is false.
 */
function ipv4Problem(s: string, rejectLoopback: boolean): string | undefined {
  if (!ipaddr.IPv4.isValidFourPartDecimal(s)) return 'is not a valid IPv4 address (expected four decimal octets like 10.244.1.5)';
  const range = ipaddr.IPv4.parse(s).range();
  if (range === 'unspecified' || range === 'broadcast' || range === 'multicast' || (rejectLoopback && range === 'loopback')) {
    return `is a ${range} address, not a host address`;
  }
  return undefined;
}

/** A pod CIDR: IPv4, prefix 8..30 (room for network, gateway, a pod and broadcast), host bits zero. */
function podCidrProblem(s: string): string | undefined {
  const m = /^([^/]+)\/(0|[1-9]\d?)$/.exec(s);
  if (m === null || !ipaddr.IPv4.isValidFourPartDecimal(m[1]!)) return 'is not a valid IPv4 CIDR (expected e.g. 10.244.1.0/24)';
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) return `prefix length /${prefix} is out of range: podwire supports /8 to /30`;
  const network = ipaddr.IPv4.networkAddressFromCIDR(s).toString();
  if (network !== m[1]) return `has host bits set (did you mean ${network}/${prefix}?)`;
  return undefined;
}

/**
 * An address traffic can be sent to (a Service's externalIPs, an endpoint): `ipv4Problem` with
 * loopback rejected, and no link-local addresses either (Kubernetes rejects both for endpoints).
 */
function routableIpv4Problem(s: string): string | undefined {
  const p = ipv4Problem(s, true);
  if (p !== undefined) return p;
  if (ipaddr.IPv4.parse(s).range() === 'linkLocal') return 'is a link-local address, not a routable host address';
  return undefined;
}

/**
 * An IPv4 CIDR of any prefix length (a NetworkPolicy ipBlock). Like Kubernetes, host bits are
 * accepted and cleared ("10.1.2.3/8" means 10.0.0.0/8); the result is the normalized form.
 * IPv6 is recognized only to say it is not supported.
 */
function parseIpv4Cidr(s: string): { cidr: string; net: number; prefix: number } | { problem: string } {
  if (s.includes(':')) return { problem: 'is an IPv6 CIDR; podwire is IPv4-only' };
  const m = /^([^/]+)\/(0|[1-9]\d?)$/.exec(s);
  if (m === null || !ipaddr.IPv4.isValidFourPartDecimal(m[1]!) || Number(m[2]) > 32) {
    return { problem: 'is not a valid IPv4 CIDR (expected e.g. 10.0.0.0/8)' };
  }
  const prefix = Number(m[2]);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const bytes = ipaddr.IPv4.parse(m[1]!).octets;
  const net = ((((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0) & mask) >>> 0;
  const cidr = `${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.')}/${prefix}`;
  return { cidr, net, prefix };
}

/** "aa:bb:cc:dd:ee:ff", any case; must be unicast (I/G bit clear) and not all zeros. */
function unicastMacProblem(s: string): string | undefined {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s)) return 'is not a valid MAC address (expected six hex pairs like 0a:58:0a:f4:01:01)';
  if ((parseInt(s.slice(0, 2), 16) & 1) !== 0) return 'is a multicast MAC address (the I/G bit of the first octet is set); a VTEP needs a unicast MAC';
  if (/^00(:00){5}$/.test(s)) return 'is the all-zeros MAC address';
  return undefined;
}
