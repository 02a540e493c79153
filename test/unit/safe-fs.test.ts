// The no-follow reader and the atomic writer that the caches, install and the CLI share:
// real files, links and FIFOs in a temp dir.
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readNoFollow, readSmallNoFollow, writeFileAtomic } from '../../lib/safe-fs.js';

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
