// The ftrace flight recorder: a tracefs instance of our own in overwrite mode, frozen by
// writing 0 to its tracing_on (and, optionally, by the kernel itself through a traceoff
// trigger on signal_generate), copied into a snapshot directory, thawed by writing 1.
// A snapshot through trace-cmd moves the events out of the kernel (trace_pipe_raw consumes);
// the text copy leaves them. Parsing of tracefs files is pure and exported.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync, closeSync, constants, existsSync, fsyncSync, linkSync, mkdirSync, mkdtempSync, openSync, readSync,
  readdirSync, rmSync, rmdirSync, statSync, writeSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../lib/config.js';
import { FlightboxError, errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { findProgram } from '../lib/programs.js';
import { createExclusive, writeFileExclusive } from '../lib/safe-fs.js';
import { traceDatUnsupported, writeTraceDat } from './trace-dat.js';
import {
  RecorderUnavailable, type Recorder, type RecorderState, type RecorderStatus, type SnapshotResult,
} from './recorder.js';

export const DEFAULT_TRACEFS_ROOT = '/sys/kernel/tracing';
/** How long a freeze made by the kernel trigger is kept when nobody asks for a snapshot. */
export const DEFAULT_AUTO_THAW_GRACE_MS = 5000;
/** How often tracing_on is polled to notice a freeze made by the kernel (at most). */
export const DEFAULT_POLL_INTERVAL_MS = 1000;
/** trace.txt is cut here unless told otherwise: a safety net, the text of a full buffer is ~2× its size. */
export const MIN_TEXT_MAX_BYTES = 64 * 1024 * 1024;
export const TEXT_BYTES_PER_BUFFER_BYTE = 8;
/** trace-cmd is not started with less time than this left before the deadline. */
export const TRACE_CMD_MIN_MS = 50;
/** stderr kept from trace-cmd for the warning. */
const TRACE_CMD_STDERR_MAX_BYTES = 4096;
const READ_BATCH_BYTES = 1024 * 1024;
/** SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGSYS: the signals that dump core by default (x86/arm). */
export const FATAL_SIGNALS: readonly number[] = [11, 6, 7, 4, 8, 5, 31];
/** Clocks whose timestamps are seconds since some epoch; the others (counter, x86-tsc) are raw counts. */
const NANOSECOND_CLOCKS = new Set(['local', 'global', 'uptime', 'perf', 'mono', 'mono_raw', 'boot', 'tai']);
/** Our preference: boot is the clock Perfetto uses, is the same on every CPU and counts suspend. */
const PREFERRED_CLOCKS = ['boot', 'mono', 'global'] as const;

/** How often the event rate is checked against recorders.ftrace.maxEventRate. */
export const DEFAULT_RATE_CHECK_MS = 250;
/** After a pause, the system-call events are tried again after this long, then twice as long each time the rate is still too high, up to RATE_PROBE_MAX_MS. */
export const DEFAULT_RATE_PROBE_MS = 10_000;
export const RATE_PROBE_MAX_MS = 5 * 60_000;
/** Pauses remembered for snapshots and status. */
const PAUSES_KEPT = 32;

const EVENT_RE = /^[a-z0-9_]+(\/[a-z0-9_]+)?$/;
const INSTANCE_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const { O_RDONLY, O_WRONLY, O_NOFOLLOW } = constants;

export interface FtraceRecorderOptions {
  tracefsRoot?: string;
  log?: Logger;
  /** wall clock, ms since the epoch */
  now?: () => number;
  /** trace-cmd for snapshots: 'auto' (look in the standard directories), a path, or null (never: copy the text). */
  traceCmd?: string | null;
  autoThawGraceMs?: number;
  pollIntervalMs?: number;
  /** trace.txt is cut at this size; default max(64 MiB, 8 × the whole buffer). */
  maxTextBytes?: number;
  /** how often the event rate is checked (DEFAULT_RATE_CHECK_MS) */
  rateCheckMs?: number;
  /** the first wait before paused system-call events are tried again (DEFAULT_RATE_PROBE_MS) */
  rateProbeMs?: number;
  /**
   * trace.dat written by the recorder itself (default), trace-cmd extract only where that
   * cannot be done; false: trace-cmd extract always. Either way only when trace-cmd is there
   * to read it.
   */
  nativeTraceDat?: boolean;
}

/**
 * System-call events: two per system call on every CPU, by far the costliest events to
 * record (~0.3 µs each here, and enabling any of them sends every system call of every
 * process through the kernel's slow path). They are what the recorder pauses when a CPU
 * records more than maxEventRate events a second.
 */
export function isSyscallEvent(spec: string): boolean {
  const system = spec.split('/')[0];
  return system === 'raw_syscalls' || system === 'syscalls';
}

/** A time the system-call events were off because the event rate was too high. */
export interface SyscallPause {
  /** ms since the epoch */
  from: number;
  /** null: still paused */
  to: number | null;
  /** the busiest CPU's events a second that made the pause */
  eventsPerSecond: number;
}

/** One per_cpu/cpuN/stats file. Timestamps are seconds in the instance's trace clock. */
export interface CpuStats {
  cpu: number;
  entries: number;
  overrun: number;
  commitOverrun: number;
  bytes: number;
  oldestEventTs: number | null;
  nowTs: number | null;
  droppedEvents: number;
  readEvents: number;
}

/** Parse per_cpu/cpuN/stats ("entries: 85469", "oldest event ts:  1214.038090", ...). Unknown lines are ignored. */
export function parseCpuStats(text: string, cpu = 0): CpuStats {
  const s: CpuStats = {
    cpu, entries: 0, overrun: 0, commitOverrun: 0, bytes: 0, oldestEventTs: null, nowTs: null, droppedEvents: 0, readEvents: 0,
  };
  for (const line of text.split('\n')) {
    const m = /^([a-z ]+):\s*([0-9.]+)\s*$/.exec(line.trim());
    if (!m) continue;
    const key = m[1] ?? '';
    const value = Number(m[2]);
    if (!Number.isFinite(value)) continue;
    switch (key) {
      case 'entries': s.entries = value; break;
      case 'overrun': s.overrun = value; break;
      case 'commit overrun': s.commitOverrun = value; break;
      case 'bytes': s.bytes = value; break;
      // An empty buffer reports 0.000000: no oldest event.
      case 'oldest event ts': s.oldestEventTs = value > 0 ? value : null; break;
      case 'now ts': s.nowTs = value; break;
      case 'dropped events': s.droppedEvents = value; break;
      case 'read events': s.readEvents = value; break;
    }
  }
  return s;
}

/** Events a CPU has written since its buffer was made (entries + overrun + read events), from its stats file. */
export function eventsWritten(stats: string): number {
  let n = 0;
  for (const m of stats.matchAll(/^(entries|overrun|read events):\s*(\d+)\s*$/gm)) n += Number(m[2]);
  return n;
}

export interface StatsSummary {
  entries: number;
  usedBytes: number;
  /** overwritten (overrun), lost to a commit overrun, or dropped */
  eventsLost: number;
  /** the oldest event on any CPU, trace-clock seconds */
  oldestTs: number | null;
}

export function summarizeStats(cpus: readonly CpuStats[]): StatsSummary {
  let oldest: number | null = null;
  for (const c of cpus) {
    if (c.entries > 0 && c.oldestEventTs !== null && (oldest === null || c.oldestEventTs < oldest)) oldest = c.oldestEventTs;
  }
  return {
    entries: cpus.reduce((n, c) => n + c.entries, 0),
    usedBytes: cpus.reduce((n, c) => n + c.bytes, 0),
    eventsLost: cpus.reduce((n, c) => n + c.overrun + c.commitOverrun + c.droppedEvents, 0),
    oldestTs: oldest,
  };
}

/** buffer_size_kb reads "4099", "1410 (expanded: 1410)" before first use, or "X" when CPUs differ. */
export function parseBufferSizeKb(text: string): number | null {
  const m = /^\s*(\d+)/.exec(text);
  return m ? Number(m[1]) : null;
}

/** trace_clock reads "local global [boot] tai ..."; the bracketed one is in use. */
export function parseTraceClock(text: string): { current: string | null; available: string[] } {
  const available = text.trim().split(/\s+/).filter(Boolean).map((c) => c.replace(/^\[|\]$/g, ''));
  const m = /\[([^\]]+)\]/.exec(text);
  return { current: m?.[1] ?? null, available };
}

