// Turning commander's action arguments and filter flags into typed values.
import type { Command } from 'commander';
import { parseSignal } from '../lib/signals.js';
import { FlightboxError } from '../lib/errors.js';
import type { EventFilter, EventRow } from '../store/index-db.js';
import type { Store } from '../store/store.js';
import { parseTimeArg } from './time-arg.js';

export interface Invocation<O> {
  positional: (string | undefined)[];
  opts: O & { config?: string };
}

/** commander calls actions with (…arguments, options, command). */
export function invocation<O>(args: unknown[]): Invocation<O> {
  const cmd = args.at(-1) as Command;
  return { positional: args.slice(0, -2) as (string | undefined)[], opts: cmd.optsWithGlobals() as O & { config?: string } };
}

function intArg(value: string, flag: string): number {
  if (!/^\d{1,10}$/.test(value)) throw new FlightboxError('USAGE', `${flag}: expected a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

export interface FilterOptions {
  since?: string;
  until?: string;
  exe?: string;
  comm?: string;
  pid?: string;
  uid?: string;
  signal?: string;
  signature?: string;
  rule?: string;
  kind?: string;
  lines?: string;
  reverse?: boolean;
}

export function filterFrom(o: FilterOptions, now = Date.now()): EventFilter {
  const f: EventFilter = {};
  if (o.since !== undefined) f.since = parseTimeArg(o.since, '--since', now);
  if (o.until !== undefined) f.until = parseTimeArg(o.until, '--until', now);
  if (f.since !== undefined && f.until !== undefined && f.since > f.until) {
    throw new FlightboxError('USAGE', `--since (${o.since}) is after --until (${o.until})`);
  }
  if (o.exe !== undefined) f.exe = o.exe;
  if (o.comm !== undefined) f.comm = o.comm;
  if (o.pid !== undefined) f.pid = intArg(o.pid, '--pid');
  if (o.uid !== undefined) f.uid = intArg(o.uid, '--uid');
  if (o.signal !== undefined) {
    const s = parseSignal(o.signal);
    if (s === undefined || s < 1 || s > 64) throw new FlightboxError('USAGE', `--signal: unknown signal ${JSON.stringify(o.signal)}`);
    f.signal = s;
  }
  if (o.signature !== undefined) {
    if (!/^[0-9a-f]{1,64}$/.test(o.signature)) throw new FlightboxError('USAGE', `--signature: expected hex digits, got ${JSON.stringify(o.signature)}`);
    f.signature = o.signature;
  }
  if (o.rule !== undefined) f.rule = o.rule;
  if (o.kind !== undefined) {
    if (o.kind !== 'crash' && o.kind !== 'snapshot') throw new FlightboxError('USAGE', `--kind: expected crash or snapshot, got ${JSON.stringify(o.kind)}`);
    f.kind = o.kind;
  }
  if (o.lines !== undefined) {
    f.limit = intArg(o.lines, '-n');
    if (f.limit === 0) throw new FlightboxError('USAGE', '-n: expected at least 1');
  }
  if (o.reverse) f.reverse = true;
  return f;
}

/** The event named by `id` (exact or unique prefix), or else the newest one matching the filters. */
export function pickEvent(store: Store, id: string | undefined, o: FilterOptions): EventRow {
  if (id !== undefined) return store.index().resolve(id);
  const rows = store.index().list({ ...filterFrom(o), limit: 1, reverse: true });
  if (rows.length === 0) throw new FlightboxError('NOT_FOUND', 'no event matches');
  return rows[0]!;
}
