// Safe file creation for a root process working next to hostile data: directories we
// create are checked for owner and mode, every file is created with O_EXCL|O_NOFOLLOW so
// a planted symlink, hardlink target or FIFO makes the write fail instead of redirecting it.
import { chmodSync, close, closeSync, constants, fchmodSync, fstatSync, fsync, fsyncSync, lstatSync, mkdirSync, open, openSync, readSync, readdirSync, renameSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { basename, join } from 'node:path';
import { FlightboxError, errnoCode } from './errors.js';

// libuv adds O_CLOEXEC to every open.
const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY, O_DIRECTORY, O_APPEND, O_NONBLOCK } = constants;
export const CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW;

/** A file name of our own making: no separators, no dot-names. Hostile strings never get here. */
export function assertPlainName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new FlightboxError('INTERNAL', `refusing unsafe file name ${JSON.stringify(name)}`);
  }
}

/**
 * Create `path` as a directory (mode `mode`) if missing, then verify that it is a real
 * directory (not a symlink) owned by the current user and not writable by anyone else.
 */
export function ensureSecureDir(path: string, mode = 0o700): void {
  try {
    mkdirSync(path, { mode });
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
  checkSecureDir(path);
}

/** A readers' check accepts directories owned by root as well as by the current user. */
export function checkSecureDir(path: string, opts: { allowRootOwner?: boolean } = {}): void {
  const st = lstatSync(path);
  if (st.isSymbolicLink()) throw new FlightboxError('STORE_UNSAFE', `${path} is a symbolic link; refusing to use it`);
  if (!st.isDirectory()) throw new FlightboxError('STORE_UNSAFE', `${path} is not a directory; refusing to use it`);
  const uid = process.getuid?.() ?? 0;
  if (st.uid !== uid && !(opts.allowRootOwner && st.uid === 0)) {
    throw new FlightboxError('STORE_UNSAFE', `${path} is owned by uid ${st.uid}, not ${uid}; refusing to use it`);
  }
  if ((st.mode & 0o022) !== 0) {
    throw new FlightboxError('STORE_UNSAFE', `${path} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); refusing to use it`);
  }
}

/** Open a new file for writing inside `dir`; fails if anything already exists at that name. */
export function createExclusive(dir: string, name: string, mode = 0o600, opts: { readable?: boolean } = {}): number {
  assertPlainName(name);
  const flags = opts.readable ? (CREATE_FLAGS & ~O_WRONLY) | constants.O_RDWR : CREATE_FLAGS;
  return openSync(join(dir, name), flags, mode);
}

/** Write all of `buf` at `fd`'s offset (writeSync may write less than asked). */
export function writeFully(fd: number, buf: Uint8Array): void {
  for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
}

/**
 * Write a whole new file with O_EXCL|O_NOFOLLOW and fsync it (unless `sync: false`: the
 * crash handler's hold path defers syncing to syncTree() after the process is released).
 */
export function writeFileExclusive(dir: string, name: string, data: string | Uint8Array, mode = 0o600, opts: { sync?: boolean } = {}): number {
  const fd = createExclusive(dir, name, mode);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    writeFully(fd, buf);
    if (opts.sync !== false) fsyncSync(fd);
    return buf.length;
  } finally {
    closeSync(fd);
  }
}

