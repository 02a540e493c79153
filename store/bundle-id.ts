// Bundle identifiers: time-ordered, unique without coordination, and made only of
// [0-9A-Za-z-] so an id is always safe in a path, a URL, a mail header and a shell word.
import { closeSync, openSync, readSync } from 'node:fs';
import { builtin } from '../lib/builtin.js';

/**
 * Random bytes from /dev/urandom: the crash handler makes an id before the core is read, and
 * loading node:crypto for three bytes costs it ~4 ms. node:crypto where the device is missing.
 */
function randomId(n: number): Buffer {
  const buf = Buffer.alloc(n);
  try {
    const fd = openSync('/dev/urandom', 'r');
    try {
      if (readSync(fd, buf, 0, n, null) === n) return buf;
    } finally {
      closeSync(fd);
    }
  } catch {
    // no device (a chroot): below
  }
  return builtin('node:crypto').randomBytes(n);
}

export const BUNDLE_ID_RE = /^\d{8}T\d{6}-\d{1,10}-[0-9a-f]{6}$/;

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** "20261126T065012-1234-a1b2c3" (UTC time, pid, 24 random bits). */
export function makeBundleId(time: Date, pid: number, random: Buffer = randomId(3)): string {
  const d = `${time.getUTCFullYear()}${pad(time.getUTCMonth() + 1)}${pad(time.getUTCDate())}`;
  const t = `${pad(time.getUTCHours())}${pad(time.getUTCMinutes())}${pad(time.getUTCSeconds())}`;
  return `${d}T${t}-${pid}-${random.toString('hex').slice(0, 6).padStart(6, '0')}`;
}

export function isBundleId(s: string): boolean {
  return BUNDLE_ID_RE.test(s);
}

/** The day directory a bundle lives in ("2026-11-26"), from its id. */
export function bundleDay(id: string): string {
  return `${id.slice(0, 4)}-${id.slice(4, 6)}-${id.slice(6, 8)}`;
}
