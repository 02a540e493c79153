// The flightbox CLI, spawned, against a store filled by the real handler driven as the
// kernel drives it (no core_pattern change: cores come from gdb's gcore on live processes).
import { spawnSync } from 'node:child_process';
import {
  chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync,
  statSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { CLI, IS_ROOT, makeTempStore, readJson, runCli, type TempStore } from '../helpers.js';
import {
  compileWaiter, expectOneSentence, gcore, kernelArgs, runHandler, sha256, startProcess, stopAll, stopProcess, type LiveProcess,
} from './procs.js';

const HOUR = 3600;
const DAY = 86400;

// ---------------------------------------------------------------------------------------
// The store: six events from three processes, three signals, three uids, five days.

interface Ev {
  key: string;
  proc: 'A' | 'B' | 'C';
  signal: number;
  uid: number;
  ago: number; // seconds before "now"
  rlimit?: string;
  time: number; // filled in
  id: string; // filled in
  pid: number; // filled in
  exe: string; // filled in
  comm: string; // filled in
  core: string; // the core sent to the handler
}

interface EventJson {
  id: string;
  time: string;
  timeMs: number;
  pid: number;
  uid: number;
  signal: number;
  signalName: string;
  exe: string;
  comm: string;
  core: string;
  signature: string | null;
  signatureText: string | null;
  bundle: string;
}

let work: string;
let s: TempStore;
let waiter: string;
let sleepCopy: string;
let now: number;
const ev: Record<string, Ev> = {};
let byTime: Ev[] = [];

function spec(key: string, proc: Ev['proc'], signal: number, uid: number, ago: number, rlimit?: string): Ev {
  return { key, proc, signal, uid, ago, rlimit, time: 0, id: '', pid: 0, exe: '', comm: '', core: '' };
}

const cli = (...args: string[]) => runCli(['--config', s.configPath, ...args]);

function listIds(...args: string[]): string[] {
  const r = cli('list', '--json', ...args);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as EventJson[]).map((e) => e.id);
}

function ids(...keys: string[]): string[] {
  return keys.map((k) => ev[k]!.id);
}

/** Ids of the events matching `pred`, oldest first. */
function expected(pred: (e: Ev) => boolean): string[] {
  return byTime.filter(pred).map((e) => e.id);
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

function localMinute(sec: number): string {
  const d = new Date(sec * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function localSecond(sec: number): string {
  return `${localMinute(sec)}:${pad(new Date(sec * 1000).getSeconds())}`;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'fbx-cli-'));
  waiter = compileWaiter(work);
  sleepCopy = join(work, 'fbxsleep');
  copyFileSync('/bin/sleep', sleepCopy);

  s = makeTempStore();
  now = Math.floor(Date.now() / 1000);
  const specs = [
    spec('E1', 'A', 11, 0, 5 * DAY),
    spec('E6', 'A', 6, 0, 4 * DAY, '0'), // RLIMIT_CORE 0: no core
    spec('E2', 'A', 11, 1000, 2 * DAY + HOUR),
    spec('E3', 'B', 6, 1000, 3 * HOUR),
    spec('E4', 'B', 8, 0, 30 * 60),
    spec('E5', 'C', 11, 2000, 10 * 60),
  ];
  const procs: Record<string, LiveProcess> = {};
  try {
    procs.A = await startProcess(waiter, [], 'fbxwaiter');
    procs.B = await startProcess(sleepCopy, ['1000'], 'fbxsleep');
    procs.C = await startProcess(waiter, ['worker1'], 'worker1');
    const info = {
      A: { exe: waiter, comm: 'fbxwaiter', core: gcore(procs.A.pid, join(work, 'a')) },
      B: { exe: sleepCopy, comm: 'fbxsleep', core: gcore(procs.B.pid, join(work, 'b')) },
      C: { exe: waiter, comm: 'worker1', core: gcore(procs.C.pid, join(work, 'c')) },
    };
    for (const e of specs) {
      const p = procs[e.proc]!;
      Object.assign(e, { time: now - e.ago, pid: p.pid, ...info[e.proc] });
      const before = new Set(existsSync(s.root) ? listIdsRaw() : []);
      const args = kernelArgs({ pid: e.pid, uid: e.uid, gid: e.uid, signal: e.signal, time: e.time, rlimit: e.rlimit, host: 'fbx-host' });
      const { code } = await runHandler(s.configPath, args, e.core);
      if (code !== 0) throw new Error(`handler exited ${code} for ${e.key}`);
      const fresh = listIdsRaw().filter((id) => !before.has(id));
      if (fresh.length !== 1) throw new Error(`expected one new event for ${e.key}, got ${fresh.length}`);
      e.id = fresh[0]!;
      ev[e.key] = e;
    }
  } finally {
    for (const p of Object.values(procs)) stopProcess(p);
  }
  byTime = Object.values(ev).sort((a, b) => a.time - b.time);
}, 120_000);

