// `flightbox top ID` (and the web page): what the processes did in the moments a bundle's
// trace snapshot covers (ftrace, else LTTng), over the whole span and second by second,
// and the metrics recorder's timeline before the event. A missing or broken snapshot is a
// warning in the report, never an exception: a partial answer beats none after a crash.
import { lstatSync, readFileSync } from 'node:fs';
import { arch as nodeArch, hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { messageOf } from '../lib/errors.js';
import { readSmallNoFollow } from '../lib/safe-fs.js';
import { readManifest, type Manifest } from '../store/manifest.js';
import { ActivityAccumulator } from './activity.js';
import { readFtraceText, readTraceDat } from './ftrace-reader.js';
import { readLttngCtf } from './lttng-reader.js';
import { readMetricsTimeline } from './metrics-timeline.js';
import { syscallArch, type SyscallArch } from './syscall-names.js';
import type { TopReport } from './types.js';

export type TraceSource = 'ftrace' | 'lttng';

/** Where each recorder's snapshot lives inside a bundle. */
export const BUNDLE_FILES = {
  ftraceText: 'recorder/ftrace/trace.txt',
  ftraceDat: 'recorder/ftrace/trace.dat',
  ftraceMeta: 'recorder/ftrace/ftrace.json',
  lttngCtf: 'recorder/lttng/ctf',
  lttngMeta: 'recorder/lttng/lttng.json',
  metricsSamples: 'recorder/metrics/samples.jsonl',
} as const;

const MAX_META_BYTES = 1024 * 1024;

export interface AnalyzeOptions {
  /** which trace to read; default: ftrace when the bundle has one, else LTTng */
  source?: TraceSource;
  /** trace-cmd / babeltrace2: a path, or null for "not installed"; default: looked up */
  traceCmd?: string | null;
  babeltrace?: string | null;
  /** how long a helper may run */
  timeoutMs?: number;
  /** `uname -m` of the traced host, when known better than the manifest does */
  arch?: string;
}

function kindOf(path: string): 'file' | 'dir' | null {
  try {
    const st = lstatSync(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : null;
  } catch {
    return null;
  }
}

/** Which trace snapshots a bundle has (ftrace text or trace.dat; an LTTng CTF directory). */
export function traceSources(bundleDir: string): { ftrace: 'trace.txt' | 'trace.dat' | null; lttng: boolean } {
  const dir = resolve(bundleDir);
  const ftrace = kindOf(join(dir, BUNDLE_FILES.ftraceText)) === 'file' ? 'trace.txt'
    : kindOf(join(dir, BUNDLE_FILES.ftraceDat)) === 'file' ? 'trace.dat' : null;
  return { ftrace, lttng: kindOf(join(dir, BUNDLE_FILES.lttngCtf)) === 'dir' };
}

function readJsonSmall(path: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(readSmallNoFollow(path, MAX_META_BYTES));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The architecture whose system-call numbers the trace holds, and a warning when it is a guess. */
export function traceArch(m: Manifest | null, override: string | undefined): { arch: SyscallArch; warning: string | null } {
  const fromManifest = (m?.host as { arch?: unknown } | undefined)?.arch;
  const named = override ?? (typeof fromManifest === 'string' ? fromManifest : null);
  if (named !== null) {
    const a = syscallArch(named);
    if (a) return { arch: a, warning: null };
    return { arch: syscallArch(nodeArch()) ?? 'x86_64', warning: `no system-call table for ${JSON.stringify(named)}: names are those of ${syscallArch(nodeArch()) ?? 'x86_64'}` };
  }
  const local = syscallArch(nodeArch());
  let machineId: string | null = null;
  try {
    machineId = readFileSync('/etc/machine-id', 'utf8').trim() || null;
  } catch {
    // none
  }
  const elsewhere = m !== null && (m.host.hostname !== hostname() || (m.host.machineId !== null && machineId !== null && m.host.machineId !== machineId));
  const arch = local ?? 'x86_64';
  const warning = local === null ? `no system-call table for this host's architecture (${nodeArch()}): names are those of x86_64`
    : elsewhere ? `the bundle comes from another host (${m!.host.hostname}): system calls are named as on ${arch}, this host's architecture` : null;
  return { arch, warning };
}

/** Analyse the bundle in `bundleDir` (event `id`). Never throws on a bad snapshot: warnings say what could not be read. */
export async function analyzeBundle(bundleDir: string, id: string, opts: AnalyzeOptions = {}): Promise<TopReport> {
  const dir = resolve(bundleDir);
  const warnings: string[] = [];
  let manifest: Manifest | null = null;
  try {
    manifest = readManifest(dir);
  } catch (err) {
    warnings.push(`cannot read the manifest: ${messageOf(err)}`);
  }
  const report: TopReport = { id, source: null, span: null, processes: [], seconds: [], metrics: [], warnings };
  if (manifest) {
    const p = manifest.process;
    report.event = {
      kind: manifest.kind, timeMs: manifest.timeMs, pid: p?.pid ?? null, comm: p?.comm ?? null,
      signal: p?.signal ?? null, signalName: p?.signalName ?? null, reason: manifest.reason ?? null,
    };
  }

  const have = traceSources(dir);
  const source: TraceSource | null = opts.source ?? (have.ftrace ? 'ftrace' : have.lttng ? 'lttng' : null);
  if (source === null) warnings.push('the bundle has no ftrace or LTTng snapshot: no per-process activity');
  else if (source === 'ftrace' && !have.ftrace) warnings.push('the bundle has no ftrace snapshot (recorder/ftrace/trace.txt or trace.dat)');
  else if (source === 'lttng' && !have.lttng) warnings.push('the bundle has no LTTng snapshot (recorder/lttng/ctf)');
  else if (source === 'ftrace') await analyzeFtrace(dir, have.ftrace!, manifest, report, opts);
  else await analyzeLttng(dir, report, opts);

  if (kindOf(join(dir, BUNDLE_FILES.metricsSamples)) === 'file') {
    const t = await readMetricsTimeline(join(dir, BUNDLE_FILES.metricsSamples), { label: BUNDLE_FILES.metricsSamples });
    report.metrics = t.points;
    warnings.push(...t.warnings);
  }
  return report;
}

export interface FtraceMeta {
  /** trace-clock seconds × 1000 + offsetMs = ms since the epoch; null when unknown */
  offsetMs: number | null;
  /** the tracefs instance (trace-cmd prefixes its lines with it) */
  instance: string;
  /** the recorder cut the text short */
  truncated: boolean;
  /** events the kernel overwrote or dropped, by the recorder's statistics */
  eventsLost: number | null;
  /** ftrace.json could be read */
  found: boolean;
  /** times the recorder paused the system-call events within the trace (recorders.ftrace.maxEventRate) */
  syscallPauses: { from: number; to: number | null }[];
}

/**
 * What recorder/ftrace/ftrace.json says about reading the trace. The recorder read the
 * per-CPU "now ts" together with its wall clock and derived span.from from the oldest
 * event's timestamp, so span.from − oldestTs is the trace clock's offset.
 */
export function readFtraceMeta(bundleDir: string): FtraceMeta {
  const meta = readJsonSmall(join(resolve(bundleDir), BUNDLE_FILES.ftraceMeta));
  const sub = (k: string) => {
    const v = meta?.[k];
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  };
  const from = finite(sub('span')?.from);
  const oldest = finite(sub('totals')?.oldestTs);
  return {
    offsetMs: from !== null && oldest !== null ? from - oldest * 1000 : null,
    instance: typeof meta?.instance === 'string' ? meta.instance : 'flightbox',
    truncated: sub('data')?.truncated === true,
    eventsLost: finite(sub('totals')?.eventsLost),
    found: meta !== null,
    syscallPauses: (Array.isArray(meta?.syscallPauses) ? meta.syscallPauses as unknown[] : [])
      .map((p) => (typeof p === 'object' && p !== null ? p as Record<string, unknown> : {}))
      .filter((p) => finite(p.from) !== null)
      .map((p) => ({ from: finite(p.from)!, to: finite(p.to) })),
  };
}

async function analyzeFtrace(dir: string, file: 'trace.txt' | 'trace.dat', manifest: Manifest | null, report: TopReport, opts: AnalyzeOptions): Promise<void> {
  const { arch, warning } = traceArch(manifest, opts.arch);
  if (warning) report.warnings.push(warning);
  report.arch = arch;
  const meta = readFtraceMeta(dir);
  if (!meta.found) report.warnings.push(`cannot read ${BUNDLE_FILES.ftraceMeta}`);
  if (meta.truncated) report.warnings.push('the recorder cut the trace text short when it copied it: the newest events are missing');
  for (const p of meta.syscallPauses) {
    report.warnings.push(`the recorder paused system-call events from ${new Date(p.from).toISOString()} ${p.to === null ? 'to the end of the trace' : `to ${new Date(p.to).toISOString()}`} (a CPU recorded more than recorders.ftrace.maxEventRate events a second): syscall counts and file activity miss that time`);
  }
  const anchored = meta.offsetMs !== null;
  // Without the offset, the last event is placed at the event's time (below).
  const offsetMs = meta.offsetMs ?? 0;
  const instance = meta.instance;

  const acc = new ActivityAccumulator({ toEpochMs: (ts) => offsetMs + ts * 1000 });
  const label = `recorder/ftrace/${file}`;
  const r = file === 'trace.txt'
    ? await readFtraceText(join(dir, BUNDLE_FILES.ftraceText), acc, { arch, instance, label })
    : await readTraceDat(join(dir, BUNDLE_FILES.ftraceDat), acc, { arch, instance, label, traceCmd: opts.traceCmd, timeoutMs: opts.timeoutMs });
  report.warnings.push(...r.warnings);
  const res = acc.finish();
  report.warnings.push(...res.warnings);
  if (!res.sawSwitches && res.eventsRead > 0) report.warnings.push('the trace has no sched_switch events: CPU time is unknown');
  if (!res.sawSyscalls && res.eventsRead > 0) report.warnings.push('the trace has no system-call events: syscall counts and file activity are unknown');
  report.source = 'ftrace';
  report.traceFile = label;
  report.processes = res.processes;
  report.seconds = res.seconds;
  report.signals = res.signals;
  report.eventsRead = res.eventsRead;
  report.eventsLost = Math.max(res.eventsLost, meta.eventsLost ?? 0);
  report.span = res.span;
  if (!anchored && res.span !== null && report.event) {
    // Shift everything so the last event sits at the event's time: approximate, and said so.
    const shift = report.event.timeMs - res.span.endMs;
    report.span = { startMs: res.span.startMs + shift, endMs: res.span.endMs + shift };
    for (const s of report.seconds) s.startMs += shift;
    for (const s of report.signals) s.t += shift;
    report.warnings.push('the trace clock could not be tied to the wall clock (ftrace.json missing or incomplete): times are approximate, the last event placed at the event\'s time');
  } else if (!anchored && res.span !== null) {
    report.warnings.push('the trace clock could not be tied to the wall clock (no ftrace.json, no manifest): times are seconds of the trace clock');
  }
}

async function analyzeLttng(dir: string, report: TopReport, opts: AnalyzeOptions): Promise<void> {
  const acc = new ActivityAccumulator({ toEpochMs: (ts) => ts * 1000 });
  const r = await readLttngCtf(join(dir, BUNDLE_FILES.lttngCtf), acc, { label: BUNDLE_FILES.lttngCtf, babeltrace: opts.babeltrace, timeoutMs: opts.timeoutMs });
  report.warnings.push(...r.warnings);
  const res = acc.finish();
  report.warnings.push(...res.warnings);
  if (r.events > 0 && r.kernelEvents === 0) {
    report.warnings.push('the LTTng snapshot holds user-space events only (no lttng-modules): no CPU time or system calls, events counted per process');
  }
  report.source = 'lttng';
  report.traceFile = BUNDLE_FILES.lttngCtf;
  report.processes = res.processes;
  report.seconds = res.seconds;
  report.signals = res.signals;
  report.eventsRead = res.eventsRead;
  report.eventsLost = res.eventsLost;
  report.span = res.span;
}
