/**
 * Kubernetes manifests in, validated plain objects out.
 *
 * podwire is configured with the same YAML a Kubernetes user already writes: Namespaces, Pods and
 * Nodes (Services, EndpointSlices and NetworkPolicies come later). This module is the only place
 * that text is trusted to become data. Everything downstream (IPAM, the daemon, the lab) receives
 * small typed objects (`PodObj`, `NodeObj`, ...) holding exactly the facts podwire uses, already
 * checked, with defaults filled in, and never has to ask "what if this field is a number?".
 *
 * The rules this parser follows:
 *
 *   - Strict, not lenient. Kubernetes itself rejects a pod whose port protocol is "ICMP" or whose
 *     name has an underscore; so do we, with the same rules (DNS-1123 names, qualified label keys,
 *     IANA service names for ports). A manifest that podwire accepts should also be accepted by a
 *     real API server.
 *
 *   - Precise errors. Every problem is a `ManifestError` that names the object ("Pod default/web"),
 *     the field path in Kubernetes notation ("spec.containers[0].ports[1].protocol"), what is wrong,
 *     and where it was written (file, line, document number). The first problem stops the parse.
 *
 *   - All or nothing. `parseManifests` returns every object or throws; a half-applied
 *     configuration is harder to reason about than a refused one. Within one call, two objects
 *     with the same key (`Pod/default/web`), two pods with the same uid, or two pods pinning the
 *     same IP are errors too.
 *
 *   - `key: null` (or a bare `key:`) means the field is unset, as it does for the API server.
 *
 *   - Never silently ignore networking. podwire models a pod's *network*, not its processes, so
 *     fields about processes (image, command, resources, probes, volumes, ...) are accepted and
 *     dropped. But a networking field podwire does not implement (`spec.hostNetwork: true`,
 *     `hostPort`, `hostIP`, ports on init containers, a second pod CIDR) is an error: dropping it
 *     would make the lab behave differently from what the manifest says. DNS (`dnsPolicy`,
 *     `dnsConfig`, `hostAliases`, `hostname`, `subdomain`) is not podwire's job and is accepted.
 *
 *   - A Pod's `status` is ignored: in Kubernetes it is written by the kubelet, not by users.
 *     Readiness comes from the `podwire.io/ready` annotation instead. A Node's `status.addresses`
 *     is read, because that is where Kubernetes publishes a node's InternalIP.
 *
 *   - Annotations under `podwire.io/` are podwire's own knobs; an unknown one (say a typo like
 *     `podwire.io/pinned-ip`) is an error rather than a no-op.
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

export type ManifestObj = NamespaceObj | PodObj | NodeObj;

/** 'Pod/default/web', 'Node/node1', 'Namespace/prod'. */
export function objectKey(o: ManifestObj): string {
  return o.kind === 'Pod' ? `Pod/${o.namespace}/${o.name}` : `${o.kind}/${o.name}`;
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

const PODWIRE_PREFIX = 'podwire.io/';
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const;

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
  /** The only apiVersion accepted (all of podwire's current kinds are core/v1). */
  readonly apiVersion: string;
  /** Namespaced objects default to "default"; cluster-scoped ones must not set metadata.namespace. */
  readonly namespaced: boolean;
  /** Which Kubernetes rule metadata.name follows. */
  readonly nameRule: 'subdomain' | 'label';
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
  const pinned = new Map<string, string>(); // pinned IP -> objectRef

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
          const ipOwner = pinned.get(obj.pinnedIp);
          const at: Path = ['metadata', 'annotations', ANNOTATION_POD_IP];
          if (ipOwner !== undefined) ctx.fail(at, `${obj.pinnedIp} is already pinned by ${ipOwner}`);
          pinned.set(obj.pinnedIp, ctx.ref);
        }
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
  const nameProblem = rule.nameRule === 'label' ? dns1123LabelProblem(m.name) : dns1123SubdomainProblem(m.name);
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

  const labels = stringMap(m.labels, ['metadata', 'labels'], ctx);
  for (const [k, v] of Object.entries(labels)) {
    const kp = qualifiedNameProblem(k);
    if (kp !== undefined) ctx.fail(['metadata', 'labels'], `key ${show(k)} is not a valid label key: ${kp}`, ['metadata', 'labels', k]);
    const vp = labelValueProblem(v);
    if (vp !== undefined) ctx.fail(['metadata', 'labels', k], `${show(v)} is not a valid label value: ${vp}`);
  }

  const annotations = stringMap(m.annotations, ['metadata', 'annotations'], ctx);
  for (const k of Object.keys(annotations)) {
    const kp = qualifiedNameProblem(k);
    if (kp !== undefined) {
      ctx.fail(['metadata', 'annotations'], `key ${show(k)} is not a valid annotation key: ${kp}`, ['metadata', 'annotations', k]);
    }
    if (k.startsWith(PODWIRE_PREFIX) && !rule.podwireAnnotations.includes(k)) {
      const known = rule.podwireAnnotations.length === 0 ? 'none' : rule.podwireAnnotations.join(', ');
      ctx.fail(['metadata', 'annotations', k], `unknown podwire annotation on a ${raw.kind} (known: ${known})`);
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
  return pod;
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

  let protocol: ContainerPort['protocol'] = 'TCP';
  if (p.protocol !== undefined) {
    const proto = p.protocol;
    if (typeof proto !== 'string') ctx.fail([...pp, 'protocol'], `must be a string, one of ${PROTOCOLS.join(', ')}; got ${describe(proto)}`);
    if (!isProtocol(proto)) ctx.fail([...pp, 'protocol'], `${show(proto)} is not one of ${PROTOCOLS.join(', ')}`);
    protocol = proto;
  }

  const port: ContainerPort = { containerPort: n, protocol };
  if (p.name !== undefined) {
    if (typeof p.name !== 'string') ctx.fail([...pp, 'name'], `must be a string, got ${describe(p.name)}`);
    const np = ianaSvcNameProblem(p.name);
    if (np !== undefined) ctx.fail([...pp, 'name'], `${show(p.name)} is not a valid port name: ${np}`);
    port.name = p.name;
  }
  return port;
}

function isProtocol(s: string): s is ContainerPort['protocol'] {
  return (PROTOCOLS as readonly string[]).includes(s);
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

/** `o[k] = v`, except that a key named "__proto__" becomes an ordinary property (and gets validated). */
function setOwn(o: object, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

// ------------------------------------------------------------------------------------------------
// Kubernetes' name rules (k8s.io/apimachinery/pkg/util/validation). Each returns why a value is
// invalid, or undefined when it is fine.
// ------------------------------------------------------------------------------------------------

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
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

/** "aa:bb:cc:dd:ee:ff", any case; must be unicast (I/G bit clear) and not all zeros. */
function unicastMacProblem(s: string): string | undefined {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(s)) return 'is not a valid MAC address (expected six hex pairs like 0a:58:0a:f4:01:01)';
  if ((parseInt(s.slice(0, 2), 16) & 1) !== 0) return 'is a multicast MAC address (the I/G bit of the first octet is set); a VTEP needs a unicast MAC';
  if (/^00(:00){5}$/.test(s)) return 'is the all-zeros MAC address';
  return undefined;
}
