// A cap on handlers storing a core at the same time (core.maxConcurrent). A crash storm
// starts one handler per crash; each storing handler costs a core's worth of disk I/O, a
// compressor and a stack-trace tool. Beyond the cap a crash is still recorded and indexed,
// without its core.
//
// No locks to leak: each handler registers a file named after itself in <dir>/handlers/
// ("<pid>-<starttime>"; the launcher makes it before it execs node, handler/install.ts) and
// counts the live entries. <dir> is the launcher's root-only tmpfs directory
// (handler/capture.ts slotRoot), or the store when that is missing. When it counts more than the cap it
// withdraws. This never admits more than the cap: of k handlers storing at once, the last
// to register saw all k entries. Under a simultaneous burst it may admit fewer (all of a
// burst can withdraw together); a storm is exactly when erring that way is right. Entries
// of handlers that died (SIGKILL) are recognised by their pid's start time and removed.
import { lstatSync, readdirSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from '../lib/errors.js';
import { ensureSecureDir, writeFileExclusive } from '../lib/safe-fs.js';
import { parsePidStat } from '../lib/procfs.js';

export const HANDLERS_DIR = 'handlers';
const ENTRY_RE = /^(\d+)-(\d+)$/;

export interface HandlerSlot {
  /** True when this handler may store its core. */
  acquired: boolean;
  /** Live storing handlers seen, this one included. */
  live: number;
  /** Withdraw the entry (idempotent). */
  release(): void;
}

/** A process's start time (clock ticks since boot, /proc/<pid>/stat), or null when it does not exist. */
export function processStartTime(pid: number, procRoot = '/proc'): number | null {
  try {
    return parsePidStat(readFileSync(`${procRoot}/${pid}/stat`, 'utf8'))?.startTime ?? null;
  } catch {
    return null;
  }
}

function unlinkQuiet(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}

function isOwnEntry(path: string): boolean {
  try {
    const st = lstatSync(path);
    return st.isFile() && st.uid === (process.getuid?.() ?? st.uid);
  } catch {
    return false;
  }
}

/**
 * Withdraw the entry the launcher made for this process, when it will not store a core
 * (core.maxSize 0, RLIMIT_CORE 0): it must not count as a storing handler.
 */
export function forgetHandlerSlot(storeRoot: string, opts: { pid?: number; procRoot?: string } = {}): void {
  const pid = opts.pid ?? process.pid;
  const start = processStartTime(pid, opts.procRoot ?? '/proc');
  if (start === null) return;
  try {
    unlinkQuiet(join(storeRoot, HANDLERS_DIR, `${pid}-${start}`));
  } catch {
    // a stale entry is removed by the next handler that counts it
  }
}

/**
 * Register this process and decide whether it may store a core. `max` null means no cap
 * (nothing is registered). Errors reading the directory admit the handler: the cap protects
 * the machine, it must never cost a core by itself failing.
 */
export function acquireHandlerSlot(storeRoot: string, max: number | null, opts: { pid?: number; procRoot?: string } = {}): HandlerSlot {
  const none: HandlerSlot = { acquired: true, live: 0, release: () => {} };
  if (max === null) return none;
  const procRoot = opts.procRoot ?? '/proc';
  const pid = opts.pid ?? process.pid;
  const start = processStartTime(pid, procRoot);
  if (start === null) return none;
  const dir = join(storeRoot, HANDLERS_DIR);
  const name = `${pid}-${start}`;
  try {
    ensureSecureDir(dir, 0o700);
    writeFileExclusive(dir, name, '', 0o600, { sync: false });
  } catch (err) {
    // The launcher registers this process before it execs node (same pid, same start time),
    // so that launchers of a storm count it from its first millisecond: the entry is ours.
    if (errnoCode(err) !== 'EEXIST' || !isOwnEntry(join(dir, name))) return none;
  }
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    try {
      unlinkQuiet(join(dir, name));
    } catch {
      // a stale entry is removed by the next handler that counts it
    }
  };
  let live = 0;
  try {
    for (const entry of readdirSync(dir)) {
      const m = ENTRY_RE.exec(entry);
      if (!m) continue;
      if (entry === name) {
        live++;
        continue;
      }
      if (processStartTime(Number(m[1]), procRoot) === Number(m[2])) live++;
      else unlinkQuiet(join(dir, entry)); // its handler is gone, or its pid was reused
    }
  } catch {
    return { acquired: true, live, release };
  }
  if (live > max) {
    release();
    return { acquired: false, live, release };
  }
  return { acquired: true, live, release };
}