/** "system/event" or "system" → the path of its enable file below events/, or null for a malformed name. */
export function eventEnablePath(spec: string): string | null {
  if (!EVENT_RE.test(spec)) return null;
  return `${spec}/enable`;
}

/** The trigger text: `traceoff if sig == 11 || sig == 6 ...` (field `sig` of signal/signal_generate). */
export function fatalSignalTrigger(signals: readonly number[] = FATAL_SIGNALS): string {
  if (signals.length === 0 || signals.some((s) => !Number.isInteger(s) || s <= 0 || s > 64)) {
    throw new FlightboxError('INTERNAL', `bad signal list ${JSON.stringify(signals)}`);
  }
  return `traceoff if ${signals.map((s) => `sig == ${s}`).join(' || ')}`;
}

/** The timestamp (seconds) of the last event line in the tail of a `trace` text, or null. */
export function lastTraceTimestamp(tail: string): number | null {
  const lines = tail.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] ?? '';
    if (line.startsWith('#') || line.trim() === '') continue;
    // "   comm-1234    [001] d..2.  1214.042848: sys_exit: NR 56 = 0" (the flags column is optional)
    const m = /\[\d+\]\s+(?:\S+\s+)?(\d+\.\d+):\s/.exec(line);
    if (m) return Number(m[1]);
  }
  return null;
}

type FrozenBy = 'request' | 'kernel';

const NO_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {} };

interface CopyOutcome {
  file: string | null;
  /** native: trace.dat written by us (recorder/trace-dat.ts); trace-cmd: by trace-cmd extract */
  method: 'native' | 'trace-cmd' | 'text' | null;
  bytes: number;
  truncated: boolean;
  lastTs: number | null;
  ms: number;
}

export class FtraceRecorder implements Recorder {
  readonly name = 'ftrace' as const;
  readonly #cfg: Readonly<Config['recorders']['ftrace']>;
  readonly #root: string;
  readonly #inst: string;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #traceCmdOpt: string | null;
  readonly #graceMs: number;
  readonly #pollMs: number;
  readonly #maxTextBytesOpt: number | undefined;

  #state: RecorderState = 'stopped';
  #error: string | null = null;
  #created = false;
  #enabled: string[] = [];
  #startWarnings: string[] = [];
  #trigger: string | null = null;
  #frozenBy: FrozenBy | null = null;
  #frozenAt: number | null = null;
  #poller: NodeJS.Timeout | null = null;
  /** snapshots and thaws run one after the other: a thaw must never land in the middle of a copy */
  #queue: Promise<unknown> = Promise.resolve();
  #children = new Set<ChildProcess>();
  #aborting = false;
  readonly #rateCheckMs: number;
  readonly #rateProbeMs: number;
  readonly #useNativeTraceDat: boolean;
  #rateTimer: NodeJS.Timeout | null = null;
  /** the instance's CPUs, listed once per start for the rate checks */
  #rateCpus: number[] | null = null;
  /** per-CPU events written (entries + overrun + read) at the last check */
  #rateBase: { at: number; totals: Map<number, number> } | null = null;
  /** set while the system-call events are paused; probing: they are on again for one check */
  #shed: { backoffMs: number; probeAt: number; probing: boolean } | null = null;
  #pauses: SyscallPause[] = [];

