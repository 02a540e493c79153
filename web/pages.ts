// The web page's HTML: the event list with its filter form, the crash groups, one event
// (metadata, warnings, stack traces, the metrics before it as charts, the top processes).
// Pure: data in, markup out; every value from a crash goes through html`` (escaped).
import type { MetricsPoint, ProcessActivity, TopReport } from '../analysis/types.js';
import { coreState, formatTime } from '../cli/format.js';
import { parseEuStack, parseGdbBacktrace, type ThreadTrace } from '../handler/backtrace.js';
import { formatSize } from '../lib/units.js';
import type { EventRow, GroupRow } from '../store/index-db.js';
import type { Manifest } from '../store/manifest.js';
import { COLORS, lineChart } from './chart.js';
import { clip, html, raw, type HtmlValue, type SafeHtml } from './html.js';

/** Long strings from a crash are cut here for display (the bundle keeps them whole). */
const MAX_FIELD_CHARS = 4096;
const MAX_CELL_CHARS = 200;
/** Rows of the top-processes table, and seconds in the step-through table. */
const TOP_ROWS = 15;
const STEP_SECONDS = 60;

export interface Viewer {
  uid: number;
  /** a non-root user: only the crashes of their own processes */
  ownOnly: boolean;
  /** exporting is root's, as with `flightbox export` */
  canExport: boolean;
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:8px 16px;display:flex;gap:18px;align-items:baseline}
header a{color:#cfd8dc;text-decoration:none}header a:hover{color:#fff}
header .who{margin-left:auto;color:#b0bec5;font-size:12px}
main{padding:12px 16px;max-width:1200px}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eceff1;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.kv th{width:11em}
code,pre,.mono{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#fff;border:1px solid #e0e0e0;padding:8px;overflow:auto}
.warn{background:#fff8e1;border:1px solid #ffe082;padding:6px 10px}
.error{background:#ffebee;border:1px solid #ef9a9a;padding:6px 10px}
form.filters{display:flex;gap:10px;flex-wrap:wrap;align-items:end;margin-bottom:12px}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
details{margin:6px 0}summary{cursor:pointer}
.frames td.fn{font-weight:600}
figure.chart{margin:0;background:#fff;border:1px solid #e0e0e0}
figure.chart figcaption{font-size:12px;color:#555;padding:0 8px 4px}
.muted{color:#777}
td.mono,td.num{white-space:nowrap}td.what,td.comm,.meta td,.frames td.fn{white-space:normal;word-break:break-all}
ol.argv{margin:0;padding-left:2.5em}
.charts{display:flex;flex-wrap:wrap;gap:8px}
a.button{display:inline-block;padding:4px 10px;border:1px solid #90a4ae;border-radius:3px;background:#fff;text-decoration:none}
`;

export function layout(title: string, body: SafeHtml, o: { nonce: string; viewer: Viewer; host: string }): string {
  const who = o.viewer.ownOnly
    ? html`uid ${o.viewer.uid}: your crashes only`
    : html`root: every event`;
  return `<!DOCTYPE html>\n${html`<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>${title} — flightbox</title>
<style nonce="${o.nonce}">${raw(CSS)}</style></head>
<body><header><strong>flightbox</strong> <span class="muted">${o.host}</span>
<a href="/">Events</a><a href="/groups">Groups</a><span class="who">${who}</span></header>
<main>${body}</main></body></html>`}\n`;
}

function time(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : formatTime(ms);
}

function eventHref(id: string): string {
  return `/event/${encodeURIComponent(id)}`;
}

/** What the list says a row is: the executable, or for a snapshot its rule and reason. */
export function rowWhat(r: EventRow): string {
  if (r.kind === 'snapshot') return `(snapshot${r.rule ? ` by rule ${r.rule}` : ''}${r.reason ? `: ${r.reason}` : ''})`;
  return r.exe ?? (r.comm ? `(${r.comm})` : '-');
}

// ---- the list -------------------------------------------------------------------------

export interface ListFilters {
  exe: string;
  signal: string;
  kind: string;
  since: string;
  /** from a group's link; kept as a hidden field */
  signature: string;
}

export function listBody(o: { rows: EventRow[]; filters: ListFilters; error: string | null; more: boolean; limit: number }): SafeHtml {
  const f = o.filters;
  const kindOpt = (v: string, label: string) => html`<option value="${v}"${raw(f.kind === v ? ' selected' : '')}>${label}</option>`;
  const form = html`<form class="filters" method="get" action="/">
<label>executable (path or name)<input name="exe" value="${f.exe}" size="24"></label>
<label>signal<input name="signal" value="${f.signal}" size="8" placeholder="SIGSEGV"></label>
<label>kind<select name="kind">${kindOpt('', 'any')}${kindOpt('crash', 'crash')}${kindOpt('snapshot', 'snapshot')}</select></label>
<label>since<input name="since" value="${f.since}" size="16" placeholder="1h, 2d, today, 2026-11-26"></label>
${f.signature ? html`<input type="hidden" name="signature" value="${f.signature}"><span class="muted">signature ${f.signature}</span>` : ''}
<button type="submit">Filter</button> <a href="/">clear</a>
</form>`;
  if (o.error !== null) return html`<h1>Events</h1>${form}<p class="error">${o.error}</p>`;
  if (o.rows.length === 0) return html`<h1>Events</h1>${form}<p class="muted">No events found.</p>`;
  const rows = o.rows.map((r) => html`<tr class="event">
<td class="mono">${time(r.time)}</td>
<td class="mono"><a href="${eventHref(r.id)}">${r.id}</a></td>
<td>${r.kind}</td>
<td class="num">${r.pid ?? '-'}</td><td class="num">${r.uid ?? '-'}</td>
<td>${r.signal_name ?? '-'}</td>
<td>${coreState(r)}</td>
<td class="num">${r.core_stored_size ? formatSize(r.core_stored_size) : '-'}</td>
<td class="mono what">${clip(rowWhat(r), MAX_CELL_CHARS)}</td>
<td class="mono comm">${r.comm ?? '-'}</td></tr>`);
  return html`<h1>Events</h1>${form}
<p class="muted">${o.rows.length} event${o.rows.length === 1 ? '' : 's'}, newest first${o.more ? html` (only the newest ${o.limit}: narrow the filters to see older ones)` : ''}.</p>
<table class="events"><thead><tr><th>time</th><th>id</th><th>kind</th><th>pid</th><th>uid</th><th>signal</th><th>core</th><th>size</th><th>executable</th><th>comm</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

// ---- groups ---------------------------------------------------------------------------

export function groupsBody(o: { groups: GroupRow[]; filters: { exe: string; since: string }; error: string | null }): SafeHtml {
  const form = html`<form class="filters" method="get" action="/groups">
<label>executable (path or name)<input name="exe" value="${o.filters.exe}" size="24"></label>
<label>since<input name="since" value="${o.filters.since}" size="16" placeholder="1h, 2d, today"></label>
<button type="submit">Filter</button> <a href="/groups">clear</a></form>`;
  if (o.error !== null) return html`<h1>Crash groups</h1>${form}<p class="error">${o.error}</p>`;
  if (o.groups.length === 0) return html`<h1>Crash groups</h1>${form}<p class="muted">No crashes found.</p>`;
  const rows = o.groups.map((g) => html`<tr class="group">
<td class="mono"><a href="/?signature=${encodeURIComponent(g.signature)}">${g.signature}</a></td>
<td class="num">${g.count}</td><td class="mono">${time(g.first_seen)}</td><td class="mono">${time(g.last_seen)}</td>
<td class="mono"><a href="${eventHref(g.last_id)}">${g.last_id}</a></td>
<td class="mono">${clip(g.exe ?? '-', MAX_CELL_CHARS)}</td><td class="mono">${clip(g.signature_text ?? '', MAX_CELL_CHARS)}</td></tr>`);
  return html`<h1>Crash groups</h1>${form}
<p class="muted">Crashes grouped by signature (the executable, the signal and the top frames of the crashing thread), the largest first.</p>
<table class="groups"><thead><tr><th>signature</th><th>count</th><th>first seen</th><th>last seen</th><th>last event</th><th>executable</th><th>crash</th></tr></thead>
<tbody>${rows}</tbody></table>`;
}

// ---- one event ------------------------------------------------------------------------

function coreLine(m: Manifest): string {
  const c = m.core;
  if (!c) return '-';
  if (!c.stored) return `none (${c.reason ?? 'not stored'})`;
  const parts = [c.truncated ? 'truncated' : 'present', formatSize(c.size)];
  if (c.compression && c.compression !== 'none') parts.push(`stored as ${formatSize(c.storedSize)} (${c.compression})`);
  if (c.truncated && c.reason) parts.push(`cut by ${c.reason}`);
  if (!c.elf) parts.push('not an ELF core');
  return parts.join(', ');
}

function metadata(m: Manifest, bundleDir: string): [string, HtmlValue][] {
  const p = m.process;
  const rows: [string, HtmlValue][] = [['ID', m.id], ['Kind', m.kind], ['Time', time(m.timeMs)]];
  if (p) {
    const ns = p.pidInNamespace !== null && p.pidInNamespace !== p.pid ? ` [pid ${p.pidInNamespace} in its namespace]` : '';
    rows.push(
      ['PID', `${p.pid} (${clip(p.comm ?? '?', MAX_CELL_CHARS)})${ns}`],
      ['TID', `${p.tid ?? '-'}${p.tidInNamespace !== null && p.tidInNamespace !== p.tid ? ` [${p.tidInNamespace} in its namespace]` : ''}`],
      ['PPID', String(p.ppid ?? '-')],
      ['UID / GID', `${p.uid} / ${p.gid}`],
      ['Signal', `${p.signal} (${p.signalName})`],
      ['Executable', clip(p.exe ?? '-', MAX_FIELD_CHARS)],
      // Arguments one per line in a list: a space inside an argument stays visible.
      ['Command line', p.cmdline ? html`<ol class="argv mono" start="0">${p.cmdline.slice(0, 256).map((a) => html`<li>${clip(a, MAX_FIELD_CHARS)}</li>`)}</ol>` : '-'],
      ['CWD', clip(p.cwd ?? '-', MAX_FIELD_CHARS)],
      ['Root', clip(p.root ?? '-', MAX_FIELD_CHARS)],
      ['Control group', clip(p.cgroup ?? '-', MAX_FIELD_CHARS)],
      ['Unit', clip(p.unit ?? '-', MAX_CELL_CHARS)],
      ['Container', p.inContainer === null ? 'unknown' : p.inContainer ? `yes (hostname ${clip(p.hostnameInNamespace ?? '?', MAX_CELL_CHARS)})` : 'no'],
      ['Dumpable', String(p.dumpable ?? '-')],
      ['RLIMIT_CORE', p.rlimitCore === null ? 'unlimited' : String(p.rlimitCore)],
      ['Threads', String(p.threads ?? '-')],
      ['Open fds', String(p.fdCount ?? '-')],
    );
  }
  rows.push(['Hostname', m.host.hostname], ['Boot ID', m.host.bootId ?? '-'], ['Kernel', m.host.kernel]);
  if (m.kind === 'crash') {
    rows.push(['Signature', m.signature ? html`<a class="mono" href="/?signature=${encodeURIComponent(m.signature.hash)}">${m.signature.hash}</a> ${clip(m.signature.text, 1024)}` : '-']);
    rows.push(['Core', coreLine(m)]);
  }
  if (m.rule) rows.push(['Rule', m.rule]);
  if (m.reason) rows.push(['Reason', clip(m.reason, MAX_FIELD_CHARS)]);
  if (m.labels && Object.keys(m.labels).length > 0) {
    rows.push(['Labels', Object.entries(m.labels).map(([k, v]) => html`<div class="mono">${clip(k, MAX_CELL_CHARS)}=${clip(v, MAX_FIELD_CHARS)}</div>`)]);
  }
  if (m.actions && m.actions.length > 0) rows.push(['Actions', clip(m.actions.join(', '), MAX_FIELD_CHARS)]);
  rows.push(['Bundle', bundleDir]);
  return rows;
}

/** The threads of a stack-trace file, by the tool that wrote it. */
export function parseTrace(tool: string | null, text: string): ThreadTrace[] {
  if (tool === 'gdb') return parseGdbBacktrace(text);
  const eu = parseEuStack(text).threads;
  return eu.length > 0 ? eu : parseGdbBacktrace(text);
}

function framesTable(t: ThreadTrace): SafeHtml {
  const rows = t.frames.map((f) => html`<tr><td class="num">#${f.n}</td><td class="mono">${f.addr ?? ''}</td>
<td class="mono fn">${clip(f.fn ?? '??', 1024)}</td><td class="mono">${clip(f.module ?? '', MAX_CELL_CHARS)}</td><td class="mono">${clip(f.source ?? '', MAX_CELL_CHARS)}</td></tr>`);
  return html`<table class="frames"><thead><tr><th>#</th><th>address</th><th>function</th><th>module</th><th>source</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function stackTrace(m: Manifest, trace: { text: string } | { error: string } | null): SafeHtml {
  const bt = m.backtrace;
  if (!bt) return html``;
  const head = html`<h2>Stack trace</h2><p class="muted">${bt.tool ?? 'no tool'}, ${bt.threads} thread${bt.threads === 1 ? '' : 's'}, crashing thread ${bt.crashingTid ?? '?'}</p>`;
  let threads: ThreadTrace[] = [];
  if (trace && 'text' in trace) threads = parseTrace(bt.tool, trace.text);
  if (threads.length === 0) {
    // The file could not be read or parsed: the frames the manifest kept of the crashing thread.
    const note = trace && 'error' in trace ? html`<p class="warn">${trace.error}</p>` : html``;
    if (trace && 'text' in trace && trace.text.trim() !== '') return html`${head}${note}<pre class="trace">${clip(trace.text, 256 * 1024)}</pre>`;
    return html`${head}${note}${framesTable({ tid: bt.crashingTid ?? 0, frames: bt.frames.map((f, n) => ({ n, ...f })) })}`;
  }
  const crashing = threads.find((t) => t.tid === bt.crashingTid) ?? threads[0]!;
  const others = threads.filter((t) => t !== crashing);
  return html`${head}
<section class="thread crashing"><h3>Thread ${crashing.tid}${crashing.tid === bt.crashingTid ? ' (crashing)' : ''}</h3>${framesTable(crashing)}</section>
${others.map((t) => html`<details class="thread"><summary>Thread ${t.tid} (${t.frames.length} frame${t.frames.length === 1 ? '' : 's'})</summary>${framesTable(t)}</details>`)}`;
}

const pct = (v: number) => `${Math.round(v * 10) / 10}%`;
const num = (v: number) => String(Math.round(v * 100) / 100);
const bytes = (v: number) => (v === 0 ? '0' : formatSize(Math.round(v)));

/** The metrics before the event, one chart per quantity. */
export function metricsCharts(points: readonly MetricsPoint[], eventMs: number): SafeHtml[] {
  if (points.length === 0) return [];
  const times = points.map((p) => p.t);
  const pick = (k: keyof MetricsPoint) => points.map((p) => p[k]);
  return [
    lineChart({ title: 'CPU busy (all CPUs)', times, eventMs, format: pct, minMax: 100, series: [{ name: 'CPU %', color: COLORS[0], values: pick('cpuPercent') }] }),
    lineChart({ title: 'Load average (1 min)', times, eventMs, format: num, minMax: 1, series: [{ name: 'load1', color: COLORS[3], values: pick('load1') }] }),
    lineChart({
      title: 'Memory', times, eventMs, format: bytes,
      series: [{ name: 'available', color: COLORS[2], values: pick('memAvailableBytes') }, { name: 'swap used', color: COLORS[1], values: pick('swapUsedBytes') }],
    }),
    lineChart({
      title: 'Pressure stall (PSI some avg10)', times, eventMs, format: pct, minMax: 10,
      series: [{ name: 'cpu', color: COLORS[0], values: pick('psiCpu') }, { name: 'memory', color: COLORS[2], values: pick('psiMemory') }, { name: 'io', color: COLORS[4], values: pick('psiIo') }],
    }),
  ].filter((c): c is SafeHtml => c !== null);
}

function activityRows(ps: readonly ProcessActivity[]): SafeHtml[] {
  return ps.slice(0, TOP_ROWS).map((p) => html`<tr class="proc"><td class="num">${p.pid}</td><td class="mono">${clip(p.comm, MAX_CELL_CHARS)}</td>
<td class="num">${Math.round(p.cpuMs)}</td><td class="num">${p.syscalls}</td>
<td class="mono">${p.topSyscalls.map((s) => `${clip(s.name, 64)} ${s.count}`).join(', ')}</td>
<td class="num">${p.opens}</td><td class="num">${bytes(p.bytesRead)}</td><td class="num">${bytes(p.bytesWritten)}</td></tr>`);
}

const ACTIVITY_HEAD = raw('<tr><th>pid</th><th>comm</th><th>CPU ms</th><th>syscalls</th><th>top syscalls</th><th>opens</th><th>read</th><th>written</th></tr>');

/** The metrics recorder's own summary: the top processes by CPU and RSS at its last sample. */
function recorderSummary(text: string | null, open: boolean): SafeHtml {
  if (text === null) return html``;
  return html`<details class="metrics-summary"${raw(open ? ' open' : '')}><summary>The metrics recorder's summary: the window's minimum, average and maximum, the top processes by CPU and RSS at its last sample</summary>
<pre>${clip(text, 64 * 1024)}</pre></details>`;
}

function signalsTable(r: TopReport, eventMs: number): SafeHtml {
  const sigs = (r.signals ?? []).slice(-20);
  if (sigs.length === 0) return html``;
  return html`<details class="signals"><summary>Signals the trace saw (${sigs.length === (r.signals ?? []).length ? sigs.length : `the newest ${sigs.length}`})</summary>
<table><thead><tr><th>from the event</th><th>signal</th><th>to</th><th>from</th></tr></thead><tbody>
${sigs.map((x) => html`<tr><td class="num">${((x.t - eventMs) / 1000).toFixed(3)} s</td><td>${x.name}</td><td class="mono">${clip(x.comm, 64)} [${x.pid}]</td>
<td class="mono">${x.fromPid === null ? '-' : `${clip(x.fromComm ?? '?', 64)} [${x.fromPid}]`}</td></tr>`)}</tbody></table></details>`;
}

function topProcesses(r: TopReport, eventMs: number, summary: string | null): SafeHtml {
  if (r.source === null || r.span === null) {
    return html`<h2>Top processes</h2><p class="muted">No kernel trace in this bundle (the ftrace and lttng recorders were off): no per-process activity over time.</p>
${recorderSummary(summary, true)}`;
  }
  const secs = r.seconds.slice(-STEP_SECONDS);
  const steps = secs.map((s) => html`<tr><td class="num">${((s.startMs - eventMs) / 1000).toFixed(0)} s</td>
<td class="mono">${s.processes.slice(0, 3).map((p) => `${clip(p.comm, 64)} [${p.pid}] ${Math.round(p.cpuMs)} ms`).join(' · ') || '-'}</td></tr>`);
  return html`<h2>Top processes</h2>
<p class="muted">From the ${r.source} trace, ${time(r.span.startMs)} to ${time(r.span.endMs)} (${((r.span.endMs - r.span.startMs) / 1000).toFixed(1)} s), by CPU time.</p>
${r.processes.length === 0 ? html`<p class="muted">No process activity in the trace.</p>` : html`<table class="top"><thead>${ACTIVITY_HEAD}</thead><tbody>${activityRows(r.processes)}</tbody></table>`}
${steps.length > 0 ? html`<details class="seconds"><summary>Second by second (the busiest three of each second)</summary>
<table><thead><tr><th>from the event</th><th>processes</th></tr></thead><tbody>${steps}</tbody></table></details>` : ''}
${signalsTable(r, eventMs)}
${recorderSummary(summary, false)}`;
}

export interface EventPageData {
  manifest: Manifest;
  bundleDir: string;
  trace: { text: string } | { error: string } | null;
  top: { report: TopReport } | { error: string };
  /** recorder/metrics/summary.txt, when there is one this user may read */
  metricsSummary: string | null;
  viewer: Viewer;
}

export function eventBody(d: EventPageData): SafeHtml {
  const m = d.manifest;
  const p = m.process;
  const title = m.kind === 'crash' && p
    ? html`${clip(p.comm ?? '?', MAX_CELL_CHARS)} [${p.pid}] killed by ${p.signalName}`
    : html`Snapshot${m.rule ? html` by rule ${m.rule}` : ''}`;
  const rows = metadata(m, d.bundleDir).map(([k, v]) => html`<tr><th>${k}</th><td class="mono">${v}</td></tr>`);
  const warnings = m.warnings.length > 0
    ? html`<h2>Warnings</h2><ul class="warn warnings">${m.warnings.map((w) => html`<li>${clip(w, MAX_FIELD_CHARS)}</li>`)}</ul>`
    : html``;
  const download = d.viewer.canExport
    ? html`<p><a class="button archive" href="${eventHref(m.id)}/archive.tar.gz" download="${m.id}.tar.gz">Download the bundle (.tar.gz, environment left out, secrets in the command line masked)</a></p>`
    : html`<p class="muted">Exporting an archive is root's (as with flightbox export).</p>`;
  let analysis: SafeHtml;
  if ('error' in d.top) {
    analysis = html`<h2>Before the event</h2><p class="warn">${d.top.error}</p>${recorderSummary(d.metricsSummary, true)}`;
  } else {
    const r = d.top.report;
    const charts = metricsCharts(r.metrics, m.timeMs);
    analysis = html`<h2>Metrics before the event</h2>
${charts.length > 0 ? html`<div class="charts">${charts}</div>` : html`<p class="muted">No metrics in this bundle (the metrics recorder was off, or this user may not read the flight recorder's snapshot).</p>`}
${topProcesses(r, m.timeMs, d.metricsSummary)}
${r.warnings.length > 0 ? html`<ul class="warn">${r.warnings.map((w) => html`<li>${clip(w, MAX_FIELD_CHARS)}</li>`)}</ul>` : ''}`;
  }
  const recorders = (m.recorders ?? []).map((r) => html`<tr><td>${r.name}</td><td>${r.ok ? 'ok' : 'failed'}</td><td class="mono">${r.files.join(' ')}</td>
<td>${r.warnings.map((w) => html`<div>${clip(w, MAX_FIELD_CHARS)}</div>`)}</td></tr>`);
  const modules = m.modules.length > 0
    ? html`<details class="modules"><summary>Modules (${m.modules.length}, with build-ids)</summary><table><thead><tr><th>module</th><th>build-id</th><th>file</th></tr></thead><tbody>
${m.modules.map((x) => html`<tr><td class="mono">${clip(x.name, MAX_CELL_CHARS)}</td><td class="mono">${x.buildId ?? '-'}</td><td class="mono">${clip(x.file ?? '-', MAX_CELL_CHARS)}</td></tr>`)}</tbody></table></details>`
    : html``;
  return html`<h1 class="event-title">${title}</h1>
${download}
<table class="kv meta">${rows}</table>
${warnings}
${stackTrace(m, d.trace)}
${modules}
${analysis}
${recorders.length > 0 ? html`<h2>Flight recorders</h2><table class="recorders"><thead><tr><th>recorder</th><th>state</th><th>files</th><th>warnings</th></tr></thead><tbody>${recorders}</tbody></table>` : ''}`;
}

export function messageBody(title: string, message: string): SafeHtml {
  return html`<h1>${title}</h1><p class="error">${message}</p><p><a href="/">All events</a></p>`;
}
