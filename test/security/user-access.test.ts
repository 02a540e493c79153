// Who may read a crash. Real users (created here), real crashes through the real kernel
// core_pattern, the CLI run as those users: a user reads the crashes of their own
// processes and nothing else; a setuid process's crash stays root's.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IS_ROOT, buildCrasher, makeTempStore, runCli, waitFor, type RunResult, type TempStore } from '../helpers.js';
import { restoreKernelState, saveKernelState, type KernelState } from '../system/kernel.js';
import { expectOneSentence } from '../system/procs.js';

const SUID_DUMPABLE = '/proc/sys/fs/suid_dumpable';
const HAVE_SETFACL = spawnSync('sh', ['-c', 'command -v setfacl']).status === 0;

interface User {
  name: string;
  uid: number;
  gid: number;
}

function ensureUser(name: string): User {
  if (spawnSync('id', ['-u', name]).status !== 0) {
    const add = spawnSync('useradd', ['-M', '-r', '-s', '/usr/sbin/nologin', name], { encoding: 'utf8' });
    if (add.status !== 0) throw new Error(`useradd ${name}: ${add.stderr}`);
  }
  const id = (flag: string) => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
  return { name, uid: id('-u'), gid: id('-g') };
}

interface EventJson {
  id: string;
  pid: number;
  uid: number;
  exe: string;
}

