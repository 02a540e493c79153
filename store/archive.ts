// Bundles as archives. Export writes one bundle as a .tar.gz or .zip under a single top
// directory named after the event, with a manifest that matches exactly what is inside
// (files left out or redacted are noted and re-hashed). Import treats an archive from
// another host as hostile input: everything is checked before anything is written, the
// bundle is extracted only into the store's staging area, verified against its manifest,
// then published and indexed like a fresh capture; a refused import leaves nothing behind.
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, read, readSync, renameSync, rmSync,
  unlinkSync, write, writeSync, type Stats,
} from 'node:fs';
import { open as openAsync } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { Readable, Writable, pipeline as pipelineCb } from 'node:stream';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { Header, Parser, Pax, type ReadEntry } from 'tar';
import { FlightboxError, errnoCode, messageOf } from '../lib/errors.js';
import { redactCmdline } from '../lib/redact.js';
import { CREATE_FLAGS, fsyncDir, writeFileExclusive } from '../lib/safe-fs.js';
import { isBundleId } from './bundle-id.js';
import { MANIFEST_NAME, MANIFEST_VERSION, MAX_MANIFEST_BYTES, readManifest, type FileEntry, type Manifest } from './manifest.js';
import type { Store } from './store.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

export type ArchiveFormat = 'tar.gz' | 'zip';

/** More entries than this and an archive is refused (a bundle has a few dozen files). */
export const DEFAULT_IMPORT_MAX_ENTRIES = 10_000;
/** The most an import may write in total, whatever core.maxSize says. */
export const DEFAULT_IMPORT_MAX_TOTAL_BYTES = 8 * GiB;
/** The least we accept for one file, so a small core.maxSize still lets recorder snapshots in. */
export const MIN_IMPORT_MAX_ENTRY_BYTES = 256 * MiB;
/** Paths: longer or deeper than this is not something flightbox writes. */
export const MAX_ENTRY_PATH_CHARS = 1024;
export const MAX_ENTRY_PATH_DEPTH = 16;
/** Tar meta entries (pax headers, GNU long names) larger than this are refused. */
const MAX_TAR_META_BYTES = 64 * KiB;
/** Zero padding tolerated after the tar end-of-archive marker (GNU tar pads to 10 KiB records). */
const MAX_TAR_TRAILING_BYTES = 1 * MiB;
/** A zip central directory larger than this is refused before it is read. */
const MAX_ZIP_CENTRAL_DIRECTORY_BYTES = 64 * MiB;
/** proc/cmdline is rewritten in memory when redacting; the kernel caps it far below this. */
const MAX_CMDLINE_BYTES = 16 * MiB;
const READ_CHUNK_BYTES = 1 * MiB;
/** Files kept out of an export by --redact (the environment holds tokens and passwords). */
const REDACT_DROP = ['proc/environ'] as const;
const REDACT_CMDLINE_FILE = 'proc/cmdline';
/** Written by the store into every staging directory; never a bundle file. */
// '.pinned' (Store's PIN_MARKER): a pin is this store's decision, never an archive's.
const RESERVED_NAMES = new Set(['.owner', '.pinned']);

export interface ImportLimits {
  maxEntries: number;
  maxEntryBytes: number;
  maxTotalBytes: number;
}

/**
 * Limits for an import on a store whose cores are cut at `coreMaxSizeBytes`: one file may be
 * twice that (room for a sender configured a little more generously, or with compress:
 * none), at least MIN_IMPORT_MAX_ENTRY_BYTES; the whole archive DEFAULT_IMPORT_MAX_TOTAL_BYTES
 * or one such file, whichever is more.
 */
export function importLimits(coreMaxSizeBytes: number): ImportLimits {
  const maxEntryBytes = Math.max(2 * coreMaxSizeBytes, MIN_IMPORT_MAX_ENTRY_BYTES);
  return Object.freeze({
    maxEntries: DEFAULT_IMPORT_MAX_ENTRIES,
    maxEntryBytes,
    maxTotalBytes: Math.max(DEFAULT_IMPORT_MAX_TOTAL_BYTES, maxEntryBytes),
  });
}

/** The format an output file name asks for: .tar.gz / .tgz or .zip (any case); else null. */
export function archiveFormatFor(path: string): ArchiveFormat | null {
  const name = basename(path).toLowerCase();
  if (name.endsWith('.tar.gz') || name.endsWith('.tgz')) return 'tar.gz';
  if (name.endsWith('.zip')) return 'zip';
  return null;
}

/** Why a relative path inside a bundle is unsafe to create under a directory, or null. */
export function pathProblem(p: string): string | null {
  if (p === '') return 'has an empty name';
  if (p.length > MAX_ENTRY_PATH_CHARS) return `has a name longer than ${MAX_ENTRY_PATH_CHARS} characters`;
  if (p.startsWith('/')) return 'is an absolute path';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(p)) return 'has control characters in its name';
  if (p.includes('\\')) return 'has a backslash in its name';
  const parts = p.split('/');
  if (parts.includes('..')) return "climbs out of its directory ('..')";
  if (parts.some((s) => s === '' || s === '.')) return "has an empty or '.' path component";
  if (parts.length > MAX_ENTRY_PATH_DEPTH) return `is nested more than ${MAX_ENTRY_PATH_DEPTH} levels deep`;
  if (parts.some((s) => Buffer.byteLength(s) > 255)) return 'has a path component longer than 255 bytes';
  return null;
}

const readAsync = promisify(read);
const writeAsync = promisify(write);

// Streams over descriptors we own. fs.createReadStream/createWriteStream close their fd
// when a pipeline destroys them, even with autoClose: false; the next pass (or our own
// close) would then hit EBADF, or worse, a descriptor number reused by another open. These
// never close the fd, and count the reads and writes in flight: the function that opened
// the fd awaits idle() before closing it, so no write can land in a reused descriptor.
class FdIo {
  readonly fd: number;
  readonly #inflight = new Set<Promise<unknown>>();

  constructor(fd: number) {
    this.fd = fd;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    p.then(() => this.#inflight.delete(p), () => this.#inflight.delete(p));
    return p;
  }

  /** Bytes [start, end) of the file (or up to its end). */
  source(start: number, end: number): Readable {
    const io = this;
    return Readable.from((async function* () {
      for (let pos = start; pos < end;) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, end - pos));
        const { bytesRead } = await io.#track(readAsync(io.fd, buf, 0, buf.length, pos));
        if (bytesRead === 0) return;
        pos += bytesRead;
        yield buf.subarray(0, bytesRead);
      }
    })(), { objectMode: false });
  }

  /** Appends everything written to it at the file's current offset. */
  sink(): Writable {
    return new Writable({
      highWaterMark: READ_CHUNK_BYTES,
      write: (chunk: Buffer, _enc, cb) => {
        this.#track((async () => {
          for (let off = 0; off < chunk.length;) off += (await writeAsync(this.fd, chunk, off, chunk.length - off)).bytesWritten;
        })()).then(() => cb(), cb);
      },
    });
  }

  /** Resolves once no read or write is in flight. */
  async idle(): Promise<void> {
    while (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
  }
}

function quote(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
}

