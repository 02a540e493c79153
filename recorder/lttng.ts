// The LTTng flight recorder: a snapshot-mode session of the root session daemon, with
// in-memory ring buffers in overwrite mode; user-space (UST) events always, kernel events
// where lttng-modules exist. freeze() is `lttng snapshot record` into workDir; snapshot()
// moves that CTF tree (babeltrace2 reads it) into the bundle with lttng.json beside it.
//
// Every lttng call is an argument array with an absolute program path and a timeout,
// never a shell. The client runs with LTTNG_HOME pointed at a private directory under
// workDir: root's own ~/.lttngrc (its "current session") is never touched, and the
// client works under the kernel's empty environment where HOME is unset.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { cpus } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import type { Config } from '../lib/config.js';
import { DEFAULT_STORE_ROOT } from '../lib/config.js';
import { errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { SEARCH_PATH, findProgram } from '../lib/programs.js';
import { checkSecureDir, ensureSecureDir, fsyncDir, writeFileExclusive } from '../lib/safe-fs.js';
import { formatSize } from '../lib/units.js';
import { RecorderUnavailable, type Recorder, type RecorderName, type RecorderState, type RecorderStatus, type SnapshotResult } from './recorder.js';

/** Where the daemon keeps our scratch space unless told; it should sit on the store's filesystem so a snapshot is a rename. */
export const DEFAULT_LTTNG_WORK_DIR = `${DEFAULT_STORE_ROOT}/recorders/lttng`;
/** The root session daemon's run directory: its pid file lives here. */
export const DEFAULT_LTTNG_RUN_DIR = '/var/run/lttng';
/** One lttng client call (create, enable-*, destroy, list). Measured: 4-15 ms each. */
export const LTTNG_CALL_TIMEOUT_MS = 10_000;
/** `lttng-sessiond --daemonize` returns once the daemon accepts commands. Measured: 70-130 ms. */
export const SESSIOND_START_TIMEOUT_MS = 10_000;
/** How long a session daemon we started gets to exit after SIGTERM before SIGKILL. */
export const SESSIOND_STOP_TIMEOUT_MS = 5_000;
/**
 * At most one `lttng snapshot record` per this interval. Every record flushes (switches) a
 * sub-buffer of each stream, and a flush with no new events still consumes one: measured
 * with 8 sub-buffers, the 9th back-to-back flush on a quiet channel returns an empty trace.
 * A request within the interval gets a copy of the previous snapshot instead (see snapshot()).
 */
export const MIN_SNAPSHOT_INTERVAL_MS = 1_000;
/**
 * The private copy of the last snapshot that serves requests inside the interval is kept
 * only up to this size: a full snapshot is subbufSize × numSubbuf × CPUs × channels (and
 * × users, for per-UID buffers), hundreds of MiB on a big machine, and copying that on
 * every snapshot costs more than the sub-buffer a second record spends. Without a copy
 * the next request records again.
 */
export const MAX_SNAPSHOT_CACHE_BYTES = 64 * 1024 * 1024;
/**
 * At least this many sub-buffers: each snapshot flushes one, so with few of them a single
 * snapshot throws away a large part of the history. LTTng itself wants powers of two.
 */
export const MIN_NUM_SUBBUF = 8;
/** LTTng refuses sub-buffers smaller than a page ("Invalid parameter"). */
export const MIN_SUBBUF_BYTES = 4096;
/** lttng output we keep (`lttng list -k` prints every kernel event). */
export const LTTNG_OUTPUT_MAX_BYTES = 16 * 1024 * 1024;

export const KERNEL_UNAVAILABLE_WARNING = 'kernel tracing unavailable (no lttng-modules loaded): recording user space only';
export const LTTNG_MISSING_MESSAGE = 'lttng-tools is not installed (apt-get install lttng-tools)';

/** Our channel names inside the session. */
export const UST_CHANNEL = 'flightbox_ust';
export const KERNEL_CHANNEL = 'flightbox_kernel';
/** Context fields added to every event, so a trace says who emitted it. */
export const UST_CONTEXTS = ['vpid', 'vtid', 'procname'] as const;
export const KERNEL_CONTEXTS = ['pid', 'tid', 'procname'] as const;
/** The kernel "event" that means every system call (`enable-event -k --syscall -a`). */
export const KERNEL_SYSCALLS = 'syscalls';

const HOME_DIR = 'home';
const OUTPUT_DIR = 'out';
const CACHE_DIR = 'last';
const SESSIOND_MARK = 'sessiond.json';
const METADATA_FILE = 'lttng.json';
const CTF_DIR = 'ctf';

export interface LttngRecorderOptions {
  /** A root-owned directory of ours (created 0700 if missing): lttng writes snapshots here before they move. */
  workDir: string;
  log?: Logger;
  /** ms since the epoch */
  now?: () => number;
  /**
   * Absolute program paths; default: found in the standard directories. Tests point
   * `lttng` at a file that does not exist to see the "not installed" error.
   */
  programs?: { lttng?: string; sessiond?: string };
  runDir?: string;
  procRoot?: string;
  /** lists possible CPUs ("0-3,8"), which is what LTTng allocates per-CPU buffers for */
  cpuPossiblePath?: string;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  timedOut: boolean;
  spawnError: string | null;
}

interface ChannelInfo {
  name: string;
  domain: 'ust' | 'kernel';
  subbufSizeBytes: number;
  numSubbuf: number;
  events: string[];
  contexts: string[];
}

interface ChannelStats {
  name: string;
  subbufSizeBytes: number | null;
  numSubbuf: number | null;
  discardedEvents: number;
  lostPackets: number;
}

interface LastSnapshot {
  name: string;
  at: number;
  /** our private copy, for requests that come too soon to record again */
  cacheDir: string | null;
}

const NULL_LOG: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export class LttngRecorder implements Recorder {
  readonly name: RecorderName = 'lttng';
  readonly #cfg: Readonly<Config['recorders']['lttng']>;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #workDir: string;
  readonly #homeDir: string;
  readonly #outDir: string;
  readonly #cacheRoot: string;
  readonly #runDir: string;
  readonly #procRoot: string;
  readonly #cpuPossiblePath: string;
  readonly #programs: { lttng?: string; sessiond?: string };

  #state: RecorderState = 'stopped';
  #error: string | null = null;
  #lttng: string | null = null;
  /** the session daemon we started (or adopted after a crash of ours): stopped by stop() */
  #sessiond: { pid: number; startTime: string } | null = null;
  #sessionCreated = false;
  #channels: ChannelInfo[] = [];
  #kernel: { requested: string[]; available: boolean | null; reason: string | null } = { requested: [], available: null, reason: null };
  /** problems that did not stop the recorder; repeated in every snapshot */
  #warnings: string[] = [];
  #stats: ChannelStats[] | null = null;
  #last: LastSnapshot | null = null;
  /** what freeze() holds: a fresh record not yet moved, or a cached one to copy */
  #frozen: { kind: 'record'; name: string; tree: string; at: number; recordMs: number } | { kind: 'reuse'; last: LastSnapshot; stale: boolean } | null = null;
  #seq = 0;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(cfg: Config['recorders']['lttng'], opts: LttngRecorderOptions = { workDir: DEFAULT_LTTNG_WORK_DIR }) {
    this.#cfg = Object.freeze({ ...cfg, kernel: [...cfg.kernel], userspace: [...cfg.userspace] });
    this.#log = opts.log ?? NULL_LOG;
    this.#now = opts.now ?? Date.now;
    this.#workDir = resolve(opts.workDir);
    this.#homeDir = join(this.#workDir, HOME_DIR);
    this.#outDir = join(this.#workDir, OUTPUT_DIR);
    this.#cacheRoot = join(this.#workDir, CACHE_DIR);
    this.#runDir = opts.runDir ?? DEFAULT_LTTNG_RUN_DIR;
    this.#procRoot = opts.procRoot ?? '/proc';
    this.#cpuPossiblePath = opts.cpuPossiblePath ?? '/sys/devices/system/cpu/possible';
    this.#programs = { ...opts.programs };
  }

  /** Operations run one at a time: a freeze arriving during a snapshot waits for it. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  start(): Promise<void> {
    return this.#serial(async () => {
      if (this.#state === 'running' || this.#state === 'frozen') return;
      this.#state = 'starting';
      this.#error = null;
      this.#warnings = [];
      this.#channels = [];
      this.#stats = null;
      this.#last = null;
      this.#frozen = null;
      const t0 = this.#now();
      try {
        await this.#startSession();
        this.#state = 'running';
        this.#log.info({ session: this.#cfg.session, ms: this.#now() - t0, sessiondOurs: this.#sessiond !== null }, 'Started lttng recording: %s', this.#detail());
      } catch (err) {
        this.#state = 'failed';
        this.#error = messageOf(err);
        this.#log.error({ session: this.#cfg.session }, 'Failed to start lttng recording: %s', this.#error);
        await this.#teardown();
        throw err;
      }
    });
  }

  async #startSession(): Promise<void> {
    const cfg = this.#cfg;
    if (process.getuid?.() !== 0) {
      throw new RecorderUnavailable('lttng', 'the lttng recorder must run as root (it records every user\'s applications through the root session daemon)');
    }
    this.#lttng = this.#program('lttng', this.#programs.lttng, LTTNG_MISSING_MESSAGE);
    mkdirSync(this.#workDir, { recursive: true, mode: 0o700 });
    checkSecureDir(this.#workDir);
    ensureSecureDir(this.#homeDir);
    // Snapshot output left by a crash of ours is debris: a fresh session starts empty.
    rmSync(this.#outDir, { recursive: true, force: true });
    rmSync(this.#cacheRoot, { recursive: true, force: true });
    ensureSecureDir(this.#outDir);

    const wantKernel = cfg.kernel.length > 0;
    this.#kernel = { requested: [...cfg.kernel], available: wantKernel ? null : false, reason: null };
    const sessions = await this.#ensureSessiond(wantKernel);

    // A session of our name left by a crashed daemon of ours: its buffers are stale.
    if (sessions.includes(cfg.session)) {
      this.#log.warn({ session: cfg.session }, 'An lttng session named %s already exists (left by an earlier run?); destroying it', cfg.session);
      await this.#must(['destroy', cfg.session]);
    }

    if (wantKernel) {
      // `lttng list -k` fails fast ("Kernel tracer not available") without lttng-modules;
      // the enable-channel -k below would fail the same way, with a less clear message.
      const probe = await this.#run(['list', '-k'], LTTNG_CALL_TIMEOUT_MS);
      this.#kernel.available = succeeded(probe);
      if (!succeeded(probe)) {
        this.#kernel.reason = failureText(probe);
        this.#warnings.push(KERNEL_UNAVAILABLE_WARNING);
        this.#log.warn({ session: cfg.session, lttng: this.#kernel.reason }, KERNEL_UNAVAILABLE_WARNING);
      }
    }
    if (cfg.userspace.length === 0 && !this.#kernel.available) {
      throw new RecorderUnavailable('lttng', wantKernel
        ? 'kernel tracing unavailable (no lttng-modules loaded) and recorders.lttng.userspace is empty: nothing to record'
        : 'recorders.lttng.kernel and recorders.lttng.userspace are both empty: nothing to record');
    }

    // Everything is configured before the first start: LTTng refuses new channels (and
    // per-UID buffer settings) on a session that has been started.
    this.#sessionCreated = true; // set before: a create that timed out may still have happened
    await this.#must(['create', cfg.session, '--snapshot', `--output=${this.#outDir}`]);
    const shape = bufferShape(cfg.subbufSizeBytes, cfg.numSubbuf);
    if (shape.subbufSizeBytes !== cfg.subbufSizeBytes || shape.numSubbuf !== cfg.numSubbuf) {
      this.#log.warn({ session: cfg.session }, 'lttng buffers: %d sub-buffers of %d bytes configured, using %d of %d (powers of two, at least %d of at least %d bytes)',
        cfg.numSubbuf, cfg.subbufSizeBytes, shape.numSubbuf, shape.subbufSizeBytes, MIN_NUM_SUBBUF, MIN_SUBBUF_BYTES);
    }
    const size = [`--subbuf-size=${shape.subbufSizeBytes}`, `--num-subbuf=${shape.numSubbuf}`];
    if (this.#kernel.available) await this.#enableKernel(size, shape);
    if (cfg.userspace.length > 0) {
      // Per-UID buffers outlive the process: per-PID buffers of a crashed process come
      // back empty from a snapshot while lttng reports success.
      await this.#must(['enable-channel', '-s', cfg.session, '-u', '--overwrite', '--buffers-uid', ...size, UST_CHANNEL]);
      for (const pattern of cfg.userspace) await this.#must(['enable-event', '-s', cfg.session, '-u', '-c', UST_CHANNEL, pattern]);
      await this.#must(['add-context', '-s', cfg.session, '-u', '-c', UST_CHANNEL, ...UST_CONTEXTS.flatMap((t) => ['-t', t])]);
      this.#channels.push({
        name: UST_CHANNEL, domain: 'ust', ...shape,
        events: [...cfg.userspace], contexts: [...UST_CONTEXTS],
      });
    }
    await this.#must(['start', cfg.session]);
    await this.#refreshStats(LTTNG_CALL_TIMEOUT_MS);
  }

  async #enableKernel(size: string[], shape: { subbufSizeBytes: number; numSubbuf: number }): Promise<void> {
    const s = this.#cfg.session;
    const ch = await this.#run(['enable-channel', '-s', s, '-k', '--overwrite', ...size, KERNEL_CHANNEL], LTTNG_CALL_TIMEOUT_MS);
    if (!succeeded(ch)) {
      // The probe said yes but the channel failed: still not fatal, user space goes on.
      this.#kernel.available = false;
      this.#kernel.reason = failureText(ch);
      const w = `kernel tracing unavailable (${this.#kernel.reason}): recording user space only`;
      this.#warnings.push(w);
      this.#log.warn({ session: s }, w);
      return;
    }
    const events: string[] = [];
    for (const e of this.#cfg.kernel) {
      const args = e === KERNEL_SYSCALLS ? ['--syscall', '-a'] : [e];
      const r = await this.#run(['enable-event', '-s', s, '-k', '-c', KERNEL_CHANNEL, ...args], LTTNG_CALL_TIMEOUT_MS);
      if (succeeded(r)) {
        events.push(e);
      } else {
        const w = `kernel event ${JSON.stringify(e)} could not be enabled, ignoring: ${failureText(r)}`;
        this.#warnings.push(w);
        this.#log.warn({ session: s, event: e }, w);
      }
    }
    await this.#must(['add-context', '-s', s, '-k', '-c', KERNEL_CHANNEL, ...KERNEL_CONTEXTS.flatMap((t) => ['-t', t])]);
    this.#channels.push({
      name: KERNEL_CHANNEL, domain: 'kernel', ...shape,
      events, contexts: [...KERNEL_CONTEXTS],
    });
  }

  /**
   * Make sure a root session daemon runs; returns the names of its sessions. Instrumented
   * applications register with the global root daemon (/var/run/lttng/lttng-ust-sock-8)
   * whoever started it, so a private daemon of ours would see none of them: we use the one
   * that runs, and start it only when none does (and then stop it in stop()).
   */
  async #ensureSessiond(wantKernel: boolean): Promise<string[]> {
    const listed = await this.#run(['--mi=xml', 'list'], LTTNG_CALL_TIMEOUT_MS);
    if (succeeded(listed)) {
      // A daemon we started before a crash of ours is still ours to stop.
      const mark = this.#readSessiondMark();
      if (mark && this.#alive(mark.pid, mark.startTime)) {
        this.#sessiond = mark;
        this.#log.info({ pid: mark.pid }, 'Adopting the lttng session daemon an earlier run of ours started');
      }
      return sessionNames(listed.stdout);
    }
    const sessiond = this.#program('lttng-sessiond', this.#programs.sessiond, 'lttng-sessiond is not installed (apt-get install lttng-tools)');
    // --no-kernel when no kernel events are wanted: the daemon then does not try to load
    // lttng-modules at all. Without it, a daemon on a machine with no modules still starts
    // (measured: 70 ms) and kernel commands fail with "Kernel tracer not available".
    const args = ['--daemonize', ...(wantKernel ? [] : ['--no-kernel'])];
    const r = await runProgram(sessiond, args, this.#env(), SESSIOND_START_TIMEOUT_MS);
    if (!succeeded(r)) {
      // Another starter may have won the race; the list below tells.
      this.#log.warn({ program: sessiond }, 'lttng-sessiond --daemonize failed: %s', failureText(r));
    } else {
      const pid = this.#readPidFile();
      const startTime = pid === null ? null : this.#startTimeOf(pid);
      if (pid !== null && startTime !== null && this.#isSessiond(pid, sessiond)) {
        this.#sessiond = { pid, startTime };
        this.#writeSessiondMark();
        this.#log.info({ pid, ms: r.ms }, 'Started the lttng session daemon (it will be stopped with the recorder)');
      } else {
        this.#log.warn({ runDir: this.#runDir }, 'Started lttng-sessiond but cannot find its pid; it will be left running');
      }
    }
    const again = await this.#run(['--mi=xml', 'list'], LTTNG_CALL_TIMEOUT_MS);
    if (!succeeded(again)) {
      const started = succeeded(r) ? '' : `; starting lttng-sessiond failed: ${failureText(r)}`;
      throw new RecorderUnavailable('lttng', `cannot reach the lttng session daemon: ${failureText(again)}${started}`);
    }
    return sessionNames(again.stdout);
  }

  /*
   * Freezing. LTTng has no cheap "stop overwriting" switch that is safe at the moment of
   * a crash. Measured here (lttng 2.13.9, 2 CPUs; each call includes the client's own
   * start-up of 3-4 ms):
   *   - `lttng stop` (5 ms; also with --no-wait) and `lttng disable-channel` /
   *     `disable-event` (4-5 ms) are sent by the session daemon to every registered
   *     application. An application that cannot answer, which is what a process whose
   *     core is being piped to us is, holds each of them for LTTNG_APP_SOCKET_TIMEOUT:
   *     5,017-5,265 ms with one SIGSTOPped instrumented process. `lttng stop` also
   *     flushes, so each freeze would spend a sub-buffer of history.
   *   - `lttng snapshot record` with per-UID buffers reads the buffers through the
   *     consumer daemon and does not talk to applications: 8-25 ms, 20 ms with the same
   *     stopped process.
   * So freeze() is the record itself: the history is copied out of the ring into workDir
   * at once, and the ring goes on recording (status says 'frozen': the history of the
   * moment is held). snapshot() moves that record into the bundle; thaw() forgets it.
   * The record costs the one sub-buffer switch a snapshot costs anyway.
   */
  freeze(): Promise<void> {
    if (this.#state !== 'running') return Promise.resolve();
    return this.#serial(() => this.#freezeNow(LTTNG_CALL_TIMEOUT_MS));
  }

  async #freezeNow(timeoutMs: number): Promise<void> {
    if (this.#state !== 'running') return;
    const t0 = this.#now();
    const last = this.#last;
    // Rate limit: a freeze soon after the previous record reuses it (see snapshot()).
    if (last !== null && last.cacheDir !== null && t0 - last.at < MIN_SNAPSHOT_INTERVAL_MS && existsSync(last.cacheDir)) {
      this.#frozen = { kind: 'reuse', last, stale: true };
      this.#state = 'frozen';
      this.#log.debug({ session: this.#cfg.session, ageMs: t0 - last.at }, 'Froze lttng recording by reusing the previous snapshot');
      return;
    }
    if (timeoutMs <= 0) throw new Error('lttng snapshot not recorded: the deadline had passed');
    const name = `${this.#cfg.session}-${process.pid}-${++this.#seq}`;
    const r = await this.#run(['snapshot', 'record', '-s', this.#cfg.session, `--name=${name}`], Math.min(LTTNG_CALL_TIMEOUT_MS, timeoutMs));
    if (!succeeded(r)) {
      this.#sweepOutput();
      throw new Error(`lttng snapshot record failed: ${failureText(r)}`);
    }
    // lttng names the output "<name>-<YYYYmmdd>-<HHMMSS>-<n>" inside the session's output.
    const pattern = new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d{8}-\\d{6}-\\d+$`);
    const produced = readdirSync(this.#outDir).find((e) => pattern.test(e));
    if (produced === undefined) {
      throw new Error(`lttng snapshot record reported success but wrote no ${name}-* directory under ${this.#outDir}`);
    }
    this.#frozen = { kind: 'record', name, tree: join(this.#outDir, produced), at: t0, recordMs: r.ms };
    this.#state = 'frozen';
    this.#log.debug({ session: this.#cfg.session, ms: r.ms }, 'Froze lttng recording: snapshot %s recorded', name);
  }

  /** Resume: the ring never stopped, so this only forgets a record no snapshot took. */
  thaw(): Promise<void> {
    if (this.#state !== 'frozen') return Promise.resolve();
    return this.#serial(async () => {
      if (this.#state !== 'frozen') return;
      if (this.#frozen?.kind === 'record') this.#sweepOutput();
      this.#frozen = null;
      this.#state = 'running';
    });
  }

  /**
   * Write the history held by freeze() into `dir/ctf` and describe it in `dir/lttng.json`.
   *
   * Rate limit (MIN_SNAPSHOT_INTERVAL_MS): a second snapshot while still frozen gets a copy
   * of the same record (the same history: no warning). A freeze less than the interval
   * after the previous record does not record again: the snapshot is a copy of the
   * previous one, with a warning that events since then are missing, because quick
   * repeated records on a quiet channel push the history out. Copies come from our private
   * cache: the previous bundle may have been published (moved) by then. A snapshot too big
   * to cache (MAX_SNAPSHOT_CACHE_BYTES) leaves no cache, and the next freeze records again.
   */
  snapshot(dir: string, deadline: number): Promise<SnapshotResult> {
    return this.#serial(async () => {
      if (this.#state !== 'running' && this.#state !== 'frozen') {
        throw new Error(`lttng recorder is ${this.#state}${this.#error ? ` (${this.#error})` : ''}: nothing to snapshot`);
      }
      const t0 = this.#now();
      const warnings = [...this.#warnings];
      let freezeFailed = false;
      if (this.#state === 'running') {
        try {
          await this.#freezeNow(deadline - t0);
        } catch (err) {
          freezeFailed = true;
          warnings.push(messageOf(err));
        }
      }
      const ctfDir = join(dir, CTF_DIR);
      if (existsSync(ctfDir)) throw new Error(`${ctfDir} already exists; refusing to overwrite it`);
      let meta: { snapshotName: string | null; recordedAt: number | null; recordMs: number | null; reusedFrom: string | null } = {
        snapshotName: null, recordedAt: null, recordMs: null, reusedFrom: null,
      };
      const frozen = this.#frozen;
      if (frozen?.kind === 'record') {
        await this.#takeRecord(frozen, ctfDir, deadline);
        meta = { snapshotName: frozen.name, recordedAt: frozen.at, recordMs: frozen.recordMs, reusedFrom: null };
      } else if (frozen?.kind === 'reuse' && frozen.last.cacheDir !== null) {
        const { last } = frozen;
        if (frozen.stale) {
          warnings.push(`reused the lttng snapshot taken ${t0 - last.at} ms before instead of recording again (at most one record per ${MIN_SNAPSHOT_INTERVAL_MS} ms: each one spends a sub-buffer of history); events since then are missing`);
        }
        try {
          await cp(last.cacheDir!, ctfDir, { recursive: true, errorOnExist: true, force: false });
          meta = { snapshotName: last.name, recordedAt: last.at, recordMs: null, reusedFrom: last.name };
        } catch (err) {
          warnings.push(`could not copy the previous lttng snapshot: ${messageOf(err)}`);
        }
      } else if (!freezeFailed) {
        warnings.push('the frozen lttng history went to an earlier snapshot and was too big to keep a copy of; thaw and freeze again for a new one');
      }
      const written = existsSync(ctfDir) ? listFiles(ctfDir).map((f) => `${CTF_DIR}/${f}`) : [];
      if (existsSync(ctfDir) && !written.some((f) => f.endsWith('/metadata'))) {
        warnings.push('the lttng snapshot holds no trace: no instrumented application has emitted an enabled event since recording started');
      }
      const metadata = {
        recorder: 'lttng',
        session: this.#cfg.session,
        snapshotName: meta.snapshotName,
        recordedAt: meta.recordedAt === null ? null : new Date(meta.recordedAt).toISOString(),
        reusedFrom: meta.reusedFrom,
        // how long `lttng snapshot record` took, at freeze()
        recordMs: meta.recordMs,
        durationMs: this.#now() - t0,
        reader: `babeltrace2 ${CTF_DIR}`,
        kernel: { requested: this.#kernel.requested, available: this.#kernel.available, reason: this.#kernel.reason },
        channels: this.#channels.map((c) => ({
          ...c,
          bufferBytesPerCpu: c.subbufSizeBytes * c.numSubbuf,
          buffers: c.domain === 'ust' ? 'per-uid' : 'global',
          discardedEvents: this.#stats?.find((s) => s.name === c.name)?.discardedEvents ?? null,
          lostPackets: this.#stats?.find((s) => s.name === c.name)?.lostPackets ?? null,
        })),
        sessiondStartedByUs: this.#sessiond !== null,
        warnings,
      };
      writeFileExclusive(dir, METADATA_FILE, `${JSON.stringify(metadata, null, 2)}\n`, 0o640);
      fsyncDir(dir);
      this.#log.info({ session: this.#cfg.session, ms: this.#now() - t0, files: written.length, reused: meta.reusedFrom !== null }, 'Wrote lttng snapshot to %s', dir);
      return { files: [...written, METADATA_FILE], warnings, from: null, to: meta.recordedAt };
    });
  }

  /** Move the record made by freeze() into ctfDir, keep a private copy, refresh the counters. */
  async #takeRecord(frozen: { name: string; tree: string; at: number }, ctfDir: string, deadline: number): Promise<void> {
    const tMove = performance.now();
    try {
      renameSync(frozen.tree, ctfDir);
    } catch (err) {
      if (errnoCode(err) !== 'EXDEV') throw err;
      // workDir on another filesystem than the bundle: copy, then drop ours.
      await cp(frozen.tree, ctfDir, { recursive: true, errorOnExist: true, force: false });
      rmSync(frozen.tree, { recursive: true, force: true });
    }
    this.#sweepOutput();
    const tCache = performance.now();
    // The private copy serves later requests inside the rate-limit interval; it is
    // optional, so it is skipped when the deadline is close, and its failure only logged.
    rmSync(this.#cacheRoot, { recursive: true, force: true });
    let cacheDir: string | null = null;
    const bytes = treeBytes(ctfDir);
    if (bytes <= MAX_SNAPSHOT_CACHE_BYTES && deadline - this.#now() > 100) {
      try {
        ensureSecureDir(this.#cacheRoot);
        cacheDir = join(this.#cacheRoot, frozen.name);
        // A reflink where the filesystem can (btrfs, xfs): then the copy is free.
        await cp(ctfDir, cacheDir, { recursive: true, errorOnExist: true, force: false, mode: constants.COPYFILE_FICLONE });
      } catch (err) {
        this.#log.warn({ session: this.#cfg.session }, 'Failed to keep a copy of the lttng snapshot, ignoring: %s', messageOf(err));
        cacheDir = null;
      }
    }
    this.#last = { name: frozen.name, at: frozen.at, cacheDir };
    // Still frozen: a second snapshot now holds the same history, so it copies this one.
    this.#frozen = cacheDir === null ? null : { kind: 'reuse', last: this.#last, stale: false };
    const tStats = performance.now();
    if (deadline - this.#now() > 50) await this.#refreshStats(Math.min(LTTNG_CALL_TIMEOUT_MS, deadline - this.#now()));
    const ms = (a: number, b: number) => Math.round(b - a);
    this.#log.debug({ session: this.#cfg.session, moveMs: ms(tMove, tCache), cacheMs: ms(tCache, tStats), statsMs: ms(tStats, performance.now()), bytes },
      'Moved lttng snapshot %s', frozen.name);
  }

  stop(): Promise<void> {
    return this.#serial(async () => {
      await this.#teardown();
      this.#state = 'stopped';
      this.#channels = [];
      this.#stats = null;
    });
  }

  /** Destroy the session, stop the daemon if ours, remove our scratch space. Never throws. */
  async #teardown(): Promise<void> {
    const s = this.#cfg.session;
    if (this.#lttng !== null && this.#sessionCreated) {
      const r = await this.#run(['destroy', s], LTTNG_CALL_TIMEOUT_MS);
      // Exit 23: no such session (already gone: stop twice, or the daemon died).
      if (!succeeded(r) && r.code !== 23 && !/no session daemon/i.test(r.stderr)) {
        this.#log.warn({ session: s }, 'Failed to destroy lttng session, ignoring: %s', failureText(r));
      }
    }
    this.#sessionCreated = false;
    if (this.#sessiond !== null) {
      const { pid, startTime } = this.#sessiond;
      try {
        const how = await this.#stopSessiond(pid, startTime);
        this.#log.info({ pid }, 'Stopped the lttng session daemon we started (%s)', how);
      } catch (err) {
        this.#log.warn({ pid }, 'Failed to stop the lttng session daemon we started, ignoring: %s', messageOf(err));
      }
      this.#sessiond = null;
    }
    for (const d of [this.#outDir, this.#cacheRoot, this.#homeDir, join(this.#workDir, SESSIOND_MARK)]) {
      try {
        rmSync(d, { recursive: true, force: true });
      } catch (err) {
        this.#log.warn({ path: d }, 'Failed to remove lttng scratch files, ignoring: %s', messageOf(err));
      }
    }
    this.#last = null;
    this.#frozen = null;
  }

  status(): RecorderStatus {
    const cpus = this.#possibleCpus();
    const bufferBytes = this.#channels.length === 0 ? null : this.#channels.reduce((n, c) => n + c.subbufSizeBytes * c.numSubbuf * cpus, 0);
    const lost = this.#stats === null ? null : this.#stats.reduce((n, s) => n + s.discardedEvents, 0);
    return {
      name: this.name,
      state: this.#state,
      bufferBytes,
      usedBytes: null,
      eventsLost: lost,
      detail: this.#detail(),
      error: this.#error,
    };
  }

  #detail(): string {
    const cfg = this.#cfg;
    if (this.#state === 'stopped') return `lttng snapshot session ${cfg.session} (not running)`;
    const parts: string[] = [];
    for (const c of this.#channels) {
      const per = `${formatSize(c.subbufSizeBytes)} × ${c.numSubbuf} per CPU`;
      parts.push(c.domain === 'ust'
        ? `user space [${c.events.join(', ')}] (per-UID buffers, ${per} for each user running instrumented applications)`
        : `kernel [${c.events.join(', ')}] (${per})`);
    }
    const what = parts.length > 0 ? parts.join(', ') : 'nothing yet';
    const warn = this.#warnings.length > 0 ? `; ${this.#warnings.join('; ')}` : '';
    return `lttng snapshot session ${cfg.session}: ${what}; output staged in ${this.#outDir}${warn}`;
  }

  // --- helpers -------------------------------------------------------------------------

  #program(name: string, explicit: string | undefined, missing: string): string {
    if (explicit !== undefined) {
      if (!isAbsolute(explicit) || !isExecutable(explicit)) throw new RecorderUnavailable('lttng', `${missing}: no executable at ${explicit}`);
      return explicit;
    }
    const found = findProgram(name);
    if (found === null) throw new RecorderUnavailable('lttng', missing);
    return found;
  }

  #env(): NodeJS.ProcessEnv {
    return { PATH: SEARCH_PATH.join(':'), LTTNG_HOME: this.#homeDir, LC_ALL: 'C' };
  }

  /** An lttng client call; --no-sessiond so that a client never spawns a daemon we cannot account for. */
  #run(args: string[], timeoutMs: number): Promise<RunResult> {
    if (this.#lttng === null) throw new Error('lttng program not resolved');
    return runProgram(this.#lttng, ['--no-sessiond', ...args], this.#env(), timeoutMs);
  }

  async #must(args: string[], timeoutMs = LTTNG_CALL_TIMEOUT_MS): Promise<RunResult> {
    const r = await this.#run(args, timeoutMs);
    if (!succeeded(r)) throw new Error(`lttng ${args.join(' ')} failed: ${failureText(r)}`);
    return r;
  }

  /**
   * Discarded events and lost packets per channel, from the stable XML output. status()
   * reports discarded events only: in overwrite mode, overwritten sub-buffers ("lost
   * packets") are the design, not a loss.
   */
  async #refreshStats(timeoutMs: number): Promise<void> {
    const r = await this.#run(['--mi=xml', 'list', this.#cfg.session], timeoutMs);
    if (!succeeded(r)) return;
    this.#stats = channelStats(r.stdout);
    // What lttng actually allocated is the truth for status().bufferBytes.
    for (const c of this.#channels) {
      const st = this.#stats.find((x) => x.name === c.name);
      if (st?.subbufSizeBytes) c.subbufSizeBytes = st.subbufSizeBytes;
      if (st?.numSubbuf) c.numSubbuf = st.numSubbuf;
    }
  }

  #sweepOutput(): void {
    try {
      for (const e of readdirSync(this.#outDir)) rmSync(join(this.#outDir, e), { recursive: true, force: true });
    } catch (err) {
      this.#log.warn({ path: this.#outDir }, 'Failed to sweep lttng snapshot output, ignoring: %s', messageOf(err));
    }
  }

  #readPidFile(): number | null {
    try {
      const pid = Number.parseInt(readFileSync(join(this.#runDir, 'lttng-sessiond.pid'), 'utf8').trim(), 10);
      return Number.isInteger(pid) && pid > 1 ? pid : null;
    } catch {
      return null;
    }
  }

  #isSessiond(pid: number, program: string): boolean {
    try {
      const exe = readlinkSync(join(this.#procRoot, String(pid), 'exe')).replace(/ \(deleted\)$/, '');
      return exe === program || exe === realpathSync(program);
    } catch {
      return false;
    }
  }

  /** Field 22 of /proc/PID/stat (start time in clock ticks): tells a reused pid from ours. */
  #statOf(pid: number): { state: string; startTime: string } | null {
    try {
      const stat = readFileSync(join(this.#procRoot, String(pid), 'stat'), 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const state = rest[0];
      const startTime = rest[19];
      return state === undefined || startTime === undefined ? null : { state, startTime };
    } catch {
      return null;
    }
  }

  #startTimeOf(pid: number): string | null {
    return this.#statOf(pid)?.startTime ?? null;
  }

  /** Alive and the same process; a zombie counts as gone (our init may be slow to reap it). */
  #alive(pid: number, startTime: string): boolean {
    const st = this.#statOf(pid);
    return st !== null && st.startTime === startTime && st.state !== 'Z' && st.state !== 'X';
  }

  async #stopSessiond(pid: number, startTime: string): Promise<string> {
    if (!this.#alive(pid, startTime)) return 'it had already exited';
    const waitGone = async (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (!this.#alive(pid, startTime)) return true;
        await new Promise((r) => setTimeout(r, 20));
      }
      return !this.#alive(pid, startTime);
    };
    try {
      process.kill(pid, 'SIGTERM');
    } catch (err) {
      if (errnoCode(err) === 'ESRCH') return 'it had already exited';
      throw err;
    }
    if (await waitGone(SESSIOND_STOP_TIMEOUT_MS)) return 'SIGTERM';
    this.#log.warn({ pid }, 'lttng-sessiond did not exit within %d ms of SIGTERM; killing it', SESSIOND_STOP_TIMEOUT_MS);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    await waitGone(1000);
    return 'SIGKILL';
  }

  #writeSessiondMark(): void {
    if (this.#sessiond === null) return;
    const path = join(this.#workDir, SESSIOND_MARK);
    try {
      if (existsSync(path)) unlinkSync(path);
      writeFileExclusive(this.#workDir, SESSIOND_MARK, JSON.stringify(this.#sessiond));
    } catch (err) {
      this.#log.warn({ path }, 'Failed to note the session daemon we started, ignoring: %s', messageOf(err));
    }
  }

  #readSessiondMark(): { pid: number; startTime: string } | null {
    try {
      const path = join(this.#workDir, SESSIOND_MARK);
      if (!lstatSync(path).isFile()) return null;
      const v = JSON.parse(readFileSync(path, 'utf8')) as { pid?: unknown; startTime?: unknown };
      return typeof v.pid === 'number' && typeof v.startTime === 'string' ? { pid: v.pid, startTime: v.startTime } : null;
    } catch {
      return null;
    }
  }

  #possibleCpus(): number {
    try {
      const n = countCpuList(readFileSync(this.#cpuPossiblePath, 'utf8'));
      if (n > 0) return n;
    } catch {
      // fall through
    }
    return Math.max(1, cpus().length);
  }
}

// --- pure helpers (exported for unit tests) ------------------------------------------

/** LTTng's buffer constraints applied up front: powers of two, a page at least, MIN_NUM_SUBBUF at least. */
export function bufferShape(subbufSizeBytes: number, numSubbuf: number): { subbufSizeBytes: number; numSubbuf: number } {
  const pow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
  return { subbufSizeBytes: Math.max(MIN_SUBBUF_BYTES, pow2(subbufSizeBytes)), numSubbuf: Math.max(MIN_NUM_SUBBUF, pow2(numSubbuf)) };
}

/** "0-3,8,10-11\n" → 7 */
export function countCpuList(text: string): number {
  let n = 0;
  for (const part of text.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) continue;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi >= lo) n += hi - lo + 1;
  }
  return n;
}

/** Session names from `lttng --mi=xml list`. */
export function sessionNames(xml: string): string[] {
  return [...xml.matchAll(/<session><name>([^<]*)<\/name>/g)].map((m) => unescapeXml(m[1] ?? ''));
}

/** Per-channel discarded events and lost packets from `lttng --mi=xml list NAME`. */
export function channelStats(xml: string): ChannelStats[] {
  const out: ChannelStats[] = [];
  for (const m of xml.matchAll(/<channel><name>([^<]*)<\/name>([\s\S]*?)<\/channel>/g)) {
    const body = m[2] ?? '';
    const num = (tag: string) => {
      const v = new RegExp(`<${tag}>(\\d+)<`).exec(body)?.[1];
      return v === undefined ? null : Number(v);
    };
    out.push({
      name: unescapeXml(m[1] ?? ''),
      subbufSizeBytes: num('subbuffer_size'),
      numSubbuf: num('subbuffer_count'),
      discardedEvents: Number(/<discarded_events>(\d+)</.exec(body)?.[1] ?? 0),
      lostPackets: Number(/<lost_packets>(\d+)</.exec(body)?.[1] ?? 0),
    });
  }
  return out;
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

function succeeded(r: RunResult): boolean {
  return r.code === 0 && r.signal === null && !r.timedOut && r.spawnError === null;
}

/**
 * One line on why a call failed. Any non-zero exit or signal is a failure: the lttng
 * client is often killed by SIGPIPE when the daemon drops the connection on an error.
 */
function failureText(r: RunResult): string {
  const said = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const line = said.find((l) => l.startsWith('Error:')) ?? said[said.length - 1] ?? '';
  const why = r.spawnError !== null ? r.spawnError
    : r.timedOut ? `timed out after ${r.ms} ms`
      : r.signal !== null ? `killed by ${r.signal}` : `exit ${r.code}`;
  return line ? `${line.slice(0, 300)} (${why})` : why;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function treeBytes(root: string): number {
  return listFiles(root).reduce((n, f) => n + statSync(join(root, f)).size, 0);
}

function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(relative(root, p));
    }
  };
  walk(root);
  return out.sort();
}

/** Run a program (never a shell) with a timeout; resolves, never rejects. */
function runProgram(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<RunResult> {
  const t0 = Date.now();
  return new Promise((done) => {
    let stdout = '';
    let stderr = '';
    let settled = false;
    let timedOut = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const ms = Date.now() - t0;
      done({ code, signal, stdout, stderr, ms, timedOut, spawnError });
    };
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, Math.max(1, timeoutMs));
    const take = (into: 'out' | 'err') => (b: Buffer) => {
      const s = b.toString('utf8');
      if (into === 'out') { if (stdout.length < LTTNG_OUTPUT_MAX_BYTES) stdout += s; } else if (stderr.length < 65536) stderr += s;
    };
    child.stdout.on('data', take('out'));
    child.stderr.on('data', take('err'));
    child.on('error', (err) => finish(null, null, `cannot run ${file}: ${messageOf(err)}`));
    // 'close' waits for the pipes; a daemonizing program may hand them to a child that
    // keeps them open, so after 'exit' give the pipes a moment, then stop waiting.
    child.on('close', (code, signal) => finish(code, signal, null));
    child.on('exit', (code, signal) => {
      setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish(code, signal, null);
      }, 200).unref();
    });
  });
}
