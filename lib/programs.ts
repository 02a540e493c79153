// Locating helper programs by absolute path: the kernel starts the handler with an almost
// empty environment, and a root process should not trust PATH anyway.
import { accessSync, constants } from 'node:fs';

export const SEARCH_PATH: readonly string[] = ['/usr/bin', '/bin', '/usr/local/bin', '/usr/sbin', '/sbin'];

/** Absolute path of a program in the standard directories, or null. */
export function findProgram(name: string, dirs: readonly string[] = SEARCH_PATH): string | null {
  for (const d of dirs) {
    try {
      accessSync(`${d}/${name}`, constants.X_OK);
      return `${d}/${name}`;
    } catch {
      // keep looking
    }
  }
  return null;
}
