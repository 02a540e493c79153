// Section 4: snapshot latency of each recorder at its default size (metrics, ftrace, lttng
// user space): from the request on the daemon's control socket to the event's row in the
// index, polled read-only; beside it a snapshot with no recorder (what bundling and indexing
// cost alone) and the wall time of `flightbox snapshot`. Also the daemon and index helpers
// section 5 uses.
// tracefs and LTTng are machine-wide: a daemon with ftrace or lttng runs under the kernel
// lock (flock), one daemon at a time, and removes its instance or session when it stops.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { controlRequest, type ControlRequest, type ControlResponse } from '../lib/control-client.js';
import { INDEX_FILE, IndexDb } from '../store/index-db.js';
import { CLI, REPO_ROOT, makeBenchStore, median, ratio, registerCleanup, sleep, type BenchOptions, type BenchStore, type Row, type Section } from './lib.js';

const SECTION = '4 snapshots';
const TARGET_MS = 1000;
/** tracefs, LTTng and core_pattern are machine-wide: whoever changes them holds this lock. */
export const KERNEL_LOCK = '/run/flightbox-kernel.lock';
/** The lttng recorder records at most once a second (MIN_SNAPSHOT_INTERVAL_MS): snapshots are spaced wider. */
const SNAPSHOT_SPACING_MS = 1500;
const INSTANCE = 'fbx-bench-snapshots';
/** The metrics ring at its default capacity (1 s × 10 min = 600 samples), filled in a minute. */
const METRICS_FILL = { interval: '100ms', window: '60s', samples: 600, fillMs: 61_000 };
/** Waiting for the kernel lock: other benchmarks and kernel tests may hold it for minutes. */
const LOCK_WAIT_MS = 30 * 60_000;

// ---- the kernel lock ---------------------------------------------------------------------

function ancestors(): Set<number> {
  const out = new Set<number>();
  let pid = process.pid;
  while (pid > 1 && !out.has(pid)) {
    out.add(pid);
    try {
      // The command name is in parentheses and may contain spaces: the ppid follows the last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  return out;
}

/**
 * Whether a process above us holds the kernel lock (the whole benchmark run under `flock`):
 * taking it again from here would wait for ourselves forever.
 */
function lockHeldAbove(): boolean {
  let ino: number;
  try {
    ino = statSync(KERNEL_LOCK).ino;
  } catch {
    return false;
  }
  const mine = ancestors();
  let locks = '';
  try {
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return false;
  }
  // "1: FLOCK  ADVISORY  WRITE 39611 fe:00:16637953 0 EOF"
  return locks.split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === 'FLOCK' && Number(f[5]?.split(':')[2]) === ino && mine.has(Number(f[4]));
  });
}

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;

/**
 * argv run under the kernel lock (`flock LOCK argv...`), unless we already hold it. With
 * setpriv, each process gets a signal when its parent dies: a benchmark killed outright does
 * not leave a daemon holding the lock and its tracefs instance or lttng session.
 */
export function underKernelLock(argv: readonly string[]): string[] {
  if (lockHeldAbove()) return SETPRIV ? [SETPRIV, '--pdeathsig', 'TERM', ...argv] : [...argv];
  if (!SETPRIV) return ['flock', KERNEL_LOCK, ...argv];
  return [SETPRIV, '--pdeathsig', 'KILL', 'flock', KERNEL_LOCK, SETPRIV, '--pdeathsig', 'TERM', ...argv];
}

// ---- a daemon of the bench's own ---------------------------------------------------------

export interface BenchDaemon {
  store: BenchStore;
  pid: number;
  socket: string;
  output: () => string;
  request: (req: ControlRequest, timeoutMs?: number) => Promise<ControlResponse>;
  stop: () => Promise<void>;
}

/**
 * `flightbox daemon --no-install` on `store` (core_pattern left alone), under the kernel lock
 * when it runs ftrace or lttng; resolves once it says it is running.
 */
