// Hostile cores: bytes that are not ELF, a real core cut short, an ELF header over garbage,
// far more than core.maxSize, and (through the real kernel) a core whose link_map names a
// FIFO for the stack-trace tools to open. Each is recorded, bounded in size (stored ≤ the
// cap, marked truncated) and in time (no tool run on it hangs past backtrace.timeout).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HANDLER, IS_ROOT, readJson } from '../helpers.js';
import { collectOutput, compileWaiter, gcore, kernelArgs, startProcess, stopAll, type LiveProcess } from '../system/procs.js';
import {
  bundleDirs, compileFixture, exitWithin, handlersDone, installHandler, killHandlers, manifestOf, secStore, startCrash, waitEvent,
  type Manifest, type SecStore,
} from './sec-helpers.js';

const BACKTRACE_TIMEOUT_MS = 5000;
/** Node start, /proc, the core, compression and the index: a few seconds at most besides the tools. */
const HANDLER_SLACK_MS = 6000;

function zstdDecompress(path: string): Buffer {
  const r = spawnSync('zstd', ['-q', '-d', '-c', path], { maxBuffer: 256 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`zstd -d failed: ${String(r.stderr)}`);
  return r.stdout;
}

describe.skipIf(!IS_ROOT)('hostile cores', () => {
  let work: string;
  let waiter: string;
  let realCore: Buffer;
  let s: SecStore | undefined;

  beforeAll(async () => {
    work = mkdtempSync('/tmp/fbx-sec-bin-');
    waiter = compileWaiter(work);
    const p = await startProcess(waiter, [], 'fbxwaiter');
    try {
      realCore = readFileSync(gcore(p.pid, join(work, 'ref')));
    } finally {
      stopAll();
    }
  });
  afterEach(async () => {
    stopAll();
    s?.cleanup();
    s = undefined;
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  /**
   * The handler for a live process with `core` on its stdin through a real pipe (cat), as
   * the kernel gives it. Returns cat's exit status too: non-zero when the handler stopped
   * reading before the end (it closed the pipe instead of draining it).
   */
  async function feed(st: SecStore, p: LiveProcess, core: Buffer): Promise<{ code: number | null; catStatus: number; ms: number; m: Manifest; dir: string }> {
    const file = join(st.dir, `input-${randomBytes(4).toString('hex')}`);
    writeFileSync(file, core);
    const t0 = Date.now();
    const r = await collectOutput(spawn('bash', ['-c', 'f=$1; shift; cat -- "$f" | "$@"; echo "status ${PIPESTATUS[*]}"', 'bash', file,
      process.execPath, HANDLER, '--config', st.configPath, '--', ...kernelArgs({ pid: p.pid })], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const ms = Date.now() - t0;
    const [catStatus, code] = /status (\d+) (\d+)/.exec(r.stdout)!.slice(1).map(Number) as [number, number];
    const dirs = bundleDirs(st.root);
    expect(dirs).toHaveLength(1);
    return { code, catStatus, ms, m: readJson<Manifest>(join(dirs[0]!, 'manifest.json')), dir: dirs[0]! };
  }

  it('64 MiB of random bytes with core.maxSize 1m: stored ≤ the cap, marked truncated, the pipe not drained', async () => {
    s = secStore({ core: ['maxSize: 1m'] });
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const input = randomBytes(64 * 1024 * 1024);
    const { code, catStatus, m, dir } = await feed(s, p, input);
    expect(code).toBe(0);
    expect(m.core).toMatchObject({ stored: true, truncated: true, reason: 'maxSize', size: 1_000_000, limitBytes: 1_000_000, elf: false });
    const stored = zstdDecompress(join(dir, m.core.file!));
    expect(stored.length).toBeLessThanOrEqual(1_000_000);
    expect(stored.equals(input.subarray(0, stored.length))).toBe(true);
    // The writer was cut off, not read to the end.
    expect(catStatus).not.toBe(0);
    expect(m.backtrace).toBeNull();
  });

  it('not an ELF core (random bytes): recorded, elf false, no stack-trace tool run', async () => {
    s = secStore();
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const junk = randomBytes(2 * 1024 * 1024);
    junk[0] = 0; // never \x7fELF by chance
    const { code, ms, m } = await feed(s, p, junk);
    expect(code).toBe(0);
    expect(m.core).toMatchObject({ stored: true, elf: false, size: junk.length });
    expect(m.backtrace).toBeNull();
    expect(m.timings.backtraceMs).toBeUndefined();
    expect(m.warnings.some((w) => /not an ELF core/.test(w))).toBe(true);
    expect(ms).toBeLessThan(HANDLER_SLACK_MS);
  });

  it.each([
    ['in its program headers', 200],
    ['in its notes', 3000],
    ['half way', -2],
  ])('a real core cut short %s: recorded, the stack-trace tools bounded by backtrace.timeout', async (_what, cut) => {
    s = secStore({ backtrace: [`timeout: ${BACKTRACE_TIMEOUT_MS}ms`] });
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const n = cut > 0 ? cut : Math.floor(realCore.length / -cut);
    const { code, ms, m } = await feed(s, p, realCore.subarray(0, n));
    expect(code).toBe(0);
    expect(m.core).toMatchObject({ stored: true, size: n, elf: true });
    expect(ms).toBeLessThan(BACKTRACE_TIMEOUT_MS + 1000 + HANDLER_SLACK_MS);
    expect(m.process.comm).toBe('fbxwaiter');
  });

  it('an ELF core header over garbage (65535 program headers, offsets past the end): recorded, the tools bounded', async () => {
    s = secStore({ backtrace: [`timeout: ${BACKTRACE_TIMEOUT_MS}ms`] });
    const p = await startProcess(waiter, [], 'fbxwaiter');
    const forged = Buffer.concat([realCore.subarray(0, 64), randomBytes(4 * 1024 * 1024)]);
    forged.writeBigUInt64LE(0xfffffff0n, 32); // e_phoff
    forged.writeUInt16LE(0xffff, 56); // e_phnum
    const { code, ms, m } = await feed(s, p, forged);
    expect(code).toBe(0);
    expect(m.core).toMatchObject({ stored: true, size: forged.length, elf: true });
    expect(ms).toBeLessThan(BACKTRACE_TIMEOUT_MS + 1000 + HANDLER_SLACK_MS);
  });

  // The crashed process writes the names in its r_debug link_map; eu-stack and gdb read them
  // from the core and open each as a module: a FIFO there blocks them until they are killed.
  describe('a crashed process whose link_map names a FIFO (real kernel)', () => {
    let ms = 0;
    let m: Manifest;
    let leftover = 0;
    beforeAll(async () => {
      const st = secStore({ backtrace: [`timeout: ${BACKTRACE_TIMEOUT_MS}ms`] });
      const k = installHandler(st);
      try {
        const crasher = compileFixture('sec-crasher', work);
        const fifo = join(st.dir, 'lib-fifo.so');
        spawnSync('mkfifo', [fifo]);
        const c = startCrash(crasher, [], { env: { SEC_LINKMAP_PATH: fifo, SEC_COMM: 'fbx-linkmap' } });
        const t0 = Date.now();
        await exitWithin(c.exited, 5000, 'the crashed process exiting');
        await handlersDone(st.configPath, 60_000);
        ms = Date.now() - t0;
        m = manifestOf(st, await waitEvent(st, c.pid));
        leftover = spawnSync('pgrep', ['-f', `--core=${st.root}`]).status === 0 ? 1 : 0;
      } finally {
        await killHandlers(st.configPath);
        k.restore();
        st.cleanup();
      }
    });

    it('released at once, the handler bounded by backtrace.timeout, no tool left behind, the crash recorded', () => {
      expect(ms).toBeLessThan(BACKTRACE_TIMEOUT_MS + 1000 + HANDLER_SLACK_MS);
      expect(leftover).toBe(0);
      expect(m.core.elf).toBe(true);
      expect(m.process.comm).toBe('fbx-linkmap');
    });

    it('the stack trace is still taken: no tool blocks on the FIFO', () => {
      expect(m.backtrace?.frames.map((f) => f.fn)).toContain('sec_crash_here');
      expect(m.timings.backtraceMs).toBeLessThan(BACKTRACE_TIMEOUT_MS);
    });
  });
});
