// Helpers for tests that go through the real kernel core_pattern. Every such test saves
// the machine's core_pattern and core_pipe_limit first and restores them in a finally;
// the system project runs its files one at a time, so two never overlap.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

export const CORE_PATTERN = '/proc/sys/kernel/core_pattern';
export const CORE_PIPE_LIMIT = '/proc/sys/kernel/core_pipe_limit';

export interface KernelState {
  corePattern: string;
  corePipeLimit: string;
}

export function saveKernelState(): KernelState {
  return {
    corePattern: readFileSync(CORE_PATTERN, 'utf8').replace(/\n$/, ''),
    corePipeLimit: readFileSync(CORE_PIPE_LIMIT, 'utf8').replace(/\n$/, ''),
  };
}

export function restoreKernelState(s: KernelState): void {
  writeFileSync(CORE_PATTERN, `${s.corePattern}\n`);
  writeFileSync(CORE_PIPE_LIMIT, `${s.corePipeLimit}\n`);
}

export interface Crash {
  pid: number;
  signal: NodeJS.Signals | null;
  code: number | null;
}

/**
 * Run a program with an unlimited RLIMIT_CORE and wait for it to die. `killWith` sends a
 * signal after `killAfterMs` (for programs that do not crash by themselves).
 */
export function crash(program: string, args: string[] = [], opts: { killWith?: NodeJS.Signals; killAfterMs?: number } = {}): Promise<Crash> {
  return new Promise((resolve, reject) => {
    // exec keeps the pid: the shell only raises the limit and becomes the program.
    const child = spawn('/bin/sh', ['-c', 'ulimit -c unlimited && exec "$0" "$@"', program, ...args], { stdio: 'ignore' });
    const pid = child.pid;
    if (pid === undefined) return reject(new Error(`could not start ${program}`));
    let timer: NodeJS.Timeout | undefined;
    if (opts.killWith) timer = setTimeout(() => child.kill(opts.killWith), opts.killAfterMs ?? 300);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ pid, code, signal });
    });
  });
}
