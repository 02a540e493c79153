// Logging: a context object plus a sentence, appended to the store's log file, and one
// line to /dev/kmsg where the kernel log is the only place a crash handler can speak.
// Never writes to stdout/stderr unless asked to (the core_pattern handler has neither).
import { constants, openSync, closeSync, writeSync } from 'node:fs';
import { appendNoFollow } from './safe-fs.js';
import { format } from 'node:util';
import { escapeControl } from './escape.js';
import { messageOf } from './errors.js';

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(ctx: object, msg: string, ...args: unknown[]): void;
  info(ctx: object, msg: string, ...args: unknown[]): void;
  warn(ctx: object, msg: string, ...args: unknown[]): void;
  error(ctx: object, msg: string, ...args: unknown[]): void;
}

export interface LoggerOptions {
  /** Append to this file (created 0600); null: no file. */
  file: string | null;
  /** Also write to stderr (daemon in the foreground, CLI). */
  stderr?: boolean;
  component: string;
  now?: () => Date;
}

function line(level: Level, component: string, ctx: object, msg: string, args: unknown[], now: Date): string {
  const text = escapeControl(format(msg, ...args), 4096);
  const fields = Object.entries(ctx)
    .map(([k, v]) => `${k}=${escapeControl(typeof v === 'string' ? v : JSON.stringify(v) ?? 'undefined', 256)}`)
    .join(' ');
  return `${now.toISOString()} ${level} ${component}[${process.pid}]: ${text}${fields ? ` {${fields}}` : ''}\n`;
}

export function createLogger(opts: LoggerOptions): Logger {
  const now = opts.now ?? (() => new Date());
  let fileFailed = false;
  const emit = (level: Level, ctx: object, msg: string, args: unknown[]) => {
    const l = line(level, opts.component, ctx, msg, args, now());
    if (opts.file && !fileFailed) {
      try {
        appendNoFollow(opts.file, l);
      } catch (err) {
        // A log we cannot write must not stop a capture; say so once where root will look.
        fileFailed = true;
        kmsg(`cannot write the log ${opts.file}, logging to the kernel log only: ${messageOf(err)}`, 4);
      }
    }
    if (fileFailed && opts.file && (level === 'warn' || level === 'error')) kmsg(l.slice(l.indexOf(' ') + 1).trimEnd(), level === 'error' ? 3 : 4);
    if (opts.stderr) process.stderr.write(l);
  };
  return {
    debug: (c, m, ...a) => { if (process.env.FLIGHTBOX_DEBUG) emit('debug', c, m, a); },
    info: (c, m, ...a) => emit('info', c, m, a),
    warn: (c, m, ...a) => emit('warn', c, m, a),
    error: (c, m, ...a) => emit('error', c, m, a),
  };
}

/** One line to the kernel log, priority 5 (notice) unless told. Best effort. */
export function kmsg(message: string, priority = 5, path = '/dev/kmsg'): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
    writeSync(fd, `<${priority}>flightbox: ${escapeControl(message, 900)}\n`);
    return true;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
