// The handler's V8 code cache (/run/flightbox/handler-*.v8cache): it makes the handler start
// faster and must never cost a crash. Real handler runs on real cores: a cache is made, a
// garbage cache is rejected and replaced, a cache is only used for the very file it was made
// from, and a directory others may write is neither read nor written.
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, closeSync, openSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HANDLER, IS_ROOT, ROOT, makeTempStore, type TempStore } from '../helpers.js';
import { compileWaiter, gcore, kernelArgs, startProcess, stopAll, stopProcess } from './procs.js';

const CACHE_DIR = '/run/flightbox';
const MAIN_BUNDLE = join(ROOT, 'dist/handler/flightbox-handler-main.cjs');

function cacheNameFor(bundle: string): string {
  const st = statSync(bundle);
  return `handler-${st.ino}-${st.size}-${Math.floor(st.mtimeMs)}-${process.version}-${process.arch}.v8cache`.replace(/[^\w.-]/g, '_');
}

function handlerCaches(): string[] {
  return existsSync(CACHE_DIR) ? readdirSync(CACHE_DIR).filter((n) => n.startsWith('handler-')) : [];
}

/** handler.codeCache of the newest bundle's manifest. */
function lastCodeCache(root: string): unknown {
  const base = join(root, 'bundles');
  const all = readdirSync(base).flatMap((day) => readdirSync(join(base, day)).map((id) => join(base, day, id))).sort();
  const m = JSON.parse(readFileSync(join(all.at(-1)!, 'manifest.json'), 'utf8')) as { handler: { codeCache?: unknown } };
  return m.handler.codeCache;
}

function bundlesUnder(root: string): number {
  const base = join(root, 'bundles');
  if (!existsSync(base)) return 0;
  return readdirSync(base).flatMap((day) => readdirSync(join(base, day))).length;
}

describe.skipIf(!IS_ROOT)('the handler\'s code cache', () => {
  let work: string;
  let s: TempStore;
  let waiter: string;

  /** One crash through `handler` (a real process's core on stdin); returns the exit code. */
  async function capture(handler = HANDLER): Promise<number> {
    const p = await startProcess(waiter, ['fbx-codecache'], 'fbx-codecache');
    try {
      const core = gcore(p.pid, join(work, 'core'));
      const fd = openSync(core, 'r');
      try {
        const child = spawn(process.execPath, [handler, '--config', s.configPath, '--', ...kernelArgs({ pid: p.pid })], { stdio: [fd, 'ignore', 'ignore'] });
        return await new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
      } finally {
        closeSync(fd);
        rmSync(core, { force: true });
      }
    } finally {
      stopProcess(p);
    }
  }

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'fbx-codecache-'));
    waiter = compileWaiter(work);
    s = makeTempStore('backtrace:\n  tool: none\n');
    for (const n of handlerCaches()) rmSync(join(CACHE_DIR, n), { force: true });
  });
  afterAll(() => {
    stopAll();
    s?.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it('a crash leaves a root-only cache named after the exact bundle file', async () => {
    expect(await capture()).toBe(0);
    expect(lastCodeCache(s.root)).toBe('made');
    expect(handlerCaches()).toEqual([cacheNameFor(MAIN_BUNDLE)]);
    expect(statSync(join(CACHE_DIR, cacheNameFor(MAIN_BUNDLE))).mode & 0o777).toBe(0o600);
    expect(statSync(join(CACHE_DIR, cacheNameFor(MAIN_BUNDLE))).size).toBeGreaterThan(10_000);
    expect(bundlesUnder(s.root)).toBe(1);
  });

  it('a garbage cache does not cost the crash, and is replaced by a good one', async () => {
    const path = join(CACHE_DIR, cacheNameFor(MAIN_BUNDLE));
    const garbage = Buffer.alloc(statSync(path).size, 0xa5);
    writeFileSync(path, garbage, { mode: 0o600 });
    expect(await capture()).toBe(0);
    expect(bundlesUnder(s.root)).toBe(2);
    expect(lastCodeCache(s.root)).toBe('rejected');
    expect(readFileSync(path).equals(garbage)).toBe(false);
    // and the rewritten cache serves the next crash
    expect(await capture()).toBe(0);
    expect(bundlesUnder(s.root)).toBe(3);
    expect(lastCodeCache(s.root)).toBe('used');
  });

  it('another file of the same bundle gets its own cache, and the old one goes', async () => {
    const dir = mkdtempSync(join(ROOT, 'dist/handler/.copy-'));
    try {
      // The copy's main bundle has the same length as the original but is another file.
      copyFileSync(HANDLER, join(dir, 'flightbox-handler.cjs'));
      copyFileSync(MAIN_BUNDLE, join(dir, 'flightbox-handler-main.cjs'));
      const before = cacheNameFor(MAIN_BUNDLE);
      expect(await capture(join(dir, 'flightbox-handler.cjs'))).toBe(0);
      expect(bundlesUnder(s.root)).toBe(4);
      expect(lastCodeCache(s.root)).toBe('made');
      expect(handlerCaches()).toEqual([cacheNameFor(join(dir, 'flightbox-handler-main.cjs'))]);
      expect(handlerCaches()).not.toContain(before);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a cache directory others may write is neither read nor written', async () => {
    for (const n of handlerCaches()) rmSync(join(CACHE_DIR, n), { force: true });
    chmodSync(CACHE_DIR, 0o777);
    try {
      // A planted cache of the right name, full of garbage: not even read.
      const planted = join(CACHE_DIR, cacheNameFor(MAIN_BUNDLE));
      writeFileSync(planted, Buffer.alloc(100_000, 0x5a), { mode: 0o600 });
      expect(await capture()).toBe(0);
      expect(bundlesUnder(s.root)).toBe(5);
      expect(lastCodeCache(s.root)).toBe('off');
      expect(readFileSync(planted).equals(Buffer.alloc(100_000, 0x5a))).toBe(true);
      expect(handlerCaches()).toEqual([cacheNameFor(MAIN_BUNDLE)]);
    } finally {
      chmodSync(CACHE_DIR, 0o700);
      for (const n of handlerCaches()) rmSync(join(CACHE_DIR, n), { force: true });
    }
  });
});
