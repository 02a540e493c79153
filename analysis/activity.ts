// Per-process activity from a stream of trace events, whatever the tracer: CPU time from
// context switches, system calls, file opens and bytes, signals; over the whole span and
// second by second. Pure and bounded: the readers (ftrace-reader.ts, lttng-reader.ts) turn
// their text into TraceEvents, and this never holds more than the limits below.
import { signalName } from '../lib/signals.js';
import type { ProcessActivity, SignalRecord } from './types.js';

/** Processes tracked; the events of any beyond are not counted (a fork bomb stays bounded). */
export const MAX_PROCESSES = 20_000;
/** Seconds kept for stepping through, the newest (the ones before the event). */
export const MAX_SECONDS = 900;
/** Rows per second in the report, the busiest. */
export const MAX_PROCESSES_PER_SECOND = 50;
/** Distinct system-call and tracepoint names counted per process. */
const MAX_NAMES_PER_PROCESS = 512;
/** Signals listed in the report (the newest). */
export const MAX_SIGNALS = 200;
/** Threads mapped to their process (LTTng contexts, ftrace TGID column). */
const MAX_THREAD_MAP = 200_000;
const MAX_THREADS_PER_PROCESS = 4096;
const TOP_N = 5;

export const OPEN_SYSCALLS: ReadonlySet<string> = new Set(['open', 'openat', 'openat2', 'creat']);
export const READ_SYSCALLS: ReadonlySet<string> = new Set(['read', 'pread64', 'readv', 'preadv', 'preadv2']);
export const WRITE_SYSCALLS: ReadonlySet<string> = new Set(['write', 'pwrite64', 'writev', 'pwritev', 'pwritev2']);

/** Who logged an event: the task running on the CPU. `tgid` when the trace says (null: unknown). */
interface Logged {
  /** seconds in the trace's clock */
  ts: number;
  cpu: number;
  /** the task (thread) id */
  tid: number;
  tgid: number | null;
  /** the name the trace's task column gave, null when it did not (`<...>`) */
  comm: string | null;
}

export type TraceEvent =
  | (Logged & { type: 'switch'; prevTid: number; prevComm: string; prevState: string; nextTid: number; nextComm: string })
  | (Logged & { type: 'syscall_entry'; name: string; args: string })
  | (Logged & { type: 'syscall_exit'; name: string; ret: number | null })
  /** childTgid: the child's process when the tracer says (a new thread's is its parent's) */
  | (Logged & { type: 'fork'; parentTid: number; parentComm: string; childTid: number; childComm: string; childTgid?: number })
  | (Logged & { type: 'exec'; filename: string; newComm: string })
  | (Logged & { type: 'exit'; exitTid: number; exitComm: string })
  | (Logged & { type: 'signal'; sig: number; targetTid: number; targetComm: string })
  /** anything else (a user-space tracepoint, an event we do not interpret) */
  | (Logged & { type: 'other'; name: string; userspace: boolean });

/** What a reader says besides events. */
export interface ReaderSink {
  event(e: TraceEvent): void;
  /** the kernel reported `n` events of a CPU lost (null: unknown how many) */
  lost(cpu: number | null, n: number | null): void;
}

interface Counts {
  cpuMs: number;
  syscalls: number;
  names: Map<string, number>;
  opens: number;
  bytesRead: number;
  bytesWritten: number;
  events: number;
  ust: Map<string, number>;
  signals: Map<number, number>;
}

interface Proc extends Counts {
  key: number;
  comm: string | null;
  /** 2: from the kernel's own fields (sched_switch, exec, fork, signal target); 1: the task column */
  commRank: number;
  /** the threads seen: the first alone, a set from the second on */
  firstTid: number | null;
  tids: Set<number> | null;
  exited: boolean;
}

const newCounts = (): Counts => ({
  cpuMs: 0, syscalls: 0, names: new Map(), opens: 0, bytesRead: 0, bytesWritten: 0, events: 0, ust: new Map(), signals: new Map(),
});

