/**
 * Per-node IPAM: reserved addresses, lowest-free allocation, idempotence, pins, exhaustion.
 */
import { describe, expect, it } from 'vitest';
import { IpamError, NodeIpam } from '../../src/control/ipam.ts';

function expectIpamError(f: () => unknown, message: string): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(IpamError);
  expect((caught as IpamError).message).toBe(message);
}

describe('NodeIpam: construction', () => {
  it.each([
    ['10.244.1.0/24', 24, '10.244.1.1', 253],
    ['10.244.0.0/16', 16, '10.244.0.1', 65533],
    ['10.244.1.252/30', 30, '10.244.1.253', 1],
    ['10.244.1.248/29', 29, '10.244.1.249', 5],
    ['10.0.0.0/8', 8, '10.0.0.1', 16777213],
  ])('%s: /%i, gateway %s, capacity %i', (cidr, prefix, gateway, capacity) => {
    const ipam = new NodeIpam(cidr);
    expect(ipam.cidr).toBe(cidr);
    expect(ipam.prefixLength).toBe(prefix);
    expect(ipam.gateway).toBe(gateway);
    expect(ipam.capacity()).toBe(capacity);
    expect(ipam.used()).toBe(0);
  });

  it.each([
    ['10.244.1.0', 'invalid pod CIDR "10.244.1.0": expected an IPv4 CIDR like 10.244.1.0/24'],
    ['10.244.1.0/33', 'invalid pod CIDR 10.244.1.0/33: prefix length /33 is out of range /8../30'],
    ['10.244.1.0/024', 'invalid pod CIDR "10.244.1.0/024": expected an IPv4 CIDR like 10.244.1.0/24'],
    ['fd00::/64', 'invalid pod CIDR "fd00::/64": expected an IPv4 CIDR like 10.244.1.0/24'],
    ['10.244.01.0/24', 'invalid pod CIDR "10.244.01.0/24": expected an IPv4 CIDR like 10.244.1.0/24'],
    ['10.244.1.0/31', 'invalid pod CIDR 10.244.1.0/31: prefix length /31 is out of range /8../30'],
    ['10.0.0.0/7', 'invalid pod CIDR 10.0.0.0/7: prefix length /7 is out of range /8../30'],
    ['10.244.1.7/24', 'invalid pod CIDR 10.244.1.7/24: host bits are set (did you mean 10.244.1.0/24?)'],
  ])('rejects %s', (cidr, message) => {
    expectIpamError(() => new NodeIpam(cidr), message);
  });
});

describe('NodeIpam: allocation', () => {
  it('hands out the lowest free address after the gateway, in order', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    expect(['a', 'b', 'c'].map((o) => ipam.allocate(o))).toEqual(['10.244.1.2', '10.244.1.3', '10.244.1.4']);
    expect(ipam.used()).toBe(3);
  });

  it('is idempotent per owner', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    expect(ipam.allocate('a')).toBe('10.244.1.2');
    expect(ipam.allocate('a')).toBe('10.244.1.2');
    expect(ipam.allocate('a', '10.244.1.2')).toBe('10.244.1.2');
    expect(ipam.used()).toBe(1);
  });

  it('reuses the lowest released address first', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    for (const o of ['a', 'b', 'c', 'd']) ipam.allocate(o);
    ipam.release('c');
    ipam.release('b');
    expect(ipam.allocate('e')).toBe('10.244.1.3');
    expect(ipam.allocate('f')).toBe('10.244.1.4');
    expect(ipam.allocate('g')).toBe('10.244.1.6');
  });

  it('skips pinned addresses', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    expect(ipam.allocate('pinned', '10.244.1.3')).toBe('10.244.1.3');
    expect(['a', 'b', 'c'].map((o) => ipam.allocate(o))).toEqual(['10.244.1.2', '10.244.1.4', '10.244.1.5']);
  });

  it('lookup and ownerOf are inverse; release forgets both', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    ipam.allocate('default/web');
    expect(ipam.lookup('default/web')).toBe('10.244.1.2');
    expect(ipam.ownerOf('10.244.1.2')).toBe('default/web');
    expect(ipam.lookup('nobody')).toBeUndefined();
    expect(ipam.ownerOf('10.244.1.3')).toBeUndefined();
    expect(ipam.ownerOf('10.244.1.1')).toBeUndefined(); // the gateway belongs to no pod
    ipam.release('default/web');
    expect(ipam.lookup('default/web')).toBeUndefined();
    expect(ipam.ownerOf('10.244.1.2')).toBeUndefined();
    expect(ipam.used()).toBe(0);
  });

  it('release of an unknown owner is a no-op', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    ipam.allocate('a');
    ipam.release('nobody');
    ipam.release('a');
    ipam.release('a');
    expect(ipam.used()).toBe(0);
    expect(ipam.allocate('b')).toBe('10.244.1.2');
  });

  it('fills a /30 with one pod, then refuses', () => {
    const ipam = new NodeIpam('10.244.1.252/30');
    expect(ipam.allocate('a')).toBe('10.244.1.254');
    expectIpamError(() => ipam.allocate('b'), '10.244.1.252/30: no free address for b: all 1 pod addresses are allocated');
    ipam.release('a');
    expect(ipam.allocate('b')).toBe('10.244.1.254');
  });

  it('fills a /24 completely, never handing out network, gateway or broadcast', () => {
    const ipam = new NodeIpam('10.244.1.0/24');
    const seen = new Set<string>();
    for (let i = 0; i < 253; i++) seen.add(ipam.allocate(`pod-${i}`));
    expect(seen.size).toBe(253);
    for (const reserved of ['10.244.1.0', '10.244.1.1', '10.244.1.255']) expect(seen.has(reserved)).toBe(false);
    expect(ipam.lookup('pod-252')).toBe('10.244.1.254');
    expect(ipam.used()).toBe(ipam.capacity());
    expectIpamError(() => ipam.allocate('one-more'), '10.244.1.0/24: no free address for one-more: all 253 pod addresses are allocated');
    // A freed address in the middle is found again (the cursor moves back).
    ipam.release('pod-100');
    expect(ipam.allocate('one-more')).toBe('10.244.1.102');
    expectIpamError(() => ipam.allocate('two-more'), '10.244.1.0/24: no free address for two-more: all 253 pod addresses are allocated');
  });

  it('crosses 32-address bitmap words and handles a CIDR whose size is a multiple of 32', () => {
    const ipam = new NodeIpam('10.244.1.192/27'); // 32 addresses: exactly one bitmap word
    for (let i = 0; i < 29; i++) ipam.allocate(`p${i}`);
    expect(ipam.lookup('p28')).toBe('10.244.1.222');
    expectIpamError(() => ipam.allocate('x'), '10.244.1.192/27: no free address for x: all 29 pod addresses are allocated');
    expectIpamError(() => ipam.allocate('y'), '10.244.1.192/27: no free address for y: all 29 pod addresses are allocated');

    const big = new NodeIpam('10.244.0.0/22');
    for (let i = 0; i < 100; i++) big.allocate(`p${i}`);
    expect(big.lookup('p99')).toBe('10.244.0.101');
    big.release('p29'); // offset 31: last bit of the first word
    big.release('p30'); // offset 32: first bit of the second word
    expect(big.allocate('q1')).toBe('10.244.0.31');
    expect(big.allocate('q2')).toBe('10.244.0.32');
    expect(big.allocate('q3')).toBe('10.244.0.102');
  });

  it('allocates quickly in a large CIDR', () => {
    const ipam = new NodeIpam('10.0.0.0/12');
    const t0 = performance.now();
    for (let i = 0; i < 100_000; i++) ipam.allocate(`p${i}`);
    expect(ipam.lookup('p99999')).toBe('10.1.134.161');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('rejects an empty owner', () => {
    expectIpamError(() => new NodeIpam('10.244.1.0/24').allocate(''), '10.244.1.0/24: the owner must be a non-empty string');
  });
});

