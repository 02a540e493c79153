// One crash, from the kernel's arguments and pipe to a published, indexed bundle.
// Order matters and is the point of this file:
//   1. say that the crash happened (kernel log, store log) before anything can fail, and
//      ask the daemon to freeze the flight recorders (a line on its FIFO, no answer awaited);
//   2. read /proc/<pid> while it exists (the kernel removes it once the core is read), into
//      memory: the files are written after the release;
//   3. copy the core from stdin to the staging area (the crashed process waits for this);
//   4. close stdin: the kernel releases the process; from here on nothing is urgent;
//   5. recorder snapshot (by the daemon), stack trace and compression side by side, then
//      manifest, atomic publication, index.
// Whatever fails after step 3, the bundle is still published with a warning.
import { closeSync, copyFileSync, fchmodSync, fstatSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, readSync, renameSync, statSync, unlinkSync, writeSync, constants } from 'node:fs';
import { setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';
import { freezeFifoPath, socketPath, type Config } from '../lib/config.js';
import { builtin } from '../lib/builtin.js';
import { messageOf, errnoCode } from '../lib/errors.js';
import { escapeControl } from '../lib/escape.js';
import { createLogger, kmsg, type Logger } from '../lib/log.js';
import { checkSecureDir, createExclusive, readNoFollow, syncTreeAtOnce, writeFileExclusive, writeFully } from '../lib/safe-fs.js';
import { findProgram } from '../lib/programs.js';
import { VERSION } from '../lib/version.js';
import { makeBundleId } from '../store/bundle-id.js';
import type { CodeCacheState, CoreInfo, CrashProcess, KnownHash, Manifest, RecorderSummary } from '../store/manifest.js';
import type { ControlRequest } from '../lib/control-client.js';
import type { OutboxRequest } from '../store/index-db.js';
import { acquireHandlerSlot, forgetHandlerSlot, type HandlerSlot } from '../store/handler-slots.js';
import { Store } from '../store/store.js';
import type { Backtrace } from './backtrace.js';
import { parseCoreArgs, signalName, type CoreArgs } from './core-args.js';
import { NATIVE_COPY_AFTER_BYTES, streamCore } from './core-writer.js';
import { readProcState, readProcStateFrom, type ProcSource } from './proc-reader.js';
import { CODE_CACHE_STATE, LAUNCHER_ZSTD, launcherZstdFile, overflowDir, traceMode } from './run-dir.js';
import { hashWhileWritten } from './launcher-status.js';

// Only what the hold path needs is imported statically: every module loaded before the core
// is read holds the crashed process. The rest (control socket, stack trace, compression,
// signature, manifest) is loaded when first used, after the release where it can be.

/** A request to the daemon; none (no node:net loaded) when its socket does not exist. */
async function daemonRequest(socket: string, req: ControlRequest, timeoutMs: number): Promise<DaemonAnswer> {
  if (!existsSync(socket)) throw new Error(`the flightbox daemon is not running (no one listens on ${socket})`);
  const { controlRequest } = await import('../lib/control-client.js');
  return controlRequest(socket, req, timeoutMs) as Promise<DaemonAnswer>;
}

type DaemonAnswer = Record<string, unknown> & { ok: boolean; error?: string };

/**
 * Ask the daemon to freeze the flight recorders now: one line on its freeze FIFO, written
 * without blocking (a socket request would cost 7-15 ms of loading node:net and connecting
 * while the crashed process waits). Nobody answers; the snapshot request after the release
 * says whether the daemon took it. Returns why the line could not be sent, or null.
 */
function sendEarlyFreeze(fifo: string, id: string): string | null {
  let fd: number;
  try {
    fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return `${fifo} does not exist`;
    return code === 'ENXIO' ? `no one reads ${fifo}` : `cannot open ${fifo}: ${messageOf(err)}`;
  }
  try {
    // Only the daemon's FIFO: never write into a file planted in its place.
    const st = fstatSync(fd);
    if (!st.isFIFO() || st.uid !== (process.getuid?.() ?? st.uid)) return `${fifo} is not the daemon's FIFO`;
    writeSync(fd, `freeze ${id}\n`);
    return null;
  } catch (err) {
    return errnoCode(err) === 'EAGAIN' ? 'the daemon is not reading its freeze requests' : messageOf(err);
  } finally {
    closeSync(fd);
  }
}

/**
 * Where the handlers storing a core register (store/handler-slots.ts): beside the launcher's
 * crash-storm spool on tmpfs, where the launcher registers each handler before it starts
 * node (handler/install.ts); the store itself when that directory is not there or not safe.
 */
export function slotRoot(storeRoot: string): string {
  const dir = overflowDir(storeRoot);
  try {
    checkSecureDir(dir);
    return dir;
  } catch {
    return storeRoot;
  }
}

/** Extra time the handler gives the daemon beyond the snapshot deadline to answer. */
export const SNAPSHOT_ANSWER_SLACK_MS = 2000;
/** The window of core.maxPerExePerHour. */
export const RATE_LIMIT_WINDOW_MS = 60 * 60 * 1000;
/** How long the handler waits for the daemon to take note of a published crash. */
export const CRASH_NOTICE_TIMEOUT_MS = 2000;

export interface CaptureOptions {
  config: Config;
  /** Problems with the config file: recorded in the manifest, never fatal here. */
  configWarnings: string[];
  /** The kernel's pipe (default 0); null: there is none here (the launcher read the whole core, and this is not its process). */
  stdinFd?: number | null;
  procRoot?: string;
  kmsgPath?: string;
  now?: () => number;
  /** The bundle's id; default: a new one. */
  bundleId?: string;
  /** false: publish without fsync; the caller syncs the filesystem (see FinishOptions.sync). */
  sync?: boolean;
  /** The store to publish into (left open); default: opened here, closed at the end. */
  store?: Store;
  /**
   * Lower this process's priority (nice 10) once the crashed process is released: the bundle
   * is background work. Default: when the store is opened here (a process of this one crash).
   * A caller that runs many crashes renices itself or not (the daemon's own thread must not be).
   */
  reniceAfterRelease?: boolean;
  /**
   * A crash the launcher recorded itself during a storm (handler/overflow.ts): its /proc as
   * the launcher copied it, no core, no pipe to read, no freeze to ask for.
   */
  overflow?: OverflowCrash;
  /**
   * A crash the launcher began (handler/install.ts): /proc as it copied it, and the first part
   * of the core in a file; the pipe still holds the rest unless the launcher read it all.
   */
  spooled?: SpooledCrash;
  /**
   * The running daemon records this crash (daemon/crash-taker.ts), which the launcher read whole
   * and offered it: no node was started (no start-up to time, no slot of its own: the offer
   * counted for it), and `takenMs` is when the daemon began, in ms since the epoch.
   */
  byDaemon?: { takenMs: number };
  /** No snapshot is asked of the daemon: this warning says why (a crash recorded long after it happened). */
  noRecorders?: string;
  /**
   * This node was started beside the launcher's copies (handler/early.ts), not exec'd by it: the
   * handler slot is the launcher's (it waits for this node), and node's start is timed to when it
   * was ready and when the launcher's word came (ms since the epoch).
   */
  early?: { launcherPid: number; readyAt: number; goAt: number };
}

export interface SpooledCrash {
  source: ProcSource;
  launcherPid: number;
  /** When the launcher started (ms since the epoch): the capture's start. */
  startedMs: number;
  /** When the launcher had copied /proc, and when it released the process (null: it did not). */
  procMs: number | null;
  releasedMs: number | null;
  /** The core's first part, as the launcher read it. */
  corePrefix: string;
  /**
   * dd's exit status: not 0 and a prefix file, and part of what dd read from the pipe may not
   * have been written: the core is kept up to there, marked truncated. Not 0 and no file: dd
   * read nothing (it could not create it), and the whole core is still in the pipe.
   */
  prefixStatus: number;
  prefixMessage: string | null;
  /** the entry, when the launcher started eu-stack on the core it read whole (handler/install.ts trace()) */
  traceDir: string | null;
  /** the mode the launcher's eu-stack ran in (backtrace.ts traceMode); null: none started */
  traceMode: string | null;
  /** the size the launcher gave the core's pipe (handler/install.ts pipe()); null: it did not */
  pipeBytes: number | null;
  /** the level the launcher's zstd compresses the core it read whole at (handler/install.ts squeeze()); null: none started */
  zstdLevel: number | null;
  /** the launcher's entry's name (before any offer or claim): names its zstd's output (launcherZstdFile) */
  entry: string;
  /** the entry's name, when the launcher sent its line on the daemon's freeze FIFO (handler/install.ts freeze()); null: it did not */
  frozeEntry: string | null;
}

export interface OverflowCrash {
  source: ProcSource;
  /** Handlers the launcher saw storing cores. */
  live: number;
  /** The launcher's pid. */
  launcherPid: number;
  /** Not a storm: the launcher's own handler (node) died before it finished the crash. */
  interrupted?: boolean;
}

export interface CaptureResult {
  id: string;
  bundleDir: string;
  manifest: Manifest;
  indexed: boolean;
}

function readSmall(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/**
 * The kernel gives the crash time in whole seconds; when the handler started within that
 * second, its milliseconds order events of the same second correctly.
 */
function crashTimeMs(kernelSeconds: number, handlerStartMs: number): number {
  return Math.floor(handlerStartMs / 1000) === kernelSeconds ? handlerStartMs : kernelSeconds * 1000;
}

/** An ELF core starts with \x7fELF and has e_type ET_CORE (4) at offset 16. */
function looksLikeElfCore(fd: number): boolean {
  const head = Buffer.alloc(18);
  try {
    if (readSync(fd, head, 0, 18, 0) < 18) return false;
  } catch {
    return false;
  }
  const little = head[5] !== 2;
  return head.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])) && (little ? head.readUInt16LE(16) : head.readUInt16BE(16)) === 4;
}

