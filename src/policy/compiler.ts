/**
 * The NetworkPolicy compiler: a `ClusterView` in, numeric tables out, and the classifier that
 * reads them on the data path.
 *
 * What?
 * -----
 * The data plane asks one question of policy, once per new connection: may this packet (source,
 * destination, protocol, destination port) pass? `reference.ts` answers it by walking every pod
 * and policy; this module answers it with a fixed, small number of table probes, however many
 * pods and policies the cluster has. `compilePolicies(view)` does all the label matching, port
 * name resolution and CIDR arithmetic once, on the control path, and returns a `CompiledPolicy`
 * that is immutable: a new view means a new `CompiledPolicy`, swapped in whole. Its answer
 * must equal the reference evaluator's, packet for packet, and
 * test/policy/differential.test.ts checks that on random clusters (as OVS checks its classifier
 * against `tcls`).
 *
 * Identities (Cilium's idea)
 * --------------------------
 * Selectors see a pod only through its namespace (and so the namespace's labels), its labels,
 * and, for named ports, the numbers its container ports of a given name have. Pods alike in all
 * of these are indistinguishable to every policy, so they share a numeric *identity*, and
 * tables are built per identity, not per pod. Only the port names some policy mentions count,
 * so in the usual cluster, where the pods of a Deployment number their ports alike, an identity
 * is exactly Cilium's "set of labels". Folding named ports in is what makes named ports exact:
 * the same name may mean 8080 on one pod and 9090 on another with the same labels.
 *
 * The remote end: remote classes
 * ------------------------------
 * What a rule can ask about the other end of a packet is: which identity it has (if it is a
 * pod), and which ipBlocks contain its address. ipBlocks match by address whether or not the
 * address is a pod's (see reference.ts for that choice), so a pod is described by the pair
 * (identity, CIDR class) and a non-pod by its CIDR class alone. Each distinct description that
 * occurs is a *remote class*, numbered from 1; 0 is reserved for the wildcard (see below).
 *
 *   remote address ──▶ pod? ──yes──▶ podRc[pod]                  (the ipcache: U32Map ip → pod)
 *                         └──no───▶ nonPodBase + cidrClass(ip)  (the LPM, below)
 *
 * CIDR classes and the LPM
 * ------------------------
 * Every ipBlock `cidr` and every `except` of every policy is a *boundary prefix*. The set of
 * boundary prefixes that contain an address is a chain, so it is fixed by the longest one: the
 * set of ipBlocks containing an address (its *CIDR class*) is a function of its longest matching
 * boundary prefix. Each prefix is labelled with its class at compile time (an ipBlock contains
 * the prefix iff its cidr contains it and no except does), and a multibit trie with 8-bit
 * strides (controlled prefix expansion, leaf pushing) maps an address to that label in at most
 * four array reads: a slot holds either a class id (>= 0) or a pointer -(node + 1) to the next
 * 256-slot node. Class 0 is "no ipBlock", where every address not inside any ipBlock falls.
 *
 * Port sets
 * ---------
 * Within one table entry the question left is "which rule, if any, allows (protocol, port)?".
 * A *port set* answers it with a header of four refs, one per protocol slot (TCP, UDP, SCTP, and
 * "other": any protocol without ports, which only a rule restricting no ports allows). A ref
 * is either a rule (encoded -(rule + 2)), none (-1), or an offset (>= 0) to a 256-entry block
 * indexed by the port's high byte, whose refs are again a rule, none, or an offset to a
 * 256-entry leaf indexed by the low byte. Uniform stretches (a whole protocol, a whole block of
 * 256 ports) stop early; endPort ranges cost nothing extra and stay exact. Blocks and whole port
 * sets are hash-consed, so the thousand entries that say "TCP 80 by rule 7" share one set.
 * Decoding is `rule = -ref - 2` (none, -1, decodes to -1).
 *
 * The tables and the two probes
 * -----------------------------
 * For each identity L and direction (egress, ingress) in which L is isolated, a U32Map maps a
 * remote class to a port set. A table is a function of the policies that apply to L (and, for
 * ingress named ports, of L's own numbering), so identities alike in those share one table.
 * Key 0 is the wildcard, Cilium's "identity 0 = L4-only": it holds what rules with no peers
 * ("all sources/destinations", pods or not) allow. Classification probes the remote's class and
 * then the wildcard:
 *
 *   rule = min(portRule(table[L][rc]), portRule(table[L][0]))      (-1 when neither matches)
 *
 * Precedence. NetworkPolicy has only allow rules, and "network policies do not conflict; they
 * are additive": the packet is allowed iff either probe finds a rule. Which rule is reported
 * does not change the verdict; it is the lowest rule id that allows the packet, in each probe
 * and overall. Rule ids number the rules of the policies sorted by (namespace, name), ingress
 * rules before egress rules, in written order (see `ruleInfo`).
 *
 * Before the tables, two exceptions that no policy can override, checked in this order:
 * a pod talking to itself, and a pod talking to (or hearing from) its own node. A pod that no
 * policy selects for a direction is "not isolated" there (one byte read).
 *
 * Named ports, exactly
 * --------------------
 * A named port means the number the *destination* pod gave it. For ingress the destination is
 * the local pod, whose identity fixes the numbers, so names are resolved per identity at
 * compile time. For egress the destination is the remote pod: its remote class includes its
 * identity and so the numbers too; named-port contributions go into that class's entry
 * (including rules with no peers, whose named ports are expanded over every pod class, because
 * a non-pod destination has no named ports).
 *
 * Cost
 * ----
 * `classify` does: two ipcache lookups, then per side at most: one isolation byte, the LPM (at
 * most 4 reads, only for a non-pod remote), two table lookups, and at most 3 reads per port set.
 * None of it depends on the number of pods, identities or policies (hash lookups are expected
 * O(1) at the U32Map's 3/4 load limit). `probes` counts these reads so tests can assert it.
 * Nothing allocates: the answer is a small integer code, the deciding rule ids are left in
 * `lastEgressRule` / `lastIngressRule`, and addresses travel as int32 (a u32 at or above
 * 128.0.0.0 is not a small integer to V8 and would be boxed when passed to a call). Measured:
 * no garbage collection during 10M classifications, about 26 ns each for both directions.
 *
 * Compile cost is what grows instead: every (identity, remote class) pair a rule relates is a
 * table entry, as in Cilium's per-endpoint policy maps. Shared tables and hash-consed port sets
 * keep that down; a 1000-policy, 2000-pod, 1000-identity cluster compiles in about a second.
 *
 * Exactness and rejection
 * -----------------------
 * Every NetworkPolicy feature (pod/namespace selectors and both together, ipBlock with except,
 * numeric, ranged and named ports, TCP/UDP/SCTP, empty lists) is compiled exactly, so a valid
 * view never needs rejecting. `PolicyCompileError` is thrown only for views that are not valid
 * Kubernetes (a peer with no selector, a malformed CIDR, endPort below port, two pods with one
 * address...), naming the policy or pod and the field: the parser in control/manifests.ts
 * should already have refused these, so reaching one means a view was built by hand, wrongly.
 */
