// The built-in flight recorder: /proc sampled every interval into a fixed-capacity ring
// (CPU by state, load, memory and swap, PSI pressure, disk and network rates, the top
// processes by CPU and RSS). No privileges, no dependencies, memory bounded by the ring.
// A snapshot is the ring as JSON Lines plus a short human summary.
import { readdirSync } from 'node:fs';
import type { Config } from '../lib/config.js';
import { FlightboxError, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import {
  ProcFileReader, cpuPercent, finiteNumber as num, hostConstants, parseLoadavg, parseMeminfo, parsePidStat,
  parsePressure, parseProcStat, round2,
  type CpuPercent, type CpuTimes, type LoadAvg, type MemoryInfo, type PressureAvg10,
} from '../lib/procfs.js';
import { writeFileExclusive } from '../lib/safe-fs.js';
import { formatSize } from '../lib/units.js';
import { RecorderUnavailable, type Recorder, type RecorderState, type RecorderStatus, type SnapshotResult } from './recorder.js';

// The /proc parsers live in lib/procfs.ts (the metric sampler of triggers/ reads the same
// files); re-exported here for the recorder's existing users.
export {
  DEFAULT_CLOCK_TICKS, DEFAULT_PAGE_SIZE_BYTES, MAX_PROC_READ_BYTES, cpuPercent, hostConstants, parseLoadavg,
  parseMeminfo, parsePidStat, parsePressure, parseProcStat,
} from '../lib/procfs.js';
export type { CpuPercent, CpuTimes, LoadAvg, MemoryInfo, PidStat, PressureAvg10 } from '../lib/procfs.js';

/** Shorter intervals are raised to this: sampling must stay a rounding error of one CPU. */
export const MIN_METRICS_INTERVAL_MS = 100;
/** The ring never holds more than this many samples (10 h at 1 s, roughly 50 MB). */
export const MAX_METRICS_SAMPLES = 36_000;
/** Disks and network interfaces kept per sample (the busiest); a host with thousands of veths stays bounded. */
export const MAX_METRICS_DEVICES = 64;
/** /proc/diskstats counts 512-byte sectors whatever the device's real sector size. */
export const DISKSTATS_SECTOR_BYTES = 512;

export const SAMPLES_FILE = 'samples.jsonl';
export const SUMMARY_FILE = 'summary.txt';

// ---------------------------------------------------------------------------------------
// The sample: one JSON object per line of samples.jsonl. Lists, never objects keyed by a
// name: an interface may legally be called "__proto__".

export interface DiskRate { name: string; readBytesPerSec: number | null; writeBytesPerSec: number | null }
export interface NetRate { name: string; rxBytesPerSec: number | null; txBytesPerSec: number | null }

export interface ProcessRow {
  pid: number;
  /** chosen by the process: data only, never interpreted or used as a name */
  comm: string;
  /** 100 = one CPU for the whole interval (like top); null in a baseline sample */
  cpuPct: number | null;
  rssBytes: number;
}

export interface MetricsSample {
  /** ms since the epoch, from the recorder's clock */
  t: number;
  /** ms since the previous reading the rates and percentages cover; null for a baseline */
  intervalMs: number | null;
  cpu: CpuPercent | null;
  load: LoadAvg | null;
  memory: MemoryInfo | null;
  /** every member null where the kernel has no PSI (CONFIG_PSI off, psi=0) */
  pressure: { cpu: PressureAvg10 | null; memory: PressureAvg10 | null; io: PressureAvg10 | null };
  disks: DiskRate[];
  net: NetRate[];
  /** processes that used CPU in the interval, busiest first */
  topCpu: ProcessRow[];
  topRss: ProcessRow[];
}

// ---------------------------------------------------------------------------------------
// Pure parsers of the files only the recorder reads (the shared ones are in lib/procfs.ts).
// Each returns null (or skips a line) rather than guess when the text does not look like
// what the kernel writes.

export interface DiskCounters { name: string; readBytes: number; writeBytes: number }

/**
 * A partition whose whole disk is also listed: "sda1" under "sda", "nvme0n1p2" under
 * "nvme0n1", "mmcblk0p1" under "mmcblk0". Counting both would count every byte twice.
 */
export function isPartitionOf(name: string, names: ReadonlySet<string>): boolean {
  const base = name.replace(/\d+$/, '');
  if (base === name || base === '') return false;
  if (names.has(base)) return true;
  // "nvme0n1p2": the parent ends in a digit, so the partition number follows a 'p'.
  const parent = base.slice(0, -1);
  return base.endsWith('p') && /\d$/.test(parent) && names.has(parent);
}

const VIRTUAL_DISK_RE = /^(loop|ram)\d+$/;

/** Whole devices of /proc/diskstats with cumulative bytes read and written; loop and ram devices skipped. */
export function parseDiskstats(text: string): DiskCounters[] {
  const rows: DiskCounters[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    // major minor name reads rd_merged rd_sectors rd_ms writes wr_merged wr_sectors …
    const name = f[2];
    const rd = num(f[5]);
    const wr = num(f[9]);
    if (name === undefined || rd === null || wr === null || VIRTUAL_DISK_RE.test(name)) continue;
    rows.push({ name, readBytes: rd * DISKSTATS_SECTOR_BYTES, writeBytes: wr * DISKSTATS_SECTOR_BYTES });
  }
  const names = new Set(rows.map((r) => r.name));
  return rows.filter((r) => !isPartitionOf(r.name, names));
}

export interface NetCounters { name: string; rxBytes: number; txBytes: number }

/** /proc/net/dev: "  eth0: rx_bytes rx_packets … (8 rx fields) tx_bytes …". */
export function parseNetDev(text: string): NetCounters[] {
  const rows: NetCounters[] = [];
  for (const line of text.split('\n')) {
    // Interface names cannot contain ':' (dev_valid_name), so the first one ends the name;
    // big counters may follow it without a space ("eth0:153876775").
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    const f = line.slice(colon + 1).trim().split(/\s+/);
    const rx = num(f[0]);
    const tx = num(f[8]);
    if (name === '' || rx === null || tx === null) continue;
    rows.push({ name, rxBytes: rx, txBytes: tx });
  }
  return rows;
}

/** Samples the ring holds: ceil(window / interval), at least 1, at most MAX_METRICS_SAMPLES. */
export function ringCapacity(intervalMs: number, windowMs: number): number {
  return Math.min(MAX_METRICS_SAMPLES, Math.max(1, Math.ceil(windowMs / intervalMs)));
}

/** Bytes per second between two cumulative counters; null when there is no earlier reading or it went back (reset). */
export function ratePerSec(cur: number, prev: number | undefined, dtMs: number): number | null {
  if (prev === undefined || dtMs <= 0 || cur < prev) return null;
  return Math.round(((cur - prev) * 1000) / dtMs);
}

/** "1 s", "500 ms", "10 min", "1 h 30 min": for status lines and the summary. */
export function formatDurationMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const parts = [h ? `${h} h` : '', m ? `${m} min` : '', sec ? `${sec} s` : ''].filter(Boolean);
  return parts.join(' ');
}

