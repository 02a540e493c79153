// Reads the kernel log from /dev/kmsg for the kmsg triggers: only records that arrive after
// start(), one record per read(), the message unescaped. A character device cannot be
// watched (inotify says nothing about it), so a timer reads until EAGAIN on every tick.
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { FlightboxError, errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';

export const DEFAULT_KMSG_PATH = '/dev/kmsg';
export const DEFAULT_KMSG_POLL_INTERVAL_MS = 200;
/**
 * One read() returns one whole record or fails with EINVAL if the buffer is too small; the
 * kernel formats at most CONSOLE_EXT_LOG_MAX (8 KiB) per record. Twice that, to be safe.
 */
const KMSG_READ_BUFFER_BYTES = 16 * 1024;
/** Records read per tick before yielding to the event loop (and coming back at once). */
const MAX_RECORDS_PER_TICK = 4096;
/** A log_buf of 32 MiB holds ~500 000 short records; a storm must not keep start() forever. */
const MAX_RECORDS_DISCARDED_AT_START = 2_000_000;

export interface KmsgRecord {
  /** syslog severity, PRI & 7 (0 emerg … 7 debug) */
  priority: number;
  /** syslog facility, PRI >> 3 (0 kernel, 1 user: what userspace writes to /dev/kmsg) */
  facility: number;
  /** the kernel's record sequence number: consecutive unless records were lost */
  seq: number;
  /** the kernel's timestamp: µs since boot (local_clock, close to CLOCK_MONOTONIC) */
  timestampUs: number;
}

export interface ParsedKmsgRecord extends KmsgRecord {
  message: string;
}

/**
 * "PRI,SEQ,TIMESTAMP_US,FLAGS[,more…];MESSAGE\n" then optional " KEY=value\n" dictionary
 * lines, which are dropped. Null for anything else.
 */
export function parseKmsgRecord(text: string): ParsedKmsgRecord | null {
  const semi = text.indexOf(';');
  if (semi === -1) return null;
  const [pri, seq, ts] = text.slice(0, semi).split(',');
  if (pri === undefined || seq === undefined || ts === undefined) return null;
  if (!/^\d+$/.test(pri) || !/^\d+$/.test(seq) || !/^\d+$/.test(ts)) return null;
  const nl = text.indexOf('\n', semi + 1);
  const raw = nl === -1 ? text.slice(semi + 1) : text.slice(semi + 1, nl);
  const p = Number(pri);
  return { priority: p & 7, facility: p >> 3, seq: Number(seq), timestampUs: Number(ts), message: unescapeKmsg(raw) };
}

/**
 * The kernel writes every byte below 0x20, from 0x7f up, and the backslash itself as
 * "\xNN" (printk.c, msg_add_ext_text), so the escaping is unambiguous and reversible. We
 * reverse it: bytes back, then UTF-8 with U+FFFD for invalid sequences — the same text a
 * log file's tail gives, so one rule matches both ("Out of memory: Killed process 1234
 * (foo)", a device name in UTF-8, a path with a backslash). Control characters stay raw in
 * the result: escaping belongs where text leaves us (lib/log, mail), as for log lines.
 */
export function unescapeKmsg(s: string): string {
  if (!s.includes('\\')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c && s[i + 1] === 'x' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      bytes.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else {
      // The record is ASCII after escaping; anything else is kept as its low byte.
      bytes.push(c & 0xff);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

export interface KmsgSourceOptions {
  path?: string;
  log?: Logger;
  /** ms between reads */
  pollIntervalMs?: number;
  /** the `t` reported with each record, ms since the epoch */
  now?: () => number;
}

/**
 * Reports each kernel log record written after start() once. `t` is when we read it (at
 * most one poll interval late): the record's own timestamp is on the kernel's clock since
 * boot, and converting it to wall time would be an estimate; it is in `rec.timestampUs`.
 */
export class KmsgSource {
  readonly #onLine: (line: string, t: number, rec: KmsgRecord) => void;
  readonly #opts: { readonly path: string; readonly log: Logger | null; readonly pollIntervalMs: number; readonly now: () => number };
  readonly #buf = Buffer.allocUnsafe(KMSG_READ_BUFFER_BYTES);
  #fd: number | null = null;
  #timer: NodeJS.Timeout | null = null;
  #immediate: NodeJS.Immediate | null = null;
  #started = false;
  #closed = false;
  #lastSeq: number | null = null;
  /** EPIPE seen and not yet reported: the next record tells how many were lost */
  #lost = false;
  #problem: string | null = null;

  constructor(onLine: (line: string, t: number, rec: KmsgRecord) => void, opts: KmsgSourceOptions = {}) {
    this.#onLine = onLine;
    const interval = opts.pollIntervalMs ?? DEFAULT_KMSG_POLL_INTERVAL_MS;
    if (!Number.isFinite(interval) || interval <= 0) {
      throw new RangeError(`KmsgSource: pollIntervalMs must be a positive number, got ${interval}`);
    }
    this.#opts = Object.freeze({
      path: opts.path ?? DEFAULT_KMSG_PATH,
      log: opts.log ?? null,
      pollIntervalMs: interval,
      now: opts.now ?? Date.now,
    });
  }

  /**
   * Opens the kernel log and skips what it already holds. Rejects with PERMISSION (not
   * root, or dmesg_restrict) or INTERNAL (no /dev/kmsg, e.g. in a container).
   */
  async start(): Promise<void> {
    if (this.#closed) throw new Error('KmsgSource is closed');
    if (this.#started) return;
    this.#started = true;
    const path = this.#opts.path;
    try {
      // O_NONBLOCK: a read with no record fails with EAGAIN instead of waiting for one.
      this.#fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (err) {
      const code = errnoCode(err);
      this.#started = false;
      throw new FlightboxError(code === 'EACCES' || code === 'EPERM' ? 'PERMISSION' : 'INTERNAL',
        `cannot read the kernel log ${path}: ${messageOf(err)}`, { cause: err });
    }
    // A new reader starts at the oldest record still in the buffer: read and drop them
    // all, so that only what comes after start() is reported. (Node has no lseek(SEEK_END).)
    try {
      for (let n = 0; n < MAX_RECORDS_DISCARDED_AT_START; n++) {
        const r = this.#readOne();
        if (r === 'again') break;
        if (r === 'lost') continue;
        const rec = parseKmsgRecord(r);
        if (rec) this.#lastSeq = rec.seq;
      }
    } catch (err) {
      const fd = this.#fd;
      this.#fd = null;
      if (fd !== null) closeSync(fd);
      this.#started = false;
      throw new FlightboxError('INTERNAL', `cannot read the kernel log ${path}: ${messageOf(err)}`, { cause: err });
    }
    this.#lost = false;
    this.#timer = setInterval(() => this.#tick(), this.#opts.pollIntervalMs);
    // The daemon keeps itself alive; the kernel log alone should not (nor in tests).
    this.#timer.unref();
  }

  /** Stops reading; no callback after this is called. Safe twice. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#immediate = null;
    const fd = this.#fd;
    this.#fd = null;
    if (fd !== null) closeSync(fd);
  }

  #tick(): void {
    this.#immediate = null;
    if (this.#closed) return;
    for (let n = 0; n < MAX_RECORDS_PER_TICK; n++) {
      let r: string | 'again' | 'lost';
      try {
        r = this.#readOne();
      } catch (err) {
        this.#report(`read:${errnoCode(err) ?? 'error'}`, 'Failed to read %s, will retry: %s', this.#opts.path, messageOf(err));
        return;
      }
      if (r === 'again' || this.#closed) return;
      if (r === 'lost') {
        this.#lost = true;
        continue;
      }
      this.#handle(r);
    }
    // More records than one tick may take: the rest after the event loop had its turn.
    this.#immediate = setImmediate(() => this.#tick());
  }

  /** One record as text, 'again' when there is none, 'lost' when the reader was overrun. */
  #readOne(): string | 'again' | 'lost' {
    const fd = this.#fd;
    if (fd === null) return 'again';
    for (;;) {
      try {
        // position null: read(2), not pread(2), which /dev/kmsg refuses.
        const n = readSync(fd, this.#buf, 0, this.#buf.length, null);
        if (n === 0) return 'again';
        // latin1: every byte is one char; the kernel escaped everything non-ASCII.
        return this.#buf.toString('latin1', 0, n);
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'EAGAIN') return 'again';
        // The records we were about to read were overwritten; the next read returns the
        // oldest one still there.
        if (code === 'EPIPE') return 'lost';
        if (code === 'EINTR') continue;
        throw err;
      }
    }
  }

  #handle(text: string): void {
    const rec = parseKmsgRecord(text);
    if (!rec) {
      this.#report('parse', 'Unexpected record in %s, ignoring: %s', this.#opts.path, text.slice(0, 200));
      return;
    }
    if (this.#lost) {
      this.#lost = false;
      const lost = this.#lastSeq === null ? null : rec.seq - this.#lastSeq - 1;
      this.#opts.log?.warn({ path: this.#opts.path, lost, seq: rec.seq },
        'Kernel log records were overwritten before we could read them, ignoring');
    }
    this.#lastSeq = rec.seq;
    this.#problem = null;
    try {
      this.#onLine(rec.message, this.#opts.now(), {
        priority: rec.priority, facility: rec.facility, seq: rec.seq, timestampUs: rec.timestampUs,
      });
    } catch (err) {
      this.#opts.log?.error({ seq: rec.seq }, 'Kernel log line handler failed, ignoring: %s', messageOf(err));
    }
  }

  /** Logs a problem once while it lasts: the timer would repeat it five times a second. */
  #report(key: string, msg: string, ...args: unknown[]): void {
    if (this.#problem === key) return;
    this.#problem = key;
    this.#opts.log?.warn({ path: this.#opts.path }, msg, ...args);
  }
}
