import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LineCounter, parseDocument, type YAMLMap } from 'yaml';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig, defaultsYaml, formatConfigIssue, loadConfig, type ConfigIssue } from '../../lib/config.js';
import { MAX_RULE_MAX_PER_DAY, parseRules } from '../../lib/rules-config.js';
import {
  DEFAULT_COLLECT_TIMEOUT_MS,
  DEFAULT_EXEC_TIMEOUT_MS,
  DEFAULT_RULE_COOLDOWN_MS,
  DEFAULT_RULE_MAX_PER_DAY,
  MAX_RULES,
  type Action,
  type Condition,
  type Rule,
} from '../../lib/rules.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-rules-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Through the real loader, from a real file. */
function load(text: string) {
  const path = join(dir, 'flightbox.yaml');
  writeFileSync(path, text);
  return { path, ...loadConfig(path, { explicit: true }) };
}

/** parseRules called directly on the `rules` node of a document. */
function parse(text: string, file: string | null = '/etc/flightbox/flightbox.yaml') {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  expect(doc.errors).toEqual([]);
  const node = (doc.contents as YAMLMap | null)?.get('rules', true);
  return parseRules(node, { file, lineOf: (o) => (o === undefined ? null : lines.linePos(o).line) });
}

/** One rule, `when` on line 3 and `do` on line 4. */
function oneRule(when: string, act = '[snapshot]', extra = ''): string {
  return `rules:\n  - name: r\n    when: ${when}\n    do: ${act}\n${extra}`;
}

const SAMPLE = [
  'rules:', // 1
  '  - name: api-errors', // 2
  "    when: { log: { path: /var/log/app.log, match: 'ERROR (?<code>\\d+)' } }", // 3
  '    do: [snapshot]', // 4
  '    cooldown: 30s', // 5
  '    maxPerDay: 50', // 6
  '  - name: mysqld-rss', // 7
  '    when: { threshold: { metric: process.rss, process: { name: mysqld }, above: 2GiB, for: 30s } }', // 8
  "    do: [snapshot, { collect: ['ps auxf', 'dmesg'] }, { mail: { to: [oncall@example.com] } }]", // 9
  '  - name: load', // 10
  '    when: { threshold: { metric: load1, above: 8, for: 1m } }', // 11
  '    do: [snapshot]', // 12
  '  - name: oom', // 13
  "    when: { kmsg: { match: 'Out of memory: Killed process (?<pid>\\d+)' } }", // 14
  '    do: [snapshot]', // 15
  '  - name: manual', // 16
  '    when: { signal: SIGUSR2 }', // 17
  '    do: [snapshot]', // 18
  '  - name: nginx-crash', // 19
  "    when: { crash: { exe: '*/nginx' } }", // 20
  '    do: [{ mail: { to: [web@example.com] } }]', // 21
  '',
].join('\n');

const SNAPSHOT: Action = { kind: 'snapshot', recorders: null };
const base = { cooldownMs: DEFAULT_RULE_COOLDOWN_MS, maxPerDay: DEFAULT_RULE_MAX_PER_DAY };
const SAMPLE_RULES: Rule[] = [
  {
    name: 'api-errors',
    when: { kind: 'log', path: '/var/log/app.log', match: 'ERROR (?<code>\\d+)' },
    do: [SNAPSHOT],
    cooldownMs: 30_000,
    maxPerDay: 50,
    line: 2,
  },
  {
    name: 'mysqld-rss',
    when: {
      kind: 'threshold', metric: 'process.rss', process: { name: 'mysqld' }, mount: null, op: 'above',
      value: 2 * 1024 ** 3, forMs: 30_000, clear: 2 * 1024 ** 3,
    },
    do: [
      SNAPSHOT,
      { kind: 'collect', commands: ['ps auxf', 'dmesg'], timeoutMs: DEFAULT_COLLECT_TIMEOUT_MS },
      { kind: 'mail', to: ['oncall@example.com'] },
    ],
    ...base,
    line: 7,
  },
  {
    name: 'load',
    when: { kind: 'threshold', metric: 'load1', process: null, mount: null, op: 'above', value: 8, forMs: 60_000, clear: 8 },
    do: [SNAPSHOT],
    ...base,
    line: 10,
  },
  {
    name: 'oom',
    when: { kind: 'kmsg', match: 'Out of memory: Killed process (?<pid>\\d+)' },
    do: [SNAPSHOT],
    ...base,
    line: 13,
  },
  { name: 'manual', when: { kind: 'signal', signal: 'SIGUSR2' }, do: [SNAPSHOT], ...base, line: 16 },
  {
    name: 'nginx-crash',
    when: { kind: 'crash', exe: '*/nginx', signals: null, signature: null, uid: null },
    do: [{ kind: 'mail', to: ['web@example.com'] }],
    ...base,
    line: 19,
  },
];

