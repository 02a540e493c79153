// A sparse core compressed without reading its long holes (store/sparse-zstd.ts): the frames
// of zeros written by hand are checked by the real zstd program, and real sparse files (holes
// made by the filesystem, listed by perl's SEEK_DATA/SEEK_HOLE) come back byte for byte.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compressFd, decompressTo, sparsePieces, type CompressOptions } from '../../store/compress.js';
import { EXTENTS_PERL, MAX_DATA_PIECES, ZERO_FRAME_MIN_BYTES, parseExtents, planPieces, zeroFrame, type Extent } from '../../store/sparse-zstd.js';

const MiB = 1024 * 1024;
const HAS_ZSTD = spawnSync('zstd', ['--version']).status === 0;
const HAS_PERL = spawnSync('perl', ['-e', '1']).status === 0;

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'fbx-sparse-'));
  dirs.push(d);
  return d;
}

function zstdDecompress(data: Buffer): Buffer {
  const r = spawnSync('zstd', ['-q', '-d', '-c'], { input: data, maxBuffer: 256 * MiB });
  expect(r.stderr.toString()).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

/** The header of a frame of zeros as zeroFrame writes it: magic, an 8-byte content size, a 128 KiB window. */
const ZERO_FRAME_HEAD = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x38]);
function zeroFrames(z: Buffer): number {
  let n = 0;
  for (let i = z.indexOf(ZERO_FRAME_HEAD); i >= 0; i = z.indexOf(ZERO_FRAME_HEAD, i + 1)) n++;
  return n;
}

describe.skipIf(!HAS_ZSTD)('zeroFrame, read by the zstd program', () => {
  it.each([1, 4096, 128 * 1024 - 1, 128 * 1024, 128 * 1024 + 1, 5 * 128 * 1024 + 7])('%i zero bytes', (length) => {
    const frame = Buffer.concat([...zeroFrame(length)]);
    expect(frame.subarray(0, 6)).toEqual(ZERO_FRAME_HEAD);
    // 14 bytes of header, 4 per block of 128 KiB
    expect(frame.length).toBe(14 + 4 * Math.ceil(length / (128 * 1024)));
    const out = zstdDecompress(frame);
    expect(out.length).toBe(length);
    expect(out.every((b) => b === 0)).toBe(true);
    // zstd reads the content size and window from the header, as from a frame of its own
    const f = join(tmp(), 'z.zst');
    writeFileSync(f, frame);
    const l = spawnSync('zstd', ['-l', '-v', f], { encoding: 'utf8' });
    expect(l.status).toBe(0);
    expect(l.stdout).toContain(`Decompressed Size: `);
    expect(l.stdout).toContain(`(${length} B)`);
    expect(l.stdout).toContain('Window Size: 128 KiB');
  });

  it('a hole longer than one chunk of blocks (1 GiB and 3 KiB): its length in zeros, nothing else', () => {
    const length = 8192 * 128 * 1024 + 3 * 1024;
    const chunks = [...zeroFrame(length)];
    expect(chunks.length).toBe(3); // header, 8192 blocks, the last block
    const f = join(tmp(), 'z.zst');
    writeFileSync(f, Buffer.concat(chunks));
    const r = spawnSync('/bin/sh', ['-c', 'zstd -q -d -c "$1" | wc -c; zstd -q -d -c "$1" | tr -d "\\000" | wc -c', 'sh', f], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.split(/\s+/).filter(Boolean).map(Number)).toEqual([length, 0]);
  });

  it('frames concatenated with zstd\'s own decompress as one stream', () => {
    const a = randomBytes(300_000);
    const za = spawnSync('zstd', ['-q', '-c'], { input: a }).stdout;
    const b = Buffer.from('the end');
    const zb = spawnSync('zstd', ['-q', '-c'], { input: b }).stdout;
    const out = zstdDecompress(Buffer.concat([za, ...zeroFrame(3 * MiB + 1), zb, ...zeroFrame(1)]));
    expect(out.equals(Buffer.concat([a, Buffer.alloc(3 * MiB + 1), b, Buffer.alloc(1)]))).toBe(true);
  });

  it('refuses a length that is not a positive whole number', () => {
    for (const n of [0, -1, 1.5, Number.NaN]) expect(() => [...zeroFrame(n)]).toThrow(RangeError);
  });
});