describe('NodeIpam: pinned addresses', () => {
  const C = '10.244.1.0/24';
  it.each([
    ['10.244.1', `${C}: cannot pin web to "10.244.1": not a valid IPv4 address`],
    ['10.244.1.010', `${C}: cannot pin web to "10.244.1.010": not a valid IPv4 address`],
    ['10.244.2.5', `${C}: cannot pin web to 10.244.2.5: outside the pod CIDR`],
    ['10.244.1.0', `${C}: cannot pin web to 10.244.1.0: it is the network address`],
    ['10.244.1.1', `${C}: cannot pin web to 10.244.1.1: it is reserved for the gateway`],
    ['10.244.1.255', `${C}: cannot pin web to 10.244.1.255: it is the broadcast address`],
  ])('rejects %s', (pin, message) => {
    const ipam = new NodeIpam(C);
    expectIpamError(() => ipam.allocate('web', pin), message);
    expect(ipam.used()).toBe(0);
    expect(ipam.lookup('web')).toBeUndefined();
  });

  it('rejects an address held by another owner', () => {
    const ipam = new NodeIpam(C);
    ipam.allocate('db');
    expectIpamError(() => ipam.allocate('web', '10.244.1.2'), `${C}: cannot pin web to 10.244.1.2: already allocated to db`);
  });

  it('rejects re-pinning an owner that already holds a different address', () => {
    const ipam = new NodeIpam(C);
    ipam.allocate('web');
    expectIpamError(
      () => ipam.allocate('web', '10.244.1.50'),
      `${C}: web already holds 10.244.1.2; cannot pin it to 10.244.1.50 (release it first)`,
    );
    ipam.release('web');
    expect(ipam.allocate('web', '10.244.1.50')).toBe('10.244.1.50');
  });

  it('accepts the last host address', () => {
    const ipam = new NodeIpam(C);
    expect(ipam.allocate('web', '10.244.1.254')).toBe('10.244.1.254');
    expect(ipam.ownerOf('10.244.1.254')).toBe('web');
  });
});

describe('NodeIpam: contains', () => {
  const ipam = new NodeIpam('10.244.1.0/24');
  it.each([
    ['10.244.1.0', true],
    ['10.244.1.1', true],
    ['10.244.1.128', true],
    ['10.244.1.255', true],
    ['10.244.0.255', false],
    ['10.244.2.0', false],
    ['192.168.1.5', false],
    ['not an ip', false],
    ['10.244.1', false],
    ['::1', false],
  ])('%s -> %s', (ip, inside) => {
    expect(ipam.contains(ip)).toBe(inside);
  });
});
