/**
 * A helper process for tests that need the addon inside a network namespace of their own (the
 * test runner stays in the root namespace, which tests never configure). Run it with
 * `ip netns exec NS node --import tsx test/unit/helpers/addon-in-netns.ts MODE` and a JSON request
 * on stdin; it prints one JSON line.
 *
 *   send: {tap?, src, dst, vni, port, batches: base64[][]} -> with `tap`, opens a tunnel TAP of that
 *         name and sets it up the way the daemon does; then sends each batch of entries
 *         ([vnet 12][frame]) to dst with one sendVxlanBatch call (through the TAP if there is one)
 *         -> {results: [{consumed, stats}] (stats after each call), mac}
 *   recv: {addr, port, innerMtu?, want, timeoutMs} -> receives with recvVxlanBatch until `want`
 *         slots came or the time is up -> {slots: [{len, src, data: base64 of the slot}]}
 */
import { execFileSync } from 'node:child_process';
import { loadAddon, openTunnelTap } from '../../../src/io/native.ts';
import { SLOT_SIZE, HEADROOM } from '../../../src/frame/slab.ts';
import { ipToU32, macFromIp, macToString, TUNNEL_MAC_PREFIX } from '../../../src/control/addressing.ts';
const mode = process.argv[2];
const req = JSON.parse(await new Promise<string>((resolve) => {
  let s = '';
  process.stdin.on('data', (d) => { s += d; }).on('end', () => resolve(s));
}));
const addon = loadAddon();

if (mode === 'send') {
  let tunnel: { fd: number; mac: string } | undefined;
  if (req.tap) {
    // The daemon's choice of address (0e:67 + the underlay address), as 12 hex digits.
    tunnel = { fd: openTunnelTap(addon, req.tap).fd, mac: macToString(macFromIp(TUNNEL_MAC_PREFIX, ipToU32(req.src))).replaceAll(':', '') };
    execFileSync('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0',
      `net.ipv4.conf.${req.tap}.rp_filter=0`, `net.ipv4.conf.${req.tap}.accept_local=1`]);
    execFileSync('ip', ['link', 'set', 'dev', req.tap, 'address', tunnel.mac.replace(/(..)(?!$)/g, '$1:'), 'up']);
  }
  const senders = addon.openUdpSender(ipToU32(req.src), 0, 1);
  const mac = tunnel ? Uint8Array.from(Buffer.from(tunnel.mac, 'hex')) : undefined;
  const results = (req.batches as string[][]).map((batch) => {
    const entries = batch.map((b) => Buffer.from(b, 'base64'));
    const buf = new Uint8Array(entries.reduce((n, e) => n + e.length, 0));
    const offs = new Uint32Array(entries.length), lens = new Uint32Array(entries.length);
    let at = 0;
    entries.forEach((e, i) => { buf.set(e, at); offs[i] = at; lens[i] = e.length; at += e.length; });
    const dsts = new Uint32Array(entries.length).fill(ipToU32(req.dst)), hashes = new Uint32Array(entries.length);
    const consumed = tunnel
      ? addon.sendVxlanBatch(senders, buf, offs, lens, dsts, hashes, 0, entries.length, req.vni, req.port, tunnel.fd, ipToU32(req.src), mac)
      : addon.sendVxlanBatch(senders, buf, offs, lens, dsts, hashes, 0, entries.length, req.vni, req.port);
    return { consumed, stats: addon.stats() };
  });
  console.log(JSON.stringify({ results, mac: tunnel?.mac }));
} else if (mode === 'recv') {
  const fd = addon.openUdp(ipToU32(req.addr), req.port);
  const MAX = 16;   // the daemon's slot layout
  const buf = new Uint8Array(SLOT_SIZE * MAX), lens = new Int32Array(MAX), srcs = new Uint32Array(MAX);
  const slots: { len: number; src: number; data: string }[] = [];
  const deadline = Date.now() + req.timeoutMs;
  console.error('ready');
  while (slots.length < req.want && Date.now() < deadline) {
    const n = addon.recvVxlanBatch(fd, buf, 0, SLOT_SIZE, HEADROOM, MAX, lens, srcs, req.innerMtu);
    for (let i = 0; i < n; i++) {
      const at = i * SLOT_SIZE + HEADROOM;
      slots.push({ len: lens[i], src: srcs[i], data: Buffer.from(buf.subarray(at, at + Math.max(0, lens[i]))).toString('base64') });
    }
    if (n === 0) await new Promise((r) => setTimeout(r, 5));
  }
  console.log(JSON.stringify({ slots, stats: addon.stats() }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
