/**
 * NetworkPolicy semantics, one rule at a time, on hand-written scenarios. Every assertion goes
 * through `judgeBoth`, so each scenario checks the reference evaluator against the expected
 * answer and the compiled tables against the reference (verdict, deciding side, lowest rule).
 */
import { describe, it, expect } from 'vitest';
import { parseManifests, type NetworkPolicyObj, type NamespaceObj } from '../../src/control/manifests.ts';
import {
  compilePolicies, PolicyCompileError, PolicyDir, PolicySide, egressSide, ingressSide, policyAllowed, POLICY_DENIED,
} from '../../src/policy/compiler.ts';
import { referenceVerdict } from '../../src/policy/reference.ts';
import type { ClusterView } from '../../src/policy/model.ts';
import { ip, judgeBoth, packet, pod, policy, rule, sctp, sel, tcp, udp, view } from './helpers.ts';

const NODE1 = '192.168.56.11', NODE2 = '192.168.56.12';

/** The cluster most scenarios use. prod/web and prod/web2 share labels but number "http" differently. */
const NAMESPACES = { prod: { env: 'prod', team: 'a' }, dev: { env: 'dev' }, other: {} };
const PODS = [
  pod('prod', 'web', { app: 'web' }, '10.244.1.10', NODE1, [
    { name: 'http', containerPort: 8080, protocol: 'TCP' }, { name: 'metrics', containerPort: 9090, protocol: 'TCP' }]),
  pod('prod', 'web2', { app: 'web' }, '10.244.2.10', NODE2, [{ name: 'http', containerPort: 9080, protocol: 'TCP' }]),
  pod('prod', 'db', { app: 'db' }, '10.244.1.20', NODE1, [
    { name: 'pg', containerPort: 5432, protocol: 'TCP' }, { name: 'dns', containerPort: 53, protocol: 'UDP' }]),
  pod('prod', 'client', { role: 'client' }, '10.244.2.30', NODE2),
  pod('dev', 'client', { role: 'client' }, '10.244.1.40', NODE1),
  pod('dev', 'web', { app: 'web' }, '10.244.2.40', NODE2, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]),
  pod('other', 'x', {}, '10.244.1.50', NODE1),
];
const WEB = '10.244.1.10', WEB2 = '10.244.2.10', DB = '10.244.1.20', PROD_CLIENT = '10.244.2.30',
  DEV_CLIENT = '10.244.1.40', DEV_WEB = '10.244.2.40', OTHER = '10.244.1.50';

function cluster(...policies: NetworkPolicyObj[]): ClusterView {
  return view(NAMESPACES, PODS, policies);
}

