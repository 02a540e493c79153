// Shared helpers of the security tests: stores whose launcher lives outside the store (so
// the store itself can be attacked), the handler installed in the real core_pattern,
// crashers started without a shell, the kernel log read back, and snapshots of directory
// trees to prove that nothing was written where it must not be.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { FIXTURES, HANDLER, readJson, runCli, sleep, waitFor } from '../helpers.js';
import { restoreKernelState, saveKernelState, type KernelState } from '../system/kernel.js';
import { overflowDir } from '../../handler/run-dir.js';

export const ID_RE = /^\d{8}T\d{6}-\d{1,10}-[0-9a-f]{6}$/;
export const ISO_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (debug|info|warn|error) /;
// eslint-disable-next-line no-control-regex
export const RAW_CONTROL = /[\x00-\x09\x0b-\x1f\x7f\x80-\x9f]/;

// ---------------------------------------------------------------------------------------
// Stores.

export interface SecStore {
  dir: string;
  root: string;
  configPath: string;
  launcher: string;
  cleanup(): void;
}

/**
 * A temp dir holding a config, a store root and (outside the store) the launcher's
 * directory. `sections` are extra YAML lines per top-level key, e.g.
 * { core: ['maxSize: 1m'], backtrace: ['tool: gdb'] }. With `publicParent`, store.root is
 * <dir>/pub/store and <dir>/pub is mode 1777.
 */
export function secStore(sections: Record<string, string[]> = {}, opts: { publicParent?: boolean } = {}): SecStore {
  const dir = mkdtempSync('/tmp/fbx-sec-');
  let root = join(dir, 'store');
  if (opts.publicParent) {
    // store.root inside a sticky, world-writable directory (like /tmp) that others can reach.
    mkdirMode(join(dir, 'pub'), 0o1777);
    spawnSync('chmod', ['755', dir]);
    root = join(dir, 'pub', 'store');
  }
  const launcher = join(dir, 'launch', 'core-handler');
  const configPath = join(dir, 'flightbox.yaml');
  const all: Record<string, string[]> = {
    store: [`root: ${root}`],
    core: ['maxPerExePerHour: null'],
    install: [`launcher: ${launcher}`, 'sysctlDropIn: null'],
    recorders: ['metrics: { interval: 200ms, window: 10s }', 'ftrace: { enabled: false }'],
  };
  for (const [k, lines] of Object.entries(sections)) all[k] = [...(all[k] ?? []), ...lines];
  writeFileSync(configPath, Object.entries(all).map(([k, lines]) => `${k}:\n${lines.map((l) => `  ${l}\n`).join('')}`).join(''));
  return {
    dir, root, configPath, launcher,
    cleanup: () => {
      // A test may have left the tree unreadable or immutable-looking (modes, owners): fix first.
      spawnSync('chmod', ['-R', 'u+rwX', dir]);
      rmSync(dir, { recursive: true, force: true });
      rmSync(overflowDir(root), { recursive: true, force: true }); // the launcher's, on tmpfs
    },
  };
}

// ---------------------------------------------------------------------------------------
// The handler in the real core_pattern.

/** Save core_pattern and core_pipe_limit, then install the store's handler; the result restores both. */
export function installHandler(s: SecStore): { restore(): void } {
  const saved: KernelState = saveKernelState();
  try {
    const r = runCli(['--config', s.configPath, 'install', '--no-persist']);
    expect(r.code, r.stderr).toBe(0);
  } catch (err) {
    restoreKernelState(saved);
    throw err;
  }
  return { restore: () => restoreKernelState(saved) };
}

// ---------------------------------------------------------------------------------------
// Crashers.

export interface CrashRun {
  pid: number;
  child: ChildProcess;
  /** resolves when the process has gone (the kernel released it after its core was read) */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  stdout: () => string;
}

/**
 * Start `file` directly (no shell: argv[0], the arguments and the path reach the kernel as
 * given). The sec-crasher fixture raises its own RLIMIT_CORE.
 */
