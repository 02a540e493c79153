// The web page's markup: every value from a crash is escaped (a hostile comm, exe, argument,
// frame, warning or label cannot become an element or an attribute), charts are drawn from
// the samples, the trace is split into threads. Pure functions, from tables.
import { describe, expect, it } from 'vitest';
import type { TopReport } from '../../analysis/types.js';
import type { EventRow } from '../../store/index-db.js';
import type { Manifest } from '../../store/manifest.js';
import { lineChart, niceCeil } from '../../web/chart.js';
import { clip, escapeHtml, html, raw } from '../../web/html.js';
import { eventBody, groupsBody, layout, listBody, parseTrace } from '../../web/pages.js';
import { EU_STACK_CPP_THREADS, GDB_CPP_THREADS } from './backtrace-samples.js';

const viewer = { uid: 0, ownOnly: false, canExport: true };

describe('escapeHtml', () => {
  it.each([
    ['<img src=x onerror=alert(1)>', '&lt;img src=x onerror=alert(1)&gt;'],
    ['"><script>alert(1)</script>', '&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;'],
    ["' onmouseover='x", '&#39; onmouseover=&#39;x'],
    ['a & b', 'a &amp; b'],
    ['&lt;', '&amp;lt;'],
    ['tab\tand\nnewline', 'tab\tand\nnewline'],
    ['NUL\0ESC\x1b[31m', 'NUL\\x00ESC\\x1b[31m'],
    ['CR\rDEL\x7fC1\u009b', 'CR\\x0dDEL\\x7fC1\\x9b'],
    ['file\u202Egnp.exe', 'file\\u{202e}gnp.exe'],
    ['zero\u200Bwidth\uFEFF', 'zero\\u{200b}width\\u{feff}'],
    ['lone \ud800 surrogate', 'lone \\u{d800} surrogate'],
    ['paired 😀 stays', 'paired 😀 stays'],
    ['plain ünïcödé', 'plain ünïcödé'],
  ])('%j', (input, want) => {
    expect(escapeHtml(input)).toBe(want);
  });
});

describe('html``', () => {
  it('escapes every value, keeps SafeHtml and joins arrays', () => {
    const name = '<b>x</b>';
    expect(String(html`<td title="${name}">${name}</td>`)).toBe('<td title="&lt;b&gt;x&lt;/b&gt;">&lt;b&gt;x&lt;/b&gt;</td>');
    expect(String(html`<ul>${['<a>', html`<li>${'<c>'}</li>`]}</ul>`)).toBe('<ul>&lt;a&gt;<li>&lt;c&gt;</li></ul>');
    expect(String(html`${null}${undefined}${false}${0}${raw('<br>')}`)).toBe('0<br>');
  });

  it('clip cuts on whole code points', () => {
    expect(clip('abcdef', 3)).toBe('abc…');
    expect(clip('abc', 3)).toBe('abc');
    expect(clip('a😀b', 2)).toBe('a…');
  });
});

describe('charts', () => {
  it.each([[0.3, 0.5], [1, 1], [1.01, 2], [3, 5], [7, 10], [99, 100], [101, 200], [2.4e9, 2.5e9], [0, 1], [Number.NaN, 1]])('niceCeil(%s) = %s', (v, want) => {
    expect(niceCeil(v)).toBeCloseTo(want);
  });

  it('one polyline per run of samples, a gap where a value is missing, the event marked', () => {
    const times = [0, 1000, 2000, 3000, 4000, 5000].map((t) => 1_000_000 + t);
    const svg = String(lineChart({
      title: 'CPU', times, eventMs: 1_005_500, format: (v) => `${v}%`, minMax: 100,
      series: [{ name: 'cpu', color: '#000', values: [10, 20, null, 40, 50, 60] }],
    }));
    const lines = [...svg.matchAll(/<polyline class="series" data-points="(\d+)" points="([^"]+)"/g)];
    expect(lines.map((l) => Number(l[1]))).toEqual([2, 3]);
    expect(lines[1]![2]!.split(' ')).toHaveLength(3);
    expect(svg).toContain('class="event-marker"');
    expect(svg).toContain('>0 s<');
    expect(svg).toContain('>−5.5 s<');
  });

  it('no chart without a value; a lone sample is a dot; a hostile series name is text', () => {
    expect(lineChart({ title: 't', times: [1, 2], eventMs: 2, format: String, series: [{ name: 'x', color: '#000', values: [null, null] }] })).toBeNull();
    const svg = String(lineChart({ title: '<t>', times: [1], eventMs: 2, format: String, series: [{ name: '<script>', color: '#000', values: [5] }] }));
    expect(svg).toContain('<circle class="series" data-points="1"');
    expect(svg).not.toContain('<script>');
    expect(svg).toContain('&lt;script&gt;');
  });
});

