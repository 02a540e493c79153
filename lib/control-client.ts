// Client side of the daemon's control socket: one request per connection, one JSON line
// each way, a hard timeout. Used by the crash handler (freeze, snapshot-into) and the CLI
// (snapshot, status). The socket lives in the root-only store, so only root can talk to it.
import { connect } from 'node:net';
import { FlightboxError, errnoCode, messageOf } from './errors.js';

export const MAX_CONTROL_MESSAGE_BYTES = 1024 * 1024;

export type ControlRequest =
  | { op: 'ping' }
  | { op: 'status' }
  | { op: 'freeze'; reason: string }
  | { op: 'thaw'; reason: string }
  | {
    op: 'snapshot-into'; dir: string; reason: string; thaw: boolean;
    /** the crash whose early freeze (FIFO) this claims */
    id?: string;
    /** the launcher's entry whose early freeze (its `spool` line on the FIFO) this claims instead */
    entry?: string;
  }
  | { op: 'snapshot'; reason: string }
  | { op: 'trigger'; rule: string }
  | { op: 'crash'; id: string };

export type ControlResponse = { ok: true; [key: string]: unknown } | { ok: false; error: string };

export function controlRequest(socket: string, req: ControlRequest, timeoutMs: number): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const conn = connect(socket);
    let buf = '';
    let done = false;
    const finish = (err: Error | null, res?: ControlResponse) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const timer = setTimeout(
      () => finish(new FlightboxError('DAEMON_UNAVAILABLE', `the daemon did not answer ${req.op} within ${timeoutMs} ms (${socket})`)),
      timeoutMs,
    );
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_CONTROL_MESSAGE_BYTES) return finish(new FlightboxError('INTERNAL', 'the daemon sent an oversized answer'));
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      try {
        finish(null, JSON.parse(buf.slice(0, nl)) as ControlResponse);
      } catch (err) {
        finish(new FlightboxError('INTERNAL', `the daemon sent an unreadable answer: ${messageOf(err)}`));
      }
    });
    conn.on('error', (err) => {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') {
        finish(new FlightboxError('DAEMON_UNAVAILABLE', `the flightbox daemon is not running (no one listens on ${socket})`));
      } else if (code === 'EACCES') {
        finish(new FlightboxError('PERMISSION', `cannot reach the daemon at ${socket}: permission denied (run as root)`));
      } else finish(err);
    });
    conn.on('end', () => finish(new FlightboxError('INTERNAL', `the daemon closed the connection without answering ${req.op}`)));
  });
}
