// Sends N pseudo-random bytes to a pod agent's TCP echo port and hashes both directions.
// usage: node echo-client.mjs HOST PORT BYTES  → prints JSON {greeting, sent, received, sentSha256, receivedSha256}
import * as net from 'node:net';
import { createHash } from 'node:crypto';

const [host, portText, bytesText] = process.argv.slice(2);
const total = Number(bytesText);
const chunk = Buffer.alloc(1 << 16);
let seed = 0x9e3779b9;
const sentHash = createHash('sha256'), recvHash = createHash('sha256');
let greeting = null, pending = Buffer.alloc(0), received = 0, sent = 0;
const sock = net.connect(Number(portText), host);
sock.setTimeout(60_000, () => { console.error('timeout'); process.exit(2); });
sock.on('data', (d) => {
  if (greeting === null) {
    pending = Buffer.concat([pending, d]);
    const nl = pending.indexOf(10);
    if (nl < 0) return;
    greeting = pending.subarray(0, nl).toString();
    d = pending.subarray(nl + 1);
  }
  received += d.length; recvHash.update(d);
});
sock.on('connect', () => {
  const pump = () => {
    while (sent < total) {
      for (let i = 0; i < chunk.length; i += 4) { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; chunk.writeUInt32LE(seed, i); }
      const n = Math.min(chunk.length, total - sent);
      const piece = Buffer.from(chunk.subarray(0, n));
      sentHash.update(piece); sent += n;
      if (!sock.write(piece)) { sock.once('drain', pump); return; }
    }
    sock.end();
  };
  pump();
});
sock.on('end', () => {
  console.log(JSON.stringify({ greeting, sent, received, sentSha256: sentHash.digest('hex'), receivedSha256: recvHash.digest('hex') }));
});
sock.on('error', (e) => { console.error(e.message); process.exit(1); });
