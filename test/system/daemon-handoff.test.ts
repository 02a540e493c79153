// The launcher hands crashes to the running daemon, end to end. With the daemon running as
// root, a crash whose core the launcher reads whole is offered to it (offer.<entry>@<daemon>
// in the launcher's spool, `take <entry>` on the daemon's freeze FIFO) and the launcher exits
// without starting node; the daemon's worker makes the bundle. Covered here: the bundle the
// daemon makes (core, stack trace, recorders, `dump`, `status`); a daemon that cannot read
// (SIGSTOP) does not hold the crashed process, and once killed (SIGKILL) its offer is
// recorded with its core by the next daemon's start; offers count for core.maxConcurrent; a
// FIFO that refuses the line sends the crash back to node; a daemon stopping (SIGTERM) with a
// crash on hand records it before it exits.
// Everything is real: the kernel's core_pattern, the launcher `flightbox daemon` installs,
// the daemon and its worker thread, crashes of a compiled program. The one stand-in is in
// the FIFO test: a FIFO that nobody reads, put at the daemon's FIFO path, stands in for a
// daemon that does not read its FIFO.
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, lstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { overflowDir } from '../../handler/run-dir.js';
import { controlRequest } from '../../lib/control-client.js';
import { IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { noSysctlDropIn, startDaemon, stopDaemon, waitRunning, type DaemonProc } from './daemon-proc.js';
import { crash, restoreKernelState, saveKernelState, type Crash, type KernelState } from './kernel.js';

interface Manifest {
  id: string;
  process: { pid: number; signalName: string } | null;
  core: { stored: boolean; reason: string | null; size: number; truncated: boolean; file: string | null } | null;
  backtrace: { tool: string | null; frames: { fn: string | null }[] } | null;
  recorders?: { name: string; ok: boolean; files: string[] }[];
  warnings: string[];
  timings: Record<string, number | undefined>;
  handler: { pid: number; daemon?: true; launcher?: string; overflow?: true };
}

interface TakerStatus { taking: boolean; taken: number; failed: number; onHand: number; detail?: string }

const METRICS_ONLY = 'recorders:\n  metrics: { interval: 200ms, window: 10s }\n  ftrace: { enabled: false }\n';
/** Names in the launcher's spool that are not crashes: the daemon's mark, the handlers' registry, the drainers' locks. */
const NOT_CRASHES = new Set(['daemon', 'handlers', '.drain', '.drain2']);

/** A promise's value, or an error naming `what` once `ms` have passed. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

describe.skipIf(!IS_ROOT)('crashes the launcher reads whole are handed to the running daemon', () => {
  let saved: KernelState;
  let store: TempStore;
  let daemons: DaemonProc[] = [];
  let bin: string;
  const cfg = (): string[] => ['--config', store.configPath];
  const spool = (): string => overflowDir(store.root);

  function setUp(extra = ''): void {
    store = makeTempStore(`${extra}${METRICS_ONLY}`, '');
    noSysctlDropIn(store);
  }

  async function runDaemon(): Promise<DaemonProc> {
    const d = startDaemon(store);
    daemons.push(d);
    await waitRunning(d);
    expect(d.log()).toMatch(/Crashes whose core the launcher reads whole are recorded by this daemon/);
    return d;
  }

  function pidOf(d: DaemonProc): number {
    return d.child.pid!;
  }

  /** The bundles of a crashed pid, newest first (list --json). */
  function bundlesOf(pid: number): Manifest[] {
    const r = runCli([...cfg(), 'list', '--pid', String(pid), '--json']);
    if (r.code !== 0) return [];
    return (JSON.parse(r.stdout) as { bundle: string }[]).map((e) => readJson<Manifest>(join(store.root, e.bundle, 'manifest.json')));
  }

  /** What a failed wait reports: the spool and the daemons' output. */
  function context(): string {
    let log = '';
    try {
      log = readFileSync(join(store.root, 'flightbox.log'), 'utf8').split('\n').slice(-40).join('\n');
    } catch {
      // none yet
    }
    const list = runCli([...cfg(), 'list']);
    return `list (exit ${list.code}):\n${list.stdout}${list.stderr}\nindex files the daemons hold that are gone: ${JSON.stringify(daemons.flatMap(deletedIndexFiles))}\nspool: ${JSON.stringify(spoolNames())}\n${daemons.map((d) => `daemon ${d.child.pid} (exit ${d.child.exitCode ?? d.child.signalCode ?? 'running'}):\n${d.log()}`).join('\n')}\nflightbox.log:\n${log}`;
  }

  async function bundleOf(pid: number, timeoutMs = 60_000): Promise<Manifest> {
    const m = await waitFor(`the bundle of crashed pid ${pid}`, () => bundlesOf(pid)[0], timeoutMs).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n${context()}`);
    });
    // exactly one bundle per crash
    expect(bundlesOf(pid)).toHaveLength(1);
    return m;
  }

  function spoolNames(): string[] {
    try {
      return readdirSync(spool()).sort();
    } catch {
      return [];
    }
  }

  /** What the spool holds that stands for a crash: entries, offers, claims, failed ones. */
  function crashEntries(): string[] {
    return spoolNames().filter((n) => !NOT_CRASHES.has(n));
  }

  /** The launcher's offer of crashed pid `pid` to daemon `daemonPid`, if it is in the spool. */
  function offerOf(pid: number, daemonPid: number): string | undefined {
    const re = new RegExp(`^offer\\.\\d+\\.${pid}\\.\\d+@${daemonPid}-\\d+$`);
    return spoolNames().find((n) => re.test(n));
  }

  /** Processes of the launcher (the shell running <store>/core-handler, and its background subshells) and node handlers. */
  function handlerProcesses(): string[] {
    const out: string[] = [];
    for (const p of readdirSync('/proc')) {
      if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
      let cmd: string;
      try {
        cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        continue;
      }
      if (cmd.includes(`${store.root}/core-handler`) || cmd.includes('--spooled')) out.push(`${p}: ${cmd}`);
    }
    return out;
  }

  /** The index's files a process has open that were removed from the store (its writes go where no one else reads). */
  function deletedIndexFiles(d: DaemonProc): string[] {
    const out: string[] = [];
    try {
      for (const fd of readdirSync(`/proc/${d.child.pid}/fd`)) {
        try {
          const target = readlinkSync(`/proc/${d.child.pid}/fd/${fd}`);
          if (target.startsWith(join(store.root, 'index.sqlite')) && target.endsWith(' (deleted)')) out.push(target);
        } catch {
          // closed meanwhile
        }
      }
    } catch {
      // exited
    }
    return out;
  }

  function takerStatus(): TakerStatus {
    const r = runCli([...cfg(), 'status', '--json']);
    expect(r.stdout, r.stderr).not.toBe('');
    const s = JSON.parse(r.stdout) as { daemon: { crashes?: TakerStatus } | null; daemonError: string | null };
    if (s.daemon === null) throw new Error(`status --json has no daemon: ${s.daemonError ?? ''}\n${context()}`);
    expect(s.daemon.crashes).toBeDefined();
    return s.daemon.crashes!;
  }

  beforeEach(() => {
    saved = saveKernelState();
    daemons = [];
    bin = buildCrasher('segv');
  });

  afterEach(async () => {
    try {
      for (const d of daemons) {
        // A stopped daemon takes SIGTERM only once it runs again.
        if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGCONT');
        await stopDaemon(d);
      }
    } finally {
      daemons = [];
      restoreKernelState(saved);
      store?.cleanup();
    }
  });

  it('a small crash: the daemon makes the bundle (core, stack trace, metrics); dump gives the ELF core; the spool is left empty', async () => {
    setUp();
    const daemon = await runDaemon();
    expect(readFileSync(join(spool(), 'daemon'), 'utf8')).toMatch(new RegExp(`^${pidOf(daemon)} \\d+\\n$`));
    await new Promise((r) => setTimeout(r, 1000)); // a few metric samples before the crash
    const c = await crash(bin);
    expect(c.signal).toBe('SIGSEGV');
    const m = await bundleOf(c.pid);
    // made by the daemon, from the launcher's copy: no node started for it
    expect(m.handler).toMatchObject({ daemon: true, pid: pidOf(daemon), launcher: 'released' });
    expect(m.handler.overflow).toBeUndefined();
    expect(m.timings.takenMs).toEqual(expect.any(Number));
    expect(m.timings.startupMs).toBeUndefined();
    expect(m.process).toMatchObject({ pid: c.pid, signalName: 'SIGSEGV' });
    expect(m.core).toMatchObject({ stored: true, truncated: false });
    expect(m.core!.size).toBeGreaterThan(0);
    // the stack trace eu-stack took on the launcher's copy
    expect(m.backtrace?.tool).toBe('eu-stack');
    expect(m.backtrace?.frames.length).toBeGreaterThan(0);
    expect(m.backtrace?.frames.map((f) => f.fn)).toEqual(expect.arrayContaining(['flightbox_crash_here', 'main']));
    // the recorders' snapshot, as for any crash with the daemon running
    expect(m.recorders?.find((r) => r.name === 'metrics')?.ok).toBe(true);
    expect(m.warnings).toEqual([]);

    // the stored core is the process's ELF core, whole
    const out = join(store.dir, 'handed.core');
    const d = runCli([...cfg(), 'dump', m.id, '-o', out]);
    expect(d.code, d.stderr).toBe(0);
    expect(statSync(out).size).toBe(m.core!.size);
    const head = Buffer.alloc(4);
    const fd = openSync(out, 'r');
    try {
      readSync(fd, head, 0, 4, 0);
    } finally {
      closeSync(fd);
    }
    expect(head.toString('latin1')).toBe('\x7fELF');

    // the worker removed the launcher's entry once the bundle was published
    await waitFor('the spool emptied', () => crashEntries().length === 0, 10_000);
    expect(spoolNames()).toContain('daemon');
    const taker = takerStatus();
    expect(taker).toMatchObject({ taking: true, failed: 0, onHand: 0 });
    expect(taker.taken).toBeGreaterThanOrEqual(1);
    const st = runCli([...cfg(), 'status']);
    expect(st.stdout).toMatch(/^ {2}crashes {2}recorded here when the launcher reads the whole core: [1-9]\d* so far/m);
  });

  // A crash that comes while the recorders are frozen for something else (an earlier crash
  // still being recorded, a snapshot) joins that freeze: its snapshot ends there, and says so.
  it('a crash while the recorders are already frozen: the snapshot is that freeze\'s, and the bundle says it misses the crash\'s last moments', async () => {
    setUp();
    await runDaemon();
    const sock = join(store.root, 'daemon.sock');
    expect(await controlRequest(sock, { op: 'freeze', reason: 'held by the test' }, 5000)).toMatchObject({ ok: true });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const c = await crash(bin);
      const m = await bundleOf(c.pid);
      expect(m.handler.daemon).toBe(true);
      expect(m.timings.freezeMs).toBeLessThan(-250);
      expect(m.warnings).toEqual([expect.stringMatching(/^the recorders were already frozen \d+ ms before this crash began \(for an earlier crash or snapshot\): their history ends there/)]);
      expect(m.recorders?.find((r) => r.name === 'metrics')?.ok).toBe(true);
    } finally {
      await controlRequest(sock, { op: 'thaw' }, 5000);
    }
  });

  // The daemon's index connections (its own and its crash worker's, one process) must keep
  // their SQLite locks while other processes (the CLI, handlers, drainers) open and close the
  // index: else the last of those to close checkpoints and removes the WAL the daemon still
  // writes to, and what it records next is seen by no one.
  it('crashes handed over after other processes have read the index are in the index too', async () => {
    setUp();
    const daemon = await runDaemon();
    const first = await crash(bin);
    expect((await bundleOf(first.pid)).handler.daemon).toBe(true);
    // other processes open and close the index, as `list` and handlers do
    for (let i = 0; i < 3; i++) expect(runCli([...cfg(), 'list', '--json']).code).toBe(0);
    const second = await crash(bin);
    const m = await bundleOf(second.pid, 30_000);
    expect(m.handler).toMatchObject({ daemon: true, pid: pidOf(daemon) });
    expect(deletedIndexFiles(daemon)).toEqual([]);
  });

  it('a stopped daemon does not hold the crash; killed, its offer is recorded with its core by the next daemon', async () => {
    setUp();
    const first = await runDaemon();
    first.child.kill('SIGSTOP');
    // The launcher writes its line without waiting and exits: the crashed process is reaped
    // promptly though nobody reads the FIFO.
    const t0 = Date.now();
    const c: Crash = await within(crash(bin), 20_000, 'the crashed process reaped while the daemon is stopped');
    expect(c.signal).toBe('SIGSEGV');
    expect(Date.now() - t0).toBeLessThan(10_000);
    const offer = await waitFor('the launcher\'s offer in the spool', () => offerOf(c.pid, pidOf(first)), 10_000);
    // no node was started for it, and the launcher (with its eu-stack and zstd) is done
    await waitFor('the launcher gone', () => handlerProcesses().length === 0, 30_000);
    expect(spoolNames()).toContain(offer);
    expect(crashEntries()).toEqual([offer]);
    expect(bundlesOf(c.pid)).toEqual([]);

    first.child.kill('SIGKILL');
    await within(first.exited, 20_000, 'the stopped daemon killed');
    expect(first.child.signalCode).toBe('SIGKILL');
    // still offered, now to a dead process
    expect(crashEntries()).toEqual([offer]);

    const second = await runDaemon();
    const m = await bundleOf(c.pid, 60_000);
    expect(m.core).toMatchObject({ stored: true, truncated: false });
    expect(m.core!.size).toBeGreaterThan(0);
    expect(m.warnings.join('\n')).toMatch(/the crash handler stopped before it finished this crash/);
    expect(m.recorders).toBeUndefined();
    // recorded by the new daemon's drainer from the launcher's copy, not handed over to it
    expect(m.handler.daemon).toBeUndefined();
    expect(m.handler.pid).toBe(pidOf(second));
    expect(m.handler.launcher).toBe('released');
    expect(m.backtrace?.frames.length).toBeGreaterThan(0);
    await waitFor('the spool emptied', () => crashEntries().length === 0, 10_000);
    expect(readFileSync(join(spool(), 'daemon'), 'utf8')).toMatch(new RegExp(`^${pidOf(second)} `));
  });

  it('core.maxConcurrent counts the offers: at the cap the next crash is recorded without its core; the offer is recorded once the daemon runs', async () => {
    setUp('core:\n  maxConcurrent: 1\n');
    const daemon = await runDaemon();
    daemon.child.kill('SIGSTOP');
    const a = await within(crash(bin), 20_000, 'crash A reaped');
    const offerA = await waitFor('crash A offered', () => offerOf(a.pid, pidOf(daemon)), 10_000);
    await waitFor('crash A\'s launcher gone', () => handlerProcesses().length === 0, 30_000);
    // A's launcher no longer counts itself: its offer does
    expect(readdirSync(join(spool(), 'handlers'))).toEqual([]);

    const b = await within(crash(bin), 20_000, 'crash B reaped');
    const mb = await bundleOf(b.pid, 60_000);
    expect(mb.core).toMatchObject({ stored: false, reason: 'concurrency' });
    expect(mb.handler.overflow).toBe(true);
    // the storm's drainer left the live daemon's offer alone
    expect(spoolNames()).toContain(offerA);
    expect(bundlesOf(a.pid)).toEqual([]);

    daemon.child.kill('SIGCONT');
    const ma = await bundleOf(a.pid, 60_000);
    expect(ma.handler).toMatchObject({ daemon: true, pid: pidOf(daemon), launcher: 'released' });
    expect(ma.core).toMatchObject({ stored: true, truncated: false, reason: null });
    expect(ma.recorders?.find((r) => r.name === 'metrics')?.ok).toBe(true);
    await waitFor('the spool emptied', () => crashEntries().length === 0, 10_000);
    expect(takerStatus()).toMatchObject({ taking: true, taken: 1, failed: 0, onHand: 0 });
  });

  it('a FIFO that refuses the line (nobody reads it): the launcher takes its offer back and node records the crash', async () => {
    setUp();
    const daemon = await runDaemon();
    const fifo = join(store.root, 'daemon.sock.freeze');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    // Stand-in: a daemon that does not read its FIFO. A new root-owned FIFO at the same path,
    // open for reading by nobody: the launcher's non-blocking write fails (ENXIO).
    rmSync(fifo);
    const mk = spawnSync('mkfifo', ['-m', '600', fifo], { encoding: 'utf8' });
    expect(mk.status, mk.stderr).toBe(0);
    expect(lstatSync(fifo).uid).toBe(0);

    const c = await within(crash(bin), 20_000, 'the crash reaped');
    const m = await bundleOf(c.pid);
    expect(m.handler.daemon).toBeUndefined();
    expect(m.handler.launcher).toBe('released');
    expect(m.handler.pid).not.toBe(pidOf(daemon));
    expect(m.timings.startupMs).toEqual(expect.any(Number));
    expect(m.timings.takenMs).toBeUndefined();
    expect(m.core).toMatchObject({ stored: true, truncated: false });
    // node's snapshot over the socket: the daemon still serves it, frozen late
    expect(m.recorders?.find((r) => r.name === 'metrics')?.ok).toBe(true);
    await waitFor('the spool emptied', () => crashEntries().length === 0, 10_000);
    expect(takerStatus()).toMatchObject({ taken: 0, failed: 0, onHand: 0 });

    // the daemon still stops cleanly
    daemon.child.kill('SIGTERM');
    expect(await within(daemon.exited, 60_000, 'the daemon stopped')).toBe(0);
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()).toBe(saved.corePattern);
  });

  it('stopped with a crash on hand (SIGCONT then SIGTERM at once): it records the crash before it exits', async () => {
    setUp();
    const daemon = await runDaemon();
    daemon.child.kill('SIGSTOP');
    const c = await within(crash(bin), 20_000, 'the crash reaped');
    await waitFor('the crash offered', () => offerOf(c.pid, pidOf(daemon)), 10_000);
    await waitFor('the launcher gone', () => handlerProcesses().length === 0, 30_000);
    expect(bundlesOf(c.pid)).toEqual([]);

    daemon.child.kill('SIGCONT');
    daemon.child.kill('SIGTERM');
    expect(await within(daemon.exited, 60_000, 'the daemon stopped')).toBe(0);
    // recorded by that daemon before it exited: nothing else ran since
    const [m, ...more] = bundlesOf(c.pid);
    expect(more).toEqual([]);
    expect(m, daemon.log()).toBeDefined();
    expect(m!.handler).toMatchObject({ daemon: true, pid: pidOf(daemon), launcher: 'released' });
    expect(m!.core).toMatchObject({ stored: true, truncated: false });
    expect(crashEntries()).toEqual([]);
    expect(spoolNames()).not.toContain('daemon');
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()).toBe(saved.corePattern);
    expect(existsSync(join(store.root, 'daemon.sock'))).toBe(false);
    expect(existsSync(join(store.root, 'daemon.sock.freeze'))).toBe(false);
  });
});
