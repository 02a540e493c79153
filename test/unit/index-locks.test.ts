// Two index connections in one process (the daemon's and its crash worker's) and other
// processes opening and closing the index (list, handlers, drainers): the first process must
// keep its SQLite locks, or the last of the others to close checkpoints and deletes the WAL it
// still writes to, and what it writes next is seen by no one. Opening a Store's index once
// more in the same process must not drop them (lib/safe-fs ensurePrivateFile used to open and
// close each index file to check it, and on Linux any close drops the process's fcntl locks).
// Real SQLite files, a real second process.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Store } from '../../store/store.js';
import { ROOT } from '../helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** In another process: open the index, read, close; then whether a table named `t` is there. */
function otherProcessSees(root: string, table: string): boolean {
  const script = `
    const Database = require(${JSON.stringify(join(ROOT, 'node_modules/better-sqlite3'))});
    const db = new Database(${JSON.stringify(join(root, 'index.sqlite'))});
    const n = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = ?").get(${JSON.stringify(table)}).n;
    db.close();
    process.stdout.write(String(n));`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout === '1';
}

describe('a second index connection in the same process', () => {
  it('keeps the first one\'s locks: the WAL stays, and what it writes after is seen by others', () => {
    const root = mkdtempSync(join(tmpdir(), 'fbx-locks-'));
    dirs.push(root);
    const first = new Store(root, { create: true, busyTimeoutMs: 1000 });
    const second = new Store(root, { create: true, busyTimeoutMs: 1000 });
    try {
      first.index().list({ limit: 1 });
      expect(existsSync(join(root, 'index.sqlite-wal'))).toBe(true);
      second.index().list({ limit: 1 });
      // another process opens and closes the index: it must not take itself for the last one
      expect(otherProcessSees(root, 'probe1')).toBe(false);
      expect(existsSync(join(root, 'index.sqlite-wal'))).toBe(true);
      first.index().db.exec('CREATE TABLE probe1 (x)');
      expect(otherProcessSees(root, 'probe1')).toBe(true);
    } finally {
      second.close();
      first.close();
    }
  });
});
