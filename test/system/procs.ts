// Helpers for system tests that feed the handler as the kernel feeds it, without touching
// /proc/sys/kernel/core_pattern: live fixture processes (started here and tracked so that
// a test's cleanup can kill them), their cores from gdb's gcore, the handler spawned with
// the kernel's arguments and the core on its stdin; and checks of the CLI's failures.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { FIXTURES, HANDLER, waitFor, type RunResult } from '../helpers.js';

export const RLIM_INFINITY = '18446744073709551615';

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

// ---------------------------------------------------------------------------------------
// Live fixture processes.

export type LiveProcess = ChildProcess & { pid: number };

/** Children started by this test file and not yet stopped: stopAll() kills them. */
const children = new Set<ChildProcess>();

/** Track a child so that stopAll() kills it (startProcess tracks its own). */
export function trackChild(child: ChildProcess): void {
  children.add(child);
}

/** Stop tracking a child (it has exited, or the test has dealt with it). */
export function untrackChild(child: ChildProcess): void {
  children.delete(child);
}

/**
 * Compile test/fixtures/waiter.c (-g -O0) into `dir` as `fbxwaiter`, a name of this test's
 * own, and return its path. The program names itself (prctl) from its first argument and
 * waits forever in a known function.
 */
export function compileWaiter(dir: string): string {
  const src = join(dir, 'waiter.c');
  writeFileSync(src, readFileSync(join(FIXTURES, 'waiter.c')));
  const bin = join(dir, 'fbxwaiter');
  const cc = spawnSync('gcc', ['-g', '-O0', '-o', bin, src], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
  return bin;
}

/**
 * Start `bin args...` (tracked) and wait until it has exec'd, named itself `expectComm`
 * (compared byte for byte) and is asleep.
 */
export async function startProcess(bin: string, args: string[], expectComm: string, opts: { env?: NodeJS.ProcessEnv; uid?: number; gid?: number } = {}): Promise<LiveProcess> {
  const child = spawn(bin, args, { stdio: 'ignore', env: opts.env, uid: opts.uid, gid: opts.gid });
  children.add(child);
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot start ${bin}`);
  await waitFor(`${JSON.stringify(bin)} to be asleep as ${JSON.stringify(expectComm)}`, () => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      return readlinkSync(`/proc/${pid}/exe`) === bin && readFileSync(`/proc/${pid}/comm`, 'latin1') === `${expectComm}\n` &&
        stat.slice(stat.lastIndexOf(')') + 2).startsWith('S');
    } catch {
      return false;
    }
  }, 10_000, 10);
  return child as LiveProcess;
}

/** SIGKILL a child unless it has already gone, and stop tracking it. */
export function stopProcess(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.delete(child);
}

/** Stop every tracked child (for afterEach/afterAll). */
export function stopAll(): void {
  for (const c of [...children]) stopProcess(c);
}

/** How a child ended, and what it wrote (empty where its stdout or stderr was not a pipe). */
export interface ChildRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Wait until a child has closed, collecting what it writes on its piped stdout and stderr. */
export function collectOutput(child: ChildProcess): Promise<ChildRun> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** gcore a live process; returns the core's path, `${prefix}.${pid}`. */
export function gcore(pid: number, prefix: string): string {
  const r = spawnSync('gcore', ['-o', prefix, String(pid)], { encoding: 'utf8', timeout: 60_000 });
  const out = `${prefix}.${pid}`;
  if (r.status !== 0 || !existsSync(out)) throw new Error(`gcore failed: ${r.stderr}`);
  return out;
}

// ---------------------------------------------------------------------------------------
// Driving the handler as the kernel does.

export interface KArgs {
  pid: number;
  uid?: number;
  gid?: number;
  signal?: number;
  time?: number;
  rlimit?: string;
  host?: string;
}

/** %P %i %I %u %g %s %t %c %h %d (%F omitted, as on kernels before 6.16). */
export function kernelArgs(a: KArgs): string[] {
  return [
    String(a.pid), String(a.pid), String(a.pid), String(a.uid ?? 0), String(a.gid ?? 0), String(a.signal ?? 11),
    String(a.time ?? Math.floor(Date.now() / 1000)), a.rlimit ?? RLIM_INFINITY, a.host ?? 'fbx-testhost', '1',
  ];
}

/** The handler with a file (or /dev/null) as its stdin, stdout and stderr ignored. */
export function runHandler(configPath: string, args: string[], stdinFile: string | null): Promise<ChildRun> {
  const fd = openSync(stdinFile ?? '/dev/null', 'r');
  try {
    return collectOutput(spawn(process.execPath, [HANDLER, '--config', configPath, '--', ...args], { stdio: [fd, 'ignore', 'ignore'] }));
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------
// The CLI's failures.

/** A failure: the exit status, exactly one "flightbox: ..." line on stderr, no stack, nothing on stdout. */
export function expectOneSentence(r: RunResult, code: number | 'non-zero', mentions?: RegExp): void {
  if (code === 'non-zero') {
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code, r.stderr).not.toBeNull();
  } else {
    expect(r.code, r.stderr).toBe(code);
  }
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  expect(lines, `stderr: ${JSON.stringify(r.stderr)}`).toHaveLength(1);
  expect(lines[0]).toMatch(/^flightbox: \S/);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toMatch(/internal error/i);
  expect(r.stdout).toBe('');
  if (mentions) expect(lines[0]).toMatch(mentions);
}
