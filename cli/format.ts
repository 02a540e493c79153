// Output helpers for the CLI: tables, times, and the JSON shape of an event. Hostile
// strings (exe, comm, cmdline) are escaped before they reach a terminal.
import { escapeControl } from '../lib/escape.js';
import { formatSize } from '../lib/units.js';
import type { EventRow, ListRow } from '../store/index-db.js';

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

export function coreState(row: Pick<EventRow, 'kind' | 'has_core' | 'core_truncated'>): string {
  if (row.kind !== 'crash') return '-';
  if (!row.has_core) return 'none';
  return row.core_truncated ? 'truncated' : 'present';
}

export function eventJson(row: EventRow): Record<string, unknown> {
  return {
    id: row.id,
    kind: row.kind,
    time: new Date(row.time).toISOString(),
    timeMs: row.time,
    host: row.host,
    bootId: row.boot_id,
    pid: row.pid,
    pidInNamespace: row.pid_ns,
    tid: row.tid,
    uid: row.uid,
    gid: row.gid,
    signal: row.signal,
    signalName: row.signal_name,
    exe: row.exe,
    comm: row.comm,
    cmdline: row.cmdline,
    unit: row.unit,
    cgroup: row.cgroup,
    inContainer: row.in_container === null ? null : row.in_container === 1,
    dumpable: row.dumpable,
    signature: row.signature,
    signatureText: row.signature_text,
    rule: row.rule,
    reason: row.reason,
    core: coreState(row),
    coreSize: row.core_size,
    coreStoredSize: row.core_stored_size,
    bundleSize: row.bundle_size,
    warnings: row.warnings,
    bundle: row.bundle,
  };
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
