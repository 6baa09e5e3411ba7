import { defineConfig } from 'vitest/config';

// Integration tests build real network-namespace labs; running them one file at a time keeps a
// 2-core machine's figures sane and the namespaces of different files apart.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
