import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CORE_BUFFER_BYTES, SPARSE_BLOCK_BYTES, streamCore } from '../../handler/core-writer.js';

const KiB = 1024;
const MiB = 1024 * 1024;

let dir: string;
const fds: number[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fbx-core-'));
});
afterEach(() => {
  for (const fd of fds.splice(0)) {
    try { closeSync(fd); } catch { /* already closed */ }
  }
  rmSync(dir, { recursive: true, force: true });
});

function open(path: string, flags: string): number {
  const fd = openSync(path, flags);
  fds.push(fd);
  return fd;
}

/** Write `data` to an input file and stream it into an output file. */
function run(data: Buffer, opts: Parameters<typeof streamCore>[2] = { limit: null }) {
  const inPath = join(dir, 'in');
  const outPath = join(dir, 'out');
  writeFileSync(inPath, data);
  const inFd = open(inPath, 'r');
  const outFd = open(outPath, 'w');
  const result = streamCore(inFd, outFd, opts);
  const st = fstatSync(outFd);
  return { result, out: readFileSync(outPath), st, inFd };
}

/** A core-like image: random "pages" in a sea of zeros. */
function coreLike(size: number, dataAt: number[], dataLen = 4 * KiB): Buffer {
  const b = Buffer.alloc(size);
  for (const off of dataAt) randomBytes(dataLen).copy(b, off);
  return b;
}

/** The bytes streamCore should turn into holes: whole, aligned, all-zero blocks. */
function expectedHoles(b: Buffer): number {
  let n = 0;
  for (let off = 0; off + SPARSE_BLOCK_BYTES <= b.length; off += SPARSE_BLOCK_BYTES) {
    if (b.subarray(off, off + SPARSE_BLOCK_BYTES).every((x) => x === 0)) n += SPARSE_BLOCK_BYTES;
  }
  return n;
}

describe('streamCore: copying', () => {
  it('constants: the buffer is a whole number of sparse blocks', () => {
    expect(CORE_BUFFER_BYTES % SPARSE_BLOCK_BYTES).toBe(0);
    expect(SPARSE_BLOCK_BYTES % 4096).toBe(0);
  });

  it.each([
    ['one byte', 1],
    ['less than a block', 1000],
    ['exactly one block', SPARSE_BLOCK_BYTES],
    ['one block and a byte', SPARSE_BLOCK_BYTES + 1],
    ['exactly one buffer', CORE_BUFFER_BYTES],
    ['a buffer and a bit', CORE_BUFFER_BYTES + 12345],
    ['several buffers', 3 * CORE_BUFFER_BYTES + 7],
  ])('random data, %s: output bytes identical, nothing sparse', (_what, size) => {
    const data = randomBytes(size);
    const { result, out, st } = run(data);
    expect(result).toEqual({ size, sparseBytes: 0, truncated: false, nativeBytes: 0 });
    expect(st.size).toBe(size);
    expect(out.equals(data)).toBe(true);
  });

  it('empty input gives an empty file', () => {
    const { result, out, st } = run(Buffer.alloc(0));
    expect(result).toEqual({ size: 0, sparseBytes: 0, truncated: false, nativeBytes: 0 });
    expect(st.size).toBe(0);
    expect(out.length).toBe(0);
  });

  it('records progress', () => {
    const progress = { size: -1 };
    const data = randomBytes(2 * CORE_BUFFER_BYTES + 100);
    const { result } = run(data, { limit: null, progress });
    expect(progress.size).toBe(result.size);
    expect(progress.size).toBe(data.length);
  });
});

