// A fresh index file per test, in a temp dir removed afterwards with every IndexDb opened on it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { INDEX_FILE, IndexDb } from '../../store/index-db.js';

export interface TempIndex {
  /** The temp dir of the current test. */
  readonly dir: string;
  /** Its index file (not created until opened). */
  readonly path: string;
  /** Open the index (closed after the test). */
  openDb(opts?: { readonly?: boolean }): IndexDb;
}

/** Call at the top of a test file: beforeEach makes the dir, afterEach closes and removes. */
export function useTempIndex(prefix: string): TempIndex {
  let dir = '';
  const open: IndexDb[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), prefix));
  });
  afterEach(() => {
    for (const db of open.splice(0)) db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    get dir() { return dir; },
    get path() { return join(dir, INDEX_FILE); },
    openDb(opts = {}) {
      const db = new IndexDb(join(dir, INDEX_FILE), { busyTimeoutMs: 2000, ...opts });
      open.push(db);
      return db;
    },
  };
}
