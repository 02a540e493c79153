// The daemon's side of DESIGN's step 6 ("post-processing: the daemon does it if it is
// running"). A crash whose core the launcher read whole (up to 32 MiB: the process is already
// released) needs no node of its own: the launcher offers it to the running daemon
// (handler/install.ts handoff()) and exits, and the daemon makes the bundle in a worker thread
// (daemon/crash-worker.ts) with its code loaded and the index open. That saves each such crash
// node's 45-90 ms start, and the CPU it takes from eu-stack and zstd on a small machine.
//
// The protocol, all in the launcher's root-only spool (handler/run-dir.ts):
//   daemon                   "<pid> <start time>": this daemon takes crashes (written by start(),
//                            removed first thing by withdraw()); the launcher checks it against /proc
//   offer.<entry>@<pid>-<st> the launcher's offer, then `take <entry>` on the freeze FIFO
//   <entry>@<pid>-<st>       taken: the daemon renamed it, the worker makes the bundle, then removes it
// Every move is a rename, so exactly one of the daemon, the launcher (taking its offer back when
// the FIFO refuses its line) and a drainer (once this daemon is gone) gets each crash. A daemon
// killed with crashes on hand leaves them claimed by a dead process: the next drainer (the next
// crash's handler, or the daemon's start) records them, core included (handler/overflow.ts).
// Offers count as handlers storing cores for core.maxConcurrent (the launcher counts them).
import { existsSync, readdirSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Config } from '../lib/config.js';
import { errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { ensureSecureDir, readSmallNoFollow, writeFileAtomic } from '../lib/safe-fs.js';
import { SPOOL_DAEMON_FILE, SPOOL_OFFER_RE, overflowDir } from '../handler/run-dir.js';
import { HANDLERS_DIR, processStartTime } from '../store/handler-slots.js';
import type { CrashWorkerData, TakeJob, TakeResult } from './crash-worker.js';

/** Crashes the worker records at once (each mostly waits: for eu-stack, zstd, the snapshot). */
export const TAKEN_AT_ONCE = 4;
/** How long stop() waits for the crashes on hand before leaving them to a drainer. */
export const TAKER_STOP_WAIT_MS = 30_000;
/** A worker that dies this often within WORKER_DEATHS_WINDOW_MS: the daemon stops taking crashes. */
const MAX_WORKER_DEATHS = 3;
const WORKER_DEATHS_WINDOW_MS = 10 * 60_000;

export interface CrashTakerOptions {
  storeRoot: string;
  busyTimeoutMs: number;
  /** the running config, read for each crash (it may be reloaded) */
  config: () => Config;
  log: Logger;
  /** crashes this daemon had to give back (its worker died): a drainer should record them now */
  drain: () => void;
  /** the worker's file; default: crash-worker.js beside this module (the build's) */
  workerFile?: string;
}

export interface TakerStatus {
  /** whether launchers hand crashes to this daemon now */
  taking: boolean;
  taken: number;
  failed: number;
  /** crashes on hand: being recorded or waiting for the worker */
  onHand: number;
  /** why it does not take crashes, when it does not */
  detail?: string;
}

export class CrashTaker {
  readonly #opts: CrashTakerOptions;
  readonly #spool: string;
  /** "<pid>-<start time>": the suffix of this daemon's claims and offers; null: not taking */
  #own: string | null = null;
  #worker: Worker | null = null;
  readonly #queue: string[] = [];
  readonly #running = new Set<string>();
  readonly #waiters: (() => void)[] = [];
  readonly #deaths: number[] = [];
  #stopping = false;
  #taken = 0;
  #failed = 0;
  #detail: string | undefined;

  constructor(opts: CrashTakerOptions) {
    this.#opts = opts;
    this.#spool = overflowDir(opts.storeRoot);
  }

  /**
   * Start taking crashes: the worker, then the spool's mark that names this daemon. False (and
   * why, in status()) when it cannot: not root, no built worker, no spool; launchers then start
   * node for every crash, as without a daemon.
   */
  start(): boolean {
    const file = this.#opts.workerFile ?? fileURLToPath(new URL('./crash-worker.js', import.meta.url));
    const start = processStartTime(process.pid);
    if (process.getuid?.() !== 0) this.#detail = 'not root';
    else if (!existsSync(file)) this.#detail = `no ${file} (run npm run build)`;
    else if (start === null) this.#detail = 'cannot read its own start time';
    if (this.#detail) return false;
    try {
      ensureSecureDir(this.#spool, 0o700);
      ensureSecureDir(join(this.#spool, HANDLERS_DIR), 0o700);
      this.#spawn(file);
      this.#own = `${process.pid}-${start}`;
      writeFileAtomic(this.#spool, SPOOL_DAEMON_FILE, `${process.pid} ${start}\n`, 0o600);
    } catch (err) {
      this.#own = null;
      this.#detail = `cannot use ${this.#spool}: ${messageOf(err)}`;
      void this.#worker?.terminate();
      this.#worker = null;
      return false;
    }
    this.sweep();
    return true;
  }

  #spawn(file: string): void {
    const data: CrashWorkerData = { storeRoot: this.#opts.storeRoot, busyTimeoutMs: this.#opts.busyTimeoutMs };
    const worker = new Worker(file, { workerData: data });
    worker.on('message', (r: TakeResult) => this.#finished(r));
    worker.on('error', (err) => this.#opts.log.error({}, 'The crash worker failed: %s', messageOf(err)));
    worker.on('exit', (code) => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      if (!this.#stopping) this.#died(file, code);
    });
    // The worker does not keep the daemon alive by itself.
    worker.unref();
    this.#worker = worker;
  }

  /**
   * The worker died with crashes on hand: they go back to the spool unclaimed (a drainer checks
   * whether each was published already), and a new worker takes over; one that keeps dying
   * ends the handoff.
   */
  #died(file: string, code: number): void {
    const back = [...this.#running, ...this.#queue.splice(0)];
    this.#running.clear();
    for (const entry of back) this.#giveBack(entry);
    const now = Date.now();
    this.#deaths.push(now);
    while (this.#deaths.length > 0 && now - this.#deaths[0]! > WORKER_DEATHS_WINDOW_MS) this.#deaths.shift();
    this.#opts.log.error({ code, givenBack: back.length }, 'The crash worker exited (code %d); its crashes go to a drainer', code);
    if (this.#deaths.length >= MAX_WORKER_DEATHS) {
      this.withdraw();
      this.#detail = `its crash worker died ${this.#deaths.length} times in ${WORKER_DEATHS_WINDOW_MS / 60_000} minutes`;
      this.#opts.log.error({}, 'No longer taking crashes from the launcher: %s', this.#detail);
    } else {
      try {
        this.#spawn(file);
      } catch (err) {
        this.withdraw();
        this.#detail = `cannot start its crash worker: ${messageOf(err)}`;
      }
    }
    this.#wakeWaiters();
    if (back.length > 0) this.#opts.drain();
  }

  /** `<entry>@<us>` back to `<entry>`, for a drainer. */
  #giveBack(entry: string): void {
    try {
      renameSync(join(this.#spool, `${entry}@${this.#own}`), join(this.#spool, entry));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') this.#opts.log.warn({ entry }, 'Could not give a crash back to the spool: %s', messageOf(err));
    }
  }

  /**
   * `take <entry>` on the FIFO: claim the launcher's offer and record it. Without a worker (it
   * kept dying) the offer goes back to the spool unclaimed, for a drainer: no one else takes
   * an offer to a live daemon.
   */
  take(entry: string): void {
    if (this.#own === null || this.#running.has(entry) || this.#queue.includes(entry)) return;
    const offer = join(this.#spool, `offer.${entry}@${this.#own}`);
    try {
      renameSync(offer, join(this.#spool, this.#worker ? `${entry}@${this.#own}` : entry));
    } catch {
      return; // the launcher took it back (its line came too late for it), or it was never ours
    }
    if (!this.#worker) return this.#opts.drain();
    this.#queue.push(entry);
    this.#pump();
  }

  /** Offers to this daemon whose line it did not read (lost with a closed FIFO): taken now. */
  sweep(): void {
    if (this.#own === null) return;
    let names: string[];
    try {
      names = readdirSync(this.#spool);
    } catch {
      return;
    }
    for (const name of names) {
      const m = SPOOL_OFFER_RE.exec(name);
      if (m && `${m[2]}-${m[3]}` === this.#own) this.take(m[1]!);
    }
  }

  #pump(): void {
    while (this.#worker && this.#running.size < TAKEN_AT_ONCE && this.#queue.length > 0) {
      const entry = this.#queue.shift()!;
      this.#running.add(entry);
      const job: TakeJob = { type: 'take', dir: join(this.#spool, `${entry}@${this.#own}`), entry, config: this.#opts.config(), takenMs: Date.now() };
      this.#worker.postMessage(job);
    }
  }

  #finished(r: TakeResult): void {
    if (!this.#running.delete(r.entry)) return;
    if (r.type === 'done') {
      this.#taken++;
      this.#opts.log.info({ entry: r.entry, id: r.id, indexed: r.indexed, totalMs: r.totalMs }, 'Recorded a crash the launcher handed over');
    } else {
      this.#failed++;
      this.#opts.log.error({ entry: r.entry, keptAs: r.keptAs ?? '' }, 'Could not record a crash the launcher handed over: %s', r.error);
    }
    this.#pump();
    this.#wakeWaiters();
  }

  #wakeWaiters(): void {
    if (this.#running.size > 0 || this.#queue.length > 0) return;
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Launchers stop offering crashes (the spool's mark goes); what is on hand is still recorded. */
  withdraw(): void {
    const path = join(this.#spool, SPOOL_DAEMON_FILE);
    try {
      // Only our own mark: a newer daemon may have written its own.
      const text = readSmallNoFollow(path, 256);
      if (this.#own !== null && text.trim().replace(' ', '-') === this.#own) unlinkSync(path);
    } catch {
      // gone already
    }
  }

  /**
   * Stop: withdraw, take the offers whose lines were lost (call after closing the FIFO), and
   * record everything on hand, for at most `waitMs`; what is left stays claimed by this process,
   * for a drainer once it has exited.
   */
  async stop(waitMs = TAKER_STOP_WAIT_MS): Promise<number> {
    this.withdraw();
    this.sweep();
    if (this.#running.size > 0 || this.#queue.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.#waiters.push(r)),
        new Promise<void>((r) => { timer = setTimeout(r, waitMs); }),
      ]);
      clearTimeout(timer);
    }
    this.#stopping = true;
    await this.#worker?.terminate();
    this.#worker = null;
    // Unclaimed again, for the next drainer (it checks whether each was published already).
    const left = [...this.#running, ...this.#queue.splice(0)];
    this.#running.clear();
    for (const entry of left) this.#giveBack(entry);
    if (left.length > 0) this.#opts.log.warn({ left: left.length }, 'Stopped with %d crash(es) handed over still unrecorded: the next crash\'s handler or the next daemon start records them', left.length);
    this.#own = null;
    return left.length;
  }

  status(): TakerStatus {
    return {
      taking: this.#own !== null && this.#worker !== null && existsSync(join(this.#spool, SPOOL_DAEMON_FILE)),
      taken: this.#taken,
      failed: this.#failed,
      onHand: this.#running.size + this.#queue.length,
      ...(this.#detail ? { detail: this.#detail } : {}),
    };
  }
}