describe('rules: the documented sample', () => {
  it('loads through loadConfig into the expected Rule objects, with defaults and lines', () => {
    const r = load(SAMPLE);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.config.rules).toEqual(SAMPLE_RULES);
  });

  it('parses the same when parseRules is called directly on the node', () => {
    const r = parse(SAMPLE);
    expect(r.errors).toEqual([]);
    expect(r.rules).toEqual(SAMPLE_RULES);
  });

  it('sits alongside the other sections, which keep working', () => {
    const r = load(`core:\n  level: 7\n${SAMPLE}`);
    expect(r.errors).toEqual([]);
    expect(r.config.core.level).toBe(7);
    expect(r.config.rules.map((x) => [x.name, x.line])).toEqual(SAMPLE_RULES.map((x) => [x.name, (x.line ?? 0) + 2]));
  });
});

describe('rules: empty and absent', () => {
  it.each([
    ['no rules key', 'core:\n  level: 3\n'],
    ['rules: []', 'rules: []\n'],
    ['rules: alone', 'rules:\n'],
    ['rules: null', 'rules: null\n'],
  ])('%s gives no rules and no errors', (_what, text) => {
    const r = load(text);
    expect(r.errors).toEqual([]);
    expect(r.config.rules).toEqual([]);
  });

  it('defaultConfig has rules: [] and defaultsYaml keeps it (with a commented example)', () => {
    expect(defaultConfig().rules).toEqual([]);
    const y = defaultsYaml();
    expect(y).toMatch(/^rules: \[\]$/m);
    expect(y).toMatch(/^#\s+- name: mysqld-rss$/m);
    const r = load(y);
    expect(r.errors).toEqual([]);
    expect(r.config.rules).toEqual([]);
  });

  it('the commented example in defaultsYaml is itself a valid rules section', () => {
    const example = defaultsYaml()
      .split('\n')
      .filter((l) => /^# (rules:| {3}|\s{2}- )/.test(l))
      .map((l) => l.slice(2))
      .join('\n');
    const r = load(`${example}\n`);
    expect(r.errors).toEqual([]);
    expect(r.config.rules.map((x) => x.name)).toEqual(['mysqld-rss', 'api-errors', 'by-hand']);
  });

  it.each([
    ['a mapping', 'rules:\n  name: x\n', /expected a list of rules, got \{"name":"x"\}/],
    ['a string', 'rules: snapshot\n', /expected a list of rules, got "snapshot"/],
  ])('rules given %s is one error on the line of the value', (_what, text, message) => {
    const r = load(text);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: 'rules', line: text.includes('\n  ') ? 2 : 1, file: r.path });
    expect(r.errors[0]!.message).toMatch(message);
  });

  it('an unknown section lists rules among the known ones', () => {
    const r = load('rulez: []\n');
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/^unknown section \(known: .*\brules\b.*\)$/);
  });
});

describe('rules: defaults', () => {
  it('cooldown, maxPerDay, for, clear, mount and action timeouts take their defaults', () => {
    const r = parse([
      'rules:',
      '  - name: disk',
      '    when: { threshold: { metric: disk.free, below: 10% } }',
      "    do: [{ collect: ['df -h'] }, { exec: /usr/local/bin/alert }]",
      '',
    ].join('\n'));
    expect(r.errors).toEqual([]);
    expect(r.rules).toEqual([{
      name: 'disk',
      when: { kind: 'threshold', metric: 'disk.free', process: null, mount: '/', op: 'below', value: 10, forMs: 0, clear: 10 },
      do: [
        { kind: 'collect', commands: ['df -h'], timeoutMs: DEFAULT_COLLECT_TIMEOUT_MS },
        { kind: 'exec', argv: ['/usr/local/bin/alert'], timeoutMs: DEFAULT_EXEC_TIMEOUT_MS },
      ],
      cooldownMs: DEFAULT_RULE_COOLDOWN_MS,
      maxPerDay: DEFAULT_RULE_MAX_PER_DAY,
      line: 2,
    }]);
  });

  it.each<[string, number, number]>([
    ['cooldown: 0\n    maxPerDay: 1', 0, 1],
    ['cooldown: 1h30m\n    maxPerDay: 10000', 5_400_000, 10_000],
    ['cooldown: 250', 250, DEFAULT_RULE_MAX_PER_DAY],
  ])('%s', (extra, cooldownMs, maxPerDay) => {
    const r = parse(oneRule('manual', '[snapshot]', `    ${extra}\n`));
    expect(r.errors).toEqual([]);
    expect(r.rules[0]).toMatchObject({ cooldownMs, maxPerDay });
  });
});

