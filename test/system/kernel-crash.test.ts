// End to end through the real kernel: install the handler in core_pattern, crash real
// programs, and find each crash bundled, indexed and debuggable. core_pattern is restored
// whatever happens.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, FIXTURES, IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { crash, restoreKernelState, saveKernelState, type KernelState } from './kernel.js';

interface EventJson {
  id: string;
  pid: number;
  signal: number;
  signalName: string;
  exe: string;
  core: string;
  bundle: string;
}
interface ManifestJson {
  id: string;
  process: { pid: number; tid: number; signal: number; exe: string; comm: string; cmdline: string[]; uid: number };
  core: { stored: boolean; file: string; elf: boolean; truncated: boolean; size: number; sparseBytes: number; storedSize: number };
  backtrace: { tool: string; crashingTid: number; frames: { fn: string | null }[]; threads: number } | null;
  signature: { text: string; hash: string };
  files: { path: string; size: number; sha256: string }[];
  warnings: string[];
  timings: Record<string, number>;
}

describe.skipIf(!IS_ROOT)('crashes through the real kernel core_pattern', () => {
  let saved: KernelState;
  let store: TempStore;
  const cfgArgs = () => ['--config', store.configPath];

  function eventOf(pid: number): EventJson | undefined {
    const r = runCli([...cfgArgs(), 'list', '--pid', String(pid), '--json']);
    if (r.code !== 0) return undefined;
    const rows = JSON.parse(r.stdout) as EventJson[];
    return rows[0];
  }
  function manifestOf(e: EventJson): ManifestJson {
    return readJson<ManifestJson>(join(store.root, e.bundle, 'manifest.json'));
  }
  /** Decompress the stored core with the CLI and open it in gdb with the executable. */
  function gdbOnStoredCore(e: EventJson, exe: string): string {
    const out = join(store.dir, `core-${e.id}`);
    const d = runCli([...cfgArgs(), 'dump', e.id, '-o', out]);
    expect(d.code, d.stderr).toBe(0);
    expect(readFileSync(out).subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
    const g = spawnSync('gdb', ['-batch', '-nx', '-iex', 'set debuginfod enabled off', '-ex', 'bt', exe, out], { encoding: 'utf8' });
    expect(g.status).toBe(0);
    return g.stdout + g.stderr;
  }

  beforeAll(() => {
    saved = saveKernelState();
    store = makeTempStore();
    const r = runCli([...cfgArgs(), 'install']);
    expect(r.code, r.stderr).toBe(0);
  });

  afterAll(() => {
    try {
      if (store) runCli([...cfgArgs(), 'uninstall']);
    } finally {
      restoreKernelState(saved);
      store?.cleanup();
    }
  });

  it('installs a pattern that fits the kernel limit and points at the launcher', () => {
    const pattern = readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim();
    expect(pattern).toBe(`|${store.root}/core-handler %P %i %I %u %g %s %t %c %h %d %F`);
    expect(Buffer.byteLength(pattern)).toBeLessThanOrEqual(127);
    expect(readFileSync('/proc/sys/kernel/core_pipe_limit', 'utf8').trim()).toBe('0');
    expect(statSync(join(store.root, 'core-handler')).mode & 0o777).toBe(0o700);
  });

  it('(a) a C program that segfaults in a known function', async () => {
    const bin = buildCrasher('segv');
    const c = await crash(bin);
    expect(c.signal).toBe('SIGSEGV');
    const e = await waitFor('the segv crash in the index', () => eventOf(c.pid));
    expect(e.signalName).toBe('SIGSEGV');
    expect(e.exe).toBe(bin);
    expect(e.core).toBe('present');
    const m = manifestOf(e);
    expect(m.core.elf).toBe(true);
    expect(m.backtrace?.frames[0]?.fn).toBe('flightbox_crash_here');
    expect(m.backtrace?.frames.map((f) => f.fn)).toContain('flightbox_caller');
    expect(m.signature.text).toBe('segv SIGSEGV flightbox_crash_here|flightbox_caller|main');
    // made by the node the launcher started beside its copies (no daemon runs here)
    expect(m.timings.earlyReadyMs).toBeTypeOf('number');
    expect(m.timings.startupMs).toBeUndefined();
    for (const f of m.files) expect(statSync(join(store.root, e.bundle, f.path)).size).toBe(f.size);
    const gdb = gdbOnStoredCore(e, bin);
    expect(gdb).toMatch(/Program terminated with signal SIGSEGV/);
    expect(gdb).toMatch(/flightbox_crash_here/);
    const info = runCli([...cfgArgs(), 'info', e.id]);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/flightbox_crash_here/);
  });

  it('a core that is mostly holes: the long ones stored as frames of zeros, the core whole', async () => {
    const bin = buildCrasher('sparse-segv');
    const addrFile = join(store.dir, 'sparse-addr');
    const c = await crash(bin, [addrFile]);
    expect(c.signal).toBe('SIGSEGV');
    const addr = readFileSync(addrFile, 'utf8').trim();
    expect(addr).toMatch(/^0x[0-9a-f]+$/);
    const e = await waitFor('the sparse crash in the index', () => eventOf(c.pid));
    const m = manifestOf(e);
    expect(m.core).toMatchObject({ stored: true, file: 'core.zst', truncated: false });
    expect(m.core.sparseBytes).toBeGreaterThan(64 * 1024 * 1024);
    // several frames: zstd's for the data, hand-made ones for the 8 MiB and longer holes
    const l = spawnSync('zstd', ['-l', join(store.root, e.bundle, 'core.zst')], { encoding: 'utf8' });
    expect(l.status).toBe(0);
    const frames = Number(/^\s*(\d+)\s/m.exec(l.stdout.split('\n').slice(1).join('\n'))?.[1]);
    expect(frames).toBeGreaterThanOrEqual(3);
    expect(m.core.storedSize).toBeLessThan(2 * 1024 * 1024);
    // the dumped core has the marker where the process had it, and zeros around it
    const out = join(store.dir, `core-${e.id}`);
    const d = runCli([...cfgArgs(), 'dump', e.id, '-o', out]);
    expect(d.code, d.stderr).toBe(0);
    expect(statSync(out).size).toBe(m.core.size);
    // written sparse: the zeros are holes in the dumped file too
    expect(statSync(out).blocks * 512).toBeLessThan(m.core.size - 64 * 1024 * 1024);
    const g = spawnSync('gdb', ['-batch', '-nx', '-iex', 'set debuginfod enabled off', '-ex', `x/2gx ${addr}`, '-ex', `x/2gx ${addr} - 0x1000000`, '-ex', `x/2gx ${addr} + 0x1000000`, bin, out], { encoding: 'utf8' });
    expect(g.status).toBe(0);
    const words = [...g.stdout.matchAll(/:\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)/g)].map((x) => [BigInt(x[1]!), BigInt(x[2]!)]);
    expect(words).toEqual([[0x5ca1ab1ef1a7b0c5n, BigInt(c.pid)], [0n, 0n], [0n, 0n]]);
    rmSync(out);
  });

  it('(b) a multi-threaded program that aborts in one thread', async () => {
    const bin = buildCrasher('threads-abort', ['-pthread']);
    const c = await crash(bin);
    expect(c.signal).toBe('SIGABRT');
    const e = await waitFor('the thread abort in the index', () => eventOf(c.pid));
    const m = manifestOf(e);
    expect(m.process.signal).toBe(6);
    expect(m.backtrace?.threads).toBe(5);
    // The crashing thread is the worker, not the main thread, and the signature says where.
    expect(m.backtrace?.crashingTid).not.toBe(c.pid);
    expect(m.backtrace?.crashingTid).toBe(m.process.tid);
    expect(m.backtrace?.frames.map((f) => f.fn)).toContain('flightbox_worker_abort');
    expect(m.signature.text).toMatch(/^threads-abort SIGABRT flightbox_worker_abort\|/);
    expect(gdbOnStoredCore(e, bin)).toMatch(/SIGABRT/);
  });

  it('(c) a copy of /bin/sleep killed with SIGABRT', async () => {
    const bin = join(store.dir, 'sleep-copy');
    copyFileSync('/bin/sleep', bin);
    spawnSync('chmod', ['755', bin]);
    const c = await crash(bin, ['30'], { killWith: 'SIGABRT', killAfterMs: 300 });
    expect(c.signal).toBe('SIGABRT');
    const e = await waitFor('the sleep crash in the index', () => eventOf(c.pid));
    const m = manifestOf(e);
    expect(m.process.exe).toBe(bin);
    expect(m.process.cmdline).toEqual([bin, '30']);
    expect(m.backtrace?.frames.some((f) => /nanosleep/.test(f.fn ?? ''))).toBe(true);
    expect(gdbOnStoredCore(e, bin)).toMatch(/nanosleep/);
  });

  it('(d) a Node process calling process.abort()', async () => {
    const c = await crash(process.execPath, [join(FIXTURES, 'node-abort.mjs')]);
    expect(c.signal).toBe('SIGABRT');
    const e = await waitFor('the node abort in the index', () => eventOf(c.pid), 120_000);
    const m = manifestOf(e);
    expect(m.process.exe).toBe(process.execPath);
    expect(m.core.stored).toBe(true);
    expect(m.core.elf).toBe(true);
    // V8's abort path: node::Abort or uv/abort frames, named (node ships its symbols).
    const fns = m.backtrace?.frames.map((f) => f.fn ?? '') ?? [];
    expect(fns.some((f) => /abort|Abort/.test(f))).toBe(true);
    expect(gdbOnStoredCore(e, process.execPath)).toMatch(/SIGABRT/);
  });

  it('with core_pipe_limit above 0 no node is started beside the launcher (it would hold the pipe): node starts after its copies', async () => {
    const limitFile = '/proc/sys/kernel/core_pipe_limit';
    const before = readFileSync(limitFile, 'utf8').trim();
    writeFileSync(limitFile, '4');
    try {
      const bin = buildCrasher('segv');
      const c = await crash(bin);
      expect(c.signal).toBe('SIGSEGV');
      const e = await waitFor('the crash in the index', () => eventOf(c.pid));
      const m = manifestOf(e);
      expect(m.timings.startupMs).toBeTypeOf('number');
      expect(m.timings.earlyReadyMs).toBeUndefined();
      expect(m.core.stored).toBe(true);
      expect(m.backtrace?.frames[0]?.fn).toBe('flightbox_crash_here');
    } finally {
      writeFileSync(limitFile, before);
    }
  });

  it('20 crashes at once: all 20 indexed, none lost', async () => {
    const bin = buildCrasher('segv');
    const crashes = await Promise.all(Array.from({ length: 20 }, () => crash(bin, ['wait'])));
    for (const c of crashes) expect(c.signal).toBe('SIGSEGV');
    const pids = new Set(crashes.map((c) => c.pid));
    await waitFor('20 crashes in the index', () => {
      const r = runCli([...cfgArgs(), 'list', '--exe', bin, '--json']);
      if (r.code !== 0) return false;
      const rows = (JSON.parse(r.stdout) as EventJson[]).filter((x) => pids.has(x.pid));
      return rows.length === 20 && rows.every((x) => x.core === 'present');
    }, 120_000, 500);
    expect(existsSync(join(store.root, 'spool'))).toBe(true);
    expect(spawnSync('ls', [join(store.root, 'staging')], { encoding: 'utf8' }).stdout.trim()).toBe('');
  });

  it('records each crash once in the kernel log', () => {
    // Not all kernels let us read /dev/kmsg back the same way; dmesg does.
    const d = spawnSync('dmesg', [], { encoding: 'utf8' });
    if (d.status !== 0) return;
    expect(d.stdout).toMatch(/flightbox: process \d+ \(segv\) of user 0 dumped core, signal 11\/SIGSEGV/);
  });

  it('exposes the CLI binary it was built to', () => {
    expect(existsSync(CLI)).toBe(true);
  });
});
