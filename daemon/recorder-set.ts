// The daemon's recorders: starts the configured backends, restarts a failed one with
// backoff, and coordinates freezes. Freezes are counted (a crash storm freezes once and
// thaws when the last handler is done) and leased (a handler that dies cannot leave the
// recorders frozen forever). All snapshots taken in one freeze epoch share one copy of the
// history, hard-linked into each bundle: the recorders saw nothing new in between.
import { linkSync, mkdirSync, readdirSync, rmSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../lib/config.js';
import { messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { RecorderUnavailable, type Recorder, type RecorderName, type RecorderStatus } from '../recorder/recorder.js';

export const FREEZE_LEASE_MS = 60_000;
export const RESTART_BACKOFF_MIN_MS = 1000;
export const RESTART_BACKOFF_MAX_MS = 5 * 60_000;

export interface RecorderSnapshot {
  name: RecorderName;
  dir: string;
  files: string[];
  warnings: string[];
  from: number | null;
  to: number | null;
  ok: boolean;
}

interface Entry {
  name: RecorderName;
  /** stopped on purpose (a rule's stop action): not restarted by the health check */
  stoppedByRule: boolean;
  recorder: Recorder | null;
  unavailable: string | null;
  error: string | null;
  attempts: number;
  restartTimer: NodeJS.Timeout | null;
}

export interface RecorderSetOptions {
  log: Logger;
  /** root-only directory of ours for backend work files and the shared snapshot cache */
  workDir: string;
  /** are we root? (ftrace "auto") */
  root?: boolean;
}

async function createRecorder(name: RecorderName, cfg: Config, workDir: string, log: Logger): Promise<Recorder> {
  switch (name) {
    case 'metrics': {
      const { MetricsRecorder } = await import('../recorder/metrics.js');
      return new MetricsRecorder(cfg.recorders.metrics, { log });
    }
    case 'ftrace': {
      const { FtraceRecorder } = await import('../recorder/ftrace.js');
      return new FtraceRecorder(cfg.recorders.ftrace, { log });
    }
    case 'lttng': {
      const { LttngRecorder } = await import('../recorder/lttng.js');
      const dir = join(workDir, 'lttng');
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      return new LttngRecorder(cfg.recorders.lttng, { workDir: dir, log });
    }
  }
}

/** Which recorders the config turns on. ftrace 'auto' means: when root (tracefs is probed at start). */
export function enabledRecorders(cfg: Config, root: boolean): RecorderName[] {
  const out: RecorderName[] = [];
  if (cfg.recorders.metrics.enabled) out.push('metrics');
  if (cfg.recorders.ftrace.enabled === true || (cfg.recorders.ftrace.enabled === 'auto' && root)) out.push('ftrace');
  if (cfg.recorders.lttng.enabled) out.push('lttng');
  return out;
}

function withDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  const ms = Math.max(0, deadline - Date.now());
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} missed its deadline (${ms} ms)`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

/** Hard-link every file of `from` into `to`, recursively (same filesystem: the store). */
function linkTree(from: string, to: string): string[] {
  const out: string[] = [];
  mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    const st = lstatSync(src);
    if (st.isDirectory()) out.push(...linkTree(src, join(to, name)).map((f) => `${name}/${f}`));
    else if (st.isFile()) {
      linkSync(src, join(to, name));
      out.push(name);
    }
  }
  return out;
}

export class RecorderSet {
  #cfg: Config;
  readonly #opts: RecorderSetOptions;
  #entries = new Map<RecorderName, Entry>();
  #freezeCount = 0;
  #epoch = 0;
  /** how many times a lease expired (and every freeze was dropped) */
  #leaseGeneration = 0;
  /** when the current freeze began (the first of the counted freezes), Date.now() */
  #frozenAt: number | null = null;
  #leaseTimer: NodeJS.Timeout | null = null;
  /** the snapshot already taken in the current freeze epoch, shared by later requests */
  #epochSnapshot: Promise<RecorderSnapshot[]> | null = null;
  #stopped = false;

  constructor(cfg: Config, opts: RecorderSetOptions) {
    this.#cfg = cfg;
    this.#opts = opts;
  }

  get frozen(): boolean {
    return this.#freezeCount > 0;
  }

  get leaseGeneration(): number {
    return this.#leaseGeneration;
  }

  /** When the recorders were frozen, if they are (Date.now() of the first counted freeze). */
  get frozenAt(): number | null {
    return this.#freezeCount > 0 ? this.#frozenAt : null;
  }

  async start(): Promise<void> {
    this.#stopped = false;
    const names = enabledRecorders(this.#cfg, this.#opts.root ?? process.getuid?.() === 0);
    await Promise.all(names.map((name) => {
      const e: Entry = { name, stoppedByRule: false, recorder: null, unavailable: null, error: null, attempts: 0, restartTimer: null };
      this.#entries.set(name, e);
      return this.#startOne(e);
    }));
  }

  async #startOne(e: Entry): Promise<void> {
    const log = this.#opts.log;
    e.attempts++;
    try {
      e.recorder ??= await createRecorder(e.name, this.#cfg, this.#opts.workDir, log);
      await e.recorder.start();
      if (this.#freezeCount > 0) await e.recorder.freeze();
      e.error = null;
      e.attempts = 0;
      log.info({ recorder: e.name }, 'Recorder %s started: %s', e.name, e.recorder.status().detail);
    } catch (err) {
      if (err instanceof RecorderUnavailable) {
        e.unavailable = err.message;
        const auto = e.name === 'ftrace' && this.#cfg.recorders.ftrace.enabled === 'auto';
        (auto ? log.info : log.warn)({ recorder: e.name }, 'Recorder %s is not available here, skipping it: %s', e.name, err.message);
        try { await e.recorder?.stop(); } catch { /* best effort */ }
        e.recorder = null;
        return;
      }
      e.error = messageOf(err);
      try { await e.recorder?.stop(); } catch { /* best effort */ }
      const delay = Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS * 2 ** Math.min(e.attempts - 1, 20));
      log.warn({ recorder: e.name, attempt: e.attempts }, 'Recorder %s failed to start, retrying in %d ms: %s', e.name, delay, e.error);
      if (!this.#stopped) {
        e.restartTimer = setTimeout(() => { e.restartTimer = null; void this.#startOne(e); }, delay);
        e.restartTimer.unref();
      }
    }
  }

  /** Restart recorders that report themselves failed. Called periodically by the daemon. */
  async checkHealth(): Promise<void> {
    for (const e of this.#entries.values()) {
      if (e.recorder && !e.stoppedByRule && !e.restartTimer && e.recorder.status().state === 'failed') {
        e.error = e.recorder.status().error ?? 'failed';
        this.#opts.log.warn({ recorder: e.name }, 'Recorder %s failed, restarting: %s', e.name, e.error);
        try { await e.recorder.stop(); } catch { /* best effort */ }
        await this.#startOne(e);
      }
    }
  }

  #running(): Recorder[] {
    return [...this.#entries.values()].flatMap((e) => (e.recorder && !e.stoppedByRule && !e.unavailable && !e.error ? [e.recorder] : []));
  }

  /** A rule's start action: (re)start a recorder, also one the config leaves disabled. */
  async startRecorder(name: RecorderName): Promise<string> {
    let e = this.#entries.get(name);
    if (e && e.recorder && !e.stoppedByRule && !e.error && !e.unavailable) return `${name} is already running`;
    if (!e) {
      e = { name, stoppedByRule: false, recorder: null, unavailable: null, error: null, attempts: 0, restartTimer: null };
      this.#entries.set(name, e);
    }
    e.stoppedByRule = false;
    e.unavailable = null;
    await this.#startOne(e);
    return e.unavailable ?? e.error ?? `${name} started`;
  }

  /** A rule's stop action: stop a recorder until a start action or a reload. */
  async stopRecorder(name: RecorderName): Promise<string> {
    const e = this.#entries.get(name);
    if (!e || !e.recorder || e.stoppedByRule) return `${name} is not running`;
    e.stoppedByRule = true;
    if (e.restartTimer) clearTimeout(e.restartTimer);
    e.restartTimer = null;
    await e.recorder.stop();
    return `${name} stopped`;
  }

  async freeze(): Promise<RecorderName[]> {
    this.#freezeCount++;
    if (this.#freezeCount === 1) {
      this.#epoch++;
      this.#epochSnapshot = null;
      this.#frozenAt = Date.now();
    }
    // The lease: whoever froze us has this long to snapshot and thaw.
    if (this.#leaseTimer) clearTimeout(this.#leaseTimer);
    this.#leaseTimer = setTimeout(() => {
      this.#opts.log.warn({ count: this.#freezeCount }, 'Freeze lease expired, thawing the recorders');
      this.#leaseGeneration++;
      this.#freezeCount = 1;
      void this.thaw();
    }, FREEZE_LEASE_MS);
    this.#leaseTimer.unref();
    const rs = this.#running();
    await Promise.all(rs.map((r) => r.freeze().catch((err: unknown) => {
      this.#opts.log.warn({ recorder: r.name }, 'Failed to freeze %s, ignoring: %s', r.name, messageOf(err));
    })));
    return rs.map((r) => r.name);
  }

  async thaw(): Promise<void> {
    if (this.#freezeCount === 0) return;
    this.#freezeCount--;
    if (this.#freezeCount > 0) return;
    if (this.#leaseTimer) clearTimeout(this.#leaseTimer);
    this.#leaseTimer = null;
    this.#epochSnapshot = null;
    rmSync(join(this.#opts.workDir, 'epochs'), { recursive: true, force: true });
    await Promise.all(this.#running().map((r) => r.thaw().catch((err: unknown) => {
      this.#opts.log.warn({ recorder: r.name }, 'Failed to thaw %s: %s', r.name, messageOf(err));
    })));
  }

  /**
   * Write every running recorder's snapshot into `dir/<name>/`. Must be called while frozen
   * (freeze() first); the first call in a freeze epoch takes the snapshots, later calls
   * link the same files.
   */
  async snapshotInto(dir: string, deadline: number, only: readonly string[] | null = null): Promise<RecorderSnapshot[]> {
    if (this.#freezeCount === 0) throw new Error('snapshotInto needs the recorders frozen');
    this.prefetch(deadline);
    const taking = this.#epochSnapshot;
    if (!taking) throw new Error('snapshotInto needs the recorders frozen');
    const shared = (await taking).filter((s) => only === null || only.includes(s.name));
    return shared.map((s) => {
      const target = join(dir, s.name);
      try {
        const files = s.ok ? linkTree(s.dir, target) : [];
        return { ...s, dir: target, files };
      } catch (err) {
        return { ...s, dir: target, files: [], ok: false, warnings: [...s.warnings, `could not copy the ${s.name} snapshot: ${messageOf(err)}`] };
      }
    });
  }

  /**
   * Start taking this freeze epoch's snapshots, if nobody has yet: a crash's early freeze
   * does, so that the snapshot is under way before the handler asks for it. Nothing while
   * thawed. (An early freeze that nobody claims costs one snapshot; its lease thaws it.)
   */
  prefetch(deadline: number): void {
    if (this.#freezeCount === 0 || this.#epochSnapshot) return;
    const cache = join(this.#opts.workDir, 'epochs', String(this.#epoch));
    const taking = this.#takeSnapshots(cache, deadline);
    taking.catch(() => { /* whoever links it gets the error */ });
    this.#epochSnapshot = taking;
  }

  async #takeSnapshots(cache: string, deadline: number): Promise<RecorderSnapshot[]> {
    mkdirSync(cache, { recursive: true, mode: 0o700 });
    const results = await Promise.all([...this.#entries.values()].map(async (e): Promise<RecorderSnapshot> => {
      const dir = join(cache, e.name);
      const base = { name: e.name, dir, files: [] as string[], from: null, to: null };
      if (!e.recorder || e.stoppedByRule || e.unavailable || e.error) {
        const why = e.stoppedByRule ? 'stopped by a rule' : e.unavailable ?? e.error ?? 'stopped';
        return { ...base, ok: false, warnings: [`${e.name} recorder is not running: ${why}`] };
      }
      mkdirSync(dir, { mode: 0o700 });
      const t0 = Date.now();
      try {
        const r = await withDeadline(e.recorder.snapshot(dir, deadline), deadline, `the ${e.name} snapshot`);
        this.#opts.log.info({ recorder: e.name, ms: Date.now() - t0, files: r.files.length }, 'Snapshot of %s taken', e.name);
        return { ...base, ...r, dir, ok: true };
      } catch (err) {
        return { ...base, ok: false, warnings: [`Failed to snapshot ${e.name}, ignoring: ${messageOf(err)}`] };
      }
    }));
    return results;
  }

  status(): (RecorderStatus | { name: RecorderName; state: 'unavailable' | 'failed' | 'stopped'; detail: string; error: string | null })[] {
    return [...this.#entries.values()].map((e) => {
      if (e.unavailable) return { name: e.name, state: 'unavailable' as const, detail: e.unavailable, error: null };
      if (e.stoppedByRule) return { name: e.name, state: 'stopped' as const, detail: 'stopped by a rule', error: null };
      if (!e.recorder || e.error) return { name: e.name, state: 'failed' as const, detail: 'restarting with backoff', error: e.error };
      return e.recorder.status();
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#leaseTimer) clearTimeout(this.#leaseTimer);
    this.#leaseTimer = null;
    for (const e of this.#entries.values()) {
      if (e.restartTimer) clearTimeout(e.restartTimer);
      try {
        await e.recorder?.stop();
      } catch (err) {
        this.#opts.log.warn({ recorder: e.name }, 'Failed to stop %s: %s', e.name, messageOf(err));
      }
    }
    this.#entries.clear();
    this.#freezeCount = 0;
    rmSync(join(this.#opts.workDir, 'epochs'), { recursive: true, force: true });
  }
}
