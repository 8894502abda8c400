import { defineConfig } from 'vitest/config';

// `make chaos` (issue 32): kill -9 of a local cluster's agent at random moments, minutes long,
// so not in `make test` (whose projects pick *.test.ts; these files end in .chaos.ts).
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.chaos.ts'],
    fileParallelism: false,
    testTimeout: 3_600_000,
    hookTimeout: 600_000,
  },
});
