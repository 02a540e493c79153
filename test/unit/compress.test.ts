// Core compression helpers on real files: the pre-read that brings a sparse core into the
// page cache with large reads before the compressor reads it, and zstd through the program.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compressFd, preread } from '../../store/compress.js';

const MIB = 1024 * 1024;
const HAS_FINCORE = spawnSync('fincore', ['--version'], { stdio: 'ignore' }).status === 0;
const HAS_ZSTD = spawnSync('zstd', ['--version'], { stdio: 'ignore' }).status === 0;

/** Bytes of `file` in the page cache (util-linux fincore). */
function cachedBytes(file: string): number {
  const r = spawnSync('fincore', ['--bytes', '--raw', '--noheadings', file], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return Number(r.stdout.trim().split(/\s+/)[0]);
}

describe('preread and compression of a sparse core', () => {
  let dir: string;
  let file: string;
  const size = 40 * MIB + 123;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-compress-'));
    file = join(dir, 'core');
    // Data at the start, in the middle and at the end; holes in between, never read before.
    const fd = openSync(file, 'w');
    writeSync(fd, Buffer.from('\x7fELF-head'), 0, 9, 0);
    writeSync(fd, Buffer.alloc(5000, 0x61), 0, 5000, 17 * MIB);
    writeSync(fd, Buffer.from('tail'), 0, 4, size - 4);
    closeSync(fd);
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!HAS_FINCORE)('reads the whole file into the page cache, holes included, without moving the offset', async () => {
    expect(cachedBytes(file)).toBeLessThan(size / 2);
    const fd = openSync(file, 'r');
    try {
      expect(await preread(fd, size)).toBe(size);
      const head = Buffer.alloc(9);
      expect(readSync(fd, head, 0, 9, null)).toBe(9);
      expect(head.toString('latin1')).toBe('\x7fELF-head');
    } finally {
      closeSync(fd);
    }
    expect(cachedBytes(file)).toBeGreaterThanOrEqual(size - 4096);
  });

  it('stops at the end of a file shorter than said', async () => {
    const fd = openSync(file, 'r');
    try {
      expect(await preread(fd, size + 10 * MIB)).toBe(size);
      expect(await preread(fd, 0)).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it.skipIf(!HAS_ZSTD)('then zstd stores exactly the file\'s bytes', async () => {
    const inFd = openSync(file, 'r');
    const outFd = openSync(join(dir, 'core.zst'), 'w');
    try {
      await preread(inFd, size);
      expect(await compressFd(inFd, outFd, 'zstd', 3)).toBe('zstd');
    } finally {
      closeSync(inFd);
      closeSync(outFd);
    }
    const back = spawnSync('zstd', ['-d', '-q', '-c', join(dir, 'core.zst')], { maxBuffer: 64 * MIB });
    expect(back.status).toBe(0);
    expect(back.stdout.equals(readFileSync(file))).toBe(true);
  });
});
