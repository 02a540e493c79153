// Reading trace text a line at a time from a file or a helper program's output, with every
// resource bounded: line length, bytes read, time, the helper's stderr. What goes wrong
// becomes a warning sentence; nothing here throws on bad input.
import { spawn } from 'node:child_process';
import { closeSync, constants, createReadStream, fstatSync, openSync } from 'node:fs';
import { messageOf } from '../lib/errors.js';

/** A longer line is not trace text; it is skipped (and counted). */
export const MAX_LINE_BYTES = 64 * 1024;
/** A file or an output longer than this is read up to here only. */
export const DEFAULT_MAX_INPUT_BYTES = 1024 * 1024 * 1024;
/** A helper (trace-cmd report, babeltrace2) is killed after this long. */
export const DEFAULT_TOOL_TIMEOUT_MS = 120_000;
const STDERR_MAX_BYTES = 16 * 1024;
const READ_CHUNK_BYTES = 1024 * 1024;

/** Splits bytes into lines (UTF-8, without the newline), never holding more than MAX_LINE_BYTES. */
export class LineSplitter {
  readonly #onLine: (line: string) => void;
  #parts: Buffer[] = [];
  #partBytes = 0;
  #skipping = false;
  tooLong = 0;
  bytes = 0;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  write(chunk: Buffer): void {
    this.bytes += chunk.length;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      if (this.#skipping) this.#skipping = false;
      else if (this.#partBytes + nl - start > MAX_LINE_BYTES) this.tooLong++;
      else if (this.#partBytes === 0) this.#onLine(chunk.toString('utf8', start, nl));
      else {
        this.#parts.push(chunk.subarray(start, nl));
        this.#onLine(Buffer.concat(this.#parts).toString('utf8'));
      }
      this.#parts = [];
      this.#partBytes = 0;
      start = nl + 1;
    }
    if (start >= chunk.length || this.#skipping) return;
    const rest = chunk.length - start;
    if (this.#partBytes + rest > MAX_LINE_BYTES) {
      this.tooLong++;
      this.#skipping = true;
      this.#parts = [];
      this.#partBytes = 0;
      return;
    }
    // A copy: the caller may reuse its buffer.
    this.#parts.push(Buffer.from(chunk.subarray(start)));
    this.#partBytes += rest;
  }

  /** Returns true when the input ended in the middle of a line (a cut file), which is still passed on. */
  end(): boolean {
    const partial = this.#partBytes > 0;
    if (partial) this.#onLine(Buffer.concat(this.#parts).toString('utf8'));
    this.#parts = [];
    this.#partBytes = 0;
    return partial;
  }
}

export interface StreamOutcome {
  warnings: string[];
  bytes: number;
  /** the input was cut (limit, timeout, a helper's failure): what was read is still used */
  incomplete: boolean;
}

function tailWarnings(what: string, split: LineSplitter, partial: boolean, warnings: string[]): void {
  if (split.tooLong > 0) warnings.push(`${what}: ${split.tooLong} line${split.tooLong === 1 ? '' : 's'} longer than ${MAX_LINE_BYTES} bytes skipped`);
  if (partial) warnings.push(`${what} ends in the middle of a line (cut short?)`);
}

/** Every line of a regular file (opened without following a symlink), up to maxBytes. */
/**
 * `pace`, called after each chunk, may return a promise: reading waits for it (a consumer
 * writing to a slow pipe keeps memory bounded that way).
 */
export type Pace = () => Promise<void> | null;

export async function streamFileLines(path: string, onLine: (line: string) => void, opts: { maxBytes?: number; label?: string; pace?: Pace } = {}): Promise<StreamOutcome> {
  const label = opts.label ?? path;
  const max = opts.maxBytes ?? DEFAULT_MAX_INPUT_BYTES;
  const warnings: string[] = [];
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    return { warnings: [`cannot open ${label}: ${messageOf(err)}`], bytes: 0, incomplete: true };
  }
  try {
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      return { warnings: [`${label} is not a regular file`], bytes: 0, incomplete: true };
    }
  } catch (err) {
    closeSync(fd);
    return { warnings: [`cannot read ${label}: ${messageOf(err)}`], bytes: 0, incomplete: true };
  }
  const split = new LineSplitter(onLine);
  let incomplete = false;
  // The stream owns the descriptor from here and closes it.
  const stream = createReadStream('', { fd, highWaterMark: READ_CHUNK_BYTES, end: max - 1 });
  try {
    for await (const chunk of stream) {
      split.write(chunk as Buffer);
      const wait = opts.pace?.();
      if (wait) await wait;
    }
  } catch (err) {
    warnings.push(`reading ${label} failed after ${split.bytes} bytes: ${messageOf(err)}`);
    incomplete = true;
  }
  if (split.bytes >= max) {
    warnings.push(`${label} is larger than ${max} bytes: only its first ${max} bytes were read`);
    incomplete = true;
  }
  tailWarnings(label, split, split.end(), warnings);
  return { warnings, bytes: split.bytes, incomplete };
}

/**
 * Every line a helper program writes to stdout. No shell: an argument array and a fixed
 * PATH. Killed (its whole process group) at the timeout or past maxBytes; a failure is a
 * warning quoting the end of its stderr.
 */
export function streamCommandLines(
  program: string,
  args: readonly string[],
  onLine: (line: string) => void,
  opts: { timeoutMs?: number; maxBytes?: number; label?: string; onStderrLine?: (line: string) => void; pace?: Pace } = {},
): Promise<StreamOutcome> {
  const label = opts.label ?? program;
  const max = opts.maxBytes ?? DEFAULT_MAX_INPUT_BYTES;
  const warnings: string[] = [];
  return new Promise((resolve) => {
    const child = spawn(program, [...args], {
      stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
    });
    const split = new LineSplitter(onLine);
    const errSplit = new LineSplitter((l) => opts.onStderrLine?.(l));
    let stderr = '';
    let killedFor: string | null = null;
    const kill = (why: string) => {
      if (killedFor !== null) return;
      killedFor = why;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    // Infinity: no limit (a reader paging through the output takes as long as it takes).
    const limitMs = opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
    const timer = Number.isFinite(limitMs) ? setTimeout(() => kill(`stopped after ${Math.round(limitMs / 1000)} s`), limitMs) : null;
    child.stdout.on('data', (b: Buffer) => {
      if (killedFor !== null) return;
      split.write(b);
      if (split.bytes >= max) kill(`output larger than ${max} bytes`);
      const wait = opts.pace?.();
      if (wait) {
        child.stdout.pause();
        void wait.then(() => child.stdout.resume());
      }
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < STDERR_MAX_BYTES) stderr += b.toString('utf8').slice(0, STDERR_MAX_BYTES - stderr.length);
      errSplit.write(b);
    });
    let done = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      errSplit.end();
      if (spawnError) warnings.push(`cannot run ${program}: ${spawnError.message}`);
      else if (killedFor !== null) warnings.push(`${label}: ${killedFor}; the events read until then are used`);
      else if (code !== 0) {
        const why = stderr.trim().split('\n').slice(-2).join(' ').slice(0, 300) || 'no message';
        warnings.push(`${label} failed (${code === null ? `signal ${signal}` : `exit status ${code}`}): ${why}`);
      }
      tailWarnings(label, split, split.end(), warnings);
      resolve({ warnings, bytes: split.bytes, incomplete: spawnError !== undefined || killedFor !== null || code !== 0 });
    };
    child.on('error', (err) => finish(null, null, err));
    child.on('close', (code, signal) => finish(code, signal));
  });
}
