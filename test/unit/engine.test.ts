import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Condition, Firing, Rule, Suppressed, TriggerEvent } from '../../lib/rules.js';
import {
  DAY_MS,
  MAX_REASON_CHARS,
  createEngineState,
  crashMatches,
  formatDuration,
  step,
  type EngineState,
} from '../../triggers/engine.js';

type Threshold = Extract<Condition, { kind: 'threshold' }>;
type Crash = Extract<Condition, { kind: 'crash' }>;

function rule(name: string, when: Condition, over: Partial<Rule> = {}): Rule {
  return { name, when, do: [{ kind: 'snapshot', recorders: null }], cooldownMs: 0, maxPerDay: 100, line: null, ...over };
}
function thr(over: Partial<Threshold> = {}): Threshold {
  return { kind: 'threshold', metric: 'load1', process: null, mount: null, op: 'above', value: 8, forMs: 0, clear: 8, ...over };
}
function crash(over: Partial<Crash> = {}): Crash {
  return { kind: 'crash', exe: null, signals: null, signature: null, uid: null, ...over };
}
const value = (r: string, t: number, v: number | null, labels: Record<string, string> = {}): TriggerEvent =>
  ({ kind: 'value', rule: r, t, value: v, labels });
const logLine = (path: string, t: number, line: string): TriggerEvent => ({ kind: 'log', path, t, line });

/** Feed events in order; collect everything. */
function run(state: EngineState, rules: readonly Rule[], events: TriggerEvent[]): { fires: Firing[]; suppressed: Suppressed[] } {
  const fires: Firing[] = [];
  const suppressed: Suppressed[] = [];
  for (const e of events) {
    const r = step(state, rules, e);
    fires.push(...r.fires);
    suppressed.push(...r.suppressed);
  }
  return { fires, suppressed };
}

/** Samples of one threshold rule "r": [t in s, value]. */
const samples = (pairs: [number, number | null][]): TriggerEvent[] => pairs.map(([t, v]) => value('r', t * 1000, v));

afterEach(() => {
  vi.restoreAllMocks();
});

