// Shared test helpers: temporary stores, the built CLI and handler, crasher programs.
import { spawnSync, type ChildProcess, type SpawnSyncOptions } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { overflowDir } from '../handler/run-dir.js';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(ROOT, 'dist/cli/main.js');
/** The handler the launcher runs (the one-file bundle of handler/main.ts). */
export const HANDLER = join(ROOT, 'dist/handler/flightbox-handler.cjs');
export const FIXTURES = join(ROOT, 'test/fixtures');
export const IS_ROOT = process.getuid?.() === 0;

export interface TempStore {
  dir: string;
  root: string;
  configPath: string;
  cleanup(): void;
}

/**
 * A temp dir with a config whose store.root is inside it. `extra` is appended YAML (new
 * sections); `storeExtra` adds lines under `store:` (e.g. '  busyTimeout: 300ms\n').
 */
export function makeTempStore(extra = '', storeExtra = ''): TempStore {
  const dir = mkdtempSync(join(tmpdir(), 'fbx-'));
  const root = join(dir, 'store');
  const configPath = join(dir, 'flightbox.yaml');
  // Tests crash one executable many times, and many at once: the per-executable core rate
  // limit and the cap on concurrent handlers are off unless a test sets them. Without a
  // `core:` section of the test's own, one is added before `install:` (tests append to
  // install: at the end); with one, the keys go at its end, so the test's own lines keep
  // their line numbers.
  const defaults = ['maxPerExePerHour', 'maxConcurrent'];
  let core = '';
  let extraWithLimit = extra;
  const section = /^core:\n((?: .*\n)*)/m.exec(extra);
  if (!section) core = `core:\n${defaults.map((k) => `  ${k}: null\n`).join('')}`;
  else {
    const end = section.index + section[0].length;
    const add = defaults.filter((k) => !new RegExp(k).test(section[0])).map((k) => `  ${k}: null\n`).join('');
    extraWithLimit = `${extra.slice(0, end)}${add}${extra.slice(end)}`;
  }
  writeFileSync(configPath, `store:\n  root: ${root}\n${storeExtra}${core}install:\n  sysctlDropIn: ${join(dir, '60-flightbox.conf')}\n${extraWithLimit}`);
  return {
    dir, root, configPath,
    cleanup: () => {
      rmSync(dir, { recursive: true, force: true });
      // the launcher's crash-storm directory on tmpfs, which a handler makes when core.maxConcurrent is set
      rmSync(overflowDir(root), { recursive: true, force: true });
    },
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], opts: SpawnSyncOptions = {}): RunResult {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, ...opts });
  return { code: r.status, stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

const BIN_DIR = join(ROOT, 'test/fixtures/bin');

/** Compile test/fixtures/NAME.c with -g -O0 (once per run) and return the binary's path. */
export function buildCrasher(name: string, extraFlags: string[] = []): string {
  mkdirSync(BIN_DIR, { recursive: true });
  const out = join(BIN_DIR, name);
  const src = join(FIXTURES, `${name}.c`);
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    const r = spawnSync('gcc', ['-g', '-O0', '-o', out, src, ...extraFlags], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gcc failed for ${name}: ${r.stderr}`);
  }
  return out;
}

export function readJson<T = unknown>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

export async function waitFor<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 60_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** waitFor for a plain condition, condition first: polls every `everyMs` (10 ms) for up to `timeoutMs` (10 s). */
export async function waitUntil(cond: () => boolean, what: string, timeoutMs = 10_000, everyMs = 10): Promise<void> {
  await waitFor(what, cond, timeoutMs, everyMs);
}

/** SIGKILL a child and wait for its exit; nothing if it is null or already gone. */
export async function killAndWait(child: ChildProcess | null): Promise<void> {
  if (child === null || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

/** Write files under root (directories made as needed); a null text removes the file. */
export function writeTree(root: string, files: Record<string, string | null>): void {
  for (const [rel, text] of Object.entries(files)) {
    const path = join(root, rel);
    if (text === null) {
      rmSync(path, { force: true });
      continue;
    }
    mkdirSync(join(path, '..'), { recursive: true });
    writeFileSync(path, text);
  }
}