describe('isolation', () => {
  it('with no policies nothing is isolated; non-pod ends are not applicable', () => {
    const v = cluster();
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432))).toEqual({ allowed: true, egress: 'not-isolated', ingress: 'not-isolated' });
    expect(judgeBoth(v, packet('8.8.8.8', DB, 'TCP', 5432))).toEqual({ allowed: true, egress: 'n/a', ingress: 'not-isolated' });
    expect(judgeBoth(v, packet(DB, '8.8.8.8', 'UDP', 53))).toEqual({ allowed: true, egress: 'not-isolated', ingress: 'n/a' });
    expect(judgeBoth(v, packet('8.8.8.8', '1.1.1.1', 'UDP', 53))).toEqual({ allowed: true, egress: 'n/a', ingress: 'n/a' });
  });

  it('default deny ingress isolates every pod of its namespace for ingress only', () => {
    const v = cluster(policy('prod', 'deny-in', { podSelector: sel(), policyTypes: ['Ingress'] }));
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 8080))).toEqual({ allowed: false, egress: 'not-isolated', ingress: 'denied' });
    expect(judgeBoth(v, packet('8.8.8.8', DB, 'TCP', 5432))).toEqual({ allowed: false, egress: 'n/a', ingress: 'denied' });
    // Egress from prod is untouched, and so is every other namespace.
    expect(judgeBoth(v, packet(WEB, DEV_WEB, 'TCP', 8080))).toEqual({ allowed: true, egress: 'not-isolated', ingress: 'not-isolated' });
    expect(judgeBoth(v, packet(DEV_CLIENT, OTHER, 'TCP', 80)).allowed).toBe(true);
  });

  it('default deny egress isolates for egress only', () => {
    const v = cluster(policy('prod', 'deny-out', { podSelector: sel(), policyTypes: ['Egress'] }));
    expect(judgeBoth(v, packet(WEB, DEV_WEB, 'TCP', 8080))).toEqual({ allowed: false, egress: 'denied', ingress: 'not-isolated' });
    expect(judgeBoth(v, packet(WEB, '8.8.8.8', 'UDP', 53))).toEqual({ allowed: false, egress: 'denied', ingress: 'n/a' });
    expect(judgeBoth(v, packet(DEV_WEB, WEB, 'TCP', 8080))).toEqual({ allowed: true, egress: 'not-isolated', ingress: 'not-isolated' });
  });

  it('default deny all denies both sides, each side reporting for itself', () => {
    const v = cluster(policy('prod', 'deny-all', { podSelector: sel(), policyTypes: ['Ingress', 'Egress'] }));
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432))).toEqual({ allowed: false, egress: 'denied', ingress: 'denied' });
  });

  it('a policy selects only pods of its own namespace, and only those its podSelector matches', () => {
    const v = cluster(policy('prod', 'deny-db', { podSelector: sel({ app: 'db' }), policyTypes: ['Ingress'] }));
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'TCP', 5432)).ingress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 8080)).ingress).toBe('not-isolated');
    const v2 = cluster(policy('dev', 'deny-web', { podSelector: sel({ app: 'web' }), policyTypes: ['Ingress'] }));
    expect(judgeBoth(v2, packet(PROD_CLIENT, WEB, 'TCP', 8080)).ingress).toBe('not-isolated');
    expect(judgeBoth(v2, packet(PROD_CLIENT, DEV_WEB, 'TCP', 8080)).ingress).toBe('denied');
  });

  it('policyTypes decides; rules of a direction not listed are ignored', () => {
    // Egress rules present but policyTypes says Ingress only: egress is not isolated.
    const v = cluster(policy('prod', 'p', {
      podSelector: sel({ app: 'web' }), policyTypes: ['Ingress'], ingress: [rule([], [tcp(8080)])], egress: [rule([], [tcp(1)])],
    }));
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432))).toEqual({ allowed: true, egress: 'not-isolated', ingress: 'not-isolated' });
    expect(judgeBoth(v, packet(DB, WEB, 'TCP', 8080)).ingress).toBe('allowed by prod/p#0');
  });

  it('an egress-only policy leaves ingress alone', () => {
    const v = cluster(policy('prod', 'egress-only', {
      podSelector: sel({ app: 'web' }), policyTypes: ['Egress'], egress: [rule([{ podSelector: sel({ app: 'db' }) }], [tcp(5432)])],
    }));
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432))).toEqual({ allowed: true, egress: 'allowed by prod/egress-only#0', ingress: 'not-isolated' });
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5433)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 1)).ingress).toBe('not-isolated');
  });
});

