/**
 * `scripts/vagrant-cluster`: drive the podwire daemons on the Vagrant VMs from the host, with the
 * namespace lab's own control plane (scheduling, the two-phase apply that shares pod addresses and
 * Service allocations between nodes), through test/vagrant/cluster.ts.
 *
 *   vagrant-cluster apply -f FILE|DIR ...     like `podwire lab apply`: the same manifests
 *   vagrant-cluster status                    the pods on every VM
 *   vagrant-cluster check                     TCP from every pod to every pod (first declared port)
 *   vagrant-cluster exec POD -- COMMAND ...   run a command in a pod's network namespace on its VM
 *
 * PODWIRE_VAGRANT_SSH_CONFIG names `vagrant ssh-config` output (the script makes it).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { VmCluster } from './cluster.ts';
import type { LabPod } from '../../src/lab/lab.ts';

function manifestFiles(args: string[]): string[] {
  const out: string[] = [];
  for (const f of args) {
    if (fs.statSync(f).isDirectory()) out.push(...fs.readdirSync(f).filter((x) => /\.ya?ml$/.test(x)).sort().map((x) => path.join(f, x)));
    else out.push(f);
  }
  return out;
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((x, i) => x.padEnd(w[i])).join('  ').trimEnd()).join('\n');
}

async function main(argv: string[]): Promise<number> {
  const dash = argv.indexOf('--');
  const { values, positionals } = parseArgs({
    args: dash >= 0 ? argv.slice(0, dash) : argv, allowPositionals: true,
    options: { file: { type: 'string', short: 'f', multiple: true } },
  });
  const cmd = positionals[0];
  const sshConfig = process.env.PODWIRE_VAGRANT_SSH_CONFIG ?? '';
  if (!sshConfig || !fs.existsSync(sshConfig)) throw new Error('PODWIRE_VAGRANT_SSH_CONFIG: no `vagrant ssh-config` output (run scripts/vagrant-cluster)');
  const hosts = fs.readFileSync(sshConfig, 'utf8').split('\n').filter((l) => /^Host node\d+\s*$/.test(l)).length;
  if (hosts === 0) throw new Error('no VM node1..nodeN is up (vagrant status)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwvg-cli-'));
  const c = await VmCluster.connect({ sshConfig, nodes: hosts, net: process.env.PODWIRE_NET ?? '192.168.56', dir });
  try {
    switch (cmd) {
      case 'apply': {
        for (const f of manifestFiles(values.file ?? [])) {
          console.log(`… applying ${f}`);
          for (const l of await c.apply(fs.readFileSync(f, 'utf8'), f)) console.log(`  ${l}`);
        }
        return 0;
      }
      case 'status': {
        const pods = await c.pods();
        console.log(table([['NODE', 'POD', 'IP', 'PORTS', 'NETNS'], ...pods.map((p) => [p.node, `${p.namespace}/${p.name}`, p.ip,
          p.ports.map((x) => `${x.containerPort}/${x.protocol}`).join(',') || '-', p.netns])]));
        return 0;
      }
      case 'check': {
        const pods = await c.pods();
        const targets = pods.filter((p) => p.ports.some((x) => x.protocol === 'TCP'));
        const name = (p: LabPod) => `${p.namespace}/${p.name}`;
        const rows = [['from \\ to', ...targets.map(name)]];
        let failures = 0;
        for (const from of pods) {
          const script = targets.map((to) => `timeout 3 bash -c 'exec 3<>/dev/tcp/${to.ip}/${to.ports.find((x) => x.protocol === 'TCP')!.containerPort}; head -n1 <&3' 2>/dev/null || echo FAIL`).join('\n');
          const got = (await c.execPod(from, ['bash', '-c', script], 300_000)).stdout.trim().split('\n');
          rows.push([name(from), ...targets.map((to, k) => (got[k] === to.name ? '✓' : (failures++, '✗')))]);
        }
        console.log(table(rows));
        console.log(failures === 0 ? 'all pods reach all pods' : `${failures} probe(s) failed (NetworkPolicy denials show as ✗)`);
        return 0;
      }
      case 'exec': {
        const ref = positionals[1] ?? '';
        const pods = await c.pods();
        const p = pods.find((x) => `${x.namespace}/${x.name}` === ref || x.name === ref);
        if (!p || dash < 0) throw new Error(`usage: vagrant-cluster exec POD -- COMMAND... (pods: ${pods.map((x) => `${x.namespace}/${x.name}`).join(', ')})`);
        const r = await c.execPod(p, argv.slice(dash + 1), 600_000);
        process.stdout.write(r.stdout); process.stderr.write(r.stderr);
        return r.code;
      }
      default:
        console.error('usage: scripts/vagrant-cluster apply -f FILE|DIR... | status | check | exec POD -- COMMAND...');
        return 2;
    }
  } finally {
    await c.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e) => { console.error(`error: ${(e as Error).message}`); process.exit(1); });
