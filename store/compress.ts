// Core compression and decompression. zstd through the native program (our process only
// passes file descriptors it opened itself, so the program never opens a path), gzip
// through zlib when zstd is missing. Runs after the crashed process was released.
import { spawn } from 'node:child_process';
import { closeSync, constants, createReadStream, createWriteStream, fstatSync, openSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import type { CompressMethod } from '../lib/config.js';
import { readChunks } from '../lib/chunks.js';
import { FlightboxError } from '../lib/errors.js';
import { findProgram } from '../lib/programs.js';

export const CORE_FILE_NAMES = { zstd: 'core.zst', gzip: 'core.gz', none: 'core' } as const;

export function compressionOf(file: string): CompressMethod {
  return file.endsWith('.zst') ? 'zstd' : file.endsWith('.gz') ? 'gzip' : 'none';
}

function runWithFds(program: string, args: string[], inFd: number, outFd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: [inFd, outFd, 'pipe'], env: { LC_ALL: 'C' }, cwd: '/' });
    let err = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { if (err.length < 4096) err += d; });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`${program} ${signal ? `killed by ${signal}` : `exited ${code}`}: ${err.trim().split('\n')[0] ?? ''}`));
    });
  });
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
export async function compressFd(inFd: number, outFd: number, method: CompressMethod, level: number, opts: { holeBytes?: number } = {}): Promise<CompressMethod> {
  if ((opts.holeBytes ?? 0) >= PREREAD_MIN_HOLE_BYTES) await preread(inFd, fstatSync(inFd).size);
  if (method === 'zstd') {
    const zstd = findProgram('zstd');
    if (zstd) {
      // One worker per CPU (this runs after the crashed process has been released). Not -T0:
      // zstd 1.5's automatic count spins on futexes over a sparse core, 4.9 s of system time
      // per GiB of holes here against 0.9 s with -T2 (and the same speed on dense data).
      await runWithFds(zstd, ['-q', `-${level}`, `-T${availableParallelism()}`, '-c'], inFd, outFd);
      return 'zstd';
    }
    method = 'gzip';
  }
  if (method === 'gzip') {
    await pipeline(
      createReadStream('', { fd: inFd, autoClose: false, highWaterMark: 1 << 20 }),
      createGzip({ level: Math.min(level, 9) }),
      createWriteStream('', { fd: outFd, autoClose: false, highWaterMark: 1 << 20 }),
    );
    return 'gzip';
  }
  throw new FlightboxError('INTERNAL', 'compressFd called with method none');
}

/** Decompress a stored core file into `outFd` (a file or a pipe). */
export async function decompressTo(corePath: string, outFd: number): Promise<void> {
  const inFd = openSync(corePath, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const method = compressionOf(corePath);
    if (method === 'zstd') {
      const zstd = findProgram('zstd');
      if (!zstd) throw new FlightboxError('TOOL_MISSING', `${corePath} is zstd-compressed and the zstd program is not installed (apt-get install zstd)`);
      await runWithFds(zstd, ['-q', '-d', '-c'], inFd, outFd);
    } else {
      const src = createReadStream('', { fd: inFd, autoClose: false, highWaterMark: 1 << 20 });
      const dst = createWriteStream('', { fd: outFd, autoClose: false, highWaterMark: 1 << 20 });
      await (method === 'gzip' ? pipeline(src, createGunzip(), dst) : pipeline(src, dst));
    }
  } finally {
    closeSync(inFd);
  }
}
