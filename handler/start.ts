// What the launcher runs: loads the handler bundle (flightbox-handler-main.cjs, made by
// scripts/bundle-handler.mjs from handler/main.ts) with V8's code cache, so that a crash does
// not wait for V8 to compile 170 KB of JavaScript: compiling it costs 5-8 ms of the time the
// crashed process is held, and the cache also holds the functions the last crash compiled.
//
// The cache lives in /run/flightbox (tmpfs, root's 0700 directory, as the handler's config
// cache) under a name made of the bundle's inode, size and mtime and node's version: V8 only
// checks a cache against the source's length, so the name is what ties it to this exact
// bundle. A cache V8 rejects, a directory that is not root's own, any error at all: the bundle
// is compiled as it would be without the cache; the crash never depends on it.
// Only node's built-in modules here: this file is bundled on its own and kept tiny.
import { closeSync, constants, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';

export const HANDLER_MAIN_BUNDLE = 'flightbox-handler-main.cjs';
/** Where the loader leaves what became of the cache, for the handler to record. */
export const CODE_CACHE_STATE = Symbol.for('flightbox.handler.codeCache');
const CACHE_DIR = '/run/flightbox';
const CACHE_PREFIX = 'handler-';
const MAX_CACHE_BYTES = 16 * 1024 * 1024;

/** The cache directory, when it is a real directory of ours that no one else may write. */
function cacheDirUsable(): boolean {
  try {
    if (process.getuid?.() === 0 && !existsSync(CACHE_DIR)) mkdirSync(CACHE_DIR, { mode: 0o700 });
    const st = lstatSync(CACHE_DIR);
    return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o077) === 0;
  } catch {
    return false;
  }
}

function readCache(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0 || st.size > MAX_CACHE_BYTES) return undefined;
    const buf = Buffer.allocUnsafe(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) return undefined;
      off += n;
    }
    return buf;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/** Write the cache atomically, and remove caches of other bundles (older builds). */
function writeCache(path: string, data: Buffer): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, data, { mode: 0o600, flag: 'wx' });
    renameSync(tmp, path);
    const keep = path.slice(CACHE_DIR.length + 1);
    for (const name of readdirSync(CACHE_DIR)) {
      if (name.startsWith(CACHE_PREFIX) && name !== keep && !name.endsWith('.tmp')) unlinkSync(join(CACHE_DIR, name));
    }
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // never written
    }
  }
}

function start(): void {
  const file = join(__dirname, HANDLER_MAIN_BUNDLE);
  const fd = openSync(file, constants.O_RDONLY);
  let source: string;
  let cachePath: string | null = null;
  try {
    const st = fstatSync(fd);
    source = readFileSync(fd, 'utf8');
    if (cacheDirUsable()) {
      const key = `${st.ino}-${st.size}-${Math.floor(st.mtimeMs)}-${process.version}-${process.arch}`.replace(/[^\w.-]/g, '_');
      cachePath = join(CACHE_DIR, `${CACHE_PREFIX}${key}.v8cache`);
    }
  } finally {
    closeSync(fd);
  }
  if (source.startsWith('#!')) source = `//${source.slice(2)}`;
  const cachedData = cachePath ? readCache(cachePath) : undefined;
  // The same wrapper node puts around a CommonJS module.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, { filename: file, cachedData });
  // For the manifest (handler.codeCache): whether this crash was served from the cache.
  (globalThis as Record<symbol, unknown>)[CODE_CACHE_STATE] = !cachePath ? 'off' : cachedData === undefined ? 'made' : script.cachedDataRejected ? 'rejected' : 'used';
  if (cachePath) {
    const path = cachePath;
    // After the crash is captured, with what it compiled: the next crash finds it all.
    process.once('exit', () => {
      if (cachedData === undefined || script.cachedDataRejected) writeCache(path, script.createCachedData());
    });
  }
  const mod = { exports: {} as unknown, filename: file, id: file, loaded: false };
  const fn = script.runInThisContext() as (e: unknown, r: NodeJS.Require, m: unknown, f: string, d: string) => void;
  fn.call(mod.exports, mod.exports, createRequire(file), mod, file, dirname(file));
}

start();