import { U32Map } from '../tables/u32map.ts';
import { selectorMatches, type LabelSelector, type NetworkPolicyObj } from '../control/manifests.ts';
import { parseCidr, u32ToIp } from '../control/addressing.ts';
import { namespaceLabels, type ClusterView, type PolicyPacket, type PolicyPodPort, type PolicyProtocol } from './model.ts';

// ------------------------------------------------------------------------------------------------
// Public constants and types
// ------------------------------------------------------------------------------------------------

/** Direction numbers used on the hot path (indexes into per-direction tables). */
export const PolicyDir = { Egress: 0, Ingress: 1 } as const;
export type PolicyDir = (typeof PolicyDir)[keyof typeof PolicyDir];

/**
 * What one direction decided: the same cases as the reference evaluator's `Verdict`.
 * `AllowedSelf`/`AllowedOwnNode` are its 'always-allowed' with reason 'self'/'own-node'.
 */
export const PolicySide = {
  NotApplicable: 0,
  NotIsolated: 1,
  AllowedByRule: 2,
  AllowedOwnNode: 3,
  AllowedSelf: 4,
  Denied: 5,
} as const;
export type PolicySide = (typeof PolicySide)[keyof typeof PolicySide];

/**
 * The code `classify` returns: bits 0-2 the egress side, bits 3-5 the ingress side, and
 * POLICY_DENIED (bit 6) when either side is Denied. The data plane tests only that bit; flow logs
 * and metrics read the sides to say which direction decided.
 */
export const POLICY_DENIED = 0x40;
export const POLICY_INGRESS_SHIFT = 3;
export const POLICY_SIDE_MASK = 0x7;

/** True when the packet may pass. */
export function policyAllowed(code: number): boolean { return (code & POLICY_DENIED) === 0; }
/** The egress side (a PolicySide) of a `classify` code. */
export function egressSide(code: number): PolicySide { return (code & POLICY_SIDE_MASK) as PolicySide; }
/** The ingress side (a PolicySide) of a `classify` code. */
export function ingressSide(code: number): PolicySide { return ((code >>> POLICY_INGRESS_SHIFT) & POLICY_SIDE_MASK) as PolicySide; }

/** Names of the PolicySide values, in the reference evaluator's words. */
export const POLICY_SIDE_NAMES: readonly string[] = ['not-applicable', 'not-isolated', 'allowed', 'always-allowed', 'always-allowed', 'denied'];

/** Where a rule id came from. `ruleIndex` indexes the policy's `ingress` or `egress` list. */
export interface PolicyRuleInfo {
  namespace: string;
  name: string;
  direction: 'Ingress' | 'Egress';
  ruleIndex: number;
}

/** Table sizes, for `podwire show policy` and metrics. */
export interface PolicyStats {
  identities: number;
  cidrClasses: number;
  remoteClasses: number;
  rules: number;
  /** Distinct (hash-consed) port sets. */
  portSets: number;
  /** Distinct per-identity tables (identities to which the same policies apply share one). */
  tables: number;
  /** Entries across the distinct tables (wildcard entries included). */
  tableEntries: number;
  /** Bytes held in typed arrays by the compiled tables. */
  bytes: number;
}

/** One end of a packet, described for humans. */
export interface ExplainedEnd {
  ip: string;
  kind: 'pod' | 'node' | 'external';
  pod?: string;
  identity?: number;
  labels?: Record<string, string>;
  /** The ipBlocks containing the address, as "cidr except a, b" strings. */
  ipBlocks: string[];
}

/** One direction's decision, described for humans. */
export interface ExplainedSide {
  verdict: string;
  reason: string;
  rule?: PolicyRuleInfo;
  /** The policies that isolate the pod in this direction (any of them could have allowed it). */
  isolatedBy?: string[];
}

/** The readable answer of `podwire policy explain`. */
export interface PolicyExplanation {
  packet: string;
  allowed: boolean;
  code: number;
  source: ExplainedEnd;
  destination: ExplainedEnd;
  egress: ExplainedSide;
  ingress: ExplainedSide;
  probes: number;
}

/** A view the compiler cannot honour; names the object and the field, Kubernetes-style. */
export class PolicyCompileError extends Error {
  /** "NetworkPolicy ns/name" or "Pod ns/name". */
  readonly object: string;
  /** Field path, e.g. "spec.ingress[0].from[1].ipBlock.cidr", when one field is at fault. */
  readonly field?: string;
  constructor(object: string, field: string | undefined, problem: string) {
    super(`${object}: ${field ? field + ': ' : ''}${problem}`);
    this.name = 'PolicyCompileError';
    this.object = object;
    this.field = field;
  }
}

// ------------------------------------------------------------------------------------------------
// The compiled classifier
// ------------------------------------------------------------------------------------------------

/** A ref value meaning "no rule" in port sets. */
const NONE = -1;
/** Protocol slots of a port set. */
const SLOT_TCP = 0, SLOT_UDP = 1, SLOT_SCTP = 2, SLOT_OTHER = 3;
const PORT_MAX = 65535;

/** Everything `CompiledPolicy` is built from; produced by `compilePolicies`. */
interface CompiledTables {
  podByIp: U32Map;
  podIdentity: Int32Array;
  podRc: Int32Array;
  podNodeIp: Int32Array;
  isolated: Uint8Array;
  maps: (U32Map | null)[];
  portNodes: Int32Array;
  lpm: Int32Array;
  nonPodBase: number;
  meta: CompileMeta;
}