describe('streamCore: sparse output', () => {
  it('long zero runs become holes, bytes unchanged', () => {
    const size = 16 * MiB;
    const data = coreLike(size, [0, 3 * MiB + 100, 8 * MiB, 12 * MiB - 10]);
    const { result, out, st } = run(data);
    expect(result.size).toBe(size);
    expect(result.truncated).toBe(false);
    expect(result.sparseBytes).toBe(expectedHoles(data));
    expect(result.sparseBytes).toBeGreaterThan(15 * MiB);
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThan(1 * MiB);
    expect(out.equals(data)).toBe(true);
  });

  it('trailing zeros keep the right size', () => {
    const size = 4 * MiB + 3 * SPARSE_BLOCK_BYTES;
    const data = coreLike(size, [0]);
    const { result, out, st } = run(data);
    expect(result.size).toBe(size);
    expect(result.sparseBytes).toBe(size - SPARSE_BLOCK_BYTES);
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThan(256 * KiB);
    expect(out.equals(data)).toBe(true);
  });

  it('an all-zero input is one hole of the right size', () => {
    const size = 5 * MiB;
    const { result, st, out } = run(Buffer.alloc(size));
    expect(result).toEqual({ size, sparseBytes: size, truncated: false, nativeBytes: 0 });
    expect(st.size).toBe(size);
    expect(st.blocks).toBe(0);
    expect(out.equals(Buffer.alloc(size))).toBe(true);
  });

  it('a zero tail shorter than a block is written, not lost', () => {
    const data = Buffer.concat([randomBytes(SPARSE_BLOCK_BYTES), Buffer.alloc(SPARSE_BLOCK_BYTES), Buffer.alloc(1000)]);
    const { result, st, out } = run(data);
    expect(result.size).toBe(data.length);
    expect(result.sparseBytes).toBe(SPARSE_BLOCK_BYTES);
    expect(st.size).toBe(data.length);
    expect(out.equals(data)).toBe(true);
  });

  it('a single non-zero byte keeps its block from becoming a hole', () => {
    const data = Buffer.alloc(4 * SPARSE_BLOCK_BYTES);
    data[2 * SPARSE_BLOCK_BYTES + 777] = 0x5a;
    const { result, out } = run(data);
    expect(result.sparseBytes).toBe(3 * SPARSE_BLOCK_BYTES);
    expect(out[2 * SPARSE_BLOCK_BYTES + 777]).toBe(0x5a);
    expect(out.equals(data)).toBe(true);
  });

  it('sparse: false writes every byte (no holes)', () => {
    const size = 2 * MiB;
    const { result, st, out } = run(Buffer.alloc(size), { limit: null, sparse: false });
    expect(result).toEqual({ size, sparseBytes: 0, truncated: false, nativeBytes: 0 });
    expect(st.blocks * 512).toBeGreaterThanOrEqual(size);
    expect(out.equals(Buffer.alloc(size))).toBe(true);
  });
});

