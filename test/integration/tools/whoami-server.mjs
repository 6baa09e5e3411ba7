// A TCP server that answers each connection with the peer's address as the kernel saw it, then closes.
// usage: node whoami-server.mjs PORT  (prints "ready" when listening)
import * as net from 'node:net';
const srv = net.createServer((c) => c.end(`${c.remoteAddress}\n`));
srv.listen(Number(process.argv[2]), '0.0.0.0', () => console.log('ready'));
setTimeout(() => process.exit(0), 120_000).unref();
process.on('SIGTERM', () => process.exit(0));
