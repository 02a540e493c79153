import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_CONFIG_PATH,
  defaultConfig,
  defaultsYaml,
  formatConfigIssue,
  loadConfig,
  resolveConfigPath,
  type Config,
  type ConfigIssue,
} from '../../lib/config.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-config-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function writeConfig(text: string, name = 'flightbox.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function load(text: string) {
  const path = writeConfig(text);
  return { path, ...loadConfig(path, { explicit: true }) };
}

/** The config with `source` dropped, for comparing against defaults. */
function values(c: Config): Omit<Config, 'source'> {
  const { source: _source, ...rest } = c;
  return rest;
}

/** `section.key: yaml` alone in a file: exactly one issue naming file, line 2 and key; the broken key keeps its default. */
function expectRejected(section: string, key: string, yaml: string, message: RegExp): void {
  const r = load(`${section}:\n  ${key}: ${yaml}\n`);
  expect(r.errors).toHaveLength(1);
  const e = r.errors[0]!;
  expect(e.key).toBe(`${section}.${key}`);
  expect(e.message).toMatch(message);
  expect(e.file).toBe(r.path);
  expect(e.line).toBe(2);
  expect(values(r.config)).toEqual(values(defaultConfig()));
}

describe('loadConfig: missing files', () => {
  it('a missing default-path file yields the embedded defaults and no issues', () => {
    const r = loadConfig(join(dir, 'does-not-exist.yaml'), { explicit: false });
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.config).toEqual(defaultConfig());
    expect(r.config.source).toBeNull();
  });

  it('a missing explicit file is an error naming the file', () => {
    const p = join(dir, 'nope.yaml');
    const r = loadConfig(p, { explicit: true });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: '', file: p, line: null });
    expect(r.errors[0]!.message).toMatch(/^cannot read config: .*ENOENT/);
    expect(r.config).toEqual(defaultConfig());
  });

  it('a directory where the file should be is an error even for the default path', () => {
    const p = join(dir, 'adir');
    mkdirSync(p);
    const r = loadConfig(p, { explicit: false });
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toMatch(/cannot read config/);
    expect(r.errors[0]!.file).toBe(p);
  });
});

describe('loadConfig: valid files', () => {
  it('an empty file gives the defaults, with source set', () => {
    const r = load('');
    expect(r.errors).toEqual([]);
    expect(values(r.config)).toEqual(values(defaultConfig()));
    expect(r.config.source).toBe(r.path);
  });

  it('a file with only comments gives the defaults', () => {
    const r = load('# nothing here\n# at all\n');
    expect(r.errors).toEqual([]);
    expect(values(r.config)).toEqual(values(defaultConfig()));
  });

  it('every key can be set', () => {
    const r = load(
      [
        'store:',
        '  root: /srv/flightbox',
        '  busyTimeout: 2s',
        'core:',
        '  maxSize: 500MB',
        '  compress: gzip',
        '  level: 9',
        '  honourRlimit: false',
        '  maxPerExePerHour: 3',
        '  maxConcurrent: 4',
        '  pipeBuffer: 4MiB',
        'capture:',
        '  environ: false',
        '  userAccess: false',
        'backtrace:',
        '  tool: gdb',
        '  timeout: 1m30s',
        '  source: true',
        'install:',
        '  launcher: /usr/local/lib/flightbox/core-handler',
        '  sysctlDropIn: null',
        'daemon:',
        '  socket: /run/flightbox.sock',
        '  freezeTimeout: 250ms',
        '  snapshotDeadline: 5s',
        'recorders:',
        '  metrics:',
        '    enabled: false',
        '    interval: 2s',
        '    window: 5m',
        '    topProcesses: 10',
        '  ftrace:',
        '    enabled: true',
        '    bufferSize: 8MiB',
        '    events: [sched/sched_switch, irq]',
        '    instance: fb-test',
        '    freezeOnFatalSignal: false',
        '    maxEventRate: 250000',
        '  lttng:',
        '    enabled: true',
        '    kernel: [sched_switch]',
        '    userspace: ["myapp:*", lttng_ust_cyg_profile]',
        '    subbufSize: 1MiB',
        '    numSubbuf: 4',
        '    session: fbsess',
        '',
      ].join('\n'),
    );
    expect(r.errors).toEqual([]);
    const d = defaultConfig();
    expect(r.config).toEqual({
      ...d,
      source: r.path,
      store: { root: '/srv/flightbox', busyTimeoutMs: 2000 },
      core: { maxSizeBytes: 500_000_000, compress: 'gzip', level: 9, honourRlimit: false, maxPerExePerHour: 3, maxConcurrent: 4, pipeBufferBytes: 4 * 1024 ** 2 },
      capture: { environ: false, userAccess: false },
      backtrace: { tool: 'gdb', timeoutMs: 90_000, source: true },
      install: { launcher: '/usr/local/lib/flightbox/core-handler', sysctlDropIn: null },
      daemon: { socket: '/run/flightbox.sock', snapshotDeadlineMs: 5000 },
      recorders: {
        metrics: { enabled: false, intervalMs: 2000, windowMs: 300_000, topProcesses: 10 },
        ftrace: { enabled: true, bufferSizeBytes: 8 * 1024 ** 2, events: ['sched/sched_switch', 'irq'], instance: 'fb-test', freezeOnFatalSignal: false, maxEventRate: 250_000 },
        lttng: { enabled: true, kernel: ['sched_switch'], userspace: ['myapp:*', 'lttng_ust_cyg_profile'], subbufSizeBytes: 1024 ** 2, numSubbuf: 4, session: 'fbsess' },
      },
    });
  });

  it('setting one nested option keeps its siblings at their defaults', () => {
    const r = load('recorders:\n  ftrace:\n    bufferSize: 1MiB\n');
    expect(r.errors).toEqual([]);
    const d = defaultConfig();
    expect(r.config.recorders.ftrace).toEqual({ ...d.recorders.ftrace, bufferSizeBytes: 1024 ** 2 });
    expect(r.config.recorders.metrics).toEqual(d.recorders.metrics);
    expect(r.config.recorders.lttng).toEqual(d.recorders.lttng);
  });

  // validate() means to skip a section with no value (`if (value === null ...) continue`),
  // but the yaml library hands it a Scalar node holding null, not null itself.
  it('an empty section is allowed and keeps defaults', () => {
    const r = load('store:\ncore:\n  level: 5\n');
    expect(r.errors).toEqual([]);
    expect(r.config.store).toEqual(defaultConfig().store);
    expect(r.config.core.level).toBe(5);
  });

  it('a section whose options are all commented out is allowed', () => {
    const r = load('store:\n  # root: /srv/flightbox\n  # busyTimeout: 10s\ncore:\n  level: 5\n');
    expect(r.errors).toEqual([]);
    expect(r.config.core.level).toBe(5);
  });

  it('a relative config path is recorded as an absolute source', () => {
    const p = writeConfig('core:\n  level: 4\n');
    const rel = relative(process.cwd(), p);
    const r = loadConfig(rel, { explicit: true });
    expect(r.errors).toEqual([]);
    expect(r.config.core.level).toBe(4);
    expect(isAbsolute(r.config.source!)).toBe(true);
    expect(resolve(r.config.source!)).toBe(p);
  });
});