describe('threshold: for, hysteresis, one firing per episode', () => {
  type Case = [string, Partial<Threshold>, [number, number | null][], number[]];
  const cases: Case[] = [
    ['for 0 fires on the first sample past the threshold', {}, [[0, 5], [1, 9], [2, 10], [3, 12]], [1]],
    ['equal to the threshold does not hold (strictly above)', {}, [[0, 8], [1, 8], [2, 8.01]], [2]],
    ['for 3s: fires once 3 s after the first holding sample, then not again', { forMs: 3000 },
      [[0, 9], [1, 9], [2, 9], [3, 9], [4, 9], [5, 9], [6, 9]], [3]],
    ['for 3s: a dip before firing starts the wait over', { forMs: 3000 },
      [[0, 9], [1, 9], [2, 7], [3, 9], [4, 9], [5, 9], [6, 9]], [6]],
    ['for 3s: no data (null) before firing starts the wait over', { forMs: 3000 },
      [[0, 9], [1, 9], [2, null], [3, 9], [4, 9], [5, 9], [6, 9]], [6]],
    ['for 3s: never held long enough', { forMs: 3000 }, [[0, 9], [1, 9], [2, 7], [3, 9], [4, 9], [5, 7]], []],
    ['a new episode after the value went back fires again', {},
      [[0, 9], [1, 10], [2, 7], [3, 9], [4, 9]], [0, 3]],
    ['null ends an episode that fired', {}, [[0, 9], [1, null], [2, 9]], [0, 2]],
    ['hysteresis: between clear and value keeps the episode; past clear ends it', { value: 90, clear: 80 },
      [[0, 95], [1, 85], [2, 95], [3, 81], [4, 99], [5, 80], [6, 91]], [0, 6]],
    ['hysteresis with for: a dip between clear and value before firing still restarts the wait', { value: 90, clear: 80, forMs: 2000 },
      [[0, 95], [1, 85], [2, 95], [3, 95], [4, 95], [5, 85], [6, 95]], [4]],
    ['below: fires under the value, ends above clear', { op: 'below', value: 10, clear: 20 },
      [[0, 50], [1, 9], [2, 15], [3, 5], [4, 21], [5, 3]], [1, 5]],
    ['NaN counts as no data', {}, [[0, 9], [1, Number.NaN], [2, 9]], [0, 2]],
  ];
  it.each(cases)('%s', (_what, over, pairs, fireSeconds) => {
    const rules = [rule('r', thr(over))];
    const r = run(createEngineState(), rules, samples(pairs));
    expect(r.fires.map((f) => f.t / 1000)).toEqual(fireSeconds);
    expect(r.suppressed).toEqual([]);
  });

  it('the reason says metric, value, threshold, how long, and which process', () => {
    const gib = 1024 ** 3;
    const rules = [rule('mysqld-rss', thr({ metric: 'process.rss', process: { name: 'mysqld' }, value: 2 * gib, clear: 2 * gib, forMs: 30_000 }))];
    const state = createEngineState();
    const events: TriggerEvent[] = [];
    for (let s = 0; s <= 30; s++) events.push(value('mysqld-rss', 1_000_000 + s * 1000, 2.1 * gib, { pid: '1234', comm: 'mysqld', count: '1' }));
    const r = run(state, rules, events);
    expect(r.fires).toEqual([{
      rule: 'mysqld-rss',
      t: 1_030_000,
      reason: 'process.rss 2.1 GiB above 2 GiB for 30s (pid 1234 mysqld)',
      labels: { pid: '1234', comm: 'mysqld', count: '1' },
    }]);
  });

  it.each<[Partial<Threshold>, number, Record<string, string>, string]>([
    [{ metric: 'cpu', value: 90, clear: 90 }, 97.25, {}, 'cpu 97.25% above 90%'],
    [{ metric: 'disk.free', op: 'below', value: 10, clear: 10, mount: '/var' }, 4, {}, 'disk.free 4% below 10% on /var'],
    [{ metric: 'process.cpu', process: { cmdline: 'java' }, value: 300, clear: 300 }, 350, { pid: '9', comm: 'java', count: '4' },
      'process.cpu 350% above 300% (pid 9 java, highest of 4 processes)'],
    [{ metric: 'fds', value: 1000, clear: 1000 }, 1500, { source: 'file-nr' }, 'fds 1500 above 1000 (source=file-nr)'],
  ])('reason for %j at %d', (over, v, labels, reason) => {
    const r = step(createEngineState(), [rule('r', thr(over))], value('r', 5, v, labels));
    expect(r.fires.map((f) => f.reason)).toEqual([reason]);
  });

  it('value events for unknown rules, or rules that are not thresholds, fire nothing', () => {
    const rules = [rule('m', { kind: 'manual' }), rule('r', thr())];
    const state = createEngineState();
    expect(step(state, rules, value('nope', 0, 100))).toEqual({ fires: [], suppressed: [] });
    expect(step(state, rules, value('m', 0, 100))).toEqual({ fires: [], suppressed: [] });
    expect(step(state, rules, value('r', 0, 100)).fires).toHaveLength(1);
  });
});

describe('cooldown', () => {
  const rules = [rule('r', thr(), { cooldownMs: 60_000 })];

  it('rising again after the cooldown fires a second time', () => {
    const r = run(createEngineState(), rules, samples([[0, 9], [10, 1], [61, 9]]));
    expect(r.fires.map((f) => f.t)).toEqual([0, 61_000]);
    expect(r.suppressed).toEqual([]);
  });

  it('rising again within the cooldown is suppressed, once, and that episode never fires', () => {
    const r = run(createEngineState(), rules, samples([[0, 9], [10, 1], [20, 9], [30, 9], [70, 9], [100, 9]]));
    expect(r.fires.map((f) => f.t)).toEqual([0]);
    expect(r.suppressed).toEqual([{ rule: 'r', t: 20_000, why: 'cooldown' }]);
    // ... but the next episode after the cooldown does
    const state = createEngineState();
    const r2 = run(state, rules, samples([[0, 9], [10, 1], [20, 9], [70, 9], [71, 1], [72, 9]]));
    expect(r2.fires.map((f) => f.t)).toEqual([0, 72_000]);
    expect(r2.suppressed.map((s) => s.t)).toEqual([20_000]);
  });

  it('the cooldown boundary: exactly cooldownMs later is allowed', () => {
    const logRules = [rule('l', { kind: 'log', path: '/l', match: 'x' }, { cooldownMs: 30_000 })];
    const r = run(createEngineState(), logRules, [0, 1, 29_999, 30_000, 30_001, 60_000].map((t) => logLine('/l', t, 'x')));
    expect(r.fires.map((f) => f.t)).toEqual([0, 30_000, 60_000]);
    expect(r.suppressed.map((s) => [s.t, s.why])).toEqual([[1, 'cooldown'], [29_999, 'cooldown'], [30_001, 'cooldown']]);
  });
});