describe('rules: accepted forms of when', () => {
  const thr = (over: Partial<Extract<Condition, { kind: 'threshold' }>>): Condition => ({
    kind: 'threshold', metric: 'cpu', process: null, mount: null, op: 'above', value: 90, forMs: 0, clear: 90, ...over,
  });
  it.each<[string, Condition]>([
    ['manual', { kind: 'manual' }],
    ['{ manual: {} }', { kind: 'manual' }],
    ['{ manual: }', { kind: 'manual' }],
    ['{ signal: SIGUSR1 }', { kind: 'signal', signal: 'SIGUSR1' }],
    ['{ signal: usr2 }', { kind: 'signal', signal: 'SIGUSR2' }],
    ['{ signal: 12 }', { kind: 'signal', signal: 'SIGUSR2' }],
    ['{ threshold: { metric: cpu, above: 90 } }', thr({})],
    ["{ threshold: { metric: cpu, above: '90%' } }", thr({})],
    ['{ threshold: { metric: cpu, above: 90%, clear: 70%, for: 2m } }', thr({ clear: 70, forMs: 120_000 })],
    ['{ threshold: { metric: memory.available, below: 5.5%, clear: 10 } }', thr({ metric: 'memory.available', op: 'below', value: 5.5, clear: 10 })],
    ['{ threshold: { metric: disk.free, below: 10, mount: /var } }', thr({ metric: 'disk.free', op: 'below', value: 10, clear: 10, mount: '/var' })],
    ['{ threshold: { metric: psi.io.full, above: 20 } }', thr({ metric: 'psi.io.full', value: 20, clear: 20 })],
    ['{ threshold: { metric: fds, above: 100000 } }', thr({ metric: 'fds', value: 100_000, clear: 100_000 })],
    ['{ threshold: { metric: process.cpu, process: { cmdline: "java .*kafka" }, above: 350% } }',
      thr({ metric: 'process.cpu', process: { cmdline: 'java .*kafka' }, value: 350, clear: 350 })],
    ['{ threshold: { metric: process.threads, process: { pidFile: /run/app.pid }, above: 500 } }',
      thr({ metric: 'process.threads', process: { pidFile: '/run/app.pid' }, value: 500, clear: 500 })],
    ['{ threshold: { metric: process.fds, process: { cgroup: /system.slice/app.service }, above: 1000 } }',
      thr({ metric: 'process.fds', process: { cgroup: '/system.slice/app.service' }, value: 1000, clear: 1000 })],
    ['{ threshold: { metric: process.rss, process: { name: mysqld }, above: 2GiB, clear: 1.5GiB } }',
      thr({ metric: 'process.rss', process: { name: 'mysqld' }, value: 2 * 1024 ** 3, clear: 1.5 * 1024 ** 3 })],
    ['{ threshold: { metric: process.rss, process: { name: mysqld }, above: 1000000 } }',
      thr({ metric: 'process.rss', process: { name: 'mysqld' }, value: 1e6, clear: 1e6 })],
    ['{ log: { path: /var/log/syslog, match: "segfault at [0-9a-f]+" } }', { kind: 'log', path: '/var/log/syslog', match: 'segfault at [0-9a-f]+' }],
    ["{ kmsg: { match: 'hung_task' } }", { kind: 'kmsg', match: 'hung_task' }],
    ['{ crash: {} }', { kind: 'crash', exe: null, signals: null, signature: null, uid: null }],
    ['{ crash: }', { kind: 'crash', exe: null, signals: null, signature: null, uid: null }],
    ['{ crash: { exe: /usr/sbin/nginx, signal: SIGSEGV, signature: 3FA2, uid: 33 } }',
      { kind: 'crash', exe: '/usr/sbin/nginx', signals: [11], signature: '3fa2', uid: 33 }],
    ['{ crash: { signal: [segv, SIGABRT, 7, SIGSEGV] } }', { kind: 'crash', exe: null, signals: [11, 6, 7], signature: null, uid: null }],
  ])('when: %s', (when, expected) => {
    const r = parse(oneRule(when));
    expect(r.errors).toEqual([]);
    expect(r.rules[0]!.when).toEqual(expected);
  });
});

describe('rules: accepted forms of do', () => {
  it.each<[string, Action[]]>([
    ['[snapshot]', [{ kind: 'snapshot', recorders: null }]],
    ['[{ snapshot: {} }]', [{ kind: 'snapshot', recorders: null }]],
    ['[{ snapshot: { recorders: [metrics, ftrace, ftrace] } }]', [{ kind: 'snapshot', recorders: ['metrics', 'ftrace'] }]],
    ["[{ collect: ['ps auxf', ' dmesg -T '] }]", [{ kind: 'collect', commands: ['ps auxf', 'dmesg -T'], timeoutMs: DEFAULT_COLLECT_TIMEOUT_MS }]],
    ['[{ collect: { commands: [uptime], timeout: 3s } }]', [{ kind: 'collect', commands: ['uptime'], timeoutMs: 3000 }]],
    ["[{ exec: '/usr/bin/logger -t flightbox fired' }]", [{ kind: 'exec', argv: ['/usr/bin/logger', '-t', 'flightbox', 'fired'], timeoutMs: DEFAULT_EXEC_TIMEOUT_MS }]],
    ["[{ exec: [/opt/x/notify, 'two words', 3] }]", [{ kind: 'exec', argv: ['/opt/x/notify', 'two words', '3'], timeoutMs: DEFAULT_EXEC_TIMEOUT_MS }]],
    ['[{ exec: { argv: [/bin/true], timeout: 1m } }]', [{ kind: 'exec', argv: ['/bin/true'], timeoutMs: 60_000 }]],
    ['[{ mail: { to: [a@example.com, root@localhost, a@example.com] } }]', [{ kind: 'mail', to: ['a@example.com', 'root@localhost'] }]],
    ['[{ start: ftrace }, { stop: lttng }]', [{ kind: 'start-recorder', recorder: 'ftrace' }, { kind: 'stop-recorder', recorder: 'lttng' }]],
  ])('do: %s', (act, expected) => {
    const r = parse(oneRule('manual', act));
    expect(r.errors).toEqual([]);
    expect(r.rules[0]!.do).toEqual(expected);
  });
});