export async function startBenchDaemon(store: BenchStore, opts: { kernel: boolean; log: (m: string) => void }): Promise<BenchDaemon> {
  const base = [process.execPath, CLI, '--config', store.configPath, 'daemon', '--no-install'];
  const argv = opts.kernel ? underKernelLock(base) : SETPRIV ? [SETPRIV, '--pdeathsig', 'TERM', ...base] : base;
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const socket = join(store.root, 'daemon.sock');
  let daemonPid: number | null = null;
  // Under flock the daemon is flock's child: signals go to the daemon itself.
  const signal = (sig: NodeJS.Signals): void => {
    try {
      if (daemonPid !== null) process.kill(daemonPid, sig);
      else if (child.exitCode === null) child.kill(sig);
    } catch {
      // already gone
    }
  };
  const unregister = registerCleanup(() => signal('SIGTERM'));
  const t0 = Date.now();
  let said = false;
  while (!/flightbox is running/.test(out)) {
    if (child.exitCode !== null || Date.now() - t0 > (opts.kernel ? LOCK_WAIT_MS : 60_000)) {
      signal('SIGKILL');
      unregister();
      throw new Error(`the daemon did not start: ${out.slice(0, 800) || `exit status ${String(child.exitCode)}`}`);
    }
    if (opts.kernel && !said && Date.now() - t0 > 5000 && out === '') {
      opts.log(`waiting for ${KERNEL_LOCK} (held by another run)`);
      said = true;
    }
    await sleep(20);
  }
  const ping = await controlRequest(socket, { op: 'ping' }, 10_000);
  if (ping.ok) daemonPid = Number(ping.pid);
  return {
    store,
    pid: daemonPid ?? child.pid!,
    socket,
    output: () => out,
    request: (req, timeoutMs = 60_000) => controlRequest(socket, req, timeoutMs),
    async stop() {
      signal('SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
      if (child.exitCode === null && child.signalCode === null) {
        opts.log('the daemon did not stop within 30 s of SIGTERM; killed (check for a leftover tracefs instance or lttng session)');
        signal('SIGKILL');
        await exited;
      }
      unregister();
    },
  };
}

/** The index read-only, polled: when did a row appear? */
export class IndexWatch {
  readonly #path: string;
  #db: IndexDb | null = null;

  constructor(root: string) {
    this.#path = join(root, INDEX_FILE);
  }

  /** One value of `sql` (undefined until the index exists or the row is there). */
  get(sql: string, ...params: unknown[]): unknown {
    if (this.#db === null) {
      if (!existsSync(this.#path)) return undefined;
      this.#db = new IndexDb(this.#path, { busyTimeoutMs: 5000, readonly: true });
    }
    return this.#db.db.prepare(sql).pluck().get(...params);
  }

  /** performance.now() of the first poll (every `everyMs`) at which `sql` returns a value. */
  async until(sql: string, params: unknown[], timeoutMs: number, everyMs = 2): Promise<number> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const v = this.get(sql, ...params);
      const t = performance.now();
      if (v !== undefined && v !== null) return t;
      if (t > end) throw new Error(`no row for ${sql} within ${timeoutMs} ms`);
      await sleep(everyMs);
    }
  }

  close(): void {
    this.#db?.close();
    this.#db = null;
  }
}

export interface TimedSnapshot {
  /** request sent → row in the index */
  rowMs: number;
  /** request sent → the daemon's answer (after it indexed) */
  replyMs: number;
  id: string;
  warnings: string[];
}

/** One snapshot through the control socket; the row is found by its (unique) reason. */
export async function timedSnapshot(d: BenchDaemon, watch: IndexWatch, reason: string): Promise<TimedSnapshot> {
  const t0 = performance.now();
  const reply = d.request({ op: 'snapshot', reason }).then((r) => ({ r, t: performance.now() }));
  // A failed request must not leave the poll waiting for its whole timeout.
  let failed: unknown = null;
  reply.catch((err: unknown) => { failed = err; });
  const row = watch.until('SELECT id FROM events WHERE reason = ?', [reason], 60_000).catch((err: unknown) => {
    throw failed ?? err;
  });
  const [tRow, { r, t }] = await Promise.all([row, reply]);
  if (!r.ok) throw new Error(`the daemon could not take the snapshot: ${r.error}`);
  return { rowMs: tRow - t0, replyMs: t - t0, id: String(r.id), warnings: (r.warnings as string[] | undefined) ?? [] };
}

/** `flightbox snapshot`, wall time (Node start-up included). */
export function cliSnapshot(store: BenchStore, reason: string): { ms: number; ok: boolean; err: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [CLI, '--config', store.configPath, 'snapshot', '--reason', reason], { encoding: 'utf8', timeout: 120_000 });
  return { ms: performance.now() - t0, ok: r.status === 0, err: (r.stderr ?? '').trim().split('\n')[0] ?? `exit status ${String(r.status)}` };
}

function bundleBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += bundleBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

const mib = (b: number): string => `${(b / 1024 / 1024).toFixed(1)} MiB`;

// ---- filling the recorders ---------------------------------------------------------------

