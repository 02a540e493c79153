// The crash-storm path. When core.maxConcurrent handlers are already storing cores, a crash
// is recorded without its core anyway; starting node for that costs ~40 ms of CPU and ~60 MiB
// per crash, and a storm of 200 crashes spent 18 s of CPU doing it. So the launcher (the shell
// script install writes, handler/install.ts) records such a crash itself: it copies the
// crashed process's /proc files with one `cp` and its links with one `find` into
// /run/flightbox/incoming-<store>/<time>.<pid>.<launcher pid>/ (tmpfs: handler/run-dir.ts), closes the kernel's pipe and, unless a drainer
// already runs, becomes one (exec node ... --drain). Nothing read from the crashed process is
// ever interpreted by the shell: cp and find copy bytes into files named by the launcher.
//
// The drainer (this file) turns each entry into a bundle through the same captureCrash as
// every other crash, reading /proc from the copy (spooledProcSource), with the same checks
// (pidfd, start times: the launcher copies stat first and reads it again last).
//
// An entry:
//   writer      "<launcher pid> <its start time>": whether its writer still lives
//   args        the kernel's arguments (%P %i ...), each ended by NUL
//   live        how many handlers the launcher saw storing cores
//   pidfd       the pid the kernel's pidfd (%F) named before the copy; pidfd.after: after it
//   stat ... environ    copies of /proc/<pid>/<name>, at most 4 MiB each (RLIMIT_FSIZE)
//   links       find's "<path>\0<link target>\0" for exe, cwd, root, ns/*, fd/* of the
//               crashed process and ns/* of the launcher
//   stat.after  stat, read last
//   complete    written last: the entry is whole
// Claims are renames ("<name>@<drainer pid>-<start>"): two drainers never take the same entry,
// and the entry of a drainer that died is taken again. The lock files (.drain, .drain2) only
// keep crash storms from starting more than two drainers; the last thing a drainer does is
// look again after removing its lock, so an entry written while the locks were held is never
// left behind.
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readdirSync, renameSync, rmSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import type { Config } from '../lib/config.js';
import { builtin } from '../lib/builtin.js';
import { errnoCode, messageOf } from '../lib/errors.js';
import { createLogger, kmsg } from '../lib/log.js';
import { findProgram } from '../lib/programs.js';
import { checkSecureDir, fsyncDir, readNoFollow, syncTree, readSmallNoFollow, touchNoFollow, writeFileExclusive } from '../lib/safe-fs.js';
import { isBundleId, makeBundleId } from '../store/bundle-id.js';
import { SPOOL_DIR, Store } from '../store/store.js';
import { DRAIN_LOCKS, FAILED_PREFIX, LAUNCHER_EXE_FD, LAUNCHER_FROZE_FILE, LAUNCHER_PIPE_FILE, LAUNCHER_TRACE, LAUNCHER_ZSTD, OVERFLOW_BASE, OVERFLOW_FILE_MAX_BYTES, SPOOL_CLAIMED_RE, SPOOL_ENTRY_RE, SPOOL_OFFER_RE, overflowDir, spoolCrashes } from './run-dir.js';

export { DRAIN_LOCKS, FAILED_PREFIX };
import { captureCrash, type SpooledCrash } from './capture.js';
import { MAX_PROC_FILE_BYTES, PROC_FILES, pidFromFdinfo, type ProcSource } from './proc-reader.js';
import { ddMessage } from './core-writer.js';
import { processStartTime } from '../store/handler-slots.js';
import type { Launcher } from './early.js';

const MAX_LINKS_BYTES = OVERFLOW_FILE_MAX_BYTES;
const MAX_SMALL_BYTES = 64 * 1024;

function alive(pid: number, start: number): boolean {
  return processStartTime(pid) === start;
}

function readSmall(dir: string, name: string): string | null {
  try {
    return readSmallNoFollow(join(dir, name), MAX_SMALL_BYTES);
  } catch {
    return null;
  }
}

