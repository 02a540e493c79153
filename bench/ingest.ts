// Sections 1-3 of the benchmark: crashes through the real kernel core_pattern, timed from
// the crashed process's side. bench/fixtures/crasher.c sends SIGSEGV to a child it has filled
// with memory and times its waitpid(); the bench polls each handler's "done" (flightbox: the
// event's row in the index; reference handlers: a marker file; systemd-coredump: its final
// core file) on the same clock (CLOCK_MONOTONIC).
//
// Machine-wide state: core_pattern, core_pipe_limit and suid_dumpable are saved first and
// restored in a finally (and on SIGINT, through registerCleanup); run one bench at a time.
// systemd-coredump is measured when its Debian package is installed. Its sysctl.d file
// (/usr/lib/sysctl.d/50-coredump.conf) points core_pattern at it on every `sysctl --system`:
// mask it (ln -s /dev/null /etc/sysctl.d/50-coredump.conf) so that installing the package for
// the bench does not take the machine's crashes away later. Without systemd as PID 1 the bench
// stands in for systemd-coredump.socket with systemd-socket-activate (SOCK_SEQPACKET on
// /run/systemd/coredump, one instance per connection, at nice 9 as the unit runs it).
import Database from 'better-sqlite3';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  CLI, REPO_ROOT, compileFixture, discard, makeBenchStore, median, monoNs, ratio, registerCleanup, sleep, startBenchDaemon,
  type BenchOptions, type BenchStore, type Row, type Section,
} from './lib.js';

type Fill = 'zeros' | 'text' | 'random';
const FILLS: readonly Fill[] = ['zeros', 'text', 'random'];
const MIB = 1024 * 1024;

const SECTION_INGEST = '1 ingestion';
const SECTION_SMALL = '2 small crash';
const SECTION_STORM = '3 crash storm';

const SMALL_MIB = 2;
const SMALL_FILL: Fill = 'text';
const STORM_MIB = 2;
const STORM_FILL: Fill = 'text';

/** How long one crash may take to be done before it counts as not done. */
const CRASH_TIMEOUT_MS = 300_000;
/** A crash or a storm is over when every crash is done, or no handler has run for this long. */
const QUIET_MS = 3000;
const STORM_TIMEOUT_MS = 900_000;
const STORM_SAMPLE_MS = 20;

// ---------------------------------------------------------------------------------------
// The kernel's three settings, saved and restored.

const KERNEL_FILES = {
  pattern: '/proc/sys/kernel/core_pattern',
  pipeLimit: '/proc/sys/kernel/core_pipe_limit',
  suidDumpable: '/proc/sys/fs/suid_dumpable',
} as const;

interface KernelValues {
  pattern: string;
  pipeLimit: string;
  suidDumpable: string;
}

function readKernel(): KernelValues {
  const r = (p: string): string => readFileSync(p, 'utf8').replace(/\n$/, '');
  return { pattern: r(KERNEL_FILES.pattern), pipeLimit: r(KERNEL_FILES.pipeLimit), suidDumpable: r(KERNEL_FILES.suidDumpable) };
}

/**
 * In this order: the kernel refuses (warns about) suid_dumpable 2 with a core_pattern that is
 * neither a pipe nor an absolute path, so a lower suid_dumpable goes first and a higher one last.
 */
function writeKernel(v: KernelValues): void {
  const cur = readKernel();
  const w = (p: string, s: string): void => writeFileSync(p, `${s}\n`);
  const lower = Number(v.suidDumpable) < Number(cur.suidDumpable);
  if (lower) w(KERNEL_FILES.suidDumpable, v.suidDumpable);
  if (cur.pattern !== v.pattern) w(KERNEL_FILES.pattern, v.pattern);
  if (cur.pipeLimit !== v.pipeLimit) w(KERNEL_FILES.pipeLimit, v.pipeLimit);
  if (!lower && cur.suidDumpable !== v.suidDumpable) w(KERNEL_FILES.suidDumpable, v.suidDumpable);
}

/** Saves the three values now; restore() puts them back (also run on SIGINT). */
class KernelGuard {
  readonly saved: KernelValues;
  readonly #unregister: () => void;
  constructor() {
    this.saved = readKernel();
    this.#unregister = registerCleanup(() => writeKernel(this.saved));
  }
  restore(): void {
    writeKernel(this.saved);
    this.#unregister();
  }
}

// ---------------------------------------------------------------------------------------
// The handlers' processes: the kernel starts each core_pattern helper as a child of kthreadd
// (pid 2); a socket-activated service runs as a child of its listener. Helpers fork from
// their main thread (shells, libuv, systemd-coredump), so each process's main task lists its
// children; kernel threads have no memory (statm all zeros).

function childrenOf(pid: number): number[] {
  try {
    const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return text === '' ? [] : text.split(' ').map(Number);
  } catch {
    return []; // gone meanwhile
  }
}

/** Resident and anonymous (resident minus file-backed and shared) pages of a process; null for kernel threads and the dead. */
function statm(pid: number): { rss: number; anon: number } | null {
  try {
    const f = readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ').map(Number);
    if (!f[0]) return null;
    return { rss: f[1]! * PAGE_BYTES, anon: (f[1]! - f[2]!) * PAGE_BYTES };
  } catch {
    return null;
  }
}
const PAGE_BYTES = 4096;

/**
 * Helpers that were running before the bench's first crash (nothing of ours): not waited
 * for, not counted.
 */
const foreign = new Set<number>();

/** Every live handler process (helpers started by the kernel, the children of `listeners`, their descendants) and their memory. */
function handlers(listeners: readonly number[]): { pids: number[]; rss: number; anon: number } {
  const todo = [...childrenOf(2).filter((p) => !foreign.has(p)), ...listeners.flatMap(childrenOf)];
  const pids: number[] = [];
  let rss = 0;
  let anon = 0;
  while (todo.length > 0) {
    const pid = todo.pop()!;
    const m = statm(pid);
    if (m === null) continue;
    pids.push(pid);
    rss += m.rss;
    anon += m.anon;
    todo.push(...childrenOf(pid));
  }
  return { pids, rss, anon };
}

