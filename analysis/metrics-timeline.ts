// The metrics recorder's snapshot (recorder/metrics/samples.jsonl) as a timeline: CPU,
// memory, swap, load and pressure per sample, oldest first. Streaming and bounded (at most
// the recorder's own maximum of samples, the newest kept); a line that is not a sample is
// counted and skipped.
import { MAX_METRICS_SAMPLES } from '../recorder/metrics.js';
import { streamFileLines } from './text-stream.js';
import type { MetricsPoint } from './types.js';

const round2 = (v: number): number => Math.round(v * 100) / 100;

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function obj(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

/** One line of samples.jsonl → a point; null when it is not a sample (no finite time). Pure. */
export function metricsPointFromLine(line: string): MetricsPoint | null {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return null;
  }
  const s = obj(raw);
  const t = num(s?.t);
  if (s === null || t === null || t < 0) return null;
  const cpu = obj(s.cpu);
  const idle = num(cpu?.idle);
  const iowait = num(cpu?.iowait);
  const mem = obj(s.memory);
  const swapTotal = num(mem?.swapTotalBytes);
  const swapFree = num(mem?.swapFreeBytes);
  const pressure = obj(s.pressure);
  const some = (k: string) => num(obj(pressure?.[k])?.some);
  return {
    t,
    // Busy as the recorder's summary counts it: neither idle nor waiting for I/O.
    cpuPercent: idle === null ? null : round2(Math.max(0, 100 - idle - (iowait ?? 0))),
    memAvailableBytes: num(mem?.availableBytes),
    swapUsedBytes: swapTotal === null || swapFree === null ? null : Math.max(0, swapTotal - swapFree),
    load1: num(obj(s.load)?.avg1),
    psiCpu: some('cpu'),
    psiMemory: some('memory'),
    psiIo: some('io'),
  };
}

export interface MetricsTimeline {
  points: MetricsPoint[];
  warnings: string[];
}

/** Read samples.jsonl: the newest `max` samples, oldest first. */
export async function readMetricsTimeline(path: string, opts: { label?: string; max?: number } = {}): Promise<MetricsTimeline> {
  const max = Math.max(1, opts.max ?? MAX_METRICS_SAMPLES);
  const label = opts.label ?? path;
  // A ring of the newest points: a file of any length costs `max` points of memory.
  const ring: MetricsPoint[] = [];
  let next = 0;
  let total = 0;
  let bad = 0;
  // A sample is a few kB (64 disks and interfaces, the top processes): far below this.
  const r = await streamFileLines(path, (line) => {
    if (line.trim() === '') return;
    const p = metricsPointFromLine(line);
    if (p === null) {
      bad++;
      return;
    }
    total++;
    if (ring.length < max) ring.push(p);
    else {
      ring[next] = p;
      next = (next + 1) % max;
    }
  }, { label, maxBytes: 512 * 1024 * 1024 });
  const points = ring.length < max ? ring : [...ring.slice(next), ...ring.slice(0, next)];
  // Samples are written oldest first; a hand-edited or merged file is put back in order.
  let sorted = true;
  for (let i = 1; i < points.length && sorted; i++) if (points[i]!.t < points[i - 1]!.t) sorted = false;
  if (!sorted) points.sort((a, b) => a.t - b.t);
  const warnings = [...r.warnings];
  if (bad > 0) warnings.push(`${label}: ${bad} line${bad === 1 ? '' : 's'} not a metrics sample, ignored`);
  if (total > max) warnings.push(`${label}: ${total} samples, only the newest ${max} kept`);
  return { points, warnings };
}
