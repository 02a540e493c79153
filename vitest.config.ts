import { defineConfig } from 'vitest/config';

// Two projects: pure and single-process tests run in parallel; system tests (the real
// kernel core_pattern, spawned handlers and CLIs) run one file at a time, because they
// change machine-wide state that must never be shared between two tests at once.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'system',
          include: ['test/system/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