/** Control-path facts kept for ruleInfo/explain/stats. */
interface CompileMeta {
  rules: PolicyRuleInfo[];
  identities: { namespace: string; labels: Record<string, string> }[];
  pods: { key: string; ip: number }[];
  nodeIps: Set<number>;
  blockDescs: string[];
  classBlocks: number[][];
  isolatedBy: string[][];  // [identity * 2 + dir]
  portSets: number;
  remoteClasses: number;
}

/**
 * A compiled policy: read-only tables plus the allocation-free classifier over them.
 * One instance per view; build a new one (compilePolicies) when the view changes.
 */
export class CompiledPolicy {
  /** Table reads done by classify/classifyDirection since construction (tests assert on it). */
  probes = 0;
  /** Rule id that allowed the last classified packet's egress, or -1 (no rule decided it). */
  lastEgressRule = -1;
  /** Rule id that allowed the last classified packet's ingress, or -1. */
  lastIngressRule = -1;

  private readonly podByIp: U32Map;
  private readonly podIdentity: Int32Array;
  private readonly podRc: Int32Array;
  /** Node addresses as int32 (the same 32 bits), compared with int32 packet addresses. */
  private readonly podNodeIp: Int32Array;
  private readonly isolated: Uint8Array;
  private readonly maps: (U32Map | null)[];
  private readonly portNodes: Int32Array;
  private readonly lpm: Int32Array;
  private readonly nonPodBase: number;
  private readonly meta: CompileMeta;

  /** Use `compilePolicies`; the constructor only adopts already-built tables. */
  constructor(t: CompiledTables) {
    this.podByIp = t.podByIp; this.podIdentity = t.podIdentity; this.podRc = t.podRc;
    this.podNodeIp = t.podNodeIp; this.isolated = t.isolated; this.maps = t.maps;
    this.portNodes = t.portNodes; this.lpm = t.lpm; this.nonPodBase = t.nonPodBase; this.meta = t.meta;
  }

  /**
   * Classify the first packet of a connection, both directions.
   *
   * @param src, dst  IPv4 addresses, host order, as u32 or as int32 (the same 32 bits)
   * @param proto     IP protocol number (6, 17, 132; anything else is "other")
   * @param dport     destination port (ignored for "other" protocols)
   * @returns a code: egress side | ingress side << 3 | POLICY_DENIED if either side denies.
   * Side effects: sets lastEgressRule/lastIngressRule (-1 unless a rule decided); adds to `probes`.
   * Allocates nothing. Addresses are carried as int32 inside, because a u32 of 128.0.0.0 or
   * more is not a small integer to V8 and is boxed into a heap number whenever it is passed to
   * a call that is not inlined. For the same reason a hot-path caller should pass int32
   * addresses (DataView.getInt32) rather than u32 ones.
   */
  classify(src: number, dst: number, proto: number, dport: number): number {
    src |= 0; dst |= 0;
    const sp = this.podByIp.get(src), dp = this.podByIp.get(dst);
    this.probes += 2;
    const slot = protoSlot(proto);
    this.lastEgressRule = -1; this.lastIngressRule = -1;
    const e = sp >= 0 ? this.side(PolicyDir.Egress, sp, dst, dp, slot, dport) : PolicySide.NotApplicable;
    const i = dp >= 0 ? this.side(PolicyDir.Ingress, dp, src, sp, slot, dport) : PolicySide.NotApplicable;
    return e | (i << POLICY_INGRESS_SHIFT) | (e === PolicySide.Denied || i === PolicySide.Denied ? POLICY_DENIED : 0);
  }

  /**
   * Classify one direction only, for a node that enforces just its own pods: egress when the
   * source is local (`localIp` = source), ingress when the destination is local (`localIp` =
   * destination). `port` is always the packet's destination port.
   *
   * @returns a PolicySide; NotApplicable when `localIp` is not a pod. Sets lastEgressRule or
   * lastIngressRule (whichever `dir` names). Allocates nothing.
   */
  classifyDirection(dir: PolicyDir, localIp: number, remoteIp: number, proto: number, port: number): PolicySide {
    localIp |= 0; remoteIp |= 0;
    if (dir === PolicyDir.Egress) this.lastEgressRule = -1; else this.lastIngressRule = -1;
    const lp = this.podByIp.get(localIp);
    this.probes++;
    if (lp < 0) return PolicySide.NotApplicable;
    const rp = this.podByIp.get(remoteIp);
    this.probes++;
    return this.side(dir, lp, remoteIp, rp, protoSlot(proto), port);
  }

  /** One direction for local pod `lp` against the remote end (`rp` = its pod index or -1); `remoteIp` is int32. */
  private side(dir: number, lp: number, remoteIp: number, rp: number, slot: number, port: number): PolicySide {
    // The exceptions no policy overrides: "a pod cannot block access to itself"; "traffic to and
    // from the node where a Pod is running is always allowed".
    if (rp === lp) return PolicySide.AllowedSelf;
    if (remoteIp === this.podNodeIp[lp]) return PolicySide.AllowedOwnNode;
    const t = (this.podIdentity[lp] << 1) | dir;
    this.probes++;
    if (this.isolated[t] === 0) return PolicySide.NotIsolated;
    const map = this.maps[t]!;
    const rc = rp >= 0 ? this.podRc[rp] : this.nonPodBase + this.cidrClassProbe(remoteIp);
    // Probe 1: the remote's own class. Probe 2: the wildcard (rules with no peers).
    let rule = -1;
    const a = map.get(rc);
    this.probes++;
    if (a >= 0) rule = this.portRule(a, slot, port);
    const b = map.get(0);
    this.probes++;
    if (b >= 0) {
      const r2 = this.portRule(b, slot, port);
      if (r2 >= 0 && (rule < 0 || r2 < rule)) rule = r2;
    }
    if (dir === PolicyDir.Egress) this.lastEgressRule = rule; else this.lastIngressRule = rule;
    return rule >= 0 ? PolicySide.AllowedByRule : PolicySide.Denied;
  }

