/**
 * The native addon against the real kernel: TAP devices, the UDP underlay, FdWatcher.
 *
 * Needs root on Linux (TUNSETIFF, network namespaces). To leave the host's network alone, each TAP is
 * created in the root namespace under a unique name (harmless: it has no address and is down) and
 * moved at once into a network namespace private to this run, where it is configured. The fd keeps
 * working across the move. UDP tests use 127.0.0.1 in the root namespace on a random high port.
 * Everything (fds, namespace) is removed in afterAll.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAddon, type Addon, type TapHandle } from '../../src/io/native.ts';
import { SLOT_SIZE, HEADROOM } from '../../src/frame/slab.ts';

const canRun =
  process.platform === 'linux' && process.getuid?.() === 0 && existsSync('/dev/net/tun');

const ADDON_PATH = fileURLToPath(new URL('../../build/Release/podwire_native.node', import.meta.url));
const LOOPBACK = 0x7f000001;

// Addresses inside the test namespace. The "peer" (10.99.x.1) is us: frames to it come out of the TAP.
const PEER_MAC = [0x02, 0, 0, 0, 0, 0x01];
const TAP_MAC = [0x02, 0, 0, 0, 0, 0x02];
const PEER_IP = [10, 99, 0, 1];
const TAP_IP = [10, 99, 0, 2];

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function u16(b: Uint8Array, off: number): number {
  return (b[off] << 8) | b[off + 1];
}

function ipv4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** The Internet checksum (RFC 1071) of b[off, off+len). */
function inetChecksum(b: Uint8Array, off: number, len: number): number {
  let sum = 0;
  for (let i = 0; i < len; i += 2) sum += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** Who-has TAP_IP, tell PEER_IP (42 bytes). */
function arpRequest(): Uint8Array {
  const f = new Uint8Array(42);
  f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0);
  f.set(PEER_MAC, 6);
  f.set([0x08, 0x06], 12);
  f.set([0, 1, 0x08, 0x00, 6, 4, 0, 1], 14); // Ethernet/IPv4, request
  f.set(PEER_MAC, 22);
  f.set(PEER_IP, 28);
  f.set(TAP_IP, 38); // target MAC (32..37) stays zero
  return f;
}

/** ICMP echo request PEER_IP -> TAP_IP with the given id/seq and 8 payload bytes. */
function echoRequest(id: number, seq: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + 8);
  f.set(TAP_MAC, 0);
  f.set(PEER_MAC, 6);
  f.set([0x08, 0x00], 12);
  const ipOff = 14;
  f.set([0x45, 0, 0, 36, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0], ipOff); // DF, TTL 64, ICMP
  f.set(PEER_IP, ipOff + 12);
  f.set(TAP_IP, ipOff + 16);
  const ipSum = inetChecksum(f, ipOff, 20);
  f[ipOff + 10] = ipSum >> 8;
  f[ipOff + 11] = ipSum & 0xff;
  const icmp = ipOff + 20;
  f.set([8, 0, 0, 0, id >> 8, id & 0xff, seq >> 8, seq & 0xff], icmp);
  f.set([0x70, 0x6f, 0x64, 0x77, 0x69, 0x72, 0x65, 0x21], icmp + 8); // "podwire!"
  const icmpSum = inetChecksum(f, icmp, 16);
  f[icmp + 2] = icmpSum >> 8;
  f[icmp + 3] = icmpSum & 0xff;
  return f;
}