describe('loadConfig: each key, valid and invalid', () => {
  type Case = [string, string, string, (c: Config) => unknown, unknown];
  const valid: Case[] = [
    ['store', 'root', '/var/tmp/fb', (c) => c.store.root, '/var/tmp/fb'],
    ['store', 'busyTimeout', '250ms', (c) => c.store.busyTimeoutMs, 250],
    ['store', 'busyTimeout', '30', (c) => c.store.busyTimeoutMs, 30],
    ['core', 'maxSize', '2GiB', (c) => c.core.maxSizeBytes, 2 * 1024 ** 3],
    ['core', 'maxSize', '4096', (c) => c.core.maxSizeBytes, 4096],
    ['core', 'maxSize', '"1.5k"', (c) => c.core.maxSizeBytes, 1500],
    ['core', 'compress', 'none', (c) => c.core.compress, 'none'],
    ['core', 'compress', 'zstd', (c) => c.core.compress, 'zstd'],
    ['core', 'level', '1', (c) => c.core.level, 1],
    ['core', 'level', '19', (c) => c.core.level, 19],
    ['core', 'honourRlimit', 'false', (c) => c.core.honourRlimit, false],
    ['capture', 'environ', 'false', (c) => c.capture.environ, false],
    ['backtrace', 'tool', 'eu-stack', (c) => c.backtrace.tool, 'eu-stack'],
    ['backtrace', 'tool', 'none', (c) => c.backtrace.tool, 'none'],
    ['backtrace', 'timeout', '5m', (c) => c.backtrace.timeoutMs, 300_000],
    ['backtrace', 'source', 'true', (c) => c.backtrace.source, true],
    ['install', 'launcher', '/opt/fb/handler', (c) => c.install.launcher, '/opt/fb/handler'],
    ['install', 'launcher', 'null', (c) => c.install.launcher, null],
    ['install', 'launcher', 'false', (c) => c.install.launcher, null],
    ['install', 'sysctlDropIn', 'false', (c) => c.install.sysctlDropIn, null],
    ['install', 'sysctlDropIn', '/etc/sysctl.d/99-fb.conf', (c) => c.install.sysctlDropIn, '/etc/sysctl.d/99-fb.conf'],
    ['daemon', 'socket', '/run/fb.sock', (c) => c.daemon.socket, '/run/fb.sock'],
    ['daemon', 'socket', 'null', (c) => c.daemon.socket, null],
    ['daemon', 'snapshotDeadline', '30s', (c) => c.daemon.snapshotDeadlineMs, 30_000],
  ];
  it.each(valid)('%s.%s: %s is accepted', (section, key, yaml, get, expected) => {
    const r = load(`${section}:\n  ${key}: ${yaml}\n`);
    expect(r.errors).toEqual([]);
    expect(get(r.config)).toEqual(expected);
  });

  type Bad = [string, string, string, RegExp];
  const invalid: Bad[] = [
    ['store', 'root', 'relative/path', /expected an absolute path, got "relative\/path"/],
    ['store', 'root', '5', /expected an absolute path, got 5/],
    ['store', 'root', '"/a\\nb"', /must not contain NUL or newlines/],
    ['store', 'root', '', /expected an absolute path, got null/],
    ['store', 'busyTimeout', 'forever', /expected a duration such as 30s or 5m, got "forever"/],
    ['store', 'busyTimeout', '-5', /expected a duration/],
    ['core', 'maxSize', '9O%', /expected a size such as 2GiB or 500MB, got "9O%"/],
    ['core', 'maxSize', 'lots', /got "lots"/],
    ['core', 'maxSize', '-1', /expected a size/],
    ['core', 'maxSize', '[1, 2]', /expected a size.*got \[1,2\]/],
    ['core', 'compress', 'brotli', /expected one of zstd, gzip, none, got "brotli"/],
    ['core', 'compress', 'true', /expected one of zstd, gzip, none, got true/],
    ['core', 'level', '0', /expected a whole number from 1 to 19, got 0/],
    ['core', 'level', '20', /from 1 to 19, got 20/],
    ['core', 'level', '3.5', /got 3.5/],
    ['core', 'level', '"5"', /got "5"/],
    ['core', 'honourRlimit', 'yes', /expected true or false, got "yes"/],
    ['core', 'honourRlimit', '1', /expected true or false, got 1/],
    ['capture', 'environ', 'off', /expected true or false, got "off"/],
    ['backtrace', 'tool', 'lldb', /expected one of auto, eu-stack, gdb, none, got "lldb"/],
    ['backtrace', 'timeout', '5 parsecs', /expected a duration/],
    ['backtrace', 'source', 'lines', /expected true or false, got "lines"/],
    ['install', 'launcher', 'bin/handler', /expected an absolute path/],
    ['install', 'sysctlDropIn', 'true', /expected an absolute path, got true/],
    ['daemon', 'socket', 'fb.sock', /expected an absolute path, got "fb.sock"/],
  ];
  it.each(invalid)('%s.%s: %j is rejected', (section, key, yaml, message) => {
    expectRejected(section, key, yaml, message);
  });

  it.each<[string, number | null]>([['50000', 50_000], ['null', null], ['1000', 1000]])('recorders.ftrace.maxEventRate: %s is accepted', (yaml, expected) => {
    const r = load(`recorders:\n  ftrace:\n    maxEventRate: ${yaml}\n`);
    expect(r.errors).toEqual([]);
    expect(r.config.recorders.ftrace.maxEventRate).toBe(expected);
  });

  it.each<[string, RegExp]>([['999', /from 1000 to 1000000000, or null for no limit, got 999/], ['lots', /got "lots"/], ['1.5', /got 1.5/], ['"5000"', /got "5000"/]])(
    'recorders.ftrace.maxEventRate: %s is rejected with its file, line and key',
    (yaml, message) => {
      const r = load(`recorders:\n  ftrace:\n    maxEventRate: ${yaml}\n`);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ key: 'recorders.ftrace.maxEventRate', file: r.path, line: 3 });
      expect(r.errors[0]!.message).toMatch(message);
      expect(r.config.recorders.ftrace.maxEventRate).toBe(defaultConfig().recorders.ftrace.maxEventRate);
    },
  );

  it.each<[string, number | null]>([['1MiB', 1024 ** 2], ['null', null], ['64KiB', 64 * 1024], ['256MiB', 256 * 1024 ** 2]])('core.pipeBuffer: %s is accepted', (yaml, expected) => {
    const r = load(`core:\n  pipeBuffer: ${yaml}\n`);
    expect(r.errors).toEqual([]);
    expect(r.config.core.pipeBufferBytes).toBe(expected);
  });

  it.each<[string, RegExp]>([['32KiB', /from 64 KiB to 256 MiB, or null, got "32KiB"/], ['1GiB', /got "1GiB"/], ['big', /got "big"/], ['-1', /got -1/]])(
    'core.pipeBuffer: %s is rejected with its file, line and key',
    (yaml, message) => {
      const r = load(`store:\n  busyTimeout: 2s\ncore:\n  pipeBuffer: ${yaml}\n`);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ key: 'core.pipeBuffer', file: r.path, line: 4 });
      expect(r.errors[0]!.message).toMatch(message);
      expect(r.config.core.pipeBufferBytes).toBe(defaultConfig().core.pipeBufferBytes);
    },
  );

  it.each(['1s', 'quick'])('daemon.freezeTimeout: %s, an option of older versions, loads with a warning saying it does nothing', (value) => {
    const r = load(`store:\n  root: /srv/fb\ndaemon:\n  freezeTimeout: ${value}\n`);
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([{ key: 'daemon.freezeTimeout', message: expect.stringMatching(/^no longer used and ignored: .*freeze FIFO/), file: r.path, line: 4 }]);
    expect(r.config.store.root).toBe('/srv/fb');
    expect(values(r.config)).toEqual({ ...values(defaultConfig()), store: { ...defaultConfig().store, root: '/srv/fb' } });
  });

  it('a very long bad value is shortened in the message', () => {
    const long = `x${'y'.repeat(500)}`;
    const r = load(`core:\n  compress: ${long}\n`);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toContain('...');
    expect(r.errors[0]!.message.length).toBeLessThan(200);
  });
});

