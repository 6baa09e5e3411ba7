/**
 * A client for the daemon's admin socket: one JSON request per line, one JSON answer per line.
 * Used by the CLI (`podwire apply`, `podwire show`), the lab and the tests.
 */
import * as net from 'node:net';

export class AdminError extends Error {}

/** Send one request and wait for its answer. Throws AdminError with the daemon's message on failure. */
export function adminRequest<T = unknown>(socketPath: string, req: object, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => { conn.destroy(); reject(new AdminError(`no answer from ${socketPath} in ${timeoutMs} ms`)); }, timeoutMs);
    conn.on('connect', () => conn.write(JSON.stringify(req) + '\n'));
    conn.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      conn.end();
      const res = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: T; error?: string };
      if (res.ok) resolve(res.result as T); else reject(new AdminError(res.error ?? 'failed'));
    });
    conn.on('error', (e) => { clearTimeout(timer); reject(new AdminError(`cannot reach the daemon at ${socketPath}: ${e.message}`)); });
  });
}