/** Wait until no handler runs; one still running after `timeoutMs` is stuck, and ignored from then on. */
async function waitQuiet(listeners: readonly number[], timeoutMs = 120_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (handlers(listeners).pids.length === 0) return true;
    await sleep(20);
  }
  for (const pid of childrenOf(2)) foreign.add(pid);
  console.error(`handlers still running after ${timeoutMs / 1000} s, ignored from now on: ${handlers(listeners).pids.join(' ')}`);
  return false;
}

/** Write back dirty pages, so that one crash's writeback does not slow the next one down. */
function settleDisk(dir: string): void {
  spawnSync('sync', ['-f', dir], { stdio: 'ignore' });
}

// ---------------------------------------------------------------------------------------
// Subjects: what is installed in core_pattern, and how to tell that a crash is done.

interface Done {
  /** Bytes the crash occupies in the subject's storage (the core file; for flightbox the compressed core). */
  storedBytes: number | null;
  /** Whether the core was kept (flightbox may keep metadata only). */
  core: boolean;
  /** flightbox: the manifest's timings and capture time, for the notes. */
  manifest?: { capturedAtMs: number; timings: Record<string, number>; coreSize: number; codeCache?: string };
}

interface Subject {
  name: string;
  kernel: KernelValues;
  /** The crash of `pid` (since `sinceWallMs`) is complete: what it left; null while it is not. */
  check(pid: number, sinceWallMs: number): Done | null;
  /** Every crash complete since `sinceWallMs`, by pid: whether its core was kept (for storms: one look for all). */
  doneSince(sinceWallMs: number): Map<number, boolean>;
  /** Delete what the crash of `pid` left. */
  discard(pid: number): void;
  /** Processes whose children are handlers too (a socket-activation listener). */
  listeners: number[];
  /**
   * systemd-coredump behind the stand-in listener: mark() before a crash, finished() once the
   * service instance that handled it has exited (after its stack trace and journal entry).
   * One crash at a time only (sections 1 and 2).
   */
  mark?(): void;
  finished?(): boolean;
  note: string;
  close(): Promise<void>;
}

function referenceSubject(name: string, script: string, outDir: string, suidDumpable: string): Subject {
  mkdirSync(outDir, { recursive: true, mode: 0o700 });
  const scriptPath = join(REPO_ROOT, 'bench/handlers', script);
  const pattern = `|/bin/sh ${scriptPath} ${outDir} %P`;
  if (Buffer.byteLength(pattern) > 127) throw new Error(`core_pattern too long for ${name}: ${pattern}`);
  const isCore = (f: string, pid: number): boolean => f === `core.${pid}` || f.startsWith(`core.${pid}.`);
  const files = (pid: number): string[] => readdirSync(outDir).filter((f) => isCore(f, pid) || f === `done.${pid}`);
  return {
    name,
    kernel: { pattern, pipeLimit: '0', suidDumpable },
    listeners: [],
    note: `bench/handlers/${script} in core_pattern (core_pipe_limit 0); done = its marker file`,
    check(pid) {
      if (!existsSync(join(outDir, `done.${pid}`))) return null;
      const core = readdirSync(outDir).find((f) => isCore(f, pid));
      return { storedBytes: core ? statSync(join(outDir, core)).size : null, core: core !== undefined };
    },
    doneSince() {
      const names = readdirSync(outDir);
      const cores = new Set(names.filter((f) => f.startsWith('core.')).map((f) => Number(f.split('.')[1])));
      const out = new Map<number, boolean>();
      for (const f of names) if (f.startsWith('done.')) out.set(Number(f.slice(5)), cores.has(Number(f.slice(5))));
      return out;
    },
    discard(pid) {
      for (const f of files(pid)) discard(join(outDir, f));
    },
    async close() {
      discard(outDir);
    },
  };
}

/** Where the package puts its handler, its sysctl.d file, and its cores. */
const COREDUMP_BINS = ['/lib/systemd/systemd-coredump', '/usr/lib/systemd/systemd-coredump'];
const COREDUMP_SYSCTLS = ['/usr/lib/sysctl.d/50-coredump.conf', '/lib/sysctl.d/50-coredump.conf'];
const COREDUMP_DIR = '/var/lib/systemd/coredump';
const COREDUMP_SOCKET = '/run/systemd/coredump';
const COREDUMP_MASK = '/etc/sysctl.d/50-coredump.conf';

interface CoredumpPackage {
  bin: string;
  kernel: KernelValues;
  masked: boolean;
}

/** systemd-coredump as its package installs it, or why it cannot be measured. */
function findCoredump(): CoredumpPackage | string {
  const bin = COREDUMP_BINS.find((p) => existsSync(p));
  const sysctl = COREDUMP_SYSCTLS.find((p) => existsSync(p));
  if (!bin || !sysctl) return 'systemd-coredump not installed (apt-get install systemd-coredump)';
  const text = readFileSync(sysctl, 'utf8');
  const value = (key: string): string | null => new RegExp(`^\\s*${key.replace(/\./g, '\\.')}\\s*=\\s*(.*?)\\s*$`, 'm').exec(text)?.[1] ?? null;
  const pattern = value('kernel.core_pattern');
  if (!pattern) return `${sysctl} sets no kernel.core_pattern`;
  let masked = false;
  try {
    masked = lstatSync(COREDUMP_MASK).isSymbolicLink() && readFileSync(COREDUMP_MASK).length === 0;
  } catch {
    // not masked
  }
  return { bin, kernel: { pattern, pipeLimit: value('kernel.core_pipe_limit') ?? '0', suidDumpable: value('fs.suid_dumpable') ?? '0' }, masked };
}

