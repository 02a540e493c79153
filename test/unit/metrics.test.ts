import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../lib/config.js';
import {
  MetricsRecorder, cpuPercent, formatDurationMs, hostConstants, isPartitionOf, parseDiskstats, parseLoadavg,
  parseMeminfo, parseNetDev, parsePidStat, parsePressure, parseProcStat, ratePerSec, ringCapacity, toSafeJson,
  type MetricsSample,
} from '../../recorder/metrics.js';
import { killAndWait, waitUntil, writeTree } from '../helpers.js';
import { pidStat } from '../metric-fixtures.js';

type MetricsConfig = Config['recorders']['metrics'];
const cfg = (over: Partial<MetricsConfig> = {}): MetricsConfig => ({ ...defaultConfig().recorders.metrics, ...over });
const { clockTicks: HZ, pageSizeBytes: PAGE } = hostConstants();

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-metrics-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// Fixture text, as the kernel writes it.

const STAT_1 = 'cpu  1000 100 500 8000 200 50 40 10 0 0\ncpu0 500 50 250 4000 100 25 20 5 0 0\nintr 12345 0 1 2\nctxt 999\n';
// deltas: user +100, nice +20, system +40, idle +200, iowait +20, irq +8, softirq +4, steal +8 = 400
const STAT_2 = 'cpu  1100 120 540 8200 220 58 44 18 0 0\ncpu0 550 60 270 4100 110 29 22 9 0 0\nintr 12400 0 1 2\nctxt 1999\n';

const MEMINFO = [
  'MemTotal:       16000000 kB',
  'MemFree:         2000000 kB',
  'MemAvailable:   12000000 kB',
  'Buffers:          100000 kB',
  'Cached:          5000000 kB',
  'SwapTotal:       2000000 kB',
  'SwapFree:        1500000 kB',
  'HugePages_Total:       0',
  '',
].join('\n');

const PSI_CPU = 'some avg10=12.34 avg60=5.00 avg300=1.00 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n';
const PSI_MEMORY = 'some avg10=1.50 avg60=0.50 avg300=0.10 total=777\nfull avg10=0.75 avg60=0.25 avg300=0.05 total=333\n';
const PSI_IO_OLD_CPU_STYLE = 'some avg10=3.21 avg60=1.00 avg300=0.50 total=42\n';

const disk = (major: number, minor: number, name: string, rdSectors: number, wrSectors: number) =>
  `${String(major).padStart(4)} ${String(minor).padStart(7)} ${name} 10 0 ${rdSectors} 5 20 0 ${wrSectors} 7 0 12 12 0 0 0 0 0 0`;
const diskstats = (scale: number) => `${[
  disk(7, 0, 'loop0', 800 * scale, 0),
  disk(1, 0, 'ram0', 100 * scale, 100 * scale),
  disk(8, 0, 'sda', 4000 * scale, 8000 * scale),
  disk(8, 1, 'sda1', 3000 * scale, 7000 * scale),
  disk(8, 16, 'sdp', 10 * scale, 20 * scale),
  disk(8, 17, 'sdp1', 10 * scale, 20 * scale),
  disk(259, 0, 'nvme0n1', 100 * scale, 200 * scale),
  disk(259, 1, 'nvme0n1p1', 100 * scale, 200 * scale),
  disk(253, 0, 'dm-0', 50 * scale, 60 * scale),
  disk(202, 1, 'xvda1', 1 * scale, 2 * scale),
].join('\n')}\n`;

const netdev = (rxEth: number, txEth: number) => [
  'Inter-|   Receive                                                |  Transmit',
  ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
  `    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0    0     0       0          0`,
  // a big counter runs into the colon, as the kernel prints it
  `  eth0:${rxEth}    5247    0    0    0     0          0         0 ${txEth}    3617    0    0    0     0       0          0`,
  // legal interface name; stored in a list, it cannot touch a prototype
  `__proto__:      10       1    0    0    0     0          0         0       20       2    0    0    0     0       0          0`,
  '',
].join('\n');

interface FakeProc { pid: number; comm: string; utime: number; stime: number; start: number; rss: number }

/** Write a fake /proc tree: the system files plus one directory per process. */
function writeProc(root: string, files: Record<string, string | null>, procs: FakeProc[] = []): void {
  mkdirSync(join(root, 'net'), { recursive: true });
  writeTree(root, files);
  for (const name of readdirSync(root)) if (/^\d+$/.test(name)) rmSync(join(root, name), { recursive: true });
  for (const p of procs) {
    mkdirSync(join(root, String(p.pid)));
    writeFileSync(join(root, String(p.pid), 'stat'), pidStat(p));
    writeFileSync(join(root, String(p.pid), 'comm'), `${p.comm}\n`);
  }
}

