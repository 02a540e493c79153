// flightbox watch: follow events as they are indexed (journalctl -f for crashes). Polls the
// index read-only every half second for rows newer than the last one seen, with list's
// filters, printed as list prints them (--json: one object per line). Ends cleanly on
// Ctrl-C, SIGTERM, or a reader that goes away.
import { FlightboxError, errnoCode } from '../../lib/errors.js';
import type { EventFilter, EventRow } from '../../store/index-db.js';
import { Store } from '../../store/store.js';
import type { Config } from '../../lib/config.js';
import { invocation, filterFrom, type FilterOptions } from '../args.js';
import { loadCliConfig, openStoreForQuery } from '../context.js';
import { LIST_HEADERS, eventJson, listCells } from '../format.js';

export const POLL_INTERVAL_MS = 500;
const BATCH_ROWS = 500;

/** Whether a row passes list's filters (the same tests its SQL makes). Pure. */
export function matchesFilter(r: EventRow, f: EventFilter): boolean {
  if (f.since !== undefined && r.time < f.since) return false;
  if (f.until !== undefined && r.time > f.until) return false;
  if (f.kind !== undefined && r.kind !== f.kind) return false;
  if (f.rule !== undefined && r.rule !== f.rule) return false;
  if (f.pid !== undefined && r.pid !== f.pid) return false;
  if (f.uid !== undefined && r.uid !== f.uid) return false;
  if (f.signal !== undefined && r.signal !== f.signal) return false;
  if (f.comm !== undefined && r.comm !== f.comm) return false;
  if (f.signature !== undefined && (r.signature === null || !r.signature.startsWith(f.signature))) return false;
  if (f.exe !== undefined) {
    if (r.exe === null) return false;
    if (f.exe.includes('/') ? r.exe !== f.exe : r.exe.slice(r.exe.lastIndexOf('/') + 1) !== f.exe) return false;
  }
  return true;
}

// list sizes its columns to the rows it has; a stream cannot, so they are as wide as their
// usual content (an id is 27-31 characters) and a longer value pushes the line out.
const WIDTHS = [26, 31, 7, 6, 8, 9, 9] as const;

function line(values: readonly string[]): string {
  return values.map((c, i) => (i < WIDTHS.length ? c.padEnd(WIDTHS[i]!) : c)).join('  ').trimEnd();
}

/**
 * A 53-bit hash of an id: the events indexed before watch started are remembered as a
 * sorted array of these (8 bytes each), so that a reindex (which inserts every row again)
 * is not taken for a flood of new events.
 */
function idHash(id: string): number {
  let a = 0x811c9dc5;
  let b = 5381;
  for (let i = 0; i < id.length; i++) {
    const c = id.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = (Math.imul(b, 33) + c) | 0;
  }
  return (a >>> 0) * 0x200000 + ((b >>> 0) & 0x1fffff);
}

class IdSet {
  #sorted: Float64Array = new Float64Array(0);
  readonly #added = new Set<number>();

  static fromIds(ids: Iterable<string>): IdSet {
    const s = new IdSet();
    const list: number[] = [];
    for (const id of ids) list.push(idHash(id));
    s.#sorted = Float64Array.from(list).sort();
    return s;
  }

