// flightbox top: what the processes did before an event (LTTngTop's idea, on a bundle's
// trace snapshot): CPU time, system calls, file activity, signals, over the whole span and
// second by second, with the metrics timeline. On a terminal, a page to step through;
// otherwise (or with --json) the whole report. `top --live` samples this host every second
// with the metrics recorder's own code, no daemon needed.
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../../lib/config.js';
import { FlightboxError, errnoCode } from '../../lib/errors.js';
import { escapeControl } from '../../lib/escape.js';
import { formatSize } from '../../lib/units.js';
import type { MetricsPoint, ProcessActivity, SignalRecord, TopReport } from '../../analysis/types.js';
import type { MetricsSample } from '../../recorder/metrics.js';
import { invocation, type FilterOptions } from '../args.js';
import { loadCliConfig, pickEventBundle } from '../context.js';
import { formatTime } from '../format.js';

interface TopOptions extends FilterOptions {
  json?: boolean;
  live?: boolean;
  source?: string;
  rows?: string;
  count?: string;
}

const DEFAULT_ROWS = 15;
/** Metrics samples printed in the text report (the newest); --json has them all. */
const TEXT_METRICS_SAMPLES = 60;
const LIVE_INTERVAL_MS = 1000;

function wholeNumber(v: string | undefined, flag: string, min: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,9}$/.test(v) || Number(v) < min) throw new FlightboxError('USAGE', `${flag}: expected a whole number of at least ${min}, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** A closed pipe (`| head`) ends the command quietly, with success. */
function quietOnEpipe(): void {
  process.stdout.on('error', (err) => {
    if (errnoCode(err) === 'EPIPE') process.exit(0);
    throw err;
  });
}

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<TopOptions>(args);
  quietOnEpipe();
  const rows = wholeNumber(opts.rows, '--rows', 1);
  const count = wholeNumber(opts.count, '--count', 1);
  if (opts.source !== undefined && opts.source !== 'ftrace' && opts.source !== 'lttng') {
    throw new FlightboxError('USAGE', `--source: expected ftrace or lttng, got ${JSON.stringify(opts.source)}`);
  }
  const { config } = loadCliConfig(opts);
  if (opts.live) {
    if (positional[0] !== undefined) throw new FlightboxError('USAGE', `--live shows this host now, not an event; drop the id ${JSON.stringify(positional[0])}`);
    return runLive(config, { json: opts.json === true, rows, count });
  }
  if (count !== undefined) throw new FlightboxError('USAGE', '--count goes with --live');

  const { id, dir } = pickEventBundle(config, positional[0], opts);
  try {
    accessSync(join(dir, 'recorder'), constants.R_OK | constants.X_OK);
  } catch (err) {
    if (errnoCode(err) === 'EACCES') {
      throw new FlightboxError('PERMISSION', `the flight-recorder snapshot of ${id} is root's only (it shows the whole system)`);
    }
  }
  const { analyzeBundle } = await import('../../analysis/top.js');
  const report = await analyzeBundle(dir, id, opts.source === undefined ? {} : { source: opts.source as 'ftrace' | 'lttng' });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return 0;
  }
  if (process.stdout.isTTY && process.stdin.isTTY) return browse(report);
  process.stdout.write(renderReport(report, rows ?? DEFAULT_ROWS));
  return 0;
}

// ---- text of a report ----------------------------------------------------------------

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Local "06:54:42" (or "06:54:42.123" with ms). */
export function clockTime(ms: number, withMs = false): string {
  const d = new Date(ms);
  const base = `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  return withMs ? `${base}.${String(d.getMilliseconds()).padStart(3, '0')}` : base;
}

function seconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`;
}

function bytes(n: number): string {
  return n === 0 ? '0' : formatSize(n);
}

