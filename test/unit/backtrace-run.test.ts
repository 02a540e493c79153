// The stack-trace tools run asynchronously (while the core is compressed), with a time limit
// and an output cap: real programs that hang, flood and fail.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_BACKTRACE_OUTPUT_BYTES, launcherRun, runTool } from '../../handler/backtrace.js';
import { LAUNCHER_TRACE } from '../../handler/run-dir.js';

describe('runTool', () => {
  it('returns the output and exit status of a program', async () => {
    const r = await runTool('/bin/sh', ['-c', 'echo out; echo err >&2; exit 3'], 10_000);
    expect(r).toMatchObject({ out: 'out\n', err: 'err\n', status: 3, timedOut: false });
    expect(r.error).toBeUndefined();
  });

  it('kills a program that outlives its time limit, and says so', async () => {
    const t0 = Date.now();
    const r = await runTool('/bin/sleep', ['30'], 300);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r.timedOut).toBe(true);
    expect(r.error).toBe('timed out after 300 ms');
    expect(r.status).toBeNull();
  });

  it('does not wait for a grandchild that keeps the pipes open after a timeout', async () => {
    const t0 = Date.now();
    // The shell's child inherits stdout; killing the shell leaves it holding the pipe.
    const r = await runTool('/bin/sh', ['-c', 'sleep 5 & wait'], 300);
    expect(r.timedOut).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('cuts the output at the cap and stops the program', async () => {
    const t0 = Date.now();
    const r = await runTool('/usr/bin/yes', ['a line of output that repeats'], 60_000);
    expect(Buffer.byteLength(r.out)).toBe(MAX_BACKTRACE_OUTPUT_BYTES);
    expect(r.error).toMatch(/^output over \d+ bytes, cut there$/);
    expect(r.timedOut).toBe(false);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('reports a program that cannot be started', async () => {
    const r = await runTool('/nonexistent/eu-stack', [], 1000);
    expect(r.status).toBeNull();
    expect(r.error).toMatch(/ENOENT/);
  });
});

describe('launcherRun: the eu-stack the launcher started, read as runTool returns a run', () => {
  const base = mkdtempSync(join(tmpdir(), 'fbx-btrun-'));
  afterAll(() => rmSync(base, { recursive: true, force: true }));
  const entry = (files: Partial<Record<keyof typeof LAUNCHER_TRACE, string | Buffer>>): string => {
    const d = mkdtempSync(join(base, 'e-'));
    for (const [k, v] of Object.entries(files)) writeFileSync(join(d, LAUNCHER_TRACE[k as keyof typeof LAUNCHER_TRACE]), v);
    return d;
  };

  it('a finished run: its output, stderr and exit status', async () => {
    const r = await launcherRun(entry({ started: '', out: 'PID 1 - core\n', modules: 'PID 1 - core module memory map\n', err: 'warn\n', status: '0\n' }), 5000);
    expect(r).toEqual({ out: 'PID 1 - core\n', modules: 'PID 1 - core module memory map\n', err: 'warn\n', status: 0, timedOut: false });
  });

  it('killed by timeout -s KILL (exit 137): timed out, as runTool says it', async () => {
    const r = await launcherRun(entry({ started: '', out: 'PID 1 - core\nTID 1:\n', status: '137\n' }), 1000);
    expect(r).toMatchObject({ status: 137, timedOut: true, error: 'timed out after 1000 ms' });
  });

  it('output at the cap: cut there, said so', async () => {
    const r = await launcherRun(entry({ started: '', out: Buffer.alloc(MAX_BACKTRACE_OUTPUT_BYTES + 100, 0x61), status: '1\n' }), 1000);
    expect(r.out.length).toBe(MAX_BACKTRACE_OUTPUT_BYTES);
    expect(r.error).toBe(`output over ${MAX_BACKTRACE_OUTPUT_BYTES} bytes, cut there`);
  });

  it('waits for the status to appear (the launcher renames it into place once eu-stack is done)', async () => {
    const d = entry({ started: '', out: 'late\n' });
    setTimeout(() => writeFileSync(join(d, LAUNCHER_TRACE.status), '0\n'), 150);
    const t0 = Date.now();
    const r = await launcherRun(d, 5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(100);
    expect(r).toMatchObject({ out: 'late\n', status: 0, timedOut: false });
  });

  it('a status that never comes: timed out a little after the budget, not waited for forever', async () => {
    const t0 = Date.now();
    const r = await launcherRun(entry({ started: '' }), 100);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(r).toMatchObject({ status: null, timedOut: true, out: '' });
    expect(r.error).toMatch(/did not finish within 100 ms/);
  });

  it('a status that is not a number: no status', async () => {
    const r = await launcherRun(entry({ started: '', status: 'x; rm -rf /\n' }), 1000);
    expect(r.status).toBeNull();
    expect(r.timedOut).toBe(false);
  });
});