export function startCrash(
  file: string,
  args: string[],
  opts: { argv0?: string; env?: NodeJS.ProcessEnv; cwd?: string; uid?: number; gid?: number } = {},
): CrashRun {
  const t0 = Date.now();
  const child = spawn(file, args, { argv0: opts.argv0, env: opts.env ?? {}, cwd: opts.cwd ?? '/', uid: opts.uid, gid: opts.gid, stdio: ['ignore', 'pipe', 'ignore'] });
  if (child.pid === undefined) throw new Error(`cannot start ${JSON.stringify(file)}`);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => { out += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, ms: Date.now() - t0 }));
  });
  return { pid: child.pid, child, exited, stdout: () => out };
}

/** The crash's exit within `ms`, or a rejection saying the crashed process is still held. */
export async function exitWithin<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The sec-crasher fixture compiled once for a describe block (call it there), in a temp
 * directory of its own that is removed afterwards. `path` is valid from beforeAll on.
 */
export function useSecCrasher(): { readonly path: string } {
  let dir = '';
  let path = '';
  beforeAll(() => {
    dir = mkdtempSync('/tmp/fbx-sec-bin-');
    path = compileFixture('sec-crasher', dir);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  return { get path() { return path; } };
}

/** Compile a C fixture into `outDir` (the name without .c); `shared` builds a .so. */
export function compileFixture(name: string, outDir: string, opts: { out?: string; shared?: boolean } = {}): string {
  const out = opts.out ?? join(outDir, opts.shared ? `${name}.so` : name);
  const flags = opts.shared ? ['-shared', '-fPIC'] : ['-g', '-O0'];
  const r = spawnSync('gcc', [...flags, '-o', out, join(FIXTURES, `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc failed for ${name}: ${r.stderr}`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Handler processes (started by the kernel for our store: found by their command line).

/**
 * Pids of handler processes whose command line names this config (or, for the instant
 * before the launcher execs node, the launcher of the store in that config's directory).
 */
export function handlerPids(configPath: string): number[] {
  const launcher = join(configPath, '..', 'launch', 'core-handler');
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if ((argv.includes(HANDLER) && argv.includes(configPath)) || argv[1] === launcher) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** A process and all its descendants, parents first. */
function withDescendants(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // gone
  }
  return [pid, ...kids.flatMap(withDescendants)];
}

/**
 * SIGKILL every handler of this config and the tools it runs (a test's cleanup after a
 * hang; a tool blocked on a FIFO would outlive its killed handler), and wait until they
 * are gone.
 */
export async function killHandlers(configPath: string): Promise<number[]> {
  const pids = handlerPids(configPath).flatMap(withDescendants);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await waitFor('the killed handlers to go', () => pids.every((p) => !existsSync(`/proc/${p}`) || isZombie(p)), 10_000, 20);
  return pids;
}

function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Wait until no handler of this config runs (true), or `ms` passed (false). */
export async function handlersDone(configPath: string, ms: number): Promise<boolean> {
  // None seen in 4 looks in a row: the launcher may release the crashed process before it
  // execs node, and a process in the middle of exec has no readable command line for an
  // instant, so one empty look is not "done".
  const end = Date.now() + ms;
  for (let quiet = 0; Date.now() < end; await sleep(25)) {
    quiet = handlerPids(configPath).length === 0 ? quiet + 1 : 0;
    if (quiet >= 4) return true;
  }
  return handlerPids(configPath).length === 0;
}

// ---------------------------------------------------------------------------------------
// The kernel log.

export interface KmsgLine {
  seq: number;
  priority: number;
  /** the message as /dev/kmsg shows it: non-printable bytes as \xNN, so raw control bytes show up as escapes */
  raw: string;
}

/** Every record in the kernel's ring buffer (read non-blocking from the start). */
export function readKmsg(): KmsgLine[] {
  const fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  const out: KmsgLine[] = [];
  const buf = Buffer.alloc(16384);
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') break;
        if (code === 'EPIPE') continue; // overwritten records: skip ahead
        throw err;
      }
      if (n === 0) break;
      const rec = buf.subarray(0, n).toString('latin1');
      const semi = rec.indexOf(';');
      const head = rec.slice(0, semi).split(',');
      const msg = rec.slice(semi + 1).split('\n')[0] ?? '';
      out.push({ seq: Number(head[1]), priority: Number(head[0]) & 7, raw: msg });
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

/** The sequence number of the newest kernel log record (lines after it are "new"). */
export function kmsgMark(): number {
  return readKmsg().at(-1)?.seq ?? -1;
}

/** flightbox's kernel log lines written after `mark`. */
export function flightboxKmsg(mark: number): KmsgLine[] {
  return readKmsg().filter((l) => l.seq > mark && l.raw.startsWith('flightbox: '));
}

/** Wait for a flightbox kernel log line after `mark` matching `re` (and naming `path`, when given). */
export async function waitKmsg(mark: number, re: RegExp, path?: string, ms = 15_000): Promise<KmsgLine> {
  return waitFor(`a kernel log line matching ${re}${path ? ` about ${path}` : ''}`,
    () => flightboxKmsg(mark).find((l) => re.test(l.raw) && (path === undefined || l.raw.includes(path))), ms, 50);
}

// ---------------------------------------------------------------------------------------
// The store, read back.

export interface EventJson {
  id: string;
  pid: number | null;
  pidInNamespace: number | null;
  exe: string | null;
  comm: string | null;
  cmdline: string | null;
  inContainer: boolean | null;
  core: string;
  bundle: string;
  warnings: number;
}

export function listEvents(s: SecStore, extra: string[] = []): EventJson[] {
  const r = runCli(['--config', s.configPath, 'list', '--json', ...extra]);
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout) as EventJson[];
}

export async function waitEvent(s: SecStore, pid: number, ms = 30_000): Promise<EventJson> {
  return waitFor(`the crash of pid ${pid} in the index`, () => listEvents(s, ['--pid', String(pid)])[0], ms, 100);
}

export interface Manifest {
  id: string;
  process: {
    pid: number; pidInNamespace: number | null; tid: number | null; tidInNamespace: number | null; comm: string | null;
    exe: string | null; cmdline: string[] | null; cwd: string | null; root: string | null; inContainer: boolean | null;
    namespaces: Record<string, string>; procVerified: boolean; startTimeTicks: number | null; uid: number;
  };
  core: { stored: boolean; file: string | null; size: number; storedSize: number; truncated: boolean; reason: string | null; limitBytes: number | null; elf: boolean };
  backtrace: { tool: string; frames: { fn: string | null; module: string | null }[]; threads: number } | null;
  signature: { text: string; hash: string } | null;
  warnings: string[];
  timings: Record<string, number>;
  files: { path: string; size: number }[];
}

export function manifestOf(s: SecStore, e: EventJson): Manifest {
  return readJson<Manifest>(join(s.root, e.bundle, 'manifest.json'));
}

/** Every bundle directory on disk (bundles/<day>/<id>), whatever the index says. */
export function bundleDirs(root: string): string[] {
  const base = join(root, 'bundles');
  let days: string[];
  try {
    days = readdirSync(base);
  } catch {
    return [];
  }
  return days.flatMap((d) => {
    try {
      return readdirSync(join(base, d)).map((id) => join(base, d, id));
    } catch {
      return [];
    }
  });
}

// ---------------------------------------------------------------------------------------
// Proof that nothing changed.

/** Each entry below `dir` (not following links): type, mode, size, mtime, link target, content hash of small files. */
export function treeState(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(p);
      let extra = '';
      if (st.isSymbolicLink()) extra = ` -> ${readlinkSync(p)}`;
      else if (st.isFile() && st.size <= 1 << 20) extra = ` ${readFileSync(p).toString('base64')}`;
      out.push(`${JSON.stringify(r)} ${(st.mode >>> 0).toString(8)} ${st.uid} ${st.size} ${st.mtimeMs} ${st.nlink}${extra}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(dir, '');
  return out;
}

/** Make a directory (and parents) with a mode, whatever the umask. */
export function mkdirMode(path: string, mode: number): void {
  mkdirSync(path, { recursive: true });
  spawnSync('chmod', [mode.toString(8), path]);
}

/** UTC day directory name of a moment ("2026-11-26"). */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}
