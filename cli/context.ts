// What every command needs: the config (refusing to run on a broken one, unlike the
// handler) and the store, opened read-only for queries.
import { formatConfigIssue, loadConfig, resolveConfigPath, type Config } from '../lib/config.js';
import { FlightboxError, errnoCode } from '../lib/errors.js';
import { join } from 'node:path';
import { Store } from '../store/store.js';
import { pickEvent, type FilterOptions } from './args.js';

export interface GlobalOptions {
  config?: string;
}

export function loadCliConfig(opts: GlobalOptions): { config: Config; path: string; explicit: boolean } {
  const { path, explicit } = resolveConfigPath(opts.config);
  const loaded = loadConfig(path, { explicit });
  if (loaded.errors.length > 0) {
    const first = loaded.errors[0]!;
    const more = loaded.errors.length > 1 ? ` (and ${loaded.errors.length - 1} more problem${loaded.errors.length > 2 ? 's' : ''})` : '';
    throw new FlightboxError('CONFIG_INVALID', `${formatConfigIssue(first)}${more}`);
  }
  for (const w of loaded.warnings) process.stderr.write(`flightbox: warning: ${formatConfigIssue(w)}\n`);
  return { config: loaded.config, path, explicit };
}

/**
 * Open the store for queries. Root sees every event. Another user cannot open the index:
 * with `userView`, they get the crashes of their own processes that the handler granted
 * them (users/<uid>/), else a clear "permission denied".
 */
export function openStoreForQuery(config: Config, opts: { userView?: boolean } = {}): Store {
  let store: Store | undefined;
  try {
    store = new Store(config.store.root, { create: false, busyTimeoutMs: config.store.busyTimeoutMs });
    store.index(); // opens (and, for root, migrates) the index now, so errors surface here
    return store;
  } catch (err) {
    if (errnoCode(err) === 'EACCES' || errnoCode(err) === 'EPERM' || /SQLITE_CANTOPEN|unable to open/i.test(String(err))) {
      const uid = process.getuid?.() ?? 0;
      if (opts.userView && uid !== 0 && store) {
        store.openUserView(uid);
        return store;
      }
      throw new FlightboxError('PERMISSION', `cannot open the store ${config.store.root}: permission denied (run as root)`);
    }
    throw err;
  }
}

/** The event a command names (id, prefix, or newest match) and its bundle directory, as its user may see it. */
export function pickEventBundle(config: Config, id: string | undefined, o: FilterOptions): { id: string; dir: string } {
  const store = openStoreForQuery(config, { userView: true });
  try {
    const row = pickEvent(store, id, o);
    return { id: row.id, dir: join(store.root, row.bundle) };
  } finally {
    store.close();
  }
}
