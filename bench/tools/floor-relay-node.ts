/**
 * floor-relay-node: floor-relay.cc's job done in Node with podwire's own addon, as a second yardstick.
 *
 * The same minimal VXLAN hop (TAP frame -> 8-byte VXLAN header + frame -> the one peer node, and
 * back), with no tables, no lookups and no vnet header, but moved the way podwire moves frames:
 * libuv wakes the JS thread through the addon's FdWatcher, `readBatch`/`recvBatch` fill a slab,
 * a few lines of JS add or strip the header, and `sendBatch`/`writeBatch` send the batch. With
 * `spin` it polls like `podwire daemon --busy-poll` (the addon's `spinPoll`, 20 ms budget).
 *
 * Beside the C relay it splits podwire's cross-node ping into three parts (bench/floor.ts): what a
 * process per node pays (the C relay), what Node's event loop, N-API and V8 add on top (this
 * relay), and what podwire's pipeline adds (podwire itself).
 *
 *   node --import tsx bench/tools/floor-relay-node.ts TAP LOCAL_IP PEER_IP UDP_PORT VNI MAX_SECONDS [spin]
 *
 * It prints "ready" once the TAP and the socket exist, and exits by itself after MAX_SECONDS.
 */
import { loadAddon } from '../../src/io/native.ts';
import { ipToU32 } from '../../src/control/addressing.ts';

const VXLAN_HEADER_LEN = 8;
const VXLAN_FLAG_VNI_VALID = 0x08;
const SLOT_SIZE = 2048;
const HEADROOM = 64;   // room for the VXLAN header in front of a frame read from the TAP
const BATCH = 64;
const SPIN_BUDGET_MICROS = 20_000;

const [tapName, localIp, peerIp, portArg, vniArg, maxSecondsArg, mode] = process.argv.slice(2);
if (!maxSecondsArg) {
  console.error('usage: floor-relay-node.ts TAP LOCAL_IP PEER_IP UDP_PORT VNI MAX_SECONDS [spin]');
  process.exit(2);
}
const port = Number(portArg), vni = Number(vniArg);
const addon = loadAddon();
const tap = addon.openTap(tapName, false).fd;
const udp = addon.openUdp(ipToU32(localIp), port);

const buf = new Uint8Array(SLOT_SIZE * BATCH);
const lens = new Int32Array(BATCH), offsets = new Uint32Array(BATCH), sendLens = new Uint32Array(BATCH);
const dstAddrs = new Uint32Array(BATCH).fill(ipToU32(peerIp)), dstPorts = new Uint16Array(BATCH).fill(port);
const srcAddrs = new Uint32Array(BATCH), srcPorts = new Uint16Array(BATCH);

/** TAP -> VXLAN: write the header into the headroom in front of each frame, send the batch. */
function fromTap(): void {
  const n = addon.readBatch(tap, buf, 0, SLOT_SIZE, HEADROOM, BATCH, lens);
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (lens[i] < 0) continue;   // cut by the slot: dropped
    const h = i * SLOT_SIZE + HEADROOM - VXLAN_HEADER_LEN;
    buf.fill(0, h, h + VXLAN_HEADER_LEN);
    buf[h] = VXLAN_FLAG_VNI_VALID;
    buf[h + 4] = (vni >>> 16) & 0xff; buf[h + 5] = (vni >>> 8) & 0xff; buf[h + 6] = vni & 0xff;
    offsets[k] = h; sendLens[k] = lens[i] + VXLAN_HEADER_LEN; k++;
  }
  if (k > 0) addon.sendBatch(udp, buf, offsets, sendLens, dstAddrs, dstPorts, 0, k);
}

/** VXLAN -> TAP: skip each datagram's header, write the frames. */
function fromUdp(): void {
  const n = addon.recvBatch(udp, buf, 0, SLOT_SIZE, HEADROOM, BATCH, lens, srcAddrs, srcPorts);
  let k = 0;
  for (let i = 0; i < n; i++) {
    if (lens[i] <= VXLAN_HEADER_LEN) continue;   // truncated (-1) or no frame inside: dropped
    offsets[k] = i * SLOT_SIZE + HEADROOM + VXLAN_HEADER_LEN; sendLens[k] = lens[i] - VXLAN_HEADER_LEN; k++;
  }
  if (k > 0) addon.writeBatch(tap, buf, offsets, sendLens, 0, k);
}

const spinFds = Int32Array.from([tap, udp]), spinReady = new Uint8Array(2);
function spin(): void {
  while (addon.spinPoll(spinFds, spinReady, SPIN_BUDGET_MICROS) > 0) {
    if (spinReady[0] === 1) fromTap();
    if (spinReady[1] === 1) fromUdp();
  }
}

new addon.FdWatcher(tap, () => { fromTap(); if (mode === 'spin') spin(); }).start();
new addon.FdWatcher(udp, () => { fromUdp(); if (mode === 'spin') spin(); }).start();
setTimeout(() => process.exit(0), Number(maxSecondsArg) * 1000);
console.log('ready');
