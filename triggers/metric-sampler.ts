// The threshold source: each call to sample() measures, for every threshold rule, the
// system-wide or per-process metric it watches and reports it as a `value` event for the
// rule engine. A call reads each /proc file at most once, and only the files its rules
// need; the only state kept between calls is what CPU percentages are computed from.
import { readdirSync, statfsSync } from 'node:fs';
import {
  ProcFileReader, cmdlineText, cpuPercent, hostConstants, parseCgroupV2, parseFileNr, parseLoadavg, parseMeminfo,
  parsePidStatWithThreads, parsePressure, parseProcStat, round2, type CpuTimes, type PidStatWithThreads,
} from '../lib/procfs.js';
import { PROCESS_METRICS, type Condition, type ProcessSelector, type Rule, type TriggerEvent } from '../lib/rules.js';

/**
 * By default, at most this many processes are considered per sample by the scanning
 * selectors (name, cmdline, cgroup), the lowest pids first: a fork bomb must not turn
 * every sample into seconds of reading (some 10 µs per file). lastScan says when the cut was made.
 */
export const MAX_PROCESSES_SCANNED = 10_000;
/** A longer command line is matched on its first this many bytes. */
export const MAX_CMDLINE_BYTES = 64 * 1024;
/** A pid file is a number and a newline; more than this is not a pid file. */
export const MAX_PID_FILE_BYTES = 64;
/** /proc/PID/comm is at most 16 bytes with its newline (TASK_COMM_LEN); the margin costs nothing. */
const MAX_COMM_BYTES = 256;
/** /proc/PID/stat is some 300 bytes; a comm full of ')' cannot make it longer than this. */
const MAX_PID_STAT_BYTES = 4096;
/**
 * /proc/PID/cgroup: one line per hierarchy (a dozen on a hybrid host), the v2 line last.
 * Read in one read(2) of this size (see #cgroup); longer text loses the v2 line, and the
 * process is not selected.
 */
const MAX_CGROUP_BYTES = 16 * 1024;
/** Only the first line of /proc/stat is used; the interrupt lines after it can be long. */
const MAX_STAT_BYTES = 16 * 1024;
/** pid_max cannot exceed PID_MAX_LIMIT (4 Mi) on any architecture. */
const PID_MAX_LIMIT = 4 * 1024 * 1024;

const PROCESS_METRIC_SET: ReadonlySet<string> = new Set(PROCESS_METRICS);

export type ValueEvent = Extract<TriggerEvent, { kind: 'value' }>;
type Threshold = Extract<Condition, { kind: 'threshold' }>;

/** The two fields of statfs(2) disk.free is computed from. */
export interface FsUsage { bavail: number; blocks: number }

export interface MetricSamplerOptions {
  /** where /proc is (tests point this at a fake tree) */
  procRoot?: string;
  /** ms since the epoch: the events' `t`, and the clock process CPU % is computed with */
  now?: () => number;
  /** statfs(2) of a path; fs.statfsSync by default */
  statfs?: (path: string) => FsUsage;
  /** processes the scanning selectors look at per sample (default MAX_PROCESSES_SCANNED) */
  maxProcessesScanned?: number;
}

/** What the last sample's process scan saw (for the daemon's status and warnings). */
export interface ScanStats {
  /** pid directories listed in /proc */
  listed: number;
  /** of those, how many the selectors looked at (all, or the first maxProcessesScanned) */
  scanned: number;
}

/** A process's /proc/PID/stat as read in this call, with its CPU % since the previous call. */
interface PidReading { stat: PidStatWithThreads; cpuPct: number | null }

interface CpuHistory { ticks: number; startTime: number; t: number }

/**
 * Everything read during one call, so that a second rule needing the same file finds it
 * here. Dropped at the end of the call: nothing in it outlives the sample.
 */
