import { defineConfig } from 'vitest/config';

// Integration tests build namespaces, veths and BPF state on a 2-core machine:
// run test files one at a time so they never compete for the kernel or the CPU.
export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'dist/**'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