describe('loadConfig: nested recorder options (three levels)', () => {
  type Case = [string, string, (c: Config) => unknown, unknown];
  it.each<Case>([
    ['metrics.enabled', 'false', (c) => c.recorders.metrics.enabled, false],
    ['metrics.interval', '500ms', (c) => c.recorders.metrics.intervalMs, 500],
    ['metrics.window', '1h', (c) => c.recorders.metrics.windowMs, 3_600_000],
    ['metrics.topProcesses', '0', (c) => c.recorders.metrics.topProcesses, 0],
    ['metrics.topProcesses', '100', (c) => c.recorders.metrics.topProcesses, 100],
    ['ftrace.enabled', 'auto', (c) => c.recorders.ftrace.enabled, 'auto'],
    ['ftrace.enabled', 'false', (c) => c.recorders.ftrace.enabled, false],
    ['ftrace.bufferSize', '16MiB', (c) => c.recorders.ftrace.bufferSizeBytes, 16 * 1024 ** 2],
    ['ftrace.events', '[sched]', (c) => c.recorders.ftrace.events, ['sched']],
    ['ftrace.events', '[]', (c) => c.recorders.ftrace.events, []],
    ['ftrace.instance', 'my.inst-1', (c) => c.recorders.ftrace.instance, 'my.inst-1'],
    ['ftrace.freezeOnFatalSignal', 'false', (c) => c.recorders.ftrace.freezeOnFatalSignal, false],
    ['lttng.enabled', 'true', (c) => c.recorders.lttng.enabled, true],
    ['lttng.kernel', '[sched_*, syscalls]', (c) => c.recorders.lttng.kernel, ['sched_*', 'syscalls']],
    ['lttng.userspace', '["app:event", "*"]', (c) => c.recorders.lttng.userspace, ['app:event', '*']],
    ['lttng.subbufSize', '256KiB', (c) => c.recorders.lttng.subbufSizeBytes, 256 * 1024],
    ['lttng.numSubbuf', '2', (c) => c.recorders.lttng.numSubbuf, 2],
    ['lttng.numSubbuf', '1024', (c) => c.recorders.lttng.numSubbuf, 1024],
    ['lttng.session', 'sess_1', (c) => c.recorders.lttng.session, 'sess_1'],
  ])('recorders.%s: %s is accepted', (dotted, yaml, get, expected) => {
    const [sub, key] = dotted.split('.');
    const r = load(`recorders:\n  ${sub}:\n    ${key}: ${yaml}\n`);
    expect(r.errors).toEqual([]);
    expect(get(r.config)).toEqual(expected);
  });

  it.each<[string, string, RegExp]>([
    ['metrics.enabled', 'auto', /expected true or false, got "auto"/],
    ['metrics.interval', 'often', /expected a duration/],
    ['metrics.topProcesses', '101', /from 0 to 100, got 101/],
    ['metrics.topProcesses', '-1', /got -1/],
    ['ftrace.enabled', 'maybe', /expected true, false or auto, got "maybe"/],
    ['ftrace.bufferSize', 'huge', /expected a size/],
    ['ftrace.events', 'sched/sched_switch', /expected a list of .* names, got "sched\/sched_switch"/],
    ['ftrace.events', '[1, 2]', /expected a list of/],
    ['ftrace.events', '["sched/sched_switch", "../../x"]', /"..\/..\/x" is not a valid tracefs event/],
    ['ftrace.events', '["Sched/Switch"]', /is not a valid tracefs event/],
    ['ftrace.events', '["a/b/c"]', /is not a valid tracefs event/],
    ['ftrace.instance', '../escape', /expected a name of letters, digits/],
    ['ftrace.instance', '""', /expected a name/],
    ['ftrace.instance', '.hidden', /expected a name/],
    ['ftrace.instance', 'a b', /expected a name/],
    ['lttng.kernel', '["sched switch"]', /is not a valid kernel event name/],
    ['lttng.userspace', '["a;b"]', /is not a valid user-space event name/],
    ['lttng.numSubbuf', '1', /from 2 to 1024, got 1/],
    ['lttng.numSubbuf', '1025', /from 2 to 1024, got 1025/],
    ['lttng.session', 'x/y', /expected a name/],
  ])('recorders.%s: %s is rejected with the dotted key and line 3', (dotted, yaml, message) => {
    const [sub, key] = dotted.split('.');
    const r = load(`recorders:\n  ${sub}:\n    ${key}: ${yaml}\n`);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: `recorders.${dotted}`, file: r.path, line: 3 });
    expect(r.errors[0]!.message).toMatch(message);
    expect(r.config.recorders).toEqual(defaultConfig().recorders);
  });

  it('a long name is rejected (instance names are at most 64 characters)', () => {
    expect(load(`recorders:\n  ftrace:\n    instance: ${'a'.repeat(64)}\n`).errors).toEqual([]);
    expect(load(`recorders:\n  ftrace:\n    instance: ${'a'.repeat(65)}\n`).errors).toHaveLength(1);
  });

  it('unknown keys at each level name the full dotted key', () => {
    const r = load([
      'recorders:', // 1
      '  perf:', // 2
      '    enabled: true', // 3
      '  ftrace:', // 4
      '    bufersize: 1MiB', // 5
      '  metrics: 5', // 6
      '  lttng:', // 7
      '    enabled: true', // 8
      '',
    ].join('\n'));
    expect(r.errors.map((e) => [e.key, e.line])).toEqual([
      ['recorders.perf', 2],
      ['recorders.ftrace.bufersize', 5],
      ['recorders.metrics', 6],
    ]);
    expect(r.errors[0]!.message).toMatch(/^unknown option \(known: recorders\.metrics, recorders\.ftrace, recorders\.lttng\)$/);
    expect(r.errors[1]!.message).toContain('recorders.ftrace.bufferSize');
    expect(r.errors[2]!.message).toBe('expected a mapping of options');
    expect(r.config.recorders.lttng.enabled).toBe(true);
  });

  it('a leaf option given a mapping is an error on that option, not a crash', () => {
    const r = load('core:\n  level:\n    value: 3\n');
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.key).toBe('core.level');
    expect(r.errors[0]!.message).toMatch(/expected a whole number/);
  });
});

