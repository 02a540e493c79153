// Fixtures shared by the tests of the metrics recorder and the metric sampler: /proc text as
// the kernel writes it, a bare threshold rule, the cost of a sample.
import type { ProcessSelector, Rule } from '../lib/rules.js';
import type { MetricSampler } from '../triggers/metric-sampler.js';

/** The fields of a fake process that its /proc/PID/stat line carries. */
export interface PidStatFields {
  pid: number;
  comm: string;
  utime?: number;
  stime?: number;
  /** starttime, in clock ticks since boot */
  start?: number;
  /** resident set size, in pages */
  rss?: number;
  threads?: number;
}

/** /proc/PID/stat with 14 utime, 15 stime, 20 num_threads, 22 starttime, 24 rss (pages). */
export function pidStat(p: PidStatFields): string {
  return `${p.pid} (${p.comm}) S 1 ${p.pid} ${p.pid} 0 -1 4194304 10 0 0 0 ${p.utime ?? 0} ${p.stime ?? 0} 0 0 20 0 `
    + `${p.threads ?? 1} 0 ${p.start ?? 1} 123456789 ${p.rss ?? 0} 18446744073709551615 1 1 0 0 0\n`;
}

/** A rule that fires when `metric` is above 1, at once, with no cooldown. */
export function threshold(name: string, metric: string, process: ProcessSelector | null = null, mount: string | null = null): Rule {
  return {
    name,
    when: { kind: 'threshold', metric: metric as never, process, mount, op: 'above', value: 1, forMs: 0, clear: 1 },
    do: [],
    cooldownMs: 0,
    maxPerDay: 100,
    line: null,
  };
}

/** Milliseconds per sample of `rules`, over `n` samples after a first one (the baseline). */
export function msPerSample(s: MetricSampler, rules: Rule[], n: number): number {
  s.sample(rules);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) s.sample(rules);
  return (performance.now() - t0) / n;
}