function eventLine(r: TopReport): string {
  const e = r.event;
  if (!e) return `Event ${r.id}`;
  const what = e.kind === 'crash'
    ? `crash of ${e.comm === null ? '?' : escapeControl(e.comm)} (pid ${e.pid ?? '?'}) by ${e.signalName ?? e.signal ?? '?'}`
    : `snapshot${e.reason ? `: ${escapeControl(e.reason, 200)}` : ''}`;
  return `Event ${r.id}, ${what}, at ${formatTime(e.timeMs)}`;
}

function traceLine(r: TopReport): string {
  if (r.source === null) return 'Trace: none';
  const span = r.span === null ? 'no events'
    : `${r.eventsRead ?? 0} events from ${clockTime(r.span.startMs, true)} to ${clockTime(r.span.endMs, true)} (${seconds(r.span.endMs - r.span.startMs)})`;
  const lost = r.eventsLost ? `; ${r.eventsLost} lost (overwritten or dropped)` : '';
  return `Trace: ${r.source} (${r.traceFile ?? '?'}), ${span}${lost}`;
}

function topSyscallsText(p: ProcessActivity): string {
  const list = p.topSyscalls.length > 0 ? p.topSyscalls : p.topEvents ?? [];
  return list.slice(0, 3).map((s) => `${escapeControl(s.name, 40)} ${s.count}`).join(', ');
}

/** The process table: busiest first, `rows` at most; CPU % is of one CPU over `spanMs`. */
export function processTable(procs: readonly ProcessActivity[], spanMs: number, rows: number, width = Infinity, highlightPid: number | null = null): string[] {
  // A user-space-only LTTng trace has tracepoints where a kernel trace has system calls.
  const what = procs.some((p) => p.syscalls > 0) || !procs.some((p) => p.topEvents?.length) ? 'TOP SYSCALLS' : 'TOP EVENTS';
  const head = `${'PID'.padStart(8)}  ${'COMM'.padEnd(16)} ${'CPU ms'.padStart(9)} ${'CPU%'.padStart(6)} ${'SYSCALLS'.padStart(9)} ${'OPENS'.padStart(6)} ${'READ'.padStart(9)} ${'WRITTEN'.padStart(9)}  ${what}`;
  const out = [head];
  for (const p of procs.slice(0, rows)) {
    const pct = spanMs > 0 ? ((p.cpuMs / spanMs) * 100).toFixed(1) : '-';
    const mark = highlightPid !== null && p.pid === highlightPid ? '*' : ' ';
    const sig = p.signals?.length ? `  [${p.signals.map((s) => `${s.name}×${s.count}`).join(' ')}]` : '';
    out.push(`${mark}${String(p.pid).padStart(7)}  ${escapeControl(p.comm, 16).padEnd(16)} ${p.cpuMs.toFixed(1).padStart(9)} ${pct.padStart(6)} ${String(p.syscalls).padStart(9)} ${String(p.opens).padStart(6)} ${bytes(p.bytesRead).padStart(9)} ${bytes(p.bytesWritten).padStart(9)}  ${topSyscallsText(p)}${sig}`);
  }
  if (procs.length > rows) out.push(`   … ${procs.length - rows} more`);
  if (procs.length === 0) out.push('   (no process activity)');
  return Number.isFinite(width) ? out.map((l) => l.slice(0, width)) : out;
}

function metricsHeader(): string {
  return `${'TIME'.padEnd(12)} ${'CPU%'.padStart(6)} ${'LOAD1'.padStart(6)} ${'MEM AVAIL'.padStart(10)} ${'SWAP USED'.padStart(10)} ${'PSI CPU'.padStart(8)} ${'PSI MEM'.padStart(8)} ${'PSI IO'.padStart(8)}`;
}

