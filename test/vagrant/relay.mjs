// The VM side of the VM suite: one long-lived process per VM, started as root over one SSH session
// (`ssh node1 sudo node /opt/podwire/test/vagrant/relay.mjs`), so the host pays the SSH and Node.js
// start-up once, not per command. JSON lines on stdin, one JSON line answer per request on stdout:
//
//   {"id":1,"op":"admin","socket":"/run/podwire/node1.sock","line":"{\"op\":\"status\"}"}
//       -> {"id":1,"ok":true,"line":"<the daemon's answer line>"}
//   {"id":2,"op":"exec","argv":["ip","netns","exec","pw-x","ping","-c1","10.244.2.3"],"timeoutMs":20000}
//       -> {"id":2,"ok":true,"code":0,"stdout":"...","stderr":"..."}
//
// Requests run concurrently; answers carry the request's id. Plain JavaScript: no loader needed.
import * as net from 'node:net';
import { execFile } from 'node:child_process';
import * as readline from 'node:readline';

const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

function admin(id, socket, line, timeoutMs) {
  const conn = net.createConnection(socket);
  let buf = '';
  let done = false;
  const finish = (o) => { if (done) return; done = true; clearTimeout(timer); conn.destroy(); out({ id, ...o }); };
  const timer = setTimeout(() => finish({ ok: false, error: `no answer from ${socket} in ${timeoutMs} ms` }), timeoutMs);
  conn.on('connect', () => conn.write(line + '\n'));
  conn.on('data', (d) => {
    buf += d;
    const nl = buf.indexOf('\n');
    if (nl >= 0) finish({ ok: true, line: buf.slice(0, nl) });
  });
  conn.on('error', (e) => finish({ ok: false, error: `cannot reach ${socket}: ${e.message}` }));
  conn.on('close', () => finish({ ok: false, error: `${socket} closed without an answer` }));
}

function exec(id, argv, timeoutMs, input) {
  const child = execFile(argv[0], argv.slice(1), { timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
    const code = err ? (typeof err.code === 'number' ? err.code : (err.killed ? 124 : 1)) : 0;
    out({ id, ok: true, code, stdout: String(stdout), stderr: String(stderr) });
  });
  if (input !== undefined) child.stdin.end(input); else child.stdin.end();
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (l) => {
  let req;
  try { req = JSON.parse(l); } catch { out({ id: -1, ok: false, error: `not JSON: ${l.slice(0, 80)}` }); return; }
  try {
    if (req.op === 'admin') admin(req.id, req.socket, req.line, req.timeoutMs ?? 120_000);
    else if (req.op === 'exec') exec(req.id, req.argv, req.timeoutMs ?? 60_000, req.input);
    else out({ id: req.id, ok: false, error: `unknown op ${req.op}` });
  } catch (e) {
    out({ id: req.id, ok: false, error: String(e) });
  }
});
rl.on('close', () => process.exit(0));
out({ id: 0, ok: true, ready: true, node: process.version });
