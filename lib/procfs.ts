// Reading /proc: pure parsers for the files the metrics recorder and the metric sampler
// both read, the host constants (USER_HZ, page size) their numbers are in, and a reader
// that reuses one buffer. Everything here takes text or a path; nothing hard-codes /proc.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { findProgram } from './programs.js';

/** USER_HZ: what /proc reports process times in on every architecture Node runs on. */
export const DEFAULT_CLOCK_TICKS = 100;
export const DEFAULT_PAGE_SIZE_BYTES = 4096;
/** A /proc file larger than this is cut (only /proc/stat's interrupt lines get near it). */
export const MAX_PROC_READ_BYTES = 1024 * 1024;

export interface CpuPercent {
  user: number; nice: number; system: number; idle: number;
  iowait: number; irq: number; softirq: number; steal: number;
}
/** Cumulative jiffies from the first line of /proc/stat, same keys as CpuPercent. */
export type CpuTimes = CpuPercent;

export interface LoadAvg { avg1: number; avg5: number; avg15: number }

export interface MemoryInfo {
  totalBytes: number;
  availableBytes: number;
  usedPct: number;
  swapTotalBytes: number;
  swapFreeBytes: number;
  /** null when there is no swap */
  swapUsedPct: number | null;
}

/** avg10 of one /proc/pressure file; `full` is null where the kernel has no such line (cpu before 5.13). */
export interface PressureAvg10 { some: number | null; full: number | null }

export interface PidStat { comm: string; utime: number; stime: number; startTime: number; rssPages: number }
export interface PidStatWithThreads extends PidStat { numThreads: number }

// ---------------------------------------------------------------------------------------
// Pure parsers. Each takes the text of one /proc file and returns null (or skips a line)
// rather than guess when the text does not look like what the kernel writes.

const CPU_KEYS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal'] as const;

/** Percentages are kept to two decimals: more is noise, and exact values make tests exact. */
export const round2 = (v: number): number => Math.round(v * 100) / 100;

/** A finite number from a field of /proc text, or null (missing, empty, not a number). */
export function finiteNumber(s: string | undefined): number | null {
  if (s === undefined || s === '') return null;
  const v = Number(s);
  return Number.isFinite(v) ? v : null;
}

/** The aggregate "cpu" line of /proc/stat (guest time is already inside user/nice). */
export function parseProcStat(text: string): CpuTimes | null {
  const nl = text.indexOf('\n');
  const first = nl < 0 ? text : text.slice(0, nl);
  const parts = first.trim().split(/\s+/);
  if (parts[0] !== 'cpu') return null;
  const out = {} as CpuTimes;
  for (let i = 0; i < CPU_KEYS.length; i++) {
    // Kernels before 2.6.11 lack steal (and older ones iowait/irq): count them as 0.
    const v = parts[i + 1] === undefined ? 0 : finiteNumber(parts[i + 1]);
    if (v === null || (i < 4 && parts[i + 1] === undefined)) return null;
    out[CPU_KEYS[i]!] = v;
  }
  return out;
}

/** Per-state share of the interval between two /proc/stat readings, in %; null if no time passed. */
export function cpuPercent(prev: CpuTimes, cur: CpuTimes): CpuPercent | null {
  // iowait (and idle, around CPU hotplug) can step backwards on NO_HZ kernels: clamp at 0.
  const d = CPU_KEYS.map((k) => Math.max(0, cur[k] - prev[k]));
  const total = d.reduce((a, b) => a + b, 0);
  if (total <= 0) return null;
  const out = {} as CpuPercent;
  CPU_KEYS.forEach((k, i) => { out[k] = round2((d[i]! * 100) / total); });
  return out;
}

/** "0.52 0.58 0.59 1/345 12345" */
export function parseLoadavg(text: string): LoadAvg | null {
  const [a, b, c] = text.trim().split(/\s+/);
  const avg1 = finiteNumber(a);
  const avg5 = finiteNumber(b);
  const avg15 = finiteNumber(c);
  return avg1 === null || avg5 === null || avg15 === null ? null : { avg1, avg5, avg15 };
}

/** MemTotal/MemAvailable/SwapTotal/SwapFree in kB → bytes and used %. */
export function parseMeminfo(text: string): MemoryInfo | null {
  const kb = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) kb.set(m[1]!, Number(m[2]) * 1024);
  }
  const total = kb.get('MemTotal');
  // MemAvailable exists since 3.14; before it, free + page cache is the usual estimate.
  const available = kb.get('MemAvailable')
    ?? (kb.has('MemFree') ? (kb.get('MemFree') ?? 0) + (kb.get('Buffers') ?? 0) + (kb.get('Cached') ?? 0) : undefined);
  if (total === undefined || available === undefined || total <= 0) return null;
  const swapTotal = kb.get('SwapTotal') ?? 0;
  const swapFree = kb.get('SwapFree') ?? 0;
  return {
    totalBytes: total,
    availableBytes: available,
    usedPct: round2(((total - Math.min(available, total)) * 100) / total),
    swapTotalBytes: swapTotal,
    swapFreeBytes: swapFree,
    swapUsedPct: swapTotal > 0 ? round2(((swapTotal - Math.min(swapFree, swapTotal)) * 100) / swapTotal) : null,
  };
}

/** "some avg10=1.23 avg60=… total=…\nfull avg10=…" → the two avg10 values. */
export function parsePressure(text: string): PressureAvg10 | null {
  const out: PressureAvg10 = { some: null, full: null };
  for (const line of text.split('\n')) {
    const m = /^(some|full)\s.*?\bavg10=(\d+(?:\.\d+)?)/.exec(line);
    if (m) out[m[1] as 'some' | 'full'] = Number(m[2]);
  }
  return out.some === null && out.full === null ? null : out;
}