describe('peers', () => {
  const onlyDb = (from: NetworkPolicyObj['ingress'][number]['peers']) =>
    cluster(policy('prod', 'db-in', { podSelector: sel({ app: 'db' }), ingress: [rule(from, [])] }));

  it('podSelector alone selects pods of the policy\'s namespace', () => {
    const v = onlyDb([{ podSelector: sel({ app: 'web' }) }]);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432)).ingress).toBe('allowed by prod/db-in#0');
    expect(judgeBoth(v, packet(WEB2, DB, 'TCP', 5432)).ingress).toBe('allowed by prod/db-in#0');
    expect(judgeBoth(v, packet(DEV_WEB, DB, 'TCP', 5432)).ingress).toBe('denied');   // same labels, other namespace
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'TCP', 5432)).ingress).toBe('denied');
    expect(judgeBoth(v, packet('8.8.8.8', DB, 'TCP', 5432)).ingress).toBe('denied');
  });

  it('namespaceSelector alone selects every pod of the matching namespaces', () => {
    const v = onlyDb([{ namespaceSelector: sel({ env: 'dev' }) }]);
    expect(judgeBoth(v, packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet(DEV_WEB, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(v, packet(OTHER, DB, 'TCP', 1)).allowed).toBe(false);
  });

  it('an empty namespaceSelector selects pods of every namespace (but no non-pods)', () => {
    const v = onlyDb([{ namespaceSelector: sel() }]);
    for (const src of [WEB, DEV_CLIENT, OTHER]) expect(judgeBoth(v, packet(src, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet('8.8.8.8', DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(v, packet(NODE2, DB, 'TCP', 1)).allowed).toBe(false);
  });

  it('namespaceSelector and podSelector in one peer AND; as two peers they OR (the docs\' example)', () => {
    const and = onlyDb([{ namespaceSelector: sel({ env: 'dev' }), podSelector: sel({ role: 'client' }) }]);
    expect(judgeBoth(and, packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(and, packet(DEV_WEB, DB, 'TCP', 1)).allowed).toBe(false);      // right namespace, wrong labels
    expect(judgeBoth(and, packet(PROD_CLIENT, DB, 'TCP', 1)).allowed).toBe(false);  // right labels, wrong namespace
    const or = onlyDb([{ namespaceSelector: sel({ env: 'dev' }) }, { podSelector: sel({ role: 'client' }) }]);
    expect(judgeBoth(or, packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(or, packet(DEV_WEB, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(or, packet(PROD_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(or, packet(WEB, DB, 'TCP', 1)).allowed).toBe(false);
  });

  it('namespaces carry the automatic kubernetes.io/metadata.name label', () => {
    const v = onlyDb([{ namespaceSelector: sel({ 'kubernetes.io/metadata.name': 'other' }) }]);
    expect(judgeBoth(v, packet(OTHER, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(false);
    // A namespace missing from the map still has it.
    const lonely = { ...v, pods: [...v.pods, pod('ghost', 'g', {}, '10.244.1.99', NODE1)] };
    lonely.policies = [policy('prod', 'db-in', { podSelector: sel({ app: 'db' }), ingress: [rule([{ namespaceSelector: sel({ 'kubernetes.io/metadata.name': 'ghost' }) }])] })];
    expect(judgeBoth(lonely, packet('10.244.1.99', DB, 'TCP', 1)).allowed).toBe(true);
  });

  it('matchExpressions: In, NotIn, Exists, DoesNotExist', () => {
    const ex = (op: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', key: string, values: string[] = []) =>
      onlyDb([{ namespaceSelector: sel(), podSelector: sel({}, [{ key, operator: op, values }]) }]);
    expect(judgeBoth(ex('In', 'app', ['web', 'x']), packet(DEV_WEB, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(ex('In', 'app', ['web', 'x']), packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(ex('NotIn', 'app', ['web']), packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);  // key absent
    expect(judgeBoth(ex('NotIn', 'app', ['web']), packet(DEV_WEB, DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(ex('Exists', 'role'), packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(ex('Exists', 'role'), packet(OTHER, DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(ex('DoesNotExist', 'role'), packet(OTHER, DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(ex('DoesNotExist', 'role'), packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(false);
  });

  it('ipBlock with except (the docs\' example: 172.17.0.0/16 except 172.17.1.0/24)', () => {
    const v = onlyDb([{ ipBlock: { cidr: '172.17.0.0/16', except: ['172.17.1.0/24'] } }]);
    expect(judgeBoth(v, packet('172.17.0.5', DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet('172.17.1.5', DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(v, packet('172.17.2.5', DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet('172.17.255.255', DB, 'TCP', 1)).allowed).toBe(true);
    expect(judgeBoth(v, packet('172.18.0.1', DB, 'TCP', 1)).allowed).toBe(false);
    expect(judgeBoth(v, packet('172.16.255.255', DB, 'TCP', 1)).allowed).toBe(false);
  });

  it('ipBlock matches by address, pod or not (podwire\'s documented choice)', () => {
    const v = onlyDb([{ ipBlock: { cidr: '10.244.2.0/24', except: ['10.244.2.40/32'] } }]);
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'TCP', 1)).allowed).toBe(true);   // a pod, by its address
    expect(judgeBoth(v, packet(DEV_WEB, DB, 'TCP', 1)).allowed).toBe(false);      // excepted /32
    expect(judgeBoth(v, packet('10.244.2.77', DB, 'TCP', 1)).allowed).toBe(true); // no pod there
    expect(judgeBoth(v, packet(DEV_CLIENT, DB, 'TCP', 1)).allowed).toBe(false);   // 10.244.1.x
  });

  it('nested and overlapping ipBlocks, 0.0.0.0/0 and /32', () => {
    const v = cluster(policy('prod', 'web-out', {
      podSelector: sel({ app: 'web' }), policyTypes: ['Egress'],
      egress: [
        rule([{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '192.168.0.0/16'] } }], [tcp(443)]),
        rule([{ ipBlock: { cidr: '10.1.0.0/16', except: ['10.1.2.0/24'] } }], [tcp(5432)]),
        rule([{ ipBlock: { cidr: '10.1.2.3/32', except: [] } }], []),
      ],
    }));
    expect(judgeBoth(v, packet(WEB, '8.8.8.8', 'TCP', 443)).egress).toBe('allowed by prod/web-out#0');
    expect(judgeBoth(v, packet(WEB, '10.9.9.9', 'TCP', 443)).egress).toBe('denied');
    expect(judgeBoth(v, packet(WEB, '10.1.1.1', 'TCP', 5432)).egress).toBe('allowed by prod/web-out#1');
    expect(judgeBoth(v, packet(WEB, '10.1.2.1', 'TCP', 5432)).egress).toBe('denied');
    expect(judgeBoth(v, packet(WEB, '10.1.2.3', 'UDP', 7)).egress).toBe('allowed by prod/web-out#2');
    expect(judgeBoth(v, packet(WEB, '10.1.2.3', 'TCP', 5432)).egress).toBe('allowed by prod/web-out#2');
    expect(judgeBoth(v, packet(WEB, '255.255.255.255', 'TCP', 443)).egress).toBe('allowed by prod/web-out#0');
    expect(judgeBoth(v, packet(WEB, '0.0.0.0', 'TCP', 443)).egress).toBe('allowed by prod/web-out#0');
  });

  it('empty peers allow every source, pods and non-pods alike', () => {
    const v = onlyDb([]);
    for (const src of [WEB, DEV_CLIENT, '8.8.8.8', NODE2]) expect(judgeBoth(v, packet(src, DB, 'UDP', 53)).ingress).toBe('allowed by prod/db-in#0');
  });
});

describe('ports', () => {
  const dbPorts = (ports: NetworkPolicyObj['ingress'][number]['ports']) =>
    cluster(policy('prod', 'db-in', { podSelector: sel({ app: 'db' }), ingress: [rule([], ports)] }));

  it('a numeric port matches that protocol and number only', () => {
    const v = dbPorts([tcp(5432)]);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432)).allowed).toBe(true);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5433)).allowed).toBe(false);
    expect(judgeBoth(v, packet(WEB, DB, 'UDP', 5432)).allowed).toBe(false);
    expect(judgeBoth(v, packet(WEB, DB, 'SCTP', 5432)).allowed).toBe(false);
  });

  it('a protocol without a port matches every port of that protocol', () => {
    const v = dbPorts([udp()]);
    for (const p of [0, 1, 53, 65535]) expect(judgeBoth(v, packet(WEB, DB, 'UDP', p)).allowed).toBe(true);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 53)).allowed).toBe(false);
  });

  it('endPort is an inclusive range, exact at both ends and across 256-port blocks', () => {
    const v = dbPorts([tcp(8000, 8100), tcp(1, 1), tcp(65000, 65535)]);
    for (const [p, ok] of [[7999, false], [8000, true], [8050, true], [8100, true], [8101, false], [1, true], [2, false], [0, false],
      [64999, false], [65000, true], [65535, true]] as const) {
      expect(judgeBoth(v, packet(WEB, DB, 'TCP', p)).allowed, `port ${p}`).toBe(ok);
    }
    expect(judgeBoth(v, packet(WEB, DB, 'UDP', 8050)).allowed).toBe(false);
  });

  it('SCTP ports are their own protocol', () => {
    const v = dbPorts([sctp(9999), sctp(36412, 36422)]);
    expect(judgeBoth(v, packet(WEB, DB, 'SCTP', 9999)).allowed).toBe(true);
    expect(judgeBoth(v, packet(WEB, DB, 'SCTP', 36420)).allowed).toBe(true);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 9999)).allowed).toBe(false);
    expect(judgeBoth(v, packet(WEB, DB, 'UDP', 36420)).allowed).toBe(false);
  });

  it('a protocol without ports (ICMP) is allowed only by a rule that restricts no ports', () => {
    expect(judgeBoth(dbPorts([tcp()]), packet(WEB, DB, 'ICMP', 0)).allowed).toBe(false);
    expect(judgeBoth(dbPorts([]), packet(WEB, DB, 'ICMP', 0)).allowed).toBe(true);
  });

  it('ingress named ports resolve on the destination pod: same labels, different numbers', () => {
    const v = cluster(policy('prod', 'web-in', { podSelector: sel({ app: 'web' }), ingress: [rule([], [tcp('http')])] }));
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 8080)).ingress).toBe('allowed by prod/web-in#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 9080)).ingress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB2, 'TCP', 9080)).ingress).toBe('allowed by prod/web-in#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB2, 'TCP', 8080)).ingress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'UDP', 8080)).ingress).toBe('denied');   // name + protocol
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 9090)).ingress).toBe('denied');   // "metrics", not "http"
    const c = compilePolicies(v);
    expect(c.stats().identities).toBe(PODS.length);  // web and web2 differ only in "http"'s number
  });

  it('named port protocol must match the container port\'s protocol', () => {
    const v = dbPorts([udp('dns'), tcp('dns')]);
    expect(judgeBoth(v, packet(WEB, DB, 'UDP', 53)).allowed).toBe(true);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 53)).allowed).toBe(false);
  });

  it('egress named ports resolve on the remote pod; a non-pod has no named ports', () => {
    const v = cluster(policy('prod', 'client-out', {
      podSelector: sel({ role: 'client' }), policyTypes: ['Egress'],
      egress: [rule([{ namespaceSelector: sel(), podSelector: sel({ app: 'web' }) }], [tcp('http')])],
    }));
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 8080)).egress).toBe('allowed by prod/client-out#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 9080)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB2, 'TCP', 9080)).egress).toBe('allowed by prod/client-out#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB2, 'TCP', 8080)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, DEV_WEB, 'TCP', 8080)).egress).toBe('allowed by prod/client-out#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'TCP', 5432)).egress).toBe('denied');
  });

  it('egress named ports with empty peers or an ipBlock: per destination pod, nothing for non-pods', () => {
    const v = cluster(policy('prod', 'client-out', {
      podSelector: sel({ role: 'client' }), policyTypes: ['Egress'],
      egress: [
        rule([], [tcp('http')]),
        rule([{ ipBlock: { cidr: '10.244.0.0/16', except: [] } }, { ipBlock: { cidr: '8.8.8.0/24', except: [] } }], [udp('dns')]),
      ],
    }));
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 8080)).egress).toBe('allowed by prod/client-out#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB2, 'TCP', 8080)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB2, 'TCP', 9080)).egress).toBe('allowed by prod/client-out#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, '8.8.8.8', 'TCP', 8080)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'UDP', 53)).egress).toBe('allowed by prod/client-out#1');
    expect(judgeBoth(v, packet(PROD_CLIENT, '8.8.8.8', 'UDP', 53)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, '10.244.9.9', 'UDP', 53)).egress).toBe('denied');  // in the block, not a pod
  });

  it('an egress named port never resolves on the sender (to a non-pod it matches nothing)', () => {
    const v = cluster(policy('prod', 'web-out', {
      podSelector: sel({ app: 'web' }), policyTypes: ['Egress'], egress: [rule([{ ipBlock: { cidr: '0.0.0.0/0', except: [] } }], [tcp('http')])],
    }));
    expect(judgeBoth(v, packet(WEB, '8.8.8.8', 'TCP', 8080)).egress).toBe('denied');          // web's own "http"
    expect(judgeBoth(v, packet(WEB, DEV_WEB, 'TCP', 8080)).egress).toBe('allowed by prod/web-out#0');
    expect(judgeBoth(v, packet(WEB, WEB2, 'TCP', 8080)).egress).toBe('denied');               // web2's "http" is 9080
    expect(judgeBoth(v, packet(WEB, WEB2, 'TCP', 9080)).egress).toBe('allowed by prod/web-out#0');
  });

  it('multiple policies are a union; the lowest rule id is reported', () => {
    const v = cluster(
      policy('prod', 'b-pg', { podSelector: sel({ app: 'db' }), ingress: [rule([{ podSelector: sel({ app: 'web' }) }], [tcp(5432)])] }),
      policy('prod', 'a-dns', { podSelector: sel({ app: 'db' }), ingress: [rule([], [udp(53)]), rule([{ podSelector: sel() }], [tcp(5432, 5440)])] }),
    );
    expect(judgeBoth(v, packet(WEB, DB, 'UDP', 53)).ingress).toBe('allowed by prod/a-dns#0');
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 5432)).ingress).toBe('allowed by prod/a-dns#1');  // both allow: lower id
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'TCP', 5440)).ingress).toBe('allowed by prod/a-dns#1');
    expect(judgeBoth(v, packet(DEV_WEB, DB, 'TCP', 5432)).ingress).toBe('denied');
    const r = referenceVerdict(v, packet(WEB, DB, 'TCP', 5432));
    expect(r.ingress).toEqual({ kind: 'allowed', policies: [{ namespace: 'prod', name: 'b-pg', rule: 0 }, { namespace: 'prod', name: 'a-dns', rule: 1 }] });
  });

  it('an allow-all policy beside a deny-all one allows everything (policies do not conflict)', () => {
    const v = cluster(
      policy('prod', 'deny', { podSelector: sel(), policyTypes: ['Ingress', 'Egress'] }),
      policy('prod', 'allow', { podSelector: sel(), policyTypes: ['Ingress', 'Egress'], ingress: [rule()], egress: [rule()] }),
    );
    expect(judgeBoth(v, packet(WEB, DB, 'SCTP', 1))).toEqual({ allowed: true, egress: 'allowed by prod/allow#0', ingress: 'allowed by prod/allow#0' });
    expect(judgeBoth(v, packet(WEB, '8.8.8.8', 'ICMP', 0)).egress).toBe('allowed by prod/allow#0');
  });
});