describe('maxPerDay', () => {
  it('a flood of 1000 matching lines 1 ms apart, cooldown 0, maxPerDay 5: 5 fire, 995 suppressed', () => {
    const rules = [rule('flood', { kind: 'log', path: '/var/log/app.log', match: 'ERROR' }, { cooldownMs: 0, maxPerDay: 5 })];
    const state = createEngineState();
    const events = Array.from({ length: 1000 }, (_, i) => logLine('/var/log/app.log', 1_000 + i, `ERROR ${i}`));
    const r = run(state, rules, events);
    expect(r.fires).toHaveLength(5);
    expect(r.fires.map((f) => f.t)).toEqual([1000, 1001, 1002, 1003, 1004]);
    expect(r.suppressed).toHaveLength(995);
    expect(new Set(r.suppressed.map((s) => s.why))).toEqual(new Set(['maxPerDay']));
    // memory stays bounded: at most maxPerDay timestamps
    expect(state.rules.get('flood')!.firedAt).toHaveLength(5);
  });

  it('is a rolling 24 h window: the first firing leaving it lets exactly one more through', () => {
    const rules = [rule('r', { kind: 'kmsg', match: 'oops' }, { maxPerDay: 2 })];
    const state = createEngineState();
    const kmsg = (t: number): TriggerEvent => ({ kind: 'kmsg', t, line: 'oops' });
    const r = run(state, rules, [kmsg(0), kmsg(1000), kmsg(2000), kmsg(DAY_MS - 1), kmsg(DAY_MS), kmsg(DAY_MS + 1), kmsg(DAY_MS + 1000)]);
    expect(r.fires.map((f) => f.t)).toEqual([0, 1000, DAY_MS, DAY_MS + 1000]);
    expect(r.suppressed.map((s) => [s.t, s.why])).toEqual([[2000, 'maxPerDay'], [DAY_MS - 1, 'maxPerDay'], [DAY_MS + 1, 'maxPerDay']]);
  });

  it('cooldown is reported before maxPerDay when both apply', () => {
    const rules = [rule('r', { kind: 'kmsg', match: 'x' }, { maxPerDay: 1, cooldownMs: 10_000 })];
    const r = run(createEngineState(), rules, [0, 5_000, 20_000].map((t): TriggerEvent => ({ kind: 'kmsg', t, line: 'x' })));
    expect(r.suppressed.map((s) => s.why)).toEqual(['cooldown', 'maxPerDay']);
  });
});

describe('log and kmsg', () => {
  const rules = [
    rule('api-errors', { kind: 'log', path: '/var/log/app.log', match: 'ERROR (?<code>\\d+)(?: in (?<where>\\w+))?' }),
    rule('other-log', { kind: 'log', path: '/var/log/other.log', match: 'ERROR' }),
    rule('oom', { kind: 'kmsg', match: 'Out of memory: Killed process (?<pid>\\d+) \\((?<comm>[^)]*)\\)' }),
  ];

  it.each<[string, TriggerEvent, [string, Record<string, string>][]]>([
    ['named groups become labels; an unmatched optional group is left out', logLine('/var/log/app.log', 1, 'GET / ERROR 503'),
      [['api-errors', { code: '503' }]]],
    ['both groups', logLine('/var/log/app.log', 1, 'ERROR 500 in checkout'), [['api-errors', { code: '500', where: 'checkout' }]]],
    ['a line of another file does not match this rule', logLine('/var/log/other.log', 1, 'ERROR 500'), [['other-log', {}]]],
    ['an unwatched path matches nothing', logLine('/var/log/app.log.1', 1, 'ERROR 500'), []],
    ['no match', logLine('/var/log/app.log', 1, 'WARN 500'), []],
    ['kmsg', { kind: 'kmsg', t: 1, line: 'Out of memory: Killed process 4242 (mysqld) total-vm:1kB' }, [['oom', { pid: '4242', comm: 'mysqld' }]]],
    ['a kmsg line does not match log rules', { kind: 'kmsg', t: 1, line: 'ERROR 500' }, []],
  ])('%s', (_what, ev, expected) => {
    const r = step(createEngineState(), rules, ev);
    expect(r.fires.map((f) => [f.rule, f.labels])).toEqual(expected);
    for (const f of r.fires) expect(f.reason).toBe((ev as { line: string }).line);
  });

  it('the reason is the line, on one line and capped; labels are capped too', () => {
    const line = `ERROR 1 in \x1b[31mred\r\n${'x'.repeat(5000)}`;
    const r = step(createEngineState(), [rule('l', { kind: 'log', path: '/l', match: '(?<rest>x+)' })], logLine('/l', 1, line));
    const f = r.fires[0]!;
    expect(f.reason.length).toBeLessThanOrEqual(MAX_REASON_CHARS);
    expect(f.reason).not.toMatch(/[\x00-\x1f]/);
    expect(f.reason.startsWith('ERROR 1 in \\x1b[31mred\\x0d\\x0a')).toBe(true);
    expect(f.labels.rest!.length).toBeLessThanOrEqual(256);
  });

  it('a pattern that matched once keeps matching (no lastIndex carried between lines)', () => {
    const state = createEngineState();
    const r = run(state, rules.slice(0, 1), [1, 2, 3].map((t) => logLine('/var/log/app.log', t, 'ERROR 7')));
    expect(r.fires).toHaveLength(3);
  });

  it('a hand-made rule with a broken pattern never matches and does not throw', () => {
    const bad = [rule('bad', { kind: 'log', path: '/l', match: '(' }), rule('good', { kind: 'log', path: '/l', match: 'x' })];
    expect(step(createEngineState(), bad, logLine('/l', 1, 'x (')).fires.map((f) => f.rule)).toEqual(['good']);
  });
});

