// The core_pattern handler driven exactly as the kernel drives it, but without touching
// /proc/sys/kernel/core_pattern: real ELF cores come from gdb's gcore on live processes we
// start, and the handler is spawned with the kernel's arguments and the core on its stdin.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync, copyFileSync, existsSync, ftruncateSync, mkdtempSync, openSync, readFileSync, readdirSync,
  rmSync, statSync, writeFileSync, writeSync, lstatSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { HANDLER, makeTempStore, readJson, runCli, type TempStore } from '../helpers.js';
import {
  collectOutput, compileWaiter, gcore, kernelArgs, runHandler, sha256, startProcess, stopAll, stopProcess, type ChildRun,
} from './procs.js';

/** Every capture without a running daemon says so (and nothing else, here). */
const NO_DAEMON_WARNING = expect.stringMatching(/^no flight-recorder snapshot: the flightbox daemon is not running/);

const ISO_LINE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (debug|info|warn|error) /;
const ID_RE = /^\d{8}T\d{6}-\d{1,10}-[0-9a-f]{6}$/;

// ---------------------------------------------------------------------------------------
// Fixtures: a tiny program that names itself (prctl) and waits forever in a known function
// (procs.ts compiles it); live processes, their gcore cores, the handler run as the kernel
// runs it (procs.ts).

let work: string; // private temp dir for binaries and cores
let waiter: string; // the compiled fixture
let waiterCore: Buffer; // a real core of it (gcore)
let waiterCorePath: string;
let sleepCopy: string; // a copy of /bin/sleep

// ---------------------------------------------------------------------------------------
// Driving the handler as the kernel does, through a pipe (runHandler, with a file on its
// stdin, is in procs.ts).

/**
 * The handler with a real pipe (a FIFO, as the kernel gives it, not a socketpair) on stdin,
 * fed by cat, and pipes on stdout and stderr to see whether it writes anything.
 */
function runHandlerPiped(configPath: string, args: string[], corePath: string): Promise<ChildRun> {
  const child = spawn('/bin/sh', ['-c', 'f=$1; shift; cat -- "$f" | "$@"', 'sh', corePath, process.execPath, HANDLER, '--config', configPath, '--', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collectOutput(child);
}

// ---------------------------------------------------------------------------------------
// Reading the store back.

interface EventJson {
  id: string;
  pid: number | null;
  uid: number | null;
  gid: number | null;
  signal: number | null;
  signalName: string | null;
  exe: string | null;
  comm: string | null;
  core: string;
  coreSize: number | null;
  bundle: string;
  warnings: number;
  time: string;
}

function listJson(s: TempStore, configPath = s.configPath): EventJson[] {
  const r = runCli(['--config', configPath, 'list', '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as EventJson[];
}

interface ManifestJson {
  version: number;
  id: string;
  kind: string;
  time: string;
  timeMs: number;
  process: {
    pid: number; uid: number; gid: number; signal: number; signalName: string; comm: string | null; exe: string | null;
    cmdline: string[] | null; rlimitCore: number | null; hostnameInNamespace: string | null; procVerified: boolean;
  };
  core: {
    stored: boolean; file: string | null; compression: string | null; size: number; storedSize: number; truncated: boolean;
    reason: string | null; limitBytes: number | null; sparseBytes: number; elf: boolean;
  };
  backtrace: { tool: string; file: string; frames: { fn: string | null }[]; threads: number } | null;
  signature: { text: string; hash: string } | null;
  warnings: string[];
  files: { path: string; size: number; sha256: string; mode: string }[];
}

/** The single bundle of a store: its directory and manifest, checked against the index row. */
function onlyBundle(s: TempStore, configPath = s.configPath): { dir: string; m: ManifestJson; row: EventJson } {
  const rows = listJson(s, configPath);
  expect(rows).toHaveLength(1);
  const row = rows[0]!;
  const dir = join(s.root, row.bundle);
  const m = readJson<ManifestJson>(join(dir, 'manifest.json'));
  expect(m.id).toBe(row.id);
  return { dir, m, row };
}

/** Every regular file under dir, relative, excluding manifest.json. */
function filesOnDisk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(dir, name));
    if (st.isDirectory()) out.push(...filesOnDisk(join(dir, name), rel));
    else if (rel !== 'manifest.json') out.push(rel);
  }
  return out;
}

/** manifest.files lists exactly the files on disk, with their real size, sha256 and mode. */
function verifyFiles(dir: string, m: ManifestJson): void {
  expect(m.files.map((f) => f.path).sort()).toEqual(filesOnDisk(dir).sort());
  for (const f of m.files) {
    const p = join(dir, f.path);
    const st = statSync(p);
    expect(st.size, f.path).toBe(f.size);
    expect(sha256(readFileSync(p)), f.path).toBe(f.sha256);
    expect((st.mode & 0o777).toString(8), f.path).toBe(f.mode);
  }
}

function zstdDecompress(path: string): Buffer {
  const r = spawnSync('zstd', ['-q', '-d', '-c', path], { maxBuffer: 512 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`zstd -d failed: ${String(r.stderr)}`);
  return r.stdout;
}

function utcDay(sec: number): string {
  return new Date(sec * 1000).toISOString().slice(0, 10);
}

function expectStagingEmpty(s: TempStore): void {
  expect(readdirSync(join(s.root, 'staging'))).toEqual([]);
  expect(readdirSync(join(s.root, 'spool'))).toEqual([]);
}

function logLines(s: TempStore): string[] {
  return readFileSync(join(s.root, 'flightbox.log'), 'utf8').split('\n').filter((l, i, a) => !(l === '' && i === a.length - 1));
}

// ---------------------------------------------------------------------------------------

let store: TempStore | null = null;
function newStore(extra = ''): TempStore {
  store = makeTempStore(extra);
  return store;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'fbx-hd-'));
  waiter = compileWaiter(work);
  sleepCopy = join(work, 'fbxsleep');
  copyFileSync('/bin/sleep', sleepCopy);
  // One reference core of the fixture, used where the process itself does not matter.
  const p = await startProcess(waiter, [], 'fbxwaiter');
  try {
    waiterCorePath = gcore(p.pid, join(work, 'ref'));
    waiterCore = readFileSync(waiterCorePath);
  } finally {
    stopProcess(p);
  }
});