  /** The lowest rule of port set `ps` allowing (slot, port), or -1. At most 3 reads. */
  private portRule(ps: number, slot: number, port: number): number {
    const n = this.portNodes;
    let v = n[ps + slot];
    this.probes++;
    if (v >= 0) {
      v = n[v + ((port >>> 8) & 0xff)];
      this.probes++;
      if (v >= 0) {
        v = n[v + (port & 0xff)];
        this.probes++;
      }
    }
    return -v - 2;
  }

  /** The CIDR class of an address: at most four reads of the 8-bit-stride trie. */
  private cidrClassProbe(ip: number): number {
    const t = this.lpm;
    let v = t[ip >>> 24];
    this.probes++;
    let shift = 16;
    while (v < 0) {
      v = t[((-v - 1) << 8) + ((ip >>> shift) & 0xff)];
      this.probes++;
      shift -= 8;
    }
    return v;
  }

  /** Where rule `id` came from. Throws RangeError for an unknown id. */
  ruleInfo(id: number): PolicyRuleInfo {
    const r = this.meta.rules[id];
    if (!r) throw new RangeError(`no policy rule ${id}`);
    return r;
  }

  /**
   * Classify `pkt` and describe the decision in Kubernetes terms (control path; allocates).
   * Counts its probes like `classify` does and reports those of this packet.
   */
  explain(pkt: PolicyPacket): PolicyExplanation {
    const before = this.probes;
    const code = this.classify(pkt.src, pkt.dst, pkt.proto, pkt.dport);
    const probes = this.probes - before;
    const eRule = this.lastEgressRule, iRule = this.lastIngressRule;
    const source = this.describeEnd(pkt.src >>> 0), destination = this.describeEnd(pkt.dst >>> 0);
    const protoName = pkt.proto === 6 ? 'TCP' : pkt.proto === 17 ? 'UDP' : pkt.proto === 132 ? 'SCTP' : `proto ${pkt.proto}`;
    const portText = protoSlot(pkt.proto) === SLOT_OTHER ? '' : `:${pkt.dport}`;
    return {
      packet: `${protoName} ${source.ip} → ${destination.ip}${portText}`,
      allowed: policyAllowed(code),
      code,
      source,
      destination,
      egress: this.describeSide(PolicyDir.Egress, egressSide(code), eRule, pkt.src >>> 0, source),
      ingress: this.describeSide(PolicyDir.Ingress, ingressSide(code), iRule, pkt.dst >>> 0, destination),
      probes,
    };
  }

  private describeEnd(ip: number): ExplainedEnd {
    const m = this.meta;
    const p = this.podByIp.get(ip);
    const ipBlocks = m.classBlocks[lpmLookup(this.lpm, ip)].map((b) => m.blockDescs[b]);
    if (p >= 0) {
      const id = this.podIdentity[p];
      return { ip: u32ToIp(ip), kind: 'pod', pod: m.pods[p].key, identity: id, labels: m.identities[id].labels, ipBlocks };
    }
    return { ip: u32ToIp(ip), kind: m.nodeIps.has(ip) ? 'node' : 'external', ipBlocks };
  }

  private describeSide(dir: PolicyDir, side: PolicySide, rule: number, localIp: number, local: ExplainedEnd): ExplainedSide {
    const dirName = dir === PolicyDir.Egress ? 'egress' : 'ingress';
    const verdict = POLICY_SIDE_NAMES[side];
    switch (side) {
      case PolicySide.NotApplicable:
        return { verdict, reason: `${local.ip} is not a pod: no ${dirName} policy applies` };
      case PolicySide.AllowedSelf:
        return { verdict, reason: 'a pod talking to itself: "a pod cannot block access to itself"' };
      case PolicySide.AllowedOwnNode:
        return { verdict, reason: `${dirName === 'egress' ? 'to' : 'from'} the pod's own node: "traffic to and from the node where a Pod is running is always allowed"` };
      case PolicySide.NotIsolated:
        return { verdict, reason: `no NetworkPolicy selects ${local.pod} for ${dirName}` };
    }
    const isolatedBy = this.meta.isolatedBy[(this.podIdentity[this.podByIp.get(localIp)] << 1) | dir];
    if (side === PolicySide.AllowedByRule) {
      const info = this.ruleInfo(rule);
      return { verdict, reason: `allowed by NetworkPolicy ${info.namespace}/${info.name} ${dirName} rule ${info.ruleIndex}`, rule: info, isolatedBy };
    }
    return { verdict, reason: `${local.pod} is isolated for ${dirName} by ${isolatedBy.join(', ')} and no rule allows this packet`, isolatedBy };
  }

  /** Sizes of the compiled tables. */
  stats(): PolicyStats {
    const u32MapBytes = (m: U32Map) => m.capacity * 9;  // keys u32 + values i32 + used u8
    let tableEntries = 0, bytes = u32MapBytes(this.podByIp);
    const tables = new Set<U32Map>();
    for (const m of this.maps) if (m) tables.add(m);
    for (const m of tables) { tableEntries += m.size; bytes += u32MapBytes(m); }
    bytes += this.podIdentity.byteLength + this.podRc.byteLength + this.podNodeIp.byteLength + this.isolated.byteLength
      + this.portNodes.byteLength + this.lpm.byteLength;
    return {
      identities: this.meta.identities.length,
      cidrClasses: this.meta.classBlocks.length,
      remoteClasses: this.meta.remoteClasses,
      rules: this.meta.rules.length,
      portSets: this.meta.portSets,
      tables: tables.size,
      tableEntries,
      bytes,
    };
  }
}

/** The port-set slot of an IP protocol number. */
function protoSlot(proto: number): number {
  return proto === 6 ? SLOT_TCP : proto === 17 ? SLOT_UDP : proto === 132 ? SLOT_SCTP : SLOT_OTHER;
}

function slotOfProtocol(p: PolicyProtocol): number {
  return p === 'TCP' ? SLOT_TCP : p === 'UDP' ? SLOT_UDP : SLOT_SCTP;
}

/** LPM lookup without probe counting (compile time and explain). */
function lpmLookup(t: Int32Array, ip: number): number {
  let v = t[ip >>> 24], shift = 16;
  while (v < 0) { v = t[((-v - 1) << 8) + ((ip >>> shift) & 0xff)]; shift -= 8; }
  return v;
}

// ------------------------------------------------------------------------------------------------
// The compiler
// ------------------------------------------------------------------------------------------------

