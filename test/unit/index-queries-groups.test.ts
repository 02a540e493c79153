// `groups --exe` from migration 6's crash_exe_group_counts: kept right by triggers through
// every kind of write, added to an index of the previous version on opening (its data kept),
// and giving what the events themselves say, for a path and for a base name shared by paths.
import { describe, expect, it } from 'vitest';
import { useTempIndex } from './index-fixture.js';
import { IndexDb, SCHEMA_VERSION, type EventRow } from '../../store/index-db.js';

const idx = useTempIndex('fbx-groups-');
const openDb = idx.openDb;

const BASE = Date.UTC(2026, 10, 26, 6, 0, 0);

function crash(n: number, over: Partial<EventRow> = {}): EventRow {
  const time = over.time ?? BASE + n * 1000;
  const id = over.id ?? `20261126T06${String(n).padStart(4, '0')}-${n}-${n.toString(16).padStart(6, '0')}`;
  return {
    id, kind: 'crash', time, host: 'h', boot_id: 'b', pid: n, pid_ns: null, tid: n, uid: 0, gid: 0, signal: 11, signal_name: 'SIGSEGV',
    exe: '/usr/bin/prog', comm: 'prog', cmdline: null, unit: null, cgroup: null, in_container: 0, dumpable: 1, signature: 's1',
    signature_text: `text ${n}`, rule: null, core_size: null, core_stored_size: null, core_truncated: 0, has_core: 0, bundle_size: 1, warnings: 0,
    bundle: `bundles/2026-11-26/${id}`, indexed_at: time, reason: null, ...over,
  };
}

/** What crash_exe_group_counts must always hold: per path and signature, the aggregate and the newest crash. */
const truth = (db: IndexDb) => db.db.prepare(
  `SELECT g.exe, g.signature, g.count, g.first_seen, g.last_seen, e.id AS last_id, e.signature_text AS last_text
   FROM (SELECT exe, signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen
         FROM events WHERE kind = 'crash' AND signature IS NOT NULL AND exe IS NOT NULL GROUP BY exe, signature) g
   JOIN events e ON e.id = (SELECT n.id FROM events n WHERE n.kind = 'crash' AND n.signature = g.signature AND n.exe = g.exe ORDER BY n.time DESC, n.id DESC LIMIT 1)
   ORDER BY g.exe, g.signature`,
).all();
const counts = (db: IndexDb) => db.db.prepare('SELECT * FROM crash_exe_group_counts ORDER BY exe, signature').all();

/** groups({ exe }) as it was computed before migration 6: over the events. */
const EXE_NAME_SQL = "replace(exe, rtrim(exe, replace(exe, '/', '')), '')";
const fromEvents = (db: IndexDb, exe: string, since?: number) => db.db.prepare(
  `WITH f AS (SELECT * FROM events WHERE kind = 'crash' AND signature IS NOT NULL AND ${exe.includes('/') ? 'exe' : EXE_NAME_SQL} = @exe
              ${since === undefined ? '' : 'AND time >= @since'}),
        g AS (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen FROM f GROUP BY signature)
   SELECT g.signature, g.count, g.first_seen, g.last_seen, last.id AS last_id, last.exe AS exe, last.signature_text AS signature_text
   FROM g JOIN f AS last ON last.id = (SELECT id FROM f WHERE f.signature = g.signature ORDER BY time DESC, id DESC LIMIT 1)
   ORDER BY g.count DESC, g.last_seen DESC, g.signature`,
).all(since === undefined ? { exe } : { exe, since });

/** Back to schema version 5, as the flightbox before migration 6 left an index. */
function downgradeTo5(db: IndexDb): void {
  db.db.exec(`DROP TRIGGER events_crash_exe_groups_insert; DROP TRIGGER events_crash_exe_groups_delete; DROP TRIGGER events_crash_exe_groups_update;
              DROP TABLE crash_exe_group_counts;`);
  db.db.pragma('user_version = 5');
}

/** Paths that share base names, signatures shared between them, crashes without an exe, snapshots. */
function fill(db: IndexDb, n: number, seed = 1): EventRow[] {
  const rand = (() => {
    let a = seed;
    return () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
  })();
  const exes = ['/bin/sh', '/usr/bin/sh', 'sh', '/usr/bin/prog', '/opt/a/prog', null];
  const rows: EventRow[] = [];
  for (let i = 1; i <= n; i++) {
    const r = crash(i, {
      time: BASE + Math.floor(rand() * 60) * 1000, // times collide: the newest is then the greatest id
      exe: exes[Math.floor(rand() * exes.length)]!,
      signature: ['s1', 's2', 's3', null][Math.floor(rand() * 4)]!,
      kind: rand() < 0.1 ? 'snapshot' : 'crash',
    });
    db.insert(r);
    rows.push(r);
  }
  return rows;
}

const QUERIES = ['sh', '/bin/sh', '/usr/bin/sh', 'prog', '/opt/a/prog', '/usr/bin/prog', 'nothing', '/no/such', 'a%', ''];

