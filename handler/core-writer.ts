// Copy the core from the kernel's pipe to a file: runs of zeros left as holes (cores are
// mostly untouched pages), and a byte limit. This is the hold path: the crashed process, and
// all its memory, waits until we have read the last byte, so nothing else happens in this
// loop, and it costs as few system calls and as little memory traffic as it can.
import { fstatSync, ftruncateSync, readSync, writeSync } from 'node:fs';
import { builtin } from '../lib/builtin.js';
import { errnoCode } from '../lib/errors.js';

/**
 * The copy buffer. The pipe hands out at most 64 KiB per read whatever the buffer, so a
 * bigger one only saves writes, and once it no longer stays in the CPU's cache between the
 * read and the write it costs more than it saves: copying 512 MiB from a pipe took 0.7 s with
 * 64 or 128 KiB, 1.0 s with 256 KiB, 1.1-2.5 s with 1 MiB (cat: 0.5 s), the difference being
 * kernel time spent copying out of cold memory.
 */
export const CORE_BUFFER_BYTES = 128 * 1024;
/** Granularity of hole detection; a multiple of every common filesystem block size. */
export const SPARSE_BLOCK_BYTES = 64 * 1024;

/**
 * Past this many bytes the rest of a core goes through dd (coreutils) instead of this loop:
 * node's cost per read and write call made a 1 GiB core held 1.27 x as long as `cat` does,
 * and starting dd costs a few milliseconds, which only a big core repays.
 */
export const NATIVE_COPY_AFTER_BYTES = 32 * 1024 * 1024;

export interface CoreWriteResult {
  /** Bytes stored (logical file size). */
  size: number;
  /** Bytes that became holes. */
  sparseBytes: number;
  /** True when the input was longer than the limit (the rest was not read). */
  truncated: boolean;
  /** Bytes copied by dd rather than by this process. */
  nativeBytes: number;
}

export interface StreamCoreOptions {
  limit: number | null;
  sparse?: boolean;
  progress?: { size: number };
  /** Hand the rest to dd past this many bytes (null: never); needs `dd`, a path to dd. */
  nativeAfter?: number | null;
  dd?: string | null;
}

/** dd's own error line ("dd: error writing …"), or null. dd names itself as it was run. */
export function ddMessage(stderr: string): string | null {
  return stderr.split('\n').find((l) => /^(?:\S*\/)?dd: /.test(l))?.replace(/^\S*\/dd: /, 'dd: ').slice(0, 300) ?? null;
}

/** An error carrying the errno code dd reported in words, so callers treat it as a write error. */
function ddError(stderr: string, status: number | null): Error {
  const line = ddMessage(stderr) ?? `dd exited with ${status}`;
  const code = /No space left/.test(line) ? 'ENOSPC' : /quota/i.test(line) ? 'EDQUOT' : /Input\/output/.test(line) ? 'EIO' : 'EDDFAILED';
  return Object.assign(new Error(line.slice(0, 300)), { code });
}

/**
 * Copy the rest of the pipe to `outFd` from offset `at` with dd: 128 KiB blocks, all-zero
 * blocks left as holes (dd extends the file over trailing ones), at most `max` bytes.
 * Returns the bytes dd copied; throws (with what was copied in `copied`) on a write error.
 */
function copyRestWithDd(dd: string, inFd: number, outFd: number, at: number, max: number | null, sparse: boolean): number {
  const args = ['bs=128K', 'iflag=fullblock' + (max !== null ? ',count_bytes' : ''), `seek=${at}`, 'oflag=seek_bytes', `conv=notrunc${sparse ? ',sparse' : ''}`];
  if (max !== null) args.push(`count=${max}`);
  const r = builtin('node:child_process').spawnSync(dd, args, {
    stdio: [inFd, outFd, 'pipe'], encoding: 'utf8', env: { LC_ALL: 'C' }, cwd: '/', maxBuffer: 1024 * 1024,
  });
  if (r.error) throw Object.assign(new Error(`dd could not run: ${r.error.message}`), { code: 'EDDFAILED', copied: 0 });
  // "N bytes (…) copied": its last statistics line, also after a failed write.
  const m = /^(\d+) bytes/m.exec(r.stderr ?? '');
  const copied = m ? Number(m[1]) : Math.max(0, fstatSync(outFd).size - at);
  if (r.status !== 0) throw Object.assign(ddError(r.stderr ?? '', r.status), { copied });
  return copied;
}

