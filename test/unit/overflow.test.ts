// The crash-storm path (handler/overflow.ts): the launcher install writes, run for real by
// /bin/sh on a live process standing in for a crashed one (no kernel state is touched: the
// kernel's part, a pipe that is never read, changes nothing the launcher does before it
// closes it), then the drainer, in this process and as the launcher's exec. A live handler
// entry of this very process makes the launcher count core.maxConcurrent (1) handlers busy.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig, type Config } from '../../lib/config.js';
import { parsePidStat } from '../../lib/procfs.js';
import { corePipeLine, launcherScript, overflowParams, type InstallState, type LauncherTrace, type LauncherZstd } from '../../handler/install.js';
import { DRAIN_LOCKS, FAILED_PREFIX, drainIncoming, incomingWaiting, parseLinks, launcherNumber } from '../../handler/overflow.js';
import { readProcState } from '../../handler/proc-reader.js';
import { CORE_PREFIX_BYTES, CORE_WHOLE_BYTES, OVERFLOW_FILE_MAX_BYTES, SPOOL_DAEMON_FILE, launcherZstdDir, overflowDir } from '../../handler/run-dir.js';
import { CrashTaker } from '../../daemon/crash-taker.js';
import { FreezeFifo } from '../../daemon/freeze-fifo.js';
import { freezeFifoPath, socketPath } from '../../lib/config.js';
import { createLogger } from '../../lib/log.js';
import { HANDLERS_DIR } from '../../store/handler-slots.js';
import { readManifest, type Manifest } from '../../store/manifest.js';
import { STAGING_DIR, Store } from '../../store/store.js';
import { HANDLER, IS_ROOT, ROOT, waitFor } from '../helpers.js';

const CRASH_WORKER = join(ROOT, 'dist/daemon/crash-worker.js');

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function startOf(pid: number): number {
  return parsePidStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))!.startTime;
}

const HAS_GDB = spawnSync('gdb', ['--version'], { stdio: 'ignore' }).status === 0;
const HAS_EU_STACK = spawnSync('eu-stack', ['--version'], { stdio: 'ignore' }).status === 0;

const HOSTILE_ARG = `it's "$(touch /tmp/fbx-pwned)" \`id\` ; rm -rf / \n next-line`;

/** A "crashed" process: alive, with a hostile command line and environment. */
async function target(): Promise<ChildProcess> {
  const c = spawn('sleep', ['60'], { argv0: HOSTILE_ARG, stdio: 'ignore', cwd: '/tmp', env: { PATH: '/usr/bin:/bin', FBX_SECRET: 'v$(reboot)\n' } });
  children.push(c);
  await waitFor('the target to exec sleep', () => {
    try {
      return readFileSync(`/proc/${c.pid}/cmdline`, 'utf8').startsWith(HOSTILE_ARG) || undefined;
    } catch {
      return undefined;
    }
  }, 5000, 5);
  return c;
}

interface Setup {
  dir: string;
  cfg: Config;
  configPath: string;
  launcher: string;
  incoming: string;
}

function setUp(yamlExtra = '', opts: { cap?: number | null; trace?: Partial<LauncherTrace>; zstd?: Partial<LauncherZstd>; pipeBuffer?: number | null } = {}): Setup {
  const cap = opts.cap === undefined ? 1 : opts.cap;
  const dir = mkdtempSync(join(tmpdir(), 'fbx-overflow-'));
  dirs.push(dir);
  const root = join(dir, 'store');
  const configPath = join(dir, 'flightbox.yaml');
  writeFileSync(configPath, `store:\n  root: ${root}\ncore:\n  maxConcurrent: ${cap ?? 'null'}\n  maxPerExePerHour: null\n${yamlExtra}`);
  const cfg = defaultConfig();
  cfg.store.root = root;
  cfg.core.maxConcurrent = cap;
  cfg.core.maxPerExePerHour = null;
  if (opts.pipeBuffer !== undefined) cfg.core.pipeBufferBytes = opts.pipeBuffer;
  new Store(root, { create: true, busyTimeoutMs: 1000 }).close();
  const incoming = overflowDir(root);
  dirs.push(incoming);
  spawnSync('mkdir', ['-m', '700', '-p', join(incoming, HANDLERS_DIR)]);
  // This process counts as a live handler storing a core: the cap (1) is reached.
  writeFileSync(join(incoming, HANDLERS_DIR, `${process.pid}-${startOf(process.pid)}`), '');
  const launcher = join(dir, 'core-handler');
  const params = overflowParams(cfg);
  if (opts.trace && params.trace) params.trace = { ...params.trace, ...opts.trace };
  if (opts.zstd && params.zstd) params.zstd = { ...params.zstd, ...opts.zstd };
  writeFileSync(launcher, launcherScript(process.execPath, HANDLER, configPath, params), { mode: 0o700 });
  return { dir, cfg, configPath, launcher, incoming };
}

/** Run the launcher as the kernel would for a crash of `pid` (signal 11, now), `core` on its stdin. */
function launch(s: Setup, pid: number, extra: { hostname?: string; rlimit?: string; core?: Buffer; realPipe?: boolean } = {}): { status: number | null; stderr: string } {
  const now = Math.floor(Date.now() / 1000);
  const args = [String(pid), String(pid), String(pid), '0', '0', '11', String(now), extra.rlimit ?? '18446744073709551615', extra.hostname ?? 'host', '1', ''];
  if (extra.realPipe) {
    // node hands a child a socket, not a pipe, for its stdin: the kernel's pipe from cat
    const file = join(s.dir, 'core.in');
    writeFileSync(file, extra.core ?? '');
    const r = spawnSync('/bin/sh', ['-c', 'f=$1; shift; cat "$f" | "$@"', 'sh', file, s.launcher, ...args], { encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 20 });
    return { status: r.status, stderr: r.stderr };
  }
  // stdin: a pipe nobody writes to, as the kernel's would be before the core
  const r = spawnSync(s.launcher, args, { input: extra.core ?? '', encoding: 'utf8', timeout: 60_000, maxBuffer: 1 << 20 });
  return { status: r.status, stderr: r.stderr };
}

/** The spool's entries (not its locks, not the handlers' registry). */
function entries(incoming: string): string[] {
  return readdirSync(incoming).filter((n) => /^\d/.test(n) || n.startsWith(FAILED_PREFIX));
}

function bundles(root: string): Manifest[] {
  const store = new Store(root, { create: false, busyTimeoutMs: 1000 });
  try {
    return [...store.bundles()].map(([, p]) => readManifest(p));
  } finally {
    store.close();
  }
}

/** Keep the launcher from exec'ing a drainer: both locks held by a live process (default: this one). */
function holdLocks(s: Setup, pid = process.pid): void {
  for (const l of DRAIN_LOCKS) writeFileSync(join(s.incoming, l), `${pid} ${startOf(pid)}\n`);
}