describe('migration 6: crash_exe_group_counts', () => {
  it('a new index is at version 6 with the table, filled by inserts', () => {
    const db = openDb();
    expect(SCHEMA_VERSION).toBe(6);
    expect(db.db.pragma('user_version', { simple: true })).toBe(6);
    fill(db, 120);
    expect(counts(db).length).toBeGreaterThan(5);
    expect(counts(db)).toEqual(truth(db));
  });

  it('groups --exe, by path or by base name, is what the events say', () => {
    const db = openDb();
    fill(db, 300);
    for (const exe of QUERIES) expect(db.groups({ exe }), exe).toEqual(fromEvents(db, exe));
    // sh's signatures come from three paths: one group each, counted over all of them
    const sh = db.groups({ exe: 'sh' });
    expect(sh.length).toBe(3);
    expect(sh.reduce((a, g) => a + g.count, 0)).toBe(db.db.prepare(
      "SELECT count(*) FROM events WHERE kind = 'crash' AND signature IS NOT NULL AND exe IN ('/bin/sh', '/usr/bin/sh', 'sh')",
    ).pluck().get());
  });

  it('groups --exe reads the counts, not the crashes (a count changed behind its back shows)', () => {
    const db = openDb();
    fill(db, 50);
    db.db.prepare("UPDATE crash_exe_group_counts SET count = 9999 WHERE exe = '/opt/a/prog'").run();
    expect(db.groups({ exe: '/opt/a/prog' }).every((g) => g.count === 9999)).toBe(true);
    expect(db.groups({ exe: 'prog' }).every((g) => g.count > 9999)).toBe(true);
    // with --since it counts the crashes themselves
    expect(db.groups({ exe: '/opt/a/prog', since: 0 })).toEqual(fromEvents(db, '/opt/a/prog', 0));
  });

  it('groups --exe --since counts only what is that recent', () => {
    const db = openDb();
    fill(db, 200);
    for (const since of [0, BASE + 20_000, BASE + 59_000, BASE + 100_000]) {
      for (const exe of ['sh', '/usr/bin/sh', 'prog']) expect(db.groups({ exe, since }), `${exe} since ${since}`).toEqual(fromEvents(db, exe, since));
    }
  });

  it('the newest crash of a group across two paths is the one with the greatest id when their times are equal', () => {
    const db = openDb();
    const t = BASE + 5000;
    db.insert(crash(1, { time: t, id: 'b-1', exe: '/bin/sh', signature_text: 'from /bin/sh' }));
    db.insert(crash(2, { time: t, id: 'a-2', exe: '/usr/bin/sh', signature_text: 'from /usr/bin/sh' }));
    db.insert(crash(3, { time: t - 1000, id: 'z-3', exe: '/usr/bin/sh' }));
    expect(db.groups({ exe: 'sh' })).toEqual([
      { signature: 's1', count: 3, first_seen: t - 1000, last_seen: t, last_id: 'b-1', exe: '/bin/sh', signature_text: 'from /bin/sh' },
    ]);
    expect(db.groups({ exe: 'sh' })).toEqual(fromEvents(db, 'sh'));
  });

  it('the counts follow every insert, upsert, update and delete', () => {
    const db = openDb();
    const rand = (() => {
      let a = 4242;
      return () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
    })();
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)]!;
    const exes = ['/bin/sh', '/usr/bin/sh', '/usr/bin/prog', null];
    const sigs = ['s1', 's2', null];
    const live = new Map<string, EventRow>();
    for (let step = 0; step < 500; step++) {
      const op = rand();
      const existing = [...live.values()];
      const old = existing.length > 0 ? pick(existing) : undefined;
      if (op < 0.4 || !old) {
        const r = crash(step + 1, {
          time: BASE + Math.floor(rand() * 50) * 1000, exe: pick(exes), signature: pick(sigs), kind: rand() < 0.15 ? 'snapshot' : 'crash', signature_text: `t${step}`,
        });
        db.insert(r);
        live.set(r.id, r);
      } else if (op < 0.55) {
        // reindex: the same id again with its exe, signature, time or kind changed
        const r = { ...old, exe: pick(exes), signature: pick(sigs), time: BASE + Math.floor(rand() * 50) * 1000, kind: rand() < 0.15 ? 'snapshot' as const : 'crash' as const };
        db.upsert(r);
        live.set(r.id, r);
      } else if (op < 0.65) {
        db.db.prepare('UPDATE events SET exe = ?, time = ? WHERE id = ?').run(pick(exes), BASE + Math.floor(rand() * 50) * 1000, old.id);
      } else if (op < 0.7) {
        db.db.prepare('UPDATE events SET signature = ?, signature_text = ? WHERE id = ?').run(pick(sigs), `u${step}`, old.id);
      } else if (op < 0.73) {
        db.db.prepare("UPDATE events SET kind = CASE kind WHEN 'crash' THEN 'snapshot' ELSE 'crash' END WHERE id = ?").run(old.id);
      } else if (op < 0.75) {
        db.db.prepare('UPDATE events SET id = ? WHERE id = ?').run(`${old.id}-renamed`, old.id);
        live.delete(old.id);
        live.set(`${old.id}-renamed`, { ...old, id: `${old.id}-renamed` });
      } else if (op < 0.95) {
        db.deleteEvents([old.id], 'test');
        live.delete(old.id);
      } else {
        const keep = new Set(existing.filter(() => rand() < 0.8).map((r) => r.id));
        db.deleteMissing(keep);
        for (const id of [...live.keys()]) if (!keep.has(id)) live.delete(id);
      }
      expect(counts(db), `after step ${step}`).toEqual(truth(db));
    }
    expect(counts(db).length).toBeGreaterThan(0);
    for (const exe of QUERIES) expect(db.groups({ exe }), exe).toEqual(fromEvents(db, exe));
  });

  it.each([
    ['a base name', `${EXE_NAME_SQL} = ?`, 'crash_exe_group_counts_name'],
    ['a path', 'exe = ?', 'PRIMARY KEY (exe=?)'],
  ])('the counts of %s are found through an index, not by reading them all', (_what, clause, index) => {
    // The base-name index is on the very text the events' index and the queries use.
    const db = openDb();
    const plan = JSON.stringify(db.db.prepare(`EXPLAIN QUERY PLAN SELECT * FROM crash_exe_group_counts WHERE ${clause}`).all('sh'));
    expect(plan).toContain(index);
    expect(plan).not.toContain('SCAN');
  });

  it("the delete trigger's look-ups walk the signature's events, not every crash by time", () => {
    // Given the choice, SQLite walked events_kind_time from the oldest crash on: milliseconds
    // a delete at a million events. Each look-up, as the trigger has it, explained.
    const db = openDb();
    const sql = db.db.prepare("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'events_crash_exe_groups_delete'").pluck().get() as string;
    const lookups = [...sql.matchAll(/\(SELECT e\.time[^()]*? FROM events e WHERE [^()]*? LIMIT 1\)/g)].map((m) => m[0].slice(1, -1));
    expect(lookups).toHaveLength(2);
    for (const q of lookups) {
      const plan = JSON.stringify(db.db.prepare(`EXPLAIN QUERY PLAN ${q.replace(/OLD\.\w+/g, '?')}`).all('s1', '/bin/sh'));
      expect(plan, q).toMatch(/USING (COVERING )?INDEX events_(crash_)?signature_time \(signature=\?/);
    }
  });

  it('an INSERT OR REPLACE on the connection keeps the counts right too', () => {
    const db = openDb();
    db.insert(crash(1, { exe: '/bin/sh' }));
    db.db.prepare("INSERT OR REPLACE INTO events (id, kind, time, exe, signature, bundle, indexed_at) VALUES (?, 'crash', ?, '/usr/bin/sh', 's9', 'b', 0)")
      .run(crash(1).id, BASE);
    expect(counts(db)).toEqual(truth(db));
    expect(counts(db)).toEqual([{ exe: '/usr/bin/sh', signature: 's9', count: 1, first_seen: BASE, last_seen: BASE, last_id: crash(1).id, last_text: null }]);
  });

  it('an index of version 5 gets the table on opening, its events, counts and answers unchanged', () => {
    const a = openDb();
    fill(a, 400, 99);
    downgradeTo5(a);
    expect(a.db.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'crash_exe_group_counts'").pluck().get()).toBe(0);
    const events = a.db.prepare('SELECT * FROM events ORDER BY id').all();
    const list = a.list();
    const groups = a.groups();
    const byExe = QUERIES.map((exe) => a.groups({ exe })); // over the events: version 5 has no table
    a.close();

    const b = openDb();
    expect(b.db.pragma('user_version', { simple: true })).toBe(6);
    expect(b.db.prepare('SELECT * FROM events ORDER BY id').all()).toEqual(events);
    expect(b.list()).toEqual(list);
    expect(b.groups()).toEqual(groups);
    expect(counts(b)).toEqual(truth(b));
    expect(counts(b).length).toBeGreaterThan(5);
    expect(QUERIES.map((exe) => b.groups({ exe }))).toEqual(byExe);
    // and the triggers are there: a new crash is counted
    b.insert(crash(1000, { exe: '/opt/a/prog', signature: 'new' }));
    expect(b.groups({ exe: 'prog' }).find((g) => g.signature === 'new')).toMatchObject({ count: 1, last_id: crash(1000).id });
    b.close();
    // opened again: nothing re-applied
    const c = openDb();
    expect(counts(c)).toEqual(truth(c));
  });

  it('a read-only open of a version 5 index (not migrated) answers groups --exe from the events', () => {
    const a = openDb();
    fill(a, 200, 7);
    const expected = QUERIES.map((exe) => a.groups({ exe }));
    downgradeTo5(a);
    const r = openDb({ readonly: true });
    expect(r.db.pragma('user_version', { simple: true })).toBe(5);
    expect(QUERIES.map((exe) => r.groups({ exe }))).toEqual(expected);
  });
});
