// Core compression helpers on real files: the pre-read that brings a sparse core into the
// page cache with large reads before the compressor reads it, zstd through the program, and
// the sha256 of its output worked out while it is written.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { compressFd, preread } from '../../store/compress.js';
import { listBundleFiles, sha256File, sha256Growing } from '../../store/manifest.js';

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
    // Nearly all of it: a kernel that pages out cold memory on its own (DAMON's pageout
    // scheme, as on the VMs these tests run on) may have dropped a few pages already; a
    // preread that skipped the holes would leave less than 1 % of the file cached.
    expect(cachedBytes(file)).toBeGreaterThanOrEqual(size * 0.95);
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

describe('sha256 of a file while another process writes it', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'fbx-growing-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('follows a file written in pieces with pauses: the hash of the whole file', async () => {
    const file = join(dir, 'out');
    writeFileSync(file, '');
    // 6 pieces of 1.5 MiB, 80 ms apart: the reader catches up and waits several times.
    const writer = spawn('sh', ['-c', `for i in 1 2 3 4 5 6; do head -c 1572864 /dev/urandom >> "$1"; sleep 0.08; done`, 'sh', file], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve, reject) => {
      writer.on('error', reject);
      writer.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited ${code}`))));
    });
    const h = await sha256Growing(file, exited);
    const whole = readFileSync(file);
    expect(whole.length).toBe(6 * 1572864);
    expect(h).toEqual({ sha256: createHash('sha256').update(whole).digest('hex'), bytes: whole.length });
  });

  it('a writer that fails: what it wrote is hashed, and the byte count says how much', async () => {
    const file = join(dir, 'out');
    writeFileSync(file, 'partial');
    const h = await sha256Growing(file, Promise.reject(new Error('zstd died')));
    expect(h).toEqual({ sha256: createHash('sha256').update('partial').digest('hex'), bytes: 7 });
  });

  it.skipIf(!HAS_ZSTD)('beside zstd writing a compressed core: the same hash as reading it afterwards', async () => {
    const raw = join(dir, 'core');
    writeFileSync(raw, Buffer.concat([randomBytes(12 * MIB), Buffer.alloc(12 * MIB, 0x61)]));
    const outPath = join(dir, 'core.zst');
    const inFd = openSync(raw, 'r');
    const outFd = openSync(outPath, 'w');
    try {
      const compressing = compressFd(inFd, outFd, 'zstd', 3);
      const hashing = sha256Growing(outPath, compressing);
      expect(await compressing).toBe('zstd');
      const h = await hashing;
      expect(h.bytes).toBe(readFileSync(outPath).length);
      expect(h.sha256).toBe(sha256File(outPath));
    } finally {
      closeSync(inFd);
      closeSync(outFd);
    }
  });

  it('listBundleFiles takes a known hash only when it covers the whole file', () => {
    mkdirSync(join(dir, 'b', 'proc'), { recursive: true });
    writeFileSync(join(dir, 'b', 'core.zst'), 'compressed');
    writeFileSync(join(dir, 'b', 'proc', 'status'), 'Name: x');
    const real = (p: string) => sha256File(join(dir, 'b', p));
    const fake = 'f'.repeat(64);
    const byPath = (known: Map<string, { sha256: string; bytes: number }>) =>
      Object.fromEntries(listBundleFiles(join(dir, 'b'), '', known).map((f) => [f.path, f.sha256]));
    expect(byPath(new Map([['core.zst', { sha256: fake, bytes: 10 }]]))).toEqual({ 'core.zst': fake, 'proc/status': real('proc/status') });
    expect(byPath(new Map([['core.zst', { sha256: fake, bytes: 9 }]]))).toEqual({ 'core.zst': real('core.zst'), 'proc/status': real('proc/status') });
    expect(byPath(new Map([['proc/status', { sha256: fake, bytes: 7 }]]))).toEqual({ 'core.zst': real('core.zst'), 'proc/status': fake });
  });
});