describe('always-allowed traffic', () => {
  const denyAll = () => cluster(policy('prod', 'deny-all', { podSelector: sel(), policyTypes: ['Ingress', 'Egress'] }));

  it('traffic between a pod and its own node is allowed; another node is not', () => {
    const v = denyAll();
    expect(judgeBoth(v, packet(NODE1, WEB, 'TCP', 8080))).toEqual({ allowed: true, egress: 'n/a', ingress: 'own-node' });
    expect(judgeBoth(v, packet(WEB, NODE1, 'TCP', 10250))).toEqual({ allowed: true, egress: 'own-node', ingress: 'n/a' });
    expect(judgeBoth(v, packet(NODE2, WEB, 'TCP', 8080))).toEqual({ allowed: false, egress: 'n/a', ingress: 'denied' });
    expect(judgeBoth(v, packet(WEB, NODE2, 'TCP', 10250))).toEqual({ allowed: false, egress: 'denied', ingress: 'n/a' });
    expect(judgeBoth(v, packet(NODE2, WEB2, 'TCP', 9080)).ingress).toBe('own-node');
  });

  it('own-node wins even over a policy that would allow the node by ipBlock (checked first)', () => {
    const v = cluster(policy('prod', 'p', { podSelector: sel(), ingress: [rule([{ ipBlock: { cidr: '192.168.56.0/24', except: [] } }])] }));
    expect(judgeBoth(v, packet(NODE1, WEB, 'TCP', 1)).ingress).toBe('own-node');
    expect(judgeBoth(v, packet(NODE2, WEB, 'TCP', 1)).ingress).toBe('allowed by prod/p#0');
  });

  it('a pod cannot block access to itself', () => {
    const v = denyAll();
    expect(judgeBoth(v, packet(WEB, WEB, 'TCP', 8080))).toEqual({ allowed: true, egress: 'self', ingress: 'self' });
    expect(judgeBoth(cluster(), packet(WEB, WEB, 'UDP', 1))).toEqual({ allowed: true, egress: 'self', ingress: 'self' });
  });
});

