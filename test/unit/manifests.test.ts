/**
 * Manifest parsing: every validation rule has a row in a table below, checked by the exact object
 * ref, field path and message text the user would see.
 */
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { ManifestError, objectKey, parseManifests, type ManifestObj } from '../../src/control/manifests.ts';

// Test fixtures are mutated freely, so they are loosely typed on purpose.
type Obj = Record<string, any>;

const pod = (): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'web', namespace: 'default' },
  spec: {
    containers: [{ name: 'app', image: 'nginx:1.27', ports: [{ containerPort: 80, name: 'http' }] }],
  },
});

const node = (): Obj => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name: 'node1' },
  spec: { podCIDR: '10.244.1.0/24' },
  status: { addresses: [{ type: 'Hostname', address: 'node1' }, { type: 'InternalIP', address: '192.168.56.11' }] },
});

const ns = (): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'prod' } });

const yamlOf = (...objs: unknown[]): string => objs.map((o) => stringify(o)).join('---\n');

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
  expect(e.message.slice(0, expected.length)).toBe(expected); // the message starts with exactly this
  return e;
}

interface Case {
  name: string;
  make: () => Obj | unknown;
  ref: string;
  field: string;
  reason: string;
}

function withPod(f: (p: Obj) => void): () => Obj {
  return () => {
    const p = pod();
    f(p);
    return p;
  };
}
function withNode(f: (n: Obj) => void): () => Obj {
  return () => {
    const n = node();
    f(n);
    return n;
  };
}
function withNs(f: (n: Obj) => void): () => Obj {
  return () => {
    const n = ns();
    f(n);
    return n;
  };
}
const port0 = (p: Obj): Obj => p.spec.containers[0].ports[0];
const P = 'Pod default/web';
const PORT = 'spec.containers[0].ports[0]';

const documentCases: Case[] = [
  { name: 'a scalar document', make: () => 'hello', ref: 'document 1', field: '', reason: 'expected a Kubernetes object (a mapping with apiVersion, kind and metadata), got the string "hello"' },
  { name: 'a sequence document', make: () => [pod()], ref: 'document 1', field: '', reason: 'expected a Kubernetes object (a mapping with apiVersion, kind and metadata), got a sequence' },
  { name: 'missing kind', make: withPod((p) => delete p.kind), ref: 'object default/web', field: 'kind', reason: 'required; supported kinds: Namespace, Pod, Node, Service, EndpointSlice, NetworkPolicy (and List)' },
  { name: 'non-string kind', make: withPod((p) => (p.kind = 5)), ref: 'object default/web', field: 'kind', reason: 'must be a non-empty string, got number 5' },
  { name: 'unsupported kind', make: () => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } }), ref: 'Deployment web', field: 'kind', reason: '"Deployment" is not supported; supported kinds: Namespace, Pod, Node, Service, EndpointSlice, NetworkPolicy (and List)' },
  { name: 'unsupported namespaced kind', make: () => ({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'web', namespace: 'prod' } }), ref: 'Ingress prod/web', field: 'kind', reason: '"Ingress" is not supported' },
  { name: 'prototype key as kind', make: () => ({ apiVersion: 'v1', kind: 'constructor', metadata: { name: 'x' } }), ref: 'constructor x', field: 'kind', reason: '"constructor" is not supported' },
  { name: 'missing apiVersion', make: withPod((p) => delete p.apiVersion), ref: P, field: 'apiVersion', reason: 'required; Pod is v1' },
  { name: 'wrong apiVersion', make: withPod((p) => (p.apiVersion = 'apps/v1')), ref: P, field: 'apiVersion', reason: '"apps/v1" is not supported for Pod; use v1' },
  { name: 'wrong apiVersion on a Node', make: withNode((n) => (n.apiVersion = 'v2')), ref: 'Node node1', field: 'apiVersion', reason: '"v2" is not supported for Node; use v1' },
  { name: 'null metadata (null means unset)', make: withPod((p) => (p.metadata = null)), ref: 'Pod default/<unnamed>', field: 'metadata', reason: 'required' },
  { name: 'missing metadata', make: withPod((p) => delete p.metadata), ref: 'Pod default/<unnamed>', field: 'metadata', reason: 'required' },
  { name: 'metadata not a mapping', make: withPod((p) => (p.metadata = ['web'])), ref: 'Pod default/<unnamed>', field: 'metadata', reason: 'must be a mapping, got a sequence' },
];

