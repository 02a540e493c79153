// The index loads better-sqlite3's compiled addon by its path, not through the `bindings`
// package's search (a dozen stats, 2-3 ms of every crash handler and CLI command).
// Its own file: the module cache must not hold an addon another test loaded the other way.
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { INDEX_FILE, IndexDb } from '../../store/index-db.js';

it('opens the index with the addon named directly, never loading `bindings`', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fbx-addon-'));
  try {
    const db = new IndexDb(join(dir, INDEX_FILE), { busyTimeoutMs: 1000 });
    db.close();
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    expect(loaded.filter((k) => k.endsWith('better_sqlite3.node'))).toHaveLength(1);
    expect(loaded.filter((k) => k.includes('/node_modules/bindings/'))).toEqual([]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
