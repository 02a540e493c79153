// flightbox import: add a bundle exported on another host (flightbox export) to this
// store and its index. The archive is hostile input; store/archive.ts checks it in full.
import { basename } from 'node:path';
import { FlightboxError } from '../../lib/errors.js';
import { formatSize } from '../../lib/units.js';
import { importBundle, importLimits } from '../../store/archive.js';
import { Store } from '../../store/store.js';
import { invocation } from '../args.js';
import { loadCliConfig } from '../context.js';

export async function run(...args: unknown[]): Promise<number> {
  const { positional, opts } = invocation<object>(args);
  if (process.getuid?.() !== 0) throw new FlightboxError('PERMISSION', 'flightbox import needs root (it writes into the store)');
  const { config } = loadCliConfig(opts);
  const file = positional[0]!;
  const store = new Store(config.store.root, { create: true, busyTimeoutMs: config.store.busyTimeoutMs });
  try {
    const r = await importBundle(store, file, { limits: importLimits(config.core.maxSizeBytes) });
    process.stdout.write(`${r.id}\n`);
    process.stderr.write(`Imported ${r.id} from ${basename(file)} (${r.files} files, ${formatSize(r.bytes)})\n`);
    if (!r.indexed) {
      process.stderr.write(`flightbox: the bundle is stored but not yet indexed (${r.indexError ?? 'index busy'}); run flightbox reindex\n`);
    }
    return 0;
  } finally {
    store.close();
  }
}