describe.skipIf(!IS_ROOT)('the launcher on the crash-storm path', () => {
  it('records the crash without node, and its drainer makes the bundle; nothing hostile is run', async () => {
    const s = setUp();
    const t = await target();
    // (the target started after this process: no start-time check here)
    const live = readProcState(t.pid!, { environ: true, handlerStartTicks: null });
    expect(live.verified).toBe(true);
    const r = launch(s, t.pid!, { hostname: 'h$(touch /tmp/fbx-pwned)\n' });
    expect(r.status).toBe(0);
    const [m] = await waitFor('the drainer to publish the bundle', () => {
      const b = bundles(s.cfg.store.root);
      return b.length > 0 ? b : undefined;
    }, 30_000);
    expect(m!.handler.overflow).toBe(true);
    expect(m!.core).toMatchObject({ stored: false, reason: 'concurrency' });
    expect(m!.warnings.join('\n')).toMatch(/recorded by the launcher/);
    expect(m!.process!.procVerified).toBe(true);
    // The copy reads as the live /proc did.
    expect(m!.process!.cmdline).toEqual(live.meta.cmdline);
    expect(m!.process!.cmdline).toContain(HOSTILE_ARG);
    for (const k of ['exe', 'cwd', 'root', 'ppid', 'threads', 'fdCount', 'namespaces', 'inContainer', 'comm'] as const) {
      expect((m!.process as unknown as Record<string, unknown>)[k], k).toEqual(live.meta[k]);
    }
    expect(m!.process!.hostnameInNamespace).toBe('h$(touch /tmp/fbx-pwned)\n');
    const bundle = join(s.cfg.store.root, 'bundles', m!.id.slice(0, 4) + '-' + m!.id.slice(4, 6) + '-' + m!.id.slice(6, 8), m!.id);
    const files = readdirSync(join(bundle, 'proc')).sort();
    for (const f of ['cmdline', 'environ', 'fds', 'limits', 'maps', 'ns', 'stat', 'status']) expect(files).toContain(f);
    expect(readFileSync(join(bundle, 'proc', 'environ'), 'utf8')).toContain('FBX_SECRET=v$(reboot)\n');
    expect(statSync(join(bundle, 'proc', 'environ')).mode & 0o077).toBe(0);
    expect(existsSync('/tmp/fbx-pwned')).toBe(false);
    // The entry and the lock are gone.
    await waitFor('the drainer to finish', () => readdirSync(s.incoming).filter((n) => n !== HANDLERS_DIR).length === 0 || undefined, 10_000);
    expect(incomingWaiting(s.cfg.store.root)).toBe(false);
  });

  it('below the cap, or with RLIMIT_CORE 0, node makes the bundle (no drainer), the registry left empty', async () => {
    const s = setUp();
    const t = await target();
    rmSync(join(s.incoming, HANDLERS_DIR), { recursive: true }); // nobody storing
    spawnSync('mkdir', ['-m', '700', join(s.incoming, HANDLERS_DIR)]);
    launch(s, t.pid!);
    launch(s, t.pid!, { rlimit: '0' });
    const b = bundles(s.cfg.store.root);
    expect(b).toHaveLength(2);
    for (const m of b) expect(m.handler.overflow).toBeUndefined();
    expect(entries(s.incoming)).toEqual([]);
    // The launcher registered each node handler, which took the entry as its own and removed it.
    expect(readdirSync(join(s.incoming, HANDLERS_DIR))).toEqual([]);
  });

  it('live drainers holding both locks are left to do the work; a dead one is replaced', async () => {
    const s = setUp();
    const t = await target();
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(holder);
    await waitFor('sleep', () => existsSync(`/proc/${holder.pid}/stat`) || undefined);
    holdLocks(s, holder.pid!);
    launch(s, t.pid!);
    expect(bundles(s.cfg.store.root)).toHaveLength(0);
    expect(entries(s.incoming)).toHaveLength(1); // spooled, waiting
    holder.kill('SIGKILL');
    await waitFor('the holder to die', () => !existsSync(`/proc/${holder.pid}/stat`) || undefined);
    launch(s, t.pid!); // finds the lock of a dead process: drains both
    const b = await waitFor('both bundles', () => {
      const x = bundles(s.cfg.store.root);
      return x.length === 2 ? x : undefined;
    }, 30_000);
    expect(b.every((m) => m.handler.overflow === true)).toBe(true);
  });

  it('a directory someone else made in its place is not used: node records the crash', async () => {
    const s = setUp();
    const t = await target();
    spawnSync('chown', ['65534', s.incoming]);
    launch(s, t.pid!);
    const b = bundles(s.cfg.store.root);
    expect(b).toHaveLength(1);
    expect(b[0]!.handler.overflow).toBeUndefined();
    // node did not count in that directory either: the store's own registry was empty
    expect(b[0]!.core!.reason).toBe('empty');
    expect(entries(s.incoming)).toEqual([]);
    // and the drainer refuses it as well
    await expect(drainIncoming(s.cfg)).rejects.toThrow(/owned by uid 65534/);
  });
});

