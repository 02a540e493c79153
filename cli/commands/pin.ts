// flightbox pin / unpin: keep an event from retention (never vacuumed), or let it go again.
// The pin is a marker file in the bundle (the disk is the truth) mirrored in the index.
import { FlightboxError } from '../../lib/errors.js';
import { invocation } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';

async function setPin(args: unknown[], pinned: boolean): Promise<number> {
  const { positional, opts } = invocation<object>(args);
  const verb = pinned ? 'pin' : 'unpin';
  if (process.getuid?.() !== 0) throw new FlightboxError('PERMISSION', `flightbox ${verb} needs root (it writes to the store)`);
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config);
  try {
    const row = store.index().resolve(positional[0] ?? '');
    const was = store.isPinnedOnDisk(row.id);
    store.setPinned(row.id, pinned);
    const what = was === pinned ? `${row.id} was already ${pinned ? 'pinned' : 'not pinned'}` : `${pinned ? 'Pinned' : 'Unpinned'} ${row.id}`;
    process.stdout.write(`${what}${pinned ? ': retention will not delete it.' : '.'}\n`);
    return 0;
  } finally {
    store.close();
  }
}

export async function run(...args: unknown[]): Promise<number> {
  return setPin(args, true);
}

export async function runUnpin(...args: unknown[]): Promise<number> {
  return setPin(args, false);
}