// Characters JSON.stringify leaves raw that a terminal may act on (DEL, C1 controls such as
// CSI U+009B) or that reorder what a reader sees (bidi overrides): written as \uXXXX, which
// is still valid JSON and parses back to the same string.
const TERMINAL_UNSAFE_RE = /[\u007f-\u009f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** JSON text safe to `cat` to a terminal. */
export function toSafeJson(value: unknown): string {
  return JSON.stringify(value).replace(TERMINAL_UNSAFE_RE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

interface Stat { min: number; max: number; sum: number; n: number; last: number | null }

/** The human summary of a window of samples (oldest first). */
export function summarizeSamples(samples: readonly MetricsSample[], intervalMs: number): string {
  const first = samples[0];
  const last = samples.at(-1);
  if (first === undefined || last === undefined) return 'flightbox metrics: no samples recorded.\n';
  const rows: [string, (s: MetricsSample) => number | null | undefined][] = [
    ['cpu busy %', (s) => (s.cpu ? round2(100 - s.cpu.idle - s.cpu.iowait) : null)],
    ['cpu iowait %', (s) => s.cpu?.iowait],
    ['cpu steal %', (s) => s.cpu?.steal],
    ['load 1 min', (s) => s.load?.avg1],
    ['load 5 min', (s) => s.load?.avg5],
    ['load 15 min', (s) => s.load?.avg15],
    ['memory used %', (s) => s.memory?.usedPct],
    ['swap used %', (s) => s.memory?.swapUsedPct],
    ['psi cpu some %', (s) => s.pressure.cpu?.some],
    ['psi memory some %', (s) => s.pressure.memory?.some],
    ['psi memory full %', (s) => s.pressure.memory?.full],
    ['psi io some %', (s) => s.pressure.io?.some],
    ['psi io full %', (s) => s.pressure.io?.full],
  ];
  const fmt = (v: number | null): string => (v === null ? 'n/a' : v.toFixed(2)).padStart(9);
  const lines = [
    `flightbox metrics: ${samples.length} sample${samples.length === 1 ? '' : 's'} over ${formatDurationMs(last.t - first.t)} (${formatDurationMs(intervalMs)} interval)`,
    `from ${new Date(first.t).toISOString()} to ${new Date(last.t).toISOString()}`,
    '',
    `${''.padEnd(20)}${'min'.padStart(9)}${'avg'.padStart(9)}${'max'.padStart(9)}${'last'.padStart(9)}`,
  ];
  for (const [label, get] of rows) {
    const st: Stat = { min: Infinity, max: -Infinity, sum: 0, n: 0, last: null };
    for (const s of samples) {
      const v = get(s);
      if (v === null || v === undefined) continue;
      st.min = Math.min(st.min, v);
      st.max = Math.max(st.max, v);
      st.sum += v;
      st.n++;
    }
    st.last = get(last) ?? null;
    if (st.n === 0) {
      lines.push(`${label.padEnd(20)}${fmt(null)}${fmt(null)}${fmt(null)}${fmt(null)}`);
      continue;
    }
    lines.push(`${label.padEnd(20)}${fmt(st.min)}${fmt(st.sum / st.n)}${fmt(st.max)}${fmt(st.last)}`);
  }
  if (last.memory) {
    lines.push('', `memory: ${formatSize(last.memory.totalBytes)} total, ${formatSize(last.memory.availableBytes)} available; swap: ${formatSize(last.memory.swapTotalBytes)} total, ${formatSize(last.memory.swapFreeBytes)} free (last sample)`);
  }
  const table = (title: string, procs: readonly ProcessRow[]) => {
    lines.push('', title);
    if (procs.length === 0) {
      lines.push('  (none)');
      return;
    }
    lines.push(`  ${'pid'.padStart(8)} ${'cpu %'.padStart(8)} ${'rss'.padStart(10)}  comm`);
    for (const p of procs) {
      const cpu = p.cpuPct === null ? 'n/a' : p.cpuPct.toFixed(1);
      // comm is quoted as JSON: a newline or escape sequence in it stays visible text.
      lines.push(`  ${String(p.pid).padStart(8)} ${cpu.padStart(8)} ${formatSize(p.rssBytes).padStart(10)}  ${toSafeJson(p.comm)}`);
    }
  };
  table('top processes by CPU (last sample):', last.topCpu);
  table('top processes by RSS (last sample):', last.topRss);
  return `${lines.join('\n')}\n`;
}

// ---------------------------------------------------------------------------------------
// The recorder's own state.

interface TrackedProcess { ticks: number; startTime: number; seen: number }

interface Previous {
  t: number;
  cpu: CpuTimes | null;
  disks: Map<string, DiskCounters>;
  net: Map<string, NetCounters>;
}

const NOOP_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** The busiest `max` devices of a sample (all of them when there are few). */
function busiest<T>(rows: T[], max: number, load: (r: T) => number): T[] {
  if (rows.length <= max) return rows;
  return rows.sort((a, b) => load(b) - load(a)).slice(0, max);
}

/** Insert into a list kept sorted by `key` descending and at most `n` long. */
function offerTop(list: ProcessRow[], n: number, row: ProcessRow, key: (r: ProcessRow) => number): void {
  const v = key(row);
  if (list.length >= n && v <= key(list[list.length - 1]!)) return;
  let i = list.length;
  while (i > 0 && key(list[i - 1]!) < v) i--;
  list.splice(i, 0, row);
  if (list.length > n) list.pop();
}

// ---------------------------------------------------------------------------------------

export interface MetricsRecorderOptions {
  /** where /proc is (tests point this at a fake tree) */
  procRoot?: string;
  /** ms since the epoch; also the clock the rates are computed with */
  now?: () => number;
  log?: Logger;
}

export class MetricsRecorder implements Recorder {
  readonly name = 'metrics' as const;
  readonly intervalMs: number;
  readonly capacity: number;
  readonly #topProcesses: number;
  readonly #procRoot: string;
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #reader = new ProcFileReader();

  // The ring: a pre-allocated array, the slot the next sample goes into, and how many are held.
  readonly #ring: (MetricsSample | undefined)[];
  /** each sample's line of samples.jsonl, made as it is taken: a snapshot then only joins them (600 samples: ~7 ms less on the crash's path) */
  readonly #lines: (string | undefined)[];
  #next = 0;
  #count = 0;

  #timer: NodeJS.Timeout | null = null;
  #frozen = false;
  #error: string | null = null;
  #prev: Previous | null = null;
  /** pid → CPU ticks at the last sample; entries of processes not seen in a sample are dropped. */
  readonly #procs = new Map<number, TrackedProcess>();
  #generation = 0;
  /** sources already complained about: a missing file is logged once, not every second */
  readonly #warned = new Set<string>();

  constructor(cfg: Config['recorders']['metrics'], opts: MetricsRecorderOptions = {}) {
    this.#procRoot = opts.procRoot ?? '/proc';
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log ?? NOOP_LOG;
    if (!Number.isFinite(cfg.intervalMs) || !Number.isFinite(cfg.windowMs)) {
      throw new FlightboxError('CONFIG_INVALID', `recorders.metrics: interval and window must be finite, got ${cfg.intervalMs} ms and ${cfg.windowMs} ms`);
    }
    this.intervalMs = Math.max(MIN_METRICS_INTERVAL_MS, cfg.intervalMs);
    if (this.intervalMs !== cfg.intervalMs) {
      this.#log.warn({ intervalMs: cfg.intervalMs }, 'Metrics interval raised to the minimum of %d ms', MIN_METRICS_INTERVAL_MS);
    }
    this.capacity = ringCapacity(this.intervalMs, cfg.windowMs);
    if (this.capacity === MAX_METRICS_SAMPLES && Math.ceil(cfg.windowMs / this.intervalMs) > MAX_METRICS_SAMPLES) {
      this.#log.warn({ windowMs: cfg.windowMs }, 'Metrics window cut to %d samples', MAX_METRICS_SAMPLES);
    }
    this.#topProcesses = Math.max(0, Math.floor(cfg.topProcesses));
    this.#ring = new Array<MetricsSample | undefined>(this.capacity).fill(undefined);
    this.#lines = new Array<string | undefined>(this.capacity).fill(undefined);
  }

  async start(): Promise<void> {
    if (this.#timer !== null) return;
    if (this.#reader.read(`${this.#procRoot}/stat`, 4096) === null) {
      this.#error = `cannot read ${this.#procRoot}/stat`;
      throw new RecorderUnavailable('metrics', `${this.#error}; is /proc mounted?`);
    }
    this.#error = null;
    this.#frozen = false;
    this.tick(); // the baseline: levels now, rates from the next tick on
    this.#timer = setInterval(() => {
      try {
        this.tick();
      } catch (err) {
        this.#warnOnce('tick', 'Metrics sample failed, ignoring: %s', messageOf(err));
      }
    }, this.intervalMs);
    // The recorder must never be what keeps a process alive.
    this.#timer.unref();
  }

  async freeze(): Promise<void> {
    this.#frozen = true;
  }

  async thaw(): Promise<void> {
    this.#frozen = false;
  }

  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#frozen = false;
    // A later start() begins with a fresh baseline rather than a rate over the stopped gap.
    this.#prev = null;
    this.#procs.clear();
  }

  /**
   * Take one sample into the ring, unless frozen: what the timer calls, public so tests can
   * drive the recorder with a fake clock. Returns the sample, or null when frozen.
   */
  tick(): MetricsSample | null {
    if (this.#frozen) return null;
    const sample = this.#sample();
    this.#ring[this.#next] = sample;
    this.#lines[this.#next] = toSafeJson(sample);
    this.#next = (this.#next + 1) % this.capacity;
    if (this.#count < this.capacity) this.#count++;
    return sample;
  }

  /** The samples held, oldest first. */
  samples(): MetricsSample[] {
    return this.#held(this.#ring);
  }

  /** A ring's entries for the samples held, oldest first. */
  #held<T>(ring: readonly (T | undefined)[]): T[] {
    const out: T[] = [];
    const start = (this.#next - this.#count + this.capacity) % this.capacity;
    for (let i = 0; i < this.#count; i++) {
      const s = ring[(start + i) % this.capacity];
      if (s !== undefined) out.push(s);
    }
    return out;
  }

  /** Processes whose CPU time is being tracked (for tests of the memory bound). */
  get trackedProcesses(): number {
    return this.#procs.size;
  }

  async snapshot(dir: string, _deadline: number): Promise<SnapshotResult> {
    await this.freeze();
    const warnings: string[] = [];
    // Each sample's line was made when it was taken (frozen: no sample is added meanwhile):
    // joined and written at once, nothing here for the deadline to cut short.
    const kept = this.samples();
    const lines = this.#held(this.#lines);
    if (kept.length === 0) warnings.push('no samples recorded yet');
    // Mandatory: an existing samples.jsonl (O_EXCL) or a symlink at the name (O_NOFOLLOW) fails the snapshot.
    // Not fsynced here: whoever puts a snapshot into a bundle syncs the bundle (hard links: the same files).
    writeFileExclusive(dir, SAMPLES_FILE, lines.length > 0 ? `${lines.join('\n')}\n` : '', 0o640, { sync: false });
    const files = [SAMPLES_FILE];
    try {
      writeFileExclusive(dir, SUMMARY_FILE, summarizeSamples(kept, this.intervalMs), 0o640, { sync: false });
      files.push(SUMMARY_FILE);
    } catch (err) {
      warnings.push(`Failed to write ${SUMMARY_FILE}, ignoring: ${messageOf(err)}`);
    }
    return { files, warnings, from: kept[0]?.t ?? null, to: kept.at(-1)?.t ?? null };
  }

  status(): RecorderStatus {
    const newest = this.#count > 0 ? this.#ring[(this.#next - 1 + this.capacity) % this.capacity] : undefined;
    // Approximate: the newest sample's JSON size stands for all of them.
    const perSample = newest === undefined ? null : toSafeJson(newest).length + 1;
    let state: RecorderState = 'stopped';
    if (this.#error !== null) state = 'failed';
    else if (this.#timer !== null) state = this.#frozen ? 'frozen' : 'running';
    return {
      name: 'metrics',
      state,
      bufferBytes: perSample === null ? null : perSample * this.capacity,
      usedBytes: perSample === null ? null : perSample * this.#count,
      eventsLost: 0,
      detail: `${formatDurationMs(this.intervalMs)} interval, ${this.capacity} samples (${formatDurationMs(this.capacity * this.intervalMs)})`,
      error: this.#error,
    };
  }

  #warnOnce(key: string, msg: string, ...args: unknown[]): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    this.#log.warn({ recorder: 'metrics', source: key }, msg, ...args);
  }

  /** Read a /proc file; a missing one is logged once (unless optional, as PSI is) and gives null. */
  #text(rel: string, optional = false, max?: number): string | null {
    const text = this.#reader.read(`${this.#procRoot}/${rel}`, max);
    if (text === null && !optional) this.#warnOnce(rel, 'Failed to read %s/%s, ignoring', this.#procRoot, rel);
    return text;
  }

  #sample(): MetricsSample {
    const t = this.#now();
    const prev = this.#prev;
    const dt = prev === null ? null : t - prev.t;
    const dtMs = dt ?? 0;

    // Only the first line of /proc/stat is used; the interrupt lines after it can be long.
    const statText = this.#text('stat', false, 16 * 1024);
    const cpuTimes = statText === null ? null : parseProcStat(statText);
    const loadText = this.#text('loadavg');
    const memText = this.#text('meminfo');
    const pressure = {
      cpu: this.#pressure('cpu'),
      memory: this.#pressure('memory'),
      io: this.#pressure('io'),
    };

    const diskText = this.#text('diskstats');
    const disks = diskText === null ? [] : parseDiskstats(diskText);
    const diskRates = busiest(
      disks.map((d): DiskRate => ({
        name: d.name,
        readBytesPerSec: ratePerSec(d.readBytes, prev?.disks.get(d.name)?.readBytes, dtMs),
        writeBytesPerSec: ratePerSec(d.writeBytes, prev?.disks.get(d.name)?.writeBytes, dtMs),
      })),
      MAX_METRICS_DEVICES,
      (r) => (r.readBytesPerSec ?? 0) + (r.writeBytesPerSec ?? 0),
    );
    const netText = this.#text('net/dev');
    const ifaces = netText === null ? [] : parseNetDev(netText);
    const netRates = busiest(
      ifaces.map((n): NetRate => ({
        name: n.name,
        rxBytesPerSec: ratePerSec(n.rxBytes, prev?.net.get(n.name)?.rxBytes, dtMs),
        txBytesPerSec: ratePerSec(n.txBytes, prev?.net.get(n.name)?.txBytes, dtMs),
      })),
      MAX_METRICS_DEVICES,
      (r) => (r.rxBytesPerSec ?? 0) + (r.txBytesPerSec ?? 0),
    );

    const { topCpu, topRss } = this.#processes(dt);

    this.#prev = {
      t,
      cpu: cpuTimes,
      disks: new Map(disks.map((d) => [d.name, d])),
      net: new Map(ifaces.map((n) => [n.name, n])),
    };
    return {
      t,
      intervalMs: dt,
      cpu: cpuTimes && prev?.cpu ? cpuPercent(prev.cpu, cpuTimes) : null,
      load: loadText === null ? null : parseLoadavg(loadText),
      memory: memText === null ? null : parseMeminfo(memText),
      pressure,
      disks: diskRates,
      net: netRates,
      topCpu,
      topRss,
    };
  }

  #pressure(kind: 'cpu' | 'memory' | 'io'): PressureAvg10 | null {
    // Absent without CONFIG_PSI or with psi=0 (and unreadable in some containers): null, no warning.
    const text = this.#text(`pressure/${kind}`, true);
    return text === null ? null : parsePressure(text);
  }

  /**
   * One pass over /proc/PID/stat (one open and read per process): CPU % from the change in
   * utime+stime since the last sample, RSS from the same file. `dt` is null for a baseline.
   */
  #processes(dt: number | null): { topCpu: ProcessRow[]; topRss: ProcessRow[] } {
    const topCpu: ProcessRow[] = [];
    const topRss: ProcessRow[] = [];
    const n = this.#topProcesses;
    if (n === 0) {
      this.#procs.clear();
      return { topCpu, topRss };
    }
    let names: string[];
    try {
      names = readdirSync(this.#procRoot);
    } catch (err) {
      this.#warnOnce('pids', 'Failed to list %s, ignoring: %s', this.#procRoot, messageOf(err));
      return { topCpu, topRss };
    }
    const { clockTicks, pageSizeBytes } = hostConstants();
    const gen = ++this.#generation;
    // ticks → % of one CPU over the interval
    const pctPerTick = dt !== null && dt > 0 ? (100 * 1000) / (clockTicks * dt) : null;
    for (const name of names) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(name);
      if (!Number.isSafeInteger(pid) || String(pid) !== name) continue;
      const text = this.#reader.read(`${this.#procRoot}/${name}/stat`, 4096, true);
      if (text === null) continue; // exited between readdir and open
      const st = parsePidStat(text);
      if (st === null) continue;
      const ticks = st.utime + st.stime;
      const known = this.#procs.get(pid);
      let cpuPct: number | null = null;
      if (pctPerTick !== null) {
        // A pid not seen at the last sample (or reused since) started after it: all of its
        // CPU time falls inside this interval.
        const before = known !== undefined && known.startTime === st.startTime ? known.ticks : 0;
        cpuPct = round2(Math.max(0, ticks - before) * pctPerTick);
      }
      if (known === undefined) this.#procs.set(pid, { ticks, startTime: st.startTime, seen: gen });
      else {
        known.ticks = ticks;
        known.startTime = st.startTime;
        known.seen = gen;
      }
      const rssBytes = st.rssPages * pageSizeBytes;
      const cpuQualifies = cpuPct !== null && cpuPct > 0
        && (topCpu.length < n || cpuPct > (topCpu[topCpu.length - 1]!.cpuPct ?? 0));
      const rssQualifies = rssBytes > 0 && (topRss.length < n || rssBytes > topRss[topRss.length - 1]!.rssBytes);
      if (!cpuQualifies && !rssQualifies) continue;
      const row: ProcessRow = { pid, comm: st.comm, cpuPct, rssBytes };
      if (cpuQualifies) offerTop(topCpu, n, row, (r) => r.cpuPct ?? 0);
      if (rssQualifies) offerTop(topRss, n, row, (r) => r.rssBytes);
    }
    // Bounded by the live processes: forget every pid this pass did not see.
    for (const [pid, p] of this.#procs) if (p.seen !== gen) this.#procs.delete(pid);
    return { topCpu, topRss };
  }
}