const BASE_FILES = {
  stat: STAT_1,
  loadavg: '1.50 0.75 0.25 3/456 7890\n',
  meminfo: MEMINFO,
  'pressure/cpu': PSI_CPU,
  'pressure/memory': PSI_MEMORY,
  'pressure/io': PSI_IO_OLD_CPU_STYLE,
  diskstats: diskstats(1),
  'net/dev': netdev(100_000, 50_000),
};

/** A recorder on a fake /proc with a clock the test moves. */
function fakeRecorder(over: Partial<MetricsConfig> = {}, root = join(dir, 'proc')) {
  let t = 1_700_000_000_000;
  const clock = { advance: (ms: number) => { t += ms; }, now: () => t };
  writeProc(root, BASE_FILES, [{ pid: 1, comm: 'init', utime: 1, stime: 1, start: 1, rss: 100 }]);
  return { rec: new MetricsRecorder(cfg({ intervalMs: 1000, windowMs: 5000, ...over }), { procRoot: root, now: clock.now }), clock, root };
}

/** A fake recorder that took `ticks` samples a second apart, and an empty directory to snapshot into. */
function ticked(ticks: number, over: Partial<MetricsConfig> = {}): { rec: MetricsRecorder; out: string } {
  const { rec, clock } = fakeRecorder(over);
  for (let i = 0; i < ticks; i++) {
    rec.tick();
    clock.advance(1000);
  }
  const out = join(dir, 'snap');
  mkdirSync(out);
  return { rec, out };
}

function readJsonl(path: string): MetricsSample[] {
  const text = readFileSync(path, 'utf8');
  expect(text.endsWith('\n')).toBe(true);
  return text.slice(0, -1).split('\n').map((l) => JSON.parse(l) as MetricsSample);
}

// ---------------------------------------------------------------------------------------

