// The launcher through the real kernel. With core.maxConcurrent handlers busy (here: this
// test process, registered as a live storing handler), it records a real crash itself,
// without starting node for it, and its drainer indexes it. Below the cap it copies /proc and
// the core's first part before node starts: a small core is read whole (released before
// node), a longer one is read on by node where the launcher stopped. Uninstall removes the
// launcher's tmpfs directory.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CORE_PIPE_BYTES } from '../../lib/config.js';
import { parsePidStat } from '../../lib/procfs.js';
import { CORE_WHOLE_BYTES, overflowDir } from '../../handler/run-dir.js';
import { CLI, IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { crash, restoreKernelState, saveKernelState, type KernelState } from './kernel.js';

interface Manifest {
  id: string;
  backtrace: { tool: string; frames: { fn: string | null }[] } | null;
  timings: Record<string, number>;
  process: { pid: number; exe: string; cmdline: string[]; signalName: string; procVerified: boolean };
  core: { stored: boolean; reason: string | null; size: number; truncated: boolean };
  handler: { pid: number; overflow?: boolean; launcher?: string; pipeBytes?: number };
  files: { path: string }[];
  warnings: string[];
}

describe.skipIf(!IS_ROOT)('a crash beyond core.maxConcurrent, through the real kernel', () => {
  let saved: KernelState;
  let store: TempStore;
  let bin: string;
  let busy: string;
  const cfg = (): string[] => ['--config', store.configPath];

  function manifestOf(pid: number): Manifest | undefined {
    const r = runCli([...cfg(), 'list', '--pid', String(pid), '--json']);
    const rows = r.code === 0 ? (JSON.parse(r.stdout) as { bundle: string }[]) : [];
    return rows[0] ? readJson<Manifest>(join(store.root, rows[0].bundle, 'manifest.json')) : undefined;
  }

  beforeAll(() => {
    saved = saveKernelState();
    store = makeTempStore('core:\n  maxConcurrent: 1\n');
    bin = buildCrasher('segv');
    const r = runCli([...cfg(), 'install']);
    expect(r.code, r.stderr).toBe(0);
    const start = parsePidStat(readFileSync('/proc/self/stat', 'utf8'))!.startTime;
    busy = join(overflowDir(store.root), 'handlers', `${process.pid}-${start}`);
    writeFileSync(busy, '');
  });

  afterAll(() => {
    try {
      if (store) runCli([...cfg(), 'uninstall']);
    } finally {
      restoreKernelState(saved);
      store?.cleanup();
    }
  });

  it('the launcher records it without node; the drainer indexes it', async () => {
    const c = await crash(bin);
    expect(c.signal).toBe('SIGSEGV');
    const m = await waitFor('the crash indexed', () => manifestOf(c.pid), 30_000);
    expect(m.handler.overflow).toBe(true);
    expect(m.core).toMatchObject({ stored: false, reason: 'concurrency' });
    expect(m.process).toMatchObject({ pid: c.pid, exe: bin, signalName: 'SIGSEGV', procVerified: true });
    expect(m.process.cmdline[0]).toContain('segv');
    const files = m.files.map((f) => f.path);
    for (const f of ['proc/status', 'proc/maps', 'proc/fds', 'proc/ns']) expect(files).toContain(f);
    expect(m.warnings.join('\n')).toMatch(/recorded by the launcher/);
    await waitFor('the spool emptied', () => readdirSync(overflowDir(store.root)).every((n) => n === 'handlers') || undefined, 10_000);
  });

  it('with the cap free again, node captures the next crash with its core', async () => {
    unlinkSync(busy);
    const c = await crash(bin);
    const m = await waitFor('the crash indexed', () => manifestOf(c.pid), 30_000);
    expect(m.handler.overflow).toBeUndefined();
    expect(m.core.stored).toBe(true);
    // a small core is read whole by the launcher, which releases the process before node starts
    expect(m.handler.launcher).toBe('released');
    expect(m.timings.holdMs).toBeLessThan(1000);
    // and starts eu-stack on it while node starts: its trace is the bundle's, frames and all
    expect(m.timings.backtraceByLauncher).toBe(1);
    expect(m.backtrace?.tool).toBe('eu-stack');
    expect(m.backtrace?.frames.some((f) => f.fn === 'main')).toBe(true);
    expect(m.files.map((f) => f.path)).toContain('backtrace.txt');
    expect(m.warnings.filter((w) => /stack trace|eu-stack/.test(w))).toEqual([]);
    // and compresses it while node starts: the bundle's core.zst is that zstd's output
    expect(m.timings.compressByLauncher).toBe(1);
    expect(m.core).toMatchObject({ compression: 'zstd', file: 'core.zst' });
    expect(m.core.storedSize).toBeGreaterThan(0);
    // the launcher's registration was taken over by the handler and withdrawn
    await waitFor('no handler registered', () => readdirSync(join(overflowDir(store.root), 'handlers')).length === 0 || undefined, 10_000);
  });

  it('after a reboot (tmpfs empty) node reads the crash itself and makes the directory for the next', async () => {
    const dir = overflowDir(store.root);
    rmSync(dir, { recursive: true, force: true });
    const c = await crash(bin);
    const m = await waitFor('the crash indexed', () => manifestOf(c.pid), 30_000);
    expect(m.handler.launcher).toBeUndefined();
    expect(m.core.stored).toBe(true);
    await waitFor('the directory made again', () => existsSync(join(dir, 'handlers')) || undefined, 10_000);
    const again = await crash(bin);
    expect((await waitFor('the next crash indexed', () => manifestOf(again.pid), 30_000)).handler.launcher).toBe('released');
  });

  it('a core past the first 8 MiB but within 32 MiB: the launcher reads it whole through the bigger pipe', async () => {
    const fat = buildCrasher('fat-segv');
    const c = await crash(fat, ['20', '0']);
    expect(c.signal).toBe('SIGSEGV');
    const m = await waitFor('the crash indexed', () => manifestOf(c.pid), 60_000);
    expect(m.handler.launcher).toBe('released');
    expect([DEFAULT_CORE_PIPE_BYTES, DEFAULT_CORE_PIPE_BYTES / 2, DEFAULT_CORE_PIPE_BYTES / 4]).toContain(m.handler.pipeBytes);
    expect(m.core).toMatchObject({ stored: true, truncated: false, compression: 'zstd' });
    expect(m.core.size).toBeGreaterThan(20 * 1024 * 1024);
    // the stack trace and the compression started by the launcher, while node started
    expect(m.timings.backtraceByLauncher).toBe(1);
    expect(m.timings.compressByLauncher).toBe(1);
    expect(m.backtrace?.frames.some((f) => f.fn === 'main')).toBe(true);
    const out = join(store.dir, 'mid.core');
    const d = runCli([...cfg(), 'dump', m.id, '-o', out]);
    expect(d.code, d.stderr).toBe(0);
    expect(statSync(out).size).toBe(m.core.size);
  });

  it('a core longer than the launcher reads (32 MiB): node goes on where it stopped; the stitched core is whole', async () => {
    const fat = buildCrasher('fat-segv');
    const c = await crash(fat, ['40', '0']);
    expect(c.signal).toBe('SIGSEGV');
    const m = await waitFor('the crash indexed', () => manifestOf(c.pid), 60_000);
    expect(m.handler.launcher).toBe('prefix');
    // the launcher made the kernel's pipe 16 MiB (core.pipeBuffer), beyond fs.pipe-max-size:
    // the kernel's helper may (CAP_SYS_RESOURCE). (Halved when the kernel cannot allocate the
    // ring at once, so 8 or 4 MiB would still be the launcher's doing; 1 MiB and less is not.)
    expect([DEFAULT_CORE_PIPE_BYTES, DEFAULT_CORE_PIPE_BYTES / 2, DEFAULT_CORE_PIPE_BYTES / 4]).toContain(m.handler.pipeBytes);
    // the core went on past the launcher's part: node took the stack trace itself
    expect(m.timings.backtraceByLauncher).toBeUndefined();
    expect(m.core).toMatchObject({ stored: true, truncated: false });
    expect(m.core.size).toBeGreaterThan(CORE_WHOLE_BYTES + 4 * 1024 * 1024);
    // eu-stack found the crashing frame in it: the ELF core is whole and consistent
    expect(m.backtrace?.frames.some((f) => f.fn === 'main')).toBe(true);
    const out = join(store.dir, 'fat.core');
    const d = runCli([...cfg(), 'dump', m.id, '-o', out]);
    expect(d.code, d.stderr).toBe(0);
    expect(statSync(out).size).toBe(m.core.size);
  });

  it('status says whether the storm path is ready and what waits in it; piped into head it ends quietly', () => {
    const dir = overflowDir(store.root);
    const st = JSON.parse(runCli([...cfg(), 'status', '--json']).stdout) as { overflow: { state: string; waiting: number; failed: number; dir: string } };
    expect(st.overflow).toMatchObject({ state: 'ready', waiting: 0, failed: 0, dir });
    // an entry no drainer could read (made by hand: a launcher cannot be made to write one)
    mkdirSync(join(dir, 'failed.1.2.3'), { mode: 0o700 });
    mkdirSync(join(dir, '1.2.4'), { mode: 0o700 });
    try {
      const text = runCli([...cfg(), 'status']).stdout;
      expect(text).toMatch(new RegExp(`^Launcher spool: +ready \\(${dir}\\); 1 crash being recorded or waiting, 1 that could not be recorded`, 'm'));
    } finally {
      rmSync(join(dir, 'failed.1.2.3'), { recursive: true });
      rmSync(join(dir, '1.2.4'), { recursive: true });
    }
    const piped = spawnSync('/bin/sh', ['-c', `"${process.execPath}" "${CLI}" --config "${store.configPath}" status | head -1`], { encoding: 'utf8' });
    expect(piped.stdout).toMatch(/^Handler: /);
    expect(piped.stderr).toBe('');
  });

  it('uninstall removes the launcher\'s tmpfs directory, unless crashes still wait in it', () => {
    const dir = overflowDir(store.root);
    expect(existsSync(dir)).toBe(true);
    // what a storm leaves: a registry entry of a dead handler, a drainer's lock; and a crash
    writeFileSync(join(dir, 'handlers', '999999999-1'), '');
    writeFileSync(join(dir, '.drain'), '999999999 1\n');
    mkdirSync(join(dir, '1.2.4'), { mode: 0o700 });
    const kept = runCli([...cfg(), 'uninstall']);
    expect(kept.code, kept.stderr).toBe(0);
    expect(kept.stdout + kept.stderr).toMatch(/still holds 1 crash of a storm/);
    expect(existsSync(join(dir, '1.2.4'))).toBe(true);
    rmSync(join(dir, '1.2.4'), { recursive: true });
    expect(runCli([...cfg(), 'install']).code).toBe(0);
    const r = runCli([...cfg(), 'uninstall']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/still holds/);
    expect(existsSync(dir)).toBe(false);
  });
});