afterEach(() => {
  stopAll();
  store?.cleanup();
  store = null;
});

afterAll(() => {
  stopAll();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('handler on a real core of a running process', () => {
  test('publishes a complete, verifiable, indexed bundle', async () => {
    const s = newStore();
    const p = await startProcess(waiter, ['fbx-live'], 'fbx-live');
    const core = gcore(p.pid, join(work, 'live'));
    const coreBytes = readFileSync(core);
    const t = Math.floor(Date.now() / 1000) - 7;
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid, uid: 1234, gid: 4321, signal: 11, time: t }), core);
    stopProcess(p);
    expect(r.code).toBe(0);

    const { dir, m, row } = onlyBundle(s);
    // Published under bundles/<UTC day of %t>/<id>.
    expect(row.id).toMatch(ID_RE);
    expect(row.id).toContain(`-${p.pid}-`);
    expect(row.bundle).toBe(`bundles/${utcDay(t)}/${row.id}`);
    expect(statSync(dir).isDirectory()).toBe(true);

    // Manifest: the crash as the kernel described it, and the process as /proc did.
    expect(m.version).toBe(1);
    expect(m.kind).toBe('crash');
    expect(m.timeMs).toBe(t * 1000);
    expect(m.time).toBe(new Date(t * 1000).toISOString());
    expect(m.process).toMatchObject({
      pid: p.pid, uid: 1234, gid: 4321, signal: 11, signalName: 'SIGSEGV', comm: 'fbx-live', exe: waiter,
      cmdline: [waiter, 'fbx-live'], rlimitCore: null, hostnameInNamespace: 'fbx-testhost', procVerified: true,
    });
    // The only warning: no daemon runs here, so no flight-recorder snapshot.
    expect(m.warnings).toEqual([NO_DAEMON_WARNING]);

    // Every file listed with the size and sha256 it really has.
    verifyFiles(dir, m);

    // The core: zstd, decompressing to exactly the bytes the "kernel" sent.
    expect(m.core).toMatchObject({ stored: true, file: 'core.zst', compression: 'zstd', size: coreBytes.length, truncated: false, reason: null, elf: true });
    expect(m.core.storedSize).toBe(statSync(join(dir, 'core.zst')).size);
    expect(existsSync(join(dir, 'core'))).toBe(false);
    expect(sha256(zstdDecompress(join(dir, 'core.zst')))).toBe(sha256(coreBytes));

    // A stack trace that names the program's own function.
    const bt = readFileSync(join(dir, 'backtrace.txt'), 'utf8');
    expect(bt).toContain('fbx_fixture_wait_here');
    expect(bt).toMatch(/pause/);
    expect(m.backtrace).not.toBeNull();
    expect(m.backtrace!.file).toBe('backtrace.txt');
    expect(m.backtrace!.frames.map((f) => f.fn)).toContain('fbx_fixture_wait_here');
    expect(m.signature!.text).toContain('fbxwaiter SIGSEGV');
    expect(m.signature!.text).toContain('fbx_fixture_wait_here');
    expect(m.signature!.hash).toMatch(/^[0-9a-f]{16}$/);

    // /proc, read while the process existed.
    for (const f of ['status', 'maps', 'limits', 'cmdline', 'environ', 'comm', 'stat']) {
      expect(existsSync(join(dir, 'proc', f)), `proc/${f}`).toBe(true);
    }
    expect(readFileSync(join(dir, 'proc/cmdline'), 'utf8')).toBe(`${waiter}\0fbx-live\0`);
    expect(readFileSync(join(dir, 'proc/comm'), 'utf8')).toBe('fbx-live\n');
    expect(readFileSync(join(dir, 'proc/status'), 'utf8')).toMatch(new RegExp(`^Pid:\\s+${p.pid}$`, 'm'));
    expect(readFileSync(join(dir, 'proc/maps'), 'utf8')).toContain(waiter);
    expect(readFileSync(join(dir, 'proc/limits'), 'utf8')).toContain('Max core file size');
    expect(statSync(join(dir, 'proc/environ')).mode & 0o777).toBe(0o600);
    expect(m.files.find((f) => f.path === 'proc/environ')?.mode).toBe('600');

    // Nothing left behind, and the index row agrees.
    expectStagingEmpty(s);
    expect(row).toMatchObject({ pid: p.pid, uid: 1234, gid: 4321, signal: 11, signalName: 'SIGSEGV', exe: waiter, comm: 'fbx-live', core: 'present', coreSize: coreBytes.length, warnings: 1 });
    expect(row.time).toBe(new Date(t * 1000).toISOString());

    // The store log tells the story, one timestamped line at a time.
    const log = logLines(s);
    expect(log.length).toBeGreaterThanOrEqual(3);
    for (const l of log) expect(l).toMatch(ISO_LINE);
    expect(log.join('\n')).toContain(row.id);
  });

  test('a copy of /bin/sleep: the trace names a nanosleep function', async () => {
    const s = newStore();
    const p = await startProcess(sleepCopy, ['1000'], 'fbxsleep');
    const core = gcore(p.pid, join(work, 'sleep'));
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid, signal: 6 }), core);
    stopProcess(p);
    expect(r.code).toBe(0);
    const { dir, m, row } = onlyBundle(s);
    expect(readFileSync(join(dir, 'backtrace.txt'), 'utf8')).toMatch(/nanosleep/);
    expect(m.process.signalName).toBe('SIGABRT');
    expect(m.signature!.text).toMatch(/^fbxsleep SIGABRT .*nanosleep/);
    expect(row.exe).toBe(sleepCopy);
    verifyFiles(dir, m);
  });

  test('exits 0 and writes nothing to stdout or stderr (core through a pipe)', async () => {
    const s = newStore();
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandlerPiped(s.configPath, kernelArgs({ pid: p.pid }), waiterCorePath);
    stopProcess(p);
    expect(r).toEqual({ code: 0, signal: null, stdout: '', stderr: '' });
    const { dir, m } = onlyBundle(s);
    expect(m.core.size).toBe(waiterCore.length);
    expect(sha256(zstdDecompress(join(dir, 'core.zst')))).toBe(sha256(waiterCore));
  });
});