describe.skipIf(!IS_ROOT)('the launcher below the cap: /proc and the core\'s first part, then node', () => {
  /** The stored core of the only bundle, decompressed. */
  function storedCore(s: Setup): { m: Manifest; bytes: Buffer } {
    const [m] = bundles(s.cfg.store.root);
    const day = `${m!.id.slice(0, 4)}-${m!.id.slice(4, 6)}-${m!.id.slice(6, 8)}`;
    const z = spawnSync('zstd', ['-d', '-c', join(s.cfg.store.root, 'bundles', day, m!.id, 'core.zst')], { maxBuffer: 64 << 20 });
    expect(z.status).toBe(0);
    return { m: m!, bytes: z.stdout };
  }

  /**
   * A core the launcher reads whole, through the launcher on a live target: released by the
   * launcher, stored byte for byte, but compressed by node (not by the launcher's zstd).
   */
  async function compressedByNode(s: Setup, core: Buffer): Promise<Manifest> {
    const t = await target();
    expect(launch(s, t.pid!, { core }).status).toBe(0);
    const { m, bytes } = storedCore(s);
    expect(m.handler.launcher).toBe('released');
    expect(m.timings.compressByLauncher).toBeUndefined();
    expect(bytes.equals(core)).toBe(true);
    return m;
  }

  for (const [what, size, launcherRead] of [
    ['a core within its first part', 3 * 1024 * 1024 + 17, 'released'],
    ['a core past its first part, read on to its end (second dd)', CORE_PREFIX_BYTES + 5 * 1024 * 1024 + 3, 'released'],
    ['a core longer than the launcher reads', CORE_WHOLE_BYTES + 5 * 1024 * 1024 + 3, 'prefix'],
  ] as const) {
    it(`${what}: stored byte for byte, /proc from the launcher's copy`, async () => {
      const s = setUp('', { cap: null });
      const t = await target();
      // data, zeros, data at the end; for the long one, data across the launcher's boundary
      const core = Buffer.alloc(size);
      randomBytes(1024 * 1024).copy(core, 0);
      randomBytes(64 * 1024).copy(core, size - 64 * 1024);
      if (size > CORE_PREFIX_BYTES) randomBytes(4096).copy(core, CORE_PREFIX_BYTES - 2048);
      if (size > CORE_WHOLE_BYTES) randomBytes(4096).copy(core, CORE_WHOLE_BYTES - 2048);
      expect(launch(s, t.pid!, { core }).status).toBe(0);
      const { m, bytes } = storedCore(s);
      expect(m.handler.launcher).toBe(launcherRead);
      expect(m.handler.overflow).toBeUndefined();
      expect(m.core).toMatchObject({ stored: true, size, truncated: false });
      expect(bytes.length).toBe(size);
      expect(bytes.equals(core)).toBe(true);
      expect(m.process!.cmdline).toContain(HOSTILE_ARG);
      expect(m.process!.procVerified).toBe(true);
      expect(m.files.map((f) => f.path)).toEqual(expect.arrayContaining(['proc/status', 'proc/fds', 'proc/environ']));
      expect(m.timings.holdMs).toBeTypeOf('number');
      // made by the node the launcher started beside its copies (it read the pipe on for the long one)
      expect(m.timings.earlyReadyMs).toBeTypeOf('number');
      expect(m.timings.startupMs).toBeUndefined();
      // a core read whole was compressed by the launcher's zstd while node started
      expect(m.timings.compressByLauncher).toBe(launcherRead === 'released' ? 1 : undefined);
      expect(m.warnings.join('\n')).not.toMatch(/was cut/); // the core's part is not a /proc copy
      // the launcher's copy is gone once the bundle is published
      expect(entries(s.incoming)).toEqual([]);
    });
  }

  /**
   * The launcher run on a live target with its stdin a FIFO this test writes the core into:
   * the launcher waits in its first dd (after its copies, with its early node started) until
   * writeCore.
   */
  async function launchHeld(s: Setup, pid: number, opts: { rlimit?: string; until?: string } = {}): Promise<{ launcher: ChildProcess; exited: Promise<number | null>; writeCore: (core: Buffer) => void; early: number; fd: number }> {
    const fifo = join(s.dir, 'core.fifo');
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    const now = Math.floor(Date.now() / 1000);
    const args = [String(pid), String(pid), String(pid), '0', '0', '11', String(now), opts.rlimit ?? '18446744073709551615', 'host', '1', ''];
    const launcher = spawn('/bin/sh', ['-c', 'f=$1; shift; exec "$@" <"$f"', 'sh', fifo, s.launcher, ...args], { stdio: 'ignore' });
    children.push(launcher);
    const exited = new Promise<number | null>((r) => launcher.once('exit', (code) => r(code)));
    // (opening the FIFO for writing waits for the launcher's shell to open it for reading)
    const w = openSync(fifo, constants.O_WRONLY);
    const early = await waitFor('the node started beside the launcher', () => earlyNode(s), 20_000, 5);
    // the launcher's copies done: its first dd has started (and waits for the core)
    const until = opts.until ?? 'dd';
    await waitFor(`the launcher's ${until}`, () => entries(s.incoming).some((e) => existsSync(join(s.incoming, e, until))), 20_000, 5);
    return {
      launcher, exited, early, fd: w,
      writeCore: (core) => {
        try {
          writeFileSync(w, core);
        } finally {
          closeSync(w);
        }
      },
    };
  }

  /** The pid of a live node started by this setup's launcher with --early, if any. */
  function earlyNode(s: Setup): number | undefined {
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      try {
        const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
        const i = argv.indexOf('--early');
        if (i > 0 && argv[i + 1]?.startsWith(`${s.incoming}/`) && !/^[^)]*\) Z/.test(readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*?\(/, '('))) return Number(p);
      } catch {
        // gone meanwhile
      }
    }
    return undefined;
  }

  /** No other handler storing a core: setUp's entry for this process withdrawn. */
  function noOtherHandler(s: Setup): void {
    unlinkSync(join(s.incoming, HANDLERS_DIR, `${process.pid}-${startOf(process.pid)}`));
  }

  it('the node started beside the launcher is killed before the launcher\'s word: the launcher records the crash with a node of its own', async () => {
    const s = setUp('', { cap: 4 });
    noOtherHandler(s);
    const t = await target();
    const h = await launchHeld(s, t.pid!);
    process.kill(h.early, 'SIGKILL');
    const core = Buffer.concat([Buffer.from('text '.repeat(100_000)), randomBytes(200_000)]);
    h.writeCore(core);
    expect(await h.exited).toBe(0);
    const { m, bytes } = storedCore(s);
    expect(bundles(s.cfg.store.root)).toHaveLength(1);
    expect(bytes.equals(core)).toBe(true);
    // node exec'd by the launcher, as without the early one
    expect(m.timings.startupMs).toBeTypeOf('number');
    expect(m.timings.earlyReadyMs).toBeUndefined();
    expect(m.handler.launcher).toBe('released');
    expect(entries(s.incoming)).toEqual([]);
    // the handler slot the launcher made for itself is gone with it
    expect(readdirSync(join(s.incoming, HANDLERS_DIR))).toEqual([]);
  });

  it('another handler storing a core (core.maxConcurrent counts one): no node beside the launcher, it execs node after its copies', async () => {
    const s = setUp('', { cap: 4 }); // this process's entry counts as a live handler
    const t = await target();
    const core = randomBytes(2 * 1024 * 1024);
    expect(launch(s, t.pid!, { core }).status).toBe(0);
    const { m, bytes } = storedCore(s);
    expect(bytes.equals(core)).toBe(true);
    expect(m.timings.startupMs).toBeTypeOf('number');
    expect(m.timings.earlyReadyMs).toBeUndefined();
    expect(readdirSync(join(s.incoming, HANDLERS_DIR))).toEqual([`${process.pid}-${startOf(process.pid)}`]);
  });

  it('the launcher killed before its word: the node beside it leaves the entry, which a drainer records', async () => {
    const s = setUp('', { cap: null });
    const t = await target();
    const h = await launchHeld(s, t.pid!);
    const early = h.early;
    h.launcher.kill('SIGKILL');
    await h.exited;
    await waitFor('the early node to give up', () => earlyNode(s) === undefined || undefined, 10_000, 20);
    h.writeCore(Buffer.alloc(0));
    expect(early).toBeGreaterThan(0);
    expect(bundles(s.cfg.store.root)).toEqual([]);
    const left = entries(s.incoming);
    expect(left).toHaveLength(1);
    expect(existsSync(join(s.incoming, left[0]!, 'taken'))).toBe(false);
    // nothing lost: what the launcher copied is recorded by a drainer
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 0 });
    const [m] = bundles(s.cfg.store.root);
    expect(m!.process!.cmdline).toContain(HOSTILE_ARG);
    expect(entries(s.incoming)).toEqual([]);
  });

  it('RLIMIT_CORE 0: the node beside the launcher does not hold the core\'s pipe (no reader is left once the launcher lets go)', async () => {
    const s = setUp('', { cap: null });
    const t = await target();
    const h = await launchHeld(s, t.pid!, { rlimit: '0', until: 'released' });
    // the kernel's write would find no reader: the crashed process is not held by the early node
    expect(() => writeSync(h.fd, Buffer.alloc(1))).toThrow(/EPIPE/);
    closeSync(h.fd);
    expect(await h.exited).toBe(0);
    const [m] = bundles(s.cfg.store.root);
    expect(m!.timings.earlyReadyMs).toBeTypeOf('number');
    expect(m!.core).toMatchObject({ stored: false, reason: 'rlimit', size: 0 });
    expect(entries(s.incoming)).toEqual([]);
  });

  it('a core longer than the launcher reads, made by the early node: its handler slot is the launcher\'s, released when done', async () => {
    const s = setUp('', { cap: 4 });
    noOtherHandler(s);
    const t = await target();
    const h = await launchHeld(s, t.pid!);
    // while the launcher waits in its dd, the registry holds the launcher's entry alone
    expect(readdirSync(join(s.incoming, HANDLERS_DIR))).toEqual([`${h.launcher.pid}-${startOf(h.launcher.pid!)}`]);
    const core = randomBytes(CORE_WHOLE_BYTES + 1024 * 1024);
    h.writeCore(core);
    expect(await h.exited).toBe(0);
    const { m, bytes } = storedCore(s);
    expect(m.timings.earlyReadyMs).toBeTypeOf('number');
    expect(m.timings.slotFromMs).toBeTypeOf('number'); // it held a slot: the launcher's
    expect(m.handler.launcher).toBe('prefix');
    expect(bytes.equals(core)).toBe(true);
    expect(readdirSync(join(s.incoming, HANDLERS_DIR))).toEqual([]);
  });

  it('the node started beside the launcher lowers its priority once the crashed process is released, as an exec\'d node does', async () => {
    const s = setUp('daemon:\n  snapshotDeadline: 5s\n', { cap: null });
    // A daemon socket that takes the snapshot request and never answers: node waits there,
    // after the release, long enough to be looked at.
    const held: Socket[] = [];
    const server = createServer((c) => { held.push(c); });
    await new Promise<void>((r) => server.listen(socketPath(s.cfg), r));
    let h: Awaited<ReturnType<typeof launchHeld>> | undefined;
    try {
      const niceOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
      const own = niceOf(process.pid);
      expect(own).toBeLessThan(10);
      const t = await target();
      h = await launchHeld(s, t.pid!);
      // waiting for the core (the crashed process held): the launcher's priority
      expect(niceOf(h.early)).toBe(own);
      h.writeCore(randomBytes(1024 * 1024));
      await waitFor('the snapshot request', () => held.length > 0 || undefined, 20_000, 5);
      expect(niceOf(h.early)).toBe(10);
      for (const c of held) c.destroy();
      expect(await h.exited).toBe(0);
      const { m } = storedCore(s);
      expect(m.timings.earlyReadyMs).toBeTypeOf('number');
      expect(m.warnings.join('\n')).toMatch(/snapshot/);
    } finally {
      for (const c of held) c.destroy();
      // (a failed check leaves node waiting on the socket: let it finish before the cleanup)
      if (h) await h.exited;
      await new Promise((r) => server.close(r));
    }
  });

  /** What is left in the store's staging directory (the launcher's zstd output included). */
  function stagingLeft(s: Setup): string[] {
    // the launcher's zstd writes into the store's own staging directory, named there without the store's module
    expect(launcherZstdDir(s.cfg.store.root)).toBe(join(s.cfg.store.root, STAGING_DIR));
    return readdirSync(launcherZstdDir(s.cfg.store.root));
  }

  /** The stored core.zst's sha256 is the one its manifest lists. */
  function expectListedHash(s: Setup, m: Manifest): void {
    const day = `${m.id.slice(0, 4)}-${m.id.slice(4, 6)}-${m.id.slice(6, 8)}`;
    const data = readFileSync(join(s.cfg.store.root, 'bundles', day, m.id, 'core.zst'));
    const listed = m.files.find((f) => f.path === 'core.zst');
    expect(listed).toMatchObject({ size: data.length, sha256: createHash('sha256').update(data).digest('hex') });
  }

  it('a core read whole: the launcher\'s zstd output is the bundle\'s core, hashed as stored', async () => {
    const s = setUp('', { cap: null });
    const t = await target();
    const core = Buffer.concat([Buffer.from('text '.repeat(200_000)), randomBytes(300_000)]);
    expect(launch(s, t.pid!, { core }).status).toBe(0);
    const { m, bytes } = storedCore(s);
    expect(m.handler.launcher).toBe('released');
    expect(m.timings.compressByLauncher).toBe(1);
    expect(m.core).toMatchObject({ stored: true, compression: 'zstd', size: core.length, truncated: false });
    expect(m.core.storedSize).toBeLessThan(core.length);
    expect(bytes.equals(core)).toBe(true);
    expectListedHash(s, m);
    expect(entries(s.incoming)).toEqual([]);
    // zstd wrote beside staging, on the store's disk; the bundle took the file by a link
    expect(stagingLeft(s)).toEqual([]);
    const day = `${m.id.slice(0, 4)}-${m.id.slice(4, 6)}-${m.id.slice(6, 8)}`;
    const st = statSync(join(s.cfg.store.root, 'bundles', day, m.id, 'core.zst'));
    expect(st.nlink).toBe(1);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('a core read whole, rate-limited: not kept, the launcher\'s copy left alone until the bundle is made', async () => {
    const s = setUp('', { cap: null });
    writeFileSync(s.configPath, readFileSync(s.configPath, 'utf8').replace('maxPerExePerHour: null', 'maxPerExePerHour: 0'));
    const t = await target();
    expect(launch(s, t.pid!, { core: Buffer.from('a rate-limited core '.repeat(50_000)) }).status).toBe(0);
    const [m] = bundles(s.cfg.store.root);
    expect(m!.handler.launcher).toBe('released');
    expect(m!.core).toMatchObject({ stored: false, file: null, reason: 'rate-limit' });
    expect(m!.files.map((f) => f.path).filter((p) => p.startsWith('core'))).toEqual([]);
    expect(m!.warnings.join('\n')).toMatch(/core\.maxPerExePerHour is 0/);
    expect(m!.warnings.join('\n')).not.toMatch(/Failed/);
    expect(entries(s.incoming)).toEqual([]);
  });

  it('a core read whole but longer than core.maxSize: cut there by node, not the launcher\'s output of the whole', async () => {
    const s = setUp('  maxSize: 1MiB\n', { cap: null });
    const t = await target();
    const core = randomBytes(3 * 1024 * 1024);
    expect(launch(s, t.pid!, { core }).status).toBe(0);
    const { m, bytes } = storedCore(s);
    expect(m.handler.launcher).toBe('released');
    expect(m.timings.compressByLauncher).toBeUndefined();
    expect(m.core).toMatchObject({ stored: true, truncated: true, size: 1024 * 1024, reason: 'maxSize' });
    expect(bytes.equals(core.subarray(0, 1024 * 1024))).toBe(true);
    expectListedHash(s, m);
  });

  it('the config now asks for another level than the launcher\'s: node compresses the core itself', async () => {
    // the launcher was written for level 3 (the default); the config file says 9
    const s = setUp('  level: 9\n', { cap: null });
    const m = await compressedByNode(s, Buffer.from('some text of a core '.repeat(100_000)));
    expectListedHash(s, m);
  });

  it('the launcher\'s zstd fails: node compresses the core itself, nothing lost', async () => {
    // Faked: a zstd that writes half a frame and fails (tmpfs running full between the core's
    // copy and zstd's output cannot be caused here without failing the copy first).
    const bad = join(tmpdir(), `fbx-badzstd-${process.pid}.sh`);
    writeFileSync(bad, '#!/bin/sh\nprintf \'\\050\\265\\057\\375junk\'\nexit 1\n', { mode: 0o755 });
    dirs.push(bad);
    const s = setUp('', { cap: null, zstd: { zstd: bad } });
    const core = randomBytes(1024 * 1024);
    const m = await compressedByNode(s, core);
    expect(m.core).toMatchObject({ stored: true, compression: 'zstd', size: core.length });
    expectListedHash(s, m);
    expect(stagingLeft(s)).toEqual([]); // its half frame removed
    expect(m.warnings.filter((w) => /compress|zstd|core/i.test(w) && !/not an ELF core/.test(w))).toEqual([]);
  });

  it('the launcher\'s zstd runs at its own priority, for a core within its first part and past it (it is what the bundle waits for)', async () => {
    // Faked: a zstd that records its nice value (field 19 of its stat) and fails, so node
    // compresses; what it reads is the launcher's choice, not zstd's work.
    const out = join(tmpdir(), `fbx-nice-${process.pid}`);
    const spy = join(tmpdir(), `fbx-nicezstd-${process.pid}.sh`);
    writeFileSync(spy, `#!/bin/sh\nread -r l </proc/self/stat\nset -- \${l##*") "}\nprintf '%s\\n' "\${17}" >>${out}\nexit 1\n`, { mode: 0o755 });
    dirs.push(spy, out);
    const own = Number(readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[16]);
    for (const size of [1024 * 1024, CORE_PREFIX_BYTES + 1024 * 1024]) {
      const s = setUp('', { cap: null, zstd: { zstd: spy } });
      await compressedByNode(s, randomBytes(size));
    }
    expect(readFileSync(out, 'utf8').trim().split('\n').map(Number)).toEqual([own, own]);
  });

  it('the launcher\'s zstd runs single-threaded at the config\'s level, for a core within its first part and past it', async () => {
    // Faked: a zstd that records its arguments and fails, so node compresses (the real one is
    // run by the tests above): zstd's worker threads cost 1.5-2.5 times the CPU on these sizes.
    const out = join(tmpdir(), `fbx-zargs-${process.pid}`);
    const spy = join(tmpdir(), `fbx-zargs-${process.pid}.sh`);
    writeFileSync(spy, `#!/bin/sh\nprintf '%s ' "$@" >>${out}\necho >>${out}\nexit 1\n`, { mode: 0o755 });
    dirs.push(spy, out);
    for (const size of [1024 * 1024, CORE_PREFIX_BYTES + 1024 * 1024]) {
      const s = setUp('', { cap: null, zstd: { zstd: spy } });
      await compressedByNode(s, randomBytes(size));
    }
    const runs = readFileSync(out, 'utf8').trim().split('\n').map((l) => l.trim().split(' '));
    expect(runs).toHaveLength(2);
    for (const argv of runs) {
      expect(argv).toContain('--single-thread');
      expect(argv).toContain(`-${defaultConfig().core.level}`);
      expect(argv.some((a) => /^-T/.test(a))).toBe(false);
    }
  });

  // core.pipeBuffer: the kernel's pipe of a core longer than the launcher's part made bigger
  // (perl, F_SETPIPE_SZ), so that the kernel goes on writing while node starts. The size the
  // manifest names is the kernel's answer (a power of two), not the config's.
  // Beyond fs.pipe-max-size the kernel wants CAP_SYS_RESOURCE, which the kernel's helper has
  // and a test's process may not: there the launcher settles for the largest size allowed.
  const HAS_PERL = spawnSync('perl', ['-e', '1']).status === 0;
  const capEff = BigInt('0x' + (/^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0'));
  const pipeMax = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'));
  const allowed16 = (capEff >> 24n) & 1n ? 16 * 1024 * 1024 : 2 ** Math.floor(Math.log2(Math.min(pipeMax, 16 * 1024 * 1024)));
  for (const [what, size, pipeBuffer, expected] of [
    [`a core longer than its part: the default 16 MiB (here ${allowed16} bytes)`, CORE_PREFIX_BYTES + 3 * 1024 * 1024 + 5, undefined, allowed16],
    ['300 KiB asked: the kernel rounds it up to 512 KiB', CORE_PREFIX_BYTES + 1024 * 1024, 300 * 1024, 512 * 1024],
    ['pipeBuffer null: left at the kernel\'s size', CORE_PREFIX_BYTES + 1024 * 1024, null, undefined],
    ['a core within its part: never enlarged', 2 * 1024 * 1024, undefined, undefined],
  ] as const) {
    it.skipIf(!HAS_PERL)(`the core's pipe, ${what}; the core stored byte for byte`, async () => {
      const s = setUp('', { cap: null, pipeBuffer });
      expect(readFileSync(s.launcher, 'utf8').includes('pipe()')).toBe(pipeBuffer !== null);
      const t = await target();
      const core = randomBytes(size);
      const r = launch(s, t.pid!, { core, realPipe: true });
      expect(r.status).toBe(0);
      const { m, bytes } = storedCore(s);
      expect(m.handler.pipeBytes).toBe(expected);
      expect(m.core).toMatchObject({ stored: true, size, truncated: false });
      expect(bytes.equals(core)).toBe(true);
    });
  }

  describe('with its tmpfs directory full (a 1 MiB tmpfs mounted on it)', () => {
    let mounted: string | null = null;
    afterEach(() => {
      if (mounted) spawnSync('umount', ['-l', mounted]);
      mounted = null;
    });
    function tinySpool(s: Setup, size = '1m'): void {
      const m = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', s.incoming], { encoding: 'utf8' });
      expect(m.status, m.stderr).toBe(0);
      mounted = s.incoming;
    }

    it('dd cannot store the core\'s first part: node keeps what it wrote, truncated, and says why', async () => {
      const s = setUp('', { cap: null });
      tinySpool(s);
      const t = await target();
      const core = randomBytes(3 * 1024 * 1024);
      expect(launch(s, t.pid!, { core }).status).toBe(0);
      const { m, bytes } = storedCore(s);
      expect(m.handler.launcher).toBe('prefix'); // not released by the launcher
      expect(m.core).toMatchObject({ stored: true, truncated: true, reason: 'write-error: launcher' });
      expect(m.warnings.join('\n')).toMatch(/the launcher could not store the core's first part \(dd exited 1\b/);
      expect(bytes.length).toBeGreaterThan(0);
      expect(bytes.equals(core.subarray(0, bytes.length))).toBe(true);
      expect(m.process!.cmdline).toContain(HOSTILE_ARG);
    });

    it('the first part fits but tmpfs has no room for the rest: the launcher leaves it to node, nothing lost', async () => {
      const s = setUp('', { cap: null });
      tinySpool(s, '12m');
      const t = await target();
      const core = randomBytes(CORE_PREFIX_BYTES + 8 * 1024 * 1024);
      expect(launch(s, t.pid!, { core }).status).toBe(0);
      const { m, bytes } = storedCore(s);
      // read on by node from the pipe, not by a second dd that would have filled tmpfs
      expect(m.handler.launcher).toBe('prefix');
      expect(m.core).toMatchObject({ stored: true, truncated: false, size: core.length });
      expect(bytes.equals(core)).toBe(true);
      expect(m.warnings.join('\n')).not.toMatch(/launcher could not store/);
      expect(m.timings.compressByLauncher).toBeUndefined();
    });

    it('a core read whole with little room left on tmpfs: its compressed copy goes to the store\'s disk all the same', async () => {
      const s = setUp('', { cap: null });
      tinySpool(s, '12m');
      const t = await target();
      const core = Buffer.from('a small core of text '.repeat(100_000));
      expect(launch(s, t.pid!, { core }).status).toBe(0);
      const { m, bytes } = storedCore(s);
      expect(m.timings.compressByLauncher).toBe(1);
      expect(bytes.equals(core)).toBe(true);
      expect(stagingLeft(s)).toEqual([]);
    });

    it('nothing fits at all: the launcher steps aside and node reads /proc and the core itself', async () => {
      const s = setUp('', { cap: null });
      tinySpool(s);
      spawnSync('dd', ['if=/dev/zero', `of=${join(s.incoming, 'filler')}`, 'bs=64k', 'count=32'], { encoding: 'utf8' }); // fills it
      const t = await target();
      const core = randomBytes(2 * 1024 * 1024);
      expect(launch(s, t.pid!, { core }).status).toBe(0);
      const { m, bytes } = storedCore(s);
      expect(m.handler.launcher).toBeUndefined();
      expect(m.core).toMatchObject({ stored: true, truncated: false, size: core.length });
      expect(bytes.equals(core)).toBe(true);
      expect(m.process!.cmdline).toContain(HOSTILE_ARG);
      expect(entries(s.incoming)).toEqual([]);
    });
  });

  it('RLIMIT_CORE 0 (core.honourRlimit): released without a byte of the core read; node records it', async () => {
    const s = setUp('', { cap: null });
    const t = await target();
    // a core on stdin that must not be read: a pipe nobody writes to would do; this one
    // proves nothing of it was stored
    expect(launch(s, t.pid!, { rlimit: '0', core: randomBytes(1024 * 1024) }).status).toBe(0);
    const [m] = bundles(s.cfg.store.root);
    expect(m!.handler.launcher).toBe('released');
    expect(m!.core).toMatchObject({ stored: false, reason: 'rlimit', size: 0 });
    expect(m!.process!.cmdline).toContain(HOSTILE_ARG);
    expect(m!.process!.procVerified).toBe(true);
    expect(entries(s.incoming)).toEqual([]);
  });

  /** A real ELF core of the live target, made by gdb (gcore), as the kernel would send it. */
  function gcore(s: Setup, pid: number): Buffer {
    const out = join(s.dir, 'target.core');
    const r = spawnSync('gdb', ['-batch', '-nx', '-ex', `generate-core-file ${out}`, '-p', String(pid)], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const core = readFileSync(out);
    expect(core.length).toBeLessThan(CORE_PREFIX_BYTES); // read whole by the launcher
    return core;
  }

  it.skipIf(!HAS_GDB || !HAS_EU_STACK)('a real ELF core read whole: the launcher\'s eu-stack takes the stack trace while node starts', async () => {
    const s = setUp('', { cap: null });
    const t = await target();
    expect(launch(s, t.pid!, { core: gcore(s, t.pid!) }).status).toBe(0);
    const [m] = bundles(s.cfg.store.root);
    expect(m!.handler.launcher).toBe('released');
    expect(m!.timings.backtraceByLauncher).toBe(1);
    expect(m!.backtrace?.tool).toBe('eu-stack');
    expect(m!.backtrace!.frames.some((f) => /sleep/.test(f.fn ?? ''))).toBe(true);
    expect(m!.modules.some((x) => x.buildId !== null)).toBe(true);
    expect(m!.warnings.filter((w) => /stack trace|eu-stack|gdb/.test(w))).toEqual([]);
    expect(entries(s.incoming)).toEqual([]);
  });

  it.skipIf(!HAS_GDB || !HAS_EU_STACK)('the launcher\'s eu-stack hangs: killed at its budget, node says so and gdb takes over', async () => {
    // Faked: an eu-stack that never finishes (as on a module path that is a FIFO nobody opens).
    const hang = join(tmpdir(), `fbx-hang-${process.pid}.sh`);
    writeFileSync(hang, '#!/bin/sh\nexec sleep 60\n', { mode: 0o755 });
    dirs.push(hang);
    const s = setUp('', { cap: null, trace: { euStack: hang, seconds: 1 } });
    const t = await target();
    const t0 = Date.now();
    expect(launch(s, t.pid!, { core: gcore(s, t.pid!) }).status).toBe(0);
    const [m] = bundles(s.cfg.store.root);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(m!.timings.backtraceByLauncher).toBe(1);
    expect(m!.warnings).toContain('eu-stack timed out; gdb ran without shared libraries');
    expect(m!.backtrace?.tool).toBe('gdb');
    expect(entries(s.incoming)).toEqual([]);
  });

  it('the fds list keeps each fd\'s fdinfo, as when node reads /proc itself', async () => {
    const s = setUp('', { cap: null });
    const t = await target();
    launch(s, t.pid!, { core: Buffer.from('not an ELF core') });
    const [m] = bundles(s.cfg.store.root);
    const day = `${m!.id.slice(0, 4)}-${m!.id.slice(4, 6)}-${m!.id.slice(6, 8)}`;
    const fds = readFileSync(join(s.cfg.store.root, 'bundles', day, m!.id, 'proc', 'fds'), 'utf8');
    expect(fds).toMatch(/^0:.*\n {2}pos:\s+\d+\n {2}flags:/m);
    expect(m!.warnings.join('\n')).toMatch(/not an ELF core/);
  });
});

describe.skipIf(!IS_ROOT)('the drainer', () => {
  /** One entry, spooled by the real launcher for a live target, not drained. */
  async function spooled(): Promise<Setup & { entry: string; pid: number }> {
    const s = setUp();
    holdLocks(s);
    const t = await target();
    launch(s, t.pid!);
    const entry = entries(s.incoming)[0]!;
    expect(entry).toMatch(new RegExp(`^\\d+\\.${t.pid}\\.\\d+$`));
    for (const l of DRAIN_LOCKS) unlinkSync(join(s.incoming, l));
    return { ...s, entry: join(s.incoming, entry), pid: t.pid! };
  }

  it('keeps no /proc data when the pid changed hands while the launcher copied it', async () => {
    const s = await spooled();
    // stat read last names another start time: the pid was reused (faked: it cannot be
    // caused while the crashed process is held, which is the point of the check)
    const stat = readFileSync(join(s.entry, 'stat.after'), 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    fields[19] = String(Number(fields[19]) + 1);
    writeFileSync(join(s.entry, 'stat.after'), `${stat.slice(0, stat.lastIndexOf(')') + 2)}${fields.join(' ')}`);
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 0 });
    const [m] = bundles(s.cfg.store.root);
    expect(m!.process!.procVerified).toBe(false);
    expect(m!.process!.cmdline).toBeNull();
    expect(m!.files.some((f) => f.path.startsWith('proc/'))).toBe(false);
    expect(m!.warnings.join('\n')).toMatch(/changed while it was read/);
  });

  it('takes the half-written entry of a launcher that died, saying so', async () => {
    const s = await spooled();
    unlinkSync(join(s.entry, 'complete'));
    rmSync(join(s.entry, 'links'));
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 0 });
    const [m] = bundles(s.cfg.store.root);
    expect(m!.warnings.join('\n')).toMatch(/launcher was stopped while it recorded this crash/);
    expect(m!.process!.cmdline).toContain(HOSTILE_ARG);
    expect(m!.process!.exe).toBeNull(); // its links were not copied
  });

  it('the entry of a handler that died before it finished is recorded from the launcher\'s copy', async () => {
    const s = await spooled();
    // What a launcher leaves for its own handler (node), when node is killed before it
    // publishes (made from a storm entry: killing node at that moment is a race, not a test).
    unlinkSync(join(s.entry, 'complete'));
    writeFileSync(join(s.entry, 'handler'), '');
    writeFileSync(join(s.entry, 'core'), Buffer.alloc(8 * 1024 * 1024)); // the launcher's part of the core
    writeFileSync(join(s.entry, 'maps'), Buffer.alloc(OVERFLOW_FILE_MAX_BYTES, 0x61)); // a copy RLIMIT_FSIZE stopped
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 0 });
    const [m] = bundles(s.cfg.store.root);
    expect(m!.core).toMatchObject({ stored: false, reason: 'interrupted' });
    expect(m!.warnings.join('\n')).toMatch(/crash handler stopped before it finished this crash/);
    expect(m!.warnings.join('\n')).not.toMatch(/crash storm/);
    expect(m!.warnings.filter((w) => /was cut/.test(w))).toEqual([`proc/maps was cut at ${OVERFLOW_FILE_MAX_BYTES} bytes (the launcher's limit for each /proc copy)`]);
    expect(m!.process!.cmdline).toContain(HOSTILE_ARG);
  });

  it('an entry claimed by a drainer that died is taken again, once, without a second bundle', async () => {
    const s = await spooled();
    // A drainer (dead now) claimed it, published the bundle, and died before removing it.
    const dead = spawnSync('true');
    expect(dead.status).toBe(0);
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 0 });
    const [first] = bundles(s.cfg.store.root);
    const base = s.entry.split('/').pop()!;
    // Put the entry back as that drainer would have left it: claimed, with the bundle's id.
    const claimed = join(s.incoming, `${base}@${dead.pid}-1`);
    spawnSync('mkdir', ['-m', '700', claimed]);
    writeFileSync(join(claimed, 'id'), `${first!.id}\n`);
    writeFileSync(join(claimed, 'args'), `${s.pid}\0`);
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 0 });
    expect(bundles(s.cfg.store.root)).toHaveLength(1);
    expect(entries(s.incoming)).toEqual([]);
  });

  it('an entry that cannot be read is kept aside for an operator, and the rest goes on', async () => {
    const s = await spooled();
    const bad = join(s.incoming, '1.2.3');
    spawnSync('mkdir', ['-m', '700', bad]);
    writeFileSync(join(bad, 'complete'), '');
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 1, failed: 1 });
    expect(entries(s.incoming)).toEqual([`${FAILED_PREFIX}1.2.3`]);
    // not taken again
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 0, failed: 0 });
  });

  it('leaves entries younger than minAgeMs (the daemon sweep) and those still being written', async () => {
    const s = await spooled();
    expect(await drainIncoming(s.cfg, { minAgeMs: 60_000 })).toEqual({ bundles: 0, failed: 0 });
    unlinkSync(join(s.entry, 'complete'));
    writeFileSync(join(s.entry, 'writer'), `${process.pid} ${startOf(process.pid)}\n`); // a live writer
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 0, failed: 0 });
    expect(existsSync(s.entry)).toBe(true);
  });
});

