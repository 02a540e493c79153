// analyzeBundle on the real fixture bundle, and on copies of it with parts missing or
// broken: the report always comes back, with warnings saying what could not be read.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { analyzeBundle, traceSources } from '../../analysis/top.js';
import { FIXTURES } from '../helpers.js';

const BUNDLE = join(FIXTURES, 'analysis/bundle');
const PID = Number(readFileSync(join(BUNDLE, 'workload.pid'), 'utf8'));
const manifest = JSON.parse(readFileSync(join(BUNDLE, 'manifest.json'), 'utf8')) as { id: string; timeMs: number };
const ftraceMeta = JSON.parse(readFileSync(join(BUNDLE, 'recorder/ftrace/ftrace.json'), 'utf8')) as { span: { from: number; to: number } };
const tmp = mkdtempSync(join(tmpdir(), 'fbx-top-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let copies = 0;
function copy(): string {
  const dir = join(tmp, `b${++copies}`);
  cpSync(BUNDLE, dir, { recursive: true });
  return dir;
}

/** Warnings other than the one a test host named differently from the recording host adds. */
const realWarnings = (w: string[]) => w.filter((x) => !/comes from another host/.test(x));

describe('analyzeBundle', () => {
  it('reads the ftrace snapshot and the metrics of the real bundle', async () => {
    const r = await analyzeBundle(BUNDLE, manifest.id);
    expect(realWarnings(r.warnings)).toEqual([]);
    expect(r).toMatchObject({ id: manifest.id, source: 'ftrace', traceFile: 'recorder/ftrace/trace.txt', arch: 'x86_64' });
    expect(r.event).toMatchObject({ kind: 'snapshot', timeMs: manifest.timeMs, reason: 'SIGUSR1' });
    const w = r.processes.find((p) => p.pid === PID);
    expect(w).toMatchObject({ comm: 'workload' });
    expect(w!.opens).toBeGreaterThanOrEqual(6);
    expect(w!.bytesWritten).toBeGreaterThanOrEqual(50_000);
    // The trace clock tied to the wall clock by ftrace.json: the span lies within the recorder's.
    expect(r.span!.startMs).toBeGreaterThanOrEqual(ftraceMeta.span.from - 1);
    expect(r.span!.endMs).toBeLessThanOrEqual(ftraceMeta.span.to + 1);
    expect(r.seconds.length).toBeGreaterThan(0);
    const inSeconds = r.seconds.flatMap((s) => s.processes.filter((p) => p.pid === PID));
    expect(inSeconds.reduce((n, p) => n + p.syscalls, 0)).toBe(w!.syscalls);
    expect(r.metrics.length).toBe(readFileSync(join(BUNDLE, 'recorder/metrics/samples.jsonl'), 'utf8').trim().split('\n').length);
    expect(r.signals?.some((s) => s.name === 'SIGSEGV')).toBe(true);
  });

  it('reads the LTTng snapshot when asked', async () => {
    const r = await analyzeBundle(BUNDLE, manifest.id, { source: 'lttng' });
    expect(r.source).toBe('lttng');
    expect(r.processes.find((p) => p.comm === 'tp-app')?.topEvents).toContainEqual({ name: 'flightbox_test:tick', count: 10 });
    expect(r.warnings.join(' ')).toMatch(/user-space events only/);
  });

  it('without ftrace.json, times are placed at the event and said to be approximate', async () => {
    const dir = copy();
    rmSync(join(dir, 'recorder/ftrace/ftrace.json'));
    const r = await analyzeBundle(dir, manifest.id);
    expect(r.warnings.join(' ')).toMatch(/times are approximate/);
    expect(r.span!.endMs).toBeCloseTo(manifest.timeMs, 3);
    expect(r.processes.find((p) => p.pid === PID)).toBeDefined();
  });

  it('system-call events the recorder paused (maxEventRate) are named in the warnings, with when', async () => {
    const dir = copy();
    const metaPath = join(dir, 'recorder/ftrace/ftrace.json');
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as Record<string, unknown>;
    const from = ftraceMeta.span.from + 100;
    writeFileSync(metaPath, JSON.stringify({ ...meta, syscallPauses: [{ from, to: from + 500, eventsPerSecond: 250000 }, { from: from + 900, to: null, eventsPerSecond: 300000 }, 'junk'] }));
    const r = await analyzeBundle(dir, manifest.id);
    const w = realWarnings(r.warnings).filter((x) => /paused system-call events/.test(x));
    expect(w).toEqual([
      `the recorder paused system-call events from ${new Date(from).toISOString()} to ${new Date(from + 500).toISOString()} (a CPU recorded more than recorders.ftrace.maxEventRate events a second): syscall counts and file activity miss that time`,
      `the recorder paused system-call events from ${new Date(from + 900).toISOString()} to the end of the trace (a CPU recorded more than recorders.ftrace.maxEventRate events a second): syscall counts and file activity miss that time`,
    ]);
    // The report itself still comes from the trace.
    expect(r.processes.find((p) => p.pid === PID)).toBeDefined();
  });

  it('a bundle without recorder snapshots: no processes, a warning, no exception', async () => {
    const dir = copy();
    rmSync(join(dir, 'recorder'), { recursive: true });
    const r = await analyzeBundle(dir, manifest.id);
    expect(r).toMatchObject({ source: null, span: null, processes: [], seconds: [], metrics: [] });
    expect(r.warnings.join(' ')).toMatch(/no ftrace or LTTng snapshot/);
    expect(traceSources(dir)).toEqual({ ftrace: null, lttng: false });
  });

  it('a trace.dat that is not one: trace-cmd fails, the report says so', async () => {
    const dir = copy();
    rmSync(join(dir, 'recorder/ftrace/trace.txt'));
    writeFileSync(join(dir, 'recorder/ftrace/trace.dat'), 'tracing\0 but not really');
    const r = await analyzeBundle(dir, manifest.id);
    expect(r.source).toBe('ftrace');
    expect(r.traceFile).toBe('recorder/ftrace/trace.dat');
    expect(r.warnings.join(' ')).toMatch(/trace-cmd report of recorder\/ftrace\/trace.dat failed/);
    expect(r.metrics.length).toBeGreaterThan(0);
  });

  it('a symlink in place of the trace is not followed', async () => {
    const dir = copy();
    rmSync(join(dir, 'recorder/ftrace/trace.txt'));
    const { symlinkSync } = await import('node:fs');
    symlinkSync('/etc/passwd', join(dir, 'recorder/ftrace/trace.txt'));
    const r = await analyzeBundle(dir, manifest.id, { source: 'ftrace' });
    expect(r.processes).toEqual([]);
    expect(r.warnings.join(' ')).toMatch(/no ftrace snapshot/);
  });

  it('an unreadable manifest is a warning; the traces are still read', async () => {
    const dir = copy();
    writeFileSync(join(dir, 'manifest.json'), '{ not json');
    const r = await analyzeBundle(dir, 'x');
    expect(r.warnings.join(' ')).toMatch(/cannot read the manifest/);
    expect(r.event).toBeUndefined();
    expect(r.processes.find((p) => p.pid === PID)).toBeDefined();
  });
});
