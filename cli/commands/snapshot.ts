// flightbox snapshot: ask the daemon to freeze its recorders and save the recent past as a
// snapshot event (the seed's `lttng snapshot record`, for every recorder at once).
import { socketPath } from '../../lib/config.js';
import { controlRequest } from '../../lib/control-client.js';
import { FlightboxError } from '../../lib/errors.js';
import { escapeControl } from '../../lib/escape.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ reason?: string; json?: boolean }>(args);
  const { config } = loadCliConfig(opts);
  const reason = opts.reason ?? 'flightbox snapshot';
  if (reason.length > 1000) throw new FlightboxError('USAGE', '--reason: at most 1000 characters');
  const r = await controlRequest(socketPath(config), { op: 'snapshot', reason }, config.daemon.snapshotDeadlineMs + 5000);
  if (!r.ok) throw new FlightboxError('INTERNAL', `the daemon could not take the snapshot: ${r.error}`);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ id: r.id, bundle: r.bundle, warnings: r.warnings }, null, 2)}\n`);
    return 0;
  }
  process.stdout.write(`${String(r.id)}\n`);
  for (const w of (r.warnings as string[] | undefined) ?? []) process.stderr.write(`flightbox: warning: ${escapeControl(w, 1000)}\n`);
  return 0;
}
