// The SQLite index of events (better-sqlite3): WAL, busy timeout, numbered append-only
// migrations, statements prepared once, synchronous transactions. One connection per
// process. The bundles on disk are the truth; this is a rebuildable index of them.
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';
import type { Manifest } from './manifest.js';
import { FlightboxError, messageOf } from '../lib/errors.js';

export const INDEX_FILE = 'index.sqlite';

// Loaded on first use, not at import: the crash handler imports the store on its hold path
// but opens the index only after the crashed process has been released.
let DatabaseCtor: typeof Database | undefined;
function database(): typeof Database {
  DatabaseCtor ??= createRequire(import.meta.url)('better-sqlite3') as typeof Database;
  return DatabaseCtor;
}

/** Append-only: never edit a migration that has shipped, add a new one (SCHEMA_VERSION follows). */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE events (
     id TEXT PRIMARY KEY,
     kind TEXT NOT NULL CHECK (kind IN ('crash', 'snapshot')),
     time INTEGER NOT NULL,
     host TEXT,
     boot_id TEXT,
     pid INTEGER,
     pid_ns INTEGER,
     tid INTEGER,
     uid INTEGER,
     gid INTEGER,
     signal INTEGER,
     signal_name TEXT,
     exe TEXT,
     comm TEXT,
     cmdline TEXT,
     unit TEXT,
     cgroup TEXT,
     in_container INTEGER,
     dumpable INTEGER,
     signature TEXT,
     signature_text TEXT,
     rule TEXT,
     core_size INTEGER,
     core_stored_size INTEGER,
     core_truncated INTEGER NOT NULL DEFAULT 0,
     has_core INTEGER NOT NULL DEFAULT 0,
     bundle_size INTEGER,
     warnings INTEGER NOT NULL DEFAULT 0,
     bundle TEXT NOT NULL,
     indexed_at INTEGER NOT NULL
   );
   CREATE INDEX events_time ON events(time);
   CREATE INDEX events_exe_time ON events(exe, time);
   CREATE INDEX events_comm_time ON events(comm, time);
   CREATE INDEX events_pid ON events(pid);
   CREATE INDEX events_uid_time ON events(uid, time);
   CREATE INDEX events_signal_time ON events(signal, time);
   CREATE INDEX events_signature_time ON events(signature, time);
   CREATE VIEW crash_groups AS
     SELECT signature, signature_text, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen,
            (SELECT e2.exe FROM events e2 WHERE e2.signature = e.signature ORDER BY e2.time DESC LIMIT 1) AS exe,
            (SELECT e2.id FROM events e2 WHERE e2.signature = e.signature ORDER BY e2.time DESC LIMIT 1) AS last_id
     FROM events e WHERE kind = 'crash' AND signature IS NOT NULL GROUP BY signature;`,
  `ALTER TABLE events ADD COLUMN reason TEXT;
   CREATE INDEX events_kind_time ON events(kind, time);
   CREATE INDEX events_rule_time ON events(rule, time);`,
];

/** The schema version an index has after all migrations (PRAGMA user_version). */
export const SCHEMA_VERSION = MIGRATIONS.length;

export interface EventRow {
  id: string;
  kind: 'crash' | 'snapshot';
  time: number;
  host: string | null;
  boot_id: string | null;
  pid: number | null;
  pid_ns: number | null;
  tid: number | null;
  uid: number | null;
  gid: number | null;
  signal: number | null;
  signal_name: string | null;
  exe: string | null;
  comm: string | null;
  cmdline: string | null;
  unit: string | null;
  cgroup: string | null;
  in_container: number | null;
  dumpable: number | null;
  signature: string | null;
  signature_text: string | null;
  rule: string | null;
  core_size: number | null;
  core_stored_size: number | null;
  core_truncated: number;
  has_core: number;
  bundle_size: number | null;
  warnings: number;
  bundle: string;
  indexed_at: number;
  reason: string | null;
}

export interface EventFilter {
  since?: number;
  until?: number;
  exe?: string;
  comm?: string;
  pid?: number;
  uid?: number;
  signal?: number;
  signature?: string;
  kind?: 'crash' | 'snapshot';
  rule?: string;
  /** the newest N (still returned oldest first unless reverse) */
  limit?: number;
  reverse?: boolean;
}

export interface GroupRow {
  signature: string;
  signature_text: string | null;
  count: number;
  first_seen: number;
  last_seen: number;
  exe: string | null;
  last_id: string;
}

const COLUMNS = [
  'id', 'kind', 'time', 'host', 'boot_id', 'pid', 'pid_ns', 'tid', 'uid', 'gid', 'signal', 'signal_name', 'exe', 'comm',
  'cmdline', 'unit', 'cgroup', 'in_container', 'dumpable', 'signature', 'signature_text', 'rule', 'core_size',
  'core_stored_size', 'core_truncated', 'has_core', 'bundle_size', 'warnings', 'bundle', 'indexed_at', 'reason',
] as const;

/** Columns added by later migrations may be absent from a caller's row: they are NULL. */
function withAllColumns(row: EventRow): Record<string, unknown> {
  const out: Record<string, unknown> = { ...row };
  for (const c of COLUMNS) if (out[c] === undefined) out[c] = null;
  return out;
}

/** A path matches exactly; a bare name matches the executable's base name. */
function exeClause(exe: string, params: Record<string, string | number>): string {
  params.exe = exe;
  if (exe.includes('/')) return 'exe = @exe';
  // substr, not LIKE: file names are case-sensitive and LIKE is not.
  params.exeSuffix = `/${exe}`;
  return '(exe = @exe OR substr(exe, -length(@exeSuffix)) = @exeSuffix)';
}

/** The exclusive upper bound of every string starting with `prefix` (BINARY collation). */
function prefixEnd(prefix: string): string {
  return `${prefix}\u{10ffff}`;
}

export function rowFromManifest(m: Manifest, bundleRel: string, now: number): EventRow {
  const p = m.process;
  const bundleSize = m.files.reduce((a, f) => a + f.size, 0);
  return {
    id: m.id,
    kind: m.kind,
    time: m.timeMs,
    host: m.host.hostname,
    boot_id: m.host.bootId,
    pid: p?.pid ?? null,
    pid_ns: p?.pidInNamespace ?? null,
    tid: p?.tid ?? null,
    uid: p?.uid ?? null,
    gid: p?.gid ?? null,
    signal: p?.signal ?? null,
    signal_name: p?.signalName ?? null,
    exe: p?.exe ?? null,
    comm: p?.comm ?? null,
    cmdline: p?.cmdline ? p.cmdline.join(' ') : null,
    unit: p?.unit ?? null,
    cgroup: p?.cgroup ?? null,
    in_container: p?.inContainer === null || p?.inContainer === undefined ? null : p.inContainer ? 1 : 0,
    dumpable: p?.dumpable ?? null,
    signature: m.signature?.hash ?? null,
    signature_text: m.signature?.text ?? null,
    rule: m.rule,
    core_size: m.core?.size ?? null,
    core_stored_size: m.core?.storedSize ?? null,
    core_truncated: m.core?.truncated ? 1 : 0,
    has_core: m.core?.stored ? 1 : 0,
    bundle_size: bundleSize,
    warnings: m.warnings.length,
    bundle: bundleRel,
    indexed_at: now,
    reason: m.reason ?? null,
  };
}

export class IndexDb {
  readonly db: Database.Database;
  #insert: Database.Statement;
  #upsert: Database.Statement;
  #byId: Database.Statement;
  #byPrefix: Database.Statement;

  constructor(path: string, opts: { busyTimeoutMs: number; readonly?: boolean }) {
    try {
      this.db = new (database())(path, { timeout: opts.busyTimeoutMs, readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
      if (!opts.readonly) {
        this.db.pragma('journal_mode = WAL');
        this.db.pragma('synchronous = NORMAL');
        this.#migrate();
      }
    } catch (err) {
      throw new FlightboxError('STORE_CORRUPT', `cannot open the index ${path}: ${messageOf(err)}`, { cause: err });
    }
    const cols = COLUMNS.join(', ');
    const vals = COLUMNS.map((c) => `@${c}`).join(', ');
    this.#insert = this.db.prepare(`INSERT INTO events (${cols}) VALUES (${vals})`);
    this.#upsert = this.db.prepare(`INSERT OR REPLACE INTO events (${cols}) VALUES (${vals})`);
    this.#byId = this.db.prepare('SELECT * FROM events WHERE id = ?');
    this.#byPrefix = this.db.prepare('SELECT * FROM events WHERE id >= ? AND id < ? ORDER BY time DESC LIMIT 2');
  }

  #migrate(): void {
    // IMMEDIATE takes the write lock before reading user_version, so two handlers
    // creating a fresh index at the same moment do not both apply migration 1.
    const apply = this.db.transaction(() => {
      const version = this.db.pragma('user_version', { simple: true }) as number;
      if (version > MIGRATIONS.length) {
        throw new Error(`index schema version ${version} is newer than this flightbox (${MIGRATIONS.length})`);
      }
      for (let v = version; v < MIGRATIONS.length; v++) this.db.exec(MIGRATIONS[v]!);
      if (version !== MIGRATIONS.length) this.db.pragma(`user_version = ${MIGRATIONS.length}`);
    });
    apply.immediate();
  }

  insert(row: EventRow): void {
    this.#insert.run(withAllColumns(row));
  }

  upsert(row: EventRow): void {
    this.#upsert.run(withAllColumns(row));
  }

  get(id: string): EventRow | undefined {
    return this.#byId.get(id) as EventRow | undefined;
  }

  /** Exact id, or a unique prefix of one. */
  resolve(idOrPrefix: string): EventRow {
    const exact = this.get(idOrPrefix);
    if (exact) return exact;
    const rows = this.#byPrefix.all(idOrPrefix, prefixEnd(idOrPrefix)) as EventRow[];
    if (rows.length === 0) throw new FlightboxError('NOT_FOUND', `no event matches ${JSON.stringify(idOrPrefix)}`);
    if (rows.length > 1) throw new FlightboxError('AMBIGUOUS', `more than one event starts with ${JSON.stringify(idOrPrefix)}; give more of the id`);
    return rows[0]!;
  }

  list(f: EventFilter = {}): EventRow[] {
    const where: string[] = [];
    const params: Record<string, string | number> = {};
    if (f.since !== undefined) { where.push('time >= @since'); params.since = f.since; }
    if (f.until !== undefined) { where.push('time <= @until'); params.until = f.until; }
    if (f.kind) { where.push('kind = @kind'); params.kind = f.kind; }
    if (f.rule !== undefined) { where.push('rule = @rule'); params.rule = f.rule; }
    if (f.pid !== undefined) { where.push('pid = @pid'); params.pid = f.pid; }
    if (f.uid !== undefined) { where.push('uid = @uid'); params.uid = f.uid; }
    if (f.signal !== undefined) { where.push('signal = @signal'); params.signal = f.signal; }
    if (f.comm !== undefined) { where.push('comm = @comm'); params.comm = f.comm; }
    if (f.signature !== undefined) { where.push('signature >= @sig AND signature < @sigEnd'); params.sig = f.signature; params.sigEnd = prefixEnd(f.signature); }
    if (f.exe !== undefined) where.push(exeClause(f.exe, params));
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    // Newest N first, then flipped, so "-n 5" means the five most recent, shown in time order.
    let sql = `SELECT * FROM events ${clause} ORDER BY time DESC, id DESC`;
    if (f.limit !== undefined) { sql += ' LIMIT @limit'; params.limit = f.limit; }
    const rows = this.db.prepare(sql).all(params) as EventRow[];
    return f.reverse ? rows : rows.reverse();
  }

  groups(f: { since?: number; exe?: string } = {}): GroupRow[] {
    const params: Record<string, string | number> = {};
    const where = ["kind = 'crash'", 'signature IS NOT NULL'];
    if (f.since !== undefined) { where.push('time >= @since'); params.since = f.since; }
    if (f.exe !== undefined) where.push(exeClause(f.exe, params));
    // Counts per signature, then the newest event of each group for its id, exe and text
    // (max(id) would sort ids as strings, not by time).
    const sql = `WITH f AS (SELECT * FROM events WHERE ${where.join(' AND ')}),
                      g AS (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen FROM f GROUP BY signature)
                 SELECT g.signature, g.count, g.first_seen, g.last_seen, last.id AS last_id, last.exe AS exe, last.signature_text AS signature_text
                 FROM g JOIN f AS last ON last.id = (SELECT id FROM f WHERE f.signature = g.signature ORDER BY time DESC, id DESC LIMIT 1)
                 ORDER BY g.count DESC, g.last_seen DESC`;
    return this.db.prepare(sql).all(params) as GroupRow[];
  }

  /** Counts and sizes for `flightbox status`. */
  summary(): { events: number; crashes: number; snapshots: number; bytes: number; newest: number | null } {
    const r = this.db.prepare(`SELECT count(*) AS events, sum(kind = 'crash') AS crashes, sum(kind = 'snapshot') AS snapshots,
                                      coalesce(sum(bundle_size), 0) AS bytes, max(time) AS newest FROM events`).get() as {
      events: number; crashes: number | null; snapshots: number | null; bytes: number; newest: number | null;
    };
    return { events: r.events, crashes: r.crashes ?? 0, snapshots: r.snapshots ?? 0, bytes: r.bytes, newest: r.newest };
  }

  ids(): Set<string> {
    return new Set((this.db.prepare('SELECT id FROM events').pluck().all() as string[]));
  }

  deleteMissing(keep: Set<string>): number {
    const del = this.db.prepare('DELETE FROM events WHERE id = ?');
    let n = 0;
    this.db.transaction(() => {
      for (const id of this.ids()) if (!keep.has(id)) n += del.run(id).changes;
    })();
    return n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
