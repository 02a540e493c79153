// manifest.json: what happened and what the bundle holds. Written last, before the bundle
// is published; every other file is listed with its size and sha256 so that a copy
// (an archive, a mail attachment) can be verified.
import { closeSync, openSync, readSync, readdirSync, lstatSync, readFileSync, constants } from 'node:fs';
import { hostname, machine, release } from 'node:os';
import { join } from 'node:path';
import { builtin } from '../lib/builtin.js';
import { readChunks } from '../lib/chunks.js';
import { FlightboxError, messageOf } from '../lib/errors.js';

/** What the handler's loader did with V8's code cache (handler/start.ts). */
export type CodeCacheState = 'used' | 'made' | 'rejected' | 'off';

export const MANIFEST_NAME = 'manifest.json';
export const MANIFEST_VERSION = 1;
export const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;

export interface FileEntry {
  path: string;
  size: number;
  sha256: string;
  mode: string;
}

export interface CrashProcess {
  pid: number;
  pidInNamespace: number | null;
  tid: number | null;
  tidInNamespace: number | null;
  ppid: number | null;
  uid: number;
  gid: number;
  signal: number;
  signalName: string;
  comm: string | null;
  exe: string | null;
  cmdline: string[] | null;
  cwd: string | null;
  root: string | null;
  cgroup: string | null;
  unit: string | null;
  namespaces: Record<string, string>;
  inContainer: boolean | null;
  hostnameInNamespace: string | null;
  dumpable: number | null;
  rlimitCore: number | null;
  threads: number | null;
  fdCount: number | null;
  startTimeTicks: number | null;
  procVerified: boolean;
}

export interface CoreInfo {
  stored: boolean;
  file: string | null;
  compression: 'zstd' | 'gzip' | 'none' | null;
  /** uncompressed bytes stored (after any truncation) */
  size: number;
  storedSize: number;
  truncated: boolean;
  /** why the core is missing or cut: "rlimit", "maxSize", "empty", "write-error", ... */
  reason: string | null;
  limitBytes: number | null;
  sparseBytes: number;
  elf: boolean;
}

export interface RecorderSummary {
  name: string;
  ok: boolean;
  /** files relative to the bundle */
  files: string[];
  warnings: string[];
  from: number | null;
  to: number | null;
}

export interface Manifest {
  version: number;
  id: string;
  kind: 'crash' | 'snapshot';
  time: string;
  timeMs: number;
  capturedAt: string;
  /** arch: uname -m (x86_64, aarch64): the system-call numbers of a trace depend on it (absent in older bundles) */
  host: { hostname: string; bootId: string | null; kernel: string; machineId: string | null; arch?: string };
  process: CrashProcess | null;
  core: CoreInfo | null;
  backtrace: {
    tool: string | null;
    file: string | null;
    crashingTid: number | null;
    frames: { fn: string | null; module: string | null; addr: string | null; source: string | null }[];
    threads: number;
  } | null;
  signature: { text: string; hash: string } | null;
  modules: { name: string; buildId: string | null; file: string | null }[];
  rule: string | null;
  /** why a snapshot was taken ("SIGUSR1", "flightbox snapshot --reason ...") */
  reason?: string | null;
  /** a rule's labels: named groups of a matched line, the pid of a threshold, the crash id… */
  labels?: Record<string, string>;
  /** the actions the rule asked for, in order ("snapshot", "collect", "exec /usr/local/bin/hook", "mail a@b") */
  actions?: string[];
  /** the flight-recorder snapshots in recorder/<name>/ */
  recorders?: RecorderSummary[];
  warnings: string[];
  timings: Record<string, number>;
  files: FileEntry[];
  /**
   * codeCache: whether the handler's compiled code came from its cache (handler/start.ts):
   * used, made (none yet), rejected (stale), off (no cache directory); absent when unbundled.
   */
  /** overflow: recorded by the launcher's crash-storm path (handler/overflow.ts), pid is the launcher's. */
  /**
   * launcher: the launcher copied /proc before node started (handler/install.ts) and either
   * released the process (it read the whole core, or none was to be kept) or read the core's
   * first part, node the rest.
   * pipeBytes: the size the launcher gave the core's pipe, for a core longer than its first part
   * (core.pipeBuffer); absent: the kernel's 64 KiB.
   * daemon: the launcher read the whole core and handed the crash to the running daemon
   * (daemon/crash-taker.ts), which made the bundle; pid is the daemon's. No node was started.
   */
  handler: { version: string; pid: number; codeCache?: CodeCacheState; overflow?: true; launcher?: 'released' | 'prefix'; pipeBytes?: number; daemon?: true };
}

/** The host part of a manifest: read once per event. */
export function hostInfo(): Manifest['host'] {
  const small = (path: string): string | null => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return null;
    }
  };
  return { hostname: hostname(), bootId: small('/proc/sys/kernel/random/boot_id'), kernel: release(), machineId: small('/etc/machine-id'), arch: machine() };
}

export function sha256File(path: string): string {
  const h = builtin('node:crypto').createHash('sha256');
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

/** A file's sha256 worked out while it was written, and how many bytes it covers. */
export interface KnownHash {
  sha256: string;
  bytes: number;
}

/**
 * The sha256 of a file another process is appending to (zstd writing a compressed core),
 * read as it grows, so that hashing runs beside the writing instead of after it (a GiB
 * takes ~1.4 s to hash here). `finished` settles when the writer is done; the file is then
 * read to its end. The caller checks `bytes` against the final size.
 */
export async function sha256Growing(path: string, finished: Promise<unknown>): Promise<KnownHash> {
  const h = builtin('node:crypto').createHash('sha256');
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const bytes = await readChunks(fd, { onChunk: (c) => h.update(c), until: finished });
    return { sha256: h.digest('hex'), bytes };
  } finally {
    closeSync(fd);
  }
}

/**
 * Every regular file under `dir` (recursively), except the manifest, with size and sha256.
 * `known`: hashes already worked out, by path in the bundle; used when they cover the whole file.
 */
export function listBundleFiles(dir: string, prefix = '', known: ReadonlyMap<string, KnownHash> = new Map()): FileEntry[] {
  const out: FileEntry[] = [];
  for (const name of readdirSync(dir).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    if (rel === MANIFEST_NAME) continue;
    const full = join(dir, name);
    const st = lstatSync(full);
    if (st.isDirectory()) out.push(...listBundleFiles(full, rel, known));
    else if (st.isFile()) {
      const k = known.get(rel);
      const sha256 = k !== undefined && k.bytes === st.size ? k.sha256 : sha256File(full);
      out.push({ path: rel, size: st.size, sha256, mode: (st.mode & 0o777).toString(8) });
    }
  }
  return out;
}

export function readManifest(bundleDir: string): Manifest {
  const path = join(bundleDir, MANIFEST_NAME);
  let text: string;
  try {
    const st = lstatSync(path);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_MANIFEST_BYTES) throw new Error(`too large (${st.size} bytes)`);
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FlightboxError('STORE_CORRUPT', `cannot read ${path}: ${messageOf(err)}`);
  }
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (err) {
    throw new FlightboxError('STORE_CORRUPT', `${path} is not valid JSON: ${messageOf(err)}`);
  }
  if (typeof m !== 'object' || m === null || (m as Manifest).version !== MANIFEST_VERSION || typeof (m as Manifest).id !== 'string') {
    throw new FlightboxError('STORE_CORRUPT', `${path} is not a flightbox manifest (version ${MANIFEST_VERSION})`);
  }
  return m as Manifest;
}