interface Pass {
  t: number;
  files: Map<string, string | null>;
  /** the pid directories of /proc, read on first need */
  pids: number[] | null;
  comm: Map<number, string | null>;
  cmdline: Map<number, string | null>;
  cgroup: Map<number, string | null>;
  stat: Map<number, PidReading | null>;
  fds: Map<number, number | null>;
  pidFiles: Map<string, number | null>;
  statfs: Map<string, number | null>;
  /** selector → matched pids, for several rules watching the same processes */
  selected: Map<string, number[]>;
  cpuBusy: number | null | undefined;
  regexUsed: Set<string>;
}

export class MetricSampler {
  readonly #procRoot: string;
  readonly #now: () => number;
  readonly #statfs: (path: string) => FsUsage;
  readonly #maxProcesses: number;
  readonly #reader = new ProcFileReader();
  #prevCpu: CpuTimes | null = null;
  /** pid → CPU ticks when last read; holds only the pids read in the last call. */
  #history = new Map<number, CpuHistory>();
  /** regex source → compiled (null: does not compile); holds only the sources of the last call. */
  readonly #regexes = new Map<string, RegExp | null>();
  #lastScan: ScanStats | null = null;

  constructor(opts: MetricSamplerOptions = {}) {
    this.#procRoot = opts.procRoot ?? '/proc';
    this.#now = opts.now ?? Date.now;
    this.#statfs = opts.statfs ?? ((path) => statfsSync(path));
    this.#maxProcesses = Math.max(0, Math.floor(opts.maxProcessesScanned ?? MAX_PROCESSES_SCANNED));
  }

  /** Processes whose CPU time is remembered for the next sample (for tests of the bound). */
  get trackedProcesses(): number {
    return this.#history.size;
  }

  /** What the last process scan saw; null when no rule needed one. */
  get lastScan(): ScanStats | null {
    return this.#lastScan;
  }

  /**
   * One value event per threshold rule, in the order of `rules` (other rules are ignored).
   * Never throws for what it reads: a missing file, an exited process or an unreadable
   * directory gives a null value.
   */
  sample(rules: readonly Rule[]): ValueEvent[] {
    const p: Pass = {
      t: this.#now(),
      files: new Map(), pids: null, comm: new Map(), cmdline: new Map(), cgroup: new Map(),
      stat: new Map(), fds: new Map(), pidFiles: new Map(), statfs: new Map(), selected: new Map(),
      cpuBusy: undefined, regexUsed: new Set(),
    };
    this.#lastScan = null;
    const events: ValueEvent[] = [];
    for (const rule of rules) {
      const c = rule.when;
      if (c.kind !== 'threshold') continue;
      const { value, labels } = PROCESS_METRIC_SET.has(c.metric)
        ? this.#processValue(p, c)
        : { value: this.#systemValue(p, c), labels: {} };
      events.push({ kind: 'value', rule: rule.name, t: p.t, value, labels });
    }
    // Bounded by what this call read: a pid not read now (exited, or no longer selected)
    // has no baseline for the next call anyway.
    const history = new Map<number, CpuHistory>();
    for (const [pid, r] of p.stat) {
      if (r !== null) history.set(pid, { ticks: r.stat.utime + r.stat.stime, startTime: r.stat.startTime, t: p.t });
    }
    this.#history = history;
    for (const src of this.#regexes.keys()) if (!p.regexUsed.has(src)) this.#regexes.delete(src);
    return events;
  }

  // -------------------------------------------------------------------------------------
  // System metrics

  #systemValue(p: Pass, c: Threshold): number | null {
    switch (c.metric) {
      case 'cpu':
        return this.#cpuBusy(p);
      case 'load1':
      case 'load5':
      case 'load15': {
        const load = this.#parsed(p, 'loadavg', parseLoadavg);
        if (load === null) return null;
        return c.metric === 'load1' ? load.avg1 : c.metric === 'load5' ? load.avg5 : load.avg15;
      }
      case 'memory.available': {
        const mem = this.#parsed(p, 'meminfo', parseMeminfo);
        return mem === null ? null : round2((Math.min(mem.availableBytes, mem.totalBytes) * 100) / mem.totalBytes);
      }
      case 'swap.used': {
        const mem = this.#parsed(p, 'meminfo', parseMeminfo);
        return mem === null ? null : (mem.swapUsedPct ?? 0);
      }
      case 'psi.cpu.some':
      case 'psi.memory.some':
      case 'psi.memory.full':
      case 'psi.io.some':
      case 'psi.io.full': {
        const [, resource, line] = c.metric.split('.') as [string, string, 'some' | 'full'];
        // Absent without CONFIG_PSI or with psi=0: null, as for a line the kernel does not write.
        return this.#parsed(p, `pressure/${resource}`, parsePressure)?.[line] ?? null;
      }
      case 'disk.free':
        return this.#diskFree(p, c.mount ?? '/');
      case 'fds':
        return this.#parsed(p, 'sys/fs/file-nr', parseFileNr);
      default:
        // A per-process metric without a selector (the config loader should have refused it).
        return null;
    }
  }

  /** A /proc file, read at most once per call. */
  #file(p: Pass, rel: string, max?: number): string | null {
    let text = p.files.get(rel);
    if (text === undefined) {
      text = this.#reader.read(`${this.#procRoot}/${rel}`, max);
      p.files.set(rel, text);
    }
    return text;
  }