describe('parseExtents', () => {
  it('reads a whole list', () => {
    expect(parseExtents('0 4096\n8192 12288\nend 20000\n', 20_000)).toEqual([{ start: 0, end: 4096 }, { start: 8192, end: 12288 }]);
    expect(parseExtents('end 0\n', 0)).toEqual([]);
    // an extent the filesystem rounds up past the end is cut at the size
    expect(parseExtents('0 8192\nend 5000\n', 5000)).toEqual([{ start: 0, end: 5000 }]);
  });
  it.each([
    ['no end line (perl stopped)', '0 4096\n', 4096],
    ['a size that is not the file\'s', '0 4096\nend 4097\n', 4096],
    ['no final newline', '0 4096\nend 4096', 4096],
    ['overlapping', '0 4096\n2048 8192\nend 8192\n', 8192],
    ['empty extent', '0 0\nend 4096\n', 4096],
    ['junk', '0 4096\nrm -rf /\nend 4096\n', 4096],
    ['negative', '-5 4096\nend 4096\n', 4096],
    ['out of order', '8192 12288\n0 4096\nend 20000\n', 20_000],
  ])('refuses %s', (_what, text, size) => {
    expect(parseExtents(text, size)).toBeNull();
  });
  it('refuses more extents than the limit', () => {
    expect(parseExtents('0 1\n2 3\n4 5\nend 10\n', 10, 2)).toBeNull();
    expect(parseExtents('0 1\n2 3\nend 10\n', 10, 2)).toHaveLength(2);
  });
});

describe('planPieces', () => {
  const H = ZERO_FRAME_MIN_BYTES;
  it('long holes become zeros, short ones go with the data around them', () => {
    const ext: Extent[] = [{ start: 0, end: 100 }, { start: 200, end: 300 }, { start: 300 + H, end: 400 + H }];
    expect(planPieces(ext, 400 + 3 * H)).toEqual([
      { kind: 'data', start: 0, end: 300 },
      { kind: 'zeros', length: H },
      { kind: 'data', start: 300 + H, end: 400 + H },
      { kind: 'zeros', length: 2 * H },
    ]);
  });
  it('a leading hole, and a short trailing one kept with the data', () => {
    expect(planPieces([{ start: H, end: H + 10 }], H + 20)).toEqual([
      { kind: 'zeros', length: H },
      { kind: 'data', start: H, end: H + 20 },
    ]);
  });
  it('a file that is all hole is one run of zeros', () => {
    expect(planPieces([], 3 * H)).toEqual([{ kind: 'zeros', length: 3 * H }]);
  });
  it('null without a long hole, or with too many data pieces', () => {
    expect(planPieces([{ start: 0, end: 10 }, { start: H, end: H + 10 }], H + 10)).toBeNull(); // hole of H - 10
    expect(planPieces([], H - 1)).toBeNull();
    const many: Extent[] = Array.from({ length: MAX_DATA_PIECES + 1 }, (_, i) => ({ start: i * 2 * H, end: i * 2 * H + 1 }));
    expect(planPieces(many, (MAX_DATA_PIECES + 1) * 2 * H)).toBeNull();
    expect(planPieces(many.slice(0, MAX_DATA_PIECES), MAX_DATA_PIECES * 2 * H)).not.toBeNull();
  });
});

/** A sparse file: data where `parts` say, holes elsewhere, `size` long. */
function sparseFile(dir: string, size: number, parts: { at: number; data: Buffer }[]): { path: string; content: Buffer } {
  const path = join(dir, 'core');
  const content = Buffer.alloc(size);
  const fd = openSync(path, 'w');
  try {
    for (const p of parts) {
      writeSync(fd, p.data, 0, p.data.length, p.at);
      p.data.copy(content, p.at);
    }
    ftruncateSync(fd, size);
  } finally {
    closeSync(fd);
  }
  return { path, content };
}