interface Prefix { net: number; len: number }

/** A rule's peer, validated: a selector pair (namespace-scoped when `ns` is absent) or an ipBlock. */
type CPeer =
  | { kind: 'selector'; namespaceSelector?: LabelSelector; podSelector?: LabelSelector; policyNamespace: string }
  | { kind: 'block'; block: number };

/** A rule's port, validated: a numeric range, or a name to resolve on the destination pod. */
type CPort =
  | { kind: 'range'; slot: number; lo: number; hi: number }
  | { kind: 'named'; slot: number; protocol: PolicyProtocol; name: string };

interface CRule { id: number; dir: PolicyDir; peers: CPeer[]; ports: CPort[]; hasNamed: boolean }

/** [slot, lo, hi, rule] quadruples: what one rule contributes to one table entry. */
type Segments = number[];

/**
 * Compile a cluster view into a `CompiledPolicy`.
 *
 * @param view  namespaces, every pod with an address, the policies (as the parser normalises them)
 * @returns the compiled tables with their classifier
 * @throws PolicyCompileError for a view that is not valid Kubernetes (see the header); a valid
 *   view is always compiled exactly.
 */
export function compilePolicies(view: ClusterView): CompiledPolicy {
  // 1. Policies, sorted so rule ids do not depend on the order objects arrived in.
  const policies = [...view.policies].sort((a, b) =>
    a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const blocks = new BlockSet();
  const rules: CRule[] = [];
  const ruleInfos: PolicyRuleInfo[] = [];
  const rulesOf: { policy: NetworkPolicyObj; ingress: CRule[]; egress: CRule[] }[] = [];
  for (const policy of policies) {
    const entry = { policy, ingress: [] as CRule[], egress: [] as CRule[] };
    const obj = `NetworkPolicy ${policy.namespace}/${policy.name}`;
    policy.policyTypes.forEach((t, i) => {
      if (t !== 'Ingress' && t !== 'Egress') throw new PolicyCompileError(obj, `spec.policyTypes[${i}]`, `must be "Ingress" or "Egress", not ${JSON.stringify(t)}`);
    });
    for (const dirName of ['Ingress', 'Egress'] as const) {
      // A direction not in policyTypes does not apply, whatever rules are written for it.
      if (!policy.policyTypes.includes(dirName)) continue;
      const list = dirName === 'Ingress' ? policy.ingress : policy.egress;
      list.forEach((rule, i) => {
        const c = compileRule(obj, policy, dirName, i, rule.peers, rule.ports, blocks, rules.length);
        rules.push(c);
        ruleInfos.push({ namespace: policy.namespace, name: policy.name, direction: dirName, ruleIndex: i });
        (dirName === 'Ingress' ? entry.ingress : entry.egress).push(c);
      });
    }
    rulesOf.push(entry);
  }
  const policiesByNs = new Map<string, typeof rulesOf>();
  for (const e of rulesOf) {
    const l = policiesByNs.get(e.policy.namespace) ?? [];
    l.push(e); policiesByNs.set(e.policy.namespace, l);
  }
  const namedPorts = new Set<string>();
  for (const r of rules) for (const p of r.ports) if (p.kind === 'named') namedPorts.add(p.name);

  // 2. CIDR classes: label every boundary prefix with the set of ipBlocks containing it.
  const classIds = new Map<string, number>([['', 0]]);
  const classBlocks: number[][] = [[]];
  const labelled: { net: number; len: number; cls: number }[] = [];
  for (const q of blocks.boundaries()) {
    const set: number[] = [];
    blocks.list.forEach((b, id) => {
      if (prefixContains(b.cidr, q) && !b.except.some((e) => prefixContains(e, q))) set.push(id);
    });
    const key = set.join(',');
    let cls = classIds.get(key);
    if (cls === undefined) { cls = classBlocks.length; classIds.set(key, cls); classBlocks.push(set); }
    labelled.push({ net: q.net, len: q.len, cls });
  }
  const lpm = buildLpm(labelled);
  const classHas = classBlocks.map((s) => new Set(s));

  // 3. Pods and identities.
  const nodeIps = new Set<number>(view.nodeIps.map((n) => n >>> 0));
  for (const p of view.pods) nodeIps.add(p.nodeIp >>> 0);
  const podByIp = new U32Map(Math.max(1, view.pods.length));
  const podIdentity = new Int32Array(view.pods.length);
  const podNodeIp = new Int32Array(view.pods.length);
  const identityIds = new Map<string, number>();
  const identities: { namespace: string; labels: Record<string, string>; nsLabels: Record<string, string>; ports: PolicyPodPort[] }[] = [];
  view.pods.forEach((pod, i) => {
    const obj = `Pod ${pod.namespace}/${pod.name}`;
    const ip = pod.ip >>> 0;
    if (!Number.isInteger(pod.ip) || pod.ip < 0 || pod.ip > 0xffffffff) throw new PolicyCompileError(obj, 'ip', `not a u32 IPv4 address: ${pod.ip}`);
    const other = podByIp.get(ip);
    if (other >= 0) {
      const o = view.pods[other];
      throw new PolicyCompileError(obj, 'ip', `${u32ToIp(ip)} is also the address of Pod ${o.namespace}/${o.name}; pod addresses must be unique`);
    }
    if (nodeIps.has(ip)) throw new PolicyCompileError(obj, 'ip', `${u32ToIp(ip)} is a node's address; a pod's address must not be`);
    podByIp.set(ip, i);
    podNodeIp[i] = pod.nodeIp | 0;
    // Only the named ports some policy mentions distinguish identities.
    const ports = pod.ports.filter((cp) => cp.name !== undefined && namedPorts.has(cp.name))
      .map((cp) => ({ name: cp.name, containerPort: cp.containerPort, protocol: cp.protocol }))
      .sort((a, b) => (a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : a.containerPort - b.containerPort));
    const labelKey = Object.keys(pod.labels).sort().map((k) => [k, pod.labels[k]]);
    const key = JSON.stringify([pod.namespace, labelKey, ports.map((p) => [p.name, p.protocol, p.containerPort])]);
    let id = identityIds.get(key);
    if (id === undefined) {
      id = identities.length;
      identityIds.set(key, id);
      identities.push({ namespace: pod.namespace, labels: { ...pod.labels }, nsLabels: namespaceLabels(view, pod.namespace), ports });
    }
    podIdentity[i] = id;
  });

  // 4. Remote classes: 0 = wildcard; pods by (identity, CIDR class); non-pods by CIDR class.
  const rcIds = new Map<string, number>();
  const rcIdentity: number[] = [-1];
  const rcClass: number[] = [-1];
  const podRc = new Int32Array(view.pods.length);
  view.pods.forEach((pod, i) => {
    const cls = lpmLookup(lpm, pod.ip >>> 0);
    const key = `${podIdentity[i]}:${cls}`;
    let rc = rcIds.get(key);
    if (rc === undefined) { rc = rcIdentity.length; rcIds.set(key, rc); rcIdentity.push(podIdentity[i]); rcClass.push(cls); }
    podRc[i] = rc;
  });
  const podRcs = rcIdentity.length - 1;
  const nonPodBase = rcIdentity.length;
  for (let c = 0; c < classBlocks.length; c++) { rcIdentity.push(-1); rcClass.push(c); }
  const remoteClasses = rcIdentity.length - 1;

  // 5. Which remote classes each rule's peers match (independent of the local pod).
  const selectorMemo = new Map<string, Uint8Array>();
  const identityMatches = (peer: Extract<CPeer, { kind: 'selector' }>): Uint8Array => {
    const key = JSON.stringify([peer.policyNamespace, peer.namespaceSelector ?? null, peer.podSelector ?? null]);
    let m = selectorMemo.get(key);
    if (!m) {
      m = new Uint8Array(identities.length);
      identities.forEach((idn, id) => {
        const nsOk = peer.namespaceSelector ? selectorMatches(peer.namespaceSelector, idn.nsLabels) : idn.namespace === peer.policyNamespace;
        const podOk = peer.podSelector ? selectorMatches(peer.podSelector, idn.labels) : true;
        m![id] = nsOk && podOk ? 1 : 0;
      });
      selectorMemo.set(key, m);
    }
    return m;
  };
  const matchedRcs: number[][] = rules.map((r) => {
    if (r.peers.length === 0) return [];
    const sel = r.peers.filter((p) => p.kind === 'selector').map(identityMatches);
    const blk = r.peers.filter((p): p is Extract<CPeer, { kind: 'block' }> => p.kind === 'block').map((p) => p.block);
    const out: number[] = [];
    for (let rc = 1; rc <= remoteClasses; rc++) {
      const id = rcIdentity[rc];
      if ((id >= 0 && sel.some((m) => m[id] === 1)) || blk.some((b) => classHas[rcClass[rc]].has(b))) out.push(rc);
    }
    return out;
  });

  // 6. Per identity and direction: isolation, then the table of remote class → port set.
  //    A table depends only on the policies that apply (and, for ingress named ports, on the
  //    identity's own numbering), so identities alike in those share one table: a namespace's
  //    "podSelector: {}" policies cost one table, not one per identity.
  const ports = new PortSetBuilder();
  const isolated = new Uint8Array(identities.length * 2);
  const maps: (U32Map | null)[] = new Array(identities.length * 2).fill(null);
  const isolatedBy: string[][] = new Array(identities.length * 2).fill(null).map(() => []);
  const shared = new Map<string, U32Map>();
  const policyIndex = new Map(rulesOf.map((e, i) => [e, i]));
  identities.forEach((idn, L) => {
    const candidates = policiesByNs.get(idn.namespace) ?? [];
    for (const dir of [PolicyDir.Egress, PolicyDir.Ingress]) {
      const dirName = dir === PolicyDir.Egress ? 'Egress' : 'Ingress';
      const applying = candidates.filter((e) => e.policy.policyTypes.includes(dirName) && selectorMatches(e.policy.podSelector, idn.labels));
      if (applying.length === 0) continue;
      const t = (L << 1) | dir;
      isolated[t] = 1;
      isolatedBy[t] = applying.map((e) => `${e.policy.namespace}/${e.policy.name}`);
      const namedHere = dir === PolicyDir.Ingress && applying.some((e) => e.ingress.some((r) => r.hasNamed));
      const shareKey = `${dir}:${applying.map((e) => policyIndex.get(e)).join(',')}${namedHere ? '|' + JSON.stringify(idn.ports) : ''}`;
      const known = shared.get(shareKey);
      if (known) { maps[t] = known; continue; }
      const acc = new Map<number, Segments>();
      const add = (rc: number, segs: Segments) => {
        if (segs.length === 0) return;
        const cur = acc.get(rc);
        if (cur) { for (const x of segs) cur.push(x); } else acc.set(rc, segs.slice());
      };
      for (const e of applying) {
        for (const rule of dir === PolicyDir.Egress ? e.egress : e.ingress) {
          if (dir === PolicyDir.Ingress) {
            // Named ports resolve on this (the destination) identity, whoever the peer is.
            const segs = ruleSegments(rule, idn.ports);
            if (rule.peers.length === 0) add(0, segs); else for (const rc of matchedRcs[rule.id]) add(rc, segs);
          } else if (rule.peers.length === 0) {
            // Every destination: numeric ports once in the wildcard; named ports only for pods,
            // each resolved on that pod class's own numbering.
            add(0, ruleSegments(rule, null));
            if (rule.hasNamed) for (let rc = 1; rc <= podRcs; rc++) add(rc, namedSegments(rule, identities[rcIdentity[rc]].ports));
          } else {
            for (const rc of matchedRcs[rule.id]) {
              const id = rcIdentity[rc];
              add(rc, ruleSegments(rule, id >= 0 ? identities[id].ports : null));
            }
          }
        }
      }
      const entries: [number, number][] = [];
      for (const [rc, segs] of acc) {
        const ps = ports.intern(segs);
        if (ps >= 0) entries.push([rc, ps]);
      }
      const map = new U32Map(Math.max(1, entries.length));
      for (const [rc, ps] of entries) map.set(rc, ps);
      maps[t] = map;
      shared.set(shareKey, map);
    }
  });

  return new CompiledPolicy({
    podByIp, podIdentity, podRc, podNodeIp, isolated, maps,
    portNodes: ports.finish(), lpm, nonPodBase,
    meta: {
      rules: ruleInfos,
      identities: identities.map((i) => ({ namespace: i.namespace, labels: i.labels })),
      pods: view.pods.map((p) => ({ key: `${p.namespace}/${p.name}`, ip: p.ip >>> 0 })),
      nodeIps,
      blockDescs: blocks.list.map((b) => b.desc),
      classBlocks,
      isolatedBy,
      portSets: ports.count,
      remoteClasses,
    },
  });
}

/** Validate one rule and turn it into peers and ports the compiler can use. */
function compileRule(obj: string, policy: NetworkPolicyObj, dirName: 'Ingress' | 'Egress', i: number,
  peers: NetworkPolicyObj['ingress'][number]['peers'], portList: NetworkPolicyObj['ingress'][number]['ports'],
  blocks: BlockSet, id: number): CRule {
  const base = `spec.${dirName === 'Ingress' ? 'ingress' : 'egress'}[${i}]`;
  const peerField = dirName === 'Ingress' ? 'from' : 'to';
  const cpeers: CPeer[] = peers.map((peer, j) => {
    const f = `${base}.${peerField}[${j}]`;
    if (peer.ipBlock) {
      if (peer.podSelector || peer.namespaceSelector) throw new PolicyCompileError(obj, f, 'ipBlock cannot be combined with podSelector or namespaceSelector');
      const cidr = parsePrefix(obj, `${f}.ipBlock.cidr`, peer.ipBlock.cidr);
      const except = peer.ipBlock.except.map((e, k) => parsePrefix(obj, `${f}.ipBlock.except[${k}]`, e));
      return { kind: 'block', block: blocks.add(cidr, except, peer.ipBlock.cidr, peer.ipBlock.except) };
    }
    if (!peer.podSelector && !peer.namespaceSelector) throw new PolicyCompileError(obj, f, 'a peer must set podSelector, namespaceSelector or ipBlock');
    return { kind: 'selector', namespaceSelector: peer.namespaceSelector, podSelector: peer.podSelector, policyNamespace: policy.namespace };
  });
  const cports: CPort[] = portList.map((p, k) => {
    const f = `${base}.ports[${k}]`;
    if (p.protocol !== 'TCP' && p.protocol !== 'UDP' && p.protocol !== 'SCTP') throw new PolicyCompileError(obj, `${f}.protocol`, `must be TCP, UDP or SCTP, not ${JSON.stringify(p.protocol)}`);
    const slot = slotOfProtocol(p.protocol);
    if (p.port === undefined) {
      if (p.endPort !== undefined) throw new PolicyCompileError(obj, `${f}.endPort`, 'endPort requires a numeric port');
      return { kind: 'range', slot, lo: 0, hi: PORT_MAX };
    }
    if (typeof p.port === 'string') {
      if (p.port === '') throw new PolicyCompileError(obj, `${f}.port`, 'a named port must not be empty');
      if (p.endPort !== undefined) throw new PolicyCompileError(obj, `${f}.endPort`, 'endPort cannot be used with a named port');
      return { kind: 'named', slot, protocol: p.protocol, name: p.port };
    }
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > PORT_MAX) throw new PolicyCompileError(obj, `${f}.port`, `must be 1-65535, not ${p.port}`);
    const end = p.endPort ?? p.port;
    if (!Number.isInteger(end) || end < p.port || end > PORT_MAX) throw new PolicyCompileError(obj, `${f}.endPort`, `must be ${p.port}-65535 (at least port), not ${end}`);
    return { kind: 'range', slot, lo: p.port, hi: end };
  });
  return { id, dir: dirName === 'Ingress' ? PolicyDir.Ingress : PolicyDir.Egress, peers: cpeers, ports: cports, hasNamed: cports.some((p) => p.kind === 'named') };
}