const metadataCases: Case[] = [
  { name: 'missing name', make: withPod((p) => delete p.metadata.name), ref: 'Pod default/<unnamed>', field: 'metadata.name', reason: 'required' },
  { name: 'generateName', make: withPod((p) => { delete p.metadata.name; p.metadata.generateName = 'web-'; }), ref: 'Pod default/<unnamed>', field: 'metadata.name', reason: 'required (podwire does not generate names; metadata.generateName is not supported)' },
  { name: 'non-string name', make: withPod((p) => (p.metadata.name = 42)), ref: 'Pod default/<unnamed>', field: 'metadata.name', reason: 'must be a string, got number 42' },
  { name: 'empty name', make: withPod((p) => (p.metadata.name = '')), ref: 'Pod default/<unnamed>', field: 'metadata.name', reason: '"" must not be empty' },
  { name: 'upper-case pod name', make: withPod((p) => (p.metadata.name = 'Web')), ref: 'Pod default/Web', field: 'metadata.name', reason: '"Web" is not a valid DNS-1123 subdomain: must consist of lower case alphanumeric characters' },
  { name: 'underscore in pod name', make: withPod((p) => (p.metadata.name = 'web_1')), ref: 'Pod default/web_1', field: 'metadata.name', reason: '"web_1" is not a valid DNS-1123 subdomain' },
  { name: 'pod name ending in a dash', make: withPod((p) => (p.metadata.name = 'web-')), ref: 'Pod default/web-', field: 'metadata.name', reason: '"web-" is not a valid DNS-1123 subdomain: must consist of lower case alphanumeric characters, \'-\' or \'.\', and must start and end with an alphanumeric character' },
  { name: 'pod name over 253', make: withPod((p) => (p.metadata.name = 'a'.repeat(254))), ref: `Pod default/${'a'.repeat(254)}`, field: 'metadata.name', reason: `"${'a'.repeat(254)}" is not a valid DNS-1123 subdomain: must be no more than 253 characters (has 254)` },
  { name: 'namespace name with a dot', make: withNs((n) => (n.metadata.name = 'prod.eu')), ref: 'Namespace prod.eu', field: 'metadata.name', reason: '"prod.eu" is not a valid DNS-1123 label' },
  { name: 'namespace name over 63', make: withNs((n) => (n.metadata.name = 'a'.repeat(64))), ref: `Namespace ${'a'.repeat(64)}`, field: 'metadata.name', reason: `"${'a'.repeat(64)}" is not a valid DNS-1123 label: must be no more than 63 characters (has 64)` },
  { name: 'node name upper-case', make: withNode((n) => (n.metadata.name = 'Node1')), ref: 'Node Node1', field: 'metadata.name', reason: '"Node1" is not a valid DNS-1123 subdomain' },
  { name: 'invalid pod namespace', make: withPod((p) => (p.metadata.namespace = 'kube.system')), ref: 'Pod kube.system/web', field: 'metadata.namespace', reason: '"kube.system" is not a valid DNS-1123 label' },
  { name: 'non-string namespace', make: withPod((p) => (p.metadata.namespace = 7)), ref: P, field: 'metadata.namespace', reason: 'must be a string, got number 7' },
  { name: 'namespace on a Node', make: withNode((n) => (n.metadata.namespace = 'default')), ref: 'Node node1', field: 'metadata.namespace', reason: 'must not be set: Node is cluster-scoped' },
  { name: 'namespace on a Namespace', make: withNs((n) => (n.metadata.namespace = 'default')), ref: 'Namespace prod', field: 'metadata.namespace', reason: 'must not be set: Namespace is cluster-scoped' },
  { name: 'empty uid', make: withPod((p) => (p.metadata.uid = '')), ref: P, field: 'metadata.uid', reason: 'must be a non-empty string, got the string ""' },
  { name: 'labels not a mapping', make: withPod((p) => (p.metadata.labels = ['app=web'])), ref: P, field: 'metadata.labels', reason: 'must be a mapping of strings, got a sequence' },
  { name: 'label value a number', make: withPod((p) => (p.metadata.labels = { tier: 1 })), ref: P, field: 'metadata.labels.tier', reason: 'must be a string, got number 1 (quote it: "1")' },
  { name: 'label key with a space', make: withPod((p) => (p.metadata.labels = { 'my app': 'web' })), ref: P, field: 'metadata.labels', reason: 'key "my app" is not a valid label key: name part must consist of alphanumeric characters' },
  { name: 'label key name over 63', make: withPod((p) => (p.metadata.labels = { ['k'.repeat(64)]: 'v' })), ref: P, field: 'metadata.labels', reason: `key "${'k'.repeat(64)}" is not a valid label key: name part must be no more than 63 characters (has 64)` },
  { name: 'label key upper-case prefix', make: withPod((p) => (p.metadata.labels = { 'Example.com/app': 'web' })), ref: P, field: 'metadata.labels', reason: 'key "Example.com/app" is not a valid label key: prefix part is not a valid DNS-1123 subdomain' },
  { name: 'label key empty prefix', make: withPod((p) => (p.metadata.labels = { '/app': 'web' })), ref: P, field: 'metadata.labels', reason: 'key "/app" is not a valid label key: prefix part must not be empty' },
  { name: 'label key empty name', make: withPod((p) => (p.metadata.labels = { 'example.com/': 'web' })), ref: P, field: 'metadata.labels', reason: 'key "example.com/" is not a valid label key: name part must not be empty' },
  { name: 'label key two slashes', make: withPod((p) => (p.metadata.labels = { 'a/b/c': 'web' })), ref: P, field: 'metadata.labels', reason: 'key "a/b/c" is not a valid label key: must be a name with an optional DNS subdomain prefix and one \'/\' (e.g. \'example.com/my-name\')' },
  { name: 'label key __proto__', make: withPod((p) => (p.metadata.labels = JSON.parse('{"__proto__": "x"}'))), ref: P, field: 'metadata.labels', reason: 'key "__proto__" is not a valid label key' },
  { name: 'label value with a space', make: withPod((p) => (p.metadata.labels = { app: 'my web' })), ref: P, field: 'metadata.labels.app', reason: '"my web" is not a valid label value: must be empty or consist of alphanumeric characters' },
  { name: 'label value over 63', make: withPod((p) => (p.metadata.labels = { app: 'v'.repeat(64) })), ref: P, field: 'metadata.labels.app', reason: `"${'v'.repeat(64)}" is not a valid label value: must be no more than 63 characters (has 64)` },
  { name: 'label value ending in a dot', make: withPod((p) => (p.metadata.labels = { 'app.kubernetes.io/name': 'web.' })), ref: P, field: 'metadata.labels[app.kubernetes.io/name]', reason: '"web." is not a valid label value' },
  { name: 'namespace label', make: withNs((n) => (n.metadata.labels = { env: '-x' })), ref: 'Namespace prod', field: 'metadata.labels.env', reason: '"-x" is not a valid label value' },
  { name: 'annotations not a mapping', make: withPod((p) => (p.metadata.annotations = 'x')), ref: P, field: 'metadata.annotations', reason: 'must be a mapping of strings, got the string "x"' },
  { name: 'annotation key invalid', make: withPod((p) => (p.metadata.annotations = { 'bad key': 'x' })), ref: P, field: 'metadata.annotations', reason: 'key "bad key" is not a valid annotation key' },
  { name: 'annotation value a boolean', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ready': false })), ref: P, field: 'metadata.annotations[podwire.io/ready]', reason: 'must be a string, got boolean false (quote it: "false")' },
  { name: 'unknown podwire annotation on a Pod', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/pinned-ip': '10.244.1.9' })), ref: P, field: 'metadata.annotations[podwire.io/pinned-ip]', reason: 'unknown podwire annotation on a Pod (known: podwire.io/ip, podwire.io/ready)' },
  { name: 'node annotation on a Pod', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/overlay': 'kernel' })), ref: P, field: 'metadata.annotations[podwire.io/overlay]', reason: 'unknown podwire annotation on a Pod' },
  { name: 'podwire annotation on a Namespace', make: withNs((n) => (n.metadata.annotations = { 'podwire.io/ip': '1.2.3.4' })), ref: 'Namespace prod', field: 'metadata.annotations[podwire.io/ip]', reason: 'unknown podwire annotation on a Namespace (known: none)' },
];

const podCases: Case[] = [
  { name: 'missing spec', make: withPod((p) => delete p.spec), ref: P, field: 'spec', reason: 'required (a Pod needs spec.containers)' },
  { name: 'spec not a mapping', make: withPod((p) => (p.spec = 'x')), ref: P, field: 'spec', reason: 'must be a mapping, got the string "x"' },
  { name: 'hostNetwork true', make: withPod((p) => (p.spec.hostNetwork = true)), ref: P, field: 'spec.hostNetwork', reason: 'true is not supported: every podwire pod has its own network namespace' },
  { name: 'hostNetwork not a boolean', make: withPod((p) => (p.spec.hostNetwork = 'yes')), ref: P, field: 'spec.hostNetwork', reason: 'must be a boolean, got the string "yes"' },
  { name: 'invalid nodeName', make: withPod((p) => (p.spec.nodeName = 'Node_1')), ref: P, field: 'spec.nodeName', reason: '"Node_1" is not a valid DNS-1123 subdomain' },
  { name: 'non-string nodeName', make: withPod((p) => (p.spec.nodeName = 1)), ref: P, field: 'spec.nodeName', reason: 'must be a string, got number 1' },
  { name: 'initContainers not a sequence', make: withPod((p) => (p.spec.initContainers = {})), ref: P, field: 'spec.initContainers', reason: 'must be a sequence, got a mapping' },
  { name: 'ports on an init container', make: withPod((p) => (p.spec.initContainers = [{ name: 'init' }, { name: 'proxy', restartPolicy: 'Always', ports: [{ containerPort: 15001 }] }])), ref: P, field: 'spec.initContainers[1].ports', reason: 'ports on init containers are not supported by podwire; declare them on spec.containers' },
  { name: 'missing containers', make: withPod((p) => delete p.spec.containers), ref: P, field: 'spec.containers', reason: 'required (at least one container)' },
  { name: 'containers not a sequence', make: withPod((p) => (p.spec.containers = { name: 'app' })), ref: P, field: 'spec.containers', reason: 'must be a sequence, got a mapping' },
  { name: 'no containers', make: withPod((p) => (p.spec.containers = [])), ref: P, field: 'spec.containers', reason: 'must have at least one container' },
  { name: 'container not a mapping', make: withPod((p) => (p.spec.containers = ['nginx'])), ref: P, field: 'spec.containers[0]', reason: 'must be a mapping, got the string "nginx"' },
  { name: 'container without a name', make: withPod((p) => delete p.spec.containers[0].name), ref: P, field: 'spec.containers[0].name', reason: 'required' },
  { name: 'container name not a string', make: withPod((p) => (p.spec.containers[0].name = true)), ref: P, field: 'spec.containers[0].name', reason: 'must be a string, got boolean true' },
  { name: 'container name invalid', make: withPod((p) => (p.spec.containers[0].name = 'App')), ref: P, field: 'spec.containers[0].name', reason: '"App" is not a valid DNS-1123 label' },
  { name: 'duplicate container name', make: withPod((p) => p.spec.containers.push({ name: 'app' })), ref: P, field: 'spec.containers[1].name', reason: 'duplicate container name "app" (also spec.containers[0].name)' },
  { name: 'ports not a sequence', make: withPod((p) => (p.spec.containers[0].ports = 80)), ref: P, field: 'spec.containers[0].ports', reason: 'must be a sequence, got number 80' },
  { name: 'port not a mapping', make: withPod((p) => (p.spec.containers[0].ports = [80])), ref: P, field: PORT, reason: 'must be a mapping, got number 80' },
  { name: 'hostPort', make: withPod((p) => (port0(p).hostPort = 8080)), ref: P, field: `${PORT}.hostPort`, reason: 'host ports are not supported by podwire (use a Service instead)' },
  { name: 'hostPort zero is still rejected', make: withPod((p) => (port0(p).hostPort = 0)), ref: P, field: `${PORT}.hostPort`, reason: 'host ports are not supported by podwire' },
  { name: 'hostIP', make: withPod((p) => (port0(p).hostIP = '0.0.0.0')), ref: P, field: `${PORT}.hostIP`, reason: 'host IPs are not supported by podwire (host ports are not implemented)' },
  { name: 'unknown port field', make: withPod((p) => (port0(p).containerport = 80)), ref: P, field: `${PORT}.containerport`, reason: 'unknown field (a container port has name, containerPort, protocol)' },
  { name: 'missing containerPort', make: withPod((p) => (p.spec.containers[0].ports = [{ name: 'http' }])), ref: P, field: `${PORT}.containerPort`, reason: 'required' },
  { name: 'containerPort a string', make: withPod((p) => (port0(p).containerPort = '80')), ref: P, field: `${PORT}.containerPort`, reason: 'must be an integer, got the string "80"' },
  { name: 'containerPort fractional', make: withPod((p) => (port0(p).containerPort = 80.5)), ref: P, field: `${PORT}.containerPort`, reason: 'must be an integer, got number 80.5' },
  { name: 'containerPort zero', make: withPod((p) => (port0(p).containerPort = 0)), ref: P, field: `${PORT}.containerPort`, reason: '0 is out of range 1-65535' },
  { name: 'containerPort too big', make: withPod((p) => (port0(p).containerPort = 65536)), ref: P, field: `${PORT}.containerPort`, reason: '65536 is out of range 1-65535' },
  { name: 'protocol ICMP', make: withPod((p) => (port0(p).protocol = 'ICMP')), ref: P, field: `${PORT}.protocol`, reason: '"ICMP" is not one of TCP, UDP, SCTP' },
  { name: 'protocol lower-case', make: withPod((p) => (port0(p).protocol = 'udp')), ref: P, field: `${PORT}.protocol`, reason: '"udp" is not one of TCP, UDP, SCTP' },
  { name: 'protocol not a string', make: withPod((p) => (port0(p).protocol = 17)), ref: P, field: `${PORT}.protocol`, reason: 'must be a string, one of TCP, UDP, SCTP; got number 17' },
  { name: 'port name not a string', make: withPod((p) => (port0(p).name = 80)), ref: P, field: `${PORT}.name`, reason: 'must be a string, got number 80' },
  { name: 'port name empty', make: withPod((p) => (port0(p).name = '')), ref: P, field: `${PORT}.name`, reason: '"" is not a valid port name: must not be empty' },
  { name: 'port name over 15', make: withPod((p) => (port0(p).name = 'a'.repeat(16))), ref: P, field: `${PORT}.name`, reason: '"aaaaaaaaaaaaaaaa" is not a valid port name: must be no more than 15 characters (has 16)' },
  { name: 'port name upper-case', make: withPod((p) => (port0(p).name = 'HTTP')), ref: P, field: `${PORT}.name`, reason: '"HTTP" is not a valid port name: must contain only lower case alphanumeric characters or \'-\'' },
  { name: 'port name with a dot', make: withPod((p) => (port0(p).name = 'h.1')), ref: P, field: `${PORT}.name`, reason: '"h.1" is not a valid port name: must contain only lower case alphanumeric characters or \'-\'' },
  { name: 'port name without a letter', make: withPod((p) => (port0(p).name = '8080')), ref: P, field: `${PORT}.name`, reason: '"8080" is not a valid port name: must contain at least one letter' },
  { name: 'port name leading dash', make: withPod((p) => (port0(p).name = '-http')), ref: P, field: `${PORT}.name`, reason: "\"-http\" is not a valid port name: must not begin or end with '-'" },
  { name: 'port name trailing dash', make: withPod((p) => (port0(p).name = 'http-')), ref: P, field: `${PORT}.name`, reason: "\"http-\" is not a valid port name: must not begin or end with '-'" },
  { name: 'port name double dash', make: withPod((p) => (port0(p).name = 'http--alt')), ref: P, field: `${PORT}.name`, reason: "\"http--alt\" is not a valid port name: must not contain consecutive '-'" },
  { name: 'duplicate port name across containers', make: withPod((p) => p.spec.containers.push({ name: 'side', ports: [{ containerPort: 81, name: 'http' }] })), ref: P, field: 'spec.containers[1].ports[0].name', reason: 'duplicate port name "http" (also spec.containers[0].ports[0].name)' },
  { name: 'duplicate port/protocol (default TCP)', make: withPod((p) => p.spec.containers[0].ports.push({ containerPort: 80, protocol: 'TCP' })), ref: P, field: 'spec.containers[0].ports[1].containerPort', reason: 'duplicate port 80/TCP (also spec.containers[0].ports[0])' },
  { name: 'duplicate port/protocol across containers', make: withPod((p) => p.spec.containers.push({ name: 'side', ports: [{ containerPort: 80 }] })), ref: P, field: 'spec.containers[1].ports[0].containerPort', reason: 'duplicate port 80/TCP (also spec.containers[0].ports[0])' },
  { name: 'pinned IP not an address', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '10.244.1' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"10.244.1" is not a valid IPv4 address (expected four decimal octets like 10.244.1.5)' },
  { name: 'pinned IP with leading zero', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '10.244.1.05' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"10.244.1.05" is not a valid IPv4 address' },
  { name: 'pinned IP IPv6', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': 'fd00::5' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"fd00::5" is not a valid IPv4 address' },
  { name: 'pinned IP out of range octet', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '10.244.1.256' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"10.244.1.256" is not a valid IPv4 address' },
  { name: 'pinned IP multicast', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '224.0.0.5' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"224.0.0.5" is a multicast address, not a host address' },
  { name: 'pinned IP loopback', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '127.0.0.2' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"127.0.0.2" is a loopback address, not a host address' },
  { name: 'pinned IP unspecified', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '0.0.0.0' })), ref: P, field: 'metadata.annotations[podwire.io/ip]', reason: '"0.0.0.0" is a unspecified address, not a host address' },
  { name: 'ready not true/false', make: withPod((p) => (p.metadata.annotations = { 'podwire.io/ready': 'no' })), ref: P, field: 'metadata.annotations[podwire.io/ready]', reason: '"no" must be "true" or "false"' },
];

const N = 'Node node1';
const nodeCases: Case[] = [
  { name: 'missing spec', make: withNode((n) => delete n.spec), ref: N, field: 'spec', reason: 'required (a Node needs spec.podCIDR)' },
  { name: 'spec not a mapping', make: withNode((n) => (n.spec = [])), ref: N, field: 'spec', reason: 'must be a mapping, got a sequence' },
  { name: 'missing podCIDR', make: withNode((n) => (n.spec = {})), ref: N, field: 'spec.podCIDR', reason: 'required (the IPv4 block this node gives its pods)' },
  { name: 'podCIDR not a string', make: withNode((n) => (n.spec.podCIDR = 24)), ref: N, field: 'spec.podCIDR', reason: 'must be a string, got number 24' },
  { name: 'podCIDR without prefix', make: withNode((n) => (n.spec.podCIDR = '10.244.1.0')), ref: N, field: 'spec.podCIDR', reason: '"10.244.1.0" is not a valid IPv4 CIDR (expected e.g. 10.244.1.0/24)' },
  { name: 'podCIDR bad address', make: withNode((n) => (n.spec.podCIDR = '10.244.300.0/24')), ref: N, field: 'spec.podCIDR', reason: '"10.244.300.0/24" is not a valid IPv4 CIDR' },
  { name: 'podCIDR IPv6', make: withNode((n) => (n.spec.podCIDR = 'fd00:10:244:1::/64')), ref: N, field: 'spec.podCIDR', reason: '"fd00:10:244:1::/64" is not a valid IPv4 CIDR' },
  { name: 'podCIDR prefix with leading zero', make: withNode((n) => (n.spec.podCIDR = '10.244.1.0/024')), ref: N, field: 'spec.podCIDR', reason: '"10.244.1.0/024" is not a valid IPv4 CIDR' },
  { name: 'podCIDR /31', make: withNode((n) => (n.spec.podCIDR = '10.244.1.0/31')), ref: N, field: 'spec.podCIDR', reason: '"10.244.1.0/31" prefix length /31 is out of range: podwire supports /8 to /30' },
  { name: 'podCIDR /7', make: withNode((n) => (n.spec.podCIDR = '10.0.0.0/7')), ref: N, field: 'spec.podCIDR', reason: '"10.0.0.0/7" prefix length /7 is out of range: podwire supports /8 to /30' },
  { name: 'podCIDR host bits', make: withNode((n) => (n.spec.podCIDR = '10.244.1.1/24')), ref: N, field: 'spec.podCIDR', reason: '"10.244.1.1/24" has host bits set (did you mean 10.244.1.0/24?)' },
  { name: 'podCIDRs dual-stack', make: withNode((n) => (n.spec.podCIDRs = ['10.244.1.0/24', 'fd00::/64'])), ref: N, field: 'spec.podCIDRs', reason: 'has 2 entries; podwire is single-stack IPv4 and uses exactly one pod CIDR' },
  { name: 'podCIDRs disagrees', make: withNode((n) => (n.spec.podCIDRs = ['10.244.2.0/24'])), ref: N, field: 'spec.podCIDRs[0]', reason: '"10.244.2.0/24" must equal spec.podCIDR (10.244.1.0/24)' },
  { name: 'podCIDRs not a sequence', make: withNode((n) => (n.spec.podCIDRs = '10.244.1.0/24')), ref: N, field: 'spec.podCIDRs', reason: 'must be a sequence' },
  { name: 'missing status', make: withNode((n) => delete n.status), ref: N, field: 'status', reason: 'required (a Node needs status.addresses with an InternalIP)' },
  { name: 'missing addresses', make: withNode((n) => (n.status = {})), ref: N, field: 'status.addresses', reason: 'required (with one entry of type InternalIP)' },
  { name: 'addresses not a sequence', make: withNode((n) => (n.status.addresses = { InternalIP: '1.2.3.4' })), ref: N, field: 'status.addresses', reason: 'must be a sequence, got a mapping' },
  { name: 'address entry not a mapping', make: withNode((n) => (n.status.addresses = ['192.168.56.11'])), ref: N, field: 'status.addresses[0]', reason: 'must be a mapping with type and address' },
  { name: 'address without type', make: withNode((n) => (n.status.addresses = [{ address: '192.168.56.11' }])), ref: N, field: 'status.addresses[0].type', reason: 'must be a non-empty string, got nothing' },
  { name: 'address not a string', make: withNode((n) => (n.status.addresses = [{ type: 'InternalIP', address: 1 }])), ref: N, field: 'status.addresses[0].address', reason: 'must be a string, got number 1' },
  { name: 'no InternalIP', make: withNode((n) => (n.status.addresses = [{ type: 'Hostname', address: 'node1' }])), ref: N, field: 'status.addresses', reason: 'has no entry of type InternalIP' },
  { name: 'InternalIP invalid', make: withNode((n) => (n.status.addresses[1].address = '192.168.56')), ref: N, field: 'status.addresses[1].address', reason: '"192.168.56" is not a valid IPv4 address' },
  { name: 'InternalIP IPv6', make: withNode((n) => (n.status.addresses[1].address = 'fd00::11')), ref: N, field: 'status.addresses[1].address', reason: '"fd00::11" is not a valid IPv4 address' },
  { name: 'InternalIP broadcast', make: withNode((n) => (n.status.addresses[1].address = '255.255.255.255')), ref: N, field: 'status.addresses[1].address', reason: '"255.255.255.255" is a broadcast address, not a host address' },
  { name: 'two InternalIPs', make: withNode((n) => n.status.addresses.push({ type: 'InternalIP', address: '192.168.56.12' })), ref: N, field: 'status.addresses[2]', reason: 'a second InternalIP (192.168.56.12); podwire needs exactly one' },
  { name: 'vtep MAC malformed', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/vtep-mac': '0a:58:0a:f4:01' })), ref: N, field: 'metadata.annotations[podwire.io/vtep-mac]', reason: '"0a:58:0a:f4:01" is not a valid MAC address' },
  { name: 'vtep MAC with dashes', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/vtep-mac': '0a-58-0a-f4-01-01' })), ref: N, field: 'metadata.annotations[podwire.io/vtep-mac]', reason: '"0a-58-0a-f4-01-01" is not a valid MAC address' },
  { name: 'vtep MAC multicast', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/vtep-mac': '01:00:5e:00:00:01' })), ref: N, field: 'metadata.annotations[podwire.io/vtep-mac]', reason: '"01:00:5e:00:00:01" is a multicast MAC address (the I/G bit of the first octet is set); a VTEP needs a unicast MAC' },
  { name: 'vtep MAC broadcast', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/vtep-mac': 'ff:ff:ff:ff:ff:ff' })), ref: N, field: 'metadata.annotations[podwire.io/vtep-mac]', reason: '"ff:ff:ff:ff:ff:ff" is a multicast MAC address' },
  { name: 'vtep MAC all zeros', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/vtep-mac': '00:00:00:00:00:00' })), ref: N, field: 'metadata.annotations[podwire.io/vtep-mac]', reason: '"00:00:00:00:00:00" is the all-zeros MAC address' },
  { name: 'flannel backend-data not JSON', make: withNode((n) => (n.metadata.annotations = { 'flannel.alpha.coreos.com/backend-data': '{VtepMAC: x}' })), ref: N, field: 'metadata.annotations[flannel.alpha.coreos.com/backend-data]', reason: 'is not valid JSON' },
  { name: 'flannel backend-data not an object', make: withNode((n) => (n.metadata.annotations = { 'flannel.alpha.coreos.com/backend-data': '[1]' })), ref: N, field: 'metadata.annotations[flannel.alpha.coreos.com/backend-data]', reason: 'must be a JSON object like {"VNI":1,"VtepMAC":"..."}, got a sequence' },
  { name: 'flannel VtepMAC invalid', make: withNode((n) => (n.metadata.annotations = { 'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"zz:58:0a:f4:01:01"}' })), ref: N, field: 'metadata.annotations[flannel.alpha.coreos.com/backend-data]', reason: 'VtepMAC "zz:58:0a:f4:01:01" is not a valid MAC address' },
  { name: 'flannel VtepMAC not a string', make: withNode((n) => (n.metadata.annotations = { 'flannel.alpha.coreos.com/backend-data': '{"VtepMAC":5}' })), ref: N, field: 'metadata.annotations[flannel.alpha.coreos.com/backend-data]', reason: 'VtepMAC must be a string, got number 5' },
  { name: 'flannel and podwire MACs disagree', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/vtep-mac': '0a:58:0a:f4:01:01', 'flannel.alpha.coreos.com/backend-data': '{"VtepMAC":"0a:58:0a:f4:01:02"}' })), ref: N, field: 'metadata.annotations[podwire.io/vtep-mac]', reason: '0a:58:0a:f4:01:01 disagrees with VtepMAC 0a:58:0a:f4:01:02 in flannel.alpha.coreos.com/backend-data' },
  { name: 'overlay unknown', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/overlay': 'flannel' })), ref: N, field: 'metadata.annotations[podwire.io/overlay]', reason: '"flannel" is not one of podwire, kernel' },
  { name: 'pod annotation on a Node', make: withNode((n) => (n.metadata.annotations = { 'podwire.io/ip': '10.0.0.1' })), ref: N, field: 'metadata.annotations[podwire.io/ip]', reason: 'unknown podwire annotation on a Node (known: podwire.io/vtep-mac, podwire.io/overlay)' },
];

describe('parseManifests: validation', () => {
  for (const [group, cases] of [
    ['document', documentCases],
    ['metadata', metadataCases],
    ['Pod', podCases],
    ['Node', nodeCases],
  ] as const) {
    describe(group, () => {
      it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
        expectError(yamlOf(c.make()), c.ref, c.field, c.reason);
      });
    });
  }

  it('the table is sane: every base object parses', () => {
    expect(parseManifests(yamlOf(pod(), node(), ns()))).toHaveLength(3);
  });
});

describe('parseManifests: errors carry their location', () => {
  const text = [
    'apiVersion: v1', //  1
    'kind: Pod', //  2
    'metadata: {name: ok}', //  3
    'spec: {containers: [{name: app}]}', //  4
    '---', //  5
    'apiVersion: v1', //  6
    'kind: Pod', //  7
    'metadata:', //  8
    '  name: web', //  9
    'spec:', // 10
    '  containers:', // 11
    '  - name: app', // 12
    '    image: nginx', // 13
    '    ports:', // 14
    '    - containerPort: 80', // 15
    '    - containerPort: 53', // 16
    '      protocol: ICMP', // 17
    '',
  ].join('\n');

  it('names object, field, file, line and document exactly', () => {
    const e = catchError(text, 'pods.yaml');
    expect(e.message).toBe(
      'Pod default/web: spec.containers[0].ports[1].protocol: "ICMP" is not one of TCP, UDP, SCTP (at pods.yaml:17, document 2)',
    );
    expect(e).toMatchObject({
      name: 'ManifestError',
      objectRef: 'Pod default/web',
      field: 'spec.containers[0].ports[1].protocol',
      reason: '"ICMP" is not one of TCP, UDP, SCTP',
      source: 'pods.yaml',
      document: 2,
      line: 17,
      item: undefined,
    });
  });

  it('without a source, says line and document', () => {
    expect(catchError(text).message).toMatch(/ \(at line 17, document 2\)$/);
  });

  it('a missing field points at the nearest enclosing line', () => {
    const e = catchError('apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    ports:\n    - name: http\n');
    expect(e.field).toBe('spec.containers[0].ports[0].containerPort');
    expect(e.line).toBe(9);
  });

  it('a bad label key points at the key', () => {
    const e = catchError('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels:\n    ok: "1"\n    "bad key": x\n');
    expect(e.field).toBe('metadata.labels');
    expect(e.line).toBe(7);
  });

  it('YAML syntax errors name the source and line', () => {
    const e = catchError(`${stringify(ns())}---\nmetadata:\n  name: [web\n`, 'bad.yaml');
    expect(e.objectRef).toBe('document 2');
    expect(e.field).toBe('');
    expect(e.message).toMatch(/^document 2: YAML syntax error: .+ \(at bad\.yaml:\d+\)$/);
    expect(e.line).toBeGreaterThanOrEqual(5);
  });

  it('duplicate keys in a mapping are YAML errors', () => {
    const e = catchError('apiVersion: v1\nkind: Pod\nkind: Node\n', 'dup.yaml');
    expect(e.message).toBe('document 1: YAML syntax error: Map keys must be unique (at dup.yaml:3)');
  });

  it('items of a List report their index', () => {
    const list = { apiVersion: 'v1', kind: 'List', items: [ns(), withPod((p) => (port0(p).protocol = 'ICMP'))()] };
    const e = catchError(stringify(list), 'list.yaml');
    expect(e.objectRef).toBe('Pod default/web');
    expect(e.field).toBe('spec.containers[0].ports[0].protocol');
    expect(e.item).toBe(1);
    expect(e.message).toMatch(/\(at list\.yaml:\d+, document 1, items\[1\]\)$/);
  });
});

describe('parseManifests: List', () => {
  it('returns the items in order', () => {
    const objs = parseManifests(stringify({ apiVersion: 'v1', kind: 'List', items: [ns(), node(), pod()] }));
    expect(objs.map(objectKey)).toEqual(['Namespace/prod', 'Node/node1', 'Pod/default/web']);
  });

  it('mixes with plain documents', () => {
    const objs = parseManifests(yamlOf({ apiVersion: 'v1', kind: 'List', items: [ns()] }, node()));
    expect(objs.map(objectKey)).toEqual(['Namespace/prod', 'Node/node1']);
  });

  it('accepts an empty List', () => {
    expect(parseManifests(stringify({ apiVersion: 'v1', kind: 'List', items: [] }))).toEqual([]);
  });

  const L = (over: Obj): string => stringify({ apiVersion: 'v1', kind: 'List', items: [], ...over });
  it.each([
    ['wrong apiVersion', L({ apiVersion: 'v2' }), 'List', 'apiVersion', '"v2" is not supported for List; use v1'],
    ['missing apiVersion', stringify({ kind: 'List', items: [] }), 'List', 'apiVersion', 'required; List is v1'],
    ['missing items', stringify({ apiVersion: 'v1', kind: 'List' }), 'List', 'items', 'required'],
    ['items not a sequence', L({ items: {} }), 'List', 'items', 'must be a sequence, got a mapping'],
    ['item not a mapping', L({ items: [ns(), 'x'] }), 'List', 'items[1]', 'expected a Kubernetes object, got the string "x"'],
    ['nested List', L({ items: [{ apiVersion: 'v1', kind: 'List', items: [] }] }), 'List', 'items[0].kind', 'a List inside a List is not supported'],
    ['invalid item', L({ items: [withNode((n) => delete n.spec)()] }), 'Node node1', 'spec', 'required'],
  ])('%s', (_n, text, ref, field, reason) => {
    expectError(text, ref, field, reason);
  });
});

describe('parseManifests: duplicates', () => {
  it.each([
    ['same Pod twice', [pod(), pod()], P, 'metadata.name', 'duplicate object: Pod/default/web is already defined at line 4, document 1 (at line 17, document 2)'],
    ['same Node twice', [node(), node()], N, 'metadata.name', 'duplicate object: Node/node1 is already defined'],
    ['same Namespace twice', [ns(), ns()], 'Namespace prod', 'metadata.name', 'duplicate object: Namespace/prod is already defined'],
    ['same pod uid', [withPod((p) => (p.metadata.uid = 'u-1'))(), withPod((p) => { p.metadata.name = 'db'; p.metadata.uid = 'u-1'; })()], 'Pod default/db', 'metadata.uid', '"u-1" is already the uid of Pod default/web'],
    ['same pinned IP', [withPod((p) => (p.metadata.annotations = { 'podwire.io/ip': '10.244.1.9' }))(), withPod((p) => { p.metadata.name = 'db'; p.metadata.annotations = { 'podwire.io/ip': '10.244.1.9' }; })()], 'Pod default/db', 'metadata.annotations[podwire.io/ip]', '10.244.1.9 is already pinned by Pod default/web'],
  ])('%s', (_n, objs, ref, field, reason) => {
    expectError(yamlOf(...objs), ref, field, reason);
  });

  it('a duplicate inside a List and a document is still a duplicate', () => {
    expectError(yamlOf({ apiVersion: 'v1', kind: 'List', items: [pod()] }, pod()), P, 'metadata.name', 'duplicate object: Pod/default/web is already defined at line 7, document 1, items[0] (at line 20, document 2)');
  });

  it('the same name in different namespaces or kinds is fine', () => {
    const prodWeb = withPod((p) => (p.metadata.namespace = 'prod'))();
    const nsWeb = withNs((n) => (n.metadata.name = 'web'))();
    const nodeWeb = withNode((n) => (n.metadata.name = 'web'))();
    expect(parseManifests(yamlOf(pod(), prodWeb, nsWeb, nodeWeb)).map(objectKey)).toEqual([
      'Pod/default/web',
      'Pod/prod/web',
      'Namespace/web',
      'Node/web',
    ]);
  });
});

describe('parseManifests: all or nothing', () => {
  it('one bad document fails the whole parse', () => {
    const text = yamlOf(ns(), node(), withPod((p) => (p.spec.hostNetwork = true))(), pod());
    const e = catchError(text);
    expect(e.document).toBe(3);
    expect(e.field).toBe('spec.hostNetwork');
  });

  it('a syntax error in a later document fails the whole parse', () => {
    expect(() => parseManifests(`${yamlOf(ns(), pod())}---\nkind: [\n`)).toThrow(ManifestError);
  });
});

describe('parseManifests: results and defaults', () => {
  it('parses multi-document YAML, skipping empty documents and comments', () => {
    const text = `# a comment before anything\n---\n---\n# only a comment\n---\n${stringify(ns())}---\n~\n---\n${stringify(pod())}...\n`;
    const objs = parseManifests(text);
    expect(objs.map(objectKey)).toEqual(['Namespace/prod', 'Pod/default/web']);
  });

  it('returns [] for empty input', () => {
    expect(parseManifests('')).toEqual([]);
    expect(parseManifests('# nothing\n---\n')).toEqual([]);
  });

  it('fills Pod defaults', () => {
    const p = withPod((o) => {
      delete o.metadata.namespace;
      o.spec.containers[0].ports = [{ containerPort: 80 }];
    })();
    const [obj] = parseManifests(stringify(p));
    expect(obj).toEqual({
      kind: 'Pod',
      name: 'web',
      namespace: 'default',
      uid: 'default/web',
      labels: {},
      annotations: {},
      ports: [{ containerPort: 80, protocol: 'TCP' }],
      ready: true,
    } satisfies ManifestObj);
  });

  it('reads every Pod field podwire uses, and flattens ports in order', () => {
    const text = `
apiVersion: v1
kind: Pod
metadata:
  name: web-1.blue
  namespace: prod
  uid: 0f6b1c1e-7d2e-4d52-9b1c-3a0c1e2b4f5a
  labels: {app: web, app.kubernetes.io/part-of: shop, empty: ""}
  annotations:
    podwire.io/ip: 10.244.1.50
    podwire.io/ready: "false"
    example.com/note: anything at all, even spaces
spec:
  nodeName: node1
  hostNetwork: false
  dnsPolicy: ClusterFirst
  dnsConfig: {nameservers: [1.1.1.1]}
  hostAliases: [{ip: 10.0.0.1, hostnames: [db]}]
  initContainers: [{name: init, image: busybox, command: [sh, -c, "true"]}]
  containers:
  - name: app
    image: nginx
    command: [nginx, -g, daemon off;]
    resources: {limits: {cpu: 100m}}
    readinessProbe: {httpGet: {path: /, port: 80}}
    ports:
    - {containerPort: 80, name: http}
    - {containerPort: 53, protocol: UDP, name: dns}
  - name: sidecar
    ports:
    - {containerPort: 53, protocol: TCP, name: dns-tcp}
    - {containerPort: 9000, protocol: SCTP}
status:
  phase: Running
  conditions: [{type: Ready, status: "False"}]
  hostIP: 192.168.56.11
  podIP: 10.244.1.50
`;
    expect(parseManifests(text)).toEqual([
      {
        kind: 'Pod',
        name: 'web-1.blue',
        namespace: 'prod',
        uid: '0f6b1c1e-7d2e-4d52-9b1c-3a0c1e2b4f5a',
        labels: { app: 'web', 'app.kubernetes.io/part-of': 'shop', empty: '' },
        annotations: {
          'podwire.io/ip': '10.244.1.50',
          'podwire.io/ready': 'false',
          'example.com/note': 'anything at all, even spaces',
        },
        nodeName: 'node1',
        pinnedIp: '10.244.1.50',
        ports: [
          { containerPort: 80, protocol: 'TCP', name: 'http' },
          { containerPort: 53, protocol: 'UDP', name: 'dns' },
          { containerPort: 53, protocol: 'TCP', name: 'dns-tcp' },
          { containerPort: 9000, protocol: 'SCTP' },
        ],
        ready: false,
        podIP: '10.244.1.50',
      },
    ]);
  });

  it('treats null (a bare `key:`) as unset, as Kubernetes does', () => {
    const text = [
      'apiVersion: v1',
      'kind: Pod',
      'metadata:',
      '  name: web',
      '  namespace:',
      '  labels:',
      '  annotations: ~',
      'spec:',
      '  nodeName: null',
      '  initContainers:',
      '  containers:',
      '  - name: app',
      '    ports:',
      '  - name: side',
      '    ports:',
      '    - containerPort: 53',
      '      protocol:',
      '',
    ].join('\n');
    expect(parseManifests(text)).toEqual([
      {
        kind: 'Pod',
        name: 'web',
        namespace: 'default',
        uid: 'default/web',
        labels: {},
        annotations: {},
        ports: [{ containerPort: 53, protocol: 'TCP' }],
        ready: true,
      },
    ]);
  });

  it('ready "true" is ready', () => {
    const [p] = parseManifests(stringify(withPod((o) => (o.metadata.annotations = { 'podwire.io/ready': 'true' }))()));
    expect(p).toMatchObject({ kind: 'Pod', ready: true });
  });

  it('accepts the longest valid names and labels', () => {
    const label63 = 'a'.repeat(63);
    const p = withPod((o) => {
      o.metadata.name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`; // 253
      o.metadata.labels = { [`example.com/${label63}`]: label63, 'a_b.c-d': 'X_y.z-9' };
      port0(o).name = 'a'.repeat(15);
    })();
    const [obj] = parseManifests(stringify(p));
    expect(obj).toMatchObject({ kind: 'Pod', name: p.metadata.name });
  });

  it('reads a Node with defaults', () => {
    expect(parseManifests(stringify(node()))).toEqual([
      { kind: 'Node', name: 'node1', labels: {}, podCIDR: '10.244.1.0/24', internalIP: '192.168.56.11', overlay: 'podwire' },
    ]);
  });

  it('reads a flannel-managed kernel node', () => {
    const n = withNode((o) => {
      o.metadata.labels = { 'kubernetes.io/hostname': 'node1' };
      o.metadata.annotations = {
        'flannel.alpha.coreos.com/backend-data': '{"VNI":1,"VtepMAC":"0A:58:0A:F4:01:00"}',
        'flannel.alpha.coreos.com/backend-type': 'vxlan',
        'podwire.io/overlay': 'kernel',
      };
      o.spec.podCIDRs = ['10.244.1.0/24'];
      o.spec.unschedulable = false;
    })();
    expect(parseManifests(stringify(n))).toEqual([
      {
        kind: 'Node',
        name: 'node1',
        labels: { 'kubernetes.io/hostname': 'node1' },
        podCIDR: '10.244.1.0/24',
        internalIP: '192.168.56.11',
        vtepMac: '0a:58:0a:f4:01:00',
        overlay: 'kernel',
      },
    ]);
  });

  it('a kernel node without a VTEP MAC leaves vtepMac unset', () => {
    const n = withNode((o) => (o.metadata.annotations = { 'podwire.io/overlay': 'kernel' }))();
    const [obj] = parseManifests(stringify(n));
    expect(obj).toMatchObject({ kind: 'Node', overlay: 'kernel' });
    expect(obj).not.toHaveProperty('vtepMac');
  });

  it('normalizes podwire.io/vtep-mac to lower case; agrees with flannel; null backend-data is fine', () => {
    const n = withNode((o) => (o.metadata.annotations = {
      'podwire.io/vtep-mac': 'AA:BB:CC:00:11:22',
      'flannel.alpha.coreos.com/backend-data': '{"VtepMAC":"aa:bb:cc:00:11:22"}',
    }))();
    expect(parseManifests(stringify(n))[0]).toMatchObject({ vtepMac: 'aa:bb:cc:00:11:22', overlay: 'podwire' });
    const hostGw = withNode((o) => (o.metadata.annotations = { 'flannel.alpha.coreos.com/backend-data': 'null' }))();
    expect(parseManifests(stringify(hostGw))[0]).not.toHaveProperty('vtepMac');
  });

  it('accepts prefix lengths /8 and /30 and a loopback InternalIP (several lab nodes on one host)', () => {
    const a = withNode((o) => (o.spec.podCIDR = '10.0.0.0/8'))();
    const b = withNode((o) => {
      o.metadata.name = 'node2';
      o.spec.podCIDR = '10.244.2.252/30';
      o.status.addresses = [{ type: 'InternalIP', address: '127.0.0.2' }];
    })();
    expect(parseManifests(yamlOf(a, b)).map((o) => (o.kind === 'Node' ? [o.podCIDR, o.internalIP] : []))).toEqual([
      ['10.0.0.0/8', '192.168.56.11'],
      ['10.244.2.252/30', '127.0.0.2'],
    ]);
  });

  it('reads a Namespace', () => {
    const n = withNs((o) => {
      o.metadata.labels = { 'kubernetes.io/metadata.name': 'prod' };
      o.spec = { finalizers: ['kubernetes'] };
      o.status = { phase: 'Active' };
    })();
    expect(parseManifests(stringify(n))).toEqual([{ kind: 'Namespace', name: 'prod', labels: { 'kubernetes.io/metadata.name': 'prod' } }]);
  });
});

describe('objectKey', () => {
  it.each([
    [{ kind: 'Pod', name: 'web', namespace: 'default', uid: 'x', labels: {}, annotations: {}, ports: [], ready: true }, 'Pod/default/web'],
    [{ kind: 'Node', name: 'node1', labels: {}, podCIDR: '10.244.1.0/24', internalIP: '10.0.0.1', overlay: 'podwire' }, 'Node/node1'],
    [{ kind: 'Namespace', name: 'prod', labels: {} }, 'Namespace/prod'],
    [{ kind: 'Service', name: 'web', namespace: 'prod', labels: {}, annotations: {}, type: 'ClusterIP', ports: [], externalIPs: [], sessionAffinity: 'None', affinityTimeoutSeconds: 10800, externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster', lbAlgorithm: 'round-robin' }, 'Service/prod/web'],
    [{ kind: 'EndpointSlice', name: 'web-abc', namespace: 'prod', labels: {}, serviceName: 'web', addressType: 'IPv4', ports: [], endpoints: [] }, 'EndpointSlice/prod/web-abc'],
    [{ kind: 'NetworkPolicy', name: 'deny', namespace: 'prod', labels: {}, podSelector: { matchLabels: {}, matchExpressions: [] }, policyTypes: ['Ingress'], ingress: [], egress: [] }, 'NetworkPolicy/prod/deny'],
  ] as Array<[ManifestObj, string]>)('%j -> %s', (o, key) => {
    expect(objectKey(o)).toBe(key);
  });
});
