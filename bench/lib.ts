// Shared pieces of `npm run bench`: every section returns rows; run.ts prints one table
// and writes bench/results.json. Benchmarks measure and print; they assert nothing.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { overflowDir } from '../handler/run-dir.js';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One measured figure, optionally beside a reference measured in the same run. */
export interface Row {
  /** Section number and name from the performance issue, e.g. "1 ingestion". */
  section: string;
  /** What was measured, e.g. "held 1 GiB random, 4 threads". */
  case: string;
  /** The system under test, e.g. "flightbox", "cat > file", "systemd-coredump". */
  subject: string;
  /** Median of the runs (null when it could not be measured; say why in `note`). */
  value: number | null;
  unit: 'ms' | 's' | 'MiB' | 'B' | '%' | 'count' | 'ops/s' | 'x';
  runs: number;
  /** value / reference value of the same case in the same run, when there is one. */
  ratio?: number | null;
  /** The target in words, e.g. "≤ 1.2 × cat", and whether it was met. */
  target?: string;
  met?: boolean | null;
  note?: string;
}

export interface BenchOptions {
  /** Small sizes and few runs: for developing the benchmark, not for the README. */
  quick: boolean;
  runs: number;
  /** Scratch directory for this run (stores, cores, fixtures). */
  workDir: string;
  log: (msg: string) => void;
}

export type Section = (opts: BenchOptions) => Promise<Row[]>;

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function ratio(value: number | null, reference: number | null): number | null {
  if (value === null || reference === null || reference === 0) return null;
  return value / reference;
}