// The launcher's handoff to the running daemon (handler/install.ts handoff(),
// daemon/crash-taker.ts): the real launcher, and the real CrashTaker and FreezeFifo in this
// process standing in for the daemon around them (its worker thread is the build's). No
// daemon socket here: the crash's bundle says it got no recorder snapshot.
describe.skipIf(!IS_ROOT || !HAS_EU_STACK)('the launcher hands a crash it read whole to the running daemon', () => {
  const takers: { taker: CrashTaker; fifo: FreezeFifo }[] = [];
  afterEach(async () => {
    for (const { taker, fifo } of takers.splice(0)) {
      fifo.close();
      await taker.stop(10_000);
    }
  });

  function daemonHere(s: Setup): CrashTaker {
    const log = createLogger({ file: join(s.dir, 'daemon.log'), component: 'daemon' });
    const taker = new CrashTaker({ storeRoot: s.cfg.store.root, busyTimeoutMs: 1000, config: () => s.cfg, log, drain: () => {}, workerFile: CRASH_WORKER });
    const fifo = new FreezeFifo(freezeFifoPath(s.cfg), () => {}, log, (entry) => taker.take(entry));
    fifo.open();
    takers.push({ taker, fifo });
    expect(taker.start()).toBe(true);
    return taker;
  }

  const fds: number[] = [];
  afterEach(() => {
    for (const fd of fds.splice(0)) closeSync(fd);
  });

  /** The daemon's FIFO, made and held open for reading here (what is written to it stays unread). */
  function readFifo(s: Setup): void {
    expect(spawnSync('mkfifo', ['-m', '600', freezeFifoPath(s.cfg)]).status).toBe(0);
    fds.push(openSync(freezeFifoPath(s.cfg), constants.O_RDWR | constants.O_NONBLOCK));
  }

  /** The spool's daemon mark, naming a process (default: this one). */
  function markDaemon(s: Setup, pid = process.pid): void {
    writeFileSync(join(s.incoming, SPOOL_DAEMON_FILE), `${pid} ${startOf(pid)}\n`);
  }

  function coreOf(s: Setup, m: Manifest): Buffer {
    const day = `${m.id.slice(0, 4)}-${m.id.slice(4, 6)}-${m.id.slice(6, 8)}`;
    const z = spawnSync('zstd', ['-d', '-c', join(s.cfg.store.root, 'bundles', day, m.id, 'core.zst')], { maxBuffer: 64 << 20 });
    expect(z.status).toBe(0);
    return z.stdout;
  }

  it('no node: the daemon takes the offer and makes the bundle, core byte for byte', async () => {
    const s = setUp('', { cap: null });
    const taker = daemonHere(s);
    const t = await target();
    const core = Buffer.concat([Buffer.from('text of a core '.repeat(100_000)), randomBytes(200_000)]);
    expect(launch(s, t.pid!, { core }).status).toBe(0);
    // the launcher left its entry offered to us, not to node
    expect(entries(s.incoming)).toEqual([]);
    expect(readdirSync(s.incoming).filter((n) => n.startsWith('offer.') || n.includes('@'))).toHaveLength(1);
    const [m] = await waitFor('the daemon\'s bundle', () => {
      const b = bundles(s.cfg.store.root);
      return b.length > 0 ? b : undefined;
    }, 30_000);
    expect(m!.handler).toMatchObject({ daemon: true, pid: process.pid, launcher: 'released' });
    expect(m!.timings.takenMs).toBeTypeOf('number');
    expect(m!.timings.startupMs).toBeUndefined();
    expect(m!.core).toMatchObject({ stored: true, size: core.length, truncated: false, compression: 'zstd' });
    expect(coreOf(s, m!).equals(core)).toBe(true);
    expect(m!.process!.cmdline).toContain(HOSTILE_ARG);
    expect(m!.process!.procVerified).toBe(true);
    // no daemon socket here: said so, nothing else lost
    expect(m!.warnings.join('\n')).toMatch(/no flight-recorder snapshot/);
    await waitFor('the entry to go', () => readdirSync(s.incoming).every((n) => n === HANDLERS_DIR || n === SPOOL_DAEMON_FILE) || undefined, 10_000);
    // the worker removes the entry, then tells the daemon's thread: counted a moment later
    await waitFor('the crash to be counted', () => taker.status().onHand === 0 || undefined, 10_000);
    expect(taker.status()).toMatchObject({ taking: true, taken: 1, failed: 0, onHand: 0 });
    expect(existsSync('/tmp/fbx-pwned')).toBe(false);
  });

  it('a FIFO nobody reads: the launcher takes its offer back and node records the crash', async () => {
    const s = setUp('', { cap: null });
    markDaemon(s);
    // A FIFO without a reader stands in for a daemon that no longer reads its own.
    expect(spawnSync('mkfifo', ['-m', '600', freezeFifoPath(s.cfg)]).status).toBe(0);
    const t = await target();
    const core = randomBytes(300_000);
    expect(launch(s, t.pid!, { core }).status).toBe(0);
    const [m] = bundles(s.cfg.store.root);
    expect(m!.handler.daemon).toBeUndefined();
    expect(m!.handler.launcher).toBe('released');
    expect(coreOf(s, m!).equals(core)).toBe(true);
    expect(readdirSync(s.incoming).filter((n) => n !== HANDLERS_DIR && n !== SPOOL_DAEMON_FILE)).toEqual([]);
  });

  for (const [what, who] of [
    ['the daemon\'s own crash is never offered to it', 'target'],
    ['a mark left by a daemon that is gone is not followed', 'dead'],
  ] as const) {
    it(`${what}: node records the crash`, async () => {
      const s = setUp('', { cap: null });
      const t = await target();
      if (who === 'target') markDaemon(s, t.pid!);
      else writeFileSync(join(s.incoming, SPOOL_DAEMON_FILE), `${spawnSync('true').pid} 1\n`);
      readFifo(s);
      expect(launch(s, t.pid!, { core: randomBytes(100_000) }).status).toBe(0);
      const [m] = bundles(s.cfg.store.root);
      expect(m!.handler.daemon).toBeUndefined();
      expect(m!.core.stored).toBe(true);
      expect(readdirSync(s.incoming).some((n) => n.startsWith('offer.'))).toBe(false);
    });
  }

  it('crashes offered to a live daemon count against core.maxConcurrent', async () => {
    // cap 2: this process's handler entry is one, an offer to this (live) "daemon" the other
    const s = setUp('', { cap: 2 });
    markDaemon(s);
    holdLocks(s);
    spawnSync('mkdir', ['-m', '700', join(s.incoming, `offer.1.2.3@${process.pid}-${startOf(process.pid)}`)]);
    const t = await target();
    expect(launch(s, t.pid!, { core: randomBytes(100_000) }).status).toBe(0);
    // recorded on the storm path: no core read, left for a drainer
    const stormy = entries(s.incoming);
    expect(stormy).toHaveLength(1);
    expect(existsSync(join(s.incoming, stormy[0]!, 'complete'))).toBe(true);
    expect(existsSync(join(s.incoming, stormy[0]!, 'core'))).toBe(false);
  });

  it('a dead daemon\'s offer and claim are recorded by a drainer, cores included', async () => {
    const s = setUp('', { cap: null });
    const dead = spawnSync('true').pid!;
    markDaemon(s);
    readFifo(s);
    const cores: Buffer[] = [];
    for (let i = 0; i < 2; i++) {
      const t = await target();
      cores.push(randomBytes(200_000 + i));
      expect(launch(s, t.pid!, { core: cores[i] }).status).toBe(0);
    }
    // Offered to this process; make them what a daemon killed at either step leaves.
    const offers = readdirSync(s.incoming).filter((n) => n.startsWith('offer.')).sort();
    expect(offers).toHaveLength(2);
    renameSync(join(s.incoming, offers[0]!), join(s.incoming, offers[0]!.replace(/@.*/, `@${dead}-1`)));
    renameSync(join(s.incoming, offers[1]!), join(s.incoming, offers[1]!.replace(/^offer\./, '').replace(/@.*/, `@${dead}-1`)));
    expect(await drainIncoming(s.cfg)).toEqual({ bundles: 2, failed: 0 });
    const ms = bundles(s.cfg.store.root);
    expect(ms).toHaveLength(2);
    expect(ms.map((m) => coreOf(s, m).length).sort()).toEqual(cores.map((c) => c.length).sort());
    for (const m of ms) {
      expect(m.core).toMatchObject({ stored: true, truncated: false });
      expect(m.warnings.join('\n')).toMatch(/crash handler stopped before it finished this crash/);
      expect(m.process!.cmdline).toContain(HOSTILE_ARG);
    }
    expect(readdirSync(s.incoming).filter((n) => n !== HANDLERS_DIR && n !== SPOOL_DAEMON_FILE && !n.startsWith('.drain'))).toEqual([]);
  });
});

