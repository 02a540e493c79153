// `flightbox list` at scale: IndexDb.list()/listRows() build rows from one JSON text per row
// and order events of the same millisecond by id in JavaScript; the table is laid out in
// cli/format.ts. Everything here is checked against what SQLite itself says (a plain query
// ordered by time and id, values as better-sqlite3 converts them), on real index files.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { escapeControl } from '../../lib/escape.js';
import { listCells, listTable, table } from '../../cli/format.js';
import { INDEX_FILE, IndexDb, type EventFilter, type EventRow } from '../../store/index-db.js';

let dir: string;
let db: IndexDb;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-list-'));
  db = new IndexDb(join(dir, INDEX_FILE), { busyTimeoutMs: 2000 });
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const BASE = Date.UTC(2026, 10, 26, 6, 0, 0);

function row(n: number, over: Partial<EventRow> = {}): EventRow {
  const time = over.time ?? BASE + n * 1000;
  const id = over.id ?? `20261126T06${String(n).padStart(4, '0')}-${n}-${n.toString(16).padStart(6, '0')}`;
  return {
    id, kind: 'crash', time, host: 'h', boot_id: 'b', pid: n, pid_ns: null, tid: n, uid: 1000 + (n % 3), gid: 1000, signal: n % 2 ? 11 : 6,
    signal_name: n % 2 ? 'SIGSEGV' : 'SIGABRT', exe: `/usr/bin/p${n % 4}`, comm: `p${n % 4}`, cmdline: `/usr/bin/p${n % 4} --n ${n}`, unit: null,
    cgroup: '/system.slice/p.service', in_container: n % 2, dumpable: 1, signature: `s${n % 5}`, signature_text: `p SIG f${n % 5}`, rule: null,
    core_size: 4096 * n, core_stored_size: n % 3 ? 1024 * n : null, core_truncated: n % 7 === 0 ? 1 : 0, has_core: n % 5 === 0 ? 0 : 1,
    bundle_size: 2048, warnings: 0, bundle: `bundles/2026-11-26/${id}`, indexed_at: time + 5, reason: null, ...over,
  };
}

/** What the index said before: SQLite's own order (time, then id, both descending), newest N, then flipped. */
function reference(f: EventFilter & { where?: string }): EventRow[] {
  const limit = f.limit !== undefined ? `LIMIT ${f.limit}` : '';
  const rows = db.db.prepare(
    `SELECT id, kind, time, host, boot_id, pid, pid_ns, tid, uid, gid, signal, signal_name, exe, comm, cmdline, unit, cgroup, in_container,
            dumpable, signature, signature_text, rule, core_size, core_stored_size, core_truncated, has_core, bundle_size, warnings, bundle,
            indexed_at, reason
     FROM events ${f.where ? `WHERE ${f.where}` : ''} ORDER BY time DESC, id DESC ${limit}`,
  ).all() as EventRow[];
  return f.reverse ? rows : rows.reverse();
}

const LIST_KEYS = ['id', 'kind', 'time', 'pid', 'uid', 'signal_name', 'exe', 'comm', 'rule', 'reason', 'has_core', 'core_truncated', 'core_stored_size'] as const;
const project = (r: EventRow) => Object.fromEntries(LIST_KEYS.map((k) => [k, r[k]]));