function metricsRow(m: MetricsPoint): string {
  const n = (v: number | null, d = 1) => (v === null ? '-' : v.toFixed(d));
  const b = (v: number | null) => (v === null ? '-' : formatSize(v));
  return `${clockTime(m.t).padEnd(12)} ${n(m.cpuPercent).padStart(6)} ${n(m.load1, 2).padStart(6)} ${b(m.memAvailableBytes).padStart(10)} ${b(m.swapUsedBytes).padStart(10)} ${n(m.psiCpu).padStart(8)} ${n(m.psiMemory).padStart(8)} ${n(m.psiIo).padStart(8)}`;
}

function signalRow(s: SignalRecord): string {
  const from = s.fromPid === null ? '' : ` from ${escapeControl(s.fromComm ?? '?', 16)} (${s.fromPid})`;
  return `${clockTime(s.t, true)}  ${s.name} → ${escapeControl(s.comm, 16)} (${s.pid})${from}`;
}

/** The whole report as text: for a pipe, a file, or a terminal that is not interactive. */
export function renderReport(r: TopReport, rows: number): string {
  const out = [eventLine(r), traceLine(r)];
  if (r.warnings.length > 0) {
    out.push('Warnings:');
    for (const w of r.warnings) out.push(`  ${escapeControl(w, 1000)}`);
  }
  const spanMs = r.span ? r.span.endMs - r.span.startMs : 0;
  const crashPid = r.event?.kind === 'crash' ? r.event.pid : null;
  if (r.source !== null) {
    out.push('', `Processes over the whole span (${r.processes.length}, busiest first; CPU% of one CPU):`);
    out.push(...processTable(r.processes, spanMs, rows, Infinity, crashPid));
    if (r.seconds.length > 0) {
      out.push('', 'Second by second (the three busiest):');
      for (const s of r.seconds) {
        const busiest = s.processes.slice(0, 3).map((p) => `${escapeControl(p.comm, 16)} (${p.pid}) ${p.cpuMs.toFixed(0)} ms ${p.syscalls} calls`).join('; ');
        out.push(`  ${clockTime(s.startMs)}  ${busiest || '-'}`);
      }
    }
    if (r.signals && r.signals.length > 0) {
      out.push('', 'Signals:');
      for (const s of r.signals) out.push(`  ${signalRow(s)}`);
    }
  }
  out.push('');
  if (r.metrics.length === 0) out.push('Metrics: none in this bundle');
  else {
    const shown = r.metrics.slice(-TEXT_METRICS_SAMPLES);
    out.push(`Metrics before the event (${shown.length === r.metrics.length ? `${r.metrics.length} samples` : `the newest ${shown.length} of ${r.metrics.length} samples; --json for all`}):`);
    out.push(`  ${metricsHeader()}`);
    for (const m of shown) out.push(`  ${metricsRow(m)}`);
  }
  return `${out.join('\n')}\n`;
}

// ---- stepping through it on a terminal -------------------------------------------------

/** The metrics sample closest to second `startMs` (within 5 s), or null. */
function sampleAt(metrics: readonly MetricsPoint[], startMs: number): MetricsPoint | null {
  let best: MetricsPoint | null = null;
  for (const m of metrics) if (Math.abs(m.t - (startMs + 500)) < Math.abs((best?.t ?? Infinity) - (startMs + 500))) best = m;
  return best !== null && Math.abs(best.t - startMs - 500) <= 5000 ? best : null;
}

