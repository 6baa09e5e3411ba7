/**
 * Manifest parsing for Service, EndpointSlice, NetworkPolicy and Pod status.podIP: every rule has a
 * row in a table, checked by the exact object ref, field path and message text the user would see;
 * then defaults, normalization and the label-selector truth table.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import {
  ManifestError,
  objectKey,
  parseManifests,
  selectorMatches,
  type EndpointSliceObj,
  type LabelSelector,
  type ManifestObj,
  type NetworkPolicyObj,
  type ServiceObj,
} from '../../src/control/manifests.ts';

// Test fixtures are mutated freely, so they are loosely typed on purpose.
type Obj = Record<string, any>;

const svc = (): Obj => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'web', namespace: 'default' },
  spec: { selector: { app: 'web' }, ports: [{ port: 80 }] },
});
const slice = (): Obj => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name: 'web-abc12', labels: { 'kubernetes.io/service-name': 'web' } },
  addressType: 'IPv4',
  endpoints: [{ addresses: ['10.244.1.5'] }],
  ports: [{ name: 'http', port: 80 }],
});
const netpol = (): Obj => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'allow' },
  spec: { podSelector: {} },
});
const pod = (): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'default' },
  spec: { containers: [{ name: 'app', ports: [{ containerPort: 80, name: 'http' }] }] },
});

const yamlOf = (...objs: unknown[]): string => objs.map((o) => stringify(o)).join('---\n');
const parse1 = (o: unknown): ManifestObj => {
  const objs = parseManifests(yamlOf(o));
  expect(objs).toHaveLength(1);
  return objs[0]!;
};

function catchError(text: string, source?: string): ManifestError {
  try {
    parseManifests(text, source);
  } catch (e) {
    expect(e).toBeInstanceOf(ManifestError);
    return e as ManifestError;
  }
  throw new Error('expected a ManifestError, but parsing succeeded');
}

/** Expect exactly this ref and field, and a message that begins `ref: field: reason`. */
function expectError(text: string, ref: string, field: string, reason: string): ManifestError {
  const e = catchError(text);
  expect({ ref: e.objectRef, field: e.field }).toEqual({ ref, field });
  const expected = `${ref}: ${field === '' ? '' : `${field}: `}${reason}`;
  expect(e.message.slice(0, expected.length)).toBe(expected);
  return e;
}

/** [name, make, ref, field, reason] */
type Case = [string, () => unknown, string, string, string];
const with_ = (base: () => Obj) => (f: (o: Obj) => void) => (): Obj => {
  const o = base();
  f(o);
  return o;
};
const withSvc = with_(svc);
const withSlice = with_(slice);
const withNp = with_(netpol);
const withPod = with_(pod);
/** A Service of this type (NodePort, ExternalName, headless ClusterIP) with `f` applied. */
const nodePortSvc = (f: (o: Obj) => void = () => {}) => withSvc((o) => { o.spec.type = 'NodePort'; f(o); });
const extNameSvc = (f: (o: Obj) => void = () => {}) => withSvc((o) => { o.spec = { type: 'ExternalName', externalName: 'db.example.com' }; f(o); });
const headlessSvc = (f: (o: Obj) => void = () => {}) => withSvc((o) => { o.spec.clusterIP = 'None'; f(o); });

const S = 'Service default/web';
const E = 'EndpointSlice default/web-abc12';
const NP = 'NetworkPolicy default/allow';
const P = 'Pod default/web';
const LB_ONLY = 'only applies to LoadBalancer services, which podwire does not support';
const NOT_HOST = 'is not a valid IPv4 address (expected four decimal octets like 10.244.1.5)';

function runCases(cases: Case[]): void {
  it.each(cases)('%s', (_name, make, ref, field, reason) => {
    expectError(yamlOf(make()), ref, field, reason);
  });
}

// ------------------------------------------------------------------------------------------------
// Validation tables
// ------------------------------------------------------------------------------------------------