function fmt(v: number | null, unit: string): string {
  if (v === null) return 'n/a';
  const digits = Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${unit}`;
}

/** A plain-text table, one row per figure, grouped by section. */
export function renderTable(rows: readonly Row[]): string {
  const head = ['section', 'case', 'subject', 'median', 'runs', 'ratio', 'target', 'met'];
  const body = rows.map((r) => [
    r.section, r.case, r.subject, fmt(r.value, r.unit), String(r.runs),
    r.ratio === undefined || r.ratio === null ? '' : `${r.ratio.toFixed(2)}x`,
    r.target ?? '', r.met === undefined || r.met === null ? '' : r.met ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

/** The same table as Markdown, for the README's performance section. */
export function renderMarkdown(rows: readonly Row[]): string {
  const out = ['| section | case | subject | median | runs | ratio | target | met |', '|---|---|---|---|---|---|---|---|'];
  for (const r of rows) {
    out.push(`| ${r.section} | ${r.case} | ${r.subject} | ${fmt(r.value, r.unit)} | ${r.runs} | ${r.ratio == null ? '' : `${r.ratio.toFixed(2)}×`} | ${r.target ?? ''} | ${r.met == null ? '' : r.met ? 'yes' : '**no**'} |`);
  }
  return out.join('\n');
}

/** The repository's root and the built CLI (`npm run bench` builds first). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CLI = join(REPO_ROOT, 'dist/cli/main.js');

/** A small seeded PRNG (mulberry32): generated data sets are the same in every run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** CLOCK_MONOTONIC in nanoseconds (as a number: exact to well under a microsecond for months of uptime). */
export function monoNs(): number {
  return Number(process.hrtime.bigint());
}

/**
 * Compile bench/fixtures/NAME.c (gcc -O2, once per work dir) and return the binary's path.
 * Throws with gcc's message when it fails.
 */
export function compileFixture(name: string, workDir: string, flags: readonly string[] = []): string {
  const src = join(REPO_ROOT, 'bench/fixtures', `${name}.c`);
  const binDir = join(workDir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const out = join(binDir, name);
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    const r = spawnSync('gcc', ['-O2', '-Wall', '-o', out, src, ...flags], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`gcc failed for bench/fixtures/${name}.c: ${r.stderr || r.error?.message}`);
  }
  return out;
}

/** A flightbox store of the bench's own: a config in `dir`, the store in `dir/store`. */
export interface BenchStore {
  dir: string;
  root: string;
  configPath: string;
}

/**
 * Write a config for a store under `dir`. A crash benchmark crashes one executable many
 * times: the per-executable core rate limit is off; no sysctl.d drop-in is written.
 * `extra` is appended YAML (sections other than store, core and install).
 */
export function makeBenchStore(dir: string, opts: { core?: string; extra?: string } = {}): BenchStore {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const root = join(dir, 'store');
  const configPath = join(dir, 'flightbox.yaml');
  writeFileSync(configPath, `store:\n  root: ${root}\ncore:\n  maxPerExePerHour: null\n${opts.core ?? ''}install:\n  sysctlDropIn: null\n${opts.extra ?? ''}`);
  // The launcher's directory on tmpfs is named after the store, outside the work directory:
  // removed with the section's other leftovers.
  registerCleanup(() => rmSync(overflowDir(root), { recursive: true, force: true }));
  return { dir, root, configPath };
}

// What a measurement wrote is put aside, not deleted, until the whole run ends. On ext4
// without a journal (this VM's root filesystem: /proc/fs/jbd2 is empty) a new file never
// takes an inode freed in the last 60 s (360 s while its inode table is not written back):
// the allocator walks past every such inode of the block group, from its start, for each
// file it creates. Deleting the 200 bundles of one storm (5,000 files) made the next storm's
// 190 bundles take 5.1 s of kernel time instead of 0.6 (perf: recently_deleted under
// ext4_create), and a handler writing 25 files a crash pays that 12 times as often as `cat`
// writing 2: the bench's own housekeeping, not the handlers' work. Big files (cores) are
// deleted at once (one inode each; the disk would not hold them all), the rest renamed into
// the work directory, removed with it.
let trashDir: string | null = null;
let trashed = 0;
const BIG_FILE_BYTES = 1024 * 1024;

/** Where discard() puts things aside (on the filesystem of what it discards); null: delete at once. */
export function setTrash(dir: string | null): void {
  trashDir = dir;
}

/** Delete `path` (a file or a tree) as far as the next measurement is concerned: see setTrash. */
export function discard(path: string): void {
  if (trashDir !== null) {
    try {
      dropBigFiles(path);
      mkdirSync(trashDir, { recursive: true, mode: 0o700 });
      renameSync(path, join(trashDir, String(trashed++)));
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      // another filesystem (EXDEV) or anything else: deleted now
    }
  }
  rmSync(path, { recursive: true, force: true });
}

function dropBigFiles(path: string): void {
  const st = lstatSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path)) dropBigFiles(join(path, name));
  } else if (st.isFile() && st.size >= BIG_FILE_BYTES) {
    unlinkSync(path);
  }
}

const cleanups = new Set<() => void>();

/**
 * Something to undo however the run ends (a restored sysctl, a stopped listener): run.ts
 * runs what is still registered on SIGINT/SIGTERM. Returns the function that unregisters it;
 * a section unregisters once it has cleaned up itself.
 */
export function registerCleanup(fn: () => void): () => void {
  cleanups.add(fn);
  return () => { cleanups.delete(fn); };
}

/** Run every registered cleanup once, newest first; errors are reported, not thrown. */
export function runCleanups(log: (msg: string) => void = console.error): void {
  const fns = [...cleanups].reverse();
  cleanups.clear();
  for (const fn of fns) {
    try {
      fn();
    } catch (err) {
      log(`cleanup failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}

/** A daemon started by the bench. */
export interface BenchDaemon {
  pid: number;
  stop(): Promise<void>;
}

/** `flightbox daemon --no-install` on a store, waited for until it says it is running. */
export async function startBenchDaemon(store: BenchStore): Promise<BenchDaemon> {
  const child = spawn(process.execPath, [CLI, '--config', store.configPath, 'daemon', '--no-install'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = (): void => { if (child.exitCode === null) child.kill('SIGKILL'); };
  const unregister = registerCleanup(kill);
  const started = Date.now();
  while (!/flightbox is running/.test(out)) {
    if (child.exitCode !== null || Date.now() - started > 30_000) {
      kill();
      unregister();
      throw new Error(`the daemon did not start: ${out.slice(0, 600)}`);
    }
    await sleep(20);
  }
  return {
    pid: child.pid!,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await Promise.race([exited, sleep(15_000)]);
      kill();
      unregister();
    },
  };
}