async function compressFile(dir: string, path: string, holeBytes: number, opts: CompressOptions = {}): Promise<Buffer> {
  const out = join(dir, 'core.zst');
  const inFd = openSync(path, 'r');
  const outFd = openSync(out, 'wx');
  try {
    expect(await compressFd(inFd, outFd, 'zstd', 3, { holeBytes, ...opts })).toBe('zstd');
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
  return readFileSync(out);
}

describe.skipIf(!HAS_ZSTD || !HAS_PERL)('compressFd on real sparse files', () => {
  it('perl lists the data extents the filesystem keeps', () => {
    const dir = tmp();
    const { path } = sparseFile(dir, 40 * MiB, [{ at: 0, data: randomBytes(64 * 1024) }, { at: 20 * MiB, data: randomBytes(64 * 1024) }]);
    const fd = openSync(path, 'r');
    const r = spawnSync('perl', ['-e', EXTENTS_PERL], { stdio: [fd, 'pipe', 'pipe'], encoding: 'utf8' });
    closeSync(fd);
    expect(r.status).toBe(0);
    const ext = parseExtents(r.stdout, 40 * MiB);
    expect(ext).not.toBeNull();
    // at least the two runs of data, nothing of the holes but filesystem rounding
    expect(ext!.some((e) => e.start <= 0 && e.end >= 64 * 1024)).toBe(true);
    expect(ext!.some((e) => e.start <= 20 * MiB && e.end >= 20 * MiB + 64 * 1024)).toBe(true);
    expect(ext!.reduce((n, e) => n + e.end - e.start, 0)).toBeLessThan(4 * MiB);
  });

  it('long holes are frames of zeros, the data zstd\'s: the core comes back byte for byte', async () => {
    const dir = tmp();
    const size = 64 * MiB + 12_345;
    const { path, content } = sparseFile(dir, size, [
      { at: 0, data: randomBytes(100_000) },
      { at: 20 * MiB, data: Buffer.from('x'.repeat(1 << 20)) },
      { at: 24 * MiB, data: randomBytes(10_000) }, // after a 3 MiB hole: with the data before it
      { at: 40 * MiB, data: randomBytes(5000) },
    ]);
    const before = statSync(path).blocks * 512;
    const z = await compressFile(dir, path, size - before);
    expect(zstdDecompress(z).equals(content)).toBe(true);
    // the holes of 20, 16 and ~24 MiB: three frames of zeros
    expect(zeroFrames(z)).toBe(3);
    expect(z.length).toBeLessThan(200_000);
    const fd = openSync(path, 'r');
    const pieces = await sparsePieces(fd);
    closeSync(fd);
    expect(pieces?.map((p) => p.kind)).toEqual(['data', 'zeros', 'data', 'zeros', 'data', 'zeros']);
  });

  it('a file that starts with a hole, and one that is all hole', async () => {
    const dir = tmp();
    const a = sparseFile(dir, 30 * MiB, [{ at: 25 * MiB, data: randomBytes(4096) }]);
    const z = await compressFile(dir, a.path, 30 * MiB - 4096);
    expect(zstdDecompress(z).equals(a.content)).toBe(true);
    expect(zeroFrames(z)).toBeGreaterThanOrEqual(1);
    rmSync(join(dir, 'core.zst'));
    rmSync(a.path);
    const b = sparseFile(dir, 50 * MiB, []);
    const zb = await compressFile(dir, b.path, 50 * MiB);
    expect(zb.length).toBe(14 + 4 * 400);
    expect(zstdDecompress(zb).equals(b.content)).toBe(true);
  });

  it('a data piece that fails part-way: the output is started again and the core compressed whole', async () => {
    // A read error in the middle of a core cannot be caused for real here: a dd that copies
    // 4 KiB of its piece and fails stands in for it.
    const dir = tmp();
    const fakeDd = join(dir, 'dd');
    writeFileSync(fakeDd, '#!/bin/sh\nhead -c 4096 /proc/self/fd/0\necho "dd: error reading: Input/output error" >&2\nexit 1\n', { mode: 0o755 });
    const size = 40 * MiB;
    const { path, content } = sparseFile(dir, size, [{ at: 0, data: randomBytes(300_000) }, { at: 30 * MiB, data: randomBytes(200_000) }]);
    const restarts: unknown[] = [];
    const z = await compressFile(dir, path, size - 500_000, { dd: fakeDd, onRestart: (err) => restarts.push(err) });
    expect(restarts).toHaveLength(1);
    expect(String(restarts[0])).toMatch(/Input\/output error|exited 1|Src size/);
    // one zstd stream over the whole file, nothing of the failed attempt left in it
    expect(zeroFrames(z)).toBe(0);
    expect(zstdDecompress(z).equals(content)).toBe(true);
  });

  it.skipIf(spawnSync('strace', ['-V']).status !== 0)('a failing lseek in the listing is an error, never "no more data"', () => {
    // An I/O error of SEEK_DATA/SEEK_HOLE cannot be caused for real on this filesystem:
    // strace injects EIO into perl's lseek calls (all of them, then only the second).
    const dir = tmp();
    const { path } = sparseFile(dir, 50 * MiB, [{ at: 0, data: randomBytes(4096) }, { at: 40 * MiB, data: randomBytes(4096) }]);
    const trace = join(dir, 'trace');
    const run = (inject: string[]): { status: number | null; stdout: string } => {
      const fd = openSync(path, 'r');
      try {
        return spawnSync('strace', ['-f', '-qq', '-o', trace, '-e', 'trace=lseek', ...inject, 'perl', '-e', EXTENTS_PERL], { stdio: [fd, 'pipe', 'pipe'], encoding: 'utf8' });
      } finally {
        closeSync(fd);
      }
    };
    const clean = run([]);
    expect(clean.status).toBe(0);
    expect(parseExtents(clean.stdout, 50 * MiB)).not.toBeNull();
    // perl's own lseeks at start come first: the number of its first SEEK_DATA and SEEK_HOLE
    const calls = readFileSync(trace, 'utf8').split('\n').filter((l) => /lseek\(/.test(l));
    const data = calls.findIndex((l) => l.includes('SEEK_DATA')) + 1;
    const hole = calls.findIndex((l) => l.includes('SEEK_HOLE')) + 1;
    expect(data).toBeGreaterThan(0);
    expect(hole).toBeGreaterThan(data);
    for (const when of [`${data}`, `${hole}`, `${hole + 1}`, '1+']) {
      const r = run(['-e', `inject=lseek:error=EIO:when=${when}`]);
      expect(r.status, `lseek failing from call ${when}`).not.toBe(0);
      expect(r.stdout).not.toMatch(/^end /m);
      expect(parseExtents(r.stdout, 50 * MiB)).toBeNull();
    }
  });

  it('holes too short for a frame, or too few bytes of holes: one zstd stream, as before', async () => {
    const dir = tmp();
    const parts = Array.from({ length: 12 }, (_, i) => ({ at: i * 4 * MiB, data: randomBytes(8192) }));
    const { path, content } = sparseFile(dir, 48 * MiB, parts);
    const z = await compressFile(dir, path, 40 * MiB);
    expect(zeroFrames(z)).toBe(0);
    expect(zstdDecompress(z).equals(content)).toBe(true);
    rmSync(join(dir, 'core.zst'));
    // holeBytes below the threshold: not even asked
    const z2 = await compressFile(dir, path, ZERO_FRAME_MIN_BYTES - 1);
    expect(zeroFrames(z2)).toBe(0);
    expect(zstdDecompress(z2).equals(content)).toBe(true);
  });
});

describe.skipIf(!HAS_ZSTD)('decompressTo a file of our own', () => {
  it('sparse: runs of zeros are left as holes; without it they are written; the bytes are the same', async () => {
    const dir = tmp();
    const content = Buffer.alloc(40 * MiB);
    randomBytes(4096).copy(content, 0);
    randomBytes(4096).copy(content, 30 * MiB);
    const zst = join(dir, 'core.zst');
    writeFileSync(zst, spawnSync('zstd', ['-q', '-c'], { input: content, maxBuffer: 64 * MiB }).stdout);
    const blocks: Record<string, number> = {};
    for (const sparse of [true, false]) {
      const out = join(dir, `core.${sparse}`);
      const fd = openSync(out, 'wx');
      try {
        await decompressTo(zst, fd, { sparse });
      } finally {
        closeSync(fd);
      }
      expect(readFileSync(out).equals(content)).toBe(true);
      blocks[String(sparse)] = statSync(out).blocks * 512;
    }
    expect(blocks.true).toBeLessThan(4 * MiB);
    expect(blocks.false).toBeGreaterThanOrEqual(40 * MiB);
  });
});
