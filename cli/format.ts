// Output helpers for the CLI: tables, times, and the JSON shape of an event. Hostile
// strings (exe, comm, cmdline) are escaped before they reach a terminal.
import { escapeControl } from '../lib/escape.js';
import { formatSize } from '../lib/units.js';
import type { EventColumn, EventFilter, EventRow, IndexDb, ListRow } from '../store/index-db.js';

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** Local time "2026-11-26 06:54:42 +00:00". */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const tz = `${sign}${pad2(Math.floor(Math.abs(off) / 60))}:${pad2(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())} ${tz}`;
}

export function table(headers: string[], rows: string[][]): string {
  // Widths in a loop: spreading a column into Math.max overflows the stack past ~100k rows.
  const widths = headers.map((h) => h.length);
  for (const r of rows) {
    for (let i = 0; i < widths.length; i++) {
      const n = (r[i] ?? '').length;
      if (n > widths[i]!) widths[i] = n;
    }
  }
  const fmt = (r: string[]): string => {
    let line = '';
    for (let i = 0; i < r.length; i++) {
      if (i > 0) line += '  ';
      line += i === r.length - 1 ? r[i]! : r[i]!.padEnd(widths[i]!);
    }
    return line.trimEnd();
  };
  const lines = new Array<string>(rows.length + 1);
  lines[0] = fmt(headers);
  for (let i = 0; i < rows.length; i++) lines[i + 1] = fmt(rows[i]!);
  return lines.join('\n');
}

const DAY_MS = 86_400_000;
/** The times toISOString writes as YYYY-MM-DDTHH:MM:SS.mmmZ: years 0000 to 9999. */
const ISO_FIRST_MS = -62_167_219_200_000;
const ISO_LAST_MS = 253_402_300_799_999;
const ZERO = 0x30;
/** The last day isoTime wrote, and the character codes of its "YYYY-MM-DDT": a list's events come a day at a time. */
let isoDay = Number.NaN;
let isoDayCodes: number[] = [];

/**
 * `new Date(ms).toISOString()`, several times faster for what an event's time is (a whole
 * number of milliseconds in years 0000-9999): the date is made once a day, the time of day
 * by arithmetic. Anything else (a fraction, a string, another year) goes to Date, which
 * writes, or throws, as it always did.
 */
export function isoTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < ISO_FIRST_MS || ms > ISO_LAST_MS) return new Date(ms).toISOString();
  // Exact: |ms| < 2^53, and a day is a whole number of milliseconds.
  const day = Math.floor(ms / DAY_MS);
  if (day !== isoDay) {
    const date = new Date(day * DAY_MS).toISOString();
    isoDayCodes = Array.from({ length: 11 }, (_, i) => date.charCodeAt(i));
    isoDay = day;
  }
  const inDay = ms - day * DAY_MS;
  const milli = inDay % 1000;
  const secs = (inDay - milli) / 1000;
  const h = Math.floor(secs / 3600);
  const m = Math.floor(secs / 60) % 60;
  const s = secs % 60;
  const d = isoDayCodes;
  // One flat string: pieces joined by + or a template make a rope, which JSON.stringify
  // copies flat again, 11,000 times for a day of events.
  return String.fromCharCode(
    d[0]!, d[1]!, d[2]!, d[3]!, d[4]!, d[5]!, d[6]!, d[7]!, d[8]!, d[9]!, d[10]!,
    ZERO + Math.floor(h / 10), ZERO + (h % 10), 0x3a, ZERO + Math.floor(m / 10), ZERO + (m % 10), 0x3a,
    ZERO + Math.floor(s / 10), ZERO + (s % 10), 0x2e, ZERO + Math.floor(milli / 100), ZERO + (Math.floor(milli / 10) % 10), ZERO + (milli % 10), 0x5a,
  );
}

/** The core column of list and eventJson: by JavaScript truthiness, whatever the index holds. */
function coreOf(kind: unknown, hasCore: unknown, truncated: unknown): string {
  if (kind !== 'crash') return '-';
  if (!hasCore) return 'none';
  return truncated ? 'truncated' : 'present';
}