describe('list order: events of the same millisecond', () => {
  beforeEach(() => {
    // 300 events over 20 milliseconds, inserted in a shuffled order so that neither rowid nor
    // insertion order follows the ids; ids of one millisecond sort differently from their pids.
    const rand = (() => {
      let a = 7;
      return () => ((a = (Math.imul(a, 1103515245) + 12345) >>> 0) / 2 ** 32);
    })();
    const rows = Array.from({ length: 300 }, (_, n) => row(n + 1, { time: BASE + Math.floor(rand() * 20), id: `20261126T060000-${Math.floor(rand() * 1e6)}-${n.toString(16).padStart(6, '0')}` }));
    for (let i = rows.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [rows[i], rows[j]] = [rows[j]!, rows[i]!];
    }
    for (const r of rows) db.insert(r);
  });

  it.each<[string, EventFilter, string | undefined]>([
    ['everything', {}, undefined],
    ['reverse', { reverse: true }, undefined],
    ['a filter', { signal: 11 }, 'signal = 11'],
    ['since and until', { since: BASE + 5, until: BASE + 12 }, `time >= ${BASE + 5} AND time <= ${BASE + 12}`],
    ['a limit that cuts a millisecond', { limit: 17 }, undefined],
    ['a limit, reverse', { limit: 40, reverse: true }, undefined],
  ])('%s: the same rows in the same order as SQLite sorts them', (_what, f, where) => {
    const expected = reference({ ...f, where });
    expect(expected.length).toBeGreaterThan(10);
    expect(db.list(f)).toEqual(expected);
    expect(db.listRows(f)).toEqual(expected.map(project));
  });

  it('ids of one millisecond go by their UTF-8 bytes, as SQLite compares them, not by UTF-16 units', () => {
    // U+FF5E sorts before U+1F600 in UTF-8 (EF.. < F0..) but after it in UTF-16 (FF5E > D83D).
    const t = BASE + 100_000;
    for (const id of ['x-\u{FF5E}', 'x-\u{1F600}', 'x-a', 'x-\u00e9']) db.insert(row(1, { id, time: t }));
    const expected = reference({ where: `time = ${t}` }).map((r) => r.id);
    expect(expected).toEqual(['x-a', 'x-\u00e9', 'x-\u{FF5E}', 'x-\u{1F600}']);
    expect(db.list({ since: t }).map((r) => r.id)).toEqual(expected);
    expect(db.listRows({ since: t, reverse: true }).map((r) => r.id)).toEqual([...expected].reverse());
  });
});