// =======================================================================================
// Export

/** What an adjusted manifest says about the export that made it. */
export interface ExportNote {
  at: string;
  host: string;
  noCore: boolean;
  redact: boolean;
  /** bundle files left out of the archive */
  removed: string[];
  /** files and manifest fields whose content was masked ("proc/cmdline", "process.cmdline") */
  redacted: string[];
}

export interface ExportOptions {
  format: ArchiveFormat;
  noCore: boolean;
  redact: boolean;
  onProgress?: (done: number, total: number) => void;
}

/** One file of the archive: its name inside, and where its bytes come from. */
interface OutEntry {
  name: string;
  size: number;
  mode: number;
  mtime: Date;
  /** already compressed (the core): a zip stores it instead of deflating it again */
  compressed: boolean;
  chunks: () => AsyncGenerator<Buffer>;
}

/**
 * Write the bundle in `bundleDir` as an archive at `outPath` (replacing any file there,
 * atomically: the archive is written to a temporary file next to it and renamed). Returns
 * the archive's size and the paths inside it.
 */
export async function exportBundle(
  bundleDir: string,
  outPath: string,
  opts: { format: 'tar.gz' | 'zip'; noCore: boolean; redact: boolean; onProgress?: (done: number, total: number) => void },
): Promise<{ bytes: number; files: string[] }> {
  return exportArchive(bundleDir, outPath, { ...opts, overwrite: true });
}

/** exportBundle, with the choice to refuse an existing `outPath` (the CLI without --force). */
export async function exportArchive(
  bundleDir: string,
  outPath: string,
  opts: ExportOptions & { overwrite: boolean },
): Promise<{ bytes: number; files: string[] }> {
  const plan = planExport(bundleDir, opts);
  const out = resolve(outPath);
  const dir = dirname(out);
  const tmp = join(dir, `.${basename(out)}.${process.pid}-${randomBytes(4).toString('hex')}.part`);
  let fd: number;
  try {
    // O_EXCL|O_NOFOLLOW: a name planted next to the output cannot redirect the write.
    fd = openSync(tmp, CREATE_FLAGS, 0o600);
  } catch (err) {
    throw new FlightboxError('USAGE', `cannot write ${outPath}: ${errnoCode(err) === 'ENOENT' ? `the directory ${dir} does not exist` : messageOf(err)}`);
  }
  let bytes: number;
  const io = new FdIo(fd);
  try {
    const sink = io.sink();
    let done = 0;
    const progress = (n: number) => {
      done += n;
      opts.onProgress?.(done, plan.total);
    };
    opts.onProgress?.(0, plan.total);
    if (opts.format === 'tar.gz') await writeTarGz(plan.entries, sink, progress);
    else await writeZip(plan.entries, sink, progress);
    fsyncSync(fd);
    bytes = fstatSync(fd).size;
    closeSync(fd);
    fd = -1;
    publishOutput(tmp, out, outPath, opts.overwrite);
    fsyncDir(dir);
  } catch (err) {
    if (fd !== -1) {
      await io.idle();
      closeSync(fd);
    }
    try { unlinkSync(tmp); } catch { /* already renamed or never made */ }
    const code = errnoCode(err);
    if (!(err instanceof FlightboxError) && (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG' || code === 'EIO' || code === 'EROFS')) {
      throw new FlightboxError('INTERNAL', `cannot write ${outPath}: ${messageOf(err)}`, { cause: err });
    }
    throw err;
  }
  return { bytes, files: plan.entries.map((e) => e.name) };
}

/** Move the finished archive into place: rename (overwrite), or link + unlink (never clobber). */
function publishOutput(tmp: string, out: string, shown: string, overwrite: boolean): void {
  if (overwrite) {
    renameSync(tmp, out);
    return;
  }
  try {
    linkSync(tmp, out);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') throw new FlightboxError('USAGE', `${shown} already exists (use --force to overwrite)`);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    // A filesystem without hard links: check, then rename (a small window, no better way).
    if (exists(out)) throw new FlightboxError('USAGE', `${shown} already exists (use --force to overwrite)`);
    renameSync(tmp, out);
    return;
  }
  unlinkSync(tmp);
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** What goes into the archive, decided (and the manifest adjusted) before a byte is written. */
function planExport(bundleDir: string, opts: ExportOptions): { entries: OutEntry[]; total: number } {
  const m = readManifest(bundleDir);
  if (!isBundleId(m.id)) throw new FlightboxError('STORE_CORRUPT', `${join(bundleDir, MANIFEST_NAME)} has a bad id ${quote(m.id)}`);
  const removed: string[] = [];
  const redacted: string[] = [];
  const files: FileEntry[] = [];
  const entries: OutEntry[] = [];
  const coreFile = m.core?.file ?? null;
  for (const f of m.files) {
    const problem = pathProblem(f.path);
    if (problem || f.path === MANIFEST_NAME) {
      throw new FlightboxError('STORE_CORRUPT', `${join(bundleDir, MANIFEST_NAME)} lists a file that ${problem ?? 'is the manifest itself'}: ${quote(f.path)}`);
    }
    if (opts.noCore && (f.path === coreFile || /^core(\.zst|\.gz)?$/.test(f.path))) {
      removed.push(f.path);
      continue;
    }
    if (opts.redact && (REDACT_DROP as readonly string[]).includes(f.path)) {
      removed.push(f.path);
      continue;
    }
    if (opts.redact && f.path === REDACT_CMDLINE_FILE) {
      const { data, mtime } = readVerified(bundleDir, f, MAX_CMDLINE_BYTES);
      const masked = redactCmdlineFile(data);
      if (!masked.equals(data)) redacted.push(f.path);
      const entry = { ...f, size: masked.length, sha256: sha256(masked) };
      files.push(entry);
      entries.push(bufferEntry(`${m.id}/${f.path}`, masked, modeOf(f), mtime));
      continue;
    }
    files.push(f);
    entries.push(fileEntry(bundleDir, `${m.id}/${f.path}`, f));
  }

  let manifestBytes: Buffer;
  if (!opts.noCore && !opts.redact) {
    // Nothing changed: the manifest goes out byte for byte as it is in the store.
    manifestBytes = readVerbatim(join(bundleDir, MANIFEST_NAME));
  } else {
    const copy = structuredClone(m) as Manifest & { exported?: ExportNote };
    copy.files = files;
    if (copy.core && coreFile && removed.includes(coreFile)) {
      copy.core = { ...copy.core, stored: false, file: null, reason: 'left out on export' };
    }
    if (opts.redact && copy.process?.cmdline) {
      const masked = redactCmdline(copy.process.cmdline);
      if (masked.some((a, i) => a !== copy.process!.cmdline![i])) redacted.push('process.cmdline');
      copy.process = { ...copy.process, cmdline: masked };
    }
    copy.exported = { at: new Date().toISOString(), host: hostname(), noCore: opts.noCore, redact: opts.redact, removed, redacted };
    manifestBytes = Buffer.from(`${JSON.stringify(copy, null, 2)}\n`);
  }
  // The manifest first: a reader can check every later file as it streams by.
  entries.unshift(bufferEntry(`${m.id}/${MANIFEST_NAME}`, manifestBytes, 0o640, new Date()));
  return { entries, total: entries.reduce((a, e) => a + e.size, 0) };
}

/** /proc/PID/cmdline bytes (NUL-separated, usually NUL-terminated) with secrets masked. */
function redactCmdlineFile(data: Buffer): Buffer {
  if (data.length === 0) return data;
  // latin1 maps bytes 1:1, so arguments that are not masked come back byte for byte.
  const text = data.toString('latin1');
  const terminated = text.endsWith('\0');
  const argv = (terminated ? text.slice(0, -1) : text).split('\0');
  const out = redactCmdline(argv).join('\0');
  return Buffer.from(terminated ? `${out}\0` : out, 'latin1');
}

function modeOf(f: FileEntry): number {
  const mode = Number.parseInt(f.mode, 8);
  // Never executable, never writable or readable by others once extracted elsewhere.
  return Number.isInteger(mode) ? (mode & 0o640) | 0o600 : 0o640;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Open a bundle file without following a symlink anywhere below the bundle directory. */
function openInBundle(bundleDir: string, rel: string): { fd: number; st: Stats } {
  const parts = rel.split('/');
  let dir = bundleDir;
  for (const p of parts.slice(0, -1)) {
    dir = join(dir, p);
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw new FlightboxError('STORE_CORRUPT', `${dir} is not a directory (a symbolic link?); refusing to export the bundle`);
  }
  const path = join(bundleDir, rel);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === 'EACCES' || errnoCode(err) === 'EPERM') throw new FlightboxError('PERMISSION', `cannot read ${path}: permission denied (run as root)`);
    if (errnoCode(err) === 'ELOOP') throw new FlightboxError('STORE_CORRUPT', `${path} is a symbolic link; refusing to export the bundle`);
    throw new FlightboxError('STORE_CORRUPT', `cannot read ${path}, listed in the bundle's manifest: ${messageOf(err)}`);
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new FlightboxError('STORE_CORRUPT', `${path} is not a regular file; refusing to export the bundle`);
  }
  return { fd, st };
}

function mismatch(bundleDir: string, f: FileEntry, what: string): FlightboxError {
  return new FlightboxError('STORE_CORRUPT', `${join(bundleDir, f.path)} does not match the bundle's manifest (${what}); the bundle is damaged, refusing to export it`);
}

function readVerified(bundleDir: string, f: FileEntry, max: number): { data: Buffer; mtime: Date } {
  const { fd, st } = openInBundle(bundleDir, f.path);
  try {
    if (st.size !== f.size) throw mismatch(bundleDir, f, `${st.size} bytes, the manifest says ${f.size}`);
    if (st.size > max) throw mismatch(bundleDir, f, `${st.size} bytes, more than the ${max} expected`);
    const data = Buffer.alloc(st.size);
    let n = 0;
    while (n < data.length) {
      const r = readSync(fd, data, n, data.length - n, n);
      if (r === 0) throw mismatch(bundleDir, f, 'shorter than its size');
      n += r;
    }
    if (sha256(data) !== f.sha256) throw mismatch(bundleDir, f, 'sha256 differs');
    return { data, mtime: st.mtime };
  } finally {
    closeSync(fd);
  }
}

function readVerbatim(path: string): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > MAX_MANIFEST_BYTES) throw new FlightboxError('STORE_CORRUPT', `${path} is not a regular file of at most ${MAX_MANIFEST_BYTES} bytes`);
    const data = Buffer.alloc(st.size);
    let n = 0;
    while (n < data.length) {
      const r = readSync(fd, data, n, data.length - n, n);
      if (r === 0) break;
      n += r;
    }
    return data.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function bufferEntry(name: string, data: Buffer, mode: number, mtime: Date): OutEntry {
  return {
    name, size: data.length, mode, mtime, compressed: false,
    chunks: async function* () { yield data; },
  };
}

