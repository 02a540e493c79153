// --since/--until values: absolute dates and times, or relative ones ("1h" = an hour ago).
// Pure (the clock is passed in).
import { FlightboxError } from '../lib/errors.js';
import { parseDuration } from '../lib/units.js';

export function parseTimeArg(value: string, flag: string, now: number = Date.now()): number {
  const v = value.trim();
  if (v === 'now') return now;
  if (v === 'today' || v === 'yesterday') {
    const d = new Date(now);
    d.setHours(0, 0, 0, 0);
    return d.getTime() - (v === 'yesterday' ? 86_400_000 : 0);
  }
  const rel = /^-?(.+?)(?:\s+ago)?$/.exec(v);
  if (rel && /^\d/.test(rel[1]!) && !/^\d{4}-/.test(rel[1]!)) {
    const ms = parseDuration(rel[1]);
    if (ms !== undefined) return now - ms;
  }
  // "2026-11-26", "2026-11-26 06:00", "2026-11-26T06:00:00Z", "2026-11-26 06:00:00+01:00"
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?\s*(Z|UTC|[+-]\d{2}:?\d{2})?$/i.exec(v);
  if (m) {
    const [, y, mo, d, h = '0', mi = '0', s = '0', zone] = m;
    const parts = [Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)] as const;
    let t: number;
    if (zone) {
      t = Date.UTC(...parts);
      if (!/^(Z|UTC)$/i.test(zone)) {
        const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
        t -= (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3])) * 60_000;
      }
    } else {
      t = new Date(...parts).getTime();
    }
    const check = new Date(Number(y), Number(mo) - 1, Number(d));
    if (!Number.isNaN(t) && check.getMonth() === Number(mo) - 1 && Number(h) < 24 && Number(mi) < 60 && Number(s) < 61) return t;
  }
  throw new FlightboxError(
    'USAGE',
    `${flag}: cannot understand the time ${JSON.stringify(value)} (use e.g. 2026-11-26, "2026-11-26 14:00", 1h, 30m, 2d, today)`,
  );
}