describe('corePipeLine (flightbox status)', () => {
  const state = (extra: Partial<InstallState>): InstallState => ({
    version: 1, installedAt: '', pattern: '', launcher: '', configPath: null, persistent: false,
    previous: { corePattern: 'core', corePipeLimit: '0' }, dropIn: null, ...extra,
  });
  const cfg = (bytes: number | null): Config => {
    const c = defaultConfig();
    c.core.pipeBufferBytes = bytes;
    return c;
  };
  it.each<[string, Partial<InstallState>, number | null, string | null]>([
    ['as installed', { corePipeBytes: 16 << 20 }, 16 << 20, '16 MiB for cores longer than 8.0 MiB'],
    ['the config changed since', { corePipeBytes: 16 << 20 }, 4 << 20, '16 MiB for cores longer than 8.0 MiB; the config now says 4.0 MiB: run flightbox install again'],
    ['turned off in the config', { corePipeBytes: null, corePipeWhy: 'config' }, null, "64 KiB, the kernel's (core.pipeBuffer: null)"],
    ['turned off, then on again', { corePipeBytes: null, corePipeWhy: 'config' }, 16 << 20, "64 KiB, the kernel's (core.pipeBuffer: null); the config now says 16 MiB: run flightbox install again"],
    ['no perl: installing again changes nothing', { corePipeBytes: null, corePipeWhy: 'no-perl' }, 16 << 20, "64 KiB, the kernel's (perl was not found at install)"],
    ['a state from before the option', {}, 16 << 20, null],
  ])('%s', (_what, extra, bytes, line) => {
    expect(corePipeLine(cfg(bytes), state(extra))).toBe(line);
  });
  it('nothing without an install', () => {
    expect(corePipeLine(defaultConfig(), null)).toBeNull();
  });
});

