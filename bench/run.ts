/**
 * All benchmarks, one after the other, then every table:
 *
 *   node --import tsx bench/run.ts [--seconds 5] [--runs 3] [--quick] [--udp-rate 0]
 *
 * Runs bench/same-node.ts (pod → pod on one node: podwire vs a Linux bridge with veth pairs) and
 * bench/cross-node.ts (pod → pod across two nodes over VXLAN: podwire vs the kernel's VXLAN set up
 * the way Flannel does it). Each builds its kernel baseline in the same run, on the same topology,
 * and prints medians with the podwire/kernel ratio. Read the ratios, not the absolute figures: the
 * machine is shared and has 2 cores, and the absolutes move with its load (printed at the start and
 * end of each table). The 64-byte UDP test is usually limited by iperf3 itself on 2 cores, so each
 * table is followed by what the podwire daemons forwarded and what each frame cost them in CPU
 * (their counters and /proc/<pid>/stat). Progress goes to stderr, tables to stdout.
 *
 * Defaults (5 s per test, 3 interleaved runs) take about 3 minutes; --quick is 2 s and 1 run.
 * Every namespace is the bench's own, with a unique prefix, and is removed at the end, on failure
 * and on Ctrl-C; the run ends by checking that none is left.
 */
import { sameNode } from './same-node.ts';
import { crossNode } from './cross-node.ts';
import { installSignalHandlers, parseBenchArgs, leftoverNetns, sweepNetns, usedPrefixes, progress } from './lib.ts';

installSignalHandlers();
const o = parseBenchArgs(process.argv.slice(2));
const t0 = Date.now();
const reports: string[] = [];
let failed = false;
try {
  for (const [name, fn] of [['same-node', sameNode], ['cross-node', crossNode]] as const) {
    try { reports.push(await fn(o)); } catch (e) {
      failed = true;
      reports.push(`== ${name}: FAILED: ${(e as Error).stack ?? e}`);
    }
  }
} finally {
  for (const p of usedPrefixes) await sweepNetns(p).catch(() => undefined);
}
const left = await leftoverNetns();
progress(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
console.log(`podwire benchmarks (${o.quick ? 'quick: ' : ''}${o.runs} run(s) x ${o.seconds} s per test), ${new Date().toISOString()}\n`);
console.log(reports.join('\n\n'));
console.log(`\nnamespaces left: ${left.length ? left.join(', ') : 'none'} (prefixes used: ${usedPrefixes.join(' ')})`);
process.exit(failed || left.length ? 1 : 0);