const ZERO = Buffer.alloc(SPARSE_BLOCK_BYTES);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function readSome(fd: number, buf: Buffer, off: number, len: number): number {
  for (;;) {
    try {
      return readSync(fd, buf, off, len, null);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EAGAIN') { Atomics.wait(sleeper, 0, 0, 1); continue; } // a non-blocking pipe
      if (code === 'EINTR') continue;
      if (code === 'EOF') return 0;
      throw err;
    }
  }
}

function writeAll(fd: number, buf: Buffer, off: number, len: number, pos: number): void {
  while (len > 0) {
    const n = writeSync(fd, buf, off, len, pos);
    off += n; len -= n; pos += n;
  }
}

/**
 * Read `input` to its end (or to `limit` bytes) and write it to `outFd` at offset 0. Several
 * inputs are read one after the other, as one stream (the launcher's copy of the core's
 * first part, then the pipe); only the last is handed to dd.
 * `limit` null means no limit. Throws on a write error (e.g. ENOSPC) after recording what
 * was written so far in `progress`, so the caller can keep a truncated core.
 */
export function streamCore(input: number | readonly number[], outFd: number, opts: StreamCoreOptions): CoreWriteResult {
  const inputs = typeof input === 'number' ? [input] : [...input];
  let current = 0;
  let inFd = inputs[0]!;
  /** A read of the stream: an input's end moves on to the next. */
  const readStream = (buf: Buffer, off: number, len: number): number => {
    for (;;) {
      const n = readSome(inFd, buf, off, len);
      if (n > 0 || current === inputs.length - 1) return n;
      inFd = inputs[++current]!;
    }
  };
  const limit = opts.limit ?? Number.MAX_SAFE_INTEGER;
  const sparse = opts.sparse !== false;
  const buf = Buffer.allocUnsafe(CORE_BUFFER_BYTES);
  let size = 0;
  let sparseBytes = 0;
  let truncated = false;
  let eof = false;
  let nativeBytes = 0;
  const nativeAfter = opts.dd ? opts.nativeAfter ?? null : null;
  while (!eof && size < limit) {
    if (nativeAfter !== null && size >= nativeAfter && current === inputs.length - 1) {
      // The rest through dd. Its holes are counted from the blocks the file got.
      const before = fstatSync(outFd).blocks * 512;
      const max = opts.limit === null ? null : limit - size;
      let copied: number;
      try {
        copied = copyRestWithDd(opts.dd!, inFd, outFd, size, max, sparse);
      } catch (err) {
        size += (err as { copied?: number }).copied ?? 0;
        if (opts.progress) opts.progress.size = size;
        throw err;
      }
      nativeBytes = copied;
      sparseBytes += Math.max(0, copied - Math.max(0, fstatSync(outFd).blocks * 512 - before));
      size += copied;
      if (opts.progress) opts.progress.size = size;
      eof = max === null || copied < max;
      break;
    }
    // Fill the buffer (the pipe hands out at most its capacity per read).
    const want = Math.min(buf.length, limit - size);
    let fill = 0;
    while (fill < want) {
      const n = readStream(buf, fill, want - fill);
      if (n === 0) { eof = true; break; }
      fill += n;
    }
    // Write it, leaving aligned all-zero blocks as holes; the data between two holes goes
    // out in one write. A block whose first or last byte is set is data without a compare.
    let off = 0;
    let dataFrom = 0;
    while (sparse && off + SPARSE_BLOCK_BYTES <= fill) {
      const end = off + SPARSE_BLOCK_BYTES;
      if (buf[off] === 0 && buf[end - 1] === 0 && ZERO.compare(buf, off, end) === 0) {
        if (dataFrom < off) writeAll(outFd, buf, dataFrom, off - dataFrom, size + dataFrom);
        sparseBytes += SPARSE_BLOCK_BYTES;
        dataFrom = end;
      }
      off = end;
    }
    if (dataFrom < fill) writeAll(outFd, buf, dataFrom, fill - dataFrom, size + dataFrom);
    size += fill;
    if (opts.progress) opts.progress.size = size;
  }
  if (!eof && size >= limit) {
    // Is there more? One byte tells; we do not drain the rest (closing stdin stops the dump).
    const probe = Buffer.allocUnsafe(1);
    truncated = readStream(probe, 0, 1) > 0;
  }
  // Trailing holes need the file size set explicitly.
  if (sparseBytes > 0) ftruncateSync(outFd, size);
  return { size, sparseBytes, truncated, nativeBytes };
}
