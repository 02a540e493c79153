// Follows one log file for the log-line triggers, as `tail -F` does but without losing or
// repeating a line: from the end of the file, across rotation by rename (logrotate's
// default) and truncation in place (copytruncate). chokidar says "look now"; a periodic
// stat is the safety net, because inotify events can be coalesced, dropped or never come.
import { watch, type FSWatcher } from 'chokidar';
import { constants, type BigIntStats } from 'node:fs';
import { lstat, open, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';

export const DEFAULT_LOG_POLL_INTERVAL_MS = 1000;
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/**
 * How long a rotated-away file is still read after a new file appeared at the path: the
 * writer appends to the old file until it reopens (logrotate's postrotate HUP), and those
 * lines belong to us too. fluent-bit's rotate_wait has the same default.
 */
export const DEFAULT_ROTATE_WAIT_MS = 5000;
/** Read at most this much per wake-up, then yield to the event loop and come back. */
export const MAX_READ_BYTES_PER_WAKE = 4 * 1024 * 1024;
const READ_CHUNK_BYTES = 256 * 1024;
const WATCH_READY_TIMEOUT_MS = 2000;
/**
 * The last bytes before our offset, kept to notice a file that was truncated and refilled
 * past our offset between two looks (its size alone would not tell).
 */
const FINGERPRINT_BYTES = 64;
/** Appended to a line cut at maxLineBytes; the rest of that line is skipped. */
export const LINE_CUT_MARKER = '…[line cut]';

export interface LogTailOptions {
  log?: Logger;
  /** the stat safety net, ms */
  pollIntervalMs?: number;
  /** longer lines are cut here (bytes, before decoding) and reported once with LINE_CUT_MARKER */
  maxLineBytes?: number;
  /** how long a rotated-away file is still followed, ms */
  rotateWaitMs?: number;
  /** the `t` reported with each line, ms since the epoch */
  now?: () => number;
}

interface NormalizedOptions {
  readonly log: Logger | null;
  readonly pollIntervalMs: number;
  readonly maxLineBytes: number;
  readonly rotateWaitMs: number;
  readonly now: () => number;
}

type Emit = (line: string) => void;

/**
 * Bytes in, lines out. Keeps the partial line that has no newline yet; cuts lines longer
 * than `max` bytes (CR of a CRLF not counted) once, and then skips to the next newline.
 */
class LineSplitter {
  readonly #max: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #skipping = false;

  constructor(max: number) {
    this.#max = max;
  }

  push(buf: Buffer, emit: Emit): void {
    let start = 0;
    while (start < buf.length) {
      const nl = buf.indexOf(0x0a, start);
      if (this.#skipping) {
        if (nl === -1) return;
        this.#skipping = false;
        start = nl + 1;
        continue;
      }
      if (this.#pendingBytes === 0) {
        // NULs at the start of a line are not text: copytruncate with a writer that does not
        // use O_APPEND leaves a sparse run of them before the writer's next line.
        while (start < buf.length && buf[start] === 0) start++;
        if (start === buf.length) return;
      }
      if (nl === -1) {
        // Copy: the caller reuses its read buffer.
        const rest = Buffer.from(buf.subarray(start));
        this.#pending.push(rest);
        this.#pendingBytes += rest.length;
        // +1: the last byte may be the CR of a CRLF that is not counted.
        if (this.#pendingBytes > this.#max + 1) {
          emit(cutLine(Buffer.concat(this.#pending), this.#max));
          this.#clear();
          this.#skipping = true;
        }
        return;
      }
      const piece = buf.subarray(start, nl);
      const line = this.#pendingBytes > 0 ? Buffer.concat([...this.#pending, piece]) : piece;
      this.#clear();
      start = nl + 1;
      emit(decodeLine(line, this.#max));
    }
  }

  /** The partial line, if any, as a line: for a file we will never read again. */
  flush(emit: Emit): void {
    if (this.#pendingBytes > 0 && !this.#skipping) emit(decodeLine(Buffer.concat(this.#pending), this.#max));
    this.#clear();
    this.#skipping = false;
  }

  /** Start as if `buf` had been read but not reported: it is the start of the current line. */
  seed(buf: Buffer, skipping: boolean): void {
    this.#clear();
    this.#skipping = skipping;
    if (!skipping && buf.length > 0) {
      this.#pending.push(Buffer.from(buf));
      this.#pendingBytes = buf.length;
    }
  }

  #clear(): void {
    this.#pending = [];
    this.#pendingBytes = 0;
  }
}

function decodeLine(line: Buffer, max: number): string {
  const body = line.length > 0 && line[line.length - 1] === 0x0d ? line.subarray(0, line.length - 1) : line;
  // toString('utf8') replaces invalid sequences with U+FFFD.
  return body.length > max ? cutLine(body, max) : body.toString('utf8');
}

/** The first `max` bytes, backed up to a UTF-8 character boundary, plus the marker. */
function cutLine(line: Buffer, max: number): string {
  let end = Math.min(max, line.length);
  // A continuation byte (10xxxxxx) at `end` means a character straddles the cut.
  for (let i = 0; i < 3 && end > 0 && end < line.length && ((line[end] ?? 0) & 0xc0) === 0x80; i++) end--;
  return line.subarray(0, end).toString('utf8') + LINE_CUT_MARKER;
}

/** One open file we read from: the one at the path, or one rotated away from it. */
interface Followed {
  readonly fh: FileHandle;
  readonly dev: bigint;
  readonly ino: bigint;
  offset: number;
  /** up to FINGERPRINT_BYTES just before `offset` */
  fingerprint: Buffer;
  readonly splitter: LineSplitter;
  /** when a new file replaced it at the path (ms, our clock); null for the current file */
  retiredAt: number | null;
}

/**
 * Reports each line appended to `path` exactly once, with the time it was read.
 *
 * Symlinks: `path` comes from root's own configuration, and a log path that is a symlink
 * (e.g. /var/log/app.log → /srv/app/log/current) is followed for reading; its target's
 * identity is what rotation detection compares. Two guards, because the directory of a log
 * is often writable by the service that writes it, and we read as root:
 * - the target must be a regular file, checked before opening (a link to /dev/watchdog or a
 *   FIFO is never opened) and again on the opened fd;
 * - a symlink not owned by root is followed only to a file of its own owner, as the
 *   kernel's protected_symlinks does: a service cannot make us read /etc/shadow and feed
 *   its lines to rules, logs and mails.
 * Symlinks in the directories above the file are followed without checks.
 */
export class LogTail {
  readonly #path: string;
  readonly #onLine: (line: string, t: number) => void;
  readonly #opts: NormalizedOptions;
  readonly #buf = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  #current: Followed | null = null;
  #retired: Followed[] = [];
  #watcher: FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #immediate: NodeJS.Immediate | null = null;
  #running: Promise<void> | null = null;
  #dirty = false;
  #closed = false;
  #starting: Promise<void> | null = null;
  #closing: Promise<void> | null = null;
  /** the last problem logged, so that a lasting one is logged once and not every second */
  #problem: string | null = null;

  constructor(path: string, onLine: (line: string, t: number) => void, opts: LogTailOptions = {}) {
    this.#path = resolve(path);
    this.#onLine = onLine;
    this.#opts = Object.freeze({
      log: opts.log ?? null,
      pollIntervalMs: positive(opts.pollIntervalMs, DEFAULT_LOG_POLL_INTERVAL_MS, 'pollIntervalMs'),
      maxLineBytes: positive(opts.maxLineBytes, DEFAULT_MAX_LINE_BYTES, 'maxLineBytes'),
      rotateWaitMs: positive(opts.rotateWaitMs, DEFAULT_ROTATE_WAIT_MS, 'rotateWaitMs'),
      now: opts.now ?? Date.now,
    });
  }

  get path(): string {
    return this.#path;
  }

  /** Opens the file at its end (or waits for it to appear) and starts watching. */
  start(): Promise<void> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  /** Stops watching and closes every file; no callback after this is called. Safe twice. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #start(): Promise<void> {
    if (this.#closed) throw new Error(`LogTail for ${this.#path} is closed`);
    await this.#openAtEnd();
    if (this.#closed) return;

    const dir = dirname(this.#path);
    const base = basename(this.#path);
    // Watch the directory, not the file: the file may not exist yet, and after a rename the
    // name we care about gets a new inode. Everything in the directory but our name is
    // ignored, so a busy /var/log costs one inotify watch on the directory and one on the file.
    const watcher = watch(dir, {
      depth: 0,
      ignoreInitial: true,
      // The daemon's own handles keep it alive; a tail alone does not (and tests can exit).
      persistent: false,
      // atomic would ignore dot-files and merge unlink+add: we want every event raw.
      atomic: false,
      ignored: (p: string) => p !== dir && p !== this.#path,
    });
    this.#watcher = watcher;
    watcher.on('all', () => this.#wake());
    watcher.on('raw', (_event: string, name: string) => {
      if (name === base || name === this.#path) this.#wake();
    });
    watcher.on('error', (err: unknown) => this.#report(`watch:${errnoCode(err) ?? 'error'}`, 'warn',
      'Failed to watch %s, relying on polling: %s', dir, messageOf(err)));
    await new Promise<void>((res) => {
      // A directory that does not exist may never be "ready"; polling covers it.
      const timer = setTimeout(res, WATCH_READY_TIMEOUT_MS);
      watcher.once('ready', () => {
        clearTimeout(timer);
        res();
      });
    });
    if (this.#closed) return;
    this.#timer = setInterval(() => this.#wake(), this.#opts.pollIntervalMs);
    this.#timer.unref();
    this.#wake();
  }

  async #close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#immediate = null;
    await this.#starting?.catch(() => undefined);
    const watcher = this.#watcher;
    this.#watcher = null;
    await watcher?.close().catch(() => undefined);
    await this.#running;
    const files = [...this.#retired, ...(this.#current ? [this.#current] : [])];
    this.#retired = [];
    this.#current = null;
    await Promise.all(files.map((f) => f.fh.close().catch(() => undefined)));
  }

  /** Something may have changed: run a check, or another one after the running one. */
  #wake(): void {
    if (this.#closed) return;
    this.#dirty = true;
    if (this.#running) return;
    this.#running = this.#loop().finally(() => {
      this.#running = null;
    });
  }

  async #loop(): Promise<void> {
    while (this.#dirty && !this.#closed) {
      this.#dirty = false;
      let more = false;
      try {
        more = await this.#check();
      } catch (err) {
        this.#report(`check:${errnoCode(err) ?? 'error'}`, 'warn', 'Failed to read %s, will retry: %s', this.#path, messageOf(err));
      }
      if (more && !this.#closed) {
        // Budget spent: let timers and sockets run, then continue where we stopped.
        await new Promise<void>((res) => {
          this.#immediate = setImmediate(res);
        });
        this.#immediate = null;
        this.#dirty = true;
      }
    }
  }

  /**
   * One look, in this order: rotated-away files (their lines are older), the current file
   * (truncation first), then what is at the path now. Returns true if the read budget ran
   * out or the path changed, so that the loop comes back at once.
   */
  async #check(): Promise<boolean> {
    let budget = MAX_READ_BYTES_PER_WAKE;
    for (const f of [...this.#retired]) {
      const r = await this.#drain(f, budget);
      budget -= r.bytes;
      if (!r.eof || this.#closed) return !this.#closed;
      if (this.#opts.now() - (f.retiredAt ?? 0) >= this.#opts.rotateWaitMs) {
        f.splitter.flush((line) => this.#emit(line, this.#opts.now()));
        this.#retired = this.#retired.filter((x) => x !== f);
        await f.fh.close().catch(() => undefined);
      }
    }

    const cur = this.#current;
    if (cur) {
      const st = await cur.fh.stat({ bigint: true });
      if (await this.#wasTruncated(cur, Number(st.size))) {
        this.#opts.log?.info({ path: this.#path, offset: cur.offset, size: Number(st.size) },
          'Log file was truncated, reading it again from its start');
        cur.offset = 0;
        cur.fingerprint = Buffer.alloc(0);
        // The partial line, if any, is kept: copytruncate copies it away, and the writer
        // (O_APPEND) then writes the rest of that line at the start of the emptied file.
      }
      const r = await this.#drain(cur, budget);
      if (!r.eof || this.#closed) return !this.#closed;
    }

    let st: BigIntStats;
    try {
      st = await stat(this.#path, { bigint: true });
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      // Renamed away, the new file not there yet: keep reading the old one. Deleted (no
      // name left at all): it will not grow again; stop holding its disk space after the wait.
      if (cur && (await cur.fh.stat({ bigint: true })).nlink === 0n) this.#retire(cur);
      return false;
    }
    if (cur && st.dev === cur.dev && st.ino === cur.ino) {
      this.#problem = null;
      return false;
    }
    // A new file at the path: rotation, or the first file. Its lines come after everything
    // the old one held up to now; what the writer still appends there is read from #retired.
    const back = this.#retired.find((f) => f.dev === st.dev && f.ino === st.ino);
    if (back) {
      // Renamed back (or a symlink pointed back): resume it where we were, no repeats.
      this.#retired = this.#retired.filter((f) => f !== back);
      back.retiredAt = null;
      if (cur) this.#retire(cur);
      this.#current = back;
      return true;
    }
    const next = await this.#open(0);
    if (!next) return false;
    if (this.#closed) {
      await next.fh.close();
      return false;
    }
    if (cur) {
      this.#opts.log?.info({ path: this.#path }, 'Log file was rotated, following the new file');
      this.#retire(cur);
    }
    this.#current = next;
    return true;
  }

  #retire(f: Followed): void {
    if (this.#current === f) this.#current = null;
    f.retiredAt = this.#opts.now();
    this.#retired.push(f);
  }

  /** Reads from f.offset until EOF or `budget` bytes; reports complete lines. */
  async #drain(f: Followed, budget: number): Promise<{ bytes: number; eof: boolean }> {
    let total = 0;
    while (total < budget && !this.#closed) {
      const want = Math.min(READ_CHUNK_BYTES, budget - total);
      const { bytesRead } = await f.fh.read(this.#buf, 0, want, f.offset);
      if (bytesRead === 0) return { bytes: total, eof: true };
      if (this.#closed) break;
      f.offset += bytesRead;
      total += bytesRead;
      const chunk = this.#buf.subarray(0, bytesRead);
      f.fingerprint = bytesRead >= FINGERPRINT_BYTES
        ? Buffer.from(chunk.subarray(bytesRead - FINGERPRINT_BYTES))
        : Buffer.concat([f.fingerprint, chunk]).subarray(-FINGERPRINT_BYTES);
      const t = this.#opts.now();
      f.splitter.push(chunk, (line) => this.#emit(line, t));
    }
    return { bytes: total, eof: false };
  }

  /**
   * Smaller than our offset: truncated. Grown, but the bytes before our offset are not the
   * ones we read: truncated and written again past our offset before we looked.
   */
  async #wasTruncated(f: Followed, size: number): Promise<boolean> {
    if (size < f.offset) return true;
    if (size === f.offset || f.fingerprint.length === 0) return false;
    const n = f.fingerprint.length;
    const now = Buffer.alloc(n);
    const { bytesRead } = await f.fh.read(now, 0, n, f.offset - n);
    return bytesRead !== n || !now.equals(f.fingerprint);
  }

  /**
   * The file at the path when we start: existing lines are not reported. A last line
   * without its newline is kept pending and reported whole once its newline comes.
   */
  async #openAtEnd(): Promise<void> {
    const f = await this.#open(null);
    if (!f) return;
    const size = f.offset;
    const window = Math.min(size, this.#opts.maxLineBytes + 2);
    const tail = Buffer.alloc(window);
    const { bytesRead } = await f.fh.read(tail, 0, window, size - window);
    const got = tail.subarray(0, bytesRead);
    const nl = got.lastIndexOf(0x0a);
    if (nl !== -1) f.splitter.seed(got.subarray(nl + 1), false);
    else if (window === size) f.splitter.seed(got, false);
    // No newline in the last maxLineBytes: the line in progress is already too long to report.
    else f.splitter.seed(Buffer.alloc(0), true);
    f.fingerprint = Buffer.from(got.subarray(-FINGERPRINT_BYTES));
    this.#current = f;
  }

  /** Opens the path; offset null: at its end. Null if there is nothing (usable) to open. */
  async #open(offset: number | null): Promise<Followed | null> {
    // Look before opening: opening a device can have effects of its own (a watchdog arms,
    // a tape rewinds), so only a regular file is ever opened.
    let want: BigIntStats;
    try {
      const link = await lstat(this.#path, { bigint: true });
      want = link.isSymbolicLink() ? await stat(this.#path, { bigint: true }) : link;
      if (link.isSymbolicLink() && link.uid !== 0n && link.uid !== want.uid) {
        this.#report('symlink-owner', 'warn',
          'Log path %s is a symlink of uid %d to a file of uid %d, not following it', this.#path, link.uid, want.uid);
        return null;
      }
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      this.#report(`stat:${errnoCode(err) ?? 'error'}`, 'warn', 'Failed to stat %s, will retry: %s', this.#path, messageOf(err));
      return null;
    }
    if (!want.isFile()) {
      this.#report('not-a-file', 'warn', 'Log path %s is not a regular file, not reading it', this.#path);
      return null;
    }
    let fh: FileHandle;
    try {
      // O_NONBLOCK: should a FIFO be swapped in after our look, the open cannot hang.
      fh = await open(this.#path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      this.#report(`open:${errnoCode(err) ?? 'error'}`, 'warn', 'Failed to open %s, will retry: %s', this.#path, messageOf(err));
      return null;
    }
    try {
      const st = await fh.stat({ bigint: true });
      if (st.dev !== want.dev || st.ino !== want.ino) {
        // Replaced between the look and the open: what we checked is not what we opened.
        // The next wake-up looks again.
        await fh.close();
        return null;
      }
      this.#problem = null;
      return {
        fh,
        dev: st.dev,
        ino: st.ino,
        offset: offset ?? Number(st.size),
        fingerprint: Buffer.alloc(0),
        splitter: new LineSplitter(this.#opts.maxLineBytes),
        retiredAt: null,
      };
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  #emit(line: string, t: number): void {
    if (this.#closed) return;
    try {
      this.#onLine(line, t);
    } catch (err) {
      this.#opts.log?.error({ path: this.#path }, 'Log line handler failed, ignoring: %s', messageOf(err));
    }
  }

  /** Logs a problem once while it lasts (a missing permission would otherwise log every poll). */
  #report(key: string, level: 'info' | 'warn', msg: string, ...args: unknown[]): void {
    if (this.#problem === key) return;
    this.#problem = key;
    this.#opts.log?.[level]({ path: this.#path }, msg, ...args);
  }
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v <= 0) throw new RangeError(`LogTail: ${name} must be a positive number, got ${v}`);
  return v;
}
