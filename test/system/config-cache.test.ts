// The handler's parsed-config cache (/run/flightbox): a crash must be captured with the
// config as it is now, never with a stale parse. Real handler runs on a real core.
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, makeTempStore, type TempStore } from '../helpers.js';
import { compileWaiter, gcore, kernelArgs, runHandler, startProcess, stopAll, stopProcess } from './procs.js';

const CACHE_DIR = '/run/flightbox';

function bundlesUnder(root: string): string[] {
  const base = join(root, 'bundles');
  if (!existsSync(base)) return [];
  return readdirSync(base).flatMap((day) => readdirSync(join(base, day)));
}

/** The cache entries that name `configPath`. */
function entriesFor(configPath: string): { file: string; text: string }[] {
  if (!existsSync(CACHE_DIR)) return [];
  return readdirSync(CACHE_DIR)
    .filter((n) => n.startsWith('config-'))
    .map((n) => ({ file: join(CACHE_DIR, n), json: JSON.parse(readFileSync(join(CACHE_DIR, n), 'utf8')) as { path: string; text: string } }))
    .filter((e) => e.json.path === configPath)
    .map((e) => ({ file: e.file, text: e.json.text }));
}

describe.skipIf(!IS_ROOT)('the handler\'s parsed-config cache', () => {
  let work: string;
  let s: TempStore;
  let waiter: string;

  async function capture(): Promise<void> {
    const p = await startProcess(waiter, ['fbx-cache'], 'fbx-cache');
    try {
      const core = gcore(p.pid, join(work, 'core'));
      const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid }), core);
      expect(r.code).toBe(0);
      rmSync(core, { force: true });
    } finally {
      stopProcess(p);
    }
  }

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fbx-cache-'));
    waiter = compileWaiter(work);
    s = makeTempStore('backtrace:\n  tool: none\n');
  });
  afterAll(() => {
    stopAll();
    for (const e of s ? entriesFor(s.configPath) : []) rmSync(e.file, { force: true });
    s?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('a crash leaves a root-only entry holding the config\'s exact text', async () => {
    await capture();
    expect(bundlesUnder(s.root)).toHaveLength(1);
    const entries = entriesFor(s.configPath);
    expect(entries).toHaveLength(1);
    expect(entries[0]!.text).toBe(readFileSync(s.configPath, 'utf8'));
    expect(statSync(CACHE_DIR).mode & 0o777).toBe(0o700);
    expect(statSync(entries[0]!.file).mode & 0o777).toBe(0o600);
  });

  it('after the config changes, the next crash follows the new config, not the cached parse', async () => {
    const elsewhere = join(s.dir, 'store-b');
    const text = readFileSync(s.configPath, 'utf8').replace(`root: ${s.root}`, `root: ${elsewhere}`);
    expect(text).toContain(elsewhere);
    writeFileSync(s.configPath, text);
    await capture();
    expect(bundlesUnder(elsewhere)).toHaveLength(1);
    expect(bundlesUnder(s.root)).toHaveLength(1); // the first crash only
    expect(entriesFor(s.configPath).map((e) => e.text)).toEqual([text]);
  });

  it('an entry whose text differs from the file is never used (stale or forged)', async () => {
    const [entry] = entriesFor(s.configPath);
    const forged = JSON.parse(readFileSync(entry!.file, 'utf8')) as { text: string; loaded: { config: { store: { root: string } } } };
    const decoy = join(s.dir, 'store-decoy');
    forged.loaded.config.store.root = decoy;
    forged.text = `${forged.text}# another text\n`;
    writeFileSync(entry!.file, JSON.stringify(forged));
    const b = bundlesUnder(join(s.dir, 'store-b')).length;
    await capture();
    expect(existsSync(decoy)).toBe(false);
    expect(bundlesUnder(join(s.dir, 'store-b')).length).toBe(b + 1);
  });

  it('a cache directory writable by others is not trusted: the config is parsed', async () => {
    chmodSync(CACHE_DIR, 0o777);
    try {
      const [entry] = entriesFor(s.configPath);
      const forged = JSON.parse(readFileSync(entry!.file, 'utf8')) as { loaded: { config: { store: { root: string } } } };
      const decoy = join(s.dir, 'store-decoy2');
      forged.loaded.config.store.root = decoy;
      writeFileSync(entry!.file, JSON.stringify(forged));
      const b = bundlesUnder(join(s.dir, 'store-b')).length;
      await capture();
      expect(existsSync(decoy)).toBe(false);
      expect(bundlesUnder(join(s.dir, 'store-b')).length).toBe(b + 1);
    } finally {
      chmodSync(CACHE_DIR, 0o700);
    }
  });
});
