// flightbox groups: crashes grouped by signature.
import { escapeControl } from '../../lib/escape.js';
import { invocation, filterFrom } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { formatTime, table } from '../format.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<{ since?: string; exe?: string; json?: boolean }>(args);
  const f = filterFrom({ since: opts.since, exe: opts.exe });
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config, { userView: true });
  try {
    const groups = store.index().groups({ since: f.since, exe: f.exe });
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(groups.map((g) => ({
        signature: g.signature,
        text: g.signature_text,
        count: g.count,
        firstSeen: new Date(g.first_seen).toISOString(),
        lastSeen: new Date(g.last_seen).toISOString(),
        exe: g.exe,
        lastId: g.last_id,
      })), null, 2)}\n`);
    } else if (groups.length === 0) {
      process.stderr.write('No crashes found.\n');
    } else {
      process.stdout.write(`${table(
        ['SIGNATURE', 'COUNT', 'FIRST SEEN', 'LAST SEEN', 'LAST ID', 'CRASH'],
        groups.map((g) => [g.signature, String(g.count), formatTime(g.first_seen), formatTime(g.last_seen), g.last_id, escapeControl(g.signature_text ?? '')]),
      )}\n`);
    }
    return 0;
  } finally {
    store.close();
  }
}
