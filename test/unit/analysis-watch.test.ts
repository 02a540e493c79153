// watch filters the rows it polls in JavaScript; list filters in SQL. The two must agree:
// the same filters over the same rows of a real SQLite index give the same events.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { matchesFilter } from '../../cli/commands/watch.js';
import { IndexDb, type EventFilter, type EventRow } from '../../store/index-db.js';

const BASE = Date.UTC(2026, 10, 26, 6, 0, 0);
const dir = mkdtempSync(join(tmpdir(), 'fbx-watch-'));
let db: IndexDb;
let rows: EventRow[];

function row(i: number, over: Partial<EventRow>): EventRow {
  const id = `20261126T0600${String(i).padStart(2, '0')}-${100 + i}-${String(i).padStart(6, '0')}`;
  return {
    id, kind: 'crash', time: BASE + i * 1000, host: 'h', boot_id: null, pid: 100 + i, pid_ns: null, tid: 100 + i, uid: 1000, gid: 1000,
    signal: 11, signal_name: 'SIGSEGV', exe: '/usr/bin/prog', comm: 'prog', cmdline: null, unit: null, cgroup: null, in_container: 0,
    dumpable: 1, signature: 'abcdef0123456789', signature_text: null, rule: null, core_size: null, core_stored_size: null,
    core_truncated: 0, has_core: 0, bundle_size: 1, warnings: 0, bundle: `bundles/2026-11-26/${id}`, indexed_at: BASE, reason: null, ...over,
  };
}

beforeAll(() => {
  db = new IndexDb(join(dir, 'index.sqlite'), { busyTimeoutMs: 1000 });
  rows = [
    row(1, {}),
    row(2, { exe: '/opt/nginx/sbin/nginx', comm: 'nginx', signal: 6, signal_name: 'SIGABRT', signature: 'ff00' }),
    row(3, { exe: '/usr/local/bin/prog', uid: 0 }),
    row(4, { kind: 'snapshot', exe: null, comm: null, pid: null, uid: null, signal: null, signal_name: null, signature: null, rule: 'load', reason: 'load1 9' }),
    row(5, { exe: 'prog', comm: 'prog:x' }),
    row(6, { exe: null, comm: 'Prog', signature: null }),
  ];
  for (const r of rows) db.insert(r);
});
afterAll(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('matchesFilter agrees with list', () => {
  it.each<[string, EventFilter]>([
    ['no filter', {}],
    ['exe by base name', { exe: 'prog' }],
    ['exe by path', { exe: '/usr/bin/prog' }],
    ['exe by a base name that is a path elsewhere', { exe: 'nginx' }],
    ['comm, case-sensitive', { comm: 'prog' }],
    ['pid', { pid: 103 }],
    ['uid 0', { uid: 0 }],
    ['signal', { signal: 6 }],
    ['signature prefix', { signature: 'abc' }],
    ['signature exact', { signature: 'ff00' }],
    ['rule', { rule: 'load' }],
    ['kind snapshot', { kind: 'snapshot' }],
    ['kind crash', { kind: 'crash' }],
    ['since and until, inclusive', { since: BASE + 2000, until: BASE + 4000 }],
    ['several at once', { kind: 'crash', uid: 1000, signal: 11, exe: 'prog' }],
  ])('%s', (_name, f) => {
    const sql = db.list(f).map((r) => r.id);
    const js = rows.filter((r) => matchesFilter(r, f)).map((r) => r.id);
    expect(js).toEqual(sql);
  });
});
