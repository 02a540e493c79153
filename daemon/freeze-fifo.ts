// The crash handler's early freeze request: one line written to a FIFO beside the control
// socket (`<socket>.freeze`): `spool <entry>` from the launcher (handler/install.ts) once it
// has read the core or its first part, else `freeze <bundle id>` from node before it reads
// /proc and the core. A FIFO write is one system call where a socket request costs 7-15 ms
// of loading node:net and connecting, all of which would hold the crashed process. Nobody
// answers: the handler learns what happened when it asks for the snapshot, after the release
// (see EarlyFreezes). The FIFO is root's, mode 0600, in the same directory as the socket.
// `take <entry>` is the launcher offering a crash it read whole to the daemon (handler/install.ts
// handoff(), daemon/crash-taker.ts): a freeze for it as well.
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fstatSync, lstatSync, openSync, unlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { errnoCode, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { SPOOL_ENTRY_RE } from '../handler/run-dir.js';
import { isBundleId } from '../store/bundle-id.js';

/** A line longer than this is not a request: dropped. */
const MAX_LINE = 256;
/** How many early freezes (and snapshots that came without one) are remembered at most. */
export const MAX_EARLY_FREEZES = 1024;

export class FreezeFifo {
  readonly #path: string;
  readonly #onFreeze: (id: string) => void;
  readonly #onTake: (entry: string) => void;
  readonly #log: Logger;
  #stream: Socket | null = null;
  #badLines = 0;

  constructor(path: string, onFreeze: (id: string) => void, log: Logger, onTake: (entry: string) => void = () => {}) {
    this.#path = path;
    this.#onFreeze = onFreeze;
    this.#onTake = onTake;
    this.#log = log;
  }

  /** Make the FIFO afresh (whatever was at its path is removed) and start reading it. */
  open(): void {
    try {
      unlinkSync(this.#path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    const oldMask = process.umask(0o077);
    try {
      execFileSync('mkfifo', ['-m', '600', '--', this.#path], { stdio: ['ignore', 'ignore', 'pipe'] });
    } finally {
      process.umask(oldMask);
    }
    // Read and write: the daemon is always a writer itself, so the FIFO never reads as closed
    // when a handler closes its end, and handlers' opens never fail for want of a reader.
    const fd = openSync(this.#path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (!st.isFIFO() || st.uid !== (process.getuid?.() ?? st.uid)) {
      closeSync(fd);
      throw new Error(`${this.#path} is not the FIFO just made`);
    }
    const stream = new Socket({ fd, readable: true, writable: false });
    let buf = '';
    stream.setEncoding('latin1');
    stream.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.#line(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (buf.length > MAX_LINE) {
        this.#bad(buf.slice(0, 40));
        buf = '';
      }
    });
    stream.on('error', (err) => this.#log.warn({ fifo: this.#path }, 'Freeze FIFO failed, handlers will freeze late: %s', messageOf(err)));
    this.#stream = stream;
  }

  #line(line: string): void {
    const m = /^freeze (\S+)$/.exec(line);
    if (m && isBundleId(m[1]!)) return this.#onFreeze(m[1]!);
    // The launcher's line, sent once it has read the core (or its first part): its entry's
    // name stands for the crash until node has made the bundle id (earlyFreezeKey).
    // `take`: its offer of a crash it read whole, frozen the same way, then taken.
    const e = /^(spool|take) (\S+)$/.exec(line);
    if (e && SPOOL_ENTRY_RE.test(e[2]!)) {
      this.#onFreeze(earlyFreezeKey({ entry: e[2]! }));
      if (e[1] === 'take') this.#onTake(e[2]!);
      return;
    }
    this.#bad(line.slice(0, 40));
  }

  #bad(sample: string): void {
    // Root-only FIFO: a bad line is a bug or a stray write. Said once in a while, never fatal.
    if (this.#badLines++ % 100 === 0) this.#log.warn({ fifo: this.#path, count: this.#badLines }, 'Ignoring a malformed line on the freeze FIFO: %s', JSON.stringify(sample));
  }

  close(): void {
    this.#stream?.destroy();
    this.#stream = null;
    try {
      if (lstatSync(this.#path).isFIFO()) unlinkSync(this.#path);
    } catch {
      // already gone
    }
  }
}

/**
 * What an early freeze is held under: the launcher's entry when the launcher sent the line
 * (`spool <entry>`), else the bundle id node sent (`freeze <id>`). (Ids hold no space.)
 */
export function earlyFreezeKey(by: { id?: string; entry?: string }): string {
  return by.entry !== undefined ? `spool ${by.entry}` : by.id ?? '';
}

/**
 * Which crashes' early freezes the daemon holds. The FIFO line takes one freeze of the
 * recorders for its crash; the crash's snapshot-into, later on the socket, claims it and
 * thaws once. A snapshot that finds no early freeze (the line was lost or is still unread)
 * freezes for itself and remembers the id, so a line read afterwards takes nothing. Both
 * lists are bounded; a freeze whose handler died is dropped by the recorders' lease.
 */
export class EarlyFreezes {
  /** id → the lease generation its freeze was taken in */
  readonly #held = new Map<string, number>();
  readonly #late = new Set<string>();

  /**
   * A FIFO line for `id`: true when a freeze is to be taken for it now (the caller takes it
   * at once, in lease generation `generation`); false for a repeated or a late line.
   */
  arrive(id: string, generation: number): boolean {
    if (this.#late.delete(id) || this.#held.has(id)) return false;
    this.#held.set(id, generation);
    trim(this.#held);
    return true;
  }

  /**
   * The snapshot for `id`: true when its early freeze is held and still counted (the caller
   * now owns that freeze and thaws it); false when the snapshot must freeze for itself.
   */
  claim(id: string, generation: number): boolean {
    const g = this.#held.get(id);
    if (g !== undefined) {
      this.#held.delete(id);
      return g === generation;
    }
    this.#late.add(id);
    trim(this.#late);
    return false;
  }

  get size(): number {
    return this.#held.size + this.#late.size;
  }
}

function trim(m: Map<string, unknown> | Set<string>): void {
  while (m.size > MAX_EARLY_FREEZES) {
    const first = m.keys().next().value as string;
    m.delete(first);
  }
}
