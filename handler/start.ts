// What the launcher runs: loads the handler bundle (flightbox-handler-main.cjs, made by
// scripts/bundle-handler.mjs from handler/main.ts) with V8's code cache, so that a crash does
// not wait for V8 to compile 170 KB of JavaScript: compiling it costs 5-8 ms of the time the
// crashed process is held, and the cache also holds the functions the last crash compiled.
//
// The cache lives in /run/flightbox (handler/run-dir.ts, beside the config cache) under a
// name made of the bundle's inode, size and mtime and node's version: V8 only checks a cache
// against the source's length, so the name is what ties it to this exact bundle. A cache V8
// rejects, a directory that is not root's own, any error at all: the bundle is compiled as it
// would be without the cache; the crash never depends on it.
// Bundled on its own (with the few safe-fs helpers it uses) and kept tiny.
import { closeSync, constants, fstatSync, openSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { checkSecureDir, ensureSecureDir, readNoFollow, writeFileAtomic } from '../lib/safe-fs.js';
import type { CodeCacheState } from '../store/manifest.js';
import { CODE_CACHE_STATE, HANDLER_RUN_DIR } from './run-dir.js';

export const HANDLER_MAIN_BUNDLE = 'flightbox-handler-main.cjs';
const CACHE_PREFIX = 'handler-';
const MAX_CACHE_BYTES = 16 * 1024 * 1024;

/** The cache directory (made by root when missing), when it is one to trust. */
function cacheDirUsable(): boolean {
  try {
    if (process.getuid?.() === 0) ensureSecureDir(HANDLER_RUN_DIR, 0o700);
    else checkSecureDir(HANDLER_RUN_DIR);
    return true;
  } catch {
    return false;
  }
}

function readCache(path: string): Buffer | undefined {
  try {
    return readNoFollow(path, MAX_CACHE_BYTES);
  } catch {
    return undefined;
  }
}

/** Write the cache, and remove caches of other bundles (older builds). */
function writeCache(name: string, data: Buffer): void {
  try {
    writeFileAtomic(HANDLER_RUN_DIR, name, data, 0o600);
    for (const other of readdirSync(HANDLER_RUN_DIR)) {
      if (other.startsWith(CACHE_PREFIX) && other !== name) unlinkSync(join(HANDLER_RUN_DIR, other));
    }
  } catch {
    // a cache is never worth a failed crash capture
  }
}

function start(): void {
  // A bundle's fsyncs go out together (lib/safe-fs syncTreeAtOnce): more of them at once
  // than libuv's default four threads. Read when the pool first starts, which is later.
  process.env.UV_THREADPOOL_SIZE ??= '16';
  const file = join(__dirname, HANDLER_MAIN_BUNDLE);
  const fd = openSync(file, constants.O_RDONLY);
  let source: string;
  let cacheName: string | null = null;
  try {
    const st = fstatSync(fd);
    source = readFileSync(fd, 'utf8');
    if (cacheDirUsable()) {
      const key = `${st.ino}-${st.size}-${Math.floor(st.mtimeMs)}-${process.version}-${process.arch}`.replace(/[^\w.-]/g, '_');
      cacheName = `${CACHE_PREFIX}${key}.v8cache`;
    }
  } finally {
    closeSync(fd);
  }
  if (source.startsWith('#!')) source = `//${source.slice(2)}`;
  const cachedData = cacheName ? readCache(join(HANDLER_RUN_DIR, cacheName)) : undefined;
  // The same wrapper node puts around a CommonJS module.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
  // For the manifest (handler.codeCache): whether this crash was served from the cache.
  const state: CodeCacheState = !cacheName ? 'off' : cachedData === undefined ? 'made' : script.cachedDataRejected ? 'rejected' : 'used';
  (globalThis as Record<symbol, unknown>)[CODE_CACHE_STATE] = state;
  if (cacheName && state !== 'used') {
    const name = cacheName;
    // After the crash is captured, with what it compiled: the next crash finds it all.
    process.once('exit', () => writeCache(name, script.createCachedData()));
  }
  const mod = { exports: {} as unknown, filename: file, id: file, loaded: false };
  const fn = script.runInThisContext() as (e: unknown, r: NodeJS.Require, m: unknown, f: string, d: string) => void;
  fn.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
}

start();