describe('list values: as better-sqlite3 gives them', () => {
  it('hostile text, large and fractional numbers and NULLs come back exactly', () => {
    const hostile = 'a\u0000b\u001b[31m"q"\\ \u2028 \u00e9 \u{1F600} \ud800 end';
    db.insert(row(1, { exe: hostile, comm: '\u0007', cmdline: hostile, reason: '', rule: '' }));
    db.insert(row(2, { core_size: 2 ** 53 + 2, core_stored_size: 0.1 + 0.2, pid: -5, uid: 2 ** 31, warnings: 1e15 }));
    db.insert(row(3, { kind: 'snapshot', pid: null, uid: null, exe: null, comm: null, signal: null, signal_name: null, rule: 'r', reason: 'x'.repeat(5000) }));
    // A value bigger than a double holds exactly, straight into SQLite.
    db.db.prepare('UPDATE events SET bundle_size = 9007199254740993, indexed_at = 1.5 WHERE pid = 1').run();
    const native = reference({});
    // A lone surrogate goes in as bytes that are not UTF-8 (ED A0 80), and comes out as U+FFFDs.
    expect(native[0]!.exe).toMatch(/^a\u0000b\u001b\[31m"q"\\ \u2028 \u00e9 \u{1F600} \ufffd+ end$/u);
    expect(native[1]!.core_stored_size).toBe(0.1 + 0.2);
    expect(db.list()).toEqual(native);
    expect(db.list().map((r) => Object.keys(r))).toEqual(native.map((r) => Object.keys(r)));
    expect(db.listRows()).toEqual(native.map(project));
    for (const r of db.list()) expect(db.get(r.id)).toEqual(r);
  });

  it('text that is not UTF-8 (written from outside) comes back as better-sqlite3 decodes it', () => {
    // A lead byte cut short, a 4-byte sequence cut short, an overlong '/', a surrogate, a byte
    // no UTF-8 holds, each before a character of its own and at the end of a value.
    const bad = ['c3', 'f09f98', 'c0af', 'eda080', 'ff', 'e282'];
    for (const [i, hex] of bad.entries()) {
      db.insert(row(i + 1));
      db.db.prepare(`UPDATE events SET exe = CAST(x'2f${hex}41' AS TEXT), comm = CAST(x'41${hex}' AS TEXT), cmdline = CAST(x'${hex}22${hex}5c' AS TEXT) WHERE pid = ?`).run(i + 1);
    }
    const native = reference({});
    expect(native[0]!.exe).toBe('/\ufffdA');
    expect(db.list()).toEqual(native);
    expect(db.list({ limit: 4 })).toEqual(reference({ limit: 4 }));
    expect(db.listRows()).toEqual(native.map(project));
  });

  it('a BLOB, which JSON cannot hold and nothing of ours writes, is still listed', () => {
    db.insert(row(1));
    db.insert(row(2));
    db.db.prepare("UPDATE events SET cmdline = x'00ff', exe = x'2f62696e' WHERE pid = 2").run();
    const native = reference({});
    expect(Buffer.isBuffer(native[1]!.cmdline)).toBe(true);
    expect(db.list()).toEqual(native);
    expect(db.listRows()).toEqual(native.map(project));
  });

  it('an index with nothing in it lists nothing', () => {
    expect(db.list()).toEqual([]);
    expect(db.listRows({ since: 0 })).toEqual([]);
  });

  it('a time that is not a number (TEXT, written from outside) is ordered as SQLite orders it', () => {
    for (let n = 1; n <= 6; n++) db.insert(row(n));
    // INTEGER before TEXT in SQLite; JavaScript would compare a number with a string.
    db.db.prepare("UPDATE events SET time = 'later' WHERE pid = 2").run();
    db.db.prepare("UPDATE events SET time = 'early' WHERE pid = 5").run();
    const native = reference({});
    expect(native.slice(-2).map((r) => r.time)).toEqual(['early', 'later']);
    expect(db.list()).toEqual(native);
    expect(db.list({ reverse: true })).toEqual([...native].reverse());
    expect(db.listRows()).toEqual(native.map(project));
    expect(db.list({ limit: 3 })).toEqual(reference({ limit: 3 }));
  });

  it('events read out of time order (a table written out of order, no index of the filter) come in time order', () => {
    // Inserted newest first and in no order: rowid order is not time order.
    for (const n of [9, 3, 7, 1, 8, 2, 6, 4, 5]) db.insert(row(n, { pid: 42 }));
    for (const n of [19, 13, 17, 11, 18, 12, 16, 14, 15]) db.insert(row(n, { time: BASE + 5000, pid: 42 }));
    for (const f of [{}, { pid: 42 }, { pid: 42, reverse: true }, { signature: 's' }, { signature: 's', limit: 5 }] as EventFilter[]) {
      const where = f.pid !== undefined ? 'pid = 42' : f.signature !== undefined ? "signature >= 's' AND signature < 't'" : undefined;
      expect(db.list(f)).toEqual(reference({ ...f, where }));
      expect(db.listRows(f)).toEqual(reference({ ...f, where }).map(project));
    }
  });
});

describe('the list table', () => {
  it('from listRows is the table from full rows, character for character', () => {
    for (let n = 1; n <= 40; n++) db.insert(row(n, n % 9 === 0 ? { kind: 'snapshot', rule: n % 4 === 1 ? 'r' : null, reason: n % 2 ? 'why' : '' } : {}));
    db.insert(row(41, { exe: null, comm: 'c\u001b' }));
    db.insert(row(42, { exe: null, comm: '' }));
    db.insert(row(43, { exe: `/x/${'\\'.repeat(3)}\u007f\u0085${'y'.repeat(300)}` }));
    const text = listTable(db.listRows());
    expect(text).toBe(listTable(db.list()));
    expect(text.split('\n')).toHaveLength(44);
    expect(text).toContain('(snapshot by rule r: why)');
    expect(text).toContain('(snapshot: why)');
    expect(text).toContain('(snapshot)');
    expect(text).toContain('(c\\x1b)');
  });

  it.each([
    ['/usr/bin/plain'],
    ['back\\slash'],
    ['tab\there'],
    ['del\u007f'],
    ['c1 \u0085'],
    ['bidi \u202e'],
    ['é'],
    ['x'.repeat(256)],
    ['x'.repeat(257)],
    [''],
  ])('an exe of %j is escaped exactly as escapeControl does', (exe) => {
    const cells = listCells({ ...row(1), exe });
    expect(cells[7]).toBe(escapeControl(exe));
  });

  it('lays out columns: padded to the widest cell, the last one not padded, trailing blanks cut', () => {
    expect(table(['A', 'BB', 'C'], [['xxx', 'y', 'z'], ['', '', ''], ['1', '22222', 'tail  ']])).toBe(
      ['A    BB     C', 'xxx  y      z', '', '1    22222  tail'].join('\n'),
    );
  });

  it('lays out 200,000 rows (spreading a column into Math.max overflowed the stack)', () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => [String(i), i === 123_456 ? 'widest cell' : 'x', 'end']);
    const lines = table(['N', 'W', 'E'], rows).split('\n');
    expect(lines).toHaveLength(200_001);
    expect(lines[0]).toBe('N       W            E');
    expect(lines[123_457]).toBe('123456  widest cell  end');
  });
});