describe('streamCore: limit', () => {
  it.each([
    ['inside the first buffer', 3 * MiB, 100_000],
    ['at a block boundary', 3 * MiB, 4 * SPARSE_BLOCK_BYTES],
    ['at a buffer boundary', 3 * MiB, CORE_BUFFER_BYTES],
    ['one byte past a buffer', 3 * MiB, CORE_BUFFER_BYTES + 1],
    ['one byte less than the input', 3 * MiB, 3 * MiB - 1],
    ['a single byte', 1000, 1],
  ])('truncates exactly at the limit (%s)', (_what, size, limit) => {
    const data = randomBytes(size);
    const { result, out, st } = run(data, { limit });
    expect(result.size).toBe(limit);
    expect(result.truncated).toBe(true);
    expect(st.size).toBe(limit);
    expect(out.equals(data.subarray(0, limit))).toBe(true);
  });

  it('a limit on a sparse input keeps the size and the bytes', () => {
    const data = coreLike(6 * MiB, [0, 5 * MiB]);
    const limit = 2 * MiB + 1234;
    const { result, out, st } = run(data, { limit });
    expect(result.size).toBe(limit);
    expect(result.truncated).toBe(true);
    expect(result.sparseBytes).toBeGreaterThan(0);
    expect(st.size).toBe(limit);
    expect(out.equals(data.subarray(0, limit))).toBe(true);
  });

  it.each([
    ['small', 5000],
    ['a buffer', CORE_BUFFER_BYTES],
    ['several buffers', 2 * CORE_BUFFER_BYTES + 3],
  ])('input exactly the limit (%s) is not truncated', (_what, size) => {
    const data = randomBytes(size);
    const { result, out } = run(data, { limit: size });
    expect(result).toEqual({ size, sparseBytes: 0, truncated: false, nativeBytes: 0 });
    expect(out.equals(data)).toBe(true);
  });

  it('input shorter than the limit is not truncated', () => {
    const data = randomBytes(7777);
    const { result } = run(data, { limit: 10 * MiB });
    expect(result).toEqual({ size: 7777, sparseBytes: 0, truncated: false, nativeBytes: 0 });
  });

  it('limit 0 stores nothing and reports truncation when there was input', () => {
    const { result, st } = run(randomBytes(100), { limit: 0 });
    expect(result).toEqual({ size: 0, sparseBytes: 0, truncated: true, nativeBytes: 0 });
    expect(st.size).toBe(0);
  });

  it('limit 0 with empty input is not truncated', () => {
    const { result } = run(Buffer.alloc(0), { limit: 0 });
    expect(result).toEqual({ size: 0, sparseBytes: 0, truncated: false, nativeBytes: 0 });
  });

  it('does not drain the input past the limit (reads at most one extra byte)', () => {
    const data = randomBytes(3 * MiB);
    const limit = MiB + 10;
    const { inFd } = run(data, { limit });
    // the input position tells how much was read: the limit plus the one-byte probe
    const rest = readFileSync(inFd);
    expect(rest.length).toBe(data.length - limit - 1);
  });
});