async function coredumpSubject(pkg: CoredumpPackage, logDir: string, log: (m: string) => void): Promise<Subject> {
  mkdirSync(COREDUMP_DIR, { recursive: true, mode: 0o755 });
  let listener: ChildProcess | null = null;
  let listenerLog: string | null = null;
  let createdSocket = false;
  const systemdIsInit = existsSync('/run/systemd/system');
  if (!systemdIsInit) {
    // A socket left by an earlier stand-in: nobody listens on it any more.
    try {
      if (lstatSync(COREDUMP_SOCKET).isSocket()) unlinkSync(COREDUMP_SOCKET);
    } catch {
      // none
    }
    mkdirSync('/run/systemd', { recursive: true, mode: 0o755 });
    const out = join(logDir, 'socket-activate.log');
    listenerLog = out;
    writeFileSync(out, '');
    const fd = openSync(out, 'a');
    listener = spawn('systemd-socket-activate', ['--seqpacket', '--accept', '--listen', COREDUMP_SOCKET, 'nice', '-n', '9', pkg.bin], {
      stdio: ['ignore', fd, fd],
    });
    closeSync(fd);
    const started = Date.now();
    while (!existsSync(COREDUMP_SOCKET)) {
      if (listener.exitCode !== null || Date.now() - started > 10_000) {
        throw new Error(`systemd-socket-activate did not start: ${readFileSync(out, 'utf8').slice(0, 400)}`);
      }
      await sleep(10);
    }
    createdSocket = true;
    log(`systemd-socket-activate listening on ${COREDUMP_SOCKET} (pid ${listener.pid})`);
  }
  const stop = (): void => {
    if (listener && listener.exitCode === null) listener.kill('SIGTERM');
    if (createdSocket) rmSync(COREDUMP_SOCKET, { force: true });
  };
  const unregister = registerCleanup(stop);
  const nameRe = (pid: number): RegExp => new RegExp(`^core\\.[^/]*\\.${pid}\\.\\d+(\\.(zst|lz4|xz))?$`);
  const files = (pid: number): string[] => readdirSync(COREDUMP_DIR).filter((f) => f.includes(`.${pid}.`));
  // Its service instances that have exited: the stand-in logs "Child N died" as it reaps one.
  // An instance exits after the core file, its stack trace and its journal entry (the entry
  // coredumpctl lists), so that is when systemd-coredump has indexed a crash.
  const exits = (): number => (listenerLog === null ? 0 : (readFileSync(listenerLog, 'utf8').match(/^Child \d+ died/gm) ?? []).length);
  let exitsBefore = 0;
  return {
    name: 'systemd-coredump',
    ...(listenerLog === null ? {} : { mark: () => { exitsBefore = exits(); }, finished: () => exits() > exitsBefore }),
    kernel: pkg.kernel,
    listeners: listener?.pid ? [listener.pid] : [],
    note:
      `as its package installs it (core_pipe_limit ${pkg.kernel.pipeLimit}, suid_dumpable ${pkg.kernel.suidDumpable})` +
      (systemdIsInit ? '' : ', behind systemd-socket-activate standing in for systemd-coredump.socket, service at nice 9 as its unit') +
      `; done = the final core file in ${COREDUMP_DIR} (its stack trace and journal entry come after)` +
      (systemdIsInit ? '' : '; finished = its service instance exited, after the stack trace and the journal entry (what coredumpctl lists)') +
      (pkg.masked ? '' : `; WARNING: ${COREDUMP_MASK} does not mask the package's sysctl.d file, a later sysctl --system hands core_pattern to it`),
    check(pid) {
      const re = nameRe(pid);
      const f = readdirSync(COREDUMP_DIR).find((n) => re.test(n));
      return f ? { storedBytes: statSync(join(COREDUMP_DIR, f)).size, core: true } : null;
    },
    doneSince() {
      // core.COMM.UID.BOOTID.PID.USEC[.zst]: COMM may hold dots, the end may not.
      const out = new Map<number, boolean>();
      for (const n of readdirSync(COREDUMP_DIR)) {
        const m = /^core\..*\.(\d+)\.\d+(\.(zst|lz4|xz))?$/.exec(n);
        if (m) out.set(Number(m[1]), true);
      }
      return out;
    },
    discard(pid) {
      for (const f of files(pid)) discard(join(COREDUMP_DIR, f));
    },
    async close() {
      const l = listener;
      if (l && l.exitCode === null) {
        const exited = new Promise((r) => l.once('exit', r));
        l.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
        if (l.exitCode === null) l.kill('SIGKILL');
      }
      stop();
      unregister();
    },
  };
}

interface FlightboxSubject extends Subject {
  store: BenchStore;
}

