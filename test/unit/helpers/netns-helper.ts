/**
 * Run helpers/addon-in-netns.ts inside a network namespace: `done` resolves with its JSON answer,
 * `ready` once a 'recv' helper has its socket open. 30 s timeout.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HELPER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'addon-in-netns.ts');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function addonInNetns(ns: string, mode: 'send' | 'recv', req: object): { done: Promise<any>; ready: Promise<void> } {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', HELPER, mode], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((r) => { onReady = r; });
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; if (err.includes('ready')) onReady(); });
  child.stdin.end(JSON.stringify(req));
  const done = new Promise((resolve, reject) => {
    const t = setTimeout(() => { child.kill(); reject(new Error(`${mode} helper timed out: ${err}`)); }, 30_000);
    child.on('exit', (code) => {
      clearTimeout(t);
      onReady();
      if (code === 0) resolve(JSON.parse(out.trim().split('\n').pop()!));
      else reject(new Error(`${mode} helper exited ${code}: ${err}`));
    });
  });
  return { done, ready };
}