/**
 * A bundle file streamed into the archive and hashed on the way: the manifest (already
 * written, first) promises its size and sha256, so a file that changed or rotted on disk
 * fails the export instead of producing an archive that does not verify.
 */
function fileEntry(bundleDir: string, name: string, f: FileEntry): OutEntry {
  const { fd, st } = openInBundle(bundleDir, f.path);
  closeSync(fd);
  if (st.size !== f.size) throw mismatch(bundleDir, f, `${st.size} bytes, the manifest says ${f.size}`);
  return {
    name, size: f.size, mode: modeOf(f), mtime: st.mtime, compressed: /\.(zst|gz|xz|bz2)$/.test(f.path),
    chunks: async function* () {
      const fh = await openAsync(join(bundleDir, f.path), constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const st2 = await fh.stat();
        if (!st2.isFile() || st2.ino !== st.ino || st2.dev !== st.dev) throw mismatch(bundleDir, f, 'replaced while exporting');
        const h = createHash('sha256');
        let pos = 0;
        while (pos < f.size) {
          // A fresh buffer per chunk: the consumer may still hold the previous one.
          const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, f.size - pos));
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          if (bytesRead === 0) throw mismatch(bundleDir, f, 'shorter than its size');
          const chunk = buf.subarray(0, bytesRead);
          h.update(chunk);
          pos += bytesRead;
          yield chunk;
        }
        if (h.digest('hex') !== f.sha256) throw mismatch(bundleDir, f, 'sha256 differs');
      } finally {
        await fh.close();
      }
    },
  };
}

/** ustar headers (pax where a name or size does not fit), data, padding, two zero blocks; gzip. */
async function writeTarGz(entries: OutEntry[], sink: Writable, progress: (n: number) => void): Promise<void> {
  async function* blocks(): AsyncGenerator<Buffer> {
    for (const e of entries) {
      const fields = { path: e.name, mode: e.mode, uid: 0, gid: 0, size: e.size, mtime: e.mtime, type: 'File' as const, uname: 'root', gname: 'root' };
      const header = Buffer.alloc(512);
      if (new Header(fields).encode(header)) yield new Pax({ path: e.name, size: e.size, mtime: e.mtime }).encode();
      yield header;
      let n = 0;
      for await (const chunk of e.chunks()) {
        n += chunk.length;
        if (n > e.size) throw new FlightboxError('STORE_CORRUPT', `${e.name} grew while being exported`);
        progress(chunk.length);
        yield chunk;
      }
      if (n !== e.size) throw new FlightboxError('STORE_CORRUPT', `${e.name} shrank while being exported`);
      if (e.size % 512 !== 0) yield Buffer.alloc(512 - (e.size % 512));
    }
    yield Buffer.alloc(1024);
  }
  await pipeline(Readable.from(blocks(), { objectMode: false }), zlib.createGzip({ level: 6 }), sink);
}