describe('parsers (pure)', () => {
  it('reads the aggregate cpu line of /proc/stat', () => {
    expect(parseProcStat(STAT_1)).toEqual({ user: 1000, nice: 100, system: 500, idle: 8000, iowait: 200, irq: 50, softirq: 40, steal: 10 });
    expect(parseProcStat('cpu0 1 2 3 4\n')).toBeNull();
    expect(parseProcStat('cpu  1 2 x 4 5 6 7 8\n')).toBeNull();
    // a 2.6.10-era line without steal counts steal as 0
    expect(parseProcStat('cpu 1 2 3 4 5 6 7\n')?.steal).toBe(0);
  });

  it('turns two /proc/stat readings into per-state percentages', () => {
    expect(cpuPercent(parseProcStat(STAT_1)!, parseProcStat(STAT_2)!)).toEqual({
      user: 25, nice: 5, system: 10, idle: 50, iowait: 5, irq: 2, softirq: 1, steal: 2,
    });
    expect(cpuPercent(parseProcStat(STAT_1)!, parseProcStat(STAT_1)!)).toBeNull();
  });

  it.each([
    ['1.50 0.75 0.25 3/456 7890\n', { avg1: 1.5, avg5: 0.75, avg15: 0.25 }],
    ['0.00 0.01 12.34 1/1 1', { avg1: 0, avg5: 0.01, avg15: 12.34 }],
    ['garbage', null],
  ])('parseLoadavg(%j)', (text, want) => {
    expect(parseLoadavg(text)).toEqual(want);
  });

  it.each([
    ['with swap', MEMINFO, {
      totalBytes: 16_384_000_000, availableBytes: 12_288_000_000, usedPct: 25,
      swapTotalBytes: 2_048_000_000, swapFreeBytes: 1_536_000_000, swapUsedPct: 25,
    }],
    ['no swap', 'MemTotal: 1000 kB\nMemAvailable: 250 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n', {
      totalBytes: 1_024_000, availableBytes: 256_000, usedPct: 75, swapTotalBytes: 0, swapFreeBytes: 0, swapUsedPct: null,
    }],
    ['before MemAvailable (3.13)', 'MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n', {
      totalBytes: 1_024_000, availableBytes: 409_600, usedPct: 60, swapTotalBytes: 0, swapFreeBytes: 0, swapUsedPct: null,
    }],
    ['no MemTotal', 'MemFree: 100 kB\n', null],
  ])('parseMeminfo: %s', (_name, text, want) => {
    expect(parseMeminfo(text)).toEqual(want);
  });

  it.each([
    ['cpu', PSI_CPU, { some: 12.34, full: 0 }],
    ['memory', PSI_MEMORY, { some: 1.5, full: 0.75 }],
    ['cpu before 5.13 (no full line)', PSI_IO_OLD_CPU_STYLE, { some: 3.21, full: null }],
    ['empty', '', null],
  ])('parsePressure: %s', (_name, text, want) => {
    expect(parsePressure(text)).toEqual(want);
  });

  it.each([
    ['sda1', ['sda', 'sda1'], true],
    ['sda12', ['sda', 'sda12'], true],
    ['sdp1', ['sdp', 'sdp1'], true],
    ['nvme0n1p2', ['nvme0n1', 'nvme0n1p2'], true],
    ['mmcblk0p1', ['mmcblk0', 'mmcblk0p1'], true],
    ['nvme0n1', ['nvme0n1'], false],
    ['xvda1', ['xvda1'], false],
    ['dm-0', ['dm-0'], false],
    ['sda', ['sda', 'sda1'], false],
  ])('isPartitionOf(%s)', (name, names, want) => {
    expect(isPartitionOf(name, new Set(names))).toBe(want);
  });

  it('keeps whole disks of /proc/diskstats in bytes, without loop, ram and partitions of listed disks', () => {
    expect(parseDiskstats(diskstats(1))).toEqual([
      { name: 'sda', readBytes: 4000 * 512, writeBytes: 8000 * 512 },
      { name: 'sdp', readBytes: 10 * 512, writeBytes: 20 * 512 },
      { name: 'nvme0n1', readBytes: 100 * 512, writeBytes: 200 * 512 },
      { name: 'dm-0', readBytes: 50 * 512, writeBytes: 60 * 512 },
      { name: 'xvda1', readBytes: 512, writeBytes: 1024 },
    ]);
  });

  it('reads rx/tx bytes of every interface of /proc/net/dev', () => {
    const rows = parseNetDev(netdev(153_876_775, 367_077));
    expect(rows).toEqual([
      { name: 'lo', rxBytes: 3193, txBytes: 3193 },
      { name: 'eth0', rxBytes: 153_876_775, txBytes: 367_077 },
      { name: '__proto__', rxBytes: 10, txBytes: 20 },
    ]);
    expect(Object.getPrototypeOf(rows[2])).toBe(Object.prototype);
  });

  it.each([
    ['plain', pidStat({ pid: 42, comm: 'nginx', utime: 11, stime: 22, start: 333, rss: 44 }), { comm: 'nginx', utime: 11, stime: 22, startTime: 333, rssPages: 44 }],
    ['comm with spaces and parens', pidStat({ pid: 42, comm: 'a (b) c', utime: 1, stime: 2, start: 3, rss: 4 }), { comm: 'a (b) c', utime: 1, stime: 2, startTime: 3, rssPages: 4 }],
    // a comm that forges the fields that follow it: counted from the last ')', the forgery is just comm
    ['comm forging fields', pidStat({ pid: 42, comm: 'x) R 1 1 1 0 -1 0 0 0 0 0 999999 999999', utime: 5, stime: 6, start: 7, rss: 8 }),
      { comm: 'x) R 1 1 1 0 -1 0 0 0 0 0 999999 999999', utime: 5, stime: 6, startTime: 7, rssPages: 8 }],
    ['comm with newline and quote', pidStat({ pid: 42, comm: 'a\n"b', utime: 1, stime: 1, start: 1, rss: 1 }), { comm: 'a\n"b', utime: 1, stime: 1, startTime: 1, rssPages: 1 }],
    ['truncated', '42 (x) S 1 2 3', null],
    ['no parentheses', '42 x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22', null],
  ])('parsePidStat: %s', (_name, text, want) => {
    expect(parsePidStat(text)).toEqual(want);
  });

  it.each([
    [1000, 600_000, 600],
    [1000, 5000, 5],
    [1000, 5500, 6],
    [1000, 10, 1],
    [1, 10 * 86_400_000, 36_000],
  ])('ringCapacity(%d ms, %d ms) = %d', (interval, window, want) => {
    expect(ringCapacity(interval, window)).toBe(want);
  });

  it.each([
    [2000, 1000, 1000, 1000],
    [2000, undefined, 1000, null],
    [500, 1000, 1000, null], // counter reset
    [2000, 1000, 0, null],
  ])('ratePerSec(%d, %j, %d ms) = %j', (cur, prev, dt, want) => {
    expect(ratePerSec(cur, prev, dt)).toBe(want);
  });

  it.each([
    [500, '500 ms'], [1000, '1 s'], [600_000, '10 min'], [5_400_000, '1 h 30 min'], [61_000, '1 min 1 s'],
  ])('formatDurationMs(%d) = %s', (ms, want) => {
    expect(formatDurationMs(ms)).toBe(want);
  });

  it('toSafeJson escapes terminal controls JSON leaves raw, and still round-trips', () => {
    const s = 'a\u009b31mb\u007f\u202ec\u001b[0m"\n';
    const json = toSafeJson({ s });
    expect(json).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    expect(JSON.parse(json)).toEqual({ s });
  });
});