function listIdsRaw(): string[] {
  const r = runCli(['--config', s.configPath, 'list', '--json']);
  if (r.code !== 0) throw new Error(`list failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as EventJson[]).map((e) => e.id);
}

afterAll(() => {
  stopAll(); // a fixture that never got to sleep (procs holds the others, killed above)
  s?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------

describe('list', () => {
  test('table: a header and one line per event, oldest first', () => {
    const r = cli('list');
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(7);
    expect(lines[0]).toMatch(/^TIME\s+ID\s+PID\s+UID\s+SIG\s+COREFILE\s+SIZE\s+EXE$/);
    byTime.forEach((e, i) => {
      const l = lines[i + 1]!;
      expect(l).toContain(e.id);
      expect(l.split(/\s+/)).toEqual(expect.arrayContaining([String(e.pid), String(e.uid), e.exe]));
      expect(l).toContain(e.rlimit === '0' ? ' none ' : ' present ');
    });
    expect(lines[1]).toContain('SIGSEGV');
  });

  test('--json: an array of event objects with id, pid, exe, signalName, time', () => {
    const r = cli('list', '--json');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as EventJson[];
    expect(Array.isArray(rows)).toBe(true);
    expect(rows.map((x) => x.id)).toEqual(byTime.map((e) => e.id));
    const names: Record<number, string> = { 6: 'SIGABRT', 8: 'SIGFPE', 11: 'SIGSEGV' };
    rows.forEach((row, i) => {
      const e = byTime[i]!;
      expect(row).toMatchObject({
        id: e.id, pid: e.pid, uid: e.uid, exe: e.exe, comm: e.comm, signal: e.signal, signalName: names[e.signal],
        time: new Date(e.time * 1000).toISOString(), timeMs: e.time * 1000, core: e.rlimit === '0' ? 'none' : 'present',
      });
      const day = new Date(e.time * 1000).toISOString().slice(0, 10);
      expect(row.bundle).toBe(`bundles/${day}/${e.id}`);
      expect(existsSync(join(s.root, row.bundle, 'manifest.json'))).toBe(true);
    });
  });

  test('the config from FLIGHTBOX_CONFIG, and --config after the verb, give the same answer', () => {
    const a = cli('list', '--json');
    const b = runCli(['list', '--json'], { env: { ...process.env, FLIGHTBOX_CONFIG: s.configPath } });
    const c = runCli(['list', '--json', '--config', s.configPath]);
    expect(b.code).toBe(0);
    expect(c.code).toBe(0);
    expect(b.stdout).toBe(a.stdout);
    expect(c.stdout).toBe(a.stdout);
  });

  test('--since / --until with absolute times (UTC, offset, local, date, today)', () => {
    const e3 = ev.E3!;
    const e2 = ev.E2!;
    expect(listIds('--since', new Date(e3.time * 1000).toISOString())).toEqual(ids('E3', 'E4', 'E5'));
    expect(listIds('--since', new Date(e3.time * 1000 + 1000).toISOString())).toEqual(ids('E4', 'E5'));
    // The same instant written in +01:00.
    const plus1 = new Date((e3.time + HOUR) * 1000).toISOString().replace(/\.\d{3}Z$/, '+01:00');
    expect(listIds('--since', plus1)).toEqual(ids('E3', 'E4', 'E5'));
    // Local time, to the minute (E3 is at or after the start of its minute).
    expect(listIds('--since', localMinute(e3.time))).toEqual(ids('E3', 'E4', 'E5'));
    // --until is inclusive.
    expect(listIds('--until', localSecond(e2.time))).toEqual(ids('E1', 'E6', 'E2'));
    expect(listIds('--until', new Date(e2.time * 1000 - 1000).toISOString())).toEqual(ids('E1', 'E6'));
    expect(listIds('--since', new Date(ev.E6!.time * 1000).toISOString(), '--until', new Date(e2.time * 1000).toISOString())).toEqual(ids('E6', 'E2'));
    // A date alone is local midnight; "today" too.
    const d = new Date(now * 1000);
    const midnight = new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() / 1000;
    const todays = expected((e) => e.time >= midnight);
    expect(listIds('--since', `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`)).toEqual(todays);
    expect(listIds('--since', 'today')).toEqual(todays);
  });

  test('--since / --until relative (1h, 4h, 1d, "45min ago")', () => {
    expect(listIds('--since', '1h')).toEqual(ids('E4', 'E5'));
    expect(listIds('--since', '4h')).toEqual(ids('E3', 'E4', 'E5'));
    expect(listIds('--since', '45min ago')).toEqual(ids('E4', 'E5'));
    expect(listIds('--until', '1d')).toEqual(ids('E1', 'E6', 'E2'));
    expect(listIds('--since', '3d', '--until', '1d')).toEqual(ids('E2'));
    expect(listIds('--since', '2w')).toEqual(byTime.map((e) => e.id));
  });

  test('--exe (full path, base name), --comm, --pid, --uid', () => {
    expect(listIds('--exe', sleepCopy)).toEqual(ids('E3', 'E4'));
    expect(listIds('--exe', 'fbxsleep')).toEqual(ids('E3', 'E4'));
    expect(listIds('--exe', waiter)).toEqual(ids('E1', 'E6', 'E2', 'E5'));
    expect(listIds('--exe', 'fbxwaiter')).toEqual(ids('E1', 'E6', 'E2', 'E5'));
    expect(listIds('--exe', 'fbxwait')).toEqual([]); // a base name matches whole, not as a prefix
    expect(listIds('--comm', 'worker1')).toEqual(ids('E5'));
    expect(listIds('--comm', 'fbxsleep')).toEqual(ids('E3', 'E4'));
    expect(listIds('--pid', String(ev.E3!.pid))).toEqual(ids('E3', 'E4'));
    expect(listIds('--pid', String(ev.E1!.pid))).toEqual(ids('E1', 'E6', 'E2'));
    expect(listIds('--uid', '1000')).toEqual(ids('E2', 'E3'));
    expect(listIds('--uid', '0', '--signal', '11')).toEqual(ids('E1'));
  });

  test('--signal by name, lower-case name and number', () => {
    for (const v of ['SIGSEGV', 'segv', 'SEGV', '11']) expect(listIds('--signal', v), v).toEqual(ids('E1', 'E2', 'E5'));
    expect(listIds('--signal', 'abrt')).toEqual(ids('E6', 'E3'));
    expect(listIds('--signal', '8')).toEqual(ids('E4'));
    expect(listIds('--signal', 'SIGBUS')).toEqual([]);
  });

  test('--signature matches a prefix of the hash', () => {
    const rows = JSON.parse(cli('list', '--json').stdout) as EventJson[];
    const sig = rows.find((r) => r.id === ev.E5!.id)!.signature!;
    expect(sig).toMatch(/^[0-9a-f]{16}$/);
    // Same program, same signal, same stack: one signature for E1, E2, E5.
    expect(rows.filter((r) => r.signature === sig).map((r) => r.id)).toEqual(ids('E1', 'E2', 'E5'));
    expect(listIds('--signature', sig)).toEqual(ids('E1', 'E2', 'E5'));
    const prefix = sig.slice(0, 5);
    expect(listIds('--signature', prefix)).toEqual(rows.filter((r) => r.signature?.startsWith(prefix)).map((r) => r.id));
    expect(listIds('--signature', prefix)).toEqual(expect.arrayContaining(ids('E1', 'E2', 'E5')));
  });

  test('-n N: the newest N, oldest first; --reverse: newest first', () => {
    expect(listIds('-n', '2')).toEqual(ids('E4', 'E5'));
    expect(listIds('--lines', '1')).toEqual(ids('E5'));
    expect(listIds('-n', '2', '--reverse')).toEqual(ids('E5', 'E4'));
    expect(listIds('-r')).toEqual(byTime.map((e) => e.id).reverse());
    expect(listIds('-n', '100')).toEqual(byTime.map((e) => e.id));
    expect(listIds('-n', '2', '--signal', '11')).toEqual(ids('E2', 'E5'));
    // The table obeys the same order.
    const t = cli('list', '-n', '2', '--reverse').stdout.trimEnd().split('\n');
    expect(t).toHaveLength(3);
    expect(t[1]).toContain(ev.E5!.id);
    expect(t[2]).toContain(ev.E4!.id);
  });

  test('no match: "No events found." on stderr, exit 0; --json gives []', () => {
    const r = cli('list', '--pid', '1');
    expect(r).toEqual({ code: 0, stdout: '', stderr: 'No events found.\n' });
    const j = cli('list', '--pid', '1', '--json');
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout)).toEqual([]);
  });
});

describe('info', () => {
  test('a full id: PID, Signal, Executable, Signature and the stack trace', () => {
    const e = ev.E5!;
    const r = cli('info', e.id);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const out = r.stdout;
    expect(out).toMatch(new RegExp(`^\\s*ID: ${e.id}$`, 'm'));
    expect(out).toMatch(new RegExp(`^\\s*PID: ${e.pid} \\(worker1\\)`, 'm'));
    expect(out).toMatch(/^\s*Signal: 11 \(SIGSEGV\)$/m);
    expect(out).toMatch(/^\s*UID: 2000$/m);
    expect(out).toMatch(new RegExp(`^\\s*Executable: ${waiter}$`, 'm'));
    expect(out).toMatch(/^\s*Signature: [0-9a-f]{16} \(fbxwaiter SIGSEGV .*fbx_fixture_wait_here.*\)$/m);
    expect(out).toMatch(/^\s*Core: present, /m);
    expect(out).toMatch(/^Stack trace \(/m);
    expect(out.slice(out.indexOf('Stack trace ('))).toContain('fbx_fixture_wait_here');
  });

  test('a unique prefix of an id names that event', () => {
    const e = ev.E1!;
    const prefix = e.id.slice(0, 13);
    expect(byTime.filter((x) => x.id.startsWith(prefix))).toHaveLength(1);
    const r = cli('info', prefix);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^\\s*ID: ${e.id}$`, 'm'));
  });

  test('without an id: the newest event (matching the filters, if any)', () => {
    expect(cli('info').stdout).toMatch(new RegExp(`^\\s*ID: ${ev.E5!.id}$`, 'm'));
    expect(cli('info', '--signal', 'abrt').stdout).toMatch(new RegExp(`^\\s*ID: ${ev.E3!.id}$`, 'm'));
    expect(cli('info', '--uid', '1000', '--exe', 'fbxwaiter').stdout).toMatch(new RegExp(`^\\s*ID: ${ev.E2!.id}$`, 'm'));
  });

  test('--json is the manifest', () => {
    for (const e of [ev.E3!, ev.E6!]) {
      const r = cli('info', e.id, '--json');
      expect(r.code).toBe(0);
      const day = new Date(e.time * 1000).toISOString().slice(0, 10);
      expect(JSON.parse(r.stdout)).toEqual(readJson(join(s.root, 'bundles', day, e.id, 'manifest.json')));
    }
  });

  test('an event without a core says why', () => {
    const r = cli('info', ev.E6!.id);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s*Core: none \(rlimit\)$/m);
    expect(r.stdout).toMatch(/^\s*RLIMIT_CORE: 0$/m);
    expect(r.stdout).not.toMatch(/^Stack trace/m);
  });
});