/**
 * /proc/PID/stat. comm sits in parentheses and may itself contain ") R 1 2 …", spaces
 * and newlines, so the fields are counted from the last ')'. The resident set is taken
 * from field 24 (the same get_mm_rss() that statm reports), so one read per process suffices.
 */
export function parsePidStat(text: string): PidStat | null {
  return walkPidStat(text, false);
}

/** parsePidStat plus field 20, the number of threads. */
export function parsePidStatWithThreads(text: string): PidStatWithThreads | null {
  return walkPidStat(text, true) as PidStatWithThreads | null;
}

function walkPidStat(text: string, withThreads: boolean): PidStat | PidStatWithThreads | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  // Walk the space-separated fields after comm without splitting the whole line (this runs
  // for every process in every sample). Field 3 (state) starts at close + 2.
  let utime = -1;
  let stime = -1;
  let numThreads = -1;
  let startTime = -1;
  let rssPages = -1;
  let pos = close + 2;
  for (let field = 3; field <= 24 && pos < text.length; field++) {
    let end = text.indexOf(' ', pos);
    if (end < 0) end = text.length;
    if (field === 14 || field === 15 || field === 22 || field === 24 || (withThreads && field === 20)) {
      const v = finiteNumber(text.slice(pos, end));
      if (v === null) return null;
      if (field === 14) utime = v;
      else if (field === 15) stime = v;
      else if (field === 20) numThreads = v;
      else if (field === 22) startTime = v;
      else rssPages = v;
    }
    pos = end + 1;
  }
  if (utime < 0 || stime < 0 || startTime < 0 || rssPages === -1) return null;
  const comm = text.slice(open + 1, close);
  // Two shapes rather than an optional member: callers that compare whole objects (the
  // recorder's tests) see exactly the five fields they always saw.
  if (!withThreads) return { comm, utime, stime, startTime, rssPages: Math.max(0, rssPages) };
  if (numThreads < 0) return null;
  return { comm, utime, stime, startTime, rssPages: Math.max(0, rssPages), numThreads };
}

/** /proc/sys/fs/file-nr "allocated\tunused\tmax": the allocated file handles. */
export function parseFileNr(text: string): number | null {
  const v = finiteNumber(text.trim().split(/\s+/)[0]);
  return v !== null && v >= 0 ? v : null;
}

/**
 * The cgroup v2 path of /proc/PID/cgroup: the "0::/path" line (hybrid hosts list the v1
 * hierarchies first). null on a v1-only host or for text that has no such line.
 */
export function parseCgroupV2(text: string): string | null {
  for (const line of text.split('\n')) {
    if (line.startsWith('0::')) return line.slice(3);
  }
  return null;
}

/**
 * /proc/PID/cmdline as one string: the NUL-separated arguments joined by spaces (the
 * terminating NUL dropped, as ps does). Empty for kernel threads and zombies.
 */
export function cmdlineText(raw: string): string {
  const body = raw.endsWith('\0') ? raw.slice(0, -1) : raw;
  return body.replaceAll('\0', ' ');
}

// ---------------------------------------------------------------------------------------
// Host constants and /proc reading.

let hostConstantsCache: { clockTicks: number; pageSizeBytes: number } | undefined;

function getconf(name: string): number | null {
  const prog = findProgram('getconf');
  if (prog === null) return null;
  try {
    const out = execFileSync(prog, [name], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] });
    const v = Number(out.trim());
    return Number.isSafeInteger(v) && v > 0 ? v : null;
  } catch {
    return null;
  }
}

/** USER_HZ and the page size, asked of getconf once per process (the defaults where it is missing). */
export function hostConstants(): { clockTicks: number; pageSizeBytes: number } {
  hostConstantsCache ??= {
    clockTicks: getconf('CLK_TCK') ?? DEFAULT_CLOCK_TICKS,
    pageSizeBytes: getconf('PAGESIZE') ?? DEFAULT_PAGE_SIZE_BYTES,
  };
  return hostConstantsCache;
}

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = constants;

/**
 * Reads small /proc files into one reused buffer: a sample opens some 300 files, and a
 * fresh Buffer for each would be most of the garbage it makes.
 */
export class ProcFileReader {
  #buf = Buffer.allocUnsafe(16 * 1024);

  /**
   * The file's text (cut at `max` bytes), or null when it cannot be opened or read (a
   * process that exited). `oneRead`: the file is generated whole by its first read (a
   * single_open seq_file such as /proc/PID/stat), so the read that would return 0 is skipped.
   */
  read(path: string, max = MAX_PROC_READ_BYTES, oneRead = false): string | null {
    const limit = Math.min(max, MAX_PROC_READ_BYTES);
    let fd: number;
    try {
      fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch {
      return null;
    }
    try {
      let n = 0;
      while (n < limit) {
        if (n === this.#buf.length) {
          const bigger = Buffer.allocUnsafe(Math.min(this.#buf.length * 2, MAX_PROC_READ_BYTES));
          this.#buf.copy(bigger, 0, 0, n);
          this.#buf = bigger;
        }
        const r = readSync(fd, this.#buf, n, Math.min(this.#buf.length, limit) - n, null);
        if (r === 0) break;
        n += r;
        if (oneRead) break;
      }
      return this.#buf.toString('utf8', 0, n);
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }
}