describe('MetricsRecorder on a fake /proc', () => {
  it('computes exact levels, percentages and rates from two samples', () => {
    const { rec, clock, root } = fakeRecorder();
    writeProc(root, BASE_FILES, [
      { pid: 100, comm: 'busy', utime: 50, stime: 50, start: 1000, rss: 1000 },
      { pid: 200, comm: 'idle', utime: 10, stime: 0, start: 2000, rss: 5000 },
      { pid: 250, comm: 'reused', utime: 500, stime: 0, start: 2500, rss: 10 },
    ]);
    const base = rec.tick()!;
    expect(base).toMatchObject({
      t: 1_700_000_000_000,
      intervalMs: null,
      cpu: null,
      load: { avg1: 1.5, avg5: 0.75, avg15: 0.25 },
      memory: { totalBytes: 16_384_000_000, usedPct: 25, swapUsedPct: 25 },
      pressure: { cpu: { some: 12.34, full: 0 }, memory: { some: 1.5, full: 0.75 }, io: { some: 3.21, full: null } },
      topCpu: [],
    });
    expect(base.disks.every((d) => d.readBytesPerSec === null && d.writeBytesPerSec === null)).toBe(true);
    expect(base.topRss.map((p) => [p.pid, p.rssBytes, p.cpuPct])).toEqual([[200, 5000 * PAGE, null], [100, 1000 * PAGE, null], [250, 10 * PAGE, null]]);

    clock.advance(2000);
    writeProc(root, { ...BASE_FILES, stat: STAT_2, diskstats: diskstats(3), 'net/dev': netdev(300_000, 90_000), 'pressure/io': null }, [
      // one CPU for the whole 2 s
      { pid: 100, comm: 'busy', utime: 50 + HZ, stime: 50 + HZ, start: 1000, rss: 1200 },
      { pid: 200, comm: 'idle', utime: 10, stime: 0, start: 2000, rss: 5000 },
      // pid 250 reused by a new process (other start time): its 0.5 s of CPU are all new
      { pid: 250, comm: 'new-owner', utime: HZ / 2, stime: 0, start: 9000, rss: 10 },
      // appeared since the baseline: a fifth of a CPU over 2 s
      { pid: 300, comm: 'fresh', utime: HZ / 5, stime: HZ / 5, start: 9500, rss: 20 },
    ]);
    const s = rec.tick()!;
    expect(s.t).toBe(1_700_000_002_000);
    expect(s.intervalMs).toBe(2000);
    expect(s.cpu).toEqual({ user: 25, nice: 5, system: 10, idle: 50, iowait: 5, irq: 2, softirq: 1, steal: 2 });
    // /proc/pressure/io vanished: null, no error
    expect(s.pressure).toEqual({ cpu: { some: 12.34, full: 0 }, memory: { some: 1.5, full: 0.75 }, io: null });
    expect(s.disks).toEqual([
      { name: 'sda', readBytesPerSec: (8000 * 512) / 2, writeBytesPerSec: (16000 * 512) / 2 },
      { name: 'sdp', readBytesPerSec: (20 * 512) / 2, writeBytesPerSec: (40 * 512) / 2 },
      { name: 'nvme0n1', readBytesPerSec: (200 * 512) / 2, writeBytesPerSec: (400 * 512) / 2 },
      { name: 'dm-0', readBytesPerSec: (100 * 512) / 2, writeBytesPerSec: (120 * 512) / 2 },
      { name: 'xvda1', readBytesPerSec: 512, writeBytesPerSec: 1024 },
    ]);
    expect(s.net).toEqual([
      { name: 'lo', rxBytesPerSec: 0, txBytesPerSec: 0 },
      { name: 'eth0', rxBytesPerSec: 100_000, txBytesPerSec: 20_000 },
      { name: '__proto__', rxBytesPerSec: 0, txBytesPerSec: 0 },
    ]);
    expect(s.topCpu).toEqual([
      { pid: 100, comm: 'busy', cpuPct: 100, rssBytes: 1200 * PAGE },
      { pid: 250, comm: 'new-owner', cpuPct: 25, rssBytes: 10 * PAGE },
      { pid: 300, comm: 'fresh', cpuPct: 20, rssBytes: 20 * PAGE },
    ]);
    expect(s.topRss.map((p) => [p.pid, p.cpuPct])).toEqual([[200, 0], [100, 100], [300, 20], [250, 25]]);
  });

  it('keeps only the configured number of top processes, and none when topProcesses is 0', () => {
    const procs = Array.from({ length: 20 }, (_, i): FakeProc => ({ pid: 10 + i, comm: `p${i}`, utime: 0, stime: 0, start: 1, rss: i + 1 }));
    const { rec, root } = fakeRecorder({ topProcesses: 3 });
    writeProc(root, BASE_FILES, procs);
    expect(rec.tick()!.topRss.map((p) => p.pid)).toEqual([29, 28, 27]);
    const { rec: none } = fakeRecorder({ topProcesses: 0 }, join(dir, 'proc2'));
    const s = none.tick()!;
    expect([s.topCpu, s.topRss, none.trackedProcesses]).toEqual([[], [], 0]);
  });

  it('records nulls (and logs once) when /proc files are missing', () => {
    const warned: string[] = [];
    const log = { debug() {}, info() {}, error() {}, warn: (_c: object, m: string) => { warned.push(m); } };
    const root = join(dir, 'empty');
    mkdirSync(root);
    const rec = new MetricsRecorder(cfg(), { procRoot: root, log });
    for (let i = 0; i < 3; i++) rec.tick();
    const s = rec.samples().at(-1)!;
    expect([s.cpu, s.load, s.memory, s.pressure, s.disks, s.net]).toEqual([null, null, null, { cpu: null, memory: null, io: null }, [], []]);
    // stat, loadavg, meminfo, diskstats, net/dev: each once, PSI never
    expect(warned).toHaveLength(5);
  });

  it('start() refuses a tree without /proc/stat', async () => {
    const rec = new MetricsRecorder(cfg(), { procRoot: join(dir, 'nowhere') });
    await expect(rec.start()).rejects.toMatchObject({ name: 'RecorderUnavailable', recorder: 'metrics' });
    expect(rec.status()).toMatchObject({ state: 'failed', error: expect.stringContaining('nowhere/stat') });
  });
});