describe('the parser\'s normalisation (policyTypes defaulting, empty vs omitted lists)', () => {
  const NS_YAML = `
apiVersion: v1
kind: Namespace
metadata: { name: prod, labels: { env: prod, team: a } }
---
apiVersion: v1
kind: Namespace
metadata: { name: dev, labels: { env: dev } }
`;
  function fromYaml(spec: string): ClusterView {
    const objs = parseManifests(`${NS_YAML}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: { name: p, namespace: prod }
spec:
${spec.split('\n').map((l) => '  ' + l).join('\n')}
`);
    const namespaces = objs.filter((o): o is NamespaceObj => o.kind === 'Namespace');
    return view(Object.fromEntries(namespaces.map((n) => [n.name, n.labels])), PODS,
      objs.filter((o): o is NetworkPolicyObj => o.kind === 'NetworkPolicy'));
  }

  it('no policyTypes and only ingress rules: Ingress only', () => {
    const v = fromYaml('podSelector: {}\ningress: [ { from: [ { podSelector: { matchLabels: { app: web } } } ] } ]');
    expect(v.policies[0].policyTypes).toEqual(['Ingress']);
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 1))).toEqual({ allowed: true, egress: 'not-isolated', ingress: 'allowed by prod/p#0' });
    expect(judgeBoth(v, packet(PROD_CLIENT, DB, 'TCP', 1)).ingress).toBe('denied');
  });

  it('no policyTypes with egress rules: Ingress and Egress (so ingress is default-deny)', () => {
    const v = fromYaml('podSelector: {}\negress: [ { ports: [ { port: 53, protocol: UDP } ] } ]');
    expect(v.policies[0].policyTypes).toEqual(['Ingress', 'Egress']);
    expect(judgeBoth(v, packet(WEB, '8.8.8.8', 'UDP', 53)).egress).toBe('allowed by prod/p#0');
    expect(judgeBoth(v, packet(WEB, DB, 'TCP', 1))).toEqual({ allowed: false, egress: 'denied', ingress: 'denied' });
  });

  it('no policyTypes and `egress: []`: Ingress only, egress untouched', () => {
    const v = fromYaml('podSelector: {}\negress: []');
    expect(v.policies[0].policyTypes).toEqual(['Ingress']);
    expect(judgeBoth(v, packet(WEB, '8.8.8.8', 'TCP', 1)).egress).toBe('not-isolated');
  });

  it('`ingress: [{}]` allows everything; `ingress: []` and an omitted ingress allow nothing', () => {
    expect(judgeBoth(fromYaml('podSelector: {}\ningress: [ {} ]'), packet('8.8.8.8', DB, 'SCTP', 7)).ingress).toBe('allowed by prod/p#0');
    expect(judgeBoth(fromYaml('podSelector: {}\ningress: []'), packet('8.8.8.8', DB, 'SCTP', 7)).ingress).toBe('denied');
    expect(judgeBoth(fromYaml('podSelector: {}\npolicyTypes: [Ingress]'), packet('8.8.8.8', DB, 'SCTP', 7)).ingress).toBe('denied');
  });

  it('`from: []` and an omitted from both mean every source; `ports: []` every port', () => {
    for (const r of ['{ from: [], ports: [] }', '{ ports: [] }', '{ from: [] }']) {
      const v = fromYaml(`podSelector: { matchLabels: { app: db } }\ningress: [ ${r} ]`);
      expect(judgeBoth(v, packet('8.8.8.8', DB, 'UDP', 9)).ingress, r).toBe('allowed by prod/p#0');
      expect(judgeBoth(v, packet(DEV_WEB, DB, 'TCP', 9)).ingress, r).toBe('allowed by prod/p#0');
    }
  });

  it('an explicit egress-only policyTypes with a named egress port and endPort, from YAML', () => {
    const v = fromYaml(`podSelector: { matchLabels: { role: client } }
policyTypes: [Egress]
egress:
- to: [ { namespaceSelector: { matchLabels: { env: dev } } } ]
  ports: [ { port: http }, { port: 30000, endPort: 30010 } ]`);
    expect(judgeBoth(v, packet(PROD_CLIENT, DEV_WEB, 'TCP', 8080)).egress).toBe('allowed by prod/p#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, DEV_WEB, 'TCP', 30010)).egress).toBe('allowed by prod/p#0');
    expect(judgeBoth(v, packet(PROD_CLIENT, DEV_CLIENT, 'TCP', 8080)).egress).toBe('denied');
    expect(judgeBoth(v, packet(PROD_CLIENT, WEB, 'TCP', 8080)).egress).toBe('denied');
    expect(judgeBoth(v, packet(DEV_WEB, PROD_CLIENT, 'TCP', 8080)).ingress).toBe('not-isolated');
  });
});