/** "<pid> <start>" → both, or null. */
function parseOwner(text: string | null): { pid: number; start: number } | null {
  const m = /^(\d{1,10}) (\d{1,20})\n?$/.exec(text ?? '');
  return m ? { pid: Number(m[1]), start: Number(m[2]) } : null;
}

/**
 * find's output, "<path>\0<target>\0" pairs, as the links of the crashed process (keyed
 * 'exe', 'ns/pid', 'fd/3', ...) and the launcher's own namespaces.
 */
export function parseLinks(data: Buffer, pid: number, launcherPid: number): { links: Map<string, string>; own: Map<string, string>; fdListed: boolean } {
  const parts = data.toString('utf8').split('\0');
  const links = new Map<string, string>();
  const own = new Map<string, string>();
  let fdListed = false;
  const theirs = `/proc/${pid}/`;
  const ours = `/proc/${launcherPid}/ns/`;
  for (let i = 0; i + 1 < parts.length; i += 2) {
    const path = parts[i]!;
    const target = parts[i + 1]!;
    if (path === `/proc/${pid}/fd`) fdListed = true;
    if (path.startsWith(ours) && launcherPid !== pid) {
      own.set(path.slice(ours.length), target);
    } else if (path.startsWith(theirs) && target !== '') {
      const name = path.slice(theirs.length);
      if (/^(exe|cwd|root|ns\/[a-z_]+|fd\/\d+)$/.test(name)) links.set(name, target);
    }
  }
  return { links, own, fdListed };
}

/** The /proc files the launcher copies (fdinfo/<fd> besides). */
const COPIED: ReadonlySet<string> = new Set([...PROC_FILES, 'environ']);

/** Copies the launcher's RLIMIT_FSIZE stopped (handler/install.ts): each one, a warning. */
function cutCopies(dir: string): string[] {
  const out: string[] = [];
  for (const f of [...COPIED, 'links']) {
    try {
      if (lstatSync(join(dir, f)).size >= OVERFLOW_FILE_MAX_BYTES) out.push(`proc/${f} was cut at ${OVERFLOW_FILE_MAX_BYTES} bytes (the launcher's limit for each /proc copy)`);
    } catch {
      // not copied
    }
  }
  return out;
}

/** What every entry holds about its crash: the kernel's arguments and the launcher. */
function readEntry(dir: string): { args: string[]; writer: { pid: number; start: number } | null } {
  const args = readNoFollow(join(dir, 'args'), MAX_SMALL_BYTES).toString('utf8').split('\0');
  args.pop(); // each argument ends with NUL
  return { args, writer: parseOwner(readSmall(dir, 'writer')) };
}

/** The /proc of a crashed process as the launcher copied it into an entry. */
export function spooledProcSource(dir: string, pid: number, launcherPid: number, exeFd: number | null = null): ProcSource {
  let links: ReturnType<typeof parseLinks> | null = null;
  const linksOf = (): ReturnType<typeof parseLinks> => {
    if (!links) {
      let data: Buffer = Buffer.alloc(0);
      try {
        data = readNoFollow(join(dir, 'links'), MAX_LINKS_BYTES);
      } catch {
        // no links copied: every link reads as unknown
      }
      links = parseLinks(data, pid, launcherPid);
    }
    return links;
  };
  const pidfd = (name: string): number | null => pidFromFdinfo(`Pid:\t${(readSmall(dir, name) ?? '').trim()}`);
  return {
    label: `/proc/${pid}`,
    read: (name, max = MAX_PROC_FILE_BYTES) => {
      // Only the copies themselves: the entry also holds the launcher's own files.
      if (!COPIED.has(name) && !/^fdinfo\/\d+$/.test(name)) return null;
      try {
        const b = readNoFollow(join(dir, name), max + 1);
        return b.length > max ? b.subarray(0, max) : b;
      } catch {
        return null;
      }
    },
    link: (name) => linksOf().links.get(name) ?? null,
    fds: () => {
      const l = linksOf();
      if (!l.fdListed) throw new Error('the launcher could not list them');
      return [...l.links.keys()].filter((k) => k.startsWith('fd/')).map((k) => k.slice(3));
    },
    statAfter: () => readSmall(dir, 'stat.after'),
    pidfdPid: (when) => pidfd(when === 'before' ? 'pidfd' : 'pidfd.after'),
    handlerStartTicks: () => parseOwner(readSmall(dir, 'writer'))?.start ?? null,
    ownNamespace: (ns) => linksOf().own.get(ns) ?? null,
    openExe: () => exeFd,
  };
}