describe('streamCore: pipes', () => {
  const haveMkfifo = spawnSync('sh', ['-c', 'command -v mkfifo']).status === 0;

  it.skipIf(!haveMkfifo)('reads a pipe written in small pieces by another process', async () => {
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const src = join(dir, 'src');
    // 3 MiB of zeros with data in places: more than the pipe's capacity, so reads are short
    const data = coreLike(3 * MiB + 5000, [0, MiB + 3, 2 * MiB + 70_000, 3 * MiB + 1000]);
    writeFileSync(src, data);
    const child = spawn(process.execPath, ['-e', `
      const fs = require('fs');
      const data = fs.readFileSync(${JSON.stringify(src)});
      const fd = fs.openSync(${JSON.stringify(fifo)}, 'w');
      for (let off = 0; off < data.length; off += 40000) fs.writeSync(fd, data, off, Math.min(40000, data.length - off));
      fs.closeSync(fd);
    `], { stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    try {
      const inFd = open(fifo, 'r'); // blocks until the child opens the write end
      const outPath = join(dir, 'out');
      const outFd = open(outPath, 'w');
      const result = streamCore(inFd, outFd, { limit: null });
      expect(result.size).toBe(data.length);
      expect(result.truncated).toBe(false);
      expect(result.sparseBytes).toBe(expectedHoles(data));
      expect(readFileSync(outPath).equals(data)).toBe(true);
      expect(statSync(outPath).size).toBe(data.length);
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it.skipIf(!haveMkfifo)('truncates a pipe at the limit while the writer still has more', async () => {
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const child = spawn(process.execPath, ['-e', `
      const fs = require('fs');
      const fd = fs.openSync(${JSON.stringify(fifo)}, 'w');
      const b = Buffer.alloc(65536, 7);
      try { for (let i = 0; i < 64; i++) fs.writeSync(fd, b); } catch (e) { process.exit(e.code === 'EPIPE' ? 0 : 1); }
    `], { stdio: 'ignore' });
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    try {
      const inFd = open(fifo, 'r');
      const outPath = join(dir, 'out');
      const outFd = open(outPath, 'w');
      const limit = 200_000;
      const result = streamCore(inFd, outFd, { limit });
      expect(result).toEqual({ size: limit, sparseBytes: 0, truncated: true, nativeBytes: 0 });
      expect(readFileSync(outPath).equals(Buffer.alloc(limit, 7))).toBe(true);
      closeSync(inFd);
      fds.splice(fds.indexOf(inFd), 1);
      expect(await exited).toBe(0); // the writer saw EPIPE: we stopped reading
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('streamCore: write errors', () => {
  it.skipIf(!existsSync('/dev/full'))('throws ENOSPC from the output and leaves progress at what was written', () => {
    const inPath = join(dir, 'in');
    writeFileSync(inPath, randomBytes(100_000));
    const inFd = open(inPath, 'r');
    const outFd = open('/dev/full', 'w');
    const progress = { size: 0 };
    let err: NodeJS.ErrnoException | undefined;
    try {
      streamCore(inFd, outFd, { limit: null, progress });
    } catch (e) {
      err = e as NodeJS.ErrnoException;
    }
    expect(err?.code).toBe('ENOSPC');
    expect(progress.size).toBe(0);
  });
});

// Past `nativeAfter` bytes the rest of the pipe goes through dd (coreutils), which a real
// writer process feeds through a real FIFO here.
describe('streamCore: the rest through dd', () => {
  const dd = ['/usr/bin/dd', '/bin/dd'].find((p) => existsSync(p)) ?? null;
  const haveTools = dd !== null && spawnSync('sh', ['-c', 'command -v mkfifo']).status === 0;

  /** A FIFO fed with `data` by another process (in 40000-byte writes; EPIPE is a clean end). */
  function feed(data: Buffer, repeatTimes = 1): { fifo: string; exited: Promise<number | null>; kill: () => void } {
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const src = join(dir, 'src');
    writeFileSync(src, data);
    const child = spawn(process.execPath, ['-e', `
      const fs = require('fs');
      const data = fs.readFileSync(${JSON.stringify(src)});
      const fd = fs.openSync(${JSON.stringify(fifo)}, 'w');
      try {
        for (let r = 0; r < ${repeatTimes}; r++)
          for (let off = 0; off < data.length; off += 40000) fs.writeSync(fd, data, off, Math.min(40000, data.length - off));
      } catch (e) { process.exit(e.code === 'EPIPE' ? 0 : 1); }
      fs.closeSync(fd);
    `], { stdio: 'ignore' });
    return { fifo, exited: new Promise((res) => child.on('exit', (code) => res(code))), kill: () => child.kill('SIGKILL') };
  }

  it.skipIf(!haveTools)('copies the same bytes, leaves holes, and sets the size over trailing zeros', async () => {
    // 6 MiB: data here and there, long zero runs, and 1 MiB of zeros at the end
    const data = coreLike(7 * MiB, [0, MiB + 3, 2 * MiB + 70_000, 3 * MiB, 5 * MiB + 1000]);
    const w = feed(data);
    try {
      const inFd = open(w.fifo, 'r');
      const outPath = join(dir, 'out');
      const outFd = open(outPath, 'w');
      const progress = { size: 0 };
      const result = streamCore(inFd, outFd, { limit: null, nativeAfter: MiB, dd, progress });
      expect(result.size).toBe(data.length);
      expect(result.truncated).toBe(false);
      expect(result.nativeBytes).toBe(data.length - MiB);
      expect(progress.size).toBe(data.length);
      expect(statSync(outPath).size).toBe(data.length);
      expect(readFileSync(outPath).equals(data)).toBe(true);
      // 5 blocks of data, the rest holes: far fewer blocks than the size
      expect(statSync(outPath).blocks * 512).toBeLessThan(2 * MiB);
      expect(result.sparseBytes).toBeGreaterThan(4 * MiB);
      expect(await w.exited).toBe(0);
    } finally {
      w.kill();
    }
  });

  it.skipIf(!haveTools)('stops at the limit and reports the truncation', async () => {
    const chunk = randomBytes(MiB);
    const w = feed(chunk, 8); // 8 MiB on offer
    try {
      const inFd = open(w.fifo, 'r');
      const outPath = join(dir, 'out');
      const outFd = open(outPath, 'w');
      const limit = 3 * MiB + 100;
      const result = streamCore(inFd, outFd, { limit, nativeAfter: MiB, dd });
      expect(result.size).toBe(limit);
      expect(result.truncated).toBe(true);
      expect(result.nativeBytes).toBe(limit - MiB);
      expect(readFileSync(outPath).equals(Buffer.concat([chunk, chunk, chunk, chunk]).subarray(0, limit))).toBe(true);
      closeSync(inFd);
      fds.splice(fds.indexOf(inFd), 1);
      expect(await w.exited).toBe(0); // EPIPE: nothing drained past the limit and its probe byte
    } finally {
      w.kill();
    }
  });

  it.skipIf(!haveTools || !existsSync('/dev/full'))('a full disk under dd is ENOSPC with the bytes written so far', async () => {
    const w = feed(randomBytes(2 * MiB));
    try {
      const inFd = open(w.fifo, 'r');
      const outFd = open('/dev/full', 'w');
      const progress = { size: 0 };
      let err: NodeJS.ErrnoException | undefined;
      try {
        streamCore(inFd, outFd, { limit: null, nativeAfter: 0, dd, progress });
      } catch (e) {
        err = e as NodeJS.ErrnoException;
      }
      expect(err?.code).toBe('ENOSPC');
      expect(err?.message).toMatch(/^dd: .*No space left on device/);
      expect(progress.size).toBe(0);
    } finally {
      w.kill();
    }
  });
});

describe('streamCore: the launcher\'s copy first, then the pipe', () => {
  /** `head` in one file, `tail` in another: streamed as one core. */
  function runTwo(head: Buffer, tail: Buffer, opts: Parameters<typeof streamCore>[2] = { limit: null }) {
    writeFileSync(join(dir, 'head'), head);
    writeFileSync(join(dir, 'tail'), tail);
    const outFd = open(join(dir, 'out'), 'w');
    const result = streamCore([open(join(dir, 'head'), 'r'), open(join(dir, 'tail'), 'r')], outFd, opts);
    return { result, out: readFileSync(join(dir, 'out')) };
  }

  it('is the two, byte for byte, whatever the boundary (mid-block, on a hole, empty first part)', () => {
    const whole = coreLike(3 * MiB + 123, [0, 200 * KiB, 1 * MiB + 7, 3 * MiB]);
    for (const cut of [0, 1, 100 * KiB + 3, SPARSE_BLOCK_BYTES * 5, 2 * MiB, whole.length]) {
      const { result, out } = runTwo(whole.subarray(0, cut), whole.subarray(cut));
      expect(out.equals(whole), `cut at ${cut}`).toBe(true);
      expect(result).toMatchObject({ size: whole.length, truncated: false, sparseBytes: expectedHoles(whole) });
      rmSync(join(dir, 'out'));
    }
  });

  it('a limit inside the second part, and one inside the first, truncate where they should', () => {
    const whole = randomBytes(512 * KiB);
    const a = runTwo(whole.subarray(0, 100 * KiB), whole.subarray(100 * KiB), { limit: 300 * KiB });
    expect(a.result).toMatchObject({ size: 300 * KiB, truncated: true });
    expect(a.out.equals(whole.subarray(0, 300 * KiB))).toBe(true);
    rmSync(join(dir, 'out'));
    const b = runTwo(whole.subarray(0, 100 * KiB), whole.subarray(100 * KiB), { limit: 50 * KiB });
    expect(b.result).toMatchObject({ size: 50 * KiB, truncated: true });
    rmSync(join(dir, 'out'));
    // exactly at the end of the first part, the second still has more: truncated
    const c = runTwo(whole.subarray(0, 100 * KiB), whole.subarray(100 * KiB), { limit: 100 * KiB });
    expect(c.result).toMatchObject({ size: 100 * KiB, truncated: true });
    rmSync(join(dir, 'out'));
    const d = runTwo(whole.subarray(0, 100 * KiB), Buffer.alloc(0), { limit: 100 * KiB });
    expect(d.result).toMatchObject({ size: 100 * KiB, truncated: false });
  });
});