describe('the ring', () => {
  it('holds exactly window / interval samples, the newest, oldest first', async () => {
    const { rec, clock } = fakeRecorder({ intervalMs: 1000, windowMs: 5000 });
    expect(rec.capacity).toBe(5);
    const times: number[] = [];
    for (let i = 0; i < 12; i++) {
      times.push(rec.tick()!.t);
      clock.advance(1000);
    }
    expect(rec.samples().map((s) => s.t)).toEqual(times.slice(-5));
    const out = join(dir, 'snap');
    mkdirSync(out);
    const r = await rec.snapshot(out, Date.now() + 10_000);
    expect(readJsonl(join(out, 'samples.jsonl')).map((s) => s.t)).toEqual(times.slice(-5));
    expect([r.from, r.to]).toEqual([times[7], times[11]]);
  });

  it('stays bounded through 5000 samples while processes come and go', () => {
    const { rec, clock, root } = fakeRecorder({ intervalMs: 1000, windowMs: 10_000 });
    const live: number[] = [];
    let heapBefore = 0;
    const gc = exposeGc();
    for (let i = 0; i < 10; i++) {
      mkdirSync(join(root, String(1000 + i)));
      writeFileSync(join(root, String(1000 + i), 'stat'), pidStat({ pid: 1000 + i, comm: `w${i}`, utime: i, stime: i, start: i, rss: 10 + i }));
      live.push(1000 + i);
    }
    for (let i = 0; i < 5000; i++) {
      // every tick one process exits and another starts (the oldest directory renamed to a new pid)
      const pid = 2000 + i;
      renameSync(join(root, String(live.shift())), join(root, String(pid)));
      live.push(pid);
      rec.tick();
      clock.advance(1000);
      if (i === 999 && gc !== null) {
        gc();
        heapBefore = process.memoryUsage().heapUsed;
      }
    }
    expect(rec.samples()).toHaveLength(10);
    // ten workers plus the fake init
    expect(rec.trackedProcesses).toBe(11);
    if (gc !== null) {
      // 4000 more samples of about 1 KB each: a ring that kept them would grow by megabytes
      gc();
      expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(2 * 1024 * 1024);
    }
  });

  it('stays bounded on the real /proc', () => {
    const rec = new MetricsRecorder(cfg({ intervalMs: 1000, windowMs: 20_000, topProcesses: 5 }));
    for (let i = 0; i < 300; i++) rec.tick();
    const liveNow = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length;
    expect(rec.samples()).toHaveLength(20);
    expect(rec.trackedProcesses).toBeLessThanOrEqual(liveNow + 20);
    expect(rec.trackedProcesses).toBeGreaterThan(0);
    const s = rec.samples().at(-1)!;
    expect(s.memory?.totalBytes).toBeGreaterThan(0);
    expect(s.load?.avg1).toBeGreaterThanOrEqual(0);
    expect(s.topRss.length).toBeGreaterThan(0);
    expect(rec.status().usedBytes).toBe(rec.status().bufferBytes);
  });
});