describe('CompiledPolicy API', () => {
  const v = cluster(
    policy('prod', 'db-in', { podSelector: sel({ app: 'db' }), ingress: [rule([{ podSelector: sel({ app: 'web' }) }], [tcp(5432)])] }),
    policy('prod', 'web-out', {
      podSelector: sel({ app: 'web' }), policyTypes: ['Egress'],
      egress: [rule([{ podSelector: sel({ app: 'db' }) }], [tcp('pg')]), rule([{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }], [tcp(443)])],
    }),
  );
  const c = compilePolicies(v);

  it('classify returns side codes and leaves the deciding rules in lastEgressRule/lastIngressRule', () => {
    const code = c.classify(ip(WEB), ip(DB), 6, 5432);
    expect(policyAllowed(code)).toBe(true);
    expect(egressSide(code)).toBe(PolicySide.AllowedByRule);
    expect(ingressSide(code)).toBe(PolicySide.AllowedByRule);
    expect(c.ruleInfo(c.lastEgressRule)).toEqual({ namespace: 'prod', name: 'web-out', direction: 'Egress', ruleIndex: 0 });
    expect(c.ruleInfo(c.lastIngressRule)).toEqual({ namespace: 'prod', name: 'db-in', direction: 'Ingress', ruleIndex: 0 });
    const denied = c.classify(ip(WEB), ip('10.1.1.1'), 6, 443);
    expect(denied & POLICY_DENIED).toBe(POLICY_DENIED);
    expect(egressSide(denied)).toBe(PolicySide.Denied);
    expect(ingressSide(denied)).toBe(PolicySide.NotApplicable);
    expect(c.lastEgressRule).toBe(-1);
    expect(() => c.ruleInfo(99)).toThrow(RangeError);
  });

  it('classifyDirection answers one side, as classify does', () => {
    expect(c.classifyDirection(PolicyDir.Egress, ip(WEB), ip('1.2.3.4'), 6, 443)).toBe(PolicySide.AllowedByRule);
    expect(c.ruleInfo(c.lastEgressRule).ruleIndex).toBe(1);
    expect(c.classifyDirection(PolicyDir.Ingress, ip(DB), ip(PROD_CLIENT), 6, 5432)).toBe(PolicySide.Denied);
    expect(c.classifyDirection(PolicyDir.Ingress, ip(DB), ip(NODE1), 6, 5432)).toBe(PolicySide.AllowedOwnNode);
    expect(c.classifyDirection(PolicyDir.Ingress, ip('8.8.8.8'), ip(DB), 6, 5432)).toBe(PolicySide.NotApplicable);
    expect(c.classifyDirection(PolicyDir.Egress, ip(DB), ip(WEB), 6, 80)).toBe(PolicySide.NotIsolated);
  });

  it('explain names pods, identities, ipBlocks, the deciding rule and the isolating policies', () => {
    const e = c.explain(packet(WEB, '10.1.1.1', 'TCP', 443));
    expect(e.packet).toBe('TCP 10.244.1.10 → 10.1.1.1:443');
    expect(e.allowed).toBe(false);
    expect(e.source).toMatchObject({ kind: 'pod', pod: 'prod/web', labels: { app: 'web' } });
    expect(e.destination).toEqual({ ip: '10.1.1.1', kind: 'external', ipBlocks: [] });
    expect(e.egress).toEqual({ verdict: 'denied', reason: 'prod/web is isolated for egress by prod/web-out and no rule allows this packet', isolatedBy: ['prod/web-out'] });
    expect(e.ingress.verdict).toBe('not-applicable');
    const ok = c.explain(packet(WEB, '8.8.8.8', 'TCP', 443));
    expect(ok.destination.ipBlocks).toEqual(['0.0.0.0/0 except 10.0.0.0/8']);
    expect(ok.egress.reason).toBe('allowed by NetworkPolicy prod/web-out egress rule 1');
    expect(ok.egress.rule).toEqual({ namespace: 'prod', name: 'web-out', direction: 'Egress', ruleIndex: 1 });
    expect(c.explain(packet(NODE1, WEB, 'TCP', 1)).source.kind).toBe('node');
    expect(c.explain(packet(WEB, WEB, 'ICMP', 0)).packet).toBe('proto 1 10.244.1.10 → 10.244.1.10');
  });

  it('stats counts identities, CIDR classes, table entries and bytes', () => {
    const s = c.stats();
    // Only "pg" is mentioned, so prod/web and prod/web2 (same labels, "http" numbered apart) share one.
    expect(s.identities).toBe(PODS.length - 1);
    // {} (outside every ipBlock, including inside the except) and {0.0.0.0/0 except 10.0.0.0/8}.
    expect(s.cidrClasses).toBe(2);
    expect(s.rules).toBe(3);
    expect(s.tableEntries).toBeGreaterThan(0);
    expect(s.bytes).toBeGreaterThan(0);
  });

  it('pods alike share an identity (only policy-mentioned port names count)', () => {
    const pods = [0, 1, 2, 3].map((i) => pod('prod', `w${i}`, { app: 'web' }, `10.244.1.${10 + i}`, NODE1,
      [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { name: `debug${i}`, containerPort: 7000 + i, protocol: 'TCP' }]));
    const c2 = compilePolicies(view(NAMESPACES, pods, [policy('prod', 'p', { ingress: [rule([], [tcp('http')])] })]));
    expect(c2.stats().identities).toBe(1);
  });
});

