// The crash handler's own caches: a root-only directory on tmpfs (gone at boot) holding the
// parsed configs (handler/main.ts) and V8's compiled code of the handler (handler/start.ts).
// Nothing in it is trusted unless the directory is a real one of ours that no one else may
// write (lib/safe-fs checkSecureDir); every file in it is a cache that may simply be rebuilt.
export const HANDLER_RUN_DIR = '/run/flightbox';

/** Each copy the launcher makes of a /proc file on the crash-storm path stops here (RLIMIT_FSIZE). */
export const OVERFLOW_FILE_MAX_BYTES = 4 * 1024 * 1024;

/**
 * The drainers' locks: at most two drainers at once (two CPUs' worth: a storm's entries cost
 * ~15 ms each to make into bundles, mostly creating files in the store).
 */
export const DRAIN_LOCKS = ['.drain', '.drain2'] as const;

/**
 * The launcher reads this much of a core itself before node starts (handler/install.ts): a
 * core that ends within it is read whole, and its process released, in the time of a few
 * small programs instead of node's 40-50 ms start. RAM on tmpfs until node has copied it.
 */
export const CORE_PREFIX_BYTES = 8 * 1024 * 1024;

/**
 * A core longer than CORE_PREFIX_BYTES is read on by the launcher, once it has made the pipe
 * bigger, up to this much in all: a core that ends within it is read whole too (eu-stack and
 * zstd start on it while node starts), one that goes on is left to node after this much.
 * RAM on tmpfs, like the prefix, until node has copied it.
 */
export const CORE_WHOLE_BYTES = 32 * 1024 * 1024;

/** The launcher's record of the size it gave the core's pipe (handler/install.ts pipeFunction). */
export const LAUNCHER_PIPE_FILE = 'pipe';

/** The fd on which the launcher hands node the crashed process's executable (/proc/<pid>/exe). */
export const LAUNCHER_EXE_FD = 9;

/** Entries a drainer could not turn into a bundle are kept under this prefix, for an operator. */
export const FAILED_PREFIX = 'failed.';
/** A launcher's entry name, "<time>.<pid>.<launcher pid>", and "@<pid>-<start time>" of a process holding one. */
const ENTRY = String.raw`\d{1,20}\.\d{1,10}\.\d{1,10}`;
const HOLDER = String.raw`@(\d{1,10})-(\d{1,20})`;
/** A launcher's entry: "<time>.<pid>.<launcher pid>". */
export const SPOOL_ENTRY_RE = new RegExp(`^${ENTRY}$`);
/** An entry claimed by a drainer (or the daemon): "<entry>@<drainer pid>-<its start time>". */
export const SPOOL_CLAIMED_RE = new RegExp(`^(${ENTRY})${HOLDER}$`);

/**
 * An entry the launcher offered to the running daemon (handler/install.ts handoff(), daemon/crash-taker.ts):
 * "offer.<entry>@<daemon pid>-<its start time>". The daemon takes it by renaming it to its
 * claim; the launcher takes it back the same way when its line cannot reach the daemon; a
 * drainer takes it once that daemon is gone.
 */
export const SPOOL_OFFER_RE = new RegExp(`^offer\\.(${ENTRY})${HOLDER}$`);

/**
 * The running daemon's "<pid> <start time>" in the spool, while it takes crashes the launcher
 * read whole (daemon/crash-taker.ts): the launcher offers them to it instead of starting node.
 */
export const SPOOL_DAEMON_FILE = 'daemon';

/** The spool's names that are crashes (waiting, being recorded, or failed), not locks or the registry. */
export function spoolCrashes(names: readonly string[]): { waiting: number; failed: number } {
  let waiting = 0;
  let failed = 0;
  for (const n of names) {
    if (SPOOL_ENTRY_RE.test(n) || SPOOL_CLAIMED_RE.test(n) || SPOOL_OFFER_RE.test(n)) waiting++;
    else if (n.startsWith(FAILED_PREFIX)) failed++;
  }
  return { waiting, failed };
}

/** The tmpfs every Linux system mounts (/run is not tmpfs everywhere). */
export const OVERFLOW_BASE = '/dev/shm';

/**
 * Where the launcher spools the crashes of a storm for the store at `storeRoot`
 * (handler/overflow.ts): a root-owned 0700 directory on tmpfs. Each such crash makes some 25
 * files that live for seconds; on the store's disk, creating a file cost 0.05-1 ms here
 * (ext4 skips inodes deleted in the last seconds, and a storm deletes many), all of it while
 * the crashed process waits. The name is predictable: a directory someone else made there
 * is not root's, and the launcher and the drainer then leave it alone (no storm path).
 */
export function overflowDir(storeRoot: string): string {
  let h = 0x811c9dc5;
  for (const ch of storeRoot) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return `${OVERFLOW_BASE}/flightbox-incoming-${h.toString(16).padStart(8, '0')}`;
}

/** Where the loader (start.ts) leaves what became of the code cache, for the manifest. */
export const CODE_CACHE_STATE = Symbol.for('flightbox.handler.codeCache');

/** The launcher's files for the eu-stack it started (handler/install.ts trace(), handler/backtrace.ts launcherRun). */
export const LAUNCHER_TRACE = { started: 'bt', out: 'bt.out', modules: 'bt.mods', err: 'bt.err', status: 'bt.status' } as const;

/** What the launcher's trace() writes into LAUNCHER_TRACE.started: eu-stack's frame run's mode (backtrace.source). */
export function traceMode(source: boolean): string {
  return source ? 'source' : 'symbols';
}

/**
 * The launcher's files for the zstd it started on a core it read whole (handler/install.ts
 * squeeze(), handler/capture.ts): `started` holds the level it compresses at.
 */
export const LAUNCHER_ZSTD = { started: 'z', err: 'z.err', status: 'z.status' } as const;

/**
 * Where that zstd writes: beside the store's staging directories (store/store.ts STAGING_DIR),
 * on the store's own filesystem, so that the bundle takes the file by a link instead of
 * reading it from tmpfs and writing it again. Named after the launcher's entry (its name
 * before any offer or claim); a file nobody took is staging debris, swept as such.
 */
export function launcherZstdFile(storeRoot: string, entry: string): string {
  return `${launcherZstdDir(storeRoot)}/.z-${entry}`;
}

/** The directory launcherZstdFile names files in: the store's staging directory (STAGING_DIR, not imported: run-dir stays light). */
export function launcherZstdDir(storeRoot: string): string {
  return `${storeRoot}/staging`;
}

/** The launcher's mark that it sent its crash's line on the daemon's freeze FIFO (handler/install.ts freeze()). */
export const LAUNCHER_FROZE_FILE = 'frozen';

/**
 * The node the launcher starts beside its copies (handler/install.ts early(), handler/main.ts
 * --early): `go` is written by the launcher once the crash is in the entry (dd's exit status and
 * a newline), `taken` by that node as soon as it has read it (before anything else): without
 * it, the launcher records the crash with a node of its own.
 */
export const LAUNCHER_EARLY = { go: 'go', taken: 'taken' } as const;