describe('truncated and missing cores', () => {
  test('core.maxSize cuts the core: truncated, reason maxSize, size = the limit', async () => {
    const s = newStore('core:\n  maxSize: 64KiB\n');
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid }), waiterCorePath);
    stopProcess(p);
    expect(r.code).toBe(0);
    expect(waiterCore.length).toBeGreaterThan(65536);
    const { dir, m, row } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: true, truncated: true, reason: 'maxSize', size: 65536, limitBytes: 65536 });
    const stored = zstdDecompress(join(dir, m.core.file!));
    expect(stored.length).toBe(65536);
    expect(stored.equals(waiterCore.subarray(0, 65536))).toBe(true);
    expect(m.warnings.join('\n')).toMatch(/truncated at 65536 bytes \(core\.maxSize\)/);
    expect(row.core).toBe('truncated');
    expect(row.coreSize).toBe(65536);
    verifyFiles(dir, m);
    expectStagingEmpty(s);
  });

  test('RLIMIT_CORE (%c) smaller than the core: truncated, reason rlimit', async () => {
    const s = newStore();
    const p = await startProcess(waiter, [], 'fbxwaiter');
    // Through a real pipe: the handler stops reading at the limit, as with the kernel.
    const r = await runHandlerPiped(s.configPath, kernelArgs({ pid: p.pid, rlimit: '100000' }), waiterCorePath);
    stopProcess(p);
    expect(r).toEqual({ code: 0, signal: null, stdout: '', stderr: '' });
    const { dir, m, row } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: true, truncated: true, reason: 'rlimit', size: 100000, limitBytes: 100000 });
    expect(m.process.rlimitCore).toBe(100000);
    const stored = zstdDecompress(join(dir, m.core.file!));
    expect(stored.equals(waiterCore.subarray(0, 100000))).toBe(true);
    expect(m.warnings.join('\n')).toMatch(/RLIMIT_CORE/);
    expect(row.core).toBe('truncated');
    verifyFiles(dir, m);
  });

  test('RLIMIT_CORE above the core size: the whole core, not truncated', async () => {
    const s = newStore();
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid, rlimit: String(waiterCore.length) }), waiterCorePath);
    stopProcess(p);
    expect(r.code).toBe(0);
    const { dir, m } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: true, truncated: false, reason: null, size: waiterCore.length });
    expect(sha256(zstdDecompress(join(dir, m.core.file!)))).toBe(sha256(waiterCore));
  });

  test('%c = 0: no core stored, metadata still captured and indexed', async () => {
    const s = newStore();
    const p = await startProcess(waiter, ['fbx-nocore'], 'fbx-nocore');
    // Through a real pipe that the handler never reads: it must not wait for it.
    const r = await runHandlerPiped(s.configPath, kernelArgs({ pid: p.pid, rlimit: '0', signal: 6 }), waiterCorePath);
    stopProcess(p);
    expect(r).toEqual({ code: 0, signal: null, stdout: '', stderr: '' });
    const { dir, m, row } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: false, file: null, reason: 'rlimit', size: 0 });
    expect(readdirSync(dir).filter((n) => n.startsWith('core'))).toEqual([]);
    expect(m.backtrace).toBeNull();
    expect(m.warnings.join('\n')).toMatch(/RLIMIT_CORE is 0/);
    expect(m.process).toMatchObject({ pid: p.pid, comm: 'fbx-nocore', exe: waiter, signalName: 'SIGABRT', rlimitCore: 0 });
    expect(existsSync(join(dir, 'proc/status'))).toBe(true);
    expect(row).toMatchObject({ pid: p.pid, exe: waiter, comm: 'fbx-nocore', signal: 6, core: 'none' });
    verifyFiles(dir, m);
    expectStagingEmpty(s);
  });

  test('core.maxSize: 0 stores no core and says so as maxSize, not RLIMIT_CORE', async () => {
    const s = newStore('core:\n  maxSize: 0\n');
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid }), waiterCorePath);
    stopProcess(p);
    expect(r.code).toBe(0);
    const { m } = onlyBundle(s);
    expect(m.core.stored).toBe(false);
    expect(m.core.reason).toBe('maxSize');
    expect(m.warnings.join('\n')).not.toMatch(/RLIMIT_CORE|ulimit/);
  });
});