describe('signal', () => {
  it('fires the rules of that signal only', () => {
    const rules = [
      rule('u1', { kind: 'signal', signal: 'SIGUSR1' }),
      rule('u2', { kind: 'signal', signal: 'SIGUSR2' }),
      rule('u2b', { kind: 'signal', signal: 'SIGUSR2' }),
    ];
    const r = step(createEngineState(), rules, { kind: 'signal', t: 5, signal: 'SIGUSR2' });
    expect(r.fires).toEqual([
      { rule: 'u2', t: 5, reason: 'SIGUSR2 received', labels: { signal: 'SIGUSR2' } },
      { rule: 'u2b', t: 5, reason: 'SIGUSR2 received', labels: { signal: 'SIGUSR2' } },
    ]);
  });
});

describe('crash', () => {
  const ev = { exe: '/usr/sbin/nginx', signal: 11, signature: '3fa2b9c0d1e2f3a4', uid: 33 };
  it.each<[string, Partial<Crash>, Partial<typeof ev>, boolean]>([
    ['no fields: every crash', {}, {}, true],
    ['no fields: even without an exe', {}, { exe: null }, true],
    ['exe exact', { exe: '/usr/sbin/nginx' }, {}, true],
    ['exe */nginx: * spans directories', { exe: '*/nginx' }, { exe: '/opt/nginx/sbin/nginx' }, true],
    ['exe */nginx does not match nginx-debug', { exe: '*/nginx' }, { exe: '/usr/sbin/nginx-debug' }, false],
    ['exe /usr/* matches deep paths', { exe: '/usr/*' }, { exe: '/usr/lib/x/y' }, true],
    ['exe ? is one character', { exe: '/usr/bin/python3.??' }, { exe: '/usr/bin/python3.12' }, true],
    ['exe ? is exactly one', { exe: '/usr/bin/python3.?' }, { exe: '/usr/bin/python3.12' }, false],
    ['exe: regex characters are literal', { exe: '/opt/a+b/(x)' }, { exe: '/opt/a+b/(x)' }, true],
    ['exe: . is literal', { exe: '/bin/a.b' }, { exe: '/bin/axb' }, false],
    ['exe: a deleted binary still matches', { exe: '*/nginx' }, { exe: '/usr/sbin/nginx (deleted)' }, true],
    ['exe set but the crash has none', { exe: '*' }, { exe: null }, false],
    ['exe is anchored at both ends', { exe: '/usr/sbin' }, {}, false],
    ['signal in the list', { signals: [6, 11] }, {}, true],
    ['signal not in the list', { signals: [6] }, {}, false],
    ['signature prefix', { signature: '3fa2' }, {}, true],
    ['signature prefix, case-insensitive', { signature: '3FA2B' }, {}, true],
    ['signature mismatch', { signature: '3fa3' }, {}, false],
    ['signature wanted, crash has none', { signature: '3f' }, { signature: null }, false],
    ['uid equal', { uid: 33 }, {}, true],
    ['uid differs', { uid: 0 }, {}, false],
    ['all fields, all match', { exe: '*/nginx', signals: [11], signature: '3fa2', uid: 33 }, {}, true],
    ['all fields, one differs', { exe: '*/nginx', signals: [11], signature: '3fa2', uid: 0 }, {}, false],
  ])('%s', (_what, cond, over, expected) => {
    expect(crashMatches(crash(cond), { ...ev, ...over })).toBe(expected);
  });

  it('step fires matching crash rules with the crash in the labels', () => {
    const rules = [rule('nginx', crash({ exe: '*/nginx' })), rule('root', crash({ uid: 0 })), rule('any', crash())];
    const r = step(createEngineState(), rules, { kind: 'crash', t: 9, id: '20250101-abc', ...ev });
    expect(r.fires).toEqual([
      {
        rule: 'nginx', t: 9,
        reason: '/usr/sbin/nginx crashed with SIGSEGV (uid 33, event 20250101-abc)',
        labels: { id: '20250101-abc', signal: 'SIGSEGV', uid: '33', exe: '/usr/sbin/nginx', signature: '3fa2b9c0d1e2f3a4' },
      },
      expect.objectContaining({ rule: 'any' }),
    ]);
  });
});

