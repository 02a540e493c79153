import { defineConfig } from 'vitest/config';

// Pure and single-process tests run in parallel (unit). Everything else changes machine-wide
// state (the real kernel core_pattern, tracefs, LTTng sessions, mounts, users) or spawns
// handlers and daemons, so those projects run one file at a time, and one project at a time.
const serial = { fileParallelism: false, testTimeout: 180_000, hookTimeout: 180_000 };

export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000 } },
      // Crash capture, recorders, triggers, CLI and mail through real parts.
      { test: { name: 'system', include: ['test/system/**/*.test.ts'], ...serial } },
      // Faults that must lose nothing (disk full, killed handler, storms, locked index).
      { test: { name: 'faults', include: ['test/faults/**/*.test.ts'], ...serial } },
      // Attacks that must fail (hostile processes, planted links, other users, namespaces).
      { test: { name: 'security', include: ['test/security/**/*.test.ts'], ...serial } },
    ],
  },
});