// ---------------------------------------------------------------------------------------
// Pages built from hostile data.

const EVIL = '<img src=x onerror=alert(1)>';

function manifest(over: Partial<Manifest> = {}): Manifest {
  return {
    version: 1, id: '20261126T065012-1234-a1b2c3', kind: 'crash', time: '2026-11-26T06:50:12.000Z', timeMs: Date.parse('2026-11-26T06:50:12Z'),
    capturedAt: '2026-11-26T06:50:12.100Z',
    host: { hostname: `host${EVIL}`, bootId: null, kernel: '6.1.0', machineId: null },
    process: {
      pid: 1234, pidInNamespace: 1234, tid: 1234, tidInNamespace: 1234, ppid: 1, uid: 0, gid: 0, signal: 11, signalName: 'SIGSEGV',
      comm: '<b>x</b>', exe: `/tmp/${EVIL}`, cmdline: [`/tmp/${EVIL}`, '"><script>alert(2)</script>'], cwd: `/${EVIL}`, root: '/',
      cgroup: `/${EVIL}`, unit: `${EVIL}.service`, namespaces: {}, inContainer: false, hostnameInNamespace: null, dumpable: 1, rlimitCore: null,
      threads: 1, fdCount: 3, startTimeTicks: null, procVerified: true,
    },
    core: null,
    backtrace: { tool: 'eu-stack', file: 'backtrace.txt', crashingTid: 1234, frames: [{ fn: EVIL, module: EVIL, addr: '0x1', source: null }], threads: 1 },
    signature: { text: `sig ${EVIL}`, hash: '0123456789abcdef' },
    modules: [{ name: EVIL, buildId: 'ab', file: EVIL }],
    rule: `rule${EVIL}`,
    reason: `why${EVIL}`,
    labels: { [`k${EVIL}`]: `v${EVIL}` },
    recorders: [{ name: `m${EVIL}`, ok: true, files: [EVIL], warnings: [EVIL], from: null, to: null }],
    warnings: [`warning ${EVIL}`],
    timings: {},
    files: [],
    handler: { version: '0', pid: 1 },
    ...over,
  };
}

const report: TopReport = {
  id: 'x', source: 'ftrace', span: { startMs: 1_000, endMs: 3_000 },
  processes: [{ pid: 7, comm: EVIL, cpuMs: 12, syscalls: 3, topSyscalls: [{ name: EVIL, count: 3 }], opens: 1, bytesRead: 10, bytesWritten: 20 }],
  seconds: [{ startMs: 1_000, processes: [{ pid: 7, comm: EVIL, cpuMs: 12, syscalls: 3, topSyscalls: [], opens: 0, bytesRead: 0, bytesWritten: 0 }] }],
  metrics: [0, 1, 2].map((i) => ({ t: 1_000 + i * 1000, cpuPercent: 10 * i, memAvailableBytes: 1e9, swapUsedBytes: 0, load1: 0.5, psiCpu: null, psiMemory: null, psiIo: null })),
  warnings: [EVIL],
};