describe('dump', () => {
  test('-o FILE writes the decompressed core; refuses an existing file; --force overwrites', () => {
    const e = ev.E5!;
    const orig = readFileSync(e.core);
    const out = join(work, 'dumped.core');
    const r = cli('dump', e.id, '-o', out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(e.id);
    expect(sha256(readFileSync(out))).toBe(sha256(orig));
    expect(statSync(out).mode & 0o777).toBe(0o600);

    // An existing file is never overwritten without --force.
    writeFileSync(out, 'precious');
    const again = cli('dump', e.id, '-o', out);
    expectOneSentence(again, 2, /already exists/);
    expect(readFileSync(out, 'utf8')).toBe('precious');

    // --force: overwritten, and truncated (the old file was larger).
    writeFileSync(out, Buffer.alloc(orig.length + 12345, 0x41));
    const forced = cli('dump', e.id, '-o', out, '--force');
    expect(forced.code, forced.stderr).toBe(0);
    expect(sha256(readFileSync(out))).toBe(sha256(orig));
  });

  test('a prefix and -o - (a pipe) work too; a core of another event is its own', () => {
    const e = ev.E3!;
    const r = spawnSync(process.execPath, [CLI, '--config', s.configPath, 'dump', e.id.slice(0, 13), '-o', '-'], { maxBuffer: 256 * 1024 * 1024 });
    expect(r.status, String(r.stderr)).toBe(0);
    expect(sha256(r.stdout)).toBe(sha256(readFileSync(e.core)));
  });

  test('an event without a core: exit 3, one sentence, no file', () => {
    const out = join(work, 'nocore.core');
    const r = cli('dump', ev.E6!.id, '-o', out);
    expectOneSentence(r, 3, /no stored core/);
    expect(existsSync(out)).toBe(false);
  });
});

describe('debug', () => {
  test('-A "-batch -ex bt" runs gdb non-interactively on the core; the backtrace shows', () => {
    const tmpBefore = new Set(readdirSync(tmpdir()));
    const r = cli('debug', ev.E5!.id, '-A', '-batch -ex bt');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^#\d+\s+.*fbx_fixture_wait_here/m);
    expect(r.stdout).toMatch(/^#0\s+.*pause/m);
    // No temporary core left behind.
    expect(readdirSync(tmpdir()).filter((n) => n.startsWith('flightbox-debug-') && !tmpBefore.has(n))).toEqual([]);
  });

  test('the newest matching event when no id is given', () => {
    const r = cli('debug', '--exe', 'fbxsleep', '-A', '-batch -ex bt');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^#\d+\s+.*nanosleep/m);
  });

  test('an event without a core: exit 3', () => {
    expectOneSentence(cli('debug', ev.E6!.id, '-A', '-batch -ex bt'), 3, /no stored core/);
  });
});

describe('groups', () => {
  interface Group { signature: string; text: string; count: number; firstSeen: string; lastSeen: string; exe: string; lastId: string }

  test('--json: a count per signature with first and last seen', () => {
    const r = cli('groups', '--json');
    expect(r.code).toBe(0);
    const groups = JSON.parse(r.stdout) as Group[];
    expect(groups).toHaveLength(4);
    expect(groups.reduce((a, g) => a + g.count, 0)).toBe(6);
    const big = groups[0]!;
    expect(big.count).toBe(3);
    expect(big.text).toMatch(/^fbxwaiter SIGSEGV .*fbx_fixture_wait_here/);
    expect(big.firstSeen).toBe(new Date(ev.E1!.time * 1000).toISOString());
    expect(big.lastSeen).toBe(new Date(ev.E5!.time * 1000).toISOString());
    expect(big.lastId).toBe(ev.E5!.id);
    expect(big.exe).toBe(waiter);
    const rows = JSON.parse(cli('list', '--json').stdout) as EventJson[];
    for (const g of groups) {
      const members = rows.filter((x) => x.signature === g.signature);
      expect(members.length, g.text).toBe(g.count);
      expect(g.lastId).toBe(members.at(-1)!.id);
      expect(g.firstSeen).toBe(members[0]!.time);
      expect(g.lastSeen).toBe(members.at(-1)!.time);
      expect(g.text).toBe(members[0]!.signatureText);
    }
    expect(groups.map((g) => g.text)).toEqual(expect.arrayContaining([
      expect.stringMatching(/^fbxsleep SIGABRT .*nanosleep/),
      expect.stringMatching(/^fbxsleep SIGFPE .*nanosleep/),
      'fbxwaiter SIGABRT -',
    ]));
  });

  test('table, and --since / --exe filters', () => {
    const r = cli('groups');
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^SIGNATURE\s+COUNT\s+FIRST SEEN\s+LAST SEEN\s+LAST ID\s+CRASH$/);
    expect(lines).toHaveLength(5);
    expect(lines[1]).toMatch(/^[0-9a-f]{16}\s+3\s+/);
    expect(lines[1]).toContain(ev.E5!.id);
    const recent = JSON.parse(cli('groups', '--json', '--since', '1h').stdout) as Group[];
    expect(recent.map((g) => g.lastId).sort()).toEqual(ids('E4', 'E5').sort());
    expect(recent.every((g) => g.count === 1)).toBe(true);
    const sleepers = JSON.parse(cli('groups', '--json', '--exe', 'fbxsleep').stdout) as Group[];
    expect(sleepers).toHaveLength(2);
    const none = cli('groups', '--exe', 'nosuchprogram');
    expect(none).toEqual({ code: 0, stdout: '', stderr: 'No crashes found.\n' });
  });
});

describe('reindex', () => {
  let copy: TempStore;
  beforeAll(() => {
    copy = makeTempStore();
    const r = spawnSync('cp', ['-a', s.root, copy.root]);
    if (r.status !== 0) throw new Error(`cp failed: ${String(r.stderr)}`);
  });
  afterAll(() => copy?.cleanup());

  const run = (...args: string[]) => runCli(['--config', copy.configPath, ...args]);
  const dropIndex = () => {
    for (const f of ['index.sqlite', 'index.sqlite-wal', 'index.sqlite-shm']) rmSync(join(copy.root, f), { force: true });
  };

  test('rebuilds a deleted index: list shows the same events', () => {
    const original = cli('list', '--json').stdout;
    dropIndex();
    const r = run('reindex');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('Indexed 6 events, removed 0 stale rows.\n');
    expect(run('list', '--json').stdout).toBe(original);
    expect(run('groups', '--json').stdout).toBe(cli('groups', '--json').stdout);
  });

  test('a corrupt manifest is reported on stderr, exit non-zero, the others indexed', () => {
    const bad = ev.E2!;
    const day = new Date(bad.time * 1000).toISOString().slice(0, 10);
    writeFileSync(join(copy.root, 'bundles', day, bad.id, 'manifest.json'), '{"version": 1, "id": ');

    // With the old index still there: the stale row goes.
    const r1 = run('reindex');
    expect(r1.code).not.toBe(0);
    expect(r1.stdout).toBe('Indexed 5 events, removed 1 stale row.\n');
    const err = r1.stderr.trimEnd().split('\n');
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(new RegExp(`^flightbox: skipped ${bad.id}: .*manifest\\.json`));

    // From nothing.
    dropIndex();
    const r2 = run('reindex');
    expect(r2.code).not.toBe(0);
    expect(r2.stdout).toBe('Indexed 5 events, removed 0 stale rows.\n');
    expect(r2.stderr).toContain(bad.id);
    const listed = (JSON.parse(run('list', '--json').stdout) as EventJson[]).map((e) => e.id);
    expect(listed).toEqual(byTime.filter((e) => e.key !== 'E2').map((e) => e.id));
  });
});

describe('config', () => {
  test('--defaults prints YAML that is itself a valid config', () => {
    const r = runCli(['config', '--defaults']);
    expect(r.code).toBe(0);
    const doc = parseYaml(r.stdout) as Record<string, Record<string, unknown>>;
    expect(doc.store).toMatchObject({ root: '/var/lib/flightbox', busyTimeout: '10s' });
    expect(doc.core).toMatchObject({ maxSize: '2GiB', compress: 'zstd', level: 3, honourRlimit: true });
    expect(doc.capture).toEqual({ environ: true, userAccess: true });
    expect(doc.core).toMatchObject({ maxPerExePerHour: 5, maxConcurrent: 8 });
    expect(doc.backtrace).toEqual({ tool: 'auto', timeout: '60s', source: false });
    expect(doc.install).toMatchObject({ launcher: null });
    const f = join(work, 'defaults.yaml');
    writeFileSync(f, r.stdout);
    const v = runCli(['--config', f, 'config']);
    expect(v).toEqual({ code: 0, stdout: `${f}: valid\n`, stderr: '' });
  });

  test('a valid file, by --config and by FLIGHTBOX_CONFIG', () => {
    expect(cli('config')).toEqual({ code: 0, stdout: `${s.configPath}: valid\n`, stderr: '' });
    const e = runCli(['config'], { env: { ...process.env, FLIGHTBOX_CONFIG: s.configPath } });
    expect(e).toEqual({ code: 0, stdout: `${s.configPath}: valid\n`, stderr: '' });
  });

  test('an invalid file: exit 78, naming file, line and key', () => {
    const f = join(work, 'bad.yaml');
    writeFileSync(f, `store:\n  root: ${s.root}\ncore:\n  compress: zstd\n  maxSize: lots\n`);
    const r = runCli(['--config', f, 'config']);
    expectOneSentence(r, 78);
    expect(r.stderr).toContain(f);
    expect(r.stderr).toContain(`${f}:5`);
    expect(r.stderr).toContain('core.maxSize');
    expect(r.stderr).toContain('"lots"');
    // An unknown key (a typo) is named the same way, and other verbs refuse the file too.
    writeFileSync(f, `store:\n  root: ${s.root}\n  rooot: /x\n`);
    const t = runCli(['list'], { env: { ...process.env, FLIGHTBOX_CONFIG: f } });
    expectOneSentence(t, 78);
    expect(t.stderr).toContain(`${f}:3`);
    expect(t.stderr).toContain('store.rooot');
  });

  test('an option older versions had (daemon.freezeTimeout): valid, with one warning naming file, line and key', () => {
    const f = join(work, 'old.yaml');
    writeFileSync(f, `store:\n  root: ${s.root}\ndaemon:\n  freezeTimeout: 500ms\n`);
    const r = runCli(['--config', f, 'config']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${f}: valid\n`);
    expect(r.stderr).toMatch(new RegExp(`^flightbox: warning: daemon\\.freezeTimeout: no longer used and ignored: .* \\(${f}:4\\)\\n$`));
    const l = runCli(['--config', f, 'list', '--json']);
    expect(l.code, l.stderr).toBe(0);
    expect(l.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });
});

describe('invocations that fail: exit status and one sentence', () => {
  const cases: [string, () => string[], number | 'non-zero', RegExp?, Record<string, string>?][] = [
    ['unknown id', () => ['info', '20000101T000000-1-abcdef'], 3, /no event matches/],
    ['unknown id prefix', () => ['dump', 'zzz', '-o', join(work, 'never')], 3],
    ['ambiguous prefix', () => ['info', ev.E1!.id.slice(0, 2)], 2, /more than one event/],
    ['bad --since date', () => ['list', '--since', '2026-13-45'], 2, /--since/],
    ['bad --since word', () => ['list', '--since', 'whenever'], 2, /--since/],
    ['--since after --until', () => ['list', '--since', '1h', '--until', '2d'], 2],
    ['unknown flag', () => ['list', '--bogus'], 2, /--bogus/],
    ['unknown command', () => ['frobnicate'], 2, /frobnicate/],
    ['missing required -o', () => ['dump', ev.E5!.id], 2, /--output/],
    ['--pid abc', () => ['list', '--pid', 'abc'], 2, /--pid/],
    ['--signal NOPE', () => ['list', '--signal', 'NOPE'], 2, /NOPE/],
    ['--signature not hex', () => ['list', '--signature', 'xyz'], 2, /--signature/],
    ['-n 0', () => ['list', '-n', '0'], 2, /-n/],
    ['-n abc', () => ['list', '-n', 'abc'], 2, /-n/],
  ];
  test.each(cases)('%s', (_name, args, code, mentions) => {
    expectOneSentence(cli(...args()), code, mentions);
  });

  test('config file missing when given explicitly: exit 78 (--config and FLIGHTBOX_CONFIG)', () => {
    const missing = join(work, 'no-such-config.yaml');
    expectOneSentence(runCli(['--config', missing, 'list']), 78, /no-such-config\.yaml/);
    expectOneSentence(runCli(['list'], { env: { ...process.env, FLIGHTBOX_CONFIG: missing } }), 78, /no-such-config\.yaml/);
  });

  test('store missing: non-zero with a clear message', () => {
    const empty = makeTempStore();
    try {
      for (const verb of [['list'], ['info'], ['groups'], ['dump', '-o', join(empty.dir, 'x')]]) {
        const r = runCli(['--config', empty.configPath, ...verb]);
        expectOneSentence(r, 'non-zero', /store .* does not exist/);
        expect(r.stderr).toContain(empty.root);
      }
      expect(existsSync(empty.root)).toBe(false); // a query never creates the store
    } finally {
      empty.cleanup();
    }
  });
});

describe('permissions', () => {
  test.skipIf(!IS_ROOT)('a non-root user cannot read the store: permission denied', () => {
    if (spawnSync('id', ['-u', 'fbxtest']).status !== 0) {
      const add = spawnSync('useradd', ['-M', '-r', 'fbxtest'], { encoding: 'utf8' });
      expect(add.status, add.stderr).toBe(0);
    }
    const uid = Number(spawnSync('id', ['-u', 'fbxtest'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'fbxtest'], { encoding: 'utf8' }).stdout.trim());
    expect(uid).toBeGreaterThan(0);
    // Let the user reach the config and see that the store exists (the store stays 0700 root).
    const dirMode = statSync(s.dir).mode & 0o777;
    const cfgMode = statSync(s.configPath).mode & 0o777;
    chmodSync(s.dir, 0o755);
    chmodSync(s.configPath, 0o644);
    try {
      expect(statSync(s.root).mode & 0o777).toBe(0o700);
      for (const verb of [['list'], ['list', '--json'], ['info'], ['groups'], ['dump', '-o', '-'], ['debug']]) {
        const r = runCli(['--config', s.configPath, ...verb], { uid, gid, cwd: '/' });
        expectOneSentence(r, 'non-zero', /permission denied/i);
      }
    } finally {
      chmodSync(s.dir, dirMode);
      chmodSync(s.configPath, cfgMode);
    }
  });
});
