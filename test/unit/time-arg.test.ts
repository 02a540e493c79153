import { describe, expect, it } from 'vitest';
import { parseTimeArg } from '../../cli/time-arg.js';
import { FlightboxError } from '../../lib/errors.js';

// A fixed clock: 2026-11-26 12:34:56.789 local time. Expectations for zone-less inputs are
// computed with the local-time Date constructor, so the tests hold in any TZ.
const NOW = new Date(2026, 10, 26, 12, 34, 56, 789).getTime();
const H = 3_600_000;
const M = 60_000;
const D = 86_400_000;

describe('parseTimeArg: relative times', () => {
  it.each([
    ['1h', NOW - H],
    ['30m', NOW - 30 * M],
    ['2d', NOW - 2 * D],
    ['1h ago', NOW - H],
    ['2d ago', NOW - 2 * D],
    ['1h30m', NOW - 90 * M],
    ['1h30m ago', NOW - 90 * M],
    ['-1h', NOW - H],
    ['90s', NOW - 90_000],
    ['250ms', NOW - 250],
    ['1w', NOW - 7 * D],
    ['0s', NOW],
    ['  1h  ', NOW - H],
  ])('%j → now - duration', (value, expected) => {
    expect(parseTimeArg(value, '--since', NOW)).toBe(expected);
  });
});

describe('parseTimeArg: named times', () => {
  it('"now" is the clock', () => {
    expect(parseTimeArg('now', '--until', NOW)).toBe(NOW);
  });

  it('"today" is local midnight of the clock day', () => {
    expect(parseTimeArg('today', '--since', NOW)).toBe(new Date(2026, 10, 26).getTime());
  });

  it('"yesterday" is a day before local midnight', () => {
    expect(parseTimeArg('yesterday', '--since', NOW)).toBe(new Date(2026, 10, 26).getTime() - D);
  });

  it('uses Date.now() when no clock is given', () => {
    const before = Date.now();
    const t = parseTimeArg('now', '--until');
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(Date.now());
  });
});

describe('parseTimeArg: absolute times', () => {
  it.each([
    ['2026-11-26', new Date(2026, 10, 26).getTime()],
    ['2026-11-26 14:00', new Date(2026, 10, 26, 14, 0).getTime()],
    ['2026-11-26T14:00', new Date(2026, 10, 26, 14, 0).getTime()],
    ['2026-11-26 14:00:30', new Date(2026, 10, 26, 14, 0, 30).getTime()],
    ['2026-02-28', new Date(2026, 1, 28).getTime()],
    ['2028-02-29', new Date(2028, 1, 29).getTime()],
    ['2026-11-26T14:00:00Z', Date.UTC(2026, 10, 26, 14, 0, 0)],
    ['2026-11-26T14:00:00z', Date.UTC(2026, 10, 26, 14, 0, 0)],
    ['2026-11-26 14:00 UTC', Date.UTC(2026, 10, 26, 14, 0, 0)],
    ['2026-11-26 14:00:00+01:00', Date.UTC(2026, 10, 26, 13, 0, 0)],
    ['2026-11-26 14:00:00-05:30', Date.UTC(2026, 10, 26, 19, 30, 0)],
    ['2026-11-26T14:00+0200', Date.UTC(2026, 10, 26, 12, 0, 0)],
    ['2026-11-26T00:30:00+01:00', Date.UTC(2026, 10, 25, 23, 30, 0)],
  ])('%j', (value, expected) => {
    expect(parseTimeArg(value, '--since', NOW)).toBe(expected);
  });

  it('an absolute time does not depend on the clock', () => {
    expect(parseTimeArg('2026-11-26T14:00:00Z', '--since', 0)).toBe(Date.UTC(2026, 10, 26, 14));
  });
});

describe('parseTimeArg: invalid input', () => {
  it.each([
    '2026-13-40',
    '2026-13-01',
    '2026-00-10',
    '2026-02-30',
    '2027-02-29',
    '2026-11-32',
    '2026-11-26 24:00',
    '2026-11-26 14:60',
    '2026-11-26 14:00:61',
    '2026-11-26 14:00+25',
    '26-11-2026',
    '2026/11/26',
    'banana',
    '',
    '   ',
    'ago',
    '5',
    '1 hour',
    '1h ago ago',
    'tomorrow',
    'now please',
  ])('%j → FlightboxError USAGE quoting the value', (value) => {
    let err: unknown;
    try {
      parseTimeArg(value, '--since', NOW);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FlightboxError);
    const fe = err as FlightboxError;
    expect(fe.code).toBe('USAGE');
    expect(fe.message).toContain(JSON.stringify(value));
    expect(fe.message.startsWith('--since: ')).toBe(true);
  });

  it('names the flag it was given', () => {
    expect(() => parseTimeArg('banana', '--until', NOW)).toThrow(/^--until: cannot understand the time "banana"/);
  });
});