/**
 * Close the kernel's pipe so the crashed process can finish dying. When that is fd 0,
 * /dev/null takes its place at once: libuv asserts on closing fds 0-2 and would otherwise
 * hand fd 0 to the next file we open.
 */
function releaseInput(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    return; // already closed
  }
  if (fd > 2) return;
  try {
    const nul = openSync('/dev/null', constants.O_RDONLY);
    if (nul !== fd) closeSync(nul);
  } catch {
    // nothing better to do
  }
}

/** The launcher's copy of the core's first part; an empty input when it made none (no dd). */
function openPrefix(path: string): number {
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    return openSync('/dev/null', constants.O_RDONLY);
  }
}

/** What the loader (handler/start.ts) did with the code cache; nothing when run unbundled. */
function codeCacheState(): { codeCache?: CodeCacheState } {
  const v = (globalThis as Record<symbol, unknown>)[CODE_CACHE_STATE];
  return v === 'used' || v === 'made' || v === 'rejected' || v === 'off' ? { codeCache: v } : {};
}

/** How long node waits for the launcher's zstd before compressing the core itself. */
const LAUNCHER_ZSTD_WAIT_MS = 10_000;

/**
 * Whether the launcher read this core whole and started zstd on it as the config asks: its dd
 * exited 0, it released the process, and its level is the config's zstd level.
 */
