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
        'capture:',
        '  environ: false',
        'backtrace:',
        '  tool: gdb',
        '  timeout: 1m30s',
        'install:',
        '  launcher: /usr/local/lib/flightbox/core-handler',
        '  sysctlDropIn: null',
        '',
      ].join('\n'),
    );
    expect(r.errors).toEqual([]);
    expect(r.config).toEqual({
      source: r.path,
      store: { root: '/srv/flightbox', busyTimeoutMs: 2000 },
      core: { maxSizeBytes: 500_000_000, compress: 'gzip', level: 9, honourRlimit: false },
      capture: { environ: false },
      backtrace: { tool: 'gdb', timeoutMs: 90_000 },
      install: { launcher: '/usr/local/lib/flightbox/core-handler', sysctlDropIn: null },
    });
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
    ['install', 'launcher', '/opt/fb/handler', (c) => c.install.launcher, '/opt/fb/handler'],
    ['install', 'launcher', 'null', (c) => c.install.launcher, null],
    ['install', 'launcher', 'false', (c) => c.install.launcher, null],
    ['install', 'sysctlDropIn', 'false', (c) => c.install.sysctlDropIn, null],
    ['install', 'sysctlDropIn', '/etc/sysctl.d/99-fb.conf', (c) => c.install.sysctlDropIn, '/etc/sysctl.d/99-fb.conf'],
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
    ['install', 'launcher', 'bin/handler', /expected an absolute path/],
    ['install', 'sysctlDropIn', 'true', /expected an absolute path, got true/],
  ];
  it.each(invalid)('%s.%s: %j is rejected', (section, key, yaml, message) => {
    const r = load(`${section}:\n  ${key}: ${yaml}\n`);
    expect(r.errors).toHaveLength(1);
    const e = r.errors[0]!;
    expect(e.key).toBe(`${section}.${key}`);
    expect(e.message).toMatch(message);
    expect(e.file).toBe(r.path);
    expect(e.line).toBe(2);
    // the broken key keeps its default
    expect(values(r.config)).toEqual(values(defaultConfig()));
  });

  it('a very long bad value is shortened in the message', () => {
    const long = `x${'y'.repeat(500)}`;
    const r = load(`core:\n  compress: ${long}\n`);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]!.message).toContain('...');
    expect(r.errors[0]!.message.length).toBeLessThan(200);
  });
});

describe('loadConfig: structural errors', () => {
  it('an unknown section is an error with its key and line', () => {
    const r = load('store:\n  root: /srv/fb\nstorage:\n  root: /x\n');
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatchObject({ key: 'storage', line: 3, file: r.path });
    expect(r.errors[0]!.message).toMatch(/^unknown section \(known: store, core, capture, backtrace, install\)$/);
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
    for (const k of ['store:', 'root:', 'busyTimeout:', 'core:', 'maxSize:', 'compress:', 'level:', 'honourRlimit:', 'capture:', 'environ:', 'backtrace:', 'tool:', 'timeout:', 'install:', 'launcher:', 'sysctlDropIn:']) {
      expect(y).toContain(k);
    }
  });

  it('defaultConfig returns a fresh object each time', () => {
    const a = defaultConfig();
    a.store.root = '/mutated';
    expect(defaultConfig().store.root).toBe('/var/lib/flightbox');
  });
});
