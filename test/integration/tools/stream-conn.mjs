// Keep one TCP connection busy: usage node stream-conn.mjs HOST PORT
// Connects, prints `greeting <line>`, then writes without pause (respecting backpressure) to a
// peer that echoes, counting the bytes that come back. Each line read on stdin is answered with
// `rx <bytes echoed so far>`. A connection cut by a policy drop stops counting.
import * as net from 'node:net';
import * as readline from 'node:readline';
const [host, port] = process.argv.slice(2);
const s = net.createConnection({ host, port: Number(port) });
const chunk = Buffer.alloc(16384, 0x61);
let greeted = false, head = '', rx = 0, failed = null;
s.on('data', (d) => {
  if (greeted) { rx += d.length; return; }
  head += d.toString('latin1');
  const nl = head.indexOf('\n');
  if (nl < 0) return;
  greeted = true;
  console.log(`greeting ${head.slice(0, nl)}`);
  rx += head.length - nl - 1;
  pump();
});
function pump() { while (!failed && s.write(chunk)); }
s.on('drain', pump);
s.on('error', (e) => { failed = e.code || e.message; if (!greeted) { console.log(`error ${failed}`); process.exit(1); } });
const rl = readline.createInterface({ input: process.stdin });
rl.on('line', () => console.log(failed ? `rx ${rx} error ${failed}` : `rx ${rx}`));
rl.on('close', () => { s.destroy(); process.exit(0); });