/**
 * The executable the launcher opened on its LAUNCHER_EXE_FD, when its entry says so: a regular
 * file, or nothing. Without `launcher`, this process's own fd (the node the launcher exec'd);
 * with it, that fd opened through /proc (the node started beside the launcher, handler/early.ts:
 * the launcher waits for it, so the fd is still the one it opened; its start time is checked
 * again once the file is open).
 */
export function launcherExe(dir: string, launcher: Launcher | null = null, procRoot = '/proc'): number | null {
  if ((readSmall(dir, 'exefd') ?? '').trim() !== String(LAUNCHER_EXE_FD)) return null;
  let fd: number | null = null;
  try {
    if (launcher === null) return fstatSync(LAUNCHER_EXE_FD).isFile() ? LAUNCHER_EXE_FD : null;
    fd = openSync(`${procRoot}/${launcher.pid}/fd/${LAUNCHER_EXE_FD}`, constants.O_RDONLY);
    if (!fstatSync(fd).isFile() || processStartTime(launcher.pid, procRoot) !== launcher.start) return null;
    const exe = fd;
    fd = null;
    return exe;
  } catch {
    return null;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

/** A bundle id for the crash of these kernel arguments (%P first, %t seventh). */
function newBundleId(args: readonly string[]): string {
  const pid = Number(args[0]);
  const time = Number(args[6]);
  return makeBundleId(Number.isSafeInteger(time) && time > 0 ? new Date(time * 1000) : new Date(), Number.isSafeInteger(pid) ? pid : 0);
}

/** mtime of a file of the entry in ms since the epoch, or null. */
function mtimeMs(dir: string, name: string): number | null {
  try {
    // (the kernel stamps files with its coarse clock: a few ms of resolution)
    return Math.round(lstatSync(join(dir, name)).mtimeMs);
  } catch {
    return null;
  }
}

/**
 * A number the launcher wrote (the pipe's size as its perl printed it, its zstd's level):
 * digits and a newline, above 0; anything else (it did not run, or failed) is null.
 */
export function launcherNumber(text: string | null): number | null {
  const m = text === null ? null : /^(\d{1,12})\n?$/.exec(text);
  const n = m ? Number(m[1]) : 0;
  return n > 0 ? n : null;
}

export interface LoadSpooledOptions {
  /**
   * The executable the launcher opened is this process's LAUNCHER_EXE_FD: only in the node the
   * launcher exec'd (default). The daemon and drainers hold other files there.
   */
  inheritedExe?: boolean;
  /** The launcher this node was started beside (handler/early.ts): its executable fd is opened through /proc; overrides inheritedExe. */
  exeFrom?: Launcher;
  /** The entry's name under which the recorders were frozen for it, when that was not the launcher's `spool` line (the daemon's `take`). */
  frozeEntry?: string;
  /** The bundle id already chosen for it (a drainer's); default: a new one, kept in the entry. */
  bundleId?: string;
}

/**
 * The entry's name, when `dir` is an entry (or a claimed one) of a launcher's directory, both
 * root's own and not links; throws otherwise.
 */
export function checkSpoolEntry(dir: string): string {
  const parent = dirname(dir);
  const name = basename(dir);
  const entry = SPOOL_ENTRY_RE.test(name) ? name : SPOOL_CLAIMED_RE.exec(name)?.[1];
  if (!isAbsolute(dir) || entry === undefined || !parent.startsWith(`${OVERFLOW_BASE}/flightbox-incoming-`)) {
    throw new Error(`${JSON.stringify(dir)} is not an entry of the launcher's directory`);
  }
  checkSecureDir(parent);
  checkSecureDir(dir);
  return entry;
}

/**
 * The crash the launcher began in `dir` and exec'd into `--spooled` for (or offered to the
 * daemon, or left for a drainer: the entry then has a claim suffix): its arguments and what
 * it copied. Throws when the directory is not one of a launcher's entries.
 */
export function loadSpooled(dir: string, prefixStatus = 0, opts: LoadSpooledOptions = {}): { args: string[]; spooled: SpooledCrash; bundleId: string; warnings: string[] } {
  const entry = checkSpoolEntry(dir);
  const { args, writer } = readEntry(dir);
  const startedMs = mtimeMs(dir, 'writer') ?? Date.now();
  // Kept in the entry: if this handler dies after publishing, a drainer must not publish again.
  const bundleId = opts.bundleId ?? newBundleId(args);
  if (opts.bundleId === undefined) {
    try {
      writeFileExclusive(dir, 'id', `${bundleId}\n`, 0o600, { sync: false });
    } catch {
      // tmpfs full: the crash is captured all the same; only a drainer finding this entry
      // after a failure could not tell that it was published
    }
  }
  return {
    args,
    bundleId,
    warnings: cutCopies(dir),
    spooled: {
      source: spooledProcSource(dir, Number(args[0]), writer?.pid ?? 0, opts.exeFrom ? launcherExe(dir, opts.exeFrom) : opts.inheritedExe === false ? null : launcherExe(dir)),
      launcherPid: writer?.pid ?? 0,
      startedMs,
      procMs: mtimeMs(dir, 'stat.after'),
      releasedMs: mtimeMs(dir, 'released'),
      corePrefix: join(dir, 'core'),
      prefixStatus,
      prefixMessage: prefixStatus === 0 ? null : ddMessage(readSmall(dir, 'dd') ?? ''),
      traceDir: existsSync(join(dir, LAUNCHER_TRACE.started)) ? dir : null,
      traceMode: readSmall(dir, LAUNCHER_TRACE.started)?.trim() || null,
      pipeBytes: launcherNumber(readSmall(dir, LAUNCHER_PIPE_FILE)),
      zstdLevel: launcherNumber(readSmall(dir, LAUNCHER_ZSTD.started)),
      entry,
      frozeEntry: opts.frozeEntry ?? (existsSync(join(dir, LAUNCHER_FROZE_FILE)) ? entry : null),
    },
  };
}

export interface DrainResult {
  bundles: number;
  failed: number;
}

interface DrainOptions {
  /** The store root whose overflow directory to drain (the launcher's, baked at install); default: the config's. */
  from?: string;
  /** Only entries at least this old (the daemon's sweep of what a dead drainer left). */
  minAgeMs?: number;
  now?: () => number;
}

/** Entries made into bundles between two syncs of the filesystem. */
const DRAIN_BATCH = 64;

/**
 * syncfs(2) of the store's filesystem (`sync -f`; node has no syncfs); without it, each
 * bundle's files and directory are fsynced one by one.
 */
function syncBundles(storeRoot: string, bundleDirs: readonly string[]): void {
  if (bundleDirs.length === 0) return;
  const sync = findProgram('sync');
  // (node:child_process loaded here, not with this module: every crash's handler imports it)
  if (sync && builtin('node:child_process').spawnSync(sync, ['-f', storeRoot], { stdio: 'ignore', timeout: 120_000 }).status === 0) return;
  for (const b of bundleDirs) {
    syncTree(b);
    fsyncDir(dirname(b));
  }
}

/** Our own claim suffix, "@<pid>-<start>". */
function claimSuffix(): string | null {
  const start = processStartTime(process.pid);
  return start === null ? null : `@${process.pid}-${start}`;
}

/** This process's lock, if it holds one (a launcher that exec'd into this drainer made it). */
function heldLock(dir: string): string | null {
  for (const name of DRAIN_LOCKS) {
    const holder = parseOwner(readSmall(dir, name));
    if (holder && holder.pid === process.pid && holder.start === processStartTime(process.pid)) return name;
  }
  return null;
}

/** One of the locks, taken when free or left by a dead process; null when all are held. */
function takeLock(dir: string, own: string): string | null {
  const held = heldLock(dir);
  if (held) return held;
  for (const name of DRAIN_LOCKS) {
    const path = join(dir, name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
        try {
          writeSync(fd, own);
        } finally {
          closeSync(fd);
        }
        return name;
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') break;
      }
      const holder = parseOwner(readSmall(dir, name));
      if (holder && alive(holder.pid, holder.start)) break;
      // Left by a process that is gone (or unreadable): remove it and try once more. Two
      // drainers doing this at once both end up draining, which claims make harmless.
      try {
        unlinkSync(path);
      } catch {
        break;
      }
    }
  }
  return null;
}

function dropLock(dir: string, name: string): void {
  const holder = parseOwner(readSmall(dir, name));
  if (holder && holder.pid === process.pid) {
    try {
      unlinkSync(join(dir, name));
    } catch {
      // gone already
    }
  }
}

/** The entry a spool name stands for, whether claimed, offered or not. */
export function spoolEntryOf(name: string): string | null {
  return SPOOL_ENTRY_RE.test(name) ? name : SPOOL_CLAIMED_RE.exec(name)?.[1] ?? SPOOL_OFFER_RE.exec(name)?.[1] ?? null;
}

/** Entries a drainer may take now: whole ones, those of dead writers, dead drainers and dead daemons. */
function takeable(dir: string, minAgeMs: number, now: number): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names.sort()) {
    const entry = SPOOL_ENTRY_RE.exec(name);
    // (an offer is the daemon's to take while it lives, like a claim)
    const claimed = SPOOL_CLAIMED_RE.exec(name) ?? SPOOL_OFFER_RE.exec(name);
    if (!entry && !claimed) continue;
    const path = join(dir, name);
    try {
      if (minAgeMs > 0 && now - lstatSync(path).mtimeMs < minAgeMs) continue;
      if (claimed) {
        if (alive(Number(claimed[2]), Number(claimed[3]))) continue;
      } else if (!existsSync(join(path, 'complete'))) {
        const writer = parseOwner(readSmall(path, 'writer'));
        if (writer && alive(writer.pid, writer.start)) continue; // still being written
      }
    } catch {
      continue;
    }
    out.push(name);
  }
  return out;
}

