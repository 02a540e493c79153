// The SQLite index of events (better-sqlite3): WAL, busy timeout, numbered append-only
// migrations, statements prepared once, synchronous transactions. One connection per
// process. The bundles on disk are the truth; this is a rebuildable index of them.
import { isAscii } from 'node:buffer';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type Database from 'better-sqlite3';
import type { Manifest } from './manifest.js';
import { FlightboxError, messageOf } from '../lib/errors.js';

export const INDEX_FILE = 'index.sqlite';

// Loaded on first use, not at import: the crash handler imports the store on its hold path
// but opens the index only after the crashed process has been released.
let DatabaseCtor: typeof Database | undefined;
/**
 * better-sqlite3's compiled addon, named directly (its own search, the `bindings` package,
 * stats a dozen paths, 2-3 ms of every handler), or already loaded (the one-file copy's).
 */
let nativeBinding: string | object | undefined;

/** Where `npm run build` puts the one-file copy of better-sqlite3's JavaScript, relative to this module (or the bundle it is in). */
export const VENDORED_SQLITE = '../vendor/better-sqlite3.cjs';

/** Which better-sqlite3 was loaded: the one-file copy, or the package (the copy missing, or its addon). */
export let sqliteLoadedFrom: 'vendored' | 'package' | null = null;

