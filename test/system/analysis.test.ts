// `top`, `view` and `watch` through a real daemon with the ftrace recorder: a workload of
// known system calls (M opens, K bytes written in CHUNK-byte writes and read back), a
// snapshot by SIGUSR1 right after it, then the CLI as a user runs it. The tracefs instance
// is our own and is gone afterwards; core_pattern is not touched (--no-install).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TopReport } from '../../analysis/types.js';
import { makeBundleId } from '../../store/bundle-id.js';
import { IndexDb, INDEX_FILE } from '../../store/index-db.js';
import type { Manifest } from '../../store/manifest.js';
import { Store } from '../../store/store.js';
import { CLI, FIXTURES, IS_ROOT, makeTempStore, runCli, waitFor, type TempStore } from '../helpers.js';
import { noSysctlDropIn, runningDaemon, stopDaemon, type DaemonProc } from './daemon-proc.js';

const M = 7; // files opened (plus DIR/data)
const K = 200_000; // bytes written, then read back
const CHUNK = 1000;
const INSTANCE = `fbxan-${process.pid}`;

let store: TempStore;
let daemon: DaemonProc | undefined;
let watcher: ChildProcess | undefined;
let watchOut = '';
const watchLines: { at: number; line: string }[] = [];
let workload: { pid: number; comm: string };
let id: string;
let indexedAt: number;

function cli(args: string[], opts: Parameters<typeof runCli>[1] = {}) {
  return runCli(['--config', store.configPath, ...args], opts);
}

beforeAll(async () => {
  if (!IS_ROOT) throw new Error('the analysis system test needs root (the ftrace recorder)');
  // Big buffers and no freeze at fatal signals: other programs on the machine must neither
  // push the workload out of the trace nor stop the trace before it. No overhead guard: the
  // workload's burst of system calls is over maxEventRate, and its counts are checked whole.
  store = makeTempStore(`recorders:\n  ftrace: { bufferSize: 16MiB, freezeOnFatalSignal: false, instance: ${INSTANCE}, maxEventRate: null }\n`);
  noSysctlDropIn(store);
  const comm = `fbxan${randomBytes(4).toString('hex')}`; // 13 characters: the whole comm
  const bin = join(store.dir, comm);
  const cc = spawnSync('gcc', ['-O0', '-o', bin, join(FIXTURES, 'analysis/workload.c')], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`gcc: ${cc.stderr}`);
  daemon = await runningDaemon(store, ['--no-install']);
  expect(existsSync(`/sys/kernel/tracing/instances/${INSTANCE}`)).toBe(true);

  watcher = spawn(process.execPath, [CLI, '--config', store.configPath, 'watch', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  watcher.stdout!.on('data', (b: Buffer) => {
    watchOut += b.toString();
    partial += b.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) watchLines.push({ at: Date.now(), line });
  });
  watcher.stderr!.on('data', (b: Buffer) => { watchOut += b.toString(); });
  await new Promise((r) => setTimeout(r, 1500)); // watch has started polling

  const work = join(store.dir, 'work');
  mkdirSync(work);
  const child = spawn(bin, [work, String(M), String(K), String(CHUNK)], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.stdout!.on('data', (b: Buffer) => { if (b.toString().includes('done')) resolve(); });
  });
  workload = { pid: child.pid!, comm };
  // The snapshot at once: a signal, not a CLI that would fill the buffer while it starts.
  daemon.child.kill('SIGUSR1');
  // Read-only, as watch reads it; the row says when it was indexed.
  let index: IndexDb | undefined;
  try {
    const row = await waitFor('the snapshot to be indexed', () => {
      index ??= existsSync(join(store.root, INDEX_FILE)) ? new IndexDb(join(store.root, INDEX_FILE), { busyTimeoutMs: 1000, readonly: true }) : undefined;
      return index?.list({ kind: 'snapshot' })[0];
    }, 60_000, 20);
    id = row.id;
    indexedAt = row.indexed_at;
  } finally {
    index?.close();
  }
  // Wait here, with the event loop free, so that the time a line arrives is when watch wrote
  // it (the tests below block in spawnSync).
  await waitFor('watch to print the event', () => watchLines.some((l) => l.line.includes(id)), 5000, 10).catch(() => undefined);
  child.stdin!.end();
  await new Promise((r) => child.on('exit', r));
}, 180_000);

