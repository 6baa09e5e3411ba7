// A bounded UDP stream between two pods, checked in order and by hash.
//
//   node udp-stream.mjs recv PORT COUNT IDLE_S        (start first; prints one JSON line, exits)
//   node udp-stream.mjs send HOST PORT COUNT SIZE [GAP_MS]   (prints one JSON line)
//
// The sender's socket is connected, as most UDP applications' are: Linux then sets DF and gives
// its datagrams consecutive IPv4 IDs. Datagram i holds SIZE bytes: i (4 bytes), then bytes derived
// from i. It goes out in bursts of 32 with a GAP_MS pause (default 5), so a data plane sees runs of
// one flow and no socket buffer overflows (slow machines, e.g. emulated VMs, want a longer pause).
// Both sides print the count and the SHA-256 of the payloads in the order sent or received: equal
// hashes mean every datagram arrived, whole and in order. The receiver stops after COUNT
// datagrams or IDLE_S seconds without one.
import * as dgram from 'node:dgram';
import { createHash } from 'node:crypto';

const [mode, ...args] = process.argv.slice(2);

function payload(i, size) {
  const b = Buffer.alloc(size);
  b.writeUInt32BE(i, 0);
  for (let k = 4; k < size; k++) b[k] = (i * 7 + k) & 0xff;
  return b;
}

if (mode === 'recv') {
  const [port, count, idleS] = args.map(Number);
  const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
  const h = createHash('sha256');
  let n = 0, size = 0, timer;
  const done = () => {
    clearTimeout(timer);
    console.log(JSON.stringify({ received: n, size, sha256: h.digest('hex') }));
    s.close();
  };
  const arm = () => { clearTimeout(timer); timer = setTimeout(done, idleS * 1000); };
  s.on('message', (m) => {
    h.update(m);
    n++;
    size = m.length;
    if (n === count) done(); else arm();
  });
  s.bind(port, arm);
} else if (mode === 'send') {
  const [host, portS, countS, sizeS, gapS] = args;
  const [port, count, size] = [portS, countS, sizeS].map(Number);
  const gapMs = gapS === undefined ? 5 : Number(gapS);
  const s = dgram.createSocket('udp4');
  await new Promise((resolve, reject) => { s.once('error', reject); s.connect(port, host, resolve); });
  const h = createHash('sha256');
  for (let i = 0; i < count; i++) {
    const d = payload(i, size);
    h.update(d);
    await new Promise((resolve, reject) => s.send(d, (e) => (e ? reject(e) : resolve())));
    if (i % 32 === 31) await new Promise((r) => setTimeout(r, gapMs));
  }
  console.log(JSON.stringify({ sent: count, sha256: h.digest('hex') }));
  s.close();
} else {
  console.error('usage: udp-stream.mjs recv PORT COUNT IDLE_S | send HOST PORT COUNT SIZE [GAP_MS]');
  process.exit(2);
}