describe('manual', () => {
  const rules = [
    rule('thr', thr()),
    rule('log', { kind: 'log', path: '/l', match: 'x' }),
    rule('crash', crash({ exe: '/nothing' })),
    rule('sig', { kind: 'signal', signal: 'SIGUSR1' }),
    rule('man', { kind: 'manual' }, { cooldownMs: 60_000 }),
  ];

  it.each(rules.map((r) => r.name))('fires rule %s whatever its source', (name) => {
    const r = step(createEngineState(), rules, { kind: 'manual', t: 7, rule: name });
    expect(r).toEqual({ fires: [{ rule: name, t: 7, reason: 'triggered by hand', labels: {} }], suppressed: [] });
  });

  it('an unknown name fires nothing (the caller reports it)', () => {
    expect(step(createEngineState(), rules, { kind: 'manual', t: 7, rule: 'nope' })).toEqual({ fires: [], suppressed: [] });
  });

  it('manual firings are subject to cooldown like any other', () => {
    const state = createEngineState();
    const r = run(state, rules, [0, 1000, 61_000].map((t): TriggerEvent => ({ kind: 'manual', t, rule: 'man' })));
    expect(r.fires.map((f) => f.t)).toEqual([0, 61_000]);
    expect(r.suppressed).toEqual([{ rule: 'man', t: 1000, why: 'cooldown' }]);
  });

  it('a manual firing starts the cooldown for the rule\'s own source too', () => {
    const state = createEngineState();
    const r = run(state, [rule('log', { kind: 'log', path: '/l', match: 'x' }, { cooldownMs: 10_000 })], [
      { kind: 'manual', t: 0, rule: 'log' },
      logLine('/l', 5_000, 'x'),
      logLine('/l', 10_000, 'x'),
    ]);
    expect(r.fires.map((f) => [f.t, f.reason])).toEqual([[0, 'triggered by hand'], [10_000, 'x']]);
    expect(r.suppressed.map((s) => s.t)).toEqual([5_000]);
  });
});