/** flightbox installed with `flightbox install` on a store of the bench's own; uninstalled by close(). */
function flightboxSubject(dir: string, suidDumpable: string, name = 'flightbox', opts: { core?: string; extra?: string; describe?: string } = {}): FlightboxSubject {
  const store = makeBenchStore(dir, opts);
  const cli = (args: string[]): string => {
    const r = spawnSync(process.execPath, [CLI, ...args, '--config', store.configPath], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`flightbox ${args.join(' ')} failed (${r.status}): ${r.stderr.trim()}`);
    return r.stdout;
  };
  // install writes the launcher and the pattern; the pattern is read back and the kernel
  // restored, so that each measurement sets core_pattern the same way for every subject.
  const before = readKernel();
  cli(['install', '--no-persist']);
  const installed = readKernel();
  writeKernel(before);
  let db: Database.Database | null = null;
  const indexPath = join(store.root, 'index.sqlite');
  const query = (): Database.Statement | null => {
    if (!db) {
      if (!existsSync(indexPath)) return null;
      db = new Database(indexPath, { readonly: true, fileMustExist: true });
    }
    return db.prepare(`SELECT bundle, core_stored_size AS stored, has_core AS hasCore FROM events
                       WHERE pid = ? AND kind = 'crash' AND indexed_at >= ? ORDER BY indexed_at DESC LIMIT 1`);
  };
  let stmt: Database.Statement | null = null;
  const bundles = new Map<number, string>();
  return {
    name,
    store,
    kernel: { pattern: installed.pattern, pipeLimit: installed.pipeLimit, suidDumpable },
    listeners: [],
    note: `flightbox install (core_pipe_limit ${installed.pipeLimit}), store on the same disk, defaults but maxPerExePerHour null${opts.describe ? `, ${opts.describe}` : ''}; done = its row in index.sqlite`,
    check(pid, sinceWallMs) {
      let row: { bundle: string; stored: number | null; hasCore: number } | undefined;
      try {
        stmt ??= query();
        if (!stmt) return null;
        row = stmt.get(pid, sinceWallMs) as typeof row;
      } catch {
        stmt = null; // the first handler is still creating the index, or it is busy: look again
        return null;
      }
      if (!row) return null;
      const bundleDir = isAbsolute(row.bundle) ? row.bundle : join(store.root, row.bundle);
      bundles.set(pid, bundleDir);
      let manifest: Done['manifest'];
      try {
        const m = JSON.parse(readFileSync(join(bundleDir, 'manifest.json'), 'utf8')) as {
          capturedAt: string; timings: Record<string, number>; core?: { size?: number }; handler?: { codeCache?: string };
        };
        manifest = { capturedAtMs: Date.parse(m.capturedAt), timings: m.timings, coreSize: m.core?.size ?? 0, codeCache: m.handler?.codeCache };
      } catch {
        // the manifest is not needed for the figures
      }
      return { storedBytes: row.hasCore ? row.stored : null, core: row.hasCore === 1, manifest };
    },
    doneSince(sinceWallMs) {
      const out = new Map<number, boolean>();
      if (!db && existsSync(indexPath)) db = new Database(indexPath, { readonly: true, fileMustExist: true });
      if (!db) return out;
      try {
        const rows = db.prepare(`SELECT pid, bundle, has_core AS hasCore FROM events WHERE kind = 'crash' AND indexed_at >= ?`)
          .all(sinceWallMs) as { pid: number; bundle: string; hasCore: number }[];
        for (const r of rows) {
          out.set(r.pid, r.hasCore === 1);
          bundles.set(r.pid, isAbsolute(r.bundle) ? r.bundle : join(store.root, r.bundle));
        }
      } catch {
        // busy: look again
      }
      return out;
    },
    discard(pid) {
      const b = bundles.get(pid);
      if (b) discard(b);
      bundles.delete(pid);
    },
    async close() {
      db?.close();
      try {
        cli(['uninstall']);
      } catch {
        // the guard restores the kernel's values anyway
      }
      discard(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------
// One crash.

interface Measure {
  subject: string;
  heldMs: number | null;
  doneMs: number | null;
  /** systemd-coredump: signal → its service instance exited (Subject.finished). */
  finishedMs?: number | null;
  storedBytes: number | null;
  core: boolean;
  manifest?: Done['manifest'];
  /** Signal → flightbox's capture start (the manifest's capturedAt): kernel, launcher, node, imports, config. */
  startMs?: number;
}

/** Lines of the crasher's stdout, as parsed JSON, one at a time. */
function lines(child: ChildProcess): AsyncIterator<Record<string, unknown>> {
  const rl = createInterface({ input: child.stdout! });
  const it = rl[Symbol.asyncIterator]();
  return {
    async next() {
      const r = await it.next();
      return r.done ? { done: true, value: undefined } : { done: false, value: JSON.parse(r.value) as Record<string, unknown> };
    },
  };
}

/** The difference between the wall clock and CLOCK_MONOTONIC, in ms (to place manifest times). */
function wallMinusMonoMs(): number {
  return Date.now() - monoNs() / 1e6;
}

async function crashOnce(crasher: string, mib: number, fill: Fill, subject: Subject, workDir: string): Promise<Measure> {
  const m: Measure = { subject: subject.name, heldMs: null, doneMs: null, storedBytes: null, core: false };
  writeKernel(subject.kernel);
  const sinceWallMs = Date.now() - 1000;
  subject.mark?.();
  const child = spawn(crasher, [String(mib), fill], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const out = lines(child);
  const first = await out.next();
  if (first.done) throw new Error(`the crasher exited before crashing (${mib} MiB ${fill})`);
  const pid = Number(first.value.pid);
  let finished: Record<string, unknown> | null = null;
  void out.next().then((r) => { if (!r.done) finished = r.value; });
  const started = monoNs();
  let done: Done | null = null;
  let doneAt = 0;
  let finishedAt = 0;
  let lastBusy = monoNs();
  let lastLook = 0;
  while (monoNs() - started < CRASH_TIMEOUT_MS * 1e6) {
    done ??= subject.check(pid, sinceWallMs);
    if (done && !doneAt) doneAt = monoNs();
    if (done && subject.finished?.()) finishedAt = monoNs();
    if (done && (finishedAt || !subject.finished)) break;
    // A crash the handler dropped never gets done: give up once the process is reaped and
    // no handler has run for a while.
    if (monoNs() - lastLook > 100e6) {
      lastLook = monoNs();
      if (finished === null || handlers(subject.listeners).pids.length > 0) lastBusy = lastLook;
      else if (lastLook - lastBusy > QUIET_MS * 1e6) break;
    }
    await sleep(monoNs() - started < 500e6 ? 1 : 2);
  }
  await Promise.race([exited, sleep(30_000)]);
  const offset = wallMinusMonoMs();
  const f = finished as Record<string, unknown> | null;
  if (f && typeof f.killNs === 'number' && typeof f.reapNs === 'number') {
    m.heldMs = (f.reapNs - f.killNs) / 1e6;
    if (done) {
      m.doneMs = (doneAt - f.killNs) / 1e6;
      if (subject.finished) m.finishedMs = finishedAt ? (finishedAt - f.killNs) / 1e6 : null;
      m.storedBytes = done.storedBytes;
      m.core = done.core;
      m.manifest = done.manifest;
      if (done.manifest && Number.isFinite(done.manifest.capturedAtMs)) m.startMs = done.manifest.capturedAtMs - (f.killNs / 1e6 + offset);
    }
  }
  if (child.exitCode === null) child.kill('SIGKILL');
  await waitQuiet(subject.listeners);
  subject.discard(pid);
  settleDisk(workDir);
  return m;
}

// ---------------------------------------------------------------------------------------
// The subjects of a section, set up together and torn down together.

interface Bench {
  subjects: Subject[];
  cat: Subject;
  zstd: Subject | null;
  coredump: Subject | null;
  flightbox: FlightboxSubject;
  coredumpMissing: string | null;
  crasher: string;
  close(): Promise<void>;
}

async function setUp(opts: BenchOptions, dir: string, which: { zstd: boolean }): Promise<Bench> {
  const crasher = compileFixture('crasher', opts.workDir, ['-pthread']);
  const guard = new KernelGuard();
  foreign.clear();
  for (const pid of handlers([]).pids) foreign.add(pid);
  if (foreign.size > 0) opts.log(`${foreign.size} core_pattern helpers of earlier crashes still run; they are ignored`);
  const made: Subject[] = [];
  try {
    mkdirSync(dir, { recursive: true });
    const suid = guard.saved.suidDumpable;
    const cat = referenceSubject('cat > file', 'cat.sh', join(dir, 'cat'), suid);
    made.push(cat);
    const zstd = which.zstd ? referenceSubject('zstd -3 > file', 'zstd.sh', join(dir, 'zstd'), suid) : null;
    if (zstd) made.push(zstd);
    const pkg = findCoredump();
    let coredump: Subject | null = null;
    let coredumpMissing: string | null = null;
    if (typeof pkg === 'string') {
      coredumpMissing = pkg;
      opts.log(`${pkg}: not measured`);
    } else {
      coredump = await coredumpSubject(pkg, dir, opts.log);
      made.push(coredump);
    }
    const flightbox = flightboxSubject(join(dir, 'fbx'), suid, 'flightbox', { describe: 'no daemon' });
    made.push(flightbox);
    return {
      subjects: made, cat, zstd, coredump, flightbox, coredumpMissing, crasher,
      async close() {
        for (const s of made.reverse()) await s.close();
        guard.restore();
      },
    };
  } catch (err) {
    for (const s of made.reverse()) await s.close();
    guard.restore();
    throw err;
  }
}

function push<T>(m: Map<string, T[]>, key: string, v: T): void {
  const list = m.get(key);
  if (list) list.push(v);
  else m.set(key, [v]);
}

function rotate<T>(xs: readonly T[], k: number): T[] {
  const n = xs.length;
  return xs.map((_, i) => xs[(i + k) % n]!);
}

const fmtMs = (v: number | null | undefined): string => (v === null || v === undefined ? 'n/a' : `${v.toFixed(v >= 100 ? 0 : 1)} ms`);
const nums = (xs: readonly (number | null | undefined)[]): number[] => xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
const medianOf = (ms: readonly Measure[], f: (m: Measure) => number | null | undefined): number | null => median(nums(ms.map(f)));

/** What flightbox's manifests say about where its time went (medians). */
function flightboxBreakdown(ms: readonly Measure[]): string {
  const t = (k: string): number | null => medianOf(ms, (m) => m.manifest?.timings[k]);
  const cache = new Map<string, number>();
  for (const m of ms) if (m.manifest?.codeCache) cache.set(m.manifest.codeCache, (cache.get(m.manifest.codeCache) ?? 0) + 1);
  const cacheNote = cache.size > 0 ? `; code cache ${[...cache].map(([k, n]) => `${k} ${n}×`).join(', ')}` : '';
  // Capture start is the launcher's start (it copies /proc and the core's first part before
  // node starts; the kernel stamps its files with a coarse clock, a few ms of resolution).
  return `manifest timings (medians): signal to capture start ${fmtMs(medianOf(ms, (m) => m.startMs))} (the kernel starting the launcher)` +
    `, capture start to release ${fmtMs(t('holdMs'))} (of which /proc ${fmtMs(t('procMs'))}), ${t('takenMs') !== null ? `capture start to the daemon taking it ${fmtMs(t('takenMs'))} (no node started)`
      : t('earlyReadyMs') !== null ? `capture start to the node started beside the launcher being ready ${fmtMs(t('earlyReadyMs'))} and to the launcher's word ${fmtMs(t('earlyGoMs'))}`
      : `node's start to its first line for this crash ${fmtMs(t('startupMs'))}`}, stack trace ${fmtMs(t('backtraceMs'))}` +
    `, compression and fsync ${fmtMs(t('compressMs'))} (the two run side by side), capture start to manifest ${fmtMs(t('totalMs'))}${cacheNote}`;
}

function label(mib: number): string {
  return mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`;
}

// ---------------------------------------------------------------------------------------
// Section 1: cores of 16 MiB, 256 MiB and 1 GiB, three fills, four handlers.

export const ingestion: Section = async (opts) => {
  const sizes = opts.quick ? [16, 128] : [16, 256, 1024];
  const bench = await setUp(opts, join(opts.workDir, 'ingest'), { zstd: true });
  const rows: Row[] = [];
  // The smallest cores again with the daemon running, as an installation runs: the launcher
  // reads them whole and hands them to the daemon (no node started).
  const withDaemon = daemonSubject(join(opts.workDir, 'ingest', 'fbx-daemon'), bench);
  try {
    for (const mib of sizes) {
      for (const fill of FILLS) {
        const results = new Map<string, Measure[]>(bench.subjects.map((s) => [s.name, []]));
        const log = (s: Subject, run: number, m: Measure): void =>
          opts.log(`  ${label(mib)} ${fill} run ${run + 1}/${opts.runs} ${s.name}: held ${fmtMs(m.heldMs)}, done ${fmtMs(m.doneMs)}, stored ${m.storedBytes ?? 'n/a'} B`);
        for (let run = 0; run < opts.runs; run++) {
          for (const s of rotate(bench.subjects, run)) {
            const m = await crashOnce(bench.crasher, mib, fill, s, opts.workDir);
            results.get(s.name)!.push(m);
            log(s, run, m);
          }
        }
        const extra = mib === sizes[0] ? [withDaemon] : [];
        if (extra.length > 0) {
          results.set(withDaemon.name, await withBenchDaemon(withDaemon, opts.log, async () => {
            const ms: Measure[] = [];
            for (let run = 0; run < opts.runs; run++) {
              ms.push(await crashOnce(bench.crasher, mib, fill, withDaemon, opts.workDir));
              log(withDaemon, run, ms.at(-1)!);
            }
            return ms;
          }));
        }
        rows.push(...ingestionRows(bench, mib, fill, results, extra));
      }
    }
  } finally {
    await withDaemon.close();
    await bench.close();
  }
  return rows;
};

const FBX_DAEMON_NAME = 'flightbox + daemon';

/** flightbox installed on a store of its own, whose daemon (started by withBenchDaemon) runs its default recorders. */
function daemonSubject(dir: string, bench: Bench): FlightboxSubject {
  return flightboxSubject(dir, bench.cat.kernel.suidDumpable, FBX_DAEMON_NAME, {
    extra: 'recorders:\n  ftrace:\n    instance: flightbox-bench\n', describe: 'daemon running (metrics, ftrace)',
  });
}

/** `fn` with the subject's daemon running (started and stopped around it). */
async function withBenchDaemon<T>(subject: FlightboxSubject, log: (m: string) => void, fn: () => Promise<T>): Promise<T> {
  const daemon = await startBenchDaemon(subject.store);
  log(`daemon running (pid ${daemon.pid})`);
  try {
    return await fn();
  } finally {
    await daemon.stop();
  }
}

function ingestionRows(bench: Bench, mib: number, fill: Fill, results: Map<string, Measure[]>, extra: readonly FlightboxSubject[] = []): Row[] {
  const rows: Row[] = [];
  const med = (name: string | undefined, f: (m: Measure) => number | null | undefined): number | null =>
    name === undefined ? null : medianOf(results.get(name) ?? [], f);
  const catHeld = med(bench.cat.name, (m) => m.heldMs);
  const sdName = bench.coredump?.name;
  const sdHeld = med(sdName, (m) => m.heldMs);
  const sdDone = med(sdName, (m) => m.doneMs);
  const sdFinished = med(sdName, (m) => m.finishedMs);
  const zstdStored = med(bench.zstd?.name, (m) => m.storedBytes);
  const big = mib >= 1024;
  // flightbox's row is written after its stack trace: systemd-coredump's is its journal entry,
  // after its own (finished), when that could be measured; else its core file, else cat's.
  const doneRef = sdFinished ?? sdDone ?? med(bench.cat.name, (m) => m.doneMs);
  const doneRefName = sdFinished !== null ? 'systemd-coredump finished' : sdDone !== null ? 'systemd-coredump done' : 'cat > file';
  const c = `${label(mib)} ${fill}, 4 threads`;
  for (const s of [...bench.subjects, ...extra]) {
    const ms = results.get(s.name)!;
    const isFbx = s === bench.flightbox || (extra as readonly Subject[]).includes(s);
    const missed = ms.filter((m) => m.doneMs === null).length;
    const held = med(s.name, (m) => m.heldMs);
    const done = med(s.name, (m) => m.doneMs);
    const stored = med(s.name, (m) => m.storedBytes);
    let note = s.note;
    if (missed > 0) note += `; ${missed} of ${ms.length} runs never done (no handler left running, or ${CRASH_TIMEOUT_MS / 1000} s)`;
    if (isFbx) note += `; ${flightboxBreakdown(ms)}; raw core ${((medianOf(ms, (m) => m.manifest?.coreSize) ?? 0) / MIB).toFixed(1)} MiB`;
    const heldRow: Row = { section: SECTION_INGEST, case: `held: ${c}`, subject: s.name, value: held, unit: 'ms', runs: ms.length, ratio: ratio(held, catHeld), note };
    if (isFbx && big) {
      heldRow.target = sdHeld !== null ? '≤ 1.2 × cat, ≤ systemd-coredump' : '≤ 1.2 × cat (systemd-coredump not measured)';
      heldRow.met = held === null || catHeld === null ? null : held <= 1.2 * catHeld && (sdHeld === null || held <= sdHeld);
    }
    const doneRow: Row = {
      section: SECTION_INGEST, case: `${isFbx ? 'indexed' : 'done'}: ${c}`, subject: s.name, value: done, unit: 'ms', runs: ms.length,
      ratio: ratio(done, doneRef), note: `ratio to ${doneRefName}`,
    };
    if (isFbx) {
      doneRow.target = `≤ ${doneRefName}`;
      doneRow.met = done === null || doneRef === null ? null : done <= doneRef;
    }
    const storedRow: Row = {
      section: SECTION_INGEST, case: `stored: ${c}`, subject: s.name, value: stored === null ? null : stored / MIB, unit: 'MiB', runs: ms.length,
      ratio: ratio(stored, zstdStored), note: 'ratio to zstd -3 > file',
    };
    if (isFbx) {
      storedRow.target = '≤ 1.1 × zstd -3';
      storedRow.met = stored === null || zstdStored === null ? null : stored <= 1.1 * zstdStored;
    }
    rows.push(heldRow, doneRow);
    if (s.finished) {
      rows.push({
        section: SECTION_INGEST, case: `finished: ${c}`, subject: s.name, value: sdFinished, unit: 'ms', runs: ms.length,
        ratio: ratio(sdFinished, doneRef), note: 'its service instance exited: after the core file, its stack trace and its journal entry',
      });
    }
    rows.push(storedRow);
  }
  if (bench.coredumpMissing) {
    rows.push({ section: SECTION_INGEST, case: `held: ${c}`, subject: 'systemd-coredump', value: null, unit: 'ms', runs: 0, note: bench.coredumpMissing });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------
// Section 2: a small crash, flightbox against systemd-coredump (cat for scale); then with
// the daemon and its default recorders running, as a real installation runs.

export const smallCrash: Section = async (opts) => {
  const runs = opts.quick ? opts.runs : Math.max(opts.runs * 2, 10);
  const dir = join(opts.workDir, 'small');
  const bench = await setUp(opts, dir, { zstd: false });
  const results = new Map<string, Measure[]>();
  let daemonNote: string | null = null;
  let noTraceNote: string | null = null;
  const fbxDaemonName = FBX_DAEMON_NAME;
  const fbxNoTraceName = 'flightbox, no stack trace';
  try {
    for (let run = 0; run < runs; run++) {
      for (const s of rotate(bench.subjects, run)) {
        const m = await crashOnce(bench.crasher, SMALL_MIB, SMALL_FILL, s, opts.workDir);
        push(results, s.name, m);
        opts.log(`  small run ${run + 1}/${runs} ${s.name}: held ${fmtMs(m.heldMs)}, done ${fmtMs(m.doneMs)}`);
      }
    }
    // The same with the daemon running its default recorders (metrics, ftrace): the handler
    // then asks it to freeze before the core and for the recorders' snapshot after.
    const withDaemon = daemonSubject(join(dir, 'fbx-daemon'), bench);
    try {
      await withBenchDaemon(withDaemon, opts.log, async () => {
        for (let run = 0; run < runs; run++) {
          const m = await crashOnce(bench.crasher, SMALL_MIB, SMALL_FILL, withDaemon, opts.workDir);
          push(results, fbxDaemonName, m);
          opts.log(`  small run ${run + 1}/${runs} ${fbxDaemonName}: held ${fmtMs(m.heldMs)}, done ${fmtMs(m.doneMs)}`);
        }
      });
      daemonNote = withDaemon.note;
    } finally {
      await withDaemon.close();
    }
    // Without the stack trace: systemd-coredump's "done" (its final core file) comes before
    // its stack trace and journal entry, flightbox's row after its stack trace.
    const noTrace = flightboxSubject(join(dir, 'fbx-notrace'), bench.cat.kernel.suidDumpable, fbxNoTraceName, {
      extra: 'backtrace:\n  tool: none\n', describe: 'no daemon, backtrace.tool none',
    });
    try {
      for (let run = 0; run < runs; run++) {
        const m = await crashOnce(bench.crasher, SMALL_MIB, SMALL_FILL, noTrace, opts.workDir);
        push(results, fbxNoTraceName, m);
        opts.log(`  small run ${run + 1}/${runs} ${fbxNoTraceName}: held ${fmtMs(m.heldMs)}, done ${fmtMs(m.doneMs)}`);
      }
      noTraceNote = noTrace.note;
    } finally {
      await noTrace.close();
    }
  } finally {
    await bench.close();
  }
  const rows: Row[] = [];
  const med = (name: string, f: (m: Measure) => number | null | undefined): number | null => medianOf(results.get(name) ?? [], f);
  const sd = bench.coredump?.name ?? null;
  const sdHeld = sd ? med(sd, (m) => m.heldMs) : null;
  const sdDone = sd ? med(sd, (m) => m.doneMs) : null;
  const sdFinished = sd ? med(sd, (m) => m.finishedMs) : null;
  // As in section 1: flightbox's row comes after its stack trace, systemd-coredump's journal
  // entry after its own (finished); its core file (done) is before both.
  const indexedRef = sdFinished ?? sdDone;
  const indexedRefName = sdFinished !== null ? 'systemd-coredump finished' : 'systemd-coredump done';
  const c = `${SMALL_MIB} MiB ${SMALL_FILL}, 4 threads`;
  const names = [...bench.subjects.map((s) => s.name), fbxDaemonName, fbxNoTraceName];
  for (const name of names) {
    const ms = results.get(name) ?? [];
    const isFbx = name === bench.flightbox.name || name === fbxDaemonName || name === fbxNoTraceName;
    const subjectNote = name === fbxDaemonName ? daemonNote ?? '' : name === fbxNoTraceName ? noTraceNote ?? '' : bench.subjects.find((s) => s.name === name)?.note ?? '';
    const extra = isFbx ? `; ${flightboxBreakdown(ms)}` : '';
    const held = med(name, (m) => m.heldMs);
    const done = med(name, (m) => m.doneMs);
    const refNote = sd ? 'ratio to systemd-coredump' : `ratio: ${bench.coredumpMissing}`;
    const heldRow: Row = { section: SECTION_SMALL, case: `held: ${c}`, subject: name, value: held, unit: 'ms', runs: ms.length, ratio: ratio(held, sdHeld), note: `${refNote}; ${subjectNote}${extra}` };
    // Without a stack trace flightbox is compared with systemd-coredump's core file (done).
    const ref = name === fbxNoTraceName ? sdDone : isFbx ? indexedRef : sdDone;
    const refName = name === fbxNoTraceName ? 'systemd-coredump done' : isFbx ? indexedRefName : 'systemd-coredump done';
    const doneNote = sd ? `ratio to ${refName}` : refNote;
    const doneRow: Row = { section: SECTION_SMALL, case: `${isFbx ? 'indexed' : 'done'}: ${c}`, subject: name, value: done, unit: 'ms', runs: ms.length, ratio: ratio(done, ref), note: doneNote };
    if (isFbx && name !== fbxNoTraceName) {
      heldRow.target = '≤ 60 ms';
      heldRow.met = held === null ? null : held <= 60;
      doneRow.target = sd ? `≤ ${indexedRefName}` : 'systemd-coredump not measured';
      doneRow.met = done === null || indexedRef === null ? null : done <= indexedRef;
    }
    rows.push(heldRow, doneRow);
    if (name === sd && sdFinished !== null) {
      rows.push({
        section: SECTION_SMALL, case: `finished: ${c}`, subject: name, value: sdFinished, unit: 'ms', runs: ms.length, ratio: 1,
        note: 'its service instance exited: after the core file, its stack trace and its journal entry',
      });
    }
  }
  if (bench.coredumpMissing) rows.push({ section: SECTION_SMALL, case: `done: ${c}`, subject: 'systemd-coredump', value: null, unit: 'ms', runs: 0, note: bench.coredumpMissing });
  return rows;
};

// ---------------------------------------------------------------------------------------
// Section 3: a storm of crashes within a short window.

interface StormMeasure {
  subject: string;
  done: number;
  cores: number;
  totalMs: number | null;
  releasedMs: number | null;
  peakAnon: number;
  peakRss: number;
  peakHandlers: number;
  /** flightbox: where the crashes that got no row went (bundles, spool markers, log warnings). */
  missing?: string;
}

/**
 * What became of the crashes of `missing` pids in a flightbox store: published bundles of
 * theirs, spool markers (published, index locked past busyTimeout), the store log's warnings.
 */
export function whereMissing(root: string, missing: readonly number[]): string {
  const count = (dir: string, keep: (name: string) => boolean): number => {
    try {
      return readdirSync(dir).filter(keep).length;
    } catch {
      return 0;
    }
  };
  const ofMissing = (name: string): boolean => missing.some((pid) => name.includes(`-${pid}-`));
  let bundles = 0;
  for (const day of existsSync(join(root, 'bundles')) ? readdirSync(join(root, 'bundles')) : []) bundles += count(join(root, 'bundles', day), ofMissing);
  const spooled = count(join(root, 'spool'), ofMissing);
  const staging = count(join(root, 'staging'), ofMissing);
  let warnings: string[] = [];
  try {
    warnings = readFileSync(join(root, 'flightbox.log'), 'utf8').split('\n')
      .filter((l) => !/ info /.test(l) && l.trim() !== '' && missing.some((pid) => l.includes(`-${pid}-`) || l.includes(`pid=${pid} `)))
      .map((l) => l.slice(0, 300));
  } catch {
    // no log
  }
  return `pids ${missing.join(' ')}: ${bundles} published, ${spooled} spooled, ${staging} left in staging` +
    (warnings.length > 0 ? `; log: ${warnings.slice(0, 3).join(' | ')}` : '; no warning in the store log');
}

async function stormOnce(crasher: string, n: number, windowMs: number, subject: Subject, workDir: string): Promise<StormMeasure> {
  writeKernel(subject.kernel);
  const sinceWallMs = Date.now() - 1000;
  const child = spawn(crasher, [String(STORM_MIB), STORM_FILL, String(n), String(windowMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const out = lines(child);
  const first = await out.next();
  if (first.done) throw new Error('the storm crasher exited before crashing');
  const pids = (first.value.pids as number[]).map(Number);
  let finished: Record<string, unknown> | null = null;
  void out.next().then((r) => { if (!r.done) finished = r.value; });
  const wanted = new Set(pids);
  const doneAt = new Map<number, number>();
  let cores = 0;
  let peakAnon = 0;
  let peakRss = 0;
  let peakHandlers = 0;
  let lastEvent = monoNs();
  const started = monoNs();
  while (doneAt.size < n && monoNs() - started < STORM_TIMEOUT_MS * 1e6) {
    for (const [pid, core] of subject.doneSince(sinceWallMs)) {
      if (!wanted.has(pid) || doneAt.has(pid)) continue;
      doneAt.set(pid, monoNs());
      if (core) cores++;
      lastEvent = monoNs();
    }
    const h = handlers(subject.listeners);
    if (h.pids.length > 0) lastEvent = monoNs();
    peakAnon = Math.max(peakAnon, h.anon);
    peakRss = Math.max(peakRss, h.rss);
    peakHandlers = Math.max(peakHandlers, h.pids.length);
    // Lost crashes (systemd-coredump beyond its core_pipe_limit) never arrive: stop once the
    // crasher has reaped every process and no handler has run for a while.
    if (finished !== null && monoNs() - lastEvent > QUIET_MS * 1e6) break;
    await sleep(STORM_SAMPLE_MS);
  }
  await Promise.race([exited, sleep(30_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
  const f = finished as Record<string, unknown> | null;
  const firstKill = f && typeof f.firstKillNs === 'number' ? f.firstKillNs : null;
  const lastReap = f && typeof f.lastReapNs === 'number' ? f.lastReapNs : null;
  const lastDone = doneAt.size > 0 ? Math.max(...doneAt.values()) : null;
  await waitQuiet(subject.listeners);
  const lost = pids.filter((pid) => !doneAt.has(pid));
  const missing = lost.length > 0 && 'store' in subject ? whereMissing((subject as FlightboxSubject).store.root, lost) : undefined;
  for (const pid of pids) subject.discard(pid);
  settleDisk(workDir);
  return {
    missing,
    subject: subject.name,
    done: doneAt.size,
    cores,
    totalMs: firstKill !== null && lastDone !== null ? (lastDone - firstKill) / 1e6 : null,
    releasedMs: firstKill !== null && lastReap !== null ? (lastReap - firstKill) / 1e6 : null,
    peakAnon,
    peakRss,
    peakHandlers,
  };
}

export const storm: Section = async (opts) => {
  const n = opts.quick ? 50 : 200;
  const windowMs = opts.quick ? 500 : 2000;
  const bench = await setUp(opts, join(opts.workDir, 'storm'), { zstd: false });
  const results = new Map<string, StormMeasure[]>(bench.subjects.map((s) => [s.name, []]));
  try {
    for (let run = 0; run < opts.runs; run++) {
      for (const s of rotate(bench.subjects, run)) {
        const m = await stormOnce(bench.crasher, n, windowMs, s, opts.workDir);
        results.get(s.name)!.push(m);
        opts.log(`  storm run ${run + 1}/${opts.runs} ${s.name}: ${m.done}/${n} done (${m.cores} cores) in ${fmtMs(m.totalMs)}, released in ${fmtMs(m.releasedMs)}, peak ${(m.peakAnon / MIB).toFixed(0)} MiB anonymous in ${m.peakHandlers} processes`);
      }
    }
  } finally {
    await bench.close();
  }
  const rows: Row[] = [];
  const med = (name: string, f: (m: StormMeasure) => number | null): number | null => median(nums((results.get(name) ?? []).map(f)));
  const catTotal = med(bench.cat.name, (m) => m.totalMs);
  const catPeak = med(bench.cat.name, (m) => m.peakAnon);
  const c = `${n} × ${STORM_MIB} MiB ${STORM_FILL} within ${windowMs / 1000} s`;
  for (const s of bench.subjects) {
    const ms = results.get(s.name)!;
    const isFbx = s === bench.flightbox;
    const done = med(s.name, (m) => m.done);
    const total = med(s.name, (m) => m.totalMs);
    const peak = med(s.name, (m) => m.peakAnon);
    const all = ms.map((m) => `${m.done}`).join(', ');
    const indexedRow: Row = {
      section: SECTION_STORM, case: `${isFbx ? 'indexed' : 'done'}: ${c}`, subject: s.name, value: done, unit: 'count', runs: ms.length,
      note: `per run: ${all}; with their core: ${ms.map((m) => m.cores).join(', ')}; ${s.note}` +
        ms.map((m, i) => (m.missing ? `; run ${i + 1} without a row: ${m.missing}` : '')).join(''),
    };
    if (isFbx) {
      indexedRow.target = `${n} of ${n}`;
      indexedRow.met = ms.length > 0 && ms.every((m) => m.done === n);
    }
    const totalRow: Row = {
      section: SECTION_STORM, case: `total: ${c}`, subject: s.name, value: total, unit: 'ms', runs: ms.length, ratio: ratio(total, catTotal),
      note: `first signal to the last crash done; all processes released after ${fmtMs(med(s.name, (m) => m.releasedMs))}`,
    };
    if (isFbx) {
      totalRow.target = '≤ 2 × cat';
      totalRow.met = total === null || catTotal === null ? null : total <= 2 * catTotal;
    }
    const peakRow: Row = {
      section: SECTION_STORM, case: `peak handler memory: ${c}`, subject: s.name, value: peak === null ? null : peak / MIB, unit: 'MiB', runs: ms.length,
      ratio: ratio(peak, catPeak),
      note: `sum of the handler processes' anonymous memory (resident, not file-backed: what each one costs), sampled every ${STORM_SAMPLE_MS} ms; sum of RSS ${((med(s.name, (m) => m.peakRss) ?? 0) / MIB).toFixed(0)} MiB; at most ${med(s.name, (m) => m.peakHandlers)} processes at once`,
    };
    rows.push(indexedRow, totalRow, peakRow);
  }
  if (bench.coredumpMissing) rows.push({ section: SECTION_STORM, case: `done: ${c}`, subject: 'systemd-coredump', value: null, unit: 'count', runs: 0, note: bench.coredumpMissing });
  return rows;
};