function squeezedByLauncher(spooled: SpooledCrash | null, cfg: Config): spooled is SpooledCrash {
  return spooled !== null && spooled.releasedMs !== null && spooled.prefixStatus === 0 &&
    cfg.core.compress === 'zstd' && spooled.zstdLevel === cfg.core.level;
}

/**
 * The launcher's copy of a core it read whole, when its zstd output is to be what the bundle
 * stores (squeezedByLauncher, the core within the size limit): an fd of it and its size.
 * null: the core is copied into the bundle as before (and compressed there, or not).
 */
function wholeInSpool(spooled: SpooledCrash | null, cfg: Config, limit: number | null): { fd: number; size: number } | null {
  if (!squeezedByLauncher(spooled, cfg)) return null;
  let fd: number;
  try {
    fd = openSync(spooled.corePrefix, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return null;
  }
  const st = fstatSync(fd);
  if (st.isFile() && st.size > 0 && (limit === null || st.size <= limit)) return { fd, size: st.size };
  closeSync(fd);
  return null;
}

/**
 * What the zstd the launcher started on the core it read whole (handler/install.ts squeeze())
 * wrote, when that is this crash's stored core compressed as the config asks: the launcher
 * released the process (the core ended within its copy), its dd and its zstd exited 0, the
 * level is the config's, and the core was stored whole, as long as the launcher's copy.
 * Then the file is made the bundle's `name` (a link: it is on the store's filesystem, beside
 * staging), synced, with its sha256 (read back in pieces: no copy of it in memory) and size.
 * Otherwise null, and node compresses the core itself.
 */
async function takeLauncherZstd(spooled: SpooledCrash | null, core: CoreInfo, cfg: Config, staging: string, name: string): Promise<KnownHash | null> {
  if (!squeezedByLauncher(spooled, cfg) || core.truncated) return null;
  const file = launcherZstdFile(cfg.store.root, spooled.entry);
  let fd: number | null = null;
  try {
    if (statSync(spooled.corePrefix).size !== core.size) return null;
    // hashed while zstd writes it (16 MiB of random data: ~19 ms of reading and hashing that
    // no longer come after zstd's end)
    const w = await hashWhileWritten(file, join(dirname(spooled.corePrefix), LAUNCHER_ZSTD.status), Date.now() + LAUNCHER_ZSTD_WAIT_MS);
    if (w === null) return null;
    fd = w.fd;
    const st = fstatSync(fd);
    // zstd's bound on what it writes for this much input, and a little
    if (!st.isFile() || st.nlink !== 1 || st.size > core.size + (core.size >> 7) + 65536) return null;
    fchmodSync(fd, 0o600);
    fsyncSync(fd);
    linkSync(file, join(staging, name));
    return { sha256: w.sha256, bytes: w.size };
  } catch {
    return null; // gone, or not as zstd leaves it: node compresses
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

export async function captureCrash(argv: readonly string[], opts: CaptureOptions): Promise<CaptureResult> {
  const now = opts.now ?? Date.now;
  const spooled = opts.spooled ?? null;
  // The capture began in the launcher when it did.
  const t0 = spooled?.startedMs ?? now();
  const cfg = opts.config;
  const stdinFd = opts.stdinFd === undefined ? 0 : opts.stdinFd;
  const byDaemon = opts.byDaemon ?? null;
  const args: CoreArgs = parseCoreArgs(argv);
  const warnings: string[] = [...opts.configWarnings];
  // From node's start (its time origin) to here: node itself, the handler's code, the config.
  // (The daemon: from the launcher's start to the daemon's taking the crash.)
  const early = opts.early ?? null;
  const timings: Record<string, number> = byDaemon ? { takenMs: byDaemon.takenMs - t0 }
    : early ? { earlyReadyMs: early.readyAt - t0, earlyGoMs: early.goAt - t0 }
    : { startupMs: Math.round(process.uptime() * 1000) };

  const overflow = opts.overflow ?? null;
  // 1. Announce. comm comes from /proc and is hostile: escaped by kmsg() and the logger.
  // (The launcher announced an overflow crash itself, when it happened.)
  const copied = overflow?.source ?? spooled?.source ?? null;
  const commEarly = copied ? copied.read('comm', 4096)?.toString('utf8').trim() ?? null : readSmall(`${opts.procRoot ?? '/proc'}/${args.pid}/comm`);
  const sig = signalName(args.signal);
  if (!overflow) kmsg(`process ${args.pid} (${commEarly ?? '?'}) of user ${args.uid} dumped core, signal ${args.signal}/${sig}`, 5, opts.kmsgPath);

  const store = opts.store ?? new Store(cfg.store.root, { create: true, busyTimeoutMs: cfg.store.busyTimeoutMs });
  const log: Logger = createLogger({ file: store.logFile, component: 'handler' });
  const crashTime = new Date(args.time * 1000);
  const id = opts.bundleId ?? makeBundleId(crashTime, args.pid);
  log.info({ id, pid: args.pid, comm: commEarly ?? '?', uid: args.uid, signal: sig }, 'Process dumped core, capturing');
  const staging = store.createStaging(id);

  // Ask the daemon to freeze the flight recorders before our own I/O (reading /proc, writing
  // the core) pushes the moments before the crash out of their ring buffers: one line on its
  // FIFO, no waiting. The daemon freezes while we read. No daemon: noted, not fatal.
  // A storm's overflow crash was spooled by the launcher some time ago: the recorders hold
  // other moments by now, and the storm's first crashes have their snapshot.
  const socket = socketPath(cfg);
  // (The launcher sent the line itself when it could, as soon as it had read the core.)
  const frozeEntry = spooled?.frozeEntry ?? null;
  const noRecorders = opts.noRecorders ?? null;
  const earlyFreezeError = overflow ? 'recorded on the crash-storm path' : noRecorders ?? (frozeEntry !== null ? null : sendEarlyFreeze(freezeFifoPath(cfg), id));
  const daemonRunning = !overflow && noRecorders === null && (earlyFreezeError === null || existsSync(socket));
  if (noRecorders !== null) warnings.push(noRecorders);
  else if (overflow?.interrupted) warnings.push('no flight-recorder snapshot: recorded after its handler stopped');
  else if (overflow) warnings.push('no flight-recorder snapshot: this crash came during a crash storm and was recorded by the launcher (see the snapshots of the crashes stored with their core)');
  else if (!daemonRunning) warnings.push(`no flight-recorder snapshot: the flightbox daemon is not running (no one listens on ${socket})`);
  timings.freezeSentMs = now() - t0;

  // 2. /proc, before the core is read.
  const proc = copied
    ? readProcStateFrom(args.pid, copied, { environ: cfg.capture.environ, checkPidfd: args.pidfd !== null, pidfd: args.pidfd })
    : readProcState(args.pid, { procRoot: opts.procRoot, environ: cfg.capture.environ, pidfd: args.pidfd });
  warnings.push(...proc.warnings);
  timings.procMs = now() - t0;

  // 3. The core. RLIMIT_CORE is what a file core would honour; maxSize caps it regardless.
  let limit: number | null = cfg.core.maxSizeBytes;
  let limitReason: string | null = 'maxSize';
  if (cfg.core.honourRlimit && args.rlimitCore !== null && args.rlimitCore < (limit ?? Infinity)) {
    limit = args.rlimitCore;
    limitReason = 'rlimit';
  }
  const core: CoreInfo = {
    stored: false, file: null, compression: null, size: 0, storedSize: 0, truncated: false,
    reason: null, limitBytes: limit, sparseBytes: 0, elf: false,
  };
  let rawFd: number | null = null;
  // Where the raw core is read from: the bundle's own copy, or the launcher's (wholeInSpool).
  let rawPath = join(staging, 'core');
  let rawInSpool = false;
  let nativeBytes = 0;
  // A storm: beyond core.maxConcurrent handlers storing a core, record this crash without
  // its core. Closing the pipe at once releases the process without reading its memory.
  const slots = slotRoot(store.root);
  // (A crash the launcher read whole holds no slot: its core is read, its launcher counted.)
  const slotPid = early ? { pid: early.launcherPid } : {};
  const slot: HandlerSlot | null = limit === 0 || overflow || stdinFd === null ? null : acquireHandlerSlot(slots, cfg.core.maxConcurrent, slotPid);
  if (limit === 0 && !overflow && stdinFd !== null && cfg.core.maxConcurrent !== null) forgetHandlerSlot(slots, slotPid);
  if (slot?.acquired && cfg.core.maxConcurrent !== null) timings.slotFromMs = now() - t0;
  if (overflow?.interrupted) {
    core.reason = 'interrupted';
  } else if (overflow) {
    core.reason = 'concurrency';
    warnings.push(`${overflow.live} other handlers were storing cores (the launcher's core.maxConcurrent is ${cfg.core.maxConcurrent === null ? 'unset' : cfg.core.maxConcurrent}): core not kept, metadata only, recorded by the launcher`);
  } else if (slot && !slot.acquired) {
    core.reason = 'concurrency';
    warnings.push(`${slot.live - 1} other handlers were storing cores (core.maxConcurrent is ${cfg.core.maxConcurrent}): core not kept, metadata only`);
  } else if (limit === 0) {
    core.reason = limitReason;
    core.truncated = true;
    warnings.push(limitReason === 'rlimit'
      ? 'RLIMIT_CORE is 0 (ulimit -c 0): the core was not stored, as a file core would not have been'
      : 'core.maxSize is 0: the core was not stored');
  } else {
    const progress = { size: 0 };
    const whole = wholeInSpool(spooled, cfg, limit);
    if (whole !== null) {
      // The launcher's copy is read where it is (it stays until the bundle is made), and its
      // zstd output is what is stored: no second copy of the raw core on the store's disk.
      rawFd = whole.fd;
      rawPath = spooled!.corePrefix;
      rawInSpool = true;
      core.size = whole.size;
    } else try {
      rawFd = createExclusive(staging, 'core', 0o600, { readable: true });
      // What the launcher read of the core comes first, then what is left in the pipe.
      const prefixBroken = spooled !== null && spooled.prefixStatus !== 0 && existsSync(spooled.corePrefix);
      const pipe = stdinFd === null ? [] : [stdinFd];
      const inputs = spooled ? [openPrefix(spooled.corePrefix), ...(spooled.releasedMs === null && !prefixBroken ? pipe : [])] : pipe;
      let r: ReturnType<typeof streamCore>;
      try {
        r = streamCore(inputs, rawFd, { limit, progress, nativeAfter: NATIVE_COPY_AFTER_BYTES, dd: findProgram('dd') });
      } finally {
        if (spooled) closeSync(inputs[0]!);
      }
      nativeBytes = r.nativeBytes;
      core.size = r.size;
      core.sparseBytes = r.sparseBytes;
      core.truncated = r.truncated || prefixBroken;
      if (prefixBroken) {
        core.reason = 'write-error: launcher';
        warnings.push(`the launcher could not store the core's first part (dd exited ${spooled!.prefixStatus}${spooled!.prefixMessage ? `: ${spooled!.prefixMessage}` : ''}): kept the ${r.size} bytes it wrote, the rest of the core is lost`);
      } else if (r.truncated) {
        core.reason = limitReason;
        warnings.push(`core truncated at ${limit} bytes (${limitReason === 'rlimit' ? 'RLIMIT_CORE' : 'core.maxSize'})`);
      }
      if (r.size === 0) {
        core.reason = 'empty';
        warnings.push('the kernel sent an empty core');
      }
    } catch (err) {
      core.size = progress.size;
      core.truncated = true;
      core.reason = `write-error: ${errnoCode(err) ?? messageOf(err)}`;
      warnings.push(`Failed to store the whole core (${messageOf(err)}); kept the first ${progress.size} bytes`);
    }
  }
  // 4. Release the crashed process.
  if (!overflow) {
    if (stdinFd !== null) releaseInput(stdinFd);
    timings.holdMs = (spooled?.releasedMs ?? now()) - t0;
    if (spooled?.procMs) timings.procMs = spooled.procMs - t0;
    log.info({ id, bytes: core.size, byDd: nativeBytes, holdMs: timings.holdMs, byLauncher: spooled?.releasedMs !== undefined && spooled.releasedMs !== null, pipeBytes: spooled?.pipeBytes ?? null }, 'Core read, process released');
  }
  if (opts.reniceAfterRelease ?? !opts.store) {
    try {
      setPriority(10);
    } catch {
      // not fatal
    }
  }
  // The manifest's sha256 of files written from memory here, so that publishing does not read
  // them back (a storm's drainer writes some 20 per crash).
  const knownHashes = new Map<string, KnownHash>();
  // What /proc said is in memory since step 2; written now, off the hold path.
  if (proc.files.length > 0) {
    try {
      mkdirSync(join(staging, 'proc'), { mode: 0o700 });
      for (const f of proc.files) {
        try {
          writeFileExclusive(join(staging, 'proc'), f.name, f.data, f.mode, { sync: false });
          knownHashes.set(`proc/${f.name}`, { sha256: builtin('node:crypto').createHash('sha256').update(f.data).digest('hex'), bytes: f.data.length });
        } catch (err) {
          warnings.push(`Failed to store proc/${f.name}, ignoring: ${messageOf(err)}`);
        }
      }
    } catch (err) {
      warnings.push(`Failed to store the process's /proc files, ignoring: ${messageOf(err)}`);
    }
  }
  // The stack trace and compression modules (and node:child_process with them) only when
  // there is a core for them: a crash storm's metadata-only handlers do without, ~6 ms each.
  const [{ MANIFEST_VERSION, hostInfo, sha256Growing }, { crashSignature, crashingThread }] = await Promise.all([
    import('../store/manifest.js'), import('./signature.js'),
  ]);

  // 5. Everything else, each step guarded: a failure is a warning, never a lost crash.
  // The daemon snapshots the recorders (and thaws them) while the stack trace and the
  // compression run here; the bundle is published once all three are done.
  const recorderWarnings: string[] = [];
  let daemonAnswered = false;
  const recorderTask = !daemonRunning ? Promise.resolve(undefined) : (async (): Promise<RecorderSummary[] | undefined> => {
    const ts = now();
    try {
      const r = await daemonRequest(
        socket,
        { op: 'snapshot-into', dir: join(staging, 'recorder'), reason: `crash ${id}`, thaw: true, id, ...(frozeEntry !== null ? { entry: frozeEntry } : {}) },
        cfg.daemon.snapshotDeadlineMs + SNAPSHOT_ANSWER_SLACK_MS,
      );
      daemonAnswered = true;
      if (!r.ok) {
        recorderWarnings.push(`the daemon could not snapshot the recorders: ${r.error}`);
        return undefined;
      }
      if (typeof r.frozenAt === 'number') timings.freezeMs = r.frozenAt - t0;
      // This crash's own freeze comes after its capture began (the launcher's line, or this
      // request): an earlier one means the recorders were already frozen, for an earlier crash
      // or a snapshot, and this crash joined that freeze.
      if (typeof r.frozenAt === 'number' && r.frozenAt < t0) {
        recorderWarnings.push(`the recorders were already frozen ${Math.round(t0 - r.frozenAt)} ms before this crash began (for an earlier crash or snapshot): their history ends there and misses this crash's last moments`);
      } else if (r.early === false) {
        recorderWarnings.push(`the recorders were frozen only after the core was read (${earlyFreezeError ?? 'the daemon had not read the freeze request'}): their history may miss the last moments before the crash`);
      }
      const list = (r.recorders as RecorderSummary[] | undefined) ?? [];
      for (const x of list) recorderWarnings.push(...x.warnings);
      return list;
    } catch (err) {
      recorderWarnings.push(`no flight-recorder snapshot: ${messageOf(err)}`);
      return undefined;
    } finally {
      timings.recorderMs = now() - ts;
    }
  })();
  if (rawFd !== null) {
    core.elf = core.size > 0 && looksLikeElfCore(rawFd);
    if (core.size > 0 && !core.elf) warnings.push('the core is not an ELF core file; no stack trace');
  }
  // The store's filesystem filled up while the core was written: keep the partial core for
  // the stack trace, then give its space back so the metadata can still be published.
  const diskFull = core.reason === 'write-error: ENOSPC' || core.reason === 'write-error: EDQUOT';

  // Rate limit: beyond core.maxPerExePerHour full cores of this executable in the last hour,
  // a crash loop keeps its metadata and stack trace but not its core (counted all the same).
  let rateLimited = false;
  const limitPerHour = cfg.core.maxPerExePerHour;
  if (rawFd !== null && !diskFull && core.size > 0 && limitPerHour !== null && proc.meta.exe) {
    try {
      const recent = store.index().coresSince(proc.meta.exe, t0 - RATE_LIMIT_WINDOW_MS);
      if (recent >= limitPerHour) {
        rateLimited = true;
        warnings.push(`${recent} cores of this executable were kept in the last hour (core.maxPerExePerHour is ${limitPerHour}): core not kept, metadata and stack trace only`);
      }
    } catch (err) {
      warnings.push(`Could not check the per-executable rate limit, keeping the core: ${messageOf(err)}`);
    }
  }

  // The stack trace reads the raw core while it is being compressed (another program, on
  // another CPU); the raw core is removed only once both are done.
  const backtraceWarnings: string[] = [];
  const backtraceTask = !core.elf ? Promise.resolve(null) : (async (): Promise<Backtrace | null> => {
    const tb = now();
    // The eu-stack the launcher started on the core it read whole, unless the config now wants another tool.
    const launcherDir = spooled?.traceDir && (cfg.backtrace.tool === 'auto' || cfg.backtrace.tool === 'eu-stack') &&
      spooled.traceMode === traceMode(cfg.backtrace.source) ? spooled.traceDir : null;
    if (launcherDir) timings.backtraceByLauncher = 1;
    try {
      const { takeBacktrace } = await import('./backtrace.js');
      // Not the process's own (the daemon, a drainer): no fd of its executable, and its path is
      // not opened either (in a container it names another file here): the core's notes only.
      const bt = await takeBacktrace(rawPath, stdinFd === null ? null : proc.meta.exe, {
        tool: cfg.backtrace.tool, timeoutMs: cfg.backtrace.timeoutMs, exeFd: proc.exeFd, maxThreads: proc.meta.threads, launcherDir, source: cfg.backtrace.source,
      });
      backtraceWarnings.push(...bt.warnings);
      if (!bt.tool && cfg.backtrace.tool !== 'none') backtraceWarnings.push('no stack trace could be taken');
      return bt;
    } catch (err) {
      backtraceWarnings.push(`Failed to take a stack trace, ignoring: ${messageOf(err)}`);
      return null;
    } finally {
      timings.backtraceMs = now() - tb;
    }
  })();

  let compressedFromRaw = false;
  if (rawFd !== null && !rateLimited && !diskFull && core.size > 0) {
    const tc = now();
    const { CORE_FILE_NAMES, compressFd } = await import('../store/compress.js');
    if (cfg.core.compress === 'none') {
      fsyncSync(rawFd);
      Object.assign(core, { stored: true, file: CORE_FILE_NAMES.none, compression: 'none', storedSize: core.size - core.sparseBytes });
    } else {
      let outFd: number | null = null;
      let name: string = CORE_FILE_NAMES[cfg.core.compress];
      try {
        const squeezed = await takeLauncherZstd(spooled, core, cfg, staging, name);
        if (squeezed) {
          knownHashes.set(name, squeezed);
          core.storedSize = squeezed.bytes;
          core.compression = 'zstd';
          timings.compressByLauncher = 1;
        } else {
          const inFd = openSync(rawPath, constants.O_RDONLY | constants.O_NOFOLLOW);
          try {
            outFd = createExclusive(staging, name, 0o600);
            let restarted = false;
            const compressing = compressFd(inFd, outFd, cfg.core.compress, cfg.core.level, {
              holeBytes: core.sparseBytes,
              onRestart: (err) => {
                restarted = true;
                warnings.push(`compressing the core around its holes failed (${messageOf(err)}): compressed it whole`);
              },
            });
            // The manifest's sha256 of the compressed core, worked out while zstd writes it.
            const hashing = cfg.core.compress === 'zstd' ? sha256Growing(join(staging, name), compressing).catch(() => null) : null;
            const used = await compressing;
            const hashed = await hashing;
            if (hashed && used === cfg.core.compress && !restarted) knownHashes.set(name, hashed);
            if (used !== cfg.core.compress) {
              // zstd missing: the gzip output went into the .zst-named file; give it its right name.
              warnings.push(`${cfg.core.compress} is not available, compressed with ${used}`);
              renameSync(join(staging, name), join(staging, CORE_FILE_NAMES[used]));
              name = CORE_FILE_NAMES[used];
            }
            fsyncSync(outFd);
            core.storedSize = fstatSync(outFd).size;
            core.compression = used;
          } finally {
            closeSync(inFd);
          }
        }
        compressedFromRaw = true;
        Object.assign(core, { stored: true, file: name });
      } catch (err) {
        warnings.push(`Failed to compress the core, keeping it uncompressed: ${messageOf(err)}`);
        try { unlinkSync(join(staging, name)); } catch { /* never created */ }
        Object.assign(core, { stored: true, file: CORE_FILE_NAMES.none, compression: 'none', storedSize: core.size - core.sparseBytes });
        if (rawInSpool) {
          // The raw core is still the launcher's: the bundle needs its own copy of it.
          try {
            copyFileSync(rawPath, join(staging, CORE_FILE_NAMES.none), constants.COPYFILE_EXCL);
            rawInSpool = false;
          } catch (copyErr) {
            warnings.push(`Failed to store the uncompressed core either: ${messageOf(copyErr)}`);
            Object.assign(core, { stored: false, file: null, compression: null, storedSize: 0 });
          }
        }
      } finally {
        if (outFd !== null) closeSync(outFd);
      }
    }
    timings.compressMs = now() - tc;
  }
  // The launcher's zstd output, taken into the bundle (a link) or not: its name beside staging goes.
  if (spooled !== null && spooled.zstdLevel !== null) {
    try {
      unlinkSync(launcherZstdFile(cfg.store.root, spooled.entry));
    } catch {
      // never written, or already gone
    }
  }

  // The index is opened (SQLite's addon loaded, the schema checked: ~10 ms) while the stack
  // trace and the recorders' snapshot are still being taken; an index that cannot be opened
  // now is dealt with when the bundle is indexed.
  try {
    store.index();
  } catch {
    // finishBundle spools the event for later
  }
  const [backtrace, recorders] = await Promise.all([backtraceTask, recorderTask]);
  warnings.push(...recorderWarnings, ...backtraceWarnings);
  if (proc.exeFd !== null) closeSync(proc.exeFd);
  const saveBacktrace = (): void => {
    if (!backtrace?.tool) return;
    try {
      writeFileExclusive(staging, 'backtrace.txt', backtrace.text, 0o640);
    } catch (err) {
      warnings.push(`Failed to store the stack trace, ignoring: ${messageOf(err)}`);
    }
  };
  // With the disk full, the stack trace is written once the partial core's space is free.
  if (!diskFull) saveBacktrace();

  if (rawFd !== null) {
    closeSync(rawFd);
    // The bundle's own raw copy goes unless it is the core stored. (A raw core read where the
    // launcher put it has none: the launcher's entry goes once the bundle is made.)
    if (!rawInSpool && (rateLimited || diskFull || core.size === 0 || compressedFromRaw)) unlinkSync(join(staging, 'core'));
    if (rateLimited) {
      Object.assign(core, { stored: false, file: null, compression: null, storedSize: 0, reason: 'rate-limit' });
    } else if (diskFull) {
      Object.assign(core, { stored: false, file: null, compression: null, storedSize: 0 });
      warnings.push('the store is full: the partial core was deleted so that the metadata and stack trace could be kept');
      saveBacktrace();
    }
  }
  if (slot?.acquired && cfg.core.maxConcurrent !== null) timings.slotToMs = now() - t0;
  slot?.release();

  const thread = backtrace ? crashingThread(backtrace.threads, args.tidInNamespace ?? args.tid) : undefined;
  const signature = crashSignature(proc.meta.exe, proc.meta.comm, sig, thread);

  const processInfo: CrashProcess = {
    pid: args.pid,
    pidInNamespace: proc.meta.pidInNamespace,
    tid: args.tid,
    tidInNamespace: args.tidInNamespace,
    ppid: proc.meta.ppid,
    uid: args.uid,
    gid: args.gid,
    signal: args.signal,
    signalName: sig,
    comm: proc.meta.comm,
    exe: proc.meta.exe,
    cmdline: proc.meta.cmdline,
    cwd: proc.meta.cwd,
    root: proc.meta.root,
    cgroup: proc.meta.cgroup,
    unit: proc.meta.unit,
    namespaces: proc.meta.namespaces,
    inContainer: proc.meta.inContainer,
    hostnameInNamespace: args.hostname,
    dumpable: args.dumpable,
    rlimitCore: args.rlimitCore,
    threads: proc.meta.threads,
    fdCount: proc.meta.fdCount,
    startTimeTicks: proc.meta.startTimeTicks,
    procVerified: proc.verified,
  };
  timings.totalMs = now() - t0;
  const manifest: Manifest = {
    version: MANIFEST_VERSION,
    id,
    kind: 'crash',
    time: crashTime.toISOString(),
    timeMs: crashTimeMs(args.time, t0),
    capturedAt: new Date(t0).toISOString(),
    host: hostInfo(),
    process: processInfo,
    core,
    backtrace: backtrace?.tool
      ? {
          tool: backtrace.tool,
          file: 'backtrace.txt',
          crashingTid: thread?.tid ?? null,
          frames: (thread?.frames ?? []).slice(0, 32).map((f) => ({ fn: f.fn, module: f.module, addr: f.addr, source: f.source })),
          threads: backtrace.threads.length,
        }
      : null,
    signature,
    modules: (backtrace?.modules ?? []).map((m) => ({ name: m.name, buildId: m.buildId, file: m.file })),
    rule: null,
    recorders,
    warnings,
    timings,
    files: [],
    handler: overflow
      ? { version: VERSION, pid: overflow.launcherPid, overflow: true }
      : {
          version: VERSION, pid: process.pid, ...(byDaemon ? { daemon: true as const } : codeCacheState()),
          ...(spooled ? { launcher: spooled.releasedMs !== null ? 'released' as const : 'prefix' as const } : {}), ...(spooled?.pipeBytes ? { pipeBytes: spooled.pipeBytes } : {}),
        },
  };
  // Crash mail is queued in the same transaction as the event; the daemon delivers it.
  let mail: OutboxRequest[] = [];
  if (cfg.mail.transport !== null && cfg.mail.to.length > 0) {
    try {
      mail = (await import('../notify/outbox.js')).crashMailRequests(cfg, manifest);
    } catch (err) {
      warnings.push(`Failed to prepare the crash mail, ignoring: ${messageOf(err)}`);
    }
  }
  // The crashing user may read their own crash, unless the kernel says its memory is not
  // theirs to see: a setuid/setgid or capability-raised process dumps with %d = 2, not 1.
  // And only when /proc was verified to be that process, with all four uids its own.
  const ownUids = proc.verified && proc.meta.uids !== null && proc.meta.uids.length > 0 && proc.meta.uids.every((u) => u === args.uid);
  const grantUid = cfg.capture.userAccess && args.dumpable === 1 && args.uid > 0 && ownUids ? args.uid : null;
  // What was written without fsync, synced at once (not one file after the other).
  let treeSynced = false;
  if (opts.sync !== false) {
    try {
      await syncTreeAtOnce(staging);
      treeSynced = true;
    } catch {
      // finishBundle syncs it one by one, and reports what fails
    }
  }
  const ix = store.finishBundle(staging, manifest, { mail, grantUid, knownHashes, sync: opts.sync, treeSynced });
  const bundleDir = ix.bundleDir;
  if (!ix.indexed) log.warn({ id, error: ix.error ?? '' }, 'Failed to index the bundle, spooled for later: %s', ix.error ?? '');
  // Tell the daemon, whose crash rules may add actions (mail, exec, a snapshot). Best effort.
  if (daemonAnswered || (overflow && existsSync(socket))) {
    try {
      await daemonRequest(socket, { op: 'crash', id }, CRASH_NOTICE_TIMEOUT_MS);
    } catch (err) {
      log.warn({ id }, 'Could not tell the daemon about the crash, its crash rules will not run: %s', messageOf(err));
    }
  }
  log.info(
    { id, signature: signature.text, core: core.file ?? 'none', warnings: warnings.length, totalMs: now() - t0 },
    'Crash of %s saved', escapeControl(proc.meta.exe ?? proc.meta.comm ?? '?'),
  );
  if (!opts.store) store.close();
  return { id, bundleDir, manifest, indexed: ix.indexed };
}
