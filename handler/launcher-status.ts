// What became of a program the launcher started in the background on a core it read whole
// (eu-stack, zstd: handler/install.ts): its exit status, in a file the launcher renames into
// place once the program is done.
import { existsSync } from 'node:fs';
import { readNoFollow } from '../lib/safe-fs.js';

const POLL_MS = 5;

/**
 * The exit status in `path`, waited for until `deadlineMs` (ms since the epoch): a number;
 * null when the file holds anything else; 'pending' when it did not come in time.
 */
export async function launcherStatus(path: string, deadlineMs: number): Promise<number | null | 'pending'> {
  while (!existsSync(path)) {
    if (Date.now() >= deadlineMs) return 'pending';
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
