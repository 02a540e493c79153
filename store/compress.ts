// Core compression and decompression. zstd through the native program (our process only
// passes file descriptors it opened itself, so the program never opens a path), gzip
// through zlib when zstd is missing. Runs after the crashed process was released.
import type { ChildProcess } from 'node:child_process';
import { closeSync, constants, createReadStream, createWriteStream, fstatSync, openSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { CompressMethod } from '../lib/config.js';
import { readChunks } from '../lib/chunks.js';
import { FlightboxError } from '../lib/errors.js';
import { findProgram } from '../lib/programs.js';
import { writeFully } from '../lib/safe-fs.js';
import { EXTENTS_PERL, ZERO_FRAME_MIN_BYTES, parseExtents, planPieces, zeroFrame, type Piece } from './sparse-zstd.js';
import { builtin } from '../lib/builtin.js';

export const CORE_FILE_NAMES = { zstd: 'core.zst', gzip: 'core.gz', none: 'core' } as const;

export function compressionOf(file: string): CompressMethod {
  return file.endsWith('.zst') ? 'zstd' : file.endsWith('.gz') ? 'gzip' : 'none';
}

/** A child's end: resolves when it exited 0, rejects with its first line of stderr otherwise. */
function finished(child: ChildProcess, program: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (err.length < 4096) err += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${program} ${signal ? `killed by ${signal}` : `exited ${code}`}: ${err.trim().split('\n')[0] ?? ''}`));
    });
  });
}

function runWithFds(program: string, args: string[], inFd: number, outFd: number): Promise<void> {
  return finished(builtin('node:child_process').spawn(program, args, { stdio: [inFd, outFd, 'pipe'], env: { LC_ALL: 'C' }, cwd: '/' }), program);
}

/**
 * The pieces of the file open on `inFd` (store/sparse-zstd.ts), or null: no perl, no hole
 * long enough, or the extents could not be listed. perl reads its own description of the
 * file (through /proc/self/fd), so the offset of `inFd`, which zstd may read from next, stays.
 */
export async function sparsePieces(inFd: number): Promise<Piece[] | null> {
  const perl = findProgram('perl');
  if (!perl) return null;
  const size = fstatSync(inFd).size;
  let own: number;
  try {
    own = openSync(`/proc/self/fd/${inFd}`, constants.O_RDONLY);
  } catch {
    return null;
  }
  let out = '';
  try {
    const child = builtin('node:child_process').spawn(perl, ['-e', EXTENTS_PERL], { stdio: [own, 'pipe', 'pipe'], env: { LC_ALL: 'C' }, cwd: '/' });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { if (out.length < 8 << 20) out += d; });
    closeSync(own);
    own = -1;
    await finished(child, perl);
  } catch {
    return null;
  } finally {
    if (own >= 0) closeSync(own);
  }
  const extents = parseExtents(out, size);
  if (!extents) return null;
  // The extents must cover what the file has allocated (less a little: extent-tree blocks):
  // less means a filesystem that answered wrongly, and its "holes" may be data.
  const listed = extents.reduce((n, e) => n + e.end - e.start, 0);
  const allocated = fstatSync(inFd).blocks * 512;
  if (listed < allocated - Math.max(1 << 20, allocated / 100)) return null;
  return planPieces(extents, size);
}

/**
 * Write `pieces` of the file on `inFd` to `outFd` as one zstd file: each run of zeros an RLE
 * frame written here, each data piece read by dd (its own description of the file, through
 * /proc/self/fd/0) straight into zstd, which records the piece's length in its frame and
 * fails if it got another (--stream-size). All write at `outFd`'s offset, one after the other.
 */
async function compressPieces(zstd: string, dd: string, zstdArgs: string[], inFd: number, outFd: number, pieces: readonly Piece[]): Promise<void> {
  for (const p of pieces) {
    if (p.kind === 'zeros') {
      for (const chunk of zeroFrame(p.length)) writeFully(outFd, chunk);
      continue;
    }
    const reader = builtin('node:child_process').spawn(dd, ['if=/proc/self/fd/0', 'bs=1M', `skip=${p.start}`, `count=${p.end - p.start}`, 'iflag=skip_bytes,count_bytes', 'status=none'], {
      stdio: [inFd, 'pipe', 'pipe'], env: { LC_ALL: 'C' }, cwd: '/',
    });
    const z = builtin('node:child_process').spawn(zstd, [...zstdArgs, `--stream-size=${p.end - p.start}`], { stdio: [reader.stdout!, outFd, 'pipe'], env: { LC_ALL: 'C' }, cwd: '/' });
    // zstd has its own copy of dd's output: ours is closed before the event loop could read from it.
    reader.stdout!.destroy();
    // Both ended before anything goes on (a failed dd must not leave zstd writing behind us);
    // zstd's error first: when zstd fails, dd only dies of the broken pipe.
    const ends = await Promise.allSettled([finished(z, zstd), finished(reader, dd)]);
    for (const e of ends) if (e.status === 'rejected') throw e.reason;
  }
}

/** Cores with fewer bytes of holes than this are compressed without a pre-read. */
export const PREREAD_MIN_HOLE_BYTES = 32 * 1024 * 1024;

/**
 * Read `size` bytes of `fd` from offset 0 in large reads, into nothing: afterwards the file is
 * in the page cache. Reading a freshly written sparse file's holes allocates page cache; on
 * a VM whose free memory went back to the host (free-page reporting) that costs about 0.5 ms
 * per read() whatever its size, so zstd's 128 KiB reads took 3.1-3.9 s per GiB of holes
 * against 0.5 s for 4 MiB reads, zstd then reading the cached pages in 0.6-0.8 s. When the
 * memory is warm the two are even within 15 % (1.1-1.5 s against 1.3 s per GiB).
 * Positional reads: the descriptor's offset, which the compressor reads from, does not move.
 * Returns the bytes read.
 */
export function preread(fd: number, size: number): Promise<number> {
  return readChunks(fd, { max: size });
}

/**
 * Compress `inFd`'s content (from its current offset) into `outFd`. Returns the method used.
 * `holeBytes`: how much of the input is holes, which from PREREAD_MIN_HOLE_BYTES on are read
 * into the page cache first (see preread).
 */
export interface CompressOptions {
  /** Bytes of holes in the input (see preread and store/sparse-zstd.ts). */
  holeBytes?: number;
  /**
   * Compressing around the holes failed part-way: the output was truncated and the core is
   * being compressed whole into it. What was read of the output so far (a hash) is void.
   */
  onRestart?: (err: unknown) => void;
  /** The dd to read data pieces with (tests: a dd that fails part-way); default: found on the search path. */
  dd?: string;
}

export async function compressFd(inFd: number, outFd: number, method: CompressMethod, level: number, opts: CompressOptions = {}): Promise<CompressMethod> {
  const holeBytes = opts.holeBytes ?? 0;
  const zstd = method === 'zstd' ? findProgram('zstd') : null;
  // One worker per CPU (this runs after the crashed process has been released). Not -T0:
  // zstd 1.5's automatic count spins on futexes over a sparse core, 4.9 s of system time
  // per GiB of holes here against 0.9 s with -T2 (and the same speed on dense data).
  const zstdArgs = ['-q', `-${level}`, `-T${availableParallelism()}`, '-c'];
  const dd = opts.dd ?? findProgram('dd');
  let out = outFd;
  try {
    if (zstd && dd && holeBytes >= ZERO_FRAME_MIN_BYTES) {
      // Long holes are never read: written as frames of zeros (store/sparse-zstd.ts).
      const pieces = await sparsePieces(inFd);
      if (pieces) {
        try {
          await compressPieces(zstd, dd, zstdArgs, inFd, outFd, pieces);
          return 'zstd';
        } catch (err) {
          // Start again with the whole core, below: a new description of the output (node
          // cannot move outFd's offset), truncated. inFd's own offset never moved (dd and
          // perl had descriptions of their own).
          opts.onRestart?.(err);
          out = openSync(`/proc/self/fd/${outFd}`, constants.O_WRONLY | constants.O_TRUNC);
        }
      }
    }
    if (holeBytes >= PREREAD_MIN_HOLE_BYTES) await preread(inFd, fstatSync(inFd).size);
    if (zstd) {
      await runWithFds(zstd, zstdArgs, inFd, out);
      return 'zstd';
    }
    if (method === 'none') throw new FlightboxError('INTERNAL', 'compressFd called with method none');
    await pipeline(
      createReadStream('', { fd: inFd, autoClose: false, highWaterMark: 1 << 20 }),
      createGzip({ level: Math.min(level, 9) }),
      createWriteStream('', { fd: out, autoClose: false, highWaterMark: 1 << 20 }),
    );
    return 'gzip';
  } finally {
    if (out !== outFd) closeSync(out);
  }
}

/**
 * Decompress a stored core file into `outFd` (a file or a pipe). `sparse`: `outFd` is an
 * empty file of our own, opened without O_APPEND, so zstd may seek over runs of zeros
 * instead of writing them (a core of 1 GiB of zeros takes a few blocks, not 1 GiB).
 */
export async function decompressTo(corePath: string, outFd: number, opts: { sparse?: boolean } = {}): Promise<void> {
  const inFd = openSync(corePath, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const method = compressionOf(corePath);
    if (method === 'zstd') {
      const zstd = findProgram('zstd');
      if (!zstd) throw new FlightboxError('TOOL_MISSING', `${corePath} is zstd-compressed and the zstd program is not installed (apt-get install zstd)`);
      const sparse = opts.sparse === true && fstatSync(outFd).isFile();
      await runWithFds(zstd, ['-q', '-d', '-c', ...(sparse ? ['--sparse'] : [])], inFd, outFd);
    } else {
      const src = createReadStream('', { fd: inFd, autoClose: false, highWaterMark: 1 << 20 });
      const dst = createWriteStream('', { fd: outFd, autoClose: false, highWaterMark: 1 << 20 });
      await (method === 'gzip' ? pipeline(src, createGunzip(), dst) : pipeline(src, dst));
    }
  } finally {
    closeSync(inFd);
  }
}