describe('freeze, thaw, start, stop', () => {
  it('freeze stops the ring changing; thaw resumes', async () => {
    const { rec, clock } = fakeRecorder({ windowMs: 10_000 });
    await rec.start();
    expect(rec.status().state).toBe('running');
    clock.advance(1000);
    rec.tick();
    await rec.freeze();
    await rec.freeze();
    expect(rec.status().state).toBe('frozen');
    const frozen = rec.samples().map((s) => s.t);
    for (let i = 0; i < 3; i++) {
      clock.advance(1000);
      expect(rec.tick()).toBeNull();
    }
    expect(rec.samples().map((s) => s.t)).toEqual(frozen);
    await rec.thaw();
    expect(rec.status().state).toBe('running');
    const after = rec.tick()!;
    // the first sample after thaw covers the whole frozen gap, and says so
    expect(after.intervalMs).toBe(3000);
    expect(rec.samples().map((s) => s.t)).toEqual([...frozen, after.t]);
    await rec.stop();
    await rec.stop();
    expect(rec.status().state).toBe('stopped');
  });

  it('start() takes a baseline at once and then samples on its (unref\'d) timer', async () => {
    const root = join(dir, 'proc');
    writeProc(root, BASE_FILES);
    const rec = new MetricsRecorder(cfg({ intervalMs: 100, windowMs: 60_000 }), { procRoot: root });
    await rec.start();
    expect(rec.samples()).toHaveLength(1);
    await rec.start(); // idempotent: no second baseline
    expect(rec.samples()).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 450));
    const n = rec.samples().length;
    expect(n).toBeGreaterThanOrEqual(3);
    await rec.stop();
    await new Promise((r) => setTimeout(r, 250));
    expect(rec.samples()).toHaveLength(n);
  });

  it('status() describes the ring and estimates its size', () => {
    const rec = new MetricsRecorder(cfg(), { procRoot: join(dir, 'proc') });
    expect(rec.status()).toEqual({
      name: 'metrics', state: 'stopped', bufferBytes: null, usedBytes: null, eventsLost: 0,
      detail: '1 s interval, 600 samples (10 min)', error: null,
    });
    const { rec: small } = fakeRecorder({ intervalMs: 1000, windowMs: 5000 });
    const s = small.tick()!;
    const per = toSafeJson(s).length + 1;
    expect(small.status()).toMatchObject({ bufferBytes: 5 * per, usedBytes: per, detail: '1 s interval, 5 samples (5 s)' });
  });

  it('raises a too-short interval to the minimum', () => {
    const rec = new MetricsRecorder(cfg({ intervalMs: 0, windowMs: 1000 }), { procRoot: join(dir, 'proc') });
    expect([rec.intervalMs, rec.capacity]).toEqual([100, 10]);
  });
});