describe('loadConfig: structural errors', () => {
  it('an unknown section is an error with its key and line', () => {
    const r = load('store:\n  root: /srv/fb\nstorage:\n  root: /x\n');
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: 'storage', line: 3, file: r.path });
    expect(r.errors[0]!.message).toMatch(/^unknown section \(known: [a-z, ]+\)$/);
    for (const k of ['store', 'core', 'capture', 'backtrace', 'install']) expect(r.errors[0]!.message).toContain(k);
    expect(r.config.store.root).toBe('/srv/fb');
  });

  it('an unknown key is an error naming the dotted key and the known ones', () => {
    const r = load('core:\n  maxsize: 1GiB\n');
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: 'core.maxsize', line: 2 });
    expect(r.errors[0]!.message).toContain('unknown option');
    expect(r.errors[0]!.message).toContain('core.maxSize');
    expect(r.config.core.maxSizeBytes).toBe(defaultConfig().core.maxSizeBytes);
  });

  it.each([
    ['a number', 'store: 5\n'],
    ['a string', 'store: /var/lib/flightbox\n'],
    ['a list', 'store:\n  - root\n'],
  ])('a section that is %s is an error', (_what, yaml) => {
    const r = load(yaml);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: 'store', message: 'expected a mapping of options', line: 1 });
  });

  it.each([
    ['a list', '- store\n- core\n'],
    ['a scalar', 'just a string\n'],
  ])('a top level that is %s is an error', (_what, yaml) => {
    const r = load(yaml);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: '', message: 'expected a mapping at the top level', line: 1 });
  });

  it('reports exact 1-based lines, file and dotted key for every error in a multi-line file', () => {
    const text = [
      '# flightbox test config', // 1
      '', // 2
      'store:', // 3
      '  root: /srv/flightbox', // 4
      '  busyTimeout: soon', // 5
      '', // 6
      'core:', // 7
      '  # the size limit', // 8
      '  maxSize: 9O%', // 9
      '  compress: gzip', // 10
      '  level: 42', // 11
      'capture:', // 12
      '  environ: true', // 13
      '  envron: false', // 14
      'backtrace: none', // 15
      'notify:', // 16
      '  mail: root@localhost', // 17
      'install:', // 18
      '  launcher: ./core-handler', // 19
      '  sysctlDropIn: /etc/sysctl.d/61-fb.conf', // 20
      '',
    ].join('\n');
    const r = load(text);
    const got = r.errors.map((e) => [e.key, e.line, e.file]);
    expect(got).toEqual([
      ['store.busyTimeout', 5, r.path],
      ['core.maxSize', 9, r.path],
      ['core.level', 11, r.path],
      ['capture.envron', 14, r.path],
      ['backtrace', 15, r.path],
      ['notify', 16, r.path],
      ['install.launcher', 19, r.path],
    ]);
    // the valid keys of the same file are applied
    expect(r.config.store.root).toBe('/srv/flightbox');
    expect(r.config.core.compress).toBe('gzip');
    expect(r.config.capture.environ).toBe(true);
    expect(r.config.install.sysctlDropIn).toBe('/etc/sysctl.d/61-fb.conf');
    // and the broken ones keep their defaults
    const d = defaultConfig();
    expect(r.config.store.busyTimeoutMs).toBe(d.store.busyTimeoutMs);
    expect(r.config.core.maxSizeBytes).toBe(d.core.maxSizeBytes);
    expect(r.config.core.level).toBe(d.core.level);
    expect(r.config.backtrace).toEqual(d.backtrace);
    expect(r.config.install.launcher).toBe(d.install.launcher);
    expect(r.warnings).toEqual([]);
  });

  it('valid keys are applied when a sibling key is broken', () => {
    const r = load('core:\n  maxSize: 9O%\n  level: 7\n  compress: none\nstore:\n  root: /data/fb\n');
    expect(r.errors.map((e) => e.key)).toEqual(['core.maxSize']);
    expect(r.config.core.level).toBe(7);
    expect(r.config.core.compress).toBe('none');
    expect(r.config.store.root).toBe('/data/fb');
  });

  it('a later duplicate key is a YAML error with its line', () => {
    const r = load('store:\n  root: /a\n  root: /b\n');
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.key).toBe('');
    expect(r.errors[0]!.line).toBe(3);
    expect(r.errors[0]!.message).toMatch(/unique/i);
  });

  it('invalid YAML syntax reports the file and a line, and nothing from the file is applied', () => {
    const r = load('core:\n  level: 7\nstore:\n  root: /x\n\tbad: 1\n');
    expect(r.errors.length).toBeGreaterThanOrEqual(1);
    expect(r.errors[0]!.file).toBe(r.path);
    expect(r.errors[0]!.line).toBe(5);
    expect(r.errors[0]!.message).not.toContain('\n');
    expect(r.config.core.level).toBe(defaultConfig().core.level);
  });

  it('an unclosed flow sequence reports a line in the file', () => {
    const r = load('store:\n  root: [unclosed\ncore:\n  level: 3\n');
    expect(r.errors.length).toBeGreaterThanOrEqual(1);
    const line = r.errors[0]!.line;
    expect(line).not.toBeNull();
    expect(line!).toBeGreaterThanOrEqual(2);
    expect(line!).toBeLessThanOrEqual(4);
  });
});