const kindCases: Case[] = [
  ['Service without apiVersion', withSvc((o) => delete o.apiVersion), S, 'apiVersion', 'required; Service is v1'],
  ['Service apps/v1', withSvc((o) => (o.apiVersion = 'apps/v1')), S, 'apiVersion', '"apps/v1" is not supported for Service; use v1'],
  ['EndpointSlice without apiVersion', withSlice((o) => delete o.apiVersion), E, 'apiVersion', 'required; EndpointSlice is discovery.k8s.io/v1'],
  ['EndpointSlice v1beta1', withSlice((o) => (o.apiVersion = 'discovery.k8s.io/v1beta1')), E, 'apiVersion', '"discovery.k8s.io/v1beta1" is not supported for EndpointSlice; use discovery.k8s.io/v1'],
  ['EndpointSlice core v1', withSlice((o) => (o.apiVersion = 'v1')), E, 'apiVersion', '"v1" is not supported for EndpointSlice; use discovery.k8s.io/v1'],
  ['NetworkPolicy extensions/v1beta1', withNp((o) => (o.apiVersion = 'extensions/v1beta1')), NP, 'apiVersion', '"extensions/v1beta1" is not supported for NetworkPolicy; use networking.k8s.io/v1'],
  ['NetworkPolicy core v1', withNp((o) => (o.apiVersion = 'v1')), NP, 'apiVersion', '"v1" is not supported for NetworkPolicy; use networking.k8s.io/v1'],
  ['Service name starting with a digit (DNS-1035)', withSvc((o) => (o.metadata.name = '1web')), 'Service default/1web', 'metadata.name', '"1web" is not a valid DNS-1035 label: must consist of lower case alphanumeric characters or \'-\', start with an alphabetic character, and end with an alphanumeric character'],
  ['Service name with a dot', withSvc((o) => (o.metadata.name = 'web.v2')), 'Service default/web.v2', 'metadata.name', '"web.v2" is not a valid DNS-1035 label'],
  ['Service name over 63', withSvc((o) => (o.metadata.name = 'a'.repeat(64))), `Service default/${'a'.repeat(64)}`, 'metadata.name', `"${'a'.repeat(64)}" is not a valid DNS-1035 label: must be no more than 63 characters (has 64)`],
  ['EndpointSlice name is a subdomain', withSlice((o) => (o.metadata.name = 'Web')), 'EndpointSlice default/Web', 'metadata.name', '"Web" is not a valid DNS-1123 subdomain'],
  ['NetworkPolicy name is a subdomain', withNp((o) => (o.metadata.name = 'allow_all')), 'NetworkPolicy default/allow_all', 'metadata.name', '"allow_all" is not a valid DNS-1123 subdomain'],
  ['NetworkPolicy namespace invalid', withNp((o) => (o.metadata.namespace = 'Prod')), 'NetworkPolicy Prod/allow', 'metadata.namespace', '"Prod" is not a valid DNS-1123 label'],
  ['pod annotation on a Service', withSvc((o) => (o.metadata.annotations = { 'podwire.io/ip': '10.96.0.10' })), S, 'metadata.annotations[podwire.io/ip]', 'unknown podwire annotation on a Service (known: podwire.io/lb-algorithm)'],
  ['lb-algorithm on a Pod', withPod((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': 'random' })), P, 'metadata.annotations[podwire.io/lb-algorithm]', 'unknown podwire annotation on a Pod (known: podwire.io/ip, podwire.io/ready)'],
  ['podwire annotation on an EndpointSlice', withSlice((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': 'random' })), E, 'metadata.annotations[podwire.io/lb-algorithm]', 'unknown podwire annotation on an EndpointSlice (known: none)'],
  ['podwire annotation on a NetworkPolicy', withNp((o) => (o.metadata.annotations = { 'podwire.io/ready': 'true' })), NP, 'metadata.annotations[podwire.io/ready]', 'unknown podwire annotation on a NetworkPolicy (known: none)'],
];

const serviceCases: Case[] = [
  // spec and unknown fields
  ['missing spec', withSvc((o) => delete o.spec), S, 'spec', 'required (a Service needs spec.ports, or spec.type ExternalName with spec.externalName)'],
  ['spec not a mapping', withSvc((o) => (o.spec = [])), S, 'spec', 'must be a mapping, got a sequence'],
  ['unknown spec field (typo)', withSvc((o) => (o.spec.selecter = { app: 'web' })), S, 'spec.selecter', 'unknown field (not a Service spec field)'],
  ['removed topologyKeys', withSvc((o) => (o.spec.topologyKeys = ['*'])), S, 'spec.topologyKeys', 'unknown field (not a Service spec field)'],
  // type
  ['type LoadBalancer', withSvc((o) => (o.spec.type = 'LoadBalancer')), S, 'spec.type', 'LoadBalancer is not supported: podwire has no load-balancer controller (use NodePort, or ClusterIP with spec.externalIPs)'],
  ['type unknown', withSvc((o) => (o.spec.type = 'Headless')), S, 'spec.type', '"Headless" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName'],
  ['type lower-case', withSvc((o) => (o.spec.type = 'nodeport')), S, 'spec.type', '"nodeport" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName'],
  ['type not a string', withSvc((o) => (o.spec.type = 1)), S, 'spec.type', 'must be a string, one of ClusterIP, NodePort, LoadBalancer, ExternalName; got number 1'],
  // LoadBalancer-only and unimplemented fields
  ['loadBalancerIP', withSvc((o) => (o.spec.loadBalancerIP = '203.0.113.7')), S, 'spec.loadBalancerIP', LB_ONLY],
  ['loadBalancerIP not a string', withSvc((o) => (o.spec.loadBalancerIP = 7)), S, 'spec.loadBalancerIP', 'must be a string, got number 7'],
  ['loadBalancerClass', withSvc((o) => (o.spec.loadBalancerClass = 'example.com/lb')), S, 'spec.loadBalancerClass', LB_ONLY],
  ['loadBalancerSourceRanges', nodePortSvc((o) => (o.spec.loadBalancerSourceRanges = ['10.0.0.0/8'])), S, 'spec.loadBalancerSourceRanges', LB_ONLY],
  ['loadBalancerSourceRanges not a sequence', withSvc((o) => (o.spec.loadBalancerSourceRanges = '10.0.0.0/8')), S, 'spec.loadBalancerSourceRanges', 'must be a sequence, got the string "10.0.0.0/8"'],
  ['healthCheckNodePort', nodePortSvc((o) => (o.spec.healthCheckNodePort = 32000)), S, 'spec.healthCheckNodePort', LB_ONLY],
  ['healthCheckNodePort not an integer', withSvc((o) => (o.spec.healthCheckNodePort = '32000')), S, 'spec.healthCheckNodePort', 'must be an integer, got the string "32000"'],
  ['healthCheckNodePort out of range', withSvc((o) => (o.spec.healthCheckNodePort = 70000)), S, 'spec.healthCheckNodePort', '70000 is out of range 1-65535'],
  ['allocateLoadBalancerNodePorts true', nodePortSvc((o) => (o.spec.allocateLoadBalancerNodePorts = true)), S, 'spec.allocateLoadBalancerNodePorts', LB_ONLY],
  ['allocateLoadBalancerNodePorts false', withSvc((o) => (o.spec.allocateLoadBalancerNodePorts = false)), S, 'spec.allocateLoadBalancerNodePorts', LB_ONLY],
  ['allocateLoadBalancerNodePorts not a boolean', withSvc((o) => (o.spec.allocateLoadBalancerNodePorts = 'yes')), S, 'spec.allocateLoadBalancerNodePorts', 'must be a boolean, got the string "yes"'],
  ['publishNotReadyAddresses true', headlessSvc((o) => (o.spec.publishNotReadyAddresses = true)), S, 'spec.publishNotReadyAddresses', 'true is not supported: podwire does not implement it (endpoints that are not ready never get traffic)'],
  ['publishNotReadyAddresses not a boolean', withSvc((o) => (o.spec.publishNotReadyAddresses = 'true')), S, 'spec.publishNotReadyAddresses', 'must be a boolean, got the string "true"'],
  ['trafficDistribution', withSvc((o) => (o.spec.trafficDistribution = 'PreferClose')), S, 'spec.trafficDistribution', '"PreferClose" is not supported: podwire does not implement topology-aware traffic distribution'],
  ['trafficDistribution not a string', withSvc((o) => (o.spec.trafficDistribution = {})), S, 'spec.trafficDistribution', 'must be a string, got a mapping'],
  // ExternalName
  ['externalName on a ClusterIP service', withSvc((o) => (o.spec.externalName = 'db.example.com')), S, 'spec.externalName', 'may only be set when spec.type is ExternalName (this service is ClusterIP)'],
  ['externalName on a NodePort service', nodePortSvc((o) => (o.spec.externalName = 'db.example.com')), S, 'spec.externalName', 'may only be set when spec.type is ExternalName (this service is NodePort)'],
  ['ExternalName without externalName', extNameSvc((o) => delete o.spec.externalName), S, 'spec.externalName', 'required when spec.type is ExternalName (the DNS name this service is an alias for)'],
  ['ExternalName with an empty externalName', extNameSvc((o) => (o.spec.externalName = '')), S, 'spec.externalName', 'required when spec.type is ExternalName'],
  ['externalName upper-case', extNameSvc((o) => (o.spec.externalName = 'DB.example.com')), S, 'spec.externalName', '"DB.example.com" is not a valid DNS-1123 subdomain'],
  ['externalName with an empty label', extNameSvc((o) => (o.spec.externalName = 'db..example.com')), S, 'spec.externalName', '"db..example.com" is not a valid DNS-1123 subdomain'],
  ['externalName an IP with a port', extNameSvc((o) => (o.spec.externalName = 'db:5432')), S, 'spec.externalName', '"db:5432" is not a valid DNS-1123 subdomain'],
  ['externalName not a string', extNameSvc((o) => (o.spec.externalName = 5)), S, 'spec.externalName', 'must be a string, got number 5'],
  ['ExternalName with clusterIP', extNameSvc((o) => (o.spec.clusterIP = '10.96.0.10')), S, 'spec.clusterIP', 'may not be set for ExternalName services (they have no cluster IP)'],
  ['ExternalName with clusterIP None', extNameSvc((o) => (o.spec.clusterIP = 'None')), S, 'spec.clusterIP', 'may not be set for ExternalName services'],
  ['ExternalName with clusterIPs', extNameSvc((o) => (o.spec.clusterIPs = ['10.96.0.10'])), S, 'spec.clusterIPs', 'may not be set for ExternalName services (they have no cluster IP)'],
  ['ExternalName with ipFamilies', extNameSvc((o) => (o.spec.ipFamilies = ['IPv4'])), S, 'spec.ipFamilies', 'may not be set for ExternalName services'],
  ['ExternalName with ipFamilyPolicy', extNameSvc((o) => (o.spec.ipFamilyPolicy = 'SingleStack')), S, 'spec.ipFamilyPolicy', 'may not be set for ExternalName services'],
  ['ExternalName with a selector', extNameSvc((o) => (o.spec.selector = { app: 'db' })), S, 'spec.selector', 'may not be set for ExternalName services: an ExternalName service is only a DNS alias, it has no endpoints'],
  ['ExternalName with a nodePort', extNameSvc((o) => (o.spec.ports = [{ port: 5432, nodePort: 30432 }])), S, 'spec.ports[0].nodePort', 'may only be set when spec.type is NodePort (this service is ExternalName)'],
  // clusterIP, clusterIPs, families
  ['clusterIP three octets', withSvc((o) => (o.spec.clusterIP = '10.96.0')), S, 'spec.clusterIP', `"10.96.0" ${NOT_HOST}`],
  ['clusterIP IPv6', withSvc((o) => (o.spec.clusterIP = 'fd00::10')), S, 'spec.clusterIP', '"fd00::10" is not a valid IPv4 address'],
  ['clusterIP loopback', withSvc((o) => (o.spec.clusterIP = '127.0.0.1')), S, 'spec.clusterIP', '"127.0.0.1" is a loopback address, not a host address'],
  ['clusterIP lower-case none', withSvc((o) => (o.spec.clusterIP = 'none')), S, 'spec.clusterIP', '"none" is not a valid IPv4 address'],
  ['clusterIP not a string', withSvc((o) => (o.spec.clusterIP = 10)), S, 'spec.clusterIP', 'must be a string, got number 10'],
  ['headless NodePort', nodePortSvc((o) => (o.spec.clusterIP = 'None')), S, 'spec.clusterIP', '"None" (headless) is only allowed when spec.type is ClusterIP, not NodePort'],
  ['clusterIPs dual-stack', withSvc((o) => { o.spec.clusterIP = '10.96.0.10'; o.spec.clusterIPs = ['10.96.0.10', 'fd00::10']; }), S, 'spec.clusterIPs', 'has 2 entries; podwire is single-stack IPv4 and a Service has exactly one cluster IP'],
  ['clusterIPs disagrees with clusterIP', withSvc((o) => { o.spec.clusterIP = '10.96.0.10'; o.spec.clusterIPs = ['10.96.0.11']; }), S, 'spec.clusterIPs[0]', '"10.96.0.11" must equal spec.clusterIP (10.96.0.10)'],
  ['clusterIPs None disagrees', withSvc((o) => { o.spec.clusterIP = 'None'; o.spec.clusterIPs = ['10.96.0.11']; }), S, 'spec.clusterIPs[0]', '"10.96.0.11" must equal spec.clusterIP (None)'],
  ['clusterIPs alone, invalid', withSvc((o) => (o.spec.clusterIPs = ['10.96.0.300'])), S, 'spec.clusterIPs[0]', '"10.96.0.300" is not a valid IPv4 address'],
  ['clusterIPs alone, None on NodePort', nodePortSvc((o) => (o.spec.clusterIPs = ['None'])), S, 'spec.clusterIPs[0]', '"None" (headless) is only allowed when spec.type is ClusterIP, not NodePort'],
  ['clusterIPs not a sequence', withSvc((o) => (o.spec.clusterIPs = '10.96.0.10')), S, 'spec.clusterIPs', 'must be a sequence, got the string "10.96.0.10"'],
  ['clusterIPs entry not a string', withSvc((o) => (o.spec.clusterIPs = [{ ip: '10.96.0.10' }])), S, 'spec.clusterIPs[0]', 'must be a string, got a mapping'],
  ['ipFamilies IPv6', withSvc((o) => (o.spec.ipFamilies = ['IPv6'])), S, 'spec.ipFamilies[0]', '"IPv6" is not supported: podwire is single-stack IPv4'],
  ['ipFamilies dual-stack', withSvc((o) => (o.spec.ipFamilies = ['IPv4', 'IPv6'])), S, 'spec.ipFamilies', 'has 2 entries; podwire is single-stack IPv4 (dual-stack Services are not supported)'],
  ['ipFamilies lower-case', withSvc((o) => (o.spec.ipFamilies = ['ipv4'])), S, 'spec.ipFamilies[0]', '"ipv4" is not one of IPv4, IPv6'],
  ['ipFamilies not a sequence', withSvc((o) => (o.spec.ipFamilies = 'IPv4')), S, 'spec.ipFamilies', 'must be a sequence'],
  ['ipFamilyPolicy PreferDualStack', withSvc((o) => (o.spec.ipFamilyPolicy = 'PreferDualStack')), S, 'spec.ipFamilyPolicy', '"PreferDualStack" is not supported: podwire is single-stack IPv4 (use SingleStack)'],
  ['ipFamilyPolicy RequireDualStack', withSvc((o) => (o.spec.ipFamilyPolicy = 'RequireDualStack')), S, 'spec.ipFamilyPolicy', '"RequireDualStack" is not supported: podwire is single-stack IPv4 (use SingleStack)'],
  ['ipFamilyPolicy unknown', withSvc((o) => (o.spec.ipFamilyPolicy = 'Single')), S, 'spec.ipFamilyPolicy', '"Single" is not one of SingleStack, PreferDualStack, RequireDualStack'],
  // selector
  ['selector not a mapping', withSvc((o) => (o.spec.selector = 'app=web')), S, 'spec.selector', 'must be a mapping of strings, got the string "app=web"'],
  ['selector key invalid', withSvc((o) => (o.spec.selector = { 'my app': 'web' })), S, 'spec.selector', 'key "my app" is not a valid label key: name part must consist of alphanumeric characters'],
  ['selector value a number', withSvc((o) => (o.spec.selector = { tier: 1 })), S, 'spec.selector.tier', 'must be a string, got number 1 (quote it: "1")'],
  ['selector value invalid', withSvc((o) => (o.spec.selector = { app: 'web app' })), S, 'spec.selector.app', '"web app" is not a valid label value'],
  // ports
  ['ClusterIP without ports', withSvc((o) => delete o.spec.ports), S, 'spec.ports', 'required (at least one port, unless the service is headless or ExternalName)'],
  ['NodePort with empty ports', nodePortSvc((o) => (o.spec.ports = [])), S, 'spec.ports', 'required (at least one port, unless the service is headless or ExternalName)'],
  ['ports not a sequence', withSvc((o) => (o.spec.ports = { port: 80 })), S, 'spec.ports', 'must be a sequence, got a mapping'],
  ['port entry not a mapping', withSvc((o) => (o.spec.ports = [80])), S, 'spec.ports[0]', 'must be a mapping, got number 80'],
  ['unknown port field', withSvc((o) => (o.spec.ports[0].containerPort = 8080)), S, 'spec.ports[0].containerPort', 'unknown field (a Service port has name, protocol, appProtocol, port, targetPort, nodePort)'],
  ['missing port', withSvc((o) => (o.spec.ports = [{ targetPort: 8080 }])), S, 'spec.ports[0].port', 'required'],
  ['port zero', withSvc((o) => (o.spec.ports[0].port = 0)), S, 'spec.ports[0].port', '0 is out of range 1-65535'],
  ['port too big', withSvc((o) => (o.spec.ports[0].port = 65536)), S, 'spec.ports[0].port', '65536 is out of range 1-65535'],
  ['port a string', withSvc((o) => (o.spec.ports[0].port = '80')), S, 'spec.ports[0].port', 'must be an integer, got the string "80"'],
  ['port fractional', withSvc((o) => (o.spec.ports[0].port = 80.5)), S, 'spec.ports[0].port', 'must be an integer, got number 80.5'],
  ['protocol ICMP', withSvc((o) => (o.spec.ports[0].protocol = 'ICMP')), S, 'spec.ports[0].protocol', '"ICMP" is not one of TCP, UDP, SCTP'],
  ['protocol not a string', withSvc((o) => (o.spec.ports[0].protocol = 6)), S, 'spec.ports[0].protocol', 'must be a string, one of TCP, UDP, SCTP; got number 6'],
  ['second port unnamed', withSvc((o) => (o.spec.ports = [{ name: 'http', port: 80 }, { port: 443 }])), S, 'spec.ports[1].name', 'required when a Service has more than one port'],
  ['first port unnamed', withSvc((o) => (o.spec.ports = [{ port: 80 }, { name: 'https', port: 443 }])), S, 'spec.ports[0].name', 'required when a Service has more than one port'],
  ['port name empty with two ports', withSvc((o) => (o.spec.ports = [{ name: '', port: 80 }, { name: 'https', port: 443 }])), S, 'spec.ports[0].name', 'required when a Service has more than one port'],
  ['port name upper-case', withSvc((o) => (o.spec.ports[0].name = 'HTTP')), S, 'spec.ports[0].name', '"HTTP" is not a valid DNS-1123 label'],
  ['port name with a dot', withSvc((o) => (o.spec.ports[0].name = 'http.alt')), S, 'spec.ports[0].name', '"http.alt" is not a valid DNS-1123 label'],
  ['port name not a string', withSvc((o) => (o.spec.ports[0].name = 80)), S, 'spec.ports[0].name', 'must be a string, got number 80'],
  ['duplicate port name', withSvc((o) => (o.spec.ports = [{ name: 'http', port: 80 }, { name: 'http', port: 8080 }])), S, 'spec.ports[1].name', 'duplicate port name "http" (also spec.ports[0].name)'],
  ['duplicate port/protocol (default TCP)', withSvc((o) => (o.spec.ports = [{ name: 'a', port: 80 }, { name: 'b', port: 80, protocol: 'TCP', targetPort: 8080 }])), S, 'spec.ports[1].port', 'duplicate port 80/TCP (also spec.ports[0])'],
  ['targetPort out of range', withSvc((o) => (o.spec.ports[0].targetPort = 70000)), S, 'spec.ports[0].targetPort', '70000 is out of range 1-65535'],
  ['targetPort negative', withSvc((o) => (o.spec.ports[0].targetPort = -1)), S, 'spec.ports[0].targetPort', '-1 is out of range 1-65535'],
  ['targetPort fractional', withSvc((o) => (o.spec.ports[0].targetPort = 80.5)), S, 'spec.ports[0].targetPort', 'must be an integer, got number 80.5'],
  ['targetPort name upper-case', withSvc((o) => (o.spec.ports[0].targetPort = 'HTTP')), S, 'spec.ports[0].targetPort', '"HTTP" is not a valid port name: must contain only lower case alphanumeric characters or \'-\''],
  ['targetPort name too long', withSvc((o) => (o.spec.ports[0].targetPort = 'a-very-long-port-name')), S, 'spec.ports[0].targetPort', '"a-very-long-port-name" is not a valid port name: must be no more than 15 characters (has 21)'],
  ['targetPort quoted number', withSvc((o) => (o.spec.ports[0].targetPort = '8080')), S, 'spec.ports[0].targetPort', '"8080" is not a valid port name: must contain at least one letter (for a port number, write it without quotes)'],
  ['targetPort a boolean', withSvc((o) => (o.spec.ports[0].targetPort = true)), S, 'spec.ports[0].targetPort', 'must be a port number or a port name, got boolean true'],
  ['appProtocol invalid', withSvc((o) => (o.spec.ports[0].appProtocol = 'http 2')), S, 'spec.ports[0].appProtocol', '"http 2" is not a valid application protocol: name part must consist of alphanumeric characters'],
  ['appProtocol not a string', withSvc((o) => (o.spec.ports[0].appProtocol = 2)), S, 'spec.ports[0].appProtocol', 'must be a string, got number 2'],
  ['nodePort on a ClusterIP service', withSvc((o) => (o.spec.ports[0].nodePort = 30080)), S, 'spec.ports[0].nodePort', 'may only be set when spec.type is NodePort (this service is ClusterIP)'],
  ['nodePort on a headless service', headlessSvc((o) => (o.spec.ports[0].nodePort = 30080)), S, 'spec.ports[0].nodePort', 'may only be set when spec.type is NodePort (this service is ClusterIP)'],
  ['nodePort out of range', nodePortSvc((o) => (o.spec.ports[0].nodePort = 65536)), S, 'spec.ports[0].nodePort', '65536 is out of range 1-65535'],
  ['nodePort negative', nodePortSvc((o) => (o.spec.ports[0].nodePort = -30080)), S, 'spec.ports[0].nodePort', '-30080 is out of range 1-65535'],
  ['nodePort a string', nodePortSvc((o) => (o.spec.ports[0].nodePort = '30080')), S, 'spec.ports[0].nodePort', 'must be an integer, got the string "30080"'],
  ['duplicate nodePort/protocol', nodePortSvc((o) => (o.spec.ports = [{ name: 'a', port: 80, nodePort: 30080 }, { name: 'b', port: 81, nodePort: 30080 }])), S, 'spec.ports[1].nodePort', 'duplicate node port 30080/TCP (also spec.ports[0].nodePort)'],
  // externalIPs
  ['externalIPs not a sequence', withSvc((o) => (o.spec.externalIPs = '192.168.56.100')), S, 'spec.externalIPs', 'must be a sequence, got the string "192.168.56.100"'],
  ['externalIP not a string', withSvc((o) => (o.spec.externalIPs = [1])), S, 'spec.externalIPs[0]', 'must be a string, got number 1'],
  ['externalIP invalid', withSvc((o) => (o.spec.externalIPs = ['192.168.56.100', '192.168.56'])), S, 'spec.externalIPs[1]', `"192.168.56" ${NOT_HOST}`],
  ['externalIP IPv6', withSvc((o) => (o.spec.externalIPs = ['2001:db8::1'])), S, 'spec.externalIPs[0]', '"2001:db8::1" is not a valid IPv4 address'],
  ['externalIP loopback', withSvc((o) => (o.spec.externalIPs = ['127.0.0.1'])), S, 'spec.externalIPs[0]', '"127.0.0.1" is a loopback address, not a host address'],
  ['externalIP link-local', withSvc((o) => (o.spec.externalIPs = ['169.254.1.1'])), S, 'spec.externalIPs[0]', '"169.254.1.1" is a link-local address, not a routable host address'],
  ['externalIP multicast', withSvc((o) => (o.spec.externalIPs = ['239.1.1.1'])), S, 'spec.externalIPs[0]', '"239.1.1.1" is a multicast address, not a host address'],
  ['externalIP unspecified', withSvc((o) => (o.spec.externalIPs = ['0.0.0.0'])), S, 'spec.externalIPs[0]', '"0.0.0.0" is a unspecified address, not a host address'],
  ['duplicate externalIP', withSvc((o) => (o.spec.externalIPs = ['192.168.56.100', '192.168.56.100'])), S, 'spec.externalIPs[1]', 'duplicate external IP 192.168.56.100 (also spec.externalIPs[0])'],
  ['externalIPs on a headless service', headlessSvc((o) => (o.spec.externalIPs = ['192.168.56.100'])), S, 'spec.externalIPs', 'not allowed on a headless service (clusterIP None): there is no virtual IP to forward them to (kube-proxy ignores them too)'],
  ['externalIPs on an ExternalName service', extNameSvc((o) => (o.spec.externalIPs = ['192.168.56.100'])), S, 'spec.externalIPs', 'not allowed on an ExternalName service: there is no virtual IP to forward them to'],
  // session affinity
  ['sessionAffinity unknown', withSvc((o) => (o.spec.sessionAffinity = 'Sticky')), S, 'spec.sessionAffinity', '"Sticky" is not one of None, ClientIP'],
  ['sessionAffinity not a string', withSvc((o) => (o.spec.sessionAffinity = true)), S, 'spec.sessionAffinity', 'must be a string, one of None, ClientIP; got boolean true'],
  ['ClientIP on a headless service', headlessSvc((o) => (o.spec.sessionAffinity = 'ClientIP')), S, 'spec.sessionAffinity', 'ClientIP has no effect on a headless service (clusterIP None): podwire does not load-balance it (use None)'],
  ['ClientIP on an ExternalName service', extNameSvc((o) => (o.spec.sessionAffinity = 'ClientIP')), S, 'spec.sessionAffinity', 'ClientIP has no effect on an ExternalName service: podwire does not load-balance it (use None)'],
  ['sessionAffinityConfig with affinity None', withSvc((o) => { o.spec.sessionAffinity = 'None'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } }; }), S, 'spec.sessionAffinityConfig', 'must not be set when spec.sessionAffinity is None'],
  ['sessionAffinityConfig with affinity unset (None)', withSvc((o) => (o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 60 } })), S, 'spec.sessionAffinityConfig', 'must not be set when spec.sessionAffinity is None'],
  ['sessionAffinityConfig not a mapping', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = 60; }), S, 'spec.sessionAffinityConfig', 'must be a mapping, got number 60'],
  ['sessionAffinityConfig unknown field', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { timeoutSeconds: 60 }; }), S, 'spec.sessionAffinityConfig.timeoutSeconds', 'unknown field (sessionAffinityConfig has only clientIP)'],
  ['clientIP not a mapping', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: 60 }; }), S, 'spec.sessionAffinityConfig.clientIP', 'must be a mapping, got number 60'],
  ['clientIP unknown field', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeout: 60 } }; }), S, 'spec.sessionAffinityConfig.clientIP.timeout', 'unknown field (clientIP has only timeoutSeconds)'],
  ['timeoutSeconds zero', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 0 } }; }), S, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', '0 is out of range 1-86400'],
  ['timeoutSeconds over a day', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 86401 } }; }), S, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', '86401 is out of range 1-86400'],
  ['timeoutSeconds a string', withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: '60s' } }; }), S, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 'must be an integer, got the string "60s"'],
  // traffic policies
  ['externalTrafficPolicy Local on a plain ClusterIP service', withSvc((o) => (o.spec.externalTrafficPolicy = 'Local')), S, 'spec.externalTrafficPolicy', '"Local" may only be set for externally-accessible services (type NodePort, or ClusterIP with spec.externalIPs)'],
  ['externalTrafficPolicy Cluster on a plain ClusterIP service (as Kubernetes)', withSvc((o) => (o.spec.externalTrafficPolicy = 'Cluster')), S, 'spec.externalTrafficPolicy', '"Cluster" may only be set for externally-accessible services'],
  ['externalTrafficPolicy on a headless service', headlessSvc((o) => (o.spec.externalTrafficPolicy = 'Local')), S, 'spec.externalTrafficPolicy', '"Local" may only be set for externally-accessible services'],
  ['externalTrafficPolicy on an ExternalName service', extNameSvc((o) => (o.spec.externalTrafficPolicy = 'Cluster')), S, 'spec.externalTrafficPolicy', '"Cluster" may only be set for externally-accessible services'],
  ['externalTrafficPolicy unknown', nodePortSvc((o) => (o.spec.externalTrafficPolicy = 'Remote')), S, 'spec.externalTrafficPolicy', '"Remote" is not one of Cluster, Local'],
  ['internalTrafficPolicy Local', withSvc((o) => (o.spec.internalTrafficPolicy = 'Local')), S, 'spec.internalTrafficPolicy', '"Local" is not supported: podwire does not implement internalTrafficPolicy Local (sending in-cluster traffic only to endpoints on the same node); use Cluster'],
  ['internalTrafficPolicy unknown', withSvc((o) => (o.spec.internalTrafficPolicy = 'Node')), S, 'spec.internalTrafficPolicy', '"Node" is not one of Cluster, Local'],
  // podwire.io/lb-algorithm
  ['lb-algorithm unknown', withSvc((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': 'least-conn' })), S, 'metadata.annotations[podwire.io/lb-algorithm]', '"least-conn" is not one of round-robin, random, maglev'],
  ['lb-algorithm upper-case', withSvc((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': 'Maglev' })), S, 'metadata.annotations[podwire.io/lb-algorithm]', '"Maglev" is not one of round-robin, random, maglev'],
  ['lb-algorithm on an ExternalName service', extNameSvc((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': 'random' })), S, 'metadata.annotations[podwire.io/lb-algorithm]', 'has no effect on an ExternalName service: podwire does not load-balance it'],
  ['lb-algorithm on a headless service', headlessSvc((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': 'maglev' })), S, 'metadata.annotations[podwire.io/lb-algorithm]', 'has no effect on a headless service (clusterIP None): podwire does not load-balance it'],
];

const ep0 = (o: Obj): Obj => o.endpoints[0];
const sliceCases: Case[] = [
  ['unknown top-level field', withSlice((o) => (o.endpoint = [])), E, 'endpoint', 'unknown field (an EndpointSlice has addressType, endpoints and ports at the top level)'],
  ['a spec (there is none)', withSlice((o) => (o.spec = {})), E, 'spec', 'unknown field (an EndpointSlice has addressType, endpoints and ports at the top level)'],
  ['missing addressType', withSlice((o) => delete o.addressType), E, 'addressType', 'required (podwire supports IPv4)'],
  ['addressType IPv6', withSlice((o) => (o.addressType = 'IPv6')), E, 'addressType', '"IPv6" is not supported: podwire is IPv4-only'],
  ['addressType FQDN', withSlice((o) => (o.addressType = 'FQDN')), E, 'addressType', '"FQDN" is not supported: podwire is IPv4-only'],
  ['addressType unknown', withSlice((o) => (o.addressType = 'ipv4')), E, 'addressType', '"ipv4" is not one of IPv4, IPv6, FQDN'],
  ['addressType not a string', withSlice((o) => (o.addressType = 4)), E, 'addressType', 'must be a string, one of IPv4, IPv6, FQDN; got number 4'],
  ['missing service-name label', withSlice((o) => (o.metadata.labels = { app: 'web' })), E, 'metadata.labels[kubernetes.io/service-name]', 'required: the name of the Service this slice belongs to'],
  ['no labels at all', withSlice((o) => delete o.metadata.labels), E, 'metadata.labels[kubernetes.io/service-name]', 'required: the name of the Service this slice belongs to'],
  ['empty service-name label', withSlice((o) => (o.metadata.labels['kubernetes.io/service-name'] = '')), E, 'metadata.labels[kubernetes.io/service-name]', '"" is not a valid Service name: must not be empty'],
  ['service-name not a Service name', withSlice((o) => (o.metadata.labels['kubernetes.io/service-name'] = '1web')), E, 'metadata.labels[kubernetes.io/service-name]', '"1web" is not a valid Service name: is not a valid DNS-1035 label'],
  ['endpoints not a sequence', withSlice((o) => (o.endpoints = { addresses: ['10.244.1.5'] })), E, 'endpoints', 'must be a sequence, got a mapping'],
  ['too many endpoints', withSlice((o) => (o.endpoints = Array.from({ length: 1001 }, (_, i) => ({ addresses: [`10.244.${i >> 8}.${(i & 255) + 1 > 254 ? 254 : (i & 255) + 1}`] })))), E, 'endpoints', 'has 1001 entries; an EndpointSlice holds at most 1000'],
  ['endpoint not a mapping', withSlice((o) => (o.endpoints = ['10.244.1.5'])), E, 'endpoints[0]', 'must be a mapping, got the string "10.244.1.5"'],
  ['hints', withSlice((o) => (ep0(o).hints = { forZones: [{ name: 'zone-a' }] })), E, 'endpoints[0].hints', 'topology-aware routing hints are not supported by podwire'],
  ['unknown endpoint field', withSlice((o) => (ep0(o).address = '10.244.1.6')), E, 'endpoints[0].address', 'unknown field (an endpoint has addresses, conditions, hostname, nodeName, zone, targetRef, deprecatedTopology)'],
  ['missing addresses', withSlice((o) => (o.endpoints = [{ nodeName: 'node1' }])), E, 'endpoints[0].addresses', 'required (at least one IPv4 address)'],
  ['empty addresses', withSlice((o) => (ep0(o).addresses = [])), E, 'endpoints[0].addresses', 'must have at least one address'],
  ['addresses not a sequence', withSlice((o) => (ep0(o).addresses = '10.244.1.5')), E, 'endpoints[0].addresses', 'must be a sequence, got the string "10.244.1.5"'],
  ['too many addresses', withSlice((o) => (ep0(o).addresses = Array.from({ length: 101 }, (_, i) => `10.244.1.${i + 1}`))), E, 'endpoints[0].addresses', 'has 101 entries; an endpoint has at most 100'],
  ['address invalid', withSlice((o) => o.endpoints.push({ addresses: ['10.244.1.6', '10.244.1'] })), E, 'endpoints[1].addresses[1]', `"10.244.1" ${NOT_HOST}`],
  ['address IPv6', withSlice((o) => (ep0(o).addresses = ['fd00::5'])), E, 'endpoints[0].addresses[0]', '"fd00::5" is not a valid IPv4 address'],
  ['address loopback', withSlice((o) => (ep0(o).addresses = ['127.0.0.1'])), E, 'endpoints[0].addresses[0]', '"127.0.0.1" is a loopback address, not a host address'],
  ['address link-local', withSlice((o) => (ep0(o).addresses = ['169.254.169.254'])), E, 'endpoints[0].addresses[0]', '"169.254.169.254" is a link-local address, not a routable host address'],
  ['address not a string', withSlice((o) => (ep0(o).addresses = [167772161])), E, 'endpoints[0].addresses[0]', 'must be a string, got number 167772161'],
  ['conditions not a mapping', withSlice((o) => (ep0(o).conditions = ['ready'])), E, 'endpoints[0].conditions', 'must be a mapping, got a sequence'],
  ['unknown condition', withSlice((o) => (ep0(o).conditions = { healthy: true })), E, 'endpoints[0].conditions.healthy', 'unknown field (conditions are ready, serving and terminating)'],
  ['ready a string', withSlice((o) => (ep0(o).conditions = { ready: 'true' })), E, 'endpoints[0].conditions.ready', 'must be a boolean, got the string "true"'],
  ['serving a number', withSlice((o) => (ep0(o).conditions = { serving: 1 })), E, 'endpoints[0].conditions.serving', 'must be a boolean, got number 1'],
  ['terminating a string', withSlice((o) => (ep0(o).conditions = { terminating: 'no' })), E, 'endpoints[0].conditions.terminating', 'must be a boolean, got the string "no"'],
  ['hostname invalid', withSlice((o) => (ep0(o).hostname = 'web_0')), E, 'endpoints[0].hostname', '"web_0" is not a valid DNS-1123 label'],
  ['zone not a string', withSlice((o) => (ep0(o).zone = 1)), E, 'endpoints[0].zone', 'must be a string, got number 1'],
  ['deprecatedTopology not a mapping', withSlice((o) => (ep0(o).deprecatedTopology = 'zone-a')), E, 'endpoints[0].deprecatedTopology', 'must be a mapping of strings, got the string "zone-a"'],
  ['nodeName invalid', withSlice((o) => (ep0(o).nodeName = 'Node_1')), E, 'endpoints[0].nodeName', '"Node_1" is not a valid DNS-1123 subdomain'],
  ['nodeName not a string', withSlice((o) => (ep0(o).nodeName = 1)), E, 'endpoints[0].nodeName', 'must be a string, got number 1'],
  ['targetRef not a mapping', withSlice((o) => (ep0(o).targetRef = 'Pod/web')), E, 'endpoints[0].targetRef', 'must be a mapping, got the string "Pod/web"'],
  ['targetRef unknown field', withSlice((o) => (ep0(o).targetRef = { kind: 'Pod', name: 'web', pod: 'web' })), E, 'endpoints[0].targetRef.pod', 'unknown field (an object reference has kind, namespace, name, uid, apiVersion, resourceVersion, fieldPath)'],
  ['targetRef without kind', withSlice((o) => (ep0(o).targetRef = { name: 'web' })), E, 'endpoints[0].targetRef.kind', 'required'],
  ['targetRef without name', withSlice((o) => (ep0(o).targetRef = { kind: 'Pod' })), E, 'endpoints[0].targetRef.name', 'required'],
  ['targetRef empty name', withSlice((o) => (ep0(o).targetRef = { kind: 'Pod', name: '' })), E, 'endpoints[0].targetRef.name', 'must not be empty'],
  ['targetRef kind not a string', withSlice((o) => (ep0(o).targetRef = { kind: 1, name: 'web' })), E, 'endpoints[0].targetRef.kind', 'must be a string, got number 1'],
  ['targetRef namespace invalid', withSlice((o) => (ep0(o).targetRef = { kind: 'Pod', name: 'web', namespace: 'Prod' })), E, 'endpoints[0].targetRef.namespace', '"Prod" is not a valid DNS-1123 label'],
  ['targetRef uid not a string', withSlice((o) => (ep0(o).targetRef = { kind: 'Pod', name: 'web', uid: 5 })), E, 'endpoints[0].targetRef.uid', 'must be a string, got number 5'],
  ['ports not a sequence', withSlice((o) => (o.ports = { port: 80 })), E, 'ports', 'must be a sequence, got a mapping'],
  ['port not a mapping', withSlice((o) => (o.ports = [80])), E, 'ports[0]', 'must be a mapping, got number 80'],
  ['unknown port field', withSlice((o) => (o.ports[0].targetPort = 8080)), E, 'ports[0].targetPort', 'unknown field (an EndpointSlice port has name, protocol, port, appProtocol)'],
  ['port name invalid', withSlice((o) => (o.ports[0].name = 'HTTP')), E, 'ports[0].name', '"HTTP" is not a valid DNS-1123 label'],
  ['port name not a string', withSlice((o) => (o.ports[0].name = 80)), E, 'ports[0].name', 'must be a string, got number 80'],
  ['duplicate port name', withSlice((o) => o.ports.push({ name: 'http', port: 8080 })), E, 'ports[1].name', 'duplicate port name "http" (also ports[0].name)'],
  ['two unnamed ports', withSlice((o) => (o.ports = [{ port: 80 }, { port: 443 }])), E, 'ports[1].name', 'a second unnamed port (also ports[0]); ports need distinct names'],
  ['unnamed and empty-named port', withSlice((o) => (o.ports = [{ port: 80 }, { name: '', port: 443 }])), E, 'ports[1].name', 'a second unnamed port (also ports[0])'],
  ['missing port', withSlice((o) => (o.ports = [{ name: 'http' }])), E, 'ports[0].port', 'required (a port-less entry means "every port" in Kubernetes, which podwire does not support)'],
  ['port zero', withSlice((o) => (o.ports[0].port = 0)), E, 'ports[0].port', '0 is out of range 1-65535'],
  ['port a string', withSlice((o) => (o.ports[0].port = 'http')), E, 'ports[0].port', 'must be an integer, got the string "http"'],
  ['protocol ICMP', withSlice((o) => (o.ports[0].protocol = 'ICMP')), E, 'ports[0].protocol', '"ICMP" is not one of TCP, UDP, SCTP'],
  ['appProtocol invalid', withSlice((o) => (o.ports[0].appProtocol = 'a/b/c')), E, 'ports[0].appProtocol', '"a/b/c" is not a valid application protocol'],
];

const withRule = (rule: Obj) => withNp((o) => (o.spec.ingress = [rule]));
const withPeer = (peer: unknown) => withRule({ from: [peer] });
const withIpBlock = (ipBlock: unknown) => withPeer({ ipBlock });
const withPort = (port: unknown) => withRule({ ports: [port] });
const withSel = (sel: unknown) => withNp((o) => (o.spec.podSelector = sel));
const withExpr = (expr: unknown) => withSel({ matchExpressions: [expr] });
const PS = 'spec.podSelector';
const ME = 'spec.podSelector.matchExpressions[0]';
const F0 = 'spec.ingress[0].from[0]';
const IB = 'spec.ingress[0].from[0].ipBlock';
const PT = 'spec.ingress[0].ports[0]';
const policyCases: Case[] = [
  ['missing spec', withNp((o) => delete o.spec), NP, 'spec', 'required (a NetworkPolicy needs spec.podSelector)'],
  ['spec not a mapping', withNp((o) => (o.spec = 'deny')), NP, 'spec', 'must be a mapping, got the string "deny"'],
  ['unknown spec field (typo)', withNp((o) => (o.spec.ingres = [])), NP, 'spec.ingres', 'unknown field (a NetworkPolicy spec has podSelector, policyTypes, ingress, egress)'],
  ['missing podSelector', withNp((o) => (o.spec = { policyTypes: ['Ingress'] })), NP, 'spec.podSelector', 'required ({} selects every pod in the namespace)'],
  ['null podSelector is unset', withNp((o) => (o.spec.podSelector = null)), NP, 'spec.podSelector', 'required ({} selects every pod in the namespace)'],
  // selectors
  ['podSelector not a mapping', withSel('app=web'), NP, PS, 'must be a mapping, got the string "app=web"'],
  ['labels written directly in a selector', withSel({ app: 'web' }), NP, `${PS}.app`, 'unknown field (a label selector has matchLabels and matchExpressions)'],
  ['matchLabels key invalid', withSel({ matchLabels: { 'my app': 'web' } }), NP, `${PS}.matchLabels`, 'key "my app" is not a valid label key'],
  ['matchLabels value invalid', withSel({ matchLabels: { app: 'web-' } }), NP, `${PS}.matchLabels.app`, '"web-" is not a valid label value'],
  ['matchLabels value a boolean', withSel({ matchLabels: { canary: true } }), NP, `${PS}.matchLabels.canary`, 'must be a string, got boolean true (quote it: "true")'],
  ['matchLabels not a mapping', withSel({ matchLabels: ['app=web'] }), NP, `${PS}.matchLabels`, 'must be a mapping of strings, got a sequence'],
  ['matchExpressions not a sequence', withSel({ matchExpressions: { key: 'app' } }), NP, `${PS}.matchExpressions`, 'must be a sequence, got a mapping'],
  ['expression not a mapping', withExpr('app in (web)'), NP, ME, 'must be a mapping, got the string "app in (web)"'],
  ['expression unknown field', withExpr({ key: 'app', operator: 'In', value: ['web'] }), NP, `${ME}.value`, 'unknown field (a selector requirement has key, operator and values)'],
  ['expression without key', withExpr({ operator: 'Exists' }), NP, `${ME}.key`, 'required'],
  ['expression key invalid', withExpr({ key: 'app name', operator: 'Exists' }), NP, `${ME}.key`, '"app name" is not a valid label key: name part must consist of alphanumeric characters'],
  ['expression key not a string', withExpr({ key: 1, operator: 'Exists' }), NP, `${ME}.key`, 'must be a string, got number 1'],
  ['expression without operator', withExpr({ key: 'app', values: ['web'] }), NP, `${ME}.operator`, 'required (one of In, NotIn, Exists, DoesNotExist)'],
  ['operator lower-case', withExpr({ key: 'app', operator: 'in', values: ['web'] }), NP, `${ME}.operator`, '"in" is not one of In, NotIn, Exists, DoesNotExist'],
  ['operator Gt (nodes only)', withExpr({ key: 'tier', operator: 'Gt', values: ['1'] }), NP, `${ME}.operator`, '"Gt" is not one of In, NotIn, Exists, DoesNotExist'],
  ['In without values', withExpr({ key: 'app', operator: 'In' }), NP, `${ME}.values`, 'must have at least one value when operator is In'],
  ['NotIn with empty values', withExpr({ key: 'app', operator: 'NotIn', values: [] }), NP, `${ME}.values`, 'must have at least one value when operator is NotIn'],
  ['Exists with values', withExpr({ key: 'app', operator: 'Exists', values: ['web'] }), NP, `${ME}.values`, 'must be empty when operator is Exists'],
  ['DoesNotExist with values', withExpr({ key: 'app', operator: 'DoesNotExist', values: ['web'] }), NP, `${ME}.values`, 'must be empty when operator is DoesNotExist'],
  ['values not a sequence', withExpr({ key: 'app', operator: 'In', values: 'web' }), NP, `${ME}.values`, 'must be a sequence, got the string "web"'],
  ['value invalid', withExpr({ key: 'app', operator: 'In', values: ['web', 'a b'] }), NP, `${ME}.values[1]`, '"a b" is not a valid label value'],
  ['value a number', withExpr({ key: 'tier', operator: 'In', values: [1] }), NP, `${ME}.values[0]`, 'must be a string, got number 1'],
  // policyTypes
  ['policyTypes not a sequence', withNp((o) => (o.spec.policyTypes = 'Ingress')), NP, 'spec.policyTypes', 'must be a sequence, got the string "Ingress"'],
  ['policyType lower-case', withNp((o) => (o.spec.policyTypes = ['ingress'])), NP, 'spec.policyTypes[0]', '"ingress" is not one of Ingress, Egress'],
  ['policyType not a string', withNp((o) => (o.spec.policyTypes = [['Ingress']])), NP, 'spec.policyTypes[0]', 'must be a string, one of Ingress, Egress; got a sequence'],
  ['duplicate policyType', withNp((o) => (o.spec.policyTypes = ['Ingress', 'Egress', 'Ingress'])), NP, 'spec.policyTypes[2]', 'duplicate "Ingress" (also spec.policyTypes[0])'],
  // rules
  ['ingress not a sequence', withNp((o) => (o.spec.ingress = { from: [] })), NP, 'spec.ingress', 'must be a sequence, got a mapping'],
  ['egress not a sequence', withNp((o) => (o.spec.egress = 'all')), NP, 'spec.egress', 'must be a sequence, got the string "all"'],
  ['rule not a mapping', withNp((o) => (o.spec.ingress = ['all'])), NP, 'spec.ingress[0]', 'must be a mapping, got the string "all"'],
  ['ingress rule with to', withRule({ to: [{ podSelector: {} }] }), NP, 'spec.ingress[0].to', 'unknown field (an ingress rule has from and ports)'],
  ['egress rule with from', withNp((o) => (o.spec.egress = [{ from: [{ podSelector: {} }] }])), NP, 'spec.egress[0].from', 'unknown field (an egress rule has to and ports)'],
  ['from not a sequence', withRule({ from: { podSelector: {} } }), NP, 'spec.ingress[0].from', 'must be a sequence, got a mapping'],
  ['ports not a sequence', withRule({ ports: 80 }), NP, 'spec.ingress[0].ports', 'must be a sequence, got number 80'],
  // peers
  ['peer not a mapping', withPeer('10.0.0.0/8'), NP, F0, 'must be a mapping, got the string "10.0.0.0/8"'],
  ['empty peer', withPeer({}), NP, F0, 'must specify a peer: podSelector and/or namespaceSelector, or ipBlock'],
  ['unknown peer field', withPeer({ ipblock: { cidr: '10.0.0.0/8' } }), NP, `${F0}.ipblock`, 'unknown field (a peer has podSelector, namespaceSelector or ipBlock)'],
  ['ipBlock with podSelector', withPeer({ ipBlock: { cidr: '10.0.0.0/8' }, podSelector: {} }), NP, F0, 'ipBlock may not be combined with podSelector or namespaceSelector (write them as separate peers)'],
  ['ipBlock with namespaceSelector', withPeer({ ipBlock: { cidr: '10.0.0.0/8' }, namespaceSelector: {} }), NP, F0, 'ipBlock may not be combined with podSelector or namespaceSelector'],
  ['peer podSelector invalid', withPeer({ podSelector: { matchLabels: { app: '-' } } }), NP, `${F0}.podSelector.matchLabels.app`, '"-" is not a valid label value'],
  ['egress peer namespaceSelector invalid', withNp((o) => (o.spec.egress = [{ to: [{ namespaceSelector: { matchExpressions: [{ key: 'env', operator: 'In' }] } }] }])), NP, 'spec.egress[0].to[0].namespaceSelector.matchExpressions[0].values', 'must have at least one value when operator is In'],
  // ipBlock
  ['ipBlock not a mapping', withIpBlock('10.0.0.0/8'), NP, IB, 'must be a mapping, got the string "10.0.0.0/8"'],
  ['ipBlock unknown field', withIpBlock({ cidr: '10.0.0.0/8', exclude: [] }), NP, `${IB}.exclude`, 'unknown field (an ipBlock has cidr and except)'],
  ['ipBlock without cidr', withIpBlock({ except: ['10.1.0.0/16'] }), NP, `${IB}.cidr`, 'required'],
  ['cidr not a string', withIpBlock({ cidr: 10 }), NP, `${IB}.cidr`, 'must be a string, got number 10'],
  ['cidr without prefix', withIpBlock({ cidr: '10.0.0.0' }), NP, `${IB}.cidr`, '"10.0.0.0" is not a valid IPv4 CIDR (expected e.g. 10.0.0.0/8)'],
  ['cidr prefix 33', withIpBlock({ cidr: '10.0.0.0/33' }), NP, `${IB}.cidr`, '"10.0.0.0/33" is not a valid IPv4 CIDR'],
  ['cidr bad octet', withIpBlock({ cidr: '10.0.0.256/24' }), NP, `${IB}.cidr`, '"10.0.0.256/24" is not a valid IPv4 CIDR'],
  ['cidr leading zero', withIpBlock({ cidr: '010.0.0.0/8' }), NP, `${IB}.cidr`, '"010.0.0.0/8" is not a valid IPv4 CIDR'],
  ['cidr IPv6', withIpBlock({ cidr: 'fd00::/8' }), NP, `${IB}.cidr`, '"fd00::/8" is an IPv6 CIDR; podwire is IPv4-only'],
  ['except not a sequence', withIpBlock({ cidr: '10.0.0.0/8', except: '10.1.0.0/16' }), NP, `${IB}.except`, 'must be a sequence, got the string "10.1.0.0/16"'],
  ['except invalid', withIpBlock({ cidr: '10.0.0.0/8', except: ['10.1.0.0/16', '10.2.0.0'] }), NP, `${IB}.except[1]`, '"10.2.0.0" is not a valid IPv4 CIDR'],
  ['except IPv6', withIpBlock({ cidr: '10.0.0.0/8', except: ['fd00::/16'] }), NP, `${IB}.except[0]`, '"fd00::/16" is an IPv6 CIDR; podwire is IPv4-only'],
  ['except equal to cidr', withIpBlock({ cidr: '10.0.0.0/8', except: ['10.0.0.0/8'] }), NP, `${IB}.except[0]`, '"10.0.0.0/8" must be strictly inside cidr 10.0.0.0/8'],
  ['except larger than cidr', withIpBlock({ cidr: '10.1.0.0/16', except: ['10.0.0.0/8'] }), NP, `${IB}.except[0]`, '"10.0.0.0/8" must be strictly inside cidr 10.1.0.0/16'],
  ['except outside cidr', withIpBlock({ cidr: '10.0.0.0/8', except: ['192.168.0.0/16'] }), NP, `${IB}.except[0]`, '"192.168.0.0/16" must be strictly inside cidr 10.0.0.0/8'],
  ['except outside a normalized cidr', withIpBlock({ cidr: '10.1.2.3/8', except: ['11.0.0.0/16'] }), NP, `${IB}.except[0]`, '"11.0.0.0/16" must be strictly inside cidr 10.0.0.0/8'],
  ['except not a string', withIpBlock({ cidr: '10.0.0.0/8', except: [{ cidr: '10.1.0.0/16' }] }), NP, `${IB}.except[0]`, 'must be a string, got a mapping'],
  // ports
  ['port not a mapping', withPort(80), NP, PT, 'must be a mapping, got number 80'],
  ['port unknown field', withPort({ port: 80, portRange: '80-90' }), NP, `${PT}.portRange`, 'unknown field (a NetworkPolicy port has protocol, port and endPort)'],
  ['port protocol ICMP', withPort({ protocol: 'ICMP' }), NP, `${PT}.protocol`, '"ICMP" is not one of TCP, UDP, SCTP'],
  ['port zero', withPort({ port: 0 }), NP, `${PT}.port`, '0 is out of range 1-65535'],
  ['port too big', withPort({ port: 65536 }), NP, `${PT}.port`, '65536 is out of range 1-65535'],
  ['port name invalid', withPort({ port: 'HTTP' }), NP, `${PT}.port`, '"HTTP" is not a valid port name: must contain only lower case alphanumeric characters or \'-\''],
  ['port quoted number', withPort({ port: '443' }), NP, `${PT}.port`, '"443" is not a valid port name: must contain at least one letter (for a port number, write it without quotes)'],
  ['port a sequence', withPort({ port: [80, 443] }), NP, `${PT}.port`, 'must be a port number or a port name, got a sequence'],
  ['endPort without port', withPort({ endPort: 90 }), NP, `${PT}.port`, 'required when endPort is set'],
  ['endPort with a named port', withPort({ port: 'http', endPort: 90 }), NP, `${PT}.endPort`, 'may not be set when port is a name ("http"); endPort needs a numeric port'],
  ['endPort below port', withPort({ port: 80, endPort: 79 }), NP, `${PT}.endPort`, '79 must be greater than or equal to port (80)'],
  ['endPort too big', withPort({ port: 80, endPort: 65536 }), NP, `${PT}.endPort`, '65536 is out of range 1-65535'],
  ['endPort a string', withPort({ port: 80, endPort: '90' }), NP, `${PT}.endPort`, 'must be an integer, got the string "90"'],
  ['egress port error path', withNp((o) => (o.spec.egress = [{ to: [], ports: [{ port: 53, protocol: 'udp' }] }])), NP, 'spec.egress[0].ports[0].protocol', '"udp" is not one of TCP, UDP, SCTP'],
];

const statusCases: Case[] = [
  ['status not a mapping', withPod((o) => (o.status = 'Running')), P, 'status', 'must be a mapping, got the string "Running"'],
  ['podIP not a string', withPod((o) => (o.status = { podIP: 5 })), P, 'status.podIP', 'must be a string, got number 5'],
  ['podIP invalid', withPod((o) => (o.status = { podIP: '10.244.1' })), P, 'status.podIP', `"10.244.1" ${NOT_HOST}`],
  ['podIP IPv6', withPod((o) => (o.status = { podIP: 'fd00::7' })), P, 'status.podIP', '"fd00::7" is not a valid IPv4 address'],
  ['podIP loopback', withPod((o) => (o.status = { podIP: '127.0.0.1' })), P, 'status.podIP', '"127.0.0.1" is a loopback address, not a host address'],
  ['podIPs not a sequence', withPod((o) => (o.status = { podIP: '10.244.1.7', podIPs: '10.244.1.7' })), P, 'status.podIPs', 'must be a sequence, got the string "10.244.1.7"'],
  ['podIPs dual-stack', withPod((o) => (o.status = { podIP: '10.244.1.7', podIPs: [{ ip: '10.244.1.7' }, { ip: 'fd00::7' }] })), P, 'status.podIPs', 'has 2 entries; podwire is single-stack IPv4 and a pod has exactly one address'],
  ['podIPs entry a bare string', withPod((o) => (o.status = { podIP: '10.244.1.7', podIPs: ['10.244.1.7'] })), P, 'status.podIPs[0]', 'must be a mapping like {ip: 10.244.1.5}, got the string "10.244.1.7"'],
  ['podIPs entry unknown field', withPod((o) => (o.status = { podIPs: [{ address: '10.244.1.7' }] })), P, 'status.podIPs[0].address', 'unknown field (a pod IP entry has only ip)'],
  ['podIPs entry without ip', withPod((o) => (o.status = { podIPs: [{}] })), P, 'status.podIPs[0].ip', 'required'],
  ['podIPs disagrees with podIP', withPod((o) => (o.status = { podIP: '10.244.1.7', podIPs: [{ ip: '10.244.1.8' }] })), P, 'status.podIPs[0].ip', '"10.244.1.8" must equal status.podIP (10.244.1.7)'],
  ['podIPs alone, invalid', withPod((o) => (o.status = { podIPs: [{ ip: '10.244.1.300' }] })), P, 'status.podIPs[0].ip', '"10.244.1.300" is not a valid IPv4 address'],
  ['podIP disagrees with the pinned IP', withPod((o) => { o.metadata.annotations = { 'podwire.io/ip': '10.244.1.50' }; o.status = { podIP: '10.244.1.7' }; }), P, 'status.podIP', '10.244.1.7 disagrees with the annotation podwire.io/ip (10.244.1.50)'],
  ['podIPs-derived podIP disagrees with the pinned IP', withPod((o) => { o.metadata.annotations = { 'podwire.io/ip': '10.244.1.50' }; o.status = { podIPs: [{ ip: '10.244.1.7' }] }; }), P, 'status.podIP', '10.244.1.7 disagrees with the annotation podwire.io/ip (10.244.1.50)'],
];

describe('parseManifests: validation of the Kubernetes networking kinds', () => {
  describe('kinds, apiVersions, names, annotations', () => runCases(kindCases));
  describe('Service', () => runCases(serviceCases));
  describe('EndpointSlice', () => runCases(sliceCases));
  describe('NetworkPolicy', () => runCases(policyCases));
  describe('Pod status', () => runCases(statusCases));

  it('the tables are sane: every base object parses', () => {
    expect(parseManifests(yamlOf(svc(), slice(), netpol(), pod())).map(objectKey)).toEqual([
      'Service/default/web',
      'EndpointSlice/default/web-abc12',
      'NetworkPolicy/default/allow',
      'Pod/default/web',
    ]);
    for (const make of [nodePortSvc(), extNameSvc(), headlessSvc()]) expect(() => parse1(make())).not.toThrow();
  });
});

describe('parseManifests: across objects', () => {
  const web2 = (f: (o: Obj) => void) => withSvc((o) => { o.metadata.name = 'db'; f(o); })();
  const podDb = (f: (o: Obj) => void) => withPod((o) => { o.metadata.name = 'db'; f(o); })();
  it.each([
    ['same Service twice', [svc(), svc()], S, 'metadata.name', 'duplicate object: Service/default/web is already defined'],
    ['same EndpointSlice twice', [slice(), slice()], E, 'metadata.name', 'duplicate object: EndpointSlice/default/web-abc12 is already defined'],
    ['same NetworkPolicy twice', [netpol(), netpol()], NP, 'metadata.name', 'duplicate object: NetworkPolicy/default/allow is already defined'],
    ['same cluster IP', [withSvc((o) => (o.spec.clusterIP = '10.96.0.10'))(), web2((o) => (o.spec.clusterIPs = ['10.96.0.10']))], 'Service default/db', 'spec.clusterIP', '10.96.0.10 is already the cluster IP of Service default/web'],
    ['same node port and protocol', [nodePortSvc((o) => (o.spec.ports[0].nodePort = 30080))(), web2((o) => { o.spec.type = 'NodePort'; o.spec.ports = [{ name: 'a', port: 53, protocol: 'UDP', nodePort: 30080 }, { name: 'b', port: 8080, nodePort: 30080 }]; })], 'Service default/db', 'spec.ports[1].nodePort', 'node port 30080/TCP is already used by Service default/web'],
    ['same podIP', [withPod((o) => (o.status = { podIP: '10.244.1.7' }))(), podDb((o) => (o.status = { podIP: '10.244.1.7' }))], 'Pod default/db', 'status.podIP', '10.244.1.7 is already the podIP of Pod default/web'],
    ['podIP pinned by another pod', [withPod((o) => (o.metadata.annotations = { 'podwire.io/ip': '10.244.1.7' }))(), podDb((o) => (o.status = { podIP: '10.244.1.7' }))], 'Pod default/db', 'status.podIP', '10.244.1.7 is already pinned by Pod default/web'],
    ['pinning another pod\'s podIP', [withPod((o) => (o.status = { podIP: '10.244.1.7' }))(), podDb((o) => (o.metadata.annotations = { 'podwire.io/ip': '10.244.1.7' }))], 'Pod default/db', 'metadata.annotations[podwire.io/ip]', '10.244.1.7 is already the podIP of Pod default/web'],
  ] as Array<[string, Obj[], string, string, string]>)('%s', (_n, objs, ref, field, reason) => {
    expectError(yamlOf(...objs), ref, field, reason);
  });

  it('allows what Kubernetes allows across objects', () => {
    const objs = parseManifests(
      yamlOf(
        nodePortSvc((o) => (o.spec.ports[0].nodePort = 30053))(),
        web2((o) => { o.spec.type = 'NodePort'; o.spec.ports = [{ port: 53, protocol: 'UDP', nodePort: 30053 }]; }), // same node port, other protocol
        headlessSvc((o) => (o.metadata.name = 'h1'))(),
        headlessSvc((o) => (o.metadata.name = 'h2'))(), // "None" is not an address
        withSvc((o) => (o.metadata.namespace = 'prod'))(), // same name, other namespace
        withPod((o) => { o.metadata.annotations = { 'podwire.io/ip': '10.244.1.7' }; o.status = { podIP: '10.244.1.7' }; })(), // pinned = podIP
        slice(),
        withSlice((o) => (o.metadata.name = 'web-def34'))(), // two slices of one Service
      ),
    );
    expect(objs.map(objectKey)).toEqual([
      'Service/default/web',
      'Service/default/db',
      'Service/default/h1',
      'Service/default/h2',
      'Service/prod/web',
      'Pod/default/web',
      'EndpointSlice/default/web-abc12',
      'EndpointSlice/default/web-def34',
    ]);
  });

  it('errors carry the line of the field and the List item', () => {
    const text = [
      'apiVersion: v1', // 1
      'kind: List', // 2
      'items:', // 3
      '- apiVersion: v1', // 4
      '  kind: Service', // 5
      '  metadata: {name: web, namespace: shop}', // 6
      '  spec:', // 7
      '    ports:', // 8
      '    - {name: http, port: 80}', // 9
      '    - {name: dns, port: 53, protocol: UDP}', // 10
      '    internalTrafficPolicy: Local', // 11
      '',
    ].join('\n');
    const e = catchError(text, 'svc.yaml');
    expect(e.message).toBe(
      'Service shop/web: spec.internalTrafficPolicy: "Local" is not supported: podwire does not implement internalTrafficPolicy Local (sending in-cluster traffic only to endpoints on the same node); use Cluster (at svc.yaml:11, document 1, items[0])',
    );
    expect(e.line).toBe(11);
  });
});

// ------------------------------------------------------------------------------------------------
// Results, defaults, normalization
// ------------------------------------------------------------------------------------------------

const svcDefaults: Omit<ServiceObj, 'ports'> = {
  kind: 'Service',
  name: 'web',
  namespace: 'default',
  labels: {},
  annotations: {},
  type: 'ClusterIP',
  externalIPs: [],
  sessionAffinity: 'None',
  affinityTimeoutSeconds: 10800,
  externalTrafficPolicy: 'Cluster',
  internalTrafficPolicy: 'Cluster',
  lbAlgorithm: 'round-robin',
};

describe('Service: results and defaults', () => {
  it('fills every default of a minimal Service', () => {
    expect(parse1(svc())).toEqual({
      ...svcDefaults,
      selector: { app: 'web' },
      ports: [{ protocol: 'TCP', port: 80, targetPort: 80 }],
    } satisfies ServiceObj);
  });

  it('omits clusterIP, selector and externalName when unset; an empty selector is no selector', () => {
    const o = parse1(withSvc((s) => (s.spec.selector = {}))());
    expect(o).not.toHaveProperty('clusterIP');
    expect(o).not.toHaveProperty('selector');
    expect(o).not.toHaveProperty('externalName');
    expect(o).not.toHaveProperty('ports.0.name');
    expect(o).not.toHaveProperty('ports.0.nodePort');
  });

  it('reads every field of a NodePort service', () => {
    const s = withSvc((o) => {
      o.metadata = { name: 'shop', namespace: 'prod', labels: { app: 'shop' }, annotations: { 'podwire.io/lb-algorithm': 'maglev', 'example.com/owner': 'team-a' } };
      o.spec = {
        type: 'NodePort',
        clusterIP: '10.96.0.20',
        clusterIPs: ['10.96.0.20'],
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'SingleStack',
        selector: { app: 'shop', 'app.kubernetes.io/component': 'api' },
        ports: [
          { name: 'http', port: 80, targetPort: 'http', nodePort: 30080, appProtocol: 'kubernetes.io/h2c' },
          { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30053 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', targetPort: 5353, nodePort: 30053 },
          { name: 'sctp', port: 9000, protocol: 'SCTP' },
        ],
        externalIPs: ['192.168.56.100', '203.0.113.9'],
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 600 } },
        externalTrafficPolicy: 'Local',
        internalTrafficPolicy: 'Cluster',
        publishNotReadyAddresses: false,
        loadBalancerIP: '',
        loadBalancerSourceRanges: [],
        healthCheckNodePort: 0,
      };
      o.status = { loadBalancer: {} };
    })();
    expect(parse1(s)).toEqual({
      kind: 'Service',
      name: 'shop',
      namespace: 'prod',
      labels: { app: 'shop' },
      annotations: { 'podwire.io/lb-algorithm': 'maglev', 'example.com/owner': 'team-a' },
      type: 'NodePort',
      clusterIP: '10.96.0.20',
      selector: { app: 'shop', 'app.kubernetes.io/component': 'api' },
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 'http', nodePort: 30080 },
        { name: 'dns', protocol: 'UDP', port: 53, targetPort: 5353, nodePort: 30053 },
        { name: 'dns-tcp', protocol: 'TCP', port: 53, targetPort: 5353, nodePort: 30053 },
        { name: 'sctp', protocol: 'SCTP', port: 9000, targetPort: 9000 },
      ],
      externalIPs: ['192.168.56.100', '203.0.113.9'],
      sessionAffinity: 'ClientIP',
      affinityTimeoutSeconds: 600,
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Cluster',
      lbAlgorithm: 'maglev',
    } satisfies ServiceObj);
  });

  it('accepts what `kubectl get service -o yaml` prints for a ClusterIP service', () => {
    const text = `
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  uid: 6c2f8f1e-2a4b-4a51-9f7e-0b1d2c3e4f50
  resourceVersion: "297"
  creationTimestamp: "2024-05-01T10:00:00Z"
  labels: {k8s-app: kube-dns, kubernetes.io/cluster-service: "true", kubernetes.io/name: CoreDNS}
  annotations: {prometheus.io/port: "9153", prometheus.io/scrape: "true"}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  internalTrafficPolicy: Cluster
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
  - {name: metrics, port: 9153, protocol: TCP, targetPort: 9153}
  selector: {k8s-app: kube-dns}
  sessionAffinity: None
  type: ClusterIP
status:
  loadBalancer: {}
`;
    const [o] = parseManifests(text);
    expect(o).toMatchObject({ kind: 'Service', name: 'kube-dns', namespace: 'kube-system', clusterIP: '10.96.0.10', type: 'ClusterIP', selector: { 'k8s-app': 'kube-dns' } });
    expect((o as ServiceObj).ports.map((p) => `${p.name}:${p.port}/${p.protocol}->${p.targetPort}`)).toEqual(['dns:53/UDP->53', 'dns-tcp:53/TCP->53', 'metrics:9153/TCP->9153']);
  });

  it('takes clusterIP from clusterIPs when only clusterIPs is written (as the API server does)', () => {
    expect(parse1(withSvc((o) => (o.spec.clusterIPs = ['10.96.0.30']))())).toMatchObject({ clusterIP: '10.96.0.30' });
    expect(parse1(withSvc((o) => (o.spec.clusterIPs = ['None']))())).toMatchObject({ clusterIP: 'None' });
  });

  it('treats "" and 0 as unset, as Kubernetes does', () => {
    const o = parse1(
      nodePortSvc((s) => {
        s.spec.clusterIP = '';
        s.spec.externalName = '';
        s.spec.ports = [
          { name: 'a', port: 80, targetPort: 0, nodePort: 0 },
          { name: 'b', port: 81, targetPort: '' },
        ];
      })(),
    ) as ServiceObj;
    expect(o).not.toHaveProperty('clusterIP');
    expect(o).not.toHaveProperty('externalName');
    expect(o.ports).toEqual([
      { name: 'a', protocol: 'TCP', port: 80, targetPort: 80 },
      { name: 'b', protocol: 'TCP', port: 81, targetPort: 81 },
    ]);
  });

  it('a single port needs no name', () => {
    expect(parse1(withSvc((o) => (o.spec.ports = [{ port: 443, targetPort: 'https' }]))())).toMatchObject({ ports: [{ protocol: 'TCP', port: 443, targetPort: 'https' }] });
  });

  it('ClientIP without a config gets the 10800 s timeout', () => {
    expect(parse1(withSvc((o) => (o.spec.sessionAffinity = 'ClientIP'))())).toMatchObject({ sessionAffinity: 'ClientIP', affinityTimeoutSeconds: 10800 });
    expect(parse1(withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: {} }; })())).toMatchObject({ affinityTimeoutSeconds: 10800 });
    expect(parse1(withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 86400 } }; })())).toMatchObject({ affinityTimeoutSeconds: 86400 });
    expect(parse1(withSvc((o) => { o.spec.sessionAffinity = 'ClientIP'; o.spec.sessionAffinityConfig = { clientIP: { timeoutSeconds: 1 } }; })())).toMatchObject({ affinityTimeoutSeconds: 1 });
  });

  it('externalTrafficPolicy Local is allowed with externalIPs on a ClusterIP service, and on NodePort', () => {
    expect(parse1(withSvc((o) => { o.spec.externalIPs = ['192.168.56.100']; o.spec.externalTrafficPolicy = 'Local'; })())).toMatchObject({ type: 'ClusterIP', externalTrafficPolicy: 'Local', externalIPs: ['192.168.56.100'] });
    expect(parse1(nodePortSvc((o) => (o.spec.externalTrafficPolicy = 'Local'))())).toMatchObject({ type: 'NodePort', externalTrafficPolicy: 'Local' });
    expect(parse1(nodePortSvc((o) => (o.spec.externalTrafficPolicy = 'Cluster'))())).toMatchObject({ externalTrafficPolicy: 'Cluster' });
  });

  it.each(['round-robin', 'random', 'maglev'] as const)('lb-algorithm %s', (alg) => {
    expect(parse1(withSvc((o) => (o.metadata.annotations = { 'podwire.io/lb-algorithm': alg }))())).toMatchObject({ lbAlgorithm: alg });
  });

  it('reads a headless service, with or without ports', () => {
    expect(parse1(headlessSvc((o) => delete o.spec.ports)())).toEqual({ ...svcDefaults, clusterIP: 'None', selector: { app: 'web' }, ports: [] } satisfies ServiceObj);
    expect(parse1(headlessSvc()())).toMatchObject({ clusterIP: 'None', ports: [{ port: 80, targetPort: 80, protocol: 'TCP' }] });
  });

  it('reads an ExternalName service, dropping the trailing dot of a fully qualified name', () => {
    expect(parse1(extNameSvc((o) => (o.spec.externalName = 'db.example.com.'))())).toEqual({ ...svcDefaults, type: 'ExternalName', externalName: 'db.example.com', ports: [] } satisfies ServiceObj);
    expect(parse1(extNameSvc((o) => (o.spec.ports = [{ name: 'pg', port: 5432 }]))())).toMatchObject({ externalName: 'db.example.com', ports: [{ name: 'pg', port: 5432, targetPort: 5432 }] });
  });

  it('a selector-less service (endpoints from EndpointSlices)', () => {
    const o = parse1(withSvc((s) => delete s.spec.selector)());
    expect(o).toMatchObject({ kind: 'Service', ports: [{ port: 80 }] });
    expect(o).not.toHaveProperty('selector');
  });
});

describe('EndpointSlice: results and defaults', () => {
  it('fills defaults', () => {
    expect(parse1(slice())).toEqual({
      kind: 'EndpointSlice',
      name: 'web-abc12',
      namespace: 'default',
      labels: { 'kubernetes.io/service-name': 'web' },
      serviceName: 'web',
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      endpoints: [{ addresses: ['10.244.1.5'], ready: true, serving: true, terminating: false }],
    } satisfies EndpointSliceObj);
  });

  it('accepts an empty slice (no endpoints, no ports), as the controller writes for a Service without pods', () => {
    expect(parse1(withSlice((o) => { delete o.endpoints; delete o.ports; })())).toMatchObject({ endpoints: [], ports: [] });
    expect(parse1(withSlice((o) => { o.endpoints = []; o.ports = []; })())).toMatchObject({ endpoints: [], ports: [] });
  });

  it.each([
    ['unset', undefined, { ready: true, serving: true, terminating: false }],
    ['empty', {}, { ready: true, serving: true, terminating: false }],
    ['ready false: serving follows', { ready: false }, { ready: false, serving: false, terminating: false }],
    ['ready true', { ready: true }, { ready: true, serving: true, terminating: false }],
    ['terminating, still serving', { ready: false, serving: true, terminating: true }, { ready: false, serving: true, terminating: true }],
    ['terminating, no longer serving', { ready: false, serving: false, terminating: true }, { ready: false, serving: false, terminating: true }],
    ['serving false only', { serving: false }, { ready: true, serving: false, terminating: false }],
    ['terminating only', { terminating: true }, { ready: true, serving: true, terminating: true }],
  ])('conditions %s', (_n, conditions, want) => {
    const o = parse1(withSlice((s) => { if (conditions !== undefined) ep0(s).conditions = conditions; })()) as EndpointSliceObj;
    expect(o.endpoints[0]).toEqual({ addresses: ['10.244.1.5'], ...want });
  });

  it('reads what the EndpointSlice controller writes', () => {
    const text = `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-7x2kq
  namespace: shop
  generateName: web-
  labels:
    kubernetes.io/service-name: web
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
  annotations: {endpoints.kubernetes.io/last-change-trigger-time: "2024-05-01T10:00:00Z"}
  ownerReferences: [{apiVersion: v1, kind: Service, name: web, uid: 1b2c, controller: true}]
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node1
  zone: zone-a
  hostname: web-0
  targetRef: {kind: Pod, namespace: shop, name: web-0, uid: 9f8e7d6c}
- addresses: [10.244.2.9, 10.244.2.10]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: node2
  targetRef: {kind: Pod, name: web-1}
  deprecatedTopology: {topology.kubernetes.io/zone: zone-b}
ports:
- {name: http, port: 8080, protocol: TCP, appProtocol: http}
- {name: "", port: 9090, protocol: UDP}
`;
    expect(parseManifests(text)).toEqual([
      {
        kind: 'EndpointSlice',
        name: 'web-7x2kq',
        namespace: 'shop',
        labels: { 'kubernetes.io/service-name': 'web', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
        serviceName: 'web',
        addressType: 'IPv4',
        ports: [
          { name: 'http', port: 8080, protocol: 'TCP' },
          { port: 9090, protocol: 'UDP' },
        ],
        endpoints: [
          { addresses: ['10.244.1.5'], ready: true, serving: true, terminating: false, nodeName: 'node1', targetRef: { kind: 'Pod', namespace: 'shop', name: 'web-0' } },
          { addresses: ['10.244.2.9', '10.244.2.10'], ready: false, serving: true, terminating: true, nodeName: 'node2', targetRef: { kind: 'Pod', name: 'web-1' } },
        ],
      } satisfies EndpointSliceObj,
    ]);
  });
});

const ALL: LabelSelector = { matchLabels: {}, matchExpressions: [] };

describe('NetworkPolicy: results, defaults and normalization', () => {
  it('a deny-all-ingress policy', () => {
    expect(parse1(netpol())).toEqual({
      kind: 'NetworkPolicy',
      name: 'allow',
      namespace: 'default',
      labels: {},
      podSelector: ALL,
      policyTypes: ['Ingress'],
      ingress: [],
      egress: [],
    } satisfies NetworkPolicyObj);
  });

  it.each([
    ['nothing: Ingress', {}, ['Ingress']],
    ['ingress rules only: Ingress', { ingress: [{}] }, ['Ingress']],
    ['egress rules: Ingress and Egress', { egress: [{ to: [{ podSelector: {} }] }] }, ['Ingress', 'Egress']],
    ['an empty egress rule counts', { egress: [{}] }, ['Ingress', 'Egress']],
    // Kubernetes' SetDefaults_NetworkPolicy tests len(spec.Egress) != 0: an empty list is no egress section.
    ['egress: [] does not (Kubernetes defaulting)', { egress: [] }, ['Ingress']],
    ['policyTypes: [] is defaulted too', { policyTypes: [], egress: [{}] }, ['Ingress', 'Egress']],
    ['explicit Egress only', { policyTypes: ['Egress'] }, ['Egress']],
    ['explicit Egress only, with ingress rules', { policyTypes: ['Egress'], ingress: [{}] }, ['Egress']],
    ['explicit order kept', { policyTypes: ['Egress', 'Ingress'] }, ['Egress', 'Ingress']],
  ])('policyTypes: %s', (_n, spec, want) => {
    const o = parse1(withNp((p) => Object.assign(p.spec, spec))()) as NetworkPolicyObj;
    expect(o.policyTypes).toEqual(want);
  });

  it('normalizes rules, peers, selectors, ipBlocks and ports', () => {
    const text = `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop, labels: {team: a}}
spec:
  podSelector:
    matchLabels: {app: api}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    - namespaceSelector:
        matchExpressions:
        - {key: env, operator: In, values: [prod, staging]}
      podSelector:
        matchExpressions:
        - {key: canary, operator: DoesNotExist}
    - ipBlock: {cidr: 192.168.56.7/24, except: [192.168.56.128/25, 192.168.56.9/32]}
    ports:
    - port: 8080
    - {protocol: UDP, port: dns}
    - {protocol: TCP, port: 30000, endPort: 32767}
  - {}
  - from: []
    ports: []
  - from:
    - namespaceSelector: {}
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}
  - ports:
    - {protocol: SCTP}
    - {port: 53, endPort: 53}
`;
    expect(parseManifests(text)).toEqual([
      {
        kind: 'NetworkPolicy',
        name: 'api',
        namespace: 'shop',
        labels: { team: 'a' },
        podSelector: { matchLabels: { app: 'api' }, matchExpressions: [] },
        policyTypes: ['Ingress', 'Egress'],
        ingress: [
          {
            peers: [
              { podSelector: { matchLabels: { app: 'web' }, matchExpressions: [] } },
              {
                namespaceSelector: { matchLabels: {}, matchExpressions: [{ key: 'env', operator: 'In', values: ['prod', 'staging'] }] },
                podSelector: { matchLabels: {}, matchExpressions: [{ key: 'canary', operator: 'DoesNotExist', values: [] }] },
              },
              // host bits are accepted and cleared, as Kubernetes does
              { ipBlock: { cidr: '192.168.56.0/24', except: ['192.168.56.128/25', '192.168.56.9/32'] } },
            ],
            ports: [
              { protocol: 'TCP', port: 8080 },
              { protocol: 'UDP', port: 'dns' },
              { protocol: 'TCP', port: 30000, endPort: 32767 },
            ],
          },
          { peers: [], ports: [] },
          { peers: [], ports: [] },
          { peers: [{ namespaceSelector: ALL }], ports: [] },
        ],
        egress: [
          { peers: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8'] } }], ports: [] },
          { peers: [], ports: [{ protocol: 'SCTP' }, { protocol: 'TCP', port: 53, endPort: 53 }] },
        ],
      } satisfies NetworkPolicyObj,
    ]);
  });

  it('normalizes host bits in except entries too, and accepts /32 and /0', () => {
    const o = parse1(withIpBlock({ cidr: '10.1.2.3/8', except: ['10.200.1.1/16', '10.0.0.1/32'] })()) as NetworkPolicyObj;
    expect(o.ingress[0]!.peers[0]!.ipBlock).toEqual({ cidr: '10.0.0.0/8', except: ['10.200.0.0/16', '10.0.0.1/32'] });
    const all = parse1(withIpBlock({ cidr: '1.2.3.4/0', except: ['1.2.3.4/32'] })()) as NetworkPolicyObj;
    expect(all.ingress[0]!.peers[0]!.ipBlock).toEqual({ cidr: '0.0.0.0/0', except: ['1.2.3.4/32'] });
  });

  it('Exists with an explicit empty values list is fine', () => {
    const o = parse1(withExpr({ key: 'app', operator: 'Exists', values: [] })()) as NetworkPolicyObj;
    expect(o.podSelector).toEqual({ matchLabels: {}, matchExpressions: [{ key: 'app', operator: 'Exists', values: [] }] });
  });

  it('a parsed selector works with selectorMatches', () => {
    const o = parse1(withSel({ matchLabels: { app: 'web' }, matchExpressions: [{ key: 'track', operator: 'NotIn', values: ['canary'] }] })()) as NetworkPolicyObj;
    expect(selectorMatches(o.podSelector, { app: 'web' })).toBe(true);
    expect(selectorMatches(o.podSelector, { app: 'web', track: 'stable' })).toBe(true);
    expect(selectorMatches(o.podSelector, { app: 'web', track: 'canary' })).toBe(false);
    expect(selectorMatches(o.podSelector, { app: 'db' })).toBe(false);
  });
});

describe('Pod: status.podIP', () => {
  it('reads status.podIP and ignores the rest of the status', () => {
    const o = parse1(withPod((p) => (p.status = { phase: 'Running', hostIP: '192.168.56.11', podIP: '10.244.1.7', podIPs: [{ ip: '10.244.1.7' }], conditions: [{ type: 'Ready', status: 'False' }] }))());
    expect(o).toMatchObject({ kind: 'Pod', podIP: '10.244.1.7', ready: true });
  });

  it('takes podIP from podIPs when only podIPs is written', () => {
    expect(parse1(withPod((p) => (p.status = { podIPs: [{ ip: '10.244.1.8' }] }))())).toMatchObject({ podIP: '10.244.1.8' });
  });

  it('no status, an empty status, podIP "" and podIPs [] leave podIP unset', () => {
    for (const status of [undefined, {}, { podIP: '' }, { podIPs: [] }, { phase: 'Pending' }]) {
      const o = parse1(withPod((p) => { if (status !== undefined) p.status = status; })());
      expect(o).not.toHaveProperty('podIP');
    }
  });

  it('a pinned pod whose podIP is its pinned IP', () => {
    expect(parse1(withPod((p) => { p.metadata.annotations = { 'podwire.io/ip': '10.244.1.50' }; p.status = { podIP: '10.244.1.50' }; })())).toMatchObject({ pinnedIp: '10.244.1.50', podIP: '10.244.1.50' });
  });
});

// ------------------------------------------------------------------------------------------------
// selectorMatches
// ------------------------------------------------------------------------------------------------

describe('selectorMatches', () => {
  const sel = (matchLabels: Record<string, string>, ...matchExpressions: LabelSelector['matchExpressions']): LabelSelector => ({ matchLabels, matchExpressions });
  const req = (key: string, operator: LabelSelector['matchExpressions'][number]['operator'], ...values: string[]) => ({ key, operator, values });
  const web = { app: 'web', tier: 'front' };
  const db = { app: 'db' };
  const none = {};
  const empty = { app: '' };

  // [description, selector, labels, expected]
  it.each([
    ['{} matches labels', sel({}), web, true],
    ['{} matches no labels', sel({}), none, true],
    ['matchLabels equal', sel({ app: 'web' }), web, true],
    ['matchLabels different value', sel({ app: 'web' }), db, false],
    ['matchLabels key absent', sel({ app: 'web' }), none, false],
    ['matchLabels all pairs must hold', sel({ app: 'web', tier: 'back' }), web, false],
    ['matchLabels two pairs hold', sel({ app: 'web', tier: 'front' }), web, true],
    ['matchLabels empty value vs absent key', sel({ app: '' }), none, false],
    ['matchLabels empty value vs empty label', sel({ app: '' }), empty, true],
    ['In: value listed', sel({}, req('app', 'In', 'web', 'api')), web, true],
    ['In: value not listed', sel({}, req('app', 'In', 'web', 'api')), db, false],
    ['In: key absent', sel({}, req('app', 'In', 'web')), none, false],
    ['In: empty-string value listed', sel({}, req('app', 'In', '')), empty, true],
    ['NotIn: value listed', sel({}, req('app', 'NotIn', 'web')), web, false],
    ['NotIn: value not listed', sel({}, req('app', 'NotIn', 'web')), db, true],
    ['NotIn: key absent matches', sel({}, req('app', 'NotIn', 'web')), none, true],
    ['Exists: present', sel({}, req('tier', 'Exists')), web, true],
    ['Exists: present with empty value', sel({}, req('app', 'Exists')), empty, true],
    ['Exists: absent', sel({}, req('tier', 'Exists')), db, false],
    ['DoesNotExist: absent matches', sel({}, req('tier', 'DoesNotExist')), db, true],
    ['DoesNotExist: present', sel({}, req('tier', 'DoesNotExist')), web, false],
    ['DoesNotExist: present with empty value', sel({}, req('app', 'DoesNotExist')), empty, false],
    ['AND: labels and expression both hold', sel({ app: 'web' }, req('tier', 'In', 'front')), web, true],
    ['AND: labels hold, expression fails', sel({ app: 'web' }, req('tier', 'NotIn', 'front')), web, false],
    ['AND: expression holds, labels fail', sel({ app: 'db' }, req('tier', 'Exists')), web, false],
    ['AND: every expression must hold', sel({}, req('app', 'Exists'), req('tier', 'DoesNotExist')), web, false],
    ['AND: two expressions hold', sel({}, req('app', 'In', 'db'), req('tier', 'DoesNotExist')), db, true],
    ['inherited properties are not labels (Exists)', sel({}, req('toString', 'Exists')), none, false],
    ['inherited properties are not labels (DoesNotExist)', sel({}, req('constructor', 'DoesNotExist')), none, true],
    ['inherited properties are not labels (matchLabels)', sel({ constructor: 'x' }), none, false],
    ['a label named __proto__', sel({}, req('__proto__', 'In', 'x')), JSON.parse('{"__proto__": "x"}') as Record<string, string>, true],
  ] as Array<[string, LabelSelector, Record<string, string>, boolean]>)('%s', (_n, s, labels, want) => {
    expect(selectorMatches(s, labels)).toBe(want);
  });
});