export function coreState(row: Pick<EventRow, 'kind' | 'has_core' | 'core_truncated'>): string {
  return coreOf(row.kind, row.has_core, row.core_truncated);
}

/** The columns an event's JSON shape is made from, in the order of its keys (never indexed_at). */
const EVENT_JSON_COLUMNS = [
  'id', 'kind', 'time', 'host', 'boot_id', 'pid', 'pid_ns', 'tid', 'uid', 'gid', 'signal', 'signal_name', 'exe', 'comm', 'cmdline', 'unit',
  'cgroup', 'in_container', 'dumpable', 'signature', 'signature_text', 'rule', 'reason', 'has_core', 'core_truncated', 'core_size',
  'core_stored_size', 'bundle_size', 'warnings', 'bundle',
] as const satisfies readonly EventColumn[];

/** The JSON shape of an event from its values over EVENT_JSON_COLUMNS. */
function eventObject(r: readonly unknown[]): Record<string, unknown> {
  return {
    id: r[0],
    kind: r[1],
    time: isoTime(r[2] as number),
    timeMs: r[2],
    host: r[3],
    bootId: r[4],
    pid: r[5],
    pidInNamespace: r[6],
    tid: r[7],
    uid: r[8],
    gid: r[9],
    signal: r[10],
    signalName: r[11],
    exe: r[12],
    comm: r[13],
    cmdline: r[14],
    unit: r[15],
    cgroup: r[16],
    inContainer: r[17] === null ? null : r[17] === 1,
    dumpable: r[18],
    signature: r[19],
    signatureText: r[20],
    rule: r[21],
    reason: r[22],
    core: coreOf(r[1], r[23], r[24]),
    coreSize: r[25],
    coreStoredSize: r[26],
    bundleSize: r[27],
    warnings: r[28],
    bundle: r[29],
  };
}

/** The JSON shape of an event: `list --json`, `watch --json`, the web API. */
export function eventJson(row: EventRow): Record<string, unknown> {
  return eventObject(EVENT_JSON_COLUMNS.map((c) => row[c]));
}

/**
 * eventJson of each event matching `f`, in list()'s order: what `flightbox list --json`
 * prints, each object made straight from the index's values over EVENT_JSON_COLUMNS, not
 * from an EventRow made first (one object an event instead of two, and two columns fewer).
 */
export function eventsJson(index: IndexDb, f: EventFilter): Record<string, unknown>[] {
  return index.listValues(EVENT_JSON_COLUMNS, f).map(eventObject);
}

/** The columns of `list`, and of `watch` which prints the same lines as they come. */
export const LIST_HEADERS = ['TIME', 'ID', 'PID', 'UID', 'SIG', 'COREFILE', 'SIZE', 'EXE'] as const;

/** Printable ASCII but backslash, up to escapeControl's length limit: what escapeControl returns unchanged. */
const NOTHING_TO_ESCAPE = /^[\x20-\x5b\x5d-\x7e]{0,256}$/;

/** One event's cells under LIST_HEADERS (an EventRow has these columns and more). */
export function listCells(r: ListRow): string[] {
  return [
    formatTime(r.time),
    r.id,
    String(r.pid ?? '-'),
    String(r.uid ?? '-'),
    r.signal_name ?? '-',
    coreState(r),
    r.core_stored_size ? formatSize(r.core_stored_size) : '-',
    escapeCell(r.kind === 'snapshot' ? `(snapshot${r.rule ? ` by rule ${r.rule}` : ''}${r.reason ? `: ${r.reason}` : ''})` : r.exe ?? (r.comm ? `(${r.comm})` : '-')),
  ];
}

/** escapeControl, without its walk over every character of the usual plain path. */
function escapeCell(s: string): string {
  return NOTHING_TO_ESCAPE.test(s) ? s : escapeControl(s);
}

export function listTable(rows: readonly ListRow[]): string {
  return table([...LIST_HEADERS], rows.map(listCells));
}
