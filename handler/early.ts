// The node the launcher starts beside its copies (handler/install.ts earlyFunctions): it gets
// ready while the launcher copies /proc and the core, then waits for the launcher's word
// (LAUNCHER_EARLY.go in the entry: dd's exit status) and records the crash as the node the
// launcher exec'd would have. The launcher is its parent and waits for it; if the launcher dies
// first, or the entry goes, this node leaves everything as it is (a drainer records the entry,
// as it would have without this node).
import { existsSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { readSmallNoFollow, writeFileExclusive } from '../lib/safe-fs.js';
import { processStartTime } from '../store/handler-slots.js';
import { LAUNCHER_EARLY } from './run-dir.js';

/** How often the launcher's life and the entry are checked while waiting (the word itself comes by inotify). */
const LIFE_CHECK_MS = 100;

/** The launcher this node waits for: its parent, by pid and start time (so a reused pid is not it). */
export interface Launcher {
  pid: number;
  start: number;
}

/** The parent of this process as a Launcher; null when it cannot be read (then there is no one to wait for). */
export function parentLauncher(procRoot = '/proc'): Launcher | null {
  const pid = process.ppid;
  const start = pid > 1 ? processStartTime(pid, procRoot) : null;
  return start === null ? null : { pid, start };
}

/** dd's exit status in a complete `go` (digits and a newline), else null (not there, not written yet, or not the launcher's). */
export function parseGo(text: string | null): number | null {
  const m = text === null ? null : /^(\d{1,3})\n$/.exec(text);
  return m ? Number(m[1]) : null;
}

function readGo(dir: string): number | null {
  try {
    return parseGo(readSmallNoFollow(join(dir, LAUNCHER_EARLY.go), 16));
  } catch {
    return null;
  }
}

/**
 * Wait for the launcher's word in `dir`: dd's exit status, or null once the launcher is gone
 * (dead, or its pid reused) or the entry with it. inotify on the entry, checked again every
 * LIFE_CHECK_MS, which is also how often the launcher's life is looked at.
 */
export function waitForGo(dir: string, launcher: Launcher, opts: { procRoot?: string; lifeCheckMs?: number } = {}): Promise<number | null> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | null = null;
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (v: number | null): void => {
      if (done) return;
      done = true;
      watcher?.close();
      if (timer) clearInterval(timer);
      resolve(v);
    };
    const check = (lifeToo: boolean): void => {
      const go = readGo(dir);
      if (go !== null) return finish(go);
      if (lifeToo && (processStartTime(launcher.pid, opts.procRoot ?? '/proc') !== launcher.start || !existsSync(dir))) finish(null);
    };
    try {
      watcher = watch(dir, { persistent: true }, (_event, name) => {
        if (name === LAUNCHER_EARLY.go) check(false);
      });
      // The entry removed (IN_DELETE_SELF) or the watch lost: the periodic check decides.
      watcher.on('error', () => {
        watcher = null;
      });
    } catch {
      watcher = null;
    }
    // Without inotify the word is looked for as often as the launcher's status files are polled.
    timer = setInterval(() => check(true), watcher ? (opts.lifeCheckMs ?? LIFE_CHECK_MS) : 2);
    check(true);
  });
}

/**
 * Say that this node has the crash (before anything else is done with it): the launcher then
 * leaves it to this node, whatever becomes of it. false: it could not be said (tmpfs full), and
 * this node must leave the crash to the launcher.
 */
export function markTaken(dir: string): boolean {
  try {
    writeFileExclusive(dir, LAUNCHER_EARLY.taken, '', 0o600, { sync: false });
    return true;
  } catch {
    return false;
  }
}
