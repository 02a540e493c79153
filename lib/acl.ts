// POSIX ACLs through setfacl (package acl): how a crashing user gets read access to their
// own crash and nothing else, as systemd-coredump grants it on its core files. Node has no
// xattr calls, so the program does it; it is found by absolute path and run without a shell.
import { builtin } from './builtin.js';
import { FlightboxError } from './errors.js';
import { escapeControl } from './escape.js';
import { findProgram } from './programs.js';

export const SETFACL_TIMEOUT_MS = 10_000;

/** One `-m ENTRIES` followed by the paths it applies to (setfacl applies options in order). */
export interface AclStep {
  entries: string;
  paths: readonly string[];
}

/** Apply the steps in one setfacl run. Throws a FlightboxError naming what failed. */
export function applyAcls(steps: readonly AclStep[], setfacl: string | null = findProgram('setfacl')): void {
  if (!setfacl) throw new FlightboxError('TOOL_MISSING', 'setfacl is not installed (Debian package acl)');
  const args: string[] = [];
  for (const s of steps) {
    if (s.paths.length === 0) continue;
    if (!/^[dugm:0-9rwxX,-]+$/.test(s.entries)) throw new FlightboxError('INTERNAL', `bad ACL entries ${JSON.stringify(s.entries)}`);
    // Paths are ours (store root, bundle ids), never the crashed process's; "--" still keeps
    // a path from being read as an option.
    args.push('-m', s.entries, ...s.paths.map((p) => (p.startsWith('-') ? `./${p}` : p)));
  }
  if (args.length === 0) return;
  const r = builtin('node:child_process').spawnSync(setfacl, args, { encoding: 'utf8', timeout: SETFACL_TIMEOUT_MS, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error) throw new FlightboxError('TOOL_FAILED', `setfacl failed: ${r.error.message}`);
  if (r.status !== 0) {
    const why = escapeControl(String(r.stderr ?? '').trim().split('\n')[0] ?? '').slice(0, 300);
    throw new FlightboxError('TOOL_FAILED', `setfacl exited with ${r.status ?? r.signal}: ${why}`);
  }
}