  constructor(cfg: Config['recorders']['ftrace'], opts: FtraceRecorderOptions = {}) {
    if (!INSTANCE_RE.test(cfg.instance)) {
      throw new FlightboxError('CONFIG_INVALID', `recorders.ftrace.instance: expected a name of letters, digits, '_', '.', '-', got ${JSON.stringify(cfg.instance)}`);
    }
    this.#cfg = Object.freeze({ ...cfg, events: Object.freeze([...cfg.events]) as string[] });
    this.#root = opts.tracefsRoot ?? DEFAULT_TRACEFS_ROOT;
    this.#inst = join(this.#root, 'instances', cfg.instance);
    this.#log = opts.log ?? NO_LOG;
    this.#now = opts.now ?? Date.now;
    this.#traceCmdOpt = opts.traceCmd === undefined ? 'auto' : opts.traceCmd;
    this.#graceMs = opts.autoThawGraceMs ?? DEFAULT_AUTO_THAW_GRACE_MS;
    this.#pollMs = opts.pollIntervalMs ?? Math.min(DEFAULT_POLL_INTERVAL_MS, Math.max(50, Math.floor(this.#graceMs / 4)));
    this.#maxTextBytesOpt = opts.maxTextBytes;
    this.#rateCheckMs = opts.rateCheckMs ?? DEFAULT_RATE_CHECK_MS;
    this.#rateProbeMs = opts.rateProbeMs ?? DEFAULT_RATE_PROBE_MS;
    this.#useNativeTraceDat = opts.nativeTraceDat ?? true;
  }

  /** Times the system-call events were paused for too high an event rate, oldest first (the last PAUSES_KEPT). */
  syscallPauses(): SyscallPause[] {
    return this.#pauses.map((p) => ({ ...p }));
  }

  /** The instance directory (exists while running). */
  get instanceDir(): string {
    return this.#inst;
  }

