// The daemon with its recorders, end to end: real crashes through the kernel get the
// flight recorder's snapshot in their bundle; SIGUSR1 and `flightbox snapshot` make
// snapshot events; SIGHUP refuses a broken config; SIGTERM leaves nothing behind; a daemon
// killed with SIGKILL does not stop crashes from being captured.
import { spawnSync } from 'node:child_process';
import { closeSync, constants, copyFileSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { controlRequest } from '../../lib/control-client.js';
import { FIXTURES, IS_ROOT, buildCrasher, makeTempStore, readJson, runCli, waitFor, type TempStore } from '../helpers.js';
import { noSysctlDropIn, startDaemon, stopDaemon, waitRunning, type DaemonProc } from './daemon-proc.js';
import { crash, restoreKernelState, saveKernelState, type KernelState } from './kernel.js';

interface EventJson { id: string; kind: string; pid: number | null; bundle: string; reason: string | null; time: string }
interface Manifest {
  kind: string;
  handler: { daemon?: true; launcher?: string };
  timeMs: number;
  capturedAt: string;
  timings: Record<string, number | undefined>;
  reason?: string;
  recorders?: { name: string; ok: boolean; files: string[]; warnings: string[] }[];
  warnings: string[];
  files: { path: string }[];
}

/** lttng-tools and the UST headers (CI installs both; without them this one test is skipped). */
const HAS_LTTNG = existsSync('/usr/bin/lttng') && spawnSync('dpkg', ['-s', 'liblttng-ust-dev'], { stdio: 'ignore' }).status === 0;

const METRICS_ONLY = 'recorders:\n  metrics: { interval: 200ms, window: 10s }\n  ftrace: { enabled: false }\n';

function events(store: TempStore, extra: string[] = []): EventJson[] {
  const r = runCli(['--config', store.configPath, 'list', '--json', ...extra]);
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout) as EventJson[];
}