describe('snapshot', () => {
  it('writes samples.jsonl and summary.txt, and freezes', async () => {
    const { rec, clock, root } = fakeRecorder({ windowMs: 10_000 });
    writeProc(root, BASE_FILES, [{ pid: 100, comm: 'busy', utime: 0, stime: 0, start: 1, rss: 256 }]);
    rec.tick();
    clock.advance(1000);
    writeProc(root, { ...BASE_FILES, stat: STAT_2 }, [{ pid: 100, comm: 'busy', utime: HZ / 2, stime: 0, start: 1, rss: 256 }]);
    rec.tick();
    const out = join(dir, 'snap');
    mkdirSync(out);
    const r = await rec.snapshot(out, Date.now() + 10_000);
    expect(r).toEqual({ files: ['samples.jsonl', 'summary.txt'], warnings: [], from: 1_700_000_000_000, to: 1_700_000_001_000 });
    expect(rec.tick()).toBeNull(); // frozen by the snapshot, not thawed
    const lines = readJsonl(join(out, 'samples.jsonl'));
    expect(lines).toHaveLength(2);
    expect(lines[1]!.topCpu).toEqual([{ pid: 100, comm: 'busy', cpuPct: 50, rssBytes: 256 * PAGE }]);
    const summary = readFileSync(join(out, 'summary.txt'), 'utf8');
    expect(summary).toContain('2 samples over 1 s (1 s interval)');
    expect(summary).toMatch(/^cpu busy %\s+45\.00\s+45\.00\s+45\.00\s+45\.00$/m);
    expect(summary).toMatch(/^load 1 min\s+1\.50\s+1\.50\s+1\.50\s+1\.50$/m);
    expect(summary).toMatch(/^psi memory full %\s+0\.75/m);
    expect(summary).toMatch(/^\s+100\s+50\.0\s+1\.0 MiB\s+"busy"$/m);
  });

  it('fails rather than overwrite an existing samples.jsonl (O_EXCL)', async () => {
    const { rec } = fakeRecorder();
    rec.tick();
    const out = join(dir, 'snap');
    mkdirSync(out);
    await rec.snapshot(out, Date.now() + 10_000);
    const before = readFileSync(join(out, 'samples.jsonl'), 'utf8');
    await expect(rec.snapshot(out, Date.now() + 10_000)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(join(out, 'samples.jsonl'), 'utf8')).toBe(before);
  });

  it('symlink planted at samples.jsonl: the write fails and the target is untouched', async () => {
    const { rec } = fakeRecorder();
    rec.tick();
    const out = join(dir, 'snap');
    mkdirSync(out);
    writeFileSync(join(dir, 'victim'), 'precious');
    symlinkSync(join(dir, 'victim'), join(out, 'samples.jsonl'));
    await expect(rec.snapshot(out, Date.now() + 10_000)).rejects.toThrow();
    expect(readFileSync(join(dir, 'victim'), 'utf8')).toBe('precious');
  });

  it('past its deadline, still writes every sample: their lines were made as they were taken', async () => {
    const { rec, out } = ticked(200, { windowMs: 200_000 });
    const r = await rec.snapshot(out, 0);
    const lines = readJsonl(join(out, 'samples.jsonl'));
    expect(lines).toEqual(JSON.parse(JSON.stringify(rec.samples())));
    expect(r.warnings).toEqual([]);
    expect(r.from).toBe(lines[0]!.t);
  });

  it('after the ring wrapped: the lines of the samples held, oldest first, each the JSON of its sample', async () => {
    const { rec, out } = ticked(173, { windowMs: 50_000 });
    await rec.snapshot(out, Date.now() + 10_000);
    const text = readFileSync(join(out, 'samples.jsonl'), 'utf8');
    expect(text).toBe(`${rec.samples().map((x) => toSafeJson(x)).join('\n')}\n`);
    expect(text.split('\n')).toHaveLength(rec.capacity + 1);
  });

  it('an empty ring gives an empty samples.jsonl and a warning', async () => {
    const rec = new MetricsRecorder(cfg(), { procRoot: join(dir, 'proc') });
    const out = join(dir, 'snap');
    mkdirSync(out);
    const r = await rec.snapshot(out, Date.now() + 10_000);
    expect(r).toMatchObject({ from: null, to: null, warnings: ['no samples recorded yet'] });
    expect(readFileSync(join(out, 'samples.jsonl'), 'utf8')).toBe('');
  });
});