function database(): typeof Database {
  if (!DatabaseCtor) {
    const load = createRequire(import.meta.url);
    let vendored: { Database: typeof Database; addon: string } | null = null;
    try {
      vendored = load(VENDORED_SQLITE) as { Database: typeof Database; addon: string };
    } catch {
      // not built (run from source): the package
    }
    if (vendored && existsSync(vendored.addon)) {
      // The addon loaded as require() loads it, without require()'s path resolution.
      const addon = { exports: {} as object };
      process.dlopen(addon, vendored.addon);
      nativeBinding = addon.exports;
      DatabaseCtor = vendored.Database;
      sqliteLoadedFrom = 'vendored';
    } else {
      DatabaseCtor = load('better-sqlite3') as typeof Database;
      const addon = join(dirname(load.resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
      nativeBinding = existsSync(addon) ? addon : undefined;
      sqliteLoadedFrom = 'package';
    }
  }
  return DatabaseCtor;
}

/**
 * The base name of `exe` in SQL (what follows the last '/'; all of it when there is none):
 * rtrim strips every character but '/' from the right, leaving the directory part, which
 * replace then removes (it cannot occur again in a name without '/'). Migration 5 indexes
 * this exact text and a query must use the same text for SQLite to use that index: never
 * change it.
 */
const EXE_NAME_SQL = "replace(exe, rtrim(exe, replace(exe, '/', '')), '')";

/**
 * The two halves of keeping crash_group_counts right in migration 5's triggers (an update is
 * a remove and an add). Part of that shipped migration's text: never change them.
 */
function GROUP_ADD_NEW(source: string): string {
  const newer = "(excluded.last_seen, excluded.last_id) > (last_seen, last_id)";
  return `INSERT INTO crash_group_counts (signature, count, first_seen, last_seen, last_id, last_exe, last_text)
       ${source}
       ON CONFLICT (signature) DO UPDATE SET
         count = count + 1,
         first_seen = min(first_seen, excluded.first_seen),
         last_seen = max(last_seen, excluded.last_seen),
         last_id = CASE WHEN ${newer} THEN excluded.last_id ELSE last_id END,
         last_exe = CASE WHEN ${newer} THEN excluded.last_exe ELSE last_exe END,
         last_text = CASE WHEN ${newer} THEN excluded.last_text ELSE last_text END;`;
}
function GROUP_REMOVE_OLD(guard: string): string {
  return `UPDATE crash_group_counts SET
       count = count - 1,
       first_seen = CASE WHEN OLD.time > first_seen THEN first_seen
         ELSE coalesce((SELECT min(e.time) FROM events e WHERE e.kind = 'crash' AND e.signature = OLD.signature), first_seen) END
     WHERE ${guard}signature = OLD.signature;
     UPDATE crash_group_counts SET (last_seen, last_id, last_exe, last_text) =
       (SELECT e.time, e.id, e.exe, e.signature_text FROM events e WHERE e.kind = 'crash' AND e.signature = OLD.signature
        ORDER BY e.time DESC, e.id DESC LIMIT 1)
     WHERE ${guard}signature = OLD.signature AND last_id = OLD.id AND count > 0;
     DELETE FROM crash_group_counts WHERE signature = OLD.signature AND count <= 0;`;
}

/**
 * Migration 6's halves of keeping crash_exe_group_counts right: crash_group_counts' logic per
 * (exe, signature). Only crashes with an exe are counted (no exe filter matches a NULL exe).
 * The look-ups after a delete walk the signature's events by time (events_signature_time) and
 * stop at the first crash of that exe: a signature names the executable's base name, so what
 * is skipped is a same-named executable's crashes in another directory. The `+` keeps SQLite
 * from walking every crash by time (events_kind_time) or every event of the exe instead: it
 * chose the first, at milliseconds a delete on a million events. Part of that migration's
 * text: never change them.
 */
function EXE_GROUP_ADD_NEW(source: string): string {
  const newer = "(excluded.last_seen, excluded.last_id) > (last_seen, last_id)";
  return `INSERT INTO crash_exe_group_counts (exe, signature, count, first_seen, last_seen, last_id, last_text)
       ${source}
       ON CONFLICT (exe, signature) DO UPDATE SET
         count = count + 1,
         first_seen = min(first_seen, excluded.first_seen),
         last_seen = max(last_seen, excluded.last_seen),
         last_id = CASE WHEN ${newer} THEN excluded.last_id ELSE last_id END,
         last_text = CASE WHEN ${newer} THEN excluded.last_text ELSE last_text END;`;
}
function EXE_GROUP_REMOVE_OLD(guard: string): string {
  const same = "+e.kind = 'crash' AND e.signature = OLD.signature AND +e.exe = OLD.exe";
  return `UPDATE crash_exe_group_counts SET
       count = count - 1,
       first_seen = CASE WHEN OLD.time > first_seen THEN first_seen
         ELSE coalesce((SELECT e.time FROM events e WHERE ${same} ORDER BY e.time LIMIT 1), first_seen) END
     WHERE ${guard}exe = OLD.exe AND signature = OLD.signature;
     UPDATE crash_exe_group_counts SET (last_seen, last_id, last_text) =
       (SELECT e.time, e.id, e.signature_text FROM events e WHERE ${same} ORDER BY e.time DESC, e.id DESC LIMIT 1)
     WHERE ${guard}exe = OLD.exe AND signature = OLD.signature AND last_id = OLD.id AND count > 0;
     DELETE FROM crash_exe_group_counts WHERE exe = OLD.exe AND signature = OLD.signature AND count <= 0;`;
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
  // 3: mail waiting to be sent (notify/). No foreign key to events: reindex may drop an
  // event row whose bundle is gone while its mail still says so.
  `CREATE TABLE outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     dedupe_key TEXT NOT NULL UNIQUE,
     kind TEXT NOT NULL CHECK (kind IN ('crash', 'rule', 'manual', 'digest')),
     event_id TEXT,
     rule TEXT,
     reason TEXT,
     recipients TEXT NOT NULL,
     storm_group TEXT,
     window_start INTEGER,
     digest_id INTEGER,
     status TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'held', 'digested')),
     message_id TEXT NOT NULL UNIQUE,
     attempts INTEGER NOT NULL DEFAULT 0,
     created_at INTEGER NOT NULL,
     next_attempt_at INTEGER,
     lease_until INTEGER,
     lease_token TEXT,
     last_attempt_at INTEGER,
     last_error TEXT,
     sent_at INTEGER,
     response TEXT
   );
   CREATE INDEX outbox_status_due ON outbox(status, next_attempt_at);
   CREATE INDEX outbox_storm ON outbox(storm_group, window_start);
   CREATE INDEX outbox_event ON outbox(event_id);
   CREATE INDEX outbox_digest ON outbox(digest_id);`,
  // 4: retention (store/retention.ts). A pinned event is never vacuumed. The disk is the truth
  // here too: the pin is a marker file in the bundle (Store.pin), and reindex reads it back.
  `ALTER TABLE events ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;`,
  // 5: queries that stay fast at a million events.
  // - `--exe NAME` (a base name) scanned every row: an index on the base name.
  // - `groups` aggregated every crash: crash_group_counts keeps, per signature, the count,
  //   first and last seen, and the newest crash's id, exe and text (newest: by time, then
  //   id, as groups() orders them). Triggers keep it right in the writer's own transaction;
  //   a REPLACE fires the delete trigger only with recursive_triggers, which IndexDb turns on
  //   (and upsert deletes explicitly anyway). After a delete, a new first seen or newest
  //   crash comes from the partial index of crashes by signature and time, which also counts
  //   a group's crashes since a time.
  `CREATE INDEX events_exe_name_time ON events(${EXE_NAME_SQL}, time);
   CREATE INDEX events_crash_signature_time ON events(signature, time, id) WHERE kind = 'crash' AND signature IS NOT NULL;
   CREATE TABLE crash_group_counts (
     signature TEXT PRIMARY KEY,
     count INTEGER NOT NULL,
     first_seen INTEGER NOT NULL,
     last_seen INTEGER NOT NULL,
     last_id TEXT NOT NULL,
     last_exe TEXT,
     last_text TEXT
   ) WITHOUT ROWID;
   INSERT INTO crash_group_counts (signature, count, first_seen, last_seen, last_id, last_exe, last_text)
     SELECT g.signature, g.count, g.first_seen, g.last_seen, e.id, e.exe, e.signature_text
     FROM (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen
           FROM events WHERE kind = 'crash' AND signature IS NOT NULL GROUP BY signature) g
     JOIN events e ON e.id = (SELECT n.id FROM events n WHERE n.kind = 'crash' AND n.signature = g.signature ORDER BY n.time DESC, n.id DESC LIMIT 1);
   CREATE TRIGGER events_crash_groups_insert AFTER INSERT ON events
   WHEN NEW.kind = 'crash' AND NEW.signature IS NOT NULL BEGIN
     ${GROUP_ADD_NEW('VALUES (NEW.signature, 1, NEW.time, NEW.time, NEW.id, NEW.exe, NEW.signature_text)')}
   END;
   CREATE TRIGGER events_crash_groups_delete AFTER DELETE ON events
   WHEN OLD.kind = 'crash' AND OLD.signature IS NOT NULL BEGIN
     ${GROUP_REMOVE_OLD('')}
   END;
   -- Nothing updates these columns today; a change of them counts as a delete and an insert.
   CREATE TRIGGER events_crash_groups_update AFTER UPDATE OF id, kind, time, exe, signature, signature_text ON events
   WHEN (OLD.kind = 'crash' AND OLD.signature IS NOT NULL) OR (NEW.kind = 'crash' AND NEW.signature IS NOT NULL) BEGIN
     ${GROUP_REMOVE_OLD("OLD.kind = 'crash' AND ")}
     ${GROUP_ADD_NEW("SELECT NEW.signature, 1, NEW.time, NEW.time, NEW.id, NEW.exe, NEW.signature_text WHERE NEW.kind = 'crash' AND NEW.signature IS NOT NULL")}
   END;`,
  // 6: `groups --exe` read every crash of the executable (63k of a busy one at a million
  //   events). crash_exe_group_counts is crash_group_counts per (exe, signature), kept by
  //   triggers the same way; a base name finds its paths through the index on the base name
  //   (the same text as migration 5's), and groups() merges the paths of a signature.
  `CREATE TABLE crash_exe_group_counts (
     exe TEXT NOT NULL,
     signature TEXT NOT NULL,
     count INTEGER NOT NULL,
     first_seen INTEGER NOT NULL,
     last_seen INTEGER NOT NULL,
     last_id TEXT NOT NULL,
     last_text TEXT,
     PRIMARY KEY (exe, signature)
   ) WITHOUT ROWID;
   CREATE INDEX crash_exe_group_counts_name ON crash_exe_group_counts(${EXE_NAME_SQL});
   INSERT INTO crash_exe_group_counts (exe, signature, count, first_seen, last_seen, last_id, last_text)
     SELECT g.exe, g.signature, g.count, g.first_seen, g.last_seen, e.id, e.signature_text
     FROM (SELECT exe, signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen
           FROM events WHERE kind = 'crash' AND signature IS NOT NULL AND exe IS NOT NULL GROUP BY exe, signature) g
     JOIN events e ON e.id = (SELECT n.id FROM events n WHERE +n.kind = 'crash' AND n.signature = g.signature AND +n.exe = g.exe
                              ORDER BY n.time DESC, n.id DESC LIMIT 1);
   CREATE TRIGGER events_crash_exe_groups_insert AFTER INSERT ON events
   WHEN NEW.kind = 'crash' AND NEW.signature IS NOT NULL AND NEW.exe IS NOT NULL BEGIN
     ${EXE_GROUP_ADD_NEW('VALUES (NEW.exe, NEW.signature, 1, NEW.time, NEW.time, NEW.id, NEW.signature_text)')}
   END;
   CREATE TRIGGER events_crash_exe_groups_delete AFTER DELETE ON events
   WHEN OLD.kind = 'crash' AND OLD.signature IS NOT NULL AND OLD.exe IS NOT NULL BEGIN
     ${EXE_GROUP_REMOVE_OLD('')}
   END;
   CREATE TRIGGER events_crash_exe_groups_update AFTER UPDATE OF id, kind, time, exe, signature, signature_text ON events
   WHEN (OLD.kind = 'crash' AND OLD.signature IS NOT NULL AND OLD.exe IS NOT NULL)
     OR (NEW.kind = 'crash' AND NEW.signature IS NOT NULL AND NEW.exe IS NOT NULL) BEGIN
     ${EXE_GROUP_REMOVE_OLD("OLD.kind = 'crash' AND ")}
     ${EXE_GROUP_ADD_NEW("SELECT NEW.exe, NEW.signature, 1, NEW.time, NEW.time, NEW.id, NEW.signature_text WHERE NEW.kind = 'crash' AND NEW.signature IS NOT NULL AND NEW.exe IS NOT NULL")}
   END;`,
];

/** The first schema version with crash_group_counts (a read-only open of an older index does not migrate). */
const GROUP_COUNTS_VERSION = 5;
/** The first schema version with crash_exe_group_counts. */
const EXE_GROUP_COUNTS_VERSION = 6;

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

/** What retention needs to know of an event (store/retention.ts). */
export interface RetentionRow {
  id: string;
  kind: 'crash' | 'snapshot';
  time: number;
  exe: string | null;
  comm: string | null;
  size: number;
  pinned: number;
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

export type OutboxKind = 'crash' | 'rule' | 'manual' | 'digest';
export type OutboxStatus = 'pending' | 'sending' | 'sent' | 'failed' | 'held' | 'digested';

/**
 * One mail to queue with an event (notify/outbox.ts builds these). Plain JSON: when the index
 * is locked it waits in the event's spool marker and is queued when the spool drains.
 */
export interface OutboxRequest {
  kind: 'crash' | 'rule' | 'manual';
  eventId: string;
  rule: string | null;
  reason: string | null;
  to: string[];
  /** one logical mail ("crash:ID", "rule:NAME:ID"): queueing the same key again does nothing */
  key: string;
  /** storm control: "crash" or "rule:NAME"; null = not limited (flightbox mail) */
  group: string | null;
  maxPerHour: number;
  windowMs: number;
  /** the Message-ID header, stable across retries so receivers can drop a duplicate */
  messageId: string;
}

export interface OutboxRow {
  id: number;
  dedupe_key: string;
  kind: OutboxKind;
  event_id: string | null;
  rule: string | null;
  reason: string | null;
  /** JSON array of addresses */
  recipients: string;
  storm_group: string | null;
  window_start: number | null;
  /** a held row: the digest that lists it */
  digest_id: number | null;
  status: OutboxStatus;
  message_id: string;
  attempts: number;
  created_at: number;
  next_attempt_at: number | null;
  lease_until: number | null;
  lease_token: string | null;
  last_attempt_at: number | null;
  last_error: string | null;
  sent_at: number | null;
  response: string | null;
}

/** A row listed in a digest, with what the index knows of its event. */
export interface DigestItem {
  id: number;
  event_id: string | null;
  kind: OutboxKind;
  rule: string | null;
  reason: string | null;
  created_at: number;
  time: number | null;
  exe: string | null;
  comm: string | null;
  pid: number | null;
  signal_name: string | null;
  signature_text: string | null;
  event_reason: string | null;
}

export interface Claim {
  token: string;
  leaseUntil: number;
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

/** A column of the events table, as EventRow names it. */
export type EventColumn = (typeof COLUMNS)[number];
const COLUMN_NAMES: ReadonlySet<string> = new Set(COLUMNS);

/** Columns added by later migrations may be absent from a caller's row: they are NULL. */
function withAllColumns(row: EventRow): Record<string, unknown> {
  const out: Record<string, unknown> = { ...row };
  for (const c of COLUMNS) if (out[c] === undefined) out[c] = null;
  return out;
}

/**
 * An EventRow from a raw (array) row over COLUMNS, in that order. better-sqlite3 builds its
 * row objects one property at a time; one object literal is several times faster, which
 * is most of the time of a long `flightbox list`.
 */
function eventFromArray(r: readonly unknown[]): EventRow {
  return {
    id: r[0], kind: r[1], time: r[2], host: r[3], boot_id: r[4], pid: r[5], pid_ns: r[6], tid: r[7], uid: r[8], gid: r[9],
    signal: r[10], signal_name: r[11], exe: r[12], comm: r[13], cmdline: r[14], unit: r[15], cgroup: r[16], in_container: r[17],
    dumpable: r[18], signature: r[19], signature_text: r[20], rule: r[21], core_size: r[22], core_stored_size: r[23],
    core_truncated: r[24], has_core: r[25], bundle_size: r[26], warnings: r[27], bundle: r[28], indexed_at: r[29], reason: r[30],
  } as EventRow;
}

/** The columns `flightbox list` prints from (LIST_HEADERS in cli/format.ts), in this order. */
const LIST_COLUMNS = [
  'id', 'kind', 'time', 'pid', 'uid', 'signal_name', 'exe', 'comm', 'rule', 'reason', 'has_core', 'core_truncated', 'core_stored_size',
] as const;

/** What `flightbox list` shows of an event: an EventRow without the columns its table never reads. */
export type ListRow = Pick<EventRow, (typeof LIST_COLUMNS)[number]>;

function listRowFromArray(r: readonly unknown[]): ListRow {
  return {
    id: r[0], kind: r[1], time: r[2], pid: r[3], uid: r[4], signal_name: r[5], exe: r[6], comm: r[7], rule: r[8], reason: r[9],
    has_core: r[10], core_truncated: r[11], core_stored_size: r[12],
  } as ListRow;
}

/** A GroupRow from a raw row of a groups() query, whose columns all come in this order. */
function groupFromArray(r: readonly unknown[]): GroupRow {
  return { signature: r[0], count: r[1], first_seen: r[2], last_seen: r[3], last_id: r[4], exe: r[5], signature_text: r[6] } as GroupRow;
}

/** SQLite's BINARY order of two TEXT values (UTF-8 bytes), which JavaScript's `<` (UTF-16 units) is not past U+FFFF. */
function compareBinary(a: unknown, b: unknown): number {
  if (typeof a === 'string' && typeof b === 'string' && /^[\x00-\x7f]*$/.test(a) && /^[\x00-\x7f]*$/.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return Buffer.compare(Buffer.from(String(a)), Buffer.from(String(b)));
}

/**
 * Rows that SQLite returned by time, newest first, put in (time DESC, id DESC) order: only
 * events of the same millisecond move, by id. Sorting them in SQL too costs a sort of every
 * row with all its columns when the index already gives the time order.
 */
function orderSameTimeById(rows: unknown[][], time: number, id: number): void {
  for (let a = 0; a < rows.length;) {
    let b = a + 1;
    while (b < rows.length && rows[b]![time] === rows[a]![time]) b++;
    if (b - a > 1) {
      const run = rows.slice(a, b).sort((x, y) => compareBinary(y[id], x[id]));
      for (let k = 0; k < run.length; k++) rows[a + k] = run[k]!;
    }
    a = b;
  }
}

/**
 * Put rows newest first by time, as `ORDER BY time DESC` does (events of one millisecond in
 * any order). False, the rows untouched, when a time is not a finite number: a TEXT time sorts
 * as SQLite sorts it only in SQL. Rows already in time order, either way, are looked at once.
 */
function putNewestFirst(rows: unknown[][], time: number): boolean {
  let newer = 0;
  let older = 0;
  for (let i = 0; i < rows.length; i++) {
    const t = rows[i]![time];
    if (typeof t !== 'number' || !Number.isFinite(t)) return false;
    if (i > 0) {
      const prev = rows[i - 1]![time] as number;
      if (t > prev) newer++;
      else if (t < prev) older++;
    }
  }
  if (newer === 0) return true;
  if (older === 0) rows.reverse();
  else rows.sort((a, b) => (b[time] as number) - (a[time] as number));
  return true;
}

/** A path matches exactly; a bare name matches the executable's base name (case-sensitive, as file names are). */
function exeClause(exe: string, params: Record<string, string | number>): string {
  params.exe = exe;
  return exe.includes('/') ? 'exe = @exe' : `${EXE_NAME_SQL} = @exe`;
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
  #delete: Database.Statement;
  #byId: Database.Statement;
  #byPrefix: Database.Statement;
  readonly #stmts = new Map<string, Database.Statement>();

  constructor(path: string, opts: { busyTimeoutMs: number; readonly?: boolean }) {
    try {
      const Ctor = database();
      // (better-sqlite3 takes a loaded addon object too; its types name only the path)
      this.db = new Ctor(path, { timeout: opts.busyTimeoutMs, readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false, nativeBinding: nativeBinding as string | undefined });
      if (!opts.readonly) {
        this.db.pragma('journal_mode = WAL');
        this.db.pragma('synchronous = NORMAL');
        // A REPLACE fires delete triggers (crash_group_counts) only with this on.
        this.db.pragma('recursive_triggers = ON');
        // A statement that fires triggers keeps a statement journal, which spills to a temp
        // file past 64 KiB: in a big transaction (reindex) that was a file per inserted row.
        // It holds the pages one statement touches: small.
        this.db.pragma('temp_store = MEMORY');
        this.#migrate();
      }
    } catch (err) {
      throw new FlightboxError('STORE_CORRUPT', `cannot open the index ${path}: ${messageOf(err)}`, { cause: err });
    }
    const cols = COLUMNS.join(', ');
    const vals = COLUMNS.map((c) => `@${c}`).join(', ');
    // `pinned` is retention state, not part of an EventRow (which is what a manifest says):
    // written with every row (REPLACE would otherwise reset it), read through isPinned().
    this.#insert = this.db.prepare(`INSERT INTO events (${cols}, pinned) VALUES (${vals}, @pinned)`);
    this.#delete = this.db.prepare('DELETE FROM events WHERE id = ?');
    this.#byId = this.db.prepare(`SELECT ${cols} FROM events WHERE id = ?`);
    // Two rows are enough to tell unique from ambiguous; no ORDER BY, so that a short prefix
    // matching most of the index stops at the second row instead of sorting them all.
    this.#byPrefix = this.db.prepare(`SELECT ${cols} FROM events WHERE id >= ? AND id < ? LIMIT 2`);
  }

  #migrate(): void {
    // Up to date, as at every open but the first after an upgrade: a plain read, no write
    // lock (in a crash storm every handler opens the index; each taking the write lock just
    // to read the version queued them all behind each other's busy waits).
    if (this.db.pragma('user_version', { simple: true }) === MIGRATIONS.length) return;
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

  insert(row: EventRow, opts: { pinned?: boolean } = {}): void {
    this.#insert.run({ ...withAllColumns(row), pinned: opts.pinned ? 1 : 0 });
  }

  /** Insert or replace; `pinned` comes from the bundle on disk (Store.isPinned), the truth. */
  upsert(row: EventRow, opts: { pinned?: boolean } = {}): void {
    // Delete, then insert (what REPLACE does), spelled out so that the delete trigger fires
    // whatever the connection's recursive_triggers.
    this.db.transaction(() => {
      this.#delete.run(row.id);
      this.#insert.run({ ...withAllColumns(row), pinned: opts.pinned ? 1 : 0 });
    })();
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

  /** Events matching `f`, every column. */
  list(f: EventFilter = {}): EventRow[] {
    const rows = this.#select(COLUMNS, f);
    const out = new Array<EventRow>(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = eventFromArray(rows[i]!);
    return out;
  }

  /** The same events as list(), with only the columns `flightbox list` prints (several times fewer values to build). */
  listRows(f: EventFilter = {}): ListRow[] {
    const rows = this.#select(LIST_COLUMNS, f);
    const out = new Array<ListRow>(rows.length);
    for (let i = 0; i < rows.length; i++) out[i] = listRowFromArray(rows[i]!);
    return out;
  }

  /**
   * The same events as list(), each as an array of the values of `columns` (id and time among
   * them), in that order: for a caller that builds its own object of an event (eventsJson in
   * cli/format.ts), which would otherwise build an EventRow first and then its own from that.
   */
  listValues(columns: readonly EventColumn[], f: EventFilter = {}): unknown[][] {
    // The names go into the SQL text: only the table's own.
    for (const c of columns) {
      if (!COLUMN_NAMES.has(c)) throw new FlightboxError('INTERNAL', `listValues: ${JSON.stringify(c)} is not a column of events`);
    }
    if (!columns.includes('id') || !columns.includes('time')) throw new FlightboxError('INTERNAL', 'listValues: the columns must hold id and time (they order the rows)');
    return this.#select(columns, f);
  }

  /**
   * The events matching `f` as arrays over `columns` (which hold id and time), oldest first
   * unless reverse. Most of the time of a long list is making JavaScript values: on Node 20
   * better-sqlite3 sets each value of a raw row on its array one call at a time, so the rows
   * come as JSON and JSON.parse builds the arrays (the same values: SQLite writes a REAL with
   * 17 digits). All of them as one JSON text, in one BLOB: one copy of its bytes instead of a
   * string decoded from UTF-8 per row (ASCII, the usual text, becomes a string without
   * decoding), and one JSON.parse instead of one per row. Row by row, in SQLite's order, when
   * that text is more than SQLite or a string holds, or a time is not a number. JSON cannot
   * hold a BLOB, which nothing here writes: such a row makes the query run again the plain way.
   */
  #select(columns: readonly string[], f: EventFilter): unknown[][] {
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
    // With a limit SQLite orders by id too (which N is decided there); without one, by time
    // only, as the index delivers them, and events of the same millisecond are put in id
    // order here.
    const limited = f.limit !== undefined;
    const order = limited ? 'ORDER BY time DESC, id DESC LIMIT @limit' : 'ORDER BY time DESC';
    if (limited) params.limit = f.limit!;
    const cols = columns.join(', ');
    const time = columns.indexOf('time');
    const id = columns.indexOf('id');
    let rows: unknown[][] | null = null;
    // Whether events of the same millisecond come in id order: as SQLite sorted them (a
    // limit), row by row only.
    let sameMsSorted = false;
    let blobs = false;
    try {
      // Without a limit the aggregate takes the events in the order SQLite reads them (an
      // index's: by time within one value of the filter; the table's: as inserted), and they
      // are put newest first here: ordered by a subquery, SQLite would copy every value of
      // every row through it, a quarter more time for a day of events.
      // With a limit the subquery decides which N, over N rows; json_array is in the outer
      // query, as a JSON value out of a subquery would be taken for text and quoted.
      const source = limited ? `(SELECT ${cols} FROM events ${clause} ${order})` : `events ${clause}`;
      const blob = this.db.prepare(`SELECT CAST(json_group_array(json_array(${cols})) AS BLOB) FROM ${source}`).pluck().get(params) as Buffer;
      const all = JSON.parse(blob.toString(isAscii(blob) ? 'latin1' : 'utf8')) as unknown[][];
      if (putNewestFirst(all, time)) rows = all;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (/JSON cannot hold BLOB values/.test(messageOf(err))) blobs = true;
      else if (code !== 'SQLITE_TOOBIG' && code !== 'ERR_STRING_TOO_LONG') throw err;
    }
    if (rows === null && !blobs) {
      try {
        const texts = this.db.prepare(`SELECT json_array(${cols}) FROM events ${clause} ${order}`).pluck().all(params) as string[];
        rows = new Array<unknown[]>(texts.length);
        for (let i = 0; i < texts.length; i++) rows[i] = JSON.parse(texts[i]!) as unknown[];
        sameMsSorted = limited;
      } catch (err) {
        if (!/JSON cannot hold BLOB values/.test(messageOf(err))) throw err;
      }
    }
    if (rows === null) {
      rows = this.db.prepare(`SELECT ${cols} FROM events ${clause} ${order}`).raw().all(params) as unknown[][];
      sameMsSorted = limited;
    }
    if (!sameMsSorted) orderSameTimeById(rows, time, id);
    return f.reverse ? rows : rows.reverse();
  }

  groups(f: { since?: number; exe?: string } = {}): GroupRow[] {
    const params: Record<string, string | number> = {};
    const order = 'ORDER BY count DESC, last_seen DESC, signature'; // ties in count and last seen go by signature
    const version = this.db.pragma('user_version', { simple: true }) as number;
    // Raw rows and one object literal each: better-sqlite3 builds a row object a property at a time.
    const rows = (sql: string): GroupRow[] => (this.#stmt(sql).raw().all(params) as unknown[][]).map(groupFromArray);
    if (f.exe === undefined && version >= GROUP_COUNTS_VERSION) {
      // From crash_group_counts: one row per group instead of one per crash. Since a time:
      // the groups seen since then, their crashes since then counted on the partial index
      // (unless the whole group is that recent); the newest crash is the same.
      const newest = 'last_id, last_exe AS exe, last_text AS signature_text';
      if (f.since === undefined) return rows(`SELECT signature, count, first_seen, last_seen, ${newest} FROM crash_group_counts ${order}`);
      params.since = f.since;
      return rows(
        `SELECT signature,
                CASE WHEN first_seen >= @since THEN count ELSE
                  (SELECT count(*) FROM events e WHERE e.kind = 'crash' AND e.signature = c.signature AND e.time >= @since) END AS count,
                CASE WHEN first_seen >= @since THEN first_seen ELSE
                  (SELECT min(e.time) FROM events e WHERE e.kind = 'crash' AND e.signature = c.signature AND e.time >= @since) END AS first_seen,
                last_seen, ${newest}
         FROM crash_group_counts c WHERE last_seen >= @since ${order}`,
      );
    }
    if (f.exe !== undefined && f.since === undefined && version >= EXE_GROUP_COUNTS_VERSION) {
      // From crash_exe_group_counts: a row per path and signature. A base name may name
      // several paths: their rows of one signature add up, and the newest crash is that of
      // the row with the newest (last seen, last id), as over the events.
      return rows(
        `WITH c AS (SELECT exe, signature, count, first_seen, last_seen, last_id, last_text FROM crash_exe_group_counts WHERE ${exeClause(f.exe, params)}),
              g AS (SELECT signature, sum(count) AS count, min(first_seen) AS first_seen, max(last_seen) AS last_seen FROM c GROUP BY signature)
         SELECT g.signature, g.count, g.first_seen, g.last_seen, n.last_id, n.exe, n.last_text AS signature_text
         FROM g JOIN c AS n ON n.signature = g.signature
           AND n.exe = (SELECT x.exe FROM c AS x WHERE x.signature = g.signature ORDER BY x.last_seen DESC, x.last_id DESC LIMIT 1)
         ORDER BY g.count DESC, g.last_seen DESC, g.signature`,
      );
    }
    const where = ["kind = 'crash'", 'signature IS NOT NULL'];
    if (f.since !== undefined) { where.push('time >= @since'); params.since = f.since; }
    if (f.exe !== undefined) where.push(exeClause(f.exe, params));
    // Counts per signature, then the newest event of each group for its id, exe and text
    // (max(id) would sort ids as strings, not by time).
    return rows(`WITH f AS (SELECT rowid AS event_rowid, id, time, signature FROM events WHERE ${where.join(' AND ')}),
                      g AS (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen FROM f GROUP BY signature)
                 SELECT g.signature, g.count, g.first_seen, g.last_seen, last.id AS last_id, last.exe AS exe, last.signature_text AS signature_text
                 FROM g JOIN events AS last ON last.rowid = (SELECT event_rowid FROM f WHERE f.signature = g.signature ORDER BY time DESC, id DESC LIMIT 1)
                 ORDER BY g.count DESC, g.last_seen DESC, g.signature`);
  }

  /** Crashes of `exe` since `since` (ms) whose core was kept: the per-executable rate limit. */
  coresSince(exe: string, since: number): number {
    return (this.db.prepare("SELECT count(*) FROM events WHERE exe = ? AND time >= ? AND kind = 'crash' AND has_core = 1").pluck().get(exe, since) as number);
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

  // ---- outbox (notify/) ----------------------------------------------------------------
  // Every change of a row's status happens in one synchronous transaction. A sender claims a
  // row (status 'sending', a lease and a token) before it talks to the server, so two senders
  // never send the same row at once; a row whose lease ran out (its sender died mid-send) is
  // claimed again: that mail may reach the server twice, with the same Message-ID.

  /**
   * Queue a mail (in the caller's transaction, if any). Storm control: the first
   * `maxPerHour` mails of a group in a window go out one by one; later ones are held, due at
   * the window's end, when one digest lists them all. Returns null for a duplicate key.
   */
  queueMail(req: OutboxRequest, now: number, claim?: Claim): { id: number; status: OutboxStatus } | null {
    return this.db.transaction((): { id: number; status: OutboxStatus } | null => {
      if (this.#stmt('SELECT 1 FROM outbox WHERE dedupe_key = ?').get(req.key)) return null;
      let status: OutboxStatus = 'pending';
      let windowStart: number | null = null;
      let due = now;
      if (req.group !== null) {
        const last = this.#stmt("SELECT max(window_start) FROM outbox WHERE storm_group = ? AND kind != 'digest'").pluck().get(req.group) as number | null;
        // A new window when the last one is over (or the clock went back: start over rather than hold for long).
        windowStart = last === null || now >= last + req.windowMs || now < last ? now : last;
        const mailed = windowStart !== last ? 0 : this.#stmt(
          "SELECT count(*) FROM outbox WHERE storm_group = ? AND window_start = ? AND kind != 'digest' AND status NOT IN ('held', 'digested')",
        ).pluck().get(req.group, windowStart) as number;
        if (mailed >= req.maxPerHour) {
          status = 'held';
          due = windowStart + req.windowMs;
        }
      }
      const claimed = claim !== undefined && status === 'pending';
      const r = this.#stmt(
        `INSERT INTO outbox (dedupe_key, kind, event_id, rule, reason, recipients, storm_group, window_start, status, message_id,
                             attempts, created_at, next_attempt_at, lease_until, lease_token, last_attempt_at)
         VALUES (@key, @kind, @eventId, @rule, @reason, @recipients, @group, @windowStart, @status, @messageId,
                 @attempts, @now, @due, @leaseUntil, @token, @lastAttempt)`,
      ).run({
        key: req.key, kind: req.kind, eventId: req.eventId, rule: req.rule, reason: req.reason, recipients: JSON.stringify(req.to),
        group: req.group, windowStart, status: claimed ? 'sending' : status, messageId: req.messageId, attempts: claimed ? 1 : 0, now, due,
        leaseUntil: claimed ? claim.leaseUntil : null, token: claimed ? claim.token : null, lastAttempt: claimed ? now : null,
      });
      return { id: Number(r.lastInsertRowid), status: claimed ? 'sending' : status };
    }).immediate();
  }

  outboxRow(id: number): OutboxRow | undefined {
    return this.#stmt('SELECT * FROM outbox WHERE id = ?').get(id) as OutboxRow | undefined;
  }

  outboxByKey(key: string): OutboxRow | undefined {
    return this.#stmt('SELECT * FROM outbox WHERE dedupe_key = ?').get(key) as OutboxRow | undefined;
  }

  /** Mail not yet sent (pending, sending, held for a digest, failed), or every row with `all`. */
  listOutbox(opts: { all?: boolean } = {}): OutboxRow[] {
    return this.#stmt(opts.all
      ? 'SELECT * FROM outbox ORDER BY id'
      : "SELECT * FROM outbox WHERE status IN ('pending', 'sending', 'held', 'failed') ORDER BY id").all() as OutboxRow[];
  }

  /**
   * Held rows whose window has ended become one digest per group and window (a pending row
   * of its own). Returns the new digests' ids.
   */
  makeDigests(now: number, messageIdFor: (key: string) => string): number[] {
    return this.db.transaction(() => {
      const groups = this.#stmt(
        "SELECT storm_group AS g, window_start AS w, min(id) AS first, count(*) AS n FROM outbox WHERE status = 'held' GROUP BY storm_group, window_start HAVING min(next_attempt_at) <= ?",
      ).all(now) as { g: string; w: number; first: number; n: number }[];
      const ids: number[] = [];
      for (const { g, w, first, n } of groups) {
        const to = new Set<string>();
        for (const r of this.#stmt("SELECT recipients FROM outbox WHERE status = 'held' AND storm_group = ? AND window_start = ?").pluck().all(g, w) as string[]) {
          for (const a of JSON.parse(r) as string[]) to.add(a);
        }
        const key = `digest:${g}:${w}:${first}`;
        const r = this.#stmt(
          `INSERT INTO outbox (dedupe_key, kind, event_id, rule, reason, recipients, storm_group, window_start, status, message_id, created_at, next_attempt_at)
           VALUES (?, 'digest', NULL, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)`,
        ).run(key, g.startsWith('rule:') ? g.slice(5) : null, `${n} event${n === 1 ? '' : 's'} not mailed one by one`, JSON.stringify([...to]), g, w, messageIdFor(key), now, now);
        const id = Number(r.lastInsertRowid);
        this.#stmt("UPDATE outbox SET status = 'digested', digest_id = ? WHERE status = 'held' AND storm_group = ? AND window_start = ?").run(id, g, w);
        ids.push(id);
      }
      return ids;
    }).immediate();
  }

  /** The rows a digest lists, with their events (when still indexed). */
  digestItems(digestId: number): DigestItem[] {
    return this.#stmt(
      `SELECT o.id, o.event_id, o.kind, o.rule, o.reason, o.created_at, e.time, e.exe, e.comm, e.pid, e.signal_name, e.signature_text,
              e.reason AS event_reason
       FROM outbox o LEFT JOIN events e ON e.id = o.event_id WHERE o.digest_id = ? ORDER BY o.id`,
    ).all(digestId) as DigestItem[];
  }

  /**
   * Claim up to `limit` rows that are due, and rows whose sender's lease ran out. A row out of
   * attempts whose lease ran out is marked failed instead.
   */
  claimDue(now: number, opts: { claim: Claim; limit: number; maxAttempts: number }): OutboxRow[] {
    return this.db.transaction(() => {
      this.#stmt(
        `UPDATE outbox SET status = 'failed', lease_token = NULL, lease_until = NULL, next_attempt_at = NULL,
                last_error = 'the sender stopped while sending (its lease ran out) and no attempts are left'
         WHERE status = 'sending' AND lease_until <= ? AND attempts >= ?`,
      ).run(now, opts.maxAttempts);
      return this.#stmt(
        `UPDATE outbox SET status = 'sending', lease_token = @token, lease_until = @leaseUntil, attempts = attempts + 1, last_attempt_at = @now
         WHERE id IN (SELECT id FROM outbox
                      WHERE (status = 'pending' AND next_attempt_at <= @now) OR (status = 'sending' AND lease_until <= @now)
                      ORDER BY next_attempt_at, id LIMIT @limit)
         RETURNING *`,
      ).all({ token: opts.claim.token, leaseUntil: opts.claim.leaseUntil, now, limit: opts.limit }) as OutboxRow[];
    }).immediate();
  }

  /**
   * Claim one row now, whatever its next attempt (`flightbox mail`, a retry by hand): a
   * pending or failed row, or one whose lease ran out. Undefined when another sender holds it
   * or it was sent.
   */
  claimRow(id: number, now: number, claim: Claim): OutboxRow | undefined {
    return this.#stmt(
      `UPDATE outbox SET status = 'sending', lease_token = @token, lease_until = @leaseUntil, attempts = attempts + 1, last_attempt_at = @now
       WHERE id = @id AND (status IN ('pending', 'failed') OR (status = 'sending' AND lease_until <= @now))
       RETURNING *`,
    ).get({ id, now, token: claim.token, leaseUntil: claim.leaseUntil }) as OutboxRow | undefined;
  }

  /**
   * The server took the mail. Recorded even when this sender's lease was taken over (the mail
   * did go out); a row already sent stays as it was.
   */
  markSent(id: number, now: number, response: string | null): boolean {
    return this.#stmt(
      `UPDATE outbox SET status = 'sent', sent_at = ?, response = ?, last_error = NULL, lease_token = NULL, lease_until = NULL, next_attempt_at = NULL
       WHERE id = ? AND status != 'sent'`,
    ).run(now, response, id).changes === 1;
  }

  /** An attempt failed: retry at `retryAt`, or give up (null). Only by the holder of the lease. */
  markAttemptFailed(id: number, token: string, error: string, retryAt: number | null): boolean {
    return this.#stmt(
      `UPDATE outbox SET status = CASE WHEN @retryAt IS NULL THEN 'failed' ELSE 'pending' END, next_attempt_at = @retryAt, last_error = @error,
              lease_token = NULL, lease_until = NULL
       WHERE id = @id AND status = 'sending' AND lease_token = @token`,
    ).run({ id, token, error, retryAt }).changes === 1;
  }

  /** Make every pending row due now (the transport's config changed: try again at once). */
  retryNow(now: number): number {
    return this.#stmt("UPDATE outbox SET next_attempt_at = ? WHERE status = 'pending' AND next_attempt_at > ?").run(now, now).changes;
  }

  /** The earliest next attempt of a pending or held row, and the earliest lease to run out. */
  nextOutboxWake(): number | null {
    return this.#stmt(
      `SELECT min(t) FROM (SELECT min(next_attempt_at) AS t FROM outbox WHERE status IN ('pending', 'held')
                           UNION ALL SELECT min(lease_until) FROM outbox WHERE status = 'sending')`,
    ).pluck().get() as number | null;
  }

  outboxCounts(): Record<OutboxStatus, number> {
    const out: Record<OutboxStatus, number> = { pending: 0, sending: 0, sent: 0, failed: 0, held: 0, digested: 0 };
    for (const r of this.#stmt('SELECT status, count(*) AS n FROM outbox GROUP BY status').all() as { status: OutboxStatus; n: number }[]) out[r.status] = r.n;
    return out;
  }

  /** Statements prepared once, on first use (the crash handler never needs most of them). */
  #stmt(sql: string): Database.Statement {
    let s = this.#stmts.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.#stmts.set(sql, s);
    }
    return s;
  }

  // ---- retention (store/retention.ts) --------------------------------------------------

  /** Every event with what the vacuum plans from: group, age, size, pin. */
  retentionRows(): RetentionRow[] {
    return this.#stmt('SELECT id, kind, time, exe, comm, coalesce(bundle_size, 0) AS size, pinned FROM events ORDER BY time, id').all() as RetentionRow[];
  }

  isPinned(id: string): boolean {
    return this.#stmt('SELECT pinned FROM events WHERE id = ?').pluck().get(id) === 1;
  }

  /** Returns false when no such event is indexed. */
  setPinned(id: string, pinned: boolean): boolean {
    return this.#stmt('UPDATE events SET pinned = ? WHERE id = ?').run(pinned ? 1 : 0, id).changes === 1;
  }

  /**
   * Drop the rows of deleted events, and fail their mail that has not gone out yet (the
   * sender would find no bundle): one transaction. Mail being sent right now, held for a
   * digest (which needs no bundle) or already sent is left as it is.
   */
  deleteEvents(ids: readonly string[], why: string): { events: number; mailFailed: number } {
    let events = 0;
    let mailFailed = 0;
    this.db.transaction(() => {
      for (const id of ids) {
        events += this.#stmt('DELETE FROM events WHERE id = ?').run(id).changes;
        mailFailed += this.#stmt(
          `UPDATE outbox SET status = 'failed', last_error = ?, next_attempt_at = NULL
           WHERE event_id = ? AND status = 'pending' AND kind != 'digest'`,
        ).run(`the event was deleted before its mail was sent (${why})`, id).changes;
      }
    }).immediate();
    return { events, mailFailed };
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
