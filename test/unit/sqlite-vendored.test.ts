// The one-file copy of better-sqlite3's JavaScript that the build makes
// (dist/vendor/better-sqlite3.cjs) names the package's own addon, and the built code loads
// it, addon included, without resolving the package (real SQLite files, a fresh node).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.js';

const req = createRequire(import.meta.url);
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('the vendored better-sqlite3', () => {
  const vendored = req(join(ROOT, 'dist/vendor/better-sqlite3.cjs')) as { Database: unknown; addon: string };

  it('names the package\'s own compiled addon', () => {
    const pkgAddon = join(dirname(req.resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
    expect(vendored.addon).toBe(pkgAddon);
    expect(existsSync(vendored.addon)).toBe(true);
    expect(typeof vendored.Database).toBe('function');
  });

  it('is what the built index loads: a fresh node writes and reads an index through it, and never requires the package', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fbx-sqlite-vendored-'));
    dirs.push(dir);
    const script = `
      const { IndexDb, sqliteLoadedFrom: before } = await import(${JSON.stringify(join(ROOT, 'dist/store/index-db.js'))});
      const db = new IndexDb(${JSON.stringify(join(dir, 'index.sqlite'))}, { busyTimeoutMs: 1000 });
      const v = db.db.prepare('SELECT sqlite_version() AS v').get().v;
      db.close();
      const m = await import(${JSON.stringify(join(ROOT, 'dist/store/index-db.js'))});
      const fromPackage = Object.keys(require.cache ?? {}).filter((k) => k.includes('/node_modules/better-sqlite3/lib/'));
      console.log(JSON.stringify({ before, after: m.sqliteLoadedFrom, v, fromPackage }));
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);${script}`], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim()) as { before: string | null; after: string; v: string; fromPackage: string[] };
    expect(out.before).toBeNull(); // loaded on first use, not at import
    expect(out.after).toBe('vendored');
    expect(out.v).toMatch(/^3\.\d+\.\d+$/);
    expect(out.fromPackage).toEqual([]);
  });
});