describe('odd input on stdin', () => {
  test('empty stdin: a bundle with an "empty" warning, no core file, still indexed', async () => {
    const s = newStore();
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandlerPiped(s.configPath, kernelArgs({ pid: p.pid }), '/dev/null');
    stopProcess(p);
    expect(r).toEqual({ code: 0, signal: null, stdout: '', stderr: '' });
    const { dir, m, row } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: false, file: null, size: 0, reason: 'empty', elf: false });
    expect(m.warnings.some((w) => /empty/.test(w))).toBe(true);
    expect(readdirSync(dir).filter((n) => n.startsWith('core'))).toEqual([]);
    expect(existsSync(join(dir, 'backtrace.txt'))).toBe(false);
    expect(row).toMatchObject({ pid: p.pid, exe: waiter, core: 'none' });
    expect(row.warnings).toBeGreaterThan(0);
    verifyFiles(dir, m);
    expectStagingEmpty(s);
  });

  test('non-ELF bytes: stored as they came, elf false, a warning, no stack trace', async () => {
    const s = newStore();
    const junk = randomBytes(300_000);
    junk[0] = 0x00; // never \x7fELF by chance
    const junkPath = join(s.dir, 'junk.bin');
    writeFileSync(junkPath, junk);
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid }), junkPath);
    stopProcess(p);
    expect(r.code).toBe(0);
    const { dir, m, row } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: true, file: 'core.zst', size: junk.length, elf: false, truncated: false });
    expect(zstdDecompress(join(dir, 'core.zst')).equals(junk)).toBe(true);
    expect(m.warnings.some((w) => /not an ELF core/.test(w))).toBe(true);
    expect(m.backtrace).toBeNull();
    expect(existsSync(join(dir, 'backtrace.txt'))).toBe(false);
    expect(row).toMatchObject({ pid: p.pid, core: 'present' });
    verifyFiles(dir, m);
  });

  test('an ELF header then zeros (64 MiB, sparse): small on disk, core.size right', async () => {
    const s = newStore('backtrace:\n  tool: none\ncore:\n  compress: none\n');
    const size = 64 * 1024 * 1024;
    const input = join(s.dir, 'sparse.core');
    const fd = openSync(input, 'w');
    writeSync(fd, waiterCore.subarray(0, 4096));
    ftruncateSync(fd, size);
    closeSync(fd);
    const inputHash = sha256(readFileSync(input));
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid }), input);
    expect(r.code).toBe(0);

    const { dir, m, row } = onlyBundle(s);
    expect(m.core).toMatchObject({ stored: true, file: 'core', compression: 'none', size, truncated: false, elf: true });
    expect(m.core.sparseBytes).toBeGreaterThanOrEqual(size - 128 * 1024);
    expect(m.core.storedSize).toBe(size - m.core.sparseBytes);
    const st = statSync(join(dir, 'core'));
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThan(2 * 1024 * 1024); // holes, not 64 MiB of zeros
    expect(sha256(readFileSync(join(dir, 'core')))).toBe(inputHash);
    expect(row.coreSize).toBe(size);
    verifyFiles(dir, m);

    // The same input compressed with zstd (the default): a tiny file that inflates back.
    const z = makeTempStore('backtrace:\n  tool: none\n');
    try {
      const r2 = await runHandler(z.configPath, kernelArgs({ pid: p.pid }), input);
      expect(r2.code).toBe(0);
      const b = onlyBundle(z);
      expect(b.m.core).toMatchObject({ stored: true, file: 'core.zst', size });
      expect(statSync(join(b.dir, 'core.zst')).size).toBeLessThan(1024 * 1024);
      expect(b.m.core.storedSize).toBe(statSync(join(b.dir, 'core.zst')).size);
      expect(sha256(zstdDecompress(join(b.dir, 'core.zst')))).toBe(inputHash);
    } finally {
      z.cleanup();
      stopProcess(p);
    }
  });
});

