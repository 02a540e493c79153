// Retention end to end: real bundles (written through the Store API with real files) in a
// real 64 MiB tmpfs store, the real CLI spawned for gc, pin, unpin, delete and reindex.
// Checks the deletion order (the executable with the most events loses its oldest first),
// pins, maxAge, maxPerExe, --dry-run, and that index and disk agree after every step.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { IS_ROOT, runCli } from '../helpers.js';
import { makeBundleId } from '../../store/bundle-id.js';
import { MANIFEST_VERSION, type Manifest } from '../../store/manifest.js';
import { PIN_MARKER, Store, TRASH_DIR } from '../../store/store.js';

const MiB = 1024 ** 2;
const DAY = 86_400_000;

let mnt = '';
let mounted = false;

beforeAll(() => {
  if (!IS_ROOT) return;
  mnt = mkdtempSync(join(tmpdir(), 'fbx-retention-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755', 'tmpfs', mnt], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount tmpfs failed: ${r.stderr}`);
  mounted = true;
});

afterAll(() => {
  try {
    if (mounted) spawnSync('umount', [mnt]);
  } finally {
    if (mnt) rmSync(mnt, { recursive: true, force: true });
  }
});

interface Env {
  root: string;
  config: string;
  cli(...args: string[]): { code: number | null; stdout: string; stderr: string };
  /** a bundle of `exe` (null: a snapshot) at `time` with a core of `size` random bytes */
  add(exe: string | null, time: number, size?: number): string;
  /** ids in the index, oldest first */
  listed(): string[];
  /** ids of bundle directories on disk */
  onDisk(): string[];
  cleanup(): void;
}

let envN = 0;
function makeEnv(retention: string): Env {
  const dir = join(mnt, `t${envN++}`);
  mkdirSync(dir, { mode: 0o755 });
  const root = join(dir, 'store');
  const config = join(dir, 'flightbox.yaml');
  writeFileSync(config, `store:\n  root: ${root}\nretention:\n${retention}`);
  const store = new Store(root, { create: true, busyTimeoutMs: 5000 });
  let pid = 1000;
  const env: Env = {
    root, config,
    cli: (...args) => runCli(['--config', config, ...args]),
    add(exe, time, size = MiB) {
      const id = makeBundleId(new Date(time), pid++);
      const staging = store.createStaging(id);
      if (size > 0) writeFileSync(join(staging, 'core'), randomBytes(size), { mode: 0o600 });
      const m: Manifest = {
        version: MANIFEST_VERSION, id, kind: exe === null ? 'snapshot' : 'crash', time: new Date(time).toISOString(), timeMs: time,
        capturedAt: new Date(time).toISOString(), host: { hostname: 'test', bootId: null, kernel: 'k', machineId: null },
        process: exe === null ? null : {
          pid, pidInNamespace: null, tid: null, tidInNamespace: null, ppid: null, uid: 0, gid: 0, signal: 11, signalName: 'SIGSEGV',
          comm: exe.slice(exe.lastIndexOf('/') + 1), exe, cmdline: [exe], cwd: '/', root: '/', cgroup: null, unit: null, namespaces: {},
          inContainer: false, hostnameInNamespace: null, dumpable: 1, rlimitCore: null, threads: 1, fdCount: 3, startTimeTicks: null, procVerified: true,
        },
        core: exe === null ? null : {
          stored: true, file: 'core', compression: 'none', size, storedSize: size, truncated: false, reason: null, limitBytes: null, sparseBytes: 0, elf: false,
        },
        backtrace: null, signature: null, modules: [], rule: null, reason: exe === null ? 'test' : null,
        warnings: [], timings: {}, files: [], handler: { version: 'test', pid: process.pid },
      };
      const r = store.finishBundle(staging, m);
      if (!r.indexed) throw new Error(`not indexed: ${r.error}`);
      return id;
    },
    listed() {
      const r = env.cli('list', '--json');
      expect(r.stderr).toBe('');
      return (JSON.parse(r.stdout) as { id: string }[]).map((e) => e.id);
    },
    onDisk() {
      const base = join(root, 'bundles');
      return readdirSync(base).flatMap((d) => readdirSync(join(base, d))).sort();
    },
    cleanup() {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return env;
}

interface GcJson {
  dryRun: boolean;
  deleted: { id: string; reason: string; size: number; group: string }[];
  bytes: number;
  unsatisfied: string[];
}
function gc(env: Env, ...flags: string[]): GcJson {
  const r = env.cli('gc', '--json', ...flags);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as GcJson;
}

/** Index and disk agree, nothing is left in the trash, and reindex changes nothing. */
function expectConsistent(env: Env): void {
  const listed = env.listed();
  expect([...listed].sort()).toEqual(env.onDisk());
  const trash = join(env.root, TRASH_DIR);
  expect(existsSync(trash) ? readdirSync(trash) : []).toEqual([]);
  const r = env.cli('reindex');
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(', removed 0 stale rows');
  expect(env.listed()).toEqual(listed);
}

const T0 = Date.UTC(2026, 10, 20, 12);
const at = (n: number) => T0 + n * 60_000;

describe.skipIf(!IS_ROOT)('retention (real tmpfs store, spawned CLI)', () => {
  test('over maxUse: the executable with the most events loses its oldest first; pinned survive; --dry-run deletes nothing', () => {
    const env = makeEnv('  maxUse: 5MiB\n  keepFree: 0\n');
    try {
      const loop = [1, 2, 3, 4, 5].map((n) => env.add('/usr/bin/loop', at(n)));
      const rare = env.add('/usr/bin/rare', at(0));
      const snaps = [env.add(null, at(6)), env.add(null, at(7))];
      // The oldest of the loop is pinned: the next oldest go instead.
      const pin = env.cli('pin', loop[0]!.slice(0, 22));
      expect(pin.code).toBe(0);
      expect(pin.stdout).toContain(`Pinned ${loop[0]}`);
      expect(lstatSync(join(env.root, 'bundles', '2026-11-20', loop[0]!, PIN_MARKER)).isFile()).toBe(true);

      const before = env.onDisk();
      const dry = gc(env, '--dry-run');
      expect(dry.dryRun).toBe(true);
      expect(dry.deleted.map((d) => d.id)).toEqual([loop[1], loop[2], loop[3]]);
      expect(dry.deleted.every((d) => d.reason === 'maxUse' && d.size === MiB && d.group === '/usr/bin/loop')).toBe(true);
      expect(env.onDisk()).toEqual(before);

      const text = env.cli('gc', '--dry-run');
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(new RegExp(`${loop[1]}\\s+1\\.0 MiB\\s+maxUse\\s+/usr/bin/loop`));
      expect(text.stdout).toContain('Would delete 3 events, 3.0 MiB (limits: maxUse 5.0 MiB, keepFree 0 B');

      const done = gc(env);
      expect(done.deleted.map((d) => d.id)).toEqual([loop[1], loop[2], loop[3]]);
      expect(done.bytes).toBe(3 * MiB);
      expect(env.listed()).toEqual([rare, loop[0], loop[4], ...snaps]);
      expectConsistent(env);
      // Nothing more to do.
      expect(gc(env).deleted).toEqual([]);
      // Reindex keeps the pin (it reads the marker): with maxUse 0 only the pinned one stays.
      writeFileSync(env.config, `store:\n  root: ${env.root}\nretention:\n  maxUse: 0\n  keepFree: 0\n`);
      const all = gc(env);
      expect(all.deleted.map((d) => d.id).sort()).toEqual([rare, loop[4], ...snaps].sort());
      expect(all.unsatisfied).toEqual(['maxUse']);
      expect(env.listed()).toEqual([loop[0]]);
      expectConsistent(env);
      // Unpinned, it goes too.
      expect(env.cli('unpin', loop[0]!).code).toBe(0);
      expect(existsSync(join(env.root, 'bundles', '2026-11-20', loop[0]!, PIN_MARKER))).toBe(false);
      expect(gc(env).deleted.map((d) => d.id)).toEqual([loop[0]]);
      expect(env.listed()).toEqual([]);
      expectConsistent(env);
    } finally {
      env.cleanup();
    }
  });

  test('under keepFree: deletes by group until the filesystem has enough free', () => {
    const env = makeEnv('  maxUse: 1GiB\n  keepFree: 1MiB\n');
    try {
      const a = [1, 2, 3, 4].map((n) => env.add('/usr/bin/a', at(n), 4 * MiB));
      const b = [5, 6].map((n) => env.add('/usr/bin/b', at(n), 4 * MiB));
      const s = statfsSync(env.root);
      const free = s.bavail * s.bsize;
      // Ask for 6 MiB more than is free: two bundles of a must go (a has the most), then none of b.
      writeFileSync(env.config, `store:\n  root: ${env.root}\nretention:\n  maxUse: 1GiB\n  keepFree: ${free + 6 * MiB}\n`);
      const r = gc(env);
      expect(r.deleted.map((d) => [d.id, d.reason])).toEqual([[a[0], 'keepFree'], [a[1], 'keepFree']]);
      const after = statfsSync(env.root);
      expect(after.bavail * after.bsize).toBeGreaterThanOrEqual(free + 6 * MiB);
      expect(env.listed()).toEqual([a[2], a[3], ...b]);
      expectConsistent(env);
    } finally {
      env.cleanup();
    }
  });

  test('maxAge deletes what is older; maxPerExe keeps the newest N of each executable and of snapshots', () => {
    const now = Date.now();
    const env = makeEnv('  maxUse: 1GiB\n  keepFree: 0\n  maxAge: 30d\n  maxPerExe: 2\n');
    try {
      const old = env.add('/usr/bin/a', now - 40 * DAY, 1000);
      const oldPinned = env.add('/usr/bin/b', now - 41 * DAY, 1000);
      expect(env.cli('pin', oldPinned).code).toBe(0);
      const a = [5, 4, 3].map((d) => env.add('/usr/bin/a', now - d * DAY, 1000));
      const s = [5, 4, 3].map((d) => env.add(null, now - d * DAY, 1000));
      const c = env.add('/usr/bin/c', now - DAY, 1000);
      const r = gc(env);
      expect(r.deleted.map((d) => [d.id, d.reason])).toEqual([[old, 'maxAge'], [a[0], 'maxPerExe'], [s[0], 'maxPerExe']]);
      expect(env.listed()).toEqual([oldPinned, a[1], s[1], a[2], s[2], c]);
      expectConsistent(env);
    } finally {
      env.cleanup();
    }
  });

  test('delete ID removes one event; a pinned one only with --force; an unknown id is not found', () => {
    const env = makeEnv('  maxUse: 1GiB\n  keepFree: 0\n');
    try {
      const x = env.add('/usr/bin/x', at(1), 1000);
      const y = env.add('/usr/bin/y', at(2), 1000);
      const d = env.cli('delete', x);
      expect(d.code).toBe(0);
      expect(d.stdout).toContain(`Deleted ${x}`);
      expect(env.listed()).toEqual([y]);
      expect(env.cli('pin', y).code).toBe(0);
      const refused = env.cli('delete', y);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(new RegExp(`^flightbox: event ${y} is pinned; unpin it first .* or use --force\\n$`));
      expect(env.listed()).toEqual([y]);
      expect(env.cli('delete', '--force', y).code).toBe(0);
      expect(env.listed()).toEqual([]);
      expect(env.cli('delete', '20991231T000000-1-abcdef').code).toBe(3);
      expect(env.cli('pin', '20991231T000000-1-abcdef').code).toBe(3);
      expectConsistent(env);
    } finally {
      env.cleanup();
    }
  });

  test('a pinned bundle exports without its marker', () => {
    const env = makeEnv('  maxUse: 1GiB\n  keepFree: 0\n');
    try {
      const x = env.add('/usr/bin/x', at(1), 1000);
      expect(env.cli('pin', x).code).toBe(0);
      const out = join(env.root, '..', 'x.tar.gz');
      const e = env.cli('export', x, '-o', out);
      expect(e.stderr.split('\n').filter((l) => l.startsWith('flightbox:'))).toEqual([]);
      expect(e.code).toBe(0);
      const names = spawnSync('tar', ['tzf', out], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
      expect(names.some((n) => n.includes(PIN_MARKER))).toBe(false);
      expect(names).toContain(`${x}/core`);
    } finally {
      env.cleanup();
    }
  });

  test('a deletion interrupted after the rename into the trash is finished, never resurrected', () => {
    const env = makeEnv('  maxUse: 1GiB\n  keepFree: 0\n');
    try {
      const x = env.add('/usr/bin/x', at(1), 1000);
      const y = env.add('/usr/bin/y', at(2), 1000);
      // Step 1 of Store.removeBundle done, then a crash: the bundle is in the trash, its row remains.
      mkdirSync(join(env.root, TRASH_DIR), { mode: 0o700 });
      renameSync(join(env.root, 'bundles', '2026-11-20', x), join(env.root, TRASH_DIR, x));
      const r = env.cli('reindex');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('removed 1 stale row');
      expect(env.listed()).toEqual([y]);
      // The trash entry is young (another process may still be deleting it): kept for now,
      // then swept (here forced: staleMs 0) with its row, if any.
      const store = new Store(env.root, { create: false, busyTimeoutMs: 5000 });
      try {
        expect(store.sweepTrash(0)).toEqual([x]);
      } finally {
        store.close();
      }
      expect(readdirSync(join(env.root, TRASH_DIR))).toEqual([]);
      expectConsistent(env);
    } finally {
      env.cleanup();
    }
  });
});