describe('hostile comm', () => {
  const HOSTILE = 'ev"il\n{"pid":1}\u001b[31m\u009b2J) R 1 2';

  it('comm-with-newline-and-quote (fake /proc): round-trips through samples.jsonl as a JSON string', async () => {
    const { rec, clock, root } = fakeRecorder();
    writeProc(root, BASE_FILES, [{ pid: 666, comm: HOSTILE, utime: 0, stime: 0, start: 5, rss: 99_999 }]);
    rec.tick();
    clock.advance(1000);
    writeProc(root, BASE_FILES, [{ pid: 666, comm: HOSTILE, utime: HZ, stime: 0, start: 5, rss: 99_999 }]);
    rec.tick();
    const out = join(dir, 'snap');
    mkdirSync(out);
    await rec.snapshot(out, Date.now() + 10_000);
    const raw = readFileSync(join(out, 'samples.jsonl'), 'utf8');
    // two samples, two lines: the newline in comm did not split a record
    expect(raw.split('\n')).toHaveLength(3);
    expect(raw).not.toMatch(/[\u001b\u009b]/);
    const lines = readJsonl(join(out, 'samples.jsonl'));
    expect(lines[1]!.topCpu).toEqual([{ pid: 666, comm: HOSTILE, cpuPct: 100, rssBytes: 99_999 * PAGE }]);
    expect(lines[1]!.topRss[0]!.comm).toBe(HOSTILE);
    const summary = readFileSync(join(out, 'summary.txt'), 'utf8');
    expect(summary).toContain(JSON.stringify(HOSTILE).replace('\u009b', '\\u009b'));
    expect(summary.split('\n').some((l) => l.startsWith('{"pid":1}'))).toBe(false);
  });

  it('comm-with-newline-and-quote (a real process, named by its executable)', async () => {
    // The kernel takes comm from the basename of the executed path: a symlink to sh named
    // with a quote and a newline gives a real process that hostile comm.
    const name = 'ev"il\n)x';
    const link = join(dir, name);
    symlinkSync('/bin/sh', link);
    const child = spawn(link, ['-c', 'while :; do :; done'], { stdio: 'ignore' });
    try {
      await waitUntil(() => readProcComm(child.pid!) === name, 'the child to have its comm', 5000, 20);
      const rec = new MetricsRecorder(cfg({ topProcesses: 10 }));
      rec.tick();
      await new Promise((r) => setTimeout(r, 700));
      rec.tick();
      const out = join(dir, 'snap');
      mkdirSync(out);
      await rec.snapshot(out, Date.now() + 10_000);
      const last = readJsonl(join(out, 'samples.jsonl')).at(-1)!;
      expect(last.topCpu.find((p) => p.pid === child.pid)?.comm).toBe(name);
    } finally {
      await killAndWait(child);
    }
  });
});

describe('top processes on the real /proc', () => {
  it('finds a busy child in top-by-CPU and a 200 MB child in top-by-RSS', async () => {
    const busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
    const big = spawn(process.execPath, ['-e', "globalThis.b = Buffer.alloc(200 * 2 ** 20, 1); process.stdout.write('ready\\n'); setInterval(() => {}, 1e6)"], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        big.stdout!.once('data', () => resolve());
        big.once('exit', (code) => reject(new Error(`allocating child exited with ${code}`)));
      });
      const rec = new MetricsRecorder(cfg({ topProcesses: 10 }));
      const t0 = performance.now();
      rec.tick();
      const costMs = performance.now() - t0;
      await new Promise((r) => setTimeout(r, 1000));
      const s = rec.tick()!;
      expect(s.intervalMs).toBeGreaterThanOrEqual(990);
      const hot = s.topCpu.find((p) => p.pid === busy.pid);
      expect(hot, JSON.stringify(s.topCpu)).toBeDefined();
      expect(hot!.cpuPct).toBeGreaterThan(20);
      const fat = s.topRss.find((p) => p.pid === big.pid);
      expect(fat, JSON.stringify(s.topRss)).toBeDefined();
      expect(fat!.rssBytes).toBeGreaterThan(200 * 2 ** 20);
      // generous, for a loaded CI box: the real cost is a few ms
      expect(costMs).toBeLessThan(500);
    } finally {
      await Promise.all([killAndWait(busy), killAndWait(big)]);
    }
  });
});

// ---------------------------------------------------------------------------------------

function readProcComm(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').replace(/\n$/, '');
  } catch {
    return null;
  }
}

/** global.gc without --expose-gc on the command line; null (heap not checked) if V8 refuses. */
function exposeGc(): (() => void) | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc === 'function') return gc as () => void;
  } catch {
    // fall through
  }
  return null;
}