export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, O_RDONLY | O_DIRECTORY);
    fsyncSync(fd);
  } catch {
    // fsync of a directory is best effort (some filesystems refuse it).
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function baseNameOf(path: string): string {
  return basename(path);
}

/**
 * Check an open fd of a file we own and write to: a regular file, ours, with no other name.
 * O_NOFOLLOW stops a symlink; a hard link to a file elsewhere (say /etc/shadow, planted by
 * someone who could write here) has the same inode under two names, and is refused here.
 */
export function checkOwnRegularFile(fd: number, path: string): void {
  const st = fstatSync(fd);
  if (!st.isFile()) throw new FlightboxError('STORE_UNSAFE', `${path} is not a regular file; refusing to use it`);
  if (st.nlink > 1) throw new FlightboxError('STORE_UNSAFE', `${path} has ${st.nlink} hard links; refusing to use it`);
  const uid = process.geteuid?.() ?? 0;
  if (st.uid !== uid) throw new FlightboxError('STORE_UNSAFE', `${path} is owned by uid ${st.uid}, not ${uid}; refusing to use it`);
}

/**
 * Append to a file, creating it (0600) if missing. A symlink, a FIFO (never blocks: the
 * open is non-blocking), a hard link or someone else's file at the name makes it fail.
 */
export function appendNoFollow(path: string, data: string, mode = 0o600): void {
  const fd = openSync(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_NONBLOCK, mode);
  try {
    checkOwnRegularFile(fd, path);
    writeFully(fd, Buffer.from(data));
  } finally {
    closeSync(fd);
  }
}

/** Create (or keep) an empty marker file without following a symlink. */
export function touchNoFollow(path: string, mode = 0o600): void {
  closeSync(openSync(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK, mode));
}

/**
 * Make `path` a regular file readable by its owner only: created (when `create`) with mode
 * 0600, group/other bits taken away when present. Never follows a symlink nor blocks on a
 * FIFO; anything but a regular file is refused. A missing file without `create` is fine.
 */
export function ensurePrivateFile(path: string, create: boolean): void {
  // A file that already is what it must be is checked by lstat alone, never opened: closing
  // any fd of a file drops every POSIX lock this process holds on it (fcntl locks belong to
  // the process), such as SQLite's on the index, held by another connection of this process
  // (the daemon's and its crash worker's). Without them the next process to close the index
  // thinks itself the last, checkpoints and deletes the WAL this process still writes to.
  let st: Stats | null = null;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  if (st === null && !create) return;
  if (st !== null && st.isFile() && st.nlink === 1 && st.uid === (process.geteuid?.() ?? 0)) {
    // (the directory is one only its owner may write: nothing swaps the file for a link here)
    if ((st.mode & 0o077) !== 0) chmodSync(path, st.mode & 0o700);
    return;
  }
  let fd: number;
  try {
    fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | (create ? O_CREAT : 0), 0o600);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT' && !create) return;
    if (code === 'ELOOP') throw new FlightboxError('STORE_UNSAFE', `${path} is a symbolic link; refusing to use it`);
    throw err;
  }
  try {
    checkOwnRegularFile(fd, path);
    const st = fstatSync(fd);
    if ((st.mode & 0o077) !== 0) fchmodSync(fd, st.mode & 0o700);
  } finally {
    closeSync(fd);
  }
}

/** Read at most `max` bytes of a small file without following a symlink. */
export function readSmallNoFollow(path: string, max = 65536): string {
  return readNoFollow(path, max).toString('utf8');
}

/**
 * The first `max` bytes of a file, opened without following a symlink and without blocking
 * on a FIFO (which then fails instead of hanging the reader).
 */
export function readNoFollow(path: string, max: number): Buffer {
  const fd = openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    const want = st.isFile() && st.size < max ? st.size : max;
    const buf = Buffer.allocUnsafe(want);
    let n = 0;
    for (let r = 1; r > 0 && n < want; n += r) r = readSync(fd, buf, n, want - n, null);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace `dir/name` with `data` atomically: written under a temporary name of this process
 * (a stale one removed first) with O_EXCL|O_NOFOLLOW and fsync, then renamed over the old.
 */
export function writeFileAtomic(dir: string, name: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `.${name}.${process.pid}.tmp`;
  try {
    unlinkSync(join(dir, tmp));
  } catch {
    // not there
  }
  try {
    writeFileExclusive(dir, tmp, data, mode);
    renameSync(join(dir, tmp), join(dir, name));
  } catch (err) {
    try {
      unlinkSync(join(dir, tmp));
    } catch {
      // never written
    }
    throw err;
  }
}

/** The regular files and the directories below `dir` (itself included), not following symlinks. */
function treeOf(dir: string): { files: string[]; dirs: string[] } {
  const files: string[] = [];
  const dirs: string[] = [];
  const walk = (d: string): void => {
    dirs.push(d);
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) files.push(p);
    }
  };
  walk(dir);
  return { files, dirs };
}

/** fsync every regular file and directory below `dir` (not following symlinks; a directory's fsync is best effort). */
export function syncTree(dir: string): void {
  const { files, dirs } = treeOf(dir);
  for (const f of files) {
    const fd = openSync(f, O_RDONLY | O_NOFOLLOW);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  for (const d of dirs) fsyncDir(d);
}

/**
 * syncTree with every fsync in flight at once (libuv's thread pool): the filesystem commits
 * them together, where one after the other each waits for a commit of its own (20 small new
 * files: 13 ms one by one, 6-10 ms at once here). Resolves once all are durable; rejects
 * with the first file's error, as syncTree throws it (a directory's fsync is best effort).
 */
export async function syncTreeAtOnce(dir: string): Promise<void> {
  const { files, dirs } = treeOf(dir);
  const one = (path: string, flags: number, bestEffort: boolean): Promise<void> => new Promise((resolve, reject) => {
    open(path, flags, (err, fd) => {
      if (err) return bestEffort ? resolve() : reject(err);
      fsync(fd, (syncErr) => {
        close(fd, () => { /* closing a read-only fd cannot lose data */ });
        if (syncErr && !bestEffort) reject(syncErr);
        else resolve();
      });
    });
  });
  const settled = await Promise.allSettled([
    ...files.map((f) => one(f, O_RDONLY | O_NOFOLLOW, false)),
    ...dirs.map((d) => one(d, O_RDONLY | O_DIRECTORY, true)),
  ]);
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
}