describe.skipIf(!canRun)('native addon (root, Linux)', () => {
  const run = randomBytes(4).toString('hex');
  const ns = `pwt-native-${run}`;
  const tapName = `pwt${run}`; // 11 bytes
  const vnetName = `pwv${run}`;
  let addon: Addon;
  let tap: TapHandle | undefined;
  let vtap: TapHandle | undefined;
  const fds: number[] = [];
  let nsCreated = false;

  /** Run a shell command inside the test namespace. */
  function inNs(script: string): void {
    execFileSync('ip', ['netns', 'exec', ns, 'bash', '-c', script], { stdio: 'ignore' });
  }

  /** Frames read from a TAP but not yet claimed by waitFrame, per fd. */
  const backlog = new Map<number, Uint8Array[]>();

  /** Return (a copy of) the first frame from fd that `pick` accepts, reading more as needed. */
  async function waitFrame(
    fd: number,
    pick: (f: Uint8Array) => boolean,
    timeoutMs = 3000,
  ): Promise<Uint8Array> {
    const pending = backlog.get(fd) ?? [];
    backlog.set(fd, pending);
    const slot = 2048;
    const buf = new Uint8Array(slot * 16);
    const lens = new Int32Array(16);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = pending.findIndex(pick);
      if (at >= 0) return pending.splice(at, 1)[0];
      const n = addon.readBatch(fd, buf, 0, slot, 0, 16, lens);
      for (let i = 0; i < n; i++) {
        if (lens[i] >= 0) pending.push(buf.slice(i * slot, i * slot + lens[i]));
      }
      if (n === 0) {
        if (Date.now() > deadline) throw new Error('timed out waiting for a frame');
        await sleep(5);
      }
    }
  }

  function drain(fd: number): void {
    backlog.delete(fd);
    const buf = new Uint8Array(2048 * 16);
    const lens = new Int32Array(16);
    while (addon.readBatch(fd, buf, 0, 2048, 0, 16, lens) > 0);
  }

  /** Frame test for "IPv4/UDP to 10.99.<net>.1:9999 with payload hi\n", at Ethernet offset `eth`. */
  function isHiDatagram(f: Uint8Array, eth: number, net: number): boolean {
    const ipOff = eth + 14;
    return (
      f.length >= ipOff + 28 &&
      u16(f, eth + 12) === 0x0800 &&
      f[ipOff + 9] === 17 &&
      ipv4(f, ipOff + 16) === `10.99.${net}.1` &&
      u16(f, ipOff + 20 + 2) === 9999
    );
  }

  /** Open a UDP socket on 127.0.0.1 and a random high port, retrying on EADDRINUSE. */
  function openLoopbackUdp(): { fd: number; port: number } {
    for (let attempt = 0; ; attempt++) {
      const port = 20000 + Math.floor(Math.random() * 40000);
      try {
        const fd = addon.openUdp(LOOPBACK, port);
        fds.push(fd);
        return { fd, port };
      } catch (e) {
        if ((e as { code?: string }).code !== 'EADDRINUSE' || attempt > 50) throw e;
      }
    }
  }

  beforeAll(() => {
    addon = loadAddon();
    ip('netns', 'add', ns);
    nsCreated = true;
    // No IPv6 in the namespace: keeps router solicitations and MLD reports off the TAPs.
    inNs(
      'echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6',
    );

    tap = addon.openTap(tapName, false);
    fds.push(tap.fd);
    ip('link', 'set', 'dev', tapName, 'netns', ns);
    ip('-n', ns, 'link', 'set', 'dev', tapName, 'address', '02:00:00:00:00:02');
    ip('-n', ns, 'link', 'set', 'dev', tapName, 'up');
    ip('-n', ns, 'addr', 'add', '10.99.0.2/24', 'dev', tapName);
    ip('-n', ns, 'neigh', 'add', '10.99.0.1', 'lladdr', '02:00:00:00:00:01', 'dev', tapName);

    vtap = addon.openTap(vnetName, true);
    fds.push(vtap.fd);
    ip('link', 'set', 'dev', vnetName, 'netns', ns);
    ip('-n', ns, 'link', 'set', 'dev', vnetName, 'up');
    ip('-n', ns, 'addr', 'add', '10.99.1.2/24', 'dev', vnetName);
    ip('-n', ns, 'neigh', 'add', '10.99.1.1', 'lladdr', '02:00:00:00:00:01', 'dev', vnetName);
  });

  afterAll(() => {
    for (const fd of fds.splice(0)) {
      try {
        addon.closeFd(fd);
      } catch {
        // already closed by a test
      }
    }
    if (nsCreated) ip('netns', 'del', ns);
  });

  it('exports exactly the documented surface', () => {
    expect(Object.keys(addon).sort()).toEqual(
      ['FdWatcher', 'closeFd', 'enableUdpGro', 'getIfMtu', 'openRawIp', 'openTap', 'openUdp', 'openUdpSender', 'readBatch',
        'recvBatch', 'recvVxlanBatch', 'sendBatch', 'sendVxlanBatch', 'setOffload', 'spinPoll', 'stats', 'writeBatch'].sort(),
    );
    expect(tap).toMatchObject({ name: tapName, vnetHdr: false });
    expect(vtap).toMatchObject({ name: vnetName, vnetHdr: true });
    expect(tap!.fd).toBeGreaterThan(2);
  });

  it('readBatch returns 0 when nothing is queued', () => {
    drain(tap!.fd);
    const lens = new Int32Array(4);
    expect(addon.readBatch(tap!.fd, new Uint8Array(4 * 2048), 0, 2048, 0, 4, lens)).toBe(0);
  });

  it('readBatch receives a frame the namespace sends, into the right slot after the headroom', async () => {
    drain(tap!.fd);
    inNs('echo hi > /dev/udp/10.99.0.1/9999');
    const slot = 256;
    const headroom = 64;
    const firstSlot = 2;
    const buf = new Uint8Array(slot * 8).fill(0xaa);
    const lens = new Int32Array(4);
    const deadline = Date.now() + 3000;
    let n = 0;
    while ((n = addon.readBatch(tap!.fd, buf, firstSlot, slot, headroom, 4, lens)) === 0) {
      if (Date.now() > deadline) throw new Error('no frame');
      await sleep(5);
    }
    // Nothing is written outside the slots handed over, nor into the headroom.
    expect(buf.subarray(0, firstSlot * slot + headroom).every((b) => b === 0xaa)).toBe(true);
    const f = buf.slice(firstSlot * slot + headroom, firstSlot * slot + headroom + lens[0]);
    expect(lens[0]).toBe(14 + 20 + 8 + 3);
    expect([...f.subarray(0, 6)]).toEqual(PEER_MAC);
    expect([...f.subarray(6, 12)]).toEqual(TAP_MAC);
    expect(u16(f, 12)).toBe(0x0800); // IPv4
    expect(f[14 + 9]).toBe(17); // UDP
    expect(ipv4(f, 14 + 12)).toBe('10.99.0.2');
    expect(ipv4(f, 14 + 16)).toBe('10.99.0.1');
    expect(u16(f, 14 + 20 + 2)).toBe(9999);
    expect(new TextDecoder().decode(f.subarray(14 + 28))).toBe('hi\n');
    expect(n).toBeGreaterThanOrEqual(1);
  });

  it('readBatch reports a frame longer than its slot as -1', async () => {
    drain(tap!.fd);
    inNs('echo hi > /dev/udp/10.99.0.1/9999');
    // The frame is 45 bytes; 40 bytes of room after a 24-byte headroom.
    const buf = new Uint8Array(64 * 4);
    const lens = new Int32Array(4);
    const deadline = Date.now() + 3000;
    while (addon.readBatch(tap!.fd, buf, 0, 64, 24, 4, lens) === 0) {
      if (Date.now() > deadline) throw new Error('no frame');
      await sleep(5);
    }
    expect(lens[0]).toBe(-1);
  });

  it('readBatch into the daemon\'s slots (room for any TAP frame: one read(2) each) gets whole frames', async () => {
    drain(tap!.fd);
    inNs('echo hi > /dev/udp/10.99.0.1/9999; echo there > /dev/udp/10.99.0.1/9999');
    const buf = new Uint8Array(SLOT_SIZE * 4).fill(0xaa);
    const lens = new Int32Array(4);
    const got: string[] = [];
    const deadline = Date.now() + 3000;
    while (got.length < 2) {
      const n = addon.readBatch(tap!.fd, buf, 1, SLOT_SIZE, HEADROOM, 3, lens);
      for (let i = 0; i < n; i++) {
        const at = (1 + i) * SLOT_SIZE + HEADROOM;
        const f = buf.slice(at, at + lens[i]);
        if (u16(f, 12) === 0x0800 && f[14 + 9] === 17) got.push(new TextDecoder().decode(f.subarray(14 + 28)));
      }
      if (n === 0) {
        if (Date.now() > deadline) throw new Error(`frames seen: ${got.length}`);
        await sleep(5);
      }
    }
    expect(got).toEqual(['hi\n', 'there\n']);
    expect(buf.subarray(0, SLOT_SIZE + HEADROOM).every((b) => b === 0xaa)).toBe(true);
  });

  it('a vnetHdr TAP prefixes each frame with a 12-byte virtio_net_hdr_v1', async () => {
    inNs('echo hi > /dev/udp/10.99.1.1/9999');
    const f = await waitFrame(vtap!.fd, (fr) => isHiDatagram(fr, 12, 1));
    expect(f.length).toBe(12 + 14 + 20 + 8 + 3);
    expect(new TextDecoder().decode(f.subarray(12 + 14 + 28))).toBe('hi\n');
  });

  it('writeBatch injects ARP and ICMP frames the kernel answers; bad offsets are counted, not used', async () => {
    drain(tap!.fd);
    const slab = new Uint8Array(4096);
    const arp = arpRequest();
    const echo = echoRequest(0x4242, 7);
    slab.set(arp, 100);
    slab.set(echo, 1000);
    const offsets = Uint32Array.from([0, 100, slab.length - 10, 1000]);
    const lens = Uint32Array.from([0, arp.length, 100, echo.length]);
    const before = addon.stats().writeErrors;
    // start = 1: entry 0 is not part of the batch.
    expect(addon.writeBatch(tap!.fd, slab, offsets, lens, 1, 3)).toBe(3);
    expect(addon.stats().writeErrors).toBe(before + 1);

    const arpReply = await waitFrame(tap!.fd, (f) => u16(f, 12) === 0x0806 && u16(f, 20) === 2);
    expect([...arpReply.subarray(0, 6)]).toEqual(PEER_MAC);
    expect([...arpReply.subarray(22, 28)]).toEqual(TAP_MAC); // sender hardware address
    expect(ipv4(arpReply, 28)).toBe('10.99.0.2');
    expect(ipv4(arpReply, 38)).toBe('10.99.0.1');

    const echoReply = await waitFrame(
      tap!.fd,
      (f) => u16(f, 12) === 0x0800 && f[14 + 9] === 1 && f[14 + 20] === 0,
    );
    expect(ipv4(echoReply, 14 + 12)).toBe('10.99.0.2');
    expect(ipv4(echoReply, 14 + 16)).toBe('10.99.0.1');
    expect(u16(echoReply, 14 + 24)).toBe(0x4242);
    expect(u16(echoReply, 14 + 26)).toBe(7);
    expect(new TextDecoder().decode(echoReply.subarray(14 + 28, 14 + 36))).toBe('podwire!');
  });

  it('OS errors carry the call, the object and the errno name', () => {
    const long = 'x'.repeat(16);
    expect(() => addon.openTap(long, false)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: expect.stringMatching(/^openTap\(x{16}\): EINVAL /) }),
    );

    // A second open of a (non-multiqueue) TAP that is already attached: EBUSY.
    const busyName = `pwb${run}`;
    const busy = addon.openTap(busyName, false);
    try {
      expect(() => addon.openTap(busyName, false)).toThrow(
        expect.objectContaining({ code: 'EBUSY', message: `openTap(${busyName}): EBUSY Device or resource busy` }),
      );
    } finally {
      addon.closeFd(busy.fd); // non-persistent: the device goes away with its fd
    }

    const bad = 1_000_000; // beyond any fd limit
    const lens = new Int32Array(1);
    expect(() => addon.readBatch(bad, new Uint8Array(64), 0, 64, 0, 1, lens)).toThrow(
      expect.objectContaining({ code: 'EBADF', message: expect.stringMatching(/^readBatch\(fd 1000000\): EBADF /) }),
    );
    expect(() => addon.closeFd(bad)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  it('misuse throws TypeError/RangeError before touching memory', () => {
    const fd = tap!.fd;
    const buf = new Uint8Array(1024);
    const lens = new Int32Array(4);
    const A = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
    // Slots 3..5 of 256 bytes end at 1280 > 1024.
    expect(() => addon.readBatch(fd, buf, 3, 256, 0, 2, lens)).toThrow(RangeError);
    expect(() => addon.readBatch(fd, buf, 0, 256, 256, 1, lens)).toThrow(RangeError); // no room
    expect(() => addon.readBatch(fd, buf, 0, 0, 0, 1, lens)).toThrow(RangeError);
    expect(() => addon.readBatch(fd, buf, 0, 128, 0, 8, lens)).toThrow(RangeError); // lens too short
    expect(() => addon.readBatch(fd, buf, -1, 128, 0, 1, lens)).toThrow(RangeError);
    expect(() => addon.readBatch(fd, buf, 0.5, 128, 0, 1, lens)).toThrow(RangeError);
    expect(() => addon.readBatch(fd, buf, 2 ** 32 - 1, 2 ** 32 - 1, 0, 4, lens)).toThrow(RangeError);
    expect(() => A.readBatch(fd, [1, 2, 3], 0, 1, 0, 1, lens)).toThrow(TypeError);
    expect(() => A.readBatch(fd, buf, 0, 128, 0, 1, new Uint32Array(4))).toThrow(TypeError);
    expect(() => A.readBatch('3', buf, 0, 128, 0, 1, lens)).toThrow(TypeError);
    // A subarray's bounds are its own, not its buffer's.
    expect(() => addon.readBatch(fd, buf.subarray(512), 2, 256, 0, 1, lens)).toThrow(RangeError);

    const offsets = new Uint32Array(2);
    const wl = new Uint32Array(2);
    expect(() => addon.writeBatch(fd, buf, offsets, wl, 1, 2)).toThrow(RangeError);
    expect(() => addon.writeBatch(fd, buf, offsets, new Uint32Array(1), 0, 2)).toThrow(RangeError);
    expect(() => A.writeBatch(fd, buf, new Int32Array(2), wl, 0, 1)).toThrow(TypeError);

    const addrs = new Uint32Array(4);
    const ports = new Uint16Array(4);
    expect(() => addon.recvBatch(fd, buf, 0, 256, 0, 5, new Int32Array(8), addrs, ports)).toThrow(RangeError);
    expect(() => addon.sendBatch(fd, buf, offsets, wl, addrs, new Uint16Array(1), 0, 2)).toThrow(RangeError);
    expect(() => addon.openUdp(LOOPBACK, 65536)).toThrow(RangeError);
    expect(() => A.openTap(tapName)).toThrow(TypeError);
    expect(() => new addon.FdWatcher(fd, 'nope' as unknown as () => void)).toThrow(TypeError);
  });

  it('UDP: sendBatch/recvBatch round-trip 10 datagrams over loopback', () => {
    const { fd, port } = openLoopbackUdp();
    const slab = new Uint8Array(64 * 1024);
    const count = 10;
    const offsets = new Uint32Array(count);
    const lens = new Uint32Array(count);
    const dstAddrs = new Uint32Array(count).fill(LOOPBACK);
    const dstPorts = new Uint16Array(count).fill(port);
    for (let i = 0; i < count; i++) {
      offsets[i] = i * 1500 + 3;
      lens[i] = 1 + i * 97;
      for (let j = 0; j < lens[i]; j++) slab[offsets[i] + j] = (i * 31 + j) & 0xff;
    }
    expect(addon.sendBatch(fd, slab, offsets, lens, dstAddrs, dstPorts, 0, count)).toBe(count);

    const slot = 2048;
    const headroom = 50;
    const rbuf = new Uint8Array(slot * 17);
    const rlens = new Int32Array(16);
    const srcAddrs = new Uint32Array(16);
    const srcPorts = new Uint16Array(16);
    // Loopback delivers synchronously: everything is queued by now.
    const n = addon.recvBatch(fd, rbuf, 1, slot, headroom, 16, rlens, srcAddrs, srcPorts);
    expect(n).toBe(count);
    for (let i = 0; i < count; i++) {
      expect(rlens[i]).toBe(lens[i]);
      expect(srcAddrs[i]).toBe(LOOPBACK);
      expect(srcPorts[i]).toBe(port);
      const at = (1 + i) * slot + headroom;
      expect(rbuf.subarray(at, at + rlens[i])).toEqual(slab.subarray(offsets[i], offsets[i] + lens[i]));
    }
    expect(addon.recvBatch(fd, rbuf, 1, slot, headroom, 16, rlens, srcAddrs, srcPorts)).toBe(0);
  });

  it('UDP: more than 64 datagrams per call, truncation, and per-datagram errors', () => {
    const { fd, port } = openLoopbackUdp();
    const count = 150;
    const slab = new Uint8Array(count * 16 + 1024);
    const offsets = new Uint32Array(count).map((_, i) => i * 16);
    const lens = new Uint32Array(count).fill(16);
    const dstAddrs = new Uint32Array(count).fill(LOOPBACK);
    const dstPorts = new Uint16Array(count).fill(port);
    for (let i = 0; i < count; i++) slab[i * 16] = i;
    lens[5] = 1000; // the 1000-byte datagram will not fit a 256-byte slot
    offsets[5] = count * 16;
    dstPorts[70] = 0; // EINVAL from the kernel: counted, skipped
    offsets[100] = slab.length; // out of bounds: counted, skipped
    const before = addon.stats().sendErrors;
    expect(addon.sendBatch(fd, slab, offsets, lens, dstAddrs, dstPorts, 0, count)).toBe(count);
    expect(addon.stats().sendErrors).toBe(before + 2);

    const slot = 256;
    const rbuf = new Uint8Array(slot * 200);
    const rlens = new Int32Array(200);
    const srcAddrs = new Uint32Array(200);
    const srcPorts = new Uint16Array(200);
    const n = addon.recvBatch(fd, rbuf, 0, slot, 0, 200, rlens, srcAddrs, srcPorts);
    expect(n).toBe(count - 2);
    const firsts: number[] = [];
    for (let i = 0; i < n; i++) {
      if (rlens[i] === -1) firsts.push(-1);
      else {
        expect(rlens[i]).toBe(16);
        firsts.push(rbuf[i * slot]);
      }
    }
    const expected = [...Array(count).keys()].filter((i) => i !== 70 && i !== 100).map((i) => (i === 5 ? -1 : i));
    expect(firsts).toEqual(expected);
  });

  it('spinPoll: spends its budget when nothing is readable, reports exactly the readable fds, rejects misuse', () => {
    const a = openLoopbackUdp(), b = openLoopbackUdp(), c = openLoopbackUdp();
    const fdsArr = Int32Array.of(a.fd, b.fd, c.fd);
    const ready = new Uint8Array(3).fill(7);
    // Nothing queued: 0, after at least the budget (2 ms) and not much more.
    const t0 = process.hrtime.bigint();
    expect(addon.spinPoll(fdsArr, ready, 2000)).toBe(0);
    const spentUs = Number(process.hrtime.bigint() - t0) / 1000;
    expect(spentUs).toBeGreaterThanOrEqual(2000);
    expect(spentUs).toBeLessThan(500_000);
    // One datagram to b and one to c: both reported, a not.
    const slab = Uint8Array.of(1, 2, 3);
    for (const port of [b.port, c.port]) {
      expect(addon.sendBatch(a.fd, slab, Uint32Array.of(0), Uint32Array.of(3), Uint32Array.of(LOOPBACK), Uint16Array.of(port), 0, 1)).toBe(1);
    }
    expect(addon.spinPoll(fdsArr, ready, 100_000)).toBe(2);
    expect([...ready]).toEqual([0, 1, 1]);
    // A negative fd is skipped, as poll(2) does.
    expect(addon.spinPoll(Int32Array.of(-1, c.fd), ready, 1000)).toBe(1);
    expect([...ready.subarray(0, 2)]).toEqual([0, 1]);
    // An fd that is not open is skipped too: not reported, and alone it does not end the spinning.
    const closed = openLoopbackUdp();
    addon.closeFd(closed.fd);
    const t1 = process.hrtime.bigint();
    expect(addon.spinPoll(Int32Array.of(closed.fd), ready, 2000)).toBe(0);
    expect(Number(process.hrtime.bigint() - t1) / 1000).toBeGreaterThanOrEqual(2000);
    expect(addon.spinPoll(Int32Array.of(closed.fd, c.fd), ready, 1000)).toBe(1);
    expect([...ready.subarray(0, 2)]).toEqual([0, 1]);
    const A = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
    expect(() => addon.spinPoll(new Int32Array(0), ready, 10)).toThrow(RangeError);
    expect(() => addon.spinPoll(fdsArr, new Uint8Array(2), 10)).toThrow(RangeError);
    expect(() => addon.spinPoll(fdsArr, ready, 2e6)).toThrow(RangeError);
    expect(() => A.spinPoll([a.fd], ready, 10)).toThrow(TypeError);
  });

  it('UDP: binding a port in use fails with EADDRINUSE', () => {
    const { port } = openLoopbackUdp();
    expect(() => addon.openUdp(LOOPBACK, port)).toThrow(
      expect.objectContaining({
        code: 'EADDRINUSE',
        message: `openUdp(127.0.0.1:${port}): EADDRINUSE Address already in use`,
      }),
    );
  });

  it('FdWatcher calls back when the TAP has a frame; stop() is idempotent; start() after stop() works', async () => {
    const fd = tap!.fd;
    drain(fd);
    const buf = new Uint8Array(2048 * 8);
    const lens = new Int32Array(8);
    let calls = 0;
    let frames = 0;
    let wake: (() => void) | undefined;
    const watcher = new addon.FdWatcher(fd, () => {
      calls++;
      frames += addon.readBatch(fd, buf, 0, 2048, 0, 8, lens);
      wake?.();
    });
    const fired = (ms: number) =>
      new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), ms);
        wake = () => {
          clearTimeout(t);
          resolve(true);
        };
      });

    watcher.start();
    watcher.start(); // no-op
    let p = fired(3000);
    inNs('echo hi > /dev/udp/10.99.0.1/9999');
    expect(await p).toBe(true);
    expect(frames).toBeGreaterThanOrEqual(1);

    watcher.stop();
    watcher.stop();
    const callsWhenStopped = calls;
    inNs('echo hi > /dev/udp/10.99.0.1/9999');
    await sleep(200);
    expect(calls).toBe(callsWhenStopped); // the frame waits in the queue, unnoticed

    p = fired(3000);
    watcher.start(); // level-triggered: the frame already queued is reported
    expect(await p).toBe(true);

    // libuv allows one poll handle per fd.
    const second = new addon.FdWatcher(fd, () => {});
    expect(() => second.start()).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    second.stop();
    watcher.stop();
    watcher.stop();
  });

  it('FdWatcher reports a TAP whose device was deleted, once, with an error argument', async () => {
    const name = `pwg${run}`;
    const gone = addon.openTap(name, false);
    fds.push(gone.fd);
    ip('link', 'set', 'dev', name, 'netns', ns);
    const args: unknown[][] = [];
    const watcher = new addon.FdWatcher(gone.fd, (...a: unknown[]) => {
      args.push(a);
    });
    watcher.start();
    ip('-n', ns, 'link', 'del', 'dev', name);
    const deadline = Date.now() + 3000;
    while (args.length === 0 && Date.now() < deadline) await sleep(5);
    await sleep(50); // libuv stopped polling: no repeats
    expect(args).toHaveLength(1);
    expect(args[0][0]).toMatchObject({ code: 'EBADF', message: expect.stringMatching(/^FdWatcher\(fd \d+\): EBADF /) });
    // The fd itself now fails with EBADFD ("File descriptor in bad state").
    expect(() => addon.readBatch(gone.fd, new Uint8Array(2048), 0, 2048, 0, 1, new Int32Array(1))).toThrow(
      expect.objectContaining({ code: 'EBADFD' }),
    );
    watcher.stop();
    watcher.stop();
  });

  it('FdWatcher: callback exceptions are uncaught exceptions, the loop is held only while started, GC after stop is safe', () => {
    // A separate process, since an uncaught exception here would fail this test file and a handle
    // leak would keep the process alive (caught by the timeout).
    const script = `
      const a = require(${JSON.stringify(ADDON_PATH)});
      function openUdp() {
        for (;;) {
          const port = 20000 + Math.floor(Math.random() * 40000);
          try { return { fd: a.openUdp(0x7f000001, port), port }; }
          catch (e) { if (e.code !== 'EADDRINUSE') throw e; }
        }
      }
      const { fd, port } = openUdp();
      // Watchers closed and dropped before libuv has run their close callbacks, then collected.
      for (let i = 0; i < 500; i++) { const w = new a.FdWatcher(fd, () => {}); w.start(); w.stop(); }
      for (let i = 0; i < 500; i++) new a.FdWatcher(fd, () => {});
      globalThis.gc();
      // A started watcher holds the loop open: this unref'd timer still gets to run.
      const idle = new a.FdWatcher(fd, () => {});
      idle.start();
      setTimeout(() => {
        console.log('held');
        idle.stop();
        const w = new a.FdWatcher(fd, () => { throw new Error('boom from onReadable'); });
        process.on('uncaughtException', (e) => {
          console.log('uncaught: ' + e.message);
          w.stop();
          w.stop();
          setImmediate(() => { globalThis.gc(); a.closeFd(fd); });
        });
        w.start();
        const buf = new Uint8Array([1, 2, 3]);
        a.sendBatch(fd, buf, new Uint32Array([0]), new Uint32Array([3]),
                    new Uint32Array([0x7f000001]), new Uint16Array([port]), 0, 1);
      }, 100).unref();
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], {
      encoding: 'utf8',
      timeout: 15000,
    });
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.stdout).toBe('held\nuncaught: boom from onReadable\n');
    expect(r.status).toBe(0);
  });

  it('FdWatcher: workers that end with watchers open, closing or collected tear down cleanly', () => {
    // Node unloads an addon loaded only by a worker when the worker ends: a uv close callback that
    // ran after that would crash the process.
    const script = `
      const { Worker } = require('node:worker_threads');
      const body = \`
        const a = require(${JSON.stringify(ADDON_PATH)});
        const { parentPort, workerData } = require('node:worker_threads');
        function openUdp() {
          for (;;) {
            try { return a.openUdp(0x7f000001, 20000 + Math.floor(Math.random() * 40000)); }
            catch (e) { if (e.code !== 'EADDRINUSE') throw e; }
          }
        }
        const fd = openUdp();
        new a.FdWatcher(fd, () => {}).start();                      // left started
        const closing = new a.FdWatcher(openUdp(), () => {});
        if (workerData === 1) { closing.start(); closing.stop(); }  // close still pending
        if (workerData === 2) { new a.FdWatcher(fd, () => {}); }    // never started
        parentPort.postMessage('ready');
        if (workerData === 1) process.exit(0);
      \`;
      let done = 0;
      for (let i = 0; i < 3; i++) {
        const w = new Worker(body, { eval: true, workerData: i });
        w.on('message', () => { if (i !== 1) w.terminate(); });
        w.on('error', (e) => { console.error(e); process.exitCode = 1; });
        w.on('exit', () => { if (++done === 3) console.log('all ended'); });
      }
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000 });
    expect(r.stderr).toBe('');
    expect(r.signal).toBeNull();
    expect(r.stdout).toBe('all ended\n');
    expect(r.status).toBe(0);
  });
});