describe('PolicyCompileError', () => {
  const bad = (p: NetworkPolicyObj) => () => compilePolicies(cluster(p));
  it('names the policy and field for invalid input the parser would have refused', () => {
    expect(bad(policy('prod', 'p', { ingress: [rule([{ ipBlock: { cidr: '10.0.0.0/33', except: [] } }])] })))
      .toThrow('NetworkPolicy prod/p: spec.ingress[0].from[0].ipBlock.cidr: not an IPv4 CIDR: "10.0.0.0/33"');
    expect(bad(policy('prod', 'p', { policyTypes: ['Egress'], egress: [rule([{ ipBlock: { cidr: '10.0.0.0/8', except: ['x'] } }])] })))
      .toThrow('NetworkPolicy prod/p: spec.egress[0].to[0].ipBlock.except[0]: not an IPv4 CIDR: "x"');
    expect(bad(policy('prod', 'p', { ingress: [rule([{}])] }))).toThrow('spec.ingress[0].from[0]: a peer must set podSelector, namespaceSelector or ipBlock');
    expect(bad(policy('prod', 'p', { ingress: [rule([{ ipBlock: { cidr: '10.0.0.0/8', except: [] }, podSelector: sel() }])] }))).toThrow(PolicyCompileError);
    expect(bad(policy('prod', 'p', { ingress: [rule([], [tcp(80, 79)])] }))).toThrow('spec.ingress[0].ports[0].endPort: must be 80-65535');
    expect(bad(policy('prod', 'p', { ingress: [rule([], [tcp('http', 90)])] }))).toThrow('endPort cannot be used with a named port');
    expect(bad(policy('prod', 'p', { ingress: [rule([], [tcp(0)])] }))).toThrow('spec.ingress[0].ports[0].port: must be 1-65535');
    try { bad(policy('prod', 'p', { ingress: [rule([], [tcp(70000)])] }))(); } catch (e) {
      expect(e).toBeInstanceOf(PolicyCompileError);
      expect((e as PolicyCompileError).object).toBe('NetworkPolicy prod/p');
      expect((e as PolicyCompileError).field).toBe('spec.ingress[0].ports[0].port');
    }
  });
  it('rejects two pods with one address, and a pod on a node\'s address', () => {
    const dup = view(NAMESPACES, [PODS[0], { ...PODS[1], ip: PODS[0].ip }], []);
    expect(() => compilePolicies(dup)).toThrow('Pod prod/web2: ip: 10.244.1.10 is also the address of Pod prod/web');
    const onNode = view(NAMESPACES, [{ ...PODS[0], ip: ip(NODE2) }], []);
    expect(() => compilePolicies(onNode)).toThrow("is a node's address");
  });
});
