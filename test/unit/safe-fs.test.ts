// The no-follow reader and the atomic writer that the caches, install and the CLI share:
// real files, links and FIFOs in a temp dir.
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readNoFollow, readSmallNoFollow, syncTreeAtOnce, writeFileAtomic } from '../../lib/safe-fs.js';
import { ROOT } from '../helpers.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-safefs-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('readNoFollow', () => {
  it('reads a whole file, or its first max bytes', () => {
    writeFileSync(join(dir, 'f'), 'hello world');
    expect(readNoFollow(join(dir, 'f'), 100).toString()).toBe('hello world');
    expect(readNoFollow(join(dir, 'f'), 5).toString()).toBe('hello');
    expect(readSmallNoFollow(join(dir, 'f'), 5)).toBe('hello');
    writeFileSync(join(dir, 'empty'), '');
    expect(readNoFollow(join(dir, 'empty'), 100).length).toBe(0);
  });

  it('refuses a symlink instead of following it', () => {
    writeFileSync(join(dir, 'target'), 'secret');
    symlinkSync(join(dir, 'target'), join(dir, 'link'));
    expect(() => readNoFollow(join(dir, 'link'), 100)).toThrow(/ELOOP/);
  });

  it('does not hang on a FIFO nobody writes', () => {
    expect(spawnSync('mkfifo', [join(dir, 'fifo')]).status).toBe(0);
    const t0 = Date.now();
    expect(readNoFollow(join(dir, 'fifo'), 100).length).toBe(0);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});

describe('writeFileAtomic', () => {
  it('writes a new file, then replaces it, with its mode and no temporary left', () => {
    writeFileAtomic(dir, 'state.json', 'one', 0o600);
    expect(readFileSync(join(dir, 'state.json'), 'utf8')).toBe('one');
    writeFileAtomic(dir, 'state.json', Buffer.from('two'), 0o640);
    expect(readFileSync(join(dir, 'state.json'), 'utf8')).toBe('two');
    expect(statSync(join(dir, 'state.json')).mode & 0o777).toBe(0o640);
    expect(readdirSync(dir)).toEqual(['state.json']);
  });

  it('replaces a symlink at the name, never writing through it', () => {
    writeFileSync(join(dir, 'victim'), 'untouched');
    symlinkSync(join(dir, 'victim'), join(dir, 'name'));
    writeFileAtomic(dir, 'name', 'new', 0o600);
    expect(lstatSync(join(dir, 'name')).isFile()).toBe(true);
    expect(readFileSync(join(dir, 'victim'), 'utf8')).toBe('untouched');
  });

  it('a planted symlink at its temporary name is removed, not followed', () => {
    writeFileSync(join(dir, 'victim'), 'untouched');
    symlinkSync(join(dir, 'victim'), join(dir, `.name.${process.pid}.tmp`));
    writeFileAtomic(dir, 'name', 'new', 0o600);
    expect(readFileSync(join(dir, 'name'), 'utf8')).toBe('new');
    expect(readFileSync(join(dir, 'victim'), 'utf8')).toBe('untouched');
    expect(() => readlinkSync(join(dir, `.name.${process.pid}.tmp`))).toThrow(/ENOENT/);
  });
});

describe('syncTreeAtOnce', () => {
  const HAS_STRACE = spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;

  function tree(): string[] {
    const files = [join(dir, 'manifest.json'), join(dir, 'proc', 'status'), join(dir, 'proc', 'maps'), join(dir, 'recorder', 'metrics', 'ring.jsonl')];
    for (const f of files) {
      mkdirSync(join(f, '..'), { recursive: true });
      writeFileSync(f, 'x'.repeat(100));
    }
    symlinkSync('/etc/passwd', join(dir, 'link')); // not followed, not synced
    return files;
  }

  // strace sees each fsync(2) of the real run (the built module, in a child node): every file
  // and every directory of the tree, none of what a link points to.
  it.skipIf(!HAS_STRACE)('fsyncs every file and directory of the tree, and nothing a link points to', () => {
    const files = tree();
    const log = join(tmpdir(), `fbx-synctree-${process.pid}.strace`);
    const script = `import(${JSON.stringify(join(ROOT, 'dist/lib/safe-fs.js'))}).then((m) => m.syncTreeAtOnce(${JSON.stringify(dir)}))`;
    const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=openat,fsync', '-o', log, process.execPath, '-e', script], { encoding: 'utf8', timeout: 30_000 });
    const trace = readFileSync(log, 'utf8');
    rmSync(log, { force: true });
    expect(r.status, r.stderr).toBe(0);
    const open = new Map<string, string>();
    const synced = new Set<string>();
    // (calls in other threads at once are split in two lines: "openat(... <unfinished ...>",
    // then "<... openat resumed>) = 18", each line led by its thread's id)
    const pending = new Map<string, string>();
    for (const line of trace.split('\n')) {
      const o = /^(\d+) +openat\(AT_FDCWD, "([^"]+)", [^)<]*(?:\) = (\d+)$|<unfinished)/.exec(line);
      if (o && o[3]) open.set(o[3], o[2]!);
      else if (o) pending.set(o[1]!, o[2]!);
      const resumed = /^(\d+) +<\.\.\. openat resumed>.*= (\d+)$/.exec(line);
      if (resumed && pending.has(resumed[1]!)) open.set(resumed[2]!, pending.get(resumed[1]!)!);
      // (a failed fsync fails the run)
      const f = /fsync\((\d+)[ )]/.exec(line);
      if (f && open.has(f[1]!)) synced.add(open.get(f[1]!)!);
    }
    for (const p of [...files, dir, join(dir, 'proc'), join(dir, 'recorder'), join(dir, 'recorder', 'metrics')]) expect(synced, p).toContain(p);
    expect(synced).not.toContain('/etc/passwd');
    expect(synced).not.toContain(join(dir, 'link'));
  });

  it('resolves for a tree, and rejects for a directory that is not there', async () => {
    tree();
    await expect(syncTreeAtOnce(dir)).resolves.toBeUndefined();
    await expect(syncTreeAtOnce(join(dir, 'gone'))).rejects.toThrow(/ENOENT/);
  });
});
