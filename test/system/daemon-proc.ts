// The flightbox daemon as a child process of a system test: started on a temp store, its
// stdout and stderr collected, waited for until it says it is running, stopped with SIGTERM.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { CLI, waitFor, type TempStore } from '../helpers.js';

export interface DaemonProc {
  child: ChildProcess;
  /** Everything it has written to stdout and stderr so far. */
  log: () => string;
  /** Its exit status, once it has exited. */
  exited: Promise<number | null>;
}

/** `flightbox --config STORE daemon ARGS...`, not waited for (see waitRunning, runningDaemon). */
export function startDaemon(store: TempStore, args: string[] = []): DaemonProc {
  const child = spawn(process.execPath, [CLI, '--config', store.configPath, 'daemon', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  return { child, log: () => out, exited };
}

/** Wait (30 s at most) until the daemon says it is running; throws with its output if it exits first. */
export async function waitRunning(d: DaemonProc): Promise<void> {
  await waitFor('the daemon to be running', () => {
    if (d.child.exitCode !== null) throw new Error(`the daemon exited: ${d.log()}`);
    return /flightbox is running/.test(d.log());
  }, 30_000);
}

/** startDaemon, then waitRunning; a daemon that never says it is running is killed. */
export async function runningDaemon(store: TempStore, args: string[] = []): Promise<DaemonProc> {
  const d = startDaemon(store, args);
  try {
    await waitRunning(d);
  } catch (err) {
    if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
    throw err;
  }
  return d;
}

/** SIGTERM the daemon unless it has already exited, and wait for it to exit. */
export async function stopDaemon(d: DaemonProc | undefined): Promise<void> {
  if (d && d.child.exitCode === null) {
    d.child.kill('SIGTERM');
    await d.exited;
  }
}

/** Set install.sysctlDropIn to null in the store's config: a daemon run from it writes no sysctl file. */
export function noSysctlDropIn(store: TempStore): void {
  writeFileSync(store.configPath, readFileSync(store.configPath, 'utf8').replace(/sysctlDropIn: .*/, 'sysctlDropIn: null'));
}
