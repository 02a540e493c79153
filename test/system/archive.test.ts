// flightbox export and import, end to end: real bundles (the handler driven as the kernel
// drives it, with gcore cores of live processes; core_pattern is never touched), the real
// CLI spawned, archives read back with the system tar and unzip. Hostile archives are built
// in code, each test named after its attack; every one must be refused in one sentence and
// leave nothing in the receiving store.
import { spawnSync } from 'node:child_process';
import {
  closeSync, existsSync, ftruncateSync, lstatSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync,
  statSync, writeFileSync, writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { ZipArchive } from 'archiver';
import { Header } from 'tar';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CLI, makeTempStore, readJson, runCli, type RunResult, type TempStore } from '../helpers.js';
import {
  compileWaiter, expectOneSentence, gcore, kernelArgs, runHandler, sha256, startProcess, stopAll, stopProcess,
} from './procs.js';

const SECRET_ARG = 'hunter2';
const SECRET_TOKEN = 'abc123tok';
const SECRET_URL_PASSWORD = 'urlpw77';
const SECRET_ENV = 'envsecret42';

interface FileJson { path: string; size: number; sha256: string; mode: string }
interface ManifestJson {
  id: string;
  host: { hostname: string };
  process: { cmdline: string[] | null } | null;
  core: { stored: boolean; file: string | null; reason: string | null; size: number } | null;
  backtrace: { file: string | null } | null;
  files: FileJson[];
  exported?: { noCore: boolean; redact: boolean; removed: string[]; redacted: string[]; host: string; at: string };
  imported?: { from: string; at: string };
  [k: string]: unknown;
}

// ---------------------------------------------------------------------------------------
// Real bundles: a live process, its gcore, the handler fed as the kernel feeds it.

let work: string;
let waiter: string;

const HOST = 'fbx-archive-host'; // %h, as the handler is told it

interface EventJson { id: string; bundle: string; core: string }