describe('formatConfigIssue', () => {
  it.each<[ConfigIssue, string]>([
    [
      { key: 'core.maxSize', message: 'expected a size such as 2GiB or 500MB, got "lots"', file: '/etc/flightbox/flightbox.yaml', line: 4 },
      'core.maxSize: expected a size such as 2GiB or 500MB, got "lots" (/etc/flightbox/flightbox.yaml:4)',
    ],
    [{ key: 'store', message: 'expected a mapping of options', file: '/f.yaml', line: 1 }, 'store: expected a mapping of options (/f.yaml:1)'],
    [{ key: '', message: 'cannot read config: ENOENT', file: '/f.yaml', line: null }, 'cannot read config: ENOENT (/f.yaml)'],
    [{ key: 'core.level', message: 'bad', file: null, line: null }, 'core.level: bad'],
    [{ key: '', message: 'Map keys must be unique', file: '/x.yaml', line: 3 }, 'Map keys must be unique (/x.yaml:3)'],
  ])('formats %j', (issue, text) => {
    expect(formatConfigIssue(issue)).toBe(text);
  });

  it('formats a real issue from loadConfig as "key: message (file:line)"', () => {
    const r = load('core:\n  compress: brotli\n');
    expect(formatConfigIssue(r.errors[0]!)).toBe(`core.compress: expected one of zstd, gzip, none, got "brotli" (${r.path}:2)`);
  });
});

