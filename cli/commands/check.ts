// flightbox check: a Nagios/Icinga plugin. Counts the crashes in a time window and prints
// one line, "FLIGHTBOX OK - 0 crashes in the last 15m | crashes=0;1;5;0", exiting 0 (OK),
// 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN). Every failure (bad arguments, a broken config,
// an unreadable store) is UNKNOWN on that same one line: a monitoring system reads nothing else.
import { escapeControl } from '../../lib/escape.js';
import { messageOf } from '../../lib/errors.js';
import { parseSignal, signalName } from '../../lib/signals.js';
import { parseDuration } from '../../lib/units.js';
import type { EventFilter } from '../../store/index-db.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { formatTime } from '../format.js';

/** The plugin exit statuses (Nagios plugin guidelines); nothing else is ever returned. */
export const NAGIOS_STATUS = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
export type NagiosState = keyof typeof NAGIOS_STATUS;
export const DEFAULT_CHECK_WINDOW = '15m';

/**
 * A threshold range as the plugin guidelines define it, `[@]start:end`: "10" is 0:10,
 * "10:" is 10 to infinity, "~:10" is minus infinity to 10. A value outside the range
 * alerts; with "@", a value inside it (ends included) does.
 */
export interface NagiosRange {
  start: number;
  end: number;
  inside: boolean;
  /** as written, for the perfdata */
  text: string;
}

const NUM = '[-+]?\\d+(?:\\.\\d+)?';
const RANGE_RE = new RegExp(`^(@?)(?:(~|${NUM})?(:))?(${NUM})?$`);

/** Parse a range; undefined when it is not one (or start > end). Pure. */
export function parseNagiosRange(text: string): NagiosRange | undefined {
  const t = text.trim();
  const m = RANGE_RE.exec(t);
  if (!m || t === '' || t === '@') return undefined;
  const [, at, startText, colon, endText] = m;
  if (!colon && endText === undefined) return undefined;
  const start = !colon || startText === undefined ? 0 : startText === '~' ? -Infinity : Number(startText);
  const end = endText === undefined ? Infinity : Number(endText);
  if (start > end) return undefined;
  return { start, end, inside: at === '@', text: t };
}

/** Whether `value` alerts against `range`. Pure. */
export function rangeAlerts(range: NagiosRange, value: number): boolean {
  const within = value >= range.start && value <= range.end;
  return range.inside ? within : !within;
}

/** CRITICAL beats WARNING beats OK. Pure. */
export function checkState(value: number, warning: NagiosRange | null, critical: NagiosRange | null): NagiosState {
  if (critical && rangeAlerts(critical, value)) return 'CRITICAL';
  if (warning && rangeAlerts(warning, value)) return 'WARNING';
  return 'OK';
}

/**
 * Text for the status line: one line, no control characters, and no '|' (which starts the
 * perfdata). Hostile strings (a crashed program's path) pass through here.
 */
export function pluginText(s: string, max = 300): string {
  return escapeControl(s, max).replace(/\|/g, '\\x7c');
}

/** The line and the exit status. Pure. */
export function pluginOutput(state: NagiosState, text: string, perfdata?: string): { line: string; status: number } {
  return { line: `FLIGHTBOX ${state} - ${text}${perfdata ? ` | ${perfdata}` : ''}`, status: NAGIOS_STATUS[state] };
}

interface CheckOptions {
  window?: string;
  warning?: string;
  critical?: string;
  exe?: string;
  signal?: string;
}

class CheckArgumentError extends Error {}

function thresholdArg(v: string | undefined, flag: string): NagiosRange | null {
  if (v === undefined) return null;
  const r = parseNagiosRange(v);
  if (!r) throw new CheckArgumentError(`${flag}: expected a count or a Nagios range (N, N:, ~:N, N:M, @N:M), got ${JSON.stringify(v)}`);
  return r;
}

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<CheckOptions>(args);
  const emit = (o: { line: string; status: number }) => {
    process.stdout.write(`${o.line}\n`);
    return o.status;
  };
  try {
    const windowText = (opts.window ?? DEFAULT_CHECK_WINDOW).trim();
    const windowMs = parseDuration(windowText);
    if (windowMs === undefined || windowMs <= 0) throw new CheckArgumentError(`--window: expected a duration such as 15m or 1h, got ${JSON.stringify(opts.window)}`);
    const warning = thresholdArg(opts.warning, '--warning');
    const critical = thresholdArg(opts.critical, '--critical');
    const now = Date.now();
    const filter: EventFilter = { kind: 'crash', since: now - windowMs, reverse: true };
    if (opts.exe !== undefined) filter.exe = opts.exe;
    if (opts.signal !== undefined) {
      const s = parseSignal(opts.signal);
      if (s === undefined || s < 1 || s > 64) throw new CheckArgumentError(`--signal: unknown signal ${JSON.stringify(opts.signal)}`);
      filter.signal = s;
    }
    const { config } = loadCliConfig(opts);
    // Never the per-user view: a check that sees only its own user's crashes would say OK wrongly.
    const store = openStoreForQuery(config);
    let rows;
    try {
      rows = store.index().list(filter);
    } finally {
      store.close();
    }
    const n = rows.length;
    const what = `${n} ${filter.signal !== undefined ? `${signalName(filter.signal)} ` : ''}crash${n === 1 ? '' : 'es'}${opts.exe !== undefined ? ` of ${opts.exe}` : ''}`;
    const newest = rows[0];
    const detail = newest ? ` (newest ${formatTime(newest.time)}: ${newest.exe ?? newest.comm ?? 'unknown'}, ${newest.signal_name ?? (newest.signal !== null ? signalName(newest.signal) : 'unknown signal')})` : '';
    const perf = `crashes=${n};${warning?.text ?? ''};${critical?.text ?? ''};0`;
    return emit(pluginOutput(checkState(n, warning, critical), pluginText(`${what} in the last ${windowText}${detail}`), perf));
  } catch (err) {
    const why = err instanceof CheckArgumentError ? err.message : `${err instanceof Error && 'code' in err && err.code === 'CONFIG_INVALID' ? 'configuration error: ' : ''}${messageOf(err)}`;
    return emit(pluginOutput('UNKNOWN', pluginText(why)));
  }
}