function parsePrefix(obj: string, field: string, text: string): Prefix {
  try { return parseCidr(text); } catch { throw new PolicyCompileError(obj, field, `not an IPv4 CIDR: ${JSON.stringify(text)}`); }
}

/**
 * What a rule allows, as segments, with named ports resolved on `destPorts` (the destination
 * pod's named ports; null when the destination is not a pod, where names match nothing).
 * A rule with no ports allows every port of every protocol, "other" included.
 */
function ruleSegments(rule: CRule, destPorts: PolicyPodPort[] | null): Segments {
  const out: Segments = [];
  if (rule.ports.length === 0) {
    for (let s = SLOT_TCP; s <= SLOT_OTHER; s++) out.push(s, 0, PORT_MAX, rule.id);
    return out;
  }
  for (const p of rule.ports) {
    if (p.kind === 'range') out.push(p.slot, p.lo, p.hi, rule.id);
    else if (destPorts) pushNamed(out, p, destPorts, rule.id);
  }
  return out;
}

/** Only the named ports of a rule, resolved on `destPorts`. */
function namedSegments(rule: CRule, destPorts: PolicyPodPort[]): Segments {
  const out: Segments = [];
  for (const p of rule.ports) if (p.kind === 'named') pushNamed(out, p, destPorts, rule.id);
  return out;
}