describe('resolveConfigPath', () => {
  it.each<[string | undefined, NodeJS.ProcessEnv, { path: string; explicit: boolean }]>([
    ['/a.yaml', { FLIGHTBOX_CONFIG: '/b.yaml' }, { path: '/a.yaml', explicit: true }],
    ['/a.yaml', {}, { path: '/a.yaml', explicit: true }],
    [undefined, { FLIGHTBOX_CONFIG: '/b.yaml' }, { path: '/b.yaml', explicit: true }],
    ['', { FLIGHTBOX_CONFIG: '/b.yaml' }, { path: '/b.yaml', explicit: true }],
    [undefined, {}, { path: DEFAULT_CONFIG_PATH, explicit: false }],
    [undefined, { FLIGHTBOX_CONFIG: '' }, { path: DEFAULT_CONFIG_PATH, explicit: false }],
  ])('explicit %j with env %j → %j', (explicit, env, expected) => {
    expect(resolveConfigPath(explicit, env)).toEqual(expected);
  });

  it('the default path is /etc/flightbox/flightbox.yaml', () => {
    expect(DEFAULT_CONFIG_PATH).toBe('/etc/flightbox/flightbox.yaml');
  });
});

describe('defaultsYaml', () => {
  it('parses back through loadConfig without errors and yields the defaults', () => {
    const path = writeConfig(defaultsYaml());
    const r = loadConfig(path, { explicit: true });
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(values(r.config)).toEqual(values(defaultConfig()));
    expect(r.config.source).toBe(path);
  });

  it('mentions every section and option of the schema', () => {
    const y = defaultsYaml();
    for (const k of ['store:', 'root:', 'busyTimeout:', 'core:', 'maxSize:', 'compress:', 'level:', 'honourRlimit:', 'capture:', 'environ:', 'backtrace:', 'tool:', 'timeout:', 'install:', 'launcher:', 'sysctlDropIn:',
      'daemon:', 'socket:', 'snapshotDeadline:', 'recorders:', 'metrics:', 'interval:', 'window:', 'topProcesses:',
      'ftrace:', 'bufferSize:', 'events:', 'instance:', 'freezeOnFatalSignal:', 'lttng:', 'kernel:', 'userspace:', 'subbufSize:', 'numSubbuf:', 'session:']) {
      expect(y).toContain(k);
    }
  });

  it('defaultConfig returns a fresh object each time', () => {
    const a = defaultConfig();
    a.store.root = '/mutated';
    expect(defaultConfig().store.root).toBe('/var/lib/flightbox');
  });
});

