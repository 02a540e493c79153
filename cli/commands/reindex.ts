// flightbox reindex: rebuild the SQLite index from the bundles on disk (the truth).
import { escapeControl } from '../../lib/escape.js';
import { FlightboxError } from '../../lib/errors.js';
import { Store } from '../../store/store.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<object>(args);
  if (process.getuid?.() !== 0) throw new FlightboxError('PERMISSION', 'flightbox reindex needs root (it rewrites the index in the store)');
  const { config } = loadCliConfig(opts);
  const store = new Store(config.store.root, { create: true, busyTimeoutMs: config.store.busyTimeoutMs });
  try {
    const r = store.reindex();
    process.stdout.write(`Indexed ${r.indexed} event${r.indexed === 1 ? '' : 's'}, removed ${r.removed} stale row${r.removed === 1 ? '' : 's'}.\n`);
    for (const b of r.broken) process.stderr.write(`flightbox: skipped ${b.id}: ${escapeControl(b.error)}\n`);
    return r.broken.length > 0 ? 1 : 0;
  } finally {
    store.close();
  }
}