/** A zip with archiver, one entry at a time (each file is opened only while it is written). */
async function writeZip(entries: OutEntry[], sink: Writable, progress: (n: number) => void): Promise<void> {
  // Loaded only here: importing and tar.gz exports do not need archiver's dependency tree.
  const { ZipArchive } = await import('archiver');
  const archive = new ZipArchive({ zlib: { level: 6 } });
  const written = pipeline(archive, sink);
  // Keep `written` from being an unhandled rejection while we are still appending.
  written.catch(() => {});
  // If the output fails (ENOSPC), archiver never reports the entry it was writing nor
  // finishes: every wait below also ends when the pipeline fails.
  const outputFailed = new Promise<never>((_, reject) => { written.catch(reject); });
  outputFailed.catch(() => {});
  let current: Readable | null = null;
  let failed: unknown = null;
  archive.on('warning', (err: Error) => { failed ??= err; });
  try {
    for (const e of entries) {
      const source: Readable = Readable.from((async function* () {
        for await (const chunk of e.chunks()) {
          progress(chunk.length);
          yield chunk;
        }
      })(), { objectMode: false });
      current = source;
      const entered = once(archive, 'entry');
      archive.append(source, { name: e.name, mode: e.mode, date: e.mtime, store: e.compressed });
      await Promise.race([entered, outputFailed]);
      if (failed) throw failed;
    }
    current = null;
    await Promise.race([archive.finalize(), outputFailed]);
  } catch (err) {
    // Tear everything down: the source closes its file, `written` rejects (handled above).
    current?.destroy();
    archive.destroy();
    throw err;
  }
  await written;
}

// =======================================================================================
// Reading archives (for import): one walker per format, both strict, both feeding the same
// checks. A walker reports each entry; the visitor returns a sink for its data (or null to
// skip it) and may throw to refuse the archive.

export type EntryKind = 'file' | 'directory' | 'symlink' | 'hardlink' | 'character-device' | 'block-device' | 'fifo' | 'socket' | 'other';

interface RawEntry {
  path: string;
  kind: EntryKind;
  /** the format's own name for the type, for messages */
  typeName: string;
  size: number;
}

interface EntrySink {
  write(chunk: Buffer): void;
  end(): void;
}

type Visitor = (e: RawEntry) => EntrySink | null;

/** A refused archive: one sentence naming the archive and the problem. */
class ArchiveRefused extends FlightboxError {
  constructor(archive: string, problem: string) {
    super('ARCHIVE_INVALID', `refusing to import ${archive}: ${problem}`);
  }
}

/** Counts the bytes that really arrive for an entry against the size it declared. */
function countingSink(refuse: (p: string) => never, e: RawEntry, inner: EntrySink | null): EntrySink {
  let n = 0;
  return {
    write(chunk) {
      n += chunk.length;
      if (n > e.size) refuse(`entry ${quote(e.path)} holds more data than the ${e.size} bytes it declares`);
      inner?.write(chunk);
    },
    end() {
      if (n !== e.size) refuse(`entry ${quote(e.path)} holds ${n} bytes, not the ${e.size} it declares (truncated?)`);
      inner?.end();
    },
  };
}

/** zlib's own errors (bad data, truncated stream) carry codes like Z_DATA_ERROR. */
function isZlibError(err: unknown): boolean {
  return errnoCode(err)?.startsWith('Z_') === true;
}

const TAR_KINDS: Readonly<Record<string, EntryKind>> = {
  File: 'file', OldFile: 'file', ContiguousFile: 'file', Directory: 'directory', SymbolicLink: 'symlink', Link: 'hardlink',
  CharacterDevice: 'character-device', BlockDevice: 'block-device', FIFO: 'fifo',
};

/**
 * A .tar.gz: we gunzip (counting bytes against the limit) and feed node-tar's Parser in
 * strict mode. The decompressed stream must start with a ustar header (the Parser would
 * otherwise sniff and gunzip a second layer on its own, outside our byte count), and after
 * the end-of-archive marker only a little zero padding may follow.
 */
async function walkTarGz(io: FdIo, archive: string, maxBytes: number, visit: Visitor): Promise<void> {
  const refuse = (p: string): never => { throw new ArchiveRefused(archive, p); };
  let failure: unknown = null;
  const fail = (err: unknown) => { failure ??= err; };
  const guard = (fn: () => void) => {
    if (failure) return;
    try { fn(); } catch (err) { fail(err); }
  };
  let sawEof = false;
  const parser = new Parser({ strict: true, maxMetaEntrySize: MAX_TAR_META_BYTES });
  parser.on('error', (err: Error) => fail(new ArchiveRefused(archive, `it is not a valid tar archive (${messageOf(err).replace(/^TAR_\w+: /, '')})`)));
  parser.on('ignoredEntry', (e: ReadEntry) => fail(new ArchiveRefused(archive, `entry ${quote(e.path)} has an unsupported tar type (${e.type})`)));
  parser.on('eof', () => { sawEof = true; });
  parser.on('entry', (entry: ReadEntry) => {
    let sink: EntrySink | null = null;
    guard(() => {
      const raw: RawEntry = { path: entry.path, kind: TAR_KINDS[entry.type] ?? 'other', typeName: entry.type, size: entry.size ?? 0 };
      sink = countingSink(refuse, raw, visit(raw));
    });
    entry.on('data', (chunk: Buffer) => guard(() => sink?.write(chunk)));
    entry.on('end', () => guard(() => sink?.end()));
    if (!sink) entry.resume();
  });

  const input = io.source(0, Number.MAX_SAFE_INTEGER);
  const gunzip = zlib.createGunzip();
  pipelineCb(input, gunzip, () => {});
  let total = 0;
  let head: Buffer | null = Buffer.alloc(0);
  let trailing = 0;
  try {
    for await (const c of gunzip) {
      const chunk = c as Buffer;
      total += chunk.length;
      if (total > maxBytes) refuse(`it decompresses to more than ${maxBytes} bytes`);
      if (sawEof) {
        trailing += chunk.length;
        if (trailing > MAX_TAR_TRAILING_BYTES || chunk.some((b) => b !== 0)) refuse('it has data after the end of the tar archive');
        continue;
      }
      let data = chunk;
      if (head) {
        head = Buffer.concat([head, chunk]);
        if (head.length < 512) continue;
        if (head.subarray(257, 262).toString('latin1') !== 'ustar') refuse('it is not a tar archive inside the gzip layer (no ustar header)');
        data = head;
        head = null;
      }
      parser.write(data);
      if (failure) break;
    }
  } catch (err) {
    if (failure) throw failure;
    if (isZlibError(err)) throw new ArchiveRefused(archive, `it is not a valid gzip file (${messageOf(err)})`);
    throw err;
  }
  if (failure) throw failure;
  if (head) refuse(head.length === 0 ? 'it is empty inside the gzip layer' : 'it is not a tar archive inside the gzip layer (too short)');
  parser.end();
  if (failure) throw failure;
  if (!sawEof) refuse('it ends before the tar end-of-archive marker (truncated?)');
}

// --- zip -------------------------------------------------------------------------------
// A strict reader for the archives flightbox (archiver) writes, and other plain ones: the
// central directory is the index; every entry's local header must agree with it; entries
// may not overlap; stored or deflated only; no encryption, no multi-disk archives.

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

interface ZipEntry {
  raw: RawEntry;
  method: number;
  crc: number;
  compressedSize: number;
  localOffset: number;
  nameBytes: Buffer;
}

function readAt(fd: number, pos: number, len: number): Buffer {
  const buf = Buffer.alloc(len);
  let n = 0;
  while (n < len) {
    const r = readSync(fd, buf, n, len - n, pos + n);
    if (r === 0) break;
    n += r;
  }
  return buf.subarray(0, n);
}

