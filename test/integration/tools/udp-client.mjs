// One UDP request/response: usage node udp-client.mjs HOST PORT MESSAGE → prints the reply (JSON string) or exits 1 on timeout.
import * as dgram from 'node:dgram';
const [host, port, msg] = process.argv.slice(2);
const s = dgram.createSocket('udp4');
const t = setTimeout(() => { console.error('timeout'); process.exit(1); }, 3000);
s.on('message', (m, rinfo) => { clearTimeout(t); console.log(JSON.stringify({ reply: m.toString(), from: rinfo.address, port: rinfo.port })); s.close(); });
s.send(Buffer.from(msg), Number(port), host);