function bump(m: Map<string, number>, name: string, by = 1): void {
  const v = m.get(name);
  if (v !== undefined) m.set(name, v + by);
  else if (m.size < MAX_NAMES_PER_PROCESS) m.set(name, by);
}

function top(m: ReadonlyMap<string, number>): { name: string; count: number }[] {
  return [...m].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, TOP_N).map(([name, count]) => ({ name, count }));
}

function mergeInto(a: Counts, b: Counts): void {
  a.cpuMs += b.cpuMs;
  a.syscalls += b.syscalls;
  a.opens += b.opens;
  a.bytesRead += b.bytesRead;
  a.bytesWritten += b.bytesWritten;
  a.events += b.events;
  for (const [k, v] of b.names) bump(a.names, k, v);
  for (const [k, v] of b.ust) bump(a.ust, k, v);
  for (const [k, v] of b.signals) a.signals.set(k, (a.signals.get(k) ?? 0) + v);
}

const round3 = (v: number): number => Math.round(v * 1000) / 1000;

function countEntry(c: Counts, name: string): void {
  c.syscalls++;
  bump(c.names, name);
  if (OPEN_SYSCALLS.has(name)) c.opens++;
}

function countExit(c: Counts, name: string, ret: number): void {
  if (READ_SYSCALLS.has(name)) c.bytesRead += ret;
  else if (WRITE_SYSCALLS.has(name)) c.bytesWritten += ret;
}

export interface ActivityOptions {
  /** trace-clock seconds → ms since the epoch */
  toEpochMs: (ts: number) => number;
}

export interface ActivityResult {
  span: { startMs: number; endMs: number } | null;
  processes: ProcessActivity[];
  seconds: { startMs: number; processes: ProcessActivity[] }[];
  signals: SignalRecord[];
  eventsRead: number;
  eventsLost: number;
  /** whether any event said who ran when (sched_switch) and any system call was seen */
  sawSwitches: boolean;
  sawSyscalls: boolean;
  warnings: string[];
}

/** The task on a CPU after lost events: nobody is credited until an event says who runs. */
const UNKNOWN_TASK = -1;

/** Trace timestamps outside this (seconds) are not believed: no clock of ours reads them. */
const MAX_TS_SECONDS = 1e11;

export class ActivityAccumulator implements ReaderSink {
  readonly #toMs: (ts: number) => number;
  readonly #procs = new Map<number, Proc>();
  /** second start (ms) → key → counts */
  readonly #seconds = new Map<number, Map<number, Counts>>();
  #newestSecond = -Infinity;
  /** per CPU: who runs since when (ms); absent: unknown */
  readonly #running = new Map<number, { tid: number; since: number }>();
  readonly #cpuFirstMs = new Map<number, number>();
  /** CPUs with at least one sched_switch: only there does "who runs" mean anything */
  readonly #cpuSwitched = new Set<number>();
  readonly #tgidOf = new Map<number, number>();
  readonly #signals: SignalRecord[] = [];
  #firstMs: number | null = null;
  #lastMs: number | null = null;
  #events = 0;
  #lost = 0;
  #lostUnknown = false;
  #switches = false;
  #syscalls = false;
  #droppedProcs = 0;
  #droppedSeconds = false;
  #badTimes = 0;
  #backwards = 0;

  constructor(opts: ActivityOptions) {
    this.#toMs = opts.toEpochMs;
  }