function u64(buf: Buffer, off: number): number {
  const v = buf.readBigUInt64LE(off);
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}

const UNIX_KINDS: Readonly<Record<number, EntryKind>> = {
  0o100000: 'file', 0o040000: 'directory', 0o120000: 'symlink', 0o020000: 'character-device', 0o060000: 'block-device',
  0o010000: 'fifo', 0o140000: 'socket',
};

function readZipDirectory(fd: number, archive: string, fileSize: number, limits: ImportLimits): { entries: ZipEntry[]; cdOffset: number } {
  const refuse = (p: string): never => { throw new ArchiveRefused(archive, p); };
  // The end-of-central-directory record is in the last 22 + 65535 (comment) bytes; take the
  // one whose comment ends exactly at the end of the file.
  const tailLen = Math.min(fileSize, 22 + U16_MAX);
  const tail = readAt(fd, fileSize - tailLen, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) === tail.length) { eocd = i; break; }
  }
  if (eocd < 0) refuse('it is not a valid zip file (no end of central directory; truncated?)');
  const eocdPos = fileSize - tailLen + eocd;
  let diskNo = tail.readUInt16LE(eocd + 4);
  let cdDisk = tail.readUInt16LE(eocd + 6);
  let entriesOnDisk: number = tail.readUInt16LE(eocd + 8);
  let count: number = tail.readUInt16LE(eocd + 10);
  let cdSize: number = tail.readUInt32LE(eocd + 12);
  let cdOffset: number = tail.readUInt32LE(eocd + 16);
  let cdEnd = eocdPos;
  if (count === U16_MAX || cdSize === U32_MAX || cdOffset === U32_MAX || entriesOnDisk === U16_MAX) {
    // zip64: a locator just before the record points at the zip64 end of central directory.
    if (eocdPos < 20) refuse('it is not a valid zip file (zip64 locator missing)');
    const loc = readAt(fd, eocdPos - 20, 20);
    if (loc.length !== 20 || loc.readUInt32LE(0) !== SIG_EOCD64_LOCATOR) refuse('it is not a valid zip file (zip64 locator missing)');
    const pos64 = u64(loc, 8);
    const rec = readAt(fd, pos64, 56);
    if (rec.length !== 56 || rec.readUInt32LE(0) !== SIG_EOCD64 || pos64 + 56 > eocdPos - 20) refuse('it is not a valid zip file (bad zip64 end of central directory)');
    diskNo = rec.readUInt32LE(16);
    cdDisk = rec.readUInt32LE(20);
    entriesOnDisk = u64(rec, 24);
    count = u64(rec, 32);
    cdSize = u64(rec, 40);
    cdOffset = u64(rec, 48);
    cdEnd = pos64;
  }
  if (diskNo !== 0 || cdDisk !== 0 || entriesOnDisk !== count) refuse('it is a multi-disk zip archive');
  if (count > limits.maxEntries) refuse(`it has ${count} entries, more than the limit of ${limits.maxEntries}`);
  if (cdSize > MAX_ZIP_CENTRAL_DIRECTORY_BYTES) refuse(`its central directory is ${cdSize} bytes, more than ${MAX_ZIP_CENTRAL_DIRECTORY_BYTES}`);
  if (cdOffset + cdSize > cdEnd) refuse('it is not a valid zip file (central directory out of bounds)');
  const cd = readAt(fd, cdOffset, cdSize);
  if (cd.length !== cdSize) refuse('it is not a valid zip file (central directory truncated)');

  const entries: ZipEntry[] = [];
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) refuse(`it is not a valid zip file (central directory entry ${i + 1} is damaged)`);
    const madeBy = cd.readUInt16LE(p + 4);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let compressedSize: number = cd.readUInt32LE(p + 20);
    let size: number = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const disk = cd.readUInt16LE(p + 34);
    const external = cd.readUInt32LE(p + 38);
    let localOffset: number = cd.readUInt32LE(p + 42);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cd.length) refuse(`it is not a valid zip file (central directory entry ${i + 1} is damaged)`);
    const nameBytes = cd.subarray(p + 46, p + 46 + nameLen);
    let name: string;
    try {
      name = utf8.decode(nameBytes);
    } catch {
      refuse(`entry ${i + 1} has a name that is not UTF-8`);
    }
    // zip64 extra field: the 8-byte values, in this order, for each field that is 0xffffffff.
    const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
    for (let x = 0; x + 4 <= extra.length;) {
      const id = extra.readUInt16LE(x);
      const len = extra.readUInt16LE(x + 2);
      if (x + 4 + len > extra.length) refuse(`entry ${quote(name!)} has a damaged extra field`);
      if (id === 0x0001) {
        let q = x + 4;
        const next = (): number => {
          if (q + 8 > x + 4 + len) refuse(`entry ${quote(name!)} has a damaged zip64 field`);
          const v = u64(extra, q);
          q += 8;
          return v;
        };
        if (size === U32_MAX) size = next();
        if (compressedSize === U32_MAX) compressedSize = next();
        if (localOffset === U32_MAX) localOffset = next();
      }
      x += 4 + len;
    }
    if (disk !== 0) refuse(`entry ${quote(name!)} is on another disk of a multi-disk archive`);
    if (flags & 0x41) refuse(`entry ${quote(name!)} is encrypted`);
    let kind: EntryKind = name!.endsWith('/') ? 'directory' : 'file';
    let typeName: string = kind;
    if (madeBy >> 8 === 3) {
      // Made on Unix: the high 16 bits of the external attributes are st_mode.
      const fmt = (external >>> 16) & 0o170000;
      if (fmt !== 0) {
        kind = UNIX_KINDS[fmt] ?? 'other';
        typeName = `${kind} (mode ${(external >>> 16).toString(8)})`;
        if (kind === 'file' && name!.endsWith('/')) kind = 'other';
      }
    }
    if (kind === 'file' || kind === 'directory') {
      if (method !== 0 && method !== 8) refuse(`entry ${quote(name!)} uses compression method ${method} (only stored and deflated are read)`);
      if (method === 0 && compressedSize !== size) refuse(`entry ${quote(name!)} is stored with ${compressedSize} bytes but declares ${size}`);
    }
    entries.push({ raw: { path: name!, kind, typeName, size }, method, crc, compressedSize, localOffset, nameBytes });
    p = end;
  }
  if (p !== cd.length) refuse('it is not a valid zip file (central directory size does not match its entries)');
  return { entries, cdOffset };
}

