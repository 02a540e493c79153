// flightbox delete: delete one event, its bundle and its index row together (a pinned one
// only with --force). Unsent mail about it is marked failed.
import { FlightboxError } from '../../lib/errors.js';
import { formatSize } from '../../lib/units.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<{ force?: boolean }>(args);
  if (process.getuid?.() !== 0) throw new FlightboxError('PERMISSION', 'flightbox delete needs root (it deletes from the store)');
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config);
  try {
    const row = store.index().resolve(positional[0] ?? '');
    const pinned = store.index().isPinned(row.id) || store.isPinnedOnDisk(row.id);
    if (pinned && !opts.force) {
      throw new FlightboxError('USAGE', `event ${row.id} is pinned; unpin it first (flightbox unpin ${row.id}) or use --force`);
    }
    const r = store.removeBundle(row.id, { force: opts.force === true, why: 'flightbox delete' });
    if (r === 'pinned') throw new FlightboxError('USAGE', `event ${row.id} was pinned meanwhile; use --force to delete it anyway`);
    const size = row.bundle_size === null ? '' : ` (${formatSize(row.bundle_size)})`;
    process.stdout.write(r === 'gone' ? `${row.id} was already gone from the disk; its index row is removed.\n` : `Deleted ${row.id}${size}.\n`);
    return 0;
  } finally {
    store.close();
  }
}