/** One entry (claimed by us) → one bundle, published without fsync; returns its directory. */
async function drainEntry(store: Store, cfg: Config, dir: string): Promise<string> {
  const { args, writer } = readEntry(dir);
  const live = Number((readSmall(dir, 'live') ?? '').trim());
  const complete = existsSync(join(dir, 'complete'));
  // The bundle id is chosen once and kept in the entry: a drainer that dies after publishing
  // must not make a second bundle of the same crash when the entry is taken again.
  let id = (readSmall(dir, 'id') ?? '').trim();
  if (isBundleId(id)) {
    if (existsSync(store.bundleDir(id))) {
      touchNoFollow(join(store.root, SPOOL_DIR, id)); // published: make sure it is indexed
      store.drainSpool();
      return store.bundleDir(id);
    }
    rmSync(join(store.root, 'staging', id), { recursive: true, force: true });
  } else {
    id = newBundleId(args);
    writeFileExclusive(dir, 'id', `${id}\n`, 0o600);
  }
  const launcherPid = writer?.pid ?? 0;
  // An entry the launcher left to its own handler (node) that the handler never finished.
  const interrupted = existsSync(join(dir, 'handler'));
  if (interrupted && existsSync(join(dir, 'released')) && existsSync(join(dir, 'core'))) {
    // ...after the launcher had read the whole core (it released the process: its dd ended
    // the core without error): the core is kept, from the launcher's copy.
    const { spooled, warnings } = loadSpooled(dir, 0, { inheritedExe: false, bundleId: id });
    const r = await captureCrash(args, {
      config: cfg, configWarnings: [...warnings], store, bundleId: id, sync: false, spooled, stdinFd: null,
      noRecorders: 'no flight-recorder snapshot: the crash handler stopped before it finished this crash, and it was recorded later from the launcher\'s copy of /proc and of the whole core',
    });
    return r.bundleDir;
  }
  const configWarnings = interrupted
    ? ['the crash handler stopped before it finished this crash: what the launcher had copied of /proc is kept, the core is not']
    : complete ? [] : ['the launcher was stopped while it recorded this crash: what it had copied of /proc is kept, the rest is missing'];
  configWarnings.push(...cutCopies(dir));
  const r = await captureCrash(args, {
    config: cfg,
    configWarnings,
    store,
    bundleId: id,
    sync: false,
    overflow: { source: spooledProcSource(dir, Number(args[0]), launcherPid), live: Number.isSafeInteger(live) ? live : 0, launcherPid, interrupted },
  });
  return r.bundleDir;
}