describe('rules: each mistake, its key, line and message', () => {
  // [when, do, expected key (after "rules[0] (r)."), line, message]
  type Bad = [string, string, string, number, RegExp];
  const cases: Bad[] = [
    // when
    ['{}', '[snapshot]', 'when', 3, /expected one of threshold, log, kmsg, signal, crash, manual, got an empty mapping/],
    ['sometimes', '[snapshot]', 'when', 3, /expected manual or a mapping with one of threshold, .*got "sometimes"/],
    ['{ treshold: { metric: cpu, above: 9 } }', '[snapshot]', 'when.treshold', 3, /^unknown option \(known: threshold, log, kmsg, signal, crash, manual\)$/],
    ["{ log: { path: /a, match: x }, kmsg: { match: 'y' } }", '[snapshot]', 'when', 3, /one source, got log and kmsg/],
    ['{ manual: yes }', '[snapshot]', 'when.manual', 3, /manual takes no options/],
    // threshold
    ['{ threshold: { metric: load, above: 8 } }', '[snapshot]', 'when.threshold.metric', 3, /expected one of cpu, load1, .*process\.fds, got "load"/],
    ['{ threshold: { above: 8 } }', '[snapshot]', 'when.threshold.metric', 3, /^required: one of cpu/],
    ['{ threshold: { metric: load1, above: 8, below: 2 } }', '[snapshot]', 'when.threshold', 3, /one of above and below, got both/],
    ['{ threshold: { metric: load1 } }', '[snapshot]', 'when.threshold', 3, /required: above or below/],
    ['{ threshold: { metric: load1, above: 80% } }', '[snapshot]', 'when.threshold.above', 3, /expected a number, got "80%" \(load1 is not a percentage\)/],
    ['{ threshold: { metric: cpu, above: 9O% } }', '[snapshot]', 'when.threshold.above', 3, /expected a percentage from 0 to 100 such as 80 or 80%, got "9O%"/],
    ['{ threshold: { metric: cpu, above: 120 } }', '[snapshot]', 'when.threshold.above', 3, /from 0 to 100.*got 120/],
    ['{ threshold: { metric: process.rss, process: { name: x }, above: lots } }', '[snapshot]', 'when.threshold.above', 3, /expected a size such as 2GiB or 500MB, got "lots"/],
    ['{ threshold: { metric: process.rss, above: 1GiB } }', '[snapshot]', 'when.threshold.process', 3, /required for process\.rss: a mapping with one of name, cmdline, pidFile, cgroup/],
    ['{ threshold: { metric: cpu, process: { name: x }, above: 50 } }', '[snapshot]', 'when.threshold.process', 3, /cpu is a system-wide metric: process applies only to process\.rss/],
    ['{ threshold: { metric: process.cpu, process: { name: a, cgroup: /b }, above: 50 } }', '[snapshot]', 'when.threshold.process', 3, /one way of choosing processes, got name and cgroup/],
    ['{ threshold: { metric: process.cpu, process: {}, above: 50 } }', '[snapshot]', 'when.threshold.process', 3, /expected one of name, cmdline, pidFile, cgroup/],
    ['{ threshold: { metric: process.cpu, process: { comm: x }, above: 50 } }', '[snapshot]', 'when.threshold.process.comm', 3, /unknown option \(known: name, cmdline, pidFile, cgroup\)/],
    ["{ threshold: { metric: process.cpu, process: { cmdline: 'java (' }, above: 50 } }", '[snapshot]', 'when.threshold.process.cmdline', 3, /not a valid JavaScript regular expression \(Unterminated group\)/],
    ['{ threshold: { metric: process.cpu, process: { pidFile: run/x.pid }, above: 50 } }', '[snapshot]', 'when.threshold.process.pidFile', 3, /expected an absolute path, got "run\/x.pid"/],
    ['{ threshold: { metric: process.cpu, process: { cgroup: system.slice }, above: 50 } }', '[snapshot]', 'when.threshold.process.cgroup', 3, /cgroup path starting with '\/'/],
    ['{ threshold: { metric: process.cpu, process: { name: mysqld-long-name }, above: 50 } }', '[snapshot]', 'when.threshold.process.name', 3, /only 15 characters .*use cmdline/],
    ['{ threshold: { metric: cpu, above: 90, clear: 95 } }', '[snapshot]', 'when.threshold.clear', 3, /with above 90%, clear must be at or below it .*got 95%/],
    ['{ threshold: { metric: process.rss, process: { name: m }, below: 1GiB, clear: 512MiB } }', '[snapshot]', 'when.threshold.clear', 3, /with below 1 GiB, clear must be at or above it .*got 512 MiB/],
    ['{ threshold: { metric: cpu, above: 90, for: soon } }', '[snapshot]', 'when.threshold.for', 3, /expected a duration such as 30s or 5m, got "soon"/],
    ['{ threshold: { metric: cpu, above: 90, mount: /var } }', '[snapshot]', 'when.threshold.mount', 3, /mount applies only to disk\.free, not to cpu/],
    ['{ threshold: { metric: disk.free, below: 5, mount: var } }', '[snapshot]', 'when.threshold.mount', 3, /expected an absolute path, got "var"/],
    ['{ threshold: { metric: cpu, above: 90, value: 3 } }', '[snapshot]', 'when.threshold.value', 3, /unknown option \(known: metric, process, above, below, for, clear, mount\)/],
    // log, kmsg
    ['{ log: { path: app.log, match: x } }', '[snapshot]', 'when.log.path', 3, /expected an absolute path, got "app.log"/],
    ['{ log: { match: x } }', '[snapshot]', 'when.log.path', 3, /required: the absolute path/],
    ["{ log: { path: /a, match: '(?<1x>a)' } }", '[snapshot]', 'when.log.match', 3, /not a valid JavaScript regular expression \(Invalid capture group name\)/],
    [`{ log: { path: /a, match: '${'a'.repeat(1001)}' } }`, '[snapshot]', 'when.log.match', 3, /at most 1000 characters, got 1001/],
    ['{ kmsg: { match: "" } }', '[snapshot]', 'when.kmsg.match', 3, /expected a regular expression, got ""/],
    ['{ kmsg: { regex: x } }', '[snapshot]', 'when.kmsg.regex', 3, /unknown option \(known: match\)/],
    // signal
    ['{ signal: SIGHUP }', '[snapshot]', 'when.signal', 3, /SIGHUP cannot trigger a rule: only SIGUSR1 and SIGUSR2 can, the other signals belong to the daemon/],
    ['{ signal: SIGTERM }', '[snapshot]', 'when.signal', 3, /SIGTERM cannot trigger a rule/],
    ['{ signal: SIGFOO }', '[snapshot]', 'when.signal', 3, /expected SIGUSR1 or SIGUSR2, got "SIGFOO"/],
    // crash
    ['{ crash: { exe: nginx } }', '[snapshot]', 'when.crash.exe', 3, /full path, so "nginx" never matches: start it with \/ or \* \(e\.g\. \*\/nginx\)/],
    ['{ crash: { signal: SIGWHAT } }', '[snapshot]', 'when.crash.signal', 3, /expected a signal name or number such as SIGSEGV or 11, got "SIGWHAT"/],
    ['{ crash: { signal: [] } }', '[snapshot]', 'when.crash.signal', 3, /got an empty list/],
    ['{ crash: { signature: xyz } }', '[snapshot]', 'when.crash.signature', 3, /1 to 16 hex digits/],
    ['{ crash: { signature: 1234 } }', '[snapshot]', 'when.crash.signature', 3, /in quotes.*got 1234/],
    ['{ crash: { uid: -1 } }', '[snapshot]', 'when.crash.uid', 3, /expected a numeric uid from 0 to 4294967294, got -1/],
    ['{ crash: { uid: www-data } }', '[snapshot]', 'when.crash.uid', 3, /got "www-data"/],
    ['{ crash: { pid: 1 } }', '[snapshot]', 'when.crash.pid', 3, /unknown option \(known: exe, signal, signature, uid\)/],
    // do
    ['manual', '[]', 'do', 4, /expected a non-empty list of actions such as \[snapshot\], got \[\]/],
    ['manual', 'snapshot', 'do', 4, /non-empty list of actions.*got "snapshot"/],
    ['manual', '[snapshots]', 'do[0]', 4, /unknown action "snapshots" \(known: snapshot, collect, exec, mail, start, stop\)/],
    ['manual', '[collect]', 'do[0]', 4, /collect needs an argument, e\.g\. \{ collect: \['ps auxf', dmesg\] \}/],
    ['manual', '[{ snapshot: { recorders: [perf] } }]', 'do[0].snapshot.recorders[0]', 4, /unknown recorder "perf" \(known: metrics, ftrace, lttng\)/],
    ['manual', '[{ snapshot: { recorders: [] } }]', 'do[0].snapshot.recorders', 4, /non-empty list of recorder names/],
    ['manual', '[{ collect: [] }]', 'do[0].collect', 4, /non-empty list of commands/],
    ["manual", "[{ collect: ['dmesg | tail'] }]", 'do[0].collect[0]', 4, /run without a shell, so "\|" would reach the program as a literal argument/],
    ["manual", "[{ collect: ['journalctl -n 50 > /tmp/x'] }]", 'do[0].collect[0]', 4, /">" would reach the program/],
    ["manual", `[{ collect: ['grep "a b" /var/log/x'] }]`, 'do[0].collect[0]', 4, /"\\"a" would reach the program/],
    ["manual", "[{ collect: ['echo $(id)'] }]", 'do[0].collect[0]', 4, /without a shell/],
    ["manual", "[{ collect: ['  '] }]", 'do[0].collect[0]', 4, /a command must not be empty/],
    ['manual', `[{ collect: ['${'x'.repeat(4097)}'] }]`, 'do[0].collect[0]', 4, /at most 4096 characters, got 4097/],
    ['manual', '[{ collect: { commands: [uptime], timeout: 0 } }]', 'do[0].collect.timeout', 4, /expected a duration .*\(more than 0\), got 0/],
    ['manual', '[{ collect: { timeout: 5s } }]', 'do[0].collect.commands', 4, /required: a list of commands/],
    ['manual', '[{ exec: logger hi }]', 'do[0].exec', 4, /the program must be an absolute path \(no PATH lookup\), got "logger"/],
    ['manual', '[{ exec: [] }]', 'do[0].exec', 4, /expected '\/path\/to\/program arg \.\.\.' or a list/],
    ['manual', '[{ exec: { argv: [bin/x] } }]', 'do[0].exec.argv', 4, /absolute path .*got "bin\/x"/],
    ['manual', '[{ exec: { argv: [/bin/x], timeout: never } }]', 'do[0].exec.timeout', 4, /expected a duration/],
    ["manual", "[{ exec: '/bin/sh -c \"x; y\"' }]", 'do[0].exec', 4, /without a shell/],
    ['manual', '[{ mail: { to: [not-an-address] } }]', 'do[0].mail.to[0]', 4, /"not-an-address" is not a mail address/],
    ['manual', '[{ mail: { to: ["a@b.com\\r\\nBcc: x@evil.com"] } }]', 'do[0].mail.to[0]', 4, /is not a mail address/],
    ['manual', '[{ mail: { to: oncall@example.com } }]', 'do[0].mail.to', 4, /non-empty list of mail addresses, got "oncall@example.com"/],
    ['manual', '[{ mail: { cc: [a@b.c] } }]', 'do[0].mail.cc', 4, /unknown option \(known: to\)/],
    ['manual', '[{ start: perf }]', 'do[0].start', 4, /expected a recorder, one of metrics, ftrace, lttng, got "perf"/],
    ['manual', '[{ snapshot: {}, mail: { to: [a@b.c] } }]', 'do[0]', 4, /one action per list item, got snapshot and mail/],
    ['manual', '[{ page: me }]', 'do[0].page', 4, /unknown action \(known: snapshot/],
  ];
  it.each(cases)('when %s do %s → %s', (when, act, key, line, message) => {
    const r = parse(oneRule(when, act));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: `rules[0] (r).${key}`, line, file: '/etc/flightbox/flightbox.yaml' });
    expect(r.errors[0]!.message).toMatch(message);
    expect(r.rules).toEqual([]); // a rule with a mistake is left out
  });

  it.each<[string, string, RegExp]>([
    ['cooldown: forever', 'cooldown', /expected a duration such as 30s or 5m, got "forever"/],
    ['cooldown: -1s', 'cooldown', /expected a duration/],
    ['maxPerDay: 0', 'maxPerDay', /expected a whole number from 1 to 10000, got 0/],
    ['maxPerDay: 2.5', 'maxPerDay', /got 2.5/],
    [`maxPerDay: ${MAX_RULE_MAX_PER_DAY + 1}`, 'maxPerDay', /got 10001/],
    ['enabled: true', 'enabled', /^unknown option \(known: name, when, do, cooldown, maxPerDay\)$/],
  ])('%s', (extra, key, message) => {
    const r = parse(oneRule('manual', '[snapshot]', `    ${extra}\n`));
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: `rules[0] (r).${key}`, line: 5 });
    expect(r.errors[0]!.message).toMatch(message);
  });
});