afterAll(async () => {
  if (watcher && watcher.exitCode === null) watcher.kill('SIGKILL');
  await stopDaemon(daemon);
  expect(existsSync(`/sys/kernel/tracing/instances/${INSTANCE}`)).toBe(false);
  store?.cleanup();
});

describe('flightbox top', () => {
  it('shows the workload with at least its known system calls, bytes and opens, and the right name', () => {
    const r = cli(['top', id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as TopReport;
    expect(report.source).toBe('ftrace');
    const w = report.processes.find((p) => p.pid === workload.pid);
    expect(w, `pid ${workload.pid} not in the report: ${report.warnings.join('; ')}`).toBeDefined();
    expect(w!.comm).toBe(workload.comm);
    expect(w!.opens).toBeGreaterThanOrEqual(M + 1);
    expect(w!.bytesWritten).toBeGreaterThanOrEqual(K);
    expect(w!.bytesRead).toBeGreaterThanOrEqual(K);
    // M opens and closes, K/CHUNK writes and reads and more
    expect(w!.syscalls).toBeGreaterThanOrEqual(2 * M + 2 * (K / CHUNK));
    expect(w!.topSyscalls.map((s) => s.name)).toContain('write');
    // (Seen once at 0 with the syscalls counted: the message keeps what explains it next time.)
    expect(w!.cpuMs, JSON.stringify({ warnings: report.warnings, workload: w, eventsRead: report.eventsRead, eventsLost: report.eventsLost })).toBeGreaterThan(0);
    expect(report.span).not.toBeNull();
    // the trace ends at the snapshot, shortly after the workload
    expect(Math.abs(report.span!.endMs - report.event!.timeMs)).toBeLessThan(10_000);
    const perSecond = report.seconds.flatMap((s) => s.processes.filter((p) => p.pid === workload.pid));
    expect(perSecond.reduce((n, p) => n + p.bytesWritten, 0)).toBe(w!.bytesWritten);
    expect(report.metrics.length).toBeGreaterThan(0);
  });

  it('prints the whole report as text when not on a terminal', () => {
    const r = cli(['top', id, '--rows', '1000']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^\\s*${workload.pid}\\s+${workload.comm}\\b`, 'm'));
    expect(r.stdout).toMatch(/^Processes over the whole span/m);
    expect(r.stdout).toMatch(/^Metrics before the event/m);
  });

  it('--live samples this host: one line per second on a pipe, JSON with --json', () => {
    const r = cli(['top', '--live', '--count', '2'], { timeout: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    for (const l of lines) expect(l).toMatch(/cpu \d+(\.\d)?% .* load \d.* mem .* psi cpu/);
    const j = cli(['top', '--live', '--json', '--count', '1'], { timeout: 20_000 });
    expect(j.code, j.stderr).toBe(0);
    const sample = JSON.parse(j.stdout) as { t: number; cpu: unknown; topCpu: unknown[] };
    expect(Math.abs(sample.t - Date.now())).toBeLessThan(10_000);
    expect(sample.cpu).not.toBeNull();
  });

  it.each([
    [['top', '--live', 'ID'], 2, /--live shows this host now/],
    [['top', 'nosuchevent'], 3, /no event matches "nosuchevent"/],
    [['top', '--source', 'perf'], 2, /--source: expected ftrace or lttng/],
    [['top', '--count', '2'], 2, /--count goes with --live/],
    [['view', 'x', '--source', 'lttng'], 3, /no event matches/],
  ])('flightbox %j fails with exit %d and one sentence', (args, code, msg) => {
    const r = cli(args);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(msg);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('flightbox view', () => {
  it('prints the raw trace: trace-cmd report\'s event lines, system calls among them', () => {
    const r = cli(['view', id], { maxBuffer: 1 << 30 });
    expect(r.code, r.stderr).toBe(0);
    // trace-cmd's own layout (its version, "<...>" for names the kernel forgot; no instance
    // prefix: the recorder writes the instance's pages as the file's main buffer). Which tasks
    // appear is checked on our reader's lines below: in full-suite runs trace-cmd's report of
    // this snapshot (then written by trace-cmd extract) lacked the workload's events twice
    // while our reader of the same bundle had them.
    const events = r.stdout.split('\n').filter((l) => /^\s*\S+-\d+\s+\[\d{3}\]\s+\d+\.\d+: sys_enter:/.test(l));
    expect(events.length).toBeGreaterThan(100);
  });

  it('--raw prints our reader\'s lines, system calls named', () => {
    const r = cli(['view', id, '--raw'], { maxBuffer: 1 << 30 });
    expect(r.code, r.stderr).toBe(0);
    const mine = r.stdout.split('\n').filter((l) => l.includes(`${workload.comm}-${workload.pid} `) || l.includes(`<...>-${workload.pid} `));
    expect(mine.some((l) => / sys_enter openat\(/.test(l))).toBe(true);
    expect(mine.some((l) => / sys_exit write = 1000$/.test(l))).toBe(true);
    expect(r.stderr).toBe('');
  });

  it.each([[[]], [['--raw']]])('ends quietly when the reader goes away (view %j | head -1)', (extra) => {
    const r = spawnSync('bash', ['-o', 'pipefail', '-c', `"${process.execPath}" "${CLI}" --config "${store.configPath}" view ${id} ${extra.join(' ')} | head -n 1`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toBe('');
  });
});

describe('flightbox watch', () => {
  it('printed the new event within 2 s of its indexing, and nothing else', async () => {
    const seen = watchLines.find((l) => l.line.includes(id));
    expect(seen, `watch printed: ${watchOut}`).toBeDefined();
    if (!seen) return;
    expect(seen.at - indexedAt).toBeLessThan(2000);
    expect(watchLines).toHaveLength(1);
    expect(JSON.parse(seen.line)).toMatchObject({ id, kind: 'snapshot', reason: 'SIGUSR1' });
    expect(watchOut.trim()).toBe(seen.line);
  });

  it('does not print old events again after a reindex, and stops cleanly on SIGINT', async () => {
    const r = cli(['reindex']);
    expect(r.code, r.stderr).toBe(0);
    await new Promise((res) => setTimeout(res, 1500));
    expect(watchLines).toHaveLength(1);
    const exited = new Promise<number | null>((res) => watcher!.on('exit', (c) => res(c)));
    watcher!.kill('SIGINT');
    expect(await exited).toBe(0);
  });

  it('applies list\'s filters and -n shows the newest matches first', async () => {
    const filtered = spawn(process.execPath, [CLI, '--config', store.configPath, 'watch', '--kind', 'crash', '-n', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const backlog = spawn(process.execPath, [CLI, '--config', store.configPath, 'watch', '-n', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let a = '';
    let b = '';
    filtered.stdout!.on('data', (d: Buffer) => { a += d.toString(); });
    backlog.stdout!.on('data', (d: Buffer) => { b += d.toString(); });
    await waitFor('watch -n to print the backlog', () => b.includes(id), 10_000);
    await new Promise((res) => setTimeout(res, 1000));
    for (const c of [filtered, backlog]) c.kill('SIGTERM');
    await Promise.all([filtered, backlog].map((c) => new Promise((res) => c.on('exit', res))));
    expect(a).toBe(''); // the snapshot is not a crash
    expect(b.split('\n')[0]).toMatch(/^TIME\s+ID\s+PID\s+UID\s+SIG\s+COREFILE\s+SIZE\s+EXE$/);
    expect(b).toMatch(new RegExp(`${id}.*\\(snapshot: SIGUSR1\\)`));
  });
});

// Without a daemon: bundles published with the store's own code, watch as root and as a user.
describe('flightbox watch on a changing index', () => {
  const HAVE_SETFACL = spawnSync('sh', ['-c', 'command -v setfacl']).status === 0;
  const template = JSON.parse(readFileSync(join(FIXTURES, 'analysis/bundle/manifest.json'), 'utf8')) as Manifest;
  let s2: TempStore;
  let st: Store;
  let seq = 0;

  /** A crash of `uid` published and indexed as the handler does it (read access granted to the uid). */
  function addCrash(uid: number): string {
    const pid = 4000 + ++seq;
    const id = makeBundleId(new Date(), pid);
    const staging = st.createStaging(id);
    const m: Manifest = {
      ...template, id, kind: 'crash', timeMs: Date.now(), time: new Date().toISOString(), reason: null, recorders: [], files: [], warnings: [],
      process: {
        pid, pidInNamespace: pid, tid: pid, tidInNamespace: pid, ppid: 1, uid, gid: uid, signal: 11, signalName: 'SIGSEGV', comm: 'fbxw', exe: '/usr/bin/fbxw',
        cmdline: ['/usr/bin/fbxw'], cwd: '/', root: '/', cgroup: null, unit: null, namespaces: {}, inContainer: false, hostnameInNamespace: null,
        dumpable: 1, rlimitCore: null, threads: 1, fdCount: 3, startTimeTicks: null, procVerified: true,
      },
    };
    st.finishBundle(staging, m, uid === 0 ? {} : { grantUid: uid });
    return id;
  }

  function watch(args: string[], as?: { uid: number; gid: number }): { child: ChildProcess; out: () => string } {
    const child = spawn(process.execPath, [CLI, '--config', s2.configPath, 'watch', '--json', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], cwd: '/', ...(as ?? {}),
    });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
    return { child, out: () => out };
  }

  async function stop(c: ChildProcess): Promise<number | null> {
    const exited = new Promise<number | null>((res) => c.on('exit', (code) => res(code)));
    c.kill('SIGINT');
    return exited;
  }

  beforeAll(() => {
    s2 = makeTempStore();
    chmodSync(s2.dir, 0o755);
    chmodSync(s2.configPath, 0o644);
    st = new Store(s2.root, { create: true, busyTimeoutMs: 5000 });
  });
  afterAll(() => {
    st?.close();
    s2?.cleanup();
  });

  it('sees a new event that takes the rowid of a deleted newest one', async () => {
    addCrash(0);
    const newest = addCrash(0);
    const w = watch([]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(w.out()).toBe('');
    // SQLite gives the next row max(rowid)+1: deleting the newest row frees its rowid.
    expect(st.removeBundle(newest, { why: 'test' })).toBe('deleted');
    const next = addCrash(0);
    await waitFor('watch to print the new event', () => w.out().includes(next), 5000);
    await new Promise((r) => setTimeout(r, 700));
    expect(await stop(w.child)).toBe(0);
    const lines = w.out().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ id: next, uid: 0 });
  });

  it.skipIf(!HAVE_SETFACL)('a user sees their own new crashes, and only those', async () => {
    const name = 'fbxwatch';
    if (spawnSync('id', ['-u', name]).status !== 0) {
      const add = spawnSync('useradd', ['-M', '-r', '-s', '/usr/sbin/nologin', name], { encoding: 'utf8' });
      expect(add.status, add.stderr).toBe(0);
    }
    const idOf = (flag: string) => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
    const user = { uid: idOf('-u'), gid: idOf('-g') };
    const before = addCrash(user.uid); // the user has something to read: watch starts as list would
    const w = watch([], user);
    await new Promise((r) => setTimeout(r, 1500));
    expect(w.out()).toBe('');
    const others = addCrash(0);
    const mine = addCrash(user.uid);
    await waitFor('watch to print the user\'s crash', () => w.out().includes(mine), 5000);
    await new Promise((r) => setTimeout(r, 1200));
    expect(await stop(w.child)).toBe(0);
    const lines = w.out().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ id: mine, uid: user.uid });
    expect(w.out()).not.toContain(others);
    expect(w.out()).not.toContain(before);
  });
});
