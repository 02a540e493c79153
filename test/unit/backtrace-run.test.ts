// The stack-trace tools run asynchronously (while the core is compressed), with a time limit
// and an output cap: real programs that hang, flood and fail.
import { describe, expect, it } from 'vitest';
import { MAX_BACKTRACE_OUTPUT_BYTES, runTool } from '../../handler/backtrace.js';

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