describe('rules: names', () => {
  it.each([
    ['-dash', /expected a name of letters, digits, '\.', '_', '-', starting with a letter or digit, at most 64 characters, got "-dash"/],
    ['has space', /got "has space"/],
    ['a'.repeat(65), /at most 64 characters/],
    ['12', /got 12/],
  ])('name %j is refused (and the key has no name in it)', (name, message) => {
    const r = parse(`rules:\n  - name: ${name}\n    when: manual\n    do: [snapshot]\n`);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: 'rules[0].name', line: 2 });
    expect(r.errors[0]!.message).toMatch(message);
  });

  it('a missing name, when and do are three errors on the rule line', () => {
    const r = parse('rules:\n  - cooldown: 1m\n');
    expect(r.errors.map((e) => [e.key, e.line])).toEqual([
      ['rules[0].name', 2],
      ['rules[0].when', 2],
      ['rules[0].do', 2],
    ]);
    expect(r.errors[1]!.message).toBe('required: one of threshold, log, kmsg, signal, crash, manual');
    expect(r.errors[2]!.message).toBe('required: a list of actions such as [snapshot]');
  });

  it.each([
    ['a misspelt when', 'rules:\n  - name: r\n    wehn: manual\n    do: [snapshot]\n', 'rules[0] (r).wehn', 3],
    ['a misspelt name', 'rules:\n  - nmae: r\n    when: manual\n    do: [snapshot]\n', 'rules[0].nmae', 2],
    ['a misspelt mail.to', oneRule('manual', '[{ mail: { too: [a@b.c] } }]'), 'rules[0] (r).do[0].mail.too', 4],
    ['a misspelt selector', oneRule('{ threshold: { metric: process.rss, process: { nmae: x }, above: 1GiB } }'), 'rules[0] (r).when.threshold.process.nmae', 3],
  ])('%s is one message (unknown option), not also "required"', (_what, text, key, line) => {
    const r = parse(text);
    expect(r.errors).toEqual([expect.objectContaining({ key, line, message: expect.stringMatching(/^unknown option \(known: /) })]);
    expect(r.rules).toEqual([]);
  });

  it('a duplicate name is an error on the second, naming the line of the first', () => {
    const r = parse([
      'rules:', // 1
      '  - name: a', // 2
      '    when: manual', // 3
      '    do: [snapshot]', // 4
      '  - name: b', // 5
      '    when: manual', // 6
      '    do: [snapshot]', // 7
      '  - name: a', // 8
      '    when: { signal: SIGUSR1 }', // 9
      '    do: [snapshot]', // 10
      '',
    ].join('\n'));
    expect(r.errors).toEqual([{
      key: 'rules[2] (a).name', line: 8, file: '/etc/flightbox/flightbox.yaml',
      message: 'duplicate rule name "a" (first defined at line 2)',
    }]);
    expect(r.rules.map((x) => x.name)).toEqual(['a', 'b']);
  });

  it('a list item that is not a mapping is an error on its line', () => {
    const r = parse('rules:\n  - snapshot\n  - name: ok\n    when: manual\n    do: [snapshot]\n');
    expect(r.errors).toEqual([expect.objectContaining({ key: 'rules[0]', line: 2, message: expect.stringMatching(/expected a rule \(a mapping with name, when and do\), got "snapshot"/) })]);
    expect(r.rules.map((x) => x.name)).toEqual(['ok']);
  });

  it(`at most ${MAX_RULES} rules`, () => {
    const many = (n: number) => `rules:\n${Array.from({ length: n }, (_, i) => `  - { name: r${i}, when: manual, do: [snapshot] }`).join('\n')}\n`;
    const ok = parse(many(MAX_RULES));
    expect(ok.errors).toEqual([]);
    expect(ok.rules).toHaveLength(MAX_RULES);
    const tooMany = parse(many(MAX_RULES + 1));
    expect(tooMany.errors).toEqual([expect.objectContaining({
      key: 'rules', line: MAX_RULES + 2, message: `at most ${MAX_RULES} rules are allowed, got ${MAX_RULES + 1}`,
    })]);
  });
});

