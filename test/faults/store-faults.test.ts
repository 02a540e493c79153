// Faults that must lose nothing, caused for real: the store's filesystem fills up while a
// core is written (a tiny tmpfs), and a handler is killed while it writes a core.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, HANDLER, IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { compileWaiter, gcore, kernelArgs, runHandler, startProcess, stopAll } from '../system/procs.js';

interface Manifest {
  id: string;
  core: { stored: boolean; truncated: boolean; reason: string | null; size: number };
  backtrace: { frames: { fn: string | null }[] } | null;
  warnings: string[];
  files: { path: string }[];
}

describe.skipIf(!IS_ROOT)('faults that must lose nothing', () => {
  let store: TempStore | undefined;
  let mounted: string | null = null;
  afterEach(() => {
    stopAll();
    try {
      if (mounted) spawnSync('umount', ['-l', mounted]);
    } finally {
      mounted = null;
      store?.cleanup();
      store = undefined;
    }
  });

  /** A real core padded with `padMiB` MiB of random bytes, captured into a store on a `tmpfsMiB` MiB tmpfs. */
  async function diskFullCapture(tmpfsMiB: number, padMiB: number): Promise<Manifest> {
    store = makeTempStore('core:\n  compress: none\n');
    mkdirSync(store.root, { mode: 0o700 });
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsMiB}m,mode=0700`, 'tmpfs', store.root], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    mounted = store.root;
    const waiter = compileWaiter(store.dir);
    const p = await startProcess(waiter, ['fbx-full'], 'fbx-full');
    const core = gcore(p.pid, join(store.dir, 'core'));
    const big = join(store.dir, 'big-core');
    const fd = openSync(big, 'w');
    writeSync(fd, readFileSync(core));
    for (let i = 0; i < padMiB; i++) writeSync(fd, randomBytes(1024 * 1024));
    closeSync(fd);

    const r = await runHandler(store.configPath, kernelArgs({ pid: p.pid }), big);
    expect(r.code).toBe(0);
    const list = JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout) as { id: string; bundle: string; core: string }[];
    expect(list).toHaveLength(1);
    const man = readJson<Manifest>(join(store.root, list[0]!.bundle, 'manifest.json'));
    expect(man.core.stored).toBe(false);
    expect(man.core.truncated).toBe(true);
    expect(man.core.reason).toBe('write-error: ENOSPC');
    expect(man.warnings.join('\n')).toMatch(/the store is full: the partial core was deleted/);
    // The stack trace came from the partial core (its notes and the waiting thread's stack).
    expect(man.backtrace?.frames.map((f) => f.fn)).toContain('fbx_fixture_wait_here');
    expect(man.files.map((f) => f.path)).toEqual(expect.arrayContaining(['backtrace.txt', 'proc/status', 'proc/maps']));
    expect(man.files.map((f) => f.path)).not.toContain('core');
    expect(readdirSync(join(store.root, 'staging'))).toEqual([]);
    const df = spawnSync('df', ['--output=avail', '-B1', store.root], { encoding: 'utf8' });
    expect(Number(df.stdout.trim().split('\n')[1])).toBeGreaterThan((tmpfsMiB - 2) * 1024 * 1024); // space given back
    return man;
  }

  it('disk full during a core: metadata and stack trace kept, core marked truncated, no half bundle, space given back', async () => {
    const man = await diskFullCapture(6, 16);
    expect(man.warnings.join('\n')).not.toMatch(/dd: /);
  });

  it('disk full after the handler handed the rest of a big core to dd: the same', async () => {
    // Past NATIVE_COPY_AFTER_BYTES (32 MiB) dd copies the rest; the disk fills under dd.
    const man = await diskFullCapture(40, 64);
    expect(man.warnings.join('\n')).toMatch(/Failed to store the whole core \(dd: error writing .*No space left on device\)/);
    expect(man.core.size).toBeGreaterThan(32 * 1024 * 1024);
  });

  it('a handler killed while it writes a core leaves no visible bundle; its debris is swept at the next start', async () => {
    store = makeTempStore();
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      // The handler's stdin is a pipe we keep open: it is in the middle of reading the core.
      const h = spawn(process.execPath, [HANDLER, '--config', store.configPath, '--', ...kernelArgs({ pid: sleeper.pid! })], { stdio: ['pipe', 'ignore', 'ignore'] });
      h.stdin!.write(readFileSync(buildCrasher('segv')).subarray(0, 4096)); // starts like an ELF file
      await waitFor('the handler to start writing', () => {
        try {
          return readdirSync(join(store!.root, 'staging')).length === 1 && readdirSync(join(store!.root, 'staging', readdirSync(join(store!.root, 'staging'))[0]!)).includes('core');
        } catch {
          return false;
        }
      }, 20_000);
      h.kill('SIGKILL');
      await new Promise((r) => h.on('exit', r));
      expect(readdirSync(join(store.root, 'bundles'))).toEqual([]);
      expect(JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout)).toEqual([]);
      expect(readdirSync(join(store.root, 'staging'))).toHaveLength(1);

      // The next start of the daemon sweeps it (its owner is dead).
      const d = spawn(process.execPath, [CLI, '--config', store.configPath, 'daemon', '--no-install'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      d.stderr!.on('data', (b: Buffer) => { out += b.toString(); });
      try {
        await waitFor('the daemon to sweep', () => /Removed 1 staging directory left by dead handlers/.test(out), 30_000);
      } finally {
        d.kill('SIGTERM');
        await new Promise((r) => d.on('exit', r));
      }
      expect(readdirSync(join(store.root, 'staging'))).toEqual([]);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('a crash loop beyond core.maxPerExePerHour keeps metadata and stack trace, not the core, and still counts', async () => {
    store = makeTempStore('core:\n  maxPerExePerHour: 2\n');
    const waiter = compileWaiter(store.dir);
    const p = await startProcess(waiter, ['fbx-loop'], 'fbx-loop');
    const core = gcore(p.pid, join(store.dir, 'core'));
    // Capture three crashes one after the other and note each new event's core state.
    const states: string[] = [];
    let newest: { id: string; bundle: string; core: string } | undefined;
    for (let i = 0; i < 3; i++) {
      const before = new Set((JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout || '[]') as { id: string }[]).map((e) => e.id));
      expect((await runHandler(store.configPath, kernelArgs({ pid: p.pid }), core)).code).toBe(0);
      const after = JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout) as { id: string; bundle: string; core: string }[];
      newest = after.find((e) => !before.has(e.id));
      states.push(newest!.core);
    }
    expect(states).toEqual(['present', 'present', 'none']);
    const last = readJson<Manifest>(join(store.root, newest!.bundle, 'manifest.json'));
    expect(last.core.stored).toBe(false);
    expect(last.core.reason).toBe('rate-limit');
    expect(last.warnings.join('\n')).toMatch(/2 cores of this executable were kept in the last hour \(core\.maxPerExePerHour is 2\)/);
    expect(last.backtrace?.frames.map((f) => f.fn)).toContain('fbx_fixture_wait_here');
    const groups = JSON.parse(runCli(['--config', store.configPath, 'groups', '--json']).stdout) as { count: number }[];
    expect(groups.map((g) => g.count)).toEqual([3]);
  });
});