/**
 * Turn every entry of the store's overflow directory into a bundle. Returns how many; entries that fail
 * are renamed failed.<name> and reported to the kernel log and the store log, never deleted.
 */
export async function drainIncoming(cfg: Config, opts: DrainOptions = {}): Promise<DrainResult> {
  const dir = overflowDir(opts.from ?? cfg.store.root);
  const own = claimSuffix();
  const result: DrainResult = { bundles: 0, failed: 0 };
  if (own === null || !existsSync(dir)) return result;
  // Only a directory root made: one someone else made in its place holds nothing to trust.
  checkSecureDir(dir);
  const ownLock = `${process.pid} ${own.slice(own.indexOf('-') + 1)}\n`;
  const now = opts.now ?? Date.now;
  let store: Store | null = null;
  try {
    // (A launcher that made the lock and exec'd into this drainer has our pid and start time.)
    for (let lock = takeLock(dir, ownLock); lock !== null;) {
      for (;;) {
        const names = takeable(dir, opts.minAgeMs ?? 0, now());
        if (names.length === 0) break;
        store ??= new Store(cfg.store.root, { create: true, busyTimeoutMs: cfg.store.busyTimeoutMs });
        const done: { entry: string; bundleDir: string }[] = [];
        for (const name of names.slice(0, DRAIN_BATCH)) {
          const base = spoolEntryOf(name) ?? name;
          const claimed = join(dir, `${base}${own}`);
          try {
            renameSync(join(dir, name), claimed);
          } catch {
            continue; // another drainer took it
          }
          try {
            done.push({ entry: claimed, bundleDir: await drainEntry(store, cfg, claimed) });
            result.bundles++;
          } catch (err) {
            result.failed++;
            const msg = `could not record the crash the launcher spooled in ${join(dir, base)}, kept as ${FAILED_PREFIX}${base}: ${messageOf(err)}`;
            kmsg(msg, 3);
            try {
              createLogger({ file: store.logFile, component: 'handler' }).error({ entry: base }, msg);
              renameSync(claimed, join(dir, `${FAILED_PREFIX}${base}`));
            } catch {
              // it stays claimed by us; once we are gone the next drainer tries again
            }
          }
        }
        // The bundles were written without fsync (26 per bundle cost ~25 ms each here): one
        // sync of the filesystem for the batch, then their entries may go.
        syncBundles(store.root, done.map((d) => d.bundleDir));
        for (const d of done) rmSync(d.entry, { recursive: true, force: true });
      }
      dropLock(dir, lock);
      // An entry written while we held the lock found it taken and left the work to us.
      lock = takeable(dir, opts.minAgeMs ?? 0, now()).length > 0 ? takeLock(dir, ownLock) : null;
    }
  } finally {
    store?.close();
  }
  return result;
}

/** Whether the store's overflow directory holds anything at all (one readdir): the cheap look before a drain. */
export function incomingWaiting(storeRoot: string): boolean {
  try {
    return spoolCrashes(readdirSync(overflowDir(storeRoot))).waiting > 0;
  } catch {
    return false;
  }
}