/** One screen: the whole span (index -1) or one second. Pure, for the terminal. */
export function renderPage(r: TopReport, index: number, width: number, height: number): string {
  const cut = (l: string) => l.slice(0, width);
  const lines = [eventLine(r), traceLine(r)].map(cut);
  const crashPid = r.event?.kind === 'crash' ? r.event.pid : null;
  const footer = `←/→ or p/n: one second   Home/End: first/last   a: whole span   q: quit${r.warnings.length ? `   (${r.warnings.length} warning${r.warnings.length === 1 ? '' : 's'}: see --json)` : ''}`;
  if (index < 0 || index >= r.seconds.length) {
    const spanMs = r.span ? r.span.endMs - r.span.startMs : 0;
    lines.push(cut(`Whole span${r.seconds.length ? ` (${r.seconds.length} second${r.seconds.length === 1 ? '' : 's'} to step through)` : ''}`));
    const last = r.metrics.at(-1);
    if (last) lines.push(cut(`Metrics at the event: ${metricsRow(last).slice(13).trim().replace(/\s+/g, ' ')}   (cpu% load1 avail swap psi cpu/mem/io)`));
    lines.push('');
    lines.push(...processTable(r.processes, spanMs, Math.max(1, height - lines.length - 4), width, crashPid));
  } else {
    const s = r.seconds[index]!;
    const from = Math.max(s.startMs, r.span?.startMs ?? s.startMs);
    const to = Math.min(s.startMs + 1000, r.span?.endMs ?? s.startMs + 1000);
    lines.push(cut(`Second ${index + 1} of ${r.seconds.length}: ${clockTime(s.startMs)} (${((to - from) / 1000).toFixed(2)} s of trace)`));
    const m = sampleAt(r.metrics, s.startMs);
    lines.push(cut(m ? `  ${metricsHeader()}` : '  (no metrics sample for this second)'));
    if (m) lines.push(cut(`  ${metricsRow(m)}`));
    const sigs = (r.signals ?? []).filter((x) => x.t >= s.startMs && x.t < s.startMs + 1000);
    for (const x of sigs.slice(0, 3)) lines.push(cut(`  ${signalRow(x)}`));
    lines.push('');
    lines.push(...processTable(s.processes, to - from, Math.max(1, height - lines.length - 4), width, crashPid));
  }
  while (lines.length < height - 1) lines.push('');
  lines.length = Math.max(1, height - 1);
  lines.push(cut(footer));
  return lines.join('\n');
}

const ALT_SCREEN_ON = '\x1b[?1049h\x1b[?25l';
const ALT_SCREEN_OFF = '\x1b[?25h\x1b[?1049l';

/**
 * An interactive page on a terminal: raw keys, the alternate screen, restored however it
 * ends (q, Ctrl-C, SIGTERM, SIGHUP).
 */
function interactive(draw: () => string, onKey: (key: string) => 'quit' | 'redraw' | 'ignore', tick?: { everyMs: number; fn: () => 'quit' | 'redraw' }): Promise<number> {
  const out = process.stdout;
  const inp = process.stdin;
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    const paint = () => out.write(`\x1b[H\x1b[2J${draw()}`);
    const done = () => {
      if (timer) clearInterval(timer);
      inp.off('data', onData);
      out.off('resize', paint);
      process.off('SIGTERM', done);
      process.off('SIGHUP', done);
      process.off('SIGINT', done);
      try { inp.setRawMode(false); } catch { /* not a terminal any more */ }
      inp.pause();
      out.write(ALT_SCREEN_OFF);
      resolve(0);
    };
    const onData = (data: string) => {
      // Keys typed quickly (or pasted) arrive together: one at a time, escape sequences whole.
      let redraw = false;
      for (const key of data.match(/\x1b\[[0-9;]*[A-Za-z~]|\x1bO[A-Za-z]|[\s\S]/g) ?? []) {
        const r = onKey(key);
        if (r === 'quit') return done();
        if (r === 'redraw') redraw = true;
      }
      if (redraw) paint();
    };
    out.write(ALT_SCREEN_ON);
    inp.setRawMode(true);
    inp.setEncoding('utf8');
    inp.on('data', onData);
    inp.resume();
    out.on('resize', paint);
    process.on('SIGTERM', done);
    process.on('SIGHUP', done);
    process.on('SIGINT', done);
    if (tick) timer = setInterval(() => { if (tick.fn() === 'quit') done(); else paint(); }, tick.everyMs);
    paint();
  });
}

