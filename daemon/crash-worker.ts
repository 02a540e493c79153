// The daemon's crash worker: a thread of the daemon (daemon/crash-taker.ts) that makes bundles
// of the crashes the launcher read whole and offered to the daemon (handler/install.ts
// handoff()), with the same captureCrash every crash goes through, from the launcher's copy
// (handler/overflow.ts loadSpooled). A thread of its own, so that the capture's synchronous
// parts (copying a core of up to 32 MiB into the store, publishing) never stall the daemon's
// rules, and a thread of a warm process, so that no node has to start for the crash.
// The recorders' snapshot comes from the daemon over its socket, as for any handler.
import { renameSync, rmSync } from 'node:fs';
import { setPriority } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import type { Config } from '../lib/config.js';
import { messageOf } from '../lib/errors.js';
import { kmsg } from '../lib/log.js';
import { captureCrash } from '../handler/capture.js';
import { loadSpooled } from '../handler/overflow.js';
import { FAILED_PREFIX } from '../handler/run-dir.js';
import { Store } from '../store/store.js';

/** What the daemon sends: one crash, claimed by the daemon (the entry renamed `<entry>@<daemon>`). */
export interface TakeJob {
  type: 'take';
  /** the claimed entry's path */
  dir: string;
  /** the launcher's entry name (what the recorders were frozen under) */
  entry: string;
  config: Config;
  /** when the daemon took it, ms since the epoch */
  takenMs: number;
}

/** What the worker answers, once per job. */
export type TakeResult =
  | { type: 'done'; entry: string; id: string; indexed: boolean; totalMs: number }
  | { type: 'failed'; entry: string; error: string; keptAs: string | null };

export interface CrashWorkerData {
  storeRoot: string;
  busyTimeoutMs: number;
}

const port = parentPort;
if (port) {
  const data = workerData as CrashWorkerData;
  // This thread only (Linux nice values are per thread): the daemon's own thread keeps its
  // priority, a crash's bundle is background work as it is in the handler.
  try {
    setPriority(10);
  } catch {
    // not fatal
  }
  let store: Store | null = null;
  port.on('message', (job: TakeJob) => {
    void run(job).then((r) => port.postMessage(r));
  });

  async function run(job: TakeJob): Promise<TakeResult> {
    try {
      store ??= new Store(data.storeRoot, { create: true, busyTimeoutMs: data.busyTimeoutMs });
      const { args, spooled, bundleId, warnings } = loadSpooled(job.dir, 0, { inheritedExe: false, frozeEntry: job.entry });
      const r = await captureCrash(args, {
        config: job.config, configWarnings: warnings, spooled, bundleId, store, stdinFd: null, byDaemon: { takenMs: job.takenMs },
      });
      // Published: the launcher's copy has served.
      rmSync(job.dir, { recursive: true, force: true });
      return { type: 'done', entry: job.entry, id: r.id, indexed: r.indexed, totalMs: r.manifest.timings.totalMs ?? 0 };
    } catch (err) {
      // As a drainer does: kept aside for an operator, never deleted.
      const keptAs = join(dirname(job.dir), `${FAILED_PREFIX}${job.entry}`);
      let kept: string | null = keptAs;
      try {
        renameSync(job.dir, keptAs);
      } catch {
        kept = null; // it stays claimed by the daemon; once the daemon is gone a drainer tries again
      }
      kmsg(`failed to record the crash the launcher spooled in ${basename(job.dir)}${kept ? `, kept as ${basename(kept)}` : ''}: ${messageOf(err)}`, 3);
      return { type: 'failed', entry: job.entry, error: messageOf(err), keptAs: kept };
    }
  }
}
