/**
 * System plumbing: the few `ip` and `sysctl` invocations the control plane needs.
 *
 * Namespaces are switched by iproute2 in child processes (`ip -n NS ...`, `ip netns exec NS ...`),
 * never by the daemon's own thread: switching the namespace of a thread inside a multithreaded
 * runtime is how CNI plugins learned to leak interfaces into the wrong namespace (see the CNI
 * plugins' pkg/ns README). Several `ip` commands for one namespace go through one `ip -batch`
 * process, so creating a pod costs a handful of processes, not dozens.
 */
import { execFile, spawn } from 'node:child_process';

export class CommandError extends Error {
  readonly command: string;
  readonly stderr: string;
  constructor(command: string, stderr: string) {
    super(`${command}: ${stderr.trim() || 'failed'}`);
    this.command = command; this.stderr = stderr;
  }
}

/** Run a command; resolve with stdout, reject with a CommandError carrying stderr. */
export function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new CommandError(`${cmd} ${args.join(' ')}`, String(stderr || err.message)));
      else resolve(String(stdout));
    });
    if (input !== undefined) child.stdin!.end(input);
  });
}

/** Run several `ip` commands (one per line, without the leading `ip`) in one process. */
export function ipBatch(lines: string[], netns?: string): Promise<string> {
  const args = netns ? ['-n', netns, '-batch', '-'] : ['-batch', '-'];
  return run('ip', args, lines.join('\n') + '\n');
}

/** `ip netns list` names. */
export async function listNetns(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out.split('\n').map((l) => l.split(' ')[0]).filter((x) => x.length > 0);
}

/** Delete a namespace; a missing one is not an error (idempotent, like a CNI DEL). */
export async function deleteNetns(name: string): Promise<void> {
  try { await run('ip', ['netns', 'del', name]); } catch (e) {
    if (!/No such file|not exist|Invalid argument/i.test((e as CommandError).stderr ?? '')) throw e;
  }
}

/** Set sysctls inside a namespace (`ip netns exec NS sysctl -q -w k=v ...`). */
export function sysctlIn(netns: string, settings: Record<string, string | number>): Promise<string> {
  const args = ['netns', 'exec', netns, 'sysctl', '-q', '-w', ...Object.entries(settings).map(([k, v]) => `${k}=${v}`)];
  return run('ip', args);
}

export { spawn };