describe('rules: a broken file, every mistake its own message', () => {
  const BROKEN = [
    'store:', // 1
    '  root: /srv/fb', // 2
    'rules:', // 3
    '  - name: api-errors', // 4
    '    when:', // 5
    '      log:', // 6
    '        path: var/log/app.log', // 7
    "        match: 'ERROR (?<code>\\d+'", // 8
    '    do: [snapshot, snapshots]', // 9
    '    cooldown: 30 seconds', // 10
    '  - name: mysqld-rss', // 11
    '    when:', // 12
    '      threshold:', // 13
    '        metric: process.rss', // 14
    '        above: 2GB of RAM', // 15
    '        for: 30s', // 16
    '    do:', // 17
    '      - snapshot', // 18
    "      - collect: ['ps auxf | head']", // 19
    '      - mail: { to: [oncall at example.com] }', // 20
    '    maxPerDay: 0', // 21
    '  - name: load', // 22
    '    when: { threshold: { metric: load1, above: 8, for: 1m, clear: 9 } }', // 23
    '    do: [snapshot]', // 24
    '    colldown: 1m', // 25
    '  - name: good', // 26
    '    when: { signal: SIGUSR2 }', // 27
    '    do: [snapshot]', // 28
    '  - name: usr1', // 29
    '    when: { signal: SIGHUP }', // 30
    '    do: [{ exec: notify-send boom }]', // 31
    '  - name: load', // 32
    "    when: { crash: { exe: '*/nginx', uid: root } }", // 33
    '    do: [{ start: perf }]', // 34
    'core:', // 35
    '  level: 99', // 36
    '',
  ].join('\n');

  it('loadConfig reports each with file, line and key, and keeps the good rule', () => {
    const r = load(BROKEN);
    const got = r.errors.map((e) => [e.key, e.line]);
    expect(got).toEqual([
      ['rules[0] (api-errors).when.log.path', 7],
      ['rules[0] (api-errors).when.log.match', 8],
      ['rules[0] (api-errors).do[1]', 9],
      ['rules[0] (api-errors).cooldown', 10],
      ['rules[1] (mysqld-rss).when.threshold.process', 14], // a missing key: the mapping's first line
      ['rules[1] (mysqld-rss).when.threshold.above', 15],
      ['rules[1] (mysqld-rss).do[1].collect[0]', 19],
      ['rules[1] (mysqld-rss).do[2].mail.to[0]', 20],
      ['rules[1] (mysqld-rss).maxPerDay', 21],
      ['rules[2] (load).colldown', 25],
      ['rules[2] (load).when.threshold.clear', 23],
      ['rules[4] (usr1).when.signal', 30],
      ['rules[4] (usr1).do[0].exec', 31],
      ['rules[5] (load).name', 32],
      ['rules[5] (load).when.crash.uid', 33],
      ['rules[5] (load).do[0].start', 34],
      ['core.level', 36],
    ]);
    for (const e of r.errors) expect(e.file).toBe(r.path);
    const text = r.errors.map(formatConfigIssue);
    expect(text[0]).toBe(`rules[0] (api-errors).when.log.path: expected an absolute path, got "var/log/app.log" (${r.path}:7)`);
    expect(text[1]).toMatch(/not a valid JavaScript regular expression/);
    expect(text[2]).toMatch(/unknown action "snapshots"/);
    expect(text[4]).toMatch(/required for process\.rss/);
    expect(text[5]).toMatch(/expected a size such as 2GiB or 500MB, got "2GB of RAM"/);
    expect(text[6]).toMatch(/without a shell/);
    expect(text[7]).toMatch(/"oncall at example.com" is not a mail address/);
    expect(text[9]).toMatch(/unknown option \(known: name, when, do, cooldown, maxPerDay\)/);
    expect(text[10]).toMatch(/with above 8, clear must be at or below it/);
    expect(text[11]).toMatch(/SIGHUP cannot trigger a rule/);
    expect(text[12]).toMatch(/absolute path \(no PATH lookup\), got "notify-send"/);
    expect(text[13]).toBe(`rules[5] (load).name: duplicate rule name "load" (first defined at line 22) (${r.path}:32)`);
    expect(text[14]).toMatch(/expected a numeric uid/);
    expect(text[15]).toMatch(/expected a recorder/);
    // only the rule without mistakes is kept; the rest of the file still applies
    expect(r.config.rules.map((x) => x.name)).toEqual(['good']);
    expect(r.config.store.root).toBe('/srv/fb');
  });

  it('parseRules called directly gives the same rule errors, and a null file', () => {
    const viaLoader = load(BROKEN).errors.filter((e) => e.key.startsWith('rules')).map((e) => [e.key, e.line, e.message]);
    const direct = parse(BROKEN, null);
    expect(direct.errors.map((e) => [e.key, e.line, e.message])).toEqual(viaLoader);
    for (const e of direct.errors) expect(e.file).toBeNull();
  });
});

