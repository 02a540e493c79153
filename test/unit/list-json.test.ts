// `flightbox list --json`: the text it prints, pinned to what it printed when each event
// was turned into an EventRow and then into eventJson's object. Real index files in temp
// dirs; the rows hold every kind of value the index can: NULLs, both kinds, every core
// state, hostile text, numbers JSON cannot hold exactly, times outside what a day cache
// formats, a BLOB.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { run as listCommand } from '../../cli/commands/list.js';
import { eventJson, eventsJson, isoTime } from '../../cli/format.js';
import { INDEX_FILE, IndexDb, type EventFilter, type EventRow } from '../../store/index-db.js';
import { Store } from '../../store/store.js';

let dir: string;
let db: IndexDb;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-list-json-'));
  db = new IndexDb(join(dir, INDEX_FILE), { busyTimeoutMs: 2000 });
});
afterEach(() => {
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

const BASE = Date.UTC(2026, 10, 26, 6, 54, 42, 7);

function crash(n: number, over: Partial<EventRow> = {}): EventRow {
  const time = over.time ?? BASE + n * 1000;
  const id = over.id ?? `20261126T0654${String(n).padStart(2, '0')}-${1000 + n}-${n.toString(16).padStart(6, '0')}`;
  return {
    id, kind: 'crash', time, host: 'web-1', boot_id: '0f3c9d2e', pid: 1000 + n, pid_ns: 7, tid: 1000 + n, uid: 33, gid: 33, signal: 11,
    signal_name: 'SIGSEGV', exe: '/usr/sbin/nginx', comm: 'nginx', cmdline: 'nginx: worker process', unit: 'nginx.service',
    cgroup: '/system.slice/nginx.service', in_container: 0, dumpable: 1, signature: '4f1c2a9b7e3d5a10', signature_text: 'nginx SIGSEGV ngx_http_process|main',
    rule: null, core_size: 52_428_800, core_stored_size: 3_145_728, core_truncated: 0, has_core: 1, bundle_size: 3_200_000, warnings: 0,
    bundle: `bundles/2026-11-26/${id}`, indexed_at: time + 812, reason: null, ...over,
  };
}

function snapshot(n: number, over: Partial<EventRow> = {}): EventRow {
  return crash(n, {
    kind: 'snapshot', pid: null, pid_ns: null, tid: null, uid: null, gid: null, signal: null, signal_name: null, exe: null, comm: null,
    cmdline: null, unit: null, cgroup: null, in_container: null, dumpable: null, signature: null, signature_text: null, core_size: null,
    core_stored_size: null, has_core: 0, bundle_size: 880_000, ...over,
  });
}

/** Every kind of value an event row holds, inserted in an order that is not the time order. */
function insertAll(): void {
  const rows: EventRow[] = [
    crash(1),
    crash(2, { core_truncated: 1, in_container: 1, warnings: 3, pid_ns: null }),
    crash(3, { has_core: 0, core_stored_size: null, in_container: null, unit: null, cgroup: null, signature: null, signature_text: null, exe: null, comm: 'kworker/0:1' }),
    crash(4, { has_core: 0, core_truncated: 1, signal: 6, signal_name: 'SIGABRT' }),
    snapshot(5, { rule: 'rss-high', reason: 'process.rss 2.1 GiB above 2 GiB for 30s', warnings: 1 }),
    snapshot(6, { reason: 'flightbox snapshot' }),
    snapshot(7, { rule: '', reason: '' }),
    crash(8, {
      exe: '/tmp/a"b\\c d\u0000e\u001b[31mf\u2028g\u2029h \u{1F600} é ñ 中',
      comm: '\t\n\r\b\f\u007f\u0085\u00a0',
      cmdline: 'sh -c "echo $HOME" \\ lone \ud800 end \uffff \ufeff',
      unit: 'a/b.service', cgroup: '/', signature_text: '</script><!--',
    }),
    crash(9, { core_size: 2 ** 53 + 2, core_stored_size: 0.1 + 0.2, pid: -5, uid: 2 ** 31, gid: 0, warnings: 1e15, dumpable: 0, tid: 0 }),
    // Of one millisecond: ids that sort otherwise than their pids and their insertion order.
    crash(10, { id: 'x-\u{1F600}', time: BASE + 10_000 }),
    crash(11, { id: 'x-a', time: BASE + 10_000 }),
    crash(12, { id: 'x-\u{FF5E}', time: BASE + 10_000 }),
    // A day's first millisecond, and its last.
    crash(13, { time: Date.UTC(2026, 10, 27) }),
    crash(14, { time: Date.UTC(2026, 10, 27) - 1 }),
    // Before 1970, a leap day, the last millisecond of year 9999 and the first after it.
    crash(15, { time: Date.UTC(1969, 11, 31, 23, 59, 59, 999) }),
    crash(16, { time: Date.UTC(2024, 1, 29, 12, 0, 0, 0) }),
    crash(17, { time: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }),
    crash(18, { time: Date.UTC(9999, 11, 31, 23, 59, 59, 999) + 1 }),
    crash(19, { time: -62_167_219_200_000 }),
  ];
  for (const r of [...rows.slice(9), ...rows.slice(0, 9)].reverse()) db.insert(r);
  // What only SQL writes: an integer past a double, a fractional time, odd flags.
  db.db.prepare("UPDATE events SET bundle_size = 9007199254740993, time = time + 0.5 WHERE id = ?").run(crash(9).id);
  db.db.prepare("UPDATE events SET in_container = 2, has_core = 2, core_truncated = '' WHERE id = ?").run(crash(4).id);
}

/** What `flightbox list --json` prints for `f` (without its final newline). */
function printed(f: EventFilter): string {
  return JSON.stringify(eventsJson(db, f), null, 2);
}

/** The same through an EventRow and eventJson, as `list --json` made it before eventsJson. */
function printedFromRows(f: EventFilter): string {
  return JSON.stringify(db.list(f).map(eventJson), null, 2);
}

/** Each event's block of EVERYTHING, by id. */
function blocks(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const b of text.slice(2, -2).split('\n  },\n')) {
    const block = b.endsWith('\n  }') ? b : `${b}\n  }`;
    out.set(JSON.parse(/^ {4}"id": (".*"),$/m.exec(block)![1]!) as string, block);
  }
  return out;
}

describe('list --json prints what it printed before', () => {
  it('every kind of value, character for character', () => {
    insertAll();
    expect(printed({})).toBe(EVERYTHING);
    expect(printedFromRows({})).toBe(EVERYTHING);
  });

  const oneMs = ['x-a', 'x-\u{FF5E}', 'x-\u{1F600}'];
  const t = (n: number) => crash(n).id;
  it.each<[string, EventFilter, string[]]>([
    ['reverse', { reverse: true }, [t(18), t(17), t(13), t(14), ...[...oneMs].reverse(), t(9), t(8), t(7), t(6), t(5), t(4), t(3), t(2), t(1), t(16), t(15), t(19)]],
    ['a limit that cuts a millisecond', { limit: 9 }, [t(8), t(9), ...oneMs, t(14), t(13), t(17), t(18)]],
    ['a limit, reverse', { limit: 4, reverse: true }, [t(18), t(17), t(13), t(14)]],
    ['snapshots', { kind: 'snapshot' }, [t(5), t(6), t(7)]],
    ['a time range', { since: BASE, until: BASE + 10_000 }, [t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(8), t(9), ...oneMs]],
    ['nothing', { since: BASE + 20_000, until: BASE + 30_000 }, []],
  ])('%s: the same events, each printed as before', (_what, f, ids) => {
    insertAll();
    const byId = blocks(EVERYTHING);
    expect(byId.size).toBe(19);
    const expected = ids.length === 0 ? '[]' : `[\n${ids.map((id) => byId.get(id)!).join(',\n')}\n]`;
    expect(printed(f)).toBe(expected);
    expect(printedFromRows(f)).toBe(expected);
  });

  it('a BLOB, which JSON cannot hold and nothing of ours writes, prints as JSON.stringify prints a Buffer', () => {
    db.insert(crash(1));
    db.insert(crash(2));
    db.db.prepare("UPDATE events SET cmdline = x'00ff', exe = x'2f62696e' WHERE pid = 1002").run();
    expect(printed({})).toBe(BLOB);
    expect(printedFromRows({})).toBe(BLOB);
  });

  it('is what the command writes', async () => {
    // The command as the CLI runs it: a config file naming a store, commander's options.
    db.close();
    const root = join(dir, 'store');
    const store = new Store(root, { create: true, busyTimeoutMs: 2000 });
    db = store.index();
    insertAll();
    store.close();
    db = new IndexDb(join(root, INDEX_FILE), { busyTimeoutMs: 2000 });
    mkdirSync(join(dir, 'etc'));
    const config = join(dir, 'etc', 'flightbox.yaml');
    writeFileSync(config, `store:\n  root: ${root}\n`);
    const out = await runList(['--config', config, '--json']);
    expect(out).toBe(`${EVERYTHING}\n`);
    expect(await runList(['--config', config, '--json', '--kind', 'snapshot', '-n', '2'])).toBe(`[\n${[t(6), t(7)].map((id) => blocks(EVERYTHING).get(id)!).join(',\n')}\n]\n`);
  });
});

/** Run `list` as commander calls it, and what it writes to stdout. */
async function runList(argv: string[]): Promise<string> {
  const cmd = new Command('list').option('-c, --config <file>').option('--kind <kind>').option('-n, --lines <n>').option('--json').exitOverride();
  cmd.parse(argv, { from: 'user' });
  const chunks: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  try {
    expect(await listCommand(cmd.opts(), cmd)).toBe(0);
  } finally {
    process.stdout.write = write;
  }
  return chunks.join('');
}

describe('isoTime', () => {
  it.each([
    0, -0, 1, 999, 1000, 86_399_999, 86_400_000, -1, -86_400_000, -86_400_001, Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(2100, 2, 1),
    -62_167_219_200_000, 253_402_300_799_999,
  ])('%d as toISOString writes it', (ms) => {
    expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });

  it.each([0.5, -0.5, 1795676084007.9, -62_167_219_200_001, 253_402_300_800_000, 8.64e15, -8.64e15])('%d (not what the day cache formats) as toISOString writes it', (ms) => {
    expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });

  it('throws as toISOString throws', () => {
    for (const ms of [Number.NaN, Infinity, 8.64e15 + 1]) expect(() => isoTime(ms)).toThrow(RangeError);
  });

  it('agrees with toISOString across days, in and out of order', () => {
    let x = 12345;
    const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 200_000; i++) {
      const ms = i % 2 ? Math.floor(rand() * (253_402_300_799_999 + 62_167_219_200_000)) - 62_167_219_200_000 : BASE + Math.floor(rand() * 3 * 86_400_000);
      if (isoTime(ms) !== new Date(ms).toISOString()) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });
});

// What `flightbox list --json` printed for insertAll()'s events before eventsJson, through
// EventRow and eventJson (JSON.stringify(list().map(eventJson), null, 2)). Non-ASCII and
// control characters are written as escapes here; the text holds them as they are.
const EVERYTHING = `[
  {
    "id": "20261126T065419-1019-000013",
    "kind": "crash",
    "time": "0000-01-01T00:00:00.000Z",
    "timeMs": -62167219200000,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1019,
    "pidInNamespace": 7,
    "tid": 1019,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065419-1019-000013"
  },
  {
    "id": "20261126T065415-1015-00000f",
    "kind": "crash",
    "time": "1969-12-31T23:59:59.999Z",
    "timeMs": -1,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1015,
    "pidInNamespace": 7,
    "tid": 1015,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065415-1015-00000f"
  },
  {
    "id": "20261126T065416-1016-000010",
    "kind": "crash",
    "time": "2024-02-29T12:00:00.000Z",
    "timeMs": 1709208000000,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1016,
    "pidInNamespace": 7,
    "tid": 1016,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065416-1016-000010"
  },
  {
    "id": "20261126T065401-1001-000001",
    "kind": "crash",
    "time": "2026-11-26T06:54:43.007Z",
    "timeMs": 1795676083007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1001,
    "pidInNamespace": 7,
    "tid": 1001,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065401-1001-000001"
  },
  {
    "id": "20261126T065402-1002-000002",
    "kind": "crash",
    "time": "2026-11-26T06:54:44.007Z",
    "timeMs": 1795676084007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1002,
    "pidInNamespace": null,
    "tid": 1002,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": true,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "truncated",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 3,
    "bundle": "bundles/2026-11-26/20261126T065402-1002-000002"
  },
  {
    "id": "20261126T065403-1003-000003",
    "kind": "crash",
    "time": "2026-11-26T06:54:45.007Z",
    "timeMs": 1795676085007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1003,
    "pidInNamespace": 7,
    "tid": 1003,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": null,
    "comm": "kworker/0:1",
    "cmdline": "nginx: worker process",
    "unit": null,
    "cgroup": null,
    "inContainer": null,
    "dumpable": 1,
    "signature": null,
    "signatureText": null,
    "rule": null,
    "reason": null,
    "core": "none",
    "coreSize": 52428800,
    "coreStoredSize": null,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065403-1003-000003"
  },
  {
    "id": "20261126T065404-1004-000004",
    "kind": "crash",
    "time": "2026-11-26T06:54:46.007Z",
    "timeMs": 1795676086007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1004,
    "pidInNamespace": 7,
    "tid": 1004,
    "uid": 33,
    "gid": 33,
    "signal": 6,
    "signalName": "SIGABRT",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065404-1004-000004"
  },
  {
    "id": "20261126T065405-1005-000005",
    "kind": "snapshot",
    "time": "2026-11-26T06:54:47.007Z",
    "timeMs": 1795676087007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": null,
    "pidInNamespace": null,
    "tid": null,
    "uid": null,
    "gid": null,
    "signal": null,
    "signalName": null,
    "exe": null,
    "comm": null,
    "cmdline": null,
    "unit": null,
    "cgroup": null,
    "inContainer": null,
    "dumpable": null,
    "signature": null,
    "signatureText": null,
    "rule": "rss-high",
    "reason": "process.rss 2.1 GiB above 2 GiB for 30s",
    "core": "-",
    "coreSize": null,
    "coreStoredSize": null,
    "bundleSize": 880000,
    "warnings": 1,
    "bundle": "bundles/2026-11-26/20261126T065405-1005-000005"
  },
  {
    "id": "20261126T065406-1006-000006",
    "kind": "snapshot",
    "time": "2026-11-26T06:54:48.007Z",
    "timeMs": 1795676088007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": null,
    "pidInNamespace": null,
    "tid": null,
    "uid": null,
    "gid": null,
    "signal": null,
    "signalName": null,
    "exe": null,
    "comm": null,
    "cmdline": null,
    "unit": null,
    "cgroup": null,
    "inContainer": null,
    "dumpable": null,
    "signature": null,
    "signatureText": null,
    "rule": null,
    "reason": "flightbox snapshot",
    "core": "-",
    "coreSize": null,
    "coreStoredSize": null,
    "bundleSize": 880000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065406-1006-000006"
  },
  {
    "id": "20261126T065407-1007-000007",
    "kind": "snapshot",
    "time": "2026-11-26T06:54:49.007Z",
    "timeMs": 1795676089007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": null,
    "pidInNamespace": null,
    "tid": null,
    "uid": null,
    "gid": null,
    "signal": null,
    "signalName": null,
    "exe": null,
    "comm": null,
    "cmdline": null,
    "unit": null,
    "cgroup": null,
    "inContainer": null,
    "dumpable": null,
    "signature": null,
    "signatureText": null,
    "rule": "",
    "reason": "",
    "core": "-",
    "coreSize": null,
    "coreStoredSize": null,
    "bundleSize": 880000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065407-1007-000007"
  },
  {
    "id": "20261126T065408-1008-000008",
    "kind": "crash",
    "time": "2026-11-26T06:54:50.007Z",
    "timeMs": 1795676090007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1008,
    "pidInNamespace": 7,
    "tid": 1008,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/tmp/a\\"b\\\\c d\\u0000e\\u001b[31mf\u{2028}g\u{2029}h \u{1F600} \u{E9} \u{F1} \u{4E2D}",
    "comm": "\\t\\n\\r\\b\\f\u{7F}\u{85}\u{A0}",
    "cmdline": "sh -c \\"echo \$HOME\\" \\\\ lone \u{FFFD}\u{FFFD}\u{FFFD} end \u{FFFF} \u{FEFF}",
    "unit": "a/b.service",
    "cgroup": "/",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "</script><!--",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065408-1008-000008"
  },
  {
    "id": "20261126T065409-1009-000009",
    "kind": "crash",
    "time": "2026-11-26T06:54:51.007Z",
    "timeMs": 1795676091007.5,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": -5,
    "pidInNamespace": 7,
    "tid": 0,
    "uid": 2147483648,
    "gid": 0,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 0,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 9007199254740994,
    "coreStoredSize": 0.30000000000000004,
    "bundleSize": 9007199254740992,
    "warnings": 1000000000000000,
    "bundle": "bundles/2026-11-26/20261126T065409-1009-000009"
  },
  {
    "id": "x-a",
    "kind": "crash",
    "time": "2026-11-26T06:54:52.007Z",
    "timeMs": 1795676092007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1011,
    "pidInNamespace": 7,
    "tid": 1011,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/x-a"
  },
  {
    "id": "x-\u{FF5E}",
    "kind": "crash",
    "time": "2026-11-26T06:54:52.007Z",
    "timeMs": 1795676092007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1012,
    "pidInNamespace": 7,
    "tid": 1012,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/x-\u{FF5E}"
  },
  {
    "id": "x-\u{1F600}",
    "kind": "crash",
    "time": "2026-11-26T06:54:52.007Z",
    "timeMs": 1795676092007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1010,
    "pidInNamespace": 7,
    "tid": 1010,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/x-\u{1F600}"
  },
  {
    "id": "20261126T065414-1014-00000e",
    "kind": "crash",
    "time": "2026-11-26T23:59:59.999Z",
    "timeMs": 1795737599999,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1014,
    "pidInNamespace": 7,
    "tid": 1014,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065414-1014-00000e"
  },
  {
    "id": "20261126T065413-1013-00000d",
    "kind": "crash",
    "time": "2026-11-27T00:00:00.000Z",
    "timeMs": 1795737600000,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1013,
    "pidInNamespace": 7,
    "tid": 1013,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065413-1013-00000d"
  },
  {
    "id": "20261126T065417-1017-000011",
    "kind": "crash",
    "time": "9999-12-31T23:59:59.999Z",
    "timeMs": 253402300799999,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1017,
    "pidInNamespace": 7,
    "tid": 1017,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065417-1017-000011"
  },
  {
    "id": "20261126T065418-1018-000012",
    "kind": "crash",
    "time": "+010000-01-01T00:00:00.000Z",
    "timeMs": 253402300800000,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1018,
    "pidInNamespace": 7,
    "tid": 1018,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065418-1018-000012"
  }
]`;

// The same for two events, one with BLOB values.
const BLOB = `[
  {
    "id": "20261126T065401-1001-000001",
    "kind": "crash",
    "time": "2026-11-26T06:54:43.007Z",
    "timeMs": 1795676083007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1001,
    "pidInNamespace": 7,
    "tid": 1001,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": "/usr/sbin/nginx",
    "comm": "nginx",
    "cmdline": "nginx: worker process",
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065401-1001-000001"
  },
  {
    "id": "20261126T065402-1002-000002",
    "kind": "crash",
    "time": "2026-11-26T06:54:44.007Z",
    "timeMs": 1795676084007,
    "host": "web-1",
    "bootId": "0f3c9d2e",
    "pid": 1002,
    "pidInNamespace": 7,
    "tid": 1002,
    "uid": 33,
    "gid": 33,
    "signal": 11,
    "signalName": "SIGSEGV",
    "exe": {
      "type": "Buffer",
      "data": [
        47,
        98,
        105,
        110
      ]
    },
    "comm": "nginx",
    "cmdline": {
      "type": "Buffer",
      "data": [
        0,
        255
      ]
    },
    "unit": "nginx.service",
    "cgroup": "/system.slice/nginx.service",
    "inContainer": false,
    "dumpable": 1,
    "signature": "4f1c2a9b7e3d5a10",
    "signatureText": "nginx SIGSEGV ngx_http_process|main",
    "rule": null,
    "reason": null,
    "core": "present",
    "coreSize": 52428800,
    "coreStoredSize": 3145728,
    "bundleSize": 3200000,
    "warnings": 0,
    "bundle": "bundles/2026-11-26/20261126T065402-1002-000002"
  }
]`;
