// flightbox trigger NAME: fire a rule through the daemon, as if its condition had matched.
import { socketPath } from '../../lib/config.js';
import { controlRequest } from '../../lib/control-client.js';
import { FlightboxError } from '../../lib/errors.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<{ json?: boolean }>(args);
  const rule = positional[0] ?? '';
  const { config } = loadCliConfig(opts);
  const r = await controlRequest(socketPath(config), { op: 'trigger', rule }, config.daemon.snapshotDeadlineMs + 60_000);
  if (!r.ok) {
    const code = /^no rule named/.test(r.error) ? 'NOT_FOUND' : /suppressed/.test(r.error) ? 'RATE_LIMITED' : 'INTERNAL';
    throw new FlightboxError(code, r.error);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ rule, id: r.id ?? null }, null, 2)}\n`);
  else process.stdout.write(`${String(r.id ?? `rule ${rule} fired`)}\n`);
  return 0;
}