  #parsed<T>(p: Pass, rel: string, parse: (text: string) => T | null): T | null {
    const text = this.#file(p, rel);
    return text === null ? null : parse(text);
  }

  /**
   * Busy % of all CPUs since the previous call that read /proc/stat: everything but idle
   * and iowait (a CPU waiting for I/O is idle), as the recorder's summary counts it.
   */
  #cpuBusy(p: Pass): number | null {
    if (p.cpuBusy !== undefined) return p.cpuBusy;
    const text = this.#file(p, 'stat', MAX_STAT_BYTES);
    const cur = text === null ? null : parseProcStat(text);
    let busy: number | null = null;
    if (cur !== null) {
      const pct = this.#prevCpu === null ? null : cpuPercent(this.#prevCpu, cur);
      if (pct !== null) busy = Math.max(0, round2(100 - pct.idle - pct.iowait));
      this.#prevCpu = cur;
    }
    p.cpuBusy = busy;
    return busy;
  }

  #diskFree(p: Pass, mount: string): number | null {
    let v = p.statfs.get(mount);
    if (v === undefined) {
      v = null;
      try {
        const st = this.#statfs(mount);
        // f_bavail, not f_bfree: the blocks reserved for root are not free to the services we watch.
        if (st.blocks > 0) v = round2((Math.min(st.bavail, st.blocks) * 100) / st.blocks);
      } catch {
        // not mounted, or gone: no value
      }
      p.statfs.set(mount, v);
    }
    return v;
  }

  // -------------------------------------------------------------------------------------
  // Per-process metrics

  #processValue(p: Pass, c: Threshold): { value: number | null; labels: Record<string, string> } {
    if (c.process === null) return { value: null, labels: {} };
    const pids = this.#select(p, c.process);
    let best: number | null = null;
    let bestPid = -1;
    let count = 0;
    for (const pid of pids) {
      const r = this.#measure(p, pid, c.metric);
      // undefined: the process is gone or its files unreadable; it is not counted.
      if (r === undefined) continue;
      count++;
      // The first (lowest pid, or selection order) holder of the maximum wins a tie.
      if (r !== null && (best === null || r > best)) {
        best = r;
        bestPid = pid;
      }
    }
    if (count === 0) return { value: null, labels: {} };
    if (best === null) return { value: null, labels: { count: String(count) } };
    return { value: best, labels: { pid: String(bestPid), comm: this.#commOf(p, bestPid), count: String(count) } };
  }

  /** The metric of one process; null: alive but no value yet (CPU at first sight); undefined: gone or unreadable. */
  #measure(p: Pass, pid: number, metric: string): number | null | undefined {
    if (metric === 'process.fds') return this.#fdCount(p, pid) ?? undefined;
    const r = this.#pidStat(p, pid);
    if (r === null) return undefined;
    switch (metric) {
      case 'process.rss': return r.stat.rssPages * hostConstants().pageSizeBytes;
      case 'process.cpu': return r.cpuPct;
      case 'process.threads': return r.stat.numThreads;
      default: return undefined;
    }
  }

  /** /proc/PID/stat, once per call, with the CPU % since this pid was last read. */
  #pidStat(p: Pass, pid: number): PidReading | null {
    let r = p.stat.get(pid);
    if (r !== undefined) return r;
    r = null;
    const text = this.#reader.read(`${this.#procRoot}/${pid}/stat`, MAX_PID_STAT_BYTES, true);
    const stat = text === null ? null : parsePidStatWithThreads(text);
    if (stat !== null) {
      const prev = this.#history.get(pid);
      let cpuPct: number | null = null;
      // A pid not read last time, or reused since (another start time), has no baseline:
      // null rather than a guess, so a process first seen can never fire a CPU rule.
      if (prev !== undefined && prev.startTime === stat.startTime && p.t > prev.t) {
        const ticks = Math.max(0, stat.utime + stat.stime - prev.ticks);
        cpuPct = round2((ticks * 100 * 1000) / (hostConstants().clockTicks * (p.t - prev.t)));
      }
      r = { stat, cpuPct };
    }
    p.stat.set(pid, r);
    return r;
  }

  /** Entries of /proc/PID/fd; null when gone or not ours to read (EACCES without root). */
  #fdCount(p: Pass, pid: number): number | null {
    let n = p.fds.get(pid);
    if (n === undefined) {
      try {
        n = readdirSync(`${this.#procRoot}/${pid}/fd`).length;
      } catch {
        n = null;
      }
      p.fds.set(pid, n);
    }
    return n;
  }

  /**
   * comm for a label: data chosen by the process, kept as a string and never interpreted.
   * From what this call already read (comm for a name match, or the same task->comm in
   * stat), or else one more read for this one process.
   */
  #commOf(p: Pass, pid: number): string {
    return p.comm.get(pid) ?? p.stat.get(pid)?.stat.comm ?? this.#comm(p, pid) ?? '';
  }

  #comm(p: Pass, pid: number): string | null {
    let comm = p.comm.get(pid);
    if (comm === undefined) {
      const text = this.#reader.read(`${this.#procRoot}/${pid}/comm`, MAX_COMM_BYTES, true);
      // The kernel ends comm with one newline; a comm may itself end with one.
      comm = text === null ? null : text.endsWith('\n') ? text.slice(0, -1) : text;
      p.comm.set(pid, comm);
    }
    return comm;
  }

  // -------------------------------------------------------------------------------------
  // Selectors

  #select(p: Pass, sel: ProcessSelector): number[] {
    const key = selectorKey(sel);
    let pids = p.selected.get(key);
    if (pids !== undefined) return pids;
    if ('pidFile' in sel) {
      const pid = this.#pidFromFile(p, sel.pidFile);
      pids = pid === null ? [] : [pid];
    } else if ('name' in sel) {
      pids = this.#scan(p).filter((pid) => this.#comm(p, pid) === sel.name);
    } else if ('cmdline' in sel) {
      const re = this.#regex(p, sel.cmdline);
      pids = re === null ? [] : this.#scan(p).filter((pid) => {
        const cmd = this.#cmdline(p, pid);
        // Kernel threads and zombies have no command line: nothing for a pattern to describe.
        return cmd !== null && cmd !== '' && re.test(cmd);
      });
    } else {
      const prefix = sel.cgroup.length > 1 && sel.cgroup.endsWith('/') ? sel.cgroup.replace(/\/+$/, '') : sel.cgroup;
      pids = this.#scan(p).filter((pid) => {
        const path = this.#cgroup(p, pid);
        return path !== null && cgroupUnder(path, prefix);
      });
    }
    p.selected.set(key, pids);
    return pids;
  }

  /** The pid directories of /proc, listed once per call, lowest first, cut at the maximum. */
  #scan(p: Pass): number[] {
    if (p.pids !== null) return p.pids;
    let names: string[];
    try {
      names = readdirSync(this.#procRoot);
    } catch {
      names = [];
    }
    let pids: number[] = [];
    for (const name of names) {
      const c = name.charCodeAt(0);
      if (c < 49 || c > 57) continue; // pids start with 1-9
      const pid = Number(name);
      if (!Number.isSafeInteger(pid) || String(pid) !== name) continue;
      pids.push(pid);
    }
    // procfs lists pids in ascending order already (the sort is then linear); which ones
    // a cut keeps should not depend on that.
    pids.sort((a, b) => a - b);
    const listed = pids.length;
    if (listed > this.#maxProcesses) pids = pids.slice(0, this.#maxProcesses);
    p.pids = pids;
    this.#lastScan = { listed, scanned: pids.length };
    return pids;
  }

  #cmdline(p: Pass, pid: number): string | null {
    let cmd = p.cmdline.get(pid);
    if (cmd === undefined) {
      // Not a seq_file: read until EOF (up to the cap).
      const raw = this.#reader.read(`${this.#procRoot}/${pid}/cmdline`, MAX_CMDLINE_BYTES);
      cmd = raw === null ? null : cmdlineText(raw);
      p.cmdline.set(pid, cmd);
    }
    return cmd;
  }

  #cgroup(p: Pass, pid: number): string | null {
    let path = p.cgroup.get(pid);
    if (path === undefined) {
      // A single_open seq_file: the first read returns all of it when the buffer is big
      // enough, so the read that would return 0 is skipped (one syscall less per process).
      const text = this.#reader.read(`${this.#procRoot}/${pid}/cgroup`, MAX_CGROUP_BYTES, true);
      path = text === null ? null : parseCgroupV2(text);
      p.cgroup.set(pid, path);
    }
    return path;
  }

  /** The pid in a pid file, read afresh each call (the service may have restarted); null if missing or not a pid. */
  #pidFromFile(p: Pass, path: string): number | null {
    let pid = p.pidFiles.get(path);
    if (pid === undefined) {
      // O_NOFOLLOW and a small cap: the file may sit in a directory the service can write.
      const text = this.#reader.read(path, MAX_PID_FILE_BYTES);
      pid = text === null ? null : parsePidFile(text);
      p.pidFiles.set(path, pid);
    }
    return pid;
  }

  #regex(p: Pass, source: string): RegExp | null {
    p.regexUsed.add(source);
    let re = this.#regexes.get(source);
    if (re === undefined) {
      try {
        re = new RegExp(source);
      } catch {
        // The config loader validates patterns; one that slipped through matches nothing.
        re = null;
      }
      this.#regexes.set(source, re);
    }
    return re;
  }
}

function selectorKey(sel: ProcessSelector): string {
  if ('pidFile' in sel) return `pidFile\0${sel.pidFile}`;
  if ('name' in sel) return `name\0${sel.name}`;
  if ('cmdline' in sel) return `cmdline\0${sel.cmdline}`;
  return `cgroup\0${sel.cgroup}`;
}

/** "1234\n" → 1234; anything else (empty, "12ab", "0", a pid above PID_MAX_LIMIT) → null. */
export function parsePidFile(text: string): number | null {
  const s = text.trim();
  if (!/^[1-9]\d{0,6}$/.test(s)) return null;
  const pid = Number(s);
  return pid <= PID_MAX_LIMIT ? pid : null;
}

/** Whether a cgroup v2 path is `prefix` or below it: "/system.slice/a.service" is under "/system.slice", "/system.slice2" is not. */
export function cgroupUnder(path: string, prefix: string): boolean {
  if (prefix === '/') return path.startsWith('/');
  return path === prefix || path.startsWith(`${prefix}/`);
}