  /** Problems met at start (unknown events, a refused trigger); also in every snapshot's warnings. */
  warnings(): string[] {
    return [...this.#startWarnings];
  }

  /** The trigger installed on signal_generate, or null. */
  trigger(): string | null {
    return this.#trigger;
  }

  /** True while the kernel trigger (or anyone but us) has stopped the buffer and no one has claimed the freeze. */
  autoFrozen(): boolean {
    this.#checkTracingOn();
    return this.#state === 'frozen' && this.#frozenBy === 'kernel';
  }

  async start(): Promise<void> {
    if (this.#state === 'running' || this.#state === 'frozen' || this.#state === 'starting') return;
    this.#state = 'starting';
    this.#error = null;
    this.#startWarnings = [];
    this.#enabled = [];
    this.#trigger = null;
    this.#aborting = false;
    try {
      this.#ensureTracefs();
      this.#removeStale();
      try {
        mkdirSync(this.#inst);
      } catch (err) {
        throw new RecorderUnavailable('ftrace', `Cannot create the tracefs instance ${this.#inst}: ${messageOf(err)}`);
      }
      this.#created = true;
      this.#configure();
      this.#state = 'running';
      this.#frozenBy = null;
      this.#frozenAt = null;
      this.#poller = setInterval(() => this.#poll(), this.#pollMs);
      this.#poller.unref();
      this.#shed = null;
      this.#rateBase = null;
      this.#rateCpus = null;
      if (this.#cfg.maxEventRate !== null && this.#enabled.some(isSyscallEvent)) {
        this.#rateTimer = setInterval(() => this.#checkRate(), this.#rateCheckMs);
        this.#rateTimer.unref();
      }
      this.#log.info({ instance: this.#cfg.instance, events: this.#enabled, trigger: this.#trigger }, 'ftrace recorder started in %s', this.#inst);
    } catch (err) {
      this.#state = 'failed';
      this.#error = messageOf(err);
      this.#teardown();
      throw err;
    }
  }

  async freeze(): Promise<void> {
    if (this.#state !== 'running' && this.#state !== 'frozen') return;
    // Read first: if the kernel trigger got here before us, the freeze time we know is only an upper bound.
    let wasOn: boolean | null;
    try {
      wasOn = this.#readTracingOn();
      this.#write('tracing_on', '0');
    } catch (err) {
      this.#failIfGone(err);
      throw err;
    }
    if (wasOn !== false || this.#frozenAt === null) this.#frozenAt = this.#now();
    this.#state = 'frozen';
    this.#frozenBy = 'request';
  }

  async thaw(): Promise<void> {
    await this.#exclusive(async () => {
      if (this.#state !== 'running' && this.#state !== 'frozen') return;
      try {
        this.#write('tracing_on', '1');
      } catch (err) {
        this.#failIfGone(err);
        throw err;
      }
      this.#state = 'running';
      this.#frozenBy = null;
      this.#frozenAt = null;
    });
  }

  snapshot(dir: string, deadline: number): Promise<SnapshotResult> {
    return this.#exclusive(() => this.#snapshot(dir, deadline));
  }

  async stop(): Promise<void> {
    if (this.#poller) clearInterval(this.#poller);
    this.#poller = null;
    if (this.#rateTimer) clearInterval(this.#rateTimer);
    this.#rateTimer = null;
    if (this.#state === 'stopped' && !this.#created) return;
    // A copy in progress holds `trace` open and trace-cmd holds trace_pipe_raw: both make rmdir fail (EBUSY).
    this.#aborting = true;
    for (const c of this.#children) killGroup(c);
    await this.#queue.catch(() => undefined);
    this.#teardown();
    this.#aborting = false;
    if (this.#created) {
      this.#state = 'failed';
      this.#error = `the tracefs instance ${this.#inst} could not be removed`;
      this.#log.error({ instance: this.#cfg.instance }, 'Failed to remove the tracefs instance %s', this.#inst);
      return;
    }
    if (this.#state !== 'failed') this.#error = null;
    this.#state = 'stopped';
    this.#frozenBy = null;
  }

  status(): RecorderStatus {
    this.#checkTracingOn();
    const live = this.#state === 'running' || this.#state === 'frozen';
    let bufferBytes: number | null = null;
    let usedBytes: number | null = null;
    let eventsLost: number | null = null;
    if (live) {
      try {
        const cpus = this.#readStats();
        const sum = summarizeStats(cpus);
        const kb = parseBufferSizeKb(this.#read('buffer_size_kb'));
        bufferBytes = kb === null ? null : kb * 1024 * cpus.length;
        usedBytes = sum.usedBytes;
        eventsLost = sum.eventsLost;
      } catch (err) {
        this.#log.warn({ instance: this.#cfg.instance }, 'Failed to read ftrace statistics, ignoring: %s', messageOf(err));
      }
    }
    const parts = [`tracefs instance ${this.#inst}: ${this.#enabled.length > 0 ? this.#enabled.join(', ') : 'no events'}`];
    if (this.#trigger) parts.push(`the kernel freezes it at a fatal signal (${this.#trigger})`);
    if (this.#state === 'frozen') parts.push(this.#frozenBy === 'kernel' ? 'now frozen by the kernel trigger' : 'now frozen');
    const paused = this.#pausedNote();
    if (paused) parts.push(paused);
    if (this.#startWarnings.length > 0) parts.push(`warnings: ${this.#startWarnings.join('; ')}`);
    return {
      name: 'ftrace', state: this.#state, bufferBytes, usedBytes, eventsLost, detail: parts.join('; '), error: this.#error,
    };
  }

  // ---- start ----

  /** Root, and tracefs mounted at the root (mounted by us at the default place when it is not). */
  #ensureTracefs(): void {
    const uid = process.getuid?.() ?? 0;
    if (uid !== 0) throw new RecorderUnavailable('ftrace', `The ftrace recorder needs root; running as uid ${uid}.`);
    if (existsSync(join(this.#root, 'instances'))) return;
    // Only the standard place is mounted: an injected root that is empty is a test's or a mistake,
    // and mounting tracefs over an arbitrary directory would leave a mount behind.
    if (this.#root !== DEFAULT_TRACEFS_ROOT) {
      throw new RecorderUnavailable('ftrace', `No tracefs at ${this.#root} (no instances directory).`);
    }
    const mount = findProgram('mount', ['/bin', '/usr/bin']);
    if (!mount) throw new RecorderUnavailable('ftrace', `tracefs is not mounted at ${this.#root} and no mount program was found in /bin or /usr/bin.`);
    const r = spawnSync(mount, ['-t', 'tracefs', 'nodev', this.#root], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0 || !existsSync(join(this.#root, 'instances'))) {
      const why = (r.stderr ?? '').trim() || r.error?.message || `exit status ${String(r.status ?? r.signal)}`;
      throw new RecorderUnavailable('ftrace', `Cannot mount tracefs at ${this.#root}: ${why}.`);
    }
    this.#log.info({ root: this.#root }, 'Mounted tracefs at %s', this.#root);
  }

  /** An instance of our name left by a daemon that crashed: take it down and start afresh. */
  #removeStale(): void {
    if (!existsSync(this.#inst)) return;
    this.#log.warn({ instance: this.#cfg.instance }, 'Removing a stale tracefs instance %s (left by an earlier run)', this.#inst);
    // Stop it first so nothing is recording while it goes; rmdir takes events and triggers with it.
    try { this.#write('tracing_on', '0'); } catch { /* removed below or reported */ }
    try {
      rmdirSync(this.#inst);
    } catch (err) {
      throw new RecorderUnavailable('ftrace', `A stale tracefs instance ${this.#inst} cannot be removed (${errnoCode(err) ?? messageOf(err)}); is another flightbox or trace-cmd using it?`);
    }
  }

  #configure(): void {
    // Quiet while we set it up; a new instance starts with tracing_on = 1.
    this.#write('tracing_on', '0');
    this.#write('options/overwrite', '1');
    const kb = Math.max(1, Math.ceil(this.#cfg.bufferSizeBytes / 1024));
    try {
      this.#write('buffer_size_kb', String(kb));
    } catch (err) {
      throw new RecorderUnavailable('ftrace', `Cannot allocate a trace buffer of ${kb} KiB per CPU in ${this.#inst}: ${messageOf(err)}.`);
    }
    this.#setClock();

    for (const spec of this.#cfg.events) {
      const why = this.#enableEvent(spec);
      if (why === null) this.#enabled.push(spec);
      else this.#warn(`event ${spec}: ${why}, ignoring`);
    }
    if (this.#enabled.length === 0) {
      throw new RecorderUnavailable('ftrace', `None of the configured events could be enabled (${this.#cfg.events.join(', ') || 'none configured'}).`);
    }
    if (this.#cfg.freezeOnFatalSignal) this.#installTrigger();
    this.#write('tracing_on', '1');
  }

  #setClock(): void {
    try {
      const { available } = parseTraceClock(this.#read('trace_clock'));
      const clock = PREFERRED_CLOCKS.find((c) => available.includes(c));
      if (clock) this.#write('trace_clock', clock);
    } catch (err) {
      this.#log.warn({ instance: this.#cfg.instance }, 'Failed to set the trace clock, ignoring: %s', messageOf(err));
    }
  }

  /** null when enabled, else why not. */
  #enableEvent(spec: string): string | null {
    const rel = eventEnablePath(spec);
    if (rel === null) return 'not a valid event name (system/event or system)';
    try {
      this.#write(`events/${rel}`, '1');
      return null;
    } catch (err) {
      return errnoCode(err) === 'ENOENT' ? 'unknown to this kernel' : messageOf(err);
    }
  }

  /**
   * The kernel stops our buffer itself at the moment a fatal signal is generated, so the
   * history before a crash survives however long the crash handler takes to ask. The event
   * must be recording for the trigger to matter (its line is the last one before the stop).
   */
  #installTrigger(): void {
    const covered = this.#enabled.some((e) => e === 'signal' || e === 'signal/signal_generate');
    if (!covered) {
      const why = this.#enableEvent('signal/signal_generate');
      if (why !== null) {
        this.#warn(`freezeOnFatalSignal: cannot enable signal/signal_generate (${why}); the kernel will not freeze the buffer at a crash`);
        return;
      }
      this.#enabled.push('signal/signal_generate');
    }
    // A second traceoff trigger on the same event is refused (EEXIST), so the fallback is one signal, not one trigger per signal.
    const candidates = [fatalSignalTrigger(FATAL_SIGNALS), fatalSignalTrigger([11])];
    let lastErr = '';
    for (const text of candidates) {
      try {
        this.#write('events/signal/signal_generate/trigger', text);
        this.#trigger = text;
        if (text !== candidates[0]) this.#warn(`freezeOnFatalSignal: the kernel refused the combined filter (${lastErr}); freezing at SIGSEGV only`);
        return;
      } catch (err) {
        lastErr = messageOf(err);
      }
    }
    this.#warn(`freezeOnFatalSignal: the kernel refused the traceoff trigger (${lastErr}); the buffer is frozen only on request`);
  }

  #warn(message: string): void {
    this.#startWarnings.push(message);
    this.#log.warn({ instance: this.#cfg.instance }, 'ftrace: %s', message);
  }

  // ---- the kernel's own freeze ----

  #poll(): void {
    this.#checkTracingOn();
    if (this.#state === 'frozen' && this.#frozenBy === 'kernel' && this.#frozenAt !== null && this.#now() - this.#frozenAt >= this.#graceMs) {
      // Nobody asked for a snapshot: a program that handles the signal itself (a JVM's SIGSEGV,
      // a debugger's SIGTRAP) raised it. Resume, keeping the history.
      try {
        this.#write('tracing_on', '1');
        this.#state = 'running';
        this.#frozenBy = null;
        this.#frozenAt = null;
        this.#log.info({ instance: this.#cfg.instance }, 'ftrace: no snapshot asked for within %d ms of a fatal signal; recording again', this.#graceMs);
      } catch (err) {
        this.#fail(`cannot resume recording: ${messageOf(err)}`);
      }
    }
  }

  /**
   * The overhead guard: every rateCheckMs, the events each CPU wrote since the last check
   * (entries + overrun + read, from its stats file). A CPU over maxEventRate a second pauses
   * the system-call events (isSyscallEvent); they are tried again after rateProbeMs, for one
   * check, then after twice as long each time the rate is still too high (up to 5 minutes),
   * and stay on once it is not. Frozen, nothing is counted.
   */
  #checkRate(): void {
    const max = this.#cfg.maxEventRate;
    if (max === null || this.#state !== 'running') {
      this.#rateBase = null;
      return;
    }
    const totals = new Map<number, number>();
    try {
      this.#rateCpus ??= this.#cpuList();
      for (const cpu of this.#rateCpus) totals.set(cpu, eventsWritten(this.#read(`per_cpu/cpu${cpu}/stats`)));
    } catch (err) {
      this.#failIfGone(err);
      return;
    }
    const now = this.#now();
    const base = this.#rateBase;
    this.#rateBase = { at: now, totals };
    if (this.#shed && !this.#shed.probing) {
      if (now < this.#shed.probeAt) return;
      if (this.#setSyscallEvents(true)) {
        this.#shed.probing = true;
        this.#rateBase = null; // the next interval counts with them on
      }
      return;
    }
    if (!base || now <= base.at) return;
    let busiest = 0;
    for (const [cpu, total] of totals) {
      const before = base.totals.get(cpu);
      // A snapshot's reader or a resized buffer can move the counts back: no figure this time.
      if (before === undefined || total < before) continue;
      busiest = Math.max(busiest, ((total - before) * 1000) / (now - base.at));
    }
    if (busiest > max) this.#pauseSyscallEvents(busiest, now);
    else if (this.#shed?.probing) this.#resumeSyscallEvents(now);
  }

  #pauseSyscallEvents(rate: number, now: number): void {
    if (!this.#setSyscallEvents(false)) return;
    const backoffMs = this.#shed ? Math.min(this.#shed.backoffMs * 2, RATE_PROBE_MAX_MS) : this.#rateProbeMs;
    if (!this.#shed) {
      this.#pauses.push({ from: now, to: null, eventsPerSecond: Math.round(rate) });
      if (this.#pauses.length > PAUSES_KEPT) this.#pauses.shift();
      this.#log.warn(
        { instance: this.#cfg.instance, eventsPerSecond: Math.round(rate), maxEventRate: this.#cfg.maxEventRate },
        'ftrace: a CPU recorded %d events a second (recorders.ftrace.maxEventRate is %d); system-call events paused, tried again in %d s',
        Math.round(rate), this.#cfg.maxEventRate, Math.round(backoffMs / 1000),
      );
    }
    this.#shed = { backoffMs, probeAt: now + backoffMs, probing: false };
  }

  #resumeSyscallEvents(now: number): void {
    this.#shed = null;
    const open = this.#pauses.at(-1);
    if (open && open.to === null) open.to = now;
    this.#log.info({ instance: this.#cfg.instance }, 'ftrace: the event rate is below recorders.ftrace.maxEventRate again; system-call events recorded again');
  }

  /** Every enabled system-call event on or off; false (logged) when the kernel refused. */
  #setSyscallEvents(on: boolean): boolean {
    for (const spec of this.#enabled.filter(isSyscallEvent)) {
      const rel = eventEnablePath(spec);
      if (rel === null) continue;
      try {
        this.#write(`events/${rel}`, on ? '1' : '0');
      } catch (err) {
        this.#failIfGone(err);
        this.#log.warn({ instance: this.#cfg.instance, event: spec }, 'ftrace: cannot turn %s %s: %s', spec, on ? 'on' : 'off', messageOf(err));
        return false;
      }
    }
    return true;
  }

  /** One sentence when the system-call events are paused now, else null. */
  #pausedNote(): string | null {
    const open = this.#pauses.at(-1);
    if (!this.#shed || !open || open.to !== null) return null;
    return `system-call events paused since ${new Date(open.from).toISOString()}: a CPU recorded ${open.eventsPerSecond} events a second, over recorders.ftrace.maxEventRate (${this.#cfg.maxEventRate}); tried again every few minutes`;
  }

  /** tracing_on reading 0 while we think we are running: frozen by the kernel trigger. */
  #checkTracingOn(): void {
    if (this.#state !== 'running') return;
    let on: boolean | null;
    try {
      on = this.#readTracingOn();
    } catch (err) {
      this.#failIfGone(err);
      return;
    }
    if (on === false) {
      this.#state = 'frozen';
      this.#frozenBy = 'kernel';
      this.#frozenAt = this.#now();
      this.#log.info({ instance: this.#cfg.instance }, 'ftrace: frozen by the kernel (fatal-signal trigger); resuming in %d ms unless a snapshot is asked for', this.#graceMs);
    }
  }

  #failIfGone(err: unknown): void {
    if (errnoCode(err) === 'ENOENT') this.#fail(`the tracefs instance ${this.#inst} was removed by someone else`);
  }

  #fail(message: string): void {
    this.#state = 'failed';
    this.#error = message;
    if (this.#poller) clearInterval(this.#poller);
    this.#poller = null;
    this.#log.error({ instance: this.#cfg.instance }, 'ftrace: %s', message);
  }

  // ---- snapshot ----

  async #snapshot(dir: string, deadline: number): Promise<SnapshotResult> {
    const warnings: string[] = [...this.#startWarnings];
    if (this.#state !== 'running' && this.#state !== 'frozen') {
      return { files: [], warnings: [...warnings, `ftrace recorder is ${this.#state}; no snapshot`], from: null, to: null };
    }
    // Claim the freeze (an automatic one included): from here on only thaw() resumes recording.
    await this.freeze();
    const files: string[] = [];
    // Statistics first: trace-cmd empties the buffer it reads.
    const wallAtStats = this.#now();
    let cpus: CpuStats[] = [];
    try {
      cpus = this.#readStats();
    } catch (err) {
      warnings.push(`cannot read per-CPU statistics: ${messageOf(err)}`);
    }
    const clock = this.#clock();
    const kb = safe(() => parseBufferSizeKb(this.#read('buffer_size_kb')), null);

    let copy: CopyOutcome = { file: null, method: null, bytes: 0, truncated: false, lastTs: null, ms: 0 };
    if (this.#now() >= deadline) {
      warnings.push('snapshot deadline passed before the trace buffer could be copied; metadata only');
    } else {
      copy = await this.#copyBuffer(dir, deadline, warnings, cpus.length, kb);
      if (copy.file) files.push(copy.file);
    }

    // Trace-clock seconds → epoch ms, anchored on the "now ts" read together with our wall clock.
    const nowTs = cpus.find((c) => c.nowTs !== null)?.nowTs ?? null;
    const toEpoch = (ts: number | null) =>
      ts !== null && nowTs !== null && clock !== null && NANOSECOND_CLOCKS.has(clock) ? Math.round(wallAtStats - (nowTs - ts) * 1000) : null;
    const sum = summarizeStats(cpus);
    const from = toEpoch(sum.oldestTs);
    const to = toEpoch(copy.lastTs) ?? (sum.entries > 0 ? this.#frozenAt : null);

    // Pauses of the system-call events within the span the snapshot holds.
    const pauses = this.#pauses.filter((p) => (p.to === null || from === null || p.to >= from) && (to === null || p.from <= to));
    const paused = this.#pausedNote();
    if (paused) warnings.push(`${paused}: the trace holds no system calls since then`);
    else if (pauses.length > 0) warnings.push(`system-call events were paused ${pauses.length} time(s) within this trace for too high an event rate (recorders.ftrace.maxEventRate; ftrace.json syscallPauses says when)`);
    const meta = {
      recorder: 'ftrace',
      instance: this.#cfg.instance,
      tracefs: this.#inst,
      events: this.#enabled,
      trigger: this.#trigger,
      clock,
      bufferSizeKbPerCpu: kb,
      bufferBytes: kb === null ? null : kb * 1024 * cpus.length,
      frozenBy: this.#frozenBy,
      frozenAt: this.#frozenAt,
      data: copy,
      span: { from, to, toIsFreezeTime: copy.lastTs === null && to !== null },
      totals: sum,
      perCpu: cpus,
      maxEventRate: this.#cfg.maxEventRate,
      syscallPauses: pauses,
      warnings,
    };
    try {
      // Not fsynced here: whoever puts a snapshot into a bundle syncs the bundle.
      writeFileExclusive(dir, 'ftrace.json', `${JSON.stringify(meta, null, 2)}\n`, 0o600, { sync: false });
      files.push('ftrace.json');
    } catch (err) {
      warnings.push(`cannot write ftrace.json: ${messageOf(err)}`);
    }
    return { files, warnings, from, to };
  }

  async #copyBuffer(dir: string, deadline: number, warnings: string[], ncpu: number, kb: number | null): Promise<CopyOutcome> {
    const traceCmd = this.#traceCmdOpt === 'auto' ? findProgram('trace-cmd') : this.#traceCmdOpt;
    const native = traceCmd && this.#useNativeTraceDat ? (kb === null ? 'the buffer size is unknown' : traceDatUnsupported(this.#inst)) : 'off';
    if (traceCmd && native === null) {
      const r = await this.#nativeTraceDat(traceCmd, dir, deadline, kb! * 1024, warnings);
      if (r) return r;
    } else if (traceCmd && native !== 'off') {
      warnings.push(`trace.dat written by trace-cmd (slower): ${native}`);
    }
    if (traceCmd) {
      // trace-cmd 3.1 extract -B also extracts (and so empties) the top-level buffer: only use it
      // when that buffer holds nothing of someone else's.
      const topEntries = safe(() => summarizeStats(this.#readStats(this.#root)).entries, -1);
      if (topEntries !== 0) {
        warnings.push(`trace-cmd not used: it would also consume the top-level ftrace buffer (${topEntries < 0 ? 'unreadable' : `${topEntries} events`}); copied text instead`);
      } else if (deadline - this.#now() < TRACE_CMD_MIN_MS) {
        warnings.push('too little time left before the deadline to run trace-cmd; copied text instead');
      } else {
        const r = await this.#extract(traceCmd, dir, deadline);
        if (r.ok) return r.outcome;
        // What it had read before failing is gone from the kernel buffer (and its partial files are unusable).
        warnings.push(`trace-cmd extract failed (${r.why}); events it had already read are lost; falling back to the text of what remains`);
      }
    }
    if (this.#now() >= deadline) {
      warnings.push('snapshot deadline passed before the text of the trace buffer could be copied');
      return { file: null, method: null, bytes: 0, truncated: false, lastTs: null, ms: 0 };
    }
    const max = this.#maxTextBytesOpt ?? Math.max(MIN_TEXT_MAX_BYTES, TEXT_BYTES_PER_BUFFER_BYTE * (kb ?? 0) * 1024 * ncpu);
    try {
      return await this.#copyText(dir, deadline, max, warnings);
    } catch (err) {
      warnings.push(`cannot copy the text of the trace buffer: ${messageOf(err)}`);
      return { file: null, method: null, bytes: 0, truncated: false, lastTs: null, ms: 0 };
    }
  }

  /**
   * trace.dat written by us (recorder/trace-dat.ts), then compressed by `trace-cmd convert`
   * (a v7 file, as trace-cmd extract writes; ~25 ms for 4 MiB): the pages are read while the
   * recorder is frozen, the slow part of trace-cmd extract (every event format of the kernel)
   * is skipped. Without a working convert the uncompressed file is kept. Built in a private
   * directory and linked into place, as #extract does. null: it failed (said in warnings).
   */
  async #nativeTraceDat(traceCmd: string, dir: string, deadline: number, bufferBytesPerCpu: number, warnings: string[]): Promise<CopyOutcome | null> {
    const t0 = performance.now();
    const work = mkdtempSync(join(dir, '.trace-dat-'));
    try {
      let r: Awaited<ReturnType<typeof writeTraceDat>>;
      try {
        r = await writeTraceDat({ instanceDir: this.#inst, tracefsRoot: this.#root, events: this.#enabled, dir: work, name: 'raw.dat', deadline, bufferBytesPerCpu, now: this.#now });
      } catch (err) {
        // What it had read before failing is gone from the kernel buffer.
        warnings.push(`writing trace.dat failed (${messageOf(err)}); events it had already read are lost; trying trace-cmd on what remains`);
        return null;
      }
      if (r.cutAtDeadline) warnings.push('snapshot deadline passed while the trace buffer was read: trace.dat holds the CPUs read until then, the rest stays in the kernel buffer');
      let file = join(work, 'raw.dat');
      const packed = join(work, 'trace.dat');
      const left = deadline - this.#now();
      const c = left < TRACE_CMD_MIN_MS ? null : await this.#run(traceCmd, ['convert', '--compression', 'any', '-i', file, '-o', packed], left);
      if (c && c.code === 0 && existsSync(packed)) file = packed;
      else warnings.push(`trace.dat stored uncompressed: ${c === null ? 'too little time left before the deadline to compress it' : c.killed ? 'trace-cmd convert was killed at the snapshot deadline' : `trace-cmd convert failed (exit status ${String(c.code)}: ${c.stderr.trim().split('\n').slice(-1)[0] || 'no message'})`}`);
      const bytes = placeTraceDat(file, dir);
      return { file: 'trace.dat', method: 'native', bytes, truncated: r.cutAtDeadline, lastTs: null, ms: Math.round(performance.now() - t0) };
    } catch (err) {
      warnings.push(`storing trace.dat failed (${messageOf(err)}); events already read are lost; trying trace-cmd on what remains`);
      return null;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /**
   * trace-cmd writes into a private directory of ours; the result is linked into place (link
   * does not replace an existing name, nor follow a symlink at it) so a killed run leaves no
   * debris (trace.dat.cpuN files) in the snapshot directory.
   */
  async #extract(traceCmd: string, dir: string, deadline: number): Promise<{ ok: true; outcome: CopyOutcome } | { ok: false; why: string }> {
    const t0 = performance.now();
    const work = mkdtempSync(join(dir, '.trace-cmd-'));
    try {
      const out = join(work, 'trace.dat');
      // -k keeps the instance (without it trace-cmd deletes it). Reading trace_pipe_raw consumes the
      // events: after this the kernel buffer is empty, and the history lives in trace.dat only.
      const r = await this.#run(traceCmd, ['extract', '-k', '-B', this.#cfg.instance, '-o', out], deadline - this.#now());
      if (r.killed) return { ok: false, why: 'killed at the snapshot deadline' };
      if (r.code !== 0) return { ok: false, why: `exit status ${String(r.code)}: ${r.stderr.trim().split('\n').slice(-2).join(' ') || 'no message'}` };
      const bytes = placeTraceDat(out, dir);
      return { ok: true, outcome: { file: 'trace.dat', method: 'trace-cmd', bytes, truncated: false, lastTs: null, ms: Math.round(performance.now() - t0) } };
    } catch (err) {
      return { ok: false, why: messageOf(err) };
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  #run(program: string, args: string[], timeoutMs: number): Promise<{ code: number | null; killed: boolean; stderr: string }> {
    return new Promise((resolve) => {
      // Its own process group, so the SIGKILL at the deadline reaches anything it started.
      const child = spawn(program, args, {
        stdio: ['ignore', 'ignore', 'pipe'], detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      });
      this.#children.add(child);
      let stderr = '';
      let killed = false;
      child.stderr?.on('data', (b: Buffer) => {
        if (stderr.length < TRACE_CMD_STDERR_MAX_BYTES) stderr += b.toString('utf8').slice(0, TRACE_CMD_STDERR_MAX_BYTES - stderr.length);
      });
      const timer = setTimeout(() => { killed = true; killGroup(child); }, Math.max(0, timeoutMs));
      const done = (code: number | null) => {
        clearTimeout(timer);
        this.#children.delete(child);
        resolve({ code, killed: killed || this.#aborting, stderr });
      };
      child.on('error', (err) => { stderr += err.message; done(null); });
      child.on('close', (code) => done(code));
    });
  }

  /**
   * The `trace` file, text as trace-cmd and Perfetto read it. DANGER: it is read only while
   * tracing_on is 0, checked before opening and after every chunk: with tracing on, the copy
   * traces its own syscalls and never reaches the end (a test once wrote 58 GB that way).
   */
  async #copyText(dir: string, deadline: number, maxBytes: number, warnings: string[]): Promise<CopyOutcome> {
    const t0 = performance.now();
    const outcome: CopyOutcome = { file: null, method: 'text', bytes: 0, truncated: false, lastTs: null, ms: 0 };
    if (this.#readTracingOn() !== false) {
      warnings.push('the trace buffer was not frozen (tracing_on is not 0); its text was not copied');
      return outcome;
    }
    const inFd = openSync(join(this.#inst, 'trace'), O_RDONLY | O_NOFOLLOW);
    let out: number;
    try {
      out = createExclusive(dir, 'trace.txt');
    } catch (err) {
      closeSync(inFd);
      throw err;
    }
    outcome.file = 'trace.txt';
    // `trace` gives about one page per read(2): reading synchronously in batches of a
    // megabyte costs a third of one thread-pool round trip per page, and the checks and a
    // turn of the event loop come between batches (~25 ms each here).
    const buf = Buffer.allocUnsafe(READ_BATCH_BYTES);
    let tail = '';
    try {
      for (let eof = false; !eof;) {
        if (this.#aborting) { warnings.push('snapshot abandoned: the recorder is stopping'); outcome.truncated = true; break; }
        if (this.#now() >= deadline) { warnings.push(`snapshot deadline reached; trace.txt cut after ${outcome.bytes} bytes (the most recent events are missing)`); outcome.truncated = true; break; }
        if (this.#readTracingOn() !== false) { warnings.push('tracing was turned back on during the copy; trace.txt cut'); outcome.truncated = true; break; }
        const want = Math.min(buf.length, maxBytes - outcome.bytes);
        let n = 0;
        while (n < want) {
          const r = readSync(inFd, buf, n, want - n, null);
          if (r === 0) { eof = true; break; }
          n += r;
        }
        let off = 0;
        while (off < n) off += writeSync(out, buf, off, n - off);
        outcome.bytes += n;
        if (n > 0) tail = (tail + buf.toString('utf8', Math.max(0, n - 4096), n)).slice(-8192);
        if (!eof && outcome.bytes >= maxBytes) {
          warnings.push(`trace.txt cut at its limit of ${maxBytes} bytes (the most recent events are missing)`);
          outcome.truncated = true;
          break;
        }
        if (!eof) await new Promise((r) => setImmediate(r));
      }
      fsyncSync(out);
    } finally {
      closeSync(inFd);
      closeSync(out);
    }
    outcome.lastTs = outcome.truncated ? null : lastTraceTimestamp(tail);
    outcome.ms = Math.round(performance.now() - t0);
    return outcome;
  }

  // ---- stop ----

  /** Disable, untrigger, remove. Each step is best effort; success is the directory gone. */
  #teardown(): void {
    // Only an instance we made: after a failed start the directory may be someone else's.
    if (!this.#created) return;
    if (!existsSync(this.#inst)) { this.#created = false; return; }
    try { this.#write('tracing_on', '0'); } catch { /* going anyway */ }
    if (this.#trigger) {
      try { this.#write('events/signal/signal_generate/trigger', `!${this.#trigger}`); } catch { /* rmdir removes it too */ }
    }
    try { this.#write('events/enable', '0'); } catch { /* rmdir disables them too */ }
    try {
      rmdirSync(this.#inst);
      this.#created = false;
      this.#trigger = null;
    } catch (err) {
      this.#log.warn({ instance: this.#cfg.instance }, 'Failed to remove %s: %s', this.#inst, messageOf(err));
    }
  }

  // ---- tracefs access ----

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #read(rel: string, base = this.#inst): string {
    let fd: number | undefined;
    try {
      fd = openSync(join(base, rel), O_RDONLY | O_NOFOLLOW);
      const buf = Buffer.allocUnsafe(65536);
      let n = 0;
      // readSync with an explicit length: tracefs files report size 0.
      for (let r = 1; r > 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, null);
      return buf.toString('utf8', 0, n);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /**
   * One write(2) of the whole value, without O_TRUNC and O_CREAT: opening a trigger file with
   * O_TRUNC removes every trigger on the event, and `trace` with O_TRUNC erases the buffer.
   */
  #write(rel: string, value: string): void {
    const fd = openSync(join(this.#inst, rel), O_WRONLY | O_NOFOLLOW);
    try {
      writeSync(fd, value);
    } finally {
      closeSync(fd);
    }
  }

  #readTracingOn(): boolean | null {
    const v = this.#read('tracing_on').trim();
    return v === '0' ? false : v === '1' ? true : null;
  }

  #readStats(base = this.#inst): CpuStats[] {
    return this.#cpuList(base).map((n) => parseCpuStats(this.#read(`per_cpu/cpu${n}/stats`, base), n));
  }

  #cpuList(base = this.#inst): number[] {
    return readdirSync(join(base, 'per_cpu'))
      .map((n) => /^cpu(\d+)$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  }

  #clock(): string | null {
    return safe(() => parseTraceClock(this.#read('trace_clock')).current, null);
  }
}

/**
 * A finished trace.dat from a private work directory into the snapshot directory: synced,
 * root-only, linked (link neither replaces an existing name nor follows a symlink at it).
 * Returns its size.
 */
function placeTraceDat(file: string, dir: string): number {
  const fd = openSync(file, O_RDONLY | O_NOFOLLOW);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(file, 0o600);
  linkSync(file, join(dir, 'trace.dat'));
  return statSync(join(dir, 'trace.dat')).size;
}

function killGroup(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
  } catch {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}

function safe<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}
