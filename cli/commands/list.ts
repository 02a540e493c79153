// flightbox list: the events in the index, filtered, as a table or JSON.
import { invocation, filterFrom, type FilterOptions } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { eventsJson, listTable } from '../format.js';

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<FilterOptions & { json?: boolean }>(args);
  const filter = filterFrom(opts);
  const { config } = loadCliConfig(opts);
  const store = openStoreForQuery(config, { userView: true });
  try {
    if (opts.json) {
      // Each event's JSON object made straight from its values: no EventRow first.
      process.stdout.write(`${JSON.stringify(eventsJson(store.index(), filter), null, 2)}\n`);
      return 0;
    }
    // The table reads only its own columns: listRows builds a fraction of the values list() would.
    const rows = store.index().listRows(filter);
    if (rows.length === 0) {
      process.stderr.write('No events found.\n');
    } else {
      process.stdout.write(`${listTable(rows)}\n`);
    }
    return 0;
  } finally {
    store.close();
  }
}