describe.skipIf(!IS_ROOT)('the daemon and its recorders', () => {
  let saved: KernelState;
  let store: TempStore;
  let daemon: DaemonProc | undefined;
  beforeEach(() => {
    saved = saveKernelState();
    store = makeTempStore(METRICS_ONLY, '');
    noSysctlDropIn(store);
  });
  afterEach(async () => {
    try {
      await stopDaemon(daemon);
    } finally {
      daemon = undefined;
      restoreKernelState(saved);
      store.cleanup();
    }
  });

  it('puts the metrics recorded before a crash into the crash bundle', async () => {
    daemon = startDaemon(store);
    await waitRunning(daemon);
    await new Promise((r) => setTimeout(r, 1500)); // a few samples of history
    const c = await crash(buildCrasher('segv'));
    expect(c.signal).toBe('SIGSEGV');
    const e = await waitFor('the crash in the index', () => events(store, ['--pid', String(c.pid)])[0], 60_000);
    const m = readJson<Manifest>(join(store.root, e.bundle, 'manifest.json'));
    expect(m.warnings).toEqual([]);
    const metrics = m.recorders?.find((r) => r.name === 'metrics');
    expect(metrics?.ok).toBe(true);
    expect(metrics?.files).toEqual(['recorder/metrics/samples.jsonl', 'recorder/metrics/summary.txt']);
    const lines = readFileSync(join(store.root, e.bundle, 'recorder/metrics/samples.jsonl'), 'utf8').trim().split('\n');
    const samples = lines.map((l) => JSON.parse(l) as { t: number });
    expect(samples.length).toBeGreaterThanOrEqual(5);
    // The history ends at the crash: frozen as soon as the handler asked, before its own work.
    expect(samples.at(-1)!.t).toBeLessThanOrEqual(Date.parse(m.capturedAt) + m.timings.freezeMs!);
    // The launcher asked, once it had read the core: it handed the crash to the daemon with the
    // same line (no node started), and the recorders were frozen before the daemon took it.
    expect(m.handler).toMatchObject({ daemon: true, launcher: 'released' });
    expect(m.timings.startupMs).toBeUndefined();
    expect(m.timings.freezeMs).toBeLessThanOrEqual(m.timings.takenMs!);
    expect(samples.at(-1)!.t).toBeGreaterThan(Date.parse(m.capturedAt) - 1000);
    expect(m.files.map((f) => f.path)).toContain('recorder/metrics/samples.jsonl');
  });

  it('takes a snapshot event on SIGUSR1 and on `flightbox snapshot --reason`', async () => {
    daemon = startDaemon(store, ['--no-install']);
    await waitRunning(daemon);
    daemon.child.kill('SIGUSR1');
    await waitFor('the SIGUSR1 snapshot', () => events(store).some((e) => e.kind === 'snapshot' && e.reason === 'SIGUSR1'), 20_000);
    expect(events(store).filter((e) => e.kind === 'snapshot')).toHaveLength(1);

    const r = runCli(['--config', store.configPath, 'snapshot', '--reason', 'before the deploy']);
    expect(r.code, r.stderr).toBe(0);
    const id = r.stdout.trim();
    const e = events(store).find((x) => x.id === id);
    expect(e?.kind).toBe('snapshot');
    expect(e?.reason).toBe('before the deploy');
    const m = readJson<Manifest>(join(store.root, e!.bundle, 'manifest.json'));
    expect(m.kind).toBe('snapshot');
    expect(m.recorders?.map((x) => x.name)).toEqual(['metrics']);
    expect(existsSync(join(store.root, e!.bundle, 'recorder/metrics/summary.txt'))).toBe(true);
    const info = runCli(['--config', store.configPath, 'info', id]);
    expect(info.stdout).toMatch(/Kind: snapshot/);

    const st = runCli(['--config', store.configPath, 'status', '--json']);
    const status = JSON.parse(st.stdout) as { daemon: { recorders: { name: string; state: string }[] } };
    expect(status.daemon.recorders).toEqual([expect.objectContaining({ name: 'metrics', state: 'running' })]);
  });

  it('refuses a broken config on SIGHUP and keeps running; refuses a second daemon', async () => {
    daemon = startDaemon(store, ['--no-install']);
    await waitRunning(daemon);
    const good = readFileSync(store.configPath, 'utf8');
    writeFileSync(store.configPath, good.replace(/^core:\n/m, 'core:\n  maxSize: lots\n'));
    daemon.child.kill('SIGHUP');
    await waitFor('the reload to be refused', () => /Reload refused/.test(daemon!.log()), 10_000);
    expect(daemon.log()).toMatch(/core\.maxSize: expected a size .* \(.*flightbox\.yaml:\d+\)/);
    expect(daemon.child.exitCode).toBeNull();
    writeFileSync(store.configPath, good);
    const second = runCli(['--config', store.configPath, 'daemon', '--no-install'], { timeout: 20_000 });
    expect(second.code).not.toBe(0);
    expect(second.stderr).toMatch(/another flightbox daemon is running/);
    // The first one still answers.
    expect(runCli(['--config', store.configPath, 'snapshot']).code).toBe(0);
  });

  it('stops cleanly on SIGTERM: socket removed, core_pattern restored', async () => {
    daemon = startDaemon(store);
    await waitRunning(daemon);
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8')).toMatch(new RegExp(`^\\|${store.root}/core-handler `));
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toBe(0);
    expect(readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()).toBe(saved.corePattern);
    expect(existsSync(join(store.root, 'daemon.sock'))).toBe(false);
    expect(existsSync(join(store.root, 'daemon.sock.freeze'))).toBe(false);
  });

  it('a crash whose early freeze the daemon never got: frozen at the snapshot instead, with a warning, nothing lost', async () => {
    daemon = startDaemon(store);
    await waitRunning(daemon);
    const fifo = join(store.root, 'daemon.sock.freeze');
    expect(lstatSync(fifo).isFIFO()).toBe(true);
    expect(lstatSync(fifo).mode & 0o777).toBe(0o600);
    rmSync(fifo);
    const c = await crash(buildCrasher('segv'));
    const e = await waitFor('the crash in the index', () => events(store, ['--pid', String(c.pid)])[0], 60_000);
    const m = readJson<Manifest>(join(store.root, e.bundle, 'manifest.json'));
    expect(m.warnings).toEqual([expect.stringMatching(/^the recorders were frozen only after the core was read \(.*daemon\.sock\.freeze does not exist\)/)]);
    expect(m.recorders?.find((r) => r.name === 'metrics')?.ok).toBe(true);
    expect(m.timings.freezeMs).toBeGreaterThan(m.timings.holdMs!);
    // The freeze the snapshot took was thawed: the recorders run on.
    const st = runCli(['--config', store.configPath, 'status', '--json']);
    expect(st.code, st.stderr).toBe(0);
    expect((JSON.parse(st.stdout) as { daemon: { frozen: boolean } }).daemon.frozen).toBe(false);
  });

  // The control protocol as crash handlers speak it, driven by hand: an older handler's socket
  // freeze and snapshot without an id, and the FIFO line paired (or not) with a snapshot by id.
  it('every freeze is thawed: socket freeze + snapshot without id, FIFO line + snapshot by id, a line after its snapshot', async () => {
    daemon = startDaemon(store, ['--no-install']);
    await waitRunning(daemon);
    const sock = join(store.root, 'daemon.sock');
    const frozen = async (): Promise<boolean> => ((await controlRequest(sock, { op: 'status' }, 5000)) as { frozen?: boolean }).frozen === true;
    const staging = (id: string): string => {
      const d = join(store.root, 'staging', id);
      mkdirSync(d, { mode: 0o700 });
      return join(d, 'recorder');
    };
    const line = (text: string): void => {
      const fd = openSync(join(store.root, 'daemon.sock.freeze'), constants.O_WRONLY | constants.O_NONBLOCK);
      try {
        writeSync(fd, text);
      } finally {
        closeSync(fd);
      }
    };
    const ids = ['20261126T100000-101-aaaaaa', '20261126T100000-102-bbbbbb', '20261126T100000-103-cccccc', '20261126T100000-104-dddddd'];

    // An older handler: freeze over the socket, then a snapshot without an id.
    expect(await controlRequest(sock, { op: 'freeze', reason: 'old handler' }, 5000)).toMatchObject({ ok: true });
    expect(await frozen()).toBe(true);
    const old = await controlRequest(sock, { op: 'snapshot-into', dir: staging(ids[0]!), reason: 'old', thaw: true }, 20_000);
    expect(old).toMatchObject({ ok: true, frozeHere: false });
    expect(await frozen()).toBe(false);

    // Today's handler: the FIFO line, then its snapshot claims that freeze.
    line(`freeze ${ids[1]}\n`);
    await waitFor('the FIFO line taken', () => frozen(), 5000);
    const early = await controlRequest(sock, { op: 'snapshot-into', dir: staging(ids[1]!), reason: 'new', thaw: true, id: ids[1] }, 20_000);
    expect(early).toMatchObject({ ok: true, early: true, frozeHere: false });
    expect(await frozen()).toBe(false);

    // A snapshot whose line never came freezes for itself; its line arriving afterwards takes nothing.
    const late = await controlRequest(sock, { op: 'snapshot-into', dir: staging(ids[2]!), reason: 'late', thaw: true, id: ids[2] }, 20_000);
    expect(late).toMatchObject({ ok: true, early: false, frozeHere: true });
    line(`freeze ${ids[2]}\nnonsense\n`);
    // Then a line for another crash, as a marker that the ones before it were read.
    line(`freeze ${ids[3]}\n`);
    await waitFor('the marker line taken', () => frozen(), 5000);
    expect(await controlRequest(sock, { op: 'snapshot-into', dir: staging(ids[3]!), reason: 'm', thaw: true, id: ids[3] }, 20_000)).toMatchObject({ ok: true, early: true });
    expect(await frozen()).toBe(false);

    // The launcher's line names its entry (node has no bundle id yet); node's snapshot claims
    // that freeze by the entry. Lines naming anything else are ignored.
    line('spool ../../etc\nspool 1795738230.1.2/x\n');
    line('spool 1795738230.4242.4343\n');
    await waitFor('the launcher\'s line taken', () => frozen(), 5000);
    const id5 = '20261126T100000-4242-eeeeee';
    const byEntry = await controlRequest(sock, { op: 'snapshot-into', dir: staging(id5), reason: 'launcher', thaw: true, id: id5, entry: '1795738230.4242.4343' }, 20_000);
    expect(byEntry).toMatchObject({ ok: true, early: true, frozeHere: false });
    expect(await frozen()).toBe(false);
    expect(existsSync(join(store.root, 'staging', id5, 'recorder', 'metrics', 'samples.jsonl'))).toBe(true);
    // a request naming an entry that is no entry is refused
    const bad = await controlRequest(sock, { op: 'snapshot-into', dir: staging('20261126T100000-4243-ffffff'), reason: 'x', thaw: true, id: '20261126T100000-4243-ffffff', entry: '../x' }, 20_000);
    expect(bad).toMatchObject({ ok: false });
    expect(await frozen()).toBe(false);
  });

  it('a daemon killed with SIGKILL does not stop crashes from being captured', async () => {
    // The handler stays installed permanently here, as with `flightbox install`.
    expect(runCli(['--config', store.configPath, 'install']).code).toBe(0);
    try {
      daemon = startDaemon(store);
      await waitRunning(daemon);
      daemon.child.kill('SIGKILL');
      await daemon.exited;
      const c = await crash(buildCrasher('segv'));
      const e = await waitFor('the crash in the index', () => events(store, ['--pid', String(c.pid)])[0], 60_000);
      const m = readJson<Manifest>(join(store.root, e.bundle, 'manifest.json'));
      expect(m.warnings.join('\n')).toMatch(/no flight-recorder snapshot: the flightbox daemon is not running/);
      expect(m.recorders).toBeUndefined();
      expect(readdirSync(join(store.root, e.bundle))).toContain('core.zst');
    } finally {
      runCli(['--config', store.configPath, 'uninstall']);
    }
  });

  it('a crash bundle holds the kernel trace of the crasher: its syscalls, its scheduling, its SIGSEGV', async () => {
    const instance = `fbxd${process.pid}`;
    writeFileSync(store.configPath, readFileSync(store.configPath, 'utf8').replace(
      /  ftrace: \{ enabled: false \}\n/,
      `  ftrace: { enabled: true, bufferSize: 2MiB, instance: ${instance} }\n`,
    ));
    // A unique name, so its events cannot be confused with anything else on the machine.
    const name = `fbxft${Math.random().toString(36).slice(2, 8)}`;
    const bin = join(store.dir, name);
    copyFileSync(buildCrasher('syscalls-segv'), bin);
    spawnSync('chmod', ['755', bin]);
    daemon = startDaemon(store);
    await waitRunning(daemon);
    expect(existsSync(`/sys/kernel/tracing/instances/${instance}`)).toBe(true);
    try {
      const c = await crash(bin);
      expect(c.signal).toBe('SIGSEGV');
      const e = await waitFor('the crash in the index', () => events(store, ['--pid', String(c.pid)])[0], 60_000);
      const m = readJson<Manifest>(join(store.root, e.bundle, 'manifest.json'));
      const ftrace = m.recorders?.find((r) => r.name === 'ftrace');
      expect(ftrace?.ok, JSON.stringify(m.recorders)).toBe(true);
      const dir = join(store.root, e.bundle, 'recorder/ftrace');
      let text: string;
      if (existsSync(join(dir, 'trace.dat'))) {
        const r = spawnSync('trace-cmd', ['report', '-i', join(dir, 'trace.dat')], { encoding: 'utf8', maxBuffer: 512 * 1024 * 1024 });
        expect(r.status, r.stderr).toBe(0);
        text = r.stdout;
      } else {
        text = readFileSync(join(dir, 'trace.txt'), 'utf8');
      }
      const lines = text.split('\n');
      // Task names in the line prefix come from a cache that may be stale: match the pid there.
      const ofPid = (l: string) => new RegExp(`-${c.pid}\\s+\\[`).test(l);
      // sched_switch prints "prev_comm=NAME" in the ftrace text and "NAME:PID [prio]" in trace-cmd report.
      const switches = lines.filter((l) => /sched_switch/.test(l) && [`prev_comm=${name} `, `next_comm=${name} `, `${name}:${c.pid} `].some((x) => l.includes(x)));
      expect(switches.length).toBeGreaterThan(0);
      expect(lines.some((l) => ofPid(l) && /sys_enter/.test(l))).toBe(true);
      const fatal = lines.findIndex((l) => /signal_generate/.test(l) && /sig=11\b/.test(l) && l.includes(`comm=${name} pid=${c.pid}`));
      expect(fatal).toBeGreaterThanOrEqual(0);
      // The kernel's traceoff trigger froze the buffer at that signal: little or nothing after it.
      expect(lines.slice(fatal + 1).filter((l) => l.trim() !== '').length).toBeLessThan(50);
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.exited;
    }
    // Nothing left behind in tracefs.
    expect(existsSync(`/sys/kernel/tracing/instances/${instance}`)).toBe(false);
  });

  it.skipIf(!HAS_LTTNG)(
    'with lttng: an instrumented process that crashes has its user-space events in its crash bundle; SIGTERM leaves no session',
    async () => {
      const session = `fbxd${process.pid}`;
      writeFileSync(store.configPath, readFileSync(store.configPath, 'utf8').replace(
        /  ftrace: \{ enabled: false \}\n/,
        `  ftrace: { enabled: false }\n  lttng: { enabled: true, session: ${session} }\n`,
      ));
      // The instrumented test program (tracepoint provider compiled in): tp-app MARKER COUNT INTERVAL_MS.
      const app = join(store.dir, 'tp-app');
      const src = join(FIXTURES, 'lttng');
      const cc = spawnSync('gcc', ['-O0', '-g', `-I${src}`, '-o', app, join(src, 'tp-app.c'), '-llttng-ust', '-ldl'], { encoding: 'utf8' });
      expect(cc.status, cc.stderr).toBe(0);
      daemon = startDaemon(store);
      await waitRunning(daemon);
      // This machine loads no lttng-modules: the recorder says so and records user space.
      expect(daemon.log()).toMatch(/Recorder lttng: running .*kernel tracing unavailable/);
      expect(spawnSync('lttng', ['list'], { encoding: 'utf8' }).stdout).toContain(session);
      const marker = `fbx${Math.random().toString(36).slice(2, 8)}`;
      const c = await crash(app, [marker, '1000000', '5'], { killWith: 'SIGSEGV', killAfterMs: 1500 });
      expect(c.signal).toBe('SIGSEGV');
      const e = await waitFor('the crash in the index', () => events(store, ['--pid', String(c.pid)])[0], 60_000);
      const m = readJson<Manifest>(join(store.root, e.bundle, 'manifest.json'));
      const lt = m.recorders?.find((x) => x.name === 'lttng');
      expect(lt?.ok, JSON.stringify(m.recorders)).toBe(true);
      expect(lt?.files.some((f) => f.startsWith('recorder/lttng/ctf/'))).toBe(true);
      const bt = spawnSync('babeltrace2', [join(store.root, e.bundle, 'recorder/lttng/ctf')], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
      expect(bt.status, bt.stderr).toBe(0);
      const ticks = bt.stdout.split('\n').filter((l) => l.includes('flightbox_test:tick') && l.includes(marker));
      expect(ticks.length).toBeGreaterThan(10);
      expect(ticks[0]).toContain(`vpid = ${c.pid}`);
      daemon.child.kill('SIGTERM');
      expect(await daemon.exited).toBe(0);
      const after = spawnSync('lttng', ['list'], { encoding: 'utf8' });
      expect(after.stdout + after.stderr).not.toContain(session);
    },
  );
});