/** Kernel events from every CPU until the ftrace buffer is (nearly) full, or `maxMs`. */
async function fillFtrace(d: BenchDaemon, maxMs: number): Promise<string> {
  const load = [0, 1].map(() => spawn('dd', ['if=/dev/zero', 'of=/dev/null', 'bs=1'], { stdio: 'ignore' }));
  const t0 = Date.now();
  let used = 0;
  let size = 0;
  try {
    while (Date.now() - t0 < maxMs) {
      const st = await d.request({ op: 'status' });
      const rec = st.ok ? (st.recorders as { name: string; bufferBytes: number | null; usedBytes: number | null }[]).find((r) => r.name === 'ftrace') : undefined;
      used = rec?.usedBytes ?? 0;
      size = rec?.bufferBytes ?? 0;
      if (size > 0 && used >= 0.95 * size) break;
      await sleep(100);
    }
  } finally {
    for (const p of load) p.kill('SIGKILL');
  }
  return `${mib(used)} of ${mib(size)}`;
}

/** The instrumented test program of the lttng tests, built into the work dir. */
function buildTpApp(workDir: string): string {
  const src = join(REPO_ROOT, 'test/fixtures/lttng');
  const out = join(workDir, 'tp-app');
  const r = spawnSync('gcc', ['-O2', `-I${src}`, '-o', out, join(src, 'tp-app.c'), '-llttng-ust', '-ldl'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc failed for tp-app.c: ${r.stderr || r.error?.message}`);
  return out;
}

/** User-space events from both CPUs: two instrumented processes, as fast as they go. */
async function fillLttng(app: string, events: number): Promise<void> {
  await Promise.all([0, 1].map((i) => new Promise<void>((resolve) => {
    const p = spawn(app, [`fbxbench${i}`, String(events), '0'], { stdio: 'ignore' });
    p.once('exit', () => resolve());
    p.once('error', () => resolve());
  })));
}

// ---- the section -------------------------------------------------------------------------

interface Case {
  name: string;
  recorders: string;
  kernel: boolean;
  /** before the measured snapshots (once) and before each one; returns words for the note */
  prepare?: (d: BenchDaemon) => Promise<string>;
  before?: (d: BenchDaemon) => Promise<void>;
  describe: (bundleDir: string) => string;
}

function metricsSamples(bundleDir: string): string {
  const f = join(bundleDir, 'recorder/metrics/samples.jsonl');
  if (!existsSync(f)) return 'no samples.jsonl';
  return `${readFileSync(f, 'utf8').split('\n').filter((l) => l !== '').length} samples in the snapshot`;
}

function ftraceData(bundleDir: string): string {
  try {
    const j = JSON.parse(readFileSync(join(bundleDir, 'recorder/ftrace/ftrace.json'), 'utf8')) as { data?: { method?: string | null; bytes?: number; file?: string | null } };
    return `${j.data?.file ?? 'no file'} by ${j.data?.method ?? 'nothing'}, ${mib(j.data?.bytes ?? 0)}`;
  } catch {
    return 'no ftrace.json';
  }
}

function lttngData(bundleDir: string): string {
  const ctf = join(bundleDir, 'recorder/lttng/ctf');
  return existsSync(ctf) ? `CTF ${mib(bundleBytes(ctf))}` : 'no CTF';
}

export const run: Section = async (opts: BenchOptions): Promise<Row[]> => {
  const runs = Math.max(1, opts.runs);
  const rows: Row[] = [];
  let tpApp: string | null = null;
  let tpError: string | null = null;
  try {
    tpApp = buildTpApp(opts.workDir);
  } catch (err) {
    tpError = err instanceof Error ? err.message : String(err);
  }
  const fillMs = opts.quick ? 6000 : METRICS_FILL.fillMs;
  let last = '';
  const cases: Case[] = [
    {
      name: 'no recorder (bundle + index only)',
      recorders: '  metrics: { enabled: false }\n  ftrace: { enabled: false }\n  lttng: { enabled: false }\n',
      kernel: false,
      describe: () => 'reference for the ratios: the same request with nothing to snapshot',
    },
    {
      name: 'metrics, default ring (600 samples)',
      recorders: `  metrics: { interval: ${METRICS_FILL.interval}, window: ${METRICS_FILL.window} }\n  ftrace: { enabled: false }\n  lttng: { enabled: false }\n`,
      kernel: false,
      prepare: async () => {
        await sleep(fillMs);
        return `a ring of ${METRICS_FILL.samples} samples as by default (1 s × 10 min), sampled every ${METRICS_FILL.interval} for ${fillMs / 1000} s to fill it`;
      },
      describe: metricsSamples,
    },
    {
      name: 'ftrace, default 4 MiB per CPU, full',
      recorders: `  metrics: { enabled: false }\n  ftrace: { enabled: true, instance: ${INSTANCE} }\n  lttng: { enabled: false }\n`,
      kernel: true,
      before: async (d) => { last = await fillFtrace(d, 10_000); },
      describe: (b) => `buffer ${last} before the snapshot; ${ftraceData(b)}`,
    },
    {
      name: 'lttng UST, default 512 KiB × 8 per CPU',
      recorders: `  metrics: { enabled: false }\n  ftrace: { enabled: false }\n  lttng: { enabled: true, session: ${INSTANCE} }\n`,
      kernel: true,
      before: async () => { if (tpApp) await fillLttng(tpApp, opts.quick ? 50_000 : 200_000); },
      describe: (b) => `two instrumented processes emitted ${opts.quick ? '2 × 50k' : '2 × 200k'} events before each snapshot; ${lttngData(b)}`,
    },
  ];
  let refMs: number | null = null;
  let refCliMs: number | null = null;
  for (const c of cases) {
    if (c.name.startsWith('lttng') && tpApp === null) {
      rows.push({ section: SECTION, case: c.name, subject: 'flightbox, request → indexed', value: null, unit: 'ms', runs: 0, note: `not measured: ${tpError}` });
      continue;
    }
    const store = makeBenchStore(join(opts.workDir, `snapshots-${cases.indexOf(c)}`), { extra: `recorders:\n${c.recorders}` });
    opts.log(`section 4: ${c.name}`);
    let d: BenchDaemon | null = null;
    const watch = new IndexWatch(store.root);
    const socket: number[] = [];
    const replies: number[] = [];
    const cli: number[] = [];
    let note = '';
    let warnings = new Set<string>();
    let error: string | null = null;
    let cliError: string | null = null;
    try {
      d = await startBenchDaemon(store, { kernel: c.kernel, log: opts.log });
      const prepared = c.prepare ? await c.prepare(d) : '';
      // One snapshot first, not counted: the daemon loads the snapshot code on first use.
      await c.before?.(d);
      await timedSnapshot(d, watch, 'bench warm-up');
      let lastDescribe = '';
      for (let i = 0; i < runs; i++) {
        await sleep(SNAPSHOT_SPACING_MS);
        await c.before?.(d);
        const s = await timedSnapshot(d, watch, `bench ${i}`);
        socket.push(s.rowMs);
        replies.push(s.replyMs);
        for (const w of s.warnings) warnings.add(w);
        const bundle = watch.get('SELECT bundle FROM events WHERE id = ?', s.id) as string;
        lastDescribe = c.describe(join(store.root, bundle));
      }
      for (let i = 0; i < runs; i++) {
        await sleep(SNAPSHOT_SPACING_MS);
        await c.before?.(d);
        const r = cliSnapshot(store, `bench cli ${i}`);
        if (r.ok) cli.push(r.ms);
        else cliError ??= `flightbox snapshot failed (not counted): ${r.err}`;
      }
      note = [prepared, lastDescribe].filter((x) => x !== '').join('; ');
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      watch.close();
      await d?.stop();
    }
    const v = median(socket);
    const vc = median(cli);
    const isRef = c.prepare === undefined && c.before === undefined;
    if (isRef) { refMs = v; refCliMs = vc; }
    const warn = [...warnings].filter((w) => !/kernel tracing unavailable/.test(w));
    const kernelNote = [...warnings].some((w) => /kernel tracing unavailable/.test(w)) ? '; no lttng-modules here: user space only' : '';
    rows.push({
      section: SECTION, case: c.name, subject: 'flightbox, request → indexed', value: v, unit: 'ms', runs: socket.length,
      ratio: isRef ? undefined : ratio(v, refMs),
      target: isRef ? undefined : `≤ ${TARGET_MS} ms`, met: isRef || v === null ? null : v <= TARGET_MS,
      note: error ? `not measured: ${error}` : `${note}${kernelNote}; daemon's answer after ${median(replies)?.toFixed(0)} ms (median)${warn.length ? `; warnings: ${warn.join(' | ')}` : ''}`,
    });
    rows.push({
      section: SECTION, case: c.name, subject: 'flightbox snapshot (CLI wall)', value: vc, unit: 'ms', runs: cli.length,
      ratio: isRef ? undefined : ratio(vc, refCliMs),
      note: cliError ?? (error ? 'not measured' : 'includes Node start-up and loading the CLI'),
    });
    warnings = new Set();
  }
  return rows;
};