  lost(cpu: number | null, n: number | null): void {
    if (n === null) this.#lostUnknown = true;
    else this.#lost += n;
    // Whoever ran on that CPU across the gap is unknown until an event says.
    if (cpu !== null) this.#running.set(cpu, { tid: UNKNOWN_TASK, since: 0 });
    else for (const c of this.#cpuFirstMs.keys()) this.#running.set(c, { tid: UNKNOWN_TASK, since: 0 });
  }

  event(e: TraceEvent): void {
    if (!Number.isFinite(e.ts) || e.ts < 0 || e.ts > MAX_TS_SECONDS) {
      this.#badTimes++;
      return;
    }
    const t = this.#toMs(e.ts);
    if (!Number.isFinite(t)) {
      this.#badTimes++;
      return;
    }
    this.#events++;
    if (this.#firstMs === null || t < this.#firstMs) this.#firstMs = t;
    if (this.#lastMs !== null && t < this.#lastMs - 1) this.#backwards++;
    if (this.#lastMs === null || t > this.#lastMs) this.#lastMs = t;
    if (!this.#cpuFirstMs.has(e.cpu)) this.#cpuFirstMs.set(e.cpu, t);
    if (e.tgid !== null && e.tgid > 0 && e.tgid !== e.tid && this.#tgidOf.size < MAX_THREAD_MAP) this.#tgidOf.set(e.tid, e.tgid);

    if (e.type === 'switch') {
      this.#switches = true;
      this.#switch(e.cpu, t, e.prevTid, e.nextTid);
      this.#name(e.prevTid, e.prevComm, 2);
      this.#name(e.nextTid, e.nextComm, 2);
      return;
    }
    // The logging task runs on this CPU now: if nothing said so before, since the CPU's first
    // event; after lost events, since now.
    const cur = this.#running.get(e.cpu);
    if (cur === undefined) this.#running.set(e.cpu, { tid: e.tid, since: this.#cpuFirstMs.get(e.cpu) ?? t });
    else if (cur.tid === UNKNOWN_TASK) this.#running.set(e.cpu, { tid: e.tid, since: t });
    if (e.tid !== 0 && e.comm !== null) this.#name(e.tid, e.comm, 1);
    const who = e.tid === 0 ? null : this.#proc(e.tid);
    const sec = who === null ? null : this.#second(t, who.key);
    if (who) who.events++;
    if (sec) sec.events++;
    switch (e.type) {
      case 'syscall_entry':
        this.#syscalls = true;
        if (who) countEntry(who, e.name);
        if (sec) countEntry(sec, e.name);
        break;
      case 'syscall_exit':
        this.#syscalls = true;
        if (e.ret !== null && e.ret > 0) {
          if (who) countExit(who, e.name, e.ret);
          if (sec) countExit(sec, e.name, e.ret);
        }
        break;
      case 'fork':
        if (e.childTgid !== undefined && e.childTgid > 0 && e.childTgid !== e.childTid && this.#tgidOf.size < MAX_THREAD_MAP) {
          this.#tgidOf.set(e.childTid, e.childTgid);
        }
        this.#name(e.childTid, e.childComm, 2);
        break;
      case 'exec':
        this.#name(e.tid, e.newComm, 2);
        break;
      case 'exit': {
        this.#name(e.exitTid, e.exitComm, 2);
        const p = this.#proc(e.exitTid);
        if (p && (this.#tgidOf.get(e.exitTid) ?? e.exitTid) === e.exitTid) p.exited = true;
        break;
      }
      case 'signal': {
        this.#name(e.targetTid, e.targetComm, 2);
        const target = this.#proc(e.targetTid);
        if (target) {
          target.signals.set(e.sig, (target.signals.get(e.sig) ?? 0) + 1);
          const s = this.#second(t, target.key);
          if (s) s.signals.set(e.sig, (s.signals.get(e.sig) ?? 0) + 1);
        }
        this.#signals.push({
          t: round3(t), sig: e.sig, name: signalName(e.sig), pid: e.targetTid, comm: e.targetComm,
          fromPid: e.tid === 0 ? null : e.tid, fromComm: e.tid === 0 ? null : this.#procs.get(this.#keyOf(e.tid))?.comm ?? e.comm,
        });
        if (this.#signals.length > MAX_SIGNALS * 2) this.#signals.splice(0, this.#signals.length - MAX_SIGNALS);
        break;
      }
      case 'other':
        if (e.userspace) {
          if (who) bump(who.ust, e.name);
          if (sec) bump(sec.ust, e.name);
        }
        break;
    }
  }

  #keyOf(tid: number): number {
    return this.#tgidOf.get(tid) ?? tid;
  }

  #proc(tid: number): Proc | null {
    const key = this.#keyOf(tid);
    let p = this.#procs.get(key);
    if (p === undefined) {
      if (this.#procs.size >= MAX_PROCESSES) {
        this.#droppedProcs++;
        return null;
      }
      p = { key, comm: null, commRank: 0, firstTid: null, tids: null, exited: false, ...newCounts() };
      this.#procs.set(key, p);
    }
    addThread(p, tid);
    return p;
  }

  /** The counts of `key` in the second holding `t`; null for a second too old to keep. */
  #second(t: number, key: number): Counts | null {
    const s = Math.floor(t / 1000) * 1000;
    if (s > this.#newestSecond) this.#newestSecond = s;
    if (s <= this.#newestSecond - MAX_SECONDS * 1000) {
      this.#droppedSeconds = true;
      return null;
    }
    let m = this.#seconds.get(s);
    if (m === undefined) {
      m = new Map();
      this.#seconds.set(s, m);
      if (this.#seconds.size > MAX_SECONDS) {
        this.#droppedSeconds = true;
        let oldest = Infinity;
        for (const k of this.#seconds.keys()) if (k < oldest) oldest = k;
        this.#seconds.delete(oldest);
        if (oldest === s) return null;
      }
    }
    let c = m.get(key);
    if (c === undefined) {
      c = newCounts();
      m.set(key, c);
    }
    return c;
  }

  #name(tid: number, comm: string, rank: number): void {
    if (tid === 0 || comm === '') return;
    const p = this.#proc(tid);
    if (p === null || rank < p.commRank) return;
    // A thread's name (an LTTng listener thread, a worker) never replaces its process's.
    if (p.key !== tid && p.comm !== null) return;
    p.comm = comm;
    p.commRank = rank;
  }

  #switch(cpu: number, t: number, prevTid: number, nextTid: number): void {
    this.#cpuSwitched.add(cpu);
    const cur = this.#running.get(cpu);
    if (cur !== undefined && cur.tid === prevTid) this.#addCpu(prevTid, cur.since, t);
    else if (cur === undefined) this.#addCpu(prevTid, this.#cpuFirstMs.get(cpu) ?? t, t);
    // else: events were lost in between; nobody is credited with the unknown gap.
    this.#running.set(cpu, { tid: nextTid, since: t });
  }

  /** CPU time of `tid` from a to b (ms), split over the seconds it covers. */
  #addCpu(tid: number, a: number, b: number): void {
    if (tid <= 0 || !(b > a)) return;
    const p = this.#proc(tid);
    if (p === null) return;
    p.cpuMs += b - a;
    // Only the seconds that can be kept are walked: a hostile gap of years costs nothing.
    let s = Math.floor(Math.max(a, b - (MAX_SECONDS + 1) * 1000) / 1000) * 1000;
    for (; s < b; s += 1000) {
      const part = Math.min(b, s + 1000) - Math.max(a, s);
      if (part <= 0) continue;
      const c = this.#second(s, p.key);
      if (c) c.cpuMs += part;
    }
  }

  finish(): ActivityResult {
    const end = this.#lastMs;
    // Whoever runs on a CPU at the end runs until the trace stops, on CPUs whose switches we saw.
    if (end !== null) for (const [cpu, r] of this.#running) if (this.#cpuSwitched.has(cpu)) this.#addCpu(r.tid, r.since, end);
    this.#running.clear();
    this.#mergeThreads();
    const warnings: string[] = [];
    if (this.#droppedProcs > 0) warnings.push(`more than ${MAX_PROCESSES} processes in the trace: ${this.#droppedProcs} events of the others were not counted`);
    if (this.#droppedSeconds) warnings.push(`the trace spans more than ${MAX_SECONDS} s: only its last ${MAX_SECONDS} seconds can be stepped through`);
    if (this.#badTimes > 0) warnings.push(`${this.#badTimes} events with an impossible timestamp were ignored`);
    if (this.#backwards > 0) warnings.push(`${this.#backwards} events were out of time order; CPU times may be off`);
    if (this.#lost > 0 || this.#lostUnknown) {
      warnings.push(`the kernel reported ${this.#lost > 0 ? `${this.#lost} ` : ''}events lost${this.#lostUnknown ? ' (some of unknown number)' : ''}: the buffer wrapped or dropped events, so counts are lower bounds`);
    }
    const procRow = (p: Proc): ProcessActivity => this.#row(p.key, p, p);
    const processes = [...this.#procs.values()].filter(useful).map(procRow).sort(byActivity);
    const seconds = [...this.#seconds.entries()].sort((a, b) => a[0] - b[0]).map(([startMs, m]) => ({
      startMs,
      processes: [...m.entries()]
        .filter(([, c]) => useful(c))
        .map(([key, c]) => this.#row(key, c, this.#procs.get(key) ?? null))
        .sort(byActivity)
        .slice(0, MAX_PROCESSES_PER_SECOND),
    }));
    return {
      span: this.#firstMs === null || end === null ? null : { startMs: round3(this.#firstMs), endMs: round3(end) },
      processes,
      seconds,
      signals: this.#signals.slice(-MAX_SIGNALS),
      eventsRead: this.#events,
      eventsLost: this.#lost,
      sawSwitches: this.#switches,
      sawSyscalls: this.#syscalls,
      warnings,
    };
  }

  /**
   * Rows of threads whose process became known only later (a thread's first events came
   * before any event naming its process) join their process's row.
   */
  #mergeThreads(): void {
    for (const [key, p] of [...this.#procs]) {
      const owner = this.#tgidOf.get(key);
      if (owner === undefined || owner === key) continue;
      let into = this.#procs.get(owner);
      if (into === undefined) {
        into = { key: owner, comm: null, commRank: 0, firstTid: null, tids: null, exited: false, ...newCounts() };
        this.#procs.set(owner, into);
      }
      mergeInto(into, p);
      for (const t of p.tids ?? (p.firstTid === null ? [] : [p.firstTid])) addThread(into, t);
      if (into.comm === null) {
        into.comm = p.comm;
        into.commRank = p.commRank;
      }
      this.#procs.delete(key);
      for (const m of this.#seconds.values()) {
        const c = m.get(key);
        if (c === undefined) continue;
        const to = m.get(owner);
        if (to === undefined) m.set(owner, c);
        else mergeInto(to, c);
        m.delete(key);
      }
    }
  }

  #row(key: number, c: Counts, p: Proc | null): ProcessActivity {
    const row: ProcessActivity = {
      pid: key,
      comm: p?.comm ?? '?',
      cpuMs: round3(c.cpuMs),
      syscalls: c.syscalls,
      topSyscalls: top(c.names),
      opens: c.opens,
      bytesRead: c.bytesRead,
      bytesWritten: c.bytesWritten,
      events: c.events,
    };
    if (c.ust.size > 0) row.topEvents = top(c.ust);
    if (c.signals.size > 0) {
      row.signals = [...c.signals].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([sig, count]) => ({ sig, name: signalName(sig), count }));
    }
    if (p?.tids) row.threads = p.tids.size;
    if (p?.exited) row.exited = true;
    return row;
  }
}

function addThread(p: Proc, tid: number): void {
  if (p.tids !== null) {
    if (p.tids.size < MAX_THREADS_PER_PROCESS) p.tids.add(tid);
  } else if (p.firstTid === null) p.firstTid = tid;
  else if (p.firstTid !== tid) p.tids = new Set([p.firstTid, tid]);
}

function useful(c: Counts): boolean {
  return c.cpuMs > 0 || c.events > 0 || c.signals.size > 0;
}

function byActivity(a: ProcessActivity, b: ProcessActivity): number {
  return b.cpuMs - a.cpuMs || b.syscalls - a.syscalls || (b.events ?? 0) - (a.events ?? 0) || a.pid - b.pid;
}