describe('launcherNumber (the pipe size the launcher\'s perl printed, its zstd level)', () => {
  it.each<[string | null, number | null]>([
    ['16777216\n', 16_777_216], ['65536', 65_536], ['0\n', null], ['', null], [null, null],
    ['1e9\n', null], ['-5\n', null], ['16777216\n16777216\n', null], ['1234567890123\n', null], [' 4096\n', null],
  ])('%j -> %s', (text, expected) => {
    expect(launcherNumber(text)).toBe(expected);
  });
});

describe('parseLinks', () => {
  it('splits find\'s NUL-separated output; hostile targets stay data', () => {
    const out = [
      '/proc/10/exe', '/usr/bin/a\nb (deleted)',
      '/proc/10/cwd', '/tmp/$(x)',
      '/proc/10/ns', '',
      '/proc/10/ns/pid', 'pid:[4026531836]',
      '/proc/10/fd', '',
      '/proc/10/fd/0', '/dev/null',
      '/proc/10/fd/7', 'socket:[12]',
      '/proc/10/../../etc/passwd', 'x',
      '/proc/20/ns/pid', 'pid:[1]',
    ].map((x) => `${x}\0`).join('');
    const r = parseLinks(Buffer.from(out), 10, 20);
    expect(r.fdListed).toBe(true);
    expect(r.links.get('exe')).toBe('/usr/bin/a\nb (deleted)');
    expect(r.links.get('cwd')).toBe('/tmp/$(x)');
    expect(r.links.get('ns/pid')).toBe('pid:[4026531836]');
    expect([...r.links.keys()].filter((k) => k.startsWith('fd/'))).toEqual(['fd/0', 'fd/7']);
    expect([...r.links.keys()].some((k) => k.includes('..'))).toBe(false);
    expect(r.own.get('pid')).toBe('pid:[1]');
    expect(parseLinks(Buffer.from('/proc/10/exe\0/x\0'), 10, 20).fdListed).toBe(false);
  });
});