/** The elements and attributes this program writes; anything else came from the data. */
const ELEMENTS = new Set([
  'html', 'head', 'meta', 'link', 'title', 'style', 'body', 'header', 'main', 'strong', 'span', 'a', 'h1', 'h2', 'h3', 'p', 'form', 'label',
  'input', 'select', 'option', 'button', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'ul', 'ol', 'li', 'div', 'details', 'summary',
  'section', 'figure', 'figcaption', 'pre', 'svg', 'line', 'text', 'polyline', 'circle', 'rect',
]);
const ATTRIBUTES = new Set([
  'lang', 'charset', 'name', 'content', 'rel', 'href', 'nonce', 'class', 'method', 'action', 'value', 'size', 'placeholder', 'type',
  'selected', 'open', 'start', 'download', 'xmlns', 'width', 'height', 'viewBox', 'role', 'aria-label', 'x', 'y', 'x1', 'x2', 'y1', 'y2', 'cx', 'cy',
  'r', 'points', 'fill', 'stroke', 'stroke-width', 'stroke-linejoin', 'stroke-dasharray', 'text-anchor', 'font-size', 'data-points',
]);
const TAG = /<\/?([a-zA-Z][a-zA-Z0-9]*)((?:\s+[a-zA-Z][a-zA-Z0-9:-]*(?:="[^"<>]*")?)*)\s*\/?>/g;

/**
 * No element or attribute can come from the data: every '<' opens a tag this program
 * writes, with attributes it writes, and no attribute value holds a quote or a '<'.
 */
function expectInert(markup: string): void {
  const body = markup.replace(/<!DOCTYPE html>/, '').replace(/<style nonce="[^"]*">[^<]*<\/style>/, '');
  for (const m of body.matchAll(TAG)) {
    expect(ELEMENTS.has(m[1]!), `element <${m[1]}>`).toBe(true);
    for (const a of m[2]!.matchAll(/\s+([a-zA-Z][a-zA-Z0-9:-]*)(?:="[^"]*")?/g)) expect(ATTRIBUTES.has(a[1]!), `attribute ${a[1]} in ${m[0]}`).toBe(true);
  }
  expect(body.replace(TAG, '')).not.toContain('<');
}

describe('pages', () => {
  it.each(['<p><img src=x></p>', '<td onerror="x">a</td>', '<td class="a">"><b>x</b></td>', '<p>a < b</p>'])('the checker itself catches %j', (bad) => {
    expect(() => expectInert(bad)).toThrow();
  });

  const row: EventRow = {
    id: '20261126T065012-1234-a1b2c3', kind: 'crash', time: 0, host: EVIL, boot_id: null, pid: 1234, pid_ns: 1234, tid: 1234, uid: 0, gid: 0,
    signal: 11, signal_name: 'SIGSEGV', exe: `/tmp/${EVIL}`, comm: '<b>x</b>', cmdline: EVIL, unit: null, cgroup: null, in_container: 0,
    dumpable: 1, signature: '0123456789abcdef', signature_text: EVIL, rule: null, core_size: null, core_stored_size: null, core_truncated: 0,
    has_core: 0, bundle_size: 1, warnings: 0, bundle: 'bundles/x', indexed_at: 0, reason: null,
  };

  it('the list: hostile names and a hostile filter value stay text', () => {
    const out = String(listBody({ rows: [row], filters: { exe: '"><img src=x>', signal: '', kind: 'crash', since: '', signature: '' }, error: null, more: false, limit: 500 }));
    expectInert(out);
    expect(out).toContain('&lt;b&gt;x&lt;/b&gt;');
    expect(out).toContain('value="&quot;&gt;&lt;img src=x&gt;"');
    expect(out).toContain('<option value="crash" selected>');
    const err = String(listBody({ rows: [], filters: { exe: '', signal: EVIL, kind: '', since: '', signature: '' }, error: `--signal: unknown signal "${EVIL}"`, more: false, limit: 500 }));
    expectInert(err);
  });

  it('groups', () => {
    const out = String(groupsBody({ groups: [{ signature: 'ab', signature_text: EVIL, count: 2, first_seen: 0, last_seen: 1, exe: EVIL, last_id: row.id }], filters: { exe: EVIL, since: '' }, error: null }));
    expectInert(out);
  });

  it('an event: metadata, warnings, trace, charts, top processes, recorders, all inert', () => {
    for (const trace of [{ text: `TID 1234:\n#0  0x0000000000401000 ${EVIL} - ${EVIL}\n    ${EVIL}:1\n` }, { error: EVIL }, null]) {
      const out = String(eventBody({ manifest: manifest(), bundleDir: `/s/${EVIL}`, trace, top: { report }, metricsSummary: `top ${EVIL}`, viewer }));
      expectInert(out);
      expect(out).toContain('&lt;img src=x onerror=alert(1)&gt;');
      expect(out).toContain('polyline class="series"');
    }
    const failed = String(eventBody({ manifest: manifest(), bundleDir: '/s', trace: null, top: { error: EVIL }, metricsSummary: EVIL, viewer: { ...viewer, canExport: false } }));
    expectInert(failed);
    expect(failed).not.toContain('archive.tar.gz');
  });

  it('the layout carries the style nonce and no script', () => {
    const out = layout(EVIL, html`<p>x</p>`, { nonce: 'abc+/=', viewer, host: EVIL });
    expectInert(out);
    expect(out).toContain('<style nonce="abc+/=">');
    expect(out).not.toContain('<script');
  });
});

describe('stack traces split into threads', () => {
  it.each([
    ['eu-stack', EU_STACK_CPP_THREADS, [5027, 5029]],
    ['gdb', GDB_CPP_THREADS, [5029, 5027]],
  ])('%s', (tool, text, tids) => {
    const threads = parseTrace(tool, text);
    expect(threads.map((t) => t.tid)).toEqual(tids);
    expect(threads.flatMap((t) => t.frames.map((f) => f.fn))).toContain('crash_here');
  });
});