describe('rules reloaded', () => {
  it('state of a rule that disappeared is dropped on the next step; re-added it starts fresh', () => {
    const a = rule('a', { kind: 'kmsg', match: 'x' }, { cooldownMs: 60_000 });
    const b = rule('b', { kind: 'kmsg', match: 'x' }, { cooldownMs: 60_000 });
    const state = createEngineState();
    expect(step(state, [a, b], { kind: 'kmsg', t: 0, line: 'x' }).fires.map((f) => f.rule)).toEqual(['a', 'b']);
    expect([...state.rules.keys()]).toEqual(['a', 'b']);
    // reload without b: dropped at once, even by an event that concerns no rule
    expect(step(state, [a], { kind: 'signal', t: 1000, signal: 'SIGUSR1' })).toEqual({ fires: [], suppressed: [] });
    expect([...state.rules.keys()]).toEqual(['a']);
    // b comes back (a new object, as a reload makes): no cooldown left from before; a keeps its cooldown
    const b2 = { ...b };
    const r = step(state, [{ ...a }, b2], { kind: 'kmsg', t: 2000, line: 'x' });
    expect(r.fires.map((f) => f.rule)).toEqual(['b']);
    expect(r.suppressed).toEqual([{ rule: 'a', t: 2000, why: 'cooldown' }]);
  });

  it('a rule list changed in place is noticed too', () => {
    const rules = [rule('a', { kind: 'kmsg', match: 'x' }), rule('b', { kind: 'kmsg', match: 'x' })];
    const state = createEngineState();
    step(state, rules, { kind: 'kmsg', t: 0, line: 'x' });
    rules.pop();
    expect(step(state, rules, { kind: 'kmsg', t: 1, line: 'x' }).fires.map((f) => f.rule)).toEqual(['a']);
    expect([...state.rules.keys()]).toEqual(['a']);
  });

  it('an unchanged threshold keeps its episode across a reload; a changed one starts over', () => {
    const state = createEngineState();
    const r1 = [rule('r', thr({ value: 8, clear: 8 }))];
    expect(step(state, r1, value('r', 0, 9)).fires).toHaveLength(1);
    // same condition, new objects: still the same episode, nothing fires
    const r2 = [rule('r', thr({ value: 8, clear: 8 }))];
    expect(step(state, r2, value('r', 1000, 9)).fires).toHaveLength(0);
    // threshold changed: the episode is over, the new condition fires on its own
    const r3 = [rule('r', thr({ value: 8.5, clear: 8.5 }))];
    expect(step(state, r3, value('r', 2000, 9)).fires).toHaveLength(1);
  });

  it('the log pattern of a reloaded rule is the new one', () => {
    const state = createEngineState();
    expect(step(state, [rule('l', { kind: 'log', path: '/l', match: 'old' })], logLine('/l', 0, 'new')).fires).toHaveLength(0);
    expect(step(state, [rule('l', { kind: 'log', path: '/l', match: 'new' })], logLine('/l', 1, 'new')).fires).toHaveLength(1);
  });

  it('a lowered maxPerDay trims the history at the reload', () => {
    const state = createEngineState();
    const r10 = [rule('k', { kind: 'kmsg', match: 'x' }, { maxPerDay: 10 })];
    run(state, r10, [0, 1, 2, 3, 4].map((t): TriggerEvent => ({ kind: 'kmsg', t, line: 'x' })));
    expect(state.rules.get('k')!.firedAt).toHaveLength(5);
    const r2 = [rule('k', { kind: 'kmsg', match: 'x' }, { maxPerDay: 2 })];
    const r = step(state, r2, { kind: 'kmsg', t: 5, line: 'x' });
    expect(state.rules.get('k')!.firedAt).toHaveLength(2);
    expect(r.suppressed.map((s) => s.why)).toEqual(['maxPerDay']);
  });

  it('of two rules with one name, the first wins', () => {
    const rules = [rule('d', { kind: 'kmsg', match: 'one' }), rule('d', { kind: 'kmsg', match: 'two' })];
    const state = createEngineState();
    expect(step(state, rules, { kind: 'kmsg', t: 0, line: 'two' }).fires).toEqual([]);
    expect(step(state, rules, { kind: 'kmsg', t: 1, line: 'one' }).fires.map((f) => f.rule)).toEqual(['d']);
  });
});

describe('purity', () => {
  it('never reads the clock: time is event.t', () => {
    vi.spyOn(Date, 'now').mockImplementation(() => {
      throw new Error('the engine read the clock');
    });
    const rules = [rule('r', thr({ forMs: 1000 }), { cooldownMs: 5000 }), rule('l', { kind: 'log', path: '/l', match: 'x' })];
    const r = run(createEngineState(), rules, [value('r', 0, 9), value('r', 1000, 9), logLine('/l', 1, 'x'), { kind: 'manual', t: 2, rule: 'r' }]);
    expect(r.fires.map((f) => f.rule)).toEqual(['r', 'l']);
    expect(r.suppressed).toEqual([{ rule: 'r', t: 2, why: 'cooldown' }]);
  });

  it('the same events on a fresh state give the same result', () => {
    const rules = [rule('r', thr({ forMs: 2000, value: 5, clear: 3 }), { cooldownMs: 3000, maxPerDay: 3 })];
    const events = samples(Array.from({ length: 60 }, (_, i): [number, number] => [i, (i * 7) % 11]));
    expect(run(createEngineState(), rules, events)).toEqual(run(createEngineState(), rules, events));
  });
});

describe('formatDuration', () => {
  it.each<[number, string]>([
    [0, '0ms'], [250, '250ms'], [1000, '1s'], [1500, '1.5s'], [30_000, '30s'], [59_999, '1m'],
    [60_000, '1m'], [90_000, '1m30s'], [3_600_000, '1h'], [3_723_000, '1h2m3s'],
  ])('%d ms → %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});