describe.skipIf(!IS_ROOT || !HAVE_SETFACL)('a user reads their own crashes, and only theirs', () => {
  let saved: KernelState;
  let savedSuid: string;
  let store: TempStore;
  let alice: User;
  let bob: User;
  let crasher: string;
  let suidCrasher: string;
  const ids: Record<string, string> = {};

  const cli = (args: string[], as?: User): RunResult =>
    runCli(['--config', store.configPath, ...args], as ? { uid: as.uid, gid: as.gid, cwd: '/' } : {});

  /** Crash `bin` as `user` through the kernel; wait until root sees it indexed. */
  async function crashAs(user: User, bin: string): Promise<EventJson> {
    const child = spawn('/bin/sh', ['-c', 'ulimit -c unlimited && exec "$0"', bin], { uid: user.uid, gid: user.gid, stdio: 'ignore', cwd: '/' });
    const pid = child.pid!;
    const sig = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, s) => resolve(s)));
    expect(sig).toBe('SIGSEGV');
    return waitFor(`the crash of pid ${pid} indexed`, () => {
      const r = cli(['list', '--pid', String(pid), '--json']);
      return r.code === 0 ? (JSON.parse(r.stdout) as EventJson[])[0] : undefined;
    });
  }

  beforeAll(async () => {
    saved = saveKernelState();
    savedSuid = readFileSync(SUID_DUMPABLE, 'utf8').trim();
    alice = ensureUser('fbxalice');
    bob = ensureUser('fbxbob');
    store = makeTempStore();
    // The users must reach the config and the programs; the store itself stays root's 0700.
    chmodSync(store.dir, 0o755);
    chmodSync(store.configPath, 0o644);
    crasher = join(store.dir, 'segv');
    copyFileSync(buildCrasher('segv'), crasher);
    chmodSync(crasher, 0o755);
    suidCrasher = join(store.dir, 'segv-suid');
    copyFileSync(crasher, suidCrasher);
    chmodSync(suidCrasher, 0o4755); // owned by root: runs with euid 0
    const r = cli(['install']);
    expect(r.code, r.stderr).toBe(0);
    // Setuid processes dump only with suid_dumpable 2, and then with %d = 2.
    writeFileSync(SUID_DUMPABLE, '2\n');
    ids.alice = (await crashAs(alice, crasher)).id;
    ids.bob = (await crashAs(bob, crasher)).id;
    ids.aliceSuid = (await crashAs(alice, suidCrasher)).id;
  });

  afterAll(() => {
    try {
      if (store) cli(['uninstall']);
    } finally {
      restoreKernelState(saved);
      writeFileSync(SUID_DUMPABLE, `${savedSuid}\n`);
      store?.cleanup();
    }
  });

  it('root sees all three crashes, with the uid and %d the kernel gave', () => {
    const r = cli(['list', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const rows = JSON.parse(r.stdout) as EventJson[];
    expect(rows.map((e) => e.id).sort()).toEqual([ids.alice, ids.bob, ids.aliceSuid].sort());
    const info = (id: string) => JSON.parse(cli(['info', id, '--json']).stdout) as { process: { uid: number; dumpable: number } };
    expect(info(ids.alice!).process).toMatchObject({ uid: alice.uid, dumpable: 1 });
    expect(info(ids.bob!).process).toMatchObject({ uid: bob.uid, dumpable: 1 });
    expect(info(ids.aliceSuid!).process).toMatchObject({ uid: alice.uid, dumpable: 2 });
  });

  it('list as a user shows exactly their own crash, not the setuid one, not the other user\'s', () => {
    const a = cli(['list', '--json'], alice);
    expect(a.code, a.stderr).toBe(0);
    expect((JSON.parse(a.stdout) as EventJson[]).map((e) => e.id)).toEqual([ids.alice]);
    const b = cli(['list', '--json'], bob);
    expect(b.code, b.stderr).toBe(0);
    expect((JSON.parse(b.stdout) as EventJson[]).map((e) => e.id)).toEqual([ids.bob]);
    const groups = cli(['groups', '--json'], alice);
    expect(groups.code, groups.stderr).toBe(0);
    expect(JSON.parse(groups.stdout)).toHaveLength(1);
  });

  it('info and dump work for the owner; the core they get is the one root gets', () => {
    const info = cli(['info', ids.alice!], alice);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain('crash_here'); // the crashing function, from the stack trace
    const mine = spawnSync(process.execPath, [join(import.meta.dirname, '../../dist/cli/main.js'), '--config', store.configPath, 'dump', ids.alice!, '-o', '-'], { uid: alice.uid, gid: alice.gid, cwd: '/', maxBuffer: 1 << 30 });
    expect(mine.status, String(mine.stderr)).toBe(0);
    const roots = spawnSync(process.execPath, [join(import.meta.dirname, '../../dist/cli/main.js'), '--config', store.configPath, 'dump', ids.alice!, '-o', '-'], { maxBuffer: 1 << 30 });
    expect(roots.status).toBe(0);
    expect(mine.stdout.length).toBeGreaterThan(4096);
    expect(createHash('sha256').update(mine.stdout).digest('hex')).toBe(createHash('sha256').update(roots.stdout).digest('hex'));
  });

  it('another user\'s crash and the setuid crash are "not found" for the user, and unreadable by path', () => {
    for (const id of [ids.bob!, ids.aliceSuid!]) {
      const r = cli(['info', id], alice);
      expectOneSentence(r, 3, /no event|not found/i);
      const d = cli(['dump', id, '-o', '-'], alice);
      expect(d.code).toBe(3);
    }
    // Straight through the filesystem: the bundle paths of others' crashes stay closed.
    const rootList = JSON.parse(cli(['list', '--json']).stdout) as { id: string; bundle: string }[];
    for (const id of [ids.bob!, ids.aliceSuid!]) {
      const bundle = join(store.root, rootList.find((e) => e.id === id)!.bundle);
      const cat = spawnSync('cat', [join(bundle, 'manifest.json')], { uid: alice.uid, gid: alice.gid, encoding: 'utf8' });
      expect(cat.status, `alice read ${id}'s manifest`).not.toBe(0);
      expect(cat.stderr).toMatch(/Permission denied/);
    }
    // Nor can a user read the index, list the store, or read the setuid process's core.
    for (const p of [join(store.root, 'index.sqlite'), join(store.root, 'flightbox.log')]) {
      expect(spawnSync('cat', [p], { uid: alice.uid, gid: alice.gid }).status).not.toBe(0);
    }
    expect(spawnSync('ls', [store.root], { uid: alice.uid, gid: alice.gid }).status).not.toBe(0);
    expect(spawnSync('ls', [join(store.root, 'bundles')], { uid: alice.uid, gid: alice.gid }).status).not.toBe(0);
  });

  it('the setuid crash carries no ACL entry for its user at all', () => {
    const row = (JSON.parse(cli(['list', '--json']).stdout) as { id: string; bundle: string }[]).find((e) => e.id === ids.aliceSuid)!;
    const acl = spawnSync('getfacl', ['-R', '-p', join(store.root, row.bundle)], { encoding: 'utf8' });
    expect(acl.status).toBe(0);
    expect(acl.stdout).toContain('# file:');
    expect(acl.stdout).not.toMatch(new RegExp(`user:(${alice.name}|${alice.uid}):`));
  });

  it('changing the store stays root\'s: delete, pin, gc, reindex, export as a user are refused in one sentence', () => {
    for (const verb of [['delete', ids.alice!], ['pin', ids.alice!], ['gc'], ['reindex'], ['export', ids.alice!, '-o', '/tmp/fbx-x.tar.gz']]) {
      const r = cli(verb, alice);
      expectOneSentence(r, 'non-zero', /permission denied|needs root/i);
    }
    expect(cli(['list', '--json'], alice).stdout).toContain(ids.alice);
  });

  it('after root deletes the crash, the user no longer sees it', () => {
    const del = cli(['delete', ids.alice!]);
    expect(del.code, del.stderr).toBe(0);
    const a = cli(['list', '--json'], alice);
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toEqual([]);
  });

  it('a user with no crash recorded gets a clear "permission denied", not an empty store', () => {
    const carol = ensureUser('fbxcarol');
    const r = cli(['list'], carol);
    expectOneSentence(r, 77, /permission denied/i);
  });
});