describe('rules: YAML details', () => {
  it('an alias is refused once, on its line, instead of a confusing type error', () => {
    const r = parse([
      'x-actions: &acts [snapshot]', // 1
      'rules:', // 2
      '  - name: a', // 3
      '    when: manual', // 4
      '    do: *acts', // 5
      '',
    ].join('\n'));
    expect(r.errors).toEqual([expect.objectContaining({
      key: 'rules[0] (a).do', line: 5, message: 'YAML aliases (*acts) are not supported in rules: write the value out',
    })]);
  });

  it('block style works as well as flow style, with lines of the inner keys', () => {
    const r = parse([
      'rules:', // 1
      '  - name: blocky', // 2
      '    when:', // 3
      '      threshold:', // 4
      '        metric: process.rss', // 5
      '        process:', // 6
      '          pidFile: /run/mysqld/mysqld.pid', // 7
      '        above: 3GiB', // 8
      '        clear: 2.5GiB', // 9
      '        for: 1m', // 10
      '    do:', // 11
      '      - snapshot:', // 12
      '          recorders: [metrics]', // 13
      '      - exec:', // 14
      '          argv: [/usr/local/bin/page, --team, db]', // 15
      '          timeout: 5s', // 16
      '',
    ].join('\n'));
    expect(r.errors).toEqual([]);
    expect(r.rules[0]).toEqual({
      name: 'blocky',
      when: {
        kind: 'threshold', metric: 'process.rss', process: { pidFile: '/run/mysqld/mysqld.pid' }, mount: null, op: 'above',
        value: 3 * 1024 ** 3, forMs: 60_000, clear: 2.5 * 1024 ** 3,
      },
      do: [
        { kind: 'snapshot', recorders: ['metrics'] },
        { kind: 'exec', argv: ['/usr/local/bin/page', '--team', 'db'], timeoutMs: 5000 },
      ],
      cooldownMs: DEFAULT_RULE_COOLDOWN_MS,
      maxPerDay: DEFAULT_RULE_MAX_PER_DAY,
      line: 2,
    });
    const bad = parse(oneRule('\n      threshold:\n        metric: cpu\n        above: 101'));
    expect(bad.errors.map((e: ConfigIssue) => [e.key, e.line])).toEqual([['rules[0] (r).when.threshold.above', 6]]);
  });
});