function listJson(s: TempStore): EventJson[] {
  const r = runCli(['--config', s.configPath, 'list', '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as EventJson[];
}

// ---------------------------------------------------------------------------------------
// Reading archives back with the system tools.

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** The archive's entries as the system tool lists them: [type char, name]. */
function listArchive(path: string): { type: string; name: string }[] {
  if (path.endsWith('.zip')) {
    // zipinfo: "-rw-r-----  3.0 unx     1234 bx defN 26-Nov-26 06:54 ID/manifest.json"
    return sh('unzip', ['-Z', path]).split('\n').filter((l) => /^[-dlcbps?][rwx-]{9}/.test(l))
      .map((l) => ({ type: l[0]!, name: l.split(/\s+/).slice(8).join(' ') }));
  }
  // tar: "-rw-r----- root/root 1234 2026-11-26 06:54 ID/manifest.json"
  return sh('tar', ['-tvzf', path]).split('\n').filter((l) => l !== '')
    .map((l) => ({ type: l[0]!, name: l.split(/\s+/).slice(5).join(' ') }));
}

function extract(path: string): string {
  const dest = mkdtempSync(join(work, 'x-'));
  if (path.endsWith('.zip')) sh('unzip', ['-q', path, '-d', dest]);
  else sh('tar', ['-xzf', path, '-C', dest, '--no-same-owner']);
  return dest;
}

function walk(dir: string, prefix = ''): { rel: string; kind: string }[] {
  const out: { rel: string; kind: string }[] = [];
  for (const name of readdirSync(dir).sort()) {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(dir, name));
    if (st.isDirectory()) out.push(...walk(join(dir, name), rel));
    else out.push({ rel, kind: st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : 'other' });
  }
  return out;
}

/**
 * An exported archive as a receiver sees it: one top directory named after the id, only
 * regular files, and every file listed in its manifest with the right size and sha256.
 */
function checkArchive(path: string, id: string): { dir: string; m: ManifestJson; names: string[] } {
  const listed = listArchive(path);
  expect(listed.length).toBeGreaterThan(1);
  for (const e of listed) {
    expect(e.type, e.name).toBe('-');
    expect(e.name.startsWith(`${id}/`), e.name).toBe(true);
    expect(e.name.split('/')).not.toContain('..');
  }
  const dest = extract(path);
  expect(readdirSync(dest)).toEqual([id]);
  const dir = join(dest, id);
  const tree = walk(dir);
  for (const f of tree) expect(f.kind, f.rel).toBe('file');
  const m = readJson<ManifestJson>(join(dir, 'manifest.json'));
  expect(m.id).toBe(id);
  expect(tree.map((f) => f.rel).filter((r) => r !== 'manifest.json').sort()).toEqual(m.files.map((f) => f.path).sort());
  for (const f of m.files) {
    const data = readFileSync(join(dir, f.path));
    expect(data.length, f.path).toBe(f.size);
    expect(sha256(data), f.path).toBe(f.sha256);
  }
  return { dir, m, names: listed.map((e) => e.name) };
}

// ---------------------------------------------------------------------------------------

let A: TempStore; // the exporting store, one crash with secrets in its cmdline and environ
let id: string;
let bundleA: string;
let manifestA: ManifestJson;

beforeAll(async () => {
  if (!existsSync('/usr/bin/unzip') && spawnSync('sh', ['-c', 'command -v unzip']).status !== 0) {
    throw new Error('these tests need unzip (apt-get install -y unzip)');
  }
  work = mkdtempSync(join(tmpdir(), 'fbx-arch-'));
  waiter = compileWaiter(work);

  A = makeTempStore();
  const p = await startProcess(waiter, ['fbxsecret', `--password=${SECRET_ARG}`, '--token', SECRET_TOKEN, `postgres://app:${SECRET_URL_PASSWORD}@db/x`, 'plain-arg'],
    'fbxsecret', { env: { ...process.env, FBX_API_TOKEN: SECRET_ENV } });
  try {
    const core = gcore(p.pid, join(work, 'core'));
    expect((await runHandler(A.configPath, kernelArgs({ pid: p.pid, host: HOST }), core)).code).toBe(0);
  } finally {
    stopProcess(p);
  }
  const rows = listJson(A);
  expect(rows).toHaveLength(1);
  id = rows[0]!.id;
  bundleA = join(A.root, rows[0]!.bundle);
  manifestA = readJson<ManifestJson>(join(bundleA, 'manifest.json'));
  // The premise of the redaction tests: the secrets really are in the bundle.
  expect(readFileSync(join(bundleA, 'proc/cmdline'), 'latin1')).toContain(SECRET_ARG);
  expect(readFileSync(join(bundleA, 'proc/environ'), 'latin1')).toContain(SECRET_ENV);
  expect(manifestA.core?.file).toBe('core.zst');
});

afterAll(() => {
  stopAll();
  A?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

function exportA(args: string[]): RunResult {
  return runCli(['--config', A.configPath, 'export', id, ...args]);
}

describe('flightbox export', () => {
  test.each(['tar.gz', 'tgz', 'zip'])('.%s: one top directory named after the id, only regular files, every file matches the manifest', (ext) => {
    const out = join(work, `plain.${ext}`);
    const r = exportA(['-o', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`^Wrote ${id} to `));
    expect(r.stderr).not.toContain('\r'); // never a progress bar when stderr is not a terminal
    const { dir, m } = checkArchive(out, id);
    // Nothing left out or changed: the manifest travels byte for byte, with the core.
    expect(readFileSync(join(dir, 'manifest.json')).equals(readFileSync(join(bundleA, 'manifest.json')))).toBe(true);
    expect(m.files.map((f) => f.path)).toContain('core.zst');
    expect(m.files.map((f) => f.path)).toContain('proc/environ');
    expect(statSync(out).mode & 0o777).toBe(0o600);
    // No temporary file left next to the output.
    expect(readdirSync(work).filter((n) => n.endsWith('.part'))).toEqual([]);
  });

  test('--no-core leaves the core out and the manifest says so', () => {
    const out = join(work, 'nocore.tar.gz');
    const r = exportA(['-o', out, '--no-core']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/without the core/);
    const { m, names } = checkArchive(out, id);
    expect(names.some((n) => /\/core(\.zst|\.gz)?$/.test(n))).toBe(false);
    expect(m.files.map((f) => f.path)).not.toContain('core.zst');
    expect(m.core).toMatchObject({ stored: false, file: null, reason: 'left out on export', size: manifestA.core!.size });
    expect(m.exported).toMatchObject({ noCore: true, redact: false, removed: ['core.zst'], redacted: [] });
    // Everything else is as in the store.
    expect(m.files).toEqual(manifestA.files.filter((f) => f.path !== 'core.zst'));
  });

  test('--redact drops proc/environ and masks the secrets in the cmdline (file and manifest)', () => {
    const out = join(work, 'redacted.zip');
    const r = exportA(['-o', out, '--redact', '--no-core']);
    expect(r.code, r.stderr).toBe(0);
    const { dir, m, names } = checkArchive(out, id);
    expect(names).not.toContain(`${id}/proc/environ`);
    expect(existsSync(join(dir, 'proc/environ'))).toBe(false);
    const argv = readFileSync(join(dir, 'proc/cmdline'), 'latin1').replace(/\0$/, '').split('\0');
    expect(argv).toEqual([waiter, 'fbxsecret', '--password=***', '--token', '***', 'postgres://app:***@db/x', 'plain-arg']);
    expect(m.process?.cmdline).toEqual(argv);
    expect(m.exported).toMatchObject({ noCore: true, redact: true, removed: expect.arrayContaining(['core.zst', 'proc/environ']), redacted: ['proc/cmdline', 'process.cmdline'] });
    // No file of the archive holds any of the secrets any more.
    for (const f of walk(dir)) {
      const text = readFileSync(join(dir, f.rel), 'latin1');
      for (const secret of [SECRET_ARG, SECRET_TOKEN, SECRET_URL_PASSWORD, SECRET_ENV]) expect(text, `${f.rel} holds ${secret}`).not.toContain(secret);
    }
  });

  test('--redact with the core: the core stays, and the command says it is not redacted', () => {
    const out = join(work, 'redacted-core.tar.gz');
    const r = exportA(['-o', out, '--redact']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/the core holds the process memory/);
    const { m } = checkArchive(out, id);
    expect(m.files.map((f) => f.path)).toContain('core.zst');
    expect(m.core).toMatchObject({ stored: true, file: 'core.zst' });
    expect(m.exported).toMatchObject({ noCore: false, redact: true, removed: ['proc/environ'] });
  });

  test('an existing output is refused without --force (exit 2, untouched) and replaced with it', () => {
    const out = join(work, 'exists.tar.gz');
    writeFileSync(out, 'precious');
    expectOneSentence(exportA(['-o', out]), 2, /already exists.*--force/);
    expect(readFileSync(out, 'utf8')).toBe('precious');
    const r = exportA(['-o', out, '--force']);
    expect(r.code, r.stderr).toBe(0);
    checkArchive(out, id);
    expect(readdirSync(work).filter((n) => n.endsWith('.part'))).toEqual([]);
  });

  test.each(['out.rar', 'out.tar', 'out', 'out.gz'])('an output named %s is refused: exit 2, one sentence, nothing written', (name) => {
    const out = join(work, name);
    expectOneSentence(exportA(['-o', out]), 2, /\.tar\.gz.*\.tgz.*\.zip/);
    expect(existsSync(out)).toBe(false);
  });

  test.each(['tar.gz', 'zip'])('a full filesystem (a 16 KiB tmpfs): .%s fails in one sentence, no half archive, no temporary file', (ext) => {
    expect(statSync(join(work, `plain.${ext}`)).size).toBeGreaterThan(64 * 1024);
    const full = mkdtempSync(join(work, 'full-'));
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16k,mode=0700', 'fbx-full', full], { encoding: 'utf8' });
    expect(m.status, `mount tmpfs: ${m.stderr}`).toBe(0);
    try {
      const out = join(full, `out.${ext}`);
      expectOneSentence(exportA(['-o', out]), 1, /cannot write .*no space left on device/i);
      expect(readdirSync(full)).toEqual([]);
    } finally {
      spawnSync('umount', [full]);
    }
  });

  test('an unknown id: exit 3', () => {
    expectOneSentence(runCli(['--config', A.configPath, 'export', '19990101T000000-1-abcdef', '-o', join(work, 'none.zip')]), 3);
  });

  test('a progress bar on a terminal for a large bundle, and none when stderr is not a terminal', async () => {
    // A 16 MiB uncompressed core: big enough for the bar.
    const P = makeTempStore('core:\n  compress: none\nbacktrace:\n  tool: none\n');
    try {
      const input = join(P.dir, 'big.core');
      const fd = openSync(input, 'w');
      writeSync(fd, readFileSync(join(work, readdirSync(work).find((n) => n.startsWith('core.'))!)).subarray(0, 4096));
      ftruncateSync(fd, 16 * 1024 * 1024);
      closeSync(fd);
      const p = await startProcess(waiter, [], 'fbxwaiter');
      try {
        expect((await runHandler(P.configPath, kernelArgs({ pid: p.pid, host: HOST }), input)).code).toBe(0);
      } finally {
        stopProcess(p);
      }
      const [row] = listJson(P);
      const out = join(P.dir, 'big.tar.gz');
      const cmd = [process.execPath, CLI, '--config', P.configPath, 'export', row!.id, '-o', out].map((a) => `'${a}'`).join(' ');
      const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 120_000 });
      expect(tty.status, tty.stdout).toBe(0);
      expect(tty.stdout).toMatch(/Exporting \S+ \[[#.]{30}\]\s+\d+%/);
      expect(tty.stdout).toContain('100%');
      checkArchive(out, row!.id);
      const plain = runCli(['--config', P.configPath, 'export', row!.id, '-o', join(P.dir, 'big2.zip')]);
      expect(plain.code, plain.stderr).toBe(0);
      expect(plain.stderr).not.toMatch(/\r|%/);
    } finally {
      P.cleanup();
    }
  });
});

// ---------------------------------------------------------------------------------------

function importInto(s: TempStore, file: string): RunResult {
  return runCli(['--config', s.configPath, 'import', file]);
}

/** manifest.files lists exactly the files on disk, with their real size and sha256. */
function verifyBundle(dir: string, m: ManifestJson): void {
  expect(walk(dir).map((f) => f.rel).filter((r) => r !== 'manifest.json').sort()).toEqual(m.files.map((f) => f.path).sort());
  for (const f of m.files) {
    const data = readFileSync(join(dir, f.path));
    expect(data.length, f.path).toBe(f.size);
    expect(sha256(data), f.path).toBe(f.sha256);
    expect((statSync(join(dir, f.path)).mode & 0o777).toString(8), f.path).toBe(f.mode);
  }
}

function dumpSha(s: TempStore, eventId: string): string {
  const out = join(s.dir, `dump-${Math.random().toString(36).slice(2)}`);
  const r = runCli(['--config', s.configPath, 'dump', eventId, '-o', out]);
  expect(r.code, r.stderr).toBe(0);
  const h = sha256(readFileSync(out));
  rmSync(out);
  return h;
}

describe('flightbox import', () => {
  test('export from store A, import into a new store B: list, info and dump show the same event', () => {
    const B = makeTempStore();
    try {
      const out = join(work, 'to-b.tar.gz');
      expect(exportA(['-o', out]).code).toBe(0);
      expect(existsSync(B.root)).toBe(false);
      const r = importInto(B, out);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${id}\n`);
      expect(r.stderr).toMatch(new RegExp(`^Imported ${id} from to-b\\.tar\\.gz`));

      const rows = listJson(B);
      expect(rows.map((x) => x.id)).toEqual([id]);
      expect(rows[0]!.core).toBe('present');
      const info = runCli(['--config', B.configPath, 'info', id]);
      expect(info.code, info.stderr).toBe(0);
      expect(info.stdout).toContain(id);
      expect(info.stdout).toContain('fbxsecret');
      expect(dumpSha(B, id)).toBe(dumpSha(A, id));

      const dir = join(B.root, rows[0]!.bundle);
      const m = readJson<ManifestJson>(join(dir, 'manifest.json'));
      expect(m.host).toEqual(manifestA.host); // the original host, not ours
      expect(m.imported).toEqual({ from: 'to-b.tar.gz', at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
      const { imported: _i, ...rest } = m;
      expect(rest).toEqual(manifestA);
      verifyBundle(dir, m);
      expect(readdirSync(join(B.root, 'staging'))).toEqual([]);

      // The same archive again: refused, clearly, and the first import is untouched.
      expectOneSentence(importInto(B, out), 65, new RegExp(`${id} is already in this store`));
      expect(listJson(B)).toHaveLength(1);
      expect(readdirSync(join(B.root, 'staging'))).toEqual([]);
    } finally {
      B.cleanup();
    }
  });

  test('a .zip export made with --no-core --redact imports and verifies; dump says the core was left out', () => {
    const B = makeTempStore();
    try {
      const out = join(work, 'to-b.zip');
      expect(exportA(['-o', out, '--no-core', '--redact']).code).toBe(0);
      const r = importInto(B, out);
      expect(r.code, r.stderr).toBe(0);
      const [row] = listJson(B);
      expect(row).toMatchObject({ id, core: 'none' });
      const m = readJson<ManifestJson>(join(B.root, row!.bundle, 'manifest.json'));
      expect(m.exported).toMatchObject({ noCore: true, redact: true });
      expect(m.process?.cmdline).toContain('--password=***');
      verifyBundle(join(B.root, row!.bundle), m);
      expectOneSentence(runCli(['--config', B.configPath, 'dump', id, '-o', join(B.dir, 'core')]), 3, /left out on export/);
    } finally {
      B.cleanup();
    }
  });

  test('a zip64 archive (as archiver writes for big bundles) imports', async () => {
    const B = makeTempStore();
    try {
      const src = extract(join(work, 'plain.tar.gz'));
      const out = join(work, 'zip64.zip');
      const archive = new ZipArchive({ forceZip64: true });
      const chunks: Buffer[] = [];
      archive.on('data', (c: Buffer) => chunks.push(c));
      const ended = new Promise((resolve) => archive.on('end', resolve));
      for (const f of walk(join(src, id))) archive.append(readFileSync(join(src, id, f.rel)), { name: `${id}/${f.rel}`, mode: 0o640 });
      await archive.finalize();
      await ended;
      writeFileSync(out, Buffer.concat(chunks));
      const r = importInto(B, out);
      expect(r.code, r.stderr).toBe(0);
      expect(listJson(B).map((x) => x.id)).toEqual([id]);
      expect(dumpSha(B, id)).toBe(dumpSha(A, id));
    } finally {
      B.cleanup();
    }
  });

  test('an export unpacked and packed again with the system tar (GNU format, directory entries) imports', () => {
    const B = makeTempStore();
    try {
      const src = extract(join(work, 'plain.tar.gz'));
      const out = join(work, 'repacked.tgz');
      sh('tar', ['-czf', out, '-C', src, id]);
      expect(listArchive(out).some((e) => e.type === 'd')).toBe(true);
      const r = importInto(B, out);
      expect(r.code, r.stderr).toBe(0);
      expect(listJson(B).map((x) => x.id)).toEqual([id]);
    } finally {
      B.cleanup();
    }
  });

  test('import needs root', () => {
    const r = runCli(['--config', A.configPath, 'import', join(work, 'plain.tar.gz')], { uid: 65534, gid: 65534 });
    expectOneSentence(r, 77, /needs root/);
  });

  test('a missing archive: exit 3', () => {
    const B = makeTempStore();
    try {
      expectOneSentence(importInto(B, join(work, 'nope.tar.gz')), 3, /does not exist/);
    } finally {
      B.cleanup();
    }
  });
});

// ---------------------------------------------------------------------------------------
// Hostile archives, built in code. A small valid bundle (one file) is the base; each
// attack changes one thing. The base itself must import (the control), so each refusal is
// for the attack and not for something else.

const HELLO = Buffer.from('hello from another host\n');

function baseManifest(files: { path: string; data: Buffer }[] = [{ path: 'hello.txt', data: HELLO }]): ManifestJson {
  return {
    ...manifestA,
    core: null,
    backtrace: null,
    files: files.map((f) => ({ path: f.path, size: f.data.length, sha256: sha256(f.data), mode: '640' })),
  };
}

function manifestBytes(m: ManifestJson = baseManifest()): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 2)}\n`);
}

interface TarSpec {
  path: string;
  type?: 'File' | 'Directory' | 'SymbolicLink' | 'Link' | 'CharacterDevice' | 'BlockDevice' | 'FIFO';
  data?: Buffer;
  /** declared size, when it should differ from the data */
  size?: number;
  linkpath?: string;
}

function tarEntry(e: TarSpec): Buffer {
  const data = e.data ?? Buffer.alloc(0);
  const block = Buffer.alloc(512);
  new Header({
    path: e.path, mode: 0o644, uid: 0, gid: 0, size: e.size ?? data.length, mtime: new Date(), type: e.type ?? 'File',
    linkpath: e.linkpath, uname: 'root', gname: 'root', devmaj: e.type === 'CharacterDevice' ? 1 : 0, devmin: e.type === 'CharacterDevice' ? 3 : 0,
  }).encode(block);
  return Buffer.concat([block, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function tarGz(entries: TarSpec[]): Buffer {
  return gzipSync(Buffer.concat([...entries.map(tarEntry), Buffer.alloc(1024)]));
}

function baseEntries(): TarSpec[] {
  return [{ path: `${id}/manifest.json`, data: manifestBytes() }, { path: `${id}/hello.txt`, data: HELLO }];
}

interface ZipSpec {
  name: string;
  data?: Buffer;
  /** st_mode in the external attributes (made on Unix) */
  mode?: number;
  deflate?: boolean;
  /** declared uncompressed size, when it should lie */
  size?: number;
}

/** A minimal zip writer (local headers, central directory, end record), for hostile zips. */
function zipFile(entries: ZipSpec[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = e.data ?? Buffer.alloc(0);
    const body = e.deflate ? deflateRawSync(data) : data;
    const name = Buffer.from(e.name);
    const crc = crc32(data);
    const size = e.size ?? data.length;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0); lh.writeUInt16LE(20, 4); lh.writeUInt16LE(0x0800, 6); lh.writeUInt16LE(e.deflate ? 8 : 0, 8);
    lh.writeUInt16LE(0, 10); lh.writeUInt16LE(0x21, 12); lh.writeUInt32LE(crc, 14); lh.writeUInt32LE(body.length, 18);
    lh.writeUInt32LE(size, 22); lh.writeUInt16LE(name.length, 26); lh.writeUInt16LE(0, 28);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0); ch.writeUInt16LE((3 << 8) | 20, 4); ch.writeUInt16LE(20, 6); ch.writeUInt16LE(0x0800, 8);
    ch.writeUInt16LE(e.deflate ? 8 : 0, 10); ch.writeUInt16LE(0, 12); ch.writeUInt16LE(0x21, 14); ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(body.length, 20); ch.writeUInt32LE(size, 24); ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(((e.mode ?? 0o100644) << 16) >>> 0, 38); ch.writeUInt32LE(offset, 42);
    locals.push(lh, name, body);
    centrals.push(ch, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

describe('import refuses hostile archives and leaves nothing behind', () => {
  let B: TempStore;
  let n = 0;

  beforeAll(() => {
    B = makeTempStore();
    // The store exists (and is empty) before the attacks.
    expect(runCli(['--config', B.configPath, 'reindex']).code).toBe(0);
  });
  afterAll(() => B?.cleanup());

  function write(data: Buffer, ext = 'tar.gz'): string {
    const p = join(work, `hostile-${++n}.${ext}`);
    writeFileSync(p, data);
    return p;
  }

  /** Refused in one sentence naming the problem, and B is still empty: no staging, no bundle, no row. */
  function expectRefused(file: string, mentions: RegExp): void {
    const r = importInto(B, file);
    expectOneSentence(r, 'non-zero', mentions);
    expect(r.stderr.startsWith(`flightbox: refusing to import ${file}: `), r.stderr).toBe(true);
    expect(readdirSync(join(B.root, 'staging'))).toEqual([]);
    expect(readdirSync(join(B.root, 'bundles'))).toEqual([]);
    expect(readdirSync(join(B.root, 'spool'))).toEqual([]);
    const l = runCli(['--config', B.configPath, 'list', '--json']);
    expect(JSON.parse(l.stdout)).toEqual([]);
    // Nothing escaped next to the store either.
    expect(existsSync(join(B.dir, 'evil'))).toBe(false);
    expect(existsSync(join(B.root, 'evil'))).toBe(false);
  }

  test('control: the crafted base archives (tar.gz and zip) import into a fresh store', () => {
    const C = makeTempStore();
    try {
      // With an empty file and a nested one too: both are ordinary in real bundles.
      const files = [{ path: 'hello.txt', data: HELLO }, { path: 'proc/empty', data: Buffer.alloc(0) }];
      const r = importInto(C, write(tarGz([
        { path: `${id}/manifest.json`, data: manifestBytes(baseManifest(files)) }, ...files.map((f) => ({ path: `${id}/${f.path}`, data: f.data })),
      ])));
      expect(r.code, r.stderr).toBe(0);
      const [row] = listJson(C);
      expect(row!.id).toBe(id);
      expect(readFileSync(join(C.root, row!.bundle, 'hello.txt')).equals(HELLO)).toBe(true);
      expect(statSync(join(C.root, row!.bundle, 'proc/empty')).size).toBe(0);
      const D = makeTempStore();
      try {
        const z = importInto(D, write(zipFile([{ name: `${id}/manifest.json`, data: manifestBytes(), deflate: true }, { name: `${id}/hello.txt`, data: HELLO }]), 'zip'));
        expect(z.code, z.stderr).toBe(0);
        expect(listJson(D).map((x) => x.id)).toEqual([id]);
      } finally {
        D.cleanup();
      }
    } finally {
      C.cleanup();
    }
  });

  // --- paths ---
  test('path traversal: an entry "../evil"', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: '../evil', data: Buffer.from('x') }])), /"\.\.\/evil" climbs out/);
  });

  test('path traversal: an entry "ID/../../evil" inside the top directory', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/../../evil`, data: Buffer.from('x') }])), /climbs out/);
  });

  test('absolute path: an entry "/etc/x"', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: '/etc/x', data: Buffer.from('x') }])), /"\/etc\/x" is an absolute path/);
  });

  test('a file outside the top directory', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: 'stray.txt', data: Buffer.from('x') }])), /"stray\.txt" is not inside a top directory/);
  });

  test('two top directories', () => {
    const other = '20200101T000000-1-abcdef';
    expectRefused(write(tarGz([...baseEntries(), { path: `${other}/hello.txt`, data: HELLO }])), /outside the top directory/);
  });

  test('a top directory that is not a bundle id', () => {
    expectRefused(write(tarGz([{ path: 'not-an-id/manifest.json', data: manifestBytes() }, { path: 'not-an-id/hello.txt', data: HELLO }])),
      /top directory "not-an-id" is not a flightbox event id/);
  });

  test('a top directory "." (tar -C dir .)', () => {
    expectRefused(write(tarGz([{ path: './manifest.json', data: manifestBytes() }])), /'\.' path component/);
  });

  // --- entry types ---
  test('a symlink entry', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/proc`, type: 'SymbolicLink', linkpath: '/etc' }])), /is a symbolic link/);
  });

  test('a hardlink entry', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/shadow`, type: 'Link', linkpath: '/etc/shadow' }])), /is a hard link/);
  });

  test('a character device entry', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/null`, type: 'CharacterDevice' }])), /is a character device/);
  });

  test('a block device entry', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/sda`, type: 'BlockDevice' }])), /is a block device/);
  });

  test('a FIFO entry', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/fifo`, type: 'FIFO' }])), /is a FIFO/);
  });

  // --- sizes and counts ---
  test('a declared size over the limit (a crafted tar header, no data behind it)', () => {
    const huge = 5 * 1024 * 1024 * 1024; // over 2 × core.maxSize (2 GiB by default)
    const head = Buffer.concat(baseEntries().map(tarEntry));
    const bomb = Buffer.alloc(512);
    new Header({ path: `${id}/core.zst`, mode: 0o644, size: huge, mtime: new Date(), type: 'File' }).encode(bomb);
    expectRefused(write(gzipSync(Buffer.concat([head, bomb, Buffer.alloc(4096)]))), new RegExp(`declares ${huge} bytes, more than the limit`));
  });

  test('more than 10000 entries', () => {
    const many: TarSpec[] = [...baseEntries()];
    for (let i = 0; i < 10_000; i++) many.push({ path: `${id}/d/f${i}`, data: Buffer.alloc(0) });
    expectRefused(write(tarGz(many)), /more than 10000 entries/);
  });

  test('a gzip bomb: far more decompressed data than any entry declares (data after the end marker)', () => {
    const tar = Buffer.concat([...baseEntries().map(tarEntry), Buffer.alloc(1024), Buffer.alloc(4 * 1024 * 1024, 0x41)]);
    expectRefused(write(gzipSync(tar)), /data after the end of the tar archive/);
  });

  test('a gzip inside the gzip (a second compression layer)', () => {
    expectRefused(write(gzipSync(tarGz(baseEntries()))), /not a tar archive inside the gzip layer/);
  });

  // --- the manifest ---
  test('a file whose sha256 does not match the manifest', () => {
    const evil = Buffer.from(HELLO);
    evil[0] = 'H'.charCodeAt(0);
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes() }, { path: `${id}/hello.txt`, data: evil }])),
      /"[^"]+\/hello\.txt" does not match its manifest\.json \(sha256/);
  });

  test('a file whose size does not match the manifest', () => {
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes() }, { path: `${id}/hello.txt`, data: Buffer.from('short') }])),
      /hello\.txt" is 5 bytes but its manifest\.json says/);
  });

  test('a file not listed in the manifest', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/extra.bin`, data: Buffer.from('x') }])), /extra\.bin" is not listed in its manifest\.json/);
  });

  test('a file listed in the manifest but missing', () => {
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes() }])), /lists "hello\.txt" but the archive does not hold/);
  });

  test('a missing manifest.json', () => {
    expectRefused(write(tarGz([{ path: `${id}/hello.txt`, data: HELLO }])), /has no .*manifest\.json/);
  });

  test('a manifest that is not JSON', () => {
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: Buffer.from('{not json') }, { path: `${id}/hello.txt`, data: HELLO }])),
      /manifest\.json is not valid: not valid JSON/);
  });

  test('a manifest whose core.file points outside the bundle (dump would read it)', () => {
    const m = baseManifest();
    m.core = { ...manifestA.core!, file: '../../../etc/shadow' };
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes(m) }, { path: `${id}/hello.txt`, data: HELLO }])),
      /core\.file: the path "\.\.\/\.\.\/\.\.\/etc\/shadow" climbs out/);
  });

  test('a manifest listing a file path with ".."', () => {
    const m = baseManifest();
    m.files.push({ path: '../x', size: 0, sha256: sha256(''), mode: '640' });
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes(m) }, { path: `${id}/hello.txt`, data: HELLO }])),
      /files\[1\]\.path: the path "\.\.\/x" climbs out/);
  });

  test('a manifest for another event id', () => {
    const m = { ...baseManifest(), id: '20200101T000000-1-abcdef' };
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes(m) }, { path: `${id}/hello.txt`, data: HELLO }])),
      /manifest\.json is for event "20200101T000000-1-abcdef"/);
  });

  test('a manifest with a field of the wrong type', () => {
    const m = { ...baseManifest(), host: { hostname: 42 } } as unknown as ManifestJson;
    expectRefused(write(tarGz([{ path: `${id}/manifest.json`, data: manifestBytes(m) }, { path: `${id}/hello.txt`, data: HELLO }])),
      /host\.hostname: expected a string, got 42/);
  });

  test('an entry named .owner (the staging marker)', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/.owner`, data: Buffer.from('1\n') }])), /reserved name/);
  });

  test('the same file twice', () => {
    expectRefused(write(tarGz([...baseEntries(), { path: `${id}/hello.txt`, data: HELLO }])), /appears twice/);
  });

  // --- damaged archives ---
  test('a truncated gzip', () => {
    const full = readFileSync(join(work, 'plain.tar.gz'));
    expectRefused(write(full.subarray(0, Math.floor(full.length / 2))), /not a valid gzip file|truncated/);
  });

  test('a corrupt gzip (bytes flipped in the middle)', () => {
    const bad = Buffer.from(readFileSync(join(work, 'plain.tar.gz')));
    for (let i = 0; i < 64; i++) bad[Math.floor(bad.length / 2) + i] ^= 0xff;
    expectRefused(write(bad), /not a valid gzip file|not a valid tar archive|does not match/);
  });

  test('a tar without its end-of-archive marker (truncated at an entry boundary)', () => {
    expectRefused(write(gzipSync(Buffer.concat(baseEntries().map(tarEntry)))), /end-of-archive marker/);
  });

  test('a tar header with a bad checksum', () => {
    const tar = Buffer.concat([...baseEntries().map(tarEntry), Buffer.alloc(1024)]);
    tar[0] ^= 0x01; // the first header's name changes, its checksum does not
    expectRefused(write(gzipSync(tar)), /not a valid tar archive \(checksum failure\)/);
  });

  test('neither gzip nor zip', () => {
    expectRefused(write(Buffer.from('just some text\n')), /neither a \.tar\.gz nor a \.zip archive/);
  });

  // --- zip ---
  test('zip: path traversal "../evil"', () => {
    expectRefused(write(zipFile([{ name: `${id}/manifest.json`, data: manifestBytes() }, { name: `${id}/hello.txt`, data: HELLO }, { name: '../evil', data: Buffer.from('x') }]), 'zip'),
      /"\.\.\/evil" climbs out/);
  });

  test('zip: a symlink entry (Unix mode 0120777)', () => {
    expectRefused(write(zipFile([{ name: `${id}/manifest.json`, data: manifestBytes() }, { name: `${id}/hello.txt`, data: HELLO }, { name: `${id}/link`, data: Buffer.from('/etc/shadow'), mode: 0o120777 }]), 'zip'),
      /"[^"]+\/link" is a symbolic link/);
  });

  test('zip: a FIFO entry (Unix mode 010644)', () => {
    expectRefused(write(zipFile([{ name: `${id}/manifest.json`, data: manifestBytes() }, { name: `${id}/fifo`, mode: 0o010644 }]), 'zip'), /is a FIFO/);
  });

  test('zip bomb: an entry that inflates past its declared size', () => {
    const m = baseManifest([{ path: 'hello.txt', data: Buffer.alloc(100) }]);
    expectRefused(write(zipFile([
      { name: `${id}/manifest.json`, data: manifestBytes(m) },
      { name: `${id}/hello.txt`, data: Buffer.alloc(8 * 1024 * 1024), deflate: true, size: 100 },
    ]), 'zip'), /holds more data than the 100 bytes it declares/);
  });

  test('zip: a truncated file (no central directory)', () => {
    const z = zipFile([{ name: `${id}/manifest.json`, data: manifestBytes() }, { name: `${id}/hello.txt`, data: HELLO }]);
    expectRefused(write(z.subarray(0, z.length - 30), 'zip'), /not a valid zip file/);
  });

  test('zip: a file whose sha256 does not match the manifest', () => {
    const evil = Buffer.from(HELLO);
    evil[1] = 0x45;
    expectRefused(write(zipFile([{ name: `${id}/manifest.json`, data: manifestBytes() }, { name: `${id}/hello.txt`, data: evil, deflate: true }]), 'zip'),
      /does not match its manifest\.json \(sha256/);
  });
});

// A sanity check of the helper the hostile tests rely on: gunzip of our own tarGz is a tar.
test('the crafted tar.gz is a tar the system tar reads', () => {
  const p = join(work, 'crafted.tar.gz');
  writeFileSync(p, tarGz(baseEntries()));
  expect(gunzipSync(readFileSync(p)).length % 512).toBe(0);
  expect(listArchive(p).map((e) => e.name)).toEqual([`${id}/manifest.json`, `${id}/hello.txt`]);
});
