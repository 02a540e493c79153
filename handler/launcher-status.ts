// What became of a program the launcher started in the background on a core it read whole
// (eu-stack, zstd: handler/install.ts): its exit status, in a file the launcher renames into
// place once the program is done.
import { closeSync, constants, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { builtin } from '../lib/builtin.js';
import { readNoFollow } from '../lib/safe-fs.js';

const POLL_MS = 2;

/**
 * The exit status in `path`, waited for until `deadlineMs` (ms since the epoch): a number;
 * null when the file holds anything else; 'pending' when it did not come in time.
 * `meanwhile` runs before each wait while the status is not there yet.
 */
export async function launcherStatus(path: string, deadlineMs: number, meanwhile?: () => void): Promise<number | null | 'pending'> {
  while (!existsSync(path)) {
    if (Date.now() >= deadlineMs) return 'pending';
    meanwhile?.();
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  let rc = '';
  try {
    rc = readNoFollow(path, 16).toString('utf8').trim();
  } catch {
    // unreadable: not a status
  }
  return /^\d+$/.test(rc) ? Number(rc) : null;
}

/** A launcher program's output file, hashed while it was written (hashWhileWritten). */
export interface WrittenFile {
  /** open on the file (O_NOFOLLOW), the caller's to close */
  fd: number;
  /** bytes read and hashed: the file's size once its program was done */
  size: number;
  sha256: string;
  /** of those, how many were read before the program was done */
  hashedBefore: number;
}

/**
 * The file a launcher's background program writes front to back and never goes back in
 * (zstd's output), read and hashed while it grows, and to its end once `statusFile` says the
 * program is done: the time of reading and hashing it then overlaps the program's own. It
 * reads on while launcherStatus waits, and once more after the status has come: that read
 * sees the whole output. null when the status is not 0, or does not come before `deadlineMs`, or the file is not there
 * or shrinks.
 */
export async function hashWhileWritten(file: string, statusFile: string, deadlineMs: number): Promise<WrittenFile | null> {
  const hash = builtin('node:crypto').createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  let fd: number | null = null;
  let off = 0;
  let short = false; // a read found less than fstat said: not to be trusted
  // To the file's present end; false when a read finds less than fstat said.
  const readOn = (): boolean => {
    if (fd === null) {
      try {
        fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch {
        return true; // not made yet (or never: the status will say so)
      }
    }
    for (const to = fstatSync(fd).size; off < to;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, to - off), off);
      if (n === 0) return false;
      hash.update(buf.subarray(0, n));
      off += n;
    }
    return true;
  };
  try {
    const status = await launcherStatus(statusFile, deadlineMs, () => { if (!short) short = !readOn(); });
    const hashedBefore = off;
    // The status came after the program's last write: this read sees its whole output, and
    // nothing may be past (or short of) the end read.
    if (status !== 0 || short || !readOn() || fd === null || fstatSync(fd).size !== off) return null;
    const out: WrittenFile = { fd, size: off, sha256: hash.digest('hex'), hashedBefore };
    fd = null;
    return out;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}
