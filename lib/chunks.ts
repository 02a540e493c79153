// A file read in large positional chunks on libuv's thread pool (the event loop stays free,
// the descriptor's own offset does not move): to bring a file into the page cache before a
// program reads it, or to hash a file while another process is still writing it.
import { read } from 'node:fs';
import { promisify } from 'node:util';

const readAt = promisify(read);

/** The size of each read: large reads of a fresh sparse file cost far less per byte (store/compress.ts). */
export const CHUNK_BYTES = 4 * 1024 * 1024;
/** How long to wait for more of a file still being written once the reader has caught up. */
const GROWING_POLL_MS = 5;

export interface ReadChunksOptions {
  /** Read at most this many bytes (default: to the end). */
  max?: number;
  /** Each chunk as it is read (the buffer is reused: copy what must be kept). */
  onChunk?: (chunk: Buffer) => void;
  /**
   * The file is still being written until this settles: at its end the reader waits for more,
   * and once it has settled reads to the end.
   */
  until?: Promise<unknown>;
}

/** Read `fd` from offset 0; returns the bytes read. */
export async function readChunks(fd: number, opts: ReadChunksOptions = {}): Promise<number> {
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  let writerDone = opts.until === undefined;
  const done = opts.until?.then(() => { writerDone = true; }, () => { writerDone = true; });
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(max, 1)));
  let bytes = 0;
  while (bytes < max) {
    // Noted before the read: a read that comes back empty after the writer finished is the end.
    const wasDone = writerDone;
    const { bytesRead } = await readAt(fd, buf, 0, Math.min(buf.length, max - bytes), bytes);
    if (bytesRead > 0) {
      opts.onChunk?.(buf.subarray(0, bytesRead));
      bytes += bytesRead;
    } else if (wasDone) {
      break;
    } else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((r) => { timer = setTimeout(r, GROWING_POLL_MS); })]);
      clearTimeout(timer);
    }
  }
  return bytes;
}
