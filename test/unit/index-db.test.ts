import { existsSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { beforeEach, describe, expect, it } from 'vitest';
import { useTempIndex } from './index-fixture.js';
import { FlightboxError } from '../../lib/errors.js';
import { IndexDb, SCHEMA_VERSION, rowFromManifest, type EventRow } from '../../store/index-db.js';
import type { Manifest } from '../../store/manifest.js';

const idx = useTempIndex('fbx-index-');
const openDb = idx.openDb;

const BASE = Date.UTC(2026, 10, 26, 6, 0, 0);
let seq = 0;

function idAt(time: number, pid: number, rand = (seq++).toString(16).padStart(6, '0')): string {
  const d = new Date(time);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}T${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}-${pid}-${rand}`;
}

function row(over: Partial<EventRow> & { time: number }): EventRow {
  const pid = over.pid ?? 1000;
  const id = over.id ?? idAt(over.time, pid ?? 0);
  return {
    id,
    kind: 'crash',
    host: 'testhost',
    boot_id: 'b00t',
    pid,
    pid_ns: null,
    tid: pid,
    uid: 1000,
    gid: 1000,
    signal: 11,
    signal_name: 'SIGSEGV',
    exe: '/usr/bin/prog',
    comm: 'prog',
    cmdline: '/usr/bin/prog --x',
    unit: null,
    cgroup: null,
    in_container: 0,
    dumpable: 1,
    signature: 'aaaaaaaaaaaaaaaa',
    signature_text: 'prog SIGSEGV f|g|h',
    rule: null,
    core_size: 4096,
    core_stored_size: 1024,
    core_truncated: 0,
    has_core: 1,
    bundle_size: 2048,
    warnings: 0,
    bundle: `2026-11-26/${id}`,
    indexed_at: over.time + 5,
    ...over,
  };
}

const ids = (rows: EventRow[]) => rows.map((r) => r.id);

/** Back to schema version 5, as an index written by the flightbox before migration 6 would be. */
function downgradeTo5(db: IndexDb): void {
  db.db.exec(`DROP TRIGGER events_crash_exe_groups_insert; DROP TRIGGER events_crash_exe_groups_delete; DROP TRIGGER events_crash_exe_groups_update;
              DROP TABLE crash_exe_group_counts;`);
  db.db.pragma('user_version = 5');
}

function manifest(over: Partial<Manifest> = {}): Manifest {
  return {
    version: 1,
    id: '20261126T065012-4242-a1b2c3',
    kind: 'crash',
    time: '2026-11-26T06:50:12.345Z',
    timeMs: Date.UTC(2026, 10, 26, 6, 50, 12, 345),
    capturedAt: '2026-11-26T06:50:13.000Z',
    host: { hostname: 'web-01', bootId: 'boot-123', kernel: '6.1.0', machineId: 'm-1' },
    process: {
      pid: 4242, pidInNamespace: 17, tid: 4243, tidInNamespace: 18, ppid: 1, uid: 1000, gid: 1001, signal: 6, signalName: 'SIGABRT',
      comm: 'prog', exe: '/usr/bin/prog', cmdline: ['/usr/bin/prog', '--flag', 'a b'], cwd: '/', root: '/', cgroup: '/system.slice/prog.service',
      unit: 'prog.service', namespaces: {}, inContainer: true, hostnameInNamespace: 'ctr', dumpable: 1, rlimitCore: null, threads: 4,
      fdCount: 10, startTimeTicks: 1, procVerified: true,
    },
    core: {
      stored: true, file: 'core.zst', compression: 'zstd', size: 10_000_000, storedSize: 123_456, truncated: true, reason: 'maxSize',
      limitBytes: 10_000_000, sparseBytes: 0, elf: true,
    },
    backtrace: null,
    signature: { text: 'prog SIGABRT f|g|h', hash: '0123456789abcdef' },
    modules: [],
    rule: null,
    warnings: ['w1', 'w2'],
    timings: {},
    files: [
      { path: 'core.zst', size: 123_456, sha256: 'x', mode: '600' },
      { path: 'backtrace.txt', size: 544, sha256: 'y', mode: '600' },
    ],
    handler: { version: '0.1.0', pid: 99 },
    ...over,
  };
}

describe('rowFromManifest', () => {
  it('maps a crash manifest to a row', () => {
    const m = manifest();
    const r = rowFromManifest(m, '2026-11-26/20261126T065012-4242-a1b2c3', 1_800_000_000_000);
    expect(r).toEqual({
      id: '20261126T065012-4242-a1b2c3',
      kind: 'crash',
      time: Date.UTC(2026, 10, 26, 6, 50, 12, 345),
      host: 'web-01',
      boot_id: 'boot-123',
      pid: 4242,
      pid_ns: 17,
      tid: 4243,
      uid: 1000,
      gid: 1001,
      signal: 6,
      signal_name: 'SIGABRT',
      exe: '/usr/bin/prog',
      comm: 'prog',
      cmdline: '/usr/bin/prog --flag a b',
      unit: 'prog.service',
      cgroup: '/system.slice/prog.service',
      in_container: 1,
      dumpable: 1,
      signature: '0123456789abcdef',
      signature_text: 'prog SIGABRT f|g|h',
      rule: null,
      reason: null,
      core_size: 10_000_000,
      core_stored_size: 123_456,
      core_truncated: 1,
      has_core: 1,
      bundle_size: 124_000,
      warnings: 2,
      bundle: '2026-11-26/20261126T065012-4242-a1b2c3',
      indexed_at: 1_800_000_000_000,
    });
  });

  it('maps a snapshot without process, core or signature to nulls', () => {
    const m = manifest({ kind: 'snapshot', process: null, core: null, signature: null, rule: 'load>10', warnings: [], files: [] });
    const r = rowFromManifest(m, 'b', 1);
    expect(r).toMatchObject({
      kind: 'snapshot', pid: null, pid_ns: null, tid: null, uid: null, gid: null, signal: null, signal_name: null, exe: null, comm: null,
      cmdline: null, unit: null, cgroup: null, in_container: null, dumpable: null, signature: null, signature_text: null, rule: 'load>10',
      core_size: null, core_stored_size: null, core_truncated: 0, has_core: 0, bundle_size: 0, warnings: 0,
    });
  });

  it.each<[boolean | null, number | null]>([[true, 1], [false, 0], [null, null]])('inContainer %j → in_container %j', (v, n) => {
    const m = manifest();
    m.process!.inContainer = v;
    expect(rowFromManifest(m, 'b', 1).in_container).toBe(n);
  });

  it('a core that was not stored gives has_core 0', () => {
    const m = manifest();
    m.core = { ...m.core!, stored: false, truncated: false, file: null };
    const r = rowFromManifest(m, 'b', 1);
    expect(r.has_core).toBe(0);
    expect(r.core_truncated).toBe(0);
  });

  it('a row from a manifest can be inserted and read back unchanged', () => {
    const db = openDb();
    const r = rowFromManifest(manifest(), '2026-11-26/20261126T065012-4242-a1b2c3', 123);
    db.insert(r);
    expect(db.get(r.id)).toEqual(r);
  });
});

describe('IndexDb: opening', () => {
  it('creates the file, in WAL mode, at the latest schema version', () => {
    const db = openDb();
    expect(existsSync(idx.path)).toBe(true);
    expect(db.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    db.insert(row({ time: BASE }));
    expect(existsSync(`${idx.path}-wal`)).toBe(true);
  });

  it('two instances on the same file work together; migrations are applied once', () => {
    const a = openDb();
    const objects = () => a.db.prepare("SELECT type, name FROM sqlite_master ORDER BY name").all();
    const before = objects();
    a.insert(row({ time: BASE, id: idAt(BASE, 1, 'aaaaaa') }));
    const b = openDb();
    expect(b.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(b.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(ids(b.list())).toEqual([idAt(BASE, 1, 'aaaaaa')]);
    b.insert(row({ time: BASE + 1000, id: idAt(BASE + 1000, 2, 'bbbbbb') }));
    expect(ids(a.list())).toEqual([idAt(BASE, 1, 'aaaaaa'), idAt(BASE + 1000, 2, 'bbbbbb')]);
    expect(objects()).toEqual(before);
  });

  it('reopening after close keeps the data and does not re-run migrations', () => {
    const a = openDb();
    a.insert(row({ time: BASE }));
    a.close();
    const b = openDb();
    expect(b.list()).toHaveLength(1);
    expect(b.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    const tables = b.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'events'").get() as { n: number };
    expect(tables.n).toBe(1);
  });

  it('an up-to-date index opens while another process holds the write lock (a storm of handlers does not queue on it)', () => {
    openDb().close();
    // Another connection (as another handler would) in the middle of a write transaction.
    const other = new Database(idx.path, { timeout: 10 });
    try {
      other.prepare('BEGIN IMMEDIATE').run();
      const t0 = performance.now();
      const b = idx.openDb({ busyTimeoutMs: 300 });
      expect(performance.now() - t0).toBeLessThan(250);
      expect(b.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      other.prepare('ROLLBACK').run();
      b.insert(row({ time: BASE }));
      expect(b.list()).toHaveLength(1);
    } finally {
      other.close();
    }
  });

  it('an index from a newer flightbox is refused with STORE_CORRUPT', () => {
    openDb().close();
    const raw = new Database(idx.path);
    raw.pragma('user_version = 99');
    raw.close();
    let err: unknown;
    try {
      openDb();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FlightboxError);
    expect((err as FlightboxError).code).toBe('STORE_CORRUPT');
    expect((err as Error).message).toContain('newer');
  });

  it('a file that is not SQLite is STORE_CORRUPT', () => {
    writeFileSync(idx.path, 'this is not a database, just some text that is long enough to have a header\n'.repeat(20));
    expect(() => openDb()).toThrow(FlightboxError);
    try {
      openDb();
    } catch (e) {
      expect((e as FlightboxError).code).toBe('STORE_CORRUPT');
      expect((e as Error).message).toContain(idx.path);
    }
  });

  it('readonly on a missing file is STORE_CORRUPT and creates nothing', () => {
    expect(() => openDb({ readonly: true })).toThrow(/cannot open the index/);
    expect(existsSync(idx.path)).toBe(false);
  });

  it('readonly on an existing index can read but not write', () => {
    const w = openDb();
    w.insert(row({ time: BASE }));
    const r = openDb({ readonly: true });
    expect(r.list()).toHaveLength(1);
    expect(() => r.insert(row({ time: BASE + 1 }))).toThrow(/readonly/i);
  });
});

describe('IndexDb: insert, upsert, get, ids, deleteMissing', () => {
  it('insert refuses a duplicate id; upsert replaces', () => {
    const db = openDb();
    const r = row({ time: BASE, comm: 'first' });
    db.insert(r);
    expect(() => db.insert({ ...r, comm: 'again' })).toThrow(/UNIQUE|PRIMARY/);
    db.upsert({ ...r, comm: 'second' });
    expect(db.get(r.id)?.comm).toBe('second');
    expect(db.list()).toHaveLength(1);
  });

  it('get returns undefined for an unknown id', () => {
    expect(openDb().get('20261126T065012-1-000000')).toBeUndefined();
  });

  it('the kind column only allows crash and snapshot', () => {
    const db = openDb();
    expect(() => db.insert({ ...row({ time: BASE }), kind: 'other' as 'crash' })).toThrow(/CHECK/);
  });

  it('ids and deleteMissing', () => {
    const db = openDb();
    const rs = [row({ time: BASE }), row({ time: BASE + 1 }), row({ time: BASE + 2 })];
    for (const r of rs) db.insert(r);
    expect(db.ids()).toEqual(new Set(ids(rs)));
    expect(db.deleteMissing(new Set([rs[1]!.id]))).toBe(2);
    expect(ids(db.list())).toEqual([rs[1]!.id]);
    expect(db.deleteMissing(new Set([rs[1]!.id]))).toBe(0);
  });
});

describe('IndexDb.list filters', () => {
  let db: IndexDb;
  const R = {
    a: row({ time: BASE + 0, id: '20261126T060000-100-000001', pid: 100, uid: 0, signal: 11, exe: '/usr/bin/bash', comm: 'bash', signature: 'abcd000000000001' }),
    b: row({ time: BASE + 60_000, id: '20261126T060100-200-000002', pid: 200, uid: 1000, signal: 6, exe: '/bin/sh', comm: 'sh', signature: 'abcd000000000002' }),
    c: row({ time: BASE + 120_000, id: '20261126T060200-300-000003', pid: 300, uid: 1000, signal: 11, exe: '/usr/local/bin/sh', comm: 'sh', signature: 'abce000000000003' }),
    d: row({ time: BASE + 180_000, id: '20261126T060300-400-000004', pid: 400, uid: 1001, signal: 7, exe: '/opt/x/a_c', comm: 'a_c', signature: 'ffff000000000004' }),
    e: row({ time: BASE + 240_000, id: '20261126T060400-500-000005', pid: 500, uid: 1001, signal: 11, exe: '/opt/x/abc', comm: 'abc', signature: 'ffff000000000005' }),
    f: row({ time: BASE + 300_000, id: '20261126T060500-600-000006', pid: 600, uid: 0, signal: 11, exe: '/opt/x/100%', comm: '100%', signature: 'a_cd000000000006' }),
    g: row({ time: BASE + 360_000, id: '20261126T060600-700-000007', pid: 700, uid: 0, signal: 11, exe: '/opt/x/1000', comm: '1000', signature: 'axcd000000000007' }),
    s: row({ time: BASE + 420_000, id: '20261126T060700-0-000008', kind: 'snapshot', pid: null, uid: null, signal: null, exe: null, comm: null, signature: null, signature_text: null, rule: 'mem' }),
    h: row({ time: BASE + 480_000, id: '20261126T060800-800-000009', pid: 800, uid: 0, signal: 11, exe: 'sh', comm: 'sh', signature: 'abcd000000000009' }),
  };
  const ALL = Object.values(R).sort((x, y) => x.time - y.time);

  beforeEach(() => {
    db = openDb();
    // insert out of order: list must sort by time, not by insertion
    for (const r of [...ALL].reverse()) db.insert(r);
  });

  it('no filter: everything, oldest first', () => {
    expect(ids(db.list())).toEqual(ids(ALL));
  });

  it('reverse: newest first', () => {
    expect(ids(db.list({ reverse: true }))).toEqual(ids(ALL).reverse());
  });

  it.each<[string, Parameters<IndexDb['list']>[0], (keyof typeof R)[]]>([
    ['since (inclusive)', { since: BASE + 120_000 }, ['c', 'd', 'e', 'f', 'g', 's', 'h']],
    ['until (inclusive)', { until: BASE + 60_000 }, ['a', 'b']],
    ['since and until', { since: BASE + 60_000, until: BASE + 180_000 }, ['b', 'c', 'd']],
    ['since after everything', { since: BASE + 10_000_000 }, []],
    ['kind crash', { kind: 'crash' }, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']],
    ['kind snapshot', { kind: 'snapshot' }, ['s']],
    ['pid', { pid: 300 }, ['c']],
    ['pid with no match', { pid: 301 }, []],
    ['uid 0', { uid: 0 }, ['a', 'f', 'g', 'h']],
    ['uid 1000', { uid: 1000 }, ['b', 'c']],
    ['signal 11', { signal: 11 }, ['a', 'c', 'e', 'f', 'g', 'h']],
    ['signal 6', { signal: 6 }, ['b']],
    ['comm exact', { comm: 'sh' }, ['b', 'c', 'h']],
    ['exe full path matches only that path', { exe: '/bin/sh' }, ['b']],
    ['exe base name matches every directory and a bare name', { exe: 'sh' }, ['b', 'c', 'h']],
    ['exe base name "sh" does not match bash', { exe: 'sh' }, ['b', 'c', 'h']],
    ['exe base name "bash"', { exe: 'bash' }, ['a']],
    ['exe path prefix does not match', { exe: '/usr/bin' }, []],
    ['exe "_" is literal', { exe: 'a_c' }, ['d']],
    ['exe "%" is literal', { exe: '100%' }, ['f']],
    ['exe "%" alone matches nothing', { exe: '%' }, []],
    ['exe "_" alone matches nothing', { exe: '_' }, []],
    ['exe with a backslash matches nothing', { exe: 'a\\c' }, []],
    ['signature prefix', { signature: 'abcd' }, ['a', 'b', 'h']],
    ['signature longer prefix', { signature: 'abce' }, ['c']],
    ['signature full', { signature: 'ffff000000000005' }, ['e']],
    ['signature "_" is literal', { signature: 'a_' }, ['f']],
    ['signature "%" is literal', { signature: '%' }, []],
    ['combined: signal, uid and exe base name', { signal: 11, uid: 0, exe: 'sh' }, ['h']],
    ['combined: since and signature', { since: BASE + 60_000, signature: 'abcd' }, ['b', 'h']],
  ])('%s', (_what, filter, expected) => {
    expect(ids(db.list(filter))).toEqual(expected.map((k) => R[k].id));
  });

  it('an exe base name is matched case-sensitively, like a path', () => {
    // Linux file names are case-sensitive: "SH" is not "sh", just as "/BIN/SH" is not "/bin/sh"
    expect(ids(db.list({ exe: '/BIN/SH' }))).toEqual([]);
    expect(ids(db.list({ exe: 'SH' }))).toEqual([]);
    expect(ids(db.list({ exe: 'Bash' }))).toEqual([]);
  });

  it('limit returns the newest N, in chronological order', () => {
    expect(ids(db.list({ limit: 3 }))).toEqual([R.g.id, R.s.id, R.h.id]);
  });

  it('limit with reverse returns the newest N, newest first', () => {
    expect(ids(db.list({ limit: 3, reverse: true }))).toEqual([R.h.id, R.s.id, R.g.id]);
  });

  it('limit 1 reverse is the newest event', () => {
    expect(ids(db.list({ limit: 1, reverse: true }))).toEqual([R.h.id]);
  });

  it('limit with a filter applies after the filter', () => {
    expect(ids(db.list({ exe: 'sh', limit: 2 }))).toEqual([R.c.id, R.h.id]);
  });

  it('limit larger than the result returns everything', () => {
    expect(ids(db.list({ limit: 100 }))).toEqual(ids(ALL));
  });

  it('events with the same time are ordered by id, stably', () => {
    const t = BASE + 10_000_000;
    const x = row({ time: t, id: '20261126T084640-1-00000a' });
    const y = row({ time: t, id: '20261126T084640-1-00000b' });
    db.insert(y);
    db.insert(x);
    expect(ids(db.list({ since: t }))).toEqual([x.id, y.id]);
    expect(ids(db.list({ since: t, reverse: true }))).toEqual([y.id, x.id]);
    expect(ids(db.list({ limit: 1 }))).toEqual([y.id]);
  });
});

describe('IndexDb.resolve', () => {
  let db: IndexDb;
  const A = row({ time: BASE, id: '20261126T060000-100-aaaaaa' });
  const B = row({ time: BASE + 1000, id: '20261126T060001-100-bbbbbb' });
  const C = row({ time: BASE + 2000, id: '20261126T060001-200-cccccc' });

  beforeEach(() => {
    db = openDb();
    for (const r of [A, B, C]) db.insert(r);
  });

  it.each([
    ['exact id', A.id, A.id],
    ['unique prefix', '20261126T060000', A.id],
    ['unique longer prefix', '20261126T060001-2', C.id],
    ['prefix that is all but the last character', B.id.slice(0, -1), B.id],
  ])('%s', (_what, q, id) => {
    expect(db.resolve(q).id).toBe(id);
  });

  function errorOf(q: string): FlightboxError {
    try {
      db.resolve(q);
    } catch (e) {
      return e as FlightboxError;
    }
    throw new Error(`resolve(${JSON.stringify(q)}) did not throw`);
  }

  it.each([
    ['an unknown id', '20261126T060000-100-aaaaab'],
    ['an unknown prefix', '2025'],
    ['a LIKE wildcard "%" is literal', '%'],
    ['a LIKE wildcard "_" is literal', '2026112_T'],
    ['a prefix with "%" inside', '20261126T06%bbbbbb'],
  ])('%s → NOT_FOUND', (_what, q) => {
    const e = errorOf(q);
    expect(e).toBeInstanceOf(FlightboxError);
    expect(e.code).toBe('NOT_FOUND');
    expect(e.message).toContain(JSON.stringify(q));
  });

  it.each([
    ['a prefix shared by two events', '20261126T060001'],
    ['a prefix shared by all', '2026'],
  ])('%s → AMBIGUOUS', (_what, q) => {
    const e = errorOf(q);
    expect(e).toBeInstanceOf(FlightboxError);
    expect(e.code).toBe('AMBIGUOUS');
    expect(e.message).toContain(JSON.stringify(q));
  });
});

describe('IndexDb.groups', () => {
  let db: IndexDb;

  beforeEach(() => {
    db = openDb();
  });

  it('counts events per signature with first and last seen', () => {
    const s1 = '1111111111111111';
    const s2 = '2222222222222222';
    const rows = [
      row({ time: BASE + 0, id: '20261126T060000-10-000001', signature: s1, signature_text: 'prog SIGSEGV f|g|h' }),
      row({ time: BASE + 5000, id: '20261126T060005-11-000002', signature: s2, signature_text: 'prog SIGABRT x' }),
      row({ time: BASE + 9000, id: '20261126T060009-12-000003', signature: s1, signature_text: 'prog SIGSEGV f|g|h' }),
      row({ time: BASE + 7000, id: '20261126T060007-13-000004', signature: s1, signature_text: 'prog SIGSEGV f|g|h' }),
      // not counted: a snapshot, and a crash without a signature
      row({ time: BASE + 8000, id: '20261126T060008-0-000005', kind: 'snapshot', signature: s1 }),
      row({ time: BASE + 8500, id: '20261126T060008-14-000006', signature: null, signature_text: null }),
    ];
    for (const r of rows) db.insert(r);
    expect(db.groups()).toEqual([
      { signature: s1, signature_text: 'prog SIGSEGV f|g|h', count: 3, first_seen: BASE, last_seen: BASE + 9000, exe: '/usr/bin/prog', last_id: '20261126T060009-12-000003' },
      { signature: s2, signature_text: 'prog SIGABRT x', count: 1, first_seen: BASE + 5000, last_seen: BASE + 5000, exe: '/usr/bin/prog', last_id: '20261126T060005-11-000002' },
    ]);
  });

  it('orders by count, then by last seen', () => {
    const mk = (sig: string, t: number, pid: number) => row({ time: t, id: idAt(t, pid), signature: sig });
    db.insert(mk('aaaa', BASE, 1));
    db.insert(mk('bbbb', BASE + 1000, 2));
    db.insert(mk('cccc', BASE + 2000, 3));
    db.insert(mk('cccc', BASE + 3000, 4));
    expect(db.groups().map((g) => [g.signature, g.count])).toEqual([['cccc', 2], ['bbbb', 1], ['aaaa', 1]]);
  });

  it('filters by since and by exe base name', () => {
    db.insert(row({ time: BASE, id: idAt(BASE, 1), signature: 'old0', exe: '/bin/sh' }));
    db.insert(row({ time: BASE + 5000, id: idAt(BASE + 5000, 2), signature: 'new0', exe: '/bin/sh' }));
    db.insert(row({ time: BASE + 6000, id: idAt(BASE + 6000, 3), signature: 'bash', exe: '/usr/bin/bash' }));
    expect(db.groups({ since: BASE + 1000 }).map((g) => g.signature).sort()).toEqual(['bash', 'new0']);
    expect(db.groups({ exe: 'sh' }).map((g) => g.signature).sort()).toEqual(['new0', 'old0']);
    expect(db.groups({ exe: '/usr/bin/bash' }).map((g) => g.signature)).toEqual(['bash']);
    expect(db.groups({ exe: 'a%' })).toEqual([]);
  });

  it('last_id is the newest event of the group, even when ids do not sort by time within a second', () => {
    // two crashes in the same second: pid 999 at .100, pid 1000 at .900 ("999" sorts after "1000")
    const t0 = Date.UTC(2026, 10, 26, 6, 50, 12, 100);
    const t1 = Date.UTC(2026, 10, 26, 6, 50, 12, 900);
    const older = row({ time: t0, id: '20261126T065012-999-aaaaaa', pid: 999, signature: 'cafe' });
    const newer = row({ time: t1, id: '20261126T065012-1000-bbbbbb', pid: 1000, signature: 'cafe' });
    db.insert(older);
    db.insert(newer);
    const [g] = db.groups();
    expect(g).toMatchObject({ signature: 'cafe', count: 2, first_seen: t0, last_seen: t1 });
    expect(g!.last_id).toBe(newer.id);
  });

  it('no crashes: no groups', () => {
    expect(db.groups()).toEqual([]);
  });
});

describe('IndexDb: migration 5 (crash_group_counts, base-name and crash-signature indexes)', () => {
  /** What crash_group_counts must always equal: the aggregate over the events, and the newest crash. */
  const truth = (db: IndexDb) => db.db.prepare(
    `SELECT g.signature, g.count, g.first_seen, g.last_seen, e.id AS last_id, e.exe AS last_exe, e.signature_text AS last_text
     FROM (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen
           FROM events WHERE kind = 'crash' AND signature IS NOT NULL GROUP BY signature) g
     JOIN events e ON e.id = (SELECT n.id FROM events n WHERE n.kind = 'crash' AND n.signature = g.signature ORDER BY n.time DESC, n.id DESC LIMIT 1)
     ORDER BY g.signature`,
  ).all();
  const counts = (db: IndexDb) => db.db.prepare('SELECT * FROM crash_group_counts ORDER BY signature').all();
  /** groups() computed from the events alone, as before migration 5. */
  const groupsFromEvents = (db: IndexDb) => db.db.prepare(
    `WITH f AS (SELECT * FROM events WHERE kind = 'crash' AND signature IS NOT NULL),
          g AS (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen FROM f GROUP BY signature)
     SELECT g.signature, g.count, g.first_seen, g.last_seen, last.id AS last_id, last.exe AS exe, last.signature_text AS signature_text
     FROM g JOIN f AS last ON last.id = (SELECT id FROM f WHERE f.signature = g.signature ORDER BY time DESC, id DESC LIMIT 1)
     ORDER BY g.count DESC, g.last_seen DESC, g.signature`,
  ).all();

  /** Back to schema version 4, as an index written by an older flightbox would be. */
  function downgradeTo4(db: IndexDb): void {
    downgradeTo5(db);
    db.db.exec(`DROP TRIGGER events_crash_groups_insert; DROP TRIGGER events_crash_groups_delete; DROP TRIGGER events_crash_groups_update;
                DROP TABLE crash_group_counts; DROP INDEX events_exe_name_time; DROP INDEX events_crash_signature_time;`);
    db.db.pragma('user_version = 4');
  }

  const crash = (n: number, sig: string | null, over: Partial<EventRow> = {}) =>
    row({ time: BASE + n * 1000, id: idAt(BASE + n * 1000, n, n.toString(16).padStart(6, '0')), pid: n, signature: sig, ...over });

  it('is schema version 6 (migration 6: crash_exe_group_counts)', () => {
    expect(SCHEMA_VERSION).toBe(6);
    expect(openDb().db.pragma('user_version', { simple: true })).toBe(6);
  });

  it('an index of version 4 with crashes in it gets its counts on opening', () => {
    const a = openDb();
    downgradeTo4(a);
    for (const [n, sig] of [[1, 's1'], [2, 's2'], [3, 's1'], [4, null], [5, 's1']] as const) a.insert(crash(n, sig));
    a.insert(crash(6, 's2', { kind: 'snapshot' }));
    a.close();
    const b = openDb();
    expect(b.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(counts(b)).toEqual(truth(b));
    expect(counts(b)).toEqual([
      { signature: 's1', count: 3, first_seen: BASE + 1000, last_seen: BASE + 5000, last_id: crash(5, 's1').id, last_exe: '/usr/bin/prog', last_text: 'prog SIGSEGV f|g|h' },
      { signature: 's2', count: 1, first_seen: BASE + 2000, last_seen: BASE + 2000, last_id: crash(2, 's2').id, last_exe: '/usr/bin/prog', last_text: 'prog SIGSEGV f|g|h' },
    ]);
    expect(b.groups()).toEqual(groupsFromEvents(b));
  });

  it('a read-only open of a version 4 index (not migrated) still answers groups and base-name lists', () => {
    const a = openDb();
    for (const [n, sig] of [[1, 's1'], [2, 's2'], [3, 's1']] as const) a.insert(crash(n, sig, { exe: n === 2 ? '/bin/sh' : '/usr/bin/prog' }));
    const expected = a.groups();
    downgradeTo4(a);
    const r = openDb({ readonly: true });
    expect(r.groups()).toEqual(expected);
    expect(r.groups({ since: BASE + 2000 }).map((g) => [g.signature, g.count])).toEqual([['s1', 1], ['s2', 1]]);
    expect(ids(r.list({ exe: 'sh' }))).toEqual([crash(2, 's2').id]);
  });

  it('the counts follow every insert, upsert, update and delete', () => {
    const db = openDb();
    const rand = (() => {
      let a = 12345;
      return () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
    })();
    const sigs = ['s1', 's2', 's3', null];
    const live = new Map<string, EventRow>();
    for (let step = 0; step < 400; step++) {
      const op = rand();
      const existing = [...live.values()];
      const pick = existing[Math.floor(rand() * existing.length)];
      if (op < 0.4 || !pick) {
        // Times collide often: the newest crash is then the one with the greatest id.
        const r = crash(step + 1, sigs[Math.floor(rand() * sigs.length)]!, {
          time: BASE + Math.floor(rand() * 100) * 1000, kind: rand() < 0.15 ? 'snapshot' : 'crash', exe: `/usr/bin/p${step % 7}`, signature_text: `t${step}`,
        });
        db.insert(r);
        live.set(r.id, r);
      } else if (op < 0.55) {
        // reindex: the same id again, its signature, time or kind changed
        const r = { ...pick, signature: sigs[Math.floor(rand() * sigs.length)]!, time: BASE + Math.floor(rand() * 100) * 1000, kind: rand() < 0.15 ? 'snapshot' as const : 'crash' as const };
        db.upsert(r);
        live.set(r.id, r);
      } else if (op < 0.65) {
        db.db.prepare('UPDATE events SET signature = ?, time = ? WHERE id = ?').run(sigs[Math.floor(rand() * sigs.length)]!, BASE + Math.floor(rand() * 100) * 1000, pick.id);
      } else if (op < 0.7) {
        db.db.prepare("UPDATE events SET kind = CASE kind WHEN 'crash' THEN 'snapshot' ELSE 'crash' END WHERE id = ?").run(pick.id);
      } else if (op < 0.72) {
        db.db.prepare('UPDATE events SET exe = ?, signature_text = ? WHERE id = ?').run(`/bin/x${step}`, `text ${step}`, pick.id);
      } else if (op < 0.75) {
        db.setPinned(pick.id, rand() < 0.5);
      } else if (op < 0.95) {
        db.deleteEvents([pick.id], 'test');
        live.delete(pick.id);
      } else {
        const keep = new Set(existing.filter(() => rand() < 0.8).map((r) => r.id));
        db.deleteMissing(keep);
        for (const id of live.keys()) if (!keep.has(id)) live.delete(id);
      }
      expect(counts(db), `after step ${step}`).toEqual(truth(db));
    }
    expect(db.groups()).toEqual(groupsFromEvents(db));
  });

  it('an INSERT OR REPLACE on the connection keeps the counts right too', () => {
    const db = openDb();
    const r = crash(1, 's1');
    db.insert(r);
    db.db.prepare("INSERT OR REPLACE INTO events (id, kind, time, signature, bundle, indexed_at) VALUES (?, 'crash', ?, 's2', 'b', 0)").run(r.id, BASE);
    expect(counts(db)).toEqual(truth(db));
    expect(counts(db)).toEqual([{ signature: 's2', count: 1, first_seen: BASE, last_seen: BASE, last_id: r.id, last_exe: null, last_text: null }]);
  });

  it('groups since a time counts only what is that recent, from the counts or from the events alike', () => {
    const db = openDb();
    for (let n = 1; n <= 30; n++) db.insert(crash(n, `s${n % 4}`, { exe: n % 2 ? '/bin/sh' : '/usr/bin/sh' }));
    for (const since of [0, BASE + 1000, BASE + 7500, BASE + 20_000, BASE + 30_000, BASE + 31_000]) {
      const fromEvents = db.db.prepare(
        `WITH f AS (SELECT * FROM events WHERE kind = 'crash' AND signature IS NOT NULL AND time >= ?),
              g AS (SELECT signature, count(*) AS count, min(time) AS first_seen, max(time) AS last_seen FROM f GROUP BY signature)
         SELECT g.signature, g.count, g.first_seen, g.last_seen, last.id AS last_id, last.exe AS exe, last.signature_text AS signature_text
         FROM g JOIN f AS last ON last.id = (SELECT id FROM f WHERE f.signature = g.signature ORDER BY time DESC, id DESC LIMIT 1)
         ORDER BY g.count DESC, g.last_seen DESC, g.signature`,
      ).all(since);
      expect(db.groups({ since }), `since ${since}`).toEqual(fromEvents);
    }
    // an exe filter goes through the events: sh's groups under both directories
    expect(db.groups({ exe: 'sh' }).reduce((n, g) => n + g.count, 0)).toBe(30);
    expect(db.groups({ exe: '/bin/sh' }).reduce((n, g) => n + g.count, 0)).toBe(15);
  });

  it.each([
    ['list by base name', (db: IndexDb) => db.db.prepare("EXPLAIN QUERY PLAN SELECT id FROM events WHERE replace(exe, rtrim(exe, replace(exe, '/', '')), '') = ? ORDER BY time DESC").all('sh'), 'events_exe_name_time'],
    ['a group\'s first seen after a delete', (db: IndexDb) => db.db.prepare("EXPLAIN QUERY PLAN SELECT min(e.time) FROM events e WHERE e.kind = 'crash' AND e.signature = ?").all('s1'), 'events_crash_signature_time'],
  ])('%s uses its index', (_what, plan, index) => {
    const db = openDb();
    expect(JSON.stringify(plan(db))).toContain(index);
  });

  it('list returns every column as get does (rows built from arrays)', () => {
    const db = openDb();
    const r: EventRow = {
      id: '20261126T060000-4242-abcdef', kind: 'crash', time: BASE, host: 'h', boot_id: 'b', pid: 4242, pid_ns: 7, tid: 4243, uid: 1001,
      gid: 1002, signal: 6, signal_name: 'SIGABRT', exe: '/usr/bin/x', comm: 'x', cmdline: 'x -y', unit: 'x.service', cgroup: '/x', in_container: 1,
      dumpable: 2, signature: 'feed', signature_text: 'x SIGABRT a|b', rule: 'r', core_size: 10, core_stored_size: 5, core_truncated: 1,
      has_core: 1, bundle_size: 99, warnings: 3, bundle: 'bundles/2026-11-26/20261126T060000-4242-abcdef', indexed_at: BASE + 1, reason: 'why',
    };
    db.insert(r);
    expect(db.list()).toEqual([r]);
    expect(Object.keys(db.list()[0]!)).toEqual(Object.keys(db.get(r.id)!));
  });

  it('a short prefix that matches many events is AMBIGUOUS without sorting them all', () => {
    const db = openDb();
    for (let n = 1; n <= 50; n++) db.insert(crash(n, 's1'));
    expect(() => db.resolve('2026')).toThrow(/more than one event/);
    expect(JSON.stringify(db.db.prepare('EXPLAIN QUERY PLAN SELECT id FROM events WHERE id >= ? AND id < ? LIMIT 2').all('a', 'b'))).not.toContain('TEMP B-TREE');
  });
});
