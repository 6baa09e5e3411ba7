import { defineConfig } from 'vitest/config';

// The VM suite (`sudo scripts/vagrant-test`): one file against the Vagrant VMs, tests in order.
// Software emulation is slow, so the limits are generous; `npm test` does not collect *.vm.ts.
export default defineConfig({
  test: {
    root: new URL('../..', import.meta.url).pathname,
    include: ['test/vagrant/**/*.vm.ts'],
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 300_000,
    hookTimeout: 1_200_000,
    reporters: ['default'],
  },
});