describe('awkward processes and configs', () => {
  test('a pid gone from /proc: the core is still published, with warnings, comm/exe null', async () => {
    const s = newStore();
    const gone = spawnSync('/bin/true');
    const pid = gone.pid!;
    expect(existsSync(`/proc/${pid}`)).toBe(false);
    const r = await runHandler(s.configPath, kernelArgs({ pid, signal: 11 }), waiterCorePath);
    expect(r.code).toBe(0);
    const { dir, m, row } = onlyBundle(s);
    expect(m.process).toMatchObject({ pid, comm: null, exe: null, cmdline: null, procVerified: false });
    expect(m.warnings.some((w) => w.includes(`/proc/${pid}`))).toBe(true);
    expect(m.core).toMatchObject({ stored: true, size: waiterCore.length, elf: true });
    expect(sha256(zstdDecompress(join(dir, 'core.zst')))).toBe(sha256(waiterCore));
    expect(existsSync(join(dir, 'proc/status'))).toBe(false);
    expect(row).toMatchObject({ pid, exe: null, comm: null, core: 'present' });
    verifyFiles(dir, m);
    expectStagingEmpty(s);
  });

  test('a broken option is ignored with a warning naming key and line; store.root is honoured', async () => {
    // makeTempStore writes 4 lines (store:, root, install:, sysctlDropIn), so compress is line 6.
    const s = newStore('core:\n  compress: rar\n  level: 5\n');
    expect(readFileSync(s.configPath, 'utf8').split('\n')[5]).toBe('  compress: rar');
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const r = await runHandlerPiped(s.configPath, kernelArgs({ pid: p.pid }), waiterCorePath);
    stopProcess(p);
    expect(r).toEqual({ code: 0, signal: null, stdout: '', stderr: '' });
    expect(existsSync(s.root)).toBe(true);
    // The CLI (rightly) refuses the broken file: read the store through a valid one.
    const good = join(s.dir, 'good.yaml');
    writeFileSync(good, `store:\n  root: ${s.root}\n`);
    expect(runCli(['--config', s.configPath, 'list']).code).toBe(78);
    const { dir, m } = onlyBundle(s, good);
    const w = m.warnings.filter((x) => x.includes('core.compress'));
    expect(w).toHaveLength(1);
    expect(w[0]).toContain('"rar"');
    expect(w[0]).toContain(`${s.configPath}:6`);
    expect(m.warnings.some((x) => x.includes('core.level'))).toBe(false);
    // The broken key fell back to its default (zstd).
    expect(m.core).toMatchObject({ stored: true, file: 'core.zst', compression: 'zstd', size: waiterCore.length });
    verifyFiles(dir, m);
  });

  test('hostile comm (/, newline, escapes): no path from it, escaped logs, JSON round-trip', async () => {
    const s = newStore();
    const hostile = 'e/v\n\x1b]0;t\x07\\z'; // 12 bytes: fits TASK_COMM_LEN
    const p = await startProcess(waiter, [hostile], hostile);
    const r = await runHandler(s.configPath, kernelArgs({ pid: p.pid }), waiterCorePath);
    stopProcess(p);
    expect(r.code).toBe(0);
    const { dir, m, row } = onlyBundle(s);
    expect(m.process.comm).toBe(hostile);
    expect(row.comm).toBe(hostile);
    expect(row.bundle).toBe(`bundles/${row.id.slice(0, 4)}-${row.id.slice(4, 6)}-${row.id.slice(6, 8)}/${row.id}`);
    expect(row.id).toMatch(ID_RE);
    // No name anywhere in the store was built from the comm.
    const walk = (d: string): string[] => readdirSync(d).flatMap((n) => {
      const p2 = join(d, n);
      return lstatSync(p2).isDirectory() ? [relative(s.root, p2), ...walk(p2)] : [relative(s.root, p2)];
    });
    for (const rel of walk(s.root)) expect(rel).toMatch(/^[A-Za-z0-9._/-]+$/);
    // The log: every line starts with a timestamp, no raw control characters at all.
    const raw = readFileSync(join(s.root, 'flightbox.log'), 'utf8');
    // eslint-disable-next-line no-control-regex
    expect(raw.replace(/\n/g, '')).not.toMatch(/[\x00-\x1f\x7f]/);
    for (const l of logLines(s)) expect(l).toMatch(ISO_LINE);
    expect(raw).toContain('comm=e/v\\x0a\\x1b]0;t\\x07\\\\z');
    verifyFiles(dir, m);
  });

  test('20 handlers at once on a fresh store: 20 bundles, 20 rows, no errors', async () => {
    const s = newStore();
    expect(existsSync(s.root)).toBe(false);
    const procs = await Promise.all(Array.from({ length: 20 }, () => startProcess(waiter, [], 'fbxwaiter')));
    const t = Math.floor(Date.now() / 1000);
    const runs = await Promise.all(procs.map((p, i) => runHandler(s.configPath, kernelArgs({ pid: p.pid, uid: 1000 + i, time: t }), waiterCorePath)));
    for (const p of procs) stopProcess(p);
    expect(runs.map((x) => x.code)).toEqual(Array(20).fill(0));

    const rows = listJson(s);
    expect(rows).toHaveLength(20);
    expect(new Set(rows.map((x) => x.id)).size).toBe(20);
    expect(rows.map((x) => x.pid).sort()).toEqual(procs.map((p) => p.pid).sort());
    expect(rows.map((x) => x.uid).sort()).toEqual(Array.from({ length: 20 }, (_, i) => 1000 + i).sort());
    const bundles = readdirSync(join(s.root, 'bundles', utcDay(t)));
    expect(bundles.sort()).toEqual(rows.map((x) => x.id).sort());
    for (const row of rows) {
      const m = readJson<ManifestJson>(join(s.root, row.bundle, 'manifest.json'));
      expect(m.warnings, row.id).toEqual([NO_DAEMON_WARNING]);
      expect(m.core.size).toBe(waiterCore.length);
    }
    expectStagingEmpty(s);
    const log = logLines(s);
    for (const l of log) expect(l).toMatch(ISO_LINE);
    expect(log.filter((l) => / (warn|error) /.test(l))).toEqual([]);
    expect(log.filter((l) => l.includes('Crash of'))).toHaveLength(20);
  });
});