describe('loadConfig: prometheus and graphite (monitoring)', () => {
  it('both are off by default', () => {
    const c = defaultConfig();
    expect(c.prometheus).toEqual({ listen: null, textfile: null });
    expect(c.graphite).toEqual({ host: null, port: 2003, prefix: 'flightbox', intervalMs: 60_000 });
  });

  type Case = [string, (c: Config) => unknown, unknown];
  it.each<Case>([
    ['prometheus:\n  listen: 127.0.0.1:9477\n', (c) => c.prometheus.listen, { host: '127.0.0.1', port: 9477 }],
    ["prometheus:\n  listen: '[::1]:9477'\n", (c) => c.prometheus.listen, { host: '::1', port: 9477 }],
    ['prometheus:\n  listen: localhost:1\n', (c) => c.prometheus.listen, { host: 'localhost', port: 1 }],
    // bound exactly as written: a wildcard only when the operator writes one
    ['prometheus:\n  listen: 0.0.0.0:65535\n', (c) => c.prometheus.listen, { host: '0.0.0.0', port: 65535 }],
    ['prometheus:\n  listen: metrics.internal:9477\n', (c) => c.prometheus.listen, { host: 'metrics.internal', port: 9477 }],
    ['prometheus:\n  listen: null\n', (c) => c.prometheus.listen, null],
    ['prometheus:\n  textfile: /var/lib/prometheus/node-exporter/flightbox.prom\n', (c) => c.prometheus.textfile, '/var/lib/prometheus/node-exporter/flightbox.prom'],
    ['prometheus:\n  textfile: null\n', (c) => c.prometheus.textfile, null],
    ['prometheus:\n', (c) => c.prometheus, { listen: null, textfile: null }],
    ['graphite:\n  host: graphite.example.com\n', (c) => c.graphite, { host: 'graphite.example.com', port: 2003, prefix: 'flightbox', intervalMs: 60_000 }],
    ['graphite:\n  host: 10.0.0.5\n  port: 2004\n', (c) => [c.graphite.host, c.graphite.port], ['10.0.0.5', 2004]],
    ["graphite:\n  host: '::1'\n", (c) => c.graphite.host, '::1'],
    ["graphite:\n  host: '[fd00::5]'\n", (c) => c.graphite.host, 'fd00::5'],
    ['graphite:\n  host: null\n', (c) => c.graphite.host, null],
    ['graphite:\n  prefix: flightbox.web-1.prod_eu\n', (c) => c.graphite.prefix, 'flightbox.web-1.prod_eu'],
    ['graphite:\n  interval: 1s\n', (c) => c.graphite.intervalMs, 1000],
    ['graphite:\n  interval: 24h\n', (c) => c.graphite.intervalMs, 86_400_000],
  ])('%j is accepted', (yaml, get, expected) => {
    const r = load(yaml);
    expect(r.errors).toEqual([]);
    expect(get(r.config)).toEqual(expected);
  });

  type Bad = [string, string, string, RegExp];
  it.each<Bad>([
    ['prometheus', 'listen', '9477', /expected host:port such as 127\.0\.0\.1:9477.*got 9477$/],
    ['prometheus', 'listen', 'localhost', /expected host:port.*got "localhost"/],
    ['prometheus', 'listen', '127.0.0.1:0', /expected a port from 1 to 65535 in "127\.0\.0\.1:0"/],
    ['prometheus', 'listen', '127.0.0.1:70000', /expected a port from 1 to 65535/],
    ['prometheus', 'listen', '300.1.1.1:80', /expected host:port/],
    ['prometheus', 'listen', '"::1:9477"', /expected host:port.*in brackets and quotes/],
    ['prometheus', 'listen', '"[not-ipv6]:9477"', /expected host:port/],
    ['prometheus', 'listen', 'http://127.0.0.1:9477', /expected host:port/],
    ['prometheus', 'listen', '"bad_host!:80"', /expected host:port/],
    ['prometheus', 'listen', '"127.0.0.1:9477\\n"', /expected host:port/],
    ['prometheus', 'listen', 'true', /expected host:port.*got true/],
    ['prometheus', 'textfile', 'flightbox.prom', /expected the absolute path of a \.prom file, or null, got "flightbox\.prom"/],
    ['prometheus', 'textfile', '/var/lib/node-exporter/flightbox.txt', /node_exporter reads only files named \*\.prom/],
    ['prometheus', 'textfile', '/var/lib/node-exporter/.flightbox.prom', /not starting with a dot/],
    ['prometheus', 'textfile', '"/var/lib/x\\n.prom"', /expected the absolute path/],
    ['prometheus', 'textfile', 'true', /expected the absolute path of a \.prom file/],
    ['graphite', 'host', '"not a host"', /expected a host name or IP address, or null \(no Graphite\), got "not a host"/],
    ['graphite', 'host', '5', /expected a host name or IP address/],
    ['graphite', 'host', 'graphite.example.com:2003', /expected a host name or IP address/],
    ['graphite', 'port', '0', /expected a whole number from 1 to 65535, got 0/],
    ['graphite', 'port', '"2003"', /from 1 to 65535, got "2003"/],
    ['graphite', 'prefix', 'a..b', /expected dotted names of letters, digits, '_' and '-'/],
    ['graphite', 'prefix', '"a b"', /got "a b"/],
    ['graphite', 'prefix', '.flightbox', /expected dotted names/],
    ['graphite', 'prefix', `${'x'.repeat(201)}`, /at most 200 characters/],
    ['graphite', 'prefix', '""', /expected dotted names/],
    ['graphite', 'interval', '500ms', /expected a duration from 1s to 24h such as 60s, got "500ms"/],
    ['graphite', 'interval', '2d', /from 1s to 24h/],
    ['graphite', 'interval', 'often', /expected a duration/],
  ])('%s.%s: %s is rejected', (section, key, yaml, message) => {
    expectRejected(section, key, yaml, message);
  });

  it('an unquoted bracketed IPv6 listen address is a YAML error with its line, not a silent list', () => {
    const r = load('store:\n  root: /var/tmp/fb\nprometheus:\n  listen: [::1]:9477\n');
    expect(r.errors.length).toBeGreaterThan(0);
    expect(r.errors[0]!.file).toBe(r.path);
    expect(r.errors[0]!.line).toBe(4);
  });

  it('each mistake in the two sections has its own message with file, line and dotted key', () => {
    const r = load([
      'prometheus:',
      '  listen: 127.0.0.1',
      '  textfile: /tmp/metrics.txt',
      '  port: 9477',
      'graphite:',
      '  host: graphite.example.com',
      '  port: 99999',
      '  prefix: ok.prefix',
      '  interval: 0s',
      '',
    ].join('\n'));
    expect(r.errors.map((e) => [e.key, e.line])).toEqual([
      ['prometheus.listen', 2],
      ['prometheus.textfile', 3],
      ['prometheus.port', 4],
      ['graphite.port', 7],
      ['graphite.interval', 9],
    ]);
    expect(r.errors[2]!.message).toMatch(/unknown option \(known: prometheus\.listen, prometheus\.textfile\)/);
    expect(formatConfigIssue(r.errors[0]!)).toMatch(new RegExp(`^prometheus\\.listen: expected host:port .* \\(${r.path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2\\)$`));
    // the valid keys beside them are applied
    expect(r.config.graphite.host).toBe('graphite.example.com');
    expect(r.config.graphite.prefix).toBe('ok.prefix');
  });

  it('defaultsYaml documents both sections, off, and they parse back to the defaults', () => {
    const y = defaultsYaml();
    for (const k of ['prometheus:', 'listen: null', 'textfile: null', 'graphite:', 'host: null', 'port: 2003', 'prefix: flightbox', 'interval: 60s']) {
      expect(y).toContain(k);
    }
    const r = loadConfig(writeConfig(y, 'defaults.yaml'), { explicit: true });
    expect(r.errors).toEqual([]);
    expect(r.config.prometheus).toEqual(defaultConfig().prometheus);
    expect(r.config.graphite).toEqual(defaultConfig().graphite);
  });
});