  has(id: string): boolean {
    const h = idHash(id);
    if (this.#added.has(h)) return true;
    const a = this.#sorted;
    let lo = 0;
    let hi = a.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = a[mid]!;
      if (v === h) return true;
      if (v < h) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }

  add(id: string): void {
    this.#added.add(idHash(id));
  }
}

type RawRow = EventRow & { _rowid: number };

interface Source {
  /** rows indexed since the last call, oldest first */
  poll(): EventRow[];
  close(): void;
}

/** Root: the index itself, read-only, by rowid. */
function indexSource(store: Store, seen: IdSet): Source {
  const db = store.index({ readonly: true }).db;
  const after = db.prepare('SELECT rowid AS _rowid, * FROM events WHERE rowid > ? ORDER BY rowid LIMIT ?');
  const idAt = db.prepare('SELECT id FROM events WHERE rowid = ?').pluck();
  const newest = db.prepare('SELECT rowid AS _rowid, id, indexed_at FROM events ORDER BY rowid DESC LIMIT 1');
  const since = db.prepare('SELECT rowid AS _rowid, * FROM events WHERE indexed_at >= ? ORDER BY rowid');
  const top = newest.get() as { _rowid: number; id: string; indexed_at: number } | undefined;
  let last = top?._rowid ?? 0;
  let lastId = top?.id ?? null;
  let lastIndexedAt = top?.indexed_at ?? Date.now();
  return {
    poll() {
      const out: EventRow[] = [];
      let rows: RawRow[];
      // SQLite gives a new row max(rowid)+1: when the newest rows were deleted, new ones can
      // reuse their rowids. The id at our mark tells: if it changed, look by indexing time.
      if (lastId !== null && idAt.get(last) !== lastId) {
        rows = since.all(lastIndexedAt - 1000) as RawRow[];
        const t = newest.get() as { _rowid: number; id: string; indexed_at: number } | undefined;
        last = t?._rowid ?? 0;
        lastId = t?.id ?? null;
        out.push(...rows);
      } else {
        for (;;) {
          rows = after.all(last, BATCH_ROWS) as RawRow[];
          for (const r of rows) {
            last = r._rowid;
            lastId = r.id;
            out.push(r);
          }
          if (rows.length < BATCH_ROWS) break;
        }
      }
      for (const r of out) if (r.indexed_at > lastIndexedAt) lastIndexedAt = r.indexed_at;
      return out.filter((r) => {
        if (seen.has(r.id)) return false;
        seen.add(r.id);
        return true;
      });
    },
    close: () => store.close(),
  };
}

/** A user: the crashes they were given, read again from the manifests at each poll. */
function userSource(store: Store, uid: number, seen: IdSet): Source {
  return {
    poll() {
      try {
        store.openUserView(uid);
      } catch {
        return []; // nothing readable right now
      }
      return store.index().list({}).filter((r) => {
        if (seen.has(r.id)) return false;
        seen.add(r.id);
        return true;
      });
    },
    close: () => store.close(),
  };
}

function openSource(config: Config, filter: EventFilter, backlog: number, retried = false): { source: Source; initial: EventRow[] } {
  const uid = process.getuid?.() ?? 0;
  // The newest `backlog` matches, printed first (list's own query, so its own filtering).
  const initialOf = (store: Store) => (backlog > 0 ? store.index().list({ ...filter, limit: backlog }) : []);
  if (uid === 0) {
    let store: Store | undefined;
    try {
      store = new Store(config.store.root, { create: false, busyTimeoutMs: config.store.busyTimeoutMs });
      const db = store.index({ readonly: true }).db;
      const seen = IdSet.fromIds(db.prepare('SELECT id FROM events').pluck().iterate() as Iterable<string>);
      return { source: indexSource(store, seen), initial: initialOf(store) };
    } catch (err) {
      store?.close();
      // No index yet (a store without events): the regular open creates it, once.
      if (retried || !(err instanceof FlightboxError && err.code === 'STORE_CORRUPT')) throw err;
      openStoreForQuery(config).close();
      return openSource(config, filter, backlog, true);
    }
  }
  const store = openStoreForQuery(config, { userView: true });
  const seen = IdSet.fromIds(store.index().list({}).map((r) => r.id));
  return { source: userSource(store, uid, seen), initial: initialOf(store) };
}

export async function run(...args: unknown[]): Promise<number> {
  const { opts } = invocation<FilterOptions & { json?: boolean }>(args);
  const filter = filterFrom(opts);
  const backlog = filter.limit ?? 0;
  delete filter.limit;
  delete filter.reverse;
  const { config } = loadCliConfig(opts);
  const { source, initial } = openSource(config, filter, backlog);
  let header = false;
  const print = (rows: readonly EventRow[]) => {
    const text: string[] = [];
    for (const r of rows) {
      if (!matchesFilter(r, filter)) continue;
      if (opts.json) text.push(JSON.stringify(eventJson(r)));
      else {
        if (!header) text.push(line(LIST_HEADERS));
        header = true;
        text.push(line(listCells(r)));
      }
    }
    if (text.length > 0) process.stdout.write(`${text.join('\n')}\n`);
  };
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | null = null;
    let stopped = false;
    const stop = (err?: unknown) => {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      source.close();
      if (err === undefined) resolve(0);
      else reject(err);
    };
    const onSignal = () => stop();
    process.stdout.on('error', (err) => {
      stop(errnoCode(err) === 'EPIPE' ? undefined : err);
    });
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    print(initial);
    const tick = () => {
      if (stopped) return;
      try {
        print(source.poll());
      } catch (err) {
        // A busy index is tried again at the next tick; anything else ends the watch.
        if (!(err instanceof Error && /SQLITE_BUSY|database is locked/i.test(err.message))) {
          stop(err);
          return;
        }
      }
      timer = setTimeout(tick, POLL_INTERVAL_MS);
    };
    timer = setTimeout(tick, POLL_INTERVAL_MS);
  });
}
