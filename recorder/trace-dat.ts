// A trace.dat (trace-cmd's file format, version 6: trace-cmd.dat.v6(5)) written by us from a
// frozen tracefs instance: the instance's raw ring-buffer pages (per_cpu/cpuN/trace_pipe_raw)
// behind a header holding only the formats of the events we record. `trace-cmd extract`
// writes the same pages, but first reads the format of every event the kernel knows (some
// 2,300 here: 5,000 opens and 12,000 reads, ~400 ms a snapshot); this takes tens of
// milliseconds. trace-cmd report, kernelshark and the analysis here read it as theirs.
//
// Like trace-cmd's, reading trace_pipe_raw consumes the events: afterwards the history lives
// in the file only. The caller falls back to trace-cmd or to the text of what remains.
import { closeSync, constants, existsSync, ftruncateSync, openSync, readFileSync, readSync, readdirSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { errnoCode } from '../lib/errors.js';
import { createExclusive } from '../lib/safe-fs.js';

const MAGIC = Buffer.from([0x17, 0x08, 0x44, ...Buffer.from('tracing')]);
/** The largest format file we copy: the kernel's are a few KiB. */
const MAX_FORMAT_BYTES = 1024 * 1024;
/** saved_cmdlines is a few hundred KiB at most (its size is set in entries). */
const MAX_CMDLINES_BYTES = 16 * 1024 * 1024;

export interface TraceDatResult {
  bytes: number;
  /** ring-buffer bytes per CPU, in CPU order */
  cpuBytes: number[];
  /** the deadline came while reading: the rest of the buffer is still in the kernel */
  cutAtDeadline: boolean;
}

/** Why the instance cannot be written this way (null: it can): read before anything is consumed. */
export function traceDatUnsupported(instanceDir: string): string | null {
  if (process.arch !== 'x64' && process.arch !== 'arm64' && process.arch !== 'ppc64' && process.arch !== 's390x' && process.arch !== 'riscv64') {
    return `no 64-bit userspace (${process.arch})`;
  }
  if (!existsSync(join(instanceDir, 'events/header_page'))) return 'no events/header_page in the instance';
  return subbufBytes(readFileSync(join(instanceDir, 'events/header_page'), 'utf8')) === null ? 'events/header_page has no data field' : null;
}

/**
 * The ring buffer's page ("sub-buffer") size from events/header_page: its data field's
 * offset plus size. trace-cmd reads the CPU data a page of this size at a time.
 */
export function subbufBytes(headerPage: string): number | null {
  const m = /field:\s*char data;\s*offset:(\d+);\s*size:(\d+);/.exec(headerPage);
  if (!m) return null;
  const n = Number(m[1]) + Number(m[2]);
  return Number.isSafeInteger(n) && n >= 1024 && n <= 1024 * 1024 ? n : null;
}

/** The page header's size: the offset of its data field (16 on 64-bit kernels). */
function headerBytes(headerPage: string): number {
  return Number(/field:\s*char data;\s*offset:(\d+);/.exec(headerPage)?.[1] ?? 16);
}

/**
 * The event formats to store: every event of a whole system in `events`, the named ones of
 * the others, from the instance's own events directory; systems in order, events in order.
 */
export function eventFormats(instanceDir: string, events: readonly string[]): Map<string, Buffer[]> {
  const wanted = new Map<string, Set<string> | 'all'>();
  for (const spec of events) {
    const [system, event] = spec.split('/');
    if (!system || system === 'ftrace') continue;
    if (event === undefined) wanted.set(system, 'all');
    else {
      const cur = wanted.get(system);
      if (cur === 'all') continue;
      wanted.set(system, (cur ?? new Set<string>()).add(event));
    }
  }
  const out = new Map<string, Buffer[]>();
  for (const system of [...wanted.keys()].sort()) {
    const which = wanted.get(system)!;
    const dir = join(instanceDir, 'events', system);
    let names: string[];
    try {
      names = which === 'all' ? readdirSync(dir).filter((n) => existsSync(join(dir, n, 'format'))).sort() : [...which].sort();
    } catch {
      continue; // a system this kernel does not have: it recorded nothing either
    }
    const formats: Buffer[] = [];
    for (const name of names) {
      const f = readBounded(join(dir, name, 'format'), MAX_FORMAT_BYTES);
      if (f !== null) formats.push(f);
    }
    if (formats.length > 0) out.set(system, formats);
  }
  return out;
}

function readBounded(path: string, max: number): Buffer | null {
  try {
    const b = readFileSync(path);
    return b.length <= max ? b : null;
  } catch {
    return null;
  }
}

const u16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
const u64 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const sized64 = (data: Buffer): Buffer[] => [u64(data.length), data];

/**
 * The file's header up to (not including) the per-CPU offsets, little-endian (as the
 * machines we run on): magic, version 6, header_page and header_event, the ftrace formats,
 * the event formats, no kallsyms, no printk formats, saved_cmdlines, the CPU count, no
 * options (the trace clock is in ftrace.json; trace-cmd shows seconds without one).
 */
export function traceDatHeader(parts: {
  pageBytes: number; headerPage: Buffer; headerEvent: Buffer; ftraceFormats: Buffer[]; eventFormats: Map<string, Buffer[]>; cmdlines: Buffer; cpus: number;
}): Buffer {
  const chunks: Buffer[] = [MAGIC, Buffer.from('6\0'), Buffer.from([0, 8]), u32(parts.pageBytes)];
  chunks.push(Buffer.from('header_page\0'), ...sized64(parts.headerPage), Buffer.from('header_event\0'), ...sized64(parts.headerEvent));
  chunks.push(u32(parts.ftraceFormats.length), ...parts.ftraceFormats.flatMap(sized64));
  chunks.push(u32(parts.eventFormats.size));
  for (const [system, formats] of parts.eventFormats) {
    chunks.push(Buffer.from(`${system}\0`), u32(formats.length), ...formats.flatMap(sized64));
  }
  chunks.push(u32(0), u32(0), ...sized64(parts.cmdlines), u32(parts.cpus));
  chunks.push(Buffer.from('options  \0'), u16(0), Buffer.from('flyrecord\0'));
  return Buffer.concat(chunks);
}

/**
 * Pages read between two turns of the event loop (1 MiB of 4 KiB pages): the daemon keeps
 * answering. They are gathered in one buffer and written with one write: a write per page was
 * half the time of a full buffer's copy (4 MiB: 11-13 ms, of which reading ~5).
 */
const PAGES_PER_TURN = 256;

/**
 * Write `dir/name` (not synced) from the frozen instance. The header is read first (nothing
 * consumed if that fails); then each CPU's pages go to the file right after the previous
 * CPU's (the CPUs are read one after the other, so the file holds no holes), each CPU
 * bounded by the size of its ring buffer (what it cannot exceed), and the offsets table
 * last. Memory: PAGES_PER_TURN pages. Throws on error, after removing its partial file.
 */
export async function writeTraceDat(opts: {
  instanceDir: string; tracefsRoot: string; events: readonly string[]; dir: string; name: string; deadline: number; bufferBytesPerCpu: number; now?: () => number;
}): Promise<TraceDatResult> {
  const now = opts.now ?? Date.now;
  const inst = opts.instanceDir;
  const headerPage = readFileSync(join(inst, 'events/header_page'));
  const pageBytes = subbufBytes(headerPage.toString('utf8'));
  if (pageBytes === null) throw new Error('events/header_page has no data field');
  const ftraceDir = join(opts.tracefsRoot, 'events/ftrace');
  const ftraceFormats = (existsSync(ftraceDir) ? readdirSync(ftraceDir).sort() : [])
    .map((n) => readBounded(join(ftraceDir, n, 'format'), MAX_FORMAT_BYTES))
    .filter((b): b is Buffer => b !== null);
  const cpuList = readdirSync(join(inst, 'per_cpu'))
    .map((n) => /^cpu(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  const header = traceDatHeader({
    pageBytes,
    headerPage,
    headerEvent: readFileSync(join(inst, 'events/header_event')),
    ftraceFormats,
    eventFormats: eventFormats(inst, opts.events),
    cmdlines: readBounded(join(opts.tracefsRoot, 'saved_cmdlines'), MAX_CMDLINES_BYTES) ?? Buffer.alloc(0),
    cpus: cpuList.length,
  });
  const align = (n: number): number => Math.ceil(n / pageBytes) * pageBytes;
  // The ring buffer's pages (the kernel counts their data part: a page less its header) and
  // the reader's spare page, with room to spare.
  const dataPerPage = pageBytes - headerBytes(headerPage.toString('utf8'));
  const region = (Math.ceil(opts.bufferBytesPerCpu / dataPerPage) + 4) * pageBytes;
  const first = align(header.length + 16 * cpuList.length);
  const fd = createExclusive(opts.dir, opts.name, 0o600);
  let ok = false;
  try {
    const writeAt = (b: Buffer, pos: number): void => {
      for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off, pos + off);
    };
    writeAt(header, 0);
    // From here on the kernel's buffer is being consumed.
    const sizes: number[] = [];
    const offsets: number[] = [];
    let at = first;
    let cut = false;
    let full = false;
    const chunk = Buffer.alloc(pageBytes * PAGES_PER_TURN);
    for (let i = 0; i < cpuList.length; i++) {
      offsets.push(at);
      let size = 0;
      if (!cut) {
        let filled = 0;
        const flush = (): void => {
          writeAt(chunk.subarray(0, filled), at + size - filled);
          filled = 0;
        };
        const rfd = openSync(join(inst, 'per_cpu', `cpu${cpuList[i]}`, 'trace_pipe_raw'), constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
        try {
          for (;;) {
            if (now() >= opts.deadline) { cut = true; break; }
            if (size + pageBytes > region) { full = true; break; }
            let n: number;
            try {
              n = readSync(rfd, chunk, filled, pageBytes, null);
            } catch (err) {
              if (errnoCode(err) === 'EAGAIN') break;
              throw err;
            }
            if (n === 0) break;
            // A short read is the last, partly filled page: stored whole, zero-padded.
            if (n < pageBytes) chunk.fill(0, filled + n, filled + pageBytes);
            filled += pageBytes;
            size += pageBytes;
            if (filled === chunk.length) {
              flush();
              await new Promise((r) => setImmediate(r));
            }
          }
          flush();
        } finally {
          closeSync(rfd);
        }
      }
      sizes.push(size);
      at += size;
    }
    if (full) throw new Error(`a CPU handed out more than its ring buffer (${region} bytes)`);
    ftruncateSync(fd, at);
    writeAt(Buffer.concat(sizes.map((sz, i) => Buffer.concat([u64(offsets[i]!), u64(sz)]))), header.length);
    const bytes = at;
    // Not synced here: the caller keeps this file or a compressed copy of it, and syncs that.
    ok = true;
    return { bytes, cpuBytes: sizes, cutAtDeadline: cut };
  } finally {
    closeSync(fd);
    if (!ok) {
      try { unlinkSync(join(opts.dir, opts.name)); } catch { /* never made */ }
    }
  }
}
