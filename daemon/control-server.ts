// The daemon's control socket: a Unix socket in the root-only store, one JSON request
// per connection, one JSON answer. Requests are validated here; the work is done by the
// handlers the daemon passes in.
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { controlRequest, MAX_CONTROL_MESSAGE_BYTES, type ControlRequest, type ControlResponse } from '../lib/control-client.js';
import { FlightboxError, messageOf } from '../lib/errors.js';
import type { Logger } from '../lib/log.js';
import { isBundleId } from '../store/bundle-id.js';
import { SPOOL_ENTRY_RE } from '../handler/run-dir.js';

export const CONTROL_REQUEST_TIMEOUT_MS = 60_000;

export type ControlHandler = (req: ControlRequest) => Promise<Record<string, unknown>>;

const OPS = new Set(['ping', 'status', 'freeze', 'thaw', 'snapshot-into', 'snapshot', 'trigger', 'crash']);

/** Validate the shape of a request from the socket (root-only, but still parse defensively). */
export function parseControlRequest(line: string): ControlRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error('request is not JSON');
  }
  if (typeof v !== 'object' || v === null || typeof (v as { op?: unknown }).op !== 'string' || !OPS.has((v as { op: string }).op)) {
    throw new Error('unknown op');
  }
  const r = v as Record<string, unknown>;
  const str = (k: string, max = 4096) => {
    if (typeof r[k] !== 'string' || (r[k] as string).length > max) throw new Error(`${k} must be a string of at most ${max} characters`);
    return r[k] as string;
  };
  switch (r.op) {
    case 'ping': return { op: 'ping' };
    case 'status': return { op: 'status' };
    case 'freeze': return { op: 'freeze', reason: str('reason') };
    case 'thaw': return { op: 'thaw', reason: str('reason') };
    case 'snapshot': return { op: 'snapshot', reason: str('reason') };
    case 'trigger': return { op: 'trigger', rule: str('rule', 64) };
    case 'crash': return { op: 'crash', id: str('id', 64) };
    case 'snapshot-into': {
      if (typeof r.thaw !== 'boolean') throw new Error('thaw must be true or false');
      if (r.id === undefined) return { op: 'snapshot-into', dir: str('dir'), reason: str('reason'), thaw: r.thaw };
      if (!isBundleId(str('id', 64))) throw new Error('id must be an event id');
      if (r.entry === undefined) return { op: 'snapshot-into', dir: str('dir'), reason: str('reason'), thaw: r.thaw, id: r.id as string };
      if (!SPOOL_ENTRY_RE.test(str('entry', 64))) throw new Error('entry must be a launcher\'s entry name');
      return { op: 'snapshot-into', dir: str('dir'), reason: str('reason'), thaw: r.thaw, id: r.id as string, entry: r.entry as string };
    }
  }
  throw new Error('unknown op');
}

export class ControlServer {
  #server: Server | null = null;
  readonly #path: string;
  readonly #handler: ControlHandler;
  readonly #log: Logger;

  constructor(path: string, handler: ControlHandler, log: Logger) {
    this.#path = path;
    this.#handler = handler;
    this.#log = log;
  }

  /** Listen; refuses when another daemon answers on the socket, removes a stale one. */
  async listen(): Promise<void> {
    if (existsSync(this.#path)) {
      const alive = await controlRequest(this.#path, { op: 'ping' }, 1000).then(() => true, () => false);
      if (alive) throw new FlightboxError('USAGE', `another flightbox daemon is running (it answers on ${this.#path})`);
      unlinkSync(this.#path);
    }
    const server = createServer((sock) => this.#serve(sock));
    const oldMask = process.umask(0o077);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.#path, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(this.#path, 0o600);
    this.#server = server;
  }

  #serve(sock: Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(CONTROL_REQUEST_TIMEOUT_MS, () => sock.destroy());
    const answer = (res: ControlResponse) => {
      if (!sock.destroyed) sock.end(`${JSON.stringify(res)}\n`);
    };
    sock.on('data', (d: string) => {
      if (buf.includes('\n')) return; // one request per connection
      buf += d;
      if (buf.length > MAX_CONTROL_MESSAGE_BYTES) {
        answer({ ok: false, error: 'request too large' });
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: ControlRequest;
      try {
        req = parseControlRequest(buf.slice(0, nl));
      } catch (err) {
        answer({ ok: false, error: messageOf(err) });
        return;
      }
      this.#handler(req).then(
        (res) => answer({ ok: true, ...res }),
        (err: unknown) => {
          this.#log.warn({ op: req.op }, 'Control request failed: %s', messageOf(err));
          answer({ ok: false, error: messageOf(err) });
        },
      );
    });
    sock.on('error', () => sock.destroy());
  }

  async close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (!s) return;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    try {
      unlinkSync(this.#path);
    } catch {
      // already gone
    }
  }
}