function browse(r: TopReport): Promise<number> {
  let index = -1;
  const n = r.seconds.length;
  return interactive(
    () => renderPage(r, index, process.stdout.columns || 100, process.stdout.rows || 30),
    (key) => {
      switch (key) {
        case 'q': case 'Q': case '\x03': case '\x1b': return 'quit';
        case '\x1b[C': case '\x1bOC': case 'n': case 'l': case ' ':
          if (n === 0) return 'ignore';
          index = index < 0 ? 0 : Math.min(n - 1, index + 1);
          return 'redraw';
        case '\x1b[D': case '\x1bOD': case 'p': case 'h':
          if (n === 0) return 'ignore';
          index = index < 0 ? n - 1 : Math.max(0, index - 1);
          return 'redraw';
        case '\x1b[H': case '\x1bOH': case '\x1b[1~': case 'g':
          if (n === 0) return 'ignore';
          index = 0;
          return 'redraw';
        case '\x1b[F': case '\x1bOF': case '\x1b[4~': case 'G':
          if (n === 0) return 'ignore';
          index = n - 1;
          return 'redraw';
        case 'a': index = -1; return 'redraw';
        default: return 'ignore';
      }
    },
  );
}

// ---- live ------------------------------------------------------------------------------

/** One line per sample for a pipe: CPU, load, memory, pressure, the busiest process. */
export function liveLine(s: MetricsSample): string {
  const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined ? '-' : v.toFixed(d));
  const busy = s.cpu ? 100 - s.cpu.idle - s.cpu.iowait : null;
  const cpu = s.cpu ? `cpu ${f(busy)}% (us ${f(s.cpu.user)} sy ${f(s.cpu.system)} io ${f(s.cpu.iowait)} st ${f(s.cpu.steal)})` : 'cpu -';
  const mem = s.memory ? `mem ${formatSize(s.memory.availableBytes)} avail (${f(s.memory.usedPct)}% used) swap ${formatSize(Math.max(0, s.memory.swapTotalBytes - s.memory.swapFreeBytes))}` : 'mem -';
  const psi = `psi cpu ${f(s.pressure.cpu?.some)} mem ${f(s.pressure.memory?.some)} io ${f(s.pressure.io?.some)}`;
  const top = s.topCpu[0];
  const busiest = top ? `top ${escapeControl(top.comm, 16)} (${top.pid}) ${f(top.cpuPct)}%` : 'top -';
  return `${formatTime(s.t)} ${cpu} load ${f(s.load?.avg1, 2)} ${mem} ${psi} ${busiest}`;
}

