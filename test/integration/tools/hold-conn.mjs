// Hold one TCP connection open and echo through it on demand: usage node hold-conn.mjs HOST PORT
// Prints `greeting <line>` once connected. Then for each line read on stdin, sends it and prints
// `echo ok` when it comes back within 1.5 s, `echo timeout` otherwise (`echo error <code>` if the
// socket failed). A connection cut by a policy drop shows as `echo timeout`.
import * as net from 'node:net';
import * as readline from 'node:readline';
const [host, port] = process.argv.slice(2);
const s = net.createConnection({ host, port: Number(port) });
s.setEncoding('utf8');
let buf = '', greeted = false, waiting = null, failed = null;
s.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
    if (!greeted) { greeted = true; console.log(`greeting ${line}`); continue; }
    if (waiting && line === waiting.msg) { clearTimeout(waiting.timer); waiting = null; console.log('echo ok'); }
  }
});
s.on('error', (e) => { failed = e.code || e.message; if (!greeted) { console.log(`error ${failed}`); process.exit(1); } });
const rl = readline.createInterface({ input: process.stdin });
let n = 0;
rl.on('line', () => {
  if (failed) { console.log(`echo error ${failed}`); return; }
  const msg = `m${++n}`;
  const timer = setTimeout(() => { waiting = null; console.log('echo timeout'); }, 1500);
  waiting = { msg, timer };
  s.write(msg + '\n');
});
rl.on('close', () => { s.destroy(); process.exit(0); });
