// The index is locked by another process past the busy timeout: the crash must still be
// published as a bundle, spooled, and indexed later by the daemon or `flightbox reindex`.
// The lock is real: a second connection holding an EXCLUSIVE transaction on the file.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, HANDLER, makeTempStore, runCli, waitFor, type TempStore } from '../helpers.js';

function handlerArgs(pid: number): string[] {
  return [String(pid), String(pid), String(pid), '0', '0', '11', String(Math.floor(Date.now() / 1000)), '18446744073709551615', 'host', '1'];
}

function runHandler(store: TempStore, pid: number, input: Buffer): number | null {
  const r = spawnSync(process.execPath, [HANDLER, '--config', store.configPath, '--', ...handlerArgs(pid)], { input, timeout: 60_000 });
  return r.status;
}

describe('index locked by another process', () => {
  let store: TempStore;
  let sleeper: ReturnType<typeof spawn> | undefined;
  beforeEach(() => {
    store = makeTempStore('', '  busyTimeout: 300ms\n');
    sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  });
  afterEach(() => {
    sleeper?.kill('SIGKILL');
    store.cleanup();
  });

  it('publishes and spools the bundle, then the daemon indexes it', async () => {
    // Create the index with a first crash, then lock it.
    expect(runHandler(store, sleeper!.pid!, Buffer.from('first core'))).toBe(0);
    const db = new Database(join(store.root, 'index.sqlite'));
    db.exec('BEGIN EXCLUSIVE');
    let status: number | null;
    try {
      status = runHandler(store, sleeper!.pid!, Buffer.from('second core'));
    } finally {
      db.exec('ROLLBACK');
      db.close();
    }
    expect(status).toBe(0);
    const spooled = readdirSync(join(store.root, 'spool'));
    expect(spooled).toHaveLength(1);
    const id = spooled[0]!;
    const days = readdirSync(join(store.root, 'bundles'));
    expect(existsSync(join(store.root, 'bundles', days[0]!, id, 'manifest.json'))).toBe(true);
    let list = JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout) as { id: string }[];
    expect(list.map((e) => e.id)).not.toContain(id);

    const daemon = spawn(process.execPath, [CLI, '--config', store.configPath, 'daemon', '--no-install'], { stdio: 'ignore' });
    try {
      await waitFor('the spool to drain', () => readdirSync(join(store.root, 'spool')).length === 0, 20_000);
    } finally {
      daemon.kill('SIGTERM');
    }
    list = JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout) as { id: string }[];
    expect(list.map((e) => e.id)).toContain(id);
    expect(list).toHaveLength(2);
  });

  it('reindex rebuilds a deleted index from the bundles and drops rows of deleted bundles', () => {
    for (let i = 0; i < 3; i++) expect(runHandler(store, sleeper!.pid!, Buffer.from(`core ${i}`))).toBe(0);
    const before = JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout) as { id: string; bundle: string }[];
    expect(before).toHaveLength(3);
    spawnSync('rm', ['-rf', join(store.root, before[0]!.bundle)]);
    for (const f of ['index.sqlite', 'index.sqlite-wal', 'index.sqlite-shm']) spawnSync('rm', ['-f', join(store.root, f)]);
    const r = runCli(['--config', store.configPath, 'reindex']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Indexed 2 events/);
    const after = JSON.parse(runCli(['--config', store.configPath, 'list', '--json']).stdout) as { id: string }[];
    expect(after.map((e) => e.id).sort()).toEqual(before.slice(1).map((e) => e.id).sort());
  });
});