/** The full-screen live view of one sample. Pure. */
export function renderLive(s: MetricsSample | null, width: number, height: number): string {
  const cut = (l: string) => l.slice(0, width);
  const lines: string[] = [];
  const footer = 'q: quit   (refreshed every second)';
  if (s === null || s.cpu === null) {
    lines.push('flightbox top --live: sampling…');
  } else {
    const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined ? '-' : v.toFixed(d));
    lines.push(cut(`flightbox top --live  ${formatTime(s.t)}   load ${f(s.load?.avg1, 2)} ${f(s.load?.avg5, 2)} ${f(s.load?.avg15, 2)}`));
    const c = s.cpu;
    lines.push(cut(`CPU  ${f(100 - c.idle - c.iowait)}% busy: user ${f(c.user)} nice ${f(c.nice)} system ${f(c.system)} iowait ${f(c.iowait)} irq ${f(c.irq + c.softirq)} steal ${f(c.steal)} idle ${f(c.idle)}`));
    if (s.memory) {
      const m = s.memory;
      lines.push(cut(`MEM  ${formatSize(m.totalBytes)} total, ${formatSize(m.availableBytes)} available (${f(m.usedPct)}% used); swap ${formatSize(Math.max(0, m.swapTotalBytes - m.swapFreeBytes))} of ${formatSize(m.swapTotalBytes)}`));
    }
    const p = s.pressure;
    lines.push(cut(`PSI  avg10 some/full: cpu ${f(p.cpu?.some)}/${f(p.cpu?.full)}  memory ${f(p.memory?.some)}/${f(p.memory?.full)}  io ${f(p.io?.some)}/${f(p.io?.full)}`));
    const rate = (v: number | null) => (v === null ? '-' : `${formatSize(v)}/s`);
    const disks = s.disks.filter((d) => (d.readBytesPerSec ?? 0) + (d.writeBytesPerSec ?? 0) > 0).slice(0, 4);
    lines.push(cut(`DISK ${disks.length ? disks.map((d) => `${escapeControl(d.name, 16)} r ${rate(d.readBytesPerSec)} w ${rate(d.writeBytesPerSec)}`).join('  ') : 'idle'}`));
    const nets = s.net.filter((d) => (d.rxBytesPerSec ?? 0) + (d.txBytesPerSec ?? 0) > 0).slice(0, 4);
    lines.push(cut(`NET  ${nets.length ? nets.map((d) => `${escapeControl(d.name, 16)} rx ${rate(d.rxBytesPerSec)} tx ${rate(d.txBytesPerSec)}`).join('  ') : 'idle'}`));
    const room = Math.max(1, Math.floor((height - lines.length - 6) / 2));
    const table = (title: string, rows: MetricsSample['topCpu']) => {
      lines.push('', cut(title), cut(`${'PID'.padStart(8)} ${'CPU%'.padStart(7)} ${'RSS'.padStart(10)}  COMM`));
      for (const r of rows.slice(0, room)) lines.push(cut(`${String(r.pid).padStart(8)} ${f(r.cpuPct).padStart(7)} ${formatSize(r.rssBytes).padStart(10)}  ${escapeControl(r.comm, 32)}`));
      if (rows.length === 0) lines.push('  (none)');
    };
    table('Busiest processes by CPU', s.topCpu);
    table('Largest processes by RSS', s.topRss);
  }
  while (lines.length < height - 1) lines.push('');
  lines.length = Math.max(1, height - 1);
  lines.push(cut(footer));
  return lines.join('\n');
}

async function runLive(config: Config, o: { json: boolean; rows: number | undefined; count: number | undefined }): Promise<number> {
  const { MetricsRecorder, toSafeJson } = await import('../../recorder/metrics.js');
  const tty = process.stdout.isTTY === true && process.stdin.isTTY === true && !o.json;
  const topN = o.rows ?? (tty ? Math.max(5, Math.floor(((process.stdout.rows || 30) - 12) / 2)) : Math.max(5, config.recorders.metrics.topProcesses));
  // The recorder's sampler, driven by hand: tick() is one sample (the first, a baseline).
  const rec = new MetricsRecorder({ ...config.recorders.metrics, enabled: true, intervalMs: LIVE_INTERVAL_MS, windowMs: 2 * LIVE_INTERVAL_MS, topProcesses: Math.min(100, topN) });
  let last = rec.tick();
  let shown = 0;
  if (tty) {
    return interactive(
      () => renderLive(last, process.stdout.columns || 100, process.stdout.rows || 30),
      (key) => (key === 'q' || key === 'Q' || key === '\x03' || key === '\x1b' ? 'quit' : 'ignore'),
      {
        everyMs: LIVE_INTERVAL_MS,
        fn: () => {
          last = rec.tick();
          shown++;
          return o.count !== undefined && shown >= o.count ? 'quit' : 'redraw';
        },
      },
    );
  }
  // A pipe: one line (or JSON object) per second, starting after the baseline.
  return new Promise((resolve) => {
    const stop = () => {
      clearInterval(timer);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(0);
    };
    const timer = setInterval(() => {
      last = rec.tick();
      if (last === null) return;
      process.stdout.write(`${o.json ? toSafeJson(last) : liveLine(last)}\n`);
      shown++;
      if (o.count !== undefined && shown >= o.count) stop();
    }, LIVE_INTERVAL_MS);
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
