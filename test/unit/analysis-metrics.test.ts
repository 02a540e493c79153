// The metrics timeline: samples.jsonl of a real snapshot, and files that are not samples,
// out of order, cut, or longer than what is kept.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { metricsPointFromLine, readMetricsTimeline } from '../../analysis/metrics-timeline.js';
import { FIXTURES } from '../helpers.js';

const SAMPLES = join(FIXTURES, 'analysis/bundle/recorder/metrics/samples.jsonl');
const tmp = mkdtempSync(join(tmpdir(), 'fbx-metrics-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const sample = (t: number, idle = 50) => JSON.stringify({
  t, intervalMs: 1000, cpu: { user: 40, nice: 0, system: 10 - 0, idle, iowait: 2, irq: 0, softirq: 0, steal: 0 },
  load: { avg1: 1.5, avg5: 1, avg15: 0.5 },
  memory: { totalBytes: 8e9, availableBytes: 4e9, usedPct: 50, swapTotalBytes: 2e9, swapFreeBytes: 1.5e9, swapUsedPct: 25 },
  pressure: { cpu: { some: 3.5, full: null }, memory: { some: 0.25, full: 0 }, io: { some: 1, full: 0.5 } },
  disks: [], net: [], topCpu: [], topRss: [],
});

describe('metricsPointFromLine', () => {
  it('reduces a sample to the timeline\'s values', () => {
    expect(metricsPointFromLine(sample(1000))).toEqual({
      t: 1000, cpuPercent: 48, memAvailableBytes: 4e9, swapUsedBytes: 5e8, load1: 1.5, psiCpu: 3.5, psiMemory: 0.25, psiIo: 1,
    });
  });

  it.each([
    ['not json', null],
    ['[1,2,3]', null],
    ['{"t":"yesterday"}', null],
    ['{"t":-5}', null],
    ['null', null],
    ['{"t":1,"cpu":"busy","memory":[1],"pressure":{"cpu":{"some":"lots"}}}', { t: 1, cpuPercent: null, memAvailableBytes: null, swapUsedBytes: null, load1: null, psiCpu: null, psiMemory: null, psiIo: null }],
    ['{"t":2,"cpu":null,"pressure":{"cpu":null,"memory":null,"io":null}}', { t: 2, cpuPercent: null, memAvailableBytes: null, swapUsedBytes: null, load1: null, psiCpu: null, psiMemory: null, psiIo: null }],
  ])('%s → %j', (line, want) => {
    expect(metricsPointFromLine(line)).toEqual(want);
  });
});

describe('readMetricsTimeline', () => {
  it('reads the real snapshot, oldest first, a baseline without CPU included', async () => {
    const { points, warnings } = await readMetricsTimeline(SAMPLES);
    const lines = readFileSync(SAMPLES, 'utf8').trim().split('\n');
    expect(warnings).toEqual([]);
    expect(points).toHaveLength(lines.length);
    const first = JSON.parse(lines[0]!) as { t: number; load: { avg1: number } };
    expect(points[0]).toMatchObject({ t: first.t, load1: first.load.avg1 });
    for (let i = 1; i < points.length; i++) expect(points[i]!.t).toBeGreaterThan(points[i - 1]!.t);
    expect(points.some((p) => p.cpuPercent !== null && p.cpuPercent >= 0 && p.cpuPercent <= 100)).toBe(true);
  });

  it('keeps the newest samples of a long file, in order, and says how many it dropped', async () => {
    const p = join(tmp, 'long.jsonl');
    writeFileSync(p, Array.from({ length: 100 }, (_, i) => sample(1000 + i * 1000)).join('\n'));
    const { points, warnings } = await readMetricsTimeline(p, { max: 10 });
    expect(points.map((x) => x.t)).toEqual(Array.from({ length: 10 }, (_, i) => 1000 + (90 + i) * 1000));
    expect(warnings.join(' ')).toMatch(/100 samples, only the newest 10 kept/);
  });

  it('puts samples back in time order and skips what is not a sample; a cut last line is reported', async () => {
    const p = join(tmp, 'mixed.jsonl');
    const cut = sample(4000).slice(0, 40);
    writeFileSync(p, [sample(3000), 'garbage', '', sample(1000), '{"t":"x"}', sample(2000), cut].join('\n'));
    const { points, warnings } = await readMetricsTimeline(p);
    expect(points.map((x) => x.t)).toEqual([1000, 2000, 3000]);
    expect(warnings.join(' ')).toMatch(/3 lines not a metrics sample/);
    expect(warnings.join(' ')).toMatch(/ends in the middle of a line/);
  });

  it('a missing file is a warning', async () => {
    const r = await readMetricsTimeline(join(tmp, 'none.jsonl'));
    expect(r.points).toEqual([]);
    expect(r.warnings.join(' ')).toMatch(/cannot open/);
  });
});
