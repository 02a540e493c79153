// Links and FIFOs planted where the crash handler writes: the store root, bundles/<day>,
// staging, the store log and the SQLite index. Each is planted as root (an attacker who got
// write access to the store) and the crash goes through the real kernel core_pattern. The
// handler must refuse to write through them, never hold the crashed process on a FIFO,
// leave the victim outside untouched, and not lose the crash without a word in the kernel log.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, constants, existsSync, linkSync, openSync, writeSync, lstatSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { IS_ROOT, waitFor } from '../helpers.js';
import {
  bundleDirs, compileFixture, exitWithin, flightboxKmsg, handlersDone, installHandler, killHandlers, kmsgMark, listEvents, manifestOf,
  mkdirMode, secStore, startCrash, treeState, utcDay, waitEvent, waitKmsg, type CrashRun, type SecStore,
} from './sec-helpers.js';

/** How long a crashed process may be held by the handler: reading /proc and a small core take well under a second. */
const RELEASE_MS = 5000;
/** How long a handler may take for a small crash, stack trace and compression included. */
const HANDLER_MS = 20_000;

describe.skipIf(!IS_ROOT)('links and FIFOs planted in the store', () => {
  let work: string;
  let crasher: string;
  let planter: string;
  let s: SecStore;
  let kernel: { restore(): void } | undefined;

  beforeAll(() => {
    work = mkdtempSync('/tmp/fbx-sec-bin-');
    crasher = compileFixture('sec-crasher', work);
    planter = compileFixture('sec-planter', work);
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    s = secStore();
    kernel = installHandler(s);
  });
  afterEach(async () => {
    try {
      // A handler stuck on a planted FIFO is killed here: that also releases its crashed process.
      await killHandlers(s.configPath);
    } finally {
      kernel?.restore();
      kernel = undefined;
      s.cleanup();
    }
  });

  function crashNow(comm = 'fbx-planted'): CrashRun {
    return startCrash(crasher, [], { env: { SEC_COMM: comm } });
  }

  /** A directory outside the store that an attack would write into, with something in it. */
  function victimDir(): string {
    const v = join(s.dir, 'victim');
    mkdirMode(v, 0o700);
    writeFileSync(join(v, 'precious'), 'do not touch\n');
    return v;
  }

  function victimFile(content = 'do not touch\n'): string {
    const v = join(s.dir, 'victim-file');
    writeFileSync(v, content);
    return v;
  }

  it('store root replaced by a symlink to another directory: refused, the target untouched, the failure in the kernel log', async () => {
    const victim = victimDir();
    const before = treeState(victim);
    rmSync(s.root, { recursive: true });
    symlinkSync(victim, s.root);
    const mark = kmsgMark();
    const c = crashNow();
    const exit = await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(exit.signal).toBe('SIGSEGV');
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(treeState(victim)).toEqual(before);
    await waitKmsg(mark, new RegExp(`^flightbox: process ${c.pid} \\(fbx-planted\\) of user 0 dumped core`));
    await waitKmsg(mark, /^flightbox: failed to capture a crash: .*store is a symbolic link; refusing to use it/, s.root);
  });

  it('bundles/<day> planted as a symlink to another directory: nothing published through it, the failure in the kernel log', async () => {
    const victim = victimDir();
    const before = treeState(victim);
    mkdirMode(join(s.root, 'bundles'), 0o700);
    // The day of the crash, and the next one in case the crash falls on midnight UTC.
    for (const day of new Set([utcDay(Date.now()), utcDay(Date.now() + 120_000)])) symlinkSync(victim, join(s.root, 'bundles', day));
    const mark = kmsgMark();
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(treeState(victim)).toEqual(before);
    await waitKmsg(mark, new RegExp(`^flightbox: process ${c.pid} \\(fbx-planted\\) of user 0 dumped core`));
    await waitKmsg(mark, /^flightbox: failed to capture a crash: .*bundles\/\d{4}-\d{2}-\d{2} is a symbolic link; refusing to use it/, s.root);
  });

  it('staging planted as a symlink to another directory: refused, the target untouched, the failure in the kernel log', async () => {
    const victim = victimDir();
    const before = treeState(victim);
    symlinkSync(victim, join(s.root, 'staging'));
    const mark = kmsgMark();
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(treeState(victim)).toEqual(before);
    await waitKmsg(mark, /^flightbox: failed to capture a crash: .*staging is a symbolic link; refusing to use it/, s.root);
  });

  it('symlinks and FIFOs planted in a staging directory the moment it appears (core, manifest, trace): nothing written through them, nothing blocks', async () => {
    const victim = victimFile();
    mkdirMode(join(s.root, 'staging'), 0o700);
    // A watcher with write access to staging/ plants links in each new directory at once
    // (inotify), before the handler creates its files there.
    const p = spawn(planter, [join(s.root, 'staging'), victim, 'core', 'core.zst', '|backtrace.txt', '|manifest.json', '|core.gz'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
    const planterDone = new Promise((r) => p.on('exit', r));
    try {
      await waitFor('the planter to watch staging/', () => out.startsWith('ready\n'), 10_000, 10);
      const mark = kmsgMark();
      const c = crashNow();
      await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
      await exitWithin(planterDone, 5000, 'the planter planting');
      const planted = out.split('\n')[1];
      expect(planted).toMatch(new RegExp(`^\\d{8}T\\d{6}-${c.pid}-[0-9a-f]{6}$`));
      expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
      expect(readFileSync(victim, 'utf8')).toBe('do not touch\n');
      expect(lstatSync(victim).nlink).toBe(1);
      // Not lost without a word: either recorded, or the kernel log says the capture failed.
      const recorded = listEvents(s, ['--pid', String(c.pid)]).length === 1;
      const said = flightboxKmsg(mark).some((l) => l.raw.startsWith('flightbox: failed to capture a crash:') && l.raw.includes(planted!));
      expect(recorded || said, 'the crash is neither recorded nor reported in the kernel log').toBe(true);
    } finally {
      if (p.exitCode === null) p.kill('SIGKILL');
    }
  });

  it('store log planted as a symlink to a file outside: the file untouched, the crash recorded', async () => {
    const victim = victimFile();
    symlinkSync(victim, join(s.root, 'flightbox.log'));
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    await waitEvent(s, c.pid);
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(readFileSync(victim, 'utf8')).toBe('do not touch\n');
    expect(lstatSync(join(s.root, 'flightbox.log')).isSymbolicLink()).toBe(true);
  });

  // O_NOFOLLOW stops a symlink, not a hard link: appending to a log with a second name
  // writes into whatever file that name shares its inode with.
  it('store log planted as a hard link to a file outside: the file untouched, the crash recorded', async () => {
    const victim = victimFile();
    linkSync(victim, join(s.root, 'flightbox.log'));
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    await waitEvent(s, c.pid);
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(readFileSync(victim, 'utf8')).toBe('do not touch\n');
  });

  // Opening a FIFO for writing blocks until a reader comes: a handler that does so before
  // reading the core holds the crashed process (and all its memory) for as long.
  it('store log planted as a FIFO: the crashed process is released within seconds, the crash recorded', async () => {
    spawnSync('mkfifo', ['-m', '600', join(s.root, 'flightbox.log')]);
    const mark = kmsgMark();
    const c = crashNow();
    await waitKmsg(mark, new RegExp(`^flightbox: process ${c.pid} `));
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    await waitEvent(s, c.pid, HANDLER_MS);
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
  });

  // SQLite itself follows symbolic links to the database file (and creates a missing target).
  it('index.sqlite planted as a symlink to an empty file outside: the file untouched', async () => {
    const victim = victimFile('');
    symlinkSync(victim, join(s.root, 'index.sqlite'));
    const before = treeState(s.dir).filter((l) => l.startsWith('"victim'));
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(bundleDirs(s.root).some((d) => d.includes(`-${c.pid}-`))).toBe(true);
    expect(readFileSync(victim).length).toBe(0);
    expect(treeState(s.dir).filter((l) => l.startsWith('"victim'))).toEqual(before);
  });

  it('index.sqlite planted as a symlink to a missing file outside: nothing created there', async () => {
    const target = join(s.dir, 'victim-dir', 'created.db');
    mkdirMode(join(s.dir, 'victim-dir'), 0o755);
    symlinkSync(target, join(s.root, 'index.sqlite'));
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(bundleDirs(s.root).some((d) => d.includes(`-${c.pid}-`))).toBe(true);
    expect(readdirSync(join(s.dir, 'victim-dir'))).toEqual([]);
    expect(existsSync(target)).toBe(false);
  });

  // A second name of a regular file passes every symlink and file-type check.
  it('index.sqlite planted as a hard link to a file outside: the file untouched', async () => {
    const victim = victimFile('');
    linkSync(victim, join(s.root, 'index.sqlite'));
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
    expect(bundleDirs(s.root).some((d) => d.includes(`-${c.pid}-`))).toBe(true);
    expect(readFileSync(victim).length).toBe(0);
  });

  it('index.sqlite planted as a FIFO: the process released, the handler finishes, the bundle published and spooled', async () => {
    const fifo = join(s.root, 'index.sqlite');
    spawnSync('mkfifo', ['-m', '600', fifo]);
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    expect(await handlersDone(s.configPath, HANDLER_MS), 'the handler is stuck on the FIFO').toBe(true);
    const bundle = bundleDirs(s.root).find((d) => d.includes(`-${c.pid}-`));
    expect(bundle).toBeDefined();
    // Not indexed (the index is unusable), but spooled for a later reindex.
    expect(readdirSync(join(s.root, 'spool'))).toContain(bundle!.split('/').at(-1));
    expect(lstatSync(fifo).isFIFO()).toBe(true);
  });

  // The handler asks for its recorder snapshot only after the release: whatever listens on
  // the socket, the crashed process is not held by it; the handler gives up after the
  // snapshot deadline.
  it('daemon.sock planted as a socket whose listener never answers: the crashed process not held by it', async () => {
    appendFileSync(s.configPath, 'daemon:\n  snapshotDeadline: 1s\n');
    const sockets: Socket[] = [];
    let request = '';
    const server = createServer((c) => {
      sockets.push(c);
      c.setEncoding('utf8').on('data', (d: string) => { request += d; });
    });
    await new Promise<void>((r) => server.listen(join(s.root, 'daemon.sock'), r));
    try {
      const c = crashNow();
      const exit = await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
      expect(exit.signal).toBe('SIGSEGV');
      expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
      const m = manifestOf(s, await waitEvent(s, c.pid));
      expect(m.warnings.join('\n')).toMatch(/no flight-recorder snapshot: the daemon did not answer snapshot-into within 3000 ms/);
      expect(m.timings.holdMs).toBeLessThan(RELEASE_MS);
      expect(JSON.parse(request.split('\n')[0]!)).toMatchObject({ op: 'snapshot-into', id: m.id, thaw: true });
    } finally {
      for (const c of sockets) c.destroy();
      await new Promise((r) => server.close(r));
    }
  });

  // The early freeze is one non-blocking write to daemon.sock.freeze, made only into a FIFO.
  it('daemon.sock.freeze planted as a file, and as a symlink to one: nothing written, the crash recorded', async () => {
    const victim = victimFile();
    const fifo = join(s.root, 'daemon.sock.freeze');
    for (const plant of ['file', 'symlink'] as const) {
      if (plant === 'file') writeFileSync(fifo, 'planted\n', { mode: 0o600 });
      else {
        rmSync(fifo);
        symlinkSync(victim, fifo);
      }
      const c = crashNow();
      await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
      const m = manifestOf(s, await waitEvent(s, c.pid));
      expect(m.warnings.join('\n')).toMatch(/no flight-recorder snapshot: the flightbox daemon is not running/);
    }
    expect(readFileSync(victim, 'utf8')).toBe('do not touch\n');
    expect(lstatSync(fifo).isSymbolicLink()).toBe(true);
    rmSync(fifo);
  });

  it('daemon.sock.freeze planted as a full FIFO that nobody reads: the crashed process released, the crash recorded', async () => {
    const fifo = join(s.root, 'daemon.sock.freeze');
    expect(spawnSync('mkfifo', ['-m', '600', fifo]).status).toBe(0);
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    try {
      const chunk = Buffer.alloc(4096, 0x41);
      let filled = 0;
      for (;;) {
        try {
          filled += writeSync(fd, chunk);
        } catch (err) {
          expect((err as NodeJS.ErrnoException).code).toBe('EAGAIN');
          break;
        }
      }
      expect(filled).toBeGreaterThan(0);
      const c = crashNow();
      await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
      expect(await handlersDone(s.configPath, HANDLER_MS)).toBe(true);
      const m = manifestOf(s, await waitEvent(s, c.pid));
      expect(m.warnings.join('\n')).toMatch(/no flight-recorder snapshot: the flightbox daemon is not running/);
      expect(m.timings.holdMs).toBeLessThan(RELEASE_MS);
    } finally {
      closeSync(fd);
    }
  });

  it('an unprivileged user cannot plant anything in the store (root-only 0700 directories)', async () => {
    const c = crashNow();
    await exitWithin(c.exited, RELEASE_MS, 'the crashed process exiting');
    const e = await waitEvent(s, c.pid);
    const day = join(s.root, e.bundle, '..');
    // Others may reach the store's parent (as with /var/lib): only the store's own modes stop them.
    spawnSync('chmod', ['755', s.dir]);
    const outside = victimFile();
    for (const dir of [s.root, join(s.root, 'staging'), join(s.root, 'bundles'), day, join(s.root, e.bundle)]) {
      expect(lstatSync(dir).mode & 0o777, dir).toBe(0o700);
      expect(lstatSync(dir).uid, dir).toBe(0);
      for (const cmd of [['ln', '-s', outside, join(dir, 'planted')], ['mkfifo', join(dir, 'planted')], ['ln', outside, join(dir, 'planted')]]) {
        const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--', ...cmd], { encoding: 'utf8' });
        expect(r.status, `${cmd.join(' ')} as nobody`).not.toBe(0);
        expect(r.stderr).toMatch(/Permission denied/);
        expect(existsSync(join(dir, 'planted'))).toBe(false);
      }
    }
  });
});