/** Where an entry's data starts, after checking its local header against the central one. */
function zipDataRange(fd: number, archive: string, e: ZipEntry, limit: number): { start: number; end: number } {
  const refuse = (p: string): never => { throw new ArchiveRefused(archive, p); };
  const h = readAt(fd, e.localOffset, 30);
  if (h.length !== 30 || h.readUInt32LE(0) !== SIG_LOCAL) refuse(`entry ${quote(e.raw.path)} has no local header where the central directory says`);
  const nameLen = h.readUInt16LE(26);
  const extraLen = h.readUInt16LE(28);
  if (h.readUInt16LE(8) !== e.method) refuse(`entry ${quote(e.raw.path)} has a local header that disagrees with the central directory`);
  const localName = readAt(fd, e.localOffset + 30, nameLen);
  if (!localName.equals(e.nameBytes)) refuse(`entry ${quote(e.raw.path)} has a local header that disagrees with the central directory`);
  const start = e.localOffset + 30 + nameLen + extraLen;
  const end = start + e.compressedSize;
  if (end > limit) refuse(`entry ${quote(e.raw.path)} extends past the start of the central directory`);
  return { start, end };
}

const crc32: (data: Buffer, value: number) => number =
  (zlib as { crc32?: (data: Buffer, value?: number) => number }).crc32 ?? crc32Js;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32Js(data: Buffer, value: number): number {
  let c = ~value >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

async function walkZip(io: FdIo, archive: string, limits: ImportLimits, visit: Visitor): Promise<void> {
  const fd = io.fd;
  const refuse = (p: string): never => { throw new ArchiveRefused(archive, p); };
  const { entries, cdOffset } = readZipDirectory(fd, archive, fstatSync(fd).size, limits);
  const ranges = entries.map((e) => ({ e, ...zipDataRange(fd, archive, e, cdOffset) }));
  // Entries may not overlap (a classic zip bomb points many entries at the same bytes).
  const byOffset = [...ranges].sort((a, b) => a.e.localOffset - b.e.localOffset);
  for (let i = 1; i < byOffset.length; i++) {
    if (byOffset[i]!.e.localOffset < byOffset[i - 1]!.end) refuse(`entry ${quote(byOffset[i]!.e.raw.path)} overlaps another entry`);
  }
  for (const { e, start, end } of ranges) {
    const inner = visit(e.raw);
    if (!inner) continue;
    const sink = countingSink(refuse, e.raw, inner);
    let crc = 0;
    const feed = (chunk: Buffer) => {
      crc = crc32(chunk, crc);
      sink.write(chunk);
    };
    if (e.compressedSize > 0) {
      const src = io.source(start, end);
      if (e.method === 0) {
        for await (const c of src) feed(c as Buffer);
      } else {
        const inflate = zlib.createInflateRaw();
        pipelineCb(src, inflate, () => {});
        try {
          for await (const c of inflate) feed(c as Buffer);
        } catch (err) {
          if (isZlibError(err)) refuse(`entry ${quote(e.raw.path)} is not valid deflate data (${messageOf(err)})`);
          throw err;
        }
      }
    } else if (e.method === 8 && e.raw.size > 0) {
      refuse(`entry ${quote(e.raw.path)} declares ${e.raw.size} bytes but holds no data`);
    }
    sink.end();
    if (crc !== e.crc) refuse(`entry ${quote(e.raw.path)} fails its CRC check (damaged)`);
  }
}

// =======================================================================================
// Import

/** Checks every entry of one pass: count, path, type, top directory, sizes, duplicates. */
class EntryChecker {
  readonly #archive: string;
  readonly #limits: ImportLimits;
  #count = 0;
  #total = 0;
  top: string | null = null;
  readonly files = new Map<string, number>();
  readonly dirs = new Set<string>();

  constructor(archive: string, limits: ImportLimits) {
    this.#archive = archive;
    this.#limits = limits;
  }

  #refuse(problem: string): never {
    throw new ArchiveRefused(this.#archive, problem);
  }

  /** The entry's path relative to the top directory ('' for the top directory itself). */
  check(e: RawEntry): string {
    if (++this.#count > this.#limits.maxEntries) this.#refuse(`it has more than ${this.#limits.maxEntries} entries`);
    const path = e.kind === 'directory' && e.path.endsWith('/') ? e.path.slice(0, -1) : e.path;
    const problem = pathProblem(path);
    if (problem) this.#refuse(`entry ${quote(e.path)} ${problem}`);
    if (e.kind !== 'file' && e.kind !== 'directory') {
      this.#refuse(`entry ${quote(e.path)} is ${KIND_WORDS[e.kind]}${e.kind === 'other' ? ` (${e.typeName})` : ''}; only regular files and directories are accepted`);
    }
    const parts = path.split('/');
    const top = parts[0]!;
    if (parts.length === 1 && e.kind === 'file') this.#refuse(`entry ${quote(e.path)} is not inside a top directory`);
    if (this.top === null) {
      if (!isBundleId(top)) this.#refuse(`its top directory ${quote(top)} is not a flightbox event id`);
      this.top = top;
    } else if (top !== this.top) {
      this.#refuse(`entry ${quote(e.path)} is outside the top directory ${quote(this.top)} (an archive holds one event)`);
    }
    const rel = parts.slice(1).join('/');
    if (RESERVED_NAMES.has(rel)) this.#refuse(`entry ${quote(e.path)} has a reserved name`);
    if (e.kind === 'directory') {
      if (e.size !== 0) this.#refuse(`directory entry ${quote(e.path)} declares ${e.size} bytes of data`);
      if (this.files.has(rel)) this.#refuse(`entry ${quote(e.path)} is both a file and a directory`);
    } else {
      if (e.size > this.#limits.maxEntryBytes) this.#refuse(`entry ${quote(e.path)} declares ${e.size} bytes, more than the limit of ${this.#limits.maxEntryBytes} for one file`);
      this.#total += e.size;
      if (this.#total > this.#limits.maxTotalBytes) this.#refuse(`its entries declare more than the limit of ${this.#limits.maxTotalBytes} bytes in total`);
      if (this.files.has(rel)) this.#refuse(`entry ${quote(e.path)} appears twice`);
      if (this.dirs.has(rel)) this.#refuse(`entry ${quote(e.path)} is both a file and a directory`);
      this.files.set(rel, e.size);
    }
    // Every ancestor is a directory: none of them may also be a file.
    for (let i = 1; i < parts.length - (e.kind === 'file' ? 1 : 0); i++) {
      const d = parts.slice(1, i + 1).join('/');
      if (this.files.has(d)) this.#refuse(`entry ${quote(e.path)} is inside ${quote(`${top}/${d}`)}, which is a file`);
      this.dirs.add(d);
    }
    return rel;
  }
}

const KIND_WORDS: Readonly<Record<EntryKind, string>> = {
  file: 'a regular file', directory: 'a directory', symlink: 'a symbolic link', hardlink: 'a hard link',
  'character-device': 'a character device', 'block-device': 'a block device', fifo: 'a FIFO', socket: 'a socket',
  other: 'an entry of an unsupported type',
};

// --- the manifest of an imported bundle: every field other code relies on, checked -----

type Check = (v: unknown, at: string) => void;

class ManifestProblem extends Error {}

function bad(at: string, expected: string, v: unknown): never {
  const shown = JSON.stringify(v);
  throw new ManifestProblem(`${at}: expected ${expected}, got ${shown === undefined ? 'nothing' : shown.length > 80 ? `${shown.slice(0, 80)}…` : shown}`);
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str: Check = (v, at) => { if (typeof v !== 'string') bad(at, 'a string', v); };
const int: Check = (v, at) => { if (!Number.isSafeInteger(v)) bad(at, 'a whole number', v); };
const num: Check = (v, at) => { if (typeof v !== 'number' || !Number.isFinite(v)) bad(at, 'a number', v); };
const bool: Check = (v, at) => { if (typeof v !== 'boolean') bad(at, 'true or false', v); };
const nullable = (c: Check): Check => (v, at) => { if (v !== null) c(v, at); };
const optional = (c: Check): Check => (v, at) => { if (v !== undefined) c(v, at); };
const oneOf = (...values: unknown[]): Check => (v, at) => { if (!values.includes(v)) bad(at, values.map((x) => JSON.stringify(x)).join(' or '), v); };
const arrayOf = (c: Check): Check => (v, at) => {
  if (!Array.isArray(v)) bad(at, 'an array', v);
  (v as unknown[]).forEach((x, i) => c(x, `${at}[${i}]`));
};
const objectOf = (shape: Record<string, Check>): Check => (v, at) => {
  if (!isObj(v)) bad(at, 'an object', v);
  for (const [k, c] of Object.entries(shape)) c((v as Record<string, unknown>)[k], at ? `${at}.${k}` : k);
};
const recordOf = (c: Check): Check => (v, at) => {
  if (!isObj(v)) bad(at, 'an object', v);
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) c(x, `${at}.${k}`);
};
const matching = (re: RegExp, what: string): Check => (v, at) => { if (typeof v !== 'string' || !re.test(v)) bad(at, what, v); };
const safePath: Check = (v, at) => {
  str(v, at);
  const problem = pathProblem(v as string);
  if (problem) throw new ManifestProblem(`${at}: the path ${quote(v as string)} ${problem}`);
};

const MANIFEST_SHAPE = objectOf({
  version: oneOf(MANIFEST_VERSION),
  id: matching(/^\d{8}T\d{6}-\d{1,10}-[0-9a-f]{6}$/, 'a flightbox event id'),
  kind: oneOf('crash', 'snapshot'),
  time: str,
  timeMs: num,
  host: objectOf({ hostname: str, bootId: nullable(str), kernel: str, machineId: nullable(str) }),
  process: nullable(objectOf({
    pid: int, pidInNamespace: nullable(int), tid: nullable(int), tidInNamespace: nullable(int), ppid: nullable(int),
    uid: int, gid: int, signal: int, signalName: str, comm: nullable(str), exe: nullable(str), cmdline: nullable(arrayOf(str)),
    cwd: nullable(str), root: nullable(str), cgroup: nullable(str), unit: nullable(str), inContainer: nullable(bool),
    hostnameInNamespace: nullable(str), dumpable: nullable(int), rlimitCore: nullable(num), threads: nullable(int),
    fdCount: nullable(int),
  })),
  core: nullable(objectOf({
    stored: bool, file: nullable(safePath), compression: nullable(oneOf('zstd', 'gzip', 'none')), size: int, storedSize: int,
    truncated: bool, reason: nullable(str), limitBytes: nullable(num), sparseBytes: int, elf: bool,
  })),
  backtrace: nullable(objectOf({
    tool: nullable(str), file: nullable(safePath), crashingTid: nullable(int), threads: int,
    frames: arrayOf(objectOf({ fn: nullable(str), module: nullable(str), addr: nullable(str), source: nullable(str) })),
  })),
  signature: nullable(objectOf({ text: str, hash: matching(/^[0-9a-f]{1,128}$/, 'hex digits') })),
  modules: arrayOf(objectOf({ name: str, buildId: nullable(str), file: nullable(str) })),
  rule: nullable(str),
  reason: optional(nullable(str)),
  labels: optional(recordOf(str)),
  actions: optional(arrayOf(str)),
  recorders: optional(arrayOf(objectOf({ name: str, ok: bool, files: arrayOf(safePath), warnings: arrayOf(str), from: nullable(num), to: nullable(num) }))),
  warnings: arrayOf(str),
  timings: recordOf(num),
  files: arrayOf(objectOf({
    path: safePath, size: int, sha256: matching(/^[0-9a-f]{64}$/, '64 hex digits'), mode: matching(/^[0-7]{3,4}$/, 'an octal mode'),
  })),
  handler: objectOf({ version: str, pid: int }),
});

/** The manifest of an archive, parsed and checked; throws ManifestProblem naming the field. */
function checkManifest(text: Buffer): Manifest {
  let m: unknown;
  try {
    m = JSON.parse(text.toString('utf8'));
  } catch (err) {
    throw new ManifestProblem(`not valid JSON (${messageOf(err)})`);
  }
  MANIFEST_SHAPE(m, '');
  const manifest = m as Manifest;
  const listed = new Set<string>();
  manifest.files.forEach((f, i) => {
    if (f.path === MANIFEST_NAME || RESERVED_NAMES.has(f.path)) throw new ManifestProblem(`files[${i}]: ${quote(f.path)} cannot be a bundle file`);
    if (listed.has(f.path)) throw new ManifestProblem(`files[${i}]: ${quote(f.path)} is listed twice`);
    listed.add(f.path);
  });
  // Other commands open these by name (dump, debug, info): they must be files of the bundle.
  if (manifest.core?.file && !listed.has(manifest.core.file)) throw new ManifestProblem(`core.file: ${quote(manifest.core.file)} is not in the files list`);
  if (manifest.core?.stored && !manifest.core.file) throw new ManifestProblem('core.file: a stored core needs a file');
  if (manifest.backtrace?.file && !listed.has(manifest.backtrace.file)) throw new ManifestProblem(`backtrace.file: ${quote(manifest.backtrace.file)} is not in the files list`);
  return manifest;
}

export interface ImportResult {
  id: string;
  bundleDir: string;
  files: number;
  bytes: number;
  indexed: boolean;
  indexError?: string;
}

/** gzip or zip, from the first bytes (the name may lie; the content decides). */
function sniffFormat(fd: number, archive: string): ArchiveFormat {
  const head = readAt(fd, 0, 4);
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
  if (head.length === 4 && head.readUInt32LE(0) === SIG_LOCAL) return 'zip';
  if (head.length === 4 && head.readUInt32LE(0) === SIG_EOCD) throw new ArchiveRefused(archive, 'it is an empty zip file');
  throw new ArchiveRefused(archive, head.length === 0 ? 'it is empty' : 'it is neither a .tar.gz nor a .zip archive');
}

/**
 * Add the bundle in the archive at `archivePath` to `store`: two passes over the archive.
 * The first writes nothing: it checks every entry (type, path, size, count, one top
 * directory that is an event id), reads manifest.json and checks it against the entries.
 * The second extracts into a fresh staging directory (O_EXCL|O_NOFOLLOW, directories we
 * create ourselves), hashing every file against the manifest. Only then is the manifest
 * (with `imported`) written, the bundle published and indexed. Any failure removes the
 * staging directory.
 */
export async function importBundle(store: Store, archivePath: string, opts: { limits: ImportLimits; now?: () => Date }): Promise<ImportResult> {
  const archive = archivePath;
  const limits = opts.limits;
  let fd: number;
  try {
    fd = openSync(archivePath, constants.O_RDONLY);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new FlightboxError('NOT_FOUND', `${archivePath} does not exist`);
    throw new FlightboxError('USAGE', `cannot read ${archivePath}: ${messageOf(err)}`);
  }
  const io = new FdIo(fd);
  try {
    if (!fstatSync(fd).isFile()) throw new ArchiveRefused(archive, 'it is not a regular file');
    const format = sniffFormat(fd, archive);
    // Decompressed tar: every declared byte, plus headers and padding for every entry.
    const maxTarBytes = limits.maxTotalBytes + (limits.maxEntries + 4) * 3 * 1024 + MAX_TAR_TRAILING_BYTES;
    const walk = (visit: Visitor) => (format === 'tar.gz' ? walkTarGz(io, archive, maxTarBytes, visit) : walkZip(io, archive, limits, visit));
    const refuse = (p: string): never => { throw new ArchiveRefused(archive, p); };

    // Pass 1: check everything, write nothing.
    const first = new EntryChecker(archive, limits);
    const sequence: { path: string; size: number }[] = [];
    let manifestText: Buffer | null = null;
    await walk((e) => {
      const rel = first.check(e);
      sequence.push({ path: e.path, size: e.size });
      if (rel !== MANIFEST_NAME || e.kind !== 'file') return null;
      if (e.size > MAX_MANIFEST_BYTES) refuse(`its manifest.json is ${e.size} bytes, more than ${MAX_MANIFEST_BYTES}`);
      const parts: Buffer[] = [];
      return { write: (c) => parts.push(c), end: () => { manifestText = Buffer.concat(parts); } };
    });
    if (first.top === null) refuse('it holds no entries');
    const id = first.top!;
    if (!manifestText) refuse(`it has no ${id}/manifest.json`);
    let manifest: Manifest;
    try {
      manifest = checkManifest(manifestText!);
    } catch (err) {
      if (err instanceof ManifestProblem) refuse(`its manifest.json is not valid: ${err.message}`);
      throw err;
    }
    if (manifest!.id !== id) refuse(`its manifest.json is for event ${quote(manifest!.id)}, not ${quote(id)}`);
    const expected = new Map(manifest!.files.map((f) => [f.path, f]));
    for (const [rel, size] of first.files) {
      if (rel === MANIFEST_NAME) continue;
      const f = expected.get(rel);
      if (!f) refuse(`entry ${quote(`${id}/${rel}`)} is not listed in its manifest.json`);
      if (f!.size !== size) refuse(`entry ${quote(`${id}/${rel}`)} is ${size} bytes but its manifest.json says ${f!.size}`);
    }
    for (const f of manifest!.files) {
      if (!first.files.has(f.path)) refuse(`its manifest.json lists ${quote(f.path)} but the archive does not hold ${quote(`${id}/${f.path}`)}`);
    }
    if (store.index().get(id)) throw new FlightboxError('ARCHIVE_INVALID', `refusing to import ${archive}: event ${id} is already in this store`);
    if (exists(store.bundleDir(id))) throw new FlightboxError('ARCHIVE_INVALID', `refusing to import ${archive}: event ${id} is already in this store (${store.bundleRel(id)}; run flightbox reindex)`);

    // Pass 2: extract into staging, verifying as we go.
    let staging: string;
    try {
      staging = store.createStaging(id);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') throw new FlightboxError('ARCHIVE_INVALID', `refusing to import ${archive}: event ${id} is being imported or captured right now`);
      throw err;
    }
    // Open files of the extraction in progress, closed on any failure.
    const cleanups: (() => void)[] = [];
    try {
      const second = new EntryChecker(archive, limits);
      const made = new Set<string>(['']);
      const ensureDir = (rel: string) => {
        if (made.has(rel)) return;
        ensureDir(rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '');
        mkdirSync(inside(staging, rel), { mode: 0o700 });
        made.add(rel);
      };
      let index = 0;
      let bytes = 0;
      const written = new Set<string>();
      await walk((e) => {
        const rel = second.check(e);
        const was = sequence[index++];
        if (!was || was.path !== e.path || was.size !== e.size) refuse('it changed while being read');
        if (e.kind === 'directory') {
          if (rel !== '') ensureDir(rel);
          return null;
        }
        if (rel === MANIFEST_NAME) {
          const h = createHash('sha256');
          const want = sha256(manifestText!);
          return { write: (c) => h.update(c), end: () => { if (h.digest('hex') !== want) refuse('it changed while being read'); } };
        }
        const f = expected.get(rel)!;
        if (rel.includes('/')) ensureDir(rel.slice(0, rel.lastIndexOf('/')));
        const mode = modeOf(f);
        const fd2 = openSync(inside(staging, rel), CREATE_FLAGS, mode);
        const h = createHash('sha256');
        let closed = false;
        const close = () => { if (!closed) { closed = true; closeSync(fd2); } };
        cleanups.push(close);
        return {
          write(c) {
            h.update(c);
            for (let off = 0; off < c.length;) off += writeSync(fd2, c, off, c.length - off);
            bytes += c.length;
          },
          end() {
            fsyncSync(fd2);
            close();
            const sum = h.digest('hex');
            if (sum !== f.sha256) refuse(`entry ${quote(e.path)} does not match its manifest.json (sha256 ${sum.slice(0, 12)}…, expected ${f.sha256.slice(0, 12)}…)`);
            f.mode = mode.toString(8);
            written.add(rel);
          },
        };
      });
      for (const f of manifest!.files) if (!written.has(f.path)) refuse(`it changed while being read (${quote(f.path)} missing)`);
      for (const close of cleanups.splice(0)) close();

      const at = (opts.now ?? (() => new Date()))();
      const out = { ...manifest!, imported: { from: basename(archivePath), at: at.toISOString() } };
      writeFileExclusive(staging, MANIFEST_NAME, `${JSON.stringify(out, null, 2)}\n`, 0o640);
      for (const d of [...made].sort((a, b) => b.length - a.length)) fsyncDir(inside(staging, d));
      let bundleDir: string;
      try {
        bundleDir = store.publish(id, staging);
      } catch (err) {
        // Someone published the same event since we checked (another import, a reindex).
        if (errnoCode(err) === 'ENOTEMPTY' || errnoCode(err) === 'EEXIST') {
          throw new FlightboxError('ARCHIVE_INVALID', `refusing to import ${archive}: event ${id} is already in this store`);
        }
        throw err;
      }
      const ix = store.indexBundle(out);
      return { id, bundleDir, files: manifest!.files.length, bytes, indexed: ix.indexed, ...(ix.error ? { indexError: ix.error } : {}) };
    } catch (err) {
      for (const close of cleanups.splice(0)) {
        try { close(); } catch { /* already failing */ }
      }
      rmSync(staging, { recursive: true, force: true });
      throw err;
    }
  } finally {
    await io.idle();
    closeSync(fd);
  }
}

/** `rel` under `root`, after a last check that it really is below it (node-tar's habit). */
function inside(root: string, rel: string): string {
  const base = resolve(root);
  const p = resolve(base, rel);
  if (p !== base && !p.startsWith(base + sep)) throw new FlightboxError('INTERNAL', `refusing a path outside the staging directory: ${quote(rel)}`);
  return p;
}
