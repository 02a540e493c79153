import * as realFs from 'node:fs';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  cmdlineText, hostConstants, parseCgroupV2, parseFileNr, parsePidStat, parsePidStatWithThreads,
} from '../../lib/procfs.js';
import type { Rule } from '../../lib/rules.js';
import {
  MAX_PROCESSES_SCANNED, MetricSampler, cgroupUnder, parsePidFile, type FsUsage, type ValueEvent,
} from '../../triggers/metric-sampler.js';
import { writeTree } from '../helpers.js';
import { msPerSample, pidStat, threshold, type PidStatFields } from '../metric-fixtures.js';

// Every open and directory listing goes through these counters (they call the real
// functions): the read-once test counts opens per path.
const opened = new Map<string, number>();
const listed = new Map<string, number>();
vi.mock('node:fs', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs')>();
  const openSync = ((path: realFs.PathLike, ...rest: unknown[]) => {
    opened.set(String(path), (opened.get(String(path)) ?? 0) + 1);
    return (fs.openSync as (...a: unknown[]) => number)(path, ...rest);
  }) as typeof fs.openSync;
  const readdirSync = ((path: realFs.PathLike, ...rest: unknown[]) => {
    listed.set(String(path), (listed.get(String(path)) ?? 0) + 1);
    return (fs.readdirSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readdirSync;
  return { ...fs, openSync, readdirSync, default: { ...fs, openSync, readdirSync } };
});

const { clockTicks: HZ, pageSizeBytes: PAGE } = hostConstants();

let dir: string;
let root: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-sampler-'));
  root = join(dir, 'proc');
  mkdirSync(root);
  opened.clear();
  listed.clear();
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// A fake /proc, written as the kernel writes it.

const STAT_1 = 'cpu  1000 100 500 8000 200 50 40 10 0 0\ncpu0 500 50 250 4000 100 25 20 5 0 0\nintr 12345 0 1 2\n';
// deltas: user +100, nice +20, system +40, idle +200, iowait +20, irq +8, softirq +4, steal +8 = 400
// → busy = 100 - idle 50% - iowait 5% = 45
const STAT_2 = 'cpu  1100 120 540 8200 220 58 44 18 0 0\ncpu0 550 60 270 4100 110 29 22 9 0 0\nintr 12400 0 1 2\n';

const MEMINFO = 'MemTotal:       16000000 kB\nMemFree:         2000000 kB\nMemAvailable:   12000000 kB\n'
  + 'SwapTotal:       2000000 kB\nSwapFree:        1500000 kB\n';
const MEMINFO_NO_SWAP = 'MemTotal: 1000 kB\nMemAvailable: 333 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n';

const SYSTEM_FILES: Record<string, string> = {
  stat: STAT_1,
  loadavg: '1.50 0.75 0.25 3/456 7890\n',
  meminfo: MEMINFO,
  'pressure/cpu': 'some avg10=12.34 avg60=5.00 avg300=1.00 total=123456\n',
  'pressure/memory': 'some avg10=1.50 avg60=0.50 avg300=0.10 total=777\nfull avg10=0.75 avg60=0.25 avg300=0.05 total=333\n',
  'pressure/io': 'some avg10=3.21 avg60=1.00 avg300=0.50 total=42\nfull avg10=2.50 avg60=1.00 avg300=0.50 total=42\n',
  'sys/fs/file-nr': '1234\t0\t9223372036854775807\n',
};

interface FakeProc extends PidStatFields {
  /** the arguments; written NUL-terminated */
  argv?: string[];
  /** cgroup v2 path */
  cgroup?: string;
  fds?: number;
}

function writeProc(p: FakeProc): void {
  const d = join(root, String(p.pid));
  rmSync(d, { recursive: true, force: true });
  mkdirSync(join(d, 'fd'), { recursive: true });
  writeFileSync(join(d, 'stat'), pidStat(p));
  writeFileSync(join(d, 'comm'), `${p.comm}\n`);
  writeFileSync(join(d, 'cmdline'), p.argv === undefined ? '' : `${p.argv.join('\0')}\0`);
  // a hybrid host: v1 hierarchies first, the v2 line last
  writeFileSync(join(d, 'cgroup'), `4:memory:/elsewhere\n1:name=systemd:/elsewhere\n0::${p.cgroup ?? '/'}\n`);
  for (let i = 0; i < (p.fds ?? 0); i++) writeFileSync(join(d, 'fd', String(i)), '');
}

function sampler(statfs?: (path: string) => FsUsage) {
  let t = 1_700_000_000_000;
  const clock = { advance: (ms: number) => { t += ms; }, now: () => t };
  return { s: new MetricSampler({ procRoot: root, now: clock.now, statfs }), clock };
}

/** The one event of a one-rule sample. */
function one(s: MetricSampler, rule: Rule): ValueEvent {
  const evs = s.sample([rule]);
  expect(evs).toHaveLength(1);
  return evs[0]!;
}

// ---------------------------------------------------------------------------------------

describe('parsers (pure)', () => {
  it.each([
    ['1234\t0\t9223372036854775807\n', 1234],
    ['0 0 100', 0],
    ['', null],
    ['x 0 1', null],
  ])('parseFileNr(%j) = %j', (text, want) => {
    expect(parseFileNr(text)).toBe(want);
  });

  it.each([
    ['hybrid host', '4:memory:/x\n1:name=systemd:/y\n0::/system.slice/a.service\n', '/system.slice/a.service'],
    ['v2 only', '0::/user.slice/user-0.slice/session-1.scope\n', '/user.slice/user-0.slice/session-1.scope'],
    ['root', '0::/\n', '/'],
    ['v1 only', '4:memory:/x\n1:name=systemd:/y\n', null],
    ['a v1 line that looks like v2 further in', '10:0::/fake\n0::/real\n', '/real'],
  ])('parseCgroupV2: %s', (_name, text, want) => {
    expect(parseCgroupV2(text)).toBe(want);
  });

  it.each([
    ['node\0-e\0x\0', 'node -e x'],
    ['a b\0c\0', 'a b c'],
    ['', ''],
    // setproctitle-style: no terminating NUL
    ['nginx: worker process', 'nginx: worker process'],
  ])('cmdlineText(%j) = %j', (raw, want) => {
    expect(cmdlineText(raw)).toBe(want);
  });

  it('parsePidStatWithThreads adds field 20; parsePidStat keeps its five fields', () => {
    const text = pidStat({ pid: 7, comm: 'a) b', utime: 1, stime: 2, start: 3, rss: 4, threads: 17 });
    expect(parsePidStatWithThreads(text)).toEqual({ comm: 'a) b', utime: 1, stime: 2, startTime: 3, rssPages: 4, numThreads: 17 });
    expect(parsePidStat(text)).toStrictEqual({ comm: 'a) b', utime: 1, stime: 2, startTime: 3, rssPages: 4 });
    expect(parsePidStatWithThreads('7 (x) S 1 2 3')).toBeNull();
  });

  it.each([
    ['1234\n', 1234],
    ['  42  \n', 42],
    ['4194304', 4194304],
    ['4194305', null],
    ['99999999999', null],
    ['0\n', null],
    ['-5\n', null],
    ['12ab\n', null],
    ['0x10', null],
    ['1e3', null],
    ['', null],
    ['12\n34\n', null],
  ])('parsePidFile(%j) = %j', (text, want) => {
    expect(parsePidFile(text)).toBe(want);
  });

  it.each([
    ['/system.slice/a.service', '/system.slice', true],
    ['/system.slice', '/system.slice', true],
    ['/system.slice/a.service/sub', '/system.slice/a.service', true],
    ['/system.slice2/x', '/system.slice', false],
    ['/system.slic', '/system.slice', false],
    ['/user.slice', '/system.slice', false],
    ['/anything', '/', true],
    ['/', '/', true],
  ])('cgroupUnder(%j, %j) = %j', (path, prefix, want) => {
    expect(cgroupUnder(path, prefix)).toBe(want);
  });
});

describe('system metrics on a fake /proc', () => {
  it.each([
    ['load1', SYSTEM_FILES, 1.5],
    ['load5', SYSTEM_FILES, 0.75],
    ['load15', SYSTEM_FILES, 0.25],
    ['memory.available', SYSTEM_FILES, 75],
    ['memory.available', { ...SYSTEM_FILES, meminfo: MEMINFO_NO_SWAP }, 33.3],
    ['swap.used', SYSTEM_FILES, 25],
    ['swap.used', { ...SYSTEM_FILES, meminfo: MEMINFO_NO_SWAP }, 0],
    ['psi.cpu.some', SYSTEM_FILES, 12.34],
    ['psi.memory.some', SYSTEM_FILES, 1.5],
    ['psi.memory.full', SYSTEM_FILES, 0.75],
    ['psi.io.some', SYSTEM_FILES, 3.21],
    ['psi.io.full', SYSTEM_FILES, 2.5],
    // cpu before 5.13 has no full line; a kernel without PSI has no files
    ['psi.io.full', { ...SYSTEM_FILES, 'pressure/io': 'some avg10=3.21 avg60=1.00 avg300=0.50 total=42\n' }, null],
    ['psi.memory.some', { ...SYSTEM_FILES, 'pressure/memory': null }, null],
    ['fds', SYSTEM_FILES, 1234],
    ['fds', { ...SYSTEM_FILES, 'sys/fs/file-nr': null }, null],
    ['load1', { ...SYSTEM_FILES, loadavg: null }, null],
    ['memory.available', { ...SYSTEM_FILES, meminfo: 'garbage\n' }, null],
  ] as const)('%s = %j', (metric, files, want) => {
    writeTree(root, files);
    const { s } = sampler();
    expect(one(s, threshold('r', metric))).toEqual({ kind: 'value', rule: 'r', t: 1_700_000_000_000, value: want, labels: {} });
  });

  it('cpu: busy % over all CPUs since the previous sample, null on the first', () => {
    writeTree(root, SYSTEM_FILES);
    const { s, clock } = sampler();
    const rule = threshold('cpu', 'cpu');
    expect(one(s, rule).value).toBeNull();
    clock.advance(1000);
    writeTree(root, { stat: STAT_2 });
    expect(one(s, rule).value).toBe(45);
    // no jiffies passed: no value rather than 0 % or NaN
    clock.advance(1000);
    expect(one(s, rule).value).toBeNull();
  });

  it.each([
    ['a mount', '/srv/data', { bavail: 250, blocks: 1000 }, 25],
    ['the default mount', null, { bavail: 1, blocks: 3 }, 33.33],
    ['bavail > blocks (a lying filesystem)', '/x', { bavail: 2000, blocks: 1000 }, 100],
    ['no blocks (procfs-like)', '/proc', { bavail: 0, blocks: 0 }, null],
    ['statfs fails', '/nowhere', new Error('ENOENT'), null],
  ] as const)('disk.free: %s', (_name, mount, result, want) => {
    const asked: string[] = [];
    const { s } = sampler((path) => {
      asked.push(path);
      if (result instanceof Error) throw result;
      return result;
    });
    expect(one(s, threshold('d', 'disk.free', null, mount))).toMatchObject({ value: want, labels: {} });
    expect(asked).toEqual([mount ?? '/']);
  });

  it('disk.free on the real root filesystem is a percentage', () => {
    const v = new MetricSampler().sample([threshold('d', 'disk.free', null, '/')])[0]!.value;
    expect(v).toBeGreaterThan(0);
    expect(v).toBeLessThanOrEqual(100);
  });

  it('ignores rules that are not thresholds, keeps the order of the others, stamps one t', () => {
    writeTree(root, SYSTEM_FILES);
    const { s } = sampler();
    const rules: Rule[] = [
      threshold('a', 'load5'),
      { ...threshold('log', 'load1'), when: { kind: 'log', path: '/var/log/x', match: 'x' } },
      { ...threshold('man', 'load1'), when: { kind: 'manual' } },
      threshold('b', 'fds'),
    ];
    expect(s.sample(rules)).toEqual([
      { kind: 'value', rule: 'a', t: 1_700_000_000_000, value: 0.75, labels: {} },
      { kind: 'value', rule: 'b', t: 1_700_000_000_000, value: 1234, labels: {} },
    ]);
    expect(s.sample([])).toEqual([]);
  });
});

describe('per-process metrics on a fake /proc', () => {
  const PROCS: FakeProc[] = [
    { pid: 100, comm: 'mysqld', rss: 1000, threads: 30, argv: ['/usr/sbin/mysqld', '--port=3306'], cgroup: '/system.slice/mysqld.service', fds: 3 },
    { pid: 200, comm: 'mysqld', rss: 5000, threads: 10, argv: ['/usr/sbin/mysqld', '--port=3307'], cgroup: '/system.slice/mysqld.service/extra', fds: 7 },
    { pid: 300, comm: 'nginx', rss: 9000, threads: 2, argv: ['nginx: worker process'], cgroup: '/system.slice2/nginx.service', fds: 1 },
    { pid: 400, comm: 'mysqld-helper', rss: 99_999, threads: 99, argv: ['/usr/bin/mysqld-helper'], cgroup: '/system.slice', fds: 50 },
    // a kernel thread: no command line
    { pid: 2, comm: 'kthreadd', rss: 0, threads: 1, cgroup: '/' },
  ];
  beforeEach(() => {
    for (const p of PROCS) writeProc(p);
    writeFileSync(join(dir, 'mysqld.pid'), '200\n');
  });

  it.each([
    // [selector, metric, value, labels]
    [{ name: 'mysqld' }, 'process.rss', 5000 * PAGE, { pid: '200', comm: 'mysqld', count: '2' }],
    [{ name: 'mysqld' }, 'process.threads', 30, { pid: '100', comm: 'mysqld', count: '2' }],
    [{ name: 'mysqld' }, 'process.fds', 7, { pid: '200', comm: 'mysqld', count: '2' }],
    [{ name: 'nginx' }, 'process.rss', 9000 * PAGE, { pid: '300', comm: 'nginx', count: '1' }],
    // exact comm: neither a prefix nor a substring
    [{ name: 'mysql' }, 'process.rss', null, {}],
    [{ name: 'mysqld-helper' }, 'process.threads', 99, { pid: '400', comm: 'mysqld-helper', count: '1' }],
    [{ cmdline: '--port=330[67]' }, 'process.rss', 5000 * PAGE, { pid: '200', comm: 'mysqld', count: '2' }],
    [{ cmdline: '^/usr/sbin/mysqld --port=3306$' }, 'process.rss', 1000 * PAGE, { pid: '100', comm: 'mysqld', count: '1' }],
    [{ cmdline: 'worker process' }, 'process.fds', 1, { pid: '300', comm: 'nginx', count: '1' }],
    // matches every command line, but a kernel thread has none
    [{ cmdline: '.*' }, 'process.threads', 99, { pid: '400', comm: 'mysqld-helper', count: '4' }],
    [{ cmdline: 'nothing-like-this' }, 'process.rss', null, {}],
    [{ pidFile: '/placeholder' }, 'process.rss', 5000 * PAGE, { pid: '200', comm: 'mysqld', count: '1' }],
    [{ cgroup: '/system.slice/mysqld.service' }, 'process.threads', 30, { pid: '100', comm: 'mysqld', count: '2' }],
    // "/system.slice" takes itself and what is below it, not "/system.slice2"
    [{ cgroup: '/system.slice' }, 'process.fds', 50, { pid: '400', comm: 'mysqld-helper', count: '3' }],
    [{ cgroup: '/system.slice/' }, 'process.fds', 50, { pid: '400', comm: 'mysqld-helper', count: '3' }],
    [{ cgroup: '/system.slice2' }, 'process.rss', 9000 * PAGE, { pid: '300', comm: 'nginx', count: '1' }],
    [{ cgroup: '/system.slice/mysqld' }, 'process.rss', null, {}],
    [{ cgroup: '/' }, 'process.threads', 99, { pid: '400', comm: 'mysqld-helper', count: '5' }],
  ] as const)('%j %s', (selector, metric, value, labels) => {
    const sel = 'pidFile' in selector ? { pidFile: join(dir, 'mysqld.pid') } : selector;
    const { s } = sampler();
    expect(one(s, threshold('r', metric, sel))).toEqual({ kind: 'value', rule: 'r', t: 1_700_000_000_000, value, labels });
  });

  it('a tie goes to the lowest pid', () => {
    writeProc({ pid: 150, comm: 'mysqld', rss: 5000 });
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.rss', { name: 'mysqld' })).labels).toEqual({ pid: '150', comm: 'mysqld', count: '3' });
  });

  it('process.cpu: % of one CPU per process since the previous sample, null for a process first seen', () => {
    writeProc({ pid: 500, comm: 'worker', utime: 100, stime: 50, start: 5000 });
    writeProc({ pid: 501, comm: 'worker', utime: 0, stime: 0, start: 5001 });
    writeProc({ pid: 502, comm: 'worker', utime: 10, stime: 0, start: 5002 });
    const { s, clock } = sampler();
    const rule = threshold('cpu', 'process.cpu', { name: 'worker' });
    // the first sample has no baseline for anyone: no value, but the processes are there
    expect(one(s, rule)).toMatchObject({ value: null, labels: { count: '3' } });

    clock.advance(2000);
    // 500: one CPU for the whole 2 s (2 * HZ ticks); 501: a fifth of a CPU;
    // 502: exited and its pid reused (another start time): first seen, however busy;
    // 503: new since the last sample
    writeProc({ pid: 500, comm: 'worker', utime: 100 + HZ, stime: 50 + HZ, start: 5000 });
    writeProc({ pid: 501, comm: 'worker', utime: (2 * HZ) / 10, stime: (2 * HZ) / 10, start: 5001 });
    writeProc({ pid: 502, comm: 'worker', utime: 100 * HZ, stime: 0, start: 9999 });
    writeProc({ pid: 503, comm: 'worker', utime: 100 * HZ, stime: 0, start: 9998 });
    expect(one(s, rule)).toMatchObject({ value: 100, labels: { pid: '500', comm: 'worker', count: '4' } });

    clock.advance(1000);
    writeProc({ pid: 501, comm: 'worker', utime: (2 * HZ) / 10 + HZ / 4, stime: (2 * HZ) / 10, start: 5001 });
    rmSync(join(root, '500'), { recursive: true });
    rmSync(join(root, '502'), { recursive: true });
    rmSync(join(root, '503'), { recursive: true });
    expect(one(s, threshold('cpu', 'process.cpu', { pidFile: writePidFile('501\n') }))).toMatchObject({
      value: 25, labels: { pid: '501', comm: 'worker', count: '1' },
    });
  });

  it('process.cpu: the interval is per process (a pid sampled 2 s ago, not the last call, 1 s ago)', () => {
    writeProc({ pid: 600, comm: 'w', utime: 0, stime: 0, start: 1 });
    const { s, clock } = sampler();
    const cpu = threshold('c', 'process.cpu', { name: 'w' });
    one(s, cpu);
    clock.advance(1000);
    writeProc({ pid: 600, comm: 'w', utime: HZ / 2, stime: 0, start: 1 });
    expect(one(s, cpu).value).toBe(50);
    // a call that does not read pid 600 drops its history: no baseline for the next
    clock.advance(1000);
    one(s, threshold('l', 'load1'));
    expect(s.trackedProcesses).toBe(0);
    clock.advance(1000);
    expect(one(s, cpu)).toMatchObject({ value: null, labels: { count: '1' } });
  });

  it.each([
    ['missing', null],
    ['empty', ''],
    ['garbage', 'mysqld\n'],
    ['zero', '0\n'],
    ['negative', '-200\n'],
    ['a pid with trailing junk', '200abc\n'],
    ['a pid that does not exist', '4242\n'],
    ['huge', `${'9'.repeat(100_000)}\n`],
  ])('pid file %s: no process, value null', (_name, content) => {
    const path = join(dir, 'svc.pid');
    if (content !== null) writeFileSync(path, content);
    const { s } = sampler();
    for (const metric of ['process.rss', 'process.cpu', 'process.threads', 'process.fds']) {
      expect(one(s, threshold('r', metric, { pidFile: path }))).toMatchObject({ value: null, labels: {} });
    }
  });

  it('pid file read afresh every sample (the service restarted)', () => {
    const path = writePidFile('100\n');
    const { s } = sampler();
    const rule = threshold('r', 'process.rss', { pidFile: path });
    expect(one(s, rule).labels.pid).toBe('100');
    writeFileSync(path, '300\n');
    expect(one(s, rule).labels.pid).toBe('300');
    rmSync(path);
    expect(one(s, rule).value).toBeNull();
  });

  it('pid-file-symlink: a pid file that is a symlink is not followed', () => {
    writeFileSync(join(dir, 'target'), '200\n');
    symlinkSync(join(dir, 'target'), join(dir, 'link.pid'));
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.rss', { pidFile: join(dir, 'link.pid') }))).toMatchObject({ value: null, labels: {} });
  });

  it('comm-with-newline-and-quote: a hostile comm matches exactly and is only ever a label string', () => {
    const hostile = 'ev"il\n{"pid":1}\u001b[31m) R 1 2';
    writeProc({ pid: 700, comm: hostile, rss: 123, argv: ['x'] });
    // a comm that itself ends in a newline: the kernel adds one more
    writeProc({ pid: 701, comm: 'nl\n', rss: 1, argv: ['y'] });
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.rss', { name: hostile }))).toMatchObject({
      value: 123 * PAGE, labels: { pid: '700', comm: hostile, count: '1' },
    });
    expect(one(s, threshold('r', 'process.rss', { name: 'nl\n' })).labels).toEqual({ pid: '701', comm: 'nl\n', count: '1' });
    expect(one(s, threshold('r', 'process.rss', { name: 'nl' })).value).toBeNull();
    // the label of a cmdline match comes from stat's comm, counted from the last ')'
    expect(one(s, threshold('r', 'process.rss', { cmdline: '^x$' })).labels.comm).toBe(hostile);
  });

  it('a pattern that does not compile matches nothing and does not throw', () => {
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.rss', { cmdline: '(unclosed' }))).toMatchObject({ value: null, labels: {} });
  });

  it('a per-process metric without a selector has no value', () => {
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.rss', null))).toMatchObject({ value: null, labels: {} });
  });

  it('process.fds of a process whose fd directory cannot be read: not counted', () => {
    rmSync(join(root, '200', 'fd'), { recursive: true });
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.fds', { name: 'mysqld' }))).toMatchObject({ value: 3, labels: { pid: '100', count: '1' } });
  });

  it('a process gone between the listing and the read is skipped', () => {
    // a pid directory without its files: exited after readdir
    mkdirSync(join(root, '900'));
    writeFileSync(join(root, '900', 'comm'), 'mysqld\n');
    const { s } = sampler();
    expect(one(s, threshold('r', 'process.rss', { name: 'mysqld' })).labels).toEqual({ pid: '200', comm: 'mysqld', count: '2' });
  });
});

describe('cost', () => {
  it('reads each file at most once per sample, and only the files the rules need', () => {
    writeTree(root, SYSTEM_FILES);
    writeProc({ pid: 100, comm: 'mysqld', rss: 10, threads: 3, argv: ['mysqld', '-a'], cgroup: '/system.slice/m.service', fds: 2 });
    writeProc({ pid: 200, comm: 'nginx', rss: 20, threads: 4, argv: ['nginx', '-b'], cgroup: '/system.slice/n.service', fds: 2 });
    const pidFile = writePidFile('200\n');
    const rules = [
      threshold('load1', 'load1'), threshold('load15', 'load15'),
      threshold('mem', 'memory.available'), threshold('swap', 'swap.used'),
      threshold('psi1', 'psi.memory.some'), threshold('psi2', 'psi.memory.full'),
      threshold('cpu1', 'cpu'), threshold('cpu2', 'cpu'),
      threshold('rss', 'process.rss', { name: 'mysqld' }),
      threshold('thr', 'process.threads', { name: 'mysqld' }),
      threshold('pcpu', 'process.cpu', { name: 'nginx' }),
      threshold('fd', 'process.fds', { name: 'nginx' }),
      threshold('cm1', 'process.rss', { cmdline: 'mysqld' }),
      threshold('cm2', 'process.cpu', { cmdline: '-b$' }),
      threshold('cg1', 'process.rss', { cgroup: '/system.slice' }),
      threshold('cg2', 'process.threads', { cgroup: '/system.slice/n.service' }),
      threshold('pf1', 'process.rss', { pidFile }),
      threshold('pf2', 'process.fds', { pidFile }),
    ];
    const { s, clock } = sampler();
    for (let i = 0; i < 2; i++) {
      opened.clear();
      listed.clear();
      const evs = s.sample(rules);
      expect(evs.map((e) => e.rule)).toEqual(rules.map((r) => r.name));
      expect(evs.find((e) => e.rule === 'thr')!.value).toBe(3);
      const rel = (m: Map<string, number>) => [...m].map(([p, n]) => [p.replace(dir, ''), n] as const).sort();
      expect(rel(opened)).toEqual([
        ['/mysqld.pid', 1],
        ['/proc/100/cgroup', 1], ['/proc/100/cmdline', 1], ['/proc/100/comm', 1], ['/proc/100/stat', 1],
        ['/proc/200/cgroup', 1], ['/proc/200/cmdline', 1], ['/proc/200/comm', 1], ['/proc/200/stat', 1],
        ['/proc/loadavg', 1], ['/proc/meminfo', 1], ['/proc/pressure/memory', 1], ['/proc/stat', 1],
      ]);
      expect(rel(listed)).toEqual([['/proc', 1], ['/proc/200/fd', 1]]);
      clock.advance(1000);
    }
  });

  it('system rules alone never list /proc, and a name rule reads comm but not cmdline or cgroup', () => {
    writeTree(root, SYSTEM_FILES);
    writeProc({ pid: 100, comm: 'a', argv: ['a'] });
    writeProc({ pid: 200, comm: 'b', argv: ['b'] });
    const { s } = sampler();
    s.sample([threshold('l', 'load1'), threshold('f', 'fds')]);
    expect([...listed.keys()]).toEqual([]);
    expect([...opened.keys()].map((p) => p.replace(root, '')).sort()).toEqual(['/loadavg', '/sys/fs/file-nr']);
    opened.clear();
    s.sample([threshold('r', 'process.rss', { name: 'b' })]);
    // comm of everyone, stat only of the match
    expect([...opened.keys()].map((p) => p.replace(root, '')).sort()).toEqual(['/100/comm', '/200/comm', '/200/stat']);
    expect(s.lastScan).toEqual({ listed: 2, scanned: 2 });
  });

  it('stops scanning after maxProcessesScanned processes, the lowest pids first, and says so', () => {
    expect(MAX_PROCESSES_SCANNED).toBe(10_000);
    for (const pid of [7, 30, 4, 1000, 12, 5]) writeProc({ pid, comm: 'w', rss: pid, argv: ['w'] });
    // not pids
    mkdirSync(join(root, 'self'));
    mkdirSync(join(root, '0123'));
    mkdirSync(join(root, '12a'));
    const s = new MetricSampler({ procRoot: root, maxProcessesScanned: 4 });
    // 4, 5, 7, 12 are looked at; 30 and 1000 are beyond the cut
    expect(one(s, threshold('r', 'process.rss', { name: 'w' }))).toMatchObject({ value: 12 * PAGE, labels: { pid: '12', count: '4' } });
    expect(s.lastScan).toEqual({ listed: 6, scanned: 4 });
    expect([...opened.keys()].filter((p) => p.endsWith('/comm')).map((p) => p.replace(root, '')).sort())
      .toEqual(['/12/comm', '/4/comm', '/5/comm', '/7/comm']);
    expect(one(new MetricSampler({ procRoot: root }), threshold('r', 'process.rss', { cmdline: '^w$' })).labels.count).toBe('6');
  });

  it('keeps CPU history only for the processes of the last sample', () => {
    const { s, clock } = sampler();
    const rule = threshold('c', 'process.cpu', { name: 'w' });
    const live: number[] = [];
    for (let i = 0; i < 10; i++) {
      writeProc({ pid: 1000 + i, comm: 'w', utime: i, start: i });
      live.push(1000 + i);
    }
    for (let i = 0; i < 200; i++) {
      // one exits, one starts, every sample
      rmSync(join(root, String(live.shift())), { recursive: true });
      const pid = 2000 + i;
      writeProc({ pid, comm: 'w', utime: 0, start: pid });
      live.push(pid);
      s.sample([rule]);
      clock.advance(1000);
    }
    expect(s.trackedProcesses).toBe(10);
  });

  it('samples the real /proc with several rules in a few ms', () => {
    const s = new MetricSampler();
    const rules = [
      threshold('cpu', 'cpu'), threshold('mem', 'memory.available'), threshold('psi', 'psi.memory.some'),
      threshold('rss', 'process.rss', { name: 'node' }), threshold('thr', 'process.threads', { name: 'node' }),
      threshold('cm', 'process.cpu', { cmdline: 'vitest' }),
    ];
    const perSample = msPerSample(s, rules, 20);
    const scan = s.lastScan!;
    console.info(`metric sampler: ${perSample.toFixed(2)} ms per sample of ${rules.length} rules over ${scan.listed} processes`);
    // generous, for a loaded CI box: some 12 µs per process per file read on a small VM
    expect(perSample).toBeLessThan(Math.max(50, scan.listed * 0.2));
    const rss = s.sample(rules).find((e) => e.rule === 'rss')!;
    expect(rss.value).toBeGreaterThan(10 * 2 ** 20);
    expect(Number(rss.labels.count)).toBeGreaterThanOrEqual(1);
  });
});

function writePidFile(content: string): string {
  const path = join(dir, 'mysqld.pid');
  writeFileSync(path, content);
  return path;
}
