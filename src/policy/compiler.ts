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
 * that is immutable: a new view means a new `CompiledPolicy` (from `updatePolicies`, which
 * rebuilds only what the change reaches: see "Incremental updates"), swapped in whole. Its answer
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
 *
 * Incremental updates
 * -------------------
 * A full compile costs what the tables hold: 10,000 pods and 1,000 policies take seconds. But the
 * common changes touch little of it, so `updatePolicies(prev, prevView, nextView)` builds the
 * next `CompiledPolicy` from `prev`, rebuilding only what the change reaches, with the same answer
 * as `compilePolicies(nextView)` for every packet (verdict, sides, deciding rule). Each instance
 * keeps, beside its tables, the compile state an update starts from: the policies with their
 * rules and what each rule's peers match, identities, remote classes, the port-set indexes.
 * None of it, and no table, is written once built: an update copies what it changes and shares
 * the rest, so `prev` keeps classifying exactly as before (packets in flight use it until the
 * daemon swaps in the result, in one assignment), and any instance can be updated from, even
 * twice. The change is found by value, against what `prev` recorded: policies by namespace/name
 * and spec, pods by namespace/name, labels, named ports and address, namespaces by labels.
 * `lastUpdateKind` says what was done; `update.rebuiltTables` how many tables were built.
 *
 *   change                                   rebuilt                                    kind
 *   pods added, removed, readdressed, moved  the ipcache and the per-pod arrays; every  ipcache-only
 *     or relabelled, each to an identity      table and the port sets are shared
 *     and a remote class that exist
 *     (scaling a Deployment)
 *   a pod class never seen (new labels: a    a new identity and its two slots (their    partial
 *     new Deployment, a rollout's             tables shared with alike slots where
 *     pod-template-hash)                      there are some); see "borrowing" below
 *   a namespace relabelled, no               the identities' record of its labels       ipcache-only
 *     namespaceSelector deciding otherwise
 *   policies added, edited or deleted        the slots they apply to, before or after;  partial
 *                                             the rule ids; the port sets, renamed
 *
 * Policies. Rules are numbered as a full compile numbers them; the rules of unchanged policies
 * keep what their peers match, and only changed rules are matched against the remote classes. A
 * slot (identity, direction) is affected when a changed policy applied to it before or applies
 * now; affected slots get tables built anew (shared among them and with alike unaffected slots).
 * An unaffected table holds only rules of unchanged policies, whose ids move monotonically (they
 * keep their order), so the lowest rule of every port interval stays the lowest: when ids moved,
 * the port sets are copied with every rule id renamed, and the tables, whose values are port-set
 * offsets, are shared as they are.
 *
 * Borrowing. A new identity needs a remote class, which every table whose rules match it would
 * have to gain an entry for. Instead it borrows the remote class of an identity of its namespace,
 * in its CIDR class and numbering its named ports alike, that every rule matches exactly when it
 * matches the new one: as a remote the two are indistinguishable, so no table changes. Every
 * later change checks that no changed rule tells a borrower from its lender (else: full compile),
 * and a borrowing no pod uses any more is dropped. A rollout whose pods differ from the old ones
 * only by pod-template-hash always finds a lender: the old ReplicaSet's identity.
 *
 * Full compile instead (`lastUpdateKind` 'full', `update.fallbackReason` says why): an ipBlock no
 * policy had (the CIDR classes would change); a port name no identity distinguishes by; a
 * namespace relabelled so that some namespaceSelector answers differently; a pod with no remote
 * class to use or borrow, or the first of its namespace; a changed rule that tells a borrower
 * from its lender; the port sets orphaned by replaced tables outgrowing the live ones (2x the last
 * full compile's, plus 256 Ki refs); two policies with one name.
 *
 * An update keeps what a full compile would drop: identities and remote classes no pod has any
 * more (their slots stay filled and valid), ipBlocks no policy uses (their CIDR classes stay;
 * explain does not name them), port names no policy mentions. Classes finer than needed are
 * still exact; `stats()` may count more than a full compile would, until the next one. An update
 * throws exactly what `compilePolicies(nextView)` would throw (the first invalid policy in
 * (namespace, name) order, else the first invalid pod in view order), and `prev` is unaffected.
 */
import { U32Map } from '../tables/u32map.ts';
import { selectorMatches, type LabelSelector, type NetworkPolicyObj } from '../control/manifests.ts';
import { parseCidr, u32ToIp } from '../control/addressing.ts';
import { namespaceLabels, type ClusterView, type PolicyPacket, type PolicyPod, type PolicyPodPort, type PolicyProtocol } from './model.ts';

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

  /** How this instance was made: 'full', 'partial' or 'ipcache-only' (see "Incremental updates"). */
  readonly lastUpdateKind: PolicyUpdateKind;
  /** What was built, and why an update fell back to a full compile (if it did). */
  readonly update: Readonly<PolicyUpdateInfo>;

  /** Use `compilePolicies` or `updatePolicies`; the constructor only adopts already-built tables. */
  constructor(t: CompiledTables, update: PolicyUpdateInfo = { kind: 'full', rebuiltTables: 0 }) {
    this.update = update; this.lastUpdateKind = update.kind;
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
    // Sorted, so the list does not depend on the order the blocks were first seen in.
    const ipBlocks = m.classBlocks[lpmLookup(this.lpm, ip)].map((b) => m.blockDescs[b]).sort();
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

  /**
   * How many of this instance's distinct tables are the very objects `other` uses, and whether
   * the port sets are `other`'s (diagnostics and tests: an update shares what it did not rebuild).
   */
  sharing(other: CompiledPolicy): { tables: number; sharedTables: number; sharedPortSets: boolean } {
    const theirs = new Set(other.maps);
    const mine = new Set<U32Map>();
    for (const m of this.maps) if (m) mine.add(m);
    let sharedTables = 0;
    for (const m of mine) if (theirs.has(m)) sharedTables++;
    return { tables: mine.size, sharedTables, sharedPortSets: this.portNodes === other.portNodes };
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

/** One policy, compiled: its rules, numbered from `first` (ingress rules, then egress). */
interface PolicyEntry {
  /** "namespace/name", the policy's identity across views. */
  key: string;
  policy: NetworkPolicyObj;
  /** The spec as JSON: an entry of the same key and `fp` compiles to the same rules. */
  fp: string;
  first: number;
  ingress: CRule[];
  egress: CRule[];
  /** ruleInfo of its rules, in id order. */
  infos: PolicyRuleInfo[];
}

/** What selectors can see of a pod (see "Identities" in the header). */
interface Identity {
  namespace: string;
  labels: Record<string, string>;
  /** Its namespace's labels, the automatic name label included. */
  nsLabels: Record<string, string>;
  /** Its container ports whose name some policy mentions, sorted by (name, protocol, number). */
  ports: PolicyPodPort[];
}

/** The per-slot (identity * 2 + direction) arrays: filled by a full compile (step 6), copied and refilled in part by an update. */
interface TableSlots {
  isolated: Uint8Array;
  maps: (U32Map | null)[];
  /** The keys ("ns/name") of the policies that apply, in rule-id order; [] when not isolated. */
  isolatedBy: string[][];
  /** What a slot's table is a function of; slots with one key share one table. */
  shareKeys: (string | null)[];
}

/** What building a table reads. */
interface TableCtx {
  identities: Identity[];
  rcIdentity: number[];
  podRcs: number;
  matchedRcs: readonly number[][];
  ports: PortSetBuilder;
}

/**
 * Everything `updatePolicies` needs to build the next `CompiledPolicy` from this one. Kept beside
 * each instance (in `STATE`), never mutated once built: an update copies what it changes, so a
 * state, and the tables it describes, stay valid for as long as anything holds them.
 */
interface CompileState {
  entries: PolicyEntry[];
  ruleInfos: PolicyRuleInfo[];
  /** By rule id: the remote classes the rule's peers match ([] for a rule with no peers). */
  matchedRcs: readonly number[][];
  /** Every ipBlock the CIDR classes were built from (a superset of those in use after updates). */
  blocks: BlockSet;
  /** By CIDR class: the blocks containing it. */
  classBlocks: number[][];
  classHas: Set<number>[];
  lpm: Int32Array;
  /** The port names that distinguish identities (a superset of those mentioned, after updates). */
  namedPorts: ReadonlySet<string>;
  identities: Identity[];
  identityIds: ReadonlyMap<string, number>;
  identitiesByNs: ReadonlyMap<string, number[]>;
  /** The labels each namespace that has an identity was compiled with. */
  nsLabels: ReadonlyMap<string, Record<string, string>>;
  /** "identity:cidrClass" → remote class (a borrowed one included, see `borrowed`). */
  rcIds: ReadonlyMap<string, number>;
  rcIdentity: number[];
  rcClass: number[];
  podRcs: number;
  /** Pod classes added by updates that use the remote class of an identity no rule tells them from. */
  borrowed: readonly Borrowed[];
  shareKeys: (string | null)[];
  ports: PortSetSnapshot;
  /** portNodes' length after the last full compile (garbage is measured against it). */
  portBase: number;
  tables: CompiledTables;
}

/** Identity `id` in CIDR class `cls` uses remote class `rc`, which was numbered for another identity. */
interface Borrowed { id: number; cls: number; rc: number }

const STATE = new WeakMap<CompiledPolicy, CompileState>();
const NO_POLICIES: string[] = [];

/** How an instance was made; see "Incremental updates" in the header. */
export type PolicyUpdateKind = 'full' | 'partial' | 'ipcache-only';

/** What `updatePolicies` did; `compilePolicies` reports kind 'full' with every table built. */
export interface PolicyUpdateInfo {
  kind: PolicyUpdateKind;
  /** Distinct per-identity tables built for this instance (the rest are shared with the previous one). */
  rebuiltTables: number;
  /** Why updatePolicies compiled in full (absent when it did not, or for compilePolicies). */
  fallbackReason?: string;
}

function comparePolicies(a: NetworkPolicyObj, b: NetworkPolicyObj): number {
  return a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** What a policy's rules are a function of (its metadata labels are not part of it). */
function policyFingerprint(p: NetworkPolicyObj): string {
  return JSON.stringify([p.podSelector, p.policyTypes, p.ingress, p.egress]);
}

function ruleCount(e: PolicyEntry): number { return e.ingress.length + e.egress.length; }

/** Validate one policy and compile its rules, numbered from `first`. */
function compileEntry(policy: NetworkPolicyObj, blocks: BlockSet, first: number, fp = policyFingerprint(policy)): PolicyEntry {
  const entry: PolicyEntry = { key: `${policy.namespace}/${policy.name}`, policy, fp, first, ingress: [], egress: [], infos: [] };
  const obj = `NetworkPolicy ${policy.namespace}/${policy.name}`;
  policy.policyTypes.forEach((t, i) => {
    if (t !== 'Ingress' && t !== 'Egress') throw new PolicyCompileError(obj, `spec.policyTypes[${i}]`, `must be "Ingress" or "Egress", not ${JSON.stringify(t)}`);
  });
  let id = first;
  for (const dirName of ['Ingress', 'Egress'] as const) {
    // A direction not in policyTypes does not apply, whatever rules are written for it.
    if (!policy.policyTypes.includes(dirName)) continue;
    const list = dirName === 'Ingress' ? policy.ingress : policy.egress;
    list.forEach((rule, i) => {
      (dirName === 'Ingress' ? entry.ingress : entry.egress).push(compileRule(obj, policy, dirName, i, rule.peers, rule.ports, blocks, id++));
      entry.infos.push({ namespace: policy.namespace, name: policy.name, direction: dirName, ruleIndex: i });
    });
  }
  return entry;
}

/** The same entry with its rules numbered from `first` (itself when they already are). */
function renumberEntry(e: PolicyEntry, first: number): PolicyEntry {
  if (e.first === first) return e;
  const shift = first - e.first;
  const re = (r: CRule): CRule => ({ ...r, id: r.id + shift });
  return { ...e, first, ingress: e.ingress.map(re), egress: e.egress.map(re) };
}

function entriesByNamespace(entries: PolicyEntry[]): Map<string, PolicyEntry[]> {
  const out = new Map<string, PolicyEntry[]>();
  for (const e of entries) {
    const l = out.get(e.policy.namespace);
    if (l) l.push(e); else out.set(e.policy.namespace, [e]);
  }
  return out;
}

/** Does policy `e` apply to identity `idn` in direction `dir`? */
function applies(e: PolicyEntry, idn: Identity, dir: PolicyDir): boolean {
  return e.policy.policyTypes.includes(dir === PolicyDir.Egress ? 'Egress' : 'Ingress') && selectorMatches(e.policy.podSelector, idn.labels);
}

/** Every node address: the view's, and every pod's node. */
function nodeAddresses(view: ClusterView): Set<number> {
  const nodeIps = new Set<number>(view.nodeIps.map((n) => n >>> 0));
  for (const p of view.pods) nodeIps.add(p.nodeIp >>> 0);
  return nodeIps;
}

/** Check pod `i`'s address and enter it in the ipcache; returns the address (u32). */
function admitPod(view: ClusterView, i: number, podByIp: U32Map, nodeIps: Set<number>): number {
  const pod = view.pods[i];
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
  return ip;
}

/** A pod's named ports that `namedPorts` mentions, sorted by (name, protocol, number). */
function identityPorts(pod: PolicyPod, namedPorts: ReadonlySet<string>): PolicyPodPort[] {
  return pod.ports.filter((cp) => cp.name !== undefined && namedPorts.has(cp.name))
    .map((cp) => ({ name: cp.name, containerPort: cp.containerPort, protocol: cp.protocol }))
    .sort((a, b) => (a.name! < b.name! ? -1 : a.name! > b.name! ? 1 : a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : a.containerPort - b.containerPort));
}

/** The identity key of a pod: namespace, labels, and the numbers of the port names that count. */
function identityKey(pod: PolicyPod, ports: PolicyPodPort[]): string {
  const labelKey = Object.keys(pod.labels).sort().map((k) => [k, pod.labels[k]]);
  return JSON.stringify([pod.namespace, labelKey, ports.map((p) => [p.name, p.protocol, p.containerPort])]);
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!Object.hasOwn(b, k) || a[k] !== b[k]) return false;
  return true;
}

/** Has `pod` identity `idn`? (The cheap check before computing a key.) */
function hasIdentity(pod: PolicyPod, idn: Identity, namedPorts: ReadonlySet<string>): boolean {
  if (pod.namespace !== idn.namespace || !sameLabels(pod.labels, idn.labels)) return false;
  let n = 0, one: PolicyPodPort | undefined;
  for (const cp of pod.ports) if (cp.name !== undefined && namedPorts.has(cp.name)) { n++; one = cp; }
  if (n !== idn.ports.length) return false;
  if (n === 0) return true;
  if (n === 1) return one!.name === idn.ports[0].name && one!.protocol === idn.ports[0].protocol && one!.containerPort === idn.ports[0].containerPort;
  const mine = identityPorts(pod, namedPorts);
  return mine.every((p, k) => p.name === idn.ports[k].name && p.protocol === idn.ports[k].protocol && p.containerPort === idn.ports[k].containerPort);
}

/**
 * Which remote classes each rule's peers match (independent of the local pod): a pod class when
 * a selector peer matches its identity, any class when an ipBlock peer contains its CIDR class.
 */
function matchRules(rules: CRule[], identities: Identity[], rcIdentity: number[], rcClass: number[], classHas: Set<number>[]): number[][] {
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
  const remoteClasses = rcIdentity.length - 1;
  return rules.map((r) => {
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
}

/**
 * Decide slot (L, dir): isolation, and the table of remote class → port set, taken from `shared`
 * when an alike slot already has one. Returns true when it built a new table.
 */
function fillSlot(ctx: TableCtx, out: TableSlots, shared: Map<string, U32Map>, L: number, dir: PolicyDir, candidates: PolicyEntry[]): boolean {
  const idn = ctx.identities[L];
  const t = (L << 1) | dir;
  const applying = candidates.filter((e) => applies(e, idn, dir));
  if (applying.length === 0) {
    out.isolated[t] = 0; out.maps[t] = null; out.isolatedBy[t] = NO_POLICIES; out.shareKeys[t] = null;
    return false;
  }
  out.isolated[t] = 1;
  out.isolatedBy[t] = applying.map((e) => e.key);
  // A table is a function of the policies that apply and, for ingress named ports, of the
  // identity's own numbering.
  const namedHere = dir === PolicyDir.Ingress && applying.some((e) => e.ingress.some((r) => r.hasNamed));
  const shareKey = `${dir}:${JSON.stringify(out.isolatedBy[t])}${namedHere ? '|' + JSON.stringify(idn.ports) : ''}`;
  out.shareKeys[t] = shareKey;
  const known = shared.get(shareKey);
  if (known) { out.maps[t] = known; return false; }
  const map = buildTable(ctx, idn, dir, applying);
  out.maps[t] = map;
  shared.set(shareKey, map);
  return true;
}

/** The table of identity `idn` in direction `dir` under the policies `applying`. */
function buildTable(ctx: TableCtx, idn: Identity, dir: PolicyDir, applying: PolicyEntry[]): U32Map {
  const { identities, rcIdentity, podRcs, matchedRcs, ports } = ctx;
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
  return map;
}

/** Adopt built tables, and remember beside them the state an update from them starts from. */
function finish(t: CompiledTables, state: Omit<CompileState, 'tables'>, update: PolicyUpdateInfo): CompiledPolicy {
  const c = new CompiledPolicy(t, update);
  STATE.set(c, { ...state, tables: t });
  return c;
}

/**
 * Compile a cluster view into a `CompiledPolicy`.
 *
 * @param view  namespaces, every pod with an address, the policies (as the parser normalises them)
 * @returns the compiled tables with their classifier (`lastUpdateKind` 'full')
 * @throws PolicyCompileError for a view that is not valid Kubernetes (see the header); a valid
 *   view is always compiled exactly.
 */
export function compilePolicies(view: ClusterView): CompiledPolicy {
  return compileFull(view);
}

function compileFull(view: ClusterView, fallbackReason?: string): CompiledPolicy {
  // 1. Policies, sorted so rule ids do not depend on the order objects arrived in.
  const blocks = new BlockSet();
  const entries: PolicyEntry[] = [];
  let nextId = 0;
  for (const policy of [...view.policies].sort(comparePolicies)) {
    const e = compileEntry(policy, blocks, nextId);
    entries.push(e);
    nextId += ruleCount(e);
  }
  const rules = entries.flatMap((e) => [...e.ingress, ...e.egress]);
  const ruleInfos = entries.flatMap((e) => e.infos);
  const byNs = entriesByNamespace(entries);
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
  const nodeIps = nodeAddresses(view);
  const podByIp = new U32Map(Math.max(1, view.pods.length));
  const podIdentity = new Int32Array(view.pods.length);
  const podNodeIp = new Int32Array(view.pods.length);
  const identityIds = new Map<string, number>();
  const identities: Identity[] = [];
  const identitiesByNs = new Map<string, number[]>();
  const nsLabels = new Map<string, Record<string, string>>();
  view.pods.forEach((pod, i) => {
    admitPod(view, i, podByIp, nodeIps);
    podNodeIp[i] = pod.nodeIp | 0;
    // Only the named ports some policy mentions distinguish identities.
    const ports = identityPorts(pod, namedPorts);
    const key = identityKey(pod, ports);
    let id = identityIds.get(key);
    if (id === undefined) {
      id = identities.length;
      identityIds.set(key, id);
      let nl = nsLabels.get(pod.namespace);
      if (!nl) { nl = namespaceLabels(view, pod.namespace); nsLabels.set(pod.namespace, nl); }
      identities.push({ namespace: pod.namespace, labels: { ...pod.labels }, nsLabels: nl, ports });
      const l = identitiesByNs.get(pod.namespace);
      if (l) l.push(id); else identitiesByNs.set(pod.namespace, [id]);
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
  const matchedRcs = matchRules(rules, identities, rcIdentity, rcClass, classHas);

  // 6. Per identity and direction: isolation, then the table of remote class → port set.
  //    A table depends only on the policies that apply (and, for ingress named ports, on the
  //    identity's own numbering), so identities alike in those share one table: a namespace's
  //    "podSelector: {}" policies cost one table, not one per identity.
  const ports = new PortSetBuilder();
  const slots: TableSlots = {
    isolated: new Uint8Array(identities.length * 2),
    maps: new Array(identities.length * 2).fill(null),
    isolatedBy: new Array(identities.length * 2).fill(NO_POLICIES),
    shareKeys: new Array(identities.length * 2).fill(null),
  };
  const shared = new Map<string, U32Map>();
  const ctx: TableCtx = { identities, rcIdentity, podRcs, matchedRcs, ports };
  let built = 0;
  identities.forEach((idn, L) => {
    const candidates = byNs.get(idn.namespace) ?? [];
    for (const dir of [PolicyDir.Egress, PolicyDir.Ingress]) if (fillSlot(ctx, slots, shared, L, dir, candidates)) built++;
  });
  const portSnapshot = ports.snapshot();

  const t: CompiledTables = {
    podByIp, podIdentity, podRc, podNodeIp, isolated: slots.isolated, maps: slots.maps,
    portNodes: portSnapshot.nodes, lpm, nonPodBase,
    meta: {
      rules: ruleInfos,
      identities,
      pods: view.pods.map((p) => ({ key: `${p.namespace}/${p.name}`, ip: p.ip >>> 0 })),
      nodeIps,
      blockDescs: blocks.list.map((b) => b.desc),
      classBlocks,
      isolatedBy: slots.isolatedBy,
      portSets: portSnapshot.count,
      remoteClasses,
    },
  };
  return finish(t, {
    entries, ruleInfos, matchedRcs, blocks, classBlocks, classHas, lpm, namedPorts, identities, identityIds, identitiesByNs, nsLabels,
    rcIds, rcIdentity, rcClass, podRcs, borrowed: [], shareKeys: slots.shareKeys, ports: portSnapshot, portBase: portSnapshot.nodes.length,
  }, { kind: 'full', rebuiltTables: built, fallbackReason });
}

/**
 * The compiled policy of `nextView`, built from `prev` (compiled from `prevView`) by rebuilding
 * only what the change between the views affects; see "Incremental updates" in the header.
 *
 * Same answer as `compilePolicies(nextView)` for every packet (verdicts, sides and deciding rule
 * ids). `prev` is left untouched and keeps classifying as before: the result shares with it only
 * what neither will ever write. Falls back to a full compile when the change is not one of the
 * cheap kinds (`fallbackReason` says why); throws what `compilePolicies(nextView)` would throw.
 *
 * `prevView` documents the contract; the difference is taken by value against what `prev`
 * recorded of the view it was compiled from, so a `prevView` that was since modified cannot make
 * the result wrong.
 */
export function updatePolicies(prev: CompiledPolicy, prevView: ClusterView, nextView: ClusterView): CompiledPolicy {
  void prevView;
  const st = STATE.get(prev);
  if (!st) return compileFull(nextView, 'the previous policy has no compile state');
  const out = tryUpdate(st, nextView);
  return typeof out === 'string' ? compileFull(nextView, out) : out;
}

/** The incremental path: the next CompiledPolicy, or the reason to compile in full instead. */
function tryUpdate(st: CompileState, view: ClusterView): CompiledPolicy | string {
  const prevT = st.tables;

  // 1. Policies: keep the entries whose spec is unchanged (renumbered), compile the others.
  const oldByKey = new Map<string, PolicyEntry>();
  for (const e of st.entries) oldByKey.set(e.key, e);
  if (oldByKey.size !== st.entries.length) return 'two policies of the previous view share a name';
  const sorted = [...view.policies].sort(comparePolicies);
  for (let k = 1; k < sorted.length; k++) if (comparePolicies(sorted[k - 1], sorted[k]) === 0) return 'two policies share a name';
  const blocks = st.blocks.clone();
  const entries: PolicyEntry[] = [];
  const changed = new Set<string>();
  const changedNs = new Set<string>();
  const idMap = new Int32Array(st.ruleInfos.length).fill(-1);
  let nextId = 0;
  for (const p of sorted) {
    const fp = policyFingerprint(p);
    const old = oldByKey.get(`${p.namespace}/${p.name}`);
    let e: PolicyEntry;
    if (old && old.fp === fp) {
      e = renumberEntry(old, nextId);
      for (let k = 0; k < ruleCount(old); k++) idMap[old.first + k] = nextId + k;
    } else {
      e = compileEntry(p, blocks, nextId, fp);
      changed.add(e.key); changedNs.add(p.namespace);
    }
    entries.push(e);
    nextId += ruleCount(e);
  }
  const nextKeys = new Set(entries.map((e) => e.key));
  for (const e of st.entries) if (!nextKeys.has(e.key)) { changed.add(e.key); changedNs.add(e.policy.namespace); }
  if (blocks.list.length !== st.blocks.list.length) return 'a new ipBlock changes the CIDR classes';
  const rules = entries.flatMap((e) => [...e.ingress, ...e.egress]);
  for (const r of rules) for (const p of r.ports) {
    if (p.kind === 'named' && !st.namedPorts.has(p.name)) return `named port "${p.name}" is new: identities may split`;
  }

  // 2. Namespaces: a relabelling no namespaceSelector can tell apart only updates the identities.
  let identities = st.identities, nsLabels = st.nsLabels;
  for (const [ns, was] of st.nsLabels) {
    const now = namespaceLabels(view, ns);
    if (sameLabels(was, now)) continue;
    for (const r of rules) for (const peer of r.peers) {
      if (peer.kind === 'selector' && peer.namespaceSelector && selectorMatches(peer.namespaceSelector, was) !== selectorMatches(peer.namespaceSelector, now)) {
        return `namespace ${ns}'s new labels change what a namespaceSelector selects`;
      }
    }
    if (identities === st.identities) { identities = identities.slice(); nsLabels = new Map(nsLabels); }
    (nsLabels as Map<string, Record<string, string>>).set(ns, now);
    for (const L of st.identitiesByNs.get(ns) ?? []) identities[L] = { ...identities[L], nsLabels: now };
  }

  // 3. What each rule's peers match: unchanged rules keep theirs, under their new ids. A pod
  //    class that borrows another's remote class must stay indistinguishable from it.
  let matchedRcs = st.matchedRcs;
  if (changed.size > 0) {
    const m: number[][] = new Array(nextId);
    const fresh: CRule[] = [];
    for (const e of entries) {
      const own = [...e.ingress, ...e.egress];
      if (changed.has(e.key)) { for (const r of own) fresh.push(r); continue; }
      const old = oldByKey.get(e.key)!;
      for (let k = 0; k < own.length; k++) m[e.first + k] = st.matchedRcs[old.first + k] as number[];
    }
    matchRules(fresh, identities, st.rcIdentity, st.rcClass, st.classHas).forEach((x, k) => { m[fresh[k].id] = x; });
    matchedRcs = m;
    for (const b of st.borrowed) {
      if (!sameRemote(fresh, matchedRcs, identities[b.id], b.cls, b.rc, st.classHas)) return 'a changed policy tells apart pods that share a remote class';
    }
  }

  // 4. Pods: each gets its identity and remote class. A pod class never seen gets a new identity
  //    (its own tables come in step 5), and as a remote the class of an identity of its
  //    namespace, numbered alike, that every rule matches exactly when it matches the new one:
  //    no table can tell them apart, so none needs a new entry.
  const firstNew = st.identities.length;
  let identityIds = st.identityIds, identitiesByNs = st.identitiesByNs, rcIds = st.rcIds, borrowed = st.borrowed;
  const nodeIps = nodeAddresses(view);
  const n = view.pods.length;
  const podByIp = new U32Map(Math.max(1, n));
  const podIdentity = new Int32Array(n), podRc = new Int32Array(n), podNodeIp = new Int32Array(n);
  const prevPods = prevT.meta.pods;
  const prevIndex = new Map<string, number>();
  prevPods.forEach((p, j) => prevIndex.set(p.key, j));
  const pods: { key: string; ip: number }[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const pod = view.pods[i];
    const ip = admitPod(view, i, podByIp, nodeIps);
    podNodeIp[i] = pod.nodeIp | 0;
    const key = `${pod.namespace}/${pod.name}`;
    const j = prevIndex.get(key);
    let id = -1, rc = -1;
    if (j !== undefined && hasIdentity(pod, identities[prevT.podIdentity[j]], st.namedPorts)) {
      id = prevT.podIdentity[j];
      if (prevPods[j].ip === ip) rc = prevT.podRc[j];
    }
    if (id < 0) {
      const ports = identityPorts(pod, st.namedPorts);
      const idKey = identityKey(pod, ports);
      id = identityIds.get(idKey) ?? -1;
      if (id < 0) {
        const nl = nsLabels.get(pod.namespace);
        if (!nl) return `pod ${key} is the first of its namespace`;
        if (identityIds === st.identityIds) {
          identityIds = new Map(identityIds); identitiesByNs = new Map(identitiesByNs);
          if (identities === st.identities) identities = identities.slice();
        }
        id = identities.length;
        identities.push({ namespace: pod.namespace, labels: { ...pod.labels }, nsLabels: nl, ports });
        (identityIds as Map<string, number>).set(idKey, id);
        (identitiesByNs as Map<string, number[]>).set(pod.namespace, [...(identitiesByNs.get(pod.namespace) ?? []), id]);
      }
    }
    if (rc < 0) {
      const cls = lpmLookup(st.lpm, ip);
      rc = rcIds.get(`${id}:${cls}`) ?? -1;
      if (rc < 0) {
        const idn = identities[id];
        for (const K of identitiesByNs.get(pod.namespace) ?? []) {
          const cand = K === id ? undefined : rcIds.get(`${K}:${cls}`);
          if (cand === undefined || !samePorts(identities[K].ports, idn.ports) || !sameRemote(rules, matchedRcs, idn, cls, cand, st.classHas)) continue;
          rc = cand;
          break;
        }
        if (rc < 0) return `pod ${key} needs a new remote class`;
        if (rcIds === st.rcIds) rcIds = new Map(rcIds);
        (rcIds as Map<string, number>).set(`${id}:${cls}`, rc);
        borrowed = [...borrowed, { id, cls, rc }];
      }
    }
    podIdentity[i] = id; podRc[i] = rc;
    pods[i] = j !== undefined && prevPods[j].ip === ip ? prevPods[j] : { key, ip };
  }

  // A borrowing no pod uses any more is forgotten, so that it constrains no later change.
  if (borrowed.length > 0) {
    const borrowers = new Set(borrowed.map((b) => b.id));
    const inUse = new Set<string>();
    for (let i = 0; i < n; i++) if (borrowers.has(podIdentity[i])) inUse.add(`${podIdentity[i]}:${podRc[i]}`);
    const keep = borrowed.filter((b) => inUse.has(`${b.id}:${b.rc}`));
    if (keep.length < borrowed.length) {
      if (rcIds === st.rcIds) rcIds = new Map(rcIds);
      for (const b of borrowed) if (!inUse.has(`${b.id}:${b.rc}`)) (rcIds as Map<string, number>).delete(`${b.id}:${b.cls}`);
      borrowed = keep;
    }
  }

  const perPod = { podByIp, podIdentity, podRc, podNodeIp, lpm: st.lpm, nonPodBase: prevT.nonPodBase };
  if (changed.size === 0 && identities.length === firstNew) {
    // Nothing a table depends on changed: share them all.
    const t: CompiledTables = { ...prevT, ...perPod, meta: { ...prevT.meta, identities, pods, nodeIps } };
    return finish(t, { ...st, identities, nsLabels, rcIds, borrowed }, { kind: 'ipcache-only', rebuiltTables: 0 });
  }

  // 5. Tables. A slot is affected when a changed (added, edited, deleted) policy applied to it
  //    before or applies now; affected slots and those of new identities get a table (built, or
  //    shared with an alike slot). Unaffected tables hold only rules of unchanged policies, whose
  //    ids moved monotonically (unchanged policies keep their order): renumbering the port sets
  //    keeps each entry's lowest rule the lowest, so those tables are shared as they are.
  const renumbered = idMap.some((r, old) => r >= 0 && r !== old);
  const ports = new PortSetBuilder(renumbered ? renumberPortSets(st.ports, idMap) : st.ports);
  const byNs = entriesByNamespace(entries);
  const affected: number[] = [];
  for (const ns of changedNs) {
    const changedHere = (byNs.get(ns) ?? []).filter((e) => changed.has(e.key));
    for (const L of st.identitiesByNs.get(ns) ?? []) {
      for (const dir of [PolicyDir.Egress, PolicyDir.Ingress]) {
        const t = (L << 1) | dir;
        if (prevT.meta.isolatedBy[t].some((k) => changed.has(k)) || changedHere.some((e) => applies(e, identities[L], dir))) affected.push(t);
      }
    }
  }
  const slotCount = identities.length * 2, oldSlots = firstNew * 2;
  const slots: TableSlots = {
    isolated: new Uint8Array(slotCount), maps: prevT.maps.slice(), isolatedBy: prevT.meta.isolatedBy.slice(), shareKeys: st.shareKeys.slice(),
  };
  slots.isolated.set(prevT.isolated);
  for (let t = oldSlots; t < slotCount; t++) { slots.maps.push(null); slots.isolatedBy.push(NO_POLICIES); slots.shareKeys.push(null); affected.push(t); }
  const affectedSet = new Set(affected);
  const shared = new Map<string, U32Map>();
  for (let t = 0; t < oldSlots; t++) if (slots.maps[t] && !affectedSet.has(t)) shared.set(slots.shareKeys[t]!, slots.maps[t]!);
  const ctx: TableCtx = { identities, rcIdentity: st.rcIdentity, podRcs: st.podRcs, matchedRcs, ports };
  let built = 0;
  for (const t of affected) {
    const L = t >> 1;
    if (fillSlot(ctx, slots, shared, L, (t & 1) as PolicyDir, byNs.get(identities[L].namespace) ?? [])) built++;
  }
  if (ports.length > 2 * st.portBase + (1 << 18)) return 'port sets of replaced tables have piled up';
  const portSnapshot = ports.snapshot();

  // Blocks no policy uses any more stay in the CIDR classes until the next full compile; explain
  // does not name them.
  const used = new Set<number>();
  for (const r of rules) for (const p of r.peers) if (p.kind === 'block') used.add(p.block);
  const classBlocks = used.size === blocks.list.length ? st.classBlocks : st.classBlocks.map((s) => s.filter((b) => used.has(b)));

  const t: CompiledTables = {
    ...perPod, isolated: slots.isolated, maps: slots.maps, portNodes: portSnapshot.nodes,
    meta: {
      ...prevT.meta, rules: entries.flatMap((e) => e.infos), identities, pods, nodeIps, classBlocks, isolatedBy: slots.isolatedBy, portSets: portSnapshot.count,
    },
  };
  return finish(t, {
    ...st, entries, ruleInfos: t.meta.rules, matchedRcs, identities, identityIds, identitiesByNs, nsLabels, rcIds, borrowed,
    shareKeys: slots.shareKeys, ports: portSnapshot,
  }, { kind: 'partial', rebuiltTables: built });
}

/**
 * Would identity `idn` in CIDR class `cls`, as a remote, be matched by exactly the rules of
 * `rules` that match remote class `rc` (`matchedRcs`, by rule id, ascending)?
 */
function sameRemote(rules: CRule[], matchedRcs: readonly number[][], idn: Identity, cls: number, rc: number, classHas: Set<number>[]): boolean {
  for (const r of rules) {
    if (r.peers.length === 0) continue;
    const want = r.peers.some((p) => (p.kind === 'block' ? classHas[cls].has(p.block)
      : (p.namespaceSelector ? selectorMatches(p.namespaceSelector, idn.nsLabels) : idn.namespace === p.policyNamespace)
        && (p.podSelector ? selectorMatches(p.podSelector, idn.labels) : true)));
    const m = matchedRcs[r.id], k = lowerBound(m, rc);
    if (want !== (k < m.length && m[k] === rc)) return false;
  }
  return true;
}

function samePorts(a: PolicyPodPort[], b: PolicyPodPort[]): boolean {
  return a.length === b.length && a.every((p, k) => p.name === b[k].name && p.protocol === b[k].protocol && p.containerPort === b[k].containerPort);
}

/**
 * A copy of port sets with every rule id renamed by `idMap` (old id → new id, -1 for rules that
 * are gone: only unreachable port sets hold those; they become "none"). The indexes follow: set
 * keys are renamed (dropped when they name a rule that is gone), blocks hashed again, so port sets
 * and blocks are shared across renumberings as before them.
 */
function renumberPortSets(s: PortSetSnapshot, idMap: Int32Array): PortSetSnapshot {
  const nodes = new Int32Array(s.nodes.length);
  for (let i = 0; i < nodes.length; i++) {
    const v = s.nodes[i];
    if (v < NONE) { const r = idMap[-v - 2]; nodes[i] = r < 0 ? NONE : -(r + 2); } else nodes[i] = v;
  }
  const setIds = new Map<string, number>();
  next: for (const [key, off] of s.setIds) {
    const slots = key.split('|');
    for (let k = 0; k < slots.length; k++) {
      if (slots[k] === '') continue;
      const xs = slots[k].split(',');
      for (let j = 2; j < xs.length; j += 3) {
        const r = idMap[Number(xs[j])];
        if (r < 0) continue next;
        xs[j] = String(r);
      }
      slots[k] = xs.join(',');
    }
    setIds.set(slots.join('|'), off);
  }
  const blockIds = new Map<number, number[]>();
  for (const off of s.blockOffsets) {
    const h = hashBlock(nodes, off);
    const l = blockIds.get(h);
    if (l) l.push(off); else blockIds.set(h, [off]);
  }
  return { nodes, setIds, blockIds, blockOffsets: s.blockOffsets, count: s.count };
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

  /** A copy to add to, leaving this one as it is. */
  clone(): BlockSet {
    const c = new BlockSet();
    c.list.push(...this.list);
    for (const [k, v] of this.ids) c.ids.set(k, v);
    return c;
  }

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

/** Built port sets, frozen: the nodes array and the hash-consing indexes into it. Never written. */
interface PortSetSnapshot {
  nodes: Int32Array;
  /** Port set key (its intervals, see `intern`) → offset. */
  setIds: ReadonlyMap<string, number>;
  /** Hash of a 256-entry block's content → the offsets of the blocks with that hash. */
  blockIds: ReadonlyMap<number, readonly number[]>;
  /** Offsets of every block, so that a renumbered copy can hash them again. */
  blockOffsets: readonly number[];
  /** Distinct port sets interned so far (garbage included, after updates). */
  count: number;
}

/** FNV-1a over the 256 refs of a block at `off` in `a`. */
function hashBlock(a: Int32Array, off: number): number {
  let h = 0x811c9dc5;
  for (let i = off; i < off + 256; i++) h = Math.imul(h ^ a[i], 16777619);
  return h >>> 0;
}

/**
 * Builds and hash-conses port sets into one Int32Array (see "Port sets" in the header).
 * `intern(segments)` returns a port set's offset, or -1 when the segments allow nothing.
 * Started from a snapshot, it appends after the snapshot's nodes (which it only reads) and
 * reuses its port sets and blocks; the snapshot's indexes are copied, never written.
 */
class PortSetBuilder {
  private readonly base: Int32Array;
  private readonly nodes: number[] = [];
  private readonly blockIds: Map<number, readonly number[]>;
  private readonly blockOffsets: number[];
  private readonly setIds: Map<string, number>;
  count: number;

  constructor(from?: PortSetSnapshot) {
    this.base = from?.nodes ?? new Int32Array(0);
    this.blockIds = new Map(from?.blockIds);
    this.blockOffsets = from ? from.blockOffsets.slice() : [];
    this.setIds = new Map(from?.setIds);
    this.count = from?.count ?? 0;
  }

  /** Nodes so far, the snapshot's included. */
  get length(): number { return this.base.length + this.nodes.length; }

  private node(i: number): number {
    return i < this.base.length ? this.base[i] : this.nodes[i - this.base.length];
  }

  intern(segs: Segments): number {
    // Per slot: the elementary intervals with the lowest rule covering each, adjacent equal merged.
    const slots: number[][] = [[], [], [], []];
    for (let s = 0; s < 4; s++) slots[s] = flatten(segs, s);
    if (slots.every((x) => x.length === 0)) return -1;
    const key = slots.map((x) => x.join(',')).join('|');
    const known = this.setIds.get(key);
    if (known !== undefined) return known;
    const refs = slots.map((iv) => this.slotRef(iv));
    const off = this.length;
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
    const h = hashBlock(b, 0);
    const same = this.blockIds.get(h);
    if (same) {
      for (const off of same) {
        let i = 0;
        while (i < 256 && this.node(off + i) === b[i]) i++;
        if (i === 256) return off;
      }
    }
    const off = this.length;
    for (let i = 0; i < 256; i++) this.nodes.push(b[i]);
    this.blockIds.set(h, same ? [...same, off] : [off]);   // a new array: the snapshot's stay as they are
    this.blockOffsets.push(off);
    return off;
  }

  /** The result; the builder must not be used afterwards (its indexes are handed over). */
  snapshot(): PortSetSnapshot {
    let nodes = this.base;
    if (this.nodes.length > 0) {
      nodes = new Int32Array(this.length);
      nodes.set(this.base);
      nodes.set(this.nodes, this.base.length);
    }
    return { nodes, setIds: this.setIds, blockIds: this.blockIds, blockOffsets: this.blockOffsets, count: this.count };
  }
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
function lowerBound(a: readonly number[], x: number): number {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >>> 1; if (a[mid] < x) lo = mid + 1; else hi = mid; }
  return lo;
}
