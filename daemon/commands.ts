// Running the commands rules ask for: `collect` (output into the bundle) and `exec` (a hook
// with the event in its environment). Never through a shell: a command string is split on
// white space into argv, the program is found in the standard directories, and the event's
// (possibly hostile) fields reach the program only as environment variables.
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import { messageOf } from '../lib/errors.js';
import { findProgram, SEARCH_PATH } from '../lib/programs.js';
import { createExclusive, writeFileExclusive } from '../lib/safe-fs.js';

export const MAX_COLLECT_OUTPUT_BYTES = 16 * 1024 * 1024;
export const MAX_EXEC_OUTPUT_BYTES = 64 * 1024;
export const MAX_COLLECT_COMMANDS = 32;

export interface CommandResult {
  command: string;
  argv: string[];
  exitCode: number | null;
  signal: string | null;
  durationMs: number;
  outputBytes: number;
  truncated: boolean;
  timedOut: boolean;
  error: string | null;
}

export function splitCommand(command: string): string[] {
  return command.trim().split(/\s+/).filter(Boolean);
}

function resolveProgram(argv0: string): string | null {
  return argv0.startsWith('/') ? argv0 : argv0.includes('/') ? null : findProgram(argv0);
}

/**
 * Run argv with a timeout, passing output chunks to `sink` until `maxBytes`, after which
 * the process is killed and the result marked truncated.
 */
export function runBounded(
  argv: string[],
  opts: { timeoutMs: number; maxBytes: number; env?: Record<string, string>; sink: (chunk: Buffer) => void },
): Promise<CommandResult> {
  const t0 = Date.now();
  const command = argv.join(' ');
  const base = { command, argv, exitCode: null, signal: null, outputBytes: 0, truncated: false, timedOut: false, error: null };
  const program = argv[0] ? resolveProgram(argv[0]) : null;
  if (!program) {
    return Promise.resolve({ ...base, durationMs: 0, error: `${JSON.stringify(argv[0] ?? '')} not found in ${SEARCH_PATH.join(':')}` });
  }
  return new Promise((resolve) => {
    const child = spawn(program, argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: '/',
      env: { PATH: SEARCH_PATH.join(':'), LC_ALL: 'C', ...opts.env },
      detached: true, // its own process group, so a timeout kills what it started too
    });
    const r: CommandResult = { ...base, durationMs: 0 };
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => { r.timedOut = true; kill(); }, opts.timeoutMs);
    const onData = (d: Buffer) => {
      if (r.truncated) return;
      const room = opts.maxBytes - r.outputBytes;
      if (d.length > room) {
        if (room > 0) opts.sink(d.subarray(0, room));
        r.outputBytes += Math.max(0, room);
        r.truncated = true;
        kill();
        return;
      }
      r.outputBytes += d.length;
      opts.sink(d);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('error', (err) => { r.error = messageOf(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      r.exitCode = code;
      r.signal = signal;
      r.durationMs = Date.now() - t0;
      resolve(r);
    });
  });
}

/** `collect`: each command's output into dir/NN-<program>.txt, and dir/commands.json. */
export async function collectInto(dir: string, commands: readonly string[], timeoutMs: number): Promise<{ files: string[]; warnings: string[] }> {
  const files: string[] = [];
  const warnings: string[] = [];
  const results: CommandResult[] = [];
  for (const [i, command] of commands.slice(0, MAX_COLLECT_COMMANDS).entries()) {
    const argv = splitCommand(command);
    // The file name is ours: an index and the program's base name, reduced to safe characters.
    const name = `${String(i + 1).padStart(2, '0')}-${(argv[0] ?? 'command').split('/').pop()!.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40)}.txt`;
    const fd = createExclusive(dir, name, 0o600);
    let r: CommandResult;
    try {
      r = await runBounded(argv, { timeoutMs, maxBytes: MAX_COLLECT_OUTPUT_BYTES, sink: (d) => { writeSync(fd, d); } });
    } finally {
      closeSync(fd);
    }
    files.push(name);
    results.push(r);
    if (r.error) warnings.push(`collect ${JSON.stringify(command)}: ${r.error}`);
    else if (r.timedOut) warnings.push(`collect ${JSON.stringify(command)}: killed after ${timeoutMs} ms`);
    else if (r.truncated) warnings.push(`collect ${JSON.stringify(command)}: output cut at ${MAX_COLLECT_OUTPUT_BYTES} bytes`);
  }
  if (commands.length > MAX_COLLECT_COMMANDS) warnings.push(`collect: only the first ${MAX_COLLECT_COMMANDS} commands were run`);
  writeFileExclusive(dir, 'commands.json', `${JSON.stringify(results, null, 2)}\n`, 0o600);
  files.push('commands.json');
  return { files, warnings };
}

/** Environment variable names for labels: FLIGHTBOX_LABEL_<NAME>, NAME reduced to [A-Z0-9_]. */
export function eventEnv(e: { id: string; rule: string; reason: string; bundle: string; labels: Record<string, string> }): Record<string, string> {
  const env: Record<string, string> = {
    FLIGHTBOX_EVENT_ID: e.id,
    FLIGHTBOX_RULE: e.rule,
    FLIGHTBOX_REASON: e.reason,
    FLIGHTBOX_BUNDLE: e.bundle,
  };
  for (const [k, v] of Object.entries(e.labels)) {
    const key = `FLIGHTBOX_LABEL_${k.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`.slice(0, 128);
    env[key] = v.replace(/\0/g, '');
  }
  for (const k of Object.keys(env)) env[k] = env[k]!.replace(/\0/g, '');
  return env;
}