function pushNamed(out: Segments, p: Extract<CPort, { kind: 'named' }>, destPorts: PolicyPodPort[], rule: number): void {
  for (const cp of destPorts) if (cp.name === p.name && cp.protocol === p.protocol) out.push(p.slot, cp.containerPort, cp.containerPort, rule);
}

/** True when prefix `a` contains prefix `q` (a is q or an ancestor of it). */
function prefixContains(a: Prefix, q: Prefix): boolean {
  if (a.len > q.len) return false;
  const mask = a.len === 0 ? 0 : (0xffffffff << (32 - a.len)) >>> 0;
  return ((q.net & mask) >>> 0) === a.net;
}

/** The distinct ipBlocks of all policies (equal cidr + except sets share an id). */
class BlockSet {
  readonly list: { cidr: Prefix; except: Prefix[]; desc: string }[] = [];
  private readonly ids = new Map<string, number>();

  add(cidr: Prefix, except: Prefix[], cidrText: string, exceptText: string[]): number {
    const key = `${cidr.net}/${cidr.len}|${except.map((e) => `${e.net}/${e.len}`).sort().join(',')}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.list.length;
      this.ids.set(key, id);
      this.list.push({ cidr, except, desc: exceptText.length ? `${cidrText} except ${exceptText.join(', ')}` : cidrText });
    }
    return id;
  }

  /** Every cidr and except prefix, once each. */
  boundaries(): Prefix[] {
    const seen = new Map<string, Prefix>();
    for (const b of this.list) for (const p of [b.cidr, ...b.except]) seen.set(`${p.net}/${p.len}`, p);
    return [...seen.values()];
  }
}

/**
 * Build the 8-bit-stride LPM trie over labelled prefixes (controlled prefix expansion with leaf
 * pushing). Node 0 is the root; a slot holds a class id (>= 0) or -(child node + 1).
 * Addresses under no prefix get class 0.
 */
function buildLpm(prefixes: { net: number; len: number; cls: number }[]): Int32Array {
  const nodes: Int32Array[] = [];
  const build = (depth: number, inherited: number, list: typeof prefixes): number => {
    const idx = nodes.length;
    const node = new Int32Array(256).fill(inherited);
    nodes.push(node);
    const shift = 24 - 8 * depth, limit = 8 * (depth + 1);
    // Prefixes ending at this level cover whole slots; apply shorter first so longer win.
    const here = list.filter((p) => p.len <= limit).sort((a, b) => a.len - b.len);
    for (const p of here) {
      const first = (p.net >>> shift) & 0xff, count = 1 << (limit - p.len);
      node.fill(p.cls, first, first + count);
    }
    const deeper = new Map<number, typeof prefixes>();
    for (const p of list) {
      if (p.len <= limit) continue;
      const slot = (p.net >>> shift) & 0xff;
      const l = deeper.get(slot) ?? [];
      l.push(p); deeper.set(slot, l);
    }
    for (const [slot, l] of deeper) {
      const child = build(depth + 1, node[slot], l);
      node[slot] = -(child + 1);
    }
    return idx;
  };
  build(0, 0, prefixes);
  const out = new Int32Array(nodes.length * 256);
  nodes.forEach((n, i) => out.set(n, i * 256));
  return out;
}

/**
 * Builds and hash-conses port sets into one Int32Array (see "Port sets" in the header).
 * `intern(segments)` returns a port set's offset, or -1 when the segments allow nothing.
 */
class PortSetBuilder {
  private readonly nodes: number[] = [];
  private readonly blockIds = new Map<string, number>();
  private readonly setIds = new Map<string, number>();
  count = 0;

  intern(segs: Segments): number {
    // Per slot: the elementary intervals with the lowest rule covering each, adjacent equal merged.
    const slots: number[][] = [[], [], [], []];
    for (let s = 0; s < 4; s++) slots[s] = flatten(segs, s);
    if (slots.every((x) => x.length === 0)) return -1;
    const key = slots.map((x) => x.join(',')).join('|');
    const known = this.setIds.get(key);
    if (known !== undefined) return known;
    const refs = slots.map((iv) => this.slotRef(iv));
    const off = this.nodes.length;
    this.nodes.push(...refs);
    this.setIds.set(key, off);
    this.count++;
    return off;
  }

  /** A slot's ref: none, a uniform rule, or an offset to a 256-entry block by high byte. */
  private slotRef(iv: number[]): number {
    if (iv.length === 0) return NONE;
    if (iv.length === 3 && iv[0] === 0 && iv[1] === PORT_MAX) return -(iv[2] + 2);
    const root = new Int32Array(256).fill(NONE);
    const leaves = new Map<number, Int32Array>();
    for (let k = 0; k < iv.length; k += 3) {
      const lo = iv[k], hi = iv[k + 1], enc = -(iv[k + 2] + 2);
      for (let b = lo >>> 8; b <= hi >>> 8; b++) {
        const bLo = b << 8, bHi = bLo | 0xff;
        if (lo <= bLo && hi >= bHi) { root[b] = enc; continue; }
        let leaf = leaves.get(b);
        if (!leaf) { leaf = new Int32Array(256).fill(NONE); leaves.set(b, leaf); }
        leaf.fill(enc, Math.max(lo, bLo) & 0xff, (Math.min(hi, bHi) & 0xff) + 1);
      }
    }
    for (const [b, leaf] of leaves) root[b] = this.block(leaf);
    return this.block(root);
  }

  private block(b: Int32Array): number {
    const key = b.join(',');
    let off = this.blockIds.get(key);
    if (off === undefined) {
      off = this.nodes.length;
      for (let i = 0; i < 256; i++) this.nodes.push(b[i]);
      this.blockIds.set(key, off);
    }
    return off;
  }

  finish(): Int32Array { return Int32Array.from(this.nodes); }
}

/**
 * The segments of one slot as disjoint [lo, hi, rule] triples, ascending, each with the lowest
 * rule id covering it, adjacent equal-rule intervals merged.
 */
function flatten(segs: Segments, slot: number): number[] {
  const mine: number[] = [];
  for (let k = 0; k < segs.length; k += 4) if (segs[k] === slot) mine.push(segs[k + 1], segs[k + 2], segs[k + 3]);
  if (mine.length === 0) return [];
  // Elementary intervals [sorted[i], sorted[i+1] - 1]; each segment lowers the rule of the
  // intervals it covers (found by binary search), so the cost is the total coverage, not k².
  const points = new Set<number>();
  for (let k = 0; k < mine.length; k += 3) { points.add(mine[k]); points.add(mine[k + 1] + 1); }
  const sorted = [...points].sort((a, b) => a - b);
  const best = new Int32Array(sorted.length).fill(-1);
  for (let k = 0; k < mine.length; k += 3) {
    const lo = mine[k], hi = mine[k + 1], r = mine[k + 2];
    let i = lowerBound(sorted, lo);
    for (; i + 1 < sorted.length && sorted[i] <= hi; i++) if (best[i] < 0 || r < best[i]) best[i] = r;
  }
  const out: number[] = [];
  for (let i = 0; i + 1 < sorted.length; i++) {
    const a = sorted[i], b = sorted[i + 1] - 1, rule = best[i];
    if (rule < 0) continue;
    const n = out.length;
    if (n > 0 && out[n - 2] === a - 1 && out[n - 1] === rule) out[n - 2] = b;
    else out.push(a, b, rule);
  }
  return out;
}

/** The first index of ascending `a` whose value is >= x. */
function lowerBound(a: number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
  return lo;
}
